"""The static HTML report of a run: ``<run_dir>/report/index.html`` plus one page per scan.

Everything is built from the run's tables (``scans``, ``regions``, ``clusters``
parquet files and ``.hydra/config.yaml``); source images are read again only to
draw heatmaps the run does not have and the gallery crops, and a missing image
leaves a note instead.  Impurity pixels come from the run's ``labels/<scan>.tif``
when present, else from the mask itself (mask scans, matched to the table by
bounding box), else bounding boxes are drawn.  The pages are self-contained: inline CSS and JS, local
images, no server, no network (a Content-Security-Policy forbids it).  Every
text that comes from data (scan ids, paths, errors, configs) is HTML-escaped.
"""

from __future__ import annotations

import datetime as _dt
import html
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from ._assets import CSS, JS, csp
from ._imaging import safe_relpath, score_settings
from ._run import RunData, labels_from_mask, load_run, scan_kind
from .config import ReportConfig
from .gallery import cluster_facts, fmt_num, render_cluster_crop
from .heatmaps import heatmap_relpath, save_heatmap, write_png
from .plots import plot_score_histograms, plot_size_distribution

__all__ = ["write_report"]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- small html helpers
def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _href(path: str) -> str:
    return _e(quote(path, safe="/~-._"))


def _num_v(x: Any) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return ""
    return repr(v) if math.isfinite(v) else ""


def _text(v: Any) -> str:
    """Cell text: integers as they are (ids, counts), other numbers compact, the rest as str."""
    if isinstance(v, (bool, np.bool_)):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return fmt_num(v)
    return "–" if v is None else str(v)


def _pct_v(p: Any) -> str:
    """Sort key of a percentile bucket such as ``"90%-100%"``: its lower bound."""
    head = str(p).split("%")[0].strip()
    return _num_v(head) if head else ""


@dataclass(frozen=True)
class _Col:
    label: str
    num: bool = False
    wrap: bool = False


def _table(
    tid: str, cols: list[_Col], rows: list[list[tuple[str, str | None]]], *, cls: str = "sortable"
) -> str:
    """Rows of ``(cell_html, sort_value)``; cell_html is already escaped."""
    head = "".join(
        f"<th{' class=num data-type=num' if c.num else ''}>{_e(c.label)}</th>" for c in cols
    )
    body = []
    for row in rows:
        cells = []
        for c, (content, v) in zip(cols, row, strict=True):
            attrs = ' class="num"' if c.num else (' class="wrap"' if c.wrap else "")
            if v is not None:
                attrs += f' data-v="{_e(v)}"'
            cells.append(f"<td{attrs}>{content}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="tablewrap"><table id="{_e(tid)}" class="{cls}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _filters(tid: str, select_cols: dict[int, tuple[str, list[str]]] | None = None) -> str:
    parts = [
        f'<input type="search" placeholder="filter rows…" data-table="{_e(tid)}" aria-label="filter">'
    ]
    for col, (label, options) in (select_cols or {}).items():
        opts = "".join(f'<option value="{_e(o)}">{_e(o)}</option>' for o in options)
        parts.append(
            f'<label>{_e(label)} <select data-table="{_e(tid)}" data-col="{col}">'
            f'<option value="">all</option>{opts}</select></label>'
        )
    parts.append(f'<span class="count" id="{_e(tid)}-count"></span>')
    return '<div class="filters">' + "".join(parts) + "</div>"


def _page(title: str, body: str, *, root: str, subtitle: str = "") -> str:
    nav = "".join(
        f'<a href="{root}index.html#{a}">{_e(t)}</a>'
        for a, t in [
            ("summary", "Summary"),
            ("scans", "Scans"),
            ("clusters", "Ranked clusters"),
            ("gallery", "Gallery"),
            ("plots", "Plots"),
            ("config", "Configuration"),
        ]
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(csp())}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f'<header><h1>{_e(title)}</h1><div class="sub">{subtitle}</div></header>'
        f"<nav>{nav}</nav><main>{body}</main><script>{JS}</script></body></html>\n"
    )


def _facts(pairs: list[tuple[str, str]]) -> str:
    return (
        '<dl class="facts">'
        + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in pairs)
        + "</dl>"
    )


