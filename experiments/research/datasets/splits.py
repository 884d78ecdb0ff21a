"""The fixed split by scan of the MLography development data (no imports: configs use it)."""

from __future__ import annotations

__all__ = ["VAL_SCANS"]

#: Validation scans of every shipped model: never trained or tuned on. Never 10 or 11 (the
#: bundled samples, used for training).  Scans 15, 22 and 27 have grain labels.
VAL_SCANS: tuple[str, ...] = ("15", "22", "27", "34", "39")
