"""Repeatability of the shipped measurements: ``python -m experiments.run +exp=eval_repeatability``.

Each scan is re-imaged the way a lab would image the same field again
(:data:`PERTURBATIONS`): rotated 90°, shifted by ``shift_fraction`` of its
size, ``brightness`` brighter and darker, saved as JPEG ``jpeg_quality``,
slightly defocused (Gaussian ``defocus_sigma`` px), and predicted with the
tiling origin moved by ``tiling_offset`` px.  Every re-imaging is segmented
with the shipped U-Net and its post-processing, mapped back to the original
frame and measured on the window all of them share (the shifted one sees a
little less), so what moves is the method, not the field:

- the impurity area fraction and the impurity count (the pipeline's objects:
  the U-Net mask split by the watershed, the detection limit applied;
  objects counted by their centroid in the window),
- ASTM E112 G (inpainting, grain U-Net, :func:`segmentation.grains.grain_measures`
  at a nominal pixel size), and
- the top-ranked clusters of the scan (default anomaly scoring and market
  clustering), with ``k = min(top_k, clusters of the original)``: how many of
  the original's top-k clusters are matched (one-to-one) by one of the
  re-imaging's top-k clusters that shares a member impurity with it (member
  pixels in the original frame; :func:`cluster_overlap`).  The box overlap of
  the earlier rounds (original's top boxes against the re-imaging's top
  ``top_k`` boxes, :func:`box_overlap_count`) is kept beside it.  Each
  re-imaging also records how many impurities enter the market
  (``combined_score > anomaly.area.min_score``), the number the clusters are
  built from.

Per scan: the coefficient of variation (sd / mean over the re-imagings,
``ddof=1``) of each number, the worst re-imaging, and the top-k overlap (the
minimum and the mean over the re-imagings); the summary takes the median over
scans of each.  Outputs: ``repeatability.json`` and ``repeatability.md``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from experiments.config import dataclass_from
from .config import EvalRepeatabilityConfig

__all__ = ["PERTURBATIONS", "box_overlap_count", "cluster_overlap", "cv", "perturb", "perturbation_breakdown", "run",
           "unperturb"]

log = logging.getLogger(__name__)

PERTURBATIONS = ("original", "rot90", "shift", "brighter", "darker", "jpeg80", "defocus", "tiling")


def perturb(image: np.ndarray, kind: str, cfg: EvalRepeatabilityConfig) -> np.ndarray:
    """The scan re-imaged by one of :data:`PERTURBATIONS` (``tiling`` is applied at prediction)."""
    a = np.asarray(image)
    if kind in ("original", "tiling"):
        return a
    if kind == "rot90":
        return np.ascontiguousarray(np.rot90(a))
    if kind == "shift":
        dr, dc = _shift(a.shape, cfg)
        return np.ascontiguousarray(a[dr:, dc:])
    if kind in ("brighter", "darker"):
        f = 1 + cfg.brightness if kind == "brighter" else 1 - cfg.brightness
        return np.clip(np.rint(a.astype(np.float32) * f), 0, np.iinfo(a.dtype).max).astype(a.dtype)
    if kind == "jpeg80":
        ok, buf = cv2.imencode(".jpg", a, [cv2.IMWRITE_JPEG_QUALITY, int(cfg.jpeg_quality)])
        return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    if kind == "defocus":
        return np.clip(np.rint(cv2.GaussianBlur(a.astype(np.float32), (0, 0), cfg.defocus_sigma)), 0, 255
                       ).astype(a.dtype)
    raise ValueError(f"unknown perturbation {kind!r}; known: {PERTURBATIONS}")


def _shift(shape, cfg) -> tuple[int, int]:
    return int(round(cfg.shift_fraction * shape[0])), int(round(cfg.shift_fraction * shape[1]))


def unperturb(mask: np.ndarray, kind: str, shape: tuple[int, int], cfg: EvalRepeatabilityConfig) -> np.ndarray:
    """A per-pixel result of a re-imaging back in the original frame (``shape``); unseen pixels are 0."""
    if kind == "rot90":
        return np.ascontiguousarray(np.rot90(mask, -1))
    if kind == "shift":
        dr, dc = _shift(shape, cfg)
        out = np.zeros(shape, mask.dtype)
        out[dr:, dc:] = mask
        return out
    return mask


def cv(values) -> float:
    """Coefficient of variation (sd with ddof 1 / |mean|); NaN for < 2 finite values or mean 0."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size < 2 or v.mean() == 0:
        return float("nan")
    return float(v.std(ddof=1) / abs(v.mean()))


