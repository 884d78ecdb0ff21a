import numpy as np
import pytest

from data.standards.phases import PhaseError, PhaseMeasureConfig, measure_phases

NAMES = ["pore", "oxide", "coating", "substrate"]
COAT = PhaseMeasureConfig(coating="coating", substrate="substrate")


def _band(top=20, bottom=60, h=100, w=80):
    lab = np.ones((h, w), np.uint8)  # mount: pore-like dark
    lab[top:bottom] = 3
    lab[bottom:] = 4
    return lab


def test_exact_fractions():
    lab = np.zeros((40, 40), np.uint8)
    lab[:, :10] = 1
    lab[:, 10:] = 2
    m = measure_phases(lab, names=["a", "b"], pixel_size_um=None, cfg=PhaseMeasureConfig(objects=()))
    f = m.fractions.set_index("phase")
    assert f.loc["a", "area_fraction"] == pytest.approx(0.25)
    assert f.loc["b", "area_fraction"] == pytest.approx(0.75)
    assert m.coating is None and m.thickness_profile is None


def test_unassigned_pixels_left_out_of_fractions():
    lab = np.zeros((20, 20), np.uint8)
    lab[:10] = 1
    m = measure_phases(lab, names=["a"], pixel_size_um=1.0, cfg=PhaseMeasureConfig(objects=()))
    assert m.fractions["area_fraction"].iloc[0] == pytest.approx(1.0)


def test_band_thickness_exact_and_mount_not_porosity():
    m = measure_phases(_band(), names=NAMES, pixel_size_um=0.5, cfg=COAT)
    c = m.coating.iloc[0]
    assert c["thickness_mean_um"] == pytest.approx(20.0)
    assert c["thickness_min_um"] == c["thickness_max_um"] == pytest.approx(20.0)
    assert c["porosity"] == 0.0
    assert c["thickness_unit"] == "um"
    assert np.allclose(m.thickness_profile, 20.0)
    assert len(m.regions) == 0  # the mount is outside the layer


def test_rows_direction():
    m = measure_phases(_band().T.copy(), names=NAMES, pixel_size_um=1.0,
                       cfg=PhaseMeasureConfig(coating="coating", substrate="substrate", direction="rows"))
    assert m.coating.iloc[0]["thickness_mean_um"] == pytest.approx(40.0)


def test_pores_counted_and_surface_pore_does_not_thin_the_layer():
    lab = _band()
    lab[30:34, 10:14] = 1  # inner pore
    lab[40:43, 40:43] = 1  # inner pore
    lab[20:24, 60:64] = 1  # pore open at the top surface
    m = measure_phases(lab, names=NAMES, pixel_size_um=1.0, cfg=COAT)
    c = m.coating.iloc[0]
    assert c["thickness_mean_um"] == pytest.approx(40.0)
    assert c["porosity"] == pytest.approx((16 + 9 + 16) / (40 * 80))
    assert c["porosity_ci_low"] <= c["porosity"] <= c["porosity_ci_high"]
    assert len(m.regions) == 3
    assert set(m.regions["phase"]) == {"pore"}
    assert m.region_labels.max() == 3
    assert sorted(m.regions["area_px"]) == [9, 16, 16]


def test_uncalibrated_needs_allow_px():
    with pytest.raises(PhaseError, match="uncalibrated"):
        measure_phases(_band(), names=NAMES, pixel_size_um=None, cfg=COAT)
    cfg = PhaseMeasureConfig(coating="coating", substrate="substrate", allow_px=True)
    m = measure_phases(_band(), names=NAMES, pixel_size_um=None, cfg=cfg)
    assert m.coating.iloc[0]["thickness_unit"] == "px"
    assert m.coating.iloc[0]["thickness_mean_um"] == pytest.approx(40.0)


def test_errors():
    with pytest.raises(PhaseError, match="no substrate"):
        PhaseMeasureConfig(coating="coating")
    with pytest.raises(PhaseError, match="only 2 phase names"):
        measure_phases(np.full((5, 5), 3, np.uint8), names=["a", "b"], pixel_size_um=1.0, cfg=PhaseMeasureConfig())
    with pytest.raises(PhaseError, match="not one of the phase names"):
        measure_phases(_band(), names=NAMES, pixel_size_um=1.0,
                       cfg=PhaseMeasureConfig(coating="layer", substrate="substrate"))
    with pytest.raises(PhaseError, match="RGB"):
        measure_phases(np.zeros((5, 5, 3), np.uint8), names=["a"], pixel_size_um=1.0, cfg=PhaseMeasureConfig())


