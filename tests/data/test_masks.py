"""binarize_mask: every binary encoding is a mask; a micrograph is a clear error (#19.2, #14.5)."""

import cv2
import numpy as np
import pytest

from data import MaskError, QuantmetError, binarize_mask
from data.synthetic import make_synthetic_scan


@pytest.fixture
def truth():
    m = np.zeros((64, 80), bool)
    m[10:20, 10:25] = True
    m[40:44, 50:70] = True
    return m


@pytest.mark.parametrize(
    "encode",
    [
        lambda m: m,  # bool
        lambda m: m.astype(np.uint8),  # 0/1
        lambda m: m.astype(np.uint8) * 255,  # 0/255
        lambda m: m.astype(np.uint16) * 255,  # 16-bit 0/255 (issue #19: gave 0 impurities)
        lambda m: m.astype(np.uint16) * 65535,  # 0/65535
        lambda m: m.astype(np.uint16),  # 16-bit 0/1
        lambda m: np.where(m, 200, 3).astype(np.uint8),  # any two levels: the higher is white
        lambda m: m.astype(np.float32),  # float 0/1
        lambda m: m.astype(np.int32) * 7,
    ],
)
def test_every_binary_encoding(truth, encode):
    px = encode(truth)
    np.testing.assert_array_equal(binarize_mask(px, polarity="white"), truth)
    np.testing.assert_array_equal(binarize_mask(px), truth)  # auto: the minority class
    np.testing.assert_array_equal(binarize_mask(px, polarity="black"), ~truth)


@pytest.mark.parametrize("quality", [50, 75, 95])
def test_lossy_jpeg_mask(truth, quality):
    ok, buf = cv2.imencode(".jpg", truth.astype(np.uint8) * 255, [cv2.IMWRITE_JPEG_QUALITY, quality])
    px = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    assert len(np.unique(px)) > 2
    got = binarize_mask(px)
    assert (got != truth).mean() < 0.01


def test_micrograph_is_not_a_mask():
    scan = make_synthetic_scan(seed=3).pixels[:256, :256]
    with pytest.raises(MaskError, match=r"not a binary mask: \d+ distinct levels") as e:
        binarize_mask(scan)
    assert isinstance(e.value, QuantmetError) and isinstance(e.value, ValueError)
    assert "\n" not in str(e.value)


def test_flat_noisy_image_is_not_a_mask():
    rng = np.random.default_rng(0)
    px = np.clip(rng.normal(128, 3, (50, 50)), 0, 255).astype(np.uint8)
    with pytest.raises(MaskError):
        binarize_mask(px)


@pytest.mark.parametrize("value", [0, 1, 255])
def test_one_valued_image(value):
    px = np.full((5, 6), value, np.uint8)
    assert not binarize_mask(px).any()  # auto: no minority class, no impurity
    assert binarize_mask(px, polarity="white").all() == (value != 0)
    assert binarize_mask(px, polarity="black").all() == (value == 0)
    assert not binarize_mask(np.zeros((3, 3), bool)).any()


def test_bad_arguments():
    with pytest.raises(ValueError, match="polarity"):
        binarize_mask(np.zeros((2, 2), np.uint8), polarity="grey")
    with pytest.raises(ValueError, match="2-D"):
        binarize_mask(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(MaskError, match="empty"):
        binarize_mask(np.zeros((0, 3), np.uint8))
