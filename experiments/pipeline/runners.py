"""Runners: the same per-scan stage executed serially or on Ray.

Ray lives here and nowhere else in the pipeline.  A runner takes the scan
inputs, a picklable factory that builds the stage (once per worker, so models
load once per worker), a ``prepare`` function that turns an input into the
task handed out (called when the scan is dispatched, so it carries what the
driver knows then) and a callback that receives each :class:`ScanResult` as
soon as it is done.  The stage a factory builds commits each scan into the run dir itself
(:class:`.commit.CommittingStage`, on the worker); the callback only takes in what it returns.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from data.inputs import ScanInput

from ..config import PipelineConfig, RuntimeConfig
from .commit import CommittingStage
from .render import RenderOptions
from .result import ScanResult, ScanTask, failed_result
from .stage import ScanAnalyzer

__all__ = ["StageFactory", "run_serial", "run_ray", "run_stage", "ray_address", "ray_session", "release_ray",
           "local_cpus"]

# Scans queued per Ray worker (one running, one waiting).
_TASKS_PER_WORKER = 2

# Set when this process started (or joined) Ray itself, so that it is also the one to let it go.
_OWNED_SESSION = False

log = logging.getLogger(__name__)

OnResult = Callable[[ScanResult], None]
Prepare = Callable[[ScanInput], ScanTask]


@dataclass(frozen=True)
class StageFactory:
    """Picklable recipe for the per-scan stage: a :class:`.stage.ScanAnalyzer` that commits its scans."""

    cfg: PipelineConfig
    render: RenderOptions | None = None

    def __call__(self) -> CommittingStage:
        map_rows = None
        rt = self.cfg.runtime
        if rt.spatial_on_ray and rt.mode == "serial":
            # One scan at a time: huge scans fan their spatial rows out to Ray tasks
            # (only above anomaly.scorers.spatial.ray_min_regions impurities).
            from .spatial_ray import ray_map_rows  # lazy: Ray

            map_rows = ray_map_rows
        elif rt.spatial_on_ray:
            log.warning("runtime.spatial_on_ray is ignored with runtime.mode=ray (scans already fill the CPUs)")
        return CommittingStage(ScanAnalyzer(self.cfg, self.render, map_rows=map_rows))


def local_cpus() -> int:
    """CPUs this process may use (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _progress(total: int, desc: str):
    quiet = total <= 1 or os.environ.get("QUANTMET_NO_PROGRESS") == "1" or not sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit="scan", disable=quiet)


def _build(factory: Callable):
    """The stage, with its models loaded (``warm_up``) when it has any."""
    stage = factory()
    warm_up = getattr(stage, "warm_up", None)
    if callable(warm_up):
        warm_up()
    return stage


def _as_task(item: ScanInput) -> ScanTask:
    return ScanTask(item)


def run_serial(items: Sequence[ScanInput], factory: Callable, on_result: OnResult,
               prepare: Prepare = _as_task) -> dict:
    """Run the stage on each item in this process; returns ``{"workers": 1, "startup_s": ...}``."""
    t0 = time.perf_counter()
    stage = _build(factory)
    stats = {"workers": 1, "startup_s": time.perf_counter() - t0}
    failed = 0
    with _progress(len(items), "scans") as bar:
        for item in items:
            result = stage(prepare(item))
            failed += not result.ok
            on_result(result)
            bar.set_postfix(failed=failed)
            bar.update()
    return stats


class _StageActor:
    """Holds one stage (and its models, loaded at start) per Ray worker process."""

    def __init__(self, factory: Callable, threads: int | None = None):
        from .._quiet import quiet_tensorflow_import  # lazy: in the Ray worker only

        quiet_tensorflow_import()
        if threads is not None:  # before TensorFlow starts its thread pools (env, read at init)
            import cv2  # lazy: in the Ray worker only

            os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
            os.environ["TF_NUM_INTEROP_THREADS"] = str(threads)
            cv2.setNumThreads(threads)
        self.stage = _build(factory)

    def run(self, task: ScanTask) -> ScanResult:
        return self.stage(task)

    def pid(self) -> int:
        return os.getpid()


def ray_address(runtime: RuntimeConfig) -> str | None:
    """The cluster this run joins: ``runtime.address``, else ``RAY_ADDRESS`` (which Ray sets inside a
    job of ``ray job submit``); None = a local Ray of this run's own."""
    return runtime.address or os.environ.get("RAY_ADDRESS") or None


