"""Label registration: a known misregistration of the labels is found and undone."""

import doctest

import cv2
import numpy as np
import pytest

import data.registration as registration
from data.registration import darkness, local_label_shifts, register_labels


def _scan_with_spots(shape=(400, 600), n=900, seed=0):
    """A bright noisy matrix with small dark spots, and the exact spot mask."""
    rng = np.random.default_rng(seed)
    img = rng.normal(190, 6, shape)
    truth = np.zeros(shape, bool)
    rr = rng.integers(8, shape[0] - 8, n)
    cc = rng.integers(8, shape[1] - 8, n)
    size = rng.integers(2, 6, n)
    for r, c, s in zip(rr, cc, size):
        truth[r : r + s, c : c + s] = True
    img[truth] = rng.normal(60, 6, int(truth.sum()))
    return np.clip(img, 0, 255).astype(np.uint8), truth


def _warp(mask, matrix):
    """Move every pixel p of ``mask`` to p + matrix @ [p, 1] (forward map, nearest)."""
    rr, cc = np.nonzero(mask)
    d = matrix @ np.vstack([rr, cc, np.ones_like(rr)])
    out = np.zeros_like(mask)
    r2, c2 = np.rint(rr + d[0]).astype(int), np.rint(cc + d[1]).astype(int)
    ok = (r2 >= 0) & (r2 < mask.shape[0]) & (c2 >= 0) & (c2 < mask.shape[1])
    out[r2[ok], c2[ok]] = True
    return out


def test_doctest():
    assert doctest.testmod(registration).failed == 0


def test_recovers_a_spatially_varying_shift():
    img, truth = _scan_with_spots()
    # labels drawn 1% too large vertically and shifted: 3 px off at one border, 1 px at the other
    off = np.array([[0.01, 0.0, -2.0], [0.0, 0.0, 1.5]])
    labels = _warp(truth, off)
    fit = register_labels(img, labels, grid=(4, 4), min_label_px=100)
    # the fitted shift undoes the misregistration wherever we look
    for r, c in [(20, 20), (200, 300), (380, 580)]:
        moved = np.array([r, c]) + off @ np.array([r, c, 1.0])
        back = moved + fit.shift_at(*moved)
        assert np.allclose(back, [r, c], atol=0.6), (r, c, back)
    iou_before = (labels & truth).sum() / (labels | truth).sum()
    iou_after = (fit.mask & truth).sum() / (fit.mask | truth).sum()
    # (2-5 px spots: a residual sub-pixel error after nearest-neighbour warping costs IoU)
    assert iou_before < 0.3 and iou_after > max(0.4, 1.8 * iou_before)
    assert fit.darkness_after > fit.darkness_before
    assert fit.max_shift_px == pytest.approx(2.5, abs=0.4)  # hypot(2, 1.5) at the corners


def test_aligned_labels_stay_put():
    img, truth = _scan_with_spots(seed=1)
    fit = register_labels(img, truth, grid=(3, 3), min_label_px=100)
    assert fit.max_shift_px < 0.5
    assert (fit.mask == truth).mean() > 0.999


def test_few_blocks_fit_one_constant_shift():
    img, truth = _scan_with_spots(seed=2)
    labels = np.roll(truth, (2, -1), axis=(0, 1))
    fit = register_labels(img, labels, grid=(1, 2), min_label_px=100)
    assert fit.matrix[:, :2] == pytest.approx(np.zeros((2, 2)))
    assert fit.matrix[:, 2] == pytest.approx([-2, 1], abs=0.3)


def test_no_labels_no_change():
    img, _ = _scan_with_spots(seed=3)
    fit = register_labels(img, np.zeros(img.shape, bool))
    assert not fit.mask.any() and np.all(fit.matrix == 0) and len(fit.block_centres) == 0


def test_objects_keep_their_size():
    img, truth = _scan_with_spots(seed=4)
    labels = np.roll(truth, (1, 2), axis=(0, 1))
    fit = register_labels(img, labels, grid=(2, 3), min_label_px=100)
    n_before = cv2.connectedComponents(labels.view(np.uint8), connectivity=8)[0]
    n_after = cv2.connectedComponents(fit.mask.view(np.uint8), connectivity=8)[0]
    assert n_after == n_before
    assert abs(int(fit.mask.sum()) - int(labels.sum())) <= 0.01 * labels.sum()


def test_bad_input():
    img, truth = _scan_with_spots(shape=(100, 120), n=50)
    with pytest.raises(ValueError, match="one shape"):
        register_labels(img, truth[:-1])
    with pytest.raises(ValueError, match="grid"):
        local_label_shifts(img, truth, grid=(0, 2))
    with pytest.raises(ValueError, match="2-D"):
        darkness(np.zeros((3, 4, 5)))


def test_label_contrast_tells_faint_labels_from_dark_spots():
    from data.registration import label_contrast

    img, truth = _scan_with_spots(seed=5, n=300)
    labels = truth.copy()
    ghost = np.zeros_like(truth)
    for r, c in [(50, 50), (150, 300), (300, 500)]:  # labels where the scan shows nothing
        ghost[r : r + 4, c : c + 4] = True
    ghost &= ~cv2.dilate(truth.view(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    contrast, level = label_contrast(img, labels | ghost)
    from scipy import ndimage

    lab, n = ndimage.label(labels | ghost, np.ones((3, 3)))
    is_ghost = np.asarray(ndimage.maximum(ghost, lab, np.arange(1, n + 1)), bool)
    assert is_ghost.sum() >= 2
    assert level.shape == contrast.shape
    assert np.all(contrast[is_ghost] < level[is_ghost])
    assert np.mean(contrast[~is_ghost] > level[~is_ghost]) > 0.95
    with pytest.raises(ValueError, match="one shape"):
        label_contrast(img, labels[:-1])
