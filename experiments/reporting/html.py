"""The static HTML report of a run: ``<run dir>/report/index.html``, bounded and self-contained.

Built at the end of a run from what the driver holds (the ranked clusters, the merged histograms,
the gallery crops the workers drew: :class:`ReportData`), or rebuilt later from the run's files
(``python -m experiments.report run_dir=...``).  Bounded for huge archives: a gallery of the top
``top_n`` clusters, a clusters table of at most ``max_table_rows`` rows in pages of
``page_rows``, one page per scan only for the scans holding those top clusters, plots from
fixed-bin histograms.  Self-contained: every image it shows is copied into the report folder,
every link is relative, so the folder can be moved or zipped; no server, no network (a
Content-Security-Policy forbids it).  Pages are Jinja2 templates (``templates/``) with
autoescaping: every text from data (scan ids, paths, errors, configs, reasons) is escaped.

Source scans are read only when a picture the report needs is missing (a crop of a resumed scan,
``heatmaps=always``, a run that had no heatmaps), and only for the scans it shows.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from ..layout import RunLayout, scan_relpath
from ._assets import CSS, JS, csp
from ._imaging import score_settings
from ._run import is_phase_run, load_run, labels_from_mask, scan_kind
from .config import ReportConfig
from .gallery import cluster_facts, fmt_num, object_noun, render_cluster_crop
from .heatmaps import render_heatmap, write_png
from .stats import RegionStats

__all__ = ["ReportData", "write_report", "region_stats_from_files"]

log = logging.getLogger(__name__)

_MARKER = ".quantmet-report"
_NAV = [("summary", "Summary"), ("scans", "Scans"), ("clusters", "Ranked clusters"), ("gallery", "Gallery"),
        ("plots", "Plots"), ("config", "Configuration")]


@dataclass
class ReportData:
    """What the run's driver holds at the end (the report does not re-read it from files)."""

    clusters: pd.DataFrame
    stats: RegionStats
    crops: dict[tuple[str, int], dict] = field(default_factory=dict)  # (scan, cluster) -> file, facts
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- small helpers
def _href(path: str) -> str:
    return quote(path, safe="/~-._")


def _num_v(x: Any) -> str | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return repr(v) if math.isfinite(v) else None


def _text(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return fmt_num(v)
    return str(v)


def _cell(text: Any, v: Any = None, *, href: str | None = None, cls: str | None = None,
          title: str | None = None, bad: bool = False) -> dict:
    return {"text": _text(text) if not isinstance(text, str) else text, "v": v, "href": href, "cls": cls,
            "title": title, "bad": bad}


def _flat(scan_id: str) -> str:
    """A file name for a scan in the report folder (injective: '~' never appears in scan_relpath)."""
    return scan_relpath(scan_id).replace("/", "~")


def _pixel_size(row: Any) -> float | None:
    try:
        v = float(row.get("pixel_size_um"))
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def _ok(row: Any) -> bool:
    return str(row.get("status", "ok")) == "ok"


def _env():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).with_name("templates"))),
        autoescape=True, trim_blocks=False, lstrip_blocks=False, undefined=jinja2.StrictUndefined,
    )


def _prepare_out(out: Path) -> None:
    """An empty report folder: a previous report is removed, any other non-empty folder is refused."""
    if out.exists():
        if (out / _MARKER).exists():
            shutil.rmtree(out)
        elif any(out.iterdir()):
            raise ValueError(f"{out} is not empty and holds no quantmet report: choose another out_dir")
    out.mkdir(parents=True, exist_ok=True)
    (out / _MARKER).write_text("written by quantmet's report; rebuilt as a whole\n", encoding="utf-8")


