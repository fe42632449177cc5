"""The integer IR: a chain of quantized layers made from a float ModelSpec and calibration ranges.

:class:`QLayer` holds, for one layer, exactly the arrays and integers the C runtime's
``ernn_layer`` struct holds (the exporter writes them out as they are); :class:`QSpec` the whole
chain with the model input's and output's quantization. Weights are stored row-major per output
row: ``w`` (rows, in), ``u`` (rows, units) -- the IR's ``(in, gates * units)`` kernels transposed.

int8 scheme, per layer (see docs/firmware.md for the arithmetic):

* weights: int8, symmetric per output row (scale = max |row| / 127);
* tensors between layers (and h): int8, asymmetric (scale, zero point) from the calibrated range;
* LSTM cell state: int16 with a power-of-two scale 2^-cs from the calibrated max |c| (x1.1);
* gate pre-activations Q3.12 int16 (int32 before saturation), gate values Q0.15 int16;
* accumulators int32; biases int32 in the accumulator's scale, the input and h zero points folded
  in offline (``bx = round(b / (s_x s_w)) - zp_x sum_k w[r, k]``);
* rescaling by fixed-point multipliers ``(M, n)``: real = M 2^-n.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import ir
from ..errors import UnsupportedModel
from ..graph import streamable_problem
from . import fixedpoint as fx
from .activations import ACT_IDS, TABLE_FUNCTIONS, UNIT_INTERVAL
from .calibrate import Ranges
from .dense import MODE_AFFINE, MODE_SOFTMAX, MODE_TABLE
from .merge import HEADROOM, MERGE_IDS, RESCALED
from .pairwise import firmware_form
from .windows import flatten_problem

SCHEMES = ("int8", "int8-weights", "float32")
_EMPTY_F = np.zeros(0, np.float32)
_EMPTY_I = np.zeros(0, np.int32)
_EMPTY_T = np.zeros(0, np.int16)
BIAS_LIMIT = 1 << 30  # folded biases are kept within +-2^30 so int32 accumulators cannot overflow
MAX_SIZE = 16384      # features / units per layer: 2^30 + 16384 * 128 * 127 < 2^31 (int32 accumulators)
MAX_VOCAB = 1 << 24   # codes of an Embedding: ernn_step_float takes the code as a float32, exact up to 2^24


@dataclass(eq=False)
class QLayer:
    kind: str                 # "lstm", "gru", "simple", "dense" (a Dense, or an Activation: no weights), "mask",
    #                           "conv" (a Conv1D; also Affine and a Standardize not first: per-channel, k = 1), "pool",
    #                           "embed" (an Embedding, first: w is its table (vocab, units), in_size 1, the code),
    #                           "merge" (Add, Subtract, Average, Multiply, Maximum, Minimum or Concatenate over features of two tensors)
    name: str
    in_size: int
    units: int                # output features
    act: str = "linear"       # activation (LSTM/GRU: the cell's; Dense: its activation)
    gate_act: str = "sigmoid"  # LSTM/GRU recurrent_activation
    reset_after: bool = True
    has_weights: bool = True
    w: np.ndarray = None      # (rows, in_size): int8 (int8, int8-weights) or float32
    u: np.ndarray = None      # (rows, units) recurrent
    sw: np.ndarray = field(default_factory=lambda: _EMPTY_F.copy())  # int8-weights: per-row scales of w, u (float32)
    su: np.ndarray = field(default_factory=lambda: _EMPTY_F.copy())
    bx: np.ndarray = None     # (rows,) int32 (int8) or float32
    bh: np.ndarray = None
    mx: np.ndarray = field(default_factory=lambda: _EMPTY_I.copy())  # int8: per-row multipliers (x part, h part)
    nx: np.ndarray = field(default_factory=lambda: _EMPTY_I.copy())
    mh: np.ndarray = field(default_factory=lambda: _EMPTY_I.copy())
    nh: np.ndarray = field(default_factory=lambda: _EMPTY_I.copy())
    lut_act: np.ndarray = field(default_factory=lambda: _EMPTY_T.copy())
    lut_gate: np.ndarray = field(default_factory=lambda: _EMPTY_T.copy())
    exp_table: np.ndarray = field(default_factory=lambda: _EMPTY_I.copy())
    mode: int = MODE_AFFINE   # Dense int8 output stage
    relu: bool = False
    use_table: bool = False   # SimpleRNN int8: activation through lut_act
    cell_shift: int = 0       # LSTM int8: c has scale 2^-cell_shift
    mq: int = 0               # GRU int8: h -> Q0.15
    nq: int = 1
    mo: int = 0               # int8 output requantization
    no: int = 1
    masked: bool = False      # recurrent: reads the Masking layer's mask
    zero_output: bool = False  # recurrent: a masked step outputs zeros (else the previous output)
    mask_q: int = 0           # Masking: the int8 of mask_value (int8 scheme)
    mask_f: float = 0.0       # Masking: mask_value (float schemes)
    taps: int = 1             # Conv1D: kernel_size; windowed pooling: pool_size
    dilation: int = 1         # Conv1D: dilation_rate (pooling: 1)
    groups: int = 1           # Conv1D: w is (units, taps * in_size / groups), tap-major per filter
    strides: int = 1          # Conv1D / pooling
    need: int = 0             # windowed: inputs before the first output (span - 1 valid, 0 causal)
    pool: str = ""            # pooling: "max", "avg", "global_max", "global_avg"
    mask_zero: bool = False   # Embedding: code 0 masks the step for the recurrent layers that read the mask
    # A graph that forks and merges: the layers this one reads, by index in the layer list (-1: the model's
    # input); empty: the layer before it (a chain). A merge reads two: in_size features of the first,
    # in_size2 of the second. int8 merge: mx, nx rescale each input (see edgernn/quantize/merge.py).
    sources: tuple = ()
    merge: str = ""           # a key of edgernn.quantize.merge.MERGE_IDS ("add", ..., "concat")
    in_size2: int = 0
    zp_in2: int = 0
    zp_in: int = 0
    zp_a: int = 0             # Dense / Conv1D int8: zero point of the affine result (logits for softmax)
    zp_out: int = 0
    s_in: float = 1.0
    s_out: float = 1.0

    @property
    def rows(self) -> int:
        """Weight rows: gates * units for a recurrent layer, units for a Dense."""
        return {"lstm": 4, "gru": 3, "simple": 1}.get(self.kind, 1) * self.units

    @property
    def recurrent(self) -> bool:
        return self.kind in ("lstm", "gru", "simple")

    @property
    def windowed(self) -> bool:
        """Conv1D or pooling: keeps a window of past inputs, emits only on some steps."""
        return self.kind in ("conv", "pool")

    @property
    def vocab(self) -> int:
        """Embedding: the number of codes (rows of its table); 0 for the other kinds."""
        return self.w.shape[0] if self.kind == "embed" else 0

    @property
    def span(self) -> int:
        """Timesteps one output sees: ``(taps - 1) * dilation + 1``."""
        return (self.taps - 1) * self.dilation + 1

    @property
    def ring_size(self) -> int:
        """Values of the ring of past inputs (``span - 1`` rows of ``in_size``), or of a global
        pooling's running max / sum (``in_size``)."""
        return self.in_size if self.pool.startswith("global") else (self.span - 1) * self.in_size

    @property
    def state_names(self) -> tuple:
        """The state vectors of one stream: LSTM h, c; GRU, SimpleRNN h; Conv1D and pooling their
        ring and counters (see :mod:`edgernn.quantize.window`); Dense none."""
        return {"lstm": ("h", "c"), "gru": ("h",), "simple": ("h",), "conv": ("ring", "counters"),
                "pool": ("ring", "counters")}.get(self.kind, ())


