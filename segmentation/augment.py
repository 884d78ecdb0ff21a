"""Data augmentation for (image, mask) training batches, in NumPy.

Geometric transforms (the 8 flips/90-degree rotations of the square and an
optional elastic warp) are applied identically to images and masks;
photometric ones (brightness, contrast, gamma, Gaussian blur, noise, JPEG
re-compression) to images only.  Images are float32 in roughly [0, 1]; masks are float32 0/1 (or any
per-pixel target).  Everything is driven by a ``numpy.random.Generator`` so
runs are reproducible.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

__all__ = ["AugmentConfig", "augment_batch", "dihedral", "elastic_warp", "jpeg_recompress"]


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation options (0 or False switches a transform off).

    Attributes
    ----------
    dihedral : bool
        Random flip + 90-degree rotation (8 variants), images must be square.
    brightness : float
        Additive offset drawn from U(-brightness, brightness).
    contrast : float
        Gain drawn from U(1 - contrast, 1 + contrast) around the patch mean.
    gamma : float
        ``x ** g`` with ``log g`` drawn from U(-gamma, gamma) (on the clipped [0, 1] image).
    noise : float
        Standard deviation of additive Gaussian noise is drawn from U(0, noise).
    blur : float
        Gaussian blur (defocus) with sigma drawn from U(0, blur), applied with probability ``blur_prob``.
    blur_prob : float
        Probability of the blur per sample (0.3 before the JPEG / defocus option was added).
    jpeg_quality : tuple of 2 int, optional
        JPEG re-compression with a quality drawn from U{lo..hi} (e.g. ``(70, 95)``), applied last
        (after the noise, as a camera or a re-save would) with probability ``jpeg_prob``;
        None switches it off.  The patch (normalised, about [0, 1]) is written as 8-bit gray
        ``128 + 255 g (x - 0.5)`` with a gain ``g`` drawn from U(``jpeg_gain``), so that its
        contrast matches a raw scan's (the normalisation gives an IQR of 0.2; raw scans have an IQR
        of about 30-60 gray levels), compressed, decoded and mapped back.
    jpeg_prob : float
        Probability of the JPEG re-compression per sample.
    jpeg_gain : tuple of 2 float
        Range of the gain ``g`` above.
    elastic_alpha, elastic_sigma : float
        Elastic warp (displacement amplitude in px, smoothness in px), probability 0.5;
        ``elastic_alpha = 0`` switches it off.
    """

    dihedral: bool = True
    brightness: float = 0.1
    contrast: float = 0.2
    gamma: float = 0.2
    noise: float = 0.03
    blur: float = 0.0
    elastic_alpha: float = 0.0
    elastic_sigma: float = 8.0
    blur_prob: float = 0.3
    jpeg_quality: tuple[int, int] | None = None
    jpeg_prob: float = 0.5
    jpeg_gain: tuple[float, float] = (0.6, 1.2)

    def __post_init__(self) -> None:
        if self.jpeg_quality is not None:
            q = tuple(int(v) for v in self.jpeg_quality)
            if len(q) != 2 or not 1 <= q[0] <= q[1] <= 100:
                raise ValueError(f"jpeg_quality must be (lo, hi) with 1 <= lo <= hi <= 100, got {self.jpeg_quality}")
            object.__setattr__(self, "jpeg_quality", q)
        g = tuple(float(v) for v in self.jpeg_gain)
        if len(g) != 2 or not 0 < g[0] <= g[1]:
            raise ValueError(f"jpeg_gain must be (lo, hi) with 0 < lo <= hi, got {self.jpeg_gain}")
        object.__setattr__(self, "jpeg_gain", g)
        for name in ("blur_prob", "jpeg_prob"):
            if not 0 <= float(getattr(self, name)) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("brightness", "contrast", "gamma", "noise", "blur", "elastic_alpha"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if float(self.contrast) >= 1:
            raise ValueError(f"contrast must be < 1, got {self.contrast}")
        if float(self.elastic_sigma) <= 0:
            raise ValueError(f"elastic_sigma must be > 0, got {self.elastic_sigma}")

    def to_dict(self) -> dict:
        return asdict(self)


def dihedral(a: np.ndarray, k: int) -> np.ndarray:
    """The k-th (0..7) rotation/flip of ``a`` in its first two axes (shape (M, N, ...))."""
    out = np.rot90(a, k % 4, axes=(0, 1))
    return out[:, ::-1] if k % 8 >= 4 else out


def elastic_warp(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, *, alpha: float, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Warp a 2-D image (linear) and mask (nearest) with the same smooth random displacement.

    Parameters
    ----------
    image, mask : ndarray, shape (M, N)
    rng : numpy.random.Generator
    alpha : float
        Displacement amplitude in pixels.
    sigma : float
        Gaussian smoothing of the displacement field in pixels.
    """
    shape = image.shape
    dr = ndimage.gaussian_filter(rng.uniform(-1, 1, shape), sigma, mode="reflect")
    dc = ndimage.gaussian_filter(rng.uniform(-1, 1, shape), sigma, mode="reflect")
    scale = alpha / max(float(np.abs(np.concatenate([dr.ravel(), dc.ravel()])).max()), 1e-12)
    rows, cols = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    coords = np.stack([rows + dr * scale, cols + dc * scale])
    warped = ndimage.map_coordinates(image, coords, order=1, mode="reflect")
    warped_mask = ndimage.map_coordinates(mask, coords, order=0, mode="reflect")
    return warped.astype(image.dtype), warped_mask.astype(mask.dtype)


def jpeg_recompress(image: np.ndarray, quality: int, gain: float = 1.0) -> np.ndarray:
    """A float image (about [0, 1], shape (M, N) or (M, N, 1)) saved as 8-bit JPEG and decoded.

    The image is written as gray ``128 + 255 gain (x - 0.5)`` (clipped to 0-255),
    compressed at ``quality`` and mapped back with the inverse of that map, so
    only the compression (and the 8-bit rounding) changes it.
    """
    import cv2

    x = np.asarray(image, dtype=np.float32)
    if gain <= 0:
        raise ValueError(f"gain must be > 0, got {gain}")
    u8 = np.clip(np.rint(128 + 255 * gain * (x.reshape(x.shape[:2]) - 0.5)), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    dec = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float32)
    return ((dec - 128) / (255 * gain) + 0.5).reshape(x.shape).astype(np.float32)


def augment_batch(
    images: np.ndarray,
    masks: np.ndarray,
    rng: np.random.Generator,
    cfg: AugmentConfig | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Augment a batch of (image, mask) pairs.

    Parameters
    ----------
    images, masks : ndarray, shape (B, M, N) or (B, M, N, 1)
        float images (about [0, 1]) and targets; ``M == N`` when ``cfg.dihedral``.
    rng : numpy.random.Generator
    cfg : AugmentConfig, optional

    Returns
    -------
    images, masks : ndarray, float32, same shapes as the inputs
        New arrays (the inputs are not modified).
    """
    cfg = cfg or AugmentConfig()
    images = np.asarray(images, dtype=np.float32)
    masks = np.asarray(masks, dtype=np.float32)
    if images.shape[:3] != masks.shape[:3] or images.ndim not in (3, 4):
        raise ValueError(
            f"images and masks must be (B, M, N[, 1]) of equal size, got {images.shape}, {masks.shape}"
        )
    b = images.shape[0]
    x = images.copy()
    y = masks.copy()
    if cfg.dihedral:
        if x.shape[1] != x.shape[2]:
            raise ValueError(f"dihedral augmentation needs square patches, got {x.shape[1:3]}")
        ks = rng.integers(0, 8, b)
        for i in range(b):  # one transform per sample (loop over the batch, not over pixels)
            x[i] = dihedral(x[i], int(ks[i]))
            y[i] = dihedral(y[i], int(ks[i]))
    if cfg.elastic_alpha > 0:
        for i in np.flatnonzero(rng.random(b) < 0.5):
            xi, yi = x[i], y[i]
            squeeze = xi.ndim == 3
            wx, wy = elastic_warp(
                xi[..., 0] if squeeze else xi,
                yi[..., 0] if squeeze else yi,
                rng,
                alpha=cfg.elastic_alpha,
                sigma=cfg.elastic_sigma,
            )
            x[i] = wx[..., None] if squeeze else wx
            y[i] = wy[..., None] if squeeze else wy
    shape = (b,) + (1,) * (x.ndim - 1)
    if cfg.blur > 0:
        for i in np.flatnonzero(rng.random(b) < cfg.blur_prob):
            s = float(rng.uniform(0, cfg.blur))
            sig = (s, s, 0) if x.ndim == 4 else s
            x[i] = ndimage.gaussian_filter(x[i], sig, mode="reflect")
    if cfg.contrast > 0:
        gain = rng.uniform(1 - cfg.contrast, 1 + cfg.contrast, b).reshape(shape)
        mean = x.mean(axis=tuple(range(1, x.ndim)), keepdims=True)
        x = (x - mean) * gain + mean
    if cfg.brightness > 0:
        x = x + rng.uniform(-cfg.brightness, cfg.brightness, b).reshape(shape)
    if cfg.gamma > 0:
        g = np.exp(rng.uniform(-cfg.gamma, cfg.gamma, b)).reshape(shape)
        x = np.clip(x, 0.0, 1.0) ** g
    if cfg.noise > 0:
        std = rng.uniform(0, cfg.noise, b).reshape(shape)
        x = x + rng.standard_normal(x.shape) * std
    if cfg.jpeg_quality is not None and cfg.jpeg_prob > 0:
        lo, hi = cfg.jpeg_quality
        for i in np.flatnonzero(rng.random(b) < cfg.jpeg_prob):
            q = int(rng.integers(lo, hi + 1))
            x[i] = jpeg_recompress(x[i], q, float(rng.uniform(*cfg.jpeg_gain)))
    return x.astype(np.float32), y.astype(np.float32)
