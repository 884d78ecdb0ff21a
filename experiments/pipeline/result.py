"""A scan's result and the ``scans.parquet`` row schema, declared once.

:data:`SCAN_SCHEMA` maps every column of ``scans.parquet`` to its kind (``str``, ``int``,
``float``, ``bool``), in file order: the pipeline's own columns, the grain columns of
:mod:`segmentation.grains` and the rating columns of :mod:`data.standards`, then timings and
process information last.  :func:`scan_row` builds a row with every column present,
:func:`scan_rows_frame` turns rows into a frame with those dtypes, and :func:`read_scan_table`
reads a run's ``scans.parquet`` with them (the report and the review app read it so).
A new per-scan measurement adds its columns here (:data:`MEASURE_COLUMNS`) and its values in
:mod:`.analysis`.

:class:`ScanTask` is what the driver hands a worker, :class:`ScanResult` what comes back;
:class:`ScanWriteError` is a failure to write the run dir on the worker (errno and message),
carried back in the result.
"""

from __future__ import annotations

import math
import os
import resource
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from data.errors import QuantmetError
from data.inputs import ScanInput
from data.standards import RATING_SCAN_COLUMNS, unrated_scan_values
from segmentation.grains import SCAN_GRAIN_COLUMNS  # no Keras in grains

__all__ = [
    "ColumnKind",
    "SCAN_SCHEMA",
    "SCAN_COLUMNS",
    "MEASURE_COLUMNS",
    "ScanTask",
    "ScanResult",
    "ScanWriteError",
    "scan_row",
    "scan_rows_frame",
    "read_scan_table",
    "with_scan_dtypes",
    "failed_result",
]

ColumnKind = Literal["str", "int", "float", "bool"]

#: Identity and status of the scan (first columns of scans.parquet).
_IDENTITY: tuple[tuple[str, ColumnKind], ...] = (
    ("scan_id", "str"),
    ("path", "str"),
    ("kind", "str"),
    ("status", "str"),
    ("error", "str"),
)

#: Per-scan measurements (:mod:`.analysis` fills them); a new measurement appends its columns here.
MEASURE_COLUMNS: tuple[tuple[str, ColumnKind], ...] = (
    ("n_regions", "int"),
    ("height", "int"),
    ("width", "int"),
    ("pixel_size_um", "float"),
    ("pixel_size_source", "str"),
    ("calibration_note", "str"),
    ("area_fraction", "float"),
    ("number_density_per_mpx", "float"),
    ("number_density_per_mm2", "float"),
    ("n_clusters", "int"),
    # 95% intervals of the area fraction and the count: field-to-field spread and, for segmented raw
    # scans, the repeatability recorded in the model card (data.standards.uncertainty)
    ("area_fraction_ci95_low", "float"),
    ("area_fraction_ci95_high", "float"),
    ("area_fraction_u_field", "float"),
    ("area_fraction_u_repeat", "float"),
    ("n_regions_ci95_low", "float"),
    ("n_regions_ci95_high", "float"),
    ("n_regions_u_field", "float"),
    ("n_regions_u_repeat", "float"),
    # raw scans segmented by a model: inside the range of scans it was validated on, and why not
    ("in_domain", "bool"),
    ("domain_note", "str"),
)

#: What else the stage records: exclusions, annotations, files, settings, sample group, file identity.
_CONTEXT: tuple[tuple[str, ColumnKind], ...] = (
    ("excluded_fraction", "float"),
    ("n_excluded_regions", "int"),
    ("data_bar", "str"),
    ("scale_bar_length_px", "float"),
    ("scale_bar_label", "str"),
    ("labels_file", "str"),
    ("heatmap_file", "str"),
    ("exclusion_file", "str"),
    ("phases_file", "str"),
    ("thickness_file", "str"),
    ("settings_note", "str"),
    # which inference path segmented the scan ("unet_impurities.keras: openvino-bf16; ..."), from the worker
    ("segmentation_backend", "str"),
    ("group", "str"),
    ("file_size", "int"),
    ("file_mtime_ns", "int"),
)

#: Seconds per step and the worker's process (last columns).
_PROCESS: tuple[tuple[str, ColumnKind], ...] = (
    *((f"t_{step}_s", "float") for step in
      ("read", "segment", "regions", "score", "cluster", "grains", "ratings", "render", "total")),
    ("worker_pid", "int"),
    ("peak_rss_mb", "float"),
)

_GRAIN_INT = frozenset({"grain_count", "grain_fields", "n_intercepts", "n_crossings"})


def _grain_columns() -> tuple[tuple[str, ColumnKind], ...]:
    return tuple((c, "str" if c == "grain_note" else "int" if c in _GRAIN_INT else "float")
                 for c in SCAN_GRAIN_COLUMNS)


def _kind_of(value: Any) -> ColumnKind:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "str"
    return "int" if isinstance(value, int) else "float"


#: Values of a scan that was not rated (their types give the rating columns' kinds).
_UNRATED: dict = unrated_scan_values("")


def _rating_columns() -> tuple[tuple[str, ColumnKind], ...]:
    return tuple((c, _kind_of(_UNRATED[c])) for c in RATING_SCAN_COLUMNS)


