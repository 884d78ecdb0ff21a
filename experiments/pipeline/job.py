"""The main job: scans -> per-scan stage (serial or Ray) -> streamed tables -> ranking -> report.

The data of a run is passed in memory: each worker analyses its scan, writes the scan's pictures
into the run dir and checkpoints it (:class:`.commit.CommittingStage`), and returns the scan's
tables, the names of its files and small histograms.  The driver streams the rows into the final
Parquet files (in scan order, :mod:`.sink`) and keeps only the clusters (a few per scan) and the
merged histograms; it never writes a scan's files.  At the end it ranks the clusters over the archive, writes
``clusters.parquet`` and builds the report from what it holds.  Memory does not grow with the
number of impurities.  Outputs (the contract in README) are named by
:class:`experiments.layout.RunLayout`.

Exit codes: 0 every scan ok; 1 at least one scan failed (its row says why; the others are
complete); 2 a configuration or input error before any scan; 3 the run dir cannot be written
(disk full, read-only): finished scans are checkpointed, rerun with ``runtime.resume=true``.
"""

from __future__ import annotations

import heapq
import dataclasses
import json
import logging
import math
import os
import resource
import shutil
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from tqdm.contrib.logging import logging_redirect_tqdm

from anomaly.market import market_clustering
from anomaly.rank import rank_clusters
from anomaly.reasons import cluster_reasons, with_cluster_features
from anomaly.rerank import apply_reranker
from data import empty_regions
from data.errors import QuantmetError
from data.inputs import discover
from data.standards import assign_groups

from ..config import ConfigError, PipelineConfig, domain_config, pipeline_config, resolve_input
from ..layout import TABLES, RunLayout
from ..reporting import ReportConfig, ReportData, score_settings, write_report
from ..reporting.exports import EXPORT_TABLES, export_tables
from ..reporting.stats import RegionStats
from .checkpoint import OldRunDirError, PartStore, write_atomic
from .keys import changed_keys, input_identity, per_scan_settings, settings_hash
from .lock import RunDirBusyError, RunDirWriteError, RunLock, write_error
from .render import RenderOptions
from .result import ScanResult, ScanTask, scan_rows_frame
from .runners import StageFactory, local_cpus, ray_address, release_ray, run_stage
from .sink import OrderedSink, TableWriter
from .validate import validate_pipeline

__all__ = ["run_task", "run_pipeline", "EXIT_OK", "EXIT_SCAN_FAILED", "EXIT_USAGE", "EXIT_WRITE"]

log = logging.getLogger(__name__)

EXIT_OK, EXIT_SCAN_FAILED, EXIT_USAGE, EXIT_WRITE = 0, 1, 2, 3
MANIFEST_FORMAT = 2


