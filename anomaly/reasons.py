"""Why a cluster is ranked: per-cluster features and one plain sentence per cluster.

Two steps, matching where the data lives in a run:

1. :func:`cluster_features` (per scan, on the worker, right after market
   clustering): from the scan's RegionTable (with its ``*_score`` columns and
   ``cluster_id``) one row per cluster of member statistics, sizes and shapes
   (:data:`FEATURE_COLUMNS`), appended as columns to ``clusters.parquet``.  They
   are also the inputs of the re-ranker (:mod:`anomaly.rerank`).
2. :func:`cluster_reasons` (run-wide, after archive ranking): one sentence per
   cluster from those columns, comparing each cluster with the whole run, e.g.
   ``"3 irregular impurities within 40 µm (largest 18 µm across); spatial score in
   the top 1% of this run's clusters"``.

Definitions of the feature columns (``px`` = pixels, ``um`` = micrometres; the
``*_um`` / ``*_um2`` twins are NaN when the pixel size is unknown; a member
statistic is NaN when the RegionTable lacks the column, e.g. ``shape_score``
without the autoencoder):

- ``member_{spatial,circle,shape,combined}_{mean,max,min}``: mean / max / min
  of the members' ``<name>_score``;
- ``member_area_mean_px``, ``member_area_max_px`` (and ``_um2``): member areas;
- ``member_feret_max_px`` (and ``_um``): the largest member's Feret diameter
  (largest caliper width);
- ``member_elongation_mean``, ``member_elongation_max``: ``feret_max / feret_min``
  of the members (1 = as wide as long);
- ``member_solidity_mean``, ``member_solidity_min``: member solidity (area over
  convex-hull area; low = concave, ragged);
- ``extent_px`` (and ``_um``): diagonal of the cluster's box
  ``hypot(rmax - rmin + 1, cmax - cmin + 1)``: the members lie within it;
- ``box_fill``: total member area over the cluster's box area (dense = high);
- ``edge_distance_px`` (and ``_um``): pixels between the cluster's box and the
  nearest scan border (0 = touches it); NaN when the scan shape is not given.

The sentence (:func:`cluster_reasons`) is deterministic plain text (no markup;
the report escapes it).  Shape words, from the member means: ``elongated`` when
the elongation is >= 3, else ``irregular`` when the circle score is >= 0.4 or
the solidity < 0.8, ``round`` when the circle score is < 0.15, none otherwise.
The driving score is the scorer (spatial, circle, shape, in this order on ties)
whose member maximum stands highest among the run's clusters; its place is
``"top P%"`` as in :func:`anomaly.rank.percentile_label` (P = share of the run's
clusters with a member maximum at least as high), left out when P is 100.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .rank import percentile_label

__all__ = ["FEATURE_COLUMNS", "SCORE_NAMES", "cluster_features", "with_cluster_features", "cluster_reasons"]

#: Scorers whose member statistics are features, in the order used to break ties in reasons.
SCORE_NAMES: tuple[str, ...] = ("spatial", "circle", "shape", "combined")
#: Columns returned by :func:`cluster_features` (besides ``cluster_id``), in order.
FEATURE_COLUMNS: tuple[str, ...] = (
    *(f"member_{n}_{stat}" for n in SCORE_NAMES for stat in ("mean", "max", "min")),
    "member_area_mean_px",
    "member_area_max_px",
    "member_area_mean_um2",
    "member_area_max_um2",
    "member_feret_max_px",
    "member_feret_max_um",
    "member_elongation_mean",
    "member_elongation_max",
    "member_solidity_mean",
    "member_solidity_min",
    "extent_px",
    "extent_um",
    "box_fill",
    "edge_distance_px",
    "edge_distance_um",
)
_BOX = ("bbox_rmin", "bbox_cmin", "bbox_rmax", "bbox_cmax")
#: Thresholds of the shape words (module docstring).
ELONGATED = 3.0
IRREGULAR_CIRCLE = 0.4
IRREGULAR_SOLIDITY = 0.8
ROUND_CIRCLE = 0.15
#: A cluster this close to the border (px) "touches the scan edge".
EDGE_PX = 2.0


def _check_positive(name: str, v: float | None) -> float | None:
    if v is None:
        return None
    x = float(v)
    if not (math.isfinite(x) and x > 0):
        if isinstance(v, float) and math.isnan(v):
            return None  # NaN from a scans table = uncalibrated
        raise ValueError(f"{name} must be a positive finite number or None, got {v!r}")
    return x


def cluster_features(
    regions: pd.DataFrame,
    clusters: pd.DataFrame,
    *,
    pixel_size_um: float | None,
    shape: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """Member statistics, sizes and shapes of each cluster of one scan.

    Parameters
    ----------
    regions : DataFrame
        The scan's RegionTable with ``region_id``, ``area_px``, ``feret_max_px``,
        ``feret_min_px``, ``solidity``, the ``*_score`` columns it has and
        ``cluster_id`` (-1 = in no cluster), as returned with the market's labels.
    clusters : DataFrame
        The scan's clusters (:func:`anomaly.market.market_clustering`): ``cluster_id``
        and the box columns.
    pixel_size_um : float or None
        Pixel size; ``None`` (or NaN) = uncalibrated, the ``*_um`` columns are NaN.
    shape : (rows, cols), optional
        Scan shape, for ``edge_distance_px`` (NaN without it).

    Returns
    -------
    DataFrame
        One row per row of ``clusters``, same order and index: ``cluster_id`` and
        :data:`FEATURE_COLUMNS` (float64; definitions in the module docstring).

    Examples
    --------
    >>> regions = pd.DataFrame({"region_id": [1, 2, 3], "area_px": [10, 30, 5],
    ...     "feret_max_px": [4.0, 12.0, 3.0], "feret_min_px": [3.0, 3.0, 2.0],
    ...     "solidity": [0.9, 0.7, 1.0], "spatial_score": [0.6, 0.9, 0.1],
    ...     "cluster_id": [0, 0, -1]})
    >>> clusters = pd.DataFrame({"cluster_id": [0], "bbox_rmin": [10], "bbox_cmin": [10],
    ...     "bbox_rmax": [29], "bbox_cmax": [24]})
    >>> f = cluster_features(regions, clusters, pixel_size_um=0.5, shape=(100, 100))
    >>> f.loc[0, ["member_spatial_max", "extent_px", "extent_um", "edge_distance_px"]].tolist()
    [0.9, 25.0, 12.5, 10.0]
    """
    if not isinstance(regions, pd.DataFrame) or not isinstance(clusters, pd.DataFrame):
        raise ValueError("regions and clusters must be pandas DataFrames")
    need_r = ["region_id", "area_px", "feret_max_px", "feret_min_px", "solidity", "cluster_id"]
    missing = [c for c in need_r if c not in regions.columns]
    if missing:
        raise ValueError(f"regions lacks column(s) {missing} (a RegionTable with cluster_id)")
    missing = [c for c in ("cluster_id", *_BOX) if c not in clusters.columns]
    if missing:
        raise ValueError(f"clusters lacks column(s) {missing}")
    ps = _check_positive("pixel_size_um", pixel_size_um)
    if shape is not None:
        if len(shape) != 2 or min(int(shape[0]), int(shape[1])) < 1:
            raise ValueError(f"shape must be (rows, cols) with both >= 1, got {shape!r}")
        shape = (int(shape[0]), int(shape[1]))
    cid = clusters["cluster_id"].to_numpy()
    if pd.Series(cid).duplicated().any():
        raise ValueError("clusters has duplicate cluster_id values")
    n = len(clusters)
    lab = regions["cluster_id"].to_numpy()
    pos = pd.Index(cid).get_indexer(lab)  # row of each region's cluster, -1 = none
    inside = lab >= 0
    if np.any(inside & (pos < 0)):
        bad = sorted(set(lab[inside & (pos < 0)].tolist()))[:5]
        raise ValueError(f"regions refer to cluster_id(s) {bad} that are not in clusters")
    idx = pos[inside]
    counts = np.bincount(idx, minlength=n)
    if n and np.any(counts == 0):
        bad = cid[counts == 0][:5].tolist()
        raise ValueError(f"cluster_id(s) {bad} have no member in regions")
    mem = regions.loc[inside]

    def stat(values: np.ndarray, how: str) -> np.ndarray:
        v = np.asarray(values, dtype=np.float64)
        if how == "mean":
            return np.bincount(idx, weights=v, minlength=n) / np.maximum(counts, 1)
        out = np.full(n, -np.inf if how == "max" else np.inf)
        (np.maximum if how == "max" else np.minimum).at(out, idx, v)
        return out

    cols: dict[str, np.ndarray] = {"cluster_id": cid}
    nan = np.full(n, np.nan)
    for name in SCORE_NAMES:
        col = f"{name}_score"
        for how in ("mean", "max", "min"):
            cols[f"member_{name}_{how}"] = (
                stat(mem[col].to_numpy(), how) if col in mem else nan.copy()
            )
    area = mem["area_px"].to_numpy(dtype=np.float64)
    cols["member_area_mean_px"] = stat(area, "mean")
    cols["member_area_max_px"] = stat(area, "max")
    um2 = (ps * ps) if ps else np.nan
    cols["member_area_mean_um2"] = cols["member_area_mean_px"] * um2
    cols["member_area_max_um2"] = cols["member_area_max_px"] * um2
    fmax = mem["feret_max_px"].to_numpy(dtype=np.float64)
    fmin = np.maximum(mem["feret_min_px"].to_numpy(dtype=np.float64), 1.0)
    cols["member_feret_max_px"] = stat(fmax, "max")
    cols["member_feret_max_um"] = cols["member_feret_max_px"] * (ps or np.nan)
    elong = np.maximum(fmax, 1.0) / fmin
    cols["member_elongation_mean"] = stat(elong, "mean")
    cols["member_elongation_max"] = stat(elong, "max")
    sol = mem["solidity"].to_numpy(dtype=np.float64)
    cols["member_solidity_mean"] = stat(sol, "mean")
    cols["member_solidity_min"] = stat(sol, "min")
    b = clusters[list(_BOX)].to_numpy(dtype=np.float64)
    h, w = b[:, 2] - b[:, 0] + 1.0, b[:, 3] - b[:, 1] + 1.0
    cols["extent_px"] = np.hypot(h, w)
    cols["extent_um"] = cols["extent_px"] * (ps or np.nan)
    cols["box_fill"] = stat(area, "mean") * counts / (h * w)
    if shape is None:
        edge = nan.copy()
    else:
        edge = np.maximum(
            0.0,
            np.min(
                np.column_stack([b[:, 0], b[:, 1], shape[0] - 1 - b[:, 2], shape[1] - 1 - b[:, 3]]),
                axis=1,
            )
            if n
            else np.zeros(0),
        )
    cols["edge_distance_px"] = edge
    cols["edge_distance_um"] = edge * (ps or np.nan)
    out = pd.DataFrame(cols, index=clusters.index)
    for c in FEATURE_COLUMNS:
        out[c] = out[c].astype(np.float64)
    return out


# --------------------------------------------------------------------------- sentences


def with_cluster_features(
    regions: pd.DataFrame,
    clusters: pd.DataFrame,
    *,
    pixel_size_um: float | None,
    shape: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """``clusters`` (the market's table) with the :func:`cluster_features` columns appended."""
    feats = cluster_features(regions, clusters, pixel_size_um=pixel_size_um, shape=shape)
    return pd.concat([clusters.reset_index(drop=True),
                      feats.drop(columns=["cluster_id"]).reset_index(drop=True)], axis=1)


def _noun(phase: str, n: int) -> str:
    """What the members are: impurities, or the phase(s) of a phase run (``pore``, ``oxide+pore``)."""
    if not phase:
        return "impurity" if n == 1 else "impurities"
    names = phase.split("+")
    if len(names) > 1:
        return ("particle" if n == 1 else "particles") + f" ({', '.join(names)})"
    return phase if n == 1 or phase.endswith("s") else phase + "s"


def _length(v: float) -> str:
    """A length with two significant digits (no false precision): 3.2, 41, 1200."""
    if not math.isfinite(v):
        return "?"
    if v >= 10:
        digits = int(math.floor(math.log10(v))) - 1
        return str(int(round(v / 10**digits) * 10**digits))
    return f"{v:.1f}".rstrip("0").rstrip(".")


def _top_percent(values: pd.Series) -> pd.Series:
    """Per row: 100 * share of finite rows with a value >= it (NaN for NaN rows)."""
    v = values.to_numpy(dtype=np.float64)
    ok = np.isfinite(v)
    out = np.full(v.shape, np.nan)
    if ok.any():
        srt = np.sort(v[ok])
        out[ok] = 100.0 * (srt.size - np.searchsorted(srt, v[ok], side="left")) / srt.size
    return pd.Series(out, index=values.index)


def _shape_word(circle: float, elong: float, solidity: float) -> str:
    if math.isfinite(elong) and elong >= ELONGATED:
        return "elongated"
    if (math.isfinite(circle) and circle >= IRREGULAR_CIRCLE) or (
        math.isfinite(solidity) and solidity < IRREGULAR_SOLIDITY
    ):
        return "irregular"
    if math.isfinite(circle) and circle < ROUND_CIRCLE:
        return "round"
    return ""


def cluster_reasons(clusters: pd.DataFrame) -> pd.Series:
    """One plain sentence per cluster: what it is and which score put it there.

    Parameters
    ----------
    clusters : DataFrame
        The whole run's clusters (all scans, after :func:`anomaly.rank.rank_clusters`)
        with ``n_regions`` and the :data:`FEATURE_COLUMNS` of :func:`cluster_features`
        (missing feature columns are treated as unknown: the sentence says less).

    Returns
    -------
    Series of str, named ``reason``, same index as ``clusters``.

    Examples
    --------
    >>> c = pd.DataFrame({"n_regions": [3, 1], "extent_um": [40.0, 12.0],
    ...     "member_feret_max_um": [18.0, 11.0], "member_circle_mean": [0.55, 0.05],
    ...     "member_spatial_max": [0.9, 0.4], "member_circle_max": [0.7, 0.1]})
    >>> cluster_reasons(c).tolist()[0]
    "3 irregular impurities within 40 µm (largest 18 µm across); spatial score in the top 50% of this run's clusters"
    >>> cluster_reasons(c).tolist()[1]
    '1 round impurity, 11 µm across'
    """
    if not isinstance(clusters, pd.DataFrame):
        raise ValueError(f"clusters must be a pandas DataFrame, got {type(clusters).__name__}")
    if "n_regions" not in clusters.columns:
        raise ValueError("clusters lacks column 'n_regions'")

    def col(name: str) -> pd.Series:
        if name in clusters.columns:
            return pd.to_numeric(clusters[name], errors="coerce").astype(np.float64)
        return pd.Series(np.nan, index=clusters.index)

    calibrated = col("extent_um").notna() | col("member_feret_max_um").notna()
    extent = col("extent_um").where(calibrated, col("extent_px"))
    feret = col("member_feret_max_um").where(calibrated, col("member_feret_max_px"))
    circle, elong, sol = (
        col("member_circle_mean"),
        col("member_elongation_mean"),
        col("member_solidity_mean"),
    )
    edge = col("edge_distance_px")
    phase = clusters["phase"].fillna("").astype(str) if "phase" in clusters.columns else None
    places = {n: _top_percent(col(f"member_{n}_max")) for n in SCORE_NAMES[:3]}
    out = []
    for i, idx in enumerate(clusters.index):
        n = int(clusters["n_regions"].iloc[i])
        unit = "µm" if calibrated.iloc[i] else "px"
        word = _shape_word(circle.iloc[i], elong.iloc[i], sol.iloc[i])
        noun = _noun(str(phase.iloc[i]) if phase is not None else "", n)
        head = " ".join(x for x in (str(n), word, noun) if x)
        f, e = feret.iloc[i], extent.iloc[i]
        if n == 1:
            if math.isfinite(f):
                head += f", {_length(f)} {unit} across"
        else:
            if math.isfinite(e):
                head += f" within {_length(e)} {unit}"
            if math.isfinite(f):
                head += f" (largest {_length(f)} {unit} across)"
        parts = [head]
        best = None
        for name in SCORE_NAMES[:3]:
            p = places[name].iloc[i]
            if math.isfinite(p) and (best is None or p < best[1]):
                best = (name, p)
        if best is not None and best[1] < 100.0:  # "top 100%" would say nothing
            parts.append(
                f"{best[0]} score in the {percentile_label(best[1])} of this run's clusters"
            )
        if math.isfinite(edge.iloc[i]) and edge.iloc[i] <= EDGE_PX:
            parts.append("touches the scan edge")
        out.append("; ".join(parts))
    return pd.Series(out, index=clusters.index, name="reason", dtype=object)