@dataclass(eq=False)
class QSpec:
    scheme: str
    features: int
    outputs: int
    output_rank: int           # 3: (batch, T, outputs) from predict; 2: the last step only
    layers: list
    s_in: float = 1.0
    zp_in: int = 0
    s_out: float = 1.0
    zp_out: int = 0
    source: dict = field(default_factory=dict)
    # A Standardize first, folded into the input (all schemes): the input is (x - in_offset) / in_scale
    # per feature, then (int8) rounded and shifted by zp_in; empty: x / s_in (int8), x (float).
    in_offset: np.ndarray = field(default_factory=lambda: _EMPTY_F.copy())
    in_scale: np.ndarray = field(default_factory=lambda: _EMPTY_F.copy())

    @property
    def vocab(self) -> int:
        """A model of integer codes (an Embedding first; ``features`` is 1, the code): its vocabulary;
        0 for a model of float inputs."""
        return self.layers[0].vocab if self.layers else 0

    @property
    def windowed(self) -> bool:
        """Whether a step may not emit (a Conv1D or pooling in the chain)."""
        return any(layer.windowed for layer in self.layers)


def _graph_problems(spec: ir.ModelSpec) -> list[str]:
    """Why a streamable ``spec`` is not a graph the firmware steps (one input; branches joined by a
    two-input merge or Concatenate over features), one line per layer; empty if fine."""
    if len(spec.inputs) > 1:
        return [f"the model has {len(spec.inputs)} inputs, which the float32 stream steps but the firmware "
                "runtime does not yet"]
    problems = []
    for node in spec.nodes:
        op, where = node.op, f"layer {node.op.name!r}"
        if isinstance(op, ir.Merge) and op.mode not in MERGE_IDS:
            problems.append(f"{where} is Merge mode {op.mode!r}, which the firmware runtime does not have")
        elif isinstance(op, ir.Concatenate) and op.axis != "features":
            problems.append(f"{where} concatenates over {op.axis}: the firmware runtime joins over features only")
    first = spec.nodes[0] if spec.nodes else None
    if first is not None and isinstance(first.op, ir.Standardize):  # folded into the input: read once
        readers = [n.op.name for n in spec.nodes if first.outputs[0] in n.inputs]
        if len(readers) > 1:
            problems.append(f"layer {first.op.name!r} (a Normalization first, folded into the input) is read by "
                            f"{len(readers)} layers ({', '.join(readers)}): the firmware runtime takes one")
    return problems


