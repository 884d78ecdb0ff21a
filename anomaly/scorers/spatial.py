"""Spatial anomaly score: the weighted k-th nearest neighbour of MLography.

For impurities ``i`` and ``j`` with pixel areas ``A`` and inclusive bounding
boxes, ``D(i, j)`` is the box gap (:func:`anomaly._geometry.box_gap`) and

.. math::

    d_w(i, j) = (A_i / A_j)^4 \\max(D(i, j), 10^{-5}), \\qquad
    raw_i = A_i \\, \\big(k\\text{-th smallest } d_w(i, j),\\ j \\ne i\\big)^2 .

A large impurity far from impurities of its size gets a large ``raw``.  The
``"mlography"`` normalisation (:func:`normalize_mlography`) maps ``raw`` to
[0, 1] the way the paper does, so that only the clear outliers stay above 0.

The search is exact and sub-quadratic on realistic inputs.  Candidates are
bucketed by area (log-spaced, ratio 2^(1/4); buckets under 64 members merge
with the next smaller areas), each bucket with a KD-tree on box centres.  The
box gap is the distance from the centre offset to the Minkowski sum of the
two boxes, so a member ``j`` of a bucket with largest area ``A_b`` and largest
half extents ``(H_r, H_c)`` can have ``d_w(i, j) <= T`` only if its centre is
within ``T (A_b / A_i)^4 + hypot(h_r(i) + H_r, h_c(i) + H_c)`` of ``i``'s.  Per
query, ``T`` starts as an upper bound of the k-th smallest ``d_w`` (from the
k nearest centres, and from the k nearest of the 256 largest impurities);
buckets are visited from the largest areas down; in each, the members inside
that radius are counted (``query_ball_point(return_length=True)``), at least
that many nearest members are fetched, and ``T`` tightens to the k-th smallest
value seen.  Every candidate that can be among the k smallest is evaluated,
so the result equals a brute-force evaluation (up to floating-point rounding,
about 1e-15 relative: the search ranks ``(a_max / A_j)^8 max(D, 1e-5)^2``, a
monotone transform of ``d_w`` for a fixed ``i``).  Up to 1024 impurities
every pair is evaluated instead, which is faster there.

Parallelism is injected, never imported: :func:`weighted_kth_nn_scores` takes
``map_rows(score_rows, n_rows, *, chunk_size)``, a callable that applies the
picklable chunk function ``score_rows(rows) -> raw[rows]`` to all rows (in
process by default; ``experiments.pipeline.spatial_ray.ray_map_rows`` fans chunks out
to Ray tasks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .._geometry import as_areas, as_boxes, boxes_of

if TYPE_CHECKING:  # annotations only (the module imports them where it uses them)
    from scipy.spatial import cKDTree
    import pandas as pd

__all__ = [
    "NORMALIZATIONS",
    "SpatialConfig",
    "RowScorer",
    "MapRows",
    "weighted_kth_nn_scores",
    "normalize_mlography",
    "serial_map_rows",
    "spatial_score",
]

log = logging.getLogger(__name__)

NORMALIZATIONS = ("mlography", "none")
#: Floor of the box gap in ``d_w`` and replacement of ``raw == 0`` before the log (paper: 0.00001).
EPS = 1e-5
#: Area ratio between consecutive candidate buckets (lower bound slack is this to the 4th power).
_BUCKET_RATIO = 2.0 ** 0.25
#: Largest supported max/min area ratio (keeps (a_max / A) ** 8 finite).
_MAX_AREA_RATIO = 1e30
#: A bucket smaller than this absorbs the next smaller areas (few large impurities, one bucket).
_MIN_BUCKET = 64
#: How many of the largest impurities give the first upper bound of each query.
_TOP_SIZE = 256
#: Up to this many impurities every pair is evaluated (faster than the trees; measured).
_DENSE_MAX = 1024
#: Largest (rows x neighbours) block evaluated at once; bounds the memory of one query step.
_BLOCK_ELEMS = 1 << 21

#: ``map_rows(score_rows, n_rows, *, chunk_size) -> raw (n_rows,)``: see weighted_kth_nn_scores.
MapRows = Callable[..., np.ndarray]


@dataclass(frozen=True)
class SpatialConfig:
    """Options of the spatial score (registered as ``"spatial"``, column ``spatial_score``).

    k : int
        Which nearest neighbour (paper: 50).
    min_area_px : int
        Only impurities with ``area_px >= min_area_px`` take part, as queries
        and as neighbours; the others score 0 (paper: "> 3 px", i.e. 4).
    normalize : {'mlography', 'none'}
        ``'none'`` returns the raw values ``A_i * kth^2``.
    ray_min_regions : int
        A ``map_rows`` given to :func:`spatial_score` (e.g. the Ray one) is
        used only from this many participating impurities on.  Measured on 2
        cores with Ray already running (``bench_anomaly``): Ray breaks even at
        about 2k impurities on an idle machine (5k under load), wins 1.2-1.7x
        at 10k, 1.5-1.9x at 20k-30k and 1.7-1.8x at 100k.
    chunk_size : int
        Query rows per chunk (bounds memory; one Ray task per chunk).
    """

    k: int = 50
    min_area_px: int = 4
    normalize: str = "mlography"
    ray_min_regions: int = 10_000
    chunk_size: int = 4096

    def __post_init__(self) -> None:
        _check_k(self.k)
        if not _is_int(self.min_area_px) or self.min_area_px < 1:
            raise ValueError(f"min_area_px must be an integer >= 1, got {self.min_area_px!r}")
        _check_normalize(self.normalize)
        if not _is_int(self.ray_min_regions) or self.ray_min_regions < 0:
            raise ValueError(
                f"ray_min_regions must be an integer >= 0, got {self.ray_min_regions!r}"
            )
        _check_chunk(self.chunk_size)


def _check_k(k: int) -> None:
    if not _is_int(k) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")


def _check_normalize(normalize: str) -> None:
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_chunk(chunk_size: int) -> None:
    if not _is_int(chunk_size) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")


# --------------------------------------------------------------------------- index


@dataclass(frozen=True)
class _Bucket:
    members: np.ndarray  # (n_b,) row indices, ascending
    tree: cKDTree  # on the members' box centres
    scale4: float  # (largest area in the bucket / largest area overall) ** 4
    hr: float  # largest half extent along rows
    hc: float  # largest half extent along cols


@dataclass(frozen=True)
class _Index:
    centres: np.ndarray  # (N, 2) box centres (row, col)
    half: np.ndarray  # (N, 2) box half extents
    weight: np.ndarray  # (N,) (a_max / A_j) ** 8
    tree: cKDTree | None  # on all centres (initial upper bound)
    top: np.ndarray  # (min(N, _TOP_SIZE),) rows of the largest impurities
    top_tree: cKDTree | None  # on the centres of ``top``
    buckets: tuple[_Bucket, ...]  # largest areas first; empty: evaluate all pairs


def _build_index(boxes: np.ndarray, areas: np.ndarray, *, dense_max: int | None = None) -> _Index:
    """Area buckets (log-spaced, ratio ``_BUCKET_RATIO``) with a KD-tree on box centres each.

    Up to ``dense_max`` (default ``_DENSE_MAX``) impurities no trees are built:
    evaluating every pair is faster.
    """
    from scipy.spatial import cKDTree  # lazy
    centres = 0.5 * (boxes[:, :2] + boxes[:, 2:])
    half = 0.5 * (boxes[:, 2:] - boxes[:, :2])
    a_max = float(areas.max())
    weight = (a_max / areas) ** 8
    if areas.size <= (_DENSE_MAX if dense_max is None else dense_max):
        return _Index(centres, half, weight, None, np.zeros(0, np.intp), None, ())
    key = np.floor(np.log(a_max / areas) / np.log(_BUCKET_RATIO)).astype(np.int64)
    order = np.argsort(key, kind="stable")  # largest areas first
    starts = np.flatnonzero(np.r_[True, np.diff(key[order]) > 0])
    ends = np.r_[starts[1:], order.size]
    buckets = []
    lo = 0
    for end in ends:
        if end - lo < _MIN_BUCKET and end < order.size:
            continue  # too few: merge with the next (smaller) areas
        members = np.sort(order[lo:end])
        lo = end
        buckets.append(
            _Bucket(
                members=members,
                tree=cKDTree(centres[members]),
                scale4=float((areas[members].max() / a_max) ** 4),
                hr=float(half[members, 0].max()),
                hc=float(half[members, 1].max()),
            )
        )
    # The largest impurities: near ones give small d_w to everybody, hence a tight first bound.
    top = np.sort(np.argsort(-areas, kind="stable")[:_TOP_SIZE])
    top_tree = cKDTree(centres[top])
    return _Index(centres, half, weight, cKDTree(centres), top, top_tree, tuple(buckets))


# --------------------------------------------------------------------------- exact search
#
# Work in u = (a_max / A_j)^8 * max(D, eps)^2, a monotone transform of d_w for a fixed
# query: d_w = (A_i / a_max)^4 * sqrt(u), so the k-th smallest d_w comes from the k-th
# smallest u and raw_i = A_i * (A_i / a_max)^8 * u_k (no square roots, no powers per pair).


def _k_smallest(values: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` smallest values of each row of a (Q, M) array (unordered), shape (Q, min(k, M))."""
    if values.shape[1] <= k:
        return values
    return np.partition(values, k - 1, axis=1)[:, :k]


