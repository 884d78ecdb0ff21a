"""Resolve ``data.input`` (a file, a folder searched recursively, or a glob) to scan files with stable ids."""

from __future__ import annotations

import glob as _glob
from itertools import takewhile
from dataclasses import dataclass
from pathlib import Path

from .errors import InputNotFoundError
from .io import IMAGE_SUFFIXES

__all__ = ["ScanInput", "discover_inputs", "scan_id_for"]


@dataclass(frozen=True)
class ScanInput:
    """One scan file to process and its stable identifier."""

    path: Path
    scan_id: str


def scan_id_for(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` without extension, with '/' separators.

    >>> scan_id_for(Path("/a/b/c/x.tif"), Path("/a/b"))
    'c/x'
    """
    rel = Path(path).relative_to(root)
    return rel.with_suffix("").as_posix()


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def discover_inputs(spec: str | Path, *, base_dir: str | Path | None = None) -> list[ScanInput]:
    """Scan files named by ``spec``, sorted by scan_id.

    Parameters
    ----------
    spec : str or Path
        A file (its id is the file stem), a folder (searched recursively for
        PNG/JPEG/BMP/TIFF; ids relative to the folder) or a glob pattern (ids
        relative to the pattern's fixed leading folder).
    base_dir : path, optional
        Relative specs are resolved against it (default: the current directory).

    Raises
    ------
    InputNotFoundError
        If nothing matches.
    """
    if spec is None or str(spec).strip() == "":
        raise InputNotFoundError("data.input is empty: give a scan file, a folder or a glob")
    raw = str(spec)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = base / path
    if any(ch in raw for ch in "*?["):
        parts = path.parts
        fixed = list(takewhile(lambda s: not any(c in s for c in "*?["), parts))
        root = Path(*fixed) if fixed else Path("/")
        files = sorted(Path(p) for p in _glob.glob(str(path), recursive=True))
        files = [f for f in files if _is_image(f)]
        if not files:
            raise InputNotFoundError(f"no image files match the glob {raw!r}")
        items = [ScanInput(f, scan_id_for(f, root)) for f in files]
    elif path.is_dir():
        files = sorted(f for f in path.rglob("*") if _is_image(f))
        if not files:
            raise InputNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under folder {path}")
        items = [ScanInput(f, scan_id_for(f, path)) for f in files]
    elif path.exists():
        items = [ScanInput(path, path.stem)]
    else:
        raise InputNotFoundError(f"input not found: {path}")
    ids = [it.scan_id for it in items]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise InputNotFoundError(
            f"several files map to the same scan_id {dup[:5]} (same name, different extension); rename them"
        )
    return sorted(items, key=lambda it: it.scan_id)
