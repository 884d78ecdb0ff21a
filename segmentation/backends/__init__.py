"""Inference backends of the shipped U-Nets: the Keras model, or its ONNX export on OpenVINO / ONNX Runtime.

The Keras model (``.keras`` beside its card) is the source of truth.  Its export
(``.onnx`` beside it, written by :func:`segmentation.backends.onnx_export.export_onnx`
from the Keras layers, batch norm folded) is recorded in the card under
``export.onnx`` (sha256, bytes, opset, largest probability difference to Keras) and
verified on load like the weights: a file that does not match is refused.

Backends (``backend=``):

- ``'openvino'`` (extra ``[fast]``): the export compiled by OpenVINO for the CPU, in
  ``precision`` ``'int8'`` (the post-training quantised model ``x.int8.xml`` / ``.bin`` written by
  :mod:`segmentation.backends.quantize`, recorded in the card under ``export.openvino_int8`` and
  verified on load; chosen by ``'auto'`` where it exists and the CPU has int8 dot-product units,
  VNNI or AMX), ``'bf16'`` (AVX512-BF16 / AMX units; chosen by ``'auto'`` next) or ``'fp32'``;
- ``'onnxruntime'`` (extra ``[fast]``): the export on ONNX Runtime's CPU provider, fp32;
- ``'keras'``: ``model.predict_on_batch`` (TensorFlow / oneDNN), fp32; always there.
- ``'auto'`` (default): the first of openvino, onnxruntime, keras that is installed and has
  its export; what was skipped and why is logged, and :func:`last_backends` says what ran.

Threads: ``threads=None`` takes ``TF_NUM_INTRAOP_THREADS`` (then ``OMP_NUM_THREADS``) when set,
as a Ray worker of ``runtime.worker_threads`` sets it, else all cores.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "BackendUnavailable",
    "available_backends",
    "cpu_has_bf16",
    "default_threads",
    "cpu_has_vnni",
    "export_entry",
    "export_path",
    "int8_entry",
    "int8_paths",
    "last_backends",
    "make_predict_fn",
    "verify_export",
    "verify_int8",
]

log = logging.getLogger(__name__)

BACKENDS = ("auto", "openvino", "onnxruntime", "keras")
PRECISIONS = ("auto", "fp32", "bf16", "int8")
_AUTO_ORDER = ("openvino", "onnxruntime", "keras")
_PACKAGE = {"openvino": "openvino", "onnxruntime": "onnxruntime", "keras": "keras"}
_LAST: dict[str, str] = {}


class BackendUnavailable(RuntimeError):
    """A backend cannot run here (package not installed, export missing); ``auto`` skips it."""


def export_path(model_file: str | Path) -> Path:
    """The ONNX export of ``x.keras`` is ``x.onnx`` beside it."""
    return Path(model_file).with_suffix(".onnx")


def export_entry(card: dict) -> dict | None:
    """The card's ``export.onnx`` entry, or None."""
    return (card.get("export") or {}).get("onnx")


def verify_export(model_file: str | Path, card: dict) -> Path:
    """The export of ``model_file``, checked against the card's ``export.onnx.sha256``.

    Raises
    ------
    BackendUnavailable
        The card records no export, or the file is absent (the backend is skipped).
    data.model_cards.ModelCardError
        The file does not match the card (a replaced or corrupt export is refused).
    """
    entry = export_entry(card)
    path = export_path(model_file)
    if not entry or not entry.get("sha256"):
        raise BackendUnavailable(f"the model card of {Path(model_file).name} records no ONNX export; "
                                 "write one with python -m segmentation.backends.export")
    _check_file(path, entry["sha256"], "ONNX export",
                "re-export it with python -m segmentation.backends.export")
    return path


def _check_file(path: Path, sha256: str, what: str, remedy: str) -> None:
    """``path`` exists (else :class:`BackendUnavailable`) and has the card's ``sha256`` (else
    :class:`data.model_cards.ModelCardError`: a replaced or corrupt file is refused, not skipped)."""
    from data.model_cards import ModelCardError, sha256_of

    if not path.is_file():
        raise BackendUnavailable(f"{what} {path} not found")
    got = sha256_of(path)
    if got != sha256:
        raise ModelCardError(f"{what} {path} does not match its model card (sha256 {got[:12]}... != "
                             f"{str(sha256)[:12]}...): {remedy}")


def int8_paths(model_file: str | Path) -> tuple[Path, Path]:
    """The int8 model of ``x.keras`` is ``x.int8.xml`` (graph) and ``x.int8.bin`` (weights) beside it."""
    p = Path(model_file)
    return p.with_suffix(".int8.xml"), p.with_suffix(".int8.bin")


def int8_entry(card: dict) -> dict | None:
    """The card's ``export.openvino_int8`` entry, or None."""
    return (card.get("export") or {}).get("openvino_int8")


