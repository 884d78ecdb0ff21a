"""Write the bundled coating cross-sections (``data/samples/coatings``), generated with exact truth.

``python -m experiments.research.datasets.coating_samples [OUT_DIR]``

Four thermal-spray-like coatings (:func:`data.synthetic_phases.coating_scan`, seeds 2401-2404, not
used by any evaluation), two sample lots of different porosity, written the way Fiji and most
microscope software write a calibrated scan: an ImageJ TIFF with X/Y resolution in pixels per µm
and ``unit=micron``.  ``<out>_truth.csv`` beside the folder holds each scan's exact porosity, thickness and
phase fractions.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from data.synthetic_phases import coating_scan

__all__ = ["SAMPLES", "write_samples"]

#: (relative path, seed, porosity, mean thickness in px) of each bundled scan.
SAMPLES: tuple[tuple[str, int, float, float], ...] = (
    ("lot-A/coat-01.tif", 2401, 0.03, 220.0),
    ("lot-A/coat-02.tif", 2402, 0.03, 240.0),
    ("lot-B/coat-03.tif", 2403, 0.08, 200.0),
    ("lot-B/coat-04.tif", 2404, 0.08, 210.0),
)
SHAPE = (640, 768)
PIXEL_SIZE_UM = 0.5


def write_samples(out: Path) -> list[Path]:
    """Write the scans and ``truth.csv`` into ``out``; return the scan paths."""
    import tifffile  # lazy

    out = Path(out)
    paths, rows = [], []
    for rel, seed, porosity, thickness in SAMPLES:
        t = coating_scan(shape=SHAPE, seed=seed, pixel_size_um=PIXEL_SIZE_UM, thickness_px=thickness,
                         porosity=porosity)
        p = out / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        ppu = 1.0 / PIXEL_SIZE_UM
        tifffile.imwrite(p, np.asarray(t.image), imagej=True, resolution=(ppu, ppu),
                         metadata={"unit": "micron"}, compression="zlib")
        paths.append(p)
        rows.append({"scan": rel, "seed": seed, "porosity": t.porosity, "thickness_mean_um": t.thickness_mean_um,
                     **{f"fraction_{k}": v for k, v in t.fractions.items()}})
    with open(out.parent / f"{out.name}_truth.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[3] / "data" / "samples" / "coatings"
    for p in write_samples(target):
        print(p, p.stat().st_size, "bytes")
