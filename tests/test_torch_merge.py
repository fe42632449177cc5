"""PyTorch forward()s that branch and merge, against live PyTorch.

forward() is read as a graph (edgernn/importers/pytorch/forward.py): ``a + b``, ``a - b``, ``a * b``,
``torch.maximum``/``torch.minimum`` of two tensors in one layout (and ``(a + b) / 2``, the average)
become ``ir.Merge``, and
``torch.cat`` over the features (dim -1 of a sequence, dim 1 of ``(N, C, T)`` or of a vector)
``ir.Concatenate`` -- the IR the Keras importer gives Add/Concatenate. Each model is converted from
the module in memory (torch.fx), and from files of it scripted and traced (TorchScript); ``predict``
matches PyTorch at atol 1e-5 + rtol 1e-4, and a stream's step t is the module run on the first t + 1
steps. What stays refused -- a merge across layouts, over time, of a constant or parameter, of h_n
with the output, a module called twice -- is refused naming it; forward() of several arguments
is a model of several inputs. The merges export to the firmware, bit for bit with the simulation.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import edgernn  # noqa: E402
from edgernn import reference  # noqa: E402
from edgernn.errors import UnsupportedModel  # noqa: E402
from edgernn.graph import execute  # noqa: E402
from edgernn.importers import pytorch as importer  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning",
                                        "ignore::torch.jit.TracerWarning")

TOL = dict(atol=1e-5, rtol=1e-4)
C, T = 3, 10


def data(batch=2, steps=T, seed=1):
    return np.random.default_rng(seed).normal(0.0, 1.0, (batch, steps, C)).astype(np.float32)


def run(module, x: np.ndarray, channels_first: bool) -> np.ndarray:
    """``module`` on the IR's (batch, T, C) ``x``, laid out (N, C, T) where ``channels_first``."""
    inp = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1) if channels_first else x))
    with torch.no_grad():
        return module(inp).numpy()


def converted_three_ways(module, channels_first: bool, tmp_path) -> list:
    """The module converted in memory (torch.fx) and from its scripted and traced files; each checked
    against PyTorch: predict (kernels and the float64 reference), run_source, and a stream whose step
    t is the module on the first t + 1 steps."""
    module.eval()
    x = data()
    example = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1) if channels_first else x))
    torch.jit.script(module).save(str(tmp_path / "scripted.pt"))
    torch.jit.trace(module, example).save(str(tmp_path / "traced.pt"))
    want = run(module, x, channels_first)
    models = []
    for source in (module, tmp_path / "scripted.pt", tmp_path / "traced.pt"):
        model = edgernn.convert(source)
        np.testing.assert_allclose(model.predict(x), want, **TOL)
        np.testing.assert_allclose(execute(model.spec, [x], reference)[0], want, **TOL)
        np.testing.assert_allclose(importer.run_source(source, [x])[0], want, **TOL)
        stream = model.stream(len(x))
        for t in range(T):
            prefix = run(module, x[:, : t + 1], channels_first)
            np.testing.assert_allclose(stream.step(x[:, t]), prefix if prefix.ndim == 2 else prefix[:, -1], **TOL)
        models.append(model)
    return models


def merges(model) -> list:
    """The merge nodes of a model: (op class, mode or axis, how many inputs)."""
    return [(type(n.op).__name__, getattr(n.op, "mode", getattr(n.op, "axis", None)), len(n.inputs))
            for n in model.spec.nodes if type(n.op).__name__ in ("Merge", "Concatenate")]


class ResidualLstm(nn.Module):
    """The residual LSTM stack of the issue: ``y, _ = lstm2(x1); y = y + x1``, a Linear every step."""

    def __init__(self):
        super().__init__()
        self.lstm1 = nn.LSTM(C, 5, batch_first=True)
        self.lstm2 = nn.LSTM(5, 5, batch_first=True)
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        x1, _ = self.lstm1(x)
        y, _ = self.lstm2(x1)
        y = y + x1
        return self.fc(y)


class EveryMerge(nn.Module):
    """Every element-wise merge between a GRU's input and output: sub, mul, maximum, minimum, and the
    average torch.add(y, p) / 2."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(C, 4)
        self.gru = nn.GRU(4, 4, batch_first=True)

    def forward(self, x):
        p = self.proj(x)
        y, _ = self.gru(p)
        return torch.maximum(y, p) - torch.minimum(y, p) * (torch.add(y, p) / 2)


class ParallelConvs(nn.Module):
    """Two Conv1d branches on one (N, C, T) input -- a causal k=3 (padded 2, cropped) and a k=1 --
    concatenated over the channels (dim=1), then an LSTM on the last step."""

    def __init__(self):
        super().__init__()
        self.wide = nn.Conv1d(C, 4, 3, padding=2)
        self.point = nn.Conv1d(C, 2, 1)
        self.lstm = nn.LSTM(6, 5, batch_first=True)
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        a = torch.relu(self.wide(x)[:, :, :-2])
        b = self.point(x)
        y = torch.cat([a, b], dim=1).permute(0, 2, 1)
        out, _ = self.lstm(y)
        return self.fc(out[:, -1])


class TwoRnnHead(nn.Module):
    """A Linear on the last steps of two RNNs reading the same input: an LSTM's out[:, -1] and a
    GRU's h_n[-1], concatenated (dim=1 of vectors)."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(C, 4, batch_first=True)
        self.gru = nn.GRU(C, 3, batch_first=True)
        self.fc = nn.Linear(7, 2)

    def forward(self, x):
        a, _ = self.lstm(x)
        _, h = self.gru(x)
        return self.fc(torch.cat([a[:, -1], h[-1]], dim=1))