def box_overlap_count(a: pd.DataFrame, b: pd.DataFrame) -> int:
    """One-to-one count of boxes of ``a`` that overlap a box of ``b`` (inclusive bbox_* columns)."""
    if not len(a) or not len(b):
        return 0
    from scipy.optimize import linear_sum_assignment

    def arr(t):
        return t[["bbox_rmin", "bbox_cmin", "bbox_rmax", "bbox_cmax"]].to_numpy(np.int64)

    x, y = arr(a), arr(b)
    ov = ((x[:, None, 0] <= y[None, :, 2]) & (y[None, :, 0] <= x[:, None, 2])
          & (x[:, None, 1] <= y[None, :, 3]) & (y[None, :, 1] <= x[:, None, 3]))
    r, c = linear_sum_assignment(-ov.astype(float))
    return int(ov[r, c].sum())


def cluster_overlap(ref: np.ndarray, other: np.ndarray, k: int) -> int:
    """One-to-one count of the top-``k`` clusters of ``ref`` that share a member pixel with one of ``other``'s.

    Parameters
    ----------
    ref, other : ndarray of int, same shape
        Cluster-rank images in one frame: each member impurity's pixels carry its
        cluster's scan rank (1 = best), 0 elsewhere.
    k : int
        Only ranks 1..k of either image take part.

    Returns
    -------
    int
        The size of the largest one-to-one matching between the two top-k sets in
        which matched clusters have at least one member pixel in common.
    """
    a, b = np.asarray(ref), np.asarray(other)
    if a.shape != b.shape:
        raise ValueError(f"cluster images differ in shape: {a.shape} vs {b.shape}")
    if k < 1:
        return 0
    both = (a > 0) & (a <= k) & (b > 0) & (b <= k)
    if not both.any():
        return 0
    from scipy.optimize import linear_sum_assignment

    ov = np.zeros((k, k), bool)
    ov[a[both].astype(np.int64) - 1, b[both].astype(np.int64) - 1] = True
    r, c = linear_sum_assignment(-ov.astype(float))
    return int(ov[r, c].sum())


def _boxes_back(clusters: pd.DataFrame, kind: str, shape, cfg) -> pd.DataFrame:
    c = clusters.copy()
    if kind == "rot90":  # rot90 maps (r, c) -> (W - 1 - c, r); back: r0 = c', c0 = W - 1 - r'
        w = shape[1]
        r0, r1 = c["bbox_cmin"].copy(), c["bbox_cmax"].copy()
        c0, c1 = w - 1 - c["bbox_rmax"], w - 1 - c["bbox_rmin"]
        c["bbox_rmin"], c["bbox_rmax"], c["bbox_cmin"], c["bbox_cmax"] = r0, r1, c0, c1
    elif kind == "shift":
        dr, dc = _shift(shape, cfg)
        c[["bbox_rmin", "bbox_rmax"]] += dr
        c[["bbox_cmin", "bbox_cmax"]] += dc
    return c


