"""The common head of the JSON model cards written beside shipped ``.keras`` weights."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

__all__ = ["card_header"]


def card_header(*, name: str, description: str, command: str, model: Any, model_path: Path) -> dict:
    """Name, description, creation time, command, Keras version/backend, parameter count, file size."""
    import keras

    return {
        "name": name,
        "description": description,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "parameter_count": int(model.count_params()),
        "file_bytes": Path(model_path).stat().st_size,
    }
