"""Anomaly scorers on RegionTables: spatial, shape, combine, area (market clustering), rank.

Importing this package does not import TensorFlow or Keras (the shape autoencoder
imports Keras only when it scores).
"""

from .scorers import ScoreContext, ScorerSpec, available_scorers, get_scorer, make_config, register_scorer
from .area import ORDER_KEYS, MarketConfig, market_clustering
from .combine import CombineConfig, combine_scores
from .rank import rank_clusters
from .scoring import score_regions
from .circle import CircleConfig, circle_scores
from .spatial import SpatialConfig, weighted_kth_nn_scores

__all__ = [
    "ORDER_KEYS",
    "CircleConfig",
    "CombineConfig",
    "MarketConfig",
    "ScoreContext",
    "ScorerSpec",
    "SpatialConfig",
    "available_scorers",
    "circle_scores",
    "combine_scores",
    "get_scorer",
    "make_config",
    "market_clustering",
    "rank_clusters",
    "register_scorer",
    "score_regions",
    "weighted_kth_nn_scores",
]
