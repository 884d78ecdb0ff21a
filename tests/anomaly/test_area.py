"""Market clustering (anomaly.area): hand-made cases, invariances, the naive oracle, bad input."""

from __future__ import annotations

import doctest
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from anomaly import market as area
from anomaly._geometry import box_gap
from anomaly.market import (
    CLUSTER_COLUMNS,
    ORDER_KEYS,
    MarketConfig,
    cluster_measures,
    initial_wallets,
    market_assign,
    market_clustering,
    max_pairwise_gap,
    merge_prices,
    purchase_prices,
)
from experiments.research.bench.naive_market import naive_market_assign  # the one allowed bench import: the oracle

NO_MERGE = MarketConfig(n_clusters=2, merge_penalty_power=400.0)  # (2-|ds|)^400: merges never affordable


def table(boxes, region_ids=None, areas=None) -> pd.DataFrame:
    b = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    n = b.shape[0]
    rid = np.arange(1, n + 1) if region_ids is None else np.asarray(region_ids)
    a = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1) if areas is None else np.asarray(areas)
    return pd.DataFrame({"region_id": rid, "bbox_rmin": b[:, 0], "bbox_cmin": b[:, 1],
                         "bbox_rmax": b[:, 2], "bbox_cmax": b[:, 3], "area_px": a})


def box_at(r, c, h=3, w=3):
    return [r, c, r + h, c + w]


def wallet(s, cfg=MarketConfig()):
    return math.exp(math.sqrt(100 * s)) ** cfg.wallet_power


def price(d, so, sm, cfg=MarketConfig()):
    return math.exp(math.sqrt(d)) ** cfg.distance_power * (1 - cfg.affinity * math.sqrt(so * sm)) ** cfg.score_power


def random_case(rng, n, size):
    r = rng.integers(0, size, n)
    c = rng.integers(0, size, n)
    boxes = np.column_stack([r, c, r + rng.integers(0, 9, n), c + rng.integers(0, 9, n)])
    s = np.round(rng.beta(0.7, 2.0, n), int(rng.choice([1, 3])))  # 1 decimal: many score ties
    s[rng.random(n) < 0.15] = 0.0
    rid = rng.permutation(n) * 7 + 3
    return boxes, s, rid


# ------------------------------------------------------------------ formulas


def test_price_formulas_match_the_paper():
    cfg = MarketConfig()
    assert initial_wallets(np.array([0.25]), cfg)[0] == pytest.approx(wallet(0.25), rel=1e-13)
    assert purchase_prices(4.0, 0.25, 1.0, cfg) == pytest.approx(price(4.0, 0.25, 1.0), rel=1e-13)
    so, sm = 0.9, 0.4
    disc = (1 - (0.95 * so) ** 0.05 * (0.95 * sm) ** 0.05) ** 2.5 * (2 - abs(so - sm)) ** 8
    assert merge_prices(9.0, so, sm, cfg) == pytest.approx(price(9.0, so, sm) * disc, rel=1e-12)
    # symmetric bit for bit (one stored price serves both directions)
    d = np.array([0.0, 3.0, 17.5])
    a, b = np.array([0.1, 0.33, 0.9]), np.array([0.7, 0.01, 0.9])
    assert np.array_equal(purchase_prices(d, a, b, cfg), purchase_prices(d, b, a, cfg))


def test_affordable_gap_bound_is_conservative():
    cfg = MarketConfig()
    for w in (10.0, 1e5, 1e12, 1e14):
        r = area._max_affordable_gap(w, cfg)
        assert purchase_prices(r + 1e-3, 1.0, 1.0, cfg) > w  # beyond it even the best pair is too dear
        assert purchase_prices(r * 0.999, 1.0, 1.0, cfg) <= w * 1.01


# ------------------------------------------------------------------ hand-made markets


