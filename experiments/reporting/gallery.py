"""Ranked region gallery: one annotated crop per anomalous cluster.

A crop shows the cluster's window (its bounding box plus a margin) with every
impurity outlined: cluster members in their score colour (tinted inside),
other impurities in light blue, core members marked with a dot, the cluster box
dashed, a scale bar, and a caption with rank, score, percentile, member count
and key measurements (micrometres when the scan is calibrated).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
import pandas as pd

from ._imaging import (
    code_lut_rgb,
    display_gray,
    paint_boxes,
    region_boxes,
    score_codes,
    score_limits,
)
from .heatmaps import CLUSTER_COLOUR
from .nouns import object_noun

__all__ = ["cluster_facts", "crop_window", "fmt_num", "object_noun", "parse_ids", "render_cluster_crop"]

_OTHER_RGB = np.array([120, 200, 255], dtype=np.uint8)
_BAR_H = 22  # px, scale-bar strip under the crop


def fmt_num(x: Any, digits: int = 3) -> str:
    """Compact human number: 3 significant digits, thousands separated below a million, '–' for NaN/None."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "–" if x is None else str(x)
    if not math.isfinite(v):
        return "–"
    if v == 0:
        return "0"
    if abs(v) >= 1e6:
        return f"{v:.{digits}g}"
    if abs(v) >= 10**digits:
        return f"{v:,.0f}"
    if abs(v) < 10 ** -(digits - 1):
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}"


