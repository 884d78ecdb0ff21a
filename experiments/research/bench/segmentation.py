"""Benchmark ``bench_segmentation``: roofline and inference paths of both shipped U-Nets on one ~1330 x 900 scan.

One run measures, on this machine's CPU:

1. **Peak.** sgemm (``n x n`` matrix product, ``2 n^3`` FLOPs) through NumPy (its BLAS), TensorFlow
   (oneDNN) and OpenVINO, fp32 and bf16 (AVX512-BF16 where the CPU has it); best of ``repeats``.
2. **Work.** FLOPs of one U-Net forward per tile, counted from the Keras layers
   (:func:`segmentation.unet.forward_flops`), and the tiles a scan needs
   (:func:`segmentation.tiling.tile_count`).
3. **Paths.** For every inference path in ``paths`` that is installed (``keras-fp32`` = today's
   default, first; then the ONNX export on ONNX Runtime / OpenVINO fp32 / bf16): the whole public
   predict function (normalisation, tiles, blending, threshold / post-processing; median of
   ``repeats`` after a warm-up) and the forward pass alone (the scan's tiles in batches, random
   pixels), whose FLOPs / time is the achieved GFLOP/s and its share of the peak of the same
   precision.
4. **Prior art.** 128-px tiles at stride 16, one Keras ``predict_on_batch`` per tile (cheaper than
   the prior art's ``model.predict``, so the projection favours it), timed on ``sample_tiles``
   tiles and projected to the tiles the scan needs.
5. **Tiling.** With the fastest path: seconds and seam error of each ``(tile, overlap)`` in
   ``tilings`` against one tile covering the whole scan (no seams): largest and mean
   |probability difference| and the fraction of pixels whose mask (card threshold) differs, over the
   whole scan and without a ``seam_border`` band along its edges (where the reference tile sees a wide
   reflection of the scan instead of the tiles' narrow one: not a seam).

Writes ``bench_segmentation.json`` and ``bench_segmentation.md`` into the run folder.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from experiments._markdown import markdown_table
from experiments.config import SAMPLES_DIR, dataclass_from
from .config import SegmentationBenchConfig, split_path

__all__ = ["SegmentationBenchConfig", "prior_art_tiles", "run", "sgemm_peaks"]

log = logging.getLogger(__name__)


def prior_art_tiles(shape: tuple[int, int], *, tile: int = 128, stride: int = 16) -> int:
    """Number of ``tile`` x ``tile`` windows at ``stride`` that the prior art predicts for a scan."""
    m, n = shape
    return ((max(m, tile) - tile) // stride + 1) * ((max(n, tile) - tile) // stride + 1)


def _median_time(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def _best_time(fn, repeats: int) -> float:
    fn()
    return min(_median_time(fn, repeats)[1])


def sgemm_peaks(*, n: int = 2048, repeats: int = 3) -> dict:
    """GFLOP/s of an ``n x n`` matrix product: NumPy fp32, TensorFlow fp32 and bf16 (best of ``repeats``).

    A path that cannot run here is given as None.
    """
    if n < 16 or repeats < 1:
        raise ValueError(f"n must be >= 16 and repeats >= 1, got {n}, {repeats}")
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    flops = 2.0 * n**3
    out = {"n": n, "numpy_fp32": flops / _best_time(lambda: a @ b, repeats) / 1e9}
    try:
        import tensorflow as tf

        for name, dt in (("tf_fp32", tf.float32), ("tf_bf16", tf.bfloat16)):
            ta, tb = tf.constant(a, dtype=dt), tf.constant(b, dtype=dt)
            out[name] = flops / _best_time(lambda: tf.linalg.matmul(ta, tb).numpy(), repeats) / 1e9
    except Exception as exc:  # noqa: BLE001 - a missing kernel is a result, not an error
        log.warning("TensorFlow matmul peak not measured: %s", exc)
        out.setdefault("tf_fp32", None)
        out.setdefault("tf_bf16", None)
    try:  # the engine of the fast paths: one MatMul compiled by OpenVINO
        import openvino as ov
        from onnx import TensorProto, helper, numpy_helper

        g = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "sgemm",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])],
                              initializer=[numpy_helper.from_array(b, "b")])
        proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        proto.ir_version = 8
        core = ov.Core()
        for prec in ("fp32", "bf16"):
            cm = core.compile_model(core.read_model(proto.SerializeToString(), b""), "CPU",
                                    {"INFERENCE_PRECISION_HINT": "f32" if prec == "fp32" else "bf16"})
            req = cm.create_infer_request()
            out[f"openvino_{prec}"] = flops / _best_time(lambda: req.infer({0: a}), repeats) / 1e9
    except Exception as exc:  # noqa: BLE001 - not installed, or no bf16
        log.info("OpenVINO matmul peak not measured: %s", exc)
        out.setdefault("openvino_fp32", None)
        out.setdefault("openvino_bf16", None)
    return out


def run(cfg: DictConfig, output_dir: Path) -> int:
    """Hydra task ``bench_segmentation``."""
    bcfg = dataclass_from(SegmentationBenchConfig, cfg.get("bench"), where="bench")
    if bcfg.threads is not None:
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(bcfg.threads)
        os.environ["OMP_NUM_THREADS"] = str(bcfg.threads)
    from data import read_scan
    from segmentation import backends
    from segmentation.models import (
        load_model,
        predict_grain_boundaries,
        predict_impurity_mask,
        predict_probabilities,
        tile_multiple,
        weights_path,
    )
    from segmentation.tiling import auto_tile, normalize_scan, tile_count
    from segmentation.unet import forward_flops

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = Path(bcfg.scan)
    if not path.is_absolute():
        path = SAMPLES_DIR / path
    pixels = read_scan(path).pixels
    mpx = pixels.size / 1e6
    x = normalize_scan(pixels)
    kinds = ("impurities", "grains")
    predict = {"impurities": predict_impurity_mask, "grains": predict_grain_boundaries}

    peaks = sgemm_peaks(n=bcfg.gemm_n, repeats=bcfg.repeats)
    peak_fp32 = max(v for v in (peaks["numpy_fp32"], peaks["tf_fp32"], peaks["openvino_fp32"]) if v)
    peak_bf16 = max([v for v in (peaks["tf_bf16"], peaks["openvino_bf16"]) if v] or [peak_fp32])
    log.info("sgemm peak: %s", {k: round(v, 1) if isinstance(v, float) else v for k, v in peaks.items()})

    # the tile the predict functions use for each model (tile='auto': planned for this scan's shape,
    # on the model's grid: segmentation.tiling.auto_tile, the call predict_tiled makes)
    plans, n_tiles = {}, {}
    work = {}
    for kind in kinds:
        model, card = load_model(kind)
        plan = auto_tile(pixels.shape, overlap=bcfg.overlap, multiple=tile_multiple(card)) if bcfg.tile == "auto" \
            else int(bcfg.tile)
        plans[kind], n_tiles[kind] = plan, tile_count(pixels.shape, tile=plan, overlap=bcfg.overlap)
        f = forward_flops(model, plan, plan)
        work[kind] = {"parameters": int(card["parameter_count"]), "gflop_per_tile": f["total"] / 1e9,
                      "conv_share": f["conv"] / f["total"], "flop_per_px": f["per_pixel"],
                      "tile": plan, "tiles_per_scan": n_tiles[kind], "gflop_per_scan": n_tiles[kind] * f["total"] / 1e9}

    installed = set(backends.available_backends())
    paths, skipped = [], []
    for p in bcfg.paths:
        b, prec, streams = split_path(p)
        if b not in installed:
            skipped.append(f"{p} ({b} not installed)")
        elif prec == "bf16" and not backends.cpu_has_bf16():
            skipped.append(f"{p} (no bf16 units on this CPU)")
        elif prec == "int8" and not backends.cpu_has_vnni():
            skipped.append(f"{p} (no int8 dot-product units on this CPU)")
        else:
            paths.append((p, b, prec, streams))
    rows = []
    rng = np.random.default_rng(0)
    batches = {p: rng.random((bcfg.batch_size, p, p, 1), dtype=np.float32) for p in sorted(set(plans.values()))}
    opts = {"tile": bcfg.tile, "overlap": bcfg.overlap, "batch_size": bcfg.batch_size}
    for name, b, prec, streams in paths:
        for kind in kinds:
            model, card = load_model(kind)
            fn_kw = {"backend": b, "precision": prec}
            if streams is not None:
                fn_kw["streams"] = streams
            try:
                fn, ran = backends.make_predict_fn(model, weights_path(kind).resolve(), card, **fn_kw)
            except Exception as exc:  # noqa: BLE001 - e.g. no export in the card: reported, not fatal
                skipped.append(f"{name} {kind} ({type(exc).__name__}: {exc})")
                continue

            def forward(fn=fn, batch=batches[plans[kind]], split=divmod(n_tiles[kind], bcfg.batch_size)):
                for _ in range(split[0]):
                    fn(batch)
                if split[1]:
                    fn(batch[:split[1]])

            o = dict(opts)
            if name == "keras-fp32" and bcfg.today_tile is not None:
                o["tile"] = int(bcfg.today_tile)  # the baseline: Keras fp32 as the issue filed it
            whole = lambda kind=kind, kw=fn_kw, o=o: predict[kind](pixels, **o, **kw)  # noqa: E731
            whole()  # warm-up: loads, compiles
            med, times = _median_time(whole, bcfg.repeats)
            forward()
            fwd, _ = _median_time(forward, bcfg.repeats)
            gflops = work[kind]["gflop_per_scan"] / fwd
            # int8 against the bf16 peak (no int8 GEMM peak is measured; VNNI's own is higher)
            peak = peak_bf16 if prec in ("bf16", "int8") else peak_fp32
            ran = name if streams is not None else ran
            rows.append({"path": ran, "model": kind, "tile": o["tile"], "seconds": med, "seconds_all": times,
                         "forward_s": fwd, "gflop_per_s": gflops, "peak_share": gflops / peak,
                         "mpx_per_s": mpx / med})
            log.info("%s %s: %.3f s per scan, forward %.3f s (%.0f GFLOP/s, %.0f%% of peak)",
                     ran, kind, med, fwd, gflops, 100 * gflops / peak)
    both = {}
    for r in rows:
        both.setdefault(r["path"], {})[r["model"]] = r["seconds"]
    both = {p: sum(v.values()) for p, v in both.items() if len(v) == len(kinds)}
    today = both.get("keras-fp32")
    fastest = min(both, key=both.get) if both else None

    # prior art: one 128-px tile per Keras call, stride 16
    n_prior = prior_art_tiles(pixels.shape, tile=bcfg.prior_tile, stride=bcfg.prior_stride)
    prior = {}
    for kind in kinds:
        model, _ = load_model(kind)
        r = rng.integers(0, pixels.shape[0] - bcfg.prior_tile + 1, bcfg.sample_tiles)
        c = rng.integers(0, pixels.shape[1] - bcfg.prior_tile + 1, bcfg.sample_tiles)
        tiles = [x[i : i + bcfg.prior_tile, j : j + bcfg.prior_tile][None, ..., None] for i, j in zip(r, c)]
        model.predict_on_batch(tiles[0])
        t0 = time.perf_counter()
        for t in tiles:
            model.predict_on_batch(t)
        tps = bcfg.sample_tiles / (time.perf_counter() - t0)
        prior[kind] = {"tiles_per_s": tps, "tiles_per_scan": n_prior, "projected_s": n_prior / tps}
    prior_both = sum(p["projected_s"] for p in prior.values())

    # tiling: seconds and seam error of each (tile, overlap) with the fastest path
    tiling_rows = []
    if fastest is not None and bcfg.tilings:
        b, prec, streams = split_path(fastest)
        kw = {"backend": b, "precision": prec, "batch_size": bcfg.batch_size}
        if streams is not None:
            kw["streams"] = streams
        mult = 16
        side = max(x.shape) + 2 * (max(o for _, o in bcfg.tilings) // 2)
        ref_tile = -(-side // mult) * mult
        for kind in kinds:
            _, card = load_model(kind)
            thr = float(card["threshold"])
            ref, _ = predict_probabilities(pixels, kind, tile=ref_tile, overlap=0, **kw)
            for tile, overlap in bcfg.tilings:
                run_ = lambda t=tile, o=overlap, k=kind: predict_probabilities(pixels, k, tile=t, overlap=o, **kw)  # noqa: E731
                prob, _ = run_()
                med, _ = _median_time(run_, bcfg.repeats)
                d = np.abs(prob - ref)
                e = bcfg.seam_border  # the scan's own border sees other context in the reference: left out
                inner = (slice(e, -e or None), slice(e, -e or None))
                tiling_rows.append({"path": fastest, "model": kind, "tile": tile, "overlap": overlap,
                                    "tiles": tile_count(pixels.shape, tile=tile, overlap=overlap),
                                    "prob_seconds": med, "max_abs_dprob": float(d.max()),
                                    "mean_abs_dprob": float(d.mean()),
                                    "mask_diff_fraction": float(np.mean((prob >= thr) != (ref >= thr))),
                                    "inner_max_abs_dprob": float(d[inner].max()),
                                    "inner_mean_abs_dprob": float(d[inner].mean()),
                                    "inner_mask_diff_fraction": float(np.mean((prob[inner] >= thr)
                                                                              != (ref[inner] >= thr)))})
    import keras

    out = {
        "config": asdict(bcfg),
        "scan": str(path),
        "shape": list(pixels.shape),
        "megapixels": mpx,
        "machine": {
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "keras": keras.__version__,
            "backend": keras.backend.backend(), "cpu_bf16": backends.cpu_has_bf16(),
            "tf_intra_op_threads_env": os.environ.get("TF_NUM_INTRAOP_THREADS"),
            "load_average": list(os.getloadavg()),
        },
        "sgemm_gflop_per_s": peaks,
        "work": work,
        "results": rows,
        "skipped": skipped,
        "both_models_s": both,
        "today_path": "keras-fp32",
        "fastest_path": fastest,
        "speedup_vs_today": (today / both[fastest]) if today and fastest else None,
        "prior_art": prior,
        "prior_art_both_s": prior_both,
        "speedup_vs_prior_art": prior_both / both[fastest] if fastest else None,
        "tilings": tiling_rows,
        "target_s": bcfg.target_s,
        "meets_target": bool(fastest) and both[fastest] < bcfg.target_s,
    }
    (output_dir / "bench_segmentation.json").write_text(json.dumps(out, indent=2) + "\n")
    pk = {k: (f"{v:.0f}" if isinstance(v, float) else v) for k, v in peaks.items()}
    md = [
        "# Segmentation speed (CPU)",
        "",
        (f"Scan {path.name}, {pixels.shape[0]} x {pixels.shape[1]} px ({mpx:.2f} Mpx); {os.cpu_count()} cores "
         f"(load average {out['machine']['load_average'][0]:.2f}); tiles (tile={bcfg.tile}) "
         f"{', '.join(f'{k} {plans[k]} px ({n_tiles[k]} per scan)' for k in plans)}, overlap "
         f"{bcfg.overlap}, batch {bcfg.batch_size}; median of {bcfg.repeats}."),
        "",
        (f"sgemm peak (n = {peaks['n']}, GFLOP/s, best of {bcfg.repeats}): NumPy fp32 {pk['numpy_fp32']}, "
         f"TensorFlow fp32 {pk['tf_fp32']}, TensorFlow bf16 {pk['tf_bf16']}, OpenVINO fp32 "
         f"{pk['openvino_fp32']}, OpenVINO bf16 {pk['openvino_bf16']}; peak_share below is against the "
         f"best of the same precision ({peak_fp32:.0f} fp32, {peak_bf16:.0f} bf16)."),
        "",
        markdown_table([{"model": k, **v} for k, v in work.items()]),
        "",
        markdown_table([{k: r[k] for k in ("path", "model", "tile", "seconds", "forward_s", "gflop_per_s",
                                            "peak_share", "mpx_per_s")} for r in rows]),
        "",
        "Both models per scan: " + ", ".join(f"{p} **{s:.3f} s**" for p, s in both.items())
        + (f"; fastest {fastest}: {out['speedup_vs_today']:.2f}x today's keras-fp32" if today and fastest else ""),
        "",
        (f"Prior art ({bcfg.prior_tile}-px tiles at stride {bcfg.prior_stride}, one Keras call per tile, "
         f"{bcfg.sample_tiles} timed, projected to {n_prior} tiles): "
         + ", ".join(f"{k} {p['tiles_per_s']:.0f} tiles/s -> {p['projected_s']:.0f} s" for k, p in prior.items())
         + (f"; both {prior_both:.0f} s = **{out['speedup_vs_prior_art']:.0f}x** the fastest path" if fastest else "")),
        "",
    ]
    if skipped:
        md += ["Skipped: " + "; ".join(skipped), ""]
    if tiling_rows:
        md += [f"Tiling with {fastest}, against one {ref_tile}-px tile over the whole scan (inner_*: without "
               f"a {bcfg.seam_border}-px band along the scan's edges):", "",
               markdown_table(tiling_rows), ""]
    (output_dir / "bench_segmentation.md").write_text("\n".join(md))
    log.info("both models: %s; prior art %.0f s", both, prior_both)
    return 0
