"""Reading scans from image files, with size limits checked before decoding and the pixel size from metadata.

Formats: PNG, JPEG, BMP, TIFF (8/16-bit, gray/RGB/RGBA, multi-page: first page, BigTIFF) and, with the
optional extra ``pip install "quantmet[vendor]"``, Zeiss ``.czi`` (pylibCZIrw) and Nikon ``.nd2`` (nd2).

Pixel size found in a TIFF, in this order (the first valid one is used, the others are kept in
``Scan.metadata['calibration']`` and a disagreement is noted):

- OME-XML ``Pixels/@PhysicalSizeX`` with ``PhysicalSizeXUnit`` (default µm, as the OME schema says);
- ImageJ/Fiji: the description's ``unit`` with the ``XResolution`` tag (pixels per unit);
- FEI/Thermo: the ASCII tag 34682/34680, ``[Scan] PixelWidth`` (then ``[EScan]``) in metres;
- Zeiss SEM: the CZ_SEM tag 34118, ``AP_IMAGE_PIXEL_SIZE`` / ``AP_PIXEL_SIZE`` with their unit;
- baseline ``XResolution`` with ``ResolutionUnit`` inch or centimetre, except 72/96/300 dpi
  (what writers put when they know nothing).

Values that are not positive, not finite or above 1000 µm/px are ignored with a note.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import re
import struct
from pathlib import Path

import cv2
import numpy as np
import tifffile

from .errors import MissingReaderError, ScanReadError
from .scan import Scan

__all__ = [
    "read_scan",
    "read_image",
    "image_shape",
    "to_gray",
    "IMAGE_SUFFIXES",
    "VENDOR_SUFFIXES",
    "SUPPORTED_SUFFIXES",
    "DEFAULT_MAX_PIXELS",
    "VENDOR_EXTRA",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: Vendor formats read through the optional extra (``quantmet[vendor]``).
VENDOR_SUFFIXES = (".czi", ".nd2")
SUPPORTED_SUFFIXES = IMAGE_SUFFIXES + VENDOR_SUFFIXES
VENDOR_EXTRA = 'pip install "quantmet[vendor]"'
#: Default ``max_pixels``: 500 Mpx (a 22 000 x 22 000 px mosaic; 0.5 GB as 8-bit gray).
DEFAULT_MAX_PIXELS = 500_000_000

_TIFF = (".tif", ".tiff")
_MAX_UM = 1000.0
_UNIT_UM = {
    "pm": 1e-6, "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3,
    "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0,
    "mm": 1e3, "millimeter": 1e3, "millimetre": 1e3, "cm": 1e4, "centimeter": 1e4, "centimetre": 1e4,
    "m": 1e6, "meter": 1e6, "metre": 1e6, "in": 25_400.0, "inch": 25_400.0, "inches": 25_400.0,
}


def _unit_um(unit) -> float | None:
    """µm per ``unit`` ('µm', 'um', 'micron', '\\u00B5m', 'nm', 'mm', ...), None if unknown."""
    if not isinstance(unit, str):
        return None
    u = unit.strip().lower().replace("\\u00b5", "u").replace("µ", "u").replace("μ", "u")
    return _UNIT_UM.get(u)


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


# ---------------------------------------------------------------- headers (no decoding)

_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _png_shape(fh) -> tuple[int, int]:
    head = fh.read(24)
    if len(head) < 24 or head[12:16] != b"IHDR":
        raise ScanReadError("truncated PNG header")
    width, height = struct.unpack(">II", head[16:24])
    return height, width


def _bmp_shape(fh) -> tuple[int, int]:
    head = fh.read(26)
    if len(head) < 26:
        raise ScanReadError("truncated BMP header")
    (size,) = struct.unpack("<I", head[14:18])
    if size == 12:  # BITMAPCOREHEADER
        width, height = struct.unpack("<HH", head[18:22])
    else:
        width, height = struct.unpack("<ii", head[18:26])
    return abs(height), abs(width)


def _jpeg_shape(fh) -> tuple[int, int]:
    fh.read(2)  # SOI
    while True:
        b = fh.read(1)
        if not b:
            raise ScanReadError("JPEG without a frame header (truncated?)")
        if b != b"\xff":
            continue
        marker = fh.read(1)
        while marker == b"\xff":
            marker = fh.read(1)
        if not marker:
            raise ScanReadError("truncated JPEG")
        m = marker[0]
        if m == 0x01 or 0xD0 <= m <= 0xD9:
            continue
        seg = fh.read(2)
        if len(seg) < 2:
            raise ScanReadError("truncated JPEG")
        (length,) = struct.unpack(">H", seg)
        if m in _SOF:
            body = fh.read(5)
            if len(body) < 5:
                raise ScanReadError("truncated JPEG frame header")
            height, width = struct.unpack(">HH", body[1:5])
            if height == 0:
                raise ScanReadError("JPEG whose height is given after the scan (DNL marker) is not supported")
            return height, width
        fh.seek(length - 2, os.SEEK_CUR)


def _sniff(path: Path) -> str:
    with open(path, "rb") as fh:
        magic = fh.read(8)
    if magic.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if magic.startswith(b"\xff\xd8"):
        return "jpeg"
    if magic.startswith(b"BM"):
        return "bmp"
    if magic[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if magic.startswith(b"ZISRAWFI"):
        return "czi"
    return "unknown"


def image_shape(path: str | Path) -> tuple[int, int]:
    """``(rows, cols)`` of an image file from its header, without decoding the pixels.

    PNG (IHDR), JPEG (SOF marker), BMP (DIB header), TIFF (first page's tags) and
    the vendor formats (through their reader).  The format is recognised from the
    file's first bytes, not from its suffix.

    Raises
    ------
    ScanReadError
        If the header is missing, truncated or of an unknown format.
    """
    path = Path(path)
    fmt = _sniff(path)
    if fmt == "tiff":
        try:
            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first
                return int(page.imagelength), int(page.imagewidth)
        except Exception as exc:  # noqa: BLE001 - tifffile raises many types for broken files
            raise ScanReadError(f"cannot read TIFF header of {path}: {exc}") from exc
    if path.suffix.lower() in VENDOR_SUFFIXES or fmt == "czi":
        pixels_shape, _ = _vendor(path, shape_only=True)
        return pixels_shape
    parser = {"png": _png_shape, "jpeg": _jpeg_shape, "bmp": _bmp_shape}.get(fmt)
    if parser is None:
        raise ScanReadError(f"cannot decode {path}: not a PNG, JPEG, BMP or TIFF file (unknown first bytes)")
    with open(path, "rb") as fh:
        return parser(fh)


def _check_limits(path: Path, *, max_pixels: int | None, max_file_bytes: int | None) -> str:
    """os.stat and header checks before any decoding; returns the sniffed format."""
    if not path.exists():
        raise FileNotFoundError(f"scan file not found: {path}")
    if path.is_dir():
        raise ScanReadError(f"expected an image file, got a folder: {path}")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ScanReadError(
            f"unsupported image format {suffix!r} for {path}; expected one of {SUPPORTED_SUFFIXES}"
        )
    size = os.stat(path).st_size
    if max_file_bytes is not None and size > max_file_bytes:
        raise ScanReadError(
            f"{path} is {size:,} bytes, over the file-size limit max_file_bytes = {int(max_file_bytes):,}"
        )
    if size == 0:
        raise ScanReadError(f"cannot decode image (empty file): {path}")
    fmt = _sniff(path)
    if max_pixels is not None:
        rows, cols = image_shape(path)
        if rows * cols > max_pixels:
            raise ScanReadError(
                f"{path} is {rows} x {cols} px = {rows * cols / 1e6:,.1f} Mpx (from its header), over the "
                f"limit max_pixels = {max_pixels / 1e6:,.1f} Mpx; not decoded (raise data.max_pixels to read it)"
            )
    return fmt


# ---------------------------------------------------------------- TIFF metadata


def _finite_um(value, factor: float) -> float | None:
    try:
        v = float(value) * factor
    except (TypeError, ValueError):
        return None
    return v


def _plausible(name: str, um: float | None, notes: list[str]) -> float | None:
    if um is None:
        return None
    if not math.isfinite(um) or um <= 0 or um > _MAX_UM:
        notes.append(f"{name} pixel size {um:g} µm ignored (not in 0 < size <= {_MAX_UM:g} µm/px)")
        return None
    return float(um)


def _jsonable(v):
    if isinstance(v, (bool, int, str)) or v is None:
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, (np.integer, np.floating)):
        return _jsonable(v.item())
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    return str(v)


def _ome(tif: tifffile.TiffFile, notes: list[str]) -> tuple[float | None, dict] | None:
    if not tif.is_ome or not tif.ome_metadata:
        return None
    try:
        ome = tifffile.xml2dict(tif.ome_metadata).get("OME", {})
    except Exception as exc:  # noqa: BLE001 - malformed XML
        notes.append(f"OME-XML not parsed: {exc}")
        return None
    image = ome.get("Image", {})
    if isinstance(image, list):
        image = image[0] if image else {}
    pixels = image.get("Pixels", {}) if isinstance(image, dict) else {}
    raw = {k: _jsonable(pixels.get(k)) for k in ("PhysicalSizeX", "PhysicalSizeXUnit", "PhysicalSizeY",
                                                 "PhysicalSizeYUnit") if k in pixels}
    if "PhysicalSizeX" not in pixels:
        return None, raw
    unit = pixels.get("PhysicalSizeXUnit", "µm")
    factor = _unit_um(unit)
    if factor is None:
        notes.append(f"OME PhysicalSizeXUnit {unit!r} is not a length unit")
        return None, raw
    return _plausible("OME", _finite_um(pixels["PhysicalSizeX"], factor), notes), raw


def _resolution(page) -> float | None:
    tag = page.tags.get("XResolution")
    if tag is None:
        return None
    try:
        num, den = tag.value
        return num / den if num and den else None
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _imagej(tif: tifffile.TiffFile, notes: list[str]) -> tuple[float | None, dict] | None:
    if not tif.is_imagej:
        return None
    ij = tif.imagej_metadata or {}
    unit = ij.get("unit")
    ppu = _resolution(tif.pages.first)
    raw = {"unit": _jsonable(unit), "pixels_per_unit": _jsonable(ppu)}
    if unit is None or ppu is None:
        return None, raw
    factor = _unit_um(unit)
    if factor is None:
        if str(unit).strip().lower() not in ("pixel", "pixels", ""):
            notes.append(f"ImageJ unit {unit!r} is not a length unit")
        return None, raw
    return _plausible("ImageJ", factor / ppu, notes), raw


def _fei(tif: tifffile.TiffFile, notes: list[str]) -> tuple[float | None, dict] | None:
    if not tif.is_fei:
        return None
    fei = tif.fei_metadata or {}
    raw: dict = {}
    for section in ("Scan", "EScan", "Image"):
        sec = fei.get(section)
        if isinstance(sec, dict):
            for key in ("PixelWidth", "PixelHeight", "HorFieldsize", "MagCanvasRealWidth"):
                if key in sec:
                    raw[f"{section}.{key}"] = _jsonable(sec[key])
    for section in ("Scan", "EScan"):
        sec = fei.get(section)
        if isinstance(sec, dict) and "PixelWidth" in sec:
            return _plausible("FEI", _finite_um(sec["PixelWidth"], 1e6), notes), raw
    return None, raw


def _zeiss_sem(tif: tifffile.TiffFile, notes: list[str]) -> tuple[float | None, dict, object] | None:
    if not tif.is_sem:
        return None
    sem = tif.sem_metadata or {}
    raw = {}
    for key in ("ap_image_pixel_size", "ap_pixel_size", "ap_mag", "ap_wd"):
        if key in sem:
            raw[key] = _jsonable(sem[key])
    mag = sem.get("ap_mag")
    for key in ("ap_image_pixel_size", "ap_pixel_size"):
        entry = sem.get(key)
        if not isinstance(entry, tuple) or len(entry) < 2:
            continue
        value = entry[1]
        unit = entry[2] if len(entry) > 2 else None
        if isinstance(value, str):  # "25.5nm" without a space, or an unparsed number
            m = re.fullmatch(r"\s*([-+0-9.eE]+)\s*([^\s\d]+)?\s*", value)
            if m:
                value, unit = m.group(1), m.group(2) or unit
        factor = _unit_um(unit) if unit is not None else None
        if factor is None:
            notes.append(f"Zeiss SEM {key} {entry!r} has no length unit")
            continue
        return _plausible("Zeiss SEM", _finite_um(value, factor), notes), raw, mag
    return None, raw, mag


def _baseline(page, notes: list[str]) -> tuple[float | None, dict] | None:
    ppu = _resolution(page)
    if ppu is None:
        return None
    tag = page.tags.get("ResolutionUnit")
    unit = int(tag.value) if tag is not None else 2
    raw = {"XResolution": _jsonable(ppu), "ResolutionUnit": {1: "none", 2: "inch", 3: "centimeter"}.get(unit, unit)}
    um_per_unit = {2: 25_400.0, 3: 10_000.0}.get(unit)  # inch, centimetre; 1 = no unit
    if um_per_unit is None or ppu <= 0:
        return None, raw
    # 72/96/300 dpi are what writers put when they know nothing: not a calibration.
    if unit == 2 and round(ppu) in (72, 96, 300) and abs(ppu - round(ppu)) < 1e-6:
        return None, raw
    return _plausible("TIFF resolution", um_per_unit / ppu, notes), raw


def _tiff_calibration(tif: tifffile.TiffFile) -> tuple[float | None, dict]:
    """Pixel size (µm) from a TIFF's metadata and the metadata dict of :class:`Scan`."""
    notes: list[str] = []
    calib: dict = {}
    found: list[tuple[str, float]] = []
    meta: dict = {"format": "tiff", "vendor": None}
    page = tif.pages.first
    readers = (("ome", _ome), ("imagej", _imagej), ("fei", _fei), ("zeiss_sem", _zeiss_sem))
    for name, fn in readers:
        try:
            got = fn(tif, notes)
        except Exception as exc:  # noqa: BLE001 - a vendor block we cannot parse must not lose the scan
            notes.append(f"{name} metadata not parsed: {exc}")
            continue
        if got is None:
            continue
        meta["vendor"] = meta["vendor"] or name
        size, raw = got[0], got[1]
        if name == "zeiss_sem" and got[2] is not None:
            meta["magnification"] = _jsonable(got[2])
        calib[name] = raw
        if size is not None:
            found.append((name, size))
    got = _baseline(page, notes)
    if got is not None:
        calib["resolution_tags"] = got[1]
        if got[0] is not None:
            found.append(("resolution_tags", got[0]))
    meta["calibration"] = calib
    size = None
    if found:
        name, size = found[0]
        meta["pixel_size_from"] = name
        for other, v in found[1:]:
            if abs(v - size) > 0.01 * size and not (name == "imagej" and other == "resolution_tags"):
                notes.append(f"{name} {size:.6g} µm/px used; {other} says {v:.6g} µm/px")
    meta["notes"] = notes
    return size, meta


def _read_tiff(path: Path) -> tuple[np.ndarray, float | None, dict]:
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.pages:
                raise ScanReadError(f"TIFF file has no pages: {path}")
            pixels = tif.pages.first.asarray()
            size, meta = _tiff_calibration(tif)
            if len(tif.pages) > 1:
                meta["notes"].append(f"{len(tif.pages)} pages; the first one is read")
    except ScanReadError:
        raise
    except Exception as exc:  # tifffile raises many types for broken files
        raise ScanReadError(f"cannot read TIFF {path}: {exc}") from exc
    if pixels.ndim == 3 and pixels.shape[0] in (3, 4) and pixels.shape[-1] not in (3, 4):
        pixels = np.moveaxis(pixels, 0, -1)  # planar RGB
    return pixels, size, meta


# ---------------------------------------------------------------- vendor formats (optional extra)


def _import_reader(module: str, path: Path, package: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingReaderError(
            f"reading {path.name} ({path.suffix.lower()}) needs the optional vendor reader ({package}), "
            f"which is not installed: {VENDOR_EXTRA}"
        ) from exc


def _czi(path: Path, *, shape_only: bool):
    pyczi = _import_reader("pylibCZIrw.czi", path, "pylibCZIrw")
    notes: list[str] = []
    try:
        with pyczi.open_czi(str(path)) as czi:
            rect = czi.total_bounding_rectangle
            shape = (int(rect.h), int(rect.w))
            if shape_only:
                return shape, None
            plane = {k: 0 for k in czi.total_bounding_box if k not in ("X", "Y")}
            pixels = czi.read(plane={k: v for k, v in plane.items() if k in ("C", "Z", "T")})
            pixel_type = czi.pixel_types.get(0)
            md = czi.metadata
            bbox = dict(czi.total_bounding_box)
    except MissingReaderError:
        raise
    except Exception as exc:  # noqa: BLE001 - the reader raises its own types
        raise ScanReadError(f"cannot read CZI {path}: {exc}") from exc
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    elif pixels.ndim == 3 and pixels.shape[-1] == 3:
        pixels = pixels[..., ::-1]  # Bgr24/Bgr48 -> RGB
    raw: dict = {}
    size = None
    try:
        items = md["ImageDocument"]["Metadata"]["Scaling"]["Items"]["Distance"]
        items = items if isinstance(items, list) else [items]
        for it in items:
            raw[f"Scaling.{it.get('@Id')}"] = _jsonable(it.get("Value"))
            if it.get("@Id") == "X":
                size = _plausible("CZI", _finite_um(it.get("Value"), 1e6), notes)  # metres
    except (KeyError, TypeError):
        notes.append("CZI has no Scaling metadata")
    if plane := {k: v for k, v in bbox.items() if k in ("C", "Z", "T") and v[1] - v[0] > 1}:
        notes.append(f"first plane of {plane} read")
    meta = {"format": "czi", "vendor": "zeiss_czi", "pixel_type": _jsonable(pixel_type), "calibration": {"czi": raw},
            "notes": notes}
    if size is not None:
        meta["pixel_size_from"] = "czi"
    return pixels, size, meta


def _nd2(path: Path, *, shape_only: bool):
    nd2 = _import_reader("nd2", path, "nd2")
    notes: list[str] = []
    try:
        with nd2.ND2File(str(path)) as f:
            sizes = dict(f.sizes)
            shape = (int(sizes["Y"]), int(sizes["X"]))
            if shape_only:
                return shape, None
            frame = np.asarray(f.read_frame(0))
            vs = f.voxel_size()
    except MissingReaderError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ScanReadError(f"cannot read ND2 {path}: {exc}") from exc
    if frame.ndim == 3 and frame.shape[-1] not in (3, 4):
        notes.append(f"{frame.shape[0]} channels; the first one is read")
        frame = frame[0]
    size = _plausible("ND2", _finite_um(getattr(vs, "x", None), 1.0), notes)
    meta = {"format": "nd2", "vendor": "nikon_nd2", "calibration": {"nd2": {"voxel_size_um": _jsonable(tuple(vs))}},
            "sizes": {k: int(v) for k, v in sizes.items()}, "notes": notes}
    if size is not None:
        meta["pixel_size_from"] = "nd2"
    return frame, size, meta


def _vendor(path: Path, *, shape_only: bool = False):
    suffix = path.suffix.lower()
    if suffix == ".czi" or (suffix not in VENDOR_SUFFIXES and _sniff(path) == "czi"):
        return _czi(path, shape_only=shape_only)
    if suffix == ".nd2":
        return _nd2(path, shape_only=shape_only)
    raise ScanReadError(f"unsupported vendor format {suffix!r} for {path}")


# ---------------------------------------------------------------- public API


def _read(path: Path, *, max_pixels: int | None, max_file_bytes: int | None) -> tuple[np.ndarray, float | None, dict]:
    fmt = _check_limits(path, max_pixels=max_pixels, max_file_bytes=max_file_bytes)
    suffix = path.suffix.lower()
    if suffix in VENDOR_SUFFIXES:
        pixels, size, meta = _vendor(path)
    elif fmt == "tiff" or (suffix in _TIFF and fmt == "unknown"):
        pixels, size, meta = _read_tiff(path)
    else:
        data = np.fromfile(path, dtype=np.uint8)
        pixels = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if pixels is None:
            raise ScanReadError(f"cannot decode image (corrupt or truncated?): {path}")
        if pixels.ndim == 3:
            code = cv2.COLOR_BGRA2RGBA if pixels.shape[-1] == 4 else cv2.COLOR_BGR2RGB
            pixels = cv2.cvtColor(pixels, code)
        size, meta = None, {"format": fmt, "vendor": None, "notes": []}
    try:
        gray = to_gray(pixels)
    except ValueError as exc:
        raise ScanReadError(f"cannot use the pixels of {path}: {exc}") from exc
    return gray, size, meta


def read_image(
    path: str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, max_file_bytes: int | None = None
) -> tuple[np.ndarray, float | None]:
    """Read an image file as gray pixels plus the pixel size (µm) found in its metadata (or None).

    Same limits and errors as :func:`read_scan`.
    """
    pixels, size, _ = _read(Path(path), max_pixels=max_pixels, max_file_bytes=max_file_bytes)
    return pixels, size


def read_scan(
    path: str | Path,
    *,
    scan_id: str | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_file_bytes: int | None = None,
    pixel_size_um: float | None = None,
) -> Scan:
    """Read one scan from an image file.

    Parameters
    ----------
    path : str or Path
        PNG, JPEG, BMP or TIFF file (8/16-bit, gray/RGB/RGBA; the first page of a
        multi-page TIFF; BigTIFF); ``.czi`` / ``.nd2`` with the ``vendor`` extra.
    scan_id : str, optional
        Identifier; defaults to the file name without extension.
    max_pixels : int or None
        Largest ``rows * cols`` decoded (default 500 Mpx), checked from the file's
        header before any pixel is decoded.  ``None`` disables the check.
    max_file_bytes : int, optional
        Largest file size, checked with ``os.stat`` before reading.
    pixel_size_um : float, optional
        Backward-compatible: a pixel size from the configuration; it wins over the
        file metadata (``pixel_size_source='config'``).  New callers choose with
        :func:`data.calibration.resolve_pixel_size` instead.

    Returns
    -------
    Scan
        ``pixel_size_source`` is ``'metadata'`` when the file gave a valid pixel
        size, ``'config'`` for ``pixel_size_um=``, else ``'none'``; ``metadata``
        holds the format, vendor, raw calibration fields and notes.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    MissingReaderError
        A vendor file without the ``vendor`` extra (a :class:`ScanReadError`).
    ScanReadError
        If the file cannot be decoded or is over a limit (the message gives its size).
    """
    path = Path(path)
    pixels, file_size, meta = _read(path, max_pixels=max_pixels, max_file_bytes=max_file_bytes)
    if file_size is not None:
        meta["metadata_pixel_size_um"] = file_size
    if pixel_size_um is not None:
        size, source = float(pixel_size_um), "config"
    elif file_size is not None:
        size, source = file_size, "metadata"
    else:
        size, source = None, "none"
    return Scan(
        pixels=pixels,
        scan_id=scan_id if scan_id is not None else path.stem,
        pixel_size_um=size,
        source=path,
        pixel_size_source=source,
        metadata=meta,
    )
