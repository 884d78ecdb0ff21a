"""Tiled inference with model-free predict functions (no Keras needed)."""

import cv2
import numpy as np
import pytest
from scipy import ndimage

from segmentation.tiling import (
    hann_window,
    normalize_scan,
    predict_tiled,
    prob_to_mask,
    tile_starts,
    tta_predict_fn,
)


def _identity(batch):
    assert batch.dtype == np.float32 and batch.ndim == 4 and batch.shape[-1] == 1
    return batch


def _smooth_image(shape, seed=0):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape), 3).astype(np.float32)


@pytest.mark.parametrize("shape", [(100, 130), (64, 64), (5, 7), (1, 40), (97, 33)])
@pytest.mark.parametrize("overlap", [0, 16])
def test_identity_model_reproduces_image(shape, overlap):
    img = _smooth_image(shape)
    out = predict_tiled(img, _identity, tile=32, overlap=overlap, batch_size=3)
    assert out.shape == shape and out.dtype == np.float32
    np.testing.assert_allclose(out, img, atol=1e-5)


def test_batches_respect_batch_size_and_cover_all_tiles():
    calls = []

    def fn(batch):
        calls.append(batch.shape)
        return np.zeros(batch.shape, np.float32)

    out = predict_tiled(np.zeros((150, 200), np.float32), fn, tile=64, overlap=16, batch_size=2)
    assert (out == 0).all()
    assert all(s[0] <= 2 and s[1:] == (64, 64, 1) for s in calls)
    # padded size 166 x 216, step 48: 4 row starts x 5 col starts
    n_tiles = sum(s[0] for s in calls)
    assert n_tiles == len(tile_starts(166, 64, 48)) * len(tile_starts(216, 64, 48))


def test_blending_hides_seams_of_a_local_filter():
    """A 5x5 mean filter run per tile (with its own border effects) matches the full-image filter."""
    img = np.random.default_rng(1).random((120, 160)).astype(np.float32)

    def box(batch):
        return ndimage.uniform_filter(batch, size=(1, 5, 5, 1), mode="reflect")

    want = ndimage.uniform_filter(img, 5, mode="reflect")
    blended = predict_tiled(img, box, tile=32, overlap=16, floor=0.01)
    flat = predict_tiled(img, box, tile=32, overlap=16, floor=1.0)  # box window
    err_blend = np.abs(blended - want)[4:-4, 4:-4]
    err_flat = np.abs(flat - want)[4:-4, 4:-4]
    assert err_blend.max() < 0.5 * err_flat.max()
    assert err_blend.mean() < 0.01


def test_multiscale_average_of_identity():
    img = _smooth_image((90, 110))
    out = predict_tiled(img, _identity, tile=32, overlap=8, scales=(0.5, 1.0, 2.0))
    assert np.abs(out - img).mean() < 0.01


def test_prediction_is_placed_at_the_right_pixels():
    """A model that marks dark pixels: the output mask must land on the input's dark spot."""
    img = np.ones((77, 91), np.float32)
    img[40:45, 60:63] = 0.0
    out = predict_tiled(img, lambda b: (b < 0.5).astype(np.float32), tile=32, overlap=8)
    mask = prob_to_mask(out, 0.5)
    assert np.array_equal(np.argwhere(mask), np.argwhere(img < 0.5))


def test_hann_window():
    w = hann_window(16, floor=0.1)
    assert w.shape == (16, 16) and w.max() == pytest.approx(1.0)
    assert w.min() > 0.09
    np.testing.assert_allclose(w, w[::-1, ::-1])
    assert (hann_window(8, floor=1.0) == 1).all()
    with pytest.raises(ValueError):
        hann_window(8, floor=0)


