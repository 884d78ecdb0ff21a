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

__all__ = ["UNetConfig", "build_unet", "count_params"]


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


def build_unet(cfg: UNetConfig | None = None, *, name: str = "unet") -> keras.Model:
    """Build an (uncompiled) U-Net with a sigmoid output.

    Parameters
    ----------
    cfg : UNetConfig, optional
        Architecture; defaults to ``UNetConfig()``.
    name : str
        Model name.

    Returns
    -------
    keras.Model
        Maps float32 ``(B, H, W, 1)`` in [0, 1] to probabilities ``(B, H, W, 1)``.

    Examples
    --------
    >>> m = build_unet(UNetConfig(depth=2, base_width=4))
    >>> m.output_shape
    (None, None, None, 1)
    """
    cfg = cfg or UNetConfig()
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
    outputs = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="prob")(x)
    return keras.Model(inputs, outputs, name=name)


def count_params(model: keras.Model) -> int:
    """Total number of weights (trainable and not) of a model."""
    return int(sum(int(w.numpy().size) for w in model.weights))
