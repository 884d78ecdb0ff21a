"""Evaluation ``eval_anomaly``: do the impurity scores find planted anomalies?

On seeded synthetic scans (:mod:`data.synthetic`) every impurity inside a
planted anomaly (cluster, stringer, giant) is a positive.  For each score and
each combination: ROC-AUC pooled over all scans and the mean over scans,
precision@k with k = the number of planted impurities of the scan and k = 10,
and the AUC of each planted kind against the normal impurities.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from sklearn.metrics import roc_auc_score

from anomaly import get_scorer
from anomaly.combine import combine_scores
from data.synthetic import ANOMALY_KINDS

from ._synthetic import EvalScans, scored_scans
from experiments._markdown import markdown_table
from experiments.config import dataclass_from
from .config import EvalAnomalyConfig

__all__ = ["EvalAnomalyConfig", "evaluate_scores", "run"]

log = logging.getLogger(__name__)




def _precision_at(y: np.ndarray, s: np.ndarray, k: int) -> float:
    k = int(min(k, len(s)))
    if k <= 0:
        return float("nan")
    top = np.lexsort((np.arange(len(s)), -s))[:k]  # ties: earlier row first (deterministic)
    return float(y[top].mean())


def evaluate_scores(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    """Metrics of each score column over scans (each frame: one scan, with ``is_anomaly``, ``anomaly_kind``)."""
    rows = []
    pooled = pd.concat(frames, ignore_index=True)
    y_all = pooled["is_anomaly"].to_numpy(bool)
    for col in columns:
        s_all = pooled[col].to_numpy(float)
        per_scan_auc, p_at_n, p_at_10 = [], [], []
        for f in frames:
            y = f["is_anomaly"].to_numpy(bool)
            s = f[col].to_numpy(float)
            if 0 < y.sum() < len(y):
                per_scan_auc.append(roc_auc_score(y, s))
            p_at_n.append(_precision_at(y, s, int(y.sum())))
            p_at_10.append(_precision_at(y, s, 10))
        row = {
            "score": col,
            "auc_pooled": roc_auc_score(y_all, s_all),
            "auc_mean": float(np.mean(per_scan_auc)),
            "precision_at_n_planted": float(np.mean(p_at_n)),
            "precision_at_10": float(np.mean(p_at_10)),
        }
        normal = ~y_all
        for kind in ANOMALY_KINDS:
            pos = (pooled["anomaly_kind"] == kind).to_numpy()
            sel = pos | normal
            row[f"auc_{kind}"] = roc_auc_score(pos[sel], s_all[sel]) if pos.any() else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``eval_anomaly``."""
    ec = dataclass_from(EvalAnomalyConfig, OmegaConf.to_container(cfg.get("eval", {}), resolve=True), where="eval")
    es = dataclass_from(EvalScans, ec.scans, where="eval.scans")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    scorers = dict(ec.scorers)
    if "shape" in scorers:
        try:
            import keras  # noqa: F401
        except ImportError:
            log.warning("Keras not importable: the shape autoencoder score is skipped")
            scorers.pop("shape")
    frames = []
    # source=classical segments the synthetic pixels with the classical path (its options when
    # segmentation=classical is selected, else the ClassicalConfig defaults)
    classical = cfg.segmentation.get("classical")
    classical = OmegaConf.to_container(classical) if classical is not None else {}
    for sc in scored_scans(es, scorers=scorers, segmentation=classical):
        t = sc.table
        for method, inputs in ec.combinations:
            if all(i in scorers for i in inputs):
                name = f"{method}({'*'.join(inputs) if method == 'product' else ','.join(inputs)})"
                t[name] = combine_scores({i: t[get_scorer(i).column].to_numpy() for i in inputs}, method=method)
        frames.append(t)
        log.info("%s: %d impurities, %d planted", sc.scan_id, len(t), int(t.is_anomaly.sum()))
    columns = [get_scorer(n).column for n in scorers] + [c for c in frames[0].columns if "(" in c]
    metrics = evaluate_scores(frames, columns)
    n_imp = int(sum(len(f) for f in frames))
    n_pos = int(sum(f.is_anomaly.sum() for f in frames))
    header = (
        f"eval_anomaly: {es.n_scans} synthetic scans {tuple(es.shape)}, impurities from the {es.source} mask, "
        f"{n_imp} impurities, {n_pos} inside planted anomalies"
    )
    md = header + "\n\n" + markdown_table(metrics, floatfmt=".3f")
    (output_dir / "metrics.md").write_text(md + "\n")
    (output_dir / "metrics.json").write_text(
        json.dumps({"config": {"scans": es.__dict__, "scorers": scorers}, "n_impurities": n_imp,
                    "n_planted": n_pos, "metrics": metrics.to_dict(orient="records")}, indent=2, default=str)
    )
    log.info("\n%s", md)
    return 0
