"""Classical impurity segmentation on synthetic images with known objects, and on a real sample."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from segmentation import ClassicalConfig, segment_impurities, split_touching
from segmentation.classical import preprocess

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"


def _blobs():
    img = np.full((120, 160), 170, np.uint8)
    img[:, 80:] = 110  # a darker grain must not become impurity
    centers = [(20, 20), (60, 40), (100, 120), (30, 130)]
    for r, c in centers:
        cv2.circle(img, (c, r), 5, 40, -1)
    return img, centers


@pytest.mark.parametrize("denoise", ["none", "gaussian", "bilateral", "nlmeans"])
def test_finds_dark_blobs_not_dark_grain(denoise):
    img, centers = _blobs()
    lab = segment_impurities(img, ClassicalConfig(denoise=denoise, background_radius=8))
    assert lab.dtype == np.int32
    assert lab.max() == len(centers)
    for r, c in centers:
        assert lab[r, c] > 0
    assert (lab[:, 80:] > 0).mean() < 0.05


def test_bright_polarity_and_thresholds():
    img, centers = _blobs()
    inv = 255 - img
    for th, val in [("otsu", 0), ("fixed", 40), ("percentile", 98)]:
        lab = segment_impurities(inv, ClassicalConfig(polarity="bright", threshold=th, threshold_value=val))
        assert all(lab[r, c] > 0 for r, c in centers), th


def test_watershed_splits_touching_disks():
    m = np.zeros((60, 80), bool)
    yy, xx = np.mgrid[:60, :80]
    m |= (yy - 30) ** 2 + (xx - 25) ** 2 <= 12**2
    m |= (yy - 30) ** 2 + (xx - 47) ** 2 <= 12**2
    lab = split_touching(m, min_distance=5)
    assert lab.max() == 2
    assert lab[30, 25] != lab[30, 47]
    assert ((lab > 0) == m).all()


def test_empty_constant_and_16bit():
    assert segment_impurities(np.full((50, 50), 7, np.uint8)).max() == 0
    img, centers = _blobs()
    lab16 = segment_impurities(img.astype(np.uint16) * 257)
    assert lab16.max() == len(centers)
    for opt in (dict(clahe=True), dict(equalize=True)):
        assert preprocess(img, ClassicalConfig(**opt)).dtype == np.uint8


def test_bad_options():
    with pytest.raises(ValueError, match="denoise"):
        ClassicalConfig(denoise="median")
    with pytest.raises(ValueError, match="2-D"):
        segment_impurities(np.zeros((4, 4, 3), np.uint8))


def test_real_sample_object_recall():
    """On a bundled real scan, most labelled impurities are found (object level, any overlap)."""
    from scipy import ndimage

    img = cv2.imread(str(SAMPLES / "scans" / "10.jpg"), cv2.IMREAD_GRAYSCALE)
    gt = cv2.imread(str(SAMPLES / "impurity_masks" / "10.png"), cv2.IMREAD_GRAYSCALE) > 127
    lab = segment_impurities(img)
    gl, n = ndimage.label(gt, structure=np.ones((3, 3)))
    found = np.unique(gl[(lab > 0) & gt])
    recall = (found > 0).sum() / n
    assert recall > 0.5


def test_large_impurities_are_found_whole():
    """An impurity much wider than the first top-hat's disk comes out whole, not as a ring."""
    img = np.full((200, 200), 170, np.uint8)
    cv2.circle(img, (100, 100), 20, 40, -1)
    cv2.circle(img, (30, 30), 4, 40, -1)
    lab = segment_impurities(img)
    yy, xx = np.mgrid[:200, :200]
    disk = (yy - 100) ** 2 + (xx - 100) ** 2 <= 19**2
    assert (lab[disk] > 0).mean() > 0.95
    assert lab[30, 30] > 0
    off = segment_impurities(img, ClassicalConfig(large_radius=0, fill_holes=False))
    assert (off[disk] > 0).mean() < 0.6
