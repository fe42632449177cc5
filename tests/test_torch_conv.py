"""Convolutional front-ends from PyTorch, and forward() read from its graph, against live PyTorch.

Conv1d (stride, dilation, groups, bias, padding valid/same/causal), MaxPool1d/AvgPool1d, the global
adaptive poolings, BatchNorm1d (folded into the Conv1d/Linear before it, or an Affine), Flatten and
activations, in (N, C, T) with the permutes to the recurrent part; the order of the layers, the
permutes and the head (out[:, -1], every step, h_n[-1]) read from torch.fx (in-memory modules) and
from TorchScript graphs (scripted and traced, saved to files); the refusals, each naming what it
refuses. Every comparison is edgernn's ``predict`` (float32 kernels and the float64 reference)
against the module run by PyTorch, at atol 1e-5 + rtol 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

import edgernn  # noqa: E402
from edgernn import ir, reference  # noqa: E402
from edgernn.errors import UnsupportedModel  # noqa: E402
from edgernn.graph import execute  # noqa: E402
from edgernn.importers import pytorch as importer  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning",
                                        "ignore::torch.jit.TracerWarning")

TOL = dict(atol=1e-5, rtol=1e-4)
C, T = 6, 24


def scaled(module, seed=0, scale=1.5):
    """Seeded weights of order-1 pre-activations; BatchNorm running statistics away from 0 and 1."""
    torch.manual_seed(seed)
    for name, p in module.named_parameters():
        nn.init.uniform_(p, -scale / np.sqrt(max(p[0].numel(), 1)), scale / np.sqrt(max(p[0].numel(), 1)))
    for m in module.modules():
        if isinstance(m, nn.BatchNorm1d) and m.running_mean is not None:
            with torch.no_grad():
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.3, 2.0)
    return module.eval()


def data(batch=3, steps=T, features=C, seed=1):
    return np.random.default_rng(seed).normal(0.0, 1.0, (batch, steps, features)).astype(np.float32)


def ncl(x):
    """The IR's (batch, T, C) as PyTorch's (N, C, T)."""
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1)))


def run(module, inp):
    with torch.no_grad():
        return module(inp).numpy()


def check(source, x, want, **options):
    """Convert ``source``, compare predict (kernels and reference) and run_source with ``want``."""
    model = edgernn.convert(source, **options)
    got = model.predict(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, **TOL)
    np.testing.assert_allclose(execute(model.spec, [x], reference)[0], want, **TOL)
    np.testing.assert_allclose(importer.run_source(source, [x], **options)[0], want, **TOL)
    return model


def ops(model):
    return [type(node.op).__name__ for node in model.spec.nodes]


def three_ways(module, example, tmp_path):
    """The module in memory (torch.fx), scripted and traced, each saved and loaded from a file."""
    torch.jit.script(module).save(str(tmp_path / "scripted.pt"))
    torch.jit.trace(module, example).save(str(tmp_path / "traced.pt"))
    return [module, tmp_path / "scripted.pt", tmp_path / "traced.pt"]


def check_three_ways(module, x, tmp_path):
    """:func:`check` of ``module`` in memory, scripted and traced, on ``x``; the three models."""
    want = run(module, ncl(x))
    return [check(source, x, want) for source in three_ways(module, ncl(x), tmp_path)]


# --- the CNN-LSTM of the issue -------------------------------------------------------------------


class CnnLstm(nn.Module):
    """Conv1d(6->32, 5) -> ReLU -> MaxPool1d(2) -> permute -> LSTM(64, batch_first) -> Linear(6) on
    the last step."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(6, 32, 5)
        self.act = nn.ReLU()
        self.pool = nn.MaxPool1d(2)
        self.lstm = nn.LSTM(32, 64, batch_first=True)
        self.fc = nn.Linear(64, 6)

    def forward(self, x):
        y = self.pool(self.act(self.conv(x)))
        out, _ = self.lstm(y.permute(0, 2, 1))
        return self.fc(out[:, -1])


def test_cnn_lstm_from_fx_script_and_trace(tmp_path):
    module = scaled(CnnLstm())
    x = data()
    want = run(module, ncl(x))
    for source in three_ways(module, ncl(x), tmp_path):
        model = check(source, x, want)  # no head=: forward's out[:, -1] says "last"
        assert model.spec.source["head"] == "last"
        assert ops(model) == ["Conv1D", "Pooling1D", "Recurrent", "Dense"]
        conv = model.spec.nodes[0].op
        assert conv.activation == "relu" and conv.kernel.shape == (5, 6, 32)


