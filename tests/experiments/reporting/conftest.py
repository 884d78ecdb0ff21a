"""Fixtures of the reporting tests: a synthetic run dir, a built report, Debian's Chromium."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


def _load_helper():
    # conftest is imported before its folder is on sys.path: load the helper by file
    name = "_report_fixture"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


make_run_dir = _load_helper().make_run_dir


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run_dir(tmp_path)


@pytest.fixture(scope="session")
def built_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run dir with its report built once for the session (index.html path)."""
    from experiments.reporting import write_report

    run = make_run_dir(tmp_path_factory.mktemp("report"))
    return write_report(run, top_n=50)
