"""ONNX graphs that branch and merge, and LayerNormalization, against live onnxruntime.

The PyTorch models of tests/test_torch_merge.py exported by ``torch.onnx.export`` (the TorchScript
exporter, with dynamic batch and time, and the dynamo exporter): ``Add``/``Sub``/``Mul``/``Max``/``Min``
of two computed tensors become ``ir.Merge`` (``Div`` of a sum of two by 2 the average), ``Concat`` over
the features ``ir.Concatenate``, two graph inputs a model of two inputs, and ``LayerNormalization``
``ir.LayerNorm``; ``predict`` matches onnxruntime at atol 1e-5 + rtol 1e-4 and a stream's step t is
``predict`` of the first t + 1 steps. A merge with a constant, or a Concat over time, stays refused
naming the node.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
from test_torch_merge import CONVERTED, C, T, AverageOfThree, TwoSensors, merges  # noqa: E402

import edgernn  # noqa: E402
from edgernn.errors import UnsupportedModel  # noqa: E402

nn = torch.nn
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
TOL = dict(atol=1e-5, rtol=1e-4)


class NormedResidual(nn.Module):
    """``nn.LayerNorm`` of a residual sum of two LSTMs, a Linear on every step."""

    def __init__(self):
        super().__init__()
        self.lstm1 = nn.LSTM(C, 5, batch_first=True)
        self.lstm2 = nn.LSTM(5, 5, batch_first=True)
        self.norm = nn.LayerNorm(5, eps=1e-3)
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        x1, _ = self.lstm1(x)
        y, _ = self.lstm2(x1)
        return self.fc(self.norm(y + x1))


class NormedLast(nn.Module):
    """A Linear on the last step of an ``nn.LayerNorm`` of a GRU's output (the norm of its final state)."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(C, 4, batch_first=True)
        self.norm = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.norm(self.gru(x)[0])[:, -1])


# module, whether its input is (N, C, T), the merges (and LayerNorms) its model holds (sorted)
CASES = {
    **CONVERTED,
    "layer_norm_of_a_residual": (NormedResidual, False, [("LayerNorm", None, 1), ("Merge", "add", 2)]),
    "last_step_of_a_layer_norm": (NormedLast, False, [("LayerNorm", None, 1)]),
}


def inputs_of(case: str) -> list:
    """The ONNX (= PyTorch) layout inputs of a case: (batch, T, C), or (batch, C, T) where channels first."""
    rng = np.random.default_rng(5)
    if case == "two_sensors":
        return [rng.normal(size=(2, T, C)).astype(np.float32), rng.normal(size=(2, T, 2)).astype(np.float32)]
    return [rng.normal(size=(2, C, T) if CASES[case][1] else (2, T, C)).astype(np.float32)]


def export(module, xs: list, path, dynamo: bool, channels_first: bool = False):
    """The TorchScript exporter with dynamic batch and time, or the dynamo exporter with fixed shapes."""
    names = ["imu", "env"] if len(xs) == 2 else ["x"]
    args = tuple(torch.from_numpy(x) for x in xs)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if dynamo:
            pytest.importorskip("onnxscript")  # the dynamo exporter's dependency
            torch.onnx.export(module, args, str(path), dynamo=True, input_names=names, output_names=["y"])
        else:
            torch.onnx.export(module, args, str(path), dynamo=False, input_names=names, output_names=["y"],
                              dynamic_axes={n: {0: "batch", 2 if channels_first else 1: "time"} for n in names})
    return path


def onnxruntime_output(path, xs: list) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: x for i, x in zip(session.get_inputs(), xs)})[0]


def edgernn_inputs(xs: list, channels_first: bool) -> list:
    return [np.ascontiguousarray(x.transpose(0, 2, 1)) if channels_first else x for x in xs]


def with_norms(model) -> list:
    return merges(model) + [("LayerNorm", None, 1) for n in model.spec.nodes if type(n.op).__name__ == "LayerNorm"]


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("case", CASES)
def test_merges_convert_and_match_onnxruntime(case, dynamo, tmp_path):
    cls, channels_first, want_merges = CASES[case]
    torch.manual_seed(list(CASES).index(case))
    xs = inputs_of(case)
    path = export(cls().eval(), xs, tmp_path / "m.onnx", dynamo, channels_first)
    model = edgernn.convert(path, verify=False)
    assert sorted(with_norms(model)) == want_merges
    np.testing.assert_allclose(model.predict(*edgernn_inputs(xs, channels_first)), onnxruntime_output(path, xs),
                               **TOL)


@pytest.mark.parametrize("case", ["layer_norm_of_a_residual", "two_sensors"])
def test_streams_step_as_predict_on_every_prefix(case, tmp_path):
    """A residual + LayerNorm model, and the two-input model: the ONNX graph's
    two inputs are the model's, in order; step t of a stream is predict of the first t + 1 steps, which
    is onnxruntime's answer on them (the TorchScript exporter's dynamic time axis)."""
    torch.manual_seed(11)
    module = NormedResidual() if case != "two_sensors" else TwoSensors()
    xs = inputs_of(case)
    path = export(module.eval(), xs, tmp_path / "m.onnx", dynamo=False)
    model = edgernn.convert(path)  # verified against onnxruntime on conversion
    assert [(i.name, i.features) for i in model.spec.inputs] == [(n, x.shape[-1]) for n, x in
                                                                 zip(["imu", "env"] if len(xs) == 2 else ["x"], xs)]
    want = onnxruntime_output(path, xs)
    np.testing.assert_allclose(model.predict(*xs), want, **TOL)
    stream = model.stream(2)
    for t in range(T):
        prefix = [x[:, : t + 1] for x in xs]
        step = stream.step(*[x[:, t] for x in xs])
        np.testing.assert_allclose(step, model.predict(*prefix)[:, -1] if want.ndim == 3 else model.predict(*prefix),
                                   **TOL)
        np.testing.assert_allclose(step, onnxruntime_output(path, prefix)[..., -1, :] if want.ndim == 3
                                   else onnxruntime_output(path, prefix), **TOL)


