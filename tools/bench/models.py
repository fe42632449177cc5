"""The benchmark models, built once with random weights and handed to every framework.

Each model is a chain of recurrent layers and a Dense head, optionally behind causal Conv1D
layers (model (e), the DeepConvLSTM shape of activity recognition). Its weights are drawn once
(seeded) in Keras's layout, then:

* Keras: the same architecture with ``set_weights`` (stateless for conversion, stateful for the
  Keras step contender, ``return_sequences`` everywhere for the TFLite sequence model);
* edgernn: ``edgernn.convert(keras_model)``, the public path a user takes;
* PyTorch: ``nn.LSTM``/``nn.GRU`` (and cells) with the weights transposed and, for GRU,
  the gate blocks reordered (Keras z, r, h -> PyTorch r, z, n); a convolution is ``nn.Conv1d``
  in the (N, C, T) layout whose left padding is a carried buffer of its last ``k - 1`` inputs
  (zeros at the start, which is ``F.pad(x, (k - 1, 0))``), so a call of one timestep is a true step;
* ONNX: the PyTorch module exported with ``torch.onnx.export`` (state as inputs/outputs);
* TFLite: the Keras sequence model through TFLiteConverter, and a one-step ``tf.Module``
  whose state (convolution windows included) lives in resource variables.

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
    conv: tuple = ()  # (filters, kernel_size) per causal relu Conv1D before the recurrent layers
    conv_weights: list = field(default_factory=list)  # per Conv1D: (kernel (k, in, filters), bias)

    @property
    def label(self) -> str:
        layers = " + ".join(f"{self.cell.upper()}({u})" for u in self.units)
        if len(self.units) > 1 and len(set(self.units)) == 1:
            layers = f"{len(self.units)} x {self.cell.upper()}({self.units[0]})"
        if self.conv:
            convs = " + ".join(f"Conv1D{c}" for c in self.conv)
            if len(self.conv) > 1 and len(set(self.conv)) == 1:
                convs = f"{len(self.conv)} x Conv1D{self.conv[0]}"
            layers = f"{convs} causal + {layers}"
        return f"({self.key}) {layers} on {self.features} + Dense({self.outputs})"

    @property
    def short(self) -> str:
        conv = "".join(f"C{f}k{k}-" for f, k in self.conv)
        return f"({self.key}) {conv}{self.cell.upper()}{'x'.join(str(u) for u in self.units)}/{self.features}->{self.outputs}"

    @property
    def recurrent_features(self) -> int:
        """Features into the first recurrent layer: the last convolution's filters, or the input's."""
        return self.conv[-1][0] if self.conv else self.features

    @property
    def conv_buffers(self) -> list:
        """(channels, k - 1) per convolution: the inputs it carries between calls."""
        channels = [self.features] + [f for f, _ in self.conv[:-1]]
        return [(c, k - 1) for c, (_, k) in zip(channels, self.conv)]

    @property
    def gates(self) -> int:
        return 4 if self.cell == "lstm" else 3


MODELS = {
    "a": ModelDef("a", "lstm", 8, (64,), 1),
    "b": ModelDef("b", "lstm", 3, (32,), 1),
    "c": ModelDef("c", "lstm", 16, (128, 128), 4),
    "d": ModelDef("d", "gru", 8, (64,), 1),
    # DeepConvLSTM's shape (activity recognition from 6 inertial channels, 6 activities)
    "e": ModelDef("e", "lstm", 6, (64,), 6, conv=((32, 5), (32, 5))),
    # the same shape sized for a microcontroller (tools/bench/mcu.py; 4 activities, as BasicMotions')
    "f": ModelDef("f", "lstm", 6, (32,), 4, conv=((16, 5), (16, 5))),
    # (f) without its convolutions: what they cost (tools/bench/mcu.py --models f,g)
    "g": ModelDef("g", "lstm", 16, (32,), 4),
}


def make_weights(model: ModelDef, seed: int = 0) -> ModelDef:
    """Random weights in Keras's layout, scaled so activations stay in their working range."""
    rng = np.random.default_rng(seed + ord(model.key))
    weights = []
    size = model.features
    model.conv_weights = []
    for filters, width in model.conv:
        kernel = rng.normal(scale=1.0 / np.sqrt(width * size), size=(width, size, filters))
        model.conv_weights.append((kernel.astype(F32), rng.normal(scale=0.1, size=filters).astype(F32)))
        size = filters
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
    for (filters, width), weights in zip(model.conv, model.conv_weights):
        conv = keras.layers.Conv1D(filters, width, padding="causal", activation="relu")
        x = conv(x)
        conv.set_weights(list(weights))
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
    with nn.LSTMCell/nn.GRUCell (states (B, H)).

    With convolutions, the states start with one window per nn.Conv1d, (B, C, k - 1): its last
    ``k - 1`` inputs, which stand in for ``F.pad(x, (k - 1, 0))`` (zeros from a fresh state) and
    carry the causal padding across calls. Both modules run the same convolutions; ``cells`` takes
    one timestep (B, F), so its window and the new input are exactly the kernel's ``k`` inputs."""
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

    def convolutions():
        modules = []
        for (filters, width), (kernel, bias) in zip(model.conv, model.conv_weights):
            conv = nn.Conv1d(kernel.shape[1], filters, width)
            with torch.no_grad():  # Keras (k, in, out) -> PyTorch (out, in, k)
                conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.transpose(2, 1, 0))))
                conv.bias.copy_(torch.from_numpy(bias))
            modules.append(conv)
        return nn.ModuleList(modules)

    def convolve(convs, x, windows):
        """x (B, F, T) through the causal relu convolutions, each window (B, C, k - 1) prepended:
        returns (B, filters, T) and the new windows (the last k - 1 inputs of each)."""
        new = []
        for conv, window in zip(convs, windows):
            padded = torch.cat([window, x], dim=2)
            new.append(padded[:, :, padded.shape[2] - window.shape[2]:])
            x = torch.relu(conv(padded))
        return x, new

    n_conv = len(model.conv)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = convolutions()
            size = model.recurrent_features
            rnns = []
            for units, params in zip(model.units, layers):
                rnns.append(load((nn.LSTM if lstm else nn.GRU)(size, units, batch_first=True), params))
                size = units
            self.rnns = nn.ModuleList(rnns)
            self.head = head()

        def forward(self, x, *states):
            new = []
            if n_conv:  # (B, T, F) -> (B, F, T) for nn.Conv1d and back
                x, new = convolve(self.convs, x.permute(0, 2, 1), states[:n_conv])
                x, states = x.permute(0, 2, 1), states[n_conv:]
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
            self.convs = convolutions()
            size = model.recurrent_features
            cells = []
            for units, params in zip(model.units, layers):
                cells.append(load((nn.LSTMCell if lstm else nn.GRUCell)(size, units), params))
                size = units
            self.cells = nn.ModuleList(cells)
            self.head = head()

        def forward(self, x, *states):
            new = []
            if n_conv:  # one timestep (B, F) -> (B, F, 1): each convolution sees its window and x, k inputs
                x, new = convolve(self.convs, x[:, :, None], states[:n_conv])
                x, states = x[:, :, 0], states[n_conv:]
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
    names = [f"w{k}" for k in range(len(model.conv))]  # convolution windows first
    for k in range(len(model.units)):
        names += [f"h{k}", f"c{k}"] if model.cell == "lstm" else [f"h{k}"]
    return names


