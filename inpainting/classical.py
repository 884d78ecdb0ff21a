"""Classical inpainting (OpenCV Telea / Navier-Stokes, scikit-image biharmonic), dilation, tiling.

All functions work on 2-D gray arrays of any real dtype and never touch
pixels outside the hole: the filled values are composited into a copy of the
input.  Huge scans are processed tile by tile: the image is cut into a grid
of ``tile_size`` x ``tile_size`` cores and only the cores that contain hole
pixels are filled, each from a window extended by ``margin`` pixels of
context on every side (clipped at the image border).  Only the core's hole
pixels are written back, so every hole pixel is filled exactly once.

No Keras here; :mod:`inpainting.generative` reuses :func:`hole_tiles` and
:func:`composite`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import cv2
import numpy as np

__all__ = [
    "CLASSICAL_METHODS",
    "composite",
    "dilate_mask",
    "disc",
    "fill_biharmonic",
    "fill_opencv",
    "hole_tiles",
    "inpaint_classical",
    "tiled_fill",
]

log = logging.getLogger(__name__)

CLASSICAL_METHODS = ("telea", "ns", "biharmonic")
_CV_FLAGS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}
_CV_DTYPES = (np.uint8, np.uint16, np.float32)


def disc(radius_px: int) -> np.ndarray:
    """Structuring element: pixels within Euclidean distance ``radius_px`` of the centre (uint8)."""
    r = np.arange(-radius_px, radius_px + 1)
    return ((r[:, None] ** 2 + r[None, :] ** 2) <= radius_px**2).astype(np.uint8)


def dilate_mask(mask: np.ndarray, radius_px: int) -> np.ndarray:
    """Grow a binary mask by a Euclidean disc of ``radius_px`` pixels (see :func:`disc`).

    Parameters
    ----------
    mask : ndarray, shape (M, N)
        Nonzero = hole.
    radius_px : int
        Dilation radius (>= 0); 0 returns the mask as bool.

    Returns
    -------
    ndarray of bool, shape (M, N)

    Examples
    --------
    >>> m = np.zeros((5, 5), bool); m[2, 2] = True
    >>> int(dilate_mask(m, 1).sum())
    5
    """
    radius_px = int(radius_px)
    if radius_px < 0:
        raise ValueError(f"dilation radius must be >= 0, got {radius_px}")
    hole = np.asarray(mask) != 0
    if radius_px == 0 or not hole.any():
        return hole
    return cv2.dilate(hole.view(np.uint8), disc(radius_px)).view(bool)


def composite(pixels: np.ndarray, hole: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """A copy of ``pixels`` with the hole pixels taken from ``filled``, cast to the input dtype.

    Integer dtypes are rounded and clipped to their range.

    Parameters
    ----------
    pixels : ndarray, shape (M, N)
    hole : ndarray of bool, shape (M, N)
    filled : ndarray, shape (M, N), any real dtype

    Returns
    -------
    ndarray, shape (M, N), dtype of ``pixels``
    """
    out = pixels.copy()
    vals = np.asarray(filled)[hole]
    if pixels.dtype.kind in "ui":
        info = np.iinfo(pixels.dtype)
        vals = np.clip(np.rint(vals), info.min, info.max)
    out[hole] = vals.astype(pixels.dtype, copy=False)
    return out


def hole_tiles(hole: np.ndarray, tile_size: int) -> np.ndarray:
    """Top-left corners of the ``tile_size`` grid cells that contain at least one hole pixel.

    Parameters
    ----------
    hole : ndarray of bool, shape (M, N)
    tile_size : int

    Returns
    -------
    ndarray of int, shape (K, 2)
        ``(row, col)`` of each touched tile, row-major order.
    """
    if tile_size < 1:
        raise ValueError(f"tile_size must be >= 1, got {tile_size}")
    m, n = hole.shape
    rows = np.arange(0, m, tile_size)
    cols = np.arange(0, n, tile_size)
    per_row = np.add.reduceat(hole.view(np.uint8), rows, axis=0, dtype=np.int64)
    counts = np.add.reduceat(per_row, cols, axis=1)
    ti, tj = np.nonzero(counts)
    return np.stack([rows[ti], cols[tj]], axis=1) if ti.size else np.empty((0, 2), np.int64)


def tiled_fill(
    pixels: np.ndarray,
    hole: np.ndarray,
    fill: Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    tile_size: int = 1024,
    margin: int = 32,
) -> np.ndarray:
    """Apply a window filler to the tiles that contain holes; return the filled image.

    Parameters
    ----------
    pixels : ndarray, shape (M, N)
    hole : ndarray of bool, shape (M, N)
    fill : callable
        ``fill(window_pixels, window_hole) -> window`` of the window's shape
        (any real dtype); only its hole pixels are used.
    tile_size : int
        Side of the grid cells (cores).
    margin : int
        Context pixels added around each core (clipped at the border).

    Returns
    -------
    ndarray, shape (M, N), dtype of ``pixels``
        Equal to ``pixels`` outside ``hole``.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    m, n = pixels.shape
    out = pixels.copy()
    tiles = hole_tiles(hole, tile_size)
    log.debug("filling %d of %d tiles", len(tiles), -(-m // tile_size) * -(-n // tile_size))
    for r0, c0 in tiles:  # a loop over tiles (few), never over pixels
        r1, c1 = min(r0 + tile_size, m), min(c0 + tile_size, n)
        wr0, wc0 = max(r0 - margin, 0), max(c0 - margin, 0)
        wr1, wc1 = min(r1 + margin, m), min(c1 + margin, n)
        win_hole = hole[wr0:wr1, wc0:wc1]
        filled = fill(pixels[wr0:wr1, wc0:wc1], win_hole)
        core = (slice(r0 - wr0, r1 - wr0), slice(c0 - wc0, c1 - wc0))
        core_hole = win_hole[core]
        out[r0:r1, c0:c1] = composite(pixels[r0:r1, c0:c1], core_hole, filled[core])
    return out


def fill_opencv(
    pixels: np.ndarray, hole: np.ndarray, *, method: str = "telea", radius: float = 3.0
) -> np.ndarray:
    """Fill holes with OpenCV's Telea (fast marching) or Navier-Stokes inpainting.

    Parameters
    ----------
    pixels : ndarray, shape (M, N)
        uint8, uint16 and float32 are passed to OpenCV as they are; other
        dtypes are filled in float32.
    hole : ndarray of bool, shape (M, N)
    method : {'telea', 'ns'}
    radius : float
        Neighbourhood radius of the inpainting (pixels).

    Returns
    -------
    ndarray, shape (M, N)
        Filled window (hole pixels meaningful; dtype uint8/uint16/float32).
    """
    if method not in _CV_FLAGS:
        raise ValueError(f"OpenCV inpainting method must be 'telea' or 'ns', got {method!r}")
    if radius <= 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    src = pixels if pixels.dtype in _CV_DTYPES else pixels.astype(np.float32)
    src = np.ascontiguousarray(src)
    mask = np.ascontiguousarray(hole, dtype=np.uint8)
    return cv2.inpaint(src, mask, float(radius), _CV_FLAGS[method])


def fill_biharmonic(pixels: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Fill holes by solving the biharmonic equation (scikit-image), per connected hole.

    Returns
    -------
    ndarray of float64, shape (M, N)
        In the units of ``pixels`` (no rescaling).
    """
    from skimage.restoration import inpaint_biharmonic

    return inpaint_biharmonic(pixels.astype(np.float64), hole, split_into_regions=True)


def inpaint_classical(
    pixels: np.ndarray,
    hole: np.ndarray,
    *,
    method: str = "telea",
    radius: float = 3.0,
    tile_size: int = 1024,
    margin: int = 32,
) -> np.ndarray:
    """Tile-wise classical inpainting of validated inputs.

    Parameters
    ----------
    pixels : ndarray, shape (M, N), real dtype
    hole : ndarray of bool, shape (M, N)
        Already dilated.
    method : {'telea', 'ns', 'biharmonic'}
    radius : float
        Telea / Navier-Stokes neighbourhood radius; ignored by biharmonic.
    tile_size, margin : int
        See :func:`tiled_fill`.

    Returns
    -------
    ndarray, shape (M, N), dtype of ``pixels``
        Equal to ``pixels`` outside ``hole``.
    """
    if method in _CV_FLAGS:

        def fill(p, h):
            return fill_opencv(p, h, method=method, radius=radius)

    elif method == "biharmonic":
        fill = fill_biharmonic
    else:
        raise ValueError(
            f"unknown classical method {method!r}; expected one of {CLASSICAL_METHODS}"
        )
    return tiled_fill(pixels, hole, fill, tile_size=tile_size, margin=margin)
