"""Score a RegionTable with the configured scorers and combine them (pure, no I/O)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._registry import get_scorer, make_config

__all__ = ["score_regions"]

log = logging.getLogger(__name__)


def score_regions(
    table: pd.DataFrame,
    *,
    scorers: Mapping[str, Mapping[str, Any] | None],
    combine_inputs: Sequence[str] = ("spatial", "circle"),
    combine_method: str = "product",
    labels: np.ndarray | None = None,
    extra: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Return a copy of ``table`` with one ``<name>_score`` column per scorer plus ``combined_score``.

    Parameters
    ----------
    table : DataFrame
        A RegionTable.
    scorers : mapping
        Scorer name -> options of its config dataclass (see ``anomaly.available_scorers()``).
    combine_inputs : sequence of str
        Scorer names whose columns make ``combined_score``.
    combine_method : str
        See :func:`anomaly.combine.combine_scores`.
    labels : ndarray, optional
        The label image whose pixel values are ``region_id``; passed to scorers
        that need pixels (their function takes a ``labels`` keyword).
    extra : mapping, optional
        Further keyword arguments offered to scorers that accept them (for
        example ``map_rows`` for a parallel spatial score).
    """
    from .combine import combine_scores

    out = table.copy()
    offered = {"labels": labels, **dict(extra or {})}
    for name, options in scorers.items():
        spec = get_scorer(name)
        cfg = make_config(spec, options)
        params = inspect.signature(spec.fn).parameters
        kwargs = {k: v for k, v in offered.items() if k in params and v is not None}
        values = np.asarray(spec.fn(out, cfg, **kwargs), dtype=np.float64)
        if values.shape != (len(out),):
            raise RuntimeError(f"scorer {name!r} returned shape {values.shape} for {len(out)} rows")
        out[spec.column] = values
    missing = [n for n in combine_inputs if n not in scorers]
    if missing:
        raise ValueError(f"combine inputs {missing} are not among the configured scorers {list(scorers)}")
    columns = {n: out[get_scorer(n).column].to_numpy() for n in combine_inputs}
    out["combined_score"] = combine_scores(columns, method=combine_method) if len(out) else np.zeros(0)
    return out
