"""Package names imported from their submodule on first access (PEP 562), for ``__init__`` modules.

``__getattr__, __dir__ = lazy_names(__name__, globals(), {"name": "submodule", ...})`` in a package's
``__init__`` makes ``package.name`` import ``package.submodule`` only when the name is first used
(later look-ups find it in the package's globals).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(package: str, namespace: dict[str, Any], where: Mapping[str, str]
               ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package`` for the names in ``where``."""

    def __getattr__(name: str) -> Any:
        sub = where.get(name)
        if sub is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{sub}", package), name)
        namespace[name] = value  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *where, *namespace.get("__all__", ())})

    return __getattr__, __dir__