def test_seed_buys_what_it_can_afford_and_nothing_else():
    cfg = MarketConfig(n_clusters=1)
    s_seed, s_o = 0.5, 0.01
    # largest affordable gap for one purchase: exp(1.7 sqrt(D)) (1 - .95 sqrt(s s'))^1.6 <= W
    d_star = ((math.log(wallet(s_seed)) - 1.6 * math.log(1 - 0.95 * math.sqrt(s_seed * s_o))) / 1.7) ** 2
    near, far = int(d_star) - 4, int(d_star) + 5
    # seed in the middle; impurity 2 to its left within reach, 3 to its right out of reach, 4 unscored
    t = table([box_at(0, 1000), box_at(0, 1000 - near - 3), box_at(0, 1003 + far), box_at(0, 1006)])
    s = np.array([s_seed, s_o, s_o, 0.0])
    assert box_gap(t.iloc[0, 1:5].to_numpy(), t.iloc[1, 1:5].to_numpy()) == near
    labels, clusters = market_clustering(t, s, cfg)
    assert labels.tolist() == [0, 0, -1, -1]
    res = market_assign(area.boxes_of(t), s, t.region_id.to_numpy(), cfg)
    assert (res.n_purchases, res.n_rebuys, res.n_merges) == (1, 0, 0)
    assert res.wallets[0] == pytest.approx(wallet(s_seed) - price(near, s_o, s_seed), rel=1e-12)
    assert clusters.loc[0, "core_region_ids"] == "1"
    assert clusters.loc[0, "n_regions"] == 2
    assert clusters.loc[0, ["bbox_rmin", "bbox_cmin", "bbox_rmax", "bbox_cmax"]].tolist() == [
        0, 1000 - near - 3, 3, 1003]


def test_two_close_seeds_merge_and_wallets_add():
    t = table([box_at(0, 0), box_at(0, 8), box_at(500, 500)])  # gap 5 between the seeds
    s = np.array([0.8, 0.9, 0.05])
    cfg = MarketConfig(n_clusters=2)
    res = market_assign(area.boxes_of(t), s, t.region_id.to_numpy(), cfg)
    w = initial_wallets(np.array([0.9, 0.8]), cfg)
    assert res.n_merges == 1
    assert res.seed_rows.tolist() == [1, 0]
    assert res.wallets[0] == w[0] + w[1]  # the richer seed acts first; nothing is paid for a merge
    assert np.isnan(res.wallets[1])
    labels, clusters = market_clustering(t, s, cfg)
    assert len(clusters) == 1
    assert clusters.loc[0, "core_region_ids"] == "1;2"
    assert labels[:2].tolist() == [0, 0]
    # the far low-score impurity: reachable only if the merged wallet pays exp(1.7 sqrt(D))...
    d = float(box_gap(t.iloc[2, 1:5].to_numpy(dtype=float), t.iloc[1, 1:5].to_numpy(dtype=float)))
    assert labels[2] == (0 if price(d, 0.05, 0.9) <= w[0] + w[1] else -1)


def test_distant_seeds_do_not_merge():
    t = table([box_at(0, 0), box_at(0, 5000)])
    labels, clusters = market_clustering(t, np.array([0.9, 0.8]), MarketConfig(n_clusters=2))
    assert sorted(labels.tolist()) == [0, 1]
    assert sorted(clusters["core_region_ids"].tolist()) == ["1", "2"]
    # one member each: the diameter is the member's own box diagonal (4 x 4 px boxes)
    assert np.allclose(clusters["diameter"], math.hypot(4, 4))
    assert np.allclose(clusters["amount_div_diameter"], 1 / math.hypot(4, 4))


def test_richer_cluster_rebuys_and_poorer_cannot_take_back():
    # A (s=.95) at col 0 with y next to it; B (s=.85) at col 260 with x at col 200.
    # Pass 1: A buys y (cheapest), B buys x.  Pass 2: A (richer than B's purchase wallet)
    # re-buys x through y; B may not take x back.  Merges are disabled by the config.
    t = table([box_at(0, 0), box_at(0, 6), box_at(0, 200), box_at(0, 260)])
    s = np.array([0.95, 0.05, 0.05, 0.85])
    res = market_assign(area.boxes_of(t), s, t.region_id.to_numpy(), NO_MERGE)
    assert res.labels.tolist() == [0, 0, 0, 1]
    assert (res.n_purchases, res.n_rebuys, res.n_merges) == (3, 1, 0)
    w_a = wallet(0.95) - price(3, 0.05, 0.95) - price(191, 0.05, 0.05)
    w_b = wallet(0.85) - price(57, 0.05, 0.85)
    assert res.wallets[0] == pytest.approx(w_a, rel=1e-12)
    assert res.wallets[1] == pytest.approx(w_b, rel=1e-12)


