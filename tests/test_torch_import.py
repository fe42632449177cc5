"""The PyTorch importer against live PyTorch: modules, state_dict files, TorchScript, safetensors.

Every test builds a real ``torch.nn`` module with seeded random weights (PyTorch's init scaled up
so gates leave their linear range and a wrong gate order or bias shows), runs it with PyTorch and
compares edgernn's ``predict`` and streams at atol 1e-5 + rtol 1e-4.
"""

from __future__ import annotations

import copy
import os
import pickle
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import edgernn  # noqa: E402
from edgernn.errors import InvalidModelFile, UnsupportedModel  # noqa: E402
from edgernn.importers import pytorch as importer  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning",
                                        "ignore::torch.jit.TracerWarning")

TOL = dict(atol=1e-5, rtol=1e-4)
F = 4


def scaled(module, seed=0, scale=2.0):
    """Seeded PyTorch init, scaled up (H=5 init is ±0.45: too close to linear to catch gate mix-ups)."""
    torch.manual_seed(seed)
    for p in module.parameters():
        nn.init.uniform_(p, -scale / np.sqrt(max(p.shape[-1], 1)), scale / np.sqrt(max(p.shape[-1], 1)))
    return module.eval()


def data(batch=3, steps=7, features=F, seed=1):
    return np.random.default_rng(seed).normal(0.0, 1.0, (batch, steps, features)).astype(np.float32)


def torch_run(module, x, batch_first=True):
    """The module on ``x`` (batch, T, F) laid out as it wants; returns its raw output."""
    inp = torch.from_numpy(x if batch_first else np.ascontiguousarray(x.transpose(1, 0, 2)))
    with torch.no_grad():
        return module(inp)


def rnn_output(module, x):
    """A bare RNN module's output[0] as (batch, T, features), and its final states."""
    out, states = torch_run(module, x, module.batch_first)
    out = out.numpy() if module.batch_first else out.numpy().transpose(1, 0, 2)
    return out, states


# ---------------------------------------------------------------------------------------------
# Bare nn.LSTM / nn.GRU / nn.RNN
# ---------------------------------------------------------------------------------------------

CELLS = {
    "lstm": lambda **kw: nn.LSTM(F, 5, **kw),
    "gru": lambda **kw: nn.GRU(F, 5, **kw),
    "rnn_tanh": lambda **kw: nn.RNN(F, 5, **kw),
    "rnn_relu": lambda **kw: nn.RNN(F, 5, nonlinearity="relu", **kw),
}
CONFIGS = {
    "default": {},
    "batch_first": {"batch_first": True},
    "no_bias": {"bias": False, "batch_first": True},
    "2_layers_dropout": {"num_layers": 2, "dropout": 0.3},
    "bidirectional": {"bidirectional": True, "batch_first": True},
    "2_layers_bidirectional": {"num_layers": 2, "bidirectional": True},
}


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("cell", CELLS)
def test_bare_module_predict(cell, config):
    module = scaled(CELLS[cell](**CONFIGS[config]), seed=hash((cell, config)) % 1000)
    x = data()
    want, _ = rnn_output(module, x)
    model = edgernn.convert(module)
    got = model.predict(x)
    assert got.shape == want.shape  # (batch, T, D * H) whatever batch_first was
    np.testing.assert_allclose(got, want, **TOL)
    np.testing.assert_allclose(importer.run_source(module, [x])[0], want, **TOL)
    kinds = {type(n.op).__name__ for n in model.spec.nodes}
    assert kinds == ({"Bidirectional"} if module.bidirectional else {"Recurrent"})


@pytest.mark.parametrize("config", [{}, {"num_layers": 2, "batch_first": True},
                                    {"num_layers": 2, "bidirectional": True}, {"bias": False}])
