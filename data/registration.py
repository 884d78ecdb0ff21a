"""Register manual impurity labels to their scan (an affine fit of local shifts).

The MLography impurity labels were drawn on slightly larger canvases and
shifted to line up with each scan.  Measured on the development scans, the
residual misregistration is not one shift but varies across the scan (up to
3-5 px from one corner to the other: a small scale, shear or rotation), so
that small labelled impurities often sit beside their dark spot.

:func:`register_labels` estimates the local shift that best lays the labels
on the dark spots in a grid of blocks, fits one affine map to those shifts
(weighted least squares, one round of outlier rejection) and warps the label
mask with it.  It uses only the scan and its labels, never a model's
prediction, so every segmentation method is scored against the same
registered labels.

Example
-------
>>> import numpy as np
>>> img = np.full((120, 160), 200, np.uint8)
>>> rr, cc = np.mgrid[10:110:20, 10:150:20].reshape(2, -1)
>>> for r, c in zip(rr, cc):
...     img[r : r + 4, c : c + 4] = 40
>>> labels = np.zeros(img.shape, bool)
>>> for r, c in zip(rr, cc):
...     labels[r + 2 : r + 6, c - 1 : c + 3] = True      # labels 2 px low, 1 px left
>>> fit = register_labels(img, labels, grid=(2, 2), min_label_px=20)
>>> np.round(fit.shift_at(60, 80), 1).tolist()            # (row, col) shift applied to the labels
[-2.0, 1.0]
>>> bool((fit.mask & (img < 100)).sum() > (labels & (img < 100)).sum())
True
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy import ndimage

__all__ = [
    "LabelRegistration",
    "darkness",
    "label_contrast",
    "label_median",
    "label_minimum",
    "local_label_shifts",
    "object_rings",
    "register_labels",
    "ring_contrast",
]


@dataclass(frozen=True)
class LabelRegistration:
    """The result of :func:`register_labels`.

    Attributes
    ----------
    mask : ndarray of bool, shape (M, N)
        The registered labels.
    matrix : ndarray, shape (2, 3)
        Shift field ``[d_row, d_col] = matrix @ [row, col, 1]`` applied to the
        labels (label pixel ``p`` moves to ``p + shift(p)``).
    block_centres, block_shifts : ndarray, shape (K, 2)
        The blocks used in the fit and their measured shifts (row, col).
    inliers : ndarray of bool, shape (K,)
    darkness_before, darkness_after : float
        Mean darkness (:func:`darkness`) under the labels before and after.
    """

    mask: np.ndarray = field(repr=False)
    matrix: np.ndarray
    block_centres: np.ndarray = field(repr=False)
    block_shifts: np.ndarray = field(repr=False)
    inliers: np.ndarray = field(repr=False)
    darkness_before: float
    darkness_after: float

    def shift_at(self, row: float, col: float) -> np.ndarray:
        """The (row, col) shift the fit applies to a label pixel at (row, col)."""
        return self.matrix @ np.array([row, col, 1.0])

    @property
    def max_shift_px(self) -> float:
        """Largest shift length at the four corners of the scan."""
        h, w = self.mask.shape
        corners = [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)]
        return float(max(np.hypot(*self.shift_at(r, c)) for r, c in corners))


def darkness(image: np.ndarray, *, radius: int = 7) -> np.ndarray:
    """How much darker each pixel is than its local matrix: grey closing minus the image.

    Parameters
    ----------
    image : ndarray, shape (M, N)
        Gray scan (any real dtype), dark impurities on a brighter matrix.
    radius : int
        Half-size of the square structuring element of the closing.

    Returns
    -------
    ndarray of float32, shape (M, N), >= 0
    """
    a = np.asarray(image, np.float32)
    if a.ndim != 2:
        raise ValueError(f"image must be 2-D (M, N), got shape {a.shape}")
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    return cv2.morphologyEx(a, cv2.MORPH_CLOSE, kernel) - a


def _shift(mask: np.ndarray, dr: int, dc: int) -> np.ndarray:
    """``mask`` moved by (dr, dc) pixels, zero-filled (no wrap-around)."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    src = mask[max(0, -dr) : h - max(0, dr), max(0, -dc) : w - max(0, dc)]
    out[max(0, dr) : max(0, dr) + src.shape[0], max(0, dc) : max(0, dc) + src.shape[1]] = src
    return out


