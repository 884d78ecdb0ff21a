"""Gallery crops, cluster facts and the summary plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.regions import label_mask, regions_from_mask
from experiments.reporting import (
    cluster_facts,
    RegionStats,
    plot_score_counts,
    plot_size_counts,
    region_stats,
    render_cluster_crop,
)
from experiments.reporting.gallery import crop_window, fmt_num, parse_ids


def _scene(pixel_size_um=None):
    mask = np.zeros((120, 150), np.uint8)
    mask[40:50, 40:52] = 255  # 1 member
    mask[60:66, 70:80] = 255  # 2 member
    mask[100:104, 130:140] = 255  # 3 other
    reg = regions_from_mask(mask, pixel_size_um=pixel_size_um)
    reg["scan_id"] = "s"
    reg["combined_score"] = [1.0, 0.0, 0.5]
    reg["cluster_id"] = [4, 4, -1]
    cluster = {
        "scan_id": "s",
        "cluster_id": 4,
        "rank": 2,
        "score": 12.5,
        "norm_score": 0.8,
        "percentile": "90%-100%",
        "n_regions": 2,
        "core_region_ids": "1",
        "bbox_rmin": 40,
        "bbox_cmin": 40,
        "bbox_rmax": 65,
        "bbox_cmax": 79,
    }
    return mask, reg, cluster


def test_crop_window_adds_margin_and_clips():
    c = {"bbox_rmin": 10, "bbox_cmin": 0, "bbox_rmax": 29, "bbox_cmax": 9}
    assert crop_window(c, (100, 100), margin=0.5, min_margin_px=4) == (0, 0, 39, 19)
    assert crop_window(c, (25, 100), margin=0.0, min_margin_px=4) == (6, 0, 24, 13)
    with pytest.raises(ValueError, match="empty"):
        crop_window({"bbox_rmin": 5, "bbox_cmin": 0, "bbox_rmax": 4, "bbox_cmax": 1}, (10, 10))


def test_parse_ids_and_numbers():
    assert parse_ids("3;17").tolist() == [3, 17]
    assert (
        parse_ids(None).size == 0 and parse_ids(float("nan")).size == 0 and parse_ids("").size == 0
    )
    with pytest.raises(ValueError):
        parse_ids("a;b")
    assert (
        fmt_num(123456) == "123,456"
        and fmt_num(1.74e14) == "1.74e+14"
        and fmt_num(0.123456) == "0.123"
        and fmt_num(np.nan) == "–"
    )


def test_facts_use_micrometres_when_calibrated():
    _, reg, cluster = _scene(pixel_size_um=0.5)
    members = reg[reg["cluster_id"] == 4]
    facts = dict(cluster_facts(cluster, members, pixel_size_um=0.5))
    assert facts["rank"] == "#2" and facts["percentile"] == "90%-100%"
    assert facts["impurities"] == "2 (1 core)"
    assert facts["extent"] == "13 × 20 µm"
    assert facts["total area"] == f"{fmt_num((120 + 60) * 0.25)} µm²"
    _, reg_px, _ = _scene()
    facts_px = dict(cluster_facts(cluster, reg_px[reg_px["cluster_id"] == 4]))
    assert facts_px["total area"] == "180 px²" and facts_px["extent"] == "26 × 40 px"


@pytest.mark.parametrize("with_labels", [True, False])
def test_crop_outlines_members_in_score_colour(with_labels):
    from matplotlib import colormaps

    mask, reg, cluster = _scene()
    labels = label_mask(mask)[0] if with_labels else None
    img = render_cluster_crop(mask, reg, cluster, labels=labels, side=300)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[1] == 316
    yellow = (np.asarray(colormaps["viridis"](1.0)[:3]) * 255).round()
    assert (np.abs(img.astype(int) - yellow).max(axis=2) < 3).sum() > 20  # region 1's outline


def test_crop_rejects_mismatched_labels():
    mask, reg, cluster = _scene()
    with pytest.raises(ValueError, match="labels shape"):
        render_cluster_crop(mask, reg, cluster, labels=np.zeros((3, 3), np.int32))


def _stats_of(diameters, scores=None, *, calibrated=False):
    n = len(diameters)
    reg = pd.DataFrame({"area_px": np.full(n, 50), "eq_diameter_px": diameters,
                        "eq_diameter_um": diameters if calibrated else np.nan})
    for k, v in (scores or {}).items():
        reg[k] = v
    return region_stats(reg, calibrated=calibrated)


def test_lognormal_fit_from_merged_histograms_recovers_parameters():
    """The run's fit comes from per-scan sums, merged: the same as a fit of all values at once."""
    rng = np.random.default_rng(7)
    values = rng.lognormal(mean=2.0, sigma=0.4, size=5000)
    merged = _stats_of(values[:1700]).merge(_stats_of(values[1700:]))
    fit = merged.lognormal()
    assert fit["n"] == 5000
    assert abs(np.log(fit["median"]) - np.log(values).mean()) < 1e-9  # exact MLE of mu
    assert abs(fit["sigma"] - np.log(values).std()) < 1e-9
    assert abs(fit["sigma"] - 0.4) < 0.02 and fit["ks_stat"] < 0.05
    assert _stats_of(np.array([1.0, 2.0])).lognormal() is None
    assert _stats_of(np.array([3.0, 3.0, 3.0])).lognormal() is None
    # round trip through the checkpoint's JSON form
    assert RegionStats.from_dict(merged.to_dict()).lognormal() == fit


@pytest.mark.parametrize("median,sigma", [(2.5, 0.7), (0.03, 1.9), (4000.0, 0.05)])
def test_lognormal_cdf_equals_scipy_stats(median, sigma):
    """The report's CDF (scipy.special.ndtr, so a run does not import scipy.stats) is scipy.stats.lognorm's."""
    from scipy import stats

    from experiments.reporting.stats import lognormal_cdf

    x = np.concatenate([[-1.0, 0.0], np.geomspace(1e-6, 1e7, 300)])
    np.testing.assert_allclose(lognormal_cdf(x, median=median, sigma=sigma),
                               stats.lognorm.cdf(x, sigma, 0, median), rtol=1e-12, atol=1e-15)


def test_plots_render():
    rng = np.random.default_rng(0)
    st = _stats_of(rng.lognormal(1.0, 0.5, 300), {"a_score": rng.random(300),
                                                   "b_score": np.r_[rng.random(295), [np.nan] * 5]},
                   calibrated=True)
    sizes, unit = st.size_distribution()
    assert unit == "µm"
    rgb = plot_size_counts(sizes.counts, unit=unit, fit=st.lognormal())
    assert rgb.shape == (420, 760, 3)
    assert plot_size_counts(np.zeros(len(sizes.counts))).shape == (420, 760, 3)  # no impurities
    assert st.scores_nan == {"a_score": 0, "b_score": 5}
    assert plot_score_counts(st.scores, st.scores_nan).shape[2] == 3
