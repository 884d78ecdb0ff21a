"""Score heatmaps: a scan in gray with every impurity coloured by its anomaly score.

Pixels get their colour through a lookup table indexed by label (or by painting
bounding boxes when no label image is at hand), large scans are previewed at an
integer block-reduction factor (a block takes the highest score in it, so small
impurities do not vanish), clusters are outlined and tagged with their archive
rank.  Matplotlib is used object-oriented on the Agg canvas (no pyplot, no
global figure registry), so nothing is left open.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from ._imaging import (
    BACKGROUND,
    UNSCORED,
    block_max,
    block_mean,
    code_lut_rgb,
    display_gray,
    label_codes,
    paint_boxes,
    preview_factor,
    region_boxes,
    score_codes,
    score_limits,
)

__all__ = [
    "CLUSTER_COLOUR",
    "heatmap_preview",
    "render_heatmap",
    "save_heatmap",
    "write_png",
]

log = logging.getLogger(__name__)

#: Outline colour of clusters (heatmaps) and cluster boxes (gallery).
CLUSTER_COLOUR = "#ff2d55"
#: Hatching of excluded pixels (annotations, outside the region of interest).
EXCLUDED_RGB = (255, 150, 0)


def _cluster_boxes(clusters: pd.DataFrame | None, regions: pd.DataFrame) -> pd.DataFrame:
    if clusters is None or len(clusters) == 0:
        return pd.DataFrame(columns=["bbox_rmin", "bbox_cmin", "bbox_rmax", "bbox_cmax", "tag"])
    c = clusters
    if "scan_id" in c.columns and "scan_id" in regions.columns:
        ids = pd.unique(regions["scan_id"])
        if len(ids) == 1:
            c = c[c["scan_id"] == ids[0]]
    region_boxes(c)  # validates the bbox columns
    if "tag" in c.columns:  # given by the caller (the stage: the cluster's order in its scan)
        tag = ["" if pd.isna(t) else str(t) for t in c["tag"]]
    elif "rank" in c.columns:
        tag = ["#" + str(int(r)) if pd.notna(r) else "" for r in c["rank"]]
    elif "cluster_id" in c.columns:
        tag = ["c" + str(int(r)) for r in c["cluster_id"]]
    else:
        tag = [""] * len(c)
    out = c[["bbox_rmin", "bbox_cmin", "bbox_rmax", "bbox_cmax"]].copy()
    out["tag"] = tag
    order_col = "scan_rank" if "scan_rank" in c.columns else ("rank" if "rank" in c.columns else None)
    if order_col:  # draw the best-ranked last, on top
        out = out.iloc[np.argsort(-c[order_col].to_numpy(dtype=np.float64), kind="stable")]
    return out


def _check(pixels: np.ndarray, regions: pd.DataFrame, score: str) -> np.ndarray:
    px = np.asarray(pixels)
    if px.ndim != 2 or min(px.shape, default=0) == 0:
        raise ValueError(f"pixels must be a non-empty 2-D image (row, col), got shape {px.shape}")
    if not isinstance(regions, pd.DataFrame):
        raise ValueError(f"regions must be a pandas DataFrame, got {type(regions).__name__}")
    if "region_id" not in regions.columns:
        raise ValueError("regions lacks the 'region_id' column")
    if score not in regions.columns:
        have = sorted(c for c in regions.columns if c.endswith("_score"))
        raise ValueError(f"score column {score!r} not in regions; score columns present: {have}")
    return px


def heatmap_preview(
    pixels: np.ndarray,
    regions: pd.DataFrame,
    *,
    score: str = "combined_score",
    labels: np.ndarray | None = None,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    max_side: int = 2048,
) -> tuple[np.ndarray, int, tuple[float, float], bool]:
    """The coloured preview alone (no title, colour bar or cluster boxes).

    Parameters are those of :func:`render_heatmap`.

    Returns
    -------
    rgb : ndarray, shape (ceil(M / f), ceil(N / f), 3), uint8
        Background = dimmed gray scan; impurity pixels = colormap colour of their
        score (NaN = light gray).  A ``f x f`` block shows the highest score in it.
    factor : int
        The reduction factor ``f`` (1 = full resolution).
    limits : (float, float)
        The colour limits used.
    any_unscored : bool
        Whether a NaN-scored impurity is visible.
    """
    px = _check(pixels, regions, score)
    values = regions[score].to_numpy(dtype=np.float64)
    lo, hi = score_limits(values, vmin, vmax)
    lut = code_lut_rgb(cmap)
    factor = preview_factor(px.shape, max_side)
    gray = block_mean(display_gray(px), factor)
    codes = score_codes(values, lo, hi)
    ids = regions["region_id"].to_numpy(dtype=np.int64) if len(regions) else np.zeros(0, np.int64)
    if labels is not None:
        lab = np.asarray(labels)
        if lab.shape != px.shape:
            raise ValueError(f"labels shape {lab.shape} differs from pixels shape {px.shape}")
        code_img = block_max(label_codes(lab, ids, codes), factor)
    else:
        boxes = region_boxes(regions) // factor
        code_img = paint_boxes(gray.shape, boxes, codes)
    rgb = np.take(lut, code_img, axis=0)
    np.copyto(rgb, gray[..., None], where=(code_img == BACKGROUND)[..., None])  # background: the dimmed scan
    return rgb, factor, (lo, hi), bool(np.any(code_img == UNSCORED))


def render_heatmap(
    pixels: np.ndarray,
    regions: pd.DataFrame,
    *,
    score: str = "combined_score",
    labels: np.ndarray | None = None,
    clusters: pd.DataFrame | None = None,
    title: str | None = None,
    settings: str | None = None,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    max_side: int = 2048,
    min_side: int = 480,
    exclusion: np.ndarray | None = None,
) -> np.ndarray:
    """Render a scan with its impurities coloured by an anomaly score.

    Parameters
    ----------
    pixels : ndarray, shape (M, N)
        Gray scan (uint8, uint16, bool or float), or a binary mask.
    regions : pandas.DataFrame
        RegionTable of this scan with ``region_id``, the ``bbox_*`` columns and
        the ``score`` column (NaN = not scored, drawn light gray).
    score : str
        Score column to colour by.
    labels : ndarray, shape (M, N), integer, optional
        Label image (0 = background, k = ``region_id`` k).  Gives exact impurity
        pixels; without it each impurity's bounding box is filled.
    clusters : pandas.DataFrame, optional
        Clusters of this scan (``bbox_*`` columns, ``rank`` and/or ``cluster_id``),
        outlined in :data:`CLUSTER_COLOUR` and tagged ``#rank``.  When both tables
        carry ``scan_id`` and ``regions`` holds a single scan, other scans' clusters
        are ignored.
    title : str, optional
        First title line; defaults to the score name.
    settings : str, optional
        Second, smaller title line naming the score's settings (e.g. ``k=50``).
    cmap : str
        Matplotlib colormap (perceptually uniform: viridis, cividis, magma...).
    vmin, vmax : float, optional
        Colour limits; default [0, 1] when all scores lie there, else their range.
    max_side : int
        Longest side of the preview: larger scans are reduced by an integer
        factor (block mean for the gray, block max of the score colours).
    min_side : int
        Smaller scans are enlarged by an integer factor (nearest) up to this side.
    exclusion : ndarray, shape (M, N), bool, optional
        Pixels excluded from the analysis (annotations, outside the region of interest): hatched.

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
        The figure: preview, colour bar, title.

    Raises
    ------
    ValueError
        On a non 2-D image, a missing column or mismatched label image.
    """
    rgb, factor, (lo, hi), any_unscored = heatmap_preview(
        pixels,
        regions,
        score=score,
        labels=labels,
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        max_side=max_side,
    )
    any_excluded = False
    if exclusion is not None:
        ex = np.asarray(exclusion, dtype=bool)
        if ex.shape != np.shape(pixels):
            raise ValueError(f"exclusion shape {ex.shape} differs from pixels shape {np.shape(pixels)}")
        small = block_max(ex.astype(np.uint8), factor)[: rgb.shape[0], : rgb.shape[1]].astype(bool)
        if small.any():
            any_excluded = True
            rr, cc = np.nonzero(small)
            stripe = ((rr + cc) // 4) % 2 == 0  # diagonal hatching in orange
            rgb = rgb.copy()
            rgb[rr[stripe], cc[stripe]] = EXCLUDED_RGB
            rgb[rr[~stripe], cc[~stripe]] = (0.5 * rgb[rr[~stripe], cc[~stripe]] + 0.5 * np.array(EXCLUDED_RGB)).astype(np.uint8)
    up = max(1, int(min_side) // max(rgb.shape[:2]))
    if up > 1:
        rgb = np.repeat(np.repeat(rgb, up, axis=0), up, axis=1)
    boxes = _cluster_boxes(clusters, regions)
    notes = []
    if any_excluded:
        notes.append("hatched: excluded (annotations / outside the region of interest)")
    if len(boxes):
        local = clusters is not None and "tag" in clusters.columns
        notes.append("boxes: clusters, numbered by their order in this scan" if local
                     else "boxes: clusters (#rank in archive)")
    if any_unscored:
        notes.append("light gray: not scored")
    if factor > 1:
        notes.append(f"preview 1:{factor}")
    elif up > 1:
        notes.append(f"enlarged {up}x")
    return _figure(
        rgb,
        scale=up / factor,
        boxes=boxes,
        title=title if title is not None else score,
        settings=" · ".join([s for s in [settings or "", *notes] if s]),
        cmap=cmap,
        lo=lo,
        hi=hi,
        cbar_label=score,
    )


def _hex(c: str) -> tuple[int, int, int]:
    return tuple(int(c[i : i + 2], 16) for i in (1, 3, 5))


def _figure(
    rgb: np.ndarray,
    *,
    scale: float,
    boxes: pd.DataFrame,
    title: str,
    settings: str,
    cmap: str,
    lo: float,
    hi: float,
    cbar_label: str,
) -> np.ndarray:
    """The preview with a title, the settings line, cluster boxes and a colour bar (Pillow)."""
    from ._canvas import Canvas, text_width, wrap
    from ._imaging import code_lut_rgb

    h, w = rgb.shape[:2]
    fs = int(np.clip(w / 85.0, 10.0, 20.0) * 100 / 72)  # px; readable when scaled to a page
    small = int(0.8 * fs)
    title_lines = wrap(title, w, fs, bold=True) or [""]
    set_lines = wrap(settings, w, small) if settings else []
    top = int(8 + len(title_lines) * 1.3 * fs + len(set_lines) * 1.3 * small + 6)
    cbar_w = int(np.clip(0.022 * w, 12, 30))
    right = int(cbar_w + 16 + text_width("0.000", small) + 1.6 * small + 8)
    left, bottom = 8, 8
    canvas = Canvas(left + w + right, top + h + bottom)
    canvas.paste(rgb, left, top)
    red = _hex(CLUSTER_COLOUR)
    lw = int(np.clip(w / 400.0, 2, 5))
    for rmin, cmin, rmax, cmax, tag in boxes.itertuples(index=False):  # a few clusters only
        x0, y0 = left + cmin * scale, top + rmin * scale
        x1 = left + max((cmax + 1) * scale, cmin * scale + 2) - 1
        y1 = top + max((rmax + 1) * scale, rmin * scale + 2) - 1
        canvas.rect((x0, y0, x1, y1), outline=red, width=lw)
        if tag:
            if y0 - top > 1.4 * small + lw:  # above the box
                canvas.tag(x0, y0 - lw, str(tag), size=small, bg=red, anchor="lb", clip=(left + w, top + h))
            else:  # inside its top-left corner
                canvas.tag(x0 + lw, y0 + lw, str(tag), size=small, bg=red, anchor="lt", clip=(left + w, top + h))
    y = 8.0
    for line in title_lines:
        canvas.text(left, y, line, size=fs, bold=True)
        y += 1.3 * fs
    for line in set_lines:
        canvas.text(left, y, line, size=small, fill=(51, 51, 51))
        y += 1.3 * small
    lut = code_lut_rgb(cmap)[2:]
    canvas.colorbar(left + w + 10, top, cbar_w, h, lut, lo, hi, label=cbar_label, size=small)
    return canvas.array()


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an RGB uint8 image as PNG (creating parent folders); returns the path."""
    path = Path(path)
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {arr.shape} {arr.dtype}")
    ok, buf = cv2.imencode(".png", cv2.cvtColor(arr, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"PNG encoding failed for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.tobytes())
    return path


def save_heatmap(path: str | Path, pixels: np.ndarray, regions: pd.DataFrame, **kwargs) -> Path:
    """Render with :func:`render_heatmap` (same keyword options) and write a PNG to ``path``.

    Returns
    -------
    Path
        The written file (parent folders are created).
    """
    rgb = render_heatmap(pixels, regions, **kwargs)
    out = write_png(path, rgb)
    log.debug("heatmap %s (%dx%d)", out, rgb.shape[1], rgb.shape[0])
    return out