# ----------------------------------------------------------------------------- per-scan bookkeeping
@dataclass
class _ScanOut:
    scan_id: str
    page: str  # relative to the report root
    heatmap: str | None = None  # relative to the report root
    notes: list[str] = field(default_factory=list)


def _flat(scan_id: str) -> str:
    return safe_relpath(scan_id).replace("/", "~")


def _source_path(run_dir: Path, path: Any) -> Path | None:
    if path is None or (isinstance(path, float) and math.isnan(path)) or str(path) == "":
        return None
    p = Path(str(path))
    if not p.is_absolute() and not p.exists() and (run_dir / p).exists():
        return run_dir / p
    return p


def _existing_heatmap(run_dir: Path, scan_id: str) -> Path | None:
    for rel in (heatmap_relpath(scan_id), f"heatmaps/{scan_id}.png"):
        p = run_dir / rel
        try:
            if p.resolve().is_relative_to(run_dir.resolve()) and p.is_file():
                return p
        except (OSError, ValueError):
            continue
    return None


def _stored_labels(run_dir: Path, scan_id: str, shape: tuple[int, int]) -> np.ndarray | None:
    """The pipeline's label image ``labels/<safe scan id>.tif`` (value = region_id), if usable."""
    path = run_dir / "labels" / f"{safe_relpath(scan_id)}.tif"
    if not path.is_file():
        return None
    import tifffile

    try:
        lab = tifffile.imread(path)
    except Exception as exc:  # tifffile raises many types for broken files
        log.warning("report: cannot read %s: %s", path, exc)
        return None
    if lab.shape != tuple(shape) or lab.dtype.kind not in "ui":
        log.warning(
            "report: %s has shape %s %s, expected %s integer", path, lab.shape, lab.dtype, shape
        )
        return None
    return lab


def _pixel_size(row: pd.Series) -> float | None:
    v = row.get("pixel_size_um")
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def _ok(row: pd.Series) -> bool:
    return str(row.get("status", "ok")) == "ok"


def _rank_clusters(clusters: pd.DataFrame) -> pd.DataFrame:
    if clusters.empty:
        return clusters
    cl = clusters.copy()
    if "rank" in cl.columns:
        cl = cl.sort_values("rank", kind="stable")
    elif "score" in cl.columns:
        cl = cl.sort_values("score", ascending=False, kind="stable")
        cl["rank"] = np.arange(1, len(cl) + 1)
    else:
        cl["rank"] = np.arange(1, len(cl) + 1)
    return cl.reset_index(drop=True)


def _cluster_aggregates(regions: pd.DataFrame, score: str) -> tuple[pd.DataFrame, str, str]:
    """Per (scan_id, cluster_id): total area, largest eq. diameter, mean score; plus units."""
    area_col, len_col = "area_px", "eq_diameter_px"
    area_u, len_u = "px²", "px"
    if "area_um2" in regions.columns and regions["area_um2"].notna().all() and len(regions):
        area_col, area_u = "area_um2", "µm²"
    if (
        "eq_diameter_um" in regions.columns
        and regions["eq_diameter_um"].notna().all()
        and len(regions)
    ):
        len_col, len_u = "eq_diameter_um", "µm"
    need = {"scan_id", "cluster_id", area_col, len_col}
    if regions.empty or not need <= set(regions.columns):
        return pd.DataFrame(columns=["scan_id", "cluster_id"]), area_u, len_u
    m = regions[regions["cluster_id"] >= 0]
    agg = {"total_area": (area_col, "sum"), "max_eqd": (len_col, "max")}
    if score in m.columns:
        agg["mean_score"] = (score, "mean")
    out = m.groupby(["scan_id", "cluster_id"], sort=False).agg(**agg).reset_index()
    return out, area_u, len_u


