"""The :class:`Scan` data contract: one 2-D gray micrograph (or mask) with its identity."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Scan"]


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
    """

    pixels: np.ndarray = field(repr=False)
    scan_id: str
    pixel_size_um: float | None = None
    source: Path | None = None

    def __post_init__(self) -> None:
        px = self.pixels
        if not isinstance(px, np.ndarray) or px.ndim != 2:
            raise ValueError(
                f"Scan.pixels must be a 2-D array (row, col), got shape {getattr(px, 'shape', None)}"
            )
        if px.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"Scan.pixels must be uint8 or uint16, got {px.dtype}")
        if self.pixel_size_um is not None and not (float(self.pixel_size_um) > 0):
            raise ValueError(f"pixel_size_um must be positive, got {self.pixel_size_um}")

    @property
    def shape(self) -> tuple[int, int]:
        return self.pixels.shape  # type: ignore[return-value]
