"""Hydra sweeps on Ray through the hydra-ray-launcher plugin (``-m hydra/launcher=ray``).

The plugin is an optional extra (``pip install -e ".[raylauncher]"``): it pins
``cloudpickle<3``, which pulls joblib back to 1.5.x.  When it is not installed,
the test fetches the plugin alone (``pip install --no-deps --target``) into the
pytest cache, once, and puts it on ``PYTHONPATH`` of the sweep subprocess only:
the local launcher never imports cloudpickle itself (only its AWS launcher does),
so it runs next to the main install's cloudpickle 3.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from experiments.config import pipeline_config
from experiments.pipeline.job import run_pipeline

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests"))
from conftest import write_mask  # noqa: E402

pytestmark = pytest.mark.slow

PLUGIN = "hydra-ray-launcher==1.2.2"


def _plugin_installed() -> bool:
    try:
        return importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is not None
    except ModuleNotFoundError:
        return False


@pytest.fixture(scope="session")
def launcher_pythonpath(request, tmp_path_factory) -> list[str]:
    """Extra ``PYTHONPATH`` entries that make the plugin importable ([] when it is installed)."""
    if _plugin_installed():
        return []
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    root = Path(cache.mkdir("hydra-ray-launcher") if cache else tmp_path_factory.mktemp("hrl"))
    target = root / PLUGIN.replace("==", "-")
    if not (target / "hydra_plugins" / "hydra_ray_launcher" / "ray_launcher.py").is_file():
        staging = Path(tempfile.mkdtemp(prefix="staging-", dir=root))
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--no-deps", "--no-compile", "--retries", "1", "--timeout", "20"]
        r = subprocess.run([*pip, "--target", str(staging), PLUGIN],
                           check=False, capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            pytest.skip(f"cannot fetch {PLUGIN} with pip (offline?): {r.stderr.strip()[-500:]}")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)  # atomic: a half-done install is never taken for the cache
    return [str(target)]


def _processes_mentioning(text: str) -> dict[int, str]:
    """pid -> command line of the live processes whose command line contains ``text``."""
    found = {}
    for d in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd and int(d.name) != os.getpid():
            found[int(d.name)] = cmd[:200]
    return found


def _leftovers(ray_tmp: str, wait_s: float) -> dict[int, str]:
    """This Ray's processes still alive after up to ``wait_s`` seconds."""
    deadline = time.time() + wait_s
    while (left := _processes_mentioning(ray_tmp)) and time.time() < deadline:
        time.sleep(0.5)
    return left


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="checks leftover processes through /proc")
def test_two_job_sweep_on_the_ray_launcher(launcher_pythonpath, compose, tmp_path):
    mask = write_mask(tmp_path / "mask.png")
    sweep = tmp_path / "sweep"
    # This Ray's own temp dir: its processes are recognisable by it, and its Unix
    # socket paths stay short (~107 chars max).
    ray_tmp = tempfile.mkdtemp(prefix="qm-hrl-", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    inherited = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([*launcher_pythonpath, str(REPO), *inherited])
    env["QUANTMET_NO_PROGRESS"] = "1"
    common = ["+exp=mlography", f"data.input={mask}", "report.html=false"]
    ray_init = [
        # a fresh local Ray (never a cluster found via ray_current_cluster), 2 CPUs, no dashboard
        "hydra.launcher.ray.init.address=local",
        "+hydra.launcher.ray.init.num_cpus=2",
        "+hydra.launcher.ray.init.include_dashboard=false",
        f"+hydra.launcher.ray.init._temp_dir={ray_tmp}",
    ]
    try:
        r = subprocess.run(
            [sys.executable, "-m", "experiments.run", "-m", *common,
             "anomaly.scorers.spatial.k=5,10", "hydra/launcher=ray", f"hydra.sweep.dir={sweep}",
             *ray_init],
            check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
        )
        log = r.stdout + r.stderr
        assert r.returncode == 0, log[-3000:]
        assert "Ray Launcher is launching 2 jobs" in log, log[-3000:]
        # The launcher never calls ray.shutdown(); the driver's atexit hook must stop its Ray.
        left = _leftovers(ray_tmp, wait_s=20)
        assert not left, left
    finally:
        for pid in _processes_mentioning(ray_tmp):  # only this test's Ray, after a failure
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)

    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    scores = {}
    for job, k in (("0", 5), ("1", 10)):
        out = sweep / job
        assert f"anomaly.scorers.spatial.k={k}" in (out / ".hydra" / "overrides.yaml").read_text()
        scans = pd.read_parquet(out / "scans.parquet")
        assert (scans["status"] == "ok").all() and len(scans) == 1
        regions = pd.read_parquet(out / "regions.parquet")
        # Each Ray job writes exactly the table of the same run in this process.
        serial = tmp_path / f"serial-k{k}"
        cfg = pipeline_config(compose([*common, f"anomaly.scorers.spatial.k={k}"]))
        assert run_pipeline(cfg, serial) == 0
        pd.testing.assert_frame_equal(regions, pd.read_parquet(serial / "regions.parquet"))
        scores[k] = regions["spatial_score"].to_numpy()
    assert len(scores[5]) == len(scores[10]) == 30
    assert (scores[5] != scores[10]).any()
