"""Refusals that say what to do, against the live frameworks.

* Every importer's refusal ends, once, with where the edgernn repository's docs say what converts
  (``docs/keras.md``, ``docs/pytorch.md``, ``docs/onnx.md``; ``docs/tflite.md`` in
  tests/test_tflite_import.py, whose cached files it reuses); the pointer is not one of the problems.
* PyTorch modules are applied in the order forward() calls them where torch.fx or the TorchScript
  graph shows it, else in registration order; modules that do not chain in registration order get
  the rule and the ways out (declare them in forward order, or the ``order`` option), which work.

PyTorch's dynamo exporter (ONNX): tests/test_onnx_import.py (``test_dynamo_*``).
"""

from __future__ import annotations

import numpy as np
import pytest

import edgernn
from edgernn.errors import UnsupportedModel

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning",
                                        "ignore::torch.jit.TracerWarning")

TOL = dict(atol=1e-5, rtol=1e-4)


def pointer(page):
    return f"(see docs/{page} in the edgernn repository for what converts)"


def refusal(source, **options) -> UnsupportedModel:
    with pytest.raises(UnsupportedModel) as info:
        edgernn.convert(source, **options)
    return info.value


def assert_points_to(error, page):
    text = str(error)
    assert text.endswith(pointer(page)), text
    assert text.count("edgernn repository") == 1, text
    assert not any("docs/" in p for p in error.problems), error.problems


# ---------------------------------------------------------------------------------------------
# Keras
# ---------------------------------------------------------------------------------------------


def test_keras_refusal_points_to_the_docs(tmp_path):
    keras = pytest.importorskip("keras")
    from keras import layers

    inp = keras.Input((6, 3))
    x = layers.Conv1DTranspose(4, 2, name="my_conv")(inp)  # Conv1D converts now; its transpose does not
    x = layers.LSTM(3, name="lstm")(x)
    model = keras.Model(inp, x)
    model.save(tmp_path / "conv.keras")
    for source in (tmp_path / "conv.keras", model):
        error = refusal(source)
        assert_points_to(error, "keras.md")
        assert len(error.problems) == 1 and "my_conv" in error.problems[0] and "Conv1D" in error.problems[0]


# ---------------------------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------------------------


def test_onnx_refusal_points_to_the_docs(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Erf", ["x"], ["e"]),
             helper.make_node("LSTM", ["e", "W", "R"], ["", "Y_h"], hidden_size=4)]
    inits = [numpy_helper.from_array(rng.normal(size=(1, 16, 3)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.normal(size=(1, 16, 4)).astype(np.float32), "R")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "N", 3])],
                              [helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), str(tmp_path / "erf.onnx"))
    error = refusal(tmp_path / "erf.onnx")
    assert_points_to(error, "onnx.md")
    assert error.problems == ["node 'e' (Erf): operator Erf is not supported"]
    assert "dynamo" not in str(error)  # not a PyTorch file: no word of its exporters


# ---------------------------------------------------------------------------------------------
# PyTorch
# ---------------------------------------------------------------------------------------------

torch = pytest.importorskip("torch")
nn = torch.nn


def test_pytorch_refusal_points_to_the_docs(tmp_path):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(3, 5, batch_first=True)
            self.norm = nn.GroupNorm(1, 5)  # (LayerNorm converts)

    error = refusal(Net(), head="every")
    assert_points_to(error, "pytorch.md")
    assert len(error.problems) == 1 and "'norm' (GroupNorm)" in error.problems[0]
    torch.save(Net().state_dict(), tmp_path / "m.pt")
    assert_points_to(refusal(tmp_path / "m.pt", head="every"), "pytorch.md")


