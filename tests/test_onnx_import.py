"""The ONNX importer against onnxruntime: models exported from PyTorch (by both of its exporters),
hand-built LSTM/GRU/RNN nodes with every attribute, and the ONNX backend node test cases that ship
inside the ``onnx`` package.

Comparisons at atol 1e-5 + rtol 1e-4, ``predict`` and (for forward models) streams.
"""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import edgernn  # noqa: E402
from edgernn.errors import InvalidModelFile, UnsupportedModel  # noqa: E402
from edgernn.importers import onnx as importer  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

TOL = dict(atol=1e-5, rtol=1e-4)
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def as_list(y):
    return y if isinstance(y, list) else [y]


def assert_all_close(got, want):
    got, want = as_list(got), as_list(want)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, **TOL)


def check_stream(model, x, want):
    """Chunks and single steps of a stream equal predict (and the source) on the whole sequence
    (integer codes (batch, T) step one column (batch, 1) at a time)."""
    s = model.stream(x.shape[0])
    chunks = np.concatenate([s.run(x[:, :3]), s.run(x[:, 3:4]), s.run(x[:, 4:])], axis=1)
    s.reset()
    steps = np.stack([s.step(x[:, t:t + 1] if x.ndim == 2 else x[:, t]) for t in range(x.shape[1])], axis=1)
    if want.ndim == 2:  # many-to-one: the answer for the whole sequence is the last step's
        chunks, steps = chunks[:, -1], steps[:, -1]
    np.testing.assert_allclose(chunks, want, **TOL)
    np.testing.assert_allclose(steps, want, **TOL)


# ---------------------------------------------------------------------------------------------
# Models exported from PyTorch
# ---------------------------------------------------------------------------------------------

torch = pytest.importorskip("torch")


class Net(torch.nn.Module):
    def __init__(self, cell, batch_first, bidirectional, layers, head):
        super().__init__()
        self.rnn = getattr(torch.nn, cell)(3, 5, num_layers=layers, batch_first=batch_first,
                                           bidirectional=bidirectional)
        width = 10 if bidirectional else 5
        self.fc = torch.nn.Linear(width, 4)
        self.out = torch.nn.Linear(4, 2)
        self.batch_first, self.bidirectional, self.head = batch_first, bidirectional, head

    def forward(self, x):
        y, states = self.rnn(x)
        h_n = states[0] if isinstance(states, tuple) else states
        if self.head == "last":
            y = y[:, -1] if self.batch_first else y[-1]
        elif self.head == "final":
            y = torch.cat([h_n[-2], h_n[-1]], 1) if self.bidirectional else h_n[-1]
        elif self.head == "slice":  # y[:, -1:] keeps the time axis
            y = (y[:, -1:] if self.batch_first else y[-1:]).squeeze(1 if self.batch_first else 0)
        elif self.head == "bare":
            return y
        return torch.softmax(self.out(torch.tanh(self.fc(y))), dim=-1)


