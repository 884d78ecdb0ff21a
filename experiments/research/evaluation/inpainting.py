"""Evaluation ``eval_inpainting``: which inpainting method to use before grain segmentation?

``python -m experiments.run +exp=eval_inpainting``

On the validation scans only (split by scan, see ``conf/exp/eval_inpainting.yaml``
and the model card of the generative network):

1. Inside synthetic holes.  Holes shaped like the scan's own impurities
   (single impurities and whole clusters, randomly rotated/flipped) are placed
   in impurity-free areas (clear of the dilated real impurities), where the
   true pixels are known.  Each method inpaints the union of the synthetic
   holes and the real impurities (as in the pipeline), dilated by the method's
   ``dilation_px``; PSNR, SSIM and L1 are measured over the replaced pixels of
   the synthetic holes, pooled over all scans, for all holes, single-impurity
   holes and cluster holes.
2. Downstream.  Each method inpaints the real (dilated) impurities of the scan;
   the grain-boundary U-Net (``segmentation.models.predict_grain_boundaries``)
   segments the result; on the manually labelled 256x256 regions
   (``grain_patches``) we measure the boundary F1 (thinned boundaries, pixel
   tolerance), the F1 within ``near_px`` of an impurity (where inpainting acts),
   and the Heyn mean lineal intercept error (``segmentation.grains.grain_measures``)
   against the labels.  Rows: the raw scan (``none``), each method, and the prior
   art's inpainted scans (``reference_outputs/inpainted``), segmented by the same
   network.  When the U-Net or the grain measures are not installed, this part is
   skipped and the output says so.
3. Downstream on the synthetic holes (all validation scans, no labels needed):
   does each method give back the boundaries the U-Net finds on the intact scan
   around the holes, and the intact scan's Heyn mean?  ``none`` paints the holes
   the gray of real impurities (see :class:`_Restoration`).
4. Time per full scan of each method (real dilated impurity mask).

Outputs: ``holes.csv`` (per scan, method, hole kind), ``downstream.csv`` (per
region, variant), ``restoration.csv`` (per scan, variant), ``timing.csv``,
``metrics.json`` and ``summary.md`` (the tables).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from data import read_image
from data.errors import InputNotFoundError
from inpainting import dilate_mask, inpaint, inpaint_config
from inpainting.holes import cluster_shapes, impurity_shapes, place_shapes

from experiments._markdown import markdown_table
from ..datasets.mlography import dev_root, read_pair, scan_names
from ..datasets.mlography import grain_regions as labelled_regions
from experiments.config import dataclass_from
from .config import EvalInpaintingConfig

__all__ = [
    "EvalInpaintingConfig",
    "boundary_f1_counts",
    "grain_regions",
    "hole_metrics",
    "run",
]

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"




def grain_regions(root: Path, name: str) -> list[tuple[int, int, np.ndarray]]:
    """The labelled grain-boundary regions of one scan as ``(row, col, boundaries)``."""
    return [(r.row, r.col, r.boundaries) for r in labelled_regions(root, [name])]


# --------------------------------------------------------------------------- metrics


def hole_metrics(
    truth: np.ndarray, result: np.ndarray, region: np.ndarray, ssim_map: np.ndarray
) -> dict:
    """Sums for L1, MSE and SSIM over ``region`` (pooled later): n, abs_sum, sq_sum, ssim_sum."""
    d = result[region].astype(np.float64) - truth[region].astype(np.float64)
    return {
        "n": int(region.sum()),
        "abs_sum": float(np.abs(d).sum()),
        "sq_sum": float((d * d).sum()),
        "ssim_sum": float(ssim_map[region].sum()),
    }


def _pooled(df: pd.DataFrame, data_range: float = 255.0) -> dict:
    n = df["n"].sum()
    mse = df["sq_sum"].sum() / n
    return {
        "n_px": int(n),
        "psnr_db": float(10 * np.log10(data_range**2 / mse)) if mse > 0 else float("inf"),
        "ssim": float(df["ssim_sum"].sum() / n),
        "l1": float(df["abs_sum"].sum() / n),
    }


def boundary_f1_counts(
    pred: np.ndarray, truth: np.ndarray, *, tolerance_px: int, zone: np.ndarray | None = None
) -> dict:
    """Counts for a boundary F1 with a pixel tolerance, on thinned boundaries.

    A predicted skeleton pixel is a hit when a true skeleton pixel lies within
    ``tolerance_px`` (Euclidean), and vice versa for recall.  With ``zone`` only
    skeleton pixels inside it count.  Returns ``n_pred, hit_pred, n_true, hit_true``.
    """
    from scipy import ndimage
    from skimage.morphology import skeletonize

    ps, ts = skeletonize(pred), skeletonize(truth)
    d_to_t = ndimage.distance_transform_edt(~ts) if ts.any() else np.full(ts.shape, np.inf)
    d_to_p = ndimage.distance_transform_edt(~ps) if ps.any() else np.full(ps.shape, np.inf)
    if zone is not None:
        ps, ts = ps & zone, ts & zone
    return {
        "n_pred": int(ps.sum()),
        "hit_pred": int((d_to_t[ps] <= tolerance_px).sum()),
        "n_true": int(ts.sum()),
        "hit_true": int((d_to_p[ts] <= tolerance_px).sum()),
    }


def _f1(df: pd.DataFrame, prefix: str = "") -> float:
    p = df[f"{prefix}hit_pred"].sum() / max(df[f"{prefix}n_pred"].sum(), 1)
    r = df[f"{prefix}hit_true"].sum() / max(df[f"{prefix}n_true"].sum(), 1)
    return float(2 * p * r / (p + r)) if p + r > 0 else 0.0


# --------------------------------------------------------------------------- steps


def _method_options(name: str, ecfg: EvalInpaintingConfig) -> dict:
    """The options of ``conf/inpainting/<name>.yaml`` (plus ``method_options[name]`` overrides)."""
    path = CONF_DIR / "inpainting" / f"{name}.yaml"
    if not path.exists():
        raise InputNotFoundError(f"no inpainting config {path}")
    opts = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    opts.update(dict(ecfg.method_options.get(name, {}) or {}))
    inpaint_config(opts)  # validate early
    return opts


def _available(name: str, opts: dict) -> str | None:
    """None when the method can run here, else why not."""
    if name != "generative":
        return None
    from inpainting import resolve_weights

    path = resolve_weights(opts.get("weights"))
    if path.exists():
        return None
    return f"weights {path} not found (run +exp=train_inpainting train.install=true)"


def _synthetic_holes(
    real: np.ndarray, rng: np.random.Generator, ecfg: EvalInpaintingConfig, max_dilation: int
):
    """Single and cluster holes shaped like the scan's impurities, placed clear of them."""
    clear = max_dilation + ecfg.gap_px
    forbidden = dilate_mask(real, clear)
    n_cluster = int(round(ecfg.cluster_fraction * ecfg.holes_per_scan))
    clusters = cluster_shapes(real, window_px=40, min_objects=3)
    singles = impurity_shapes(real, min_area_px=3, max_side_px=64)
    cl, n_cl = place_shapes(
        real.shape, clusters, rng, n=n_cluster, forbidden=forbidden, gap_px=clear
    )
    forbidden |= dilate_mask(cl, clear)
    si, n_si = place_shapes(
        real.shape, singles, rng, n=ecfg.holes_per_scan - n_cl, forbidden=forbidden, gap_px=clear
    )
    return si, cl, n_si, n_cl