def test_lstm_proj_size(config):
    module = scaled(nn.LSTM(F, 6, proj_size=3, **config), seed=3)
    x = data()
    want, (h_n, c_n) = rnn_output(module, x)
    model = edgernn.convert(module)
    np.testing.assert_allclose(model.predict(x), want, **TOL)
    layer = model.spec.nodes[0].op
    layer = layer.forward if hasattr(layer, "forward") else layer
    assert layer.projection.shape == (6, 3) and layer.output_size == 3


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", [1, 2])
def test_bare_module_stream_and_final_states(cell, layers):
    """Forward modules stream: chunks and single steps equal PyTorch on the whole sequence, and the
    stream's state after the run is PyTorch's h_n (and c_n) per layer."""
    kwargs = {"num_layers": layers, "batch_first": layers == 2}
    if cell == "lstm" and layers == 2:
        kwargs["proj_size"] = 3
    module = scaled(CELLS[cell](**kwargs), seed=7)
    x = data(batch=2, steps=9)
    want, states = rnn_output(module, x)
    model = edgernn.convert(module)
    s = model.stream(2)
    got = np.concatenate([s.run(x[:, :4]), s.run(x[:, 4:5]), s.run(x[:, 5:])], axis=1)
    np.testing.assert_allclose(got, want, **TOL)
    state = s.get_state()
    h_n, c_n = states if cell == "lstm" else (states, None)
    name = {"lstm": "lstm", "gru": "gru"}.get(cell, "rnn")
    for k in range(layers):
        np.testing.assert_allclose(state[f"{name}_l{k}/h"], h_n[k].numpy(), **TOL)
        if c_n is not None:
            np.testing.assert_allclose(state[f"{name}_l{k}/c"], c_n[k].numpy(), **TOL)
    s.reset()
    steps = np.stack([s.step(x[:, t]) for t in range(x.shape[1])], axis=1)
    np.testing.assert_allclose(steps, want, **TOL)


def test_bidirectional_is_predict_only():
    model = edgernn.convert(scaled(nn.GRU(F, 5, bidirectional=True)))
    with pytest.raises(edgernn.NotStreamable):
        model.stream(1)


# ---------------------------------------------------------------------------------------------
# Composed modules: children in registration order, the head chosen by ``head``
# ---------------------------------------------------------------------------------------------


class Classifier(nn.Module):
    """RNN -> Sequential head, applied as ``head`` says (the forward a user writes for each)."""

    def __init__(self, cell="lstm", head="last", bidirectional=False, batch_first=True, layers=1):
        super().__init__()
        rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
        self.rnn = rnn_cls(F, 5, num_layers=layers, batch_first=batch_first, bidirectional=bidirectional)
        width = 10 if bidirectional else 5
        self.drop = nn.Dropout(0.5)
        self.head = nn.Sequential(nn.Linear(width, 6), nn.ReLU(), nn.Identity(), nn.Linear(6, 3), nn.Softmax(dim=-1))
        self.mode, self.batch_first, self.bidirectional = head, batch_first, bidirectional

    def forward(self, x):
        out, states = self.rnn(x)
        h_n = states[0] if isinstance(states, tuple) else states
        if self.mode == "last":
            y = out[:, -1] if self.batch_first else out[-1]
        elif self.mode == "final":
            y = torch.cat([h_n[-2], h_n[-1]], dim=1) if self.bidirectional else h_n[-1]
        else:
            y = out
        return self.head(self.drop(y))


def classifier_output(module, x):
    y = torch_run(module, x, module.batch_first).numpy()
    if module.mode == "every" and not module.batch_first:
        y = y.transpose(1, 0, 2)
    return y


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("head, bidirectional, batch_first, layers", [
    ("last", False, True, 1), ("last", False, False, 2), ("every", False, True, 2), ("every", True, False, 1),
    ("final", True, True, 2), ("final", False, False, 1)])
