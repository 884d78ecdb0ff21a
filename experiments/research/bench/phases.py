"""``+exp=bench_phases``: classical phases and every phase measurement on one large coating scan.

A generated coating cross-section (:func:`data.synthetic_phases.coating_scan`, ``bench.size`` square,
exact truth known) goes through :func:`segmentation.phases.segment_phases` with the settings of
``+exp=phases`` and :func:`data.standards.phases.measure_phases` (fractions with their field intervals,
the E562 point count, coating thickness and porosity with their intervals, the region table of the
pores and oxides).  Wall clock of each step, median of ``bench.repeats`` runs after a warm-up, the
process's peak RSS and the machine's load; the errors against truth are printed beside them, so a
faster path that changes the answers shows.  Writes ``bench_phases.json`` and ``bench_phases.md``.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from experiments.config import dataclass_from

from .config import PhasesBenchConfig

__all__ = ["run", "bench_phases"]

log = logging.getLogger(__name__)

NAMES = ("pore", "oxide", "coating", "substrate")


def bench_phases(bc: PhasesBenchConfig) -> dict:
    """Time segment + measure on the generated scan; the result as a dict (see the module docstring)."""
    from data.standards.phases import PhaseMeasureConfig, measure_phases
    from data.synthetic_phases import coating_scan
    from segmentation.phases import PhasesConfig, segment_phases

    t = coating_scan(shape=(bc.size, bc.size), seed=bc.seed, pixel_size_um=bc.pixel_size_um,
                     thickness_px=0.35 * bc.size, porosity=0.05)
    seg_cfg = PhasesConfig(names=NAMES, **dict(bc.phases))
    m_cfg = PhaseMeasureConfig(coating="coating", substrate="substrate", pores=("pore",), objects=("pore", "oxide"))
    runs = []
    for i in range(bc.repeats + (1 if bc.warmup else 0)):
        t0 = time.perf_counter()
        lab = segment_phases(t.image, seg_cfg, pixel_size_um=bc.pixel_size_um)
        t1 = time.perf_counter()
        m = measure_phases(lab, names=NAMES, pixel_size_um=bc.pixel_size_um, cfg=m_cfg)
        t2 = time.perf_counter()
        if i or not bc.warmup:
            runs.append((t1 - t0, t2 - t1, t2 - t0))
    seg_s, measure_s, total_s = (float(np.median([r[k] for r in runs])) for k in range(3))
    fr = m.fractions.set_index("phase")["area_fraction"]
    co = m.coating.iloc[0]
    return {
        "size_px": [bc.size, bc.size], "seed": bc.seed, "settings": dict(bc.phases), "repeats": bc.repeats,
        "segment_s": seg_s, "measure_s": measure_s, "total_s": total_s,
        "total_s_runs": [r[2] for r in runs], "target_s": bc.target_s, "met": total_s < bc.target_s,
        "n_regions": int(len(m.regions)),
        "fraction_error_pp": {k: 100.0 * (float(fr[k]) - t.fractions[k]) for k in NAMES},
        "porosity_error_pp": 100.0 * (float(co["porosity"]) - t.porosity),
        "thickness_error_pct": 100.0 * (float(co["thickness_mean_um"]) / t.thickness_mean_um - 1.0),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }


def _markdown(r: dict) -> str:
    err = ", ".join(f"{k} {v:+.2f}" for k, v in r["fraction_error_pp"].items())
    return "\n".join([
        f"| scan | segment | measure | total (median of {r['repeats']}) | target | regions | peak RSS |",
        "|---|---|---|---|---|---|---|",
        f"| {r['size_px'][0]} x {r['size_px'][1]} px | {r['segment_s']:.2f} s | {r['measure_s']:.2f} s | "
        f"{r['total_s']:.2f} s ({', '.join(f'{x:.2f}' for x in r['total_s_runs'])}) | < {r['target_s']:g} s "
        f"({'met' if r['met'] else 'not met'}) | {r['n_regions']} | {r['peak_rss_mb']:.0f} MB |",
        "",
        f"Against the generator's truth: fraction error (pp) {err}; porosity {r['porosity_error_pp']:+.2f} pp; "
        f"thickness {r['thickness_error_pct']:+.2f} %. Load average {r['load_average']} on {r['cpus']} CPUs.",
    ]) + "\n"


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``bench_phases``."""
    bc = dataclass_from(PhasesBenchConfig, OmegaConf.to_container(cfg.get("bench", {}), resolve=True), where="bench")
    r = bench_phases(bc)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_phases.json").write_text(json.dumps(r, indent=1), encoding="utf-8")
    md = _markdown(r)
    (out / "bench_phases.md").write_text(md, encoding="utf-8")
    print(md)
    return 0