# --- Conv1d options --------------------------------------------------------------------------------

CONV_CASES = {
    "valid": dict(kernel_size=3),
    "k1": dict(kernel_size=1),
    "int_0": dict(kernel_size=4, padding=0),
    "valid_str": dict(kernel_size=3, padding="valid"),
    "same_str": dict(kernel_size=4, padding="same"),
    "same_int": dict(kernel_size=5, padding=2),
    "same_dilated": dict(kernel_size=3, padding=2, dilation=2),
    "same_str_dilated": dict(kernel_size=4, padding="same", dilation=3),
    "stride": dict(kernel_size=3, stride=2),
    "stride_3": dict(kernel_size=4, stride=3),
    "dilation": dict(kernel_size=3, dilation=2),
    "groups": dict(kernel_size=3, groups=2, out=8),
    "depthwise": dict(kernel_size=3, groups=6, out=12, padding=1),
    "no_bias": dict(kernel_size=3, bias=False),
}


class ConvGru(nn.Module):
    def __init__(self, out=10, **conv):
        super().__init__()
        self.conv = nn.Conv1d(C, out, **conv)
        self.gru = nn.GRU(out, 5, batch_first=True)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        y = torch.tanh(self.conv(x)).transpose(1, 2)
        return self.fc(self.gru(y)[0])  # every step


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv1d_options(case):
    module = scaled(ConvGru(**CONV_CASES[case]), seed=3)
    x = data()
    want = run(module, ncl(x))
    model = check(module, x, want)
    assert model.spec.source["head"] == "every"
    conv = model.spec.nodes[0].op
    assert conv.activation == "tanh"
    padding = CONV_CASES[case].get("padding", 0)
    assert conv.padding == ("same" if padding not in (0, "valid") else "valid")


class Causal(nn.Module):
    """The common PyTorch causal convolution: pad (k-1)*d on both sides, slice the right end off."""

    def __init__(self, k=3, d=2):
        super().__init__()
        self.pad = (k - 1) * d
        self.conv = nn.Conv1d(C, 8, k, padding=self.pad, dilation=d)
        self.lstm = nn.LSTM(8, 5)

    def forward(self, x):
        y = F.relu(self.conv(x)[:, :, :-self.pad])
        out, (h, c) = self.lstm(y.permute(2, 0, 1))  # time-major
        return h[-1]


def test_causal_convolution_and_final_state(tmp_path):
    module = scaled(Causal(), seed=4)
    x = data()
    want = run(module, ncl(x))
    for source in three_ways(module, ncl(x), tmp_path):
        model = check(source, x, want)
        assert model.spec.source["head"] == "final"
        assert model.spec.nodes[0].op.padding == "causal"


def test_causal_convolution_streams_as_pytorch_runs_each_prefix(tmp_path):
    """The converted causal Conv1d keeps its past inputs as stream state: step t's output is the
    module's on the first t + 1 samples."""
    module = scaled(Causal(), seed=4)
    x = data(steps=12)
    model = edgernn.convert(module)
    s = model.stream(3)
    for t in range(12):
        np.testing.assert_allclose(s.step(x[:, t]), run(module, ncl(x[:, : t + 1])), **TOL)


# --- explicit padding ---------------------------------------------------------------------------------

PADDED_CONVS = {  # Conv1d's own padding that is none of the IR's: a Pad1D and a valid Conv1D
    "k5_p1": dict(kernel_size=5, padding=1),
    "k3_p1_stride2": dict(kernel_size=3, padding=1, stride=2),
    "k3_p2_no_slice": dict(kernel_size=3, padding=2),
    "tuple_dilated": dict(kernel_size=3, padding=(3,), dilation=2),
}


@pytest.mark.parametrize("case", PADDED_CONVS)
def test_conv1d_explicit_padding(case):
    module = scaled(ConvGru(**PADDED_CONVS[case]), seed=3)
    x = data()
    model = check(module, x, run(module, ncl(x)))
    assert ops(model)[:2] == ["Pad1D", "Conv1D"]
    assert model.spec.nodes[1].op.padding == "valid" and model.spec.nodes[1].op.activation == "tanh"


