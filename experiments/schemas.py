"""Hydra structured configs: the pipeline sections and the options of every task.

The pipeline's sections are typed in :mod:`experiments.config`; each task's options live once, as
a dataclass with defaults (``experiments/research/<pkg>/config.py``), named by the task's
declaration in :data:`experiments.tasks.DECLARED`.  :func:`register` stores them all in Hydra's
ConfigStore (the task options as groups ``train``, ``eval``, ``bench``, ``compare``); a preset in
``conf/exp`` selects one (``defaults: [/train: unet]``) and lists only its deltas, while every key
stays overridable from the command line and is type-checked by OmegaConf.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from experiments.config import register_pipeline_schemas, writable_node
from experiments.tasks import SCHEMAS, schema_targets

__all__ = ["SCHEMAS", "register"]


def register() -> None:
    """Store the pipeline sections' and every task's schema in Hydra's ConfigStore (idempotent)."""
    register_pipeline_schemas()
    cs = ConfigStore.instance()
    for group, options in schema_targets().items():
        for name, cls in options.items():
            # frozen dataclasses: presets and overrides merge in
            cs.store(group=group, name=name, node=writable_node(cls))
