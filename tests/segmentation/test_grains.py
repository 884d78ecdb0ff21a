"""Grain measurement on synthetic boundary grids of known size and on Voronoi grains."""

import math

import numpy as np
import pytest
from scipy import ndimage

from data.synthetic import SyntheticConfig, make_synthetic_scan
from segmentation.grains import (
    astm_g_intercept,
    astm_g_planimetric,
    boundary_f1,
    boundary_skeleton,
    clean_boundaries,
    grain_labels,
    grain_measures,
    grain_table,
    line_intercepts,
)


def _grid(shape=(200, 240), spacing=20, width=1, offset=0):
    g = np.zeros(shape, bool)
    for w in range(width):
        g[offset + w :: spacing, :] = True
        g[:, offset + w :: spacing] = True
    return g


@pytest.mark.parametrize("spacing", [12, 20, 33])
def test_square_grid_heyn_mean_equals_spacing(spacing):
    m = grain_measures(_grid((231, 264), spacing), line_spacing=7)
    assert m["heyn_mean_px"] == pytest.approx(spacing, abs=1e-9)
    # total line length / crossings: a line of length L crosses ceil(L / spacing) grid lines
    assert m["mean_intercept_px"] == pytest.approx(spacing, rel=0.1)
    assert math.isnan(m["grain_size_G_intercept"]) and math.isnan(m["grain_size_G_planimetric"])


def test_thick_boundaries_are_thinned():
    thin = grain_measures(_grid(spacing=20, width=1, offset=10))
    thick = grain_measures(_grid(spacing=20, width=5, offset=8))
    assert thick["heyn_mean_px"] == pytest.approx(20, abs=0.5)
    assert thick["grain_count"] == thin["grain_count"]


def test_square_grid_counts_and_astm_numbers():
    # 200 x 240 image, grid lines at 0, 20, ...: 10 x 12 grains of 20 x 20 px
    p = 0.5  # um per pixel
    m = grain_measures(_grid((200, 240), 20, offset=10), pixel_size_um=p)
    # lines at rows 10, 30, ..., 190 and cols 10, ..., 230: 9 x 11 whole grains inside and
    # a ring of cut grains along the border (11 x 13 cells in all)
    assert m["grain_count_inside"] == 9 * 11
    assert m["grain_count"] == 11 * 13
    assert m["grain_count_border"] == 11 * 13 - 9 * 11
    # ASTM G from the definitions with the known geometry
    l_mm = 20 * p * 1e-3
    assert m["heyn_mean_um"] == pytest.approx(20 * p)
    assert m["grain_size_G_intercept"] == pytest.approx(
        -6.643856 * math.log10(m["mean_intercept_px"] * p * 1e-3) - 3.288
    )
    assert astm_g_intercept(l_mm) == pytest.approx(-6.643856 * math.log10(l_mm) - 3.288)
    n_a = (m["grain_count_inside"] + m["grain_count_border"] / 2) / (200 * 240 * (p * 1e-3) ** 2)
    assert m["grains_per_mm2"] == pytest.approx(n_a)
    assert m["grain_size_G_planimetric"] == pytest.approx(3.321928 * math.log10(n_a) - 2.954)


def test_known_astm_values():
    # round trip: G -> N_A -> G and G -> l -> G
    for g in (2.0, 5.5, 9.0):
        n_a = 10 ** ((g + 2.954) / 3.321928)
        l_mm = 10 ** (-(g + 3.288) / 6.643856)
        assert astm_g_planimetric(n_a) == pytest.approx(g)
        assert astm_g_intercept(l_mm) == pytest.approx(g)
    # ASTM E112 table values: G = 8 <-> mean intercept 20.0 um, G = 1 <-> 15.5 grains per mm^2
    assert astm_g_intercept(0.0200) == pytest.approx(8.0, abs=0.01)
    assert astm_g_planimetric(15.5) == pytest.approx(1.0, abs=0.03)
    assert math.isnan(astm_g_intercept(0.0)) and math.isnan(astm_g_planimetric(-1))


def test_line_intercepts_counts_runs_once():
    b = np.zeros((3, 30), bool)
    b[1, [4, 5, 6]] = True  # one thick crossing centred at 5
    b[1, 15] = True
    b[1, 24:26] = True  # centred at 24.5
    ints, n, length = line_intercepts(b, spacing=3, directions="h")
    assert n == 3 and length == 30
    np.testing.assert_allclose(ints, [10.0, 9.5])


