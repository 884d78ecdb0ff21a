"""Naive prior-art pipeline: mask -> impurities -> spatial score -> circle score, loop by loop.

A faithful re-implementation of how the MLography research scripts compute
these steps (written from their description, not copied), kept only as the
measuring stick of ``bench_anomaly``:

- label the mask once (``cv2.connectedComponents``, 8-connected, as the
  prior art's marker step; a fast C call),
- for every impurity, one full-image boolean mask to find its bounding box
  (``np.any`` over rows/cols), and another full-image mask (``np.argwhere``)
  for its area,
- spatial score: for every participating impurity a Python list of
  ``(A_i / A_j)^4 * max(D(i, j), 1e-5)`` over all other participating ones
  (box gap ``D`` by a branchy per-pair function), sorted, k-th taken:
  ``O(n^2)`` Python-level pair evaluations; then the paper's normalisation,
- circle score: for every participating impurity a full-image mask again
  (``np.argwhere``) and a pure-Python randomized incremental minimal
  enclosing circle over all its pixel coordinates.

Deliberate differences from the prior art, so that both versions compute the
same numbers and the comparison is conservative (the baseline is, if
anything, faster than the original):

- bounding boxes are the inclusive pixel bounds (the prior art padded them
  by one pixel), so ``D`` is exactly :func:`anomaly._geometry.box_gap`;
- the pair distance uses ``math.hypot`` instead of ``scipy.spatial.distance.euclidean``
  (about 10x cheaper per call);
- the enclosing radius gets +0.5 px (the circle covers the pixels, as in
  ``data.regions``) and the circle score is clipped to [0, 1], as in
  :mod:`anomaly.scorers.shape`;
- it runs in one process (the prior art fanned the same loops out to Ray
  tasks with ``ray.get`` in a loop).

Nothing outside ``experiments.research.bench`` may import this module.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = ["NaiveResult", "naive_mlography", "naive_spatial_raw", "naive_enclosing_circle"]


@dataclass
class NaiveResult:
    """Per impurity (label order of ``cv2.connectedComponents``): boxes, areas and both scores."""

    boxes: np.ndarray  # (N, 4) inclusive (rmin, cmin, rmax, cmax)
    areas: np.ndarray  # (N,)
    spatial: np.ndarray  # (N,) normalised spatial score, 0 below min_area_px
    circle: np.ndarray  # (N,) circle score, 0 below min_area_px
    timings: dict = field(default_factory=dict)  # seconds per step


def _bbox(impurity_mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.any(impurity_mask, axis=1)
    cols = np.any(impurity_mask, axis=0)
    r = np.where(rows)[0]
    c = np.where(cols)[0]
    return int(r[0]), int(c[0]), int(r[-1]), int(c[-1])


def _box_dist(b1, b2) -> float:
    """Box gap of two inclusive boxes (rmin, cmin, rmax, cmax), case by case."""
    rmin1, cmin1, rmax1, cmax1 = b1
    rmin2, cmin2, rmax2, cmax2 = b2
    left = cmax2 < cmin1
    right = cmax1 < cmin2
    above = rmax2 < rmin1
    below = rmax1 < rmin2
    if below and left:
        return math.hypot(cmin1 - cmax2, rmin2 - rmax1)
    if left and above:
        return math.hypot(cmin1 - cmax2, rmin1 - rmax2)
    if above and right:
        return math.hypot(cmin2 - cmax1, rmin1 - rmax2)
    if right and below:
        return math.hypot(cmin2 - cmax1, rmin2 - rmax1)
    if left:
        return float(cmin1 - cmax2)
    if right:
        return float(cmin2 - cmax1)
    if above:
        return float(rmin1 - rmax2)
    if below:
        return float(rmin2 - rmax1)
    return 0.0


def naive_spatial_raw(boxes, areas, indices, k: int) -> np.ndarray:
    """Raw weighted k-th NN values for ``indices`` (others 0), by Python loops over all pairs."""
    raw = np.zeros(len(areas))
    boxes = [tuple(b) for b in np.asarray(boxes).tolist()]
    areas = [float(a) for a in areas]
    k = min(k, len(indices) - 1)
    if k < 1:
        return raw
    for i in indices:
        dists = [
            (areas[i] / areas[j]) ** 4 * max(_box_dist(boxes[i], boxes[j]), 1e-5)
            for j in indices
            if j != i
        ]
        dists.sort()
        raw[i] = areas[i] * dists[k - 1] ** 2
    return raw


def _normalise(values: np.ndarray) -> np.ndarray:
    """The paper's normalisation (log, min-max, minus 2 std floored, min-max, / max)."""
    v = np.log(np.where(values == 0, 1e-5, values))
    v = (v - v.min()) / np.ptp(v) if np.ptp(v) > 0 else np.zeros_like(v)
    v = np.maximum(v - 2 * np.std(v), 1e-5)
    v = (v - v.min()) / np.ptp(v) if np.ptp(v) > 0 else np.zeros_like(v)
    return v / v.max() if v.max() > 0 else v


