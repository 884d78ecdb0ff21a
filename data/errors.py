"""Exception types for user errors (bad files, bad arrays, bad configuration)."""

from __future__ import annotations

__all__ = ["QuantmetError", "ScanReadError", "InputNotFoundError"]


class QuantmetError(Exception):
    """Base class for errors caused by user input rather than by a bug."""


class ScanReadError(QuantmetError, ValueError):
    """A scan file exists but cannot be decoded as an image."""


class InputNotFoundError(QuantmetError, FileNotFoundError):
    """A file, folder or glob given as input matches nothing."""
