"""Model cards: the JSON file beside each ``.keras`` weight file, and the check that they match.

A card records how the model was trained and its ``sha256``; a weight file that does not match its
card (swapped, truncated, retrained without a new card) is refused before it is loaded, so a
model can never change results without a word.  No Keras here: only the file and its card.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .errors import QuantmetError

__all__ = ["ModelCardError", "card_path", "read_card", "sha256_of", "verify_model_file"]


class ModelCardError(QuantmetError, ValueError):
    """A model file or its card is missing, unreadable or they do not match."""


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def card_path(model_file: str | Path) -> Path:
    """The card of ``x.keras`` is ``x.json`` beside it."""
    return Path(model_file).with_suffix(".json")


def read_card(model_file: str | Path) -> dict:
    """The card of a model file; :class:`ModelCardError` when missing or not JSON."""
    card = card_path(model_file)
    if not card.is_file():
        raise ModelCardError(f"model card {card} not found beside {Path(model_file).name}")
    try:
        data = json.loads(card.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelCardError(f"model card {card} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ModelCardError(f"model card {card} is not a JSON object")
    return data


def verify_model_file(model_file: str | Path, *, what: str = "model") -> dict:
    """Check that ``model_file`` exists and matches the sha256 of its card; returns the card.

    Raises
    ------
    ModelCardError
        Missing file or card, a card without ``sha256``, or a file that does not match it.
    """
    path = Path(model_file)
    if not path.is_file():
        raise ModelCardError(f"{what} weights not found: {path}")
    card = read_card(path)
    want = card.get("sha256")
    if not want:
        raise ModelCardError(f"model card {card_path(path)} has no 'sha256' entry")
    got = sha256_of(path)
    if got != want:
        raise ModelCardError(
            f"{what} weights {path} do not match their model card (sha256 {got[:12]}... != {str(want)[:12]}...): "
            "the file was changed or truncated; restore it or retrain it with its train_* experiment"
        )
    return card