def test_composed_module(cell, head, bidirectional, batch_first, layers):
    module = scaled(Classifier(cell, head, bidirectional, batch_first, layers), seed=11)
    x = data()
    want = classifier_output(module, x)
    model = edgernn.convert(module, head=head)
    got = model.predict(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, **TOL)
    np.testing.assert_allclose(importer.run_source(module, [x], head=head)[0], want, **TOL)
    # Linear + ReLU and Linear + Softmax are fused into Dense layers; Dropout and Identity vanish.
    dense = [n.op for n in model.spec.nodes if type(n.op).__name__ == "Dense"]
    assert [d.activation for d in dense] == ["relu", "softmax"]
    if not bidirectional and head in ("last", "every"):
        s = model.stream(3)
        chunks = np.concatenate([s.run(x[:, :3]), s.run(x[:, 3:])], axis=1)
        if head == "every":
            np.testing.assert_allclose(chunks, want, **TOL)
        else:  # a many-to-one model's step output is its answer for the sequence ending there
            np.testing.assert_allclose(chunks[:, -1], want, **TOL)


ACTIVATION_MODULES = [nn.ReLU(), nn.Tanh(), nn.Sigmoid(), nn.ReLU6(), nn.ELU(), nn.SELU(), nn.CELU(), nn.GELU(),
                      nn.SiLU(), nn.Mish(), nn.Softplus(), nn.Softsign(), nn.LogSigmoid(), nn.Tanhshrink(),
                      nn.Hardsigmoid(), nn.Hardswish(), nn.Hardtanh(), nn.LeakyReLU(0.2), nn.LogSoftmax(dim=-1),
                      nn.Softmax(dim=2)]


@pytest.mark.parametrize("activation", ACTIVATION_MODULES, ids=lambda m: type(m).__name__)
def test_activation_modules(activation):
    """Each activation module after a Linear (fused) and standing alone after the RNN, head='every'."""
    module = nn.Sequential()
    module.add_module("rnn", nn.GRU(F, 5, batch_first=True))
    module.add_module("act0", activation)
    module.add_module("fc", nn.Linear(5, 4))
    module.add_module("act1", copy.deepcopy(activation))
    scaled(module, seed=5)

    class Net(nn.Module):  # nn.Sequential cannot pass an RNN's tuple on; the forward a user writes
        def __init__(self):
            super().__init__()
            self.body = module

        def forward(self, x):
            y, _ = self.body.rnn(x)
            return self.body.act1(self.body.fc(self.body.act0(y)))

    net = Net().eval()
    x = data() * 2
    want = torch_run(net, x).numpy()
    got = edgernn.convert(net, head="every").predict(x)
    np.testing.assert_allclose(got, want, **TOL)


def test_composed_without_a_graph_or_head_is_refused_naming_the_option():
    """The head comes from forward()'s graph (tests/test_torch_conv.py); where torch.fx cannot trace
    forward (control flow on the data) there is none, and head= is asked for."""

    class Untraceable(Classifier):
        def forward(self, x):
            if float(x.sum()) > 1e9:
                x = x * 0
            return super().forward(x)

    with pytest.raises(UnsupportedModel, match="head='last'.*head='every'"):
        edgernn.convert(Untraceable())
    assert edgernn.convert(Untraceable(), head="last").spec.source["head"] == "last"


def test_last_of_bidirectional_is_refused_naming_the_alternatives():
    with pytest.raises(UnsupportedModel, match="head='final'"):
        edgernn.convert(Classifier(bidirectional=True), head="last")


def test_unsupported_modules_are_all_listed():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(F, F, 3)
            self.rnn = nn.LSTM(F, 5)
            self.norm = nn.GroupNorm(1, 5)  # (LayerNorm converts)
            self.act = nn.LeakyReLU()  # slope 0.01: edgernn's leaky_relu is 0.2
            self.soft = nn.Softmax()  # implicit dim

    with pytest.raises(UnsupportedModel) as info:
        edgernn.convert(Net(), head="every")
    text = str(info.value)
    assert len(info.value.problems) == 4
    for piece in ("'conv' (Conv2d)", "'norm' (GroupNorm)", "negative_slope=0.01", "Softmax(dim=None)"):
        assert piece in text