def supported_problems(spec: ir.ModelSpec, scheme: str) -> list[str]:
    """Everything in ``spec`` the exported runtime cannot run in ``scheme`` (empty if all is fine)."""
    problems = []
    if scheme not in SCHEMES:
        return [f"unknown scheme {scheme!r} (one of {', '.join(SCHEMES)})"]
    # Streamable in float, not in the firmware runtime yet: named first, whatever else is wrong.
    kinds = {ir.LayerNorm: "LayerNorm", ir.Pad1D: "Pad1D (ZeroPadding1D, Cropping1D)",
             ir.UpSample1D: "UpSample1D (UpSampling1D)"}
    problems = [f"layer {node.op.name!r} is {kinds[type(node.op)]}: the firmware runtime has no version "
                "of it yet (predict and stream run it in float32)" for node in spec.nodes if type(node.op) in kinds]
    if problems:
        return problems
    spec = firmware_form(spec)
    problems = [why for node in spec.nodes if isinstance(node.op, ir.Flatten) and spec.tensor_shape(node.inputs[0])[0] == 3
                for why in [flatten_problem(spec, node)] if why]
    if problems:
        return problems
    why = streamable_problem(spec)
    if why is not None:
        return [f"the firmware runtime steps the model one timestep at a time, and {why}"]
    problems = _graph_problems(spec)
    if problems:
        return problems
    integer = scheme == "int8"
    elementwise = tuple(a for a in ACT_IDS if a != "softmax")
    first = spec.nodes[0].op if spec.nodes else None
    masking_first = isinstance(first, ir.Masking) or (isinstance(first, ir.Embedding) and first.mask_zero)
    first_mask = spec.nodes[0].outputs[1] if masking_first else None
    width = spec.inputs[0].features
    for index, node in enumerate(spec.nodes):
        op = node.op
        where = f"layer {op.name!r}"
        if index:  # the features of what the node reads (a graph: not always the node before)
            width = spec.tensor_shape(node.inputs[0])[1]
        if isinstance(op, ir.Masking):
            if index:
                problems.append(f"{where}: Masking is supported as the first layer only (on the model input)")
            continue
        if isinstance(op, ir.Embedding):
            if index:
                problems.append(f"{where}: Embedding is supported as the first layer only (on the model's codes)")
            if op.vocab > MAX_VOCAB:
                problems.append(f"{where}: {op.vocab} codes; the runtime takes at most {MAX_VOCAB} (a code passed as "
                                "a float32 is exact up to 2^24)")
            if op.output_size > MAX_SIZE:
                problems.append(f"{where}: {op.output_size} features; the runtime takes at most {MAX_SIZE}")
            width = op.output_size
            continue
        if node.mask and (node.mask != first_mask or not isinstance(op, ir.Recurrent)):
            problems.append(f"{where}: a mask that is not the first layer's Masking (or Embedding mask_zero) "
                            "is not supported")
        sizes = [getattr(op, "units", 0), getattr(op, "input_size", 0)]
        if isinstance(op, ir.Dense):
            sizes = list(op.kernel.shape)
        elif isinstance(op, ir.Conv1D):  # one output sums taps * C / groups products
            sizes = [op.kernel.shape[0] * op.kernel.shape[1], op.kernel.shape[2], width]
        elif isinstance(op, ir.Pooling1D) and not op.global_pool:
            sizes = [op.pool_size, width]
        if max(sizes) > MAX_SIZE:
            problems.append(f"{where}: {max(sizes)} features or units; the runtime takes at most {MAX_SIZE} "
                            "(int32 accumulators)")
        if isinstance(op, ir.Recurrent):
            for option, present in (("peephole", op.peephole is not None), ("projection (proj_size)", op.projection is not None),
                                    ("cell_clip", op.cell_clip is not None)):
                if present:
                    problems.append(f"{where}: LSTM option {option} is not supported by the firmware export")
            if op.cell == "simple":
                allowed = tuple(TABLE_FUNCTIONS) + ("linear", "relu") if integer else elementwise
                if op.activation not in allowed:
                    problems.append(f"{where}: activation {op.activation!r} is not supported in {scheme} "
                                    f"(supported: {', '.join(allowed)})")
            else:
                gates = UNIT_INTERVAL if integer else elementwise
                acts = tuple(TABLE_FUNCTIONS) if integer else elementwise
                if op.recurrent_activation not in gates:
                    problems.append(f"{where}: recurrent_activation {op.recurrent_activation!r} is not supported in "
                                    f"{scheme} (supported: {', '.join(gates)})")
                if op.activation not in acts:
                    problems.append(f"{where}: activation {op.activation!r} is not supported in {scheme} "
                                    f"(supported: {', '.join(acts)})")
        elif isinstance(op, (ir.Dense, ir.Activation)):
            if integer and op.activation == "softmax" and (sizes[-1] or width) > 2047:
                problems.append(f"{where}: int8 softmax over more than 2047 outputs (its int32 sum would overflow)")
            allowed = tuple(TABLE_FUNCTIONS) + ("linear", "relu", "softmax") if integer else tuple(ACT_IDS)
            if op.activation not in allowed:
                problems.append(f"{where}: activation {op.activation!r} is not supported in {scheme} "
                                f"(supported: {', '.join(allowed)})")
        elif isinstance(op, ir.Conv1D):
            allowed = tuple(TABLE_FUNCTIONS) + ("linear", "relu") if integer else elementwise
            if op.activation not in allowed:
                problems.append(f"{where}: Conv1D activation {op.activation!r} is not supported in {scheme} "
                                f"(supported: {', '.join(allowed)})")
        elif not isinstance(op, (ir.Recurrent, ir.Pooling1D, ir.Affine, ir.Standardize, ir.Flatten, ir.Merge,
                                 ir.Concatenate)):
            problems.append(f"{where}: {type(op).__name__} is not supported by the firmware export")
    return problems


