"""Archive-wide cluster ranking (anomaly.rank)."""

from __future__ import annotations

import doctest
import io

import numpy as np
import pandas as pd
import pytest

from anomaly import rank as rank_mod
from anomaly.market import DEFAULT_ORDER_KEY, MarketConfig, market_clustering
from anomaly.rank import RANK_COLUMNS, percentile_label, rank_clusters


def archive(rng, n_scans=4, per_scan=5, key=DEFAULT_ORDER_KEY) -> pd.DataFrame:
    rows = []
    for i in range(n_scans):
        for c in range(per_scan):
            rows.append({"scan_id": f"scan{i:02d}", "cluster_id": c, key: float(rng.integers(0, 6)) * 1e3,
                         "n_regions": int(rng.integers(1, 9))})
    return pd.DataFrame(rows)


def parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf)
    return buf.getvalue()


def test_scores_ranks_and_norm():
    c = pd.DataFrame({"scan_id": ["b", "a", "a", "c"], "cluster_id": [0, 0, 1, 0], "sum": [4.0, 10.0, 2.0, 6.0]})
    out = rank_clusters(c, key="sum")
    assert list(out.columns) == list(c.columns) + list(RANK_COLUMNS)
    assert out[["scan_id", "cluster_id"]].values.tolist() == [["a", 0], ["c", 0], ["b", 0], ["a", 1]]
    assert out["rank"].tolist() == [1, 2, 3, 4]
    assert out["score"].tolist() == [10.0, 6.0, 4.0, 2.0]
    assert out["norm_score"].tolist() == [1.0, 0.6, 0.4, 0.2]  # x / max: in (0, 1]
    # clusters with a key >= x: 1, 2, 3, 4 of 4
    assert out["top_percent"].tolist() == [25.0, 50.0, 75.0, 100.0]
    assert out["percentile"].tolist() == ["top 25%", "top 50%", "top 75%", "top 100%"]
    assert out.index.equals(pd.RangeIndex(4))


def test_ties_broken_by_scan_then_cluster():
    c = pd.DataFrame({"scan_id": ["s2", "s1", "s1", "s10"], "cluster_id": [0, 3, 1, 0], "sum": [1.0] * 4})
    out = rank_clusters(c, key="sum")
    assert out[["scan_id", "cluster_id"]].values.tolist() == [["s1", 1], ["s1", 3], ["s10", 0], ["s2", 0]]
    assert out["norm_score"].tolist() == [1.0] * 4  # all equal: all at the top
    assert set(out["percentile"]) == {"top 100%"}  # tied clusters share the whole group's place


@pytest.mark.parametrize("n", [3, 10, 37, 1000])
def test_top_percent_of_distinct_scores(n):
    c = pd.DataFrame({"scan_id": "x", "cluster_id": np.arange(n), "sum": np.arange(1, n + 1, dtype=float)})
    out = rank_clusters(c, key="sum")
    assert out["percentile"].is_unique or n > 100  # two digits tell up to 100 places apart
    assert np.allclose(out["top_percent"], 100.0 * np.arange(1, n + 1) / n)
    assert out["percentile"].iloc[0] == percentile_label(100.0 / n)
    assert out["percentile"].iloc[-1] == "top 100%"
    assert (out["norm_score"] > 0).all() and out["norm_score"].iloc[0] == 1.0
    # the text never claims a better place than the number
    shown = out["percentile"].str.removeprefix("top ").str.removesuffix("%").astype(float)
    assert (shown >= out["top_percent"] - 1e-9).all()


def test_non_positive_keys_have_no_norm_score():
    c = pd.DataFrame({"scan_id": ["a", "a"], "cluster_id": [0, 1], "sum": [0.0, -1.0]})
    out = rank_clusters(c, key="sum")
    assert out["norm_score"].isna().all()
    assert out["rank"].tolist() == [1, 2]


def test_deterministic_bytes_and_row_order_invariance():
    rng = np.random.default_rng(0)
    c = archive(rng, n_scans=6, per_scan=7)
    first = parquet_bytes(rank_clusters(c))
    assert parquet_bytes(rank_clusters(c)) == first
    for seed in range(5):
        p = np.random.default_rng(seed).permutation(len(c))
        shuffled = c.iloc[p].reset_index(drop=True)
        assert parquet_bytes(rank_clusters(shuffled)) == first
        shuffled.index = shuffled.index * 3 + 11  # a non-default index does not leak into the output
        assert parquet_bytes(rank_clusters(shuffled)) == first


def test_ranks_real_market_output():
    rng = np.random.default_rng(1)
    parts = []
    for scan in ("left", "right"):
        n = 60
        r, col = rng.integers(0, 800, n), rng.integers(0, 800, n)
        t = pd.DataFrame({"region_id": np.arange(1, n + 1), "bbox_rmin": r, "bbox_cmin": col,
                          "bbox_rmax": r + 3, "bbox_cmax": col + 4, "area_px": 20})
        _, clusters = market_clustering(t, rng.beta(0.6, 3, n), MarketConfig(n_clusters=5, price_from="cores"))
        parts.append(clusters.assign(scan_id=scan))
    allc = pd.concat(parts, ignore_index=True)
    out = rank_clusters(allc)
    assert len(out) == len(allc)
    assert out["score"].equals(out[DEFAULT_ORDER_KEY].astype(float).rename("score"))
    assert np.all(np.diff(out["score"].to_numpy()) <= 0)
    assert out["norm_score"].between(0, 1, inclusive="right").all()
    assert (out["score"] > 0).all()
    assert sorted(out["rank"]) == list(range(1, len(out) + 1))


def test_empty_archive():
    c = pd.DataFrame({"scan_id": pd.Series([], dtype=str), "cluster_id": pd.Series([], dtype=np.int64),
                      "sum": pd.Series([], dtype=float)})
    out = rank_clusters(c, key="sum")
    assert len(out) == 0
    assert list(out.columns) == ["scan_id", "cluster_id", "sum", *RANK_COLUMNS]


def test_existing_rank_columns_are_replaced():
    c = pd.DataFrame({"scan_id": ["a", "b"], "cluster_id": [0, 0], "sum": [1.0, 2.0]})
    once = rank_clusters(c, key="sum")
    twice = rank_clusters(once.iloc[::-1], key="sum")
    pd.testing.assert_frame_equal(once, twice)


def test_bad_input():
    c = pd.DataFrame({"scan_id": ["a", "a"], "cluster_id": [0, 1], "sum": [1.0, 2.0]})
    with pytest.raises(ValueError, match="lacks"):
        rank_clusters(c, key="mean")
    with pytest.raises(ValueError, match="lacks"):
        rank_clusters(c.drop(columns="scan_id"), key="sum")
    with pytest.raises(ValueError, match="NaN"):
        rank_clusters(c.assign(sum=[1.0, np.nan]), key="sum")
    with pytest.raises(ValueError, match="unique"):
        rank_clusters(c.assign(cluster_id=[0, 0]), key="sum")
    with pytest.raises(ValueError, match="numeric"):
        rank_clusters(c.assign(sum=["x", "y"]), key="sum")
    with pytest.raises(ValueError, match="output"):
        rank_clusters(c.assign(score=[1.0, 2.0]), key="score")
    with pytest.raises(ValueError, match="DataFrame"):
        rank_clusters(c.to_dict(), key="sum")


def test_docstring_examples():
    assert doctest.testmod(rank_mod).failed == 0
