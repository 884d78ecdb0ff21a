"""The common head of the JSON model cards written beside shipped ``.keras`` weights."""

from __future__ import annotations

import datetime as _dt
import shlex
from pathlib import Path
from typing import Any

from data.model_cards import sha256_of

__all__ = ["card_header", "run_command"]


def run_command(default: str) -> str:
    """The command line that reproduces this run: ``python -m experiments.run`` plus the Hydra
    overrides it was given (``default`` outside a Hydra run, e.g. when a trainer is called
    from Python)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = list(HydraConfig.get().overrides.task)
    except Exception:  # noqa: BLE001 - no Hydra run: the trainer was called directly
        return default
    return " ".join(["python -m experiments.run", *(shlex.quote(o) for o in overrides)])


def card_header(*, name: str, description: str, command: str, model: Any, model_path: Path) -> dict:
    """Name, description, creation time, command, Keras version/backend, parameter count, file size."""
    import keras

    return {
        "name": name,
        "description": description,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": run_command(command),
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "parameter_count": int(model.count_params()),
        "file_bytes": Path(model_path).stat().st_size,
        "sha256": sha256_of(model_path),  # checked before every load (data.model_cards)
    }
