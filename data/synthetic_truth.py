"""Exact-truth micrographs: rendered optical scans with known impurities and known grain boundaries.

A lab defends a measurement first against a specimen whose answer is known.
:func:`make_truth_scan` renders such a specimen the way an optical
microscope sees a polished, etched alloy:

1. **Grains**: a Laguerre (power-weighted Voronoi) tessellation of a known
   number of grains; each grain gets its own gray level (etch contrast) and an
   oriented etching texture (anisotropic filtered noise, one direction per
   grain); the boundaries are thin dark grooves.
2. **Impurities**: footprints sampled from real binary impurity masks (a
   :class:`ShapeBank` of their 8-connected components, randomly turned and
   flipped), placed with a gap so each is one 8-connected component of the
   truth mask; each is dark (a depth below the local matrix drawn from the
   measured range of real scans) with an optional light halo.
3. **Preparation and optics**: polishing scratches (long faint dark
   lines), uneven illumination (a smooth multiplicative field), the
   point-spread function (Gaussian blur), shot-like and read noise, and
   last JPEG compression.

The truth is the footprint before the optics: ``impurity_mask`` (and
``impurity_labels``), ``grain_labels`` (one label per grain) and
``grain_boundaries`` (the pixels where the grain label changes).  Scratches are
not impurities (a good segmentation leaves them out; they are returned in
``scratch_mask`` so misses can be attributed).

The defaults were set from the training scans of the shipped impurity U-Net
(never its tuning or validation scans), measured by
``experiments/research/evaluation/truth.py`` (:func:`scan_statistics`):
matrix median gray 111-160 (median 125), 1-99% gray range about 55-195,
pixel noise (1.4826 MAD of the image minus its 5x5 median) 4.5-6 gray levels,
impurity area fraction 0.9-4.7%, 250-1,400 impurities per Mpx, the darkest
pixel of impurities >= 10 px 30-100 gray levels below their ring.

>>> s = make_truth_scan(TruthConfig(shape=(192, 256), n_grains=12, impurities_per_mpx=800), seed=3)
>>> s.pixels.dtype, s.pixels.shape, int(s.impurity_labels.max()) == s.n_impurities
(dtype('uint8'), (192, 256), True)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

__all__ = ["ShapeBank", "TruthConfig", "TruthScan", "laguerre_grains", "make_truth_scan", "shape_bank"]


@dataclass(frozen=True)
class ShapeBank:
    """Impurity footprints cut from real masks: one bool array per 8-connected component."""

    shapes: tuple[np.ndarray, ...] = field(repr=False)
    areas: np.ndarray = field(repr=False)
    source: str = ""

    def __post_init__(self) -> None:
        if not self.shapes:
            raise ValueError("a ShapeBank needs at least one shape")


def shape_bank(
    masks, *, min_area_px: int = 1, max_area_px: int = 5000, max_shapes: int = 20000, seed: int = 0
) -> ShapeBank:
    """Collect impurity footprints from real binary masks.

    Parameters
    ----------
    masks : iterable of ndarray (M, N) or paths
        Binary impurity masks (bool, or uint8 with > 127 = impurity), or image
        files holding them.
    min_area_px, max_area_px : int
        Components outside this area range are skipped (huge ones would not
        fit a scan; tiny ones are the detection-limit question, kept by default).
    max_shapes : int
        At most this many shapes, drawn at random (``seed``) from all found.

    Returns
    -------
    ShapeBank
    """
    if min_area_px < 1 or max_area_px < min_area_px or max_shapes < 1:
        raise ValueError("need 1 <= min_area_px <= max_area_px and max_shapes >= 1")
    shapes, names = [], []
    for m in masks:
        if isinstance(m, (str, Path)):
            names.append(Path(m).name)
            img = cv2.imread(str(m), cv2.IMREAD_GRAYSCALE)
            if img is None:
                raise ValueError(f"cannot read mask {m}")
            m = img > 127
        m = np.asarray(m)
        if m.ndim != 2:
            raise ValueError(f"masks must be 2-D, got shape {m.shape}")
        m = m > 127 if m.dtype == np.uint8 and m.max() > 1 else m.astype(bool)
        lab, n = ndimage.label(m, np.ones((3, 3), bool))
        for i, sl in enumerate(ndimage.find_objects(lab), start=1):
            if sl is None:
                continue
            fp = lab[sl] == i
            a = int(fp.sum())
            if min_area_px <= a <= max_area_px:
                shapes.append(fp)
    if not shapes:
        raise ValueError("no impurity component in the given masks within the area range")
    if len(shapes) > max_shapes:
        pick = np.random.default_rng(seed).choice(len(shapes), max_shapes, replace=False)
        shapes = [shapes[i] for i in sorted(pick)]
    return ShapeBank(tuple(shapes), np.array([s.sum() for s in shapes]), ", ".join(names[:5]))


@dataclass(frozen=True)
class TruthConfig:
    """Parameters of an exact-truth scan (gray levels of an 8-bit scan; lengths in px).

    Attributes
    ----------
    shape : (rows, cols)
    n_grains : int
        Laguerre seeds (the known grain count, before grains too small to hold a pixel).
    grain_weight_sd : float
        Spread of the Laguerre weights, as a fraction of the mean squared seed
        spacing (0 = a plain Voronoi tessellation).
    matrix_gray, grain_gray_sd : float
        Median gray of the matrix and the spread of the grains' gray levels.
    texture_sd, texture_length_px : float
        Amplitude and correlation length (along the grain's direction) of the etching texture.
    boundary_depth, boundary_width_px : float
        Darkening of the grain-boundary grooves and their width.
    impurities_per_mpx : float
        Impurities placed per million pixels (fewer if room runs out).
    impurity_depth : (low, high)
        Depth of an impurity below the matrix, as a fraction of the matrix gray (uniform).
    halo_probability, halo_gray : float
        Share of impurities with a light rim, and its brightness.
    min_gap_px : int
        Gap between impurities (keeps one component per impurity).
    n_scratches : (low, high)
        Polishing scratches per scan (uniform integers, inclusive).
    scratch_depth : float
        Darkening of a scratch.
    illumination : float
        Peak-to-peak relative amplitude of the uneven illumination.
    psf_sigma_px : float
        Gaussian point-spread function (px).
    noise_sd, shot_noise : float
        Read noise (gray levels) and the shot-noise factor (sd = shot_noise x sqrt(gray)).
    jpeg_quality : int
        JPEG quality of the saved scan; 0 = not compressed.
    pixel_size_um : float
        The nominal calibration of the rendered scan (for the µm values and G).
    """

    shape: tuple[int, int] = (896, 1328)
    n_grains: int = 1500
    grain_weight_sd: float = 0.1
    matrix_gray: float = 125.0
    grain_gray_sd: float = 25.0
    texture_sd: float = 5.0
    texture_length_px: float = 6.0
    boundary_depth: float = 14.0
    boundary_width_px: float = 1.5
    impurities_per_mpx: float = 700.0
    impurity_depth: tuple[float, float] = (0.35, 0.7)
    halo_probability: float = 0.3
    halo_gray: float = 18.0
    min_gap_px: int = 2
    n_scratches: tuple[int, int] = (0, 4)
    scratch_depth: float = 10.0
    illumination: float = 0.15
    psf_sigma_px: float = 1.0
    noise_sd: float = 3.0
    shot_noise: float = 0.3
    jpeg_quality: int = 85
    pixel_size_um: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(v) for v in self.shape))
        object.__setattr__(self, "impurity_depth", tuple(float(v) for v in self.impurity_depth))
        object.__setattr__(self, "n_scratches", tuple(int(v) for v in self.n_scratches))
        if len(self.shape) != 2 or min(self.shape) < 64:
            raise ValueError(f"shape must be (rows, cols) with both >= 64, got {self.shape}")
        if self.n_grains < 1 or self.impurities_per_mpx < 0 or self.min_gap_px < 1:
            raise ValueError("n_grains must be >= 1, impurities_per_mpx >= 0 and min_gap_px >= 1")
        lo, hi = self.impurity_depth
        if not 0 < lo <= hi < 1:
            raise ValueError(f"impurity_depth must satisfy 0 < low <= high < 1, got {self.impurity_depth}")
        if not 0 <= self.n_scratches[0] <= self.n_scratches[1]:
            raise ValueError(f"n_scratches must be (low, high) with 0 <= low <= high, got {self.n_scratches}")
        if not 0 <= self.jpeg_quality <= 100 or self.pixel_size_um <= 0:
            raise ValueError("jpeg_quality must be in [0, 100] and pixel_size_um > 0")
        if min(self.psf_sigma_px, self.noise_sd, self.shot_noise, self.illumination) < 0:
            raise ValueError("psf_sigma_px, noise_sd, shot_noise and illumination must be >= 0")


@dataclass(frozen=True)
class TruthScan:
    """A rendered scan and its exact truth.

    Attributes
    ----------
    pixels : ndarray of uint8, shape (M, N)
    impurity_mask : ndarray of bool, shape (M, N)
        The impurity footprints (before blur and noise).
    impurity_labels : ndarray of int32, shape (M, N)
        One label 1..n per impurity (8-connected components of ``impurity_mask``).
    grain_labels : ndarray of int32, shape (M, N)
        One label 1..k per grain.
    grain_boundaries : ndarray of bool, shape (M, N)
        Pixels whose right or lower neighbour lies in another grain.
    scratch_mask : ndarray of bool, shape (M, N)
        The polishing scratches (not impurities).
    pixel_size_um : float
    seed : int
    """

    pixels: np.ndarray = field(repr=False)
    impurity_mask: np.ndarray = field(repr=False)
    impurity_labels: np.ndarray = field(repr=False)
    grain_labels: np.ndarray = field(repr=False)
    grain_boundaries: np.ndarray = field(repr=False)
    scratch_mask: np.ndarray = field(repr=False)
    pixel_size_um: float = 1.0
    seed: int = 0

    @property
    def n_impurities(self) -> int:
        return int(self.impurity_labels.max())

    @property
    def n_grains(self) -> int:
        return int(len(np.unique(self.grain_labels)))

    @property
    def area_fraction(self) -> float:
        return float(self.impurity_mask.mean())


def laguerre_grains(shape: tuple[int, int], n_grains: int, *, weight_sd: float = 0.25,
                    rng: np.random.Generator) -> np.ndarray:
    """Label image (int32, 1..k) of a Laguerre tessellation of ``n_grains`` random seeds.

    A pixel belongs to the seed minimising ``|x - s_i|^2 - w_i``; the weights
    ``w_i`` are normal with sd ``weight_sd`` x the mean squared seed spacing
    (0 = Voronoi).  Labels are renumbered 1..k over the grains that hold a pixel.
    """
    from scipy.spatial import cKDTree

    rows, cols = shape
    seeds = rng.uniform([0, 0], [rows, cols], (int(n_grains), 2))
    spacing2 = rows * cols / max(int(n_grains), 1)
    w = rng.normal(0.0, float(weight_sd) * spacing2, int(n_grains))
    # power distance |x - s|^2 - w = |(x, 0) - (s, z)|^2 - W with z = sqrt(W - w): a nearest seed in 3-D
    z = np.sqrt(w.max() - w + 1e-9)
    tree = cKDTree(np.column_stack([seeds, z]))
    rr, cc = np.mgrid[0:rows, 0:cols]
    pts = np.column_stack([rr.ravel() + 0.5, cc.ravel() + 0.5, np.zeros(rr.size)])
    lab = (tree.query(pts, workers=1)[1] + 1).astype(np.int32).reshape(shape)
    present = np.unique(lab)
    remap = np.zeros(int(n_grains) + 1, np.int32)
    remap[present] = np.arange(1, present.size + 1, dtype=np.int32)
    return remap[lab]


def _boundaries(labels: np.ndarray) -> np.ndarray:
    b = np.zeros(labels.shape, bool)
    b[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    b[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return b


def _etch_texture(labels: np.ndarray, cfg: TruthConfig, rng) -> np.ndarray:
    """Oriented etching texture: per grain, noise smoothed along one random direction."""
    shape = labels.shape
    k = int(labels.max())
    n_dir = 6  # a few orientations, each grain takes one
    out = np.zeros(shape, np.float32)
    pick = rng.integers(0, n_dir, k + 1)
    length = max(float(cfg.texture_length_px), 1.0)
    for d in range(n_dir):
        sel = pick[labels] == d
        if not sel.any():
            continue
        angle = np.pi * (d + rng.uniform()) / n_dir
        noise = rng.normal(0, 1, shape).astype(np.float32)
        # anisotropic blur: smooth strongly along the direction, little across
        ksz = int(4 * length) | 1
        kern = np.zeros((ksz, ksz), np.float32)
        c = ksz // 2
        for t in np.linspace(-2 * length, 2 * length, 4 * ksz):
            r, q = int(round(c + t * np.sin(angle))), int(round(c + t * np.cos(angle)))
            if 0 <= r < ksz and 0 <= q < ksz:
                kern[r, q] += np.exp(-0.5 * (t / length) ** 2)
        kern = cv2.GaussianBlur(kern, (0, 0), 0.8)
        tex = cv2.filter2D(noise, -1, kern / kern.sum(), borderType=cv2.BORDER_REFLECT)
        tex /= max(float(tex.std()), 1e-6)
        out[sel] = tex[sel]
    return out * np.float32(cfg.texture_sd)


def _place_impurities(cfg: TruthConfig, bank: ShapeBank, rng) -> np.ndarray:
    """Label image of impurity footprints, each at least ``min_gap_px`` from every other."""
    rows, cols = cfg.shape
    n_want = int(round(cfg.impurities_per_mpx * rows * cols / 1e6))
    lab = np.zeros(cfg.shape, np.int32)
    blocked = np.zeros(cfg.shape, bool)  # impurity pixels grown by the gap
    gap = int(cfg.min_gap_px)
    grow = np.ones((2 * gap + 1, 2 * gap + 1), np.uint8)
    n = 0
    for _ in range(3 * n_want):
        if n >= n_want:
            break
        fp = bank.shapes[int(rng.integers(len(bank.shapes)))]
        fp = np.rot90(fp, int(rng.integers(4)))
        if rng.integers(2):
            fp = fp[:, ::-1]
        h, w = fp.shape
        if h >= rows - 2 or w >= cols - 2:
            continue
        r0, c0 = int(rng.integers(1, rows - h - 1)), int(rng.integers(1, cols - w - 1))
        if (blocked[r0 : r0 + h, c0 : c0 + w] & fp).any():
            continue
        n += 1
        lab[r0 : r0 + h, c0 : c0 + w][fp] = n
        g0r, g0c = max(r0 - gap, 0), max(c0 - gap, 0)
        padded = np.zeros((h + 2 * gap, w + 2 * gap), np.uint8)
        padded[gap : gap + h, gap : gap + w] = fp
        grown = cv2.dilate(padded, grow).astype(bool)
        gr, gc = r0 - gap - g0r, c0 - gap - g0c  # offsets when clipped at the top / left border
        sub = blocked[g0r : r0 + h + gap, g0c : c0 + w + gap]
        sub |= grown[-gr if gr < 0 else 0 :, -gc if gc < 0 else 0 :][: sub.shape[0], : sub.shape[1]]
    return lab


def _scratches(cfg: TruthConfig, rng) -> np.ndarray:
    rows, cols = cfg.shape
    m = np.zeros(cfg.shape, np.uint8)
    for _ in range(int(rng.integers(cfg.n_scratches[0], cfg.n_scratches[1] + 1))):
        angle = rng.uniform(0, np.pi)
        length = rng.uniform(0.3, 1.0) * np.hypot(rows, cols)
        r, c = rng.uniform(0, rows), rng.uniform(0, cols)
        bend = rng.normal(0, 0.05 * length)
        t = np.linspace(-0.5, 0.5, 64)
        pr = r + t * length * np.sin(angle) + bend * (1 - (2 * t) ** 2) * np.cos(angle)
        pc = c + t * length * np.cos(angle) - bend * (1 - (2 * t) ** 2) * np.sin(angle)
        pts = np.stack([pc, pr], 1).round().astype(np.int32)
        cv2.polylines(m, [pts], False, 1, 1)
    return m.astype(bool)


def _illumination(cfg: TruthConfig, rng) -> np.ndarray:
    rows, cols = cfg.shape
    rr, cc = np.mgrid[0:rows, 0:cols].astype(np.float32)
    rr, cc = rr / rows - 0.5, cc / cols - 0.5
    r0, c0 = rng.uniform(-0.3, 0.3, 2)
    tilt = rng.normal(0, 1, 2)
    field_ = -((rr - r0) ** 2 + (cc - c0) ** 2) + 0.3 * (tilt[0] * rr + tilt[1] * cc)
    field_ -= field_.min()
    field_ /= max(float(field_.max()), 1e-6)
    return (1.0 - cfg.illumination / 2 + cfg.illumination * field_).astype(np.float32)


def make_truth_scan(cfg: TruthConfig | None = None, *, seed: int, bank: ShapeBank | None = None) -> TruthScan:
    """Render one exact-truth micrograph (see the module docstring).

    Parameters
    ----------
    cfg : TruthConfig, optional
    seed : int
        Everything random (grains, impurities, texture, noise) follows from it.
    bank : ShapeBank, optional
        Impurity footprints; None = the bundled real masks of ``data/samples/impurity_masks``.

    Returns
    -------
    TruthScan
    """
    cfg = cfg or TruthConfig()
    if bank is None:
        bank = _bundled_bank()
    rng = np.random.default_rng(int(seed))
    grains = laguerre_grains(cfg.shape, cfg.n_grains, weight_sd=cfg.grain_weight_sd, rng=rng)
    boundaries = _boundaries(grains)
    # grain gray levels: normal, truncated at 2 sd (no grain as dark as an impurity core)
    levels = cfg.matrix_gray + cfg.grain_gray_sd * np.clip(rng.normal(0, 1, int(grains.max()) + 1), -2, 2)
    img = levels[grains].astype(np.float32) + _etch_texture(grains, cfg, rng)
    groove = cv2.GaussianBlur(boundaries.astype(np.float32), (0, 0), max(cfg.boundary_width_px / 2, 0.3))
    groove /= max(float(groove.max()), 1e-6)
    img -= cfg.boundary_depth * groove
    scratches = _scratches(cfg, rng)
    if scratches.any():
        sc = cv2.GaussianBlur(scratches.astype(np.float32), (0, 0), 0.7)
        img -= cfg.scratch_depth * sc / max(float(sc.max()), 1e-6)
    labels = _place_impurities(cfg, bank, rng)
    mask = labels > 0
    n = int(labels.max())
    if n:
        local = cv2.GaussianBlur(img, (0, 0), 6)  # the matrix around each impurity
        depth = rng.uniform(*cfg.impurity_depth, n + 1).astype(np.float32)
        halo = (rng.uniform(size=n + 1) < cfg.halo_probability).astype(np.float32)
        ring = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~mask
        near = ndimage.distance_transform_edt(~mask, return_distances=False, return_indices=True)
        owner = labels[near[0], near[1]]
        img = np.where(ring, img + cfg.halo_gray * halo[owner], img)
        core = local * (1 - depth[labels]) + rng.normal(0, 3, cfg.shape).astype(np.float32)
        img = np.where(mask, core, img)
    img *= _illumination(cfg, rng)
    if cfg.psf_sigma_px > 0:
        img = cv2.GaussianBlur(img, (0, 0), cfg.psf_sigma_px)
    sd = np.sqrt(cfg.noise_sd ** 2 + cfg.shot_noise ** 2 * np.clip(img, 0, None))
    img = img + rng.normal(0, 1, cfg.shape).astype(np.float32) * sd
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if cfg.jpeg_quality:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(cfg.jpeg_quality)])
        out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return TruthScan(out, mask, labels, grains, boundaries, scratches, float(cfg.pixel_size_um), int(seed))


@functools.lru_cache(maxsize=1)
def _bundled_bank() -> ShapeBank:
    folder = Path(__file__).resolve().parent / "samples" / "impurity_masks"
    return shape_bank(sorted(folder.glob("*.png")))