# ----------------------------------------------------------------------------- rendering
def _render_scan_images(
    run: RunData,
    row: pd.Series,
    regions: pd.DataFrame,
    clusters: pd.DataFrame,
    top: pd.DataFrame,
    cfg: ReportConfig,
    out: Path,
    info: _ScanOut,
    gallery: dict[int, str],
) -> None:
    sid = info.scan_id
    existing = _existing_heatmap(run.run_dir, sid)
    if existing is not None:
        info.heatmap = os.path.relpath(existing, out).replace(os.sep, "/")
    want_heat = cfg.heatmaps == "always" or (cfg.heatmaps == "missing" and existing is None)
    if not _ok(row) or not (want_heat or len(top)):
        return
    src = _source_path(run.run_dir, row.get("path"))
    if src is None:
        info.notes.append("no source image path recorded: heatmap and crops not rendered")
        return
    from data.errors import ScanReadError
    from data.io import read_scan

    try:
        pixels = read_scan(src).pixels
    except (FileNotFoundError, ScanReadError, OSError) as exc:
        info.notes.append(f"source image not readable ({exc}): heatmap and crops not rendered")
        log.warning("report: scan %s: %s", sid, exc)
        return
    labels = _stored_labels(run.run_dir, sid, pixels.shape)
    if labels is None and scan_kind(row, pixels) == "mask":
        labels = labels_from_mask(pixels, regions)
    if labels is None and len(regions):
        info.notes.append(
            "impurity pixels not available (no labels/ image): drawn as bounding boxes"
        )
    ps = _pixel_size(row)
    if want_heat:
        if cfg.score in regions.columns or regions.empty:
            reg = regions if cfg.score in regions.columns else regions.assign(**{cfg.score: np.nan})
            path = out / "heatmaps" / f"{_flat(sid)}.png"
            save_heatmap(
                path,
                pixels,
                reg,
                score=cfg.score,
                labels=labels,
                clusters=clusters,
                title=f"{sid} — {cfg.score}",
                settings=score_settings(run.config, cfg.score),
                cmap=cfg.cmap,
                max_side=cfg.max_side,
            )
            info.heatmap = path.relative_to(out).as_posix()
        else:
            info.notes.append(f"score column {cfg.score!r} absent: no heatmap")
    for _, c in top.iterrows():  # top-N clusters of this scan only
        rank = int(c["rank"])
        rgb = render_cluster_crop(
            pixels,
            regions,
            c.to_dict(),
            labels=labels,
            score=cfg.score,
            margin=cfg.crop_margin,
            min_margin_px=cfg.crop_min_margin_px,
            side=cfg.crop_side,
            cmap=cfg.cmap,
            pixel_size_um=ps,
        )
        rel = f"gallery/rank-{rank:05d}.png"
        write_png(out / rel, rgb)
        gallery[rank] = rel


# ----------------------------------------------------------------------------- sections
def _summary(run: RunData, scans: pd.DataFrame, n_clusters: int) -> str:
    ok = scans[scans.apply(_ok, axis=1)] if len(scans) else scans
    failed = len(scans) - len(ok)

    def mean_of(col: str) -> float:
        return (
            float(np.nanmean(ok[col].to_numpy(dtype=np.float64)))
            if col in ok and len(ok) and ok[col].notna().any()
            else float("nan")
        )

    n_imp = (
        len(run.regions)
        if len(run.regions)
        else int(np.nansum(ok.get("n_regions", pd.Series(dtype=float))))
    )
    af = mean_of("area_fraction")
    dens_col = (
        "number_density_per_mm2"
        if "number_density_per_mm2" in ok and ok["number_density_per_mm2"].notna().any()
        else "number_density_per_mpx"
    )
    dens_unit = "/mm²" if dens_col.endswith("mm2") else "/Mpx"
    cards = [
        ("scans", f"{len(ok)} ok" + (f" / {failed} failed" if failed else "")),
        ("impurities", f"{n_imp:,}"),
        ("mean area fraction", "–" if math.isnan(af) else f"{100 * af:.3g} %"),
        (
            "mean number density",
            f"{fmt_num(mean_of(dens_col))} {dens_unit}" if dens_col in ok else "–",
        ),
        ("mean grain size G", fmt_num(mean_of("grain_size_G")) if "grain_size_G" in ok else "–"),
        (
            # Heyn mean line intercept: the grain size of uncalibrated scans
            "mean grain intercept",
            f"{fmt_num(mean_of('heyn_mean_px'))} px"
            if "heyn_mean_px" in ok and ok["heyn_mean_px"].notna().any()
            else "–",
        ),
        ("clusters", f"{n_clusters:,}"),
    ]
    if "pixel_size_um" in ok:
        cal = int(ok["pixel_size_um"].notna().sum())
        cards.append(("calibrated scans", f"{cal} of {len(ok)}"))
    if "t_total_s" in ok:
        cards.append(
            ("processing time", f"{fmt_num(np.nansum(ok['t_total_s'].to_numpy(dtype=float)))} s")
        )
    html_cards = "".join(
        f'<div class="card"><div class="v">{_e(v)}</div><div class="k">{_e(k)}</div></div>'
        for k, v in cards
    )
    return f'<section id="summary"><h2>Summary</h2><div class="cards">{html_cards}</div></section>'


