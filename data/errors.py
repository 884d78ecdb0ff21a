"""Exception types for user errors (bad files, bad arrays, bad configuration)."""

from __future__ import annotations

__all__ = [
    "QuantmetError",
    "ScanReadError",
    "InputNotFoundError",
    "MaskError",
    "MissingReaderError",
    "CalibrationError",
]


class QuantmetError(Exception):
    """Base class for errors caused by user input rather than by a bug."""


class ScanReadError(QuantmetError, ValueError):
    """A scan file exists but cannot be decoded as an image (or is over a size limit)."""


class MissingReaderError(ScanReadError):
    """A vendor file (.czi, .nd2, ...) whose reader is an optional extra that is not installed."""


class InputNotFoundError(QuantmetError, FileNotFoundError):
    """A file, folder or glob given as input matches nothing."""


class MaskError(QuantmetError, ValueError):
    """An image given as a binary mask is plainly not one (too many distinct levels)."""


class CalibrationError(QuantmetError, ValueError):
    """A per-file calibration table (``data.calibration_csv``) cannot be used."""