# ----------------------------------------------------------------------------- data from files
def region_stats_from_files(layout: RunLayout, scans: pd.DataFrame, *, size_min_area_px: int = 4) -> RegionStats:
    """The report's histograms from ``regions.parquet``, streamed in row groups (bounded memory)."""
    import pyarrow.parquet as pq

    from .stats import region_stats

    st = RegionStats()
    if not layout.regions.exists():
        return st
    calibrated = {str(r["scan_id"]) for _, r in scans.iterrows() if _pixel_size(r) is not None}
    pf = pq.ParquetFile(layout.regions)
    names = pf.schema_arrow.names
    cols = [c for c in names if c in ("scan_id", "area_px", "eq_diameter_px", "eq_diameter_um") or c.endswith("_score")]
    if "scan_id" not in cols:
        return st
    for batch in pf.iter_batches(columns=cols, batch_size=65536):
        df = batch.to_pandas()
        cal = df["scan_id"].astype(str).isin(calibrated).to_numpy()
        for flag in (True, False):
            part = df[cal == flag]
            if len(part):
                st.merge(region_stats(part.drop(columns=["scan_id"]), calibrated=flag, size_min_area_px=size_min_area_px))
    return st


def _regions_of(layout: RunLayout, scan_ids: set[str]) -> pd.DataFrame:
    """The RegionTable rows of a few scans (the ones the report shows), read with a filter."""
    if not scan_ids or not layout.regions.exists():
        return pd.DataFrame()
    try:
        return pd.read_parquet(layout.regions, filters=[("scan_id", "in", sorted(scan_ids))])
    except Exception as exc:  # pyarrow raises several types for broken files
        log.warning("report: cannot read regions of %d scans: %s", len(scan_ids), exc)
        return pd.DataFrame()


def _ranked(clusters: pd.DataFrame) -> pd.DataFrame:
    if clusters.empty:
        return clusters
    cl = clusters.copy()
    if "rank" in cl.columns:
        cl = cl.sort_values("rank", kind="stable")
    else:
        key = "score" if "score" in cl.columns else None
        if key:
            cl = cl.sort_values(key, ascending=False, kind="stable")
        cl["rank"] = np.arange(1, len(cl) + 1)
    cl["scan_id"] = cl["scan_id"].astype(str)
    return cl.reset_index(drop=True)


# ----------------------------------------------------------------------------- pictures
class _Pictures:
    """Copies (or, when missing, draws) the pictures the report shows into the report folder."""

    def __init__(self, layout: RunLayout, out: Path, cfg: ReportConfig, config: dict):
        self.layout, self.out, self.cfg, self.config = layout, out, cfg, config
        self._scan_cache: dict[str, tuple[np.ndarray, np.ndarray | None] | None] = {}
        self.notes: dict[str, list[str]] = {}

    def _note(self, sid: str, text: str) -> None:
        self.notes.setdefault(sid, [])
        if text not in self.notes[sid]:
            self.notes[sid].append(text)

    def _source(self, row: pd.Series, regions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None] | None:
        sid = str(row["scan_id"])
        if sid in self._scan_cache:
            return self._scan_cache[sid]
        got = None
        path = row.get("path")
        if not path or (isinstance(path, float) and math.isnan(path)):
            self._note(sid, "no source image path recorded: missing pictures not drawn")
        else:
            from data.io import read_scan

            try:
                pixels = read_scan(Path(str(path))).pixels
            except Exception as exc:  # noqa: BLE001 - any unreadable source leaves a note
                self._note(sid, f"source image not readable ({type(exc).__name__}: {exc}): missing pictures not drawn")
                pixels = None
            if pixels is not None:
                labels = self._labels(sid, pixels.shape)
                if labels is None and scan_kind(row, pixels) == "mask" and len(regions):
                    labels = labels_from_mask(pixels, regions)
                if labels is None and len(regions):
                    self._note(sid, "impurity pixels not available (no labels/ image): drawn as bounding boxes")
                got = (pixels, labels)
        self._scan_cache[sid] = got
        return got

    def _labels(self, sid: str, shape) -> np.ndarray | None:
        path = self.layout.labels(sid)
        if not path.is_file():
            return None
        import tifffile

        try:
            lab = tifffile.imread(path)
        except Exception as exc:  # noqa: BLE001
            log.warning("report: cannot read %s: %s", path, exc)
            return None
        return lab if lab.shape == tuple(shape) and lab.dtype.kind in "ui" else None

    def heatmap(self, row: pd.Series, regions: pd.DataFrame, clusters: pd.DataFrame) -> str | None:
        sid = str(row["scan_id"])
        rel = f"img/heatmaps/{_flat(sid)}.png"
        src = self.layout.heatmap(sid)
        mode = self.cfg.heatmaps
        if mode == "never":
            return None
        if src.is_file() and mode != "always":
            (self.out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, self.out / rel)
            return rel
        if not _ok(row):
            return None
        got = self._source(row, regions)
        if got is None:
            return None
        score = self.cfg.score if self.cfg.score in regions.columns else None
        if score is None and len(regions):
            self._note(sid, f"score column {self.cfg.score!r} absent: no heatmap")
            return None
        reg = regions if score else regions.assign(**{self.cfg.score: np.nan})
        cl = clusters.assign(tag=clusters["rank"].map(lambda r: f"#{int(r)}")) if len(clusters) else clusters
        rgb = render_heatmap(got[0], reg, score=self.cfg.score, labels=got[1], clusters=cl, cmap=self.cfg.cmap,
                             max_side=self.cfg.max_side, title=f"{sid}: {self.cfg.score}",
                             settings=score_settings(self.config, self.cfg.score))
        write_png(self.out / rel, rgb)
        return rel

    def crop(self, row: pd.Series | None, cluster: pd.Series, regions: pd.DataFrame) -> str | None:
        sid, cid = str(cluster["scan_id"]), int(cluster["cluster_id"])
        rel = f"img/crops/{_flat(sid)}--cluster-{cid}.png"
        src = self.layout.crop(sid, cid)
        if src.is_file():
            (self.out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, self.out / rel)
            return rel
        if row is None or not _ok(row):
            return None
        got = self._source(row, regions)
        if got is None:
            return None
        rgb = render_cluster_crop(got[0], regions, cluster.to_dict(), labels=got[1], score=self.cfg.score,
                                  margin=self.cfg.crop_margin, min_margin_px=self.cfg.crop_min_margin_px,
                                  side=self.cfg.crop_side, cmap=self.cfg.cmap, pixel_size_um=_pixel_size(row))
        write_png(self.out / rel, rgb)
        return rel


