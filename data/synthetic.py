"""Seeded synthetic micrographs with planted anomalies and exact ground truth.

A synthetic scan has a gray grain texture (Voronoi grains of varied gray
level, thin darker boundaries, noise, slight blur) and dark impurities: mostly
small roundish ones (log-normal sizes, a hard-core spatial process) plus three
kinds of planted anomalies:

- ``cluster``: a dense group of large irregular impurities;
- ``stringer``: a line of elongated impurities with one common orientation;
- ``giant``: one isolated giant irregular impurity.

:func:`make_review_scan` also plants *false alarms* (:data:`FALSE_ALARM_KINDS`):
dark objects that the unsupervised scores flag as strongly as true anomalies
but that a metallographer dismisses as preparation artefacts, not material:

- ``scratch``: a polishing scratch, a long thin slightly curved dark line that
  the segmentation sees broken into a dashed row of very elongated pieces;
- ``edge_chip``: a large ragged dark chip (pull-out) cut by the scan border;
- ``pore``: a few large round gas pores, some of them coalesced in pairs.

Every impurity is drawn into a label image with a gap of at least
``min_gap_px`` to every other impurity, so labelling the impurity mask with
8-connectivity gives back exactly one component per drawn impurity and the
truth per impurity is exact.

>>> s = make_synthetic_scan(SyntheticConfig(shape=(256, 256), n_grains=20, n_impurities=40), seed=1)
>>> s.pixels.dtype, s.pixels.shape, int(s.impurity_labels.max()) == len(s.anomaly_truth)
(dtype('uint8'), (256, 256), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

__all__ = [
    "ANOMALY_KINDS",
    "FALSE_ALARM_KINDS",
    "make_review_scan",
    "SyntheticConfig",
    "SyntheticScan",
    "make_synthetic_scan",
    "make_synthetic_mask",
    "truth_for_labels",
]

ANOMALY_KINDS = ("cluster", "stringer", "giant")
#: Planted false alarms of :func:`make_review_scan` (module docstring).
FALSE_ALARM_KINDS = ("scratch", "edge_chip", "pore")


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of a synthetic scan (sizes in pixels).

    Attributes
    ----------
    shape : (rows, cols)
    n_grains : int
        Voronoi seeds of the grain texture.
    n_impurities : int
        Background (normal) impurities requested; fewer are placed if the
        hard-core process runs out of room.
    size_log_mean, size_log_sigma : float
        Log-normal law of the background impurities' mean radius.
    hard_core_px : float
        Minimal centre distance between background impurities.
    min_gap_px : int
        Minimal gap between any two impurities' pixels (keeps components apart).
    noise_sigma, blur_sigma : float
        Gaussian pixel noise and optical blur.
    anomalies : tuple of str
        Which planted anomalies to draw (subset of ``ANOMALY_KINDS``).
    cluster_members, stringer_members : int
        Impurities in the planted cluster / stringer.
    """

    shape: tuple[int, int] = (1024, 1024)
    n_grains: int = 120
    n_impurities: int = 600
    size_log_mean: float = 0.9
    size_log_sigma: float = 0.35
    hard_core_px: float = 12.0
    min_gap_px: int = 2
    noise_sigma: float = 5.0
    blur_sigma: float = 0.8
    anomalies: tuple[str, ...] = ANOMALY_KINDS
    cluster_members: int = 10
    stringer_members: int = 7

    def __post_init__(self) -> None:
        if len(self.shape) != 2 or min(self.shape) < 64:
            raise ValueError(f"shape must be (rows, cols) with both >= 64, got {self.shape}")
        unknown = set(self.anomalies) - set(ANOMALY_KINDS)
        if unknown:
            raise ValueError(f"unknown anomaly kinds {sorted(unknown)}; known: {ANOMALY_KINDS}")
        if self.n_impurities < 0 or self.n_grains < 1:
            raise ValueError("n_impurities must be >= 0 and n_grains >= 1")


