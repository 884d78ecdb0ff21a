"""Evaluate segmentation on labelled validation scans: ``python -m experiments.run +exp=eval_segmentation``.

Impurities (on whole scans, against ``scans/impurity_masks``): pixel IoU and
Dice, matched-object precision / recall / F1 (one-to-one matching of
8-connected objects that overlap, IoU > ``match_iou``, maximum cardinality; also
with the stricter ``strict_match_iou`` and with a ``match_tolerance_px``
distance tolerance), the relative error of the impurity area fraction and of
the number of objects.  The detection limit ``min_area_px`` (the run's
``data.min_area_px``) is applied in the same way to every method's mask (ours
and the prior art's) and, with ``limit_labels``, to the labels: 8-connected
objects under it are not impurities.  Grain boundaries (on the labelled
256 x 256 regions of the grain patches, placed on the inpainted scans):
boundary F1 at ``tolerance`` px (both sides thinned) and the relative error of
the per-region Heyn line-intercept mean, with bootstrap 95% intervals over
regions.

Methods side by side on the same scans: the shipped U-Nets
(:mod:`segmentation.models`), the classical path
(:func:`segmentation.segment_impurities`, impurities only) and the prior
art's published outputs (``reference_outputs/``).

Faint labels: labelled objects (registered to the scan) whose contrast
against their own surrounding ring is below ``faint_z`` x the scan's pixel
noise, the label and its ring moved by up to ``faint_search_px`` px
(:func:`data.registration.ring_contrast`).

Outputs in ``output_dir``: ``segmentation_eval.json`` (per scan / region and
summaries), ``segmentation_eval.md`` (the tables), ``error_maps/<scan>.png`` and
``faint_labels/<scan>.png`` (random labelled objects by ring contrast, to check
the faint call by eye).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from experiments.config import dataclass_from
from experiments.research.datasets.mlography import GrainRegion, dev_root, grain_regions, read_gray
from segmentation.metrics import boundary_region_metrics, impurity_metrics
from .config import EvalSegmentationConfig

__all__ = [
    "EvalSegmentationConfig",
    "bootstrap_interval",
    "cached_probabilities",
    "cross_validate",
    "select_setting",
    "calibrated_area_fraction",
    "cv_table",
    "fit_isotonic",
    "probability_histogram",
    "kfold_groups",
    "out_of_training_scans",
    "drop_small",
    "error_map",
    "evaluate_grains",
    "evaluate_impurities",
    "faint_label_sheet",
    "per_scan_table",
    "run",
    "targets_table",
    "tune_grains",
    "tune_impurities",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- task




def drop_small(mask: np.ndarray, min_area_px: int) -> np.ndarray:
    """``mask`` without its 8-connected objects under ``min_area_px`` pixels (the detection limit)."""
    from scipy import ndimage

    m = np.asarray(mask, bool)
    if min_area_px <= 1 or not m.any():
        return m
    lab, n = ndimage.label(m, np.ones((3, 3), bool))
    keep = np.bincount(lab.ravel(), minlength=n + 1) >= int(min_area_px)
    keep[0] = False
    return keep[lab]


def bootstrap_interval(
    values, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaNs left out); NaN when < 2 values."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size < 2 or n_boot < 1:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, (int(n_boot), v.size))].mean(axis=1)
    lo, hi = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def _mean(rows: list[dict], key: str) -> float:
    vals = np.array([r[key] for r in rows], float)
    vals = vals[np.isfinite(vals)]
    return float(vals.mean()) if vals.size else float("nan")


def _object_scores(rows: list[dict]) -> dict:
    """Matched-object precision / recall / F1 pooled over scans, pixel scores averaged."""
    n_m, n_p, n_t = (sum(r[k] for r in rows) for k in ("n_matched", "n_pred", "n_true"))
    return {
        "iou": _mean(rows, "iou"),
        "dice": _mean(rows, "dice"),
        "object_precision": n_m / n_p if n_p else float("nan"),
        "object_recall": n_m / n_t if n_t else float("nan"),
        "object_f1": 2 * n_m / (n_p + n_t) if n_p + n_t else float("nan"),
        "area_fraction_abs_rel_error": float(
            np.mean([abs(r["area_fraction_rel_error"]) for r in rows])
        ),
    }


def _visibility_scores(rows: list[dict]) -> dict:
    """Recall on the labelled objects darker / not darker than the matrix texture."""
    n_v = sum(r["n_true_visible"] for r in rows)
    n_f = sum(r["n_true"] - r["n_true_visible"] for r in rows)
    m_v = sum(r["n_matched_visible"] for r in rows)
    m_f = sum(r["n_matched_faint"] for r in rows)
    return {
        "faint_label_share": n_f / (n_v + n_f) if n_v + n_f else float("nan"),
        "recall_visible": m_v / n_v if n_v else float("nan"),
        "recall_faint": m_f / n_f if n_f else float("nan"),
    }


def _impurity_summary(rows: list[dict]) -> dict:
    n_pt = sum(r["n_pred"] + r["n_true"] for r in rows)
    scores = _object_scores(rows)
    area_error = scores.pop("area_fraction_abs_rel_error")
    n_true = sum(r["n_true"] for r in rows)
    return {
        **scores,
        "object_f1_strict": 2 * sum(r["n_matched_strict"] for r in rows) / n_pt
        if n_pt else float("nan"),
        "object_f1_tol": 2 * sum(r["n_matched_tolerant"] for r in rows) / n_pt
        if n_pt else float("nan"),
        "area_fraction_abs_rel_error": area_error,
        "objects": int(sum(r["n_pred"] for r in rows)),
        "labelled_objects": int(n_true),
        "count_abs_rel_error": float(np.mean([abs(r["count_rel_error"]) for r in rows])),
        "seconds_per_scan": _mean(rows, "seconds"),
    }


def _bin_label(lo: float, hi: float) -> str:
    return f">= {lo:g} px" if not np.isfinite(hi) else f"{lo:g}-{hi:g} px"


def recall_by_size(results: dict[str, list[dict]], size_bins) -> pd.DataFrame:
    """Labelled objects per area bin and the share of them each method matched (all scans)."""
    edges = list(size_bins)
    n_true = np.sum([r["n_true_by_size"] for r in next(iter(results.values()))], axis=0)  # the same labels
    table = pd.DataFrame({
        "labelled area": [_bin_label(lo, hi) for lo, hi in zip(edges[:-1], edges[1:])],
        "labelled objects": n_true,
    })
    for m, per_scan in results.items():
        n_matched = np.sum([r["n_matched_by_size"] for r in per_scan], axis=0)
        table[f"recall {m}"] = np.where(n_true > 0, n_matched / np.maximum(n_true, 1), np.nan)
    return table


def _grain_summary(rows: list[dict], *, n_boot: int = 2000, seed: int = 0) -> dict:
    f1 = [r["f1"] for r in rows]
    heyn = [abs(r["heyn_rel_error"]) for r in rows]
    f1_lo, f1_hi = bootstrap_interval(f1, n_boot=n_boot, seed=seed)
    h_lo, h_hi = bootstrap_interval(heyn, n_boot=n_boot, seed=seed)
    return {
        "boundary_precision": _mean(rows, "precision"),
        "boundary_recall": _mean(rows, "recall"),
        "boundary_f1": _mean(rows, "f1"),
        "boundary_f1_ci95_low": f1_lo,
        "boundary_f1_ci95_high": f1_hi,
        "heyn_abs_rel_error": float(np.nanmean(heyn)) if np.isfinite(heyn).any() else float("nan"),
        "heyn_abs_rel_error_ci95_low": h_lo,
        "heyn_abs_rel_error_ci95_high": h_hi,
        "heyn_rel_error_mean": _mean(rows, "heyn_rel_error"),
    }


#: BGR colours of :func:`error_map` (matched label, missed label, matched prediction, false prediction)
ERROR_COLOURS = {"matched label": (0, 200, 0), "missed label": (0, 230, 255),
                 "matched prediction": (0, 0, 255), "false prediction": (255, 0, 255)}


def error_map(image: np.ndarray, pred: np.ndarray, truth: np.ndarray, *, zoom: int = 2) -> np.ndarray:
    """The scan (BGR, ``zoom`` x larger) with object outlines coloured by their match status.

    Labelled objects: green when matched, yellow when missed; predicted ones:
    red when matched, magenta when false (:data:`ERROR_COLOURS`; matching as in
    :func:`segmentation.metrics.match_objects`).

    Returns
    -------
    ndarray of uint8, shape (zoom * M, zoom * N, 3)
    """
    from segmentation.metrics import match_objects

    m = match_objects(pred, truth)
    big = cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
    out = cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)
    groups = {
        "matched label": (m["true_labels"], m["true_matched"]),
        "missed label": (m["true_labels"], ~m["true_matched"]),
        "matched prediction": (m["pred_labels"], m["pred_matched"]),
        "false prediction": (m["pred_labels"], ~m["pred_matched"]),
    }
    for name, (labels, sel) in groups.items():
        mask = np.concatenate([[False], sel])[labels].astype(np.uint8)
        mask = cv2.resize(mask, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, ERROR_COLOURS[name], 1)
    return out


def faint_label_sheet(
    image: np.ndarray,
    labels: np.ndarray,
    z: np.ndarray,
    *,
    faint_z: float = 5.0,
    n: int = 24,
    seed: int = 0,
    half: int = 10,
    zoom: int = 5,
    per_row: int = 6,
) -> np.ndarray:
    """Crops of randomly chosen labelled objects, sorted by ring contrast, to check the faint call by eye.

    Each crop (``2 half + 1`` px, ``zoom`` x) shows the scan, then the same with
    the object outlined: red when faint (``z < faint_z``), green when visible (or without a ring);
    its ``z`` is written under it.

    Returns
    -------
    ndarray of uint8, BGR
    """
    from scipy import ndimage

    lt, k = ndimage.label(np.asarray(labels, bool), np.ones((3, 3), bool))
    if k == 0:
        return np.zeros((8, 8, 3), np.uint8)
    rng = np.random.default_rng(seed)
    pick = rng.choice(k, size=min(n, k), replace=False)
    pick = pick[np.argsort(np.nan_to_num(z[pick], nan=np.inf), kind="stable")]
    centres = ndimage.center_of_mass(np.ones_like(lt), lt, pick + 1)
    pad_img = np.pad(image, half, mode="edge")
    pad_lab = np.pad(lt, half)
    tiles = []
    for obj, (r, c) in zip(pick, centres):
        r, c = int(round(r)), int(round(c))
        crop = pad_img[r : r + 2 * half + 1, c : c + 2 * half + 1]
        m = (pad_lab[r : r + 2 * half + 1, c : c + 2 * half + 1] == obj + 1).astype(np.uint8)
        big = cv2.cvtColor(cv2.resize(crop, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST),
                           cv2.COLOR_GRAY2BGR)
        outlined = big.copy()
        contours, _ = cv2.findContours(cv2.resize(m, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST),
                                       cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        faint = bool(z[obj] < faint_z)  # NaN (no ring): visible, as in the eval
        cv2.drawContours(outlined, contours, -1, (0, 0, 255) if faint else (0, 200, 0), 1)
        gap = np.zeros((big.shape[0], 2, 3), np.uint8)
        tile = np.concatenate([big, gap, outlined, np.zeros((big.shape[0], 6, 3), np.uint8)], axis=1)
        tile = np.concatenate([tile, np.zeros((14, tile.shape[1], 3), np.uint8)], axis=0)
        cv2.putText(tile, f"z {z[obj]:.1f}", (2, tile.shape[0] - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (255, 255, 255), 1)
        tiles.append(tile)
    while len(tiles) % per_row:
        tiles.append(np.zeros_like(tiles[0]))
    return np.concatenate([np.concatenate(tiles[i : i + per_row], axis=1)
                           for i in range(0, len(tiles), per_row)], axis=0)


def _pipeline_count(labels_or_mask: np.ndarray, method: str, min_area_px: int) -> int:
    """Impurities the pipeline would list: the U-Net's mask split by the watershed, the classical
    labels as they are, a mask's 8-connected components; then the detection limit."""
    from data.regions import relabel_sequential
    from segmentation import split_touching

    a = np.asarray(labels_or_mask)
    if method == "unet":
        a = split_touching(a > 0, min_distance=4)
    elif a.dtype == bool:
        from scipy import ndimage

        a = ndimage.label(a, np.ones((3, 3), bool))[0]
    return int(relabel_sequential(a.astype(np.int32), min_area_px=min_area_px).max())


