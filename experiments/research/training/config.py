"""Typed options of the training tasks (the ``train:`` section of their presets).

Light on purpose: ``experiments.schemas`` registers these dataclasses as Hydra structured configs, so every
key has its default here and a preset in ``conf/exp`` lists only its deltas.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from experiments.research.datasets.splits import VAL_SCANS


@dataclass(frozen=True)
class TrainUNetConfig:
    """Options of the ``train:`` section of ``conf/exp/train_unet_*.yaml``."""

    data_root: str = ""  # set by conf/exp (paths.mlography); relative = against the repository root
    val_scans: tuple[str, ...] = ("15", "22", "27", "34", "39")
    # Tuning scans (taken out of training): choose the epoch, threshold and post-processing, so
    # the validation scans are only ever predicted once, for the card's held-out metrics.
    # Empty = tune on the validation scans (optimistic).
    tune_scans: tuple[str, ...] = ()
    unet: dict = field(default_factory=lambda: {"depth": 3, "base_width": 8})
    loss: dict = field(default_factory=lambda: {"name": "combo", "bce": 1.0, "dice": 1.0})
    augment: dict = field(default_factory=dict)
    patch: int = 128
    patches_per_epoch: int = 1024
    positive_fraction: float = 0.6
    batch_size: int = 16
    learning_rate: float = 2e-3
    min_learning_rate: float = 1e-4
    lr_patience: int = 3
    epochs: int = 60
    patience: int = 8
    max_minutes: float = 14.0
    threads: int = 1
    seed: int = 0
    tile: int = 256
    overlap: int = 32
    match_iou: float = 0.0
    tolerance: float = 2.0
    thresholds: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    monitor_thresholds: tuple[float, ...] = (0.3, 0.5, 0.7)
    min_sizes: tuple[int, ...] = (0, 3, 6, 10)
    # How the card's threshold is chosen on the tuning scans: "score" = the monitored score
    # (object F1 / boundary F1); "f1_minus_heyn" (grains) = boundary F1 - |Heyn-mean error|.
    selection: str = "score"
    # Impurities: warp each scan's labels onto its dark spots (data.registration) before training
    # and tuning; the card's held-out metrics are reported against the raw and the registered labels.
    register_labels: bool = False
    # Grains: rendered exact-truth scans (data.synthetic_truth, TruthConfig defaults) mixed into
    # training: ``rendered_scans`` scans of seeds rendered_seed, rendered_seed + 1, ...; a share
    # ``rendered_share`` of each epoch's patches is cut from them (0 scans = real labels only).
    # Their impurities are inpainted with the true mask (ns, 2 px), the true 1-px boundaries are
    # widened by a 3x3 dilation to the real labels' ~3 px.  The tuning and validation scans stay real.
    rendered_scans: int = 0
    rendered_seed: int = 29_000_000
    rendered_share: float = 0.3
    rendered_truth: dict = field(default_factory=dict)  # TruthConfig overrides (e.g. a small shape for tests)
    install: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "val_scans", tuple(str(s) for s in self.val_scans))
        object.__setattr__(self, "tune_scans", tuple(str(s) for s in self.tune_scans))
        if set(self.tune_scans) & set(self.val_scans):
            raise ValueError(
                f"tune_scans and val_scans overlap: {sorted(set(self.tune_scans) & set(self.val_scans))}"
            )
        object.__setattr__(self, "thresholds", tuple(float(t) for t in self.thresholds))
        object.__setattr__(
            self, "monitor_thresholds", tuple(float(t) for t in self.monitor_thresholds)
        )
        object.__setattr__(self, "min_sizes", tuple(int(t) for t in self.min_sizes))
        for s in ("10", "11"):
            if s in self.val_scans or s in self.tune_scans:
                raise ValueError(f"scan {s} is bundled in data/samples and must stay in training")
        if not self.val_scans:
            raise ValueError("val_scans must name at least one scan")
        if self.rendered_scans < 0 or not 0.0 <= self.rendered_share <= 1.0:
            raise ValueError(f"rendered_scans must be >= 0 and rendered_share in [0, 1], got "
                             f"{self.rendered_scans} and {self.rendered_share}")
        if not 0.0 <= self.positive_fraction <= 1.0:
            raise ValueError(f"positive_fraction must be in [0, 1], got {self.positive_fraction}")
        for name in ("patch", "patches_per_epoch", "batch_size", "epochs", "patience", "threads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.selection not in ("score", "f1_minus_heyn"):
            raise ValueError(f"selection must be 'score' or 'f1_minus_heyn', got {self.selection!r}")
        if not all(0 < t < 1 for t in self.thresholds):
            raise ValueError(f"thresholds must be in (0, 1), got {self.thresholds}")


@dataclass(frozen=True)
class TrainInpaintingConfig:
    """Options of the ``train:`` section of ``conf/exp/train_inpainting.yaml``."""

    data_root: str = ""  # set by conf/exp (paths.mlography); relative = against the repository root
    val_scans: tuple[str, ...] = VAL_SCANS
    patch_size: int = 64
    free_dilation_px: int = 3
    patches_per_scan: int = 500
    val_patches: int = 384
    holes: dict = field(default_factory=dict)
    width: int = 16
    coarse_dilations: tuple[int, ...] = (2, 4, 8)
    loss: dict = field(default_factory=dict)
    epochs: int = 4
    batch_size: int = 32
    learning_rate: float = 2e-3
    time_budget_s: float = 840.0
    threads: int = 1
    seed: int = 0
    install: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "val_scans", tuple(str(s) for s in self.val_scans))
        object.__setattr__(self, "coarse_dilations", tuple(int(d) for d in self.coarse_dilations))
        if {"10", "11"} & set(self.val_scans):
            raise ValueError("scans 10 and 11 are bundled training samples, not validation scans")
        if self.patch_size < 16 or self.patch_size % 4:
            raise ValueError(f"patch_size must be a multiple of 4 and >= 16, got {self.patch_size}")
        if self.epochs < 1 or self.batch_size < 1 or self.patches_per_scan < 1 or self.threads < 1:
            raise ValueError("epochs, batch_size, patches_per_scan and threads must be >= 1")
        from inpainting.holes import HoleSamplerConfig

        HoleSamplerConfig(**self.holes)  # validate early


@dataclass(frozen=True)
class TrainShapeAEConfig:
    """Options of the ``train:`` section of ``conf/exp/train_shape_ae.yaml``."""

    masks_dir: str = ""  # set by conf/exp (paths.mlography); relative = against the repository root
    val_fraction: float = 0.2
    seed: int = 0
    crop_size: int = 32
    fill: float = 0.8
    min_area_px: int = 50
    normal_max_circle: float = 0.3
    anomalous_min_circle: float = 0.55
    anomalous_per_normal: float = 1.0
    filters: tuple[int, ...] = (16, 32, 64)
    latent_dim: int = 32
    epochs: int = 12
    batch_size: int = 128
    learning_rate: float = 1e-3
    eval_min_area_px: int = 10
    install: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "filters", tuple(int(f) for f in self.filters))
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if not self.normal_max_circle < self.anomalous_min_circle:
            raise ValueError("normal_max_circle must be below anomalous_min_circle")
        if self.epochs < 1 or self.batch_size < 1 or self.anomalous_per_normal <= 0:
            raise ValueError("epochs, batch_size and anomalous_per_normal must be positive")


@dataclass(frozen=True)
class TrainUNetPhasesConfig:
    """Options of the ``train:`` section of ``conf/exp/train_unet_phases.yaml`` (issue 24).

    The teacher is :func:`segmentation.phases.segment_phases` with ``phases`` (a
    :class:`~segmentation.phases.PhasesConfig` as a dict); the student a softmax U-Net over its
    ``len(phases.names)`` phases.  Scans: ``inputs`` (files / folders / globs read with
    :func:`data.read_scan`; sorted by scan id, the last ``n_val`` are held out for validation and
    the ``n_tune`` before them choose the epoch), or, when ``inputs`` is empty, generated coating
    scans (:func:`data.synthetic_phases.coating_scan` with ``generator`` keywords) of the seeds in
    the half-open ranges ``train_seeds`` / ``tune_seeds`` / ``val_seeds``.
    """

    inputs: tuple[str, ...] = ()
    n_val: int = 2
    n_tune: int = 1
    # coating_scan keywords (its defaults, listed so a preset or the command line can set them)
    generator: dict = field(default_factory=lambda: {
        "shape": [512, 512], "thickness_px": 200.0, "porosity": 0.05, "pore_median_px": 5.0,
        "n_oxides": 6, "gradient": 0.1, "noise_sd": 4.0, "blur_px": 0.8, "jpeg_quality": None})
    train_seeds: tuple[int, ...] = (0, 8)
    tune_seeds: tuple[int, ...] = (100, 102)
    val_seeds: tuple[int, ...] = (200, 204)
    phases: dict = field(default_factory=lambda: {"names": ["pore", "oxide", "coating", "substrate"]})
    unet: dict = field(default_factory=lambda: {"depth": 3, "base_width": 8})
    augment: dict = field(default_factory=lambda: {
        "dihedral": True, "brightness": 0.0, "contrast": 0.0, "gamma": 0.0, "noise": 0.02})
    # Per-pixel loss weight of class k: frequency_k ** -class_balance (normalised to mean 1 over
    # the training pixels, capped at max_class_weight); 0 = plain cross-entropy.
    class_balance: float = 0.5
    max_class_weight: float = 20.0
    # Patches centred on a pixel of a class drawn uniformly among the classes (so rare phases,
    # pores and oxides, are seen); the rest at uniform random positions.
    balanced_fraction: float = 0.5
    patch: int = 128
    patches_per_epoch: int = 512
    batch_size: int = 16
    learning_rate: float = 2e-3
    # the learning rate halves after lr_patience epochs without a tuning gain (down to min_learning_rate)
    lr_patience: int = 2
    min_learning_rate: float = 1e-4
    epochs: int = 30
    patience: int = 5
    max_minutes: float = 8.0
    threads: int = 1
    seed: int = 0
    tile: int = 256
    overlap: int = 32
    # Speed of learned vs classical on a generated bench_px x bench_px coating scan (0 = off).
    bench_px: int = 2000
    install: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(str(s) for s in self.inputs))
        for name in ("train_seeds", "tune_seeds", "val_seeds"):
            r = tuple(int(v) for v in getattr(self, name))
            if len(r) != 2 or r[1] <= r[0]:
                raise ValueError(f"{name} must be a range [first, stop) with stop > first, got {list(r)}")
            object.__setattr__(self, name, r)
        ranges = [set(range(*getattr(self, n))) for n in ("train_seeds", "tune_seeds", "val_seeds")]
        if ranges[0] & ranges[1] or ranges[0] & ranges[2] or ranges[1] & ranges[2]:
            raise ValueError("train_seeds, tune_seeds and val_seeds must not overlap")
        if self.n_val < 1 or self.n_tune < 0:
            raise ValueError(f"n_val must be >= 1 and n_tune >= 0, got {self.n_val}, {self.n_tune}")
        for name in ("patch", "patches_per_epoch", "batch_size", "epochs", "patience", "lr_patience",
                     "threads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.balanced_fraction <= 1.0:
            raise ValueError(f"balanced_fraction must be in [0, 1], got {self.balanced_fraction}")
        if self.class_balance < 0 or self.max_class_weight < 1:
            raise ValueError("class_balance must be >= 0 and max_class_weight >= 1")
        if float(dict(self.augment).get("elastic_alpha", 0.0)) > 0:
            raise ValueError("augment.elastic_alpha must be 0: a warp would interpolate the phase labels")
        if not 0 <= self.overlap < self.tile:
            raise ValueError(f"overlap must be in [0, tile), got {self.overlap} for tile {self.tile}")
        if self.bench_px < 0:
            raise ValueError(f"bench_px must be >= 0, got {self.bench_px}")
