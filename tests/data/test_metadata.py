"""Pixel size from the files microscope software writes (built here with data.labfiles), and vendor formats."""

import sys

import numpy as np
import pytest
import tifffile

from data import MissingReaderError, Scan, ScanReadError, read_scan
from data import labfiles as L


@pytest.fixture
def img():
    return (np.arange(60 * 80) % 200).astype(np.uint8).reshape(60, 80)


CASES = [
    ("imagej", lambda p, a: L.write_imagej_tiff(p, a, pixel_size_um=0.5), 0.5),  # Fiji: unit=micron, 2 px/µm
    ("imagej", lambda p, a: L.write_imagej_tiff(p, a, pixel_size_um=0.0123, unit="nm"), 0.0123),
    ("imagej", lambda p, a: L.write_imagej_tiff(p, a, pixel_size_um=0.8, unit="\\u00B5m"), 0.8),
    ("ome", lambda p, a: L.write_ome_tiff(p, a, pixel_size_um=0.25), 0.25),
    ("ome", lambda p, a: L.write_ome_tiff(p, a, pixel_size_um=0.0031, unit="nm"), 0.0031),
    ("fei", lambda p, a: L.write_fei_tiff(p, a, pixel_size_um=0.25), 0.25),  # PixelWidth=2.5e-007
    ("fei", lambda p, a: L.write_fei_tiff(p, a, pixel_size_um=0.00781, tag=34680), 0.00781),
    ("zeiss_sem", lambda p, a: L.write_zeiss_sem_tiff(p, a, pixel_size_um=0.0255), 0.0255),  # 25.5 nm
    ("zeiss_sem", lambda p, a: L.write_zeiss_sem_tiff(p, a, pixel_size_um=1.25, unit="µm", image_pixel_size=False), 1.25),
    (None, lambda p, a: L.write_resolution_tiff(p, a, pixel_size_um=0.5), 0.5),
    (None, lambda p, a: L.write_resolution_tiff(p, a, pixel_size_um=2.0, unit="INCH"), 2.0),
]


@pytest.mark.parametrize("vendor,write,want", CASES)
def test_pixel_size_read_exactly(tmp_path, img, vendor, write, want):
    p = write(tmp_path / "s.tif", img)
    s = read_scan(p)
    assert s.pixel_size_um == pytest.approx(want, rel=1e-12)
    assert s.pixel_size_source == "metadata" and s.metadata["vendor"] == vendor
    np.testing.assert_array_equal(s.pixels, img)
    assert s.metadata["notes"] == []


def test_tifffile_parsers_read_our_vendor_tags(tmp_path, img):
    with tifffile.TiffFile(L.write_fei_tiff(tmp_path / "f.tif", img, pixel_size_um=0.25)) as t:
        assert t.is_fei and t.fei_metadata["Scan"]["PixelWidth"] == pytest.approx(2.5e-7)
    with tifffile.TiffFile(L.write_zeiss_sem_tiff(tmp_path / "z.tif", img, pixel_size_um=0.0255)) as t:
        assert t.is_sem and t.sem_metadata["ap_pixel_size"] == ("Pixel Size", 25.5, "nm")
        assert t.sem_metadata["ap_mag"] == ("Mag", "1.00 K X")
    with tifffile.TiffFile(L.write_imagej_tiff(tmp_path / "i.tif", img, pixel_size_um=0.5)) as t:
        assert t.is_imagej and t.imagej_metadata["unit"] == "micron"


def test_zeiss_magnification_in_metadata(tmp_path, img):
    s = read_scan(L.write_zeiss_sem_tiff(tmp_path / "z.tif", img, pixel_size_um=0.1, magnification="500 X"))
    assert s.metadata["magnification"] == ["Mag", 500, "X"]  # as tifffile parses "Mag = 500 X"


def test_config_value_wins_and_old_keyword_works(tmp_path, img):
    p = L.write_ome_tiff(tmp_path / "o.tif", img, pixel_size_um=0.25)
    s = read_scan(p, pixel_size_um=0.5)
    assert s.pixel_size_um == 0.5 and s.pixel_size_source == "config"
    assert s.metadata["metadata_pixel_size_um"] == 0.25


