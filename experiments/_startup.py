"""Start-up costs of the Hydra app that a run does not need (used by :mod:`experiments.run`).

Hydra copies its whole config repository (``copy.deepcopy``) every time it composes a config or
lists a group's options.  The repository's structured-config source holds Hydra's global
``ConfigStore`` (every registered schema: Hydra's own and the train / eval / bench task schemas),
so each copy rebuilds ~9,000 OmegaConf nodes; ``--help`` lists every group and pays this more
than a hundred times (about 1.2 s of its 2.2 s).  The copy is never needed: ``ConfigStore.load``
already returns a deep copy of the node it loads, and the copy exists only so that
``initialize_sources`` does not change the original source list.  :func:`share_config_store`
makes a copied config source share the (singleton) store instead of copying it.
"""

from __future__ import annotations

import copy
import gc
import sys

__all__ = ["LAZY_SUBMODULES", "PHASES_ENV", "lazy_submodules", "needs_schemas", "pause_gc", "resume_gc", "share_config_store",
           "skip_mode_probe", "write_phases"]


def _copy_source_sharing_store(self, memo: dict):
    from hydra.core.config_store import ConfigStore  # lazy

    new = object.__new__(type(self))
    memo[id(self)] = new
    for key, value in self.__dict__.items():
        new.__dict__[key] = value if isinstance(value, ConfigStore) else copy.deepcopy(value, memo)
    return new


def share_config_store() -> None:
    """Let deep copies of Hydra's config sources share the ConfigStore (idempotent; see module doc).

    Set on the ``ConfigSource`` base class: Hydra's plugin discovery imports its core sources a
    second time under the same module names, so patching the concrete classes would miss the
    ones in use.
    """
    from hydra.plugins.config_source import ConfigSource  # lazy

    if "__deepcopy__" not in ConfigSource.__dict__:
        ConfigSource.__deepcopy__ = _copy_source_sharing_store


def _mode_may_be_set(config_dir: str, overrides: list[str]) -> bool:
    """Whether ``hydra.mode`` may be set by ``overrides`` or by a config file under ``config_dir``.

    Conservative: any override naming a ``hydra`` group or ``mode`` key, any extra config
    directory, or any YAML file that mentions both ``hydra`` and a ``mode:`` key counts as "may".
    """
    import re  # lazy
    from pathlib import Path  # lazy

    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if key.startswith("hydra/") or key in ("hydra", "hydra.mode") or "searchpath" in key:
            return True
    if any(a in ("-cd", "--config-dir", "-cp", "--config-path") or a.startswith("--config-dir")
           for a in sys.argv[1:]):
        return True
    mode_key = re.compile(r"(^|[\s{,])mode\s*:", re.M)
    for path in Path(config_dir).rglob("*.yaml"):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            return True
        if "hydra" in text and mode_key.search(text):
            return True
    return False


def skip_mode_probe(config_dir: str) -> None:
    """Skip Hydra's extra compose that only reads ``hydra.mode`` when nothing can set it (idempotent).

    Before a run Hydra composes the whole config once just to read ``hydra.mode`` (None unless a
    config or an override sets it: then ``--multirun`` is implied), then composes it again for the
    run: ~0.1 s of every start.  When neither the overrides nor the app's config files can set it
    (:func:`_mode_may_be_set`), the answer is None without composing; otherwise Hydra asks as before.
    """
    from hydra._internal.hydra import Hydra  # lazy

    probe = Hydra.get_mode
    if getattr(probe, "_quantmet_skip", False):
        return

    def get_mode(self, config_name, overrides):
        if _mode_may_be_set(config_dir, list(overrides)):
            return probe(self, config_name, overrides)
        return None

    get_mode._quantmet_skip = True
    Hydra.get_mode = get_mode


def pause_gc() -> None:
    """Pause the cyclic garbage collector for the start-up (imports and configuration).

    The ~1,500 modules a run imports allocate hundreds of thousands of long-lived objects; the
    collector walks them again and again while they are created (~0.2 s of a mask run).  Call
    :func:`resume_gc` once the task's modules are imported.
    """
    gc.disable()


def resume_gc() -> None:
    """Freeze what start-up allocated (later collections skip it) and re-enable the collector.

    Does nothing when the collector is running (start-up was not paused by :func:`pause_gc`).
    """
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


#: NumPy submodules that SciPy's vendored ``array_api_compat`` imports eagerly (``from numpy import *``
#: reaches NumPy's lazy attributes): ~80 ms of every run that imports ``scipy.spatial`` or
#: ``scipy.ndimage``, for modules a run never uses (the Fortran wrapper generator, the test helpers).
LAZY_SUBMODULES = ("numpy.f2py", "numpy.testing")


