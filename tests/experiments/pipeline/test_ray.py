"""The Ray runner: same tables as the serial runner, crash isolation, resume after SIGKILL, a real cluster."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from experiments.config import pipeline_config
from experiments.pipeline.job import run_pipeline
from experiments.pipeline.runners import StageFactory, run_ray

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests"))
from conftest import write_mask  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    yield ray
    ray.shutdown()


def _cfg(compose, archive, *extra):
    return pipeline_config(compose(["+exp=mlography", f"data.input={archive}", "report.html=false", *extra]))


def test_ray_runner_gives_the_serial_tables(compose, tmp_path, mask_archive, local_ray):
    assert run_pipeline(_cfg(compose, mask_archive), tmp_path / "serial") == 0
    assert run_pipeline(_cfg(compose, mask_archive, "runtime=ray", "runtime.num_workers=2"), tmp_path / "ray") == 0
    for name in ("regions.parquet", "clusters.parquet"):
        assert (tmp_path / "serial" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes()
    s = pd.read_parquet(tmp_path / "ray" / "scans.parquet")
    assert (s["status"] == "ok").all() and len(s) == 3


@dataclass(frozen=True)
class _CrashingFactory:
    """Builds the real stage, but the worker process dies on one scan."""

    inner: StageFactory
    crash_on: str

    def __call__(self):
        stage = self.inner()
        crash_on = self.crash_on

        def run(task):
            if task.item.scan_id == crash_on:
                os._exit(17)  # kill the worker process, as a segfault or OOM kill would
            return stage(task)

        return run


@pytest.mark.parametrize("workers", [2, 1])  # on 1 worker, lot2/c waits queued behind the crashing scan
def test_a_scan_that_kills_its_worker_is_retried_then_failed(compose, tmp_path, mask_archive, local_ray, workers):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    pc = _cfg(compose, mask_archive, "runtime=ray", f"runtime.num_workers={workers}", "runtime.max_retries=1")
    from data import discover_inputs

    items = discover_inputs(mask_archive)
    results = []
    run_ray(items, _CrashingFactory(StageFactory(pc), "lot2/b"), results.append, pc.runtime)
    by_id = {r.scan_id: r for r in results}
    assert sorted(by_id) == ["a", "lot2/b", "lot2/c"] and len(results) == 3
    assert by_id["lot2/b"].row["status"] == "failed"
    assert "worker crashed 2 time(s)" in by_id["lot2/b"].row["error"]
    assert by_id["a"].ok and by_id["lot2/c"].ok


def test_workers_start_and_load_models_before_the_scans(compose, tmp_path, mask_archive, local_ray):
    pc = _cfg(compose, mask_archive, "runtime=ray", "runtime.num_workers=2")
    from data import discover_inputs

    results = []
    stats = run_ray(discover_inputs(mask_archive), StageFactory(pc), results.append, pc.runtime)
    assert stats["workers"] == 2 and stats["startup_s"] > 0
    assert len(results) == 3 and all(r.ok for r in results)


def _env():
    env = dict(os.environ)
    env["QUANTMET_NO_PROGRESS"] = "1"
    env["PYTHONPATH"] = str(REPO)
    return env


def test_sigkill_then_resume_gives_the_uninterrupted_tables(tmp_path):
    archive = tmp_path / "archive"
    for i in range(8):
        write_mask(archive / f"s{i}.png", shape=(700, 900), n=400, seed=i)
    args = [sys.executable, "-m", "experiments.run", "+exp=mlography", f"data.input={archive}", "report.html=false"]
    full = tmp_path / "full"
    subprocess.run([*args, f"hydra.run.dir={full}"], cwd=REPO, env=_env(), check=True, capture_output=True)

    run = tmp_path / "killed"
    proc = subprocess.Popen([*args, f"hydra.run.dir={run}"], cwd=REPO, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = run / "parts"
    deadline = time.time() + 240
    while time.time() < deadline:
        done = [p for p in parts.glob("*") if not p.name.startswith(".")] if parts.exists() else []
        if len(done) >= 3 or proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len([p for p in parts.glob("*") if not p.name.startswith(".")])
    assert 0 < n_before < 8, f"kill came too late or too early ({n_before} scans done)"
    assert not (run / "regions.parquet").exists()

    r = subprocess.run([*args, f"hydra.run.dir={run}", "runtime.resume=true"], cwd=REPO, env=_env(),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resuming: {n_before} of 8 scans reused" in r.stdout + r.stderr
    for name in ("regions.parquet", "clusters.parquet"):
        assert (full / name).read_bytes() == (run / name).read_bytes(), name
    scans = pd.read_parquet(run / "scans.parquet")
    assert scans["scan_id"].is_unique and len(scans) == 8


_PRESTARTED = """
import os, sys, time
from experiments.config import RuntimeConfig
from experiments.pipeline.runners import _StageActor, ray_session

ray = ray_session(RuntimeConfig(mode="ray", num_workers=2))
time.sleep(1.0)  # the workers Ray starts with the node are up by now
tick = os.sysconf("SC_CLK_TCK")

def started(pid):  # seconds after boot
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[19]) / tick

