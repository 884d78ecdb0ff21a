"""The shipped segmentation against exact truth: ``python -m experiments.run +exp=eval_truth``.

Scans rendered by :func:`data.synthetic_truth.make_truth_scan` (seeds
``eval.seed + i``, never used to choose anything) are segmented exactly as a
pipeline run does with the defaults: the impurity U-Net with its card's
post-processing and the detection limit ``min_area_px``; the impurities
inpainted (``inpainting`` method, default ``ns``), the grain U-Net, and
:func:`segmentation.grains.grain_measures` at the scan's nominal pixel size.

Reported per scan and pooled: the impurity area fraction (true = the
footprints before the optics) with its signed and absolute relative error,
object precision / recall / F1 per size class (true objects binned by their
area, predicted ones by theirs; one-to-one matching on any overlap,
:func:`segmentation.metrics.match_objects`), the detection limit (the smallest
size-class edge from which the recall of every class is at least
``limit_recall``) in px and µm, and the grain count and ASTM E112 G against
the same measures on the exact boundaries.

Outputs: ``truth_eval.json``, ``truth_eval.md`` in the run directory.
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
from scipy import ndimage

from experiments.config import dataclass_from
from .config import EvalTruthConfig

__all__ = ["EvalTruthConfig", "boundary_contrast", "by_size_table", "detection_limit", "evaluate_scan", "run", "size_counts"]

log = logging.getLogger(__name__)


def size_counts(pred: np.ndarray, truth: np.ndarray, edges) -> dict:
    """Objects and matched objects per size class (px): true ones by their area, predicted by theirs.

    Returns
    -------
    dict
        ``n_true, m_true, n_pred, m_pred``: int arrays, one entry per class
        ``edges[i] <= area < edges[i + 1]``.
    """
    from segmentation.metrics import match_objects

    e = np.asarray(edges, float)
    if e.ndim != 1 or e.size < 2 or np.any(np.diff(e) <= 0):
        raise ValueError(f"edges must be increasing with at least 2 entries, got {edges}")
    m = match_objects(pred, truth)
    out = {}
    for side, lab, matched in (("true", m["true_labels"], m["true_matched"]),
                               ("pred", m["pred_labels"], m["pred_matched"])):
        area = np.bincount(lab.ravel())[1:].astype(float)
        k = np.searchsorted(e, area, side="right") - 1
        ok = (k >= 0) & (k < e.size - 1)
        out[f"n_{side}"] = np.bincount(k[ok], minlength=e.size - 1)
        out[f"m_{side}"] = np.bincount(k[ok], weights=matched[ok].astype(float), minlength=e.size - 1).astype(int)
    return out


def by_size_table(counts: list[dict], edges) -> pd.DataFrame:
    """Pooled precision / recall / F1 per size class from :func:`size_counts` of several scans."""
    tot = {k: np.sum([c[k] for c in counts], axis=0) for k in ("n_true", "m_true", "n_pred", "m_pred")}
    e = list(edges)
    with np.errstate(invalid="ignore", divide="ignore"):
        rec = tot["m_true"] / tot["n_true"]
        prec = tot["m_pred"] / tot["n_pred"]
        f1 = 2 * prec * rec / (prec + rec)
    return pd.DataFrame({
        "area_px_low": e[:-1], "area_px_high": e[1:],
        "true_objects": tot["n_true"], "predicted_objects": tot["n_pred"],
        "recall": rec, "precision": prec, "f1": f1,
    })


def boundary_contrast(image: np.ndarray, boundaries: np.ndarray, *, exclude: np.ndarray | None = None,
                      max_shift: int = 2, near_px: float = 0.0, far_px: tuple[float, float] = (3.0, 5.0)) -> dict:
    """How dark the grain boundaries of a scan are against the grains beside them.

    The boundary mask is thinned to a 1-px skeleton.  ``depth`` is the median
    gray of the band ``far_px`` (distance in px) from the skeleton minus the
    median gray within ``near_px`` of it; ``noise`` is the scan's pixel noise
    (1.4826 MAD of the image minus its 5x5 median, over the same pixels) and
    ``depth_z = depth / noise``.  Hand-drawn labels can sit a pixel or two off
    the groove, so the skeleton is moved by every shift up to ``max_shift`` px
    and the darkest placement is kept (``shift``) - the same search for exact
    and for drawn boundaries, so the two are comparable.

    Parameters
    ----------
    image : ndarray (M, N)
        Gray scan.
    boundaries : ndarray of bool (M, N)
        Boundary pixels (any width).
    exclude : ndarray of bool (M, N), optional
        Pixels left out of both bands (e.g. impurities).
    max_shift : int
    near_px, far_px
        The two bands, in px from the skeleton.

    Returns
    -------
    dict
        ``depth``, ``noise``, ``depth_z``, ``shift`` (row, col) and ``n_boundary_px``.
    """
    from skimage.morphology import skeletonize

    img = np.asarray(image, np.float32)
    b = np.asarray(boundaries, bool)
    if img.shape != b.shape or img.ndim != 2:
        raise ValueError(f"image and boundaries must be 2-D of one shape, got {img.shape} and {b.shape}")
    if not b.any():
        raise ValueError("no boundary pixel")
    skel = skeletonize(b)
    keep = np.ones(img.shape, bool) if exclude is None else ~np.asarray(exclude, bool)
    res = cv2.medianBlur(np.clip(np.rint(img), 0, 255).astype(np.uint8), 5).astype(np.float32)
    r = (img - res)[keep]
    noise = float(1.4826 * np.median(np.abs(r - np.median(r))))
    best = None
    for dr in range(-max_shift, max_shift + 1):
        for dc in range(-max_shift, max_shift + 1):
            sk = np.zeros_like(skel)
            src = skel[max(-dr, 0): skel.shape[0] - max(dr, 0), max(-dc, 0): skel.shape[1] - max(dc, 0)]
            sk[max(dr, 0): max(dr, 0) + src.shape[0], max(dc, 0): max(dc, 0) + src.shape[1]] = src
            if not sk.any():
                continue
            dist = ndimage.distance_transform_edt(~sk)
            near, far = (dist <= near_px) & keep, (dist >= far_px[0]) & (dist <= far_px[1]) & keep
            if not near.any() or not far.any():
                continue
            depth = float(np.median(img[far]) - np.median(img[near]))
            if best is None or depth > best["depth"]:
                best = {"depth": depth, "shift": (dr, dc), "n_boundary_px": int(sk.sum())}
    if best is None:
        raise ValueError("the boundary bands are empty")
    return {**best, "noise": noise, "depth_z": best["depth"] / noise if noise > 0 else float("nan")}


def detection_limit(table: pd.DataFrame, *, min_recall: float = 0.9, min_objects: int = 10) -> float:
    """Smallest class edge (px) from which every class has recall >= ``min_recall``.

    Classes with fewer than ``min_objects`` true objects do not decide (their
    recall is too uncertain).  NaN when even the largest class misses it.
    """
    ok = (table["recall"] >= min_recall) | (table["true_objects"] < int(min_objects))
    limit = float("nan")
    for i in range(len(table) - 1, -1, -1):
        if not ok.iloc[i]:
            break
        limit = float(table["area_px_low"].iloc[i])
    return limit


def _f1_above(counts: list[dict], edges, limit: float) -> float:
    """Object F1 pooled over the classes at or above ``limit`` (px)."""
    if not np.isfinite(limit):
        return float("nan")
    sel = np.asarray(list(edges)[:-1], float) >= limit
    mt = sum(int(c["m_true"][sel].sum()) for c in counts)
    nt = sum(int(c["n_true"][sel].sum()) for c in counts)
    mp = sum(int(c["m_pred"][sel].sum()) for c in counts)
    n_p = sum(int(c["n_pred"][sel].sum()) for c in counts)
    if not nt or not n_p:
        return float("nan")
    r, p = mt / nt, mp / n_p
    return 2 * p * r / (p + r) if p + r else 0.0


def evaluate_scan(synth, cfg: EvalTruthConfig, *, inpainting: dict | None = None) -> dict:
    """Segment one :class:`data.synthetic_truth.TruthScan` with the shipped defaults and score it."""
    from segmentation.grains import grain_measures
    from segmentation.models import predict_impurity_mask

    t0 = time.perf_counter()
    pred = predict_impurity_mask(synth.pixels, min_area_px=int(cfg.min_area_px))
    seconds = time.perf_counter() - t0
    truth = synth.impurity_mask
    af_true, af_pred = float(truth.mean()), float(pred.mean())
    row = {
        "seed": synth.seed, "area_fraction_true": af_true, "area_fraction_pred": af_pred,
        "area_fraction_rel_error": af_pred / af_true - 1 if af_true > 0 else float("nan"),
        "n_true": synth.n_impurities, "seconds_impurities": seconds,
        "counts": size_counts(pred, truth, cfg.size_bins),
    }
    from scipy import ndimage

    row["n_pred"] = int(ndimage.label(pred, np.ones((3, 3), bool))[1])
    if cfg.grains:
        from segmentation.models import predict_grain_boundaries

        pixels = synth.pixels
        opts = dict(inpainting or {"method": "ns", "dilation_px": 2})
        if opts.get("method", "none") != "none":
            from inpainting import inpaint

            pixels = inpaint(pixels, pred, **opts)
        t0 = time.perf_counter()
        boundaries = predict_grain_boundaries(pixels, weights=cfg.grain_weights)
        gm = grain_measures(boundaries, pixel_size_um=synth.pixel_size_um, line_spacing=cfg.line_spacing)
        gt = grain_measures(synth.grain_boundaries, pixel_size_um=synth.pixel_size_um,
                            line_spacing=cfg.line_spacing)
        row.update(
            seconds_grains=time.perf_counter() - t0,
            grain_count_true=synth.n_grains, grain_count_pred=int(gm["grain_count"]),
            G_true=float(gt["grain_size_G"]), G_pred=float(gm["grain_size_G"]),
            G_error=float(gm["grain_size_G"] - gt["grain_size_G"]),
            G_planimetric_true=float(gt["grain_size_G_planimetric"]),
            G_planimetric_pred=float(gm["grain_size_G_planimetric"]),
            heyn_true_px=float(gt["heyn_mean_px"]), heyn_pred_px=float(gm["heyn_mean_px"]),
        )
    return row


def rendered_training_seeds(card: dict) -> range:
    """Seeds of the rendered scans a grain model's card says it trained on (empty: none)."""
    c = dict(card.get("config") or {})
    n = int(c.get("rendered_scans") or 0)
    start = int(c.get("rendered_seed") or 0)
    return range(start, start + n)


