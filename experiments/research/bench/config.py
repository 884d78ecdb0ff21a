"""Typed options of the bench tasks (the ``bench:`` section of their presets).

Light on purpose: ``experiments.schemas`` registers these dataclasses as Hydra structured configs, so every
key has its default here and a preset in ``conf/exp`` lists only its deltas.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AnomalyBenchConfig:
    """Options of ``bench_anomaly`` (section ``bench:`` of ``conf/exp/bench_anomaly.yaml``)."""

    repeats: int = 5
    masks: str = "large_masks"
    naive: bool = True
    naive_max_regions: int | None = None  # None: the whole mask
    synthetic: bool = True
    synthetic_shape: tuple = (6000, 6000)
    synthetic_cell: int = 18
    synthetic_seed: int = 0
    ray: bool = True
    ray_sizes: tuple = (10_000, 30_000, 100_000)
    ray_num_cpus: int | None = None  # None: all cores
    naive_scaling_sizes: tuple = (500, 1000, 2000)
    target_speedup: float = 200.0
    target_spatial_100k_s: float = 10.0
    target_spatial_100k_mb: float = 2048.0

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError(f"bench.repeats must be >= 1, got {self.repeats}")


@dataclass(frozen=True)
class ArchiveBenchConfig:
    """Options of ``bench_archive`` (see experiments/research/bench/archive.py)."""

    real_masks: str = ""  # folder of real masks; the preset sets ${paths.mlography}/impurity_scan_masks
    n_real: int = 48
    workers: tuple = (1, 2)
    repeats: int = 3  # rounds over `workers` (interleaved); the table gives the median wall clock
    small_counts: tuple = (500, 1000, 2000, 4000)
    small_workers: int = 2
    project_scans: int = 100_000
    extra_overrides: tuple = ()  # more Hydra overrides for every run (e.g. report.html=false)
    keep_runs: bool = False
    # raw scans through both U-Nets (impurities, inpainting, grain boundaries): the dev data's scans
    # (the preset sets ${paths.mlography}/scans/images; the bundled data/samples/scans when absent),
    # repeated to n_raw; 0 = skip
    raw_scans: str = ""
    n_raw: int = 48
    raw_workers: tuple = (1, 2)
    raw_repeats: int = 1
    raw_overrides: tuple = ("segmentation.grains.enabled=true",)

    def __post_init__(self) -> None:
        if self.n_raw < 0 or self.raw_repeats < 1:
            raise ValueError(f"bench.n_raw must be >= 0 and bench.raw_repeats >= 1, got {self.n_raw}, {self.raw_repeats}")


@dataclass(frozen=True)
class AreaBenchConfig:
    """Options of ``bench_area`` (section ``bench:`` of ``conf/exp/bench_area.yaml``)."""

    n_scored: int = 5000
    seed: int = 0
    naive_n: int = 1000
    repeats: int = 3
    n_clusters: int = 10
    price_from: tuple[str, ...] = ("members", "cores")  # anomaly.market.PRICE_FROM
    sizes: tuple[int, ...] = (500, 1000, 2000, 5000, 10000)
    masks: str = "large_masks"  # folder under data/samples, or a path; "" to skip
    target_s: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "price_from", tuple(self.price_from))
        object.__setattr__(self, "sizes", tuple(int(n) for n in self.sizes))
        if self.n_scored < 1 or self.naive_n < 1 or self.repeats < 1:
            raise ValueError("bench.n_scored, bench.naive_n and bench.repeats must be >= 1")
        from anomaly.market import PRICE_FROM

        bad = [p for p in self.price_from if p not in PRICE_FROM]
        if bad:
            raise ValueError(f"bench.price_from entries must be in {PRICE_FROM}, got {bad}")


@dataclass(frozen=True)
class RegionsBenchConfig:
    """Options of ``bench_regions`` (section ``bench:`` of ``conf/exp/bench_regions.yaml``)."""

    repeats: int = 7
    masks: str = "large_masks"  # folder under data/samples, or a path
    target_s: float = 0.3

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError(f"bench.repeats must be >= 1, got {self.repeats}")


@dataclass(frozen=True)
class SegmentationBenchConfig:
    """Options of the ``bench:`` section of ``conf/exp/bench_segmentation.yaml``."""

    scan: str = "scans/10.jpg"  # under data/samples, or a path
    repeats: int = 3
    tile: int | str = "auto"  # the predict functions' default (segmentation.tiling.plan_tile), or a side in px
    # tile of the first path's whole-predict timing: today's default as the speed issue filed it
    # (Keras fp32 on 256-px tiles), the baseline of speedup_vs_today; null = bench.tile
    today_tile: int | None = 256
    overlap: int = 32
    batch_size: int = 8
    prior_tile: int = 128
    prior_stride: int = 16
    sample_tiles: int = 200
    threads: int | None = None  # intra-op threads of every path; None = each library's default (all cores)
    target_s: float = 10.0
    gemm_n: int = 2048  # side of the sgemm peak's matrices
    # inference paths (backend-precision; segmentation.backends), today's default first; an OpenVINO
    # path may end in -sN: N inference streams sharing each batch (no suffix = one request on all threads)
    paths: tuple = ("keras-fp32", "onnxruntime-fp32", "openvino-fp32", "openvino-bf16", "openvino-bf16-s2",
                    "openvino-int8")
    # (tile, overlap) pairs timed with the fastest path, seam error against one whole-scan tile; () = skip
    tilings: tuple = ((256, 32), (256, 64), (512, 32), (512, 64))
    seam_border: int = 128  # px along the scan's edges left out of the inner_* seam errors

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.sample_tiles < 1:
            raise ValueError("repeats and sample_tiles must be >= 1")
        if self.seam_border < 0:
            raise ValueError(f"bench.seam_border must be >= 0, got {self.seam_border}")
        if self.gemm_n < 16:
            raise ValueError(f"bench.gemm_n must be >= 16, got {self.gemm_n}")
        object.__setattr__(self, "paths", tuple(str(p) for p in self.paths))
        from segmentation.backends import BACKENDS, PRECISIONS

        for p in self.paths:
            b, prec, streams = split_path(p)
            if (b not in BACKENDS[1:] or prec not in PRECISIONS[1:] or (prec in ("bf16", "int8") and b != "openvino")
                    or (streams is not None and (b != "openvino" or streams < 1))):
                raise ValueError(f"bench.paths entry {p!r} is not backend-precision[-sN], e.g. 'openvino-bf16'")
        object.__setattr__(self, "tilings", tuple((int(t), int(o)) for t, o in self.tilings))
        for t, o in self.tilings:
            if t % 16 or not 0 <= o < t:
                raise ValueError(f"bench.tilings entry ({t}, {o}): tile a multiple of 16, 0 <= overlap < tile")


def split_path(path: str) -> tuple[str, str, int | None]:
    """``'openvino-bf16-s2'`` -> ``('openvino', 'bf16', 2)``; no ``-sN``: streams None (the default)."""
    parts = str(path).split("-")
    streams = None
    if len(parts) == 3 and parts[2][:1] == "s" and parts[2][1:].isdigit():
        streams = int(parts[2][1:])
        parts = parts[:2]
    if len(parts) != 2:
        return str(path), "", None
    return parts[0], parts[1], streams


@dataclass(frozen=True)
class BenchReviewConfig:
    """Options of ``bench_review`` (section ``bench:`` of ``conf/exp/bench_review.yaml``)."""

    shape: tuple = (5000, 5000)
    seed: int = 0
    viewport: tuple = (640, 740)  # the viewer area of the page in a 1280 x 800 browser window
    n_tiles: int = 300
    zoom_levels: int = 3  # finest levels sampled for pan / zoom tiles
    chromium: str = "/usr/bin/chromium"  # "" = over HTTP only
    target_first_view_s: float = 2.0
    target_tile_ms: float = 100.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "viewport", tuple(int(s) for s in self.viewport))
        if len(self.shape) != 2 or min(self.shape) < 64 or self.n_tiles < 1 or self.zoom_levels < 1:
            raise ValueError("bench.shape must be (rows, cols) >= 64; n_tiles and zoom_levels >= 1")


@dataclass(frozen=True)
class ProcessBenchConfig:
    """Options of ``bench_process`` (see experiments/research/bench/process.py)."""

    masks: tuple = ("large_masks/scan4tag-19.png", "large_masks/scan1tag-52.png")  # under data/samples, or paths
    repeats: int = 3
    prior_art: bool = True
    target_speedup: float = 50.0  # masks with fewer than large_components impurities (issue 25)
    target_speedup_large: float = 200.0  # masks with at least large_components impurities
    large_components: int = 10_000
    extra_overrides: tuple = ()
    # True: compiled modules are cached (__pycache__), as an installed package runs; False: the
    # environment decides (PYTHONDONTWRITEBYTECODE=1 makes every run compile quantmet's modules again)
    bytecode_cache: bool = True
    breakdown: bool = True  # one -X importtime run per bench: the top modules by cumulative import time
    import_top: int = 15
    cli_checks: bool = True  # --help and two config errors, timed (they must answer in under cli_target_s)
    cli_target_s: float = 1.5
    skip_missing: bool = True  # a mask that is not there (the MLography data set) is a skipped row

    def __post_init__(self) -> None:
        if int(self.repeats) < 1 or int(self.import_top) < 1 or int(self.large_components) < 1:
            raise ValueError("bench.repeats, bench.import_top and bench.large_components must be >= 1")
        if not float(self.cli_target_s) > 0:
            raise ValueError(f"bench.cli_target_s must be > 0, got {self.cli_target_s}")


@dataclass(frozen=True)
class PhasesBenchConfig:
    """Options of ``bench_phases`` (section ``bench:`` of ``conf/exp/bench_phases.yaml``)."""

    size: int = 4000  # the generated coating scan is size x size px
    seed: int = 7
    repeats: int = 3  # median of this many timed runs (after one warm-up when warmup)
    warmup: bool = True
    pixel_size_um: float = 0.5
    # segmentation.phases.PhasesConfig overrides (names: pore, oxide, coating, substrate)
    # the settings of +exp=phases (chosen by +exp=eval_phases on its tuning seeds)
    phases: dict = field(default_factory=lambda: {"clahe_clip": None, "flatten": 2, "rim_px": 1,
                                                  "deblur_max_area_px": 300, "deblur_raw": True, "deblur_excess": 1.3})
    target_s: float = 5.0

    def __post_init__(self) -> None:
        if self.size < 64 or self.repeats < 1:
            raise ValueError("bench.size must be >= 64 and bench.repeats >= 1")