def test_softmax_over_the_time_axis_is_refused():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(F, 5, batch_first=True)
            self.soft = nn.Softmax(dim=1)

    with pytest.raises(UnsupportedModel, match="dim=1 of a rank-3"):
        edgernn.convert(Net(), head="every")
    assert edgernn.convert(Net(), head="last").spec.nodes[-1].op.activation == "softmax"


def test_bad_options():
    with pytest.raises(UnsupportedModel, match="head="):
        edgernn.convert(nn.LSTM(F, 5), head="first")
    with pytest.raises(TypeError, match="unexpected options: units"):
        edgernn.convert(nn.LSTM(F, 5), units=3)


# ---------------------------------------------------------------------------------------------
# State dict files
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("config", ["default", "2_layers_bidirectional", "no_bias"])
def test_bare_state_dict_inferred(cell, config, tmp_path):
    module = scaled(CELLS[cell](**CONFIGS[config]), seed=2)
    path = tmp_path / "rnn.pt"
    torch.save(module.state_dict(), path)
    x = data()
    want, _ = rnn_output(module, x)
    model = edgernn.convert(path)
    np.testing.assert_allclose(model.predict(x), want, **TOL)
    np.testing.assert_allclose(importer.run_source(path, [x])[0], want, **TOL)


def test_state_dict_proj_size(tmp_path):
    module = scaled(nn.LSTM(F, 6, proj_size=2, num_layers=2, bidirectional=True), seed=4)
    torch.save(module.state_dict(), tmp_path / "proj.pth")
    x = data()
    np.testing.assert_allclose(edgernn.convert(tmp_path / "proj.pth").predict(x), rnn_output(module, x)[0], **TOL)


def test_gate_multiple_comes_from_weight_hh(tmp_path):
    """weight_ih alone cannot tell a GRU of hidden 4 (12 rows) from an LSTM of hidden 3 (12 rows);
    weight_hh (gates * H, H) can: both convert to the right cell."""
    for module, cell in ((nn.GRU(F, 4), "gru"), (nn.LSTM(F, 3), "lstm")):
        assert module.weight_ih_l0.shape[0] == 12
        torch.save(scaled(module).state_dict(), tmp_path / "m.pt")
        model = edgernn.convert(tmp_path / "m.pt")
        assert model.spec.nodes[0].op.cell == cell
        np.testing.assert_allclose(model.predict(data()), rnn_output(module, data())[0], **TOL)


def test_rnn_nonlinearity_must_be_given(tmp_path):
    module = scaled(nn.RNN(F, 5, nonlinearity="relu", batch_first=True), seed=6)
    path = tmp_path / "rnn.pt"
    torch.save(module.state_dict(), path)
    with pytest.raises(UnsupportedModel, match="nonlinearity='tanh' or nonlinearity='relu'"):
        edgernn.convert(path)
    x = data()
    want, _ = rnn_output(module, x)
    for options in ({"nonlinearity": "relu", "batch_first": True}, {"mode": "RNN_RELU"}):
        np.testing.assert_allclose(edgernn.convert(path, **options).predict(x), want, **TOL)
    tanh = edgernn.convert(path, nonlinearity="tanh").predict(x)
    assert np.abs(tanh - want).max() > 1e-2  # the option matters
    with pytest.raises(UnsupportedModel, match="mode='GRU' does not fit"):
        edgernn.convert(path, mode="GRU")


def test_cli_passes_options(tmp_path):
    from click.testing import CliRunner

    from edgernn.cli import main

    module = scaled(nn.RNN(F, 5, nonlinearity="relu"), seed=8)
    torch.save(module.state_dict(), tmp_path / "rnn.pt")
    result = CliRunner().invoke(main, ["convert", str(tmp_path / "rnn.pt"), "-o", str(tmp_path / "rnn.ernn")])
    assert result.exit_code == 1 and "nonlinearity" in result.output
    result = CliRunner().invoke(main, ["convert", str(tmp_path / "rnn.pt"), "-o", str(tmp_path / "rnn.ernn"),
                                       "--option", "nonlinearity=relu", "--option", "batch_first=false"])
    assert result.exit_code == 0, result.output
    x = data()
    np.testing.assert_allclose(edgernn.load(tmp_path / "rnn.ernn").predict(x), rnn_output(module, x)[0], **TOL)


