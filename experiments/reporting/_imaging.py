"""Array helpers shared by the heatmap and gallery renderers (no plotting here).

Everything is vectorised: scores reach pixels through a lookup table indexed by
label, previews are block reductions, boxes are painted as one ragged index set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
import pandas as pd

__all__ = [
    "BACKGROUND",
    "N_COLOURS",
    "UNSCORED",
    "block_max",
    "block_mean",
    "code_lut_rgb",
    "display_gray",
    "label_codes",
    "paint_boxes",
    "preview_factor",
    "region_boxes",
    "score_codes",
    "score_limits",
    "score_settings",
]

#: Colour codes of the per-pixel code image: 0 background, 1 scored-as-NaN, 2.. colour index.
BACKGROUND = 0
UNSCORED = 1
N_COLOURS = 256
UNSCORED_RGB = (200, 200, 200)



def display_gray(pixels: np.ndarray, *, lo: float = 70.0, hi: float = 235.0) -> np.ndarray:
    """Gray pixels as a dimmed uint8 background for colour overlays.

    Parameters
    ----------
    pixels : ndarray, shape (M, N)
        uint8, uint16, bool or float gray values.
    lo, hi : float
        Output range; the input is stretched between its 0.5 and 99.5 percentiles
        (uint8 input is mapped linearly from [0, 255]) and squeezed into [lo, hi]
        so that coloured impurities stand out on both dark and light scans.

    Returns
    -------
    ndarray, shape (M, N), uint8
    """
    px = np.asarray(pixels)
    if px.ndim != 2:
        raise ValueError(f"pixels must be a 2-D gray image (row, col), got shape {px.shape}")
    if px.dtype == np.bool_:
        px = px.astype(np.uint8) * 255
    if px.dtype == np.uint8:
        lut = np.linspace(lo, hi, 256).round().astype(np.uint8)
        return lut[px]
    work = px.astype(np.float32)
    if px.size:
        # subsample for the percentiles: exact enough and cheap on huge scans
        step = max(1, int(math.sqrt(px.size / 250_000)))
        sample = work[::step, ::step]
        finite = sample[np.isfinite(sample)]
        p0, p1 = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
    else:
        p0, p1 = 0.0, 1.0
    if not p1 > p0:
        p1 = p0 + 1.0
    work = np.nan_to_num((work - p0) / (p1 - p0), nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(lo + work * (hi - lo), 0, 255).round().astype(np.uint8)


def preview_factor(shape: tuple[int, int], max_side: int) -> int:
    """Integer down-sampling factor so that the longest side fits ``max_side``."""
    if int(max_side) < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    return max(1, math.ceil(max(shape) / int(max_side)))


def _pad_to(a: np.ndarray, factor: int, fill: Any) -> np.ndarray:
    m, n = a.shape
    pm, pn = (-m) % factor, (-n) % factor
    if pm or pn:
        a = np.pad(a, ((0, pm), (0, pn)), constant_values=fill)
    return a


def block_max(a: np.ndarray, factor: int) -> np.ndarray:
    """Max over ``factor x factor`` blocks, shape ``(ceil(M/f), ceil(N/f))`` (pads with the minimum)."""
    if factor <= 1:
        return a
    fill = np.iinfo(a.dtype).min if a.dtype.kind in "ui" else -np.inf
    p = _pad_to(a, factor, fill)
    if p.dtype in (np.uint8, np.uint16, np.int16, np.float32, np.float64):
        # a dilation anchored at each block's top-left, sampled every `factor` px (OpenCV: ~6x faster)
        d = cv2.dilate(p, np.ones((factor, factor), np.uint8), anchor=(0, 0),
                       borderType=cv2.BORDER_CONSTANT, borderValue=fill)
        return np.ascontiguousarray(d[::factor, ::factor])
    m, n = p.shape
    return p.reshape(m // factor, factor, n // factor, factor).max(axis=(1, 3))


def block_mean(a: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor x factor`` blocks (edge blocks average only real pixels), as uint8."""
    if factor <= 1:
        return a
    m, n = a.shape
    out_shape = (math.ceil(m / factor), math.ceil(n / factor))
    return cv2.resize(a, (out_shape[1], out_shape[0]), interpolation=cv2.INTER_AREA)


def score_limits(values: np.ndarray, vmin: float | None, vmax: float | None) -> tuple[float, float]:
    """Colour limits: [0, 1] when all finite scores lie there, else their range."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if vmin is None:
        vmin = 0.0 if (v.size == 0 or v.min() >= 0.0) else float(v.min())
    if vmax is None:
        vmax = 1.0 if (v.size == 0 or v.max() <= 1.0) else float(v.max())
    if not vmax > vmin:
        vmax = vmin + 1.0
    return float(vmin), float(vmax)


def score_codes(values: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Scores -> uint16 colour codes (``UNSCORED`` for NaN, ``2 + colour index`` otherwise)."""
    v = np.asarray(values, dtype=np.float64)
    t = np.clip((v - vmin) / (vmax - vmin), 0.0, 1.0)
    idx = np.rint(np.nan_to_num(t, nan=0.0) * (N_COLOURS - 1)).astype(np.uint16) + 2
    return np.where(np.isfinite(v), idx, UNSCORED).astype(np.uint16)


