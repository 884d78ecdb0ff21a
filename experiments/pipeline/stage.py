"""The per-scan stage: read -> calibrate -> segment -> analyse -> draw, in memory.

:class:`ScanAnalyzer` is a callable object so that a runner builds it once per worker (models
loaded once) and calls it for many scans.  It reads the scan, resolves its pixel size and the
pixels to exclude, segments it (or labels the mask), hands the label image to the pure
:func:`.analysis.analyse` and the result to :func:`.render.render_scan`, and fills the scan's
row (:func:`.result.scan_row`).  Everything that needs the pixels is done here, on the worker
that holds them; the files come back as bytes in :class:`.result.ScanResult`, and the runner
(:class:`.commit.CommittingStage`) writes them into the run dir with the scan's checkpoint.

The stage never raises for a bad scan: the failure is returned as a ``status='failed'`` row with
its error, so one broken file cannot stop an archive.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import traceback
from pathlib import Path

import numpy as np

from anomaly.scorers import get_scorer, make_config
from anomaly.scorers.shape import load_shape_ae  # Keras only when the model loads
from data import binarize_mask, label_mask, read_scan
from data.annotations import AnnotationConfig, find_annotations, load_exclusion, roi_mask
from data.calibration import calibration_key, load_calibration_csv, resolve_pixel_size
from data.inputs import ScanInput
from data.standards import RatingConfig
from segmentation.domain import check_domain  # NumPy only

from ..config import PipelineConfig, domain_config, scorer_options
from ..layout import RunLayout
from .analysis import AnalysisOptions, Clock, analyse
from .options import resolve_physical, resolved_settings_note
from .phases import PhaseStep, cluster_phases, phase_files, region_phases
from .render import RenderOptions, render_scan, report_stats
from .result import ScanResult, ScanTask, scan_row

__all__ = ["ScanAnalyzer", "analysis_options"]

log = logging.getLogger(__name__)

def impurity_model_card(cfg: PipelineConfig) -> dict:
    """The impurity U-Net's model card when this run segments raw scans with it, else ``{}``."""
    if cfg.data.kind != "scan" or cfg.segmentation.method != "unet" or cfg.phases.enabled:
        return {}
    from segmentation.models import model_card  # lazy: the segmentation package

    try:
        return model_card("impurities", getattr(cfg.segmentation.unet, "weights", None))
    except Exception as exc:  # noqa: BLE001 - a missing model fails each scan in its own row
        log.warning("no model card for the impurity U-Net (%s: %s): no repeatability in the intervals, "
                    "no validated-range check", type(exc).__name__, exc)
        return {}


def domain_values(pixels: np.ndarray, card: dict, kind: str, *, phases: bool = False,
                  exclude: np.ndarray | None = None) -> dict:
    """``in_domain`` / ``domain_note``: is the scan inside the range its model was validated on?

    The gray levels are taken without the ``exclude``d pixels (a data bar, a scale bar, outside the ROI).
    """
    if phases:
        return {"in_domain": True, "domain_note": "not checked: phases are segmented per scan (no trained range)"}
    if kind != "scan":
        return {"in_domain": True, "domain_note": "not checked: a mask is not segmented by a model"}
    domain = card.get("validated_domain")
    if not domain:
        return {"in_domain": True, "domain_note": "not checked: the segmentation records no validated range"}
    check = check_domain(pixels, domain, exclude=exclude)
    return {"in_domain": bool(check.in_domain), "domain_note": check.note}


def backend_value() -> str:
    """``"unet_impurities.keras: openvino-bf16; ..."``: the inference paths this process ran ('' for none)."""
    seg = sys.modules.get("segmentation.backends")  # only imported where a U-Net ran
    return "; ".join(f"{k}: {v}" for k, v in sorted(seg.last_backends().items())) if seg is not None else ""


def analysis_options(cfg: PipelineConfig) -> AnalysisOptions:
    """The :class:`.analysis.AnalysisOptions` of a run's configuration."""
    grains = dataclasses.asdict(cfg.segmentation.grains)
    enabled = bool(grains.pop("enabled"))
    if cfg.data.kind != "scan":
        note = "not measured: grain size needs a raw scan (data.kind=mask)"
    elif not enabled:
        note = "not measured (segmentation.grains.enabled=false)"
    else:
        note = ""
    return AnalysisOptions(
        kind=cfg.data.kind,
        min_area_px=cfg.data.min_area_px,
        min_area_um2=cfg.data.min_area_um2,
        scorers=scorer_options(cfg.anomaly.scorers),
        combine_inputs=tuple(cfg.anomaly.combine.inputs),
        combine_method=cfg.anomaly.combine.method,
        area=dataclasses.asdict(cfg.anomaly.area),
        order_key=cfg.anomaly.area.order_key,
        ratings=domain_config(RatingConfig, cfg.ratings, where="ratings"),
        grains=grains if not note else None,
        grain_note=note,
        inpainting=dataclasses.asdict(cfg.inpainting),
        repeatability=dict(impurity_model_card(cfg).get("repeatability") or {}),
    )