# ----------------------------------------------------------------------------- sections
def _object_noun(config: dict, clusters: pd.DataFrame, phase_run: bool) -> tuple[str, str]:
    """What the region rows are: ``('impurities', 'impurities')``, or in a phase run e.g.
    ``('objects', 'objects (pore, oxide)')`` (the table header and the summary card).

    A phase run is told by its ``phases.parquet``; its object phases come from the run's config,
    else from the clusters' ``phase`` column (``oxide+pore``).
    """
    noun = object_noun(phase_run)
    if not phase_run:
        return noun, noun
    ph = config.get("phases") if isinstance(config, dict) else None
    objs = [str(o) for o in (ph.get("objects") or [])] if isinstance(ph, dict) else []
    if not objs and "phase" in clusters:
        objs = sorted({p for v in clusters["phase"].dropna().astype(str) for p in v.split("+") if p})
    return noun, (f"{noun} (" + ", ".join(objs) + ")") if objs else noun


def _cards(scans: pd.DataFrame, n_regions: int, n_clusters: int, noun: str = "impurities") -> list[tuple[str, str]]:
    ok = scans[scans["status"].astype(str) == "ok"] if len(scans) else scans
    failed = len(scans) - len(ok)

    def mean_of(col: str) -> float:
        if col not in ok or not len(ok):
            return float("nan")
        v = pd.to_numeric(ok[col], errors="coerce").to_numpy(dtype=np.float64)
        return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")

    af = mean_of("area_fraction")
    mm2 = mean_of("number_density_per_mm2")
    cards = [
        ("scans", f"{len(ok)} ok" + (f" / {failed} failed" if failed else "")),
        (noun, f"{n_regions:,}"),
        ("mean area fraction", "–" if math.isnan(af) else f"{100 * af:.3g} %"),
        ("mean number density", f"{fmt_num(mm2)} /mm²" if not math.isnan(mm2) else f"{fmt_num(mean_of('number_density_per_mpx'))} /Mpx"),
        ("grain size G (E112, pooled)", _pooled_g(ok)),
        ("mean grain intercept", f"{fmt_num(mean_of('heyn_mean_px'))} px" if not math.isnan(mean_of("heyn_mean_px")) else "–"),
        ("clusters", f"{n_clusters:,}"),
    ]
    if "pixel_size_um" in ok:
        cards.append(("calibrated scans", f"{int(pd.to_numeric(ok['pixel_size_um'], errors='coerce').notna().sum())} of {len(ok)}"))
    if "t_total_s" in ok:
        cards.append(("processing time", f"{fmt_num(np.nansum(pd.to_numeric(ok['t_total_s'], errors='coerce')))} s"))
    return cards


