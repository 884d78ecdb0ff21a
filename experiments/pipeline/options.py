"""Per-scan settings in physical units: ``*_um`` / ``*_um2`` options win over their ``*_px`` twins
when a scan is calibrated (pure functions, no I/O).

A length setting ``max_gap_px`` may be given as ``max_gap_um`` and an area setting ``min_area_px``
as ``min_area_um2``.  For a calibrated scan (pixel size ``s`` µm) a non-null physical value is
converted (``max_gap_px = max_gap_um / s``, ``min_area_px = ceil(min_area_um2 / s**2)``); for an
uncalibrated scan, or when the physical value is null, the pixel value applies.  The physical
keys are removed from the returned options, so the library configs only ever see pixels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["PHYSICAL_SUFFIXES", "physical_twins", "resolve_physical", "resolved_settings_note"]

#: suffix of the physical key -> (suffix of its pixel twin, power of the pixel size)
PHYSICAL_SUFFIXES: dict[str, tuple[str, int]] = {"_um2": ("_px", 2), "_um": ("_px", 1)}

# Pixel settings that are counts of pixels (rounded up), the others stay floats.
_INTEGER_PX = ("min_area_px",)


def physical_twins(options: Mapping[str, Any]) -> dict[str, str]:
    """``{physical key: pixel key}`` for the physical settings present in ``options``."""
    out = {}
    for key in options:
        for suffix, (px_suffix, _) in PHYSICAL_SUFFIXES.items():
            if key.endswith(suffix):
                out[key] = key[: -len(suffix)] + px_suffix
                break
    return out


def resolve_physical(options: Mapping[str, Any] | None, pixel_size_um: float | None) -> dict[str, Any]:
    """Options with physical settings converted to pixels for this scan (see module docstring).

    >>> resolve_physical({"max_gap_px": 100, "max_gap_um": 50.0}, 0.5)
    {'max_gap_px': 100.0}
    >>> resolve_physical({"max_gap_px": 100, "max_gap_um": 50.0}, None)
    {'max_gap_px': 100}
    >>> resolve_physical({"min_area_px": 4, "min_area_um2": 1.0}, 0.4)
    {'min_area_px': 7}
    """
    out = dict(options or {})
    for phys, px in physical_twins(out).items():
        value = out.pop(phys)
        if value is None or pixel_size_um is None:
            continue
        power = PHYSICAL_SUFFIXES["_um2" if phys.endswith("_um2") else "_um"][1]
        converted = float(value) / float(pixel_size_um) ** power
        if px in _INTEGER_PX:
            converted = max(1, math.ceil(converted - 1e-9))
        out[px] = converted
    return out


def _plain(value: Any) -> str:
    """A setting as the user wrote it: a whole float (2.0 from a typed section) as 2."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def resolved_settings_note(options: Mapping[str, Any] | None, pixel_size_um: float | None, *, where: str) -> str:
    """One phrase naming the physical settings that applied to a scan (empty when none did)."""
    if pixel_size_um is None:
        return ""
    parts = []
    res = resolve_physical(options, pixel_size_um)
    for phys, px in physical_twins(dict(options or {})).items():
        if (options or {}).get(phys) is not None:
            parts.append(f"{where}.{phys}={_plain(options[phys])} -> {px}={res[px]:.4g}")
    return "; ".join(parts)
