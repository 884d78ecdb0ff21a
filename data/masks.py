"""Binary impurity masks from mask images, with polarity handling."""

from __future__ import annotations

import numpy as np

__all__ = ["binarize_mask", "POLARITIES"]

POLARITIES = ("auto", "white", "black")


def binarize_mask(pixels: np.ndarray, *, polarity: str = "auto") -> np.ndarray:
    """Impurity mask (bool) from a gray mask image.

    Parameters
    ----------
    pixels : ndarray, shape (M, N)
        Mask image; values above half the dtype range are "white".
    polarity : {'auto', 'white', 'black'}
        Which colour marks impurities.  ``'auto'`` takes the minority class
        (impurities cover far less than half of a scan); on a tie, white.

    Examples
    --------
    >>> m = np.zeros((4, 4), np.uint8); m[0, 0] = 255
    >>> int(binarize_mask(m).sum()), int(binarize_mask(m, polarity="black").sum())
    (1, 15)
    """
    if polarity not in POLARITIES:
        raise ValueError(f"mask polarity must be one of {POLARITIES}, got {polarity!r}")
    px = np.asarray(pixels)
    if px.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {px.shape}")
    if px.dtype == np.bool_:
        white = px
    else:
        hi = np.iinfo(px.dtype).max if px.dtype.kind in "ui" else 1.0
        white = px > hi / 2
    if polarity == "white":
        return white
    if polarity == "black":
        return ~white
    n_white = int(np.count_nonzero(white))
    return white if n_white <= white.size - n_white else ~white
