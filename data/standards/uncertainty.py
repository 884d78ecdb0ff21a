"""Intervals of the area fraction and the impurity count: field-to-field spread and repeatability combined.

Two sources of uncertainty are combined as in the GUM (JCGM 100):

- **sampling (type A)**: the scan is cut into fields (near-square blocks of
  about ``field_px`` px, the grid of :func:`segmentation.grains.grain_measures`);
  the value is a ratio of sums over the fields, and its standard uncertainty
  comes from the spread between fields (the ratio estimator of cluster
  sampling, :func:`segmentation.grains.ratio_ci`), with ``n - 1`` degrees of
  freedom;
- **repeatability (type A, measured elsewhere)**: the coefficient of variation
  of the same number when the same field is imaged again (rotated, shifted,
  brightness, JPEG, defocus, tiling origin; ``+exp=eval_repeatability``,
  recorded in the impurity model card under ``repeatability``), as a relative
  standard uncertainty with its own degrees of freedom.

``u = sqrt(u_field^2 + u_rep^2)``; the coverage factor is Student's t at the
Welch-Satterthwaite degrees of freedom, so the interval is ``value ± k u``.
Pure functions on arrays; no TensorFlow.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["INTERVAL_COLUMNS", "area_fraction_interval", "combined_interval", "count_interval", "field_sums"]

#: The ``scans.parquet`` columns :func:`area_fraction_interval` and :func:`count_interval` give
#: (``area_fraction_*`` and ``n_regions_*``).
INTERVAL_COLUMNS: tuple[str, ...] = (
    "area_fraction_ci95_low", "area_fraction_ci95_high", "area_fraction_u_field", "area_fraction_u_repeat",
    "n_regions_ci95_low", "n_regions_ci95_high", "n_regions_u_field", "n_regions_u_repeat",
)


def _edges(size: int, field_px: int) -> np.ndarray:
    n = max(1, int(round(size / field_px)))
    return np.rint(np.linspace(0, size, n + 1)).astype(np.int64)


def field_sums(shape: tuple[int, int], *, field_px: int = 256, mask: np.ndarray | None = None,
               points: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-field sums on the near-square field grid of a scan.

    Parameters
    ----------
    shape : (M, N)
    field_px : int
        Side of a field (px); ``round(M / field_px)`` x ``round(N / field_px)`` fields, at least 1 x 1.
    mask : ndarray of bool, shape (M, N), optional
        Count its True pixels per field.
    points : ndarray, shape (K, 2), optional
        (row, col) positions (e.g. impurity centroids) to count per field.

    Returns
    -------
    num : ndarray of float, shape (F,)
        Mask pixels (or points) per field.
    den : ndarray of float, shape (F,)
        Pixels per field.
    """
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (rows, cols) >= 1, got {shape}")
    if int(field_px) < 1:
        raise ValueError(f"field_px must be >= 1, got {field_px}")
    if (mask is None) == (points is None):
        raise ValueError("give exactly one of mask and points")
    er, ec = _edges(shape[0], field_px), _edges(shape[1], field_px)
    den = np.outer(np.diff(er), np.diff(ec)).astype(np.float64).ravel()
    if mask is not None:
        m = np.asarray(mask, bool)
        if m.shape != tuple(shape):
            raise ValueError(f"mask has shape {m.shape}, expected {tuple(shape)}")
        # summed from a uint8 view into int64 rows: no full-size int64 copy of the mask (the per-scan hot path)
        cs = np.add.reduceat(np.add.reduceat(m.view(np.uint8), er[:-1], axis=0, dtype=np.int64), ec[:-1], axis=1)
        return cs.astype(np.float64).ravel(), den
    p = np.asarray(points, np.float64).reshape(-1, 2)
    ri = np.clip(np.searchsorted(er, p[:, 0], side="right") - 1, 0, er.size - 2)
    ci = np.clip(np.searchsorted(ec, p[:, 1], side="right") - 1, 0, ec.size - 2)
    num = np.bincount(ri * (ec.size - 1) + ci, minlength=den.size).astype(np.float64)
    return num, den


