"""Cluster features and reasons in words (anomaly.reasons)."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pandas as pd
import pytest

from anomaly import reasons as reasons_mod
from anomaly.market import MarketConfig, market_clustering
from anomaly.rank import rank_clusters
from anomaly.reasons import FEATURE_COLUMNS, cluster_features, cluster_reasons
from data import regions_from_mask


def scan_table(pixel_size_um=None):
    m = np.zeros((200, 300), bool)
    for r, c in ((50, 50), (50, 70), (60, 60)):  # three 7 x 7 squares close together
        m[r : r + 7, c : c + 7] = True
    m[150:153, 200:260] = True  # a long thin bar
    m[0:10, 290:300] = True  # a square cut by the scan border
    m[100, 150] = True  # a single pixel, in no cluster
    t = regions_from_mask(m, pixel_size_um=pixel_size_um)
    t["spatial_score"] = np.linspace(0.2, 0.9, len(t))
    t["circle_score"] = np.linspace(0.8, 0.1, len(t))
    t["combined_score"] = t["spatial_score"] * t["circle_score"]
    return t


def clustered(pixel_size_um=None):
    t = scan_table(pixel_size_um)
    s = np.where(t["area_px"] > 1, 0.9, 0.0)
    labels, clusters = market_clustering(t, s, MarketConfig(n_clusters=5, max_gap_px=30))
    t["cluster_id"] = labels
    return t, clusters


def test_features_by_hand():
    t, clusters = clustered(pixel_size_um=0.5)
    f = cluster_features(t, clusters, pixel_size_um=0.5, shape=(200, 300))
    assert list(f.columns) == ["cluster_id", *FEATURE_COLUMNS]
    assert (
        f.index.equals(clusters.index)
        and f["cluster_id"].tolist() == clusters["cluster_id"].tolist()
    )
    for _, c in clusters.iterrows():
        members = t[t["cluster_id"] == c["cluster_id"]]
        row = f[f["cluster_id"] == c["cluster_id"]].iloc[0]
        assert row["member_spatial_mean"] == pytest.approx(members["spatial_score"].mean())
        assert row["member_circle_max"] == pytest.approx(members["circle_score"].max())
        assert row["member_combined_min"] == pytest.approx(members["combined_score"].min())
        assert math.isnan(row["member_shape_mean"])  # no shape_score column
        assert row["member_area_max_px"] == members["area_px"].max()
        assert row["member_area_max_um2"] == pytest.approx(members["area_px"].max() * 0.25)
        h = c["bbox_rmax"] - c["bbox_rmin"] + 1
        w = c["bbox_cmax"] - c["bbox_cmin"] + 1
        assert row["extent_px"] == pytest.approx(math.hypot(h, w))
        assert row["extent_um"] == pytest.approx(0.5 * math.hypot(h, w))
        assert row["box_fill"] == pytest.approx(members["area_px"].sum() / (h * w))
        el = (members["feret_max_px"] / members["feret_min_px"].clip(lower=1)).max()
        assert row["member_elongation_max"] == pytest.approx(el)
    edge = f.loc[clusters["bbox_rmin"] == 0, "edge_distance_px"]
    assert edge.tolist() == [0.0]
    bar = f.loc[(clusters["n_regions"] == 1) & (clusters["bbox_rmin"] == 150)].iloc[0]
    assert bar["member_elongation_max"] > 10


def test_uncalibrated_and_no_shape():
    t, clusters = clustered()
    f = cluster_features(t, clusters, pixel_size_um=None)
    assert f["extent_um"].isna().all() and f["member_area_max_um2"].isna().all()
    assert f["edge_distance_px"].isna().all()
    assert np.isfinite(f["extent_px"]).all()
    assert cluster_features(t, clusters, pixel_size_um=float("nan"))["extent_um"].isna().all()


def test_bad_input():
    t, clusters = clustered()
    with pytest.raises(ValueError, match="lacks"):
        cluster_features(t.drop(columns="cluster_id"), clusters, pixel_size_um=None)
    with pytest.raises(ValueError, match="no member"):
        cluster_features(t.assign(cluster_id=-1), clusters, pixel_size_um=None)
    with pytest.raises(ValueError, match="not in clusters"):
        cluster_features(
            t.assign(cluster_id=t["cluster_id"].replace(0, 77)), clusters, pixel_size_um=None
        )
    with pytest.raises(ValueError, match="pixel_size_um"):
        cluster_features(t, clusters, pixel_size_um=-1.0)
    with pytest.raises(ValueError, match="shape"):
        cluster_features(t, clusters, pixel_size_um=None, shape=(0, 5))


def test_reasons_words_units_and_determinism():
    t, clusters = clustered(pixel_size_um=0.5)
    f = cluster_features(t, clusters, pixel_size_um=0.5, shape=(200, 300))
    c = pd.concat([clusters, f.drop(columns="cluster_id")], axis=1).assign(scan_id="s")
    ranked = rank_clusters(c)
    r = cluster_reasons(ranked)
    assert r.name == "reason" and r.index.equals(ranked.index)
    assert r.equals(cluster_reasons(ranked.copy()))  # deterministic
    by_n = dict(zip(ranked["n_regions"], r))
    assert by_n[3].startswith("3 ") and "impurities within" in by_n[3] and "µm" in by_n[3]
    assert all("px" not in s for s in r)  # calibrated: micrometres
    assert any("touches the scan edge" in s for s in r)
    assert any(s.startswith("1 elongated impurity") for s in r)  # the bar
    assert sum("score in the top" in s and "% of this run's clusters" in s for s in r) >= len(r) - 1
    assert not any("top 100%" in s for s in r)  # the last place says nothing: left out
    assert all("<" not in s and "\n" not in s for s in r)
    # uncalibrated: pixels
    f0 = cluster_features(t, clusters, pixel_size_um=None)
    r0 = cluster_reasons(pd.concat([clusters, f0.drop(columns="cluster_id")], axis=1))
    assert all(" px" in s and "µm" not in s for s in r0)


def test_reasons_with_little_information():
    c = pd.DataFrame({"n_regions": [2, 1]})
    assert cluster_reasons(c).tolist() == ["2 impurities", "1 impurity"]
    with pytest.raises(ValueError, match="n_regions"):
        cluster_reasons(pd.DataFrame({"x": [1]}))


def test_docstring_examples():
    assert doctest.testmod(reasons_mod).failed == 0


def test_reasons_name_the_phase_of_a_phase_run():
    import pandas as pd

    from anomaly.reasons import cluster_reasons

    c = pd.DataFrame({"n_regions": [3, 1, 2], "extent_um": [40.0, 12.0, 30.0], "member_feret_max_um": [18.0, 11.0, 9.0],
                      "phase": ["pore", "oxide", "oxide+pore"]})
    out = cluster_reasons(c).tolist()
    assert out[0].startswith("3 ") and "pores within 40 µm" in out[0]
    assert out[1].startswith("1 ") and "oxide, 11 µm across" in out[1]
    assert "particles (oxide, pore)" in out[2]
