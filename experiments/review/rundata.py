"""A finished run as the review app sees it: ranked clusters with features and reasons, scans."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from anomaly.reasons import FEATURE_COLUMNS, cluster_features, cluster_reasons
from data.errors import QuantmetError
from experiments.layout import RunLayout, is_run_dir

__all__ = ["ReviewError", "RunData", "load_run", "ensure_features"]

log = logging.getLogger(__name__)

_REGION_COLUMNS = [
    "scan_id",
    "region_id",
    "area_px",
    "feret_max_px",
    "feret_min_px",
    "solidity",
    "cluster_id",
    "spatial_score",
    "circle_score",
    "shape_score",
    "combined_score",
]


class ReviewError(QuantmetError):
    """The review app cannot start on this input (not a run dir, bad option, port in use...)."""


def _read(path: Path, what: str, columns: list[str] | None = None) -> pd.DataFrame:
    try:
        if columns is None:
            return pd.read_parquet(path)
        import pyarrow.parquet as pq

        have = set(pq.read_schema(path).names)
        return pd.read_parquet(path, columns=[c for c in columns if c in have])
    except FileNotFoundError:
        raise ReviewError(f"the run dir has no {what} ({path}); is the run finished?") from None
    except Exception as exc:  # pyarrow raises many kinds for a broken file
        raise ReviewError(f"cannot read {what} {path}: {exc}") from None


def ensure_features(
    clusters: pd.DataFrame, regions: pd.DataFrame | None, scans: pd.DataFrame
) -> pd.DataFrame:
    """Add the :data:`anomaly.reasons.FEATURE_COLUMNS` a run's clusters table lacks (from regions)."""
    missing = [c for c in FEATURE_COLUMNS if c not in clusters.columns]
    if not missing or regions is None or "cluster_id" not in regions.columns:
        return clusters
    info = scans.set_index(scans["scan_id"].astype(str))
    parts = []
    for sid, cl in clusters.groupby(clusters["scan_id"].astype(str), sort=False):
        reg = regions[regions["scan_id"].astype(str) == sid]
        ps = shape = None
        if sid in info.index:
            row = info.loc[sid]
            v = row.get("pixel_size_um")
            ps = float(v) if v is not None and pd.notna(v) and float(v) > 0 else None
            h, w = row.get("height"), row.get("width")
            if h is not None and w is not None and pd.notna(h) and pd.notna(w):
                shape = (int(h), int(w))
        need = ["area_px", "feret_max_px", "feret_min_px", "solidity"]
        if any(c not in reg.columns for c in need):
            return clusters
        try:
            f = cluster_features(reg, cl, pixel_size_um=ps, shape=shape)
        except ValueError as exc:
            log.warning("cluster features of scan %r cannot be computed: %s", sid, exc)
            continue
        parts.append(f.drop(columns="cluster_id"))
    if not parts:
        return clusters
    feats = pd.concat(parts)
    out = clusters.copy()
    for c in missing:
        out[c] = feats[c].reindex(out.index)
    return out


