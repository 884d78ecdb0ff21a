"""Resolve ``data.input`` (a file, a folder searched recursively, or a glob) to scan files with stable ids.

Every file met is either an item or listed in :attr:`InputListing.skipped` with its reason.

Symlink policy (issue #19):

- symlinked files and folders are followed (the input root itself may be a link); a folder
  reached again through a link (a directory loop, or two links to one folder) is walked once and
  the later path is listed as skipped;
- each real file (its resolved path) is one scan, even when reached twice (two links, a glob with
  ``..``); the other paths are listed as skipped ("same file as ...").  The path kept is the one
  without symlinks when there is one, else the first scan id in sort order;
- scan ids are made from the path as reached (``root/link/a.png`` -> ``link/a``), normalised
  lexically (``x/../a.png`` -> ``a``);
- hidden files and folders (name starting with ``.``), broken links, files that are not images
  and special files are listed as skipped with their reason.

Vendor files (``.czi``, ``.nd2``) are items even when their reader (the ``vendor`` extra) is not
installed: such a scan fails alone, with the message naming the extra.
"""

from __future__ import annotations

import glob as _glob
import os
import re
import stat
from dataclasses import dataclass, field
from itertools import takewhile
from pathlib import Path

from .errors import InputNotFoundError
from .io import IMAGE_SUFFIXES, SUPPORTED_SUFFIXES

__all__ = ["InputListing", "ScanInput", "SkippedInput", "discover", "discover_inputs", "scan_id_for"]

_WILD = "*?["


@dataclass(frozen=True)
class ScanInput:
    """One scan file to process and its stable identifier."""

    path: Path
    scan_id: str


@dataclass(frozen=True)
class SkippedInput:
    """A path met while resolving the input that is not processed, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class InputListing:
    """What :func:`discover` found: items (sorted by scan_id) and the skipped paths (sorted by path)."""

    items: list[ScanInput]
    skipped: list[SkippedInput] = field(default_factory=list)
    root: Path | None = None


# Double extensions that name one file type (OME-TIFF): the scan id drops them whole.
_COMPOUND_SUFFIXES = (".ome.tif", ".ome.tiff")


def _without_extension(rel: Path) -> Path:
    low = rel.name.lower()
    for suffix in _COMPOUND_SUFFIXES:
        if low.endswith(suffix) and len(rel.name) > len(suffix):
            return rel.with_name(rel.name[: -len(suffix)])
    return rel.with_suffix("")


def scan_id_for(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` without extension (``.ome.tif`` is one), with '/' separators.

    >>> scan_id_for(Path("/a/b/c/x.tif"), Path("/a/b"))
    'c/x'
    >>> scan_id_for(Path("/a/b/lot1.ome.tif"), Path("/a/b"))
    'lot1'
    """
    rel = Path(os.path.normpath(Path(path))).relative_to(os.path.normpath(Path(root)))
    return _without_extension(rel).as_posix()


def _file_reason(p: Path, *, hidden_ok: bool = False) -> str | None:
    """Why file ``p`` is not a scan (None if it is one)."""
    if not hidden_ok and p.name.startswith("."):
        return "hidden file"
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return "broken symlink" if os.path.islink(p) else "vanished while listing"
    except OSError as exc:
        return f"cannot stat: {exc.strerror or exc}"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if p.suffix.lower() not in SUPPORTED_SUFFIXES:
        return f"not an image (suffix {p.suffix or 'none'!r}; supported: {', '.join(SUPPORTED_SUFFIXES)})"
    return None


