"""Local background correction for dark objects in a bright matrix (ImageJ's "subtract background" idea).

A grey closing with a disk wider than the objects fills them with the matrix around them; smoothed,
that is the local background, and the scan divided by it is about 1 on the matrix, whatever its
shading (grains, etching, illumination), and below 1 on objects narrower than the disk.  Thresholds
of the ratio then find the objects, not the darker grains.  Objects wider than the disk are only
partly found (their core is part of the background): give a size larger than the widest object.
"""

from __future__ import annotations

import numpy as np

__all__ = ["background_ratio"]


def background_ratio(grey: np.ndarray, size_px: int, *, valid: np.ndarray | None = None) -> np.ndarray:
    """``grey`` divided by its local background (grey closing with a ``size_px`` disk, smoothed).

    Parameters
    ----------
    grey : ndarray, (M, N), float in [0, 1]
    size_px : int
        Disk diameter (px, >= 3): wider than the objects, narrower than the shading to remove.
    valid : ndarray of bool, optional
        Pixels that count; excluded pixels (a data bar) take the median of the valid ones first, so
        that they do not leak into the background near them.

    Returns
    -------
    ndarray, (M, N), float64 in [0, 1]
    """
    import cv2

    from .classical import PhaseError

    size = int(size_px)
    if size < 3:
        raise PhaseError(f"background size must be >= 3 px, got {size_px}")
    g = np.asarray(grey, dtype=np.float32)
    if valid is not None and not valid.all():
        g = g.copy()
        g[~valid] = float(np.median(g[valid]))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    bg = cv2.morphologyEx(g, cv2.MORPH_CLOSE, k, borderType=cv2.BORDER_REFLECT)
    bg = cv2.GaussianBlur(bg, (0, 0), size / 4.0, borderType=cv2.BORDER_REFLECT)
    return np.clip(g / np.maximum(bg, 1e-3), 0.0, 1.0).astype(np.float64)
