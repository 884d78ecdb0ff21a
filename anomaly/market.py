"""Area anomaly: market clustering of scored impurities (MLography's area measure).

Impurities with a combined anomaly score ``s > 0`` take part in a market.  The
``k`` highest-scoring ones (``MarketConfig.n_clusters``; ties broken by the
smaller ``region_id``) are the *seeds*: each starts a cluster with wallet

.. math:: W = \\exp(\\sqrt{100 s})^{2.8} .

The price for a cluster ``C`` to take an impurity ``o`` outside it is the
cheapest over its members ``m`` of

.. math:: P(o, m) = \\exp(\\sqrt{D(o, m)})^{1.7} \\, (1 - 0.95 \\sqrt{s_o s_m})^{1.6}

(``D`` the box gap, :func:`anomaly._geometry.box_gap`).  When ``o`` is a seed
of another cluster, ``P`` is further multiplied by
``(1 - (0.95 s_o)^0.05 (0.95 s_m)^0.05)^2.5 (2 - |s_o - s_m|)^8`` and taking it
*merges* the two clusters (wallets add, nothing is paid) instead of buying.
Clusters are then ranked with one of :data:`ORDER_KEYS`
(:func:`cluster_measures`; archive-wide ranking lives in :mod:`anomaly.rank`).
All constants are fields of :class:`MarketConfig` (paper values by default).
``exp(sqrt(x))^a`` is evaluated as ``exp(a sqrt(x))`` (same value, no
intermediate overflow).

The market, precisely (this is the specification; the fast implementation
and the naive oracle ``experiments/research/bench/naive_market.py`` follow it exactly)
-----------------------------------------------------------------------------
1. Participants are the rows with ``s > 0``, handled in ``region_id`` order.
   Seeds: the ``min(k, n_participants)`` largest ``(s, -region_id)``.  Seed
   number ``j`` (0 = best) founds cluster ``j``.
2. The market runs in *passes*.  A pass visits the live clusters by
   decreasing wallet (ties: smaller cluster number); each visited cluster
   makes at most one move, chosen with the state at that moment: the
   cheapest ``(price, region_id)`` among the outside participants that it can
   afford (``price <= wallet``) and is allowed to take:

   - an impurity nobody holds;
   - an impurity held by another cluster, if it is not a seed and the wallet
     it was last bought with is strictly smaller than the cluster's current
     wallet ("re-bought only by a richer wallet");
   - a seed of another cluster (a merge: the seed's whole cluster joins).

   A cluster's price for ``o`` is the minimum of ``P(o, m)`` (times the merge
   factor when ``o`` is a seed) over its members ``m`` (``price_from='members'``,
   the default) or over its seeds only (``price_from='cores'``).  With
   ``max_gap_px`` set, ``P(o, m)`` is infinite (never affordable) when
   ``D(o, m) > max_gap_px``.
   A purchase records the buyer's wallet *before* paying on the impurity,
   subtracts the price and moves the impurity (only it) to the buyer.
   A merge moves every member of the other cluster (bought members
   included, their purchase records unchanged) into the acting cluster,
   adds the two wallets and ends the pass.  The market stops after a pass
   in which no cluster moved.
3. Termination: between merges wallets only decrease and each purchase of an
   already held impurity needs a strictly richer wallet than its last one, so
   a cluster buys a given impurity at most once per merge epoch; there are at
   most ``k - 1`` merges, hence at most ``n k^2`` moves (checked at run time).

Deviations from the reference code (MLography ``area_anomaly`` /
``MarketClustering``; read as a reference only)
-------------------------------------------------------------------------
- Its price loop returns after the first member of the buying cluster (in
  effect its seed); here the price is the minimum over *all* members, as the
  paper describes.  Measured consequence: on the bundled scans (a few hundred
  scored impurities) the rich clusters chain from member to member through
  the whole scan and all seeds end up merged into one or two scan-wide
  clusters.  ``MarketConfig(price_from="cores")`` prices from the seeds only
  (the reference's effective behaviour, made deterministic) and gives compact
  clusters; the default stays the paper's ``"members"``.
- ``max_gap_px`` (default ``None``, the paper) caps the box gap a cluster can
  bridge in one move; ``min_score`` restricts the participants.  Both are
  additions of ours (``conf/anomaly/default.yaml`` sets them; the
  ``mlography`` preset does not).
- Its main loop stops as soon as the last (poorest) cluster of a pass is idle,
  even when richer clusters moved in that pass; here the market stops only
  after a pass in which no cluster moved.
- It crashes with fewer than ``k`` scored impurities; here every participant
  becomes a seed then (and with none, there is no cluster).
- It merges with the cheapest seed without checking the wallet; here a merge
  must be affordable like a purchase.
- It records the buyer's wallet on a merged seed and applies the re-buy rule
  to seeds; here seeds are never bought, so merges are never blocked by it.
- It breaks seed and price ties by row order (``np.sort`` of scores, Python
  ``set`` iteration); here ties go to the smaller ``region_id``, so the result
  does not depend on row order (tested).
- A cluster's ``diameter`` is never 0 (issue #15): it is the larger of the
  paper's largest box gap between two members and the largest member's own
  size, the diagonal of its pixel box ``hypot(rmax - rmin + 1, cmax - cmin + 1)``
  (:func:`cluster_measures`).  The paper's diameter is 0 for a single impurity
  and for touching members, which made every ``*_mult_diameter`` key 0 (in
  the demo run of issue 15, 9 of 16 clusters tied at score 0 and a singleton
  with combined score 1.0 ranked 10th) and every ``*_div_diameter`` key
  undefined (the reference writes ``-1``).  Clusters whose members lie farther apart than their largest
  member is wide keep the paper's value exactly.  This applies to every
  preset, ``mlography`` included.

Interpretations
---------------
- "richer wallet" compares the candidate buyer's current wallet (before
  paying) with the wallet the impurity was last bought with (also before
  paying), strictly.
- Members bought by a cluster move with it when it is merged.
- "Clusters act richest first": one move per cluster per pass, visiting
  order by wallet at the start of the pass; a merge restarts the pass.
- Final clusters are numbered ``0..`` by decreasing ``MarketConfig.order_key``
  (ties: smallest core ``region_id`` first), so cluster 0 is the most
  anomalous of the scan.

Speed
-----
The naive market rescans all (member, outside) pairs for every move.  Here
each participant has a static list of its neighbours sorted by price (the
price of a pair never changes): only pairs with ``D`` below the largest
affordable gap for the richest possible wallet (the sum of all seed
wallets ``W*``: ``P >= exp(1.7 sqrt(D)) 0.05^1.6`` gives
``sqrt(D) <= (ln W* - 1.6 ln 0.05) / 1.7``) are kept, found with a KD-tree on
box centres (with ``price_from='cores'`` only the pairs with a seed).  A
cluster keeps a heap holding, per member, a pointer to the
first still-valid entry of that member's list (lazy k-way merge), plus one
entry per impurity that it lost; the seed (merge) candidates are kept as a
``(k,)`` running minimum per cluster.  Entries made stale by other moves are
skipped when they reach the top; a merge rebuilds the acting cluster's heap.
The moves are the same as the naive ones (tested against the oracle).
Measured (``+exp=bench_area``, one core of a shared 2-core machine): 5000
scored synthetic impurities at the density of the bundled scans, clustered
and measured in 0.45-0.9 s (``'members'``) and 0.013-0.03 s (``'cores'``); the
naive market needs 11-13 s for 1000 of them, this one 0.06-0.13 s.
"""

