"""Convolutional front-ends in ONNX files: Conv (1-D), MaxPool/AveragePool, GlobalAveragePool/
GlobalMaxPool, BatchNormalization (folded or an Affine), with the Transposes and Flatten around them,
in files exported by torch.onnx.export (the TorchScript exporter and the dynamo exporter) from the
PyTorch models of tests/test_torch_conv.py and run by onnxruntime; and the refusals, by name.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from test_torch_conv import (C, Causal, CnnLstm, ConvGru, FlattenHead, GlobalCnn, LeftPadded, Norms, Pools,  # noqa: E402
                             data, ncl, run, scaled)

import edgernn  # noqa: E402
from edgernn import reference  # noqa: E402
from edgernn.errors import UnsupportedModel  # noqa: E402
from edgernn.graph import execute  # noqa: E402
from edgernn.importers import onnx as importer  # noqa: E402

nn = torch.nn
F = torch.nn.functional
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
TOL = dict(atol=1e-5, rtol=1e-4)


def export(module, x, path, dynamo=False):
    """The TorchScript exporter with dynamic batch and time, or the dynamo exporter with fixed shapes."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if dynamo:
            pytest.importorskip("onnxscript")  # the dynamo exporter's dependency
            torch.onnx.export(module, (ncl(x),), str(path), dynamo=True)
        else:
            torch.onnx.export(module, (ncl(x),), str(path), dynamo=False, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "batch", 2: "time"}})
    return path


def check(module, x, path, dynamo=False):
    export(module, x, path, dynamo)
    want = run(module, ncl(x))
    model = edgernn.convert(path)
    got = model.predict(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, **TOL)
    np.testing.assert_allclose(execute(model.spec, [x], reference)[0], want, **TOL)
    np.testing.assert_allclose(importer.run_source(path, [x])[0], want, **TOL)  # onnxruntime
    return [type(node.op).__name__ for node in model.spec.nodes], model


MODELS = {
    "cnn_lstm": (lambda: CnnLstm(), ["Conv1D", "Pooling1D", "Recurrent", "Dense"]),
    "batch_norms": (lambda: Norms(True), ["Conv1D", "Affine", "Recurrent", "Dense", "Affine", "Dense"]),
    "global_avg": (lambda: GlobalCnn(nn.AdaptiveAvgPool1d(1)), ["Conv1D", "Pooling1D", "Dense"]),
    "global_max": (lambda: GlobalCnn(nn.AdaptiveMaxPool1d(1), "view"), ["Conv1D", "Pooling1D", "Dense"]),
    "groups_same": (lambda: ConvGru(kernel_size=3, groups=2, out=8, padding=1), ["Conv1D", "Recurrent", "Dense"]),
    "dilation_stride": (lambda: ConvGru(kernel_size=3, dilation=2, stride=2), ["Conv1D", "Recurrent", "Dense"]),
    "same_str": (lambda: ConvGru(kernel_size=4, padding="same"), ["Conv1D", "Recurrent", "Dense"]),
    "avg_pool": (lambda: Pools(nn.AvgPool1d(4, stride=3)), ["Conv1D", "Pooling1D", "Recurrent"]),
    "max_pool": (lambda: Pools(nn.MaxPool1d(3, stride=2)), ["Conv1D", "Pooling1D", "Recurrent"]),
    "causal": (lambda: Causal(), ["Conv1D", "Recurrent"]),  # pads (k-1)*d, then Slice [:-(k-1)*d]
    "pads_k5_p1": (lambda: ConvGru(kernel_size=5, padding=1), ["Pad1D", "Conv1D", "Recurrent", "Dense"]),
    "pads_stride": (lambda: ConvGru(kernel_size=3, padding=1, stride=2), ["Pad1D", "Conv1D", "Recurrent", "Dense"]),
    "pad_node_causal": (lambda: LeftPadded("function"), ["Conv1D", "Recurrent"]),  # Pad, then Conv
    "pad_module_causal": (lambda: LeftPadded("zero"), ["Conv1D", "Recurrent"]),
    "max_pool_same": (lambda: Pools(nn.MaxPool1d(3, stride=1, padding=1)), ["Conv1D", "Pooling1D", "Recurrent"]),
    "avg_pool_counted": (lambda: Pools(nn.AvgPool1d(3, stride=2, padding=1)),
                         ["Conv1D", "Pad1D", "Pooling1D", "Recurrent"]),
    "avg_pool_uncounted": (lambda: Pools(nn.AvgPool1d(5, stride=1, padding=2, count_include_pad=False)),
                           ["Conv1D", "Pooling1D", "Recurrent"]),
}


