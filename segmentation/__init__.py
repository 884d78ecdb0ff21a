"""Impurity and grain-boundary segmentation: classical (threshold + watershed) and U-Net (Keras 3).

The classical path imports no Keras.  The U-Net functions are imported lazily
(``segmentation.predict_impurity_mask`` loads Keras on first use).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .classical import ClassicalConfig, segment_impurities, split_touching

__all__ = [
    "ClassicalConfig",
    "make_segmenter",
    "predict_grain_boundaries",
    "predict_impurity_mask",
    "segment_impurities",
    "split_touching",
]

_LAZY = {"predict_impurity_mask": "models", "predict_grain_boundaries": "models"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_segmenter(method: str, options: Mapping[str, Any] | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function ``(pixels, exclude=None) -> int label image`` (0 = matrix) for the configured method.

    ``method='classical'`` uses :func:`segment_impurities` with ``ClassicalConfig(**options)``
    (``exclude`` is not used);
    ``method='unet'`` thresholds the shipped impurity U-Net and splits touching
    impurities with the watershed (option ``watershed_min_distance``, 0 = no split);
    its model is loaded here, so a missing or corrupt weight file is an error now.
    ``exclude`` (bool, the scan's shape): pixels left out of the U-Net's input normalisation
    (a burned-in data bar, outside the ROI); the caller drops what is found there.
    """
    options = dict(options or {})
    if method == "classical":
        cfg = ClassicalConfig(**options)
        return lambda pixels, exclude=None: segment_impurities(pixels, cfg)
    if method == "unet":
        from . import models

        min_distance = int(options.pop("watershed_min_distance", 4))
        models.load_model("impurities", options.get("weights"))  # cached: predictions reuse it

        def _unet(pixels: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
            mask = models.predict_impurity_mask(pixels, exclude=exclude, **options)
            if min_distance > 0:
                return split_touching(mask, min_distance=min_distance)
            from scipy import ndimage

            return ndimage.label(mask, structure=np.ones((3, 3)))[0].astype(np.int32)

        return _unet
    raise ValueError(f"unknown segmentation method {method!r}; expected 'classical' or 'unet'")
