"""The per-scan analysis, pure: a label image (and the pixels) in, tables and row values out.

:func:`analyse` takes the scan's label image as segmented, with its pixel size and exclusion mask,
and returns a :class:`ScanAnalysis`: the scored RegionTable with cluster ids and inclusion types,
the clusters with their features and in-scan ranks, the rating fields, and the values of the
scan's ``scans.parquet`` measurement columns (:data:`.result.MEASURE_COLUMNS`, the grain and the
rating columns).  No file is read or written and nothing is drawn here (:mod:`.render` draws,
:mod:`.stage` reads the scan and orders the steps).

A new per-scan measurement is a function here whose values :func:`analyse` merges into
``ScanAnalysis.values``, its columns declared in :mod:`.result`, and its place in a report template.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from anomaly.market import MarketConfig, market_clustering
from anomaly.reasons import with_cluster_features
from anomaly.scorers import ScoreContext
from anomaly.scoring import score_regions
from data import regions_from_labels, relabel_sequential
from data.regions import um_twin_columns
from data.standards.uncertainty import combined_interval, field_sums
from data.standards import RATING_FIELD_COLUMNS, RatingConfig, rate_scan, unrated_scan_values
from segmentation.grains import grain_measures, scan_grain_values  # no Keras in grains

from ..config import dataclass_from
from .artifacts import scan_ranks
from .options import resolve_physical

__all__ = ["AnalysisOptions", "Clock", "ScanAnalysis", "analyse", "drop_excluded", "grain_values",
           "scan_measures"]

_DEFAULT_ORDER_KEY = "weighted_area2_sum_mult_diameter_mult_amount"


@dataclass(frozen=True)
class AnalysisOptions:
    """What the analysis of one scan needs from the run's configuration (built once per worker).

    ``area`` and each scorer's options may hold ``_um`` twins, resolved against each scan's pixel
    size; ``grains`` is None when grain size is not measured (its ``grain_note`` says why).
    """

    kind: str = "scan"
    min_area_px: int = 4
    min_area_um2: float | None = None
    scorers: Mapping[str, dict] = field(default_factory=dict)
    combine_inputs: tuple[str, ...] = ("spatial", "circle")
    combine_method: str = "product"
    area: Mapping[str, Any] = field(default_factory=dict)
    order_key: str = _DEFAULT_ORDER_KEY
    ratings: RatingConfig = field(default_factory=RatingConfig)
    grains: Mapping[str, Any] | None = None
    grain_note: str = ""
    inpainting: Mapping[str, Any] = field(default_factory=dict)
    # the segmentation's measured repeatability (model card ``repeatability``: cv_area_fraction_median,
    # cv_count_median, dof); empty = field-to-field spread only (a mask is the measurement itself)
    repeatability: Mapping[str, Any] = field(default_factory=dict)
    interval_field_px: int = 256


class Clock:
    """Seconds per step as ``t_<step>_s`` row values: each :meth:`lap` closes the running step."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.values: dict[str, float] = {}

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.values[f"t_{step}_s"] = now - self.last
        self.last = now

    def total(self) -> dict[str, float]:
        return {**self.values, "t_total_s": time.perf_counter() - self.start}


@dataclass
class ScanAnalysis:
    """What :func:`analyse` gives for one scan (tables without their ``scan_id`` column)."""

    labels: np.ndarray
    table: pd.DataFrame
    clusters: pd.DataFrame
    ratings: pd.DataFrame | None
    values: dict[str, Any]


def drop_excluded(labels: np.ndarray, exclude: np.ndarray) -> tuple[np.ndarray, int]:
    """Remove every labelled component that touches an excluded pixel (annotation, outside the ROI).

    Returns the new label image and the number of components removed.
    """
    hit = np.unique(labels[exclude])
    hit = hit[hit > 0]
    if hit.size == 0:
        return labels, 0
    lut = np.arange(int(labels.max()) + 1, dtype=labels.dtype)
    lut[hit] = 0
    return lut[labels], int(hit.size)


def _with_um_twins(table: pd.DataFrame) -> pd.DataFrame:
    """Every ``_um`` twin present (NaN for an uncalibrated scan): one schema for every scan."""
    for col in um_twin_columns():
        if col not in table.columns:
            table[col] = np.nan
    return table


