"""Deep Zoom tiles from any scan file: 16-bit, RGB, no label image, a label image of the wrong size."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile

from experiments.review.rundata import load_run
from experiments.review.tiles import TileError, TileRenderer, deep_zoom_levels


def tiny_run(tmp_path, pixels, *, labels=None, name="scan.tif"):
    run = tmp_path / "run"
    run.mkdir()
    src = tmp_path / name
    if name.endswith(".tif"):
        tifffile.imwrite(src, pixels)
    else:
        cv2.imwrite(str(src), pixels)
    h, w = pixels.shape[:2]
    pd.DataFrame(
        [{"scan_id": "s", "path": str(src), "status": "ok", "height": h, "width": w}]
    ).to_parquet(run / "scans.parquet")
    pd.DataFrame(
        [
            {
                "scan_id": "s",
                "cluster_id": 0,
                "rank": 1,
                "score": 2.0,
                "n_regions": 1,
                "bbox_rmin": 1,
                "bbox_cmin": 2,
                "bbox_rmax": 5,
                "bbox_cmax": 9,
            }
        ]
    ).to_parquet(run / "clusters.parquet")
    if labels is not None:
        (run / "labels").mkdir()
        tifffile.imwrite(run / "labels" / "s.tif", labels)
    return load_run(run)


def decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def test_levels():
    assert deep_zoom_levels(1, 1) == [(1, 1)]
    assert (
        deep_zoom_levels(5000, 3000)[-1] == (5000, 3000) and len(deep_zoom_levels(5000, 3000)) == 14
    )
    assert deep_zoom_levels(5000, 3000)[-2] == (2500, 1500) and deep_zoom_levels(5000, 3000)[4] == (
        10,
        6,
    )


def test_sixteen_bit_scan_without_labels(tmp_path):
    px = (np.arange(300 * 200, dtype=np.uint16).reshape(300, 200) * 7) % 4000
    run = tiny_run(tmp_path, px)
    assert run.clusters["reason"].iloc[0] == "1 impurity"  # no features: the sentence says less
    r = TileRenderer(run)
    info = r.info(0)
    assert info["available"] and not info["has_overlay"] and "no label image" in info["message"]
    top = info["max_level"]
    t = decode(r.tile(0, top, 0, 0))
    assert t.shape == (257, 200, 3) and t.std() > 10  # stretched to 8 bits, not black
    with pytest.raises(TileError):
        r.tile(0, top, 1, 0)
    r.close()


def test_rgb_scan_and_wrong_size_labels(tmp_path):
    rgb = np.zeros((64, 80, 3), np.uint8)
    rgb[..., 2] = 200  # red in OpenCV's BGR order
    run = tiny_run(tmp_path, rgb, labels=np.ones((10, 10), np.uint16), name="scan.png")
    r = TileRenderer(run)
    info = r.info(0)
    assert info["available"] and not info["has_overlay"] and "not shown" in info["message"]
    t = decode(r.tile(0, info["max_level"], 0, 0))
    assert t.shape == (64, 80, 3) and np.ptp(t.reshape(-1, 3).mean(0)) < 3  # shown in gray
    r.close()


def test_labels_coloured_by_score(tmp_path):
    px = np.full((40, 60), 128, np.uint8)
    lab = np.zeros((40, 60), np.uint16)
    lab[5:15, 5:15] = 1
    lab[20:30, 30:40] = 2
    run = tiny_run(tmp_path, px, labels=lab, name="scan.png")
    run.regions = pd.DataFrame(
        {"scan_id": ["s", "s"], "region_id": [1, 2], "combined_score": [0.0, 1.0]}
    )
    run.__post_init__()
    r = TileRenderer(run)
    t = decode(r.tile(0, r.info(0)["max_level"], 0, 0)).astype(int)
    low, high, bg = t[10, 10], t[25, 35], t[35, 5]
    assert np.ptp(bg) <= 3  # the matrix stays gray
    assert (
        low[0] > low[1] and high[1] > high[0]
    )  # viridis: violet for 0 (BGR: blue > green), yellow for 1
    r.close()
