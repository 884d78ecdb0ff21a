"""Summary plots of a run from its merged histograms (:mod:`.stats`): size distribution with a
log-normal fit, score histograms.

Drawn with Pillow on the report's :class:`~._canvas.Canvas` (a few milliseconds) in the look of
the Matplotlib figures they replace (DejaVu Sans, the same colours, sizes, ticks and labels):
importing and laying out a Matplotlib figure cost about 0.8 s of every run's report.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["plot_score_counts", "plot_size_counts"]

_PT = 100 / 72  # px per point at the figures' 100 dpi (Matplotlib sizes are in points)
_BLACK = (0, 0, 0)
_GRID = (231, 231, 231)  # Matplotlib's grid colour #b0b0b0 at alpha 0.3 on white
_SIZE_BAR, _SIZE_EDGE = (107, 174, 214), (33, 113, 181)  # #6baed6, #2171b5
_SCORE_BAR, _SCORE_EDGE = (116, 196, 118), (35, 139, 69)  # #74c476, #238b45
_FIT = (214, 39, 40)  # #d62728
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _px(points: float) -> int:
    return max(1, int(round(points * _PT)))


def _nice_ticks(lo: float, hi: float, length_px: float, font_px: int, *, spacing: float) -> np.ndarray:
    """Round tick values in [lo, hi] (steps 1, 2, 2.5, 5 x 10^k), at most one per ``spacing`` label heights.

    Matplotlib's default locator: 2 label heights apart on a y axis, 3 on an x axis.
    """
    span = hi - lo
    if not span > 0:
        return np.array([lo])
    max_ticks = max(1, int(length_px / (spacing * font_px)))
    raw = span / max_ticks
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next((m * mag for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * mag >= raw), 10.0 * mag)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = np.arange(first, hi + step * 1e-9, step)
    return np.round(ticks, 12)


def _tick_labels(ticks: np.ndarray) -> list[str]:
    """The same number of decimals for every label (0.0, 0.2, ...; 0, 5, 10, ...)."""
    if len(ticks) < 2:
        return [f"{t:g}" for t in ticks]
    step = float(np.min(np.diff(ticks)))
    decimals = 0
    while decimals < 6 and abs(round(step, decimals) - step) > 1e-9 * max(1.0, abs(step)):
        decimals += 1
    return [f"{t:.{decimals}f}".replace("-", "−") if t != 0 else f"{0:.{decimals}f}" for t in ticks]


def _log_label(v: float) -> str:
    """The size axis' labels: 1, 2 and 5 of every decade (``2``, ``5``, ``10``, ``20``, ...)."""
    lead = v / 10 ** np.floor(np.log10(v)) if v > 0 else 0
    return f"{v:g}" if np.isclose(lead, [1, 2, 5]).any() else ""


