"""eval_truth, eval_repeatability and the cross-validation of eval_segmentation: their pieces and tiny runs."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from experiments.research.evaluation import repeatability as rep
from experiments.research.evaluation import truth
from experiments.research.evaluation.config import EvalRepeatabilityConfig
from experiments.research.evaluation.segmentation import (
    grain_cv_objective, impurity_cv_objective, kfold_groups)


def _disc_mask(shape, centres, r):
    m = np.zeros(shape, np.uint8)
    for rr, cc in centres:
        cv2.circle(m, (cc, rr), r, 1, -1)
    return m.astype(bool)


def test_size_counts_and_detection_limit():
    truth_m = _disc_mask((100, 100), [(10, 10), (30, 30), (60, 60)], 3) | _disc_mask((100, 100), [(85, 85)], 0)
    pred = _disc_mask((100, 100), [(10, 10), (30, 30), (60, 60)], 3) | _disc_mask((100, 100), [(85, 20)], 2)
    edges = (1, 4, 16, np.inf)
    c = truth.size_counts(pred, truth_m, edges)
    assert c["n_true"].tolist() == [1, 0, 3] and c["m_true"].tolist() == [0, 0, 3]
    assert c["n_pred"].tolist() == [0, 1, 3] and c["m_pred"].tolist() == [0, 0, 3]
    t = truth.by_size_table([c, c], edges)
    assert t["recall"].tolist()[0] == 0 and t["f1"].iloc[2] == 1
    assert truth.detection_limit(t, min_objects=1) == 4  # the empty 4-16 class does not decide
    assert np.isnan(truth.detection_limit(t.assign(recall=0.0), min_objects=1))


def test_boundary_contrast_finds_a_groove_and_its_offset():
    rng = np.random.default_rng(0)
    img = np.full((80, 80), 120.0) + rng.normal(0, 3, (80, 80))
    img[:, 40] -= 12  # a dark groove one px wide at column 40
    labels = np.zeros((80, 80), bool)
    labels[:, 41] = True  # drawn one px off
    d = truth.boundary_contrast(img, labels, max_shift=2)
    assert d["shift"][1] == -1 and 9 < d["depth"] < 15 and d["depth_z"] > 2
    assert 2 < d["noise"] < 4.5
    flat = truth.boundary_contrast(np.full((80, 80), 120.0) + rng.normal(0, 3, (80, 80)), labels)
    assert flat["depth_z"] < 0.6  # no groove: only what the shift search picks from the noise
    with pytest.raises(ValueError, match="no boundary"):
        truth.boundary_contrast(img, np.zeros((80, 80), bool))


def test_perturbations_map_back_to_the_original_frame():
    cfg = EvalRepeatabilityConfig(shift_fraction=0.1)
    img = (np.arange(40 * 60).reshape(40, 60) % 251).astype(np.uint8)
    for kind in ("original", "rot90", "shift"):
        back = rep.unperturb(rep.perturb(img, kind, cfg), kind, img.shape, cfg)
        dr, dc = (4, 6) if kind == "shift" else (0, 0)
        assert np.array_equal(back[dr:, dc:], img[dr:, dc:]), kind
    assert rep.perturb(img, "brighter", cfg).mean() > img.mean() > rep.perturb(img, "darker", cfg).mean()
    with pytest.raises(ValueError, match="unknown perturbation"):
        rep.perturb(img, "upside", cfg)
    # cluster boxes of the rotated scan come back onto the original's boxes
    box = pd.DataFrame({"bbox_rmin": [2], "bbox_cmin": [5], "bbox_rmax": [4], "bbox_cmax": [9]})
    m = np.zeros(img.shape, bool)
    m[2:5, 5:10] = True
    rm = np.rot90(m)
    rows, cols = np.nonzero(rm)
    rot = pd.DataFrame({"bbox_rmin": [rows.min()], "bbox_cmin": [cols.min()],
                        "bbox_rmax": [rows.max()], "bbox_cmax": [cols.max()]})
    assert rep._boxes_back(rot, "rot90", img.shape, cfg).to_dict("records") == box.to_dict("records")


def test_cv_and_box_overlap():
    assert rep.cv([1, 1, 1]) == 0 and np.isnan(rep.cv([1]))
    assert rep.cv([9, 11]) == pytest.approx(np.std([9, 11], ddof=1) / 10)
    a = pd.DataFrame({"bbox_rmin": [0, 50], "bbox_cmin": [0, 50], "bbox_rmax": [10, 60], "bbox_cmax": [10, 60]})
    b = pd.DataFrame({"bbox_rmin": [5], "bbox_cmin": [5], "bbox_rmax": [8], "bbox_cmax": [8]})
    assert rep.box_overlap_count(a, b) == 1 and rep.box_overlap_count(a, a) == 2
    assert rep.box_overlap_count(a, b.iloc[:0]) == 0


def test_cluster_overlap_matches_by_member_pixels_one_to_one():
    a = np.zeros((20, 20), np.int32)
    a[1:3, 1:3] = 1  # rank 1
    a[10:12, 10:12] = 2
    a[15:17, 1:3] = 3
    b = np.zeros_like(a)
    b[2:4, 2:4] = 2  # the original's rank 1, ranked 2nd here
    b[10:12, 10:12] = 1
    b[15:17, 15:17] = 3  # elsewhere: no shared member
    assert rep.cluster_overlap(a, a, 3) == 3
    assert rep.cluster_overlap(a, b, 3) == 2
    assert rep.cluster_overlap(a, b, 1) == 0  # top-1 of each: different clusters
    c = np.zeros_like(a)
    c[1:12, 1:12] = 1  # one big cluster covering two of a's: matched once only
    assert rep.cluster_overlap(a, c, 3) == 1
    assert rep.cluster_overlap(a, np.zeros_like(a), 3) == 0 and rep.cluster_overlap(a, a, 0) == 0
    with pytest.raises(ValueError, match="shape"):
        rep.cluster_overlap(a, a[:5], 3)


def test_perturbation_breakdown():
    per = pd.DataFrame({"scan": ["1"] * 3 + ["2"] * 3, "perturbation": ["original", "jpeg80", "rot90"] * 2,
                        "area_fraction": [0.10, 0.09, 0.10, 0.20, 0.19, 0.20], "count": [100, 90, 100, 50, 45, 50],
                        "top_overlap_fraction": [1.0, 0.5, 1.0, 1.0, 1.0, 1.0]})
    t = rep.perturbation_breakdown(per).set_index("perturbation")
    assert t.loc["jpeg80", "count change % (median)"] == pytest.approx(-10)
    assert t.loc["rot90", "area change % (median)"] == pytest.approx(0)
    assert t.loc["jpeg80", "median CV count without it %"] == pytest.approx(0)
    assert t.loc["rot90", "median CV count without it %"] > 5
    assert t.loc["jpeg80", "top-k overlap (median)"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="original"):
        rep.perturbation_breakdown(per[per["perturbation"] != "original"])


def test_kfold_groups_and_objectives():
    f = kfold_groups(["15", "17", "22", "24", "27", "34", "36", "39"], 4, seed=0)
    assert len(f) == 4 and sorted(s for g in f for s in g) == ["15", "17", "22", "24", "27", "34", "36", "39"]
    assert all(len(g) == 2 for g in f)
    assert kfold_groups(["1", "2", "3"], 10) == [["1"], ["2"], ["3"]] or len(kfold_groups(["1", "2", "3"], 10)) == 3
    rows = [{"f1": 0.8, "iou": 0.4, "area_fraction_rel_error": -0.1}, {"f1": 0.6, "iou": 0.2,
                                                                       "area_fraction_rel_error": 0.3}]
    assert impurity_cv_objective(rows) == pytest.approx(0.7 + 0.3 - 0.2)
    assert grain_cv_objective([{"f1": 0.5, "heyn_rel_error": float("nan")}]) == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="k must be"):
        kfold_groups(["1"], 1)


def test_eval_truth_tiny_run(compose, tmp_path):
    """+exp=eval_truth end to end on one small rendered scan (the shipped U-Nets)."""
    cfg = compose(["+exp=eval_truth", "eval.n_scans=1", "eval.seed=5", "+eval.truth.shape=[192,256]",
                   "+eval.truth.n_grains=60"])
    assert truth.run(cfg, tmp_path) == 0
    out = json.loads((tmp_path / "truth_eval.json").read_text())
    s = out["summary"]
    assert s["n_scans"] == 1 and np.isfinite(s["area_fraction_abs_rel_error"])
    assert {"G_true", "G_pred", "grain_count_true"} <= set(out["per_scan"][0])
    assert (tmp_path / "truth_eval.md").read_text().startswith("# Segmentation against exact truth")


def test_eval_repeatability_tiny_run(compose, tmp_path):
    """+exp=eval_repeatability on a fake data root holding one rendered scan."""
    from data.synthetic_truth import TruthConfig, make_truth_scan

    root = tmp_path / "root"
    (root / "scans" / "images").mkdir(parents=True)
    s = make_truth_scan(TruthConfig(shape=(256, 256), n_grains=60, jpeg_quality=0), seed=2)
    cv2.imwrite(str(root / "scans" / "images" / "7.jpg"), s.pixels, [cv2.IMWRITE_JPEG_QUALITY, 95])
    cfg = compose(["+exp=eval_repeatability", f"eval.data_root={root}", "eval.scans=[7]", "eval.grains=false",
                   "eval.perturbations=[original,rot90,shift,tiling]", "eval.cache_dir=null"])
    assert rep.run(cfg, tmp_path / "out") == 0
    out = json.loads((tmp_path / "out" / "repeatability.json").read_text())
    per = pd.DataFrame(out["per_imaging"])
    assert per["perturbation"].tolist() == ["original", "rot90", "shift", "tiling"]
    # a 90-degree turn of the same pixels: the same impurities, within the watershed's tie-breaking
    a = per.set_index("perturbation")["area_fraction"]
    assert abs(a["rot90"] / a["original"] - 1) < 0.05
    assert out["per_scan"][0]["top_overlap_min"] >= 0 and np.isfinite(out["summary"]["cv_count_median"])
    first = per.set_index("perturbation").loc["original"]
    assert first["top_overlap"] == first["top_k"] <= 10  # the original matches itself
    assert [r["perturbation"] for r in out["per_perturbation"]] == ["rot90", "shift", "tiling"]


def test_isotonic_calibration_recovers_the_labelled_fraction():
    from experiments.research.evaluation.segmentation import (
        calibrated_area_fraction, fit_isotonic, probability_histogram)

    rng = np.random.default_rng(0)
    prob = rng.random((200, 200))
    truth_m = rng.random((200, 200)) < prob ** 2  # over-confident network: P(label | p) = p^2
    h = probability_histogram(prob, truth_m, n_bins=50)
    assert h[0].sum() == prob.size and h[1].sum() == truth_m.sum()
    iso = fit_isotonic([h])
    assert calibrated_area_fraction(h[0], iso) == pytest.approx(truth_m.mean(), rel=1e-6)
    other = rng.random((200, 200))
    n2, _ = probability_histogram(other, np.zeros_like(other, bool), n_bins=50)
    assert calibrated_area_fraction(n2, iso) == pytest.approx(1 / 3, abs=0.02)  # E[p^2]


def test_cross_validation_tiny(tmp_path, monkeypatch):
    """eval.tune=cv on a miniature dataset: folds, the prior art beside, a table per measure."""
    from conftest import fake_mlography_root

    from experiments.research.evaluation import segmentation as seg
    from experiments.research.evaluation.config import EvalSegmentationConfig

    names = ("12", "13", "17", "20")
    root = fake_mlography_root(tmp_path, names=names)
    for sub in ("reference_outputs/impurity_masks", "reference_outputs/grain_boundaries"):
        (root / sub).mkdir(parents=True)
    for n in names:
        m = cv2.imread(str(root / "scans/impurity_masks" / f"{n}.png"), 0)
        cv2.imwrite(str(root / "reference_outputs/impurity_masks" / f"{n}.png"), m)
        cv2.imwrite(str(root / "reference_outputs/grain_boundaries" / f"{n}.png"), np.zeros((152, 200), np.uint8))
    monkeypatch.setattr(seg, "CV_IMPURITY_GRID", {"threshold": [0.1, 0.5], "depth_fraction": [None]})
    monkeypatch.setattr(seg, "CV_GRAIN_GRID", {"threshold": [0.2], "spur_length_px": [0], "min_mean_prob": [0.0]})
    cfg = EvalSegmentationConfig(data_root=str(root), scans=names, grain_scans=names, cv_folds=2,
                                 cache_dir=str(tmp_path / "cache"), tune="cv")
    res = seg.cross_validate(cfg)
    assert len(res["impurities"]["folds"]) == 2 and len(res["grains"]["folds"]) == 2
    f = res["impurities"]["folds"][0]
    assert f["prior_art"]["object_f1"] == pytest.approx(1.0)  # the "prior art" here is the label itself
    assert {"cv", "default", "prior_art", "calibrated"} <= set(res["impurities"]["summary"])
    table = seg.cv_table(res)
    assert table["measure"].tolist() == ["object_f1", "iou", "area_fraction_abs_rel_error", "boundary_f1",
                                         "heyn_abs_rel_error"]
    assert list((tmp_path / "cache").glob("impurities_*.npz"))  # the maps are cached
    assert res["grains"]["default"]["threshold"] == 0.2  # the shipped grain card's

    # another grain model (eval.grain_options.weights): its card sets the default, its maps are predicted
    import json
    import shutil

    from segmentation.models import weights_path

    shipped = weights_path("grains")
    other = tmp_path / "other"
    other.mkdir()
    for f in shipped.parent.glob(shipped.stem + ".*"):
        shutil.copy2(f, other / f.name)
    card = json.loads((other / "unet_grains.json").read_text())
    card["threshold"] = 0.35
    (other / "unet_grains.json").write_text(json.dumps(card))
    cfg2 = EvalSegmentationConfig(data_root=str(root), scans=names, grain_scans=names, cv_folds=2,
                                  cache_dir=str(tmp_path / "cache"), tune="cv",
                                  grain_options={"weights": str(other / "unet_grains.keras")})
    res2 = seg.cross_validate(cfg2)
    assert res2["grains"]["default"]["threshold"] == 0.35
    assert {"threshold": 0.35, "spur_length_px": 0, "min_mean_prob": 0.0} in res2["grains"]["grid"]


def test_one_se_rule_keeps_the_default_within_noise_and_leaves_it_beyond():
    from experiments.research.evaluation.segmentation import select_setting

    grid = [{"t": 0.2}, {"t": 0.3}, {"t": 0.4}]
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.05, 10)
    jitter = rng.normal(0, 0.01, 10)
    jitter -= jitter.mean()  # the mean gain is exactly ``gain``; paired SE ~ 0.003

    def run(gain, rule):
        units = {0.2: 0.5 + noise, 0.3: 0.5 + gain + noise + jitter, 0.4: 0.3 + noise}
        return select_setting(grid, lambda g: float(np.mean(units[g["t"]])), lambda g: units[g["t"]], rule=rule,
                              default={"t": 0.2}, distance=lambda g: abs(g["t"] - 0.2), tiebreak=lambda g: ())

    # a gain far inside the paired noise (paired SE ~ 0.003): the default stays under one_se, 'best' flips
    chosen, info = run(0.001, "one_se")
    assert chosen == {"t": 0.2} and info["best_by_merit"] == {"t": 0.3} and info["default_within"]
    assert run(0.001, "best")[0] == {"t": 0.3}
    # a gain of many paired SEs: one_se takes it too
    chosen, info = run(0.05, "one_se")
    assert chosen == {"t": 0.3} and not info["default_within"] and info["n_within_one_se"] == 1
    with pytest.raises(ValueError, match="rule"):
        run(0.0, "median")


def test_cached_probabilities_are_kept_apart_per_backend(tmp_path, monkeypatch):
    """A map cached by one backend is predicted again, not read, when another backend is asked for."""
    from experiments.research.evaluation import segmentation as seg

    calls = []

    def fake_predict(img, kind, weights=None, **opts):
        calls.append(opts.get("backend", "auto"))
        return np.full(img.shape, 0.25 if opts.get("backend") == "keras" else 0.5, np.float32), {}

    monkeypatch.setattr("segmentation.models.predict_probabilities", fake_predict)
    monkeypatch.setattr(seg, "resolved_backend", lambda kind, weights=None, backend="auto", precision="auto":
                        "keras-fp32" if backend == "keras" else "openvino-bf16")
    img = np.zeros((8, 8), np.uint8)
    a = seg.cached_probabilities(img, "grains", key="x", cache_dir=tmp_path)
    b = seg.cached_probabilities(img, "grains", key="x", cache_dir=tmp_path, backend="keras")
    c = seg.cached_probabilities(img, "grains", key="x", cache_dir=tmp_path, backend="keras")
    assert calls == ["auto", "keras"]  # the third is read from the cache
    assert a.max() == 0.5 and b.max() == 0.25 and c.max() == 0.25


def test_eval_truth_refuses_seeds_the_grain_model_trained_on():
    import segmentation.models as models
    from experiments.research.evaluation.config import EvalTruthConfig

    assert truth.rendered_training_seeds(models.model_card("grains")) == range(0)  # shipped: real labels only
    card = {"config": {"rendered_scans": 12, "rendered_seed": 29_000_000}}
    assert truth.rendered_training_seeds(card) == range(29_000_000, 29_000_012)
    truth.check_unseen_seeds(EvalTruthConfig(seed=28_000_000, n_scans=10), card)  # disjoint: fine
    with pytest.raises(ValueError, match="29000011-29000011"):
        truth.check_unseen_seeds(EvalTruthConfig(seed=29_000_011, n_scans=10), card)
