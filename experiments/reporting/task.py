"""The ``report`` task: rebuild a run's report from its files.

``python -m experiments.run +exp=report run_dir=DIR [out_dir=DIR2] [report.top_n=100 ...]``
(or the alias ``python -m experiments.report run_dir=DIR [top_n=100 ...]``).  Options are applied
over ``conf/report/default.yaml`` and then over the ``report`` section of the run's own
``.hydra/config.yaml``, so a plain rebuild reproduces the run's report settings; only the options
given on the command line change.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from data.errors import QuantmetError

from .config import ReportConfig
from .html import write_report

__all__ = ["ReportTaskError", "report_config_for", "rebuild", "run"]

log = logging.getLogger(__name__)

_DEFAULTS = Path(__file__).resolve().parents[2] / "conf" / "report" / "default.yaml"


class ReportTaskError(QuantmetError, ValueError):
    """Bad arguments of the report task."""


def _yaml_section(path: Path, section: str | None) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as exc:  # a broken run config must not block a rebuild
        log.warning("cannot read %s: %s", path, exc)
        return {}
    if section is not None:
        cfg = cfg.get(section) if isinstance(cfg, dict) else None
    return dict(cfg) if isinstance(cfg, dict) else {}


def report_config_for(run_dir: Path, cli: dict[str, Any]) -> ReportConfig:
    """conf/report/default.yaml < the run's ``report`` section < ``cli`` (unknown CLI keys are errors)."""
    known = {f.name for f in dataclasses.fields(ReportConfig)}
    merged: dict[str, Any] = {}
    for source in (_yaml_section(_DEFAULTS, None), _yaml_section(Path(run_dir) / ".hydra" / "config.yaml", "report")):
        skipped = sorted(set(source) - known)
        if skipped:
            log.warning("ignoring unknown report options %s", skipped)
        merged.update({k: v for k, v in source.items() if k in known})
    merged.update(cli)
    try:
        return ReportConfig.from_mapping(merged)
    except ValueError as exc:
        raise ReportTaskError(str(exc)) from None


def rebuild(run_dir: Path, out_dir: Path | None, cfg: ReportConfig) -> Path:
    """Write the report of ``run_dir`` (into ``out_dir``, default ``run_dir/report``)."""
    return write_report(run_dir, out_dir=out_dir, **cfg.as_kwargs())


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``report`` (``+exp=report run_dir=...``)."""
    from hydra.core.hydra_config import HydraConfig

    run_dir = cfg.get("run_dir")
    if not run_dir:
        raise ReportTaskError("run_dir=<path of a run dir> is required")
    try:
        given = [o for o in HydraConfig.get().overrides.task if o.lstrip("+~").startswith("report.")]
    except ValueError:  # not under Hydra (tests): every report option counts as given
        given = [f"report.{k}" for k in cfg.get("report", {})]
    names = {o.lstrip("+~").split("=", 1)[0].removeprefix("report.") for o in given}
    composed = OmegaConf.to_container(cfg.report, resolve=True) if "report" in cfg else {}
    cli = {k: v for k, v in composed.items() if k in names}
    out = cfg.get("out_dir")
    index = rebuild(Path(run_dir), Path(out) if out else None, report_config_for(Path(run_dir), cli))
    print(index)
    return 0
