"""Shape anomaly scores that need no model: the minimal-enclosing-circle score."""

from __future__ import annotations

from typing import TYPE_CHECKING
from dataclasses import dataclass

import numpy as np

if TYPE_CHECKING:  # annotations only (the module imports them where it uses them)
    import pandas as pd


__all__ = ["CircleConfig", "circle_scores", "circle_score"]


@dataclass(frozen=True)
class CircleConfig:
    """Options of the circle score.

    min_area_px : impurities with ``area_px <= min_area_px - 1`` score 0 (paper: > 3 px take part).
    """

    min_area_px: int = 4


def circle_scores(areas: np.ndarray, radii: np.ndarray, *, min_area_px: int = 4) -> np.ndarray:
    """``(pi r^2 - A) / (pi r^2)`` clipped to [0, 1]; 0 for impurities below ``min_area_px``.

    Parameters
    ----------
    areas : ndarray, shape (N,)
        Pixel areas, positive.
    radii : ndarray, shape (N,)
        Minimal enclosing circle radii in pixels, positive.
    """
    a = np.asarray(areas, dtype=np.float64)
    r = np.asarray(radii, dtype=np.float64)
    if a.ndim != 1 or r.shape != a.shape:
        raise ValueError(f"areas and radii must be 1-D of equal length, got {a.shape} and {r.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(r))):
        raise ValueError("areas and radii must be finite")
    if np.any(a <= 0) or np.any(r <= 0):
        raise ValueError("areas and radii must be positive")
    circle = np.pi * r * r
    s = np.clip((circle - a) / circle, 0.0, 1.0)
    s[a < min_area_px] = 0.0
    return s


def circle_score(table: pd.DataFrame, cfg: CircleConfig, ctx=None) -> np.ndarray:
    """Scorer ``circle`` (``anomaly.scorers``): circle score of each RegionTable row."""
    if len(table) == 0:
        return np.zeros(0)
    return circle_scores(
        table["area_px"].to_numpy(), table["enclosing_radius_px"].to_numpy(), min_area_px=cfg.min_area_px
    )