def _box_text(box) -> str:
    return "rows {}-{}, cols {}-{}".format(box[0], box[2], box[1], box[3])


def _annotation_values(ann) -> dict:
    """The scan row's data bar and scale bar columns."""
    bars = ann.scale_bars if ann is not None else ()
    return {
        "data_bar": _box_text(ann.data_bar) if ann is not None and ann.data_bar is not None else "",
        "scale_bar_length_px": bars[0].length_px if bars else np.nan,
        "scale_bar_label": (bars[0].label or "") if bars else "",
    }


class ScanAnalyzer:
    """Callable per-scan stage; build once per worker, call once per scan.

    Parameters
    ----------
    cfg : PipelineConfig
    render : RenderOptions, optional
        What to draw; None draws nothing (tables only).
    map_rows : callable, optional
        Parallel row mapper for the spatial score of huge scans (``ScoreContext.map_rows``).
    """

    def __init__(self, cfg: PipelineConfig, render: RenderOptions | None = None, map_rows=None):
        self.cfg = cfg
        self.render = render
        self.map_rows = map_rows
        self._segmenter = None
        self.phases = (PhaseStep(cfg.phases, backend=cfg.segmentation.unet.backend,
                                 precision=cfg.segmentation.unet.precision) if cfg.phases.enabled else None)
        self.options = analysis_options(cfg)
        self._card = impurity_model_card(cfg)
        self._find_annotations = cfg.data.annotations.enabled and cfg.data.kind == "scan"
        self._annotations = domain_config(AnnotationConfig, cfg.data.annotations, where="data.annotations",
                                          drop=("enabled",))
        self._csv = load_calibration_csv(cfg.data.calibration_csv) if cfg.data.calibration_csv else {}

    # ------------------------------------------------------------------ models
    def warm_up(self) -> None:
        """Load the models this configuration needs now (once per worker, before the first scan).

        A load that fails is only logged here: every scan then reports the error in its own
        ``failed`` row, as without the warm-up.
        """
        try:
            if self.phases is not None:
                self.phases.warm_up()
            elif self.cfg.data.kind != "mask":
                self._segmenter_fn()
                if self.cfg.segmentation.grains.enabled:
                    from segmentation.models import load_model  # lazy: Keras

                    load_model("grains")
            if "shape" in self.options.scorers:

                shape = resolve_physical(self.options.scorers["shape"], None)
                load_shape_ae(make_config(get_scorer("shape"), shape).weights)
        except Exception as exc:  # noqa: BLE001 - reported per scan
            log.warning("warm-up failed: %s: %s", type(exc).__name__, exc)

    def _segmenter_fn(self):
        """The configured segmenter (a U-Net one holds its model), built once per worker."""
        if self._segmenter is None:
            from segmentation import make_segmenter  # lazy: Keras for the U-Net

            seg = self.cfg.segmentation
            options = dataclasses.asdict(seg.classical if seg.method == "classical" else seg.unet)
            if seg.method == "unet" and options.get("min_area_px") is None:
                # one detection limit: the run's data.min_area_px (/ _um2), applied after the watershed
                options["min_area_px"] = 1
            self._segmenter = make_segmenter(seg.method, options)
        return self._segmenter

    # ------------------------------------------------------------------ one scan
    def __call__(self, task: ScanTask | ScanInput) -> ScanResult:
        if isinstance(task, ScanInput):
            task = ScanTask(task)
        item = task.item
        try:
            return self._analyse(task)
        except Exception as exc:  # one bad scan must not stop the archive
            log.warning("scan %s failed: %s: %s", item.scan_id, type(exc).__name__, exc)
            log.debug("%s", traceback.format_exc())
            row = scan_row(item, self.cfg.data.kind, status="failed", error=f"{type(exc).__name__}: {exc}",
                           group=task.group, rating_note="not rated: the scan failed")
            return ScanResult(item.scan_id, row)

    def _labels(self, pixels: np.ndarray, exclude: np.ndarray | None) -> np.ndarray:
        d = self.cfg.data
        if d.kind == "mask":
            labels, _ = label_mask(binarize_mask(pixels, polarity=d.mask_polarity), connectivity=d.connectivity)
            return labels
        return self._segmenter_fn()(pixels, exclude=exclude)  # normalised without the excluded pixels

    def _analyse(self, task: ScanTask) -> ScanResult:
        item, d = task.item, self.cfg.data
        clock = Clock()
        scan = read_scan(item.path, scan_id=item.scan_id, max_pixels=d.max_pixels, max_file_bytes=d.max_file_bytes)
        ann, cal, exclude = self._calibrate(item, scan)
        ps = cal.pixel_size_um
        clock.lap("read")
        sid = item.scan_id
        ph = self.phases(scan.pixels, pixel_size_um=ps, exclude=exclude, scan_id=sid) if self.phases else None
        labels = ph.measurement.region_labels if ph is not None else self._labels(scan.pixels, exclude)
        a = analyse(scan.pixels, labels, scan_id=sid, pixel_size_um=ps,
                    exclude=exclude, options=self.options, map_rows=self.map_rows, clock=clock)
        a.table.insert(0, "scan_id", sid)
        if ph is not None:
            a.table.insert(1, "phase", region_phases(a.labels, ph.labels, ph.names, a.table["region_id"].to_numpy()))
            a.clusters.insert(0, "phase", cluster_phases(a.table, a.clusters))
        a.clusters.insert(0, "scan_id", sid)
        files, crops = render_scan(sid, scan.pixels, a.labels, a.table, a.clusters, pixel_size_um=ps,
                                   exclude=exclude, options=self.render, order_key=self.options.order_key,
                                   crop_min_score=task.crop_min_score)
        if ph is not None:
            files.update(phase_files(sid, scan.pixels, ph, pixel_size_um=ps, draw=self.render is not None,
                                     max_side=self.render.max_side if self.render is not None else 2048))
        clock.lap("render")
        row = scan_row(
            item,
            d.kind,
            pixel_size_um=ps if ps is not None else np.nan,
            pixel_size_source=cal.source,
            calibration_note="; ".join(cal.notes),
            settings_note=self._settings_note(ps),
            segmentation_backend=backend_value() if d.kind == "scan" else "",
            exclusion_file=RunLayout.exclusion_rel(sid) if exclude is not None else "",
            labels_file=RunLayout.labels_rel(sid) if RunLayout.labels_rel(sid) in files else "",
            heatmap_file=RunLayout.heatmap_rel(sid) if RunLayout.heatmap_rel(sid) in files else "",
            phases_file=RunLayout.phase_overlay_rel(sid) if RunLayout.phase_overlay_rel(sid) in files else "",
            thickness_file=RunLayout.thickness_rel(sid) if RunLayout.thickness_rel(sid) in files else "",
            group=task.group,
            **_annotation_values(ann),
            **a.values,
            **domain_values(scan.pixels, self._card, d.kind, phases=ph is not None, exclude=exclude),
            **clock.total(),
        )
        stats = report_stats(a.table, calibrated=ps is not None, options=self.render)
        return ScanResult(sid, row, a.table, a.clusters, a.ratings, files=files, crops=crops, stats=stats,
                          phases=ph.measurement.fractions if ph is not None else None,
                          coating=ph.measurement.coating if ph is not None else None)

    def _settings_note(self, ps: float | None) -> str:
        """Which µm settings replaced their pixel twins on this (calibrated) scan."""
        d = self.cfg.data
        parts = [resolved_settings_note({"min_area_px": d.min_area_px, "min_area_um2": d.min_area_um2}, ps, where="data"),
                 resolved_settings_note(self.options.area, ps, where="anomaly.area")]
        parts += [resolved_settings_note(o, ps, where=f"anomaly.scorers.{n}") for n, o in self.options.scorers.items()]
        return "; ".join(x for x in parts if x)

    # ------------------------------------------------------------------ calibration
    def _calibrate(self, item: ScanInput, scan):
        """Annotations (raw scans), the pixel size by precedence, and the pixels to exclude."""
        d = self.cfg.data
        ann = find_annotations(scan.pixels, cfg=self._annotations) if self._find_annotations else None
        cal = resolve_pixel_size(
            config_um=d.pixel_size_um,
            csv_um=self._csv.get(calibration_key(item.path)) if self._csv else None,
            metadata_um=scan.pixel_size_um if scan.pixel_size_source == "metadata" else None,
            scale_bar_um=ann.pixel_size_um if ann is not None else None,
        )
        if ann is not None and ann.notes:
            cal = type(cal)(cal.pixel_size_um, cal.source, tuple(cal.notes) + tuple(ann.notes))
        exclude = None
        parts = [m for m in (ann.mask if ann is not None else None, roi_mask(d.roi, scan.shape) if d.roi else None,
                             self._user_exclusion(item, scan.shape)) if m is not None and m.any()]
        if parts:
            exclude = np.logical_or.reduce(parts)
        return ann, cal, exclude

    def _user_exclusion(self, item: ScanInput, shape) -> np.ndarray | None:
        spec = self.cfg.data.exclusion_mask
        if not spec:
            return None
        p = Path(spec).expanduser()
        if p.is_dir():
            for suffix in (".png", ".tif", ".tiff"):
                f = p / f"{item.scan_id}{suffix}"
                if f.is_file():
                    return load_exclusion(f, shape)
            return None
        return load_exclusion(p, shape)
