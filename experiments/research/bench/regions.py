"""Benchmark ``bench_regions``: binary mask -> RegionTable on the bundled large masks, one core.

Times :func:`data.regions_from_mask` (labelling + the table, split into
:func:`data.label_mask` and :func:`data.regions_from_labels`) on every mask of
``data/samples/large_masks`` (about 3400 x 2600 px, about 2400 impurities),
BLAS/OpenMP/OpenCV limited to one thread, median of ``repeats`` runs after a
warm-up.  Memory: ``tracemalloc`` peak of one extra run (Python and NumPy
allocations made during the call; NumPy reports its buffers to tracemalloc,
OpenCV's internal buffers are not seen) and the growth of the process's
resident-set high-water mark (``resource.getrusage(...).ru_maxrss``) over the
first call (0 when the call stays under an earlier peak).

Writes ``bench_regions.json`` and ``bench_regions.md`` into the run folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from omegaconf import DictConfig, OmegaConf

from data import binarize_mask, label_mask, read_image, regions_from_labels, regions_from_mask

from experiments._markdown import markdown_table
from experiments.config import SAMPLES_DIR, dataclass_from
from .config import RegionsBenchConfig

__all__ = ["RegionsBenchConfig", "run", "measure", "single_thread"]

log = logging.getLogger(__name__)




@contextlib.contextmanager
def single_thread():
    """Limit BLAS/OpenMP pools (threadpoolctl) and OpenCV to one thread inside the block."""
    from threadpoolctl import threadpool_limits

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        cv2.setNumThreads(before)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def measure(fn: Callable[[], Any], *, repeats: int, warmup: bool = True) -> dict:
    """Wall time (median / min of ``repeats``) and memory of ``fn()``; see the module docstring."""
    rss0 = _maxrss_mb()
    if warmup:
        fn()
    rss_delta = _maxrss_mb() - rss0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "repeats": repeats,
        "tracemalloc_peak_mb": peak / 2**20,
        "rss_hwm_growth_mb": rss_delta,
    }


def _mask_files(spec: str) -> list[Path]:
    folder = Path(spec) if Path(spec).is_absolute() else SAMPLES_DIR / spec
    files = sorted(folder.glob("*.png"))
    if not files:
        raise FileNotFoundError(f"no .png masks in {folder}")
    return files


def load_mask(path: Path) -> np.ndarray:
    """Boolean impurity mask of a bundled mask PNG (255 = impurity)."""
    pixels, _ = read_image(path)
    return binarize_mask(pixels, polarity="white")


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``bench_regions``."""
    options = OmegaConf.to_container(cfg.get("bench", {}) or {})
    bc = dataclass_from(RegionsBenchConfig, options, where="bench")
    output_dir = Path(output_dir)
    rows = []
    load_start = os.getloadavg()
    with single_thread():
        for path in _mask_files(bc.masks):
            mask = load_mask(path)
            table = regions_from_mask(mask)
            labels, _ = label_mask(mask)
            full = measure(lambda: regions_from_mask(mask), repeats=bc.repeats)
            lab = measure(lambda: label_mask(mask), repeats=bc.repeats, warmup=False)
            tab = measure(lambda: regions_from_labels(labels), repeats=bc.repeats, warmup=False)
            row = {
                "mask": path.name,
                "shape": f"{mask.shape[0]}x{mask.shape[1]}",
                "impurities": len(table),
                "median_s": full["median_s"],
                "min_s": full["min_s"],
                "label_s": lab["median_s"],
                "table_s": tab["median_s"],
                "tracemalloc_peak_mb": full["tracemalloc_peak_mb"],
                "rss_hwm_growth_mb": full["rss_hwm_growth_mb"],
                "target_s": bc.target_s,
                "meets_target": bool(full["median_s"] < bc.target_s),
            }
            log.info("%s", row)
            rows.append(row)
    result = {
        "benchmark": "bench_regions",
        "threads": 1,
        "repeats": bc.repeats,
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "results": rows,
    }
    (output_dir / "bench_regions.json").write_text(json.dumps(result, indent=2))
    md = markdown_table(rows)
    load = f"{load_start[0]:.2f} -> {result['loadavg_end'][0]:.2f}"
    (output_dir / "bench_regions.md").write_text(
        f"# mask -> RegionTable (one thread, median of {bc.repeats}; "
        f"load average {load} on {os.cpu_count()} cores)\n\n{md}\n"
    )
    log.info("bench_regions (one thread, median of %d):\n%s", bc.repeats, md)
    return 0
