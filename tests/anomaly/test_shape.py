"""Shape autoencoder score: crops, batched prediction, score range, shipped weights, bad files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import write_model_card

from anomaly import get_scorer
from anomaly.scorers.shape import (
    DEFAULT_WEIGHTS,
    ShapeAEConfig,
    ShapeAEWeightsError,
    impurity_crops,
    load_shape_ae,
    reconstruction_errors,
    autoencoder_scores,
)
from data.regions import label_mask, regions_from_labels

REPO = Path(__file__).resolve().parents[2]


def _table(mask):
    labels, _ = label_mask(mask)
    return labels, regions_from_labels(labels)


def _star(m, center, r_out, r_in, points=5, phase=0.3):
    ang = phase + np.arange(2 * points) * np.pi / points
    rad = np.where(np.arange(2 * points) % 2 == 0, r_out, r_in)
    pts = np.stack([center[0] + rad * np.cos(ang), center[1] + rad * np.sin(ang)], 1)
    cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 255)


@pytest.fixture(scope="module")
def tiny_model():
    keras = pytest.importorskip("keras")
    from anomaly.scorers.shape import build_shape_ae

    keras.utils.set_random_seed(0)
    return build_shape_ae(crop_size=16, filters=(4,), latent_dim=4, seed=0)


# ---------------------------------------------------------------- import / registry


def test_import_anomaly_does_not_import_keras():
    code = (
        "import sys, anomaly, anomaly.scorers.shape; anomaly.available_scorers(); "
        "bad = [m for m in ('keras', 'tensorflow') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_registered_as_shape():
    spec = get_scorer("shape")
    assert spec.column == "shape_score" and spec.needs_keras and spec.config_cls is ShapeAEConfig


@pytest.mark.parametrize(
    "kwargs",
    [
        {"crop_size": 4},
        {"fill": 0.0},
        {"fill": 1.5},
        {"min_area_px": 0},
        {"batch_size": 0},
        {"error": "l1"},
    ],
)
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        ShapeAEConfig(**kwargs)


# ---------------------------------------------------------------- crops


def test_crop_of_a_rectangle_is_centred_and_scaled():
    m = np.zeros((100, 120), np.uint8)
    m[30:40, 50:90] = 255  # 10 rows x 40 cols -> longer side 0.8 * 32 = 25.6 px, shorter 6.4 px
    labels, table = _table(m)
    crop = impurity_crops(labels, table, size=32, fill=0.8)
    assert crop.shape == (1, 32, 32) and crop.dtype == np.float32
    c = crop[0]
    assert 0.0 <= c.min() and c.max() <= 1.0
    assert c.any(axis=0).sum() == 26  # columns covered: round(25.6)
    assert c.any(axis=1).sum() == 6  # rows covered: round(6.4)
    rr, cc = np.indices(c.shape)
    assert abs((rr * c).sum() / c.sum() - 15.5) <= 0.5
    assert abs((cc * c).sum() / c.sum() - 15.5) <= 0.5


def test_small_disc_is_enlarged_round_and_centred():
    m = np.zeros((60, 60), np.uint8)
    cv2.circle(m, (20, 30), 5, 255, -1)  # 11 px wide
    labels, table = _table(m)
    c = impurity_crops(labels, table, size=32, fill=0.8)[0]
    assert set(np.unique(c)) <= {0.0, 1.0}  # enlarged crops are binary outlines
    diam = 0.8 * 32
    assert c.sum() == pytest.approx(np.pi * diam**2 / 4, rel=0.12)
    rows, cols = c.any(axis=1).sum(), c.any(axis=0).sum()
    assert abs(int(rows) - diam) <= 1 and abs(int(cols) - diam) <= 1
    rr, cc = np.indices(c.shape)
    assert abs((rr * c).sum() / c.sum() - 15.5) <= 0.5
    assert abs((cc * c).sum() / c.sum() - 15.5) <= 0.5


def test_crop_keeps_only_its_own_label_inside_the_box():
    m = np.zeros((80, 80), np.uint8)
    m[10:60, 10:14] = 255  # an L ...
    m[56:60, 10:60] = 255
    m[20:30, 30:40] = 255  # ... and a square inside its box
    labels, table = _table(m)
    crops = impurity_crops(labels, table, size=32)
    big = int(np.argmax(table["area_px"].to_numpy()))
    c = crops[big]
    # the square would sit in the upper-right part of the L's crop: it must be empty there
    assert c[4:18, 14:28].max() == 0.0
    assert c[:, :8].sum() > 0 and c[24:, :].sum() > 0  # the L's two arms


def test_crops_reject_labels_that_do_not_match_the_table():
    m = np.zeros((50, 50), np.uint8)
    m[5:8, 5:8] = 255
    m[20:30, 20:30] = 255
    labels, _ = label_mask(m)
    table = regions_from_labels(labels, min_area_px=20)  # renumbered: region_id 1 is label 2
    with pytest.raises(ValueError, match="does not match"):
        impurity_crops(labels, table, size=16)
    ok = impurity_crops(labels, table, size=16, label_ids=np.array([2]))
    assert ok.shape == (1, 16, 16) and ok.any()


def test_crops_of_an_empty_table():
    labels = np.zeros((10, 10), np.int32)
    assert impurity_crops(labels, regions_from_labels(labels), size=16).shape == (0, 16, 16)


# ---------------------------------------------------------------- prediction, score (tiny model)


def _scan_with_shapes():
    m = np.zeros((160, 220), np.uint8)
    cv2.circle(m, (30, 30), 12, 255, -1)
    _star(m, (100, 40), 20, 7)
    cv2.ellipse(m, (170, 40), (25, 8), 30, 0, 360, 255, -1)
    m[100:140, 20:24] = 255
    cv2.circle(m, (100, 120), 18, 255, -1)
    m[150, 200] = 255  # tiny: 1 px
    m[150:152, 150:152] = 255  # tiny: 4 px
    return m


def test_reconstruction_errors_batched(tiny_model):
    rng = np.random.default_rng(0)
    crops = (rng.random((7, 16, 16)) > 0.5).astype(np.float32)
    for err in ("dice", "mse"):
        e = reconstruction_errors(crops, model=tiny_model, batch_size=3, error=err)
        assert e.shape == (7,) and np.all(np.isfinite(e)) and np.all(e >= 0)
        if err == "dice":
            assert np.all(e <= 1)
    # batching does not change the result
    np.testing.assert_allclose(
        reconstruction_errors(crops, model=tiny_model, batch_size=2),
        reconstruction_errors(crops, model=tiny_model, batch_size=64),
        rtol=1e-5,
        atol=1e-6,
    )
    assert reconstruction_errors(np.zeros((0, 16, 16)), model=tiny_model).shape == (0,)
    with pytest.raises(ValueError, match="expects 16"):
        reconstruction_errors(np.zeros((2, 32, 32)), model=tiny_model)


def test_score_range_and_tiny_impurities(tiny_model):
    labels, table = _table(_scan_with_shapes())
    cfg = ShapeAEConfig(crop_size=16, min_area_px=10, batch_size=2)
    s = autoencoder_scores(table, cfg, labels=labels, model=tiny_model)
    assert s.shape == (len(table),)
    tiny = table["area_px"].to_numpy() < 10
    assert tiny.sum() == 2 and np.all(s[tiny] == 0.0)
    valid = s[~tiny]
    assert valid.min() == 0.0 and valid.max() == 1.0 and np.all((valid >= 0) & (valid <= 1))


def test_score_needs_labels_and_matching_crop_size(tiny_model):
    labels, table = _table(_scan_with_shapes())
    with pytest.raises(ValueError, match="label image"):
        autoencoder_scores(table, ShapeAEConfig(crop_size=16), model=tiny_model)
    with pytest.raises(ValueError, match="crop_size"):
        autoencoder_scores(table, ShapeAEConfig(crop_size=32), labels=labels, model=tiny_model)


def test_score_of_empty_or_all_tiny_tables(tiny_model):
    labels = np.zeros((20, 20), np.int32)
    assert autoencoder_scores(regions_from_labels(labels), ShapeAEConfig(), labels=labels).shape == (0,)
    labels[3, 3] = 1
    table = regions_from_labels(labels)
    s = autoencoder_scores(table, ShapeAEConfig(crop_size=16), labels=labels, model=tiny_model)
    assert s.tolist() == [0.0]


# ---------------------------------------------------------------- shipped weights


def test_shipped_weights_load_with_safe_mode_and_are_cached():
    pytest.importorskip("keras")
    assert DEFAULT_WEIGHTS.is_file()
    model = load_shape_ae()
    assert load_shape_ae() is model
    assert tuple(model.input_shape) == (None, 32, 32, 1) and model.count_params() < 1_000_000
    assert DEFAULT_WEIGHTS.stat().st_size < 20 * 2**20
    card = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    assert card["parameter_count"] == model.count_params()
    assert card["command"] == "python -m experiments.run +exp=train_shape_ae"


def test_shipped_model_scores_stars_above_discs():
    pytest.importorskip("keras")
    m = np.zeros((300, 400), np.uint8)
    # cv2 centres are (col, row): discs in the top band, stars below row 150
    discs = [((40, 40), 6), ((120, 50), 12), ((250, 60), 30)]
    stars = [((60, 200), 10, 4), ((160, 220), 22, 9), ((300, 220), 45, 18)]
    for (c, r) in discs:
        cv2.circle(m, c, r, 255, -1)
    for (c, ro, ri) in stars:
        _star(m, c, ro, ri)
    labels, table = _table(m)
    assert len(table) == 6
    is_star = table["centroid_row"].to_numpy() > 150
    assert is_star.sum() == 3
    crops = impurity_crops(labels, table, size=32)
    err = reconstruction_errors(crops)
    assert err[is_star].min() > err[~is_star].max() + 0.3, err
    s = autoencoder_scores(table, ShapeAEConfig(), labels=labels)
    assert s[is_star].min() > s[~is_star].max()


def test_corrupt_or_missing_weights_give_a_clear_error(tmp_path):
    pytest.importorskip("keras")
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"this is not a keras archive")
    with pytest.raises(ShapeAEWeightsError, match="model card .*broken.json not found"):
        load_shape_ae(bad)
    write_model_card(bad)
    with pytest.raises(ShapeAEWeightsError, match="cannot load shape autoencoder from .*broken"):
        load_shape_ae(bad)
    with pytest.raises(ShapeAEWeightsError, match="not found"):
        load_shape_ae(tmp_path / "missing.keras")
    labels, table = _table(_scan_with_shapes())
    with pytest.raises(ValueError, match="broken.keras"):
        autoencoder_scores(table, ShapeAEConfig(weights=str(bad)), labels=labels)


def test_weights_that_do_not_match_their_card_are_refused(tmp_path):
    import shutil

    from anomaly.scorers.shape import DEFAULT_WEIGHTS

    path = tmp_path / "shape_ae.keras"
    shutil.copy(DEFAULT_WEIGHTS, path)
    shutil.copy(DEFAULT_WEIGHTS.with_suffix(".json"), path.with_suffix(".json"))
    load_shape_ae(path)  # the shipped pair matches
    with open(path, "r+b") as f:  # truncate it: no longer the file the card describes
        f.truncate(path.stat().st_size // 2)
    with pytest.raises(ShapeAEWeightsError, match="do not match their model card"):
        load_shape_ae(path)


def test_a_model_of_the_wrong_shape_is_rejected(tmp_path):
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    path = tmp_path / "dense.keras"
    model.save(path)
    write_model_card(path)
    with pytest.raises(ShapeAEWeightsError, match="not a shape autoencoder"):
        load_shape_ae(path)


# ---------------------------------------------------------------- training entry point (tiny data)


def test_split_files_is_seeded_disjoint_and_by_file():
    from experiments.research.training.shape_ae import split_files

    files = [Path(f"m{i}.png") for i in range(10)]
    train, val = split_files(files, val_fraction=0.2, seed=0)
    assert len(val) == 2 and not set(train) & set(val) and set(train) | set(val) == set(files)
    assert split_files(files[::-1], val_fraction=0.2, seed=0) == (train, val)


@pytest.mark.slow
def test_training_run_writes_model_and_card(tmp_path):
    pytest.importorskip("keras")
    from omegaconf import OmegaConf

    from experiments.research.training.shape_ae import run

    masks = tmp_path / "masks"
    masks.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        m = np.zeros((200, 200), np.uint8)
        for j in range(4):
            cv2.circle(m, (25 + 45 * j, 30), int(rng.integers(6, 12)), 255, -1)
            _star(m, (25 + 45 * j, 120), 18, 6, phase=float(rng.random()))
        cv2.imwrite(str(masks / f"m{i}.png"), m)
    cfg = OmegaConf.create(
        {"train": {"masks_dir": str(masks), "val_fraction": 0.34, "crop_size": 16, "filters": [4],
                   "latent_dim": 4, "epochs": 1, "batch_size": 16, "eval_min_area_px": 10}}
    )
    out = tmp_path / "run"
    assert run(cfg, out) == 0
    card = json.loads((out / "shape_ae.json").read_text())
    assert not set(card["data"]["val_files"]) & set(card["data"]["train_files"])
    assert len(card["data"]["val_files"]) == 1 and card["data"]["train_counts"]["normal"] == 8
    assert card["parameter_count"] > 0 and card["config"]["epochs"] == 1
    auc = card["metrics_validation"]["dice"]["area_50_inf"]["roc_auc"]
    assert auc is None or 0.0 <= auc <= 1.0
    model = load_shape_ae(out / "shape_ae.keras")
    assert tuple(model.input_shape) == (None, 16, 16, 1)
