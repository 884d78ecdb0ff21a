"""ASTM E1245 values on a generated mask, against the formulas evaluated by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from data import label_mask, regions_from_labels
from data.standards import RatingConfig, field_grid, field_measures, rate_scan, summarize


def _mask():
    # 710 x 1420 px at 1 µm/px: two fields of 710 x 710 µm (0.5041 mm²).
    m = np.zeros((710, 1420), np.uint8)
    for r0, c0 in ((100, 100), (100, 300), (400, 100), (400, 300)):  # field 0: four 20 x 20 squares
        m[r0:r0 + 20, c0:c0 + 20] = 1
    m[300:330, 1000:1030] = 1  # field 1: one 30 x 30 square
    return m


def test_field_values_by_hand():
    m = _mask()
    labels, _ = label_mask(m)
    regions = regions_from_labels(labels, pixel_size_um=1.0)
    grid = field_grid(m.shape, side_px=710)
    for lab in (labels, None):  # exact from the label image, or from the table (same here: nothing is cut)
        f = field_measures(regions, grid, pixel_size_um=1.0, labels=lab)
        a_field = 0.5041  # mm²
        line_mm = 2 * 710 * 710 / 1000  # one line per pixel row and column, mm
        aa0, aa1 = 1600 / 504100, 900 / 504100
        assert f.area_fraction.tolist() == pytest.approx([aa0, aa1])
        assert f.number_per_mm2.tolist() == pytest.approx([4 / a_field, 1 / a_field])
        assert f.intercepts_per_mm.tolist() == pytest.approx([4 * 40 / line_mm, 60 / line_mm])
        mfp0 = (1 - aa0) / (160 / line_mm) * 1000
        mfp1 = (1 - aa1) / (60 / line_mm) * 1000
        assert f.mean_free_path_um.tolist() == pytest.approx([mfp0, mfp1])
        assert f.mean_area_um2.tolist() == pytest.approx([400.0, 900.0])


def test_scan_summary_t_interval():
    m = _mask()
    labels, _ = label_mask(m)
    out = rate_scan(regions_from_labels(labels, pixel_size_um=1.0), shape=m.shape, pixel_size_um=1.0,
                    cfg=RatingConfig(), labels=labels)
    sv = out.scan_values
    x = np.array([1600, 900]) / 504100
    mean, sd = x.mean(), abs(x[0] - x[1]) / math.sqrt(2)
    t = 12.706  # t(0.975, 1 degree of freedom), from the t table
    assert sv["e1245_n_fields"] == 2
    assert sv["e1245_area_fraction_mean"] == pytest.approx(mean)
    assert sv["e1245_area_fraction_sd"] == pytest.approx(sd)
    assert sv["e1245_area_fraction_ci95"] == pytest.approx(t * sd / math.sqrt(2), rel=1e-4)
    assert sv["e1245_area_fraction_ra_pct"] == pytest.approx(100 * t * sd / math.sqrt(2) / mean, rel=1e-4)
    assert sv["e1245_mean_area_um2_mean"] == pytest.approx(650.0)
    assert list(out.field_stats.columns)[:3] == ["scan_id", "field_row", "field_col"]


def test_centred_grid_crop():
    # 800 x 1500 px: one field row centred at rows 45..755, two field cols at 40..750..1460
    m = np.zeros((800, 1500), np.uint8)
    m[10:20, 100:120] = 1  # in the top margin: not counted
    m[100:110, 100:120] = 1  # 200 px in field (0, 0)
    labels, _ = label_mask(m)
    regions = regions_from_labels(labels, pixel_size_um=1.0)
    grid = field_grid(m.shape, side_px=710)
    assert grid.row_edges.tolist() == [45, 755] and grid.col_edges.tolist() == [40, 750, 1460]
    for lab in (labels, None):
        f = field_measures(regions, grid, pixel_size_um=1.0, labels=lab)
        assert f.area_fraction.tolist() == pytest.approx([200 / 504100, 0.0])
        assert f.n_inclusions.tolist() == [1, 0]


def test_cut_inclusion_counts_its_pixels_in_each_field():
    m = np.zeros((710, 1420), np.uint8)
    m[100:110, 700:720] = 1  # 10 x 20 px across the edge at col 710: 100 px on each side
    labels, _ = label_mask(m)
    regions = regions_from_labels(labels, pixel_size_um=1.0)
    f = field_measures(regions, field_grid(m.shape, side_px=710, origin="corner"), pixel_size_um=1.0, labels=labels)
    assert f.area_fraction.tolist() == pytest.approx([100 / 504100, 100 / 504100])
    # row lines: 10 rows cross it in each field (the run restarts at the edge); column lines: 10 per field
    line_mm = 2 * 710 * 710 / 1000
    assert f.intercepts_per_mm.tolist() == pytest.approx([20 / line_mm, 20 / line_mm])


def test_summarize_edge_cases():
    assert summarize(np.array([np.nan, 2.0]))["n"] == 1
    one = summarize(np.array([3.0]))
    assert one["mean"] == 3.0 and math.isnan(one["ci95"])
    assert summarize(np.array([]))["n"] == 0