def export(module, path, batch_first):
    module.eval()
    torch.manual_seed(0)
    for p in module.parameters():
        torch.nn.init.uniform_(p, -0.9, 0.9)
    x = torch.randn(2, 6, 3) if batch_first else torch.randn(6, 2, 3)
    axes = {"x": {0: "batch", 1: "time"}} if batch_first else {"x": {1: "batch", 0: "time"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes=axes)
    return module


def module_output(module, x, batch_first):
    """``module`` run by PyTorch on ``x`` (batch, T, features), its output in edgernn's layout."""
    inp = torch.from_numpy(x if batch_first else np.ascontiguousarray(x.transpose(1, 0, 2)))
    with torch.no_grad():
        theirs = module(inp).numpy()
    return theirs.transpose(1, 0, 2) if theirs.ndim == 3 and not batch_first else theirs


TORCH_CASES = [
    ("LSTM", True, False, 1, "last"), ("LSTM", False, False, 2, "last"), ("LSTM", True, True, 2, "final"),
    ("LSTM", False, True, 1, "every"), ("LSTM", False, False, 3, "final"), ("LSTM", True, False, 1, "slice"),
    ("GRU", True, False, 2, "every"), ("GRU", False, False, 1, "last"), ("GRU", True, True, 2, "every"),
    ("GRU", False, True, 1, "final"), ("RNN", True, False, 2, "last"), ("RNN", False, True, 2, "every"),
    ("RNN", True, False, 1, "final"), ("LSTM", True, False, 2, "bare"), ("GRU", False, True, 2, "bare"),
]


@pytest.mark.parametrize("cell, batch_first, bidirectional, layers, head", TORCH_CASES)
def test_torch_export(cell, batch_first, bidirectional, layers, head, tmp_path):
    path = tmp_path / "m.onnx"
    module = export(Net(cell, batch_first, bidirectional, layers, head), path, batch_first)
    x = np.random.default_rng(3).normal(0, 1.5, (3, 7, 3)).astype(np.float32)  # other batch and T than exported
    model = edgernn.convert(path)
    assert_verified(model)
    got = model.predict(x)
    want = importer.run_source(path, [x])[0]
    np.testing.assert_allclose(got, want, **TOL)
    np.testing.assert_allclose(got, module_output(module, x, batch_first), **TOL)
    assert got.shape == ((3, 7, got.shape[-1]) if head in ("every", "bare") else (3, 2))
    if not bidirectional:
        check_stream(model, x, want)


def test_round_trip_through_ernn(tmp_path):
    export(Net("GRU", True, False, 2, "last"), tmp_path / "m.onnx", True)
    model = edgernn.convert(tmp_path / "m.onnx")
    model.save(tmp_path / "m.ernn")
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(edgernn.load(tmp_path / "m.ernn").predict(x), model.predict(x), atol=0, rtol=0)
    assert model.spec.source["format"] == "onnx" and model.spec.source["file"] == "m.onnx"


def test_last_step_of_bidirectional_output_is_refused(tmp_path):
    export(Net("LSTM", True, True, 1, "last"), tmp_path / "m.onnx", True)
    with pytest.raises(UnsupportedModel, match="last step of a bidirectional output"):
        edgernn.convert(tmp_path / "m.onnx")


# ---------------------------------------------------------------------------------------------
# Hand-built nodes: every attribute
# ---------------------------------------------------------------------------------------------


def rnn_model(path, op, hidden=4, inputs=3, direction="forward", outputs=("Y", "Y_h"), initial=False,
              peepholes=False, layout=0, seed=0, extra_nodes=(), graph_outputs=None, **attributes):
    """One LSTM/GRU/RNN node with random initializer weights; X (and initial states) graph inputs."""
    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    gates = GATES[op]
    weights = {"W": rng.normal(0, 0.7, (dirs, gates * hidden, inputs)),
               "R": rng.normal(0, 0.7, (dirs, gates * hidden, hidden)),
               "B": rng.normal(0, 0.5, (dirs, 2 * gates * hidden))}
    if peepholes:
        weights["P"] = rng.normal(0, 0.7, (dirs, 3 * hidden))
    x_shape = ["T", "N", inputs] if layout == 0 else ["N", "T", inputs]
    state_shape = [dirs, "N", hidden] if layout == 0 else ["N", dirs, hidden]
    graph_inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)]
    names = ["X", "W", "R", "B", "", "", "", ""]
    if initial:
        names[5] = "h0"
        graph_inputs.append(helper.make_tensor_value_info("h0", TensorProto.FLOAT, state_shape))
        if op == "LSTM":
            names[6] = "c0"
            graph_inputs.append(helper.make_tensor_value_info("c0", TensorProto.FLOAT, state_shape))
    if peepholes:
        names[7] = "P"
    while names[-1] == "":
        names.pop()
    node = helper.make_node(op, names, list(outputs), hidden_size=hidden, direction=direction, name="rnn",
                            **({"layout": layout} if layout else {}), **attributes)
    wanted = graph_outputs or [o for o in outputs if o]
    graph = helper.make_graph(
        [node, *extra_nodes], "g", graph_inputs,
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in wanted],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.save(model, str(path))
    return path


def feeds_for(model, seed=1, batch=2, steps=6, scale=1.5):
    rng = np.random.default_rng(seed)
    out = []
    for spec_input in model.spec.inputs:
        shape = (batch, steps, spec_input.features) if spec_input.rank == 3 else (batch, spec_input.features)
        out.append(rng.normal(0, scale, shape).astype(np.float32))
    return out