def _rows(kernel: np.ndarray) -> np.ndarray:
    """IR kernel (in, rows) -> row-major (rows, in) float64."""
    return np.ascontiguousarray(np.asarray(kernel, dtype=np.float64).T)


def _fold_bias(bias: np.ndarray, scale_in: float, row_scales: np.ndarray, zero_point: int, q: np.ndarray) -> np.ndarray:
    folded = np.round(bias / (scale_in * row_scales)) - zero_point * q.astype(np.int64).sum(axis=1)
    return np.clip(folded, -BIAS_LIMIT, BIAS_LIMIT).astype(np.int32)


def _float_weights(layer: QLayer, scheme: str, w, u, bx, bh) -> None:
    """Fill the weights of a float32 or int8-weights layer."""
    if scheme == "float32":
        layer.w = w.astype(np.float32)
        layer.u = u.astype(np.float32) if u is not None else np.zeros((0, 0), np.float32)
    else:
        layer.w, sw = fx.symmetric_rows(w)
        layer.sw = sw.astype(np.float32)
        if u is not None:
            layer.u, su = fx.symmetric_rows(u)
            layer.su = su.astype(np.float32)
        else:
            layer.u = np.zeros((0, 0), np.int8)
    layer.bx = bx.astype(np.float32)
    layer.bh = bh.astype(np.float32)


