"""The grid of square rating fields over a scan (only whole fields; a partial field at the border is not used)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import RatingError

__all__ = ["FieldGrid", "field_grid"]


@dataclass(frozen=True)
class FieldGrid:
    """Square fields of ``side_px`` pixels (see :func:`field_grid` for where the grid starts).

    Coordinates are continuous pixel coordinates in which pixel ``(r, c)`` covers
    ``[r, r + 1) x [c, c + 1)`` (a RegionTable centroid ``x`` is at ``x + 0.5``).  Field ``(i, j)``
    covers rows ``[row_edges[i], row_edges[i + 1])`` and cols ``[col_edges[j], col_edges[j + 1])``;
    the edges are rounded to whole pixels, so areas can differ by a pixel row between fields.
    """

    side_px: float
    row_edges: np.ndarray
    col_edges: np.ndarray

    @property
    def n_rows(self) -> int:
        return int(self.row_edges.size - 1)

    @property
    def n_cols(self) -> int:
        return int(self.col_edges.size - 1)

    @property
    def n_fields(self) -> int:
        return self.n_rows * self.n_cols

    def locate(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Field (row, col) of points in continuous coordinates and whether they fall in a whole field."""
        rows = np.asarray(rows, dtype=np.float64)
        cols = np.asarray(cols, dtype=np.float64)
        fr = np.searchsorted(self.row_edges, rows, side="right") - 1
        fc = np.searchsorted(self.col_edges, cols, side="right") - 1
        inside = (fr >= 0) & (fr < self.n_rows) & (fc >= 0) & (fc < self.n_cols)
        return fr, fc, inside

    def crop(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The part of a (M, N) array the fields cover, with the field edges relative to it."""
        re, ce = self.row_edges, self.col_edges
        return a[re[0]:re[-1], ce[0]:ce[-1]], re - re[0], ce - ce[0]

    def touched(self, mask: np.ndarray) -> np.ndarray:
        """Whether each field holds a nonzero pixel of ``mask`` (M, N), shape (n_rows, n_cols)."""
        m = np.asarray(mask) != 0
        re, ce = self.row_edges, self.col_edges
        return np.array([[bool(m[re[i]:re[i + 1], ce[j]:ce[j + 1]].any()) for j in range(self.n_cols)]
                         for i in range(self.n_rows)], dtype=bool).reshape(self.n_rows, self.n_cols)

    def field_areas_px(self) -> np.ndarray:
        """Pixel count of each field, shape (n_rows, n_cols)."""
        return np.outer(np.diff(self.row_edges), np.diff(self.col_edges)).astype(np.float64)


def field_grid(shape: tuple[int, int], *, side_px: float, origin: str = "centre") -> FieldGrid:
    """The whole fields of side ``side_px`` that fit in a scan of ``shape`` (may be zero of them).

    ``origin="centre"``: the grid is centred on the scan (equal unrated margins on opposite sides,
    so a scan rotated by 90 degrees gets the rotated grid); ``"corner"``: it starts at the top-left
    corner (the unrated margin is at the bottom and right).

    >>> g = field_grid((1500, 800), side_px=710.0, origin="corner")
    >>> g.n_rows, g.n_cols, g.row_edges.tolist()
    (2, 1, [0, 710, 1420])
    >>> field_grid((1500, 800), side_px=710.0).row_edges.tolist()
    [40, 750, 1460]
    """
    if origin not in ("centre", "corner"):
        raise RatingError(f"field origin must be 'centre' or 'corner', got {origin!r}")
    if len(tuple(shape)) != 2 or any(int(x) != x or int(x) < 1 for x in shape):
        raise RatingError(f"shape must be two positive integers (rows, cols), got {shape}")
    if not float(side_px) > 0:
        raise RatingError(f"field side must be positive, got {side_px} px")
    h, w = int(shape[0]), int(shape[1])
    nr = int(np.floor(h / side_px + 1e-9))
    nc = int(np.floor(w / side_px + 1e-9))
    return FieldGrid(float(side_px), _edges(h, nr, side_px, origin), _edges(w, nc, side_px, origin))


def _edges(length: int, n: int, side: float, origin: str) -> np.ndarray:
    """Whole-pixel field edges along one axis; centred grids are mirror-symmetric (e_k + e_(n-k) = length)."""
    off = (length - n * side) / 2.0 if origin == "centre" else 0.0
    e = np.clip(np.floor(off + np.arange(n + 1) * side + 0.5).astype(np.int64), 0, length)
    if origin == "centre":
        k = np.arange(n + 1)
        upper = k > n / 2
        e[upper] = length - e[n - k[upper]]
    return e
