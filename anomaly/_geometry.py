"""Geometry shared by the scorers: validated box arrays and the box gap D(i, j)."""

from __future__ import annotations

from typing import TYPE_CHECKING
import numpy as np

if TYPE_CHECKING:  # annotations only (the module imports them where it uses them)
    import pandas as pd

__all__ = ["as_boxes", "as_areas", "box_gap", "boxes_of"]


def as_boxes(boxes: np.ndarray) -> np.ndarray:
    """Validate an (N, 4) array of inclusive (rmin, cmin, rmax, cmax) boxes; return float64."""
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4) as (rmin, cmin, rmax, cmax), got {b.shape}")
    if not np.all(np.isfinite(b)):
        raise ValueError("boxes contain NaN or infinite values")
    bad = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"inverted box at row {i}: {b[i].tolist()} (need rmin <= rmax and cmin <= cmax)")
    return b


def as_areas(areas: np.ndarray, n: int | None = None) -> np.ndarray:
    """Validate a (N,) array of positive finite areas; return float64."""
    a = np.asarray(areas, dtype=np.float64)
    if a.ndim != 1 or (n is not None and a.shape[0] != n):
        raise ValueError(f"areas must have shape ({n if n is not None else 'N'},), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("areas contain NaN or infinite values")
    if np.any(a <= 0):
        raise ValueError(f"areas must be positive; row {int(np.flatnonzero(a <= 0)[0])} is not")
    return a


def box_gap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Gap D between inclusive boxes, broadcasting over leading axes.

    0 when the closed boxes intersect (touching boxes included), the axis gap
    when they overlap on one axis, else the Euclidean distance between the
    nearest corners.  ``a`` and ``b`` are (..., 4) arrays (rmin, cmin, rmax, cmax).

    >>> box_gap(np.array([0, 0, 2, 2]), np.array([5, 6, 9, 9]))
    array(5.)
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    dr = np.maximum(0.0, np.maximum(a[..., 0] - b[..., 2], b[..., 0] - a[..., 2]))
    dc = np.maximum(0.0, np.maximum(a[..., 1] - b[..., 3], b[..., 1] - a[..., 3]))
    return np.hypot(dr, dc)


def boxes_of(table: pd.DataFrame) -> np.ndarray:
    """The (N, 4) inclusive boxes of a RegionTable."""
    return table[["bbox_rmin", "bbox_cmin", "bbox_rmax", "bbox_cmax"]].to_numpy(dtype=np.float64)