def _scans_table(scans: pd.DataFrame, outs: dict[str, _ScanOut], root: str) -> str:
    cols = [
        _Col("scan"),
        _Col("status"),
        _Col("impurities", True),
        _Col("area fraction %", True),
        _Col("density /Mpx", True),
        _Col("density /mm²", True),
        _Col("grain size G", True),
        _Col("grain intercept px", True),
        _Col("size (rows × cols)"),
        _Col("pixel µm", True),
        _Col("time s", True),
        _Col("heatmap"),
        _Col("notes"),
    ]
    rows = []
    for _, r in scans.iterrows():
        sid = str(r["scan_id"])
        o = outs[sid]
        af = r.get("area_fraction")
        size = (
            f"{int(r['height'])} × {int(r['width'])}"
            if pd.notna(r.get("height")) and pd.notna(r.get("width"))
            else "–"
        )
        status = str(r.get("status", "ok"))
        rows.append(
            [
                (f'<a href="{root}{_href(o.page)}">{_e(sid)}</a>', sid),
                (
                    f'<span class="bad">{_e(status)}</span>' if status != "ok" else _e(status),
                    status,
                ),
                (_e(fmt_num(r.get("n_regions"))), _num_v(r.get("n_regions"))),
                (_e(fmt_num(100 * float(af)) if pd.notna(af) else "–"), _num_v(af)),
                (
                    _e(fmt_num(r.get("number_density_per_mpx"))),
                    _num_v(r.get("number_density_per_mpx")),
                ),
                (
                    _e(fmt_num(r.get("number_density_per_mm2"))),
                    _num_v(r.get("number_density_per_mm2")),
                ),
                (_e(fmt_num(r.get("grain_size_G"))), _num_v(r.get("grain_size_G"))),
                (_e(fmt_num(r.get("heyn_mean_px"))), _num_v(r.get("heyn_mean_px"))),
                (_e(size), None),
                (_e(fmt_num(r.get("pixel_size_um"))), _num_v(r.get("pixel_size_um"))),
                (_e(fmt_num(r.get("t_total_s"))), _num_v(r.get("t_total_s"))),
                (f'<a href="{root}{_href(o.heatmap)}">heatmap</a>' if o.heatmap else "–", None),
                (
                    f'<a href="{root}{_href(o.page)}" title="{_e("; ".join(o.notes))}">{len(o.notes)} note'
                    f"{'s' if len(o.notes) > 1 else ''}</a>"
                    if o.notes
                    else "",
                    None,
                ),
            ]
        )
    return _table("scans-table", cols, rows)


