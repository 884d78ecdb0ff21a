"""Evaluate segmentation on labelled validation scans: ``python -m experiments.run +exp=eval_segmentation``.

Impurities (on whole scans, against ``scans/impurity_masks``): pixel IoU and
Dice, matched-object precision / recall / F1 (one-to-one matching of
8-connected objects that overlap, IoU > ``match_iou``, maximum cardinality; also
with the stricter ``strict_match_iou``), and
the relative error of the impurity area fraction.  Grain boundaries (on the
labelled 256 x 256 regions of the grain patches, placed on the inpainted
scans): boundary F1 at ``tolerance`` px (both sides thinned) and the relative
error of the per-region Heyn line-intercept mean.

Methods side by side on the same scans: the shipped U-Nets
(:mod:`segmentation.models`), the classical path
(:func:`segmentation.segment_impurities`, impurities only) and the prior
art's published outputs (``reference_outputs/``).

Outputs in ``output_dir``: ``segmentation_eval.json`` (per scan / region and
summaries), ``segmentation_eval.md`` (the table).
"""

from __future__ import annotations

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
from experiments.datasets.mlography import GrainRegion, dev_root, grain_regions, read_gray
from segmentation.metrics import boundary_region_metrics, impurity_metrics
from .config import EvalSegmentationConfig