def verify_int8(model_file: str | Path, card: dict) -> Path:
    """The int8 model of ``model_file`` (its ``.xml``), both files checked against the card.

    Raises
    ------
    BackendUnavailable
        The card records no int8 model, or a file is absent (``auto`` takes the next precision).
    data.model_cards.ModelCardError
        A file does not match the card (refused).
    """
    entry = int8_entry(card)
    xml, bin_ = int8_paths(model_file)
    if not entry or not entry.get("sha256_xml") or not entry.get("sha256_bin"):
        raise BackendUnavailable(f"the model card of {Path(model_file).name} records no int8 model; "
                                 "write one with python -m segmentation.backends.quantize")
    for f, key in ((xml, "sha256_xml"), (bin_, "sha256_bin")):
        _check_file(f, entry[key], "int8 model file", "re-quantise with python -m segmentation.backends.quantize")
    return xml


def _cpu_flags() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_vnni() -> bool:
    """True where the CPU has int8 dot-product units (AVX512-VNNI, AVX-VNNI or AMX-INT8; Linux /proc/cpuinfo).

    Without them OpenVINO's int8 kernels are no faster than fp32, so ``precision='auto'`` skips int8.
    """
    flags = _cpu_flags()
    return any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def cpu_has_bf16() -> bool:
    """True where the CPU has bf16 matrix units (AVX512-BF16 or AMX-BF16; Linux /proc/cpuinfo)."""
    flags = _cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_threads() -> int | None:
    """Intra-op threads from ``TF_NUM_INTRAOP_THREADS`` / ``OMP_NUM_THREADS``; None = all cores."""
    for var in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        v = os.environ.get(var, "").strip()
        if v.isdigit() and int(v) > 0:
            return int(v)
    return None


def available_backends() -> list[str]:
    """Backends whose package is importable here, in the order ``auto`` tries them."""
    return [b for b in _AUTO_ORDER if importlib.util.find_spec(_PACKAGE[b]) is not None]


def last_backends() -> dict[str, str]:
    """``{model file name: backend that ran, e.g. 'openvino-bf16'}`` of this process (a copy)."""
    return dict(_LAST)


def _check(backend: str, precision: str, threads: int | None, streams: int | None = None) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown segmentation backend {backend!r}; expected one of {BACKENDS}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be None or an integer >= 1, got {threads!r}")
    if streams is not None and (not isinstance(streams, int) or streams < 1):
        raise ValueError(f"streams must be None or an integer >= 1, got {streams!r}")


def _keras_fn(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    def fn(batch: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_on_batch(batch))

    return fn


def _nchw(batch: np.ndarray) -> np.ndarray:
    b = np.ascontiguousarray(batch, dtype=np.float32)
    if b.ndim != 4 or b.shape[-1] != 1:
        raise ValueError(f"expected a batch (B, t, t, 1), got shape {b.shape}")
    return b.reshape(b.shape[0], 1, b.shape[1], b.shape[2])  # one channel: same memory


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _nhwc(out: np.ndarray) -> np.ndarray:
    """``(B, 1, H, W)`` -> ``(B, H, W)``; ``(B, C, H, W)`` class probabilities -> ``(B, H, W, C)``."""
    if out.shape[1] == 1:
        return out.reshape(out.shape[0], out.shape[2], out.shape[3])
    return np.ascontiguousarray(out.transpose(0, 2, 3, 1))


@functools.lru_cache(maxsize=16)
def _openvino_fn(path: str, precision: str, threads: int | None,
                 streams: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """OpenVINO on the CPU: one request on all the threads, or ``streams`` independent streams that
    share each tile batch (1 thread each when ``streams`` equals the threads).

    On the quiet 2-core machine one request was 8 % faster (``+exp=bench_segmentation``, paths
    ``openvino-bf16-s1`` / ``-s2``); with other work on the cores two streams were 10-25 % faster (a
    stalled thread holds up only its own stream).  Each tile is computed the same way either way.
    """
    if importlib.util.find_spec("openvino") is None:
        raise BackendUnavailable("openvino is not installed (pip install 'quantmet[fast]')")
    try:
        import openvino as ov
    except ImportError as exc:  # a broken install is skipped like a missing one
        raise BackendUnavailable(f"openvino cannot be imported: {exc}") from exc

    n = int(threads) if threads is not None else _cpu_count()
    streams = 1 if streams is None else max(1, min(int(streams), n))
    # no CPU pinning: OpenVINO pins a process's inference threads from core 0 up, so two Ray
    # workers of one thread each were both pinned to core 0 and took turns (the raw-scan archive
    # scaled 1.44x on 2 workers); the OS scheduler spreads them
    # an int8 model's quantised convolutions run in int8 whatever the hint; the hint sets the rest
    hint = "bf16" if precision == "bf16" or (precision == "int8" and cpu_has_bf16()) else "f32"
    config = {"INFERENCE_PRECISION_HINT": hint, "ENABLE_CPU_PINNING": False}
    if streams > 1:
        config.update({"NUM_STREAMS": streams, "INFERENCE_NUM_THREADS": n})
    else:
        config.update({"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": n} if threads is not None
                      else {"PERFORMANCE_HINT": "LATENCY"})
    compiled = ov.Core().compile_model(path, "CPU", config)
    requests = [compiled.create_infer_request() for _ in range(streams)]

    def fn(batch: np.ndarray) -> np.ndarray:
        x = _nchw(batch)
        b = x.shape[0]
        k = min(streams, b)
        if k == 1:
            return _nhwc(np.array(requests[0].infer({0: x})[0]))
        bounds = np.linspace(0, b, k + 1).round().astype(int)
        for req, lo, hi in zip(requests, bounds[:-1], bounds[1:]):
            req.start_async({0: x[lo:hi]})
        parts = []
        for req in requests[:k]:
            req.wait()
            parts.append(np.array(req.get_output_tensor(0).data))
        return _nhwc(np.concatenate(parts))

    fn.compiled = compiled  # its properties, for the tests
    return fn


@functools.lru_cache(maxsize=16)
def _onnxruntime_fn(path: str, threads: int | None) -> Callable[[np.ndarray], np.ndarray]:
    if importlib.util.find_spec("onnxruntime") is None:
        raise BackendUnavailable("onnxruntime is not installed (pip install 'quantmet[fast]')")
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailable(f"onnxruntime cannot be imported: {exc}") from exc

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])

    def fn(batch: np.ndarray) -> np.ndarray:
        x = _nchw(batch)
        return _nhwc(session.run(["prob"], {"image": x})[0])

    return fn