def against_ort(path):
    model = edgernn.convert(path)
    feeds = feeds_for(model)
    got = as_list(model.predict(*feeds))
    want = importer.run_source(path, feeds)
    assert_all_close(got, want)
    return model, feeds, got


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_directions_and_outputs(op, direction, tmp_path):
    outputs = ("Y", "Y_h", "Y_c") if op == "LSTM" else ("Y", "Y_h")
    model, feeds, got = against_ort(rnn_model(tmp_path / "m.onnx", op, direction=direction, outputs=outputs))
    # Y: (batch, T, dirs * H); Y_h (Y_c): (batch, H), a bidirectional Y_c one output per direction.
    assert got[0].shape == (2, 6, 8 if direction == "bidirectional" else 4)
    if direction == "forward":
        only_y = edgernn.convert(rnn_model(tmp_path / "y.onnx", op, outputs=("Y",)))
        check_stream(only_y, feeds[0], importer.run_source(tmp_path / "y.onnx", feeds)[0])


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_clip_matches_onnxruntime(op, tmp_path):
    """ONNX's clip is onnxruntime's: every gate pre-activation clipped before its activation,
    exactly the IR's cell_clip (the comparison fails without the clip)."""
    _, feeds, got = against_ort(rnn_model(tmp_path / "m.onnx", op, clip=0.6))
    unclipped = edgernn.convert(rnn_model(tmp_path / "n.onnx", op)).predict(*feeds)
    assert np.abs(unclipped[0] - got[0]).max() > 1e-3


def test_peepholes_and_clip(tmp_path):
    model, _, _ = against_ort(rnn_model(tmp_path / "m.onnx", "LSTM", peepholes=True, clip=1.5))
    assert model.spec.nodes[0].op.peephole.shape == (3, 4)


@pytest.mark.parametrize("linear_before_reset", [0, 1])
def test_gru_linear_before_reset(linear_before_reset, tmp_path):
    model, _, _ = against_ort(rnn_model(tmp_path / "m.onnx", "GRU", linear_before_reset=linear_before_reset))
    layer = model.spec.nodes[0].op
    assert layer.reset_after is bool(linear_before_reset)
    assert (layer.recurrent_bias is not None) is bool(linear_before_reset)


@pytest.mark.parametrize("op, activations, alpha, beta", [
    ("LSTM", ["HardSigmoid", "Tanh", "Tanh"], None, None),  # 0.2, 0.5: Keras 2's hard_sigmoid
    ("LSTM", ["HardSigmoid", "Softsign", "Softsign"], [1 / 6], [0.5]),  # Keras 3's hard_sigmoid
    ("GRU", ["Sigmoid", "Relu"], None, None),
    ("GRU", ["Softsign", "Softplus"], None, None),
    ("RNN", ["Affine"], [1.0], [0.0]),
    ("RNN", ["LeakyRelu"], [0.2], None),
    ("RNN", ["Elu"], None, None),
    ("RNN", ["ScaledTanh"], [1.0], [1.0]),
])
def test_activations(op, activations, alpha, beta, tmp_path):
    attributes = {"activations": activations}
    if alpha:
        attributes["activation_alpha"] = alpha
    if beta:
        attributes["activation_beta"] = beta
    against_ort(rnn_model(tmp_path / "m.onnx", op, **attributes))


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_initial_states_as_graph_inputs(op, tmp_path):
    model, feeds, _ = against_ort(rnn_model(tmp_path / "m.onnx", op, initial=True))
    assert [i.rank for i in model.spec.inputs] == [3] + [2] * (len(feeds) - 1)
    assert model.spec.nodes[0].initial_state == tuple(i.name for i in model.spec.inputs[1:])


def assert_verified(model, runtime="onnxruntime"):
    """The conversion verified itself: passed, with a number, against ``runtime``."""
    record = model.spec.source["verification"]
    assert record["passed"] is True, record
    assert isinstance(record["max_abs_error"], float) and record["max_abs_error"] < 1e-5, record
    assert record["framework"].startswith(runtime), record
    return record


def test_layout_1_equals_layout_0(tmp_path):
    """onnxruntime's CPU kernels refuse layout=1; the same weights in layout 0 give the reference.
    Verification runs such a file with onnx's reference evaluator instead, and says so."""
    for op in GATES:
        a = edgernn.convert(rnn_model(tmp_path / "a.onnx", op, layout=1, initial=True, seed=4, peepholes=op == "LSTM"))
        b = rnn_model(tmp_path / "b.onnx", op, layout=0, initial=True, seed=4, peepholes=op == "LSTM")
        feeds = feeds_for(a)
        assert_all_close(a.predict(*feeds), importer.run_source(b, feeds))
        record = assert_verified(a, "onnx ")
        assert "reference evaluator" in record["framework"] and "layout == 1" in record["framework"]
        assert_all_close(importer.run_source(tmp_path / "a.onnx", feeds), importer.run_source(b, feeds))


