"""Train the phase U-Net on the classical phase labels (issue 24): ``+exp=train_unet_phases``.

The teacher is :func:`segmentation.phases.segment_phases` with the ``train.phases`` config; the
student a :func:`segmentation.unet.build_unet` with a softmax over the ``n`` named phases
(no "unassigned" class: pixels the teacher leaves at 0 carry no loss, and excluded pixels are
set to 0 after prediction, as the classical segmenter does).

Data: the scans of ``train.inputs`` (files, folders, globs; :func:`data.read_scan`), sorted by
scan id, the last ``n_val`` held out for validation and the ``n_tune`` before them for the epoch
choice; or, with no inputs, generated coating cross-sections
(:func:`data.synthetic_phases.coating_scan`) of the declared seed ranges, whose exact truth is
also scored.  Every scan is normalised whole (:func:`segmentation.tiling.normalize_scan`, as at
inference); random ``patch`` crops (half centred on a pixel of a uniformly drawn class) get the
8 flips / rotations and light noise (:mod:`segmentation.augment`); the loss is a class-weighted
sparse cross-entropy.

After each epoch the tuning scans are predicted with the tiled inference and scored (mean IoU
against the teacher); the best epoch's weights are kept (early stopping on ``patience``, a
``max_minutes`` budget).  Only then are the validation scans predicted, once, with the saved
model through :func:`segmentation.phases.learned.predict_phases` (the pipeline's path), and
scored against the teacher (per-phase IoU, mean IoU, pixel agreement) and, for generated scans,
against the generator's truth, next to the teacher's own score on the same pixels.

Outputs in ``output_dir``: ``unet_phases.keras``, ``unet_phases.json`` (card) and
``history.json``; ``install: true`` copies the model and card to ``segmentation/weights/``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from data.errors import InputNotFoundError
from experiments.config import dataclass_from
from experiments.research.training.model_card import card_header

from .config import TrainUNetPhasesConfig

__all__ = ["TrainUNetPhasesConfig", "iou_table", "run", "sample_phase_patches"]

log = logging.getLogger(__name__)

_COMMAND = "python -m experiments.run +exp=train_unet_phases"


@dataclass
class _Scan:
    name: str
    x: np.ndarray  # float32 (M, N), normalised as at inference
    teacher: np.ndarray  # uint8 (M, N) classical labels, 0 = unassigned
    pixels: np.ndarray  # the scan as read / generated
    pixel_size_um: float | None
    truth: np.ndarray | None = None  # uint8 generator truth (0 = mount), generated scans only
    coords: list | None = None  # per class k (0-based): (P, 2) sampled pixel positions


# --------------------------------------------------------------------------- data


def _prepare(name, pixels, pixel_size_um, pcfg, truth=None) -> _Scan:
    from data.io import to_gray
    from segmentation.phases import segment_phases
    from segmentation.tiling import normalize_scan

    grey = to_gray(pixels)
    teacher = segment_phases(pixels, pcfg, pixel_size_um=pixel_size_um)
    return _Scan(name, normalize_scan(grey), teacher, pixels, pixel_size_um, truth)


def _generated(tcfg: TrainUNetPhasesConfig, pcfg, seeds: tuple[int, int]) -> list[_Scan]:
    from data.synthetic_phases import coating_scan

    out = []
    for s in range(*seeds):
        t = coating_scan(seed=s, **dict(tcfg.generator))
        same = tuple(pcfg.names) == tuple(t.names)
        if not same and s == seeds[0]:
            log.warning("phases.names %s are not the generator's %s: no scores against the truth",
                        list(pcfg.names), list(t.names))
        out.append(_prepare(f"seed{s}", t.image, t.pixel_size_um, pcfg, truth=t.labels if same else None))
    return out


def _user_files(tcfg: TrainUNetPhasesConfig) -> list:
    from data.inputs import discover_inputs

    items = {}
    for spec in tcfg.inputs:
        for it in discover_inputs(spec):
            items.setdefault(it.scan_id, it)
    if not items:
        raise InputNotFoundError(f"train.inputs {list(tcfg.inputs)} name no image files")
    need = tcfg.n_val + tcfg.n_tune + 1
    if len(items) < need:
        raise InputNotFoundError(
            f"train.inputs give {len(items)} scans; n_val={tcfg.n_val} + n_tune={tcfg.n_tune} "
            f"+ at least 1 training scan = {need} are needed"
        )
    return [items[k] for k in sorted(items)]


def _load_user(items, pcfg) -> list[_Scan]:
    from data.io import read_scan

    out = []
    for it in items:
        sc = read_scan(it.path, scan_id=it.scan_id)
        out.append(_prepare(it.scan_id, sc.pixels, sc.pixel_size_um, pcfg))
    return out


def _index_classes(scans: list[_Scan], n: int, rng: np.random.Generator, per_class: int = 4000) -> None:
    for s in scans:
        s.coords = []
        for k in range(1, n + 1):
            rc = np.argwhere(s.teacher == k)
            if len(rc) > per_class:
                rc = rc[rng.choice(len(rc), per_class, replace=False)]
            s.coords.append(rc)


def sample_phase_patches(
    scans: list, n_patches: int, *, patch: int, n_classes: int, balanced_fraction: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Random ``patch`` crops of (normalised image, teacher labels).

    A ``balanced_fraction`` of the crops is centred (shifted by up to ``patch // 4``) on a pixel
    of a class drawn uniformly among the classes present in the training scans, so rare phases
    are seen; the rest lie at uniform positions.

    Returns
    -------
    x : ndarray, float32, (n, patch, patch, 1)
    y : ndarray, float32, (n, patch, patch, 1)
        Teacher label - 1 (phase index), -1 where the teacher left the pixel unassigned.
    """
    x = np.empty((n_patches, patch, patch, 1), np.float32)
    y = np.empty((n_patches, patch, patch, 1), np.float32)
    present = [k for k in range(n_classes) if any(len(s.coords[k]) for s in scans)]
    n_bal = round(n_patches * balanced_fraction) if present else 0
    for i in range(n_patches):
        if i < n_bal:
            k = present[int(rng.integers(len(present)))]
            cands = [j for j, s in enumerate(scans) if len(s.coords[k])]
            s = scans[cands[int(rng.integers(len(cands)))]]
            r, c = s.coords[k][int(rng.integers(len(s.coords[k])))]
            r0 = int(r) - patch // 2 + int(rng.integers(-(patch // 4), patch // 4 + 1))
            c0 = int(c) - patch // 2 + int(rng.integers(-(patch // 4), patch // 4 + 1))
        else:
            s = scans[int(rng.integers(len(scans)))]
            r0 = int(rng.integers(0, s.x.shape[0] - patch + 1))
            c0 = int(rng.integers(0, s.x.shape[1] - patch + 1))
        m, w = s.x.shape
        r0, c0 = int(np.clip(r0, 0, m - patch)), int(np.clip(c0, 0, w - patch))
        x[i, ..., 0] = s.x[r0 : r0 + patch, c0 : c0 + patch]
        y[i, ..., 0] = s.teacher[r0 : r0 + patch, c0 : c0 + patch].astype(np.float32) - 1.0
    return x, y


