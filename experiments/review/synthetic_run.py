"""A synthetic run dir for trying the review app, its tests and its benchmark.

:func:`write_synthetic_run` writes what a pipeline run writes for the review app (the
documented ``scans``, ``regions`` and ``clusters`` tables, ``labels/<scan>.tif``) from
synthetic scans (:func:`data.synthetic.make_review_scan`), with the same library calls as the
pipeline stage: regions, scores, market clustering, cluster features, archive ranking, reasons.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import tifffile

from anomaly import market_clustering, rank_clusters, score_regions
from anomaly.market import MarketConfig
from anomaly.reasons import cluster_features, cluster_reasons
from data import regions_from_labels
from data.synthetic import FALSE_ALARM_KINDS, SyntheticConfig, make_review_scan
from experiments.layout import RunLayout

__all__ = ["write_synthetic_run"]

SCORERS = {"spatial": {"k": 50, "min_area_px": 4}, "circle": {"min_area_px": 4}}


def write_synthetic_run(
    root: str | Path,
    *,
    n_scans: int = 2,
    shape: tuple[int, int] = (512, 512),
    n_impurities: int | None = None,
    seed: int = 0,
    false_alarms: tuple[str, ...] = FALSE_ALARM_KINDS,
    pixel_size_um: float | None = 0.5,
    scan_ids: list[str] | None = None,
    market: MarketConfig | None = None,
) -> Path:
    """Write a run dir at ``root`` (created) with ``n_scans`` synthetic scans; returns ``root``.

    Scan files go to ``root/../<root name>-scans/`` (outside the run dir, like real inputs).
    ``n_impurities`` defaults to the bundled scans' density (600 per 1024 x 1024 px).
    """
    root = Path(root)
    layout = RunLayout(root)
    src = root.parent / f"{root.name}-scans"
    root.mkdir(parents=True, exist_ok=True)
    src.mkdir(parents=True, exist_ok=True)
    layout.hydra_dir.mkdir(exist_ok=True)
    (layout.hydra_dir / "config.yaml").write_text("task: pipeline\n")
    h, w = int(shape[0]), int(shape[1])
    n_imp = int(n_impurities if n_impurities is not None else round(600 * h * w / 1024**2))
    market = market or MarketConfig(min_score=0.5, max_gap_px=100)
    ids = list(scan_ids) if scan_ids is not None else [f"scan-{i:02d}" for i in range(n_scans)]
    scans, regions, clusters = [], [], []
    for i, sid in enumerate(ids):
        synth = make_review_scan(
            SyntheticConfig(shape=(h, w), n_impurities=n_imp, n_grains=max(20, h * w // 9000)),
            false_alarms=false_alarms,
            seed=seed * 1000 + i,
        )
        labels = synth.impurity_labels
        table = regions_from_labels(labels, pixel_size_um=pixel_size_um)
        table = score_regions(table, scorers=SCORERS, combine_inputs=("spatial", "circle"))
        lab, cl = market_clustering(table, table["combined_score"].to_numpy(), market)
        table["cluster_id"] = lab
        feats = cluster_features(table, cl, pixel_size_um=pixel_size_um, shape=(h, w))
        cl = pd.concat([cl, feats.drop(columns="cluster_id")], axis=1)
        cl.insert(0, "scan_id", sid)
        table.insert(0, "scan_id", sid)
        path = src / f"scan-{i:02d}.png"
        ok, buf = cv2.imencode(".png", synth.pixels)
        assert ok
        path.write_bytes(buf.tobytes())
        lp = layout.labels(sid)
        lp.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(
            lp, labels.astype(np.uint16 if labels.max() < 2**16 else np.uint32), compression="zlib"
        )
        scans.append(
            {
                "scan_id": sid,
                "path": str(path),
                "kind": "scan",
                "status": "ok",
                "error": None,
                "n_regions": len(table),
                "height": h,
                "width": w,
                "pixel_size_um": np.nan if pixel_size_um is None else float(pixel_size_um),
                "n_clusters": len(cl),
            }
        )
        regions.append(table)
        clusters.append(cl)
    ranked = rank_clusters(pd.concat(clusters, ignore_index=True), key=market.order_key)
    ranked["reason"] = cluster_reasons(ranked)
    pd.concat(regions, ignore_index=True).to_parquet(layout.regions, index=False)
    ranked.to_parquet(layout.clusters, index=False)
    pd.DataFrame(scans).to_parquet(layout.scans, index=False)
    return root
