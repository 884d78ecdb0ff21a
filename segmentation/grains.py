"""Grain measurement from a grain-boundary mask (pure NumPy / SciPy / scikit-image).

Chain: boundary mask -> thinned 1-px skeleton (:func:`boundary_skeleton`) ->
grain labels (:func:`grain_labels`, the 4-connected components of the
non-boundary pixels, boundary pixels then given to the nearest grain) ->
grain table (:func:`grain_table`) and the summary :func:`grain_measures`:

- Heyn line-intercept mean (pixels): horizontal and vertical test lines on a
  grid; every run of boundary pixels along a line is one crossing, located at
  the run's centre; the intercepts are the distances between consecutive
  crossings on the same line (:func:`line_intercepts`).
- ASTM E112 intercept grain size number ``G = -6.643856 log10(l_mm) - 3.288``
  where ``l`` is the mean lineal intercept (total test-line length / number of
  crossings), in mm.
- ASTM E112 planimetric number ``G = 3.321928 log10(N_A) - 2.954`` with
  ``N_A = (N_inside + N_intersected / 2) / A`` grains per mm^2 of the image
  area ``A`` (grains touching the image border count half).

``G`` needs the pixel size (micrometres per pixel); without one it is NaN.
Boundary-vs-boundary agreement at a pixel tolerance is :func:`boundary_f1`.

Examples
--------
>>> grid = np.zeros((200, 200), bool)
>>> grid[::20, :] = True
>>> grid[:, ::20] = True
>>> m = grain_measures(grid, pixel_size_um=1.0)
>>> round(m["heyn_mean_px"], 6)
20.0
>>> round(m["grain_size_G_intercept"], 3)
8.0
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.morphology import skeletonize

__all__ = [
    "GRAIN_COLUMNS",
    "astm_g_intercept",
    "astm_g_planimetric",
    "boundary_f1",
    "boundary_skeleton",
    "clean_boundaries",
    "grain_labels",
    "grain_measures",
    "grain_table",
    "line_intercepts",
]

log = logging.getLogger(__name__)

GRAIN_COLUMNS: tuple[str, ...] = (
    "grain_id",
    "centroid_row",
    "centroid_col",
    "area_px",
    "eq_diameter_px",
    "touches_border",
)
_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)


def _as_bool_2d(boundaries: np.ndarray, name: str = "boundaries") -> np.ndarray:
    b = np.asarray(boundaries)
    if b.ndim != 2:
        raise ValueError(f"{name} must be a 2-D mask (row, col), got shape {b.shape}")
    if b.size == 0:
        raise ValueError(f"{name} is empty")
    if b.dtype == bool:
        return b
    if b.dtype.kind == "f" and not np.all(np.isfinite(b)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return b > (127 if b.dtype == np.uint8 and b.max() > 1 else 0)


def _check_pixel_size(pixel_size_um: float | None) -> float | None:
    if pixel_size_um is None:
        return None
    p = float(pixel_size_um)
    if not np.isfinite(p) or p <= 0:
        raise ValueError(f"pixel_size_um must be a positive number or None, got {pixel_size_um!r}")
    return p


def boundary_skeleton(boundaries: np.ndarray, *, close_radius: int = 0) -> np.ndarray:
    """Thin a boundary mask to 1-px wide, 8-connected lines.

    Parameters
    ----------
    boundaries : ndarray, shape (M, N)
        Boundary mask: bool, or numbers where nonzero (uint8: > 127) is boundary.
    close_radius : int
        Optional morphological closing (square of side ``2 r + 1``) before
        thinning, which bridges gaps of up to about ``2 r`` px.

    Returns
    -------
    ndarray of bool, shape (M, N)
    """
    b = _as_bool_2d(boundaries)
    if close_radius < 0:
        raise ValueError(f"close_radius must be >= 0, got {close_radius}")
    # Reflect-pad before closing and thinning: lines that reach the image border
    # keep reaching it (thinning would otherwise shorten their ends by a pixel or
    # two and let the grains on both sides merge along the border).
    pad = max(8, 2 * int(close_radius) + 1)
    mode = "reflect" if min(b.shape) > pad else "symmetric"
    b = np.pad(b, pad, mode=mode)
    if close_radius:
        k = 2 * int(close_radius) + 1
        b = ndimage.binary_closing(b, np.ones((k, k), bool))
    return skeletonize(b)[pad:-pad, pad:-pad]


def clean_boundaries(
    boundaries: np.ndarray, *, min_length_px: int = 0, close_radius: int = 0
) -> np.ndarray:
    """Thin a (predicted) boundary mask and drop short isolated pieces.

    Parameters
    ----------
    boundaries : ndarray, shape (M, N)
        Boundary mask.
    min_length_px : int
        8-connected skeleton pieces with fewer pixels are removed (0 = keep all);
        pieces touching the image border are kept whatever their length.
    close_radius : int
        See :func:`boundary_skeleton`.

    Returns
    -------
    ndarray of bool, shape (M, N)
        1-px wide boundary lines.
    """
    if min_length_px < 0:
        raise ValueError(f"min_length_px must be >= 0, got {min_length_px}")
    skel = boundary_skeleton(boundaries, close_radius=close_radius)
    if min_length_px > 1 and skel.any():
        lab, n = ndimage.label(skel, structure=np.ones((3, 3), bool))
        size = np.bincount(lab.ravel(), minlength=n + 1)
        keep = size >= min_length_px
        keep[np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])] = True
        keep[0] = False
        skel = keep[lab]
    return skel


def grain_labels(
    boundaries: np.ndarray, *, thin: bool = True, close_radius: int = 0, min_area_px: int = 1
) -> np.ndarray:
    """Label the grains enclosed by a boundary mask.

    Grains are the 4-connected components of the non-boundary pixels (so an
    8-connected 1-px line separates them).  Components smaller than
    ``min_area_px`` are dropped; the boundary pixels (and dropped components)
    then go to the nearest remaining grain, so the labels tile the image.

    Parameters
    ----------
    boundaries : ndarray, shape (M, N)
        Boundary mask (see :func:`boundary_skeleton`).
    thin : bool
        Thin the mask to a skeleton first (recommended for thick labels).
    close_radius : int
        Closing before thinning (only with ``thin=True``).
    min_area_px : int
        Smallest grain kept, counted before the boundary pixels are shared out.

    Returns
    -------
    ndarray of int32, shape (M, N)
        1..n, 0 nowhere unless the image holds no grain at all.
    """
    if min_area_px < 1:
        raise ValueError(f"min_area_px must be >= 1, got {min_area_px}")
    b = boundary_skeleton(boundaries, close_radius=close_radius) if thin else _as_bool_2d(boundaries)
    lab, n = ndimage.label(~b, structure=_CROSS)
    if n and min_area_px > 1:
        area = np.bincount(lab.ravel(), minlength=n + 1)
        keep = area >= min_area_px
        keep[0] = False
        new = np.zeros(n + 1, np.int32)
        new[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
        lab, n = new[lab], int(keep.sum())
    lab = lab.astype(np.int32, copy=False)
    if n == 0:
        return np.zeros(b.shape, np.int32)
    gaps = lab == 0
    if gaps.any():
        # nearest labelled pixel for every boundary / dropped pixel: one EDT for the whole image
        idx = ndimage.distance_transform_edt(gaps, return_distances=False, return_indices=True)
        lab = lab[idx[0], idx[1]]
    return lab


def grain_table(labels: np.ndarray, *, pixel_size_um: float | None = None) -> pd.DataFrame:
    """One row per grain of a label image (0 = no grain).

    Parameters
    ----------
    labels : ndarray of int, shape (M, N)
    pixel_size_um : float, optional
        Adds ``area_um2`` and ``eq_diameter_um``.

    Returns
    -------
    DataFrame
        Columns :data:`GRAIN_COLUMNS` (``touches_border``: the grain has a pixel
        on the image border, so it is cut by the field of view), in grain_id order.
    """
    lab = np.asarray(labels)
    if lab.ndim != 2 or lab.dtype.kind not in "iu":
        raise ValueError(f"labels must be a 2-D integer image, got shape {lab.shape} dtype {lab.dtype}")
    if lab.size and lab.min() < 0:
        raise ValueError("labels must be >= 0")
    p = _check_pixel_size(pixel_size_um)
    n = int(lab.max()) if lab.size else 0
    flat = lab.ravel()
    area = np.bincount(flat, minlength=n + 1).astype(np.float64)
    rows, cols = np.indices(lab.shape)
    sr = np.bincount(flat, weights=rows.ravel(), minlength=n + 1)
    sc = np.bincount(flat, weights=cols.ravel(), minlength=n + 1)
    border = np.zeros(n + 1, bool)
    border[np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])] = True
    present = area > 0
    present[0] = False
    ids = np.flatnonzero(present)
    a = area[ids]
    df = pd.DataFrame(
        {
            "grain_id": ids.astype(np.int64),
            "centroid_row": sr[ids] / a,
            "centroid_col": sc[ids] / a,
            "area_px": a.astype(np.int64),
            "eq_diameter_px": np.sqrt(4.0 * a / np.pi),
            "touches_border": border[ids],
        }
    )
    if p is not None:
        df["area_um2"] = df["area_px"] * p * p
        df["eq_diameter_um"] = df["eq_diameter_px"] * p
    return df


def line_intercepts(
    boundaries: np.ndarray, *, spacing: int = 10, directions: str = "hv"
) -> tuple[np.ndarray, int, float]:
    """Intercept lengths between boundary crossings along a grid of test lines.

    Test lines are rows ``spacing//2, spacing//2 + spacing, ...`` (``'h'``)
    and the same columns (``'v'``).  A run of consecutive boundary pixels on
    a line is one crossing, placed at the run's centre.

    Parameters
    ----------
    boundaries : ndarray, shape (M, N)
        Boundary mask (thin or thick).
    spacing : int
        Distance between parallel test lines (px).
    directions : str
        Any of ``'h'`` (horizontal lines) and ``'v'`` (vertical lines).

    Returns
    -------
    intercepts : ndarray of float, shape (K,)
        Distances (px) between consecutive crossings on the same line.
    n_crossings : int
        Number of crossings on all test lines.
    line_length : float
        Total length of the test lines (px).
    """
    b = _as_bool_2d(boundaries)
    if spacing < 1:
        raise ValueError(f"spacing must be >= 1, got {spacing}")
    if not directions or set(directions) - {"h", "v"}:
        raise ValueError(f"directions must be made of 'h' and 'v', got {directions!r}")
    parts, n_cross, length = [], 0, 0.0
    for d in dict.fromkeys(directions):
        img = b if d == "h" else b.T
        lines = img[spacing // 2 :: spacing]
        if lines.shape[0] == 0:
            continue
        k, w = lines.shape
        length += float(k * w)
        pad = np.zeros((k, 1), np.int8)
        edges = np.diff(np.concatenate([pad, lines.astype(np.int8), pad], axis=1), axis=1)
        sr, sc = np.nonzero(edges == 1)  # run starts (row-major order: sorted by line, then position)
        _, ec = np.nonzero(edges == -1)  # run ends (exclusive), same order
        centres = 0.5 * (sc + ec - 1)
        n_cross += centres.size
        same = sr[1:] == sr[:-1]
        parts.append(np.diff(centres)[same])
    ints = np.concatenate(parts) if parts else np.zeros(0)
    return ints.astype(np.float64), int(n_cross), length


def astm_g_intercept(mean_intercept_mm: float) -> float:
    """ASTM E112 grain size number from the mean lineal intercept (mm); NaN if not positive."""
    l = float(mean_intercept_mm)
    return float(-6.643856 * np.log10(l) - 3.288) if np.isfinite(l) and l > 0 else float("nan")


def astm_g_planimetric(grains_per_mm2: float) -> float:
    """ASTM E112 grain size number from the number of grains per mm^2; NaN if not positive."""
    n = float(grains_per_mm2)
    return float(3.321928 * np.log10(n) - 2.954) if np.isfinite(n) and n > 0 else float("nan")


def grain_measures(
    boundaries: np.ndarray,
    *,
    pixel_size_um: float | None = None,
    line_spacing: int = 10,
    thin: bool = True,
    close_radius: int = 0,
    min_grain_area_px: int = 1,
) -> dict:
    """Grain count, Heyn intercept and ASTM E112 grain size numbers of a boundary mask.

    Parameters
    ----------
    boundaries : ndarray, shape (M, N)
        Grain-boundary mask (bool or uint8 with 255 = boundary).
    pixel_size_um : float, optional
        Micrometres per pixel; needed for the ``G`` numbers (NaN without) and
        the ``_um`` values.
    line_spacing : int
        Spacing of the horizontal and vertical test lines (px).
    thin, close_radius, min_grain_area_px
        See :func:`grain_labels`.

    Returns
    -------
    dict
        ``grain_count`` (all labelled grains), ``grain_count_inside``,
        ``grain_count_border``, ``mean_grain_area_px``, ``mean_eq_diameter_px``,
        ``heyn_mean_px`` (mean distance between consecutive crossings),
        ``mean_intercept_px`` (test-line length / crossings, the ASTM ``l``),
        ``n_intercepts``, ``n_crossings``, ``grain_size_G_intercept``,
        ``grain_size_G_planimetric``, ``grains_per_mm2``, ``pixel_size_um`` and,
        when calibrated, ``heyn_mean_um``, ``mean_intercept_um``,
        ``mean_grain_area_um2``, ``mean_eq_diameter_um``.
    """
    b = _as_bool_2d(boundaries)
    p = _check_pixel_size(pixel_size_um)
    skel = boundary_skeleton(b, close_radius=close_radius) if thin else b
    labels = grain_labels(skel, thin=False, min_area_px=min_grain_area_px)
    table = grain_table(labels)
    ints, n_cross, length = line_intercepts(skel, spacing=line_spacing)
    n_in = int((~table["touches_border"]).sum())
    n_border = int(table["touches_border"].sum())
    heyn = float(ints.mean()) if ints.size else float("nan")
    mean_l = length / n_cross if n_cross else float("nan")
    out = {
        "grain_count": len(table),
        "grain_count_inside": n_in,
        "grain_count_border": n_border,
        "mean_grain_area_px": float(table["area_px"].mean()) if len(table) else float("nan"),
        "mean_eq_diameter_px": float(table["eq_diameter_px"].mean()) if len(table) else float("nan"),
        "heyn_mean_px": heyn,
        "mean_intercept_px": float(mean_l),
        "n_intercepts": int(ints.size),
        "n_crossings": n_cross,
        "pixel_size_um": p,
        "grains_per_mm2": float("nan"),
        "grain_size_G_intercept": float("nan"),
        "grain_size_G_planimetric": float("nan"),
    }
    if p is not None:
        area_mm2 = b.size * (p * 1e-3) ** 2
        n_a = (n_in + 0.5 * n_border) / area_mm2
        out.update(
            grains_per_mm2=float(n_a),
            grain_size_G_intercept=astm_g_intercept(mean_l * p * 1e-3),
            grain_size_G_planimetric=astm_g_planimetric(n_a),
            heyn_mean_um=heyn * p,
            mean_intercept_um=float(mean_l) * p,
            mean_grain_area_um2=out["mean_grain_area_px"] * p * p,
            mean_eq_diameter_um=out["mean_eq_diameter_px"] * p,
        )
    return out


def boundary_f1(
    pred: np.ndarray, truth: np.ndarray, *, tolerance: float = 2.0, thin: bool = True
) -> dict:
    """Boundary precision, recall and F1 with a distance tolerance.

    A predicted boundary pixel is correct if a true boundary pixel lies within
    ``tolerance`` px (Euclidean), and a true pixel is found if a predicted one
    lies within ``tolerance``.  Both masks are thinned first (``thin=True``) so
    thick labels do not inflate the counts.

    Parameters
    ----------
    pred, truth : ndarray, shape (M, N)
        Boundary masks of the same shape.
    tolerance : float
        Matching distance (px).
    thin : bool
        Skeletonise both masks first.

    Returns
    -------
    dict
        ``precision``, ``recall``, ``f1`` (NaN when undefined: no pixels),
        ``n_pred``, ``n_true`` (pixels after thinning).
    """
    a, t = _as_bool_2d(pred, "pred"), _as_bool_2d(truth, "truth")
    if a.shape != t.shape:
        raise ValueError(f"pred and truth shapes differ: {a.shape} vs {t.shape}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if thin:
        a, t = skeletonize(a), skeletonize(t)
    n_pred, n_true = int(a.sum()), int(t.sum())
    d_to_true = ndimage.distance_transform_edt(~t) if n_true else np.full(a.shape, np.inf)
    d_to_pred = ndimage.distance_transform_edt(~a) if n_pred else np.full(a.shape, np.inf)
    precision = float((d_to_true[a] <= tolerance).mean()) if n_pred else float("nan")
    recall = float((d_to_pred[t] <= tolerance).mean()) if n_true else float("nan")
    if np.isfinite(precision) and np.isfinite(recall) and precision + recall > 0:
        f1 = 2 * precision * recall / (precision + recall)
    elif n_pred and n_true:
        f1 = 0.0
    else:
        f1 = float("nan")
    return {"precision": precision, "recall": recall, "f1": float(f1), "n_pred": n_pred, "n_true": n_true}