def check_unseen_seeds(ecfg: EvalTruthConfig, card: dict) -> None:
    """Refuse to evaluate the grain model of ``card`` on rendered seeds it trained on (ValueError)."""
    seen = rendered_training_seeds(card)
    evaluated = range(ecfg.seed, ecfg.seed + ecfg.n_scans)
    overlap = sorted(set(seen) & set(evaluated))
    if overlap:
        raise ValueError(f"the grain model trained on rendered seeds {seen.start}-{seen.stop - 1}, which include "
                         f"evaluation seeds {overlap[0]}-{overlap[-1]}; evaluate on other seeds (eval.seed)")


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``eval_truth``."""
    from data.synthetic_truth import TruthConfig, make_truth_scan, shape_bank
    from experiments._markdown import markdown_table

    ecfg = dataclass_from(EvalTruthConfig, cfg.get("eval"), where="eval")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tcfg = TruthConfig(**dict(ecfg.truth))
    bank = None
    if ecfg.shape_masks:
        folder = Path(ecfg.shape_masks)
        bank = shape_bank(sorted(folder.glob("*.png")))
    inpainting = dict(cfg.get("inpainting") or {}) or None
    grain_card = None
    if ecfg.grains:
        from segmentation.models import model_card

        grain_card = model_card("grains", ecfg.grain_weights)
        check_unseen_seeds(ecfg, grain_card)
    rows = []
    for i in range(ecfg.n_scans):
        synth = make_truth_scan(tcfg, seed=ecfg.seed + i, bank=bank)
        r = evaluate_scan(synth, ecfg, inpainting=inpainting)
        rows.append(r)
        log.info("truth seed %d: area %.3f%% vs %.3f%% (%+.1f%%), objects %d / %d%s", r["seed"],
                 100 * r["area_fraction_pred"], 100 * r["area_fraction_true"],
                 100 * r["area_fraction_rel_error"], r["n_pred"], r["n_true"],
                 f", G {r['G_pred']:.2f} vs {r['G_true']:.2f}" if ecfg.grains else "")
    counts = [r.pop("counts") for r in rows]
    table = by_size_table(counts, ecfg.size_bins)
    limit = detection_limit(table, min_recall=ecfg.limit_recall)
    p = tcfg.pixel_size_um
    af_err = np.array([r["area_fraction_rel_error"] for r in rows])
    summary = {
        "n_scans": len(rows), "seeds": [r["seed"] for r in rows],
        "area_fraction_bias": float(np.mean(af_err)),
        "area_fraction_abs_rel_error": float(np.mean(np.abs(af_err))),
        "area_fraction_abs_rel_error_max": float(np.max(np.abs(af_err))),
        "count_rel_error": float(np.mean([r["n_pred"] / r["n_true"] - 1 for r in rows])),
        "detection_limit_px": limit,
        "detection_limit_um2": limit * p * p if np.isfinite(limit) else float("nan"),
        "detection_limit_eq_diameter_um": 2 * np.sqrt(limit / np.pi) * p if np.isfinite(limit) else float("nan"),
        "object_f1_above_limit": _f1_above(counts, ecfg.size_bins, limit),
        "object_f1_all": _f1_above(counts, ecfg.size_bins, float(ecfg.size_bins[0])),
        "pixel_size_um": p,
    }
    if ecfg.grains:
        g_err = np.array([r["G_error"] for r in rows])
        summary.update(
            G_abs_error_mean=float(np.nanmean(np.abs(g_err))),
            G_error_mean=float(np.nanmean(g_err)),
            G_within_025=float(np.mean(np.abs(g_err) <= 0.25)),
            grain_count_rel_error=float(np.mean([r["grain_count_pred"] / r["grain_count_true"] - 1 for r in rows])),
            grain_weights=ecfg.grain_weights or "shipped",
            grain_weights_sha256=str(grain_card.get("sha256", "")),
        )
    t = ecfg.targets
    targets = [
        {"measure": "mean |area-fraction error|", "value": summary["area_fraction_abs_rel_error"],
         "target": f"<= {t['area_fraction_abs_rel_error']:g}",
         "met": summary["area_fraction_abs_rel_error"] <= t["area_fraction_abs_rel_error"]},
        {"measure": f"object F1 at >= {limit:g} px", "value": summary["object_f1_above_limit"],
         "target": f">= {t['object_f1']:g}", "met": bool(summary["object_f1_above_limit"] >= t["object_f1"])},
    ]
    if ecfg.grains:
        targets.append({"measure": "share of scans with |G error| <= 0.25", "value": summary["G_within_025"],
                        "target": f">= {t['G_within_025']:g}", "met": summary["G_within_025"] >= t["G_within_025"]})
    out = {"config": asdict(ecfg), "truth": asdict(tcfg), "summary": summary, "targets": targets,
           "by_size": table.to_dict(orient="records"), "per_scan": rows}
    (output_dir / "truth_eval.json").write_text(json.dumps(out, indent=2, default=float) + "\n")
    md = ["# Segmentation against exact truth (data.synthetic_truth)", "",
          f"{len(rows)} rendered scans, seeds {ecfg.seed}-{ecfg.seed + len(rows) - 1}, "
          f"{tcfg.shape[0]}x{tcfg.shape[1]} px at a nominal {p:g} µm/px; shipped U-Net defaults"
          + (f" (grain U-Net: {ecfg.grain_weights})" if ecfg.grains and ecfg.grain_weights else "")
          + f", detection limit {ecfg.min_area_px} px in the pipeline.", "",
          markdown_table(pd.DataFrame([summary]).drop(columns=["seeds"])), "",
          "Targets:", "", markdown_table(pd.DataFrame(targets)), "",
          "Objects by size class (true objects by their area, predicted by theirs):", "",
          markdown_table(table), "", "Per scan:", "", markdown_table(pd.DataFrame(rows)), ""]
    (output_dir / "truth_eval.md").write_text("\n".join(md))
    log.info("\n%s", "\n".join(md))
    return 0
