"""inpainting.inpaint and the classical methods: contract, bad input, tiling, quality on smooth images."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inpainting
from inpainting import InpaintingError, dilate_mask, hole_tiles, inpaint, inpaint_config, tiled_fill
from inpainting.classical import CLASSICAL_METHODS, inpaint_classical

REPO = Path(__file__).resolve().parents[2]

CLASSICAL = list(CLASSICAL_METHODS)


def _ramp(shape=(96, 128), dtype=np.uint8, seed=0):
    """A smooth gradient with mild noise: any sane inpainter fills it closely."""
    rng = np.random.default_rng(seed)
    r, c = np.mgrid[: shape[0], : shape[1]]
    img = 60 + 0.6 * r + 0.4 * c + rng.normal(0, 1.0, shape)
    return np.clip(img, 0, 255).astype(dtype)


def _holes(shape=(96, 128)):
    m = np.zeros(shape, bool)
    m[20:28, 30:36] = True
    m[60:63, 90:100] = True
    m[0:4, 0:4] = True  # at the corner
    m[90:96, 120:128] = True  # at the opposite corner
    return m


def test_import_does_not_load_keras():
    code = "import sys, inpainting; sys.exit(int('keras' in sys.modules or 'tensorflow' in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


@pytest.mark.parametrize("method", CLASSICAL)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64, np.int16])
def test_same_shape_dtype_and_unchanged_outside(method, dtype):
    img = _ramp(dtype=dtype)
    hole = _holes()
    out = inpaint(img, hole, method=method, dilation_px=1)
    grown = dilate_mask(hole, 1)
    assert out.shape == img.shape and out.dtype == img.dtype
    np.testing.assert_array_equal(out[~grown], img[~grown])
    assert not np.shares_memory(out, img)


@pytest.mark.parametrize("method", CLASSICAL)
def test_fills_smooth_image_closely(method):
    img = _ramp()
    hole = _holes()
    damaged = img.copy()
    damaged[hole] = 0  # the hole content must not leak into the result
    out = inpaint(damaged, hole, method=method)
    err = np.abs(out[hole].astype(float) - img[hole].astype(float)).mean()
    assert err < 4.0, err
    # and far better than leaving the damage in place
    assert err < 0.1 * np.abs(damaged[hole].astype(float) - img[hole]).mean()


@pytest.mark.parametrize("method", CLASSICAL)
def test_tiled_equals_hole_pixels_and_only_touches_hole_tiles(method):
    img = _ramp((200, 260))
    hole = np.zeros(img.shape, bool)
    hole[10:16, 10:18] = True  # only tile (0, 0) of a 64-grid
    hole[150:155, 200:204] = True  # only tile (128, 192)
    seen = []

    def spy(p, h):
        seen.append(p.shape)
        return inpainting.classical.fill_opencv(p, h, method="telea")

    out = tiled_fill(img, hole, spy, tile_size=64, margin=8)
    assert len(seen) == 2 and all(s[0] <= 80 and s[1] <= 80 for s in seen)
    np.testing.assert_array_equal(out[~hole], img[~hole])
    small = inpaint_classical(img, hole, method=method, tile_size=64, margin=16)
    whole = inpaint_classical(img, hole, method=method, tile_size=1024)
    # small holes far from tile edges: tiling with enough context gives (nearly) the same fill
    assert np.abs(small.astype(int) - whole.astype(int)).max() <= 2


def test_hole_tiles_grid():
    hole = np.zeros((100, 70), bool)
    hole[0, 0] = hole[99, 69] = hole[50, 40] = True
    tiles = hole_tiles(hole, 32)
    assert tiles.tolist() == [[0, 0], [32, 32], [96, 64]]
    assert hole_tiles(np.zeros((5, 5), bool), 4).shape == (0, 2)


@pytest.mark.parametrize("method", [*CLASSICAL, "generative", "none"])
def test_empty_mask_returns_input_unchanged(method):
    img = _ramp((900, 1330))
    out = inpaint(img, np.zeros(img.shape, bool), method=method, dilation_px=3)
    np.testing.assert_array_equal(out, img)
    assert out.dtype == img.dtype


def test_none_method_is_identity():
    img = _ramp()
    np.testing.assert_array_equal(inpaint(img, _holes(), method="none"), img)


def test_nan_inside_hole_is_allowed_outside_is_not():
    img = _ramp(dtype=np.float64)
    hole = _holes()
    bad = img.copy()
    bad[hole] = np.nan
    out = inpaint(bad, hole, method="telea")
    assert np.isfinite(out).all()
    bad[50, 5] = np.nan
    with pytest.raises(InpaintingError, match="NaN"):
        inpaint(bad, hole, method="telea")


@pytest.mark.parametrize(
    "pixels, mask, match",
    [
        (np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), bool), "2-D"),
        (np.zeros(10, np.uint8), np.zeros(10, bool), "2-D"),
        (np.zeros((10, 10), np.uint8), np.zeros((10, 11), bool), "differs"),
        (np.zeros((10, 10), np.uint8), np.zeros((10, 10, 1), bool), "mask must be 2-D"),
        (np.zeros((10, 10), bool), np.zeros((10, 10), bool), "dtype"),
        (np.zeros((10, 10), complex), np.zeros((10, 10), bool), "dtype"),
    ],
)
def test_bad_input(pixels, mask, match):
    with pytest.raises(InpaintingError, match=match):
        inpaint(pixels, mask, method="telea")


def test_mask_covering_almost_everything():
    img = _ramp()
    mask = np.ones(img.shape, bool)
    with pytest.raises(InpaintingError, match="whole image"):
        inpaint(img, mask, method="telea", max_hole_fraction=1.0)
    mask[:5, :5] = False
    with pytest.raises(InpaintingError, match="max_hole_fraction"):
        inpaint(img, mask, method="telea")
    # the documented way to force it
    out = inpaint(img, mask, method="telea", max_hole_fraction=1.0)
    assert out.shape == img.shape
    # dilation counts: a 40 % mask grown past 50 % is refused
    m40 = np.zeros(img.shape, bool)
    m40[::5] = True
    m40[1::5] = True
    with pytest.raises(InpaintingError, match="max_hole_fraction"):
        inpaint(img, m40, method="telea", dilation_px=1)


def test_bad_options():
    img, hole = _ramp(), _holes()
    with pytest.raises(InpaintingError, match="unknown inpainting method"):
        inpaint(img, hole, method="deepfill")
    with pytest.raises(InpaintingError, match="dilation_px"):
        inpaint(img, hole, method="telea", dilation_px=-1)
    with pytest.raises(InpaintingError, match="unknown inpainting option"):
        inpaint_config({"method": "telea", "radious": 3})


def test_config_mapping_roundtrip():
    cfg = inpaint_config({"method": "ns", "dilation_px": 2, "radius": 5})
    assert cfg.method == "ns" and cfg.dilation_px == 2 and cfg.radius == 5


def test_dilate_mask():
    m = np.zeros((9, 9), bool)
    m[4, 4] = True
    assert dilate_mask(m, 0).sum() == 1
    assert dilate_mask(m, 2).sum() == 13  # disc of radius 2
    with pytest.raises(ValueError):
        dilate_mask(m, -1)


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(8, 40),
    w=st.integers(8, 40),
    seed=st.integers(0, 10_000),
    method=st.sampled_from(CLASSICAL),
    tile=st.integers(16, 48),
)
def test_property_contract(h, w, seed, method, tile):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w)).astype(np.uint8)
    mask = rng.random((h, w)) < 0.1
    out = inpaint(img, mask, method=method, tile_size=tile, margin=4, max_hole_fraction=1.0)
    assert out.shape == img.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[~mask], img[~mask])