def _class_weights(scans: list[_Scan], n: int, power: float, cap: float) -> np.ndarray:
    counts = np.zeros(n, np.float64)
    for s in scans:
        counts += np.bincount(s.teacher.ravel(), minlength=n + 1)[1 : n + 1]
    freq = counts / max(counts.sum(), 1.0)
    w = np.where(freq > 0, np.maximum(freq, 1e-6) ** -float(power), 0.0)
    w = w / max(float((w * freq).sum()), 1e-12)  # mean weight 1 over the training pixels
    return np.minimum(w, float(cap)).astype(np.float32)


# --------------------------------------------------------------------------- metrics


def iou_table(preds: list[np.ndarray], refs: list[np.ndarray], names: tuple[str, ...],
              masks: list[np.ndarray] | None = None) -> dict:
    """Pixel agreement of label images with reference labels, pooled over scans.

    Parameters
    ----------
    preds, refs : lists of uint8 (M, N)
        Labels ``k`` = ``names[k - 1]``; pixels with ``ref == 0`` are not scored.
    names : tuple of str
    masks : list of bool (M, N), optional
        Only these pixels are scored.

    Returns
    -------
    dict
        ``iou`` (per phase: |P = k and R = k| / |P = k or R = k|; None where neither has the
        phase), ``mean_iou`` (over the phases with an IoU), ``pixel_agreement`` and
        ``n_pixels``.
    """
    inter = np.zeros(len(names))
    union = np.zeros(len(names))
    agree = total = 0
    for i, (p, r) in enumerate(zip(preds, refs, strict=True)):
        keep = r > 0
        if masks is not None:
            keep &= masks[i]
        pk, rk = p[keep], r[keep]
        agree += int((pk == rk).sum())
        total += int(keep.sum())
        for k in range(1, len(names) + 1):
            a, b = pk == k, rk == k
            inter[k - 1] += int((a & b).sum())
            union[k - 1] += int((a | b).sum())
    iou = {nm: (float(inter[k] / union[k]) if union[k] else None) for k, nm in enumerate(names)}
    vals = [v for v in iou.values() if v is not None]
    return {"iou": iou, "mean_iou": float(np.mean(vals)) if vals else None,
            "pixel_agreement": agree / total if total else None, "n_pixels": total}


