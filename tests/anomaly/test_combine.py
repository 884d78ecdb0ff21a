"""combine_scores: the paper's product and the alternatives, normalised to [0, 1]."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from anomaly.combine import COMBINE_METHODS, CombineConfig, combine_scores, combine_table

S = np.array([0.0, 0.2, 0.5, 1.0, 0.8])
C = np.array([0.9, 0.5, 0.4, 0.1, 0.75])


def test_product_is_the_paper_product_min_max_normalised():
    p = S * C  # [0, .1, .2, .1, .6]
    np.testing.assert_allclose(combine_scores({"s": S, "c": C}), p / p.max())


def test_max():
    m = np.maximum(S, C)  # [.9, .5, .5, 1, .8]
    np.testing.assert_allclose(combine_scores({"s": S, "c": C}, method="max"), (m - 0.5) / 0.5)


def test_rank_mean_with_ties():
    # ranks of S: [1, 2, 3, 5, 4] -> [0, .25, .5, 1, .75]
    # ranks of C: [5, 3, 2, 1, 4] -> [1, .5, .25, 0, .75]
    # mean: [.5, .375, .375, .5, .75] -> min-max -> [1/3, 0, 0, 1/3, 1]
    got = combine_scores({"s": S, "c": C}, method="rank_mean")
    np.testing.assert_allclose(got, [1 / 3, 0, 0, 1 / 3, 1])
    tied = combine_scores({"a": np.array([1.0, 1.0, 2.0])}, method="rank_mean")
    np.testing.assert_allclose(tied, [0.0, 0.0, 1.0])


def test_rank_mean_ignores_monotone_rescaling():
    a = combine_scores({"s": S, "c": C}, method="rank_mean")
    b = combine_scores({"s": S**3 * 100, "c": np.log1p(C)}, method="rank_mean")
    np.testing.assert_allclose(a, b)


@pytest.mark.parametrize("method", COMBINE_METHODS)
def test_all_equal_gives_zeros(method):
    flat = {"a": np.full(4, 0.3), "b": np.full(4, 0.7)}
    np.testing.assert_array_equal(combine_scores(flat, method=method), 0)
    np.testing.assert_array_equal(combine_scores({"a": np.array([0.4])}, method=method), [0.0])
    assert combine_scores({"a": np.zeros(0)}, method=method).shape == (0,)


@settings(max_examples=50, deadline=None)
@given(
    st.integers(1, 30).flatmap(
        lambda n: st.lists(arrays(np.float64, n, elements=st.floats(0, 1)), min_size=1, max_size=3)
    ),
    st.sampled_from(COMBINE_METHODS),
)
def test_result_in_unit_interval(cols, method):
    out = combine_scores({f"c{i}": c for i, c in enumerate(cols)}, method=method)
    assert out.shape == cols[0].shape
    assert np.all((out >= 0) & (out <= 1))
    assert out.max() in (0.0, 1.0)


@pytest.mark.parametrize(
    "columns, kwargs, match",
    [
        ({}, {}, "non-empty mapping"),
        ({"a": np.ones(3), "b": np.ones(2)}, {}, "has 2 rows, expected 3"),
        ({"a": np.ones((2, 2))}, {}, "1-D"),
        ({"a": np.array([0.5, np.nan])}, {}, "NaN"),
        ({"a": np.ones(3)}, {"method": "mean"}, "method must be one of"),
    ],
)
def test_bad_input(columns, kwargs, match):
    with pytest.raises(ValueError, match=match):
        combine_scores(columns, **kwargs)


def test_config_and_table():
    cfg = CombineConfig(method="max", inputs=["spatial", "circle"])
    assert cfg.inputs == ("spatial", "circle")
    table = pd.DataFrame({"spatial_score": S, "circle_score": C})
    expected = combine_scores({"s": S, "c": C}, method="max")
    np.testing.assert_allclose(combine_table(table, cfg), expected)
    np.testing.assert_allclose(combine_table(table), combine_scores({"s": S, "c": C}))
    with pytest.raises(ValueError, match="no column 'circle_score'"):
        combine_table(table.drop(columns="circle_score"))
    for bad, match in [({"method": "sum"}, "method"), ({"inputs": ()}, "non-empty"),
                       ({"inputs": ("spatial", "spatial")}, "duplicates")]:
        with pytest.raises(ValueError, match=match):
            CombineConfig(**bad)
