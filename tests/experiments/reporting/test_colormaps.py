"""The bundled colour tables equal Matplotlib's colormaps, so heatmaps look the same without it."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.reporting._colormaps import TABLES, bundled_rgb, is_colormap
from experiments.reporting._imaging import N_COLOURS, code_lut_rgb


@pytest.mark.parametrize("name", [*sorted(TABLES), *(f"{n}_r" for n in sorted(TABLES))])
def test_bundled_table_matches_matplotlib(name):
    from matplotlib import colormaps

    want = (colormaps[name](np.linspace(0.0, 1.0, N_COLOURS))[:, :3] * 255).round().astype(np.uint8)
    got = bundled_rgb(name, N_COLOURS)
    assert got is not None and got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)


def test_other_names_fall_back_to_matplotlib():
    from matplotlib import colormaps

    assert bundled_rgb("coolwarm") is None and bundled_rgb("viridis", 100) is None
    lut = code_lut_rgb("coolwarm")
    want = (colormaps["coolwarm"](np.linspace(0.0, 1.0, N_COLOURS))[:, :3] * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(lut[2:], want)
    assert is_colormap("coolwarm") and is_colormap("viridis") and is_colormap("magma_r")
    assert not is_colormap("not-a-colormap")
    with pytest.raises(ValueError, match="unknown matplotlib colormap"):
        code_lut_rgb("not-a-colormap")