class AverageOfThree(nn.Module):
    """The mean of three recurrent modules' sequences as people write it, ``(a + b + c) / 3``: two
    sums, then a division by a number (an Affine; ``(a + b) / 2`` is an average merge)."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(C, 4, batch_first=True)
        self.gru = nn.GRU(C, 4, batch_first=True)
        self.lstm2 = nn.LSTM(C, 4, batch_first=True)  # (not nn.RNN: the dynamo ONNX exporter unrolls it)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        a, _ = self.lstm(x)
        b, _ = self.gru(x)
        c, _ = self.lstm2(x)
        return self.fc((a + b + c) / 3)


class Scaled(nn.Module):
    """Arithmetic with numbers: the input standardised in forward(), scaled and shifted, negated,
    subtracted from a number, an int multiplier: each an Affine."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(C, 5, batch_first=True)
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        x = (x - 0.5) / 4.0
        y, _ = self.lstm(x * 0.5 + 1)
        return 1.0 - self.fc(-(2 * y))


# module, whether its input is (N, C, T), the merges its model holds (sorted)
CONVERTED = {
    "residual_lstm_stack": (ResidualLstm, False, [("Merge", "add", 2)]),
    "every_element_wise_merge": (EveryMerge, False, [("Merge", mode, 2) for mode in
                                                     ("average", "maximum", "minimum", "multiply", "subtract")]),
    "parallel_convs_over_channels": (ParallelConvs, True, [("Concatenate", "features", 2)]),
    "linear_head_on_two_rnns": (TwoRnnHead, False, [("Concatenate", "features", 2)]),
    "average_of_three": (AverageOfThree, False, [("Merge", "add", 2), ("Merge", "add", 2)]),
    "scaled_and_shifted": (Scaled, False, []),
}


@pytest.mark.parametrize("case", CONVERTED)
def test_branches_and_merges_convert_and_stream(case, tmp_path):
    cls, channels_first, want = CONVERTED[case]
    torch.manual_seed(list(CONVERTED).index(case))
    for model in converted_three_ways(cls(), channels_first, tmp_path):
        assert sorted(merges(model)) == want


@pytest.mark.parametrize("case", ["average_of_three", "scaled_and_shifted"])
def test_arithmetic_with_numbers_is_an_affine(case):
    """``x / 3``, ``x * 0.5 + 1``, ``1 - x``, ``-x``: Affines of the scale and offset forward() wrote
    (the one right after the Linear folded into it)."""
    torch.manual_seed(5)
    model = edgernn.convert(CONVERTED[case][0]().eval())
    affines = [(float(n.op.scale[0]), float(n.op.offset[0])) for n in model.spec.nodes if type(n.op).__name__ == "Affine"]
    assert affines == ([(pytest.approx(1 / 3), 0.0)] if case == "average_of_three" else
                       [(1.0, -0.5), (0.25, 0.0), (0.5, 0.0), (1.0, 1.0), (2.0, 0.0), (-1.0, 0.0)])


def test_each_recurrent_module_has_its_own_head():
    """out[:, -1] of one and h_n[-1] of the other: both return their last step only."""
    model = edgernn.convert(TwoRnnHead().eval(), verify=False)
    recurrent = [n.op for n in model.spec.nodes if type(n.op).__name__ == "Recurrent"]
    assert [op.return_sequences for op in recurrent] == [False, False]


# --- what stays refused -------------------------------------------------------------------------------


class Refused(nn.Module):
    """An LSTM (batch_first) whose results forward() combines as ``how`` says."""

    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.lstm = nn.LSTM(C, C, batch_first=True)
        if how == "parameter":
            self.scale = nn.Parameter(torch.ones(C))

    def forward(self, x):
        out, (h, _) = self.lstm(x)
        if self.how == "over_time":
            return torch.cat([out, x], dim=1)
        if self.how == "reciprocal":
            return 1.0 / out
        if self.how == "by_zero":
            return out / 0
        if self.how == "by_tensor":
            return out / x
        if self.how == "parameter":
            return out * self.scale
        if self.how == "last_of_sum":
            return (out + x)[:, -1]
        if self.how == "h_n":
            return out + h
        if self.how == "layouts":
            return out + x.permute(0, 2, 1)
        return torch.cat([out, x], dim=0)