def _walk(root: Path, skipped: list[SkippedInput], *, max_depth: int | None = None) -> list[Path]:
    """Files under ``root`` (links followed once, loops cut), with skips recorded.

    ``max_depth`` = how many folder levels below ``root`` are entered (None: all).
    """
    files: list[Path] = []
    seen_dirs: dict[tuple[int, int], Path] = {}
    stack = [(root, 0)]
    while stack:
        d, depth = stack.pop()
        try:
            st = os.stat(d)
        except OSError as exc:
            skipped.append(SkippedInput(d, f"cannot open folder: {exc.strerror or exc}"))
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            first = seen_dirs[key]
            why = "directory loop" if _is_ancestor(Path(os.path.realpath(d)), d) else "folder already listed"
            skipped.append(SkippedInput(d, f"{why}: same folder as {first}"))
            continue
        seen_dirs[key] = d
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            skipped.append(SkippedInput(d, f"cannot list folder: {exc.strerror or exc}"))
            continue
        subdirs = []
        for e in entries:
            p = Path(e.path)
            try:
                is_dir = e.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                if max_depth is not None and depth >= max_depth:
                    continue
                if e.name.startswith("."):
                    skipped.append(SkippedInput(p, "hidden folder"))
                else:
                    subdirs.append(p)
            else:
                reason = _file_reason(p)
                if reason is None:
                    files.append(p)
                else:
                    skipped.append(SkippedInput(p, reason))
        stack.extend((sd, depth + 1) for sd in reversed(subdirs))
    return files


def _is_ancestor(real_dir: Path, reached: Path) -> bool:
    """True if ``real_dir`` is an ancestor (in real paths) of where it was reached from."""
    parent = Path(os.path.realpath(reached.parent))
    return parent == real_dir or real_dir in parent.parents


def _segment_regex(part: str) -> str:
    """Regex of one path segment of a glob (``*``, ``?``, ``[...]``, ``[!...]``), never crossing '/'."""
    out, i = "", 0
    while i < len(part):
        ch = part[i]
        if ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "[":
            j = part.find("]", i + 2 if part[i + 1:i + 2] in ("!", "]") else i + 1)
            if j < 0:
                out += re.escape(ch)
            else:
                body = part[i + 1:j]
                neg = body.startswith("!")
                body = body[1:] if neg else body
                out += "[" + ("^" if neg else "") + body.replace("\\", "\\\\") + "]"
                i = j
        else:
            out += re.escape(ch)
        i += 1
    return out


def _glob_regex(pattern: str) -> re.Pattern:
    """Regex for a relative glob: ``**`` spans folders, ``*``/``?``/``[..]`` stay within one name."""
    parts = pattern.split("/")
    out = ""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out += ".*" if last else "(?:[^/]+/)*"
        else:
            out += _segment_regex(part) + ("" if last else "/")
    return re.compile(out + r"\Z", re.S)


def _glob_files(path: Path, raw: str, skipped: list[SkippedInput]) -> tuple[Path, list[Path]]:
    parts = path.parts
    fixed = list(takewhile(lambda s: not any(c in s for c in _WILD), parts))
    root = Path(*fixed) if fixed else Path("/")
    rest = parts[len(fixed):]
    if ".." in rest:
        if "**" in rest:
            raise InputNotFoundError(
                f"the glob {raw!r} combines '**' with '..' after a wildcard; write the folder without '..'"
            )
        matches = sorted(Path(p) for p in _glob.glob(str(path)))  # bounded depth: no loop risk
    else:
        rx = _glob_regex("/".join(rest))
        inner: list[SkippedInput] = []
        depth = None if "**" in rest else len(rest) - 1
        found = _walk(root, inner, max_depth=depth) if root.is_dir() else []
        matches = [f for f in found if rx.match(Path(os.path.relpath(f, root)).as_posix())]
        skipped.extend(s for s in inner if rx.match(Path(os.path.relpath(s.path, root)).as_posix())
                       or s.reason.startswith(("directory loop", "folder already", "cannot")))
        # files skipped by _walk that the pattern names are reported; loops always are
    files = []
    for m in matches:
        if m.is_dir():
            continue
        reason = _file_reason(m) if ".." in rest else None
        if reason is None:
            n = Path(os.path.normpath(m))
            files.append(n if os.path.realpath(n) == os.path.realpath(m) else m)
        else:
            skipped.append(SkippedInput(m, reason))
    return root, files