def _clusters_table(
    ranked: pd.DataFrame,
    aggs: pd.DataFrame,
    area_u: str,
    len_u: str,
    outs: dict[str, _ScanOut],
    gallery: dict[int, str],
    score: str,
    limit: int,
) -> str:
    if ranked.empty:
        return "<p>No clusters in this run.</p>"
    cl = ranked.head(limit)
    if len(aggs) and "scan_id" in cl.columns and "cluster_id" in cl.columns:
        cl = cl.merge(aggs, on=["scan_id", "cluster_id"], how="left")
    cols = [
        _Col("rank", True),
        _Col("scan"),
        _Col("percentile", True),
        _Col("score", True),
        _Col("norm. score", True),
        _Col("impurities", True),
        _Col(f"total area {area_u}", True),
        _Col(f"max eq. diameter {len_u}", True),
        _Col(f"mean {score}", True),
        _Col("box rows"),
        _Col("box cols"),
        _Col("crop"),
        _Col("heatmap"),
    ]
    rows = []
    for _, c in cl.iterrows():
        sid = str(c.get("scan_id", ""))
        o = outs.get(sid)
        rank = int(c["rank"])
        crop = gallery.get(rank)
        rows.append(
            [
                (_e(rank), str(rank)),
                (f'<a href="{_href(o.page)}">{_e(sid)}</a>' if o else _e(sid), sid),
                (_e(c.get("percentile", "–")), _pct_v(c.get("percentile"))),
                (_e(fmt_num(c.get("score"))), _num_v(c.get("score"))),
                (_e(fmt_num(c.get("norm_score"))), _num_v(c.get("norm_score"))),
                (_e(fmt_num(c.get("n_regions"))), _num_v(c.get("n_regions"))),
                (_e(fmt_num(c.get("total_area"))), _num_v(c.get("total_area"))),
                (_e(fmt_num(c.get("max_eqd"))), _num_v(c.get("max_eqd"))),
                (_e(fmt_num(c.get("mean_score"))), _num_v(c.get("mean_score"))),
                (_e(f"{int(c['bbox_rmin'])}–{int(c['bbox_rmax'])}"), _num_v(c["bbox_rmin"])),
                (_e(f"{int(c['bbox_cmin'])}–{int(c['bbox_cmax'])}"), _num_v(c["bbox_cmin"])),
                (f'<a class="crop" href="{_href(crop)}">crop #{rank}</a>' if crop else "–", None),
                (f'<a href="{_href(o.heatmap)}">heatmap</a>' if o and o.heatmap else "–", None),
            ]
        )
    pct = sorted(
        {str(p) for p in cl.get("percentile", pd.Series(dtype=str)).dropna()},
        key=lambda p: -float(_pct_v(p) or "-1"),
    )
    note = (
        f"<p>Showing the best {limit:,} of {len(ranked):,} clusters.</p>"
        if len(ranked) > limit
        else ""
    )
    return (
        note
        + _filters("clusters-table", {2: ("percentile", pct)} if pct else None)
        + _table("clusters-table", cols, rows)
    )


def _gallery(
    top: pd.DataFrame,
    regions: pd.DataFrame,
    scans: pd.DataFrame,
    outs: dict[str, _ScanOut],
    gallery: dict[int, str],
    score: str,
    root: str = "",
) -> str:
    if top.empty:
        return "<p>No clusters to show.</p>"
    sizes = {str(r["scan_id"]): _pixel_size(r) for _, r in scans.iterrows()}
    has_ids = {"scan_id", "cluster_id"} <= set(regions.columns)
    groups = (
        regions.groupby(["scan_id", "cluster_id"], sort=False).indices
        if has_ids and len(regions)
        else {}
    )
    cards = []
    for _, c in top.iterrows():
        rank = int(c["rank"])
        sid = str(c.get("scan_id", ""))
        idx = groups.get((c.get("scan_id"), c.get("cluster_id")), [])
        members = regions.iloc[idx] if len(idx) else regions.iloc[0:0]
        facts = cluster_facts(c.to_dict(), members, score=score, pixel_size_um=sizes.get(sid))
        o = outs.get(sid)
        crop = gallery.get(rank)
        if crop:
            img = f'<a href="{root}{_href(crop)}"><img src="{root}{_href(crop)}" alt="cluster #{rank}" loading="lazy"></a>'
        else:
            why = "; ".join(o.notes) if o and o.notes else "crop not rendered"
            img = f'<div class="note">{_e(why)}</div>'
        link = f'<a href="{root}{_href(o.page)}">{_e(sid)}</a>' if o else _e(sid)
        short = ", ".join(
            f"{k} {v}" for k, v in facts if k in ("cluster score", "percentile", "impurities")
        )
        cards.append(
            f"<figure>{img}<figcaption><b>#{rank}</b> {link}<br>{_e(short)}</figcaption></figure>"
        )
    return '<div class="gallery">' + "".join(cards) + "</div>"


