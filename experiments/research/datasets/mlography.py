"""Readers of the MLography development data (``conf/paths``: ``paths.mlography``).

Shared by the ``train_*`` and ``eval_*`` tasks, so training never imports evaluation.
The folder layout is described in the dataset's own README:

- ``scans/images/<name>.jpg`` raw scans and ``scans/impurity_masks/<name>.png`` manual labels,
- ``grain_patches/boundaries/SCAN-R-C-r-c.png`` grain-boundary label crops whose top-left
  pixel is ``(R + r, C + c)`` of ``reference_outputs/inpainted/SCAN.png``,
- ``reference_outputs/`` the prior art's published outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.errors import InputNotFoundError

from .splits import VAL_SCANS

__all__ = [
    "VAL_SCANS",
    "dev_root",
    "GrainRegion",
    "grain_regions",
    "read_gray",
    "read_pair",
    "scan_names",
]

def dev_root(path: str | Path) -> Path:
    """The development data folder named by a config (``paths.mlography``), checked.

    Relative paths are taken against the repository root, ``~`` is expanded.
    """
    from experiments.config import resolve_repo_path

    if not str(path or "").strip():
        raise InputNotFoundError("no development data folder: set paths.mlography (or MLOGRAPHY_DATA)")
    root = resolve_repo_path(path)
    if not root.is_dir():
        raise InputNotFoundError(f"development data folder not found: {root} (paths.mlography / MLOGRAPHY_DATA)")
    return root


def read_gray(path: Path) -> np.ndarray:
    """A gray uint8 image (RGB files are converted); clear error when missing."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise InputNotFoundError(f"cannot read image {path}")
    return img


def scan_names(root: Path) -> list[str]:
    """Names (file stems) of the dev scans that have an impurity mask, in numeric order."""
    root = Path(root)
    imgs = root / "scans" / "images"
    masks = root / "scans" / "impurity_masks"
    names = [p.stem for p in imgs.glob("*.jpg") if (masks / f"{p.stem}.png").exists()]
    if not names:
        raise InputNotFoundError(f"no scans with impurity masks under {root / 'scans'}")
    return sorted(names, key=lambda s: (len(s), s))


def read_pair(root: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The gray scan (uint8, M x N) and its manual impurity mask (bool, M x N)."""
    from data import read_image, read_scan

    root = Path(root)
    scan = read_scan(root / "scans" / "images" / f"{name}.jpg", scan_id=name)
    mask, _ = read_image(root / "scans" / "impurity_masks" / f"{name}.png")
    if mask.shape != scan.pixels.shape:
        raise ValueError(f"scan {name}: mask shape {mask.shape} != scan shape {scan.pixels.shape}")
    return scan.pixels, mask > 127


@dataclass(frozen=True)
class GrainRegion:
    """A labelled grain-boundary region of an inpainted scan (256 x 256 in this data)."""

    scan: str
    row: int
    col: int
    boundaries: np.ndarray = field(repr=False)  # bool (h, w), 255 = boundary in the files

    @property
    def slices(self) -> tuple[slice, slice]:
        h, w = self.boundaries.shape
        return slice(self.row, self.row + h), slice(self.col, self.col + w)


def grain_regions(data_root: Path, scans: list[str] | None = None) -> list[GrainRegion]:
    """Assemble the labelled regions from ``grain_patches/boundaries/SCAN-R-C-r-c.png``.

    Each region is the union of its patches at offsets (r, c); returned sorted by (scan, R, C).
    """
    folder = Path(data_root) / "grain_patches" / "boundaries"
    files = sorted(folder.glob("*.png"))
    if not files:
        raise InputNotFoundError(f"no grain-boundary patches in {folder}")
    groups: dict[tuple[str, int, int], list[tuple[int, int, np.ndarray]]] = {}
    for f in files:
        parts = f.stem.split("-")
        if len(parts) != 5:
            raise ValueError(f"unexpected grain patch name {f.name}; expected SCAN-R-C-r-c.png")
        scan, rr, cc, r, c = parts[0], *map(int, parts[1:])
        if scans is not None and scan not in scans:
            continue
        groups.setdefault((scan, rr, cc), []).append((r, c, read_gray(f) > 127))
    out = []
    for (scan, rr, cc), patches in sorted(groups.items(), key=lambda kv: ((len(kv[0][0]), kv[0][0]), kv[0][1], kv[0][2])):
        h = max(r + p.shape[0] for r, _, p in patches)
        w = max(c + p.shape[1] for _, c, p in patches)
        lab = np.zeros((h, w), bool)
        for r, c, p in patches:
            lab[r : r + p.shape[0], c : c + p.shape[1]] = p
        out.append(GrainRegion(scan, rr, cc, lab))
    return out
