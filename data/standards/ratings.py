"""Worst-field inclusion ratings (ASTM E45 Method A / ISO 4967 Method A) and E1245 values of one scan.

Procedure (per calibrated scan):

1. The regions are typed and grouped into rated features (:func:`classify_inclusions`): single
   inclusions and stringers of types A, C (or A/C), B, D, DS, each in the thin or heavy series by its
   width (DS: one series).
2. Square fields of ``field_side_um`` (0.50 mm² at the default 710 µm) tile the scan, centred on
   it (``field_origin``); the partial fields at the borders are not rated.
3. Per field, type and series: A, B, C: the total length of the features inside the field (a
   feature crossing a field edge is cut there: its segment, centred on the feature along its axis,
   is clipped to the field); D: the number of particles whose centroid is in the field; DS: the
   diameter of the largest DS particle in the field.
4. The severity is the highest level 0.5..3 whose minimum (``RatingConfig.severity_limits``) the
   measure reaches (0 below the 0.5 limit, 3 above the 3 limit): no interpolation.
5. Per scan: the worst field (highest severity) of each type and series.

A scan without a pixel size, or smaller than one field, is not rated: the table is empty and
``scan_values["rating_note"]`` says why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .config import SEVERITY_LEVELS, RatingConfig, RatingError
from .fields import FieldGrid, field_grid
from .inclusions import InclusionTyping, classify_inclusions
from .stereology import E1245_MEASURES, FIELD_STAT_COLUMNS, field_measures, summarize

__all__ = [
    "RATING_FIELD_COLUMNS",
    "RATING_SCAN_COLUMNS",
    "ScanRating",
    "rate_scan",
    "severity",
    "unrated_scan_values",
    "worst_column",
]

log = logging.getLogger(__name__)

#: Columns of :attr:`ScanRating.fields` (= ``ratings.parquet``).  ``total_length_um``: A, B, C
#: (NaN for D, DS); ``count``: features in the field; ``max_diameter_um``: D and DS (NaN otherwise).
RATING_FIELD_COLUMNS: tuple[str, ...] = (
    "scan_id",
    "field_row",
    "field_col",
    "type",
    "series",
    "severity",
    "total_length_um",
    "count",
    "max_diameter_um",
)

_LENGTH_TYPES = ("A", "C", "A/C", "B")
_RATED = (("A", "thin"), ("A", "heavy"), ("C", "thin"), ("C", "heavy"), ("A/C", "thin"), ("A/C", "heavy"),
          ("B", "thin"), ("B", "heavy"), ("D", "thin"), ("D", "heavy"), ("DS", "single"))


def worst_column(rated_type: str, series: str) -> str:
    """scans.parquet column of the worst severity of a type and series (``A/C`` is written ``AC``).

    >>> worst_column("A/C", "thin"), worst_column("DS", "single")
    ('e45_AC_thin_worst', 'e45_DS_worst')
    """
    t = rated_type.replace("/", "")
    return f"e45_{t}_worst" if series == "single" else f"e45_{t}_{series}_worst"


_E1245_STATS = ("mean", "sd", "ci95", "ra_pct")

#: The exact per-scan columns :func:`rate_scan` returns in ``scan_values`` (same for every scan).
RATING_SCAN_COLUMNS: tuple[str, ...] = (
    "rating_note",
    "rating_info",
    "rating_n_fields",
    "rating_field_side_px",
    "rating_direction_deg",
    "rating_direction_source",
    "rating_ac_resolved",
    *(worst_column(t, s) for t, s in _RATED),
    *(f"rating_n_{t.replace('/', '')}" for t in ("A", "C", "A/C", "B", "D", "DS")),
    "e1245_n_fields",
    *(f"e1245_{m}_{st}" for m in E1245_MEASURES for st in _E1245_STATS),
)


def severity(values: np.ndarray, limits: tuple[float, ...]) -> np.ndarray:
    """Severity 0..3 (steps of 0.5) of measures against the 6 minimum values of a type.

    >>> severity(np.array([0, 36.9, 37, 127, 260.9, 898, 5000]), (37, 127, 261, 436, 649, 898)).tolist()
    [0.0, 0.0, 0.5, 1.0, 1.0, 3.0, 3.0]
    """
    v = np.round(np.asarray(values, dtype=np.float64), 6)  # a sum of clipped lengths at a limit counts as reaching it
    idx = np.searchsorted(np.asarray(limits, dtype=np.float64), v, side="right")
    return np.asarray(SEVERITY_LEVELS[0], dtype=np.float64) * idx


@dataclass(frozen=True)
class ScanRating:
    """Ratings of one scan.

    Attributes
    ----------
    fields : DataFrame
        One row per whole field, type and series (:data:`RATING_FIELD_COLUMNS`); empty when not rated.
    region_types : ndarray of str, shape (n_regions,)
        Inclusion type of each region row (``""``: not rated), for an ``inclusion_type`` column.
    scan_values : dict
        Flat values with exactly the keys :data:`RATING_SCAN_COLUMNS` (NaN when not applicable):
        ``rating_note`` (why the scan is not rated; ``""`` when rated), ``rating_info`` (typing
        notes: direction fallback, why A/C was not split), ``rating_n_fields``,
        ``rating_field_side_px``, ``rating_direction_deg`` / ``_source``, ``rating_ac_resolved``,
        the worst severities ``e45_<T>_<series>_worst`` (T in A, C, AC, B, D; ``e45_DS_worst``),
        ``rating_n_<T>`` (rated inclusions and stringers of each type on the whole scan) and the
        E1245 values ``e1245_<measure>_<mean|sd|ci95|ra_pct>`` with ``e1245_n_fields``.
    field_stats : DataFrame
        E1245 measures per field (``scan_id`` + :data:`~data.standards.stereology.FIELD_STAT_COLUMNS`).
    features : DataFrame
        The rated inclusions and stringers (:data:`~data.standards.inclusions.FEATURE_COLUMNS`).
    """

    fields: pd.DataFrame
    region_types: np.ndarray
    scan_values: dict
    field_stats: pd.DataFrame = field(default_factory=pd.DataFrame)
    features: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def rated(self) -> bool:
        return not self.scan_values.get("rating_note")


def unrated_scan_values(note: str) -> dict:
    """``scan_values`` of a scan that was not rated (ratings disabled, scan failed), with the reason.

    >>> v = unrated_scan_values("ratings disabled")
    >>> v["rating_note"], set(v) == set(RATING_SCAN_COLUMNS)
    ('ratings disabled', True)
    """
    out = _empty_values()
    out["rating_note"] = str(note)
    return out


def _empty_values() -> dict:
    out: dict = {c: float("nan") for c in RATING_SCAN_COLUMNS}
    out.update(rating_note="", rating_info="", rating_n_fields=0, e1245_n_fields=0, rating_direction_source="",
               rating_ac_resolved=False)
    for t in ("A", "C", "AC", "B", "D", "DS"):
        out[f"rating_n_{t}"] = 0
    return out


def _empty_fields(scan_id: str) -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series([], dtype=np.float64) for c in RATING_FIELD_COLUMNS})
    for c in ("scan_id", "type", "series"):
        df[c] = df[c].astype(object)
    for c in ("field_row", "field_col", "count"):
        df[c] = df[c].astype(np.int64)
    return df


def _clip_lengths(feat: pd.DataFrame, grid: FieldGrid, pixel_size_um: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(feature row, field index, clipped length µm) of every feature segment piece inside a whole field."""
    if len(feat) == 0 or grid.n_fields == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    s = float(pixel_size_um)
    half = 0.5 * feat["length_um"].to_numpy(np.float64) / s
    a = np.radians(feat["axis_deg"].to_numpy(np.float64))
    dr, dc = -np.sin(a) * half, np.cos(a) * half
    cr = feat["centre_row"].to_numpy(np.float64) + 0.5
    cc = feat["centre_col"].to_numpy(np.float64) + 0.5
    p0r, p0c, qr, qc = cr - dr, cc - dc, 2 * dr, 2 * dc
    re, ce = grid.row_edges.astype(np.float64), grid.col_edges.astype(np.float64)
    i0 = np.clip(np.searchsorted(re, np.minimum(p0r, p0r + qr), side="right") - 1, 0, grid.n_rows - 1)
    i1 = np.clip(np.searchsorted(re, np.maximum(p0r, p0r + qr), side="right") - 1, 0, grid.n_rows - 1)
    j0 = np.clip(np.searchsorted(ce, np.minimum(p0c, p0c + qc), side="right") - 1, 0, grid.n_cols - 1)
    j1 = np.clip(np.searchsorted(ce, np.maximum(p0c, p0c + qc), side="right") - 1, 0, grid.n_cols - 1)
    ni, nj = i1 - i0 + 1, j1 - j0 + 1
    k = ni * nj
    f = np.repeat(np.arange(len(feat)), k)
    off = np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)
    fi = i0[f] + off // nj[f]
    fj = j0[f] + off % nj[f]

    def _interval(p, q, lo, hi):
        with np.errstate(divide="ignore", invalid="ignore"):
            ta, tb = (lo - p) / q, (hi - p) / q
        tmin, tmax = np.minimum(ta, tb), np.maximum(ta, tb)
        flat = q == 0
        inside = (p >= lo) & (p < hi)
        tmin = np.where(flat, np.where(inside, -np.inf, np.inf), tmin)
        tmax = np.where(flat, np.where(inside, np.inf, -np.inf), tmax)
        return tmin, tmax

    ta_r, tb_r = _interval(p0r[f], qr[f], re[fi], re[fi + 1])
    ta_c, tb_c = _interval(p0c[f], qc[f], ce[fj], ce[fj + 1])
    t0 = np.maximum(0.0, np.maximum(ta_r, ta_c))
    t1 = np.minimum(1.0, np.minimum(tb_r, tb_c))
    length = np.clip(t1 - t0, 0.0, None) * feat["length_um"].to_numpy(np.float64)[f]
    keep = length > 1e-9
    return f[keep], (fi * grid.n_cols + fj)[keep], length[keep]


