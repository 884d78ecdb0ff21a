"""Per-scan checkpoints in ``<run_dir>/parts/`` that make an interrupted or changed run resumable.

Each finished scan is committed atomically: its tables (Arrow IPC, fast to write and read) and a
``meta.json`` go into a temporary folder that is then renamed to ``parts/<key>`` (a rename is
atomic on POSIX file systems), so a part is either complete or absent.  :func:`commit_scan`
(called by the worker's :class:`.commit.CommittingStage`) writes a part only after the scan's
files (label image, heatmap, ...) are in place, so a part also vouches for them.  ``meta.json`` records what determined the result: the input file's identity (resolved path,
size, modification time) and the hash of the per-scan configuration (:mod:`.keys`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather

from .result import ScanResult

__all__ = ["PART_FORMAT", "PartStore", "OldRunDirError", "write_atomic", "commit_scan"]

#: Version of the part layout; parts of another version are never reused.
PART_FORMAT = 2


class OldRunDirError(RuntimeError):
    """The run dir holds checkpoints of an older quantmet."""


def write_atomic(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` through a temporary file and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def commit_scan(root: Path, result: ScanResult, *, input_id: dict, config_hash: str) -> None:
    """Write a scan's files into the run dir, then checkpoint it (the part vouches for the files).

    Called where the result is (the worker, on the run dir that every node shares); the bytes are
    dropped from the result afterwards.  A crash in between leaves no part: a resume redoes the scan.
    """
    root = Path(root)
    written = []
    for rel, content in result.files.items():
        write_atomic(root / rel, content)
        written.append(rel)
    result.files = {}
    PartStore(root / "parts").commit(result, input_id=input_id, config_hash=config_hash,
                                     files=[f for f in written if not f.startswith("crops/")])
    result.written = written


def _write_frame(df: pd.DataFrame | None, path: Path) -> None:
    if df is None:
        return
    feather.write_feather(pa.Table.from_pandas(df, preserve_index=False), path, compression="uncompressed")


def _read_frame(path: Path) -> pd.DataFrame | None:
    return feather.read_table(path).to_pandas() if path.exists() else None


class PartStore:
    """Folder of committed per-scan results."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @staticmethod
    def key(scan_id: str) -> str:
        return hashlib.sha256(scan_id.encode("utf-8", "surrogatepass")).hexdigest()[:24]

    def path(self, scan_id: str) -> Path:
        return self.root / self.key(scan_id)

    def check_format(self) -> None:
        """Raise :class:`OldRunDirError` when the parts were written by an older version."""
        if not self.root.is_dir():
            return
        for p in self.root.iterdir():
            if p.name.startswith(".tmp-"):
                continue
            if (p / "scan.parquet").exists() and not (p / "meta.json").exists():
                raise OldRunDirError(
                    f"{self.root.parent} was written by an older quantmet (checkpoints without "
                    "meta.json): it cannot be resumed; rerun without runtime.resume or into a new run dir"
                )
            break

    def meta(self, scan_id: str) -> dict | None:
        try:
            return json.loads((self.path(scan_id) / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def reusable(self, scan_id: str, input_id: dict, config_hash: str, run_root: Path) -> bool:
        """Whether the committed part can stand for this scan now.

        Yes when it is of this format, the scan succeeded, the input file and the per-scan config
        are the same, and the files it vouches for still exist.  Failed scans are never reused
        (a resume retries them).
        """
        m = self.meta(scan_id)
        if not m or m.get("format") != PART_FORMAT or m.get("status") != "ok":
            return False
        if m.get("input") != input_id or m.get("config_hash") != config_hash:
            return False
        return all((Path(run_root) / rel).is_file() for rel in m.get("files", []))

    def clear(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)

    def commit(self, result: ScanResult, *, input_id: dict, config_hash: str, files: list[str]) -> None:
        """Write one scan's result atomically (replacing an older part of the same scan)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".tmp-"))
        try:
            _write_frame(pd.DataFrame([result.row]), tmp / "scan.arrow")
            if result.ok:
                _write_frame(result.regions, tmp / "regions.arrow")
                _write_frame(result.clusters, tmp / "clusters.arrow")
                _write_frame(result.ratings, tmp / "ratings.arrow")
                _write_frame(result.phases, tmp / "phases.arrow")
                _write_frame(result.coating, tmp / "coating.arrow")
            meta = {
                "format": PART_FORMAT,
                "scan_id": result.scan_id,
                "status": result.row.get("status"),
                "input": input_id,
                "config_hash": config_hash,
                "files": sorted(files),
                "crops": {str(k): v for k, v in result.crops.items()},
                "stats": result.stats,
            }
            (tmp / "meta.json").write_text(json.dumps(meta, default=str), encoding="utf-8")
            final = self.path(result.scan_id)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def load(self, scan_id: str) -> ScanResult:
        p = self.path(scan_id)
        meta = self.meta(scan_id) or {}
        row = _read_frame(p / "scan.arrow").iloc[0].to_dict()
        return ScanResult(
            scan_id,
            row,
            _read_frame(p / "regions.arrow") if (p / "regions.arrow").exists() else pd.DataFrame(),
            _read_frame(p / "clusters.arrow") if (p / "clusters.arrow").exists() else pd.DataFrame(),
            _read_frame(p / "ratings.arrow"),
            _read_frame(p / "phases.arrow"),
            _read_frame(p / "coating.arrow"),
            {},
            {int(k): v for k, v in meta.get("crops", {}).items()},
            meta.get("stats") or {},
        )