class HeadFirst(nn.Module):
    """The head declared before the LSTM it follows: registration order is not forward order."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 2)
        self.rnn = nn.LSTM(3, 8, batch_first=True)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


class Untraceable(HeadFirst):
    """The same, with a forward torch.fx cannot trace (a branch on the data)."""

    def forward(self, x):
        out, _ = self.rnn(x)
        if x.sum() > 1e9:
            out = out * 2
        return self.fc(out[:, -1])


def seeded(module, seed=0):
    torch.manual_seed(seed)
    for p in module.parameters():
        nn.init.uniform_(p, -0.8, 0.8)
    return module.eval()


def data():
    return np.random.default_rng(1).normal(size=(3, 7, 3)).astype(np.float32)


def torch_output(module, x):
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def test_head_declared_first_converts_in_forward_order(tmp_path):
    """torch.fx (a live module) and the TorchScript graph (scripted or traced, in memory or saved)
    show forward()'s calls: their order is used, not the registration order."""
    net = seeded(HeadFirst())
    x = data()
    want = torch_output(net, x)
    scripted, traced = torch.jit.script(net), torch.jit.trace(net, torch.from_numpy(x))
    scripted.save(str(tmp_path / "scripted.pt"))
    traced.save(str(tmp_path / "traced.pt"))
    for source in (net, scripted, traced, tmp_path / "scripted.pt", tmp_path / "traced.pt"):
        model = edgernn.convert(source, head="last")
        assert model.spec.source["verification"]["passed"] is True
        assert [type(n.op).__name__ for n in model.spec.nodes] == ["Recurrent", "Dense"]
        np.testing.assert_allclose(model.predict(x), want, **TOL)


def test_registration_order_refusal_states_the_rule_and_the_ways_out(tmp_path):
    net = seeded(Untraceable())
    error = refusal(net, head="last")
    text = str(error)
    assert "the modules do not chain in the order they are registered in __init__" in text
    assert "the self.<name> = ... assignments, here ['fc', 'rnn']" in text
    assert "must be the order forward() uses them" in text
    assert "Declare the modules in __init__ in forward order" in text
    assert "the option order=['rnn', 'fc']" in text
    assert_points_to(error, "pytorch.md")
    assert error.problems == ["module 'rnn' takes 3 features but gets 2"]
    # the ways out it names work
    x = data()
    model = edgernn.convert(net, head="last", order=["rnn", "fc"])
    np.testing.assert_allclose(model.predict(x), torch_output(net, x), **TOL)

    class Declared(Untraceable):
        def __init__(self):
            nn.Module.__init__(self)
            self.rnn = nn.LSTM(3, 8, batch_first=True)
            self.fc = nn.Linear(8, 2)

    fixed = Declared().eval()
    fixed.load_state_dict(net.state_dict())
    np.testing.assert_allclose(edgernn.convert(fixed, head="last").predict(x), torch_output(net, x), **TOL)


def test_state_dict_order_refusal_states_the_rule_and_the_option(tmp_path):
    net = seeded(HeadFirst())
    torch.save(net.state_dict(), tmp_path / "m.pt")
    error = refusal(tmp_path / "m.pt", head="last")
    text = str(error)
    assert "do not chain in the order of the state dict's keys" in text
    assert "the order the modules were registered in __init__" in text and "a state dict keeps no forward()" in text
    assert "the option order=['rnn', 'fc']" in text
    assert_points_to(error, "pytorch.md")
    x = data()
    model = edgernn.convert(tmp_path / "m.pt", head="last", order=["rnn", "fc"])
    np.testing.assert_allclose(model.predict(x), torch_output(net, x), **TOL)
    assert model.spec.source["verification"]["passed"] is True


def test_forward_order_that_does_not_chain_says_so():
    """Sizes that do not fit in forward()'s own order: no advice about the order."""

    class Wrong(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(3, 8, batch_first=True)
            self.fc = nn.Linear(7, 2)

        def forward(self, x):
            return self.fc(self.rnn(x)[0][:, -1])

    error = refusal(Wrong(), head="last")
    assert "do not chain in the order forward() calls them" in str(error)
    assert "order=" not in str(error)
    assert_points_to(error, "pytorch.md")
