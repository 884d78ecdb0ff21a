"""Reliability of a run: resume that cannot mix configurations, retries, one writer, full disks,
stale outputs, configuration checked before the first scan (issue: reliability and security)."""

from __future__ import annotations

import errno
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_mask

from experiments.config import pipeline_config
from experiments.layout import RunLayout
from experiments.pipeline.job import EXIT_OK, EXIT_SCAN_FAILED, EXIT_USAGE, EXIT_WRITE, run_pipeline

REPO = Path(__file__).resolve().parents[2]


def _run(compose, input_dir, out, *overrides):
    cfg = compose(["+exp=mlography", f"data.input={input_dir}", "report.html=false", *overrides])
    return run_pipeline(pipeline_config(cfg), out)


@pytest.fixture
def archive(tmp_path):
    root = tmp_path / "archive"
    for i in range(4):
        write_mask(root / f"s{i}.png", shape=(160, 200), n=25, seed=i)
    return root


def test_resume_with_other_settings_recomputes_instead_of_mixing(compose, tmp_path, archive, caplog):
    out = tmp_path / "run"
    assert _run(compose, archive, out) == EXIT_OK
    reference = tmp_path / "fresh"
    assert _run(compose, archive, reference, "anomaly.scorers.spatial.k=5", "data.min_area_px=10") == EXIT_OK
    with caplog.at_level("INFO"):
        code = _run(compose, archive, out, "anomaly.scorers.spatial.k=5", "data.min_area_px=10",
                    "runtime.resume=true")
    assert code == EXIT_OK
    assert "anomaly.scorers.spatial.k" in caplog.text and "data.min_area_px" in caplog.text
    assert "0 of 4 scans reused" in caplog.text
    for table in ("regions", "clusters"):  # exactly the tables of a fresh run with the new settings
        assert RunLayout(out).table(table).read_bytes() == RunLayout(reference).table(table).read_bytes()
    history = sorted(p.name for p in RunLayout(out).config_history.iterdir())
    assert len(history) == 2  # every configuration the run dir has seen
    first, second = (json.loads((RunLayout(out).config_history / h / "config.json").read_text()) for h in history)
    assert first["data"]["min_area_px"] == 4 and second["data"]["min_area_px"] == 10


def test_resume_retries_failed_scans_and_recomputes_a_changed_file(compose, tmp_path, archive, monkeypatch, caplog):
    out = tmp_path / "run"
    bad = archive / "s1.png"
    good = bad.read_bytes()
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken for now")
    assert _run(compose, archive, out) == EXIT_SCAN_FAILED  # a partial result is not a success
    assert (pd.read_parquet(RunLayout(out).scans).set_index("scan_id").loc["s1", "status"]) == "failed"
    bad.write_bytes(good)  # the transient problem is gone
    write_mask(archive / "s2.png", shape=(160, 200), n=12, seed=99)  # and one input changed
    with caplog.at_level("INFO"):
        assert _run(compose, archive, out, "runtime.resume=true") == EXIT_OK
    assert "2 of 4 scans reused" in caplog.text
    scans = pd.read_parquet(RunLayout(out).scans).set_index("scan_id")
    assert (scans["status"] == "ok").all() and scans.loc["s2", "n_regions"] == 12


def test_a_second_run_into_a_busy_run_dir_is_refused(compose, tmp_path, archive):
    out = tmp_path / "run"
    from experiments.pipeline.lock import RunLock

    with RunLock(RunLayout(out).lock):  # another run holds the dir
        assert _run(compose, archive, out) == EXIT_USAGE
    assert not RunLayout(out).scans.exists()
    assert _run(compose, archive, out) == EXIT_OK  # free again


def test_a_full_disk_is_one_line_and_a_resumable_state(compose, tmp_path, archive, monkeypatch, caplog):
    from experiments.pipeline import checkpoint

    real = checkpoint.write_atomic
    calls = {"n": 0}

    def full_after_a_while(path, content):
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, content)

    monkeypatch.setattr(checkpoint, "write_atomic", full_after_a_while)
    out = tmp_path / "run"
    with caplog.at_level("ERROR"):
        assert _run(compose, archive, out) == EXIT_WRITE
    assert "disk full" in caplog.text and "runtime.resume=true" in caplog.text
    assert not RunLayout(out).regions.exists()  # no table that looks complete
    monkeypatch.setattr(checkpoint, "write_atomic", real)
    assert _run(compose, archive, out, "runtime.resume=true") == EXIT_OK
    reference = tmp_path / "reference"
    assert _run(compose, archive, reference) == EXIT_OK
    assert RunLayout(out).regions.read_bytes() == RunLayout(reference).regions.read_bytes()


def test_a_rerun_without_resume_leaves_no_stale_outputs(compose, tmp_path, archive):
    out = tmp_path / "run"
    assert _run(compose, archive, out, "report.html=true") == EXIT_OK
    (archive / "s3.png").unlink()
    assert _run(compose, archive, out, "report.html=true") == EXIT_OK
    L = RunLayout(out)
    assert not L.labels("s3").exists() and not L.heatmap("s3").exists()
    assert not any("s3" in p.name for p in L.report_dir.rglob("*"))
    assert sorted(pd.read_parquet(L.scans)["scan_id"]) == ["s0", "s1", "s2"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.pixel_size_um=inf", "finite number > 0"),
        ("data.pixel_size_um=0", "finite number > 0"),
        ("data.pixel_size_um=5000", "absurd"),
        ("anomaly.scorers.spatial.k=0", "anomaly.scorers.spatial"),
        ("+anomaly.scorers.spatial.kk=3", "unknown option"),
        ("report.cmap=no-such-map", "colormap"),
        ("report.top_n=-1", "report.top_n"),
        ("runtime.num_workers=-1", "num_workers"),
        ("+foo=1", "unknown top-level key"),
        ("data.kind=slide", "data.kind"),
        ("data.max_pixels=0", "max_pixels"),
    ],
)
def test_bad_settings_fail_before_the_first_scan(tmp_path, archive, override, message):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "experiments.run", "+exp=mlography", f"data.input={archive}",
                        override, f"hydra.run.dir={out}"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout[-1500:] + r.stderr[-1500:]
    text = r.stdout + r.stderr
    assert message in text and "Traceback" not in text
    assert not (out / "parts").exists() and not (out / "scans.parquet").exists()


