"""Score a RegionTable with the configured scorers and combine them (pure, no I/O)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .combine import combine_scores
from .scorers import ScoreContext, get_scorer, make_config

__all__ = ["score_regions", "configured_scorers"]

log = logging.getLogger(__name__)


def configured_scorers(scorers: Mapping[str, Mapping[str, Any] | None]) -> dict[str, dict]:
    """The enabled scorers of a config mapping: ``None`` / ``false`` entries are switched off.

    >>> configured_scorers({"spatial": {"k": 5}, "shape": None})
    {'spatial': {'k': 5}}
    """
    out = {}
    for name, options in dict(scorers or {}).items():
        if options is None or options is False:
            continue
        if options is True:
            options = {}
        if not isinstance(options, Mapping):
            raise ValueError(f"anomaly.scorers.{name}: expected a mapping of options or null, got {options!r}")
        out[str(name)] = dict(options)
    return out


def score_regions(
    table: pd.DataFrame,
    *,
    scorers: Mapping[str, Mapping[str, Any] | None],
    combine_inputs: Sequence[str] = ("spatial", "circle"),
    combine_method: str = "product",
    context: ScoreContext | None = None,
) -> pd.DataFrame:
    """Return a copy of ``table`` with one ``<name>_score`` column per scorer plus ``combined_score``.

    Parameters
    ----------
    table : DataFrame
        A RegionTable.
    scorers : mapping
        Scorer name -> options of its config dataclass (``anomaly.scorers.available_scorers()``);
        a ``None`` entry is switched off.
    combine_inputs : sequence of str
        Scorer names whose columns make ``combined_score``.
    combine_method : str
        See :func:`anomaly.combine.combine_scores`.
    context : ScoreContext, optional
        The label image (pixel-based scorers such as ``shape``) and a parallel row mapper.
    """
    ctx = context or ScoreContext()
    enabled = configured_scorers(scorers)
    missing = [n for n in combine_inputs if n not in enabled]
    if missing:
        raise ValueError(f"combine inputs {missing} are not among the configured scorers {list(enabled)}")
    out = table.copy()
    for name, options in enabled.items():
        spec = get_scorer(name)
        values = np.asarray(spec(out, make_config(spec, options), ctx), dtype=np.float64)
        if values.shape != (len(out),):
            raise RuntimeError(f"scorer {name!r} returned shape {values.shape} for {len(out)} rows")
        out[spec.column] = values
    columns = {n: out[get_scorer(n).column].to_numpy() for n in combine_inputs}
    out["combined_score"] = combine_scores(columns, method=combine_method) if len(out) else np.zeros(0)
    return out
