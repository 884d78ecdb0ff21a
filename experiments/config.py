"""Typed run configuration: every section of a pipeline run a dataclass, built once at the edge.

The options of each section are declared once, where they are used: a section of the pipeline
config is derived (:func:`section`) from the domain's own config dataclass (``anomaly.area`` from
:class:`anomaly.market.MarketConfig`, ``ratings`` from :class:`data.standards.RatingConfig`, ...)
or from the keyword-only options of the function it feeds (``segmentation.unet`` from
:func:`segmentation.models.predict_impurity_mask`), plus the few keys the pipeline adds
(``enabled``, the ``_um`` twins of pixel lengths).  The sections are registered with Hydra's
ConfigStore (:func:`register_pipeline_schemas`), so a wrong type or key fails at composition with
Hydra's message; :func:`pipeline_config` turns the composed config into a :class:`PipelineConfig`.
Library code receives the domain dataclasses (:func:`domain_config`), never a ``DictConfig``.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from anomaly.combine import CombineConfig
from anomaly.market import MarketConfig
from anomaly.scorers.circle import CircleConfig
from anomaly.scorers.shape import ShapeAEConfig
from anomaly.scorers.spatial import SpatialConfig
from data.annotations import AnnotationConfig
from data.configs import dataclass_from as _dataclass_from
from data.errors import QuantmetError
from data.standards import RatingConfig
from data.standards.phases import PhaseMeasureConfig
from inpainting import InpaintConfig
from segmentation import ClassicalConfig
from segmentation.grains import grain_measures  # no Keras in grains
from segmentation.models import predict_impurity_mask  # Keras only when a model loads
from segmentation.phases import PhasesConfig  # NumPy only

from .reporting.config import ReportConfig

__all__ = [
    "ConfigError",
    "DataConfig",
    "SegmentationConfig",
    "AnomalyConfig",
    "PhasesSection",
    "RuntimeConfig",
    "PipelineConfig",
    "dataclass_from",
    "domain_config",
    "pipeline_config",
    "register_pipeline_schemas",
    "scorer_options",
    "section",
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
    """Build dataclass ``cls`` from a mapping or DictConfig (:func:`data.configs.dataclass_from`).

    Raises :class:`ConfigError` on an unknown key or a bad value.
    """
    if isinstance(values, DictConfig):
        values = OmegaConf.to_container(values, resolve=True)
    return _dataclass_from(cls, values, where=where, error=ConfigError)


# ---------------------------------------------------------------------------- derived sections
_PRIMITIVE = (int, float, bool, str)


def _schema_type(tp: Any) -> Any:
    """The annotation Hydra's structured configs accept for ``tp`` (``Any`` where none fits)."""
    if tp in _PRIMITIVE:
        return tp
    if tp is Path:
        return str
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if str in rest and Path in rest and len(rest) == 2:
            rest = [str]
        inner = _schema_type(rest[0]) if len(rest) == 1 else Any
        return Optional[inner] if type(None) in args and inner is not Any else inner
    if origin in (tuple, list, Sequence) and args and args[0] in _PRIMITIVE and (len(args) == 1 or args[1] is ...):
        return typing.List[args[0]]
    if origin is dict or tp is dict:
        return typing.Dict[str, Any]
    return Any


def _schema_field(name: str, tp: Any, default: Any) -> tuple:
    if default is dataclasses.MISSING:
        raise TypeError(f"option {name!r} has no default: a config section needs one for every option")
    if isinstance(default, (list, tuple, dict)):
        value = dict(default) if isinstance(default, dict) else list(default)
        return name, _schema_type(tp), field(default_factory=lambda v=value: type(v)(v))
    return name, _schema_type(tp), field(default=default)


def _options_of(source: type | Callable, exclude: Sequence[str]) -> list[tuple]:
    hints = typing.get_type_hints(source)
    if dataclasses.is_dataclass(source):
        items = [(f.name, hints[f.name],
                  f.default if f.default_factory is dataclasses.MISSING else f.default_factory())
                 for f in dataclasses.fields(source)]
    else:
        params = inspect.signature(source).parameters.values()
        items = [(p.name, hints[p.name], p.default) for p in params if p.kind == p.KEYWORD_ONLY]
    return [_schema_field(*it) for it in items if it[0] not in exclude]