def ray_session(runtime: RuntimeConfig):
    """Initialise Ray for this run (local on this machine's cores, or join ``runtime.address`` or ``RAY_ADDRESS``)."""
    import ray  # lazy: Ray only for runtime.mode=ray

    global _OWNED_SESSION
    if ray.is_initialized():
        return ray
    kwargs: dict = {"include_dashboard": False, "log_to_driver": True}
    address = ray_address(runtime)
    if address:
        kwargs["address"] = address
    else:
        # A local Ray: this machine's node, advertised on loopback only (Ray 2.60 still opens its
        # gRPC ports on every interface; they require Ray's token, which local Ray turns on).
        kwargs["_node_ip_address"] = "127.0.0.1"
        kwargs["num_cpus"] = min(int(runtime.num_workers), local_cpus()) if runtime.num_workers else local_cpus()
    # Workers import the project's packages from the driver's checkout.
    root = str(Path(__file__).resolve().parents[2])
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {"PYTHONPATH": os.pathsep.join(paths if root in paths else [root, *paths]),
           "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    if address:
        # a cluster's workers get them from the job's runtime_env
        kwargs["runtime_env"] = {"env_vars": {**env, "QUANTMET_NO_PROGRESS": "1"}}
    else:
        # A local Ray's raylet, and so every worker, inherits this process's environment. Not a
        # runtime_env here: a job with one cannot use the workers Ray pre-starts with the node, so
        # each actor waited for a fresh Python (0.6 s) while the pre-started ones idled.
        os.environ.update(env)
    ray.init(**kwargs)
    _OWNED_SESSION = True
    return ray


def release_ray() -> threading.Thread | None:
    """Shut down the Ray session this run started, in a background thread; join it before exit.

    Stopping a local Ray (its GCS, raylet and worker processes) takes 1-2 s; the driver ranks
    the clusters and builds the report meanwhile instead of waiting for it at interpreter exit.
    A session that the caller had started (``ray.init`` before the run) is left alone.
    """
    global _OWNED_SESSION
    if not _OWNED_SESSION:
        return None
    _OWNED_SESSION = False
    import ray  # lazy: Ray only for runtime.mode=ray

    thread = threading.Thread(target=ray.shutdown, name="ray-shutdown", daemon=True)
    thread.start()
    return thread


class _Dispatch:
    """The scans of a Ray run: the queue, the scans in flight per actor, retries of crashed ones."""

    def __init__(self, items: Sequence[ScanInput], actors: list, new_actor: Callable, prepare: Prepare,
                 max_retries: int, kind: str):
        self.queue = list(items)[::-1]
        self.actors = actors
        self.new_actor = new_actor
        self.prepare = prepare
        self.max_retries = max_retries
        self.kind = kind
        self.attempts: dict[str, int] = {}
        self.in_flight: dict = {}  # ref -> (actor index, the actor, item, submission number)
        self.seq = 0

    def submit(self, idx: int) -> None:
        item = self.queue.pop()
        self.seq += 1
        self.in_flight[self.actors[idx].run.remote(self.prepare(item))] = (idx, self.actors[idx], item, self.seq)

    def fill(self, idx: int, depth: int) -> None:
        """Submit to actor ``idx`` until it has ``depth`` scans queued (or the queue is empty)."""
        queued = sum(1 for v in self.in_flight.values() if v[0] == idx)
        for _ in range(min(depth - queued, len(self.queue))):
            self.submit(idx)

    def crashed(self, entry: tuple, exc: Exception, died: bool) -> ScanResult | None:
        """A scan whose worker died (or whose task could not run): retried, or its failed result.

        An actor runs its scans in order, so the earliest submitted of a dead actor's scans was
        running (the culprit); the ones queued behind it are innocent and go back to the queue
        without counting an attempt.
        """
        idx, actor, item, n = entry
        mates = {r: v for r, v in self.in_flight.items() if died and v[1] is actor}
        for r in mates:
            del self.in_flight[r]
        victims = sorted([(n, item), *((v[3], v[2]) for v in mates.values())], key=lambda t: t[0])
        (_, culprit), innocent = victims[0], [it for _, it in victims[1:]]
        if died:
            self.actors[idx] = self.new_actor()  # replace the dead worker
        self.queue.extend(reversed(innocent))  # next to run, in their order
        self.attempts[culprit.scan_id] = self.attempts.get(culprit.scan_id, 0) + 1
        if self.attempts[culprit.scan_id] <= self.max_retries:
            log.warning("worker died on %s; retrying (%d)", culprit.scan_id, self.attempts[culprit.scan_id])
            self.queue.append(culprit)
            self.fill(idx, _TASKS_PER_WORKER)
            return None
        msg = f"worker crashed {self.attempts[culprit.scan_id]} time(s): {type(exc).__name__}: {str(exc)[:500]}"
        self.fill(idx, _TASKS_PER_WORKER - 1)
        return failed_result(culprit, self.kind, msg)


def _start_actors(ray, factory: Callable, runtime: RuntimeConfig, n_items: int) -> tuple[list, Callable, int]:
    """One actor per worker (their models load in parallel); returns the actors, a maker, their number."""
    from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError  # lazy: Ray

    cluster_cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    n_workers = int(runtime.num_workers or cluster_cpus)
    if n_workers > cluster_cpus:
        log.warning("runtime.num_workers=%d but the cluster has %d CPU(s): using %d", n_workers, cluster_cpus, cluster_cpus)
    n_workers = max(1, min(n_workers, cluster_cpus, n_items))
    actor_cls = ray.remote(num_cpus=1)(_StageActor)
    factory_ref = ray.put(factory)
    threads = runtime.worker_threads

    def new_actor():
        return actor_cls.remote(factory_ref, threads)

    actors = [new_actor() for _ in range(n_workers)]
    try:
        ray.get([a.pid.remote() for a in actors])
    except (RayActorError, WorkerCrashedError, RayTaskError) as exc:
        # a worker that cannot start: the scans below replace it and retry as for a crash
        log.warning("a Ray worker failed to start: %s", str(exc)[:300])
    return actors, new_actor, n_workers


def run_ray(items: Sequence[ScanInput], factory: Callable, on_result: OnResult, runtime: RuntimeConfig,
            prepare: Prepare = _as_task) -> dict:
    """Run the stage on Ray actors (one per worker), with backpressure and crash retries.

    The actors start (and load their models) in parallel; scans are dispatched once
    all are up.  Each actor has two scans queued (it starts the next while the driver
    takes in the last); ``ray.wait`` returns finished scans as they complete.  A scan whose worker process dies is retried
    on a fresh actor up to ``runtime.max_retries`` times, then recorded as failed.
    Returns ``{"workers": n, "ray_init_s": seconds to start or join Ray (0 if it was running),
    "startup_s": seconds until every actor was up}``.
    """
    t_init = time.perf_counter()
    ray = ray_session(runtime)
    ray_init_s = time.perf_counter() - t_init
    from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError  # lazy: Ray

    t0 = time.perf_counter()
    actors, new_actor, n_workers = _start_actors(ray, factory, runtime, len(items))
    stats = {"workers": n_workers, "ray_init_s": ray_init_s, "startup_s": time.perf_counter() - t0}
    log.info("%d Ray worker(s) up in %.1f s", n_workers, stats["startup_s"])
    cfg = getattr(factory, "cfg", None)
    d = _Dispatch(items, actors, new_actor, prepare, runtime.max_retries,
                  cfg.data.kind if cfg is not None else "scan")
    failed = 0
    with _progress(len(items), f"scans on {n_workers} Ray workers") as bar:
        # _TASKS_PER_WORKER scans queued per worker: it starts the next one while the driver
        # takes in the last result (no idle round trip between scans)
        for _ in range(_TASKS_PER_WORKER):
            for idx in range(n_workers):
                if d.queue:
                    d.submit(idx)
        while d.in_flight:
            done, _ = ray.wait(list(d.in_flight), num_returns=1)
            entry = d.in_flight.pop(done[0])
            try:
                result = ray.get(done[0])
            except (RayActorError, WorkerCrashedError, RayTaskError) as exc:
                result = d.crashed(entry, exc, died=isinstance(exc, (RayActorError, WorkerCrashedError)))
                if result is None:
                    continue
            failed += not result.ok
            on_result(result)
            bar.set_postfix(failed=failed)
            bar.update()
            if d.queue:
                d.submit(entry[0])
    for a in d.actors:
        ray.kill(a)
    return stats


def run_stage(items: Sequence[ScanInput], factory: Callable, runtime: RuntimeConfig, on_result: OnResult,
              prepare: Prepare = _as_task) -> dict:
    """Dispatch to the serial or the Ray runner according to ``runtime.mode``.

    Returns ``{"workers": n, "startup_s": s}`` (workers started and models loaded), empty
    when there is nothing to run.
    """
    if not items:
        return {}
    if runtime.mode == "ray":
        return run_ray(items, factory, on_result, runtime, prepare)
    return run_serial(items, factory, on_result, prepare)
