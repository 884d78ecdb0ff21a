"""The Hydra entry point: ``python -m experiments.run +exp=NAME [key=value ...]``.

Runs the task named by ``cfg.task`` (see :mod:`experiments.tasks`) with the
Hydra run directory as its output folder.  User errors (bad input, bad config)
end with a one-line message and exit code 2, not a traceback.
"""

from __future__ import annotations

import time

_T_MODULE = time.time()  # the phases of a run's start (QUANTMET_STARTUP_TIMES, see _startup.write_phases)

import gc  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from experiments import _startup  # noqa: E402

if __name__ == "__main__":  # python -m experiments.run (cli() does the same for the console script)
    _startup.pause_gc()  # no cyclic GC while ~1,500 modules load
    _startup.lazy_submodules()  # numpy.f2py, numpy.testing: SciPy imports them, a run never uses them

from experiments._quiet import quiet_tensorflow_import  # noqa: E402

quiet_tensorflow_import()  # TensorFlow's C++ start-up lines say nothing to a user (TF_CPP_MIN_LOG_LEVEL=0 shows them)

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from data.errors import QuantmetError  # noqa: E402 (data imports its submodules on first use)

log = logging.getLogger(__name__)


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
from experiments.config import register_pipeline_schemas  # noqa: E402

register_pipeline_schemas()  # schema/<section>: every composition types the pipeline's sections
if _startup.needs_schemas(_CONF, sys.argv[1:]):  # a pipeline run selects none of the task groups (~0.1 s)
    from experiments.schemas import register as _register_schemas  # lazy

    _register_schemas()  # the train / eval / bench / compare groups (typed defaults), before Hydra composes
_startup.share_config_store()  # Hydra's per-compose copy of its repository skips the ConfigStore
_startup.skip_mode_probe(_CONF)  # and its hydra.mode probe (a whole extra compose) when nothing sets it
_T_READY = time.time()


def _precheck_pipeline(cfg: DictConfig) -> None:
    """Check a pipeline run's options before the pipeline's modules load (pandas, SciPy, PyArrow...).

    A bad value (``data.kind=bogus``) then answers in a fraction of a second instead of after ~0.7 s
    of imports.  The pipeline checks again when it starts (:func:`experiments.pipeline.job.run_pipeline`;
    a few ms, or the models' sha256 for a scan run).
    """
    from omegaconf import OmegaConf  # lazy

    from experiments.config import pipeline_config  # lazy

    pc = pipeline_config(cfg)  # types, keys, ranges: before the validation's own imports
    from experiments.pipeline.validate import validate_pipeline  # lazy

    run_config = OmegaConf.to_container(cfg, resolve=True)
    validate_pipeline(pc, run_config if "task" in run_config else None)


@hydra.main(version_base="1.3", config_path=_CONF, config_name="config")
def main(cfg: DictConfig) -> int:
    t_main = time.time()
    from hydra.core.hydra_config import HydraConfig  # lazy

    from experiments.tasks import get_task  # lazy

    output_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        if str(cfg.task) == "pipeline":
            _precheck_pipeline(cfg)
        task = get_task(str(cfg.task))
    except QuantmetError as exc:  # a bad option: one line, before the task's modules load
        log.error("%s", exc)
        task = None
    _startup.resume_gc()  # start-up is over (the task's modules are imported): see _startup.pause_gc
    t_task = time.time()
    try:
        code = 2 if task is None else int(task(cfg, output_dir) or 0)
    except QuantmetError as exc:
        log.error("%s", exc)
        code = 2
    finally:
        _startup.write_phases(module=_T_MODULE, ready=_T_READY, main=t_main, task=t_task, done=time.time())
    if code and HydraConfig.get().mode.name != "MULTIRUN":
        sys.exit(code)
    return code


def cli() -> None:
    """The ``quantmet`` console script: ``quantmet +exp=demo`` = ``python -m experiments.run +exp=demo``."""
    sys.argv[1:] = _quote_plain_paths(sys.argv[1:])
    _startup.pause_gc()  # until the task starts (main resumes it)
    _startup.lazy_submodules()
    try:
        main()
    finally:
        _startup.resume_gc()  # when start-up ended before the task (--help, a config error)
        # The task is over and its files are closed. At exit the interpreter's last garbage
        # collection walks every object of the ~2,000 modules a run imports (~0.3 s of every run);
        # frozen objects are skipped (objects freed by reference counting are still finalised).
        gc.freeze()


if __name__ == "__main__":
    cli()