@dataclass(frozen=True)
class SyntheticScan:
    """A synthetic scan and its ground truth.

    Attributes
    ----------
    pixels : ndarray of uint8, shape (M, N)
    impurity_mask, grain_boundary_mask : ndarray of bool, shape (M, N)
    impurity_labels : ndarray of int32, shape (M, N)
        1..n, one label per impurity, numbered in raster order of first pixel
        (so ``data.regions_from_labels(impurity_labels)`` rows follow the labels).
    anomaly_truth : DataFrame
        One row per label: ``label, is_anomaly, anomaly_kind`` ('' for normal),
        ``region_index`` (row of ``regions``, -1 for normal).
    regions : DataFrame
        One row per planted anomaly: ``kind, bbox_rmin, bbox_cmin, bbox_rmax, bbox_cmax`` (inclusive).
    false_alarms : DataFrame
        One row per planted false alarm (same columns as ``regions``); empty unless made by
        :func:`make_review_scan`, whose ``anomaly_truth`` also has ``false_alarm_kind``
        ('' = none) and ``false_alarm_index`` (row of ``false_alarms``, -1 = none).
    """

    pixels: np.ndarray = field(repr=False)
    impurity_mask: np.ndarray = field(repr=False)
    grain_boundary_mask: np.ndarray = field(repr=False)
    impurity_labels: np.ndarray = field(repr=False)
    anomaly_truth: pd.DataFrame = field(repr=False)
    regions: pd.DataFrame = field(repr=False)
    false_alarms: pd.DataFrame = field(
        repr=False,
        default_factory=lambda: pd.DataFrame(
            {c: pd.Series(dtype=t) for c, t in (("kind", str), ("bbox_rmin", np.int64), ("bbox_cmin", np.int64),
                                                ("bbox_rmax", np.int64), ("bbox_cmax", np.int64))}),
    )


# --------------------------------------------------------------------------- grains


def _grain_texture(shape, n_grains, rng) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape
    seeds = rng.uniform((0, 0), (h, w), size=(n_grains, 2))
    rr, cc = np.mgrid[0:h, 0:w]
    pts = np.column_stack([rr.ravel(), cc.ravel()]).astype(np.float32)
    dist, idx = cKDTree(seeds).query(pts, k=2)
    grain = idx[:, 0].reshape(h, w)
    boundary = (dist[:, 1] - dist[:, 0]).reshape(h, w) < 1.6
    levels = rng.uniform(105, 200, size=n_grains)
    img = levels[grain]
    img[boundary] -= rng.uniform(35, 50)
    # faint polishing texture inside grains
    img += ndimage.gaussian_filter(rng.normal(0, 6, shape), 3)
    return img, boundary


# --------------------------------------------------------------------------- shapes


def _ellipse(r_major: float, r_minor: float, angle_deg: float) -> np.ndarray:
    """Boolean footprint of a filled ellipse, centred in an odd-sized array."""
    half = int(np.ceil(r_major)) + 1
    img = np.zeros((2 * half + 1, 2 * half + 1), np.uint8)
    cv2.ellipse(
        img, (half, half), (max(int(round(r_major)), 1), max(int(round(r_minor)), 0)),
        angle_deg, 0, 360, 1, -1,
    )
    return img.astype(bool)


def _irregular(radius: float, rng, *, spikes: int = 7, roughness: float = 0.55) -> np.ndarray:
    """Boolean footprint of a random star-like polygon (irregular impurity)."""
    n = max(spikes * 2, 8)
    theta = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = radius * (1 - roughness * rng.uniform(0, 1, n))
    r[::2] = radius * rng.uniform(0.85, 1.0, r[::2].size)
    half = int(np.ceil(radius)) + 2
    pts = np.column_stack([half + r * np.cos(theta), half + r * np.sin(theta)])
    img = np.zeros((2 * half + 1, 2 * half + 1), np.uint8)
    cv2.fillPoly(img, [np.round(pts).astype(np.int32)], 1)
    # keep the largest 8-connected piece so the impurity is one component
    lab, n_lab = ndimage.label(img, structure=np.ones((3, 3)))
    if n_lab > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        img = (lab == sizes.argmax()).astype(np.uint8)
    return img.astype(bool)