class _LazySubmodules:
    """A meta path finder: the named modules load on first attribute access (``importlib.util.LazyLoader``).

    Everything else about them is unchanged (same module object in ``sys.modules``, same contents
    once touched); only when their code runs moves.
    """

    def __init__(self, names) -> None:
        self.names = frozenset(names)

    def find_spec(self, name, path=None, target=None):
        if name not in self.names:
            return None
        import importlib.util  # lazy

        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


def lazy_submodules(names=LAZY_SUBMODULES) -> None:
    """Make ``names`` load lazily when first imported (idempotent; no effect on ones already imported)."""
    if any(isinstance(f, _LazySubmodules) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _LazySubmodules([n for n in names if n not in sys.modules]))


_INSPECTING_FLAGS = ("-h", "--help", "--hydra-help", "-c", "--cfg", "-i", "--info", "-sc", "--shell-completion",
                     "-p", "--package", "-cd", "--config-dir", "-cp", "--config-path", "-cn", "--config-name")


def _defaults_groups(path) -> set[str] | None:
    """Top-level groups that a preset's ``defaults:`` list selects (None: cannot tell)."""
    import yaml  # lazy (Hydra has imported it)

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return None
    groups: set[str] = set()
    for entry in doc.get("defaults") or [] if isinstance(doc, dict) else []:
        if entry == "_self_":
            continue
        if not isinstance(entry, dict):
            return None  # a plain config name (another preset): ask for everything
        for key in entry:
            words = str(key).split()
            groups.add(words[-1].lstrip("/").split("/")[0] if words else "")
    return groups


def needs_schemas(config_dir: str, args: list[str]) -> bool:
    """Whether composing the config for ``args`` may need the task schemas in Hydra's ConfigStore.

    The train / eval / bench / compare schemas (:mod:`experiments.schemas`) exist only as structured
    configs; the app's other groups are folders of YAML files under ``config_dir``.  Registering the
    schemas imports the research configs and builds ~20 structured configs (~0.1 s), which a pipeline
    run (``+exp=mlography``, ``+exp=archive``) never selects.  The answer is False only when every
    group the command line and its ``exp`` preset(s) select is such a folder (or Hydra's own):
    inspecting flags (``--help``, ``--cfg``, ``--info``...), a preset that cannot be read or that
    includes another preset, and any other group all answer True.
    """
    from pathlib import Path  # lazy

    conf = Path(config_dir)
    # "schema": the pipeline sections' typed schemas, registered for every composition (run.py)
    folders = {p.name for p in conf.iterdir() if p.is_dir()} | {"hydra", "schema"}
    selected: set[str] = set()
    for path in conf.rglob("*.yaml"):  # the primary config and group options with a defaults list
        if path.parent.name != "exp" and "defaults" in path.read_text(encoding="utf-8"):
            groups = _defaults_groups(path)
            if groups is None:
                return True
            selected |= groups
    for arg in args:
        if arg.startswith("-"):
            if arg.split("=", 1)[0] in _INSPECTING_FLAGS or not arg.startswith(("-m", "--multirun")):
                return True
            continue
        key, eq, value = arg.partition("=")
        key = key.lstrip("+~")
        if not eq or "." in key:  # a value (data.input=...), not a group selection
            continue
        group = key.split("/")[0]
        selected.add(group)
        if group == "exp":
            for name in value.split(","):
                groups = _defaults_groups(conf / "exp" / f"{name.strip()}.yaml")
                if groups is None:
                    return True
                selected |= groups
    return not {g.split("@", 1)[0] for g in selected} <= folders  # schema@data: group "schema"


#: Environment variable naming a JSON file: a run writes the wall-clock times of its start-up phases there.
PHASES_ENV = "QUANTMET_STARTUP_TIMES"


def write_phases(**stamps: float) -> None:
    """Write ``stamps`` (``time.time()`` values by phase) to the file named by :data:`PHASES_ENV`, if set.

    :mod:`experiments.run` records ``module`` (its first line runs), ``ready`` (Hydra and the app
    imported, schemas registered), ``main`` (Hydra has composed the config, made the run dir and set up
    logging), ``task`` (the task's modules imported) and ``done`` (the task returned).  Used by
    ``+exp=bench_process``; nothing is written (or imported) without the variable.
    """
    import os  # lazy

    path = os.environ.get(PHASES_ENV)
    if not path:
        return
    import json  # lazy

    try:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(stamps, fh)
    except OSError:  # a measurement aid must never fail a run
        pass
