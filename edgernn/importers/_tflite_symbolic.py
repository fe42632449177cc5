"""Symbolic execution of a TFLite graph: what each output row *is*, as a function of the input rows.

TFLite has no RNN op for what Keras 3 and current TensorFlow make of an LSTM/GRU/SimpleRNN: the cell
is spread over FULLY_CONNECTED, SPLIT, STRIDED_SLICE, ADD, MUL, LOGISTIC and TANH ops, inside a WHILE
loop body or unrolled into the main graph, with the layout moves (RESHAPE, TRANSPOSE, GATHER,
CONCATENATION, SLICE ...) that the converter happened to choose. Instead of matching op sequences
(which change between TensorFlow releases), this module *executes* the graph on symbolic values and
the importer then reads the cell off the result:

* a tensor is a :class:`Sym`: an array of *rows* (all axes but the last), each row a :class:`Lin`,
  an affine form ``sum_a  value(a) @ M_a + bias`` over *atoms*;
* an atom is an input row (one timestep of one batch row of the model input), or a non-linear
  function of rows: an activation (LOGISTIC -> sigmoid ...), an element-wise product of two rows
  (MUL of two non-constant rows), a softmax, a clip -- or one output row of a layer kept whole
  (:class:`Layer`: a convolution, a pooling, a concatenation over features, a MAXIMUM/MINIMUM of
  two computed tensors), which remembers the layer so the importer can rebuild it;
* affine ops (FULLY_CONNECTED with constant weights, ADD, SUB, MUL/DIV by constants) combine forms;
  layout ops are executed on arrays of integer *codes* (the position of every element) with the
  same NumPy function that executes them on constants, and the codes say where each output element
  comes from -- so every layout op has one implementation, exact by construction;
* constants are folded; a WHILE loop is run: its condition is evaluated on the (constant) loop
  counters, its body executed symbolically once per iteration. Fused UNIDIRECTIONAL_SEQUENCE_LSTM /
  _RNN ops are expanded step by step into the same atoms the converter's loops make.

The result is exact: the forms hold the file's weights, and :func:`evaluate` computes any row
numerically (float64) from input values -- the importer uses it to check that the layers it
recognised reproduce the whole graph before it returns them. Anything this module does not
understand raises :class:`Unsupported` naming the op.
"""

from __future__ import annotations

import itertools
from typing import Optional

import numpy as np

from ..ir import same_padding as _same_padding
from ..reference.activations import FUNCTIONS as _ACTIVATION_FUNCTIONS
from ._tflite_reader import Model, Operator, Subgraph, Tensor

MAX_LOOP_STEPS = 20000  # total WHILE iterations executed symbolically (sequence length x layers)
MAX_ELEMENTS = 1 << 24  # elements of any tensor made while executing (a hostile file cannot exhaust memory)
MAX_DEPTH = 8           # nesting of subgraph calls (a loop body that runs itself is refused)


class Unsupported(Exception):
    """An op (or a use of one) that cannot be executed symbolically; the message names it."""


# ---------------------------------------------------------------------------------------------
# Atoms and affine forms
# ---------------------------------------------------------------------------------------------

_serial = itertools.count()


class Atom:
    """A non-affine quantity of ``width`` features: ``kind`` is "input" (``param`` = the input
    position (b, t)), "act" (``param`` = activation name, ``args`` = (row,)), "mul" (``args`` =
    (row, row), element-wise product), "softmax"/"log_softmax" (``args`` = (row,)), "clip"
    (``param`` = bound, ``args`` = (row,)) or "layer" (``param`` = (:class:`Layer`, batch row,
    output timestep), ``args`` = the rows it combines). ``serial`` orders atoms by creation (args first)."""

    __slots__ = ("kind", "args", "param", "width", "serial", "__weakref__")

    def __init__(self, kind: str, args: tuple, param, width: int):
        self.kind, self.args, self.param, self.width = kind, args, param, width
        self.serial = next(_serial)

    def __repr__(self):
        return f"<{self.kind}{'' if self.param is None else ':' + str(self.param)} #{self.serial} w={self.width}>"


class Lin:
    """``sum over atoms a: value(a) @ terms[a] + bias``; ``terms[a]`` is (a.width, n) or None for the
    identity. Arrays may be views of constants: never modified in place."""

    __slots__ = ("terms", "bias")

    def __init__(self, terms: dict, bias: np.ndarray):
        self.terms, self.bias = terms, bias

    @property
    def width(self) -> int:
        return self.bias.shape[0]

    def __repr__(self):
        return f"Lin({list(self.terms)}, n={self.width})"


class Layer:
    """A layer kept whole: a convolution, a pooling (windowed or over all of time), a concatenation
    over features, or an element-wise max/min of two tensors. Its outputs are "layer" atoms, one per
    (batch row, output timestep), so that the importer sees where the layer starts and ends (an
    affine convolution would otherwise be folded into the next layer's weights, and a convolution's
    taps are rows of different timesteps).

    ``kind`` is "conv", "pool", "global_pool", "merge" (max/min) or "concatenate"; ``attrs`` what the
    importer needs to build the IR op (kernel ``(k, C / groups, F)`` in the IR's layout, padding,
    strides ...); ``input`` the (batch, T, C) Sym a conv or pooling reads (without the zero rows a
    PAD op put at its ends, recorded as ``attrs["pad"]``); ``steps`` its output length (None when
    it keeps its input's); ``combine`` computes one output row from the values of the atom's
    argument rows (list of (N, width) arrays -> (N, width)).
    """

    def __init__(self, kind: str, input: Optional["Sym"], steps: Optional[int], combine, **attrs):
        self.kind, self.input, self.steps, self.combine, self.attrs = kind, input, steps, combine, attrs


def dense(matrix: Optional[np.ndarray], width: int) -> np.ndarray:
    return np.eye(width) if matrix is None else matrix


def atom_row(atom: Atom) -> Lin:
    return Lin({atom: None}, np.zeros(atom.width))


def lin_add(a: Lin, b: Lin, sign: float = 1.0) -> Lin:
    terms = dict(a.terms)
    for k, m in b.terms.items():
        if k in terms:
            terms[k] = dense(terms[k], k.width) + sign * dense(m, k.width)
        else:
            terms[k] = m if sign == 1.0 else -dense(m, k.width)
    return Lin(terms, a.bias + sign * b.bias)


def lin_scale(a: Lin, vec: np.ndarray) -> Lin:
    vec = np.broadcast_to(np.asarray(vec, np.float64), a.bias.shape)
    if not np.any(vec):
        return Lin({}, np.zeros(a.width))
    return Lin({k: dense(m, k.width) * vec for k, m in a.terms.items()}, a.bias * vec)


def lin_matmul(a: Lin, w: np.ndarray) -> Lin:
    """``a @ w`` for ``w`` (a.width, m)."""
    return Lin({k: (w if m is None else m @ w) for k, m in a.terms.items()}, a.bias @ w)


def lin_columns(a: Lin, cols: np.ndarray) -> Lin:
    """Columns ``cols`` of ``a`` (views when they are a contiguous range)."""
    cols = np.asarray(cols)
    if cols.size and np.array_equal(cols, np.arange(cols[0], cols[0] + cols.size)):
        s = slice(int(cols[0]), int(cols[0]) + cols.size)
        return Lin({k: (np.eye(k.width)[:, s] if m is None else m[:, s]) for k, m in a.terms.items()}, a.bias[s])
    return Lin({k: dense(m, k.width)[:, cols] for k, m in a.terms.items()}, a.bias[cols])


def lin_equal(a: Lin, b: Lin) -> bool:
    """Same atoms (by identity), same matrices and bias (to float64 rounding)."""
    if a is b:
        return True
    if a.width != b.width or a.terms.keys() != b.terms.keys():
        return False
    if not np.allclose(a.bias, b.bias, rtol=1e-12, atol=1e-12):
        return False
    for k, m in a.terms.items():
        other = b.terms[k]
        if m is None and other is None:
            continue
        if not np.allclose(dense(m, k.width), dense(other, k.width), rtol=1e-12, atol=1e-12):
            return False
    return True


