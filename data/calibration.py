"""Pixel size: validation, the per-file table (``data.calibration_csv``) and the precedence rule.

Precedence (issue #14): configuration (``data.pixel_size_um``) > per-file CSV table >
file metadata > scale bar read from the image > none.  Every source that is present
but invalid is dropped with a note; two valid sources that differ by more than 1 %
give a note naming both values (the higher-precedence one wins).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from .errors import CalibrationError

__all__ = [
    "Calibration",
    "MAX_PIXEL_SIZE_UM",
    "CONFLICT_TOLERANCE",
    "calibration_key",
    "check_pixel_size",
    "load_calibration_csv",
    "resolve_pixel_size",
    "validate_pixel_size",
]

#: Pixel sizes above this (1 mm per pixel) are not a microscope calibration.
MAX_PIXEL_SIZE_UM = 1000.0
#: Two sources disagree when they differ by more than this relative amount.
CONFLICT_TOLERANCE = 0.01

_ORDER = ("config", "csv", "metadata", "scale_bar")


def check_pixel_size(value) -> str | None:
    """Why ``value`` is not a usable pixel size in µm (``None`` when it is)."""
    if isinstance(value, bool):
        return f"{value!r} is not a number"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return f"{value!r} is not a number"
    if not math.isfinite(v):
        return f"{value!r} is not finite"
    if v <= 0:
        return f"{v:g} is not positive"
    if v > MAX_PIXEL_SIZE_UM:
        return f"{v:g} µm/px is absurd (> {MAX_PIXEL_SIZE_UM:g} µm/px = 1 mm per pixel)"
    return None


def validate_pixel_size(value, *, what: str = "data.pixel_size_um") -> float | None:
    """``value`` as a float pixel size in µm, ``None`` for ``None``.

    Raises
    ------
    ValueError
        With ``what`` and the reason (not a number, NaN/inf, <= 0, > 1000 µm/px).

    Examples
    --------
    >>> validate_pixel_size(0.5)
    0.5
    >>> validate_pixel_size(0)
    Traceback (most recent call last):
    ...
    ValueError: data.pixel_size_um = 0 is invalid: 0 is not positive (a pixel size in µm per pixel, 0 < size <= 1000)
    """
    if value is None:
        return None
    why = check_pixel_size(value)
    if why is not None:
        raise ValueError(
            f"{what} = {value!r} is invalid: {why} (a pixel size in µm per pixel, 0 < size <= {MAX_PIXEL_SIZE_UM:g})"
        )
    return float(value)


def calibration_key(path: str | Path) -> str:
    """The key of a file in :func:`load_calibration_csv`'s table: its resolved absolute path."""
    return str(Path(path).expanduser().resolve())


def load_calibration_csv(path: str | Path) -> dict[str, float]:
    """Read a per-file pixel-size table with columns ``path,pixel_size_um``.

    Parameters
    ----------
    path : str or Path
        CSV file (UTF-8, optional BOM, comma separated, header row required; extra
        columns are ignored; blank lines and lines starting with ``#`` are skipped).
        Relative paths in it are relative to the CSV's own folder.

    Returns
    -------
    dict
        :func:`calibration_key` (resolved absolute path) -> pixel size in µm.
        Look a scan up with ``table.get(calibration_key(item.path))``.

    Raises
    ------
    CalibrationError
        If the file is missing, has no ``path``/``pixel_size_um`` columns, or a row
        is bad (empty path, invalid size, one file listed twice with different
        sizes); the message names the line.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise CalibrationError(f"calibration table not found: {p}")
    base = p.resolve().parent
    out: dict[str, float] = {}
    first_line: dict[str, int] = {}
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"cannot read calibration table {p}: {exc}") from exc
    lines = [(i, ln) for i, ln in enumerate(text.splitlines(), start=1) if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise CalibrationError(f"calibration table {p} is empty (expected a header 'path,pixel_size_um')")
    rows = list(csv.reader([ln for _, ln in lines]))
    header = [h.strip().lower() for h in rows[0]]
    if "path" not in header or "pixel_size_um" not in header:
        raise CalibrationError(
            f"{p} line {lines[0][0]}: header must name the columns 'path' and 'pixel_size_um', got {rows[0]}"
        )
    ip, iv = header.index("path"), header.index("pixel_size_um")
    for (lineno, _), row in zip(lines[1:], rows[1:]):
        where = f"{p} line {lineno}"
        if len(row) <= max(ip, iv):
            raise CalibrationError(f"{where}: expected {len(header)} columns, got {len(row)}: {row}")
        name, raw = row[ip].strip(), row[iv].strip()
        if not name:
            raise CalibrationError(f"{where}: empty path")
        why = check_pixel_size(raw)
        if why is not None:
            raise CalibrationError(f"{where}: pixel_size_um {raw!r} is invalid: {why}")
        fp = Path(name).expanduser()
        key = calibration_key(fp if fp.is_absolute() else base / fp)
        value = float(raw)
        if key in out and abs(out[key] - value) > 1e-12 * max(out[key], value):
            raise CalibrationError(
                f"{where}: {name} is listed twice with different sizes ({out[key]:g} on line "
                f"{first_line[key]}, {value:g} here)"
            )
        out[key] = value
        first_line.setdefault(key, lineno)
    return out


@dataclass(frozen=True)
class Calibration:
    """The pixel size chosen for one scan.

    Attributes
    ----------
    pixel_size_um : float or None
        ``None`` when no valid source was given.
    source : {'config', 'csv', 'metadata', 'scale_bar', 'none'}
    notes : tuple of str
        Rejected values and conflicts, one sentence each.
    """

    pixel_size_um: float | None
    source: str
    notes: tuple[str, ...] = ()


def _label(source: str) -> str:
    return {"scale_bar": "scale bar", "csv": "calibration table"}.get(source, source)


def resolve_pixel_size(
    *,
    config_um: float | None = None,
    csv_um: float | None = None,
    metadata_um: float | None = None,
    scale_bar_um: float | None = None,
) -> Calibration:
    """Choose a scan's pixel size: config > csv > metadata > scale bar > none.

    Parameters
    ----------
    config_um, csv_um, metadata_um, scale_bar_um : float or None
        The candidates in µm per pixel (``None`` = not available).

    Returns
    -------
    Calibration

    Examples
    --------
    >>> c = resolve_pixel_size(config_um=0.5, metadata_um=0.25)
    >>> c.pixel_size_um, c.source, c.notes
    (0.5, 'config', ('config 0.5 µm/px wins over metadata 0.25 µm/px',))
    >>> resolve_pixel_size(metadata_um=0.0).notes
    ('metadata pixel size rejected: 0 is not positive',)
    """
    given = dict(zip(_ORDER, (config_um, csv_um, metadata_um, scale_bar_um)))
    notes: list[str] = []
    valid: dict[str, float] = {}
    for name in _ORDER:
        v = given[name]
        if v is None:
            continue
        why = check_pixel_size(v)
        if why is not None:
            notes.append(f"{_label(name)} pixel size rejected: {why}")
        else:
            valid[name] = float(v)
    if not valid:
        return Calibration(None, "none", tuple(notes))
    winner = next(n for n in _ORDER if n in valid)
    w = valid[winner]
    for name, v in valid.items():
        if name != winner and abs(v - w) > CONFLICT_TOLERANCE * w:
            notes.append(f"{_label(winner)} {w:.6g} µm/px wins over {_label(name)} {v:.6g} µm/px")
    return Calibration(w, winner, tuple(notes))
