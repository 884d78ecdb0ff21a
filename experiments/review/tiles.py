"""Deep Zoom tiles of a run's scans, rendered on demand from the scan file and its label image.

A scan of ``W x H`` pixels has levels ``0 .. L`` with ``L = ceil(log2(max(W, H)))``; level
``l`` is the scan reduced to ``ceil(W / 2^(L - l)) x ceil(H / 2^(L - l))`` (level ``L`` =
full resolution), cut into ``tile_size`` tiles that overlap their neighbours by ``overlap``
pixels (the Deep Zoom layout that OpenSeadragon reads).  Impurities are coloured by their
score (``viridis``: dark violet = 0, yellow = 1) over the gray scan; the plain scan is served
too (``overlay=False``).

The first request for a scan decodes its file and label image once, colours it and builds
the whole pyramid (about 4 bytes per scan pixel, 0.1 GB for 5000 x 5000); the last
``cache_scans`` scans stay in memory and encoded tiles are kept in a small LRU cache, so
panning and zooming only slice and encode.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from data.io import read_image

from .rundata import RunData

__all__ = ["TileError", "TileRenderer", "deep_zoom_levels"]

log = logging.getLogger(__name__)


class TileError(Exception):
    """No such tile, or the scan image is not available (HTTP 404)."""


def deep_zoom_levels(width: int, height: int) -> list[tuple[int, int]]:
    """``(width, height)`` of every Deep Zoom level, level 0 (1 x 1) first."""
    top = max(0, math.ceil(math.log2(max(width, height, 1))))
    return [
        (math.ceil(width / 2 ** (top - lv)), math.ceil(height / 2 ** (top - lv)))
        for lv in range(top + 1)
    ]


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    p = np.asarray(pixels)
    if p.dtype == np.uint8:
        if p.size and int(p.max()) <= 1:  # a 0/1 mask
            return (p * 255).astype(np.uint8)
        return p
    x = p.astype(np.float32)
    sample = x[:: max(1, x.shape[0] // 512), :: max(1, x.shape[1] // 512)]
    lo, hi = np.percentile(sample, [0.5, 99.5]) if sample.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((x - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def _read_labels(path: Path) -> np.ndarray:
    import tifffile

    return tifffile.imread(path)


def _colours(n: int) -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps["viridis"](np.linspace(0, 1, n))[:, :3] * 255).astype(np.float32)


@dataclass
class _Scan:
    width: int
    height: int
    gray: np.ndarray  # (H, W) uint8
    labels: np.ndarray | None  # (H, W) int, or None
    lut: np.ndarray | None  # region_id -> score
    message: str = ""
    pyramids: dict = field(default_factory=dict)  # overlay flag -> [level images]
    lock: threading.Lock = field(default_factory=threading.Lock)


class TileRenderer:
    """Renders and caches the Deep Zoom tiles of a run's scans (thread-safe).

    Parameters
    ----------
    run : RunData
    tile_size, overlap : int
        Deep Zoom tile size and overlap (px).
    cache_scans : int
        Decoded scans kept in memory.
    quality : int
        JPEG quality of the tiles.
    alpha : float
        Opacity of the score colour over an impurity.
    """

    def __init__(
        self,
        run: RunData,
        *,
        tile_size: int = 256,
        overlap: int = 1,
        cache_scans: int = 3,
        quality: int = 90,
        alpha: float = 0.65,
        cache_tiles: int = 4096,
    ) -> None:
        self.run = run
        self.tile_size = int(tile_size)
        self.overlap = int(overlap)
        self.cache_scans = max(1, int(cache_scans))
        self.quality = int(quality)
        self.alpha = float(alpha)
        self.cache_tiles = int(cache_tiles)
        self._scans: OrderedDict[int, _Scan] = OrderedDict()
        self._loading: dict[int, threading.Lock] = {}
        self._tiles: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._cmap = _colours(256)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="review-warm")
        self._io = ThreadPoolExecutor(max_workers=2, thread_name_prefix="review-io")

    # ------------------------------------------------------------------ scans
    def _load(self, index: int) -> _Scan:
        run = self.run
        sid = str(run.scans.iloc[index]["scan_id"])
        path = run.scan_path(index)
        if path is None:
            raise TileError(f"scans.parquet has no path for scan {sid!r}")
        if not path.exists():
            raise TileError(f"the scan image is gone: {path}")
        lp = run.labels_path(index)
        # the label image is decoded in another thread while this one decodes the scan
        pending = self._io.submit(_read_labels, lp) if lp.exists() else None
        try:
            pixels, _ = read_image(path)
        except Exception as exc:  # a broken file must not take the server down
            if pending is not None:
                pending.cancel()
            raise TileError(f"the scan image cannot be read: {path}: {exc}") from None
        gray = np.ascontiguousarray(_to_uint8(pixels))
        h, w = gray.shape
        labels, lut, message = None, None, ""
        if pending is not None:
            try:
                lab = pending.result()
                if lab.shape != gray.shape:
                    message = f"label image {lp.name} is {lab.shape[1]} x {lab.shape[0]}, the scan {w} x {h}: not shown"
                else:
                    labels = lab
                    lut = run.region_scores(sid)
            except Exception as exc:
                message = f"label image cannot be read ({exc}): impurities are not coloured"
        else:
            message = "no label image for this scan: impurities are not coloured"
        return _Scan(width=w, height=h, gray=gray, labels=labels, lut=lut, message=message)

    def scan(self, index: int) -> _Scan:
        """The decoded scan (cached; loads it on first use)."""
        if not 0 <= index < len(self.run.scans):
            raise TileError(f"no scan number {index}")
        with self._lock:
            s = self._scans.get(index)
            if s is not None:
                self._scans.move_to_end(index)
                return s
            gate = self._loading.setdefault(index, threading.Lock())
        with gate:  # one loader per scan; the others wait for it
            with self._lock:
                s = self._scans.get(index)
                if s is not None:
                    return s
            s = self._load(index)
            with self._lock:
                self._scans[index] = s
                self._scans.move_to_end(index)
                while len(self._scans) > self.cache_scans:
                    old, _ = self._scans.popitem(last=False)
                    for k in [k for k in self._tiles if k[0] == old]:
                        del self._tiles[k]
            return s

    def info(self, index: int) -> dict:
        """What the viewer needs to open a scan, or why it cannot (``available`` False)."""
        row = self.run.scans.iloc[index]
        try:
            s = self.scan(index)
        except TileError as exc:
            h, w = row.get("height"), row.get("width")
            return {
                "available": False,
                "message": str(exc),
                "width": int(w) if w is not None and pd.notna(w) else None,
                "height": int(h) if h is not None and pd.notna(h) else None,
            }
        return {
            "available": True,
            "message": s.message,
            "width": s.width,
            "height": s.height,
            "tile_size": self.tile_size,
            "overlap": self.overlap,
            "max_level": len(deep_zoom_levels(s.width, s.height)) - 1,
            "has_overlay": s.labels is not None,
            "format": "jpeg",
        }

    def warm(self, index: int) -> None:
        """Decode a scan and build its coloured pyramid in the background (errors are ignored)."""

        def job():
            try:
                self._pyramid(self.scan(index), True)
            except Exception as exc:
                log.debug("warming scan %d: %s", index, exc)

        self._pool.submit(job)

    # ------------------------------------------------------------------ pyramid
    def _composite(self, s: _Scan, overlay: bool) -> np.ndarray:
        rgb = cv2.cvtColor(s.gray, cv2.COLOR_GRAY2RGB)
        if not overlay or s.labels is None:
            return rgb
        flat = s.labels.reshape(-1)
        idx = np.flatnonzero(flat)  # impurity pixels (a few % of the scan)
        if idx.size == 0:
            return rgb
        ids = flat[idx].astype(np.int64)
        # one colour per region: score -> colormap; regions without a score: light blue
        lut = s.lut if s.lut is not None else np.zeros(1)
        n = max(int(ids.max()) + 1, lut.size)
        score = np.full(n, np.nan)
        score[: lut.size] = lut
        colours = np.empty((n, 3), np.float32)
        known = np.isfinite(score)
        colours[known] = self._cmap[np.clip(np.round(score[known] * 255).astype(np.int64), 0, 255)]
        colours[~known] = (90.0, 160.0, 255.0)
        a = self.alpha
        out = rgb.reshape(-1, 3)
        g = s.gray.reshape(-1)[idx].astype(np.float32)[:, None]
        out[idx] = (g * (1 - a) + colours[ids] * a).astype(np.uint8)
        return rgb

    def _pyramid(self, s: _Scan, overlay: bool) -> list[np.ndarray]:
        overlay = bool(overlay and s.labels is not None)
        got = s.pyramids.get(overlay)
        if got is not None:
            return got
        with s.lock:
            got = s.pyramids.get(overlay)
            if got is not None:
                return got
            dims = deep_zoom_levels(s.width, s.height)
            levels = [self._composite(s, overlay)]
            for w, h in reversed(dims[:-1]):
                levels.append(cv2.resize(levels[-1], (w, h), interpolation=cv2.INTER_AREA))
            levels.reverse()
            s.pyramids[overlay] = levels
            return levels

    # ------------------------------------------------------------------ tiles
    def tile(self, index: int, level: int, col: int, row: int, *, overlay: bool = True) -> bytes:
        """JPEG bytes of one tile; :class:`TileError` for a tile outside the scan or no image."""
        key = (index, bool(overlay), level, col, row)
        with self._lock:
            hit = self._tiles.get(key)
            if hit is not None:
                self._tiles.move_to_end(key)
                return hit
        s = self.scan(index)
        levels = self._pyramid(s, overlay)
        if not 0 <= level < len(levels):
            raise TileError(f"level {level} outside 0..{len(levels) - 1}")
        img = levels[level]
        h, w = img.shape[:2]
        ts, ov = self.tile_size, self.overlap
        if not (0 <= col < math.ceil(w / ts) and 0 <= row < math.ceil(h / ts)):
            raise TileError(f"tile {col}_{row} outside level {level} ({w} x {h})")
        x0, y0 = max(0, col * ts - ov), max(0, row * ts - ov)
        x1, y1 = min(w, (col + 1) * ts + ov), min(h, (row + 1) * ts + ov)
        tile = np.ascontiguousarray(img[y0:y1, x0:x1, ::-1])  # RGB -> BGR for OpenCV
        ok, buf = cv2.imencode(".jpg", tile, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
            raise TileError("tile cannot be encoded")
        data = buf.tobytes()
        with self._lock:
            self._tiles[key] = data
            while len(self._tiles) > self.cache_tiles:
                self._tiles.popitem(last=False)
        return data

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._io.shutdown(wait=False, cancel_futures=True)
