"""Out-of-domain check: is a scan like the scans the shipped models were validated on?

A segmentation measured on one kind of scan says nothing about a scan with a
very different size, gray range or histogram.  :func:`scan_statistics`
summarises a scan (size, gray quantiles, spread, pixel noise, clipped
pixels); :func:`validated_domain` takes the range of each statistic over the
scans a model was trained, tuned and validated on, widened by a margin, and
the model card stores it (``validated_domain``); :func:`check_domain` says
whether a new scan lies inside, and if not, why, in words a user can act on.

Pure NumPy / SciPy; no TensorFlow.

>>> rng = np.random.default_rng(0)
>>> scans = [np.clip(rng.normal(125, 30, (300, 400)), 0, 255).astype(np.uint8) for _ in range(3)]
>>> dom = validated_domain([scan_statistics(s) for s in scans])
>>> check_domain(scans[0], dom).in_domain
True
>>> r = check_domain((scans[0] // 4).astype(np.uint8), dom)
>>> r.in_domain, any(x.startswith("median gray:") for x in r.reasons)
(False, True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["DOMAIN_STATISTICS", "DomainCheck", "check_domain", "scan_statistics", "validated_domain"]

#: Statistic name -> words used in the reasons.
DOMAIN_STATISTICS: dict[str, str] = {
    "rows": "height (px)",
    "cols": "width (px)",
    "gray_p01": "1st percentile gray",
    "gray_median": "median gray",
    "gray_p99": "99th percentile gray",
    "gray_iqr": "inter-quartile range of gray (contrast)",
    "noise": "pixel noise (1.4826 MAD of the scan minus its 5x5 median)",
    "clipped_fraction": "share of pixels at the darkest or brightest value",
}


def scan_statistics(pixels: np.ndarray, *, exclude: np.ndarray | None = None) -> dict:
    """Size and gray-level statistics of a scan, on the 8-bit scale (uint16 is divided by 257).

    ``exclude`` (bool, the scan's shape): pixels left out of the gray-level statistics, e.g. a
    burned-in data bar or scale bar (:mod:`data.annotations`); the size is the scan's.

    Returns
    -------
    dict
        One float per key of :data:`DOMAIN_STATISTICS`, plus ``dtype``.
    """
    from scipy import ndimage

    a = np.asarray(pixels)
    if a.ndim != 2 or min(a.shape) < 1:
        raise ValueError(f"pixels must be a 2-D image, got shape {a.shape}")
    if a.dtype not in (np.uint8, np.uint16) and not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"pixels must be uint8, uint16 or float, got {a.dtype}")
    g = a.astype(np.float32) / (257.0 if a.dtype == np.uint16 else 1.0)
    step = max(1, int(np.sqrt(g.size / 1e6)))  # quantiles on at most ~1 Mpx
    sub = g[::step, ::step]
    resid = np.abs(sub - ndimage.median_filter(sub, 5))
    if exclude is not None:
        ex = np.asarray(exclude, bool)
        if ex.shape != a.shape:
            raise ValueError(f"exclude must have the scan's shape {a.shape}, got {ex.shape}")
        # a 5x5 filter reaches 2 px into the excluded area: those residuals are left out too
        keep = ~ndimage.binary_dilation(ex[::step, ::step], np.ones((5, 5), bool))
        if keep.any():
            sub, resid = sub[keep], resid[keep]
    p01, p25, p50, p75, p99 = np.percentile(sub, [1, 25, 50, 75, 99])
    noise = 1.4826 * float(np.median(resid))
    lo, hi = (float(g.min()), float(g.max())) if exclude is None else (float(sub.min()), float(sub.max()))
    clipped = float(np.mean((sub <= 0) | (sub >= 255))) if hi > lo else 1.0
    return {"rows": float(a.shape[0]), "cols": float(a.shape[1]), "gray_p01": float(p01),
            "gray_median": float(p50), "gray_p99": float(p99), "gray_iqr": float(p75 - p25),
            "noise": noise, "clipped_fraction": clipped, "dtype": str(a.dtype)}


def validated_domain(stats: Sequence[Mapping], *, margin: float = 0.25, size_factor: float = 4.0) -> dict:
    """The validated range of every statistic over a set of scans, widened by a margin.

    Parameters
    ----------
    stats : sequence of dict
        :func:`scan_statistics` of the training, tuning and validation scans.
    margin : float
        Each gray / noise range ``[lo, hi]`` is widened by ``margin x (hi - lo)``
        on both sides (at least 2 gray levels); ``clipped_fraction`` gets
        ``hi + margin x hi + 0.01`` as its upper bound.
    size_factor : float
        Sizes are accepted from ``lo / size_factor`` to ``hi x size_factor``
        (the models are tiled, but a much smaller or larger field is another
        magnification or a crop).

    Returns
    -------
    dict
        ``{statistic: [low, high]}``, plus ``n_scans``, ``margin`` and ``size_factor``.
    """
    if not stats:
        raise ValueError("validated_domain needs the statistics of at least one scan")
    if margin < 0 or size_factor < 1:
        raise ValueError("margin must be >= 0 and size_factor >= 1")
    out: dict = {"n_scans": len(stats), "margin": float(margin), "size_factor": float(size_factor)}
    for k in DOMAIN_STATISTICS:
        v = np.array([float(s[k]) for s in stats])
        lo, hi = float(v.min()), float(v.max())
        if k in ("rows", "cols"):
            out[k] = [lo / size_factor, hi * size_factor]
        elif k == "clipped_fraction":
            out[k] = [0.0, hi * (1 + margin) + 0.01]
        else:
            w = max(margin * (hi - lo), 2.0)
            out[k] = [lo - w, hi + w]
    return out


@dataclass(frozen=True)
class DomainCheck:
    """Result of :func:`check_domain`: ``in_domain``, the ``reasons`` (empty when inside), the ``statistics``."""

    in_domain: bool
    reasons: tuple[str, ...] = ()
    statistics: dict = field(default_factory=dict)

    @property
    def note(self) -> str:
        """One line for ``scans.parquet`` / the report ("" when inside)."""
        return "; ".join(self.reasons)


def check_domain(pixels_or_stats, domain: Mapping, *, exclude: np.ndarray | None = None) -> DomainCheck:
    """Whether a scan lies inside a model's validated domain, and why not.

    Parameters
    ----------
    pixels_or_stats : ndarray (M, N) or dict
        The scan, or its :func:`scan_statistics`.
    domain : mapping
        :func:`validated_domain` (e.g. the model card's ``validated_domain``).
        Statistics missing from it are not checked.
    exclude : ndarray of bool, optional
        Pixels left out of the statistics (see :func:`scan_statistics`; ignored for a dict).

    Returns
    -------
    DomainCheck
    """
    if isinstance(pixels_or_stats, Mapping):
        s = dict(pixels_or_stats)
    else:
        s = scan_statistics(pixels_or_stats, exclude=exclude)
    reasons = []
    for k, words in DOMAIN_STATISTICS.items():
        if k not in domain or k not in s:
            continue
        lo, hi = (float(x) for x in domain[k])
        v = float(s[k])
        if v < lo or v > hi:
            side = "below" if v < lo else "above"
            reasons.append(f"{words}: {v:.4g} {side} the validated range [{lo:.4g}, {hi:.4g}]")
    return DomainCheck(not reasons, tuple(reasons), s)
