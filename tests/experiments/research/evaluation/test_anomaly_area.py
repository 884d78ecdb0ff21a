"""The synthetic evaluations run end to end on tiny scans and give numbers in range."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf


@pytest.fixture
def tiny_scans():
    return {"n_scans": 2, "seed": 7, "shape": [384, 384], "n_impurities": 80}


def test_eval_anomaly_runs(compose, tmp_path, tiny_scans):
    from experiments.research.evaluation.anomaly import run

    cfg = compose(["+exp=eval_anomaly"])
    OmegaConf.update(cfg, "eval.scans", tiny_scans, merge=False)
    OmegaConf.update(cfg, "eval.scorers", {"spatial": {"k": 10}, "circle": {}}, merge=False)
    assert run(cfg, tmp_path) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    names = {r["score"] for r in m["metrics"]}
    assert {"spatial_score", "circle_score", "product(spatial*circle)"} <= names
    for r in m["metrics"]:
        assert 0 <= r["auc_pooled"] <= 1 and 0 <= r["precision_at_10"] <= 1
    assert (tmp_path / "metrics.md").read_text().count("|") > 20


def test_eval_area_runs(compose, tmp_path, tiny_scans):
    from experiments.research.evaluation.area import run

    cfg = compose(["+exp=eval_area", "anomaly.scorers.spatial.k=10", "anomaly.scorers.shape=null"])
    OmegaConf.update(cfg, "eval.scans", tiny_scans, merge=False)
    assert run(cfg, tmp_path) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert m[0]["market"] == "run config" and len(m) == 7
    assert [r["max_gap_px"] for r in m] == [100, None, None, None, None, 50, 100]
    for r in m:
        assert 0 <= r["recall_at_3"] <= 1 and 0 < r["mean_cluster_box_fraction"] <= 1
        assert r["planted_regions"] == 6
