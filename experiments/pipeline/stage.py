"""The per-scan stage: read -> segment -> RegionTable -> scores -> clusters, for one scan.

:class:`ScanAnalyzer` is a callable object so that a runner can build it once
per worker (models loaded once) and call it for many scans.  It never raises
for a bad scan: the failure is returned as a ``status='failed'`` row with its
error, so one broken file cannot stop an archive.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tifffile

from anomaly.area import MarketConfig, market_clustering
from anomaly.scoring import score_regions
from data import binarize_mask, label_mask, read_scan, regions_from_labels, relabel_sequential
from data.inputs import ScanInput

from ..config import PipelineConfig, dataclass_from

__all__ = ["ScanResult", "ScanAnalyzer", "scan_row", "labels_path", "SCAN_COLUMNS"]

log = logging.getLogger(__name__)

SCAN_COLUMNS = (
    "scan_id",
    "path",
    "kind",
    "status",
    "error",
    "n_regions",
    "height",
    "width",
    "pixel_size_um",
    "area_fraction",
    "number_density_per_mpx",
    "number_density_per_mm2",
    "n_clusters",
    "grain_count",
    "heyn_mean_px",
    "grain_size_G",
    "grain_size_G_planimetric",
    "t_read_s",
    "t_segment_s",
    "t_regions_s",
    "t_score_s",
    "t_cluster_s",
    "t_grains_s",
    "t_total_s",
    "worker_pid",
    "peak_rss_mb",
)


@dataclass
class ScanResult:
    """What the stage returns for one scan."""

    scan_id: str
    row: dict
    regions: pd.DataFrame = field(default_factory=pd.DataFrame)
    clusters: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def ok(self) -> bool:
        return self.row.get("status") == "ok"


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def scan_row(item: ScanInput, kind: str, **values: Any) -> dict:
    """A scans.parquet row with every column present (NaN / '' where unknown)."""
    row: dict[str, Any] = {c: np.nan for c in SCAN_COLUMNS}
    row.update(scan_id=item.scan_id, path=str(item.path), kind=kind, status="ok", error="")
    row.update(worker_pid=os.getpid(), peak_rss_mb=_peak_rss_mb())
    row.update(values)
    return row


def labels_path(output_dir: Path, scan_id: str) -> Path:
    """Where the stage writes a scan's impurity label image (pixel value = region_id)."""
    from ..reporting import safe_relpath

    return Path(output_dir) / "labels" / f"{safe_relpath(scan_id)}.tif"


