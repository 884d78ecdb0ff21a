"""find_annotations: data bars, scale bars and their labels on micrographs built with data.labfiles (#14.2)."""

import cv2
import numpy as np
import pytest

from data.annotations import AnnotationConfig, find_annotations, load_exclusion, parse_length, roi_mask
from data.labfiles import BarStyle, burn_annotations, make_lab_micrograph
from data.synthetic import SyntheticConfig, make_synthetic_scan


@pytest.fixture(scope="module")
def base():
    return make_synthetic_scan(SyntheticConfig(shape=(420, 640), n_impurities=120), seed=5).pixels


def test_parse_length():
    assert parse_length("100 µm") == 100.0
    assert parse_length("50 um") == 50.0
    assert parse_length("0.1 mm") == 100.0
    assert parse_length("500 nm") == 0.5
    assert parse_length("1µm") == 1.0
    assert parse_length("2,5 mm") == 2500.0
    for bad in ("", None, "WD 8.5", "100", "µm", "0 µm", "10 km"):
        assert parse_length(bad) is None


STYLES = [
    # light bar, label above, inside the micrograph (a font the reader learnt)
    BarStyle(pixel_size_um=0.5, value=100, unit="µm", thickness_px=6, polarity="light", position="bottom-right",
             font="dejavu_sans", text_height_px=18),
    # dark bar with end ticks on a light backing box, Hershey font (no µ: 'um')
    BarStyle(pixel_size_um=0.2, value=20, unit="um", thickness_px=5, polarity="dark", position="top-left",
             font="hershey_simplex", text_height_px=16, label_side="below", backing_box=True, end_ticks=True),
    # on a dark SEM data bar holding other text ("WD = 8.5 mm" must not be read as the label)
    BarStyle(pixel_size_um=0.004, value=500, unit="nm", thickness_px=4, polarity="light", position="databar",
             font="dejavu_serif", text_height_px=16, databar_height_px=48, databar_polarity="dark",
             databar_text="EHT = 15.00 kV   WD = 8.5 mm   Mag = 2000 X"),
    # mm label, light data bar at the bottom, bar in the corner above it
    BarStyle(pixel_size_um=2.0, value=0.2, unit="mm", thickness_px=8, polarity="dark", position="top-right",
             font="dejavu_mono", text_height_px=22, space=False, databar_height_px=40, databar_polarity="light",
             databar_text="x100 15kV SEI"),
]


@pytest.mark.slow
@pytest.mark.parametrize("style", STYLES, ids=lambda s: f"{s.font}-{s.position}-{s.polarity}")
def test_scale_bar_read_and_excluded(base, style):
    px, truth = burn_annotations(base, style)
    ann = find_annotations(px)
    assert len(ann.scale_bars) == 1, ann
    bar = ann.scale_bars[0]
    assert bar.label is not None and parse_length(bar.label) == pytest.approx(style.length_um)
    on_bar = style.position == "databar"
    want = ("light" if style.databar_polarity == "dark" else "dark") if on_bar else style.polarity
    assert bar.polarity == want
    assert abs(bar.length_px - truth.bar_length_px) <= 1.0
    assert ann.pixel_size_um == pytest.approx(style.pixel_size_um, rel=0.03)
    assert (ann.mask & truth.mask).sum() == truth.mask.sum()  # every annotation pixel is excluded
    if style.databar_height_px:
        assert ann.data_bar == truth.data_bar
    else:
        assert ann.data_bar is None
    # the mask stays near the annotation: the box around bar and label, grown by a small margin
    b, lb = bar.box, bar.label_box
    h = max(b[2], lb[2]) - min(b[0], lb[0]) + 1
    w = max(b[3], lb[3]) - min(b[1], lb[1]) + 1
    extra = truth.mask.sum() if style.backing_box else 0
    assert ann.mask.sum() <= (h + 24) * (w + 24) + extra + style.databar_height_px * px.shape[1]


