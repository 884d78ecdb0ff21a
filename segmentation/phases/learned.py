"""Learned phase segmentation (issue 24): a multi-class U-Net trained on the classical labels.

The model (``unet_phases.keras``, written by ``python -m experiments.run +exp=train_unet_phases``)
is a :func:`segmentation.unet.build_unet` with a softmax over the ``n`` phases of the
:class:`~segmentation.phases.PhasesConfig` it was trained on; its JSON model card beside it
records those names (channel ``k`` = ``names[k]``), the tiling and the sha256 of the file.

- :func:`load_phase_model` checks the file against its card (sha256) before Keras reads it;
- :func:`predict_phases` has the contract of :func:`segment_phases`: a ``uint8`` label image,
  0 = excluded, ``k`` = ``names[k - 1]``;
- :func:`make_phase_segmenter` gives the pipeline one callable for either kind
  (``"classical"`` wraps :func:`segment_phases`, ``"unet"`` the model).

Scans are normalised as for the other U-Nets (:func:`segmentation.tiling.normalize_scan` on the
whole grey scan) and predicted with overlapping tiles (:func:`segmentation.tiling.predict_tiled`,
class probabilities blended per class); each pixel takes its most probable phase, then the same
small-component clean-up as the classical segmenter (:func:`segmentation.phases.classical.clean_small`).
Keras is imported only when a model is loaded.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from data.model_cards import ModelCardError, verify_model_file

from . import PhasesConfig, segment_phases
from .classical import PhaseError, clean_small

__all__ = [
    "KINDS",
    "MODEL_NAME",
    "PhaseModelError",
    "default_weights",
    "load_phase_model",
    "make_phase_segmenter",
    "phases_config_of",
    "predict_phase_probabilities",
    "predict_phases",
]

#: Segmenter kinds of :func:`make_phase_segmenter` (``phases.segmenter``).
KINDS = ("classical", "unet")
#: File stem of the model and its card (``unet_phases.keras`` / ``unet_phases.json``).
MODEL_NAME = "unet_phases"

PhaseSegmenter = Callable[..., np.ndarray]


class PhaseModelError(ModelCardError, PhaseError):
    """A phase model file or its card is missing, corrupt, not a phase model or does not match."""


def default_weights() -> Path:
    """Where a shipped phase model would lie: ``segmentation/weights/unet_phases.keras``."""
    return Path(__file__).resolve().parents[1] / "weights" / f"{MODEL_NAME}.keras"


def _check_card(card: dict, path: Path) -> None:
    ph = card.get("phases")
    if card.get("kind") != "phases" or not isinstance(ph, Mapping) or not ph.get("names"):
        raise PhaseModelError(
            f"{path.name}: its model card is not a phase model card (no kind 'phases' with "
            "phases.names); train one with python -m experiments.run +exp=train_unet_phases"
        )
    inp = card.get("input") or {}
    for key in ("tile", "overlap", "size_multiple"):
        if key not in inp:
            raise PhaseModelError(f"{path.name}: its model card has no input.{key} entry")


@functools.lru_cache(maxsize=4)
def _load(path_str: str, stamp: tuple[int, int]) -> tuple[Any, dict]:
    path = Path(path_str)
    try:
        card = verify_model_file(path, what="phase model")
    except PhaseModelError:
        raise
    except ModelCardError as exc:
        raise PhaseModelError(str(exc)) from None
    _check_card(card, path)
    import keras

    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # noqa: BLE001 - keras raises many types for corrupt archives
        raise PhaseModelError(f"cannot load phase model {path}: {type(exc).__name__}: {exc}") from None
    k = int(model.output_shape[-1])
    if k != len(card["phases"]["names"]):
        raise PhaseModelError(
            f"{path.name} has {k} output classes but its card names {len(card['phases']['names'])} "
            f"phases {list(card['phases']['names'])}"
        )
    return model, card


def load_phase_model(path: str | Path) -> tuple[Any, dict]:
    """Load a phase U-Net and its card, after checking the file's sha256 against the card.

    Cached per process on the path and the modification times of the file and its card.

    Parameters
    ----------
    path : str or Path
        The ``.keras`` file; its card is the ``.json`` beside it.

    Returns
    -------
    model : keras.Model
    card : dict

    Raises
    ------
    PhaseModelError
        Missing file or card, a card that is not a phase model's, a file that does not match
        its card's sha256, or a file Keras cannot read.
    """
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise PhaseModelError(
            f"phase model weights not found: {p}; train them with "
            "python -m experiments.run +exp=train_unet_phases (and give phases.weights=PATH)"
        )
    card = p.with_suffix(".json")
    stamp = (p.stat().st_mtime_ns, card.stat().st_mtime_ns if card.is_file() else 0)
    return _load(str(p), stamp)


def phases_config_of(card: dict) -> PhasesConfig:
    """The :class:`PhasesConfig` a phase model was trained on (from its card)."""
    ph = dict(card["phases"].get("config") or {"names": card["phases"]["names"]})
    known = {f.name for f in dataclasses.fields(PhasesConfig)}
    return PhasesConfig(**{k: v for k, v in ph.items() if k in known})


def _grey(pixels: Any) -> np.ndarray:
    from data.io import to_gray

    a = np.asarray(pixels)
    try:
        return to_gray(a)
    except ValueError as exc:
        raise PhaseError(f"pixels: {exc}") from None


def predict_phase_probabilities(
    pixels: np.ndarray, model: Any, card: dict, *, batch_size: int = 8,
    model_file: str | Path | None = None, backend: str = "auto", precision: str = "auto",
    predict_fn: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Class probabilities ``(M, N, n)`` of a phase model on a whole scan (channel k = names[k]).

    Parameters
    ----------
    pixels : ndarray, (M, N) or (M, N, 3|4)
        The scan (uint8, uint16, float, bool; colour is converted to grey by
        :func:`data.io.to_gray`, as at training).
    model : keras.Model
        From :func:`load_phase_model`.
    card : dict
        Its card (tile, overlap, size multiple).
    batch_size : int
        Tiles per model call.
    model_file : path, optional
        The model's ``.keras`` file: its verified ONNX export beside it (card ``export.onnx``) runs on
        the fastest installed backend (:func:`segmentation.backends.make_predict_fn`); None = Keras.
    backend, precision
        As for :func:`segmentation.backends.make_predict_fn` (used with ``model_file``).
    predict_fn : callable, optional
        A tile predictor already made (:func:`segmentation.backends.make_predict_fn`); it replaces
        ``model_file`` / ``backend`` / ``precision`` (a segmenter makes it once, not per scan).
    """
    from segmentation.models import keras_predict_fn
    from segmentation.tiling import normalize_scan, predict_tiled

    g = _grey(pixels)
    try:
        x = normalize_scan(g)
    except ValueError as exc:
        raise PhaseError(f"pixels: {exc}") from None
    inp = card["input"]
    if predict_fn is not None:
        fn = predict_fn
    elif model_file is None:
        fn = keras_predict_fn(model)
    else:
        from segmentation.backends import make_predict_fn

        fn, _ = make_predict_fn(model, Path(model_file).expanduser().resolve(), card, backend=backend,
                                precision=precision)
    prob = predict_tiled(
        x, fn, tile=int(inp["tile"]), overlap=int(inp["overlap"]),
        batch_size=int(batch_size), multiple=int(inp["size_multiple"]),
    )
    n = len(card["phases"]["names"])
    if prob.ndim != 3 or prob.shape[2] != n:
        raise PhaseModelError(f"the phase model returned shape {prob.shape}, expected (M, N, {n})")
    return prob


