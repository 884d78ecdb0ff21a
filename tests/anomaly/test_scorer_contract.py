"""Contract of every registered scorer (a new scorer is tested by registering it)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from anomaly import ScoreContext, available_scorers, get_scorer, make_config
from anomaly.scorers import ScorerSpec, register_scorer
from data import label_mask, regions_from_labels


def _scan():
    rng = np.random.default_rng(0)
    mask = np.zeros((160, 200), bool)
    for _ in range(40):
        r, c = rng.integers(5, 150), rng.integers(5, 190)
        h, w = rng.integers(1, 6, 2)
        mask[r : r + h, c : c + w] = True
    labels, _ = label_mask(mask)
    return regions_from_labels(labels), labels


@pytest.mark.parametrize("name", available_scorers())
def test_scorer_contract(name):
    spec = get_scorer(name)
    assert spec.name == name and spec.column.endswith("_score")
    cfg = make_config(spec, {})
    table, labels = _scan()
    values = np.asarray(spec(table, cfg, ScoreContext(labels=labels)))
    assert values.shape == (len(table),) and values.dtype.kind == "f"
    assert np.all(np.isfinite(values)) and values.min() >= 0 and values.max() <= 1
    # row order in, row order out (pure function of the table)
    again = np.asarray(spec(table, cfg, ScoreContext(labels=labels)))
    np.testing.assert_array_equal(values, again)
    assert np.asarray(spec(table.iloc[:0], cfg, ScoreContext(labels=labels))).shape == (0,)
    with pytest.raises(ValueError, match="unknown option"):
        make_config(spec, {"no_such_option": 1})


def test_the_module_of_a_scorer_is_named_after_it():
    for name in available_scorers():
        spec = get_scorer(name)
        assert spec.function.split(":")[0] == f"anomaly.scorers.{name}"


def test_plugins_register_and_names_are_unique():
    spec = ScorerSpec("unit_test_ones", lambda t, cfg, ctx: np.ones(len(t)), dict, "unit_test_ones_score")
    try:
        register_scorer(spec)
        assert "unit_test_ones" in available_scorers()
        with pytest.raises(ValueError, match="already registered"):
            register_scorer(ScorerSpec("unit_test_ones", len, dict, "x_score"))
    finally:
        from anomaly import scorers

        scorers._TABLE.pop("unit_test_ones", None)


def test_listing_or_spatial_scoring_imports_no_keras():
    code = (
        "import sys, numpy as np; from anomaly import available_scorers, score_regions;"
        "from data import regions_from_mask; available_scorers();"
        "m = np.zeros((50, 50), bool); m[5:9, 5:9] = m[20:30, 30:33] = True;"
        "score_regions(regions_from_mask(m), scorers={'spatial': {}, 'circle': {}, 'shape': None});"
        "print('keras' in sys.modules, 'tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
