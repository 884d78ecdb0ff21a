"""Anomaly scorers on RegionTables: spatial, shape, combine, area (market clustering), rank.

Importing this package does not import TensorFlow or Keras (the shape autoencoder
imports Keras only when it scores).
"""

from .scorers import ScoreContext, ScorerSpec, available_scorers, get_scorer, make_config, register_scorer
from .market import ORDER_KEYS, MarketConfig, market_clustering
from .combine import CombineConfig, combine_scores
from .rank import rank_clusters
from .reasons import FEATURE_COLUMNS, cluster_features, cluster_reasons
from .rerank import RerankConfig, RerankModel, apply_reranker, load_reranker, train_reranker
from .scoring import score_regions
from .scorers.circle import CircleConfig, circle_scores
from .scorers.spatial import SpatialConfig, weighted_kth_nn_scores

__all__ = [
    "FEATURE_COLUMNS",
    "ORDER_KEYS",
    "CircleConfig",
    "CombineConfig",
    "MarketConfig",
    "RerankConfig",
    "RerankModel",
    "ScoreContext",
    "ScorerSpec",
    "SpatialConfig",
    "apply_reranker",
    "available_scorers",
    "circle_scores",
    "cluster_features",
    "cluster_reasons",
    "combine_scores",
    "get_scorer",
    "load_reranker",
    "make_config",
    "market_clustering",
    "rank_clusters",
    "register_scorer",
    "score_regions",
    "train_reranker",
    "weighted_kth_nn_scores",
]
