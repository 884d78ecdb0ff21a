"""Registry of impurity scorers, found by name.

A scorer is a pure function ``score(table, cfg) -> ndarray`` (one float per
RegionTable row, in [0, 1] unless documented otherwise) with a frozen config
dataclass beside it.  Register it with :func:`register_scorer`; the pipeline,
the configs (``conf/anomaly/scorers``) and the tests look it up by name, so a
new scorer is wired and tested by registering it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["ScorerSpec", "register_scorer", "get_scorer", "available_scorers", "make_config"]

ScoreFn = Callable[[pd.DataFrame, Any], np.ndarray]


@dataclass(frozen=True)
class ScorerSpec:
    """A registered scorer: its name, function, config class and output column."""

    name: str
    fn: ScoreFn
    config_cls: type
    column: str
    needs_keras: bool = False

    def __call__(self, table: pd.DataFrame, cfg: Any = None, **kwargs: Any) -> np.ndarray:
        cfg = self.config_cls() if cfg is None else cfg
        return self.fn(table, cfg, **kwargs)


_SCORERS: dict[str, ScorerSpec] = {}


def register_scorer(name: str, *, config_cls: type, column: str | None = None, needs_keras: bool = False):
    """Decorator registering ``fn(table, cfg) -> ndarray`` under ``name``."""

    def deco(fn: ScoreFn) -> ScoreFn:
        if name in _SCORERS and _SCORERS[name].fn is not fn:
            raise ValueError(f"scorer {name!r} registered twice")
        _SCORERS[name] = ScorerSpec(name, fn, config_cls, column or f"{name}_score", needs_keras)
        return fn

    return deco


def get_scorer(name: str) -> ScorerSpec:
    """Look up a scorer by name; raises KeyError listing the known names."""
    _load_builtin()
    try:
        return _SCORERS[name]
    except KeyError:
        raise KeyError(f"unknown scorer {name!r}; available: {sorted(_SCORERS)}") from None


def available_scorers() -> list[str]:
    """Names of all registered scorers."""
    _load_builtin()
    return sorted(_SCORERS)


def make_config(spec: ScorerSpec, options: Mapping[str, Any] | None) -> Any:
    """Build ``spec.config_cls`` from a mapping, rejecting unknown keys with a clear message."""
    options = dict(options or {})
    known = {f.name for f in dataclasses.fields(spec.config_cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for scorer {spec.name!r}; known: {sorted(known)}")
    return spec.config_cls(**options)


def _load_builtin() -> None:
    # Importing the modules registers their scorers (keeps `import anomaly` light).
    from . import shape, spatial  # noqa: F401
    try:
        from . import shape_ae  # noqa: F401  (registers lazily; Keras imported only when scoring)
    except ImportError:
        pass
