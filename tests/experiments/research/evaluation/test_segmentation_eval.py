"""eval_segmentation: one detection limit for every method, counts, targets, bootstrap intervals, faint labels."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from conftest import fake_mlography_root
from scipy import ndimage


def test_drop_small_and_bootstrap_interval():
    from experiments.research.evaluation.segmentation import bootstrap_interval, drop_small

    m = np.zeros((20, 20), bool)
    m[2:4, 2:4] = True  # 4 px
    m[10, 10:13] = True  # 3 px
    m[15, 15] = m[16, 16] = True  # 2 px, 8-connected
    out = drop_small(m, 4)
    assert out[2:4, 2:4].all() and out.sum() == 4
    np.testing.assert_array_equal(drop_small(m, 1), m)
    v = np.random.default_rng(0).normal(0.6, 0.05, 40)
    lo, hi = bootstrap_interval(v, n_boot=2000, seed=1)
    assert lo < v.mean() < hi and hi - lo < 0.05
    assert bootstrap_interval([0.5, np.nan, 0.7])[0] >= 0.5
    assert all(math.isnan(x) for x in bootstrap_interval([0.5]))


def test_targets_table_says_met_and_not_worse_plainly():
    import pandas as pd

    from experiments.research.evaluation.segmentation import targets_table

    summary = pd.DataFrame([
        {"method": "U-Net (quantmet)", "object_f1_tol": 0.85, "iou": 0.35, "area_fraction_abs_rel_error": 0.2},
        {"method": "MLography published", "object_f1_tol": 0.7, "iou": 0.38, "area_fraction_abs_rel_error": 0.3},
    ])
    t = targets_table(summary, {"object_f1_tol": 0.82, "iou": 0.40, "area_fraction_abs_rel_error": 0.15})
    rows = {r["measure"]: r for r in t.to_dict(orient="records")}
    assert rows["object_f1_tol"]["target met"] == "yes" and rows["object_f1_tol"]["not worse than prior art"] == "yes"
    assert rows["iou"]["target met"] == "NO" and rows["iou"]["not worse than prior art"] == "NO"
    assert rows["area_fraction_abs_rel_error"]["target met"] == "NO"
    assert rows["area_fraction_abs_rel_error"]["not worse than prior art"] == "yes"


def test_ring_contrast_tells_blank_labels_from_dark_spots_on_pale_and_dark_grains():
    from data.registration import ring_contrast

    rng = np.random.default_rng(3)
    img = np.full((120, 240), 200.0)
    img[:, 120:] = 110.0  # a dark grain beside a pale one
    img += rng.normal(0, 3, img.shape)
    labels = np.zeros(img.shape, bool)
    spots = [(20, 20), (60, 60), (20, 150), (90, 200)]  # two on each grain
    blanks = [(90, 40), (60, 170)]  # labels where the scan shows nothing
    for r, c in spots:
        img[r : r + 4, c : c + 4] -= 40
    for r, c in spots + blanks:
        labels[r : r + 4, c : c + 4] = True
    contrast, z, noise = ring_contrast(img, labels)
    lab, _ = ndimage.label(labels, np.ones((3, 3)))
    order = [lab[r, c] - 1 for r, c in spots + blanks]
    assert 2.0 < noise < 5.0
    assert np.all(z[order[:4]] > 5) and np.all(np.abs(z[order[4:]]) < 5)
    # a global comparison would call the spots on the dark grain darker than the blank on the pale one
    assert np.all(np.abs(contrast[order[:4]] - 40) < 8)
    with pytest.raises(ValueError, match="one shape"):
        ring_contrast(img, labels[:-1])
    c0, z0, _ = ring_contrast(img, np.zeros(img.shape, bool))
    assert c0.size == z0.size == 0
    # a label drawn 1 px beside its spot: faint in place, found with a 1-px search
    off = np.zeros(img.shape, bool)
    off[21 : 21 + 4, 23 : 23 + 4] = True  # the spot at (20, 20) lies 1 px up and 3 px left
    off[59 : 59 + 4, 61 : 61 + 4] = True  # the spot at (60, 60): 1 px down and right
    _, z_in, _ = ring_contrast(img, off)
    _, z_1, _ = ring_contrast(img, off, search_px=1)
    full = z[order[1]]  # the same spot's z with a label right on it
    assert z_in[1] < 0.7 * full and z_1[1] == pytest.approx(full, rel=0.15)  # found at a 1-px shift
    assert z_1[0] < 0.7 * full  # 3 px off: only partly found within 1 px
    with pytest.raises(ValueError, match="search_px"):
        ring_contrast(img, labels, search_px=-1)


def _with_prior_art(root, names=("12", "13")):
    """Add the prior art's impurity masks (a copy of the labels plus specks) and boundaries."""
    for name in names:
        lab = cv2.imread(str(root / "scans/impurity_masks" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
        ref = lab.copy()
        ref[100, 100:102] = 255  # a 2-px speck: under the detection limit
        ref[120, 150:153] = 255  # 3 px
        (root / "reference_outputs/impurity_masks").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "reference_outputs/impurity_masks" / f"{name}.png"), ref)
        inp = cv2.imread(str(root / "reference_outputs/inpainted" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
        edges = cv2.Canny(inp, 10, 30)
        (root / "reference_outputs/grain_boundaries").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "reference_outputs/grain_boundaries" / f"{name}.png"), edges)


