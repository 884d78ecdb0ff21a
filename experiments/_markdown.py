"""GitHub Markdown tables for the result files of benchmarks and evaluations (no extra dependency)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["markdown_table"]


def _fmt(v, floatfmt: str) -> str:
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        return format(float(v), floatfmt) if np.isfinite(v) else str(v)
    return str(v)


def markdown_table(
    rows: pd.DataFrame | Sequence[dict], columns: Sequence[str] | None = None, *, floatfmt: str = ".4g"
) -> str:
    """A Markdown table of a DataFrame or of a list of dicts (missing keys are blank).

    >>> print(markdown_table([{"a": 1, "b": 0.123456}]))
    | a | b |
    |---|---|
    | 1 | 0.1235 |
    """
    records = rows.to_dict(orient="records") if isinstance(rows, pd.DataFrame) else list(rows)
    if columns is None:
        columns = list(rows.columns) if isinstance(rows, pd.DataFrame) else list(
            dict.fromkeys(c for r in records for c in r))
    lines = ["| " + " | ".join(map(str, columns)) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_fmt(r.get(c), floatfmt) for c in columns) + " |" for r in records]
    return "\n".join(lines)
