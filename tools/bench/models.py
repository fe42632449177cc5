"""The benchmark models, built once with random weights and handed to every framework.

Each model is a chain of recurrent layers and a Dense head. Its weights are drawn once (seeded)
in Keras's layout, then:

* Keras: the same architecture with ``set_weights`` (stateless for conversion, stateful for the
  Keras step contender, ``return_sequences`` everywhere for the TFLite sequence model);
* edgernn: ``edgernn.convert(keras_model)``, the public path a user takes;
* PyTorch: ``nn.LSTM``/``nn.GRU`` (and cells) with the weights transposed and, for GRU,
  the gate blocks reordered (Keras z, r, h -> PyTorch r, z, n);
* ONNX: the PyTorch module exported with ``torch.onnx.export`` (state as inputs/outputs);
* TFLite: the Keras sequence model through TFLiteConverter, and a one-step ``tf.Module``
  whose state lives in resource variables.

Everything generated goes into a temporary directory given by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

F32 = np.float32


@dataclass
class ModelDef:
    key: str
    cell: str  # "lstm" or "gru"
    features: int
    units: tuple
    outputs: int
    weights: list = field(default_factory=list)  # per layer: (kernel, recurrent, bias), then (dense W, b)

    @property
    def label(self) -> str:
        layers = " + ".join(f"{self.cell.upper()}({u})" for u in self.units)
        if len(self.units) > 1 and len(set(self.units)) == 1:
            layers = f"{len(self.units)} x {self.cell.upper()}({self.units[0]})"
        return f"({self.key}) {layers} on {self.features} + Dense({self.outputs})"

    @property
    def short(self) -> str:
        return f"({self.key}) {self.cell.upper()}{'x'.join(str(u) for u in self.units)}/{self.features}->{self.outputs}"

    @property
    def gates(self) -> int:
        return 4 if self.cell == "lstm" else 3


MODELS = {
    "a": ModelDef("a", "lstm", 8, (64,), 1),
    "b": ModelDef("b", "lstm", 3, (32,), 1),
    "c": ModelDef("c", "lstm", 16, (128, 128), 4),
    "d": ModelDef("d", "gru", 8, (64,), 1),
}


def make_weights(model: ModelDef, seed: int = 0) -> ModelDef:
    """Random weights in Keras's layout, scaled so activations stay in their working range."""
    rng = np.random.default_rng(seed + ord(model.key))
    weights = []
    size = model.features
    for units in model.units:
        width = model.gates * units
        kernel = rng.normal(scale=1.0 / np.sqrt(size), size=(size, width))
        recurrent = rng.normal(scale=1.0 / np.sqrt(units), size=(units, width))
        # Keras GRU (reset_after=True) keeps two bias rows: input side and recurrent side.
        bias = rng.normal(scale=0.1, size=(2, width) if model.cell == "gru" else (width,))
        weights.append(tuple(a.astype(F32) for a in (kernel, recurrent, bias)))
        size = units
    dense = rng.normal(scale=1.0 / np.sqrt(size), size=(size, model.outputs)), rng.normal(scale=0.1, size=model.outputs)
    weights.append(tuple(a.astype(F32) for a in dense))
    model.weights = weights
    return model


# ---------------------------------------------------------------------------------------------
# Keras
# ---------------------------------------------------------------------------------------------
def keras_model(model: ModelDef, *, batch=None, steps=None, stateful=False, sequences=False, keras=None):
    """The model in Keras 3 (or the ``keras`` module given, e.g. tf_keras), with the shared
    weights; ``sequences``: every step's output."""
    if keras is None:
        import keras

    inputs = keras.Input(batch_shape=(batch, steps, model.features))
    x = inputs
    layer_class = keras.layers.LSTM if model.cell == "lstm" else keras.layers.GRU
    layers = []
    for k, units in enumerate(model.units):
        last = k == len(model.units) - 1
        layer = layer_class(units, return_sequences=sequences or not last, stateful=stateful)
        x = layer(x)
        layers.append(layer)
    head = keras.layers.Dense(model.outputs)
    y = head(x)
    keras_net = keras.Model(inputs, y)
    for layer, weights in zip(layers + [head], model.weights):
        layer.set_weights(list(weights))
    return keras_net