@pytest.mark.parametrize("name", MODELS)
def test_torchscript_exporter(name, tmp_path):
    make, ops = MODELS[name]
    got, model = check(scaled(make(), seed=3), data(), tmp_path / "m.onnx")
    assert got == ops
    if name == "causal" or name.startswith("pad_"):
        assert model.spec.nodes[0].op.padding == "causal"
    if name.startswith("global") or name == "cnn_lstm":
        assert model.spec.nodes[0].op.activation == "relu"  # Conv + Relu: one Conv1D


@pytest.mark.parametrize("name", MODELS)
def test_dynamo_exporter(name, tmp_path):
    """The dynamo exporter's graphs: fixed shapes (a Reshape to the static length a Conv and a pooling
    left), AdaptiveAvgPool1d/AdaptiveMaxPool1d as Unsqueeze + ReduceMean/ReduceMax + Squeeze."""
    make, ops = MODELS[name]
    got, _ = check(scaled(make(), seed=4), data(), tmp_path / "m.onnx", dynamo=True)
    assert got == ops


def conv_graph(path, attrs, pool=None):
    """A hand-made (batch, 6, T) -> Conv -> [pool] graph, for the options no exporter writes."""
    w = numpy_helper.from_array(np.random.default_rng(0).normal(0, 0.3, (4, C, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", **attrs)]
    out = "c"
    constants = [w]
    if pool:
        inputs = ["c", "pads"] if pool[0] == "Pad" else ["c"]
        nodes.append(helper.make_node(pool[0], inputs, ["p"], name="pool", **pool[1]))
        constants.append(numpy_helper.from_array(np.array([0, 0, 2, 0, 0, 0], np.int64), "pads"))
        out = "p"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", C, "t"])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], constants)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("attrs, padding", [
    (dict(kernel_shape=[3], pads=[2, 0]), "causal"), (dict(kernel_shape=[3], auto_pad="SAME_UPPER", strides=[2]), "same"),
    (dict(kernel_shape=[3], auto_pad="VALID"), "valid"), (dict(kernel_shape=[3], pads=[4, 0], dilations=[2]), "causal"),
    (dict(kernel_shape=[3], pads=[1, 1]), "same"), (dict(kernel_shape=[3], pads=[2, 2], dilations=[2]), "same"),
    (dict(kernel_shape=[3], pads=[1, 2]), "pad valid"), (dict(kernel_shape=[3], pads=[2, 2]), "pad valid"),
    (dict(kernel_shape=[3], pads=[1, 1], strides=[2]), "pad valid"),
    (dict(kernel_shape=[3]), ("MaxPool", dict(kernel_shape=[3], pads=[1, 1]))),
    (dict(kernel_shape=[3]), ("MaxPool", dict(kernel_shape=[3], auto_pad="SAME_UPPER", strides=[2]))),
    (dict(kernel_shape=[3]), ("AveragePool", dict(kernel_shape=[3], pads=[1, 1], strides=[2], count_include_pad=1))),
    (dict(kernel_shape=[3]), ("AveragePool", dict(kernel_shape=[4], pads=[1, 2]))),
])
def test_paddings(attrs, padding, tmp_path):
    """Conv pads that are one of the IR's paddings are that padding; others are a Pad1D and a valid
    Conv1D. Pooling pads: MaxPool's (-inf) and AveragePool's left out of the average
    (count_include_pad=0) are the IR's same; counted ones are a Pad1D and a valid pooling."""
    pool = padding if isinstance(padding, tuple) else None
    path = conv_graph(tmp_path / "c.onnx", attrs, pool)
    model = edgernn.convert(path)
    made = [type(node.op).__name__ for node in model.spec.nodes]
    if pool is None:
        assert made == (["Pad1D", "Conv1D"] if padding == "pad valid" else ["Conv1D"])
        assert model.spec.nodes[-1].op.padding == padding.split()[-1]
    elif pool[1].get("count_include_pad"):
        assert made == ["Conv1D", "Pad1D", "Pooling1D"] and model.spec.nodes[-1].op.padding == "valid"
    else:
        assert made == ["Conv1D", "Pooling1D"] and model.spec.nodes[-1].op.padding == "same"
    x = data()
    np.testing.assert_allclose(model.predict(x), importer.run_source(path, [x])[0], **TOL)


@pytest.mark.parametrize("attrs, pool, pieces", [
    (dict(kernel_shape=[3], auto_pad="SAME_LOWER"), None, ["'conv' (Conv)", "auto_pad=SAME_LOWER"]),
    (dict(kernel_shape=[3, 3]), None, ["(4, 6, 3, 3)", "1-D"]),
    (dict(kernel_shape=[3]), ("MaxPool", dict(kernel_shape=[2], ceil_mode=1)), ["'pool' (MaxPool)", "ceil_mode=1"]),
    (dict(kernel_shape=[3]), ("MaxPool", dict(kernel_shape=[2], pads=[1, 1], strides=[2])),
     ["'pool' (MaxPool)", "pads=[1, 1]", "-inf"]),
    (dict(kernel_shape=[3]), ("AveragePool", dict(kernel_shape=[2], pads=[1, 1])),
     ["'pool' (AveragePool)", "pads=[1, 1]", "left out of the average"]),
    (dict(kernel_shape=[3]), ("Pad", dict(mode="reflect")), ["'pool' (Pad)", "mode='reflect'"]),
])
def test_refusals(attrs, pool, pieces, tmp_path):
    path = conv_graph(tmp_path / "c.onnx", attrs, pool)
    if attrs["kernel_shape"] == [3, 3]:  # a 2-D weight for a 2-D kernel
        model = onnx.load(str(path))
        model.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.zeros((4, C, 3, 3), np.float32), "w"))
        onnx.save(model, str(path))
    with pytest.raises(UnsupportedModel) as info:
        edgernn.convert(path)
    for piece in pieces:
        assert piece in str(info.value)


