"""The Hydra entry point: ``python -m experiments.run +exp=NAME [key=value ...]``.

Runs the task named by ``cfg.task`` (see :mod:`experiments.tasks`) with the
Hydra run directory as its output folder.  User errors (bad input, bad config)
end with a one-line message and exit code 2, not a traceback.
"""

from __future__ import annotations

import gc
import logging
import sys
from pathlib import Path

from experiments._quiet import quiet_tensorflow_import

quiet_tensorflow_import()  # TensorFlow's C++ start-up lines say nothing to a user (TF_CPP_MIN_LOG_LEVEL=0 shows them)

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from data.errors import QuantmetError  # noqa: E402 (data imports its submodules on first use)
from experiments._startup import share_config_store  # noqa: E402
from experiments.schemas import register as _register_schemas  # noqa: E402

log = logging.getLogger(__name__)
_register_schemas()  # the train / eval / bench groups (typed defaults), before Hydra composes
share_config_store()  # Hydra's per-compose copy of its repository skips the ConfigStore (see _startup)


def _quote_plain_paths(argv: list[str]) -> list[str]:
    """Quote ``key=value`` overrides whose value has non-ASCII letters (``data.input=/Proben/µm``).

    Hydra's override grammar rejects an unquoted ``µ`` or ``ä``; a path with them is quoted for it.
    Values that look like sweeps, lists or function calls (``,[](``), or are already quoted, are
    left alone (quote those yourself: ``'data.input="/Proben/µm,1"'``).
    """
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if (eq and value and not key.startswith("-") and any(ord(ch) > 127 for ch in value)
                and value[0] not in "'\"" and not any(ch in value for ch in ",[](){}")):
            value = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
            arg = f"{key}={value}"
        out.append(arg)
    return out


# an absolute path: the same configs whether started as `python -m experiments.run` or as `quantmet`
_CONF = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=_CONF, config_name="config")
def main(cfg: DictConfig) -> int:
    from hydra.core.hydra_config import HydraConfig  # lazy

    from experiments.tasks import get_task  # lazy

    output_dir = Path(HydraConfig.get().runtime.output_dir)
    task = get_task(str(cfg.task))
    try:
        code = int(task(cfg, output_dir) or 0)
    except QuantmetError as exc:
        log.error("%s", exc)
        code = 2
    if code and HydraConfig.get().mode.name != "MULTIRUN":
        sys.exit(code)
    return code


def cli() -> None:
    """The ``quantmet`` console script: ``quantmet +exp=demo`` = ``python -m experiments.run +exp=demo``."""
    sys.argv[1:] = _quote_plain_paths(sys.argv[1:])
    try:
        main()
    finally:
        # The task is over and its files are closed. At exit the interpreter's last garbage
        # collection walks every object of the ~2,000 modules a run imports (~0.3 s of every run);
        # frozen objects are skipped (objects freed by reference counting are still finalised).
        gc.freeze()


if __name__ == "__main__":
    cli()
