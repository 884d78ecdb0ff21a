"""Remove impurities from a scan before grain-boundary segmentation (inpainting).

Pipeline step: raw scan -> impurity mask -> dilated mask -> :func:`inpaint`
-> grain-boundary segmentation -> grain size.  Methods:

- ``none``: the scan is returned unchanged (grains segmented on the raw scan);
- ``telea``, ``ns``: OpenCV fast-marching (Telea 2004) and Navier-Stokes inpainting;
- ``biharmonic``: scikit-image biharmonic inpainting;
- ``generative``: a small gated-convolution network (Keras 3) trained
  self-supervised on impurity-free patches of the MLography scans
  (``python -m experiments.run +exp=train_inpainting``; model card in
  ``inpainting/weights/inpaint_net.json``).

Importing this package does not import Keras/TensorFlow: the network is
loaded on the first ``method="generative"`` call (once per process).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data.errors import QuantmetError

from ._weights import DEFAULT_WEIGHTS, resolve_weights
from .classical import (
    CLASSICAL_METHODS,
    composite,
    dilate_mask,
    hole_tiles,
    inpaint_classical,
    tiled_fill,
)

__all__ = [
    "DEFAULT_WEIGHTS",
    "METHODS",
    "InpaintConfig",
    "InpaintingError",
    "composite",
    "dilate_mask",
    "hole_tiles",
    "inpaint",
    "inpaint_config",
    "resolve_weights",
    "tiled_fill",
]

log = logging.getLogger(__name__)

METHODS = ("none", *CLASSICAL_METHODS, "generative")
_DEFAULT_TILE = {"telea": 1024, "ns": 1024, "biharmonic": 1024, "generative": 512}
_DEFAULT_MARGIN = {"telea": 32, "ns": 32, "biharmonic": 32, "generative": 32}


class InpaintingError(QuantmetError, ValueError):
    """Bad inpainting input: wrong shape or dtype, or a mask that leaves nothing to inpaint from."""


@dataclass(frozen=True)
class InpaintConfig:
    """Options of :func:`inpaint` (the keys of ``conf/inpainting/*.yaml``).

    Attributes
    ----------
    method : {'none', 'telea', 'ns', 'biharmonic', 'generative'}
    dilation_px : int
        The impurity mask is grown by a disc of this radius before inpainting
        (impurity labels are off by 1-2 px and impurities have dark halos).
    radius : float
        Neighbourhood radius of Telea / Navier-Stokes.
    tile_size : int, optional
        Side of the processing tiles; only tiles with hole pixels are touched.
        None = 1024 (classical) or 512 (generative).
    margin : int, optional
        Context pixels around each tile; None = 32.
    max_hole_fraction : float
        A (dilated) mask covering more than this fraction of the image raises
        :class:`InpaintingError` (there is too little scan left to inpaint
        from); 1.0 accepts anything but an all-hole mask.
    weights : str, optional
        ``.keras`` file of the generative network; None = the shipped weights.
    batch_size : int
        Tiles per forward pass of the generative network.
    """

    method: str = "generative"
    dilation_px: int = 0
    radius: float = 3.0
    tile_size: int | None = None
    margin: int | None = None
    max_hole_fraction: float = 0.5
    weights: str | None = None
    batch_size: int = 4

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InpaintingError(
                f"unknown inpainting method {self.method!r}; expected one of {METHODS}"
            )
        if int(self.dilation_px) < 0:
            raise InpaintingError(f"dilation_px must be >= 0, got {self.dilation_px}")
        if not float(self.radius) > 0:
            raise InpaintingError(f"radius must be > 0, got {self.radius}")
        if self.tile_size is not None and int(self.tile_size) < 16:
            raise InpaintingError(f"tile_size must be >= 16, got {self.tile_size}")
        if self.margin is not None and int(self.margin) < 0:
            raise InpaintingError(f"margin must be >= 0, got {self.margin}")
        if not 0.0 < float(self.max_hole_fraction) <= 1.0:
            raise InpaintingError(
                f"max_hole_fraction must be in (0, 1], got {self.max_hole_fraction}"
            )
        if int(self.batch_size) < 1:
            raise InpaintingError(f"batch_size must be >= 1, got {self.batch_size}")


def inpaint_config(options: Mapping[str, Any] | None = None, **overrides: Any) -> InpaintConfig:
    """Build an :class:`InpaintConfig` from a mapping (e.g. the ``inpainting`` config section).

    Unknown keys raise :class:`InpaintingError` naming the known ones.
    """
    values = {**dict(options or {}), **overrides}
    names = {f.name for f in dataclasses.fields(InpaintConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise InpaintingError(f"unknown inpainting option(s) {unknown}; known: {sorted(names)}")
    return InpaintConfig(**values)


def _validate(pixels: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(pixels)
    msk = np.asarray(mask)
    if img.ndim != 2:
        raise InpaintingError(f"pixels must be a 2-D gray image (M, N), got shape {img.shape}")
    if img.dtype.kind not in "uif":
        raise InpaintingError(f"pixels must have an integer or float dtype, got {img.dtype}")
    if msk.ndim != 2:
        raise InpaintingError(f"mask must be 2-D (M, N), got shape {msk.shape}")
    if msk.shape != img.shape:
        raise InpaintingError(f"mask shape {msk.shape} differs from image shape {img.shape}")
    if msk.dtype.kind not in "buif":
        raise InpaintingError(f"mask must be bool or numeric (nonzero = hole), got {msk.dtype}")
    return img, msk != 0


def inpaint(
    pixels: np.ndarray,
    mask: np.ndarray,
    *,
    method: str = "generative",
    dilation_px: int = 0,
    radius: float = 3.0,
    tile_size: int | None = None,
    margin: int | None = None,
    max_hole_fraction: float = 0.5,
    weights: str | None = None,
    batch_size: int = 4,
) -> np.ndarray:
    """Fill the masked pixels of a gray scan from their surroundings.

    Parameters
    ----------
    pixels : array_like, shape (M, N)
        Gray image of any integer or float dtype.  Float images may hold NaN
        inside the hole; outside it every value must be finite.
    mask : array_like, shape (M, N)
        Nonzero / True = pixel to replace (e.g. the impurity mask).
    method : {'generative', 'telea', 'ns', 'biharmonic', 'none'}
        See the package docstring.  ``'none'`` returns a copy of ``pixels``.
    dilation_px : int
        Grow the mask by a disc of this radius first.
    radius, tile_size, margin, max_hole_fraction, weights, batch_size
        See :class:`InpaintConfig`.

    Returns
    -------
    ndarray, shape (M, N)
        Same dtype as ``pixels``; equal to ``pixels`` outside the (dilated) mask.

    Raises
    ------
    InpaintingError
        Non-2-D input, mask and image of different shapes, non-finite values
        outside the hole, a (dilated) mask covering the whole image or more
        than ``max_hole_fraction`` of it, or an invalid option.

    Notes
    -----
    An empty mask returns a copy of the input at once (no dilation, no model).

    Examples
    --------
    >>> img = np.full((64, 64), 100, np.uint8); img[30:34, 30:34] = 0
    >>> out = inpaint(img, img == 0, method="telea")
    >>> abs(int(out[31, 31]) - 100) <= 3, out.dtype.name
    (True, 'uint8')
    """
    cfg = InpaintConfig(
        method=method,
        dilation_px=dilation_px,
        radius=radius,
        tile_size=tile_size,
        margin=margin,
        max_hole_fraction=max_hole_fraction,
        weights=weights,
        batch_size=batch_size,
    )
    img, hole = _validate(pixels, mask)
    if cfg.method == "none" or not hole.any():
        return img.copy()
    hole = dilate_mask(hole, int(cfg.dilation_px))
    n_hole = int(np.count_nonzero(hole))
    frac = n_hole / hole.size
    if n_hole == hole.size:
        raise InpaintingError(
            "the (dilated) mask covers the whole image: there is nothing to inpaint from"
        )
    if frac > cfg.max_hole_fraction:
        raise InpaintingError(
            f"the (dilated) mask covers {frac:.1%} of the image, more than max_hole_fraction="
            f"{cfg.max_hole_fraction}; lower dilation_px, check the mask polarity, or pass "
            "max_hole_fraction=1.0 to inpaint anyway"
        )
    if img.dtype.kind == "f" and not np.isfinite(img[~hole]).all():
        raise InpaintingError("pixels hold NaN or infinite values outside the mask")
    tile = int(cfg.tile_size or _DEFAULT_TILE[cfg.method])
    pad = int(_DEFAULT_MARGIN[cfg.method] if cfg.margin is None else cfg.margin)
    log.debug("inpainting %d px (%.2f%%) with %s", n_hole, 100 * frac, cfg.method)
    if cfg.method == "generative":
        from .generative import inpaint_generative

        return inpaint_generative(
            img,
            hole,
            weights=cfg.weights,
            tile_size=tile,
            margin=pad,
            batch_size=int(cfg.batch_size),
        )
    work = img
    if img.dtype.kind == "f" and not np.isfinite(img).all():
        work = np.where(hole, 0, img).astype(img.dtype)
    return inpaint_classical(
        work, hole, method=cfg.method, radius=float(cfg.radius), tile_size=tile, margin=pad
    )
