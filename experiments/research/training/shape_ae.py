"""Train the shape autoencoder: ``python -m experiments.run +exp=train_shape_ae``.

Data: the impurities of the binary impurity masks of large scans (MLography's
anomaly-detection inputs), split by mask file into train and validation.
Labels come from the circle score (:func:`anomaly.scorers.shape.circle_scores`):
normal = round (score <= ``normal_max_circle``), anomalous = irregular
(score > ``anomalous_min_circle``); both with ``area_px > min_area_px``.

Objective (the paper's blank-target trick): normal crops are trained to
reconstruct themselves, anomalous crops to reconstruct a blank crop, with
pixelwise binary cross-entropy.  So a round impurity comes back whole and an
irregular one comes back (nearly) empty, and the reconstruction error
separates them.  Normal crops are augmented with the 8 rotations/flips of
the square (shape anomaly does not depend on orientation); anomalous crops
get one random rotation/flip each and are subsampled to at most
``anomalous_per_normal`` times the augmented normals.

Outputs in ``output_dir``: ``shape_ae.keras``, ``shape_ae.json`` (model card:
data, split, config, metrics, date, command, versions, parameter count) and
``metrics.json``.  With ``install: true`` both model files are copied into
``anomaly/weights/``, where :func:`anomaly.scorers.shape.load_shape_ae` finds them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
from omegaconf import DictConfig

from anomaly.scorers.circle import circle_scores
from anomaly.scorers.shape import DEFAULT_WEIGHTS, build_shape_ae, impurity_crops, reconstruction_errors
from data.errors import InputNotFoundError
from data.regions import label_mask, regions_from_labels
from experiments.config import dataclass_from

__all__ = ["TrainShapeAEConfig", "split_files", "run"]

from .model_card import card_header
from .config import TrainShapeAEConfig

log = logging.getLogger(__name__)

COMMAND = "python -m experiments.run +exp=train_shape_ae"




def split_files(
    files: list[Path], *, val_fraction: float, seed: int
) -> tuple[list[Path], list[Path]]:
    """Seeded split of mask files into (train, validation), at least one file each."""
    files = sorted(files)
    if len(files) < 2:
        raise ValueError(f"need at least 2 mask files to split, got {len(files)}")
    order = np.random.default_rng(seed).permutation(len(files))
    n_val = min(len(files) - 1, max(1, int(round(val_fraction * len(files)))))
    val = sorted(files[i] for i in order[:n_val])
    train = sorted(files[i] for i in order[n_val:])
    return train, val


def _impurities(path: Path, cfg: TrainShapeAEConfig, min_area: int) -> dict[str, np.ndarray]:
    """Crops, circle scores, areas and solidity of one mask's impurities with area > min_area."""
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise InputNotFoundError(f"cannot read mask {path}")
    labels, _ = label_mask(mask > 127)
    table = regions_from_labels(labels)  # min_area_px=1: region_id == pixel label
    circle = circle_scores(table["area_px"].to_numpy(), table["enclosing_radius_px"].to_numpy())
    keep = table["area_px"].to_numpy() > min_area
    sub = table[keep]
    return {
        "crops": impurity_crops(labels, sub, size=cfg.crop_size, fill=cfg.fill),
        "circle": circle[keep],
        "area": sub["area_px"].to_numpy(),
        "solidity": sub["solidity"].to_numpy(),
    }


def _collect(files: list[Path], cfg: TrainShapeAEConfig, min_area: int) -> dict[str, np.ndarray]:
    parts = [_impurities(f, cfg, min_area) for f in files]
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    out["file"] = np.concatenate([np.full(len(p["area"]), i) for i, p in enumerate(parts)])
    return out


def _dihedral(crops: np.ndarray, k: int) -> np.ndarray:
    """The k-th (0..7) rotation/flip of a stack of square crops (N, s, s)."""
    out = np.rot90(crops, k % 4, axes=(1, 2))
    return np.ascontiguousarray(out[:, :, ::-1] if k >= 4 else out)