def state_sizes(model: ModelDef):
    """The recurrent states' sizes (convolution windows not included: see :func:`state_shapes`)."""
    sizes = []
    for units in model.units:
        sizes += [units, units] if model.cell == "lstm" else [units]
    return sizes


def state_shapes(model: ModelDef, batch: int, layout: str) -> list:
    """Shapes of the states in :func:`state_names`' order. ``layout``: "torch" (the windows
    (B, C, k - 1), the nn.LSTM/GRU states (1, B, H)), "cells" (windows as for torch, cell states
    (B, H)) or "tf" (windows (B, k - 1, C), states (B, H))."""
    windows = [(batch, w, c) if layout == "tf" else (batch, c, w) for c, w in model.conv_buffers]
    return windows + [(1, batch, size) if layout == "torch" else (batch, size) for size in state_sizes(model)]


def export_onnx(model: ModelDef, net, path: Path) -> Path:
    """``net`` as ONNX: inputs x (B, T, F), the convolution windows (B, C, k - 1) and the states
    (1, B, H); outputs y (B, T, O) and the new windows and states. Batch and time are dynamic axes, so one file serves every section."""
    import torch

    names = state_names(model)
    x = torch.zeros(2, 3, model.features)
    states = [torch.zeros(shape) for shape in state_shapes(model, 2, "torch")]
    dynamic = {"x": {0: "batch", 1: "time"}, "y": {0: "batch", 1: "time"}}
    for name in names:
        axis = 0 if name.startswith("w") else 1  # a window is (B, C, k - 1), a recurrent state (1, B, H)
        dynamic[name] = {axis: "batch"}
        dynamic[name + "_out"] = {axis: "batch"}
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
    """One step of the model in TF ops, from the shared weights: returns (y, new states). The
    states start with the convolution windows (B, k - 1, C): window and x are the kernel's k
    inputs, one product with the kernel flattened to (k C, filters)."""
    import tensorflow as tf

    new = []
    k = 0
    for (kernel, bias), window in zip(model.conv_weights, states):
        inputs = tf.concat([window, x[:, None, :]], axis=1)  # (B, k, C)
        new.append(inputs[:, 1:])
        flat = tf.reshape(inputs, (-1, kernel.shape[0] * kernel.shape[1]))
        x = tf.nn.relu(tf.matmul(flat, kernel.reshape(-1, kernel.shape[2])) + bias)
        k += 1
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

    shapes = state_shapes(model, batch, "tf")
    x_spec = tf.TensorSpec((batch, model.features), tf.float32)
    if resource_variables:
        class Step(tf.Module):
            def __init__(self):
                super().__init__()
                self.states = [tf.Variable(tf.zeros(shape), name=f"s{k}") for k, shape in enumerate(shapes)]

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

    specs = [tf.TensorSpec(shape, tf.float32) for shape in shapes]

    @tf.function(input_signature=[x_spec, *specs])
    def step(x, *states):
        y, new = _tf_cell_step(model, x, list(states))
        return (y, *new)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([step.get_concrete_function()], tf.Module())
    return converter.convert()