def test_composed_state_dict_with_activations_option(tmp_path):
    module = scaled(Classifier("gru", "last", layers=2), seed=9)
    path = tmp_path / "clf.pt"
    torch.save(module.state_dict(), path)
    x = data()
    want = classifier_output(module, x)
    with pytest.raises(UnsupportedModel, match=r"activations=\{'head.1': 'ReLU'\}") as info:
        edgernn.convert(path, head="last")
    assert "'head.2'" in str(info.value)  # every gap is named at once
    options = {"head": "last", "activations": {"head.1": "ReLU", "head.2": "Identity", "head.3": "Softmax"}}
    model = edgernn.convert(path, **options)
    np.testing.assert_allclose(model.predict(x), want, **TOL)
    np.testing.assert_allclose(importer.run_source(path, [x], **options)[0], want, **TOL)
    with pytest.raises(UnsupportedModel, match="head='last'"):
        edgernn.convert(path, activations=options["activations"])
    model.save(tmp_path / "clf.ernn")
    np.testing.assert_allclose(edgernn.load(tmp_path / "clf.ernn").predict(x), want, **TOL)


def test_checkpoint_dict_and_order(tmp_path):
    """A checkpoint {"model_state_dict": ..., "epoch": ...} holds one state dict: it is used."""
    module = scaled(Classifier("lstm", "final", bidirectional=True), seed=10)
    torch.save({"epoch": 3, "model_state_dict": module.state_dict(), "lr": 0.1}, tmp_path / "ckpt.pt")
    options = {"head": "final", "activations": {"head.1": "relu", "head.3": "softmax", "head.2": "Identity"}}
    x = data()
    np.testing.assert_allclose(edgernn.convert(tmp_path / "ckpt.pt", **options).predict(x),
                               classifier_output(module, x), **TOL)


def test_malformed_state_dicts(tmp_path):
    torch.save({"rnn.weight_ih_l0": torch.zeros(20, F), "rnn.weight_hh_l0": torch.zeros(20, 7)}, tmp_path / "a.pt")
    with pytest.raises(UnsupportedModel, match="weight_hh_l0"):
        edgernn.convert(tmp_path / "a.pt")
    torch.save({"bn.weight": torch.ones(5), "bn.bias": torch.ones(5), "bn.running_mean": torch.ones(5)},
               tmp_path / "b.pt")
    with pytest.raises(UnsupportedModel) as info:
        edgernn.convert(tmp_path / "b.pt")
    assert "running_mean" in str(info.value) and "1-D weight" in str(info.value)
    torch.save([1, 2, 3], tmp_path / "c.pt")
    with pytest.raises(InvalidModelFile, match="not a state dict"):
        edgernn.convert(tmp_path / "c.pt")
    (tmp_path / "d.pt").write_bytes(b"not a torch file at all")
    with pytest.raises(InvalidModelFile, match="d.pt"):
        edgernn.convert(tmp_path / "d.pt")


# ---------------------------------------------------------------------------------------------
# Pickle payloads are never run
# ---------------------------------------------------------------------------------------------


