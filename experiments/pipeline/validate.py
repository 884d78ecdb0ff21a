"""Everything a run needs is checked before the first scan: options, values, model files.

A bad option used to fail once per scan after segmentation (a run that "finished" with every scan
failed); here it is one line naming the option and the allowed values, before any model loads.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Mapping
from typing import Any

from ..config import ConfigError, PipelineConfig, dataclass_from

__all__ = ["PIPELINE_SECTIONS", "validate_pipeline", "models_in_use"]

log = logging.getLogger(__name__)

#: Top-level keys a pipeline run may have (``paths`` and ``task`` come from conf/config.yaml).
PIPELINE_SECTIONS = frozenset({"data", "segmentation", "inpainting", "anomaly", "runtime", "report",
                               "paths", "task", "ratings"})


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _pixel_size(value: Any, where: str) -> None:
    if value is None:
        return
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be a number of µm per pixel or null, got {value!r}") from None
    _check(math.isfinite(v) and v > 0, f"{where} must be a finite number > 0 (µm per pixel) or null, got {value!r}")
    _check(v <= 1000.0, f"{where}={value!r} µm per pixel is absurd (> 1 mm per pixel)")


def _options(fn, options: Mapping[str, Any], where: str) -> None:
    params = inspect.signature(fn).parameters
    allowed = {k for k, p in params.items() if p.kind == p.KEYWORD_ONLY}
    unknown = sorted(set(options) - allowed)
    _check(not unknown, f"unknown option(s) {unknown} in {where}; allowed: {sorted(allowed)}")


def models_in_use(pc: PipelineConfig) -> dict[str, str]:
    """``{name: weight file}`` of the models this configuration will load."""
    out: dict[str, str] = {}
    if pc.data.kind == "scan":
        if pc.segmentation.method == "unet":
            from segmentation.models import weights_path

            out["unet_impurities"] = str(weights_path("impurities", (pc.segmentation.unet or {}).get("weights")))
        if (pc.segmentation.grains or {}).get("enabled"):
            from segmentation.models import weights_path

            out["unet_grains"] = str(weights_path("grains", None))
            if (pc.inpainting or {}).get("method") == "generative":
                from inpainting import resolve_weights

                out["inpaint_net"] = str(resolve_weights((pc.inpainting or {}).get("weights")))
    from anomaly.scoring import configured_scorers

    scorers = configured_scorers(pc.anomaly.scorers)
    if "shape" in scorers:
        from anomaly.scorers.shape import DEFAULT_WEIGHTS

        out["shape_ae"] = str(scorers["shape"].get("weights") or DEFAULT_WEIGHTS)
    return out


def validate_pipeline(pc: PipelineConfig, run_config: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Raise :class:`ConfigError` on the first bad setting; return the models' sha256 by name."""
    if run_config is not None:
        unknown = sorted(set(run_config) - PIPELINE_SECTIONS)
        _check(not unknown, f"unknown top-level key(s) {unknown}; a pipeline run has {sorted(PIPELINE_SECTIONS)}")
    d = pc.data
    _check(d.input not in (None, ""), "data.input is required: a scan file, a folder or a glob")
    _pixel_size(d.pixel_size_um, "data.pixel_size_um")

    def positive_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    _check(positive_int(d.max_pixels), f"data.max_pixels must be an integer >= 1, got {d.max_pixels!r}")
    _check(d.max_file_bytes is None or positive_int(d.max_file_bytes),
           f"data.max_file_bytes must be an integer >= 1 or null, got {d.max_file_bytes!r}")
    _check(d.kind in ("scan", "mask"), f"data.kind must be 'scan' or 'mask', got {d.kind!r}")
    from data.annotations import AnnotationConfig

    ann = dict(d.annotations or {})
    ann.pop("enabled", None)
    dataclass_from(AnnotationConfig, ann, where="data.annotations")
    if d.roi is not None:
        try:
            [int(v) for v in d.roi]
        except (TypeError, ValueError):
            raise ConfigError(f"data.roi must be [rmin, cmin, rmax, cmax] (inclusive px) or null, got {d.roi!r}") from None
        _check(len(d.roi) == 4 and d.roi[0] <= d.roi[2] and d.roi[1] <= d.roi[3],
               f"data.roi must be [rmin, cmin, rmax, cmax] with rmin <= rmax, cmin <= cmax, got {d.roi!r}")
    if d.calibration_csv:
        from data.calibration import load_calibration_csv
        from data.errors import QuantmetError

        try:
            load_calibration_csv(d.calibration_csv)
        except QuantmetError as exc:
            raise ConfigError(f"data.calibration_csv: {exc}") from None
    if d.exclusion_mask:
        from pathlib import Path

        _check(Path(str(d.exclusion_mask)).expanduser().exists(),
               f"data.exclusion_mask not found: {d.exclusion_mask} (a mask file or a folder of <scan_id>.png masks)")
    if d.min_area_um2 is not None:
        _check(float(d.min_area_um2) > 0, f"data.min_area_um2 must be > 0 or null, got {d.min_area_um2!r}")

    seg = pc.segmentation
    _check(seg.method in ("classical", "unet"), f"segmentation.method must be 'classical' or 'unet', got {seg.method!r}")
    if d.kind == "scan":
        if seg.method == "classical":
            from segmentation import ClassicalConfig

            dataclass_from(ClassicalConfig, seg.classical, where="segmentation.classical")
        else:
            from segmentation.models import predict_impurity_mask

            opts = {k: v for k, v in (seg.unet or {}).items() if k != "watershed_min_distance"}
            _options(predict_impurity_mask, opts, "segmentation.unet")
        grains = dict(seg.grains or {})
        if grains.get("enabled"):
            from segmentation.grains import grain_measures

            _options(grain_measures, {k: v for k, v in grains.items() if k != "enabled"}, "segmentation.grains")
            if (pc.inpainting or {}).get("method", "none") != "none":
                from inpainting import inpaint_config

                try:
                    inpaint_config(pc.inpainting)
                except ValueError as exc:
                    raise ConfigError(f"inpainting: {exc}") from None

    from anomaly.market import MarketConfig
    from anomaly.combine import CombineConfig
    from anomaly.scorers import get_scorer, make_config
    from anomaly.scoring import configured_scorers

    from .options import resolve_physical

    try:
        scorers = configured_scorers(pc.anomaly.scorers)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    _check(bool(scorers), "anomaly.scorers: no scorer is configured")
    for name, options in scorers.items():
        try:
            make_config(get_scorer(name), resolve_physical(options, None))
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigError(f"anomaly.scorers.{name}: {exc}".replace("\n", " ")) from None
    combine = dataclass_from(CombineConfig, pc.anomaly.combine, where="anomaly.combine")
    missing = [n for n in combine.inputs if n not in scorers]
    _check(not missing, f"anomaly.combine.inputs {missing} are not among the configured scorers {sorted(scorers)}")
    area = dict(pc.anomaly.area or {})
    for k, v in area.items():
        if k.endswith("_um") and v is not None:
            _check(float(v) > 0, f"anomaly.area.{k} must be > 0 or null, got {v!r}")
    dataclass_from(MarketConfig, resolve_physical(area, None), where="anomaly.area")
    rerank = dict(pc.anomaly.rerank or {})
    unknown = sorted(set(rerank) - {"model"})
    _check(not unknown, f"unknown key(s) {unknown} in anomaly.rerank; known: ['model']")
    if rerank.get("model"):
        from anomaly.rerank import load_reranker

        try:
            load_reranker(rerank["model"])
        except Exception as exc:  # noqa: BLE001 - any unusable model file is a config error
            raise ConfigError(f"anomaly.rerank.model: {exc}") from None

    from ..reporting import ReportConfig

    try:
        rc = ReportConfig.from_mapping(pc.report)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if "xlsx" in rc.exports:
        import importlib.util

        _check(importlib.util.find_spec("openpyxl") is not None,
               'report.exports has xlsx but openpyxl is not installed: pip install "quantmet[excel]"')

    from data.standards import RatingConfig

    dataclass_from(RatingConfig, pc.ratings, where="ratings")
    if d.groups not in (None, "", "folder"):
        from pathlib import Path

        _check(Path(str(d.groups)).expanduser().is_file(),
               f"data.groups must be 'folder', null or a CSV file path,group; file not found: {d.groups}")

    rt = pc.runtime
    nw = rt.num_workers
    _check(nw is None or (isinstance(nw, int) and not isinstance(nw, bool) and nw >= 1),
           f"runtime.num_workers must be null (all CPUs) or an integer >= 1, got {nw!r}")
    _check(isinstance(rt.max_retries, int) and rt.max_retries >= 0,
           f"runtime.max_retries must be an integer >= 0, got {rt.max_retries!r}")

    from data.model_cards import ModelCardError, verify_model_file

    digests = {}
    for name, path in models_in_use(pc).items():
        try:
            digests[name] = verify_model_file(path, what=name)["sha256"]
        except ModelCardError as exc:
            raise ConfigError(str(exc)) from None
    return digests
