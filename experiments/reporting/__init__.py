"""Expert-facing outputs of a run: score heatmaps, ranked cluster gallery, static HTML report.

Importing this package does not import TensorFlow or Keras; matplotlib is used
only through its Agg canvas (no pyplot, nothing left open).  The names below are
imported on first use, so ``import experiments.reporting.config`` (or any light
submodule) does not pay for matplotlib and SciPy.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "score_settings": "_imaging",
    "ReportConfig": "config",
    "is_phase_run": "nouns",
    "cluster_facts": "gallery",
    "object_noun": "nouns",
    "render_cluster_crop": "gallery",
    "CLUSTER_COLOUR": "heatmaps",
    "heatmap_preview": "heatmaps",
    "render_heatmap": "heatmaps",
    "save_heatmap": "heatmaps",
    "write_png": "heatmaps",
    "ReportData": "html",
    "write_report": "html",
    "plot_score_counts": "plots",
    "plot_size_counts": "plots",
    "RegionStats": "stats",
    "region_stats": "stats",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