def combined_interval(
    num: np.ndarray,
    den: np.ndarray,
    *,
    scale: float = 1.0,
    repeatability_cv: float = 0.0,
    repeatability_dof: float = math.inf,
    confidence: float = 0.95,
) -> dict:
    """``scale x sum(num) / sum(den)`` with its combined interval (field spread and repeatability).

    Parameters
    ----------
    num, den : ndarray, shape (F,)
        Per-field sums (:func:`field_sums`).
    scale : float
        Multiplies the ratio (1 for a fraction; the scan's pixel count for a count).
    repeatability_cv : float
        Relative standard uncertainty from re-imaging the same field (>= 0; 0 = not known).
    repeatability_dof : float
        Its degrees of freedom (re-imagings minus one, summed over scans; inf = exactly known).
    confidence : float
        Two-sided level of the interval.

    Returns
    -------
    dict
        ``value, u_field, u_repeat, u, dof, k, low, high`` (``low`` not below 0).
        With one field ``u_field`` is NaN and only repeatability counts (``dof``
        then that of the repeatability).

    Examples
    --------
    >>> r = combined_interval(np.array([10., 12, 8, 10]), np.array([100., 100, 100, 100]),
    ...                       repeatability_cv=0.0)
    >>> round(r["value"], 3), round(r["u_field"], 5)
    (0.1, 0.00816)
    """
    from scipy.special import ndtri, stdtrit  # lazy: scipy.special, not scipy.stats (~0.5 s of start-up)

    a, w = np.asarray(num, np.float64).ravel(), np.asarray(den, np.float64).ravel()
    if a.shape != w.shape or a.size == 0:
        raise ValueError(f"num and den must be non-empty and of one length, got {a.size} and {w.size}")
    if np.any(w < 0) or w.sum() <= 0:
        raise ValueError("den must be >= 0 with a positive sum")
    if not 0 < confidence < 1 or repeatability_cv < 0 or not repeatability_dof > 0:
        raise ValueError("confidence must be in (0, 1), repeatability_cv >= 0 and repeatability_dof > 0")
    n = a.size
    r = float(a.sum() / w.sum())
    value = scale * r
    if n >= 2:
        var = float(np.sum((a - r * w) ** 2)) / (n * (n - 1) * (w.sum() / n) ** 2)
        u_f, dof_f = scale * math.sqrt(var), float(n - 1)
    else:
        u_f, dof_f = float("nan"), float("nan")
    u_r = float(repeatability_cv) * abs(value)
    terms = [(u, d) for u, d in ((u_f, dof_f), (u_r, float(repeatability_dof))) if np.isfinite(u) and u > 0]
    if not terms:
        u = 0.0 if np.isfinite(u_f) or repeatability_cv == 0 else float("nan")
        return {"value": value, "u_field": u_f, "u_repeat": u_r, "u": u, "dof": float("nan"), "k": float("nan"),
                "low": value if u == 0 else float("nan"), "high": value if u == 0 else float("nan")}
    u = math.sqrt(sum(t[0] ** 2 for t in terms))
    den_ws = sum(t[0] ** 4 / t[1] for t in terms if np.isfinite(t[1]))
    dof = u ** 4 / den_ws if den_ws > 0 else math.inf
    q = 0.5 + confidence / 2
    k = float(stdtrit(dof, q)) if np.isfinite(dof) else float(ndtri(q))
    return {"value": value, "u_field": u_f, "u_repeat": u_r, "u": u, "dof": dof, "k": k,
            "low": max(value - k * u, 0.0), "high": value + k * u}


def area_fraction_interval(mask: np.ndarray, *, field_px: int = 256, repeatability_cv: float = 0.0,
                           repeatability_dof: float = math.inf, confidence: float = 0.95) -> dict:
    """The impurity area fraction of a mask with its combined interval (:func:`combined_interval`).

    ``mask`` (bool, (M, N)): the impurities after the detection limit, as
    measured.  ``repeatability_cv``: the model card's
    ``repeatability.cv_area_fraction_median``.
    """
    m = np.asarray(mask, bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    num, den = field_sums(m.shape, field_px=field_px, mask=m)
    return combined_interval(num, den, repeatability_cv=repeatability_cv, repeatability_dof=repeatability_dof,
                             confidence=confidence)


def count_interval(centroids: np.ndarray, shape: tuple[int, int], *, field_px: int = 256,
                   repeatability_cv: float = 0.0, repeatability_dof: float = math.inf,
                   confidence: float = 0.95) -> dict:
    """The impurity count of a scan with its combined interval.

    The count is read as the number a field of this size of the same specimen
    holds: its sampling uncertainty is that of the number density (impurities
    per pixel, from the spread between fields) times the scan's pixel count.

    Parameters
    ----------
    centroids : ndarray, shape (K, 2)
        (row, col) of every impurity (RegionTable ``centroid_row, centroid_col``).
    shape : (M, N)
    field_px, repeatability_cv, repeatability_dof, confidence
        As :func:`area_fraction_interval` (``repeatability_cv``: the card's ``repeatability.cv_count_median``).
    """
    num, den = field_sums(tuple(shape), field_px=field_px, points=centroids)
    return combined_interval(num, den, scale=float(den.sum()), repeatability_cv=repeatability_cv,
                             repeatability_dof=repeatability_dof, confidence=confidence)
