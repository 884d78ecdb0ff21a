"""Rebuild the HTML report of a run from its tables.

Usage::

    python -m experiments.report run_dir=outputs/2024-05-01/12-00-00 [top_n=100] [out_dir=DIR] [report.cmap=magma]

Options are ``key=value`` (Hydra style; ``report.`` prefix optional).  They are
applied over ``conf/report/default.yaml`` and then over the ``report`` section
of the run's own ``.hydra/config.yaml``, so a plain rebuild reproduces the run's
report settings.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from experiments.reporting import ReportConfig, write_report

log = logging.getLogger("experiments.report")

_DEFAULTS = Path(__file__).resolve().parents[1] / "conf" / "report" / "default.yaml"


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


def parse_args(argv: list[str]) -> tuple[Path, Path | None, ReportConfig]:
    """``key=value`` arguments -> (run_dir, out_dir, ReportConfig); ValueError on bad input."""
    bad = [a for a in argv if "=" not in a]
    if bad:
        raise ValueError(f"expected key=value arguments, got {bad}")
    cli = OmegaConf.to_container(OmegaConf.from_dotlist([a.removeprefix("+") for a in argv]))
    run_dir = cli.pop("run_dir", None)
    if not run_dir:
        raise ValueError("run_dir=<path of a run dir> is required")
    out_dir = cli.pop("out_dir", None)
    nested = cli.pop("report", None)
    if isinstance(nested, dict):
        cli.update(nested)
    known = {f.name for f in dataclasses.fields(ReportConfig)}
    merged: dict[str, Any] = {}
    for source in (
        _yaml_section(_DEFAULTS, None),
        _yaml_section(Path(run_dir) / ".hydra" / "config.yaml", "report"),
    ):
        skipped = sorted(set(source) - known)
        if skipped:
            log.warning("ignoring unknown report options %s", skipped)
        merged.update({k: v for k, v in source.items() if k in known})
    merged.update(cli)  # unknown CLI keys are errors (ReportConfig.from_mapping)
    return Path(run_dir), (Path(out_dir) if out_dir else None), ReportConfig.from_mapping(merged)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 usage error, 1 run dir problem)."""
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    try:
        run_dir, out_dir, cfg = parse_args(argv)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        index = write_report(run_dir, out_dir=out_dir, **cfg.as_kwargs())
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