class Payload:
    """Unpickling this runs ``open(marker, "w")`` -- what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_payloads_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"weight": torch.zeros(2), "evil": Payload(str(marker))}, tmp_path / "zip.pt")
    with open(tmp_path / "plain.pth", "wb") as f:
        pickle.dump({"weight_ih_l0": Payload(str(marker))}, f)
    for name in ("zip.pt", "plain.pth"):
        with pytest.raises(InvalidModelFile, match="weights_only=True") as info:
            edgernn.convert(tmp_path / name)
        assert name in str(info.value)
        assert not marker.exists()
    # A whole pickled module (torch.save(model)) is refused the same way: its classes would be imported.
    torch.save(nn.LSTM(F, 5), tmp_path / "module.pt")
    with pytest.raises(InvalidModelFile, match="Unsupported global"):
        edgernn.convert(tmp_path / "module.pt")
    assert not marker.exists()


def test_no_unrestricted_load_in_the_importer():
    import pkgutil
    from pathlib import Path

    # the whole package: every module's source
    package = Path(importer.__file__).parent
    source = "\n".join((package / f"{m.name}.py").read_text() for m in pkgutil.iter_modules([str(package)])) + \
        (package / "__init__.py").read_text()
    assert "weights_only=False" not in source and "pickle.load" not in source
    assert re.findall(r"torch\.load\((?!\.\.\.).*", source) == [
        'torch.load(str(path), map_location="cpu", weights_only=True)']


# ---------------------------------------------------------------------------------------------
# TorchScript
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["script", "trace"])
@pytest.mark.parametrize("cell, head, bidirectional", [("lstm", "last", False), ("gru", "final", True),
                                                       ("rnn", "every", False)])
def test_torchscript(how, cell, head, bidirectional, tmp_path):
    module = scaled(Classifier(cell, head, bidirectional, batch_first=cell != "rnn", layers=2), seed=12)
    x = data()
    want = classifier_output(module, x)
    example = torch.from_numpy(x if module.batch_first else np.ascontiguousarray(x.transpose(1, 0, 2)))
    scripted = torch.jit.script(module) if how == "script" else torch.jit.trace(module, example)
    scripted.save(str(tmp_path / "m.pt"))
    np.testing.assert_allclose(edgernn.convert(tmp_path / "m.pt", head=head).predict(x), want, **TOL)
    np.testing.assert_allclose(importer.run_source(tmp_path / "m.pt", [x], head=head)[0], want, **TOL)
    # An in-memory ScriptModule converts the same way.
    np.testing.assert_allclose(edgernn.convert(scripted, head=head).predict(x), want, **TOL)


def test_traced_rnn_nonlinearity_and_activation_constants(tmp_path):
    """A traced module keeps no attributes; the constants of its stored code say relu/tanh,
    batch_first, Softmax's dim and LeakyReLU's slope."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.RNN(F, 5, nonlinearity="relu", batch_first=True, num_layers=2)
            self.act = nn.LeakyReLU(0.2)
            self.fc = nn.Linear(5, 3)
            self.out = nn.LogSoftmax(dim=-1)

        def forward(self, x):
            return self.out(self.fc(self.act(self.rnn(x)[0])))

    net = scaled(Net(), seed=13)
    x = data()
    torch.jit.trace(net, torch.from_numpy(x)).save(str(tmp_path / "t.pt"))
    model = edgernn.convert(tmp_path / "t.pt", head="every")
    np.testing.assert_allclose(model.predict(x), torch_run(net, x).numpy(), **TOL)
    np.testing.assert_allclose(importer.run_source(tmp_path / "t.pt", [x], head="every")[0],
                               torch_run(net, x).numpy(), **TOL)


# ---------------------------------------------------------------------------------------------
# safetensors
# ---------------------------------------------------------------------------------------------


def test_safetensors_order_inferred_from_sizes(tmp_path):
    from safetensors.torch import save_file

    class Net(nn.Module):  # "fc" sorts before "rnn": the file's order is not the forward order
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(F, 5, num_layers=2, batch_first=True)
            self.fc = nn.Linear(5, 2)

        def forward(self, x):
            return self.fc(self.rnn(x)[0][:, -1])

    net = scaled(Net(), seed=14)
    save_file(net.state_dict(), str(tmp_path / "m.safetensors"))
    x = data()
    want = torch_run(net, x).numpy()
    model = edgernn.convert(tmp_path / "m.safetensors", head="last")
    np.testing.assert_allclose(model.predict(x), want, **TOL)
    np.testing.assert_allclose(importer.run_source(tmp_path / "m.safetensors", [x], head="last")[0], want, **TOL)


