"""Every config composes; every experiment preset names a known task; pipeline presets convert to dataclasses."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.tasks import TASKS
from experiments.config import ConfigError, pipeline_config

CONF = Path(__file__).resolve().parents[1] / "conf"
EXPS = sorted(p.stem for p in (CONF / "exp").glob("*.yaml"))


def test_presets_exist():
    assert {"demo", "mlography"} <= set(EXPS)


@pytest.mark.parametrize("exp", EXPS)
def test_every_preset_composes(compose, exp):
    cfg = compose([f"+exp={exp}"])
    assert cfg.task in TASKS, f"{exp}: task {cfg.task!r} is not registered in experiments/_tasks.py"
    text = (CONF / "exp" / f"{exp}.yaml").read_text()
    assert text.startswith("# @package _global_"), exp
    if cfg.task == "pipeline":
        pc = pipeline_config(cfg)
        assert pc.data.kind in ("scan", "mask")


@pytest.mark.parametrize("group", sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "exp"))
def test_every_group_option_composes(compose, group):
    for option in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
        compose([f"{group}={option}"])


def test_bad_values_are_config_errors(compose):
    with pytest.raises(ConfigError, match="data.kind"):
        pipeline_config(compose(["data.kind=video"]))
    with pytest.raises(ConfigError, match="runtime.mode"):
        pipeline_config(compose(["runtime.mode=threads"]))