def _pooled_g(ok: pd.DataFrame) -> str:
    """The run's ASTM E112 grain size pooled over its scans, with the 95% interval when there is one."""
    if "n_intercepts" not in ok.columns or not pd.to_numeric(ok["n_intercepts"], errors="coerce").fillna(0).any():
        return "–"
    from segmentation.grains import pooled_grain_size

    with_g = ok[pd.to_numeric(ok["n_intercepts"], errors="coerce").fillna(0) > 0]
    if len(with_g) == 1:  # one scan: its own value and interval (over its fields); pooling needs >= 3 scans
        p = with_g.iloc[0].to_dict()
    else:
        p = pooled_grain_size(ok.reset_index(drop=True))
    g, lo, hi = p.get("grain_size_G"), p.get("grain_size_G_ci95_low"), p.get("grain_size_G_ci95_high")
    if g is None or not math.isfinite(float(g)):
        return "–"
    if lo is not None and hi is not None and math.isfinite(float(lo)) and math.isfinite(float(hi)):
        return f"{float(g):.2f} [{float(lo):.2f}, {float(hi):.2f}]"
    # pooled over scans, each scan is one E112 field: the note counts scans
    note = str(p.get("grain_note") or "no interval").replace("field(s) with boundaries", "scan(s) with boundaries")
    return f"{float(g):.2f} ({note})"


def _interval_text(row: Any, col: str, scale: float, fmt: str) -> str:
    """``[low, high]`` of a scan's 95% interval columns (field spread and repeatability), or ``–``."""
    lo = pd.to_numeric(pd.Series([row.get(f"{col}_ci95_low")]), errors="coerce").iloc[0]
    hi = pd.to_numeric(pd.Series([row.get(f"{col}_ci95_high")]), errors="coerce").iloc[0]
    if pd.isna(lo) or pd.isna(hi):
        return "–"
    return f"[{fmt.format(scale * lo)}, {fmt.format(scale * hi)}]"


def _domain_cell(row: Any) -> dict:
    """Whether the scan lies in the range its model was validated on; the reason when not."""
    inside = row.get("in_domain")
    note = str(row.get("domain_note", "") or "")
    if inside is None or pd.isna(inside):
        return _cell("–")
    if bool(inside):
        return _cell("not checked" if note.startswith("not checked") else "yes")
    return _cell(f"no: {note}", bad=True)


def _scan_table(scans: pd.DataFrame, pages: dict[str, str], root: str,
                noun: str = "impurities") -> tuple[list[dict], list[list[dict]]]:
    cols = [{"label": x[0], "num": x[1], "wrap": False} for x in [
        ("scan", False), ("status", False), (noun, True), (f"{noun}, 95% interval", False),
        ("area fraction %", True), ("area fraction, 95% interval %", False), ("density /Mpx", True),
        ("density /mm²", True), ("grain size G", True), ("grain intercept px", True), ("size (rows × cols)", False),
        ("pixel µm", True), ("calibration", False), ("validated range", False), ("time s", True), ("page", False)]]
    rows = []
    for _, r in scans.iterrows():
        sid = str(r["scan_id"])
        status = str(r.get("status", "ok"))
        af = pd.to_numeric(pd.Series([r.get("area_fraction")]), errors="coerce").iloc[0]
        size = (f"{int(r['height'])} × {int(r['width'])}" if pd.notna(r.get("height")) and pd.notna(r.get("width")) else "–")
        page = pages.get(sid)
        rows.append([
            _cell(sid, sid, href=_href(root + page) if page else None),
            _cell(status, status, bad=status != "ok"),
            _cell(r.get("n_regions"), _num_v(r.get("n_regions"))),
            _cell(_interval_text(r, "n_regions", 1.0, "{:.0f}")),
            _cell(100 * af if pd.notna(af) else None, _num_v(af)),
            _cell(_interval_text(r, "area_fraction", 100.0, "{:.3g}")),
            _cell(r.get("number_density_per_mpx"), _num_v(r.get("number_density_per_mpx"))),
            _cell(r.get("number_density_per_mm2"), _num_v(r.get("number_density_per_mm2"))),
            _cell(r.get("grain_size_G"), _num_v(r.get("grain_size_G"))),
            _cell(r.get("heyn_mean_px"), _num_v(r.get("heyn_mean_px"))),
            _cell(size),
            _cell(r.get("pixel_size_um"), _num_v(r.get("pixel_size_um"))),
            _cell(str(r.get("pixel_size_source", "") or "–")),
            _domain_cell(r),
            _cell(r.get("t_total_s"), _num_v(r.get("t_total_s"))),
            _cell("page" if page else "–", href=_href(root + page) if page else None),
        ])
    return cols, rows


