"""read_scan: formats, dtypes, pixel size and bad input."""

import cv2
import numpy as np
import pytest
import tifffile

from data import Scan, ScanReadError, read_scan, to_gray


@pytest.fixture
def gray():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (40, 60), dtype=np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_lossless_formats_roundtrip(tmp_path, gray, suffix):
    p = tmp_path / f"s{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(p, gray)
    else:
        assert cv2.imwrite(str(p), gray)
    scan = read_scan(p)
    assert isinstance(scan, Scan)
    np.testing.assert_array_equal(scan.pixels, gray)
    assert scan.scan_id == "s" and scan.pixel_size_um is None and scan.source == p


def test_jpeg_is_read_as_gray(tmp_path, gray):
    p = tmp_path / "s.jpg"
    cv2.imwrite(str(p), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])
    scan = read_scan(p)
    assert scan.pixels.shape == gray.shape and scan.pixels.dtype == np.uint8
    assert np.abs(scan.pixels.astype(int) - gray).mean() < 8


def test_16bit_tiff_keeps_depth(tmp_path):
    img = (np.arange(30 * 20, dtype=np.uint16).reshape(30, 20) * 97) % 65535
    p = tmp_path / "deep.tif"
    tifffile.imwrite(p, img)
    scan = read_scan(p)
    assert scan.pixels.dtype == np.uint16
    np.testing.assert_array_equal(scan.pixels, img)


def test_16bit_png(tmp_path):
    img = np.full((10, 12), 4000, np.uint16)
    p = tmp_path / "deep.png"
    cv2.imwrite(str(p), img)
    assert read_scan(p).pixels.dtype == np.uint16


def test_rgba_png_to_gray(tmp_path):
    rgba = np.zeros((8, 9, 4), np.uint8)
    rgba[..., 0] = 200  # red
    rgba[..., 3] = 128
    p = tmp_path / "c.png"
    cv2.imwrite(str(p), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    px = read_scan(p).pixels
    assert px.ndim == 2 and px.dtype == np.uint8
    assert int(px[0, 0]) == round(0.299 * 200)


def test_multipage_and_bigtiff_first_page(tmp_path):
    pages = np.stack([np.full((6, 7), v, np.uint8) for v in (10, 20, 30)])
    p = tmp_path / "multi.tif"
    with tifffile.TiffWriter(p, bigtiff=True) as w:
        for page in pages:
            w.write(page, photometric="minisblack")
    with tifffile.TiffFile(p) as t:
        assert t.is_bigtiff and len(t.pages) == 3
    assert int(read_scan(p).pixels[0, 0]) == 10


def test_tiff_resolution_tags_give_pixel_size(tmp_path, gray):
    p = tmp_path / "cal.tif"
    # 2 pixels per micrometre = 20000 pixels per centimetre -> 0.5 um/px
    tifffile.imwrite(p, gray, resolution=(20000, 20000), resolutionunit="CENTIMETER")
    assert read_scan(p).pixel_size_um == pytest.approx(0.5)
    assert read_scan(p, pixel_size_um=2.0).pixel_size_um == 2.0  # config wins


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="not found"):
        read_scan("/nonexistent/scan.png")


def test_corrupt_and_truncated(tmp_path, gray):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(ScanReadError, match="cannot decode"):
        read_scan(bad)
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, gray)
    trunc = tmp_path / "trunc.tif"
    trunc.write_bytes(good.read_bytes()[:100])
    with pytest.raises(ScanReadError):
        read_scan(trunc)


def test_unsupported_suffix(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("x")
    with pytest.raises(ScanReadError, match="unsupported"):
        read_scan(p)


def test_to_gray_rejects_bad_shapes_and_nan():
    with pytest.raises(ValueError, match="shape"):
        to_gray(np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        to_gray(np.array([[np.nan, 0.5]]))
    assert to_gray(np.array([[0.0, 1.0]])).tolist() == [[0, 255]]
    assert to_gray(np.array([[True, False]])).tolist() == [[255, 0]]


def test_scan_validates():
    with pytest.raises(ValueError, match="2-D"):
        Scan(np.zeros((2, 2, 2), np.uint8), "x")
    with pytest.raises(ValueError, match="uint8 or uint16"):
        Scan(np.zeros((2, 2), np.float32), "x")