def _plots(run: RunData, out: Path, min_area_px: int) -> str:
    reg = run.regions
    parts = []
    if len(reg):
        small = np.zeros(len(reg), bool)
        if "area_px" in reg.columns and min_area_px > 1:
            small = reg["area_px"].to_numpy(dtype=np.float64) < min_area_px
        sized = reg[~small]
        if "eq_diameter_um" in reg.columns and reg["eq_diameter_um"].notna().all():
            vals, unit = sized["eq_diameter_um"], "µm"
        elif "eq_diameter_px" in reg.columns:
            vals, unit = sized["eq_diameter_px"], "px"
        else:
            vals, unit = None, ""
        if vals is not None:
            rgb, fit = plot_size_distribution(vals.to_numpy(dtype=np.float64), unit=unit)
            write_png(out / "plots" / "size_distribution.png", rgb)
            cap = (
                f"Log-normal fit (maximum likelihood, location 0): median {fit.median:.4g} {unit}, "
                f"σ of log = {fit.sigma:.4g}, mean {fit.mean:.4g} {unit}, n = {fit.n:,}; "
                f"Kolmogorov–Smirnov D = {fit.ks_stat:.3f}."
                if fit
                else "Too few impurities for a log-normal fit."
            )
            if small.any():
                cap += (
                    f" {int(small.sum()):,} impurities smaller than {min_area_px} px² are left out."
                )
            parts.append(
                f'<figure><img src="plots/size_distribution.png" alt="size distribution"><figcaption>{_e(cap)}</figcaption></figure>'
            )
        score_cols = [c for c in reg.columns if c.endswith("_score")]
        if score_cols:
            write_png(
                out / "plots" / "score_histograms.png", plot_score_histograms(reg, score_cols)
            )
            parts.append(
                '<figure><img src="plots/score_histograms.png" alt="score histograms"></figure>'
            )
    return "".join(parts) or "<p>No impurities: nothing to plot.</p>"


def _config(run: RunData) -> str:
    body = "<pre>" + _e(run.config_text or "(no .hydra/config.yaml in the run dir)") + "</pre>"
    if run.overrides_text:
        body += "<h3>Command-line overrides</h3><pre>" + _e(run.overrides_text) + "</pre>"
    return body


def _scan_page(
    row: pd.Series,
    regions: pd.DataFrame,
    ranked: pd.DataFrame,
    o: _ScanOut,
    gallery: dict[int, str],
    cfg: ReportConfig,
    run_name: str,
) -> str:
    root = "../"
    sid = str(row["scan_id"])
    facts = [
        (
            str(k),
            _text(v),
        )
        for k, v in row.items()
    ]
    body = ['<section id="scan"><h2>Scan</h2>', _facts(facts), "</section>"]
    if str(row.get("status", "ok")) != "ok":
        body.insert(1, f'<div class="note bad">This scan failed: {_e(row.get("error", ""))}</div>')
    for n in o.notes:
        body.append(f'<div class="note">{_e(n)}</div>')
    if o.heatmap:
        body.append(
            f'<section class="heatmap"><h2>Heatmap</h2><a href="{root}{_href(o.heatmap)}">'
            f'<img src="{root}{_href(o.heatmap)}" alt="heatmap of {_e(sid)}"></a></section>'
        )
    cl = (
        ranked[ranked["scan_id"] == row["scan_id"]]
        if len(ranked) and "scan_id" in ranked
        else ranked.iloc[0:0]
    )
    body.append("<section><h2>Clusters of this scan</h2>")
    if len(cl):
        cols = [
            _Col("rank", True),
            _Col("percentile"),
            _Col("score", True),
            _Col("impurities", True),
            _Col("box rows"),
            _Col("box cols"),
            _Col("core region ids"),
            _Col("crop"),
        ]
        rows = []
        for _, c in cl.iterrows():
            rank = int(c["rank"])
            crop = gallery.get(rank)
            rows.append(
                [
                    (_e(rank), str(rank)),
                    (_e(c.get("percentile", "–")), None),
                    (_e(fmt_num(c.get("score"))), _num_v(c.get("score"))),
                    (_e(fmt_num(c.get("n_regions"))), _num_v(c.get("n_regions"))),
                    (_e(f"{int(c['bbox_rmin'])}–{int(c['bbox_rmax'])}"), _num_v(c["bbox_rmin"])),
                    (_e(f"{int(c['bbox_cmin'])}–{int(c['bbox_cmax'])}"), _num_v(c["bbox_cmin"])),
                    (_e(c.get("core_region_ids", "")), None),
                    (f'<a href="{root}{_href(crop)}">crop #{rank}</a>' if crop else "–", None),
                ]
            )
        body.append(_table("scan-clusters", cols, rows))
        gal = [
            (rank, g) for rank, g in sorted(gallery.items()) if rank in set(cl["rank"].astype(int))
        ]
        if gal:
            body.append(
                '<div class="gallery" style="margin-top:12px">'
                + "".join(
                    f'<figure><a href="{root}{_href(g)}"><img src="{root}{_href(g)}" alt="cluster #{r}" loading="lazy"></a>'
                    f"<figcaption><b>#{r}</b></figcaption></figure>"
                    for r, g in gal
                )
                + "</div>"
            )
    else:
        body.append("<p>No clusters.</p>")
    body.append("</section>")
    if len(regions) and cfg.top_regions_per_scan:
        sc = cfg.score if cfg.score in regions.columns else None
        top = (
            regions.sort_values(sc, ascending=False, na_position="last").head(
                cfg.top_regions_per_scan
            )
            if sc
            else regions.head(cfg.top_regions_per_scan)
        )
        wanted = [
            "region_id",
            *[c for c in regions.columns if c.endswith("_score")],
            "cluster_id",
            "area_um2",
            "area_px",
            "eq_diameter_um",
            "eq_diameter_px",
            "feret_max_um",
            "feret_max_px",
            "solidity",
            "centroid_row",
            "centroid_col",
        ]
        show = [c for c in wanted if c in top.columns and top[c].notna().any()]
        cols = [_Col(c, True) for c in show]
        columns = [top[c].to_numpy() for c in show]  # per column: iterrows would upcast ids to float
        rows = [[(_e(_text(col[i])), _num_v(col[i])) for col in columns] for i in range(len(top))]
        title = f"Top {len(top)} impurities by {sc}" if sc else f"First {len(top)} impurities"
        body.append(f"<section><h2>{_e(title)}</h2>{_table('scan-regions', cols, rows)}</section>")
    return _page(
        f"{sid} — quantmet report", "".join(body), root=root, subtitle=_e(f"run {run_name}")
    )