def _scores(table: pd.DataFrame, labels: np.ndarray, ps: float | None, opts: AnalysisOptions,
            map_rows: Callable | None) -> pd.DataFrame:
    """The configured scorers' columns and ``combined_score`` (µm options resolved for this scan)."""
    scorers = {name: resolve_physical(o, ps) for name, o in opts.scorers.items()}
    return score_regions(table, scorers=scorers, combine_inputs=opts.combine_inputs,
                         combine_method=opts.combine_method,
                         context=ScoreContext(labels=labels, map_rows=map_rows))


def _clusters(table: pd.DataFrame, ps: float | None, shape: tuple[int, int],
              opts: AnalysisOptions) -> pd.DataFrame:
    """Market clustering (sets ``table['cluster_id']``), cluster features and in-scan ranks."""
    market = dataclass_from(MarketConfig, resolve_physical(opts.area, ps), where="anomaly.area")
    cluster_ids, clusters = market_clustering(table, table["combined_score"].to_numpy(), market)
    table["cluster_id"] = np.asarray(cluster_ids, dtype=np.int64)
    clusters = with_cluster_features(table, clusters, pixel_size_um=ps, shape=shape)
    clusters.insert(1, "scan_rank", scan_ranks(clusters, opts.order_key))
    return clusters


def grain_values(pixels: np.ndarray, impurity_mask: np.ndarray, pixel_size_um: float | None,
                 opts: AnalysisOptions) -> dict:
    """Inpaint the impurities, segment grain boundaries, measure grain size (raw scans only)."""
    if opts.grains is None:
        return {"grain_note": opts.grain_note}
    from segmentation import predict_grain_boundaries  # lazy: Keras

    inpaint_opts = dict(opts.inpainting)
    if inpaint_opts.get("method", "none") != "none":
        from inpainting import inpaint  # lazy: Keras for the generative method

        pixels = inpaint(pixels, impurity_mask, **inpaint_opts)
    boundaries = predict_grain_boundaries(pixels)
    return scan_grain_values(grain_measures(boundaries, pixel_size_um=pixel_size_um, **opts.grains))


def _ratings(table: pd.DataFrame, labels: np.ndarray, pixels: np.ndarray, scan_id: str, ps: float | None,
             exclude: np.ndarray | None, opts: AnalysisOptions) -> tuple[pd.DataFrame | None, dict]:
    """ASTM E45 / ISO 4967 worst fields and E1245 values; region types in ``table['inclusion_type']``.

    ``ps`` is the scan's resolved calibration; fields holding ``exclude`` pixels are not rated.
    """
    if not opts.ratings.enabled:
        table["inclusion_type"] = ""
        return None, unrated_scan_values("ratings disabled (ratings.enabled=false)")
    r = rate_scan(table, shape=labels.shape, pixel_size_um=ps, cfg=opts.ratings,
                  pixels=pixels if opts.kind == "scan" else None, labels=labels, scan_id=scan_id, exclude=exclude)
    table["inclusion_type"] = np.asarray(r.region_types, dtype=object).astype(str)
    fields = r.fields if r.fields is not None else pd.DataFrame(columns=list(RATING_FIELD_COLUMNS))
    return fields, dict(r.scan_values)


def scan_measures(labels: np.ndarray, n_regions: int, n_clusters: int, ps: float | None,
                  exclude: np.ndarray | None) -> dict:
    """Counts, the area fraction and number densities of the analysed area (the scan less its exclusions)."""
    h, w = labels.shape
    analysed_px = max(1, h * w - (int(np.count_nonzero(exclude)) if exclude is not None else 0))
    return {
        "n_regions": n_regions,
        "height": h,
        "width": w,
        "area_fraction": float(np.count_nonzero(labels)) / analysed_px,
        "number_density_per_mpx": n_regions / (analysed_px / 1e6),
        "number_density_per_mm2": (n_regions / (analysed_px * (ps * 1e-3) ** 2) if ps else np.nan),
        "n_clusters": n_clusters,
        "excluded_fraction": float(exclude.mean()) if exclude is not None else 0.0,
    }