def test_grain_labels_tile_image_and_drop_small():
    g = _grid((100, 100), 25, offset=12)
    g[50:53, 50:53] = True
    g[51, 51] = False  # a 1-px "grain" inside a tiny ring
    lab = grain_labels(g, thin=False, min_area_px=5)
    assert lab.min() >= 1
    t = grain_table(lab)
    assert t["area_px"].sum() == 100 * 100
    assert len(t) == 5 * 5  # the 1-px grain is gone
    t_um = grain_table(lab, pixel_size_um=2.0)
    np.testing.assert_allclose(t_um["eq_diameter_um"], 2.0 * t["eq_diameter_px"])


@pytest.mark.parametrize("seed", [3, 4])
def test_voronoi_grains_survive_thinning(seed):
    s = make_synthetic_scan(SyntheticConfig(shape=(256, 256), n_grains=40, n_impurities=0), seed=seed)
    b = s.grain_boundary_mask
    # thinning keeps the topology: as many grains as 4-connected holes of the thick mask
    n_holes = ndimage.label(~b, structure=[[0, 1, 0], [1, 1, 1], [0, 1, 0]])[1]
    m = grain_measures(b)
    assert m["grain_count"] == n_holes
    # the mean intercept of ~n grains tiling the image is of the order of sqrt(area / n)
    assert 0.4 < m["heyn_mean_px"] / math.sqrt(256 * 256 / n_holes) < 1.5


def test_boundary_f1_tolerance():
    truth = _grid((80, 80), 20, offset=10)
    shifted = np.roll(truth, 2, axis=1)
    assert boundary_f1(truth, truth)["f1"] == pytest.approx(1.0)
    assert boundary_f1(shifted, truth, tolerance=2)["f1"] == pytest.approx(1.0)
    low = boundary_f1(shifted, truth, tolerance=1)
    assert low["f1"] < 0.7  # vertical lines now 2 px away
    empty = boundary_f1(np.zeros_like(truth), truth)
    assert empty["recall"] == 0 and math.isnan(empty["precision"])


def test_skeleton_of_thick_line_is_one_pixel():
    b = np.zeros((40, 40), bool)
    b[15:20, :] = True
    sk = boundary_skeleton(b)
    assert sk.sum(axis=0)[2:-2].max() == 1


@pytest.mark.parametrize(
    "bad", [np.zeros((4, 4, 3)), np.zeros(5), np.zeros((0, 3)), np.full((4, 4), np.nan)]
)
def test_bad_input(bad):
    with pytest.raises(ValueError):
        grain_measures(bad)


def test_bad_options():
    g = _grid((40, 40), 10)
    with pytest.raises(ValueError, match="pixel_size_um"):
        grain_measures(g, pixel_size_um=0)
    with pytest.raises(ValueError, match="spacing"):
        line_intercepts(g, spacing=0)
    with pytest.raises(ValueError, match="shapes differ"):
        boundary_f1(g, g[:20])


def test_clean_boundaries_drops_short_pieces_only():
    g = _grid((100, 100), 25, offset=12, width=3)
    g[48:50, 48:53] = True  # a short isolated speck inside a grain
    out = clean_boundaries(g, min_length_px=10)
    assert not out[44:55, 44:57].any()
    assert grain_measures(out)["grain_count"] == grain_measures(g)["grain_count"]
    assert clean_boundaries(g)[48:50, 48:53].any()


# --------------------------------------------------------------------------- intervals over fields


def _voronoi(shape=(512, 768), n=300, seed=0):
    s = make_synthetic_scan(SyntheticConfig(shape=shape, n_grains=n, n_impurities=0), seed=seed)
    return s.grain_boundary_mask


def test_fields_partition_the_intercepts_and_the_test_lines():
    from segmentation.grains import FIELD_COLUMNS

    b = _voronoi()
    m = grain_measures(b, field_px=256)
    f = m["fields"]
    assert tuple(f.columns) == FIELD_COLUMNS
    assert m["grain_fields"] == len(f) == 2 * 3  # 512 / 256 rows x 768 / 256 columns of fields
    ints, n_cross, length = line_intercepts(boundary_skeleton(b), spacing=10)
    assert f["n_intercepts"].sum() == ints.size == m["n_intercepts"]
    assert f["n_crossings"].sum() == n_cross
    assert f["line_length_px"].sum() == pytest.approx(length)
    assert f["intercept_sum_px"].sum() == pytest.approx(ints.sum())
    assert m["heyn_mean_px"] == pytest.approx(ints.mean())  # the scan's mean of all intercepts
    assert m["mean_intercept_px"] == pytest.approx(length / n_cross)