# ----------------------------------------------------------------------------- entry point
def write_report(
    run_dir: str | Path,
    *,
    top_n: int = 50,
    score: str = "combined_score",
    cmap: str = "viridis",
    max_side: int = 2048,
    crop_side: int = 420,
    crop_margin: float = 0.3,
    crop_min_margin_px: int = 16,
    heatmaps: str = "missing",
    top_regions_per_scan: int = 25,
    max_table_rows: int = 5000,
    size_min_area_px: int = 4,
    out_dir: str | Path | None = None,
) -> Path:
    """Build the static HTML report of a run dir.

    Parameters
    ----------
    run_dir : str or Path
        A run dir with ``scans.parquet`` (required), ``regions.parquet``,
        ``clusters.parquet``, ``.hydra/config.yaml`` and optionally ``heatmaps/``.
    top_n : int
        The best-ranked clusters of the archive that get a gallery crop.
    score, cmap, max_side, crop_side, crop_margin, crop_min_margin_px, heatmaps,
    top_regions_per_scan, max_table_rows, size_min_area_px
        See :class:`experiments.reporting.ReportConfig`.
    out_dir : str or Path, optional
        Where to write; default ``<run_dir>/report``.

    Returns
    -------
    Path
        ``<out_dir>/index.html``.  Per-scan pages are under ``scans/``, crops under
        ``gallery/rank-NNNNN.png``, plots under ``plots/``, heatmaps the run lacked
        under ``heatmaps/``.

    Raises
    ------
    FileNotFoundError
        If ``run_dir`` is not a run dir.
    ValueError
        On a bad option.
    """
    cfg = ReportConfig(
        top_n=top_n,
        score=score,
        cmap=cmap,
        max_side=max_side,
        crop_side=crop_side,
        crop_margin=crop_margin,
        crop_min_margin_px=crop_min_margin_px,
        heatmaps=heatmaps,
        top_regions_per_scan=top_regions_per_scan,
        max_table_rows=max_table_rows,
        size_min_area_px=size_min_area_px,
    )
    run = load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else run.run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    scans = run.scans.copy()
    scans["scan_id"] = scans["scan_id"].astype(str)
    regions = run.regions
    if len(regions) and "scan_id" in regions.columns:
        regions = regions.assign(scan_id=regions["scan_id"].astype(str))
    ranked = _rank_clusters(run.clusters)
    if len(ranked) and "scan_id" in ranked.columns:
        ranked["scan_id"] = ranked["scan_id"].astype(str)
    top = ranked.head(cfg.top_n)
    outs = {sid: _ScanOut(sid, f"scans/{_flat(sid)}.html") for sid in scans["scan_id"]}
    reg_by_scan = (
        regions.groupby("scan_id", sort=False).indices
        if len(regions) and "scan_id" in regions
        else {}
    )
    cl_by_scan = (
        ranked.groupby("scan_id", sort=False).indices if len(ranked) and "scan_id" in ranked else {}
    )
    top_by_scan = (
        top.groupby("scan_id", sort=False).indices if len(top) and "scan_id" in top else {}
    )
    gallery: dict[int, str] = {}
    if "region_id" in regions.columns:
        empty_reg = regions.iloc[0:0]
    else:
        from data.regions import empty_regions

        empty_reg = empty_regions()
    for i, (_, row) in enumerate(scans.iterrows(), 1):
        sid = row["scan_id"]
        reg = regions.iloc[reg_by_scan[sid]] if sid in reg_by_scan else empty_reg
        cl = ranked.iloc[cl_by_scan[sid]] if sid in cl_by_scan else ranked.iloc[0:0]
        tp = top.iloc[top_by_scan[sid]] if sid in top_by_scan else top.iloc[0:0]
        _render_scan_images(run, row, reg, cl, tp, cfg, out, outs[sid], gallery)
        log.info("report: scan %d/%d %s", i, len(scans), sid)
    aggs, area_u, len_u = _cluster_aggregates(regions, cfg.score)

    failed = scans[~scans.apply(_ok, axis=1)] if len(scans) else scans
    sections = [_summary(run, scans, len(ranked))]
    notes = list(run.notes) + [f"{s}: {n}" for s, o in outs.items() for n in o.notes]
    if notes:
        sections.append(
            '<section id="notes"><h2>Notes</h2><ul>'
            + "".join(f"<li>{_e(n)}</li>" for n in notes)
            + "</ul></section>"
        )
    sections.append(
        f'<section id="scans"><h2>Scans ({len(scans)})</h2>{_filters("scans-table")}{_scans_table(scans, outs, "")}</section>'
    )
    if len(failed):
        cols = [_Col("scan"), _Col("path", wrap=True), _Col("error", wrap=True)]
        rows = [
            [
                (_e(r["scan_id"]), None),
                (_e(r.get("path", "")), None),
                (_e(r.get("error", "")), None),
            ]
            for _, r in failed.iterrows()
        ]
        sections.append(
            f'<section id="failed"><h2 class="bad">Failed scans ({len(failed)})</h2>{_table("failed-table", cols, rows)}</section>'
        )
    sections.append(
        f'<section id="clusters"><h2>Ranked clusters ({len(ranked):,})</h2>'
        "<p>Rank 1 is the most anomalous region of the archive. Click a column header to sort.</p>"
        f"{_clusters_table(ranked, aggs, area_u, len_u, outs, gallery, cfg.score, cfg.max_table_rows)}</section>"
    )
    sections.append(
        f'<section id="gallery"><h2>Gallery: top {len(top)} clusters</h2>'
        f"{_gallery(top, regions, scans, outs, gallery, cfg.score)}</section>"
    )
    sections.append(
        f'<section id="plots" class="plots"><h2>Plots</h2>{_plots(run, out, cfg.size_min_area_px)}</section>'
    )
    sections.append(f'<section id="config"><h2>Configuration</h2>{_config(run)}</section>')
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    sub = _e(f"run dir {run.run_dir.resolve()} · generated {now}")
    index = out / "index.html"
    index.write_text(
        _page(f"quantmet report — {run.run_dir.name}", "".join(sections), root="", subtitle=sub),
        encoding="utf-8",
    )
    (out / "scans").mkdir(exist_ok=True)
    for _, row in scans.iterrows():
        sid = row["scan_id"]
        reg = regions.iloc[reg_by_scan[sid]] if sid in reg_by_scan else empty_reg
        o = outs[sid]
        (out / o.page).write_text(
            _scan_page(row, reg, ranked, o, gallery, cfg, run.run_dir.name), encoding="utf-8"
        )
    log.info(
        "report written: %s (%d scans, %d clusters, %d crops)",
        index,
        len(scans),
        len(ranked),
        len(gallery),
    )
    return index
