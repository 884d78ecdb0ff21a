"""CSV and Excel exports of a run's tables, with units in the column names.

``export_tables(run_dir)`` writes ``exports/scans.csv``, ``exports/clusters.csv``,
``exports/ratings.csv`` (one per table the run dir has) and one workbook ``exports/quantmet.xlsx``
with a sheet per table.  A table the run dir lacks (or cannot read) is skipped with a note, logged
and written to ``exports/notes.txt``.

Column names (rule): a known unit suffix is cut from the name and written after it in brackets;
the rest of the name is kept as is, so a name maps back to its Parquet column unambiguously:

============================  ===========================
suffix                        unit
============================  ===========================
``_um2``                      ``[µm²]``
``_per_mm2``                  ``[1/mm²]``
``_mm2``                      ``[mm²]``
``_per_mpx``                  ``[1/Mpx]``
``_per_mm``                   ``[1/mm]``
``_um``                       ``[µm]``
``_px``                       ``[px]`` (areas in ``_px`` are pixel counts)
``_pct``                      ``[%]``
``_deg``                      ``[°]``
``_s``                        ``[s]``
``_mb``                       ``[MB]``
============================  ===========================

e.g. ``area_um2`` -> ``area [µm²]``, ``t_total_s`` -> ``t_total [s]``; ``area_fraction`` (a
fraction 0..1) keeps its name.  CSV files are UTF-8 with a byte-order mark (so spreadsheet programs
read ``µ`` right) and ``.`` as decimal separator.  Excel needs :mod:`openpyxl`:
``pip install 'quantmet[excel]'``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from data.errors import QuantmetError

__all__ = ["EXPORT_FORMATS", "EXPORT_TABLES", "ExportError", "MissingExtraError", "export_tables", "unit_label"]

log = logging.getLogger(__name__)

EXPORT_FORMATS: tuple[str, ...] = ("csv", "xlsx")
#: Tables exported, in sheet order: name -> Parquet file in the run dir.
EXPORT_TABLES: dict[str, str] = {
    "scans": "scans.parquet",
    "clusters": "clusters.parquet",
    "ratings": "ratings.parquet",
    "phases": "phases.parquet",
    "coating": "coating.parquet",
}
_UNITS: tuple[tuple[str, str], ...] = (
    ("_um2", "µm²"),
    ("_per_mm2", "1/mm²"),
    ("_mm2", "mm²"),
    ("_per_mpx", "1/Mpx"),
    ("_per_mm", "1/mm"),
    ("_um", "µm"),
    ("_px", "px"),
    ("_pct", "%"),
    ("_deg", "°"),
    ("_s", "s"),
    ("_mb", "MB"),
)
_EXCEL_MAX_ROWS = 1_048_576
_ILLEGAL_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


class ExportError(QuantmetError, ValueError):
    """Bad export request (unknown format, not a run dir)."""


class MissingExtraError(QuantmetError, ImportError):
    """An optional dependency (a ``quantmet[...]`` extra) is not installed."""


def unit_label(column: str) -> str:
    """Display name of a column with its unit (module docstring).

    >>> [unit_label(c) for c in ("area_um2", "number_density_per_mm2", "t_total_s", "n_regions", "e45_B_thin_worst")]
    ['area [µm²]', 'number_density [1/mm²]', 't_total [s]', 'n_regions', 'e45_B_thin_worst']
    """
    for suffix, unit in _UNITS:
        if column.endswith(suffix) and len(column) > len(suffix):
            return f"{column[: -len(suffix)]} [{unit}]"
    return column


def _labelled(df: pd.DataFrame) -> pd.DataFrame:
    names = [unit_label(str(c)) for c in df.columns]
    seen: dict[str, int] = {}
    out = []
    for n in names:  # two columns mapping to one label stay distinct
        k = seen.get(n, 0)
        out.append(n if k == 0 else f"{n} ({k + 1})")
        seen[n] = k + 1
    res = df.copy()
    res.columns = out
    return res


def _excel_safe(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for c in out.columns:
        s = out[c]
        if s.dtype == object or pd.api.types.is_string_dtype(s):
            out[c] = s.map(lambda v: _ILLEGAL_XML.sub("", v) if isinstance(v, str) else v)
        elif isinstance(s.dtype, pd.DatetimeTZDtype):
            out[c] = s.dt.tz_localize(None)
    return out


def _formats(formats: str | Iterable[str]) -> tuple[str, ...]:
    fmts = (formats,) if isinstance(formats, str) else tuple(formats)
    fmts = tuple(str(f).strip().lower().lstrip(".") for f in fmts)
    bad = sorted(set(fmts) - set(EXPORT_FORMATS))
    if bad:
        raise ExportError(f"unknown export format(s) {bad}; known: {list(EXPORT_FORMATS)}")
    return tuple(dict.fromkeys(fmts))


def _require_openpyxl() -> None:
    try:
        import openpyxl  # noqa: F401
    except ImportError:
        raise MissingExtraError(
            "Excel export needs openpyxl, which is not installed: pip install 'quantmet[excel]' "
            "(or use formats=('csv',))"
        ) from None


def export_tables(
    run_dir: str | Path,
    formats: str | Sequence[str] = ("csv", "xlsx"),
    *,
    out_dir: str | Path | None = None,
    tables: Sequence[str] | None = None,
) -> list[Path]:
    """Write the run's scan, cluster and rating tables as CSV files and/or one Excel workbook.

    Parameters
    ----------
    run_dir : path
        A finished run dir (``scans.parquet`` ...).
    formats : "csv", "xlsx" or a sequence of them
    out_dir : path, optional
        Where to write (default ``run_dir/exports``).
    tables : sequence of str, optional
        Subset of :data:`EXPORT_TABLES` (default: all).

    Returns
    -------
    list of Path
        The files written (``notes.txt`` included when a table was skipped).

    Raises
    ------
    ExportError
        Unknown format or table, or ``run_dir`` is not a folder.
    MissingExtraError
        ``xlsx`` requested without openpyxl installed (``pip install 'quantmet[excel]'``).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ExportError(f"run dir not found: {run_dir}")
    fmts = _formats(formats)
    names = list(EXPORT_TABLES) if tables is None else [str(t) for t in tables]
    unknown = sorted(set(names) - set(EXPORT_TABLES))
    if unknown:
        raise ExportError(f"unknown table(s) {unknown}; known: {list(EXPORT_TABLES)}")
    if "xlsx" in fmts:
        _require_openpyxl()
    out = Path(out_dir) if out_dir is not None else run_dir / "exports"
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    frames: dict[str, pd.DataFrame] = {}
    for name in names:
        src = run_dir / EXPORT_TABLES[name]
        if not src.exists():
            notes.append(f"{name}: skipped, {src.name} not in the run dir")
            continue
        try:
            frames[name] = _labelled(pd.read_parquet(src))
        except Exception as exc:  # pyarrow raises several types for broken files
            notes.append(f"{name}: skipped, {src.name} could not be read ({exc})")
    written: list[Path] = []
    if "csv" in fmts:
        for name, df in frames.items():
            path = out / f"{name}.csv"
            df.to_csv(path, index=False, encoding="utf-8-sig")
            written.append(path)
    if "xlsx" in fmts and frames:
        path = out / "quantmet.xlsx"
        with pd.ExcelWriter(path, engine="openpyxl") as xw:
            for name, df in frames.items():
                if len(df) >= _EXCEL_MAX_ROWS:
                    notes.append(f"{name}: {len(df)} rows exceed an Excel sheet; the sheet keeps the first "
                                 f"{_EXCEL_MAX_ROWS - 1} (the CSV has all)")
                    df = df.iloc[: _EXCEL_MAX_ROWS - 1]
                _excel_safe(df).to_excel(xw, sheet_name=name, index=False, freeze_panes=(1, 0))
                ws = xw.sheets[name]
                for j, col in enumerate(df.columns, start=1):
                    ws.column_dimensions[ws.cell(row=1, column=j).column_letter].width = min(40, max(10, len(str(col)) + 2))
        written.append(path)
    elif "xlsx" in fmts:
        notes.append("quantmet.xlsx: not written, no table to export")
    if notes:
        for n in notes:
            log.warning("export: %s", n)
        path = out / "notes.txt"
        path.write_text("\n".join(notes) + "\n", encoding="utf-8")
        written.append(path)
    return written
