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
    "label_components",
    "fill_holes",
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


def label_components(mask: np.ndarray, *, connectivity: int = 4) -> tuple[np.ndarray, int]:
    """Connected components of a 2-D boolean mask: ``(int32 labels, count)``, numbered as ``scipy.ndimage.label``.

    OpenCV's scan-order union-find labelling (SAUF: a new label at the first pixel of each
    component in raster order, equivalences resolved to the smallest), so the numbering is scipy's:
    components in the raster order of their first pixel.  ``connectivity`` 4 (scipy's default
    structure) or 8 (``np.ones((3, 3))``); scipy for masks OpenCV cannot take.
    """
    from scipy import ndimage as ndi

    m = np.asarray(mask, dtype=bool)
    if m.ndim == 2 and 0 < m.size < 2**31 - 1 and connectivity in (4, 8):
        import cv2

        n1, comp = cv2.connectedComponentsWithAlgorithm(np.ascontiguousarray(m).view(np.uint8), connectivity,
                                                        cv2.CV_32S, cv2.CCL_SAUF)
        return comp, int(n1) - 1
    structure = np.ones((3, 3), bool) if connectivity == 8 else None
    comp, n = ndi.label(m, structure=structure)
    return comp.astype(np.int32, copy=False), int(n)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_fill_holes`` of a 2-D mask: the background not 4-connected to the image edge is filled."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2 or m.size == 0:
        from scipy import ndimage as ndi

        return ndi.binary_fill_holes(m)
    comp, n = label_components(~m, connectivity=4)
    if n == 0:
        return m.copy()
    edge = np.zeros(n + 1, dtype=bool)
    for side in (comp[0], comp[-1], comp[:, 0], comp[:, -1]):
        edge[side] = True
    edge[0] = True  # the mask itself
    return ~edge[comp] | m


def _neighbour_pairs(pix: np.ndarray, shape: tuple[int, int], offsets) -> tuple[np.ndarray, np.ndarray]:
    """(index into ``pix``, flat neighbour index) for each in-image neighbour of the flat pixels ``pix``."""
    h, w = shape
    r, c = np.divmod(pix, w)
    src, dst = [], []
    for dr, dc in offsets:
        ok = (r + dr >= 0) & (r + dr < h) & (c + dc >= 0) & (c + dc < w)
        i = np.flatnonzero(ok)
        src.append(i)
        dst.append(pix[i] + (dr * w + dc))
    return np.concatenate(src), np.concatenate(dst)