def test_identical_fields_give_a_zero_width_interval():
    m = grain_measures(_grid((512, 512), 16, offset=8), pixel_size_um=1.0, field_px=128)
    assert m["grain_fields"] == 16
    assert m["heyn_ci95_low_px"] == pytest.approx(16.0) and m["heyn_ci95_high_px"] == pytest.approx(16.0)
    assert m["heyn_ra_pct"] == pytest.approx(0.0, abs=1e-9)
    assert m["grain_size_G_ci95_low"] == pytest.approx(m["grain_size_G"])
    assert m["grain_note"] == ""


def test_ratio_ci_is_e112_t_over_fields_for_equal_fields():
    from scipy import stats

    from segmentation.grains import ratio_ci

    rng = np.random.default_rng(0)
    x = rng.normal(20, 2, 8)  # field means, every field with 50 intercepts
    r, hw, t = ratio_ci(x * 50, np.full(8, 50))
    assert r == pytest.approx(x.mean())
    assert t == pytest.approx(stats.t.ppf(0.975, 7))
    assert hw == pytest.approx(t * x.std(ddof=1) / math.sqrt(8))
    assert all(math.isnan(v) for v in ratio_ci([1.0], [1.0])[1:])
    assert math.isnan(ratio_ci([], [])[0])


def test_interval_covers_the_true_mean_of_random_grains():
    # scans of the same Voronoi structure: the 95% interval of one scan covers the mean of all
    heyn = [grain_measures(_voronoi(seed=s), field_px=128) for s in range(8)]
    pooled = np.mean([m["heyn_mean_px"] for m in heyn])
    covered = [m["heyn_ci95_low_px"] <= pooled <= m["heyn_ci95_high_px"] for m in heyn]
    assert sum(covered) >= 6
    for m in heyn:
        half = (m["heyn_ci95_high_px"] - m["heyn_ci95_low_px"]) / 2
        assert m["heyn_ra_pct"] == pytest.approx(100 * half / m["heyn_mean_px"])
        assert 0 < m["heyn_ra_pct"] < 30


def test_g_interval_from_the_intercept_interval():
    m = grain_measures(_voronoi(seed=1), pixel_size_um=0.5, field_px=128)
    lo_um, hi_um = m["mean_intercept_ci95_low_um"], m["mean_intercept_ci95_high_um"]
    assert lo_um < m["mean_intercept_um"] < hi_um
    assert m["mean_intercept_um"] == pytest.approx(0.5 * m["mean_intercept_px"])
    assert m["heyn_ci95_low_um"] == pytest.approx(0.5 * m["heyn_ci95_low_px"])
    # G falls as l grows: the upper l bound gives the lower G bound
    assert m["grain_size_G_ci95_low"] == pytest.approx(astm_g_intercept(hi_um * 1e-3))
    assert m["grain_size_G_ci95_high"] == pytest.approx(astm_g_intercept(lo_um * 1e-3))
    assert m["grain_size_G_ci95_low"] < m["grain_size_G"] < m["grain_size_G_ci95_high"]
    assert m["grain_size_G"] == m["grain_size_G_intercept"]


def test_nan_with_a_reason_never_a_made_up_number():
    from segmentation.grains import SCAN_GRAIN_COLUMNS, scan_grain_values

    empty = grain_measures(np.zeros((300, 300), bool), pixel_size_um=1.0)
    assert math.isnan(empty["heyn_mean_px"]) and math.isnan(empty["grain_size_G"])
    assert math.isnan(empty["grain_size_G_planimetric"])
    assert "no grain boundaries" in empty["grain_note"]
    one_field = grain_measures(_grid((128, 128), 16), pixel_size_um=1.0)  # one field only
    assert one_field["grain_fields"] == 1 and one_field["heyn_mean_px"] == pytest.approx(16)
    assert math.isnan(one_field["heyn_ci95_low_um"]) and math.isnan(one_field["grain_size_G_ci95_high"])
    assert "no interval: 1 field" in one_field["grain_note"]
    few = np.zeros((512, 512), bool)
    few[:, [100, 130, 400]] = True  # crossings on every row line, few intercepts in all
    few_m = grain_measures(few, field_px=128, min_intercepts=200)
    assert "intercepts, needs >= 200" in few_m["grain_note"] and math.isnan(few_m["heyn_ci95_low_px"])
    uncal = grain_measures(_voronoi(seed=2), field_px=128)
    assert math.isnan(uncal["grain_size_G"]) and "pixel size" in uncal["grain_note"]
    assert np.isfinite(uncal["heyn_ci95_low_px"]) and math.isnan(uncal["heyn_ci95_low_um"])
    v = scan_grain_values(empty)
    assert tuple(v) == SCAN_GRAIN_COLUMNS
    assert v["grain_note"] and math.isnan(v["heyn_ci95_low_um"]) and isinstance(v["n_intercepts"], int)


