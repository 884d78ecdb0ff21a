"""Impurity outlines from the scan: depth_extent and the shipped post-processing chain."""

import numpy as np
import pytest
from scipy import ndimage

from segmentation.refine import depth_extent, impurity_postprocess


def _spot_scan(shape=(80, 80), seed=0):
    """Gaussian dark spots (blurred impurities) on a noisy matrix; their half-depth masks."""
    rng = np.random.default_rng(seed)
    r, c = np.mgrid[: shape[0], : shape[1]]
    img = np.full(shape, 180.0) + rng.normal(0, 1.0, shape)
    half = np.zeros(shape, bool)
    for (y, x, s, depth) in [(20, 20, 2.0, 80), (20, 60, 3.0, 60), (60, 30, 1.5, 40), (60, 62, 2.5, 100)]:
        g = np.exp(-((r - y) ** 2 + (c - x) ** 2) / (2 * s * s))
        img -= depth * g
        half |= g >= 0.5
    return img, half


def test_depth_extent_cuts_a_halo_back_to_half_depth():
    img, half = _spot_scan()
    detected = ndimage.binary_dilation(half, iterations=3)  # the network's generous outline
    out = depth_extent(img, detected, fraction=0.5, smooth_sigma=0.0)
    assert (out & ~detected).sum() == 0  # never grows
    assert abs(int(out.sum()) - int(half.sum())) <= 0.15 * half.sum()  # about the half-depth area
    assert ndimage.label(out, np.ones((3, 3)))[1] == 4  # no object lost
    deeper = depth_extent(img, detected, fraction=0.8, smooth_sigma=0.0)
    assert deeper.sum() < out.sum()


def test_depth_extent_keeps_objects_no_darker_than_their_ring():
    img = np.full((30, 30), 100.0)
    m = np.zeros((30, 30), bool)
    m[10:14, 10:14] = True  # a label on plain matrix: nothing to cut to
    np.testing.assert_array_equal(depth_extent(img, m), m)
    whole = np.ones((10, 10), bool)  # no ring at all
    np.testing.assert_array_equal(depth_extent(np.random.default_rng(0).random((10, 10)), whole), whole)
    assert not depth_extent(img, np.zeros_like(m)).any()


def test_impurity_postprocess_applies_the_detection_limit_last():
    img, half = _spot_scan()
    prob = ndimage.gaussian_filter(ndimage.binary_dilation(half, iterations=2).astype(float), 1.0)
    prob[5, 75] = prob[5, 76] = 0.9  # a 2-px speck
    plain = impurity_postprocess(prob, None, 0.2, min_area_px=4)
    assert not plain[5, 75:77].any()
    refined = impurity_postprocess(prob, img, 0.2, min_area_px=4, depth_fraction=0.5)
    assert refined.sum() < plain.sum() and not (refined & ~plain).any()
    sizes = np.bincount(ndimage.label(refined, np.ones((3, 3)))[0].ravel())[1:]
    assert sizes.min() >= 4
    with pytest.raises(ValueError, match="needs the scan"):
        impurity_postprocess(prob, None, 0.2, depth_fraction=0.5)


@pytest.mark.parametrize("kw", [{"fraction": 0.0}, {"fraction": 1.0}, {"smooth_sigma": -1}, {"ring_width": 0}])
def test_depth_extent_bad_options(kw):
    with pytest.raises(ValueError):
        depth_extent(np.zeros((5, 5)), np.zeros((5, 5), bool), **kw)
    with pytest.raises(ValueError, match="one shape"):
        depth_extent(np.zeros((5, 5)), np.zeros((5, 4), bool))


def test_min_peak_prob_drops_objects_without_a_confident_pixel():
    from segmentation.refine import impurity_postprocess

    prob = np.zeros((30, 30), np.float32)
    prob[2:6, 2:6] = 0.2          # faint object: peak 0.2
    prob[10:15, 10:15] = 0.2
    prob[12, 12] = 0.9            # confident object: its extent still comes from the threshold
    m = impurity_postprocess(prob, None, 0.1, min_peak_prob=0.5)
    assert not m[2:6, 2:6].any() and m[10:15, 10:15].all()
    assert impurity_postprocess(prob, None, 0.1).sum() == 16 + 25
    with pytest.raises(ValueError, match="min_peak_prob"):
        impurity_postprocess(prob, None, 0.3, min_peak_prob=0.2)


def test_grouped_statistics_match_scipy_with_ties_and_empty_labels():
    # label_median / label_minimum (data.registration) against scipy.ndimage on integer values
    # (many ties) with labels that hold no pixel
    from scipy import ndimage

    from data.registration import label_median, label_minimum

    rng = np.random.default_rng(3)
    for _ in range(20):
        lab = rng.integers(0, 12, (40, 50))
        lab[lab == 5] = 0  # label 5 empty
        vals = rng.integers(0, 6, lab.shape).astype(np.float32)
        ids = np.arange(1, 15)  # 12..14 empty too
        with np.errstate(invalid="ignore"):
            want_med = np.asarray(ndimage.median(vals, lab, ids), float)
            want_min = np.asarray(ndimage.minimum(vals, lab, ids), float)
        empty = np.bincount(lab.ravel(), minlength=15)[1:] == 0
        want_med[empty] = np.nan
        want_min[empty] = np.nan
        np.testing.assert_array_equal(label_median(vals, lab, 14), want_med)
        np.testing.assert_array_equal(label_minimum(vals, lab, 14), want_min)


def test_depth_extent_smoothing_is_scipys_gaussian():
    # the OpenCV blur in depth_extent uses scipy.ndimage.gaussian_filter's kernel and border
    import cv2
    from scipy import ndimage

    rng = np.random.default_rng(4)
    img = rng.integers(0, 256, (37, 53)).astype(np.float32)
    for sigma in (0.7, 1.0, 1.1, 1.5, 2.3):
        k = 2 * int(4.0 * sigma + 0.5) + 1
        got = cv2.GaussianBlur(img, (k, k), sigma, borderType=cv2.BORDER_REFLECT)
        np.testing.assert_allclose(got, ndimage.gaussian_filter(img, sigma), atol=2e-3)
