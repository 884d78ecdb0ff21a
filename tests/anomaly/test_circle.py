"""Circle score on real digital shapes: disks low, lines high, tiny impurities 0."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from anomaly import get_scorer
from anomaly.scorers.circle import CircleConfig, circle_scores
from data import regions_from_mask


def _mask_with(*draw):
    m = np.zeros((200, 300), np.uint8)
    for fn in draw:
        fn(m)
    return m


def _scores(mask, **kwargs):
    table = regions_from_mask(mask)
    return table, get_scorer("circle")(table, CircleConfig(**kwargs))


def test_digital_disk_scores_low_and_lower_when_larger():
    scores = []
    for radius in (5, 12, 30, 60):
        m = _mask_with(lambda m: cv2.circle(m, (150, 100), radius, 255, -1))
        table, s = _scores(m)
        assert len(table) == 1
        # The enclosing circle covers the pixels (radius + 0.5 px), so the pixel grid alone
        # costs about 1 / radius of the circle; a disk must not lose more than that.
        assert 0.0 <= s[0] < 1.5 / radius
        scores.append(s[0])
    assert np.all(np.diff(scores) < 0)


def test_thin_line_scores_high():
    m = _mask_with(lambda m: cv2.line(m, (20, 50), (220, 150), 255, 1))
    _, s = _scores(m)
    assert s[0] > 0.95


def test_shape_order_disk_ellipse_line():
    m = _mask_with(
        lambda m: cv2.circle(m, (40, 40), 15, 255, -1),
        lambda m: cv2.ellipse(m, (150, 40), (30, 8), 30, 0, 360, 255, -1),
        lambda m: cv2.line(m, (20, 120), (280, 190), 255, 2),
    )
    table, s = _scores(m)
    order = np.argsort(table["centroid_row"].to_numpy() * 1000 + table["centroid_col"].to_numpy())
    disk, ellipse, line = s[order]
    assert disk < ellipse < line


def test_tiny_impurities_score_zero():
    m = np.zeros((20, 20), np.uint8)
    m[2, 2] = m[5, 5:7] = 255  # 1 px and 2 px
    m[10:12, 10] = m[11, 11] = 255  # 3 px L-shape
    m[15:17, 15:17] = 255  # 4 px: takes part
    table, s = _scores(m)
    small = table["area_px"].to_numpy() < 4
    assert small.sum() == 3
    np.testing.assert_array_equal(s[small], 0.0)
    assert s[~small][0] > 0.0  # a 2x2 square does not fill its enclosing circle


def test_min_area_option_and_empty_table():
    m = _mask_with(lambda m: cv2.line(m, (20, 50), (60, 50), 255, 1))
    _, s = _scores(m, min_area_px=100)
    np.testing.assert_array_equal(s, [0.0])
    table = regions_from_mask(np.zeros((5, 5), np.uint8))
    assert get_scorer("circle")(table, CircleConfig()).shape == (0,)


def test_circle_scores_bad_input():
    with pytest.raises(ValueError, match="equal length"):
        circle_scores(np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="positive"):
        circle_scores(np.array([1.0]), np.array([0.0]))
    with pytest.raises(ValueError, match="finite"):
        circle_scores(np.array([np.nan]), np.array([1.0]))