def _u_values(boxes: np.ndarray, weight: np.ndarray, q: np.ndarray, j: np.ndarray) -> np.ndarray:
    """``u(q, j)`` for query rows ``q`` (Q,) and neighbour rows ``j`` (Q, M); ``j == q`` -> inf."""
    bq = boxes[q][:, None, :]
    bj = boxes[j]
    dr = np.maximum(np.maximum(bj[..., 0] - bq[..., 2], bq[..., 0] - bj[..., 2]), 0.0)
    dc = np.maximum(np.maximum(bj[..., 1] - bq[..., 3], bq[..., 1] - bj[..., 3]), 0.0)
    u = np.maximum(dr * dr + dc * dc, EPS * EPS)
    u *= weight[j]
    u[j == q[:, None]] = np.inf
    return u


def _dense_raw(
    boxes: np.ndarray, areas: np.ndarray, rows: np.ndarray, k: int, weight: np.ndarray
) -> np.ndarray:
    """``_raw_scores_for_rows`` by evaluating ``u`` for every pair (blocks of rows)."""
    n = areas.size
    u_k = np.empty(rows.size)
    step = max(1, _BLOCK_ELEMS // n)
    bj = boxes.T[:, None, :]  # (4, 1, N): broadcast, no gather
    for s in range(0, rows.size, step):
        q = rows[s : s + step]
        bq = boxes[q].T[:, :, None]  # (4, Q, 1)
        dr = np.maximum(np.maximum(bj[0] - bq[2], bq[0] - bj[2]), 0.0)
        dc = np.maximum(np.maximum(bj[1] - bq[3], bq[1] - bj[3]), 0.0)
        u = np.maximum(dr * dr + dc * dc, EPS * EPS)
        u *= weight
        u[np.arange(q.size), q] = np.inf
        u_k[s : s + step] = np.partition(u, k - 1, axis=1)[:, k - 1]
    a_q = areas[rows]
    return a_q * (a_q / float(areas.max())) ** 8 * u_k


def _raw_scores_for_rows(
    boxes: np.ndarray, areas: np.ndarray, rows: np.ndarray, k: int, *, index: _Index | None = None
) -> np.ndarray:
    """Exact ``raw_i = A_i * (k-th smallest d_w(i, j), j != i)^2`` for ``rows`` against all rows.

    Pure function on validated arrays: ``boxes`` (N, 4) float, ``areas`` (N,)
    positive, ``rows`` (Q,) indices into them, ``1 <= k <= N - 1``.  ``index``
    (from :func:`_build_index` on the same arrays) may be passed to share it
    between calls.  Returns (Q,) float64.
    """
    rows = np.asarray(rows, dtype=np.intp)
    if rows.size == 0:
        return np.zeros(0)
    index = _build_index(boxes, areas) if index is None else index
    if not index.buckets:  # few impurities: every pair, in blocks
        return _dense_raw(boxes, areas, rows, k, index.weight)
    cen_q = index.centres[rows]
    # Upper bound of the k-th smallest u: the k nearest centres (any k candidates give one).
    _, nbr = index.tree.query(cen_q, k=k + 1)
    bound = _k_smallest(_u_values(boxes, index.weight, rows, nbr), k).max(axis=1)
    if index.top.size > k:  # and the k + 1 nearest of the largest impurities
        _, nbr = index.top_tree.query(cen_q, k=k + 1)
        top_bound = _k_smallest(_u_values(boxes, index.weight, rows, index.top[nbr]), k).max(axis=1)
        bound = np.minimum(bound, top_bound)
    best = np.full((rows.size, k), np.inf)  # k smallest u found in the buckets done so far
    for bucket in index.buckets:  # largest areas first: they tighten the bound fastest
        # u <= bound needs D <= sqrt(bound) * (A_bucket_max / a_max)^4, so a centre within
        # that plus the largest possible half extents (Minkowski sum of the two boxes).
        reach = np.hypot(index.half[rows, 0] + bucket.hr, index.half[rows, 1] + bucket.hc)
        radius = np.sqrt(bound) * bucket.scale4 + reach
        radius = np.minimum(radius * (1 + 1e-9) + 1e-9, 1e300)  # margin for rounding
        count = bucket.tree.query_ball_point(cen_q, radius, return_length=True)
        n_b = bucket.members.size
        m_class = np.minimum(n_b, 1 << np.ceil(np.log2(np.maximum(count, 1))).astype(np.int64))
        m_class[count == 0] = 0
        for m in np.unique(m_class[m_class > 0]):
            sel = np.flatnonzero(m_class == m)
            step = max(1, _BLOCK_ELEMS // int(m))
            for s in range(0, sel.size, step):
                pos = sel[s : s + step]
                _, local = bucket.tree.query(cen_q[pos], k=int(m))
                local = local.reshape(pos.size, int(m))
                u = _u_values(boxes, index.weight, rows[pos], bucket.members[local])
                best[pos] = _k_smallest(np.concatenate([best[pos], u], axis=1), k)
        bound = np.minimum(bound, best.max(axis=1))
    u_k = best.max(axis=1)
    a_q = areas[rows]
    return a_q * (a_q / float(areas.max())) ** 8 * u_k


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class RowScorer:
    """Picklable chunk function: ``scorer(rows) -> raw`` for query ``rows`` (Q,) against all rows.

    Built by :func:`weighted_kth_nn_scores` and handed to ``map_rows``; it
    holds the validated arrays and the search index, so a parallel map ships
    it once (e.g. ``ray.put``) and calls it on row chunks.
    """

    boxes: np.ndarray
    areas: np.ndarray
    k: int
    index: _Index

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return _raw_scores_for_rows(self.boxes, self.areas, rows, self.k, index=self.index)


def serial_map_rows(
    score_rows: Callable[[np.ndarray], np.ndarray], n_rows: int, *, chunk_size: int = 4096
) -> np.ndarray:
    """Default ``map_rows``: ``score_rows`` on ``range(n_rows)`` in chunks, in process."""
    _check_chunk(chunk_size)
    out = np.empty(n_rows)
    for start in range(0, n_rows, chunk_size):
        stop = min(n_rows, start + chunk_size)
        out[start:stop] = score_rows(np.arange(start, stop))
    return out


def normalize_mlography(raw: np.ndarray) -> np.ndarray:
    """The paper's normalisation of raw spatial values to [0, 1].

    ``v = log(raw)`` (``raw == 0`` replaced by 1e-5 first), min-max to [0, 1],
    ``v = max(v - 2 std(v), 1e-5)`` (population std), min-max again, divide by
    the max.  Where a min-max has nothing to spread (all values equal) it
    returns zeros instead of the prior art's 0/0 = NaN, so a constant input
    (including a single impurity) scores 0 everywhere.

    Parameters
    ----------
    raw : ndarray, shape (N,)
        Non-negative raw values.

    Returns
    -------
    ndarray, shape (N,)
        In [0, 1]; the largest value is 1 unless all are 0.
    """
    v = np.asarray(raw, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"raw must be 1-D, got shape {v.shape}")
    if v.size == 0:
        return np.zeros(0)
    if not np.all(np.isfinite(v)) or np.any(v < 0):
        raise ValueError("raw spatial values must be finite and non-negative")
    v = np.log(np.where(v == 0, EPS, v))
    v = _minmax(v)
    v = np.maximum(v - 2.0 * np.std(v), EPS)
    v = _minmax(v)
    top = v.max()
    return v / top if top > 0 else v


def _minmax(v: np.ndarray) -> np.ndarray:
    lo, hi = v.min(), v.max()
    return (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)


def weighted_kth_nn_scores(
    boxes: np.ndarray,
    areas: np.ndarray,
    *,
    k: int = 50,
    normalize: str = "mlography",
    map_rows: MapRows | None = None,
    chunk_size: int = 4096,
) -> np.ndarray:
    """Weighted k-th nearest neighbour spatial score of each impurity (exact).

    Every row given takes part, as query and as neighbour: filter small
    impurities before calling (the registered scorer applies
    ``SpatialConfig.min_area_px``).

    Parameters
    ----------
    boxes : ndarray, shape (N, 4)
        Inclusive bounding boxes (rmin, cmin, rmax, cmax).
    areas : ndarray, shape (N,)
        Positive areas (pixels); max / min at most 1e30.
    k : int
        Which neighbour.  When ``N <= k``, ``k = N - 1`` is used and a
        :class:`UserWarning` is issued.  With ``N == 1`` there is no neighbour:
        ``raw = 0``, which normalises to 0.
    normalize : {'mlography', 'none'}
        ``'none'`` returns ``raw_i = A_i * kth_i^2``; ``'mlography'`` applies
        :func:`normalize_mlography`.
    map_rows : callable, optional
        ``map_rows(score_rows, n_rows, *, chunk_size) -> ndarray (n_rows,)``
        must return ``score_rows(rows)`` for all rows ``0..n_rows-1``, in
        order; ``score_rows`` is a picklable :class:`RowScorer` (ship it once,
        call it on chunks of about ``chunk_size`` rows anywhere).  Default:
        :func:`serial_map_rows` (in process).
    chunk_size : int
        Query rows per chunk.

    Returns
    -------
    ndarray, shape (N,)

    Raises
    ------
    ValueError
        On malformed boxes or areas (shape, NaN/inf, inverted box,
        non-positive area), ``k < 1``, an unknown ``normalize``, or a
        ``map_rows`` result of the wrong shape.

    Examples
    --------
    >>> boxes = np.array([[0, 0, 1, 1], [0, 4, 1, 5], [9, 0, 10, 1]])
    >>> weighted_kth_nn_scores(boxes, np.array([4.0, 4.0, 4.0]), k=1, normalize="none")
    array([ 36.,  36., 256.])
    """
    b = as_boxes(boxes)
    a = as_areas(areas, b.shape[0])
    _check_k(k)
    _check_normalize(normalize)
    _check_chunk(chunk_size)
    n = b.shape[0]
    if n == 0:
        return np.zeros(0)
    if a.max() / a.min() > _MAX_AREA_RATIO:
        raise ValueError(
            f"areas span more than a factor {_MAX_AREA_RATIO:g} ({a.min():g} to {a.max():g})"
        )
    k_eff = min(int(k), n - 1)
    if k_eff < k:
        warnings.warn(
            f"only {n} impurities for k={k}: using k={k_eff} (N - 1)", UserWarning, stacklevel=2
        )
    if k_eff == 0:
        raw = np.zeros(n)
    else:
        scorer = RowScorer(b, a, k_eff, _build_index(b, a))
        raw = (map_rows or serial_map_rows)(scorer, n, chunk_size=chunk_size)
        raw = np.asarray(raw, dtype=np.float64)
        if raw.shape != (n,):
            raise ValueError(f"map_rows returned shape {raw.shape}, expected ({n},)")
    return raw if normalize == "none" else normalize_mlography(raw)


def spatial_score(table: pd.DataFrame, cfg: SpatialConfig, ctx=None) -> np.ndarray:
    """Scorer ``spatial`` (``anomaly.scorers``): rows with ``area_px < cfg.min_area_px`` score 0.

    The participating rows are scored by :func:`weighted_kth_nn_scores`.
    ``ctx.map_rows`` (an :class:`anomaly.scorers.ScoreContext`; e.g.
    ``experiments.pipeline.spatial_ray.ray_map_rows``) is used only when at least
    ``cfg.ray_min_regions`` rows take part; otherwise, and when it is None, the search runs in
    process.
    """
    map_rows = getattr(ctx, "map_rows", None)
    out = np.zeros(len(table))
    if len(table) == 0:
        return out
    areas = table["area_px"].to_numpy(dtype=np.float64)
    keep = areas >= cfg.min_area_px
    n = int(keep.sum())
    if n == 0:
        return out
    mapper = map_rows if map_rows is not None and n >= cfg.ray_min_regions else None
    if mapper is not None:
        log.info("spatial score: %d impurities, parallel map %r", n, mapper)
    out[keep] = weighted_kth_nn_scores(
        boxes_of(table)[keep],
        areas[keep],
        k=cfg.k,
        normalize=cfg.normalize,
        map_rows=mapper,
        chunk_size=cfg.chunk_size,
    )
    return out
