"""Benchmark ``bench_process``: one large mask with the ``mlography`` preset, whole process vs the prior art.

Side by side on the same file:

- **quantmet**: ``python -m experiments.run +exp=mlography data.input=FILE`` in a fresh process, wall
  clock from start to exit (imports, configuration, the run, tables, heatmap, report), median of
  ``repeats`` (after one untimed run that fills the bytecode cache, as an installed package has it);
  each timed run also reports its phases (:func:`experiments._startup.write_phases`): interpreter
  start, app imports, Hydra (compose, run dir, logging), the task's imports, the task, exit;
- **prior art**: the prior art's algorithm as its research scripts run it, re-implemented loop for
  loop (:mod:`.naive_mlography`: one full-image mask per impurity, ``O(n^2)`` Python pair loops for the
  spatial score, a pure-Python enclosing circle over every pixel; then the market,
  :mod:`.naive_market`, rescanning every move) on the same mask with the same settings.  Only these
  stages are timed (no start-up, no outputs), so the ratio is a lower bound.

Then, once per bench: one ``-X importtime`` run (the top modules by cumulative import time, and the
imports' total, by top-level package), and the CLI's answer times: ``--help``, an unknown preset
(``+exp=nope``) and a bad value (``data.kind=bogus``), each the median of ``repeats``.

The prior art's own scripts do not run today (see DESIGN.md); the naive versions reproduce our
scores (``bench_anomaly``) and clusters (``tests/anomaly/test_area.py``), so both sides compute the
same result.
"""

from __future__ import annotations

import json
import logging
import os
import re
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
from experiments._startup import PHASES_ENV
from experiments.config import REPO_ROOT, SAMPLES_DIR, dataclass_from
from .config import ProcessBenchConfig

log = logging.getLogger(__name__)

#: Consecutive phases of a run (names of :func:`experiments._startup.write_phases` stamps).
_PHASES = (("interpreter_s", "start", "module"), ("app_imports_s", "module", "ready"), ("hydra_s", "ready", "main"),
           ("task_imports_s", "main", "task"), ("task_s", "task", "done"), ("exit_s", "done", "end"))


def _env(bc: ProcessBenchConfig, **extra: str) -> dict:
    env = {**os.environ, "QUANTMET_NO_PROGRESS": "1", **extra}
    if bc.bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "experiments.run", *args]


def _ours(path: Path, bc: ProcessBenchConfig) -> tuple[float, list[float], dict]:
    """Median wall time of the whole process, every run's wall time, the median of each phase."""
    walls, phases = [], {name: [] for name, _, _ in _PHASES}
    for i in range(bc.repeats + 1):  # run 0 fills the bytecode cache (untimed)
        with tempfile.TemporaryDirectory() as d:
            stamps = Path(d) / "phases.json"
            cmd = _cmd("+exp=mlography", f"data.input={path}", f"hydra.run.dir={d}/run", *bc.extra_overrides)
            start = time.time()
            t0 = time.perf_counter()
            r = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, env=_env(bc, **{PHASES_ENV: str(stamps)}))
            wall = time.perf_counter() - t0
            end = time.time()
            if r.returncode != 0:
                raise RuntimeError(f"quantmet run failed ({r.returncode}): {r.stderr[-2000:]}")
            if i == 0:
                continue
            walls.append(wall)
            if stamps.is_file():
                t = {**json.loads(stamps.read_text()), "start": start, "end": end}
                for name, a, b in _PHASES:
                    phases[name].append(t[b] - t[a])
    return statistics.median(walls), walls, {k: round(statistics.median(v), 3) for k, v in phases.items() if v}


def _prior_art(path: Path) -> dict:
    import cv2  # lazy

    from anomaly.market import MarketConfig  # lazy

    from .naive_market import naive_market_assign  # lazy
    from .naive_mlography import naive_mlography  # lazy

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


_IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def parse_importtime(stderr: str, *, top: int = 15) -> dict:
    """Summarise ``python -X importtime`` output.

    Returns
    -------
    dict
        ``total_s`` (sum of the top-level imports' cumulative times), ``modules`` (how many),
        ``top`` (the ``top`` top-level imports by cumulative time: ``module``, ``cumulative_s``) and
        ``packages`` (self time summed by top-level package, largest first, ``top`` of them).
    """
    roots, packages, n = [], {}, 0
    for line in stderr.splitlines():
        m = _IMPORTTIME.match(line)
        if not m:
            continue
        n += 1
        self_us, cum_us, depth, name = int(m.group(1)), int(m.group(2)), len(m.group(3)) // 2, m.group(4)
        pkg = name.split(".")[0]
        packages[pkg] = packages.get(pkg, 0) + self_us
        if depth == 0:
            roots.append((cum_us, name))
    roots.sort(reverse=True)
    pk = sorted(packages.items(), key=lambda kv: -kv[1])[:top]
    return {"total_s": round(sum(c for c, _ in roots) / 1e6, 3), "modules": n,
            "top": [{"module": name, "cumulative_s": round(c / 1e6, 3)} for c, name in roots[:top]],
            "packages": [{"package": p, "self_s": round(s / 1e6, 3)} for p, s in pk]}