def section(name: str, source: type | Callable, *, extra: Sequence[tuple] = (), exclude: Sequence[str] = (),
            physical_twins: bool = False, doc: str = "") -> type:
    """A frozen config dataclass with the options of ``source`` (a dataclass or a function).

    Parameters
    ----------
    name : str
        Class name of the section.
    source : dataclass type or callable
        Its fields, or the callable's keyword-only parameters, with their defaults.
    extra : sequence of (name, type, default)
        Keys the pipeline adds (e.g. ``("enabled", bool, True)``).
    exclude : sequence of str
        Options the pipeline sets itself (not configurable).
    physical_twins : bool
        Add a ``<x>_um`` (lengths) or ``<x>_um2`` (areas) twin, default None, to each ``<x>_px``
        option (:mod:`experiments.pipeline.options` resolves them per scan).
    """
    fields = _options_of(source, exclude)
    n_source = len(fields)
    fields += [_schema_field(n, t, d) for n, t, d in extra]
    if physical_twins:
        names = {f[0] for f in fields}
        for opt in [f[0] for f in fields if f[0].endswith("_px")]:
            stem = opt[: -len("_px")]
            twin = f"{stem}_um2" if "area" in stem else f"{stem}_um"
            if twin not in names:
                fields.append((twin, Optional[float], field(default=None)))
    added = tuple(f[0] for f in fields[n_source:])
    namespace = {"__post_init__": _validator(source, added)} if dataclasses.is_dataclass(source) else {}
    cls = dataclasses.make_dataclass(name, fields, frozen=True, namespace=namespace)
    cls.__module__ = __name__
    cls.__doc__ = doc or f"Options of {getattr(source, '__qualname__', source)} (a pipeline config section)."
    return cls


def _validator(source: type, added: tuple[str, ...]) -> Callable:
    """``__post_init__`` of a section: its values must make a valid ``source`` (ValueError if not)."""

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in added}
        defaults = {f.name: f.default for f in dataclasses.fields(source)}
        for key, value in self.__dict__.items():
            if key.endswith(("_um", "_um2")) and key in added and value is not None and not float(value) > 0:
                raise ValueError(f"{key} must be > 0 or null, got {value!r}")
        source(**{k: _as_domain_value(v, defaults.get(k)) for k, v in values.items()})

    return __post_init__


def _as_domain_value(value: Any, default: Any) -> Any:
    """A list (from YAML) back to the tuple the domain dataclass defaults to (two levels deep)."""
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value


def domain_config(cls: type, section_value: Any, *, where: str, drop: Sequence[str] = ()) -> Any:
    """The domain dataclass ``cls`` built from a section (its keys less ``drop``; lists back to tuples)."""
    values = dataclasses.asdict(section_value) if dataclasses.is_dataclass(section_value) else dict(section_value or {})
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    values = {k: _as_domain_value(v, defaults.get(k)) for k, v in values.items() if k not in drop}
    return dataclass_from(cls, values, where=where)


AnnotationsSection = section("AnnotationsSection", AnnotationConfig, extra=[("enabled", bool, True)],
                             doc="``data.annotations``: AnnotationConfig options and ``enabled``.")
ClassicalSection = section("ClassicalSection", ClassicalConfig, doc="``segmentation.classical``.")
UNetSection = section("UNetSection", predict_impurity_mask, exclude=("exclude",),
                      extra=[("watershed_min_distance", int, 4)],
                      doc="``segmentation.unet``: options of predict_impurity_mask and the watershed split.")
GrainsSection = section("GrainsSection", grain_measures, exclude=("pixel_size_um",),
                        extra=[("enabled", bool, False)],
                        doc="``segmentation.grains``: options of grain_measures and ``enabled``.")
InpaintingSection = section("InpaintingSection", InpaintConfig, doc="``inpainting``: options of inpainting.inpaint.")
SpatialSection = section("SpatialSection", SpatialConfig, physical_twins=True)
CircleSection = section("CircleSection", CircleConfig, physical_twins=True)
ShapeSection = section("ShapeSection", ShapeAEConfig, physical_twins=True)
CombineSection = section("CombineSection", CombineConfig, doc="``anomaly.combine``.")
AreaSection = section("AreaSection", MarketConfig, physical_twins=True,
                      doc="``anomaly.area``: MarketConfig options and ``max_gap_um``.")
ReportSection = section("ReportSection", ReportConfig, doc="``report``: options of ReportConfig.")
RatingsSection = section("RatingsSection", RatingConfig, doc="``ratings``: options of RatingConfig.")


def _phase_extra() -> list[tuple]:
    """``phases``' keys beyond PhasesConfig: the measurement's options and the run's own three."""
    hints = typing.get_type_hints(PhaseMeasureConfig)
    measure = [(f.name, hints[f.name], f.default) for f in dataclasses.fields(PhaseMeasureConfig)]
    return [("enabled", bool, False), ("segmenter", str, "classical"), ("weights", Optional[str], None), *measure]


