"""Typed run configuration: the Hydra DictConfig converted once, at the edge, to frozen dataclasses."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from data.errors import QuantmetError

__all__ = [
    "ConfigError",
    "DataConfig",
    "SegmentationConfig",
    "AnomalyConfig",
    "RuntimeConfig",
    "PipelineConfig",
    "dataclass_from",
    "pipeline_config",
    "resolve_input",
    "SAMPLES_DIR",
    "REPO_ROOT",
    "resolve_repo_path",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES_DIR = REPO_ROOT / "data" / "samples"


class ConfigError(QuantmetError, ValueError):
    """A configuration value is invalid."""


def dataclass_from(cls: type, values: Any, *, where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, with a clear error for unknown keys."""
    if isinstance(values, DictConfig):
        values = OmegaConf.to_container(values, resolve=True)
    values = dict(values or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where or cls.__name__}; known: {sorted(names)}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {where or cls.__name__}: {exc}") from exc


@dataclass(frozen=True)
class DataConfig:
    input: str | None = "samples:scans"
    kind: str = "scan"
    mask_polarity: str = "auto"
    pixel_size_um: float | None = None
    min_area_px: int = 4
    min_area_um2: float | None = None
    connectivity: int = 2
    # sample groups (scans.parquet `group`, +exp=compare): "folder" = first folder level of the
    # scan id, or a CSV file with columns path,group; null = no groups
    groups: str | None = "folder"
    # per-file pixel sizes: a CSV with columns path,pixel_size_um (wins over file metadata)
    calibration_csv: str | None = None
    # burned-in annotations (data bars, scale bars) found on raw scans, excluded from segmentation and
    # scoring, and their scale bar read for the pixel size: {enabled: bool, ...AnnotationConfig options}
    annotations: dict = field(default_factory=lambda: {"enabled": True})
    # region of interest [rmin, cmin, rmax, cmax] (inclusive px) to keep; null = the whole scan
    roi: list | None = None
    # user exclusion masks (non-zero = exclude): one mask file for every scan, or a folder of
    # <scan_id>.png / .tif masks; null = none
    exclusion_mask: str | None = None
    # limits checked from the file header before any pixel is decoded (a file over them fails alone)
    max_pixels: int = 500_000_000
    max_file_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("scan", "mask"):
            raise ValueError(f"data.kind must be 'scan' or 'mask', got {self.kind!r}")
        if self.mask_polarity not in ("auto", "white", "black"):
            raise ValueError(f"data.mask_polarity must be auto, white or black, got {self.mask_polarity!r}")
        if self.min_area_px < 1:
            raise ValueError(f"data.min_area_px must be >= 1, got {self.min_area_px}")


@dataclass(frozen=True)
class SegmentationConfig:
    method: str = "classical"
    classical: dict = field(default_factory=dict)
    unet: dict = field(default_factory=dict)
    grains: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AnomalyConfig:
    scorers: dict = field(default_factory=dict)
    combine: dict = field(default_factory=dict)
    area: dict = field(default_factory=dict)
    # re-ranking from expert verdicts: {model: PATH} adds learned_score / learned_rank to clusters
    rerank: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RuntimeConfig:
    mode: str = "serial"
    num_workers: int | None = 1
    address: str | None = None
    resume: bool = False
    max_retries: int = 1
    spatial_on_ray: bool = False
    # Threads of TensorFlow and OpenCV inside each Ray worker (one worker per CPU);
    # None = the libraries' defaults (all cores per worker: oversubscribed with several workers).
    worker_threads: int | None = 1

    def __post_init__(self) -> None:
        if self.mode not in ("serial", "ray"):
            raise ValueError(f"runtime.mode must be 'serial' or 'ray', got {self.mode!r}")
        t = self.worker_threads
        if t is not None and (isinstance(t, bool) or not isinstance(t, int) or t < 1):
            raise ValueError(f"runtime.worker_threads must be null or an integer >= 1, got {t!r}")


@dataclass(frozen=True)
class PipelineConfig:
    data: DataConfig
    segmentation: SegmentationConfig
    anomaly: AnomalyConfig
    runtime: RuntimeConfig
    inpainting: dict = field(default_factory=dict)
    report: dict = field(default_factory=dict)
    ratings: dict = field(default_factory=dict)


def pipeline_config(cfg: DictConfig) -> PipelineConfig:
    """Convert the composed Hydra config to a :class:`PipelineConfig`."""
    try:
        c = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"incomplete configuration: {exc}".splitlines()[0]) from exc
    return PipelineConfig(
        data=dataclass_from(DataConfig, c.get("data"), where="data"),
        segmentation=dataclass_from(SegmentationConfig, c.get("segmentation"), where="segmentation"),
        anomaly=dataclass_from(AnomalyConfig, c.get("anomaly"), where="anomaly"),
        runtime=dataclass_from(RuntimeConfig, c.get("runtime"), where="runtime"),
        inpainting=dict(c.get("inpainting") or {}),
        report=dict(c.get("report") or {}),
        ratings=dict(c.get("ratings") or {}),
    )


def resolve_repo_path(path: str | Path) -> Path:
    """A path from the config: absolute as is, relative ones against the repository root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (REPO_ROOT / p).resolve()


def resolve_input(spec: str) -> str:
    """Expand the ``samples:`` prefix to the bundled samples folder."""
    spec = str(spec)
    if spec.startswith("samples:"):
        return str(SAMPLES_DIR / spec.removeprefix("samples:"))
    return spec
