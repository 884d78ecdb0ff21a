"""Train the segmentation U-Nets on the MLography data.

``python -m experiments.run +exp=train_unet_impurities`` and ``+exp=train_unet_grains``.

Impurities: random 128 x 128 patches of ``scans/images`` with the manual
labels ``scans/impurity_masks``; a fraction of the patches is centred (with
a random shift) on a labelled impurity drawn uniformly over *objects*, so
small impurities are seen as often as large ones.

Grain boundaries: the labelled 256 x 256 regions (``grain_patches``, placed on
``reference_outputs/inpainted`` as the dataset README describes); random
crops inside the regions, the inputs cut from the whole inpainted scan.

Both: every scan is normalised once as a whole
(:func:`segmentation.tiling.normalize_scan`, as at inference); patches get the
8 flips/rotations and photometric augmentation (:mod:`segmentation.augment`).
Three disjoint sets of scans: training, tuning (``tune_scans``) and validation
(``val_scans``), fixed lists recorded in the card.  After each epoch the tuning
scans (impurities) or their labelled regions (grains, with 64 px of context)
are predicted with the tiled inference of the shipped path and scored
(matched-object F1 / boundary F1 at 2 px); training stops early when that
score has not improved for ``patience`` epochs (or at the time budget) and the
best weights are kept.  The probability threshold (and the post-processing
size) are then chosen on the tuning scans, and only then are the validation
scans predicted, once, for the card's held-out ``metrics_validation``.  With
no ``tune_scans`` the validation scans do the tuning too (optimistic metrics;
the card says so in ``training.selected_on``).

Threads: TensorFlow is limited to ``threads`` intra-op threads (environment
variables set before Keras is imported), so parallel trainings share the CPU.

Outputs in ``output_dir``: ``unet_<kind>.keras``, ``unet_<kind>.json`` (card:
data, split, config, metrics, date, command, keras version, parameter count,
threshold, sha256 of the weights) and ``history.json``; with ``install: true``
both model files are copied to ``segmentation/weights/``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig
from scipy import ndimage

from data.errors import InputNotFoundError
from experiments.research.training.model_card import card_header
from experiments.config import dataclass_from
from experiments.research.datasets.mlography import dev_root, grain_regions, read_gray
from segmentation.metrics import impurity_metrics
from .config import TrainUNetConfig

__all__ = [
    "TrainUNetConfig",
    "run_grains",
    "run_impurities",
    "sample_grain_patches",
    "sample_impurity_patches",
]

log = logging.getLogger(__name__)

KINDS = ("impurities", "grains")




def _set_threads(n: int) -> None:
    """Limit TensorFlow / OpenMP threads; effective only before TensorFlow is first imported."""
    for var in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = str(n)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# --------------------------------------------------------------------------- data


@dataclass
class _Scan:
    name: str
    x: np.ndarray  # float32 (M, N), normalised
    y: np.ndarray  # bool (M, N) impurity labels (registered when asked)
    y_raw: np.ndarray | None = None  # the labels as drawn
    centers: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))


def _scan_names(root: Path) -> list[str]:
    names = sorted((p.stem for p in (root / "scans" / "images").glob("*.jpg")), key=int)
    if not names:
        raise InputNotFoundError(f"no scans in {root / 'scans' / 'images'}")
    return names


def _load_impurity_scans(root: Path, names: list[str], *, register: bool = False) -> list[_Scan]:
    from data.registration import register_labels
    from segmentation.tiling import normalize_scan

    out = []
    for s in names:
        img = read_gray(root / "scans" / "images" / f"{s}.jpg")
        raw = read_gray(root / "scans" / "impurity_masks" / f"{s}.png") > 127
        if raw.shape != img.shape:
            raise ValueError(f"scan {s}: mask {raw.shape} and image {img.shape} differ")
        mask = register_labels(img, raw).mask if register else raw
        lab, n = ndimage.label(mask, np.ones((3, 3)))
        centers = np.asarray(ndimage.center_of_mass(mask, lab, np.arange(1, n + 1)), float).reshape(-1, 2)
        out.append(_Scan(s, normalize_scan(img), mask, raw, np.rint(centers).astype(np.int64)))
    return out


def sample_impurity_patches(
    scans: list[Any], n: int, *, patch: int, positive_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random patches of (image, mask) pairs, a fraction centred near impurities.

    Positive patches pick an impurity uniformly over all labelled objects (so
    small ones count as much as large ones) and place it at a random position
    of the patch (at least ``patch // 8`` px from its border).

    Returns
    -------
    x, y : ndarray, float32, shape (n, patch, patch, 1)
    """
    sizes = np.array([len(s.centers) for s in scans])
    n_pos = round(n * positive_fraction) if sizes.sum() else 0
    which = np.concatenate(
        [
            np.searchsorted(np.cumsum(sizes), rng.integers(0, max(sizes.sum(), 1), n_pos), side="right"),
            rng.integers(0, len(scans), n - n_pos),
        ]
    )
    x = np.empty((n, patch, patch, 1), np.float32)
    y = np.empty((n, patch, patch, 1), np.float32)
    margin = patch // 8
    for i, k in enumerate(which):  # one slice per patch
        s = scans[k]
        m, w = s.x.shape
        if i < n_pos:
            obj = s.centers[rng.integers(0, sizes[k])] if sizes[k] else np.array([m // 2, w // 2])
            off = rng.integers(margin, patch - margin, 2)
            r0, c0 = obj - off
        else:
            r0, c0 = rng.integers(0, m - patch + 1), rng.integers(0, w - patch + 1)
        r0, c0 = int(np.clip(r0, 0, m - patch)), int(np.clip(c0, 0, w - patch))
        x[i, ..., 0] = s.x[r0 : r0 + patch, c0 : c0 + patch]
        y[i, ..., 0] = s.y[r0 : r0 + patch, c0 : c0 + patch]
    return x, y


@dataclass
class _Region:
    scan: str
    row: int
    col: int
    y: np.ndarray  # bool (h, w)


def _load_grain_data(root: Path, names: list[str]) -> tuple[dict[str, np.ndarray], list[_Region]]:
    from segmentation.tiling import normalize_scan

    regions = [_Region(r.scan, r.row, r.col, r.boundaries) for r in grain_regions(root, names)]
    scans = {}
    for s in sorted({r.scan for r in regions}, key=int):
        scans[s] = normalize_scan(read_gray(root / "reference_outputs" / "inpainted" / f"{s}.png"))
    for r in regions:
        h, w = r.y.shape
        if r.row + h > scans[r.scan].shape[0] or r.col + w > scans[r.scan].shape[1]:
            raise ValueError(f"region {r.scan}-{r.row}-{r.col} lies outside the inpainted scan")
    return scans, regions


def load_rendered_grain_data(n: int, seed: int, truth: dict | None = None
                             ) -> tuple[dict[str, np.ndarray], list[_Region]]:
    """``n`` rendered exact-truth scans (seeds ``seed`` ...) as grain training data: one region each.

    ``truth`` overrides :class:`data.synthetic_truth.TruthConfig` (the defaults are eval_truth's scans).
    As the pipeline feeds the grain U-Net: the impurities inpainted (``ns``, 2 px, with the true
    mask here), the scan normalised as a whole.  The true boundaries (1 px: a pixel whose right or
    lower neighbour is another grain) are dilated 3x3 to about the real labels' width (~3 px).
    """
    from data.synthetic_truth import TruthConfig, make_truth_scan
    from inpainting import inpaint
    from segmentation.tiling import normalize_scan

    scans, regions = {}, []
    tcfg = TruthConfig(**dict(truth or {}))
    for i in range(int(n)):
        synth = make_truth_scan(tcfg, seed=int(seed) + i)
        name = f"rendered-{int(seed) + i}"
        pixels = inpaint(synth.pixels, synth.impurity_mask, method="ns", dilation_px=2)
        scans[name] = normalize_scan(pixels)
        y = ndimage.binary_dilation(synth.grain_boundaries, np.ones((3, 3), bool))
        regions.append(_Region(name, 0, 0, y))
    return scans, regions


def sample_grain_patches(
    scans: dict[str, np.ndarray], regions: list[_Region], n: int, *, patch: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random ``patch`` crops inside the labelled regions (inputs from the whole scan)."""
    x = np.empty((n, patch, patch, 1), np.float32)
    y = np.empty((n, patch, patch, 1), np.float32)
    ks = rng.integers(0, len(regions), n)
    for i, k in enumerate(ks):
        r = regions[k]
        h, w = r.y.shape
        dr, dc = int(rng.integers(0, h - patch + 1)), int(rng.integers(0, w - patch + 1))
        x[i, ..., 0] = scans[r.scan][r.row + dr : r.row + dr + patch, r.col + dc : r.col + dc + patch]
        y[i, ..., 0] = r.y[dr : dr + patch, dc : dc + patch]
    return x, y


# --------------------------------------------------------------------------- validation


def _predict(model, image: np.ndarray, cfg: TrainUNetConfig) -> np.ndarray:
    from segmentation.models import keras_predict_fn
    from segmentation.tiling import predict_tiled

    return predict_tiled(
        image, keras_predict_fn(model), tile=cfg.tile, overlap=cfg.overlap, batch_size=8,
        multiple=2 ** int(cfg.unet.get("depth", 3)),
    )


def _impurity_scores(probs, truths, cfg: TrainUNetConfig, threshold: float, min_area: int) -> dict:
    from segmentation.tiling import prob_to_mask

    rows = [
        impurity_metrics(prob_to_mask(p, threshold, min_area_px=min_area), t, match_iou=cfg.match_iou)
        for p, t in zip(probs, truths, strict=True)
    ]
    n_m, n_p, n_t = (sum(r[k] for r in rows) for k in ("n_matched", "n_pred", "n_true"))
    return {
        "object_f1": 2 * n_m / (n_p + n_t) if n_p + n_t else 0.0,
        "object_precision": n_m / n_p if n_p else 0.0,
        "object_recall": n_m / n_t if n_t else 0.0,
        "iou": float(np.mean([r["iou"] for r in rows])),
        "dice": float(np.mean([r["dice"] for r in rows])),
        "area_fraction_abs_rel_error": float(np.mean([abs(r["area_fraction_rel_error"]) for r in rows])),
    }


_CONTEXT = 64


def _grain_val_probs(model, scans, regions, cfg) -> list[np.ndarray]:
    out = []
    for r in regions:
        img = scans[r.scan]
        h, w = r.y.shape
        r0, c0 = max(0, r.row - _CONTEXT), max(0, r.col - _CONTEXT)
        r1, c1 = min(img.shape[0], r.row + h + _CONTEXT), min(img.shape[1], r.col + w + _CONTEXT)
        prob = _predict(model, img[r0:r1, c0:c1], cfg)
        out.append(prob[r.row - r0 : r.row - r0 + h, r.col - c0 : r.col - c0 + w])
    return out


def _grain_scores(probs, regions, cfg: TrainUNetConfig, threshold: float, min_len: int) -> dict:
    from segmentation.grains import clean_boundaries
    from segmentation.metrics import boundary_region_metrics

    rows = [
        boundary_region_metrics(
            clean_boundaries(p >= threshold, min_length_px=min_len), r.y, tolerance=cfg.tolerance
        )
        for p, r in zip(probs, regions, strict=True)
    ]

    def mean(k):
        v = np.array([row[k] for row in rows], float)
        return float(np.nanmean(v)) if np.isfinite(v).any() else 0.0

    def mean_abs(k):
        v = np.abs(np.array([row[k] for row in rows], float))
        return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")

    return {
        "boundary_f1": mean("f1"),
        "boundary_precision": mean("precision"),
        "boundary_recall": mean("recall"),
        # NaN when no region has a finite Heyn mean (e.g. nothing predicted)
        "heyn_abs_rel_error": mean_abs("heyn_rel_error"),
    }


# --------------------------------------------------------------------------- training loop


def _train(kind: str, cfg: DictConfig, output_dir: Path) -> int:
    tcfg = dataclass_from(TrainUNetConfig, cfg.get("train"), where="train")
    _set_threads(tcfg.threads)
    import keras

    from segmentation.augment import AugmentConfig, augment_batch
    from segmentation.losses import get_loss
    from segmentation.models import KINDS as MODEL_NAMES
    from segmentation.models import WEIGHTS_DIR, sha256_of
    from segmentation.unet import UNetConfig, build_unet, count_params

    t_start = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    root = dev_root(tcfg.data_root)
    names = _scan_names(root)
    missing = sorted((set(tcfg.val_scans) | set(tcfg.tune_scans)) - set(names))
    if missing:
        raise InputNotFoundError(f"validation / tuning scans {missing} not found in {root}")
    held = set(tcfg.val_scans) | set(tcfg.tune_scans)
    train_names = [s for s in names if s not in held]
    val_names = [s for s in names if s in tcfg.val_scans]
    # selection (epoch, threshold) on the tuning scans when given, else on the validation scans
    tune_names = [s for s in names if s in tcfg.tune_scans] or val_names
    keras.utils.set_random_seed(tcfg.seed)
    rng = np.random.default_rng(tcfg.seed)
    ucfg = UNetConfig(**tcfg.unet)
    acfg = AugmentConfig(**tcfg.augment)

    t0 = time.perf_counter()
    if kind == "impurities":
        reg = tcfg.register_labels
        train_scans = _load_impurity_scans(root, train_names, register=reg)
        held_scans = {"val": _load_impurity_scans(root, val_names, register=reg)}
        held_scans["tune"] = (
            _load_impurity_scans(root, tune_names, register=reg)
            if tune_names != val_names else held_scans["val"]
        )
        counts = {
            "n_train_scans": len(train_scans),
            "train_objects": int(sum(len(s.centers) for s in train_scans)),
            "val_objects": int(sum(len(s.centers) for s in held_scans["val"])),
            "tune_objects": int(sum(len(s.centers) for s in held_scans["tune"])),
        }

        def sample(n):
            return sample_impurity_patches(
                train_scans, n, patch=tcfg.patch, positive_fraction=tcfg.positive_fraction, rng=rng
            )

        def val_probs(model, which="tune"):
            return [_predict(model, s.x, tcfg) for s in held_scans[which]]

        def scores(probs, thr, size, which="tune", raw=False):
            truths = [s.y_raw if raw else s.y for s in held_scans[which]]
            return _impurity_scores(probs, truths, tcfg, thr, size)

        key = "object_f1"
    else:
        train_imgs, train_regions = _load_grain_data(root, train_names)
        held = {"val": _load_grain_data(root, val_names)}
        held["tune"] = _load_grain_data(root, tune_names) if tune_names != val_names else held["val"]
        if not train_regions or not held["val"][1] or not held["tune"][1]:
            raise InputNotFoundError(
                "need labelled grain regions in the training, tuning and validation scans"
            )
        counts = {
            "n_train_scans_with_regions": len(train_imgs),
            "train_regions": len(train_regions),
            "val_scans_with_regions": sorted(held["val"][0], key=int),
            "val_regions": len(held["val"][1]),
            "tune_scans_with_regions": sorted(held["tune"][0], key=int),
            "tune_regions": len(held["tune"][1]),
        }

        rendered: tuple[dict, list] = ({}, [])
        if tcfg.rendered_scans:
            rendered = load_rendered_grain_data(tcfg.rendered_scans, tcfg.rendered_seed, tcfg.rendered_truth)
            counts["rendered_scans"] = tcfg.rendered_scans
            counts["rendered_seeds"] = [tcfg.rendered_seed, tcfg.rendered_seed + tcfg.rendered_scans - 1]
            counts["rendered_share"] = tcfg.rendered_share

        def sample(n):
            n_r = int(round(n * tcfg.rendered_share)) if rendered[1] else 0
            x, y = sample_grain_patches(train_imgs, train_regions, n - n_r, patch=tcfg.patch, rng=rng)
            if not n_r:
                return x, y
            xr, yr = sample_grain_patches(*rendered, n_r, patch=tcfg.patch, rng=rng)
            return np.concatenate([x, xr]), np.concatenate([y, yr])

        def val_probs(model, which="tune"):
            return _grain_val_probs(model, *held[which], tcfg)

        def scores(probs, thr, size, which="tune", raw=False):
            return _grain_scores(probs, held[which][1], tcfg, thr, size)

        key = "boundary_f1"
    t_data = time.perf_counter() - t0
    log.info("%s: %d train / %d tune / %d val scans, data loaded in %.1f s: %s",
             kind, len(train_names), len(tcfg.tune_scans), len(val_names), t_data, counts)

    model = build_unet(ucfg, name=f"unet_{kind}")
    loss_opts = dict(tcfg.loss)
    loss = get_loss(loss_opts.pop("name", "combo"), **loss_opts)
    lr = float(tcfg.learning_rate)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss)
    n_params = count_params(model)
    log.info("U-Net %s: %d parameters", ucfg.to_dict(), n_params)

    history: list[dict] = []
    best, best_epoch, best_weights, since_best, since_lr = -1.0, -1, None, 0, 0
    t_fit0 = time.perf_counter()
    stop_reason = "max epochs"
    for epoch in range(1, tcfg.epochs + 1):
        te = time.perf_counter()
        x, y = sample(tcfg.patches_per_epoch)
        x, y = augment_batch(x, y, rng, acfg)
        h = model.fit(x, y, batch_size=tcfg.batch_size, epochs=1, verbose=0, shuffle=True)
        t_train = time.perf_counter() - te
        probs = val_probs(model)
        sc = max((scores(probs, t, 0) for t in tcfg.monitor_thresholds), key=lambda d: d[key])
        rec = {"epoch": epoch, "loss": float(h.history["loss"][-1]), "lr": lr,
               "seconds": round(time.perf_counter() - te, 1), "train_seconds": round(t_train, 1),
               **{k: round(v, 4) for k, v in sc.items()}}
        history.append(rec)
        improved = sc[key] > best + 1e-4
        if improved:
            best, best_epoch, best_weights = sc[key], epoch, model.get_weights()
            since_best = since_lr = 0
        else:
            since_best += 1
            since_lr += 1
        log.info("epoch %d: loss %.4f, val %s %.4f (best %.4f @ %d), %.0f s",
                 epoch, rec["loss"], key, sc[key], best, best_epoch, rec["seconds"])
        if since_best >= tcfg.patience:
            stop_reason = f"early stopping (no {key} gain for {tcfg.patience} epochs)"
            break
        if since_lr >= tcfg.lr_patience and lr > tcfg.min_learning_rate:
            lr = max(lr / 2, tcfg.min_learning_rate)
            model.optimizer.learning_rate.assign(lr)
            since_lr = 0
            log.info("learning rate -> %g", lr)
        if (time.perf_counter() - t_start) / 60 > tcfg.max_minutes:
            stop_reason = f"time budget ({tcfg.max_minutes} min)"
            break
    t_fit = time.perf_counter() - t_fit0
    model.set_weights(best_weights)
    log.info("stopped: %s; best epoch %d", stop_reason, best_epoch)

    # threshold and post-processing size, chosen with the best weights on the tuning scans
    # (on the validation scans when no tune_scans are given)
    probs = val_probs(model)
    grid = [
        {"threshold": t, "min_size": m, **scores(probs, t, m)}
        for t in tcfg.thresholds
        for m in tcfg.min_sizes
    ]
    def merit(g: dict) -> float:
        if tcfg.selection == "f1_minus_heyn" and "heyn_abs_rel_error" in g:
            err = g["heyn_abs_rel_error"]
            return g[key] - (err if np.isfinite(err) else 1.0)  # no grain size: worst case
        return g[key]

    choice = max(grid, key=lambda g: (round(merit(g), 4), -abs(g["threshold"] - 0.5), -g["min_size"]))
    log.info("chosen threshold %.2f, min size %d: %s", choice["threshold"], choice["min_size"],
             {k: round(v, 4) for k, v in choice.items() if isinstance(v, float)})
    heldout_registered = None
    if tune_names != val_names:  # the validation scans, seen once, with everything fixed
        vprobs = val_probs(model, "val")
        fixed = {"threshold": choice["threshold"], "min_size": choice["min_size"]}
        # the card's held-out metrics are always against the labels as drawn
        heldout = {**fixed, **scores(vprobs, fixed["threshold"], fixed["min_size"], "val", raw=True)}
        if kind == "impurities" and tcfg.register_labels:
            heldout_registered = {
                **fixed, **scores(vprobs, fixed["threshold"], fixed["min_size"], "val")}
        log.info("held-out validation: %s",
                 {k: round(v, 4) for k, v in heldout.items() if isinstance(v, float)})
    else:
        heldout = dict(choice)

    name = MODEL_NAMES[kind]
    model_path = output_dir / f"{name}.keras"
    card_path = output_dir / f"{name}.json"
    # save an uncompiled copy: no optimizer state in the shipped file (a third of the size)
    export = build_unet(ucfg, name=f"unet_{kind}")
    export.set_weights(model.get_weights())
    export.save(model_path)
    post = {"min_area_px": choice["min_size"]} if kind == "impurities" else {
        "thin": True, "min_length_px": choice["min_size"]}
    card = {
        **card_header(
            name=name,
            description=(
                "U-Net for impurity (inclusion) segmentation of optical metallography scans"
                if kind == "impurities"
                else "U-Net for grain-boundary segmentation of impurity-free (inpainted) scans"
            ) + "; data from MLography (Rusanovsky, Beeri & Oren, Sci. Rep. 12, 4776 (2022)).",
            command=f"python -m experiments.run +exp=train_unet_{kind}"
            + (" train.install=true" if tcfg.install else ""),
            model=export,
            model_path=model_path,
        ),
        "kind": kind,
        "sha256": sha256_of(model_path),
        "threshold": choice["threshold"],
        "postprocess": post,
        "input": {
            "channels": 1,
            "normalisation": "segmentation.tiling.normalize_scan (0.5 + 0.2 (x - median) / IQR "
            "of the whole scan, clipped to [0, 1])",
            "scan": "raw gray scan" if kind == "impurities" else "impurity-free (inpainted) gray scan",
            "size_multiple": 2**ucfg.depth,
            "tile": tcfg.tile,
            "overlap": tcfg.overlap,
        },
        "data": {
            "source": "MLography public data (development split)",
            "root": str(root),
            "inputs": "scans/images" if kind == "impurities" else "reference_outputs/inpainted",
            "labels": ("scans/impurity_masks" + (
                ", each scan's labels registered to its dark spots by one affine map "
                "(data.registration.register_labels) for training and tuning"
                if tcfg.register_labels else "")) if kind == "impurities"
            else "grain_patches/boundaries (256x256 regions, SCAN-R-C-r-c)",
            "split": "by scan: fixed tuning (epoch, threshold) and validation (held-out metrics) "
            "lists; scans 10 and 11, bundled in data/samples, are in training",
            "val_scans": list(val_names),
            "tune_scans": list(tune_names) if tune_names != val_names else [],
            "train_scans": list(train_names),
            **counts,
        },
        "config": {**dataclasses.asdict(tcfg), "unet": ucfg.to_dict(), "augment": acfg.to_dict()},
        "training": {
            "epochs_run": len(history),
            "best_epoch": best_epoch,
            "stop_reason": stop_reason,
            "monitor": f"{'tuning' if tune_names != val_names else 'validation'} {key}, "
            f"best of thresholds {list(tcfg.monitor_thresholds)}",
            "threshold_selection": tcfg.selection,
            "selected_on": "tune_scans" if tune_names != val_names else "val_scans (optimistic)",
        },
        "metrics_validation": heldout,
        **({"metrics_validation_registered_labels": heldout_registered}
           if heldout_registered is not None else {}),
        "metrics_tuning": dict(choice),
        "threshold_grid": grid,
        "timing_s": {"data": round(t_data, 1), "fit": round(t_fit, 1),
                     "total": round(time.perf_counter() - t_start, 1)},
    }
    card_path.write_text(json.dumps(card, indent=2, default=float) + "\n")
    try:  # the ONNX export for the fast backends, recorded in the card (the Keras file stays the truth)
        from segmentation.backends.export import export_and_record

        export_and_record(export, model_path, tile=max(64, 4 * 2 ** int(card["config"]["unet"]["depth"])))
    except ImportError as exc:
        log.warning("no ONNX export (pip install 'quantmet[fast]'): %s", exc)
    else:
        try:  # the int8 model for OpenVINO, calibrated on the training scans only
            from segmentation.backends.quantize import quantize_from_training_scans

            quantize_from_training_scans(model_path, root, tile=int(card["input"].get("tile", 256)))
        except ImportError as exc:
            log.warning("no int8 model (pip install 'quantmet[fast]'): %s", exc)
    (output_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    log.info("saved %s (%d parameters, %d bytes) in %.0f s", model_path, n_params,
             card["file_bytes"], card["timing_s"]["total"])
    if tcfg.install:
        WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copy2(model_path, WEIGHTS_DIR / model_path.name)
        shutil.copy2(card_path, WEIGHTS_DIR / card_path.name)
        for suffix in (".onnx", ".int8.xml", ".int8.bin"):
            extra = model_path.with_suffix(suffix)
            if extra.is_file():
                shutil.copy2(extra, WEIGHTS_DIR / extra.name)
        log.info("installed into %s", WEIGHTS_DIR)
    return 0


def run_impurities(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``train_unet_impurities``."""
    return _train("impurities", cfg, output_dir)


def run_grains(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``train_unet_grains``."""
    return _train("grains", cfg, output_dir)