class LeftPadded(nn.Module):
    """A causal convolution written as an explicit left pad of (k-1)*d zeros before a valid Conv1d:
    F.pad, nn.ConstantPad1d, nn.ZeroPad1d, or the pad split between a module and the conv's own."""

    def __init__(self, how, k=3, d=2):
        super().__init__()
        self.how, pad = how, (k - 1) * d
        self.pad = {"constant": nn.ConstantPad1d((pad, 0), 0.0), "zero": nn.ZeroPad1d((pad, 0)),
                    "split": nn.ZeroPad1d((pad - 1, -1))}.get(how, nn.Identity())
        self.conv = nn.Conv1d(C, 8, k, dilation=d, padding=1 if how == "split" else 0)
        self.gru = nn.GRU(8, 5, batch_first=True)

    def forward(self, x):
        y = F.pad(x, (4, 0)) if self.how == "function" else self.pad(x)
        return self.gru(F.relu(self.conv(y)).transpose(1, 2))[0]


@pytest.mark.parametrize("how", ["function", "constant", "zero"])
def test_explicit_left_pad_is_a_causal_conv_that_streams(how, tmp_path):
    module = scaled(LeftPadded(how), seed=6)
    x = data(steps=10)
    for model in check_three_ways(module, x, tmp_path):
        assert ops(model) == ["Conv1D", "Recurrent"]
        assert model.spec.nodes[0].op.padding == "causal" and model.spec.nodes[0].op.activation == "relu"
    s = model.stream(3)  # the traced file's: step t is the module run on the first t + 1 samples
    for t in range(10):
        np.testing.assert_allclose(s.step(x[:, t]), run(module, ncl(x[:, : t + 1]))[:, -1], **TOL)


def test_a_crop_and_a_pad_that_are_no_ir_padding_stay_a_pad1d():
    """Pads (3, -1) (a crop on the right), then the conv's own (1, 1): (4, 0), causal in sum, but a
    crop is never folded into a padding (it removes real timesteps)."""
    module = scaled(LeftPadded("split"), seed=6)
    x = data()
    model = check(module, x, run(module, ncl(x)))
    assert ops(model) == ["Pad1D", "Pad1D", "Conv1D", "Recurrent"]


@pytest.mark.parametrize("pool, made", [
    (nn.MaxPool1d(3, stride=1, padding=1), ["Pooling1D"]),  # -inf pads: the IR's same
    (nn.AvgPool1d(3, stride=2, padding=1), ["Pad1D", "Pooling1D"]),  # pads counted: zeros
    (nn.AvgPool1d(5, stride=1, padding=2, count_include_pad=False), ["Pooling1D"]),  # pads left out: same
], ids=repr)
def test_pooling_padding(pool, made, tmp_path):
    for model in check_three_ways(scaled(Pools(pool), seed=5), data(), tmp_path):
        assert ops(model)[1:-1] == made


def test_pooling_and_pad_refusals_name_the_layer():
    refused(Pools(nn.MaxPool1d(4, stride=2, padding=1)), "'pool' (MaxPool1d): padding=1", "-inf", "stride 1")
    refused(Pools(nn.AvgPool1d(4, stride=2, padding=2, count_include_pad=False)),
            "'pool' (AvgPool1d): padding=2 with count_include_pad=False")

    class Reflect(LeftPadded):
        def forward(self, x):
            return self.gru(self.conv(F.pad(x, (4, 0), mode="reflect")).transpose(1, 2))[0]

    refused(Reflect("function"), "pad((4, 0), mode='reflect')")
    one = LeftPadded("constant")
    one.pad = nn.ConstantPad1d((4, 0), 1.0)
    refused(one, "'pad' (ConstantPad1d)", "value=1.0")


# --- pooling, BatchNorm, Flatten --------------------------------------------------------------------


class Pools(nn.Module):
    def __init__(self, pool):
        super().__init__()
        self.conv = nn.Conv1d(C, 8, 3, padding=1)
        self.pool = pool
        self.lstm = nn.LSTM(8, 5, batch_first=True)

    def forward(self, x):
        return self.lstm(self.pool(F.gelu(self.conv(x))).permute(0, 2, 1))[0][:, -1]


