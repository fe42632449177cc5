"""QuantizedModel and QuantizedStream: the exported C runtime's arithmetic, simulated in Numba.

Same API as :class:`edgernn.Model` / :class:`edgernn.Stream` (predict; stream -> step, run, reset,
reset(i), get_state, set_state), plus the raw integer forms of the int8 scheme (``step_int8``,
``run_int8``, ``quantize_input``, ``dequantize_output``). Float inputs are quantized and outputs
dequantized exactly as the C helpers ``ernn_quantize_input`` / ``ernn_dequantize_output`` do.

The stream's state is what the chip holds: int8 h and int16 c (int8 scheme) or float32 arrays,
``{"<layer>/h": (batch, units), "<layer>/c": ...}``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import types

import numpy as np
from numba import njit

from .. import statefile
from ..graph import check_codes
from ..errors import InvalidInput
from . import fixedpoint as fx
from .activations import ACT_IDS
from .conv import conv_f, conv_q
from .dense import dense_f, dense_q
from .embedding import embed
from .fixedpoint import JIT, dequantize, quantize_input
from .gru import gru_f, gru_q
from .lstm import lstm_f, lstm_q
from .masking import mask_step
from .merge import MERGE_IDS, merge_f, merge_q
from .pooling import global_f, global_q, pool_f, pool_q
from .simple_rnn import rnn_f, rnn_q
from .spec import QLayer, QSpec

_F32 = np.float32


def new_states(layer: QLayer, scheme: str, batch: int) -> list[np.ndarray]:
    """Zero state of one layer: int8 h filled with its zero point, int16 c zeros; float32 zeros.
    Conv1D and pooling: the ring of past inputs (int8: full of the input's zero point, the int8 of
    0.0; a global pooling's running max / sum int32 zeros) and the counters (3 int32 zeros)."""
    states = []
    integer = scheme == "int8"
    for name in layer.state_names:
        if name == "counters":
            states.append(np.zeros((batch, 3), np.int32))
        elif name == "ring":
            if not integer:
                states.append(np.zeros((batch, layer.ring_size), _F32))
            elif layer.pool.startswith("global"):
                states.append(np.zeros((batch, layer.ring_size), np.int32))
            else:
                states.append(np.full((batch, layer.ring_size), layer.zp_in, np.int8))
        elif not integer:
            states.append(np.zeros((batch, layer.units), _F32))
        elif name == "h":
            states.append(np.full((batch, layer.units), layer.zp_out, np.int8))
        else:
            states.append(np.zeros((batch, layer.units), np.int16))
    return states


def run_layer(layer: QLayer, scheme: str, x: np.ndarray, states: list[np.ndarray], keep: np.ndarray,
              active: np.ndarray) -> np.ndarray:
    """One layer over a block ``x`` (B, T, F) (int8 or float32), states updated in place -> (B, T, units).

    ``keep`` (B, T) bool: the mask of the block, written by a Masking layer, read by masked layers.
    ``active`` (B, T) bool: the inputs that reach this layer (every earlier Conv1D and pooling
    emitted); a layer leaves its state alone at the others, where its output is not used. A
    Conv1D or pooling sets it to where it emitted."""
    batch, steps, _ = x.shape
    units = layer.units
    integer = scheme == "int8"
    y = np.zeros((batch, steps, units), np.int8 if integer else _F32)
    if layer.kind == "embed":  # x: the codes (B, T, 1) int32
        embed(x, layer.w, layer.sw, y, keep, layer.mask_zero)
        return y
    if layer.kind == "mask":
        zero = np.int8(layer.zp_out) if integer else _F32(0.0)
        mask_step(x, np.int8(layer.mask_q) if integer else _F32(layer.mask_f), zero, y, keep)
        return y
    if layer.kind == "conv":
        args = (layer.taps, layer.dilation, layer.groups, layer.need, layer.strides)
        if integer:
            conv_q(x, active, y, states[0], states[1], layer.w, layer.bx, layer.mx, layer.nx, layer.mode, layer.relu,
                   _table(layer), layer.mo, layer.no, layer.zp_a, layer.zp_out, *args,
                   np.zeros(layer.taps * layer.in_size, np.int64))
        else:
            conv_f(x, active, y, states[0], states[1], layer.w, layer.sw, layer.bx, ACT_IDS[layer.act], *args,
                   np.zeros(layer.taps * layer.in_size, _F32))
        return y
    if layer.kind == "pool":
        is_max = layer.pool.endswith("max")
        if layer.pool.startswith("global"):
            (global_q if integer else global_f)(x, active, y, states[0], states[1], is_max)
        else:
            (pool_q if integer else pool_f)(x, active, y, states[0], states[1], is_max, layer.taps, layer.need,
                                            layer.strides)
        return y
    kept = (keep & active) if layer.masked else active
    if layer.kind == "dense":
        rows, out = x.reshape(batch * steps, -1), y.reshape(batch * steps, units)
        if integer:
            dense_q(rows, layer.w, layer.bx, layer.mx, layer.nx, layer.has_weights, layer.zp_in, layer.mode, layer.relu,
                    layer.lut_act, layer.mo, layer.no, layer.exp_table, layer.zp_a, layer.zp_out, out,
                    np.zeros(units, np.int64))
        else:
            dense_f(rows, layer.w, layer.sw, layer.bx, layer.has_weights, ACT_IDS[layer.act], out)
        return y
    gate, act = ACT_IDS[layer.gate_act], ACT_IDS[layer.act]
    if layer.kind == "lstm":
        if integer:
            lstm_q(x, layer.w, layer.u, layer.bx, layer.bh, layer.mx, layer.nx, layer.mh, layer.nh, layer.lut_gate,
                   layer.lut_act, layer.cell_shift, layer.mo, layer.no, layer.zp_out, states[0], states[1], y,
                   np.zeros(4 * units, np.int64), kept, layer.zero_output)
        else:
            lstm_f(x, layer.w, layer.u, layer.sw, layer.su, layer.bx, layer.bh, gate, act, states[0], states[1], y,
                   np.zeros(4 * units, _F32), kept, layer.zero_output)
    elif layer.kind == "gru":
        if integer:
            gru_q(x, layer.w, layer.u, layer.bx, layer.bh, layer.mx, layer.nx, layer.mh, layer.nh, layer.lut_gate,
                  layer.lut_act, layer.reset_after, layer.mq, layer.nq, layer.mo, layer.no, layer.zp_out, states[0], y,
                  np.zeros(3 * units, np.int64), np.zeros(units, np.int64), kept, layer.zero_output)
        else:
            gru_f(x, layer.w, layer.u, layer.sw, layer.su, layer.bx, layer.bh, gate, act, layer.reset_after, states[0],
                  y, np.zeros(3 * units, _F32), np.zeros(units, _F32), kept, layer.zero_output)
    else:
        if integer:
            rnn_q(x, layer.w, layer.u, layer.bx, layer.bh, layer.mx, layer.nx, layer.mh, layer.nh, layer.use_table,
                  _table(layer), layer.relu, layer.mo, layer.no,
                  layer.zp_out, states[0], y, np.zeros(units, np.int64), kept, layer.zero_output)
        else:
            rnn_f(x, layer.w, layer.u, layer.sw, layer.su, layer.bx, layer.bh, act, states[0], y, np.zeros(units, _F32), kept, layer.zero_output)
    return y


def _table(layer: QLayer) -> np.ndarray:
    """The layer's activation table, or a placeholder of the right type when it has none."""
    return layer.lut_act if layer.lut_act.size else np.zeros(fx.LUT_SIZE, np.int16)


def run_merge(layer: QLayer, scheme: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A merge layer over blocks ``a`` (B, T, in_size) and ``b`` (B, T, in_size2) -> (B, T, units)."""
    batch, steps = a.shape[:2]
    y = np.zeros((batch, steps, layer.units), a.dtype)
    rows = (a.reshape(batch * steps, -1), b.reshape(batch * steps, -1), y.reshape(batch * steps, -1))
    if scheme == "int8":
        merge_q(*rows, MERGE_IDS[layer.merge], layer.mx, layer.nx, layer.zp_in, layer.zp_in2, layer.mo, layer.no,
                layer.zp_out)
    else:
        merge_f(*rows, MERGE_IDS[layer.merge])
    return y


def run_layers(spec: QSpec, scheme: str, x: np.ndarray, states: list, keep: np.ndarray) -> list:
    """Every layer over the block ``x`` (B, T, F) in order, states updated in place -> per layer
    ``(output, active)`` (see :func:`run_layer`). A layer reads the layer before it, or (a graph that
    forks and merges) the layers of its ``sources``, -1 the model's input."""
    made = []
    for layer, layer_states in zip(spec.layers, states):
        reads = [made[i] if i >= 0 else (x, None) for i in layer.sources] or [made[-1] if made else (x, None)]
        current, active = reads[0]
        if active is None:
            active = np.ones(x.shape[:2], np.bool_)
        elif layer.windowed:  # a Conv1D or pooling writes where it emitted: its own copy (a branch may share)
            active = active.copy()
        if layer.kind == "merge":
            y = run_merge(layer, scheme, current, reads[1][0])
        else:
            y = run_layer(layer, scheme, current, layer_states, keep, active)
        made.append((y, active))
    return made


@njit(**JIT)
def hold_last(y, active, last, emitted):
    """The model's output ``y`` (B, T, O) where the chain did not emit (``active`` False) becomes the
    last emitted output ``last`` (B, O), which follows the emitted rows; ``emitted`` (B, 1) the flag
    of each stream's last step."""
    for b in range(y.shape[0]):
        for t in range(y.shape[1]):
            if active[b, t]:
                for j in range(y.shape[2]):
                    last[b, j] = y[b, t, j]
            else:
                for j in range(y.shape[2]):
                    y[b, t, j] = last[b, j]
            emitted[b, 0] = active[b, t]


def _fingerprint(spec: QSpec) -> str:
    digest = hashlib.sha256()
    fields = [(f.name, getattr(spec, f.name)) for f in dataclasses.fields(spec) if f.name not in ("layers", "source")]
    for index, layer in enumerate(spec.layers):
        fields += [(f"{index}.{f.name}", getattr(layer, f.name)) for f in dataclasses.fields(layer)]
    for name, value in fields:
        digest.update(name.encode())
        if isinstance(value, np.ndarray):
            digest.update(f"{value.dtype.str}{value.shape}".encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        else:
            digest.update(repr(value).encode())
    return digest.hexdigest()


def _as_float(x, what):
    try:
        array = np.asarray(x)
    except Exception as exc:
        raise InvalidInput(f"{what} is not an array: {exc}") from None
    if array.dtype.kind not in "fiub":
        raise InvalidInput(f"{what} has dtype {array.dtype}; expected numbers")
    return array.astype(_F32, copy=False)


class QuantizedModel:
    """A model in one of the firmware schemes; ``spec`` is its :class:`~edgernn.quantize.spec.QSpec`.

    ``report``: per layer, the error of its output against the float model on the calibration data
    (``{"layer", "max_abs_error", "mean_abs_error", "float_range"}``), computed at quantization.
    """

    def __init__(self, spec: QSpec, report: list | None = None, float_model=None):
        self.spec = spec
        self.scheme = spec.scheme
        self.report = report or []
        self.float_model = float_model

    input_features = property(lambda self: self.spec.features)
    output_features = property(lambda self: self.spec.outputs)

    def codes(self, x, what: str = "x") -> np.ndarray:
        """A model of integer codes (an Embedding first): ``x`` (batch, T) codes, each an integer in
        ``[0, vocab)`` (else one InvalidInput naming the layer and the first bad code), as the
        (batch, T, 1) int32 the first layer reads."""
        layer = self.spec.layers[0]
        array = np.asarray(x)
        if array.dtype.kind not in "fiub" or array.ndim != 2:
            raise InvalidInput(f"{what}: this model takes integer codes of shape (batch, T) (layer {layer.name!r} "
                               f"is an Embedding), got {array.dtype} {array.shape}")
        check_codes(types.SimpleNamespace(name=layer.name, vocab=layer.vocab), array)
        return np.ascontiguousarray(array.astype(np.int32)[..., None])

    def quantize_input(self, x) -> np.ndarray:
        """Float inputs as the int8 values the chip takes (int8 scheme)."""
        self._need_int8()
        if self.spec.vocab:
            raise InvalidInput("this model takes integer codes, not quantized inputs: pass the codes to "
                               "run_int8 / step_int8 (ernn_step_code in C) as they are")
        return quantize_input(_as_float(x, "x"), self.spec.s_in, self.spec.zp_in, self.spec.in_offset,
                              self.spec.in_scale)

    def _first_input(self, x: np.ndarray) -> np.ndarray:
        """What the first layer reads for inputs ``x``: int8 ``quantize_input``; float: ``x``, or
        ``(x - in_offset) / in_scale`` in float32 for a Standardize folded into the input; codes (any
        scheme): :meth:`codes`."""
        if self.spec.vocab:
            return self.codes(x)
        if self.scheme == "int8":
            return self.quantize_input(x)
        if self.spec.in_scale.size:
            return (x - self.spec.in_offset) / self.spec.in_scale
        return np.ascontiguousarray(x)

    def dequantize_output(self, q) -> np.ndarray:
        self._need_int8()
        return dequantize(q, self.spec.s_out, self.spec.zp_out)

    def _need_int8(self):
        if self.scheme != "int8":
            raise InvalidInput(f"integer inputs and outputs exist in the int8 scheme only (this model: {self.scheme})")

    def layer_outputs(self, x) -> list[np.ndarray]:
        """Every layer's output over ``x`` (B, T, F) (codes: (B, T)) from zero state, as floats (dequantized)."""
        x = self._first_input(x if self.spec.vocab else _as_float(x, "x"))
        outputs = []
        keep = np.ones(x.shape[:2], np.bool_)
        states = [new_states(layer, self.scheme, x.shape[0]) for layer in self.spec.layers]
        for layer, (current, active) in zip(self.spec.layers, run_layers(self.spec, self.scheme, x, states, keep)):
            rows = current[:, active[0]] if x.shape[0] else current  # from zero state every stream emits alike
            outputs.append(dequantize(rows, layer.s_out, layer.zp_out) if self.scheme == "int8" else rows)
        return outputs

    def predict(self, x) -> np.ndarray:
        """``x`` (batch, T, features) from zero state -> (batch, T, outputs), or (batch, outputs) for a
        model whose output is the last step's (a final recurrent layer without return_sequences).
        A model of integer codes takes ``x`` (batch, T) codes, as :meth:`edgernn.Model.predict`."""
        if self.spec.vocab:
            x = self.codes(x)
        x = _as_float(x, "x")
        if x.ndim != 3 or x.shape[2] != self.spec.features:
            raise InvalidInput(f"predict takes x of shape (batch, T, {self.spec.features}), got {x.shape}")
        if x.shape[1] == 0:
            raise InvalidInput(f"predict takes x of shape (batch, T, {self.spec.features}), got {x.shape}: "
                               "an empty sequence (T = 0)")
        if not x.shape[0]:
            return np.zeros((0, x.shape[1], self.spec.outputs), _F32)[:, -1 if self.spec.output_rank == 2 else slice(None)]
        stream = self.stream(x.shape[0])
        y = stream.run(x[..., 0] if self.spec.vocab else x)
        if self.spec.output_rank == 2:
            return y[:, -1]  # the last emitted row
        return y[:, stream.emitted_run[0]]  # the rows predict makes: where a Conv1D or pooling emitted

    def stream(self, batch_size: int = 1) -> "QuantizedStream":
        return QuantizedStream(self, batch_size)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the integer model (scheme, scales, every layer's arrays and constants): the
        identity its saved stream states carry (see :mod:`edgernn.statefile`)."""
        if getattr(self, "_fingerprint", None) is None:
            self._fingerprint = _fingerprint(self.spec)
        return self._fingerprint

    def __repr__(self):
        kinds = ", ".join(layer.kind for layer in self.spec.layers)
        return f"<edgernn.QuantizedModel {self.scheme} {self.spec.features} -> {self.spec.outputs}: {kinds}>"


class QuantizedStream:
    """``batch_size`` independent streams through a :class:`QuantizedModel`, state carried across calls."""

    def __init__(self, model: QuantizedModel, batch_size: int = 1):
        if not (isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, (bool, np.bool_))
                and batch_size >= 1):
            raise InvalidInput(f"batch_size must be a positive integer, got {batch_size!r}")
        self.model = model
        self.batch_size = int(batch_size)
        self._scheme = model.scheme
        self._states = [new_states(layer, model.scheme, self.batch_size) for layer in model.spec.layers]
        # the model's last emitted output (returned again by the steps that do not emit) and whether
        # the last step emitted, as the C keeps them in the state of a model with Conv1D or pooling
        self._last = np.zeros((self.batch_size, model.spec.outputs), np.int8 if model.scheme == "int8" else _F32)
        self._emitted = np.zeros((self.batch_size, 1), np.int32)
        self._zero_last()
        self.emitted_run = np.zeros((self.batch_size, 0), np.bool_)

    @property
    def emitted(self) -> np.ndarray:
        """(batch,) bool: whether each stream's last step made a new output row (``ernn_emitted``);
        a model without Conv1D or pooling emits at every step."""
        return self._emitted[:, 0].astype(bool) | (not self.model.spec.windowed)

    def _zero_last(self, rows=slice(None)):
        self._last[rows] = self.model.spec.zp_out if self._scheme == "int8" else 0
        self._emitted[rows] = 0

    def _block(self, x):
        keep = np.ones(x.shape[:2], np.bool_)
        x, active = run_layers(self.model.spec, self._scheme, x, self._states, keep)[-1]
        hold_last(x, active, self._last, self._emitted)
        self.emitted_run = active
        return x

    def _check(self, array, ndim):
        b, f = self.batch_size, self.model.spec.features
        if array.ndim != ndim or array.shape[0] != b or array.shape[-1] != f:
            shape = f"(batch={b}, features={f})" if ndim == 2 else f"(batch={b}, T, features={f})"
            raise InvalidInput(f"expected shape {shape}, got {array.shape}")

    def run_int8(self, xq) -> np.ndarray:
        """int8 scheme: raw int8 inputs (batch, T, features) -> raw int8 outputs (batch, T, outputs); a
        model of integer codes takes the codes (batch, T) instead (``ernn_step_code``)."""
        self.model._need_int8()
        if self.model.spec.vocab:
            return self._block(self._codes(xq))
        xq = np.asarray(xq)
        if xq.dtype != np.int8:
            raise InvalidInput(f"run_int8 takes int8 inputs, got {xq.dtype}")
        self._check(xq, 3)
        return self._block(np.ascontiguousarray(xq))

    def step_int8(self, xq) -> np.ndarray:
        """int8 scheme: one timestep of raw int8 inputs (batch, features) -> int8 outputs (batch, outputs);
        a model of integer codes takes one code per stream, (batch, 1)."""
        if self.model.spec.vocab:
            return self.run_int8(self._step_codes(xq))[:, 0]
        xq = np.asarray(xq)
        self._check(xq, 2)
        return self.run_int8(xq[:, None, :])[:, 0]

    def _codes(self, x) -> np.ndarray:
        """Codes (batch, T), checked for this stream (shape and values) before anything runs."""
        codes = self.model.codes(x)
        if codes.shape[0] != self.batch_size:
            raise InvalidInput(f"expected integer codes of shape (batch={self.batch_size}, T), got {codes.shape[:2]}")
        return codes

    def _step_codes(self, x_t):
        """One code per stream: ``x_t`` (batch, 1), as run's ``x[:, t:t + 1]``."""
        array = np.asarray(x_t)
        if array.shape != (self.batch_size, 1):
            raise InvalidInput(f"step takes x_t of shape (batch={self.batch_size}, 1): one integer code per stream, "
                               f"got {array.shape}")
        return array

    def run(self, x) -> np.ndarray:
        """float inputs (batch, T, features) -> float outputs (batch, T, outputs), state carried; a
        model of integer codes takes codes (batch, T) (each in [0, vocab), else InvalidInput, nothing run)."""
        if self.model.spec.vocab:
            y = self._block(self._codes(x))
            return dequantize(y, self.model.spec.s_out, self.model.spec.zp_out) if self._scheme == "int8" else y
        array = _as_float(x, "x")
        self._check(array, 3)
        spec = self.model.spec
        if self._scheme == "int8":
            return dequantize(self._block(self.model._first_input(array)), spec.s_out, spec.zp_out)
        return self._block(self.model._first_input(array))

    def step(self, x_t) -> np.ndarray:
        """One timestep: ``x_t`` (batch, features) floats, or one code per stream (batch, 1)."""
        if self.model.spec.vocab:
            return self.run(self._step_codes(x_t))[:, 0]
        array = _as_float(x_t, "x_t")
        self._check(array, 2)
        return self.run(array[:, None, :])[:, 0]

    def reset(self, index: int | None = None) -> None:
        """All streams, or stream ``index`` only, back to the zero state."""
        if index is not None and (not isinstance(index, (int, np.integer)) or isinstance(index, (bool, np.bool_))
                                  or not -self.batch_size <= index < self.batch_size):
            raise InvalidInput(f"stream index {index!r} out of range for batch_size {self.batch_size}")
        rows = slice(None) if index is None else int(index)
        for layer, states in zip(self.model.spec.layers, self._states):
            zero = new_states(layer, self._scheme, 1)
            for state, z in zip(states, zero):
                state[rows] = z[0]
        self._zero_last(rows)

    def _named(self):
        for layer, states in zip(self.model.spec.layers, self._states):
            for name, state in zip(layer.state_names, states):
                yield f"{layer.name}/{name}", state
        if self.model.spec.windowed:
            yield "stream/last_output", self._last
            yield "stream/emitted", self._emitted

    def get_state(self) -> dict:
        """A copy of every state vector (int8 h / int16 c, or float32), keyed ``"<layer>/h"``, ``"<layer>/c"``."""
        return {name: state.copy() for name, state in self._named()}

    def save_state(self, path) -> None:
        """Write every stream's state to ``path`` atomically, as :meth:`edgernn.Stream.save_state`
        does (int8 h and int16 c kept as they are; :mod:`edgernn.statefile`)."""
        statefile.save_state(self, path)

    def load_state(self, path) -> None:
        """Restore the state :meth:`save_state` wrote for this quantized model and batch size; a file
        of another model, batch size or a corrupted one is refused and nothing changes."""
        statefile.load_state(self, path)

    def set_state(self, state: dict, allow_nonfinite: bool = False) -> None:
        """Restore a snapshot made by :meth:`get_state`; NaN or Inf (float schemes) is refused unless
        ``allow_nonfinite``, as :meth:`edgernn.Stream.set_state` does."""
        if not isinstance(state, dict):
            raise InvalidInput("set_state takes the dict that get_state returns")
        expected = dict(self._named())
        problems = [f"missing {k!r}" for k in expected if k not in state]
        problems += [f"unknown {k!r}" for k in state if k not in expected]
        for name, target in expected.items():
            if name in state:
                array = np.asarray(state[name])
                if array.shape != target.shape or array.dtype != target.dtype:
                    problems.append(f"{name!r} must be {target.dtype} of shape {target.shape}, got {array.dtype} {array.shape}")
                elif array.dtype.kind == "f" and not allow_nonfinite and not np.all(np.isfinite(array)):
                    problems.append(f"{name!r} holds NaN or Inf")
        if problems:
            raise InvalidInput("state does not fit this stream", problems)
        for name, target in expected.items():
            target[:] = state[name]