def _write_atomic_tiff(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        dtype = np.uint16 if labels.max(initial=0) < 2**16 else np.uint32
        tifffile.imwrite(tmp, labels.astype(dtype), compression="zlib")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class ScanAnalyzer:
    """Callable per-scan stage; build once per worker, call once per scan.

    Parameters
    ----------
    cfg : PipelineConfig
    output_dir : Path or None
        When given, the scan's label image is written to ``labels/<scan_id>.tif``.
    extra_score_kwargs : dict, optional
        Passed to scorers that accept them (e.g. ``map_rows`` for parallel spatial scoring).
    """

    def __init__(self, cfg: PipelineConfig, output_dir: Path | None = None, extra_score_kwargs=None):
        self.cfg = cfg
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.extra_score_kwargs = dict(extra_score_kwargs or {})
        self._segmenter = None
        self._market = dataclass_from(MarketConfig, cfg.anomaly.area, where="anomaly.area")

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
            scorers = self.cfg.anomaly.scorers or {}
            if "shape" in scorers:
                from anomaly import get_scorer, make_config
                from anomaly.shape_ae import load_shape_ae

                load_shape_ae(make_config(get_scorer("shape"), scorers["shape"]).weights)
        except Exception as exc:  # noqa: BLE001 - reported per scan
            log.warning("warm-up failed: %s: %s", type(exc).__name__, exc)

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
        m = grain_measures(boundaries, pixel_size_um=pixel_size_um, **opts)
        return {
            "grain_count": m["grain_count"],
            "heyn_mean_px": m["heyn_mean_px"],
            "grain_size_G": m["grain_size_G_intercept"],
            "grain_size_G_planimetric": m["grain_size_G_planimetric"],
        }

    def _segmenter_fn(self):
        """The configured segmenter (a U-Net one holds its model), built once per worker."""
        if self._segmenter is None:
            from segmentation import make_segmenter

            seg = self.cfg.segmentation
            options = seg.classical if seg.method == "classical" else seg.unet
            self._segmenter = make_segmenter(seg.method, options)
        return self._segmenter

    def _segment(self, pixels: np.ndarray) -> np.ndarray:
        return self._segmenter_fn()(pixels)

    def __call__(self, item: ScanInput) -> ScanResult:
        try:
            return self._analyse(item)
        except Exception as exc:  # one bad scan must not stop the archive
            log.warning("scan %s failed: %s: %s", item.scan_id, type(exc).__name__, exc)
            log.debug("%s", traceback.format_exc())
            row = scan_row(item, self.cfg.data.kind, status="failed", error=f"{type(exc).__name__}: {exc}")
            return ScanResult(item.scan_id, row)

    def _analyse(self, item: ScanInput) -> ScanResult:
        d = self.cfg.data
        t0 = time.perf_counter()
        scan = read_scan(item.path, pixel_size_um=d.pixel_size_um, scan_id=item.scan_id)
        t1 = time.perf_counter()
        if d.kind == "mask":
            labels, _ = label_mask(binarize_mask(scan.pixels, polarity=d.mask_polarity), connectivity=d.connectivity)
        else:
            labels = self._segment(scan.pixels)
        labels = relabel_sequential(labels, min_area_px=d.min_area_px)
        t2 = time.perf_counter()
        table = regions_from_labels(labels, pixel_size_um=scan.pixel_size_um)
        t3 = time.perf_counter()
        a = self.cfg.anomaly
        combine = dict(a.combine or {})
        table = score_regions(
            table,
            scorers=a.scorers,
            combine_inputs=tuple(combine.get("inputs", ("spatial", "circle"))),
            combine_method=combine.get("method", "product"),
            labels=labels,
            extra=self.extra_score_kwargs,
        )
        t4 = time.perf_counter()
        cluster_ids, clusters = market_clustering(table, table["combined_score"].to_numpy(), self._market)
        table["cluster_id"] = np.asarray(cluster_ids, dtype=np.int64)
        t5 = time.perf_counter()
        grains: dict = {}
        if d.kind == "scan" and dict(self.cfg.segmentation.grains or {}).get("enabled", False):
            grains = self._grains(scan.pixels, labels > 0, scan.pixel_size_um)
        t6 = time.perf_counter()
        if self.output_dir is not None:
            _write_atomic_tiff(labels_path(self.output_dir, item.scan_id), labels)
        table.insert(0, "scan_id", item.scan_id)
        clusters = clusters.copy()
        clusters.insert(0, "scan_id", item.scan_id)
        h, w = scan.shape
        n = len(table)
        mpx = h * w / 1e6
        row = scan_row(
            item,
            d.kind,
            n_regions=n,
            height=h,
            width=w,
            pixel_size_um=scan.pixel_size_um if scan.pixel_size_um is not None else np.nan,
            area_fraction=float(np.count_nonzero(labels)) / labels.size,
            number_density_per_mpx=n / mpx,
            number_density_per_mm2=(
                n / (h * w * (scan.pixel_size_um * 1e-3) ** 2) if scan.pixel_size_um else np.nan
            ),
            n_clusters=len(clusters),
            t_read_s=t1 - t0,
            t_segment_s=t2 - t1,
            t_regions_s=t3 - t2,
            t_score_s=t4 - t3,
            t_cluster_s=t5 - t4,
            t_grains_s=t6 - t5,
            t_total_s=time.perf_counter() - t0,
            **grains,
        )
        return ScanResult(item.scan_id, row, table, clusters)
