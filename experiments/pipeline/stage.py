"""The per-scan stage: read -> segment -> RegionTable -> scores -> clusters -> pictures, in memory.

:class:`ScanAnalyzer` is a callable object so that a runner builds it once per worker (models
loaded once) and calls it for many scans.  Everything that needs the pixels is done here, on the
worker that holds them: the label image, the heatmap, the exclusion mask and the gallery crops are
returned as bytes in :class:`ScanResult` (the driver writes them once, where
:class:`experiments.layout.RunLayout` says), together with the scan's tables and the small
histograms the report plots.  The driver never reads a scan.

The stage never raises for a bad scan: the failure is returned as a ``status='failed'`` row with
its error, so one broken file cannot stop an archive.
"""

from __future__ import annotations

import logging
import math
import os
import resource
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from anomaly.area import MarketConfig, market_clustering
from anomaly.scorers import ScoreContext
from anomaly.scoring import configured_scorers, score_regions
from data import binarize_mask, label_mask, read_scan, regions_from_labels, relabel_sequential
from data.inputs import ScanInput

from ..config import PipelineConfig, dataclass_from
from ..layout import RunLayout
from .artifacts import label_tiff_bytes, mask_png_bytes, png_bytes, scan_ranks
from .options import resolve_physical, resolved_settings_note

__all__ = ["ScanTask", "ScanResult", "ScanAnalyzer", "scan_row", "SCAN_COLUMNS", "RenderOptions"]

log = logging.getLogger(__name__)

SCAN_COLUMNS: tuple[str, ...] = (
    "scan_id",
    "path",
    "kind",
    "status",
    "error",
    "n_regions",
    "height",
    "width",
    "pixel_size_um",
    "pixel_size_source",
    "calibration_note",
    "area_fraction",
    "number_density_per_mpx",
    "number_density_per_mm2",
    "n_clusters",
    "excluded_fraction",
    "n_excluded_regions",
    "data_bar",
    "scale_bar_length_px",
    "scale_bar_label",
    "labels_file",
    "heatmap_file",
    "exclusion_file",
    "settings_note",
    "group",
    "file_size",
    "file_mtime_ns",
    "t_read_s",
    "t_segment_s",
    "t_regions_s",
    "t_score_s",
    "t_cluster_s",
    "t_grains_s",
    "t_ratings_s",
    "t_render_s",
    "t_total_s",
    "worker_pid",
    "peak_rss_mb",
)
_STRING_COLUMNS = frozenset(
    {"scan_id", "path", "kind", "status", "error", "pixel_size_source", "calibration_note", "data_bar",
     "scale_bar_label",
     "labels_file", "heatmap_file", "exclusion_file", "settings_note", "group"}
)
_INT_COLUMNS = frozenset({"n_regions", "height", "width", "n_clusters", "file_size",
                          "file_mtime_ns", "worker_pid", "n_excluded_regions"})


def _rating_columns() -> tuple[tuple[str, ...], dict]:
    from data.standards import RATING_SCAN_COLUMNS, unrated_scan_values

    return RATING_SCAN_COLUMNS, unrated_scan_values("")


RATING_COLUMNS, _UNRATED = _rating_columns()
from segmentation.grains import SCAN_GRAIN_COLUMNS, scan_grain_values  # noqa: E402 (no Keras in grains)

_G = SCAN_COLUMNS.index("n_clusters") + 1
SCAN_COLUMNS = SCAN_COLUMNS[:_G] + SCAN_GRAIN_COLUMNS + SCAN_COLUMNS[_G:]
_T = SCAN_COLUMNS.index("t_read_s")
SCAN_COLUMNS = SCAN_COLUMNS[:_T] + RATING_COLUMNS + SCAN_COLUMNS[_T:]  # timings and process info last
_STRING_COLUMNS = _STRING_COLUMNS | {"grain_note"}
_INT_COLUMNS = _INT_COLUMNS | {"grain_count", "grain_fields", "n_intercepts", "n_crossings"}
_STRING_COLUMNS = _STRING_COLUMNS | {c for c, v in _UNRATED.items() if isinstance(v, str)}
_BOOL_COLUMNS = frozenset(c for c, v in _UNRATED.items() if isinstance(v, bool))
_INT_COLUMNS = _INT_COLUMNS | {c for c, v in _UNRATED.items() if isinstance(v, int) and not isinstance(v, bool)}