def _recurrent(op: ir.Recurrent, scheme: str, s_x: float, zp_x: int, ranges: Ranges, masked: bool) -> QLayer:
    rows, units = op.gates * op.units, op.units
    w, u = _rows(op.kernel), _rows(op.recurrent_kernel)
    b = np.zeros(rows) if op.bias is None else op.bias.astype(np.float64)
    b_h = np.zeros(rows) if op.recurrent_bias is None else op.recurrent_bias.astype(np.float64)
    layer = QLayer(op.cell, op.name, op.input_size, units, act=op.activation, gate_act=op.recurrent_activation,
                   reset_after=bool(op.reset_after) if op.cell == "gru" else True, masked=masked,
                   zero_output=bool(op.zero_output_for_mask))
    if scheme != "int8":
        _float_weights(layer, scheme, w, u, b, b_h)
        return layer
    s_h, zp_h = fx.asymmetric(ranges.low[op.name], ranges.high[op.name])
    layer.w, sw = fx.symmetric_rows(w)
    layer.u, su = fx.symmetric_rows(u)
    layer.bx = _fold_bias(b, s_x, sw, zp_x, layer.w)
    layer.bh = _fold_bias(b_h, s_h, su, zp_h, layer.u)
    if op.cell == "gru" and not op.reset_after:
        layer.bh[2 * units:] = 0  # the candidate's product takes r * (h - zp_h): no bias, no zero point
    layer.mx, layer.nx = fx.multipliers(s_x * sw * fx.Q12)
    layer.mh, layer.nh = fx.multipliers(s_h * su * fx.Q12)
    layer.lut_act = fx.table(TABLE_FUNCTIONS[op.activation]) if op.activation in TABLE_FUNCTIONS else _EMPTY_T
    if op.cell == "lstm":
        layer.lut_gate = fx.table(TABLE_FUNCTIONS[op.recurrent_activation])
        cell_max = ranges.cell_max.get(op.name, 0.0) * 1.1
        bits = 0 if cell_max <= 1.0 else min(15, math.ceil(math.log2(cell_max)))
        layer.cell_shift = 15 - bits
        layer.mo, layer.no = fx.multiplier(2.0 ** -30 / s_h)
    elif op.cell == "gru":
        layer.lut_gate = fx.table(TABLE_FUNCTIONS[op.recurrent_activation])
        layer.mq, layer.nq = fx.multiplier(s_h * fx.Q15)
        layer.mo, layer.no = fx.multiplier(2.0 ** -30 / s_h)
    else:
        layer.use_table = op.activation in TABLE_FUNCTIONS
        layer.relu = op.activation == "relu"
        layer.mo, layer.no = fx.multiplier((1.0 / fx.Q15 if layer.use_table else 1.0 / fx.Q12) / s_h)
    layer.s_in, layer.zp_in, layer.s_out, layer.zp_out = s_x, zp_x, s_h, zp_h
    return layer


