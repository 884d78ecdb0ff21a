"""Spatial score: exact against a direct O(n^2) evaluation, normalisation, edge cases, bad input."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import anomaly.scorers.spatial as spatial_module
from anomaly import ScoreContext, get_scorer
from anomaly.scorers.spatial import (
    RowScorer,
    SpatialConfig,
    _raw_scores_for_rows,
    normalize_mlography,
    serial_map_rows,
    spatial_score,
    weighted_kth_nn_scores,
)


@pytest.fixture(params=["trees", "dense"])
def search(request, monkeypatch):
    """Run a test with the KD-tree search (forced even for few impurities) and with every pair."""
    monkeypatch.setattr(spatial_module, "_DENSE_MAX", 0 if request.param == "trees" else 10**9)
    return request.param


def brute_raw(boxes, areas, k):
    """The definition, pair by pair in NumPy: raw_i = A_i * (k-th smallest d_w(i, j), j != i)^2."""
    b = np.asarray(boxes, dtype=np.float64)
    a = np.asarray(areas, dtype=np.float64)
    rmin, cmin, rmax, cmax = b.T
    dr = np.maximum(0.0, np.maximum(rmin[None, :] - rmax[:, None], rmin[:, None] - rmax[None, :]))
    dc = np.maximum(0.0, np.maximum(cmin[None, :] - cmax[:, None], cmin[:, None] - cmax[None, :]))
    gap = np.sqrt(dr**2 + dc**2)
    dw = (a[:, None] / a[None, :]) ** 4 * np.maximum(gap, 1e-5)
    np.fill_diagonal(dw, np.inf)
    return a * np.sort(dw, axis=1)[:, k - 1] ** 2


def random_impurities(n, *, seed, size=2000, max_extent=40, area_sigma=1.2, integer=True):
    """Boxes scattered (partly clustered) over a size x size field; heavy-tailed areas."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, size, (n, 2))
    clustered = rng.random(n) < 0.3
    spread = rng.normal(0, size / 30, (int(clustered.sum()), 2))
    centres[clustered] = rng.uniform(0, size, 2) + spread
    ext = np.minimum(rng.lognormal(1.0, 0.8, (n, 2)), max_extent)
    boxes = np.concatenate([centres - ext / 2, centres + ext / 2], axis=1)
    if integer:
        boxes = np.round(boxes)
    areas = np.maximum(1.0, rng.lognormal(2.5, area_sigma, n))
    if integer:
        areas = np.round(areas)
    return boxes, areas


@pytest.mark.parametrize(
    "n, k, seed, kwargs",
    [
        (40, 1, 0, {}),
        (300, 5, 1, {}),
        (600, 50, 2, {}),  # more than the 256 "largest" of the first bound
        (500, 50, 3, {"integer": False}),
        (400, 20, 4, {"area_sigma": 3.0}),  # areas over many decades: many buckets
        (350, 50, 5, {"size": 100}),  # crowded: many overlapping boxes (D = 0)
    ],
)
def test_raw_matches_brute_force(n, k, seed, kwargs, search):
    boxes, areas = random_impurities(n, seed=seed, **kwargs)
    raw = weighted_kth_nn_scores(boxes, areas, k=k, normalize="none")
    np.testing.assert_allclose(raw, brute_raw(boxes, areas, k), rtol=1e-9, atol=0)


def test_default_path_on_more_impurities():
    boxes, areas = random_impurities(1500, seed=6, size=4000)
    raw = weighted_kth_nn_scores(boxes, areas, k=50, normalize="none")
    np.testing.assert_allclose(raw, brute_raw(boxes, areas, 50), rtol=1e-9, atol=0)


def test_ties_identical_and_touching_boxes(search):
    # a 10 x 10 grid of touching 3x3 boxes (D = 0 between neighbours), each duplicated twice
    r, c = np.meshgrid(np.arange(10) * 2, np.arange(10) * 2, indexing="ij")
    one = np.stack([r.ravel(), c.ravel(), r.ravel() + 2, c.ravel() + 2], axis=1)
    boxes = np.concatenate([one, one, one])
    areas = np.tile(np.arange(100) % 7 + 4.0, 3)
    for k in (1, 2, 3, 8, 50):
        raw = weighted_kth_nn_scores(boxes, areas, k=k, normalize="none")
        np.testing.assert_allclose(raw, brute_raw(boxes, areas, k), rtol=1e-9, atol=0)


