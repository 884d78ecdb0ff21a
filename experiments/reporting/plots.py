"""Summary plots of a run from its merged histograms (:mod:`.stats`): size distribution with a
log-normal fit, score histograms; Matplotlib on the Agg canvas, nothing left open."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_score_counts", "plot_size_counts"]

_DPI = 100


def _canvas(width_px: int, height_px: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / _DPI, height_px / _DPI), dpi=_DPI, facecolor="white")
    return fig, FigureCanvasAgg(fig)


def _rgb(fig, canvas) -> np.ndarray:
    canvas.draw()
    out = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    fig.clear()
    return out


def _log_axis(ax) -> None:
    from matplotlib.ticker import FuncFormatter

    def label(v: float, _pos: int) -> str:
        lead = v / 10 ** np.floor(np.log10(v)) if v > 0 else 0
        return f"{v:g}" if np.isclose(lead, [1, 2, 5]).any() else ""

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(label))
    ax.xaxis.set_minor_formatter(FuncFormatter(label))
    ax.tick_params(axis="x", which="minor", labelsize=8)


def plot_size_counts(
    counts: np.ndarray,
    *,
    unit: str = "px",
    fit: dict | None = None,
    quantity: str = "equivalent diameter",
) -> np.ndarray:
    """The size distribution from fixed log10 bins (:data:`experiments.reporting.stats.LOG10_EDGES`).

    Parameters
    ----------
    counts : ndarray, shape (B,)
        Impurities per bin (a whole run's merged histogram).
    fit : dict, optional
        ``RegionStats.lognormal()``: its expected counts are drawn over the bars.

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
    """
    from .stats import LOG10_EDGES, lognormal_cdf

    c = np.asarray(counts, dtype=np.float64)
    edges = 10.0 ** LOG10_EDGES
    fig, canvas = _canvas(760, 420)
    ax = fig.add_axes((0.09, 0.13, 0.88, 0.75))
    n = int(c.sum())
    if n == 0:
        ax.text(0.5, 0.5, "no impurities", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return _rgb(fig, canvas)
    nz = np.flatnonzero(c)
    lo, hi = max(0, nz[0] - 1), min(len(c), nz[-1] + 2)
    ax.bar(edges[lo:hi], c[lo:hi], width=np.diff(edges)[lo:hi], align="edge", color="#6baed6", ec="#2171b5",
           lw=0.5, label=f"impurities (n={n:,})")
    if fit is not None:
        cdf = lognormal_cdf(edges[lo : hi + 1], median=fit["median"], sigma=fit["sigma"])
        centres = np.sqrt(edges[lo:hi] * edges[lo + 1 : hi + 1])
        ax.plot(centres, n * np.diff(cdf), color="#d62728", lw=2,
                label=f"log-normal fit: median {fit['median']:.3g} {unit}, σ(log) {fit['sigma']:.3g}")
        ax.axvline(fit["median"], color="#d62728", ls=":", lw=1)
    _log_axis(ax)
    ax.set_xlim(edges[lo], edges[hi])
    ax.set_ylim(0, max(1.0, c.max()) * 1.3)
    ax.set_xlabel(f"{quantity} ({unit}, log scale)")
    ax.set_ylabel("count per bin")
    ax.legend(loc="upper right", fontsize=9, frameon=False)
    ax.grid(True, which="major", alpha=0.3)
    title = f"Impurity size distribution ({quantity})"
    if fit is not None:
        title += f" — KS D = {fit['ks_stat']:.3f}"
    ax.set_title(title, fontsize=11, loc="left")
    return _rgb(fig, canvas)


def plot_score_counts(scores: dict[str, np.ndarray], nan_counts: dict[str, int] | None = None) -> np.ndarray:
    """One histogram per score column from fixed bins on [0, 1] (:data:`SCORE_EDGES`)."""
    from .stats import SCORE_EDGES

    cols = list(scores)
    n = max(1, len(cols))
    ncol = min(2, n)
    nrow = int(np.ceil(n / ncol))
    fig, canvas = _canvas(380 * ncol + 20, 260 * nrow + 20)
    if not cols:
        fig.text(0.5, 0.5, "no score columns", ha="center", va="center")
        return _rgb(fig, canvas)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for ax, col in zip(axes.ravel(), cols, strict=False):
        c = np.asarray(scores[col], dtype=np.float64)
        total = int(c.sum())
        if total:
            ax.bar(SCORE_EDGES[:-1], c, width=np.diff(SCORE_EDGES), align="edge", color="#74c476", ec="#238b45", lw=0.5)
            if c.max() > 200:  # long tails of large archives stay visible
                ax.set_yscale("log")
        else:
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        missing = int((nan_counts or {}).get(col, 0))
        ax.set_title(f"{col} (n={total:,}" + (f", {missing:,} NaN)" if missing else ")"), fontsize=10)
        ax.set_xlabel("score", fontsize=9)
        ax.set_ylabel("count", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
    for ax in axes.ravel()[len(cols):]:
        ax.set_axis_off()
    fig.tight_layout()
    return _rgb(fig, canvas)
