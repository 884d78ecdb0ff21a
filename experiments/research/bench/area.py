"""Benchmark ``bench_area``: fast market clustering vs the naive rescanning market.

:func:`measure_area` builds a synthetic scan of ``n_scored`` impurities, all
scored (the worst case: every impurity takes part), at the impurity density
of the bundled large masks (about 2.85e-4 impurities per px^2: 2470 in
2590 x 3349 px), box sides log-normal (median about 3 px) and scores
Beta(0.6, 3) (mostly small, a long tail).  It times
:func:`anomaly.market.market_clustering` (market + cluster measures, median of
``repeats`` after a warm-up) and the naive market
(:func:`experiments.research.bench.naive_market.naive_market_assign`, ``O(n^2)`` per
move) on a smaller scan of ``naive_n`` impurities when ``n_scored`` is too
large for it, where the fast market is timed too: the speed-up is measured on
the same input, and the two results are checked to be identical.

The task (``python -m experiments.run +exp=bench_area``) runs it for each
``price_from`` option, a size sweep of the fast market, and the bundled large
masks scored with the default combined score (spatial x circle), and writes
``bench_area.json`` and ``bench_area.md`` into the run folder.  Other
benchmarks (``bench_anomaly``) may call :func:`measure_area`.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from anomaly.market import MarketConfig, market_assign, market_clustering

from experiments._markdown import markdown_table
from experiments.config import SAMPLES_DIR, dataclass_from
from .naive_market import naive_market_assign
from .config import AreaBenchConfig

__all__ = ["AreaBenchConfig", "synthetic_scan", "measure_area", "measure_mask", "run"]

log = logging.getLogger(__name__)

#: Impurities per px^2 of the bundled large masks (scan4tag-19: 2470 in 2590 x 3349 px).
REAL_DENSITY = 2.85e-4




def synthetic_scan(
    n: int, seed: int = 0, *, density: float = REAL_DENSITY
) -> tuple[pd.DataFrame, np.ndarray]:
    """A RegionTable-like frame of ``n`` random boxes at ``density`` per px^2, and scores in (0, 1].

    Returns
    -------
    table : DataFrame, shape (n, 6)
        ``region_id`` (1..n), inclusive ``bbox_*``, ``area_px``.
    scores : ndarray, shape (n,)
        Beta(0.6, 3) draws clipped to [1e-6, 1] (every impurity takes part).
    """
    rng = np.random.default_rng(seed)
    side = float(np.sqrt(n / density))
    r = np.floor(rng.uniform(0, side, n)).astype(np.int64)
    c = np.floor(rng.uniform(0, side, n)).astype(np.int64)
    h = np.maximum(1, np.round(np.exp(rng.normal(1.1, 0.7, n)))).astype(np.int64)
    w = np.maximum(1, np.round(np.exp(rng.normal(1.1, 0.7, n)))).astype(np.int64)
    table = pd.DataFrame({
        "region_id": np.arange(1, n + 1, dtype=np.int64),
        "bbox_rmin": r, "bbox_cmin": c, "bbox_rmax": r + h - 1, "bbox_cmax": c + w - 1,
        "area_px": np.maximum(1, np.round(0.75 * h * w)).astype(np.int64),
    })
    scores = np.clip(rng.beta(0.6, 3.0, n), 1e-6, 1.0)
    return table, scores


def _boxes(table: pd.DataFrame) -> np.ndarray:
    return table[["bbox_rmin", "bbox_cmin", "bbox_rmax", "bbox_cmax"]].to_numpy(dtype=np.float64)


def _median_time(fn, repeats: int) -> tuple[float, Any]:
    out = fn()  # warm-up (and the result)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _compare(table: pd.DataFrame, scores: np.ndarray, cfg: MarketConfig, repeats: int) -> dict:
    """Fast (median) vs naive (one run) on the same input; identical results?"""
    b, rid = _boxes(table), table["region_id"].to_numpy()
    fast_s, fast = _median_time(lambda: market_assign(b, scores, rid, cfg), repeats)
    t0 = time.perf_counter()
    slow = naive_market_assign(b, scores, rid, cfg)
    naive_s = time.perf_counter() - t0
    same = (np.array_equal(fast.labels, slow.labels)
            and np.array_equal(fast.wallets, slow.wallets, equal_nan=True) and fast[3:] == slow[3:])
    speedup = naive_s / fast_s if fast_s > 0 else None
    return {"fast_assign_s": fast_s, "naive_s": naive_s, "speedup": speedup,
            "identical": bool(same)}


def measure_area(
    n_scored: int = 5000,
    seed: int = 0,
    *,
    naive_n: int = 1000,
    repeats: int = 3,
    n_clusters: int = 10,
    price_from: str = "members",
    target_s: float = 2.0,
) -> dict:
    """Fast market on ``n_scored`` synthetic impurities, naive one on ``min(n_scored, naive_n)``.

    Returns a flat dict: ``fast_s`` (market_clustering, median), ``fast_assign_s`` (market only),
    the moves made, ``naive_n``, ``naive_s``, ``fast_at_naive_n_s``, ``speedup_at_naive_n``,
    ``identical_at_naive_n`` and ``meets_target`` (``fast_s < target_s``).
    """
    cfg = MarketConfig(n_clusters=n_clusters, price_from=price_from)
    table, scores = synthetic_scan(n_scored, seed)
    b, rid = _boxes(table), table["region_id"].to_numpy()
    fast_s, (_, clusters) = _median_time(lambda: market_clustering(table, scores, cfg), repeats)
    assign_s, res = _median_time(lambda: market_assign(b, scores, rid, cfg), repeats)
    nn = min(n_scored, naive_n)
    small = (table, scores) if nn == n_scored else synthetic_scan(nn, seed)
    cmp = _compare(*small, cfg, repeats)
    out = {
        "input": "synthetic",
        "price_from": price_from,
        "n_clusters": n_clusters,
        "n_scored": n_scored,
        "seed": seed,
        "fast_s": fast_s,
        "fast_assign_s": assign_s,
        "purchases": res.n_purchases,
        "rebuys": res.n_rebuys,
        "merges": res.n_merges,
        "clusters_out": len(clusters),
        "largest_cluster": int(clusters["n_regions"].max()) if len(clusters) else 0,
        "naive_n": nn,
        "naive_s": cmp["naive_s"],
        "fast_at_naive_n_s": cmp["fast_assign_s"],
        "speedup_at_naive_n": cmp["speedup"],
        "identical_at_naive_n": cmp["identical"],
        "target_s": target_s,
        "meets_target": bool(fast_s < target_s),
    }
    log.info("bench_area %s", out)
    return out


def measure_mask(
    path: Path, *, repeats: int = 3, n_clusters: int = 10, price_from: str = "members"
) -> dict:
    """Fast vs naive market on a real impurity mask scored with the default combined score."""
    from anomaly import get_scorer
    from anomaly.combine import CombineConfig, combine_table
    from data import regions_from_mask

    from .regions import load_mask

    table = regions_from_mask(load_mask(path))
    ccfg = CombineConfig()
    for name in ccfg.inputs:
        spec = get_scorer(name)
        table[spec.column] = spec(table)
    scores = combine_table(table, ccfg)
    cfg = MarketConfig(n_clusters=n_clusters, price_from=price_from)
    fast_s, (_, clusters) = _median_time(lambda: market_clustering(table, scores, cfg), repeats)
    cmp = _compare(table, scores, cfg, repeats)
    out = {
        "input": Path(path).name,
        "price_from": price_from,
        "impurities": len(table),
        "n_scored": int(np.count_nonzero(scores > 0)),
        "fast_s": fast_s,
        "fast_assign_s": cmp["fast_assign_s"],
        "naive_s": cmp["naive_s"],
        "speedup": cmp["speedup"],
        "identical": cmp["identical"],
        "clusters_out": len(clusters),
        "largest_cluster": int(clusters["n_regions"].max()) if len(clusters) else 0,
        "largest_diameter_px": float(clusters["diameter"].max()) if len(clusters) else 0.0,
    }
    log.info("bench_area %s", out)
    return out


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``bench_area``."""
    options = OmegaConf.to_container(cfg.get("bench", {}) or {})
    bc = dataclass_from(AreaBenchConfig, options, where="bench")
    output_dir = Path(output_dir)
    main = [
        measure_area(bc.n_scored, bc.seed, naive_n=bc.naive_n, repeats=bc.repeats,
                     n_clusters=bc.n_clusters, price_from=p, target_s=bc.target_s)
        for p in bc.price_from
    ]
    sweep = []
    for p in bc.price_from:
        mcfg = MarketConfig(n_clusters=bc.n_clusters, price_from=p)
        for n in bc.sizes:
            table, scores = synthetic_scan(n, bc.seed)
            t, _ = _median_time(lambda: market_clustering(table, scores, mcfg), bc.repeats)
            sweep.append({"price_from": p, "n_scored": n, "fast_s": t})
            log.info("bench_area sweep %s", sweep[-1])
    real = []
    if bc.masks:
        folder = Path(bc.masks) if Path(bc.masks).is_absolute() else SAMPLES_DIR / bc.masks
        for path in sorted(folder.glob("*.png")):
            for p in bc.price_from:
                real.append(measure_mask(path, repeats=bc.repeats, n_clusters=bc.n_clusters,
                                         price_from=p))
    result = {"benchmark": "bench_area", "config": options, "synthetic": main, "sweep": sweep,
              "masks": real}
    (output_dir / "bench_area.json").write_text(json.dumps(result, indent=2))
    md = (f"# Market clustering: fast vs naive (median of {bc.repeats})\n\n"
          f"## Synthetic, all impurities scored\n\n{markdown_table(main)}\n\n"
          f"## Fast market, size sweep\n\n{markdown_table(sweep)}\n\n"
          f"## Bundled masks, default combined score\n\n"
          f"{markdown_table(real) if real else '(skipped)'}\n")
    (output_dir / "bench_area.md").write_text(md)
    log.info("bench_area:\n%s", md)
    ok = all(r["identical_at_naive_n"] for r in main) and all(r["identical"] for r in real)
    if not ok:
        log.error("fast and naive markets disagree")
    return 0 if ok else 1
