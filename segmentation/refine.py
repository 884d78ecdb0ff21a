"""Object outlines from the image itself: each detected impurity keeps its pixels below a depth level.

A segmentation network trained on hand-drawn labels learns where annotators
put the outline of a blurred dark spot; annotators differ (some draw inside
the spot, some around it), and the impurity area fraction follows the
outline.  :func:`depth_extent` replaces the network's outline by a level of
the object's own depth below its surroundings, the same rule on every scan:
with the background ``b`` (median of a ring around the object) and the
darkest value ``d`` inside it, a pixel of the object is kept when its
(lightly smoothed) gray value is at most ``b - fraction (b - d)``
(``fraction = 0.5``: the outline at half depth, the full width at half
maximum of the spot).  Objects can only shrink, never grow or be lost: the
darkest pixel always stays.
"""

from __future__ import annotations

import numpy as np

__all__ = ["depth_extent", "impurity_postprocess"]


def depth_extent(
    pixels: np.ndarray,
    mask: np.ndarray,
    *,
    fraction: float = 0.5,
    smooth_sigma: float = 1.0,
    ring_gap: int = 2,
    ring_width: int = 3,
) -> np.ndarray:
    """Shrink each 8-connected object of ``mask`` to its pixels darker than a fraction of its depth.

    Parameters
    ----------
    pixels : ndarray, shape (M, N)
        The gray scan (dark impurities), any real dtype.
    mask : ndarray of bool, shape (M, N)
        Detected impurities (e.g. the U-Net's mask).
    fraction : float
        In (0, 1): the level, as a fraction of the object's depth
        ``b - d`` below its background ``b``, that a pixel must reach.
    smooth_sigma : float
        Gaussian smoothing (px) of the gray values before the comparison
        (0 = none); it steadies the darkest value of small objects.
    ring_gap, ring_width : int
        The background ring: pixels farther than ``ring_gap`` and at most
        ``ring_gap + ring_width`` px (chessboard distance) from the object, each
        given to its nearest object.

    Returns
    -------
    ndarray of bool, shape (M, N)
        A subset of ``mask``; an object may split into pieces (8-connected
        components of the kept pixels).  Objects without ring pixels are kept
        as they are.

    Examples
    --------
    >>> img = np.full((30, 30), 200.0)
    >>> img[10:20, 10:20] = 160.0       # a pale spot 10 x 10 px ...
    >>> img[13:17, 13:17] = 100.0       # ... with a darker core
    >>> m = np.zeros((30, 30), bool)
    >>> m[8:22, 8:22] = True            # detected a bit too large
    >>> int(depth_extent(img, m, fraction=0.5, smooth_sigma=0).sum())
    16
    """
    from scipy import ndimage  # lazy
    a = np.asarray(pixels)
    m = np.asarray(mask, bool)
    if a.ndim != 2 or a.shape != m.shape:
        raise ValueError(f"pixels and mask must be 2-D of one shape, got {a.shape}, {m.shape}")
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if float(smooth_sigma) < 0 or int(ring_gap) < 0 or int(ring_width) < 1:
        raise ValueError("smooth_sigma and ring_gap must be >= 0 and ring_width >= 1")
    if not m.any():
        return m.copy()
    g = a.astype(np.float32)
    if smooth_sigma > 0:
        # scipy.ndimage.gaussian_filter's kernel (radius round(4 sigma), mirror border), in OpenCV (10x faster)
        import cv2

        k = 2 * int(4.0 * float(smooth_sigma) + 0.5) + 1
        g = cv2.GaussianBlur(g, (k, k), float(smooth_sigma), borderType=cv2.BORDER_REFLECT)
    from data.registration import label_median, label_minimum, object_rings

    lt, n = ndimage.label(m, np.ones((3, 3), bool))
    ring = object_rings(lt, gap=int(ring_gap), width=int(ring_width))
    has_ring = np.bincount(ring.ravel(), minlength=n + 1)[1:] > 0
    background = label_median(g, ring, n)
    darkest = label_minimum(g, lt, n)
    level = np.where(has_ring, background - float(fraction) * (background - darkest), np.inf)
    # an object no darker than its ring (level above the background) keeps all its pixels
    level = np.where(has_ring & (background > darkest), level, np.inf)
    cut = np.concatenate([[-np.inf], level])
    return m & (g <= cut[lt])


def impurity_postprocess(
    prob: np.ndarray,
    pixels: np.ndarray | None,
    threshold: float,
    *,
    min_area_px: int = 0,
    extent_threshold: float | None = None,
    depth_fraction: float | None = None,
    depth_smooth_sigma: float = 1.0,
    min_peak_prob: float | None = None,
) -> np.ndarray:
    """Impurity probabilities (and the scan) to a mask: the shipped post-processing chain.

    ``prob >= threshold`` finds the objects (:func:`segmentation.tiling.prob_to_mask`,
    optionally two-level with ``extent_threshold``); with ``depth_fraction``
    each object is then cut to its own depth level in the scan
    (:func:`depth_extent`); last, 8-connected objects under ``min_area_px``
    are dropped (the detection limit).

    Parameters
    ----------
    prob : ndarray of float, shape (M, N)
    pixels : ndarray, shape (M, N), optional
        The scan; needed for ``depth_fraction``.
    threshold : float
        In (0, 1).
    min_area_px : int
        Smallest object kept (0 or 1 = all).
    extent_threshold : float, optional
        See :func:`segmentation.tiling.prob_to_mask`.
    depth_fraction : float, optional
        In (0, 1); None or 0 = off.
    depth_smooth_sigma : float
        See :func:`depth_extent`.
    min_peak_prob : float, optional
        Objects (8-connected, at ``threshold``) whose highest probability is
        below this are dropped (hysteresis: an object needs one confident
        pixel; its extent still comes from ``threshold``).  None = off.

    Returns
    -------
    ndarray of bool, shape (M, N)
    """
    from scipy import ndimage  # lazy
    from .tiling import prob_to_mask

    if min_peak_prob is not None and not float(threshold) <= float(min_peak_prob) < 1.0:
        raise ValueError(f"min_peak_prob must be in [threshold, 1), got {min_peak_prob}")
    mask = prob_to_mask(prob, threshold, min_area_px=int(min_area_px), extent_threshold=extent_threshold)
    if min_peak_prob is not None and mask.any():
        lab, n = ndimage.label(mask, np.ones((3, 3), bool))
        peak = ndimage.maximum(np.asarray(prob, np.float32), lab, np.arange(1, n + 1))
        mask = np.concatenate([[False], np.asarray(peak) >= float(min_peak_prob)])[lab]
    if not depth_fraction:
        return mask
    if pixels is None:
        raise ValueError("depth_fraction needs the scan (pixels)")
    mask = depth_extent(pixels, mask, fraction=float(depth_fraction), smooth_sigma=float(depth_smooth_sigma))
    if int(min_area_px) > 1 and mask.any():
        lab, n = ndimage.label(mask, np.ones((3, 3), bool))
        keep = np.bincount(lab.ravel(), minlength=n + 1) >= int(min_area_px)
        keep[0] = False
        mask = keep[lab]
    return mask
