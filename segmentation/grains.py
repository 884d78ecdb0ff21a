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

Uncertainty (ASTM E112 statistics over fields): a scan is cut into fields of
about ``field_px`` squared pixels; the Heyn mean and the mean lineal intercept
come with Student-t 95% intervals over those fields (:func:`ratio_ci`), E112's
%RA, and G with the interval of G at the bounds of ``l``
(:func:`intercept_statistics`).  :func:`scan_grain_values` gives the
``scans.parquet`` columns :data:`SCAN_GRAIN_COLUMNS`; :func:`pooled_grain_size`
pools a sample of scans.  Too few fields or intercepts, no boundaries or no
pixel size give NaN with the reason in ``grain_note``.  Predicted boundaries
can be cleaned of spurs and weak segments (:func:`prune_boundaries`,
:func:`grain_postprocess`).

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

from typing import TYPE_CHECKING
import logging

import numpy as np

if TYPE_CHECKING:  # annotations only (the module imports them where it uses them)
    import pandas as pd

__all__ = [
    "FIELD_COLUMNS",
    "GRAIN_COLUMNS",
    "RA_LIMIT_PCT",
    "SCAN_GRAIN_COLUMNS",
    "astm_g_intercept",
    "astm_g_planimetric",
    "boundary_f1",
    "boundary_skeleton",
    "clean_boundaries",
    "grain_labels",
    "grain_measures",
    "grain_postprocess",
    "grain_table",
    "intercept_statistics",
    "line_intercepts",
    "pooled_grain_size",
    "prune_boundaries",
    "ratio_ci",
    "scan_grain_values",
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
    from scipy import ndimage  # lazy
    from skimage.morphology import skeletonize  # lazy
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
    from scipy import ndimage  # lazy
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


def _skeleton_pieces(skel: np.ndarray) -> tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray]:
    """Cut a skeleton at its junctions: piece labels, count, and per piece flags.

    Returns ``(labels, n, has_end, at_junction, at_border)``; flags are indexed
    by label (entry 0 unused).  A junction pixel has 3 or more 8-neighbours on
    the skeleton, an end pixel at most one.
    """
    from scipy import ndimage  # lazy
    nb = ndimage.convolve(skel.astype(np.uint8), np.ones((3, 3), np.uint8), mode="constant") - 1
    nb = np.where(skel, nb, 0)
    junction = skel & (nb >= 3)
    lab, n = ndimage.label(skel & ~junction, structure=np.ones((3, 3), bool))
    has_end = np.zeros(n + 1, bool)
    has_end[lab[skel & (nb <= 1) & ~junction]] = True
    near_j = ndimage.binary_dilation(junction, np.ones((3, 3), bool))
    at_junction = np.zeros(n + 1, bool)
    at_junction[lab[near_j & (lab > 0)]] = True
    at_border = np.zeros(n + 1, bool)
    at_border[np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])] = True
    for flags in (has_end, at_junction, at_border):
        flags[0] = False
    return lab, n, has_end, at_junction, at_border


