"""Shared fixtures: compose the real Hydra configs, tiny mask archives."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("QUANTMET_NO_PROGRESS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


@pytest.fixture
def compose():
    """compose(overrides) -> DictConfig of conf/config.yaml, as the app would see it."""
    from hydra import compose as _compose
    from hydra import initialize_config_dir

    def _make(overrides=()):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return _compose(config_name="config", overrides=list(overrides))

    return _make


def write_mask(path: Path, shape=(200, 240), n=30, seed=0, radius=(2, 6)) -> Path:
    """A binary mask PNG (255 = impurity) with n separated random discs."""
    rng = np.random.default_rng(seed)
    m = np.zeros(shape, np.uint8)
    placed = 0
    while placed < n:
        r = int(rng.integers(*radius))
        cy, cx = rng.integers(r + 2, shape[0] - r - 2), rng.integers(r + 2, shape[1] - r - 2)
        if m[cy - r - 2 : cy + r + 3, cx - r - 2 : cx + r + 3].any():
            continue
        cv2.circle(m, (int(cx), int(cy)), r, 255, -1)
        placed += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), m)
    return path


@pytest.fixture
def mask_archive(tmp_path):
    """A folder of 3 small masks in nested folders."""
    root = tmp_path / "archive"
    write_mask(root / "a.png", seed=1)
    write_mask(root / "lot2" / "b.png", seed=2)
    write_mask(root / "lot2" / "c.png", seed=3, n=15)
    return root