_CROSS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def clean_small(labels: np.ndarray, *, min_size_px: int, valid: np.ndarray | None = None) -> np.ndarray:
    """Merge connected components smaller than ``min_size_px`` into the phase that surrounds them.

    Each small (4-connected) component takes the most frequent label on its one-pixel (4-connected)
    outer border (label 0, the excluded area, never wins; ties go to the smaller label); components
    without a labelled neighbour are kept.  Phases are cleaned in ascending label order, each on the
    labels left by the ones before (a speck merged into a small component of a later phase is
    cleaned with it).

    Vectorised: one connected-component labelling per phase and a count of (component, border
    label) pairs over the border pixels of the small components.  One pass is final: after phase
    ``k`` is cleaned, its components are either >= ``min_size_px`` (later merges only grow them)
    or small with only label 0 around them (which never changes), so a second pass would change
    nothing.
    """
    out = np.array(labels, copy=True)
    if min_size_px <= 1:
        return out
    shape = out.shape
    flat = out.reshape(-1)
    present = np.unique(flat)
    if present.size and present[0] < 0:
        raise PhaseError("labels must be non-negative")
    n_lab = int(present[-1]) + 1 if present.size else 1
    for k in present:
        if k == 0:
            continue
        comp, n = label_components(out == k, connectivity=4)
        if n == 0:
            continue
        sizes = np.bincount(comp.reshape(-1), minlength=n + 1)
        small = sizes < min_size_px
        small[0] = False
        if not small.any():
            continue
        pix = np.flatnonzero(small[comp])
        cid = comp.reshape(-1)[pix]
        i, q = _neighbour_pairs(pix, shape, _CROSS)
        lq = flat[q]
        keep = (lq != 0) & (lq != k)
        ci, q, lq = cid[i[keep]], q[keep], lq[keep]
        if ci.size == 0:
            continue
        # each border pixel once per component (a pixel next to two of its pixels counts once)
        u = np.unique(ci.astype(np.int64) * flat.size + q)
        ci, lq = u // flat.size, flat[u % flat.size].astype(np.int64)
        # the most frequent border label of each component, the smaller label on ties
        keys, counts = np.unique(ci * n_lab + lq, return_counts=True)
        kc, kl = keys // n_lab, keys % n_lab
        order = np.lexsort((kl, -counts, kc))
        kc, kl = kc[order], kl[order]
        first = np.r_[True, kc[1:] != kc[:-1]]
        new = np.zeros(n + 1, dtype=np.int64)
        has = np.zeros(n + 1, dtype=bool)
        new[kc[first]] = kl[first]
        has[kc[first]] = True
        move = has[cid]
        flat[pix[move]] = new[cid[move]].astype(out.dtype)
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
    import cv2

    lab = np.asarray(labels)
    out = lab.copy()
    if n < 3 or rim_px < 1:
        return out
    g = np.asarray(grey, dtype=np.float64)
    li = lab.reshape(-1).astype(np.intp)
    cnt = np.bincount(li, minlength=n + 1).astype(np.float64)
    mu = np.bincount(li, weights=g.reshape(-1), minlength=n + 1) / np.maximum(cnt, 1.0)
    del li
    size = 2 * int(rim_px) + 1
    # max / min over the window, pixels outside the image ignored (= scipy's reflect mode for a
    # max / min filter); OpenCV's dilate / erode on uint8
    kernel = np.ones((size, size), np.uint8)
    for k in range(2, n):
        mid = lab == k
        if not mid.any():
            continue
        dark = cv2.dilate(np.where((lab > 0) & (lab < k), lab, 0).astype(np.uint8), kernel)
        bright = cv2.erode(np.where(lab > k, lab, 255).astype(np.uint8), kernel)
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
    if ok.all():  # the same draw as from the index array (choice on 0..N-1), without building it
        idx = np.arange(ok.size)
        if ok.size > max_samples:
            idx = np.sort(np.random.default_rng(seed).choice(ok.size, size=max_samples, replace=False))
    else:
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
    np.exp(field_img, out=field_img)  # in place: the same values as np.clip(g / np.exp(field), 0, 1)
    np.divide(g, field_img, out=field_img)
    return np.clip(field_img, 0.0, 1.0, out=field_img)


