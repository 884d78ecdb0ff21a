"""Export U-Nets to ONNX beside their ``.keras`` file and record the export in their model card.

``python -m segmentation.backends.export [impurities|grains|PATH.keras ...]`` (default: both shipped
models).  The Keras model is loaded through :func:`segmentation.models.load_model` (its sha256 checked
against the card), exported by :func:`segmentation.backends.onnx_export.export_onnx`, run on a fixed
random batch through ONNX Runtime (or OpenVINO) against Keras, and the card gets ``export.onnx``:
``file``, ``sha256``, ``file_bytes``, ``opset``, ``max_abs_diff_vs_keras`` (the check batch).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["export_and_record", "main"]

log = logging.getLogger(__name__)


def _check_diff(model: Any, onnx_file: Path, *, tile: int, seed: int = 0) -> float | None:
    """Largest |probability| difference export vs Keras on a random (2, tile, tile, 1) batch; None untested."""
    x = np.random.default_rng(seed).random((2, tile, tile, 1), dtype=np.float32)
    ref = np.asarray(model.predict_on_batch(x))
    if ref.shape[-1] == 1:
        ref = ref[..., 0]
    from . import _onnxruntime_fn, _openvino_fn, BackendUnavailable

    for make in (lambda: _onnxruntime_fn(str(onnx_file), None), lambda: _openvino_fn(str(onnx_file), "fp32", None)):
        try:
            fn = make()
        except BackendUnavailable:
            continue
        return float(np.max(np.abs(fn(x) - ref)))
    return None


def export_and_record(model: Any, model_file: str | Path, *, tile: int = 256, tolerance: float = 1e-4) -> dict:
    """Write ``model``'s ONNX export beside ``model_file`` and its entry into the card (``x.json``).

    Parameters
    ----------
    model : keras.Model
        The model saved in ``model_file``.
    model_file : path
        The ``.keras`` file; its card must exist.
    tile : int
        Side of the check batch (a multiple of ``2 ** depth``).
    tolerance : float
        Largest allowed |probability| difference to Keras on the check batch.

    Returns
    -------
    dict
        The card's new ``export.onnx`` entry.

    Raises
    ------
    ValueError
        The export differs from Keras by more than ``tolerance`` (nothing is recorded).
    """
    from data.model_cards import card_path, read_card, sha256_of

    from . import export_path
    from .onnx_export import OPSET, export_onnx

    model_file = Path(model_file)
    card = read_card(model_file)
    out = export_onnx(model, export_path(model_file))
    diff = _check_diff(model, out, tile=tile)
    if diff is not None and diff > tolerance:
        out.unlink()
        raise ValueError(f"the ONNX export of {model_file.name} differs from Keras by {diff:.3g} > {tolerance:g}")
    entry = {"file": out.name, "sha256": sha256_of(out), "file_bytes": out.stat().st_size, "opset": OPSET,
             "max_abs_diff_vs_keras": diff,
             "command": "python -m segmentation.backends.export (or the train_unet_* task)"}
    card.setdefault("export", {})["onnx"] = entry
    card_path(model_file).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    log.info("exported %s -> %s (max |diff| vs Keras %s)", model_file.name, out.name, diff)
    return entry


def main(argv: list[str] | None = None) -> int:
    """Command line: export the shipped models (or given ``.keras`` files) and update their cards."""
    from segmentation.models import KINDS, load_model, weights_path

    ap = argparse.ArgumentParser(prog="python -m segmentation.backends.export", description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=sorted(KINDS), help="impurities, grains or .keras paths")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for m in args.models:
        kind, weights = (m, None) if m in KINDS else ("impurities", m)  # the kind only picks the default path
        path = weights_path(kind, weights).resolve()
        model, card = load_model(kind, weights)
        depth = int(card.get("config", {}).get("unet", {}).get("depth", 4))
        entry = export_and_record(model, path, tile=max(64, 2**depth * 4))
        print(f"{path.name}: {entry['file']} sha256 {entry['sha256'][:12]}... max |diff| {entry['max_abs_diff_vs_keras']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
