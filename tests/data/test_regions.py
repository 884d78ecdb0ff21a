"""RegionTable construction: columns, geometry, calibration, edge cases, speed-relevant structure."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data import REGION_COLUMNS, binarize_mask, regions_from_labels, regions_from_mask, relabel_sequential


def disk(n, r, center=None):
    cy, cx = center if center else (n // 2, n // 2)
    yy, xx = np.mgrid[:n, :n]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_columns_and_dtypes():
    t = regions_from_mask(disk(41, 10))
    assert list(t.columns) == list(REGION_COLUMNS)
    assert t["region_id"].dtype == np.int64 and t["area_px"].dtype == np.int64
    assert len(t) == 1


def test_disk_geometry():
    r = 10
    t = regions_from_mask(disk(41, r)).iloc[0]
    assert (t.bbox_rmin, t.bbox_cmin, t.bbox_rmax, t.bbox_cmax) == (10, 10, 30, 30)
    assert t.centroid_row == pytest.approx(20) and t.centroid_col == pytest.approx(20)
    assert t.area_px == disk(41, r).sum()
    assert t.enclosing_radius_px == pytest.approx(r + 0.5, abs=0.05)
    assert t.feret_max_px == pytest.approx(2 * r + 1, abs=0.1)
    assert t.feret_min_px == pytest.approx(2 * r + 1, abs=0.6)
    assert t.eq_diameter_px == pytest.approx(np.sqrt(4 * t.area_px / np.pi))
    assert 2 * np.pi * r * 0.9 < t.perimeter_px < 2 * np.pi * r * 1.1
    assert t.solidity > 0.9


def test_line_orientation_and_feret():
    m = np.zeros((30, 30), bool)
    m[5, 3:23] = True  # horizontal line: 1 x 20
    t = regions_from_mask(m).iloc[0]
    assert t.feret_max_px == pytest.approx(20)
    assert t.feret_min_px == pytest.approx(1)
    assert abs(abs(t.orientation) - np.pi / 2) < 1e-9  # major axis along col, 90 deg from row axis
    m2 = m.T
    assert regions_from_mask(m2).iloc[0].orientation == pytest.approx(0)


def test_single_pixel_and_min_area():
    m = np.zeros((10, 10), bool)
    m[0, 0] = True
    m[5:8, 5:8] = True
    t = regions_from_mask(m)
    assert t["area_px"].tolist() == [1, 9]
    one = t.iloc[0]
    assert one.perimeter_px == 0 and one.enclosing_radius_px == pytest.approx(0.5, abs=1e-3)
    assert one.feret_max_px == 1 and one.solidity == pytest.approx(1.0)
    t2 = regions_from_mask(m, min_area_px=2)
    assert t2["area_px"].tolist() == [9] and t2["region_id"].tolist() == [1]


def test_empty_and_one_impurity():
    t = regions_from_mask(np.zeros((20, 20), np.uint8), pixel_size_um=0.5)
    assert len(t) == 0 and list(t.columns[:15]) == list(REGION_COLUMNS) and "area_um2" in t
    t1 = regions_from_mask(disk(21, 3))
    assert len(t1) == 1 and t1.region_id.tolist() == [1]


def test_calibrated_twins():
    t = regions_from_mask(disk(41, 10), pixel_size_um=0.5).iloc[0]
    assert t.area_um2 == pytest.approx(t.area_px * 0.25)
    assert t.eq_diameter_um == pytest.approx(t.eq_diameter_px * 0.5)
    assert t.feret_max_um == pytest.approx(t.feret_max_px * 0.5)


def test_connectivity():
    m = np.eye(5, dtype=bool)
    assert len(regions_from_mask(m)) == 1
    assert len(regions_from_mask(m, connectivity=1)) == 5


def test_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        regions_from_mask(np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="integer"):
        regions_from_labels(np.zeros((3, 3), float))
    with pytest.raises(ValueError, match="pixel_size_um"):
        regions_from_mask(disk(11, 2), pixel_size_um=-1)


def test_relabel_sequential_matches_region_ids():
    rng = np.random.default_rng(1)
    m = rng.random((80, 80)) > 0.8
    from data import label_mask

    lab, _ = label_mask(m)
    lab2 = relabel_sequential(lab, min_area_px=3)
    t = regions_from_labels(lab2)
    areas = np.bincount(lab2.ravel())[1:]
    np.testing.assert_array_equal(t["area_px"].to_numpy(), areas)
    assert t["region_id"].tolist() == list(range(1, len(t) + 1))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_matches_skimage_regionprops(seed):
    from skimage.measure import label, regionprops_table

    rng = np.random.default_rng(seed)
    m = rng.random((40, 50)) > 0.75
    t = regions_from_mask(m)
    ref = pd.DataFrame(regionprops_table(label(m, connectivity=2), properties=("label", "area", "centroid", "bbox")))
    assert len(t) == len(ref)
    np.testing.assert_array_equal(t["area_px"], ref["area"])
    np.testing.assert_allclose(t["centroid_row"], ref["centroid-0"])
    np.testing.assert_allclose(t["centroid_col"], ref["centroid-1"])
    np.testing.assert_array_equal(t["bbox_rmin"], ref["bbox-0"])
    np.testing.assert_array_equal(t["bbox_cmax"], ref["bbox-3"] - 1)  # inclusive
    assert (t["solidity"] <= 1).all() and (t["solidity"] > 0).all()
    assert (t["feret_max_px"] >= t["feret_min_px"]).all()


def test_binarize_mask_polarity():
    m = np.zeros((10, 10), np.uint8)
    m[:2] = 255
    assert binarize_mask(m).sum() == 20
    assert binarize_mask(255 - m).sum() == 20  # auto: minority class
    assert binarize_mask(m, polarity="black").sum() == 80
    with pytest.raises(ValueError, match="polarity"):
        binarize_mask(m, polarity="grey")


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint16, np.uint8, np.uint32, np.uint64])
def test_relabel_sequential_equals_the_plain_lookup(dtype):
    """The int32 lookup with np.take gives what an int64 lookup table and a cast give, for every label dtype."""
    rng = np.random.default_rng(7)
    hi = min(np.iinfo(dtype).max, 300)
    labels = rng.integers(0, hi, (60, 70)).astype(dtype)
    labels[rng.random(labels.shape) < 0.5] = 0
    for min_area in (1, 2, 5):
        area = np.bincount(labels.ravel().astype(np.intp))
        keep = area >= min_area
        keep[0] = False
        lut = np.zeros(area.size, np.int64)
        lut[keep] = np.arange(1, int(keep.sum()) + 1)
        got = relabel_sequential(labels, min_area_px=min_area)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, lut[labels])
    with pytest.raises(ValueError, match="non-negative"):
        relabel_sequential(np.array([[0, -1]]), min_area_px=1)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint16])
def test_region_table_is_the_same_for_every_label_dtype(dtype):
    rng = np.random.default_rng(3)
    from data import label_mask

    lab, _ = label_mask(rng.random((90, 110)) > 0.75)
    ref = regions_from_labels(lab.astype(np.int64))
    pd.testing.assert_frame_equal(regions_from_labels(lab.astype(dtype)), ref)
