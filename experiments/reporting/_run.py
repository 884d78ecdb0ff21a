"""Loading a run dir's tables and configuration, and recovering label images of mask scans."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from .nouns import is_phase_run

__all__ = ["RunData", "is_phase_run", "labels_from_mask", "load_run", "scan_kind"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunData:
    """The tables and configuration of one run dir (see the run-dir contract in README)."""

    run_dir: Path
    scans: pd.DataFrame
    regions: pd.DataFrame
    clusters: pd.DataFrame
    config_text: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    overrides_text: str = ""
    notes: tuple[str, ...] = ()


def _read_parquet(path: Path, notes: list[str]) -> pd.DataFrame:
    if not path.exists():
        notes.append(f"{path.name} not found in the run dir")
        return pd.DataFrame()
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for broken files
        notes.append(f"{path.name} could not be read: {exc}")
        return pd.DataFrame()


def load_run(run_dir: str | Path, *, clusters: pd.DataFrame | None = None, regions: bool = True) -> RunData:
    """Read ``scans.parquet``, ``clusters.parquet``, ``.hydra/`` (and ``regions.parquet``) of a run.

    Missing or unreadable region/cluster tables become empty tables with a note.  ``clusters``
    given: used instead of the file; ``regions=False``: the (possibly huge) regions table is not
    read (the report streams it instead).

    Raises
    ------
    FileNotFoundError
        If ``run_dir`` is not a folder or has no ``scans.parquet``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run dir not found: {run_dir}")
    if not (run_dir / "scans.parquet").exists():
        raise FileNotFoundError(f"not a run dir (no scans.parquet): {run_dir}")
    notes: list[str] = []
    from ..pipeline.result import read_scan_table  # lazy: the row schema imports the grain and rating modules

    scans = read_scan_table(run_dir / "scans.parquet")
    if "scan_id" not in scans.columns:
        raise ValueError(f"scans.parquet in {run_dir} lacks the 'scan_id' column")
    regions_df = _read_parquet(run_dir / "regions.parquet", notes) if regions else pd.DataFrame()
    if clusters is None:
        clusters = _read_parquet(run_dir / "clusters.parquet", notes)
    cfg_path = run_dir / ".hydra" / "config.yaml"
    config_text, config = "", {}
    if cfg_path.exists():
        config_text = cfg_path.read_text(encoding="utf-8", errors="replace")
        try:
            from omegaconf import OmegaConf

            loaded = OmegaConf.to_container(OmegaConf.create(config_text), resolve=False)
            config = loaded if isinstance(loaded, dict) else {}
        except Exception as exc:  # a broken YAML file must not stop the report
            notes.append(f".hydra/config.yaml could not be parsed: {exc}")
    else:
        notes.append(".hydra/config.yaml not found in the run dir")
    ov = run_dir / ".hydra" / "overrides.yaml"
    overrides_text = ov.read_text(encoding="utf-8", errors="replace") if ov.exists() else ""
    return RunData(
        run_dir, scans, regions_df, clusters, config_text, config, overrides_text, tuple(notes)
    )


def scan_kind(row: pd.Series | dict, pixels: np.ndarray | None = None) -> str:
    """``"mask"`` or ``"scan"``: the ``kind`` column, else a binary-pixel test."""
    kind = row.get("kind") if hasattr(row, "get") else None
    if isinstance(kind, str) and kind in ("mask", "scan"):
        return kind
    if pixels is not None:
        step = max(1, int(np.sqrt(pixels.size / 1_000_000)))
        if np.unique(pixels[::step, ::step]).size <= 2:
            return "mask"
    return "scan"


def labels_from_mask(
    mask: np.ndarray, regions: pd.DataFrame, *, min_match: float = 0.9
) -> np.ndarray | None:
    """Label image whose values are the table's ``region_id``, recovered from a binary mask.

    The mask is labelled (8- then 4-connected if that matches better) and each
    component is matched to a table row by its exact bounding box (and area when
    the table has ``area_px``), so ids stay right even when the pipeline dropped
    small components.  Returns ``None`` when fewer than ``min_match`` of the rows
    find their component (the mask does not correspond to the table).

    Returns
    -------
    ndarray, shape (M, N), int32, or None
    """
    if len(regions) == 0:
        return None
    best: tuple[float, np.ndarray | None] = (0.0, None)
    for connectivity in (2, 1):
        structure = ndimage.generate_binary_structure(2, connectivity)
        lab, n = ndimage.label(np.asarray(mask) != 0, structure=structure)
        if n == 0:
            continue
        objs = ndimage.find_objects(lab)
        fresh = pd.DataFrame(
            {
                "label": np.arange(1, n + 1),
                "bbox_rmin": [s[0].start for s in objs],
                "bbox_cmin": [s[1].start for s in objs],
                "bbox_rmax": [s[0].stop - 1 for s in objs],
                "bbox_cmax": [s[1].stop - 1 for s in objs],
                "area_px": np.bincount(lab.ravel(), minlength=n + 1)[1:],
            }
        )
        keys = ["bbox_rmin", "bbox_cmin", "bbox_rmax", "bbox_cmax"]
        if "area_px" in regions.columns:
            keys.append("area_px")
        table = regions[["region_id", *keys]].astype(np.int64)
        merged = fresh.merge(table, on=keys, how="inner").drop_duplicates("label")
        rate = merged["region_id"].nunique() / len(regions)
        if rate > best[0]:
            lut = np.zeros(n + 1, dtype=np.int32)
            lut[merged["label"].to_numpy()] = merged["region_id"].to_numpy(dtype=np.int32)
            best = (rate, lut[lab])
        if rate >= 0.999:
            break
    if best[0] < min_match:
        log.info("mask does not match the region table (%.0f%% of rows found)", 100 * best[0])
        return None
    return best[1]