class _Restoration:
    """Does inpainting give back the boundaries the segmenter finds on the intact scan?

    The synthetic holes sit in impurity-free areas, so the U-Net's boundaries on the
    untouched scan are the reference.  For each variant (holes filled with an
    impurity-like dark value = ``none``, or inpainted), the boundaries are compared
    with that reference inside ``zone``: within ``near_px`` of the (dilated) synthetic
    holes and away from the real impurities (which the variants treat differently).
    Grain size: the Heyn mean of the reference with its zone replaced by the
    variant's boundaries, relative to the reference's.  No labels needed: every
    validation scan counts, and the segmenter's own errors cancel.
    """

    def __init__(self, grain_api, pixels, real, synthetic, max_dilation, ecfg):
        self.predict, self.measures = grain_api
        self.pixels, self.real, self.synthetic, self.tol = pixels, real, synthetic, ecfg.tolerance_px
        self.truth = np.asarray(self.predict(pixels)).astype(bool)
        self.heyn_truth = float(self.measures(self.truth)["heyn_mean_px"])
        near = dilate_mask(dilate_mask(synthetic, max_dilation), ecfg.near_px)
        self.zone = near & ~dilate_mask(real, max_dilation + ecfg.near_px)

    def impurity_like(self) -> np.ndarray:
        """The scan with the synthetic holes painted the median gray of its real impurities."""
        img = self.pixels.copy()
        img[self.synthetic] = np.median(self.pixels[self.real]) if self.real.any() else 0
        return img

    def row(self, variant: str, image: np.ndarray) -> dict:
        b = np.asarray(self.predict(image)).astype(bool)
        counts = boundary_f1_counts(b, self.truth, tolerance_px=self.tol, zone=self.zone)
        heyn = float(self.measures(np.where(self.zone, b, self.truth))["heyn_mean_px"])
        return {"variant": variant, **counts, "heyn_px": heyn, "heyn_truth_px": self.heyn_truth,
                "zone_px": int(self.zone.sum())}