def evaluate_impurities(
    cfg: EvalSegmentationConfig, scans: list[str], output_dir: Path | None = None
) -> dict[str, list[dict]]:
    """Per-scan impurity metrics for each configured method, all at the detection limit ``min_area_px``."""
    root = dev_root(cfg.data_root)
    results: dict[str, list[dict]] = {m: [] for m in cfg.methods}
    limit = int(cfg.min_area_px)
    seg = None
    if "classical" in cfg.methods:
        from segmentation import make_segmenter

        seg = make_segmenter("classical", dict(cfg.classical or {}))
    for s in scans:
        img = read_gray(root / "scans" / "images" / f"{s}.jpg")
        truth_all = read_gray(root / "scans" / "impurity_masks" / f"{s}.png") > 127
        truth = drop_small(truth_all, limit) if cfg.limit_labels else truth_all
        below_limit = _count_objects(truth_all) - _count_objects(drop_small(truth_all, limit))
        registered = visible = None
        if cfg.registered_labels:
            from data.registration import register_labels, ring_contrast

            registered = register_labels(img, truth_all)
            reg_mask = drop_small(registered.mask, limit) if cfg.limit_labels else registered.mask
            _, z, noise = ring_contrast(img, reg_mask, search_px=cfg.faint_search_px)
            visible = ~(z < cfg.faint_z)  # per object; no ring (NaN) counts as visible
            if cfg.error_maps and output_dir is not None:
                folder = Path(output_dir) / "faint_labels"
                folder.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(folder / f"{s}.png"),
                            faint_label_sheet(img, reg_mask, z, faint_z=cfg.faint_z, seed=cfg.seed))
            log.info("scan %s: labels registered, largest shift %.1f px; %.0f%% faint labels "
                     "(ring contrast < %g x noise %.1f)", s, registered.max_shift_px,
                     100 * float(np.mean(~visible)) if visible.size else float("nan"), cfg.faint_z, noise)
        for m in cfg.methods:
            t0 = time.perf_counter()
            if m == "unet":
                from segmentation.models import predict_impurity_mask

                raw_pred = predict_impurity_mask(img, **dict(cfg.unet_options))
            elif m == "classical":
                raw_pred = seg(img)
            else:
                raw_pred = read_gray(root / "reference_outputs" / "impurity_masks" / f"{s}.png") > 127
            dt = time.perf_counter() - t0
            if raw_pred.shape != truth.shape:
                raise ValueError(f"{m} mask of scan {s} has shape {raw_pred.shape}, labels {truth.shape}")
            pred = drop_small(raw_pred > 0, limit)
            row = impurity_metrics(pred, truth, match_iou=cfg.match_iou, size_bins=cfg.size_bins)
            strict = impurity_metrics(pred, truth, match_iou=cfg.strict_match_iou)
            row["n_matched_strict"] = strict["n_matched"]
            tol = impurity_metrics(pred, truth, tolerance_px=cfg.match_tolerance_px)
            row["n_matched_tolerant"] = tol["n_matched"]
            row["f1_tol"] = tol["f1"]
            row["count_rel_error"] = row["n_pred"] / row["n_true"] - 1.0 if row["n_true"] else float("nan")
            row["n_regions_pipeline"] = _pipeline_count(raw_pred, m, limit)
            row["n_true_below_limit"] = below_limit
            row.update(scan=s, seconds=dt if m != "reference" else float("nan"))
            if m == "unet" and cfg.error_maps and output_dir is not None:
                folder = Path(output_dir) / "error_maps"
                folder.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(folder / f"{s}.png"), error_map(img, pred, truth, zoom=cfg.error_map_zoom))
            if registered is not None:
                reg = impurity_metrics(pred, reg_mask, match_iou=cfg.match_iou, true_subset=visible)
                reg_tol = impurity_metrics(pred, reg_mask, tolerance_px=cfg.match_tolerance_px)
                row["registered"] = {
                    **{k: reg[k] for k in ("iou", "dice", "n_pred", "n_true", "n_matched",
                                           "area_fraction_rel_error")},
                    "n_matched_tolerant": reg_tol["n_matched"],
                    # labelled objects with ring contrast >= faint_z x noise (data.registration.ring_contrast)
                    "n_true_visible": reg["n_true_subset"],
                    "n_matched_visible": reg["n_matched_subset"],
                    "n_matched_faint": reg["n_matched"] - reg["n_matched_subset"],
                    "max_shift_px": registered.max_shift_px,
                    "shift_matrix": registered.matrix.tolist(),
                }
            results[m].append(row)
            log.info("impurities scan %s %-9s F1 %.3f (tol %.3f) IoU %.3f area %+.0f%% objects %d / %d "
                     "(%.2f s)", s, m, row["f1"], row["f1_tol"], row["iou"],
                     100 * row["area_fraction_rel_error"], row["n_pred"], row["n_true"], dt)
    return results


