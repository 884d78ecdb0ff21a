"""Bounded summaries of the impurities of a run, for the report's plots (no pixels, no full tables).

Each scan's RegionTable is reduced on the worker that has it to a :class:`RegionStats`: fixed-bin
histograms of the equivalent diameter (log scale, in px and in µm) and of every score column, plus
the sums the log-normal fit needs.  The driver adds them up, so the report's size distribution and
score histograms cost the same memory for ten scans and for a million.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["RegionStats", "region_stats", "lognormal_cdf", "LOG10_EDGES", "SCORE_EDGES"]

#: Bin edges of log10(equivalent diameter): 0.01 to 10^5 units, 20 bins per decade.
LOG10_EDGES = np.linspace(-2.0, 5.0, 141)
#: Bin edges of the scores, on [0, 1].
SCORE_EDGES = np.linspace(0.0, 1.0, 51)


def lognormal_cdf(x: np.ndarray, *, median: float, sigma: float) -> np.ndarray:
    """CDF of the log-normal law with location 0: ``Φ((ln x − ln median) / sigma)``, 0 for x <= 0.

    The same values as ``scipy.stats.lognorm.cdf(x, sigma, 0, median)``, from :func:`scipy.special.ndtr`
    (a run's report then does not import :mod:`scipy.stats`, ~0.4 s).
    """
    from scipy.special import ndtr

    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore"):
        z = (np.log(np.where(x > 0, x, 0.0)) - math.log(median)) / sigma
    return ndtr(z)


@dataclass
class _Sizes:
    counts: np.ndarray = field(default_factory=lambda: np.zeros(len(LOG10_EDGES) - 1, np.int64))
    n: int = 0
    sum_log: float = 0.0
    sum_log2: float = 0.0

    def add_values(self, values: np.ndarray) -> None:
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v) & (v > 0)]
        if v.size == 0:
            return
        lg = np.log10(v)
        self.counts += np.histogram(np.clip(lg, LOG10_EDGES[0], LOG10_EDGES[-1]), LOG10_EDGES)[0]
        ln = np.log(v)
        self.n += int(v.size)
        self.sum_log += float(ln.sum())
        self.sum_log2 += float((ln * ln).sum())

    def merge(self, other: _Sizes) -> None:
        self.counts += other.counts
        self.n += other.n
        self.sum_log += other.sum_log
        self.sum_log2 += other.sum_log2

    def to_dict(self) -> dict:
        return {"counts": self.counts.tolist(), "n": self.n, "sum_log": self.sum_log, "sum_log2": self.sum_log2}

    @classmethod
    def from_dict(cls, d: dict) -> _Sizes:
        return cls(np.asarray(d["counts"], np.int64), int(d["n"]), float(d["sum_log"]), float(d["sum_log2"]))


@dataclass
class RegionStats:
    """Mergeable histograms of a set of impurities (one scan, or a whole run)."""

    n_regions: int = 0
    n_small: int = 0  # left out of the size distribution (below the report's size_min_area_px)
    sizes_px: _Sizes = field(default_factory=_Sizes)
    sizes_um: _Sizes = field(default_factory=_Sizes)
    n_uncalibrated: int = 0  # impurities of scans without a pixel size (not in sizes_um)
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # column -> counts on SCORE_EDGES
    scores_nan: dict[str, int] = field(default_factory=dict)

    def merge(self, other: RegionStats) -> RegionStats:
        self.n_regions += other.n_regions
        self.n_small += other.n_small
        self.sizes_px.merge(other.sizes_px)
        self.sizes_um.merge(other.sizes_um)
        self.n_uncalibrated += other.n_uncalibrated
        for k, v in other.scores.items():
            self.scores[k] = self.scores.get(k, np.zeros(len(SCORE_EDGES) - 1, np.int64)) + v
            self.scores_nan[k] = self.scores_nan.get(k, 0) + other.scores_nan.get(k, 0)
        return self

    def to_dict(self) -> dict:
        return {
            "n_regions": self.n_regions,
            "n_small": self.n_small,
            "sizes_px": self.sizes_px.to_dict(),
            "sizes_um": self.sizes_um.to_dict(),
            "n_uncalibrated": self.n_uncalibrated,
            "scores": {k: v.tolist() for k, v in self.scores.items()},
            "scores_nan": dict(self.scores_nan),
        }

    @classmethod
    def from_dict(cls, d: dict | None) -> RegionStats:
        if not d:
            return cls()
        return cls(
            int(d["n_regions"]),
            int(d["n_small"]),
            _Sizes.from_dict(d["sizes_px"]),
            _Sizes.from_dict(d["sizes_um"]),
            int(d["n_uncalibrated"]),
            {k: np.asarray(v, np.int64) for k, v in d["scores"].items()},
            {k: int(v) for k, v in d["scores_nan"].items()},
        )

    def size_distribution(self) -> tuple[_Sizes, str]:
        """The diameter histogram to show: in µm when every sized impurity is calibrated."""
        if self.sizes_um.n and self.n_uncalibrated == 0:
            return self.sizes_um, "µm"
        return self.sizes_px, "px"

    def lognormal(self) -> dict | None:
        """Maximum-likelihood log-normal fit (location 0) of the shown diameters, from the sums.

        ``median = exp(mu)``, ``sigma`` = std of log, ``mean = exp(mu + sigma²/2)``, and the
        Kolmogorov-Smirnov distance of the fit to the binned empirical distribution (upper bin edges).
        """
        s, _unit = self.size_distribution()
        if s.n < 3:
            return None
        mu = s.sum_log / s.n
        var = max(s.sum_log2 / s.n - mu * mu, 0.0)
        sigma = math.sqrt(var)
        if sigma == 0:
            return None
        cdf_emp = np.cumsum(s.counts) / s.n
        cdf_fit = lognormal_cdf(10.0 ** LOG10_EDGES[1:], median=math.exp(mu), sigma=sigma)
        return {"n": s.n, "median": math.exp(mu), "sigma": sigma, "mean": math.exp(mu + var / 2),
                "ks_stat": float(np.max(np.abs(cdf_emp - cdf_fit)))}


def region_stats(regions: pd.DataFrame, *, calibrated: bool, size_min_area_px: int = 4) -> RegionStats:
    """The :class:`RegionStats` of one scan's RegionTable (with its ``*_score`` columns)."""
    st = RegionStats(n_regions=len(regions))
    if len(regions) == 0:
        return st
    small = np.zeros(len(regions), bool)
    if "area_px" in regions.columns and size_min_area_px > 1:
        small = regions["area_px"].to_numpy(dtype=np.float64) < size_min_area_px
    st.n_small = int(small.sum())
    if "eq_diameter_px" in regions.columns:
        st.sizes_px.add_values(regions["eq_diameter_px"].to_numpy(dtype=np.float64)[~small])
    if calibrated and "eq_diameter_um" in regions.columns:
        st.sizes_um.add_values(regions["eq_diameter_um"].to_numpy(dtype=np.float64)[~small])
    else:
        st.n_uncalibrated = int((~small).sum())
    for col in regions.columns:
        if col.endswith("_score"):
            v = regions[col].to_numpy(dtype=np.float64)
            ok = np.isfinite(v)
            st.scores[col] = np.histogram(np.clip(v[ok], 0.0, 1.0), SCORE_EDGES)[0].astype(np.int64)
            st.scores_nan[col] = int((~ok).sum())
    return st
