"""Burned-in annotations: data bars and scale bars (with their labels), and the user's exclusion/ROI.

:func:`find_annotations` returns the pixels to exclude from segmentation and scoring and, when a
scale bar's label is read, the pixel size it gives.

Data bar
    A strip along an image edge whose rows are mostly one flat level (within 4 % of the dtype
    range): at least half of every row, three quarters on average, 8 px to 30 % of the image
    tall.  SEM data bars (black or white bands holding magnification, WD, date) are that;
    a micrograph's rows are not (in the 50 rows along each edge of the 22 training dev scans, at most
    56 % of a row lies within 4 % of the edge's commonest level, and never 8 rows in a row at 75 %).
    The whole strip (all columns) is excluded.

Scale bar
    A connected component, at one of six levels of dark or light (6/16/30 % and 70/84/94 % of the
    dtype range), whose "core" is a band of full rows (>= 97 % filled across the whole length; 2 px
    or more), at least 30 px long and 4 times longer than thick, with pixels outside the core only
    in its end columns (end ticks) or over at most 20 % of its length (a blob it touches), uniform (std <= 6 % of the range) and contrasting with the ring
    around it (>= 15 %).  Horizontal and vertical bars are found.  A bar must also have a text line
    beside it (its label), or lie in a data bar, or be long (>= 40 px) and contrasted (>= 35 %).  Real impurities (irregular blobs and
    stringers) fail the full-row and uniformity tests: on the 22 training dev scans not one component
    passes the bar tests, before the label test.
    ``length_px`` is measured end to end with sub-pixel precision (the summed coverage of the core's
    mean profile, so anti-aliased ends count partly).

Label
    The text line nearest the bar (above, below, right or left; same colour as the bar), cut into
    glyphs and read by nearest-neighbour matching against glyphs rendered here from the DejaVu/STIX
    fonts shipped with matplotlib and OpenCV's Hershey fonts (:mod:`data._glyphs`); touching pairs
    ('µm', '00') are classes of their own.  Parsed as ``<number> <unit>`` with units nm, µm/um, mm
    (``100 µm``, ``50 um``, ``0.1 mm``, ``500 nm``); a reading whose mean glyph distance exceeds
    ``max_label_distance`` is not trusted.  A bar whose label is not read is still excluded
    (``label=None`` and the note "scale bar found at ..., label not read").

Exclusion mask
    Data-bar strip, plus each bar and its label box, the flat backing box around them when there is
    one, grown by ``margin_px`` (default 3 px, at least half the bar thickness).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import QuantmetError

__all__ = [
    "AnnotationConfig",
    "Annotations",
    "ScaleBar",
    "find_annotations",
    "load_exclusion",
    "parse_length",
    "roi_mask",
]

Box = tuple[int, int, int, int]

_UNITS = {"nm": 1e-3, "um": 1.0, "µm": 1.0, "μm": 1.0, "mm": 1e3}
_LABEL_RE = re.compile(r"^\s*(\d+(?:[.,]\d+)?)\s*(nm|um|µm|μm|mm)\s*$")


def parse_length(text: str | None) -> float | None:
    """Length in µm of a scale-bar label ('100 µm', '50 um', '0.1 mm', '500 nm'), None if not one.

    >>> parse_length("100 µm"), parse_length("0.1 mm"), parse_length("500nm"), parse_length("WD 8")
    (100.0, 100.0, 0.5, None)
    """
    if not text:
        return None
    m = _LABEL_RE.match(text)
    if not m:
        return None
    value = float(m.group(1).replace(",", "."))
    if value <= 0:
        return None
    return value * _UNITS[m.group(2)]


@dataclass(frozen=True)
class AnnotationConfig:
    """Options of :func:`find_annotations` (levels are shares of the dtype range)."""

    data_bars: bool = True
    scale_bars: bool = True
    read_labels: bool = True
    margin_px: int = 3
    # data bar
    databar_tolerance: float = 0.04
    databar_min_row_fraction: float = 0.5
    databar_min_mean_fraction: float = 0.75
    databar_min_px: int = 8
    databar_max_fraction: float = 0.3
    # ... and digitally flat: this share of the strip within one 8-bit grey level of its background. A
    # rendered bar keeps >= 0.82 (JPEG q85 included; 128 generated files, seeds 20000000-20000063); a
    # uniform but noisy substrate band along an edge of a coating cross-section has 0.13
    databar_min_flat_fraction: float = 0.5
    # scale bar
    min_bar_length_px: int = 30
    min_bar_thickness_px: int = 2
    min_bar_aspect: float = 4.0
    max_bar_fraction: float = 0.9
    bar_full_row: float = 0.97
    bar_max_std: float = 0.06
    bar_min_contrast: float = 0.15
    dark_levels: tuple[float, ...] = (0.06, 0.16, 0.30)
    light_levels: tuple[float, ...] = (0.94, 0.84, 0.70)
    # a bar with no text beside it (and not on a data bar) is still taken when this long and contrasted
    unlabeled_min_length_px: int = 40
    unlabeled_min_contrast: float = 0.35
    # a scale bar giving less than this (0.1 nm per pixel: finer than any SEM or optical micrograph) was
    # misread ('mm' read as 'nm'): ignored with a note
    min_pixel_size_um: float = 1e-4
    # a reading whose mean glyph distance is above this is not trusted (on the tuning files: keeps 99.6 %
    # of the right readings, drops 4 of 15 wrong ones)
    max_label_distance: float = 0.6
    # a reading whose number is not a usual scale-bar number (1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 7.5, 8, 9 x 10^k;
    # '191 um' from '100 um' touching an impurity) is not trusted; False trusts any number (the reader prefers
    # a usual number among the readings its grammar accepts either way)
    usual_numbers_only: bool = True
    ink_level: float = 0.45  # label ink: this share of the way from the background to the bar's level ...
    seed_level: float = 0.7  # ... within one pixel of a glyph core at least this far (hysteresis)
    # when no label is read at those levels, stricter (ink, seed) pairs are tried in turn: a label burned in
    # the bar's colour on dark matrix, or touching a dark impurity, separates from it closer to the bar's level
    stricter_ink_levels: tuple[tuple[float, float], ...] = ((0.65, 0.85), (0.8, 0.92))

    def __post_init__(self) -> None:
        if self.margin_px < 0 or self.min_bar_length_px < 2 or self.min_bar_thickness_px < 1:
            raise ValueError("margin_px must be >= 0, min_bar_length_px >= 2, min_bar_thickness_px >= 1")
        object.__setattr__(self, "dark_levels", tuple(float(x) for x in self.dark_levels))
        object.__setattr__(self, "light_levels", tuple(float(x) for x in self.light_levels))
        object.__setattr__(self, "stricter_ink_levels",
                           tuple((float(a), float(b)) for a, b in self.stricter_ink_levels))
        if any(not 0 < a <= b <= 1 for a, b in ((self.ink_level, self.seed_level), *self.stricter_ink_levels)):
            raise ValueError("ink levels must satisfy 0 < ink_level <= seed_level <= 1")


@dataclass(frozen=True)
class ScaleBar:
    """One scale bar: inclusive ``box`` (rmin, cmin, rmax, cmax), its end-to-end length and label."""

    box: Box
    length_px: float
    label: str | None
    length_um: float | None
    polarity: str  # 'dark' or 'light' against its surroundings
    label_box: Box | None = None
    orientation: str = "horizontal"
    label_distance: float | None = None  # mean glyph distance of the reading (lower = surer)

    @property
    def pixel_size_um(self) -> float | None:
        return None if self.length_um is None else self.length_um / self.length_px


@dataclass(frozen=True)
class Annotations:
    """What :func:`find_annotations` found; ``mask`` is True on pixels to exclude."""

    mask: np.ndarray = field(repr=False)
    data_bar: Box | None
    scale_bars: tuple[ScaleBar, ...]
    pixel_size_um: float | None
    notes: tuple[str, ...] = ()


# ---------------------------------------------------------------- data bars


def _find_data_bar(px: np.ndarray, full: float, cfg: AnnotationConfig) -> tuple[Box | None, float | None]:
    """The data bar (widest strip over the four edges), and its background level."""
    M, N = px.shape
    tol = cfg.databar_tolerance * full
    best: tuple[int, Box, float] | None = None
    for edge in ("bottom", "top", "left", "right"):
        view = {"bottom": px[::-1], "top": px, "left": px.T, "right": px.T[::-1]}[edge]
        rows, length = view.shape
        limit = int(cfg.databar_max_fraction * rows)
        if limit < cfg.databar_min_px:
            continue
        head = view[: min(3, rows)].ravel()
        if px.dtype in (np.uint8, np.uint16):
            b = float(np.argmax(np.bincount(head)))
        else:
            vals, counts = np.unique(head, return_counts=True)
            b = float(vals[np.argmax(counts)])
        strip = view[: limit + 1].astype(np.float32)
        frac = (np.abs(strip - b) <= tol).mean(axis=1)
        below = np.flatnonzero(frac < cfg.databar_min_row_fraction)
        h = int(below[0]) if below.size else limit + 1
        if h < cfg.databar_min_px or h > limit or frac[:h].mean() < cfg.databar_min_mean_fraction:
            continue
        flat = float((np.abs(strip[:h] - b) <= full / 255.0).mean())
        if flat < cfg.databar_min_flat_fraction:  # uniform, but with a sensor's noise: the specimen
            continue
        box = {"bottom": (M - h, 0, M - 1, N - 1), "top": (0, 0, h - 1, N - 1),
               "left": (0, 0, M - 1, h - 1), "right": (0, N - h, M - 1, N - 1)}[edge]
        if best is None or h > best[0]:
            best = (h, box, b)
    if best is None:
        return None, None
    return best[1], best[2]


# ---------------------------------------------------------------- scale bars


@dataclass
class _Candidate:
    box: Box  # inclusive, whole component (with ticks)
    core: tuple[int, int]  # core rows (horizontal) or cols (vertical), inclusive, absolute
    polarity: str
    level: float  # bar's median value
    bg: float  # ring median
    orientation: str
    comp: np.ndarray  # bool crop of the component over box
    attached: int = 0  # columns where a blob touches the bar


def _test_component(comp: np.ndarray, cfg: AnnotationConfig) -> tuple[int, int, int] | None:
    """Core band (first, last row) of a horizontal bar component crop and the number of columns
    where something else touches it (besides end ticks), or None."""
    h, w = comp.shape
    fill = comp.sum(axis=1) / w
    full = fill >= cfg.bar_full_row
    if not full.any():
        return None
    idx = np.flatnonzero(full)
    runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
    run = max(runs, key=len)
    t = len(run)
    if t < cfg.min_bar_thickness_px or w < cfg.min_bar_length_px or w / t < cfg.min_bar_aspect:
        return None
    outside = comp.copy()
    outside[run[0]:run[-1] + 1] = False
    middle_cols = 0
    if outside.any():
        edge = max(2, int(round(0.1 * w)), t)  # end ticks: up to the bar's thickness wide
        # besides end ticks, only something touching the bar over a short stretch (an impurity it is
        # drawn over): at most 20 % of its length
        middle_cols = outside[:, edge:w - edge].any(axis=0).sum()
        if middle_cols > 0.2 * w:
            return None
    return int(run[0]), int(run[-1]), int(middle_cols)


def _ring(px: np.ndarray, box: Box, comp_full: np.ndarray | None, width: int = 3) -> np.ndarray:
    M, N = px.shape
    r0, c0, r1, c1 = box
    R0, C0, R1, C1 = max(r0 - width, 0), max(c0 - width, 0), min(r1 + width, M - 1), min(c1 + width, N - 1)
    sub = px[R0:R1 + 1, C0:C1 + 1]
    keep = np.ones(sub.shape, bool)
    keep[r0 - R0:r1 - R0 + 1, c0 - C0:c1 - C0 + 1] = False
    return sub[keep]


def _bar_candidates(px: np.ndarray, full: float, cfg: AnnotationConfig) -> list[_Candidate]:
    M, N = px.shape
    out: list[_Candidate] = []
    levels = [("dark", lv) for lv in cfg.dark_levels] + [("light", lv) for lv in cfg.light_levels]
    for polarity, lv in levels:
        ink = (px <= lv * full) if polarity == "dark" else (px >= lv * full)
        n, lab, stats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=4)
        if n <= 1:
            continue
        x, y, w, h, a = stats[1:].T
        long_side, short_side = np.maximum(w, h), np.minimum(w, h)
        # cheap prefilter on the component's box (end ticks may make it up to ~4x the bar's thickness)
        ok = ((long_side >= cfg.min_bar_length_px) & (long_side >= 1.2 * short_side)
              & (a >= 0.5 * long_side * cfg.min_bar_thickness_px)
              & (long_side <= cfg.max_bar_fraction * np.where(w >= h, N, M)))
        for i in np.flatnonzero(ok) + 1:
            xx, yy, ww, hh = (int(v) for v in stats[i, :4])
            comp = lab[yy:yy + hh, xx:xx + ww] == i
            orientation = "horizontal" if ww >= hh else "vertical"
            core = _test_component(comp if orientation == "horizontal" else comp.T, cfg)
            if core is None:
                continue
            box = (yy, xx, yy + hh - 1, xx + ww - 1)
            if orientation == "horizontal":
                band = px[yy + core[0]:yy + core[1] + 1, xx:xx + ww]
            else:
                band = px[yy:yy + hh, xx + core[0]:xx + core[1] + 1]
            if band.shape[0 if orientation == "horizontal" else 1] >= 3:
                band = band[1:-1] if orientation == "horizontal" else band[:, 1:-1]
            level = float(np.median(band))
            if float(band.std()) > cfg.bar_max_std * full:
                continue
            ring = _ring(px, box, comp)
            if ring.size == 0:
                continue
            bg = float(np.median(ring))
            if abs(level - bg) < cfg.bar_min_contrast * full or (polarity == "dark") != (level < bg):
                continue
            off = yy if orientation == "horizontal" else xx
            out.append(_Candidate(box, (off + core[0], off + core[1]), polarity, level, bg, orientation, comp,
                                  core[2]))
    # the same bar found at several levels: keep the one with the least attached to it, then the
    # largest box (end ticks are found whole at the looser levels)
    out.sort(key=lambda c: (c.attached, -((c.box[2] - c.box[0] + 1) * (c.box[3] - c.box[1] + 1))))
    kept: list[_Candidate] = []
    for c in out:
        if not any(_iou(c.box, k.box) > 0.3 or _same_bar(c, k) for k in kept):
            kept.append(c)
    return kept


def _same_bar(a: _Candidate, b: _Candidate) -> bool:
    """Whether two candidates are one bar (found at two levels, one with a blob attached):
    their cores overlap across and their extents along the bar overlap by half the shorter one."""
    if a.orientation != b.orientation:
        return False
    if min(a.core[1], b.core[1]) < max(a.core[0], b.core[0]):
        return False
    lo, hi = (1, 3) if a.orientation == "horizontal" else (0, 2)
    overlap = min(a.box[hi], b.box[hi]) - max(a.box[lo], b.box[lo]) + 1
    shorter = min(a.box[hi] - a.box[lo], b.box[hi] - b.box[lo]) + 1
    return overlap >= 0.5 * shorter


def _iou(a: Box, b: Box) -> float:
    r0, c0 = max(a[0], b[0]), max(a[1], b[1])
    r1, c1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, r1 - r0 + 1) * max(0, c1 - c0 + 1)
    area = lambda x: (x[2] - x[0] + 1) * (x[3] - x[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _length_px(px: np.ndarray, c: _Candidate) -> float:
    """End-to-end length: summed coverage of the core's mean profile (sub-pixel at the ends)."""
    r0, c0, r1, c1 = c.box
    if c.orientation == "horizontal":
        a, b = max(c0 - 2, 0), min(c1 + 3, px.shape[1])
        prof = px[c.core[0]:c.core[1] + 1, a:b].astype(np.float64).mean(axis=0)
    else:
        a, b = max(r0 - 2, 0), min(r1 + 3, px.shape[0])
        prof = px[a:b, c.core[0]:c.core[1] + 1].astype(np.float64).mean(axis=1)
    cov = np.clip((prof - c.bg) / (c.level - c.bg), 0.0, 1.0)
    return float(cov.sum())


