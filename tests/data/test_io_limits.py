"""Hostile inputs: pixel and file-size limits are checked from the header, before any decoding (#19.3)."""

import os
import struct
import time
import tracemalloc
import zlib

import cv2
import numpy as np
import pytest
import tifffile

from data import ScanReadError, image_shape, read_scan


def png_bomb(width: int, height: int, rows_per_block: int = 100) -> bytes:
    """A valid PNG of zeros: repeated full-flush deflate blocks, so 900 Mpx take < 1 MB and ~0.1 s to build."""
    block = bytes((width + 1) * rows_per_block)  # filter byte + row, all zero
    co = zlib.compressobj(9)
    first = co.compress(block) + co.flush(zlib.Z_FULL_FLUSH)
    unit = co.compress(block) + co.flush(zlib.Z_FULL_FLUSH)  # same bytes for every later block
    tail = co.flush()
    total = (width + 1) * height
    adler = ((total % 65521) << 16) | 1  # adler32 of `total` zero bytes
    stream = first + unit * (height // rows_per_block - 1) + tail[:-4] + struct.pack(">I", adler)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


def test_png_bomb_construction_is_a_real_png():
    px = cv2.imdecode(np.frombuffer(png_bomb(300, 200), np.uint8), cv2.IMREAD_UNCHANGED)
    assert px.shape == (200, 300) and px.max() == 0


def _fast_and_small(fn):
    tracemalloc.start()
    t = time.perf_counter()
    try:
        fn()
    finally:
        elapsed = time.perf_counter() - t
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return elapsed, peak


def test_png_bomb_fails_from_header(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(png_bomb(30000, 30000))  # 900 Mpx of zeros in < 1 MB
    assert p.stat().st_size < 2_000_000
    assert image_shape(p) == (30000, 30000)
    with pytest.raises(ScanReadError, match=r"30000 x 30000 px = 900.0 Mpx.*max_pixels = 500.0 Mpx"):
        read_scan(p)
    elapsed, peak = _fast_and_small(lambda: pytest.raises(ScanReadError, read_scan, p))
    assert elapsed < 0.5 and peak < 20e6


def _tiff_claiming(path, rows, cols):
    tifffile.imwrite(path, np.zeros((4, 4), np.uint8))
    with tifffile.TiffFile(path) as t:
        tags = t.pages[0].tags
        offsets = {n: tags[n].valueoffset for n in ("ImageWidth", "ImageLength")}
        dtypes = {n: tags[n].dtype for n in ("ImageWidth", "ImageLength")}
    assert all(int(d) == 4 for d in dtypes.values())  # LONG: 100000 fits in place
    with open(path, "r+b") as f:
        for name, value in (("ImageWidth", cols), ("ImageLength", rows)):
            f.seek(offsets[name])
            f.write(struct.pack("<I", value))
    return path


def test_tiff_claiming_100000_squared_fails_in_milliseconds(tmp_path):
    p = _tiff_claiming(tmp_path / "liar.tif", 100_000, 100_000)
    assert p.stat().st_size < 1000
    assert image_shape(p) == (100_000, 100_000)
    elapsed, peak = _fast_and_small(lambda: pytest.raises(ScanReadError, read_scan, p))
    assert elapsed < 0.5 and peak < 20e6
    with pytest.raises(ScanReadError, match=r"100000 x 100000 px = 10,000.0 Mpx"):
        read_scan(p)


def test_max_pixels_is_configurable(tmp_path):
    p = tmp_path / "s.png"
    cv2.imwrite(str(p), np.zeros((100, 200), np.uint8))
    with pytest.raises(ScanReadError, match="100 x 200 px"):
        read_scan(p, max_pixels=10_000)
    assert read_scan(p, max_pixels=20_000).shape == (100, 200)
    assert read_scan(p, max_pixels=None).shape == (100, 200)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".jpg"])
def test_sparse_4gb_file_is_not_read(tmp_path, suffix):
    p = tmp_path / f"huge{suffix}"
    with open(p, "wb") as f:
        f.truncate(4 << 30)  # sparse: instant, no disk used
    elapsed, peak = _fast_and_small(lambda: pytest.raises(ScanReadError, read_scan, p))
    assert elapsed < 0.5 and peak < 20e6
    with pytest.raises(ScanReadError, match=r"4,294,967,296 bytes, over the file-size limit"):
        read_scan(p, max_file_bytes=1 << 30)


def test_header_shapes_match_the_decoders(tmp_path):
    img = np.zeros((37, 53), np.uint8)
    for suffix in (".png", ".jpg", ".bmp", ".tif"):
        p = tmp_path / f"x{suffix}"
        if suffix == ".tif":
            tifffile.imwrite(p, img)
        else:
            cv2.imwrite(str(p), img)
        assert image_shape(p) == (37, 53), suffix
    rgb = tmp_path / "c.jpg"
    cv2.imwrite(str(rgb), np.zeros((21, 34, 3), np.uint8))
    assert image_shape(rgb) == (21, 34)
    prog = tmp_path / "p.jpg"
    cv2.imwrite(str(prog), np.zeros((21, 34), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert image_shape(prog) == (21, 34)


def test_format_is_sniffed_not_trusted_from_suffix(tmp_path):
    p = tmp_path / "really_a_png.tif"
    ok, buf = cv2.imencode(".png", np.full((5, 6), 7, np.uint8))
    p.write_bytes(buf.tobytes())
    assert read_scan(p).pixels.shape == (5, 6)


def test_empty_and_garbage_files(tmp_path):
    e = tmp_path / "empty.png"
    e.write_bytes(b"")
    with pytest.raises(ScanReadError, match="empty"):
        read_scan(e)
    g = tmp_path / "garbage.jpg"
    g.write_bytes(os.urandom(64).replace(b"\xff", b"\x00"))
    with pytest.raises(ScanReadError):
        read_scan(g)
    trunc = tmp_path / "trunc.jpg"
    ok, buf = cv2.imencode(".jpg", np.zeros((30, 30), np.uint8))
    trunc.write_bytes(buf.tobytes()[:40])
    with pytest.raises(ScanReadError):
        read_scan(trunc)