def run_task(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``pipeline``."""
    run_config = OmegaConf.to_container(cfg, resolve=True)
    return run_pipeline(pipeline_config(cfg), output_dir, run_config=run_config)


def _default_run_config(pc: PipelineConfig) -> dict:
    return {f.name: dataclasses.asdict(getattr(pc, f.name)) for f in dataclasses.fields(pc)}


def _report_config(pc: PipelineConfig) -> ReportConfig:
    return domain_config(ReportConfig, pc.report, where="report")


def _render_options(pc: PipelineConfig, run_config: dict) -> RenderOptions:
    rc = _report_config(pc)
    return RenderOptions(
        heatmap=rc.heatmaps != "never",
        score=rc.score,
        cmap=rc.cmap,
        max_side=rc.max_side,
        crop_side=rc.crop_side,
        crop_margin=rc.crop_margin,
        crop_min_margin_px=rc.crop_min_margin_px,
        top_n=rc.top_n if rc.html else 0,
        size_min_area_px=rc.size_min_area_px,
        settings_text=score_settings(run_config, rc.score),
    )


@dataclass
class _TopClusters:
    """The ``n`` best cluster keys seen so far (a min-heap): the crop threshold of the next scans."""

    n: int
    heap: list = field(default_factory=list)

    def add(self, values: np.ndarray) -> None:
        if self.n <= 0:
            return
        for v in np.asarray(values, dtype=np.float64):
            if len(self.heap) < self.n:
                heapq.heappush(self.heap, float(v))
            elif v > self.heap[0]:
                heapq.heapreplace(self.heap, float(v))

    @property
    def threshold(self) -> float:
        return self.heap[0] if self.n and len(self.heap) >= self.n else -math.inf


class _Run:
    def __init__(self, pc: PipelineConfig, layout: RunLayout, run_config: dict, digests: dict[str, str]):
        self.pc = pc
        self.layout = layout
        self._ray_release = None  # the thread stopping a local Ray (runners.release_ray)
        self.run_config = run_config
        self.settings = per_scan_settings(run_config, models=digests)
        self.config_hash = settings_hash(self.settings)
        self.render = _render_options(pc, run_config)
        self.order_key = pc.anomaly.area.order_key
        self.store = PartStore(layout.parts_dir)
        self.top = _TopClusters(self.render.top_n)
        self.stats = RegionStats()
        self.crops: dict[tuple[str, int], dict] = {}
        self.crop_files: set[str] = set()
        self.inputs: dict[str, dict] = {}
        self.n_ok = self.n_failed = self.n_regions = 0
        self.failed: list[tuple[str, str]] = []
        self.backends: dict[str, set[str]] = {}  # model file -> inference backends that ran (scan rows)
        self.uncalibrated: list[str] = []
        self.driver_s = 0.0  # time the driver spends per result (bookkeeping, tables)
        self.groups: dict[str, str] = {}
        self.worker_stats: dict = {}

    # ------------------------------------------------------------------ bookkeeping
    def _manifest(self) -> dict | None:
        try:
            return json.loads(self.layout.manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _write_manifest(self) -> None:
        try:
            v = version("quantmet")
        except PackageNotFoundError:
            v = "unknown"
        m = {"format": MANIFEST_FORMAT, "quantmet_version": v, "config_hash": self.config_hash,
             "settings": self.settings, "updated": time.strftime("%Y-%m-%d %H:%M:%S")}
        write_atomic(self.layout.manifest, json.dumps(m, indent=1, default=str).encode())

    def _record_config(self) -> None:
        """Keep every configuration this run dir has seen (Hydra's .hydra/ holds only the last)."""
        hist = self.layout.config_history
        # A sequence number first, so the names sort in the order the runs happened (two runs in
        # the same second would otherwise sort by their config hashes).
        hist.mkdir(parents=True, exist_ok=True)
        seq = 1 + max((int(p.name.split("-", 1)[0]) for p in hist.iterdir()
                       if p.name.split("-", 1)[0].isdigit()), default=0)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        dest = hist / f"{seq:04d}-{stamp}-{self.config_hash[:8]}"
        dest.mkdir(parents=True)
        for name in ("config.yaml", "overrides.yaml"):
            src = self.layout.hydra_dir / name
            if src.is_file():
                shutil.copy2(src, dest / name)
        (dest / "config.json").write_text(json.dumps(self.run_config, indent=1, default=str), encoding="utf-8")

    def _clean(self) -> None:
        """A run without resume starts from an empty run dir (but the expert's verdicts)."""
        L = self.layout
        for name in TABLES:
            L.table(name).unlink(missing_ok=True)
        for d in (*[L.root / x for x in L.PER_SCAN_DIRS], L.report_dir, L.parts_dir):
            if d.exists():
                shutil.rmtree(d)
        if L.feedback_db.exists():
            log.warning("%s holds expert verdicts of an earlier run of this dir; they are kept "
                        "(they refer to that run's clusters)", L.review_dir)

    def _drop_partial_files(self) -> None:
        """Files a killed run left half-written (never under their final names) are removed."""
        n = 0
        for d in (*[self.layout.root / x for x in self.layout.PER_SCAN_DIRS], self.layout.parts_dir, self.layout.root):
            if not d.is_dir():
                continue
            paths = d.glob(".tmp-*") if d == self.layout.root else d.rglob(".tmp-*")
            for p in paths:
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
                n += 1
            if d == self.layout.root:
                for p in d.glob("*.parquet.partial"):
                    p.unlink(missing_ok=True)
                    n += 1
        if n:
            log.info("removed %d half-written file(s) of the interrupted run", n)

    # ------------------------------------------------------------------ per result
    def _accept(self, r: ScanResult, *, fresh: bool) -> None:
        """Account for one scan (fresh from a worker, or reused from its checkpoint)."""
        if r.ok:
            self.n_ok += 1
            for part in str(r.row.get("segmentation_backend") or "").split("; "):
                model, _, backend = part.partition(": ")
                if backend:
                    self.backends.setdefault(model, set()).add(backend)
            self.n_regions += int(r.row.get("n_regions") or 0)
            if r.row.get("pixel_size_source") in ("none", "", None):
                self.uncalibrated.append(r.scan_id)
            self.stats.merge(RegionStats.from_dict(r.stats))
            if len(r.clusters):
                self.cluster_writer.append(r.clusters)
                self.top.add(r.clusters[self.order_key].to_numpy())
            for cid, info in r.crops.items():
                self.crops[(r.scan_id, int(cid))] = info
                self.crop_files.add(info["file"])
        else:
            self.n_failed += 1
            if len(self.failed) < 1000:
                self.failed.append((r.scan_id, str(r.row.get("error", ""))))

    def on_result(self, r: ScanResult) -> None:
        t0 = time.perf_counter()
        try:
            self._on_result(r)
        finally:
            self.driver_s += time.perf_counter() - t0

    def _on_result(self, r: ScanResult) -> None:
        if r.write_error is not None:  # the worker could not write the run dir
            raise write_error(r.write_error, self.layout.root) from None
        self._accept(r, fresh=True)
        try:
            self.sink.add(r)
        except OSError as exc:
            raise write_error(exc, self.layout.root) from None

    def prepare(self, item) -> ScanTask:
        return ScanTask(item, crop_min_score=self.top.threshold, group=self.groups.get(item.scan_id, ""),
                        run_root=str(self.layout.root),
                        input_id=self.inputs[item.scan_id], config_hash=self.config_hash)

    # ------------------------------------------------------------------ the run
    def _open_run_dir(self, old: dict | None) -> None:
        """Check a resumed run dir, clean a fresh one, record this run's configuration."""
        pc, L = self.pc, self.layout
        if pc.runtime.resume:
            try:
                self.store.check_format()
            except OldRunDirError as exc:
                raise _UsageError(str(exc)) from None
            if L.parts_dir.exists() and old is None:
                raise _UsageError(f"{L.root} has checkpoints but no manifest (an older quantmet): "
                                  "rerun without runtime.resume or into a new run dir")
        try:
            L.root.mkdir(parents=True, exist_ok=True)
            if not pc.runtime.resume:
                self._clean()
            else:
                self._drop_partial_files()
            self._record_config()
            self._write_manifest()
        except OSError as exc:
            raise write_error(exc, L.root) from None

    def _plan(self, items: list, old: dict | None) -> tuple[list, list]:
        """The scans whose checkpoint is reused (resume) and those to compute."""
        pc, L = self.pc, self.layout
        self.inputs = {it.scan_id: input_identity(it.path) for it in items}
        reuse = [it for it in items
                 if pc.runtime.resume and self.store.reusable(it.scan_id, self.inputs[it.scan_id], self.config_hash, L.root)]
        reused = {it.scan_id for it in reuse}
        todo = [it for it in items if it.scan_id not in reused]
        if pc.runtime.resume:
            changed = changed_keys(old.get("settings", {}), self.settings) if old else []
            if changed:
                shown = ", ".join(changed[:8]) + (" ..." if len(changed) > 8 else "")
                log.warning("resume with changed settings (%s): scans made with the old settings are recomputed", shown)
            log.info("resuming: %d of %d scans reused, %d to compute (failed, changed or new)",
                     len(reuse), len(items), len(todo))
        return reuse, todo

    def _open_tables(self, items: list) -> None:
        """The streaming writers of the final tables, in scan order, and the sample groups."""
        pc, L = self.pc, self.layout
        # scan rows are wide (~100 columns): row groups of 2,048 scans keep the pending rows small
        writers = {"scans": TableWriter(L.scans, row_group_rows=2048, frame_of_rows=scan_rows_frame),
                   "regions": TableWriter(L.regions)}
        if pc.ratings.enabled:
            writers["ratings"] = TableWriter(L.ratings)
        if pc.phases.enabled:
            writers["phases"] = TableWriter(L.phases)
            if pc.phases.coating is not None:
                writers["coating"] = TableWriter(L.coating)
        groups = assign_groups([it.scan_id for it in items], [str(it.path) for it in items], pc.data.groups) \
            if pc.data.groups else [""] * len(items)
        self.groups = dict(zip((it.scan_id for it in items), groups))
        self.sink = OrderedSink([it.scan_id for it in items], writers, self.store.load)
        # the clusters wait on disk until the archive is ranked (the driver holds no per-scan frames)
        self.cluster_writer = TableWriter(L.state_dir / "clusters-unranked.parquet", row_group_rows=16384)

    def _run_scans(self, reuse: list, todo: list) -> None:
        """Take in the reused scans, run the stage on the others, close the streamed tables."""
        pc = self.pc
        try:
            for it in reuse:  # read back in order by the sink; only their small parts now
                r = self.store.load(it.scan_id)
                self._accept(r, fresh=False)
                self.sink.add(ScanResult(r.scan_id, r.row), in_memory=False)
            log.info("processing %d scan(s) from %s (%s runner)", len(todo), pc.data.input, pc.runtime.mode)
            if pc.runtime.mode == "ray" and pc.runtime.num_workers and not ray_address(pc.runtime):
                if pc.runtime.num_workers > local_cpus():
                    log.warning("runtime.num_workers=%d is more than this machine's %d CPUs: using %d",
                                pc.runtime.num_workers, local_cpus(), local_cpus())
            t_stage = time.perf_counter()
            with logging_redirect_tqdm():
                self.worker_stats = run_stage(todo, StageFactory(pc, self.render), pc.runtime, self.on_result,
                                              self.prepare) or {}
            self.worker_stats["stage_s"] = time.perf_counter() - t_stage
            # a local Ray stops while the clusters are ranked and the report is built
            self._ray_release = release_ray()
            t_close = time.perf_counter()
            self.sink.close()
            self.driver_s += time.perf_counter() - t_close
        except BaseException:
            self.sink.abort()
            self.cluster_writer.abort()
            raise

    def execute(self) -> int:
        pc, L = self.pc, self.layout
        t0 = time.perf_counter()
        listing = discover(resolve_input(pc.data.input))
        items = listing.items
        for s in listing.skipped:
            log.warning("skipped %s: %s", s.path, s.reason)
        old = self._manifest()
        self._open_run_dir(old)
        reuse, todo = self._plan(items, old)
        self._open_tables(items)
        self._run_scans(reuse, todo)
        t_finish = time.perf_counter()
        try:
            clusters = self._finish_clusters()
        except OSError as exc:
            raise write_error(exc, L.root) from None
        t_report = time.perf_counter()
        self._exports()
        self._report(clusters)
        t_end = time.perf_counter()
        if self._ray_release is not None:
            self._ray_release.join()
        self.worker_stats["ray_stop_wait_s"] = time.perf_counter() - t_end
        self._write_stats({"scans": len(items), "computed": len(todo), "reused": len(reuse),
                           "clusters": len(clusters), "regions": self.n_regions, "wall_s": t_end - t0,
                           "driver_per_result_s": self.driver_s, "rank_s": t_report - t_finish,
                           "report_s": t_end - t_report, **{f"workers_{k}": v for k, v in self.worker_stats.items()}})
        return self._summary(t0, len(items), len(listing.skipped), len(clusters))

    def _write_stats(self, stats: dict) -> None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        stats["driver_peak_rss_mb"] = peak / 2**20 if sys.platform == "darwin" else peak / 2**10
        if self.backends:  # from the scans' rows: the workers' processes, serial or on Ray
            stats["segmentation_backends"] = {m: ",".join(sorted(b)) for m, b in sorted(self.backends.items())}
        try:
            write_atomic(self.layout.run_stats, json.dumps(stats, indent=1, default=float).encode())
        except OSError as exc:  # statistics only: never fatal
            log.warning("cannot write %s: %s", self.layout.run_stats, exc)

    def _finish_clusters(self) -> pd.DataFrame:
        unranked = self.cluster_writer.close()
        clusters = pd.read_parquet(unranked)
        unranked.unlink(missing_ok=True)
        if not len(clusters):  # no clusters at all: an empty table with the right columns and dtypes
            clusters = with_cluster_features(empty_regions().assign(cluster_id=pd.Series(dtype=np.int64)),
                                             market_clustering(empty_regions(), np.zeros(0))[1], pixel_size_um=None)
            clusters.insert(0, "scan_rank", pd.Series(dtype=np.int64))
            clusters.insert(0, "scan_id", pd.Series(dtype=str))
        clusters = rank_clusters(clusters, key=self.order_key)
        clusters = clusters.sort_values(["rank"], kind="stable").reset_index(drop=True)
        clusters["reason"] = cluster_reasons(clusters).astype(str).to_numpy() if len(clusters) else pd.Series(dtype=str)
        model = self.pc.anomaly.rerank.model
        if model:
            clusters = apply_reranker(clusters, model)
        tmp = self.layout.clusters.with_name(self.layout.clusters.name + ".partial")
        clusters.to_parquet(tmp, index=False)
        os.replace(tmp, self.layout.clusters)
        # gallery crops: keep those of the final top clusters only
        top = clusters.head(self.render.top_n)
        keep = {self.crops[k]["file"] for k in zip(top["scan_id"], top["cluster_id"].astype(int)) if k in self.crops}
        for rel in self.crop_files - keep:
            self.layout.path(rel).unlink(missing_ok=True)
        return clusters

    def _exports(self) -> None:
        formats = list(_report_config(self.pc).exports)
        if not formats:
            return
        # the tables this run wrote (a run without ratings or phases writes no such table: no note)
        tables = [n for n, f in EXPORT_TABLES.items() if (self.layout.root / f).is_file()]
        try:
            for p in export_tables(self.layout.root, formats, tables=tables):
                log.info("export: %s", p)
        except Exception as exc:  # the tables are written; an export problem is reported, not fatal
            log.error("exports failed: %s: %s", type(exc).__name__, exc)

    def _report(self, clusters: pd.DataFrame) -> None:
        rc = _report_config(self.pc)
        if not rc.html:
            return
        data = ReportData(clusters=clusters, stats=self.stats, crops=self.crops)
        try:
            write_report(self.layout.root, data=data, **rc.as_kwargs())
        except Exception as exc:  # the tables are written: a report problem is reported, not fatal
            log.error("report failed: %s: %s (rebuild it with python -m experiments.report run_dir=%s)",
                      type(exc).__name__, exc, self.layout.root)

    def _summary(self, t0: float, n_items: int, n_skipped: int, n_clusters: int) -> int:
        log.info("done in %.1f s: %d scan(s) ok, %d failed, %d skipped, %d impurities, %d clusters",
                 time.perf_counter() - t0, self.n_ok, self.n_failed, n_skipped, self.n_regions, n_clusters)
        if self.uncalibrated:
            shown = ", ".join(self.uncalibrated[:10]) + (f" and {len(self.uncalibrated) - 10} more" if len(self.uncalibrated) > 10 else "")
            log.warning("%d of %d scan(s) have no pixel size (no µm columns, densities per mm² or grain "
                        "size G for them): %s; set data.pixel_size_um or data.calibration_csv",
                        len(self.uncalibrated), self.n_ok, shown)
        for sid, err in self.failed:
            log.error("failed: %s: %s", sid, err)
        log.info("outputs: %s", self.layout.root.resolve())
        if self.layout.report_index.exists():
            log.info("report: %s", self.layout.report_index.resolve())
        return EXIT_OK if self.n_failed == 0 else EXIT_SCAN_FAILED


class _UsageError(Exception):
    pass


def run_pipeline(pc: PipelineConfig, output_dir: Path, *, run_config: dict | None = None) -> int:
    """Run the whole job into ``output_dir``; returns the exit code (module docstring)."""
    layout = RunLayout(Path(output_dir))
    run_config = run_config if run_config is not None else _default_run_config(pc)
    try:
        digests = validate_pipeline(pc, run_config if "task" in run_config else None)
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    try:
        with RunLock(layout.lock):
            return _Run(pc, layout, run_config, digests).execute()
    except RunDirBusyError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    except RunDirWriteError as exc:
        log.error("%s", exc)
        return EXIT_WRITE
    except _UsageError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    except QuantmetError as exc:  # input not found, bad files before any scan
        log.error("%s", exc)
        return EXIT_USAGE
