"""Numba float32 kernels: one file per op, and the glue that prepares a layer for them.

This module is also the float32 backend of :func:`edgernn.graph.execute` (``dtype``,
``recurrent_sequence``, ``dense``, ``activate``), mirroring :mod:`edgernn.reference`.
Kernels are time-major: sequences are ``(T, B, features)`` so each timestep is contiguous.
"""

from __future__ import annotations

import numpy as np

from ..ir import ACTIVATION_IDS
from .activations import activation_forward
from .dense import dense_forward
from .gru import gru_run
from .lstm import lstm_run
from .masking import masking_forward
from .simple_rnn import simple_run

dtype = np.float32


def _or_zeros(array, shape):
    return np.zeros(shape, np.float32) if array is None else array


class RecurrentKernel:
    """A recurrent layer made ready for its kernel: ids resolved, absent optional weights as neutral
    arrays (zero biases and peepholes, an empty projection, an infinite clip).

    Holds only read-only weights, so one instance serves any number of streams; states, previous
    output and scratch are passed in by the caller (each stream owns its own).
    """

    def __init__(self, layer):
        self.layer = layer
        width = layer.gates * layer.units
        self.bias = _or_zeros(layer.bias, width)
        self.recurrent_bias = _or_zeros(layer.recurrent_bias, width)
        self.peephole = _or_zeros(layer.peephole, (3, layer.units))
        self.projection = _or_zeros(layer.projection, (0, 0))
        self.clip = np.float32(np.inf if layer.cell_clip is None else layer.cell_clip)
        self.activation = ACTIVATION_IDS[layer.activation]
        self.recurrent_activation = ACTIVATION_IDS[layer.recurrent_activation]

    def new_state(self, batch: int) -> tuple[np.ndarray, ...]:
        """Zero states, one ``(batch, size)`` array each: LSTM (h, c), GRU and SimpleRNN (h,)."""
        return tuple(np.zeros((batch, size), np.float32) for size in self.layer.state_sizes)

    def new_scratch(self) -> np.ndarray:
        layer = self.layer
        if layer.cell == "gru":
            return np.zeros((2, 3 * layer.units), np.float32)
        if layer.cell == "lstm":
            return np.zeros(5 * layer.units, np.float32)
        return np.zeros(layer.units, np.float32)

    def run(self, x, states, out, ys, keep, scratch):
        """Advance ``states`` over ``x`` (T, B, F); each step's output into ``ys`` (T, B, output_size)."""
        layer = self.layer
        if layer.cell == "lstm":
            h, c = states
            lstm_run(x, layer.kernel, self.bias, layer.recurrent_kernel, self.peephole, self.projection, self.clip,
                     h, c, out, ys, keep, self.activation, self.recurrent_activation, layer.zero_output_for_mask,
                     scratch)
        elif layer.cell == "gru":
            gru_run(x, layer.kernel, self.bias, layer.recurrent_kernel, self.recurrent_bias, self.clip, states[0], out,
                    ys, keep, self.activation, self.recurrent_activation, layer.reset_after,
                    layer.zero_output_for_mask, scratch)
        else:
            simple_run(x, layer.kernel, self.bias, layer.recurrent_kernel, self.clip, states[0], out, ys, keep,
                       self.activation, layer.zero_output_for_mask, scratch)


def recurrent_sequence(layer, x, mask=None, initial_state=None):
    """float32 twin of :func:`edgernn.reference.recurrent.recurrent_sequence` (same shapes, semantics)."""
    runner = RecurrentKernel(layer)
    batch, steps, _ = x.shape
    order = slice(None, None, -1) if layer.go_backwards else slice(None)
    xt = np.ascontiguousarray(x.transpose(1, 0, 2)[order], dtype=np.float32)
    keep = np.ones((steps, batch), np.bool_) if mask is None else np.ascontiguousarray(mask.T[order], dtype=np.bool_)
    states = runner.new_state(batch)
    if initial_state is not None:
        for state, given in zip(states, initial_state):
            state[:] = given
    out = np.zeros((batch, layer.output_size), np.float32)
    ys = np.empty((steps, batch, layer.output_size), np.float32)
    runner.run(xt, states, out, ys, keep, runner.new_scratch())
    y = ys.transpose(1, 0, 2).copy() if layer.return_sequences else out
    return y, states


def dense_kernel_args(op):
    """Kernel arguments of a Dense op that do not change between calls."""
    return op.kernel, _or_zeros(op.bias, op.output_size), ACTIVATION_IDS[op.activation]


def dense(op, x):
    rows = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, op.input_size)
    out = np.empty((rows.shape[0], op.output_size), np.float32)
    dense_forward(rows, *dense_kernel_args(op), out)
    return out.reshape(x.shape[:-1] + (op.output_size,))


def activate(name, x):
    rows = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, x.shape[-1])
    out = np.empty_like(rows)
    activation_forward(rows, ACTIVATION_IDS[name], out)
    return out.reshape(x.shape)


__all__ = ["RecurrentKernel", "masking_forward", "dense_forward", "activation_forward", "recurrent_sequence", "dense", "activate", "dense_kernel_args", "dtype"]
