"""Benchmark ``bench_process``: one large mask with the ``mlography`` preset, whole process vs the prior art.

Side by side on the same file:

- **quantmet**: ``python -m experiments.run +exp=mlography data.input=FILE`` in a fresh process, wall
  clock from start to exit (imports, configuration, the run, tables, heatmap, report), median of
  ``repeats``;
- **prior art**: the prior art's algorithm as its research scripts run it, re-implemented loop for
  loop (:mod:`.naive_mlography`: one full-image mask per impurity, ``O(n^2)`` Python pair loops for the
  spatial score, a pure-Python enclosing circle over every pixel; then the market,
  :mod:`.naive_market`, rescanning every move) on the same mask with the same settings.  Only these
  stages are timed (no start-up, no outputs), so the ratio is a lower bound.

The prior art's own scripts do not run today (see DESIGN.md); the naive versions reproduce our
scores (``bench_anomaly``) and clusters (``tests/anomaly/test_area.py``), so both sides compute the
same result.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from experiments._markdown import markdown_table
from experiments.config import REPO_ROOT, SAMPLES_DIR, dataclass_from
from .config import ProcessBenchConfig

log = logging.getLogger(__name__)


def _ours(path: Path, repeats: int, extra: list[str]) -> tuple[float, list[float]]:
    walls = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as d:
            cmd = [sys.executable, "-m", "experiments.run", "+exp=mlography", f"data.input={path}",
                   f"hydra.run.dir={d}", *extra]
            t0 = time.perf_counter()
            r = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True,
                               env={**os.environ, "QUANTMET_NO_PROGRESS": "1"})
            walls.append(time.perf_counter() - t0)
            if r.returncode != 0:
                raise RuntimeError(f"quantmet run failed ({r.returncode}): {r.stderr[-2000:]}")
    return statistics.median(walls), walls


def _prior_art(path: Path) -> dict:
    import cv2

    from anomaly.market import MarketConfig

    from .naive_market import naive_market_assign
    from .naive_mlography import naive_mlography

    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    t0 = time.perf_counter()
    naive = naive_mlography(mask)  # mask -> impurities -> spatial (k = 50) -> circle
    combined = naive.spatial * naive.circle
    hi = combined.max() if combined.size else 0.0
    combined = combined / hi if hi > 0 else combined
    t1 = time.perf_counter()
    # the paper's market (the mlography preset): every scored impurity, no gap limit
    cfg = MarketConfig(n_clusters=10, price_from="members", min_score=0.0, max_gap_px=None)
    naive_market_assign(naive.boxes, combined, np.arange(1, len(combined) + 1), cfg)
    t2 = time.perf_counter()
    return {"impurities": len(naive.areas), "prior_scores_s": t1 - t0, "prior_market_s": t2 - t1,
            "prior_total_s": t2 - t0, **{f"prior_{k}_s": v for k, v in naive.timings.items() if k != "total"}}


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``bench_process``."""
    bc = dataclass_from(ProcessBenchConfig, OmegaConf.to_container(cfg.get("bench", {}), resolve=True), where="bench")
    output_dir = Path(output_dir)
    rows = []
    for name in bc.masks:
        path = Path(name) if Path(name).is_absolute() else SAMPLES_DIR / name
        median, walls = _ours(path, bc.repeats, list(bc.extra_overrides))
        row = {"mask": path.name, "quantmet_process_s": round(median, 2),
               "quantmet_runs_s": ", ".join(f"{w:.2f}" for w in walls)}
        if bc.prior_art:
            prior = _prior_art(path)
            row.update({k: (round(v, 2) if isinstance(v, float) else v) for k, v in prior.items()})
            row["speedup_process"] = round(prior["prior_total_s"] / median, 2)
            row["meets_target"] = bool(row["speedup_process"] >= bc.target_speedup)
        log.info("%s", row)
        rows.append(row)
    table = pd.DataFrame(rows)
    out = {"results": rows, "load_avg": os.getloadavg(), "target_speedup": bc.target_speedup}
    (output_dir / "bench_process.json").write_text(json.dumps(out, indent=2, default=float))
    md = markdown_table(table)
    (output_dir / "bench_process.md").write_text(md + "\n")
    log.info("\n%s", md)
    return 0