# ---------------------------------------------------------------------------------------------
# PyTorch and ONNX
# ---------------------------------------------------------------------------------------------
def _torch_gru_blocks(array, units):
    """Keras z, r, h blocks (last axis) -> PyTorch r, z, n."""
    z, r, h = (array[..., k * units : (k + 1) * units] for k in range(3))
    return np.concatenate([r, z, h], axis=-1)


def torch_parameters(model: ModelDef):
    """Per layer (weight_ih, weight_hh, bias_ih, bias_hh) in PyTorch's layout, then (W, b) of the head."""
    layers = []
    for (kernel, recurrent, bias), units in zip(model.weights[:-1], model.units):
        if model.cell == "lstm":
            params = (kernel.T, recurrent.T, bias, np.zeros_like(bias))
        else:
            params = (_torch_gru_blocks(kernel, units).T, _torch_gru_blocks(recurrent, units).T,
                      _torch_gru_blocks(bias[0], units), _torch_gru_blocks(bias[1], units))
        layers.append(tuple(np.ascontiguousarray(p, F32) for p in params))
    dense_w, dense_b = model.weights[-1]
    return layers, (np.ascontiguousarray(dense_w.T), dense_b)


def torch_modules(model: ModelDef):
    """``(net, cells)``: ``net(x, *states) -> (y, *states)`` over (B, T, F) with nn.LSTM/nn.GRU
    layers (states (1, B, H) each: h, c per LSTM layer), and ``cells(x, *states)`` for one step
    with nn.LSTMCell/nn.GRUCell (states (B, H))."""
    import torch
    from torch import nn

    layers, (dense_w, dense_b) = torch_parameters(model)
    lstm = model.cell == "lstm"

    def load(module, params):
        with torch.no_grad():
            for name, value in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), params):
                suffix = "_l0" if isinstance(module, (nn.LSTM, nn.GRU)) else ""
                getattr(module, name + suffix).copy_(torch.from_numpy(value))
        return module

    def head():
        linear = nn.Linear(dense_w.shape[1], dense_w.shape[0])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(dense_w))
            linear.bias.copy_(torch.from_numpy(dense_b))
        return linear

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            size = model.features
            rnns = []
            for units, params in zip(model.units, layers):
                rnns.append(load((nn.LSTM if lstm else nn.GRU)(size, units, batch_first=True), params))
                size = units
            self.rnns = nn.ModuleList(rnns)
            self.head = head()

        def forward(self, x, *states):
            new = []
            for k, rnn in enumerate(self.rnns):
                if lstm:
                    x, (h, c) = rnn(x, (states[2 * k], states[2 * k + 1]))
                    new += [h, c]
                else:
                    x, h = rnn(x, states[k])
                    new.append(h)
            return (self.head(x), *new)

    class Cells(nn.Module):
        def __init__(self):
            super().__init__()
            size = model.features
            cells = []
            for units, params in zip(model.units, layers):
                cells.append(load((nn.LSTMCell if lstm else nn.GRUCell)(size, units), params))
                size = units
            self.cells = nn.ModuleList(cells)
            self.head = head()

        def forward(self, x, *states):
            new = []
            for k, cell in enumerate(self.cells):
                if lstm:
                    h, c = cell(x, (states[2 * k], states[2 * k + 1]))
                    new += [h, c]
                else:
                    h = cell(x, states[k])
                    new.append(h)
                x = h
            return (self.head(x), *new)

    return Net().eval(), Cells().eval()


def state_names(model: ModelDef):
    names = []
    for k in range(len(model.units)):
        names += [f"h{k}", f"c{k}"] if model.cell == "lstm" else [f"h{k}"]
    return names


def state_sizes(model: ModelDef):
    sizes = []
    for units in model.units:
        sizes += [units, units] if model.cell == "lstm" else [units]
    return sizes


def export_onnx(model: ModelDef, net, path: Path) -> Path:
    """``net`` as ONNX: inputs x (B, T, F) and the states (1, B, H); outputs y (B, T, O) and the
    new states. Batch and time are dynamic axes, so one file serves every section."""
    import torch

    names = state_names(model)
    x = torch.zeros(2, 3, model.features)
    states = [torch.zeros(1, 2, size) for size in state_sizes(model)]
    dynamic = {"x": {0: "batch", 1: "time"}, "y": {0: "batch", 1: "time"}}
    for name in names:
        dynamic[name] = {1: "batch"}
        dynamic[name + "_out"] = {1: "batch"}
    torch.onnx.export(net, (x, *states), str(path), input_names=["x", *names], output_names=["y", *[n + "_out" for n in names]],
                      dynamic_axes=dynamic, opset_version=17, dynamo=False)
    return path


