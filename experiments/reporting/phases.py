"""Pure drawings of a phase measurement (issue 24): the phase colour overlay with a legend, the
coating thickness profile, the pore size distribution with its log-normal fit.  Arrays in, RGB
``uint8`` (or PNG bytes) out; Matplotlib on the Agg canvas without pyplot, Pillow for the legend."""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import pandas as pd

from segmentation.phases.classical import PhaseError, to_unit_grey

__all__ = ["PHASE_COLOURS", "phase_overlay", "overlay_png", "plot_thickness_profile", "plot_phase_sizes"]

#: Colours of phases 1, 2, ... (colour-blind-safe Okabe-Ito order), cycled past eight.
PHASE_COLOURS: tuple[tuple[int, int, int], ...] = (
    (0, 114, 178), (230, 159, 0), (0, 158, 115), (204, 121, 167),
    (86, 180, 233), (213, 94, 0), (240, 228, 66), (120, 120, 120),
)


def phase_overlay(
    labels: np.ndarray,
    *,
    names: Sequence[str],
    pixels: np.ndarray | None = None,
    alpha: float = 0.45,
    legend: bool = True,
) -> np.ndarray:
    """The phase labels in colour, blended over the grey scan, with a legend band at the bottom.

    Parameters
    ----------
    labels : ndarray of int, (M, N)
        0 = unassigned (left grey / black), ``k`` = ``names[k - 1]``.
    names : sequence of str
    pixels : ndarray, optional
        The scan (any dtype, grey or RGB) under the colours; None = colours only.
    alpha : float
        Opacity of the colours over the scan, in [0, 1].
    legend : bool
        Add a band with one swatch and name (and area %) per phase.

    Returns
    -------
    ndarray, (M [+ band], N, 3), uint8
    """
    lab = np.asarray(labels)
    if lab.ndim != 2 or lab.dtype.kind not in "iu":
        raise PhaseError(f"labels must be a 2-D integer image, got shape {lab.shape} dtype {lab.dtype}")
    if lab.size and int(lab.max()) > len(names):
        raise PhaseError(f"labels go up to {int(lab.max())} but {len(names)} names were given")
    if not 0.0 <= alpha <= 1.0:
        raise PhaseError(f"alpha must be in [0, 1], got {alpha}")
    lut = np.zeros((len(names) + 1, 3), np.float64)
    for k in range(1, len(names) + 1):
        lut[k] = PHASE_COLOURS[(k - 1) % len(PHASE_COLOURS)]
    colour = lut[lab]
    if pixels is not None:
        grey = to_unit_grey(pixels)
        if grey.shape != lab.shape:
            raise PhaseError(f"pixels {grey.shape} and labels {lab.shape} differ in shape")
        base = np.repeat((grey * 255.0)[..., None], 3, axis=2)
        a = np.where(lab[..., None] > 0, alpha, 0.0)
        rgb = (1 - a) * base + a * colour
    else:
        rgb = colour
    out = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    if not legend:
        return out
    return _with_legend(out, lab, names)