def _dense(op, scheme: str, features: int, s_x: float, zp_x: int, ranges: Ranges) -> QLayer:
    weighted = isinstance(op, ir.Dense)
    units = op.output_size if weighted else features
    layer = QLayer("dense", op.name, features, units, act=op.activation, has_weights=weighted)
    if weighted:
        w = _rows(op.kernel)
        b = np.zeros(units) if op.bias is None else op.bias.astype(np.float64)
    if scheme != "int8":
        if weighted:
            _float_weights(layer, scheme, w, None, b, np.zeros(0))
        else:
            layer.w, layer.u = np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
            layer.bx, layer.bh = np.zeros(0, np.float32), np.zeros(0, np.float32)
        return layer
    if weighted:
        layer.w, sw = fx.symmetric_rows(w)
        layer.bx = _fold_bias(b, s_x, sw, zp_x, layer.w)
    else:
        layer.w, sw = np.zeros((0, 0), np.int8), np.ones(units)
        layer.bx = np.zeros(0, np.int32)
    layer.u, layer.bh = np.zeros((0, 0), np.int8), np.zeros(0, np.int32)
    s_y, zp_y = _output_stage(layer, op.activation, op.name, s_x, sw, ranges)
    layer.s_in, layer.zp_in, layer.s_out, layer.zp_out = s_x, zp_x, s_y, zp_y
    return layer


def _output_stage(layer: QLayer, act: str, name: str, s_x: float, sw: np.ndarray, ranges: Ranges) -> tuple[float, int]:
    """The int8 output stage of a Dense or Conv1D (``ernn_output_q``): mode, multipliers, tables;
    returns the output's ``(scale, zero point)``. ``sw``: the rows' weight scales."""
    if act in TABLE_FUNCTIONS:
        layer.mode = MODE_TABLE
        layer.lut_act = fx.table(TABLE_FUNCTIONS[act])
        s_y, zp_y = (1.0 / 256.0, -128) if act in UNIT_INTERVAL else (1.0 / 128.0, 0)
        layer.mx, layer.nx = fx.multipliers(s_x * sw * fx.Q12)
        layer.mo, layer.no = fx.multiplier(1.0 / fx.Q15 / s_y)
        layer.zp_a = zp_y
    elif act == "softmax":
        layer.mode = MODE_SOFTMAX
        s_l, zp_l = fx.asymmetric(ranges.pre_low[name], ranges.pre_high[name])
        layer.mx, layer.nx = fx.multipliers(s_x * sw / s_l)
        layer.exp_table = np.round(np.exp(-np.arange(256) * s_l) * (1 << 20)).astype(np.int32)
        s_y, zp_y, layer.zp_a = 1.0 / 256.0, -128, zp_l
    else:
        layer.mode = MODE_AFFINE
        layer.relu = act == "relu"
        s_y, zp_y = fx.asymmetric(ranges.low[name], ranges.high[name])
        layer.mx, layer.nx = fx.multipliers(s_x * sw / s_y)
        layer.zp_a = zp_y
    return s_y, zp_y


def per_channel_conv(op) -> ir.Conv1D:
    """An Affine (``x * scale + offset``) or a Standardize (``(x - mean) / std``, as ``x (1/std) - mean/std``)
    as the Conv1D the firmware runs it with: kernel size 1, one group per channel."""
    if isinstance(op, ir.Standardize):
        scale, offset = 1.0 / op.std.astype(np.float64), -op.mean.astype(np.float64) / op.std.astype(np.float64)
    else:
        scale, offset = op.scale, op.offset
    return ir.Conv1D(op.name, kernel=ir.as_weight(np.asarray(scale).reshape(1, 1, -1)), bias=ir.as_weight(offset),
                     groups=len(scale))


def _conv(op: ir.Conv1D, scheme: str, s_x: float, zp_x: int, ranges: Ranges) -> QLayer:
    """A Conv1D (causal or valid): weights per filter row, ``w[f, j * C/G + c] = kernel[j, c, f]``."""
    taps, per_group, filters = op.kernel.shape
    w = np.ascontiguousarray(op.kernel.astype(np.float64).transpose(2, 0, 1).reshape(filters, taps * per_group))
    b = np.zeros(filters) if op.bias is None else op.bias.astype(np.float64)
    layer = QLayer("conv", op.name, per_group * op.groups, filters, act=op.activation, taps=taps,
                   dilation=op.dilation_rate, groups=op.groups, strides=op.strides,
                   need=op.span - 1 if op.padding == "valid" else 0)
    if scheme != "int8":
        _float_weights(layer, scheme, w, None, b, np.zeros(0))
        return layer
    layer.w, sw = fx.symmetric_rows(w)
    # causal padding is real zeros, whose int8 is zp_x: the ring starts full of zp_x, and the folded
    # bias removes zp_x sum w from every output, padding or not
    layer.bx = _fold_bias(b, s_x, sw, zp_x, layer.w)
    layer.u, layer.bh = np.zeros((0, 0), np.int8), np.zeros(0, np.int32)
    s_y, zp_y = _output_stage(layer, op.activation, op.name, s_x, sw, ranges)
    layer.s_in, layer.zp_in, layer.s_out, layer.zp_out = s_x, zp_x, s_y, zp_y
    return layer