def is_identity(m: Optional[np.ndarray], width: int) -> bool:
    return m is None or (m.shape == (width, width) and np.array_equal(m, np.eye(width)))


class Sym:
    """A symbolic float tensor of ``shape``: ``rows`` (object array of shape ``shape[:-1]``) of
    :class:`Lin` forms, each ``shape[-1]`` wide."""

    __slots__ = ("shape", "rows")

    def __init__(self, shape: tuple, rows: np.ndarray):
        self.shape, self.rows = tuple(int(s) for s in shape), rows

    def flat_rows(self) -> list:
        return list(self.rows.reshape(-1))


def _row_activation(name: str, row: Lin, param=None) -> Lin:
    if not row.terms:  # a constant row: fold
        return Lin({}, _numeric_activation(name, row.bias[None, :], param)[0])
    kind = name if name in ("softmax", "log_softmax", "clip") else "act"
    atom = Atom(kind, (row,), param if kind == "clip" else name, row.width)
    return atom_row(atom)


def _numeric_activation(name: str, x: np.ndarray, param=None) -> np.ndarray:
    if name == "clip":
        return np.clip(x, -param, param)
    if name == "rsqrt":  # a LayerNormalization's 1 / sqrt(variance + epsilon): no activation of a layer
        return 1.0 / np.sqrt(np.asarray(x, np.float64))
    return _ACTIVATION_FUNCTIONS[name](np.asarray(x, np.float64))


# ---------------------------------------------------------------------------------------------
# Numeric evaluation of forms
# ---------------------------------------------------------------------------------------------


def evaluate(rows: list, inputs) -> list:
    """Values of ``rows`` (Lin forms) for input values ``inputs(position) -> (N, features)``.

    Returns one (N, width) float64 array per row. Atoms are evaluated in creation order (their
    arguments are always older), iteratively, so long sequences do not recurse.
    """
    seen: dict[int, Atom] = {}
    stack = [a for r in rows for a in r.terms]
    while stack:
        atom = stack.pop()
        if id(atom) in seen:
            continue
        seen[id(atom)] = atom
        for arg in atom.args:
            stack.extend(k for k in arg.terms if id(k) not in seen)
    values: dict[int, np.ndarray] = {}

    def row_value(row: Lin) -> np.ndarray:
        out = row.bias[None, :]
        for k, m in row.terms.items():
            v = values[id(k)]
            out = out + (v if m is None else v @ m)
        return out

    for atom in sorted(seen.values(), key=lambda a: a.serial):
        if atom.kind == "input":
            values[id(atom)] = np.asarray(inputs(atom.param), np.float64)
        elif atom.kind == "mul":
            values[id(atom)] = row_value(atom.args[0]) * row_value(atom.args[1])
        elif atom.kind == "act":
            values[id(atom)] = _numeric_activation(atom.param, row_value(atom.args[0]))
        elif atom.kind == "clip":
            values[id(atom)] = _numeric_activation("clip", row_value(atom.args[0]), atom.param)
        elif atom.kind == "layer":
            values[id(atom)] = atom.param[0].combine([row_value(a) for a in atom.args])
        else:
            values[id(atom)] = _numeric_activation(atom.kind, row_value(atom.args[0]))
    n = next((v.shape[0] for v in values.values()), 1)
    return [np.broadcast_to(row_value(r), (n, r.width)) for r in rows]


# ---------------------------------------------------------------------------------------------
# Layout ops: one NumPy implementation each, run on constants or on position codes
# ---------------------------------------------------------------------------------------------


def _ints(value, what: str) -> np.ndarray:
    if isinstance(value, Sym) or value is None:
        raise Unsupported(f"{what} is computed from the model input")
    return np.asarray(value).astype(np.int64)


def _reshape(x, shape):
    shape = [int(s) for s in shape]
    return np.reshape(x, shape)


def _strided_slice(x, begin, end, strides, begin_mask, end_mask, ellipsis_mask, new_axis_mask, shrink_mask, offset):
    index = []
    for i in range(len(begin)):
        bit = 1 << i
        if ellipsis_mask & bit:
            index.append(Ellipsis)
        elif new_axis_mask & bit:
            index.append(np.newaxis)
        elif shrink_mask & bit:
            index.append(int(begin[i]))
        else:
            b = None if begin_mask & bit else int(begin[i])
            e = None if end_mask & bit else int(end[i]) + (int(begin[i]) if offset else 0)
            index.append(slice(b, e, int(strides[i])))
    return x[tuple(index)]


def _slice(x, begin, size):
    index = []
    for axis, (b, s) in enumerate(zip(begin, size)):
        b = int(b) if b >= 0 else x.shape[axis] + int(b)
        index.append(slice(b, x.shape[axis] if s < 0 else b + int(s)))
    return x[tuple(index)]


def _dynamic_update_slice(operand, update, start):
    out = np.array(operand, copy=True)
    index = []
    for axis, s in enumerate(start):
        s = int(min(max(int(s), 0), operand.shape[axis] - update.shape[axis]))
        index.append(slice(s, s + update.shape[axis]))
    out[tuple(index)] = update
    return out


# ---------------------------------------------------------------------------------------------
# The executor
# ---------------------------------------------------------------------------------------------

_FUSED = {0: None, 1: "relu", 2: "hard_tanh", 3: "relu6", 4: "tanh"}
_UNARY = {"LOGISTIC": "sigmoid", "TANH": "tanh", "RELU": "relu", "RELU6": "relu6", "RELU_N1_TO_1": "hard_tanh",
          "ELU": "elu", "HARD_SWISH": "hard_silu"}
_NUMERIC_BINARY = {
    "LESS": np.less, "LESS_EQUAL": np.less_equal, "GREATER": np.greater, "GREATER_EQUAL": np.greater_equal,
    "EQUAL": np.equal, "NOT_EQUAL": np.not_equal, "LOGICAL_AND": np.logical_and, "LOGICAL_OR": np.logical_or,
    "MAXIMUM": np.maximum, "MINIMUM": np.minimum, "FLOOR_DIV": np.floor_divide, "FLOOR_MOD": np.mod,
}


