"""Standard ratings of inclusions: ASTM E45 / ISO 4967 Method A worst fields, ASTM E1245 stereology,
sample groups with one-way ANOVA and Tukey HSD.

Pure functions on RegionTables and arrays; importing this package does not import TensorFlow/Keras.
"""

from __future__ import annotations

import importlib
from typing import Any

# Names are imported on first use: the pipeline reads the column lists without paying for SciPy's
# statistics (imported by the group comparison) at start-up.
_WHERE = {
    "E1245_MEASURES": "stereology",
    "FEATURE_COLUMNS": "inclusions",
    "FIELD_STAT_COLUMNS": "stereology",
    "FieldGrid": "fields",
    "GroupSpecError": "groups",
    "INCLUSION_TYPES": "config",
    "InclusionTyping": "inclusions",
    "RATING_FIELD_COLUMNS": "ratings",
    "RATING_SCAN_COLUMNS": "ratings",
    "RatingConfig": "config",
    "RatingError": "config",
    "SERIES": "config",
    "SEVERITY_LEVELS": "config",
    "ScanRating": "ratings",
    "UNGROUPED": "groups",
    "anova_table": "groups",
    "assign_groups": "groups",
    "classify_inclusions": "inclusions",
    "direction_vector": "inclusions",
    "estimate_rolling_direction": "inclusions",
    "field_grid": "fields",
    "field_measures": "stereology",
    "group_summary": "groups",
    "rate_scan": "ratings",
    "region_axis_deg": "inclusions",
    "severity": "ratings",
    "summarize": "stereology",
    "tukey_table": "groups",
    "unrated_scan_values": "ratings",
    "worst_column": "ratings",
}

__all__ = [
    "E1245_MEASURES",
    "FEATURE_COLUMNS",
    "FIELD_STAT_COLUMNS",
    "INCLUSION_TYPES",
    "RATING_FIELD_COLUMNS",
    "RATING_SCAN_COLUMNS",
    "SERIES",
    "SEVERITY_LEVELS",
    "UNGROUPED",
    "FieldGrid",
    "GroupSpecError",
    "InclusionTyping",
    "RatingConfig",
    "RatingError",
    "ScanRating",
    "anova_table",
    "assign_groups",
    "classify_inclusions",
    "direction_vector",
    "estimate_rolling_direction",
    "field_grid",
    "field_measures",
    "group_summary",
    "rate_scan",
    "region_axis_deg",
    "severity",
    "summarize",
    "tukey_table",
    "unrated_scan_values",
    "worst_column",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
