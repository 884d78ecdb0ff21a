"""Rebuild the HTML report of a run: an alias of ``python -m experiments.run +exp=report``.

Usage::

    python -m experiments.report run_dir=outputs/2024-05-01/12-00-00 [top_n=100] [out_dir=DIR] [report.cmap=magma]

Options are ``key=value`` (``report.`` prefix optional), applied over ``conf/report/default.yaml``
and then over the ``report`` section of the run's own ``.hydra/config.yaml``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from omegaconf import OmegaConf

from experiments.reporting import ReportConfig
from experiments.reporting.task import ReportTaskError, rebuild, report_config_for

log = logging.getLogger("experiments.report")


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
    return Path(run_dir), (Path(out_dir) if out_dir else None), report_config_for(Path(run_dir), cli)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 usage error, 1 run dir problem)."""
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    try:
        run_dir, out_dir, cfg = parse_args(argv)
    except (ValueError, ReportTaskError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        index = rebuild(run_dir, out_dir, cfg)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
