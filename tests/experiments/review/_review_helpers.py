"""Shared helpers of the review app tests: a small synthetic run dir, a server in a thread or a process."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[3]
XSS_ID = "<img src=x onerror=alert(1)>"
GONE_ID = "lot2/gone"


def make_run(root: Path) -> Path:
    """A run dir of 3 synthetic scans (one with an XSS scan id, one whose image file is gone)."""
    from experiments.review.synthetic_run import write_synthetic_run

    run = write_synthetic_run(
        root / "run", shape=(640, 1024), seed=3, scan_ids=["lot1/scan-a", XSS_ID, GONE_ID]
    )
    scans = pd.read_parquet(run / "scans.parquet")
    Path(scans.loc[scans.scan_id == GONE_ID, "path"].iloc[0]).unlink()
    return run


def copy_run(template: Path, dest: Path) -> Path:
    """A fresh copy of a template run dir (its scan files are shared: they are only read)."""
    run = dest / "run"
    shutil.copytree(template, run)
    return run


class ThreadServer:
    """uvicorn serving an ASGI app on a free loopback port, in a thread."""

    def __init__(self, app, host: str = "127.0.0.1") -> None:
        import uvicorn

        from experiments.review.__main__ import bind

        sock = bind(host, 0)
        self.port = sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if time.monotonic() - t0 > 10:
                raise RuntimeError("server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class ProcessServer:
    """``python -m experiments.review run_dir=... port=0`` in a subprocess; ``url`` from its first line."""

    def __init__(self, run: Path, *extra: str, timeout: float = 30) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "experiments.review", f"run_dir={run}", "port=0", *extra],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        t0 = time.monotonic()
        line = ""
        while time.monotonic() - t0 < timeout:
            line = self.proc.stdout.readline()
            if line or self.proc.poll() is not None:
                break
        m = re.search(r"(http://\S+)", line)
        if not m:
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.kill()
            raise RuntimeError(f"server did not start: {line!r} {err!r}")
        self.url = m.group(1).rstrip("/")

    def kill(self) -> None:
        """SIGKILL (no clean shutdown), by the process id."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()