def test_all_identical_boxes_score_zero(search):
    boxes = np.tile([5, 5, 9, 9], (10, 1))
    raw = weighted_kth_nn_scores(boxes, np.full(10, 7.0), k=3, normalize="none")
    np.testing.assert_allclose(raw, 7.0 * 1e-10)  # D = 0 -> floor 1e-5, squared
    scores = weighted_kth_nn_scores(boxes, np.full(10, 7.0), k=3)
    np.testing.assert_array_equal(scores, np.zeros(10))


def test_subset_rows_and_chunking_agree_with_full(search):
    boxes, areas = random_impurities(300, seed=7)
    full = weighted_kth_nn_scores(boxes, areas, k=10, normalize="none")
    rows = np.array([299, 0, 17, 17, 150])
    np.testing.assert_allclose(_raw_scores_for_rows(boxes, areas, rows, 10), full[rows], rtol=1e-12)
    for chunk in (1, 7, 1000):
        got = weighted_kth_nn_scores(boxes, areas, k=10, normalize="none", chunk_size=chunk)
        np.testing.assert_allclose(got, full, rtol=1e-12)


def test_map_rows_injection_and_picklable_chunk_function():
    boxes, areas = random_impurities(120, seed=8)
    calls = []

    def reversed_chunks(score_rows, n_rows, *, chunk_size):
        assert isinstance(score_rows, RowScorer)
        score_rows = pickle.loads(pickle.dumps(score_rows))  # what a process pool / Ray does
        out = np.empty(n_rows)
        for start in reversed(range(0, n_rows, chunk_size)):
            rows = np.arange(start, min(n_rows, start + chunk_size))
            calls.append(rows.size)
            out[rows] = score_rows(rows)
        return out

    got = weighted_kth_nn_scores(boxes, areas, k=5, map_rows=reversed_chunks, chunk_size=50)
    assert calls == [20, 50, 50]
    np.testing.assert_allclose(got, weighted_kth_nn_scores(boxes, areas, k=5), rtol=1e-12)


def test_map_rows_wrong_shape_is_an_error():
    boxes, areas = random_impurities(20, seed=9)
    with pytest.raises(ValueError, match="map_rows returned shape"):
        weighted_kth_nn_scores(boxes, areas, k=3, map_rows=lambda f, n, chunk_size: np.zeros(n - 1))


def test_serial_map_rows_covers_all_rows_in_order():
    got = serial_map_rows(lambda rows: rows * 2.0, 10, chunk_size=3)
    np.testing.assert_array_equal(got, np.arange(10) * 2.0)


# ----------------------------------------------------------------- normalisation


def test_normalize_steps_by_hand():
    # log -> [0, 9, 9.5, 10]; min-max -> [0, .9, .95, 1]; mean .7125, var .17046875,
    # std .4128786; minus 2 std, floored at 1e-5 -> [1e-5, .0742428, .1242428, .1742428];
    # min-max -> [0, .0742328 / .1742328, .1242328 / .1742328, 1] = [0, .426055, .713028, 1].
    raw = np.exp([0.0, 9.0, 9.5, 10.0])
    np.testing.assert_allclose(normalize_mlography(raw), [0.0, 0.426055, 0.713028, 1.0], atol=2e-6)


def test_normalize_keeps_only_outliers():
    # log -> [0, 1, 2, 10]: after subtracting 2 std only the outlier is above the floor
    got = normalize_mlography(np.exp([0.0, 1.0, 2.0, 10.0]))
    np.testing.assert_allclose(got, [0, 0, 0, 1], atol=1e-12)


def test_normalize_zero_raw_is_floored_before_log():
    out = normalize_mlography(np.array([0.0, 1e-5, 1.0, 1e6]))
    assert out[0] == out[1] == 0.0
    assert out[-1] == 1.0


@pytest.mark.parametrize("raw", [np.full(5, 3.0), np.array([2.5]), np.zeros(4)])
def test_normalize_constant_gives_zeros_not_nan(raw):
    out = normalize_mlography(raw)
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out, np.zeros(raw.size))


