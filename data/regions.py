"""Build a RegionTable (one row per impurity) from a binary mask or a label image.

The table is a :class:`pandas.DataFrame`.  Everything is computed in one pass
over the labelled pixels (``np.bincount``) plus one small crop per object cut
with :func:`scipy.ndimage.find_objects`; no full-image mask is ever made per
object.

Geometry conventions (all in pixels, axes row/col):

- ``bbox_*``: inclusive bounds, so a single pixel at (r, c) has
  ``bbox_rmin == bbox_rmax == r``.
- ``perimeter_px``: length of the closed outer contour through the centres of
  the boundary pixels (8-connected chain), 0 for a single pixel.
- ``enclosing_radius_px``: radius of the minimal enclosing circle of the
  boundary-pixel centres plus 0.5 px, so the circle covers the pixels.
- ``feret_max_px`` / ``feret_min_px``: largest / smallest caliper width of the
  convex hull of the pixel centres, plus 1 px (the pixel extent).
- ``orientation``: angle in radians in (-pi/2, pi/2] between the row axis and
  the major axis of the pixel distribution (second central moments).
- ``solidity``: area / area of the pixel-covering convex hull, in (0, 1].
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import cv2
from scipy import ndimage

from . import _chunked as chunked

__all__ = [
    "REGION_COLUMNS",
    "empty_regions",
    "label_mask",
    "regions_from_labels",
    "regions_from_mask",
    "relabel_sequential",
    "um_twin_columns",
]

REGION_COLUMNS: tuple[str, ...] = (
    "region_id",
    "centroid_row",
    "centroid_col",
    "bbox_rmin",
    "bbox_cmin",
    "bbox_rmax",
    "bbox_cmax",
    "area_px",
    "perimeter_px",
    "eq_diameter_px",
    "enclosing_radius_px",
    "feret_max_px",
    "feret_min_px",
    "orientation",
    "solidity",
)
_INT_COLUMNS = {"region_id", "bbox_rmin", "bbox_cmin", "bbox_rmax", "bbox_cmax", "area_px"}
# Columns that get a calibrated twin: name -> power of the pixel size.
_UM_TWINS = {
    "centroid_row": 1,
    "centroid_col": 1,
    "area_px": 2,
    "perimeter_px": 1,
    "eq_diameter_px": 1,
    "enclosing_radius_px": 1,
    "feret_max_px": 1,
    "feret_min_px": 1,
}


def um_twin_columns() -> tuple[str, ...]:
    """Names of the calibrated twins (``*_um``, ``area_um2``) a calibrated RegionTable has."""
    return tuple(_um_name(c) for c in _UM_TWINS)


def _um_name(col: str) -> str:
    return col[:-3] + "_um2" if col == "area_px" else col.removesuffix("_px") + "_um"


def empty_regions(*, pixel_size_um: float | None = None) -> pd.DataFrame:
    """A RegionTable with no rows and the right columns and dtypes."""
    cols = {c: np.zeros(0, dtype=np.int64 if c in _INT_COLUMNS else np.float64) for c in REGION_COLUMNS}
    return _add_um(pd.DataFrame(cols), pixel_size_um)


def _add_um(table: pd.DataFrame, pixel_size_um: float | None) -> pd.DataFrame:
    if pixel_size_um is None:
        return table
    s = float(pixel_size_um)
    if not s > 0:
        raise ValueError(f"pixel_size_um must be positive, got {pixel_size_um}")
    for col, power in _UM_TWINS.items():
        table[_um_name(col)] = table[col].to_numpy(dtype=np.float64) * s**power
    return table


def label_mask(mask: np.ndarray, *, connectivity: int = 2) -> tuple[np.ndarray, int]:
    """Label the connected components of a binary mask.

    Parameters
    ----------
    mask : ndarray, shape (M, N)
        Nonzero = impurity.
    connectivity : {1, 2}
        1 = 4-connected, 2 = 8-connected (default).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (row, col), got shape {mask.shape}")
    if connectivity not in (1, 2):
        raise ValueError(f"connectivity must be 1 or 2, got {connectivity}")
    structure = ndimage.generate_binary_structure(2, connectivity)
    labels, n = ndimage.label(mask != 0, structure=structure)
    return labels, int(n)