@pytest.mark.parametrize("pool", [nn.MaxPool1d(2), nn.MaxPool1d(3, stride=2), nn.AvgPool1d(2),
                                  nn.AvgPool1d(4, stride=3, count_include_pad=False), nn.MaxPool1d(3, 1)],
                         ids=repr)
def test_windowed_pooling(pool, tmp_path):
    module = scaled(Pools(pool), seed=5)
    x = data()
    want = run(module, ncl(x))
    for source in three_ways(module, ncl(x), tmp_path):
        model = check(source, x, want)
        assert ops(model)[1] == "Pooling1D"


class Upsampled(nn.Module):
    """Conv1d -> ReLU -> nn.Upsample (nearest) -> a strided Conv1d over the repeats -> GRU, every step."""

    def __init__(self, mode="nearest", scale=2):
        super().__init__()
        self.conv = nn.Conv1d(C, 8, 3)
        self.up = nn.Upsample(scale_factor=scale, mode=mode)
        self.conv2 = nn.Conv1d(8, 6, 2, stride=3)
        self.gru = nn.GRU(6, 5, batch_first=True)

    def forward(self, x):
        return self.gru(self.conv2(self.up(F.relu(self.conv(x)))).transpose(1, 2))[0]


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact"])
def test_upsample_is_upsampling1d_and_streams(mode, tmp_path):
    """nn.Upsample(scale_factor=2) of (N, C, T), nearest: each timestep repeated, Keras's
    UpSampling1D; it streams (tests/test_reshape_stream.py): the stream's last output is PyTorch's."""
    module = scaled(Upsampled(mode), seed=9)
    x = data(steps=11)
    sources = three_ways(module, ncl(x), tmp_path) if mode == "nearest" else [module]  # (traced: nearest only)
    for model in [check(source, x, run(module, ncl(x))) for source in sources]:
        assert ops(model) == ["Conv1D", "UpSample1D", "Conv1D", "Recurrent"] and model.spec.nodes[1].op.size == 2
        np.testing.assert_allclose(model.stream(3).run(x)[:, -1], run(module, ncl(x))[:, -1], **TOL)


@pytest.mark.parametrize("up, text", [(nn.Upsample(scale_factor=1.5), "scale_factor=1.5"),
                                      (nn.Upsample(scale_factor=2, mode="linear"), "mode='linear'"),
                                      (nn.Upsample(size=20), "size=20")], ids=["fraction", "linear", "size"])
def test_upsample_options_refused_by_name(up, text):
    module = scaled(Upsampled(), seed=9)
    module.up = up
    with pytest.raises(UnsupportedModel) as info:
        edgernn.convert(module)
    assert "'up' (Upsample)" in str(info.value) and text in str(info.value)


class Cropped(nn.Module):
    """A strided valid Conv1d whose output loses timesteps at either end, ``y[:, :, start:stop]``,
    before an LSTM read on every step."""

    def __init__(self, start, stop):
        super().__init__()
        self.conv = nn.Conv1d(C, 8, 3, stride=2)
        self.lstm = nn.LSTM(8, 5, batch_first=True)
        self.start, self.stop = start, stop

    def forward(self, x):
        y = torch.tanh(self.conv(x))
        y = y[:, :, self.start:] if self.stop is None else y[:, :, self.start:self.stop]
        return self.lstm(y.permute(0, 2, 1))[0]


@pytest.mark.parametrize("start, stop", [(2, -1), (0, -2), (3, None)], ids=["2:-1", ":-2", "3:"])
def test_time_crop_is_cropping1d_and_streams(start, stop, tmp_path):
    """``y[:, :, a:-b]`` of (N, C, T) is Keras's Cropping1D((a, b)), on any length; it streams (a delay
    line of b rows, tests/test_reshape_stream.py): the stream's last output is PyTorch's."""
    module = scaled(Cropped(start, stop), seed=10)
    x = data(steps=13)
    for model in check_three_ways(module, x, tmp_path):
        crop = model.spec.nodes[1].op
        assert ops(model) == ["Conv1D", "Pad1D", "Recurrent"] and (crop.left, crop.right) == (-start, stop or 0)
        np.testing.assert_allclose(model.stream(3).run(x)[:, -1], run(module, ncl(x))[:, -1], **TOL)
    longer = data(steps=20, seed=2)  # another length, as PyTorch's module takes it
    np.testing.assert_allclose(model.predict(longer), run(module, ncl(longer)), **TOL)


