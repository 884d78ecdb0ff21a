"""The phase U-Net trainer (train_unet_phases) on two tiny generated scans: card, model, split."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("keras")

TINY = [
    "train.generator={shape: [96, 96], thickness_px: 40.0, pore_median_px: 3.0}",
    "train.train_seeds=[0, 2]", "train.tune_seeds=[100, 101]", "train.val_seeds=[200, 201]",
    "train.unet={depth: 2, base_width: 4}", "train.patch=32", "train.patches_per_epoch=32",
    "train.batch_size=16", "train.epochs=1", "train.tile=64", "train.overlap=16", "train.bench_px=128",
    "train.threads=1",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from hydra import compose, initialize_config_dir

    from conftest import CONF
    from experiments.research.training import phases as train_phases
    from experiments.schemas import register

    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["+exp=train_unet_phases", *TINY])
    out = tmp_path_factory.mktemp("phtrain")
    assert train_phases.run(cfg, out) == 0
    return out


def test_train_unet_phases_tiny(tiny_run):
    from segmentation.phases.learned import load_phase_model, predict_phases

    card = json.loads((tiny_run / "unet_phases.json").read_text())
    names = ["pore", "oxide", "coating", "substrate"]
    assert card["kind"] == "phases" and card["phases"]["names"] == names
    for key in ("command", "created_utc", "keras_version", "parameter_count", "sha256"):
        assert card[key], key
    data = card["data"]
    assert data["train_scans"] == ["seed0", "seed1"] and data["tune_scans"] == ["seed100"]
    assert data["val_scans"] == ["seed200"]
    m = card["metrics_validation"]
    for table in (m["learned_vs_classical"], m["vs_truth"]["learned"], m["vs_truth"]["classical"]):
        assert set(table["iou"]) == set(names)
        assert 0.0 <= table["pixel_agreement"] <= 1.0 and table["n_pixels"] > 0
    assert card["training"]["epochs_run"] == 1 and card["timing_s"]["total"] > 0
    assert card["speed"]["scan_px"] == [128, 128] and card["speed"]["learned_s"] > 0
    model, lcard = load_phase_model(tiny_run / "unet_phases.keras")
    img = np.random.default_rng(0).integers(0, 255, (70, 90), dtype=np.uint8)
    ex = np.zeros(img.shape, bool)
    ex[:5] = True
    lab = predict_phases(img, model, lcard, exclude=ex)
    assert lab.shape == img.shape and lab.dtype == np.uint8
    assert (lab[:5] == 0).all() and lab[5:].min() >= 1 and lab.max() <= len(names)


def test_iou_table_scores_pooled_pixels():
    from experiments.research.training.phases import iou_table

    ref = np.array([[1, 1, 2, 2], [0, 0, 2, 2]], np.uint8)
    pred = np.array([[1, 2, 2, 2], [2, 2, 2, 1]], np.uint8)
    t = iou_table([pred], [ref], ("a", "b", "c"))
    assert t["n_pixels"] == 6  # ref 0 not scored
    assert t["iou"]["a"] == pytest.approx(1 / 3) and t["iou"]["b"] == pytest.approx(3 / 5)
    assert t["iou"]["c"] is None and t["mean_iou"] == pytest.approx((1 / 3 + 3 / 5) / 2)
    assert t["pixel_agreement"] == pytest.approx(4 / 6)


def test_config_rejects_overlapping_seeds_and_elastic_warp():
    from experiments.research.training.config import TrainUNetPhasesConfig

    with pytest.raises(ValueError, match="overlap"):
        TrainUNetPhasesConfig(train_seeds=(0, 8), val_seeds=(5, 6))
    with pytest.raises(ValueError, match="elastic"):
        TrainUNetPhasesConfig(augment={"elastic_alpha": 2.0})