def _count_objects(mask: np.ndarray) -> int:
    """Number of 8-connected objects of a mask."""
    from scipy import ndimage

    return int(ndimage.label(np.asarray(mask, bool), np.ones((3, 3), bool))[1])


def evaluate_grains(cfg: EvalSegmentationConfig, scans: list[str]) -> dict[str, list[dict]]:
    """Per-region boundary metrics of the U-Net and the prior art's published boundaries."""
    root = dev_root(cfg.data_root)
    regions = grain_regions(root, scans)
    methods = [m for m in cfg.methods if m in ("unet", "reference")]
    results: dict[str, list[dict]] = {m: [] for m in methods}
    by_scan: dict[str, list[GrainRegion]] = {}
    for r in regions:
        by_scan.setdefault(r.scan, []).append(r)
    for s, regs in by_scan.items():
        inpainted = read_gray(root / "reference_outputs" / "inpainted" / f"{s}.png")
        for m in methods:
            if m == "unet":
                from segmentation.models import predict_grain_boundaries

                pred = predict_grain_boundaries(inpainted, **dict(cfg.grain_options))
            else:
                pred = read_gray(root / "reference_outputs" / "grain_boundaries" / f"{s}.png") > 127
            for r in regs:
                sl = r.slices
                crop = pred[sl]
                if crop.shape != r.boundaries.shape:
                    raise ValueError(f"region {s}-{r.row}-{r.col} does not fit the {m} output")
                row = boundary_region_metrics(
                    crop, r.boundaries, tolerance=cfg.tolerance, line_spacing=cfg.line_spacing
                )
                row.update(scan=s, row=r.row, col=r.col)
                results[m].append(row)
        log.info(
            "grains scan %s: %s", s,
            ", ".join(f"{m} F1 {_mean(results[m][-len(regs):], 'f1'):.3f}" for m in methods),
        )
    return results


def _card_val_scans(kind: str) -> list[str]:
    from segmentation.models import model_card

    return [str(s) for s in model_card(kind)["data"]["val_scans"]]


# --------------------------------------------------------------------------- tuning (tuning scans only)

#: Axes of the impurity post-processing grid (eval.tune=impurities; eval.tune_grid overrides an axis).
IMPURITY_GRID = {
    "threshold": [0.1, 0.15, 0.2, 0.3, 0.4, 0.5],
    "extent_threshold": [None, 0.3, 0.4, 0.5, 0.6],
    "depth_fraction": [None, 0.4, 0.5, 0.55, 0.6],
    "depth_smooth_sigma": [0.5, 1.0],
}
#: Axes of the grain post-processing grid (eval.tune=grains).
GRAIN_GRID = {
    "threshold": [0.15, 0.2, 0.25, 0.3],
    "high_threshold": [None, 0.4, 0.5],
    "spur_length_px": [0, 10, 20],
    "min_mean_prob": [0.0, 0.3],
}
#: The impurity rule's F1 budget: object F1 (overlap and tolerant) within this of today's default.
F1_BUDGET = 0.02


def _check_tuning_scans(scans: list[str]) -> None:
    from experiments.research.datasets.splits import VAL_SCANS

    held = sorted(set(scans) & set(VAL_SCANS), key=int)
    if held:
        raise ValueError(f"tuning on validation scans {held} is not allowed: they are measured once, at the end")


def _impurity_grid(axes: dict) -> list[dict]:
    out = []
    for t in axes["threshold"]:
        for e in axes["extent_threshold"]:
            if e is not None and e <= t:
                continue
            out.append({"threshold": t, "extent_threshold": e, "depth_fraction": None})
        for d in axes["depth_fraction"]:
            if d is None:
                continue
            for sg in axes["depth_smooth_sigma"]:
                out.append({"threshold": t, "extent_threshold": None, "depth_fraction": d,
                            "depth_smooth_sigma": sg})
    return out


def tune_impurities(cfg: EvalSegmentationConfig, scans: list[str]) -> dict:
    """Choose the impurity post-processing on tuning scans, by a rule fixed in the code.

    Every setting of the grid (:data:`IMPURITY_GRID`) is scored on the scans
    against the labels as drawn, at the detection limit (``min_area_px``,
    masks and labels).  Rule: among the settings whose object F1 (overlap) and
    object F1 at ``match_tolerance_px`` are both within :data:`F1_BUDGET` of
    today's default (the card's threshold, one level, no depth outlines),
    take the one with the lowest mean absolute area-fraction error plus mean
    absolute count error (objects / labelled objects - 1) over the scans.
    """
    from segmentation.models import model_card, predict_probabilities
    from segmentation.refine import impurity_postprocess

    _check_tuning_scans(scans)
    root = dev_root(cfg.data_root)
    limit = int(cfg.min_area_px)
    axes = {**IMPURITY_GRID, **{k: list(v) for k, v in dict(cfg.tune_grid).items()}}
    data = []
    for s in scans:
        img = read_gray(root / "scans" / "images" / f"{s}.jpg")
        truth = read_gray(root / "scans" / "impurity_masks" / f"{s}.png") > 127
        prob, _ = predict_probabilities(img, "impurities", weights=dict(cfg.unet_options).get("weights"))
        data.append((s, img, prob, drop_small(truth, limit) if cfg.limit_labels else truth))
    card = model_card("impurities", dict(cfg.unet_options).get("weights"))
    today = {"threshold": float(card["threshold"]), "extent_threshold": None, "depth_fraction": None}

    def score(setting: dict) -> dict:
        rows = []
        for s, img, prob, truth in data:
            pred = impurity_postprocess(prob, img, setting["threshold"], min_area_px=limit,
                                        extent_threshold=setting.get("extent_threshold"),
                                        depth_fraction=setting.get("depth_fraction"),
                                        depth_smooth_sigma=setting.get("depth_smooth_sigma", 1.0))
            r = impurity_metrics(pred, truth)
            r["n_matched_tolerant"] = impurity_metrics(pred, truth, tolerance_px=cfg.match_tolerance_px)["n_matched"]
            r["count_rel_error"] = r["n_pred"] / r["n_true"] - 1.0 if r["n_true"] else float("nan")
            rows.append(r)
        n_pt = sum(r["n_pred"] + r["n_true"] for r in rows)
        area = float(np.mean([abs(r["area_fraction_rel_error"]) for r in rows]))
        count = float(np.mean([abs(r["count_rel_error"]) for r in rows]))
        return {**setting,
                "object_f1": 2 * sum(r["n_matched"] for r in rows) / n_pt,
                "object_f1_tol": 2 * sum(r["n_matched_tolerant"] for r in rows) / n_pt,
                "iou": float(np.mean([r["iou"] for r in rows])),
                "area_fraction_abs_rel_error": area, "count_abs_rel_error": count,
                "objective": area + count,
                "per_scan_area_error": [r["area_fraction_rel_error"] for r in rows],
                "per_scan_count_error": [r["count_rel_error"] for r in rows]}

    base = score(today)
    grid = [score(g) for g in _impurity_grid(axes)]
    ok = [g for g in grid if g["object_f1"] >= base["object_f1"] - F1_BUDGET
          and g["object_f1_tol"] >= base["object_f1_tol"] - F1_BUDGET]
    choice = min(ok or [base], key=lambda g: (round(g["objective"], 4), g["threshold"]))
    log.info("impurity post-processing: today %s -> chosen %s",
             {k: base[k] for k in ("object_f1", "object_f1_tol", "area_fraction_abs_rel_error")},
             {k: choice[k] for k in ("threshold", "extent_threshold", "depth_fraction",
                                      "object_f1", "object_f1_tol", "area_fraction_abs_rel_error")})
    return {"kind": "impurities", "scans": scans, "min_area_px": limit,
            "rule": (f"object F1 (overlap) and F1 ({cfg.match_tolerance_px} px tolerance) within "
                     f"{F1_BUDGET} of today's default; then the lowest mean |area-fraction error| + "
                     "mean |count error| over the tuning scans"),
            "today": base, "choice": choice, "n_candidates": len(grid), "n_within_budget": len(ok),
            "grid": grid}