def prune_boundaries(
    boundaries: np.ndarray,
    prob: np.ndarray | None = None,
    *,
    spur_length_px: int = 0,
    min_length_px: int = 0,
    min_mean_prob: float = 0.0,
    max_iter: int = 10,
    keep_border: bool = True,
) -> np.ndarray:
    """Thin a boundary mask and remove the skeleton pieces that do not separate grains.

    The skeleton is cut at its junction pixels (3 or more 8-neighbours) into
    pieces.  A *spur* is a piece with a free end (a dangling branch: it closes
    no grain, yet adds test-line crossings and boundary pixels); an *isolated*
    piece has free ends and touches no junction.  Removed, repeatedly until
    nothing changes (a spur's removal can leave a new one):

    - spurs with fewer than ``spur_length_px`` pixels,
    - isolated pieces with fewer than ``min_length_px`` pixels,
    - any piece (spur or not) whose mean probability is below ``min_mean_prob``
      (a weak segment across a grain; needs ``prob``).

    Pieces touching the image border are kept when ``keep_border`` (they may
    close a grain against the border of the field).

    Parameters
    ----------
    boundaries : ndarray, shape (M, N)
        Boundary mask (see :func:`boundary_skeleton`); thinned first.
    prob : ndarray of float, shape (M, N), optional
        Boundary probabilities (for ``min_mean_prob``).
    spur_length_px, min_length_px : int
        Length limits (pixels of a piece); 0 = off.
    min_mean_prob : float
        In [0, 1); 0 = off.
    max_iter : int
        Upper bound on the pruning rounds.
    keep_border : bool
        Never remove pieces that touch the image border.

    Returns
    -------
    ndarray of bool, shape (M, N)
        1-px wide boundary lines.

    Examples
    --------
    >>> b = np.zeros((40, 40), bool)
    >>> b[20, :] = True          # a boundary across the field
    >>> b[10:20, 15] = True      # a 10-px spur hanging from it
    >>> int(prune_boundaries(b, spur_length_px=15).sum())
    40
    """
    from scipy import ndimage  # lazy
    if spur_length_px < 0 or min_length_px < 0 or max_iter < 0:
        raise ValueError("spur_length_px, min_length_px and max_iter must be >= 0")
    if not 0.0 <= float(min_mean_prob) < 1.0:
        raise ValueError(f"min_mean_prob must be in [0, 1), got {min_mean_prob}")
    skel = boundary_skeleton(boundaries)
    if prob is not None:
        prob = np.asarray(prob, np.float64)
        if prob.shape != skel.shape:
            raise ValueError(f"prob has shape {prob.shape}, boundaries {skel.shape}")
    elif min_mean_prob > 0:
        raise ValueError("min_mean_prob needs the probabilities (prob)")
    for _ in range(int(max_iter)):
        if not skel.any():
            break
        lab, n, has_end, at_junction, at_border = _skeleton_pieces(skel)
        if n == 0:
            break
        length = np.bincount(lab.ravel(), minlength=n + 1)
        drop = np.zeros(n + 1, bool)
        if spur_length_px > 0:
            drop |= has_end & (length < spur_length_px)
        if min_length_px > 0:
            drop |= has_end & ~at_junction & (length < min_length_px)
        if min_mean_prob > 0:
            mean_p = ndimage.mean(prob, lab, np.arange(n + 1))
            drop |= np.asarray(mean_p) < min_mean_prob
        if keep_border:
            drop &= ~at_border
        drop[0] = False
        if not drop.any():
            break
        skel = skel & ~drop[lab]
        # re-thin: junction pixels left behind by a removed branch become part of a line
        skel = boundary_skeleton(skel)
    return skel


def grain_postprocess(
    prob: np.ndarray,
    threshold: float,
    *,
    thin: bool = True,
    high_threshold: float | None = None,
    min_length_px: int = 0,
    spur_length_px: int = 0,
    min_mean_prob: float = 0.0,
) -> np.ndarray:
    """Boundary probabilities to boundary lines: the shipped grain post-processing chain.

    ``prob >= threshold`` (or hysteresis: pixels above ``threshold`` connected
    to a pixel above ``high_threshold``), thinned, short isolated pieces
    dropped (:func:`clean_boundaries`), then spurs and weak segments removed
    (:func:`prune_boundaries`) when asked.

    Parameters
    ----------
    prob : ndarray of float, shape (M, N)
    threshold : float
        In (0, 1).
    thin : bool
        False: return the thresholded mask as is.
    high_threshold : float, optional
        Hysteresis upper level (> ``threshold``); None = one level.
    min_length_px, spur_length_px, min_mean_prob
        See :func:`clean_boundaries` and :func:`prune_boundaries`.

    Returns
    -------
    ndarray of bool, shape (M, N)
    """
    p = np.asarray(prob)
    if p.ndim != 2:
        raise ValueError(f"prob must be 2-D, got shape {p.shape}")
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if high_threshold is None:
        mask = p >= threshold
    else:
        if not float(threshold) < float(high_threshold) < 1.0:
            raise ValueError(f"high_threshold must be in (threshold, 1), got {high_threshold}")
        from skimage.filters import apply_hysteresis_threshold

        mask = apply_hysteresis_threshold(p, float(threshold), float(high_threshold))
    if not thin:
        return mask
    skel = clean_boundaries(mask, min_length_px=int(min_length_px))
    if spur_length_px or min_mean_prob:
        skel = prune_boundaries(skel, p, spur_length_px=int(spur_length_px), min_mean_prob=float(min_mean_prob))
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
    from scipy import ndimage  # lazy
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
    import pandas as pd  # lazy
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