def test_fewer_scored_impurities_than_clusters():
    t = table([box_at(0, 0), box_at(0, 3000), box_at(3000, 0), box_at(10, 10)])
    s = np.array([0.3, 0.2, 0.1, 0.0])
    labels, clusters = market_clustering(t, s, MarketConfig(n_clusters=10))
    assert labels[3] == -1
    assert sorted(labels[:3].tolist()) == [0, 1, 2]
    assert sorted(clusters["core_region_ids"].tolist()) == ["1", "2", "3"]
    assert (clusters["n_regions"] == 1).all()


@pytest.mark.parametrize("n", [0, 3])
def test_no_scored_impurities(n):
    t = table(np.array([box_at(10 * i, 0) for i in range(n)]).reshape(-1, 4))
    labels, clusters = market_clustering(t, np.zeros(n), MarketConfig())
    assert labels.dtype == np.int64 and labels.tolist() == [-1] * n
    assert len(clusters) == 0
    assert list(clusters.columns) == list(CLUSTER_COLUMNS)


def test_seed_ties_go_to_the_smaller_region_id_in_any_row_order():
    t = table([box_at(0, 0), box_at(0, 2000)], region_ids=[7, 5])
    s = np.array([0.5, 0.5])
    for perm in ([0, 1], [1, 0]):
        labels, clusters = market_clustering(t.iloc[perm].reset_index(drop=True), s[perm], MarketConfig(n_clusters=1))
        got = dict(zip(t.region_id.iloc[perm].tolist(), labels.tolist()))
        assert got == {5: 0, 7: -1}
        assert clusters["core_region_ids"].tolist() == ["5"]


