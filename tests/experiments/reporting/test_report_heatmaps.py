"""Heatmap colouring (label lookup, box fill, block-max previews) and the rendered figure."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps

from data.regions import label_mask, regions_from_mask
from experiments.reporting import (
    CLUSTER_COLOUR,
    heatmap_preview,
    render_heatmap,
    save_heatmap,
)
from experiments.layout import RunLayout, scan_relpath
from experiments.reporting._imaging import display_gray, paint_boxes, score_settings


def _scene():
    mask = np.zeros((40, 60), np.uint8)
    mask[5:10, 5:12] = 255  # region 1
    mask[20:30, 30:36] = 255  # region 2
    mask[35, 55] = 255  # region 3, one pixel
    reg = regions_from_mask(mask)
    reg["combined_score"] = [0.0, 1.0, np.nan]
    labels, _ = label_mask(mask)
    return mask, reg, labels


def _cmap_rgb(name: str, t: float) -> np.ndarray:
    return (np.asarray(colormaps[name](t)[:3]) * 255).round().astype(np.uint8)


def test_preview_colours_impurity_pixels_by_score_via_labels():
    mask, reg, labels = _scene()
    rgb, factor, limits, unscored = heatmap_preview(mask, reg, labels=labels, cmap="viridis")
    assert factor == 1 and limits == (0.0, 1.0) and unscored
    assert rgb.shape == (40, 60, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[7, 8], _cmap_rgb("viridis", 0.0))
    np.testing.assert_array_equal(rgb[25, 33], _cmap_rgb("viridis", 1.0))
    np.testing.assert_array_equal(rgb[35, 55], [200, 200, 200])  # NaN score: light gray
    bg = display_gray(mask)[0, 0]
    np.testing.assert_array_equal(rgb[0, 0], [bg, bg, bg])
    # exact pixels: a pixel of region 2's box that is not labelled shows the scan's gray
    lab2 = labels.copy()
    lab2[20, 30] = 0
    rgb2, *_ = heatmap_preview(mask, reg, labels=lab2)
    g = display_gray(mask)[20, 30]
    np.testing.assert_array_equal(rgb2[20, 30], [g, g, g])


def test_preview_without_labels_fills_boxes():
    mask, reg, _ = _scene()
    mask[22, 32] = 0  # a hole: boxes still fill it
    rgb, *_ = heatmap_preview(mask, reg, cmap="magma")
    np.testing.assert_array_equal(rgb[22, 32], _cmap_rgb("magma", 1.0))
    np.testing.assert_array_equal(rgb[9, 11], _cmap_rgb("magma", 0.0))


def test_block_max_keeps_tiny_high_score_impurities():
    mask = np.zeros((3000, 40), np.uint8)
    mask[1234, 17] = 255
    mask[100:400, 0:40] = 255
    reg = regions_from_mask(mask)
    reg["s"] = [0.1, 0.9]  # the big region is first in raster order
    labels, _ = label_mask(mask)
    rgb, factor, *_ = heatmap_preview(mask, reg, score="s", labels=labels, max_side=100)
    assert factor == 30 and rgb.shape[:2] == (100, 2)
    np.testing.assert_array_equal(rgb[1234 // 30, 17 // 30], _cmap_rgb("viridis", 0.9))


def test_paint_boxes_keeps_the_highest_value_on_overlap():
    out = paint_boxes((6, 6), np.array([[0, 0, 3, 3], [2, 2, 5, 5]]), np.array([5, 3], np.uint16))
    assert out[2, 2] == 5 and out[5, 5] == 3 and out[0, 5] == 0
    edge = paint_boxes((6, 6), np.array([[1, 1, 4, 4]]), np.array([1], np.uint8), outline=True)
    assert edge.sum() == 12 and edge[2, 2] == 0


def test_render_heatmap_figure_has_colourbar_title_and_cluster_boxes():
    mask, reg, labels = _scene()
    clusters = pd.DataFrame(
        {
            "rank": [3],
            "cluster_id": [0],
            "bbox_rmin": [18],
            "bbox_cmin": [28],
            "bbox_rmax": [31],
            "bbox_cmax": [37],
        }
    )
    plain = render_heatmap(mask, reg, labels=labels, title="scan: combined_score", settings="k=50")
    boxed = render_heatmap(
        mask, reg, labels=labels, clusters=clusters, title="scan: combined_score"
    )
    assert plain.dtype == np.uint8 and plain.ndim == 3 and plain.shape[2] == 3
    assert max(plain.shape[:2]) >= 480  # small scans are enlarged to be readable
    red = np.array([int(CLUSTER_COLOUR[i : i + 2], 16) for i in (1, 3, 5)])
    near = lambda img: (np.abs(img.astype(int) - red).max(axis=2) < 12).sum()
    assert near(plain) == 0 and near(boxed) > 100
    # the colour bar holds the colormap's extremes
    for t in (0.0, 1.0):
        assert (np.abs(plain.astype(int) - _cmap_rgb("viridis", t)).max(axis=2) < 3).sum() > 50


def test_render_heatmap_reduces_large_scans():
    mask = np.zeros((1500, 900), np.uint8)
    mask[100:200, 100:200] = 255
    reg = regions_from_mask(mask)
    reg["combined_score"] = 0.5
    img = render_heatmap(mask, reg, max_side=300)
    assert img.shape[0] < 500  # 300 px preview + title and margins


def test_errors_are_clear():
    mask, reg, labels = _scene()
    with pytest.raises(ValueError, match="score columns present"):
        render_heatmap(mask, reg, score="nope_score")
    with pytest.raises(ValueError, match="labels shape"):
        render_heatmap(mask, reg, labels=labels[:-1])
    with pytest.raises(ValueError, match="2-D"):
        render_heatmap(np.zeros((2, 2, 2)), reg)
    with pytest.raises(ValueError, match="colormap"):
        render_heatmap(mask, reg, cmap="no-such-map")


def test_save_heatmap_writes_a_png(tmp_path):
    mask, reg, labels = _scene()
    out = save_heatmap(tmp_path / "deep" / "h.png", mask, reg, labels=labels)
    img = cv2.imread(str(out))
    assert img is not None and img.shape[2] == 3
    np.testing.assert_array_equal(img[..., ::-1], render_heatmap(mask, reg, labels=labels))


def test_uint16_and_empty_tables():
    px = (np.arange(50 * 70).reshape(50, 70) * 13).astype(np.uint16)
    reg = regions_from_mask(np.zeros((50, 70), bool))
    reg["combined_score"] = np.zeros(0)
    rgb, *_ = heatmap_preview(px, reg)
    assert rgb.shape == (50, 70, 3) and rgb.min() >= 70 - 1 and rgb.max() <= 235 + 1


def test_safe_names():
    assert RunLayout.heatmap_rel("lot1/scan-03") == "heatmaps/lot1/scan-03.png"
    bad = scan_relpath("<img src=x onerror=alert(1)>")
    assert set(bad) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/%")
    assert scan_relpath("../../etc/passwd") != "../../etc/passwd"
    assert ".." not in scan_relpath("../../etc/passwd").split("/")
    assert scan_relpath("a b") != scan_relpath("a_b")  # no collisions after cleaning


def test_score_settings_from_the_run_config():
    cfg = {
        "anomaly": {
            "scorers": {"spatial": {"k": 50}, "circle": {"min_area_px": 4}},
            "combine": {"method": "product", "inputs": ["spatial", "circle"]},
        }
    }
    text = score_settings(cfg, "combined_score")
    assert "method=product" in text and "spatial.k=50" in text
    assert score_settings(cfg, "spatial_score") == "k=50"
    assert score_settings({}, "spatial_score") == ""