def test_plain_micrographs_have_no_annotation(base):
    ann = find_annotations(base)
    assert ann.data_bar is None and ann.scale_bars == () and not ann.mask.any() and ann.pixel_size_um is None
    rng = np.random.default_rng(0)
    noise = np.clip(rng.normal(120, 25, (200, 300)), 0, 255).astype(np.uint8)
    assert not find_annotations(noise).mask.any()


def test_uniform_noisy_band_along_an_edge_is_not_a_data_bar(base):
    """A coating's substrate band: one level along an edge, but with a sensor's noise (not rendered)."""
    rng = np.random.default_rng(3)
    px = base.copy()
    band = np.clip(rng.normal(215, 2.5, (120, px.shape[1])), 0, 255).astype(np.uint8)
    px[-120:] = band
    assert find_annotations(px).data_bar is None
    # the same band rendered digitally flat, with text on it, is a data bar
    flat = base.copy()
    flat[-40:] = 215
    cv2.putText(flat, "x100 15kV SEI", (20, flat.shape[0] - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 40, 2)
    ann = find_annotations(flat)
    assert ann.data_bar == (flat.shape[0] - 40, 0, flat.shape[0] - 1, flat.shape[1] - 1)
    # a JPEG of it (q85) stays flat enough
    ok, buf = cv2.imencode(".jpg", flat, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert find_annotations(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)).data_bar is not None


@pytest.mark.slow
def test_impurity_like_shapes_are_not_scale_bars(base):
    px = base.copy()
    # an irregular dark stringer and a plain dark rectangle without any text near it
    rr, cc = np.mgrid[0:px.shape[0], 0:px.shape[1]]
    stringer = (np.abs(rr - 100 - 0.05 * (cc - 300)) < 2 + 1.5 * np.sin(cc / 7.0)) & (cc > 300) & (cc < 420)
    px[stringer] = 20
    ann = find_annotations(px)
    assert ann.scale_bars == () and not ann.mask[stringer].any()
    # a short, faint rectangle with no text beside it is not taken; a long, contrasted one is (label None)
    clean = np.full((200, 300), 140, np.uint8)
    clean[100:106, 100:135] = 60
    assert find_annotations(clean).scale_bars == ()
    clean[150:156, 100:190] = 10
    (bar,) = find_annotations(clean).scale_bars
    assert bar.box == (150, 100, 155, 189) and bar.label is None


@pytest.mark.slow
def test_unreadable_label_is_still_excluded(base):
    style = BarStyle(pixel_size_um=0.5, value=100, unit="µm", thickness_px=6, polarity="light",
                     position="bottom-left", font="dejavu_sans", text_height_px=18)
    px, truth = burn_annotations(base, style)
    # overwrite the label with text that is no length
    r0, c0, r1, c1 = truth.label_box
    px[r0:r1 + 1, c0:c1 + 1] = base[r0:r1 + 1, c0:c1 + 1]
    cv2.putText(px, "SCALE", (c0, r1), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 255, 2)
    ann = find_annotations(px)
    assert len(ann.scale_bars) == 1 and ann.scale_bars[0].label is None and ann.pixel_size_um is None
    assert any("label not read" in n for n in ann.notes)
    b0, bc0, b1, bc1 = truth.bar_box
    assert ann.mask[b0:b1 + 1, bc0:bc1 + 1].all()


@pytest.mark.slow
def test_uint16_and_jpeg(base):
    lm = make_lab_micrograph(3, base=base, style=STYLES[0])
    deep = lm.pixels.astype(np.uint16) * 257
    ann = find_annotations(deep)
    assert ann.pixel_size_um == pytest.approx(0.5, rel=0.03)
    ok, buf = cv2.imencode(".jpg", lm.pixels, [cv2.IMWRITE_JPEG_QUALITY, 80])
    ann = find_annotations(cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE))
    assert ann.pixel_size_um == pytest.approx(0.5, rel=0.03)


