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
