"""Sample groups of scans and their comparison: per-group summaries, one-way ANOVA, Tukey HSD.

Groups come from a spec (``data.groups``):

- ``"folder"`` (or ``None``/empty): the first folder level of the scan id (``lot3/sample-07`` ->
  ``lot3``); a scan at the top level is its own group named by its id;
- a path to a CSV file with columns ``path,group``: a row matches a scan when its ``path`` equals the
  scan's path (as written, or both resolved to absolute paths), its scan id, or the scan id with an
  extension; scans no row matches get :data:`UNGROUPED`.

The statistics are :func:`scipy.stats.f_oneway` and :func:`scipy.stats.tukey_hsd` on the per-scan
values of the groups with at least two finite values; a group with a single scan gets a note in the
summary and takes part in no test.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from data.errors import QuantmetError

__all__ = ["UNGROUPED", "GroupSpecError", "anova_table", "assign_groups", "group_summary", "tukey_table"]

#: Group of a scan that a CSV spec does not list.
UNGROUPED = "(ungrouped)"

ONE_SCAN_NOTE = "1 scan: no test statistic"


class GroupSpecError(QuantmetError, ValueError):
    """A group spec (CSV file) is missing, malformed or contradicts itself."""


def _folder_group(scan_id: str) -> str:
    # scan ids are POSIX paths relative to the input root (data.inputs): "/" is the only separator
    # ("\\" is a character of a file name there)
    parts = PurePosixPath(str(scan_id)).parts
    return parts[0] if len(parts) > 1 else str(scan_id)


def _read_spec(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise GroupSpecError(f"group spec not found: {path} (expected 'folder' or a CSV file path,group)")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        cols = [c.strip().lower() for c in (reader.fieldnames or [])]
        if "path" not in cols or "group" not in cols:
            raise GroupSpecError(f"{path}: needs the header 'path,group', got {reader.fieldnames}")
        key = {c.strip().lower(): c for c in reader.fieldnames or []}
        out: dict[str, str] = {}
        for i, row in enumerate(reader, start=2):
            p = (row.get(key["path"]) or "").strip()
            g = (row.get(key["group"]) or "").strip()
            if not p:
                continue
            if not g:
                raise GroupSpecError(f"{path}:{i}: empty group for {p!r}")
            if p in out and out[p] != g:
                raise GroupSpecError(f"{path}:{i}: {p!r} is in two groups ({out[p]!r}, {g!r})")
            out[p] = g
    if not out:
        raise GroupSpecError(f"{path}: no rows")
    return out


def assign_groups(
    scan_ids: Sequence[str], paths: Sequence[str | None] | None, spec: str | Path | None
) -> list[str]:
    """Group name of every scan.

    Parameters
    ----------
    scan_ids : sequence of str
    paths : sequence of str or None, optional
        The scans' file paths (``scans.parquet`` column ``path``), same length as ``scan_ids``.
    spec : "folder", None or path to a CSV ``path,group``

    Returns
    -------
    list of str

    Examples
    --------
    >>> assign_groups(["lot1/a", "lot1/b", "lot2/c", "d"], None, "folder")
    ['lot1', 'lot1', 'lot2', 'd']
    """
    ids = [str(s) for s in scan_ids]
    if paths is not None and len(paths) != len(ids):
        raise GroupSpecError(f"{len(paths)} paths for {len(ids)} scan ids")
    if spec is None or str(spec).strip() in ("", "folder"):
        return [_folder_group(s) for s in ids]
    table = _read_spec(Path(str(spec)).expanduser())
    resolved: dict[str, str] = {}
    for p, g in table.items():
        try:
            resolved[str(Path(p).expanduser().resolve())] = g
        except (OSError, RuntimeError):
            pass
    out = []
    for i, sid in enumerate(ids):
        p = None if paths is None else paths[i]
        g = None
        if p:
            g = table.get(str(p))
            if g is None:
                try:
                    g = resolved.get(str(Path(str(p)).expanduser().resolve()))
                except (OSError, RuntimeError):
                    g = None
        if g is None:
            g = table.get(sid)
        if g is None:
            stem_matches = {v for k, v in table.items() if str(PurePosixPath(k.replace("\\", "/")).with_suffix("")) == sid}
            if len(stem_matches) == 1:
                g = stem_matches.pop()
        out.append(g if g is not None else UNGROUPED)
    return out


def _finite_by_group(values: np.ndarray, groups: Sequence[str]) -> dict[str, np.ndarray]:
    v = np.asarray(values, dtype=np.float64)
    g = np.asarray([str(x) for x in groups], dtype=object)
    if v.shape[0] != g.shape[0]:
        raise ValueError(f"{v.shape[0]} values for {g.shape[0]} groups")
    out: dict[str, np.ndarray] = {}
    for name in sorted(set(g.tolist())):
        x = v[g == name]
        out[name] = x[np.isfinite(x)]
    return out


def group_summary(values: np.ndarray, groups: Sequence[str], *, metric: str = "") -> pd.DataFrame:
    """Per-group n, mean, sd, min, median, max and 95 % CI half-width (t) of one per-scan metric.

    Returns
    -------
    DataFrame
        Columns ``metric, group, n, mean, sd, ci95, min, median, max, note``.
    """
    from scipy import stats  # here: scipy.stats costs ~0.5 s to import, and a run assigns groups first

    rows = []
    for name, x in _finite_by_group(values, groups).items():
        n = int(x.size)
        note = ""
        if n == 0:
            note = "no value"
        elif n == 1:
            note = ONE_SCAN_NOTE
        sd = float(x.std(ddof=1)) if n > 1 else math.nan
        ci = float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)) if n > 1 else math.nan
        rows.append(dict(metric=metric, group=name, n=n,
                         mean=float(x.mean()) if n else math.nan, sd=sd, ci95=ci,
                         min=float(x.min()) if n else math.nan, median=float(np.median(x)) if n else math.nan,
                         max=float(x.max()) if n else math.nan, note=note))
    return pd.DataFrame(rows, columns=["metric", "group", "n", "mean", "sd", "ci95", "min", "median", "max", "note"])


def _testable(values: np.ndarray, groups: Sequence[str]) -> tuple[list[str], list[np.ndarray], str]:
    by = _finite_by_group(values, groups)
    names = [k for k, x in by.items() if x.size >= 2]
    samples = [by[k] for k in names]
    note = ""
    if len(names) < 2:
        note = f"{len(names)} group(s) with >= 2 scans: no test"
    elif all(np.ptp(x) == 0 for x in samples) and len({float(x[0]) for x in samples}) == 1:
        note = "all values equal: no test"
    elif all(np.ptp(x) == 0 for x in samples):
        note = "no variance within groups: no test"
    return names, samples, note


def anova_table(values: np.ndarray, groups: Sequence[str], *, metric: str = "") -> pd.DataFrame:
    """One-way ANOVA (:func:`scipy.stats.f_oneway`) over the groups with >= 2 finite values.

    Returns
    -------
    DataFrame, one row
        ``metric, groups_tested, groups_excluded`` (fewer than 2 values), ``n_scans, df_between,
        df_within, F, p_value, note``.
    """
    names, samples, note = _testable(values, groups)
    excluded = [k for k in _finite_by_group(values, groups) if k not in names]
    n_tot = int(sum(x.size for x in samples))
    row = dict(metric=metric, groups_tested=";".join(names), groups_excluded=";".join(excluded), n_scans=n_tot,
               df_between=len(names) - 1 if names else 0, df_within=n_tot - len(names),
               F=math.nan, p_value=math.nan, note=note)
    if not note:
        from scipy import stats

        res = stats.f_oneway(*samples)
        row.update(F=float(res.statistic), p_value=float(res.pvalue))
    return pd.DataFrame([row])


def tukey_table(values: np.ndarray, groups: Sequence[str], *, metric: str = "") -> pd.DataFrame:
    """Tukey HSD (:func:`scipy.stats.tukey_hsd`) for every pair of groups with >= 2 finite values.

    Returns
    -------
    DataFrame
        ``metric, group_a, group_b, mean_diff`` (a - b), ``p_value, ci_low, ci_high`` (95 %).
    """
    cols = ["metric", "group_a", "group_b", "mean_diff", "p_value", "ci_low", "ci_high"]
    names, samples, note = _testable(values, groups)
    if note:
        return pd.DataFrame(columns=cols)
    from scipy import stats

    res = stats.tukey_hsd(*samples)
    ci = res.confidence_interval(confidence_level=0.95)
    rows = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            rows.append(dict(metric=metric, group_a=names[i], group_b=names[j],
                             mean_diff=float(samples[i].mean() - samples[j].mean()),
                             p_value=float(res.pvalue[i, j]), ci_low=float(ci.low[i, j]), ci_high=float(ci.high[i, j])))
    return pd.DataFrame(rows, columns=cols)