def test_eval_applies_one_detection_limit_to_every_method_and_reports_counts(compose, tmp_path):
    from experiments.research.evaluation.segmentation import run

    root = fake_mlography_root(tmp_path)
    _with_prior_art(root)
    base = ["+exp=eval_segmentation", f"eval.data_root={root}", "eval.scans=[12,13]",
            "eval.grain_scans=[12,13]", "eval.methods=[classical,reference]", "eval.bootstrap=200"]
    assert run(compose(base), tmp_path / "out") == 0
    out = json.loads((tmp_path / "out" / "segmentation_eval.json").read_text())
    ref = out["impurities"]["reference"]
    # the prior art's mask is the labels plus two specks under 4 px: with the limit it is perfect
    for r in ref:
        assert r["n_pred"] == r["n_true"] and r["f1"] == 1.0 and r["count_rel_error"] == 0.0
        assert r["n_regions_pipeline"] == r["n_pred"]
    summary = {r["method"]: r for r in out["summary"]}
    assert summary["MLography published"]["count_abs_rel_error"] == 0.0
    assert summary["MLography published"]["labelled_objects"] == sum(r["n_true"] for r in ref)
    g = summary["MLography published"]
    assert g["boundary_f1_ci95_low"] <= g["boundary_f1"] <= g["boundary_f1_ci95_high"]
    assert g["heyn_abs_rel_error_ci95_low"] <= g["heyn_abs_rel_error"] <= g["heyn_abs_rel_error_ci95_high"]
    assert {t["measure"] for t in out["targets"]} == set()  # no U-Net in this run: no target rows
    per_scan = out["per_scan"]
    assert len(per_scan) == 4 and {"labelled objects", "objects", "count error"} <= set(per_scan[0])
    md = (tmp_path / "out" / "segmentation_eval.md").read_text()
    assert "Detection limit: objects under 4 px" in md and "Per scan" in md
    # without the limit the specks are objects of their own (false positives of the prior art)
    assert run(compose([*base, "eval.min_area_px=1", "eval.limit_labels=false"]), tmp_path / "o2") == 0
    out2 = json.loads((tmp_path / "o2" / "segmentation_eval.json").read_text())
    for r in out2["impurities"]["reference"]:
        assert r["n_pred"] == r["n_true"] + 2


def _shipped() -> bool:
    from segmentation.models import weights_path

    return all(weights_path(k).is_file() for k in ("impurities", "grains"))


