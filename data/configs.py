"""Build a config dataclass from a mapping, rejecting unknown keys (the one place that does).

Nested dataclass fields are built from nested mappings, so a whole typed configuration comes
from one plain mapping (a YAML section, ``OmegaConf.to_container`` of a composed config).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

__all__ = ["dataclass_from"]


def _dataclass_of(tp: Any) -> type | None:
    """The dataclass a field annotation names (``X`` or ``X | None``), else None."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        found = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a) and isinstance(a, type)]
        return found[0] if len(found) == 1 else None
    return None


def dataclass_from(cls: type, values: Mapping[str, Any] | None, *, where: str = "",
                   error: type[Exception] = ValueError) -> Any:
    """Build dataclass ``cls`` from ``values``, with a clear error for unknown keys or bad values.

    Parameters
    ----------
    cls : type
        A dataclass.
    values : mapping or None
        Field values; a field whose type is a dataclass may be given as a mapping (built the
        same way) or None where the field allows it.  An instance of ``cls`` is returned as is.
    where : str
        Where the values come from (``"anomaly.area"``), named in the messages.
    error : exception type
        What is raised (a ``ValueError`` subclass such as ``ConfigError``).

    Raises
    ------
    error
        An unknown option (the message lists the known ones), or a value ``cls`` rejects.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class C:
    ...     k: int = 1
    >>> dataclass_from(C, {"k": 3})
    C(k=3)
    >>> dataclass_from(C, {"kk": 3}, where="c")
    Traceback (most recent call last):
    ...
    ValueError: unknown option(s) ['kk'] in c; known: ['k']
    """
    if isinstance(values, cls):
        return values
    name = where or cls.__name__
    if values is not None and not isinstance(values, Mapping):
        raise error(f"{name} must be a mapping of options, got {values!r}")
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise error(f"unknown option(s) {unknown} in {name}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        sub = _dataclass_of(hints.get(key))
        if sub is not None and isinstance(value, Mapping):
            values[key] = dataclass_from(sub, value, where=f"{name}.{key}", error=error)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise error(f"invalid {name}: {exc}") from None