def _subpixel(values: np.ndarray, i: int) -> float:
    """Parabola vertex around index ``i`` of a 1-D profile (0 at the ends)."""
    if i <= 0 or i >= len(values) - 1:
        return 0.0
    a, b, c = values[i - 1], values[i], values[i + 1]
    den = a - 2 * b + c
    return float(np.clip(0.5 * (a - c) / den, -0.5, 0.5)) if den < 0 else 0.0


def local_label_shifts(
    image: np.ndarray,
    labels: np.ndarray,
    *,
    grid: tuple[int, int] = (4, 6),
    max_shift: int = 6,
    min_label_px: int = 150,
    radius: int = 7,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per block of a grid, the shift of the labels that lays them on the darkest pixels.

    Returns
    -------
    centres : ndarray, shape (K, 2)
        Block centres (row, col) of the blocks with at least ``min_label_px``
        labelled pixels and a peak inside the search window.
    shifts : ndarray, shape (K, 2)
        Sub-pixel (row, col) shift of the labels in each of those blocks.
    weights : ndarray, shape (K,)
        Labelled pixels per block.
    """
    img, lab = _checked(image, labels, grid, max_shift)
    return _block_shifts(darkness(img, radius=radius), lab, grid=grid, max_shift=max_shift,
                         min_label_px=min_label_px)


def _checked(image, labels, grid, max_shift) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(image)
    lab = np.asarray(labels, bool)
    if img.shape != lab.shape or img.ndim != 2:
        raise ValueError(f"image and labels must be 2-D of one shape, got {img.shape}, {lab.shape}")
    if min(int(g) for g in grid) < 1 or max_shift < 1:
        raise ValueError(f"grid must be >= (1, 1) and max_shift >= 1, got {grid}, {max_shift}")
    return img, lab


def _block_shifts(
    d: np.ndarray, lab: np.ndarray, *, grid: tuple[int, int], max_shift: int, min_label_px: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`local_label_shifts` on a precomputed darkness image ``d``."""
    gr, gc = (int(g) for g in grid)
    h, w = lab.shape
    r_edges = np.linspace(0, h, gr + 1).astype(int)
    c_edges = np.linspace(0, w, gc + 1).astype(int)

    def block_sums(a: np.ndarray) -> np.ndarray:
        return np.add.reduceat(np.add.reduceat(a, r_edges[:-1], axis=0), c_edges[:-1], axis=1)

    n = 2 * max_shift + 1
    score = np.zeros((gr, gc, n, n), np.float64)
    count = block_sums(lab.astype(np.float64))  # labels per block where they end up (~ unshifted)
    for i, dr in enumerate(range(-max_shift, max_shift + 1)):
        for j, dc in enumerate(range(-max_shift, max_shift + 1)):
            s = _shift(lab, dr, dc)
            score[:, :, i, j] = block_sums(np.where(s, d, 0.0)) / np.maximum(block_sums(s.astype(np.float64)), 1)
    centres, shifts, weights = [], [], []
    for bi in range(gr):
        for bj in range(gc):
            if count[bi, bj] < min_label_px:
                continue
            sc = score[bi, bj]
            i, j = np.unravel_index(int(np.argmax(sc)), sc.shape)
            if i in (0, n - 1) or j in (0, n - 1):  # no peak inside the window
                continue
            centres.append(((r_edges[bi] + r_edges[bi + 1] - 1) / 2, (c_edges[bj] + c_edges[bj + 1] - 1) / 2))
            shifts.append((i - max_shift + _subpixel(sc[:, j], i), j - max_shift + _subpixel(sc[i, :], j)))
            weights.append(count[bi, bj])
    return (np.asarray(centres, float).reshape(-1, 2), np.asarray(shifts, float).reshape(-1, 2),
            np.asarray(weights, float))


def _fit_affine(centres: np.ndarray, shifts: np.ndarray, weights: np.ndarray, degree: int) -> np.ndarray:
    """Weighted least squares of the shift field: degree 1 = affine, 0 = one constant shift."""
    design = np.column_stack([centres, np.ones(len(centres))]) if degree else np.ones((len(centres), 1))
    sw = np.sqrt(weights)[:, None]
    coef, *_ = np.linalg.lstsq(design * sw, shifts * sw, rcond=None)
    matrix = np.zeros((2, 3))
    if degree:
        matrix[:, :] = coef.T
    else:
        matrix[:, 2] = coef[0]
    return matrix


def register_labels(
    image: np.ndarray,
    labels: np.ndarray,
    *,
    grid: tuple[int, int] = (4, 6),
    max_shift: int = 6,
    min_label_px: int = 150,
    outlier_px: float = 1.5,
    radius: int = 7,
) -> LabelRegistration:
    """Warp a label mask onto the dark spots of its scan with one fitted affine map.

    Parameters
    ----------
    image : ndarray, shape (M, N)
        The gray scan the labels belong to (dark impurities).
    labels : ndarray of bool, shape (M, N)
    grid : (int, int)
        Blocks (rows, cols) in which a local shift is measured.
    max_shift : int
        Search window of the local shifts, +- px.
    min_label_px : int
        Blocks with fewer labelled pixels are not used.
    outlier_px : float
        Blocks whose shift is further than this from the first fit are dropped
        before the final fit.
    radius : int
        Structuring element half-size of :func:`darkness`.

    Returns
    -------
    LabelRegistration
        With fewer than 3 usable blocks one constant shift is fitted; with none
        the labels are returned unchanged (identity matrix of shifts = 0).
    """
    img, lab = _checked(image, labels, grid, max_shift)
    d = darkness(img, radius=radius)  # once: the block shifts and the before / after levels
    centres, shifts, weights = _block_shifts(d, lab, grid=grid, max_shift=max_shift,
                                             min_label_px=min_label_px)
    before = float(d[lab].mean()) if lab.any() else float("nan")
    if len(centres) == 0:
        return LabelRegistration(lab.copy(), np.zeros((2, 3)), centres, shifts, np.zeros(0, bool), before, before)
    degree = 1 if len(centres) >= 3 else 0
    matrix = _fit_affine(centres, shifts, weights, degree)
    design = np.column_stack([centres, np.ones(len(centres))])
    resid = np.hypot(*(shifts - design @ matrix.T).T)
    inliers = resid <= outlier_px
    if inliers.sum() >= (3 if degree else 1) and not inliers.all():
        matrix = _fit_affine(centres[inliers], shifts[inliers], weights[inliers], degree)
    # label pixel p (row, col) moves to q = p + L p + t; cv2 wants, per output pixel q (x=col, y=row),
    # the source p = (I + L)^-1 (q - t)
    lin = np.eye(2) + matrix[:, :2]
    inv = np.linalg.inv(lin)
    src_of_q = np.hstack([inv, -inv @ matrix[:, 2:]])  # (row, col) coordinates
    perm = np.array([[0, 1], [1, 0]])  # (row, col) <-> (x, y)
    m_xy = np.hstack([perm @ src_of_q[:, :2] @ perm, perm @ src_of_q[:, 2:]])
    h, w = lab.shape
    # nearest neighbour: every labelled object keeps its pixel count (a linear warp rounds away
    # 1-2 px labels)
    warped = cv2.warpAffine(
        lab.astype(np.uint8), m_xy, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )
    mask = warped > 0
    after = float(d[mask].mean()) if mask.any() else float("nan")
    return LabelRegistration(mask, matrix, centres, shifts, inliers, before, after)


def label_contrast(
    image: np.ndarray,
    labels: np.ndarray,
    *,
    radius: int = 7,
    margin: int = 7,
    percentile: float = 99.0,
) -> tuple[np.ndarray, np.ndarray]:
    """How dark each labelled object is, and how dark the matrix's own texture gets at its size.

    Parameters
    ----------
    image : ndarray, shape (M, N)
    labels : ndarray of bool, shape (M, N)
        Labels (registered ones are best: a 3 px offset hides a small object's contrast).
    radius : int
        Structuring element of :func:`darkness`.
    margin : int
        The matrix reference is taken at least this far from any label.
    percentile : float
        Percentile of the matrix reference (see below).

    Returns
    -------
    contrast : ndarray, shape (K,)
        Mean darkness of each 8-connected labelled object (label order of
        ``scipy.ndimage.label`` with 8-connectivity).
    matrix_level : ndarray, shape (K,)
        For each object, the ``percentile`` of the mean darkness of square
        windows of impurity-free matrix with about the object's area (side
        ``round(sqrt(area))``, 1 to 15 px): an object below it is no darker
        than the texture of matrix without impurities at that size.
    """
    lab = np.asarray(labels, bool)
    if np.asarray(image).shape != lab.shape:
        raise ValueError(f"image and labels must be of one shape, got {np.shape(image)}, {lab.shape}")
    d = darkness(image, radius=radius)
    lt, n = ndimage.label(lab, np.ones((3, 3), bool))
    contrast = np.asarray(ndimage.mean(d, lt, np.arange(1, n + 1)), float).reshape(-1)
    side = np.clip(np.rint(np.sqrt(np.bincount(lt.ravel(), minlength=n + 1)[1:])), 1, 15).astype(int)
    near = cv2.dilate(lab.astype(np.uint8), np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)) > 0
    level = np.full(n, np.nan)
    if (~near).any():
        for k in np.unique(side):
            windows = cv2.blur(d, (int(k), int(k)))[~near]
            level[side == k] = np.percentile(windows, percentile)
    return contrast, level


