"""The pipeline's shape: one row schema, one committer, typed sections, short functions."""

from __future__ import annotations

import ast
import dataclasses
import errno
import pickle
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.errors import ConfigCompositionException

from data.inputs import ScanInput
from experiments.config import ConfigError, PipelineConfig, pipeline_config
from experiments.pipeline import checkpoint
from experiments.pipeline.commit import CommittingStage
from experiments.pipeline.result import (
    SCAN_COLUMNS,
    SCAN_SCHEMA,
    ScanResult,
    ScanTask,
    ScanWriteError,
    read_scan_table,
    scan_row,
    scan_rows_frame,
)
from experiments.pipeline.validate import validate_pipeline

PIPELINE = Path(__file__).resolve().parents[3] / "experiments" / "pipeline"


def _function_lengths():
    for p in sorted(PIPELINE.glob("*.py")):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield p.name, node.name, node.end_lineno - node.lineno + 1


def test_no_function_over_80_lines_and_a_short_validate():
    lengths = list(_function_lengths())
    assert [x for x in lengths if x[2] > 80] == []
    assert dict(((f, n), v) for f, n, v in lengths)[("validate.py", "validate_pipeline")] < 60


def _section_types(cls: type):
    for name, tp in typing.get_type_hints(cls).items():
        yield f"{cls.__name__}.{name}", tp
        inner = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)] or [tp]
        if dataclasses.is_dataclass(inner[0]):
            yield from _section_types(inner[0])


def test_no_dict_section_in_the_pipeline_config():
    sections = {k: tp for k, tp in _section_types(PipelineConfig) if k.startswith(
        ("PipelineConfig.", "DataConfig.", "SegmentationConfig.", "AnomalyConfig.", "ScorersSection."))}
    untyped = {k for k, tp in sections.items() if tp in (dict, typing.Any) or typing.get_origin(tp) is dict}
    assert untyped == set()


def test_wrong_type_or_key_fails_at_composition_with_hydras_message(compose):
    with pytest.raises(ConfigCompositionException, match="data.min_area_px"):
        compose(["data.min_area_px=many"])
    with pytest.raises(ConfigCompositionException, match="max_gap_um"):
        compose(["anomaly.area.max_gap_um=far"])
    with pytest.raises(ConfigCompositionException, match="no_such_key"):
        compose(["report.no_such_key=1"])
    # a key forced in with + is refused when the typed config is built
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['kk'\] in anomaly.scorers.spatial"):
        pipeline_config(compose(["+anomaly.scorers.spatial.kk=3"]))
    # a null scorer takes a mapping of options
    pc = pipeline_config(compose(["anomaly.scorers.shape={min_area_px: 20}"]))
    assert pc.anomaly.scorers.shape.min_area_px == 20


def test_cross_field_checks_stay_in_validate(compose):
    pc = pipeline_config(compose(["data.kind=mask", "anomaly.scorers.circle=null"]))
    with pytest.raises(ConfigError, match="not among the configured scorers"):
        validate_pipeline(pc)


def test_the_row_schema_is_declared_once_and_typed(tmp_path):
    item = ScanInput(scan_id="a", path=tmp_path / "a.png")
    with pytest.raises(ValueError, match="not scans.parquet columns"):
        scan_row(item, "mask", undeclared_measure=1.0)
    rows = [scan_row(item, "mask", n_regions=3, area_fraction=0.1), scan_row(item, "mask", status="failed")]
    df = scan_rows_frame(rows)
    assert tuple(df.columns) == SCAN_COLUMNS
    kinds = {"str": "object", "int": "Int64", "float": "float64", "bool": "bool"}
    for c, kind in SCAN_SCHEMA.items():
        assert str(df[c].dtype) in (kinds[kind], "string", "str"), c
    df.to_parquet(tmp_path / "scans.parquet", index=False)
    back = read_scan_table(tmp_path / "scans.parquet")
    assert back["n_regions"].tolist()[0] == 3 and pd.isna(back["n_regions"].tolist()[1])


class _Stage:
    def __init__(self, files):
        self.files = files
        self.warmed = False

    def warm_up(self):
        self.warmed = True

    def __call__(self, task):
        row = {"status": "ok", "scan_id": task.item.scan_id}
        return ScanResult(task.item.scan_id, row, files=dict(self.files))


def test_the_runner_commits_the_scan_on_the_worker(tmp_path):
    stage = CommittingStage(_Stage({"labels/a.tif": b"x", "crops/a-1.png": b"y"}))
    stage.warm_up()
    assert stage.stage.warmed
    item = ScanInput(scan_id="a", path=tmp_path / "a.png")
    r = stage(ScanTask(item, run_root=str(tmp_path), input_id={"size": 1}, config_hash="h"))
    assert r.files == {} and sorted(r.written) == ["crops/a-1.png", "labels/a.tif"] and r.write_error is None
    assert (tmp_path / "labels" / "a.tif").read_bytes() == b"x"
    assert checkpoint.PartStore(tmp_path / "parts").meta("a")["files"] == ["labels/a.tif"]
    kept = stage(ScanTask(item))  # no run dir: the files stay in memory
    assert set(kept.files) == {"labels/a.tif", "crops/a-1.png"}


def test_a_write_failure_comes_back_as_an_exception_with_its_errno(tmp_path, monkeypatch):
    def full(path, content):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "write_atomic", full)
    stage = CommittingStage(_Stage({"labels/a.tif": b"x"}))
    r = stage(ScanTask(ScanInput(scan_id="a", path=tmp_path / "a.png"), run_root=str(tmp_path)))
    assert isinstance(r.write_error, ScanWriteError) and r.files == {}
    back = pickle.loads(pickle.dumps(r.write_error))  # it crosses the Ray boundary
    assert back.errno == errno.ENOSPC and back.strerror == "No space left on device"
    assert isinstance(back, OSError)
    assert np.isnan(scan_row(ScanInput(scan_id="b", path=tmp_path / "b"), "mask")["area_fraction"])
