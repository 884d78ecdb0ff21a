"""The scorer table: every impurity scorer, found by name (a one-way registry).

A scorer is a pure function ``score(table, cfg, ctx) -> ndarray`` (one float per RegionTable row,
in [0, 1] unless documented otherwise) with a frozen config dataclass beside it, in its own module
named after it (``spatial`` in ``anomaly/scorers/spatial.py``, ``circle`` in ``anomaly/scorers/circle.py``,
``shape`` in ``anomaly/scorers/shape.py``).  This table imports the scorer modules, never the reverse, and
only when a scorer is asked for: listing the names imports nothing, and the Keras-based ``shape``
scorer imports Keras only when it scores.  Plugins add entries with :func:`register_scorer`.

What a scorer may need besides the table comes in one explicit :class:`ScoreContext`
(the label image, a parallel row mapper), never by inspecting signatures.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from data.configs import dataclass_from

__all__ = [
    "ScoreContext",
    "ScorerSpec",
    "available_scorers",
    "get_scorer",
    "make_config",
    "register_scorer",
]


@dataclass(frozen=True)
class ScoreContext:
    """What a scorer may use besides the RegionTable and its config.

    Parameters
    ----------
    labels : ndarray, shape (M, N), integer, optional
        The scan's label image, ``labels == region_id`` on each region (pixel-based scorers).
    map_rows : callable, optional
        ``map_rows(score_rows, n_rows, *, chunk_size) -> ndarray``: runs a row scorer in parallel
        (e.g. ``experiments.pipeline.spatial_ray.ray_map_rows``); None = in process.
    """

    labels: np.ndarray | None = field(default=None, repr=False)
    map_rows: Callable | None = None


def _resolve(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class ScorerSpec:
    """A scorer: its name, where its function and config class live, its output column.

    ``function`` and ``config`` are ``"module:attribute"`` strings (or the objects themselves,
    for plugins), imported on first use.
    """

    name: str
    function: str | Callable
    config: str | type
    column: str
    needs_keras: bool = False
    needs_labels: bool = False

    @property
    def fn(self) -> Callable:
        return _resolve(self.function) if isinstance(self.function, str) else self.function

    @property
    def config_cls(self) -> type:
        return _resolve(self.config) if isinstance(self.config, str) else self.config

    def __call__(self, table, cfg: Any = None, ctx: ScoreContext | None = None) -> np.ndarray:
        cfg = self.config_cls() if cfg is None else cfg
        return self.fn(table, cfg, ctx or ScoreContext())


_TABLE: dict[str, ScorerSpec] = {
    "spatial": ScorerSpec("spatial", "anomaly.scorers.spatial:spatial_score", "anomaly.scorers.spatial:SpatialConfig",
                          "spatial_score"),
    "circle": ScorerSpec("circle", "anomaly.scorers.circle:circle_score", "anomaly.scorers.circle:CircleConfig",
                         "circle_score"),
    "shape": ScorerSpec("shape", "anomaly.scorers.shape:shape_score", "anomaly.scorers.shape:ShapeAEConfig",
                        "shape_score", needs_keras=True, needs_labels=True),
}


def register_scorer(spec: ScorerSpec, *, replace: bool = False) -> ScorerSpec:
    """Add a scorer (plugins). Raises ValueError when the name is taken (unless ``replace``)."""
    if not isinstance(spec, ScorerSpec):
        raise TypeError(f"register_scorer expects a ScorerSpec, got {type(spec).__name__}")
    if spec.name in _TABLE and not replace and _TABLE[spec.name] != spec:
        raise ValueError(f"scorer {spec.name!r} is already registered")
    _TABLE[spec.name] = spec
    return spec


def get_scorer(name: str) -> ScorerSpec:
    """Look up a scorer by name; KeyError listing the known names."""
    try:
        return _TABLE[name]
    except KeyError:
        raise KeyError(f"unknown scorer {name!r}; available: {sorted(_TABLE)}") from None


def available_scorers() -> list[str]:
    """Names of all registered scorers (imports none of them)."""
    return sorted(_TABLE)


def make_config(spec: ScorerSpec, options: Mapping[str, Any] | None) -> Any:
    """Build ``spec.config_cls`` from a mapping, rejecting unknown keys with a clear message (ValueError)."""
    return dataclass_from(spec.config_cls, options, where=f"scorer {spec.name!r}")