def _pool(op: ir.Pooling1D, scheme: str, width: int, s_x: float, zp_x: int) -> QLayer:
    """Max or average pooling (valid) or global: the output keeps the input's quantization."""
    pool = ("global_" if op.global_pool else "") + ("max" if op.kind == "max" else "avg")
    empty = np.zeros((0, 0), np.int8 if scheme == "int8" else np.float32)
    layer = QLayer("pool", op.name, width, width, taps=1 if op.global_pool else op.pool_size,
                   strides=1 if op.global_pool else op.strides, need=0 if op.global_pool else op.pool_size - 1,
                   pool=pool, has_weights=False, w=empty, u=empty)
    layer.bx = layer.bh = np.zeros(0, np.int32 if scheme == "int8" else np.float32)
    layer.s_in, layer.zp_in, layer.s_out, layer.zp_out = s_x, zp_x, s_x, zp_x
    return layer


def _embedding(op: ir.Embedding, scheme: str, ranges: Ranges) -> QLayer:
    """An Embedding (first): its table, one row per code. int8: every value quantized with the output
    tensor's (scale, zero point), calibrated on the whole table (any code may come); int8-weights:
    int8 per row (code) with its scale; float32: the table."""
    table = op.embeddings.astype(np.float64)
    layer = QLayer("embed", op.name, 1, op.output_size, mask_zero=op.mask_zero)
    layer.u = np.zeros((0, 0), np.int8 if scheme != "float32" else np.float32)
    if scheme != "int8":
        _float_weights(layer, scheme, table, None, np.zeros(0), np.zeros(0))
        return layer
    s_y, zp_y = fx.asymmetric(ranges.low[op.name], ranges.high[op.name])
    layer.w = fx.quantize_input(table.astype(np.float32), s_y, zp_y, _EMPTY_F, _EMPTY_F)
    layer.bx, layer.bh = np.zeros(0, np.int32), np.zeros(0, np.int32)
    layer.s_out, layer.zp_out = s_y, zp_y
    return layer


def _merge(op, scheme: str, inputs: list, ranges: Ranges) -> QLayer:
    """A two-input merge or Concatenate; ``inputs``: per input (layer, scale, zero
    point, width) as :func:`build` tracks them. int8: the multipliers of edgernn/quantize/merge.py."""
    (_, s_1, zp_1, width_1), (_, s_2, zp_2, width_2) = inputs
    mode = op.mode if isinstance(op, ir.Merge) else "concat"
    units = width_1 + width_2 if mode == "concat" else width_1
    layer = QLayer("merge", op.name, width_1, units, merge=mode, in_size2=width_2, has_weights=False)
    empty = np.zeros((0, 0), np.int8 if scheme == "int8" else np.float32)
    layer.w, layer.u = empty, empty
    layer.bx = layer.bh = np.zeros(0, np.int32 if scheme == "int8" else np.float32)
    if scheme != "int8":
        return layer
    s_y, zp_y = fx.asymmetric(ranges.low[op.name], ranges.high[op.name])
    if MERGE_IDS[mode] in RESCALED:  # each input at the output's scale
        layer.mx, layer.nx = fx.multipliers([s_1 / s_y, s_2 / s_y])
    elif mode == "multiply":
        layer.mx, layer.nx = np.zeros(2, np.int32), np.zeros(2, np.int32)  # unread: the C layer check wants them
        layer.mo, layer.no = fx.multiplier(s_1 * s_2 / s_y)
    else:
        top = 2.0 * max(s_1, s_2)
        layer.mx, layer.nx = fx.multipliers([s_1 / top, s_2 / top])
        layer.mo, layer.no = fx.multiplier(top / (2.0 ** HEADROOM * s_y) / (2.0 if mode == "average" else 1.0))
    layer.s_in, layer.zp_in, layer.zp_in2, layer.s_out, layer.zp_out = s_1, zp_1, zp_2, s_y, zp_y
    return layer