def _field_rows(typing: InclusionTyping, grid: FieldGrid, pixel_size_um: float, cfg: RatingConfig,
                scan_id: str) -> pd.DataFrame:
    feat = typing.features
    nf = grid.n_fields
    types = ["A/C"] if not typing.ac_resolved else ["A", "C"]
    rated = [(t, s) for t, s in _RATED if (t in types) or t in ("B", "D", "DS")]
    blocks = []
    ftype = feat["type"].to_numpy(dtype=object)
    fser = feat["series"].to_numpy(dtype=object)
    lmask = np.isin(ftype, _LENGTH_TYPES)
    fl, cell, seg = _clip_lengths(feat[lmask], grid, pixel_size_um)
    l_types, l_series = ftype[lmask][fl], fser[lmask][fl]
    cr, cc, inside = grid.locate(feat["centre_row"].to_numpy(np.float64) + 0.5,
                                 feat["centre_col"].to_numpy(np.float64) + 0.5)
    cell_c = np.where(inside, cr * grid.n_cols + cc, -1)
    diam = feat["diameter_um"].to_numpy(np.float64)
    for t, s in rated:
        total = np.full(nf, np.nan)
        dmax = np.full(nf, np.nan)
        if t in _LENGTH_TYPES:
            m = (l_types == t) & (l_series == s)
            total = np.bincount(cell[m], weights=seg[m], minlength=nf)
            count = np.bincount(cell[m], minlength=nf)
            measure = total
        else:
            m = (ftype == t) & (fser == s) & (cell_c >= 0)
            count = np.bincount(cell_c[m], minlength=nf)
            dmax = np.zeros(nf)
            if m.any():
                np.maximum.at(dmax, cell_c[m], diam[m])
            dmax[count == 0] = np.nan
            measure = count.astype(np.float64) if t == "D" else np.nan_to_num(dmax, nan=0.0)
        blocks.append(pd.DataFrame({
            "scan_id": scan_id,
            "field_row": np.arange(nf) // grid.n_cols,
            "field_col": np.arange(nf) % grid.n_cols,
            "type": t,
            "series": s,
            "severity": severity(measure, cfg.limits_for(t)),
            "total_length_um": total,
            "count": count.astype(np.int64),
            "max_diameter_um": dmax,
        }))
    out = pd.concat(blocks, ignore_index=True)
    return out.sort_values(["field_row", "field_col"], kind="stable").reset_index(drop=True)[list(RATING_FIELD_COLUMNS)]