def test_a_crop_to_a_fixed_stop_is_refused():
    with pytest.raises(UnsupportedModel, match=r"indexes a tensor laid out \(N, C, T\) with \[:, :, 1:5\]"):
        edgernn.convert(scaled(Cropped(1, 5)))


class GlobalCnn(nn.Module):
    """A convolutional classifier without a recurrent module: global pooling, Flatten, Linear."""

    def __init__(self, pool, flatten="module"):
        super().__init__()
        self.conv = nn.Conv1d(C, 8, 3)
        self.bn = nn.BatchNorm1d(8)
        self.pool = pool
        self.flat = nn.Flatten()
        self.fc = nn.Linear(8, 4)
        self.how = flatten

    def forward(self, x):
        y = self.pool(F.relu(self.bn(self.conv(x))))
        if self.how == "module":
            y = self.flat(y)
        elif self.how == "squeeze":
            y = y.squeeze(-1)
        else:
            y = y.view(y.size(0), -1)
        return torch.softmax(self.fc(y), dim=-1)


@pytest.mark.parametrize("pool", [nn.AdaptiveAvgPool1d(1), nn.AdaptiveMaxPool1d(1)], ids=repr)
@pytest.mark.parametrize("flatten", ["module", "squeeze", "view"])
def test_global_pooling(pool, flatten, tmp_path):
    module = scaled(GlobalCnn(pool, flatten), seed=6)
    x = data()
    want = run(module, ncl(x))
    sources = three_ways(module, ncl(x), tmp_path) if flatten == "view" else [module]
    for source in sources:
        model = check(source, x, want)
        assert ops(model) == ["Conv1D", "Pooling1D", "Dense"]  # BatchNorm folded into the Conv1D
        assert model.spec.nodes[1].op.global_pool


class Norms(nn.Module):
    """BatchNorm1d after a Conv1d (folded), after an activation (an Affine), after a Linear on the
    vector the head sees (folded) and after the LSTM's last step behind a ReLU (an Affine)."""

    def __init__(self, affine=True):
        super().__init__()
        self.conv = nn.Conv1d(C, 8, 3, bias=False)
        self.bn0 = nn.BatchNorm1d(8, affine=affine)
        self.bn1 = nn.BatchNorm1d(8, eps=1e-3)
        self.lstm = nn.LSTM(8, 6, batch_first=True)
        self.fc = nn.Linear(6, 5)
        self.bn2 = nn.BatchNorm1d(5)
        self.bn3 = nn.BatchNorm1d(5, affine=affine)
        self.out = nn.Linear(5, 2)

    def forward(self, x):
        y = self.bn1(torch.relu(self.bn0(self.conv(x))))
        out, _ = self.lstm(y.transpose(1, 2))
        return self.out(self.bn3(F.relu(self.bn2(self.fc(out[:, -1])))))


@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_folded_and_not(affine, tmp_path):
    module = scaled(Norms(affine), seed=7)
    x = data()
    want = run(module, ncl(x))
    for source in three_ways(module, ncl(x), tmp_path):
        model = check(source, x, want)
        assert ops(model) == ["Conv1D", "Affine", "Recurrent", "Dense", "Affine", "Dense"]
        assert model.spec.nodes[0].op.bias is not None  # bn0's offset became the bias


class FlattenHead(nn.Module):
    """Flatten of (N, C, T): PyTorch's channel-major order feeds the Linear."""

    def __init__(self, steps=T):
        super().__init__()
        self.conv = nn.Conv1d(C, 4, 3, stride=2)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(4 * ((steps - 3) // 2 + 1), 3)

    def forward(self, x):
        return self.fc(self.flat(F.relu(self.conv(x))))


def test_flatten_of_channels_first(tmp_path):
    module = scaled(FlattenHead(), seed=8)
    x = data()
    want = run(module, ncl(x))
    for source in three_ways(module, ncl(x), tmp_path):
        model = check(source, x, want)
        assert ops(model) == ["Conv1D", "Flatten", "Dense"]
        # the Linear fixes the length: (T - 3) // 2 + 1 == 11 steps, T = 23 the shortest input
        assert model.spec.inputs[0].timesteps == 23


# --- forward() read from the graph: order, head, layouts ---------------------------------------------


class ReluHead(nn.Module):
    """The issue's forward, fc2(relu(fc1(lstm(x)[0][:, -1]))), modules declared head first."""

    def __init__(self):
        super().__init__()
        self.fc2 = nn.Linear(8, 3)
        self.fc1 = nn.Linear(5, 8)
        self.lstm = nn.LSTM(4, 5, batch_first=True)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(self.lstm(x)[0][:, -1])))


