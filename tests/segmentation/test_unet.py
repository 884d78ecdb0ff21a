"""U-Net builder, losses and augmentation, with tiny untrained models."""

import re
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from segmentation.augment import AugmentConfig, augment_batch, dihedral, elastic_warp
from segmentation.losses import BCELoss, ComboLoss, DiceLoss, FocalLoss, get_loss
from segmentation.unet import UNetConfig, build_unet, count_params

SEG = Path(__file__).resolve().parents[2] / "segmentation"


@pytest.mark.parametrize("depth, width", [(1, 2), (2, 4), (3, 2)])
def test_unet_is_fully_convolutional(depth, width):
    m = build_unet(UNetConfig(depth=depth, base_width=width))
    for shape in [(2, 16, 24, 1), (1, 8 * 2**depth, 2**depth, 1)]:
        x = np.random.default_rng(0).random(shape).astype(np.float32)
        y = np.asarray(m.predict_on_batch(x))
        assert y.shape == shape
        assert (y >= 0).all() and (y <= 1).all()
    assert count_params(m) == m.count_params() > 0


def test_width_depth_and_options_change_the_model():
    small = count_params(build_unet(UNetConfig(depth=2, base_width=4)))
    wide = count_params(build_unet(UNetConfig(depth=2, base_width=8)))
    deep = count_params(build_unet(UNetConfig(depth=3, base_width=4)))
    assert wide > 3 * small and deep > small
    m = build_unet(UNetConfig(depth=2, base_width=4, batch_norm=False, dropout=0.2))
    names = [layer.name for layer in m.layers]
    assert "bottleneck_dropout" in names and not any("bn" in n for n in names)


def test_shipped_size_default_is_small():
    # the default architecture stays well below the size budget of the shipped weights
    assert count_params(build_unet(UNetConfig())) < 500_000


@pytest.mark.parametrize("kwargs", [{"depth": 0}, {"base_width": 0}, {"dropout": 1.0}, {"convs_per_level": 0}])
def test_unet_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        UNetConfig(**kwargs)


def test_model_code_uses_keras_only():
    tf_import = re.compile(r"^\s*(import|from)\s+tensorflow", re.MULTILINE)
    tf_call = re.compile(r"\btf\.[A-Za-z_]+\(")
    for name in ("unet.py", "losses.py", "models.py"):
        src = (SEG / name).read_text()
        assert not tf_import.search(src) and not tf_call.search(src), name
    for name in ("tiling.py", "grains.py", "augment.py"):
        src = (SEG / name).read_text()
        assert not re.search(r"^\s*(import|from)\s+keras", src, re.MULTILINE) and not tf_import.search(src), name


def _targets():
    rng = np.random.default_rng(0)
    t = (rng.random((2, 16, 16, 1)) > 0.8).astype(np.float32)
    return t


def test_losses_order_good_and_bad_predictions():
    t = _targets()
    good = np.clip(t, 0.02, 0.98)
    bad = 1.0 - good
    for loss in (DiceLoss(), FocalLoss(), BCELoss(), ComboLoss(focal=1.0), get_loss("dice")):
        lg, lb = float(loss(t, good)), float(loss(t, bad))
        assert 0 <= lg < lb, type(loss).__name__
    assert float(DiceLoss(smooth=1e-6)(t, t)) == pytest.approx(0.0, abs=1e-5)
    # focal loss (gamma > 0) down-weights easy pixels relative to BCE
    assert float(FocalLoss(gamma=2.0, alpha=0.5)(t, good)) < float(BCELoss()(t, good))
    # combo = weighted sum of its parts
    c = ComboLoss(bce=2.0, dice=0.5)
    want = 2.0 * float(BCELoss()(t, good)) + 0.5 * float(DiceLoss()(t, good))
    assert float(c(t, good)) == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError):
        get_loss("hinge")
    with pytest.raises(ValueError):
        ComboLoss(bce=0, dice=0)


def test_shift_tolerant_loss_forgives_small_offsets_only():
    t = np.zeros((1, 32, 32, 1), np.float32)
    t[0, 10:13, 10:13] = 1

    def blob(r, c):
        p = np.full_like(t, 0.02)
        p[0, r : r + 3, c : c + 3] = 0.95
        return p

    tol = get_loss("tolerant", radius=2, plain=0.0)
    exact, shifted, beyond, far = (float(tol(t, blob(*rc))) for rc in
                                   ((10, 10), (11, 12), (16, 10), (20, 20)))
    assert shifted == pytest.approx(exact, rel=1e-5)  # 2 px off: same loss
    assert exact < beyond and exact < far  # farther than the radius: penalised
    # the plain part still prefers the exact position
    mixed = get_loss("tolerant", radius=2, plain=0.5)
    assert float(mixed(t, blob(10, 10))) < float(mixed(t, blob(11, 12)))
    assert float(get_loss("tolerant", radius=0, plain=0.0)(t, blob(11, 12))) > exact
    back = keras.losses.deserialize(keras.losses.serialize(mixed))
    assert back.get_config()["radius"] == 2 and back.get_config()["plain"] == 0.5
    with pytest.raises(ValueError):
        get_loss("tolerant", radius=-1)


