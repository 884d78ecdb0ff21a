"""Calibration: per-file CSV table, precedence config > csv > metadata > scale bar, validation (#14.1)."""

import math

import pytest

from data import CalibrationError, calibration_key, load_calibration_csv, resolve_pixel_size, validate_pixel_size


def test_precedence():
    assert resolve_pixel_size().source == "none"
    assert resolve_pixel_size(scale_bar_um=0.3).source == "scale_bar"
    assert resolve_pixel_size(metadata_um=0.3, scale_bar_um=0.3).source == "metadata"
    assert resolve_pixel_size(csv_um=0.3, metadata_um=0.3).source == "csv"
    c = resolve_pixel_size(config_um=0.3, csv_um=0.3, metadata_um=0.3, scale_bar_um=0.3)
    assert (c.pixel_size_um, c.source, c.notes) == (0.3, "config", ())


def test_conflict_is_a_note_naming_both_values():
    c = resolve_pixel_size(config_um=0.5, metadata_um=0.25)
    assert c.pixel_size_um == 0.5 and c.notes == ("config 0.5 µm/px wins over metadata 0.25 µm/px",)
    c = resolve_pixel_size(metadata_um=1.0, scale_bar_um=1.005)  # within 1 %: no conflict
    assert c.notes == ()
    c = resolve_pixel_size(csv_um=2.0, scale_bar_um=1.9)
    assert c.notes == ("calibration table 2 µm/px wins over scale bar 1.9 µm/px",)


@pytest.mark.parametrize("bad", [0, -1.0, math.inf, math.nan, 1001.0, "abc", True])
def test_invalid_values_are_rejected_with_a_note(bad):
    c = resolve_pixel_size(metadata_um=bad, scale_bar_um=0.5)
    assert c.source == "scale_bar" and c.pixel_size_um == 0.5
    assert len(c.notes) == 1 and c.notes[0].startswith("metadata pixel size rejected")


@pytest.mark.parametrize("bad", [0, -2, math.inf, math.nan, 5000, "x"])
def test_validate_pixel_size(bad):
    with pytest.raises(ValueError, match=r"data.pixel_size_um = .* is invalid"):
        validate_pixel_size(bad)
    assert validate_pixel_size(None) is None
    assert validate_pixel_size("0.25") == 0.25
    with pytest.raises(ValueError, match="my.key"):
        validate_pixel_size(0, what="my.key")


def test_csv_relative_absolute_and_resolved(tmp_path):
    (tmp_path / "scans").mkdir()
    a = tmp_path / "scans" / "a.tif"
    b = tmp_path / "elsewhere.png"
    a.touch()
    b.touch()
    (tmp_path / "link.tif").symlink_to(a)
    csv = tmp_path / "cal.csv"
    csv.write_text(f"\ufeffpath,pixel_size_um,comment\n# a comment\nscans/a.tif,0.5,x\n\n{b},2,\n")
    table = load_calibration_csv(csv)
    assert table == {calibration_key(a): 0.5, calibration_key(b): 2.0}
    # matched on the resolved path: a link to the file finds its row
    assert table[calibration_key(tmp_path / "link.tif")] == 0.5
    assert table[calibration_key(tmp_path / "scans" / ".." / "scans" / "a.tif")] == 0.5


@pytest.mark.parametrize(
    "body,match",
    [
        ("file,size\na.tif,1\n", "line 1: header"),
        ("path,pixel_size_um\na.tif,abc\n", "line 2: pixel_size_um 'abc' is invalid: 'abc' is not a number"),
        ("path,pixel_size_um\na.tif,0.5\nb.tif,0\n", "line 3: pixel_size_um '0' is invalid"),
        ("path,pixel_size_um\na.tif,inf\n", "line 2.*not finite"),
        ("path,pixel_size_um\n,0.5\n", "line 2: empty path"),
        ("path,pixel_size_um\na.tif\n", "line 2: expected 2 columns"),
        ("path,pixel_size_um\na.tif,0.5\na.tif,0.6\n", "line 3: a.tif is listed twice"),
        ("", "empty"),
    ],
)
def test_csv_bad_rows_name_the_line(tmp_path, body, match):
    p = tmp_path / "cal.csv"
    p.write_text(body)
    with pytest.raises(CalibrationError, match=match):
        load_calibration_csv(p)


def test_csv_missing(tmp_path):
    with pytest.raises(CalibrationError, match="not found"):
        load_calibration_csv(tmp_path / "nope.csv")


def test_csv_same_value_twice_is_fine(tmp_path):
    p = tmp_path / "cal.csv"
    p.write_text("path,pixel_size_um\na.tif,0.5\n./a.tif,0.5\n")
    assert list(load_calibration_csv(p).values()) == [0.5]
