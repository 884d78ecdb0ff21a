"""Timing of segment_phases + measure_phases on a synthetic 4000 x 4000 coating scan (issue 24 target: < 5 s).

Run: ``PYTHONPATH=. python -m segmentation.phases.bench``
"""
import time

import numpy as np

from data.standards.phases import PhaseMeasureConfig, measure_phases
from segmentation.phases import PhasesConfig, segment_phases

rng = np.random.default_rng(7)
h = w = 4000
truth = np.full((h, w), 3, np.uint8); truth[:800] = 1; truth[800:3000] = 2
yy, xx = rng.integers(900, 2900, 400), rng.integers(0, w, 400)
for y, x in zip(yy, xx): truth[y:y+12, x:x+12] = 1
img = np.clip(np.choose(truth - 1, [40.0, 140.0, 220.0]) + rng.normal(0, 8, truth.shape), 0, 255).astype(np.uint8)
names = ("pore", "coating", "substrate")
for clahe in (None, 0.01):
    t0 = time.perf_counter()
    lab = segment_phases(img, PhasesConfig(names=names, clahe_clip=clahe))
    t1 = time.perf_counter()
    m = measure_phases(lab, names=names, pixel_size_um=0.5, cfg=PhaseMeasureConfig(coating="coating", substrate="substrate"))
    t2 = time.perf_counter()
    print(f"clahe={clahe}: segment {t1-t0:.2f} s, measure {t2-t1:.2f} s, total {t2-t0:.2f} s; acc {np.mean(lab==truth):.4f}; "
          f"thickness {m.coating.thickness_mean_um[0]:.2f} um (truth 1100), porosity {m.coating.porosity[0]:.4f} "
          f"(truth {np.mean(truth[800:3000]==1):.4f}), pores {len(m.regions)}")
