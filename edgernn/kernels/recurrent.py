"""The layer-at-a-time kernels' glue: a recurrent layer prepared for its jitted kernels, and the
float32 backend of :func:`edgernn.graph.execute`. Imports Numba (see :mod:`edgernn.kernels`).
"""

from __future__ import annotations

import functools

import numpy as np

from ..ir import ACTIVATION_IDS
from . import _or_zeros, dense_kernel_args
from ._gemm import PANEL, ROWS, pack_columns, packed_affine
from .activations import activation_forward
from .dense import bias_activation
from .gru import gru_batch_update, gru_sequence
from .lstm import lstm_batch_update, lstm_sequence
from .masking import masking_forward  # noqa: F401 -- re-exported by edgernn.kernels
from .program import aligned_zeros, is_standard, split_recurrent
from .simple_rnn import simple_batch_update, simple_sequence


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

    # Packed on first use: only a stream of many rows steps through packed_affine.
    @functools.cached_property
    def panels(self) -> tuple[np.ndarray, ...]:
        """The weights of :meth:`batch_step`, packed for :func:`edgernn.kernels._gemm.packed_affine`
        as ``(input, recurrent, bias, recurrent bias, no input, its panels)``.

        LSTM and SimpleRNN make all of ``x W + b + h U`` in one product. GRU makes ``x W + b`` and
        ``h U + b_h`` apart (its candidate needs them apart); "no input" is the empty operand of
        the second, (1, 0) with panels (1, 0, 16), never read (made once here, not per step). Without reset_after GRU's product is ``h U_zr`` only,
        and its recurrent bias is zero (see :func:`edgernn.kernels.gru.gru_sequence`).
        """
        recurrent_columns = self.recurrent_main.shape[1]
        return (pack_columns(self.layer.kernel), pack_columns(self.recurrent_main), pack_columns(self.bias),
                pack_columns(self.recurrent_bias[:recurrent_columns]),
                np.zeros((1, 0), np.float32), np.zeros((1, 0, PANEL), np.float32))

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

    def new_batch_buffers(self, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Buffers for :meth:`batch_step`: GRU's input part of the pre-activations (batch, 3H)
        ((batch, 0) for LSTM and SimpleRNN, whose one product makes them whole), the
        pre-activations (or GRU's recurrent part), (batch, gates * units), and the packed
        product's scratch for a ragged last panel."""
        width = self.layer.gates * self.layer.units
        input_part = aligned_zeros((batch, width if self.layer.cell == "gru" else 0))
        return input_part, aligned_zeros((batch, width)), aligned_zeros((ROWS, PANEL))

    def batch_step(self, x, states, out, keep, buffers, scratch):
        """One step of many streams: ``x`` (B, F) C-contiguous; no allocation.

        The products across streams run on weights packed once
        (:func:`edgernn.kernels._gemm.packed_affine`), then one jitted pass per stream applies the
        gates.
        """
        layer = self.layer
        xw, z, tail = buffers
        input_panels, recurrent_panels, bias, recurrent_bias, no_input, no_panels = self.panels
        h = states[0]
        if layer.cell == "gru":
            packed_affine(no_input, no_panels, x, input_panels, bias, xw.shape[1], xw, tail)
            packed_affine(no_input, no_panels, h, recurrent_panels, recurrent_bias, self.recurrent_main.shape[1],
                          z, tail)
            gru_batch_update(xw, z, h, out, keep, self.recurrent_candidate, layer.reset_after, self.clip,
                             self.activation, self.recurrent_activation, self.standard, layer.zero_output_for_mask)
            return
        packed_affine(x, input_panels, h, recurrent_panels, bias, z.shape[1], z, tail)
        if layer.cell == "lstm":
            lstm_batch_update(z, h, states[1], out, keep, self.peephole, self.projection, self.clip,
                              self.activation, self.recurrent_activation, self.standard,
                              layer.zero_output_for_mask, scratch[4 * layer.units :])
        else:
            simple_batch_update(z, h, out, keep, self.clip, self.activation, self.standard,
                                layer.zero_output_for_mask)


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
