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

__all__ = ["share_config_store"]


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