def test_cldice_loss_penalises_a_gap_in_a_line_more_than_pixel_losses_do():
    from segmentation.losses import CLDiceLoss, soft_skeleton

    t = np.zeros((1, 48, 48, 1), np.float32)
    t[0, 20:23, :] = 1  # a 3-px wide boundary across the patch
    sk = np.asarray(soft_skeleton(t, 4))[0, ..., 0]
    assert np.allclose(sk[21], 1.0) and sk[[20, 22]].max() < 0.5  # its centreline
    good = np.clip(t, 0.02, 0.98)
    gap = good.copy()
    gap[0, :, 20:26] = 0.02  # a 6-px gap cuts the line
    thick = good.copy()
    thick[0, 17:26, :] = 0.98  # the same line, drawn 3x as wide
    cl = CLDiceLoss(weight=1.0, bce=0.0, dice=0.0)
    assert float(cl(t, good)) < 0.01
    assert float(cl(t, gap)) > 0.05
    assert float(cl(t, thick)) < float(cl(t, gap))  # a gap costs more than a wide line
    combo = CLDiceLoss(weight=0.5)
    assert float(combo(t, good)) < float(combo(t, gap))
    assert get_loss("cldice", weight=0.3).get_config()["weight"] == 0.3
    back = keras.losses.deserialize(keras.losses.serialize(combo))
    assert back.get_config()["iterations"] == 5 and back.get_config()["bce"] == 1.0
    with pytest.raises(ValueError):
        CLDiceLoss(iterations=0)