# ---------------------------------------------------------------------------------------------
# TFLite
# ---------------------------------------------------------------------------------------------
def tflite_sequence(model: ModelDef, steps: int, batch: int = 1, flavor: str = "keras3") -> bytes:
    """The Keras sequence model (every step's output, zero initial state) through
    ``TFLiteConverter.from_keras_model``. ``flavor``: "keras3" (Keras 3's LSTM/GRU become a WHILE
    loop) or "tf_keras" (Keras 2's LSTM becomes the fused UNIDIRECTIONAL_SEQUENCE_LSTM op)."""
    import contextlib
    import io

    import tensorflow as tf

    module = None
    if flavor == "tf_keras":
        import tf_keras as module
    net = keras_model(model, batch=batch, steps=steps, sequences=True, keras=module)
    with contextlib.redirect_stdout(io.StringIO()):  # Keras 3 prints the artifact it saved
        return tf.lite.TFLiteConverter.from_keras_model(net).convert()


def tflite_ops(content: bytes) -> list:
    """The op names of a TFLite model (after delegation), for the notes."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=1)
    interpreter.allocate_tensors()
    return sorted({op["op_name"] for op in interpreter._get_ops_details()})


def _tf_cell_step(model: ModelDef, x, states):
    """One step of the model in TF ops, from the shared weights: returns (y, new states)."""
    import tensorflow as tf

    new = []
    k = 0
    for (kernel, recurrent, bias), units in zip(model.weights[:-1], model.units):
        if model.cell == "lstm":
            h, c = states[k], states[k + 1]
            k += 2
            z = tf.matmul(x, kernel) + tf.matmul(h, recurrent) + bias
            i, f, g, o = tf.split(z, 4, axis=1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
            h = tf.sigmoid(o) * tf.tanh(c)
            new += [h, c]
        else:
            h = states[k]
            k += 1
            xw = tf.matmul(x, kernel) + bias[0]
            hu = tf.matmul(h, recurrent) + bias[1]
            xz, xr, xh = tf.split(xw, 3, axis=1)
            hz, hr, hh = tf.split(hu, 3, axis=1)
            z = tf.sigmoid(xz + hz)
            r = tf.sigmoid(xr + hr)
            candidate = tf.tanh(xh + r * hh)
            h = z * h + (1.0 - z) * candidate
            new.append(h)
        x = h
    dense_w, dense_b = model.weights[-1]
    return tf.matmul(x, dense_w) + dense_b, new


def tflite_step(model: ModelDef, batch: int = 1, resource_variables: bool = True) -> bytes:
    """One step of ``batch`` streams as a TFLite model.

    ``resource_variables``: the state lives in tf.Variables inside the model (VAR_HANDLE /
    READ_VARIABLE / ASSIGN_VARIABLE ops), so a step is set x, invoke, get y. Otherwise the states
    are extra inputs and outputs that the caller feeds back.
    """
    import tensorflow as tf

    sizes = state_sizes(model)
    x_spec = tf.TensorSpec((batch, model.features), tf.float32)
    if resource_variables:
        class Step(tf.Module):
            def __init__(self):
                super().__init__()
                self.states = [tf.Variable(tf.zeros((batch, size)), name=f"s{k}") for k, size in enumerate(sizes)]

            @tf.function(input_signature=[x_spec])
            def step(self, x):
                y, new = _tf_cell_step(model, x, self.states)
                for variable, value in zip(self.states, new):
                    variable.assign(value)
                return y

        module = Step()
        converter = tf.lite.TFLiteConverter.from_concrete_functions([module.step.get_concrete_function()], module)
        converter.experimental_enable_resource_variables = True
        return converter.convert()

    specs = [tf.TensorSpec((batch, size), tf.float32) for size in sizes]

    @tf.function(input_signature=[x_spec, *specs])
    def step(x, *states):
        y, new = _tf_cell_step(model, x, list(states))
        return (y, *new)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([step.get_concrete_function()], tf.Module())
    return converter.convert()