def _cluster_table(cl: pd.DataFrame, pages: dict[str, str], crops: dict[int, str], root: str,
                   noun: str = "impurities"):
    has_reason = "reason" in cl.columns
    spec = [("rank", True), ("scan", False), ("percentile", False), ("score", True), ("norm. score", True),
            (noun, True)]
    if has_reason:
        spec.append(("reason", False))
    spec += [("box rows", False), ("box cols", False), ("crop", False)]
    cols = [{"label": a, "num": b, "wrap": a == "reason"} for a, b in spec]
    rows = []
    for _, c in cl.iterrows():
        sid = str(c["scan_id"])
        rank = int(c["rank"])
        page = pages.get(sid)
        crop = crops.get(rank)
        row = [
            _cell(rank, str(rank)),
            _cell(sid, sid, href=_href(root + page) if page else None),
            _cell(str(c.get("percentile", "–")), _num_v(c.get("top_percent"))),
            _cell(c.get("score"), _num_v(c.get("score"))),
            _cell(c.get("norm_score"), _num_v(c.get("norm_score"))),
            _cell(c.get("n_regions"), _num_v(c.get("n_regions"))),
        ]
        if has_reason:
            row.append(_cell(str(c.get("reason") or "")))
        row += [
            _cell(f"{int(c['bbox_rmin'])}–{int(c['bbox_rmax'])}", _num_v(c["bbox_rmin"])),
            _cell(f"{int(c['bbox_cmin'])}–{int(c['bbox_cmax'])}", _num_v(c["bbox_cmin"])),
            _cell(f"crop #{rank}", href=_href(root + crop), cls="crop") if crop else _cell("–"),
        ]
        rows.append(row)
    return cols, rows


def _plots(stats: RegionStats, out: Path) -> list[dict]:
    from .plots import plot_score_counts, plot_size_counts

    if stats.n_regions == 0:
        return []
    parts = []
    sizes, unit = stats.size_distribution()
    fit = stats.lognormal()
    rgb = plot_size_counts(sizes.counts, unit=unit, fit=fit)
    write_png(out / "plots" / "size_distribution.png", rgb)
    cap = (f"Log-normal fit (maximum likelihood, location 0): median {fit['median']:.4g} {unit}, σ of log = "
           f"{fit['sigma']:.4g}, mean {fit['mean']:.4g} {unit}, n = {fit['n']:,}; Kolmogorov–Smirnov D = "
           f"{fit['ks_stat']:.3f} (against the binned distribution)." if fit else "Too few impurities for a log-normal fit.")
    if stats.n_small:
        cap += f" {stats.n_small:,} impurities smaller than the report's size_min_area_px are left out."
    if unit == "px" and stats.sizes_um.n:
        cap += " Shown in px: some scans are not calibrated."
    parts.append({"src": "plots/size_distribution.png", "alt": "size distribution", "caption": cap})
    if stats.scores:
        write_png(out / "plots" / "score_histograms.png", plot_score_counts(stats.scores, stats.scores_nan))
        parts.append({"src": "plots/score_histograms.png", "alt": "score histograms", "caption": ""})
    return parts