def _grain_api(weights: str | None = None):
    """(predict_grain_boundaries, grain_measures) or (None, why-not)."""
    import functools

    try:
        from segmentation.grains import grain_measures
        from segmentation.models import predict_grain_boundaries
    except ImportError as exc:
        return None, f"grain-boundary U-Net / grain measures not available ({exc})"
    if weights is not None:
        predict_grain_boundaries = functools.partial(predict_grain_boundaries, weights=weights)
    try:  # loads the model once; missing or corrupt weights show up here
        probe = np.random.default_rng(0).integers(60, 200, (64, 64)).astype(np.uint8)
        predict_grain_boundaries(probe)
    except Exception as exc:  # the segmentation package raises its own error types
        return None, f"grain-boundary U-Net not usable ({type(exc).__name__}: {exc})"
    return (predict_grain_boundaries, grain_measures), None


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``eval_inpainting``."""
    ecfg = dataclass_from(EvalInpaintingConfig, cfg.get("eval"), where="eval")
    from skimage.metrics import structural_similarity

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    root = dev_root(ecfg.data_root)
    names = scan_names(root)
    val = [s for s in ecfg.val_scans if s in names]
    missing = sorted(set(ecfg.val_scans) - set(val))
    if missing:
        raise InputNotFoundError(f"validation scans {missing} not found under {root}")
    if ecfg.max_scans is not None:
        val = val[: ecfg.max_scans]
    notes: list[str] = []
    options, methods = {}, []
    for m in ecfg.methods:
        opts = _method_options(m, ecfg)
        why = _available(m, opts)
        if why:
            notes.append(f"method {m} skipped: {why}")
            log.warning("method %s skipped: %s", m, why)
            continue
        options[m] = opts
        methods.append(m)
    max_dil = max([int(o.get("dilation_px", 0)) for o in options.values()] or [0])
    if ecfg.downstream:
        grain_api, why = _grain_api(ecfg.grain_weights)
    else:
        grain_api, why = None, "downstream evaluation disabled (eval.downstream=false)"
    if why:
        notes.append(f"DOWNSTREAM NOT MEASURED: {why}")
        log.warning("downstream grain evaluation skipped: %s", why)

    hole_rows, down_rows, time_rows, restore_rows = [], [], [], []
    for si, name in enumerate(val):
        pixels, real = read_pair(root, name)
        rng = np.random.default_rng([ecfg.seed, int(name) if name.isdigit() else si])
        single, cluster, n_si, n_cl = _synthetic_holes(real, rng, ecfg, max_dil)
        log.info("scan %s: %d single + %d cluster synthetic holes (%d px)",
                 name, n_si, n_cl, int((single | cluster).sum()))
        restore = None
        if grain_api is not None:
            restore = _Restoration(grain_api, pixels, real, single | cluster, max_dil, ecfg)
            restore_rows.append({"scan": name, **restore.row("none", restore.impurity_like())})
        for m in methods:
            opts = options[m]
            d = int(opts.get("dilation_px", 0))
            out = inpaint(pixels, single | cluster | real, **opts)
            _, ssim_map = structural_similarity(pixels, out, data_range=255, full=True)
            for kind, holes in (("single", single), ("cluster", cluster)):
                region = dilate_mask(holes, d)
                hole_rows.append({"scan": name, "method": m, "kind": kind, "dilation_px": d,
                                  **hole_metrics(pixels, out, region, ssim_map)})
            if restore is not None:
                restore_rows.append({"scan": name, **restore.row(m, out)})
        # downstream + timing on the real impurities
        variants: dict[str, np.ndarray] = {}
        if grain_api is not None:
            variants["none"] = pixels
        for m in methods:
            t0 = time.perf_counter()
            out = inpaint(pixels, real, **options[m])
            seconds = time.perf_counter() - t0
            grown = dilate_mask(real, int(options[m].get("dilation_px", 0)))
            time_rows.append({"scan": name, "method": m, "height": pixels.shape[0],
                              "width": pixels.shape[1], "hole_fraction": float(grown.mean()),
                              "seconds": seconds})
            if grain_api is not None:
                variants[m] = out
        if grain_api is None:
            continue
        predict, measures = grain_api
        if ecfg.prior_art:
            ref_path = root / "reference_outputs" / "inpainted" / f"{name}.png"
            if ref_path.exists():
                variants["prior_art"], _ = read_image(ref_path)
            else:
                notes.append(f"prior-art inpainted scan {ref_path} missing")
        regions = grain_regions(root, name)
        if not regions:
            notes.append(f"scan {name}: no grain labels")
            continue
        h = min(v.shape[0] for v in variants.values())
        w = min(v.shape[1] for v in variants.values())
        near = dilate_mask(real[:h, :w], ecfg.near_px)
        for vname, img in variants.items():
            bnd = np.asarray(predict(img[:h, :w])).astype(bool)
            for ri, (R, C, truth) in enumerate(regions):
                rh, rw = truth.shape
                pred = bnd[R : R + rh, C : C + rw]
                if pred.shape != truth.shape:
                    continue
                zone = near[R : R + rh, C : C + rw]
                all_c = boundary_f1_counts(pred, truth, tolerance_px=ecfg.tolerance_px)
                near_c = boundary_f1_counts(pred, truth, tolerance_px=ecfg.tolerance_px, zone=zone)
                hp = float(measures(pred)["heyn_mean_px"])
                ht = float(measures(truth)["heyn_mean_px"])
                down_rows.append({"scan": name, "region": f"{R}-{C}", "variant": vname, **all_c,
                                  **{f"near_{k}": v for k, v in near_c.items()},
                                  "heyn_pred_px": hp, "heyn_true_px": ht,
                                  "heyn_rel_err": abs(hp - ht) / ht if ht > 0 else np.nan})
        log.info("scan %s done", name)

    return _write(output_dir, ecfg, val, methods, notes, hole_rows, down_rows, time_rows, restore_rows)


def _write(output_dir, ecfg, val, methods, notes, hole_rows, down_rows, time_rows, restore_rows):
    holes = pd.DataFrame(hole_rows)
    times = pd.DataFrame(time_rows)
    down = pd.DataFrame(down_rows)
    holes.to_csv(output_dir / "holes.csv", index=False)
    times.to_csv(output_dir / "timing.csv", index=False)
    if len(down):
        down.to_csv(output_dir / "downstream.csv", index=False)

    hole_table = []
    for m in methods:
        sub = holes[holes["method"] == m]
        row = {"method": m, "dilation_px": int(sub["dilation_px"].iloc[0])}
        parts = [("all", sub)] + [(k, sub[sub.kind == k]) for k in ("single", "cluster")]
        for kind, part in parts:
            if part["n"].sum() == 0:
                continue
            p = _pooled(part)
            if kind == "all":
                row.update(psnr_db=p["psnr_db"], ssim=p["ssim"], l1=p["l1"], n_px=p["n_px"])
            else:
                row[f"psnr_{kind}_db"] = p["psnr_db"]
        per_scan = [_pooled(g)["psnr_db"] for _, g in sub.groupby("scan")]
        row["psnr_scan_min_db"] = float(np.min(per_scan))
        t = times[times["method"] == m]["seconds"]
        row["s_per_scan_median"] = float(t.median())
        row["s_per_scan_max"] = float(t.max())
        hole_table.append(row)

    down_table = []
    if len(down):
        order = ["none", *methods, "prior_art"]
        for v in [v for v in order if v in set(down["variant"])]:
            sub = down[down["variant"] == v]
            n_pred, n_true = max(sub["n_pred"].sum(), 1), max(sub["n_true"].sum(), 1)
            signed = (sub["heyn_pred_px"] - sub["heyn_true_px"]) / sub["heyn_true_px"]
            down_table.append({
                "variant": v,
                "boundary_f1": _f1(sub),
                "precision": float(sub["hit_pred"].sum() / n_pred),
                "recall": float(sub["hit_true"].sum() / n_true),
                "f1_near_impurities": _f1(sub, "near_"),
                "heyn_rel_err_mean": float(sub["heyn_rel_err"].mean()),
                "heyn_rel_err_median": float(sub["heyn_rel_err"].median()),
                "heyn_signed_err_mean": float(signed.mean()),
                "n_regions": int(len(sub)),
            })
    restore_table = []
    rest = pd.DataFrame(restore_rows)
    if len(rest):
        rest.to_csv(output_dir / "restoration.csv", index=False)
        rest["heyn_rel_err"] = (rest["heyn_px"] - rest["heyn_truth_px"]).abs() / rest["heyn_truth_px"]
        for v in [v for v in ["none", *methods] if v in set(rest["variant"])]:
            sub = rest[rest["variant"] == v]
            restore_table.append({
                "variant": v,
                "f1_vs_intact": _f1(sub),
                "precision": float(sub["hit_pred"].sum() / max(sub["n_pred"].sum(), 1)),
                "recall": float(sub["hit_true"].sum() / max(sub["n_true"].sum(), 1)),
                "boundary_px_ratio": float(sub["n_pred"].sum() / max(sub["n_true"].sum(), 1)),
                "heyn_rel_err_mean": float(sub["heyn_rel_err"].mean()),
                "heyn_rel_err_max": float(sub["heyn_rel_err"].max()),
                "n_scans": int(len(sub)),
            })
    best_holes = max(hole_table, key=lambda r: r["psnr_db"])["method"] if hole_table else None
    # candidates for the pipeline default: every method and "none" (no inpainting)
    candidates = ["none", *methods]
    cand = [r for r in down_table if r["variant"] in candidates]
    best_down = min(cand, key=lambda r: r["heyn_rel_err_mean"])["variant"] if cand else None
    if best_down is not None:
        # paired (same regions) bootstrap of the Heyn-error difference to the best candidate
        piv = down.pivot_table(index=["scan", "region"], columns="variant", values="heyn_rel_err")
        rng = np.random.default_rng(ecfg.seed)
        idx = rng.integers(0, len(piv), size=(2000, len(piv)))
        for r in down_table:
            diff = (piv[r["variant"]] - piv[best_down]).to_numpy()
            boot = diff[idx].mean(axis=1)
            r["heyn_err_minus_best"] = float(diff.mean())
            r["ci95_lo"], r["ci95_hi"] = (float(q) for q in np.percentile(boot, [2.5, 97.5]))
    best_restore = (
        min([r for r in restore_table if r["variant"] in methods],
            key=lambda r: r["heyn_rel_err_mean"])["variant"]
        if any(r["variant"] in methods for r in restore_table) else None
    )
    recommended, rule = _recommend(candidates, down_table, restore_table)
    metrics = {
        "val_scans": list(val),
        "methods": list(methods),
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in ecfg.__dict__.items()},
        "holes": hole_table,
        "downstream": down_table,
        "downstream_measured": bool(len(down)),
        "restoration": restore_table,
        "best_restoration_method": best_restore,
        "recommended_default": recommended,
        "recommendation_rule": rule,
        "best_psnr_method": best_holes,
        "best_downstream_method": best_down,
        "notes": notes,
        "cpu_count": os.cpu_count(),
        "threads": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "cv2": _cv2_threads()},
    }
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    lines = [
        "# Inpainting evaluation",
        "",
        f"Validation scans: {', '.join(val)}.  Synthetic holes shaped like real impurities "
        f"({ecfg.holes_per_scan} per scan, {ecfg.cluster_fraction:.0%} clusters), placed clear of "
        "the dilated real impurities; metrics over the replaced pixels of the synthetic holes "
        "(gray levels 0-255).",
        "",
        markdown_table(pd.DataFrame(hole_table), floatfmt=".3f") if hole_table else "(none ran)",
        "",
        "## Downstream: grain boundaries on the labelled regions",
        "",
    ]
    if down_table:
        lines += [
            f"Boundary F1: thinned boundaries, tolerance {ecfg.tolerance_px} px; near = within "
            f"{ecfg.near_px} px of an impurity.  Heyn error = |Heyn mean intercept(pred) - "
            "(labels)| / (labels), mean over regions.",
            "",
            markdown_table(pd.DataFrame(down_table), floatfmt=".3f"),
            "",
            f"Lowest downstream Heyn error: **{best_down}**.  heyn_err_minus_best: paired "
            "difference to it over the same regions, with a 95 % bootstrap interval (ci95_lo, "
            "ci95_hi); an interval containing 0 means the data cannot separate the two.  "
            "heyn_signed_err_mean > 0: the segmentation finds too few boundaries (intercepts too long).",
        ]
    else:
        lines.append("**Not measured**: see notes.")
    if restore_table:
        lines += [
            "",
            "## Downstream on the synthetic holes: restoring the intact scan's boundaries",
            "",
            "Reference: the U-Net's boundaries on the intact scan (the synthetic holes sit in "
            "impurity-free areas).  Compared within "
            f"{ecfg.near_px} px of the holes, away from real impurities, on all validation scans; "
            "`none` = holes painted the median gray of the scan's impurities (what an unremoved "
            "impurity looks like).  Heyn error: scan-level Heyn mean with the zone's boundaries "
            "taken from the variant, relative to the intact scan's.",
            "",
            markdown_table(pd.DataFrame(restore_table), floatfmt=".4f"),
            "",
            f"Best restoration of the grain size: **{metrics['best_restoration_method']}**.",
        ]
    if recommended is not None:
        lines += ["", "## Recommended default", "", f"**{recommended}**: {rule}"]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    (output_dir / "summary.md").write_text("\n".join(lines) + "\n")
    log.info("\n%s", "\n".join(lines))
    return 0


def _recommend(candidates: list[str], down_table: list[dict], restore_table: list[dict]):
    """The pipeline default: lowest downstream grain-size error, by a rule fixed in advance.

    1. On the labelled regions, keep every candidate whose Heyn error is not
       significantly above the lowest (paired bootstrap: ``ci95_lo <= 0``).
    2. Among those, take the lowest scan-level Heyn error on the synthetic holes
       (restoration of the intact scan's boundaries; hundreds of holes per scan,
       so it separates methods that the few labelled regions cannot).

    Returns ``(variant or None, rule text with the numbers)``.
    """
    down = {r["variant"]: r for r in down_table if r["variant"] in candidates and "ci95_lo" in r}
    rest = {r["variant"]: r for r in restore_table if r["variant"] in candidates}
    if not down or not rest:
        return None, "not measured (needs the downstream evaluation)"
    tied = [v for v, r in down.items() if r["ci95_lo"] <= 0 and v in rest]
    if not tied:
        return None, "no candidate has both measurements"
    pick = min(tied, key=lambda v: rest[v]["heyn_rel_err_mean"])
    return pick, (
        f"on the labelled regions {', '.join(tied)} are within the 95% interval of the lowest "
        f"Heyn error; of those, {pick} restores the grain size best around the synthetic holes "
        f"(Heyn error {100 * rest[pick]['heyn_rel_err_mean']:.2f}% vs "
        + ", ".join(f"{v} {100 * rest[v]['heyn_rel_err_mean']:.2f}%" for v in tied if v != pick)
        + ")."
    )


def _cv2_threads() -> int:
    import cv2

    return int(cv2.getNumThreads())