def test_torchscript_head_from_the_graph(tmp_path):
    module = scaled(ReluHead(), seed=9)
    x = data(features=4)
    want = run(module, torch.from_numpy(x))
    for source in three_ways(module, torch.from_numpy(x), tmp_path):
        model = check(source, x, want)
        assert model.spec.source["head"] == "last"
        assert [n.op.name for n in model.spec.nodes] == ["lstm_l0", "fc1", "fc2"]
        assert model.spec.nodes[1].op.activation == "relu"


class Heads(nn.Module):
    def __init__(self, head, bidirectional=False, batch_first=True):
        super().__init__()
        self.rnn = nn.GRU(4, 5, num_layers=2, bidirectional=bidirectional, batch_first=batch_first)
        self.fc = nn.Linear(10 if bidirectional else 5, 3)
        self.head, self.batch_first = head, batch_first

    def forward(self, x):
        if not self.batch_first:
            x = x.transpose(0, 1)
        out, h = self.rnn(x)
        if self.head == "every":
            return torch.sigmoid(self.fc(out.transpose(0, 1) if not self.batch_first else out))
        if self.head == "last":
            return self.fc(out[-1] if not self.batch_first else out[:, -1])
        if self.rnn.bidirectional:
            return self.fc(torch.cat([h[-2], h[-1]], dim=1))
        return self.fc(h[-1])


@pytest.mark.parametrize("head, bidirectional, batch_first", [
    ("every", False, True), ("every", True, False), ("last", False, False), ("last", False, True),
    ("final", False, True), ("final", True, False)])
def test_heads_read_from_the_graph(head, bidirectional, batch_first, tmp_path):
    module = scaled(Heads(head, bidirectional, batch_first), seed=10)
    x = data(features=4)
    want = run(module, torch.from_numpy(x))
    for source in three_ways(module, torch.from_numpy(x), tmp_path):
        model = check(source, x, want)
        assert model.spec.source["head"] == head
    # the option may say what the graph says, never something else
    check(module, x, want, head=head)
    other = "every" if head != "every" else "last"
    with pytest.raises(UnsupportedModel, match=f"head={other!r}.*head={head!r}"):
        edgernn.convert(module, head=other)


class SequentialFront(nn.Module):
    """A front end in an nn.Sequential (traced through by torch.fx, followed into by TorchScript),
    a Softmax over the channels of (N, C, T), a time-major GRU read every step."""

    def __init__(self, dim=1):
        super().__init__()
        self.features = nn.Sequential(nn.Conv1d(C, 8, 3, padding=1), nn.BatchNorm1d(8), nn.Softmax(dim=dim),
                                      nn.AvgPool1d(2))
        self.gru = nn.GRU(8, 5)
        self.out = nn.Linear(5, 2)

    def forward(self, x):
        y, _ = self.gru(self.features(x).permute(2, 0, 1))
        return torch.log_softmax(self.out(y), dim=-1)  # (T, N, 2)


def test_sequential_front_end_and_softmax_over_channels(tmp_path):
    module = scaled(SequentialFront(), seed=14)
    x = data()
    want = run(module, ncl(x)).transpose(1, 0, 2)  # PyTorch's (T, N, 2) as edgernn's (batch, T, 2)
    for source in three_ways(module, ncl(x), tmp_path):
        model = check(source, x, want)
        assert ops(model) == ["Conv1D", "Activation", "Pooling1D", "Recurrent", "Dense"]
        assert model.spec.source["head"] == "every"
    for dim in (2, -1):  # over the time axis
        refused(scaled(SequentialFront(dim)), "'features.2' (Softmax)", f"dim={dim}", "(N, C, T)")