#: Every scans.parquet column and its kind, in file order.
SCAN_SCHEMA: dict[str, ColumnKind] = dict(
    (*_IDENTITY, *MEASURE_COLUMNS, *_grain_columns(), *_CONTEXT, *_rating_columns(), *_PROCESS)
)
SCAN_COLUMNS: tuple[str, ...] = tuple(SCAN_SCHEMA)


class ScanWriteError(QuantmetError, OSError):
    """The run dir could not be written on the worker (disk full, read-only, no permission).

    Parameters
    ----------
    errno : int
        The ``errno`` of the failed write (0 when unknown).
    message : str
        What the operating system said.
    """

    def __init__(self, errno: int, message: str):
        super().__init__(int(errno or 0), str(message))

    @classmethod
    def from_os_error(cls, exc: OSError) -> ScanWriteError:
        """The picklable error that stands for ``exc`` (its errno and message)."""
        return cls(exc.errno or 0, exc.strerror or str(exc))


@dataclass(frozen=True)
class ScanTask:
    """One scan to analyse, with what the driver knows when it hands it out.

    ``crop_min_score``: only clusters scoring at least this can still enter the run's top
    ``top_n`` (the driver's running threshold), so only those get a gallery crop.
    ``run_root``: the run dir where the worker commits the scan (files and checkpoint);
    None keeps the files in the result's memory.
    """

    item: ScanInput
    crop_min_score: float = -math.inf
    group: str = ""
    run_root: str | None = None
    input_id: dict = field(default_factory=dict)
    config_hash: str = ""


@dataclass
class ScanResult:
    """What the stage returns for one scan (everything in memory until it is committed)."""

    scan_id: str
    row: dict
    regions: pd.DataFrame = field(default_factory=pd.DataFrame)
    clusters: pd.DataFrame = field(default_factory=pd.DataFrame)
    ratings: pd.DataFrame | None = None
    phases: pd.DataFrame | None = None  # phases.parquet rows (phases.enabled)
    coating: pd.DataFrame | None = None  # coating.parquet row (phases.coating set)
    files: dict[str, bytes] = field(default_factory=dict)  # run-relative path -> content
    crops: dict[int, dict] = field(default_factory=dict)  # cluster_id -> {"file": rel, "facts": [...]}
    stats: dict = field(default_factory=dict)  # reporting.stats.RegionStats.to_dict()
    written: list[str] = field(default_factory=list)  # files the worker wrote (run-relative)
    write_error: ScanWriteError | None = None  # the run dir could not be written: stop the run

    @property
    def ok(self) -> bool:
        return self.row.get("status") == "ok"


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _file_identity(path: Path) -> dict:
    try:
        st = Path(path).stat()
        return {"file_size": int(st.st_size), "file_mtime_ns": int(st.st_mtime_ns)}
    except OSError:
        return {}


def scan_row(item: ScanInput, kind: str, **values: Any) -> dict:
    """A scans.parquet row with every column of :data:`SCAN_SCHEMA` present (NaN / '' where unknown).

    Parameters
    ----------
    item : ScanInput
        The scan (its id, path and file identity).
    kind : str
        ``data.kind`` of the run (``scan`` or ``mask``).
    **values
        Column values; a name outside :data:`SCAN_SCHEMA` is a ValueError.
    """
    unknown = sorted(set(values) - SCAN_SCHEMA.keys())
    if unknown:
        raise ValueError(f"scan row values {unknown} are not scans.parquet columns (declare them in SCAN_SCHEMA)")
    row: dict[str, Any] = {c: ("" if k == "str" else np.nan) for c, k in SCAN_SCHEMA.items()}
    row.update(_UNRATED)
    row.update(scan_id=item.scan_id, path=str(item.path), kind=kind, status="ok", error="")
    row.update(worker_pid=os.getpid(), peak_rss_mb=_peak_rss_mb())
    row.update(_file_identity(item.path))
    row.update(values)
    return row


def with_scan_dtypes(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every declared column it has cast to its kind (in place; returned for chaining)."""
    for c in [c for c in SCAN_COLUMNS if c in df.columns]:
        kind = SCAN_SCHEMA[c]
        if kind == "str":
            df[c] = df[c].fillna("").astype(str)
        elif kind == "bool":
            df[c] = df[c].fillna(False).astype(bool)
        elif kind == "int":
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
        else:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(np.float64)
    return df


def scan_rows_frame(rows: list[dict]) -> pd.DataFrame:
    """scans.parquet rows with the declared dtypes (ints stay nullable ints, strings stay strings)."""
    return with_scan_dtypes(pd.DataFrame(rows, columns=list(SCAN_COLUMNS)))


def read_scan_table(path: str | Path) -> pd.DataFrame:
    """Read a run's ``scans.parquet``, every declared column present in it cast to its kind.

    Columns the declaration does not know (a run of another version) are kept as stored.
    """
    return with_scan_dtypes(pd.read_parquet(path))


def failed_result(item: ScanInput, kind: str, error: str) -> ScanResult:
    """The result of a scan that could not be analysed (e.g. its worker died)."""
    return ScanResult(item.scan_id, scan_row(item, kind, status="failed", error=error))