def _min_size_px(cfg: PhasesConfig, pixel_size_um: float | None) -> int:
    """The clean-up size of :func:`segment_phases` (the same rule)."""
    if cfg.min_size_um is not None:
        d_px = cfg.min_size_um / pixel_size_um if pixel_size_um else cfg.min_size_um
        return max(1, int(np.ceil(np.pi / 4.0 * d_px**2)))
    return int(cfg.min_size_px)


def predict_phases(
    pixels: np.ndarray,
    model: Any,
    card: dict,
    *,
    exclude: np.ndarray | None = None,
    pixel_size_um: float | None = None,
    cfg: PhasesConfig | None = None,
    clean: bool = True,
    batch_size: int = 8,
    model_file: str | Path | None = None,
    backend: str = "auto",
    precision: str = "auto",
    predict_fn: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Label each pixel with its phase using a phase U-Net (the contract of :func:`segment_phases`).

    Parameters
    ----------
    pixels : ndarray, (M, N) or (M, N, 3|4)
        The scan.
    model, card
        From :func:`load_phase_model`.
    exclude : ndarray of bool, (M, N), optional
        Pixels left unassigned (label 0).
    pixel_size_um : float, optional
        Calibration, for a clean-up size given in µm.
    cfg : PhasesConfig, optional
        Clean-up sizes (``min_size_um`` / ``min_size_px``); None = the card's config.  Its
        names must be the card's.
    clean : bool
        Merge components smaller than the clean-up size into their surrounding phase
        (as :func:`segment_phases` does); False = the network's argmax as is.
    batch_size : int
        Tiles per model call.
    model_file, backend, precision, predict_fn
        The inference path (:func:`predict_phase_probabilities`); none of them = Keras.

    Returns
    -------
    ndarray, (M, N), uint8
        0 = excluded, ``k`` = ``card['phases']['names'][k - 1]``.

    Raises
    ------
    PhaseError
        Bad pixels, an exclude mask of another shape or covering the whole scan, config names
        that differ from the card's.
    """
    names = tuple(card["phases"]["names"])
    ccfg = phases_config_of(card) if cfg is None else cfg
    if tuple(ccfg.names) != names:
        raise PhaseError(_names_message(ccfg.names, names))
    if pixel_size_um is not None and not (np.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise PhaseError(f"pixel_size_um must be a positive number or None, got {pixel_size_um}")
    shape = np.asarray(pixels).shape[:2]
    valid = None
    if exclude is not None:
        ex = np.asarray(exclude, dtype=bool)
        if ex.shape != shape:
            raise PhaseError(f"exclude has shape {ex.shape}, the scan {shape}")
        if ex.all():
            raise PhaseError("exclude covers the whole scan: nothing left to segment")
        valid = ~ex
    prob = predict_phase_probabilities(pixels, model, card, batch_size=batch_size, model_file=model_file,
                                       backend=backend, precision=precision, predict_fn=predict_fn)
    labels = (np.argmax(prob, axis=2) + 1).astype(np.uint8)
    if valid is not None:
        labels[~valid] = 0
    if clean:
        labels = clean_small(labels, min_size_px=_min_size_px(ccfg, pixel_size_um), valid=valid)
    return labels.astype(np.uint8, copy=False)


def _names_message(cfg_names, card_names) -> str:
    return (
        f"phases.names {list(cfg_names)} differ from the phase model's {list(card_names)} "
        "(names and order, darkest first): set phases.names to the model's names or train a model "
        "on these names with python -m experiments.run +exp=train_unet_phases"
    )


def make_phase_segmenter(
    kind: str,
    phases_cfg: PhasesConfig | Mapping,
    weights: str | Path | None = None,
    *,
    backend: str = "auto",
    precision: str = "auto",
) -> PhaseSegmenter:
    """One phase segmenter for the pipeline: ``fn(pixels, pixel_size_um=None, exclude=None) -> labels``.

    Parameters
    ----------
    kind : {"classical", "unet"}
        ``"classical"``: :func:`segment_phases` with ``phases_cfg``; ``"unet"``: the phase
        U-Net at ``weights`` (loaded and checked now, so a bad file fails before any scan).
    phases_cfg : PhasesConfig or mapping
        The phases (names, order, clean-up sizes).  For ``"unet"`` the names must be the model
        card's.
    weights : path, optional
        The ``.keras`` file of ``"unet"``; None = ``segmentation/weights/unet_phases.keras``.
    backend, precision
        Inference path of ``"unet"`` (:func:`segmentation.backends.make_predict_fn`): the card's
        verified ONNX export on the fastest installed backend, else Keras.

    Returns
    -------
    callable
        ``fn(pixels, pixel_size_um=None, exclude=None)`` -> uint8 labels, 0 = excluded,
        ``k`` = ``phases_cfg.names[k - 1]``.

    Raises
    ------
    PhaseError
        Unknown kind, names that differ from the card's; :class:`PhaseModelError` for a missing
        or mismatched model file.
    """
    cfg = phases_cfg if isinstance(phases_cfg, PhasesConfig) else PhasesConfig(**dict(phases_cfg))
    if kind == "classical":
        if weights is not None:
            raise PhaseError("phases.weights is given but phases.segmenter is 'classical'; "
                             "set phases.segmenter=unet to use the model")

        def classical(pixels, pixel_size_um=None, exclude=None):
            return segment_phases(pixels, cfg, pixel_size_um=pixel_size_um, exclude=exclude)

        return classical
    if kind != "unet":
        raise PhaseError(f"phases.segmenter must be one of {KINDS}, got {kind!r}")
    if cfg.n == "auto":
        raise PhaseError("phases.n=auto needs the classical segmenter: a phase model has a fixed "
                         "number of phases (its card's names)")
    path = Path(weights if weights is not None else default_weights())
    model, card = load_phase_model(path)
    if tuple(cfg.names) != tuple(card["phases"]["names"]):
        raise PhaseError(_names_message(cfg.names, card["phases"]["names"]))

    from segmentation.backends import make_predict_fn

    # once per segmenter: the card's ONNX export (checked) on OpenVINO / ONNX Runtime when installed, else Keras
    fn, _ = make_predict_fn(model, path.expanduser().resolve(), card, backend=backend, precision=precision)

    def unet(pixels, pixel_size_um=None, exclude=None):
        return predict_phases(pixels, model, card, exclude=exclude, pixel_size_um=pixel_size_um, cfg=cfg,
                              predict_fn=fn)

    return unet
