"""Silence TensorFlow's start-up lines (printed by its C++ logging before anything can filter them).

On a machine without a GPU, importing TensorFlow prints oneDNN notices, "Could not find cuda drivers"
and "failed call to cuInit" lines that say nothing to a user.  ``TF_CPP_MIN_LOG_LEVEL=3`` filters
the ones logged after TensorFlow's logging starts; the ones before it are written straight to file
descriptor 2, so :func:`quiet_tensorflow_import` redirects that descriptor to /dev/null while
``tensorflow`` is imported (once, lazily: nothing is imported here).  Python exceptions are not
affected.  Set ``TF_CPP_MIN_LOG_LEVEL`` to 0-2 to see the lines again.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys

__all__ = ["quiet_tensorflow_import"]


@contextlib.contextmanager
def _fd2_to_devnull():
    try:
        sys.stderr.flush()
    except Exception:  # noqa: BLE001
        pass
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _QuietTensorFlow:
    """A meta path finder (``find_spec`` is all ``sys.meta_path`` needs; ``importlib.abc`` costs ~20 ms)."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the real finders do the work
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def quiet_exec(module):
            with _fd2_to_devnull():
                exec_module(module)

        spec.loader.exec_module = quiet_exec
        return spec


def quiet_tensorflow_import() -> None:
    """Install the hook (idempotent; does nothing when TensorFlow is already imported or verbose)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "3":
        return
    if not any(isinstance(f, _QuietTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlow())
