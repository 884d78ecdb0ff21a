"""Exact-truth micrographs (data.synthetic_truth): the truth is exact and the rendering seeded."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from data.synthetic_truth import TruthConfig, laguerre_grains, make_truth_scan, shape_bank

SMALL = TruthConfig(shape=(160, 224), n_grains=30, impurities_per_mpx=1500)


def test_truth_is_one_component_per_impurity_and_seeded():
    a = make_truth_scan(SMALL, seed=5)
    b = make_truth_scan(SMALL, seed=5)
    c = make_truth_scan(SMALL, seed=6)
    assert np.array_equal(a.pixels, b.pixels) and not np.array_equal(a.pixels, c.pixels)
    lab, n = ndimage.label(a.impurity_mask, np.ones((3, 3), bool))
    assert n == a.n_impurities > 10
    assert np.array_equal(a.impurity_labels > 0, a.impurity_mask)
    # every drawn impurity is one 8-connected component of the mask
    pairs = np.unique(np.stack([lab[a.impurity_mask], a.impurity_labels[a.impurity_mask]]), axis=1)
    assert pairs.shape[1] == n
    assert 0 < a.area_fraction < 0.2


def test_impurities_are_dark_and_grains_are_exact():
    s = make_truth_scan(SMALL, seed=1)
    px = s.pixels.astype(float)
    grown = ndimage.binary_dilation(s.impurity_mask, iterations=4) & ~ndimage.binary_dilation(s.impurity_mask, iterations=2)
    big = np.isin(s.impurity_labels, np.flatnonzero(np.bincount(s.impurity_labels.ravel()) >= 20))
    big &= s.impurity_labels > 0
    assert px[big].mean() < px[grown].mean() - 20
    assert s.grain_boundaries.any() and s.n_grains <= 30
    # boundaries are where the grain label changes to the right or below
    g = s.grain_labels
    assert np.all(s.grain_boundaries[:, :-1][g[:, :-1] != g[:, 1:]])


def test_laguerre_labels_cover_the_scan():
    lab = laguerre_grains((50, 60), 12, weight_sd=0.0, rng=np.random.default_rng(0))
    assert lab.min() == 1 and lab.max() == len(np.unique(lab)) <= 12


def test_shape_bank_from_masks_and_bad_input():
    m = np.zeros((20, 20), bool)
    m[2:5, 2:5] = True
    m[10, 10] = True
    bank = shape_bank([m])
    assert sorted(bank.areas.tolist()) == [1, 9]
    assert len(shape_bank([m], min_area_px=2).shapes) == 1
    with pytest.raises(ValueError, match="no impurity component"):
        shape_bank([np.zeros((5, 5), bool)])
    with pytest.raises(ValueError, match="impurity_depth"):
        TruthConfig(impurity_depth=(0.8, 0.2))
    with pytest.raises(ValueError, match="shape"):
        TruthConfig(shape=(10, 10))
