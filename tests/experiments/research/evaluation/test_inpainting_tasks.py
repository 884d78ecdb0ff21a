"""Configs of the inpainting group and the train/eval tasks on a tiny fake dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import fake_mlography_root as _fake_root

from inpainting import METHODS, inpaint, inpaint_config


@pytest.mark.parametrize("option", METHODS)
def test_every_inpainting_config_composes_and_runs(compose, option):
    cfg = compose([f"inpainting={option}"])
    from omegaconf import OmegaConf

    section = OmegaConf.to_container(cfg.inpainting, resolve=True)
    assert section["method"] == option
    icfg = inpaint_config(section)
    assert icfg.method == option
    if option != "generative":  # generative: covered by test_generative with its own weights
        img = np.full((40, 40), 100, np.uint8)
        mask = np.zeros_like(img, bool)
        mask[10:14, 10:14] = True
        out = inpaint(img, mask, **section)
        assert out.dtype == img.dtype


@pytest.mark.parametrize("exp", ["train_inpainting", "eval_inpainting"])
def test_exp_configs_compose(compose, exp):
    cfg = compose([f"+exp={exp}"])
    assert cfg.task == exp
    from experiments.tasks import get_task

    assert callable(get_task(exp))


def _fake_grain_api(weights=None):
    """A stand-in for the U-Net: boundaries where the gray level jumps; the real grain measures."""
    from segmentation.grains import grain_measures

    def predict(pixels):
        g = pixels.astype(float)
        edge = np.zeros(g.shape, bool)
        edge[:-1] |= np.abs(np.diff(g, axis=0)) > 6
        edge[:, :-1] |= np.abs(np.diff(g, axis=1)) > 6
        return edge

    return (predict, grain_measures), None


def test_eval_inpainting_on_fake_data(compose, tmp_path, monkeypatch):
    pytest.importorskip("segmentation.grains")
    from experiments.research.evaluation import inpainting as eval_inpainting

    root = _fake_root(tmp_path)
    monkeypatch.setattr(eval_inpainting, "_grain_api", _fake_grain_api)
    cfg = compose([
        "+exp=eval_inpainting", f"eval.data_root={root}", "eval.val_scans=[17,20]",
        "eval.methods=[telea,biharmonic]", "eval.holes_per_scan=6",
    ])
    out = tmp_path / "out"
    assert eval_inpainting.run(cfg, out) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val_scans"] == ["17", "20"] and metrics["downstream_measured"]
    by_method = {r["method"]: r for r in metrics["holes"]}
    assert set(by_method) == {"telea", "biharmonic"}
    for r in by_method.values():
        assert r["n_px"] > 0 and 10 < r["psnr_db"] < 80 and 0 <= r["l1"] < 50
    variants = [r["variant"] for r in metrics["downstream"]]
    assert variants == ["none", "telea", "biharmonic", "prior_art"]
    # dark impurities break the gray-level edges: inpainting must not be worse than the raw scan
    f1 = {r["variant"]: r["f1_near_impurities"] for r in metrics["downstream"]}
    best = metrics["best_downstream_method"]
    assert best in ("telea", "biharmonic")
    for r in metrics["downstream"]:
        assert r["ci95_lo"] <= r["heyn_err_minus_best"] <= r["ci95_hi"]
        assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1
    assert f1["telea"] >= f1["none"] - 0.05
    summary = (out / "summary.md").read_text()
    assert "| telea |" in summary and "Lowest downstream Heyn error" in summary
    # restoration of the intact scan's boundaries around the synthetic holes
    rest = {r["variant"]: r for r in metrics["restoration"]}
    assert set(rest) == {"none", "telea", "biharmonic"}
    assert metrics["best_restoration_method"] in ("telea", "biharmonic")
    # the default follows the fixed rule: not significantly worse on the labels, best restoration
    rec = metrics["recommended_default"]
    ci_lo = {r["variant"]: r["ci95_lo"] for r in metrics["downstream"]}
    assert ci_lo[rec] <= 0
    tied = [v for v in ("none", "telea", "biharmonic") if ci_lo[v] <= 0]
    assert rec == min(tied, key=lambda v: rest[v]["heyn_rel_err_mean"])
    assert "Recommended default" in (out / "summary.md").read_text()
    for r in rest.values():
        assert 0 <= r["f1_vs_intact"] <= 1 and r["heyn_rel_err_mean"] >= 0


def test_eval_says_when_downstream_is_absent(compose, tmp_path, monkeypatch):
    from experiments.research.evaluation import inpainting as eval_inpainting

    root = _fake_root(tmp_path, names=("12", "17"))
    monkeypatch.setattr(eval_inpainting, "_grain_api", lambda weights=None: (None, "no U-Net here"))
    cfg = compose(["+exp=eval_inpainting", f"eval.data_root={root}", "eval.val_scans=[17]",
                   "eval.methods=[ns]", "eval.holes_per_scan=4"])
    out = tmp_path / "out"
    assert eval_inpainting.run(cfg, out) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert not metrics["downstream_measured"]
    assert "DOWNSTREAM NOT MEASURED" in (out / "summary.md").read_text()


def test_eval_rejects_training_samples_as_validation(compose, tmp_path):
    from experiments.research.evaluation import inpainting as eval_inpainting
    from experiments.config import ConfigError

    cfg = compose(["+exp=eval_inpainting", "eval.val_scans=[10,17]"])
    with pytest.raises(ConfigError, match="bundled training samples"):
        eval_inpainting.run(cfg, tmp_path)


@pytest.mark.slow
def test_train_inpainting_tiny(compose, tmp_path):
    pytest.importorskip("keras")
    from experiments.research.training import inpainting as train_inpainting

    root = _fake_root(tmp_path, names=("12", "13", "17"), shape=(200, 240))
    cfg = compose([
        "+exp=train_inpainting", f"train.data_root={root}", "train.val_scans=[17]", "train.patch_size=32",
        "train.free_dilation_px=1", "train.patches_per_scan=32", "train.val_patches=8", "train.width=4",
        "train.epochs=1", "train.batch_size=16", "train.time_budget_s=60",
    ])
    out = tmp_path / "run"
    assert train_inpainting.run(cfg, out) == 0
    card = json.loads((out / "inpaint_net.json").read_text())
    assert card["data"]["val_scans"] == ["17"] and "17" not in card["data"]["train_scans"]
    assert set(card["metrics_validation_patches"]) == {"generative", "telea", "biharmonic"}
    assert (out / "inpaint_net.keras").stat().st_size < 20 * 2**20


def test_free_patch_origins():
    from experiments.research.training.inpainting import free_patch_origins

    mask = np.zeros((20, 20), bool)
    mask[10, 10] = True
    o = free_patch_origins(mask, 8, dilation_px=1)
    assert o.shape[1] == 2 and len(o)
    # exact: a patch is free iff the dilated mask is empty inside it
    from inpainting import dilate_mask

    grown = dilate_mask(mask, 1)
    free = {(int(r), int(c)) for r, c in o}
    for r in range(13):
        for c in range(13):
            assert ((r, c) in free) == (not grown[r : r + 8, c : c + 8].any())
