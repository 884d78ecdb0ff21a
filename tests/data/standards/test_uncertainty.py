"""Intervals of the area fraction and the count (data.standards.uncertainty)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from data.standards.uncertainty import area_fraction_interval, combined_interval, count_interval, field_sums


def test_field_sums_of_a_mask_and_of_points():
    m = np.zeros((100, 100), bool)
    m[:10, :10] = True
    num, den = field_sums(m.shape, field_px=50, mask=m)
    assert num.tolist() == [100, 0, 0, 0] and den.tolist() == [2500] * 4
    num, _ = field_sums((100, 100), field_px=50, points=np.array([[1, 1], [60, 70], [99, 99]]))
    assert num.tolist() == [1, 0, 0, 2]
    with pytest.raises(ValueError, match="exactly one"):
        field_sums((10, 10))


def test_field_spread_only_matches_the_ratio_estimator():
    num, den = np.array([10.0, 12, 8, 10]), np.full(4, 100.0)
    r = combined_interval(num, den)
    se = np.std(num / den, ddof=1) / 2  # equal fields: t s / sqrt(n)
    assert r["value"] == pytest.approx(0.1) and r["u_field"] == pytest.approx(se)
    assert r["dof"] == pytest.approx(3) and r["k"] == pytest.approx(stats.t.ppf(0.975, 3))
    assert r["high"] - r["value"] == pytest.approx(r["k"] * se)


def test_repeatability_adds_in_quadrature_with_welch_satterthwaite():
    num, den = np.array([10.0, 12, 8, 10]), np.full(4, 100.0)
    a = combined_interval(num, den)
    b = combined_interval(num, den, repeatability_cv=0.05, repeatability_dof=20)
    assert b["u_repeat"] == pytest.approx(0.005)
    assert b["u"] == pytest.approx(math.hypot(a["u_field"], 0.005))
    ws = b["u"] ** 4 / (a["u_field"] ** 4 / 3 + 0.005 ** 4 / 20)
    assert b["dof"] == pytest.approx(ws) and b["u"] > a["u"]  # (k may shrink: more dof)


def test_one_field_uses_repeatability_only_and_low_is_not_negative():
    r = combined_interval(np.array([5.0]), np.array([100.0]), repeatability_cv=0.02)
    assert math.isnan(r["u_field"]) and r["u"] == pytest.approx(0.001) and math.isinf(r["dof"])
    r = combined_interval(np.array([0.0, 0, 0, 4]), np.full(4, 10.0))
    assert r["low"] == 0.0


def test_scan_level_helpers_and_bad_input():
    rng = np.random.default_rng(0)
    m = rng.random((512, 512)) < 0.02
    r = area_fraction_interval(m, field_px=128, repeatability_cv=0.01)
    assert r["low"] < m.mean() < r["high"]
    pts = rng.uniform(0, 512, (300, 2))
    c = count_interval(pts, (512, 512), field_px=128, repeatability_cv=0.02)
    assert c["value"] == pytest.approx(300) and c["low"] < 300 < c["high"]
    with pytest.raises(ValueError, match="one length"):
        combined_interval(np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="repeatability_cv"):
        combined_interval(np.ones(3), np.ones(3), repeatability_cv=-1)
