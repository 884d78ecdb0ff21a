"""Inclusion typing (ASTM E45 / ISO 4967 types A, C, B, D, DS) and stringers, from a RegionTable.

Morphology (ISO 4967 clause 3 / ASTM E45 Method A descriptions, applied to measured regions):

- **A / C** (elongated, deformable sulfides / silicates): Feret max / Feret min >= ``elongated_aspect``.
  Elongated inclusions in line along the rolling direction (axis within ``align_tolerance_deg``,
  gap along <= ``ac_gap_um``, centres across <= ``ac_offset_um``) form one stringer.  A vs C:
  by mean gray level relative to the matrix on raw scans when two classes separate clearly
  (A lighter); otherwise ``"A/C"``.
- **B** (stringers of globular/angular particles): at least ``min_stringer_particles`` globular
  particles chained along the rolling direction (gap along <= ``stringer_gap_um``, centres across
  <= ``stringer_offset_um``).
- **D** (isolated globular particles) and **DS** (a single globular particle with diameter
  >= ``ds_min_diameter_um``).

Geometry: centroids and Feret calipers of the region table, in µm (``pixel_size_um``).  Along the
rolling direction (unit vector ``d``) an elongated inclusion whose axis makes the angle ``t`` with
``d`` spans ``L |cos t| + W |sin t|`` (L, W = Feret max, min: the inclusion as a rectangle), a
globular particle its mean caliper ``(L + W) / 2``; gaps are measured between those spans.  Candidate pairs come from a KD-tree on (along, across / offset)
coordinates, groups from the connected components of the accepted pairs (no loop over pairs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .config import RatingConfig, RatingError

__all__ = [
    "FEATURE_COLUMNS",
    "InclusionTyping",
    "classify_inclusions",
    "direction_vector",
    "estimate_rolling_direction",
    "region_axis_deg",
]

log = logging.getLogger(__name__)

_NEEDED = ("centroid_row", "centroid_col", "feret_max_px", "feret_min_px", "orientation")

#: Columns of :attr:`InclusionTyping.features` (one row per rated inclusion or stringer).
FEATURE_COLUMNS: tuple[str, ...] = (
    "feature_id",
    "type",
    "series",
    "n_particles",
    "length_um",
    "width_um",
    "diameter_um",
    "centre_row",
    "centre_col",
    "axis_deg",
    "oversize",
)


def _mod180(a):
    """Angles folded into [0, 180) (rounding noise just under 180 becomes 0)."""
    out = np.asarray(a, dtype=np.float64) % 180.0
    return np.where(out > 180.0 - 1e-9, 0.0, out)


def region_axis_deg(orientation: np.ndarray) -> np.ndarray:
    """Major-axis angle of regions in the rating convention (degrees from the col axis, CCW as displayed).

    The RegionTable's ``orientation`` is the angle from the row axis to the major axis, so the
    axis is the (row, col) vector ``(cos o, sin o)``; returned in [0, 180).

    >>> region_axis_deg(np.array([np.pi / 2, 0.0, np.pi / 4])).round(6).tolist()
    [0.0, 90.0, 135.0]
    """
    o = np.asarray(orientation, dtype=np.float64)
    return _mod180(np.degrees(np.arctan2(-np.cos(o), np.sin(o))))


def direction_vector(angle_deg: float) -> np.ndarray:
    """Unit vector (row, col) of a direction given in the rating convention."""
    a = np.radians(float(angle_deg))
    return np.array([-np.sin(a), np.cos(a)])


def _axial_mean(angles_deg: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """Weighted axial mean angle (deg, [0, 180)) and coherence (mean resultant length of 2x angles)."""
    w = np.asarray(weights, dtype=np.float64)
    two = np.radians(2.0 * np.asarray(angles_deg, dtype=np.float64))
    s, c = float(np.sum(w * np.sin(two))), float(np.sum(w * np.cos(two)))
    total = float(np.sum(w))
    if total <= 0:
        return float("nan"), 0.0
    return float(_mod180(np.degrees(0.5 * np.arctan2(s, c)))), float(np.hypot(s, c) / total)


def _check(regions: pd.DataFrame) -> None:
    if not isinstance(regions, pd.DataFrame):
        raise RatingError(f"regions must be a pandas DataFrame (a RegionTable), got {type(regions).__name__}")
    missing = [c for c in _NEEDED if c not in regions.columns]
    if missing:
        raise RatingError(f"regions lacks the RegionTable column(s) {missing}")


def estimate_rolling_direction(
    regions: pd.DataFrame, *, cfg: RatingConfig
) -> tuple[float | None, float, int]:
    """Rolling direction from the orientations of the elongated inclusions.

    Returns
    -------
    angle_deg : float or None
        Length-weighted axial mean (rating convention), or ``None`` when there are fewer than
        ``cfg.auto_min_elongated`` elongated inclusions or their coherence is below
        ``cfg.auto_min_coherence``.
    coherence : float
        Mean resultant length of the doubled angles (1 = all parallel, 0 = isotropic).
    n_elongated : int
    """
    _check(regions)
    L = regions["feret_max_px"].to_numpy(np.float64)
    W = np.maximum(regions["feret_min_px"].to_numpy(np.float64), 1e-9)
    elong = np.round(L / W, 9) >= cfg.elongated_aspect
    n = int(elong.sum())
    if n == 0:
        return None, 0.0, 0
    angle, coh = _axial_mean(region_axis_deg(regions["orientation"].to_numpy()[elong]), L[elong])
    if n < cfg.auto_min_elongated or coh < cfg.auto_min_coherence:
        return None, coh, n
    return angle, coh, n


def _link(u: np.ndarray, v: np.ndarray, h: np.ndarray, gap: float, offset: float) -> np.ndarray:
    """Component label of each point: pairs with along-gap <= gap and |across| <= offset are linked."""
    n = u.size
    if n == 0:
        return np.zeros(0, np.int64)
    if n == 1:
        return np.zeros(1, np.int64)
    reach = gap + 2.0 * float(h.max())
    off = max(offset, 1e-6)
    scale = reach / off
    tree = cKDTree(np.c_[u, v * scale])
    pairs = tree.query_pairs(np.hypot(reach, reach) + 1e-9, output_type="ndarray")
    if pairs.size:
        i, j = pairs[:, 0], pairs[:, 1]
        ok = (np.abs(v[i] - v[j]) <= offset + 1e-9) & (np.abs(u[i] - u[j]) - h[i] - h[j] <= gap + 1e-9)
        i, j = i[ok], j[ok]
    else:
        i = j = np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(i.size), (i, j)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    return comp.astype(np.int64)


def _components(comp: np.ndarray, idx: np.ndarray, min_size: int) -> list[np.ndarray]:
    """Members (from ``idx``) of every component with at least ``min_size`` of them, by one sort."""
    if comp.size == 0:
        return []
    order = np.argsort(comp, kind="stable")
    sizes = np.bincount(comp)
    bounds = np.cumsum(sizes)[:-1]
    parts = np.split(idx[order], bounds)
    return [parts[k] for k in np.flatnonzero(sizes >= min_size)]


def _otsu_split(x: np.ndarray) -> tuple[float, float, float, float] | None:
    """Best two-class split of 1-D values: (threshold, mean low, mean high, empty gap between the classes)."""
    s = np.sort(np.asarray(x, dtype=np.float64))
    n = s.size
    if n < 2 or s[-1] - s[0] <= 0:
        return None
    csum = np.cumsum(s)
    k = np.arange(1, n)  # low class = s[:k]
    m_low = csum[k - 1] / k
    m_high = (csum[-1] - csum[k - 1]) / (n - k)
    between = k * (n - k) * (m_high - m_low) ** 2
    between[s[k - 1] == s[k]] = -1.0  # split only between distinct values
    best = int(np.argmax(between))
    if between[best] < 0:
        return None
    kk = best + 1
    return 0.5 * (s[kk - 1] + s[kk]), float(m_low[best]), float(m_high[best]), float(s[kk] - s[kk - 1])


@dataclass(frozen=True)
class InclusionTyping:
    """Types of the regions of one scan and the rated features (inclusions and stringers).

    Attributes
    ----------
    region_types : ndarray of str, shape (n_regions,)
        ``A``, ``C``, ``A/C``, ``B``, ``D``, ``DS`` or ``""`` (not rated).
    region_feature : ndarray of int, shape (n_regions,)
        Row of :attr:`features` each region belongs to (-1: not rated).
    features : DataFrame
        Columns :data:`FEATURE_COLUMNS`; lengths/widths in µm, centres in pixels (row, col
        coordinates of pixel centres, as the RegionTable's centroids), ``axis_deg`` in the rating
        convention.
    direction_deg : float
        The rolling direction used.
    direction_source : str
        ``config``, ``auto`` or ``fallback`` (auto could not estimate it).
    ac_resolved : bool
        Whether elongated inclusions were split into A and C by gray level.
    notes : tuple of str
    """

    region_types: np.ndarray
    region_feature: np.ndarray
    features: pd.DataFrame
    direction_deg: float
    direction_source: str
    ac_resolved: bool
    notes: tuple[str, ...] = ()


def _series(width: np.ndarray, limits: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rated, series name, oversize) for widths against [thin_min, thin_max, heavy_max]."""
    thin_min, thin_max, heavy_max = limits
    rated = width >= thin_min
    series = np.where(width <= thin_max, "thin", "heavy")
    return rated, series, width > heavy_max


def _region_darkness(pixels: np.ndarray, labels: np.ndarray, region_ids: np.ndarray) -> np.ndarray:
    """(matrix - mean gray) / matrix per region; matrix = median gray of the label-0 pixels."""
    pix = np.asarray(pixels)
    lab = np.asarray(labels)
    if pix.shape != lab.shape:
        raise RatingError(f"pixels {pix.shape} and labels {lab.shape} must have the same shape")
    step = max(1, int(np.sqrt(lab.size / 4_000_000)))
    background = pix[::step, ::step][lab[::step, ::step] == 0]
    matrix = float(np.median(background)) if background.size else float(pix.max())
    means = np.asarray(ndimage.mean(pix.astype(np.float64), labels=lab, index=region_ids), dtype=np.float64)
    return (matrix - means) / max(matrix, 1e-9)


def classify_inclusions(
    regions: pd.DataFrame,
    *,
    pixel_size_um: float,
    cfg: RatingConfig,
    pixels: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> InclusionTyping:
    """Type every region and build the rated features (single inclusions and stringers).

    Parameters
    ----------
    regions : DataFrame
        A RegionTable (at least ``centroid_row, centroid_col, feret_max_px, feret_min_px,
        orientation``; ``region_id`` when ``labels`` is given).
    pixel_size_um : float
        Pixel size, µm (required: the standards' limits are in µm).
    cfg : RatingConfig
    pixels, labels : ndarray, shape (M, N), optional
        The raw scan and its label image (pixel value = ``region_id``): with both, elongated
        inclusions are split into A and C by gray level (``cfg.ac_split``).

    Returns
    -------
    InclusionTyping
    """
    _check(regions)
    if pixel_size_um is None or not float(pixel_size_um) > 0:
        raise RatingError(f"classify_inclusions needs a positive pixel_size_um, got {pixel_size_um}")
    s = float(pixel_size_um)
    notes: list[str] = []
    n = len(regions)

    # rolling direction
    if cfg.rolling_direction == "auto":
        est, coh, n_el = estimate_rolling_direction(regions, cfg=cfg)
        if est is None:
            direction, source = cfg.auto_fallback_deg, "fallback"
            notes.append(
                f"rolling direction not estimable ({n_el} elongated inclusions, coherence {coh:.2f}); "
                f"used {direction:g} deg"
            )
        else:
            direction, source = est, "auto"
    else:
        direction, source = float(cfg.rolling_direction), "config"

    types = np.full(n, "", dtype=object)
    feature_of = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return InclusionTyping(
            types.astype(str), feature_of, pd.DataFrame({c: [] for c in FEATURE_COLUMNS}),
            direction, source, False, tuple(notes),
        )

    r = regions["centroid_row"].to_numpy(np.float64)
    c = regions["centroid_col"].to_numpy(np.float64)
    # calipers rounded to 1e-6 µm so that ties at the limits (widths of whole pixels, aspect ratios
    # like 9 / 3) do not depend on floating-point noise (e.g. of the hull of a rotated image)
    L = np.round(regions["feret_max_px"].to_numpy(np.float64) * s, 6)
    W = np.round(regions["feret_min_px"].to_numpy(np.float64) * s, 6)
    aspect = np.round(L / np.maximum(W, 1e-9), 9)
    axis = region_axis_deg(regions["orientation"].to_numpy())
    d = direction_vector(direction)
    nrm = np.array([d[1], -d[0]])  # perpendicular in (row, col)
    u = (r * d[0] + c * d[1]) * s  # along the rolling direction, µm
    v = (r * nrm[0] + c * nrm[1]) * s  # across, µm
    t = np.radians(axis - direction)
    half_along = 0.5 * (L * np.abs(np.cos(t)) + W * np.abs(np.sin(t)))
    # a globular particle's axis is ill-defined (isotropic moments give orientation 0 whatever the
    # shape): its extent along any direction is taken as its mean caliper (L + W) / 2
    glob_mask = aspect < cfg.elongated_aspect
    half_along[glob_mask] = 0.25 * (L[glob_mask] + W[glob_mask])
    dev = np.abs((axis - direction + 90.0) % 180.0 - 90.0)  # axial angle to the direction, [0, 90]

    elong = aspect >= cfg.elongated_aspect
    pieces: list[pd.DataFrame] = []  # feature rows, in blocks
    n_feat = 0

    def _add_block(members: list[np.ndarray], ftype: np.ndarray, length, width, diam, crow, ccol, ax) -> None:
        nonlocal n_feat
        k = len(members)
        if k == 0:
            return
        for j, mem in enumerate(members):
            feature_of[mem] = n_feat + j
        pieces.append(pd.DataFrame({
            "type": np.asarray(ftype, dtype=object), "n_particles": [int(m.size) for m in members],
            "length_um": np.asarray(length, np.float64), "width_um": np.asarray(width, np.float64),
            "diameter_um": np.asarray(diam, np.float64), "centre_row": np.asarray(crow, np.float64),
            "centre_col": np.asarray(ccol, np.float64), "axis_deg": np.asarray(ax, np.float64),
        }))
        n_feat += k

    def _add_singles(idx: np.ndarray, ftype: np.ndarray, length: np.ndarray, diam: np.ndarray) -> None:
        nonlocal n_feat
        if idx.size == 0:
            return
        feature_of[idx] = n_feat + np.arange(idx.size)
        pieces.append(pd.DataFrame({
            "type": np.asarray(ftype, dtype=object), "n_particles": np.ones(idx.size, np.int64),
            "length_um": length, "width_um": W[idx], "diameter_um": diam,
            "centre_row": r[idx], "centre_col": c[idx], "axis_deg": axis[idx],
        }))
        n_feat += idx.size

    def _stringers(groups: list[np.ndarray], ftypes: list[str]) -> None:
        rows = []
        for members in groups:
            lo = float(np.min(u[members] - half_along[members]))
            hi = float(np.max(u[members] + half_along[members]))
            length = hi - lo if cfg.stringer_length == "span" else float(np.sum(2 * half_along[members]))
            wts = np.maximum(2 * half_along[members], 1e-9)
            rc = (0.5 * (lo + hi) * d + float(np.average(v[members], weights=wts)) * nrm) / s
            rows.append((length, float(W[members].max()), rc[0], rc[1]))
        a = np.array(rows, dtype=np.float64).reshape(-1, 4)
        _add_block(groups, np.array(ftypes, dtype=object), a[:, 0], a[:, 1], np.full(len(groups), np.nan),
                   a[:, 2], a[:, 3], np.full(len(groups), direction))

    # A / C: gray-level classes
    ac_class = np.full(n, "A/C", dtype=object)
    ac_resolved = False
    el_idx = np.flatnonzero(elong)
    if cfg.ac_split == "auto" and el_idx.size:
        if pixels is None or labels is None:
            notes.append("A/C not split: needs the raw scan and its label image")
        elif "region_id" not in regions.columns:
            notes.append("A/C not split: regions lack region_id")
        elif el_idx.size < cfg.ac_min_particles:
            notes.append(f"A/C not split: {el_idx.size} elongated inclusions (< {cfg.ac_min_particles})")
        else:
            dark = _region_darkness(pixels, labels, regions["region_id"].to_numpy()[el_idx])
            split = _otsu_split(dark)
            if split is not None:
                thr, m_lo, _m_hi, gap = split
                lo_n, hi_n = int(np.sum(dark <= thr)), int(np.sum(dark > thr))
                # two clear classes: an empty gap between them, enough particles in each, and the
                # lighter class still darker than the matrix (sulfides are gray, not bright)
                if (gap >= cfg.ac_min_contrast_gap and min(lo_n, hi_n) >= cfg.ac_min_class_size
                        and m_lo >= cfg.ac_min_darkness):
                    ac_class[el_idx] = np.where(dark > thr, "C", "A")
                    ac_resolved = True
            if not ac_resolved:
                notes.append("A/C not split: the elongated inclusions' gray levels form no two clear classes")

    # A / C stringers: aligned elongated inclusions in line; the rest are single inclusions
    # (inclusions narrower than the thin minimum are not rated and join no stringer)
    ac_min_w = min(cfg.widths_for("A")[0], cfg.widths_for("C")[0])
    aligned = el_idx[(dev[el_idx] <= cfg.align_tolerance_deg + 1e-9) & (W[el_idx] >= ac_min_w)]
    comp = _link(u[aligned], v[aligned], half_along[aligned], cfg.ac_gap_um, cfg.ac_offset_um)
    sizes = np.bincount(comp, minlength=1)
    multi = sizes[comp] > 1 if comp.size else np.zeros(0, bool)
    groups = _components(comp, aligned, 2)
    if ac_resolved:
        def _major(mem: np.ndarray) -> str:
            cls, lengths = ac_class[mem], L[mem]
            return "C" if lengths[cls == "C"].sum() > lengths[cls == "A"].sum() else "A"
        g_types = [_major(m) for m in groups]
    else:
        g_types = ["A/C"] * len(groups)
    _stringers(groups, g_types)
    ac_single = np.sort(np.concatenate([aligned[~multi], np.setdiff1d(el_idx, aligned)]))
    _add_singles(ac_single, ac_class[ac_single], L[ac_single], np.full(ac_single.size, np.nan))

    # B stringers, then D / DS single particles
    glob = np.flatnonzero(~elong)
    cand = glob[W[glob] >= cfg.width_limits_um["B"][0]]
    comp = _link(u[cand], v[cand], half_along[cand], cfg.stringer_gap_um, cfg.stringer_offset_um)
    groups = _components(comp, cand, cfg.min_stringer_particles)
    _stringers(groups, ["B"] * len(groups))
    in_b = np.zeros(n, bool)
    if groups:
        in_b[np.concatenate(groups)] = True
    single = glob[~in_b[glob]]
    _add_singles(single, np.where(L[single] >= cfg.ds_min_diameter_um, "DS", "D"),
                 np.full(single.size, np.nan), L[single])

    base = [c_ for c_ in FEATURE_COLUMNS if c_ not in ("feature_id", "series", "oversize")]
    features = pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame({k: [] for k in base})
    features.insert(0, "feature_id", np.arange(len(features), dtype=np.int64))
    series = np.full(len(features), "", dtype=object)
    oversize = np.zeros(len(features), bool)
    rated = np.zeros(len(features), bool)
    ftypes = features["type"].to_numpy(dtype=object)
    for ft in ("A", "C", "A/C", "B", "D"):
        m = ftypes == ft
        if not m.any():
            continue
        measure = features["diameter_um" if ft == "D" else "width_um"].to_numpy(np.float64)[m]
        ok, ser, over = _series(measure, cfg.widths_for(ft))
        rated[m], series[m], oversize[m] = ok, ser, over
    m = ftypes == "DS"
    rated[m], series[m] = True, "single"
    series[~rated] = ""
    features["series"] = series
    features["oversize"] = oversize & rated
    features = features[list(FEATURE_COLUMNS)]
    rated_region = (feature_of >= 0) & rated[np.maximum(feature_of, 0)]
    types[rated_region] = ftypes[feature_of[rated_region]]
    feature_of[~rated_region] = -1
    features = features[rated].reset_index(drop=True)
    # renumber the region -> feature index after dropping unrated features
    remap = np.full(rated.size, -1, np.int64)
    remap[np.flatnonzero(rated)] = np.arange(int(rated.sum()))
    feature_of = np.where(feature_of >= 0, remap[np.maximum(feature_of, 0)], -1)
    features["feature_id"] = np.arange(len(features), dtype=np.int64)
    return InclusionTyping(
        types.astype(str), feature_of, features, float(direction), source, ac_resolved, tuple(notes)
    )
