"""Train the generative inpainting network: ``python -m experiments.run +exp=train_inpainting``.

Self-supervised: patches of the development training scans whose (dilated)
impurity mask is empty, so every pixel is known; random holes are cut into
them and the network learns to fill them.  Holes are shaped like the real
impurities of the training scans (single impurities and whole clusters, taken
from the manual masks, randomly rotated/flipped) or are free-form brush
strokes, then grown by a random dilation (the pipeline dilates impurity
masks before inpainting).  The validation scans (split by scan; the same list
as ``eval_inpainting``) are never used for training: their impurity-free
patches only monitor the loss and give the model card's patch metrics.

CPU budget: TensorFlow/OpenMP intra-op threads are set to ``threads`` (1 by
default) before TensorFlow is imported; training stops after
``time_budget_s`` of fitting (checked after every batch).  Seeds are fixed.

Outputs in ``output_dir``: ``inpaint_net.keras``, ``inpaint_net.json`` (model
card: data, split, config, metrics, date, command, versions) and
``metrics.json``.  With ``install: true`` both model files are copied into
``inpainting/weights/``, where :func:`inpainting.generative.load_inpaint_net`
finds them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from inpainting import DEFAULT_WEIGHTS, dilate_mask, inpaint
from inpainting.holes import HoleSamplerConfig, hole_bank, sample_hole_masks

from experiments.config import dataclass_from
from ..datasets.mlography import dev_root, read_pair, scan_names
from .model_card import card_header
from .config import TrainInpaintingConfig

__all__ = ["TrainInpaintingConfig", "free_patch_origins", "run"]

log = logging.getLogger(__name__)

COMMAND = "python -m experiments.run +exp=train_inpainting"




def free_patch_origins(mask: np.ndarray, size: int, *, dilation_px: int) -> np.ndarray:
    """Top-left corners of all ``size`` x ``size`` patches whose dilated mask is empty.

    Vectorised with an integral image of the dilated mask.

    Returns
    -------
    ndarray of int, shape (K, 2)
    """
    grown = dilate_mask(mask, dilation_px).astype(np.int32)
    ii = np.pad(grown.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    s = ii[size:, size:] - ii[:-size, size:] - ii[size:, :-size] + ii[:-size, :-size]
    r, c = np.nonzero(s == 0)
    return np.stack([r, c], axis=1)


def _patches(names, root, cfg, rng, per_scan):
    """Standardised impurity-free patches (N, P, P) float32, their scan names, the scans' masks."""
    from inpainting.generative import standardise

    out, src, masks, counts = [], [], [], {}
    for name in names:
        pixels, mask = read_pair(root, name)
        masks.append(mask)
        origins = free_patch_origins(mask, cfg.patch_size, dilation_px=cfg.free_dilation_px)
        counts[name] = int(len(origins))
        if not len(origins):
            continue
        mu, sigma = standardise(pixels, mask)
        z = (pixels.astype(np.float32) - mu) / sigma
        pick = origins[rng.choice(len(origins), size=min(per_scan, len(origins)), replace=False)]
        p = cfg.patch_size
        out += [z[r : r + p, c : c + p] for r, c in pick]
        src += [name] * len(pick)
    return np.stack(out).astype(np.float32), np.array(src), masks, counts


def _dihedral(x: np.ndarray, k: int) -> np.ndarray:
    out = np.rot90(x, k % 4, axes=(-2, -1))
    return out[..., ::-1] if k >= 4 else out


def _batch(z, holes):
    from inpainting.generative import model_inputs

    x = model_inputs(z, holes)
    y = np.stack([z, holes.astype(np.float32)], axis=-1)
    return x, y


def _make_dataset(patches, bank, cfg, hcfg):
    import keras

    class PatchHoles(keras.utils.PyDataset):
        """Batches of augmented patches with fresh random holes, seeded by (seed, epoch, batch)."""

        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)
            self.epoch = 0
            self.order = np.random.default_rng([cfg.seed, 0]).permutation(len(patches))

        def __len__(self):
            return len(patches) // cfg.batch_size

        def __getitem__(self, i):
            rng = np.random.default_rng([cfg.seed, self.epoch, i])
            idx = self.order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            ks = rng.integers(0, 8, len(idx))
            z = np.stack([_dihedral(patches[j], k) for j, k in zip(idx, ks)])
            holes = sample_hole_masks(len(idx), cfg.patch_size, bank, rng, hcfg)
            return _batch(z, holes)

        def on_epoch_end(self):
            self.epoch += 1
            self.order = np.random.default_rng([cfg.seed, self.epoch]).permutation(len(patches))

    return PatchHoles()