@pytest.mark.parametrize("op, attributes", [
    ("GRU", {"clip": 0.5}),
    ("LSTM", {"activations": ["HardSigmoid", "Softsign", "Softsign"], "activation_alpha": [1 / 6],
              "activation_beta": [0.5], "peepholes": True, "initial": True}),
    ("LSTM", {"direction": "reverse", "outputs": ("Y", "Y_h", "Y_c"), "clip": 1.0}),
])
def test_layout_1_with_what_the_reference_evaluator_ignores(op, attributes, tmp_path):
    """onnx's reference evaluator ignores clip and activations: such a layout=1 file is verified by
    onnxruntime on the same model with its nodes rewritten to layout 0 between Transposes (the
    record says so), never against the reference evaluator's wrong answer."""
    model = edgernn.convert(rnn_model(tmp_path / "m.onnx", op, layout=1, **attributes))
    record = assert_verified(model)
    assert "rewritten to layout=0" in record["framework"] and "reference evaluator does not" in record["framework"]
    rewritten = importer._as_layout_0(onnx.load(str(tmp_path / "m.onnx")))
    assert [n.op_type for n in rewritten.graph.node].count("Transpose") >= 2
    assert all(a.name != "layout" for n in rewritten.graph.node for a in n.attribute)
    assert importer._as_layout_0(onnx.load(str(rnn_model(tmp_path / "l0.onnx", op)))) is None


def test_fixed_time_and_batch_sizes(tmp_path):
    """A graph that declares its time length and batch size runs in onnxruntime only at those:
    verification uses them (recorded in the data description), the stream in chunks of them."""
    path = rnn_model(tmp_path / "m.onnx", "LSTM", outputs=("Y",))
    model = onnx.load(str(path))
    for dim, size in zip(model.graph.input[0].type.tensor_type.shape.dim, (5, 3)):
        dim.Clear()
        dim.dim_value = size
    onnx.save(model, str(path))
    converted = edgernn.convert(path)
    assert converted.spec.inputs[0].timesteps == 5 and converted.spec.source["batch_size"] == 3
    record = assert_verified(converted)
    assert "shape 3x5x3 (the source's declared time length 5 and batch size 3)" in record["data"]
    assert record["checks"][1]["passed"] and "chunks of 1, 3, 1 steps" in record["checks"][1]["check"]
    x = np.random.default_rng(0).normal(size=(7, 5, 3)).astype(np.float32)  # rows in chunks of 3
    np.testing.assert_allclose(converted.predict(x), importer.run_source(path, [x])[0], **TOL)


