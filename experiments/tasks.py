"""Which function runs each ``task`` of the Hydra app (``python -m experiments.run +exp=NAME``).

Each entry maps a task name (the ``task:`` key set by ``conf/exp/*.yaml``) to
``"module:function"``; the function is called as ``fn(cfg: DictConfig, output_dir: Path) -> int``
(an exit code).  Modules are imported only when their task runs, so the
pipeline does not pay for TensorFlow unless it needs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

TaskFn = Callable[[DictConfig, Path], int]

TASKS: dict[str, str] = {
    "pipeline": "experiments.pipeline.job:run_task",
    "report": "experiments.reporting.task:run",
    "bench_regions": "experiments.research.bench.regions:run",
    "bench_anomaly": "experiments.research.bench.anomaly:run",
    "bench_area": "experiments.research.bench.area:run",
    "bench_archive": "experiments.research.bench.archive:run",
    "bench_process": "experiments.research.bench.process:run",
    "bench_review": "experiments.research.bench.review:run",
    "eval_anomaly": "experiments.research.evaluation.anomaly:run",
    "eval_area": "experiments.research.evaluation.area:run",
    "eval_review": "experiments.research.evaluation.review:run",
    "train_shape_ae": "experiments.research.training.shape_ae:run",
    "train_unet_impurities": "experiments.research.training.unet:run_impurities",
    "train_unet_grains": "experiments.research.training.unet:run_grains",
    "eval_segmentation": "experiments.research.evaluation.segmentation:run",
    "bench_segmentation": "experiments.research.bench.segmentation:run",
    "train_inpainting": "experiments.research.training.inpainting:run",
    "eval_inpainting": "experiments.research.evaluation.inpainting:run",
    "eval_calibration": "experiments.research.evaluation.calibration:run",
    "eval_truth": "experiments.research.evaluation.truth:run",
    "eval_repeatability": "experiments.research.evaluation.repeatability:run",
    "compare": "experiments.reporting.compare:run",
}


def get_task(name: str) -> TaskFn:
    """Resolve a task name to its function."""
    try:
        target = TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}") from None
    module, _, fn = target.partition(":")
    return getattr(importlib.import_module(module), fn)
