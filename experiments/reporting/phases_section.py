"""The report's phase sections (a run with ``phases.enabled``): fractions, coating, sizes, overlays.

Read from the run dir: ``phases.parquet`` (fraction of each phase per scan with its E1245 interval
and the E562 point count), ``coating.parquet`` (thickness and porosity), the ``phase`` column of
``regions.parquet`` (size distributions with their log-normal fit, per object phase) and the
overlays and thickness profiles the workers drew (``scans.parquet`` ``phases_file`` /
``thickness_file``).  Each section is a dict of the ``extra_sections`` shape of ``index.html.j2``.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..layout import RunLayout

__all__ = ["phase_sections"]

log = logging.getLogger(__name__)

_MAX_IMAGES = 12


def _cell(text: Any, v: float | None = None) -> dict:
    ok = v is not None and math.isfinite(float(v))
    return {"text": str(text), "v": repr(float(v)) if ok else None, "href": None, "cls": None, "title": None,
            "bad": False}


def _col(label: str, num: bool = True) -> dict:
    return {"label": label, "num": num, "wrap": False}


def _pct(x: float, digits: int = 2) -> str:
    return "—" if x is None or not math.isfinite(float(x)) else f"{100.0 * float(x):.{digits}f}"


def _num(x: float, digits: int = 1) -> str:
    return "—" if x is None or not math.isfinite(float(x)) else f"{float(x):.{digits}f}"


def _read(path: Path, columns: list[str] | None = None) -> pd.DataFrame | None:
    if not path.exists():
        return None
    try:
        return pd.read_parquet(path, columns=columns)
    except Exception as exc:  # noqa: BLE001 - a broken table drops its section, with a log line
        log.warning("report: cannot read %s: %s", path, exc)
        return None


def _fractions_section(ph: pd.DataFrame) -> dict:
    cols = [_col("scan", False), _col("phase", False), _col("area fraction %"), _col("95% CI %", False),
            _col("fields"), _col("point count %"), _col("± SE %", False)]
    rows = []
    for _, r in ph.iterrows():
        rows.append([_cell(r["scan_id"]), _cell(r["phase"]), _cell(_pct(r["area_fraction"]), r["area_fraction"]),
                     _cell(f"{_pct(r['ci_low'])} – {_pct(r['ci_high'])}"), _cell(int(r["n_fields"]), r["n_fields"]),
                     _cell(_pct(r["point_count_fraction"]), r["point_count_fraction"]),
                     _cell(_pct(r["point_count_se"]))])
    mean = ph.groupby("phase", sort=False)["area_fraction"].agg(["mean", "std", "count"])
    summary = "; ".join(f"{p} {_pct(m['mean'])} % (sd {_pct(m['std'])}, {int(m['count'])} scans)"
                        for p, m in mean.iterrows())
    return {"id": "phases", "title": "Phase fractions (ASTM E1245 field intervals, E562 point count)",
            "text": f"Over the sample's assigned pixels of each scan. Mean over scans: {summary}.",
            "cols": cols, "rows": rows, "images": [], "links": []}


def _coating_section(co: pd.DataFrame, images: list[dict]) -> dict:
    unit = "µm"
    if "thickness_unit" in co.columns and (co["thickness_unit"].astype(str) == "px").any():
        unit = "µm or px (see thickness_unit)"
    cols = [_col("scan", False), _col(f"thickness mean ({unit})"), _col("sd"), _col("min"), _col("max"),
            _col("95% CI of the mean", False), _col("porosity %"), _col("95% CI %", False), _col("unit", False)]
    rows = []
    for _, r in co.iterrows():
        rows.append([_cell(r["scan_id"]), _cell(_num(r["thickness_mean_um"]), r["thickness_mean_um"]),
                     _cell(_num(r["thickness_std_um"]), r["thickness_std_um"]),
                     _cell(_num(r["thickness_min_um"]), r["thickness_min_um"]),
                     _cell(_num(r["thickness_max_um"]), r["thickness_max_um"]),
                     _cell(f"{_num(r.get('thickness_ci_low', np.nan))} – {_num(r.get('thickness_ci_high', np.nan))}"),
                     _cell(_pct(r["porosity"]), r["porosity"]),
                     _cell(f"{_pct(r['porosity_ci_low'])} – {_pct(r['porosity_ci_high'])}"),
                     _cell(str(r.get("thickness_unit", "")))])
    return {"id": "coating", "title": "Coating thickness and porosity (ASTM E2109 style, pores inside the layer)",
            "text": "Thickness per column from the top surface to the interface; porosity = pore area / layer area.",
            "cols": cols, "rows": rows, "images": images, "links": []}


def _copy_images(layout: RunLayout, scans: pd.DataFrame, column: str, out: Path, what: str) -> list[dict]:
    imgs = []
    if column not in scans.columns:
        return imgs
    for _, r in scans.iterrows():
        rel = str(r[column] or "")
        if not rel or not layout.path(rel).is_file():
            continue
        dest = out / "img" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(layout.path(rel), dest)
        imgs.append({"src": f"img/{rel}", "alt": f"{r['scan_id']} {what}", "caption": f"{r['scan_id']}: {what}"})
        if len(imgs) >= _MAX_IMAGES:
            break
    return imgs


def _size_images(regions: pd.DataFrame, calibrated: bool, out: Path) -> list[dict]:
    from .heatmaps import write_png  # lazy: drawing
    from .phases import plot_phase_sizes

    imgs = []
    for phase in sorted(regions["phase"].astype(str).unique()):
        sel = regions[regions["phase"].astype(str) == phase]
        if len(sel) < 2:
            continue
        rel = f"plots/phase-sizes-{phase}.png"
        write_png(out / rel, plot_phase_sizes(sel, calibrated=calibrated))
        unit = "µm" if calibrated else "px"
        imgs.append({"src": rel, "alt": f"{phase} sizes",
                     "caption": f"{phase}: {len(sel)} particles, equivalent diameter ({unit}) with the log-normal fit"})
    return imgs


def phase_sections(layout: RunLayout, scans: pd.DataFrame, out: Path) -> list[dict]:
    """The phase sections of the report (none when the run measured no phases)."""
    ph = _read(layout.phases)
    if ph is None:
        return []
    sections = []
    if len(ph):
        sec = _fractions_section(ph)
        sec["images"] = _copy_images(layout, scans, "phases_file", out, "phase overlay")
        sections.append(sec)
    co = _read(layout.coating)
    if co is not None and len(co):
        sections.append(_coating_section(co, _copy_images(layout, scans, "thickness_file", out, "thickness profile")))
    regions = None
    if layout.regions.exists():  # only the columns the size plots need (the table can be large)
        import pyarrow.parquet as pq  # lazy

        have = set(pq.read_schema(layout.regions).names)
        wanted = [c for c in ("phase", "area_px", "eq_diameter_px", "eq_diameter_um") if c in have]
        regions = _read(layout.regions, columns=wanted) if "phase" in have else None
    if regions is not None and len(regions):
        calibrated = "eq_diameter_um" in regions.columns and bool(regions["eq_diameter_um"].notna().any())
        imgs = _size_images(regions, calibrated, out)
        if imgs:
            sections.append({"id": "phase-sizes", "title": "Pore and particle sizes by phase", "text": "",
                             "cols": [], "rows": [], "images": imgs, "links": []})
    return sections
