"""Classical multi-phase segmentation of a metallography scan (pure numpy / scikit-image).

Steps: grey conversion and [0, 1] scaling (8/16-bit, float, RGB), optional CLAHE, optional
denoising (median / gaussian / non-local means, size in µm when calibrated), optional SLIC
superpixel averaging, thresholds by multi-level Otsu or a 1-D Gaussian mixture (number of
phases chosen by BIC when asked), and a morphological clean-up that merges components smaller
than ``min_size`` into their surrounding phase.
"""

from __future__ import annotations

import numpy as np

from data.errors import QuantmetError

__all__ = [
    "PhaseError",
    "to_unit_grey",
    "preprocess",
    "otsu_thresholds",
    "gmm_thresholds",
    "choose_n_by_bic",
    "clean_small",
    "repair_rims",
    "flatten_illumination",
]


#: Smallest CLAHE tile side (px).
_CLAHE_MIN_TILE_PX = 64


class PhaseError(QuantmetError, ValueError):
    """Bad input to phase segmentation or measurement (names, counts, sizes, label values)."""


def to_unit_grey(pixels: np.ndarray) -> np.ndarray:
    """Grey float64 image in [0, 1] from a 2-D or RGB(A) array of any integer or float dtype.

    Integer images are scaled by their dtype range (a 16-bit scan keeps its depth); float images
    by their own min/max.
    """
    a = np.asarray(pixels)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        rgb = a[..., :3].astype(np.float64)
        a_f = rgb @ np.array([0.2125, 0.7154, 0.0721])
        kind = a.dtype
    elif a.ndim == 2:
        a_f = a.astype(np.float64)
        kind = a.dtype
    else:
        raise PhaseError(f"pixels must be (M, N) or (M, N, 3|4), got shape {a.shape}")
    if a_f.size == 0:
        raise PhaseError("pixels is empty")
    if kind == np.bool_:
        return a_f
    if np.issubdtype(kind, np.integer):
        info = np.iinfo(kind)
        a_f -= info.min
        a_f *= 1.0 / float(info.max - info.min)
        return a_f
    if not np.isfinite(a_f).all():
        raise PhaseError("pixels contain NaN or infinite values")
    lo, hi = float(a_f.min()), float(a_f.max())
    return (a_f - lo) / (hi - lo) if hi > lo else np.zeros_like(a_f)


def _size_px(size_um: float | None, size_px: int, pixel_size_um: float | None) -> int:
    if size_um is not None and pixel_size_um:
        return max(1, int(round(float(size_um) / float(pixel_size_um))))
    if size_um is not None:
        return max(1, int(round(float(size_um))))  # uncalibrated: the µm value read as px
    return int(size_px)


