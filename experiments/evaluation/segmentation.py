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
noise (:func:`data.registration.ring_contrast`).

Outputs in ``output_dir``: ``segmentation_eval.json`` (per scan / region and
summaries), ``segmentation_eval.md`` (the tables), ``error_maps/<scan>.png``.
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
    "bootstrap_interval",
    "drop_small",
    "error_map",
    "evaluate_grains",
    "evaluate_impurities",
    "per_scan_table",
    "run",
    "targets_table",
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
        registered = visible = None
        if cfg.registered_labels:
            from data.registration import register_labels, ring_contrast

            registered = register_labels(img, truth_all)
            reg_mask = drop_small(registered.mask, limit) if cfg.limit_labels else registered.mask
            _, z, noise = ring_contrast(img, reg_mask)
            visible = ~(z < cfg.faint_z)  # per object; no ring (NaN) counts as visible
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
            row["n_true_below_limit"] = int(
                _count_objects(truth_all) - _count_objects(drop_small(truth_all, limit)))
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
            "the scan's pixel noise (data.registration.ring_contrast):",
            "",
            markdown_table(registered),
            "",
        ]
    (output_dir / "segmentation_eval.md").write_text("\n".join(md))
    log.info("\n%s", "\n".join(md))
    return 0
