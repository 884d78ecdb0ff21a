"""Post-training int8 quantisation of a U-Net's ONNX export for OpenVINO, recorded in its model card.

``python -m segmentation.backends.quantize [impurities|grains ...] [--data-root DIR]`` (default: both
shipped models; ``DIR`` defaults to ``$MLOGRAPHY_DATA`` or ``../shared/datasets/mlography``).

The Keras model stays the source of truth: its verified ONNX export (``x.onnx``) is read by OpenVINO
and quantised by NNCF (``nncf.quantize``, extra ``[fast]``) on calibration tiles drawn from the scans
the model was *trained* on (the card's ``data.train_scans``, read from ``data.inputs`` under the data
root, normalised as at inference), never its tuning or validation scans.  The result is written beside
the model as OpenVINO IR (``x.int8.xml`` + ``x.int8.bin``) and the card gets ``export.openvino_int8``:
the two files' sha256 and sizes, the calibration (scans, tiles, seed), NNCF's version, and the
probability difference to the fp32 export on a second, disjoint draw of training tiles.  The backend
(:func:`segmentation.backends.make_predict_fn`, ``precision='int8'``) verifies both checksums on load.

NNCF is needed only here; running the int8 model needs only OpenVINO.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["calibration_tiles", "main", "quantize_and_record"]

log = logging.getLogger(__name__)

COMMAND = "python -m segmentation.backends.quantize (or the train_unet_* task)"


def calibration_tiles(images: Sequence[np.ndarray], *, per_image: int = 4, tile: int = 256,
                      seed: int = 0) -> np.ndarray:
    """``per_image`` random ``tile`` x ``tile`` crops of each normalised image, as a (N, 1, t, t) batch.

    Parameters
    ----------
    images : sequence of ndarray, shape (M, N), float32
        Scans as the model sees them (:func:`segmentation.tiling.normalize_scan`), each >= ``tile``.
    per_image, tile, seed
        Crops per image, their side, the random generator's seed.

    Returns
    -------
    ndarray, shape (len(images) * per_image, 1, tile, tile), float32
    """
    if per_image < 1 or tile < 1:
        raise ValueError(f"per_image and tile must be >= 1, got {per_image}, {tile}")
    rng = np.random.default_rng(seed)
    out = []
    for img in images:
        a = np.asarray(img, np.float32)
        if a.ndim != 2 or min(a.shape) < tile:
            raise ValueError(f"calibration image of shape {a.shape} is not a 2-D image of at least {tile} px")
        for _ in range(per_image):
            r = int(rng.integers(0, a.shape[0] - tile + 1))
            c = int(rng.integers(0, a.shape[1] - tile + 1))
            out.append(a[r : r + tile, c : c + tile])
    if not out:
        raise ValueError("no calibration images")
    return np.stack(out)[:, None]


def _fp32_vs_int8(onnx_file: Path, xml: Path, tiles: np.ndarray) -> dict:
    import openvino as ov

    core = ov.Core()
    res = {}
    for name, path, hint in (("fp32", onnx_file, "f32"), ("int8", xml, "f32")):
        cm = core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": hint})
        req = cm.create_infer_request()
        res[name] = np.concatenate([np.array(req.infer({0: tiles[i : i + 4]})[0]) for i in range(0, len(tiles), 4)])
    d = np.abs(res["int8"] - res["fp32"])
    return {"tiles": int(len(tiles)), "max_abs": float(d.max()), "mean_abs": float(d.mean()),
            "p99_abs": float(np.quantile(d, 0.99))}


def quantize_and_record(model_file: str | Path, calibration: np.ndarray, check: np.ndarray, *,
                        calibration_info: dict | None = None) -> dict:
    """Quantise the verified ONNX export of ``model_file`` to int8 and record it in the card.

    Parameters
    ----------
    model_file : path
        The ``.keras`` file; its card must record its ONNX export (:mod:`segmentation.backends.export`).
    calibration : ndarray, shape (N, 1, t, t), float32
        Calibration tiles (:func:`calibration_tiles` of training scans).
    check : ndarray, shape (K, 1, t, t), float32
        Other tiles on which the int8 model is compared with the fp32 export (recorded, not checked).
    calibration_info : dict, optional
        What the tiles are (scans, source, seed), recorded in the card.

    Returns
    -------
    dict
        The card's new ``export.openvino_int8`` entry.
    """
    import nncf  # lazy: only this command needs it
    import openvino as ov

    from data.model_cards import card_path, read_card, sha256_of

    from . import int8_paths, verify_export

    model_file = Path(model_file)
    card = read_card(model_file)
    onnx_file = verify_export(model_file, card)
    cal = np.ascontiguousarray(calibration, np.float32)
    if cal.ndim != 4 or cal.shape[1] != 1:
        raise ValueError(f"calibration tiles must be (N, 1, t, t), got {cal.shape}")
    model = ov.Core().read_model(str(onnx_file))
    quantized = nncf.quantize(model, nncf.Dataset([cal[i : i + 1] for i in range(len(cal))]),
                              subset_size=len(cal))
    xml, bin_ = int8_paths(model_file)
    ov.save_model(quantized, str(xml), compress_to_fp16=False)
    entry = {
        "xml": xml.name, "bin": bin_.name, "sha256_xml": sha256_of(xml), "sha256_bin": sha256_of(bin_),
        "file_bytes": xml.stat().st_size + bin_.stat().st_size,
        "nncf_version": nncf.__version__, "openvino_version": ov.__version__,
        "calibration": {**(calibration_info or {}), "tiles": int(len(cal)), "tile": int(cal.shape[-1])},
        "diff_vs_fp32": _fp32_vs_int8(onnx_file, xml, np.ascontiguousarray(check, np.float32)),
        "command": COMMAND,
    }
    card = read_card(model_file)
    card.setdefault("export", {})["openvino_int8"] = entry
    card_path(model_file).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    log.info("quantised %s -> %s (mean |diff| vs fp32 %.2g)", model_file.name, xml.name,
             entry["diff_vs_fp32"]["mean_abs"])
    return entry


def training_images(card: dict, data_root: str | Path) -> tuple[list[np.ndarray], list[str]]:
    """The card's training scans (``data.train_scans`` from ``data.inputs`` under ``data_root``), normalised."""
    import cv2

    from segmentation.tiling import normalize_scan

    folder = Path(data_root) / card["data"]["inputs"]
    names = [str(s) for s in card["data"].get("train_scans", [])]
    if not names:
        raise ValueError("the model card lists no training scans (data.train_scans)")
    images, used = [], []
    for name in names:
        hits = sorted(folder.glob(f"{name}.*"))
        if not hits:
            raise FileNotFoundError(f"training scan {name} not found in {folder}")
        img = cv2.imread(str(hits[0]), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise ValueError(f"cannot read {hits[0]}")
        images.append(normalize_scan(img))
        used.append(name)
    return images, used


def quantize_from_training_scans(model_file: str | Path, data_root: str | Path, *, per_image: int = 4,
                                 tile: int = 256, seed: int = 0) -> dict:
    """:func:`quantize_and_record` with calibration tiles (seed ``seed``) and check tiles (``seed + 1``)
    drawn from the card's training scans."""
    from data.model_cards import read_card

    card = read_card(Path(model_file))
    images, names = training_images(card, data_root)
    cal = calibration_tiles(images, per_image=per_image, tile=tile, seed=seed)
    check = calibration_tiles(images, per_image=1, tile=tile, seed=seed + 1)
    info = {"scans": names, "source": card["data"]["inputs"], "per_scan": per_image, "seed": seed,
            "check_seed": seed + 1}
    return quantize_and_record(model_file, cal, check, calibration_info=info)


def main(argv: list[str] | None = None) -> int:
    """Command line: quantise the shipped models (or given ``.keras`` files) and update their cards."""
    from segmentation.models import KINDS, weights_path

    ap = argparse.ArgumentParser(prog="python -m segmentation.backends.quantize",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=["impurities", "grains"], help="impurities, grains or .keras paths")
    ap.add_argument("--data-root", default=os.environ.get("MLOGRAPHY_DATA", "../shared/datasets/mlography"),
                    help="the MLography data set (the card's training scans are read from it)")
    ap.add_argument("--per-scan", type=int, default=4, help="calibration tiles per training scan")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for m in args.models:
        kind, weights = (m, None) if m in KINDS else ("impurities", m)
        path = weights_path(kind, weights).resolve()
        entry = quantize_from_training_scans(path, args.data_root, per_image=args.per_scan, seed=args.seed)
        d = entry["diff_vs_fp32"]
        print(f"{path.name}: {entry['xml']} sha256 {entry['sha256_xml'][:12]}... mean |diff| vs fp32 "
              f"{d['mean_abs']:.2g} (max {d['max_abs']:.2g}) on {d['tiles']} check tiles")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