class _Canvas:
    """Label image plus a dilated occupancy mask to keep impurities apart."""

    def __init__(self, shape, gap: int):
        self.labels = np.zeros(shape, np.int32)
        self.taken = np.zeros(shape, bool)
        self.gap = int(gap)
        self.n = 0
        self._grow = ndimage.generate_binary_structure(2, 2)

    def place(self, footprint: np.ndarray, center: tuple[float, float], *, clip: bool = False) -> int:
        """Draw footprint centred at ``center`` if it fits with the gap; return its label or 0.

        With ``clip`` the footprint is cut at the image border (it may touch it) instead of
        being refused; the part left must stay one 8-connected piece.
        """
        fh, fw = footprint.shape
        r0 = int(round(center[0])) - fh // 2
        c0 = int(round(center[1])) - fw // 2
        h, w = self.labels.shape
        if clip:
            rs, cs = max(r0, 0), max(c0, 0)
            re, ce = min(r0 + fh, h), min(c0 + fw, w)
            if re <= rs or ce <= cs:
                return 0
            footprint = footprint[rs - r0 : re - r0, cs - c0 : ce - c0]
            lab, n_lab = ndimage.label(footprint, structure=np.ones((3, 3)))
            if n_lab != 1:
                return 0
            fh, fw = footprint.shape
            r0, c0 = rs, cs
        elif r0 < 1 or c0 < 1 or r0 + fh >= h - 1 or c0 + fw >= w - 1:
            return 0
        win = (slice(r0, r0 + fh), slice(c0, c0 + fw))
        if (self.taken[win] & footprint).any():
            return 0
        self.n += 1
        self.labels[win][footprint] = self.n
        g = self.gap
        big = np.zeros((fh + 2 * g, fw + 2 * g), bool)
        big[g : g + fh, g : g + fw] = footprint
        if g:
            big = ndimage.binary_dilation(big, self._grow, iterations=g)
        rr0, cc0 = r0 - g, c0 - g
        rs = slice(max(rr0, 0), min(rr0 + big.shape[0], h))
        cs = slice(max(cc0, 0), min(cc0 + big.shape[1], w))
        self.taken[rs, cs] |= big[rs.start - rr0 : rs.stop - rr0, cs.start - cc0 : cs.stop - cc0]
        return self.n


def _hard_core_points(n, shape, d, rng, margin, avoid: np.ndarray) -> np.ndarray:
    """Up to n points, pairwise >= d apart, not inside ``avoid`` (bool image)."""
    h, w = shape
    cand = rng.uniform((margin, margin), (h - margin, w - margin), size=(3 * n + 10, 2))
    ok = ~avoid[cand[:, 0].astype(int), cand[:, 1].astype(int)]
    cand = cand[ok]
    tree = cKDTree(cand)
    keep = np.ones(len(cand), bool)
    for i, j in sorted(tree.query_pairs(d)):
        if keep[i] and keep[j]:
            keep[j] = False
    return cand[keep][:n]


# --------------------------------------------------------------------------- main


