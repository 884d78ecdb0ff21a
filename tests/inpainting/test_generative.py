"""The generative inpainting network: build, save/load (safe_mode), tiled inference, loss, shipped weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import write_model_card

keras = pytest.importorskip("keras")

from inpainting import DEFAULT_WEIGHTS, InpaintingError, dilate_mask, inpaint  # noqa: E402
from inpainting.generative import (  # noqa: E402
    InpaintLoss,
    InpaintNetWeightsError,
    build_inpaint_net,
    load_inpaint_net,
)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "tiny.keras"
    build_inpaint_net(width=4, coarse_dilations=(1,), seed=3).save(path)
    write_model_card(path)
    return path


def _scene(shape=(120, 150), dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    r, c = np.mgrid[: shape[0], : shape[1]]
    img = 100 + 40 * np.sin(r / 9.0) + 30 * np.cos(c / 13.0) + rng.normal(0, 3, shape)
    hole = np.zeros(shape, bool)
    hole[10:18, 12:20] = hole[60:66, 70:90] = hole[110:120, 140:150] = True
    return np.clip(img, 0, 255).astype(dtype), hole


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_contract(tiny_weights, dtype):
    img, hole = _scene(dtype=dtype)
    out = inpaint(img, hole, method="generative", weights=str(tiny_weights), dilation_px=1, tile_size=64, margin=8)
    grown = dilate_mask(hole, 1)
    assert out.shape == img.shape and out.dtype == img.dtype
    np.testing.assert_array_equal(out[~grown], img[~grown])
    assert np.isfinite(out.astype(float)).all()


def test_nan_inside_hole(tiny_weights):
    img, hole = _scene(dtype=np.float32)
    img[hole] = np.nan
    out = inpaint(img, hole, method="generative", weights=str(tiny_weights))
    assert np.isfinite(out).all()


def test_tiled_equals_whole_with_enough_margin(tiny_weights):
    img, hole = _scene((128, 160))
    whole = inpaint(img, hole, method="generative", weights=str(tiny_weights), tile_size=160, margin=0)
    tiled = inpaint(img, hole, method="generative", weights=str(tiny_weights), tile_size=32, margin=64, batch_size=3)
    # tile grids aligned to the stride; margin beyond the receptive field: same fill up to rounding
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1


def test_loaded_once_and_safe_mode(tiny_weights):
    assert load_inpaint_net(tiny_weights) is load_inpaint_net(str(tiny_weights))
    m = keras.saving.load_model(tiny_weights, safe_mode=True, compile=False)
    assert m.input_shape[-1] == 2 and m.output_shape[-1] == 1


def test_bad_weights(tmp_path):
    img, hole = _scene()
    with pytest.raises(InpaintNetWeightsError, match="not found"):
        inpaint(img, hole, method="generative", weights=str(tmp_path / "missing.keras"))
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InpaintNetWeightsError, match="model card .*not found"):
        inpaint(img, hole, method="generative", weights=str(bad))
    card = write_model_card(bad)
    with pytest.raises(InpaintNetWeightsError, match="cannot load"):
        inpaint(img, hole, method="generative", weights=str(bad))
    card.write_text('{"sha256": "0000"}')
    with pytest.raises(InpaintNetWeightsError, match="do not match their model card"):
        inpaint(img, hole, method="generative", weights=str(bad))
    assert issubclass(InpaintNetWeightsError, ValueError)
    with pytest.raises(InpaintingError):
        inpaint(img[None], hole[None], method="generative", weights=str(bad))


def test_loss_serialisable_and_sane():
    loss = InpaintLoss(hole_weight=3.0, texture_weight=0.0)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(again, InpaintLoss) and again.hole_weight == 3.0 and again.texture_weight == 0.0
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(2, 16, 16, 1)).astype("float32")
    hole = np.zeros_like(truth)
    hole[:, 4:8, 4:8] = 1
    y = np.concatenate([truth, hole], -1)
    perfect = float(InpaintLoss()(y, truth))
    wrong_in_hole = truth + 2 * hole
    wrong_outside = truth + 2 * (1 - hole)
    assert perfect < 1e-3
    # errors inside the holes cost more than the same errors outside
    assert float(InpaintLoss()(y, wrong_in_hole)) > float(InpaintLoss()(y, wrong_outside)) / 16 * 6


def test_shipped_weights_and_card():
    assert DEFAULT_WEIGHTS.is_file(), "inpainting/weights/inpaint_net.keras must be shipped"
    assert DEFAULT_WEIGHTS.stat().st_size < 20 * 2**20
    card = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    val = set(card["data"]["val_scans"])
    assert len(val) >= 3 and not val & {"10", "11"}
    assert not val & set(card["data"]["train_scans"])
    assert card["parameter_count"] < 1_000_000


def test_shipped_weights_fill_texture_better_than_flat():
    img, hole = _scene((128, 128))
    damaged = img.copy()
    damaged[hole] = 0
    out = inpaint(damaged, hole, method="generative")
    err = np.abs(out[hole].astype(float) - img[hole]).mean()
    flat = np.abs(img[~hole].mean() - img[hole].astype(float)).mean()
    assert err < 0.5 * flat, (err, flat)


@pytest.mark.slow
def test_shipped_weights_full_scan():
    """A whole 900 x 1330 scan (its speed is measured by +exp=eval_inpainting, not here)."""
    rng = np.random.default_rng(0)
    img = rng.integers(60, 200, (900, 1330)).astype(np.uint8)
    hole = rng.random(img.shape) < 0.01
    inpaint(img[:64, :64], hole[:64, :64], method="generative")  # load the model once
    out = inpaint(img, hole, method="generative", dilation_px=1)
    assert out.shape == img.shape and out.dtype == img.dtype
    from scipy import ndimage

    far = ~ndimage.binary_dilation(hole, iterations=3)
    np.testing.assert_array_equal(out[far], img[far])  # only the (dilated) holes change