def preprocess(
    grey: np.ndarray,
    *,
    clahe_clip: float | None = 0.01,
    denoise: str | None = "median",
    denoise_px: int = 3,
    slic: bool = False,
    slic_segments: int = 2000,
) -> np.ndarray:
    """CLAHE, denoising and optional SLIC averaging of a [0, 1] grey image (float64 out)."""
    from skimage import exposure, filters, restoration, segmentation

    g = np.asarray(grey, dtype=np.float64)
    if clahe_clip is not None:
        if not 0 < float(clahe_clip) <= 1:
            raise PhaseError(f"clahe_clip must be in (0, 1] or None, got {clahe_clip}")
        # tiles of 1/8 of the image but >= 64 px: small tiles inside one uniform phase stretch
        # its noise into false phases
        ks = min(max(min(g.shape) // 8, _CLAHE_MIN_TILE_PX), max(g.shape))
        g = exposure.equalize_adapthist(g, clip_limit=float(clahe_clip), kernel_size=ks)
    if denoise is not None:
        k = int(denoise_px)
        if k < 1:
            raise PhaseError(f"denoise size must be >= 1 px, got {k}")
        if denoise == "median":
            if k > 1:  # OpenCV's median on 16-bit levels (~30x faster than scipy's on floats)
                import cv2

                k_odd = k if k % 2 else k + 1
                u = np.rint(np.clip(g, 0.0, 1.0) * 65535.0).astype(np.uint16)
                if k_odd <= 5:
                    g = cv2.medianBlur(u, k_odd).astype(np.float64) / 65535.0
                else:  # OpenCV takes 16-bit images only up to 5 px
                    from scipy import ndimage as ndi

                    g = ndi.median_filter(u, size=k_odd).astype(np.float64) / 65535.0
        elif denoise == "gaussian":
            g = filters.gaussian(g, sigma=k / 3.0)
        elif denoise == "nl_means":
            d = np.diff(g, axis=1)  # noise sigma from the MAD of horizontal differences
            sigma = float(np.median(np.abs(d - np.median(d))) / 0.6745 / np.sqrt(2.0))
            g = restoration.denoise_nl_means(g, h=0.8 * max(sigma, 1e-3), patch_size=max(k, 3),
                                             patch_distance=max(k, 3), fast_mode=True)
        else:
            raise PhaseError(f"denoise must be None, 'median', 'gaussian' or 'nl_means', got {denoise!r}")
    if slic:
        if int(slic_segments) < 2:
            raise PhaseError(f"slic_segments must be >= 2, got {slic_segments}")
        seg = segmentation.slic(g, n_segments=int(slic_segments), compactness=0.1,
                                channel_axis=None, start_label=0)
        means = np.bincount(seg.ravel(), weights=g.ravel()) / np.maximum(np.bincount(seg.ravel()), 1)
        g = means[seg]
    return g


def otsu_thresholds(values: np.ndarray, n: int) -> np.ndarray:
    """The ``n - 1`` multi-level Otsu thresholds of 1-D values (ascending)."""
    from skimage.filters import threshold_multiotsu, threshold_otsu

    v = np.asarray(values, dtype=np.float64).ravel()
    if n < 2:
        return np.empty(0)
    if np.unique(v[: min(v.size, 200000)]).size < n:
        raise PhaseError(f"the image has fewer distinct grey levels than the {n} phases asked for")
    if n == 2:
        return np.array([threshold_otsu(v)])
    return np.asarray(threshold_multiotsu(v, classes=n, nbins=256))


def _fit_gmm(v: np.ndarray, n: int, *, seed: int = 0, iters: int = 200):
    """1-D Gaussian mixture by EM, initialised at the Otsu class means. Returns (w, mu, var, loglik)."""
    from scipy.special import logsumexp

    t = otsu_thresholds(v, n) if n > 1 else np.empty(0)
    cls = np.digitize(v, t)
    mu = np.array([v[cls == k].mean() if np.any(cls == k) else v.mean() for k in range(n)])
    var = np.array([v[cls == k].var() if np.sum(cls == k) > 1 else v.var() for k in range(n)])
    # variance floor at one 256-level grey step: quantised (8-bit, median-filtered) values must
    # not be fitted spike by spike
    floor = max(float(v.max() - v.min()) / 256.0, 1e-4) ** 2
    var = np.maximum(var, floor)
    w = np.array([max(np.mean(cls == k), 1e-3) for k in range(n)])
    w /= w.sum()
    prev = -np.inf
    ll = prev
    for _ in range(iters):
        logp = np.log(w) - 0.5 * np.log(2 * np.pi * var) - 0.5 * (v[:, None] - mu) ** 2 / var
        norm = logsumexp(logp, axis=1)
        ll = float(norm.sum())
        r = np.exp(logp - norm[:, None])
        nk = r.sum(axis=0) + 1e-12
        w = nk / nk.sum()
        mu = (r * v[:, None]).sum(axis=0) / nk
        var = np.maximum((r * (v[:, None] - mu) ** 2).sum(axis=0) / nk, floor)
        if ll - prev < 1e-6 * abs(ll):
            break
        prev = ll
    order = np.argsort(mu)
    return w[order], mu[order], var[order], ll


def _sample(values: np.ndarray, max_n: int = 50000, seed: int = 0) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size > max_n:
        v = np.random.default_rng(seed).choice(v, size=max_n, replace=False)
    return v


def gmm_thresholds(values: np.ndarray, n: int) -> np.ndarray:
    """Thresholds between the ``n`` components of a 1-D Gaussian mixture (posterior crossings)."""
    v = _sample(values)
    if n < 2:
        return np.empty(0)
    w, mu, var, _ = _fit_gmm(v, n)
    grid = np.linspace(0.0, 1.0, 4097) if v.max() <= 1 else np.linspace(v.min(), v.max(), 4097)
    logp = np.log(w) - 0.5 * np.log(2 * np.pi * var) - 0.5 * (grid[:, None] - mu) ** 2 / var
    best = np.argmax(logp, axis=1)
    # keep the classes monotone in intensity: a threshold between consecutive means only
    out = []
    for k in range(n - 1):
        between = (grid > mu[k]) & (grid < mu[k + 1])
        idx = np.flatnonzero(between & (best > k))
        out.append(grid[idx[0]] if idx.size else 0.5 * (mu[k] + mu[k + 1]))
    return np.asarray(out)


def choose_n_by_bic(values: np.ndarray, *, n_max: int, n_min: int = 2) -> int:
    """Number of phases (``n_min..n_max``) whose 1-D Gaussian mixture has the lowest BIC."""
    v = _sample(values)
    best_n, best_bic = n_min, np.inf
    for n in range(n_min, n_max + 1):
        try:
            _, _, _, ll = _fit_gmm(v, n)
        except PhaseError:
            break
        bic = (3 * n - 1) * np.log(v.size) - 2.0 * ll
        if bic < best_bic:
            best_n, best_bic = n, bic
    return best_n


def clean_small(labels: np.ndarray, *, min_size_px: int, valid: np.ndarray | None = None) -> np.ndarray:
    """Merge connected components smaller than ``min_size_px`` into the phase that surrounds them.

    Each small component takes the most frequent label on its one-pixel outer border (label 0,
    the excluded area, never wins); components without a labelled neighbour are kept.
    """
    from scipy import ndimage as ndi

    out = labels.copy()
    if min_size_px <= 1:
        return out
    for _ in range(2):  # a second pass catches components that merged into small ones
        changed = False
        for k in np.unique(out):
            if k == 0:
                continue
            comp, n = ndi.label(out == k)
            if n == 0:
                continue
            sizes = np.bincount(comp.ravel())
            small = np.flatnonzero(sizes < min_size_px)
            small = small[small > 0]
            if small.size == 0:
                continue
            slices = ndi.find_objects(comp)
            for c in small:
                sl = slices[c - 1]
                r0, r1 = max(sl[0].start - 1, 0), min(sl[0].stop + 1, out.shape[0])
                c0, c1 = max(sl[1].start - 1, 0), min(sl[1].stop + 1, out.shape[1])
                sub = comp[r0:r1, c0:c1] == c
                ring = ndi.binary_dilation(sub) & ~sub
                neigh = out[r0:r1, c0:c1][ring]
                neigh = neigh[(neigh != 0) & (neigh != k)]
                if neigh.size == 0:
                    continue
                out[r0:r1, c0:c1][sub] = np.bincount(neigh).argmax()
                changed = True
        if not changed:
            break
    if valid is not None:
        out[~valid] = 0
    return out


def repair_rims(labels: np.ndarray, grey: np.ndarray, *, n: int, rim_px: int = 1) -> np.ndarray:
    """Give the blurred edge between a dark and a bright phase back to those two phases.

    A pixel of an intermediate phase ``k`` (``1 < k < n``) within ``rim_px`` px of both a darker
    and a brighter phase is relabelled to the darker phase nearest it (largest label below ``k``
    in the window) or the brighter one (smallest label above ``k``), whichever class mean of
    ``grey`` is nearer its grey level.  Label 0 (excluded) is never a neighbour and never changes.
    """
    from scipy import ndimage as ndi

    lab = np.asarray(labels)
    out = lab.copy()
    if n < 3 or rim_px < 1:
        return out
    g = np.asarray(grey, dtype=np.float64)
    cnt = np.bincount(lab.ravel(), minlength=n + 1).astype(np.float64)
    mu = np.bincount(lab.ravel(), weights=g.ravel(), minlength=n + 1) / np.maximum(cnt, 1.0)
    size = 2 * int(rim_px) + 1
    for k in range(2, n):
        mid = lab == k
        if not mid.any():
            continue
        dark = ndi.maximum_filter(np.where((lab > 0) & (lab < k), lab, 0).astype(np.uint8), size=size)
        bright = ndi.minimum_filter(np.where(lab > k, lab, 255).astype(np.uint8), size=size)
        rim = mid & (dark > 0) & (bright < 255)
        if not rim.any():
            continue
        d, b, v = dark[rim], bright[rim], g[rim]
        out[rim] = np.where(np.abs(v - mu[d]) <= np.abs(v - mu[b]), d, b)
    return out


def _poly_terms(yy: np.ndarray, xx: np.ndarray, degree: int) -> np.ndarray:
    """Columns y^i x^j, 1 <= i + j <= degree (no constant)."""
    cols = [yy**i * xx ** (d - i) for d in range(1, degree + 1) for i in range(d + 1)]
    return np.stack(cols, axis=-1)


def flatten_illumination(grey: np.ndarray, *, n: int, method: str = "otsu", degree: int = 2, iters: int = 3,
                         valid: np.ndarray | None = None, max_samples: int = 200000, seed: int = 0) -> np.ndarray:
    """Divide out a smooth multiplicative illumination field shared by all phases.

    Each pass thresholds the image into ``n`` classes, fits ``log(g / median of its class)`` by a
    2-D polynomial of ``degree`` (no constant, so the mean level is kept; weighted by the class
    level, dark classes being noisier in log) on up to ``max_samples`` valid pixels, and divides the
    image by ``exp(field)``.  A gradient across the scan no longer moves a phase across a threshold.
    """
    g = np.asarray(grey, dtype=np.float64)
    m, w = g.shape
    ok = np.ones(g.shape, bool) if valid is None else np.asarray(valid, bool)
    idx = np.flatnonzero(ok.ravel())
    if idx.size > max_samples:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=max_samples, replace=False))
    ry, rx = np.divmod(idx, w)
    yy_s, xx_s = 2.0 * ry / max(m - 1, 1) - 1.0, 2.0 * rx / max(w - 1, 1) - 1.0
    a_s = _poly_terms(yy_s, xx_s, int(degree))
    coef = np.zeros(a_s.shape[1])
    eps = 1.0 / 1024.0
    base = g.ravel()[idx]
    v_s = base
    for _ in range(int(iters)):
        # classes of the last flattened samples; the field is re-fitted on the original levels
        t = otsu_thresholds(v_s, n) if method == "otsu" else gmm_thresholds(v_s, n)
        cls = np.digitize(v_s, t)
        med = np.array([np.median(v_s[cls == k]) if np.any(cls == k) else np.nan for k in range(n)])
        lv = med[cls]
        use = np.isfinite(lv) & (lv > eps) & (base > eps)
        r = np.log(base[use] / lv[use])
        wt = lv[use] / np.nanmax(med)
        coef, *_ = np.linalg.lstsq(a_s[use] * wt[:, None], r * wt, rcond=None)
        v_s = base / np.exp(a_s @ coef)
    # the field on the whole grid as Y C X^T (separable in y and x: one matrix product, no per-term
    # image): C[i, j] is the coefficient of y^i x^j, in the column order of _poly_terms
    d = int(degree)
    cmat = np.zeros((d + 1, d + 1))
    k = 0
    for dd in range(1, d + 1):
        for i in range(dd + 1):
            cmat[i, dd - i] = coef[k]
            k += 1
    yv = np.vander(2.0 * np.arange(m) / max(m - 1, 1) - 1.0, d + 1, increasing=True)
    xv = np.vander(2.0 * np.arange(w) / max(w - 1, 1) - 1.0, d + 1, increasing=True)
    field_img = (yv @ cmat) @ xv.T
    return np.clip(g / np.exp(field_img), 0.0, 1.0)


