"""Train the re-ranker from the verdicts of one or more reviewed run dirs."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from anomaly.rerank import RerankConfig, RerankModel, train_reranker

from .rundata import ReviewError, load_run
from .store import VERDICTS, StoreError, read_verdicts

__all__ = ["reviewed_clusters", "train_from_runs"]

log = logging.getLogger(__name__)


def reviewed_clusters(run_dir: Path) -> pd.DataFrame:
    """The reviewed clusters of a run (features, ``verdict``, ``note``), read-only."""
    run = load_run(run_dir)
    try:
        v = read_verdicts(run.layout.feedback_db)
    except StoreError as exc:
        raise ReviewError(str(exc)) from None
    v = v[v["verdict"].isin(VERDICTS)]
    v = v.assign(scan_id=v["scan_id"].astype(str), cluster_id=v["cluster_id"].astype("int64"))
    out = run.clusters.merge(
        v[["scan_id", "cluster_id", "verdict", "note"]],
        on=["scan_id", "cluster_id"],
        how="inner",
        validate="one_to_one",
    )
    if len(v) > len(out):
        log.warning(
            "%s: %d verdict(s) name clusters that are not in clusters.parquet; ignored",
            run_dir,
            len(v) - len(out),
        )
    return out.assign(run_dir=str(run_dir))


def train_from_runs(run_dirs: list[Path], out: Path, *, C: float = 1.0) -> tuple[RerankModel, Path]:
    """Train on every reviewed cluster of ``run_dirs`` and write the model and its card to ``out``."""
    parts = [reviewed_clusters(Path(d)) for d in run_dirs]
    data = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if data.empty:
        raise ReviewError(
            f"no verdicts in {[str(d) for d in run_dirs]}: review some clusters first"
        )
    try:
        model = train_reranker(
            data,
            data["verdict"],
            cfg=RerankConfig(C=C),
            sources=[str(Path(d).resolve()) for d in run_dirs],
            evaluate=True,
        )
    except ValueError as exc:
        raise ReviewError(f"cannot train the re-ranker: {exc}") from None
    path = model.save(out)
    return model, path