def test_melted_fraction():
    lab = _band()
    lab[20:30] = 2
    cfg = PhaseMeasureConfig(coating="coating", substrate="substrate", melted="coating", unmelted="oxide")
    m = measure_phases(lab, names=NAMES, pixel_size_um=1.0, cfg=cfg)
    assert m.coating.iloc[0]["melted_fraction"] == pytest.approx(30 / 40)


def test_field_ci_covers_true_fraction_most_of_the_time():
    p, hits, trials = 0.3, 0, 60
    for seed in range(100, 100 + trials):
        rng = np.random.default_rng(seed)
        lab = (rng.random((128, 128)) < p).astype(np.uint8) + 1
        f = measure_phases(lab, names=["a", "b"], pixel_size_um=1.0, cfg=PhaseMeasureConfig(objects=())).fractions
        row = f[f["phase"] == "b"].iloc[0]
        hits += row["ci_low"] <= p <= row["ci_high"]
        n_points = 8 * 8  # spacing 16 on 128 px
        assert abs(row["point_count_fraction"] - p) < 4.5 * np.sqrt(p * (1 - p) / n_points)
        assert row["point_count_se"] > 0
    assert 0.85 <= hits / trials <= 1.0


def test_specks_in_the_mount_do_not_move_the_surfaces():
    lab = _band()
    lab[5, 7] = 3  # coating-grey speck in the mount
    lab[6, 7] = 4  # substrate-grey speck
    lab[8, 30:32] = 3
    m = measure_phases(lab, names=NAMES, pixel_size_um=1.0, cfg=COAT)
    assert m.coating.iloc[0]["thickness_min_um"] == pytest.approx(40.0)
    assert m.coating.iloc[0]["thickness_max_um"] == pytest.approx(40.0)


def test_mount_excluded_from_fractions_when_a_coating_is_measured():
    lab = _band(top=20, bottom=60, h=100, w=80)  # rows 0-19: dark mount read as "pore"
    lab[30:34, 10:14] = 1  # one pore inside the layer
    m = measure_phases(lab, names=NAMES, pixel_size_um=1.0, cfg=COAT)
    f = m.fractions.set_index("phase")["area_fraction"]
    sample = 80 * 80
    assert f["pore"] == pytest.approx(16 / sample)
    assert f["coating"] == pytest.approx((40 * 80 - 16) / sample)
    assert f["substrate"] == pytest.approx(40 * 80 / sample)
    assert m.coating.iloc[0]["mount_fraction"] == pytest.approx(0.2)
    assert m.sample_mask.sum() == sample and not m.sample_mask[:20].any()
    assert m.fractions["point_count_fraction"].sum() == pytest.approx(1.0)
    # without a coating nothing is excluded: the dark rows count as pore
    m2 = measure_phases(lab, names=NAMES, pixel_size_um=1.0, cfg=PhaseMeasureConfig())
    assert m2.fractions.set_index("phase")["area_fraction"]["pore"] == pytest.approx((20 * 80 + 16) / 8000)


def test_generated_coating_fractions_agree_with_truth_over_the_sample():
    from data.synthetic_phases import coating_scan

    t = coating_scan(shape=(128, 160), seed=3, thickness_px=50.0, porosity=0.05, pore_median_px=3.0)
    m = measure_phases(t.labels, names=t.names, pixel_size_um=t.pixel_size_um, cfg=COAT)
    f = m.fractions.set_index("phase")["area_fraction"]
    for k in t.names:
        assert f[k] == pytest.approx(t.fractions[k], abs=1e-9)
    assert m.coating.iloc[0]["porosity"] == pytest.approx(t.porosity, abs=1e-9)
    # the top surface is a grey opening of the layer top (pores open at the surface): near exact
    assert m.coating.iloc[0]["mount_fraction"] == pytest.approx(t.mount_fraction, rel=0.02)


def test_first_rows_equal_numpy_argmax():
    from data.standards.phases import _first_rows

    rng = np.random.default_rng(3)
    m = rng.uniform(size=(60, 45)) < 0.03
    m[:, 5] = False  # a column with no True row
    assert np.array_equal(_first_rows(m), np.argmax(m, axis=0))
    assert np.array_equal(_first_rows(m, last=True), m.shape[0] - 1 - np.argmax(m[::-1], axis=0))
    assert np.array_equal(_first_rows(m.T), np.argmax(m.T, axis=0))  # non-contiguous input