def _dedupe(cands: list[ScanInput], skipped: list[SkippedInput]) -> list[ScanInput]:
    """One item per real file; the others are skipped."""
    by_real: dict[str, list[ScanInput]] = {}
    for c in cands:
        by_real.setdefault(os.path.realpath(c.path), []).append(c)
    items = []
    for real, group in by_real.items():
        group.sort(key=lambda c: (os.path.realpath(c.path) != os.path.abspath(c.path), c.scan_id))
        keep = group[0]
        items.append(keep)
        for other in group[1:]:
            skipped.append(SkippedInput(other.path, f"same file as {keep.path} (scan {keep.scan_id!r}; {real})"))
    return items


def discover(spec: str | Path, *, base_dir: str | Path | None = None) -> InputListing:
    """Scan files named by ``spec`` and everything skipped on the way.

    Parameters
    ----------
    spec : str or Path
        A file (its id is the file stem; named explicitly, a hidden file is taken),
        a folder (searched recursively for PNG/JPEG/BMP/TIFF/CZI/ND2; ids relative
        to the folder) or a glob pattern with ``*``, ``?``, ``[...]`` and ``**``
        (ids relative to the pattern's fixed leading folder).
    base_dir : path, optional
        Relative specs are resolved against it (default: the current directory).

    Returns
    -------
    InputListing
        ``items`` sorted by scan_id, ``skipped`` sorted by path (see the module
        docstring for the symlink, hidden-file and duplicate policy).

    Raises
    ------
    InputNotFoundError
        If nothing matches, a single file is not a supported image, or two
        different files map to one scan_id (same name, different extension).
    """
    if spec is None or str(spec).strip() == "":
        raise InputNotFoundError("data.input is empty: give a scan file, a folder or a glob")
    raw = str(spec)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = base / path
    skipped: list[SkippedInput] = []
    if any(ch in raw for ch in _WILD):
        root, files = _glob_files(path, raw, skipped)
        if not files:
            raise InputNotFoundError(f"no image files match the glob {raw!r}" + _skip_hint(skipped))
        norm = [os.path.normpath(f) for f in files]
        if any(os.path.commonpath([os.path.normpath(root), n]) != os.path.normpath(root) for n in norm):
            root = Path(os.path.commonpath([os.path.dirname(n) for n in norm]))  # '..' climbed above the root
    elif path.is_dir():
        root = path
        files = _walk(path, skipped)
        if not files:
            raise InputNotFoundError(
                f"no image files ({', '.join(SUPPORTED_SUFFIXES)}) under folder {path}" + _skip_hint(skipped)
            )
    elif path.exists():
        reason = _file_reason(path, hidden_ok=True)
        if reason is not None:
            raise InputNotFoundError(f"input {path} is not a scan: {reason}")
        items = [ScanInput(path, _without_extension(Path(path.name)).as_posix())]
        return InputListing(items, [], path.parent)
    elif os.path.islink(path):
        raise InputNotFoundError(f"input {path} is a broken symlink (to {os.readlink(path)})")
    else:
        raise InputNotFoundError(f"input not found: {path}")
    items = _dedupe([ScanInput(f, scan_id_for(f, root)) for f in files], skipped)
    ids: dict[str, list[Path]] = {}
    for it in items:
        ids.setdefault(it.scan_id, []).append(it.path)
    dup = {k: v for k, v in ids.items() if len(v) > 1}
    if dup:
        k, v = sorted(dup.items())[0]
        raise InputNotFoundError(
            f"several files map to the same scan_id {sorted(dup)[:5]} (same name, different extension: "
            f"{', '.join(p.name for p in v)}); rename them"
        )
    return InputListing(
        sorted(items, key=lambda it: it.scan_id), sorted(skipped, key=lambda s: str(s.path)), root
    )


def _skip_hint(skipped: list[SkippedInput]) -> str:
    if not skipped:
        return ""
    s = skipped[0]
    more = f" and {len(skipped) - 1} more" if len(skipped) > 1 else ""
    return f" ({len(skipped)} skipped, e.g. {s.path.name}: {s.reason}{more})"


def discover_inputs(spec: str | Path, *, base_dir: str | Path | None = None) -> list[ScanInput]:
    """The items of :func:`discover` (sorted by scan_id); kept for callers that ignore the skips."""
    return discover(spec, base_dir=base_dir).items