def code_lut_rgb(cmap: str) -> np.ndarray:
    """RGB lookup table, shape (N_COLOURS + 2, 3) uint8, for the colour codes.

    The usual colormaps come from the tables in :mod:`._colormaps` (identical values, no Matplotlib
    import); any other Matplotlib colormap is sampled from Matplotlib.
    """
    from ._colormaps import bundled_rgb  # lazy

    rgb = bundled_rgb(str(cmap), N_COLOURS)
    if rgb is None:
        from matplotlib import colormaps  # lazy

        try:
            cm = colormaps[cmap]
        except KeyError:
            raise ValueError(f"unknown matplotlib colormap {cmap!r}") from None
        rgb = (cm(np.linspace(0.0, 1.0, N_COLOURS))[:, :3] * 255).round().astype(np.uint8)
    head = np.array([[0, 0, 0], UNSCORED_RGB], dtype=np.uint8)
    return np.concatenate([head, rgb])


def label_codes(labels: np.ndarray, region_ids: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Per-pixel colour codes from a label image via a lookup table indexed by label.

    Parameters
    ----------
    labels : ndarray, shape (M, N), integer
        0 = background, k = the region whose ``region_id`` is k.
    region_ids : ndarray, shape (R,)
    codes : ndarray, shape (R,) uint16

    Returns
    -------
    ndarray, shape (M, N), uint16
        Labels without a table row are background.
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"labels must be 2-D (row, col), got shape {lab.shape}")
    if lab.dtype.kind not in "ui":
        raise ValueError(f"labels must be an integer image, got dtype {lab.dtype}")
    if lab.size and lab.min() < 0:
        raise ValueError("labels must be >= 0 (0 = background)")
    top = int(lab.max()) if lab.size else 0
    lut = np.zeros(top + 1, dtype=np.uint16)
    ids = np.asarray(region_ids, dtype=np.int64)
    ok = (ids >= 1) & (ids <= top)
    lut[ids[ok]] = np.asarray(codes, dtype=np.uint16)[ok]
    return lut[lab]


def paint_boxes(
    shape: tuple[int, int],
    boxes: np.ndarray,
    values: np.ndarray,
    *,
    outline: bool = False,
) -> np.ndarray:
    """Paint filled (or outlined) boxes into a zero image, keeping the max value per pixel.

    Parameters
    ----------
    shape : (M, N)
    boxes : ndarray, shape (K, 4)
        Inclusive ``rmin, cmin, rmax, cmax`` in the output's pixel grid (clipped).
    values : ndarray, shape (K,), unsigned int
    outline : bool
        Paint only the one-pixel border of each box.

    Returns
    -------
    ndarray, shape (M, N), dtype of ``values``
    """
    vals = np.asarray(values)
    out = np.zeros(shape, dtype=vals.dtype)
    b = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    if not len(b):
        return out
    r0 = np.clip(b[:, 0], 0, shape[0] - 1)
    c0 = np.clip(b[:, 1], 0, shape[1] - 1)
    r1 = np.clip(b[:, 2], r0, shape[0] - 1)
    c1 = np.clip(b[:, 3], c0, shape[1] - 1)
    h, w = r1 - r0 + 1, c1 - c0 + 1
    sizes = h * w
    owner = np.repeat(np.arange(len(b)), sizes)
    k = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    rr = r0[owner] + k // w[owner]
    cc = c0[owner] + k % w[owner]
    if outline:
        keep = (rr == r0[owner]) | (rr == r1[owner]) | (cc == c0[owner]) | (cc == c1[owner])
        rr, cc, owner = rr[keep], cc[keep], owner[keep]
    np.maximum.at(out, (rr, cc), vals[owner])
    return out


def _flat(prefix: str, value: Any, out: list[str]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, (list, tuple)):
        out.append(f"{prefix}=[{', '.join(map(str, value))}]")
    else:
        out.append(f"{prefix}={value}")


def score_settings(config: Mapping | None, score: str, *, max_chars: int = 160) -> str:
    """Short ``key=value`` text of the settings behind a score column, from a run config.

    Reads ``config["anomaly"]``: for ``<name>_score`` the options of scorer ``name``;
    for ``combined_score`` the ``combine`` options plus the options of its inputs.
    Returns ``""`` when nothing is known.
    """
    if not isinstance(config, Mapping):
        return ""
    anomaly = config.get("anomaly")
    if not isinstance(anomaly, Mapping):
        return ""
    scorers = anomaly.get("scorers") if isinstance(anomaly.get("scorers"), Mapping) else {}
    items: list[str] = []
    name = score.removesuffix("_score")
    if name == "combined":
        combine = anomaly.get("combine")
        if isinstance(combine, Mapping):
            _flat("", dict(combine), items)
            inputs = combine.get("inputs") or []
            for inp in inputs if isinstance(inputs, (list, tuple)) else []:
                if isinstance(scorers.get(inp), Mapping):
                    _flat(str(inp), scorers[inp], items)
    elif isinstance(scorers.get(name), Mapping):
        _flat("", scorers[name], items)
    text = ", ".join(items)
    if len(text) > max_chars:
        text = text[: max_chars - 1].rstrip(", ") + "…"
    return text


def region_boxes(regions: pd.DataFrame) -> np.ndarray:
    """``(R, 4)`` int64 inclusive boxes ``rmin, cmin, rmax, cmax`` of a region table."""
    cols = ["bbox_rmin", "bbox_cmin", "bbox_rmax", "bbox_cmax"]
    missing = [c for c in cols if c not in regions.columns]
    if missing:
        raise ValueError(f"region table lacks bounding-box columns {missing}")
    return regions[cols].to_numpy(dtype=np.int64).reshape(-1, 4)