def _plant(kind: str, canvas: _Canvas, cfg: SyntheticConfig, rng) -> list[int]:
    h, w = cfg.shape
    placed: list[int] = []
    for _attempt in range(50):
        if kind == "giant":
            radius = rng.uniform(22, 30)
            m = radius + 60
            c = rng.uniform((m, m), (h - m, w - m))
            lab = canvas.place(_irregular(radius, rng, spikes=9, roughness=0.6), c)
            if lab:
                return [lab]
        elif kind == "cluster":
            m = 120
            c0 = rng.uniform((m, m), (h - m, w - m))
            placed = []
            for _ in range(cfg.cluster_members * 6):
                if len(placed) >= cfg.cluster_members:
                    break
                off = rng.normal(0, 28, 2)
                lab = canvas.place(_irregular(rng.uniform(7, 11), rng), c0 + off)
                if lab:
                    placed.append(lab)
            if len(placed) >= max(3, cfg.cluster_members // 2):
                return placed
        elif kind == "stringer":
            angle = rng.uniform(0, 180)
            step = 26.0
            length = step * (cfg.stringer_members - 1)
            m = length / 2 + 30
            c0 = rng.uniform((m, m), (h - m, w - m))
            d = np.array([np.sin(np.deg2rad(angle)), np.cos(np.deg2rad(angle))])  # (row, col)
            placed = []
            for k in range(cfg.stringer_members):
                c = c0 + d * (k * step - length / 2)
                fp = _ellipse(rng.uniform(9, 11), rng.uniform(1.5, 2.2), -angle)
                lab = canvas.place(fp, c)
                if lab:
                    placed.append(lab)
            if len(placed) >= max(3, cfg.stringer_members - 2):
                return placed
    return placed


def _far_from(canvas: _Canvas, margin: float) -> np.ndarray:
    """Where a new planted object may go: at least ``margin`` px from everything planted so far."""
    planted = canvas.labels > 0
    if not planted.any():
        return np.ones(planted.shape, bool)
    return ndimage.distance_transform_edt(~planted) >= margin


def _plant_false_alarm(kind: str, canvas: _Canvas, cfg: SyntheticConfig, rng, margin: float) -> list[int]:
    h, w = cfg.shape
    free = _far_from(canvas, margin)
    for _attempt in range(60):
        if kind == "scratch":
            # a long thin gently curved line, drawn as a dashed row of thin pieces
            length = rng.uniform(0.22, 0.32) * min(h, w)
            angle = rng.uniform(0, np.pi)
            d = np.array([np.sin(angle), np.cos(angle)])
            nrm = np.array([-d[1], d[0]])
            m = length / 2 + 20
            c0 = rng.uniform((m, m), (h - m, w - m))
            if not free[int(c0[0]), int(c0[1])]:
                continue
            bend = rng.uniform(-0.08, 0.08) * length
            width = rng.uniform(2.0, 3.0)
            placed = []
            t = -length / 2
            while t < length / 2:
                piece = rng.uniform(28, 55)
                t1 = min(t + piece, length / 2)
                u = np.linspace(t, t1, 12)
                pts = c0 + u[:, None] * d + (bend * (1 - (2 * u / length) ** 2))[:, None] * nrm
                lo = np.floor(pts.min(0)).astype(int) - 4
                img = np.zeros((int(np.ceil(pts.max(0)[0])) - lo[0] + 5, int(np.ceil(pts.max(0)[1])) - lo[1] + 5),
                               np.uint8)
                q = np.round((pts - lo)[:, ::-1]).astype(np.int32)  # (x, y) for OpenCV
                cv2.polylines(img, [q], False, 1, thickness=max(1, int(round(width))))
                fp = img.astype(bool)
                ctr = lo + (np.array(fp.shape) // 2)
                lab = canvas.place(fp, ctr)
                if lab:
                    placed.append(lab)
                t = t1 + rng.uniform(5, 14)
            if len(placed) >= 4:
                return placed
        elif kind == "edge_chip":
            radius = rng.uniform(16, 26)
            side = int(rng.integers(4))
            along = rng.uniform(radius + 40, (w if side in (0, 1) else h) - radius - 40)
            depth = rng.uniform(0.2, 0.5) * radius  # the centre lies this far inside the scan
            c = {0: (depth, along), 1: (h - 1 - depth, along), 2: (along, depth), 3: (along, w - 1 - depth)}[side]
            ok = free[int(np.clip(c[0], 0, h - 1)), int(np.clip(c[1], 0, w - 1))]
            if ok:
                lab = canvas.place(_irregular(radius, rng, spikes=10, roughness=0.5), c, clip=True)
                if lab:
                    return [lab]
        elif kind == "pore":
            m = 90
            c0 = rng.uniform((m, m), (h - m, w - m))
            if not free[int(c0[0]), int(c0[1])]:
                continue
            placed = []
            for _ in range(12):
                if len(placed) >= 3:
                    break
                r = rng.uniform(9, 14)
                if rng.uniform() < 0.6:  # two coalesced pores
                    sep = rng.uniform(1.0, 1.5) * r
                    a = rng.uniform(0, np.pi)
                    half = int(np.ceil(r + sep)) + 2
                    img = np.zeros((2 * half + 1, 2 * half + 1), np.uint8)
                    dx, dy = 0.5 * sep * np.cos(a), 0.5 * sep * np.sin(a)
                    for sg in (-1, 1):
                        cv2.circle(img, (int(round(half + sg * dx)), int(round(half + sg * dy))), int(round(r)), 1, -1)
                    fp = img.astype(bool)
                else:
                    fp = _ellipse(r, r * rng.uniform(0.9, 1.0), rng.uniform(0, 180))
                lab = canvas.place(fp, c0 + rng.normal(0, 35, 2))
                if lab:
                    placed.append(lab)
            if len(placed) >= 2:
                return placed
        else:  # pragma: no cover - validated by the caller
            raise ValueError(f"unknown false alarm kind {kind!r}")
    return []


def make_synthetic_scan(cfg: SyntheticConfig | None = None, *, seed: int | None = None) -> SyntheticScan:
    """Generate one synthetic scan with planted anomalies (deterministic for a given seed)."""
    return _make_scan(cfg, seed, None)


def make_review_scan(
    cfg: SyntheticConfig | None = None,
    *,
    false_alarms: tuple[str, ...] = FALSE_ALARM_KINDS,
    false_alarm_margin_px: float = 150.0,
    seed: int | None = None,
) -> SyntheticScan:
    """A synthetic scan with planted anomalies *and* planted false alarms (module docstring).

    Parameters
    ----------
    cfg : SyntheticConfig, optional
        The scan and its true anomalies (``cfg.anomalies``), as for :func:`make_synthetic_scan`.
    false_alarms : tuple of str
        Kinds from :data:`FALSE_ALARM_KINDS`, one planted object (group) each; ``()`` = none.
        A kind that finds no room (small scans, large margins) is left out: ``false_alarms``
        of the result lists what was planted.
    false_alarm_margin_px : float
        Each false alarm is placed at least this far from every object planted before it, so
        a market cluster does not mix a true anomaly with a false alarm.
    seed : int, optional

    Returns
    -------
    SyntheticScan
        ``false_alarms`` lists the planted false alarms; ``anomaly_truth`` has
        ``false_alarm_kind`` and ``false_alarm_index`` (false alarms have ``is_anomaly`` False).

    Examples
    --------
    >>> s = make_review_scan(SyntheticConfig(shape=(768, 768), n_impurities=250, n_grains=60), seed=1)
    >>> sorted(s.false_alarms["kind"])
    ['edge_chip', 'pore', 'scratch']
    >>> bool(s.anomaly_truth.loc[s.anomaly_truth.false_alarm_kind != "", "is_anomaly"].any())
    False
    """
    unknown = set(false_alarms) - set(FALSE_ALARM_KINDS)
    if unknown:
        raise ValueError(f"unknown false alarm kinds {sorted(unknown)}; known: {FALSE_ALARM_KINDS}")
    if not (math.isfinite(false_alarm_margin_px) and false_alarm_margin_px >= 0):
        raise ValueError(f"false_alarm_margin_px must be >= 0, got {false_alarm_margin_px!r}")
    return _make_scan(cfg, seed, (tuple(false_alarms), float(false_alarm_margin_px)))


def _make_scan(cfg: SyntheticConfig | None, seed: int | None, false_alarms) -> SyntheticScan:
    cfg = cfg or SyntheticConfig()
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in cfg.shape)
    texture, boundary = _grain_texture(shape, cfg.n_grains, rng)

    canvas = _Canvas(shape, cfg.min_gap_px)
    kinds: dict[int, tuple[str, int]] = {}
    region_rows = []
    for kind in cfg.anomalies:
        labs = _plant(kind, canvas, cfg, rng)
        if not labs:
            continue
        region_rows.append(kind)
        for lab in labs:
            kinds[lab] = (kind, len(region_rows) - 1)
    fa_kinds: dict[int, tuple[str, int]] = {}
    fa_rows: list[str] = []
    if false_alarms is not None:
        for kind in false_alarms[0]:
            labs = _plant_false_alarm(kind, canvas, cfg, rng, false_alarms[1])
            if not labs:
                continue
            fa_rows.append(kind)
            for lab in labs:
                fa_kinds[lab] = (kind, len(fa_rows) - 1)

    # keep background impurities well away from the planted ones
    planted = canvas.labels > 0
    avoid = ndimage.binary_dilation(planted, iterations=12) if planted.any() else planted
    centers = _hard_core_points(cfg.n_impurities, shape, cfg.hard_core_px, rng, 8, avoid)
    radii = np.exp(rng.normal(cfg.size_log_mean, cfg.size_log_sigma, len(centers)))
    for c, r in zip(centers, radii):
        canvas.place(_ellipse(max(r, 0.6), max(r * rng.uniform(0.65, 1.0), 0.5), rng.uniform(0, 180)), c)

    # renumber labels in raster order of first pixel (what ndimage.label would give)
    raw = canvas.labels
    first = np.full(raw.max() + 1, raw.size, dtype=np.int64)
    flat = raw.ravel()
    nz = np.flatnonzero(flat)
    np.minimum.at(first, flat[nz], nz)
    order = np.argsort(first[1:], kind="stable") + 1
    lut = np.zeros(raw.max() + 1, np.int32)
    lut[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    labels = lut[raw]

    n = int(labels.max())
    truth = pd.DataFrame({"label": np.arange(1, n + 1, dtype=np.int64)})
    truth["is_anomaly"] = False
    truth["anomaly_kind"] = ""
    truth["region_index"] = -1
    for old, (kind, reg) in kinds.items():
        i = lut[old] - 1
        truth.loc[i, ["is_anomaly", "anomaly_kind", "region_index"]] = [True, kind, reg]
    truth["is_anomaly"] = truth["is_anomaly"].astype(bool)
    truth["region_index"] = truth["region_index"].astype(np.int64)

    regs = []
    for reg, kind in enumerate(region_rows):
        members = truth.loc[truth.region_index == reg, "label"].to_numpy()
        rows, cols = np.nonzero(np.isin(labels, members))
        regs.append((kind, rows.min(), cols.min(), rows.max(), cols.max()))
    regions = pd.DataFrame(regs, columns=["kind", "bbox_rmin", "bbox_cmin", "bbox_rmax", "bbox_cmax"])
    extra = {}
    if false_alarms is not None:
        truth["false_alarm_kind"] = ""
        truth["false_alarm_index"] = -1
        for old, (kind, reg) in fa_kinds.items():
            truth.loc[lut[old] - 1, ["false_alarm_kind", "false_alarm_index"]] = [kind, reg]
        truth["false_alarm_index"] = truth["false_alarm_index"].astype(np.int64)
        fregs = []
        for reg, kind in enumerate(fa_rows):
            members = truth.loc[truth.false_alarm_index == reg, "label"].to_numpy()
            rows, cols = np.nonzero(np.isin(labels, members))
            fregs.append((kind, rows.min(), cols.min(), rows.max(), cols.max()))
        extra["false_alarms"] = pd.DataFrame(
            fregs, columns=["kind", "bbox_rmin", "bbox_cmin", "bbox_rmax", "bbox_cmax"]).astype(
            {c: np.int64 for c in ("bbox_rmin", "bbox_cmin", "bbox_rmax", "bbox_cmax")})

    mask = labels > 0
    img = texture.copy()
    dark = rng.uniform(35, 55, n + 1)
    img[mask] = dark[labels[mask]]
    img = ndimage.gaussian_filter(img, cfg.blur_sigma) if cfg.blur_sigma > 0 else img
    img = img + rng.normal(0, cfg.noise_sigma, shape)
    pixels = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return SyntheticScan(pixels, mask, boundary & ~mask, labels, truth, regions, **extra)


def make_synthetic_mask(
    shape: tuple[int, int] = (6000, 6000), *, n_impurities: int = 100_000, seed: int | None = None
) -> np.ndarray:
    """A binary impurity mask with many small separated impurities (for scale benchmarks).

    Impurities sit on a jittered grid (one per cell, so they never touch) with
    log-normal radii; drawing is one OpenCV call per impurity.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    cell = max(int(np.sqrt(h * w / max(n_impurities, 1))), 6)
    rr, cc = np.meshgrid(np.arange(cell // 2, h - cell // 2, cell), np.arange(cell // 2, w - cell // 2, cell), indexing="ij")
    rr, cc = rr.ravel()[:n_impurities], cc.ravel()[:n_impurities]
    n = rr.size
    ax1 = np.clip(rng.lognormal(np.log(cell * 0.12), 0.45, n), 0.5, cell / 2 - 1.5)
    ax2 = np.clip(ax1 * rng.uniform(0.4, 1, n), 0.5, None)
    jit = np.maximum(np.floor(cell / 2 - 1.5 - ax1), 0)
    dr = np.rint(rng.uniform(-1, 1, n) * jit).astype(int)
    dc = np.rint(rng.uniform(-1, 1, n) * jit).astype(int)
    ang = rng.uniform(0, 180, n)
    m = np.zeros(shape, np.uint8)
    for i in range(n):
        cv2.ellipse(m, (int(cc[i] + dc[i]), int(rr[i] + dr[i])), (int(round(ax1[i])), int(round(ax2[i]))), ang[i], 0, 360, 255, -1)
    return m > 0


def truth_for_labels(pred_labels: np.ndarray, synth: SyntheticScan) -> pd.DataFrame:
    """Truth for each predicted region: the true impurity it overlaps most.

    Parameters
    ----------
    pred_labels : ndarray of int, shape (M, N)
        Label image whose values are the RegionTable's ``region_id`` (1..n).

    Returns
    -------
    DataFrame
        One row per predicted label 1..max: ``region_id, true_label`` (0 = no
        overlap), ``is_anomaly, anomaly_kind, region_index``.
    """
    pred = np.asarray(pred_labels)
    if pred.shape != synth.impurity_labels.shape:
        raise ValueError(f"label image shape {pred.shape} != scan shape {synth.impurity_labels.shape}")
    n_pred = int(pred.max())
    both = (pred > 0) & (synth.impurity_labels > 0)
    p = pred[both].astype(np.int64)
    t = synth.impurity_labels[both].astype(np.int64)
    best = np.zeros(n_pred + 1, np.int64)
    if p.size:
        key = p * (int(synth.impurity_labels.max()) + 1) + t
        uniq, counts = np.unique(key, return_counts=True)
        up, ut = np.divmod(uniq, int(synth.impurity_labels.max()) + 1)
        order = np.lexsort((-counts, up))  # per predicted label, the largest overlap first
        up, ut = up[order], ut[order]
        firsts = np.r_[True, up[1:] != up[:-1]]
        best[up[firsts]] = ut[firsts]
    out = pd.DataFrame({"region_id": np.arange(1, n_pred + 1, dtype=np.int64), "true_label": best[1:]})
    truth = synth.anomaly_truth.set_index("label")
    hit = out["true_label"] > 0
    out["is_anomaly"] = False
    out["anomaly_kind"] = ""
    out["region_index"] = -1
    out.loc[hit, "is_anomaly"] = truth.loc[out.loc[hit, "true_label"], "is_anomaly"].to_numpy()
    out.loc[hit, "anomaly_kind"] = truth.loc[out.loc[hit, "true_label"], "anomaly_kind"].to_numpy()
    out.loc[hit, "region_index"] = truth.loc[out.loc[hit, "true_label"], "region_index"].to_numpy()
    out["is_anomaly"] = out["is_anomaly"].astype(bool)
    if "false_alarm_kind" in truth.columns:  # made by make_review_scan
        out["false_alarm_kind"] = ""
        out["false_alarm_index"] = -1
        out.loc[hit, "false_alarm_kind"] = truth.loc[out.loc[hit, "true_label"], "false_alarm_kind"].to_numpy()
        out.loc[hit, "false_alarm_index"] = truth.loc[out.loc[hit, "true_label"], "false_alarm_index"].to_numpy()
        out["false_alarm_index"] = out["false_alarm_index"].astype(np.int64)
    return out
