"""Every experiment preset runs on tiny data (not only composes), and a real Hydra multirun."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from experiments.tasks import DECLARED, PRESETS, TASKS, Task, _derive

REPO = Path(__file__).resolve().parents[1]
PRESET_FILES = sorted(p.stem for p in (REPO / "conf" / "exp").glob("*.yaml"))

#: Where each preset is run end to end on tiny data: from the tasks' declarations
#: (experiments/tasks.py DECLARED; a new preset is declared with its task).
RUN_BY = PRESETS


def test_every_preset_has_a_tiny_run():
    assert sorted(RUN_BY) == PRESET_FILES, "declare the new preset's tiny end-to-end run with its task (experiments/tasks.py)"
    for preset, where in RUN_BY.items():
        path = where.split("::")[0]
        assert (REPO / path).is_file(), where
        text = (REPO / path).read_text(encoding="utf-8")
        # the preset's name, or its family in a parametrised test (train_unet_{kind})
        assert preset in text or preset.rsplit("_", 1)[0] + "_{" in text, where


def test_each_preset_runs_the_task_that_declares_it(compose):
    for task in DECLARED:
        for preset in task.presets:
            cfg = compose([f"+exp={preset}"])
            assert cfg.task == task.name, preset
            if task.options is not None:
                group, option, _ = task.options
                text = (REPO / "conf" / "exp" / f"{preset}.yaml").read_text(encoding="utf-8")
                assert f"/{group}: {option}" in text, preset
    assert set(TASKS) == {t.name for t in DECLARED}


def test_a_task_is_declared_once():
    twice = (Task("a", "m:f"), Task("a", "m:g"))
    with pytest.raises(ValueError, match="declared twice"):
        _derive(twice)
    clash = (Task("a", "m:f", ("eval", "x", "m:A")), Task("b", "m:g", ("eval", "x", "m:B")))
    with pytest.raises(ValueError, match="eval/x"):
        _derive(clash)


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