class Reductions(nn.Module):
    """Global pooling written as a reduction: the mean over a conv's time axis (keepdim, then
    squeezed), the max over an LSTM's output steps; h_n.squeeze(0) of a one-layer GRU is h_n[-1]."""

    def __init__(self, which):
        super().__init__()
        self.conv = nn.Conv1d(C, 8, 3)
        self.lstm = nn.LSTM(8, 5, batch_first=True)
        self.gru = nn.GRU(8, 5, batch_first=True)
        self.fc = nn.Linear(8 if which == "conv_mean" else 5, 3)
        self.which = which

    def forward(self, x):
        y = torch.relu(self.conv(x))
        if self.which == "conv_mean":
            return self.fc(y.mean(dim=-1, keepdim=True).squeeze(-1))
        if self.which == "lstm_max":
            out, _ = self.lstm(y.transpose(1, 2))
            return self.fc(torch.amax(out, dim=1))
        _, h = self.gru(y.transpose(1, 2).to(torch.float32))
        return self.fc(h.squeeze(0))


@pytest.mark.parametrize("which, head", [("conv_mean", None), ("lstm_max", "every"), ("gru_squeeze", "final")])
def test_reductions_and_squeeze(which, head, tmp_path):
    module = scaled(Reductions(which), seed=15)
    x = data()
    want = run(module, ncl(x))
    for source in three_ways(module, ncl(x), tmp_path):
        model = check(source, x, want)
        assert model.spec.source["head"] == head
        assert ("Pooling1D" in ops(model)) == (which != "gru_squeeze")


class IsInstance(nn.Module):
    """A forward() torch.fx traces unfaithfully: on its proxy, isinstance(states, tuple) is False,
    so the trace takes c_n where the module takes h_n."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 5, batch_first=True)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        _, states = self.lstm(x)
        h_n = states[0] if isinstance(states, tuple) else states
        return self.fc(h_n[-1])


def test_an_unfaithful_trace_is_no_graph():
    module = scaled(IsInstance(), seed=12)
    x = data(features=4)
    with pytest.raises(UnsupportedModel, match="head='last'.*head='final'"):
        edgernn.convert(module)  # the probe shows the trace is not the module: no graph, head= asked for
    check(module, x, run(module, torch.from_numpy(x)), head="final")
    # TorchScript compiles isinstance() for what it is: the scripted module's graph says "final"
    scripted = torch.jit.script(module)
    assert check(scripted, x, run(module, torch.from_numpy(x))).spec.source["head"] == "final"


def test_head_option_does_not_override_a_refusal():
    class Doubled(ReluHead):
        def forward(self, x):
            h = F.relu(self.fc1(self.lstm(x)[0][:, -1]))
            return self.fc2(1.0 / h)  # a reciprocal: no IR op

    for head in (None, "last"):
        with pytest.raises(UnsupportedModel, match=r"divides the value 1.0 by a tensor"):
            edgernn.convert(Doubled(), **({} if head is None else {"head": head}))


# --- refusals, each naming what it refuses ------------------------------------------------------------


def refused(module, *pieces, **options):
    with pytest.raises(UnsupportedModel) as info:
        edgernn.convert(module, **options)
    for piece in pieces:
        assert piece in str(info.value)
    return info.value


def test_conv_padding_modes_refused():
    refused(ConvGru(kernel_size=3, padding=1, padding_mode="reflect"), "module 'conv' (Conv1d)",
            "padding_mode='reflect'")


def test_options_refused_by_name():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(C, 8, 3)
            self.p1 = nn.MaxPool1d(2, ceil_mode=True)
            self.p2 = nn.MaxPool1d(2, padding=1)  # -inf pads at stride 2: not the IR's same
            self.p3 = nn.AdaptiveAvgPool1d(3)
            self.bn = nn.BatchNorm1d(8, track_running_stats=False)
            self.fc = nn.Linear(8, 2)

        def forward(self, x):
            return self.fc(self.bn(self.p3(self.p2(self.p1(self.conv(x))))).flatten(1))

    error = refused(Net(), "'p1' (MaxPool1d): ceil_mode=True", "'p2' (MaxPool1d): padding=1", "-inf",
                    "'p3' (AdaptiveAvgPool1d): output_size=3", "'bn' (BatchNorm1d): track_running_stats=False")
    assert len(error.problems) == 4


def test_forward_refusals_name_the_operation():
    class OverTime(CnnLstm):  # a skip connection joined over time, not over the channels
        def forward(self, x):
            y = self.conv(x)
            return self.fc(self.lstm(self.pool(torch.cat([self.act(y), y], dim=2)).permute(0, 2, 1))[0][:, -1])

    class CellState(CnnLstm):
        def forward(self, x):
            _, (h, c) = self.lstm(self.pool(self.act(self.conv(x))).permute(0, 2, 1))
            return self.fc(c[-1])

    class NoPermute(CnnLstm):
        def forward(self, x):
            return self.fc(self.lstm(self.pool(self.act(self.conv(x))))[0][:, -1])

    class TimeLinear(CnnLstm):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(10, 64)

        def forward(self, x):
            return self.lstm(self.fc(self.pool(self.act(self.conv(x)))).permute(0, 2, 1))[0]

    refused(OverTime(), "cat(dim=2)", "over the time axis")
    refused(CellState(), "c_n", "'lstm'")
    refused(NoPermute(), "'lstm' (LSTM)", "(N, C, T)", "permute")
    refused(TimeLinear(), "'fc' (Linear)", "(N, C, T)")
    for module in (OverTime(), CellState(), NoPermute()):  # the TorchScript graph says the same
        with pytest.raises(UnsupportedModel):
            edgernn.convert(torch.jit.script(module))


def test_front_end_without_a_graph_is_refused():
    class Untraceable(CnnLstm):
        def forward(self, x):
            if float(x.sum()) > 1e9:
                x = x * 0
            return super().forward(x)

    refused(Untraceable(), "'conv'", "(N, C, T)", "torch.jit.script", head="last")
    refused(CnnLstm(), "order=", head="last", order=["conv", "act", "pool", "lstm", "fc"])


def test_conv_state_dict_is_refused_naming_torchscript(tmp_path):
    torch.save(CnnLstm().state_dict(), tmp_path / "m.pt")
    with pytest.raises(UnsupportedModel, match="'conv'.*Conv1d.*torch.jit.script"):
        edgernn.convert(tmp_path / "m.pt", head="last")


def test_flatten_before_no_linear_is_refused():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(C, 4, 3)

        def forward(self, x):
            return torch.flatten(self.conv(x), 1)

    refused(Net(), "flatten", "Linear")


# --- nn.LayerNorm ----------------------------------------------------------------------------------


class NormedLstm(nn.Module):
    """LayerNorm(C) -> LSTM(batch_first, sequences) -> LayerNorm(8, options) -> Linear: a stream's chain."""

    def __init__(self, **options):
        super().__init__()
        self.inorm = nn.LayerNorm(C)
        self.lstm = nn.LSTM(C, 8, batch_first=True)
        self.norm = nn.LayerNorm(8, **options)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        out, _ = self.lstm(self.inorm(x))
        return self.fc(self.norm(out))


