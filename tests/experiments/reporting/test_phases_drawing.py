import io

import numpy as np
import pytest

from data.standards.phases import PhaseMeasureConfig, measure_phases
from experiments.reporting.phases import (
    PHASE_COLOURS,
    overlay_png,
    phase_overlay,
    plot_phase_sizes,
    plot_thickness_profile,
)
from segmentation.phases import PhaseError

NAMES = ["pore", "coating", "substrate"]


def _labels():
    lab = np.ones((60, 80), np.uint8)
    lab[10:40] = 2
    lab[40:] = 3
    for r, c in [(15, 10), (20, 40), (30, 60), (25, 25)]:
        lab[r : r + 4, c : c + 5] = 1
    return lab


def test_overlay_colours_and_legend():
    lab = _labels()
    out = phase_overlay(lab, names=NAMES, legend=False)
    assert out.shape == (60, 80, 3) and out.dtype == np.uint8
    assert tuple(out[50, 0]) == PHASE_COLOURS[2]
    lab0 = lab.copy()
    lab0[0, 0] = 0
    assert tuple(phase_overlay(lab0, names=NAMES, legend=False)[0, 0]) == (0, 0, 0)
    with_legend = phase_overlay(lab, names=NAMES, pixels=np.full((60, 80), 30000, np.uint16))
    assert with_legend.shape[0] > 60 and with_legend.shape[1] >= 80
    band = with_legend[60:]
    assert (band == np.array(PHASE_COLOURS[0], np.uint8)).all(axis=-1).any()  # a swatch


def test_overlay_blends_over_rgb_scan():
    lab = _labels()
    rgb = np.zeros((60, 80, 3), np.uint8)
    out = phase_overlay(lab, names=NAMES, pixels=rgb, alpha=0.5, legend=False)
    assert tuple(out[50, 0]) == tuple(int(round(0.5 * v)) for v in PHASE_COLOURS[2])


def test_png_bytes():
    from PIL import Image

    png = overlay_png(phase_overlay(_labels(), names=NAMES))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(io.BytesIO(png)).mode == "RGB"


def test_plots():
    m = measure_phases(_labels(), names=NAMES, pixel_size_um=0.5,
                       cfg=PhaseMeasureConfig(coating="coating", substrate="substrate"))
    img = plot_thickness_profile(m.thickness_profile, pixel_size_um=0.5)
    assert img.ndim == 3 and img.dtype == np.uint8 and img.std() > 0
    blank = plot_thickness_profile(np.full(10, np.nan))
    assert blank.shape == img.shape
    sizes = plot_phase_sizes(m.regions, calibrated=True, phase="pore")
    assert sizes.ndim == 3 and sizes.dtype == np.uint8


def test_errors():
    with pytest.raises(PhaseError, match="names"):
        phase_overlay(np.full((4, 4), 5, np.uint8), names=NAMES)
    with pytest.raises(PhaseError, match="shape"):
        phase_overlay(np.ones((4, 4), np.uint8), names=NAMES, pixels=np.zeros((5, 5)))
    with pytest.raises(PhaseError, match="uint8"):
        overlay_png(np.zeros((4, 4)))
    with pytest.raises(PhaseError, match="1-D"):
        plot_thickness_profile(np.zeros((3, 3)))