# ---------------------------------------------------------------- labels


def _text_lines(ink: np.ndarray, near: str, max_h: int, tries: int = 6):
    """Text lines of ``ink`` (glyph-sized components not touching the window's border), nearest first.

    ``near`` names the window side next to the bar.  Yields ``(line ink crop, box in the window)``.
    """
    n, lab, stats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8)
    if n <= 1:
        return
    H, W = ink.shape
    comps = []
    for i in range(1, n):
        x, y, w, h, a = (int(v) for v in stats[i])
        if a < 2 or h > max_h or w > 3 * max_h:
            continue
        if x == 0 or y == 0 or x + w == W or y + h == H:
            continue  # a glyph lies inside the window; micrograph structure runs out of it
        comps.append((y, x, y + h - 1, x + w - 1, a, i))
    tall = [c for c in comps if c[2] - c[0] + 1 >= 6]
    key = {"top": lambda c: c[0], "bottom": lambda c: H - 1 - c[2],
           "left": lambda c: c[1], "right": lambda c: W - 1 - c[3]}[near]
    used: set[int] = set()
    seen_lines: set[frozenset] = set()
    for seed in sorted(tall, key=key):
        if tries <= 0:
            return
        if seed[5] in used:
            continue
        tries -= 1
        r0, r1 = seed[0], seed[2]
        h = r1 - r0 + 1
        line = [c for c in comps
                if min(c[2], r1 + h // 3) - max(c[0], r0 - h // 3) + 1 >= 0.5 * min(h, c[2] - c[0] + 1)
                and (c[2] - c[0] + 1) <= 1.5 * h]
        line.sort(key=lambda c: c[1])
        si = next(k for k, c in enumerate(line) if c[5] == seed[5])
        chain = [line[si]]
        right_edge = line[si][3]
        for c in line[si + 1:]:
            if c[1] - right_edge > 1.5 * h:
                break
            chain.append(c)
            right_edge = max(right_edge, c[3])
        left_edge = line[si][1]
        for c in reversed(line[:si]):
            if left_edge - c[3] > 1.5 * h:
                break
            chain.insert(0, c)
            left_edge = min(left_edge, c[1])
        used.add(seed[5])
        key = frozenset(c[5] for c in chain)
        if len(chain) < 2 or key in seen_lines:
            continue
        seen_lines.add(key)
        box = (min(c[0] for c in chain), min(c[1] for c in chain), max(c[2] for c in chain), max(c[3] for c in chain))
        ids = np.array([c[5] for c in chain])
        yield np.isin(lab[box[0]:box[2] + 1, box[1]:box[3] + 1], ids), box


def _read_label(px: np.ndarray, c: _Candidate, cfg: AnnotationConfig, taken: np.ndarray):
    """(label text, label box, mean glyph distance) for a bar; (None, box, None) when a text line is
    there but not read."""
    from ._glyphs import glyph_reader, is_usual_number

    M, N = px.shape
    r0, c0, r1, c1 = c.box
    L = max(r1 - r0, c1 - c0) + 1
    t = c.core[1] - c.core[0] + 1
    S = int(max(64, min(120, 6 * t + 20)))
    windows = []
    if c.orientation == "horizontal":
        ca, cb = max(c0 - L // 2 - S, 0), min(c1 + L // 2 + S, N - 1)
        windows.append(("bottom", (max(r0 - S, 0), ca, r0 - 1, cb)))  # above the bar: the line nearest its bottom
        windows.append(("top", (r1 + 1, ca, min(r1 + S, M - 1), cb)))
        ra, rb = max(r0 - S // 2, 0), min(r1 + S // 2, M - 1)
        windows.append(("left", (ra, c1 + 1, rb, min(c1 + 4 * S, N - 1))))
        windows.append(("right", (ra, max(c0 - 4 * S, 0), rb, c0 - 1)))
    else:
        ra, rb = max(r0 - S, 0), min(r1 + S, M - 1)
        windows.append(("left", (ra, c1 + 1, rb, min(c1 + 4 * S, N - 1))))
        windows.append(("right", (ra, max(c0 - 4 * S, 0), rb, c0 - 1)))
    found_box = None
    unsure: list[str] = []
    reader = glyph_reader() if cfg.read_labels else None
    levels = ((cfg.ink_level, cfg.seed_level),) + (cfg.stricter_ink_levels if reader is not None else ())
    sign = -1.0 if c.polarity == "dark" else 1.0
    crops = [(near, (wr0, wc0, wr1, wc1), px[wr0:wr1 + 1, wc0:wc1 + 1].astype(np.float32),
              taken[wr0:wr1 + 1, wc0:wc1 + 1])
             for near, (wr0, wc0, wr1, wc1) in windows if wr1 - wr0 >= 5 and wc1 - wc0 >= 5]
    for ink_level, seed_level in levels:
        thr = c.bg + ink_level * (c.level - c.bg)
        seed_thr = c.bg + seed_level * (c.level - c.bg)
        for near, (wr0, wc0, wr1, wc1), win, win_taken in crops:
            # hysteresis: glyph cores near the bar's level, grown by one pixel into the anti-aliased edge
            seeds = sign * (win - seed_thr) >= 0
            loose = sign * (win - thr) >= 0
            ink = loose & (cv2.dilate(seeds.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
            ink &= ~win_taken
            for sub, (br0, bc0, br1, bc1) in _text_lines(ink, near, max_h=S):
                box = (wr0 + br0, wc0 + bc0, wr0 + br1, wc0 + bc1)
                if found_box is None and (reader is None or reader.looks_like_text(sub)):
                    found_box = box
                if reader is None:
                    break
                res = reader.read_line(sub)
                if res is None:
                    continue
                text = _clean(res[0])
                if parse_length(text) is not None:
                    if res[1] > cfg.max_label_distance:
                        unsure.append(f"label read as {_pretty(text)!r} but unsure (glyph distance {res[1]:.2f})")
                        continue
                    number = _LABEL_RE.match(text).group(1)
                    if cfg.usual_numbers_only and not is_usual_number(number):
                        unsure.append(f"label read as {_pretty(text)!r} but {number} is not a usual scale-bar number")
                        continue
                    return _pretty(text), box, res[1]
    return None, found_box, ("; ".join(dict.fromkeys(unsure)) or None)


def _clean(text: str) -> str:
    """Spaces out (wide fonts space digits apart), dots that are not decimal points (specks) out."""
    text = text.replace(" ", "")
    return re.sub(r"(?<!\d)\.|\.(?!\d)", "", text)


def _pretty(text: str) -> str:
    m = _LABEL_RE.match(text)
    if not m:
        return text
    return f"{m.group(1)} {m.group(2)}"


def _grow(mask: np.ndarray, box: Box, margin: int) -> None:
    M, N = mask.shape
    r0, c0, r1, c1 = box
    mask[max(r0 - margin, 0):min(r1 + margin, M - 1) + 1, max(c0 - margin, 0):min(c1 + margin, N - 1) + 1] = True


def _backing_box(px: np.ndarray, box: Box, bg: float, full: float, limit: int) -> Box:
    """Grow ``box`` while the rows/cols just outside it are flat at ``bg`` (a filled box behind bar and label)."""
    M, N = px.shape
    r0, c0, r1, c1 = box
    tol = 0.06 * full

    def flat(seg: np.ndarray) -> bool:
        return seg.size > 0 and float((np.abs(seg.astype(np.float32) - bg) <= tol).mean()) >= 0.97

    for _ in range(limit):
        grown = False
        if r0 > 0 and flat(px[r0 - 1, c0:c1 + 1]):
            r0 -= 1
            grown = True
        if r1 < M - 1 and flat(px[r1 + 1, c0:c1 + 1]):
            r1 += 1
            grown = True
        if c0 > 0 and flat(px[r0:r1 + 1, c0 - 1]):
            c0 -= 1
            grown = True
        if c1 < N - 1 and flat(px[r0:r1 + 1, c1 + 1]):
            c1 += 1
            grown = True
        if not grown:
            break
    return r0, c0, r1, c1


def _area(b: Box) -> int:
    return max(0, b[2] - b[0] + 1) * max(0, b[3] - b[1] + 1)


def _clip(b: Box, outer: Box) -> Box:
    return max(b[0], outer[0]), max(b[1], outer[1]), min(b[2], outer[2]), min(b[3], outer[3])


def _inside(box: Box, outer: Box | None) -> bool:
    return outer is not None and box[0] >= outer[0] and box[1] >= outer[1] and box[2] <= outer[2] and box[3] <= outer[3]


def find_annotations(pixels: np.ndarray, *, cfg: AnnotationConfig = AnnotationConfig()) -> Annotations:
    """Data bars and scale bars burned into a micrograph, the pixels to exclude, the pixel size they give.

    Parameters
    ----------
    pixels : ndarray, shape (M, N)
        Gray micrograph (uint8 or uint16; any real dtype is accepted).  Run it on raw
        scans only, never on binary masks.
    cfg : AnnotationConfig

    Returns
    -------
    Annotations
        ``mask`` (bool (M, N), True = exclude), ``data_bar`` box or None, ``scale_bars``,
        ``pixel_size_um`` from the longest bar whose label was read (None otherwise), ``notes``.
    """
    px = np.asarray(pixels)
    if px.ndim != 2:
        raise ValueError(f"find_annotations expects a 2-D gray image, got shape {px.shape}")
    if px.dtype.kind not in "uif":
        raise ValueError(f"find_annotations expects a numeric image, got {px.dtype}")
    full = float(np.iinfo(px.dtype).max) if px.dtype.kind in "ui" else 1.0
    M, N = px.shape
    mask = np.zeros((M, N), bool)
    notes: list[str] = []
    data_bar, _ = _find_data_bar(px, full, cfg) if cfg.data_bars and min(M, N) >= 16 else (None, None)
    if data_bar is not None:
        mask[data_bar[0]:data_bar[2] + 1, data_bar[1]:data_bar[3] + 1] = True
    bars: list[ScaleBar] = []
    if cfg.scale_bars and min(M, N) >= cfg.min_bar_length_px:
        taken = np.zeros((M, N), bool)  # accepted bars' and labels' pixels: not label ink of another bar
        cands = sorted(_bar_candidates(px, full, cfg), key=lambda c: -max(c.box[2] - c.box[0], c.box[3] - c.box[1]))
        claimed: list[Box] = []
        for c in cands:
            if any(_iou(c.box, b) > 0 and _inside(_clip(c.box, b), b) and _area(_clip(c.box, b)) >= 0.5 * _area(c.box)
                   for b in claimed):
                continue  # a stroke of an accepted bar's label (a '1'), not another bar
            r0, c0, r1, c1 = c.box
            own = taken.copy()
            own[r0:r1 + 1, c0:c1 + 1] = True
            label, lbox, dist = _read_label(px, c, cfg, own)
            in_bar = _inside(c.box, data_bar)
            L_c = max(c.box[2] - c.box[0], c.box[3] - c.box[1]) + 1
            strong = L_c >= cfg.unlabeled_min_length_px and abs(c.level - c.bg) >= cfg.unlabeled_min_contrast * full
            if lbox is None and not in_bar and not strong:
                continue  # no text beside it, not on a data bar, not a long high-contrast bar
            length = _length_px(px, c)
            length_um = parse_length(label)
            if label is None:
                why = f" ({dist})" if isinstance(dist, str) else ""
                notes.append(f"scale bar found at {c.box} ({length:.1f} px), label not read{why}")
                dist = None
            union = c.box if lbox is None else (min(c.box[0], lbox[0]), min(c.box[1], lbox[1]),
                                                max(c.box[2], lbox[2]), max(c.box[3], lbox[3]))
            t = c.core[1] - c.core[0] + 1
            text_h = 0 if lbox is None else lbox[2] - lbox[0] + 1
            margin = max(cfg.margin_px, t // 2, int(0.25 * text_h))
            if not in_bar:
                grown = (max(union[0] - 2, 0), max(union[1] - 2, 0), min(union[2] + 2, M - 1), min(union[3] + 2, N - 1))
                union = _backing_box(px, grown, c.bg, full, limit=max(8, 2 * text_h))
            _grow(mask, union, margin)
            claimed.append(union)
            taken[union[0]:union[2] + 1, union[1]:union[3] + 1] = True
            bars.append(ScaleBar(c.box, length, label, length_um, c.polarity, lbox, c.orientation, dist))
    read = []
    for b in bars:
        if b.pixel_size_um is None:
            continue
        if cfg.min_pixel_size_um <= b.pixel_size_um <= 1000:
            read.append(b)
        else:
            notes.append(f"scale bar {b.label!r} over {b.length_px:.1f} px gives {b.pixel_size_um:g} µm/px: "
                         f"ignored (not in {cfg.min_pixel_size_um:g}..1000 µm/px, a misread label?)")
    size = None
    if read:
        best = max(read, key=lambda b: b.length_px)
        size = best.pixel_size_um
        for b in read:
            if b is not best and abs(b.pixel_size_um - size) > 0.01 * size:
                notes.append(f"scale bars disagree: {best.label!r} gives {size:.4g} µm/px, {b.label!r} {b.pixel_size_um:.4g}")
    return Annotations(mask, data_bar, tuple(bars), size, tuple(notes))


# ---------------------------------------------------------------- user exclusion / ROI


def roi_mask(roi, shape: tuple[int, int]) -> np.ndarray:
    """Exclusion mask (True = exclude) of everything outside the box to KEEP ``roi = [rmin, cmin, rmax, cmax]``.

    Bounds are inclusive pixel indices; they are clipped to the image.  ``None`` excludes nothing.

    >>> int(roi_mask([1, 1, 2, 2], (4, 4)).sum())
    12
    """
    M, N = shape
    if roi is None:
        return np.zeros((M, N), bool)
    try:
        r0, c0, r1, c1 = (int(v) for v in roi)
    except (TypeError, ValueError):
        raise ValueError(f"data.roi must be [rmin, cmin, rmax, cmax] (inclusive pixels), got {roi!r}") from None
    if r0 > r1 or c0 > c1 or r1 < 0 or c1 < 0 or r0 >= M or c0 >= N:
        raise ValueError(f"data.roi {list(roi)} selects no pixel of a {M} x {N} image")
    out = np.ones((M, N), bool)
    out[max(r0, 0):min(r1, M - 1) + 1, max(c0, 0):min(c1, N - 1) + 1] = False
    return out


def load_exclusion(path_or_none: str | Path | None, shape: tuple[int, int]) -> np.ndarray:
    """A user's exclusion mask file (white/non-zero = exclude; 255 in an 8-bit PNG), same size as the scan.

    Any binary encoding is accepted (bool, 0/1, 0/255, 0/65535, lossy JPEG, as
    :func:`data.masks.binarize_mask` with polarity 'white').  ``None`` excludes nothing.

    Raises
    ------
    QuantmetError
        If the file's size differs from ``shape`` or it is not a binary image.
    """
    M, N = shape
    if path_or_none is None:
        return np.zeros((M, N), bool)
    from .io import read_image
    from .masks import binarize_mask

    pixels, _ = read_image(path_or_none)
    if pixels.shape != (M, N):
        raise QuantmetError(f"exclusion mask {path_or_none} is {pixels.shape[0]} x {pixels.shape[1]} px, "
                            f"the scan is {M} x {N}")
    return binarize_mask(pixels, polarity="white")