def _training_set(data: dict[str, np.ndarray], cfg: TrainShapeAEConfig, rng: np.random.Generator):
    normal = data["crops"][data["circle"] <= cfg.normal_max_circle]
    anom = data["crops"][data["circle"] > cfg.anomalous_min_circle]
    normal_aug = np.concatenate([_dihedral(normal, k) for k in range(8)])
    n_anom = min(len(anom), int(round(cfg.anomalous_per_normal * len(normal_aug))))
    anom = anom[rng.choice(len(anom), n_anom, replace=False)]
    ks = rng.integers(0, 8, n_anom)
    anom = np.concatenate([_dihedral(anom[ks == k], k) for k in range(8)])
    x = np.concatenate([normal_aug, anom])
    y = np.concatenate([normal_aug, np.zeros_like(anom)])
    order = rng.permutation(len(x))
    return x[order, ..., None], y[order, ..., None], len(normal), len(normal_aug), n_anom


def _auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if positive.all() or not positive.any():
        return None
    return float(roc_auc_score(positive, scores))


def _metrics(
    err: dict[str, np.ndarray], val: dict[str, np.ndarray], cfg: TrainShapeAEConfig
) -> dict:
    from scipy.stats import pearsonr, spearmanr

    circle, area = val["circle"], val["area"]
    normal = circle <= cfg.normal_max_circle
    anom = circle > cfg.anomalous_min_circle
    out: dict = {}
    lo_area, hi_area = cfg.eval_min_area_px, cfg.min_area_px
    bins = [(lo_area, 20), (20, hi_area), (hi_area, 200), (200, None), (hi_area, None)]
    for name, e in err.items():
        m: dict = {}
        for lo, hi in bins:
            inb = (area > lo) & (area <= hi if hi is not None else True)
            lab = anom[inb & (normal | anom)]
            key = f"area_{lo}_{hi if hi is not None else 'inf'}"
            m[key] = {
                "n_normal": int((inb & normal).sum()),
                "n_anomalous": int((inb & anom).sum()),
                "roc_auc": _auc(e[inb & (normal | anom)], lab),
            }
        big = area > cfg.min_area_px
        m["spearman_circle"] = float(spearmanr(e[big], circle[big]).statistic)
        m["pearson_circle"] = float(pearsonr(e[big], circle[big]).statistic)
        m["spearman_solidity"] = float(spearmanr(e[big], val["solidity"][big]).statistic)
        m["n_correlation"] = int(big.sum())
        # share of impurities whose error is saturated (reconstructed as blank): ties in the score
        m["fraction_error_ge_0.99_of_max"] = float((e[big] >= 0.99 * e[big].max()).mean())
        out[name] = m
    return out


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``train_shape_ae``: train, evaluate on held-out mask files, save (and install)."""
    tcfg = dataclass_from(TrainShapeAEConfig, cfg.get("train"), where="train")
    import keras

    t_start = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    from experiments.config import resolve_repo_path

    masks_dir = resolve_repo_path(tcfg.masks_dir)
    files = sorted(masks_dir.glob("*.png"))
    if not files:
        raise InputNotFoundError(f"no *.png impurity masks in {masks_dir}")
    train_files, val_files = split_files(files, val_fraction=tcfg.val_fraction, seed=tcfg.seed)
    log.info("%d mask files: %d train, %d validation", len(files), len(train_files), len(val_files))

    keras.utils.set_random_seed(tcfg.seed)
    rng = np.random.default_rng(tcfg.seed)
    t0 = time.perf_counter()
    train = _collect(train_files, tcfg, tcfg.min_area_px)
    val = _collect(val_files, tcfg, tcfg.eval_min_area_px)
    x, y, n_normal, n_normal_aug, n_anom = _training_set(train, tcfg, rng)
    t_data = time.perf_counter() - t0
    log.info(
        "training crops: %d normal (x8 = %d), %d anomalous; data prepared in %.1f s",
        n_normal, n_normal_aug, n_anom, t_data,
    )
    vsel = (val["area"] > tcfg.min_area_px) & (
        (val["circle"] <= tcfg.normal_max_circle) | (val["circle"] > tcfg.anomalous_min_circle)
    )
    vx = val["crops"][vsel][..., None]
    v_normal = val["circle"][vsel] <= tcfg.normal_max_circle
    vy = np.where(v_normal[:, None, None, None], vx, 0.0).astype(np.float32)

    model = build_shape_ae(
        crop_size=tcfg.crop_size, filters=tcfg.filters, latent_dim=tcfg.latent_dim, seed=tcfg.seed
    )
    model.compile(
        optimizer=keras.optimizers.Adam(tcfg.learning_rate), loss=keras.losses.BinaryCrossentropy()
    )
    t0 = time.perf_counter()
    # The validation files only monitor the loss; no early stopping or model selection on them.
    hist = model.fit(
        x,
        y,
        validation_data=(vx, vy),
        epochs=tcfg.epochs,
        batch_size=tcfg.batch_size,
        shuffle=True,
        verbose=2,
    )
    t_fit = time.perf_counter() - t0

    err = {
        e: reconstruction_errors(val["crops"], model=model, batch_size=256, error=e)
        for e in ("dice", "mse")
    }
    metrics = _metrics(err, val, tcfg)
    metrics["loss"] = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    key = f"area_{tcfg.min_area_px}_inf"
    for e in ("dice", "mse"):
        log.info(
            "validation (%s error): ROC-AUC normal vs anomalous (area > %d) = %.4f; "
            "Spearman with circle score = %.3f, Pearson = %.3f",
            e,
            tcfg.min_area_px,
            metrics[e][key]["roc_auc"],
            metrics[e]["spearman_circle"],
            metrics[e]["pearson_circle"],
        )

    model_path = output_dir / "shape_ae.keras"
    card_path = output_dir / "shape_ae.json"
    model.save(model_path)
    total = time.perf_counter() - t_start
    card = {
        **card_header(
            name="shape_ae",
            description="Convolutional autoencoder for impurity shape anomaly (MLography, "
            "Rusanovsky et al., Sci. Rep. 12, 4776 (2022)); score = reconstruction error of a "
            "centred, scale-normalised crop.",
            command=COMMAND, model=model, model_path=model_path,
        ),
        "input": {
            "crop_size": tcfg.crop_size,
            "fill": tcfg.fill,
            "crops": "anomaly.scorers.shape.impurity_crops: bbox slice of the label image, longer "
            "side scaled to fill*crop_size, centred; values in [0, 1]",
        },
        "objective": "normal -> itself, anomalous -> blank crop (blank-target trick), pixelwise "
        "binary cross-entropy; normals augmented x8 (rotations/flips)",
        "score": "reconstruction_errors(error='dice') = 1 - soft Dice(input, reconstruction); "
        "shape_score min-max normalises it per scan",
        "data": {
            "source": "MLography public data, impurity_scan_masks (binary masks of large scans)",
            "masks_dir": str(masks_dir),
            "split": f"by mask file, seeded permutation (seed {tcfg.seed}), "
            f"{tcfg.val_fraction:.0%} validation",
            "train_files": [f.name for f in train_files],
            "val_files": [f.name for f in val_files],
            "normal": f"circle score <= {tcfg.normal_max_circle} and area_px > {tcfg.min_area_px}",
            "anomalous": f"circle score > {tcfg.anomalous_min_circle} "
            f"and area_px > {tcfg.min_area_px}",
            "train_counts": {
                "normal": n_normal,
                "normal_augmented": n_normal_aug,
                "anomalous": n_anom,
            },
        },
        "config": dataclasses.asdict(tcfg),
        "metrics_validation": {e: metrics[e] for e in ("dice", "mse")},
        "final_loss": {k: v[-1] for k, v in metrics["loss"].items()},
        "timing_s": {"data": round(t_data, 1), "fit": round(t_fit, 1), "total": round(total, 1)},
    }
    card["config"]["filters"] = list(tcfg.filters)
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log.info(
        "saved %s (%d parameters, %d bytes) in %.0f s",
        model_path, card["parameter_count"], card["file_bytes"], total,
    )

    if tcfg.install:
        dest = DEFAULT_WEIGHTS.parent
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(model_path, DEFAULT_WEIGHTS)
        shutil.copy2(card_path, DEFAULT_WEIGHTS.with_suffix(".json"))
        log.info("installed into %s", dest)
    return 0
