"""Shape anomaly score from a small convolutional autoencoder (Keras 3).

Each impurity is cut from its bounding-box slice of the label image, scaled
so that its longer side fills ``fill`` (80 %) of a fixed ``crop_size`` square,
and centred (:func:`impurity_crops`).  A small autoencoder trained to
reconstruct round impurities and to output a blank crop for irregular ones
(``experiments/train_shape_ae.py``) reconstructs each crop; the reconstruction
error (:func:`reconstruction_errors`) is the shape anomaly measure.  The
registry entry ``"shape"`` (column ``shape_score``) min-max normalises it over
the impurities of one scan that are large enough to judge.

Keras is imported only inside the functions that build, load or run the
model, so ``import anomaly`` stays free of TensorFlow/Keras.

Label contract
--------------
The scorer needs the label image the RegionTable describes: ``labels[r, c] ==
region_id`` for every pixel of a region.  This holds for
``labels, _ = data.regions.label_mask(mask)`` followed by
``regions_from_labels(labels)`` with ``min_area_px=1``, and for any label image
passed through ``data.regions.relabel_sequential`` first.  Otherwise pass the
pixel label of each row as ``label_ids``.  The match is checked against
``area_px`` and a mismatch raises a ValueError.
"""

from __future__ import annotations

import functools
import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TYPE_CHECKING

import cv2
import numpy as np

from data.errors import QuantmetError
from data.model_cards import ModelCardError, verify_model_file

from .._geometry import as_boxes, boxes_of

if TYPE_CHECKING:  # annotations only (the module imports them where it uses them)
    import pandas as pd

__all__ = [
    "DEFAULT_WEIGHTS",
    "ERROR_MEASURES",
    "ShapeAEConfig",
    "ShapeAEWeightsError",
    "build_shape_ae",
    "impurity_crops",
    "load_shape_ae",
    "reconstruction_errors",
    "autoencoder_scores",
    "shape_score",
]

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "shape_ae.keras"
ERROR_MEASURES = ("dice", "mse")
_CHUNK_ROWS = 8192  # impurities cropped and predicted per chunk (bounds memory on huge scans)


class ShapeAEWeightsError(QuantmetError, ValueError):
    """The shape autoencoder weights file is missing, corrupt or has the wrong input shape."""


