"""What the worker draws of a scan: the label image, the exclusion mask, the heatmap, gallery crops.

Everything is returned as file contents (bytes) by run-relative path (:class:`experiments.layout.RunLayout`),
with the facts the report shows beside each crop and the small histograms it plots; nothing is
written here (the runner commits the scan).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..layout import RunLayout
from ..reporting import cluster_facts, render_cluster_crop, render_heatmap
from ..reporting.stats import region_stats
from .artifacts import label_tiff_bytes, mask_png_bytes, png_bytes

__all__ = ["RenderOptions", "render_scan", "report_stats"]


@dataclass(frozen=True)
class RenderOptions:
    """What the stage draws (the pixel-dependent part of ``report``), see ReportConfig."""

    heatmap: bool = True
    score: str = "combined_score"
    cmap: str = "viridis"
    max_side: int = 2048
    crop_side: int = 420
    crop_margin: float = 0.3
    crop_min_margin_px: int = 16
    top_n: int = 50
    size_min_area_px: int = 4
    settings_text: str = ""  # second title line of the heatmaps (the score's settings)


def _heatmap(sid: str, pixels: np.ndarray, labels: np.ndarray, table: pd.DataFrame, clusters: pd.DataFrame,
             score: str, exclude: np.ndarray | None, r: RenderOptions) -> bytes:
    tagged = clusters.assign(tag=clusters["scan_rank"].astype(str)) if len(clusters) else clusters
    rgb = render_heatmap(
        pixels, table, score=score, labels=labels, clusters=tagged, cmap=r.cmap,
        max_side=r.max_side, title=f"{sid}: {score}", settings=r.settings_text, exclusion=exclude,
    )
    return png_bytes(rgb)


def _crops(sid: str, pixels: np.ndarray, labels: np.ndarray, table: pd.DataFrame, clusters: pd.DataFrame,
           score: str, ps: float | None, r: RenderOptions, order_key: str,
           crop_min_score: float) -> tuple[dict[str, bytes], dict[int, dict]]:
    """Gallery crops of the scan's best clusters that can still enter the run's top ``top_n``."""
    files: dict[str, bytes] = {}
    crops: dict[int, dict] = {}
    key = clusters[order_key].to_numpy(dtype=np.float64)
    cand = clusters[key >= crop_min_score].sort_values("scan_rank").head(r.top_n)
    members_of = table.groupby("cluster_id").indices
    for _, c in cand.iterrows():
        cid = int(c["cluster_id"])
        members = table.iloc[members_of.get(cid, [])]
        info = c.to_dict()
        rgb = render_cluster_crop(
            pixels, table, info, labels=labels, score=score, margin=r.crop_margin,
            min_margin_px=r.crop_min_margin_px, side=r.crop_side, cmap=r.cmap,
            pixel_size_um=ps, title=f"{sid} · cluster {cid} (#{int(c['scan_rank'])} in scan)",
        )
        rel = RunLayout.crop_rel(sid, cid)
        files[rel] = png_bytes(rgb)
        facts = [(k, v) for k, v in cluster_facts(info, members, score=score, pixel_size_um=ps)
                 if k not in ("rank", "cluster score", "normalised", "percentile")]
        crops[cid] = {"file": rel, "facts": facts}
    return files, crops


def render_scan(sid: str, pixels: np.ndarray, labels: np.ndarray, table: pd.DataFrame, clusters: pd.DataFrame,
                *, pixel_size_um: float | None, exclude: np.ndarray | None, options: RenderOptions | None,
                order_key: str, crop_min_score: float) -> tuple[dict[str, bytes], dict[int, dict]]:
    """The scan's files by run-relative path, and its gallery crops by cluster id.

    Parameters
    ----------
    sid : str
        The scan id.
    pixels, labels : ndarray, shape (M, N)
        Gray values and the final label image.
    table, clusters : DataFrame
        The scan's scored regions (with ``cluster_id``) and clusters (with ``scan_rank``).
    pixel_size_um : float or None
    exclude : ndarray of bool, shape (M, N), or None
        The excluded pixels (written as ``exclusions/<scan>.png`` and shaded on the heatmap).
    options : RenderOptions or None
        What to draw; None writes the label image (and exclusion mask) only.
    order_key : str
        The cluster column that ranks clusters over the run.
    crop_min_score : float
        Clusters below this ``order_key`` value cannot enter the run's top: no crop.
    """
    files = {RunLayout.labels_rel(sid): label_tiff_bytes(labels, pixel_size_um=pixel_size_um)}
    if exclude is not None:
        files[RunLayout.exclusion_rel(sid)] = mask_png_bytes(exclude)
    r = options
    if r is None:
        return files, {}
    score = r.score if r.score in table.columns else "combined_score"
    if r.heatmap:
        files[RunLayout.heatmap_rel(sid)] = _heatmap(sid, pixels, labels, table, clusters, score, exclude, r)
    crops: dict[int, dict] = {}
    if r.top_n > 0 and len(clusters):
        crop_files, crops = _crops(sid, pixels, labels, table, clusters, score, pixel_size_um, r, order_key,
                                   crop_min_score)
        files.update(crop_files)
    return files, crops


def report_stats(table: pd.DataFrame, *, calibrated: bool, options: RenderOptions | None) -> dict:
    """The scan's small histograms for the report (``reporting.stats.RegionStats.to_dict()``)."""
    size_min = options.size_min_area_px if options else 4
    return region_stats(table, calibrated=calibrated, size_min_area_px=size_min).to_dict()
