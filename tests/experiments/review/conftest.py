"""Fixtures of the review app tests (helpers in _review_helpers.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


def _load_helper():
    # conftest is imported before its folder is on sys.path: load the helper by file
    name = "_review_helpers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_h = _load_helper()


@pytest.fixture(scope="session")
def review_template(tmp_path_factory) -> Path:
    """One synthetic run dir per test session (copied for each test that writes to it)."""
    return _h.make_run(tmp_path_factory.mktemp("review-template"))


@pytest.fixture
def review_run(review_template, tmp_path) -> Path:
    """A fresh copy of the template run dir (no verdicts yet)."""
    return _h.copy_run(review_template, tmp_path)
