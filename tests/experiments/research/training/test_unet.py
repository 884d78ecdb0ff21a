"""The U-Net trainers on a tiny fake dataset: split by scan, tuning vs held-out validation, card."""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import fake_mlography_root

pytest.importorskip("keras")

TINY = [
    "train.unet={depth: 2, base_width: 4, batch_norm: true, dropout: 0.0}", "train.patch=32",
    "train.patches_per_epoch=32", "train.batch_size=16", "train.epochs=2", "train.patience=5",
    "train.tile=64", "train.overlap=16", "train.max_minutes=2", "train.threads=2",
]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["impurities", "grains"])
def test_train_tiny_tunes_on_tune_scans_and_reports_heldout_val(compose, tmp_path, kind):
    from experiments.research.training import unet as train_unet

    root = fake_mlography_root(tmp_path)
    # grains: with two small rendered scans mixed in (train.rendered_*), recorded in the card
    rendered = ["train.rendered_scans=2", "train.rendered_seed=5", "train.rendered_share=0.5",
                "+train.rendered_truth={shape: [96, 128], n_grains: 20}"] if kind == "grains" else []
    cfg = compose([f"+exp=train_unet_{kind}", f"train.data_root={root}", "train.val_scans=[20]",
                   "train.tune_scans=[17]", *rendered, *TINY])
    out = tmp_path / "run"
    assert getattr(train_unet, f"run_{kind}")(cfg, out) == 0
    name = {"impurities": "unet_impurities", "grains": "unet_grains"}[kind]
    card = json.loads((out / f"{name}.json").read_text())
    data = card["data"]
    assert data["val_scans"] == ["20"] and data["tune_scans"] == ["17"]
    assert set(data["train_scans"]) == {"12", "13"}
    assert card["training"]["selected_on"] == "tune_scans"
    # threshold chosen on the tuning scans, then applied unchanged to the held-out scans
    tuned, held = card["metrics_tuning"], card["metrics_validation"]
    assert held["threshold"] == tuned["threshold"] == card["threshold"]
    assert held["min_size"] == tuned["min_size"]
    key = "object_f1" if kind == "impurities" else "boundary_f1"
    assert 0.0 <= held[key] <= 1.0 and 0.0 <= tuned[key] <= 1.0
    assert (out / f"{name}.keras").stat().st_size < 1 << 20
    if importlib.util.find_spec("onnx") is not None:  # the ONNX export of the fast backends, in the card
        from data.model_cards import sha256_of

        assert card["export"]["onnx"]["sha256"] == sha256_of(out / f"{name}.onnx")
    if kind == "grains":  # the rendered training scans, in the card; tuning and held-out scans stay real
        assert card["data"]["rendered_seeds"] == [5, 6] and card["data"]["rendered_share"] == 0.5
        assert card["config"]["rendered_scans"] == 2 and card["config"]["rendered_seed"] == 5
    if kind == "impurities":  # the preset trains and tunes on registered labels
        assert card["config"]["register_labels"] is True
        assert "registered" in card["data"]["labels"]
        reg = card["metrics_validation_registered_labels"]
        assert reg["threshold"] == held["threshold"] and 0.0 <= reg["object_f1"] <= 1.0


@pytest.mark.slow
def test_train_on_raw_labels_reports_raw_heldout_only(compose, tmp_path):
    from experiments.research.training import unet as train_unet

    root = fake_mlography_root(tmp_path)
    cfg = compose(["+exp=train_unet_impurities", f"train.data_root={root}", "train.val_scans=[20]",
                   "train.tune_scans=[17]", "train.register_labels=false", *TINY])
    out = tmp_path / "run"
    assert train_unet.run_impurities(cfg, out) == 0
    card = json.loads((out / "unet_impurities.json").read_text())
    assert card["config"]["register_labels"] is False
    assert "registered" not in card["data"]["labels"]
    assert "metrics_validation_registered_labels" not in card
    assert 0.0 <= card["metrics_validation"]["object_f1"] <= 1.0


def test_tune_and_val_scans_must_differ():
    from experiments.research.training.unet import TrainUNetConfig

    with pytest.raises(ValueError, match="overlap"):
        TrainUNetConfig(val_scans=("15",), tune_scans=("15", "17"))
    with pytest.raises(ValueError, match="bundled"):
        TrainUNetConfig(val_scans=("15",), tune_scans=("10",))


def test_rendered_grain_data_is_the_inpainted_scan_and_widened_truth():
    """Rendered training scans: impurities inpainted, true boundaries widened to ~3 px, seeds as named."""
    import numpy as np

    from data.synthetic_truth import TruthConfig, make_truth_scan
    from experiments.research.training.unet import load_rendered_grain_data

    small = {"shape": [96, 128], "n_grains": 20, "impurities_per_mpx": 2000.0}
    scans, regions = load_rendered_grain_data(2, 7, small)
    assert [r.scan for r in regions] == ["rendered-7", "rendered-8"] == list(scans)
    synth = make_truth_scan(TruthConfig(**small), seed=7)
    r = regions[0]
    assert r.y.shape == synth.pixels.shape == scans["rendered-7"].shape
    assert r.y[synth.grain_boundaries].all()  # every true boundary pixel is labelled ...
    assert 2.0 < r.y.sum() / synth.grain_boundaries.sum() < 4.0  # ... in a ~3 px wide line
    x = scans["rendered-7"]
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    # the impurities are gone from the input: their pixels are no longer the darkest of the scan
    assert np.median(x[synth.impurity_mask]) > np.quantile(x, 0.02)


def test_rendered_options_are_checked():
    from experiments.research.training.unet import TrainUNetConfig

    with pytest.raises(ValueError, match="rendered"):
        TrainUNetConfig(rendered_scans=-1)
    with pytest.raises(ValueError, match="rendered"):
        TrainUNetConfig(rendered_scans=2, rendered_share=1.5)
