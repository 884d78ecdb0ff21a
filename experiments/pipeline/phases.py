"""The phase step of a scan (``phases.enabled``): segment the phases, measure them, draw them.

:class:`PhaseStep` is built once per worker from the run's ``phases`` section.  For each scan it
labels every pixel with its phase (classical :func:`segmentation.phases.segment_phases`, or the
U-Net trained by ``+exp=train_unet_phases``), measures the label image
(:func:`data.standards.phases.measure_phases`: fractions with their intervals, the E562 point
count, coating thickness and porosity) and hands the stage the object phases' components (pores,
particles) as the region labels, so they go through the same scorers, market clustering and
archive ranking as impurities.  :func:`region_phases` names the phase of each final region;
:func:`phase_files` draws the colour overlay, the phase label TIFF and the thickness profile.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np
import pandas as pd

from data.standards.phases import PhaseError, PhaseMeasureConfig, PhaseMeasurement, measure_phases, unknown_phase_names
from segmentation.phases import PhasesConfig, segment_phases

from ..config import PHASE_MEASURE_KEYS, ConfigError, PhasesSection, domain_config
from ..layout import RunLayout
from .artifacts import label_tiff_bytes, png_bytes

__all__ = ["PhaseScan", "PhaseStep", "phase_configs", "region_phases", "cluster_phases", "phase_files"]

_RUN_KEYS = ("enabled", "segmenter", "weights")
_SEGMENTERS = ("classical", "unet")


def phase_configs(section: PhasesSection) -> tuple[PhasesConfig, PhaseMeasureConfig]:
    """The domain configs of a ``phases`` section; a phase name the measurement uses must be named.

    Raises :class:`ConfigError` (one line naming the key) on a bad combination.
    """
    try:
        seg = domain_config(PhasesConfig, section, where="phases", drop=(*PHASE_MEASURE_KEYS, *_RUN_KEYS))
        keep = {k: getattr(section, k) for k in PHASE_MEASURE_KEYS}
        measure = domain_config(PhaseMeasureConfig, keep, where="phases")
    except PhaseError as exc:
        raise ConfigError(str(exc)) from None
    if section.segmenter not in _SEGMENTERS:
        raise ConfigError(f"phases.segmenter must be one of {list(_SEGMENTERS)}, got {section.segmenter!r}")
    for key, bad in unknown_phase_names(seg.names, measure).items():  # a run names every phase it uses
        if isinstance(bad, str):
            raise ConfigError(f"phases.{key}={bad!r} is not one of phases.names {list(seg.names)}")
        raise ConfigError(f"phases.{key} {bad} are not among phases.names {list(seg.names)}")
    if not measure.objects:
        raise ConfigError("phases.objects is empty: name the phases whose particles are scored (e.g. [pore])")
    return seg, measure


@dataclass
class PhaseScan:
    """One scan's phases: the label image (``k`` = ``names[k - 1]``, 0 = unassigned) and its measures."""

    labels: np.ndarray
    names: tuple[str, ...]
    measurement: PhaseMeasurement