@dataclass(frozen=True)
class RenderOptions:
    """What the stage draws (the pixel-dependent part of ``report``), see ReportConfig."""

    heatmap: bool = True
    score: str = "combined_score"
    cmap: str = "viridis"
    max_side: int = 2048
    crop_side: int = 420
    crop_margin: float = 0.3
    crop_min_margin_px: int = 16
    top_n: int = 50
    size_min_area_px: int = 4
    settings_text: str = ""  # second title line of the heatmaps (the score's settings)


@dataclass(frozen=True)
class ScanTask:
    """One scan to analyse, with what the driver knows when it hands it out.

    ``crop_min_score``: only clusters scoring at least this can still enter the run's top
    ``top_n`` (the driver's running threshold), so only those get a gallery crop.
    """

    item: ScanInput
    crop_min_score: float = -math.inf
    group: str = ""
    # where the stage writes the scan's files and checkpoint (the run dir; None = keep them in memory)
    run_root: str | None = None
    input_id: dict = field(default_factory=dict)
    config_hash: str = ""


@dataclass
class ScanResult:
    """What the stage returns for one scan (everything in memory)."""

    scan_id: str
    row: dict
    regions: pd.DataFrame = field(default_factory=pd.DataFrame)
    clusters: pd.DataFrame = field(default_factory=pd.DataFrame)
    ratings: pd.DataFrame | None = None
    files: dict[str, bytes] = field(default_factory=dict)  # run-relative path -> content
    crops: dict[int, dict] = field(default_factory=dict)  # cluster_id -> {"file": rel, "facts": [...]}
    stats: dict = field(default_factory=dict)  # reporting.stats.RegionStats.to_dict()
    written: list[str] = field(default_factory=list)  # files the stage wrote (run-relative)
    write_error: str = ""  # the run dir could not be written (disk full, read-only): stop the run

    @property
    def ok(self) -> bool:
        return self.row.get("status") == "ok"


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _file_identity(path: Path) -> dict:
    try:
        st = Path(path).stat()
        return {"file_size": int(st.st_size), "file_mtime_ns": int(st.st_mtime_ns)}
    except OSError:
        return {}


def scan_row(item: ScanInput, kind: str, **values: Any) -> dict:
    """A scans.parquet row with every column present (NaN / '' where unknown)."""
    row: dict[str, Any] = {c: ("" if c in _STRING_COLUMNS else np.nan) for c in SCAN_COLUMNS}
    row.update(_UNRATED)
    row.update(scan_id=item.scan_id, path=str(item.path), kind=kind, status="ok", error="")
    row.update(worker_pid=os.getpid(), peak_rss_mb=_peak_rss_mb())
    row.update(_file_identity(item.path))
    row.update(values)
    return row


def scan_rows_frame(rows: list[dict]) -> pd.DataFrame:
    """scans.parquet rows with stable dtypes (ints stay nullable ints, strings stay strings)."""
    df = pd.DataFrame(rows, columns=list(SCAN_COLUMNS))
    for c in SCAN_COLUMNS:
        if c in _STRING_COLUMNS:
            df[c] = df[c].fillna("").astype(str)
        elif c in _BOOL_COLUMNS:
            df[c] = df[c].fillna(False).astype(bool)
        elif c in _INT_COLUMNS:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
        else:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(np.float64)
    return df


def _with_um_twins(table: pd.DataFrame) -> pd.DataFrame:
    """Every ``_um`` twin present (NaN for an uncalibrated scan): one schema for every scan."""
    from data.regions import um_twin_columns

    for col in um_twin_columns():
        if col not in table.columns:
            table[col] = np.nan
    return table


