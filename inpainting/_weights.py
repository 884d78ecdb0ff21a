"""Where the generative network's weights are (no Keras here; shared by the package and its network)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_WEIGHTS", "resolve_weights"]

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "inpaint_net.keras"


def resolve_weights(weights: str | Path | None = None) -> Path:
    """The generative network's ``.keras`` file: ``weights`` or :data:`DEFAULT_WEIGHTS`."""
    return DEFAULT_WEIGHTS if weights is None else Path(weights).expanduser()