@pytest.mark.skipif(not _shipped(), reason="shipped weights not installed")
def test_tuning_follows_its_rule_and_refuses_validation_scans(compose, tmp_path):
    pytest.importorskip("keras")
    from experiments.research.evaluation.config import EvalSegmentationConfig
    from experiments.research.evaluation.segmentation import F1_BUDGET, run, tune_grains, tune_impurities

    root = fake_mlography_root(tmp_path)
    cfg = EvalSegmentationConfig(data_root=str(root), tune="impurities", bootstrap=200, tune_grid={
        "threshold": [0.1, 0.3, 0.5], "extent_threshold": [None, 0.5], "depth_fraction": [None, 0.5],
        "depth_smooth_sigma": [1.0]})
    res = tune_impurities(cfg, ["12", "13"])
    ok = [g for g in res["grid"] if g["object_f1"] >= res["today"]["object_f1"] - F1_BUDGET
          and g["object_f1_tol"] >= res["today"]["object_f1_tol"] - F1_BUDGET]
    assert res["n_within_budget"] == len(ok) and len(res["grid"]) == 3 + 2 + 3  # (t, e > t) + depth
    if ok:
        assert res["choice"]["objective"] == pytest.approx(min(g["objective"] for g in ok), abs=1e-4)
    g = tune_grains(EvalSegmentationConfig(data_root=str(root), bootstrap=200, tune_grid={
        "threshold": [0.2, 0.3], "high_threshold": [None], "spur_length_px": [0, 10],
        "min_mean_prob": [0.0]}), ["12", "13"])
    assert len(g["grid"]) == 4 and g["n_regions"] == 2
    assert g["choice"] == (g["best"] if g["significant"] else g["today"])
    with pytest.raises(ValueError, match="validation scans"):
        tune_impurities(cfg, ["15", "17"])
    out = tmp_path / "tune"
    assert run(compose(["+exp=eval_segmentation", f"eval.data_root={root}", "eval.tune=impurities",
                        "eval.scans=[12]", "+eval.tune_grid.threshold=[0.3]"]), out) == 0
    assert "Rule:" in (out / "postprocess_tuning.md").read_text()


def test_ring_and_grouped_statistics_match_scipy():
    # data.registration helpers (used by ring_contrast and segmentation.refine)
    from data.registration import label_median, label_minimum, object_rings

    rng = np.random.default_rng(0)
    mask = rng.random((60, 80)) > 0.97
    lt, n = ndimage.label(mask, np.ones((3, 3)))
    vals = rng.normal(size=mask.shape)
    ids = np.arange(1, n + 1)
    np.testing.assert_allclose(label_minimum(vals, lt, n), ndimage.minimum(vals, lt, ids))
    np.testing.assert_allclose(label_median(vals, lt, n), ndimage.median(vals, lt, ids))
    rings = object_rings(lt, gap=1, width=2)
    dist = ndimage.distance_transform_cdt(lt == 0, metric="chessboard")
    np.testing.assert_array_equal(rings > 0, (dist > 1) & (dist <= 3))
    # a ring pixel belongs to an object at its chessboard distance
    rr, cc = np.nonzero(rings)
    for r, c in list(zip(rr, cc))[::37]:
        orr, occ = np.nonzero(lt == rings[r, c])
        assert np.max(np.abs(np.c_[orr - r, occ - c]), axis=1).min() == dist[r, c]
    assert np.isnan(label_median(vals, np.zeros_like(lt), 2)).all()


def test_eval_takes_the_runs_detection_limit(compose):
    from experiments.config import dataclass_from
    from experiments.research.evaluation.config import EvalSegmentationConfig

    for over, want in (([], 4), (["data.min_area_px=6"], 6)):
        cfg = compose(["+exp=eval_segmentation", *over])
        assert dataclass_from(EvalSegmentationConfig, cfg.eval, where="eval").min_area_px == want
    with pytest.raises(ValueError, match="tune"):
        EvalSegmentationConfig(tune="everything")


def test_faint_label_sheet_outlines_faint_in_red_and_visible_in_green():
    from experiments.research.evaluation.segmentation import faint_label_sheet

    img = np.full((60, 60), 180, np.uint8)
    labels = np.zeros((60, 60), bool)
    labels[10:14, 10:14] = labels[40:44, 40:44] = True
    z = np.array([2.0, 9.0])
    sheet = faint_label_sheet(img, labels, z, faint_z=5.0, n=2, half=6, zoom=3, per_row=2)
    assert sheet.ndim == 3 and sheet.shape[2] == 3 and sheet.dtype == np.uint8
    colours = {tuple(int(v) for v in c) for c in sheet.reshape(-1, 3)}
    assert (0, 0, 255) in colours and (0, 200, 0) in colours
    assert faint_label_sheet(img, np.zeros_like(labels), np.zeros(0)).shape == (8, 8, 3)