class ScanAnalyzer:
    """Callable per-scan stage; build once per worker, call once per scan.

    Parameters
    ----------
    cfg : PipelineConfig
    render : RenderOptions, optional
        What to draw; None draws nothing (tables only).
    map_rows : callable, optional
        Parallel row mapper for the spatial score of huge scans (``ScoreContext.map_rows``).
    """

    def __init__(self, cfg: PipelineConfig, render: RenderOptions | None = None, map_rows=None):
        self.cfg = cfg
        self.render = render
        self.map_rows = map_rows
        self._segmenter = None
        self._scorers = configured_scorers(cfg.anomaly.scorers)
        combine = dict(cfg.anomaly.combine or {})
        self._combine_inputs = tuple(combine.get("inputs", ("spatial", "circle")))
        self._combine_method = combine.get("method", "product")
        self._order_key = str(cfg.anomaly.area.get("order_key", "weighted_area2_sum_mult_diameter_mult_amount"))
        from data.standards import RatingConfig

        self._ratings = dataclass_from(RatingConfig, cfg.ratings, where="ratings")
        from data.annotations import AnnotationConfig
        from data.calibration import load_calibration_csv

        ann = dict(cfg.data.annotations or {})
        self._find_annotations = bool(ann.pop("enabled", True)) and cfg.data.kind == "scan"
        self._annotations = dataclass_from(AnnotationConfig, ann, where="data.annotations")
        self._csv = load_calibration_csv(cfg.data.calibration_csv) if cfg.data.calibration_csv else {}

    # ------------------------------------------------------------------ models
    def warm_up(self) -> None:
        """Load the models this configuration needs now (once per worker, before the first scan).

        A load that fails is only logged here: every scan then reports the error in its own
        ``failed`` row, as without the warm-up.
        """
        try:
            if self.cfg.data.kind != "mask":
                self._segmenter_fn()
                if (self.cfg.segmentation.grains or {}).get("enabled"):
                    from segmentation.models import load_model

                    load_model("grains")
            if "shape" in self._scorers:
                from anomaly.scorers import get_scorer, make_config
                from anomaly.shape import load_shape_ae

                load_shape_ae(make_config(get_scorer("shape"), self._scorers["shape"]).weights)
        except Exception as exc:  # noqa: BLE001 - reported per scan
            log.warning("warm-up failed: %s: %s", type(exc).__name__, exc)

    def _segmenter_fn(self):
        """The configured segmenter (a U-Net one holds its model), built once per worker."""
        if self._segmenter is None:
            from segmentation import make_segmenter

            seg = self.cfg.segmentation
            options = dict(seg.classical if seg.method == "classical" else seg.unet)
            if seg.method == "unet" and options.get("min_area_px") is None:
                # one detection limit: the run's data.min_area_px (/ _um2), applied after the watershed
                options["min_area_px"] = 1
            self._segmenter = make_segmenter(seg.method, options)
        return self._segmenter

    def _grains(self, pixels: np.ndarray, impurity_mask: np.ndarray, pixel_size_um: float | None) -> dict:
        """Inpaint the impurities, segment grain boundaries, measure grain size (raw scans only)."""
        from segmentation import predict_grain_boundaries
        from segmentation.grains import grain_measures

        options = dict(self.cfg.inpainting or {})
        if options.get("method", "none") != "none":
            from inpainting import inpaint

            pixels = inpaint(pixels, impurity_mask, **options)
        opts = dict(self.cfg.segmentation.grains or {})
        opts.pop("enabled", None)
        boundaries = predict_grain_boundaries(pixels)
        return scan_grain_values(grain_measures(boundaries, pixel_size_um=pixel_size_um, **opts))

    # ------------------------------------------------------------------ one scan
    def __call__(self, task: ScanTask | ScanInput) -> ScanResult:
        if isinstance(task, ScanInput):
            task = ScanTask(task)
        item = task.item
        try:
            result = self._analyse(task)
        except Exception as exc:  # one bad scan must not stop the archive
            log.warning("scan %s failed: %s: %s", item.scan_id, type(exc).__name__, exc)
            log.debug("%s", traceback.format_exc())
            row = scan_row(item, self.cfg.data.kind, status="failed", error=f"{type(exc).__name__}: {exc}",
                           group=task.group, rating_note="not rated: the scan failed")
            result = ScanResult(item.scan_id, row)
        if task.run_root is not None:
            from .checkpoint import commit_scan

            try:
                commit_scan(Path(task.run_root), result, input_id=task.input_id, config_hash=task.config_hash)
            except OSError as exc:  # the run dir, not the scan: the driver stops the run
                result.files = {}
                result.write_error = f"{exc.errno}:{exc.strerror or exc}"
        return result

    def _labels(self, pixels: np.ndarray) -> np.ndarray:
        d = self.cfg.data
        if d.kind == "mask":
            labels, _ = label_mask(binarize_mask(pixels, polarity=d.mask_polarity), connectivity=d.connectivity)
            return labels
        return self._segmenter_fn()(pixels)

    def _analyse(self, task: ScanTask) -> ScanResult:
        item = task.item
        d = self.cfg.data
        t0 = time.perf_counter()
        scan = read_scan(item.path, scan_id=item.scan_id, max_pixels=d.max_pixels, max_file_bytes=d.max_file_bytes)
        ann, cal, exclude = self._calibrate(item, scan)
        ps, source = cal.pixel_size_um, cal.source
        t1 = time.perf_counter()
        labels = self._labels(scan.pixels)
        n_excluded = 0
        if exclude is not None:
            labels, n_excluded = _drop_excluded(labels, exclude)
        data_opts = resolve_physical({"min_area_px": d.min_area_px, "min_area_um2": d.min_area_um2}, ps)
        labels = relabel_sequential(labels, min_area_px=int(data_opts["min_area_px"]))
        t2 = time.perf_counter()
        table = _with_um_twins(regions_from_labels(labels, pixel_size_um=ps))
        t3 = time.perf_counter()
        scorers = {name: resolve_physical(opts, ps) for name, opts in self._scorers.items()}
        table = score_regions(
            table,
            scorers=scorers,
            combine_inputs=self._combine_inputs,
            combine_method=self._combine_method,
            context=ScoreContext(labels=labels, map_rows=self.map_rows),
        )
        t4 = time.perf_counter()
        market = dataclass_from(MarketConfig, resolve_physical(self.cfg.anomaly.area, ps), where="anomaly.area")
        cluster_ids, clusters = market_clustering(table, table["combined_score"].to_numpy(), market)
        table["cluster_id"] = np.asarray(cluster_ids, dtype=np.int64)
        from anomaly.reasons import with_cluster_features

        clusters = with_cluster_features(table, clusters, pixel_size_um=ps, shape=scan.shape)
        clusters.insert(1, "scan_rank", scan_ranks(clusters, self._order_key))
        t5 = time.perf_counter()
        if d.kind != "scan":
            grains = {"grain_note": "not measured: grain size needs a raw scan (data.kind=mask)"}
        elif not dict(self.cfg.segmentation.grains or {}).get("enabled", False):
            grains = {"grain_note": "not measured (segmentation.grains.enabled=false)"}
        else:
            grains = self._grains(scan.pixels, labels > 0, ps)
        t6 = time.perf_counter()
        ratings, rating_values = self._rate(table, scan, labels, item.scan_id, ps, exclude)
        t7 = time.perf_counter()
        table.insert(0, "scan_id", item.scan_id)
        clusters.insert(0, "scan_id", item.scan_id)
        files, crops = self._render(task, scan.pixels, labels, table, clusters, ps, exclude)
        t8 = time.perf_counter()
        h, w = scan.shape
        n = len(table)
        analysed_px = max(1, h * w - (int(np.count_nonzero(exclude)) if exclude is not None else 0))
        row = scan_row(
            item,
            d.kind,
            n_regions=n,
            height=h,
            width=w,
            pixel_size_um=ps if ps is not None else np.nan,
            pixel_size_source=source,
            calibration_note="; ".join(cal.notes),
            settings_note=self._settings_note(ps),
            excluded_fraction=float(exclude.mean()) if exclude is not None else 0.0,
            n_excluded_regions=n_excluded,
            data_bar=_box_text(ann.data_bar) if ann is not None and ann.data_bar is not None else "",
            scale_bar_length_px=ann.scale_bars[0].length_px if ann is not None and ann.scale_bars else np.nan,
            scale_bar_label=(ann.scale_bars[0].label or "") if ann is not None and ann.scale_bars else "",
            exclusion_file=RunLayout.exclusion_rel(item.scan_id) if exclude is not None else "",
            # fractions and densities of the analysed area (the scan less its exclusions)
            area_fraction=float(np.count_nonzero(labels)) / analysed_px,
            number_density_per_mpx=n / (analysed_px / 1e6),
            number_density_per_mm2=(n / (analysed_px * (ps * 1e-3) ** 2) if ps else np.nan),
            n_clusters=len(clusters),
            labels_file=RunLayout.labels_rel(item.scan_id) if RunLayout.labels_rel(item.scan_id) in files else "",
            heatmap_file=RunLayout.heatmap_rel(item.scan_id) if RunLayout.heatmap_rel(item.scan_id) in files else "",
            t_read_s=t1 - t0,
            t_segment_s=t2 - t1,
            t_regions_s=t3 - t2,
            t_score_s=t4 - t3,
            t_cluster_s=t5 - t4,
            t_grains_s=t6 - t5,
            t_ratings_s=t7 - t6,
            t_render_s=t8 - t7,
            t_total_s=time.perf_counter() - t0,
            group=task.group,
            **grains,
            **rating_values,
        )
        from ..reporting.stats import region_stats

        size_min = self.render.size_min_area_px if self.render else 4
        stats = region_stats(table, calibrated=ps is not None, size_min_area_px=size_min).to_dict()
        return ScanResult(item.scan_id, row, table, clusters, ratings, files, crops, stats)

    def _rate(self, table: pd.DataFrame, scan, labels: np.ndarray, scan_id: str,
              pixel_size_um: float | None, exclude: np.ndarray | None) -> tuple[pd.DataFrame | None, dict]:
        """ASTM E45 / ISO 4967 worst fields and E1245 values (``ratings``); types in ``inclusion_type``.

        ``pixel_size_um`` is the scan's resolved calibration (config, csv, metadata or scale bar);
        fields holding ``exclude`` pixels are not rated.
        """
        from data.standards import RATING_FIELD_COLUMNS, rate_scan, unrated_scan_values

        if not self._ratings.enabled:
            table["inclusion_type"] = ""
            return None, unrated_scan_values("ratings disabled (ratings.enabled=false)")
        r = rate_scan(table, shape=labels.shape, pixel_size_um=pixel_size_um, cfg=self._ratings,
                      pixels=scan.pixels if self.cfg.data.kind == "scan" else None, labels=labels, scan_id=scan_id,
                      exclude=exclude)
        table["inclusion_type"] = np.asarray(r.region_types, dtype=object).astype(str)
        fields = r.fields if r.fields is not None else pd.DataFrame(columns=list(RATING_FIELD_COLUMNS))
        return fields, dict(r.scan_values)

    # ------------------------------------------------------------------ pictures
    def _settings_note(self, ps: float | None) -> str:
        """Which µm settings replaced their pixel twins on this (calibrated) scan."""
        d = self.cfg.data
        parts = [resolved_settings_note({"min_area_px": d.min_area_px, "min_area_um2": d.min_area_um2}, ps, where="data"),
                 resolved_settings_note(self.cfg.anomaly.area, ps, where="anomaly.area")]
        parts += [resolved_settings_note(o, ps, where=f"anomaly.scorers.{n}") for n, o in self._scorers.items()]
        return "; ".join(x for x in parts if x)

    def _calibrate(self, item: ScanInput, scan):
        """Annotations (raw scans), the pixel size by precedence, and the pixels to exclude."""
        from data.annotations import find_annotations, roi_mask
        from data.calibration import calibration_key, resolve_pixel_size

        d = self.cfg.data
        ann = find_annotations(scan.pixels, cfg=self._annotations) if self._find_annotations else None
        cal = resolve_pixel_size(
            config_um=d.pixel_size_um,
            csv_um=self._csv.get(calibration_key(item.path)) if self._csv else None,
            metadata_um=scan.pixel_size_um if scan.pixel_size_source == "metadata" else None,
            scale_bar_um=ann.pixel_size_um if ann is not None else None,
        )
        if ann is not None and ann.notes:
            cal = type(cal)(cal.pixel_size_um, cal.source, tuple(cal.notes) + tuple(ann.notes))
        exclude = None
        parts = [m for m in (ann.mask if ann is not None else None, roi_mask(d.roi, scan.shape) if d.roi else None,
                             self._user_exclusion(item, scan.shape)) if m is not None and m.any()]
        if parts:
            exclude = np.logical_or.reduce(parts)
        return ann, cal, exclude

    def _user_exclusion(self, item: ScanInput, shape) -> np.ndarray | None:
        from data.annotations import load_exclusion

        spec = self.cfg.data.exclusion_mask
        if not spec:
            return None
        p = Path(spec).expanduser()
        if p.is_dir():
            for suffix in (".png", ".tif", ".tiff"):
                f = p / f"{item.scan_id}{suffix}"
                if f.is_file():
                    return load_exclusion(f, shape)
            return None
        return load_exclusion(p, shape)

    def _render(self, task, pixels, labels, table, clusters, ps, exclude=None) -> tuple[dict[str, bytes], dict[int, dict]]:
        sid = task.item.scan_id
        files = {RunLayout.labels_rel(sid): label_tiff_bytes(labels, pixel_size_um=ps)}
        if exclude is not None:
            files[RunLayout.exclusion_rel(sid)] = mask_png_bytes(exclude)
        r = self.render
        if r is None:
            return files, {}
        from ..reporting import cluster_facts, render_cluster_crop, render_heatmap

        score = r.score if r.score in table.columns else "combined_score"
        if r.heatmap:
            tagged = clusters.assign(tag=clusters["scan_rank"].astype(str)) if len(clusters) else clusters
            rgb = render_heatmap(
                pixels, table, score=score, labels=labels, clusters=tagged, cmap=r.cmap,
                max_side=r.max_side, title=f"{sid}: {score}", settings=r.settings_text, exclusion=exclude,
            )
            files[RunLayout.heatmap_rel(sid)] = png_bytes(rgb)
        crops: dict[int, dict] = {}
        if r.top_n > 0 and len(clusters):
            key = clusters[self._order_key].to_numpy(dtype=np.float64)
            cand = clusters[key >= task.crop_min_score].sort_values("scan_rank").head(r.top_n)
            members_of = table.groupby("cluster_id").indices
            for _, c in cand.iterrows():
                cid = int(c["cluster_id"])
                members = table.iloc[members_of.get(cid, [])]
                info = c.to_dict()
                rgb = render_cluster_crop(
                    pixels, table, info, labels=labels, score=score, margin=r.crop_margin,
                    min_margin_px=r.crop_min_margin_px, side=r.crop_side, cmap=r.cmap,
                    pixel_size_um=ps, title=f"{sid} · cluster {cid} (#{int(c['scan_rank'])} in scan)",
                )
                rel = RunLayout.crop_rel(sid, cid)
                files[rel] = png_bytes(rgb)
                facts = [(k, v) for k, v in cluster_facts(info, members, score=score, pixel_size_um=ps)
                         if k not in ("rank", "cluster score", "normalised", "percentile")]
                crops[cid] = {"file": rel, "facts": facts}
        return files, crops


def _box_text(box) -> str:
    return "rows {}-{}, cols {}-{}".format(box[0], box[2], box[1], box[3])


def _drop_excluded(labels: np.ndarray, exclude: np.ndarray) -> tuple[np.ndarray, int]:
    """Remove every labelled component that touches an excluded pixel (annotation, outside the ROI)."""
    hit = np.unique(labels[exclude])
    hit = hit[hit > 0]
    if hit.size == 0:
        return labels, 0
    lut = np.arange(int(labels.max()) + 1, dtype=labels.dtype)
    lut[hit] = 0
    return lut[labels], int(hit.size)


def failed_result(item: ScanInput, kind: str, error: str) -> ScanResult:
    """The result of a scan that could not be analysed (e.g. its worker died)."""
    return ScanResult(item.scan_id, scan_row(item, kind, status="failed", error=error))

