"""eval_phases: pore matching and a tiny run of the preset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments.research.evaluation import phases as ev
from experiments.research.evaluation.config import EvalPhasesConfig


def test_match_pores_iou_one_to_one():
    t = np.zeros((30, 30), np.int32)
    t[2:8, 2:8] = 1
    t[20:26, 20:26] = 2
    p = np.zeros_like(t)
    p[2:8, 2:7] = 5      # IoU 30/36 -> match
    p[20:22, 20:22] = 6  # IoU 4/36 -> no match
    m = ev.match_pores(p, t, min_eq_diameter_px=1.0, iou=0.5)
    assert (m["n_true"], m["tp_true"]) == (2, 1)
    assert m["recall"] == pytest.approx(0.5)


def test_tuning_seeds_refused():
    with pytest.raises(ValueError, match="tuned on"):
        EvalPhasesConfig(seed=1000)


def test_eval_phases_tiny_run(compose, tmp_path):
    cfg = compose(["+exp=eval_phases", "eval.n_coating=2", "eval.n_multiphase=1", "eval.data_root=",
                   "eval.shape=[128,128]"])
    assert ev.run(cfg, tmp_path) == 0
    out = json.loads((tmp_path / "phases_eval_summary.json").read_text())
    assert out["summary"]["n_coating"] == 2 and out["summary"]["n_multiphase"] == 1
    assert np.isfinite(out["summary"]["porosity_mean_abs_error_pp"])
    assert (tmp_path / "phases_eval.md").read_text().startswith("# Phases against exact truth")