#: ``phases``: the options of segment_phases (PhasesConfig), of measure_phases (PhaseMeasureConfig),
#: ``enabled`` and the segmenter (``classical`` or a ``unet`` trained by +exp=train_unet_phases).
PhasesSection = section("PhasesSection", PhasesConfig, extra=_phase_extra(),
                        doc="``phases``: PhasesConfig and PhaseMeasureConfig options, ``enabled``, "
                            "``segmenter`` (classical | unet) and the U-Net's ``weights``.")

#: The keys of ``phases`` that are PhaseMeasureConfig's.
PHASE_MEASURE_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(PhaseMeasureConfig))


@dataclass(frozen=True)
class ScorersSection:
    """``anomaly.scorers``: each registered scorer's options, or None (switched off)."""

    spatial: Optional[SpatialSection] = field(default_factory=SpatialSection)
    circle: Optional[CircleSection] = field(default_factory=CircleSection)
    shape: Optional[ShapeSection] = None


@dataclass(frozen=True)
class RerankSection:
    """``anomaly.rerank``: a re-ranker JSON file adds learned_score / learned_rank to clusters."""

    model: Optional[str] = None


def scorer_options(scorers: ScorersSection) -> dict[str, dict]:
    """``{name: options}`` of the scorers switched on (their ``_um`` twins still to resolve)."""
    return {f.name: dataclasses.asdict(v) for f in dataclasses.fields(scorers)
            if (v := getattr(scorers, f.name)) is not None}


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


@dataclass(frozen=True)
class DataConfig:
    """``data``: where the scans are, what they are, their calibration and exclusions."""

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
    annotations: AnnotationsSection = field(default_factory=AnnotationsSection)
    # region of interest [rmin, cmin, rmax, cmax] (inclusive px) to keep; null = the whole scan
    roi: Optional[typing.List[int]] = None
    # user exclusion masks (non-zero = exclude): one mask file for every scan, or a folder of
    # <scan_id>.png / .tif masks; null = none
    exclusion_mask: str | None = None
    # limits checked from the file header before any pixel is decoded (a file over them fails alone)
    max_pixels: int = 500_000_000
    max_file_bytes: int | None = None

    def __post_init__(self) -> None:
        _check(self.kind in ("scan", "mask"), f"data.kind must be 'scan' or 'mask', got {self.kind!r}")
        _check(self.mask_polarity in ("auto", "white", "black"),
               f"data.mask_polarity must be auto, white or black, got {self.mask_polarity!r}")
        _check(self.min_area_px >= 1, f"data.min_area_px must be >= 1, got {self.min_area_px}")
        _check(_positive_int(self.max_pixels), f"data.max_pixels must be an integer >= 1, got {self.max_pixels!r}")
        _check(self.max_file_bytes is None or _positive_int(self.max_file_bytes),
               f"data.max_file_bytes must be an integer >= 1 or null, got {self.max_file_bytes!r}")
        _check(self.min_area_um2 is None or float(self.min_area_um2) > 0,
               f"data.min_area_um2 must be > 0 or null, got {self.min_area_um2!r}")
        self._check_pixel_size()
        self._check_roi()

    def _check_pixel_size(self) -> None:
        v = self.pixel_size_um
        if v is None:
            return
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"data.pixel_size_um must be a number of µm per pixel or null, got {v!r}") from None
        _check(math.isfinite(v) and v > 0,
               f"data.pixel_size_um must be a finite number > 0 (µm per pixel) or null, got {self.pixel_size_um!r}")
        _check(v <= 1000.0, f"data.pixel_size_um={self.pixel_size_um!r} µm per pixel is absurd (> 1 mm per pixel)")

    def _check_roi(self) -> None:
        r = self.roi
        if r is None:
            return
        try:
            [int(v) for v in r]
        except (TypeError, ValueError):
            raise ValueError(f"data.roi must be [rmin, cmin, rmax, cmax] (inclusive px) or null, got {r!r}") from None
        _check(len(r) == 4 and r[0] <= r[2] and r[1] <= r[3],
               f"data.roi must be [rmin, cmin, rmax, cmax] with rmin <= rmax, cmin <= cmax, got {r!r}")


