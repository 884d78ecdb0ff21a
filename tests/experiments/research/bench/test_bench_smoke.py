"""Benchmarks and the training entry point run end to end on tiny settings (they must not rot)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]
pytestmark = pytest.mark.slow


def _run(tmp_path, *args):
    r = subprocess.run([sys.executable, "-m", "experiments.run", *args, f"hydra.run.dir={tmp_path}"],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    return r


def test_bench_regions(tmp_path):
    _run(tmp_path, "+exp=bench_regions", "bench.repeats=1")
    assert "meets_target" in (tmp_path / "bench_regions.md").read_text()


def test_bench_anomaly_small(tmp_path):
    _run(tmp_path, "+exp=bench_anomaly", "bench.repeats=1", "bench.naive_max_regions=150",
         "bench.synthetic=false", "bench.ray=false", "bench.naive_scaling_sizes=[100,200]")
    assert list(tmp_path.glob("*.md"))


def test_bench_area_small(tmp_path):
    _run(tmp_path, "+exp=bench_area", "bench.n_scored=300", "bench.naive_n=100", "bench.sizes=[100]",
         "bench.repeats=1", "bench.masks=")
    assert list(tmp_path.glob("*.json"))


def test_bench_phases_small(tmp_path):
    """+exp=bench_phases on a small scan: timings, the truth errors and the markdown table."""
    import json
    import subprocess
    import sys

    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "experiments.run", "+exp=bench_phases", "bench.size=384",
                        "bench.repeats=1", f"hydra.run.dir={out}"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((out / "bench_phases.json").read_text())
    assert res["total_s"] > 0 and res["segment_s"] + res["measure_s"] <= res["total_s"] * 1.01
    assert abs(res["porosity_error_pp"]) < 2.0 and abs(res["thickness_error_pct"]) < 5.0
    assert "| 384 x 384 px |" in (out / "bench_phases.md").read_text()
