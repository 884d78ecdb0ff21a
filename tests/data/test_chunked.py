"""data._chunked: block-wise bincount / take equal NumPy's whole-array ones."""

import numpy as np
import pytest

from data import _chunked as chunked


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64, np.uint64])
@pytest.mark.parametrize("shape", [(0, 5), (1, 1), (37, 41), (3000, 700)])
def test_bincount_and_take_equal_numpy(monkeypatch, dtype, shape):
    monkeypatch.setattr(chunked, "BLOCK", 1000)  # many blocks, a short last one
    rng = np.random.default_rng(0)
    a = rng.integers(0, 200, shape).astype(dtype)
    for minlength in (0, 1, 300):
        np.testing.assert_array_equal(chunked.bincount(a, minlength=minlength),
                                      np.bincount(a.ravel().astype(np.intp), minlength=minlength))
    lut = rng.integers(-5, 5000, 200).astype(np.int32)
    got = chunked.take(lut, a)
    assert got.shape == a.shape and got.dtype == np.int32
    np.testing.assert_array_equal(got, lut[a.astype(np.intp)])


def test_bincount_grows_with_a_late_large_value(monkeypatch):
    monkeypatch.setattr(chunked, "BLOCK", 4)
    a = np.array([1, 1, 0, 2, 0, 0, 0, 0, 9])
    np.testing.assert_array_equal(chunked.bincount(a), np.bincount(a))


def test_errors_are_numpys():
    with pytest.raises(ValueError):
        chunked.bincount(np.array([0, -1]))
    with pytest.raises(IndexError):
        chunked.take(np.arange(3), np.array([0, 3]))
    with pytest.raises(ValueError, match="1-D"):
        chunked.take(np.zeros((2, 2)), np.array([0]))
