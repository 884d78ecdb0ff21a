"""Shipped U-Net models: offline loading (checked against their model cards) and public predict functions.

Two models live in ``segmentation/weights/``: ``unet_impurities.keras``
(impurities on a raw scan) and ``unet_grains.keras`` (grain boundaries on an
impurity-free / inpainted scan), each with a JSON model card beside it
(``.json``) that records the data, split, config, validation metrics, the
chosen probability threshold, the post-processing and the sha256 of the
weights file.  A model is loaded once per process (:func:`load_model` is
cached), with ``keras.saving.load_model(path, safe_mode=True, compile=False)``
after the sha256 of the file has been checked against its card.

Public functions (kept stable; external checks call them):

- :func:`predict_impurity_mask` ``(pixels) -> bool (M, N)``
- :func:`predict_grain_boundaries` ``(pixels) -> bool (M, N)``, 1-px wide lines

Scans are normalised with :func:`segmentation.tiling.normalize_scan` (median
and inter-quartile range of the whole input, to float32 [0, 1]) and predicted
with overlapping tiles (:func:`segmentation.tiling.predict_tiled`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data.errors import QuantmetError

from .grains import grain_postprocess
from .refine import impurity_postprocess
from .tiling import PredictFn, normalize_scan, predict_tiled, tta_predict_fn

__all__ = [
    "KINDS",
    "WEIGHTS_DIR",
    "InvalidScanError",
    "SegmentationModelError",
    "keras_predict_fn",
    "load_model",
    "model_card",
    "predict_grain_boundaries",
    "predict_impurity_mask",
    "predict_probabilities",
    "sha256_of",
    "tile_multiple",
    "weights_path",
]

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
KINDS: dict[str, str] = {"impurities": "unet_impurities", "grains": "unet_grains"}


class SegmentationModelError(QuantmetError, ValueError):
    """A model file or its card is missing, corrupt or inconsistent."""


class InvalidScanError(QuantmetError, ValueError):
    """The image given to a predict function cannot be segmented (shape, dtype, NaN, constant)."""


def weights_path(kind: str, weights: str | Path | None = None) -> Path:
    """The ``.keras`` file of a model kind (``'impurities'`` or ``'grains'``), or ``weights`` itself."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(KINDS)}")
    return Path(weights) if weights is not None else WEIGHTS_DIR / f"{KINDS[kind]}.keras"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_card(model_file: Path) -> dict:
    card_file = model_file.with_suffix(".json")
    if not model_file.is_file():
        raise SegmentationModelError(
            f"model file {model_file} not found; train it with "
            "python -m experiments.run +exp=train_unet_impurities (or _grains) train.install=true"
        )
    if not card_file.is_file():
        raise SegmentationModelError(f"model card {card_file} not found beside {model_file.name}")
    try:
        card = json.loads(card_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SegmentationModelError(f"model card {card_file} is not valid JSON: {exc}") from exc
    for key in ("sha256", "threshold", "input"):
        if key not in card:
            raise SegmentationModelError(f"model card {card_file} has no {key!r} entry")
    return card


def model_card(kind: str, weights: str | Path | None = None) -> dict:
    """The model card (JSON beside the weights) of a model, as a dict."""
    return _read_card(weights_path(kind, weights))


@functools.lru_cache(maxsize=8)
def _load(path_str: str, stamp: tuple[int, int]) -> tuple[Any, dict]:
    path = Path(path_str)
    card = _read_card(path)
    digest = sha256_of(path)
    if digest != card["sha256"]:
        raise SegmentationModelError(
            f"{path.name} does not match its model card: sha256 {digest[:12]}... "
            f"!= {str(card['sha256'])[:12]}... (weights replaced or corrupt)"
        )
    import keras

    from . import losses  # noqa: F401  (registers the custom losses for deserialisation)

    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # keras raises many types for corrupt archives
        raise SegmentationModelError(f"cannot load model {path}: {exc}") from exc
    log.info("loaded %s (%d parameters)", path.name, model.count_params())
    return model, card


def load_model(kind: str, weights: str | Path | None = None) -> tuple[Any, dict]:
    """Load a model and its card once per process (cached on the path and the files' times).

    Raises
    ------
    SegmentationModelError
        Missing or corrupt file, missing card, or sha256 mismatch with the card.
    """
    path = weights_path(kind, weights).resolve()
    if not path.is_file():
        _read_card(path)  # raises with the full message
    card = path.with_suffix(".json")
    stamp = (path.stat().st_mtime_ns, card.stat().st_mtime_ns if card.is_file() else 0)
    return _load(str(path), stamp)


def keras_predict_fn(model: Any) -> PredictFn:
    """Wrap a Keras model as a tiling ``predict_fn`` (float32 ``(B, t, t, 1)`` -> probabilities)."""

    def fn(batch: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(batch))

    return fn


def _check_pixels(pixels: Any) -> np.ndarray:
    a = np.asarray(pixels)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise InvalidScanError(
            f"expected a 2-D gray scan (M, N), got shape {a.shape}; "
            "convert colour images to gray first (data.to_gray)"
        )
    if min(a.shape) < 1:
        raise InvalidScanError(f"empty image of shape {a.shape}")
    if a.dtype == np.bool_ or a.dtype.kind not in "uif":
        raise InvalidScanError(f"unsupported image dtype {a.dtype}; expected uint8 or uint16")
    return a


def tile_multiple(card: dict) -> int:
    """The multiple a tile side must be for the U-Net of ``card``: ``2**depth`` (depth 4 when unrecorded)."""
    return 2 ** (int(card.get("config", {}).get("unet", {}).get("depth", 0)) or 4)


def predict_probabilities(
    pixels: np.ndarray,
    kind: str,
    *,
    tile: int | str = "auto",
    overlap: int = 32,
    batch_size: int = 8,
    scales: Sequence[float] = (1.0,),
    tta: int = 1,
    weights: str | Path | None = None,
    backend: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    streams: int | None = None,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """Per-pixel probabilities of a shipped model on a whole scan, and the model card.

    Parameters
    ----------
    pixels : ndarray, shape (M, N)
        uint8 or uint16 gray scan (any size; smaller than a tile is padded).
    kind : {'impurities', 'grains'}
    tile, overlap, batch_size, scales
        See :func:`segmentation.tiling.predict_tiled`; ``tile='auto'`` (the default) plans the
        square tile side with the fewest pixels to compute (:func:`segmentation.tiling.plan_tile`).
    tta : {1, 2, 4, 8}
        Test-time augmentation: average over this many flips/rotations of
        every tile (:func:`segmentation.tiling.tta_predict_fn`); costs ``tta`` x the time.
    weights : path, optional
        Another ``.keras`` file (with its card beside it) instead of the shipped one.
    backend, precision, threads, streams
        Inference backend (:func:`segmentation.backends.make_predict_fn`): ``'auto'`` runs the
        fastest installed one (OpenVINO bf16 where the CPU has bf16 units, ONNX Runtime, Keras)
        whose verified ONNX export is there; :func:`segmentation.backends.last_backends` names it.
    exclude : ndarray of bool, shape (M, N), optional
        Pixels left out of the normalisation's median and IQR (a data bar, a scale bar, outside the
        ROI; :func:`segmentation.tiling.normalize_scan`); they are still predicted.

    Returns
    -------
    prob : ndarray, shape (M, N), float32
    card : dict
    """
    a = _check_pixels(pixels)
    try:
        x = normalize_scan(a, exclude=exclude)
    except ValueError as exc:
        raise InvalidScanError(str(exc)) from exc
    model, card = load_model(kind, weights)
    from .backends import make_predict_fn

    fn, _ = make_predict_fn(model, weights_path(kind, weights).resolve(), card, backend=backend,
                            precision=precision, threads=threads, streams=streams)
    prob = predict_tiled(
        x,
        tta_predict_fn(fn, transforms=int(tta)),
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
        scales=scales,
        multiple=tile_multiple(card),
    )
    return prob, card


def _threshold(threshold: float | None, card: dict) -> float:
    t = float(card["threshold"]) if threshold is None else float(threshold)
    if not 0.0 < t < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {t}")
    return t


def predict_impurity_mask(
    pixels: np.ndarray,
    *,
    threshold: float | None = None,
    min_area_px: int | None = None,
    extent_threshold: float | None = None,
    depth_fraction: float | None = None,
    depth_smooth_sigma: float | None = None,
    tile: int | str = "auto",
    overlap: int = 32,
    batch_size: int = 8,
    scales: Sequence[float] = (1.0,),
    tta: int = 1,
    weights: str | Path | None = None,
    backend: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    streams: int | None = None,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Impurity mask of a raw gray scan from the shipped U-Net.

    Parameters
    ----------
    pixels : ndarray, shape (M, N)
        uint8 or uint16 gray scan.
    threshold : float, optional
        Probability threshold; None = the one chosen on the tuning scans (model card).
    min_area_px : int, optional
        Objects below this size are dropped; None = the card's value.
    extent_threshold : float, optional
        Two-level masks (:func:`segmentation.tiling.prob_to_mask`): objects are
        found at ``threshold`` and each keeps its pixels above this (or above
        0.6 x its own peak, if lower); None = the card's ``postprocess`` value
        (absent: one level).  Gives a closer impurity area fraction.
    depth_fraction : float, optional
        Outlines from the scan (:func:`segmentation.refine.depth_extent`):
        every object keeps its pixels darker than this fraction of its depth
        below its surrounding ring; None = the card's ``postprocess`` value
        (absent: off), 0 = off.
    depth_smooth_sigma : float, optional
        Smoothing of the scan for ``depth_fraction``; None = the card's value (1.0).
    tile, overlap, batch_size, scales, tta, weights, backend, precision, threads, streams, exclude
        See :func:`predict_probabilities`.

    Returns
    -------
    ndarray of bool, shape (M, N)

    Raises
    ------
    InvalidScanError
        Wrong shape or channel count, unsupported dtype, NaN or constant image.
    SegmentationModelError
        Missing or corrupt weights, or weights that do not match their card.
    """
    prob, card = predict_probabilities(
        pixels, "impurities", tile=tile, overlap=overlap, batch_size=batch_size, scales=scales,
        tta=tta, weights=weights, backend=backend, precision=precision, threads=threads,
        streams=streams, exclude=exclude,
    )
    post = card.get("postprocess", {})
    area = int(post.get("min_area_px", 0)) if min_area_px is None else int(min_area_px)
    extent = post.get("extent_threshold") if extent_threshold is None else extent_threshold
    depth = post.get("depth_fraction") if depth_fraction is None else depth_fraction
    sigma = post.get("depth_smooth_sigma", 1.0) if depth_smooth_sigma is None else depth_smooth_sigma
    return impurity_postprocess(
        prob, _check_pixels(pixels), _threshold(threshold, card), min_area_px=area,
        extent_threshold=None if extent is None else float(extent),
        depth_fraction=float(depth) if depth else None, depth_smooth_sigma=float(sigma),
    )


def predict_grain_boundaries(
    pixels: np.ndarray,
    *,
    threshold: float | None = None,
    min_length_px: int | None = None,
    thin: bool = True,
    high_threshold: float | None = None,
    spur_length_px: int | None = None,
    min_mean_prob: float | None = None,
    tile: int | str = "auto",
    overlap: int = 32,
    batch_size: int = 8,
    scales: Sequence[float] = (1.0,),
    tta: int = 1,
    weights: str | Path | None = None,
    backend: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    streams: int | None = None,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Grain-boundary mask of an impurity-free (inpainted) gray scan from the shipped U-Net.

    Parameters
    ----------
    pixels : ndarray, shape (M, N)
        uint8 or uint16 gray scan without impurities (inpainted).
    threshold : float, optional
        Probability threshold; None = the card's (chosen on the tuning regions).
    min_length_px : int, optional
        Skeleton pieces with fewer pixels are dropped; None = the card's value.
    thin : bool
        Thin the thresholded mask to 1-px lines (then cleaned); False returns
        the thresholded mask as is.
    high_threshold, spur_length_px, min_mean_prob : optional
        Post-processing of :func:`segmentation.grains.grain_postprocess`
        (hysteresis, dangling spurs, weak segments); None = the card's
        ``postprocess`` values (absent: off).
    tile, overlap, batch_size, scales, tta, weights, backend, precision, threads, streams, exclude
        See :func:`predict_probabilities`.

    Returns
    -------
    ndarray of bool, shape (M, N)

    Raises
    ------
    InvalidScanError, SegmentationModelError
        As :func:`predict_impurity_mask`.
    """
    prob, card = predict_probabilities(
        pixels, "grains", tile=tile, overlap=overlap, batch_size=batch_size, scales=scales,
        tta=tta, weights=weights, backend=backend, precision=precision, threads=threads,
        streams=streams, exclude=exclude,
    )
    post = card.get("postprocess", {})

    def pick(value, key, default):
        return post.get(key, default) if value is None else value

    return grain_postprocess(
        prob, _threshold(threshold, card), thin=thin,
        high_threshold=pick(high_threshold, "high_threshold", None),
        min_length_px=int(pick(min_length_px, "min_length_px", 0)),
        spur_length_px=int(pick(spur_length_px, "spur_length_px", 0)),
        min_mean_prob=float(pick(min_mean_prob, "min_mean_prob", 0.0)),
    )
