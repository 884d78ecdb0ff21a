"""``python -m experiments.review``: review a finished run in the browser, or train the re-ranker.

Usage::

    python -m experiments.review run_dir=DIR [port=8765] [host=127.0.0.1] [model=PATH]
    python -m experiments.review train run_dirs=[DIR1,DIR2] out=PATH [C=1.0]

``port=0`` picks a free port.  On a host other than loopback a token is generated and printed
with the URL; every request must carry it.  Errors in the input (not a run dir, a damaged
feedback database, a port in use, a bad option) end with one line on stderr and exit code 2.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import secrets
import socket
import sys
from pathlib import Path

from omegaconf import OmegaConf

from data.errors import QuantmetError

from .rundata import ReviewError

log = logging.getLogger("experiments.review")

USAGE = (
    "usage: python -m experiments.review run_dir=DIR [port=8765] [host=127.0.0.1] [model=PATH]\n"
    "       python -m experiments.review train run_dirs=[DIR,...] out=PATH [C=1.0]"
)


def _parse(argv: list[str], known: set[str]) -> dict:
    bad = [a for a in argv if "=" not in a]
    if bad:
        raise ReviewError(f"expected key=value arguments, got {bad}\n{USAGE}")
    try:
        cli = OmegaConf.to_container(OmegaConf.from_dotlist([a.removeprefix("+") for a in argv]))
    except Exception as exc:
        raise ReviewError(f"cannot parse arguments {argv}: {exc}") from None
    unknown = sorted(set(cli) - known)
    if unknown:
        raise ReviewError(f"unknown option(s) {unknown}; known: {sorted(known)}\n{USAGE}")
    return cli


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (:class:`ReviewError` when the port is taken)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ReviewError(f"port must be an integer in 0..65535, got {port!r}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ReviewError(f"cannot resolve host {host!r}: {exc}") from None
    family, _, _, _, addr = infos[0]
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so, and without it
    # every keep-alive response waits ~40 ms for a delayed ACK (Nagle)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ReviewError(
                f"port {port} on {host} is in use (another review app?): choose another with "
                "port=N, or port=0 for any free port"
            ) from None
        raise ReviewError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(argv: list[str]) -> int:
    import uvicorn

    from anomaly.rerank import load_reranker

    from .app import ReviewApp, create_app
    from .rundata import load_run
    from .store import VerdictStore

    cli = _parse(argv, {"run_dir", "port", "host", "model", "log_level"})
    if not cli.get("run_dir"):
        raise ReviewError(f"run_dir=<the output folder of a run> is required\n{USAGE}")
    host = str(cli.get("host", "127.0.0.1"))
    port = cli.get("port", 8765)
    run = load_run(Path(str(cli["run_dir"])))
    model = None
    if cli.get("model"):
        try:
            model = load_reranker(str(cli["model"]))
        except (FileNotFoundError, ValueError) as exc:
            raise ReviewError(f"model: {exc}") from None
    store = VerdictStore(run.layout.feedback_db, export_path=run.layout.feedback_parquet)
    store.export()
    loopback = is_loopback(host)
    token = None if loopback else secrets.token_urlsafe(24)
    sock = bind(host, port)
    state = ReviewApp(run, store, model=model)
    if len(run.clusters):
        first = run.scan_index(str(run.clusters.iloc[0]["scan_id"]))
        if first is not None:
            state.tiles.warm(first)  # the first view's scan is decoded while the browser starts
    app = create_app(state, token=token, loopback=loopback)
    actual = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{actual}/" + (f"?token={token}" if token else "")
    n_rev = sum(1 for r in store.all().values() if r["verdict"] is not None)
    print(
        f"quantmet review: {url}  ({len(run.clusters)} clusters, {n_rev} reviewed; Ctrl+C to stop)",
        flush=True,
    )
    if token:
        print(f"review token: {token} (needed on every request from another machine)", flush=True)
    config = uvicorn.Config(
        app,
        log_level=str(cli.get("log_level", "warning")),
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        store.close()
        state.tiles.close()
    return 0


def train(argv: list[str]) -> int:
    from .training import train_from_runs

    cli = _parse(argv, {"run_dirs", "out", "C"})
    dirs = cli.get("run_dirs")
    if isinstance(dirs, str):
        dirs = [dirs]
    if not dirs or not cli.get("out"):
        raise ReviewError(f"train needs run_dirs=[DIR,...] and out=PATH\n{USAGE}")
    model, path = train_from_runs(
        [Path(str(d)) for d in dirs], Path(str(cli["out"])), C=float(cli.get("C", 1.0))
    )
    card = model.card
    print(
        f"re-ranker written to {path} (card {path.with_name(path.stem + '.card.json').name}): "
        f"{card.get('n_verdicts')} verdicts ({card.get('n_confirmed')} confirmed, {card.get('n_dismissed')} "
        f"dismissed), leave-one-out accuracy {card.get('leave_one_out_accuracy')}"
        + ("; one class only: it keeps the rank order" if model.fallback else ""),
        flush=True,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if argv[:1] == ["train"]:
            return train(argv[1:])
        if argv[:1] in (["-h"], ["--help"], ["help"]):
            print(USAGE)
            return 0
        return serve(argv)
    except QuantmetError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