def test_compiled_model_round_trips_with_safe_mode(tmp_path):
    m = build_unet(UNetConfig(depth=1, base_width=2))
    m.compile(optimizer="adam", loss=ComboLoss(bce=1.0, dice=0.5, focal=0.25, gamma=1.5))
    x = np.random.default_rng(1).random((2, 8, 8, 1)).astype(np.float32)
    m.fit(x, (x > 0.5).astype(np.float32), epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    m.save(path)
    back = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(back.predict_on_batch(x), m.predict_on_batch(x), atol=1e-6)
    assert back.loss.get_config()["focal"] == 0.25


def test_tiny_unet_learns_a_threshold():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((32, 16, 16, 1)).astype(np.float32)
    y = (x < 0.3).astype(np.float32)
    m = build_unet(UNetConfig(depth=1, base_width=4))
    m.compile(optimizer=keras.optimizers.Adam(0.02), loss=ComboLoss())
    h = m.fit(x, y, epochs=15, batch_size=8, verbose=0)
    assert h.history["loss"][-1] < 0.5 * h.history["loss"][0]


def test_dihedral_group():
    a = np.arange(12.0).reshape(3, 4)
    seen = {dihedral(a, k).tobytes() + bytes(dihedral(a, k).shape) for k in range(8)}
    assert len(seen) == 8
    sq = np.arange(9).reshape(3, 3)
    assert np.array_equal(dihedral(sq, 0), sq)


def test_augment_keeps_image_and_mask_aligned():
    rng = np.random.default_rng(0)
    x = rng.random((6, 20, 20, 1)).astype(np.float32)
    y = (x > 0.7).astype(np.float32)
    geo = AugmentConfig(brightness=0, contrast=0, gamma=0, noise=0, blur=0, elastic_alpha=0)
    xa, ya = augment_batch(x, y, np.random.default_rng(1), geo)
    np.testing.assert_array_equal(ya, (xa > 0.7).astype(np.float32))
    assert not np.array_equal(xa, x)  # some sample was rotated/flipped
    # photometric transforms change the image only, reproducibly
    full = AugmentConfig(blur=1.0)
    a1 = augment_batch(x, y, np.random.default_rng(5), full)
    a2 = augment_batch(x, y, np.random.default_rng(5), full)
    np.testing.assert_array_equal(a1[0], a2[0])
    assert set(np.unique(a1[1])) <= {0.0, 1.0} and a1[1].sum() == y.sum()
    assert x.dtype == a1[0].dtype == np.float32


def test_elastic_warp_moves_image_and_mask_together():
    rng = np.random.default_rng(0)
    img = np.zeros((40, 40), np.float32)
    img[10:30, 15:25] = 1.0
    w_img, w_mask = elastic_warp(img, img.copy(), rng, alpha=3.0, sigma=6.0)
    assert np.abs(w_img - img).max() > 0.5  # it moved
    assert ((w_img > 0.5) ^ (w_mask > 0.5)).mean() < 0.02


def test_augment_rejects_bad_input():
    with pytest.raises(ValueError):
        augment_batch(np.zeros((2, 8, 8)), np.zeros((2, 8, 9)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="square"):
        augment_batch(np.zeros((2, 8, 6)), np.zeros((2, 8, 6)), np.random.default_rng(0))
    with pytest.raises(ValueError):
        AugmentConfig(contrast=1.5)


def test_patch_sampling_oversamples_impurities():
    from types import SimpleNamespace

    from experiments.research.training.unet import TrainUNetConfig, sample_impurity_patches

    rng = np.random.default_rng(0)
    y = np.zeros((300, 400), bool)
    centers = np.array([[50, 60], [200, 300], [280, 30]])
    for r, c in centers:
        y[r - 1 : r + 2, c - 1 : c + 2] = True
    scan = SimpleNamespace(x=rng.random(y.shape).astype(np.float32), y=y, centers=centers)
    x, t = sample_impurity_patches([scan], 40, patch=32, positive_fraction=0.5, rng=rng)
    assert x.shape == t.shape == (40, 32, 32, 1)
    has = t.reshape(40, -1).max(axis=1) > 0
    assert has[:20].all()  # the positive half is centred near an impurity
    assert has[20:].mean() < 0.5  # random patches rarely hit 3 tiny objects
    with pytest.raises(ValueError, match="bundled"):
        TrainUNetConfig(val_scans=("10", "15"))


def test_jpeg_recompress_keeps_scale_and_adds_block_artefacts():
    from segmentation.augment import jpeg_recompress

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    smooth = (0.5 + 0.2 * np.sin(xx / 9.0) * np.cos(yy / 7.0)).astype(np.float32)[..., None]
    hi = jpeg_recompress(smooth, 100, gain=1.0)
    assert hi.shape == smooth.shape and hi.dtype == np.float32
    assert np.abs(hi - smooth).max() < 3 / 255  # q100: 8-bit rounding only, same scale
    noisy = np.clip(smooth + rng.normal(0, 0.03, smooth.shape), 0, 1).astype(np.float32)
    lo = jpeg_recompress(noisy, 70, gain=1.0)
    err = np.abs(lo - noisy)
    assert 0.002 < err.mean() < 0.05  # q70 smooths the noise, keeps the picture
    assert abs(float(lo.mean()) - float(noisy.mean())) < 0.01
    with pytest.raises(ValueError, match="gain"):
        jpeg_recompress(smooth, 80, gain=0)


def test_augment_jpeg_and_defocus_options():
    rng = np.random.default_rng(0)
    x = np.clip(0.5 + 0.1 * rng.standard_normal((8, 32, 32, 1)), 0, 1).astype(np.float32)
    y = (x > 0.6).astype(np.float32)
    photometric_off = dict(dihedral=False, brightness=0, contrast=0, gamma=0, noise=0)
    # the defaults leave the JPEG off and the blur probability at 0.3 (the shipped runs' stream)
    assert AugmentConfig().jpeg_quality is None and AugmentConfig().blur_prob == 0.3
    same = augment_batch(x, y, np.random.default_rng(3), AugmentConfig(blur=1.0))
    again = augment_batch(x, y, np.random.default_rng(3), AugmentConfig(blur=1.0, blur_prob=0.3))
    np.testing.assert_array_equal(same[0], again[0])
    cfg = AugmentConfig(**photometric_off, jpeg_quality=[70, 95], jpeg_prob=1.0)
    assert cfg.jpeg_quality == (70, 95)
    xa, ya = augment_batch(x, y, np.random.default_rng(1), cfg)
    np.testing.assert_array_equal(ya, y)  # the mask is untouched
    changed = np.abs(xa - x).reshape(8, -1).mean(axis=1)
    assert (changed > 0.001).all()  # every sample re-compressed
    xb, _ = augment_batch(x, y, np.random.default_rng(1), cfg)
    np.testing.assert_array_equal(xa, xb)
    blurred, _ = augment_batch(x, y, np.random.default_rng(1), AugmentConfig(**photometric_off, blur=1.0, blur_prob=1.0))
    assert blurred.std() < x.std()  # every sample defocused
    for bad in (dict(jpeg_quality=(90, 70)), dict(jpeg_quality=(0, 80)), dict(jpeg_prob=1.5), dict(jpeg_gain=(0, 1))):
        with pytest.raises(ValueError):
            AugmentConfig(**bad)
