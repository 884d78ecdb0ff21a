"""Generative inpainting of gray micrographs: a small gated-convolution network (Keras 3).

Architecture (:func:`build_inpaint_net`), coarse-to-fine: a smooth pull-push
fill of the holes (:class:`PullPushFill`, multi-scale mask-weighted averages,
no weights) is the coarse estimate; a fully convolutional encoder-decoder of
gated convolutions (Yu et al., "Free-form image inpainting with gated
convolution", ICCV 2019: ``features * sigmoid(gate)``, so the network learns
which pixels are valid) refines it: dilated gated convolutions at 1/4
resolution (grain structure), then 1/2 and full resolution with skip
connections (texture), predicting a residual over the coarse fill.  Built
from ``keras.layers`` / ``keras.ops`` only (one registered, serializable
custom layer; no ``tf.*``), so it saves and loads with ``safe_mode=True`` on
any Keras 3 backend.

Input ``(B, H, W, 2)``: the scan standardised by the mean and standard
deviation of its known pixels with the holes set to 0, and the hole mask
(1 = hole); ``H`` and ``W`` divisible by 16.  Output ``(B, H, W, 1)``: the
standardised scan; only its hole pixels are used.

Training (``experiments/train_inpainting.py``) is self-supervised on
impurity-free patches of the development scans with random holes; the loss
:class:`InpaintLoss` is a registered, serializable Keras loss (L1 inside and
outside the holes + L1 of the image gradients around the holes + a local
texture-energy term).

Inference (:func:`inpaint_generative`) is tiled: only the tiles that contain
holes are run, each with ``margin`` pixels of (mirrored at the border)
context, ``batch_size`` tiles per forward pass, and only the tile cores'
hole pixels are written, so memory stays bounded on huge scans.
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from data.errors import QuantmetError

from ._weights import resolve_weights
from .classical import composite, hole_tiles

__all__ = [
    "InpaintLoss",
    "InpaintNetWeightsError",
    "PullPushFill",
    "build_inpaint_net",
    "inpaint_generative",
    "load_inpaint_net",
    "model_inputs",
    "standardise",
]

log = logging.getLogger(__name__)

_LEVELS = 4  # pull-push pyramid levels
_MULTIPLE = 2**_LEVELS  # input sides must be divisible by this
_STAT_SAMPLES = 4_000_000  # known pixels sampled for the standardisation statistics


class InpaintNetWeightsError(QuantmetError, ValueError):
    """The inpainting network file is missing, corrupt or not a (H, W, 2) -> (H, W, 1) model."""


# --------------------------------------------------------------------------- model


def _gated(x, filters: int, kernel: int, *, name: str, strides: int = 1, dilation: int = 1):
    """Gated convolution from standard layers: ELU(conv_f(x)) * sigmoid(conv_g(x))."""
    f = layers.Conv2D(filters, kernel, strides=strides, dilation_rate=dilation, padding="same",
                      activation="elu", name=f"{name}_f")(x)
    g = layers.Conv2D(filters, kernel, strides=strides, dilation_rate=dilation, padding="same",
                      activation="sigmoid", name=f"{name}_g")(x)
    return layers.Multiply(name=name)([f, g])


@keras.saving.register_keras_serializable(package="quantmet")
class PullPushFill(layers.Layer):
    """Smooth hole fill by pull-push (Gortler et al. 1996), from ``keras.ops`` only.

    Input ``(B, H, W, 2)`` = [values with holes zeroed, hole mask]; H, W divisible by
    ``2 ** levels``.  Pull: a pyramid of mask-weighted 2x2 averages; push: from the
    coarsest level down, each level keeps its own average where enough of its block is
    known and takes the (bilinearly upsampled) coarser fill elsewhere.  Known pixels
    come back unchanged.  Output ``(B, H, W, 1)``.

    Parameters
    ----------
    levels : int
        Pyramid levels (the fill reaches ``2 ** levels`` px into a hole at the coarsest level).
    """

    def __init__(self, levels: int = 4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.levels = int(levels)
        self.up = [layers.UpSampling2D(2, interpolation="bilinear") for _ in range(self.levels)]

    def build(self, input_shape):
        for up in self.up:  # stateless; built here so Keras knows the layer is complete
            up.build((None, None, None, 1))
        self.built = True

    def call(self, inputs):
        eps = 1e-6
        known = 1.0 - inputs[..., 1:2]
        xs, vs = [inputs[..., 0:1] * known], [known]
        for _ in range(self.levels):
            xs.append(ops.average_pool(xs[-1], 2, strides=2, padding="valid"))
            vs.append(ops.average_pool(vs[-1], 2, strides=2, padding="valid"))
        fill = xs[-1] / (vs[-1] + eps)
        for lev in reversed(range(self.levels)):
            up = self.up[lev](fill)
            conf = ops.minimum(2.0 * vs[lev], 1.0)
            fill = conf * (xs[lev] / (vs[lev] + eps)) + (1.0 - conf) * up
        return fill

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 1)

    def get_config(self) -> dict:
        return {**super().get_config(), "levels": self.levels}


def build_inpaint_net(
    *, width: int = 16, coarse_dilations: tuple[int, ...] = (2, 4, 8), seed: int = 0
) -> keras.Model:
    """Build the (uncompiled) inpainting network.

    Coarse-to-fine: a smooth pull-push fill (:class:`PullPushFill`, no weights) is the
    coarse estimate; a gated-convolution encoder-decoder (coarse stage at 1/4 resolution
    with dilated convolutions, fine stages at 1/2 and full resolution with skips) sees
    the masked scan, the mask and the coarse fill and predicts a residual over the
    coarse fill (initialised to zero, so training starts from the smooth fill).

    Parameters
    ----------
    width : int
        Channels at full resolution; 2x at 1/2, 3x at 1/4 resolution.
    coarse_dilations : tuple of int
        Dilation rates of the gated convolutions at 1/4 resolution.
    seed : int
        Seed of the weight initialisation.

    Returns
    -------
    keras.Model
        ``(B, H, W, 2) -> (B, H, W, 1)``, H and W divisible by 16.
    """
    keras.utils.set_random_seed(seed)
    w1, w2, w3 = width, 2 * width, 3 * width
    inp = keras.Input((None, None, 2), name="masked_and_mask")
    smooth = PullPushFill(levels=_LEVELS, name="pull_push")(inp)
    x0 = layers.Concatenate(name="with_fill")([inp, smooth])
    e1 = _gated(x0, w1, 5, name="enc1")  # full resolution
    e2 = _gated(e1, w2, 3, strides=2, name="enc2")  # 1/2
    x = _gated(e2, w3, 3, strides=2, name="enc3")  # 1/4
    for i, d in enumerate(coarse_dilations):  # coarse stage: large receptive field, residual
        g = _gated(x, w3, 3, dilation=int(d), name=f"coarse{i}")
        x = layers.Add(name=f"coarse{i}_res")([x, g])
    x = layers.UpSampling2D(2, interpolation="bilinear", name="up2")(x)
    x = layers.Concatenate(name="skip2")([x, e2])
    x = _gated(x, w2, 3, name="fine2")  # fine stage at 1/2
    x = layers.UpSampling2D(2, interpolation="bilinear", name="up1")(x)
    x = layers.Concatenate(name="skip1")([x, e1])
    x = _gated(x, w1, 3, name="fine1")  # fine stage at full resolution
    residual = layers.Conv2D(1, 3, padding="same", kernel_initializer="zeros", name="residual")(x)
    out = layers.Add(name="image")([smooth, residual])
    return keras.Model(inp, out, name="inpaint_net")


@keras.saving.register_keras_serializable(package="quantmet")
class InpaintLoss(keras.losses.Loss):
    """Self-supervised inpainting loss; ``y_true = concat(truth, hole)`` on the channel axis.

    Per sample: ``hole_weight * L1(holes) + valid_weight * L1(valid pixels)
    + gradient_weight * L1(image gradients of the composite, near holes)
    + texture_weight * L1(local standard deviation of the composite, in holes)``.
    The composite is the truth outside the holes and the prediction inside,
    as at inference time.

    Parameters
    ----------
    hole_weight, valid_weight, gradient_weight, texture_weight : float
    """

    def __init__(
        self,
        hole_weight: float = 6.0,
        valid_weight: float = 1.0,
        gradient_weight: float = 2.0,
        texture_weight: float = 0.5,
        name: str = "inpaint_loss",
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.hole_weight = float(hole_weight)
        self.valid_weight = float(valid_weight)
        self.gradient_weight = float(gradient_weight)
        self.texture_weight = float(texture_weight)

    def call(self, y_true, y_pred):
        truth = y_true[..., 0:1]
        hole = y_true[..., 1:2]
        eps = 1e-6
        err = ops.abs(y_pred - truth)
        n_hole = ops.sum(hole, axis=(1, 2, 3)) + eps
        l_hole = ops.sum(err * hole, axis=(1, 2, 3)) / n_hole
        n_valid = ops.sum(1 - hole, axis=(1, 2, 3)) + eps
        l_valid = ops.sum(err * (1 - hole), axis=(1, 2, 3)) / n_valid
        comp = truth * (1 - hole) + y_pred * hole
        # image gradients wherever one of the two pixels is a hole
        dr_c, dr_t = comp[:, 1:] - comp[:, :-1], truth[:, 1:] - truth[:, :-1]
        dc_c, dc_t = comp[:, :, 1:] - comp[:, :, :-1], truth[:, :, 1:] - truth[:, :, :-1]
        mr = ops.maximum(hole[:, 1:], hole[:, :-1])
        mc = ops.maximum(hole[:, :, 1:], hole[:, :, :-1])
        axes = (1, 2, 3)
        grad_err = ops.sum(ops.abs(dr_c - dr_t) * mr, axis=axes) + ops.sum(
            ops.abs(dc_c - dc_t) * mc, axis=axes
        )
        l_grad = grad_err / (ops.sum(mr, axis=axes) + ops.sum(mc, axis=axes) + eps)
        loss = (
            self.hole_weight * l_hole
            + self.valid_weight * l_valid
            + self.gradient_weight * l_grad
        )
        if self.texture_weight > 0:
            # texture energy: local (3x3) standard deviation of composite vs truth inside the holes
            def local_std(v):
                mean = ops.average_pool(v, 3, strides=1, padding="same")
                sq = ops.average_pool(v * v, 3, strides=1, padding="same")
                return ops.sqrt(ops.maximum(sq - mean * mean, 0.0) + eps)

            tex_err = ops.abs(local_std(comp) - local_std(truth)) * hole
            l_tex = ops.sum(tex_err, axis=(1, 2, 3)) / n_hole
            loss = loss + self.texture_weight * l_tex
        return loss

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "hole_weight": self.hole_weight,
            "valid_weight": self.valid_weight,
            "gradient_weight": self.gradient_weight,
            "texture_weight": self.texture_weight,
        }


# --------------------------------------------------------------------------- loading


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int) -> Any:
    # mtime in the key: a retrained file at the same path is reloaded, not served stale.
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises many types (ValueError, BadZipFile, OSError, ...)
        raise InpaintNetWeightsError(
            f"cannot load inpainting network from {path}: {type(exc).__name__}: {exc}"
        ) from exc
    shape_in, shape_out = tuple(model.input_shape), tuple(model.output_shape)
    if len(shape_in) != 4 or shape_in[-1] != 2 or len(shape_out) != 4 or shape_out[-1] != 1:
        raise InpaintNetWeightsError(
            f"{path} is not a (H, W, 2) -> (H, W, 1) model: {shape_in} -> {shape_out}"
        )
    log.info("loaded inpainting network %s (%d parameters)", path, model.count_params())
    return model


def load_inpaint_net(weights: str | Path | None = None) -> Any:
    """Load (once per process and file version) the inpainting network.

    Parameters
    ----------
    weights : str or Path, optional
        ``.keras`` file; None = the shipped ``inpainting/weights/inpaint_net.keras``.

    Raises
    ------
    InpaintNetWeightsError
        Missing or unreadable file, a file that does not match the sha256 of its model card,
        or a wrong input/output shape.
    """
    path = resolve_weights(weights)
    if not path.is_file():
        raise InpaintNetWeightsError(
            f"inpainting network weights not found: {path} "
            "(train them with: python -m experiments.run +exp=train_inpainting train.install=true)"
        )
    from data.model_cards import ModelCardError, verify_model_file

    try:
        verify_model_file(path, what="inpainting network")
    except ModelCardError as exc:
        raise InpaintNetWeightsError(str(exc)) from None
    return _load_cached(str(path.resolve()), path.stat().st_mtime_ns)


# --------------------------------------------------------------------------- inference


def standardise(pixels: np.ndarray, hole: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the known pixels (a strided subsample on huge images)."""
    step = max(1, int(math.sqrt(pixels.size / _STAT_SAMPLES)))
    p, h = pixels[::step, ::step], hole[::step, ::step]
    known = p[~h].astype(np.float64)
    if known.size == 0:  # the subsample missed the few known pixels
        known = pixels[~hole].astype(np.float64)
    mu, sigma = float(known.mean()), float(known.std())
    return mu, sigma if sigma > 1e-6 else 1.0


