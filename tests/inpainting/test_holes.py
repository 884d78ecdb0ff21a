"""Hole-shape sampling: real shapes, clusters, free-form strokes, placement."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from inpainting.holes import (
    HoleSamplerConfig,
    cluster_shapes,
    free_form_mask,
    hole_bank,
    impurity_shapes,
    place_shapes,
    sample_hole_masks,
)


def _mask():
    m = np.zeros((80, 100), bool)
    m[5:9, 5:12] = True  # 28 px
    m[30, 30] = True  # 1 px: below min_area
    # a cluster of three blobs
    m[50:53, 50:53] = True
    m[50:53, 57:60] = True
    m[57:60, 53:56] = True
    m[0:70, 95:97] = True  # long: above max_side
    return m


def test_impurity_shapes_are_object_crops():
    shapes = impurity_shapes(_mask(), min_area_px=3, max_side_px=20)
    assert sorted(int(s.sum()) for s in shapes) == [9, 9, 9, 28]
    assert any(s.shape == (4, 7) and s.all() for s in shapes)


def test_cluster_shapes_keep_arrangement():
    clusters = cluster_shapes(_mask(), window_px=16, min_objects=3)
    assert clusters, "the three-blob cluster must be found"
    c = clusters[0]
    assert ndimage.label(c, structure=np.ones((3, 3)))[1] == 3 and c.sum() == 27
    assert cluster_shapes(np.zeros((20, 20), bool)) == []


def test_place_shapes_avoids_forbidden_and_keeps_gap():
    rng = np.random.default_rng(0)
    forbidden = np.zeros((60, 60), bool)
    forbidden[:, :30] = True
    blob = np.ones((3, 3), bool)
    mask, placed = place_shapes((60, 60), [blob], rng, n=20, forbidden=forbidden, gap_px=2)
    assert placed == 20 and not (mask & forbidden).any() and mask.sum() == 9 * 20
    lab, n = ndimage.label(mask, structure=np.ones((3, 3)))
    assert n == 20  # kept apart by the gap
    # no room: stops after max_tries and says how many were placed
    _, placed = place_shapes((10, 10), [np.ones((8, 8), bool)], rng, n=5, max_tries=30)
    assert placed == 1


def test_free_form_and_sampler():
    rng = np.random.default_rng(1)
    m = free_form_mask((64, 64), rng)
    assert m.dtype == bool and m.any()
    bank = hole_bank([_mask()], max_side_px=20, window_px=16, min_objects=3)
    assert len(bank.singles) == 4 and len(bank.clusters) >= 1
    masks = sample_hole_masks(16, 32, bank, np.random.default_rng(2), HoleSamplerConfig(max_fraction=0.4))
    assert masks.shape == (16, 32, 32) and masks.dtype == bool
    assert masks.reshape(16, -1).any(1).all()
    # seeded: the same draw twice
    again = sample_hole_masks(16, 32, bank, np.random.default_rng(2), HoleSamplerConfig(max_fraction=0.4))
    np.testing.assert_array_equal(masks, again)
