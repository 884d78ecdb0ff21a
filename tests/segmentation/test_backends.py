"""Inference backends: the ONNX export written from the Keras layers, its card checksum, fallback, FLOPs."""

import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from data.model_cards import ModelCardError, sha256_of
from segmentation import backends
from segmentation.backends import BackendUnavailable, make_predict_fn, verify_export
from segmentation.backends.export import export_and_record
from segmentation.backends.onnx_export import keras_to_onnx
from segmentation.models import load_model, predict_probabilities, weights_path
from segmentation.tiling import predict_tiled, tile_count
from segmentation.unet import UNetConfig, build_unet, forward_flops



def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


HAVE_ONNX = _importable("onnx")
HAVE_ORT = _importable("onnxruntime")
HAVE_OV = _importable("openvino")
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason="onnx not installed (extra [fast])")
needs_runtime = pytest.mark.skipif(not (HAVE_ONNX and (HAVE_ORT or HAVE_OV)),
                                   reason="onnx with neither onnxruntime nor openvino")


def _model(seed=0, depth=2, width=4, batch_norm=True):
    """A small U-Net whose batch-norm statistics are not the identity (so folding them is tested)."""
    keras.utils.set_random_seed(seed)
    m = build_unet(UNetConfig(depth=depth, base_width=width, batch_norm=batch_norm))
    rng = np.random.default_rng(seed)
    for layer in m.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.2, n).astype("float32"))
            layer.moving_mean.assign(rng.normal(0, 0.3, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype("float32"))
    return m


def _saved(tmp_path: Path, m) -> Path:
    path = tmp_path / "m.keras"
    m.save(path)
    path.with_suffix(".json").write_text(json.dumps({"sha256": sha256_of(path), "threshold": 0.5, "input": {}}))
    return path


def _run_onnx(proto_bytes: bytes, x: np.ndarray) -> np.ndarray:
    if HAVE_ORT:
        import onnxruntime as ort

        s = ort.InferenceSession(proto_bytes, providers=["CPUExecutionProvider"])
        return s.run(["prob"], {"image": x.reshape(x.shape[0], 1, *x.shape[1:3])})[0][:, 0]
    import openvino as ov

    cm = ov.Core().compile_model(ov.Core().read_model(proto_bytes, b""), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return cm.create_infer_request().infer({0: x.reshape(x.shape[0], 1, *x.shape[1:3])})[0][:, 0]


@needs_runtime
@pytest.mark.parametrize("batch_norm", [True, False])
def test_export_matches_keras(batch_norm):
    m = _model(batch_norm=batch_norm)
    proto = keras_to_onnx(m)
    ops = {n.op_type for n in proto.graph.node}
    assert "BatchNormalization" not in ops and {"Conv", "ConvTranspose", "MaxPool", "Concat"} <= ops
    x = np.random.default_rng(1).random((3, 32, 48, 1), dtype=np.float32)  # not square: layout is checked
    ref = np.asarray(m.predict_on_batch(x))[..., 0]
    got = _run_onnx(proto.SerializeToString(), x)
    assert got.shape == ref.shape
    assert np.max(np.abs(got - ref)) < 1e-5


@needs_runtime
def test_multiclass_export_matches_keras_through_the_backends(tmp_path):
    """A softmax phase U-Net: the export's (B, C, H, W) comes back as Keras' (B, H, W, C)."""
    keras.utils.set_random_seed(3)
    m = build_unet(UNetConfig(depth=2, base_width=4), classes=3)
    proto = keras_to_onnx(m)
    assert "Softmax" in {n.op_type for n in proto.graph.node}
    path = _saved(tmp_path, m)
    export_and_record(m, path, tile=32)
    card = json.loads(path.with_suffix(".json").read_text())
    x = np.random.default_rng(5).random((3, 32, 48, 1), dtype=np.float32)
    ref = np.asarray(m.predict_on_batch(x))
    for b in ("openvino", "onnxruntime"):
        if not {"openvino": HAVE_OV, "onnxruntime": HAVE_ORT}[b]:
            continue
        fn, name = make_predict_fn(m, path, card, backend=b, precision="fp32")
        got = fn(x)
        assert got.shape == ref.shape == (3, 32, 48, 3), name
        assert np.max(np.abs(got - ref)) < 1e-5, name
        assert np.allclose(got.sum(axis=-1), 1.0, atol=1e-5)


@needs_onnx
def test_export_refuses_unknown_layers():
    inp = keras.Input((None, None, 1))
    m = keras.Model(inp, keras.layers.UpSampling2D()(inp))
    with pytest.raises(ValueError, match="not exported"):
        keras_to_onnx(m)


@needs_runtime
def test_export_card_checksum_and_fallback(tmp_path, caplog):
    m = _model()
    path = _saved(tmp_path, m)
    card = json.loads(path.with_suffix(".json").read_text())
    with caplog.at_level(logging.INFO, logger="segmentation.backends"):
        fn, name = make_predict_fn(m, path, card)  # no export yet: auto falls back to Keras, and says so
    assert name == "keras-fp32" and "records no ONNX export" in caplog.text
    assert backends.last_backends()["m.keras"] == "keras-fp32"
    with pytest.raises(BackendUnavailable):
        make_predict_fn(m, path, card, backend="onnxruntime" if HAVE_ORT else "openvino")

    entry = export_and_record(m, path, tile=32)
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["export"]["onnx"] == entry and entry["max_abs_diff_vs_keras"] < 1e-4
    assert verify_export(path, card) == path.with_suffix(".onnx")
    fn, name = make_predict_fn(m, path, card, precision="fp32")
    assert name in ("openvino-fp32", "onnxruntime-fp32")
    x = np.random.default_rng(2).random((2, 32, 32, 1), dtype=np.float32)
    assert np.max(np.abs(fn(x) - np.asarray(m.predict_on_batch(x))[..., 0])) < 1e-5

    onnx_file = path.with_suffix(".onnx")
    onnx_file.write_bytes(onnx_file.read_bytes()[:-8])  # a truncated export is refused, not skipped
    with pytest.raises(ModelCardError, match="does not match"):
        make_predict_fn(m, path, card)
    onnx_file.unlink()
    assert make_predict_fn(m, path, card)[1] == "keras-fp32"


def test_absent_packages_fall_back_to_keras(tmp_path, monkeypatch):
    """Simulates an install without the [fast] extra: auto runs Keras, a named backend says why not."""
    real = importlib.util.find_spec
    monkeypatch.setattr(backends.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("openvino", "onnxruntime") else real(name, *a))
    backends._openvino_fn.cache_clear()
    backends._onnxruntime_fn.cache_clear()
    m = _model()
    path = _saved(tmp_path, m)
    card = {"export": {"onnx": {"sha256": "0" * 64}}}
    path.with_suffix(".onnx").write_bytes(b"not used")
    card["export"]["onnx"]["sha256"] = sha256_of(path.with_suffix(".onnx"))
    assert backends.available_backends() == ["keras"]
    assert make_predict_fn(m, path, card)[1] == "keras-fp32"
    with pytest.raises(BackendUnavailable, match="not installed"):
        make_predict_fn(m, path, card, backend="openvino", precision="fp32")
    with pytest.raises(BackendUnavailable, match="not installed"):
        make_predict_fn(m, path, card, backend="onnxruntime")


@pytest.mark.parametrize("kwargs, match", [
    ({"backend": "tensorrt"}, "unknown segmentation backend"),
    ({"precision": "fp16"}, "unknown precision"),
    ({"threads": 0}, "threads"),
    ({"backend": "keras", "precision": "bf16"}, "fp32 only"),
])
def test_bad_options(tmp_path, kwargs, match):
    m = _model()
    with pytest.raises(ValueError, match=match):
        make_predict_fn(m, _saved(tmp_path, m), {}, **kwargs)


def test_threads_from_environment(monkeypatch):
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "1")
    assert backends.default_threads() == 1
    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert backends.default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert backends.default_threads() is None


@pytest.mark.parametrize("kind", ["impurities", "grains"])
def test_shipped_exports_match_their_cards_and_keras(kind):
    model, card = load_model(kind)
    path = weights_path(kind).resolve()
    assert verify_export(path, card).is_file()
    assert card["export"]["onnx"]["max_abs_diff_vs_keras"] < 1e-4
    rng = np.random.default_rng(3)
    scan = (rng.random((200, 300)) * 60 + 100).astype(np.uint8)
    ref, _ = predict_probabilities(scan, kind, backend="keras")
    for b, prec, tol in (("onnxruntime", "fp32", 1e-4), ("openvino", "fp32", 1e-4), ("openvino", "bf16", 0.1)):
        if not {"openvino": HAVE_OV, "onnxruntime": HAVE_ORT}[b] or (prec == "bf16" and not backends.cpu_has_bf16()):
            continue
        got, _ = predict_probabilities(scan, kind, backend=b, precision=prec)
        assert np.max(np.abs(got - ref)) < tol, (b, prec)
        if prec == "bf16":
            assert np.mean(np.abs(got - ref)) < 0.01


@pytest.mark.skipif(not HAVE_OV, reason="openvino not installed (extra [fast])")
@pytest.mark.parametrize("prec", ["fp32", "bf16"])
def test_openvino_streams_give_the_same_tiles(prec):
    """A tile batch split across 2 streams (1 thread each) is the one request's answer, tile for tile."""
    if prec == "bf16" and not backends.cpu_has_bf16():
        pytest.skip("no bf16 units on this CPU")
    model, card = load_model("impurities")
    path = weights_path("impurities").resolve()
    x = np.random.default_rng(4).random((5, 64, 64, 1), dtype=np.float32)
    one, _ = make_predict_fn(model, path, card, backend="openvino", precision=prec, threads=2, streams=1)
    two, _ = make_predict_fn(model, path, card, backend="openvino", precision=prec, threads=2, streams=2)
    a, b = one(x), two(x)
    assert b.shape == a.shape == (5, 64, 64)
    assert np.max(np.abs(a - b)) < (1e-5 if prec == "fp32" else 2e-2)
    assert np.array_equal(two(x[:1]), two(x[:1]))  # a batch smaller than the streams: one request
    with pytest.raises(ValueError, match="streams"):
        make_predict_fn(model, path, card, backend="openvino", streams=0)


@pytest.mark.skipif(not HAVE_OV, reason="openvino not installed (extra [fast])")
def test_openvino_leaves_the_thread_unpinned():
    """OpenVINO's default pins its inference threads from core 0 up (during each inference): two
    1-thread Ray workers then share core 0 while core 1 idles."""
    model, card = load_model("grains")
    for threads, streams in ((1, 1), (2, 2)):
        fn, _ = make_predict_fn(model, weights_path("grains").resolve(), card, backend="openvino",
                                precision="fp32", threads=threads, streams=streams)
        assert fn.compiled.get_property("ENABLE_CPU_PINNING") is False


def test_forward_flops_counts_convolutions_by_hand():
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(5, 3, padding="same", use_bias=False)(inp)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2DTranspose(2, 2, strides=2, use_bias=True)(x)
    m = keras.Model(inp, x)
    f = forward_flops(m, 16, 12)
    assert f["conv"] == 2 * 16 * 12 * 9 * 3 * 5 + 2 * 8 * 6 * 4 * 5 * 2 + 16 * 12 * 2
    assert f["elementwise"] == 8 * 6 * 5 * 3
    with pytest.raises(ValueError, match=">= 1"):
        forward_flops(m, 0, 12)


@pytest.mark.parametrize("shape, tile, overlap", [((874, 1330), 256, 32), ((100, 70), 64, 16), ((30, 30), 64, 8)])
def test_tile_count_is_what_predict_tiled_sends(shape, tile, overlap):
    seen = []

    def fn(b):
        seen.append(len(b))
        return b[..., 0]

    predict_tiled(np.zeros(shape, np.float32), fn, tile=tile, overlap=overlap, batch_size=5)
    assert sum(seen) == tile_count(shape, tile=tile, overlap=overlap)


HAVE_NNCF = importlib.util.find_spec("nncf") is not None
needs_int8 = pytest.mark.skipif(not (HAVE_OV and HAVE_ONNX and HAVE_NNCF),
                                reason="openvino, onnx and nncf needed (extra [fast])")


def test_calibration_tiles_are_crops_of_the_images():
    from segmentation.backends.quantize import calibration_tiles

    imgs = [np.arange(40 * 50, dtype=np.float32).reshape(40, 50), np.ones((32, 32), np.float32)]
    t = calibration_tiles(imgs, per_image=3, tile=32, seed=1)
    assert t.shape == (6, 1, 32, 32) and t.dtype == np.float32
    assert np.array_equal(t, calibration_tiles(imgs, per_image=3, tile=32, seed=1))  # seeded
    v = t[0, 0]  # a crop of the ramp: rows step by 50, columns by 1
    assert np.all(np.diff(v, axis=1) == 1) and np.all(np.diff(v, axis=0) == 50)
    assert np.all(t[3:] == 1)
    with pytest.raises(ValueError, match="at least 64"):
        calibration_tiles(imgs, tile=64)


@needs_int8
def test_int8_model_is_recorded_verified_and_chosen_by_auto(tmp_path, monkeypatch, caplog):
    from segmentation.backends.quantize import calibration_tiles, quantize_and_record

    m = _model(depth=2, width=8)
    path = _saved(tmp_path, m)
    export_and_record(m, path, tile=32)
    rng = np.random.default_rng(0)
    imgs = [rng.random((64, 64), dtype=np.float32) for _ in range(4)]
    entry = quantize_and_record(path, calibration_tiles(imgs, per_image=4, tile=32),
                                calibration_tiles(imgs, per_image=1, tile=32, seed=9),
                                calibration_info={"scans": ["a", "b", "c", "d"]})
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["export"]["openvino_int8"] == entry
    assert entry["calibration"]["tiles"] == 16 and entry["calibration"]["scans"] == ["a", "b", "c", "d"]
    xml, bin_ = backends.int8_paths(path)
    assert backends.verify_int8(path, card) == xml and bin_.is_file()
    assert entry["sha256_bin"] == sha256_of(bin_)

    x = rng.random((3, 32, 48, 1), dtype=np.float32)
    ref = np.asarray(m.predict_on_batch(x))[..., 0]
    fn, name = make_predict_fn(m, path, card, backend="openvino", precision="int8")
    assert name == "openvino-int8"
    got = fn(x)
    assert got.shape == ref.shape and np.mean(np.abs(got - ref)) < 0.05  # quantised, not exact
    # auto takes int8 only where the CPU has int8 dot-product units
    monkeypatch.setattr(backends, "cpu_has_vnni", lambda: True)
    assert make_predict_fn(m, path, card)[1] == "openvino-int8"
    monkeypatch.setattr(backends, "cpu_has_vnni", lambda: False)
    assert make_predict_fn(m, path, card)[1] != "openvino-int8"
    # a changed weights file is refused, not run; a missing one is skipped by auto
    monkeypatch.setattr(backends, "cpu_has_vnni", lambda: True)
    data = bytearray(bin_.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bin_.write_bytes(bytes(data))
    with pytest.raises(ModelCardError, match="does not match"):
        make_predict_fn(m, path, card, precision="int8", backend="openvino")
    bin_.unlink()
    with pytest.raises(BackendUnavailable, match="not found"):
        make_predict_fn(m, path, card, precision="int8", backend="openvino")
    with caplog.at_level(logging.INFO, logger="segmentation.backends"):
        assert make_predict_fn(m, path, card)[1] in ("openvino-bf16", "openvino-fp32")
    assert "openvino-int8 skipped" in caplog.text


@pytest.mark.parametrize("kind", ["impurities", "grains"])
def test_shipped_int8_models_match_their_cards(kind):
    """The shipped int8 files are the ones the card records, calibrated on training scans only."""
    _, card = load_model(kind)
    entry = backends.int8_entry(card)
    assert entry is not None, "the shipped card records no int8 model"
    assert backends.verify_int8(weights_path(kind).resolve(), card).is_file()
    cal = set(entry["calibration"]["scans"])
    assert cal and cal <= set(card["data"]["train_scans"])
    assert not cal & (set(card["data"]["val_scans"]) | set(card["data"]["tune_scans"]))
    if HAVE_OV and backends.cpu_has_vnni():
        rng = np.random.default_rng(3)
        scan = (rng.random((200, 300)) * 60 + 100).astype(np.uint8)
        ref, _ = predict_probabilities(scan, kind, backend="openvino", precision="fp32")
        got, _ = predict_probabilities(scan, kind, backend="openvino", precision="int8")
        assert np.mean(np.abs(got - ref)) < 0.05