class FlattenReluHead(FlattenHead):
    def forward(self, x):
        return self.fc(F.relu(self.flat(self.conv(x))))  # the Relu after the Flatten: applied before it


class FlattenOut(FlattenHead):
    def forward(self, x):
        return self.flat(self.conv(x))


@pytest.mark.parametrize("make", [FlattenHead, FlattenReluHead], ids=lambda c: c.__name__)
def test_channel_major_flatten_before_gemm(make, tmp_path):
    """nn.Flatten of (N, C, T) is ONNX Flatten(axis=1), channel-major: the Gemm after it fixes T and
    reads the IR Flatten's time-major order through reordered rows."""
    got, model = check(scaled(make(), seed=8), data(), tmp_path / "f.onnx")
    assert got == ["Conv1D", "Flatten", "Dense"]
    assert model.spec.nodes[0].op.activation == "relu"  # before or after the Flatten: fused into the Conv1D
    assert model.spec.inputs[0].timesteps == 23  # (T - 3) // 2 + 1 == 11 steps


def test_channel_major_flatten_elsewhere_is_refused(tmp_path):
    export(scaled(FlattenOut(), seed=8), data(), tmp_path / "f.onnx")
    with pytest.raises(UnsupportedModel, match="Flatten.*channels with the time axis.*Gemm"):
        edgernn.convert(tmp_path / "f.onnx")


@pytest.mark.parametrize("opset", [10, 17])
def test_pad_node_before_conv_is_its_causal_padding(opset, tmp_path):
    """A Pad of (k-1)*d zeros on the left of the time axis (pads an attribute before opset 11, an
    input from it on) and a Conv without pads: one causal Conv1D, which streams."""
    w = numpy_helper.from_array(np.random.default_rng(0).normal(0, 0.3, (4, C, 3)).astype(np.float32), "w")
    pads = [0, 0, 4, 0, 0, 0]
    if opset < 11:
        pad = helper.make_node("Pad", ["x"], ["p"], name="pad", pads=pads)
        constants = [w]
    else:
        pad = helper.make_node("Pad", ["x", "pads"], ["p"], name="pad")
        constants = [w, numpy_helper.from_array(np.array(pads, np.int64), "pads")]
    nodes = [pad, helper.make_node("Conv", ["p", "w"], ["c"], name="conv", kernel_shape=[3], dilations=[2])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", C, "t"])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, None)], constants)
    path = tmp_path / "p.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    model = edgernn.convert(path)
    assert [(type(n.op).__name__, n.op.padding) for n in model.spec.nodes] == [("Conv1D", "causal")]
    x = data(steps=8)
    want = importer.run_source(path, [x])[0]
    np.testing.assert_allclose(model.predict(x), want, **TOL)
    s = model.stream(x.shape[0])
    np.testing.assert_allclose(np.stack([s.step(x[:, t]) for t in range(8)], axis=1), want, **TOL)
