"""Typed options of the report (mirrors ``conf/report/default.yaml``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["HEATMAP_MODES", "ReportConfig"]

#: When the report renders a scan's heatmap itself: when the run has none for it,
#: always (overriding nothing: written under report/heatmaps/), or never.
HEATMAP_MODES = ("missing", "always", "never")


@dataclass(frozen=True)
class ReportConfig:
    """Options of :func:`experiments.reporting.write_report`.

    Parameters
    ----------
    html : bool
        Whether the pipeline writes the HTML report at the end of a run (the
        report itself ignores it).
    top_n : int
        Number of top-ranked clusters of the archive that get a gallery crop.
    score : str
        Region score column coloured in heatmaps and crops.
    cmap : str
        Matplotlib colormap (perceptually uniform).
    max_side : int
        Longest side of heatmap previews (larger scans are reduced).
    crop_side : int
        Longest side of the gallery crops, in pixels.
    crop_margin, crop_min_margin_px : float, int
        A crop shows the cluster box grown by ``max(crop_min_margin_px, crop_margin * side)``.
    heatmaps : {"missing", "always", "never"}
        When the report renders heatmaps itself (see :data:`HEATMAP_MODES`).
    top_regions_per_scan : int
        Highest-scoring impurities listed on each scan page.
    max_table_rows : int
        Cap of the ranked-cluster and scan tables of the report (the best ranks / first scans are
        kept; the tables themselves hold every row).
    page_rows : int
        Rows per page of the ranked-cluster table (the first page is on the index).
    size_min_area_px : int
        Impurities smaller than this (pixel noise) are left out of the size
        distribution plot and its log-normal fit (the caption says how many).
    exports : sequence of {"csv", "xlsx"}
        Also write the scan, cluster and rating tables as CSV files / one Excel workbook into
        ``exports/`` at the end of a run (units in the column names; xlsx needs ``quantmet[excel]``).
    """

    html: bool = True
    top_n: int = 50
    score: str = "combined_score"
    cmap: str = "viridis"
    max_side: int = 2048
    crop_side: int = 420
    crop_margin: float = 0.3
    crop_min_margin_px: int = 16
    heatmaps: str = "missing"
    top_regions_per_scan: int = 25
    max_table_rows: int = 5000
    page_rows: int = 500
    size_min_area_px: int = 4
    exports: tuple = ()

    def __post_init__(self) -> None:
        for name in ("top_n", "top_regions_per_scan", "size_min_area_px"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"report.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("max_side", "crop_side", "max_table_rows", "page_rows"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"report.{name} must be >= 1, got {getattr(self, name)}")
        if not float(self.crop_margin) >= 0 or int(self.crop_min_margin_px) < 0:
            raise ValueError("report.crop_margin and report.crop_min_margin_px must be >= 0")
        exports = tuple(str(x) for x in (self.exports or ()))
        bad = sorted(set(exports) - {"csv", "xlsx"})
        if bad:
            raise ValueError(f"report.exports: unknown format(s) {bad}; allowed: csv, xlsx")
        object.__setattr__(self, "exports", exports)
        if self.heatmaps not in HEATMAP_MODES:
            raise ValueError(
                f"report.heatmaps must be one of {HEATMAP_MODES}, got {self.heatmaps!r}"
            )
        from ._colormaps import is_colormap  # lazy

        if not is_colormap(self.cmap):
            raise ValueError(f"report.cmap: unknown matplotlib colormap {self.cmap!r}")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> ReportConfig:
        """Build from a plain mapping (e.g. ``OmegaConf.to_container(cfg.report)``).

        Raises
        ------
        ValueError
            On an unknown key (the message lists the known ones) or a bad value.
        """
        data = dict(mapping or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown report option(s) {unknown}; known: {sorted(known)}")
        types = {f.name: type(f.default) for f in dataclasses.fields(cls)}
        out = {}
        for k, v in data.items():
            t = types[k]
            try:
                if t is tuple:
                    out[k] = (v,) if isinstance(v, str) else tuple(v or ())
                else:
                    out[k] = v if isinstance(v, t) else (t(v) if t is not bool else _as_bool(v))
            except (TypeError, ValueError):
                raise ValueError(f"report.{k}: expected {t.__name__}, got {v!r}") from None
        return cls(**out)

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`write_report` (everything but ``html``)."""
        d = dataclasses.asdict(self)
        d.pop("html")
        d.pop("exports")
        return d


def _as_bool(v: Any) -> bool:
    if isinstance(v, str) and v.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
        return v.lower() in ("true", "1", "yes", "on")
    if isinstance(v, (int, float)):
        return bool(v)
    raise ValueError(v)