def test_dpi_placeholders_are_not_a_calibration(tmp_path, img):
    for dpi in (72, 96, 300):
        p = tmp_path / f"d{dpi}.tif"
        tifffile.imwrite(p, img, resolution=(dpi, dpi), resolutionunit="INCH")
        s = read_scan(p)
        assert s.pixel_size_um is None and s.pixel_size_source == "none"
    p = tmp_path / "none.tif"
    tifffile.imwrite(p, img, resolution=(2.0, 2.0), resolutionunit="NONE")
    assert read_scan(p).pixel_size_um is None


@pytest.mark.parametrize(
    "write",
    [
        lambda p, a: L.write_fei_tiff(p, a, pixel_size_um=0.0),  # PixelWidth=0
        lambda p, a: L.write_ome_tiff(p, a, pixel_size_um=5000.0),  # 5 mm per pixel
        lambda p, a: L.write_zeiss_sem_tiff(p, a, pixel_size_um=-1.0),
        lambda p, a: L.write_resolution_tiff(p, a, pixel_size_um=2e6),
    ],
)
def test_absurd_metadata_is_ignored_with_a_note(tmp_path, img, write):
    s = read_scan(write(tmp_path / "bad.tif", img))
    assert s.pixel_size_um is None and s.pixel_size_source == "none"
    assert any("ignored" in n for n in s.metadata["notes"])


def test_fei_nan_pixel_width(tmp_path, img):
    p = tmp_path / "nan.tif"
    tifffile.imwrite(p, img, extratags=[(34682, "s", 0, "[Scan]\r\nPixelWidth=nan\r\n", True)])
    s = read_scan(p)
    assert s.pixel_size_um is None and any("ignored" in n for n in s.metadata["notes"])


def test_conflicting_metadata_is_noted(tmp_path, img):
    # an OME-TIFF whose resolution tags say something else: OME wins, the other value is noted
    p = tmp_path / "both.tif"
    tifffile.imwrite(p, img, ome=True, metadata={"axes": "YX", "PhysicalSizeX": 0.25, "PhysicalSizeXUnit": "µm"},
                     resolution=(10000.0, 10000.0), resolutionunit="CENTIMETER")
    s = read_scan(p)
    assert s.pixel_size_um == 0.25
    assert any("ome 0.25" in n and "1 µm/px" in n for n in s.metadata["notes"])


def test_metadata_is_json_able(tmp_path, img):
    import json

    for i, (_, write, _) in enumerate(CASES):
        json.dumps(read_scan(write(tmp_path / f"s{i}.tif", img)).metadata)


def test_scan_pixel_size_source_contract(img):
    assert Scan(img, "a").pixel_size_source == "none"
    assert Scan(img, "a", pixel_size_um=0.5).pixel_size_source == "config"
    assert Scan(img, "a", pixel_size_um=0.5, pixel_size_source="scale_bar").pixel_size_source == "scale_bar"
    with pytest.raises(ValueError, match="pixel_size_source"):
        Scan(img, "a", pixel_size_um=0.5, pixel_size_source="guess")
    with pytest.raises(ValueError, match="without a pixel size"):
        Scan(img, "a", pixel_size_source="metadata")
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="positive finite"):
            Scan(img, "a", pixel_size_um=bad)


def test_czi_without_the_extra_names_it(tmp_path, img, monkeypatch):
    monkeypatch.setitem(sys.modules, "pylibCZIrw", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "pylibCZIrw.czi", None)
    p = tmp_path / "scan.czi"
    p.write_bytes(b"ZISRAWFILE" + bytes(200))
    with pytest.raises(MissingReaderError, match=r'pip install "quantmet\[vendor\]"') as e:
        read_scan(p)
    assert isinstance(e.value, ScanReadError)


def test_nd2_without_the_extra_names_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nd2", None)
    p = tmp_path / "scan.nd2"
    p.write_bytes(bytes(200))
    with pytest.raises(MissingReaderError, match=r"\(nd2\).*quantmet\[vendor\]"):
        read_scan(p)


def test_czi_with_the_extra(tmp_path, img):
    pytest.importorskip("pylibCZIrw")
    p = L.write_czi(tmp_path / "scan.czi", img, pixel_size_um=0.345)
    s = read_scan(p)
    np.testing.assert_array_equal(s.pixels, img)
    assert s.pixel_size_um == pytest.approx(0.345) and s.metadata["vendor"] == "zeiss_czi"
    with pytest.raises(ScanReadError, match="Mpx"):
        read_scan(p, max_pixels=100)
