"""The layer-at-a-time kernels' glue: a recurrent layer prepared for its jitted kernels, and the
float32 backend of :func:`edgernn.graph.execute`. Imports Numba (see :mod:`edgernn.kernels`).
"""

from __future__ import annotations

import numpy as np

from ..ir import ACTIVATION_IDS
from . import _or_zeros, dense_kernel_args
from .activations import activation_forward
from .dense import bias_activation
from .gru import gru_batch_update, gru_sequence
from .lstm import lstm_batch_update, lstm_sequence
from .masking import masking_forward  # noqa: F401 -- re-exported by edgernn.kernels
from .program import is_standard, split_recurrent
from .simple_rnn import simple_batch_update, simple_sequence

# Inputs this narrow are projected inside the many-streams kernels rather than by BLAS.
NARROW_INPUT = 16


class RecurrentKernel:
    """A recurrent layer made ready for its kernels: ids resolved, absent optional weights as
    neutral arrays (zero biases and peepholes, an empty projection, an infinite clip), the GRU
    recurrent kernel split as its candidate needs.

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
        self.standard = is_standard(layer)
        self.recurrent_main, self.recurrent_candidate = split_recurrent(layer)
        # Many-streams step: x W inside the jitted kernel for narrow inputs, else one BLAS product.
        self.project_input = layer.input_size <= NARROW_INPUT

    def new_state(self, batch: int) -> tuple[np.ndarray, ...]:
        """Zero states, one ``(batch, size)`` array each: LSTM (h, c), GRU and SimpleRNN (h,)."""
        return tuple(np.zeros((batch, size), np.float32) for size in self.layer.state_sizes)

    def new_scratch(self) -> np.ndarray:
        units = self.layer.units
        return np.zeros({"lstm": 5 * units, "gru": 6 * units, "simple": units}[self.layer.cell], np.float32)

    def input_projection(self, x: np.ndarray) -> np.ndarray:
        """``x W + b`` for a block ``x`` (T, B, F): one BLAS product -> (T, B, gates * units)."""
        steps, batch, features = x.shape
        xw = x.reshape(steps * batch, features) @ self.layer.kernel
        xw += self.bias
        return xw.reshape(steps, batch, self.bias.shape[0])

    def sequence(self, x, states, out, ys, keep, scratch):
        """Advance ``states`` over ``x`` (T, B, F); each step's output into ``ys`` (T, B, output_size)."""
        layer, xw = self.layer, self.input_projection(x)
        if layer.cell == "lstm":
            h, c = states
            lstm_sequence(xw, layer.recurrent_kernel, self.peephole, self.projection, self.clip, h, c, out, ys, keep,
                          self.activation, self.recurrent_activation, self.standard, layer.zero_output_for_mask,
                          scratch)
        elif layer.cell == "gru":
            gru_sequence(xw, self.recurrent_main, self.recurrent_bias, self.recurrent_candidate, layer.reset_after,
                         self.clip, states[0], out, ys, keep, self.activation, self.recurrent_activation,
                         self.standard, layer.zero_output_for_mask, scratch.reshape(2, -1))
        else:
            simple_sequence(xw, layer.recurrent_kernel, self.clip, states[0], out, ys, keep, self.activation,
                            self.standard, layer.zero_output_for_mask)

    def new_batch_buffers(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """Buffers for :meth:`batch_step`: input and recurrent projections, (batch, gates * units)."""
        width = self.layer.gates * self.layer.units
        return np.zeros((batch, width), np.float32), np.zeros((batch, width), np.float32)

    def batch_step(self, x, states, out, keep, buffers, scratch):
        """One step of many streams: ``x`` (B, F); projections by BLAS into ``buffers``, no allocation.

        The recurrent product ``h U`` is always one BLAS product across streams; the input product
        ``x W`` too for wide inputs, and inside the jitted kernel for narrow ones (at most
        ``NARROW_INPUT`` features), where a BLAS call costs more than it saves.
        """
        layer = self.layer
        xw, hu = buffers
        project_input = self.project_input
        if not project_input:
            np.matmul(x, layer.kernel, out=xw)
        if layer.cell == "gru":
            if layer.reset_after:
                np.matmul(states[0], self.recurrent_main, out=hu)
            else:
                # only z and r have a recurrent product here; hu's last block is scratch for r * h
                np.matmul(states[0], self.recurrent_main, out=hu[:, : 2 * layer.units])
            gru_batch_update(x, layer.kernel, xw, project_input, hu, self.bias, self.recurrent_bias, states[0], out,
                             keep, self.recurrent_candidate, layer.reset_after, self.clip, self.activation,
                             self.recurrent_activation, self.standard, layer.zero_output_for_mask)
            return
        np.matmul(states[0], layer.recurrent_kernel, out=hu)
        if layer.cell == "lstm":
            lstm_batch_update(x, layer.kernel, xw, project_input, hu, self.bias, states[0], states[1], out, keep,
                              self.peephole, self.projection, self.clip, self.activation, self.recurrent_activation,
                              self.standard, layer.zero_output_for_mask, scratch[4 * layer.units :])
        else:
            simple_batch_update(x, layer.kernel, xw, project_input, hu, self.bias, states[0], out, keep, self.clip,
                                self.activation, self.standard, layer.zero_output_for_mask)


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
    runner.sequence(xt, states, out, ys, keep, runner.new_scratch())
    y = ys.transpose(1, 0, 2).copy() if layer.return_sequences else out
    return y, states


def dense(op, x):
    """``activation(x W + b)`` over the last axis: one BLAS product, then bias and activation."""
    rows = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, op.input_size)
    kernel, bias, activation = dense_kernel_args(op)
    out = rows @ kernel
    bias_activation(out, bias, activation)
    return out.reshape(x.shape[:-1] + (op.output_size,))


def activate(name, x):
    rows = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, x.shape[-1])
    out = np.empty_like(rows)
    activation_forward(rows, ACTIVATION_IDS[name], out)
    return out.reshape(x.shape)
