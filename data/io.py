"""Reading scans from image files (PNG, JPEG, BMP, TIFF incl. 16-bit, multi-page and BigTIFF)."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import tifffile

from .errors import ScanReadError
from .scan import Scan

__all__ = ["read_scan", "read_image", "to_gray", "IMAGE_SUFFIXES"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_TIFF = (".tif", ".tiff")


def to_gray(image: np.ndarray) -> np.ndarray:
    """Convert an image to a 2-D gray array of dtype uint8 or uint16.

    Parameters
    ----------
    image : ndarray, shape (M, N), (M, N, 1), (M, N, 3) or (M, N, 4)
        Gray, RGB or RGBA pixels (RGB order).  Alpha is ignored.  Bool, float
        (expected in [0, 1]) and other integer types are converted.

    Returns
    -------
    ndarray, shape (M, N)
        uint8 or uint16 gray values (luma, ITU-R BT.601 weights for colour input).
    """
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 3 and img.shape[-1] in (3, 4):
        rgb = img[..., :3].astype(np.float64)
        gray = rgb @ np.array([0.299, 0.587, 0.114])
        img = np.clip(np.rint(gray), 0, np.iinfo(image.dtype).max if img.dtype.kind in "ui" else 1.0)
        img = img.astype(image.dtype) if image.dtype.kind in "ui" else img
    if img.ndim != 2:
        raise ValueError(f"expected a gray, RGB or RGBA image, got shape {np.shape(image)}")
    if img.dtype == np.bool_:
        return img.astype(np.uint8) * 255
    if img.dtype.kind == "f":
        if not np.all(np.isfinite(img)):
            raise ValueError("image contains NaN or infinite values")
        hi = float(img.max()) if img.size else 0.0
        scale = 255.0 if hi <= 1.0 else 1.0
        return np.clip(np.rint(img * scale), 0, 255).astype(np.uint8)
    if img.dtype in (np.uint8, np.uint16):
        return img
    if img.dtype.kind in "ui":
        if img.min(initial=0) >= 0 and img.max(initial=0) <= 65535:
            return img.astype(np.uint16) if img.max(initial=0) > 255 else img.astype(np.uint8)
        raise ValueError(f"integer image values out of the uint16 range ({img.dtype})")
    raise ValueError(f"unsupported image dtype {img.dtype}")


def _tiff_pixel_size_um(tif: tifffile.TiffFile) -> float | None:
    """Pixel size from the first page's XResolution/ResolutionUnit tags, if meaningful."""
    page = tif.pages[0]
    tags = page.tags
    if "XResolution" not in tags:
        return None
    num, den = tags["XResolution"].value
    if not num or not den:
        return None
    pixels_per_unit = num / den
    unit = tags["ResolutionUnit"].value if "ResolutionUnit" in tags else 2
    unit = int(unit)
    um_per_unit = {2: 25_400.0, 3: 10_000.0}.get(unit)  # inch, centimetre; 1 = no unit
    if um_per_unit is None or pixels_per_unit <= 0:
        return None
    size = um_per_unit / pixels_per_unit
    # 72/96 dpi are what writers put when they know nothing: not a calibration.
    if unit == 2 and round(pixels_per_unit) in (72, 96, 300):
        return None
    return float(size)


def read_image(path: str | Path) -> tuple[np.ndarray, float | None]:
    """Read an image file as gray pixels plus the pixel size found in the file (or None)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"scan file not found: {path}")
    if path.is_dir():
        raise ScanReadError(f"expected an image file, got a folder: {path}")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ScanReadError(
            f"unsupported image format {suffix!r} for {path}; expected one of {IMAGE_SUFFIXES}"
        )
    if suffix in _TIFF:
        try:
            with tifffile.TiffFile(path) as tif:
                if not tif.pages:
                    raise ScanReadError(f"TIFF file has no pages: {path}")
                pixels = tif.pages[0].asarray()
                size = _tiff_pixel_size_um(tif)
        except ScanReadError:
            raise
        except Exception as exc:  # tifffile raises many types for broken files
            raise ScanReadError(f"cannot read TIFF {path}: {exc}") from exc
        if pixels.ndim == 3 and pixels.shape[0] in (3, 4) and pixels.shape[-1] not in (3, 4):
            pixels = np.moveaxis(pixels, 0, -1)  # planar RGB
        return to_gray(pixels), size
    data = np.fromfile(path, dtype=np.uint8)
    pixels = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if pixels is None:
        raise ScanReadError(f"cannot decode image (corrupt or truncated?): {path}")
    if pixels.ndim == 3:
        code = cv2.COLOR_BGRA2RGBA if pixels.shape[-1] == 4 else cv2.COLOR_BGR2RGB
        pixels = cv2.cvtColor(pixels, code)
    return to_gray(pixels), None


def read_scan(
    path: str | Path,
    *,
    pixel_size_um: float | None = None,
    scan_id: str | None = None,
) -> Scan:
    """Read one scan from an image file.

    Parameters
    ----------
    path : str or Path
        PNG, JPEG, BMP or TIFF file (8/16-bit, gray/RGB/RGBA; the first page of a
        multi-page TIFF; BigTIFF).
    pixel_size_um : float, optional
        Pixel size from the configuration.  It wins over the TIFF resolution tags;
        without either the pixel size is unknown (``None``).
    scan_id : str, optional
        Identifier; defaults to the file name without extension.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ScanReadError
        If the file cannot be decoded.
    """
    path = Path(path)
    pixels, file_size = read_image(path)
    size = pixel_size_um if pixel_size_um is not None else file_size
    return Scan(
        pixels=pixels,
        scan_id=scan_id if scan_id is not None else path.stem,
        pixel_size_um=None if size is None else float(size),
        source=path,
    )