def object_rings(labels: np.ndarray, *, gap: int = 2, width: int = 3) -> np.ndarray:
    """The ring of matrix around every labelled object, as a label image.

    Pixels farther than ``gap`` and at most ``gap + width`` px (chessboard
    distance) from the nearest object get that object's label; all others 0.

    Parameters
    ----------
    labels : ndarray of int, shape (M, N)
        Object labels 1..K of 8-connected objects (``scipy.ndimage.label``), 0 = matrix.
    gap, width : int

    Returns
    -------
    ndarray of int32, shape (M, N)
    """
    lt = np.asarray(labels)
    if lt.ndim != 2:
        raise ValueError(f"labels must be 2-D, got shape {lt.shape}")
    if int(gap) < 0 or int(width) < 1:
        raise ValueError(f"gap must be >= 0 and width >= 1, got {gap}, {width}")
    obj = lt > 0
    if not obj.any():
        return np.zeros(lt.shape, np.int32)
    # one C pass: chessboard distance to, and the 8-connected component of, the nearest object pixel
    dist, comp = cv2.distanceTransformWithLabels(
        (~obj).view(np.uint8), cv2.DIST_C, 3, labelType=cv2.DIST_LABEL_CCOMP)
    to_label = np.zeros(int(comp.max()) + 1, np.int32)
    to_label[comp[obj]] = lt[obj]
    ring = (dist > gap) & (dist <= gap + width)
    return np.where(ring, to_label[comp], 0).astype(np.int32)