def test_graph_with_slice_gemm_identity_unsqueeze(tmp_path):
    """Slice of the last step, Squeeze, Identity, Gemm (transB, alpha, beta), Unsqueeze/Squeeze, Softmax."""
    rng = np.random.default_rng(6)
    consts = {"starts": np.array([-1], np.int64), "ends": np.array([2 ** 62], np.int64),
              "axes0": np.array([0], np.int64), "axes01": np.array([0, 1], np.int64),
              "axes2": np.array([2], np.int64), "gw": rng.normal(size=(3, 4)).astype(np.float32),
              "gc": rng.normal(size=(3,)).astype(np.float32)}
    nodes = [
        helper.make_node("Slice", ["Y", "starts", "ends", "axes0"], ["ylast"]),
        helper.make_node("Squeeze", ["ylast", "axes01"], ["y2"]),
        helper.make_node("Identity", ["y2"], ["yi"]),
        helper.make_node("Gemm", ["yi", "gw", "gc"], ["g"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Unsqueeze", ["g", "axes2"], ["g3"]),
        helper.make_node("Squeeze", ["g3", "axes2"], ["g2"]),
        helper.make_node("Softmax", ["g2"], ["probs"], axis=1),
    ]
    path = rnn_model(tmp_path / "m.onnx", "LSTM", outputs=("Y",), extra_nodes=nodes, graph_outputs=["probs"])
    model = onnx.load(str(path))
    model.graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    onnx.save(model, str(path))
    converted, feeds, got = against_ort(path)
    assert [type(n.op).__name__ for n in converted.spec.nodes] == ["Recurrent", "Dense"]
    assert not converted.spec.nodes[0].op.return_sequences  # the last step is the final state
    assert_verified(converted)
    check_stream(converted, feeds[0], got[0])


def test_graph_around_the_node(tmp_path):
    """Squeeze, Transpose, Gather of the last step, MatMul + Add, Relu, Softmax after the node."""
    w = numpy_helper.from_array(np.random.default_rng(5).normal(size=(4, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.arange(3, dtype=np.float32), "b")
    nodes = [
        helper.make_node("Squeeze", ["Y", "axis1"], ["y3"]),
        helper.make_node("Transpose", ["y3"], ["ybt"], perm=[1, 0, 2]),
        helper.make_node("Gather", ["ybt", "last"], ["ylast"], axis=1),
        helper.make_node("MatMul", ["ylast", "w"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["logits"]),
        helper.make_node("Relu", ["logits"], ["r"]),
        helper.make_node("Softmax", ["r"], ["probs"], axis=-1),
    ]
    path = rnn_model(tmp_path / "m.onnx", "GRU", outputs=("Y",), extra_nodes=nodes, graph_outputs=["probs"])
    model = onnx.load(str(path))
    model.graph.initializer.extend([w, b, numpy_helper.from_array(np.array([1], np.int64), "axis1"),
                                    numpy_helper.from_array(np.array(-1, np.int64), "last")])
    onnx.save(model, str(path))
    converted, feeds, got = against_ort(path)
    assert [type(n.op).__name__ for n in converted.spec.nodes] == ["Recurrent", "Dense", "Activation"]
    check_stream(converted, feeds[0], got[0])


def test_unsupported_ops_are_all_listed(tmp_path):
    nodes = [helper.make_node("Erf", ["Y"], ["e"]), helper.make_node("ConvTranspose", ["Y_h", "W"], ["c"])]
    path = rnn_model(tmp_path / "m.onnx", "LSTM", extra_nodes=nodes, graph_outputs=["e", "c"])
    with pytest.raises(UnsupportedModel) as info:
        edgernn.convert(path)
    assert len(info.value.problems) == 2
    assert "operator Erf" in str(info.value) and "operator ConvTranspose" in str(info.value)


@pytest.mark.parametrize("attributes, message", [
    ({"activations": ["ThresholdedRelu"]}, "ThresholdedRelu"),
    ({"activations": ["LeakyRelu"]}, r"LeakyRelu\(alpha=0.01\)"),
    ({"activations": ["HardSigmoid"], "activation_alpha": [0.3]}, r"HardSigmoid\(alpha=0.3"),
])
def test_unsupported_activations(attributes, message, tmp_path):
    with pytest.raises(UnsupportedModel, match=message):
        edgernn.convert(rnn_model(tmp_path / "m.onnx", "RNN", **attributes))


def test_lstm_refusals(tmp_path):
    with pytest.raises(UnsupportedModel, match="g=tanh and h=relu differ"):
        edgernn.convert(rnn_model(tmp_path / "a.onnx", "LSTM", activations=["Sigmoid", "Tanh", "Relu"]))
    with pytest.raises(UnsupportedModel, match="input_forget"):
        edgernn.convert(rnn_model(tmp_path / "b.onnx", "LSTM", input_forget=1))


def test_constant_initial_states_and_sequence_lens(tmp_path):
    path = rnn_model(tmp_path / "m.onnx", "GRU")
    model = onnx.load(str(path))
    node = model.graph.node[0]
    del node.input[:]
    node.input.extend(["X", "W", "R", "B", "lens", "h0"])
    model.graph.initializer.append(numpy_helper.from_array(np.zeros((1, 2, 4), np.float32), "h0"))
    model.graph.initializer.append(numpy_helper.from_array(np.array([6, 3], np.int32), "lens"))
    onnx.save(model, str(path))
    with pytest.raises(UnsupportedModel, match="sequence_lens"):
        edgernn.convert(path)
    del node.input[4:]
    node.input.extend(["", "h0"])
    model.graph.initializer[-1].CopyFrom(numpy_helper.from_array(np.zeros((1,), np.int32), "unused"))
    model.graph.initializer[-2].CopyFrom(numpy_helper.from_array(np.ones((1, 2, 4), np.float32), "h0"))
    onnx.save(model, str(path))
    with pytest.raises(UnsupportedModel, match="non-zero constant initializer"):
        edgernn.convert(path)
    model.graph.initializer[-2].CopyFrom(numpy_helper.from_array(np.zeros((1, 2, 4), np.float32), "h0"))
    onnx.save(model, str(path))
    assert_verified(against_ort(path)[0])  # zeros are the default state (their batch size fixes the data's)


def test_malformed_files(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"\x00garbage\xff" * 10)
    with pytest.raises(InvalidModelFile, match="bad.onnx"):
        edgernn.convert(tmp_path / "bad.onnx")
    path = rnn_model(tmp_path / "m.onnx", "GRU")
    model = onnx.load(str(path))
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.zeros((1, 12, 5), np.float32), "R"))
    onnx.save(model, str(path))
    with pytest.raises(InvalidModelFile, match="m.onnx"):
        edgernn.convert(path)


# ---------------------------------------------------------------------------------------------
# The ONNX backend node test cases shipped inside the onnx package
# ---------------------------------------------------------------------------------------------


def node_test_cases():
    """The LSTM/GRU/RNN node test cases (model and test_data_set_0) of the installed onnx package.

    Wheels without the generated ``backend/test/data/node`` folder still carry the modules that
    generate it (``onnx.backend.test.case.node.lstm`` etc.: importing one runs its exporters, each
    making a model and its inputs and expected outputs); the data folder is made from exactly these.
    """
    from onnx.backend.test.case import node as cases

    for name in ("lstm", "gru", "rnn"):
        importlib.import_module(f"onnx.backend.test.case.node.{name}")
    return {c.name: c for c in cases._NodeTestCases if c.model.graph.node[0].op_type in ("LSTM", "GRU", "RNN")}


NODE_CASES = node_test_cases()
REQUIRED = {"test_lstm_defaults", "test_lstm_with_initial_bias", "test_lstm_with_peepholes", "test_gru_defaults",
            "test_gru_with_initial_bias", "test_gru_seq_length", "test_rnn_seq_length"}


def test_node_test_cases_are_there():
    assert REQUIRED <= set(NODE_CASES)
    assert len(NODE_CASES) >= 18


def freeze(case, path):
    """The node test model with its weight inputs (W, R, B, P, sequence_lens) turned into initializers:
    the form exporters write. X and initial_h/initial_c stay graph inputs."""
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    inputs, outputs = case.data_sets[0]
    del model.graph.input[:]
    feeds = {}
    for value, array in zip(case.model.graph.input, inputs):
        if value.name in ("X", "initial_h", "initial_c"):
            model.graph.input.append(value)
            feeds[value.name] = np.asarray(array)
        else:
            model.graph.initializer.append(numpy_helper.from_array(np.asarray(array), value.name))
    onnx.save(model, str(path))
    return feeds, outputs


def onnx_to_ours(array, roles):
    """An ONNX array as an edgernn input, by hand: drop unit axes, batch first, time, features."""
    keep = [i for i, r in enumerate(roles) if r != "U"]
    array = array.reshape([array.shape[i] for i in keep])
    roles = [roles[i] for i in keep]
    return array.transpose([roles.index(r) for r in ("B", "T", "F") if r in roles])


def expected_as_ours(name, array, case):
    """Y (seq, dirs, batch, H) / Y_h, Y_c (dirs, batch, H), layout 1 batch first, as edgernn outputs."""
    attrs = {a.name: helper.get_attribute_value(a) for a in case.model.graph.node[0].attribute}
    layout = attrs.get("layout", 0)
    bidirectional = attrs.get("direction", b"forward") == b"bidirectional"
    if name == "Y":
        y = array if layout else array.transpose(2, 0, 1, 3)  # (batch, T, dirs, H)
        return [y.reshape(y.shape[0], y.shape[1], -1)]
    s = array if layout else array.transpose(1, 0, 2)  # (batch, dirs, H)
    if bidirectional and name == "Y_c":
        return [s[:, 0], s[:, 1]]  # one output per direction
    return [s.reshape(s.shape[0], -1)]  # Y_h of a bidirectional node: (batch, 2H), forward first


@pytest.mark.parametrize("name", sorted(NODE_CASES))
def test_onnx_node_case(name, tmp_path):
    case = NODE_CASES[name]
    path = tmp_path / "model.onnx"
    feeds, outputs = freeze(case, path)
    model = edgernn.convert(path)
    batchwise = 1 in [helper.get_attribute_value(a) for a in case.model.graph.node[0].attribute if a.name == "layout"]
    # Fixed time length and batch size: verified at those; layout=1 by onnx's reference evaluator.
    assert_verified(model, "onnx " if batchwise else "onnxruntime")
    layout = importer.io_layout(path)
    ours = [onnx_to_ours(feeds[n], roles) for n, roles in layout.inputs]
    got = as_list(model.predict(*ours))
    want = [w for value, array in zip(case.model.graph.output, outputs)
            for w in expected_as_ours(value.name, np.asarray(array), case)]
    assert_all_close(got, want)
    assert_all_close(got, importer.run_source(path, ours))  # onnxruntime, or for layout 1 onnx's reference
    if "peepholes" in name:
        assert model.spec.nodes[0].op.peephole is not None and model.spec.nodes[0].initial_state


def test_zero_states_built_with_expand_and_inference_dropout(tmp_path):
    """tf2onnx-style zero initial states: Expand(0.0, Concat([1], batch, [H])) from Shape(x); a
    Dropout with training_mode=False; a batch-first input transposed for the node."""
    rng = np.random.default_rng(0)
    hidden, features = 4, 3
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
        helper.make_node("Unsqueeze", ["b", "axis0"], ["b1"]),
        helper.make_node("Concat", ["one", "b1", "hidden"], ["shape"], axis=0),
        helper.make_node("Expand", ["zero_f", "shape"], ["h0"]),
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node("LSTM", ["xt", "W", "R", "", "", "h0", "h0"], ["", "Y_h"], hidden_size=hidden),
        helper.make_node("Squeeze", ["Y_h", "axis0"], ["y"]),
        helper.make_node("Dropout", ["y", "ratio", "training"], ["out"]),
    ]
    constants = {"W": rng.normal(size=(1, 4 * hidden, features)).astype(np.float32),
                 "R": rng.normal(size=(1, 4 * hidden, hidden)).astype(np.float32),
                 "zero": np.array(0, np.int64), "axis0": np.array([0], np.int64), "one": np.array([1], np.int64),
                 "hidden": np.array([hidden], np.int64), "zero_f": np.array(0.0, np.float32),
                 "ratio": np.array(0.5, np.float32), "training": np.array(False)}
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", features])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in constants.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), str(tmp_path / "m.onnx"))
    model, feeds, got = against_ort(tmp_path / "m.onnx")
    assert got[0].shape == (2, hidden)
    check_stream(model, feeds[0], got[0])


# ---------------------------------------------------------------------------------------------
# PyTorch's dynamo exporter (torch.onnx.export's default since torch 2.9)
# ---------------------------------------------------------------------------------------------

def dynamo_export(module, path, args, dynamic_batch):
    """``module`` exported by the dynamo exporter (``dynamo=True``), batch dynamic or fixed."""
    pytest.importorskip("onnxscript")  # the dynamo exporter's dependency
    import contextlib
    import io

    kwargs = {}
    if dynamic_batch:
        batch = torch.export.Dim("batch")
        # x: (batch, T, F) or (T, batch, F); states: (layers, batch, H)
        kwargs["dynamic_shapes"] = ({0 if module_batch_first(module) else 1: batch},) + ({1: batch},) * (len(args) - 1)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=True, **kwargs)
    return path


def module_batch_first(module):
    return next(m for m in module.modules() if isinstance(m, torch.nn.RNNBase)).batch_first


def seeded(module):
    module.eval()
    torch.manual_seed(0)
    for p in module.parameters():
        torch.nn.init.uniform_(p, -0.9, 0.9)
    return module


DYNAMO_CASES = [
    ("LSTM", True, False, 1, "last", False), ("LSTM", True, False, 1, "last", True),
    ("LSTM", False, False, 2, "every", True), ("LSTM", True, True, 2, "final", True),
    ("LSTM", False, True, 1, "bare", False), ("GRU", True, False, 2, "every", True),
    ("GRU", False, False, 1, "last", True), ("GRU", True, True, 1, "final", False),
]


@pytest.mark.parametrize("cell, batch_first, bidirectional, layers, head, dynamic_batch", DYNAMO_CASES)
def test_dynamo_export(cell, batch_first, bidirectional, layers, head, dynamic_batch, tmp_path):
    """The dynamo exporter's LSTM/GRU nodes, with the size arithmetic around them (Shape, Slice, Mul
    of directions by hidden, Reshape, Concat) followed as layout: equal to onnxruntime and PyTorch."""
    module = seeded(Net(cell, batch_first, bidirectional, layers, head))
    example = torch.randn(2, 6, 3) if batch_first else torch.randn(6, 2, 3)
    path = dynamo_export(module, tmp_path / "m.onnx", (example,), dynamic_batch)
    batch = 3 if dynamic_batch else 2
    x = np.random.default_rng(3).normal(0, 1.5, (batch, 6, 3)).astype(np.float32)  # the exporter fixes T
    model = edgernn.convert(path)
    assert_verified(model)
    got = model.predict(x)
    np.testing.assert_allclose(got, importer.run_source(path, [x])[0], **TOL)
    np.testing.assert_allclose(got, module_output(module, x, batch_first), **TOL)
    if not bidirectional:
        check_stream(model, x, got)


class WithStates(torch.nn.Module):
    """A streaming export: the states are graph inputs (the dynamo exporter slices them [0:1]) and outputs."""

    def __init__(self, cell):
        super().__init__()
        self.rnn = getattr(torch.nn, cell)(3, 5, batch_first=True)
        self.fc = torch.nn.Linear(5, 2)

    def forward(self, x, h, c=None):
        if c is None:
            y, h = self.rnn(x, h)
            return self.fc(y), h
        y, (h, c) = self.rnn(x, (h, c))
        return self.fc(y), h, c


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_dynamo_export_with_states_as_inputs(cell, tmp_path):
    module = seeded(WithStates(cell))
    states = 2 if cell == "LSTM" else 1
    args = (torch.randn(2, 6, 3),) + tuple(torch.zeros(1, 2, 5) for _ in range(states))
    path = dynamo_export(module, tmp_path / "m.onnx", args, True)
    rng = np.random.default_rng(1)
    feeds = [rng.normal(size=(3, 6, 3)).astype(np.float32)] + [rng.normal(size=(3, 5)).astype(np.float32)
                                                               for _ in range(states)]
    model = edgernn.convert(path)
    assert_verified(model)
    assert [i.rank for i in model.spec.inputs] == [3] + [2] * states
    assert_all_close(model.predict(*feeds), importer.run_source(path, feeds))


def test_dynamo_rnn_is_refused_naming_dynamo_false(tmp_path):
    """The dynamo exporter unrolls nn.RNN into per-step MatMul/Add/Tanh: no RNN node to read back.
    The refusal says which exporter wrote the file and that dynamo=False writes one."""
    path = dynamo_export(seeded(Net("RNN", True, False, 1, "last")), tmp_path / "m.onnx", (torch.randn(2, 6, 3),), True)
    with pytest.raises(UnsupportedModel) as info:
        edgernn.convert(path)
    message = str(info.value)
    assert "PyTorch's dynamo exporter" in message and "module 'rnn'" in message, message
    assert "torch.onnx.export(..., dynamo=False)" in message, message
    assert message.endswith("(see docs/onnx.md in the edgernn repository for what converts)"), message
    assert not any("dynamo" in p for p in info.value.problems)  # a note, not a problem
    # the same network through the TorchScript exporter converts
    export(Net("RNN", True, False, 1, "last"), tmp_path / "ts.onnx", True)
    assert_verified(edgernn.convert(tmp_path / "ts.onnx"))


# --- Gather of a constant table by integer codes: an embedding -------------------------------------


@pytest.mark.parametrize("dynamo", [False, True])
def test_embedding_gather_of_integer_codes(dynamo, tmp_path):
    """nn.Embedding exported to ONNX is a Gather of its weight by the graph input's int64 codes: an
    int input read by ir.Embedding, against onnxruntime (predict, the stream, verification)."""
    import contextlib
    import io

    from test_torch_import import Tagger, codes, scaled

    module = scaled(Tagger(), seed=24)
    x = codes()
    path = tmp_path / "tagger.onnx"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(module, (torch.from_numpy(x),), str(path), dynamo=True)
        else:
            torch.onnx.export(module, (torch.from_numpy(x),), str(path), dynamo=False, input_names=["x"],
                              output_names=["y"], dynamic_axes={"x": {0: "batch", 1: "time"}})
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    model = edgernn.convert(path)
    assert [type(n.op).__name__ for n in model.spec.nodes] == ["Embedding", "Recurrent", "Dense"]
    assert model.spec.inputs[0].dtype == "int"
    assert_all_close(model.predict(x), want)
    assert_all_close(importer.run_source(path, [x])[0], want)
    check_stream(model, x, want)
    assert_verified(model)
