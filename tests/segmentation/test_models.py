"""Model loading (cards, sha256, bad files), public predict functions, shipped weights, eval metrics."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy import ndimage

keras = pytest.importorskip("keras")

from experiments.research.datasets.mlography import grain_regions
from segmentation import models
from segmentation.metrics import impurity_metrics
from segmentation.models import (
    InvalidScanError,
    SegmentationModelError,
    load_model,
    model_card,
    predict_grain_boundaries,
    predict_impurity_mask,
    sha256_of,
)
from segmentation.unet import UNetConfig, build_unet

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "samples"
DATA = Path("/work/shared/datasets/mlography")


def _save_tiny(tmp_path: Path, *, name="tiny", threshold=0.5, depth=1) -> Path:
    """An untrained tiny U-Net with a valid card, whose output bias makes it say 'dark = 1'."""
    m = build_unet(UNetConfig(depth=depth, base_width=2, batch_norm=False))
    path = tmp_path / f"{name}.keras"
    m.save(path)
    card = {
        "sha256": sha256_of(path),
        "threshold": threshold,
        "input": {"channels": 1},
        "config": {"unet": {"depth": depth}},
        "postprocess": {"min_area_px": 0, "min_length_px": 0},
    }
    path.with_suffix(".json").write_text(json.dumps(card))
    return path


# --------------------------------------------------------------------------- loading


def test_tiny_model_loads_once_and_predicts_any_size(tmp_path):
    path = _save_tiny(tmp_path)
    m1, card = load_model("impurities", path)
    assert card["threshold"] == 0.5
    m2, _ = load_model("impurities", path)
    assert m1 is m2  # cached: loaded once per process
    rng = np.random.default_rng(0)
    for shape in [(37, 53), (5, 300), (300, 260)]:
        img = rng.integers(0, 255, shape).astype(np.uint8)
        mask = predict_impurity_mask(img, weights=path, tile=32, overlap=8)
        assert mask.shape == shape and mask.dtype == bool
    img16 = rng.integers(0, 60000, (40, 40)).astype(np.uint16)
    b = predict_grain_boundaries(img16, weights=path, tile=32, overlap=8, threshold=0.01)
    assert b.shape == (40, 40) and b.dtype == bool
    # (M, N, 1) is accepted as gray
    assert predict_impurity_mask(img16[..., None], weights=path, tile=32, overlap=8).shape == (40, 40)


@pytest.mark.parametrize(
    "img, match",
    [
        (np.zeros((20, 20, 3), np.uint8), "2-D gray"),
        (np.zeros((2, 20, 20), np.uint8), "2-D gray"),
        (np.full((20, 20), 9, np.uint8), "constant"),
        (np.array([[0.0, np.nan], [1.0, 2.0]]), "NaN"),
        (np.zeros((20, 20), bool), "dtype"),
        (np.zeros((0, 20), np.uint8), "empty"),
    ],
)
def test_bad_images_are_clear_errors(tmp_path, img, match):
    path = _save_tiny(tmp_path)
    with pytest.raises(InvalidScanError, match=match):
        predict_impurity_mask(img, weights=path, tile=32, overlap=8)
    assert issubclass(InvalidScanError, ValueError)


def test_missing_corrupt_and_mismatched_weights(tmp_path):
    with pytest.raises(SegmentationModelError, match="not found"):
        load_model("impurities", tmp_path / "nope.keras")
    path = _save_tiny(tmp_path, name="a")
    card_path = path.with_suffix(".json")
    # card that does not match the weights
    card = json.loads(card_path.read_text())
    card["sha256"] = "0" * 64
    card_path.write_text(json.dumps(card))
    with pytest.raises(SegmentationModelError, match="does not match its model card"):
        load_model("impurities", path)
    # corrupt weights whose card matches (sha256 of the corrupt bytes): keras cannot read them
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip archive")
    bad.with_suffix(".json").write_text(json.dumps({**card, "sha256": sha256_of(bad)}))
    with pytest.raises(SegmentationModelError, match="cannot load"):
        load_model("impurities", bad)
    # missing / broken card
    lone = _save_tiny(tmp_path, name="lone")
    lone.with_suffix(".json").unlink()
    with pytest.raises(SegmentationModelError, match="card"):
        load_model("grains", lone)
    lone.with_suffix(".json").write_text("{")
    with pytest.raises(SegmentationModelError, match="JSON"):
        load_model("grains", lone)
    with pytest.raises(ValueError, match="unknown model kind"):
        load_model("cells")
    assert issubclass(SegmentationModelError, ValueError)


def test_threshold_is_validated(tmp_path):
    path = _save_tiny(tmp_path)
    with pytest.raises(ValueError, match="threshold"):
        predict_impurity_mask(np.arange(400, dtype=np.uint8).reshape(20, 20), weights=path, threshold=1.0,
                              tile=32, overlap=8)


# --------------------------------------------------------------------------- shipped weights

SHIPPED = all(models.weights_path(k).is_file() for k in models.KINDS)
needs_weights = pytest.mark.skipif(not SHIPPED, reason="shipped weights not installed")


@needs_weights
@pytest.mark.parametrize("kind", sorted(models.KINDS))
def test_shipped_cards_match_weights(kind):
    card = model_card(kind)
    path = models.weights_path(kind)
    assert card["sha256"] == sha256_of(path)
    # "well under 20 MB" (issue #5): a quarter of it at most
    assert path.stat().st_size < 5_000_000 and card["parameter_count"] < 1_500_000
    assert 0 < card["threshold"] < 1
    val = set(card["data"]["val_scans"])
    tune = set(card["data"]["tune_scans"])
    train = set(card["data"]["train_scans"])
    assert not val & {"10", "11"} and not val & train and not tune & (train | val)
    # the held-out metrics are on the validation scans, the choices on the tuning scans
    assert card["training"]["selected_on"] == "tune_scans"
    assert card["metrics_validation"]["threshold"] == card["threshold"]


@needs_weights
def test_shipped_impurity_model_finds_labelled_impurities_of_a_real_crop():
    img = cv2.imread(str(SAMPLES / "scans" / "10.jpg"), cv2.IMREAD_GRAYSCALE)
    truth = cv2.imread(str(SAMPLES / "impurity_masks" / "10.png"), cv2.IMREAD_GRAYSCALE) > 127
    crop = (slice(200, 456), slice(400, 784))
    pred = predict_impurity_mask(img[crop])
    assert pred.shape == crop_shape(crop) and pred.dtype == bool
    t = truth[crop]
    m = impurity_metrics(pred, t)
    assert m["n_true"] > 50
    assert m["precision"] > 0.85 and m["f1"] > 0.6, m
    assert abs(m["area_fraction_rel_error"]) < 0.5, m
    # nearly every labelled impurity of 20 px or more is found (the small ones are faint and
    # their labels are 1-3 px off on this scan)
    lab, n = ndimage.label(t, np.ones((3, 3)))
    area = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    found = np.bincount(lab[pred & t], minlength=n + 1)[1:] > 0
    assert (area >= 20).sum() > 20 and found[area >= 20].mean() > 0.85


def crop_shape(crop):
    return tuple(s.stop - s.start for s in crop)


@needs_weights
def test_shipped_grain_model_draws_boundaries_on_a_real_region():
    if not (DATA / "grain_patches").is_dir():
        pytest.skip("MLography data not available")
    region = grain_regions(DATA, ["10"])[0]
    inp = cv2.imread(str(DATA / "reference_outputs" / "inpainted" / "10.png"), cv2.IMREAD_GRAYSCALE)
    r0, c0 = max(0, region.row - 32), max(0, region.col - 32)
    crop = inp[r0 : region.row + 256 + 32, c0 : region.col + 256 + 32]
    pred = predict_grain_boundaries(crop)
    sub = pred[region.row - r0 : region.row - r0 + 256, region.col - c0 : region.col - c0 + 256]
    from segmentation.grains import boundary_f1

    assert boundary_f1(sub, region.boundaries, tolerance=2)["f1"] > 0.5  # a training region


# --------------------------------------------------------------------------- metrics


def test_impurity_metrics_matching():
    truth = np.zeros((40, 40), bool)
    truth[5:8, 5:8] = truth[20:24, 20:24] = truth[30:33, 5:8] = True
    pred = np.zeros_like(truth)
    pred[6:9, 6:9] = True  # shifted match
    pred[19:25, 19:34] = True  # one blob over the second object and empty space
    pred[35:38, 35:38] = True  # false positive
    m = impurity_metrics(pred, truth)
    assert (m["n_true"], m["n_pred"], m["n_matched"]) == (3, 3, 2)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    strict = impurity_metrics(pred, truth, match_iou=0.25)  # shifted 3x3: IoU 4/14
    assert strict["n_matched"] == 1  # the blob's IoU with its object is 16/90
    # one blob over two true objects matches only one of them
    two = np.zeros((10, 20), bool)
    two[2:5, 2:5] = two[2:5, 8:11] = True
    blob = np.zeros_like(two)
    blob[1:6, 1:12] = True
    assert impurity_metrics(blob, two)["n_matched"] == 1
    perfect = impurity_metrics(truth, truth)
    assert perfect["f1"] == perfect["iou"] == perfect["dice"] == 1.0
    assert perfect["area_fraction_rel_error"] == 0.0


def test_impurity_metrics_recall_by_size():
    truth = np.zeros((40, 40), bool)
    truth[5:8, 5:8] = truth[20:24, 20:24] = truth[30:33, 5:8] = True  # areas 9, 16, 9
    truth[30:31, 30:31] = True  # area 1
    pred = np.zeros_like(truth)
    pred[6:9, 6:9] = True  # matches the first 3x3
    pred[20:24, 20:24] = True  # matches the 4x4
    m = impurity_metrics(pred, truth, size_bins=(1, 2, 10, np.inf))
    assert m["n_true_by_size"] == [1, 2, 1] and m["n_matched_by_size"] == [0, 1, 1]
    assert sum(m["n_matched_by_size"]) == m["n_matched"]
    # objects outside the bins are not counted; bad edges are an error
    assert impurity_metrics(pred, truth, size_bins=(2, 10))["n_true_by_size"] == [2]
    with pytest.raises(ValueError, match="size_bins"):
        impurity_metrics(pred, truth, size_bins=(10, 2))


def test_impurity_metrics_counts_a_subset_of_true_objects():
    truth = np.zeros((40, 40), bool)
    truth[5:8, 5:8] = truth[20:24, 20:24] = truth[30:33, 5:8] = True  # objects 1, 2, 3 (label order)
    pred = np.zeros_like(truth)
    pred[6:9, 6:9] = pred[20:24, 20:24] = True  # match objects 1 and 2
    m = impurity_metrics(pred, truth, true_subset=np.array([True, False, True]))
    assert (m["n_true_subset"], m["n_matched_subset"], m["n_matched"]) == (2, 1, 2)
    with pytest.raises(ValueError, match="one flag per true object"):
        impurity_metrics(pred, truth, true_subset=np.array([True]))


def test_impurity_metrics_tolerance():
    truth = np.zeros((30, 30), bool)
    truth[10:12, 10:12] = True
    pred = np.zeros_like(truth)
    pred[10:12, 14:16] = True  # 2 px gap: no overlap
    assert impurity_metrics(pred, truth)["n_matched"] == 0
    assert impurity_metrics(pred, truth, tolerance_px=2)["n_matched"] == 0
    assert impurity_metrics(pred, truth, tolerance_px=3)["n_matched"] == 1
    assert impurity_metrics(pred, truth, tolerance_px=3)["iou"] == 0.0  # pixels unaffected


@needs_weights
def test_eval_segmentation_runs_and_reports_recall_by_size(tmp_path, compose):
    import json

    from omegaconf import OmegaConf

    from conftest import fake_mlography_root
    from experiments.research.evaluation.segmentation import run

    root = fake_mlography_root(tmp_path)
    cfg = compose(["+exp=eval_segmentation", f"eval.data_root={root}", "eval.scans=[12,13]",
                   "eval.grain_scans=[12]", "eval.methods=[unet,classical]"])
    assert OmegaConf.select(cfg, "eval.size_bins")[-1] == float("inf")
    assert run(cfg, tmp_path / "out") == 0
    out = json.loads((tmp_path / "out" / "segmentation_eval.json").read_text())
    by_size = out["recall_by_size"]
    assert [r["labelled area"] for r in by_size] == ["1-10 px", "10-30 px", "30-100 px", "100-300 px", ">= 300 px"]
    n_true = sum(r["n_true"] for r in out["impurities"]["unet"])
    assert sum(r["labelled objects"] for r in by_size) == n_true > 0
    assert all(0 <= r["recall classical"] <= 1 for r in by_size if r["labelled objects"])
    md = (tmp_path / "out" / "segmentation_eval.md").read_text()
    assert "Object recall by labelled object area" in md
    maps = sorted((tmp_path / "out" / "error_maps").glob("*.png"))
    assert [m.stem for m in maps] == ["12", "13"]
    # the second table: the same predictions against the labels registered to each scan
    assert "labels registered to each scan" in md
    reg = {r["method"]: r for r in out["summary_registered_labels"]}
    assert set(reg) == {"U-Net (quantmet)", "classical (quantmet)"}
    for rows in out["impurities"].values():
        for r in rows:
            assert r["registered"]["n_pred"] == r["n_pred"]  # same predictions, other labels
            assert np.asarray(r["registered"]["shift_matrix"]).shape == (2, 3)
            reg_row = r["registered"]
            assert 0 <= reg_row["n_true_visible"] <= reg_row["n_true"]
            assert reg_row["n_matched_visible"] + reg_row["n_matched_faint"] == reg_row["n_matched"]
    for row in reg.values():
        assert 0 <= row["faint_label_share"] <= 1
        assert np.isnan(row["recall_faint"]) or 0 <= row["recall_faint"] <= 1  # NaN: no faint label


def test_error_map_colours_objects_by_match_status():
    from experiments.research.evaluation.segmentation import ERROR_COLOURS, error_map
    from segmentation.metrics import match_objects

    img = np.full((40, 40), 180, np.uint8)
    truth = np.zeros((40, 40), bool)
    pred = np.zeros((40, 40), bool)
    truth[5:10, 5:10] = pred[6:11, 6:11] = True  # matched pair
    truth[25:30, 5:10] = True  # missed label
    pred[25:30, 25:30] = True  # false prediction
    m = match_objects(pred, truth)
    assert m["true_matched"].tolist() == [True, False] and m["pred_matched"].tolist() == [True, False]
    out = error_map(img, pred, truth, zoom=2)
    assert out.shape == (80, 80, 3) and out.dtype == np.uint8
    colours = {tuple(int(v) for v in c) for c in out.reshape(-1, 3)}
    assert set(ERROR_COLOURS.values()) <= colours
    # the missed label is outlined in yellow at its place, the false prediction in magenta at its own
    assert (out[50:60, 10:20] == ERROR_COLOURS["missed label"]).all(axis=-1).any()
    assert (out[50:60, 50:60] == ERROR_COLOURS["false prediction"]).all(axis=-1).any()