@dataclass(frozen=True)
class SegmentationConfig:
    """``segmentation``: the impurity segmenter of raw scans and the grain measurement."""

    method: str = "classical"
    classical: ClassicalSection = field(default_factory=ClassicalSection)
    unet: UNetSection = field(default_factory=UNetSection)
    grains: GrainsSection = field(default_factory=GrainsSection)

    def __post_init__(self) -> None:
        _check(self.method in ("classical", "unet"),
               f"segmentation.method must be 'classical' or 'unet', got {self.method!r}")


@dataclass(frozen=True)
class AnomalyConfig:
    """``anomaly``: the scorers, their combination, market clustering, the re-ranker."""

    scorers: ScorersSection = field(default_factory=ScorersSection)
    combine: CombineSection = field(default_factory=CombineSection)
    area: AreaSection = field(default_factory=AreaSection)
    # re-ranking from expert verdicts: {model: PATH} adds learned_score / learned_rank to clusters
    rerank: RerankSection = field(default_factory=RerankSection)


@dataclass(frozen=True)
class RuntimeConfig:
    """``runtime``: serial or Ray, workers, resume, retries."""

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
        _check(self.mode in ("serial", "ray"), f"runtime.mode must be 'serial' or 'ray', got {self.mode!r}")
        t = self.worker_threads
        _check(t is None or _positive_int(t), f"runtime.worker_threads must be null or an integer >= 1, got {t!r}")
        nw = self.num_workers
        _check(nw is None or _positive_int(nw),
               f"runtime.num_workers must be null (all CPUs) or an integer >= 1, got {nw!r}")
        _check(isinstance(self.max_retries, int) and self.max_retries >= 0,
               f"runtime.max_retries must be an integer >= 0, got {self.max_retries!r}")


@dataclass(frozen=True)
class PipelineConfig:
    """A pipeline run's configuration, every section typed."""

    data: DataConfig = field(default_factory=DataConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    anomaly: AnomalyConfig = field(default_factory=AnomalyConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    inpainting: InpaintingSection = field(default_factory=InpaintingSection)
    report: ReportSection = field(default_factory=ReportSection)
    ratings: RatingsSection = field(default_factory=RatingsSection)
    phases: PhasesSection = field(default_factory=PhasesSection)


def pipeline_config(cfg: DictConfig | Mapping) -> PipelineConfig:
    """Convert the composed Hydra config (or a plain mapping of it) to a :class:`PipelineConfig`.

    Raises :class:`ConfigError` naming the section and key of an unknown key or a bad value.
    """
    try:
        c = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True) if isinstance(cfg, DictConfig) \
            else dict(cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"incomplete configuration: {exc}".splitlines()[0]) from exc
    hints = typing.get_type_hints(PipelineConfig)
    return PipelineConfig(**{name: dataclass_from(hints[name], c.get(name), where=name) for name in hints})


def register_pipeline_schemas() -> None:
    """Store each pipeline section's schema in Hydra's ConfigStore as ``schema/<section>`` (idempotent).

    ``conf/config.yaml`` puts ``schema@<section>: <section>`` before the section's own group, so the
    group's YAML and every override merge into the typed node: a wrong type or an unknown key fails
    at composition with Hydra's message (a key added with ``+`` fails in :func:`pipeline_config`).
    ``anomaly.scorers`` is typed by :func:`pipeline_config` only (see the comment below).
    """
    from hydra.core.config_store import ConfigStore  # lazy: Hydra only where configs are composed

    cs = ConfigStore.instance()
    for name, cls in typing.get_type_hints(PipelineConfig).items():
        if name == "anomaly":
            # The scorers' options are typed when the PipelineConfig is built, not at composition:
            # OmegaConf 2.3 cannot merge an override mapping into an Optional dataclass node that
            # is null (anomaly.scorers.shape='{min_area_px: 20}' on `shape: null`).
            hints = typing.get_type_hints(cls)
            node = OmegaConf.create({k: ({} if k == "scorers" else writable_node(t)) for k, t in hints.items()})
        else:
            node = writable_node(cls)
        cs.store(group="schema", name=name, node=node)


def writable_node(cls: type) -> DictConfig:
    """The structured config of dataclass ``cls`` with no read-only node left (frozen classes are).

    Group options, presets and overrides then merge into it; its types and keys still hold.
    """
    node = OmegaConf.structured(cls)

    def clear(n: Any) -> None:
        OmegaConf.set_readonly(n, False)
        if isinstance(n, DictConfig) and not n._is_none():
            for key in n.keys():
                child = n._get_node(key)
                if isinstance(child, (DictConfig, ListConfig)):
                    clear(child)

    clear(node)
    return node


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
