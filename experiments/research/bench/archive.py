"""Benchmark ``bench_archive``: whole archive runs on Ray, wall clock from start to exit.

1. **Scaling with workers**: ``n_real`` real impurity masks (the dev data's large-scan masks,
   ``paths.mlography/impurity_scan_masks``; the bundled large masks replicated when that folder is
   absent) run as a user runs them, ``python -m experiments.run +exp=archive data.kind=mask
   runtime.num_workers=W`` in a fresh process, report included, for each ``W`` in ``workers``.
   The speed-up is the ratio of those wall clocks (process start to exit), each the median of
   ``repeats`` runs made in interleaved rounds.
2. **Driver load**: ``small_counts`` archives of small masks (256 x 256 crops of the bundled real
   masks, seeded) on ``small_workers`` workers: wall clock, the driver's own time per scan (writing
   each scan's files, its checkpoint and its rows: ``.quantmet/run_stats.json``) and the driver's
   peak RSS, fitted linearly in the number of scans and projected to ``project_scans``.

Writes ``bench_archive.json`` and ``bench_archive.md`` into the task's output folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from experiments._markdown import markdown_table
from experiments.config import REPO_ROOT, SAMPLES_DIR, dataclass_from
from experiments.layout import RunLayout
from .config import ArchiveBenchConfig

log = logging.getLogger(__name__)


def _real_masks(root: str, n: int, dest: Path, *, pattern: str = "*.png",
                fallback: str = "large_masks") -> tuple[Path, str]:
    """``n`` real masks (or scans) in ``dest``: links to the dev data, else to the bundled ones; beyond the
    files there are, mirror images of them (a run reads identical files once)."""
    src = sorted(Path(root).glob(pattern)) if root and Path(root).is_dir() else []
    origin = str(root)
    if not src:
        src = sorted((SAMPLES_DIR / fallback).glob(pattern))
        origin = f"data/samples/{fallback} (replicated)"
    dest.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        f = src[i % len(src)]
        target = dest / (f.name if len(src) >= n else f"{f.stem}-{i:03d}{f.suffix}")
        if target.exists():
            continue
        flip = (i // len(src)) % 4  # a run skips inputs it has seen (same content): repeats are mirrored
        if flip == 0:
            os.symlink(f.resolve(), target)
        else:
            img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
            img = cv2.flip(img, {1: 1, 2: 0, 3: -1}[flip])
            cv2.imwrite(str(target), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if n > 4 * len(src):
        log.warning("only %d distinct inputs (4 mirror images of %d files) for n=%d", 4 * len(src), len(src), n)
    return dest, origin


def _small_masks(n: int, dest: Path, *, side: int = 256, seed: int = 0) -> Path:
    """``n`` crops of the bundled real masks (``side`` x ``side``, seeded positions)."""
    masks = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted((SAMPLES_DIR / "large_masks").glob("*.png"))]
    rng = np.random.default_rng(seed)
    dest.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        m = masks[i % len(masks)]
        r, c = rng.integers(0, m.shape[0] - side), rng.integers(0, m.shape[1] - side)
        cv2.imwrite(str(dest / f"crop-{i:05d}.png"), m[r : r + side, c : c + side])
    return dest


def _run(input_dir: Path, workers: int, out: Path, extra: list[str], *, kind: str = "mask") -> dict:
    """One archive run in a fresh process; wall clock from start to exit, and its run_stats."""
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "experiments.run", "+exp=archive", f"data.input={input_dir}", f"data.kind={kind}",
           f"runtime.num_workers={workers}", f"hydra.run.dir={out}", *extra]
    env = {**os.environ, "QUANTMET_NO_PROGRESS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"archive run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    stats = json.loads(RunLayout(out).run_stats.read_text())
    scans = pd.read_parquet(RunLayout(out).scans, columns=["status", "worker_pid", "peak_rss_mb"])
    return {
        "workers": workers,
        "scans": len(scans),
        "failed": int((scans["status"] != "ok").sum()),
        "wall_s": round(wall, 2),
        "scans_per_min": round(60 * len(scans) / wall, 1),
        "ray_init_s": round(float(stats.get("workers_ray_init_s", float("nan"))), 2),
        "worker_startup_s": round(float(stats.get("workers_startup_s", float("nan"))), 2),
        # the scans themselves: the stage less starting Ray and the workers
        "scans_s": round(float(stats["workers_stage_s"] - stats.get("workers_ray_init_s", 0.0)
                               - stats.get("workers_startup_s", 0.0)), 2),
        "driver_per_scan_ms": round(1000 * stats["driver_per_result_s"] / max(1, len(scans)), 2),
        "rank_s": round(stats["rank_s"], 2),
        "report_s": round(stats["report_s"], 2),
        "driver_peak_rss_mb": round(stats["driver_peak_rss_mb"], 1),
        "peak_rss_mb_per_worker": round(float(scans.groupby("worker_pid")["peak_rss_mb"].max().max()), 1),
        "segmentation_backends": ",".join(sorted(set((stats.get("segmentation_backends") or {}).values()))),
    }


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``bench_archive``."""
    bc = dataclass_from(ArchiveBenchConfig, OmegaConf.to_container(cfg.get("bench", {}), resolve=True), where="bench")
    output_dir = Path(output_dir)
    work = output_dir / "work"
    results: list[dict] = []
    extra = list(bc.extra_overrides)

    real, origin = _real_masks(bc.real_masks, bc.n_real, work / "real") if bc.n_real else (None, "skipped (bench.n_real=0)")
    rounds: dict[int, list[dict]] = {int(w): [] for w in bc.workers} if bc.n_real else {}
    for i in range(max(1, bc.repeats) if rounds else 0):  # interleaved, so a slow spell of the machine hits both
        for w in rounds:
            res = _run(real, w, work / f"real-{w}", extra)
            log.info("%d real masks, round %d: %s", bc.n_real, i + 1, res)
            rounds[w].append(res)
    for w, runs in rounds.items():  # the run with the median wall clock, and every wall clock
        runs = sorted(runs, key=lambda r: r["wall_s"])
        results.append({"case": f"{bc.n_real} real masks", **runs[len(runs) // 2],
                        "wall_s_runs": ", ".join(f"{r['wall_s']:.1f}" for r in runs)})
    if bc.n_raw:  # raw scans through both U-Nets, 1 vs 2 workers (interleaved rounds)
        raw, raw_origin = _real_masks(bc.raw_scans, bc.n_raw, work / "raw", pattern="*.jpg", fallback="scans")
        summary_raw = {"raw_scans_from": raw_origin}
        raw_rounds: dict[int, list[dict]] = {int(w): [] for w in bc.raw_workers}
        for i in range(bc.raw_repeats):
            for w in raw_rounds:
                res = _run(raw, w, work / f"raw-{w}", extra + list(bc.raw_overrides), kind="scan")
                log.info("%d raw scans, round %d: %s", bc.n_raw, i + 1, res)
                raw_rounds[w].append(res)
        for w, runs in raw_rounds.items():
            runs = sorted(runs, key=lambda r: r["wall_s"])
            results.append({"case": f"{bc.n_raw} raw scans", **runs[len(runs) // 2],
                            "wall_s_runs": ", ".join(f"{r['wall_s']:.1f}" for r in runs)})
    else:
        summary_raw = {}
    for n in bc.small_counts:
        small = _small_masks(int(n), work / f"small-{n}")
        res = {"case": f"{n} small masks", **_run(small, bc.small_workers, work / f"small-{n}-run", extra)}
        log.info("%s", res)
        results.append(res)
        shutil.rmtree(small, ignore_errors=True)
    table = pd.DataFrame(results)
    summary: dict = {"real_masks_from": origin, **summary_raw}
    table["speedup_wall"] = np.nan
    table["speedup_scans"] = np.nan
    for case in (f"{bc.n_real} real masks", f"{bc.n_raw} raw scans"):
        sel = table["case"] == case
        one = table[sel & (table["workers"] == 1)]
        if len(one):  # against the 1-worker run: the whole process, and the scan stage alone
            table.loc[sel, "speedup_wall"] = (float(one["wall_s"].iloc[0]) / table.loc[sel, "wall_s"]).round(2)
            table.loc[sel, "speedup_scans"] = (float(one["scans_s"].iloc[0]) / table.loc[sel, "scans_s"]).round(2)
    small = table[table["case"].str.endswith("small masks")].copy()
    if len(small) >= 2:
        n = small["scans"].to_numpy(dtype=float)
        for col in ("driver_peak_rss_mb", "wall_s"):
            y = small[col].to_numpy(dtype=float)
            slope, icpt = np.polyfit(n, y, 1)
            summary[f"{col}_per_scan"] = slope
            summary[f"{col}_at_{bc.project_scans}"] = icpt + slope * bc.project_scans
            # the slope between the two largest archives: the driver's row buffers are full by then
            # (they are capped), so this is the growth that goes on
            i, j = np.argsort(n)[-2:]
            tail = (y[j] - y[i]) / (n[j] - n[i])
            summary[f"{col}_per_scan_last_two"] = tail
            summary[f"{col}_at_{bc.project_scans}_from_last_two"] = y[j] + tail * (bc.project_scans - n[j])
        summary["driver_ms_per_scan_mean"] = float(small["driver_per_scan_ms"].mean())
        summary[f"driver_s_at_{bc.project_scans}"] = summary["driver_ms_per_scan_mean"] * bc.project_scans / 1000
    out = {"results": table.to_dict(orient="records"), "summary": summary, "load_avg": os.getloadavg()}
    (output_dir / "bench_archive.json").write_text(json.dumps(out, indent=2, default=float))
    md = markdown_table(table) + "\n\n" + "\n".join(f"- {k}: {v:.4g}" if isinstance(v, float) else f"- {k}: {v}"
                                                     for k, v in summary.items())
    (output_dir / "bench_archive.md").write_text(md + "\n")
    log.info("\n%s", md)
    if not bc.keep_runs:
        shutil.rmtree(work, ignore_errors=True)
    return 0
