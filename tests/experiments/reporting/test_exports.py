"""CSV / Excel exports of a run's tables, with units in the column names."""

from __future__ import annotations

import builtins

import numpy as np
import pandas as pd
import pytest

from experiments.reporting.exports import ExportError, MissingExtraError, export_tables, unit_label


def _run(tmp_path, *, clusters=True):
    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame({
        "scan_id": ["a", "b"], "status": ["ok", "failed"], "area_fraction": [0.01, np.nan],
        "number_density_per_mm2": [120.0, np.nan], "pixel_size_um": [0.5, 0.5], "t_total_s": [1.5, 0.1],
        "error": ["", "bad\x07 bytes"],
    }).to_parquet(run / "scans.parquet")
    if clusters:
        pd.DataFrame({"scan_id": ["a"], "cluster_id": [1], "rank": [1], "bbox_rmin": [3]}).to_parquet(run / "clusters.parquet")
    pd.DataFrame({"scan_id": ["a"], "field_row": [0], "field_col": [0], "type": ["B"], "series": ["thin"],
                  "severity": [1.0], "total_length_um": [87.0], "count": [1]}).to_parquet(run / "ratings.parquet")
    return run


def test_unit_labels():
    assert unit_label("area_um2") == "area [µm²]"
    assert unit_label("feret_max_px") == "feret_max [px]"
    assert unit_label("e1245_mean_free_path_um_mean") == "e1245_mean_free_path_um_mean"
    assert unit_label("rating_direction_deg") == "rating_direction [°]"
    assert unit_label("peak_rss_mb") == "peak_rss [MB]"
    assert unit_label("status") == "status" and unit_label("_s") == "_s"


def test_csv_and_xlsx(tmp_path):
    pytest.importorskip("openpyxl")
    run = _run(tmp_path)
    files = export_tables(run)
    names = sorted(p.name for p in files)
    assert names == ["clusters.csv", "quantmet.xlsx", "ratings.csv", "scans.csv"]
    scans = pd.read_csv(run / "exports" / "scans.csv", encoding="utf-8-sig")
    assert list(scans.columns) == ["scan_id", "status", "area_fraction", "number_density [1/mm²]", "pixel_size [µm]",
                                   "t_total [s]", "error"]
    assert scans["t_total [s]"].tolist() == [1.5, 0.1]
    book = pd.read_excel(run / "exports" / "quantmet.xlsx", sheet_name=None)
    assert list(book) == ["scans", "clusters", "ratings"]
    assert "total_length [µm]" in book["ratings"].columns and book["ratings"]["severity"].tolist() == [1.0]
    assert book["scans"]["error"].tolist()[1] == "bad bytes"  # control characters dropped for Excel


def test_missing_table_is_skipped_with_a_note(tmp_path):
    run = _run(tmp_path, clusters=False)
    files = export_tables(run, formats=("csv",))
    assert sorted(p.name for p in files) == ["notes.txt", "ratings.csv", "scans.csv"]
    assert "clusters: skipped, clusters.parquet not in the run dir" in (run / "exports" / "notes.txt").read_text()


def test_missing_openpyxl_names_the_extra(tmp_path, monkeypatch):
    run = _run(tmp_path)
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "openpyxl" or name.startswith("openpyxl."):
            raise ImportError("No module named 'openpyxl'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(MissingExtraError, match=r"quantmet\[excel\]"):
        export_tables(run, formats=("xlsx",))


def test_bad_requests(tmp_path):
    with pytest.raises(ExportError, match="not found"):
        export_tables(tmp_path / "nope")
    run = _run(tmp_path)
    with pytest.raises(ExportError, match="format"):
        export_tables(run, formats=("pdf",))
    with pytest.raises(ExportError, match="table"):
        export_tables(run, formats="csv", tables=("regions",))