def _fraction_errors(preds, truths, names) -> dict:
    """Mean |area fraction - truth| (pp) per phase over the truth-assigned pixels of each scan."""
    out = {}
    for k, nm in enumerate(names, start=1):
        errs = []
        for p, t in zip(preds, truths, strict=True):
            keep = t > 0
            errs.append(100.0 * (np.mean(p[keep] == k) - np.mean(t[keep] == k)))
        out[nm] = {"mean_abs_pp": float(np.mean(np.abs(errs))), "max_abs_pp": float(np.max(np.abs(errs)))}
    return out


# --------------------------------------------------------------------------- training


def _predict_labels(model, x: np.ndarray, tcfg: TrainUNetPhasesConfig, depth: int) -> np.ndarray:
    from segmentation.models import keras_predict_fn
    from segmentation.tiling import predict_tiled

    prob = predict_tiled(x, keras_predict_fn(model), tile=tcfg.tile, overlap=tcfg.overlap,
                         batch_size=8, multiple=2**depth)
    return (np.argmax(prob, axis=2) + 1).astype(np.uint8)


def _bench(tcfg: TrainUNetPhasesConfig, pcfg, model_path: Path) -> dict:
    """Seconds of classical vs learned phase segmentation of one generated bench_px^2 coating scan."""
    from data.synthetic_phases import coating_scan
    from segmentation.phases import segment_phases
    from segmentation.phases.learned import load_phase_model, predict_phases

    n = int(tcfg.bench_px)
    gen = {**dict(tcfg.generator), "shape": (n, n), "thickness_px": 0.4 * n}
    t = coating_scan(seed=int(tcfg.val_seeds[0]), **gen)
    model, card = load_phase_model(model_path)
    predict_phases(t.image[:256, :256], model, card)  # warm-up (graph tracing)
    t0 = time.perf_counter()
    classical = segment_phases(t.image, pcfg, pixel_size_um=t.pixel_size_um)
    t1 = time.perf_counter()
    learned = predict_phases(t.image, model, card, pixel_size_um=t.pixel_size_um)
    t2 = time.perf_counter()
    import os

    from segmentation.backends import default_threads

    return {
        "scan_px": [n, n], "seed": int(tcfg.val_seeds[0]),
        "classical_s": round(t1 - t0, 2), "learned_s": round(t2 - t1, 2),
        "learned_over_classical": round((t2 - t1) / max(t1 - t0, 1e-9), 2),
        "backend": "keras (fp32)", "threads": default_threads() or f"all ({os.cpu_count()})",
        "agreement_learned_vs_classical": float(np.mean(learned == classical)),
        # pixel agreement with the generator's truth on its assigned pixels (the mount not scored)
        **({"agreement_vs_truth": {
            "learned": float(np.mean(learned[t.labels > 0] == t.labels[t.labels > 0])),
            "classical": float(np.mean(classical[t.labels > 0] == t.labels[t.labels > 0]))}}
           if tuple(pcfg.names) == tuple(t.names) else {}),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``train_unet_phases``."""
    tcfg = dataclass_from(TrainUNetPhasesConfig, cfg.get("train"), where="train")
    from .unet import _set_threads

    _set_threads(tcfg.threads)
    import keras

    from data.model_cards import sha256_of
    from segmentation.augment import AugmentConfig, augment_batch
    from segmentation.phases import PhasesConfig
    from segmentation.phases.learned import MODEL_NAME, load_phase_model, predict_phases
    from segmentation.unet import UNetConfig, build_unet, count_params

    t_start = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    pcfg = PhasesConfig(**dict(tcfg.phases))
    names = tuple(pcfg.names)
    n = len(names)
    ucfg = UNetConfig(**dict(tcfg.unet))
    acfg = AugmentConfig(**dict(tcfg.augment))
    if tcfg.patch % 2**ucfg.depth or tcfg.tile % 2**ucfg.depth:
        raise ValueError(f"train.patch ({tcfg.patch}) and train.tile ({tcfg.tile}) must be multiples "
                         f"of 2**depth = {2**ucfg.depth}")
    keras.utils.set_random_seed(tcfg.seed)
    rng = np.random.default_rng(tcfg.seed)

    t0 = time.perf_counter()
    if tcfg.inputs:
        items = _user_files(tcfg)
        n_tr = len(items) - tcfg.n_val - tcfg.n_tune
        train = _load_user(items[:n_tr], pcfg)
        tune = _load_user(items[n_tr : n_tr + tcfg.n_tune], pcfg)
        val = _load_user(items[n_tr + tcfg.n_tune :], pcfg)
        data = {"source": "train.inputs", "inputs": list(tcfg.inputs),
                "split": f"by scan id (sorted): the last {tcfg.n_val} validation (never trained or "
                         f"tuned on), the {tcfg.n_tune} before them tuning (epoch choice), the rest training"}
    else:
        train = _generated(tcfg, pcfg, tcfg.train_seeds)
        tune = _generated(tcfg, pcfg, tcfg.tune_seeds)
        val = _generated(tcfg, pcfg, tcfg.val_seeds)
        data = {"source": "generated: data.synthetic_phases.coating_scan",
                "generator": dict(tcfg.generator),
                "seeds": {"train": list(tcfg.train_seeds), "tune": list(tcfg.tune_seeds),
                          "val": list(tcfg.val_seeds), "ranges": "half-open [first, stop)"},
                "split": "by seed range: training, tuning (epoch choice) and validation seeds are disjoint"}
    if not tune:
        tune = val
        log.warning("n_tune=0: the epoch is chosen on the validation scans (optimistic metrics)")
    for s in (*train, *tune, *val):
        if min(s.x.shape) < tcfg.patch:
            raise ValueError(f"scan {s.name} ({s.x.shape}) is smaller than train.patch={tcfg.patch}")
    _index_classes(train, n, rng)
    cw = _class_weights(train, n, tcfg.class_balance, tcfg.max_class_weight)
    data.update({"teacher": "segmentation.phases.segment_phases", "train_scans": [s.name for s in train],
                 "tune_scans": [s.name for s in tune] if tune is not val else [],
                 "val_scans": [s.name for s in val],
                 "train_class_fractions": _train_fractions(train, names),
                 "class_weights": {nm: float(w) for nm, w in zip(names, cw, strict=True)}})
    t_data = time.perf_counter() - t0
    log.info("phases %s: %d train / %d tune / %d val scans, class weights %s, data in %.1f s",
             list(names), len(train), len(tune), len(val), np.round(cw, 2).tolist(), t_data)

    model = build_unet(ucfg, name=MODEL_NAME, classes=n)
    lr = float(tcfg.learning_rate)
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy())
    n_params = count_params(model)
    log.info("U-Net %s, %d classes: %d parameters", ucfg.to_dict(), n, n_params)

    history: list[dict] = []
    best, best_epoch, best_weights, since_best, since_lr = -1.0, 0, model.get_weights(), 0, 0
    stop_reason = "max epochs"
    t_fit0 = time.perf_counter()
    for epoch in range(1, tcfg.epochs + 1):
        te = time.perf_counter()
        x, y = sample_phase_patches(train, tcfg.patches_per_epoch, patch=tcfg.patch, n_classes=n,
                                    balanced_fraction=tcfg.balanced_fraction, rng=rng)
        x, y = augment_batch(x, y, rng, acfg)
        yi = np.rint(y[..., 0]).astype(np.int64)
        sw = np.where(yi >= 0, cw[np.clip(yi, 0, n - 1)], 0.0).astype(np.float32)
        h = model.fit(x, np.clip(yi, 0, n - 1).astype(np.int32), sample_weight=sw,
                      batch_size=tcfg.batch_size, epochs=1, verbose=0, shuffle=True)
        t_train = time.perf_counter() - te
        preds = [_predict_labels(model, s.x, tcfg, ucfg.depth) for s in tune]
        sc = iou_table(preds, [s.teacher for s in tune], names)
        rec = {"epoch": epoch, "loss": float(h.history["loss"][-1]),
               "tune_mean_iou": round(sc["mean_iou"] or 0.0, 4),
               "tune_pixel_agreement": round(sc["pixel_agreement"] or 0.0, 4),
               "seconds": round(time.perf_counter() - te, 1), "train_seconds": round(t_train, 1)}
        history.append(rec)
        score = sc["mean_iou"] or 0.0
        rec["lr"] = lr
        if score > best + 1e-4:
            best, best_epoch, best_weights = score, epoch, model.get_weights()
            since_best = since_lr = 0
        else:
            since_best += 1
            since_lr += 1
        log.info("epoch %d: loss %.4f, tune mean IoU %.4f (best %.4f @ %d), lr %g, %.0f s",
                 epoch, rec["loss"], score, best, best_epoch, lr, rec["seconds"])
        if since_best >= tcfg.patience:
            stop_reason = f"early stopping (no tuning mean-IoU gain for {tcfg.patience} epochs)"
            break
        if since_lr >= tcfg.lr_patience and lr > tcfg.min_learning_rate:
            lr = max(lr / 2, float(tcfg.min_learning_rate))
            model.optimizer.learning_rate.assign(lr)
            since_lr = 0
        if (time.perf_counter() - t_start) / 60 > tcfg.max_minutes:
            stop_reason = f"time budget ({tcfg.max_minutes} min)"
            break
    t_fit = time.perf_counter() - t_fit0
    log.info("stopped: %s; best epoch %d", stop_reason, best_epoch)

    # save an uncompiled copy (no optimizer state), then write the card without metrics, so
    # the validation scans are scored through the saved file and the pipeline's predict path
    model_path = output_dir / f"{MODEL_NAME}.keras"
    card_path = output_dir / f"{MODEL_NAME}.json"
    export = build_unet(ucfg, name=MODEL_NAME, classes=n)
    export.set_weights(best_weights)
    export.save(model_path)
    card = {
        **card_header(
            name=MODEL_NAME,
            description="Multi-class U-Net for phase segmentation (softmax over the named phases), "
                        "trained on the classical segment_phases labels of the training scans.",
            command=_COMMAND + (" train.install=true" if tcfg.install else ""),
            model=export, model_path=model_path,
        ),
        "kind": "phases",
        "sha256": sha256_of(model_path),
        "phases": {"names": list(names), "config": _jsonable(dataclasses.asdict(pcfg)),
                   "channels": "output channel k = names[k]; label k + 1 (0 = excluded)"},
        "input": {"channels": 1, "grey": "data.io.to_gray",
                  "normalisation": "segmentation.tiling.normalize_scan (0.5 + 0.2 (x - median) / IQR "
                                   "of the whole scan, clipped to [0, 1])",
                  "size_multiple": 2**ucfg.depth, "tile": tcfg.tile, "overlap": tcfg.overlap},
        "postprocess": {"argmax": True, "clean_small": "the phases config's min_size_um / min_size_px, "
                                                       "as segment_phases"},
        "data": data,
        "config": {**_jsonable(dataclasses.asdict(tcfg)), "unet": ucfg.to_dict(), "augment": acfg.to_dict()},
        "training": {"epochs_run": len(history), "best_epoch": best_epoch, "stop_reason": stop_reason,
                     "monitor": "tuning mean IoU vs the classical labels (argmax, no clean-up)",
                     "selected_on": "tune_scans" if tune is not val else "val_scans (optimistic)",
                     "loss": "sparse categorical cross-entropy, class-weighted"},
    }
    card_path.write_text(json.dumps(card, indent=2) + "\n")

    t_val0 = time.perf_counter()
    lmodel, lcard = load_phase_model(model_path)
    vpreds = [predict_phases(s.pixels, lmodel, lcard, pixel_size_um=s.pixel_size_um) for s in val]
    metrics = {"scans": [s.name for s in val],
               "learned_vs_classical": iou_table(vpreds, [s.teacher for s in val], names)}
    if all(s.truth is not None for s in val):
        truths = [s.truth for s in val]
        metrics["vs_truth"] = {
            "pixels": "the generator's assigned pixels (truth > 0; the mount, truth 0, is not scored: "
                      "both segmenters label it as the darkest phase)",
            "learned": iou_table(vpreds, truths, names),
            "classical": iou_table([s.teacher for s in val], truths, names),
            "fraction_error_learned": _fraction_errors(vpreds, truths, names),
            "fraction_error_classical": _fraction_errors([s.teacher for s in val], truths, names),
        }
    t_val = time.perf_counter() - t_val0
    card["metrics_validation"] = metrics
    card["timing_s"] = {"data": round(t_data, 1), "fit": round(t_fit, 1), "validation": round(t_val, 1)}
    if tcfg.bench_px:
        card["speed"] = _bench(tcfg, pcfg, model_path)
        log.info("speed on %d^2: classical %.2f s, learned %.2f s", tcfg.bench_px,
                 card["speed"]["classical_s"], card["speed"]["learned_s"])
    card["timing_s"]["total"] = round(time.perf_counter() - t_start, 1)
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    try:  # the ONNX export for the fast backends, recorded in the card (the Keras file stays the truth)
        from segmentation.backends.export import export_and_record

        saved = keras.saving.load_model(model_path, compile=False)  # the file the card describes
        export_and_record(saved, model_path, tile=64)
    except ImportError as exc:
        log.warning("no ONNX export (pip install 'quantmet[fast]'): %s", exc)
    card = json.loads(card_path.read_text())
    (output_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    _log_metrics(metrics)
    log.info("saved %s (%d parameters, %d bytes) in %.0f s", model_path, n_params, card["file_bytes"],
             card["timing_s"]["total"])
    if tcfg.install:
        from segmentation.phases.learned import default_weights

        dest = default_weights()
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(model_path, dest)
        shutil.copy2(card_path, dest.with_suffix(".json"))
        onnx_file = model_path.with_suffix(".onnx")
        if onnx_file.is_file():
            shutil.copy2(onnx_file, dest.with_suffix(".onnx"))
        log.info("installed into %s", dest.parent)
    return 0


def _train_fractions(scans: list[_Scan], names) -> dict:
    counts = np.zeros(len(names))
    for s in scans:
        counts += np.bincount(s.teacher.ravel(), minlength=len(names) + 1)[1:]
    return {nm: round(float(c / max(counts.sum(), 1)), 4) for nm, c in zip(names, counts, strict=True)}


def _jsonable(v):
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def _log_metrics(m: dict) -> None:
    def fmt(t):
        ious = ", ".join(f"{k} {v:.3f}" if v is not None else f"{k} -" for k, v in t["iou"].items())
        return f"mean IoU {t['mean_iou']:.4f}, agreement {t['pixel_agreement']:.4f} ({ious})"

    log.info("held-out, learned vs classical: %s", fmt(m["learned_vs_classical"]))
    if "vs_truth" in m:
        log.info("held-out, learned vs truth:     %s", fmt(m["vs_truth"]["learned"]))
        log.info("held-out, classical vs truth:   %s", fmt(m["vs_truth"]["classical"]))
