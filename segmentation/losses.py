"""Segmentation losses on probabilities: Dice, focal, BCE and a weighted sum, all serialisable.

Every loss takes ``y_true`` (0/1 targets) and ``y_pred`` (sigmoid
probabilities) of shape ``(B, H, W, 1)`` and is built from ``keras.ops`` only.
They are registered under the package name ``quantmet`` so that a ``.keras``
file compiled with them reloads with ``safe_mode=True`` once this module is
imported (the shipped models are loaded with ``compile=False`` and do not
need them at all).
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = [
    "BCELoss",
    "CLDiceLoss",
    "ComboLoss",
    "DiceLoss",
    "FocalLoss",
    "ShiftTolerantLoss",
    "get_loss",
    "soft_skeleton",
]

_EPS = 1e-6


def _clip(p):
    return ops.clip(p, _EPS, 1.0 - _EPS)


@keras.saving.register_keras_serializable(package="quantmet")
class DiceLoss(keras.losses.Loss):
    """Soft Dice loss ``1 - (2 |P T| + s) / (|P| + |T| + s)`` per sample.

    Parameters
    ----------
    smooth : float
        Additive smoothing ``s`` (keeps empty patches finite).
    """

    def __init__(self, smooth: float = 1.0, name: str = "dice_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        axes = tuple(range(1, len(y_pred.shape)))
        inter = ops.sum(y_true * y_pred, axis=axes)
        total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
        return 1.0 - (2.0 * inter + self.smooth) / (total + self.smooth)

    def get_config(self):
        return {**super().get_config(), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="quantmet")
class FocalLoss(keras.losses.Loss):
    """Binary focal loss ``-alpha_t (1 - p_t)^gamma log p_t``, mean over pixels.

    Parameters
    ----------
    gamma : float
        Focusing exponent (0 = weighted BCE).
    alpha : float
        Weight of the positive class (``1 - alpha`` for the negative one).
    """

    def __init__(self, gamma: float = 2.0, alpha: float = 0.5, name: str = "focal_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.gamma = float(gamma)
        self.alpha = float(alpha)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        p = _clip(y_pred)
        p_t = y_true * p + (1.0 - y_true) * (1.0 - p)
        a_t = y_true * self.alpha + (1.0 - y_true) * (1.0 - self.alpha)
        loss = -a_t * ops.power(1.0 - p_t, self.gamma) * ops.log(p_t)
        return 2.0 * ops.mean(loss, axis=tuple(range(1, len(y_pred.shape))))

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha}


@keras.saving.register_keras_serializable(package="quantmet")
class BCELoss(keras.losses.Loss):
    """Binary cross-entropy on probabilities with an optional positive-class weight."""

    def __init__(self, pos_weight: float = 1.0, name: str = "bce_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.pos_weight = float(pos_weight)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        p = _clip(y_pred)
        loss = -(self.pos_weight * y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p))
        return ops.mean(loss, axis=tuple(range(1, len(y_pred.shape))))

    def get_config(self):
        return {**super().get_config(), "pos_weight": self.pos_weight}


@keras.saving.register_keras_serializable(package="quantmet")
class ComboLoss(keras.losses.Loss):
    """Weighted sum ``w_bce BCE + w_dice Dice + w_focal Focal``.

    Parameters
    ----------
    bce, dice, focal : float
        Weights of the three terms (0 drops a term).
    pos_weight : float
        Positive-class weight of the BCE term.
    gamma, alpha : float
        Focal-loss parameters.
    """

    def __init__(
        self,
        bce: float = 1.0,
        dice: float = 1.0,
        focal: float = 0.0,
        pos_weight: float = 1.0,
        gamma: float = 2.0,
        alpha: float = 0.5,
        name: str = "combo_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.weights = (float(bce), float(dice), float(focal))
        if min(self.weights) < 0 or sum(self.weights) <= 0:
            raise ValueError(f"loss weights must be >= 0 with a positive sum, got {self.weights}")
        self.pos_weight, self.gamma, self.alpha = float(pos_weight), float(gamma), float(alpha)
        self._bce = BCELoss(pos_weight, reduction=None)
        self._dice = DiceLoss(reduction=None)
        self._focal = FocalLoss(gamma, alpha, reduction=None)

    def call(self, y_true, y_pred):
        wb, wd, wf = self.weights
        total = 0.0
        if wb:
            total = total + wb * self._bce.call(y_true, y_pred)
        if wd:
            total = total + wd * self._dice.call(y_true, y_pred)
        if wf:
            total = total + wf * self._focal.call(y_true, y_pred)
        return total

    def get_config(self):
        wb, wd, wf = self.weights
        return {
            **super().get_config(),
            "bce": wb,
            "dice": wd,
            "focal": wf,
            "pos_weight": self.pos_weight,
            "gamma": self.gamma,
            "alpha": self.alpha,
        }


@keras.saving.register_keras_serializable(package="quantmet")
class ShiftTolerantLoss(keras.losses.Loss):
    """A loss that forgives labels placed up to ``radius`` px away from the object.

    Manual labels of small impurities are 1-2 px off the dark spot, and drawn
    grain boundaries wander by a pixel or two; a per-pixel loss then teaches
    the network blurred, low-confidence blobs.  Here, with ``P+ = maxpool(P)``
    and ``T+ = maxpool(T)`` over a ``(2 radius + 1)`` square window:

    * tolerant BCE: a labelled pixel is satisfied when the network fires
      anywhere within the window (``-log P+`` on ``T``); a prediction is
      penalised only farther than ``radius`` from every label
      (``-log (1 - P)`` where ``T+ = 0``);
    * tolerant Dice: ``1 - (|T P+| + |P T+| + s) / (|T| + |P| + s)``, the soft
      form of an F1 with a distance tolerance (recall and precision parts);
    * ``plain`` x the ordinary BCE + Dice (keeps outlines on the label).

    Parameters
    ----------
    radius : int
        Tolerance in pixels (Chebyshev distance).
    dice, plain : float
        Weights of the tolerant Dice and of the ordinary BCE + Dice terms.
    pos_weight : float
        Weight of the labelled pixels in the tolerant BCE.
    """

    def __init__(
        self,
        radius: int = 2,
        dice: float = 1.0,
        plain: float = 0.5,
        pos_weight: float = 1.0,
        smooth: float = 1.0,
        name: str = "shift_tolerant_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if int(radius) < 0:
            raise ValueError(f"radius must be >= 0, got {radius}")
        if min(dice, plain, pos_weight) < 0:
            raise ValueError("dice, plain and pos_weight must be >= 0")
        self.radius, self.dice, self.plain = int(radius), float(dice), float(plain)
        self.pos_weight, self.smooth = float(pos_weight), float(smooth)
        self._plain = ComboLoss(1.0, 1.0, 0.0, reduction=None)

    def _grow(self, x):
        k = 2 * self.radius + 1
        return ops.max_pool(x, pool_size=k, strides=1, padding="same") if self.radius else x

    def call(self, y_true, y_pred):
        t = ops.cast(y_true, y_pred.dtype)
        p = _clip(y_pred)
        p_near, t_near = self._grow(p), self._grow(t)
        axes = tuple(range(1, len(y_pred.shape)))
        bce = -(self.pos_weight * t * ops.log(p_near) + (1.0 - t_near) * ops.log(1.0 - p))
        total = ops.mean(bce, axis=axes)
        if self.dice:
            hit = ops.sum(t * p_near, axis=axes) + ops.sum(p * t_near, axis=axes)
            size = ops.sum(t, axis=axes) + ops.sum(p, axis=axes)
            total = total + self.dice * (1.0 - (hit + self.smooth) / (size + self.smooth))
        if self.plain:
            total = total + self.plain * self._plain.call(y_true, y_pred)
        return total

    def get_config(self):
        return {
            **super().get_config(),
            "radius": self.radius,
            "dice": self.dice,
            "plain": self.plain,
            "pos_weight": self.pos_weight,
            "smooth": self.smooth,
        }


def _soft_erode(x):
    # min over the 4-neighbourhood cross, as two separable 3-px min-pools
    a = -ops.max_pool(-x, pool_size=(3, 1), strides=1, padding="same")
    b = -ops.max_pool(-x, pool_size=(1, 3), strides=1, padding="same")
    return ops.minimum(a, b)


def _soft_dilate(x):
    return ops.max_pool(x, pool_size=(3, 3), strides=1, padding="same")


def soft_skeleton(x, iterations: int = 5):
    """Differentiable skeleton of a soft mask (iterated soft erosion minus soft opening).

    ``x``: probabilities of shape ``(B, H, W, 1)``.  The skeleton of lines up
    to about ``2 * iterations`` px wide is recovered (Shit et al., clDice,
    CVPR 2021, soft-skeletonisation).
    """
    skel = ops.relu(x - _soft_dilate(_soft_erode(x)))
    for _ in range(int(iterations)):
        x = _soft_erode(x)
        delta = ops.relu(x - _soft_dilate(_soft_erode(x)))
        skel = skel + ops.relu(delta - skel * delta)
    return skel


@keras.saving.register_keras_serializable(package="quantmet")
class CLDiceLoss(keras.losses.Loss):
    """BCE + Dice plus the centreline Dice (clDice), a loss that rewards connected lines.

    With soft skeletons ``S(.)`` (:func:`soft_skeleton`), topology precision
    ``Tp = |S(P) T| / |S(P)|`` (the predicted centrelines lie on labelled
    boundaries) and topology sensitivity ``Ts = |S(T) P| / |S(T)|`` (the
    labelled centrelines are covered, so a gap in a boundary costs as much
    as its length on the skeleton, not its few pixels);
    ``clDice = 2 Tp Ts / (Tp + Ts)`` and the loss is
    ``bce BCE + dice Dice + weight (1 - clDice)``.

    Parameters
    ----------
    weight : float
        Weight of the ``1 - clDice`` term.
    bce, dice : float
        Weights of the ordinary BCE and Dice terms (as in :class:`ComboLoss`).
    iterations : int
        Soft-skeleton iterations (about half the widest line, px).
    smooth : float
        Additive smoothing of the two ratios.
    """

    def __init__(
        self,
        weight: float = 0.5,
        bce: float = 1.0,
        dice: float = 1.0,
        iterations: int = 5,
        smooth: float = 1.0,
        name: str = "cldice_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if min(weight, bce, dice) < 0 or weight + bce + dice <= 0:
            raise ValueError("weight, bce and dice must be >= 0 with a positive sum")
        if int(iterations) < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        self.weight, self.bce, self.dice = float(weight), float(bce), float(dice)
        self.iterations, self.smooth = int(iterations), float(smooth)
        self._plain = ComboLoss(self.bce, self.dice, 0.0, reduction=None) if bce + dice > 0 else None

    def call(self, y_true, y_pred):
        t = ops.cast(y_true, y_pred.dtype)
        axes = tuple(range(1, len(y_pred.shape)))
        total = 0.0
        if self._plain is not None:
            total = total + self._plain.call(y_true, y_pred)
        if self.weight:
            sp, st = soft_skeleton(y_pred, self.iterations), soft_skeleton(t, self.iterations)
            tprec = (ops.sum(sp * t, axis=axes) + self.smooth) / (ops.sum(sp, axis=axes) + self.smooth)
            tsens = (ops.sum(st * y_pred, axis=axes) + self.smooth) / (ops.sum(st, axis=axes) + self.smooth)
            total = total + self.weight * (1.0 - 2.0 * tprec * tsens / (tprec + tsens))
        return total

    def get_config(self):
        return {
            **super().get_config(),
            "weight": self.weight,
            "bce": self.bce,
            "dice": self.dice,
            "iterations": self.iterations,
            "smooth": self.smooth,
        }


def get_loss(name: str, **options) -> keras.losses.Loss:
    """A loss by name: ``'dice'``, ``'focal'``, ``'bce'``, ``'combo'``, ``'tolerant'`` or ``'cldice'``."""
    table = {"dice": DiceLoss, "focal": FocalLoss, "bce": BCELoss, "combo": ComboLoss,
             "tolerant": ShiftTolerantLoss, "cldice": CLDiceLoss}
    try:
        cls = table[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; expected one of {sorted(table)}") from None
    return cls(**options)
