"""Anomaly scorers on RegionTables: spatial, shape, combine, area (market clustering), rank.

Importing this package does not import TensorFlow or Keras (the shape autoencoder imports Keras
only when it scores), nor pandas and SciPy until a name is used: the names below are imported from
their submodule on first access (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from data.lazy import lazy_names

if TYPE_CHECKING:  # the same names, for type checkers and IDEs
    from .market import ORDER_KEYS, MarketConfig, market_clustering
    from .scorers.circle import CircleConfig, circle_scores
    from .combine import CombineConfig, combine_scores
    from .rank import rank_clusters
    from .reasons import FEATURE_COLUMNS, cluster_features, cluster_reasons
    from .rerank import RerankConfig, RerankModel, apply_reranker, load_reranker, train_reranker
    from .scorers import ScoreContext, ScorerSpec, available_scorers, get_scorer, make_config, register_scorer
    from .scoring import score_regions
    from .scorers.spatial import SpatialConfig, weighted_kth_nn_scores

# public name -> submodule that defines it (imported on first access)
_WHERE = {
    **dict.fromkeys(["ScoreContext", "ScorerSpec", "available_scorers", "get_scorer", "make_config",
                     "register_scorer"], "scorers"),
    **dict.fromkeys(["ORDER_KEYS", "MarketConfig", "market_clustering"], "market"),
    **dict.fromkeys(["CombineConfig", "combine_scores"], "combine"),
    "rank_clusters": "rank",
    **dict.fromkeys(["FEATURE_COLUMNS", "cluster_features", "cluster_reasons"], "reasons"),
    **dict.fromkeys(["RerankConfig", "RerankModel", "apply_reranker", "load_reranker", "train_reranker"], "rerank"),
    "score_regions": "scoring",
    **dict.fromkeys(["CircleConfig", "circle_scores"], "scorers.circle"),
    **dict.fromkeys(["SpatialConfig", "weighted_kth_nn_scores"], "scorers.spatial"),
}

__all__ = sorted(_WHERE)


__getattr__, __dir__ = lazy_names(__name__, globals(), _WHERE)
