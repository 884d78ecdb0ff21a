"""Binary impurity masks from mask images of any binary encoding, with polarity handling.

A mask file may store its two classes as bool, 0/1, 0/255, 0/65535 or any two
levels (``lo``/``hi``): the higher level is "white".  Lossy files (JPEG) are
accepted when nearly every pixel lies close to one of the two extremes; an image
that is plainly a micrograph, not a mask, raises :class:`~data.errors.MaskError`.
"""

from __future__ import annotations

import numpy as np

from ._chunked import bincount
from .errors import MaskError

__all__ = ["binarize_mask", "mask_levels", "POLARITIES", "LOSSY_TOLERANCE", "LOSSY_MIN_FRACTION"]

POLARITIES = ("auto", "white", "black")

#: A pixel of a lossy mask is "near an extreme" when within this share of (max - min) of min or max.
LOSSY_TOLERANCE = 0.125
#: Share of pixels that must be near an extreme for an image with more than two levels to be a mask.
#: Measured: 0/255 masks saved as JPEG keep >= 99.17 % (quality 50) and >= 99.97 % (quality 75) of
#: their pixels within 12.5 % of the extremes; the 27 real dev micrographs have <= 3.1 %.
LOSSY_MIN_FRACTION = 0.99
#: ... and the two extremes must be this far apart (share of the dtype range; 64 levels in 8 bits),
#: so that a flat noisy image is not split at its mean.
LOSSY_MIN_CONTRAST = 0.25


def _levels(px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and their counts (bincount for 8/16-bit, unique otherwise)."""
    if px.dtype in (np.uint8, np.uint16):
        counts = bincount(px, minlength=1)  # in blocks: no full-image intp copy
        values = np.flatnonzero(counts)
        return values, counts[values]
    return np.unique(px, return_counts=True)


def mask_levels(pixels: np.ndarray) -> tuple[float, float, str]:
    """The two levels of a mask image and how they were found.

    Returns
    -------
    lo, hi : float
        The black and white levels (equal for a one-valued image).
    how : {'constant', 'two-level', 'lossy'}
        One value, exactly two values, or more values that cluster at two extremes.

    Raises
    ------
    MaskError
        If the image has more than two levels and is not a lossy two-level image.
    """
    px = np.asarray(pixels)
    if px.size == 0:
        raise MaskError("mask image is empty")
    if px.dtype.kind == "f" and not np.all(np.isfinite(px)):
        raise MaskError("mask image contains NaN or infinite values")
    values, counts = _levels(px)
    if len(values) == 1:
        return float(values[0]), float(values[0]), "constant"
    lo, hi = float(values[0]), float(values[-1])
    if len(values) == 2:
        return lo, hi, "two-level"
    full = float(np.iinfo(px.dtype).max) if px.dtype.kind in "ui" else 1.0
    tol = LOSSY_TOLERANCE * (hi - lo)
    near = counts[(values <= lo + tol) | (values >= hi - tol)].sum() / px.size
    if hi - lo >= LOSSY_MIN_CONTRAST * full and near >= LOSSY_MIN_FRACTION:
        return lo, hi, "lossy"
    raise MaskError(
        f"not a binary mask: {len(values)} distinct levels ({lo:g}..{hi:g}), only {100 * near:.1f}% of "
        f"pixels near the two extremes (a mask needs 2 levels, or >= {100 * LOSSY_MIN_FRACTION:g}% within "
        f"{100 * LOSSY_TOLERANCE:g}% of them); is this a micrograph? then use data.kind=scan"
    )


def binarize_mask(pixels: np.ndarray, *, polarity: str = "auto") -> np.ndarray:
    """Impurity mask (bool) from a mask image in any binary encoding.

    Parameters
    ----------
    pixels : ndarray, shape (M, N)
        Mask image: bool, or any two levels (0/1, 0/255, 0/65535, 3/200, ...);
        the higher level is "white".  Lossy (JPEG) masks are split half-way
        between their extremes when >= 99 % of pixels lie within 12.5 % of the
        extremes' distance of one of them (and the extremes are at least a quarter
        of the dtype range apart).
    polarity : {'auto', 'white', 'black'}
        Which colour marks impurities.  ``'auto'`` takes the minority class
        (impurities cover far less than half of a scan); on a tie, white.
        A one-valued image has no minority class: ``'auto'`` gives an empty mask;
        ``'white'`` marks everything when the value is non-zero (True, 1, 255...),
        ``'black'`` marks everything when it is zero.

    Returns
    -------
    ndarray of bool, shape (M, N)

    Raises
    ------
    MaskError
        If the image is plainly not a binary mask (the message counts its levels).
    ValueError
        For a bad ``polarity`` or a non-2-D array.

    Examples
    --------
    >>> m = np.zeros((4, 4), np.uint8); m[0, 0] = 255
    >>> int(binarize_mask(m).sum()), int(binarize_mask(m, polarity="black").sum())
    (1, 15)
    >>> int(binarize_mask(m // 255).sum())  # 0/1 encoding
    1
    """
    if polarity not in POLARITIES:
        raise ValueError(f"mask polarity must be one of {POLARITIES}, got {polarity!r}")
    px = np.asarray(pixels)
    if px.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {px.shape}")
    if px.dtype == np.bool_:
        white = px
        constant = not px.any() or px.all()
    else:
        lo, hi, how = mask_levels(px)
        constant = how == "constant"
        white = px > (lo + hi) / 2 if not constant else np.full(px.shape, lo != 0)
    if constant and polarity == "auto":
        return np.zeros(px.shape, bool)
    if polarity == "white":
        return np.asarray(white, bool)
    if polarity == "black":
        return ~white
    n_white = int(np.count_nonzero(white))
    return white if n_white <= white.size - n_white else ~white