def _test_line_events(b: np.ndarray, spacing: int, directions: str) -> dict:
    """Crossings and complete intercepts of the test-line grid, with their positions.

    Returns arrays (one entry per crossing / intercept, all directions):
    ``cross_row, cross_col``, ``int_len, int_row, int_col`` (the intercept's
    midpoint), and per direction the test-line coordinates ``lines_h`` (rows)
    and ``lines_v`` (columns).
    """
    cr, cc, il, ir, ic = [], [], [], [], []
    out: dict = {"lines_h": np.zeros(0, np.int64), "lines_v": np.zeros(0, np.int64)}
    for d in dict.fromkeys(directions):
        img = b if d == "h" else b.T
        coords = np.arange(spacing // 2, img.shape[0], spacing)
        out[f"lines_{d}"] = coords
        if coords.size == 0:
            continue
        lines = img[coords]
        k = lines.shape[0]
        pad = np.zeros((k, 1), np.int8)
        edges = np.diff(np.concatenate([pad, lines.astype(np.int8), pad], axis=1), axis=1)
        sr, sc = np.nonzero(edges == 1)  # run starts (row-major order: sorted by line, then position)
        _, ec = np.nonzero(edges == -1)  # run ends (exclusive), same order
        centres = 0.5 * (sc + ec - 1)
        same = sr[1:] == sr[:-1]
        lengths = np.diff(centres)[same]
        mids = (0.5 * (centres[1:] + centres[:-1]))[same]
        across = coords[sr].astype(np.float64)  # the line's own coordinate
        pos = (across, centres) if d == "h" else (centres, across)  # (row, col) of the crossings
        mid = (across[1:][same], mids) if d == "h" else (mids, across[1:][same])
        cr.append(pos[0])
        cc.append(pos[1])
        ir.append(mid[0])
        ic.append(mid[1])
        il.append(lengths)

    def cat(parts):
        return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)

    out.update(cross_row=cat(cr), cross_col=cat(cc), int_len=cat(il), int_row=cat(ir), int_col=cat(ic))
    return out


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
    _check_lines(spacing, directions)
    ev = _test_line_events(b, spacing, directions)
    length = float(ev["lines_h"].size * b.shape[1] + ev["lines_v"].size * b.shape[0])
    return ev["int_len"], int(ev["cross_row"].size), length


def _check_lines(spacing: int, directions: str) -> None:
    if spacing < 1:
        raise ValueError(f"spacing must be >= 1, got {spacing}")
    if not directions or set(directions) - {"h", "v"}:
        raise ValueError(f"directions must be made of 'h' and 'v', got {directions!r}")


def astm_g_intercept(mean_intercept_mm: float) -> float:
    """ASTM E112 grain size number from the mean lineal intercept (mm); NaN if not positive."""
    l = float(mean_intercept_mm)
    return float(-6.643856 * np.log10(l) - 3.288) if np.isfinite(l) and l > 0 else float("nan")


def astm_g_planimetric(grains_per_mm2: float) -> float:
    """ASTM E112 grain size number from the number of grains per mm^2; NaN if not positive."""
    n = float(grains_per_mm2)
    return float(3.321928 * np.log10(n) - 2.954) if np.isfinite(n) and n > 0 else float("nan")


#: Columns of the per-field table of :func:`grain_measures` (``measures["fields"]``).
FIELD_COLUMNS: tuple[str, ...] = (
    "field_row",
    "field_col",
    "row0",
    "row1",
    "col0",
    "col1",
    "n_intercepts",
    "intercept_sum_px",
    "n_crossings",
    "line_length_px",
    "pixel_size_um",
)

#: The per-scan grain columns of ``scans.parquet`` (:func:`scan_grain_values` gives exactly these).
SCAN_GRAIN_COLUMNS: tuple[str, ...] = (
    "grain_count",
    "grain_fields",
    "n_intercepts",
    "n_crossings",
    "heyn_mean_px",
    "heyn_ci95_low_px",
    "heyn_ci95_high_px",
    "heyn_mean_um",
    "heyn_ci95_low_um",
    "heyn_ci95_high_um",
    "heyn_ra_pct",
    "mean_intercept_px",
    "mean_intercept_um",
    "grain_size_G",
    "grain_size_G_ci95_low",
    "grain_size_G_ci95_high",
    "grain_size_G_planimetric",
    "grain_note",
)

