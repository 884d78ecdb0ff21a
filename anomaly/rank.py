"""Archive-wide ranking of area-anomaly clusters.

The clusters of every scan of a run (:func:`anomaly.area.market_clustering`,
concatenated, with a ``scan_id`` column) are ranked together on one ordering
key, so the expert reads the most anomalous places of the whole archive first.

Definitions (``n`` clusters, ``x`` the key value of a cluster):

- ``score`` = ``x``.
- ``norm_score`` = ``(x - min) / (max - min)`` over the archive; ``1.0`` for
  every cluster when all ``x`` are equal (nothing stands out, so nothing is
  pushed down; the reference divides by zero there).
- ``rank`` = 1 for the largest ``x``; ties go to the smaller ``scan_id``
  (string order), then the smaller ``cluster_id``: a total order, so the
  output does not depend on the input row order.
- ``percentile``: decile of the empirical distribution,
  ``"{10 b}%-{10 b + 10}%"`` with ``b = ceil(10 q / n) - 1`` and ``q`` the
  number of clusters with a key ``<= x``; ``"90%-100%"`` is the top decile, tied
  clusters share a bucket.  (The reference buckets ``norm_score`` with
  ``np.percentile`` thresholds of the same distribution; this integer form
  has no floating-point edge cases.)

The result is sorted by ``rank`` with a fresh ``RangeIndex``: the same input
(in any row order) gives an identical table, byte for byte once written.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .area import DEFAULT_ORDER_KEY

__all__ = ["RANK_COLUMNS", "PERCENTILE_LABELS", "rank_clusters"]

#: Columns added by :func:`rank_clusters` (existing columns of these names are replaced).
RANK_COLUMNS: tuple[str, ...] = ("score", "norm_score", "rank", "percentile")
#: Decile buckets, bottom first; the last one is the most anomalous tenth.
PERCENTILE_LABELS: tuple[str, ...] = tuple(f"{10 * b}%-{10 * b + 10}%" for b in range(10))


def rank_clusters(clusters: pd.DataFrame, *, key: str = DEFAULT_ORDER_KEY) -> pd.DataFrame:
    """Rank the clusters of a whole archive on ``key``.

    Parameters
    ----------
    clusters : DataFrame, shape (n, ...)
        Concatenated clusters tables with at least ``scan_id``, ``cluster_id``
        and the ``key`` column (numeric, finite); ``(scan_id, cluster_id)`` unique.
    key : str
        Column to rank on (one of :data:`anomaly.area.ORDER_KEYS` usually).

    Returns
    -------
    DataFrame, shape (n, ...)
        The input columns plus ``score`` (float64), ``norm_score`` (float64 in
        [0, 1]), ``rank`` (int64, 1 = most anomalous) and ``percentile`` (str),
        sorted by ``rank`` (see the module docstring for the definitions).

    Examples
    --------
    >>> c = pd.DataFrame({"scan_id": ["a", "a", "b"], "cluster_id": [0, 1, 0],
    ...                   "sum": [2.0, 1.0, 3.0]})
    >>> rank_clusters(c, key="sum")[["scan_id", "cluster_id", "rank", "norm_score"]].values.tolist()
    [['b', 0, 1, 1.0], ['a', 0, 2, 0.5], ['a', 1, 3, 0.0]]
    """
    if not isinstance(clusters, pd.DataFrame):
        raise ValueError(f"clusters must be a pandas DataFrame, got {type(clusters).__name__}")
    if key in RANK_COLUMNS:
        raise ValueError(f"key must be a measure column, not an output column {RANK_COLUMNS}")
    missing = [c for c in ("scan_id", "cluster_id", key) if c not in clusters.columns]
    if missing:
        raise ValueError(f"clusters lacks column(s) {missing} (needs scan_id, cluster_id, key)")
    out = clusters.drop(columns=[c for c in RANK_COLUMNS if c in clusters.columns])
    n = len(out)
    col = out[key]
    if not (pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)):
        raise ValueError(f"key column {key!r} must be numeric, got dtype {col.dtype}")
    x = col.to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"key column {key!r} has NaN or infinite values")
    if out["scan_id"].isna().any() or out["cluster_id"].isna().any():
        raise ValueError("scan_id and cluster_id must not be missing")
    if out.duplicated(["scan_id", "cluster_id"]).any():
        raise ValueError("(scan_id, cluster_id) pairs must be unique")
    scan = out["scan_id"].astype(str).to_numpy()
    cid = out["cluster_id"].to_numpy()

    # total order: larger key first, then scan_id, then cluster_id (all ties broken)
    scan_code = np.unique(scan, return_inverse=True)[1]
    order = np.lexsort((cid, scan_code, -x))
    out = out.iloc[order].reset_index(drop=True)
    x = x[order]
    if n:
        lo, hi = float(x.min()), float(x.max())
        norm = np.ones(n) if hi == lo else (x - lo) / (hi - lo)
        q = np.searchsorted(np.sort(x), x, side="right")  # clusters with key <= x
        bucket = np.clip((10 * q + n - 1) // n - 1, 0, 9)
    else:
        norm = np.zeros(0)
        bucket = np.zeros(0, np.int64)
    out["score"] = x
    out["norm_score"] = norm
    out["rank"] = np.arange(1, n + 1, dtype=np.int64)
    out["percentile"] = pd.Series(np.asarray(PERCENTILE_LABELS, dtype=object)[bucket], dtype=str)
    return out