def label_median(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Median of ``values`` over each label 1..n (NaN for an empty label).

    One sort of the labelled pixels: their values are ranked once, and one
    integer sort of ``label * count + rank`` groups them by label in value
    order (a single-key sort, faster than a two-key ``lexsort``; the same result).
    """
    sel = labels > 0
    lab = labels[sel].astype(np.int64)
    val = np.asarray(values)[sel]
    out = np.full(n, np.nan)
    if not lab.size:
        return out
    order = np.argsort(val)  # ties: any order (equal values)
    size = val.size
    rank = np.empty(size, np.int64)
    rank[order] = np.arange(size)
    grouped = val[order][np.sort(lab * size + rank) % size].astype(np.float64)
    counts = np.bincount(lab, minlength=n + 1)[1 : n + 1]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ok = counts > 0
    lo = starts[ok] + (counts[ok] - 1) // 2
    hi = starts[ok] + counts[ok] // 2
    out[ok] = 0.5 * (grouped[lo] + grouped[hi])
    return out


def label_minimum(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Minimum of ``values`` over each label 1..n (NaN for an empty label); one unbuffered ``minimum.at``."""
    sel = labels > 0
    lab = labels[sel].astype(np.intp)
    out = np.full(n + 1, np.inf)
    np.minimum.at(out, lab, np.asarray(values)[sel].astype(np.float64))
    out = out[1 : n + 1]
    out[np.bincount(lab, minlength=n + 1)[1 : n + 1] == 0] = np.nan
    return out


def ring_contrast(
    image: np.ndarray,
    labels: np.ndarray,
    *,
    gap: int = 2,
    width: int = 3,
    search_px: int = 0,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Local contrast of each labelled object against its own surrounding ring.

    For every 8-connected labelled object, the *ring* is the matrix around
    it: the pixels farther than ``gap`` and at most ``gap + width`` px
    (chessboard distance) from the object, each ring pixel given to its
    nearest object and none within ``gap`` of any labelled pixel (the gap
    skips the blurred rim of the object).  ``contrast = median(ring) -
    mean(object)`` in gray levels (positive: the object is darker than its own
    surroundings), and ``z = contrast / noise``, ``noise`` the scan's pixel
    noise (1.4826 x the median absolute deviation of the image minus its 5 x 5
    median, over pixels away from every label).  Unlike a comparison with
    the matrix of the whole scan, this holds on an alloy with pale and dark
    grains: a label on a dark grain is compared with that grain.

    Parameters
    ----------
    image : ndarray, shape (M, N)
        Gray scan, dark impurities.
    labels : ndarray of bool, shape (M, N)
        Impurity labels (registered ones: a 3 px offset hides a small object).
    gap, width : int
        Ring geometry (px), ``gap >= 0``, ``width >= 1``.
    search_px : int
        Residual misregistration allowed: the object and its ring are moved
        together by every shift of up to ``search_px`` px in rows and columns,
        and each object keeps its highest contrast (0 = in place only).
        Measures whether an impurity lies *at about* the label.

    Returns
    -------
    contrast, z : ndarray of float, shape (K,)
        Per object in ``scipy.ndimage.label`` order (8-connectivity); NaN for an
        object with no free ring pixel.
    noise : float
        The scan's noise level (gray levels, at least 0.5).

    Examples
    --------
    >>> img = np.full((40, 40), 200.0)
    >>> img += np.random.default_rng(0).normal(0, 2, img.shape)
    >>> img[18:21, 18:21] = 150.0
    >>> lab = np.zeros((40, 40), bool)
    >>> lab[18:21, 18:21] = True
    >>> c, z, noise = ring_contrast(img, lab)
    >>> bool(45 < c[0] < 55 and 1.0 < noise < 3.0 and z[0] > 15)
    True
    """
    a = np.asarray(image, np.float64)
    lab = np.asarray(labels, bool)
    if a.ndim != 2 or a.shape != lab.shape:
        raise ValueError(f"image and labels must be 2-D of one shape, got {a.shape}, {lab.shape}")
    if int(gap) < 0 or int(width) < 1:
        raise ValueError(f"gap must be >= 0 and width >= 1, got {gap}, {width}")
    g, w = int(gap), int(width)
    lt, n = ndimage.label(lab, np.ones((3, 3), bool))
    resid = a - ndimage.median_filter(a, size=5)
    near = cv2.dilate(lab.view(np.uint8), np.ones((2 * (g + w) + 1,) * 2, np.uint8)) > 0
    free = ~near
    noise = 1.4826 * float(np.median(np.abs(resid[free] - np.median(resid[free])))) if free.any() else 1.0
    noise = max(noise, 0.5)
    if n == 0:
        return np.zeros(0), np.zeros(0), noise
    ring_lab = object_rings(lt, gap=g, width=w)
    ids = np.arange(1, n + 1)
    has_ring = np.bincount(ring_lab.ravel(), minlength=n + 1)[1:] > 0
    contrast = np.full(n, -np.inf)
    k = int(search_px)
    if k < 0:
        raise ValueError(f"search_px must be >= 0, got {search_px}")
    padded = np.pad(a, k, mode="edge") if k else a
    h, wd = a.shape
    for dr in range(-k, k + 1):
        for dc in range(-k, k + 1):
            # the labels moved by (dr, dc): read the image at row + dr, col + dc
            view = padded[k + dr : k + dr + h, k + dc : k + dc + wd] if k else a
            inner = np.asarray(ndimage.mean(view, lt, ids), float).reshape(-1)
            med = label_median(view, ring_lab, n)
            contrast = np.maximum(contrast, med - inner)
    contrast = np.where(has_ring, contrast, np.nan)
    return contrast, contrast / noise, noise
