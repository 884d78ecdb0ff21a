"""Planted false alarms (data.synthetic.make_review_scan)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from data import synthetic as synthetic_mod
from data.regions import regions_from_labels
from data.synthetic import (
    FALSE_ALARM_KINDS,
    SyntheticConfig,
    make_review_scan,
    make_synthetic_scan,
    truth_for_labels,
)

CFG = SyntheticConfig(shape=(512, 512), n_impurities=120, n_grains=40)
ROOMY = SyntheticConfig(shape=(768, 768), n_impurities=250, n_grains=60)  # room for every kind


def test_no_false_alarms_gives_the_plain_scan():
    a = make_synthetic_scan(CFG, seed=5)
    b = make_review_scan(CFG, false_alarms=(), seed=5)
    assert np.array_equal(a.pixels, b.pixels) and np.array_equal(
        a.impurity_labels, b.impurity_labels
    )
    assert a.anomaly_truth.equals(
        b.anomaly_truth.drop(columns=["false_alarm_kind", "false_alarm_index"])
    )
    assert len(a.false_alarms) == 0 and "false_alarm_kind" not in a.anomaly_truth


@pytest.mark.parametrize("seed", [0, 1])
def test_false_alarms_are_planted_with_exact_truth(seed):
    s = make_review_scan(ROOMY, seed=seed)
    assert sorted(s.false_alarms["kind"]) == sorted(FALSE_ALARM_KINDS)
    t = s.anomaly_truth
    fa = t[t["false_alarm_kind"] != ""]
    assert not fa["is_anomaly"].any() and (fa["false_alarm_index"] >= 0).all()
    assert set(fa["false_alarm_kind"]) == set(FALSE_ALARM_KINDS)
    assert (t.loc[t["false_alarm_kind"] == "", "false_alarm_index"] == -1).all()
    reg = regions_from_labels(s.impurity_labels)
    assert len(reg) == len(t)  # one component per drawn object
    h, w = s.pixels.shape
    for i, row in s.false_alarms.iterrows():
        members = reg[reg["region_id"].isin(fa.loc[fa["false_alarm_index"] == i, "label"])]
        assert (
            members["bbox_rmin"].min() == row["bbox_rmin"]
            and members["bbox_cmax"].max() == row["bbox_cmax"]
        )
        if row["kind"] == "edge_chip":  # cut by the scan border
            assert (
                row["bbox_rmin"] == 0
                or row["bbox_cmin"] == 0
                or row["bbox_rmax"] == h - 1
                or row["bbox_cmax"] == w - 1
            )
        if row["kind"] == "scratch":  # a dashed row of thin pieces
            assert len(members) >= 4
            assert (members["feret_max_px"] / members["feret_min_px"]).median() > 5
        if row["kind"] == "pore":
            assert len(members) >= 2 and members["area_px"].min() > 150
    truth = truth_for_labels(s.impurity_labels, s)
    assert (truth["false_alarm_kind"] != "").sum() == len(fa)


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown false alarm"):
        make_review_scan(CFG, false_alarms=("dust",), seed=0)


def test_docstring_examples():
    assert doctest.testmod(synthetic_mod).failed == 0
