"""A small U-Net for 1-channel micrographs, built from ``keras.layers`` / ``keras.ops`` only.

The network is fully convolutional: it accepts any input of shape
``(B, H, W, 1)`` with ``H`` and ``W`` divisible by ``2 ** depth`` and returns
per-pixel probabilities of the same spatial size.  Nothing here uses ``tf.*``,
so the model runs on any Keras 3 backend (TensorFlow, JAX, PyTorch).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
from keras import layers

__all__ = ["UNetConfig", "build_unet", "count_params", "forward_flops"]


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :func:`build_unet`.

    Attributes
    ----------
    depth : int
        Number of 2x down-sampling steps (the bottleneck works at ``1 / 2**depth``
        resolution).  Input sides must be divisible by ``2 ** depth``.
    base_width : int
        Filters of the first level; each level down doubles them.
    batch_norm : bool
        Batch normalisation after every 3x3 convolution.
    dropout : float
        Spatial dropout rate in the bottleneck (0 = off).
    convs_per_level : int
        3x3 convolutions per level (encoder and decoder).
    bn_momentum : float
        Momentum of the batch-norm moving statistics (0.9 settles within a
        few hundred steps, so short trainings get usable inference statistics).
    """

    depth: int = 3
    base_width: int = 12
    batch_norm: bool = True
    dropout: float = 0.0
    convs_per_level: int = 2
    bn_momentum: float = 0.9

    def __post_init__(self) -> None:
        if not 1 <= int(self.depth) <= 6:
            raise ValueError(f"depth must be in 1..6, got {self.depth}")
        if int(self.base_width) < 1:
            raise ValueError(f"base_width must be >= 1, got {self.base_width}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < float(self.bn_momentum) < 1.0:
            raise ValueError(f"bn_momentum must be in (0, 1), got {self.bn_momentum}")
        if int(self.convs_per_level) < 1:
            raise ValueError(f"convs_per_level must be >= 1, got {self.convs_per_level}")

    def to_dict(self) -> dict:
        """Plain dict (for model cards)."""
        return asdict(self)


def _conv_block(x, filters: int, cfg: UNetConfig, name: str):
    for i in range(cfg.convs_per_level):
        x = layers.Conv2D(
            filters, 3, padding="same", use_bias=not cfg.batch_norm, name=f"{name}_conv{i}"
        )(x)
        if cfg.batch_norm:
            x = layers.BatchNormalization(momentum=cfg.bn_momentum, name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def build_unet(cfg: UNetConfig | None = None, *, name: str = "unet", classes: int = 1) -> keras.Model:
    """Build an (uncompiled) U-Net with a sigmoid output (or a softmax over ``classes``).

    Parameters
    ----------
    cfg : UNetConfig, optional
        Architecture; defaults to ``UNetConfig()``.
    name : str
        Model name.
    classes : int
        1 (default): one sigmoid probability per pixel (the binary models, unchanged);
        ``>= 2``: a softmax over ``classes`` channels (the multi-class phase model).

    Returns
    -------
    keras.Model
        Maps float32 ``(B, H, W, 1)`` in [0, 1] to probabilities ``(B, H, W, classes)``.

    Examples
    --------
    >>> m = build_unet(UNetConfig(depth=2, base_width=4))
    >>> m.output_shape
    (None, None, None, 1)
    """
    cfg = cfg or UNetConfig()
    if isinstance(classes, bool) or int(classes) < 1:
        raise ValueError(f"classes must be an int >= 1, got {classes!r}")
    inputs = keras.Input(shape=(None, None, 1), name="image")
    x = inputs
    skips = []
    for level in range(cfg.depth):
        x = _conv_block(x, cfg.base_width * 2**level, cfg, f"enc{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = _conv_block(x, cfg.base_width * 2**cfg.depth, cfg, "bottleneck")
    if cfg.dropout > 0:
        x = layers.SpatialDropout2D(cfg.dropout, name="bottleneck_dropout")(x)
    for level in reversed(range(cfg.depth)):
        filters = cfg.base_width * 2**level
        x = layers.Conv2DTranspose(filters, 2, strides=2, name=f"up{level}")(x)
        x = layers.Concatenate(name=f"concat{level}")([x, skips[level]])
        x = _conv_block(x, filters, cfg, f"dec{level}")
    if int(classes) == 1:
        outputs = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="prob")(x)
    else:
        outputs = layers.Conv2D(int(classes), 1, activation="softmax", dtype="float32", name="prob")(x)
    return keras.Model(inputs, outputs, name=name)


def count_params(model: keras.Model) -> int:
    """Total number of weights (trainable and not) of a model."""
    return int(sum(int(w.numpy().size) for w in model.weights))


def forward_flops(model: keras.Model, height: int, width: int) -> dict:
    """Floating-point operations of one forward pass on a ``(1, height, width, C)`` input, from the layers.

    Walks the functional graph in layer order and propagates the spatial size:
    a convolution costs ``2 * H_out * W_out * k_h * k_w * C_in * C_out`` (a multiply and
    an add per weight and output pixel; transposed convolutions are counted on
    their input pixels, ``2 * H_in * W_in * k_h * k_w * C_in * C_out``, the same work),
    plus one add per output for a bias; batch norm (2 per element, folded away by
    the ONNX export), activations (1), pooling (``k_h k_w - 1`` comparisons per output)
    and concatenations (0) are counted apart as ``elementwise``.

    Parameters
    ----------
    model : keras.Model
        A functional model of Conv2D / Conv2DTranspose / BatchNormalization /
        Activation / MaxPooling2D / Concatenate / dropout layers (e.g. :func:`build_unet`).
    height, width : int
        Input size (divisible by ``2 ** depth``).

    Returns
    -------
    dict
        ``conv`` (FLOPs of the convolutions), ``elementwise``, ``total`` and
        ``per_pixel`` (total / (height * width)); ints except ``per_pixel``.

    Raises
    ------
    ValueError
        Non-positive size, or a layer type that is not counted.

    Examples
    --------
    >>> m = build_unet(UNetConfig(depth=1, base_width=2, batch_norm=False, convs_per_level=1))
    >>> forward_flops(m, 8, 8)["conv"]  # 2432 + 2368 + 1152 + 9344 + 320 (3x3 1->2, 3x3 2->4, up, 3x3 4->2, 1x1)
    15616
    """
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"height and width must be >= 1, got {height} x {width}")
    shapes: dict[str, tuple[int, int, int]] = {}
    conv = elem = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            shapes[layer.name] = (int(height), int(width), int(layer.batch_shape[-1]))
            continue
        srcs = [t._keras_history.operation.name for t in layer._inbound_nodes[0].input_tensors]
        h, w, c = shapes[srcs[0]]
        if kind == "Conv2D":
            kh, kw = layer.kernel_size
            sh, sw = layer.strides
            if layer.padding == "same":
                ho, wo = -(-h // sh), -(-w // sw)
            else:
                ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
            out = (ho, wo, int(layer.filters))
            conv += 2 * ho * wo * kh * kw * c * out[2] + (ho * wo * out[2] if layer.use_bias else 0)
        elif kind == "Conv2DTranspose":
            kh, kw = layer.kernel_size
            sh, sw = layer.strides
            out = (h * sh, w * sw, int(layer.filters))
            conv += 2 * h * w * kh * kw * c * out[2] + (out[0] * out[1] * out[2] if layer.use_bias else 0)
        elif kind == "MaxPooling2D":
            ph, pw = layer.pool_size
            sh, sw = layer.strides
            out = ((h - ph) // sh + 1, (w - pw) // sw + 1, c)
            elem += out[0] * out[1] * c * (ph * pw - 1)
        elif kind == "Concatenate":
            out = (h, w, sum(shapes[s][2] for s in srcs))
        elif kind == "BatchNormalization":
            out = (h, w, c)
            elem += 2 * h * w * c
        elif kind in ("Activation", "ReLU"):
            out = (h, w, c)
            elem += h * w * c
        elif kind in ("SpatialDropout2D", "Dropout"):
            out = (h, w, c)
        else:
            raise ValueError(f"layer {layer.name} of type {kind} is not counted")
        if kind in ("Conv2D", "Conv2DTranspose") and getattr(layer, "activation", None) is not None \
                and getattr(layer.activation, "__name__", "linear") != "linear":
            elem += out[0] * out[1] * out[2]
        shapes[layer.name] = out
    total = conv + elem
    return {"conv": int(conv), "elementwise": int(elem), "total": int(total),
            "per_pixel": total / (int(height) * int(width))}
