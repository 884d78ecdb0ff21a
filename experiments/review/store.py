"""The expert's verdicts on a run's clusters: one SQLite file, every change kept.

``<run dir>/review/feedback.sqlite`` (:attr:`experiments.layout.RunLayout.feedback_db`)
holds three tables:

- ``verdicts``: the current verdict per cluster, keyed by ``(scan_id, cluster_id)``:
  ``verdict`` (``'confirmed'``, ``'dismissed'`` or NULL = not reviewed), ``note``,
  ``updated_at`` (UTC ISO 8601), ``revision`` (1 for the first write of a cluster);
- ``history``: one row per accepted write (same fields plus ``client``), never
  updated or deleted, so two tabs writing the same cluster are both on record and the
  last write is the current verdict;
- ``meta``: ``app = quantmet-review`` and ``schema_version``.

Durability: the database runs in WAL mode with ``synchronous=FULL``; :meth:`VerdictStore.set`
returns only after its transaction is committed (and so on disk), which is when the server
acknowledges a verdict.  A server killed with SIGKILL loses no acknowledged verdict.

An existing file that is not such a database (corrupt, or another program's) is never
written to: :class:`StoreError` says so and the file stays as it was.
"""

from __future__ import annotations

import datetime as _dt
import logging
import sqlite3
import threading
from pathlib import Path

import pandas as pd

from data.errors import QuantmetError

__all__ = ["VERDICTS", "StoreError", "VerdictStore", "read_verdicts"]

log = logging.getLogger(__name__)

#: Accepted verdict values; ``None`` clears a verdict.
VERDICTS: tuple[str, ...] = ("confirmed", "dismissed")
APP = "quantmet-review"
SCHEMA_VERSION = "1"
MAX_NOTE = 10_000

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE verdicts (
    scan_id TEXT NOT NULL,
    cluster_id INTEGER NOT NULL,
    verdict TEXT CHECK (verdict IN ('confirmed', 'dismissed') OR verdict IS NULL),
    note TEXT,
    updated_at TEXT NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY (scan_id, cluster_id)
);
CREATE TABLE history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scan_id TEXT NOT NULL,
    cluster_id INTEGER NOT NULL,
    verdict TEXT,
    note TEXT,
    at TEXT NOT NULL,
    client TEXT
);
CREATE INDEX history_cluster ON history (scan_id, cluster_id);
"""
_COLUMNS = ("scan_id", "cluster_id", "verdict", "note", "updated_at", "revision")


class StoreError(QuantmetError):
    """The feedback database cannot be used (corrupt, foreign, or unreadable); it is left untouched."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def _check(conn: sqlite3.Connection, path: Path) -> None:
    try:
        ok = conn.execute("PRAGMA quick_check").fetchone()
        if not ok or ok[0] != "ok":
            raise StoreError(
                f"feedback database {path} is damaged (quick_check: {ok[0] if ok else '?'}); "
                "it was left untouched: move it away to start a new one, or restore a copy"
            )
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"meta", "verdicts", "history"} <= tables:
            raise StoreError(
                f"{path} is not a quantmet feedback database (tables {sorted(tables)}); "
                "it was left untouched"
            )
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"feedback database {path} cannot be read ({exc}); it was left untouched: "
            "move it away to start a new one, or restore a copy"
        ) from None
    if meta.get("app") != APP:
        raise StoreError(
            f"{path} is not a quantmet feedback database (app {meta.get('app')!r}); left untouched"
        )
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {meta.get('schema_version')!r}, this quantmet reads "
            f"{SCHEMA_VERSION!r}; left untouched"
        )


