"""Combine per-impurity scores (spatial, shape, ...) into one score in [0, 1].

The paper multiplies the spatial and the shape score; ``rank_mean`` and
``max`` are alternatives that do not let one near-zero score veto the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .scorers import get_scorer

if TYPE_CHECKING:  # annotations only (the module imports them where it uses them)
    import pandas as pd

__all__ = ["COMBINE_METHODS", "CombineConfig", "combine_scores", "combine_table"]

COMBINE_METHODS = ("product", "rank_mean", "max")


@dataclass(frozen=True)
class CombineConfig:
    """How ``combined_score`` is made.

    method : {'product', 'rank_mean', 'max'}
        See :func:`combine_scores`.
    inputs : tuple of str
        Registered scorer names; their columns (``ScorerSpec.column``, e.g.
        ``spatial_score``) are combined.
    """

    method: str = "product"
    inputs: tuple[str, ...] = ("spatial", "circle")

    def __post_init__(self) -> None:
        _check_method(self.method)
        inputs = tuple(self.inputs)  # accept lists (e.g. from a config file)
        if not inputs or not all(isinstance(name, str) and name for name in inputs):
            raise ValueError(
                f"inputs must be a non-empty sequence of scorer names, got {self.inputs!r}"
            )
        if len(set(inputs)) != len(inputs):
            raise ValueError(f"inputs contain duplicates: {inputs}")
        object.__setattr__(self, "inputs", inputs)


def _check_method(method: str) -> None:
    if method not in COMBINE_METHODS:
        raise ValueError(f"method must be one of {COMBINE_METHODS}, got {method!r}")


def combine_scores(columns: Mapping[str, np.ndarray], *, method: str = "product") -> np.ndarray:
    """Combine score columns row by row, then min-max normalise to [0, 1].

    Parameters
    ----------
    columns : mapping of str to ndarray, each shape (N,)
        Finite scores, one array per input (at least one), all of length N.
    method : {'product', 'rank_mean', 'max'}
        ``'product'``: the paper's product of the columns.
        ``'rank_mean'``: mean over columns of each column's ranks (ties get
        their average rank) scaled to [0, 1] by ``(rank - 1) / (N - 1)``.
        ``'max'``: the row-wise maximum.

    Returns
    -------
    ndarray, shape (N,)
        ``(c - min) / (max - min)``; when all rows are equal (including
        N == 1) there is nothing to rank and the result is all zeros.

    Examples
    --------
    >>> combine_scores({"a": np.array([0.5, 1.0, 0.2]), "b": np.array([1.0, 0.5, 0.0])})
    array([1., 1., 0.])
    """
    _check_method(method)
    if not isinstance(columns, Mapping) or len(columns) == 0:
        raise ValueError("columns must be a non-empty mapping of name -> 1-D score array")
    arrays = []
    n = None
    for name, col in columns.items():
        c = np.asarray(col, dtype=np.float64)
        if c.ndim != 1:
            raise ValueError(f"column {name!r} must be 1-D, got shape {c.shape}")
        if n is None:
            n = c.shape[0]
        elif c.shape[0] != n:
            raise ValueError(f"column {name!r} has {c.shape[0]} rows, expected {n}")
        if not np.all(np.isfinite(c)):
            raise ValueError(f"column {name!r} contains NaN or infinite values")
        arrays.append(c)
    stack = np.stack(arrays)  # (C, N)
    if n == 0:
        return np.zeros(0)
    if method == "product":
        combined = np.prod(stack, axis=0)
    elif method == "max":
        combined = stack.max(axis=0)
    else:
        from scipy.stats import rankdata  # lazy: scipy.stats costs ~0.3 s to import

        ranks = rankdata(stack, axis=1)  # average ranks of ties, 1..N
        combined = ((ranks - 1.0) / max(n - 1, 1)).mean(axis=0)
    lo, hi = combined.min(), combined.max()
    return (combined - lo) / (hi - lo) if hi > lo else np.zeros(n)


def combine_table(table: pd.DataFrame, cfg: CombineConfig | None = None) -> np.ndarray:
    """``combine_scores`` of the score columns of ``cfg.inputs`` in a scored RegionTable."""
    cfg = CombineConfig() if cfg is None else cfg
    columns = {}
    for name in cfg.inputs:
        column = get_scorer(name).column
        if column not in table.columns:
            raise ValueError(f"table has no column {column!r} (scorer {name!r}); score it first")
        columns[column] = table[column].to_numpy(dtype=np.float64)
    return combine_scores(columns, method=cfg.method)
