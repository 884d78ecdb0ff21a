"""Shared fixtures: compose the real Hydra configs, tiny mask archives."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("QUANTMET_NO_PROGRESS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
# test modules share the plain helpers below with `from conftest import ...`
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))
CONF = REPO / "conf"


@pytest.fixture
def compose():
    """compose(overrides) -> DictConfig of conf/config.yaml, as the app would see it."""
    from hydra import compose as _compose
    from hydra import initialize_config_dir

    from experiments.schemas import register

    register()

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


def fake_mlography_root(tmp_path, names=("12", "13", "17", "20"), shape=(160, 200)):
    """A miniature copy of the dataset layout: scans, masks, prior-art scans, grain labels."""
    root = tmp_path / "mlography"
    for sub in ("scans/images", "scans/impurity_masks", "reference_outputs/inpainted",
                "grain_patches/images", "grain_patches/boundaries"):
        (root / sub).mkdir(parents=True)
    r, c = np.mgrid[: shape[0], : shape[1]]
    for i, name in enumerate(names):
        rng = np.random.default_rng(i)
        # grains: a Voronoi-like cell pattern with a gray level per cell
        seeds = rng.integers(0, min(shape), (12, 2))
        d = (r[..., None] - seeds[:, 0]) ** 2 + (c[..., None] - seeds[:, 1]) ** 2
        cell = d.argmin(-1)
        img = (90 + 12 * (cell % 5) + rng.normal(0, 2, shape)).clip(0, 255).astype(np.uint8)
        bnd = np.zeros(shape, bool)
        bnd[:-1] |= cell[:-1] != cell[1:]
        bnd[:, :-1] |= cell[:, :-1] != cell[:, 1:]
        mask = np.zeros(shape, np.uint8)
        for _ in range(8):
            y, x = rng.integers(10, shape[0] - 10), rng.integers(10, shape[1] - 10)
            cv2.circle(mask, (int(x), int(y)), int(rng.integers(2, 5)), 255, -1)
        mask[20:26, 30:33] = 255
        mask[20:26, 36:39] = 255
        mask[28:31, 33:36] = 255  # a cluster
        raw = img.copy()
        raw[mask > 0] = 20
        cv2.imwrite(str(root / "scans/images" / f"{name}.jpg"), raw, [cv2.IMWRITE_JPEG_QUALITY, 100])
        cv2.imwrite(str(root / "scans/impurity_masks" / f"{name}.png"), mask)
        cv2.imwrite(str(root / "reference_outputs/inpainted" / f"{name}.png"), img[:152, :200])
        for rr in (0, 64):
            for cc in (0, 64):
                cv2.imwrite(str(root / "grain_patches/boundaries" / f"{name}-16-32-{rr}-{cc}.png"),
                            (bnd[16 + rr : 16 + rr + 64, 32 + cc : 32 + cc + 64] * 255).astype(np.uint8))
    return root


def write_model_card(model_path: Path, **extra) -> Path:
    """A minimal model card (its sha256) beside a test's own .keras file, as training writes one."""
    import json

    from data.model_cards import sha256_of

    card = Path(model_path).with_suffix(".json")
    card.write_text(json.dumps({"name": Path(model_path).stem, "sha256": sha256_of(model_path), **extra}))
    return card


@pytest.fixture
def mask_archive(tmp_path):
    """A folder of 3 small masks in nested folders."""
    root = tmp_path / "archive"
    write_mask(root / "a.png", seed=1)
    write_mask(root / "lot2" / "b.png", seed=2)
    write_mask(root / "lot2" / "c.png", seed=3, n=15)
    return root


# --------------------------------------------------------------------------- browser

INSTALL_SCRIPT = REPO / "tests" / "install_chromium.sh"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium, installed with apt-get on first use; skips when that is impossible."""
    if not (CHROMIUM.exists() and shutil.which(str(CHROMIUM))):
        try:
            proc = subprocess.run(
                ["bash", str(INSTALL_SCRIPT)], check=False, capture_output=True, text=True, timeout=600
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"Chromium cannot be installed ({exc}); browser test skipped")
        if proc.returncode != 0 or not CHROMIUM.exists():
            pytest.skip(
                "Chromium cannot be installed with apt-get (bash tests/install_chromium.sh "
                f"exited {proc.returncode}: {proc.stderr.strip()[-300:]}); browser test skipped"
            )
    return CHROMIUM