def parse_ids(text: Any) -> np.ndarray:
    """Region ids from a ``"3;17"`` string (or a list); empty for NaN/None."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return np.zeros(0, dtype=np.int64)
    if isinstance(text, (list, tuple, np.ndarray)):
        return np.asarray(text, dtype=np.int64)
    parts = [p for p in str(text).replace(",", ";").split(";") if p.strip()]
    try:
        return np.asarray([int(float(p)) for p in parts], dtype=np.int64)
    except ValueError:
        raise ValueError(f"cannot parse region ids from {text!r}") from None


def crop_window(
    cluster: Mapping,
    shape: tuple[int, int],
    *,
    margin: float = 0.3,
    min_margin_px: int = 16,
) -> tuple[int, int, int, int]:
    """Inclusive window ``rmin, cmin, rmax, cmax`` around a cluster box, clipped to ``shape``."""
    r0, c0, r1, c1 = (int(cluster[k]) for k in ("bbox_rmin", "bbox_cmin", "bbox_rmax", "bbox_cmax"))
    if r1 < r0 or c1 < c0:
        raise ValueError(f"cluster box is empty: rows {r0}..{r1}, cols {c0}..{c1}")
    pad = int(max(min_margin_px, margin * max(r1 - r0 + 1, c1 - c0 + 1)))
    return (
        max(0, r0 - pad),
        max(0, c0 - pad),
        min(shape[0] - 1, r1 + pad),
        min(shape[1] - 1, c1 + pad),
    )


def _members(regions: pd.DataFrame, cluster: Mapping) -> pd.DataFrame:
    reg = regions
    if "scan_id" in reg.columns and "scan_id" in cluster:
        reg = reg[reg["scan_id"] == cluster["scan_id"]]
    if "cluster_id" in reg.columns and "cluster_id" in cluster:
        return reg[reg["cluster_id"] == cluster["cluster_id"]]
    return reg.iloc[0:0]


def cluster_facts(
    cluster: Mapping,
    members: pd.DataFrame,
    *,
    score: str = "combined_score",
    pixel_size_um: float | None = None,
) -> list[tuple[str, str]]:
    """Label/value pairs describing a cluster, for captions and HTML cards.

    Lengths and areas are given in micrometres when the table has the ``_um``
    twins or ``pixel_size_um`` is known, otherwise in pixels.
    """
    facts: list[tuple[str, str]] = []
    if "rank" in cluster and pd.notna(cluster["rank"]):
        facts.append(("rank", f"#{int(cluster['rank'])}"))
    if "score" in cluster:
        facts.append(("cluster score", fmt_num(cluster["score"])))
    if "norm_score" in cluster:
        facts.append(("normalised", fmt_num(cluster["norm_score"])))
    if "percentile" in cluster and pd.notna(cluster["percentile"]):
        facts.append(("percentile", str(cluster["percentile"])))
    n = (
        int(cluster["n_regions"])
        if "n_regions" in cluster and pd.notna(cluster["n_regions"])
        else len(members)
    )
    core = parse_ids(cluster.get("core_region_ids"))
    # a phase run's clusters (a ``phase`` column, e.g. 'oxide+pore') hold pores or particles, not impurities
    phase = cluster.get("phase")
    noun = object_noun(isinstance(phase, str) and bool(phase))
    facts.append((noun, f"{n} ({len(core)} core)" if len(core) else str(n)))
    s = pixel_size_um if pixel_size_um and pixel_size_um > 0 else None
    h = int(cluster["bbox_rmax"]) - int(cluster["bbox_rmin"]) + 1
    w = int(cluster["bbox_cmax"]) - int(cluster["bbox_cmin"]) + 1
    facts.append(("extent", f"{fmt_num(h * s)} × {fmt_num(w * s)} µm" if s else f"{h} × {w} px"))
    if len(members):

        def measure(col: str, um: str, power: int) -> tuple[np.ndarray, str] | None:
            # calibrated twin when every member has it, else pixels (scaled when the size is known)
            if um in members.columns and members[um].notna().all():
                return members[um].to_numpy(dtype=np.float64), "µm²" if power == 2 else "µm"
            if col in members.columns:
                v = members[col].to_numpy(dtype=np.float64)
                if s:
                    return v * s**power, "µm²" if power == 2 else "µm"
                return v, "px²" if power == 2 else "px"
            return None

        a = measure("area_px", "area_um2", 2)
        area, au = a if a is not None else (None, "")
        if area is not None and area.size:
            facts.append(("total area", f"{fmt_num(np.nansum(area))} {au}"))
            facts.append(("largest area", f"{fmt_num(np.nanmax(area))} {au}"))
        d = measure("eq_diameter_px", "eq_diameter_um", 1)
        if d is not None and d[0].size:
            facts.append(
                (
                    "eq. diameter",
                    f"mean {fmt_num(np.nanmean(d[0]))}, max {fmt_num(np.nanmax(d[0]))} {d[1]}",
                )
            )
        f = measure("feret_max_px", "feret_max_um", 1)
        if f is not None and f[0].size:
            facts.append(("max Feret", f"{fmt_num(np.nanmax(f[0]))} {f[1]}"))
        if score in members.columns:
            v = members[score].to_numpy(dtype=np.float64)
            if np.isfinite(v).any():
                facts.append((score, f"mean {fmt_num(np.nanmean(v))}, max {fmt_num(np.nanmax(v))}"))
    return facts


def _outline(codes: np.ndarray) -> np.ndarray:
    """Inner boundary pixels of each labelled object (4-neighbour test), same dtype as input."""
    edge = np.zeros(codes.shape, dtype=bool)
    edge[1:, :] |= codes[1:, :] != codes[:-1, :]
    edge[:-1, :] |= codes[:-1, :] != codes[1:, :]
    edge[:, 1:] |= codes[:, 1:] != codes[:, :-1]
    edge[:, :-1] |= codes[:, :-1] != codes[:, 1:]
    edge[[0, -1], :] = True
    edge[:, [0, -1]] = True
    return edge & (codes != 0)


def render_cluster_crop(
    pixels: np.ndarray,
    regions: pd.DataFrame,
    cluster: Mapping,
    *,
    labels: np.ndarray | None = None,
    score: str = "combined_score",
    margin: float = 0.3,
    min_margin_px: int = 16,
    side: int = 420,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    pixel_size_um: float | None = None,
    title: str | None = None,
) -> np.ndarray:
    """Render an annotated crop around one cluster.

    Parameters
    ----------
    pixels : ndarray, shape (M, N)
        The scan (gray or binary mask).
    regions : pandas.DataFrame
        RegionTable of the scan (may hold other scans too when it has ``scan_id``),
        with ``region_id``, ``bbox_*``, ``cluster_id`` and the ``score`` column.
    cluster : Mapping
        One row of ``clusters.parquet`` (``cluster_id``, ``bbox_*``, and optionally
        ``scan_id``, ``rank``, ``score``, ``norm_score``, ``percentile``,
        ``n_regions``, ``core_region_ids``).
    labels : ndarray, shape (M, N), integer, optional
        Label image (value = ``region_id``); gives exact outlines, otherwise
        bounding boxes are drawn.
    score : str
        Region score that colours the member outlines.
    margin, min_margin_px : float, int
        Window = cluster box grown by ``max(min_margin_px, margin * longest side)``.
    side : int
        Longest side of the crop image in pixels (nearest-neighbour enlargement,
        area-average reduction).
    pixel_size_um : float, optional
        Calibration for the scale bar and the caption.
    title : str, optional
        Caption title; default ``"#rank  scan_id"``.

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
    """
    px = np.asarray(pixels)
    if px.ndim != 2 or min(px.shape, default=0) == 0:
        raise ValueError(f"pixels must be a non-empty 2-D image (row, col), got shape {px.shape}")
    if labels is not None and np.shape(labels) != px.shape:
        raise ValueError(f"labels shape {np.shape(labels)} differs from pixels shape {px.shape}")
    r0, c0, r1, c1 = crop_window(cluster, px.shape, margin=margin, min_margin_px=min_margin_px)
    gray = display_gray(px[r0 : r1 + 1, c0 : c1 + 1])
    scale = side / max(gray.shape)
    disp = cv2.resize(
        gray,
        (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale))),
        interpolation=cv2.INTER_NEAREST if scale >= 1 else cv2.INTER_AREA,
    )
    dh, dw = disp.shape

    # regions in the window, coloured: members by score, others light blue
    reg = regions
    if "scan_id" in reg.columns and "scan_id" in cluster:
        reg = reg[reg["scan_id"] == cluster["scan_id"]]
    boxes = region_boxes(reg)
    inside = (boxes[:, 2] >= r0) & (boxes[:, 0] <= r1) & (boxes[:, 3] >= c0) & (boxes[:, 1] <= c1)
    reg, boxes = reg[inside], boxes[inside]
    members = _members(reg, cluster)
    is_member = reg.index.isin(members.index)
    values = (
        reg[score].to_numpy(dtype=np.float64) if score in reg.columns else np.full(len(reg), np.nan)
    )
    lo, hi = score_limits(values, vmin, vmax)
    lut = code_lut_rgb(cmap)
    lut = np.concatenate([lut, _OTHER_RGB[None]])  # last entry: non-member
    other = len(lut) - 1
    codes = np.where(is_member, score_codes(values, lo, hi), other).astype(np.uint16)

    rgb = np.repeat(disp[..., None], 3, axis=2)
    if labels is not None:
        lab = np.asarray(labels)[r0 : r1 + 1, c0 : c1 + 1]
        ids = reg["region_id"].to_numpy(dtype=np.int64)
        top = int(lab.max()) if lab.size else 0
        table = np.zeros(top + 1, dtype=np.uint16)
        ok = (ids >= 1) & (ids <= top)
        table[ids[ok]] = codes[ok]
        code_img = cv2.resize(table[lab], (dw, dh), interpolation=cv2.INTER_NEAREST)
        fill = (code_img != 0) & (code_img != other)
        tint = lut[code_img[fill]].astype(np.float32)
        rgb[fill] = (0.55 * rgb[fill] + 0.45 * tint).astype(np.uint8)
        edge_codes = np.where(_outline(code_img), code_img, 0).astype(np.uint16)
    else:
        local = boxes - np.array([r0, c0, r0, c0])
        disp_boxes = np.floor(local * scale).astype(np.int64)
        disp_boxes[:, 2:] = np.floor((local[:, 2:] + 1) * scale).astype(np.int64) - 1
        order = np.argsort(is_member, kind="stable")  # members painted last (max wins anyway)
        edge_codes = paint_boxes((dh, dw), disp_boxes[order], codes[order], outline=True)
    if scale >= 3:
        edge_codes = cv2.dilate(edge_codes, np.ones((2, 2), np.uint8))
    edge = edge_codes != 0
    rgb[edge] = lut[edge_codes[edge]]

    facts = cluster_facts(cluster, members, score=score, pixel_size_um=pixel_size_um)
    legend = f"members coloured by {score} ({cmap}), others blue" + (
        ", dot = core" if len(parse_ids(cluster.get("core_region_ids"))) else ""
    )
    if title is None:
        rank = (
            f"#{int(cluster['rank'])}  " if "rank" in cluster and pd.notna(cluster["rank"]) else ""
        )
        title = f"{rank}{cluster.get('scan_id', '')}".strip()
    core = parse_ids(cluster.get("core_region_ids"))
    core_rows = reg[reg["region_id"].isin(core)] if len(core) else reg.iloc[0:0]
    core_xy = (
        np.c_[
            (core_rows["centroid_col"].to_numpy(dtype=float) - c0 + 0.5) * scale,
            (core_rows["centroid_row"].to_numpy(dtype=float) - r0 + 0.5) * scale,
        ]
        if len(core_rows) and {"centroid_row", "centroid_col"} <= set(core_rows.columns)
        else np.zeros((0, 2))
    )
    box = (
        (int(cluster["bbox_cmin"]) - c0) * scale,
        (int(cluster["bbox_rmin"]) - r0) * scale,
        (int(cluster["bbox_cmax"]) - int(cluster["bbox_cmin"]) + 1) * scale,
        (int(cluster["bbox_rmax"]) - int(cluster["bbox_rmin"]) + 1) * scale,
    )
    return _figure(
        rgb,
        box=box,
        core_xy=core_xy,
        title=title,
        facts=facts,
        legend=legend,
        scale=scale,
        side=side,
        pixel_size_um=pixel_size_um,
        window=(r0, c0, r1, c1),
    )


def _nice_length(target: float) -> float:
    """Largest 1/2/5 x 10^k not above ``target``."""
    if target <= 0:
        return 1.0
    k = math.floor(math.log10(target))
    for m in (5, 2, 1):
        if m * 10**k <= target:
            return m * 10**k
    return 10**k


def _figure(
    rgb: np.ndarray,
    *,
    box: tuple[float, float, float, float],
    core_xy: np.ndarray,
    title: str,
    facts: list[tuple[str, str]],
    legend: str,
    scale: float,
    side: int,
    pixel_size_um: float | None,
    window: tuple[int, int, int, int],
) -> np.ndarray:
    """The crop with its title, dashed cluster box, core dots, a scale bar and the caption (Pillow)."""
    from ._canvas import Canvas, wrap

    h, w = rgb.shape[:2]
    fs = 13  # px
    title_fs = 15
    caption = [f"{k}: {v}" for k, v in facts if k != "rank"]
    caption.append(legend)
    caption.append(f"window rows {window[0]}–{window[2]}, cols {window[1]}–{window[3]}")
    fig_w = max(w, int(side)) + 16  # same width for every crop: captions scale alike in a grid
    caption = [part for line in caption for part in wrap(line, fig_w - 16, fs, indent="  ")]
    title_lines = wrap(title, fig_w - 16, title_fs, bold=True) or [""]
    title_h = int(len(title_lines) * 1.35 * title_fs + 10)
    cap_h = int(len(caption) * 1.4 * fs + 12)
    fig_h = title_h + h + 4 + _BAR_H + cap_h
    canvas = Canvas(fig_w, fig_h)
    left = (fig_w - w) // 2
    canvas.paste(rgb, left, title_h)
    red = tuple(int(CLUSTER_COLOUR[i : i + 2], 16) for i in (1, 3, 5))
    x0, y0 = left + box[0], title_h + box[1]
    canvas.rect((x0, y0, x0 + box[2] - 1, y0 + box[3] - 1), outline=red, width=2, dash=6)
    for cx, cy in core_xy:
        canvas.dot(left + cx, title_h + cy, 3.5, fill=red)
    # scale bar in a strip under the image, so it never hides an impurity
    unit_px = scale / pixel_size_um if pixel_size_um else scale  # display px per unit
    unit = "µm" if pixel_size_um else "px"
    length = _nice_length(0.25 * w / unit_px)
    bar = length * unit_px
    by = title_h + h + 4 + _BAR_H // 2
    canvas.line((left, by, left + bar, by), fill=(0, 0, 0), width=3)
    canvas.text(left + bar + 6, by, f"{fmt_num(length)} {unit}", size=12, anchor="lm")
    y = 6.0
    for line in title_lines:
        canvas.text(8, y, line, size=title_fs, bold=True)
        y += 1.35 * title_fs
    y = title_h + h + 4 + _BAR_H + 4
    for line in caption:
        canvas.text(8, y, line, size=fs, fill=(34, 34, 34))
        y += 1.4 * fs
    return canvas.array()
