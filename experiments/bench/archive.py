"""Benchmark ``bench_archive``: archive throughput with 1 and 2 Ray workers, masks and raw scans.

Builds a temporary archive by replicating the bundled real files (large impurity
masks for the mask pipeline, raw micrographs for the scan pipeline), then times
the per-scan stage phase (Ray start-up excluded and reported separately) with
``runtime.num_workers`` = 1 and 2, and reads each worker's peak RSS from
``scans.parquet``'s ``peak_rss_mb`` column.  ``wall_s`` includes the workers' start-up
(``worker_startup_s``: process start, imports and model loading, once per worker);
``scan_phase_s`` and ``scans_per_min`` are the steady state after it.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from data import discover_inputs

from .._markdown import markdown_table
from ..config import SAMPLES_DIR, dataclass_from, pipeline_config
from ..pipeline.runners import StageFactory, run_stage
from .config import ArchiveBenchConfig

log = logging.getLogger(__name__)




def _replicate(src: list[Path], copies: int, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for i in range(copies):
        for f in src:
            shutil.copy(f, dest / f"{f.stem}-copy{i}{f.suffix}")
    return dest


def _measure(pc, items, workers: int, out: Path) -> dict:
    import ray

    runtime = replace(pc.runtime, mode="ray", num_workers=workers)
    t0 = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    t_init = time.perf_counter() - t0
    rows = []
    try:
        t1 = time.perf_counter()
        stats = run_stage(items, StageFactory(replace(pc, runtime=runtime), out), runtime,
                          lambda r: rows.append(r.row))
        wall = time.perf_counter() - t1
    finally:
        ray.shutdown()
    scans = pd.DataFrame(rows)
    per_worker = scans.groupby("worker_pid")["peak_rss_mb"].max()
    return {
        "workers": workers,
        "scans": len(items),
        "failed": int((scans["status"] != "ok").sum()),
        "ray_init_s": round(t_init, 2),
        "worker_startup_s": round(stats["startup_s"], 2),
        "wall_s": round(wall, 2),
        "scan_phase_s": round(wall - stats["startup_s"], 2),
        "scans_per_min": round(60 * len(items) / (wall - stats["startup_s"]), 1),
        "peak_rss_mb_per_worker": round(float(per_worker.max()), 1),
    }


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``bench_archive``."""
    bc = dataclass_from(ArchiveBenchConfig, OmegaConf.to_container(cfg.get("bench", {})), where="bench")
    output_dir = Path(output_dir)
    work = output_dir / "archive"
    results = []
    cases = {
        "mask": (sorted((SAMPLES_DIR / "large_masks").glob("*.png")), bc.copies_masks),
        "scan": (sorted((SAMPLES_DIR / "scans").glob("*.jpg")), bc.copies_scans),
    }
    base = pipeline_config(cfg)
    for kind, (files, copies) in cases.items():
        folder = _replicate(files, copies, work / kind)
        pc = replace(base, data=replace(base.data, kind=kind, input=str(folder)))
        items = discover_inputs(folder)
        for w in bc.workers:
            res = {"pipeline": kind, **_measure(pc, items, int(w), output_dir / f"run-{kind}-{w}")}
            log.info("%s", res)
            results.append(res)
    table = pd.DataFrame(results)
    for kind in cases:
        sub = table[table.pipeline == kind].set_index("workers")
        if 1 in sub.index:
            sel = table.pipeline == kind
            table.loc[sel, "speedup_wall"] = (sub.loc[1, "wall_s"] / table.loc[sel, "wall_s"]).round(2).to_numpy()
            table.loc[sel, "speedup_scan_phase"] = (
                sub.loc[1, "scan_phase_s"] / table.loc[sel, "scan_phase_s"]).round(2).to_numpy()
    (output_dir / "bench_archive.json").write_text(json.dumps(table.to_dict(orient="records"), indent=2))
    md = markdown_table(table)
    (output_dir / "bench_archive.md").write_text(md + "\n")
    log.info("\n%s", md)
    shutil.rmtree(work, ignore_errors=True)
    return 0