def rate_scan(
    regions: pd.DataFrame,
    *,
    shape: tuple[int, int],
    pixel_size_um: float | None,
    cfg: RatingConfig,
    pixels: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    scan_id: str = "",
    exclude: np.ndarray | None = None,
) -> ScanRating:
    """Inclusion ratings (worst fields, E45 / ISO 4967 Method A) and E1245 values of one scan.

    Parameters
    ----------
    regions : DataFrame
        The scan's RegionTable (:func:`data.regions_from_labels`).
    shape : (int, int)
        Scan shape (rows, cols), pixels.
    pixel_size_um : float or None
        Pixel size; ``None`` = uncalibrated: not rated (``rating_note`` says so).
    cfg : RatingConfig
    pixels : ndarray, shape (M, N), optional
        The raw scan (gray): lets A and C be told apart by gray level (with ``labels``).
    labels : ndarray, shape (M, N), optional
        Label image, pixel value = ``region_id``: exact E1245 area fractions and intercepts per field.
    scan_id : str
        Written into the ``scan_id`` column of the tables.
    exclude : ndarray of bool, shape (M, N), optional
        Excluded pixels (annotations, outside the ROI, user masks): a field holding any of them is
        not a field of the specimen and is not rated, like a partial field at the border.

    Returns
    -------
    ScanRating

    Raises
    ------
    RatingError
        On a bad table, shape, option type or mismatching arrays.
    """
    if not isinstance(cfg, RatingConfig):
        raise RatingError(f"cfg must be a RatingConfig, got {type(cfg).__name__}")
    if not isinstance(regions, pd.DataFrame):
        raise RatingError(f"regions must be a pandas DataFrame, got {type(regions).__name__}")
    try:
        shape = (int(shape[0]), int(shape[1]))
    except (TypeError, IndexError, ValueError):
        raise RatingError(f"shape must be (rows, cols), got {shape!r}") from None
    if len(tuple(shape)) != 2 or min(shape) < 1:
        raise RatingError(f"shape must be two positive integers, got {shape}")
    for name, arr in (("labels", labels), ("pixels", pixels)):
        if arr is not None and tuple(np.shape(arr)) != shape:
            raise RatingError(f"{name} has shape {np.shape(arr)}, expected {shape}")
    values = _empty_values()
    n = len(regions)
    blank = np.full(n, "", dtype="<U3")
    if pixel_size_um is None or not np.isfinite(pixel_size_um):
        values["rating_note"] = "not rated: no calibration (pixel size unknown)"
        return ScanRating(_empty_fields(scan_id), blank, values)
    s = float(pixel_size_um)
    if not s > 0:
        raise RatingError(f"pixel_size_um must be positive, got {pixel_size_um}")

    typing = classify_inclusions(regions, pixel_size_um=s, cfg=cfg, pixels=pixels, labels=labels)
    for note in typing.notes:
        log.info("%s: %s", scan_id or "scan", note)
    values.update(
        rating_info="; ".join(typing.notes),
        rating_direction_deg=typing.direction_deg,
        rating_direction_source=typing.direction_source,
        rating_ac_resolved=bool(typing.ac_resolved),
    )
    ftypes = typing.features["type"].to_numpy(dtype=object)
    for t in ("A", "C", "A/C", "B", "D", "DS"):
        values[f"rating_n_{t.replace('/', '')}"] = int(np.sum(ftypes == t))
    side_px = cfg.field_side_um / s
    values["rating_field_side_px"] = side_px
    grid = field_grid(shape, side_px=side_px, origin=cfg.field_origin)
    region_types = typing.region_types.astype("<U3")
    if grid.n_fields == 0:
        h_um, w_um = shape[0] * s, shape[1] * s
        values["rating_note"] = (
            f"not rated: the scan ({h_um:.0f} x {w_um:.0f} µm) is smaller than one "
            f"{cfg.field_side_um:g} µm field"
        )
        return ScanRating(_empty_fields(scan_id), region_types, values, features=typing.features)

    if exclude is not None and tuple(np.shape(exclude)) != shape:
        raise RatingError(f"exclude has shape {np.shape(exclude)}, expected {shape}")
    touched = grid.touched(exclude) if exclude is not None else np.zeros((grid.n_rows, grid.n_cols), bool)
    n_rated = grid.n_fields - int(touched.sum())
    if n_rated == 0:
        values["rating_note"] = f"not rated: each of the {grid.n_fields} whole field(s) holds excluded pixels"
        return ScanRating(_empty_fields(scan_id), region_types, values, features=typing.features)
    if touched.any():
        values["rating_info"] = "; ".join(x for x in (values["rating_info"],
                                                      f"{int(touched.sum())} field(s) with excluded pixels not rated") if x)

    def rated(df: pd.DataFrame) -> pd.DataFrame:
        keep = ~touched[df["field_row"].to_numpy(np.int64), df["field_col"].to_numpy(np.int64)]
        return df[keep].reset_index(drop=True)

    fields = rated(_field_rows(typing, grid, s, cfg, scan_id))
    for (t, ser), grp in fields.groupby(["type", "series"], sort=False):
        values[worst_column(t, ser)] = float(grp["severity"].max())
    values["rating_n_fields"] = n_rated

    stats_df = rated(field_measures(regions, grid, pixel_size_um=s, labels=labels))
    stats_df.insert(0, "scan_id", scan_id)
    values["e1245_n_fields"] = n_rated
    for m in E1245_MEASURES:
        summ = summarize(stats_df[m].to_numpy())
        for st in _E1245_STATS:
            values[f"e1245_{m}_{st}"] = summ[st]
    assert set(values) == set(RATING_SCAN_COLUMNS)
    return ScanRating(fields, region_types, values, stats_df[["scan_id", *FIELD_STAT_COLUMNS]], typing.features)