class Executor:
    """Runs the subgraphs of ``model`` on symbolic values; ``forms`` records which RNN forms it met."""

    def __init__(self, model: Model, float_constant):
        self.model = model
        self.float_constant = float_constant  # (subgraph, tensor) -> float64/int array or None
        self.forms: set[str] = set()
        self.notes: list[str] = []
        self.loop_steps = 0
        self.variable_writers: dict[tuple[int, int], str] = {}  # variable tensors fused ops overwrite
        self.layers: list[Layer] = []  # convolutions, poolings and merges, in the order they ran
        self._rearranged: list = []  # (rows, block) of what SPACE_TO_BATCH_ND made of computed tensors
        self._env: dict = {}
        self._depth = 0

    # -- driving ---------------------------------------------------------------------------
    def run(self, index: int, inputs: list) -> list:
        if self._depth >= MAX_DEPTH:
            raise Unsupported(f"subgraphs nested more than {MAX_DEPTH} deep")
        self._depth += 1
        try:
            return self._run(index, inputs)
        finally:
            self._depth -= 1

    def _run(self, index: int, inputs: list) -> list:
        g = self.model.subgraphs[index]
        if len(inputs) != len(g.inputs):
            raise Unsupported(f"subgraph {g.name!r} takes {len(g.inputs)} inputs, is given {len(inputs)}")
        env = dict(zip(g.inputs, inputs))
        for op in g.operators:
            args = [None if i < 0 else self._value(g, env, i) for i in op.inputs]
            try:
                self._env = env
                outs = self._apply(g, op, args)
            except Unsupported as exc:
                raise Unsupported(f"{op.name} (subgraph {g.name or g.index!r}): {exc}") from None
            except (ValueError, IndexError, TypeError) as exc:
                raise Unsupported(f"{op.name} (subgraph {g.name or g.index!r}) could not be executed: {exc}") from None
            for v in outs:
                size = int(np.prod(_shape(v), dtype=np.float64)) if v is not None else 0
                if size > MAX_ELEMENTS:
                    raise Unsupported(f"{op.name} makes a tensor of {size} elements")
            if len(outs) != len(op.outputs):
                raise Unsupported(f"{op.name} makes {len(outs)} tensors, the file names {len(op.outputs)}")
            for t, v in zip(op.outputs, outs):
                if t >= 0:
                    env[t] = v
        return [self._value(g, env, i) for i in g.outputs]

    def _value(self, g: Subgraph, env: dict, i: int):
        if i in env:
            return env[i]
        tensor = g.tensors[i]
        value = self.float_constant(g, tensor)
        if value is None:
            if tensor.is_variable:  # state of a fused RNN op: zeros at the start of every invoke
                value = np.zeros(tensor.shape, np.float64)
            else:
                raise Unsupported(f"tensor {tensor.name!r} is read before any op writes it")
        env[i] = value
        return value

    # -- op dispatch -------------------------------------------------------------------------
    def _apply(self, g: Subgraph, op: Operator, args: list) -> list:
        name = op.name
        opt = op.options
        o = (lambda f, fmt, d=0: d if opt is None else opt.scalar(f, fmt, d))
        if name in ("ADD", "SUB", "MUL", "DIV"):
            return [self._binary(name, args[0], args[1], _FUSED_name(o(0, "b")))]
        if name in _UNARY:
            return [self._unary(_UNARY[name], args[0])]
        if name == "LEAKY_RELU":
            alpha = o(0, "f", 0.0)
            if not np.isclose(alpha, 0.2):
                raise Unsupported(f"alpha {alpha} (edgernn's leaky_relu has 0.2)")
            return [self._unary("leaky_relu", args[0])]
        if name == "GELU":
            if o(0, "B", 0):
                raise Unsupported("the tanh approximation (edgernn's gelu is the exact erf form)")
            return [self._unary("gelu", args[0])]
        if name in ("SOFTMAX", "LOG_SOFTMAX"):
            x = args[0]
            beta = o(0, "f", 0.0) if name == "SOFTMAX" else 1.0
            if not isinstance(x, Sym):
                return [_numeric_activation(name.lower(), beta * np.asarray(x, np.float64))]
            return [self._map_rows(x, lambda r: _row_activation(name.lower(), lin_scale(r, np.full(r.width, beta))))]
        if name == "FULLY_CONNECTED":
            return [self._fully_connected(args, _FUSED_name(o(0, "b")), bool(o(2, "B", 0)), o(1, "b", 0))]
        if name == "RESHAPE":
            shape = args[1] if len(args) > 1 and args[1] is not None else (opt.array(0, np.int32) if opt else None)
            if shape is None:
                raise Unsupported("no target shape")
            shape = _ints(shape, "the target shape")
            return [self._move(lambda x: _reshape(x, shape), [args[0]])]
        if name == "TRANSPOSE":
            perm = _ints(args[1], "the permutation")
            return [self._move(lambda x: np.transpose(x, perm), [args[0]])]
        if name == "SQUEEZE":
            dims = tuple(int(d) for d in opt.array(0, np.int32)) if opt is not None else ()
            return [self._move(lambda x: np.squeeze(x, axis=dims or None), [args[0]])]
        if name == "EXPAND_DIMS":
            axis = int(_ints(args[1], "the axis").reshape(-1)[0])
            return [self._move(lambda x: np.expand_dims(x, axis), [args[0]])]
        if name == "STRIDED_SLICE":
            b, e = _ints(args[1], "begin"), _ints(args[2], "end")
            s = _ints(args[3], "strides") if len(args) > 3 and args[3] is not None else np.ones_like(b)
            masks = [o(k, "i", 0) for k in range(5)] + [bool(o(5, "B", 0))]
            return [self._move(lambda x: _strided_slice(x, b, e, s, *masks), [args[0]])]
        if name == "SLICE":
            b, s = _ints(args[1], "begin"), _ints(args[2], "size")
            return [self._move(lambda x: _slice(x, b, s), [args[0]])]
        if name == "SPLIT":
            axis = int(_ints(args[0], "the axis").reshape(-1)[0])
            n = o(0, "i", 1)
            return self._move(lambda x: list(np.split(x, n, axis=axis)), [args[1]])
        if name == "SPLIT_V":
            sizes = _ints(args[1], "the sizes")
            axis = int(_ints(args[2], "the axis").reshape(-1)[0])
            shape = _shape(args[0])
            if (sizes == -1).any():
                sizes = sizes.copy()
                sizes[sizes == -1] = shape[axis] - sizes[sizes != -1].sum()
            return self._move(lambda x: list(np.split(x, np.cumsum(sizes)[:-1], axis=axis)), [args[0]])
        if name == "GATHER":
            axis, batch_dims = o(0, "i", 0), o(1, "i", 0)
            if batch_dims:
                raise Unsupported("batch_dims")
            idx = _ints(args[1], "the indices")
            return [self._move(lambda x: np.take(x, idx, axis=axis), [args[0]])]
        if name == "UNPACK":
            axis = o(1, "i", 0)
            return self._move(lambda x: [np.take(x, k, axis=axis) for k in range(x.shape[axis])], [args[0]])
        if name == "PACK":
            axis = o(1, "i", 0)
            return [self._move(lambda *xs: np.stack(xs, axis=axis), list(args))]
        if name == "CONCATENATION":
            axis = o(0, "i", 0)
            if all(isinstance(a, Sym) for a in args) and len(args) > 1 and axis % len(args[0].shape) == len(args[0].shape) - 1:
                return [self._concatenate(args, _FUSED_name(o(1, "b", 0)))]
            out = self._move(lambda *xs: np.concatenate(xs, axis=axis), list(args))
            act = _FUSED_name(o(1, "b", 0))
            return [out if act is None else self._unary(act, out)]
        if name == "TILE":
            reps = _ints(args[1], "the multiples")
            _check_elements([float(np.prod(_shape(args[0]), dtype=np.float64)) * float(np.prod(reps, dtype=np.float64))])
            return [self._move(lambda x: np.tile(x, reps), [args[0]])]
        if name == "BROADCAST_TO":
            shape = _ints(args[1], "the shape")
            _check_elements(shape)
            return [self._move(lambda x: np.broadcast_to(x, shape), [args[0]])]
        if name == "DYNAMIC_UPDATE_SLICE":
            start = _ints(args[2], "the start indices")
            return [self._move(lambda a, u: _dynamic_update_slice(a, u, start), [args[0], args[1]])]
        if name == "SHAPE":
            return [np.asarray(_shape(args[0]), np.int32)]
        if name == "DEQUANTIZE":
            if isinstance(args[0], Sym):
                raise Unsupported("dequantizing a computed tensor (quantized activations)")
            return [np.asarray(args[0], np.float64)]
        if name == "WHILE":
            return self._while(g, op, args)
        if name == "UNIDIRECTIONAL_SEQUENCE_LSTM":
            return self._fused_lstm(g, op, args)
        if name == "UNIDIRECTIONAL_SEQUENCE_RNN":
            return self._fused_rnn(g, op, args)
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D") and isinstance(args[0], Sym):
            return [self._conv(op, args, depthwise=name == "DEPTHWISE_CONV_2D")]
        if name in ("MAX_POOL_2D", "AVERAGE_POOL_2D") and isinstance(args[0], Sym):
            return [self._pool(op, args[0], "max" if name == "MAX_POOL_2D" else "average")]
        # A LayerNormalization: the mean over the features (affine), SQUARED_DIFFERENCE (a product of
        # two rows), RSQRT (an atom); the importer reads the layer off the forms they make.
        if name == "MEAN" and isinstance(args[0], Sym) and self._over_features(args):
            return [self._feature_mean(args[0], bool(o(0, "B", 0)))]
        if name == "SQUARED_DIFFERENCE" and any(isinstance(a, Sym) for a in args):
            difference = self._binary("SUB", args[0], args[1], None)
            return [self._map_rows(difference, lambda r: _mul_rows(r, r))]
        if name == "NEG" and isinstance(args[0], Sym):
            return [self._map_rows(args[0], lambda r: lin_scale(r, np.full(r.width, -1.0)))]
        if name == "RSQRT" and isinstance(args[0], Sym):
            return [self._unary("rsqrt", args[0])]
        if name in ("MEAN", "REDUCE_MAX") and isinstance(args[0], Sym):
            return [self._global_pool(args, "average" if name == "MEAN" else "max", bool(o(0, "B", 0)))]
        if name in ("MAXIMUM", "MINIMUM") and isinstance(args[0], Sym) and isinstance(args[1], Sym):
            return [self._merge(args[0], args[1], "maximum" if name == "MAXIMUM" else "minimum")]
        if name == "SPACE_TO_BATCH_ND":
            return [self._space_to_batch(args)]
        if name == "BATCH_TO_SPACE_ND":
            return [self._batch_to_space(args)]
        if name == "PAD":
            pads = _ints(args[1], "the paddings")
            if pads.shape != (len(_shape(args[0])), 2) or np.any(pads < 0):
                raise Unsupported(f"paddings of shape {list(pads.shape)}")
            zero = np.zeros((), np.float64)
            return [self._move(lambda x, z: np.pad(x, pads, constant_values=z), [args[0], zero])]
        # Everything else is folded on constants only.
        if any(isinstance(a, Sym) for a in args):
            raise Unsupported("not supported on values computed from the model input")
        return self._numeric(g, op, args)

    def _numeric(self, g: Subgraph, op: Operator, args: list) -> list:
        name, opt = op.name, op.options
        out_tensor = g.tensors[op.outputs[0]] if op.outputs else None
        if name in _NUMERIC_BINARY:
            return [_NUMERIC_BINARY[name](args[0], args[1])]
        if name == "LOGICAL_NOT":
            return [np.logical_not(args[0])]
        if name == "CAST":
            return [np.asarray(args[0]).astype(_numpy_type(out_tensor))]
        if name == "FILL":
            shape = _ints(args[0], "the shape")
            _check_elements(shape)
            return [np.full(shape, args[1])]
        if name == "ZEROS_LIKE":
            return [np.zeros_like(args[0])]
        if name == "RANGE":
            start, limit, delta = (np.asarray(a).item() for a in args[:3])
            if delta == 0 or abs((limit - start) / delta) > MAX_ELEMENTS:
                raise Unsupported("a range of more elements than supported")
            return [np.arange(np.asarray(args[0]).item(), np.asarray(args[1]).item(), np.asarray(args[2]).item())]
        if name in ("REDUCE_MAX", "REDUCE_MIN", "SUM", "REDUCE_PROD", "MEAN"):
            fn = {"REDUCE_MAX": np.max, "REDUCE_MIN": np.min, "SUM": np.sum, "REDUCE_PROD": np.prod, "MEAN": np.mean}[name]
            axes = tuple(int(a) for a in np.asarray(args[1]).reshape(-1))
            keep = bool(opt.scalar(0, "B", 0)) if opt is not None else False
            return [fn(args[0], axis=axes, keepdims=keep)]
        if name == "NEG":
            return [np.negative(args[0])]
        raise Unsupported("this op is not supported")

    # -- element-wise ------------------------------------------------------------------------
    def _unary(self, act: str, x):
        if not isinstance(x, Sym):
            return _numeric_activation(act, np.asarray(x, np.float64))
        return self._map_rows(x, lambda r: _row_activation(act, r))

    def _binary(self, name: str, a, b, act: Optional[str]):
        if not isinstance(a, Sym) and not isinstance(b, Sym):
            fn = {"ADD": np.add, "SUB": np.subtract, "MUL": np.multiply}.get(name)
            if fn is None:  # DIV: integer division truncates in TFLite
                a_, b_ = np.asarray(a), np.asarray(b)
                out = np.trunc(a_ / b_).astype(a_.dtype) if a_.dtype.kind in "iu" else a_ / b_
            else:
                out = fn(a, b)
            return out if act is None else _numeric_activation(act, out)
        shape = np.broadcast_shapes(_shape(a), _shape(b))
        if not shape:
            raise Unsupported("a scalar computed from the model input")
        a_rows = self._broadcast_rows(a, shape)
        b_rows = self._broadcast_rows(b, shape)
        rows = np.empty(len(a_rows), object)
        for k, (ra, rb) in enumerate(zip(a_rows, b_rows)):
            if name == "ADD":
                r = lin_add(ra, rb)
            elif name == "SUB":
                r = lin_add(ra, rb, -1.0)
            elif name == "MUL":
                if not ra.terms:
                    r = lin_scale(rb, ra.bias)
                elif not rb.terms:
                    r = lin_scale(ra, rb.bias)
                else:
                    r = atom_row(Atom("mul", (ra, rb), None, ra.width))
            else:  # DIV
                if rb.terms:
                    raise Unsupported("division by a value computed from the model input")
                r = lin_scale(ra, 1.0 / rb.bias)
            rows[k] = r if act is None else _row_activation(act, r)
        return Sym(shape, rows.reshape(shape[:-1]))

    def _broadcast_rows(self, x, shape) -> list:
        if isinstance(x, Sym):
            if x.shape != tuple(shape):
                x = self._move(lambda v: np.broadcast_to(v, shape), [x])
            return x.flat_rows()
        c = np.broadcast_to(np.asarray(x, np.float64), shape).reshape(-1, shape[-1])
        return [Lin({}, row) for row in c]

    def _map_rows(self, x: Sym, fn) -> Sym:
        rows = np.empty(x.rows.size, object)
        for k, r in enumerate(x.flat_rows()):
            rows[k] = fn(r)
        return Sym(x.shape, rows.reshape(x.rows.shape))

    # -- FULLY_CONNECTED -----------------------------------------------------------------------
    def _fully_connected(self, args, act, keep_dims: bool, weights_format: int):
        x, w = args[0], args[1]
        b = args[2] if len(args) > 2 else None
        if weights_format:
            raise Unsupported("shuffled weights format")
        if isinstance(w, Sym) or isinstance(b, Sym):
            raise Unsupported("weights computed from the model input")
        w = np.asarray(w, np.float64)
        if w.ndim != 2:
            raise Unsupported(f"weights of shape {w.shape}")
        units, k = w.shape
        if not isinstance(x, Sym):
            xs = np.asarray(x, np.float64)
            y = xs.reshape(-1, k) @ w.T + (0 if b is None else np.asarray(b, np.float64))
            y = y.reshape(xs.shape[:-1] + (units,)) if keep_dims else y
            return y if act is None else _numeric_activation(act, y)
        flat = x if x.shape[-1] == k else self._move(lambda v: v.reshape(-1, k), [x])
        wt = w.T
        bias = None if b is None else np.asarray(b, np.float64)
        rows = np.empty(flat.rows.size, object)
        for i, r in enumerate(flat.flat_rows()):
            y = lin_matmul(r, wt)
            if bias is not None:
                y = Lin(y.terms, y.bias + bias)
            rows[i] = y if act is None else _row_activation(act, y)
        shape = (flat.shape[:-1] + (units,)) if keep_dims else (flat.rows.size, units)
        return Sym(shape, rows.reshape(shape[:-1]))

    # -- layers kept whole: convolution, pooling, merges -------------------------------------------
    def _layer_rows(self, layer: Layer, args_of, batch: int, steps: int, width: int) -> np.ndarray:
        """(batch, steps) rows of "layer" atoms; ``args_of(b, t)`` the rows output (b, t) combines."""
        self.layers.append(layer)
        rows = np.empty((batch, steps), object)
        for b in range(batch):
            for t in range(steps):
                rows[b, t] = atom_row(Atom("layer", tuple(args_of(b, t)), (layer, b, t), width))
        return rows

    @staticmethod
    def _time_axis(x: Sym, what: str, along_w: tuple, along_h: tuple):
        """Which axis of a 4-D (batch, H, W, channels) input is time: W in (batch, 1, T, C), what
        TensorFlow's conv1d and Keras 3's pooling make, or H in (batch, T, 1, C), tf-keras's pooling.
        ``along_w``, ``along_h``: the op's (window, stride, dilation) along each; the other axis
        must be 1 wide and its window 1. Returns ``(axis, (window, stride, dilation) along time,
        rows (batch, T))``."""
        if len(x.shape) == 4:
            if x.shape[1] == 1 and all(v == 1 for v in along_h):
                return 2, along_w, x.rows[:, 0, :]
            if x.shape[2] == 1 and all(v == 1 for v in along_w):
                return 1, along_h, x.rows[:, :, 0]
        raise Unsupported(f"a 2-D {what} (input {list(x.shape)}, window {along_h[0]}x{along_w[0]}, strides "
                          f"{along_h[1]}x{along_w[1]}); edgernn converts 1-D {what}s over time")

    @staticmethod
    def _in_layout(out: np.ndarray, axis: int, width: int) -> Sym:
        """(batch, steps) output rows as the 4-D tensor the op makes: time on ``axis`` (1 or 2)."""
        rows = out[:, None, :] if axis == 2 else out[:, :, None]
        return Sym(rows.shape + (width,), rows)

    def _conv(self, op: Operator, args: list, depthwise: bool) -> Sym:
        """CONV_2D / DEPTHWISE_CONV_2D over (batch, 1, T, C) (or (batch, T, 1, C)), a Keras Conv1D /
        DepthwiseConv1D:

            y[t] = act(b + sum_j x[t*s + j*d - left] @ W_j)

        (rows outside the sequence are zeros). TFLite weights are ``(F, 1, k, C / groups)`` (a
        grouped CONV_2D has fewer input channels than its input) or, depthwise, ``(1, 1, k, C * m)``
        (output ``c * m + i`` reads channel c: groups = C). Zero rows a PAD op put at the ends of the
        sequence are taken off and recorded (a causal Conv1D is a PAD of (k-1)*d zeros on the left
        and a VALID convolution).

        A dilated Conv1D with a dynamic time axis comes as SPACE_TO_BATCH_ND (block d) -> an
        undilated convolution -> BATCH_TO_SPACE_ND: when this convolution's input is what a
        SPACE_TO_BATCH_ND made, it is executed as the dilated convolution of that op's input
        (output ``t*d + r`` of the whole sequence is output t of batch block r), and the
        BATCH_TO_SPACE_ND that puts the rows back in order says its length (:meth:`_batch_to_space`)."""
        x, w = args[0], args[1]
        b = args[2] if len(args) > 2 else None
        if isinstance(w, Sym) or isinstance(b, Sym):
            raise Unsupported("weights computed from the model input")
        opt = op.options
        o = (lambda f, fmt, d=0: d if opt is None else opt.scalar(f, fmt, d))
        padding = "same" if o(0, "b", 0) == 0 else "valid"
        stride_w, stride_h = o(1, "i", 1), o(2, "i", 1)
        if depthwise:
            act, dilation_w, dilation_h = _FUSED_name(o(4, "b", 0)), o(5, "i", 1), o(6, "i", 1)
        else:
            act, dilation_w, dilation_h = _FUSED_name(o(3, "b", 0)), o(4, "i", 1), o(5, "i", 1)
        what = "depthwise convolution" if depthwise else "convolution"
        w = np.asarray(w, np.float64)
        channels = x.shape[-1]
        if w.ndim != 4:
            raise Unsupported(f"weights of shape {list(w.shape)}")
        axis, (_, stride, dilation), rows = self._time_axis(x, what, (w.shape[2], stride_w, dilation_w),
                                                            (w.shape[1], stride_h, dilation_h))
        if stride < 1 or dilation < 1:
            raise Unsupported(f"stride {stride}, dilation {dilation}")
        taps_first = w[:, 0] if axis == 2 else w[:, :, 0]  # (F or 1, k, C / groups or C * m)
        if depthwise:
            if w.shape[0] != 1 or w.shape[3] % channels:
                raise Unsupported(f"depthwise weights {list(w.shape)} for {channels} channels")
            kernel, groups = taps_first[0][:, None, :], channels
        else:
            if channels % w.shape[3]:
                raise Unsupported(f"weights {list(w.shape)} for {channels} input channels")
            kernel, groups = taps_first.transpose(1, 2, 0), channels // w.shape[3]
        size, per_group, filters = kernel.shape
        bias = np.zeros(filters) if b is None else np.asarray(b, np.float64).reshape(filters)
        # The kernel as one (C, F) matrix per tap: block-diagonal over the groups.
        _check_elements([size, channels, filters])
        taps = np.zeros((size, channels, filters))
        out_per_group = filters // groups
        for g in range(groups):
            cols = slice(g * out_per_group, (g + 1) * out_per_group)
            taps[:, g * per_group:(g + 1) * per_group, cols] = kernel[:, :, cols]

        span = (size - 1) * dilation + 1
        total = rows.shape[1]
        implicit, steps = _windows(total, span, stride, padding, "the convolution's span")
        block = 1
        source = self._space_to_batch_source(rows)
        if source is not None:  # the dilated convolution of the sequence SPACE_TO_BATCH_ND rearranged
            rows, block = source
            if stride != 1:
                raise Unsupported("a strided convolution of a batch rearranged by SPACE_TO_BATCH_ND")
            implicit, steps, dilation = implicit * block, steps * block, dilation * block
            span, total = (size - 1) * dilation + 1, rows.shape[1]
        # Zero rows at the ends (a PAD op's, SPACE_TO_BATCH_ND's) are taken off the input the layer records.
        zero = np.vectorize(lambda r: not r.terms and not np.any(r.bias), otypes=[bool])(rows).all(axis=0)
        if zero.all():
            raise Unsupported("a convolution of zeros")
        left, right = int(np.argmin(zero)), int(np.argmin(zero[::-1]))
        interior = rows[:, left:total - right]
        attrs = dict(kernel=kernel, bias=bias, strides=stride, dilation_rate=dilation, groups=groups,
                     activation=act or "linear", depthwise=depthwise)
        if block > 1:  # padding known once BATCH_TO_SPACE_ND says which outputs are kept
            attrs.update(padding=None, pad=None, zeros_before=left + implicit, input_steps=interior.shape[1])
        elif padding == "valid" and right == 0 and left == span - 1 and left > 0:
            attrs.update(padding="causal", pad=(0, 0))
        else:
            attrs.update(padding=padding, pad=(left, right))
        layer = Layer("conv", Sym(interior.shape + (channels,), interior), None if block > 1 else steps,
                      (lambda vs, f=act: vs[0] if f is None else _numeric_activation(f, vs[0])), **attrs)

        def taps_of(bi, t):
            pre = Lin({}, bias)
            for j in range(size):
                p = t * stride + j * dilation - implicit
                if 0 <= p < total and rows[bi, p].terms:
                    pre = lin_add(pre, lin_matmul(rows[bi, p], taps[j]))
            return [pre]

        out = self._layer_rows(layer, taps_of, rows.shape[0], steps, filters)
        if block > 1:  # back to SPACE_TO_BATCH_ND's arrangement: row (r * batch + b, t) is output t * d + r
            out = np.moveaxis(out.reshape(out.shape[0], steps // block, block), 2, 0).reshape(-1, steps // block)
        return self._in_layout(out, axis, filters)

    @staticmethod
    def _time_block(args: list, what: str):
        """``(time axis, d, (before, after))`` of a SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND that
        rearranges one time axis: of (batch, T, C) (block ``[d]``), or of (batch, 1, T, C) (block
        ``[1, d]``, what a depthwise convolution's input gets) or (batch, T, 1, C) (``[d, 1]``)."""
        block, pads = _ints(args[1], "the block shape").reshape(-1), _ints(args[2], f"the {what}")
        rank = len(_shape(args[0]))
        if block.size == 1 and pads.shape == (1, 2) and rank >= 3:
            axis = 1
        elif (block.size == 2 and pads.shape == (2, 2) and rank == 4 and _shape(args[0])[1] == 1
              and block[0] == 1 and not np.any(pads[0])):
            axis, block, pads = 2, block[1:], pads[1:]
        elif (block.size == 2 and pads.shape == (2, 2) and rank == 4 and _shape(args[0])[2] == 1
              and block[1] == 1 and not np.any(pads[1])):
            axis, block, pads = 1, block[:1], pads[:1]
        else:
            raise Unsupported(f"block shape {block.tolist()}, {what} {pads.tolist()} of a tensor of rank {rank} "
                              "(edgernn converts the rearrangement of a time axis)")
        if block[0] < 1 or np.any(pads < 0):
            raise Unsupported(f"block shape {block.tolist()}, {what} {pads.tolist()}")
        return axis, int(block[0]), (int(pads[0, 0]), int(pads[0, 1]))

    def _space_to_batch(self, args: list):
        """SPACE_TO_BATCH_ND over a time axis: ``T`` padded with zeros, cut into ``T / d`` blocks of
        d, and timestep ``t * d + r`` of batch row b moved to batch row ``r * batch + b``, timestep t.
        The arrangement of a computed input is remembered, for the convolution that reads it
        (:meth:`_conv`)."""
        axis, d, pads = self._time_block(args, "paddings")

        def rearrange(x, zero):
            x = np.moveaxis(x, axis, 1)
            x = np.pad(x, [(0, 0), pads] + [(0, 0)] * (x.ndim - 2), constant_values=zero)
            if x.shape[1] % d:
                raise Unsupported(f"{x.shape[1]} padded timesteps are not a multiple of the block {d}")
            x = x.reshape((x.shape[0], x.shape[1] // d, d) + x.shape[2:])
            x = np.moveaxis(x, 2, 0).reshape((-1, x.shape[1]) + x.shape[3:])
            return np.moveaxis(x, 1, axis)

        out = self._move(rearrange, [args[0], np.zeros((), np.float64)])
        if isinstance(out, Sym) and len(out.shape) == axis + 2:
            self._rearranged.append((out.rows.reshape(out.shape[0], -1), d))
        return out

    def _space_to_batch_source(self, rows: np.ndarray):
        """``(sequence rows (batch, T), d)`` if ``rows`` are (by identity) the rows a SPACE_TO_BATCH_ND
        made of that sequence with block d, else None."""
        for made, d in reversed(self._rearranged):
            if made.shape == rows.shape and all(a is b for a, b in zip(made.reshape(-1), rows.reshape(-1))):
                steps = rows.shape[1]
                return np.moveaxis(rows.reshape(d, -1, steps), 0, 2).reshape(-1, steps * d), d
        return None

    def _batch_to_space(self, args: list):
        """BATCH_TO_SPACE_ND over a time axis: the inverse rearrangement of SPACE_TO_BATCH_ND, then
        ``crops`` timesteps taken off the ends. When it puts a rearranged convolution's outputs back
        in order, that convolution's length and padding are known: set here."""
        axis, d, crops = self._time_block(args, "crops")

        def arrange(x):
            x = np.moveaxis(x, axis, 1)
            if x.shape[0] % d:
                raise Unsupported(f"a batch of {x.shape[0]} rows for the block {d}")
            x = np.moveaxis(x.reshape((d, x.shape[0] // d) + x.shape[1:]), 0, 2)
            x = x.reshape((x.shape[0], x.shape[1] * d) + x.shape[3:])
            return np.moveaxis(x[:, crops[0]:x.shape[1] - crops[1]], 1, axis)

        out = self._move(arrange, [args[0]])
        if isinstance(out, Sym) and len(out.shape) == axis + 2 and out.rows.size:
            rows = out.rows.reshape(out.shape[0], -1)
            atom = next(iter(rows[0, 0].terms), None)
            layer = atom.param[0] if atom is not None and atom.kind == "layer" else None
            if layer is not None and layer.kind == "conv" and layer.attrs["padding"] is None and all(
                    len(r.terms) == 1 and next(iter(r.terms)).param == (layer, bi, t)
                    for (bi, t), r in np.ndenumerate(rows)):
                self._set_padding(layer, rows.shape[1])
        return out

    @staticmethod
    def _set_padding(layer: Layer, steps: int) -> None:
        """The padding of a convolution of ``steps`` outputs whose output 0 is ``zeros_before``
        timesteps before its input (its input's length ``input_steps``; stride 1)."""
        attrs = layer.attrs
        span = (attrs["kernel"].shape[0] - 1) * attrs["dilation_rate"] + 1
        left = attrs["zeros_before"]
        right = steps - 1 + span - attrs["input_steps"] - left
        if (left, right) == (0, 0):
            attrs.update(padding="valid", pad=(0, 0))
        elif (left, right) == (span - 1, 0):
            attrs.update(padding="causal", pad=(0, 0))
        elif (left, right) == ((span - 1) // 2, span - 1 - (span - 1) // 2):
            attrs.update(padding="same", pad=(0, 0))
        else:
            attrs.update(padding="valid", pad=(left, right))
        layer.steps = steps

    def _pool(self, op: Operator, x: Sym, kind: str) -> Sym:
        """MAX_POOL_2D / AVERAGE_POOL_2D over (batch, 1, T, C) or (batch, T, 1, C), a Keras
        Max/AveragePooling1D: the max
        or the mean of the rows in each window; SAME's pads are left out (the mean divides by the
        rows in the window), as in TensorFlow and :class:`edgernn.ir.Pooling1D`."""
        opt = op.options
        o = (lambda f, fmt, d=0: d if opt is None else opt.scalar(f, fmt, d))
        padding = "same" if o(0, "b", 0) == 0 else "valid"
        stride_w, stride_h, size_w, size_h = o(1, "i", 1), o(2, "i", 1), o(3, "i", 1), o(4, "i", 1)
        axis, (size, stride, _), rows = self._time_axis(x, "pooling", (size_w, stride_w, 1), (size_h, stride_h, 1))
        if stride < 1 or size < 1:
            raise Unsupported(f"pool size {size}, stride {stride}")
        if _FUSED_name(o(5, "b", 0)) is not None:
            raise Unsupported("a fused activation on a pooling")
        total = rows.shape[1]
        left, steps = _windows(total, size, stride, padding, "the pool size")
        reduce = np.max if kind == "max" else np.mean
        layer = Layer("pool", Sym(rows.shape + (x.shape[-1],), rows), steps,
                      lambda vs: reduce(np.stack(vs), axis=0), pool=kind, pool_size=size, strides=stride,
                      padding=padding)

        def window(bi, t):
            start = t * stride - left
            return [rows[bi, p] for p in range(max(start, 0), min(start + size, total))]

        out = self._layer_rows(layer, window, rows.shape[0], steps, x.shape[-1])
        return self._in_layout(out, axis, x.shape[-1])

    def _global_pool(self, args: list, kind: str, keep_dims: bool) -> Sym:
        """MEAN / REDUCE_MAX over the time axis of a (batch, T, C) tensor: Keras's
        GlobalAveragePooling1D / GlobalMaxPooling1D (the mean over the features is
        :meth:`_feature_mean`). Other reductions of computed values are refused."""
        x = args[0]
        axes = sorted({int(a) % len(x.shape) for a in _ints(args[1], "the axes").reshape(-1)})
        if len(x.shape) != 3 or axes != [1]:
            raise Unsupported(f"a reduction over axes {axes} of a tensor of shape {list(x.shape)} (edgernn "
                              "converts the mean or max over time of a (batch, time, features) tensor)")
        rows = x.rows
        reduce = np.max if kind == "max" else np.mean
        layer = Layer("global_pool", x, None, lambda vs: reduce(np.stack(vs), axis=0), pool=kind)
        out = self._layer_rows(layer, lambda bi, _: list(rows[bi]), rows.shape[0], 1, x.shape[-1])
        return Sym((rows.shape[0], 1, x.shape[-1]), out) if keep_dims else Sym((rows.shape[0], x.shape[-1]), out[:, 0])

    @staticmethod
    def _over_features(args: list) -> bool:
        """Whether a reduction's axes are the last one alone (the features)."""
        rank = len(args[0].shape)
        return sorted({int(a) % rank for a in _ints(args[1], "the axes").reshape(-1)}) == [rank - 1]

    def _feature_mean(self, x: Sym, keep_dims: bool) -> Sym:
        """MEAN over the features, keeping that axis (of size 1): each row times a column of 1/C."""
        if not keep_dims:
            raise Unsupported("a mean over the features that drops their axis")
        width = x.shape[-1]
        column = np.full((width, 1), 1.0 / width)
        return self._map_rows(Sym(x.shape[:-1] + (1,), x.rows), lambda r: lin_matmul(r, column))

    def _merge(self, a: Sym, b: Sym, mode: str) -> Sym:
        """MAXIMUM / MINIMUM of two computed tensors of one shape: Keras's Maximum / Minimum merges."""
        if a.shape != b.shape:
            raise Unsupported(f"tensors of shapes {list(a.shape)} and {list(b.shape)}")
        fn = np.maximum if mode == "maximum" else np.minimum
        layer = Layer("merge", None, None, lambda vs: fn(vs[0], vs[1]), mode=mode)
        ra, rb = a.rows.reshape(a.rows.shape[0], -1), b.rows.reshape(b.rows.shape[0], -1)
        out = self._layer_rows(layer, lambda bi, t: (ra[bi, t], rb[bi, t]), ra.shape[0], ra.shape[1], a.shape[-1])
        return Sym(a.shape, out.reshape(a.rows.shape))

    def _concatenate(self, args: list, act: Optional[str]) -> Sym:
        """CONCATENATION of computed tensors over features: a Keras Concatenate, kept whole (the
        next layer's weights would otherwise be split over the inputs' atoms)."""
        shape = args[0].shape
        if any(a.shape[:-1] != shape[:-1] for a in args):
            raise Unsupported(f"tensors of shapes {[list(a.shape) for a in args]}")
        width = sum(a.shape[-1] for a in args)
        layer = Layer("concatenate", None, None, lambda vs: np.concatenate(vs, axis=-1))
        flat = [a.rows.reshape(a.rows.shape[0], -1) if a.rows.ndim else a.rows.reshape(1, 1) for a in args]
        out = self._layer_rows(layer, lambda bi, t: [f[bi, t] for f in flat], flat[0].shape[0], flat[0].shape[1], width)
        y = Sym(shape[:-1] + (width,), out.reshape(args[0].rows.shape))
        return y if act is None else self._unary(act, y)

    # -- layout ops via position codes -----------------------------------------------------------
    def _move(self, fn, data: list):
        """Run layout function ``fn`` on ``data`` (constants or Syms). With a Sym among them, ``fn``
        runs on integer codes (one per element) and the result is rebuilt from where each output
        element came from."""
        if not any(isinstance(v, Sym) for v in data):
            return fn(*data)
        offsets, codes, total = [], [], 0
        for v in data:
            shape = _shape(v)
            size = int(np.prod(shape)) if shape else 1
            if total + size > MAX_ELEMENTS:
                raise Unsupported(f"tensors of more than {MAX_ELEMENTS} elements")
            offsets.append(total)
            codes.append(np.arange(total, total + size, dtype=np.int64).reshape(shape))
            total += size
        out = fn(*codes)
        if isinstance(out, list):
            return [self._assemble(np.asarray(c), data, offsets) for c in out]
        return self._assemble(np.asarray(out), data, offsets)

    def _assemble(self, oc: np.ndarray, data: list, offsets: list):
        offsets_a = np.asarray(offsets)
        which = np.searchsorted(offsets_a, oc, side="right") - 1
        if all(not isinstance(data[i], Sym) for i in np.unique(which)):
            flat = [np.asarray(v).reshape(-1) for v in data]
            values = np.empty(oc.shape, np.float64)
            for i in np.unique(which):
                sel = which == i
                values[sel] = flat[i][oc[sel] - offsets[i]]
            return values
        if oc.ndim == 0:
            raise Unsupported("a scalar computed from the model input")
        m = oc.shape[-1]
        n_rows = oc.size // m if m else 0
        oc2, w2 = oc.reshape(n_rows, m), which.reshape(n_rows, m)
        rows = np.empty(n_rows, object)
        # Fast path, vectorised: output rows that are a whole row of a Sym input (the usual case:
        # tensor-list writes, transposes of rows, gathers of timesteps) reuse that row's form.
        is_sym = np.array([isinstance(v, Sym) for v in data])
        width = np.array([v.shape[-1] if isinstance(v, Sym) else 0 for v in data])
        first = w2[:, 0]
        local0 = oc2[:, 0] - offsets_a[first]
        whole = (is_sym[first] & (width[first] == m) & (local0 % max(m, 1) == 0)
                 & (w2 == first[:, None]).all(axis=1) & (oc2 == oc2[:, :1] + np.arange(m)).all(axis=1))
        flat_rows = [v.rows.reshape(-1) if isinstance(v, Sym) else None for v in data]
        for r in range(n_rows):
            if whole[r]:
                rows[r] = flat_rows[first[r]][local0[r] // m]
            else:
                rows[r] = self._gather_row(oc2[r], w2[r], data, offsets, m)
        return Sym(oc.shape, rows.reshape(oc.shape[:-1]))

    @staticmethod
    def _gather_row(codes, which, data, offsets, m) -> Lin:
        if (which == which[0]).all():
            i = int(which[0])
            v, local = data[i], codes - offsets[i]
            if not isinstance(v, Sym):
                return Lin({}, np.asarray(v, np.float64).reshape(-1)[local])
            n = v.shape[-1]
            srow, col = local // n, local % n
            if (srow == srow[0]).all():
                row = v.rows.reshape(-1)[srow[0]]
                if m == n and np.array_equal(col, np.arange(n)):
                    return row
                return lin_columns(row, col)
        # General case: columns from several rows or inputs.
        terms: dict = {}
        bias = np.zeros(m)
        for j in range(m):
            i = int(which[j])
            v, local = data[i], int(codes[j] - offsets[i])
            if not isinstance(v, Sym):
                bias[j] = float(np.asarray(v).reshape(-1)[local])
                continue
            n = v.shape[-1]
            row = v.rows.reshape(-1)[local // n]
            col = local % n
            bias[j] = row.bias[col]
            for k, mat in row.terms.items():
                target = terms.get(k)
                if target is None:
                    target = terms[k] = np.zeros((k.width, m))
                target[:, j] += dense(mat, k.width)[:, col]
        return Lin(terms, bias)

    # -- control flow --------------------------------------------------------------------------
    def _while(self, g: Subgraph, op: Operator, args: list) -> list:
        if op.options is None:
            raise Unsupported("no loop subgraphs")
        cond, body = op.options.scalar(0, "i", 0), op.options.scalar(1, "i", 0)
        n = len(self.model.subgraphs)
        if not (0 < cond < n and 0 < body < n):
            raise Unsupported("loop subgraph index out of range")
        # Loop variables the body passes through unchanged (the input sequence) may be computed;
        # the carried ones (counters, states, the output list) must start from constants.
        b = self.model.subgraphs[body]
        carried = [i for k, (i, a) in enumerate(zip(op.inputs, args))
                   if isinstance(a, Sym) and not (k < len(b.outputs) and k < len(b.inputs) and b.outputs[k] == b.inputs[k])]
        self._refuse_carried_state(g, carried, "the loop starts from")
        self.forms.add("while")
        values = list(args)
        while True:
            flag = self.run(cond, values)[0]
            if isinstance(flag, Sym):
                raise Unsupported("the loop condition depends on the model input")
            if not bool(np.asarray(flag).reshape(-1)[0]):
                return values
            self.loop_steps += 1
            if self.loop_steps > MAX_LOOP_STEPS:
                raise Unsupported(f"more than {MAX_LOOP_STEPS} loop iterations")
            values = self.run(body, values)

    def _refuse_carried_state(self, g: Subgraph, tensors: list, what: str) -> None:
        """A recurrent op whose initial state is computed (not constant zeros) is refused: Keras
        never makes one, but TFLiteConverter merges identical zero constants, so a tf-keras file can
        use one tensor as a fused LSTM's state *variable* (which the op overwrites with its final
        state) and as a later layer's initial state -- the interpreter then starts that layer from
        the earlier layer's final state, which no Keras model (nor edgernn's IR chain) does."""
        if not tensors:
            return
        t = g.tensors[tensors[0]]
        writer = self.variable_writers.get((g.index, t.index))
        if writer:
            raise Unsupported(
                f"{what} tensor {t.name!r}, which is also the state variable of the {writer} that runs before it: "
                "the interpreter starts this layer from that layer's final state instead of zeros (TFLiteConverter "
                "merged two zero constants of a tf-keras model); convert the Keras model instead, or the "
                "layers separately")
        raise Unsupported(f"{what} tensor {t.name!r}, a value computed by earlier ops (only zero initial states "
                          "are supported)")

    # -- fused sequence ops ----------------------------------------------------------------------
    def _sequence_rows(self, x, time_major: bool):
        if not isinstance(x, Sym) or len(x.shape) != 3:
            raise Unsupported("the input is not a (batch, time, features) tensor computed from the model input")
        rows = x.rows if time_major else x.rows.transpose(1, 0)  # -> (T, B)
        return rows, x.shape[-1]

    def _fused_lstm(self, g: Subgraph, op: Operator, args: list) -> list:
        """UNIDIRECTIONAL_SEQUENCE_LSTM (tflite/kernels/lstm_eval.cc), expanded per step:
        gates ``i, f, o = σ(x W_* + h U_* + b_*)``, ``g = φ(x W_c + h U_c + b_c)``,
        ``c' = clip(f c + i g)`` (clip only when cell_clip > 0), ``h' = o φ(c')``; φ is the fused
        activation. Inputs: 0 x, 1-4 input weights (i, f, c, o), 5-8 recurrent weights,
        9-11 peepholes, 12-15 biases, 16-17 projection, 18-19 h and c state, 20-23 layer norm."""
        self.forms.add("fused")
        opt = op.options
        act = _FUSED_name(opt.scalar(0, "b", 0) if opt else 0)
        cell_clip = float(opt.scalar(1, "f", 0.0)) if opt else 0.0
        time_major = bool(opt.scalar(3, "B", 0)) if opt else False
        present = lambda k: k < len(args) and args[k] is not None  # noqa: E731
        missing = []
        if not present(1):
            missing.append("coupled input and forget gates (CIFG)")
        if any(present(k) for k in (9, 10, 11)):
            missing.append("peepholes")
        if present(16) or present(17):
            missing.append("a projection")
        if any(present(k) for k in (20, 21, 22, 23)):
            missing.append("layer normalization")
        if act is None:
            missing.append("no cell activation")
        if missing:
            raise Unsupported(", ".join(missing) + " (not supported)")
        if any(isinstance(args[k], Sym) for k in range(1, 16) if present(k)):
            raise Unsupported("weights computed from the model input")
        self._refuse_carried_state(g, [op.inputs[k] for k in (18, 19) if isinstance(args[k], Sym)], "it starts from")
        w = [np.asarray(args[k], np.float64) for k in (1, 2, 3, 4)]
        u = [np.asarray(args[k], np.float64) for k in (5, 6, 7, 8)]
        b = [np.asarray(args[k], np.float64) if present(k) else np.zeros(w[0].shape[0]) for k in (12, 13, 14, 15)]
        rows, _ = self._sequence_rows(args[0], time_major)
        steps, batch = rows.shape
        units = w[0].shape[0]
        h = [Lin({}, np.asarray(args[18], np.float64).reshape(batch, units)[k]) for k in range(batch)]
        c = [Lin({}, np.asarray(args[19], np.float64).reshape(batch, units)[k]) for k in range(batch)]
        out = np.empty((steps, batch), object)
        for t in range(steps):
            for k in range(batch):
                pre = [lin_add(lin_add(lin_matmul(rows[t, k], w[j].T), lin_matmul(h[k], u[j].T)),
                               Lin({}, b[j])) for j in range(4)]
                i_g = _row_activation("sigmoid", pre[0])
                f_g = _row_activation("sigmoid", pre[1])
                g_g = _row_activation(act, pre[2])
                o_g = _row_activation("sigmoid", pre[3])
                cell = lin_add(_mul_rows(f_g, c[k]), _mul_rows(i_g, g_g))
                if cell_clip > 0:
                    cell = _row_activation("clip", cell, cell_clip)
                c[k] = cell
                h[k] = out[t, k] = _mul_rows(o_g, _row_activation(act, cell))
        if cell_clip > 0:
            self.notes.append(f"UNIDIRECTIONAL_SEQUENCE_LSTM clips its cell state to ±{cell_clip:g}")
        # The op writes its final states into its state variables (inputs 18 and 19): later reads
        # of those tensors in this invoke see them.
        for k, state in ((18, h), (19, c)):
            self._write_variable(g, op, op.inputs[k], state, units)
        rows_out = out if time_major else out.transpose(1, 0)
        return [Sym(rows_out.shape + (units,), rows_out)]

    def _write_variable(self, g: Subgraph, op: Operator, index: int, rows: list, units: int) -> None:
        rows_a = np.empty(len(rows), object)
        for k, r in enumerate(rows):
            rows_a[k] = r
        self._env[index] = Sym((len(rows), units), rows_a)
        self.variable_writers[(g.index, index)] = op.name

    def _fused_rnn(self, g: Subgraph, op: Operator, args: list) -> list:
        """UNIDIRECTIONAL_SEQUENCE_RNN: ``h' = φ(x W^T + h U^T + b)``; inputs x, W, U, b, h."""
        self.forms.add("fused")
        opt = op.options
        time_major = bool(opt.scalar(0, "B", 0)) if opt else False
        act = _FUSED_name(opt.scalar(1, "b", 0) if opt else 0) or "linear"
        if any(isinstance(args[k], Sym) for k in (1, 2, 3)):
            raise Unsupported("weights computed from the model input")
        w, u = np.asarray(args[1], np.float64), np.asarray(args[2], np.float64)
        b = np.asarray(args[3], np.float64)
        rows, _ = self._sequence_rows(args[0], time_major)
        steps, batch = rows.shape
        units = w.shape[0]
        self._refuse_carried_state(g, [op.inputs[4]] if isinstance(args[4], Sym) else [], "it starts from")
        h = [Lin({}, np.asarray(args[4], np.float64).reshape(batch, units)[k]) for k in range(batch)]
        out = np.empty((steps, batch), object)
        for t in range(steps):
            for k in range(batch):
                pre = lin_add(lin_add(lin_matmul(rows[t, k], w.T), lin_matmul(h[k], u.T)), Lin({}, b))
                h[k] = out[t, k] = pre if act == "linear" else _row_activation(act, pre)
        self._write_variable(g, op, op.inputs[4], h, units)
        rows_out = out if time_major else out.transpose(1, 0)
        return [Sym(rows_out.shape + (units,), rows_out)]


def _windows(total: int, window: int, stride: int, padding: str, what: str) -> tuple[int, int]:
    """``(zeros before the first window, number of windows)`` of a window spanning ``window`` of
    ``total`` timesteps, moved by ``stride``, with TFLite's VALID or SAME padding."""
    if padding == "same":
        left, steps = _same_padding(total, window, stride)[0], -(-total // stride)
    else:
        left, steps = 0, (total - window) // stride + 1
    if steps < 1:
        raise Unsupported(f"a sequence of {total} timesteps shorter than {what} {window}")
    return left, steps


def _mul_rows(a: Lin, b: Lin) -> Lin:
    if not a.terms:
        return lin_scale(b, a.bias)
    if not b.terms:
        return lin_scale(a, b.bias)
    return atom_row(Atom("mul", (a, b), None, a.width))


def _FUSED_name(code: int) -> Optional[str]:
    if code not in _FUSED:
        raise Unsupported(f"fused activation #{code}")
    return _FUSED[code]


def _check_elements(shape) -> None:
    shape = np.asarray(shape, np.float64).reshape(-1)
    if np.any(shape < 0) or float(np.prod(shape)) > MAX_ELEMENTS:
        raise Unsupported(f"a tensor of shape {[int(v) for v in shape]}")


def _shape(x) -> tuple:
    return x.shape if isinstance(x, Sym) else tuple(np.shape(x))


def _numpy_type(tensor: Optional[Tensor]):
    from ._tflite_reader import _TENSOR_TYPES

    return _TENSOR_TYPES.get(tensor.type_code, np.float64) if tensor is not None else np.float64