from __future__ import annotations

import heapq
import logging
import math
from dataclasses import dataclass
from typing import NamedTuple, TYPE_CHECKING

import numpy as np

from ._geometry import as_areas, as_boxes, box_gap, boxes_of

if TYPE_CHECKING:  # annotations only (the module imports them where it uses them)
    import pandas as pd

__all__ = [
    "ORDER_KEYS",
    "DEFAULT_ORDER_KEY",
    "PRICE_FROM",
    "CLUSTER_COLUMNS",
    "MarketConfig",
    "MarketResult",
    "initial_wallets",
    "purchase_prices",
    "merge_prices",
    "market_assign",
    "max_pairwise_gap",
    "cluster_measures",
    "market_clustering",
]

log = logging.getLogger(__name__)

#: The ordering keys of the paper, in its order (all computed by :func:`cluster_measures`).
ORDER_KEYS: tuple[str, ...] = (
    "median",
    "mean",
    "sum",
    "amount",
    "areas_sum",
    "diameter",
    "amount_div_diameter",
    "amount_mult_diameter",
    "sum_div_diameter",
    "area_sum_div_diameter",
    "area_sum_mult_diameter",
    "weighted_area_sum_mult_diameter",
    "weighted_area_sum_mult_diameter_mult_amount",
    "weighted_area2_sum_mult_diameter",
    "weighted_area2_sum_mult_diameter_mult_amount",
)
DEFAULT_ORDER_KEY = "weighted_area2_sum_mult_diameter_mult_amount"
#: Columns of the clusters table returned by :func:`market_clustering`, in order.
CLUSTER_COLUMNS: tuple[str, ...] = (
    "cluster_id",
    "n_regions",
    "bbox_rmin",
    "bbox_cmin",
    "bbox_rmax",
    "bbox_cmax",
    "core_region_ids",
) + ORDER_KEYS
#: Which members set a cluster's prices (:attr:`MarketConfig.price_from`).
PRICE_FROM: tuple[str, ...] = ("members", "cores")
_BLOCK_ELEMS = 1 << 20