def interval_values(labels: np.ndarray, table: pd.DataFrame, exclude: np.ndarray | None,
                    options: AnalysisOptions) -> dict:
    """The ``area_fraction_*`` and ``n_regions_*`` interval columns of a scan (:mod:`data.standards.uncertainty`).

    Fields are the near-square grid of ``options.interval_field_px``; excluded pixels count in no
    field (a field wholly excluded drops out).
    """
    shape = labels.shape
    keep = np.ones(shape, bool) if exclude is None else ~np.asarray(exclude, bool)
    num, _ = field_sums(shape, field_px=options.interval_field_px, mask=labels > 0)
    den, _ = field_sums(shape, field_px=options.interval_field_px, mask=keep)
    pts = table[["centroid_row", "centroid_col"]].to_numpy() if len(table) else np.empty((0, 2))
    cnt, _ = field_sums(shape, field_px=options.interval_field_px, points=pts)
    used = den > 0
    rep = options.repeatability
    dof = float(rep.get("dof", math.inf))
    af = combined_interval(num[used], den[used], repeatability_cv=float(rep.get("cv_area_fraction_median", 0.0)),
                           repeatability_dof=dof)
    n = combined_interval(cnt[used], den[used], scale=float(den[used].sum()),
                          repeatability_cv=float(rep.get("cv_count_median", 0.0)), repeatability_dof=dof)
    return {"area_fraction_ci95_low": af["low"], "area_fraction_ci95_high": af["high"],
            "area_fraction_u_field": af["u_field"], "area_fraction_u_repeat": af["u_repeat"],
            "n_regions_ci95_low": n["low"], "n_regions_ci95_high": n["high"],
            "n_regions_u_field": n["u_field"], "n_regions_u_repeat": n["u_repeat"]}


def analyse(pixels: np.ndarray, labels: np.ndarray, *, scan_id: str, pixel_size_um: float | None,
            exclude: np.ndarray | None, options: AnalysisOptions, map_rows: Callable | None = None,
            clock: Clock | None = None) -> ScanAnalysis:
    """Analyse one segmented scan.

    Parameters
    ----------
    pixels : ndarray, shape (M, N)
        The scan's gray values (ratings of raw scans, grain size).
    labels : ndarray, shape (M, N), integer
        The label image as segmented (0 = matrix); components touching ``exclude`` and those
        under the detection limit are removed here.
    scan_id : str
    pixel_size_um : float or None
        The scan's resolved pixel size (None = uncalibrated).
    exclude : ndarray of bool, shape (M, N), or None
        Pixels left out of the analysis (annotations, outside the ROI, user masks).
    options : AnalysisOptions
    map_rows : callable, optional
        Parallel row mapper of the spatial score (``ScoreContext.map_rows``).
    clock : Clock, optional
        Timings of the steps (``segment`` closes the running step first).

    Returns
    -------
    ScanAnalysis
    """
    clock = clock or Clock()
    ps = pixel_size_um
    n_excluded = 0
    if exclude is not None:
        labels, n_excluded = drop_excluded(labels, exclude)
    min_area = resolve_physical({"min_area_px": options.min_area_px, "min_area_um2": options.min_area_um2}, ps)
    labels = relabel_sequential(labels, min_area_px=int(min_area["min_area_px"]))
    clock.lap("segment")
    table = _with_um_twins(regions_from_labels(labels, pixel_size_um=ps))
    clock.lap("regions")
    table = _scores(table, labels, ps, options, map_rows)
    clock.lap("score")
    clusters = _clusters(table, ps, labels.shape, options)
    clock.lap("cluster")
    grains = grain_values(pixels, labels > 0, ps, options)
    clock.lap("grains")
    ratings, rating_values = _ratings(table, labels, pixels, scan_id, ps, exclude, options)
    clock.lap("ratings")
    values = {**scan_measures(labels, len(table), len(clusters), ps, exclude), "n_excluded_regions": n_excluded,
              **interval_values(labels, table, exclude, options),
              **grains, **rating_values}
    return ScanAnalysis(labels, table, clusters, ratings, values)