asked = float(open("/proc/uptime").read().split()[0])
actor = ray.remote(num_cpus=1)(_StageActor)
factory = lambda: (lambda task: task)
actors = [actor.remote(factory), actor.remote(factory)]  # held: a dropped handle ends its process
pids = ray.get([a.pid.remote() for a in actors])
starts = [started(p) for p in pids]
print("late:", [round(t - asked, 2) for t in starts if t > asked - 0.05])
ray.shutdown()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads process start times from /proc")
def test_a_local_session_runs_its_actors_on_the_workers_ray_started_with_it(tmp_path):
    """A run's own local Ray hands its env to the workers by inheritance, not a runtime_env: with one,
    Ray cannot use the workers it pre-starts with the node, and every actor waits for a new Python."""
    r = subprocess.run([sys.executable, "-c", _PRESTARTED], cwd=tmp_path, env=_env(), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "late: []" in r.stdout, r.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_archive_on_a_real_ray_cluster(tmp_path, mask_archive):
    """Start a head and a worker node on loopback, run +exp=archive against it, stop exactly those processes."""
    ray_bin = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    env = _env()
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    common = ["--num-cpus", "1", "--block", "--disable-usage-stats"]
    # Ray's Unix sockets live under --temp-dir: keep the path short (sockets are limited to ~107 chars).
    ray_tmp = tempfile.mkdtemp(prefix="qm-ray-", dir="/tmp")
    head = subprocess.Popen(
        [ray_bin, "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1",
         "--include-dashboard", "false", "--temp-dir", ray_tmp, *common],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    worker = None
    try:
        time.sleep(8)
        worker = subprocess.Popen(
            [ray_bin, "start", "--address", f"127.0.0.1:{port}", "--node-ip-address", "127.0.0.1", *common],
            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 90
        status = ""
        while time.time() < deadline:  # wait until both nodes' CPUs are in the cluster
            status = subprocess.run([ray_bin, "status", "--address", f"127.0.0.1:{port}"], env=env,
                                    capture_output=True, text=True).stdout
            if "/2.0 CPU" in status:
                break
            time.sleep(2)
        assert "/2.0 CPU" in status, status
        out = tmp_path / "run"
        r = subprocess.run(
            [sys.executable, "-m", "experiments.run", "+exp=archive", f"data.input={mask_archive}",
             "data.kind=mask", f"runtime.address=127.0.0.1:{port}", "runtime.num_workers=2",
             "report.html=false", f"hydra.run.dir={out}"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        scans = pd.read_parquet(out / "scans.parquet")
        assert (scans["status"] == "ok").all() and len(scans) == 3
        assert len(pd.read_parquet(out / "clusters.parquet")) > 0
        assert "2 Ray workers" in r.stdout + r.stderr or scans["worker_pid"].nunique() == 2
        # inside `ray job submit` there is no runtime.address, but Ray sets RAY_ADDRESS: join it too
        # (starting a local Ray with num_cpus there is an error)
        r = subprocess.run(
            [sys.executable, "-m", "experiments.run", "+exp=archive", f"data.input={mask_archive}",
             "data.kind=mask", "report.html=false", f"hydra.run.dir={tmp_path / 'job'}"],
            cwd=REPO, env={**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}, capture_output=True, text=True, timeout=300,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        assert pd.read_parquet(tmp_path / "job" / "regions.parquet").equals(pd.read_parquet(out / "regions.parquet"))
    finally:
        for p in (worker, head):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in (worker, head):
            if p is not None:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_spatial_rows_on_ray_give_the_same_scores(compose, tmp_path, mask_archive, local_ray):
    """runtime.spatial_on_ray: the spatial score's row chunks run as Ray tasks, with identical results."""
    base = _cfg(compose, mask_archive, "+anomaly.scorers.spatial.ray_min_regions=5", "+anomaly.scorers.spatial.chunk_size=8")
    fanned = _cfg(compose, mask_archive, "+anomaly.scorers.spatial.ray_min_regions=5",
                  "+anomaly.scorers.spatial.chunk_size=8", "runtime.spatial_on_ray=true")
    assert run_pipeline(base, tmp_path / "a") == 0
    assert run_pipeline(fanned, tmp_path / "b") == 0
    a = pd.read_parquet(tmp_path / "a" / "regions.parquet")
    b = pd.read_parquet(tmp_path / "b" / "regions.parquet")
    pd.testing.assert_series_equal(a["spatial_score"], b["spatial_score"])


@pytest.mark.slow
def test_ray_raw_scan_run_records_the_inference_backend_of_its_workers(compose, tmp_path, local_ray):
    """The backend runs in the worker's process; it travels back in the scan row into run_stats.json."""
    import cv2

    from experiments.pipeline.job import run_pipeline

    src = cv2.imread(str(REPO / "data" / "samples" / "scans" / "10.jpg"), cv2.IMREAD_GRAYSCALE)
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "crop.png"), src[:256, :320])
    pc = pipeline_config(compose(["+exp=demo", f"data.input={tmp_path / 'in'}", "runtime=ray",
                                  "runtime.num_workers=1", "segmentation.grains.enabled=false", "report.html=false"]))
    out = tmp_path / "run"
    assert run_pipeline(pc, out) == 0
    row = pd.read_parquet(out / "scans.parquet").iloc[0]
    assert row["segmentation_backend"].startswith("unet_impurities.keras: ")
    stats = json.loads((out / ".quantmet" / "run_stats.json").read_text())
    backend = stats["segmentation_backends"]["unet_impurities.keras"]
    assert backend == row["segmentation_backend"].split(": ", 1)[1]
    assert backend.split("-")[0] in ("openvino", "onnxruntime", "keras")
