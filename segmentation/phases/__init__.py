"""Multi-phase segmentation of metallography scans (issue 24): coating, substrate, pores, oxides.

Pure numpy / scikit-image; nothing learned, no Keras at import.  :func:`segment_phases` turns a
scan into a ``uint8`` label image whose value ``k`` is the phase ``cfg.names[k - 1]`` (darkest
first) and 0 the unassigned / excluded pixels; :mod:`data.standards.phases` measures it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .classical import (PhaseError, choose_n_by_bic, clean_small, deblur_small_dark, flatten_illumination, gmm_thresholds,
                        otsu_thresholds, preprocess, repair_rims, to_unit_grey)
from .classical import _size_px

__all__ = ["PhaseError", "PhasesConfig", "segment_phases", "resolve_n", "repair_rims"]

_METHODS = ("otsu", "gmm")


@dataclass(frozen=True)
class PhasesConfig:
    """How a scan is split into phases.

    Parameters
    ----------
    names : tuple of str
        Phase names, darkest first (``("pore", "oxide", "coating", "substrate")``).
    n : int, "auto" or None
        Number of phases: None = ``len(names)``; ``"auto"`` = chosen by the BIC of a 1-D Gaussian
        mixture of the raw grey levels between 2 and ``len(names)`` (the found phases take the
        first names).
    method : {"otsu", "gmm"}
        Multi-level Otsu thresholds or the crossings of a Gaussian mixture.
    clahe_clip : float or None
        CLAHE clip limit (None = no CLAHE).
    denoise : {None, "median", "gaussian", "nl_means"}
    denoise_size_um, denoise_size_px
        Filter size; µm when given and the scan is calibrated (µm read as px otherwise).
    slic, slic_segments
        Average the grey level over SLIC superpixels before thresholding.
    flatten : int or None
        Illumination flattening (None = off): the degree of a 2-D polynomial multiplicative field
        shared by all phases, fitted to the log ratio of each pixel to its class median and
        divided out before the thresholds (:func:`~segmentation.phases.classical.flatten_illumination`).
    rim_px : int
        Transition-rim repair (0 = off): a pixel of an intermediate phase within ``rim_px`` px of
        both a darker and a brighter phase is the blurred edge between them (a pore's rim in a
        coating reads as oxide); it goes to the darker or the brighter of those two phases,
        whichever class mean is nearer its grey level.  Thin bodies of the intermediate phase away
        from such an edge (oxide stringers) are kept.
    deblur_max_area_px : int
        Small blurred dark objects (0 = off): an intermediate-phase component of at most this many
        px, touching no darker phase and darker inside than its class, is a blurred object of the
        next darker phase; it gets that phase back with the area its integrated darkness gives
        (:func:`~segmentation.phases.classical.deblur_small_dark`; a small pore in a coating reads
        as oxide otherwise).
    deblur_raw : bool
        Integrate the darkness of those objects on the scan before denoising (the median filter
        does not keep a small dark object's integrated darkness: a 2 px pore loses ~15 % of it).
    deblur_ring_px : int
        Width of the ring around each object whose darkness is integrated (1 px misses the tail of
        a blur of ~1 px).
    deblur_excess : float or None
        Also take an intermediate-phase object that does not go deep enough for a blurred darker one
        when it holds more than this many times the darkness of a body of its phase of its area
        (None = off; :func:`~segmentation.phases.classical.deblur_small_dark`).
    background_um, background_px
        Local background correction for dark objects in a bright matrix (0 / None = off): the scan is
        divided by its grey closing with a disk of this diameter (µm when given and calibrated, else
        px), smoothed (:func:`~segmentation.phases.background.background_ratio`), before the other
        steps, so that grain shading and etching contrast do not become a dark phase.  Wider than the
        widest object; not for layered scans (coatings), whose phases are not small objects.
    min_size_um, min_size_px
        Clean-up: components smaller than an equivalent diameter of ``min_size_um`` (µm; px when
        uncalibrated), or else than an area of ``min_size_px`` pixels, merge into the phase
        around them.
    """

    names: tuple[str, ...] = ("dark", "bright")
    n: int | str | None = None
    method: str = "otsu"
    clahe_clip: float | None = 0.01
    denoise: str | None = "median"
    denoise_size_um: float | None = None
    denoise_size_px: int = 3
    slic: bool = False
    slic_segments: int = 2000
    flatten: int | None = None
    rim_px: int = 0
    deblur_max_area_px: int = 0
    deblur_raw: bool = False
    deblur_ring_px: int = 1
    deblur_excess: float | None = None
    background_um: float | None = None
    background_px: int = 0
    min_size_um: float | None = None
    min_size_px: int = 4

    def __post_init__(self) -> None:
        names = tuple(self.names)
        object.__setattr__(self, "names", names)
        if len(names) < 2:
            raise PhaseError(f"phases.names must list at least 2 phases, got {list(names)}")
        if len(set(names)) != len(names):
            raise PhaseError(f"phases.names must be distinct, got {list(names)}")
        if len(names) > 255:
            raise PhaseError("phases.names: at most 255 phases (uint8 labels)")
        if self.method not in _METHODS:
            raise PhaseError(f"phases.method must be one of {_METHODS}, got {self.method!r}")
        if self.n is not None and self.n != "auto":
            if isinstance(self.n, bool) or not isinstance(self.n, (int, np.integer)):
                raise PhaseError(f"phases.n must be an int, 'auto' or None, got {self.n!r}")
            if int(self.n) != len(names):
                raise PhaseError(
                    f"phases.n={self.n} but {len(names)} names were given ({list(names)}); "
                    "give one name per phase, darkest first"
                )
        if isinstance(self.rim_px, bool) or int(self.rim_px) != self.rim_px or self.rim_px < 0:
            raise PhaseError(f"phases.rim_px must be an integer >= 0, got {self.rim_px!r}")
        if self.flatten is not None and (isinstance(self.flatten, bool) or int(self.flatten) != self.flatten
                                         or not 1 <= self.flatten <= 4):
            raise PhaseError(f"phases.flatten must be None or a polynomial degree 1..4, got {self.flatten!r}")
        if isinstance(self.deblur_max_area_px, bool) or int(self.deblur_max_area_px) != self.deblur_max_area_px \
                or self.deblur_max_area_px < 0:
            raise PhaseError(f"phases.deblur_max_area_px must be an integer >= 0, got {self.deblur_max_area_px!r}")
        if isinstance(self.deblur_ring_px, bool) or int(self.deblur_ring_px) != self.deblur_ring_px \
                or self.deblur_ring_px < 1:
            raise PhaseError(f"phases.deblur_ring_px must be an integer >= 1, got {self.deblur_ring_px!r}")
        if self.deblur_excess is not None and not float(self.deblur_excess) > 0:
            raise PhaseError(f"phases.deblur_excess must be None or > 0, got {self.deblur_excess!r}")
        if self.min_size_px < 1:
            raise PhaseError(f"phases.min_size_px must be >= 1, got {self.min_size_px}")
        if isinstance(self.background_px, bool) or int(self.background_px) != self.background_px \
                or not (self.background_px == 0 or self.background_px >= 3):
            raise PhaseError(f"phases.background_px must be 0 (off) or an integer >= 3, got {self.background_px!r}")
        if self.background_um is not None and self.background_um <= 0:
            raise PhaseError(f"phases.background_um must be > 0, got {self.background_um}")
        if self.min_size_um is not None and self.min_size_um <= 0:
            raise PhaseError(f"phases.min_size_um must be > 0, got {self.min_size_um}")
        if self.denoise_size_um is not None and self.denoise_size_um <= 0:
            raise PhaseError(f"phases.denoise_size_um must be > 0, got {self.denoise_size_um}")


def resolve_n(values: np.ndarray, cfg: PhasesConfig) -> int:
    """The number of phases for these grey values: ``len(names)``, or the BIC choice for ``"auto"``."""
    if cfg.n == "auto":
        return choose_n_by_bic(values, n_max=len(cfg.names))
    return len(cfg.names)


def segment_phases(
    pixels: np.ndarray,
    cfg: PhasesConfig,
    *,
    pixel_size_um: float | None = None,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Label each pixel with its phase.

    Parameters
    ----------
    pixels : ndarray, (M, N) or (M, N, 3|4)
        The scan: uint8, uint16, other integers, bool or float.
    cfg : PhasesConfig
    pixel_size_um : float, optional
        Calibration; sizes in µm are converted with it (read as px when None).
    exclude : ndarray of bool, (M, N), optional
        Pixels to leave unassigned (label 0) and out of the thresholds (scale bar, labels).

    Returns
    -------
    ndarray, (M, N), uint8
        0 = unassigned / excluded, ``k`` = ``cfg.names[k - 1]``.  With ``n="auto"`` and fewer
        phases found than names, the found phases take the first ``n`` names.
    """
    if not isinstance(cfg, PhasesConfig):
        raise PhaseError(f"cfg must be a PhasesConfig, got {type(cfg).__name__}")
    if pixel_size_um is not None and not (np.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise PhaseError(f"pixel_size_um must be a positive number or None, got {pixel_size_um}")
    grey = to_unit_grey(pixels)
    valid = np.ones(grey.shape, dtype=bool)
    n_flat = None
    if exclude is not None:
        ex = np.asarray(exclude, dtype=bool)
        if ex.shape != grey.shape:
            raise PhaseError(f"exclude has shape {ex.shape}, the scan {grey.shape}")
        valid = ~ex
        if not valid.any():
            raise PhaseError("exclude covers the whole scan: nothing left to segment")
    if cfg.background_um is not None or cfg.background_px:
        from .background import background_ratio

        size = _size_px(cfg.background_um, cfg.background_px, pixel_size_um)
        grey = background_ratio(grey, max(3, size), valid=valid)
    if cfg.flatten is not None:
        n_flat = resolve_n(grey[valid] if exclude is not None else grey.ravel(), cfg)
        grey = flatten_illumination(grey, n=n_flat, method=cfg.method, degree=int(cfg.flatten), valid=valid)
    g = preprocess(
        grey,
        clahe_clip=cfg.clahe_clip,
        denoise=cfg.denoise,
        denoise_px=_size_px(cfg.denoise_size_um, cfg.denoise_size_px, pixel_size_um),
        slic=cfg.slic,
        slic_segments=cfg.slic_segments,
    )
    values = g[valid] if exclude is not None else g.ravel()
    # the number of phases from the raw grey levels: CLAHE and median filtering make each
    # phase's histogram non-Gaussian, which the BIC would pay for with extra components
    n = n_flat if n_flat is not None else resolve_n(grey[valid] if exclude is not None else grey.ravel(), cfg)
    t = otsu_thresholds(values, n) if cfg.method == "otsu" else gmm_thresholds(values, n)
    # np.digitize(g, t) + 1 (t ascending): 1 + the number of thresholds <= g, counted in uint8
    t = np.asarray(t, dtype=np.float64)
    if t.size and np.all(np.diff(t) >= 0):
        labels = np.ones(g.shape, dtype=np.uint8)
        for th in t:
            labels += g >= th
    else:
        labels = (np.digitize(g, t) + 1).astype(np.uint8)
    if exclude is not None:
        labels[~valid] = 0
    if cfg.rim_px and n >= 3:
        labels = repair_rims(labels, g, n=n, rim_px=int(cfg.rim_px))
    if cfg.deblur_max_area_px and n >= 3:
        labels = deblur_small_dark(labels, g, n=n, max_area_px=int(cfg.deblur_max_area_px),
                                   raw=grey if cfg.deblur_raw else None, ring_px=int(cfg.deblur_ring_px),
                                   excess=cfg.deblur_excess)
    if cfg.min_size_um is not None:
        d_px = cfg.min_size_um / pixel_size_um if pixel_size_um else cfg.min_size_um
        min_px = max(1, int(np.ceil(np.pi / 4.0 * d_px**2)))
    else:
        min_px = int(cfg.min_size_px)
    return clean_small(labels, min_size_px=min_px, valid=valid).astype(np.uint8)
