"""Anomaly scorers on RegionTables: spatial, shape, combine, area (market clustering), rank.

Importing this package does not import TensorFlow or Keras.
"""

from ._registry import ScorerSpec, available_scorers, get_scorer, make_config, register_scorer

__all__ = ["ScorerSpec", "available_scorers", "get_scorer", "make_config", "register_scorer"]
