"""Per-scan checkpoints in ``<run_dir>/parts/`` so an interrupted archive run can resume.

Each finished scan is committed atomically: its three small tables are written
into a temporary folder that is then renamed to ``parts/<key>`` (a rename is
atomic on POSIX file systems), so a part is either complete or absent.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from .stage import ScanResult

__all__ = ["PartStore"]


class PartStore:
    """Folder of committed per-scan results."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @staticmethod
    def key(scan_id: str) -> str:
        return hashlib.sha1(scan_id.encode("utf-8")).hexdigest()[:20]

    def path(self, scan_id: str) -> Path:
        return self.root / self.key(scan_id)

    def has(self, scan_id: str) -> bool:
        return (self.path(scan_id) / "scan.parquet").exists()

    def clear(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)

    def commit(self, result: ScanResult) -> None:
        """Write one scan's tables atomically (replacing an older part of the same scan)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".tmp-"))
        try:
            pd.DataFrame([result.row]).to_parquet(tmp / "scan.parquet", index=False)
            if result.ok:
                result.regions.to_parquet(tmp / "regions.parquet", index=False)
                result.clusters.to_parquet(tmp / "clusters.parquet", index=False)
            final = self.path(result.scan_id)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def load(self, scan_id: str) -> ScanResult:
        p = self.path(scan_id)
        row = pd.read_parquet(p / "scan.parquet").iloc[0].to_dict()
        regions = pd.read_parquet(p / "regions.parquet") if (p / "regions.parquet").exists() else pd.DataFrame()
        clusters = pd.read_parquet(p / "clusters.parquet") if (p / "clusters.parquet").exists() else pd.DataFrame()
        return ScanResult(scan_id, row, regions, clusters)
