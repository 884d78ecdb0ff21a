"""One writer per run dir: an exclusive, non-blocking lock held while a run writes it."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from data.errors import QuantmetError

__all__ = ["RunDirBusyError", "RunDirWriteError", "RunLock"]


class RunDirBusyError(QuantmetError, RuntimeError):
    """Another run is writing this run dir."""


class RunDirWriteError(QuantmetError, OSError):
    """The run dir cannot be written (disk full, read-only, no permission)."""


def write_error(exc: OSError, what: str | Path) -> RunDirWriteError:
    """A one-line :class:`RunDirWriteError` for an OSError raised while writing ``what``."""
    reason = {errno.ENOSPC: "disk full", errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
              errno.EDQUOT: "disk quota exceeded", errno.EPERM: "not permitted"}.get(exc.errno, exc.strerror or str(exc))
    return RunDirWriteError(
        f"cannot write {what}: {reason}. Finished scans are checkpointed: free space (or fix the "
        "permissions) and rerun with runtime.resume=true into the same run dir"
    )


class RunLock:
    """``with RunLock(path):`` holds an exclusive ``flock`` on ``path`` (created if needed).

    A second holder fails at once with :class:`RunDirBusyError` naming the process that holds it.
    The lock is released when the process ends, however it ends (the kernel drops it), so a killed
    run never leaves a stale lock behind.  (``flock`` may not be enforced on some network file
    systems; there, do not start two runs into one run dir.)
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise write_error(exc, self.path.parent.parent) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            try:
                holder = os.read(fd, 4096).decode("utf-8", "replace").strip()
            finally:
                os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = f" ({holder})" if holder else ""
                raise RunDirBusyError(
                    f"another run is writing {self.path.parent.parent}{who}; wait for it or choose another run dir"
                ) from None
            raise
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")})
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None