class PhaseStep:
    """Segment and measure the phases of scans (build once per worker; the U-Net loads once).

    Parameters
    ----------
    section : PhasesSection
        The run's ``phases`` section.
    backend, precision
        Inference path of a phase U-Net (``segmentation.unet.backend`` / ``precision``: its
        verified ONNX export on OpenVINO / ONNX Runtime when installed, else Keras).
    """

    def __init__(self, section: PhasesSection, *, backend: str = "auto", precision: str = "auto"):
        self.section = section
        self.backend, self.precision = backend, precision
        self.segment_cfg, self.measure_cfg = phase_configs(section)
        self.names: tuple[str, ...] = tuple(self.segment_cfg.names)
        self._unet = None

    def _segment(self, pixels: np.ndarray, pixel_size_um: float | None, exclude: np.ndarray | None) -> np.ndarray:
        if self.section.segmenter == "classical":
            return segment_phases(pixels, self.segment_cfg, pixel_size_um=pixel_size_um, exclude=exclude)
        if self._unet is None:
            from segmentation.phases.learned import make_phase_segmenter  # lazy: Keras

            self._unet = make_phase_segmenter("unet", self.segment_cfg, weights=self.section.weights,
                                              backend=self.backend, precision=self.precision)
        return self._unet(pixels, pixel_size_um=pixel_size_um, exclude=exclude)

    def warm_up(self) -> None:
        """Load the phase U-Net now (classical: nothing to load)."""
        if self.section.segmenter == "unet":
            self._segment(np.zeros((64, 64), np.uint8) + np.arange(64, dtype=np.uint8), None, None)

    def __call__(self, pixels: np.ndarray, *, pixel_size_um: float | None, exclude: np.ndarray | None,
                 scan_id: str) -> PhaseScan:
        labels = self._segment(pixels, pixel_size_um, exclude)
        m = measure_phases(labels, names=self.names, pixel_size_um=pixel_size_um, cfg=self.measure_cfg,
                           scan_id=scan_id)
        return PhaseScan(labels, self.names, m)


def region_phases(labels: np.ndarray, phase_labels: np.ndarray, names: tuple[str, ...],
                  region_ids: np.ndarray) -> np.ndarray:
    """The phase name of each region (``region_ids``, values of ``labels``) from the phase label image.

    A region is a connected component of one object phase, so any of its pixels names its phase.
    """
    ids = np.asarray(region_ids, dtype=np.int64)
    if ids.size == 0:
        return np.empty(0, dtype=object)
    flat = labels.ravel()
    nz = np.flatnonzero(flat)
    found, first = np.unique(flat[nz], return_index=True)
    phase_of = phase_labels.ravel()[nz[first]].astype(np.int64)
    pos = np.searchsorted(found, ids)
    if np.any(pos >= found.size) or np.any(found[np.minimum(pos, found.size - 1)] != ids):
        raise ValueError("region ids are not all in the label image")
    table = np.array(("",) + tuple(names), dtype=object)
    return table[phase_of[pos]]


def cluster_phases(table: pd.DataFrame, clusters: pd.DataFrame) -> np.ndarray:
    """The phase(s) of each cluster's members: ``"pore"``, or ``"oxide+pore"`` for a mixed cluster."""
    if not len(clusters):
        return np.empty(0, dtype=object)
    members = table[table["cluster_id"] >= 0].groupby("cluster_id")["phase"]
    names = members.agg(lambda s: "+".join(sorted(set(map(str, s)))))
    return clusters["cluster_id"].map(names).fillna("").to_numpy(dtype=object)


def _downsampled(labels: np.ndarray, pixels: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    step = max(1, int(np.ceil(max(labels.shape) / float(max_side))))
    return labels[::step, ::step], pixels[::step, ::step]


def phase_files(sid: str, pixels: np.ndarray, ph: PhaseScan, *, pixel_size_um: float | None,
                draw: bool, max_side: int = 2048) -> dict[str, bytes]:
    """The scan's phase files by run-relative path: label TIFF always; overlay and profile when drawing."""
    from ..reporting.phases import overlay_png, phase_overlay, plot_thickness_profile  # lazy: drawing

    files = {RunLayout.phase_labels_rel(sid): label_tiff_bytes(ph.labels, pixel_size_um=pixel_size_um)}
    if not draw:
        return files
    lab, px = _downsampled(ph.labels, pixels, max_side)
    files[RunLayout.phase_overlay_rel(sid)] = overlay_png(phase_overlay(lab, names=ph.names, pixels=px))
    prof = ph.measurement.thickness_profile
    if prof is not None:
        unit = "µm" if pixel_size_um is not None else "px"
        files[RunLayout.thickness_rel(sid)] = png_bytes(plot_thickness_profile(prof, unit=unit,
                                                                               pixel_size_um=pixel_size_um))
    return files