def test_normalize_range_and_monotone():
    raw = np.random.default_rng(0).lognormal(0, 3, 200)
    out = normalize_mlography(raw)
    assert out.min() == 0.0 and out.max() == 1.0
    order = np.argsort(raw)
    assert np.all(np.diff(out[order]) >= 0)


def test_normalize_rejects_bad_raw():
    with pytest.raises(ValueError, match="non-negative"):
        normalize_mlography(np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="1-D"):
        normalize_mlography(np.ones((2, 2)))


# ----------------------------------------------------------------- behaviour and edge cases


def test_big_isolated_impurity_is_the_most_anomalous(search):
    r, c = np.meshgrid(np.arange(12) * 20, np.arange(12) * 20, indexing="ij")
    small = np.stack([r.ravel(), c.ravel(), r.ravel() + 2, c.ravel() + 2], axis=1)
    boxes = np.concatenate([small, [[600, 600, 640, 640]]])
    areas = np.r_[np.full(len(small), 9.0), 1200.0]
    scores = weighted_kth_nn_scores(boxes, areas, k=10)
    assert scores.argmax() == len(small) and scores[-1] == 1.0
    assert np.all(scores[:-1] < 0.5)


def test_empty_and_single():
    assert weighted_kth_nn_scores(np.zeros((0, 4)), np.zeros(0)).shape == (0,)
    with pytest.warns(UserWarning, match="using k=0"):
        raw = weighted_kth_nn_scores([[0, 0, 3, 3]], [9.0], normalize="none")
    np.testing.assert_array_equal(raw, [0.0])
    with pytest.warns(UserWarning):
        np.testing.assert_array_equal(weighted_kth_nn_scores([[0, 0, 3, 3]], [9.0]), [0.0])


