"""Worst-field ratings on generated calibrated masks: each expected severity is derived by hand
from the rules (limits of ASTM E45 Table 1 / ISO 4967 Table 1, widths of ISO 4967 Table 2), not
from the code under test.

Geometry used in the derivations: a drawn w x l px rectangle has Feret min w and Feret max
sqrt((l-1)^2 + (w-1)^2) + 1 ~ l; a drawn disc of radius r px spans 2r + 1 px.  1 µm/px unless said.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from data import label_mask, regions_from_labels
from data.standards import (
    RATING_FIELD_COLUMNS,
    RATING_SCAN_COLUMNS,
    RatingConfig,
    RatingError,
    rate_scan,
    severity,
    worst_column,
)

SAMPLES = Path(__file__).resolve().parents[3] / "data" / "samples" / "large_masks"


def _rate(mask, *, px=1.0, pixels=None, **cfg):
    # the hand derivations below place fields from the top-left corner unless a test says otherwise
    cfg.setdefault("field_origin", "corner")
    labels, _ = label_mask(mask)
    regions = regions_from_labels(labels, pixel_size_um=px)
    out = rate_scan(regions, shape=mask.shape, pixel_size_um=px, cfg=RatingConfig(**cfg),
                    pixels=pixels, labels=labels, scan_id="s")
    return out, regions


def _sev(out, row, col, t, series):
    f = out.fields
    sel = f[(f.field_row == row) & (f.field_col == col) & (f.type == t) & (f.series == series)]
    assert len(sel) == 1, (row, col, t, series)
    return float(sel.severity.iloc[0])


def _disc(mask, row, col, radius):
    cv2.circle(mask, (int(round(col)), int(round(row))), int(radius), 255, -1)


def test_limit_tables_follow_the_image_analysis_relations():
    # The A/B/C/D chart limits are reproduced (within 0.5 % / 1 unit) by the relations
    # log10 i = a log10 L - b of the image-analysis rating, and i = sqrt(n) / 2 for D.
    cfg = RatingConfig()
    i = np.arange(1, 7) * 0.5
    for t, a, b in (("A", 0.5605, 1.179), ("B", 0.4626, 0.871), ("C", 0.4807, 0.904)):
        expected = 10 ** ((np.log10(i) + b) / a)
        assert np.allclose(cfg.severity_limits[t], expected, rtol=0.005, atol=1.0), t
    assert cfg.severity_limits["D"] == tuple((2 * i) ** 2)
    assert cfg.width_limits_um == {"A": (2, 4, 12), "B": (2, 9, 15), "C": (2, 5, 12), "D": (3, 8, 13)}


def test_severity_uses_minimum_values_without_interpolation():
    lim = (17, 77, 184, 343, 555, 822)
    assert severity(np.array([16.9, 17, 76.99, 77, 183, 822, 2000]), lim).tolist() == [0, 0.5, 0.5, 1.0, 1.0, 3.0, 3.0]


def test_elongated_lengths_thin_heavy_and_field_grid():
    # 1500 x 1500 px at 1 µm/px: 2 x 2 whole fields of 710 px; rows/cols 1420..1499 are a partial margin.
    m = np.zeros((1500, 1500), np.uint8)
    m[100:103, 100:200] = 255   # field (0,0) thin (w 3): L 100.02
    m[300:303, 100:160] = 255   # field (0,0) thin: L 60.03      -> total 160.05: A 1.0 (127 <= 160 < 261)
    m[400:408, 800:1100] = 255  # field (0,1) heavy (w 8): L 300.1 -> A 1.5 (261 <= 300 < 436)
    m[1000:1003, 100:140] = 255  # field (1,0) thin: L 40.05 -> A 0.5 (37 <= 40)
    m[1450:1453, 100:700] = 255  # partial margin: not rated
    out, _ = _rate(m)
    sv = out.scan_values
    assert sv["rating_note"] == "" and sv["rating_n_fields"] == 4
    assert sv["rating_direction_source"] == "auto" and abs(sv["rating_direction_deg"] - 0) < 1e-6
    # a mask has no gray levels: elongated inclusions are A/C, rated with the A limits
    assert not sv["rating_ac_resolved"] and np.isnan(sv["e45_A_thin_worst"])
    assert _sev(out, 0, 0, "A/C", "thin") == 1.0
    assert _sev(out, 0, 0, "A/C", "heavy") == 0.0
    assert _sev(out, 0, 1, "A/C", "heavy") == 1.5
    assert _sev(out, 1, 0, "A/C", "thin") == 0.5
    assert _sev(out, 1, 1, "A/C", "thin") == 0.0
    f = out.fields
    t00 = f[(f.field_row == 0) & (f.field_col == 0) & (f.type == "A/C") & (f.series == "thin")]
    assert t00.total_length_um.iloc[0] == pytest.approx(160.05, abs=0.05) and t00["count"].iloc[0] == 2
    assert sv["e45_AC_thin_worst"] == 1.0 and sv["e45_AC_heavy_worst"] == 1.5
    assert set(f.field_row) == {0, 1} and set(f.field_col) == {0, 1}
    assert list(f.columns) == list(RATING_FIELD_COLUMNS)
    assert set(sv) == set(RATING_SCAN_COLUMNS)


def test_centred_grid_leaves_equal_margins():
    # 1500 px at 1 µm/px: two 710 µm fields per axis, centred: edges at 40, 750, 1460 on both axes.
    m = np.zeros((1500, 1500), np.uint8)
    m[20:23, 100:300] = 255   # in the top margin (rows 0..39): not rated (200 µm would be 1.0)
    m[100:103, 700:800] = 255  # across the col edge at 750: 50 + 50 µm -> 0.5 in fields (0,0) and (0,1)
    out, _ = _rate(m, field_origin="centre")
    assert out.scan_values["rating_n_fields"] == 4
    assert _sev(out, 0, 0, "A/C", "thin") == 0.5 and _sev(out, 0, 1, "A/C", "thin") == 0.5
    f = out.fields.query("type == 'A/C' and series == 'thin' and field_row == 0").sort_values("field_col")
    assert f.total_length_um.tolist() == pytest.approx([50.0, 50.0], abs=0.05)


def test_inclusion_cut_by_a_field_edge_counts_in_each_field():
    m = np.zeros((1500, 1500), np.uint8)
    m[200:203, 600:900] = 255  # cols 600..899 across the field edge at col 710: 110 + 190 µm
    out, _ = _rate(m)
    assert _sev(out, 0, 0, "A/C", "thin") == 0.5  # 110: 37 <= 110 < 127
    assert _sev(out, 0, 1, "A/C", "thin") == 1.0  # 190: 127 <= 190 < 261
    f = out.fields
    lengths = f[(f.type == "A/C") & (f.series == "thin") & (f.field_row == 0)].sort_values("field_col").total_length_um
    assert lengths.tolist() == pytest.approx([110.0, 190.0], abs=0.05)


def test_a_stringer_gap_rules():
    # three 40 x 3 px inclusions in line with 39 µm gaps (<= 40): one stringer, span 3*40 + 2*39 = 198 -> 1.0;
    # with 45 µm gaps (> 40) three inclusions, total 120 -> 0.5; in line but 12 µm apart across (> 10): 120 -> 0.5.
    def three(gap, offset=0):
        m = np.zeros((800, 800), np.uint8)
        for k in range(3):
            c0 = 100 + k * (40 + gap)
            r0 = 300 + (offset if k == 1 else 0)
            m[r0:r0 + 3, c0:c0 + 40] = 255
        return m

    cfg = dict(rolling_direction=0)
    joined, _ = _rate(three(39), **cfg)
    assert _sev(joined, 0, 0, "A/C", "thin") == 1.0
    assert joined.scan_values["rating_n_AC"] == 1
    assert joined.fields.query("type == 'A/C' and series == 'thin'").total_length_um.iloc[0] == pytest.approx(198, abs=0.2)
    apart, _ = _rate(three(45), **cfg)
    assert _sev(apart, 0, 0, "A/C", "thin") == 0.5 and apart.scan_values["rating_n_AC"] == 3
    offset, _ = _rate(three(39, offset=12), **cfg)
    assert _sev(offset, 0, 0, "A/C", "thin") == 0.5
    summed, _ = _rate(three(39), stringer_length="sum", **cfg)  # 120 µm without the gaps -> 0.5
    assert _sev(summed, 0, 0, "A/C", "thin") == 0.5


@pytest.mark.parametrize("angle", [0.0, 30.0, 90.0, 135.0])
def test_b_stringers_at_several_angles(angle):
    # five discs r = 3 (7 µm: globular, thin B width 2..9) with 20 µm centre spacing along `angle`:
    # gaps 13 µm <= 40, span 4*20 + 7 = 87 µm -> B thin 1.0 (77 <= 87 < 184).
    # A second line of five r = 5 discs (11 µm: heavy B 9..15) spaced 30 µm: span 4*30 + 11 = 131 -> B heavy 1.0.
    m = np.zeros((800, 800), np.uint8)
    d = np.array([-np.sin(np.radians(angle)), np.cos(np.radians(angle))])
    n = np.array([d[1], -d[0]])
    centre = np.array([355.0, 355.0])
    for k in range(5):
        _disc(m, *(centre - 120 * n + (k - 2) * 20 * d), 3)
        _disc(m, *(centre + 120 * n + (k - 2) * 30 * d), 5)
    out, regions = _rate(m, rolling_direction=angle)
    assert len(regions) == 10
    assert _sev(out, 0, 0, "B", "thin") == 1.0
    assert _sev(out, 0, 0, "B", "heavy") == 1.0
    assert _sev(out, 0, 0, "D", "thin") == 0.0 and _sev(out, 0, 0, "D", "heavy") == 0.0
    assert (out.region_types == "B").all()
    # with the direction across the stringers they are 10 single particles: D thin 5 (1.0), D heavy 5 (1.0)
    across, _ = _rate(m, rolling_direction=angle + 90)
    assert _sev(across, 0, 0, "B", "thin") == 0.0
    assert _sev(across, 0, 0, "D", "thin") == 1.0 and _sev(across, 0, 0, "D", "heavy") == 1.0


def test_two_particles_are_no_b_stringer():
    m = np.zeros((800, 800), np.uint8)
    _disc(m, 300, 300, 3)
    _disc(m, 300, 320, 3)
    out, _ = _rate(m, rolling_direction=0)
    assert _sev(out, 0, 0, "B", "thin") == 0.0
    f = out.fields.query("field_row == 0 and field_col == 0 and type == 'D' and series == 'thin'")
    assert f["count"].iloc[0] == 2 and f.severity.iloc[0] == 0.5  # 1 <= 2 < 4


def test_d_counts_and_ds_diameter():
    m = np.zeros((1500, 1500), np.uint8)
    # field (1, 0): ten r = 2 discs (5 µm, thin D 3..8) on a 60 µm grid (gaps 55 > 40: no stringer)
    for k in range(10):
        _disc(m, 800 + 60 * (k // 5), 60 + 60 * (k % 5), 2)
    # three r = 5 discs (11 µm, heavy D 8..13)
    for k in range(3):
        _disc(m, 1100, 60 + 90 * k, 5)
    # one r = 10 disc (21 µm >= 13: DS)
    _disc(m, 1300, 400, 10)
    # a 2 µm particle (< 3 µm): not rated
    m[1350:1352, 600:602] = 255
    out, _ = _rate(m, rolling_direction=0)
    assert _sev(out, 1, 0, "D", "thin") == 1.5   # 10: 9 <= 10 < 16
    assert _sev(out, 1, 0, "D", "heavy") == 0.5  # 3: 1 <= 3 < 4
    assert _sev(out, 1, 0, "DS", "single") == 1.0  # 21: 19 <= 21 < 27
    ds = out.fields.query("field_row == 1 and field_col == 0 and type == 'DS'")
    assert ds.max_diameter_um.iloc[0] == pytest.approx(21, abs=0.6)
    assert out.scan_values["e45_DS_worst"] == 1.0 and out.scan_values["e45_D_thin_worst"] == 1.5
    assert (out.region_types == "").sum() == 1


def test_calibration_scales_lengths():
    # the same 300 px heavy inclusion at 0.5 µm/px is 150 µm long and 4 µm wide (thin: <= 4): A 1.0;
    # fields are 1420 px.
    m = np.zeros((1500, 1500), np.uint8)
    m[400:408, 100:400] = 255
    out, _ = _rate(m, px=0.5)
    assert out.scan_values["rating_n_fields"] == 1 and out.scan_values["rating_field_side_px"] == 1420
    assert _sev(out, 0, 0, "A/C", "thin") == 1.0 and _sev(out, 0, 0, "A/C", "heavy") == 0.0


def test_a_and_c_by_gray_level():
    # raw scan: matrix 200; sulfides (A) gray 150 (darkness 0.25), silicates (C) gray 40 (0.8).
    # Field (0,0): one A and one C, both 100 x 3 µm: A 100 -> 0.5 (37..127), C 100 -> 1.0 (76..176).
    # Field (0,1): one A and one C of 130 µm.  Row 500: two 10 µm A in field (0,0), two 10 µm C in (0,1).
    # So field (0,0): A 100 + 2 x 10 = 120 -> 0.5 (37..127), C 100 -> 1.0 (76..176);
    # field (0,1): A 130 -> 1.0, C 130 + 2 x 10 = 150 -> 1.0.
    m = np.zeros((800, 1500), np.uint8)
    pix = np.full(m.shape, 200, np.uint8)
    incl = [(100, 100, 100, 150), (300, 100, 100, 40), (100, 800, 130, 150), (300, 800, 130, 40),
            (500, 100, 10, 150), (500, 300, 10, 150), (500, 800, 10, 40), (500, 1000, 10, 40)]
    for (r0, c0, length, gray) in incl:
        m[r0:r0 + 3, c0:c0 + length] = 255
        pix[r0:r0 + 3, c0:c0 + length] = gray
    out, _ = _rate(m, pixels=pix, rolling_direction=0)
    assert out.scan_values["rating_ac_resolved"]
    assert _sev(out, 0, 0, "A", "thin") == 0.5 and _sev(out, 0, 0, "C", "thin") == 1.0
    assert _sev(out, 0, 1, "A", "thin") == 1.0 and _sev(out, 0, 1, "C", "thin") == 1.0
    assert np.isnan(out.scan_values["e45_AC_thin_worst"])
    assert sorted(out.region_types.tolist()) == ["A"] * 4 + ["C"] * 4
    # one gray level for all: not split, rated as A/C with the A limits: field (0,0) 2 x 100 + 2 x 10 = 220 -> 1.0
    same, _ = _rate(m, pixels=np.where(m > 0, 60, 200).astype(np.uint8), rolling_direction=0)
    assert not same.scan_values["rating_ac_resolved"] and _sev(same, 0, 0, "A/C", "thin") == 1.0
    # a continuum of gray levels (no empty gap between two classes) is not split
    ramp = pix.copy()
    for k, (r0, c0, length, _g) in enumerate(incl):
        ramp[r0:r0 + 3, c0:c0 + length] = 40 + 15 * k
    cont, _ = _rate(m, pixels=ramp, rolling_direction=0)
    assert not cont.scan_values["rating_ac_resolved"]
    # the lighter class brighter than the matrix (labels on bright spots): not split
    bright = np.where(pix == 150, 230, pix).astype(np.uint8)
    light, _ = _rate(m, pixels=bright, rolling_direction=0)
    assert not light.scan_values["rating_ac_resolved"]


def test_auto_direction_follows_elongated_inclusions():
    m = np.zeros((1500, 1500), np.uint8)
    a = np.radians(30.0)
    d = np.array([-np.sin(a), np.cos(a)])
    for k in range(8):
        p = np.array([300.0 + 120 * k, 200.0 + 30 * k])
        p0, p1 = p - 60 * d, p + 60 * d
        cv2.line(m, (int(p0[1]), int(p0[0])), (int(p1[1]), int(p1[0])), 255, 3)
    out, _ = _rate(m)
    assert out.scan_values["rating_direction_source"] == "auto"
    assert abs(out.scan_values["rating_direction_deg"] - 30.0) < 2.0


def test_not_rated_reasons():
    m = np.zeros((500, 600), np.uint8)
    m[100:103, 100:200] = 255
    labels, _ = label_mask(m)
    reg = regions_from_labels(labels)
    out = rate_scan(reg, shape=m.shape, pixel_size_um=None, cfg=RatingConfig())
    assert out.scan_values["rating_note"] == "not rated: no calibration (pixel size unknown)"
    assert len(out.fields) == 0 and list(out.fields.columns) == list(RATING_FIELD_COLUMNS)
    assert (out.region_types == "").all() and not out.rated
    small = rate_scan(regions_from_labels(labels, pixel_size_um=1.0), shape=m.shape, pixel_size_um=1.0,
                      cfg=RatingConfig())
    assert "smaller than one 710 µm field" in small.scan_values["rating_note"]
    assert len(small.fields) == 0 and np.isnan(small.scan_values["e45_AC_thin_worst"])
    assert set(small.scan_values) == set(RATING_SCAN_COLUMNS)
    # the region typing is still done on a calibrated scan too small to rate
    assert small.region_types.tolist() == ["A/C"]


def test_bad_input():
    reg = regions_from_labels(np.zeros((10, 10), np.int32), pixel_size_um=1.0)
    with pytest.raises(RatingError, match="RatingConfig"):
        rate_scan(reg, shape=(10, 10), pixel_size_um=1.0, cfg={"field_side_um": 710})
    with pytest.raises(RatingError, match="shape"):
        rate_scan(reg, shape=(10, 12), pixel_size_um=1.0, cfg=RatingConfig(), labels=np.zeros((10, 10), np.int32))
    with pytest.raises(RatingError, match="lacks"):
        rate_scan(reg.drop(columns=["orientation"]), shape=(2000, 2000), pixel_size_um=1.0, cfg=RatingConfig())
    with pytest.raises(ValueError, match="rolling_direction"):
        RatingConfig(rolling_direction="sideways")
    with pytest.raises(ValueError, match="severity_limits"):
        RatingConfig(severity_limits={"A": [1, 2, 3]})
    assert RatingConfig(rolling_direction="270").rolling_direction == 90.0


def test_empty_scan_rates_zero():
    labels = np.zeros((1500, 800), np.int32)
    out = rate_scan(regions_from_labels(labels, pixel_size_um=1.0), shape=labels.shape, pixel_size_um=1.0,
                    cfg=RatingConfig(), labels=labels)
    assert out.rated and (out.fields.severity == 0).all() and out.scan_values["rating_n_fields"] == 2
    assert out.scan_values["e1245_area_fraction_mean"] == 0.0
    assert np.isnan(out.scan_values["e1245_mean_free_path_um_mean"])


@pytest.mark.parametrize("name", ["scan1tag-52.png", "scan4tag-19.png"])
def test_real_masks_stable_under_rotation(name):
    # the bundled real masks at an assumed 1 µm/px, rolling direction 0 deg; the image rotated by 90 deg
    # (np.rot90: counter-clockwise as displayed) with the direction set to 90 deg.
    m = cv2.imread(str(SAMPLES / name), cv2.IMREAD_GRAYSCALE) > 127
    base, _ = _rate(m.astype(np.uint8), rolling_direction=0, field_origin="centre")
    rot, _ = _rate(np.rot90(m).astype(np.uint8).copy(), rolling_direction=90, field_origin="centre")
    assert base.rated and rot.rated
    for t, s in (("A/C", "thin"), ("A/C", "heavy"), ("B", "thin"), ("B", "heavy"), ("D", "thin"),
                 ("D", "heavy"), ("DS", "single")):
        col = worst_column(t, s)
        assert abs(base.scan_values[col] - rot.scan_values[col]) <= 0.5, (col, base.scan_values[col], rot.scan_values[col])
    # the typing does not depend on the image axes: the same stringers and particles both ways
    for t in ("AC", "B", "D", "DS"):
        assert base.scan_values[f"rating_n_{t}"] == rot.scan_values[f"rating_n_{t}"], t


def test_fields_with_excluded_pixels_are_not_rated():
    m = np.zeros((1500, 1500), np.uint8)
    for k in range(10):  # field (1, 0): ten thin D particles (as in test_d_counts_and_ds_diameter)
        _disc(m, 800 + 60 * (k // 5), 60 + 60 * (k % 5), 2)
    _disc(m, 100, 100, 2)  # field (0, 0): one
    labels, _ = label_mask(m)
    regions = regions_from_labels(labels, pixel_size_um=1.0)
    cfg = RatingConfig(field_origin="corner", rolling_direction=0)
    full = rate_scan(regions, shape=m.shape, pixel_size_um=1.0, cfg=cfg, labels=labels)
    assert full.scan_values["rating_n_fields"] == 4 and full.scan_values["e45_D_thin_worst"] == 1.5
    bar = np.zeros(m.shape, bool)
    bar[1430:1500, :] = True  # a data bar along the bottom, below the fields (they end at 1420 px) ...
    assert rate_scan(regions, shape=m.shape, pixel_size_um=1.0, cfg=cfg, labels=labels,
                     exclude=bar).scan_values["rating_n_fields"] == 4  # ... leaves all 4 rated
    bar[1000:1010, :] = True  # ... and one that crosses the fields of row 1
    out = rate_scan(regions, shape=m.shape, pixel_size_um=1.0, cfg=cfg, labels=labels, exclude=bar)
    v = out.scan_values
    assert v["rating_n_fields"] == 2 and v["e1245_n_fields"] == 2
    assert set(out.fields["field_row"]) <= {0} and len(out.field_stats) == 2
    assert v["e45_D_thin_worst"] == 0.5  # the one particle of field (0, 0): 1 <= 1 < 4
    assert "2 field(s) with excluded pixels not rated" in v["rating_info"]
    everything = rate_scan(regions, shape=m.shape, pixel_size_um=1.0, cfg=cfg, labels=labels,
                           exclude=np.ones(m.shape, bool))
    assert everything.scan_values["rating_n_fields"] == 0
    assert "holds excluded pixels" in everything.scan_values["rating_note"]
