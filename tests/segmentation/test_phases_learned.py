"""segmentation.phases.learned: loading checked against the card, the segment_phases contract, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("keras")

NAMES = ["dark", "mid", "bright"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """An untrained 3-class phase U-Net with a card as train_unet_phases writes it."""
    from data.model_cards import sha256_of
    from segmentation.unet import UNetConfig, build_unet

    d = tmp_path_factory.mktemp("phmodel")
    path = d / "unet_phases.keras"
    build_unet(UNetConfig(depth=2, base_width=2), name="unet_phases", classes=3).save(path)
    card = {"kind": "phases", "sha256": sha256_of(path),
            "phases": {"names": NAMES, "config": {"names": NAMES, "min_size_px": 1}},
            "input": {"tile": 32, "overlap": 8, "size_multiple": 4}}
    path.with_suffix(".json").write_text(json.dumps(card))
    return path


def _copy(src, dst_dir, *, card_edit=None, data_edit=None):
    dst = dst_dir / "unet_phases.keras"
    data = src.read_bytes()
    dst.write_bytes(data_edit(data) if data_edit else data)
    card = json.loads(src.with_suffix(".json").read_text())
    if card_edit:
        card_edit(card)
    dst.with_suffix(".json").write_text(json.dumps(card))
    return dst


def test_softmax_head_and_binary_head_unchanged():
    from segmentation.unet import UNetConfig, build_unet

    cfg = UNetConfig(depth=1, base_width=2)
    assert build_unet(cfg).output_shape == (None, None, None, 1)
    m = build_unet(cfg, classes=4)
    assert m.output_shape == (None, None, None, 4)
    p = np.asarray(m.predict_on_batch(np.random.default_rng(0).random((1, 8, 8, 1), np.float32)))
    assert np.allclose(p.sum(axis=-1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="classes"):
        build_unet(cfg, classes=0)


def test_predict_tiled_blends_class_probabilities():
    from segmentation.tiling import predict_tiled

    img = np.random.default_rng(1).random((50, 70), np.float32)

    def fn(b):  # 2 "classes": x and 1 - x, so the blend must reproduce them per pixel
        return np.concatenate([b, 1.0 - b], axis=-1)

    p = predict_tiled(img, fn, tile=32, overlap=8, scales=(1.0, 0.5))
    assert p.shape == (50, 70, 2)
    assert np.allclose(p.sum(axis=-1), 1.0, atol=1e-5)
    one = predict_tiled(img, fn, tile=32, overlap=8)
    assert np.allclose(one[..., 0], img, atol=1e-5)
    assert np.allclose(predict_tiled(img, lambda b: b, tile=32, overlap=8), img, atol=1e-5)


def test_predict_phases_contract(tiny_model):
    from segmentation.phases.learned import load_phase_model, predict_phases

    model, card = load_phase_model(tiny_model)
    img = np.random.default_rng(2).integers(0, 65535, (45, 61), dtype=np.uint16)
    ex = np.zeros(img.shape, bool)
    ex[:, :4] = True
    lab = predict_phases(img, model, card, exclude=ex)
    assert lab.dtype == np.uint8 and lab.shape == img.shape
    assert (lab[:, :4] == 0).all() and lab[:, 4:].min() >= 1 and lab.max() <= 3
    rgb = np.stack([img >> 8] * 3, axis=-1).astype(np.uint8)
    assert predict_phases(rgb, model, card).shape == img.shape
    from segmentation.phases import PhaseError

    with pytest.raises(PhaseError, match="exclude has shape"):
        predict_phases(img, model, card, exclude=np.zeros((3, 3), bool))


def test_sha_mismatch_and_missing_file_are_one_line_errors(tiny_model, tmp_path):
    from segmentation.phases.learned import PhaseModelError, load_phase_model

    bad = _copy(tiny_model, tmp_path, data_edit=lambda b: b[:-1] + bytes([b[-1] ^ 1]))
    with pytest.raises(PhaseModelError, match="do not match their model card") as e:
        load_phase_model(bad)
    assert "\n" not in str(e.value)
    with pytest.raises(PhaseModelError, match="not found"):
        load_phase_model(tmp_path / "nothing.keras")
    other = tmp_path / "o"
    other.mkdir()
    notphase = _copy(tiny_model, other, card_edit=lambda c: c.pop("kind"))
    with pytest.raises(PhaseModelError, match="not a phase model"):
        load_phase_model(notphase)


def test_make_phase_segmenter(tiny_model):
    from segmentation.phases import PhaseError, PhasesConfig, segment_phases
    from segmentation.phases.learned import make_phase_segmenter

    rng = np.random.default_rng(3)
    img = np.clip(np.repeat([40, 120, 210], 20)[None, :] + rng.normal(0, 3, (30, 60)), 0, 255).astype(np.uint8)
    cfg = PhasesConfig(names=tuple(NAMES))
    classical = make_phase_segmenter("classical", cfg)
    assert np.array_equal(classical(img, pixel_size_um=0.5), segment_phases(img, cfg, pixel_size_um=0.5))
    unet = make_phase_segmenter("unet", {"names": NAMES}, weights=tiny_model)
    lab = unet(img, exclude=np.eye(30, 60, dtype=bool))
    assert lab.shape == img.shape and lab[np.eye(30, 60, dtype=bool)].max() == 0
    with pytest.raises(PhaseError, match=r"differ from the phase model's \['dark', 'mid', 'bright'\]"):
        make_phase_segmenter("unet", PhasesConfig(names=("bright", "mid", "dark")), weights=tiny_model)
    with pytest.raises(PhaseError, match="segmenter must be one of"):
        make_phase_segmenter("magic", cfg)
    with pytest.raises(PhaseError, match="n=auto"):
        make_phase_segmenter("unet", PhasesConfig(names=tuple(NAMES), n="auto"), weights=tiny_model)


def test_shipped_phase_model_loads_and_keeps_its_contract():
    from segmentation.phases import PhasesConfig
    from segmentation.phases.learned import default_weights, make_phase_segmenter

    if not default_weights().is_file():
        pytest.skip("no shipped unet_phases.keras")
    card = json.loads(default_weights().with_suffix(".json").read_text())
    assert card["phases"]["names"] == ["pore", "oxide", "coating", "substrate"]
    assert card["metrics_validation"]["learned_vs_classical"]["n_pixels"] > 0
    seg = make_phase_segmenter("unet", PhasesConfig(names=tuple(card["phases"]["names"])))
    from data.synthetic_phases import coating_scan

    t = coating_scan(shape=(96, 96), thickness_px=40.0, seed=7)
    lab = seg(t.image, pixel_size_um=t.pixel_size_um)
    assert lab.dtype == np.uint8 and set(np.unique(lab)) <= {1, 2, 3, 4}
    # the substrate (brightest, bottom rows) is found where the truth has it
    assert np.mean(lab[t.labels == 4] == 4) > 0.9