def make_predict_fn(
    model: Any,
    model_file: str | Path,
    card: dict,
    *,
    backend: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    streams: int | None = None,
) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """A tiling ``predict_fn`` (float32 ``(B, t, t, 1)`` -> probabilities) on the chosen backend.

    Parameters
    ----------
    model : keras.Model
        The loaded Keras model (the ``'keras'`` backend, and the fallback).
    model_file : path
        Its ``.keras`` file (the export lies beside it).
    card : dict
        Its model card (the export's checksum).
    backend : {'auto', 'openvino', 'onnxruntime', 'keras'}
        ``'auto'`` takes the first that runs here; a named one that cannot run raises.
    precision : {'auto', 'fp32', 'bf16', 'int8'}
        ``'auto'``: on OpenVINO int8 where the card records a quantised model and the CPU has VNNI /
        AMX units, then bf16 where it has bf16 units, then fp32; fp32 on the others.  bf16 and int8
        are OpenVINO's only; the other backends refuse them.
    threads : int, optional
        Intra-op threads; None = :func:`default_threads`.
    streams : int, optional
        OpenVINO only: independent inference streams that share each tile batch (at most one per
        thread); None or 1 = one request on all the threads.  The answers are the same.

    Returns
    -------
    predict_fn : callable
    name : str
        What runs, e.g. ``'openvino-bf16'``, ``'onnxruntime-fp32'``, ``'keras-fp32'``;
        also recorded for :func:`last_backends`.

    Raises
    ------
    ValueError
        Unknown backend or precision, bf16 asked of a backend without it.
    BackendUnavailable
        A named backend that cannot run here.
    data.model_cards.ModelCardError
        An export that does not match its card.
    """
    _check(backend, precision, threads, streams)
    threads = default_threads() if threads is None else threads
    order = _AUTO_ORDER if backend == "auto" else (backend,)
    last_exc: BackendUnavailable | None = None
    for b, prec in _candidates(order, precision):
        if prec in ("bf16", "int8") and b != "openvino":
            if backend != "auto":
                raise ValueError(f"backend {b!r} runs fp32 only; use precision='fp32' or backend='openvino'")
            continue
        try:
            if b == "keras":
                fn = _keras_fn(model)
            elif prec == "int8":
                fn = _openvino_fn(str(verify_int8(model_file, card)), prec, threads, streams)
            else:
                path = str(verify_export(model_file, card))
                fn = (_openvino_fn(path, prec, threads, streams) if b == "openvino"
                      else _onnxruntime_fn(path, threads))
        except BackendUnavailable as exc:
            if backend != "auto" and precision != "auto":
                raise
            log.info("segmentation backend %s-%s skipped: %s", b, prec, exc)
            last_exc = exc
            continue
        name = f"{b}-{prec}"
        if _LAST.get(Path(model_file).name) != name:
            log.info("%s runs on %s (threads %s)", Path(model_file).name, name, threads or "all")
        _LAST[Path(model_file).name] = name
        return fn, name
    if backend != "auto" and last_exc is not None:  # a named backend with none of its precisions
        raise last_exc
    raise BackendUnavailable(f"no segmentation backend can run (tried {order}, precision {precision})")


def _candidates(order: tuple[str, ...], precision: str) -> list[tuple[str, str]]:
    """(backend, precision) pairs in the order they are tried.

    ``precision='auto'`` tries OpenVINO in int8 (where the CPU has VNNI / AMX), then bf16 (where it has
    bf16 units), then fp32; the other backends in fp32.
    """
    out = []
    for b in order:
        if precision != "auto":
            out.append((b, precision))
        elif b == "openvino":
            out += [(b, p) for p, ok in (("int8", cpu_has_vnni()), ("bf16", cpu_has_bf16()), ("fp32", True)) if ok]
        else:
            out.append((b, "fp32"))
    return out