class VerdictStore:
    """Verdicts of one run dir, safe to share between the server's threads.

    Parameters
    ----------
    path : Path
        The database file (created with its folder when missing or empty).
    export_path : Path, optional
        Where :meth:`export` writes the current verdicts as Parquet (after every write).
    """

    def __init__(self, path: str | Path, *, export_path: str | Path | None = None) -> None:
        self.path = Path(path)
        self.export_path = None if export_path is None else Path(export_path)
        self._lock = threading.Lock()
        fresh = not self.path.exists() or (
            self.path.is_file()
            and self.path.stat().st_size == 0
            and not Path(str(self.path) + "-wal").exists()
        )
        if self.path.exists() and not self.path.is_file():
            raise StoreError(f"feedback database path {self.path} is not a file")
        try:
            if fresh:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            else:
                conn = sqlite3.connect(
                    f"file:{self.path}?mode=rw",
                    uri=True,
                    check_same_thread=False,
                    isolation_level=None,
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open feedback database {self.path}: {exc}") from None
        self._conn = conn
        try:
            if not fresh:
                _check(conn, self.path)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=5000")
            if fresh:
                with self._tx():
                    for stmt in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                        conn.execute(stmt)
                    conn.executemany(
                        "INSERT INTO meta (key, value) VALUES (?, ?)",
                        [("app", APP), ("schema_version", SCHEMA_VERSION), ("created", _now())],
                    )
        except StoreError:
            conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(
                f"feedback database {self.path} cannot be used ({exc}); it was left untouched"
            ) from None

    # ------------------------------------------------------------------ internals
    class _Tx:
        def __init__(self, conn):
            self.conn = conn

        def __enter__(self):
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn

        def __exit__(self, exc_type, exc, tb):
            self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
            return False

    def _tx(self) -> "VerdictStore._Tx":
        return VerdictStore._Tx(self._conn)

    # ------------------------------------------------------------------ API
    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def all(self) -> dict[tuple[str, int], dict]:
        """Current records by ``(scan_id, cluster_id)``."""
        with self._lock:
            rows = self._conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM verdicts").fetchall()
        return {(r[0], int(r[1])): dict(zip(_COLUMNS, r)) for r in rows}

    def get(self, scan_id: str, cluster_id: int) -> dict | None:
        with self._lock:
            r = self._conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM verdicts WHERE scan_id = ? AND cluster_id = ?",
                (scan_id, int(cluster_id)),
            ).fetchone()
        return None if r is None else dict(zip(_COLUMNS, r))

    def change_count(self) -> int:
        """Number of writes so far (grows with every accepted write; a cache key)."""
        with self._lock:
            r = self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM history").fetchone()
        return int(r[0])

    def history(self, scan_id: str | None = None, cluster_id: int | None = None) -> list[dict]:
        """Every accepted write, oldest first (of one cluster when given)."""
        q = "SELECT id, scan_id, cluster_id, verdict, note, at, client FROM history"
        args: tuple = ()
        if scan_id is not None:
            q += " WHERE scan_id = ? AND cluster_id = ?"
            args = (scan_id, int(cluster_id if cluster_id is not None else -1))
        with self._lock:
            rows = self._conn.execute(q + " ORDER BY id", args).fetchall()
        cols = ("id", "scan_id", "cluster_id", "verdict", "note", "at", "client")
        return [dict(zip(cols, r)) for r in rows]

    def set(
        self,
        scan_id: str,
        cluster_id: int,
        verdict: str | None,
        *,
        note: str | None = None,
        keep_note: bool = False,
        client: str | None = None,
    ) -> dict:
        """Store a verdict (and note); returns the stored record once committed.

        ``keep_note=True`` keeps the cluster's current note (a verdict button does not wipe it).
        """
        if verdict is not None and verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS} or null, got {verdict!r}")
        if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
            raise ValueError(f"note must be a string of at most {MAX_NOTE} characters")
        at = _now()
        with self._lock, self._tx() as conn:
            old = conn.execute(
                "SELECT note, revision FROM verdicts WHERE scan_id = ? AND cluster_id = ?",
                (scan_id, int(cluster_id)),
            ).fetchone()
            if keep_note:
                note = old[0] if old else None
            rev = (old[1] + 1) if old else 1
            conn.execute(
                "INSERT INTO verdicts (scan_id, cluster_id, verdict, note, updated_at, revision) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scan_id, cluster_id) DO UPDATE SET "
                "verdict = excluded.verdict, note = excluded.note, updated_at = excluded.updated_at, "
                "revision = excluded.revision",
                (scan_id, int(cluster_id), verdict, note, at, rev),
            )
            conn.execute(
                "INSERT INTO history (scan_id, cluster_id, verdict, note, at, client) VALUES (?, ?, ?, ?, ?, ?)",
                (scan_id, int(cluster_id), verdict, note, at, client),
            )
        record = {
            "scan_id": scan_id,
            "cluster_id": int(cluster_id),
            "verdict": verdict,
            "note": note,
            "updated_at": at,
            "revision": rev,
        }
        self.export()
        return record

    def frame(self) -> pd.DataFrame:
        """Current verdicts as a table (columns ``scan_id, cluster_id, verdict, note, updated_at, revision``)."""
        recs = list(self.all().values())
        df = pd.DataFrame(recs, columns=list(_COLUMNS))
        return (
            df.astype({"scan_id": str, "cluster_id": "int64", "revision": "int64"})
            .sort_values(["scan_id", "cluster_id"])
            .reset_index(drop=True)
        )

    def export(self) -> Path | None:
        """Write the current verdicts to :attr:`export_path` (atomically); failures are logged."""
        if self.export_path is None:
            return None
        try:
            df = self.frame()
            tmp = self.export_path.with_name(self.export_path.name + ".tmp")
            self.export_path.parent.mkdir(parents=True, exist_ok=True)
            df.to_parquet(tmp, index=False)
            tmp.replace(self.export_path)
            return self.export_path
        except Exception as exc:  # the database is the record; the export is a convenience
            log.warning("cannot export verdicts to %s: %s", self.export_path, exc)
            return None


def read_verdicts(path: str | Path) -> pd.DataFrame:
    """Current verdicts of a feedback database, opened read-only (for training).

    Raises
    ------
    StoreError
        If the file is missing or not a quantmet feedback database.
    """
    p = Path(path)
    if not p.is_file():
        raise StoreError(
            f"no feedback database at {p} (review the run first: python -m experiments.review)"
        )
    try:
        conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open feedback database {p}: {exc}") from None
    try:
        _check(conn, p)
        rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM verdicts").fetchall()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"feedback database {p} cannot be read ({exc})") from None
    finally:
        conn.close()
    return pd.DataFrame(rows, columns=list(_COLUMNS))