def _grain_grid(axes: dict) -> list[dict]:
    out = []
    for t in axes["threshold"]:
        for h in axes["high_threshold"]:
            if h is not None and h <= t:
                continue
            for sp in axes["spur_length_px"]:
                for mp in axes["min_mean_prob"]:
                    if mp and mp <= t:
                        continue
                    out.append({"threshold": t, "high_threshold": h, "spur_length_px": sp,
                                "min_mean_prob": mp})
    return out


def tune_grains(cfg: EvalSegmentationConfig, scans: list[str]) -> dict:
    """Choose the grain post-processing on tuning regions, by a rule fixed in the code.

    Every setting of :data:`GRAIN_GRID` is scored on the labelled regions of the
    scans (the U-Net on the prior art's inpainted scans, post-processed on the
    whole scan, then cut to each region).  Merit per region: boundary F1 minus
    the absolute Heyn-mean error.  Rule: the setting with the highest mean
    merit replaces today's (the card's threshold, no hysteresis or pruning) only
    if its paired bootstrap 95% interval of the merit gain over the regions
    lies above 0; otherwise today's stays.
    """
    from segmentation.grains import grain_postprocess
    from segmentation.models import model_card, predict_probabilities

    _check_tuning_scans(scans)
    root = dev_root(cfg.data_root)
    axes = {**GRAIN_GRID, **{k: list(v) for k, v in dict(cfg.tune_grid).items()}}
    regions = grain_regions(root, scans)
    weights = dict(cfg.grain_options).get("weights")  # another model (with its card) to tune
    probs = {}
    for s in sorted({r.scan for r in regions}, key=int):
        probs[s] = predict_probabilities(read_gray(root / "reference_outputs" / "inpainted" / f"{s}.png"),
                                         "grains", weights=weights)[0]
    card = model_card("grains", weights)
    today = {"threshold": float(card["threshold"]), "high_threshold": None, "spur_length_px": 0,
             "min_mean_prob": 0.0}

    def score(setting: dict) -> dict:
        rows = []
        for s, prob in probs.items():
            pred = grain_postprocess(prob, setting["threshold"], high_threshold=setting["high_threshold"],
                                     min_length_px=int(card.get("postprocess", {}).get("min_length_px", 0)),
                                     spur_length_px=setting["spur_length_px"],
                                     min_mean_prob=setting["min_mean_prob"])
            for r in regions:
                if r.scan == s:
                    rows.append(boundary_region_metrics(pred[r.slices], r.boundaries, tolerance=cfg.tolerance,
                                                        line_spacing=cfg.line_spacing))
        f1 = np.array([r["f1"] for r in rows], float)
        heyn = np.abs(np.array([r["heyn_rel_error"] for r in rows], float))
        merit = f1 - np.where(np.isfinite(heyn), heyn, 1.0)
        return {**setting, "boundary_f1": float(np.nanmean(f1)),
                "boundary_precision": float(np.nanmean([r["precision"] for r in rows])),
                "boundary_recall": float(np.nanmean([r["recall"] for r in rows])),
                "heyn_abs_rel_error": float(np.nanmean(heyn)), "merit": float(np.mean(merit)),
                "merit_per_region": merit.tolist()}

    base = score(today)
    grid = [score(g) for g in _grain_grid(axes)]
    best = max(grid, key=lambda g: (round(g["merit"], 4), -g["spur_length_px"], -g["min_mean_prob"]))
    gain = np.array(best["merit_per_region"]) - np.array(base["merit_per_region"])
    lo, hi = bootstrap_interval(gain, n_boot=max(cfg.bootstrap, 1000), seed=cfg.seed)
    significant = bool(np.isfinite(lo) and lo > 0)
    choice = best if significant else base
    log.info("grain post-processing: today merit %.4f, best %.4f (gain [%.4f, %.4f]) -> %s",
             base["merit"], best["merit"], lo, hi, "best" if significant else "today")
    return {"kind": "grains", "scans": scans, "n_regions": len(regions),
            "rule": "highest mean (boundary F1 - |Heyn error|) over the tuning regions; replaces today's "
                    "only if the paired bootstrap 95% interval of the gain is above 0",
            "today": base, "best": best, "gain_ci95": [lo, hi], "significant": significant,
            "choice": choice, "grid": grid}


def _run_tuning(ecfg: EvalSegmentationConfig, scans: list[str], gscans: list[str], output_dir: Path) -> int:
    from experiments._markdown import markdown_table

    res = tune_impurities(ecfg, scans) if ecfg.tune == "impurities" else tune_grains(ecfg, gscans)
    (output_dir / "postprocess_tuning.json").write_text(json.dumps(res, indent=2, default=float) + "\n")
    keys = (["threshold", "extent_threshold", "depth_fraction", "depth_smooth_sigma", "object_f1",
             "object_f1_tol", "iou", "area_fraction_abs_rel_error", "count_abs_rel_error", "objective"]
            if res["kind"] == "impurities" else
            ["threshold", "high_threshold", "spur_length_px", "min_mean_prob", "boundary_f1",
             "boundary_precision", "boundary_recall", "heyn_abs_rel_error", "merit"])
    rows = [{"setting": "today", **{k: res["today"].get(k) for k in keys}},
            {"setting": "chosen", **{k: res["choice"].get(k) for k in keys}}]
    if "best" in res:
        rows.append({"setting": "best of grid", **{k: res["best"].get(k) for k in keys}})
    md = [f"# Post-processing of the {res['kind']} U-Net, chosen on tuning scans {', '.join(res['scans'])}",
          "", f"Rule: {res['rule']}.", "", markdown_table(pd.DataFrame(rows)), ""]
    if "gain_ci95" in res:
        md += [f"Merit gain of the best setting over today's, paired bootstrap 95% interval over "
               f"{res['n_regions']} regions: [{res['gain_ci95'][0]:.4f}, {res['gain_ci95'][1]:.4f}].", ""]
    (output_dir / "postprocess_tuning.md").write_text("\n".join(md))
    log.info("\n%s", "\n".join(md))
    return 0


def _sel_note(fold: dict) -> str:
    sel = fold.get("selection", {})
    if "n_within_one_se" not in sel:
        return ""
    if sel["best_by_merit"] == fold["chosen"]:
        return f" (also the best by merit, {sel['best_merit']:.4f}; {sel['n_within_one_se']} settings within one SE)"
    return (f" (best by merit {sel['best_by_merit']}: {sel['best_merit']:.4f} vs the chosen's "
            f"{sel['chosen_merit']:.4f}, paired SE of the gap {sel['se_vs_best']:.4f}; "
            f"{sel['n_within_one_se']} settings within one SE)")