def test_safetensors_ambiguous_order_names_the_option(tmp_path):
    from safetensors.torch import save_file

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pre = nn.Linear(5, 5)
            self.rnn = nn.GRU(5, 5)
            self.post = nn.Linear(5, 5)

        def forward(self, x):
            return self.post(self.rnn(self.pre(x))[0])

    net = scaled(Net(), seed=15)
    save_file(net.state_dict(), str(tmp_path / "m.safetensors"))
    with pytest.raises(UnsupportedModel, match="order="):
        edgernn.convert(tmp_path / "m.safetensors", head="every")
    x = data(features=5)
    inp = torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2)))
    with torch.no_grad():
        want = net(inp).numpy().transpose(1, 0, 2)
    model = edgernn.convert(tmp_path / "m.safetensors", head="every", order=["pre", "rnn", "post"])
    np.testing.assert_allclose(model.predict(x), want, **TOL)


def test_safetensors_without_torch(tmp_path):
    """The safetensors path imports no torch: run in a subprocess where ``import torch`` fails."""
    from safetensors.torch import save_file

    module = scaled(nn.GRU(F, 5, num_layers=2, bidirectional=True), seed=16)
    save_file(module.state_dict(), str(tmp_path / "gru.safetensors"))
    x = data()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "want.npy", rnn_output(module, x)[0])
    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any import of torch now raises ImportError
        import numpy as np
        import edgernn
        m = edgernn.convert({str(tmp_path / "gru.safetensors")!r})
        got = m.predict(np.load({str(tmp_path / "x.npy")!r}))
        np.testing.assert_allclose(got, np.load({str(tmp_path / "want.npy")!r}), atol=1e-5, rtol=1e-4)
        assert "torch" not in [k for k, v in sys.modules.items() if v is not None]
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_malformed_safetensors(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(InvalidModelFile, match="bad.safetensors"):
        edgernn.convert(tmp_path / "bad.safetensors")


# --- nn.Embedding ---------------------------------------------------------------------------------


class Tagger(nn.Module):
    """Integer codes -> nn.Embedding(padding_idx=0) -> LSTM -> Linear on every step or the last."""

    def __init__(self, batch_first=True, last=False, vocab=11):
        super().__init__()
        self.last = last
        self.embed = nn.Embedding(vocab, 6, padding_idx=0)
        self.lstm = nn.LSTM(6, 5, batch_first=batch_first)
        self.fc = nn.Linear(5, 3)

    def forward(self, codes):
        out, _ = self.lstm(self.embed(codes))
        if self.last:
            return self.fc(out[:, -1] if self.lstm.batch_first else out[-1])
        return self.fc(out)


def codes(batch=3, steps=9, vocab=11, seed=2):
    return np.random.default_rng(seed).integers(0, vocab, (batch, steps))


@pytest.mark.parametrize("batch_first, last", [(True, False), (False, True)])
def test_embedding_from_fx_script_and_trace_streams(batch_first, last, tmp_path):
    """nn.Embedding reads the model's input, integer codes (N, T) (or (T, N) for a time-major LSTM),
    as ir.Embedding; padding_idx's row (trained to stay zero, here not) is looked up as it is."""
    module = scaled(Tagger(batch_first, last), seed=21)
    x = codes()
    inp = torch.from_numpy(x if batch_first else x.T.copy())
    with torch.no_grad():
        want = module(inp).numpy()
    if not batch_first and not last:
        want = want.transpose(1, 0, 2)
    torch.jit.script(module).save(str(tmp_path / "s.pt"))
    torch.jit.trace(module, inp).save(str(tmp_path / "t.pt"))
    for source in (module, tmp_path / "s.pt", tmp_path / "t.pt"):
        model = edgernn.convert(source)
        assert [type(n.op).__name__ for n in model.spec.nodes] == ["Embedding", "Recurrent", "Dense"]
        assert model.spec.inputs[0].dtype == "int"
        np.testing.assert_allclose(model.predict(x), want, **TOL)
        np.testing.assert_allclose(importer.run_source(source, [x.astype(np.float32)])[0], want, **TOL)
    s = model.stream(3)
    for t in range(x.shape[1]):
        got = s.step(x[:, t:t + 1])
    np.testing.assert_allclose(got, want if last else want[:, -1], **TOL)


def test_embedding_refusals_name_the_module():
    module = Tagger()
    module.embed = nn.Embedding(11, 6, max_norm=1.0)
    with pytest.raises(UnsupportedModel, match=r"'embed' \(Embedding\): max_norm=1.0"):
        edgernn.convert(module)

    class Late(Tagger):
        def forward(self, x):
            return self.fc(self.lstm(self.embed(x.argmax(-1)))[0])

    with pytest.raises(UnsupportedModel, match="argmax"):
        edgernn.convert(Late())


# --- state dicts: the modules option names LayerNorm and Embedding ------------------------------------


class NormedHead(nn.Module):
    """GRU -> LayerNorm(5, eps) -> Linear, every step."""

    def __init__(self, **norm):
        super().__init__()
        self.gru = nn.GRU(F, 5, batch_first=True)
        self.norm = nn.LayerNorm(5, **norm)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc(self.norm(self.gru(x)[0]))


@pytest.mark.parametrize("norm, named", [({}, "LayerNorm"), (dict(eps=1e-2, bias=False),
                                                             {"class": "LayerNorm", "eps": 1e-2})], ids=str)
def test_layer_norm_from_a_state_dict_the_option_names(norm, named, tmp_path):
    from safetensors.torch import save_file

    module = scaled(NormedHead(**norm), seed=22)
    x = data() * 2.0 + 1.0
    want = torch_run(module, x).numpy()
    torch.save(module.state_dict(), tmp_path / "m.pt")
    save_file(module.state_dict(), str(tmp_path / "m.safetensors"))
    options = dict(head="every", batch_first=True, modules={"norm": named})
    for path in (tmp_path / "m.pt", tmp_path / "m.safetensors"):
        model = edgernn.convert(path, **options)
        assert [type(n.op).__name__ for n in model.spec.nodes] == ["Recurrent", "LayerNorm", "Dense"]
        assert model.spec.nodes[1].op.epsilon == norm.get("eps", 1e-5)
        np.testing.assert_allclose(model.predict(x), want, **TOL)
        np.testing.assert_allclose(importer.run_source(path, [x], **options)[0], want, **TOL)
    with pytest.raises(UnsupportedModel, match=r"module 'norm': a 1-D weight.*modules=\{'norm': 'LayerNorm'\}"):
        edgernn.convert(tmp_path / "m.pt", head="every")


def test_embedding_from_a_state_dict_the_option_names(tmp_path):
    module = scaled(Tagger(), seed=23)
    x = codes()
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    torch.save(module.state_dict(), tmp_path / "m.pt")
    options = dict(head="every", batch_first=True, modules={"embed": "Embedding"})
    model = edgernn.convert(tmp_path / "m.pt", **options)
    assert [type(n.op).__name__ for n in model.spec.nodes] == ["Embedding", "Recurrent", "Dense"]
    np.testing.assert_allclose(model.predict(x), want, **TOL)
    np.testing.assert_allclose(importer.run_source(tmp_path / "m.pt", [x.astype(np.float32)], **options)[0], want,
                               **TOL)
    with pytest.raises(UnsupportedModel, match=r"'fc' \(option modules: Embedding\)"):
        edgernn.convert(tmp_path / "m.pt", head="every", modules={"embed": "Embedding", "fc": "Embedding"})
    with pytest.raises(UnsupportedModel, match=r"option modules\['embed'\]"):
        edgernn.convert(tmp_path / "m.pt", head="every", modules={"embed": "Conv1d"})
