"""Archive-wide ranking of area-anomaly clusters.

The clusters of every scan of a run (:func:`anomaly.market.market_clustering`,
concatenated, with a ``scan_id`` column) are ranked together on one ordering
key, so the expert reads the most anomalous places of the whole archive first.

Definitions (``n`` clusters, ``x`` the key value of a cluster):

- ``score`` = ``x``.  Every ordering key of :func:`anomaly.market.cluster_measures`
  is strictly positive (a cluster's diameter is never 0), so clusters tie only
  when their measures are equal.
- ``norm_score`` = ``x / max(x)`` over the run: in ``(0, 1]`` for positive keys,
  ``1.0`` for the run's top cluster, ``0.25`` for a cluster scoring a quarter of
  it (a ratio a reader can say aloud; the reference's min-max put the bottom
  cluster at 0 and divided by zero when all keys were equal).  NaN when the
  largest key is not positive (a user key; the market's keys never are).
- ``top_percent`` = ``100 m / n`` with ``m`` the number of clusters whose key is
  ``>= x``: the cluster is in the top ``top_percent`` % of the run (the top
  cluster of 200 is in the top 0.5 %, the last one in the top 100 %; tied
  clusters share the value of the whole tie group).  Meaningful for any ``n``:
  with 3 clusters it is 33.3, 66.7, 100.
- ``percentile`` = the same as text, ``"top 0.5%"``, with ``top_percent``
  rounded *up* to two significant digits (``"top 6.3%"``, ``"top 34%"``), so the
  text never claims a better place than the cluster has.  (The reference's
  decile buckets, ``"50%-60%"``, told 16 clusters apart by tenths.)
- ``rank`` = 1 for the largest ``x``; ties go to the smaller ``scan_id``
  (string order), then the smaller ``cluster_id``: a total order, so the
  output does not depend on the input row order.

The result is sorted by ``rank`` with a fresh ``RangeIndex``: the same input
(in any row order) gives an identical table, byte for byte once written.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .market import DEFAULT_ORDER_KEY

__all__ = ["RANK_COLUMNS", "percentile_label", "rank_clusters"]

#: Columns added by :func:`rank_clusters` (existing columns of these names are replaced).
RANK_COLUMNS: tuple[str, ...] = ("score", "norm_score", "rank", "percentile", "top_percent")


def percentile_label(top_percent: float) -> str:
    """``"top P%"`` with ``P`` rounded up to two significant digits (never a better place).

    >>> [percentile_label(p) for p in (100.0, 100 / 3, 6.25, 0.5, 0.0123)]
    ['top 100%', 'top 34%', 'top 6.3%', 'top 0.5%', 'top 0.013%']
    """
    p = float(top_percent)
    if not (math.isfinite(p) and 0.0 < p <= 100.0):
        raise ValueError(f"top_percent must be in (0, 100], got {top_percent!r}")
    step = 10.0 ** (math.floor(math.log10(p)) - 1)  # two significant digits
    up = math.ceil(round(p / step, 9)) * step  # round(): 6.25 / 0.1 is 62.50000000000001
    decimals = max(0, -int(math.floor(math.log10(step))))
    text = f"{min(up, 100.0):.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"top {text}%"


def rank_clusters(clusters: pd.DataFrame, *, key: str = DEFAULT_ORDER_KEY) -> pd.DataFrame:
    """Rank the clusters of a whole archive on ``key``.

    Parameters
    ----------
    clusters : DataFrame, shape (n, ...)
        Concatenated clusters tables with at least ``scan_id``, ``cluster_id``
        and the ``key`` column (numeric, finite); ``(scan_id, cluster_id)`` unique.
    key : str
        Column to rank on (one of :data:`anomaly.market.ORDER_KEYS` usually).

    Returns
    -------
    DataFrame, shape (n, ...)
        The input columns plus ``score`` (float64), ``norm_score`` (float64, in
        (0, 1] for positive keys), ``rank`` (int64, 1 = most anomalous),
        ``percentile`` (str, ``"top 6.3%"``) and ``top_percent`` (float64 in (0, 100]),
        sorted by ``rank`` (see the module docstring for the definitions).

    Examples
    --------
    >>> c = pd.DataFrame({"scan_id": ["a", "a", "b"], "cluster_id": [0, 1, 0],
    ...                   "sum": [2.0, 1.0, 3.0]})
    >>> rank_clusters(c, key="sum")[["scan_id", "cluster_id", "rank", "norm_score"]].values.tolist()
    [['b', 0, 1, 1.0], ['a', 0, 2, 0.6666666666666666], ['a', 1, 3, 0.3333333333333333]]
    >>> rank_clusters(c, key="sum")["percentile"].tolist()
    ['top 34%', 'top 67%', 'top 100%']
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
        hi = float(x.max())
        norm = x / hi if hi > 0 else np.full(n, np.nan)
        m = n - np.searchsorted(np.sort(x), x, side="left")  # clusters with key >= x
        top = 100.0 * m / n
    else:
        norm = np.zeros(0)
        top = np.zeros(0)
    out["score"] = x
    out["norm_score"] = norm
    out["rank"] = np.arange(1, n + 1, dtype=np.int64)
    out["percentile"] = pd.Series([percentile_label(p) for p in top], dtype=str)
    out["top_percent"] = top.astype(np.float64)
    return out
