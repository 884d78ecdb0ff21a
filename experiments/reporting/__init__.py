"""Expert-facing outputs of a run: score heatmaps, ranked cluster gallery, static HTML report.

Importing this package does not import TensorFlow or Keras; matplotlib is used
only through its Agg canvas (no pyplot, nothing left open).
"""

from ._imaging import score_settings
from .config import ReportConfig
from .gallery import cluster_facts, render_cluster_crop
from .heatmaps import (
    CLUSTER_COLOUR,
    heatmap_preview,
    render_heatmap,
    save_heatmap,
    write_png,
)
from .html import ReportData, write_report
from .plots import fit_lognormal, plot_score_counts, plot_score_histograms, plot_size_counts, plot_size_distribution
from .stats import RegionStats, region_stats

__all__ = [
    "CLUSTER_COLOUR",
    "RegionStats",
    "ReportConfig",
    "ReportData",
    "cluster_facts",
    "fit_lognormal",
    "heatmap_preview",
    "plot_score_counts",
    "plot_score_histograms",
    "plot_size_counts",
    "plot_size_distribution",
    "render_cluster_crop",
    "region_stats",
    "render_heatmap",
    "save_heatmap",
    "score_settings",
    "write_png",
    "write_report",
]