def relabel_sequential(labels: np.ndarray, *, min_area_px: int = 1) -> np.ndarray:
    """Drop labels smaller than ``min_area_px`` and renumber the rest 1..n by label value.

    After this, ``regions_from_labels(out)["region_id"]`` equals the pixel
    labels of ``out``: the label image is the region table's pixel map.

    >>> relabel_sequential(np.array([[0, 5, 5, 9], [2, 0, 0, 0]]), min_area_px=2).tolist()
    [[0, 1, 1, 0], [0, 0, 0, 0]]
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be a 2-D integer array, got {labels.dtype} {labels.shape}")
    if labels.size == 0 or not labels.any():
        return np.zeros(labels.shape, np.int32)
    try:  # in blocks (data._chunked): no full-image intp copy
        area = chunked.bincount(labels)
    except ValueError as exc:  # negative labels
        raise ValueError(f"labels must be non-negative ({exc})") from None
    keep = area >= int(min_area_px)
    keep[0] = False
    n = int(keep.sum())
    # the lookup table in the output type: one gather in blocks, no int64 copy of the image to cast back
    lut = np.zeros(area.size, dtype=np.int32 if n < 2**31 - 1 else np.int64)
    lut[keep] = np.arange(1, n + 1)
    return chunked.take(lut, labels)


def regions_from_mask(
    mask: np.ndarray,
    *,
    pixel_size_um: float | None = None,
    min_area_px: int = 1,
    connectivity: int = 2,
) -> pd.DataFrame:
    """One row per connected component of a binary impurity mask.

    Parameters
    ----------
    mask : ndarray, shape (M, N)
        Any dtype; nonzero pixels are impurity.
    pixel_size_um : float, optional
        When given, ``_um`` (lengths) and ``_um2`` (areas) twins are added.
    min_area_px : int
        Components with fewer pixels are dropped.
    connectivity : {1, 2}
        Pixel connectivity (2 = 8-connected, the default).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`REGION_COLUMNS` (+ calibrated twins); ``region_id`` is
        1..n in raster order of the components' first pixels.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((5, 6), bool); m[1:3, 1:4] = True; m[4, 5] = True
    >>> t = regions_from_mask(m)
    >>> t[["region_id", "area_px", "bbox_rmin", "bbox_cmax"]].to_numpy().tolist()
    [[1, 6, 1, 3], [2, 1, 4, 5]]
    """
    labels, _ = label_mask(mask, connectivity=connectivity)
    return regions_from_labels(labels, pixel_size_um=pixel_size_um, min_area_px=min_area_px)


def regions_from_labels(
    labels: np.ndarray,
    *,
    pixel_size_um: float | None = None,
    min_area_px: int = 1,
) -> pd.DataFrame:
    """One row per label of a label image (0 = background).

    Labels need not be consecutive; after filtering by ``min_area_px`` the
    surviving regions are renumbered 1..n in order of their label value.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D (row, col), got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be an integer array, got {labels.dtype}")
    if int(min_area_px) < 1:
        raise ValueError(f"min_area_px must be >= 1, got {min_area_px}")
    if labels.size == 0 or not labels.any():
        return empty_regions(pixel_size_um=pixel_size_um)
    if labels.min() < 0:
        raise ValueError("labels must be non-negative")

    rows, cols = np.nonzero(labels)
    lab = labels[rows, cols].astype(np.intp)
    nlab = int(lab.max()) + 1
    area = np.bincount(lab, minlength=nlab)
    keep = np.flatnonzero(area >= int(min_area_px))
    keep = keep[keep > 0]
    if keep.size == 0:
        return empty_regions(pixel_size_um=pixel_size_um)

    r = rows.astype(np.float64)
    c = cols.astype(np.float64)
    a = np.maximum(area, 1).astype(np.float64)
    mr = np.bincount(lab, weights=r, minlength=nlab) / a
    mc = np.bincount(lab, weights=c, minlength=nlab) / a
    dr = r - mr[lab]
    dc = c - mc[lab]
    crr = np.bincount(lab, weights=dr * dr, minlength=nlab) / a
    ccc = np.bincount(lab, weights=dc * dc, minlength=nlab) / a
    crc = np.bincount(lab, weights=dr * dc, minlength=nlab) / a
    orientation = 0.5 * np.arctan2(2.0 * crc, crr - ccc)

    slices = ndimage.find_objects(labels, max_label=nlab - 1)  # any integer dtype, as it is (no intp copy)
    n = keep.size
    bbox = np.empty((n, 4), dtype=np.int64)
    perim = np.empty(n)
    radius = np.empty(n)
    fmax = np.empty(n)
    fmin = np.empty(n)
    solidity = np.empty(n)
    for i, lbl in enumerate(keep):
        sl = slices[lbl - 1]
        r0, r1, c0, c1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        bbox[i] = (r0, c0, r1 - 1, c1 - 1)
        crop = np.zeros((r1 - r0 + 2, c1 - c0 + 2), dtype=np.uint8)
        crop[1:-1, 1:-1] = labels[sl] == lbl
        perim[i], radius[i], fmax[i], fmin[i], solidity[i] = _shape_measures(crop, int(area[lbl]))

    table = pd.DataFrame(
        {
            "region_id": np.arange(1, n + 1, dtype=np.int64),
            "centroid_row": mr[keep],
            "centroid_col": mc[keep],
            "bbox_rmin": bbox[:, 0],
            "bbox_cmin": bbox[:, 1],
            "bbox_rmax": bbox[:, 2],
            "bbox_cmax": bbox[:, 3],
            "area_px": area[keep].astype(np.int64),
            "perimeter_px": perim,
            "eq_diameter_px": np.sqrt(4.0 * area[keep] / np.pi),
            "enclosing_radius_px": radius,
            "feret_max_px": fmax,
            "feret_min_px": fmin,
            "orientation": orientation[keep],
            "solidity": solidity,
        }
    )
    return _add_um(table, pixel_size_um)


