"""Shared pieces of the synthetic evaluations: seeded scans, scored RegionTables with truth, tables."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from anomaly.scorers import ScoreContext
from anomaly.scoring import score_regions
from data import regions_from_labels, relabel_sequential
from data.synthetic import SyntheticConfig, SyntheticScan, make_synthetic_scan, truth_for_labels

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalScans:
    """Which synthetic scans an evaluation uses and how their impurities are found."""

    n_scans: int = 10
    seed: int = 1000
    shape: tuple = (1024, 1024)
    n_impurities: int = 600
    source: str = "truth"  # truth = the exact impurity mask; classical = segment the pixels

    def __post_init__(self) -> None:
        if self.source not in ("truth", "classical"):
            raise ValueError(f"eval source must be 'truth' or 'classical', got {self.source!r}")
        if self.n_scans < 1:
            raise ValueError("n_scans must be >= 1")


@dataclass
class ScoredScan:
    scan_id: str
    synth: SyntheticScan
    table: pd.DataFrame  # RegionTable + scores + truth columns
    labels: np.ndarray


def scored_scans(
    es: EvalScans, *, scorers: Mapping[str, Mapping[str, Any] | None], segmentation: Mapping | None = None
) -> Iterator[ScoredScan]:
    """Generate, segment (or take the truth mask), score and attach truth, scan by scan."""
    scfg = SyntheticConfig(shape=tuple(es.shape), n_impurities=es.n_impurities)
    seg = None
    if es.source == "classical":
        from segmentation import make_segmenter

        seg = make_segmenter("classical", dict(segmentation or {}))
    for i in range(es.n_scans):
        synth = make_synthetic_scan(scfg, seed=es.seed + i)
        labels = synth.impurity_labels if seg is None else relabel_sequential(seg(synth.pixels))
        table = regions_from_labels(labels)
        first = next(iter(scorers))
        table = score_regions(table, scorers=scorers, combine_inputs=(first,), context=ScoreContext(labels=labels))
        truth = truth_for_labels(labels, synth)
        table = table.merge(truth, on="region_id", how="left", validate="one_to_one")
        yield ScoredScan(f"synthetic-{es.seed + i}", synth, table, labels)