def test_tile_starts_cover():
    for length in (32, 33, 100, 129):
        s = tile_starts(length, 32, 24)
        assert s[0] == 0 and s[-1] == length - 32 and (np.diff(s) <= 24).all()
    with pytest.raises(ValueError, match="smaller than the tile"):
        tile_starts(10, 32, 8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"overlap": 32}, "overlap"),
        ({"tile": 30, "multiple": 8}, "multiple"),
        ({"batch_size": 0}, "batch_size"),
        ({"scales": (0.0,)}, "scales"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        predict_tiled(np.zeros((40, 40), np.float32), _identity, **{"tile": 32, "overlap": 8, **kwargs})


def test_bad_images_and_model_outputs():
    with pytest.raises(ValueError, match="2-D"):
        predict_tiled(np.zeros((40, 40, 3)), _identity, tile=32)
    with pytest.raises(ValueError, match="NaN"):
        predict_tiled(np.full((40, 40), np.nan), _identity, tile=32)
    with pytest.raises(ValueError, match="predict_fn returned"):
        predict_tiled(np.zeros((40, 40)), lambda b: b[:, :16], tile=32, overlap=8)


def test_normalize_scan_invariances_and_errors():
    rng = np.random.default_rng(0)
    img8 = rng.integers(50, 200, (60, 80)).astype(np.uint8)
    a = normalize_scan(img8)
    assert a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    # uint16 with a different exposure (affine change) gives the same result
    img16 = (img8.astype(np.uint16) * 200 + 1000).astype(np.uint16)
    np.testing.assert_allclose(normalize_scan(img16), a, atol=1e-5)
    assert abs(float(np.median(a)) - 0.5) < 0.01
    with pytest.raises(ValueError, match="constant"):
        normalize_scan(np.full((10, 10), 7, np.uint8))
    with pytest.raises(ValueError, match="2-D"):
        normalize_scan(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        normalize_scan(np.array([[0.0, np.nan], [1.0, 2.0]]))


def test_prob_to_mask_min_area():
    p = np.zeros((20, 20), np.float32)
    p[2:6, 2:6] = 0.9
    p[15, 15] = 0.9
    m = prob_to_mask(p, 0.5, min_area_px=4)
    assert m.sum() == 16 and not m[15, 15]
    with pytest.raises(ValueError, match="threshold"):
        prob_to_mask(p, 1.5)


def test_prob_to_mask_two_levels_keeps_every_object_and_trims_halos():
    p = np.zeros((30, 30), np.float32)
    p[2:12, 2:12] = 0.3  # halo of a large impurity ...
    p[4:10, 4:10] = 0.95  # ... around its core
    p[20:23, 20:23] = 0.25  # a faint small one, never above the extent threshold
    one = prob_to_mask(p, 0.2)
    two = prob_to_mask(p, 0.2, extent_threshold=0.5)
    assert one.sum() == 100 + 9
    # the core alone (0.3 < min(0.5, 0.6 * 0.95)); the faint object keeps its pixels >= 0.6 * 0.25
    assert two[4:10, 4:10].all() and two.sum() == 36 + 9
    n_one = cv2.connectedComponents(one.view(np.uint8))[0]
    n_two = cv2.connectedComponents(two.view(np.uint8))[0]
    assert n_one == n_two == 3
    # the size filter applies at the detection threshold
    assert prob_to_mask(p, 0.2, min_area_px=10, extent_threshold=0.5).sum() == 36
    with pytest.raises(ValueError, match="extent_threshold"):
        prob_to_mask(p, 0.2, extent_threshold=1.0)
    with pytest.raises(ValueError, match="extent_rel_peak"):
        prob_to_mask(p, 0.2, extent_threshold=0.5, extent_rel_peak=0.0)


@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_tta_maps_predictions_back(n):
    img = _smooth_image((70, 90))
    out = predict_tiled(img, tta_predict_fn(_identity, transforms=n), tile=32, overlap=8)
    np.testing.assert_allclose(out, img, atol=1e-5)
    # an orientation-dependent model is averaged: a left-edge detector becomes symmetric
    calls = []

    def left_bias(b):
        calls.append(b.shape[0])
        out = np.zeros(b.shape, np.float32)
        out[:, :, :4] = 1.0
        return out

    tile = np.zeros((3, 16, 16, 1), np.float32)
    avg = tta_predict_fn(left_bias, transforms=n)(tile)
    assert calls == [3 * n]  # one call with all orientations
    if n >= 4:
        np.testing.assert_allclose(avg[0], avg[0, :, ::-1], atol=1e-6)  # (B, t, t)
    with pytest.raises(ValueError, match="transforms"):
        tta_predict_fn(_identity, transforms=3)


from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays


@settings(max_examples=60, deadline=None)
@given(arrays(st.sampled_from([np.uint8, np.uint16]), st.tuples(st.integers(1, 40), st.integers(1, 40))),
       st.lists(st.floats(0, 100), min_size=1, max_size=4))
def test_integer_percentiles_are_numpys(a, qs):
    """normalize_scan reads uint8 / uint16 quartiles off a histogram: the same numbers as np.percentile."""
    from segmentation.tiling import _int_percentiles

    assert np.allclose(_int_percentiles(a, qs), np.percentile(a.astype(np.float64), qs), rtol=0, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_normalize_scan_of_integers_is_the_float_formula(dtype):
    rng = np.random.default_rng(5)
    a = rng.integers(0, 200 if dtype == np.uint8 else 4000, (300, 200)).astype(dtype)
    q25, q50, q75 = np.percentile(a.astype(np.float64), [25, 50, 75])
    ref = np.clip(0.5 + 0.2 * (a.astype(np.float32) - np.float32(q50)) / np.float32(q75 - q25), 0, 1)
    assert np.array_equal(normalize_scan(a), ref)
    assert np.array_equal(normalize_scan(a), normalize_scan(a.astype(np.float64)))


def test_plan_tile_minimises_the_pixels_computed():
    from segmentation.tiling import plan_tile, tile_count

    for shape in ((874, 1330), (1024, 1024), (300, 2000), (5000, 5000), (100, 90)):
        t = plan_tile(shape, overlap=32)
        assert 256 <= t <= 512 and t % 16 == 0
        best = min(tile_count(shape, tile=s, overlap=32) * s * s for s in range(256, 513, 16))
        assert tile_count(shape, tile=t, overlap=32) * t * t == best
    assert plan_tile((874, 1330), overlap=32) == 480
    with pytest.raises(ValueError):
        plan_tile((10, 10), overlap=32, min_tile=512, max_tile=256)


def test_predict_tiled_auto_tile_matches_that_tile():
    from segmentation.tiling import plan_tile, predict_tiled

    rng = np.random.default_rng(0)
    img = rng.random((300, 700)).astype(np.float32)

    def fn(b):
        return 1.0 / (1.0 + np.exp(-b))

    t = plan_tile(img.shape, overlap=32)
    np.testing.assert_array_equal(predict_tiled(img, fn, tile="auto"), predict_tiled(img, fn, tile=t))
    with pytest.raises(ValueError, match="auto"):
        predict_tiled(img, fn, tile="big")


def test_auto_tile_is_the_plan_predict_tiled_uses():
    from segmentation.tiling import auto_tile, plan_tile

    # depth 3 and 4 (multiple 8, 16) share the 16-px grid; depth 5 needs a 32-px grid
    assert auto_tile((874, 1330), overlap=32, multiple=8) == plan_tile((874, 1330), overlap=32) == 480
    assert auto_tile((874, 1330), overlap=32, multiple=32) % 32 == 0
    seen = []

    def fn(batch):
        seen.append(batch.shape[1])
        return np.zeros(batch.shape[:3], np.float32)

    img = np.zeros((300, 700), np.float32)
    predict_tiled(img, fn, tile="auto", overlap=32, multiple=32)
    assert set(seen) == {auto_tile(img.shape, overlap=32, multiple=32)}
    with pytest.raises(ValueError, match="multiple"):
        auto_tile((100, 100), overlap=0, multiple=0)


def test_normalize_scan_leaves_excluded_pixels_out_of_its_statistics():
    """A burned-in black data bar does not move the median / IQR the field is normalised with."""
    from segmentation.tiling import normalize_scan

    rng = np.random.default_rng(5)
    field = np.clip(rng.normal(150, 20, (300, 400)), 0, 255).astype(np.uint8)
    scan = np.vstack([field, np.zeros((60, 400), np.uint8)])  # the data bar
    bar = np.zeros(scan.shape, bool)
    bar[300:] = True
    got = normalize_scan(scan, exclude=bar)
    np.testing.assert_array_equal(got[:300], normalize_scan(field))  # as if the bar were not there
    assert got.shape == scan.shape and got[300:].max() == 0.0  # the bar is still mapped (clipped)
    assert not np.array_equal(normalize_scan(scan)[:300], got[:300])  # without exclude it moves the field
    np.testing.assert_array_equal(normalize_scan(scan, exclude=np.zeros(scan.shape, bool)), normalize_scan(scan))
    with pytest.raises(ValueError, match="shape"):
        normalize_scan(scan, exclude=bar[:10])