# ------------------------------------------------------------ minimal enclosing circle, pure Python


def _in_circle(c, p) -> bool:
    return c is not None and math.hypot(p[0] - c[0], p[1] - c[1]) <= c[2] * (1 + 1e-12) + 1e-12


def _diameter_circle(a, b):
    cx, cy = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
    return cx, cy, max(math.hypot(cx - a[0], cy - a[1]), math.hypot(cx - b[0], cy - b[1]))


def _circumcircle(a, b, c):
    d = 2 * (a[0] * (b[1] - c[1]) + b[0] * (c[1] - a[1]) + c[0] * (a[1] - b[1]))
    if d == 0:  # collinear: the circle on the farthest pair
        pairs = [(a, b), (a, c), (b, c)]
        return max((_diameter_circle(p, q) for p, q in pairs), key=lambda t: t[2])
    sa, sb, sc = a[0] ** 2 + a[1] ** 2, b[0] ** 2 + b[1] ** 2, c[0] ** 2 + c[1] ** 2
    x = (sa * (b[1] - c[1]) + sb * (c[1] - a[1]) + sc * (a[1] - b[1])) / d
    y = (sa * (c[0] - b[0]) + sb * (a[0] - c[0]) + sc * (b[0] - a[0])) / d
    return x, y, max(math.hypot(x - p[0], y - p[1]) for p in (a, b, c))


def naive_enclosing_circle(points, *, seed: int = 0):
    """Smallest circle (cx, cy, r) enclosing ``points`` (list of (x, y)); randomized incremental."""
    pts = [(float(x), float(y)) for x, y in points]
    random.Random(seed).shuffle(pts)
    c = None
    for i, p in enumerate(pts):
        if _in_circle(c, p):
            continue
        c = (p[0], p[1], 0.0)  # p is on the boundary of the circle of pts[: i + 1]
        for j in range(i):
            q = pts[j]
            if _in_circle(c, q):
                continue
            c = _diameter_circle(p, q)  # p and q on the boundary
            for m in range(j):
                if not _in_circle(c, pts[m]):
                    c = _circumcircle(p, q, pts[m])
    return c


# ------------------------------------------------------------ the pipeline


def naive_mlography(
    mask: np.ndarray,
    *,
    k: int = 50,
    min_area_px: int = 4,
    max_regions: int | None = None,
    seed: int = 0,
) -> NaiveResult:
    """Run the naive pipeline on a binary mask (nonzero = impurity).

    ``max_regions`` keeps only the first labels (for timing subsets).
    """
    t = {}
    t0 = time.perf_counter()
    binary = (np.asarray(mask) != 0).astype(np.uint8)
    n_labels, markers = cv2.connectedComponents(binary, connectivity=8)
    labels = list(range(1, n_labels))[: max_regions if max_regions is not None else None]
    t["label"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    boxes = np.zeros((len(labels), 4), dtype=np.int64)
    for n, lab in enumerate(labels):  # one full-image mask per impurity
        boxes[n] = _bbox(markers == lab)
    t["boxes"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    areas = np.zeros(len(labels))
    indices = []
    for n, lab in enumerate(labels):  # and another one
        areas[n] = np.argwhere(markers == lab).shape[0]
        if areas[n] >= min_area_px:
            indices.append(n)
    t["areas"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    raw = naive_spatial_raw(boxes, areas, indices, k)
    spatial = np.zeros(len(labels))
    if indices:
        spatial[indices] = _normalise(raw[indices])
    t["spatial"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    circle = np.zeros(len(labels))
    for n in indices:  # and a third one, plus a pure-Python circle over all pixels
        pix = np.argwhere(markers == labels[n])
        _, _, r = naive_enclosing_circle(pix.tolist(), seed=seed)
        area_circle = math.pi * (r + 0.5) ** 2
        circle[n] = min(1.0, max(0.0, (area_circle - areas[n]) / area_circle))
    t["circle"] = time.perf_counter() - t0
    t["total"] = sum(t.values())
    return NaiveResult(boxes, areas, spatial, circle, t)
