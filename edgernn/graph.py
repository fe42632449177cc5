"""Evaluate a :class:`~edgernn.ir.ModelSpec` graph on whole arrays, with a pluggable numeric backend.

The same walk runs the float64 reference (:mod:`edgernn.reference`) and the float32 Numba kernels
(:mod:`edgernn.kernels`); a backend provides ``dtype``, ``recurrent_sequence``, ``dense`` and
``activate``, ``conv1d``, ``pool1d`` and ``affine`` with the signatures of :mod:`edgernn.reference`.

:func:`streamable_problem` says whether a spec can be stepped one timestep at a time: pure IR
analysis, here so that the runtime, the quantizer, ``verify``, ``summary`` and ``bench`` share it
without importing the runtime.
"""

from __future__ import annotations

import numpy as np

from . import ir
from .errors import InvalidInput


def _bidirectional(backend, op: ir.Bidirectional, x, mask):
    y_f, _ = backend.recurrent_sequence(op.forward, x, mask)
    y_b, _ = backend.recurrent_sequence(op.backward, x, mask)
    if op.forward.return_sequences:
        y_b = y_b[:, ::-1]  # Keras aligns the backward outputs with the forward timesteps
    if op.merge_mode == "concat":
        return np.concatenate([y_f, y_b], axis=-1)
    if op.merge_mode == "sum":
        return y_f + y_b
    if op.merge_mode == "ave":
        return (y_f + y_b) / 2
    return y_f * y_b


def execute(spec: ir.ModelSpec, inputs: list[np.ndarray], backend) -> list[np.ndarray]:
    """Run ``spec`` on ``inputs`` (one array per model input, already validated) from zero state.

    Returns one array per model output, in the backend's dtype.
    """
    env = {i.name: np.ascontiguousarray(x, dtype=backend.dtype) for i, x in zip(spec.inputs, inputs)}
    for node in spec.nodes:
        op = node.op
        x = env[node.inputs[0]]
        mask = env[node.mask] if node.mask else None
        if isinstance(op, ir.Recurrent):
            initial = [env[n] for n in node.initial_state] or None
            y, states = backend.recurrent_sequence(op, x, mask, initial)
            made = [y, *states][: len(node.outputs)]
        elif isinstance(op, ir.Bidirectional):
            made = [_bidirectional(backend, op, x, mask)]
        elif isinstance(op, ir.Dense):
            made = [backend.dense(op, x)]
        elif isinstance(op, ir.Activation):
            made = [backend.activate(op.activation, x)]
        elif isinstance(op, ir.Masking):
            keep = np.any(x != np.asarray(op.mask_value, dtype=x.dtype), axis=-1)
            made = [x * keep[..., None].astype(x.dtype), keep]
        elif isinstance(op, ir.RepeatVector):
            made = [np.ascontiguousarray(np.repeat(x[:, None, :], op.n, axis=1))]
        elif isinstance(op, ir.Conv1D):
            made = [backend.conv1d(op, x)]
        elif isinstance(op, ir.Pooling1D):
            made = [backend.pool1d(op, x)]
        elif isinstance(op, ir.Affine):
            made = [backend.affine(op, x)]
        elif isinstance(op, ir.Flatten):
            if x.shape[1] != op.steps:
                raise InvalidInput(f"layer {op.name!r} (Flatten) takes sequences of {op.steps} timesteps here, "
                                 f"got {x.shape[1]}")
            made = [np.ascontiguousarray(x.reshape(x.shape[0], -1))]
        else:  # pragma: no cover - ir validation makes this unreachable
            raise TypeError(f"unknown op {type(op).__name__}")
        env.update(zip(node.outputs, made))
    return [env[name] for name in spec.outputs]


def streamable_problem(spec: ir.ModelSpec) -> str | None:
    """Why ``spec`` cannot be stepped one timestep at a time, or None if it can.

    A stream needs a chain: one sequence input, each node reading the previous node's output,
    and only causal ops (forward recurrent layers without given initial states, Dense,
    Activation, Masking, Affine; Conv1D with causal or valid padding, valid or global pooling,
    whose past inputs become state; Flatten of a vector); the last node's result is the model's
    only output.
    """
    if len(spec.inputs) != 1 or spec.inputs[0].rank != 3:
        return "a stream takes one sequence input (batch, T, features)"
    current = spec.inputs[0].name
    windowed = None  # the first Conv1D or pooling: a mask made before it has another time axis after it
    early_masks = set()
    for node in spec.nodes:
        op = node.op
        if node.inputs[0] != current:
            return f"layer {op.name!r} does not read the previous layer's output (not a chain)"
        if isinstance(op, ir.Bidirectional):
            return f"layer {op.name!r} is Bidirectional: its backward half needs the whole sequence (use predict)"
        if isinstance(op, ir.RepeatVector):
            return f"layer {op.name!r} is RepeatVector: one-to-many models run in predict only"
        if isinstance(op, (ir.Conv1D, ir.Pooling1D)) and op.padding == "same" and not getattr(op, "global_pool", False):
            kind = "Conv1D" if isinstance(op, ir.Conv1D) else "Pooling1D"
            return (f"layer {op.name!r} is {kind} with padding='same': its output at a timestep reads later inputs "
                    "(use predict, or padding='causal' / 'valid' to stream)")
        if isinstance(op, ir.Flatten) and spec.tensor_shape(node.inputs[0])[0] == 3:
            return f"layer {op.name!r} is Flatten over time: it needs the whole sequence of {op.steps} steps (use predict)"
        if isinstance(op, (ir.Conv1D, ir.Pooling1D)) and windowed is None:
            windowed = op.name
        if node.mask and windowed is not None and node.mask in early_masks:
            return f"layer {op.name!r} reads a mask made before {windowed!r}, whose output has another time axis"
        if isinstance(op, ir.Masking) and windowed is None:
            early_masks.add(node.outputs[1])
        if isinstance(op, ir.Recurrent) and op.go_backwards:
            return f"layer {op.name!r} reads its input backwards (go_backwards): use predict"
        if node.initial_state:
            return f"layer {op.name!r} starts from another layer's state (encoder-decoder): use predict"
        current = node.outputs[0]
    if tuple(spec.outputs) != (current,):
        return "the model's output is not the last layer's result"
    return None
