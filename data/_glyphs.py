"""Text rendering for burned-in labels and the glyph classifier that reads scale-bar labels.

Fonts come with the Python packages only (CI is a clean machine): the DejaVu and STIX TrueType
files shipped inside matplotlib (rendered with Pillow) and OpenCV's Hershey fonts.

The classifier is a nearest-neighbour match of each connected component of a label
(a character) against glyphs rendered here from :data:`READER_FONTS`, on a normalised
16 x 16 crop plus its size and position within the text line (so '.', 'u', 'm' and digits
separate by height and baseline as well as by shape).  It is built on first use, in memory.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "FONTS",
    "READER_FONTS",
    "HELD_OUT_FONTS",
    "render_text",
    "glyph_components",
    "GlyphReader",
    "glyph_reader",
]

_HERSHEY = {
    "hershey_simplex": cv2.FONT_HERSHEY_SIMPLEX,
    "hershey_duplex": cv2.FONT_HERSHEY_DUPLEX,
    "hershey_complex": cv2.FONT_HERSHEY_COMPLEX,
    "hershey_triplex": cv2.FONT_HERSHEY_TRIPLEX,
    "hershey_plain": cv2.FONT_HERSHEY_PLAIN,
}
_TTF = {
    "dejavu_sans": "DejaVuSans.ttf",
    "dejavu_sans_bold": "DejaVuSans-Bold.ttf",
    "dejavu_serif": "DejaVuSerif.ttf",
    "dejavu_serif_bold": "DejaVuSerif-Bold.ttf",
    "dejavu_mono": "DejaVuSansMono.ttf",
    "dejavu_mono_bold": "DejaVuSansMono-Bold.ttf",
    "stix": "STIXGeneral.ttf",
    "stix_bold": "STIXGeneralBol.ttf",
}
FONTS = tuple(_TTF) + tuple(_HERSHEY)
#: Fonts the label reader's glyphs are rendered from.
READER_FONTS = ("dejavu_sans", "dejavu_sans_bold", "dejavu_serif", "dejavu_mono", "stix",
                "hershey_simplex", "hershey_duplex", "hershey_complex")
#: Fonts the reader never saw (the evaluation reports them apart).
HELD_OUT_FONTS = tuple(f for f in FONTS if f not in READER_FONTS)

CLASSES = tuple("0123456789") + (".", "u", "µ", "m", "n")


def has_micro(font: str) -> bool:
    """Whether ``font`` can draw 'µ' (the Hershey fonts are ASCII only)."""
    return font in _TTF


@functools.lru_cache(maxsize=64)
def _truetype(font: str, size: int):
    from PIL import ImageFont
    import matplotlib

    path = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", _TTF[font])
    return ImageFont.truetype(path, size)


def render_text(text: str, font: str, height_px: float, *, spacing: float = 0.0) -> np.ndarray:
    """Coverage image (float32 in [0, 1], tight box) of ``text`` whose digits are about ``height_px`` tall.

    ``spacing`` adds that many digit heights between characters (used to render
    separated training glyphs).
    """
    if font in _HERSHEY:
        face = _HERSHEY[font]
        (_, h0), _ = cv2.getTextSize("0", face, 1.0, 1)
        scale = height_px / max(h0, 1)
        thick = max(1, int(round(height_px / 12)))
        chars = [text] if spacing == 0 else list(text)
        pieces = []
        for ch in chars:
            (w, h), base = cv2.getTextSize(ch, face, scale, thick)
            pad = thick + 2
            img = np.zeros((h + base + 2 * pad, w + 2 * pad), np.uint8)
            cv2.putText(img, ch, (pad, pad + h), face, scale, 255, thick, cv2.LINE_AA)
            pieces.append(img)
        img = _hcat(pieces, int(round(spacing * height_px)))
    else:
        from PIL import Image, ImageDraw

        probe = _truetype(font, 100)
        l, t, r, b = probe.getbbox("0")
        size = max(4, int(round(height_px * 100 / max(b - t, 1))))
        ft = _truetype(font, size)
        chars = [text] if spacing == 0 else list(text)
        pieces = []
        for ch in chars:
            l, t, r, b = ft.getbbox(ch)
            asc, desc = ft.getmetrics()
            w, h = max(r, 1) + 4, asc + desc + 4
            im = Image.new("L", (w, h), 0)
            ImageDraw.Draw(im).text((2, 2), ch, fill=255, font=ft)
            pieces.append(np.asarray(im))
        img = _hcat(pieces, int(round(spacing * height_px)))
    cov = img.astype(np.float32) / 255.0
    rows, cols = np.nonzero(cov > 0.02)
    if rows.size == 0:
        return np.zeros((1, 1), np.float32)
    return cov[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def _hcat(pieces: list[np.ndarray], gap: int) -> np.ndarray:
    h = max(p.shape[0] for p in pieces)
    out = []
    for i, p in enumerate(pieces):
        if p.shape[0] < h:
            p = np.pad(p, ((0, h - p.shape[0]), (0, 0)))
        out.append(p)
        if gap and i < len(pieces) - 1:
            out.append(np.zeros((h, gap), p.dtype))
    return np.concatenate(out, axis=1)


# ---------------------------------------------------------------- components and features


@dataclass(frozen=True)
class Glyph:
    """One connected component of a text line (inclusive box, its binary crop)."""

    r0: int
    c0: int
    r1: int
    c1: int
    crop: np.ndarray  # bool, (r1 - r0 + 1, c1 - c0 + 1)

    @property
    def h(self) -> int:
        return self.r1 - self.r0 + 1

    @property
    def w(self) -> int:
        return self.c1 - self.c0 + 1


def glyph_components(ink: np.ndarray, *, min_area: int = 2) -> list[Glyph]:
    """Connected components (8-connected) of a bool ink image, left to right."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8)
    out = []
    for i in range(1, n):
        x, y, w, h, a = stats[i]
        if a < min_area:
            continue
        out.append(Glyph(int(y), int(x), int(y + h - 1), int(x + w - 1), lab[y:y + h, x:x + w] == i))
    out.sort(key=lambda g: g.c0)
    return out


