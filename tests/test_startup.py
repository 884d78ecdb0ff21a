"""Start-up: what a run imports and what the Hydra app skips (issue 25, item 3).

A mask-only run must not import TensorFlow or Keras (nor Matplotlib: the report draws with Pillow);
``import data`` / ``import anomaly`` import their submodules on first use; the task schemas are
registered only when the command can select them; a bad value answers before the pipeline's
modules load.  Timings are measured by ``+exp=bench_process``, not here.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from experiments import _startup
from experiments.research.bench.process import parse_importtime

from conftest import REPO, write_mask

CONF = str(REPO / "conf")
#: Deep-learning stacks (and plotting) that a mask-only run has no use for.
FORBIDDEN = ("tensorflow", "keras", "matplotlib", "torch", "jax")
#: What --help and a config error have no use for either (0.7 s of imports on this machine).
CONFIG_TIME_FORBIDDEN = ("pandas", "scipy", "skimage", "pyarrow", "ray")

# Runs the app as `python -m experiments.run` does and writes the top-level packages imported by exit.
_RUNNER = textwrap.dedent("""
    import atexit, json, runpy, sys
    out = sys.argv.pop(1)
    atexit.register(lambda: open(out, "w").write(json.dumps(sorted({m.split(".")[0] for m in sys.modules}))))
    sys.argv[0] = "experiments.run"
    runpy.run_module("experiments.run", run_name="__main__", alter_sys=True)
""")


def _run(tmp_path: Path, *args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, set[str]]:
    mods = tmp_path / f"modules-{len(list(tmp_path.glob('modules-*')))}.json"
    r = subprocess.run([sys.executable, "-c", _RUNNER, str(mods), *args], cwd=REPO, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "QUANTMET_NO_PROGRESS": "1", **(env or {})})
    return r, set(json.loads(mods.read_text())) if mods.is_file() else set()


@pytest.mark.parametrize("preset", [
    ("+exp=mlography",),
    # the archive preset runs on Ray; serial here (the same stage runs in each Ray worker), so no Ray start
    ("+exp=archive", "data.kind=mask", "runtime=serial"),
])
def test_mask_only_run_imports_no_deep_learning_stack(tmp_path, preset):
    masks = tmp_path / "masks"
    write_mask(masks / "a.png", seed=1)
    write_mask(masks / "b.png", seed=2, n=12)
    phases = tmp_path / "phases.json"
    r, modules = _run(tmp_path, *preset, f"data.input={masks}", f"hydra.run.dir={tmp_path / 'run'}",
                      env={_startup.PHASES_ENV: str(phases)})
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert (tmp_path / "run" / "report" / "index.html").is_file()
    assert {"numpy", "pandas", "scipy", "hydra"} <= modules  # the check sees the run's imports
    assert not modules & set(FORBIDDEN), f"a mask-only run imported {sorted(modules & set(FORBIDDEN))}"
    stamps = json.loads(phases.read_text())
    assert list(stamps) == ["module", "ready", "main", "task", "done"]
    assert stamps["module"] <= stamps["ready"] <= stamps["main"] <= stamps["task"] <= stamps["done"]


def test_bad_value_answers_before_the_pipeline_modules_load(tmp_path):
    r, modules = _run(tmp_path, "+exp=mlography", "data.input=x.png", "data.kind=bogus",
                      f"hydra.run.dir={tmp_path / 'run'}")
    assert r.returncode == 2, r.stderr[-2000:]
    assert "data.kind must be 'scan' or 'mask', got 'bogus'" in r.stdout + r.stderr
    # the typed sections check it before the pipeline's modules (pandas, SciPy, PyArrow) load
    assert not modules & {*FORBIDDEN, *CONFIG_TIME_FORBIDDEN}, sorted(modules)


def test_help_lists_the_schema_groups(tmp_path):
    r, modules = _run(tmp_path, "--help")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "bench: anomaly, archive" in r.stdout and "exp: archive, bench_anomaly" in r.stdout
    # the typed pipeline sections (experiments.config) import the domain packages' config classes (and so
    # NumPy); the domain modules import pandas and SciPy where they use them, so neither loads for --help
    assert not modules & {*FORBIDDEN, *CONFIG_TIME_FORBIDDEN}, sorted(modules)


def test_packages_import_their_names_on_first_use():
    code = textwrap.dedent("""
        import sys, data, anomaly
        heavy = sorted({"numpy", "pandas", "scipy", "cv2"} & {m.split(".")[0] for m in sys.modules})
        assert not heavy, heavy
        for pkg in (data, anomaly):
            assert pkg.__all__ and set(pkg.__all__) <= set(dir(pkg))
            for name in pkg.__all__:
                assert getattr(pkg, name) is not None, name
        from data import QuantmetError, read_scan
        from data.io import read_scan as direct
        assert read_scan is direct
        try:
            data.no_such_name
        except AttributeError as exc:
            assert "no_such_name" in str(exc)
        else:
            raise AssertionError("no AttributeError")
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.parametrize(("args", "needed"), [
    (["+exp=mlography", "data.input=x"], False),
    (["+exp=archive", "data.kind=mask"], False),
    (["-m", "+exp=mlography,archive", "anomaly.scorers.spatial.k=5,10"], False),
    (["+exp=report", "report.top_n=5"], False),
    (["+exp=report", "run_dir=x"], True),  # a top-level key might be a group: ask for everything
    (["data.input=x", "runtime=ray"], False),
    (["+exp=bench_process"], True),
    (["+exp=mlography,bench_area"], True),
    (["+exp=compare"], True),
    (["+bench=process", "task=bench_process"], True),
    (["+exp=no_such_preset"], True),
    (["--help"], True),
    (["+exp=mlography", "--cfg", "job"], True),
])
def test_schemas_are_registered_only_when_the_command_can_select_them(args, needed):
    assert _startup.needs_schemas(CONF, args) is needed


