"""Model-card header: the command recorded must reproduce the run (Hydra overrides included)."""

from __future__ import annotations

import shlex
from pathlib import Path

from hydra.core.hydra_config import HydraConfig

from experiments.research.training.model_card import run_command

CONF = Path(__file__).resolve().parents[4] / "conf"


def test_command_outside_hydra_is_the_default():
    HydraConfig.instance().cfg = None
    assert run_command("python -m experiments.run +exp=train_x") == "python -m experiments.run +exp=train_x"


def test_command_inside_hydra_has_every_override_quoted():
    overrides = ["+exp=train_unet_impurities", "train.loss.name=tolerant", "~train.loss.bce",
                 "+train.monitor_thresholds=[0.2,0.35,0.5]"]
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    try:
        cmd = run_command("unused")
    finally:
        HydraConfig.instance().cfg = None
    assert cmd.startswith("python -m experiments.run ")
    assert shlex.split(cmd)[3:] == overrides  # a shell gives back exactly the overrides