class _Axes:
    """One plot area of a :class:`Canvas`: data limits, linear or log scales, and drawing in data units."""

    def __init__(self, canvas, box: tuple[int, int, int, int], xlim, ylim, *, xlog: bool = False,
                 ylog: bool = False):
        self.c = canvas
        self.x0, self.y0, self.x1, self.y1 = box  # pixel box, y0 = top
        self.xlog, self.ylog = xlog, ylog
        self.xlim = tuple(math.log10(v) for v in xlim) if xlog else tuple(xlim)
        self.ylim = tuple(math.log10(v) for v in ylim) if ylog else tuple(ylim)

    def px(self, x, y):
        x = np.log10(np.maximum(np.asarray(x, float), 1e-300)) if self.xlog else np.asarray(x, float)
        y = np.log10(np.maximum(np.asarray(y, float), 1e-300)) if self.ylog else np.asarray(y, float)
        fx = (x - self.xlim[0]) / (self.xlim[1] - self.xlim[0])
        fy = (y - self.ylim[0]) / (self.ylim[1] - self.ylim[0])
        return self.x0 + fx * (self.x1 - self.x0), self.y1 - fy * (self.y1 - self.y0)

    def _clip_x(self, v):
        return np.clip(v, self.x0, self.x1)

    def _clip_y(self, v):
        return np.clip(v, self.y0, self.y1)

    def bars(self, left: np.ndarray, heights: np.ndarray, widths: np.ndarray, *, fill, edge) -> None:
        bottom = 10.0 ** self.ylim[0] if self.ylog else 0.0
        xa, ya = self.px(left, np.maximum(heights, bottom))
        xb, yb = self.px(np.asarray(left, float) + widths, np.full(len(left), bottom))
        for a, b, top, base, h in zip(self._clip_x(xa), self._clip_x(xb), self._clip_y(ya), self._clip_y(yb),
                                      heights, strict=True):
            if h > 0 and b - a >= 0.5:
                self.c.draw.rectangle((round(a), round(top), round(b), round(base)), fill=fill, outline=edge, width=1)

    def curve(self, x: np.ndarray, y: np.ndarray, *, fill, width: int) -> None:
        px, py = self.px(x, y)
        pts = list(zip(self._clip_x(px).tolist(), self._clip_y(py).tolist(), strict=True))
        if len(pts) > 1:
            self.c.draw.line(pts, fill=fill, width=width, joint="curve")

    def vline(self, x: float, *, fill, dotted: bool) -> None:
        px, _ = self.px(x, 1.0 if self.ylog else 0.0)
        if not self.x0 <= px <= self.x1:
            return
        px = round(float(px))
        if not dotted:
            self.c.draw.line((px, self.y0, px, self.y1), fill=fill, width=1)
            return
        for y in range(self.y0, self.y1, 3):
            self.c.draw.line((px, y, px, min(y + 1, self.y1)), fill=fill, width=1)

    def xticks(self, ticks, labels, *, size: int, length: int, grid: bool) -> None:
        px, _ = self.px(ticks, np.ones(len(ticks)))
        for x, label in zip(px, labels, strict=True):
            if not self.x0 - 0.5 <= x <= self.x1 + 0.5:
                continue
            x = round(float(x))
            if grid:
                self.c.draw.line((x, self.y0, x, self.y1), fill=_GRID, width=1)
            self.c.draw.line((x, self.y1, x, self.y1 + length), fill=_BLACK, width=1)
            if label:
                self.c.text(x, self.y1 + length + _px(3.5), label, size=size, anchor="mt")

    def yticks(self, ticks, labels, *, size: int, length: int, grid: bool) -> int:
        """Draw; return the widest label's width (to place the axis label beside it)."""
        _, py = self.px(np.ones(len(ticks)), ticks)
        widest = 0
        for y, label in zip(py, labels, strict=True):
            if not self.y0 - 0.5 <= y <= self.y1 + 0.5:
                continue
            y = round(float(y))
            if grid:
                self.c.draw.line((self.x0, y, self.x1, y), fill=_GRID, width=1)
            self.c.draw.line((self.x0 - length, y, self.x0, y), fill=_BLACK, width=1)
            if label:
                self.c.text(self.x0 - length - _px(3.5), y, label, size=size, anchor="rm")
                widest = max(widest, int(self.c.draw.textlength(label, font=_font(size))))
        return widest

    def frame(self) -> None:
        self.c.draw.rectangle((self.x0, self.y0, self.x1, self.y1), outline=_BLACK, width=1)

    def linear_y(self, *, size: int, grid: bool) -> int:
        ticks = _nice_ticks(self.ylim[0], self.ylim[1], self.y1 - self.y0, size, spacing=2.0)
        return self.yticks(ticks, _tick_labels(ticks), size=size, length=_px(3.5), grid=grid)

    def log_y(self, *, size: int, grid: bool) -> int:
        lo, hi = math.floor(self.ylim[0]), math.ceil(self.ylim[1])
        major = 10.0 ** np.arange(lo, hi + 1)
        minor = np.array([m * 10.0 ** k for k in range(lo, hi + 1) for m in range(2, 10)])
        self.yticks(minor, [""] * len(minor), size=size, length=_px(2), grid=False)
        labels = [f"10{str(int(k)).translate(_SUPERSCRIPT)}" for k in range(lo, hi + 1)]
        return self.yticks(major, labels, size=size, length=_px(3.5), grid=grid)

    def xlabel(self, text: str, *, size: int, tick_size: int) -> None:
        y = self.y1 + _px(3.5) + _px(3.5) + int(tick_size * 1.2) + _px(4)
        self.c.text((self.x0 + self.x1) / 2, y, text, size=size, anchor="mt")

    def ylabel(self, text: str, *, size: int, label_width: int) -> None:
        from PIL import Image, ImageDraw  # lazy

        f = _font(size)
        w = int(f.getlength(text)) + 4
        im = Image.new("L", (w, int(size * 1.4)), 0)
        ImageDraw.Draw(im).text((2, 0), text, font=f, fill=255)
        rot = im.rotate(90, expand=True)
        x = self.x0 - _px(3.5) - _px(3.5) - label_width - _px(4) - rot.size[0]
        y = int((self.y0 + self.y1 - rot.size[1]) / 2)
        self.c.image.paste(_BLACK, (max(0, x), y), rot)

    def title(self, text: str, *, size: int, left: bool) -> None:
        y = self.y0 - _px(6)
        if left:
            self.c.text(self.x0, y, text, size=size, anchor="ld")
        else:
            self.c.text((self.x0 + self.x1) / 2, y, text, size=size, anchor="md")


