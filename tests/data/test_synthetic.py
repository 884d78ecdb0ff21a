"""Synthetic scans: determinism, exact truth, hard-core process, the planted kinds' properties."""

import numpy as np
import pytest

from data import label_mask, regions_from_labels
from data.synthetic import SyntheticConfig, make_synthetic_mask, make_synthetic_scan, truth_for_labels

CFG = SyntheticConfig(shape=(512, 512), n_grains=40, n_impurities=150, hard_core_px=12)


@pytest.fixture(scope="module")
def scan():
    return make_synthetic_scan(CFG, seed=3)


def test_deterministic_by_seed(scan):
    again = make_synthetic_scan(CFG, seed=3)
    np.testing.assert_array_equal(scan.pixels, again.pixels)
    other = make_synthetic_scan(CFG, seed=4)
    assert not np.array_equal(scan.pixels, other.pixels)


def test_types_and_shapes(scan):
    assert scan.pixels.dtype == np.uint8 and scan.pixels.shape == (512, 512)
    assert scan.impurity_mask.dtype == bool and scan.grain_boundary_mask.any()
    assert not (scan.impurity_mask & scan.grain_boundary_mask).any()


def test_truth_is_exact_after_labelling(scan):
    lab, n = label_mask(scan.impurity_mask)
    assert n == scan.impurity_labels.max() == len(scan.anomaly_truth)
    np.testing.assert_array_equal(lab, scan.impurity_labels)
    kinds = scan.anomaly_truth.anomaly_kind.value_counts()
    assert kinds["giant"] == 1 and kinds["cluster"] >= 5 and kinds["stringer"] >= 5
    assert list(scan.regions["kind"]) == ["cluster", "stringer", "giant"]


def test_planted_kinds_have_their_properties(scan):
    t = regions_from_labels(scan.impurity_labels).merge(
        scan.anomaly_truth, left_on="region_id", right_on="label")
    normal = t[~t.is_anomaly]
    cluster = t[t.anomaly_kind == "cluster"]
    stringer = t[t.anomaly_kind == "stringer"]
    giant = t[t.anomaly_kind == "giant"]
    assert (cluster.area_px > normal.area_px.median()).all()
    assert (cluster.solidity < normal.solidity.median()).mean() > 0.5
    elong = stringer.feret_max_px / stringer.feret_min_px
    assert (elong > 3).all()
    assert np.ptp(np.unwrap(2 * stringer.orientation) / 2) < 0.35  # aligned
    assert giant.area_px.iloc[0] == t.area_px.max()
    for _, r in scan.regions.iterrows():  # region boxes contain their members
        m = t[t.region_index == _]
        assert (m.bbox_rmin >= r.bbox_rmin).all() and (m.bbox_cmax <= r.bbox_cmax).all()


def test_hard_core_distance_of_background(scan):
    from scipy.spatial import cKDTree

    t = regions_from_labels(scan.impurity_labels)
    normal = t[~scan.anomaly_truth.is_anomaly.to_numpy()]
    pts = normal[["centroid_row", "centroid_col"]].to_numpy()
    d, _ = cKDTree(pts).query(pts, k=2)
    assert d[:, 1].min() >= CFG.hard_core_px - 1.5  # centroid vs drawn centre rounding


def test_truth_for_predicted_labels(scan):
    shifted = np.roll(scan.impurity_labels, 1, axis=1)  # a prediction off by one pixel
    tr = truth_for_labels(shifted, scan)
    assert (tr.true_label == tr.region_id).mean() > 0.95
    assert tr.is_anomaly.sum() == scan.anomaly_truth.is_anomaly.sum()
    with pytest.raises(ValueError, match="shape"):
        truth_for_labels(shifted[:10], scan)


def test_synthetic_mask_counts():
    m = make_synthetic_mask((600, 600), n_impurities=2000, seed=0)
    _, n = label_mask(m)
    assert n == 2000


def test_bad_config():
    with pytest.raises(ValueError, match="anomaly kinds"):
        SyntheticConfig(anomalies=("blob",))
    with pytest.raises(ValueError, match="shape"):
        SyntheticConfig(shape=(10, 10))
