"""Benchmark ``bench_segmentation``: both shipped U-Nets on one ~1330 x 900 scan, on this machine's CPU.

For each model (impurities on the raw scan, grain boundaries on the same
pixels: only the speed is measured here) the whole public predict function is
timed (normalisation, tiled inference, blending, threshold / thinning):
median of ``repeats`` runs after a warm-up call (which also loads the model),
in seconds per scan and Mpx/s.

The prior art's scheme is timed with the same model: 128 x 128 tiles at
stride 16, one tile per ``predict`` call.  ``sample_tiles`` such calls are
timed (``predict_on_batch`` with a batch of one, which is cheaper than the
``model.predict`` the prior art calls, so the projection favours it) and the
time of the whole scan is projected from the number of tiles it needs.

Writes ``bench_segmentation.json`` and ``bench_segmentation.md`` into the run folder.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from experiments._markdown import markdown_table
from experiments.config import SAMPLES_DIR, dataclass_from
from .config import SegmentationBenchConfig

__all__ = ["SegmentationBenchConfig", "prior_art_tiles", "run"]

log = logging.getLogger(__name__)




def prior_art_tiles(shape: tuple[int, int], *, tile: int = 128, stride: int = 16) -> int:
    """Number of ``tile`` x ``tile`` windows at ``stride`` that the prior art predicts for a scan."""
    m, n = shape
    return ((max(m, tile) - tile) // stride + 1) * ((max(n, tile) - tile) // stride + 1)


def _median_time(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``bench_segmentation``."""
    bcfg = dataclass_from(SegmentationBenchConfig, cfg.get("bench"), where="bench")
    if bcfg.threads is not None:
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(bcfg.threads)
        os.environ["OMP_NUM_THREADS"] = str(bcfg.threads)
    from data import read_scan
    from segmentation.models import load_model, predict_grain_boundaries, predict_impurity_mask
    from segmentation.tiling import normalize_scan

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = Path(bcfg.scan)
    if not path.is_absolute():
        path = SAMPLES_DIR / path
    pixels = read_scan(path).pixels
    mpx = pixels.size / 1e6
    opts = {"tile": bcfg.tile, "overlap": bcfg.overlap, "batch_size": bcfg.batch_size}
    fns = {
        "impurities": lambda: predict_impurity_mask(pixels, **opts),
        "grains": lambda: predict_grain_boundaries(pixels, **opts),
    }
    rows, total = [], 0.0
    rng = np.random.default_rng(0)
    x = normalize_scan(pixels)
    n_prior = prior_art_tiles(pixels.shape, tile=bcfg.prior_tile, stride=bcfg.prior_stride)
    for kind, fn in fns.items():
        fn()  # warm-up: loads the model, builds the predict function
        med, times = _median_time(fn, bcfg.repeats)
        total += med
        model, card = load_model(kind)
        # prior art: one 128-px tile per call, stride 16
        r = rng.integers(0, pixels.shape[0] - bcfg.prior_tile + 1, bcfg.sample_tiles)
        c = rng.integers(0, pixels.shape[1] - bcfg.prior_tile + 1, bcfg.sample_tiles)
        tiles = [x[i : i + bcfg.prior_tile, j : j + bcfg.prior_tile][None, ..., None] for i, j in zip(r, c)]
        model.predict_on_batch(tiles[0])
        t0 = time.perf_counter()
        for t in tiles:  # one call per tile, as the prior art does
            model.predict_on_batch(t)
        dt = time.perf_counter() - t0
        tps = bcfg.sample_tiles / dt
        rows.append(
            {
                "model": kind,
                "parameters": int(card["parameter_count"]),
                "seconds": med,
                "seconds_all": times,
                "mpx_per_s": mpx / med,
                "prior_tiles_per_s": tps,
                "prior_tiles_per_scan": n_prior,
                "prior_projected_s": n_prior / tps,
                "speedup": n_prior / tps / med,
            }
        )
        log.info("%s: %.2f s per scan (%.2f Mpx/s); prior-art tiling %.1f tiles/s -> %.0f s projected",
                 kind, med, mpx / med, tps, n_prior / tps)
    import keras

    out = {
        "config": asdict(bcfg),
        "scan": str(path),
        "shape": list(pixels.shape),
        "megapixels": mpx,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
            "tf_intra_op_threads_env": os.environ.get("TF_NUM_INTRAOP_THREADS"),
        },
        "results": rows,
        "both_models_s": total,
        "target_s": bcfg.target_s,
        "meets_target": total < bcfg.target_s,
    }
    (output_dir / "bench_segmentation.json").write_text(json.dumps(out, indent=2) + "\n")
    cols = ["model", "parameters", "seconds", "mpx_per_s", "prior_tiles_per_s", "prior_tiles_per_scan",
            "prior_projected_s", "speedup"]
    md = [
        "# Segmentation speed (CPU)",
        "",
        (
            f"Scan {path.name}, {pixels.shape[0]} x {pixels.shape[1]} px ({mpx:.2f} Mpx); "
            f"{os.cpu_count()} cores; tiles {bcfg.tile} px, overlap {bcfg.overlap}, "
            f"batch {bcfg.batch_size}; median of {bcfg.repeats}. Prior art: {bcfg.prior_tile}-px "
            f"tiles at stride {bcfg.prior_stride}, one per call, timed on {bcfg.sample_tiles} tiles "
            f"and projected to the {n_prior} tiles of the scan."
        ),
        "",
        markdown_table([{k: r[k] for k in cols} for r in rows]),
        "",
        f"Both models: **{total:.2f} s** per scan (target < {bcfg.target_s:g} s).",
        "",
    ]
    (output_dir / "bench_segmentation.md").write_text("\n".join(md))
    log.info("both models: %.2f s per scan (target %.0f s)", total, bcfg.target_s)
    return 0