#: E112's customary limit on the percent relative accuracy (a larger %RA: measure more fields).
RA_LIMIT_PCT = 10.0


def ratio_ci(
    num: np.ndarray, den: np.ndarray, *, confidence: float = 0.95
) -> tuple[float, float, float]:
    """Ratio of sums over sampling units and its Student-t confidence interval.

    ``R = sum(num) / sum(den)`` over ``n`` units (fields), with the variance of
    a ratio estimator in cluster sampling,
    ``var(R) = sum((num_i - R den_i)^2) / (n (n - 1) mean(den)^2)``, and the
    half-width ``t_{(1 + confidence) / 2, n - 1} sqrt(var(R))``.  With the same
    ``den`` in every unit this is ASTM E112's ``t s / sqrt(n)`` over the field
    means.

    Returns
    -------
    ratio, half_width, t : float
        NaN where undefined (``sum(den) == 0``; ``n < 2`` for the interval).
    """
    from scipy import stats

    a, w = np.asarray(num, np.float64).ravel(), np.asarray(den, np.float64).ravel()
    if a.shape != w.shape:
        raise ValueError(f"num and den differ in length: {a.size} vs {w.size}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n, tot = a.size, float(w.sum())
    if n == 0 or tot <= 0:
        return float("nan"), float("nan"), float("nan")
    r = float(a.sum()) / tot
    if n < 2:
        return r, float("nan"), float("nan")
    t = float(stats.t.ppf(0.5 + confidence / 2, n - 1))
    var = float(np.sum((a - r * w) ** 2)) / (n * (n - 1) * (tot / n) ** 2)
    return r, t * float(np.sqrt(var)), t


def _field_edges(size: int, field_px: int) -> np.ndarray:
    n = max(1, int(round(size / field_px)))
    return np.rint(np.linspace(0, size, n + 1)).astype(np.int64)


def _in_bins(pos: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(edges, pos, side="right") - 1, 0, edges.size - 2)


def _field_table(ev: dict, shape: tuple[int, int], field_px: int, pixel_size_um: float | None) -> pd.DataFrame:
    import pandas as pd  # lazy
    er, ec = _field_edges(shape[0], field_px), _field_edges(shape[1], field_px)
    nr, nc = er.size - 1, ec.size - 1
    k = nr * nc

    def count(rows, cols, weights=None):
        idx = _in_bins(rows, er) * nc + _in_bins(cols, ec)
        return np.bincount(idx, weights=weights, minlength=k)

    fr, fc = np.divmod(np.arange(k), nc)
    h_per = np.bincount(_in_bins(ev["lines_h"], er), minlength=nr) if ev["lines_h"].size else np.zeros(nr)
    v_per = np.bincount(_in_bins(ev["lines_v"], ec), minlength=nc) if ev["lines_v"].size else np.zeros(nc)
    length = h_per[fr] * np.diff(ec)[fc] + v_per[fc] * np.diff(er)[fr]
    return pd.DataFrame({
        "field_row": fr.astype(np.int64),
        "field_col": fc.astype(np.int64),
        "row0": er[fr], "row1": er[fr + 1], "col0": ec[fc], "col1": ec[fc + 1],
        "n_intercepts": count(ev["int_row"], ev["int_col"]).astype(np.int64),
        "intercept_sum_px": count(ev["int_row"], ev["int_col"], ev["int_len"]).astype(np.float64),
        "n_crossings": count(ev["cross_row"], ev["cross_col"]).astype(np.int64),
        "line_length_px": length.astype(np.float64),
        "pixel_size_um": np.full(k, np.nan if pixel_size_um is None else pixel_size_um),
    })


def intercept_statistics(
    fields: pd.DataFrame,
    *,
    confidence: float = 0.95,
    min_fields: int = 3,
    min_intercepts: int = 30,
) -> dict:
    """Heyn mean, ASTM mean lineal intercept and G with confidence intervals from field counts.

    Parameters
    ----------
    fields : DataFrame
        One row per field with :data:`FIELD_COLUMNS` (``n_intercepts,
        intercept_sum_px, n_crossings, line_length_px``; ``pixel_size_um`` may
        differ between rows, e.g. fields of several scans; NaN = uncalibrated).
    confidence : float
        Two-sided level of the intervals (0.95 in the column names).
    min_fields, min_intercepts : int
        Fewer fields, or fewer complete intercepts in all, give NaN intervals
        (with the reason in ``grain_note``) rather than a meaningless one.

    Returns
    -------
    dict
        ``grain_fields, n_intercepts, n_crossings``; ``heyn_mean_px`` (mean length
        of the complete intercepts) with ``heyn_ci95_low_px, heyn_ci95_high_px``
        and ``heyn_ra_pct`` (E112 %RA: 100 x half-width / mean);
        ``mean_intercept_px`` (ASTM ``l``: test-line length / crossings) with
        ``mean_intercept_ci95_low_px, mean_intercept_ci95_high_px,
        intercept_ra_pct``; the ``_um`` twins when every field is calibrated;
        ``grain_size_G`` (E112 intercept G from ``l``) with
        ``grain_size_G_ci95_low, grain_size_G_ci95_high`` (G of the upper and
        lower bound of ``l``); ``grain_note`` (why a value is NaN, or a warning;
        "" if none).
    """
    missing = {"n_intercepts", "intercept_sum_px", "n_crossings", "line_length_px"} - set(fields.columns)
    if missing:
        raise ValueError(f"fields table lacks columns {sorted(missing)}")
    if min_fields < 2 or min_intercepts < 1:
        raise ValueError("min_fields must be >= 2 and min_intercepts >= 1")
    nan = float("nan")
    f = fields
    n_int, n_cross = int(f["n_intercepts"].sum()), int(f["n_crossings"].sum())
    p = np.asarray(f["pixel_size_um"], np.float64) if "pixel_size_um" in f else np.full(len(f), nan)
    calibrated = len(f) > 0 and bool(np.all(np.isfinite(p) & (p > 0)))
    notes: list[str] = []
    out = {"grain_fields": int(len(f)), "n_intercepts": n_int, "n_crossings": n_cross}
    keys = ["heyn_mean", "heyn_ci95_low", "heyn_ci95_high", "mean_intercept",
            "mean_intercept_ci95_low", "mean_intercept_ci95_high"]
    out.update({f"{k}_{u}": nan for k in keys for u in ("px", "um")})
    out.update(heyn_ra_pct=nan, intercept_ra_pct=nan, grain_size_G=nan,
               grain_size_G_ci95_low=nan, grain_size_G_ci95_high=nan)
    if n_cross == 0:
        out["grain_note"] = "no boundary crosses a test line: no grain size"
        return out
    if n_int == 0:
        notes.append("no complete intercept (fewer than 2 crossings on every test line): no Heyn mean")
    units = [("px", np.ones(len(f)))] + ([("um", p)] if calibrated else [])
    enough = True
    n_with = int((f["n_crossings"] > 0).sum())
    if n_with < min_fields:
        notes.append(f"no interval: {n_with} field(s) with boundaries, needs >= {min_fields}")
        enough = False
    elif n_int < min_intercepts:
        notes.append(f"no interval: {n_int} intercepts, needs >= {min_intercepts}")
        enough = False
    for u, scale in units:
        h, hw, _ = ratio_ci(f["intercept_sum_px"] * scale, f["n_intercepts"], confidence=confidence)
        l, lw, _ = ratio_ci(f["line_length_px"] * scale, f["n_crossings"], confidence=confidence)
        out[f"heyn_mean_{u}"], out[f"mean_intercept_{u}"] = h, l
        if enough:
            out.update({f"heyn_ci95_low_{u}": h - hw, f"heyn_ci95_high_{u}": h + hw,
                        f"mean_intercept_ci95_low_{u}": l - lw, f"mean_intercept_ci95_high_{u}": l + lw})
            out["heyn_ra_pct"] = 100.0 * hw / h if h > 0 else nan
            out["intercept_ra_pct"] = 100.0 * lw / l if l > 0 else nan
    if enough and np.isfinite(out["heyn_ra_pct"]) and out["heyn_ra_pct"] > RA_LIMIT_PCT:
        notes.append(f"%RA {out['heyn_ra_pct']:.0f}% > {RA_LIMIT_PCT:g}% (E112: measure more fields)")
    if calibrated:
        out["grain_size_G"] = astm_g_intercept(out["mean_intercept_um"] * 1e-3)
        if enough:
            lo, hi = out["mean_intercept_ci95_low_um"], out["mean_intercept_ci95_high_um"]
            out["grain_size_G_ci95_low"] = astm_g_intercept(hi * 1e-3)
            out["grain_size_G_ci95_high"] = astm_g_intercept(lo * 1e-3) if lo > 0 else nan
            if not lo > 0:
                notes.append("upper G bound undefined (interval of l reaches 0)")
    else:
        notes.append("G needs the pixel size")
    out["grain_note"] = "; ".join(notes)
    return out


def grain_measures(
    boundaries: np.ndarray,
    *,
    pixel_size_um: float | None = None,
    line_spacing: int = 10,
    thin: bool = True,
    close_radius: int = 0,
    min_grain_area_px: int = 1,
    field_px: int = 256,
    confidence: float = 0.95,
    min_fields: int = 3,
    min_intercepts: int = 30,
) -> dict:
    """Grain count, Heyn intercept and ASTM E112 grain size numbers of a boundary mask, with intervals.

    A *field* (the sampling unit of ASTM E112's statistics inside one scan)
    is one block of a grid that cuts the scan into near-square blocks of
    about ``field_px`` x ``field_px`` pixels (``round(M / field_px)`` rows of
    blocks, at least one).  The test lines (horizontal and vertical, every
    ``line_spacing`` px) are shared by all fields; a crossing belongs to the
    field it lies in, a complete intercept to the field of its midpoint.  The
    means are ratios of sums over all fields (so ``heyn_mean_px`` is the mean
    of all complete intercepts of the scan) and their 95% intervals come from
    the spread between fields (:func:`ratio_ci`, Student t with ``n - 1``
    degrees of freedom).

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
    field_px : int
        Side of a field (px).
    confidence, min_fields, min_intercepts
        See :func:`intercept_statistics`.

    Returns
    -------
    dict
        ``grain_count`` (all labelled grains), ``grain_count_inside``,
        ``grain_count_border``, ``mean_grain_area_px``, ``mean_eq_diameter_px``,
        ``grains_per_mm2``, ``grain_size_G_planimetric``, ``pixel_size_um``,
        ``grain_size_G_intercept`` (= ``grain_size_G``), everything of
        :func:`intercept_statistics` (``heyn_mean_px`` with its interval and
        %RA, ``mean_intercept_px`` (the ASTM ``l``), ``n_intercepts``,
        ``n_crossings``, ``grain_size_G`` with its interval, ``grain_note``),
        ``fields`` (DataFrame, :data:`FIELD_COLUMNS`) and, when calibrated,
        ``mean_grain_area_um2``, ``mean_eq_diameter_um``.

    Examples
    --------
    >>> grid = np.zeros((512, 512), bool)
    >>> grid[::16, :] = True
    >>> grid[:, ::16] = True
    >>> m = grain_measures(grid, pixel_size_um=1.0)
    >>> m["grain_fields"], round(m["heyn_mean_px"], 6), round(m["heyn_ci95_low_px"], 6)
    (4, 16.0, 16.0)
    """
    b = _as_bool_2d(boundaries)
    p = _check_pixel_size(pixel_size_um)
    _check_lines(line_spacing, "hv")
    if int(field_px) < 1:
        raise ValueError(f"field_px must be >= 1, got {field_px}")
    skel = boundary_skeleton(b, close_radius=close_radius) if thin else b
    labels = grain_labels(skel, thin=False, min_area_px=min_grain_area_px)
    table = grain_table(labels)
    ev = _test_line_events(skel, line_spacing, "hv")
    fields = _field_table(ev, b.shape, int(field_px), p)
    stats_ = intercept_statistics(fields, confidence=confidence, min_fields=min_fields,
                                  min_intercepts=min_intercepts)
    n_in = int((~table["touches_border"]).sum())
    n_border = int(table["touches_border"].sum())
    out = {
        "grain_count": len(table),
        "grain_count_inside": n_in,
        "grain_count_border": n_border,
        "mean_grain_area_px": float(table["area_px"].mean()) if len(table) else float("nan"),
        "mean_eq_diameter_px": float(table["eq_diameter_px"].mean()) if len(table) else float("nan"),
        "pixel_size_um": p,
        "grains_per_mm2": float("nan"),
        "grain_size_G_planimetric": float("nan"),
        **stats_,
        "fields": fields,
    }
    if not skel.any():
        out["grain_note"] = "no grain boundaries found"
    out["grain_size_G_intercept"] = out["grain_size_G"]
    if p is not None:
        area_mm2 = b.size * (p * 1e-3) ** 2
        n_a = (n_in + 0.5 * n_border) / area_mm2
        out.update(
            grains_per_mm2=float(n_a),
            grain_size_G_planimetric=astm_g_planimetric(n_a) if skel.any() else float("nan"),
            mean_grain_area_um2=out["mean_grain_area_px"] * p * p,
            mean_eq_diameter_um=out["mean_eq_diameter_px"] * p,
        )
    return out


def scan_grain_values(measures: dict) -> dict:
    """The :data:`SCAN_GRAIN_COLUMNS` of one scan from :func:`grain_measures` (NaN / "" where unknown)."""
    out = {}
    for k in SCAN_GRAIN_COLUMNS:
        v = measures.get(k)
        if k == "grain_note":
            out[k] = "" if v is None else str(v)
        elif k in ("grain_count", "grain_fields", "n_intercepts", "n_crossings"):
            out[k] = int(v) if v is not None else 0
        else:
            out[k] = float("nan") if v is None else float(v)
    return out


def pooled_grain_size(
    per_scan: pd.DataFrame,
    *,
    fields: pd.DataFrame | None = None,
    confidence: float = 0.95,
    min_fields: int = 3,
    min_intercepts: int = 30,
) -> dict:
    """Pooled Heyn mean, mean lineal intercept and G (with intervals) of a sample of scans.

    Parameters
    ----------
    per_scan : DataFrame
        One row per scan of the sample with the :data:`SCAN_GRAIN_COLUMNS`
        (at least ``n_intercepts, n_crossings, heyn_mean_px,
        mean_intercept_px``; ``heyn_mean_um`` / ``mean_intercept_um`` for the
        calibrated values).  Rows with no crossings are left out.
    fields : DataFrame, optional
        The per-field tables of those scans (``measures["fields"]``, stacked).
        Given, the sample is pooled over all their fields (E112: the fields of
        all the scans are the fields of the specimen); without, every scan is
        one field (a micrograph is one E112 field of view), which also carries
        the scan-to-scan spread.

    Returns
    -------
    dict
        As :func:`intercept_statistics`, plus ``n_scans`` and ``pooled_over``
        (``"fields"`` or ``"scans"``).
    """
    import pandas as pd  # lazy
    if fields is not None:
        out = intercept_statistics(fields, confidence=confidence, min_fields=min_fields,
                                   min_intercepts=min_intercepts)
        return {**out, "n_scans": int(len(per_scan)), "pooled_over": "fields"}
    need = {"n_intercepts", "n_crossings", "heyn_mean_px", "mean_intercept_px"}
    missing = need - set(per_scan.columns)
    if missing:
        raise ValueError(f"per_scan lacks columns {sorted(missing)}")
    d = per_scan[per_scan["n_crossings"] > 0]
    n_int = np.asarray(d["n_intercepts"], np.float64)
    n_cross = np.asarray(d["n_crossings"], np.float64)
    heyn = np.nan_to_num(np.asarray(d["heyn_mean_px"], np.float64))
    l_px = np.asarray(d["mean_intercept_px"], np.float64)
    l_um = np.asarray(d["mean_intercept_um"], np.float64) if "mean_intercept_um" in d else np.full(len(d), np.nan)
    # each scan one field: the sums that its means are ratios of; um through the ratio um / px
    scale = np.where(np.isfinite(l_um) & (l_px > 0), l_um / np.where(l_px > 0, l_px, 1), np.nan)
    units = pd.DataFrame({
        "n_intercepts": n_int.astype(np.int64),
        "intercept_sum_px": heyn * n_int,
        "n_crossings": n_cross.astype(np.int64),
        "line_length_px": l_px * n_cross,
        "pixel_size_um": scale,
    })
    out = intercept_statistics(units, confidence=confidence, min_fields=min_fields,
                               min_intercepts=min_intercepts)
    return {**out, "n_scans": int(len(d)), "pooled_over": "scans"}


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
    from scipy import ndimage  # lazy
    from skimage.morphology import skeletonize  # lazy
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