@pytest.mark.parametrize("options", [{}, dict(eps=1e-3), dict(elementwise_affine=False)], ids=str)
def test_layer_norm_from_fx_script_and_trace_streams(options, tmp_path):
    module = scaled(NormedLstm(**options))
    x = data() * 3.0 + 2.0
    want = run(module, torch.from_numpy(x))
    for source in three_ways(module, torch.from_numpy(x), tmp_path):
        model = check(source, x, want)
        assert ops(model) == ["LayerNorm", "Recurrent", "LayerNorm", "Dense"]
        norm = model.spec.nodes[2].op
        assert norm.kind == "layer" and norm.epsilon == pytest.approx(options.get("eps", 1e-5))
        assert (norm.gamma is None) == (options.get("elementwise_affine") is False)
        s = model.stream(3)
        steps = np.stack([s.step(x[:, t]) for t in range(T)], axis=1)
        np.testing.assert_allclose(steps, want, **TOL)  # per timestep: every prefix's last row


class NormOverTime(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(C, 4, 3)
        self.norm = nn.LayerNorm(T - 2)
        self.lstm = nn.LSTM(4, 5, batch_first=True)

    def forward(self, x):
        out, _ = self.lstm(self.norm(self.conv(x)).permute(0, 2, 1))
        return out[:, -1]


@pytest.mark.parametrize("module, text", [
    (NormOverTime(), "acts on the last axis of a tensor laid out (N, C, T)"),
    (nn.Sequential(nn.LayerNorm((T, C)), nn.LSTM(C, 4, batch_first=True)), "normalizes more than the last axis"),
], ids=["over-time", "two-axes"])
def test_layer_norm_refused_beyond_the_features(module, text):
    with pytest.raises(UnsupportedModel) as info:
        edgernn.convert(scaled(module))
    assert text in str(info.value) + " ".join(info.value.problems)