@pytest.mark.parametrize("price_from", ["members", "cores"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_result_does_not_depend_on_row_order(seed, price_from):
    rng = np.random.default_rng(seed)
    boxes, s, rid = random_case(rng, 80, 400)
    cfg = MarketConfig(n_clusters=6, price_from=price_from)
    t = table(boxes, region_ids=rid)
    labels, clusters = market_clustering(t, s, cfg)
    for _ in range(3):
        p = rng.permutation(len(t))
        labels_p, clusters_p = market_clustering(t.iloc[p].reset_index(drop=True), s[p], cfg)
        assert np.array_equal(labels_p, labels[p])
        pd.testing.assert_frame_equal(clusters_p, clusters, check_exact=True)


def test_labels_and_clusters_table_agree():
    rng = np.random.default_rng(5)
    boxes, s, rid = random_case(rng, 120, 600)
    t = table(boxes, region_ids=rid)
    cfg = MarketConfig(n_clusters=8, price_from="cores")
    labels, clusters = market_clustering(t, s, cfg)
    assert list(clusters.columns) == list(CLUSTER_COLUMNS)
    assert clusters["cluster_id"].tolist() == list(range(len(clusters)))
    assert (labels[s == 0] == -1).all()
    assert np.array_equal(np.bincount(labels[labels >= 0], minlength=len(clusters)), clusters["n_regions"])
    key = clusters[cfg.order_key].to_numpy()
    assert np.all(np.diff(key) <= 0)  # numbered by decreasing order key
    for row in clusters.itertuples():
        m = labels == row.cluster_id
        assert row.bbox_rmin == boxes[m, 0].min() and row.bbox_cmax == boxes[m, 3].max()
        cores = [int(x) for x in row.core_region_ids.split(";")]
        assert set(cores) <= set(rid[m].tolist())
    all_cores = sum((c.split(";") for c in clusters["core_region_ids"]), [])
    assert len(all_cores) == min(8, int((s > 0).sum()))


# ------------------------------------------------------------------ the naive oracle


@pytest.mark.parametrize("price_from, max_gap", [("members", None), ("cores", None), ("members", 25.0),
                                                 ("cores", 40.0)])
def test_fast_market_equals_naive_oracle(price_from, max_gap):
    rng = np.random.default_rng((2024 if price_from == "members" else 7) + int(max_gap or 0))
    totals = np.zeros(3, int)
    for _ in range(250):
        n = int(rng.integers(2, 50))
        boxes, s, rid = random_case(rng, n, int(rng.choice([60, 300, 1200])))
        cfg = MarketConfig(n_clusters=int(rng.integers(1, 9)), price_from=price_from, max_gap_px=max_gap)
        fast = market_assign(boxes, s, rid, cfg)
        slow = naive_market_assign(boxes, s, rid, cfg)
        assert np.array_equal(fast.labels, slow.labels)
        assert np.array_equal(fast.wallets, slow.wallets, equal_nan=True)
        assert np.array_equal(fast.seed_rows, slow.seed_rows)
        assert fast[3:] == slow[3:]
        totals += fast[3:]
    assert totals[1] > 0 and totals[2] > 0  # re-buys and merges were exercised


def test_max_gap_keeps_distant_groups_apart():
    # two tight groups 300 px apart, every impurity strongly anomalous: without a gap limit the
    # rich seeds merge across the scan; with max_gap_px=50 each group is its own cluster.
    g = np.array([[0, 0, 3, 3], [0, 8, 3, 11], [8, 0, 11, 3]])
    boxes = np.concatenate([g, g + 300])
    s = np.array([0.95, 0.9, 0.85, 0.94, 0.89, 0.84])
    rid = np.arange(1, 7)
    cfg = MarketConfig(n_clusters=2)
    paper = market_assign(boxes, s, rid, cfg)
    assert paper.n_merges == 1 and np.unique(paper.labels).size == 1
    local = market_assign(boxes, s, rid, replace(cfg, max_gap_px=50.0))
    assert local.n_merges == 0
    assert local.labels.tolist() == [0, 0, 0, 1, 1, 1]
    # a gap limit below the within-group gap (4 px) leaves the seeds alone
    alone = market_assign(boxes, s, rid, replace(cfg, max_gap_px=3.0))
    assert alone.labels.tolist() == [0, -1, -1, 1, -1, -1]
    assert np.isinf(purchase_prices(np.array([4.0]), 0.5, 0.5, replace(cfg, max_gap_px=3.0))).all()


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "50", True])
def test_max_gap_bad_values(bad):
    with pytest.raises(ValueError, match="max_gap_px"):
        MarketConfig(max_gap_px=bad)


# ------------------------------------------------------------------ measures


def test_cluster_measures_by_hand():
    boxes = np.array([[0, 0, 1, 1], [0, 5, 1, 6], [10, 0, 11, 1], [50, 50, 52, 52], [0, 100, 1, 101],
                      [60, 60, 61, 61], [60, 61, 61, 62]])
    areas = np.array([2.0, 3.0, 4.0, 9.0, 1.0, 4.0, 4.0])
    s = np.array([0.5, 0.2, 0.1, 0.7, 0.9, 0.3, 0.3])
    labels = np.array([0, 0, 0, 1, -1, 2, 2])
    m = cluster_measures(boxes, areas, s, labels)
    assert list(m.columns[-15:]) == list(ORDER_KEYS)
    d = math.hypot(9, 4)  # largest gap: box 1 to box 2
    w, w2 = 0.5 * 2 + 0.2 * 3 + 0.1 * 4, 0.5 * 4 + 0.2 * 9 + 0.1 * 16
    exp0 = {"median": 0.2, "mean": 0.8 / 3, "sum": 0.8, "amount": 3, "areas_sum": 9, "diameter": d,
            "amount_div_diameter": 3 / d, "amount_mult_diameter": 3 * d, "sum_div_diameter": 0.8 / d,
            "area_sum_div_diameter": 9 / d, "area_sum_mult_diameter": 9 * d,
            "weighted_area_sum_mult_diameter": w * d, "weighted_area_sum_mult_diameter_mult_amount": w * d * 3,
            "weighted_area2_sum_mult_diameter": w2 * d,
            "weighted_area2_sum_mult_diameter_mult_amount": w2 * d * 3}
    for k, v in exp0.items():
        assert m.loc[0, k] == pytest.approx(v, rel=1e-12), k
    assert m.loc[0, "n_regions"] == 3
    assert m.loc[0, ["bbox_rmin", "bbox_cmin", "bbox_rmax", "bbox_cmax"]].tolist() == [0, 0, 11, 6]
    # one member (3 x 3 px) and two overlapping 2 x 2 px members: no box gap, so the diameter is
    # the largest member box diagonal (the paper's would be 0)
    for c, d in ((1, math.hypot(3, 3)), (2, math.hypot(2, 2))):
        assert m.loc[c, "diameter"] == pytest.approx(d, rel=1e-12)
        assert m.loc[c, "amount_div_diameter"] == pytest.approx(m.loc[c, "amount"] / d, rel=1e-12)
        assert m.loc[c, "amount_mult_diameter"] == pytest.approx(m.loc[c, "amount"] * d, rel=1e-12)
        for k in ORDER_KEYS:
            assert m.loc[c, k] > 0, k
    assert m.loc[2, "median"] == 0.3 and m.loc[2, "amount"] == 2


