"""Agreement of predicted and labelled segmentations: impurity objects and grain boundaries.

Pure functions on boolean masks, used by the U-Net trainers (model selection)
and ``+exp=eval_segmentation`` (the published table).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.csgraph import maximum_bipartite_matching

__all__ = ["boundary_region_metrics", "impurity_metrics", "match_objects"]

_EIGHT = np.ones((3, 3), bool)


def impurity_metrics(
    pred: np.ndarray,
    truth: np.ndarray,
    *,
    match_iou: float = 0.0,
    tolerance_px: int = 0,
    size_bins: tuple[float, ...] | None = None,
    true_subset: np.ndarray | None = None,
) -> dict:
    """Pixel and object agreement of a predicted and a true impurity mask.

    Parameters
    ----------
    pred, truth : ndarray of bool, shape (M, N)
    match_iou : float
        A predicted and a true 8-connected object can be matched when their
        IoU exceeds this; 0 = any overlap (the labels are 1-2 px off on small
        objects: a 3 x 3 object shifted by 2 px has IoU 0.2).  Matching is
        one-to-one with the largest number of matched pairs, so one blob
        covering several true objects matches only one of them.
    tolerance_px : int
        Grow every predicted object by this many pixels (without merging
        objects) before matching, so objects off by up to that distance count
        as overlapping (use with ``match_iou=0``).  Pixel scores are unaffected.
    size_bins : increasing edges in pixels, optional
        Also count the true objects and the matched ones per bin of true object
        area, ``edges[i] <= area < edges[i + 1]`` (where the misses are).
    true_subset : ndarray of bool, shape (K,), optional
        A flag per true 8-connected object (in ``scipy.ndimage.label`` order);
        also count the flagged objects and the matched ones among them.

    Returns
    -------
    dict
        ``iou, dice`` (pixels), ``precision, recall, f1`` (objects),
        ``n_pred, n_true, n_matched``, ``area_fraction_pred``,
        ``area_fraction_true``, ``area_fraction_rel_error`` (pred / true - 1); with
        ``size_bins`` also ``n_true_by_size`` and ``n_matched_by_size`` (lists, one per bin);
        with ``true_subset`` also ``n_true_subset`` and ``n_matched_subset``.
    """
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"pred and truth must be 2-D masks of one shape, got {p.shape}, {t.shape}")
    m = match_objects(p, t, match_iou=match_iou, tolerance_px=tolerance_px)
    lt, nt, npred, matched = m["true_labels"], m["n_true"], m["n_pred"], m["true_matched"]
    at = np.bincount(lt.ravel(), minlength=nt + 1)
    inter, union = int((p & t).sum()), int((p | t).sum())
    sp, st = int(p.sum()), int(t.sum())
    n_matched = int(matched.sum())
    precision = n_matched / npred if npred else float("nan")
    recall = n_matched / nt if nt else float("nan")
    f1 = 2 * n_matched / (npred + nt) if npred + nt else float("nan")
    out = {
        "iou": inter / union if union else float("nan"),
        "dice": 2 * inter / (sp + st) if sp + st else float("nan"),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "n_pred": int(npred),
        "n_true": int(nt),
        "n_matched": n_matched,
        "area_fraction_pred": sp / p.size,
        "area_fraction_true": st / t.size,
        "area_fraction_rel_error": sp / st - 1.0 if st else float("nan"),
    }
    if size_bins is not None:
        edges = np.asarray(size_bins, float)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise ValueError(f"size_bins must be at least two increasing edges, got {size_bins!r}")
        true_area = at[1:]
        idx = np.searchsorted(edges, true_area, side="right") - 1
        inside = (idx >= 0) & (idx < edges.size - 1)
        nb = edges.size - 1
        out["n_true_by_size"] = np.bincount(idx[inside], minlength=nb).tolist()
        out["n_matched_by_size"] = np.bincount(idx[inside & matched], minlength=nb).tolist()
    if true_subset is not None:
        subset = np.asarray(true_subset, bool)
        if subset.shape != (nt,):
            raise ValueError(f"true_subset must have one flag per true object ({nt}), got {subset.shape}")
        out["n_true_subset"] = int(subset.sum())
        out["n_matched_subset"] = int((subset & matched).sum())
    return out


def match_objects(
    pred: np.ndarray, truth: np.ndarray, *, match_iou: float = 0.0, tolerance_px: int = 0
) -> dict:
    """One-to-one matching of predicted and true 8-connected objects (see :func:`impurity_metrics`).

    Returns
    -------
    dict
        ``true_labels, pred_labels`` (int label images, shape (M, N); the
        predictions before any ``tolerance_px`` growth), ``n_true, n_pred``,
        ``true_matched`` (bool, shape (n_true,)) and ``pred_matched`` (bool,
        shape (n_pred,)): whether object ``i + 1`` has a partner.
    """
    p, t = np.asarray(pred, bool), np.asarray(truth, bool)
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"pred and truth must be 2-D masks of one shape, got {p.shape}, {t.shape}")
    if not 0 <= match_iou < 1:
        raise ValueError(f"match_iou must be in [0, 1), got {match_iou}")
    lt, nt = ndimage.label(t, _EIGHT)
    lp0, npred = ndimage.label(p, _EIGHT)
    lp = lp0
    if tolerance_px > 0:
        from skimage.segmentation import expand_labels

        lp = expand_labels(lp0, distance=tolerance_px)
    both = (lt > 0) & (lp > 0)
    key = lt[both].astype(np.int64) * (npred + 1) + lp[both]
    uniq, overlap = np.unique(key, return_counts=True)
    ti, pi = uniq // (npred + 1), uniq % (npred + 1)
    at, ap = np.bincount(lt.ravel(), minlength=nt + 1), np.bincount(lp.ravel(), minlength=npred + 1)
    iou = overlap / (at[ti] + ap[pi] - overlap)
    ok = iou > match_iou
    true_matched = np.zeros(nt, bool)
    pred_matched = np.zeros(npred, bool)
    if ok.any():
        graph = sparse.csr_matrix((np.ones(int(ok.sum())), (ti[ok] - 1, pi[ok] - 1)), shape=(nt, npred))
        partner = maximum_bipartite_matching(graph, perm_type="column")
        true_matched = partner >= 0
        pred_matched[partner[true_matched]] = True
    return {"true_labels": lt, "pred_labels": lp0, "n_true": int(nt), "n_pred": int(npred),
            "true_matched": true_matched, "pred_matched": pred_matched}


def boundary_region_metrics(
    pred: np.ndarray, truth: np.ndarray, *, tolerance: float = 2.0, line_spacing: int = 10
) -> dict:
    """Boundary F1 and Heyn-mean error of one labelled region.

    Returns ``precision, recall, f1`` (:func:`segmentation.grains.boundary_f1`),
    ``heyn_pred_px, heyn_true_px`` and ``heyn_rel_error`` (pred / true - 1).
    """
    from .grains import boundary_f1, grain_measures

    out = boundary_f1(pred, truth, tolerance=tolerance)
    hp = grain_measures(pred, line_spacing=line_spacing)["heyn_mean_px"]
    ht = grain_measures(truth, line_spacing=line_spacing)["heyn_mean_px"]
    out.update(heyn_pred_px=hp, heyn_true_px=ht, heyn_rel_error=hp / ht - 1.0)
    return out
