"""Hole shapes to train and evaluate inpainting: real impurity shapes, clusters, free-form strokes.

Real shapes are cut from the bounding-box slices of a labelled impurity mask
(one small crop per object, never a full-image mask per object).  Cluster
shapes are windows of the real mask around impurities that have several
neighbours, so clustered impurities keep their true arrangement.  Free-form
holes are random brush strokes (as in DeepFill v2's training masks).
Shapes are placed at random, optionally away from forbidden pixels (the
real impurities), with a random rotation/flip.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from .classical import disc as _disc

__all__ = [
    "HoleBank",
    "HoleSamplerConfig",
    "cluster_shapes",
    "free_form_mask",
    "hole_bank",
    "impurity_shapes",
    "place_shapes",
    "sample_hole_masks",
]

log = logging.getLogger(__name__)

_EIGHT = np.ones((3, 3), bool)


def _dihedral(shape: np.ndarray, k: int) -> np.ndarray:
    out = np.rot90(shape, k % 4)
    return out[:, ::-1] if k >= 4 else out


def impurity_shapes(
    mask: np.ndarray, *, min_area_px: int = 3, max_side_px: int = 64
) -> list[np.ndarray]:
    """The bounding-box crops of the 8-connected impurities of a binary mask.

    Parameters
    ----------
    mask : ndarray, shape (M, N)
        Nonzero = impurity.
    min_area_px : int
        Smaller objects are skipped.
    max_side_px : int
        Objects whose box is longer than this on either side are skipped.

    Returns
    -------
    list of ndarray of bool, each shape (h, w)
        One crop per kept object, holding only that object.
    """
    labels, n = ndimage.label(np.asarray(mask) != 0, structure=_EIGHT)
    if n == 0:
        return []
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    out = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
        if areas[i] >= min_area_px and max(h, w) <= max_side_px:
            out.append(labels[sl] == i)
    return out


def cluster_shapes(
    mask: np.ndarray, *, window_px: int = 40, min_objects: int = 3, min_area_px: int = 3
) -> list[np.ndarray]:
    """Windows of the real mask centred on impurities with at least ``min_objects`` in the window.

    Parameters
    ----------
    mask : ndarray, shape (M, N)
        Nonzero = impurity.
    window_px : int
        Side of the square windows.
    min_objects : int
        Objects (of at least ``min_area_px`` pixels) with their centroid in the window,
        itself included.
    min_area_px : int

    Returns
    -------
    list of ndarray of bool, each shape (h, w)
        The whole objects whose centroids lie in the window (at least 2), cropped to
        their joint bounding box; other objects are left out.
    """
    binary = np.asarray(mask) != 0
    labels, n = ndimage.label(binary, structure=_EIGHT)
    if n == 0:
        return []
    idx = np.arange(1, n + 1)
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    cents = np.asarray(ndimage.center_of_mass(binary, labels, idx)).reshape(-1, 2)
    cents = np.clip(np.rint(cents).astype(int), 0, np.array(binary.shape) - 1)
    big = areas >= min_area_px
    # count centroids per window with an integral image of centroid points (no pairwise loop)
    pts = np.zeros(binary.shape, np.int32)
    np.add.at(pts, (cents[big, 0], cents[big, 1]), 1)
    ii = np.pad(pts.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    half = window_px // 2
    m, w = binary.shape
    r0 = np.clip(cents[:, 0] - half, 0, max(m - window_px, 0))
    c0 = np.clip(cents[:, 1] - half, 0, max(w - window_px, 0))
    r1, c1 = np.minimum(r0 + window_px, m), np.minimum(c0 + window_px, w)
    counts = ii[r1, c1] - ii[r0, c1] - ii[r1, c0] + ii[r0, c0]
    boxes = ndimage.find_objects(labels)
    out = []
    for i in np.flatnonzero(big & (counts >= min_objects)):  # loop over cluster seeds (objects)
        a, b, c, d = r0[i], r1[i], c0[i], c1[i]
        ids = np.unique(labels[a:b, c:d])
        ids = ids[ids != 0]
        inside = (
            big[ids - 1]
            & (cents[ids - 1, 0] >= a) & (cents[ids - 1, 0] < b)
            & (cents[ids - 1, 1] >= c) & (cents[ids - 1, 1] < d)
        )
        ids = ids[inside]
        if ids.size < 2:
            continue
        ra = min(boxes[j - 1][0].start for j in ids)
        rb = max(boxes[j - 1][0].stop for j in ids)
        ca = min(boxes[j - 1][1].start for j in ids)
        cb = max(boxes[j - 1][1].stop for j in ids)
        out.append(np.isin(labels[ra:rb, ca:cb], ids))
    return out


def free_form_mask(
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    max_strokes: int = 3,
    max_vertices: int = 6,
    max_width: int = 8,
    max_length: int = 16,
) -> np.ndarray:
    """Random brush strokes (DeepFill v2 style free-form holes).

    Parameters
    ----------
    shape : (M, N)
    rng : numpy.random.Generator
    max_strokes, max_vertices, max_width, max_length : int
        Strokes per mask, vertices per stroke, brush width and segment length (pixels).

    Returns
    -------
    ndarray of bool, shape (M, N)
    """
    m, n = shape
    canvas = np.zeros((m, n), np.uint8)
    for _ in range(int(rng.integers(1, max_strokes + 1))):
        r, c = float(rng.uniform(0, m)), float(rng.uniform(0, n))
        width = int(rng.integers(2, max_width + 1))
        for _ in range(int(rng.integers(1, max_vertices + 1))):
            angle = rng.uniform(0, 2 * np.pi)
            length = rng.uniform(2, max_length)
            r2 = float(np.clip(r + length * np.sin(angle), 0, m - 1))
            c2 = float(np.clip(c + length * np.cos(angle), 0, n - 1))
            cv2.line(canvas, (int(c), int(r)), (int(c2), int(r2)), 1, width)
            r, c = r2, c2
    return canvas.astype(bool)


def _or_into(dst: np.ndarray, src: np.ndarray, r: int, c: int) -> None:
    """``dst[r:r+h, c:c+w] |= src``, clipped at the borders of ``dst`` (r, c may be negative)."""
    h, w = src.shape
    a, b = max(r, 0), max(c, 0)
    e, f = min(r + h, dst.shape[0]), min(c + w, dst.shape[1])
    if a < e and b < f:
        dst[a:e, b:f] |= src[a - r : e - r, b - c : f - c]


def place_shapes(
    canvas_shape: tuple[int, int],
    shapes: list[np.ndarray],
    rng: np.random.Generator,
    *,
    n: int,
    forbidden: np.ndarray | None = None,
    gap_px: int = 0,
    max_tries: int | None = None,
) -> tuple[np.ndarray, int]:
    """Paste ``n`` random, rotated/flipped shapes at random positions clear of ``forbidden``.

    Parameters
    ----------
    canvas_shape : (M, N)
    shapes : list of ndarray of bool
    rng : numpy.random.Generator
    n : int
        Shapes to place.
    forbidden : ndarray of bool, shape (M, N), optional
        Pixels no shape may cover; placed shapes grown by ``gap_px`` are added to it,
        so placed holes stay ``gap_px`` apart.
    gap_px : int
    max_tries : int, optional
        Random positions tried in total; default ``50 * n``.

    Returns
    -------
    mask : ndarray of bool, shape (M, N)
    placed : int
        How many shapes were placed (fewer than ``n`` when space ran out).
    """
    m, w = canvas_shape
    mask = np.zeros((m, w), bool)
    block = np.zeros((m, w), bool) if forbidden is None else np.asarray(forbidden, bool).copy()
    fits = [s for s in shapes if s.shape[0] < m and s.shape[1] < w]
    if not fits or n <= 0:
        return mask, 0
    placed, tries = 0, 0
    max_tries = 50 * n if max_tries is None else max_tries
    disc = _disc(gap_px) if gap_px > 0 else None
    while placed < n and tries < max_tries:  # loop over objects (shapes), not pixels
        tries += 1
        s = _dihedral(fits[int(rng.integers(len(fits)))], int(rng.integers(8)))
        h, ww = s.shape
        r = int(rng.integers(0, m - h + 1))
        c = int(rng.integers(0, w - ww + 1))
        if (block[r : r + h, c : c + ww] & s).any():
            continue
        mask[r : r + h, c : c + ww] |= s
        if disc is None:
            block[r : r + h, c : c + ww] |= s
        else:
            grown = cv2.dilate(np.pad(s, gap_px).view(np.uint8), disc).view(bool)
            _or_into(block, grown, r - gap_px, c - gap_px)
        placed += 1
    return mask, placed


@dataclass(frozen=True)
class HoleBank:
    """Real hole shapes: single impurities and clusters, as bool crops."""

    singles: tuple[np.ndarray, ...]
    clusters: tuple[np.ndarray, ...]


def hole_bank(
    masks: list[np.ndarray], *, max_side_px: int = 48, window_px: int = 40, min_objects: int = 3
) -> HoleBank:
    """Collect single and clustered impurity shapes from real impurity masks."""
    singles: list[np.ndarray] = []
    clusters: list[np.ndarray] = []
    for m in masks:
        singles += impurity_shapes(m, max_side_px=max_side_px)
        clusters += cluster_shapes(m, window_px=window_px, min_objects=min_objects)
    log.info("hole bank: %d single shapes, %d cluster windows", len(singles), len(clusters))
    return HoleBank(tuple(singles), tuple(clusters))


@dataclass(frozen=True)
class HoleSamplerConfig:
    """How training hole masks are drawn for one patch.

    Attributes
    ----------
    p_free_form : float
        Probability that a patch gets free-form strokes instead of real shapes.
    p_cluster : float
        Probability that a real-shape patch also gets one cluster window.
    max_singles : int
        Up to this many single impurity shapes per real-shape patch (at least 1).
    max_dilation_px : int
        The patch's holes are grown by a random radius in [0, max_dilation_px]
        (the pipeline dilates impurity masks before inpainting).
    max_fraction : float
        Shapes that would push the hole fraction of the patch above this are skipped.
    """

    p_free_form: float = 0.25
    p_cluster: float = 0.35
    max_singles: int = 6
    max_dilation_px: int = 3
    max_fraction: float = 0.35

    def __post_init__(self) -> None:
        for name in ("p_free_form", "p_cluster", "max_fraction"):
            v = float(getattr(self, name))
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if self.max_singles < 1 or self.max_dilation_px < 0:
            raise ValueError("max_singles must be >= 1 and max_dilation_px >= 0")


def sample_hole_masks(
    n: int,
    size: int,
    bank: HoleBank,
    rng: np.random.Generator,
    cfg: HoleSamplerConfig = HoleSamplerConfig(),
) -> np.ndarray:
    """Draw ``n`` training hole masks of ``size`` x ``size`` (never empty).

    Returns
    -------
    ndarray of bool, shape (n, size, size)
    """
    out = np.zeros((n, size, size), bool)
    for i in range(n):  # loop over patches and their few shapes, never over pixels
        hole = None
        if rng.random() < cfg.p_free_form or not bank.singles:
            hole = free_form_mask(
                (size, size), rng, max_length=size // 4, max_width=max(2, size // 8)
            )
        else:
            shapes = []
            if bank.clusters and rng.random() < cfg.p_cluster:
                shapes.append(bank.clusters[int(rng.integers(len(bank.clusters)))])
            k = int(rng.integers(1, cfg.max_singles + 1))
            shapes += [bank.singles[j] for j in rng.integers(len(bank.singles), size=k)]
            hole = np.zeros((size, size), bool)
            for s in shapes:
                part, _ = place_shapes((size, size), [s], rng, n=1, max_tries=5)
                if (hole | part).mean() <= cfg.max_fraction or not hole.any():
                    hole |= part
        d = int(rng.integers(0, cfg.max_dilation_px + 1))
        if d:
            hole = cv2.dilate(hole.astype(np.uint8), _disc(d)).astype(bool)
        if not hole.any():
            r, c = rng.integers(0, size - 4, size=2)
            hole[r : r + 4, c : c + 4] = True
        out[i] = hole
    return out