def test_a_truncated_model_is_refused_before_any_scan(compose, tmp_path, archive, caplog):
    from anomaly.scorers.shape import DEFAULT_WEIGHTS

    weights = tmp_path / "shape_ae.keras"
    weights.write_bytes(DEFAULT_WEIGHTS.read_bytes()[:1000])
    shutil.copy(DEFAULT_WEIGHTS.with_suffix(".json"), weights.with_suffix(".json"))
    cfg = compose([f"data.input={archive}", "data.kind=mask", "report.html=false",
                   f"anomaly.scorers.shape={{weights: '{weights}'}}"])  # the autoencoder on, with these weights
    with caplog.at_level("ERROR"):
        code = run_pipeline(pipeline_config(cfg), tmp_path / "run")
    assert code == EXIT_USAGE and "do not match their model card" in caplog.text
    assert not (tmp_path / "run" / "parts").exists()


def test_too_many_workers_are_capped(compose, tmp_path, archive, caplog):
    from experiments.pipeline.runners import local_cpus

    import ray

    with caplog.at_level("INFO"):
        code = _run(compose, archive, tmp_path / "run", "runtime=ray", "runtime.num_workers=1000")
    assert code == EXIT_OK
    assert f"more than this machine's {local_cpus()} CPUs" in caplog.text
    started = [int(m) for m in re.findall(r"(\d+) Ray worker\(s\) up", caplog.text)]
    assert started and max(started) <= local_cpus()
    assert not ray.is_initialized()  # the run stopped the local Ray it started (runners.release_ray)


def test_hostile_scan_names_keep_their_own_files_and_the_report(compose, tmp_path):
    root = tmp_path / "names"
    names = ["$x$", "a b", "a_b", "a%20b", "µm scan", "<img src=x onerror=alert(1)>", "-dash..dots",
             "x" * 200, "x" * 199 + "y"]
    for i, n in enumerate(names):
        write_mask(root / f"{n}.png", shape=(120, 150), n=10 + i, seed=i)
    out = tmp_path / "run"
    assert _run(compose, root, out, "report.html=true", "report.top_n=20") == EXIT_OK
    L = RunLayout(out)
    scans = pd.read_parquet(L.scans).set_index("scan_id")
    assert sorted(scans.index) == sorted(n for n in names)
    files = {L.labels_rel(s) for s in scans.index}
    assert len(files) == len(names)  # injective: no two scans share a file
    for sid, row in scans.iterrows():
        assert row["labels_file"] == L.labels_rel(sid) and (out / row["labels_file"]).is_file()
        import tifffile

        assert int(tifffile.imread(out / row["labels_file"]).max()) == row["n_regions"]
    assert L.report_index.is_file()  # names are text: "$x$" does not break the report
    assert "$x$" in L.report_index.read_text(encoding="utf-8")


def test_micrometre_settings_apply_to_calibrated_scans_only(compose, tmp_path, archive):
    """data.min_area_um2 / anomaly.area.max_gap_um win on calibrated scans; pixels apply to the others."""
    out = tmp_path / "cal"
    assert _run(compose, archive, out, "data.pixel_size_um=0.5", "data.min_area_um2=2",
                "anomaly.area.max_gap_um=40") == EXIT_OK
    scans = pd.read_parquet(RunLayout(out).scans)
    assert (scans["settings_note"] == "data.min_area_um2=2 -> min_area_px=8; "
                                      "anomaly.area.max_gap_um=40 -> max_gap_px=80").all()
    assert pd.read_parquet(RunLayout(out).regions)["area_px"].min() >= 8
    plain = tmp_path / "uncal"
    assert _run(compose, archive, plain, "data.min_area_um2=2", "anomaly.area.max_gap_um=40") == EXIT_OK
    scans = pd.read_parquet(RunLayout(plain).scans)
    assert (scans["settings_note"] == "").all() and (scans["pixel_size_source"] == "none").all()
    base = tmp_path / "base"
    assert _run(compose, archive, base) == EXIT_OK  # the µm twins changed nothing on uncalibrated scans
    assert RunLayout(plain).regions.read_bytes() == RunLayout(base).regions.read_bytes()


def test_hostile_group_names_are_text_in_the_comparison(compose, tmp_path):
    """Folder (group) names such as "$x$" are text in the comparison's plots and PDF, not maths."""
    root = tmp_path / "groups"
    for g in ("$x$", "$\\frac{a}{b}$", "plain"):
        for i in range(2):
            write_mask(root / g / f"s{i}.png", shape=(150, 180), n=12 + 4 * i, seed=i)
    out = tmp_path / "run"
    assert _run(compose, root, out) == EXIT_OK
    from experiments.reporting.compare import CompareConfig, compare_run

    res = compare_run(out, cfg=CompareConfig(), out_dir=tmp_path / "cmp")
    assert sorted(set(res.groups["group"])) == sorted(["$x$", "$\\frac{a}{b}$", "plain"])
    assert (tmp_path / "cmp" / "compare.pdf").stat().st_size > 1000 and list((tmp_path / "cmp" / "plots").glob("*.png"))
