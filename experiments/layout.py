"""Every output path and file name of a run dir, in one place (the run-dir contract of README).

::

    <run dir>/
      scans.parquet  regions.parquet  clusters.parquet  ratings.parquet
      phases.parquet  coating.parquet     phase fractions and coating measures (phases.enabled)
      labels/<scan>.tif          impurity label image, pixel value = region_id (calibrated TIFF)
      heatmaps/<scan>.png        the scan, impurities coloured by score, clusters outlined
      exclusions/<scan>.png      annotation / ROI exclusion mask (255 = excluded), when any
      phases/<scan>.png          phase colour overlay with its legend (phases.enabled)
      phases/<scan>.tif          phase label image, pixel value k = phases.names[k-1] (calibrated TIFF)
      thickness/<scan>.png       coating thickness profile (phases.coating set)
      crops/<scan>/cluster-<id>.png   gallery crops of the archive's top clusters
      report/index.html          the static report (self-contained: copies what it shows)
      review/feedback.sqlite     expert verdicts (review app), review/feedback.parquet export
      parts/                     per-scan checkpoints (resume)
      .hydra/                    Hydra's record of the last config; .quantmet/ our run state

``<scan>`` is :func:`scan_relpath` of the scan id: the id itself for plain ids
(``lot3/sample-07``), percent-encoded otherwise, so that two scan ids never share a file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunLayout", "scan_relpath", "is_run_dir", "TABLES"]

#: The run's tables, by name -> file name.
TABLES: dict[str, str] = {
    "scans": "scans.parquet",
    "regions": "regions.parquet",
    "clusters": "clusters.parquet",
    "ratings": "ratings.parquet",
    "phases": "phases.parquet",
    "coating": "coating.parquet",
}

_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
# Longest encoded segment kept as is; longer ones become a prefix + "+" + a hash. "+" never
# appears in an encoded segment (it is written %2B), so shortened names cannot collide with
# full ones.
_MAX_SEGMENT = 160


def _encode_segment(seg: str) -> str:
    out = []
    for i, ch in enumerate(seg):
        if ch in _PLAIN and not (ch == "." and i == 0):
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
    enc = "".join(out)
    if len(enc) > _MAX_SEGMENT:
        digest = hashlib.sha256(seg.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        cut = enc[: _MAX_SEGMENT - 17]
        tail = cut.rfind("%", len(cut) - 2)  # do not split a %XX escape
        enc = (cut[:tail] if tail >= 0 else cut) + "+" + digest
    return enc


def scan_relpath(scan_id: str) -> str:
    """Relative path (no extension) of a scan's files: injective, file-system and URL safe.

    ``/`` separates folders (scan ids are POSIX paths relative to the input root); within a
    segment every character outside ``[A-Za-z0-9._-]``, a leading ``.`` and ``%`` itself are
    percent-encoded (UTF-8), so distinct ids give distinct paths and ``..`` cannot climb out.
    Empty segments (``a//b``, a trailing ``/``) are encoded too (``%``-free ids never have them).

    >>> scan_relpath("lot1/scan-03")
    'lot1/scan-03'
    >>> scan_relpath("x y/../µ")
    'x%20y/%2E./%C2%B5'
    >>> scan_relpath("a_b") != scan_relpath("a b")
    True
    """
    text = str(scan_id)
    if text == "":
        return "%00"
    return "/".join(_encode_segment(s) if s else "%00" for s in text.split("/"))


@dataclass(frozen=True)
class RunLayout:
    """Paths of one run dir; the only place that builds them."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # ---------------------------------------------------------------- tables
    def table(self, name: str) -> Path:
        """``scans`` / ``regions`` / ``clusters`` / ``ratings`` / ``phases`` / ``coating`` -> its Parquet file."""
        return self.root / TABLES[name]

    @property
    def scans(self) -> Path:
        return self.table("scans")

    @property
    def regions(self) -> Path:
        return self.table("regions")

    @property
    def clusters(self) -> Path:
        return self.table("clusters")

    @property
    def ratings(self) -> Path:
        return self.table("ratings")

    @property
    def phases(self) -> Path:
        return self.table("phases")

    @property
    def coating(self) -> Path:
        return self.table("coating")

    # ---------------------------------------------------------------- per scan (relative)
    @staticmethod
    def labels_rel(scan_id: str) -> str:
        return f"labels/{scan_relpath(scan_id)}.tif"

    @staticmethod
    def heatmap_rel(scan_id: str) -> str:
        return f"heatmaps/{scan_relpath(scan_id)}.png"

    @staticmethod
    def exclusion_rel(scan_id: str) -> str:
        return f"exclusions/{scan_relpath(scan_id)}.png"

    @staticmethod
    def phase_overlay_rel(scan_id: str) -> str:
        return f"phases/{scan_relpath(scan_id)}.png"

    @staticmethod
    def phase_labels_rel(scan_id: str) -> str:
        return f"phases/{scan_relpath(scan_id)}.tif"

    @staticmethod
    def thickness_rel(scan_id: str) -> str:
        return f"thickness/{scan_relpath(scan_id)}.png"

    @staticmethod
    def crop_rel(scan_id: str, cluster_id: int) -> str:
        return f"crops/{scan_relpath(scan_id)}/cluster-{int(cluster_id)}.png"

    def path(self, rel: str) -> Path:
        """Absolute path of a run-relative path (one of the ``*_rel`` above)."""
        return self.root / rel

    def labels(self, scan_id: str) -> Path:
        return self.root / self.labels_rel(scan_id)

    def heatmap(self, scan_id: str) -> Path:
        return self.root / self.heatmap_rel(scan_id)

    def exclusion(self, scan_id: str) -> Path:
        return self.root / self.exclusion_rel(scan_id)

    def crop(self, scan_id: str, cluster_id: int) -> Path:
        return self.root / self.crop_rel(scan_id, cluster_id)

    #: Folders of per-scan files (a rerun without resume empties them first).
    PER_SCAN_DIRS = ("labels", "heatmaps", "exclusions", "crops", "phases", "thickness")

    # ---------------------------------------------------------------- report, review, state
    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @property
    def report_index(self) -> Path:
        return self.report_dir / "index.html"

    @property
    def review_dir(self) -> Path:
        return self.root / "review"

    @property
    def feedback_db(self) -> Path:
        return self.review_dir / "feedback.sqlite"

    @property
    def feedback_parquet(self) -> Path:
        return self.review_dir / "feedback.parquet"

    @property
    def parts_dir(self) -> Path:
        return self.root / "parts"

    @property
    def hydra_dir(self) -> Path:
        return self.root / ".hydra"

    @property
    def state_dir(self) -> Path:
        """quantmet's own run state: lock, manifest, config history."""
        return self.root / ".quantmet"

    @property
    def lock(self) -> Path:
        return self.state_dir / "run.lock"

    @property
    def manifest(self) -> Path:
        return self.state_dir / "manifest.json"

    @property
    def config_history(self) -> Path:
        return self.state_dir / "configs"

    @property
    def run_stats(self) -> Path:
        """Timings and memory of the driver of the last run (benchmarks read it)."""
        return self.state_dir / "run_stats.json"


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` holds a finished (or resumable) run: its ``scans.parquet`` exists."""
    return RunLayout(Path(path)).scans.exists()
