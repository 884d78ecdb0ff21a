"""Hydra structured configs of the train / eval / bench tasks, from their typed dataclasses.

Each task's options live once, as a dataclass with defaults (``experiments/<pkg>/config.py``).
:func:`register` stores them in Hydra's ConfigStore as groups ``train``, ``eval`` and ``bench``;
a preset in ``conf/exp`` selects one (``defaults: [/train: unet]``) and lists only its deltas,
while every key stays overridable from the command line and is type-checked by OmegaConf.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

__all__ = ["SCHEMAS", "register"]


def _schemas() -> dict[str, dict[str, type]]:
    from experiments.research.bench import config as bench
    from experiments.research.evaluation import config as evaluation
    from experiments.reporting.config_compare import CompareConfig
    from experiments.research.training import config as training

    return {
        "train": {
            "unet": training.TrainUNetConfig,
            "inpainting": training.TrainInpaintingConfig,
            "shape_ae": training.TrainShapeAEConfig,
        },
        "eval": {
            "segmentation": evaluation.EvalSegmentationConfig,
            "inpainting": evaluation.EvalInpaintingConfig,
            "anomaly": evaluation.EvalAnomalyConfig,
            "area": evaluation.EvalAreaConfig,
            "review": evaluation.EvalReviewConfig,
            "calibration": evaluation.EvalCalibrationConfig,
            "truth": evaluation.EvalTruthConfig,
            "repeatability": evaluation.EvalRepeatabilityConfig,
        },
        "bench": {
            "anomaly": bench.AnomalyBenchConfig,
            "archive": bench.ArchiveBenchConfig,
            "area": bench.AreaBenchConfig,
            "regions": bench.RegionsBenchConfig,
            "segmentation": bench.SegmentationBenchConfig,
            "process": bench.ProcessBenchConfig,
            "review": bench.BenchReviewConfig,
        },
        "compare": {
            "default": CompareConfig,
        },
    }


SCHEMAS = _schemas


def register() -> None:
    """Store every task schema in Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    for group, options in _schemas().items():
        for name, cls in options.items():
            node = OmegaConf.structured(cls)
            OmegaConf.set_readonly(node, False)  # frozen dataclasses: presets and overrides merge in
            cs.store(group=group, name=name, node=node)