def build(spec: ir.ModelSpec, scheme: str, ranges: Ranges | None) -> QSpec:
    """The integer IR of ``spec`` (checked with :func:`supported_problems` first)."""
    problems = supported_problems(spec, scheme)
    if problems:
        raise UnsupportedModel(f"cannot export this model in scheme {scheme!r}", problems)
    rank, outputs = spec.tensor_shape(spec.outputs[0])  # a Flatten's window emits what predict's last row is
    spec = firmware_form(spec)
    codes = isinstance(spec.nodes[0].op, ir.Embedding)
    features = 1 if codes else spec.inputs[0].features  # a model of codes steps one code per stream
    integer = scheme == "int8"
    if codes:
        s_x, zp_x = 1.0, 0  # the code is no quantized value
    elif integer:
        s_x, zp_x = fx.asymmetric(ranges.low[""], ranges.high[""])
    else:
        s_x, zp_x = 1.0, 0
    in_offset = in_scale = np.zeros(0, np.float32)
    layers = []
    s_in, zp_in = s_x, zp_x
    width = features
    # per tensor: (index of the layer that makes it, -1: the model's input; its scale, zero point, width)
    made = {spec.inputs[0].name: (-1, s_x, zp_x, width)}
    for index, node in enumerate(spec.nodes):
        op = node.op
        source, s_x, zp_x, width = made[node.inputs[0]]
        if isinstance(op, ir.Flatten):  # of a vector: nothing to do
            made[node.outputs[0]] = made[node.inputs[0]]
            continue
        if isinstance(op, ir.Standardize) and index == 0:
            # folded into the input: (x - mean) / (std s_z) per feature, then rounded (int8);
            # (x - mean) / std (float), computed as the float model does
            if integer:
                s_x, zp_x = fx.asymmetric(ranges.low[op.name], ranges.high[op.name])
            in_offset = op.mean.astype(np.float32)
            in_scale = (op.std.astype(np.float64) * (s_x if integer else 1.0)).astype(np.float32)
            s_in, zp_in = s_x, zp_x
            made[node.outputs[0]] = (-1, s_x, zp_x, width)
            continue
        if isinstance(op, ir.MULTI_INPUT_OPS):
            layer = _merge(op, scheme, [made[name] for name in node.inputs], ranges)
        elif isinstance(op, ir.Embedding):
            layer = _embedding(op, scheme, ranges)
        elif isinstance(op, ir.Recurrent):
            layer = _recurrent(op, scheme, s_x, zp_x, ranges, node.mask is not None)
        elif isinstance(op, ir.Masking):
            layer = QLayer("mask", op.name, width, width, has_weights=False, s_in=s_x, zp_in=zp_x, s_out=s_x, zp_out=zp_x)
            if integer:
                layer.mask_q = int(fx.quantize_input(np.float32(op.mask_value), s_x, zp_x))
            else:
                layer.mask_f = float(np.float32(op.mask_value))
        elif isinstance(op, (ir.Conv1D, ir.Affine, ir.Standardize)):
            layer = _conv(op if isinstance(op, ir.Conv1D) else per_channel_conv(op), scheme, s_x, zp_x, ranges)
        elif isinstance(op, ir.Pooling1D):
            layer = _pool(op, scheme, width, s_x, zp_x)
        else:
            layer = _dense(op, scheme, width, s_x, zp_x, ranges)
        sources = tuple(made[name][0] for name in node.inputs)
        layer.sources = () if sources == (len(layers) - 1,) else sources  # () : the layer before (a chain)
        layers.append(layer)
        made[node.outputs[0]] = (len(layers) - 1, layer.s_out, layer.zp_out, layer.units)
    _, s_x, zp_x, _ = made[spec.outputs[0]]
    return QSpec(scheme, features, outputs, rank, layers, s_in, zp_in, s_x if integer else 1.0,
                 zp_x if integer else 0, dict(spec.source), in_offset, in_scale)
