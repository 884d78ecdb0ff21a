"""Measurements of a phase label image (issue 24): phase fractions, coating thickness and porosity.

* Area fraction of each phase with the ASTM E1245-style field-to-field 95 % t-interval (the scan cut
  into a ``fields`` grid, one fraction per field).
* ASTM E562 systematic point count: the fraction of grid points on each phase and its binomial
  standard error ``sqrt(p (1 - p) / P)``.
* Coating (when ``coating`` is named, ``substrate`` must be too): per column the top surface (first
  coating row after the enclosed pores of the layer are filled) and the interface (top of the
  substrate below it; notches of pores open at the surface are closed by a grey opening of the
  top profile over 31 columns); thickness = interface - top surface, mean / std / min / max and a 95 %
  t-interval of the mean from strips along the layer (``thickness_strips``: by default as many as
  the profile's autocorrelation length allows); porosity (ASTM E2109 style) = pore
  pixels inside the layer / layer pixels, with a field-to-field 95 % t-interval along the layer.
  Dark pixels above the top surface (the mount) never count as porosity.
* The mount (when a coating is measured): per column the pixels above the top surface of the layer
  (in a column with no layer, above the substrate; a column with neither is all mount) -- the resin
  outside the sample, on the image edge of the mount side.  The phase fractions and the point count
  are then over the sample pixels only (mount excluded, so the dark resin is not counted as pore);
  ``coating.mount_fraction`` is the mount's share of the image and
  ``PhaseMeasurement.sample_mask`` the sample pixels.  Without a coating nothing is excluded (a
  multiphase scan is all sample).
* Melted / unmelted fraction when both phases are named.
* The region table (``data.regions_from_labels`` columns + ``phase``) of the object phases' connected
  components (components outside the layer are dropped when a coating is measured).

Sizes are µm on a calibrated scan; on an uncalibrated one thickness is in px only with
``allow_px=True`` (``thickness_unit`` says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, TYPE_CHECKING

import numpy as np

from segmentation.phases.classical import PhaseError

if TYPE_CHECKING:  # annotations only (the module imports them where it uses them)
    import pandas as pd


__all__ = ["PhaseError", "PhaseMeasureConfig", "PhaseMeasurement", "measure_phases", "unknown_phase_names"]

#: Width (columns) of the grey opening of the top-surface profile that fills pores open at the top.
_SURFACE_WINDOW_PX = 31

FRACTION_COLUMNS = ("scan_id", "phase", "area_fraction", "ci_low", "ci_high", "n_fields",
                    "point_count_fraction", "point_count_se")


@dataclass(frozen=True)
class PhaseMeasureConfig:
    """What :func:`measure_phases` measures.

    Parameters
    ----------
    fields : (int, int)
        Field grid (rows, cols) of the field-to-field intervals; the coating intervals use the
        ``fields[1]`` strips along the layer (``fields[0]`` for ``direction="rows"``).
    point_spacing_px : int
        Spacing of the E562 point grid.
    coating, substrate : str, optional
        Names of the coating and substrate phases (coating measures need both).
    pores : tuple of str
        Phases counted as porosity inside the coating.
    objects : tuple of str
        Phases whose connected components become region rows.
    direction : {"columns", "rows"}
        Thickness measured along image columns (layer horizontal) or rows (layer vertical; the
        "top" surface is then the left edge).
    allow_px : bool
        Allow thickness in px on an uncalibrated scan.
    melted, unmelted : str, optional
        Phases whose ratio gives ``melted_fraction``.
    thickness_strips : int or "auto"
        Strips along the layer for the 95 % interval of the thickness mean.  ``"auto"``: as many
        strips as the profile holds lengths of twice its integrated autocorrelation length
        ``tau = 1 + 2 sum(rho_k)`` (ACF summed up to its first negative lag), clipped to 2..16 --
        adjacent strips of a smoothly varying layer are correlated, and a t-interval over
        correlated strip means is too narrow (4 fixed strips covered the nominal mean on 87-88 %
        of the tuning scans, "auto" on 92 %).  An int fixes the number.
    """

    fields: tuple[int, int] = (4, 4)
    point_spacing_px: int = 16
    coating: str | None = None
    substrate: str | None = None
    pores: tuple[str, ...] = ("pore",)
    objects: tuple[str, ...] = ("pore",)
    direction: str = "columns"
    allow_px: bool = False
    melted: str | None = None
    unmelted: str | None = None
    thickness_strips: int | str = "auto"

    def __post_init__(self) -> None:
        ts = self.thickness_strips
        if ts != "auto" and (isinstance(ts, bool) or not isinstance(ts, (int, np.integer)) or ts < 2):
            raise PhaseError(f"phases.thickness_strips must be 'auto' or an integer >= 2, got {ts!r}")
        f = tuple(int(x) for x in self.fields)
        if len(f) != 2 or min(f) < 1:
            raise PhaseError(f"phases.fields must be two integers >= 1, got {self.fields}")
        object.__setattr__(self, "fields", f)
        object.__setattr__(self, "pores", tuple(self.pores))
        object.__setattr__(self, "objects", tuple(self.objects))
        if int(self.point_spacing_px) < 1:
            raise PhaseError(f"phases.point_spacing_px must be >= 1, got {self.point_spacing_px}")
        if self.direction not in ("columns", "rows"):
            raise PhaseError(f"phases.direction must be 'columns' or 'rows', got {self.direction!r}")
        if self.coating is not None and self.substrate is None:
            raise PhaseError(
                f"a coating ({self.coating!r}) was asked for with no substrate phase: set phases.substrate "
                "(the interface is the top of the substrate)"
            )
        if (self.melted is None) != (self.unmelted is None):
            raise PhaseError("phases.melted and phases.unmelted must be given together")


@dataclass
class PhaseMeasurement:
    """The measurements of one scan (see :func:`measure_phases`)."""

    fractions: pd.DataFrame
    coating: pd.DataFrame | None
    regions: pd.DataFrame
    thickness_profile: np.ndarray | None
    region_labels: np.ndarray
    #: Pixels the fractions are over: assigned (label > 0) and, when a coating is measured, not mount.
    sample_mask: np.ndarray | None = None


def _ci(values: np.ndarray) -> tuple[float, float, int]:
    from .stereology import summarize  # lazy
    s = summarize(np.asarray(values, dtype=np.float64))
    return s["mean"] - s["ci95"], s["mean"] + s["ci95"], int(s["n"])


def _ci01(values: np.ndarray) -> tuple[float, float, int]:
    lo, hi, n = _ci(values)
    return max(lo, 0.0), min(hi, 1.0), n


def autocorrelation_length(values: np.ndarray) -> float:
    """Integrated autocorrelation length ``1 + 2 sum_k rho_k`` of a 1-D series (sum to the first negative lag)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = x.size
    if n < 3:
        return 1.0
    x = x - x.mean()
    v = float(np.dot(x, x))
    if v <= 0:
        return 1.0
    f = np.fft.rfft(x, 2 * n)
    r = np.fft.irfft(f * np.conj(f))[: n // 2] / v
    neg = np.flatnonzero(r < 0)
    cut = int(neg[0]) if neg.size else r.size
    return float(1.0 + 2.0 * r[1:cut].sum())


def thickness_strip_count(profile: np.ndarray, cfg: "PhaseMeasureConfig") -> int:
    """Number of strips of the thickness interval (see ``PhaseMeasureConfig.thickness_strips``)."""
    if cfg.thickness_strips != "auto":
        return int(cfg.thickness_strips)
    fin = np.asarray(profile, dtype=np.float64)
    fin = fin[np.isfinite(fin)]
    if fin.size < 4:
        return 2
    return int(np.clip(np.floor(fin.size / (2.0 * autocorrelation_length(fin))), 2, 16))


def _splits(length: int, n: int) -> list[np.ndarray]:
    return [a for a in np.array_split(np.arange(length), min(n, length)) if a.size]


def _check(labels: np.ndarray, names: Sequence[str], cfg: PhaseMeasureConfig) -> tuple[np.ndarray, list[str]]:
    lab = np.asarray(labels)
    if lab.ndim == 3:
        raise PhaseError(f"labels must be a 2-D phase label image, got an RGB-like array of shape {lab.shape}")
    if lab.ndim != 2 or lab.size == 0:
        raise PhaseError(f"labels must be a non-empty 2-D array, got shape {lab.shape}")
    if lab.dtype.kind not in "iu":
        raise PhaseError(f"labels must be an integer label image, got dtype {lab.dtype}")
    names = list(names)
    if len(set(names)) != len(names) or not names:
        raise PhaseError(f"names must be distinct and non-empty, got {names}")
    if lab.min() < 0 or lab.max() > len(names):
        raise PhaseError(
            f"labels hold values {int(lab.min())}..{int(lab.max())} but only {len(names)} phase names "
            f"were given ({names}); label k is names[k-1], 0 = unassigned"
        )
    for key, bad in unknown_phase_names(names, cfg).items():
        if isinstance(bad, str):
            raise PhaseError(f"phases.{key}={bad!r} is not one of the phase names {names}")
        if key == "pores" and cfg.coating is not None:  # objects not named are simply not measured
            raise PhaseError(f"phases.{key} lists {bad}, not among the phase names {names}")
    return lab, names


def unknown_phase_names(names: Sequence[str], cfg: PhaseMeasureConfig) -> dict:
    """The settings of ``cfg`` that name a phase not in ``names``.

    ``{key: name}`` for ``coating`` / ``substrate`` / ``melted`` / ``unmelted`` and ``{key: [names]}``
    for ``pores`` / ``objects`` (only the keys that have one).
    """
    known = set(names)
    out: dict = {}
    for key in ("coating", "substrate", "melted", "unmelted"):
        v = getattr(cfg, key)
        if v is not None and v not in known:
            out[key] = v
    for key in ("pores", "objects"):
        bad = [v for v in getattr(cfg, key) if v not in known]
        if bad:
            out[key] = bad
    return out


def _fractions(lab: np.ndarray, names: list[str], cfg: PhaseMeasureConfig, scan_id: str,
               valid: np.ndarray) -> pd.DataFrame:
    import pandas as pd  # lazy
    n_valid = int(valid.sum())
    rs, cs = _splits(lab.shape[0], cfg.fields[0]), _splits(lab.shape[1], cfg.fields[1])
    sp = int(cfg.point_spacing_px)
    pts = lab[sp // 2 :: sp, sp // 2 :: sp]
    pts = pts[valid[sp // 2 :: sp, sp // 2 :: sp]]
    rows = []
    for k, name in enumerate(names, start=1):
        m = (lab == k) & valid
        per_field = []
        for r in rs:
            for c in cs:
                sub_v = valid[r[0] : r[-1] + 1, c[0] : c[-1] + 1]
                nv = int(sub_v.sum())
                if nv:
                    per_field.append(m[r[0] : r[-1] + 1, c[0] : c[-1] + 1].sum() / nv)
        lo, hi, nf = _ci01(np.array(per_field))
        p = float(np.mean(pts == k)) if pts.size else float("nan")
        se = float(np.sqrt(p * (1 - p) / pts.size)) if pts.size else float("nan")
        rows.append({
            "scan_id": scan_id, "phase": name,
            "area_fraction": float(m.sum() / n_valid) if n_valid else float("nan"),
            "ci_low": lo, "ci_high": hi, "n_fields": nf,
            "point_count_fraction": p, "point_count_se": se,
        })
    return pd.DataFrame(rows, columns=list(FRACTION_COLUMNS))


def _largest(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a mask (empty mask: itself)."""
    from segmentation.phases.classical import label_components

    comp, n = label_components(mask, connectivity=8)
    if n <= 1:
        return mask
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    return comp == int(sizes.argmax())


def _first_rows(mask: np.ndarray, *, last: bool = False) -> np.ndarray:
    """Per column the first (``last``: the last) True row of a 2-D mask; 0 (``last``: h - 1) where none.

    ``np.argmax(mask, axis=0)`` (``h - 1 - np.argmax(mask[::-1], axis=0)``) by OpenCV's column reduction.
    """
    import cv2

    m = np.ascontiguousarray(mask, dtype=bool)
    if m.size == 0 or m.shape[0] >= 2**31:
        return (m.shape[0] - 1 - np.argmax(m[::-1], axis=0)) if last else np.argmax(m, axis=0)
    return cv2.reduceArgMax(m.view(np.uint8), 0, lastIndex=bool(last)).reshape(-1).astype(np.intp)


def _layer(lab: np.ndarray, names: list[str], cfg: PhaseMeasureConfig):
    """Layer mask, pore mask, per-column top surface and interface rows, columns with a layer, mount mask."""
    from scipy import ndimage as ndi

    from segmentation.phases.classical import fill_holes

    kc = names.index(cfg.coating) + 1
    ks = names.index(cfg.substrate) + 1
    pore_ids = [names.index(p) + 1 for p in cfg.pores if p in names]
    # the main bodies only: specks of coating / substrate grey in the mount must not move the
    # surfaces
    sub = _largest(lab == ks)
    coat = _largest((lab == kc) & ~sub)
    inner = fill_holes(coat | sub) & ~sub  # coating with its enclosed pores filled
    h, w = lab.shape
    rows = np.arange(h)[:, None]
    has = inner.any(axis=0)
    top = np.where(has, _first_rows(inner), -1)
    if has.sum() >= 3:  # pores open at the top surface: a grey opening removes their notches
        idx = np.flatnonzero(has)
        top[idx] = ndi.grey_opening(top[idx], size=min(_SURFACE_WINDOW_PX, idx.size), mode="nearest")
    # interface: first substrate row below the top surface (else: below the last layer row)
    below_sub = sub & (rows >= np.maximum(top, 0)[None, :])
    has_sub = below_sub.any(axis=0)
    last_inner = _first_rows(inner, last=True)
    iface = np.where(has_sub, _first_rows(below_sub), last_inner + 1)
    ok = has
    layer = (rows >= top[None, :]) & (rows < iface[None, :]) & ok[None, :]
    layer &= lab > 0
    is_pore = np.zeros(lab.shape, dtype=bool)
    for pid in sorted(set(pore_ids)):
        is_pore |= lab == pid
    is_pore &= layer
    # mount: above the top surface; in a column with no layer, above the substrate body; a column
    # with neither is outside the sample
    sub_any = sub.any(axis=0)
    sample_top = np.where(has, top, np.where(sub_any, _first_rows(sub), h))
    mount = rows < sample_top[None, :]
    return layer, is_pore, top, iface, ok, mount


def _coating(lab, names, cfg, pixel_size_um, scan_id):
    import pandas as pd  # lazy
    if pixel_size_um is None and not cfg.allow_px:
        raise PhaseError(
            "coating thickness asked for on an uncalibrated scan: give a pixel size, or set "
            "phases.allow_px=true to measure in px"
        )
    t = lab.T if cfg.direction == "rows" else lab
    layer, is_pore, top, iface, ok, mount = _layer(t, names, cfg)
    scale = float(pixel_size_um) if pixel_size_um is not None else 1.0
    prof = np.where(ok, (iface - top).astype(np.float64) * scale, np.nan)
    strips = _splits(t.shape[1], cfg.fields[0] if cfg.direction == "rows" else cfg.fields[1])
    th_f, por_f = [], []
    # thickness strips along the finite profile (columns with a layer), as many as its
    # autocorrelation allows
    fin_prof = prof[np.isfinite(prof)]
    n_strips = thickness_strip_count(fin_prof, cfg)
    for s in _splits(fin_prof.size, n_strips):
        th_f.append(float(fin_prof[s].mean()))
    for s in strips:
        nl = int(layer[:, s].sum())
        if nl:
            por_f.append(is_pore[:, s].sum() / nl)
    fin = prof[np.isfinite(prof)]
    nan = float("nan")
    tlo, thi, _ = _ci(np.array(th_f))
    plo, phi, _ = _ci01(np.array(por_f))
    n_layer = int(layer.sum())
    row = {
        "scan_id": scan_id,
        "thickness_mean_um": float(fin.mean()) if fin.size else nan,
        "thickness_std_um": float(fin.std(ddof=1)) if fin.size > 1 else nan,
        "thickness_min_um": float(fin.min()) if fin.size else nan,
        "thickness_max_um": float(fin.max()) if fin.size else nan,
        "thickness_ci_low": tlo, "thickness_ci_high": thi, "thickness_n_strips": len(th_f),
        "porosity": float(is_pore.sum() / n_layer) if n_layer else nan,
        "porosity_ci_low": plo, "porosity_ci_high": phi,
        "thickness_unit": "um" if pixel_size_um is not None else "px",
        "mount_fraction": float(mount.mean()),
    }
    if cfg.melted is not None:
        km, ku = names.index(cfg.melted) + 1, names.index(cfg.unmelted) + 1
        nm, nu = int((lab == km).sum()), int((lab == ku).sum())
        row["melted_fraction"] = nm / (nm + nu) if nm + nu else nan
    layer_img = layer.T if cfg.direction == "rows" else layer
    mount_img = mount.T if cfg.direction == "rows" else mount
    return pd.DataFrame([row]), prof, layer_img, mount_img


def _regions(lab, names, cfg, pixel_size_um, layer):
    import pandas as pd  # lazy
    from data.regions import regions_from_labels  # lazy

    from segmentation.phases.classical import label_components

    out = np.zeros(lab.shape, dtype=np.int32)
    flat_out = out.reshape(-1)
    layer_flat = layer.reshape(-1) if layer is not None else None
    phase_of = []  # the phase name of each region id, in id order
    offset = 0
    for name in cfg.objects:
        if name not in names:
            continue
        m = lab == names.index(name) + 1
        if layer is not None and name in cfg.pores:
            m &= layer  # a pore open at the surface is cut from the mount above it
        comp, n = label_components(m, connectivity=4)
        if n == 0:
            continue
        pix = np.flatnonzero(comp)
        cid = comp.reshape(-1)[pix]
        del comp
        if layer is not None and name not in cfg.pores:
            # drop components mostly outside the layer (mount, dark resin); a pore lies in it
            inside = np.bincount(cid[layer_flat[pix]], minlength=n + 1)
            total = np.bincount(cid, minlength=n + 1)
            keep = np.flatnonzero(inside * 2 > total)
            keep = keep[keep > 0]
            remap = np.zeros(n + 1, dtype=np.int32)
            remap[keep] = np.arange(1, keep.size + 1)
            cid, n = remap[cid], int(keep.size)
            sel = cid > 0
            pix, cid = pix[sel], cid[sel]
            if n == 0:
                continue
        flat_out[pix] = cid + offset
        offset += n
        phase_of += [name] * n
    # one table for all object phases: region ids 1..offset in label order, as per-phase tables
    # with their ids offset
    regions = regions_from_labels(out, pixel_size_um=pixel_size_um)
    if offset:
        regions.insert(1, "phase", np.asarray(phase_of, dtype=object)[regions["region_id"].to_numpy() - 1])
    else:
        regions.insert(1, "phase", pd.Series([], dtype=object))
    return regions, out


def measure_phases(
    labels: np.ndarray,
    *,
    names: Sequence[str],
    pixel_size_um: float | None,
    cfg: PhaseMeasureConfig,
    scan_id: str = "",
) -> PhaseMeasurement:
    """Measure a phase label image (``0`` = unassigned, ``k`` = ``names[k - 1]``).

    Parameters
    ----------
    labels : ndarray of int, (M, N)
        From :func:`segmentation.phases.segment_phases` (or ground truth).
    names : sequence of str
        Phase names, one per label value.
    pixel_size_um : float or None
        Calibration (None = uncalibrated: thickness needs ``cfg.allow_px``).
    cfg : PhaseMeasureConfig
    scan_id : str

    Returns
    -------
    PhaseMeasurement

    Raises
    ------
    PhaseError
        Labels beyond the names, RGB labels, unknown phase names, a coating without a substrate,
        thickness on an uncalibrated scan without ``allow_px``.
    """
    if pixel_size_um is not None and not (np.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise PhaseError(f"pixel_size_um must be a positive number or None, got {pixel_size_um}")
    lab, names = _check(labels, names, cfg)
    coating = prof = layer = None
    sample = lab > 0
    if cfg.coating is not None:
        coating, prof, layer, mount = _coating(lab, names, cfg, pixel_size_um, scan_id)
        sample &= ~mount
    fractions = _fractions(lab, names, cfg, scan_id, sample)
    regions, region_labels = _regions(lab, names, cfg, pixel_size_um, layer)
    return PhaseMeasurement(fractions=fractions, coating=coating, regions=regions,
                            thickness_profile=prof, region_labels=region_labels, sample_mask=sample)
