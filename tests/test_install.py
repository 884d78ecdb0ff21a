"""The installed entry points work from a user's own folder (console script, a data/ folder there)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
MASK = REPO / "data" / "samples" / "impurity_masks" / "10.png"


def test_a_data_folder_in_the_working_directory_does_not_shadow_the_package(tmp_path):
    (tmp_path / "data" / "raw").mkdir(parents=True)  # common in research projects
    r = subprocess.run([sys.executable, "-c", "from data import read_scan; import data; print(data.__file__)"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-1500:]
    assert Path(r.stdout.strip()).resolve() == (REPO / "data" / "__init__.py").resolve()


def test_quantmet_console_script_with_a_non_ascii_path(tmp_path):
    exe = shutil.which("quantmet", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("quantmet console script not installed in this environment (pip install -e .)")
    folder = tmp_path / "Proben µm" / "Stahl ä"
    folder.mkdir(parents=True)
    shutil.copy(MASK, folder / "10.png")
    (tmp_path / "data").mkdir()
    out = tmp_path / "run"
    r = subprocess.run([exe, "+exp=mlography", f"data.input={folder}", f"hydra.run.dir={out}", "report.html=false"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]
    assert pd.read_parquet(out / "scans.parquet")["scan_id"].tolist() == ["10"]
    assert "cuInit" not in r.stdout + r.stderr and "oneDNN" not in r.stdout + r.stderr