def _run_cv(ecfg: EvalSegmentationConfig, output_dir: Path) -> int:
    from experiments._markdown import markdown_table

    res = cross_validate(ecfg)
    (output_dir / "cross_validation.json").write_text(json.dumps(res, indent=2, default=float) + "\n")
    table = cv_table(res)
    md = ["# Post-processing chosen by k-fold cross-validation (out-of-training scans)", "",
          f"Impurities: scans {', '.join(res['impurities']['scans'])}; grains: "
          f"{res['grains']['n_regions']} regions of scans {', '.join(res['grains']['scans'])}. "
          "Fold mean ± sd (worst fold).", "", markdown_table(table), "",
          f"U-Net maps from: {res.get('backends')}. Selection rule per fold: {ecfg.cv_rule}"
          + (" (among the settings whose training merit is within one paired standard error of the best, "
             "the closest to the shipped default)" if ecfg.cv_rule == "one_se" else " (the highest training merit)")
          + ".", "",
          "Chosen per fold (impurities): " + "; ".join(
              f"{'/'.join(f['held_out'])}: {f['chosen']}{_sel_note(f)}" for f in res["impurities"]["folds"]),
          "", "Chosen per fold (grains): " + "; ".join(
              f"{'/'.join(f['held_out'])}: {f['chosen']}{_sel_note(f)}" for f in res["grains"]["folds"]),
          "", "Area fraction from isotonic-calibrated probabilities (fitted on the other folds' pixels), "
          f"mean |error| over folds: {res['impurities']['summary']['calibrated']['area_fraction_abs_rel_error']}",
          "", f"Chosen on all folds together: impurities {res['impurities']['chosen_on_all']}, "
          f"grains {res['grains']['chosen_on_all']}.", ""]
    (output_dir / "cross_validation.md").write_text("\n".join(md))
    log.info("\n%s", "\n".join(md))
    return 0


_NAMES = {"unet": "U-Net (quantmet)", "classical": "classical (quantmet)", "reference": "MLography published"}


def per_scan_table(results: dict[str, list[dict]]) -> pd.DataFrame:
    """One row per scan and method: counts, object F1 (overlap / tolerance), IoU, area fractions."""
    rows = []
    for m, per_scan in results.items():
        for r in per_scan:
            rows.append({
                "scan": r["scan"], "method": _NAMES.get(m, m),
                "labelled objects": r["n_true"], "objects": r["n_pred"],
                "count error": r["count_rel_error"],
                "object F1": r["f1"], "object F1 (tol.)": r["f1_tol"], "pixel IoU": r["iou"],
                "area fraction labelled": r["area_fraction_true"], "area fraction": r["area_fraction_pred"],
                "area-fraction error": r["area_fraction_rel_error"],
            })
    t = pd.DataFrame(rows)
    if len(t):
        t = t.sort_values(["scan", "method"], key=lambda c: c.map(lambda v: (len(str(v)), str(v))))
    return t.reset_index(drop=True)


#: (summary column, target key, direction) of the issue's targets
_TARGETS = [
    ("object_f1_tol", "object_f1_tol", "min"),
    ("iou", "iou", "min"),
    ("area_fraction_abs_rel_error", "area_fraction_abs_rel_error", "max"),
    ("boundary_f1", "boundary_f1", "min"),
    ("heyn_abs_rel_error", "heyn_abs_rel_error", "max"),
]