def _clusters(labels: np.ndarray, anomaly: dict, top_k: int) -> tuple[pd.DataFrame, np.ndarray, int]:
    """The top-k clusters of a label image with the run's default anomaly settings (uncalibrated).

    Returns the clusters (sorted by scan rank), the cluster-rank image (each member
    impurity's pixels carry its cluster's scan rank, 0 elsewhere; all clusters) and
    the number of impurities in the market.
    """
    from anomaly.market import MarketConfig, market_clustering
    from anomaly.scorers import ScoreContext
    from anomaly.scoring import configured_scorers, score_regions
    from data import regions_from_labels
    from experiments.pipeline.artifacts import scan_ranks
    from experiments.pipeline.options import resolve_physical

    table = regions_from_labels(labels)
    combine = dict(anomaly.get("combine") or {})
    scorers = {k: resolve_physical(v, None) for k, v in configured_scorers(anomaly.get("scorers")).items()}
    table = score_regions(table, scorers=scorers,
                          combine_inputs=tuple(combine.get("inputs", ("spatial", "circle"))),
                          combine_method=combine.get("method", "product"),
                          context=ScoreContext(labels=labels))
    area = resolve_physical(dict(anomaly.get("area") or {}), None)
    mcfg = dataclass_from(MarketConfig, area, where="anomaly.area")
    member, clusters = market_clustering(table, table["combined_score"].to_numpy(), mcfg)
    n_market = int(np.count_nonzero(table["combined_score"].to_numpy() > mcfg.min_score))
    key = str(area.get("order_key", "weighted_area2_sum_mult_diameter_mult_amount"))
    rank_img = np.zeros(labels.shape, np.int32)
    if not len(clusters):
        return clusters, rank_img, n_market
    ranks = scan_ranks(clusters, key)
    clusters = clusters.assign(scan_rank=ranks)
    lut = np.zeros(int(labels.max()) + 1, np.int32)
    rid = table["region_id"].to_numpy(np.int64)
    ok = member >= 0
    lut[rid[ok]] = ranks[np.searchsorted(clusters["cluster_id"].to_numpy(), member[ok])]
    rank_img = lut[labels]
    return clusters.sort_values("scan_rank").head(int(top_k)), rank_img, n_market


def _measure_scan(img: np.ndarray, s: str, ecfg: EvalRepeatabilityConfig, anomaly: dict, inpainting: dict | None):
    from data import relabel_sequential
    from segmentation import split_touching
    from segmentation.grains import grain_measures
    from segmentation.models import model_card
    from segmentation.refine import impurity_postprocess
    from .segmentation import cached_probabilities

    card = model_card("impurities")
    post = {**card.get("postprocess", {}), **dict(ecfg.unet_options)}
    threshold = float(post.pop("threshold", card["threshold"]))
    post.pop("min_area_px", None)
    shape = img.shape
    dr, dc = _shift(shape, ecfg)
    win = (slice(dr, None), slice(dc, None))  # the window every re-imaging sees
    rows, tops, ranks = [], {}, {}
    popts = dict(ecfg.predict_options)
    tag = "".join(f"_{k}{v}" for k, v in sorted(popts.items()))  # other options, other cache files
    for kind in ecfg.perturbations:
        x = perturb(img, kind, ecfg)
        if kind == "tiling":
            o = int(ecfg.tiling_offset)
            padded = np.pad(x, ((o, 0), (o, 0)), mode="reflect")
            prob = cached_probabilities(padded, "impurities", key=f"{s}_{kind}{tag}", cache_dir=ecfg.cache_dir,
                                        **popts)[o:, o:]
        else:
            prob = cached_probabilities(x, "impurities", key=f"{s}_{kind}{tag}", cache_dir=ecfg.cache_dir, **popts)
        mask = impurity_postprocess(prob, x, threshold, min_area_px=int(ecfg.min_area_px),
                                    extent_threshold=post.get("extent_threshold"),
                                    depth_fraction=post.get("depth_fraction"),
                                    depth_smooth_sigma=float(post.get("depth_smooth_sigma", 1.0)))
        labels = relabel_sequential(split_touching(mask, min_distance=4).astype(np.int32),
                                    min_area_px=int(ecfg.min_area_px))
        back = unperturb(labels, kind, shape, ecfg)
        w = back[win]
        from scipy import ndimage

        n = int(back.max())
        if n:
            cen = np.array(ndimage.center_of_mass(np.ones_like(back), back, np.arange(1, n + 1)))
            count = int(np.sum((cen[:, 0] >= dr) & (cen[:, 1] >= dc)))
        else:
            count = 0
        row = {"scan": s, "perturbation": kind, "area_fraction": float((w > 0).mean()), "count": count}
        if ecfg.grains:
            from segmentation.models import predict_grain_boundaries

            g = x
            opts = dict(inpainting or {"method": "ns", "dilation_px": 2})
            if opts.get("method", "none") != "none":
                from inpainting import inpaint

                g = inpaint(x, mask, **opts)
            b = predict_grain_boundaries(g)
            b = unperturb(b, kind, shape, ecfg)[win]
            row["G"] = float(grain_measures(b, pixel_size_um=ecfg.pixel_size_um)["grain_size_G"])
        top, rank_img, row["n_market"] = _clusters(labels, anomaly, ecfg.top_k)
        tops[kind] = _boxes_back(top, kind, shape, ecfg)
        ranks[kind] = unperturb(rank_img, kind, shape, ecfg)
        row["n_clusters"] = int(rank_img.max())
        rows.append(row)
        log.info("scan %s %-9s area %.3f%% count %d%s", s, kind, 100 * row["area_fraction"], count,
                 f" G {row['G']:.3f}" if "G" in row else "")
    first = "original" if "original" in tops else next(iter(tops))
    ref, ref_rank = tops[first], ranks[first]
    k = min(int(ecfg.top_k), int(ref_rank.max()))  # fewer than top_k when the scan has fewer clusters
    for r in rows:
        r["top_k"] = k
        r["top_overlap"] = cluster_overlap(ref_rank, ranks[r["perturbation"]], k)
        r["top_overlap_fraction"] = r["top_overlap"] / k if k else float("nan")
        r["top_overlap_box"] = box_overlap_count(ref, tops[r["perturbation"]])
        r["top_overlap_box_fraction"] = r["top_overlap_box"] / len(ref) if len(ref) else float("nan")
    return rows