def deblur_small_dark(labels: np.ndarray, grey: np.ndarray, *, n: int, max_area_px: int,
                      depth: float = 0.25) -> np.ndarray:
    """Give small dark objects that blur made read (partly) as an intermediate phase their true phase and area.

    A blurred pore a few px across never reaches the pore grey level: it reads as the next phase up
    (a pore in a coating reads as oxide), or as a small pore core in a thick ring of it.  For each
    intermediate phase ``k`` (``1 < k < n``, ascending), a connected object of phases ``1..k`` of at
    most ``max_area_px`` px inside a brighter phase ``b`` (the most frequent phase on its 1 px ring)
    is taken for a blurred dark object when it holds a pixel of a phase below ``k`` or its darkest
    pixel lies more than ``depth`` of the gap below the class mean of ``k``.  Blur keeps the
    integrated darkness, so its true area is ``D / (mu_b - mu_d)`` with ``D`` the sum of
    ``mu_b - grey`` over the object and its ring and ``d`` the darkest phase in it (``k - 1`` when
    none): that many of its darkest pixels become ``d``, the others ``b``.  Bodies of phase ``k``
    alone that do not go that dark (oxide stringers) and large objects keep their labels.
    Vectorised (label images and bincounts).
    """
    from scipy import ndimage as ndi

    out = np.asarray(labels).copy()
    if n < 3 or max_area_px < 1:
        return out
    g = np.asarray(grey, dtype=np.float64)
    for k in range(2, n):
        lab = out
        cnt = np.bincount(lab.ravel(), minlength=n + 1).astype(np.float64)
        mu = np.bincount(lab.ravel(), weights=g.ravel(), minlength=n + 1) / np.maximum(cnt, 1.0)
        mask = (lab > 0) & (lab <= k)
        comp, nc = ndi.label(mask, structure=np.ones((3, 3), bool))
        if nc == 0:
            continue
        area = np.bincount(comp.ravel(), minlength=nc + 1)
        small = area <= max_area_px
        small[0] = False
        if not small.any():
            continue
        comp = np.where(small[comp], comp, 0).astype(np.int32)
        ring_owner = ndi.grey_dilation(comp, size=(3, 3))
        ring = (comp == 0) & (ring_owner > 0) & (lab > 0)
        # the brighter phase around each object: most frequent label above k on its ring
        ro, rl = ring_owner[ring], lab[ring]
        pair = np.bincount(ro.astype(np.int64) * (n + 1) + rl, minlength=(nc + 1) * (n + 1)).reshape(nc + 1, n + 1)
        pair[:, : k + 1] = 0
        has_b = pair.sum(axis=1) > 0
        b = pair.argmax(axis=1)
        inside = comp > 0
        ci, li = comp[inside], lab[inside]
        # the darkest phase in each object: the smallest label value present (k bincounts, no ufunc.at)
        darkest = np.full(nc + 1, k, dtype=np.int64)
        for v in range(k - 1, 0, -1):
            darkest[np.bincount(ci[li == v], minlength=nc + 1) > 0] = v
        gmin = np.full(nc + 1, np.inf)  # the darkest grey of each object: sorted by object, reduceat
        order = np.argsort(ci, kind="stable")
        cs, gs = ci[order], g[inside][order]
        if cs.size:
            starts = np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]])
            gmin[cs[starts]] = np.minimum.reduceat(gs, starts)
        deep = gmin < mu[k] - depth * (mu[k] - mu[k - 1])
        cand = small & has_b & ((darkest < k) | deep)
        cand[0] = False
        if not cand.any():
            continue
        d = np.where(darkest < k, darkest, k - 1)
        mub, mud = mu[b], mu[d]
        own = np.where(inside, comp, np.where(ring, ring_owner, 0))
        sel = cand[own]
        o, go = own[sel], g[sel]
        deficit = np.bincount(o, weights=np.clip(mub[o] - go, 0.0, None), minlength=nc + 1)
        n_dark = np.rint(deficit / np.maximum(mub - mud, 1e-9)).astype(np.int64)
        pix = np.flatnonzero((inside & cand[comp]).ravel())
        pc, pg = comp.ravel()[pix], g.ravel()[pix]
        order = np.lexsort((pg, pc))
        pix, pc = pix[order], pc[order]
        start = np.searchsorted(pc, pc, side="left")
        rank = np.arange(pc.size) - start
        flat = out.ravel()
        flat[pix] = np.where(rank < n_dark[pc], d[pc], b[pc]).astype(out.dtype)
        out = flat.reshape(out.shape)
    return out