@dataclass(frozen=True)
class ShapeAEConfig:
    """Options of the autoencoder shape score.

    Attributes
    ----------
    weights : str, optional
        Path to a ``.keras`` model; None = the shipped :data:`DEFAULT_WEIGHTS`.
    crop_size : int
        Side of the square crops; must equal the model's input size.
    fill : float
        Fraction of the crop side the longer side of the impurity's bounding box fills.
    min_area_px : int
        Impurities with ``area_px < min_area_px`` score 0 and are not run through the model
        (the model was trained on impurities above 50 px; below ~20 px the crops are blocky).
    batch_size : int
        Crops per forward pass.
    error : {'dice', 'mse'}
        Reconstruction error measure, see :func:`reconstruction_errors`.
    """

    weights: str | None = None
    crop_size: int = 32
    fill: float = 0.8
    min_area_px: int = 20
    batch_size: int = 256
    error: str = "dice"

    def __post_init__(self) -> None:
        if int(self.crop_size) < 8:
            raise ValueError(f"crop_size must be >= 8, got {self.crop_size}")
        if not 0.0 < float(self.fill) <= 1.0:
            raise ValueError(f"fill must be in (0, 1], got {self.fill}")
        if int(self.min_area_px) < 1:
            raise ValueError(f"min_area_px must be >= 1, got {self.min_area_px}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.error not in ERROR_MEASURES:
            raise ValueError(f"error must be one of {ERROR_MEASURES}, got {self.error!r}")


# --------------------------------------------------------------------------- crops


def impurity_crops(
    labels: np.ndarray,
    table: pd.DataFrame,
    *,
    size: int = 32,
    fill: float = 0.8,
    label_ids: np.ndarray | None = None,
) -> np.ndarray:
    """Fixed-size, centred, scale-normalised crops of the impurities of a label image.

    Each object is cut from the bounding-box slice of ``labels`` (never a
    full-image mask), resized with its aspect ratio kept so that the longer
    side of its box spans ``round(fill * size)`` pixels, and centred.
    Enlarging uses bilinear interpolation thresholded at 0.5 (a smooth
    binary outline); shrinking uses pixel-area averaging (edge pixels get
    partial coverage, thin features are kept).

    Parameters
    ----------
    labels : ndarray, shape (M, N), integer
        Label image; pixels of row ``i`` have value ``label_ids[i]``.
    table : pandas.DataFrame
        RegionTable with inclusive ``bbox_rmin, bbox_cmin, bbox_rmax, bbox_cmax``
        and ``region_id`` (and ``area_px``, used to check the labels match).
    size : int
        Side of the output crops.
    fill : float
        Fraction of ``size`` the longer box side fills, in (0, 1].
    label_ids : ndarray, shape (N,), optional
        Pixel label of each row; default ``table["region_id"]`` (see the module's label contract).

    Returns
    -------
    ndarray, shape (N, size, size), float32
        Values in [0, 1]; 1 = impurity.

    Examples
    --------
    >>> from data.regions import regions_from_labels
    >>> lab = np.zeros((20, 30), np.int32); lab[5:9, 2:22] = 1
    >>> c = impurity_crops(lab, regions_from_labels(lab), size=10)
    >>> c.shape, int(c[0].any(axis=0).sum()), int(c[0].any(axis=1).sum())  # 8 cols x 2 rows
    ((1, 10, 10), 8, 2)
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be a 2-D integer array, got {labels.dtype} {labels.shape}")
    size = int(size)
    if size < 2:
        raise ValueError(f"size must be >= 2, got {size}")
    if not 0.0 < float(fill) <= 1.0:
        raise ValueError(f"fill must be in (0, 1], got {fill}")
    n = len(table)
    out = np.zeros((n, size, size), dtype=np.float32)
    if n == 0:
        return out
    boxes = as_boxes(boxes_of(table)).astype(np.int64)
    outside = (boxes[:, :2] < 0).any(axis=1)
    outside |= (boxes[:, 2] >= labels.shape[0]) | (boxes[:, 3] >= labels.shape[1])
    if np.any(outside):
        raise ValueError(f"bounding boxes reach outside the label image of shape {labels.shape}")
    if label_ids is None:
        label_ids = table["region_id"].to_numpy()
    label_ids = np.asarray(label_ids)
    if label_ids.shape != (n,):
        raise ValueError(f"label_ids must have shape ({n},), got {label_ids.shape}")
    areas = table["area_px"].to_numpy() if "area_px" in table else None

    side = float(fill) * size
    for i in range(n):
        r0, c0, r1, c1 = boxes[i]
        obj = (labels[r0 : r1 + 1, c0 : c1 + 1] == label_ids[i]).astype(np.float32)
        count = int(obj.sum())
        if count == 0 or (areas is not None and count != int(areas[i])):
            raise ValueError(
                f"row {i}: label {label_ids[i]} covers {count} px inside its box but area_px is "
                f"{None if areas is None else int(areas[i])}; the label image does not match the "
                "table (label it with data.regions.label_mask / relabel_sequential so that "
                "labels == region_id, or pass label_ids)"
            )
        h, w = obj.shape
        scale = side / max(h, w)
        nh = min(size, max(1, int(round(h * scale))))
        nw = min(size, max(1, int(round(w * scale))))
        if (nh, nw) != (h, w):
            if scale > 1.0:
                obj = cv2.resize(obj, (nw, nh), interpolation=cv2.INTER_LINEAR)
                obj = (obj >= 0.5).astype(np.float32)
                if not obj.any():  # degenerate thin object: keep its nearest-neighbour image
                    obj = np.ones((nh, nw), np.float32)
            else:
                obj = cv2.resize(obj, (nw, nh), interpolation=cv2.INTER_AREA)
        top = (size - nh) // 2
        left = (size - nw) // 2
        out[i, top : top + nh, left : left + nw] = obj
    return out


# --------------------------------------------------------------------------- model


def build_shape_ae(
    *,
    crop_size: int = 32,
    filters: tuple[int, ...] = (16, 32, 64),
    latent_dim: int = 32,
    seed: int | None = None,
) -> Any:
    """A small convolutional autoencoder ``(B, s, s, 1) -> (B, s, s, 1)`` in [0, 1].

    Strided 3x3 convolutions halve the resolution ``len(filters)`` times, a
    dense bottleneck of ``latent_dim`` units, then transposed convolutions
    back up and a sigmoid output.  Built from ``keras.layers`` only, so it
    runs on any Keras 3 backend and saves/loads with ``safe_mode=True``
    without custom objects.

    Parameters
    ----------
    crop_size : int
        Input side; must be divisible by ``2 ** len(filters)``.
    filters : tuple of int
        Channels of the encoder stages (the decoder mirrors them).
    latent_dim : int
        Size of the bottleneck code.
    seed : int, optional
        Seed of the weight initialisers.

    Returns
    -------
    keras.Model
        Uncompiled model named ``shape_ae``.
    """
    import keras  # lazy: Keras
    from keras import layers  # lazy: Keras

    filters = tuple(int(f) for f in filters)
    if not filters or min(filters) < 1:
        raise ValueError(f"filters must be a non-empty tuple of positive ints, got {filters}")
    down = 2 ** len(filters)
    if crop_size % down:
        raise ValueError(f"crop_size {crop_size} must be divisible by 2**len(filters) = {down}")
    if latent_dim < 1:
        raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")

    seeds = itertools.count(1)

    def opts(**kw: Any) -> dict:
        # each layer gets its own initialiser seed (seed + 1, seed + 2, ...)
        k = next(seeds)
        init = keras.initializers.GlorotUniform(seed=None if seed is None else seed + k)
        return {"activation": "relu", "kernel_initializer": init, **kw}

    inp = keras.Input((crop_size, crop_size, 1), name="crop")
    x = inp
    for f in filters:
        x = layers.Conv2D(f, 3, padding="same", **opts())(x)
        x = layers.Conv2D(f, 3, strides=2, padding="same", **opts())(x)
    s = crop_size // down
    x = layers.Flatten()(x)
    x = layers.Dense(latent_dim, name="code", **opts())(x)
    x = layers.Dense(s * s * filters[-1], **opts())(x)
    x = layers.Reshape((s, s, filters[-1]))(x)
    for f in reversed(filters):
        x = layers.Conv2DTranspose(f, 3, strides=2, padding="same", **opts())(x)
    out = layers.Conv2D(1, 3, padding="same", name="recon", **opts(activation="sigmoid"))(x)
    return keras.Model(inp, out, name="shape_ae")


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int) -> Any:
    # mtime in the key: a retrained file at the same path is reloaded, not served stale.
    import keras  # lazy: Keras

    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises many types (ValueError, BadZipFile, OSError, ...)
        raise ShapeAEWeightsError(
            f"cannot load shape autoencoder from {path}: {type(exc).__name__}: {exc}"
        ) from exc
    shape = tuple(model.input_shape)
    square = len(shape) == 4 and shape[1] == shape[2] and shape[3] == 1
    if not square or tuple(model.output_shape) != shape:
        raise ShapeAEWeightsError(
            f"{path} is not a shape autoencoder: input {shape}, output {model.output_shape} "
            "(need (None, s, s, 1) -> (None, s, s, 1))"
        )
    log.info("loaded shape autoencoder %s (%d parameters)", path, model.count_params())
    return model


def load_shape_ae(weights: str | Path | None = None) -> Any:
    """Load (once per process and file version) the shape autoencoder.

    Parameters
    ----------
    weights : str or Path, optional
        ``.keras`` file; None = the shipped :data:`DEFAULT_WEIGHTS`.

    Raises
    ------
    ShapeAEWeightsError
        The file is missing, does not match the sha256 of its model card (the ``.json`` beside
        it), cannot be read as a Keras model with ``safe_mode=True``, or is not a
        ``(s, s, 1) -> (s, s, 1)`` model.
    """
    path = Path(DEFAULT_WEIGHTS if weights is None else weights).expanduser()
    if not path.is_file():
        raise ShapeAEWeightsError(f"shape autoencoder weights not found: {path}")
    path = path.resolve()
    try:
        verify_model_file(path, what="shape autoencoder")
    except ModelCardError as exc:
        raise ShapeAEWeightsError(str(exc)) from None
    return _load_cached(str(path), path.stat().st_mtime_ns)


def _model_size(model: Any) -> int:
    shape = tuple(model.input_shape)
    return int(shape[1])


def reconstruction_errors(
    crops: np.ndarray,
    *,
    model: Any = None,
    batch_size: int = 256,
    error: str = "dice",
) -> np.ndarray:
    """Per-crop reconstruction error of the shape autoencoder.

    Parameters
    ----------
    crops : ndarray, shape (N, s, s)
        Crops from :func:`impurity_crops`, values in [0, 1].
    model : keras.Model, optional
        Autoencoder ``(B, s, s, 1) -> (B, s, s, 1)``; default: the shipped one
        (:func:`load_shape_ae`).
    batch_size : int
        Crops per forward pass.
    error : {'dice', 'mse'}
        ``'dice'``: ``1 - 2 sum(x y) / (sum(x) + sum(y))``, the soft Dice dissimilarity of
        input ``x`` and reconstruction ``y``, in [0, 1].  Independent of how much of the
        crop the object fills, so a thin needle reconstructed as a blank scores as high
        as a blob would (mean squared error would score it near 0).
        ``'mse'``: mean squared pixel error.

    Returns
    -------
    ndarray, shape (N,), float64
    """
    if error not in ERROR_MEASURES:
        raise ValueError(f"error must be one of {ERROR_MEASURES}, got {error!r}")
    x = np.asarray(crops, dtype=np.float32)
    if x.ndim != 3 or x.shape[1] != x.shape[2]:
        raise ValueError(f"crops must have shape (N, s, s), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("crops contain NaN or infinite values")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if x.shape[0] == 0:
        return np.zeros(0)
    model = load_shape_ae() if model is None else model
    if _model_size(model) != x.shape[1]:
        raise ValueError(f"crops are {x.shape[1]} px but the model expects {_model_size(model)} px")
    y = model.predict(x[..., None], batch_size=int(batch_size), verbose=0)
    y = np.asarray(y, dtype=np.float64)
    y = y.reshape(x.shape)
    xd = x.astype(np.float64)
    if error == "mse":
        return ((xd - y) ** 2).mean(axis=(1, 2))
    inter = (xd * y).sum(axis=(1, 2))
    total = xd.sum(axis=(1, 2)) + y.sum(axis=(1, 2))
    return np.clip(1.0 - 2.0 * inter / np.maximum(total, 1e-12), 0.0, 1.0)


# --------------------------------------------------------------------------- scorer


def shape_score(table: pd.DataFrame, cfg: ShapeAEConfig, ctx=None) -> np.ndarray:
    """Scorer ``shape`` (``anomaly.scorers``): :func:`autoencoder_scores` with ``ctx.labels``."""
    return autoencoder_scores(table, cfg, labels=getattr(ctx, "labels", None))


def autoencoder_scores(
    table: pd.DataFrame,
    cfg: ShapeAEConfig,
    *,
    labels: np.ndarray | None = None,
    label_ids: np.ndarray | None = None,
    model: Any = None,
) -> np.ndarray:
    """Autoencoder shape score of each RegionTable row, in [0, 1].

    The reconstruction error of each impurity with ``area_px >= cfg.min_area_px``,
    min-max normalised over those impurities (all equal -> 0); smaller impurities score 0.
    All crops are predicted in batches of ``cfg.batch_size``.

    Parameters
    ----------
    table : pandas.DataFrame
        RegionTable (bbox columns, ``region_id``, ``area_px``).
    cfg : ShapeAEConfig
    labels : ndarray, shape (M, N), integer
        Required: the label image of the scan with ``labels == region_id`` on each region
        (see the module docstring), e.g. ``data.regions.label_mask(mask)[0]``.
    label_ids : ndarray, shape (N,), optional
        Pixel label of each row when it differs from ``region_id``.
    model : keras.Model, optional
        Use this model instead of loading ``cfg.weights`` (tests, callers holding a model).
    """
    if labels is None:
        raise ValueError(
            "the 'shape' scorer needs the scan's label image: call "
            "anomaly.scorers.get_scorer('shape')(table, cfg, ScoreContext(labels=labels)) with "
            "labels[r, c] == region_id"
        )
    n = len(table)
    scores = np.zeros(n)
    if n == 0:
        return scores
    valid = np.flatnonzero(table["area_px"].to_numpy() >= cfg.min_area_px)
    if valid.size == 0:
        return scores
    if model is None:
        model = load_shape_ae(cfg.weights)
    if _model_size(model) != cfg.crop_size:
        raise ValueError(
            f"cfg.crop_size={cfg.crop_size} but the model expects {_model_size(model)} px crops"
        )
    ids = table["region_id"].to_numpy() if label_ids is None else np.asarray(label_ids)
    if ids.shape != (n,):
        raise ValueError(f"label_ids must have shape ({n},), got {ids.shape}")
    err = np.empty(valid.size)
    for start in range(0, valid.size, _CHUNK_ROWS):
        rows = valid[start : start + _CHUNK_ROWS]
        crops = impurity_crops(
            labels, table.iloc[rows], size=cfg.crop_size, fill=cfg.fill, label_ids=ids[rows]
        )
        err[start : start + rows.size] = reconstruction_errors(
            crops, model=model, batch_size=cfg.batch_size, error=cfg.error
        )
    lo, hi = float(err.min()), float(err.max())
    scores[valid] = (err - lo) / (hi - lo) if hi > lo else 0.0
    return scores