def targets_table(summary: pd.DataFrame, targets: dict) -> pd.DataFrame:
    """Each target: its value for the U-Net and the prior art, met or not, and not worse than the prior art."""
    by = {r["method"]: r for r in summary.to_dict(orient="records")}
    ours, prior = by.get(_NAMES["unet"], {}), by.get(_NAMES["reference"], {})
    rows = []
    for col, key, direction in _TARGETS:
        if key not in targets or col not in ours:
            continue
        goal, v, pv = float(targets[key]), float(ours.get(col, np.nan)), float(prior.get(col, np.nan))
        met = v >= goal if direction == "min" else v <= goal
        better = (v >= pv if direction == "min" else v <= pv) if np.isfinite(pv) else None
        rows.append({"measure": col, "target": f"{'>=' if direction == 'min' else '<='} {goal:g}",
                     "U-Net": v, "prior art": pv, "target met": "yes" if met else "NO",
                     "not worse than prior art": "-" if better is None else ("yes" if better else "NO")})
    return pd.DataFrame(rows)


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``eval_segmentation``."""
    from experiments._markdown import markdown_table

    ecfg = dataclass_from(EvalSegmentationConfig, cfg.get("eval"), where="eval")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    scans = list(ecfg.scans) if ecfg.scans is not None else _card_val_scans("impurities")
    gscans = list(ecfg.grain_scans) if ecfg.grain_scans is not None else _card_val_scans("grains")
    log.info("impurity scans %s; grain-boundary scans %s", scans, gscans)
    if ecfg.tune == "cv":
        return _run_cv(ecfg, output_dir)
    if ecfg.tune is not None:
        return _run_tuning(ecfg, scans, gscans, output_dir)
    imp = evaluate_impurities(ecfg, scans, output_dir)
    grains = evaluate_grains(ecfg, gscans)
    rows = []
    for m in ecfg.methods:
        row = {"method": m, **_impurity_summary(imp[m])}
        if grains.get(m):
            row.update(_grain_summary(grains[m], n_boot=ecfg.bootstrap, seed=ecfg.seed))
        rows.append(row)
    table = pd.DataFrame(rows)
    by_size = recall_by_size(imp, ecfg.size_bins)
    table["method"] = table["method"].map(_NAMES)
    per_scan = per_scan_table(imp)
    targets = targets_table(table, ecfg.targets)
    registered = None
    if ecfg.registered_labels:
        reg_rows = []
        for m in ecfg.methods:
            rr = [r["registered"] for r in imp[m]]
            n_pt = sum(r["n_pred"] + r["n_true"] for r in rr)
            reg_rows.append({
                "method": _NAMES[m], **_object_scores(rr),
                "object_f1_tol": 2 * sum(r["n_matched_tolerant"] for r in rr) / n_pt if n_pt else float("nan"),
                **_visibility_scores(rr)})
        registered = pd.DataFrame(reg_rows)
    gscans = sorted({r["scan"] for rows_ in grains.values() for r in rows_}, key=int) or gscans
    out = {
        "config": asdict(ecfg),
        "impurity_scans": scans,
        "grain_scans": gscans,
        "n_grain_regions": len(next(iter(grains.values()), [])),
        "summary": table.to_dict(orient="records"),
        "per_scan": per_scan.to_dict(orient="records"),
        "targets": targets.to_dict(orient="records"),
        "recall_by_size": by_size.to_dict(orient="records"),
        "summary_registered_labels": None if registered is None
        else registered.to_dict(orient="records"),
        "impurities": imp,
        "grains": grains,
    }
    (output_dir / "segmentation_eval.json").write_text(json.dumps(out, indent=2, default=float) + "\n")
    limit_txt = (f"Detection limit: objects under {ecfg.min_area_px} px (8-connected) are dropped from "
                 f"every method's mask{' and from the labels' if ecfg.limit_labels else ''}.")
    md = [
        "# Segmentation on labelled validation scans",
        "",
        (
            f"Impurities: scans {', '.join(scans)} (objects matched one-to-one when they overlap "
            f"with IoU > {ecfg.match_iou:g}; object_f1_strict: IoU > {ecfg.strict_match_iou:g}; "
            f"object_f1_tol: overlap after growing predictions by {ecfg.match_tolerance_px} px). "
            f"{limit_txt} Grain boundaries: {out['n_grain_regions']} labelled regions of scans "
            f"{', '.join(gscans)} (boundary F1 at {ecfg.tolerance:g} px; Heyn mean on test lines "
            f"every {ecfg.line_spacing} px; [ci95_low, ci95_high]: bootstrap over regions, "
            f"{ecfg.bootstrap} resamples)."
        ),
        "",
        markdown_table(table),
        "",
        "Targets (U-Net on these scans; the prior art's published outputs beside it):",
        "",
        markdown_table(targets),
        "",
        "Per scan (raw labels; count error = objects / labelled objects - 1):",
        "",
        markdown_table(per_scan),
        "",
        "Object recall by labelled object area (8-connected objects of all scans):",
        "",
        markdown_table(by_size),
        "",
    ]
    if ecfg.error_maps and "unet" in ecfg.methods:
        md += [
            "Error maps of the U-Net: `error_maps/<scan>.png` (labelled objects green when "
            "matched, yellow when missed; predictions red when matched, magenta when false).",
            "",
        ]
    if registered is not None:
        md += [
            "Impurities against the labels registered to each scan (one affine map per scan, "
            "data.registration.register_labels; same matching and limit). Faint labels: labelled "
            f"objects whose contrast against their own surrounding ring is below {ecfg.faint_z:g} x "
            f"the scan's pixel noise, label and ring moved by up to {ecfg.faint_search_px} px "
            "(data.registration.ring_contrast):",
            "",
            markdown_table(registered),
            "",
        ]
    (output_dir / "segmentation_eval.md").write_text("\n".join(md))
    log.info("\n%s", "\n".join(md))
    return 0


# --------------------------------------------------------------------------- cached probability maps

@functools.lru_cache(maxsize=32)
def resolved_backend(kind: str, *, weights: str | None = None, backend: str = "auto",
                     precision: str = "auto") -> str:
    """What :func:`segmentation.models.predict_probabilities` runs for these options, e.g. ``'keras-fp32'``.

    Resolved once per process and options (the export's checksum is not hashed again for every scan).
    """
    from segmentation.backends import make_predict_fn
    from segmentation.models import load_model, weights_path

    model, card = load_model(kind, weights)
    return make_predict_fn(model, weights_path(kind, weights).resolve(), card, backend=backend,
                           precision=precision)[1]


def cached_probabilities(image: np.ndarray, kind: str, *, key: str, cache_dir: str | Path | None,
                         weights: str | None = None, **options) -> np.ndarray:
    """The shipped U-Net's probabilities of ``image``, cached as ``<cache_dir>/<kind>_<key>.npz``.

    The cache file also records the sha256 of the weights and the image's own
    checksum, so a changed model or image is predicted again.  ``cache_dir``
    None = no cache.  ``options`` go to :func:`segmentation.models.predict_probabilities`.
    """
    import hashlib
    import inspect

    from segmentation.models import model_card, predict_probabilities

    img = np.ascontiguousarray(image)
    # The backend that would run (e.g. 'openvino-bf16' for backend='auto' on a bf16 CPU) is part of
    # the stamp: a map cached by one backend is never read as another's.
    ran = resolved_backend(kind, weights=weights, backend=options.get("backend", "auto"),
                           precision=options.get("precision", "auto"))
    card = model_card(kind, weights)
    if ran.endswith("int8"):  # a re-quantised model is a different model
        ran += ":" + str(((card.get("export") or {}).get("openvino_int8") or {}).get("sha256_bin", ""))
    # the tiling defaults are in the stamp too: a map cached under another default tile is predicted again
    sig = inspect.signature(predict_probabilities).parameters
    tiling = {**{k: sig[k].default for k in ("tile", "overlap") if k in sig}, **options}
    stamp = f"{card.get('sha256', '')}:{hashlib.sha1(img.tobytes()).hexdigest()}:" \
            f"{sorted((k, v) for k, v in tiling.items() if k not in ('backend', 'precision', 'threads'))}:{ran}"
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{kind}_{key}.npz"
        if path.is_file():
            with np.load(path) as z:
                if str(z["stamp"]) == stamp:
                    return z["prob"].astype(np.float32)
    prob, _ = predict_probabilities(img, kind, weights=weights, **options)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, prob=prob.astype(np.float16), stamp=np.array(stamp))
        prob = prob.astype(np.float16).astype(np.float32)  # identical whether cached or not
    return prob


# --------------------------------------------------------------------------- cross-validation (out-of-training scans)

#: Impurity post-processing settings of the cross-validation (threshold x depth outline; sigma 1 px).
CV_IMPURITY_GRID = {
    "threshold": [0.1, 0.15, 0.2, 0.3, 0.4, 0.5],
    "depth_fraction": [None, 0.45, 0.5, 0.55, 0.6, 0.65],
}
#: Grain post-processing settings of the cross-validation.
CV_GRAIN_GRID = {
    "threshold": [0.15, 0.2, 0.25, 0.3],
    "spur_length_px": [0, 10, 20],
    "min_mean_prob": [0.0, 0.3],
}


def out_of_training_scans(kind: str, weights: str | None = None) -> list[str]:
    """Scans the ``kind`` model (the shipped one, or ``weights``) did not train on (its card's tuning and validation scans)."""
    from segmentation.models import model_card

    d = model_card(kind, weights)["data"]
    return sorted({str(s) for s in list(d["tune_scans"]) + list(d["val_scans"])} - {str(s) for s in d["train_scans"]},
                  key=int)


def impurity_cv_objective(rows: list[dict]) -> float:
    """The impurity selection merit on a set of scans: mean object F1 + mean IoU - mean |area-fraction error|.

    Fixed before any fold was scored; every term is one of the issue's measures.
    """
    return float(np.mean([r["f1"] for r in rows]) + np.mean([r["iou"] for r in rows])
                 - np.mean([abs(r["area_fraction_rel_error"]) for r in rows]))


def grain_cv_objective(rows: list[dict]) -> float:
    """The grain selection merit on a set of regions: mean boundary F1 - mean |Heyn error|."""
    f1 = np.array([r["f1"] for r in rows], float)
    h = np.abs(np.array([r["heyn_rel_error"] for r in rows], float))
    return float(np.nanmean(f1) - np.mean(np.where(np.isfinite(h), h, 1.0)))


def kfold_groups(items: list[str], k: int, *, seed: int = 0) -> list[list[str]]:
    """``items`` cut into ``k`` folds of near-equal size after a seeded shuffle (k >= len = leave-one-out)."""
    if k < 2:
        raise ValueError(f"k must be >= 2, got {k}")
    order = list(np.random.default_rng(seed).permutation(len(items)))
    k = min(k, len(items))
    return [sorted([items[i] for i in order[j::k]], key=int) for j in range(k)]


def _fold_stats(values) -> dict:
    v = np.asarray(values, float)
    return {"mean": float(np.nanmean(v)), "sd": float(np.nanstd(v, ddof=1)) if v.size > 1 else float("nan"),
            "min": float(np.nanmin(v)), "max": float(np.nanmax(v))}


def impurity_unit_merits(rows: list[dict]) -> np.ndarray:
    """Per-scan terms of :func:`impurity_cv_objective` (their mean is the objective)."""
    return np.array([r["f1"] + r["iou"] - abs(r["area_fraction_rel_error"]) for r in rows], float)


def grain_unit_merits(rows: list[dict]) -> np.ndarray:
    """Per-region boundary F1 - |Heyn error| (a missing Heyn value counts as error 1; NaN F1 stays NaN)."""
    f1 = np.array([r["f1"] for r in rows], float)
    h = np.abs(np.array([r["heyn_rel_error"] for r in rows], float))
    return f1 - np.where(np.isfinite(h), h, 1.0)


def select_setting(grid: list[dict], merit, unit_merits, *, rule: str, default: dict, distance, tiebreak) -> tuple[dict, dict]:
    """The setting a fold chooses from its training units, by ``rule``.

    ``merit(g)``: the selection merit of setting ``g`` on the training units;
    ``unit_merits(g)``: its per-unit terms (aligned across settings, for paired
    differences); ``tiebreak(g)``: tuple after the merit (higher wins).

    - ``'best'``: the highest merit (rounded to 1e-6), then ``tiebreak``.
    - ``'one_se'``: the one-standard-error rule.  Let *b* be the ``'best'``
      setting.  A setting ``g`` is within noise of *b* when
      ``merit(b) - merit(g) <= SE``, the standard error of the paired per-unit
      differences ``unit_merits(b) - unit_merits(g)`` (sd with ddof 1 over
      sqrt(n)).  Among those, the one with the smallest ``distance(g)`` to the
      shipped default is chosen (the default itself, when it is within noise),
      then the higher merit.  Fixed before any fold was scored.

    Returns the chosen setting and a record (best by merit, merits, SE, number within noise).
    """
    merits = [merit(g) for g in grid]
    best_i = max(range(len(grid)), key=lambda i: (round(merits[i], 6), *tiebreak(grid[i])))
    info = {"rule": rule, "best_by_merit": grid[best_i], "best_merit": merits[best_i]}
    if rule == "best":
        return grid[best_i], {**info, "chosen_merit": merits[best_i]}
    if rule != "one_se":
        raise ValueError(f"unknown selection rule {rule!r}; expected 'best' or 'one_se'")
    ub = np.asarray(unit_merits(grid[best_i]), float)
    within, ses = [], []
    for i, g in enumerate(grid):
        d = ub - np.asarray(unit_merits(g), float)
        d = d[np.isfinite(d)]
        se = float(np.std(d, ddof=1) / np.sqrt(d.size)) if d.size > 1 else 0.0
        ses.append(se)
        if merits[best_i] - merits[i] <= se + 1e-12:
            within.append(i)
    ci = min(within, key=lambda i: (distance(grid[i]), -merits[i]))
    return grid[ci], {**info, "chosen_merit": merits[ci], "se_vs_best": ses[ci], "n_within_one_se": len(within),
                      "within_one_se": [grid[i] for i in within], "default_within": default in [grid[i] for i in within]}


def _inference_options(options: dict | None) -> dict:
    """The weights / backend / precision keys of ``eval.unet_options`` or ``eval.grain_options`` (the rest is
    post-processing; ``weights`` names another model, with its card beside it)."""
    return {k: v for k, v in dict(options or {}).items() if k in ("weights", "backend", "precision")}


def cross_validate(cfg: EvalSegmentationConfig) -> dict:
    """k-fold cross-validation of the post-processing over the scans the models did not train on.

    The U-Net weights stay fixed (they trained on 19 / 20 of the 27 scans;
    retraining per fold is not affordable on 2 CPU cores), so the folds are
    made of the out-of-training scans only (:func:`out_of_training_scans`).
    In each fold the setting with the best merit on the other folds
    (:func:`impurity_cv_objective`, :func:`grain_cv_objective`) is chosen and
    scored on the held-out fold, beside the shipped default and the prior
    art's published outputs on the same scans.  Probability maps are cached
    (:func:`cached_probabilities`, ``cfg.cache_dir``).
    """
    from segmentation.grains import grain_postprocess
    from segmentation.models import model_card
    from segmentation.refine import impurity_postprocess

    root = dev_root(cfg.data_root)
    limit = int(cfg.min_area_px)
    out: dict = {"k": cfg.cv_folds, "seed": cfg.seed}
    # Inference options of the U-Nets (e.g. +eval.grain_options.backend=keras): the maps are cached per backend.
    imp_infer = _inference_options(cfg.unet_options)
    grain_infer = _inference_options(cfg.grain_options)
    out["backends"] = {"impurities": resolved_backend("impurities", **imp_infer),
                       "grains": resolved_backend("grains", **grain_infer)}
    log.info("cv: U-Net maps from %s", out["backends"])
    # ---- impurities
    scans = (list(cfg.scans) if cfg.scans is not None
             else out_of_training_scans("impurities", imp_infer.get("weights")))
    card = model_card("impurities", imp_infer.get("weights"))
    post = card.get("postprocess", {})
    default = {"threshold": float(card["threshold"]), "depth_fraction": post.get("depth_fraction")}
    grid = [{"threshold": t, "depth_fraction": d} for t in CV_IMPURITY_GRID["threshold"]
            for d in CV_IMPURITY_GRID["depth_fraction"]]
    if default not in grid:
        grid.append(default)

    def imp_distance(g: dict) -> tuple:  # closeness to the shipped default (threshold first, then the outline)
        d0, d = default["depth_fraction"], g["depth_fraction"]
        return (round(abs(g["threshold"] - default["threshold"]), 9),
                0.0 if d == d0 else (1.0 if d is None or d0 is None else round(abs(d - d0), 9)))

    per: dict[tuple, dict[str, dict]] = {}
    prior: dict[str, dict] = {}
    hist: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for s in scans:
        img = read_gray(root / "scans" / "images" / f"{s}.jpg")
        truth_all = read_gray(root / "scans" / "impurity_masks" / f"{s}.png") > 127
        truth = drop_small(truth_all, limit) if cfg.limit_labels else truth_all
        prob = cached_probabilities(img, "impurities", key=s, cache_dir=cfg.cache_dir, **imp_infer)
        hist[s] = probability_histogram(prob, truth, n_bins=cfg.calibration_bins)
        for g in grid:
            pred = impurity_postprocess(prob, img, g["threshold"], min_area_px=limit,
                                        depth_fraction=g["depth_fraction"],
                                        depth_smooth_sigma=float(post.get("depth_smooth_sigma", 1.0)))
            r = impurity_metrics(pred, truth)
            per.setdefault(tuple(g.items()), {})[s] = {k: r[k] for k in ("f1", "iou", "area_fraction_rel_error",
                                                                          "n_pred", "n_true", "n_matched")}
        ref = drop_small(read_gray(root / "reference_outputs" / "impurity_masks" / f"{s}.png") > 127, limit)
        r = impurity_metrics(ref, truth)
        prior[s] = {k: r[k] for k in ("f1", "iou", "area_fraction_rel_error")}
        log.info("cv impurities: scan %s scored on %d settings", s, len(grid))
    folds = kfold_groups(scans, cfg.cv_folds, seed=cfg.seed)
    imp_folds = []
    for held in folds:
        train = [s for s in scans if s not in held]
        best, sel = select_setting(
            grid, lambda g: impurity_cv_objective([per[tuple(g.items())][s] for s in train]),
            lambda g: impurity_unit_merits([per[tuple(g.items())][s] for s in train]),
            rule=cfg.cv_rule, default=default, distance=imp_distance, tiebreak=lambda g: (-g["threshold"],))
        row = {"held_out": held, "chosen": best, "selection": sel}
        for name, rows in (("cv", [per[tuple(best.items())][s] for s in held]),
                           ("default", [per[tuple(default.items())][s] for s in held]),
                           ("prior_art", [prior[s] for s in held])):
            row[name] = {"object_f1": float(np.mean([r["f1"] for r in rows])),
                         "iou": float(np.mean([r["iou"] for r in rows])),
                         "area_fraction_abs_rel_error": float(np.mean([abs(r["area_fraction_rel_error"])
                                                                       for r in rows]))}
        # area fraction from probabilities calibrated (isotonic) on the other folds' pixels
        cal = fit_isotonic([hist[s] for s in train])
        errs = []
        for s in held:
            n, pos = hist[s]
            errs.append(calibrated_area_fraction(n, cal) / (pos.sum() / n.sum()) - 1)
        row["calibrated"] = {"area_fraction_abs_rel_error": float(np.mean(np.abs(errs))),
                             "area_fraction_rel_error": [float(e) for e in errs]}
        imp_folds.append(row)
    overall, overall_sel = select_setting(
        grid, lambda g: impurity_cv_objective([per[tuple(g.items())][s] for s in scans]),
        lambda g: impurity_unit_merits([per[tuple(g.items())][s] for s in scans]),
        rule=cfg.cv_rule, default=default, distance=imp_distance, tiebreak=lambda g: (-g["threshold"],))
    out["impurities"] = {"scans": scans, "folds": imp_folds, "default": default,
                         "chosen_on_all": overall, "selection_on_all": overall_sel, "rule": cfg.cv_rule, "grid": grid,
                         "summary": {m: {k: _fold_stats([f[m][k] for f in imp_folds])
                                         for k in ("object_f1", "iou", "area_fraction_abs_rel_error")}
                                     for m in ("cv", "default", "prior_art")}}
    out["impurities"]["summary"]["calibrated"] = {
        "area_fraction_abs_rel_error": _fold_stats([f["calibrated"]["area_fraction_abs_rel_error"]
                                                    for f in imp_folds])}
    # ---- grains
    gscans = (list(cfg.grain_scans) if cfg.grain_scans is not None
              else out_of_training_scans("grains", grain_infer.get("weights")))
    regions = grain_regions(root, gscans)
    gscans = sorted({r.scan for r in regions}, key=int)
    gcard = model_card("grains", grain_infer.get("weights"))
    gdefault = {"threshold": float(gcard["threshold"]), "spur_length_px": 0, "min_mean_prob": 0.0}
    ggrid = [{"threshold": t, "spur_length_px": sp, "min_mean_prob": mp} for t in CV_GRAIN_GRID["threshold"]
             for sp in CV_GRAIN_GRID["spur_length_px"] for mp in CV_GRAIN_GRID["min_mean_prob"] if not mp or mp > t]
    if gdefault not in ggrid:
        ggrid.append(gdefault)

    def grain_distance(g: dict) -> tuple:  # closeness to the shipped default: threshold, then less pruning
        return (round(abs(g["threshold"] - gdefault["threshold"]), 9), g["spur_length_px"], g["min_mean_prob"])

    def grain_tiebreak(g: dict) -> tuple:
        return (-g["spur_length_px"], -g["min_mean_prob"])

    gper: dict[tuple, dict[str, list]] = {}
    gprior: dict[str, list] = {}
    for s in gscans:
        prob = cached_probabilities(read_gray(root / "reference_outputs" / "inpainted" / f"{s}.png"), "grains",
                                    key=f"inpainted_{s}", cache_dir=cfg.cache_dir, **grain_infer)
        regs = [r for r in regions if r.scan == s]
        for g in ggrid:
            pred = grain_postprocess(prob, g["threshold"], spur_length_px=g["spur_length_px"],
                                     min_mean_prob=g["min_mean_prob"],
                                     min_length_px=int(gcard.get("postprocess", {}).get("min_length_px", 0)))
            gper.setdefault(tuple(g.items()), {})[s] = [
                boundary_region_metrics(pred[r.slices], r.boundaries, tolerance=cfg.tolerance,
                                        line_spacing=cfg.line_spacing) for r in regs]
        ref = read_gray(root / "reference_outputs" / "grain_boundaries" / f"{s}.png") > 127
        gprior[s] = [boundary_region_metrics(ref[r.slices], r.boundaries, tolerance=cfg.tolerance,
                                             line_spacing=cfg.line_spacing) for r in regs]
        log.info("cv grains: scan %s (%d regions) scored on %d settings", s, len(regs), len(ggrid))

    def gsum(rows):
        return {"boundary_f1": float(np.nanmean([r["f1"] for r in rows])),
                "heyn_abs_rel_error": float(np.nanmean([abs(r["heyn_rel_error"]) for r in rows]))}

    gfolds = []
    for held in kfold_groups(gscans, cfg.cv_folds, seed=cfg.seed):
        train = [s for s in gscans if s not in held]
        best, sel = select_setting(
            ggrid, lambda g: grain_cv_objective([r for s in train for r in gper[tuple(g.items())][s]]),
            lambda g: grain_unit_merits([r for s in train for r in gper[tuple(g.items())][s]]),
            rule=cfg.cv_rule, default=gdefault, distance=grain_distance, tiebreak=grain_tiebreak)
        train_merit = [grain_cv_objective([r for s in train for r in gper[tuple(g.items())][s]]) for g in ggrid]
        gfolds.append({"held_out": held, "chosen": best, "selection": sel, "train_merit": train_merit,
                       "cv": gsum([r for s in held for r in gper[tuple(best.items())][s]]),
                       "default": gsum([r for s in held for r in gper[tuple(gdefault.items())][s]]),
                       "prior_art": gsum([r for s in held for r in gprior[s]])})
    goverall, goverall_sel = select_setting(
        ggrid, lambda g: grain_cv_objective([r for s in gscans for r in gper[tuple(g.items())][s]]),
        lambda g: grain_unit_merits([r for s in gscans for r in gper[tuple(g.items())][s]]),
        rule=cfg.cv_rule, default=gdefault, distance=grain_distance, tiebreak=grain_tiebreak)
    out["grains"] = {"scans": gscans, "n_regions": len(regions), "folds": gfolds, "default": gdefault,
                     "chosen_on_all": goverall, "selection_on_all": goverall_sel, "rule": cfg.cv_rule, "grid": ggrid,
                     "per_region": [{s: [{"f1": r["f1"], "heyn_rel_error": r["heyn_rel_error"]}
                                         for r in gper[tuple(g.items())][s]] for s in gscans} for g in ggrid],
                     "summary": {m: {k: _fold_stats([f[m][k] for f in gfolds])
                                     for k in ("boundary_f1", "heyn_abs_rel_error")}
                                 for m in ("cv", "default", "prior_art")}}
    return out


def probability_histogram(prob: np.ndarray, truth: np.ndarray, *, n_bins: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Pixels and labelled pixels per probability bin (``n_bins`` equal bins of [0, 1]).

    Enough to fit an isotonic calibration and to sum calibrated probabilities
    exactly (up to the binning) without keeping the pixels.
    """
    p = np.clip(np.asarray(prob, np.float64).ravel(), 0, 1)
    t = np.asarray(truth, bool).ravel()
    if p.size != t.size:
        raise ValueError(f"prob and truth differ in size: {p.size} vs {t.size}")
    b = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    return (np.bincount(b, minlength=n_bins).astype(np.float64),
            np.bincount(b, weights=t.astype(np.float64), minlength=n_bins))


def fit_isotonic(hists: list[tuple[np.ndarray, np.ndarray]]):
    """Isotonic map probability -> P(labelled) from :func:`probability_histogram` of several scans.

    Returns
    -------
    sklearn.isotonic.IsotonicRegression
        Fitted on the bin centres, weighted by their pixel counts.
    """
    from sklearn.isotonic import IsotonicRegression

    n = np.sum([h[0] for h in hists], axis=0)
    pos = np.sum([h[1] for h in hists], axis=0)
    centres = (np.arange(n.size) + 0.5) / n.size
    ok = n > 0
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(centres[ok], pos[ok] / n[ok], sample_weight=n[ok])
    return iso


def calibrated_area_fraction(n: np.ndarray, iso) -> float:
    """Expected labelled area fraction of a scan: its pixels per bin times the calibrated probability."""
    centres = (np.arange(n.size) + 0.5) / n.size
    return float(np.sum(n * iso.predict(centres)) / n.sum())


def cv_table(res: dict) -> pd.DataFrame:
    """One row per measure: fold mean ± sd and min (max for errors) of the CV choice, the default and the prior art."""
    rows = []
    for part, keys in (("impurities", ("object_f1", "iou", "area_fraction_abs_rel_error")),
                       ("grains", ("boundary_f1", "heyn_abs_rel_error"))):
        s = res[part]["summary"]
        for k in keys:
            worst = "max" if "error" in k else "min"
            row = {"measure": k, "folds": len(res[part]["folds"])}
            for m in ("cv", "default", "prior_art"):
                row[m] = f"{s[m][k]['mean']:.3f} ± {s[m][k]['sd']:.3f} ({worst} {s[m][k][worst]:.3f})"
            better = s["cv"][k]["mean"] <= s["prior_art"][k]["mean"] if "error" in k \
                else s["cv"][k]["mean"] >= s["prior_art"][k]["mean"]
            row["cv not worse than prior art"] = "yes" if better else "NO"
            rows.append(row)
    return pd.DataFrame(rows)