def line_metrics(glyphs: list[Glyph]) -> tuple[float, float]:
    """(top, baseline) of a text line: the highest top of the tallest glyphs, the median bottom."""
    tops = np.array([g.r0 for g in glyphs], float)
    bottoms = np.array([g.r1 for g in glyphs], float)
    heights = bottoms - tops + 1
    tall = heights >= 0.9 * heights.max()
    return float(tops[tall].min()), float(np.median(bottoms))


_FH, _FW = 16, 40  # glyph shape canvas: 16 rows, up to 40 columns (wide touching pairs keep their detail)


def glyph_features(g: Glyph, top: float, base: float) -> np.ndarray:
    """Shape (crop scaled to 16 rows, aspect kept, centred on a 16 x 40 canvas) + height, aspect, position."""
    H = max(base - top + 1, 1.0)
    crop = g.crop.astype(np.float32)
    w = int(min(_FW, max(1, round(_FH * g.w / g.h))))
    small = cv2.resize(crop, (w, _FH), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((_FH, _FW), np.float32)
    c = (_FW - w) // 2
    canvas[:, c:c + w] = small
    shape = canvas.ravel()
    shape = shape / (np.linalg.norm(shape) + 1e-6)
    extra = np.array([
        g.h / H,
        np.log(g.w / g.h),
        (g.r0 - top) / H,
        (g.r1 - base) / H,
        crop.mean(),
    ], np.float32)
    return np.concatenate([shape, 2.0 * extra])


class GlyphReader:
    """Nearest-neighbour glyph classifier with a rejection distance."""

    def __init__(self, feats: np.ndarray, labels: np.ndarray, reject: float):
        self.feats = feats.astype(np.float32)
        self.labels = labels
        self.reject = reject
        self._sq = (self.feats ** 2).sum(1)

    def classify(self, glyphs: list[Glyph]) -> list[tuple[str | None, float]]:
        if not glyphs:
            return []
        top, base = line_metrics(glyphs)
        X = np.stack([glyph_features(g, top, base) for g in glyphs])
        d2 = (X ** 2).sum(1)[:, None] + self._sq[None, :] - 2 * X @ self.feats.T
        idx = np.argmin(d2, axis=1)
        dist = np.sqrt(np.maximum(d2[np.arange(len(glyphs)), idx], 0))
        return [(str(self.labels[i]) if d <= self.reject else None, float(d)) for i, d in zip(idx, dist)]


    def read_line(self, ink: np.ndarray, *, penalty: float = 0.3, top_k: int = 4) -> tuple[str, float] | None:
        """Read a scale-bar label line (bool ink image) as ``<number><unit>``, or None.

        The line's connected components are read left to right by dynamic programming over
        tokens - one component, two or three adjacent components merged (a broken glyph), or a
        rejected component cut at local minima of its column ink count (touching glyphs; the
        common touching pairs such as 'µm' or '00' are classes of their own) - and over the
        states of the label grammar ``digits [. digits] (µ|u|n|m) m``.  Each token may take any
        of its ``top_k`` nearest classes within the rejection distance; the cheapest reading
        (distances plus ``penalty`` per token) that the grammar accepts wins.  Specks (under a
        quarter of the line height both ways) may be dropped, and so may components before the
        number or after the unit (neighbouring blobs), at a cost.
        Returns the text (a space where the gap exceeds 0.35 line heights) and the mean distance.
        """
        comps = glyph_components(ink, min_area=1)
        if not comps:
            return None
        comps = _merge_stacked(comps, ink)
        top, base = line_metrics(comps)
        H = base - top + 1
        n = len(comps)
        speck = [g.h < 0.25 * H and g.w < 0.25 * H for g in comps]
        cands = [self._topk(g, top, base, top_k) for g in comps]
        INF = float("inf")
        # best[(k, state, number)] = (cost, tokens): comps[:k] read as `number` so far, grammar in `state`
        best: dict = {(0, 0, ""): (0.0, [])}
        for k in range(n):
            for key_k in sorted((key for key in best if key[0] == k), key=lambda key: key[1:]):
                _, state, num = key_k
                cost_k, toks = best[key_k]
                g = comps[k]
                options = []  # (step, [(label, d, glyph)], extra cost)
                if speck[k]:
                    options.append((1, [], 1.5))  # dropped, unless read as a '.' the grammar wants
                elif state == 5 or (state == 0 and (
                        not cands[k] or cands[k][0][1] > 0.6  # not a confident glyph
                        or k + 1 == n or comps[k + 1].c0 - g.c1 > 0.35 * H)):
                    # a neighbouring blob before the label, or anything after its final 'm'
                    options.append((1, [], 1.0))
                for lab, d in cands[k]:
                    options.append((1, [(lab, d, g)], d + penalty))
                if not cands[k] and not speck[k]:
                    seq = self._split(g, top, base, penalty)
                    if seq is not None:
                        options.append((1, [(lab, d, g) for lab, d in seq], sum(d for _, d in seq) + penalty * len(seq)))
                # a glyph broken in two or three ('m' as 'n' + '1', or as three stems): one character
                m = g
                for step in (2, 3):
                    j = k + step - 1
                    if j >= n or speck[j] or comps[j].c0 - comps[j - 1].c1 > 0.25 * H:
                        break
                    m = _merge(m, comps[j], ink)
                    for lab, d in self._topk(m, top, base, top_k):
                        if len(lab) == 1:
                            options.append((step, [(lab, d, m)], d + penalty))
                for step, new, extra in options:
                    st, number = state, num
                    for lab, _, _ in new:
                        for ch in lab:
                            st = _GRAMMAR.get((st, _CHAR_CLASS.get(ch, ch)), -1)
                            if st < 0:
                                break
                            if ch in _NUMBER_CHARS:
                                number += ch
                        if st < 0:
                            break
                    if st < 0:
                        continue
                    key = (k + step, st, number)
                    if cost_k + extra < best.get(key, (INF, None))[0]:
                        best[key] = (cost_k + extra, toks + new)
        finals = [(v[0], key[2], v[1]) for key, v in best.items() if key[0] == n and key[1] == 5 and v[1]]
        if not finals:
            return None
        # a usual scale-bar number (1, 1.5, 2, 2.5, 3, ... x 10^k) wins over a cheaper unusual one
        usual = [f for f in finals if is_usual_number(f[1])]
        _, _, tokens = min(usual or finals, key=lambda f: (f[0], f[1]))
        text, dists, prev = [], [], None
        for lab, d, g in tokens:
            if prev is not None and g.c0 - prev > 0.35 * H:
                text.append(" ")
            prev = g.c1
            text.append(lab)
            dists.append(d)
        return "".join(text), float(np.mean(dists))

    def looks_like_text(self, ink: np.ndarray) -> bool:
        """Whether a line is plausibly text that could not be read: two or more glyph-sized
        components of about the line height on one baseline, one of them near a known glyph."""
        comps = _merge_stacked(glyph_components(ink, min_area=1), ink)
        if len(comps) < 2:
            return False
        top, base = line_metrics(comps)
        H = base - top + 1
        tall = [g for g in comps if g.h >= 0.6 * H and abs(g.r1 - base) <= 0.25 * H + 1]
        if len(tall) < 2:
            return False
        return any(self._topk(g, top, base, 1) for g in tall)

    def _topk(self, g: Glyph, top: float, base: float, k: int) -> list[tuple[str, float]]:
        """Up to ``k`` distinct classes nearest to glyph ``g`` within the rejection distance."""
        x = glyph_features(g, top, base)[None, :]
        d2 = (x ** 2).sum(1)[:, None] + self._sq[None, :] - 2 * x @ self.feats.T
        d = np.sqrt(np.maximum(d2[0], 0.0))
        order = np.argsort(d)[: 50]
        out: list[tuple[str, float]] = []
        seen: set = set()
        for i in order:
            if d[i] > self.reject:
                break
            lab = str(self.labels[i])
            if lab not in seen:
                seen.add(lab)
                out.append((lab, float(d[i])))
                if len(out) == k:
                    break
        return out

    def _split(self, g: Glyph, top: float, base: float, penalty: float):
        p = g.crop.sum(axis=0).astype(float)
        w = len(p)
        cuts = [0] + [k for k in range(1, w - 1) if p[k] <= p[k - 1] and p[k] <= p[k + 1] and p[k] <= 0.6 * p.max()]
        cuts = sorted(set(cuts + [w]))
        n = len(cuts)
        best = [np.inf] * n
        choice: list = [None] * n
        best[0] = 0.0
        for j in range(1, n):
            for i in range(max(0, j - 8), j):
                if not np.isfinite(best[i]) or (i == 0 and j == n - 1):
                    continue
                sub = _segment(g.crop, cuts[i], cuts[j])
                if sub is None:
                    continue
                sub = Glyph(g.r0 + sub.r0, g.c0 + sub.c0, g.r0 + sub.r1, g.c0 + sub.c1, sub.crop)
                (lab, d), = self._classify_with(sub, top, base)
                if lab is None:
                    continue
                cost = best[i] + d + penalty
                if cost < best[j]:
                    best[j], choice[j] = cost, (i, lab, d)
        if not np.isfinite(best[-1]):
            return None
        seq = []
        j = n - 1
        while j > 0:
            i, lab, d = choice[j]
            seq.append((lab, d))
            j = i
        return seq[::-1]

    def _classify_with(self, g: Glyph, top: float, base: float) -> list[tuple[str | None, float]]:
        x = glyph_features(g, top, base)[None, :]
        d2 = (x ** 2).sum(1)[:, None] + self._sq[None, :] - 2 * x @ self.feats.T
        i = int(np.argmin(d2[0]))
        d = float(np.sqrt(max(d2[0, i], 0.0)))
        return [(str(self.labels[i]) if d <= self.reject else None, d)]


def _merge_stacked(comps: list[Glyph], ink: np.ndarray) -> list[Glyph]:
    """Merge components that overlap horizontally by most of the narrower one (a broken stroke)."""
    out: list[Glyph] = []
    for g in comps:
        if out:
            p = out[-1]
            overlap = min(p.c1, g.c1) - max(p.c0, g.c0) + 1
            if overlap >= 0.7 * min(p.w, g.w):
                r0, c0, r1, c1 = min(p.r0, g.r0), min(p.c0, g.c0), max(p.r1, g.r1), max(p.c1, g.c1)
                out[-1] = Glyph(r0, c0, r1, c1, ink[r0:r1 + 1, c0:c1 + 1].copy())
                continue
        out.append(g)
    return out


def _merge(a: Glyph, b: Glyph, ink: np.ndarray) -> Glyph:
    r0, c0, r1, c1 = min(a.r0, b.r0), min(a.c0, b.c0), max(a.r1, b.r1), max(a.c1, b.c1)
    return Glyph(r0, c0, r1, c1, ink[r0:r1 + 1, c0:c1 + 1].copy())


def _segment(ink: np.ndarray, a: int, b: int) -> Glyph | None:
    sub = ink[:, a:b]
    rows = np.flatnonzero(sub.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(sub.any(axis=0))
    r0, r1 = int(rows[0]), int(rows[-1])
    c0, c1 = int(cols[0]), int(cols[-1])
    return Glyph(r0, a + c0, r1, a + c1, sub[r0:r1 + 1, c0:c1 + 1])


# label grammar: 0 start, 1 integer digits, 2 after '.', 3 fraction digits, 4 unit prefix, 5 done ('m')
# 6 = a leading '0', which only a decimal point may follow (numbers have no leading zeros: '025' is not one)
_CHAR_CLASS = {**{d: "d" for d in "123456789"}, "0": "z", "µ": "p", "u": "p", "n": "p"}
_GRAMMAR = {(0, "d"): 1, (1, "d"): 1, (1, "z"): 1, (1, "."): 2, (2, "d"): 3, (2, "z"): 3, (3, "d"): 3, (3, "z"): 3,
            (0, "z"): 6, (6, "."): 2,
            (1, "p"): 4, (3, "p"): 4, (1, "m"): 4, (3, "m"): 4, (4, "m"): 5}

_NUMBER_CHARS = frozenset("0123456789.")
#: Significant digits of the numbers scale bars are labelled with: 1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 7.5, 8, 9
#: times a power of ten (the generated test files use 1, 2, 2.5 and 5 only).
USUAL_MANTISSAS = frozenset({"1", "15", "2", "25", "3", "4", "5", "6", "7", "75", "8", "9"})


def is_usual_number(number: str) -> bool:
    """Whether ``number`` (digits, maybe one '.') is a usual scale-bar number: '100', '0.25', '750', not '191'."""
    digits = number.replace(".", "").replace(",", "").strip("0")
    return digits in USUAL_MANTISSAS


_TRAIN_STRINGS = ("0123456789", "0.5", "8µm", "8um", "8nm", "8mm", "1.25")  # a digit in each: line metrics


_KERNEL = np.ones((2, 2), np.uint8)


def _variants(cov: np.ndarray, rng) -> list[np.ndarray]:
    """Ink images of one rendering as a file may show it: two thresholds, blurred, noisy, bolder, thinner."""
    blur = cv2.GaussianBlur(cov, (0, 0), 0.7)
    noisy = np.clip(cov + rng.normal(0, 0.08, cov.shape), 0, 1).astype(np.float32)
    base = cov > 0.5
    return [
        base,
        cov > 0.35,
        blur > 0.4,
        noisy > 0.5,
        cv2.dilate(base.astype(np.uint8), _KERNEL) > 0,  # bold fonts the reader never saw
        cv2.dilate(base.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0,
        cv2.erode((cov > 0.3).astype(np.uint8), _KERNEL) > 0,  # thin fonts
    ]


#: Touching pairs learned as classes: scale-bar numbers are 1-2-2.5-5 series, so digit pairs of 0/1/2/5,
#: and the units and a digit followed directly by a unit ('5µm').
_PAIRS = tuple(a + b for a in "0125" for b in "0125") + ("µm", "um", "nm", "mm") + tuple(
    a + b for a in "0125" for b in "µunm")


def _training_glyphs(fonts, heights, rng) -> tuple[np.ndarray, np.ndarray]:
    feats, labels = [], []
    for font in fonts:
        for h in heights:
            for s in _TRAIN_STRINGS:
                if "µ" in s and not has_micro(font):
                    continue
                # rendered with separation so each char is one component
                cov = render_text(s, font, h, spacing=0.6)
                for ink in _variants(cov, rng):
                    comps = _merge_stacked(glyph_components(ink, min_area=1), ink)
                    if len(comps) != len(s):
                        continue
                    top, base = line_metrics(comps)
                    H = base - top + 1
                    if any((g.h < 0.4 * H) != (ch == ".") for g, ch in zip(comps, s)):
                        continue  # a stroke broke off: the components are not the characters
                    for g, ch in zip(comps, s):
                        feats.append(glyph_features(g, top, base))
                        labels.append(ch)
            for pair in _PAIRS:
                if "µ" in pair and not has_micro(font):
                    continue
                cov = render_text("8 " + pair, font, h)  # the '8' gives the line's digit height and baseline
                for ink in _variants(cov, rng):
                    comps = _merge_stacked(glyph_components(ink, min_area=1), ink)
                    if len(comps) != 2:
                        continue  # the pair does not touch in this rendering
                    top, base = line_metrics(comps)
                    if comps[1].h < 0.4 * (base - top + 1) or comps[0].h < 0.9 * (base - top + 1):
                        continue
                    feats.append(glyph_features(comps[1], top, base))
                    labels.append(pair)
    return np.stack(feats), np.array(labels, dtype=object)


_HEIGHTS = (9, 10, 11, 12, 13, 14, 16, 18, 20, 22, 25, 28, 32, 36, 40)
_REJECT = 1.05  # nearest-template distance beyond which a glyph is not recognised


def _cache_path(fonts: tuple[str, ...]) -> Path | None:
    """Where the rendered glyph bank is cached: ``$QUANTMET_CACHE_DIR`` or ``~/.cache/quantmet``.

    The file name hashes this module's source, the fonts and the library versions, so a change
    of any of them renders the bank anew.  ``QUANTMET_CACHE_DIR=""`` disables the cache.
    """
    import hashlib
    from importlib.metadata import version

    root = os.environ.get("QUANTMET_CACHE_DIR")
    if root == "":
        return None
    base = Path(root) if root else Path.home() / ".cache" / "quantmet"
    key = hashlib.sha256()
    key.update(Path(__file__).read_bytes())
    versions = tuple(version(p) for p in ("opencv-python-headless", "pillow", "matplotlib")) + (np.__version__,)
    key.update(repr((fonts, _HEIGHTS, cv2.__version__, versions)).encode())
    return base / f"glyphs-{key.hexdigest()[:16]}.npz"


@functools.lru_cache(maxsize=2)
def glyph_reader(fonts: tuple[str, ...] = READER_FONTS) -> GlyphReader:
    """The label classifier, built from glyphs rendered in ``fonts``.

    Rendering the bank takes ~10 s; it is kept per process and in a small cache file
    (:func:`_cache_path`; written atomically, so parallel workers may race safely).
    """
    path = _cache_path(tuple(fonts))
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return GlyphReader(z["feats"].astype(np.float32), z["labels"].astype(object), reject=_REJECT)
        except Exception:  # noqa: BLE001 - a broken cache file is rebuilt
            pass
    feats, labels = _training_glyphs(fonts, _HEIGHTS, np.random.default_rng(12345))
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez_compressed(tmp, feats=feats.astype(np.float16), labels=labels.astype(str))
            os.replace(tmp, path)
        except OSError:
            pass  # read-only home: rendered again next time
    return GlyphReader(feats.astype(np.float16).astype(np.float32), labels, reject=_REJECT)
