"""What determines a scan's result: its input file's identity and the per-scan configuration.

A resume reuses a committed scan only when both are unchanged (see :mod:`.checkpoint`).  The
per-scan configuration is every setting that changes what the stage computes or draws for one scan:
``data`` (but the input spec), ``segmentation``, ``inpainting``, ``anomaly``, ``ratings``, ``phases`` and the
drawing options of ``report``; archive-wide steps (ranking, reasons, the report) always rerun.
The hash also covers the shipped models' checksums, so new weights recompute every scan.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["PER_SCAN_SECTIONS", "REPORT_RENDER_KEYS", "flat_settings", "per_scan_settings",
           "settings_hash", "input_identity", "changed_keys"]

PER_SCAN_SECTIONS = ("data", "segmentation", "inpainting", "anomaly", "ratings", "phases")
#: ``report`` options that change the pictures the stage draws.
REPORT_RENDER_KEYS = ("score", "cmap", "max_side", "crop_side", "crop_margin", "crop_min_margin_px",
                      "size_min_area_px")
_NOT_PER_SCAN = {"data.input"}


def flat_settings(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b": v}`` leaves of a nested mapping (lists kept whole, as JSON-able values)."""
    out: dict[str, Any] = {}
    if isinstance(value, Mapping):
        for k, v in value.items():
            out.update(flat_settings(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = list(value) if isinstance(value, tuple) else value
    return out


def per_scan_settings(config: Mapping[str, Any], *, models: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The flat per-scan settings of a run configuration (plus model checksums)."""
    out: dict[str, Any] = {}
    for section in PER_SCAN_SECTIONS:
        value = config.get(section) or {}
        if section == "phases" and not value.get("enabled"):
            continue  # switched off, no phase setting changes a scan (older run dirs stay resumable)
        out.update(flat_settings(value, section))
    report = config.get("report") or {}
    for k in REPORT_RENDER_KEYS:
        if k in report:
            out[f"report.{k}"] = report[k]
    for name, digest in sorted((models or {}).items()):
        out[f"model.{name}"] = digest
    return {k: v for k, v in sorted(out.items()) if k not in _NOT_PER_SCAN}


def settings_hash(settings: Mapping[str, Any]) -> str:
    """A stable hash of flat settings."""
    text = json.dumps(dict(sorted(settings.items())), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def input_identity(path: str | Path) -> dict:
    """The identity of an input file: resolved path, size and modification time (ns)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return {"path": str(p), "missing": True}
    return {"path": str(p.resolve()), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Settings whose value differs (or that exist on one side only)."""
    return sorted(k for k in set(old) | set(new) if old.get(k, "<unset>") != new.get(k, "<unset>"))
