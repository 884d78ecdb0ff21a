"""Synthetic phase micrographs with exact truth (issue 24).

Two generators, pure numpy/scipy:

* :func:`coating_scan` -- a coating cross-section: mount (top), a coating layer of known,
  smoothly varying thickness, substrate (bottom), log-normal pores and elongated oxide
  stringers inside the coating, illumination gradient, noise, blur and optional JPEG.
* :func:`multiphase_scan` -- a 2-4 phase micrograph of smooth random blobs (e.g.
  ferrite/martensite, a cast alloy with porosity).

Both return a :class:`PhaseTruth` with the rendered image, the exact truth label image
(``k`` = ``names[k-1]``; the mount is label 0 unless it is named) and the truth numbers
computed from that label image.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

__all__ = ["PhaseTruth", "coating_scan", "multiphase_scan"]


@dataclass
class PhaseTruth:
    """Image and exact truth of one generated scan.

    Attributes
    ----------
    image : numpy.ndarray
        Rendered micrograph, uint8 or uint16, (M, N).
    labels : numpy.ndarray
        uint8 truth label image; 0 = mount / unassigned, ``k`` = ``names[k-1]``.
    names : tuple of str
        Phase names, darkest first.
    pixel_size_um : float
        Pixel size in µm.
    fractions : dict
        Area fraction of each named phase over the sample pixels (labels > 0): the mount (label 0
        of a coating scan, the resin above the top surface) is excluded, as
        :func:`data.standards.phases.measure_phases` excludes it when a coating is measured.
    mount_fraction : float
        Share of the image that is mount (0 for a multiphase scan).
    porosity : float or None
        Pore area / (coating + pore + oxide) area inside the layer; None without a layer.
    thickness_profile_px : numpy.ndarray or None
        Per-column layer thickness in px (top surface to interface).
    thickness_mean_um : float or None
        Mean of the profile in µm (this scan's exact mean thickness).
    thickness_nominal_um : float or None
        The layer's nominal mean thickness (``thickness_px`` in µm): the mean of the process the
        profile is drawn from, which a field-to-field interval of the mean estimates.
    pores : list of dict
        Drawn pores: ``row``, ``col``, ``radius_px``, ``eq_diameter_px`` (of the drawn disc).
    """

    image: np.ndarray
    labels: np.ndarray
    names: tuple[str, ...]
    pixel_size_um: float
    fractions: dict = field(default_factory=dict)
    porosity: float | None = None
    thickness_profile_px: np.ndarray | None = None
    thickness_mean_um: float | None = None
    pores: list = field(default_factory=list)
    mount_fraction: float = 0.0
    thickness_nominal_um: float | None = None


def _smooth_profile(rng: np.random.Generator, n: int, *, mean: float, amp: float,
                    corr: float) -> np.ndarray:
    noise = rng.standard_normal(n + 4 * int(corr))
    prof = ndi.gaussian_filter1d(noise, corr, mode="wrap")[2 * int(corr):2 * int(corr) + n]
    prof = prof / (np.abs(prof).max() + 1e-12)
    return mean + amp * prof


def _render(rng, labels, levels, *, gradient, noise_sd, blur_px, jpeg_quality, dtype):
    img = levels[labels].astype(np.float64)
    m, n = labels.shape
    if gradient:
        yy, xx = np.mgrid[0:m, 0:n]
        img *= 1.0 + gradient * ((xx / max(n - 1, 1)) - 0.5)
    if blur_px:
        img = ndi.gaussian_filter(img, blur_px)
    if noise_sd:
        img += rng.normal(0.0, noise_sd, img.shape)
    top = 255 if dtype == np.uint8 else 65535
    img = np.clip(img * (top / 255.0), 0, top)
    out = np.round(img).astype(dtype)
    if jpeg_quality is not None:
        if dtype != np.uint8:
            raise ValueError("jpeg_quality needs dtype=uint8")
        from PIL import Image
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=int(jpeg_quality))
        buf.seek(0)
        out = np.asarray(Image.open(buf).convert("L"))
    return out


def _fractions(labels, names):
    assigned = labels > 0
    tot = max(int(assigned.sum()), 1)
    return {nm: float((labels == k + 1).sum()) / tot for k, nm in enumerate(names)}


def coating_scan(*, shape: tuple[int, int] = (512, 512), seed: int = 0,
                 pixel_size_um: float = 0.5, thickness_px: float = 200.0,
                 thickness_amp: float = 0.15, porosity: float = 0.05,
                 pore_median_px: float = 5.0, pore_sigma: float = 0.5,
                 n_oxides: int = 6, gradient: float = 0.1, noise_sd: float = 4.0,
                 blur_px: float = 0.8, jpeg_quality: int | None = None,
                 dtype=np.uint8) -> PhaseTruth:
    """Generate a coating cross-section with exact truth.

    Parameters
    ----------
    shape : tuple of int, keyword-only
        Image size (M, N).
    seed : int, keyword-only
        Random seed; the output is a pure function of all arguments.
    pixel_size_um : float, keyword-only
        Pixel size in µm.
    thickness_px : float, keyword-only
        Mean layer thickness in px.
    thickness_amp : float, keyword-only
        Relative amplitude of the smooth thickness variation (0..0.5).
    porosity : float, keyword-only
        Target pore area fraction of the layer (the exact value is in the truth).
    pore_median_px, pore_sigma : float, keyword-only
        Log-normal pore radius distribution (median in px, sigma of log).
    n_oxides : int, keyword-only
        Number of oxide stringers (thin ellipses parallel to the interface).
    gradient, noise_sd, blur_px, jpeg_quality, dtype
        Rendering: relative left-right illumination gradient, Gaussian noise SD (8-bit
        grey levels), Gaussian blur sigma in px, JPEG quality (None = none), uint8/uint16.

    Returns
    -------
    PhaseTruth
        With ``names = ("pore", "oxide", "coating", "substrate")``; the mount is label 0.
    """
    m, n = (int(shape[0]), int(shape[1]))
    if m < 32 or n < 32:
        raise ValueError(f"shape {shape} too small (>= 32 x 32 needed)")
    if not 0 <= thickness_amp < 0.5:
        raise ValueError(f"thickness_amp={thickness_amp} must be in [0, 0.5)")
    if not 0 <= porosity < 0.5:
        raise ValueError(f"porosity={porosity} must be in [0, 0.5)")
    if thickness_px <= 4 or thickness_px * (1 + thickness_amp) > 0.85 * m:
        raise ValueError(f"thickness_px={thickness_px} does not fit {m} rows")
    if dtype not in (np.uint8, np.uint16):
        raise ValueError("dtype must be numpy.uint8 or numpy.uint16")
    rng = np.random.default_rng(seed)
    names = ("pore", "oxide", "coating", "substrate")
    thick = _smooth_profile(rng, n, mean=thickness_px, amp=thickness_amp * thickness_px,
                            corr=max(n / 8.0, 2.0))
    interface = _smooth_profile(rng, n, mean=m - (m - thickness_px) / 2.5, amp=0.02 * m,
                                corr=max(n / 6.0, 2.0))
    interface = np.clip(interface, thick + 4, m - 4)
    top = interface - thick
    rows = np.arange(m)[:, None]
    top_i = np.ceil(top).astype(int)
    int_i = np.ceil(interface).astype(int)
    labels = np.zeros((m, n), np.uint8)
    layer = (rows >= top_i[None, :]) & (rows < int_i[None, :])
    labels[layer] = 3
    labels[rows >= int_i[None, :]] = 4
    profile = (int_i - top_i).astype(float)
    # oxide stringers: thin ellipses following the interface
    yy, xx = np.mgrid[0:m, 0:n]
    for _ in range(int(n_oxides)):
        c = rng.integers(0, n)
        frac = rng.uniform(0.2, 0.8)
        r0 = top[c] + frac * thick[c]
        a = rng.uniform(0.05, 0.15) * n
        b = rng.uniform(1.0, 2.5)
        ell = ((xx - c) / a) ** 2 + ((yy - r0) / b) ** 2 <= 1.0
        labels[ell & layer] = 2
    # pores: log-normal discs inside the layer until the target porosity is reached
    pores = []
    layer_area = int(layer.sum())
    target = porosity * layer_area
    drawn = 0
    tries = 0
    while drawn < target and tries < 20000:
        tries += 1
        r = float(pore_median_px * np.exp(pore_sigma * rng.standard_normal()))
        r = min(max(r, 0.8), 0.3 * thickness_px)
        c = int(rng.integers(0, n))
        lo, hi = top[c] + r + 1, interface[c] - r - 1
        if hi <= lo:
            continue
        rr = float(rng.uniform(lo, hi))
        y0, y1 = max(int(rr - r) - 1, 0), min(int(rr + r) + 2, m)
        x0, x1 = max(c - int(r) - 1, 0), min(c + int(r) + 2, n)
        disc = (yy[y0:y1, x0:x1] - rr) ** 2 + (xx[y0:y1, x0:x1] - c) ** 2 <= r * r
        sub = labels[y0:y1, x0:x1]
        inside = disc & layer[y0:y1, x0:x1]
        # keep pores separate (no touching) so the pore list stays one object per pore
        grown = ndi.binary_dilation(disc, iterations=2)
        if np.any(sub[grown & layer[y0:y1, x0:x1]] == 1):
            continue
        new = inside & (sub != 1)
        sub[new] = 1
        drawn += int(new.sum())
        pores.append({"row": rr, "col": float(c), "radius_px": r,
                      "eq_diameter_px": float(2 * np.sqrt(inside.sum() / np.pi))})
    fr = _fractions(labels, names)
    in_layer = labels[layer]
    por = float((in_layer == 1).sum()) / max(in_layer.size, 1)
    levels = np.array([40.0, 25.0, 110.0, 185.0, 220.0])  # mount, pore, oxide, coating, substrate
    img = _render(rng, labels, levels, gradient=gradient, noise_sd=noise_sd, blur_px=blur_px,
                  jpeg_quality=jpeg_quality, dtype=dtype)
    return PhaseTruth(image=img, labels=labels, names=names, pixel_size_um=float(pixel_size_um),
                      fractions=fr, porosity=por, thickness_profile_px=profile,
                      thickness_mean_um=float(profile.mean() * pixel_size_um), pores=pores,
                      mount_fraction=float((labels == 0).mean()),
                      thickness_nominal_um=float(thickness_px * pixel_size_um))


def multiphase_scan(*, shape: tuple[int, int] = (512, 512), seed: int = 0,
                    n_phases: int = 3, pixel_size_um: float = 0.5,
                    blob_sigma_px: float = 8.0, gradient: float = 0.1, noise_sd: float = 4.0,
                    blur_px: float = 0.8, jpeg_quality: int | None = None,
                    dtype=np.uint8) -> PhaseTruth:
    """Generate a 2-4 phase micrograph of smooth random blobs with exact truth.

    Parameters
    ----------
    shape, seed, pixel_size_um : keyword-only
        Image size, random seed, pixel size in µm.
    n_phases : int, keyword-only
        Number of phases, 2..4 (every pixel is assigned).
    blob_sigma_px : float, keyword-only
        Correlation length of the random field that shapes the phases.
    gradient, noise_sd, blur_px, jpeg_quality, dtype
        As in :func:`coating_scan`.

    Returns
    -------
    PhaseTruth
        ``names = ("phase1", ..., "phaseK")`` darkest first; no coating numbers.
    """
    if not 2 <= int(n_phases) <= 4:
        raise ValueError(f"n_phases={n_phases} must be 2..4")
    m, n = (int(shape[0]), int(shape[1]))
    if m < 16 or n < 16:
        raise ValueError(f"shape {shape} too small (>= 16 x 16 needed)")
    rng = np.random.default_rng(seed)
    field_ = ndi.gaussian_filter(rng.standard_normal((m, n)), blob_sigma_px, mode="wrap")
    props = rng.dirichlet(np.full(n_phases, 3.0))
    cuts = np.quantile(field_, np.cumsum(props)[:-1])
    labels = (np.digitize(field_, cuts) + 1).astype(np.uint8)
    names = tuple(f"phase{k + 1}" for k in range(n_phases))
    levels = np.concatenate([[0.0], np.linspace(40.0, 215.0, n_phases)])
    img = _render(rng, labels, levels, gradient=gradient, noise_sd=noise_sd, blur_px=blur_px,
                  jpeg_quality=jpeg_quality, dtype=dtype)
    return PhaseTruth(image=img, labels=labels, names=names, pixel_size_um=float(pixel_size_um),
                      fractions=_fractions(labels, names))
