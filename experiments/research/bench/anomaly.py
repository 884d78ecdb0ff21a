"""Benchmark ``bench_anomaly``: mask -> impurities -> spatial + circle scores, fast vs naive.

1. Real masks (``data/samples/large_masks``): wall time (median of
   ``repeats``) and ``tracemalloc`` peak of each stage of the fast path
   (``regions_from_mask``, the ``spatial`` and ``circle`` scorers; the chain
   time is the sum of the stage medians), next to one run of the naive prior-art loops
   (:mod:`experiments.research.bench.naive_mlography`); the speed-up ratio, and the
   agreement of both versions' scores (impurities matched by box and area).
2. A synthetic mask with about 100k impurities (seeded jittered grid of small
   ellipses plus a few large blobs): the same fast chain, with the spatial
   stage's time and memory (``tracemalloc`` peak; growth of ``ru_maxrss``).
3. The spatial search in process vs on Ray (``experiments.pipeline.spatial_ray``) at a
   few sizes (subsets of the synthetic impurities), Ray start-up excluded and
   reported apart, one warm-up call first.
4. The naive pair loop's ``O(n^2)`` scaling measured at a few sizes on the
   synthetic impurities and extrapolated (stated as such) to the real and
   synthetic sizes.

Timings are taken with BLAS/OpenMP/OpenCV limited to one thread (except the
Ray runs); the machine's load average is recorded beside them because the
development machine is shared.  Writes ``bench_anomaly.json`` and
``bench_anomaly.md`` into the run folder.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from anomaly import get_scorer
from anomaly._geometry import boxes_of
from anomaly.scorers.circle import CircleConfig
from anomaly.scorers.spatial import SpatialConfig, weighted_kth_nn_scores
from data import regions_from_mask

from experiments.config import dataclass_from
from .naive_mlography import naive_mlography, naive_spatial_raw
from experiments._markdown import markdown_table
from .regions import _mask_files, load_mask, measure, single_thread
from .config import AnomalyBenchConfig

__all__ = ["AnomalyBenchConfig", "run", "synthetic_mask"]

log = logging.getLogger(__name__)




def synthetic_mask(
    shape=(6000, 6000), *, cell: int = 18, seed: int = 0, n_big: int | None = None
) -> np.ndarray:
    """A uint8 mask (255 = impurity) with about ``(rows / cell) * (cols / cell)`` impurities.

    One small ellipse per ``cell`` x ``cell`` grid cell (lognormal semi-axes of
    1 to cell / 2 - 1.5 px, random aspect and angle, jittered inside its cell so
    neighbours never touch), plus ``n_big`` (default: 0.5 % of the cells) large
    ellipses (semi-axes 8 to 40 px) at random places that swallow the small ones
    they cover: a heavy-tailed area distribution like the real scans.
    """
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, np.uint8)
    rows, cols = np.meshgrid(
        np.arange(cell // 2, shape[0] - cell // 2, cell),
        np.arange(cell // 2, shape[1] - cell // 2, cell),
        indexing="ij",
    )
    rows, cols = rows.ravel(), cols.ravel()
    n = rows.size
    major = np.clip(rng.lognormal(np.log(2.2), 0.45, n), 1.0, cell / 2 - 1.5)
    minor = np.maximum(1.0, major * rng.uniform(0.4, 1.0, n))
    angle = rng.uniform(0, 180, n)
    room = np.floor(cell / 2 - 1 - major)
    dr = np.round(rng.uniform(-1, 1, n) * room).astype(int)
    dc = np.round(rng.uniform(-1, 1, n) * room).astype(int)
    for i in range(n):  # drawing only; nothing is measured here
        centre = (int(cols[i] + dc[i]), int(rows[i] + dr[i]))
        cv2.ellipse(mask, centre, (round(major[i]), round(minor[i])), angle[i], 0, 360, 255, -1)
    n_big = int(0.005 * n) if n_big is None else n_big
    for _ in range(n_big):
        a = rng.uniform(8, 40)
        centre = (int(rng.integers(0, shape[1])), int(rng.integers(0, shape[0])))
        axes = (round(a), round(a * rng.uniform(0.3, 1)))
        cv2.ellipse(mask, centre, axes, rng.uniform(0, 180), 0, 360, 255, -1)
    return mask


def _fast_chain(mask: np.ndarray) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    table = regions_from_mask(mask)
    spatial = get_scorer("spatial")(table, SpatialConfig())
    circle = get_scorer("circle")(table, CircleConfig())
    return table, spatial, circle


def _stage_times(mask: np.ndarray, repeats: int, *, warmup: bool = True) -> dict:
    """Median time and tracemalloc peak of each fast stage; the chain time is their sum."""
    table = regions_from_mask(mask) if warmup else None
    regions = measure(lambda: regions_from_mask(mask), repeats=repeats, warmup=False)
    table = regions_from_mask(mask) if table is None else table
    spatial_fn, circle_fn = get_scorer("spatial"), get_scorer("circle")
    spatial = measure(lambda: spatial_fn(table, SpatialConfig()), repeats=repeats, warmup=warmup)
    circle = measure(lambda: circle_fn(table, CircleConfig()), repeats=repeats, warmup=warmup)
    return {
        "impurities": len(table),
        "scored": int((table["area_px"] >= SpatialConfig().min_area_px).sum()),
        "fast_regions_s": regions["median_s"],
        "fast_spatial_s": spatial["median_s"],
        "fast_circle_s": circle["median_s"],
        "fast_total_s": regions["median_s"] + spatial["median_s"] + circle["median_s"],
        "regions_tracemalloc_peak_mb": regions["tracemalloc_peak_mb"],
        "spatial_tracemalloc_peak_mb": spatial["tracemalloc_peak_mb"],
        "spatial_rss_hwm_growth_mb": spatial["rss_hwm_growth_mb"],
        "repeats": repeats,
    }


def _shape(mask: np.ndarray) -> str:
    return f"{mask.shape[0]}x{mask.shape[1]}"


def _agreement(table: pd.DataFrame, spatial, circle, naive) -> dict:
    """Max |fast - naive| per score, impurities matched by (box, area)."""
    fast_key = np.c_[boxes_of(table), table["area_px"].to_numpy()]
    naive_key = np.c_[naive.boxes, naive.areas]
    if fast_key.shape != naive_key.shape:
        return {"matched": False}
    fo = np.lexsort(fast_key.T[::-1])
    no = np.lexsort(naive_key.T[::-1])
    if not np.array_equal(fast_key[fo], naive_key[no]):
        return {"matched": False}
    return {
        "matched": True,
        "spatial_max_abs_diff": float(np.max(np.abs(spatial[fo] - naive.spatial[no]), initial=0.0)),
        "circle_max_abs_diff": float(np.max(np.abs(circle[fo] - naive.circle[no]), initial=0.0)),
    }


def _real_masks(bc: AnomalyBenchConfig) -> list[dict]:
    rows = []
    for path in _mask_files(bc.masks):
        mask = load_mask(path)
        row = {"mask": path.name, "shape": _shape(mask), **_stage_times(mask, bc.repeats)}
        if bc.naive:
            t0 = time.perf_counter()
            naive = naive_mlography(mask, max_regions=bc.naive_max_regions)
            naive_wall = time.perf_counter() - t0
            row.update({f"naive_{k}_s": v for k, v in naive.timings.items()})
            row["naive_wall_s"] = naive_wall
            row["naive_regions"] = len(naive.areas)
            if bc.naive_max_regions is None:
                row["speedup"] = naive_wall / row["fast_total_s"]
                row["speedup_spatial"] = naive.timings["spatial"] / row["fast_spatial_s"]
                table, spatial, circle = _fast_chain(mask)
                row.update(_agreement(table, spatial, circle, naive))
            row["meets_speedup_target"] = bool(row.get("speedup", 0) >= bc.target_speedup)
        log.info("%s", row)
        rows.append(row)
    return rows


def _synthetic(bc: AnomalyBenchConfig) -> tuple[dict, pd.DataFrame]:
    t0 = time.perf_counter()
    mask = synthetic_mask(tuple(bc.synthetic_shape), cell=bc.synthetic_cell, seed=bc.synthetic_seed)
    log.info("synthetic mask %s made in %.1f s", mask.shape, time.perf_counter() - t0)
    repeats = max(1, min(3, bc.repeats))
    row = {"mask": "synthetic", "shape": _shape(mask), **_stage_times(mask, repeats, warmup=False)}
    row["meets_spatial_target"] = bool(
        row["fast_spatial_s"] < bc.target_spatial_100k_s
        and row["spatial_tracemalloc_peak_mb"] < bc.target_spatial_100k_mb
    )
    log.info("%s", row)
    return row, regions_from_mask(mask)


def _ray_vs_serial(bc: AnomalyBenchConfig, table: pd.DataFrame) -> tuple[list[dict], dict]:
    import ray

    from experiments.pipeline.spatial_ray import ray_map_rows

    keep = table["area_px"].to_numpy() >= SpatialConfig().min_area_px
    boxes, areas = boxes_of(table)[keep], table["area_px"].to_numpy(dtype=np.float64)[keep]
    cpus = bc.ray_num_cpus or os.cpu_count() or 1
    t0 = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    info = {"ray_num_cpus": cpus, "ray_init_s": time.perf_counter() - t0}
    rows = []
    try:
        sizes = sorted({min(int(s), len(areas)) for s in bc.ray_sizes})
        for n in sizes:
            b, a = boxes[:n], areas[:n]
            chunk = max(256, math.ceil(n / (4 * cpus)))

            def on_ray():
                return weighted_kth_nn_scores(
                    b, a, normalize="none", map_rows=ray_map_rows, chunk_size=chunk
                )

            def serial():
                return weighted_kth_nn_scores(b, a, normalize="none")

            t0 = time.perf_counter()
            ray_raw = on_ray()  # warm-up: starts the workers
            first = time.perf_counter() - t0
            ray_times = [_timed(on_ray) for _ in range(3)]
            with single_thread():
                serial_raw = serial()
                serial_times = [_timed(serial) for _ in range(3)]
            row = {
                "impurities": n,
                "serial_s": statistics.median(serial_times),
                "ray_s": statistics.median(ray_times),
                "ray_first_call_s": first,
                "ray_chunk_size": chunk,
                "same_result": bool(np.array_equal(serial_raw, ray_raw)),
            }
            row["ray_speedup"] = row["serial_s"] / row["ray_s"]
            log.info("%s", row)
            rows.append(row)
    finally:
        ray.shutdown()
    return rows, info


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _naive_scaling(bc: AnomalyBenchConfig, table: pd.DataFrame, extrapolate_to: dict) -> dict:
    keep = table["area_px"].to_numpy() >= SpatialConfig().min_area_px
    boxes, areas = boxes_of(table)[keep], table["area_px"].to_numpy(dtype=np.float64)[keep]
    points = []
    for n in bc.naive_scaling_sizes:
        n = min(int(n), len(areas))
        t = _timed(lambda: naive_spatial_raw(boxes[:n], areas[:n], list(range(n)), 50))
        points.append({"impurities": n, "naive_spatial_s": t, "s_per_n2": t / n**2})
    c = statistics.median(p["s_per_n2"] for p in points)
    return {
        "measured": points,
        "model": "t = c * n^2 (median c of the measured sizes)",
        "c": c,
        "extrapolated_s": {name: c * n**2 for name, n in extrapolate_to.items()},
    }


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``bench_anomaly``."""
    options = OmegaConf.to_container(cfg.get("bench", {}) or {})
    bc = dataclass_from(AnomalyBenchConfig, options, where="bench")
    output_dir = Path(output_dir)
    result: dict = {
        "benchmark": "bench_anomaly",
        "config": asdict(bc),
        "spatial_config": asdict(SpatialConfig()),
    }
    result["loadavg_start"] = os.getloadavg()
    with single_thread():
        real = _real_masks(bc)
        result["real_masks"] = real
        synth_table = None
        if bc.synthetic:
            synth, synth_table = _synthetic(bc)
            result["synthetic"] = synth
            sizes = {r["mask"]: r["scored"] for r in real}
            sizes["synthetic"] = synth["scored"]
            result["naive_spatial_scaling"] = _naive_scaling(bc, synth_table, sizes)
    if bc.ray and synth_table is not None:
        result["ray"], info = _ray_vs_serial(bc, synth_table)
        result.update(info)
    result["loadavg_end"] = os.getloadavg()

    (output_dir / "bench_anomaly.json").write_text(json.dumps(result, indent=2, default=float))
    load = f"{result['loadavg_start'][0]:.2f} -> {result['loadavg_end'][0]:.2f}"
    md = [f"# bench_anomaly (load average {load} on {os.cpu_count()} cores)", ""]
    md += ["## mask -> regions -> spatial + circle: fast (one thread) vs naive", "", markdown_table(
        real + ([result["synthetic"]] if "synthetic" in result else []),
        ["mask", "shape", "impurities", "scored", "fast_regions_s", "fast_spatial_s",
         "fast_circle_s", "fast_total_s", "regions_tracemalloc_peak_mb",
         "spatial_tracemalloc_peak_mb", "naive_wall_s",
         "speedup", "speedup_spatial", "spatial_max_abs_diff", "circle_max_abs_diff"],
    ), ""]
    if "naive_spatial_scaling" in result:
        sc = result["naive_spatial_scaling"]
        md += ["## naive spatial pair loop: measured, and extrapolated as c * n^2", "",
               markdown_table(sc["measured"]), "",
               markdown_table([{"scored impurities of": k, "extrapolated naive spatial s": v}
                               for k, v in sc["extrapolated_s"].items()]), ""]
    if "ray" in result:
        md += [f"## spatial search: in process vs Ray ({result['ray_num_cpus']} CPUs, "
               f"ray.init {result['ray_init_s']:.1f} s not included)", "",
               markdown_table(result["ray"]), ""]
    text = "\n".join(md)
    (output_dir / "bench_anomaly.md").write_text(text)
    log.info("\n%s", text)
    return 0