@dataclass(frozen=True)
class MarketConfig:
    """Options of the market clustering (defaults: the paper).

    n_clusters : int
        Number of seeds ``k`` (clusters before merges).
    order_key : str
        One of :data:`ORDER_KEYS`; numbers the final clusters (0 = largest).
    wallet_power : float
        ``W = exp(sqrt(100 s))^wallet_power``.
    distance_power, score_power, affinity : float
        ``P = exp(sqrt(D))^distance_power (1 - affinity sqrt(s_o s_m))^score_power``;
        ``0 < affinity < 1``.
    merge_power, merge_discount_power, merge_penalty_power : float
        Merge factor ``(1 - (affinity s_o)^merge_power (affinity s_m)^merge_power)
        ^merge_discount_power (2 - |s_o - s_m|)^merge_penalty_power``.
    price_from : {'members', 'cores'}
        ``'members'`` (the paper): a cluster's price for ``o`` is the cheapest over all its
        members.  ``'cores'``: only over its seeds, which is what the reference code
        effectively computes (its price loop stops at the first member, the seed); it keeps
        clusters compact around their seeds instead of chaining through the scan.
    min_score : float
        Only impurities with ``s > min_score`` take part in the market (0 = every scored
        impurity, the paper).  A threshold keeps the market to clearly anomalous impurities,
        so clusters stay local (measured by ``+exp=eval_area``; an addition of ours).
    max_gap_px : float or None
        A cluster may take an impurity (or merge with a seed) only through a member whose box
        gap to it is at most this many pixels: prices of wider pairs are infinite.  ``None``
        (the paper) = no limit; rich wallets then afford gaps of a few hundred pixels and,
        on real scans with scattered anomalous impurities, chain them into scan-wide
        clusters.  An addition of ours.
    """

    n_clusters: int = 10
    order_key: str = DEFAULT_ORDER_KEY
    wallet_power: float = 2.8
    distance_power: float = 1.7
    score_power: float = 1.6
    affinity: float = 0.95
    merge_power: float = 0.05
    merge_discount_power: float = 2.5
    merge_penalty_power: float = 8.0
    price_from: str = "members"
    min_score: float = 0.0
    max_gap_px: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.min_score, (int, float)) and 0.0 <= self.min_score < 1.0):
            raise ValueError(f"min_score must be in [0, 1), got {self.min_score!r}")
        g = self.max_gap_px
        if g is not None and not (isinstance(g, (int, float, np.number)) and not isinstance(g, bool)
                                  and math.isfinite(g) and g >= 0):
            raise ValueError(f"max_gap_px must be None or a finite number >= 0, got {g!r}")
        k = self.n_clusters
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"n_clusters must be an integer >= 1, got {k!r}")
        if self.order_key not in ORDER_KEYS:
            raise ValueError(f"order_key must be one of {ORDER_KEYS}, got {self.order_key!r}")
        if self.price_from not in PRICE_FROM:
            raise ValueError(f"price_from must be one of {PRICE_FROM}, got {self.price_from!r}")
        if not 0.0 < self.affinity < 1.0:
            raise ValueError(f"affinity must be in (0, 1), got {self.affinity!r}")
        for name in ("wallet_power", "distance_power", "score_power", "merge_power",
                     "merge_discount_power", "merge_penalty_power"):
            v = getattr(self, name)
            number = isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
            if not (number and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")


class MarketResult(NamedTuple):
    """Outcome of :func:`market_assign`.

    labels : ndarray, shape (N,), int64
        Seed number (0 = best seed) of the final cluster holding each row, -1 for none.
        A merged cluster keeps the number of the cluster that made the merge.
    wallets : ndarray, shape (k,), float64
        Final wallet of each seed's cluster; NaN for clusters merged away.
    seed_rows : ndarray, shape (k,), int64
        Row of each seed, best first.
    n_purchases, n_rebuys, n_merges : int
        Moves made (a re-buy is a purchase from another cluster).
    """

    labels: np.ndarray
    wallets: np.ndarray
    seed_rows: np.ndarray
    n_purchases: int
    n_rebuys: int
    n_merges: int


# --------------------------------------------------------------------------- prices


def _flat(*arrays: np.ndarray) -> tuple[tuple[int, ...], list[np.ndarray]]:
    # Broadcast, then evaluate on contiguous 1-D copies: every caller (fast and naive)
    # runs the same kernels on the same values, so prices agree bit for bit.
    b = np.broadcast_arrays(*[np.asarray(a, dtype=np.float64) for a in arrays])
    return b[0].shape, [np.ascontiguousarray(x).ravel() for x in b]


def initial_wallets(scores: np.ndarray, cfg: MarketConfig) -> np.ndarray:
    """Wallet ``exp(sqrt(100 s))^wallet_power`` of a cluster seeded by score ``s`` (any shape)."""
    shape, (s,) = _flat(scores)
    return np.exp(cfg.wallet_power * np.sqrt(100.0 * s)).reshape(shape)


def purchase_prices(
    gaps: np.ndarray, s_out: np.ndarray, s_in: np.ndarray, cfg: MarketConfig
) -> np.ndarray:
    """Price of buying ``o`` (score ``s_out``) through member ``m`` (``s_in``) at box gap ``gaps``.

    ``exp(sqrt(D))^distance_power (1 - affinity sqrt(s_o s_m))^score_power``, infinite
    where ``D > cfg.max_gap_px``; broadcasts.  Symmetric in ``(s_out, s_in)`` bit for bit.
    """
    shape, (d, so, sm) = _flat(gaps, s_out, s_in)
    dist = np.exp(cfg.distance_power * np.sqrt(d))
    aff = (1.0 - cfg.affinity * np.sqrt(so * sm)) ** cfg.score_power
    price = dist * aff
    if cfg.max_gap_px is not None:
        price[d > cfg.max_gap_px] = np.inf
    return price.reshape(shape)


def merge_prices(
    gaps: np.ndarray, s_out: np.ndarray, s_in: np.ndarray, cfg: MarketConfig
) -> np.ndarray:
    """Price of merging with the cluster of seed ``o`` through member ``m``; broadcasts.

    :func:`purchase_prices` times
    ``(1 - (a s_o)^merge_power (a s_m)^merge_power)^merge_discount_power``
    ``(2 - |s_o - s_m|)^merge_penalty_power`` with ``a = affinity``.
    """
    shape, (d, so, sm) = _flat(gaps, s_out, s_in)
    base = purchase_prices(d, so, sm, cfg)
    f = cfg.affinity
    mp = cfg.merge_power
    disc = (1.0 - (f * so) ** mp * (f * sm) ** mp) ** cfg.merge_discount_power
    pen = (2.0 - np.abs(so - sm)) ** cfg.merge_penalty_power
    return (base * disc * pen).reshape(shape)


def _max_affordable_gap(wallet: float, cfg: MarketConfig) -> float:
    """Largest box gap a purchase costing at most ``wallet`` can span (conservative)."""
    floor = cfg.score_power * math.log1p(-cfg.affinity)  # ln of the smallest score factor
    root = (math.log(wallet) - floor) / cfg.distance_power if wallet > 0 else -1.0
    if root < 0:
        return -1.0
    gap = root * root if cfg.max_gap_px is None else min(root * root, float(cfg.max_gap_px))
    return gap * (1.0 + 1e-9) + 1e-6


# --------------------------------------------------------------------------- validation


def _validate(boxes, scores, region_ids, areas=None):
    b = as_boxes(boxes)
    n = b.shape[0]
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.shape[0] != n:
        raise ValueError(f"scores must have shape ({n},) (one per region), got {s.shape}")
    if not np.all(np.isfinite(s)):
        i = int(np.flatnonzero(~np.isfinite(s))[0])
        raise ValueError(f"scores contain NaN or infinite values (row {i})")
    if np.any((s < 0) | (s > 1)):
        i = int(np.flatnonzero((s < 0) | (s > 1))[0])
        raise ValueError(f"scores must be in [0, 1]; row {i} is {s[i]!r}")
    rid = np.asarray(region_ids)
    if rid.ndim != 1 or rid.shape[0] != n:
        raise ValueError(f"region_ids must have shape ({n},), got {rid.shape}")
    if not np.issubdtype(rid.dtype, np.integer):
        if not np.issubdtype(rid.dtype, np.floating) or not np.all(np.isfinite(rid)) \
                or np.any(rid != np.round(rid)):
            raise ValueError("region_ids must be integers")
    rid = rid.astype(np.int64)
    if np.unique(rid).size != n:
        raise ValueError("region_ids must be unique (they break ties deterministically)")
    a = None if areas is None else as_areas(areas, n)
    return b, s, rid, a


# --------------------------------------------------------------------------- neighbour lists


def _candidate_pairs(b: np.ndarray, r: float) -> tuple[np.ndarray, np.ndarray]:
    """Unordered pairs ``i < j`` whose box gap may be <= r (a superset); KD-tree on centres."""
    from scipy.spatial import cKDTree  # lazy
    n = b.shape[0]
    if n < 2 or r < 0:
        e = np.zeros(0, np.int64)
        return e, e
    ctr = np.column_stack([(b[:, 0] + b[:, 2]) * 0.5, (b[:, 1] + b[:, 3]) * 0.5])
    hd = 0.5 * np.hypot(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    # gap >= |c_i - c_j| - hd_i - hd_j.  Small boxes share a KD-tree radius; the few large ones
    # (half-diagonal above the 90th percentile) are checked against everything in blocks.
    h0 = float(np.quantile(hd, 0.9))
    small = np.flatnonzero(hd <= h0)
    big = np.flatnonzero(hd > h0)
    out_i, out_j = [], []
    if small.size > 1:
        tree = cKDTree(ctr[small])
        pr = tree.query_pairs(r + 2.0 * h0 + 1e-9, output_type="ndarray")
        if pr.size:
            out_i.append(small[pr[:, 0]])
            out_j.append(small[pr[:, 1]])
    if big.size:
        is_big = np.zeros(n, bool)
        is_big[big] = True
        step = max(1, _BLOCK_ELEMS // n)
        allj = np.arange(n)
        for lo in range(0, big.size, step):
            bi = big[lo:lo + step]
            lim = (r + hd[bi][:, None] + hd[None, :]) + 1e-9
            dc = np.hypot(ctr[bi, 0][:, None] - ctr[None, :, 0],
                          ctr[bi, 1][:, None] - ctr[None, :, 1])
            keep = (dc <= lim) & ((~is_big[None, :]) | (allj[None, :] > bi[:, None]))
            ii, jj = np.nonzero(keep)
            out_i.append(bi[ii])
            out_j.append(allj[jj])
    if not out_i:
        e = np.zeros(0, np.int64)
        return e, e
    i = np.concatenate(out_i).astype(np.int64)
    j = np.concatenate(out_j).astype(np.int64)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    return lo, hi


class _Rows:
    """CSR lists: for participant m, its neighbours sorted by (purchase price, index).

    With ``seeds`` given (``price_from='cores'``) only pairs with a seed are kept: no
    other pair can ever set a price.
    """

    def __init__(self, b: np.ndarray, s: np.ndarray, w_cap: float, cfg: MarketConfig,
                 seeds: np.ndarray | None = None):
        n = b.shape[0]
        r = _max_affordable_gap(w_cap, cfg)
        if seeds is None:
            i, j = _candidate_pairs(b, r)
        else:  # seed x everyone, each unordered pair once
            is_seed = np.zeros(n, bool)
            is_seed[seeds] = True
            ii, jj = np.nonzero((~is_seed[None, :]) | (np.arange(n)[None, :] > seeds[:, None]))
            i, j = seeds[ii], jj.astype(np.int64)
            i, j = np.minimum(i, j), np.maximum(i, j)
        d = box_gap(b[i], b[j])
        keep = d <= r
        i, j, d = i[keep], j[keep], d[keep]
        p = purchase_prices(d, s[i], s[j], cfg)  # symmetric: serves (i as member, j) and (j, i)
        keep = p <= w_cap
        i, j, p = i[keep], j[keep], p[keep]
        rows = np.concatenate([i, j])
        cols = np.concatenate([j, i])
        price = np.concatenate([p, p])
        order = np.lexsort((cols, price, rows))
        self.nbr = cols[order]
        self.price = price[order]
        self.indptr = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=self.indptr[1:])
        self.n_pairs = int(i.size)


# --------------------------------------------------------------------------- the market


class _Market:
    """State of the fast market (participants indexed 0..P-1 in region_id order)."""

    def __init__(self, b, s, seeds, cfg):
        self.cfg = cfg
        self.P = P = s.shape[0]
        self.K = K = seeds.shape[0]
        self.seeds = seeds
        self.cores_only = cfg.price_from == "cores"
        self.is_seed = np.zeros(P, bool)
        self.is_seed[seeds] = True
        self.W = [float(w) for w in initial_wallets(s[seeds], cfg)]
        self.alive = [True] * K
        self.rows = _Rows(b, s, float(np.sum(self.W)) * (1.0 + 1e-9), cfg,
                          seeds if self.cores_only else None)
        self.owner = np.full(P, -1, np.int64)
        self.owner[seeds] = np.arange(K)
        # purchase record; +inf on seeds encodes "never a purchase candidate".
        self.bought = np.full(P, -np.inf)
        self.bought[seeds] = np.inf
        # (K seeds as candidate) x (P members) merge prices, no distance cut (K is small).
        gaps = box_gap(b[seeds][:, None, :], b[None, :, :])
        self.pm = merge_prices(gaps, s[seeds][:, None], s[None, :], cfg)
        self.seed_part = seeds.astype(np.int64)
        self.merge_min = [self.pm[:, seeds[c]].copy() for c in range(K)]
        self.merge_cache: list[tuple[float, int, int] | None] = [None] * K
        self.heaps: list[list] = [[] for _ in range(K)]
        for c in range(K):
            self._push_member(c, int(seeds[c]))
        self.n_purchases = self.n_rebuys = self.n_merges = 0

    # -- lists
    def _first_valid(self, c: int, lo: int, hi: int) -> int:
        """First index in [lo, hi) of a member list whose entry c may buy now, or -1."""
        rows, W, owner, bought = self.rows, self.W[c], self.owner, self.bought
        hi = lo + int(np.searchsorted(rows.price[lo:hi], W, side="right"))
        step = 16
        while lo < hi:
            e = min(hi, lo + step)
            seg = rows.nbr[lo:e]
            ok = (owner[seg] != c) & (bought[seg] < W)
            k = int(ok.argmax())
            if ok[k]:
                return lo + k
            lo = e
            step *= 4
        return -1

    def _pricers(self, c: int) -> np.ndarray:
        """Members of c whose pairs set its prices (all members, or its seeds), ascending."""
        if self.cores_only:
            return np.flatnonzero((self.owner == c) & self.is_seed)
        return np.flatnonzero(self.owner == c)

    def _push_member(self, c: int, m: int) -> None:
        q = self._first_valid(c, int(self.rows.indptr[m]), int(self.rows.indptr[m + 1]))
        if q >= 0:
            heapq.heappush(self.heaps[c], (float(self.rows.price[q]), int(self.rows.nbr[q]), m, q))

    def _lost_entry(self, c: int, x: int):
        """Heap entry for impurity x (outside c): its cheapest pair with a member of c, or None."""
        rows = self.rows
        lo, hi = int(rows.indptr[x]), int(rows.indptr[x + 1])
        hi = lo + int(np.searchsorted(rows.price[lo:hi], self.W[c], side="right"))
        if hi <= lo:
            return None
        seg = rows.nbr[lo:hi]
        ok = self.owner[seg] == c
        if self.cores_only:
            ok &= self.is_seed[seg]
        k = int(ok.argmax())
        if not ok[k]:
            return None
        return (float(rows.price[lo + k]), x, int(rows.nbr[lo + k]), -1)

    def _rebuild(self, c: int) -> None:
        rows, W = self.rows, self.W[c]
        mem = self._pricers(c)
        starts, ends = rows.indptr[mem], rows.indptr[mem + 1]
        lens = ends - starts
        heap: list = []
        if lens.sum() > 0:
            nz = lens > 0
            mem, starts, lens = mem[nz], starts[nz], lens[nz]
            offs = np.zeros(mem.size, np.int64)
            np.cumsum(lens[:-1], out=offs[1:])
            total = int(lens.sum())
            idx = np.repeat(starts - offs, lens) + np.arange(total)
            seg = rows.nbr[idx]
            ok = (rows.price[idx] <= W) & (self.owner[seg] != c) & (self.bought[seg] < W)
            pos = np.where(ok, np.arange(total), total)
            first = np.minimum.reduceat(pos, offs)
            has = first < total
            q = idx[first[has]]
            heap = list(zip(rows.price[q].tolist(), rows.nbr[q].tolist(),
                            mem[has].tolist(), q.tolist()))
            heapq.heapify(heap)
        self.heaps[c] = heap

    # -- candidates
    def _best_purchase(self, c: int):
        H, W, owner, bought = self.heaps[c], self.W[c], self.owner, self.bought
        rows = self.rows
        while H:
            p, o, m, q = H[0]
            if p > W:
                return None
            if q >= 0:
                if owner[m] != c:
                    heapq.heappop(H)
                    continue
                if owner[o] == c or bought[o] >= W:
                    q2 = self._first_valid(c, q + 1, int(rows.indptr[m + 1]))
                    if q2 < 0:
                        heapq.heappop(H)
                    else:
                        heapq.heapreplace(H, (float(rows.price[q2]), int(rows.nbr[q2]), m, q2))
                    continue
            else:
                if owner[o] == c or bought[o] >= W:
                    heapq.heappop(H)
                    continue
                if owner[m] != c:
                    e = self._lost_entry(c, o)
                    if e is None:
                        heapq.heappop(H)
                    else:
                        heapq.heapreplace(H, e)
                    continue
            return p, o
        return None

    def _best_merge(self, c: int):
        cached = self.merge_cache[c]
        if cached is None:
            mm = np.where(self.owner[self.seeds] == c, np.inf, self.merge_min[c])
            v = float(mm.min())
            if not np.isfinite(v):
                cached = (np.inf, -1)
            else:
                cand = np.flatnonzero(mm == v)
                cached = (v, int(self.seed_part[cand].min()))
            self.merge_cache[c] = cached
        return cached if cached[1] >= 0 and cached[0] <= self.W[c] else None

    # -- moves
    def _buy(self, c: int, o: int, p: float) -> None:
        prev = int(self.owner[o])
        self.bought[o] = self.W[c]
        self.W[c] -= p
        self.owner[o] = c
        self.n_purchases += 1
        if not self.cores_only:  # a bought impurity never sets prices in 'cores' mode
            self._push_member(c, o)
            np.minimum(self.merge_min[c], self.pm[:, o], out=self.merge_min[c])
            self.merge_cache[c] = None
        if prev >= 0:
            self.n_rebuys += 1
            if not self.cores_only and np.any(self.pm[:, o] <= self.merge_min[prev]):
                # o attained a minimum of prev's merge prices: recompute them
                self.merge_min[prev] = self.pm[:, self._pricers(prev)].min(axis=1)
                self.merge_cache[prev] = None
            if self.bought[o] < self.W[prev]:
                e = self._lost_entry(prev, o)
                if e is not None:
                    heapq.heappush(self.heaps[prev], e)

    def _merge(self, c: int, o: int) -> None:
        b = int(self.owner[o])
        self.owner[self.owner == b] = c
        self.W[c] = self.W[c] + self.W[b]
        self.alive[b] = False
        self.heaps[b] = []
        self.n_merges += 1
        self.merge_min[c] = self.pm[:, self._pricers(c)].min(axis=1)
        self.merge_cache = [None] * self.K
        self._rebuild(c)

    def run(self) -> None:
        limit = self.P * self.K * self.K + self.K + 10
        moves = 0
        while True:
            live = [c for c in range(self.K) if self.alive[c]]
            order = sorted(live, key=lambda c: (-self.W[c], c))
            acted = False
            for c in order:
                buy = self._best_purchase(c)
                mer = self._best_merge(c)
                if buy is None and mer is None:
                    continue
                acted = True
                moves += 1
                if moves > limit:  # pragma: no cover - guards the termination argument
                    raise RuntimeError("market clustering did not terminate (internal error)")
                if mer is not None and (buy is None or mer < buy):
                    self._merge(c, mer[1])
                    break
                self._buy(c, buy[1], buy[0])
            if not acted:
                return


def _seeds(s: np.ndarray, k: int) -> np.ndarray:
    """Indices (into region_id-ordered participants) of the min(k, P) best seeds, best first."""
    order = np.lexsort((np.arange(s.size), -s))  # participants are in region_id order
    return order[: min(k, s.size)].astype(np.int64)


def market_assign(
    boxes: np.ndarray, scores: np.ndarray, region_ids: np.ndarray, cfg: MarketConfig | None = None
) -> MarketResult:
    """Run the market (see the module docstring) on boxes and scores.

    Parameters
    ----------
    boxes : ndarray, shape (N, 4)
        Inclusive (rmin, cmin, rmax, cmax) boxes.
    scores : ndarray, shape (N,)
        Anomaly scores in [0, 1]; rows with 0 do not take part.
    region_ids : ndarray, shape (N,)
        Unique integer ids (tie-breaks).
    cfg : MarketConfig, optional

    Returns
    -------
    MarketResult
        Labels are seed numbers (not the final cluster ids of :func:`market_clustering`).
    """
    cfg = MarketConfig() if cfg is None else cfg
    b, s, rid, _ = _validate(boxes, scores, region_ids)
    n = b.shape[0]
    part = np.flatnonzero(s > 0)
    part = part[np.argsort(rid[part], kind="stable")]
    labels = np.full(n, -1, np.int64)
    if part.size == 0:
        return MarketResult(labels, np.zeros(0), np.zeros(0, np.int64), 0, 0, 0)
    sp = s[part]
    seeds = _seeds(sp, int(cfg.n_clusters))
    mk = _Market(b[part], sp, seeds, cfg)
    mk.run()
    labels[part] = mk.owner
    wallets = np.array([w if a else np.nan for w, a in zip(mk.W, mk.alive)], dtype=np.float64)
    log.debug(
        "market: %d participants, %d seeds, %d pairs, %d purchases (%d re-buys), %d merges",
        part.size, seeds.size, mk.rows.n_pairs, mk.n_purchases, mk.n_rebuys, mk.n_merges,
    )
    return MarketResult(labels, wallets, part[seeds], mk.n_purchases, mk.n_rebuys, mk.n_merges)


# --------------------------------------------------------------------------- measures


def max_pairwise_gap(boxes: np.ndarray) -> float:
    """Largest box gap between any two of the (M, 4) boxes (0 for M < 2), exact.

    Pruned: ``D(i, j) <= |c_i - c_j|`` (centres), so a box whose farthest centre
    (a convex-hull vertex) is closer than a known gap cannot be in the maximising
    pair; the remaining boxes are compared all against all in blocks.
    """
    from scipy.spatial import ConvexHull  # lazy
    b = as_boxes(boxes)
    m = b.shape[0]
    if m < 2:
        return 0.0
    ctr = np.column_stack([(b[:, 0] + b[:, 2]) * 0.5, (b[:, 1] + b[:, 3]) * 0.5])
    keep = np.arange(m)
    if m > 64:
        try:
            hull = ctr[ConvexHull(ctr).vertices]
        except Exception:  # degenerate (collinear / repeated centres): bounding-box corners
            lo, hi = ctr.min(axis=0), ctr.max(axis=0)
            hull = np.array([[lo[0], lo[1]], [lo[0], hi[1]], [hi[0], lo[1]], [hi[0], hi[1]]])
        ub = np.zeros(m)
        for h in hull:  # few hull vertices; vectorised over the boxes
            np.maximum(ub, np.hypot(ctr[:, 0] - h[0], ctr[:, 1] - h[1]), out=ub)
        # lower bound: gaps from the boxes extreme in 8 directions to all boxes
        proj = [ctr[:, 0], ctr[:, 1], ctr[:, 0] + ctr[:, 1], ctr[:, 0] - ctr[:, 1]]
        ext = np.unique(np.concatenate([[int(p.argmin()), int(p.argmax())] for p in proj]))
        lb = float(box_gap(b[ext][:, None, :], b[None, :, :]).max())
        keep = np.flatnonzero(ub >= lb)
    bk = b[keep]
    best = 0.0
    step = max(1, _BLOCK_ELEMS // max(1, bk.shape[0]))
    for lo in range(0, bk.shape[0], step):
        best = max(best, float(box_gap(bk[lo:lo + step][:, None, :], bk[None, :, :]).max()))
    return best


def cluster_measures(
    boxes: np.ndarray,
    areas: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    region_ids: np.ndarray | None = None,
) -> pd.DataFrame:
    """Per-cluster measures and the 15 ordering keys (:data:`ORDER_KEYS`).

    Parameters
    ----------
    boxes : ndarray, shape (N, 4)
    areas : ndarray, shape (N,)
        Pixel areas ``A``.
    scores : ndarray, shape (N,)
        Member scores ``s``.
    labels : ndarray, shape (N,)
        Cluster of each row, ``0..L-1`` (every label present), -1 for none.
    region_ids : ndarray, shape (N,), optional
        Sums are taken in ``region_id`` order (row order when omitted), so the
        values do not depend on row order.

    Returns
    -------
    DataFrame
        One row per label ``0..L-1``: ``n_regions``, ``bbox_rmin, bbox_cmin,
        bbox_rmax, bbox_cmax`` (union of the member boxes, inclusive) and the keys:
        ``median, mean, sum`` of ``s``; ``amount`` = member count; ``areas_sum`` =
        sum of ``A``; ``diameter`` = ``max(G, E)`` with ``G`` the largest box gap
        between two members (:func:`max_pairwise_gap`, the paper's diameter: 0 for one
        member or touching members) and ``E`` the largest member box diagonal
        ``hypot(rmax - rmin + 1, cmax - cmin + 1)`` (>= sqrt(2)), so it is always
        positive (a deviation from the paper, module docstring); ``x_div_diameter`` =
        x / diameter; ``x_mult_diameter`` = x * diameter; ``weighted_area_sum`` = sum
        of ``s A``; ``weighted_area2_sum`` = sum of ``s A^2``.  With positive scores
        (every member of a market cluster has ``s > 0``) every key is strictly positive.

    Examples
    --------
    A single 3 x 4 px impurity: its diameter is its box diagonal, 5 px.

    >>> m = cluster_measures(np.array([[0, 0, 2, 3]]), np.array([10.0]), np.array([0.5]),
    ...                      np.array([0]))
    >>> float(m.loc[0, "diameter"]), float(m.loc[0, "weighted_area2_sum_mult_diameter"])
    (5.0, 250.0)
    """
    import pandas as pd  # lazy
    b = as_boxes(boxes)
    n = b.shape[0]
    a = as_areas(areas, n)
    s = np.asarray(scores, dtype=np.float64)
    lab = np.asarray(labels)
    if s.shape != (n,) or lab.shape != (n,):
        raise ValueError(f"scores and labels must have shape ({n},), got {s.shape} and {lab.shape}")
    if not np.issubdtype(lab.dtype, np.integer):
        raise ValueError("labels must be integers")
    lab = lab.astype(np.int64)
    rid = np.arange(n) if region_ids is None else np.asarray(region_ids)
    if rid.shape != (n,):
        raise ValueError(f"region_ids must have shape ({n},), got {rid.shape}")
    sel = np.flatnonzero(lab >= 0)
    L = int(lab[sel].max()) + 1 if sel.size else 0
    cols: dict[str, np.ndarray] = {}
    if L == 0:
        out = pd.DataFrame({c: pd.Series(dtype=np.int64) for c in
                            ("n_regions", "bbox_rmin", "bbox_cmin", "bbox_rmax", "bbox_cmax")})
        for k in ORDER_KEYS:
            out[k] = pd.Series(dtype=np.float64)
        return out
    order = sel[np.lexsort((rid[sel], lab[sel]))]
    lo_ = lab[order]
    cnt = np.bincount(lo_, minlength=L)
    if np.any(cnt == 0):
        raise ValueError("labels must use every value 0..L-1")
    starts = np.zeros(L, np.int64)
    np.cumsum(cnt[:-1], out=starts[1:])
    so, ao, bo = s[order], a[order], b[order]
    ssum = np.add.reduceat(so, starts)
    asum = np.add.reduceat(ao, starts)
    wsum = np.add.reduceat(so * ao, starts)
    w2sum = np.add.reduceat(so * ao * ao, starts)
    # median: scores sorted within each cluster
    ms = so[np.lexsort((so, lo_))]
    med = 0.5 * (ms[starts + (cnt - 1) // 2] + ms[starts + cnt // 2])
    gap = np.array([max_pairwise_gap(bo[st:st + c]) for st, c in zip(starts, cnt)],
                   dtype=np.float64)
    own = np.maximum.reduceat(np.hypot(bo[:, 2] - bo[:, 0] + 1.0, bo[:, 3] - bo[:, 1] + 1.0), starts)
    diam = np.maximum(gap, own)
    amount = cnt.astype(np.float64)

    def div(x):
        return x / diam

    cols["n_regions"] = cnt.astype(np.int64)
    cols["bbox_rmin"] = np.minimum.reduceat(bo[:, 0], starts).astype(np.int64)
    cols["bbox_cmin"] = np.minimum.reduceat(bo[:, 1], starts).astype(np.int64)
    cols["bbox_rmax"] = np.maximum.reduceat(bo[:, 2], starts).astype(np.int64)
    cols["bbox_cmax"] = np.maximum.reduceat(bo[:, 3], starts).astype(np.int64)
    cols["median"] = med
    cols["mean"] = ssum / amount
    cols["sum"] = ssum
    cols["amount"] = amount
    cols["areas_sum"] = asum
    cols["diameter"] = diam
    cols["amount_div_diameter"] = div(amount)
    cols["amount_mult_diameter"] = amount * diam
    cols["sum_div_diameter"] = div(ssum)
    cols["area_sum_div_diameter"] = div(asum)
    cols["area_sum_mult_diameter"] = asum * diam
    cols["weighted_area_sum_mult_diameter"] = wsum * diam
    cols["weighted_area_sum_mult_diameter_mult_amount"] = wsum * diam * amount
    cols["weighted_area2_sum_mult_diameter"] = w2sum * diam
    cols["weighted_area2_sum_mult_diameter_mult_amount"] = w2sum * diam * amount
    return pd.DataFrame(cols)


def market_clustering(
    table: pd.DataFrame, scores: np.ndarray, cfg: MarketConfig | None = None
) -> tuple[np.ndarray, pd.DataFrame]:
    """Cluster the scored impurities of one scan with the market (module docstring).

    Parameters
    ----------
    table : DataFrame
        RegionTable: ``region_id`` (unique), ``bbox_rmin, bbox_cmin, bbox_rmax,
        bbox_cmax`` (inclusive), ``area_px`` (positive).
    scores : ndarray, shape (N,)
        Combined anomaly score per row, in [0, 1].
    cfg : MarketConfig, optional

    Returns
    -------
    labels : ndarray, shape (N,), int64
        Final cluster id of each row, -1 for none.
    clusters : DataFrame
        One row per cluster (columns :data:`CLUSTER_COLUMNS`): ``cluster_id`` 0..
        by decreasing ``cfg.order_key`` (ties: smallest core region_id first),
        ``n_regions``, the union box, ``core_region_ids`` (``"12;40"``: the seeds
        merged into it, ascending) and the 15 keys of :func:`cluster_measures`.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"region_id": [1, 2, 3], "area_px": [16, 16, 16],
    ...                   "bbox_rmin": [0, 0, 900], "bbox_cmin": [0, 6, 900],
    ...                   "bbox_rmax": [3, 3, 903], "bbox_cmax": [3, 9, 903]})
    >>> s = np.array([0.9, 0.2, 0.0])
    >>> labels, clusters = market_clustering(t, s, MarketConfig(n_clusters=1))
    >>> labels.tolist(), clusters["n_regions"].tolist()
    ([0, 0, -1], [2])
    """
    import pandas as pd  # lazy
    cfg = MarketConfig() if cfg is None else cfg
    if not isinstance(table, pd.DataFrame):
        raise ValueError(
            f"table must be a pandas DataFrame (RegionTable), got {type(table).__name__}")
    need = ["region_id", "bbox_rmin", "bbox_cmin", "bbox_rmax", "bbox_cmax", "area_px"]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}")
    s_in = np.asarray(scores)
    if s_in.ndim != 1 or s_in.shape[0] != len(table):
        raise ValueError(
            f"scores must have one value per table row ({len(table)}), got shape {s_in.shape}")
    b, s, rid, a = _validate(boxes_of(table), s_in, table["region_id"].to_numpy(),
                             table["area_px"].to_numpy())
    s_market = np.where(s > cfg.min_score, s, 0.0) if cfg.min_score > 0 else s
    res = market_assign(b, s_market, rid, cfg)
    raw = res.labels
    n = raw.shape[0]
    surv = np.unique(raw[raw >= 0])  # surviving seed numbers
    tmp = np.full(n, -1, np.int64)
    tmp[raw >= 0] = np.searchsorted(surv, raw[raw >= 0])
    meas = cluster_measures(b, a, s, tmp, region_ids=rid)
    L = surv.size
    # cores of each surviving cluster: the seeds whose final cluster it is
    seed_rows = res.seed_rows
    core_lists: list[list[int]] = [[] for _ in range(L)]
    for r_ in seed_rows.tolist():
        core_lists[int(tmp[r_])].append(int(rid[r_]))
    first_core = np.array([min(c) for c in core_lists] if L else [], dtype=np.int64)
    key = meas[cfg.order_key].to_numpy() if L else np.zeros(0)
    order = np.lexsort((first_core, -key))
    final = np.empty(L, np.int64)
    final[order] = np.arange(L)
    labels = np.full(n, -1, np.int64)
    labels[tmp >= 0] = final[tmp[tmp >= 0]]
    clusters = meas.iloc[order].reset_index(drop=True)
    clusters.insert(0, "cluster_id", np.arange(L, dtype=np.int64))
    cores = [";".join(str(x) for x in sorted(core_lists[i])) for i in order]
    clusters.insert(6, "core_region_ids", pd.Series(cores, dtype=str))
    clusters = clusters[list(CLUSTER_COLUMNS)]
    log.info(
        "market clustering: %d of %d impurities in the market (score > %g) -> %d clusters "
        "(%d purchases, %d re-buys, %d merges)",
        int(np.count_nonzero(s_market > 0)), n, cfg.min_score, L, res.n_purchases, res.n_rebuys,
        res.n_merges,
    )
    return labels, clusters