def deblur_small_dark(labels: np.ndarray, grey: np.ndarray, *, n: int, max_area_px: int,
                      depth: float = 0.25, raw: np.ndarray | None = None, ring_px: int = 1,
                      excess: float | None = None) -> np.ndarray:
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
    ``raw`` (default ``grey``): the image whose darkness is integrated (and whose class means give
    ``mu_b``, ``mu_d`` of the area), e.g. the scan before a median filter, which does not keep a small
    dark object's integrated darkness; ``ring_px``: the width of the ring summed (a blur wider than
    1 px spreads darkness beyond a 1 px ring).  The thresholds, the phases and the depth test use ``grey``.
    ``excess`` (None = off): an object of phase ``k`` alone that is not deep enough is a blurred darker
    object too when its integrated darkness exceeds ``excess`` times that of a body of phase ``k``
    of its area, ``area (mu_b - mu_k)`` (a blurred pore a few px across spreads its darkness over more
    px than its area and never reaches the depth; an oxide particle holds about its area's worth).
    Vectorised (label images and bincounts).
    """
    import cv2

    out = np.asarray(labels).copy()
    if n < 3 or max_area_px < 1:
        return out
    g = np.asarray(grey, dtype=np.float64)
    gf = g.reshape(-1)
    rf = gf if raw is None else np.asarray(raw, dtype=np.float64).reshape(-1)
    if rf.size != gf.size:
        raise PhaseError(f"raw has {rf.size} pixels, grey {gf.size}")
    ring_px = int(ring_px)
    if ring_px < 1:
        raise PhaseError(f"ring_px must be >= 1, got {ring_px}")
    for k in range(2, n):
        lab = out
        flat = lab.reshape(-1)
        li = flat.astype(np.intp)
        cnt = np.bincount(li, minlength=n + 1).astype(np.float64)
        mu = np.bincount(li, weights=gf, minlength=n + 1) / np.maximum(cnt, 1.0)
        mu_r = mu if raw is None else np.bincount(li, weights=rf, minlength=n + 1) / np.maximum(cnt, 1.0)
        del li
        mask = (lab > 0) & (lab <= k)
        comp, nc = label_components(mask, connectivity=8)
        if nc == 0:
            continue
        area = np.bincount(comp.reshape(-1), minlength=nc + 1)
        small = area <= max_area_px
        small[0] = False
        if not small.any():
            continue
        # the small objects renumbered 1..ns in the order of their labels (a monotone map: the
        # largest object label around a ring pixel is the same object)
        sid = np.flatnonzero(small)
        ns = sid.size
        ftype = np.float32 if ns < 2**24 else np.float64  # exact integers for OpenCV's dilate
        remap = np.zeros(nc + 1, dtype=ftype)
        remap[sid] = np.arange(1, ns + 1, dtype=ftype)
        cs = remap[comp]
        del comp
        # the object owning each ring pixel: the largest object label in its 3 x 3 window
        # (outside the image ignored, as scipy's reflect-mode grey dilation)
        ring_owner = cv2.dilate(cs, np.ones((3, 3), np.uint8))
        inside_pix = np.flatnonzero(cs)
        ring_pix = np.flatnonzero((cs == 0) & (ring_owner > 0) & (lab > 0))
        ci = cs.reshape(-1)[inside_pix].astype(np.int64)
        ro = ring_owner.reshape(-1)[ring_pix].astype(np.int64)
        if ring_px > 1:  # the wider ring of the integrated darkness
            wide = cv2.dilate(cs, np.ones((2 * ring_px + 1, 2 * ring_px + 1), np.uint8))
            dring_pix = np.flatnonzero((cs == 0) & (wide > 0) & (lab > 0))
            dro = wide.reshape(-1)[dring_pix].astype(np.int64)
            del wide
        else:
            dring_pix, dro = ring_pix, ro
        del cs, ring_owner
        li_in, rl = flat[inside_pix].astype(np.int64), flat[ring_pix].astype(np.int64)
        # the brighter phase around each object: most frequent label above k on its ring
        pair = np.bincount(ro * (n + 1) + rl, minlength=(ns + 1) * (n + 1)).reshape(ns + 1, n + 1)
        pair[:, : k + 1] = 0
        has_b = pair.sum(axis=1) > 0
        b = pair.argmax(axis=1)
        # the darkest phase in each object: the smallest label value present
        darkest = np.full(ns + 1, k, dtype=np.int64)
        for v in range(k - 1, 0, -1):
            darkest[np.bincount(ci[li_in == v], minlength=ns + 1) > 0] = v
        gi = gf[inside_pix]
        gmin = np.full(ns + 1, np.inf)  # the darkest grey of each object
        np.minimum.at(gmin, ci, gi)
        deep = gmin < mu[k] - depth * (mu[k] - mu[k - 1])
        small_c = np.ones(ns + 1, dtype=bool)
        small_c[0] = False
        cand = small_c & has_b & ((darkest < k) | deep)
        test = cand if excess is None else small_c & has_b  # objects whose darkness is integrated
        if not test.any():
            continue
        d = np.where(darkest < k, darkest, k - 1)
        mub, mud = mu_r[b], mu_r[d]
        # integrated darkness of each object and its ring, summed in image order
        pix_o = np.concatenate([inside_pix, dring_pix])
        own_o = np.concatenate([ci, dro])
        sel = test[own_o]
        pix_o, own_o = pix_o[sel], own_o[sel]
        order = np.argsort(pix_o, kind="stable")
        o = own_o[order]
        go = rf[pix_o[order]]
        deficit = np.bincount(o, weights=np.clip(mub[o] - go, 0.0, None), minlength=ns + 1)
        if excess is not None:
            # more darkness than a body of phase k of the object's area could hold: a blurred darker object
            area_s = np.bincount(ci, minlength=ns + 1)
            cand |= test & (deficit > float(excess) * area_s * np.maximum(mub - mu_r[k], 1e-9))
        if not cand.any():
            continue
        n_dark = np.rint(deficit / np.maximum(mub - mud, 1e-9)).astype(np.int64)
        keep = cand[ci]
        pix, pc, pg = inside_pix[keep], ci[keep], gi[keep]
        order = np.lexsort((pg, pc))
        pix, pc = pix[order], pc[order]
        start = np.searchsorted(pc, pc, side="left")
        rank = np.arange(pc.size) - start
        flat[pix] = np.where(rank < n_dark[pc], d[pc], b[pc]).astype(out.dtype)
    return out
