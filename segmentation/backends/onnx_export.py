"""Export a Keras U-Net (:func:`segmentation.unet.build_unet`) to an ONNX graph, batch norm folded.

Written from the Keras layers themselves (no converter package): every layer of the
functional model is visited in order and mapped to ONNX operators in NCHW layout.
Batch normalisation (inference statistics) is folded into the convolution before it,
so the exported graph holds only ``Conv``, ``Relu``, ``MaxPool``, ``ConvTranspose``,
``Concat`` and ``Sigmoid`` (or ``Softmax`` over the channels of a multi-class model).  The graph's
input ``image`` is ``(B, 1, H, W)`` float32 and its output ``prob`` ``(B, C, H, W)`` probabilities;
with one channel these have the same memory layout as the Keras model's ``(B, H, W, 1)``, so no
transpose is needed at run time (a ``C``-class output is transposed to ``(B, H, W, C)`` by the
backends).

Needs the ``onnx`` package (extra ``[fast]``); the Keras model stays the source of truth.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OPSET", "export_onnx", "keras_to_onnx"]

OPSET = 17
_SUPPORTED = (
    "InputLayer", "Conv2D", "BatchNormalization", "Activation", "ReLU", "MaxPooling2D",
    "Conv2DTranspose", "Concatenate", "SpatialDropout2D", "Dropout",
)


def _inputs_of(layer: Any) -> list[str]:
    node = layer._inbound_nodes[0]
    return [t._keras_history.operation.name for t in node.input_tensors]


def _pads(layer: Any, k: tuple[int, int]) -> list[int]:
    if layer.padding == "valid":
        return [0, 0, 0, 0]
    if any(s != 1 for s in layer.strides) or any(v % 2 == 0 for v in k):
        raise ValueError(f"layer {layer.name}: 'same' padding is exported only for odd kernels at stride 1")
    return [k[0] // 2, k[1] // 2, k[0] // 2, k[1] // 2]


def _activation(layer: Any) -> str | None:
    act = getattr(layer, "activation", None)
    name = getattr(act, "__name__", None) if act is not None else None
    if name in (None, "linear"):
        return None
    if name in ("relu", "sigmoid", "softmax"):
        return name
    raise ValueError(f"layer {layer.name}: activation {name!r} is not exported (relu, sigmoid, softmax, linear)")


def _act_node(helper, act: str, src: str, dst: str, name: str):
    if act == "softmax":  # over the channels (Keras' last axis = ONNX axis 1 in NCHW)
        return helper.make_node("Softmax", [src], [dst], name=name, axis=1)
    return helper.make_node({"relu": "Relu", "sigmoid": "Sigmoid"}[act], [src], [dst], name=name)


def keras_to_onnx(model: Any, *, name: str | None = None) -> Any:
    """Build the ONNX ``ModelProto`` of a Keras U-Net (see the module docstring).

    Parameters
    ----------
    model : keras.Model
        A functional model of the layers in ``_SUPPORTED`` (channels-last, one input).
    name : str, optional
        Graph name (default: the model's name).

    Returns
    -------
    onnx.ModelProto
        Checked with ``onnx.checker``.

    Raises
    ------
    ValueError
        A layer type, activation, padding or data format that the exporter does not map.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    out_of: dict[str, str] = {}  # keras layer name -> onnx value name
    pending_conv: dict[str, tuple] = {}  # layer -> (W, b, input value, conv attrs, activation)
    input_name = None

    def emit_conv(lname: str, w, b, src: str, attrs: dict, act: str | None, transpose: bool) -> None:
        wn, bn = f"{lname}_W", f"{lname}_B"
        inits.append(numpy_helper.from_array(np.ascontiguousarray(w, np.float32), wn))
        inits.append(numpy_helper.from_array(np.ascontiguousarray(b, np.float32), bn))
        op = "ConvTranspose" if transpose else "Conv"
        v = f"{lname}:0"
        y = f"{lname}:pre" if act else v
        nodes.append(helper.make_node(op, [src, wn, bn], [y], name=lname, **attrs))
        if act:
            nodes.append(_act_node(helper, act, y, v, f"{lname}_{act}"))
        out_of[lname] = v

    def flush(lname: str) -> None:
        if lname in pending_conv:
            emit_conv(lname, *pending_conv.pop(lname))

    for layer in model.layers:
        kind = type(layer).__name__
        if kind not in _SUPPORTED:
            raise ValueError(f"layer {layer.name} of type {kind} is not exported (supported: {_SUPPORTED})")
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            raise ValueError(f"layer {layer.name}: only channels_last models are exported")
        if kind == "InputLayer":
            input_name = layer.name
            out_of[layer.name] = "image"
            continue
        srcs = _inputs_of(layer)
        if kind == "BatchNormalization":
            (src,) = srcs
            if src in pending_conv and pending_conv[src][4] is None:
                w, b, s_in, attrs, _, tr = pending_conv.pop(src)
                gamma = np.asarray(layer.gamma.numpy()) if layer.scale else 1.0
                beta = np.asarray(layer.beta.numpy()) if layer.center else 0.0
                scale = gamma / np.sqrt(np.asarray(layer.moving_variance.numpy()) + layer.epsilon)
                shift = beta - np.asarray(layer.moving_mean.numpy()) * scale
                if tr:  # ConvTranspose W: (cin, cout, kh, kw)
                    w = w * scale[None, :, None, None]
                else:  # Conv W: (cout, cin, kh, kw)
                    w = w * scale[:, None, None, None]
                pending_conv[layer.name] = (w, b * scale + shift, s_in, attrs, None, tr)
                continue
            raise ValueError(f"layer {layer.name}: batch norm is exported only right after a linear conv")
        for s in srcs:
            flush(s)
        ins = [out_of[s] for s in srcs]
        if kind in ("Conv2D", "Conv2DTranspose"):
            k = tuple(int(v) for v in layer.kernel_size)
            if any(d != 1 for d in layer.dilation_rate) or getattr(layer, "groups", 1) != 1:
                raise ValueError(f"layer {layer.name}: dilation / groups are not exported")
            kern = np.asarray(layer.kernel.numpy(), np.float32)
            bias = np.asarray(layer.bias.numpy(), np.float32) if layer.use_bias else None
            if kind == "Conv2D":
                w = kern.transpose(3, 2, 0, 1)  # (kh, kw, cin, cout) -> (cout, cin, kh, kw)
                attrs = {"kernel_shape": list(k), "pads": _pads(layer, k), "strides": list(layer.strides)}
            else:
                if layer.padding != "valid" or tuple(layer.strides) != k:
                    raise ValueError(f"layer {layer.name}: transposed conv is exported for stride == kernel, valid")
                w = kern.transpose(3, 2, 0, 1)  # (kh, kw, cout, cin) -> (cin, cout, kh, kw)
                attrs = {"kernel_shape": list(k), "strides": list(layer.strides)}
            cout = w.shape[1] if kind == "Conv2DTranspose" else w.shape[0]
            b = bias if bias is not None else np.zeros(cout, np.float32)
            pending_conv[layer.name] = (w, b, ins[0], attrs, _activation(layer), kind == "Conv2DTranspose")
            continue
        if kind in ("Activation", "ReLU"):
            act = "relu" if kind == "ReLU" else _activation(layer)
            if act is None:
                nodes.append(helper.make_node("Identity", ins, [f"{layer.name}:0"], name=layer.name))
            else:
                nodes.append(_act_node(helper, act, ins[0], f"{layer.name}:0", layer.name))
        elif kind == "MaxPooling2D":
            if layer.padding != "valid":
                raise ValueError(f"layer {layer.name}: only valid max pooling is exported")
            nodes.append(helper.make_node("MaxPool", ins, [f"{layer.name}:0"], name=layer.name,
                                          kernel_shape=list(layer.pool_size), strides=list(layer.strides)))
        elif kind == "Concatenate":
            if layer.axis not in (-1, 3):
                raise ValueError(f"layer {layer.name}: only channel concatenation is exported")
            nodes.append(helper.make_node("Concat", ins, [f"{layer.name}:0"], name=layer.name, axis=1))
        else:  # dropout: identity at inference
            nodes.append(helper.make_node("Identity", ins, [f"{layer.name}:0"], name=layer.name))
        out_of[layer.name] = f"{layer.name}:0"
    for lname in list(pending_conv):
        flush(lname)
    if input_name is None or len(model.outputs) != 1:
        raise ValueError("the model must have one input layer and one output")
    last = model.outputs[0]._keras_history.operation.name
    channels = int(model.outputs[0].shape[-1])
    nodes.append(helper.make_node("Identity", [out_of[last]], ["prob"], name="output"))
    graph = helper.make_graph(
        nodes, name or model.name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["B", 1, "H", "W"])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["B", channels, "H", "W"])],
        initializer=inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="quantmet.segmentation.backends")
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    return proto


def export_onnx(model: Any, path: str | Path) -> Path:
    """Write :func:`keras_to_onnx` of ``model`` to ``path`` (byte-for-byte deterministic); returns the path."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(keras_to_onnx(model).SerializeToString())
    del onnx
    return path
