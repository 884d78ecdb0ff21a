"""Overlapping-tile inference for images of any size (pure NumPy, model-agnostic).

A model is anything callable as ``predict_fn(batch) -> probabilities`` on
float32 batches of shape ``(B, t, t, 1)``.  :func:`predict_tiled` pads the
image by reflection, cuts it into ``t x t`` tiles that overlap by ``overlap``
pixels, sends them to ``predict_fn`` in batches, and blends the overlapping
predictions with a smooth (Hann) window that has a positive floor, so every
pixel is a weighted mean of all tiles covering it and tile seams vanish.
Tiles are processed one row of tiles at a time and finished rows are written
out at once: besides the output, memory holds only a band of ``2 t`` rows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np

__all__ = [
    "PredictFn",
    "auto_tile",
    "hann_window",
    "normalize_scan",
    "plan_tile",
    "predict_tiled",
    "prob_to_mask",
    "tile_count",
    "tile_starts",
    "tta_predict_fn",
]

log = logging.getLogger(__name__)

PredictFn = Callable[[np.ndarray], np.ndarray]

#: The square tile sides ``tile="auto"`` chooses from (:func:`plan_tile`): the models train on
#: 256-px patches; above 512 px a batch of tiles costs memory for no fewer pixels on a typical scan.
AUTO_TILE_RANGE = (256, 512)


def normalize_scan(pixels: np.ndarray, *, center: float = 0.5, scale: float = 0.2,
                   exclude: np.ndarray | None = None) -> np.ndarray:
    """Map a gray scan to float32 [0, 1] robustly: ``center + scale * (x - median) / IQR``, clipped.

    The median and inter-quartile range are taken over the whole image (a strided
    subsample for big ones), so the result does not depend on the bit depth or on
    the exposure (any affine change of the gray values gives the same output) and
    hardly on the impurity content (a few percent of the pixels).

    Parameters
    ----------
    pixels : ndarray, shape (M, N)
        uint8 or uint16 gray values (other real dtypes are accepted too).
    center, scale : float
        Output value of the median, and output units per inter-quartile range.
    exclude : ndarray of bool, shape (M, N), optional
        Pixels left out of the median and IQR (a burned-in data bar or scale bar, outside the ROI);
        they are still mapped.  None, or nothing excluded, gives the whole-image statistics.

    Returns
    -------
    ndarray, shape (M, N), float32 in [0, 1]

    Raises
    ------
    ValueError
        For a non-2-D, empty, non-finite or constant image.
    """
    a = np.asarray(pixels)
    if a.ndim != 2:
        raise ValueError(
            f"expected a 2-D gray image (M, N), got shape {a.shape}; "
            "convert RGB to gray first (data.to_gray)"
        )
    if a.size == 0:
        raise ValueError("empty image")
    if a.dtype == np.bool_ or a.dtype.kind not in "uif":
        raise ValueError(f"unsupported image dtype {a.dtype}; expected uint8 or uint16")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise ValueError("image contains NaN or infinite values")
    step = max(1, int(np.sqrt(a.size / 1_000_000)))
    sample = a[::step, ::step]
    if exclude is not None:
        ex = np.asarray(exclude, bool)
        if ex.shape != a.shape:
            raise ValueError(f"exclude must have the image's shape {a.shape}, got {ex.shape}")
        keep = ~ex[::step, ::step]
        if keep.any() and not keep.all():
            sample = sample[keep]
    if a.dtype in (np.uint8, np.uint16):
        q25, q50, q75 = _int_percentiles(sample, (25, 50, 75))
        sample_min, sample_max = int(sample.min()), int(sample.max())
    else:
        sample = sample.astype(np.float64)
        q25, q50, q75 = np.percentile(sample, [25, 50, 75])
        sample_min, sample_max = float(sample.min()), float(sample.max())
    iqr = q75 - q25
    if not iqr > 0:
        lo, hi = float(sample_min), float(sample_max)
        if hi <= lo:
            raise ValueError(f"constant image (all pixels = {lo:g}): nothing to segment")
        iqr = (hi - lo) / 2.0  # nearly constant image: fall back on the full range
    out = center + scale * (a.astype(np.float32) - np.float32(q50)) / np.float32(iqr)
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


def _int_percentiles(values: np.ndarray, qs) -> list[float]:
    """``np.percentile(values, qs)`` (linear interpolation) of uint8 / uint16 values from their histogram.

    The same numbers as sorting (the k-th smallest value is read off the cumulative counts), in one
    pass instead of a partition of the whole scan.
    """
    cum = np.cumsum(np.bincount(values.ravel(), minlength=1))
    n = int(cum[-1])
    out = []
    for q in qs:
        h = (n - 1) * float(q) / 100.0
        k = int(np.floor(h))
        lo = int(np.searchsorted(cum, k, side="right"))
        hi = int(np.searchsorted(cum, min(k + 1, n - 1), side="right"))
        out.append(lo + (h - k) * (hi - lo))
    return out


def hann_window(tile: int, *, floor: float = 0.05) -> np.ndarray:
    """2-D blending window ``floor + (1 - floor) * hann(r) * hann(c)``.

    The 1-D Hann window is sampled at pixel centres (``sin^2(pi (i + 0.5) / t)``),
    so it is positive everywhere and symmetric.

    Parameters
    ----------
    tile : int
        Side length ``t``.
    floor : float
        Minimum weight in (0, 1]; 1 gives a flat (box) window.

    Returns
    -------
    ndarray, shape (t, t), float32, maximum 1
    """
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    if not 0.0 < floor <= 1.0:
        raise ValueError(f"floor must be in (0, 1], got {floor}")
    h = np.sin(np.pi * (np.arange(tile) + 0.5) / tile) ** 2
    w = floor + (1.0 - floor) * np.outer(h, h)
    return (w / w.max()).astype(np.float32)


def tile_starts(length: int, tile: int, step: int) -> np.ndarray:
    """Start offsets of tiles of size ``tile`` every ``step`` covering ``[0, length)``.

    The last tile is aligned with the end (``length - tile``), so all tiles lie
    inside; ``length >= tile`` is required.

    >>> tile_starts(10, 4, 3).tolist()
    [0, 3, 6]
    >>> tile_starts(11, 4, 3).tolist()
    [0, 3, 6, 7]
    """
    if tile < 1 or step < 1:
        raise ValueError(f"tile and step must be >= 1, got {tile}, {step}")
    if length < tile:
        raise ValueError(f"length {length} is smaller than the tile {tile}; pad first")
    starts = list(range(0, length - tile + 1, step))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return np.asarray(starts, dtype=np.int64)


def tile_count(shape: tuple[int, int], *, tile: int, overlap: int) -> int:
    """Number of tiles :func:`predict_tiled` sends to the model for an image of ``shape`` (one scale).

    >>> tile_count((874, 1330), tile=256, overlap=32)
    24
    """
    m, n = (int(v) for v in shape)
    if m < 1 or n < 1:
        raise ValueError(f"shape must be positive, got {shape}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got {overlap} for tile {tile}")
    margin = overlap // 2
    pm, pn = max(tile, m + 2 * margin), max(tile, n + 2 * margin)
    step = tile - overlap
    return len(tile_starts(pm, tile, step)) * len(tile_starts(pn, tile, step))


def plan_tile(
    shape: tuple[int, int],
    *,
    overlap: int,
    multiple: int = 16,
    min_tile: int = AUTO_TILE_RANGE[0],
    max_tile: int = AUTO_TILE_RANGE[1],
) -> int:
    """The square tile side that makes the model compute the fewest pixels for an image of ``shape``.

    Every side ``t`` in ``[min_tile, max_tile]`` that is a multiple of
    ``multiple`` is costed as ``tile_count(shape, t, overlap) * t**2`` (the
    pixels the tiles hold, padding and overlaps included); the cheapest wins,
    the smallest side on a tie.  A 1330 x 874 scan with ``overlap=32`` needs
    24 tiles of 256 px (1.57 Mpx) but 6 of 480 px (1.38 Mpx).

    >>> plan_tile((874, 1330), overlap=32)
    480
    >>> plan_tile((200, 200), overlap=32)   # smaller than any tile: the smallest
    256
    """
    if multiple < 1 or min_tile < multiple or max_tile < min_tile:
        raise ValueError(f"need 1 <= multiple <= min_tile <= max_tile, got {multiple}, {min_tile}, {max_tile}")
    first = -(-int(min_tile) // multiple) * multiple
    sides = [t for t in range(first, int(max_tile) + 1, multiple) if t > overlap]
    if not sides:
        raise ValueError(f"no tile side in [{min_tile}, {max_tile}] (multiple of {multiple}) exceeds overlap {overlap}")
    return min(sides, key=lambda t: (tile_count(shape, tile=t, overlap=overlap) * t * t, t))


def auto_tile(shape: tuple[int, int], *, overlap: int, multiple: int = 16) -> int:
    """The tile side ``predict_tiled(tile="auto", multiple=multiple)`` uses for an image of ``shape``.

    :func:`plan_tile` over :data:`AUTO_TILE_RANGE` on a grid of ``lcm(16, multiple)``
    px (a model of depth ``d`` needs ``multiple = 2**d``), so a plan costs a few
    hundred tile counts at most.

    >>> auto_tile((874, 1330), overlap=32, multiple=16)
    480
    """
    grid = math.lcm(16, max(1, int(multiple)))
    if multiple < 1 or grid > AUTO_TILE_RANGE[1]:
        raise ValueError(f"multiple must be >= 1 with lcm(16, multiple) <= {AUTO_TILE_RANGE[1]}, got {multiple}")
    return plan_tile(shape, overlap=max(0, int(overlap)), multiple=grid, min_tile=max(AUTO_TILE_RANGE[0], grid))


def tta_predict_fn(predict_fn: PredictFn, *, transforms: int = 4) -> PredictFn:
    """Test-time augmentation: average ``predict_fn`` over flips / rotations of each tile.

    The wrapped function sends the tile batch in ``transforms`` orientations
    as one batch of ``B * transforms`` tiles (the identity, the horizontal and
    vertical flips and both for ``transforms=4``; the 8 flips/rotations of the
    square for ``transforms=8``), maps every prediction back and averages.

    Parameters
    ----------
    predict_fn : callable
        As for :func:`predict_tiled`.
    transforms : {1, 2, 4, 8}
        Number of orientations (1 = no augmentation).

    Returns
    -------
    callable
        A ``predict_fn`` with the same contract.
    """
    if transforms not in (1, 2, 4, 8):
        raise ValueError(f"transforms must be 1, 2, 4 or 8, got {transforms}")
    if transforms == 1:
        return predict_fn
    ks = {2: (0, 4), 4: (0, 2, 4, 6), 8: tuple(range(8))}[transforms]

    def fwd(b: np.ndarray, k: int) -> np.ndarray:  # (B, t, t, ...) -> k-th orientation
        out = np.rot90(b, k % 4, axes=(1, 2))
        return out[:, :, ::-1] if k >= 4 else out

    def inv(b: np.ndarray, k: int) -> np.ndarray:
        out = b[:, :, ::-1] if k >= 4 else b
        return np.rot90(out, -(k % 4), axes=(1, 2))

    def fn(batch: np.ndarray) -> np.ndarray:
        if batch.shape[1] != batch.shape[2]:
            raise ValueError(f"test-time augmentation needs square tiles, got {batch.shape[1:3]}")
        n = batch.shape[0]
        big = np.ascontiguousarray(np.concatenate([fwd(batch, k) for k in ks]))
        pred = _call(predict_fn, big)
        return np.mean([inv(pred[i * n : (i + 1) * n], k) for i, k in enumerate(ks)], axis=0)

    return fn


def _pad(image: np.ndarray, pads: tuple[tuple[int, int], tuple[int, int]]) -> np.ndarray:
    if min(image.shape) > 1:
        return np.pad(image, pads, mode="reflect")
    return np.pad(image, pads, mode="edge")  # reflect is undefined along a 1-pixel axis


def _call(predict_fn: PredictFn, batch: np.ndarray) -> np.ndarray:
    out = np.asarray(predict_fn(batch))
    if out.ndim == 4 and out.shape[-1] == 1:
        out = out[..., 0]
    # (B, t, t): one probability per pixel; (B, t, t, C), C >= 2: one per class (blended alike)
    if out.shape[:3] != batch.shape[:3] or out.ndim not in (3, 4):
        raise ValueError(
            f"predict_fn returned shape {out.shape} for a batch of shape {batch.shape}; "
            "expected (B, t, t), (B, t, t, 1) or (B, t, t, C)"
        )
    return out.astype(np.float32, copy=False)


def _predict_one_scale(
    image: np.ndarray,
    predict_fn: PredictFn,
    *,
    tile: int,
    overlap: int,
    batch_size: int,
    window: np.ndarray,
) -> np.ndarray:
    m, n = image.shape
    margin = overlap // 2
    pad_r = max(0, tile - (m + 2 * margin))
    pad_c = max(0, tile - (n + 2 * margin))
    top, left = margin + pad_r // 2, margin + pad_c // 2
    pads = ((top, margin + pad_r - pad_r // 2), (left, margin + pad_c - pad_c // 2))
    padded = _pad(image, pads)
    pm, pn = padded.shape
    step = tile - overlap
    rows, cols = tile_starts(pm, tile, step), tile_starts(pn, tile, step)
    # Rolling accumulators for padded rows [band0, band0 + 2 * tile); the output and ``num``
    # get a class axis when the model returns (B, t, t, C) (allocated at the first prediction).
    out = num = None
    den = np.zeros((2 * tile, pn), np.float32)
    band0 = 0

    def flush(upto: int) -> None:
        """Write padded rows [band0, upto) to the output and shift the band."""
        nonlocal band0
        k = upto - band0
        if k <= 0:
            return
        lo, hi = max(band0, top), min(upto, top + m)
        if hi > lo:
            sl = slice(lo - band0, hi - band0)
            d = den[sl, left : left + n]
            out[lo - top : hi - top] = num[sl, left : left + n] / (d if num.ndim == 2 else d[..., None])
        num[: 2 * tile - k] = num[k:]
        den[: 2 * tile - k] = den[k:]
        num[2 * tile - k :] = 0.0
        den[2 * tile - k :] = 0.0
        band0 = upto

    for r in rows:
        flush(int(r))
        strip = padded[r : r + tile]
        tiles = np.stack([strip[:, c : c + tile] for c in cols])[..., None]
        preds = np.concatenate(
            [_call(predict_fn, tiles[i : i + batch_size]) for i in range(0, len(tiles), batch_size)]
        )
        if num is None:
            extra = preds.shape[3:]
            out = np.empty((m, n, *extra), np.float32)
            num = np.zeros((2 * tile, pn, *extra), np.float32)
        win = window if preds.ndim == 3 else window[..., None]
        o = int(r) - band0
        for c, p in zip(cols, preds, strict=True):
            num[o : o + tile, c : c + tile] += p * win
            den[o : o + tile, c : c + tile] += window
    flush(pm)
    return out


def predict_tiled(
    image: np.ndarray,
    predict_fn: PredictFn,
    *,
    tile: int | str = 256,
    overlap: int = 32,
    batch_size: int = 8,
    floor: float = 0.05,
    scales: Sequence[float] = (1.0,),
    multiple: int = 1,
) -> np.ndarray:
    """Per-pixel probabilities of a whole image from a tile model.

    Parameters
    ----------
    image : ndarray, shape (M, N)
        Float image as the model expects it (e.g. from :func:`normalize_scan`);
        any size, including smaller than a tile (it is padded by reflection).
    predict_fn : callable
        ``predict_fn(batch)`` with ``batch`` float32 ``(B, tile, tile, 1)``
        returns ``(B, tile, tile[, 1])`` probabilities, or ``(B, tile, tile, C)``
        class probabilities (a softmax head), blended per class.
    tile : int or 'auto'
        Tile side in pixels; ``'auto'``: the side in :data:`AUTO_TILE_RANGE`
        (a multiple of 16 and of ``multiple``) with the fewest pixels to compute
        (:func:`plan_tile`), chosen per scale.
    overlap : int
        Overlap of neighbouring tiles in pixels (``0 <= overlap < tile``); the
        image is also reflect-padded by ``overlap // 2`` on every side so border
        pixels get context.
    batch_size : int
        Tiles per ``predict_fn`` call.
    floor : float
        Floor of the Hann blending window (see :func:`hann_window`).
    scales : sequence of float
        Multi-scale averaging: the image is resized by each factor, predicted,
        resized back and the probabilities are averaged.  ``(1.0,)`` = one scale.
    multiple : int
        ``tile`` must be a multiple of this (e.g. ``2 ** depth`` of a U-Net).

    Returns
    -------
    ndarray, shape (M, N) (or (M, N, C) for a C-class model), float32
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D image (M, N), got shape {img.shape}")
    if img.size == 0:
        raise ValueError("empty image")
    img = img.astype(np.float32, copy=False)
    if not np.all(np.isfinite(img)):
        raise ValueError("image contains NaN or infinite values")
    auto = isinstance(tile, str)
    if auto and tile != "auto":
        raise ValueError(f"tile must be a positive int or 'auto', got {tile!r}")
    if auto:
        tile = auto_tile(img.shape, overlap=overlap, multiple=multiple)
    tile = int(tile)
    if tile < 1 or multiple < 1 or tile % multiple:
        raise ValueError(f"tile ({tile}) must be a positive multiple of {multiple}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got {overlap} for tile {tile}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    scales = tuple(float(s) for s in scales)
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be positive, got {scales}")
    windows = {tile: hann_window(tile, floor=floor)}
    total = None
    for s in scales:
        if s == 1.0:
            src = img
        else:
            size = (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s)))
            interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
            src = cv2.resize(img, size, interpolation=interp)
        t = auto_tile(src.shape, overlap=overlap, multiple=multiple) if auto and s != 1.0 else tile
        if t not in windows:
            windows[t] = hann_window(t, floor=floor)
        prob = _predict_one_scale(
            src, predict_fn, tile=t, overlap=overlap, batch_size=batch_size, window=windows[t]
        )
        if s != 1.0:
            back = cv2.resize(prob, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
            prob = back.reshape(img.shape + prob.shape[2:])  # keeps a class axis of size 1..C
        if total is None:
            total = prob
        else:
            total += prob
    return total / np.float32(len(scales))


def prob_to_mask(
    prob: np.ndarray,
    threshold: float,
    *,
    min_area_px: int = 0,
    extent_threshold: float | None = None,
    extent_rel_peak: float = 0.6,
) -> np.ndarray:
    """Threshold probabilities (``prob >= threshold``) and drop 8-connected objects below ``min_area_px``.

    Parameters
    ----------
    prob : ndarray, shape (M, N)
    threshold : float
        In (0, 1), typically the one chosen on held-out tuning data (model card).
        Objects are found (and counted) at this threshold.
    min_area_px : int
        Objects with fewer pixels are removed (0 = keep all).
    extent_threshold : float, optional
        Two-level masks: each object found at ``threshold`` keeps only its
        pixels with ``prob >= min(extent_threshold, extent_rel_peak * peak)``,
        ``peak`` its own highest probability.  A low detection threshold finds
        faint small impurities, the extent threshold keeps large ones from
        growing a halo (the impurity area fraction); no object is lost
        (its peak pixel stays), though one may split in pieces.
        None = one level.
    extent_rel_peak : float
        In (0, 1]; see ``extent_threshold``.

    Returns
    -------
    ndarray, shape (M, N), bool

    Examples
    --------
    >>> p = np.array([[0.0, 0.25, 0.3, 0.0, 0.0], [0.0, 0.3, 0.9, 0.3, 0.0]])
    >>> prob_to_mask(p, 0.2).sum(), prob_to_mask(p, 0.2, extent_threshold=0.5).sum()
    (np.int64(5), np.int64(1))
    """
    from scipy import ndimage  # lazy
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if extent_threshold is not None and not 0.0 < float(extent_threshold) < 1.0:
        raise ValueError(f"extent_threshold must be in (0, 1) or None, got {extent_threshold}")
    if not 0.0 < float(extent_rel_peak) <= 1.0:
        raise ValueError(f"extent_rel_peak must be in (0, 1], got {extent_rel_peak}")
    prob = np.asarray(prob)
    mask = prob >= threshold
    if not mask.any() or (min_area_px <= 1 and extent_threshold is None):
        return mask
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area_px
    keep[0] = False
    if extent_threshold is None:
        return keep[lab]
    peak = ndimage.maximum(prob, lab, np.arange(n))
    cut = np.where(keep, np.minimum(float(extent_threshold), extent_rel_peak * peak), np.inf)
    return prob >= cut[lab]
