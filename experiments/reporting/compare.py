"""The ``compare`` task: sample groups of a finished run compared (summaries, ANOVA, Tukey HSD, plots, PDF).

``python -m experiments.run +exp=compare compare.run_dir=outputs/2026-11-22/10-00-00 [compare.groups=groups.csv]``

Reads the run's ``scans.parquet`` (and ``ratings.parquet`` when the scan table lacks the
worst-field columns), assigns each scan to a group (:func:`data.standards.assign_groups`), and for
each per-scan metric writes per-group summaries, a one-way ANOVA and Tukey HSD
(:mod:`scipy.stats`).  Outputs, in ``compare.out_dir`` (default: the compare run's own Hydra dir):

- ``groups.csv`` (scan_id, path, group), ``summary.csv``, ``anova.csv``, ``tukey.csv``;
- ``plots/<metric>.png`` (box plot with the scans as points, per group);
- ``compare.pdf``: a certificate-style summary (matplotlib's PDF backend);
- ``fragment.html`` (a ``<section>`` the run report can embed; images linked relatively) and
  ``index.html`` (the same as a page);
- ``compare.json``: settings, notes and file list.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
import textwrap
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

from data.errors import QuantmetError
from data.standards import anova_table, assign_groups, group_summary, tukey_table, worst_column

from .config_compare import CompareConfig
from .exports import unit_label

__all__ = ["DEFAULT_METRICS", "CompareConfig", "CompareError", "CompareResult", "compare_run", "run"]

log = logging.getLogger(__name__)

#: Metrics compared by default, when the run has them (plus every ``e45_*_worst`` column).
DEFAULT_METRICS: tuple[str, ...] = (
    "area_fraction",
    "number_density_per_mm2",
    "grain_size_G",
    "e1245_area_fraction_mean",
    "e1245_number_per_mm2_mean",
    "e1245_mean_free_path_um_mean",
    "e1245_mean_area_um2_mean",
)
_WORST = re.compile(r"^e45_[A-Za-z]+(_thin|_heavy)?_worst$")


class CompareError(QuantmetError, ValueError):
    """Bad compare request (no run dir, unknown metric)."""


@dataclass(frozen=True)
class CompareResult:
    """What :func:`compare_run` computed and wrote."""

    out_dir: Path
    groups: pd.DataFrame
    summary: pd.DataFrame
    anova: pd.DataFrame
    tukey: pd.DataFrame
    metrics: tuple[str, ...]
    files: tuple[Path, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)


def _worst_from_ratings(ratings: pd.DataFrame) -> pd.DataFrame:
    need = {"scan_id", "type", "series", "severity"}
    if ratings.empty or not need <= set(ratings.columns):
        return pd.DataFrame(columns=["scan_id"])
    w = ratings.groupby(["scan_id", "type", "series"], sort=False)["severity"].max().reset_index()
    w["column"] = [worst_column(t, s) for t, s in zip(w["type"], w["series"])]
    return w.pivot_table(index="scan_id", columns="column", values="severity", aggfunc="max").reset_index()


def _run_group_spec(run_dir: Path) -> str | None:
    cfg = run_dir / ".hydra" / "config.yaml"
    if not cfg.exists():
        return None
    try:
        spec = OmegaConf.select(OmegaConf.load(cfg), "data.groups")
    except Exception:  # a broken YAML file just means no spec
        return None
    return None if spec in (None, "") else str(spec)


#: Per-scan coating columns compared by default when the run measured a coating (coating.parquet).
COATING_METRICS: tuple[str, ...] = ("porosity", "thickness_mean_um", "thickness_std_um")
_PHASE_METRIC = re.compile(r"^phase_.+_fraction$")


def _with_phase_metrics(scans: pd.DataFrame, run_dir: Path, notes: list[str]) -> pd.DataFrame:
    """The scan table with ``phase_<name>_fraction`` (phases.parquet) and the coating columns, when present."""
    phases, coating = run_dir / "phases.parquet", run_dir / "coating.parquet"
    if phases.exists():
        ph = pd.read_parquet(phases, columns=["scan_id", "phase", "area_fraction"])
        if len(ph):
            wide = ph.pivot_table(index="scan_id", columns="phase", values="area_fraction", sort=False)
            wide.columns = [f"phase_{c}_fraction" for c in wide.columns]
            scans = scans.merge(wide.reset_index(), on="scan_id", how="left")
            notes.append("phase fractions taken from phases.parquet")
    if coating.exists():
        co = pd.read_parquet(coating)
        keep = ["scan_id", *[c for c in COATING_METRICS if c in co.columns and c not in scans.columns]]
        if len(co) and len(keep) > 1:
            scans = scans.merge(co[keep], on="scan_id", how="left")
            notes.append("porosity and thickness taken from coating.parquet")
    return scans


def _metrics(table: pd.DataFrame, requested: tuple[str, ...] | None, notes: list[str]) -> list[str]:
    numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])]
    if requested is not None:
        unknown = [m for m in requested if m not in numeric]
        if unknown:
            raise CompareError(f"unknown metric(s) {unknown}; numeric per-scan columns: {sorted(numeric)}")
        chosen = list(requested)
    else:
        chosen = ([m for m in DEFAULT_METRICS if m in numeric] + sorted(c for c in numeric if _WORST.match(c))
                  + [c for c in numeric if _PHASE_METRIC.match(c)] + [m for m in COATING_METRICS if m in numeric])
        missing = [m for m in DEFAULT_METRICS if m not in numeric]
        if missing:
            notes.append(f"not in the run (skipped): {', '.join(missing)}")
    out = []
    for m in chosen:
        if np.isfinite(table[m].to_numpy(np.float64)).any():
            out.append(m)
        else:
            notes.append(f"{m}: no finite value in any scan (skipped)")
    return out


def _fmt(x: float, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    ax = abs(float(x))
    if ax != 0 and (ax < 1e-3 or ax >= 1e5):
        return f"{x:.3g}"
    return f"{x:.{digits}g}"


def _fmt_p(p: float) -> str:
    if not math.isfinite(p):
        return "-"
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def _plot_metric(metric: str, values: pd.Series, groups: pd.Series, path: Path) -> None:
    names = sorted(groups.unique().tolist())
    samples = [values[groups == g].to_numpy(np.float64) for g in names]
    samples = [s[np.isfinite(s)] for s in samples]
    fig = Figure(figsize=(max(4.0, 1.1 * len(names) + 2), 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    pos = np.arange(1, len(names) + 1)
    box_idx = [i for i, s in enumerate(samples) if s.size >= 2]
    if box_idx:
        ax.boxplot([samples[i] for i in box_idx], positions=pos[box_idx], widths=0.5, showfliers=False)
    rng = np.random.default_rng(0)
    for i, s in enumerate(samples):
        ax.scatter(pos[i] + rng.uniform(-0.12, 0.12, s.size), s, s=14, color="tab:blue", alpha=0.7, zorder=3)
    ax.set_xticks(pos)
    ax.set_xticklabels([f"{n}\n(n={s.size})" for n, s in zip(names, samples)], fontsize=8)
    ax.set_title(unit_label(metric), fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def _table_page(fig: Figure, rect, header: list[str], rows: list[list[str]], title: str, fontsize=7,
                first_width: float = 0.3, widths: list[float] | None = None) -> None:
    ax = fig.add_axes(rect)
    ax.axis("off")
    ax.set_title(title, fontsize=9, loc="left")
    if not rows:
        ax.text(0, 0.9, "(none)", fontsize=fontsize)
        return
    k = len(header)
    if widths is None:
        widths = [first_width] + [(1.0 - first_width) / (k - 1)] * (k - 1) if k > 1 else [1.0]
    t = ax.table(cellText=rows, colLabels=header, colWidths=widths, loc="upper left", cellLoc="left", colLoc="left")
    t.auto_set_font_size(False)
    t.set_fontsize(fontsize)
    t.scale(1, 1.3)
    for (r, _c), cell in t.get_celld().items():
        cell.set_linewidth(0.3)
        if r == 0:
            cell.set_facecolor("#e8e8e8")
            if any("\n" in h for h in header):
                cell.set_height(cell.get_height() * 1.8)


def _write_pdf(path: Path, *, title: str, meta: list[str], summary: pd.DataFrame, anova: pd.DataFrame,
               tukey: pd.DataFrame, metrics: list[str], plots: dict[str, Path], notes: list[str]) -> None:
    import matplotlib.image as mpimg

    groups = sorted(summary["group"].unique().tolist()) if len(summary) else []
    chunks = [groups[i:i + 4] for i in range(0, len(groups), 4)] or [[]]
    with PdfPages(path, metadata={"Title": title, "Creator": "quantmet"}) as pdf:
        for k, chunk in enumerate(chunks):
            fig = Figure(figsize=(8.27, 11.69))  # A4 portrait
            y = 0.95
            for wrapped in textwrap.wrap(title, 54) or [""]:
                fig.text(0.07, y, wrapped, fontsize=15, weight="bold")
                y -= 0.025
            for line in meta:
                for wrapped in textwrap.wrap(line, 115) or [""]:
                    fig.text(0.07, y, wrapped, fontsize=8)
                    y -= 0.016
            header = ["metric"] + [f"{g}\nmean ± sd (n)" for g in chunk] + ["ANOVA p"]
            rows = []
            for m in metrics:
                row = [unit_label(m)]
                for g in chunk:
                    s = summary[(summary.metric == m) & (summary.group == g)]
                    if s.empty or s.n.iloc[0] == 0:
                        row.append("-")
                    elif s.n.iloc[0] == 1:
                        row.append(f"{_fmt(s['mean'].iloc[0])} (1)*")
                    else:
                        row.append(f"{_fmt(s['mean'].iloc[0])} ± {_fmt(s['sd'].iloc[0], 3)} ({int(s.n.iloc[0])})")
                a = anova[anova.metric == m]
                row.append(_fmt_p(float(a.p_value.iloc[0])) if len(a) else "-")
                rows.append(row)
            part = f" (groups {k * 4 + 1}-{k * 4 + len(chunk)} of {len(groups)})" if len(chunks) > 1 else ""
            _table_page(fig, [0.07, 0.30, 0.86, y - 0.33], header, rows, "Per-group summary" + part, fontsize=6.5,
                        first_width=0.26 if len(chunk) > 2 else 0.3)
            foot = ["* a group with one scan: no test statistic.",
                    "ANOVA: one-way (scipy.stats.f_oneway) over the groups with >= 2 scans; pairs: Tukey HSD (next page)."]
            foot += [f"Note: {n}" for n in notes[:6]]
            yy = 0.20
            for line in foot:
                fig.text(0.07, yy, line, fontsize=7)
                yy -= 0.015
            fig.text(0.07, 0.06, "Checked by: ______________________    Date: ______________    Signature: ______________",
                     fontsize=8)
            fig.text(0.07, 0.035, "Automatic image analysis by quantmet; to be reviewed by a qualified metallographer.",
                     fontsize=6.5, style="italic")
            pdf.savefig(fig)
        # ANOVA and Tukey tables
        fig = Figure(figsize=(8.27, 11.69))
        arows = [[unit_label(r.metric), r.groups_tested.replace(";", ", "), str(r.n_scans), _fmt(r.F), _fmt_p(r.p_value), r.note]
                 for r in anova.itertuples()]
        _table_page(fig, [0.07, 0.60, 0.86, 0.33], ["metric", "groups tested", "n", "F", "p", "note"], arows,
                    "One-way ANOVA", widths=[0.27, 0.2, 0.05, 0.09, 0.09, 0.30])
        trows = [[unit_label(r.metric), r.group_a, r.group_b, _fmt(r.mean_diff), _fmt_p(r.p_value), f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]"]
                 for r in tukey.itertuples()][:45]
        _table_page(fig, [0.07, 0.05, 0.86, 0.50], ["metric", "group a", "group b", "mean a - b", "p", "95 % CI"], trows,
                    "Tukey HSD" + (" (first 45 pairs; all in tukey.csv)" if len(tukey) > 45 else ""),
                    widths=[0.27, 0.11, 0.11, 0.12, 0.1, 0.29])
        pdf.savefig(fig)
        # plots, six per page
        items = [plots[m] for m in metrics if m in plots]
        for i in range(0, len(items), 6):
            fig = Figure(figsize=(8.27, 11.69))
            for j, p in enumerate(items[i:i + 6]):
                ax = fig.add_subplot(3, 2, j + 1)
                ax.imshow(mpimg.imread(p))
                ax.axis("off")
            fig.tight_layout()
            pdf.savefig(fig)


def _html_table(df: pd.DataFrame, cols: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for _, r in df.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            if c == "p_value":
                txt = _fmt_p(float(v))
            elif isinstance(v, (float, np.floating, int, np.integer)) and not isinstance(v, bool):
                txt = _fmt(v)
            else:
                txt = str(v)
            cells.append(f"<td>{html.escape(txt)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class=\"qm-compare\"><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _fragment(title: str, meta: list[str], summary, anova, tukey, metrics, plots, out_dir: Path, notes) -> str:
    parts = [f"<section class=\"qm-compare\"><h2>{html.escape(title)}</h2>"]
    parts += [f"<p>{html.escape(line)}</p>" for line in meta]
    if notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    parts.append("<h3>One-way ANOVA</h3>")
    parts.append(_html_table(anova, ["metric", "groups_tested", "groups_excluded", "n_scans", "F", "p_value", "note"]))
    parts.append("<h3>Per-group summary</h3>")
    parts.append(_html_table(summary, ["metric", "group", "n", "mean", "sd", "ci95", "min", "median", "max", "note"]))
    parts.append("<h3>Tukey HSD</h3>")
    parts.append(_html_table(tukey, ["metric", "group_a", "group_b", "mean_diff", "p_value", "ci_low", "ci_high"]))
    for m in metrics:
        if m in plots:
            rel = plots[m].relative_to(out_dir).as_posix()
            parts.append(f"<figure><img src=\"{html.escape(rel)}\" alt=\"{html.escape(m)}\"><figcaption>{html.escape(m)}"
                         "</figcaption></figure>")
    parts.append("</section>")
    return "\n".join(parts)


_GRAIN_SHOWN = ("n_scans", "n_intercepts", "mean_intercept_um", "mean_intercept_ci95_low_um",
                "mean_intercept_ci95_high_um", "intercept_ra_pct", "grain_size_G", "grain_size_G_ci95_low",
                "grain_size_G_ci95_high", "grain_note")


def _pooled_grain_sizes(scans: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """E112 grain size of each group, pooled over its scans (segmentation.grains.pooled_grain_size)."""
    if "n_intercepts" not in scans.columns or not pd.to_numeric(scans["n_intercepts"], errors="coerce").fillna(0).any():
        return pd.DataFrame()
    from segmentation.grains import pooled_grain_size

    rows = []
    g = np.asarray(groups, dtype=object)
    for name in sorted(set(groups)):
        pooled = pooled_grain_size(scans[g == name].reset_index(drop=True))
        rows.append({"group": name, **{k: pooled.get(k) for k in _GRAIN_SHOWN}})
    return pd.DataFrame(rows)


def compare_run(run_dir: str | Path, *, cfg: CompareConfig | None = None, out_dir: str | Path | None = None) -> CompareResult:
    """Compare the sample groups of a finished run and write the tables, plots, PDF and HTML.

    Parameters
    ----------
    run_dir : path
        Run dir with ``scans.parquet`` (``ratings.parquet`` optional).
    cfg : CompareConfig, optional
    out_dir : path, optional
        Output folder (default ``cfg.out_dir`` or ``run_dir/compare``).

    Raises
    ------
    CompareError
        No ``scans.parquet``, no scan left, or an unknown metric.
    """
    cfg = cfg or CompareConfig()
    run_dir = Path(run_dir)
    scans_path = run_dir / "scans.parquet"
    if not scans_path.exists():
        raise CompareError(f"not a run dir (no scans.parquet): {run_dir}")
    out = Path(out_dir) if out_dir is not None else (Path(cfg.out_dir) if cfg.out_dir else run_dir / "compare")
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    scans = pd.read_parquet(scans_path)
    if "scan_id" not in scans.columns:
        raise CompareError(f"{scans_path} lacks the scan_id column")
    if "status" in scans.columns and not cfg.include_failed:
        bad = scans["status"] != "ok"
        if bad.any():
            notes.append(f"{int(bad.sum())} failed scan(s) left out")
        scans = scans[~bad]
    if scans.empty:
        raise CompareError(f"no scan to compare in {run_dir}")
    scans = scans.reset_index(drop=True)
    if not any(_WORST.match(c) for c in scans.columns) and (run_dir / "ratings.parquet").exists():
        worst = _worst_from_ratings(pd.read_parquet(run_dir / "ratings.parquet"))
        if len(worst.columns) > 1:
            scans = scans.merge(worst, on="scan_id", how="left")
            notes.append("worst-field severities taken from ratings.parquet")
    scans = _with_phase_metrics(scans, run_dir, notes)
    spec = cfg.groups if cfg.groups not in (None, "") else (_run_group_spec(run_dir) or "folder")
    paths = scans["path"].astype(str).tolist() if "path" in scans.columns else None
    grp = assign_groups(scans["scan_id"].astype(str).tolist(), paths, spec)
    groups = pd.DataFrame({"scan_id": scans["scan_id"].astype(str), "path": paths or [""] * len(scans), "group": grp})
    metrics = _metrics(scans, cfg.metrics, notes)
    summ, anov, tuk = [], [], []
    for m in metrics:
        v = scans[m].to_numpy(np.float64)
        summ.append(group_summary(v, grp, metric=m))
        anov.append(anova_table(v, grp, metric=m))
        tuk.append(tukey_table(v, grp, metric=m))
    summary = pd.concat(summ, ignore_index=True) if summ else group_summary(np.zeros(0), [], metric="")
    anova = pd.concat(anov, ignore_index=True) if anov else anova_table(np.zeros(0), []).iloc[:0]
    tukey = pd.concat([t for t in tuk if len(t)], ignore_index=True) if any(len(t) for t in tuk) else tukey_table(np.zeros(0), [])
    grain = _pooled_grain_sizes(scans, grp)
    files: list[Path] = []
    if len(grain):
        grain.to_csv(out / "grain_size.csv", index=False, encoding="utf-8")
        files.append(out / "grain_size.csv")
    for name, df in (("groups", groups), ("summary", summary), ("anova", anova), ("tukey", tukey)):
        p = out / f"{name}.csv"
        df.to_csv(p, index=False, encoding="utf-8")
        files.append(p)
    plots: dict[str, Path] = {}
    (out / "plots").mkdir(exist_ok=True)
    from matplotlib import rc_context

    with rc_context({"text.parse_math": False}):  # group names are text: "$x$" is not maths
        for m in metrics:
            p = out / "plots" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', m)}.png"
            _plot_metric(m, scans[m], pd.Series(grp), p)
            plots[m] = p
            files.append(p)
    n_groups = len(set(grp))
    one = sorted(g for g in set(grp) if grp.count(g) == 1)
    meta = [
        f"Run: {run_dir.resolve()}",
        f"Generated: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"Scans: {len(scans)} in {n_groups} group(s) (group spec: {spec})"
        + (f"; one-scan group(s), no test: {', '.join(one)}" if one else ""),
        ("Ratings: ASTM E45 / ISO 4967 Method A worst fields (0.50 mm² fields); stereology: ASTM E1245 "
         "(mean over fields); tests: one-way ANOVA, Tukey HSD (scipy.stats)."),
    ]
    if cfg.pdf:
        p = out / "compare.pdf"
        with rc_context({"text.parse_math": False}):
            _write_pdf(p, title=cfg.title, meta=meta, summary=summary, anova=anova, tukey=tukey, metrics=metrics,
                       plots=plots, notes=notes)
        files.append(p)
    frag = _fragment(cfg.title, meta, summary, anova, tukey, metrics, plots, out, notes)
    if len(grain):
        frag += ("<h3>Grain size per group (ASTM E112, pooled: each scan one field)</h3>"
                 + _html_table(grain, list(grain.columns)))
    (out / "fragment.html").write_text(frag, encoding="utf-8")
    page = ("<!doctype html><html><head><meta charset=\"utf-8\"><title>" + html.escape(cfg.title) + "</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
            "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}figure{display:inline-block}</style>"
            "</head><body>" + frag + "</body></html>")
    (out / "index.html").write_text(page, encoding="utf-8")
    files += [out / "fragment.html", out / "index.html"]
    info = {"run_dir": str(run_dir.resolve()), "group_spec": str(spec), "metrics": metrics, "notes": notes,
            "files": [f.relative_to(out).as_posix() for f in files]}
    (out / "compare.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    files.append(out / "compare.json")
    for n in notes:
        log.info("compare: %s", n)
    return CompareResult(out, groups, summary, anova, tukey, tuple(metrics), tuple(files), tuple(notes))


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Task ``compare``: ``cfg.compare`` -> :class:`CompareConfig`; writes into ``compare.out_dir`` or ``output_dir``."""
    from experiments.config import dataclass_from

    cc = dataclass_from(CompareConfig, OmegaConf.to_container(cfg.get("compare", {}), resolve=True), where="compare")
    if not cc.run_dir:
        raise CompareError("compare.run_dir is required: python -m experiments.run +exp=compare compare.run_dir=DIR")
    res = compare_run(cc.run_dir, cfg=cc, out_dir=Path(cc.out_dir) if cc.out_dir else Path(output_dir))
    log.info("compare: %d scans, %d metrics -> %s", len(res.groups), len(res.metrics), res.out_dir)
    return 0