def test_fewer_impurities_than_k_uses_n_minus_1(search):
    boxes, areas = random_impurities(12, seed=3)
    with pytest.warns(UserWarning, match="using k=11"):
        got = weighted_kth_nn_scores(boxes, areas, k=50, normalize="none")
    np.testing.assert_allclose(got, brute_raw(boxes, areas, 11), rtol=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # N = k + 1 needs no reduction
        weighted_kth_nn_scores(boxes, areas, k=11)


@pytest.mark.parametrize(
    "boxes, areas, kwargs, match",
    [
        ([[0, 0, 1]], [1.0], {}, r"shape \(N, 4\)"),
        ([[0, 0, 1, np.nan]], [1.0], {}, "NaN"),
        ([[5, 0, 1, 1]], [1.0], {}, "inverted box at row 0"),
        ([[0, 0, 1, 1], [0, 0, 1, 1]], [1.0], {}, r"areas must have shape \(2,\)"),
        ([[0, 0, 1, 1], [0, 0, 1, 1]], [1.0, 0.0], {}, "positive; row 1"),
        ([[0, 0, 1, 1], [0, 0, 1, 1]], [1.0, np.inf], {}, "NaN or infinite"),
        ([[0, 0, 1, 1], [0, 0, 1, 1]], [1.0, 1e31], {}, "span more than"),
        ([[0, 0, 1, 1], [0, 0, 1, 1]], [1.0, 1.0], {"k": 0}, "k must be an integer >= 1"),
        ([[0, 0, 1, 1], [0, 0, 1, 1]], [1.0, 1.0], {"k": 2.5}, "k must be an integer >= 1"),
        ([[0, 0, 1, 1], [0, 0, 1, 1]], [1.0, 1.0], {"normalize": "z"}, "normalize must be one of"),
        ([[0, 0, 1, 1], [0, 0, 1, 1]], [1.0, 1.0], {"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_input(boxes, areas, kwargs, match):
    with pytest.raises(ValueError, match=match):
        weighted_kth_nn_scores(np.array(boxes, dtype=float), np.array(areas), **kwargs)


# ----------------------------------------------------------------- properties

_coords = st.integers(min_value=0, max_value=300)


@st.composite
def impurity_sets(draw):
    n = draw(st.integers(min_value=2, max_value=40))
    r0 = draw(st.lists(_coords, min_size=n, max_size=n))
    c0 = draw(st.lists(_coords, min_size=n, max_size=n))
    h = draw(st.lists(st.integers(0, 25), min_size=n, max_size=n))
    w = draw(st.lists(st.integers(0, 25), min_size=n, max_size=n))
    areas = draw(st.lists(st.integers(1, 3000), min_size=n, max_size=n))
    boxes = np.array([r0, c0, np.add(r0, h), np.add(c0, w)], dtype=float).T
    return boxes, np.array(areas, dtype=float), draw(st.integers(1, n - 1))


def _raw_both_paths(boxes, areas, k):
    """Raw values by the KD-tree search (forced) and by every pair; they must agree."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(spatial_module, "_DENSE_MAX", 0)
        trees = weighted_kth_nn_scores(boxes, areas, k=k, normalize="none")
    dense = weighted_kth_nn_scores(boxes, areas, k=k, normalize="none")  # few rows: every pair
    np.testing.assert_allclose(trees, dense, rtol=1e-12)
    return trees


@settings(max_examples=40, deadline=None)
@given(impurity_sets(), st.integers(-10_000, 10_000), st.integers(-10_000, 10_000))
def test_translation_invariant(data, dr, dc):
    boxes, areas, k = data
    moved = boxes + np.array([dr, dc, dr, dc], dtype=float)
    expected = _raw_both_paths(boxes, areas, k)
    np.testing.assert_allclose(_raw_both_paths(moved, areas, k), expected, rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(impurity_sets(), st.randoms(use_true_random=False))
def test_permutation_equivariant_and_exact(data, rnd):
    boxes, areas, k = data
    perm = np.array(rnd.sample(range(len(areas)), len(areas)))
    raw = _raw_both_paths(boxes, areas, k)
    np.testing.assert_allclose(_raw_both_paths(boxes[perm], areas[perm], k), raw[perm], rtol=1e-12)
    np.testing.assert_allclose(raw, brute_raw(boxes, areas, k), rtol=1e-9)
    scores = weighted_kth_nn_scores(boxes, areas, k=k)
    assert np.all((scores >= 0) & (scores <= 1))


# ----------------------------------------------------------------- registry


def _table(boxes, areas):
    b = np.asarray(boxes, dtype=np.int64)
    return pd.DataFrame(
        {"bbox_rmin": b[:, 0], "bbox_cmin": b[:, 1], "bbox_rmax": b[:, 2], "bbox_cmax": b[:, 3],
         "area_px": np.asarray(areas, dtype=np.int64)}
    )


def test_registered_scorer_filters_small_impurities():
    boxes, areas = random_impurities(200, seed=11)
    areas[::3] = np.minimum(areas[::3], 3)  # below the paper's > 3 px
    table = _table(boxes, areas)
    spec = get_scorer("spatial")
    assert spec.column == "spatial_score" and spec.config_cls is SpatialConfig
    got = spec(table, SpatialConfig(k=10))
    keep = areas >= 4
    assert np.all(got[~keep] == 0.0)
    expected = weighted_kth_nn_scores(boxes[keep], areas[keep], k=10)
    np.testing.assert_allclose(got[keep], expected, rtol=1e-12)
    assert spec(table.iloc[:0], SpatialConfig()).shape == (0,)
    assert np.all(spec(_table([[0, 0, 1, 1]], [2]), SpatialConfig()) == 0.0)


def test_map_rows_used_only_from_ray_min_regions():
    boxes, areas = random_impurities(60, seed=12)
    table = _table(boxes, areas + 4)
    used = []

    def spy(score_rows, n_rows, *, chunk_size):
        used.append(n_rows)
        return serial_map_rows(score_rows, n_rows, chunk_size=chunk_size)

    a = spatial_score(table, SpatialConfig(k=5, ray_min_regions=61), ScoreContext(map_rows=spy))
    assert used == []
    b = spatial_score(table, SpatialConfig(k=5, ray_min_regions=60), ScoreContext(map_rows=spy))
    assert used == [60]
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"k": 0}, "k must"), ({"min_area_px": 0}, "min_area_px"), ({"normalize": "x"}, "normalize"),
     ({"ray_min_regions": -1}, "ray_min_regions"), ({"chunk_size": 0}, "chunk_size")],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SpatialConfig(**kwargs)
