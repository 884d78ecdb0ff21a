"""Naive market clustering: the specification of :mod:`anomaly.area`, rescanned every move.

A faithful, deliberately slow re-implementation of the *intended* market (the
module docstring of :mod:`anomaly.area` is the specification): for every move
of every cluster it recomputes the price of every (outside impurity, member)
pair, ``O(n^2)`` work per move.  It is the baseline of ``bench_area`` and the
test oracle of the fast version (``tests/anomaly/test_area.py`` compares them
on small random inputs: same labels, wallets and move counts).

It shares only the price formulas (:func:`anomaly.market.purchase_prices`,
:func:`anomaly.market.merge_prices`, :func:`anomaly.market.initial_wallets`), so that
both versions compare bit-identical prices; the market itself is independent.
"""

from __future__ import annotations

import numpy as np

from anomaly._geometry import as_boxes, box_gap
from anomaly.market import MarketConfig, MarketResult, initial_wallets, merge_prices, purchase_prices

__all__ = ["naive_market_assign"]


def naive_market_assign(
    boxes: np.ndarray, scores: np.ndarray, region_ids: np.ndarray, cfg: MarketConfig | None = None
) -> MarketResult:
    """Same contract as :func:`anomaly.market.market_assign`, by brute force."""
    cfg = MarketConfig() if cfg is None else cfg
    b_all = as_boxes(boxes)
    s_all = np.asarray(scores, dtype=np.float64)
    rid = np.asarray(region_ids).astype(np.int64)
    n = b_all.shape[0]
    if s_all.shape != (n,) or rid.shape != (n,):
        raise ValueError("scores and region_ids must have one value per box")
    if not np.all(np.isfinite(s_all)) or np.any((s_all < 0) | (s_all > 1)):
        raise ValueError("scores must be finite and in [0, 1]")
    labels = np.full(n, -1, np.int64)
    part = [i for i in sorted(range(n), key=lambda i: rid[i]) if s_all[i] > 0]
    P = len(part)
    if P == 0:
        return MarketResult(labels, np.zeros(0), np.zeros(0, np.int64), 0, 0, 0)
    part = np.array(part, dtype=np.int64)
    b, s = b_all[part], s_all[part]
    # seeds: largest score, ties by region_id (participants are in region_id order)
    ranked = sorted(range(P), key=lambda i: (-s[i], i))
    seeds = np.array(ranked[: min(cfg.n_clusters, P)], dtype=np.int64)
    K = seeds.size
    is_seed = np.zeros(P, bool)
    is_seed[seeds] = True
    owner = np.full(P, -1, np.int64)
    owner[seeds] = np.arange(K)
    bought = np.full(P, -np.inf)  # wallet each impurity was last bought with
    W = [float(w) for w in initial_wallets(s[seeds], cfg)]
    alive = [True] * K
    counts = {"buy": 0, "rebuy": 0, "merge": 0}

    def cheapest(c: int):
        """(price, participant, is_merge) of the cheapest allowed affordable move of c, or None."""
        if cfg.price_from == "cores":
            mem = np.flatnonzero((owner == c) & is_seed)
        else:
            mem = np.flatnonzero(owner == c)
        out = np.flatnonzero(owner != c)
        if out.size == 0:
            return None
        gaps = box_gap(b[out][:, None, :], b[mem][None, :, :])
        so, sm = s[out][:, None], s[mem][None, :]
        price = np.where(is_seed[out][:, None], merge_prices(gaps, so, sm, cfg),
                         purchase_prices(gaps, so, sm, cfg)).min(axis=1)
        allowed = is_seed[out] | (owner[out] == -1) | (bought[out] < W[c])
        ok = allowed & (price <= W[c])
        if not ok.any():
            return None
        best = None
        for o, p in zip(out[ok].tolist(), price[ok].tolist()):  # smallest (price, region_id)
            if best is None or (p, o) < best[:2]:
                best = (p, o, bool(is_seed[o]))
        return best

    while True:
        order = sorted((c for c in range(K) if alive[c]), key=lambda c: (-W[c], c))
        acted = False
        for c in order:
            mv = cheapest(c)
            if mv is None:
                continue
            acted = True
            p, o, merge = mv
            if merge:
                other = int(owner[o])
                owner[owner == other] = c
                W[c] = W[c] + W[other]
                alive[other] = False
                counts["merge"] += 1
                break
            if owner[o] >= 0:
                counts["rebuy"] += 1
            counts["buy"] += 1
            bought[o] = W[c]
            W[c] -= p
            owner[o] = c
        if not acted:
            break
    labels[part] = owner
    wallets = np.array([w if a else np.nan for w, a in zip(W, alive)], dtype=np.float64)
    return MarketResult(labels, wallets, part[seeds],
                        counts["buy"], counts["rebuy"], counts["merge"])
