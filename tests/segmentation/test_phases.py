import numpy as np
import pytest

from segmentation.phases import PhaseError, PhasesConfig, segment_phases
from segmentation.phases.classical import choose_n_by_bic, clean_small


def _scan(seed=0, dtype=np.uint8, noise=6.0):
    rng = np.random.default_rng(seed)
    truth = np.full((96, 96), 3, np.uint8)
    truth[:32] = 1
    truth[32:64, :48] = 2
    img = np.choose(truth - 1, [40.0, 130.0, 220.0])
    img = img + rng.normal(0, noise, img.shape)
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    img = np.clip(img / 255.0 * top, 0, top).astype(dtype)
    return img, truth


@pytest.mark.parametrize("method", ["otsu", "gmm"])
def test_three_phases_recovered(method):
    img, truth = _scan()
    lab = segment_phases(img, PhasesConfig(names=("a", "b", "c"), method=method))
    assert lab.dtype == np.uint8 and lab.shape == truth.shape
    assert np.mean(lab == truth) > 0.99


def test_16bit_and_rgb_inputs():
    img16, truth = _scan(dtype=np.uint16)
    lab = segment_phases(img16, PhasesConfig(names=("a", "b", "c"), clahe_clip=None))
    assert np.mean(lab == truth) > 0.99
    img8, _ = _scan()
    rgb = np.stack([img8] * 3, axis=-1)
    lab = segment_phases(rgb, PhasesConfig(names=("a", "b", "c")))
    assert np.mean(lab == truth) > 0.99


def test_exclude_is_label_zero():
    img, truth = _scan()
    ex = np.zeros(img.shape, bool)
    ex[:, :10] = True
    lab = segment_phases(img, PhasesConfig(names=("a", "b", "c")), exclude=ex)
    assert (lab[ex] == 0).all() and (lab[~ex] > 0).all()


def test_clean_up_removes_specks_in_um():
    img, truth = _scan(noise=0.0)
    img[70, 70] = 40  # a one-pixel dark speck in the bright phase
    cfg = PhasesConfig(names=("a", "b", "c"), clahe_clip=None, denoise=None, min_size_um=1.0)
    lab = segment_phases(img, cfg, pixel_size_um=0.5)  # 2 px diameter -> area >= 4 px
    assert lab[70, 70] == 3
    keep = segment_phases(img, PhasesConfig(names=("a", "b", "c"), clahe_clip=None, denoise=None, min_size_px=1))
    assert keep[70, 70] == 1


def test_clean_small_merges_into_surrounding_phase():
    lab = np.full((10, 10), 2, np.uint8)
    lab[4:6, 4:6] = 1
    assert (clean_small(lab, min_size_px=5) == 2).all()
    assert (clean_small(lab, min_size_px=4) == lab).all()


def test_auto_n_by_bic():
    rng = np.random.default_rng(1)
    v = np.concatenate([rng.normal(0.2, 0.03, 4000), rng.normal(0.5, 0.03, 4000), rng.normal(0.8, 0.03, 4000)])
    assert choose_n_by_bic(v, n_max=5) == 3
    img, _ = _scan()
    lab = segment_phases(img, PhasesConfig(names=("a", "b", "c", "d", "e"), n="auto", method="gmm",
                                           clahe_clip=None))
    assert lab.max() == 3


def test_slic_and_denoisers_run():
    img, truth = _scan()
    for d in ("gaussian", "nl_means"):
        lab = segment_phases(img, PhasesConfig(names=("a", "b", "c"), denoise=d))
        assert np.mean(lab == truth) > 0.97
    lab = segment_phases(img, PhasesConfig(names=("a", "b", "c"), slic=True, slic_segments=200))
    assert np.mean(lab == truth) > 0.95