def _with_legend(img: np.ndarray, lab: np.ndarray, names: Sequence[str]) -> np.ndarray:
    from PIL import Image, ImageDraw

    from ._canvas import font

    n_valid = max(int((lab > 0).sum()), 1)
    counts = np.bincount(lab.ravel().astype(np.intp), minlength=len(names) + 1)
    size = 13
    f = font(size)
    items = [f"{nm} {100.0 * counts[k] / n_valid:.1f} %" for k, nm in enumerate(names, start=1)]
    row_h = size + 8
    w = max(img.shape[1], 160)
    per_row = max(1, w // 170)
    n_rows = -(-len(items) // per_row)
    band = Image.new("RGB", (w, n_rows * row_h + 6), "white")
    d = ImageDraw.Draw(band)
    for i, text in enumerate(items):
        x, y = 6 + (i % per_row) * 170, 4 + (i // per_row) * row_h
        d.rectangle((x, y + 2, x + size, y + 2 + size - 2), fill=PHASE_COLOURS[i % len(PHASE_COLOURS)], outline="black")
        d.text((x + size + 5, y), text, fill="black", font=f)
    top = np.full((img.shape[0], w, 3), 255, np.uint8)
    top[:, : img.shape[1]] = img
    return np.concatenate([top, np.asarray(band)], axis=0)


def overlay_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB ``uint8`` image (e.g. :func:`phase_overlay`)."""
    from PIL import Image

    a = np.asarray(rgb)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise PhaseError(f"overlay_png needs an (M, N, 3) uint8 image, got {a.shape} {a.dtype}")
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()



_DPI = 100


def _canvas(width_px: int, height_px: int):
    """A Matplotlib Agg figure of this size (no pyplot): the profile plot's canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # lazy: Matplotlib only for this plot
    from matplotlib.figure import Figure  # lazy

    fig = Figure(figsize=(width_px / _DPI, height_px / _DPI), dpi=_DPI, facecolor="white")
    return fig, FigureCanvasAgg(fig)


def _rgb(fig, canvas) -> np.ndarray:
    canvas.draw()
    out = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    fig.clear()
    return out

def plot_thickness_profile(profile: np.ndarray, *, unit: str = "µm", pixel_size_um: float | None = None) -> np.ndarray:
    """Coating thickness per column (NaN = no layer) with its mean and ±1 sd band.

    ``pixel_size_um`` puts the x axis (position along the layer) in µm; px otherwise.
    """

    p = np.asarray(profile, dtype=np.float64)
    if p.ndim != 1:
        raise PhaseError(f"profile must be 1-D, got shape {p.shape}")
    fig, canvas = _canvas(760, 360)
    ax = fig.add_axes((0.09, 0.15, 0.88, 0.72))
    ok = np.isfinite(p)
    if not ok.any():
        ax.text(0.5, 0.5, "no coating layer found", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return _rgb(fig, canvas)
    x = np.arange(p.size) * (pixel_size_um if pixel_size_um else 1.0)
    xu = "µm" if pixel_size_um else "px"
    m, s = float(p[ok].mean()), float(p[ok].std(ddof=1)) if ok.sum() > 1 else 0.0
    ax.plot(x, p, color="#2171b5", lw=1, label="thickness")
    ax.axhline(m, color="#d62728", lw=1.5, label=f"mean {m:.3g} {unit}")
    ax.axhspan(m - s, m + s, color="#d62728", alpha=0.12, label=f"±1 sd ({s:.3g} {unit})")
    ax.set_xlabel(f"position along the layer ({xu})")
    ax.set_ylabel(f"thickness ({unit})")
    ax.set_ylim(0, max(float(np.nanmax(p)) * 1.15, 1e-9))
    ax.legend(loc="lower right", fontsize=9, frameon=False)
    ax.grid(True, alpha=0.3)
    ax.set_title(f"Coating thickness profile ({int((~ok).sum())} columns without a layer)", fontsize=11, loc="left")
    return _rgb(fig, canvas)


def plot_phase_sizes(regions: pd.DataFrame, *, calibrated: bool, phase: str | None = None,
                     size_min_area_px: int = 4) -> np.ndarray:
    """Size distribution (equivalent diameter) of the object-phase regions with the log-normal fit.

    ``phase`` keeps the rows of that phase only (column ``phase`` of
    :attr:`data.standards.phases.PhaseMeasurement.regions`).
    """
    from .plots import plot_size_counts
    from .stats import region_stats

    r = regions
    if phase is not None:
        if "phase" not in r.columns:
            raise PhaseError("regions has no 'phase' column")
        r = r[r["phase"] == phase]
    st = region_stats(r, calibrated=calibrated, size_min_area_px=size_min_area_px)
    sizes, unit = st.size_distribution()
    return plot_size_counts(sizes.counts, unit=unit, fit=st.lognormal(),
                            quantity="equivalent diameter")
