"""ASTM E1245 stereology of inclusions per field and over the fields of a scan.

Per field ``i`` (E1245, "Calculation of Results"):

- area fraction ``A_A = A_inclusions / A_field``;
- number per mm² ``N_A = n / A_field`` (an inclusion belongs to the field that holds its centroid);
- intercepts per unit length ``N_L``: inclusions crossed by test lines per mm of line, on
  horizontal and vertical lines through every pixel row and column of the field (both directions
  pooled);
- mean free path ``lambda = (1 - A_A) / N_L`` (mean matrix distance between inclusions, µm);
- mean area ``A_bar = A_A / N_A`` (µm²).

Over the ``n`` fields: mean ``X_bar``, standard deviation ``s``, the 95 % confidence interval half-width
``CI = t(0.975, n - 1) s / sqrt(n)`` and the relative accuracy ``%RA = 100 CI / X_bar``.  Fields where
a value is undefined (``lambda`` with no intercept, ``A_bar`` with no inclusion) are left out of that
value's statistics.

With a label image the area and the intercepts are counted exactly per field (pixels of an
inclusion cut by a field edge count in their own field); from the RegionTable alone each inclusion
goes whole to its centroid's field and its intercepts are its bounding-box height and width (exact
for inclusions convex along rows and columns).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .fields import FieldGrid

__all__ = ["E1245_MEASURES", "FIELD_STAT_COLUMNS", "field_measures", "summarize"]

#: Per-field measures (columns of :func:`field_measures`) summarised per scan.
E1245_MEASURES: tuple[str, ...] = ("area_fraction", "number_per_mm2", "mean_free_path_um", "mean_area_um2")

FIELD_STAT_COLUMNS: tuple[str, ...] = (
    "field_row",
    "field_col",
    "field_area_mm2",
    "n_inclusions",
    *E1245_MEASURES,
    "intercepts_per_mm",
)


def _run_starts(mask: np.ndarray, edges: np.ndarray, axis: int) -> np.ndarray:
    """Pixels starting a run of True along ``axis``, where runs restart at every field edge."""
    start = mask.copy()
    if axis == 1:
        start[:, 1:] &= ~mask[:, :-1]
        start[:, edges[:-1]] = mask[:, edges[:-1]]
    else:
        start[1:, :] &= ~mask[:-1, :]
        start[edges[:-1], :] = mask[edges[:-1], :]
    return start


def _block_sums(sub: np.ndarray, re: np.ndarray, ce: np.ndarray) -> np.ndarray:
    """Number of True pixels of a cropped bool array in each field (edges relative to the crop)."""
    # one pass per band of field rows (count_nonzero is fast on bool views), then the columns of the small result
    bands = np.stack([np.count_nonzero(sub[re[i]:re[i + 1]], axis=0) for i in range(re.size - 1)])
    return np.add.reduceat(bands.astype(np.int64), ce[:-1], axis=1)


def field_measures(
    regions: pd.DataFrame,
    grid: FieldGrid,
    *,
    pixel_size_um: float,
    labels: np.ndarray | None = None,
) -> pd.DataFrame:
    """E1245 measures of every whole field of a grid.

    Parameters
    ----------
    regions : DataFrame
        RegionTable (``centroid_row, centroid_col, area_px``; and ``bbox_*`` without ``labels``).
    grid : FieldGrid
    pixel_size_um : float
    labels : ndarray, shape (M, N), optional
        Label image (nonzero = inclusion): exact per-field area and intercepts.

    Returns
    -------
    DataFrame
        Columns :data:`FIELD_STAT_COLUMNS`, one row per field in raster order.
    """
    s = float(pixel_size_um)
    nr, nc = grid.n_rows, grid.n_cols
    if grid.n_fields == 0:
        return pd.DataFrame({c: [] for c in FIELD_STAT_COLUMNS})
    area_px = grid.field_areas_px()
    heights = np.diff(grid.row_edges).astype(np.float64)[:, None] * np.ones((1, nc))
    widths = np.ones((nr, 1)) * np.diff(grid.col_edges).astype(np.float64)[None, :]
    fr, fc, inside = grid.locate(regions["centroid_row"].to_numpy() + 0.5, regions["centroid_col"].to_numpy() + 0.5)
    flat = fr[inside] * nc + fc[inside]
    count = np.bincount(flat, minlength=nr * nc).reshape(nr, nc).astype(np.float64)
    if labels is not None:
        cut, re, ce = grid.crop(np.asarray(labels) != 0)
        inc_px = _block_sums(cut, re, ce).astype(np.float64)
        ic_rows = _block_sums(_run_starts(cut, ce, axis=1), re, ce).astype(np.float64)
        ic_cols = _block_sums(_run_starts(cut, re, axis=0), re, ce).astype(np.float64)
    else:
        a = regions["area_px"].to_numpy(np.float64)[inside]
        inc_px = np.bincount(flat, weights=a, minlength=nr * nc).reshape(nr, nc)
        h = (regions["bbox_rmax"] - regions["bbox_rmin"] + 1).to_numpy(np.float64)[inside]
        w = (regions["bbox_cmax"] - regions["bbox_cmin"] + 1).to_numpy(np.float64)[inside]
        ic_rows = np.bincount(flat, weights=h, minlength=nr * nc).reshape(nr, nc)
        ic_cols = np.bincount(flat, weights=w, minlength=nr * nc).reshape(nr, nc)
    # test lines: one per pixel row (length = field width) and per pixel column (length = height)
    line_mm = (heights * widths * s * 1e-3) * 2.0
    n_l = (ic_rows + ic_cols) / line_mm
    area_frac = inc_px / area_px
    field_mm2 = area_px * (s * 1e-3) ** 2
    n_a = count / field_mm2
    with np.errstate(divide="ignore", invalid="ignore"):
        mfp_um = np.where(n_l > 0, (1.0 - area_frac) / n_l * 1e3, np.nan)
        mean_area_um2 = np.where(n_a > 0, area_frac / n_a * 1e6, np.nan)
    ii, jj = np.meshgrid(np.arange(nr), np.arange(nc), indexing="ij")
    return pd.DataFrame(
        {
            "field_row": ii.ravel().astype(np.int64),
            "field_col": jj.ravel().astype(np.int64),
            "field_area_mm2": field_mm2.ravel(),
            "n_inclusions": count.ravel().astype(np.int64),
            "area_fraction": area_frac.ravel(),
            "number_per_mm2": n_a.ravel(),
            "mean_free_path_um": mfp_um.ravel(),
            "mean_area_um2": mean_area_um2.ravel(),
            "intercepts_per_mm": n_l.ravel(),
        }
    )


def summarize(values: np.ndarray, *, confidence: float = 0.95) -> dict[str, float]:
    """Mean, standard deviation (n - 1), t-based CI half-width and %RA of per-field values.

    Non-finite values are left out; ``n`` is the number used.  With one value: sd, CI and %RA
    are NaN.

    >>> out = summarize(np.array([1.0, 2.0, 3.0, 4.0]))
    >>> round(out["mean"], 3), round(out["sd"], 4), round(out["ci95"], 4), round(out["ra_pct"], 2)
    (2.5, 1.291, 2.0543, 82.17)
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = int(v.size)
    nan = float("nan")
    if n == 0:
        return {"n": 0, "mean": nan, "sd": nan, "ci95": nan, "ra_pct": nan}
    mean = float(v.mean())
    if n < 2:
        return {"n": n, "mean": mean, "sd": nan, "ci95": nan, "ra_pct": nan}
    sd = float(v.std(ddof=1))
    from scipy import stats  # here: scipy.stats costs ~0.3-0.9 s to import

    ci = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1) * sd / np.sqrt(n))
    ra = 100.0 * ci / mean if mean != 0 else nan
    return {"n": n, "mean": mean, "sd": sd, "ci95": ci, "ra_pct": ra}
