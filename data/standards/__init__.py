"""Standard ratings of inclusions: ASTM E45 / ISO 4967 Method A worst fields, ASTM E1245 stereology,
sample groups with one-way ANOVA and Tukey HSD.

Pure functions on RegionTables and arrays; importing this package does not import TensorFlow/Keras.
"""

from .config import INCLUSION_TYPES, SERIES, SEVERITY_LEVELS, RatingConfig, RatingError
from .fields import FieldGrid, field_grid
from .groups import (
    UNGROUPED,
    GroupSpecError,
    anova_table,
    assign_groups,
    group_summary,
    tukey_table,
)
from .inclusions import (
    FEATURE_COLUMNS,
    InclusionTyping,
    classify_inclusions,
    direction_vector,
    estimate_rolling_direction,
    region_axis_deg,
)
from .ratings import (
    RATING_FIELD_COLUMNS,
    RATING_SCAN_COLUMNS,
    ScanRating,
    rate_scan,
    severity,
    unrated_scan_values,
    worst_column,
)
from .stereology import E1245_MEASURES, FIELD_STAT_COLUMNS, field_measures, summarize

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