def test_errors():
    with pytest.raises(PhaseError, match="at least 2"):
        PhasesConfig(names=("a",))
    with pytest.raises(PhaseError, match="n=3 but 2 names"):
        PhasesConfig(names=("a", "b"), n=3)
    with pytest.raises(PhaseError, match="method"):
        PhasesConfig(method="kmeans")
    with pytest.raises(PhaseError, match="distinct"):
        PhasesConfig(names=("a", "a"))
    flat = np.zeros((20, 20), np.uint8)
    flat[:10] = 200
    with pytest.raises(PhaseError, match="fewer distinct grey levels"):
        segment_phases(flat, PhasesConfig(names=("a", "b", "c"), clahe_clip=None, denoise=None))
    with pytest.raises(PhaseError, match="shape"):
        segment_phases(np.zeros((4, 4, 2)), PhasesConfig())
    with pytest.raises(PhaseError, match="exclude"):
        segment_phases(flat, PhasesConfig(), exclude=np.ones((20, 20), bool))


def test_rim_repair_gives_a_pore_edge_back_and_keeps_a_stringer():
    from segmentation.phases import repair_rims

    lab = np.full((40, 60), 3, np.uint8)
    lab[10:20, 10:20] = 1          # pore
    lab[9, 9:21] = 2               # its blurred rim, read as the middle phase
    lab[20, 9:21] = 2
    lab[30:32, 30:55] = 2          # a stringer of the middle phase in the bright phase
    grey = np.choose(lab, [0.0, 0.1, 0.45, 0.8])
    grey[9, 9:21] = 0.3            # rim nearer the dark mean
    grey[20, 9:21] = 0.6           # rim nearer the bright mean
    out = repair_rims(lab, grey, n=3, rim_px=1)
    assert (out[9, 9:21] == 1).all() and (out[20, 9:21] == 3).all()
    assert (out[30:32, 30:55] == 2).all()
    cfg = PhasesConfig(names=("a", "b", "c"), clahe_clip=None, rim_px=1)
    assert cfg.rim_px == 1
    with pytest.raises(PhaseError, match="rim_px"):
        PhasesConfig(names=("a", "b", "c"), rim_px=-1)


def test_generated_coating_segmented_fractions_within_1pp_of_truth():
    from data.standards.phases import PhaseMeasureConfig, measure_phases
    from data.synthetic_phases import coating_scan

    t = coating_scan(shape=(256, 256), seed=1000, thickness_px=100.0, pore_median_px=3.0)
    cfg = PhasesConfig(names=t.names, clahe_clip=None, rim_px=1)
    lab = segment_phases(t.image, cfg, pixel_size_um=t.pixel_size_um)
    m = measure_phases(lab, names=t.names, pixel_size_um=t.pixel_size_um,
                       cfg=PhaseMeasureConfig(coating="coating", substrate="substrate"))
    f = m.fractions.set_index("phase")["area_fraction"]
    err = {k: abs(f[k] - t.fractions[k]) for k in t.names}
    assert max(err.values()) < 0.01, err  # the dark mount is not counted as pore


def test_background_correction_finds_dark_objects_not_dark_grains():
    """Small dark inclusions on a matrix of dark and bright grains: without the background
    correction the darkest class takes the dark grains; with it, the inclusions alone."""
    from segmentation.phases.background import background_ratio

    rng = np.random.default_rng(7)
    img = np.full((240, 240), 200.0)
    img[:, 120:] = 120.0  # a dark grain covering half the field
    truth = np.zeros(img.shape, bool)
    for r, c in rng.integers(10, 230, size=(30, 2)):
        yy, xx = np.ogrid[:240, :240]
        disk = (yy - r) ** 2 + (xx - c) ** 2 <= 9
        truth |= disk
    img[truth] *= 0.35
    img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    cfg = dict(names=("inclusion", "matrix"), clahe_clip=None)
    plain = segment_phases(img, PhasesConfig(**cfg))
    fixed = segment_phases(img, PhasesConfig(**cfg, background_px=15))
    assert (plain == 1).mean() > 0.3  # the dark grain
    assert abs((fixed == 1).mean() - truth.mean()) < 0.01
    from scipy import ndimage as ndi

    comps, n = ndi.label(truth)
    found = ndi.maximum(fixed == 1, comps, np.arange(1, n + 1))
    assert found.all()  # every inclusion, those across the grain boundary too
    r = background_ratio(img / 255.0, 15)
    assert r.shape == img.shape and 0.0 <= r.min() and r.max() <= 1.0
    assert np.median(r[~truth]) > 0.95  # the matrix, both grains, is about 1
    with pytest.raises(PhaseError, match="background_px"):
        PhasesConfig(names=("a", "b"), background_px=2)