def _patch_metrics(model, z, holes) -> dict:
    """PSNR / L1 inside the holes of fixed validation patches: network vs classical.

    The standardised patches are mapped to a common gray scale (x 40 + 128, clipped to
    0..255; the scans' standard deviation is ~40 gray levels) so all methods see the same
    images and PSNR is in the usual 8-bit units.
    """
    from inpainting.generative import model_inputs

    gray = np.clip(z * 40.0 + 128.0, 0, 255).astype(np.float32)
    x = model_inputs((gray - 128.0) / 40.0, holes)
    pred = np.asarray(model.predict(x, batch_size=64, verbose=0))
    fills = {"generative": np.clip(pred[..., 0] * 40.0 + 128.0, 0, 255)}
    for method in ("telea", "biharmonic"):
        fills[method] = np.stack(
            [inpaint(g, h, method=method, max_hole_fraction=1.0) for g, h in zip(gray, holes)]
        )
    res = {}
    for name, f in fills.items():
        d = (f - gray)[holes]
        psnr = float(10 * np.log10(255.0**2 / float((d**2).mean())))
        res[name] = {"psnr_db": psnr, "l1": float(np.abs(d).mean())}
    return res


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``train_inpainting``: build patches, train, measure, save (and install)."""
    tcfg = dataclass_from(TrainInpaintingConfig, cfg.get("train"), where="train")
    for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[var] = str(tcfg.threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # thread settings only; model code uses keras.layers / keras.ops

        try:
            tf.config.threading.set_intra_op_parallelism_threads(tcfg.threads)
            tf.config.threading.set_inter_op_parallelism_threads(tcfg.threads)
        except RuntimeError:  # already initialised in this process
            log.warning("TensorFlow threads already initialised; env vars set to %d", tcfg.threads)
    import cv2

    cv2.setNumThreads(tcfg.threads)
    from inpainting.generative import InpaintLoss, build_inpaint_net

    t_start = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    root = dev_root(tcfg.data_root)
    names = scan_names(root)
    val = [n for n in names if n in tcfg.val_scans]
    train = [n for n in names if n not in tcfg.val_scans]
    if not val or not train:
        raise ValueError(f"need training and validation scans; got train={train} val={val}")
    log.info("split by scan: %d train %s, %d validation %s", len(train), train, len(val), val)

    keras.utils.set_random_seed(tcfg.seed)
    rng = np.random.default_rng(tcfg.seed)
    hcfg = HoleSamplerConfig(**tcfg.holes)
    t0 = time.perf_counter()
    patches, src, train_masks, counts = _patches(train, root, tcfg, rng, tcfg.patches_per_scan)
    bank = hole_bank(train_masks, max_side_px=tcfg.patch_size - 8)
    vz, vsrc, _, vcounts = _patches(val, root, tcfg, rng, max(1, tcfg.val_patches // len(val)))
    vrng = np.random.default_rng([tcfg.seed, 999])
    vholes = sample_hole_masks(len(vz), tcfg.patch_size, bank, vrng, hcfg)
    vx, vy = _batch(vz, vholes)
    t_data = time.perf_counter() - t0
    log.info(
        "%d training patches from %d scans, %d validation patches; "
        "hole bank %d singles, %d clusters (%.1f s)",
        len(patches), len(set(src)), len(vz), len(bank.singles), len(bank.clusters), t_data,
    )

    data = _make_dataset(patches, bank, tcfg, hcfg)
    model = build_inpaint_net(
        width=tcfg.width, coarse_dilations=tcfg.coarse_dilations, seed=tcfg.seed
    )
    steps = tcfg.epochs * len(data)
    schedule = keras.optimizers.schedules.CosineDecay(
        tcfg.learning_rate, decay_steps=steps, alpha=0.05
    )
    loss = InpaintLoss(**tcfg.loss)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss)

    class Budget(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.start = None
            self.stopped_at = None

        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if time.perf_counter() - self.start > tcfg.time_budget_s and self.stopped_at is None:
                self.stopped_at = batch
                self.model.stop_training = True
                log.warning("time budget %.0f s reached: stopping", tcfg.time_budget_s)

    budget = Budget()
    t0 = time.perf_counter()
    # Validation patches only monitor the loss: no early stopping or model selection on them.
    hist = model.fit(
        data, validation_data=(vx, vy), epochs=tcfg.epochs, verbose=2, callbacks=[budget]
    )
    t_fit = time.perf_counter() - t0

    metrics = {
        "loss": {k: [float(v) for v in vals] for k, vals in hist.history.items()},
        "validation_patches": _patch_metrics(model, vz, vholes),
        "epochs_run": len(hist.history.get("loss", [])),
        "stopped_by_time_budget": budget.stopped_at is not None,
    }
    log.info("validation patches (PSNR dB inside holes): %s",
             {k: round(v["psnr_db"], 2) for k, v in metrics["validation_patches"].items()})

    model_path = output_dir / "inpaint_net.keras"
    card_path = output_dir / "inpaint_net.json"
    model.save(model_path)
    total = time.perf_counter() - t_start
    card = {
        **card_header(
            name="inpaint_net",
            description="Gated-convolution coarse-to-fine inpainting network for gray metallography scans; "
            "removes impurities before grain-boundary segmentation (the MLography paper uses DeepFill: "
            "Rusanovsky et al., Sci. Rep. 12, 4776 (2022)).",
            command=COMMAND, model=model, model_path=model_path,
        ),
        "input": "(B, H, W, 2): [scan standardised by mean/std of its known pixels, holes set "
        "to 0; hole mask 1 = hole], H, W divisible by 16; output (B, H, W, 1) standardised scan",
        "use": "inpainting.inpaint(pixels, mask, method='generative', dilation_px=2); tiled inference",
        "objective": "self-supervised: InpaintLoss (L1 holes x{hole_weight}, L1 valid, L1 of gradients "
        "near holes, local-std texture term)".format(hole_weight=loss.hole_weight),
        "loss_config": loss.get_config(),
        "data": {
            "source": "MLography public data, scans/images + scans/impurity_masks (development split)",
            "data_root": str(root),
            "split": "by scan; validation scans never used for training (only loss monitoring)",
            "train_scans": train,
            "val_scans": val,
            "patches": f"{tcfg.patch_size}x{tcfg.patch_size}, impurity mask dilated by "
            f"{tcfg.free_dilation_px} px empty; up to {tcfg.patches_per_scan} per scan; "
            "random rotation/flip",
            "free_patch_positions_per_scan": counts,
            "train_patches": int(len(patches)),
            "holes": {**dataclasses.asdict(hcfg), "bank_singles": len(bank.singles),
                      "bank_clusters": len(bank.clusters),
                      "shapes": "single impurities and clusters (>= 3 centroids in a 40 px window) of "
                      "the training scans' manual masks; free-form strokes"},
        },
        "config": {**dataclasses.asdict(tcfg), "val_scans": list(tcfg.val_scans),
                   "coarse_dilations": list(tcfg.coarse_dilations)},
        "metrics_validation_patches": metrics["validation_patches"],
        "metrics_note": "PSNR/L1 in gray levels (standardised patches x 40 + 128) inside the holes of "
        f"{len(vz)} fixed validation patches; the scan-level comparison is +exp=eval_inpainting",
        "final_loss": {k: v[-1] for k, v in metrics["loss"].items()},
        "epochs_run": metrics["epochs_run"],
        "stopped_by_time_budget": metrics["stopped_by_time_budget"],
        "threads": tcfg.threads,
        "timing_s": {"data": round(t_data, 1), "fit": round(t_fit, 1), "total": round(total, 1)},
    }
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log.info("saved %s (%d parameters, %d bytes) in %.0f s", model_path, card["parameter_count"],
             card["file_bytes"], total)
    if tcfg.install:
        DEFAULT_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(model_path, DEFAULT_WEIGHTS)
        shutil.copy2(card_path, DEFAULT_WEIGHTS.with_suffix(".json"))
        log.info("installed into %s", DEFAULT_WEIGHTS.parent)
    return 0
