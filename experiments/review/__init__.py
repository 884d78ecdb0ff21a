"""The local review app: ranked clusters in the browser, expert verdicts, learning from them.

``python -m experiments.review run_dir=DIR`` (see :mod:`experiments.review.__main__`); the
HTTP API is documented in :mod:`experiments.review.app`, the verdict store in
:mod:`experiments.review.store`.  Names are imported on first use, so that the command line
answers bad input without loading the web stack.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ReviewApp": "app",
    "create_app": "app",
    "ReviewError": "rundata",
    "RunData": "rundata",
    "load_run": "rundata",
    "StoreError": "store",
    "VerdictStore": "store",
    "read_verdicts": "store",
    "TileRenderer": "tiles",
    "deep_zoom_levels": "tiles",
    "reviewed_clusters": "training",
    "train_from_runs": "training",
    "write_synthetic_run": "synthetic_run",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
