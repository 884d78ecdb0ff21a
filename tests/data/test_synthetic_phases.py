import numpy as np
import pytest

from data.synthetic_phases import coating_scan, multiphase_scan


def test_coating_truth_consistent_with_labels():
    t = coating_scan(shape=(256, 300), seed=3, thickness_px=100.0, porosity=0.06)
    lab = t.labels
    assert t.image.shape == lab.shape and t.image.dtype == np.uint8
    assigned = lab > 0
    for k, nm in enumerate(t.names):
        assert t.fractions[nm] == pytest.approx((lab == k + 1).sum() / assigned.sum())
    # thickness profile equals the drawn layer: per column count of layer pixels
    layer = (lab >= 1) & (lab <= 3)
    assert np.array_equal(layer.sum(axis=0).astype(float), t.thickness_profile_px)
    assert t.thickness_mean_um == pytest.approx(t.thickness_profile_px.mean() * t.pixel_size_um)
    # layer is one contiguous run per column
    for c in range(0, lab.shape[1], 37):
        idx = np.flatnonzero(layer[:, c])
        assert idx.size and idx[-1] - idx[0] + 1 == idx.size
    # porosity within the layer; pores only inside the layer
    assert t.porosity == pytest.approx((lab == 1).sum() / layer.sum())
    assert 0.03 < t.porosity < 0.09
    for p in t.pores:
        assert layer[int(round(p["row"])), int(p["col"])]
    assert len(t.pores) > 5


def test_determinism_and_seed_dependence():
    a = coating_scan(shape=(128, 128), seed=7, thickness_px=50.0)
    b = coating_scan(shape=(128, 128), seed=7, thickness_px=50.0)
    c = coating_scan(shape=(128, 128), seed=8, thickness_px=50.0)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)


def test_uint16_jpeg_and_errors():
    t = coating_scan(shape=(128, 128), seed=1, thickness_px=50.0, dtype=np.uint16)
    assert t.image.dtype == np.uint16 and t.image.max() > 255
    j = coating_scan(shape=(128, 128), seed=1, thickness_px=50.0, jpeg_quality=80)
    assert j.image.dtype == np.uint8
    with pytest.raises(ValueError):
        coating_scan(shape=(128, 128), thickness_px=200.0)
    with pytest.raises(ValueError):
        multiphase_scan(n_phases=5)


def test_multiphase_fractions():
    t = multiphase_scan(shape=(200, 200), seed=2, n_phases=3)
    assert set(np.unique(t.labels)) == {1, 2, 3}
    assert sum(t.fractions.values()) == pytest.approx(1.0)
    # darker phase renders darker
    means = [t.image[t.labels == k].mean() for k in (1, 2, 3)]
    assert means[0] < means[1] < means[2]