def test_pooled_grain_size_over_fields_and_over_scans():
    import pandas as pd

    from segmentation.grains import pooled_grain_size, scan_grain_values

    ms = [grain_measures(_voronoi(seed=s), pixel_size_um=0.5, field_px=128) for s in range(4)]
    per_scan = pd.DataFrame([scan_grain_values(m) for m in ms])
    fields = pd.concat([m["fields"] for m in ms], ignore_index=True)
    by_fields = pooled_grain_size(per_scan, fields=fields)
    total = sum(m["heyn_mean_px"] * m["n_intercepts"] for m in ms) / sum(m["n_intercepts"] for m in ms)
    assert by_fields["pooled_over"] == "fields" and by_fields["grain_fields"] == len(fields)
    assert by_fields["heyn_mean_px"] == pytest.approx(total)
    assert by_fields["heyn_ci95_low_um"] < by_fields["heyn_mean_um"] < by_fields["heyn_ci95_high_um"]
    by_scans = pooled_grain_size(per_scan)
    assert by_scans["pooled_over"] == "scans" and by_scans["grain_fields"] == 4
    assert by_scans["heyn_mean_px"] == pytest.approx(total)  # the same pooled mean
    assert by_scans["grain_size_G"] == pytest.approx(by_fields["grain_size_G"])
    assert by_scans["grain_size_G_ci95_low"] < by_scans["grain_size_G"] < by_scans["grain_size_G_ci95_high"]
    two = pooled_grain_size(per_scan.iloc[:2])
    assert math.isnan(two["heyn_ci95_low_px"]) and "needs >= 3" in two["grain_note"]
    with pytest.raises(ValueError, match="lacks columns"):
        pooled_grain_size(per_scan.drop(columns=["n_crossings"]))


# --------------------------------------------------------------------------- pruning


def test_prune_removes_spurs_and_weak_segments_keeps_closed_boundaries():
    from segmentation.grains import prune_boundaries

    g = _grid((120, 120), 40, offset=20)
    spur = g.copy()
    spur[25:33, 50] = True  # an 8-px spur hanging into a grain
    spur[70, 65:70] = True  # an isolated 5-px piece
    out = prune_boundaries(spur, spur_length_px=12, min_length_px=8)
    assert not out[25:33, 50].any() and not out[70, 65:70].any()
    np.testing.assert_array_equal(out, boundary_skeleton(g))  # the closed grid is untouched
    assert grain_measures(out)["grain_count"] == grain_measures(g)["grain_count"]
    # a weak segment across a grain is removed (the two grains merge), strong ones stay
    prob = np.where(g, 0.9, 0.0)
    cut = g.copy()
    cut[40, 21:60] = True  # splits the grain between the lines at rows 20 and 60
    prob[40, 21:60] = 0.3
    assert grain_measures(cut)["grain_count"] == grain_measures(g)["grain_count"] + 1
    kept = prune_boundaries(cut, prob, min_mean_prob=0.5)
    assert not kept[40, 25:55].any()
    assert grain_measures(kept)["grain_count"] == grain_measures(g)["grain_count"]
    assert prune_boundaries(cut, prob, min_mean_prob=0.2)[40, 25:55].all()
    # pieces touching the image border stay (they may close a grain against the border)
    edge = g.copy()
    edge[0:5, 50] = True
    assert prune_boundaries(edge, spur_length_px=12)[0:5, 50].all()
    with pytest.raises(ValueError, match="needs the probabilities"):
        prune_boundaries(g, min_mean_prob=0.5)


def test_grain_postprocess_hysteresis_keeps_weak_pixels_connected_to_strong_ones():
    from segmentation.grains import grain_postprocess

    prob = np.zeros((60, 60))
    prob[30, :] = 0.9
    prob[10:30, 20] = 0.3  # weak, attached to the strong line
    prob[5:15, 45] = 0.3  # weak, alone
    out = grain_postprocess(prob, 0.2, high_threshold=0.5)
    assert out[12:28, 20].all() and not out[5:15, 45].any()
    assert grain_postprocess(prob, 0.2)[5:15, 45].any()
    assert grain_postprocess(prob, 0.2, thin=False).sum() == (prob >= 0.2).sum()
    with pytest.raises(ValueError, match="high_threshold"):
        grain_postprocess(prob, 0.5, high_threshold=0.4)