def _shape_measures(crop: np.ndarray, area: int) -> tuple[float, float, float, float, float]:
    """Perimeter, enclosing radius, Feret max/min and solidity of one padded object crop."""
    contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    pts = np.concatenate(contours, axis=0) if len(contours) > 1 else contours[0]
    perimeter = float(cv2.arcLength(contours[0], True)) if len(contours[0]) > 1 else 0.0
    if len(contours) > 1:  # can only happen for 4-connected labels touching diagonally
        perimeter = float(sum(cv2.arcLength(ct, True) for ct in contours if len(ct) > 1))
    hull = cv2.convexHull(pts)
    (_, _), rad = cv2.minEnclosingCircle(hull)
    hp = hull.reshape(-1, 2).astype(np.float64)
    fmax, fmin = _feret(hp)
    hull_area = cv2.contourArea(hull) + 0.5 * cv2.arcLength(hull, True) + 1.0
    solidity = min(1.0, area / hull_area)
    return perimeter, float(rad) + 0.5, fmax + 1.0, fmin + 1.0, solidity


def _feret(hull: np.ndarray) -> tuple[float, float]:
    """Max and min caliper widths of a convex polygon given by its vertices (K, 2)."""
    k = hull.shape[0]
    if k == 1:
        return 0.0, 0.0
    diff = hull[:, None, :] - hull[None, :, :]
    fmax = float(np.sqrt((diff**2).sum(-1)).max())
    if k == 2:
        return fmax, 0.0
    edges = np.roll(hull, -1, axis=0) - hull
    lengths = np.hypot(edges[:, 0], edges[:, 1])
    ok = lengths > 0
    normals = np.stack([-edges[ok, 1], edges[ok, 0]], axis=1) / lengths[ok, None]
    proj = hull @ normals.T  # (K, E)
    widths = proj.max(axis=0) - proj.min(axis=0)
    return fmax, float(widths.min())