def _region_table(regions: pd.DataFrame, cfg: ReportConfig):
    sc = cfg.score if cfg.score in regions.columns else None
    top = (regions.sort_values(sc, ascending=False, na_position="last") if sc else regions).head(cfg.top_regions_per_scan)
    wanted = ["region_id", *[c for c in regions.columns if c.endswith("_score")], "cluster_id", "inclusion_type",
              "area_um2", "area_px", "eq_diameter_um", "eq_diameter_px", "feret_max_um", "feret_max_px",
              "solidity", "centroid_row", "centroid_col"]
    show = [c for c in wanted if c in top.columns and top[c].notna().any()]
    cols = [{"label": c, "num": c != "inclusion_type", "wrap": False} for c in show]
    columns = [top[c].to_numpy() for c in show]  # per column: iterrows would upcast ids to float
    rows = [[_cell(col[i], _num_v(col[i])) for col in columns] for i in range(len(top))]
    title = f"Top {len(top)} impurities by {sc}" if sc else f"First {len(top)} impurities"
    return title, cols, rows


def _extra_sections(layout: RunLayout, out: Path, scans: pd.DataFrame) -> list[dict]:
    """Phases, ratings, sample comparison and review, when the run has them (links and small tables)."""
    from .phases_section import phase_sections  # lazy: only runs with phases draw them

    sections = phase_sections(layout, scans, out)
    if layout.ratings.exists():
        try:
            rt = pd.read_parquet(layout.ratings)
        except Exception as exc:  # noqa: BLE001
            rt = None
            log.warning("report: cannot read %s: %s", layout.ratings, exc)
        if rt is not None and len(rt) and {"scan_id", "type", "series", "severity"} <= set(rt.columns):
            worst = (rt.groupby(["type", "series"], sort=True)["severity"].agg(["max", "mean", "count"]).reset_index())
            cols = [{"label": x, "num": x not in ("type", "series"), "wrap": False}
                    for x in ("type", "series", "worst severity", "mean severity", "rated fields")]
            rows = [[_cell(str(r["type"])), _cell(str(r["series"])), _cell(r["max"], _num_v(r["max"])),
                     _cell(r["mean"], _num_v(r["mean"])), _cell(r["count"], _num_v(r["count"]))] for _, r in worst.iterrows()]
            sections.append({"id": "ratings", "title": "Inclusion ratings (ASTM E45 / ISO 4967, worst fields)",
                             "text": f"{rt['scan_id'].nunique()} scans rated; per field in ratings.parquet.",
                             "cols": cols, "rows": rows, "images": [], "links": []})
    compare = layout.root / "compare"
    if compare.is_dir():
        imgs, links = [], []
        for p in sorted(compare.glob("*.png"))[:12]:
            dest = out / "img" / "compare" / p.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dest)
            imgs.append({"src": _href(f"img/compare/{p.name}"), "alt": p.stem, "caption": p.stem})
        for p in sorted(compare.glob("*.pdf"))[:4]:
            shutil.copyfile(p, out / p.name)
            links.append({"href": _href(p.name), "text": f"{p.name} (certificate-style summary, PDF)"})
        if imgs or links:
            sections.append({"id": "compare", "title": "Sample comparison", "text": "", "cols": [], "rows": [],
                             "images": imgs, "links": links})
    return sections


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
    page_rows: int = 500,
    size_min_area_px: int = 4,
    out_dir: str | Path | None = None,
    data: ReportData | None = None,
) -> Path:
    """Build the static HTML report of a run dir.

    Parameters
    ----------
    run_dir : str or Path
        A run dir with ``scans.parquet`` (required), ``clusters.parquet``, ``regions.parquet``,
        ``.hydra/config.yaml`` and the pictures of the run (``heatmaps/``, ``crops/``).
    top_n, score, cmap, max_side, crop_side, crop_margin, crop_min_margin_px, heatmaps,
    top_regions_per_scan, max_table_rows, page_rows, size_min_area_px
        See :class:`experiments.reporting.ReportConfig`.
    out_dir : str or Path, optional
        Where to write; default ``<run_dir>/report``.  A previous report there is replaced.
    data : ReportData, optional
        The run's clusters, histograms and crops held in memory (a pipeline run passes them);
        None reads them from the run's files.

    Returns
    -------
    Path
        ``<out_dir>/index.html``.  Per-scan pages under ``scans/``, more pages of the clusters
        table under ``clusters/``, pictures under ``img/`` and ``plots/``.

    Raises
    ------
    FileNotFoundError
        If ``run_dir`` is not a run dir.
    ValueError
        On a bad option.
    """
    cfg = ReportConfig(top_n=top_n, score=score, cmap=cmap, max_side=max_side, crop_side=crop_side,
                       crop_margin=crop_margin, crop_min_margin_px=crop_min_margin_px, heatmaps=heatmaps,
                       top_regions_per_scan=top_regions_per_scan, max_table_rows=max_table_rows,
                       page_rows=page_rows, size_min_area_px=size_min_area_px)
    run = load_run(run_dir, clusters=data.clusters if data is not None else None, regions=False)
    layout = RunLayout(run.run_dir)
    out = Path(out_dir) if out_dir is not None else layout.report_dir
    _prepare_out(out)
    scans = run.scans.copy()
    scans["scan_id"] = scans["scan_id"].astype(str)
    scans_by_id = scans.set_index("scan_id", drop=False)
    clusters = _ranked(run.clusters)
    stats = data.stats if data is not None else region_stats_from_files(layout, scans, size_min_area_px=size_min_area_px)
    known_crops = data.crops if data is not None else {}
    notes = list(run.notes) + (list(data.notes) if data is not None else [])

    top = clusters.head(cfg.top_n)
    page_ids = sorted({str(s) for s in top["scan_id"]}) if len(top) else []
    pages = {sid: f"scans/{_flat(sid)}.html" for sid in page_ids}
    regions = _regions_of(layout, set(page_ids))
    reg_by_scan = regions.groupby(regions["scan_id"].astype(str)).indices if len(regions) else {}
    pictures = _Pictures(layout, out, cfg, run.config)
    noun, card_noun = _object_noun(run.config, clusters, is_phase_run(layout))

    def regions_for(sid: str) -> pd.DataFrame:
        return regions.iloc[reg_by_scan[sid]] if sid in reg_by_scan else regions.iloc[0:0]

    # gallery: the top clusters' crops (drawn by the workers; drawn here only when missing)
    gallery, crop_of_rank = [], {}
    for _, c in top.iterrows():
        sid, cid, rank = str(c["scan_id"]), int(c["cluster_id"]), int(c["rank"])
        row = scans_by_id.loc[sid] if sid in scans_by_id.index else None
        reg = regions_for(sid)
        img = pictures.crop(row, c, reg)
        if img:
            crop_of_rank[rank] = img
        info = known_crops.get((sid, cid))
        if info is not None:
            facts = info.get("facts", [])
        else:
            members = reg[reg["cluster_id"] == cid] if "cluster_id" in reg.columns else reg.iloc[0:0]
            facts = [(k, v) for k, v in cluster_facts(c.to_dict(), members, score=cfg.score,
                                                       pixel_size_um=_pixel_size(row) if row is not None else None)
                     if k not in ("rank", "cluster score", "normalised", "percentile")]
        short = ", ".join(f"{k} {v}" for k, v in facts if k in ("impurities", "objects", "extent", "largest area"))
        gallery.append({"rank": rank, "scan_id": sid, "page": _href(pages[sid]) if sid in pages else None,
                        "img": _href(img) if img else None, "percentile": str(c.get("percentile", "")),
                        "reason": str(c.get("reason") or ""), "short": short,
                        "missing": "; ".join(pictures.notes.get(sid, [])) or "crop not available"})

    env = _env()
    common = {"csp": csp(), "css": CSS, "js": JS, "nav": _NAV}
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    run_name = run.run_dir.resolve().name

    # per-scan pages, only for the scans holding top clusters
    (out / "scans").mkdir(exist_ok=True)
    for sid in page_ids:
        row = scans_by_id.loc[sid]
        reg = regions_for(sid)
        cl = clusters[clusters["scan_id"] == sid]
        heat = pictures.heatmap(row, reg, cl)
        ccols, crows = _cluster_table(cl, {}, crop_of_rank, "../", noun)
        rtitle, rcols, rrows = _region_table(reg, cfg) if len(reg) and cfg.top_regions_per_scan else ("", [], [])
        html = env.get_template("scan.html.j2").render(
            **common, root="../", title=f"{sid} — quantmet report", subtitle=f"run {run_name}", scan_id=sid,
            error=str(row.get("error", "")) if not _ok(row) else "",
            scan_facts=[(str(k), _text(v)) for k, v in row.items()], notes=pictures.notes.get(sid, []),
            heatmap=_href("../" + heat) if heat else None, cluster_cols=ccols, cluster_rows=crows,
            gallery=[{"img": _href("../" + crop_of_rank[int(r)]), "rank": int(r),
                      "reason": str(x or "")} for r, x in zip(cl["rank"], cl.get("reason", [""] * len(cl)))
                     if int(r) in crop_of_rank],
            regions_title=rtitle, region_cols=rcols, region_rows=rrows)
        (out / pages[sid]).write_text(html, encoding="utf-8")

    # the clusters table, in pages
    shown = clusters.head(cfg.max_table_rows)
    n_pages = max(1, math.ceil(len(shown) / cfg.page_rows))
    page_list = [{"number": i + 1, "href": "index.html#clusters" if i == 0 else f"clusters/page-{i + 1:04d}.html"}
                 for i in range(n_pages)]
    if n_pages > 1:
        (out / "clusters").mkdir(exist_ok=True)
    first_cols, first_rows = _cluster_table(shown.iloc[: cfg.page_rows], pages, crop_of_rank, "", noun)
    for i in range(1, n_pages):
        part = shown.iloc[i * cfg.page_rows : (i + 1) * cfg.page_rows]
        ccols, crows = _cluster_table(part, pages, crop_of_rank, "../", noun)
        html = env.get_template("clusters_page.html.j2").render(
            **common, root="../", title=f"Ranked clusters, page {i + 1} — quantmet report", subtitle=f"run {run_name}",
            cluster_pages=[{**p, "href": p["href"] if i else p["href"]} for p in page_list],
            page_number=i + 1, first=i * cfg.page_rows + 1, last=i * cfg.page_rows + len(part),
            n_clusters=len(clusters), cluster_cols=ccols, cluster_rows=crows)
        (out / f"clusters/page-{i + 1:04d}.html").write_text(html, encoding="utf-8")

    scan_shown = scans.head(cfg.max_table_rows)
    scols, srows = _scan_table(scan_shown, pages, "", noun)
    failed = scans[scans["status"].astype(str) != "ok"]
    fcols = [{"label": "scan", "num": False, "wrap": False}, {"label": "path", "num": False, "wrap": True},
             {"label": "error", "num": False, "wrap": True}]
    frows = [[_cell(str(r["scan_id"])), _cell(str(r.get("path", ""))), _cell(str(r.get("error", "")))]
             for _, r in failed.head(cfg.max_table_rows).iterrows()]
    n_regions = int(pd.to_numeric(scans.get("n_regions", pd.Series(dtype=float)), errors="coerce").fillna(0).sum())
    all_notes = notes + [f"{s}: {n}" for s, ns in pictures.notes.items() for n in ns]
    html = env.get_template("index.html.j2").render(
        **common, root="", title=f"quantmet report — {run_name}",
        subtitle=f"run dir {run.run_dir.resolve()} · generated {now}",
        cards=_cards(scans, n_regions, len(clusters), card_noun), notes=all_notes, n_scans=len(scans),
        scans_note=(f"Showing the first {len(scan_shown):,} of {len(scans):,} scans; every scan is in scans.parquet."
                    if len(scans) > len(scan_shown) else ""),
        scan_cols=scols, scan_rows=srows, n_failed=len(failed), failed_cols=fcols, failed_rows=frows,
        failed_note=(f"Showing {len(frows):,} of {len(failed):,}." if len(failed) > len(frows) else ""),
        n_clusters=len(clusters), cluster_pages=page_list, cluster_cols=first_cols, cluster_rows=first_rows,
        clusters_note=(f"The table holds the best {len(shown):,} of {len(clusters):,} clusters (report.max_table_rows); "
                       "all of them are in clusters.parquet." if len(clusters) > len(shown) else ""),
        gallery=gallery, extra_sections=_extra_sections(layout, out, scans), plots=_plots(stats, out),
        config_text=run.config_text or "(no .hydra/config.yaml in the run dir)", overrides_text=run.overrides_text)
    index = out / "index.html"
    index.write_text(html, encoding="utf-8")
    log.info("report written: %s (%d scans, %d clusters, %d crops, %d scan pages)", index, len(scans),
             len(clusters), len(crop_of_rank), len(pages))
    return index
