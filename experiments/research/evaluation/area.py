"""Evaluation ``eval_area``: do the ranked clusters point the expert at the planted regions?

On seeded synthetic scans: impurities are scored with the run's anomaly
configuration, clustered by the market (each ``price_from`` variant listed),
and the clusters of all scans are ranked archive-wide.  Metrics:

- ``recall_at_3``: share of planted regions whose bounding box overlaps the
  box of one of their scan's top-3 clusters (the issue's definition);
- ``core_recall_at_3``: the same, but the cluster must contain an impurity of
  the planted region among its seeds (a stricter hit: a scan-wide cluster
  overlaps everything but points nowhere);
- ``precision_top10pct``: share of the archive's top 10% of clusters whose box
  overlaps a planted region;
- ``mean_cluster_box_fraction``: mean share of the scan area covered by a
  cluster's box (small = the expert is sent to a specific place);
- ``mean_best_iou_at_3``: for each planted region, the best intersection over
  union of its box with the boxes of its scan's top-3 clusters, averaged.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from anomaly.market import MarketConfig, market_clustering
from anomaly.combine import combine_scores
from anomaly import get_scorer
from anomaly.rank import rank_clusters

from ._synthetic import EvalScans, scored_scans
from experiments._markdown import markdown_table
from experiments.config import dataclass_from
from experiments.pipeline.options import resolve_physical
from .config import EvalAreaConfig

__all__ = ["EvalAreaConfig", "run"]

log = logging.getLogger(__name__)




def _overlap(a: pd.DataFrame | pd.Series, b: pd.DataFrame | pd.Series) -> np.ndarray:
    return (
        (np.asarray(a["bbox_rmin"]) <= np.asarray(b["bbox_rmax"]))
        & (np.asarray(b["bbox_rmin"]) <= np.asarray(a["bbox_rmax"]))
        & (np.asarray(a["bbox_cmin"]) <= np.asarray(b["bbox_cmax"]))
        & (np.asarray(b["bbox_cmin"]) <= np.asarray(a["bbox_cmax"]))
    )


def _iou(clusters: pd.DataFrame, reg: pd.Series) -> np.ndarray:
    r0 = np.maximum(clusters["bbox_rmin"].to_numpy(), reg["bbox_rmin"])
    r1 = np.minimum(clusters["bbox_rmax"].to_numpy(), reg["bbox_rmax"])
    c0 = np.maximum(clusters["bbox_cmin"].to_numpy(), reg["bbox_cmin"])
    c1 = np.minimum(clusters["bbox_cmax"].to_numpy(), reg["bbox_cmax"])
    inter = np.clip(r1 - r0 + 1, 0, None) * np.clip(c1 - c0 + 1, 0, None)
    area_c = (clusters["bbox_rmax"] - clusters["bbox_rmin"] + 1) * (clusters["bbox_cmax"] - clusters["bbox_cmin"] + 1)
    area_r = (reg["bbox_rmax"] - reg["bbox_rmin"] + 1) * (reg["bbox_cmax"] - reg["bbox_cmin"] + 1)
    return inter / (area_c.to_numpy() + area_r - inter)


def area_metrics(scans: list[tuple[str, pd.DataFrame, pd.DataFrame, tuple[int, int]]],
                 ranked: pd.DataFrame) -> dict:
    """Metrics from (scan_id, scored table with truth, planted regions, shape) and the ranked clusters."""
    hits = core_hits = n_regions = 0
    box_frac, best_iou = [], []
    for sid, table, planted, shape in scans:
        cl = ranked[ranked.scan_id == sid].sort_values("rank").head(3)
        for idx, reg in planted.iterrows():
            n_regions += 1
            ov = _overlap(cl, reg)
            hits += bool(ov.any())
            members = set(table.loc[table.region_index == idx, "region_id"].tolist())
            cores = [set(int(x) for x in str(c).split(";") if x) for c in cl["core_region_ids"]]
            core_hits += any(members & c for c in cores)
            best_iou.append(float(_iou(cl, reg).max()) if len(cl) else 0.0)
        allc = ranked[ranked.scan_id == sid]
        area = (allc.bbox_rmax - allc.bbox_rmin + 1) * (allc.bbox_cmax - allc.bbox_cmin + 1)
        box_frac.extend((area / (shape[0] * shape[1])).tolist())
    top = ranked.sort_values("rank").head(max(1, int(np.ceil(0.1 * len(ranked)))))
    planted_by_scan = {sid: planted for sid, _, planted, _ in scans}
    tp = [bool(_overlap(planted_by_scan[r.scan_id], r).any()) for _, r in top.iterrows()]
    return {
        "planted_regions": n_regions,
        "clusters": len(ranked),
        "recall_at_3": hits / max(n_regions, 1),
        "core_recall_at_3": core_hits / max(n_regions, 1),
        "precision_top10pct": float(np.mean(tp)) if tp else float("nan"),
        "mean_cluster_box_fraction": float(np.mean(box_frac)) if box_frac else float("nan"),
        "mean_best_iou_at_3": float(np.mean(best_iou)) if best_iou else float("nan"),
    }


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``eval_area``."""
    ec = dataclass_from(EvalAreaConfig, OmegaConf.to_container(cfg.get("eval", {}), resolve=True), where="eval")
    es = dataclass_from(EvalScans, ec.scans, where="eval.scans")
    anomaly_cfg = OmegaConf.to_container(cfg.anomaly, resolve=True)
    scorers = dict(anomaly_cfg["scorers"])
    combine = dict(anomaly_cfg.get("combine") or {})
    inputs = list(combine.get("inputs", ["spatial", "circle"]))
    method = combine.get("method", "product")
    # synthetic scans are uncalibrated: the pixel settings apply (µm twins dropped)
    market = dataclass_from(MarketConfig, resolve_physical(anomaly_cfg.get("area") or {}, None), where="anomaly.area")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    scans = []
    for sc in scored_scans(es, scorers=scorers):
        t = sc.table
        t["combined_score"] = combine_scores({i: t[get_scorer(i).column].to_numpy() for i in inputs}, method=method)
        scans.append((sc.scan_id, t, sc.synth.regions, sc.synth.pixels.shape))
    rows = []
    for variant in [{}, *ec.variants]:
        mc = replace(market, **variant)
        parts = []
        for sid, t, _, _ in scans:
            _, clusters = market_clustering(t, t["combined_score"].to_numpy(), mc)
            parts.append(clusters.assign(scan_id=sid))
        ranked = rank_clusters(pd.concat(parts, ignore_index=True), key=mc.order_key)
        m = {
            "market": "run config" if not variant else "variant",
            "price_from": mc.price_from,
            "min_score": mc.min_score,
            "max_gap_px": mc.max_gap_px,
            **area_metrics(scans, ranked),
        }
        log.info("%s", m)
        rows.append(m)
    table = pd.DataFrame(rows)
    header = (
        f"eval_area: {es.n_scans} synthetic scans {tuple(es.shape)}, impurities from the {es.source} mask, "
        f"combined = {method}({', '.join(inputs)}), {market.n_clusters} seeds per scan"
    )
    md = header + "\n\n" + markdown_table(table, floatfmt=".3f")
    (output_dir / "metrics.md").write_text(md + "\n")
    (output_dir / "metrics.json").write_text(json.dumps({"metrics": rows, "scans": es.__dict__}, indent=2, default=str))
    log.info("\n%s", md)
    return 0
