"""Results stream into the final Parquet files as scans finish, in scan order, with bounded memory.

:class:`TableWriter` appends row groups to one Parquet file (written under a temporary name and
renamed when closed, so a half-written table never has the final name).  :class:`OrderedSink`
writes the per-scan tables of a run in input order (sorted scan ids), whatever order the workers
finish in: a result that arrives early waits in memory while the buffer is small, and is otherwise
dropped from memory and read back from its checkpoint when its turn comes.  The same inputs and
config therefore give byte-identical tables with any number of workers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .result import ScanResult

__all__ = ["TableWriter", "OrderedSink"]

_ROW_GROUP_ROWS = 65_536


class TableWriter:
    """Append pandas frames (or row dicts) of one schema to a Parquet file, in row groups.

    Frames and rows wait in memory until about ``row_group_rows`` rows (or ``max_frames`` frames:
    a small pandas frame costs tens of KB whatever its rows, so an archive of small scans would
    otherwise hold thousands) are pending, then go to the file as one row group (one conversion per
    row group, not per scan).  The schema is the first
    non-empty row group's; later ones are cast to it (other columns are an error, with their names).
    Empty frames add no rows; when every frame is empty, the file still gets the columns of the
    first one.  ``frame_of_rows`` turns pending row dicts into a frame (``append_rows``).
    """

    def __init__(self, path: Path, *, row_group_rows: int = _ROW_GROUP_ROWS, max_frames: int = 256,
                 frame_of_rows: Callable[[list[dict]], pd.DataFrame] | None = None):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".partial")
        self.row_group_rows = int(row_group_rows)
        self.max_frames = int(max_frames)
        self.frame_of_rows = frame_of_rows
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None
        self._empty: pd.DataFrame | None = None
        self._pending: list[pd.DataFrame] = []
        self._pending_dicts: list[dict] = []
        self._pending_rows = 0
        self.rows = 0

    def _table(self, df: pd.DataFrame) -> pa.Table:
        if self._schema is None:
            return pa.Table.from_pandas(df, preserve_index=False)
        missing = [n for n in self._schema.names if n not in df.columns]
        extra = [c for c in df.columns if c not in self._schema.names]
        if missing or extra:
            raise ValueError(f"{self.path.name}: columns differ from the first scan's (missing {missing}, extra {extra})")
        return pa.Table.from_pandas(df[self._schema.names], schema=self._schema, preserve_index=False)

    def append(self, df: pd.DataFrame | None) -> None:
        if df is None:
            return
        if len(df) == 0:
            if self._empty is None:
                self._empty = df
            return
        if self._pending_dicts:
            self._frame_dicts()
        self._pending.append(df)
        self._pending_rows += len(df)
        if self._pending_rows >= self.row_group_rows or len(self._pending) >= self.max_frames:
            self._flush()

    def append_rows(self, rows: list[dict]) -> None:
        """Rows as dicts (converted with ``frame_of_rows`` when their row group is written)."""
        if self.frame_of_rows is None:
            raise ValueError("append_rows needs frame_of_rows")
        self._pending_dicts.extend(rows)
        self._pending_rows += len(rows)
        if self._pending_rows >= self.row_group_rows:
            self._flush()

    def _frame_dicts(self) -> None:
        self._pending.append(self.frame_of_rows(self._pending_dicts))
        self._pending_dicts = []

    def _flush(self) -> None:
        if self._pending_dicts:
            self._frame_dicts()
        if not self._pending:
            return
        df = self._pending[0] if len(self._pending) == 1 else pd.concat(self._pending, ignore_index=True)
        table = self._table(df)
        if self._schema is None:
            self._schema = table.schema
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.tmp, self._schema)
        self._writer.write_table(table, row_group_size=max(self.row_group_rows, table.num_rows))
        self.rows += table.num_rows
        self._pending, self._pending_rows = [], 0

    def close(self) -> Path:
        """Finish the file and give it its final name."""
        self._flush()
        if self._writer is None:  # no rows at all
            empty = self._empty if self._empty is not None else (
                self.frame_of_rows([]) if self.frame_of_rows is not None else pd.DataFrame())
            self.path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pandas(empty, preserve_index=False), self.tmp)
        else:
            self._writer.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial file (the run failed; the final name is never half-written)."""
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - best effort on an error path
                pass
        self.tmp.unlink(missing_ok=True)


class OrderedSink:
    """Write each scan's tables to the run's Parquet files in a fixed scan order.

    Parameters
    ----------
    order : sequence of str
        Scan ids in output order (every scan of the run, exactly once).
    writers : dict
        ``{"scans": TableWriter, "regions": ..., "ratings": ..., "phases": ..., "coating": ...}``
        (the optional ones only when the run makes them).
    load : callable
        ``scan_id -> ScanResult``: reads a result back from its checkpoint.
    budget_bytes : int
        Early results are kept in memory up to about this many bytes, then reloaded on their turn.
    """

    def __init__(self, order: Sequence[str], writers: dict[str, TableWriter], load: Callable[[str], ScanResult],
                 *, budget_bytes: int = 256 << 20):
        self.order = list(order)
        self.index = {sid: i for i, sid in enumerate(self.order)}
        if len(self.index) != len(self.order):
            raise ValueError("scan ids must be unique")
        self.writers = writers
        self.load = load
        self.budget = int(budget_bytes)
        self.next = 0
        self._held: dict[int, ScanResult | None] = {}  # None = committed, reload from the checkpoint
        self._held_bytes = 0
        self._sizes: dict[int, int] = {}

    @staticmethod
    def _size(r: ScanResult) -> int:
        """About the bytes a held result takes (8 per cell: the tables are numeric but a few columns)."""
        n = 0
        for df in (r.regions, r.clusters, r.ratings, r.phases, r.coating):
            if df is not None and len(df):
                n += 8 * len(df) * len(df.columns)
        return n + 2048

    def add(self, result: ScanResult, *, in_memory: bool = True) -> None:
        """A finished (and checkpointed) scan; ``in_memory=False`` = read it back when due."""
        i = self.index[result.scan_id]
        if i < self.next or i in self._held:
            raise ValueError(f"scan {result.scan_id!r} was already written")
        size = self._size(result) if in_memory and i != self.next else 0
        if in_memory and i != self.next and self._held_bytes + size > self.budget:
            in_memory = False
        self._held[i] = result if in_memory else None
        if in_memory:
            self._sizes[i] = size
            self._held_bytes += size
        self._drain()

    def _drain(self) -> None:
        while self.next in self._held:
            r = self._held.pop(self.next)
            self._held_bytes -= self._sizes.pop(self.next, 0)
            if r is None:
                r = self.load(self.order[self.next])
            self._write(r)
            self.next += 1

    def _write(self, r: ScanResult) -> None:
        self.writers["scans"].append_rows([r.row])
        if r.ok:
            self.writers["regions"].append(r.regions)
            for name in ("ratings", "phases", "coating"):
                table = getattr(r, name)
                if name in self.writers and table is not None:
                    self.writers[name].append(table)

    @property
    def done(self) -> bool:
        return self.next == len(self.order)

    def close(self) -> None:
        if not self.done:
            missing = self.order[self.next]
            raise RuntimeError(f"scan {missing!r} never finished; the tables are incomplete")
        for w in self.writers.values():
            w.close()

    def abort(self) -> None:
        for w in self.writers.values():
            w.abort()
