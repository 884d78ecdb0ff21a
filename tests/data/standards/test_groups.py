"""Group assignment and the ANOVA / Tukey tables against scipy on the same values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from data.standards import (
    UNGROUPED,
    GroupSpecError,
    anova_table,
    assign_groups,
    group_summary,
    tukey_table,
)


def test_folder_groups():
    assert assign_groups(["lot1/a", "lot1/sub/b", "lot2/c", "top"], None, None) == ["lot1", "lot1", "lot2", "top"]


def test_csv_groups(tmp_path):
    scan = tmp_path / "scans" / "x1.png"
    scan.parent.mkdir()
    scan.write_bytes(b"")
    spec = tmp_path / "groups.csv"
    spec.write_text(f"path,group\n{scan},heat A\nx2,heat B\nsub/x3.tif,heat B\n", encoding="utf-8")
    ids = ["x1", "x2", "sub/x3", "x4"]
    paths = [str(scan), "/elsewhere/x2.png", "/data/sub/x3.tif", "/data/x4.png"]
    assert assign_groups(ids, paths, spec) == ["heat A", "heat B", "heat B", UNGROUPED]


def test_bad_specs(tmp_path):
    with pytest.raises(GroupSpecError, match="not found"):
        assign_groups(["a"], None, tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("file,lot\na,1\n")
    with pytest.raises(GroupSpecError, match="path,group"):
        assign_groups(["a"], None, bad)
    twice = tmp_path / "twice.csv"
    twice.write_text("path,group\na,1\na,2\n")
    with pytest.raises(GroupSpecError, match="two groups"):
        assign_groups(["a"], None, twice)


def test_anova_and_tukey_equal_scipy():
    rng = np.random.default_rng(3)
    a, b, c = rng.normal(1.0, 0.2, 5), rng.normal(1.3, 0.2, 6), rng.normal(1.0, 0.3, 4)
    values = np.concatenate([a, b, c, [7.0]])
    groups = ["a"] * 5 + ["b"] * 6 + ["c"] * 4 + ["single"]
    an = anova_table(values, groups, metric="m").iloc[0]
    ref = stats.f_oneway(a, b, c)
    assert an.p_value == ref.pvalue and an.F == ref.statistic
    assert an.groups_tested == "a;b;c" and an.df_between == 2 and an.df_within == 12
    tk = tukey_table(values, groups, metric="m")
    ref_t = stats.tukey_hsd(a, b, c)
    got = {(r.group_a, r.group_b): r.p_value for r in tk.itertuples()}
    assert got == {("a", "b"): ref_t.pvalue[0, 1], ("a", "c"): ref_t.pvalue[0, 2], ("b", "c"): ref_t.pvalue[1, 2]}
    summ = group_summary(values, groups, metric="m").set_index("group")
    assert summ.loc["single", "note"] == "1 scan: no test statistic" and math.isnan(summ.loc["single", "sd"])
    assert summ.loc["a", "mean"] == pytest.approx(a.mean()) and summ.loc["a", "n"] == 5


def test_no_test_without_two_groups_of_two():
    an = anova_table(np.array([1.0, 2.0, 3.0]), ["a", "a", "b"]).iloc[0]
    assert math.isnan(an.p_value) and "no test" in an.note
    assert tukey_table(np.array([1.0, 2.0, 3.0]), ["a", "a", "b"]).empty
    same = anova_table(np.array([1.0, 1.0, 1.0, 1.0]), ["a", "a", "b", "b"]).iloc[0]
    assert math.isnan(same.p_value) and "equal" in same.note