class Refused(nn.Module):
    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.lstm = nn.LSTM(C, C, batch_first=True)

    def forward(self, x):
        out, _ = self.lstm(x)
        if self.how == "constant":
            return out * self.lstm.weight_ih_l0[:T, :].detach()  # a constant over time and features, not per feature
        if self.how == "over_time":
            return torch.cat([out, x], dim=1)
        if self.how == "last_of_sum":
            return (out + x)[:, -1]
        return out + x.permute(0, 2, 1)  # layouts


REFUSED = {
    "constant": r"\(Mul\): Mul by a constant of shape \(10, 3\); edgernn scales or shifts by one number or one per "
                r"feature \(3\) on the last axis",
    "over_time": r"node '/Concat' \(Concat\): Concat along an axis that is neither the features",
    "last_of_sum": r"node '/Gather' \(Gather\): the last step of a merge of branches",
    "layouts": r"node '/Add' \(Add\): Add of tensors laid out differently \(axis 1 is the time axis in one, a "
               r"feature axis in the other\)",
}


@pytest.mark.parametrize("how", REFUSED)
def test_other_merges_are_refused_naming_the_node(how, tmp_path):
    x = np.zeros((2, C if how == "layouts" else T, C), np.float32)  # square to permute
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(Refused(how).eval(), (torch.from_numpy(x),), str(tmp_path / "r.onnx"), dynamo=False)
    with pytest.raises(UnsupportedModel, match=REFUSED[how]):
        edgernn.convert(tmp_path / "r.onnx", verify=False)


class Gains(nn.Module):
    """Per-feature constants (buffers: ONNX initializers) scaling and shifting the input before an LSTM,
    as a module that standardises its own input does; the LSTM's output over a number."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.5, -1.0, 2.0]))
        self.register_buffer("gain", torch.tensor([2.0, 0.25, -1.5]))
        self.lstm = nn.LSTM(C, 4, batch_first=True)

    def forward(self, x):
        out, _ = self.lstm((x - self.mean) * self.gain + 1.0)
        return out / 8.0


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_constants_per_feature_are_affines(dynamo, tmp_path):
    """``Sub``/``Mul`` by an initializer of one value per feature and ``Add``/``Div`` by a number: Affines
    (PyTorch itself refuses the module: forward() reads its buffers directly)."""
    torch.manual_seed(2)
    xs = inputs_of("residual_lstm_stack")
    path = export(Gains().eval(), xs, tmp_path / "m.onnx", dynamo)
    model = edgernn.convert(path, verify=False)
    affines = [(list(n.op.scale), list(n.op.offset)) for n in model.spec.nodes if type(n.op).__name__ == "Affine"]
    assert affines == [([1, 1, 1], [-0.5, 1.0, -2.0]), ([2.0, 0.25, -1.5], [0, 0, 0]), ([1, 1, 1], [1, 1, 1]),
                       ([0.125] * 4, [0] * 4)]
    np.testing.assert_allclose(model.predict(*xs), onnxruntime_output(path, xs), **TOL)


class ThreeSum(AverageOfThree):
    def forward(self, x):
        a, _ = self.lstm(x)
        b, _ = self.gru(x)
        c, _ = self.lstm2(x)
        return self.fc(a + b + c)


@pytest.mark.parametrize("op, mode", [("Sum", "add"), ("Mean", "average")])
def test_sum_and_mean_of_three(op, mode, tmp_path):
    """ONNX's variadic Sum and Mean: ``a + b + c`` of three recurrent modules exported, its two Adds
    made one Sum (or Mean) node of the three, run by onnxruntime: one merge of three inputs."""
    import onnx
    from onnx import helper

    torch.manual_seed(6)
    xs = inputs_of("residual_lstm_stack")
    proto = onnx.load(str(export(ThreeSum().eval(), xs, tmp_path / "adds.onnx", dynamo=False)))
    graph = proto.graph
    second = next(n for n in graph.node if n.op_type == "Add" and any(m.op_type == "Add" and m.output[0] in n.input
                                                                        for m in graph.node))
    first = next(n for n in graph.node if n.op_type == "Add" and n.output[0] in second.input)
    inputs = list(first.input) + [name for name in second.input if name != first.output[0]]
    joined = helper.make_node(op, inputs, list(second.output), name="/Joined")
    kept = [joined if n is second else n for n in graph.node if n is not first]
    del graph.node[:]
    graph.node.extend(kept)
    path = tmp_path / "m.onnx"
    onnx.save(proto, str(path))
    model = edgernn.convert(path, verify=False)
    assert merges(model) == [("Merge", mode, 3)]
    np.testing.assert_allclose(model.predict(*xs), onnxruntime_output(path, xs), **TOL)
