"""eval_calibration on a few generated files: the result files and their metrics."""

import json

import pytest

from experiments.research.evaluation.calibration import _false_regions, run


def test_false_regions_counts():
    import numpy as np

    labels = np.zeros((10, 10), np.int32)
    labels[1:3, 1:3] = 1  # on the annotation
    labels[6:8, 6:8] = 2  # real, away from it
    labels[4, 4:6] = 3  # real, touching the exclusion mask
    truth = np.zeros((10, 10), bool)
    truth[0:3, 0:4] = True
    exclude = truth.copy()
    exclude[3, 4] = True
    assert _false_regions(labels, truth, exclude) == {"before": 1, "after": 0, "lost": 1, "total": 3}
    assert _false_regions(labels, truth, np.zeros_like(truth))["after"] == 1


@pytest.mark.slow
def test_eval_calibration_writes_its_results(tmp_path, compose):
    cfg = compose(["+exp=eval_calibration", "eval.n_files=3", "eval.segmenters=[classical]", "eval.metadata_files=1",
                   "eval.data_root=", "eval.real_scans_check=false", "eval.shape=[300,400]", "eval.pipeline_files=2",
                   "segmentation=classical"])
    assert run(cfg, tmp_path) == 0
    res = json.loads((tmp_path / "calibration_eval.json").read_text())
    s = res["summary"]
    assert s["files"] == 3 and 0 <= s["within_tolerance"] <= 1 and "classical_false_regions_after" in s
    assert {r["format"] for r in res["metadata"]} >= {"ImageJ (Fiji, unit=micron)", "OME-TIFF (µm)",
                                                      "FEI/Thermo (tag 34682)", "Zeiss SEM (nm)"}
    assert all(r["exact"] for r in res["metadata"] if r["files"])
    assert len(res["files"]) == 3 and all(r["seed"] >= 12_000_000 for r in res["files"])
    assert "## Metadata exactness per format" in (tmp_path / "calibration_eval.md").read_text()
    # whole runs with and without the exclusion: regions and top-3 clusters on the annotation
    runs = {r["annotations_excluded"]: r for r in res["pipeline"]}
    assert set(runs) == {True, False} and runs[True]["scans"] == 2
    assert runs[True]["regions_on_annotation"] <= runs[False]["regions_on_annotation"]
    assert runs[False]["regions_on_annotation"] > 0  # the burned-in bar and text are segmented without it