@pytest.mark.parametrize("kind", ["random", "line", "same_centre"])
def test_max_pairwise_gap_is_exact(kind):
    rng = np.random.default_rng(3)
    m = 300
    if kind == "random":
        r, c = rng.integers(0, 2000, m), rng.integers(0, 1500, m)
    elif kind == "line":
        r, c = np.full(m, 40), rng.integers(0, 5000, m)
    else:
        r, c = np.full(m, 100), np.full(m, 100)
    h, w = rng.integers(0, 30, m), rng.integers(0, 30, m)
    b = np.column_stack([r - h, c - w, r + h, c + w])
    brute = box_gap(b[:, None, :], b[None, :, :]).max()
    assert max_pairwise_gap(b) == brute


# ------------------------------------------------------------------ bad input


def test_bad_input_raises():
    t = table([box_at(0, 0), box_at(0, 10)])
    cfg = MarketConfig()
    with pytest.raises(ValueError, match="scores"):
        market_clustering(t, np.array([0.5]), cfg)
    with pytest.raises(ValueError, match="NaN"):
        market_clustering(t, np.array([0.5, np.nan]), cfg)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        market_clustering(t, np.array([0.5, 1.5]), cfg)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        market_clustering(t, np.array([-0.1, 0.5]), cfg)
    with pytest.raises(ValueError, match="unique"):
        market_clustering(t.assign(region_id=[3, 3]), np.array([0.5, 0.5]), cfg)
    with pytest.raises(ValueError, match="lacks"):
        market_clustering(t.drop(columns="area_px"), np.array([0.5, 0.5]), cfg)
    with pytest.raises(ValueError, match="inverted"):
        market_clustering(t.assign(bbox_rmax=[-5, 3]), np.array([0.5, 0.5]), cfg)
    with pytest.raises(ValueError):
        MarketConfig(n_clusters=0)
    with pytest.raises(ValueError, match="order_key"):
        MarketConfig(order_key="nope")
    with pytest.raises(ValueError, match="price_from"):
        MarketConfig(price_from="nope")
    with pytest.raises(ValueError, match="affinity"):
        MarketConfig(affinity=1.0)


def test_docstring_examples():
    assert doctest.testmod(area, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


def test_min_score_keeps_weak_impurities_out_of_the_market():
    rng = np.random.default_rng(5)
    n = 200
    r = rng.integers(0, 900, n)
    c = rng.integers(0, 900, n)
    table = pd.DataFrame({"region_id": np.arange(1, n + 1), "area_px": rng.integers(4, 60, n),
                          "bbox_rmin": r, "bbox_cmin": c, "bbox_rmax": r + 3, "bbox_cmax": c + 3})
    s = rng.uniform(0, 1, n)
    labels, clusters = market_clustering(table, s, MarketConfig(min_score=0.6))
    assert (labels[s <= 0.6] == -1).all()
    assert (labels[s > 0.6] >= 0).any()
    full, _ = market_clustering(table, s, MarketConfig())
    assert (full >= 0).sum() > (labels >= 0).sum()
    with pytest.raises(ValueError, match="min_score"):
        MarketConfig(min_score=1.5)
