"""The :class:`Scan` data contract: one 2-D gray micrograph (or mask) with its identity."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Scan", "PIXEL_SIZE_SOURCES"]

#: Where a pixel size came from, in order of precedence (see :func:`data.calibration.resolve_pixel_size`).
PIXEL_SIZE_SOURCES = ("config", "csv", "metadata", "scale_bar", "none")


@dataclass(frozen=True)
class Scan:
    """One gray scan.

    Parameters
    ----------
    pixels : ndarray, shape (M, N)
        uint8 or uint16 gray values, axes (row, col).
    scan_id : str
        Stable identifier, the path relative to the input root without extension.
    pixel_size_um : float or None
        Edge length of one pixel in micrometres, ``None`` when unknown.
    source : Path or None
        File the scan was read from.
    pixel_size_source : {'config', 'csv', 'metadata', 'scale_bar', 'none'}
        Where ``pixel_size_um`` came from.  ``'none'`` together with a pixel size
        (``Scan(px, "a", pixel_size_um=0.5)``, the pre-calibration call) is taken as
        ``'config'``: a size handed in directly is configuration.
    metadata : dict
        Small, JSON-able facts seen in the file: ``format``, ``vendor``, the raw
        calibration fields, ``magnification`` where the file has one, ``notes``.
    """

    pixels: np.ndarray = field(repr=False)
    scan_id: str
    pixel_size_um: float | None = None
    source: Path | None = None
    pixel_size_source: str = "none"
    metadata: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        px = self.pixels
        if not isinstance(px, np.ndarray) or px.ndim != 2:
            raise ValueError(
                f"Scan.pixels must be a 2-D array (row, col), got shape {getattr(px, 'shape', None)}"
            )
        if px.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"Scan.pixels must be uint8 or uint16, got {px.dtype}")
        if self.pixel_size_source not in PIXEL_SIZE_SOURCES:
            raise ValueError(
                f"pixel_size_source must be one of {PIXEL_SIZE_SOURCES}, got {self.pixel_size_source!r}"
            )
        if self.pixel_size_um is not None:
            v = float(self.pixel_size_um)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"pixel_size_um must be a positive finite number, got {self.pixel_size_um}")
            object.__setattr__(self, "pixel_size_um", v)
            if self.pixel_size_source == "none":
                object.__setattr__(self, "pixel_size_source", "config")
        elif self.pixel_size_source != "none":
            raise ValueError(f"pixel_size_source {self.pixel_size_source!r} given without a pixel size")
        if not isinstance(self.metadata, dict):
            raise ValueError(f"Scan.metadata must be a dict, got {type(self.metadata).__name__}")

    @property
    def shape(self) -> tuple[int, int]:
        return self.pixels.shape  # type: ignore[return-value]