def model_inputs(z: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Network input ``(..., 2)`` float32: standardised pixels (holes zeroed) and the hole mask."""
    h = hole.astype(np.float32)
    return np.stack([np.where(hole, 0.0, z).astype(np.float32), h], axis=-1)


def _window(arr: np.ndarray, r0: int, c0: int, sh: int, sw: int) -> np.ndarray:
    """``arr[r0:r0+sh, c0:c0+sw]`` with the parts outside the image mirrored in."""
    m, n = arr.shape
    a, b = max(r0, 0), max(c0, 0)
    e, f = min(r0 + sh, m), min(c0 + sw, n)
    win = arr[a:e, b:f]
    pad = ((a - r0, r0 + sh - e), (b - c0, c0 + sw - f))
    if any(p for pp in pad for p in pp):
        win = np.pad(win, pad, mode="symmetric")
    return win


def inpaint_generative(
    pixels: np.ndarray,
    hole: np.ndarray,
    *,
    weights: str | Path | None = None,
    tile_size: int = 512,
    margin: int = 32,
    batch_size: int = 4,
) -> np.ndarray:
    """Fill validated holes with the network, tile by tile.

    Parameters
    ----------
    pixels : ndarray, shape (M, N), real dtype
    hole : ndarray of bool, shape (M, N)
        Already dilated; not all True.
    weights : str or Path, optional
        See :func:`load_inpaint_net`.
    tile_size : int
        Side of the tile cores (rounded up to a multiple of 16; not larger than
        the image, rounded up to a multiple of 16).
    margin : int
        Context pixels on each side of a core (rounded up to a multiple of 16).
    batch_size : int
        Tiles per forward pass.

    Returns
    -------
    ndarray, shape (M, N), dtype of ``pixels``
        Equal to ``pixels`` outside ``hole``.
    """
    model = load_inpaint_net(weights)
    m, n = pixels.shape

    def up(v: int) -> int:
        return -(-int(v) // _MULTIPLE) * _MULTIPLE

    th, tw = min(up(tile_size), up(m)), min(up(tile_size), up(n))
    pad = up(margin)
    mu, sigma = standardise(pixels, hole)
    # tiles on a (th, tw) grid: reuse hole_tiles on a square grid when th == tw, else per-axis grid
    if th == tw:
        origins = hole_tiles(hole, th)
    else:
        rows, cols = np.arange(0, m, th), np.arange(0, n, tw)
        per_row = np.add.reduceat(hole.view(np.uint8), rows, axis=0, dtype=np.int64)
        counts = np.add.reduceat(per_row, cols, axis=1)
        ti, tj = np.nonzero(counts)
        origins = np.stack([rows[ti], cols[tj]], axis=1)
    out = pixels.copy()
    sh, sw = th + 2 * pad, tw + 2 * pad
    for start in range(0, len(origins), batch_size):
        chunk = origins[start : start + batch_size]
        batch = np.empty((len(chunk), sh, sw, 2), np.float32)
        for k, (r0, c0) in enumerate(chunk):  # a loop over tiles, never over pixels
            win = _window(pixels, r0 - pad, c0 - pad, sh, sw).astype(np.float32)
            win_hole = _window(hole, r0 - pad, c0 - pad, sh, sw)
            batch[k] = model_inputs((win - mu) / sigma, win_hole)
        pred = np.asarray(keras.ops.convert_to_numpy(model(batch, training=False)))[..., 0]
        for k, (r0, c0) in enumerate(chunk):
            r1, c1 = min(r0 + th, m), min(c0 + tw, n)
            core = pred[k, pad : pad + r1 - r0, pad : pad + c1 - c0]
            values = core * np.float32(sigma) + np.float32(mu)
            out[r0:r1, c0:c1] = composite(pixels[r0:r1, c0:c1], hole[r0:r1, c0:c1], values)
    return out