def _importtime(path: Path, bc: ProcessBenchConfig) -> dict:
    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, "-X", "importtime", *_cmd("+exp=mlography", f"data.input={path}", f"hydra.run.dir={d}",
                                                         *bc.extra_overrides)[1:]]
        r = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, env=_env(bc))
    if r.returncode != 0:
        raise RuntimeError(f"quantmet -X importtime run failed ({r.returncode}): {r.stderr[-2000:]}")
    out = parse_importtime(r.stderr, top=bc.import_top)
    heavy = sorted({m for m in ("tensorflow", "keras", "matplotlib", "torch", "jax", "ray")
                    if re.search(rf"\| +{m}(\.|$)", r.stderr, re.M)})
    out["heavy_imported"] = heavy  # none of these belongs in a mask-only run
    return out


#: The CLI answers that must be quick: (name, arguments, expected exit code).
CLI_CHECKS = (("--help", ("--help",), 0), ("unknown preset (+exp=nope)", ("+exp=nope",), 1),
              ("bad value (data.kind=bogus)", ("+exp=mlography", "data.input=x.png", "data.kind=bogus"), 2))


def _cli(bc: ProcessBenchConfig) -> list[dict]:
    rows = []
    for name, args, want in CLI_CHECKS:
        walls = []
        for i in range(bc.repeats + 1):
            with tempfile.TemporaryDirectory() as d:
                t0 = time.perf_counter()
                r = subprocess.run(_cmd(*args, f"hydra.run.dir={d}") if want == 2 else _cmd(*args), cwd=REPO_ROOT,
                                   capture_output=True, text=True, env=_env(bc))
                wall = time.perf_counter() - t0
            if r.returncode != want:
                raise RuntimeError(f"{name}: exit code {r.returncode}, expected {want}: {r.stderr[-1000:]}")
            if i:
                walls.append(wall)
        median = statistics.median(walls)
        rows.append({"command": name, "median_s": round(median, 3), "runs_s": ", ".join(f"{w:.2f}" for w in walls),
                     "meets_target": bool(median < bc.cli_target_s)})
    return rows


def _mask_path(name: str) -> Path:
    p = Path(name)
    if p.is_absolute():
        return p
    return SAMPLES_DIR / p if (SAMPLES_DIR / p).exists() else REPO_ROOT / p


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``bench_process``."""
    bc = dataclass_from(ProcessBenchConfig, OmegaConf.to_container(cfg.get("bench", {}), resolve=True), where="bench")
    output_dir = Path(output_dir)
    load_start = os.getloadavg()
    rows, skipped, used = [], [], []
    for name in bc.masks:
        path = _mask_path(str(name))
        if not path.is_file():
            if not bc.skip_missing:
                raise FileNotFoundError(f"bench.masks: {path} not found")
            log.warning("bench_process: %s not found, skipped", path)
            skipped.append(str(path))
            continue
        used.append(path)
        median, walls, phases = _ours(path, bc)
        row = {"mask": path.name, "quantmet_process_s": round(median, 2),
               "quantmet_runs_s": ", ".join(f"{w:.2f}" for w in walls), **phases}
        if bc.prior_art:
            prior = _prior_art(path)
            row.update({k: (round(v, 2) if isinstance(v, float) else v) for k, v in prior.items()})
            row["speedup_process"] = round(prior["prior_total_s"] / median, 2)
            target = bc.target_speedup_large if prior["impurities"] >= bc.large_components else bc.target_speedup
            row["target_speedup"] = target
            row["meets_target"] = bool(row["speedup_process"] >= target)
        log.info("%s", row)
        rows.append(row)
    out: dict = {"results": rows, "skipped": skipped, "load_avg_start": load_start, "load_avg": os.getloadavg(),
                 "bytecode_cache": bc.bytecode_cache, "repeats": bc.repeats}
    md = [markdown_table(pd.DataFrame(rows))] if rows else []
    if bc.breakdown and rows:
        imports = _importtime(used[0], bc)
        out["imports"] = imports
        md += [f"\nImports (-X importtime, one run): {imports['modules']} modules, {imports['total_s']} s in all; "
               f"heavy stacks imported: {imports['heavy_imported'] or 'none'}\n", markdown_table(imports["top"]),
               "", markdown_table(imports["packages"])]
    if bc.cli_checks:
        out["cli"] = _cli(bc)
        md += ["", markdown_table(out["cli"])]
    out["load_avg_end"] = os.getloadavg()
    (output_dir / "bench_process.json").write_text(json.dumps(out, indent=2, default=float))
    (output_dir / "bench_process.md").write_text("\n".join(md) + "\n")
    log.info("\n%s", "\n".join(md))
    return 0