@dataclass
class RunData:
    """Tables of a run dir, loaded once (clusters sorted by rank)."""

    layout: RunLayout
    clusters: pd.DataFrame  # rank order, RangeIndex; + reason, features
    scans: pd.DataFrame  # scans.parquet, RangeIndex = the scan's number in tile URLs
    regions: pd.DataFrame | None  # scan_id, region_id, scores (for colouring)
    score_column: str = "combined_score"

    def __post_init__(self) -> None:
        self._scan_pos = {str(s): i for i, s in enumerate(self.scans["scan_id"].astype(str))}
        self._cluster_pos = {
            (str(s), int(c)): i
            for i, (s, c) in enumerate(
                zip(self.clusters["scan_id"].astype(str), self.clusters["cluster_id"])
            )
        }
        self._region_groups = (
            self.regions.groupby(self.regions["scan_id"].astype(str)).indices
            if self.regions is not None
            else {}
        )

    # ------------------------------------------------------------------ lookups
    def cluster_index(self, scan_id: str, cluster_id: int) -> int | None:
        return self._cluster_pos.get((str(scan_id), int(cluster_id)))

    def scan_index(self, scan_id: str) -> int | None:
        return self._scan_pos.get(str(scan_id))

    def scan_row(self, scan_id: str) -> pd.Series | None:
        i = self.scan_index(scan_id)
        return None if i is None else self.scans.iloc[i]

    def scan_path(self, index: int) -> Path | None:
        v = self.scans.iloc[index].get("path")
        return Path(str(v)) if v is not None and pd.notna(v) and str(v) else None

    def labels_path(self, index: int) -> Path:
        return self.layout.labels(str(self.scans.iloc[index]["scan_id"]))

    def pixel_size(self, scan_id: str) -> float | None:
        row = self.scan_row(scan_id)
        if row is None:
            return None
        v = row.get("pixel_size_um")
        return float(v) if v is not None and pd.notna(v) and float(v) > 0 else None

    def region_scores(self, scan_id: str) -> np.ndarray | None:
        """``lut[region_id]`` = score of that region (NaN where unknown); None without regions."""
        if self.regions is None or self.score_column not in self.regions.columns:
            return None
        idx = self._region_groups.get(str(scan_id))
        if idx is None or len(idx) == 0:
            return np.zeros(1)
        reg = self.regions.iloc[idx]
        rid = reg["region_id"].to_numpy(np.int64)
        lut = np.full(int(rid.max()) + 1, np.nan)
        lut[rid] = pd.to_numeric(reg[self.score_column], errors="coerce").to_numpy(np.float64)
        return lut


def load_run(run_dir: str | Path) -> RunData:
    """Load a run dir for review (raises :class:`ReviewError` with a clear message)."""
    root = Path(run_dir)
    if not root.exists():
        raise ReviewError(f"run dir {root} does not exist")
    if not root.is_dir():
        raise ReviewError(f"run dir {root} is not a folder")
    if not is_run_dir(root):
        raise ReviewError(
            f"{root} is not a quantmet run dir (no {RunLayout(root).scans.name}); "
            "give the output folder of a finished run"
        )
    layout = RunLayout(root)
    from ..pipeline.result import with_scan_dtypes  # lazy: the row schema imports the grain and rating modules

    scans = with_scan_dtypes(_read(layout.scans, "scans table")).reset_index(drop=True)
    clusters = _read(layout.clusters, "clusters table")
    need = [c for c in ("scan_id", "cluster_id", "rank", "score") if c not in clusters.columns]
    if need:
        raise ReviewError(
            f"{layout.clusters} lacks column(s) {need}; is it a quantmet clusters table?"
        )
    if "scan_id" not in scans.columns:
        raise ReviewError(f"{layout.scans} lacks column 'scan_id'")
    regions = None
    if layout.regions.exists():
        regions = _read(layout.regions, "regions table", _REGION_COLUMNS)
        if not {"scan_id", "region_id"} <= set(regions.columns):
            regions = None
    clusters = clusters.sort_values(["rank", "scan_id", "cluster_id"], kind="stable").reset_index(
        drop=True
    )
    clusters["scan_id"] = clusters["scan_id"].astype(str)
    clusters["cluster_id"] = clusters["cluster_id"].astype(np.int64)
    if clusters.duplicated(["scan_id", "cluster_id"]).any():
        raise ReviewError(f"{layout.clusters} has duplicate (scan_id, cluster_id) rows")
    clusters = ensure_features(clusters, regions, scans)
    if "reason" not in clusters.columns or clusters["reason"].isna().all():
        clusters["reason"] = cluster_reasons(clusters) if len(clusters) else pd.Series(dtype=object)
    clusters["reason"] = clusters["reason"].fillna("").astype(str)
    return RunData(layout=layout, clusters=clusters, scans=scans, regions=regions)


def fmt_value(v) -> str:
    """A measurement for display: 3-4 significant digits, no exponent for ordinary numbers."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        x = float(v)
        if x == 0:
            return "0"
        if 1e-3 <= abs(x) < 1e6:
            return f"{x:.4g}"
        return f"{x:.3e}"
    return str(v)
