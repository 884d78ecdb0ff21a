"""The one owner that commits a scan: the runner's unit of work on a worker.

:class:`CommittingStage` wraps the per-scan stage (:class:`.stage.ScanAnalyzer`): it analyses a
scan and, when the task names a run dir, writes the scan's files there and checkpoints it
(:func:`.checkpoint.commit_scan`), on the worker that holds the bytes.  The result that goes back to
the driver carries the tables and the names of the files written, never their bytes.  A failure to
write the run dir is not the scan's fault: it comes back as a :class:`.result.ScanWriteError`
(errno and message) in ``ScanResult.write_error``, and the driver stops the run with it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from data.inputs import ScanInput

from . import checkpoint
from .result import ScanResult, ScanTask, ScanWriteError

__all__ = ["CommittingStage"]


class CommittingStage:
    """Analyse a scan, then commit it into the task's run dir.

    Parameters
    ----------
    stage : callable
        ``stage(task) -> ScanResult`` (a :class:`.stage.ScanAnalyzer`); its ``warm_up`` is
        called by :meth:`warm_up` when it has one.
    """

    def __init__(self, stage: Callable[[ScanTask], ScanResult]):
        self.stage = stage

    def warm_up(self) -> None:
        """Load the wrapped stage's models (once per worker)."""
        warm_up = getattr(self.stage, "warm_up", None)
        if callable(warm_up):
            warm_up()

    def __call__(self, task: ScanTask | ScanInput) -> ScanResult:
        if isinstance(task, ScanInput):
            task = ScanTask(task)
        result = self.stage(task)
        if task.run_root is not None:
            try:
                checkpoint.commit_scan(Path(task.run_root), result, input_id=task.input_id,
                                       config_hash=task.config_hash)
            except OSError as exc:  # the run dir, not the scan: the driver stops the run
                result.files = {}
                result.write_error = ScanWriteError.from_os_error(exc)
        return result