def test_a_preset_that_includes_another_asks_for_the_schemas(tmp_path):
    conf = tmp_path / "conf"
    (conf / "exp").mkdir(parents=True)
    (conf / "data").mkdir()
    (conf / "config.yaml").write_text("defaults:\n  - data: default\n  - _self_\n")
    (conf / "exp" / "plain.yaml").write_text("# @package _global_\ndefaults:\n  - override /data: default\n")
    (conf / "exp" / "nested.yaml").write_text("# @package _global_\ndefaults:\n  - plain\n")
    (conf / "exp" / "schema.yaml").write_text("# @package _global_\ndefaults:\n  - /train: unet\n")
    assert not _startup.needs_schemas(str(conf), ["+exp=plain"])
    assert _startup.needs_schemas(str(conf), ["+exp=nested"])
    assert _startup.needs_schemas(str(conf), ["+exp=schema"])


def test_mode_probe_is_skipped_only_when_nothing_can_set_hydra_mode(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["experiments.run"])
    assert not _startup._mode_may_be_set(CONF, ["+exp=mlography", "data.input=x"])
    assert _startup._mode_may_be_set(CONF, ["hydra.mode=MULTIRUN"])
    assert _startup._mode_may_be_set(CONF, ["+hydra/launcher=ray"])
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "a.yaml").write_text("mode: serial\n")  # a runtime option, not Hydra's
    assert not _startup._mode_may_be_set(str(conf), [])
    (conf / "b.yaml").write_text("# @package _global_\nhydra:\n  mode: MULTIRUN\n")
    assert _startup._mode_may_be_set(str(conf), [])
    monkeypatch.setattr(sys, "argv", ["experiments.run", "--config-dir", str(tmp_path)])
    assert _startup._mode_may_be_set(CONF, [])


def test_copied_config_sources_share_the_config_store():
    from hydra._internal.core_plugins.structured_config_source import StructuredConfigSource
    from hydra.core.config_store import ConfigStore

    _startup.share_config_store()
    _startup.share_config_store()  # idempotent
    src = StructuredConfigSource(provider="schema", path="structured://")
    dup = copy.deepcopy({"sources": [src]})["sources"][0]
    assert dup is not src and dup.store is ConfigStore.instance() and dup.provider == "schema"


def test_lazy_submodules_load_on_first_use():
    code = textwrap.dedent("""
        import sys
        from experiments import _startup
        _startup.lazy_submodules(("json.tool",))
        import json.tool
        assert type(sys.modules["json.tool"]).__name__ == "_LazyModule"
        assert callable(json.tool.main)  # first attribute access runs the module
        assert type(sys.modules["json.tool"]).__name__ == "module"
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]


def test_pause_and_resume_gc():
    import gc

    assert gc.isenabled()
    _startup.resume_gc()  # running: nothing to do
    assert gc.isenabled()
    try:
        _startup.pause_gc()
        assert not gc.isenabled()
        _startup.resume_gc()
        assert gc.isenabled()
    finally:
        gc.unfreeze()
        gc.enable()


def test_parse_importtime():
    text = "\n".join([
        "import time: self [us] | cumulative | imported package",
        "import time:    100000 |     100000 |     numpy.core",
        "import time:    400000 |     500000 |   numpy",
        "import time:     50000 |     550000 | pandas",
        "import time:     20000 |      20000 | json",
        "not an import line",
    ])
    out = parse_importtime(text, top=2)
    assert out["modules"] == 4 and out["total_s"] == pytest.approx(0.57)
    assert out["top"] == [{"module": "pandas", "cumulative_s": 0.55}, {"module": "json", "cumulative_s": 0.02}]
    assert out["packages"] == [{"package": "numpy", "self_s": 0.5}, {"package": "pandas", "self_s": 0.05}]
