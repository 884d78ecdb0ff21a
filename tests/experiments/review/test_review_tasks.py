"""The eval_review and bench_review tasks on tiny inputs (the real runs are in README)."""

from __future__ import annotations

import json
import math

import pytest


@pytest.mark.slow
def test_eval_review_task_tiny(compose, tmp_path):
    from experiments.research.evaluation.review import run

    cfg = compose(
        [
            "+exp=eval_review",
            "eval.seeds=[1]",
            "eval.n_scans=4",
            "eval.shape=[512,512]",
            "eval.n_impurities=150",
            "eval.n_reviewed=4",
            "eval.precision_at=2",
        ]
    )
    assert run(cfg, tmp_path) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert [s["scenario"] for s in m["summary"]] == [
        "false_alarms",
        "false_alarms_wide",
        "agree",
        "agree_wide",
    ]
    for r in m["per_seed"]:
        assert r["true_clusters"] + r["false_alarm_clusters"] <= r["clusters"]
        if r["unreviewed"] >= 2:
            assert 0 <= r["p_unsupervised"] <= 1 and 0 <= r["p_learned"] <= 1
            assert math.isclose(r["gain"], r["p_learned"] - r["p_unsupervised"])
    assert {
        r["false_alarm_clusters"] for r in m["per_seed"] if r["scenario"].startswith("agree")
    } == {0}
    assert "P@2 learned" in (tmp_path / "metrics.md").read_text()


@pytest.mark.slow
def test_bench_review_task_tiny(compose, tmp_path):
    from experiments.research.bench.review import run

    cfg = compose(
        ["+exp=bench_review", "bench.shape=[512,640]", "bench.n_tiles=8", "bench.chromium="]
    )
    assert run(cfg, tmp_path) == 0
    r = json.loads((tmp_path / "bench_review.json").read_text())
    assert r["first_view_http_s"] > 0 and r["first_view_tiles"] >= 1 and r["first_view_s"] is None
    assert (
        r["tile"]["n"] == 8
        and 0 < r["tile"]["median_ms"] <= r["tile"]["p95_ms"] <= r["tile"]["max_ms"]
    )
    assert "uncached tile" in (tmp_path / "bench_review.md").read_text()
