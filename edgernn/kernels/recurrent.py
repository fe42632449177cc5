"""The layer-at-a-time kernels' glue: a recurrent layer prepared for its jitted kernels, and the
float32 backend of :func:`edgernn.graph.execute`. Imports Numba (see :mod:`edgernn.kernels`).
"""

from __future__ import annotations

import functools
import typing

import numpy as np

from ..ir import ACTIVATION_IDS
from ._gemm import PANEL, ROWS, pack_columns, packed_affine
from ._matvec import pack_recurrent, pad_columns, padded_width, prepared
from .activations import activation_forward
from .dense import bias_activation
from .gru import gru_batch_update, gru_sequence
from .lstm import lstm_batch_update, lstm_sequence
from .masking import masking_forward  # noqa: F401 -- re-exported by edgernn.kernels
from .program import _or_zeros, aligned_zeros, dense_kernel_args, is_standard, split_recurrent
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
        # The many-streams step takes every sigmoid gate as a tanh of half its pre-activation
        # (lstm_batch_update): a standard LSTM without projection, a standard GRU with reset_after.
        self.halved = self.standard and (layer.cell == "gru" and layer.reset_after
                                         or layer.cell == "lstm" and layer.projection is None)

    # Packed on first use: only a stream of many rows steps through packed_affine.
    @functools.cached_property
    def products(self) -> dict[str, Product]:
        """The products of :meth:`batch_step`, by name, their weights packed for
        :func:`edgernn.kernels._gemm.packed_affine`.

        * ``"whole"`` (LSTM, SimpleRNN): all of ``x W + b + h U`` in one product.
        * GRU, ``"input"`` and ``"recurrent"``: ``x W + b`` and ``h U + b_h`` apart (its candidate
          needs them apart). Without reset_after the recurrent product is ``h U_zr`` only, and its
          recurrent bias zero (see :func:`edgernn.kernels.gru.gru_sequence`).
        * GRU with :attr:`halved`, instead: ``"gates"``, z and r whole (``x W_zr + h U_zr`` and
          both biases), and ``"candidate input"`` and ``"candidate recurrent"``, the h block's
          two parts.

        With :attr:`halved` the sigmoid gates' columns are packed times 1/2 (exact).
        """
        layer, units = self.layer, self.layer.units
        recurrent = self.recurrent_main
        recurrent_bias = self.recurrent_bias[: recurrent.shape[1]]
        if layer.cell == "gru" and self.halved:
            gates, candidate = slice(0, 2 * units), slice(2 * units, 3 * units)
            return {"gates": Product.of(layer.kernel[:, gates] / 2, recurrent[:, gates] / 2,
                                        (self.bias[gates] + recurrent_bias[gates]) / 2),
                    "candidate input": Product.of(None, layer.kernel[:, candidate], self.bias[candidate]),
                    "candidate recurrent": Product.of(None, recurrent[:, candidate], recurrent_bias[candidate])}
        if layer.cell == "gru":
            return {"input": Product.of(None, layer.kernel, self.bias),
                    "recurrent": Product.of(None, recurrent, recurrent_bias)}
        scale = np.ones(self.bias.shape[0], np.float32)
        if self.halved:  # LSTM: the i, f and o blocks (c, the third, is a tanh)
            scale[: 2 * units] = scale[3 * units :] = 0.5
        return {"whole": Product.of(layer.kernel * scale, recurrent * scale, self.bias * scale)}

    def new_state(self, batch: int) -> tuple[np.ndarray, ...]:
        """Zero states, one ``(batch, size)`` array each: LSTM (h, c), GRU and SimpleRNN (h,)."""
        return tuple(np.zeros((batch, size), np.float32) for size in self.layer.state_sizes)

    def new_scratch(self) -> np.ndarray:
        """A stream's scratch for :meth:`sequence` and :meth:`batch_step` (zeros)."""
        units = self.layer.units
        return np.zeros({"lstm": 5 * units, "gru": 0, "simple": units}[self.layer.cell], np.float32)

    # The block's weights, prepared once per layer (shared by every stream and predict of it).
    @functools.cached_property
    def recurrent_packed(self) -> np.ndarray:
        """The recurrent kernel (``recurrent_main`` for GRU) packed for :func:`matvec`."""
        return prepared(self.layer, "recurrent", lambda: pack_recurrent(self.recurrent_main))

    @functools.cached_property
    def block_bias(self) -> np.ndarray:
        """The bias the block's recurrent product adds, zero-padded to the product's width: the
        bias (LSTM, SimpleRNN: ``x W`` comes without it) or the recurrent bias (GRU, whose
        ``x W + b`` keeps its own for the candidate)."""
        bias = self.recurrent_bias[: self.recurrent_main.shape[1]] if self.layer.cell == "gru" else self.bias
        return prepared(self.layer, "block bias", lambda: pad_columns(bias))

    @functools.cached_property
    def block_kernel(self) -> np.ndarray:
        """The input kernel W of :meth:`input_projection`: zero-padded to the product's width
        (LSTM, SimpleRNN: ``x W`` is the product's start), as it is for GRU."""
        kernel = self.layer.kernel
        if self.layer.cell == "gru" or kernel.shape[1] == padded_width(kernel.shape[1]):
            return kernel
        return prepared(self.layer, "block kernel", lambda: pad_columns(kernel))

    def input_projection(self, x: np.ndarray) -> np.ndarray:
        """For a block ``x`` (T, B, F): one BLAS product -> (T, B, width), ``x W`` padded (LSTM,
        SimpleRNN: the bias is added with ``h U``) or ``x W + b`` (GRU)."""
        steps, batch, features = x.shape
        xw = x.reshape(steps * batch, features) @ self.block_kernel
        if self.layer.cell == "gru":
            xw += self.bias
        return xw.reshape(steps, batch, xw.shape[1])

    def sequence(self, x, states, out, ys, keep, scratch):
        """Advance ``states`` over ``x`` (T, B, F); each step's output into ``ys`` (T, B, output_size)."""
        layer, xw = self.layer, self.input_projection(x)
        if layer.cell == "lstm":
            h, c = states
            lstm_sequence(xw, self.recurrent_packed, self.block_bias, self.peephole, self.projection, self.clip, h, c,
                          out, ys, keep, self.activation, self.recurrent_activation, self.standard,
                          layer.zero_output_for_mask, scratch)
        elif layer.cell == "gru":
            # The recurrent products of one step, every stream's, and the zeros they start from.
            hu, nothing = np.zeros((2, x.shape[1], max(3 * layer.units, self.block_bias.shape[0])), np.float32)
            gru_sequence(xw, self.recurrent_packed, self.block_bias, self.recurrent_candidate, layer.reset_after,
                         self.clip, states[0], out, ys, keep, self.activation, self.recurrent_activation,
                         self.standard, layer.zero_output_for_mask, hu, nothing)
        else:
            simple_sequence(xw, self.recurrent_packed, self.block_bias, self.clip, states[0], out, ys, keep,
                            self.activation, self.standard, layer.zero_output_for_mask)

    def new_batch_buffers(self, batch: int) -> tuple[np.ndarray, ...]:
        """Buffers for :meth:`batch_step`, 64-byte aligned: ``(gates, input part, pre-activations,
        tail)``. LSTM and SimpleRNN: (batch, 0), (batch, 0), the whole pre-activations (batch,
        gates * units). GRU: halved z and r (batch, 2H), or (batch, 0); then the input and
        recurrent parts (batch, H) each when halved, else (batch, 3H) each. ``tail`` is the packed
        product's scratch for a ragged last panel."""
        units, cell = self.layer.units, self.layer.cell
        if cell != "gru":
            widths = (0, 0, self.layer.gates * units)
        else:
            widths = (2 * units, units, units) if self.halved else (0, 3 * units, 3 * units)
        return tuple(aligned_zeros((batch, width)) for width in widths) + (aligned_zeros((ROWS, PANEL)),)

    def batch_products(self, x, h, buffers) -> None:
        """The products across streams of :meth:`batch_step`, into its ``buffers``
        (:meth:`new_batch_buffers`): ``x`` (B, F) and ``h`` (B, K) C-contiguous."""
        products = self.products
        gates, xw, z, tail = buffers
        if self.layer.cell != "gru":
            products["whole"].apply(x, h, z, tail)
        elif self.halved:
            products["gates"].apply(x, h, gates, tail)
            products["candidate input"].apply(NO_OPERAND, x, xw, tail)
            products["candidate recurrent"].apply(NO_OPERAND, h, z, tail)
        else:
            products["input"].apply(NO_OPERAND, x, xw, tail)
            products["recurrent"].apply(NO_OPERAND, h, z, tail)

    def batch_step(self, x, states, out, keep, buffers, scratch):
        """One step of many streams: ``x`` (B, F) C-contiguous; no allocation.

        The products across streams run on weights packed once (:meth:`batch_products`), then one
        jitted pass applies the gates.
        """
        layer, h = self.layer, states[0]
        self.batch_products(x, h, buffers)
        gates, xw, z, _ = buffers
        if layer.cell == "gru":
            gru_batch_update(gates, xw, z, h, out, keep, self.recurrent_candidate, layer.reset_after, self.clip,
                             self.activation, self.recurrent_activation, self.standard, layer.zero_output_for_mask,
                             self.halved)
        elif layer.cell == "lstm":
            lstm_batch_update(z, h, states[1], out, keep, self.peephole, self.projection, self.clip,
                              self.activation, self.recurrent_activation, self.standard,
                              layer.zero_output_for_mask, scratch[4 * layer.units :], self.halved)
        else:
            simple_batch_update(z, h, out, keep, self.clip, self.activation, self.standard,
                                layer.zero_output_for_mask)


# The unused first operand of a product of one operand: never read, any number of rows.
NO_OPERAND = np.zeros((1, 0), np.float32)


class Product(typing.NamedTuple):
    """One many-streams product ``out[:, :columns] = bias + first @ W + second @ U`` on weights
    packed by :func:`pack_columns`; a product of one operand has empty first panels, (1, 0, 16)."""

    first: np.ndarray
    second: np.ndarray
    bias: np.ndarray
    columns: int

    @classmethod
    def of(cls, first_weights, second_weights, bias) -> "Product":
        """Pack ``W`` (F, N) or None, ``U`` (K, N) and ``bias`` (N,), once."""
        first = (np.zeros((1, 0, PANEL), np.float32) if first_weights is None
                 else pack_columns(np.asarray(first_weights, np.float32)))
        return cls(first, pack_columns(np.asarray(second_weights, np.float32)),
                   pack_columns(np.asarray(bias, np.float32)), len(bias))

    def apply(self, first, second, out, tail):
        """``out`` (M, >= columns) from ``first`` (M, F) (or :data:`NO_OPERAND`) and ``second``
        (M, K); ``tail`` (>= 1, 16) scratch."""
        packed_affine(first, self.first, second, self.second, self.bias, self.columns, out, tail)


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
