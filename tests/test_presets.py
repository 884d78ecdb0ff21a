"""Every experiment preset runs on tiny data (not only composes), and a real Hydra multirun."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
PRESETS = sorted(p.stem for p in (REPO / "conf" / "exp").glob("*.yaml"))

#: Where each preset is run end to end on tiny data (a new preset must be added here).
RUN_BY = {
    "archive": "tests/test_presets.py::test_multirun_of_the_mask_presets",
    "mlography": "tests/test_presets.py::test_multirun_of_the_mask_presets",
    "demo": "tests/experiments/pipeline/test_pipeline.py::test_multirun_sweeps_presets_and_values",
    "report": "tests/test_presets.py::test_report_preset",
    "bench_anomaly": "tests/experiments/research/bench/test_bench_smoke.py::test_bench_anomaly_small",
    "bench_area": "tests/experiments/research/bench/test_bench_smoke.py::test_bench_area_small",
    "bench_regions": "tests/experiments/research/bench/test_bench_smoke.py::test_bench_regions",
    "bench_archive": "tests/test_presets.py::test_bench_archive_preset",
    "bench_segmentation": "tests/test_presets.py::test_bench_segmentation_preset",
    "bench_process": "tests/test_presets.py::test_bench_process_preset",
    "bench_review": "tests/experiments/review/test_review_tasks.py::test_bench_review_task_tiny",
    "compare": "tests/experiments/reporting/test_compare.py",
    "eval_anomaly": "tests/experiments/research/evaluation/test_anomaly_area.py",
    "eval_area": "tests/experiments/research/evaluation/test_anomaly_area.py",
    "eval_calibration": "tests/experiments/research/evaluation/test_calibration_eval.py",
    "eval_inpainting": "tests/experiments/research/evaluation/test_inpainting_tasks.py",
    "eval_review": "tests/experiments/review/test_review_tasks.py",
    "eval_segmentation": "tests/segmentation/test_models.py::test_eval_segmentation_runs_and_reports_recall_by_size",
    "train_inpainting": "tests/experiments/research/evaluation/test_inpainting_tasks.py::test_train_inpainting_tiny",
    "train_shape_ae": "tests/anomaly/test_shape.py",
    "train_unet_grains": "tests/experiments/research/training/test_unet.py",
    "train_unet_impurities": "tests/experiments/research/training/test_unet.py",
}


def test_every_preset_has_a_tiny_run():
    assert sorted(RUN_BY) == PRESETS, "add the new preset's tiny end-to-end run to RUN_BY"
    for preset, where in RUN_BY.items():
        path = where.split("::")[0]
        assert (REPO / path).is_file(), where
        text = (REPO / path).read_text(encoding="utf-8")
        # the preset's name, or its family in a parametrised test (train_unet_{kind})
        assert preset in text or preset.rsplit("_", 1)[0] + "_{" in text, where


def _cli(*args, cwd=REPO, timeout=600):
    r = subprocess.run([sys.executable, "-m", "experiments.run", *args], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    return r


@pytest.mark.slow
def test_multirun_of_the_mask_presets(tmp_path, mask_archive):
    """One Hydra multirun (-m) over the presets that take the same input: one job dir each."""
    sweep = tmp_path / "sweep"
    _cli("-m", "+exp=mlography,archive", f"data.input={mask_archive}", "data.kind=mask", "runtime=serial",
         "report.html=false", f"hydra.sweep.dir={sweep}")
    for job in ("0", "1"):
        scans = pd.read_parquet(sweep / job / "scans.parquet")
        assert (scans["status"] == "ok").all() and len(scans) == 3


def test_report_preset(tmp_path, mask_archive):
    run = tmp_path / "run"
    _cli("+exp=mlography", f"data.input={mask_archive}", "report.html=false", f"hydra.run.dir={run}")
    r = _cli("+exp=report", f"run_dir={run}", "report.top_n=2")
    assert Path(r.stdout.strip().splitlines()[-1]) == run / "report" / "index.html"
    assert len(list((run / "report" / "img" / "crops").glob("*.png"))) == 2


@pytest.mark.slow
def test_bench_archive_preset(tmp_path):
    _cli("+exp=bench_archive", "bench.n_real=1", "bench.workers=[1]", "bench.repeats=1", "bench.small_counts=[2,3]",
         "bench.small_workers=1", 'bench.extra_overrides=["report.top_n=2"]', "bench.n_raw=1", "bench.raw_workers=[1]",
         f"hydra.run.dir={tmp_path}")
    md = (tmp_path / "bench_archive.md").read_text()
    assert "1 real masks" in md and "3 small masks" in md and "driver_ms_per_scan_mean" in md
    assert "1 raw scans" in md


@pytest.mark.slow
def test_bench_segmentation_preset(tmp_path):
    _cli("+exp=bench_segmentation", "bench.repeats=1", "bench.sample_tiles=4", f"hydra.run.dir={tmp_path}")
    assert list(tmp_path.glob("bench_segmentation.*"))


@pytest.mark.slow
def test_bench_process_preset(tmp_path):
    small = tmp_path / "small.png"
    import cv2

    cv2.imwrite(str(small), cv2.imread(str(REPO / "data/samples/impurity_masks/10.png"), cv2.IMREAD_GRAYSCALE)[:300, :300])
    _cli("+exp=bench_process", f"bench.masks=[{small}]", "bench.repeats=1", f"hydra.run.dir={tmp_path / 'b'}")
    res = __import__("json").loads((tmp_path / "b" / "bench_process.json").read_text())["results"][0]
    assert res["impurities"] > 0 and res["quantmet_process_s"] > 0 and res["prior_total_s"] > 0


def test_sweep_of_a_value(tmp_path, mask_archive):
    """-m over a setting: each job has its own run dir and its own value."""
    sweep = tmp_path / "k"
    _cli("-m", "+exp=mlography", f"data.input={mask_archive}", "anomaly.scorers.spatial.k=5,10", "report.html=false",
         f"hydra.sweep.dir={sweep}")
    a = pd.read_parquet(sweep / "0" / "regions.parquet")["spatial_score"]
    b = pd.read_parquet(sweep / "1" / "regions.parquet")["spatial_score"]
    assert len(a) == len(b) and not a.equals(b)
