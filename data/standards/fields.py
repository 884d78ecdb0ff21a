"""The grid of square rating fields over a scan (only whole fields; a partial field at the border is not used)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import RatingError

__all__ = ["FieldGrid", "field_grid"]


@dataclass(frozen=True)
class FieldGrid:
    """Square fields of ``side_px`` pixels from the scan's top-left corner.

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

    def field_areas_px(self) -> np.ndarray:
        """Pixel count of each field, shape (n_rows, n_cols)."""
        return np.outer(np.diff(self.row_edges), np.diff(self.col_edges)).astype(np.float64)


def field_grid(shape: tuple[int, int], *, side_px: float) -> FieldGrid:
    """The whole fields of side ``side_px`` that fit in a scan of ``shape`` (may be zero of them).

    >>> g = field_grid((1500, 800), side_px=710.0)
    >>> g.n_rows, g.n_cols, g.row_edges.tolist()
    (2, 1, [0, 710, 1420])
    """
    if len(tuple(shape)) != 2 or any(int(x) != x or int(x) < 1 for x in shape):
        raise RatingError(f"shape must be two positive integers (rows, cols), got {shape}")
    if not float(side_px) > 0:
        raise RatingError(f"field side must be positive, got {side_px} px")
    h, w = int(shape[0]), int(shape[1])
    nr = int(np.floor(h / side_px + 1e-9))
    nc = int(np.floor(w / side_px + 1e-9))
    re = np.minimum(np.round(np.arange(nr + 1) * side_px).astype(np.int64), h)
    ce = np.minimum(np.round(np.arange(nc + 1) * side_px).astype(np.int64), w)
    return FieldGrid(float(side_px), re, ce)
