"""What the stage renders from the pixels it holds, as bytes: label TIFF, heatmap, crops, exclusion mask.

These run on the worker (the scan is in its memory); the driver only writes the bytes once, into the
paths :class:`experiments.layout.RunLayout` names.  Nothing here reads or writes files.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import pandas as pd

__all__ = ["label_tiff_bytes", "png_bytes", "mask_png_bytes"]


def label_tiff_bytes(labels: np.ndarray, *, pixel_size_um: float | None) -> bytes:
    """The label image (value = ``region_id``) as a zlib-compressed TIFF, calibrated when known.

    Calibrated label images are written as ImageJ TIFFs (``unit=micron``, X/Y resolution in
    pixels per µm), so Fiji opens them in µm; images with more than 65535 regions are written as
    32-bit TIFFs with the baseline resolution tags in pixels per centimetre (ImageJ's
    hyperstack format has no 32-bit integer type).
    """
    import tifffile  # lazy: only when a label image is written

    lab = np.asarray(labels)
    n = int(lab.max(initial=0))
    buf = io.BytesIO()
    if n < 2**16:
        data = lab.astype(np.uint16)
        if pixel_size_um:
            ppu = 1.0 / float(pixel_size_um)
            tifffile.imwrite(buf, data, imagej=True, resolution=(ppu, ppu),
                             metadata={"unit": "micron"}, compression="zlib", compressionargs={"level": 1})
        else:
            tifffile.imwrite(buf, data, compression="zlib", compressionargs={"level": 1})
    else:
        data = lab.astype(np.uint32)
        kwargs = {}
        if pixel_size_um:
            ppcm = 1e4 / float(pixel_size_um)
            kwargs = {"resolution": (ppcm, ppcm), "resolutionunit": "CENTIMETER"}
        tifffile.imwrite(buf, data, compression="zlib", compressionargs={"level": 1}, **kwargs)
    return buf.getvalue()


def png_bytes(rgb: np.ndarray) -> bytes:
    """An RGB uint8 image (H, W, 3) as PNG bytes."""
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {arr.shape} {arr.dtype}")
    ok, buf = cv2.imencode(".png", cv2.cvtColor(arr, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def mask_png_bytes(mask: np.ndarray) -> bytes:
    """A boolean mask as an 8-bit PNG (255 = True)."""
    ok, buf = cv2.imencode(".png", np.asarray(mask, dtype=bool).astype(np.uint8) * 255)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def scan_ranks(clusters: pd.DataFrame, key: str) -> np.ndarray:
    """1 = the best cluster of the scan on ``key`` (ties: smaller cluster_id first)."""
    if len(clusters) == 0:
        return np.zeros(0, np.int64)
    x = clusters[key].to_numpy(dtype=np.float64)
    order = np.lexsort((clusters["cluster_id"].to_numpy(), -x))
    ranks = np.empty(len(x), np.int64)
    ranks[order] = np.arange(1, len(x) + 1)
    return ranks