def perturbation_breakdown(per: pd.DataFrame) -> pd.DataFrame:
    """What each re-imaging kind does, over scans (a table of ``per_imaging`` rows).

    Per kind: the median over scans of the change from the original (area
    fraction and count in %, G in units), the median |change|, the median
    top-k overlap, and the median over scans of the CV of the area fraction and
    of the count over all re-imagings except that kind (what the CV would be
    without it).
    """
    if "original" not in set(per["perturbation"]):
        raise ValueError("the per-imaging table needs the 'original' rows")
    base = per[per["perturbation"] == "original"].set_index("scan")
    d = per.assign(
        d_area=100 * (per["area_fraction"] / per["scan"].map(base["area_fraction"]) - 1),
        d_count=100 * (per["count"] / per["scan"].map(base["count"]) - 1))
    if "G" in per:
        d["d_G"] = per["G"] - per["scan"].map(base["G"])
    out = []
    for kind, g in d.groupby("perturbation", sort=False):
        if kind == "original":
            continue
        rest = d[d["perturbation"] != kind].groupby("scan")
        rec = {"perturbation": kind, "area change % (median)": float(g["d_area"].median()),
               "|area change| % (median)": float(g["d_area"].abs().median()),
               "count change % (median)": float(g["d_count"].median()),
               "|count change| % (median)": float(g["d_count"].abs().median())}
        if "d_G" in g:
            rec["G change (median)"] = float(g["d_G"].median())
        rec["top-k overlap (median)"] = float(g["top_overlap_fraction"].median())
        rec["median CV area without it %"] = 100 * float(rest["area_fraction"].apply(cv).median())
        rec["median CV count without it %"] = 100 * float(rest["count"].apply(cv).median())
        out.append(rec)
    return pd.DataFrame(out)


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``eval_repeatability``."""
    from experiments._markdown import markdown_table
    from experiments.research.datasets.mlography import dev_root, read_gray

    ecfg = dataclass_from(EvalRepeatabilityConfig, cfg.get("eval"), where="eval")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    root = dev_root(ecfg.data_root)
    anomaly = OmegaConf.to_container(cfg.anomaly, resolve=True) if cfg.get("anomaly") is not None else {}
    inpainting = dict(cfg.get("inpainting") or {}) or None
    rows = []
    for s in ecfg.scans:
        rows += _measure_scan(read_gray(root / "scans" / "images" / f"{s}.jpg"), s, ecfg, anomaly, inpainting)
    per = pd.DataFrame(rows)
    summary = []
    for s, d in per.groupby("scan", sort=False):
        base = d[d["perturbation"] == "original"].iloc[0] if (d["perturbation"] == "original").any() else d.iloc[0]
        rec = {"scan": s, "cv_area_fraction": cv(d["area_fraction"]), "cv_count": cv(d["count"])}
        if "G" in d:
            rec["sd_G"] = float(d["G"].std(ddof=1))
            rec["cv_G"] = cv(d["G"])
        re_imaged = d["perturbation"] != "original"
        rec["top_k"] = int(d["top_k"].iloc[0])
        rec["top_overlap_min"] = int(d["top_overlap"][re_imaged].min())
        rec["top_overlap_fraction_min"] = float(d["top_overlap_fraction"][re_imaged].min())
        rec["top_overlap_fraction_mean"] = float(d["top_overlap_fraction"][re_imaged].mean())
        rec["top_overlap_box_fraction_min"] = float(d["top_overlap_box_fraction"][re_imaged].min())
        rec["cv_n_market"] = cv(d["n_market"])
        dev = (d["area_fraction"] / base["area_fraction"] - 1).abs()
        rec["worst_area"] = f"{d['perturbation'].iloc[int(dev.argmax())]} ({100 * dev.max():+.1f}%)"
        devc = (d["count"] / base["count"] - 1).abs()
        rec["worst_count"] = f"{d['perturbation'].iloc[int(devc.argmax())]} ({100 * devc.max():.1f}%)"
        summary.append(rec)
    summ = pd.DataFrame(summary)
    by_kind = perturbation_breakdown(per)
    t = ecfg.targets
    med = {"cv_area_fraction_median": float(summ["cv_area_fraction"].median()),
           "cv_count_median": float(summ["cv_count"].median()),
           "top_overlap_median": float(summ["top_overlap_min"].median()),
           "top_overlap_fraction_median": float(summ["top_overlap_fraction_min"].median()),
           "top_overlap_fraction_mean_median": float(summ["top_overlap_fraction_mean"].median()),
           "top_overlap_box_fraction_median": float(summ["top_overlap_box_fraction_min"].median()),
           "top_overlap_worst": int(summ["top_overlap_min"].min()),
           "cv_n_market_median": float(summ["cv_n_market"].median())}
    if "sd_G" in summ:
        med["sd_G_median"] = float(summ["sd_G"].median())
    targets = [
        {"measure": "median CV area fraction", "value": med["cv_area_fraction_median"],
         "target": f"<= {t['cv_area_fraction']:g}", "met": med["cv_area_fraction_median"] <= t["cv_area_fraction"]},
        {"measure": "median CV count", "value": med["cv_count_median"], "target": f"<= {t['cv_count']:g}",
         "met": med["cv_count_median"] <= t["cv_count"]},
        {"measure": f"top-k cluster overlap by member impurities, k = min({ecfg.top_k}, clusters) "
                    "(median over scans of the worst re-imaging)",
         "value": med["top_overlap_fraction_median"], "target": f">= {t['top_overlap'] / ecfg.top_k:g}",
         "met": med["top_overlap_fraction_median"] >= t["top_overlap"] / ecfg.top_k},
    ]
    out = {"config": asdict(ecfg), "summary": med, "targets": targets, "per_scan": summ.to_dict(orient="records"),
           "per_perturbation": by_kind.to_dict(orient="records"), "per_imaging": per.to_dict(orient="records")}
    (output_dir / "repeatability.json").write_text(json.dumps(out, indent=2, default=float) + "\n")
    md = ["# Repeatability: the same field re-imaged", "",
          f"Scans {', '.join(ecfg.scans)}; re-imagings {', '.join(ecfg.perturbations)}; measured on the window "
          f"all of them see.", "", markdown_table(pd.DataFrame(targets)), "", markdown_table(summ), "",
          "Per re-imaging kind (median over scans of the change from the original; the median CV "
          "over scans without that kind):", "", markdown_table(by_kind), "",
          "Per re-imaging:", "", markdown_table(per), ""]
    (output_dir / "repeatability.md").write_text("\n".join(md))
    log.info("\n%s", "\n".join(md))
    return 0