def _font(size: int):
    from ._canvas import font  # lazy

    return font(size)


def _canvas(width: int, height: int):
    from ._canvas import Canvas  # lazy

    return Canvas(width, height)


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
    unit : str
        Unit of the sizes (axis label and legend).
    fit : dict, optional
        ``RegionStats.lognormal()``: its expected counts are drawn over the bars.
    quantity : str
        What the sizes are (title and axis label).

    Returns
    -------
    ndarray, shape (420, 760, 3), uint8
    """
    from .stats import LOG10_EDGES, lognormal_cdf  # lazy

    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or len(c) != len(LOG10_EDGES) - 1:
        raise ValueError(f"counts must have shape ({len(LOG10_EDGES) - 1},) (one per size bin), got {c.shape}")
    edges = 10.0 ** LOG10_EDGES
    width, height = 760, 420
    canvas = _canvas(width, height)
    box = (round(0.09 * width), round((1 - 0.13 - 0.75) * height), round(0.97 * width), round((1 - 0.13) * height))
    n = int(c.sum())
    if n == 0:
        canvas.text(width / 2, height / 2, "no impurities", size=_px(10), anchor="mm")
        return canvas.array()
    nz = np.flatnonzero(c)
    lo, hi = max(0, nz[0] - 1), min(len(c), nz[-1] + 2)
    ax = _Axes(canvas, box, (edges[lo], edges[hi]), (0.0, max(1.0, c.max()) * 1.3), xlog=True)
    tick, small = _px(10), _px(8)
    # grid and ticks first, data over them, the frame last
    dmin, dmax = math.floor(math.log10(edges[lo])), math.ceil(math.log10(edges[hi]))
    values = np.array([m * 10.0 ** k for k in range(dmin, dmax + 1) for m in range(1, 10)])
    major = np.isclose(values / 10.0 ** np.floor(np.log10(values) + 1e-9), 1.0)
    labels = [_log_label(v) for v in values]
    ax.xticks(values[major], [l for l, m in zip(labels, major, strict=True) if m], size=tick, length=_px(3.5), grid=True)
    ax.xticks(values[~major], [l for l, m in zip(labels, major, strict=True) if not m], size=small, length=_px(2),
              grid=False)
    label_w = ax.linear_y(size=tick, grid=True)
    ax.bars(edges[lo:hi], c[lo:hi], np.diff(edges)[lo:hi], fill=_SIZE_BAR, edge=_SIZE_EDGE)
    legend = []
    if fit is not None:
        cdf = lognormal_cdf(edges[lo : hi + 1], median=fit["median"], sigma=fit["sigma"])
        centres = np.sqrt(edges[lo:hi] * edges[lo + 1 : hi + 1])
        ax.curve(centres, n * np.diff(cdf), fill=_FIT, width=_px(2))
        ax.vline(fit["median"], fill=_FIT, dotted=True)
        legend.append(("line", f"log-normal fit: median {fit['median']:.3g} {unit}, σ(log) {fit['sigma']:.3g}"))
    legend.append(("bar", f"impurities (n={n:,})"))
    ax.frame()
    _legend(canvas, ax, legend, size=_px(9))
    ax.xlabel(f"{quantity} ({unit}, log scale)", size=tick, tick_size=tick)
    ax.ylabel("count per bin", size=tick, label_width=label_w)
    title = f"Impurity size distribution ({quantity})"
    if fit is not None:
        title += f" — KS D = {fit['ks_stat']:.3f}"
    ax.title(title, size=_px(11), left=True)
    return canvas.array()


def _legend(canvas, ax: _Axes, entries: list[tuple[str, str]], *, size: int) -> None:
    """Upper right, no frame: a line or a bar patch, then the label."""
    f = _font(size)
    handle, gap, pad = _px(20), _px(8), _px(6)
    text_w = max(int(f.getlength(label)) for _, label in entries)
    x = ax.x1 - pad - text_w - gap - handle
    y = ax.y0 + pad
    row = int(size * 1.45)
    for kind, label in entries:
        cy = y + row // 2
        if kind == "line":
            canvas.draw.line((x, cy, x + handle, cy), fill=_FIT, width=_px(2))
        else:
            canvas.draw.rectangle((x, cy - size // 3, x + handle, cy + size // 3), fill=_SIZE_BAR, outline=_SIZE_EDGE,
                                  width=1)
        canvas.text(x + handle + gap, cy, label, size=size, anchor="lm")
        y += row


def plot_score_counts(scores: dict[str, np.ndarray], nan_counts: dict[str, int] | None = None) -> np.ndarray:
    """One histogram per score column from fixed bins on [0, 1] (:data:`.stats.SCORE_EDGES`).

    Parameters
    ----------
    scores : dict of str to ndarray, shape (50,)
        Counts per bin of each score column (a whole run's merged histograms).
    nan_counts : dict of str to int, optional
        NaN values per column (named in the panel's title).

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
        Two panels per row, 260 x 380 px each (plus a 20 px margin).
    """
    from .stats import SCORE_EDGES  # lazy

    cols = list(scores)
    n = max(1, len(cols))
    ncol = min(2, n)
    nrow = int(np.ceil(n / ncol))
    width, height = 380 * ncol + 20, 260 * nrow + 20
    canvas = _canvas(width, height)
    if not cols:
        canvas.text(width / 2, height / 2, "no score columns", size=_px(10), anchor="mm")
        return canvas.array()
    tick, label, title = _px(8), _px(9), _px(10)
    left, right, top, bottom = 10 + _px(40), _px(10), _px(26), _px(36)
    cell_w, cell_h = (width - 10) / ncol, (height - 10) / nrow
    for i, col in enumerate(cols):
        c = np.asarray(scores[col], dtype=np.float64)
        if c.shape != (len(SCORE_EDGES) - 1,):
            raise ValueError(f"scores[{col!r}] must have shape ({len(SCORE_EDGES) - 1},), got {c.shape}")
        r, k = divmod(i, ncol)
        box = (round(5 + k * cell_w + left), round(5 + r * cell_h + top),
               round(5 + (k + 1) * cell_w - right), round(5 + (r + 1) * cell_h - bottom))
        total = int(c.sum())
        ylog = bool(total and c.max() > 200)  # long tails of large archives stay visible
        if ylog:
            lo_c, hi_c = math.log10(c[c > 0].min()), math.log10(c.max())
            margin = 0.05 * max(hi_c - lo_c, 1.0)
            ylim = (10.0 ** (lo_c - margin), 10.0 ** (hi_c + margin))
        else:
            ylim = (0.0, max(c.max(), 1.0) * 1.05 if total else 1.0)
        ax = _Axes(canvas, box, (-0.05, 1.05), ylim, ylog=ylog)
        xt = _nice_ticks(-0.05, 1.05, box[2] - box[0], tick, spacing=3.0)
        ax.xticks(xt, _tick_labels(xt), size=tick, length=_px(3.5), grid=True)
        label_w = ax.log_y(size=tick, grid=True) if ylog else ax.linear_y(size=tick, grid=True)
        if total:
            ax.bars(SCORE_EDGES[:-1], c, np.diff(SCORE_EDGES), fill=_SCORE_BAR, edge=_SCORE_EDGE)
        else:
            canvas.text((box[0] + box[2]) / 2, (box[1] + box[3]) / 2, "no values", size=_px(10), anchor="mm")
        ax.frame()
        missing = int((nan_counts or {}).get(col, 0))
        ax.title(f"{col} (n={total:,}" + (f", {missing:,} NaN)" if missing else ")"), size=title, left=False)
        ax.xlabel("score", size=label, tick_size=tick)
        ax.ylabel("count", size=label, label_width=label_w)
    return canvas.array()