REFUSED = {
    "over_time": r"cat\(dim=1\) joins tensors laid out \(N, T, C\) over the time axis",
    "reciprocal": r"divides the value 1.0 by a tensor laid out \(N, T, C\); edgernn divides a tensor only by a number",
    "by_zero": r"divides a tensor laid out \(N, T, C\) by the value 0; edgernn divides a tensor only by a number other than 0",
    "by_tensor": r"divides a tensor laid out \(N, T, C\) by a tensor laid out \(N, T, C\)",
    "parameter": r"holds parameters of its own \(scale\) that its forward\(\) uses",
    "last_of_sum": r"last step of a sequence that is not a recurrent module's output",
    "h_n": r"add\(\) merges tensors laid out \(layers, N, H\) and \(N, T, C\)",
    "layouts": r"add\(\) merges tensors laid out \(N, C, T\) and \(N, T, C\)",
    "batch": r"cat\(dim=0\) joins tensors laid out \(N, T, C\) over dim 0",
}


@pytest.mark.parametrize("how", REFUSED)
def test_unsupported_merges_are_refused_naming_them(how):
    with pytest.raises(UnsupportedModel, match=REFUSED[how]):
        importer.from_torch_module(Refused(how).eval())


def test_unsupported_merge_refused_from_torchscript(tmp_path):
    torch.jit.trace(Refused("over_time"), torch.zeros(2, T, C)).save(str(tmp_path / "traced.pt"))
    with pytest.raises(UnsupportedModel, match=REFUSED["over_time"]):
        importer.load_torch_file(tmp_path / "traced.pt")


class TwoSensors(nn.Module):
    """forward(imu, env): an LSTM on each input (of other features), their sequences concatenated
    over the features, a Linear on every step."""

    def __init__(self):
        super().__init__()
        self.imu_rnn = nn.LSTM(C, 4, batch_first=True)
        self.env_rnn = nn.GRU(2, 3, batch_first=True)
        self.fc = nn.Linear(7, 2)

    def forward(self, imu, env):
        a, _ = self.imu_rnn(imu)
        b, _ = self.env_rnn(env)
        return self.fc(torch.cat([a, b], dim=-1))


def test_several_inputs_convert_and_stream(tmp_path):
    """forward() of two arguments: a model of two inputs named as forward()'s arguments, from fx and
    from scripted and traced files (verified against PyTorch on conversion); predict(x1, x2) is the
    module's answer and step(x1_t, x2_t) the module's on the prefix."""
    torch.manual_seed(7)
    module = TwoSensors().eval()
    x1, x2 = data(seed=2), np.random.default_rng(3).normal(size=(2, T, 2)).astype(np.float32)
    t1, t2 = torch.from_numpy(x1), torch.from_numpy(x2)
    torch.jit.script(module).save(str(tmp_path / "scripted.pt"))
    torch.jit.trace(module, (t1, t2)).save(str(tmp_path / "traced.pt"))
    with torch.no_grad():
        want = module(t1, t2).numpy()
    for source in (module, tmp_path / "scripted.pt", tmp_path / "traced.pt"):
        model = edgernn.convert(source)
        assert [(i.name, i.features) for i in model.spec.inputs] == [("imu", C), ("env", 2)]
        np.testing.assert_allclose(model.predict(x1, x2), want, **TOL)
        np.testing.assert_allclose(importer.run_source(source, [x1, x2])[0], want, **TOL)
        stream = model.stream(2)
        steps = np.stack([stream.step(x1[:, t], x2[:, t]) for t in range(T)], axis=1)
        np.testing.assert_allclose(steps, want, **TOL)


class SharedModule(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(C, 4, batch_first=True)

    def forward(self, a, b):
        return self.lstm(a)[0] + self.lstm(b)[0]


def test_a_module_called_on_two_inputs_is_refused():
    """One module run on both arguments (shared weights) is no layer of the IR, which runs each layer
    once: refused, naming the module."""
    with pytest.raises(UnsupportedModel, match="'lstm'"):
        importer.from_torch_module(SharedModule())


@pytest.mark.parametrize("case", ["residual_lstm_stack", "every_element_wise_merge", "parallel_convs_over_channels",
                                  "scaled_and_shifted"])
def test_merges_export_to_firmware_bit_exact(case, tmp_path):
    """A PyTorch merge is the IR Keras's merge layers give (arithmetic with numbers an Affine, as a
    BatchNormalization), so the firmware runs it: int8 calibrated on random data, exported, and the C
    equals the simulation bit for bit."""
    from test_firmware_conv import assert_exported_c_equals_simulation, inputs

    cls = CONVERTED[case][0]
    torch.manual_seed(3)
    qmodel = edgernn.convert(cls().eval()).quantize(inputs(case, 1, batch=4, steps=80), "int8")
    assert any(layer.kind == "merge" for layer in qmodel.spec.layers) or case == "scaled_and_shifted"
    assert_exported_c_equals_simulation(qmodel, case, tmp_path)