def test_switches_and_bad_input(base):
    px, truth = burn_annotations(base, STYLES[2])
    off = find_annotations(px, cfg=AnnotationConfig(scale_bars=False))
    assert off.scale_bars == () and off.data_bar == truth.data_bar
    assert not find_annotations(px, cfg=AnnotationConfig(data_bars=False, scale_bars=False)).mask.any()
    with pytest.raises(ValueError, match="2-D"):
        find_annotations(np.zeros((3, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="margin_px"):
        AnnotationConfig(margin_px=-1)


def test_roi_mask():
    m = roi_mask([10, 20, 29, 59], (100, 100))
    assert m.sum() == 100 * 100 - 20 * 40 and not m[10:30, 20:60].any()
    assert not roi_mask(None, (5, 5)).any()
    assert roi_mask([-5, -5, 200, 200], (5, 5)).sum() == 0  # clipped: keeps everything
    with pytest.raises(ValueError, match=r"\[rmin, cmin, rmax, cmax\]"):
        roi_mask([1, 2, 3], (5, 5))
    with pytest.raises(ValueError, match="selects no pixel"):
        roi_mask([50, 0, 60, 4], (5, 5))


def test_load_exclusion(tmp_path):
    m = np.zeros((30, 40), np.uint8)
    m[5:10, 5:20] = 255
    p = tmp_path / "excl.png"
    cv2.imwrite(str(p), m)
    np.testing.assert_array_equal(load_exclusion(p, (30, 40)), m > 0)
    cv2.imwrite(str(p), (m > 0).astype(np.uint8))  # 0/1 works too
    np.testing.assert_array_equal(load_exclusion(p, (30, 40)), m > 0)
    assert not load_exclusion(None, (3, 3)).any()
    with pytest.raises(Exception, match="30 x 40 px, the scan is 31 x 40"):
        load_exclusion(p, (31, 40))


@pytest.mark.slow
def test_implausibly_fine_pixel_size_is_ignored(base):
    # 10 nm over 200 px = 0.05 nm per pixel: finer than any micrograph, so a misread label ('mm' as 'nm')
    style = BarStyle(pixel_size_um=5e-5, value=10, unit="nm", thickness_px=6, polarity="light",
                     position="bottom-right", font="dejavu_sans", text_height_px=18)
    px, truth = burn_annotations(base, style)
    ann = find_annotations(px)
    assert [b.label for b in ann.scale_bars] == ["10 nm"]
    assert ann.pixel_size_um is None and any("ignored" in n for n in ann.notes)
    assert ann.mask[truth.mask].all()
    assert find_annotations(px, cfg=AnnotationConfig(min_pixel_size_um=1e-5)).pixel_size_um == pytest.approx(5e-5, rel=0.03)


@pytest.mark.slow
def test_reader_grammar():
    from data._glyphs import glyph_reader, render_text

    reader = glyph_reader()
    for text, want in (("0.25 mm", "0.25mm"), ("100 µm", "100µm"), ("5 um", "5um")):
        got = reader.read_line(render_text(text, "dejavu_sans", 20) > 0.45)
        assert got is not None and got[0].replace(" ", "") == want
    # text that is no length is not read as one
    assert reader.read_line(render_text("WD 8", "dejavu_sans", 20) > 0.45) is None


def test_usual_scale_bar_numbers():
    from data._glyphs import is_usual_number

    assert all(is_usual_number(x) for x in ("1", "100", "0.25", "250", "750", "1.5", "30", "0.1"))
    assert not any(is_usual_number(x) for x in ("191", "55", "288", "11", "0", "12"))


@pytest.mark.slow
def test_reader_drops_a_blob_right_after_the_unit():
    from data._glyphs import glyph_reader, render_text

    ink = render_text("5 µm", "dejavu_sans", 24) > 0.45
    line = np.zeros((ink.shape[0], ink.shape[1] + 16), bool)
    line[:, :ink.shape[1]] = ink
    line[-12:-2, -10:] = True  # an impurity 6 px after the 'm'
    got = glyph_reader().read_line(line)
    assert got is not None and got[0].replace(" ", "") == "5µm"
