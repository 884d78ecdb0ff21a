"""Every task of the Hydra app (``python -m experiments.run +exp=NAME``), declared once.

A :class:`Task` names the function that runs it (``"module:function"``, called as
``fn(cfg: DictConfig, output_dir: Path) -> int``, an exit code), its typed options (a dataclass
stored in Hydra's ConfigStore as ``<group>/<option>``, which its preset selects with
``defaults: [/<group>: <option>]``) and its presets in ``conf/exp`` with the test that runs each
on tiny data.  :data:`TASKS` (the registry), :func:`experiments.schemas.register` (the schemas)
and ``tests/test_presets.py`` (the preset smoke runs) are derived from :data:`DECLARED`.
Modules are imported only when their task runs (or, for a schema, when the app registers it), so
the pipeline does not pay for TensorFlow unless it needs it.

To add a task: append one ``Task(...)`` to :data:`DECLARED`, write its preset
``conf/exp/<preset>.yaml`` (``# @package _global_``, ``task: <name>``, ``defaults: [/<group>: <option>]``)
and the tiny run named in ``presets``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

__all__ = ["Task", "DECLARED", "TASKS", "SCHEMAS", "PRESETS", "get_task", "schema_targets"]

TaskFn = Callable[[DictConfig, Path], int]

_PRESETS_TEST = "tests/test_presets.py"
_TRAIN = "experiments.research.training"
_EVAL = "experiments.research.evaluation"
_BENCH = "experiments.research.bench"


@dataclass(frozen=True)
class Task:
    """One task of the app.

    Parameters
    ----------
    name : str
        The ``task:`` key its presets set.
    run : str
        ``"module:function"`` that runs it.
    options : tuple of (group, option, "module:Class"), optional
        Its typed options: the dataclass stored in the ConfigStore as ``group/option``.
    presets : mapping of str to str
        ``{preset in conf/exp: the test that runs it end to end on tiny data}``.
    """

    name: str
    run: str
    options: tuple[str, str, str] | None = None
    presets: Mapping[str, str] = field(default_factory=dict)


DECLARED: tuple[Task, ...] = (
    Task("pipeline", "experiments.pipeline.job:run_task", presets={
        "archive": f"{_PRESETS_TEST}::test_multirun_of_the_mask_presets",
        "mlography": f"{_PRESETS_TEST}::test_multirun_of_the_mask_presets",
        "phases": "tests/experiments/pipeline/test_phases_run.py",
        "demo": "tests/experiments/pipeline/test_pipeline.py::test_multirun_sweeps_presets_and_values"}),
    Task("report", "experiments.reporting.task:run", presets={"report": f"{_PRESETS_TEST}::test_report_preset"}),
    Task("compare", "experiments.reporting.compare:run",
         ("compare", "default", "experiments.reporting.config_compare:CompareConfig"),
         {"compare": "tests/experiments/reporting/test_compare.py"}),
    Task("bench_regions", f"{_BENCH}.regions:run", ("bench", "regions", f"{_BENCH}.config:RegionsBenchConfig"),
         {"bench_regions": "tests/experiments/research/bench/test_bench_smoke.py::test_bench_regions"}),
    Task("bench_anomaly", f"{_BENCH}.anomaly:run", ("bench", "anomaly", f"{_BENCH}.config:AnomalyBenchConfig"),
         {"bench_anomaly": "tests/experiments/research/bench/test_bench_smoke.py::test_bench_anomaly_small"}),
    Task("bench_area", f"{_BENCH}.area:run", ("bench", "area", f"{_BENCH}.config:AreaBenchConfig"),
         {"bench_area": "tests/experiments/research/bench/test_bench_smoke.py::test_bench_area_small"}),
    Task("bench_archive", f"{_BENCH}.archive:run", ("bench", "archive", f"{_BENCH}.config:ArchiveBenchConfig"),
         {"bench_archive": f"{_PRESETS_TEST}::test_bench_archive_preset"}),
    Task("bench_process", f"{_BENCH}.process:run", ("bench", "process", f"{_BENCH}.config:ProcessBenchConfig"),
         {"bench_process": f"{_PRESETS_TEST}::test_bench_process_preset"}),
    Task("bench_phases", f"{_BENCH}.phases:run", ("bench", "phases", f"{_BENCH}.config:PhasesBenchConfig"),
         {"bench_phases": "tests/experiments/research/bench/test_bench_smoke.py::test_bench_phases_small"}),
    Task("bench_review", f"{_BENCH}.review:run", ("bench", "review", f"{_BENCH}.config:BenchReviewConfig"),
         {"bench_review": "tests/experiments/review/test_review_tasks.py::test_bench_review_task_tiny"}),
    Task("bench_segmentation", f"{_BENCH}.segmentation:run",
         ("bench", "segmentation", f"{_BENCH}.config:SegmentationBenchConfig"),
         {"bench_segmentation": f"{_PRESETS_TEST}::test_bench_segmentation_preset"}),
    Task("eval_anomaly", f"{_EVAL}.anomaly:run", ("eval", "anomaly", f"{_EVAL}.config:EvalAnomalyConfig"),
         {"eval_anomaly": "tests/experiments/research/evaluation/test_anomaly_area.py"}),
    Task("eval_area", f"{_EVAL}.area:run", ("eval", "area", f"{_EVAL}.config:EvalAreaConfig"),
         {"eval_area": "tests/experiments/research/evaluation/test_anomaly_area.py"}),
    Task("eval_review", f"{_EVAL}.review:run", ("eval", "review", f"{_EVAL}.config:EvalReviewConfig"),
         {"eval_review": "tests/experiments/review/test_review_tasks.py"}),
    Task("eval_segmentation", f"{_EVAL}.segmentation:run",
         ("eval", "segmentation", f"{_EVAL}.config:EvalSegmentationConfig"),
         {"eval_segmentation": "tests/segmentation/test_models.py::test_eval_segmentation_runs_and_reports_recall_by_size"}),
    Task("eval_inpainting", f"{_EVAL}.inpainting:run", ("eval", "inpainting", f"{_EVAL}.config:EvalInpaintingConfig"),
         {"eval_inpainting": "tests/experiments/research/evaluation/test_inpainting_tasks.py"}),
    Task("eval_calibration", f"{_EVAL}.calibration:run",
         ("eval", "calibration", f"{_EVAL}.config:EvalCalibrationConfig"),
         {"eval_calibration": "tests/experiments/research/evaluation/test_calibration_eval.py"}),
    Task("eval_truth", f"{_EVAL}.truth:run", ("eval", "truth", f"{_EVAL}.config:EvalTruthConfig"),
         {"eval_truth": "tests/experiments/research/evaluation/test_truth_repeatability.py::test_eval_truth_tiny_run"}),
    Task("eval_phases", f"{_EVAL}.phases:run", ("eval", "phases", f"{_EVAL}.config:EvalPhasesConfig"),
         {"eval_phases": "tests/experiments/research/evaluation/test_phases_eval.py::test_eval_phases_tiny_run"}),
    Task("eval_repeatability", f"{_EVAL}.repeatability:run",
         ("eval", "repeatability", f"{_EVAL}.config:EvalRepeatabilityConfig"),
         {"eval_repeatability":
          "tests/experiments/research/evaluation/test_truth_repeatability.py::test_eval_repeatability_tiny_run"}),
    Task("train_shape_ae", f"{_TRAIN}.shape_ae:run", ("train", "shape_ae", f"{_TRAIN}.config:TrainShapeAEConfig"),
         {"train_shape_ae": "tests/anomaly/test_shape.py"}),
    Task("train_unet_impurities", f"{_TRAIN}.unet:run_impurities", ("train", "unet", f"{_TRAIN}.config:TrainUNetConfig"),
         {"train_unet_impurities": "tests/experiments/research/training/test_unet.py"}),
    Task("train_unet_grains", f"{_TRAIN}.unet:run_grains", ("train", "unet", f"{_TRAIN}.config:TrainUNetConfig"),
         {"train_unet_grains": "tests/experiments/research/training/test_unet.py"}),
    Task("train_unet_phases", f"{_TRAIN}.phases:run",
         ("train", "unet_phases", f"{_TRAIN}.config:TrainUNetPhasesConfig"),
         {"train_unet_phases": "tests/experiments/research/training/test_phases.py::test_train_unet_phases_tiny"}),
    Task("train_inpainting", f"{_TRAIN}.inpainting:run",
         ("train", "inpainting", f"{_TRAIN}.config:TrainInpaintingConfig"),
         {"train_inpainting": "tests/experiments/research/evaluation/test_inpainting_tasks.py::test_train_inpainting_tiny"}),
)


def _derive(declared: tuple[Task, ...]) -> tuple[dict[str, str], dict[str, dict[str, str]], dict[str, str]]:
    """The registry, the schema targets by group and option, and the preset smoke runs."""
    tasks: dict[str, str] = {}
    schemas: dict[str, dict[str, str]] = {}
    presets: dict[str, str] = {}
    for t in declared:
        if t.name in tasks:
            raise ValueError(f"task {t.name!r} is declared twice")
        tasks[t.name] = t.run
        if t.options is not None:
            group, option, target = t.options
            known = schemas.setdefault(group, {}).setdefault(option, target)
            if known != target:
                raise ValueError(f"{group}/{option} is {known} and {target} (task {t.name!r})")
        for preset, test in t.presets.items():
            if preset in presets:
                raise ValueError(f"preset {preset!r} is declared by two tasks")
            presets[preset] = test
    return tasks, schemas, presets


#: ``{task name: "module:function"}``.
#: ``{group: {option: "module:Class"}}`` of the task options (:mod:`experiments.schemas`).
#: ``{preset: the test that runs it on tiny data}`` (``tests/test_presets.py``).
TASKS, SCHEMAS, PRESETS = _derive(DECLARED)


def _resolve(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def schema_targets() -> dict[str, dict[str, type]]:
    """The task option classes by group and option (imports their modules)."""
    return {g: {o: _resolve(t) for o, t in opts.items()} for g, opts in SCHEMAS.items()}


def get_task(name: str) -> TaskFn:
    """Resolve a task name to its function."""
    try:
        target = TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}") from None
    return _resolve(target)