__all__ = [
    "EvalSegmentationConfig",
    "evaluate_grains",
    "error_map",
    "evaluate_impurities",
    "run",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- task




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
    return {
        **scores,
        "object_f1_strict": 2 * sum(r["n_matched_strict"] for r in rows) / n_pt
        if n_pt else float("nan"),
        "object_f1_tol": 2 * sum(r["n_matched_tolerant"] for r in rows) / n_pt
        if n_pt else float("nan"),
        "area_fraction_abs_rel_error": area_error,
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


def _grain_summary(rows: list[dict]) -> dict:
    return {
        "boundary_precision": _mean(rows, "precision"),
        "boundary_recall": _mean(rows, "recall"),
        "boundary_f1": _mean(rows, "f1"),
        "heyn_abs_rel_error": float(np.nanmean([abs(r["heyn_rel_error"]) for r in rows])),
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


def evaluate_impurities(
    cfg: EvalSegmentationConfig, scans: list[str], output_dir: Path | None = None
) -> dict[str, list[dict]]:
    """Per-scan impurity metrics for each configured method."""
    root = dev_root(cfg.data_root)
    results: dict[str, list[dict]] = {m: [] for m in cfg.methods}
    seg = None
    if "classical" in cfg.methods:
        from segmentation import make_segmenter

        seg = make_segmenter("classical", dict(cfg.classical or {}))
    for s in scans:
        img = read_gray(root / "scans" / "images" / f"{s}.jpg")
        truth = read_gray(root / "scans" / "impurity_masks" / f"{s}.png") > 127
        registered = visible = None
        if cfg.registered_labels:
            from data.registration import label_contrast, register_labels

            registered = register_labels(img, truth)
            contrast, matrix_level = label_contrast(img, registered.mask)
            visible = contrast > matrix_level  # per object, at its own size
            log.info("scan %s: labels registered, largest shift %.1f px, darkness under labels "
                     "%.1f -> %.1f", s, registered.max_shift_px, registered.darkness_before,
                     registered.darkness_after)
        for m in cfg.methods:
            t0 = time.perf_counter()
            if m == "unet":
                from segmentation.models import predict_impurity_mask

                pred = predict_impurity_mask(img, **dict(cfg.unet_options))
            elif m == "classical":
                pred = seg(img) > 0
            else:
                pred = read_gray(root / "reference_outputs" / "impurity_masks" / f"{s}.png") > 127
            dt = time.perf_counter() - t0
            if pred.shape != truth.shape:
                raise ValueError(f"{m} mask of scan {s} has shape {pred.shape}, labels {truth.shape}")
            row = impurity_metrics(pred, truth, match_iou=cfg.match_iou, size_bins=cfg.size_bins)
            strict = impurity_metrics(pred, truth, match_iou=cfg.strict_match_iou)
            row["n_matched_strict"] = strict["n_matched"]
            tol = impurity_metrics(pred, truth, tolerance_px=cfg.match_tolerance_px)
            row["n_matched_tolerant"] = tol["n_matched"]
            row.update(scan=s, seconds=dt if m != "reference" else float("nan"))
            if m == "unet" and cfg.error_maps and output_dir is not None:
                folder = Path(output_dir) / "error_maps"
                folder.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(folder / f"{s}.png"), error_map(img, pred, truth, zoom=cfg.error_map_zoom))
            if registered is not None:
                reg = impurity_metrics(pred, registered.mask, match_iou=cfg.match_iou,
                                       true_subset=visible)
                row["registered"] = {
                    **{k: reg[k] for k in ("iou", "dice", "n_pred", "n_true", "n_matched",
                                           "area_fraction_rel_error")},
                    # labelled objects darker than the matrix texture (data.registration.label_contrast)
                    "n_true_visible": reg["n_true_subset"],
                    "n_matched_visible": reg["n_matched_subset"],
                    "n_matched_faint": reg["n_matched"] - reg["n_matched_subset"],
                    "max_shift_px": registered.max_shift_px,
                    "shift_matrix": registered.matrix.tolist(),
                }
            results[m].append(row)
            log.info("impurities scan %s %-9s F1 %.3f IoU %.3f (%.2f s)", s, m, row["f1"], row["iou"], dt)
    return results


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

                pred = predict_grain_boundaries(inpainted)
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


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``eval_segmentation``."""
    from experiments._markdown import markdown_table

    ecfg = dataclass_from(EvalSegmentationConfig, cfg.get("eval"), where="eval")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    scans = list(ecfg.scans) if ecfg.scans is not None else _card_val_scans("impurities")
    gscans = list(ecfg.grain_scans) if ecfg.grain_scans is not None else _card_val_scans("grains")
    log.info("impurity scans %s; grain-boundary scans %s", scans, gscans)
    imp = evaluate_impurities(ecfg, scans, output_dir)
    grains = evaluate_grains(ecfg, gscans)
    rows = []
    for m in ecfg.methods:
        row = {"method": m, **_impurity_summary(imp[m])}
        if grains.get(m):
            row.update(_grain_summary(grains[m]))
        rows.append(row)
    table = pd.DataFrame(rows)
    by_size = recall_by_size(imp, ecfg.size_bins)
    names = {"unet": "U-Net (quantmet)", "classical": "classical (quantmet)", "reference": "MLography published"}
    table["method"] = table["method"].map(names)
    registered = None
    if ecfg.registered_labels:
        registered = pd.DataFrame(
            [{"method": names[m], **_object_scores([r["registered"] for r in imp[m]]),
              **_visibility_scores([r["registered"] for r in imp[m]])} for m in ecfg.methods]
        )
    gscans = sorted({r["scan"] for rows_ in grains.values() for r in rows_}, key=int) or gscans
    out = {
        "config": asdict(ecfg),
        "impurity_scans": scans,
        "grain_scans": gscans,
        "n_grain_regions": len(next(iter(grains.values()), [])),
        "summary": table.to_dict(orient="records"),
        "recall_by_size": by_size.to_dict(orient="records"),
        "summary_registered_labels": None if registered is None
        else registered.to_dict(orient="records"),
        "impurities": imp,
        "grains": grains,
        "targets": {"object_f1": 0.8, "iou": 0.5, "boundary_f1": 0.7, "heyn_abs_rel_error": 0.05},
    }
    (output_dir / "segmentation_eval.json").write_text(json.dumps(out, indent=2, default=float) + "\n")
    md = [
        "# Segmentation on labelled validation scans",
        "",
        (
            f"Impurities: scans {', '.join(scans)} (objects matched one-to-one when they overlap "
            f"with IoU > {ecfg.match_iou:g}; object_f1_strict: IoU > {ecfg.strict_match_iou:g}; "
            f"object_f1_tol: overlap after growing predictions by {ecfg.match_tolerance_px} px). "
            f"Grain boundaries: {out['n_grain_regions']} labelled regions of scans "
            f"{', '.join(gscans)} (boundary F1 at {ecfg.tolerance:g} px; Heyn mean on test lines "
            f"every {ecfg.line_spacing} px)."
        ),
        "",
        markdown_table(table),
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
            "data.registration.register_labels; same matching). Faint labels: labelled objects "
            "no darker on average than the 99th percentile of square windows of their own area "
            "in impurity-free matrix (data.registration.label_contrast):",
            "",
            markdown_table(registered),
            "",
        ]
    (output_dir / "segmentation_eval.md").write_text("\n".join(md))
    log.info("\n%s", "\n".join(md))
    return 0
