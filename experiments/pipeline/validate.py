"""Everything a run needs is checked before the first scan: cross-field rules, files, model files.

The type, key and range of each option are checked where the option is declared: by Hydra at
composition (the typed sections of :mod:`experiments.config`) and by the section dataclasses when
:func:`experiments.config.pipeline_config` builds them.  What is left here needs more than one
option or the file system: the scorers that ``combine`` names are configured, the files a setting
names exist and read, the models verify against their cards, an export's optional dependency is
installed.  A bad setting is one line naming the option, before any model loads.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from anomaly.scorers.shape import DEFAULT_WEIGHTS as SHAPE_WEIGHTS
from data.calibration import load_calibration_csv
from data.errors import QuantmetError
from data.model_cards import ModelCardError, verify_model_file
from inpainting import resolve_weights
from segmentation.models import weights_path  # Keras only when a model loads

from ..config import ConfigError, PipelineConfig, scorer_options

__all__ = ["PIPELINE_SECTIONS", "validate_pipeline", "models_in_use"]

#: Top-level keys a pipeline run may have (``paths`` and ``task`` come from conf/config.yaml).
PIPELINE_SECTIONS = frozenset({"data", "segmentation", "inpainting", "anomaly", "runtime", "report",
                               "paths", "task", "ratings", "phases"})


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def models_in_use(pc: PipelineConfig) -> dict[str, str]:
    """``{name: weight file}`` of the models this configuration will load."""
    out: dict[str, str] = {}
    seg = pc.segmentation
    if pc.phases.enabled and pc.phases.segmenter == "unet":
        out["unet_phases"] = str(Path(str(pc.phases.weights)).expanduser())
    if pc.data.kind == "scan":
        if seg.method == "unet" and not pc.phases.enabled:
            out["unet_impurities"] = str(weights_path("impurities", seg.unet.weights))
        if seg.grains.enabled:
            out["unet_grains"] = str(weights_path("grains", None))
            if pc.inpainting.method == "generative":
                out["inpaint_net"] = str(resolve_weights(pc.inpainting.weights))
    shape = pc.anomaly.scorers.shape
    if shape is not None:
        out["shape_ae"] = str(shape.weights or SHAPE_WEIGHTS)
    return out


def _phases(pc: PipelineConfig) -> None:
    """A phase run: raw scans, a consistent ``phases`` section, the U-Net's weights named."""
    from .phases import phase_configs  # lazy: only phase runs

    _check(pc.data.kind == "scan", "phases.enabled=true needs raw scans (data.kind=scan), got data.kind=mask")
    phase_configs(pc.phases)
    _check(pc.phases.segmenter != "unet" or bool(pc.phases.weights),
           "phases.segmenter=unet needs phases.weights: the unet_phases.keras written by +exp=train_unet_phases")


def _files(pc: PipelineConfig) -> None:
    """The files the settings name exist and read."""
    d = pc.data
    if d.calibration_csv:
        try:
            load_calibration_csv(d.calibration_csv)
        except QuantmetError as exc:
            raise ConfigError(f"data.calibration_csv: {exc}") from None
    if d.exclusion_mask:
        _check(Path(str(d.exclusion_mask)).expanduser().exists(),
               f"data.exclusion_mask not found: {d.exclusion_mask} (a mask file or a folder of <scan_id>.png masks)")
    if d.groups not in (None, "", "folder"):
        _check(Path(str(d.groups)).expanduser().is_file(),
               f"data.groups must be 'folder', null or a CSV file path,group; file not found: {d.groups}")
    if pc.anomaly.rerank.model:
        from anomaly.rerank import load_reranker  # lazy: pandas, only when a re-ranker is named

        try:
            load_reranker(pc.anomaly.rerank.model)
        except Exception as exc:  # noqa: BLE001 - any unusable model file is a config error
            raise ConfigError(f"anomaly.rerank.model: {exc}") from None
    if "xlsx" in pc.report.exports:
        _check(importlib.util.find_spec("openpyxl") is not None,
               'report.exports has xlsx but openpyxl is not installed: pip install "quantmet[excel]"')


def validate_pipeline(pc: PipelineConfig, run_config: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Raise :class:`ConfigError` on the first bad setting; return the models' sha256 by name.

    Parameters
    ----------
    pc : PipelineConfig
        The run's typed configuration (each section already checked on its own).
    run_config : mapping, optional
        The composed configuration as a mapping: its top-level keys must be a pipeline run's.
    """
    if run_config is not None:
        unknown = sorted(set(run_config) - PIPELINE_SECTIONS)
        _check(not unknown, f"unknown top-level key(s) {unknown}; a pipeline run has {sorted(PIPELINE_SECTIONS)}")
    _check(pc.data.input not in (None, ""), "data.input is required: a scan file, a folder or a glob")
    scorers = scorer_options(pc.anomaly.scorers)
    _check(bool(scorers), "anomaly.scorers: no scorer is configured")
    missing = [n for n in pc.anomaly.combine.inputs if n not in scorers]
    _check(not missing, f"anomaly.combine.inputs {missing} are not among the configured scorers {sorted(scorers)}")
    if pc.phases.enabled:
        _phases(pc)
    _files(pc)
    digests = {}
    for name, path in models_in_use(pc).items():
        try:
            digests[name] = verify_model_file(path, what=name)["sha256"]
        except ModelCardError as exc:
            raise ConfigError(str(exc)) from None
    return digests
