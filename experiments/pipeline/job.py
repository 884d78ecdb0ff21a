"""The main job: scans -> per-scan stage (serial or Ray) -> archive ranking -> tables, heatmaps, report.

Outputs in the run directory (the contract documented in README):
``regions.parquet``, ``clusters.parquet``, ``scans.parquet``, ``labels/<scan_id>.tif``,
``heatmaps/<scan_id>.png``, ``report/index.html`` and Hydra's ``.hydra/``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from anomaly.area import market_clustering
from anomaly.rank import rank_clusters
from data import discover_inputs, empty_regions

from .checkpoint import PartStore
from ..config import PipelineConfig, pipeline_config, resolve_input
from .runners import StageFactory, run_stage
from .stage import SCAN_COLUMNS, ScanResult, labels_path

__all__ = ["run_task", "run_pipeline", "assemble_tables"]

log = logging.getLogger(__name__)


def run_task(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``pipeline``."""
    run_config = OmegaConf.to_container(cfg, resolve=True)
    return run_pipeline(pipeline_config(cfg), output_dir, run_config=run_config)


def assemble_tables(
    results: list[ScanResult], *, order_key: str
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Concatenate per-scan results and rank clusters over the archive.

    Returns (regions, clusters, scans), each sorted deterministically.
    """
    scans = pd.DataFrame([r.row for r in results], columns=list(SCAN_COLUMNS))
    scans = scans.sort_values("scan_id", kind="stable").reset_index(drop=True)
    ok = [r for r in results if r.ok]
    # Empty per-scan frames still carry the columns: keep one so an archive without
    # impurities writes tables with the documented columns.
    region_parts = [r.regions for r in ok if len(r.regions)] or [r.regions for r in ok][:1]
    regions = pd.concat(region_parts, ignore_index=True) if region_parts else pd.DataFrame()
    if len(regions):
        regions = regions.sort_values(["scan_id", "region_id"], kind="stable").reset_index(drop=True)
    cluster_parts = [r.clusters for r in ok if len(r.clusters)] or [r.clusters for r in ok][:1]
    if cluster_parts:
        clusters = pd.concat(cluster_parts, ignore_index=True)
    else:  # every scan failed: an empty table with the right columns and dtypes
        clusters = market_clustering(empty_regions(), np.zeros(0))[1]
        clusters.insert(0, "scan_id", pd.Series(dtype=str))
    clusters = rank_clusters(clusters, key=order_key)
    clusters = clusters.sort_values(["rank"], kind="stable").reset_index(drop=True)
    return regions, clusters, scans


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".parquet.tmp")
    df.to_parquet(tmp, index=False)
    tmp.replace(path)


def run_pipeline(pc: PipelineConfig, output_dir: Path, *, run_config: dict | None = None) -> int:
    """Run the whole job into ``output_dir``; exit code 1 only if every scan failed."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    items = discover_inputs(resolve_input(pc.data.input))
    store = PartStore(output_dir / "parts")
    if not pc.runtime.resume:
        store.clear()
    todo = [it for it in items if not store.has(it.scan_id)]
    if len(todo) < len(items):
        log.info("resuming: %d of %d scans already done", len(items) - len(todo), len(items))
    log.info("processing %d scan(s) from %s (%s runner)", len(todo), pc.data.input, pc.runtime.mode)
    run_stage(todo, StageFactory(pc, output_dir), pc.runtime, store.commit)

    results = [store.load(it.scan_id) for it in items]
    order_key = str(pc.anomaly.area.get("order_key", "weighted_area2_sum_mult_diameter_mult_amount"))
    regions, clusters, scans = assemble_tables(results, order_key=order_key)
    _write_parquet(regions, output_dir / "regions.parquet")
    _write_parquet(clusters, output_dir / "clusters.parquet")
    _write_parquet(scans, output_dir / "scans.parquet")

    _render_outputs(output_dir, regions, clusters, scans, pc, run_config or {})
    n_ok = int((scans["status"] == "ok").sum())
    n_failed = len(scans) - n_ok
    log.info(
        "done in %.1f s: %d scan(s) ok, %d failed, %d impurities, %d clusters",
        time.perf_counter() - t0, n_ok, n_failed, len(regions), len(clusters),
    )
    for _, r in scans[scans["status"] != "ok"].iterrows():
        log.error("failed: %s: %s", r["scan_id"], r["error"])
    log.info("outputs: %s", output_dir.resolve())
    report = output_dir / "report" / "index.html"
    if report.exists():
        log.info("report: %s", report.resolve())
    return 0 if n_ok > 0 else 1


def _render_outputs(output_dir: Path, regions, clusters, scans, pc: PipelineConfig, run_config: dict) -> None:
    """Heatmaps per scan and the HTML report (never fatal for the tables already written)."""
    import tifffile

    from data import read_scan

    from ..reporting import ReportConfig, heatmap_relpath, save_heatmap, score_settings, write_report

    rc = ReportConfig.from_mapping(pc.report)
    for _, row in scans[scans["status"] == "ok"].iterrows():
        sid = row["scan_id"]
        try:
            pixels = read_scan(row["path"]).pixels
            lab_file = labels_path(output_dir, sid)
            labels = tifffile.imread(lab_file) if lab_file.exists() else None
            reg = regions[regions["scan_id"] == sid] if len(regions) else regions
            clu = clusters[clusters["scan_id"] == sid] if len(clusters) else clusters
            save_heatmap(
                output_dir / heatmap_relpath(sid), pixels, reg, score=rc.score, cmap=rc.cmap,
                max_side=rc.max_side, labels=labels, clusters=clu, title=f"{sid}: {rc.score}",
                settings=score_settings(run_config, rc.score),
            )
        except Exception as exc:  # a picture must not lose the tables
            log.warning("heatmap for %s failed: %s: %s", sid, type(exc).__name__, exc)
    if rc.html:
        try:
            write_report(output_dir, **rc.as_kwargs())
        except Exception as exc:
            log.warning("report failed: %s: %s", type(exc).__name__, exc)
