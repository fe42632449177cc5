"""The one intermediate representation every importer produces and everything downstream reads.

A model is a small dataflow graph (:class:`ModelSpec`) of nodes (:class:`Node`), each applying one
layer op to named tensors. Chains (Sequential models) are graphs whose nodes each read the previous
node's output; encoder-decoder models add the extra edges (an RNN's final states feeding another
RNN's initial state). Importers do all the framework-specific reshuffling; here there is one layout.

Canonical recurrent layout (Keras's, since Keras's semantics are edgernn's):

* ``kernel``: ``(input_size, gates * units)`` -- the input projection is ``x @ kernel``.
* ``recurrent_kernel``: ``(units, gates * units)`` -- the recurrent projection is ``h @ recurrent_kernel``.
* gate blocks along the last axis, each ``units`` wide:

  - LSTM (4 gates): ``i, f, c, o`` (input, forget, cell candidate, output)
  - GRU (3 gates): ``z, r, h`` (update, reset, candidate)
  - SimpleRNN (1 block)

* ``bias``: ``(gates * units,)``, added to the input projection; ``None`` means no bias.
* ``recurrent_bias``: GRU with ``reset_after=True`` only: ``(3 * units,)``, added to the recurrent
  projection *before* the reset gate multiplies the candidate's part (cuDNN/PyTorch semantics).
* LSTM extras that Keras lacks but ONNX and PyTorch have (None when absent):

  - ``peephole``: ``(3, units)``, rows i, f, o: the gates also see the cell, ``i = σ(z_i + p_i * c)``,
    ``f = σ(z_f + p_f * c)``, ``o = σ(z_o + p_o * c')`` (ONNX ``P``, reordered from i, o, f).
  - ``projection``: ``(units, proj_size)``: ``h = (o * φ(c')) @ projection`` (PyTorch ``proj_size``),
    so h and the output have ``proj_size`` features while c keeps ``units``; the recurrent kernel
    is then ``(proj_size, 4 * units)``.
* ``cell_clip``: ONNX ``clip``: every gate pre-activation is clipped to ``[-cell_clip, cell_clip]``
  before its activation (all cells); None means no clipping.

All weights are float32 numpy arrays; validation of shapes and values happens in ``__post_init__``,
so an inconsistent spec can never be built, whatever importer or file it came from.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np

from .errors import InvalidModelFile

# Element-wise activations the kernels implement. Names are Keras 3's, except
# ``hard_sigmoid_keras2``: Keras 2 defined hard_sigmoid as clip(0.2 x + 0.5, 0, 1), Keras 3 as
# relu6(x + 3) / 6; the importer picks the one of the Keras version that saved the file.
ELEMENTWISE_ACTIVATIONS = (
    "linear",
    "tanh",
    "sigmoid",
    "hard_sigmoid",
    "hard_sigmoid_keras2",
    "relu",
    "relu6",
    "leaky_relu",
    "elu",
    "selu",
    "celu",
    "softplus",
    "softsign",
    "exponential",
    "silu",
    "hard_silu",
    "gelu",
    "mish",
    "log_sigmoid",
    "tanh_shrink",
    "hard_tanh",
)
# Activations over the feature axis (not element-wise): only for Dense and Activation ops.
VECTOR_ACTIVATIONS = ("softmax", "log_softmax")
ACTIVATION_IDS = {name: i for i, name in enumerate(ELEMENTWISE_ACTIVATIONS + VECTOR_ACTIVATIONS)}

CELL_GATES = {"lstm": 4, "gru": 3, "simple": 1}
MERGE_MODES = ("concat", "sum", "ave", "mul")


def _weights(owner: str, what: str, array, shape: tuple[int, ...], problems: list[str]) -> None:
    """Check one weight array: float32, the expected shape, finite values."""
    if not isinstance(array, np.ndarray):
        problems.append(f"{owner}: {what} is not an array")
        return
    if array.dtype != np.float32:
        problems.append(f"{owner}: {what} has dtype {array.dtype}, expected float32")
    if array.shape != shape:
        problems.append(f"{owner}: {what} has shape {array.shape}, expected {shape}")
    elif not np.all(np.isfinite(array)):
        problems.append(f"{owner}: {what} holds NaN or Inf")


def _raise(problems: list[str], owner: str) -> None:
    if problems:
        raise InvalidModelFile(f"inconsistent layer {owner!r}", problems)


def as_weight(array) -> np.ndarray:
    """A C-contiguous float32 copy of ``array``, the only form weights take in the IR."""
    return np.ascontiguousarray(np.asarray(array, dtype=np.float32))


@dataclass(frozen=True, eq=False)
class Recurrent:
    """One recurrent layer (LSTM, GRU or SimpleRNN) over a sequence, in the canonical layout.

    Shapes: input ``(batch, T, input_size)``; output ``(batch, T, output_size)`` when
    ``return_sequences`` else ``(batch, output_size)``; states ``(batch, size)`` for each size in
    ``state_sizes`` (LSTM: h, c; GRU and SimpleRNN: h). ``output_size`` is ``units`` unless an
    LSTM has a projection. The equations per cell are in :mod:`edgernn.reference`.
    """

    name: str
    cell: str
    units: int
    input_size: int
    kernel: np.ndarray
    recurrent_kernel: np.ndarray
    bias: Optional[np.ndarray] = None
    recurrent_bias: Optional[np.ndarray] = None
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"
    reset_after: bool = True
    return_sequences: bool = False
    go_backwards: bool = False
    # A masked timestep keeps the state; its output is the previous output (False) or zeros (True).
    zero_output_for_mask: bool = False
    peephole: Optional[np.ndarray] = None
    projection: Optional[np.ndarray] = None
    cell_clip: Optional[float] = None

    def __post_init__(self):
        problems: list[str] = []
        if self.cell not in CELL_GATES:
            _raise([f"unknown cell {self.cell!r}"], self.name)
        if not (isinstance(self.units, int) and self.units >= 1):
            _raise([f"units must be a positive integer, got {self.units!r}"], self.name)
        if not (isinstance(self.input_size, int) and self.input_size >= 1):
            _raise([f"input_size must be a positive integer, got {self.input_size!r}"], self.name)
        width = self.gates * self.units
        _weights(self.name, "kernel", self.kernel, (self.input_size, width), problems)
        _weights(self.name, "recurrent_kernel", self.recurrent_kernel, (self.output_size, width), problems)
        if (self.peephole is not None or self.projection is not None) and self.cell != "lstm":
            problems.append("peephole and projection exist only for LSTM")
        if self.peephole is not None:
            _weights(self.name, "peephole", self.peephole, (3, self.units), problems)
        if self.projection is not None:
            if not (isinstance(self.projection, np.ndarray) and self.projection.ndim == 2
                    and self.projection.shape[0] == self.units and self.projection.shape[1] >= 1):
                _raise([f"projection must have shape ({self.units}, proj_size)"], self.name)
            _weights(self.name, "projection", self.projection, self.projection.shape, problems)
        if self.cell_clip is not None and not (isinstance(self.cell_clip, (int, float))
                                               and not isinstance(self.cell_clip, bool) and self.cell_clip > 0):
            problems.append(f"cell_clip must be a positive number, got {self.cell_clip!r}")
        if self.bias is not None:
            _weights(self.name, "bias", self.bias, (width,), problems)
        if self.recurrent_bias is not None:
            if not (self.cell == "gru" and self.reset_after):
                problems.append("recurrent_bias exists only for GRU with reset_after=True")
            _weights(self.name, "recurrent_bias", self.recurrent_bias, (width,), problems)
        for what in ("activation", "recurrent_activation"):
            if getattr(self, what) not in ELEMENTWISE_ACTIVATIONS:
                problems.append(f"{what} {getattr(self, what)!r} is not an element-wise activation")
        _raise(problems, self.name)

    @property
    def gates(self) -> int:
        return CELL_GATES[self.cell]

    @property
    def state_count(self) -> int:
        """Number of state vectors: 2 for LSTM (h, c), 1 otherwise."""
        return 2 if self.cell == "lstm" else 1

    @property
    def parameter_count(self) -> int:
        arrays = (self.kernel, self.recurrent_kernel, self.bias, self.recurrent_bias, self.peephole, self.projection)
        return sum(a.size for a in arrays if a is not None)

    @property
    def output_size(self) -> int:
        """Features of the output and of h: ``units``, or ``proj_size`` with a projection."""
        return self.units if self.projection is None else int(self.projection.shape[1])

    @property
    def state_sizes(self) -> tuple[int, ...]:
        """Features of each state: LSTM (h, c), otherwise (h,)."""
        return (self.output_size, self.units) if self.cell == "lstm" else (self.units,)


@dataclass(frozen=True, eq=False)
class Bidirectional:
    """Two recurrent layers over the same input, one reading it backwards, outputs merged.

    ``backward.go_backwards`` is True; with ``return_sequences`` its output is flipped back in time
    before merging, as Keras does. ``merge_mode``: concat (``2 * units`` features), sum, ave, mul.
    """

    name: str
    forward: Recurrent
    backward: Recurrent
    merge_mode: str = "concat"

    def __post_init__(self):
        problems = []
        if self.merge_mode not in MERGE_MODES:
            problems.append(f"merge_mode {self.merge_mode!r} is not one of {MERGE_MODES}")
        f, b = self.forward, self.backward
        if (f.output_size, f.input_size, f.return_sequences) != (b.output_size, b.input_size, b.return_sequences):
            problems.append("forward and backward layers differ in units, input size or return_sequences")
        if f.go_backwards or not b.go_backwards:
            problems.append("the backward layer must read backwards and the forward layer forwards")
        _raise(problems, self.name)

    @property
    def output_size(self) -> int:
        size = self.forward.output_size
        return 2 * size if self.merge_mode == "concat" else size

    @property
    def parameter_count(self) -> int:
        return self.forward.parameter_count + self.backward.parameter_count


@dataclass(frozen=True, eq=False)
class Dense:
    """``y = activation(x @ kernel + bias)`` over the last axis; kernel ``(input_size, units)``."""

    name: str
    kernel: np.ndarray
    bias: Optional[np.ndarray] = None
    activation: str = "linear"

    def __post_init__(self):
        problems: list[str] = []
        if not isinstance(self.kernel, np.ndarray) or self.kernel.ndim != 2:
            _raise(["kernel must be a 2-D array"], self.name)
        _weights(self.name, "kernel", self.kernel, self.kernel.shape, problems)
        if self.bias is not None:
            _weights(self.name, "bias", self.bias, (self.kernel.shape[1],), problems)
        if self.activation not in ACTIVATION_IDS:
            problems.append(f"unknown activation {self.activation!r}")
        _raise(problems, self.name)

    @property
    def input_size(self) -> int:
        return self.kernel.shape[0]

    @property
    def output_size(self) -> int:
        return self.kernel.shape[1]

    @property
    def parameter_count(self) -> int:
        return self.kernel.size + (0 if self.bias is None else self.bias.size)


@dataclass(frozen=True, eq=False)
class Activation:
    """``y = activation(x)``; softmax and log_softmax act over the last axis."""

    name: str
    activation: str

    def __post_init__(self):
        if self.activation not in ACTIVATION_IDS:
            _raise([f"unknown activation {self.activation!r}"], self.name)

    parameter_count = 0


@dataclass(frozen=True, eq=False)
class Masking:
    """Marks timesteps whose features all equal ``mask_value`` as masked and zeroes them (Keras).

    Outputs two tensors: the masked input and the mask ``(batch, T)`` (True = keep).
    """

    name: str
    mask_value: float = 0.0

    parameter_count = 0


@dataclass(frozen=True, eq=False)
class RepeatVector:
    """``(batch, features) -> (batch, n, features)``: one vector repeated n times (one-to-many)."""

    name: str
    n: int

    def __post_init__(self):
        if not (isinstance(self.n, int) and self.n >= 1):
            _raise([f"n must be a positive integer, got {self.n!r}"], self.name)

    parameter_count = 0


CONV_PADDINGS = ("valid", "causal", "same")
POOL_KINDS = ("max", "average")
POOL_PADDINGS = ("valid", "same")


def _positive(owner_problems: list[str], **values) -> None:
    for what, value in values.items():
        if type(value) is not int or value < 1:
            owner_problems.append(f"{what} must be a positive integer, got {value!r}")


def same_padding(steps: int, window: int, strides: int) -> tuple[int, int]:
    """Keras's (TensorFlow's) "same" padding of ``steps`` for a window spanning ``window`` steps:
    ``total = max((ceil(T / s) - 1) * s + window - T, 0)``, the smaller half on the left."""
    total = max((-(-steps // strides) - 1) * strides + window - steps, 0)
    return total // 2, total - total // 2


@dataclass(frozen=True, eq=False)
class Conv1D:
    """A 1-D convolution over time (Keras ``Conv1D``), ``(batch, T, C) -> (batch, T', filters)``.

    ``kernel (kernel_size, C / groups, filters)`` (Keras's layout), ``bias (filters,)`` or None.
    With ``d = dilation_rate``, ``s = strides`` and ``x`` padded per ``padding``:

        y[t, f] = activation(bias[f] + sum_{j, c} x[t*s + j*d, g(f)*C/groups + c] * kernel[j, c, f])

    where ``g(f) = f // (filters / groups)`` is the group of filter f. Padding (zeros) and length:

    * ``valid``: none; ``T' = floor((T - (k-1)*d - 1) / s) + 1``;
    * ``causal``: ``(k-1)*d`` zeros on the left; ``T' = floor((T - 1) / s) + 1``;
    * ``same``: :func:`same_padding` of the span ``(k-1)*d + 1``; ``T' = ceil(T / s)``.

    ``activation`` is element-wise (one of :data:`ELEMENTWISE_ACTIVATIONS`).
    """

    name: str
    kernel: np.ndarray
    bias: Optional[np.ndarray] = None
    strides: int = 1
    padding: str = "valid"
    dilation_rate: int = 1
    groups: int = 1
    activation: str = "linear"

    def __post_init__(self):
        problems: list[str] = []
        if not isinstance(self.kernel, np.ndarray) or self.kernel.ndim != 3 or 0 in self.kernel.shape:
            _raise(["kernel must be a non-empty 3-D array (kernel_size, in / groups, filters)"], self.name)
        _weights(self.name, "kernel", self.kernel, self.kernel.shape, problems)
        _positive(problems, strides=self.strides, dilation_rate=self.dilation_rate, groups=self.groups)
        if not problems and self.kernel.shape[2] % self.groups:
            problems.append(f"filters {self.kernel.shape[2]} are not a multiple of groups {self.groups}")
        if self.bias is not None:
            _weights(self.name, "bias", self.bias, (self.kernel.shape[2],), problems)
        if self.padding not in CONV_PADDINGS:
            problems.append(f"padding must be one of {', '.join(CONV_PADDINGS)}, got {self.padding!r}")
        if self.activation not in ELEMENTWISE_ACTIVATIONS:
            problems.append(f"activation must be element-wise, got {self.activation!r}")
        _raise(problems, self.name)

    @property
    def kernel_size(self) -> int:
        return self.kernel.shape[0]

    @property
    def span(self) -> int:
        """Timesteps one output sees: ``(kernel_size - 1) * dilation_rate + 1``."""
        return (self.kernel_size - 1) * self.dilation_rate + 1

    @property
    def input_size(self) -> int:
        return self.kernel.shape[1] * self.groups

    @property
    def output_size(self) -> int:
        return self.kernel.shape[2]

    def padding_of(self, steps: int) -> tuple[int, int]:
        """Zeros added (left, right) to a sequence of ``steps`` timesteps."""
        if self.padding == "causal":
            return self.span - 1, 0
        if self.padding == "same":
            return same_padding(steps, self.span, self.strides)
        return 0, 0

    def output_steps(self, steps: int) -> int:
        """``T'`` for an input of ``steps`` timesteps (0 when the input is shorter than the span)."""
        left, right = self.padding_of(steps)
        return max((steps + left + right - self.span) // self.strides + 1, 0)

    @property
    def parameter_count(self) -> int:
        return self.kernel.size + (0 if self.bias is None else self.bias.size)


@dataclass(frozen=True, eq=False)
class Pooling1D:
    """Max or average pooling over time (Keras ``MaxPooling1D``, ``AveragePooling1D`` and their
    ``Global*`` forms), features unchanged.

    Windowed (``global_pool`` False), ``(batch, T, F) -> (batch, T', F)``:
    ``y[t] = reduce(x[t*s : t*s + pool_size])`` with ``s = strides``;

    * ``valid``: ``T' = floor((T - pool_size) / s) + 1``;
    * ``same``: :func:`same_padding` of ``pool_size``, ``T' = ceil(T / s)``; the pads are left out of
      the reduction (max ignores them; the average divides by the number of real timesteps in the
      window, as TensorFlow's pooling that Keras calls).

    Global (``global_pool`` True; ``pool_size``, ``strides``, ``padding`` unused),
    ``(batch, T, F) -> (batch, F)``: the max or the mean over all T.
    """

    name: str
    kind: str
    pool_size: int = 1
    strides: int = 1
    padding: str = "valid"
    global_pool: bool = False

    def __post_init__(self):
        problems: list[str] = []
        if self.kind not in POOL_KINDS:
            problems.append(f"kind must be one of {', '.join(POOL_KINDS)}, got {self.kind!r}")
        _positive(problems, pool_size=self.pool_size, strides=self.strides)
        if self.padding not in POOL_PADDINGS:
            problems.append(f"padding must be one of {', '.join(POOL_PADDINGS)}, got {self.padding!r}")
        if type(self.global_pool) is not bool:
            problems.append(f"global_pool must be a bool, got {self.global_pool!r}")
        _raise(problems, self.name)

    def padding_of(self, steps: int) -> tuple[int, int]:
        return same_padding(steps, self.pool_size, self.strides) if self.padding == "same" else (0, 0)

    def output_steps(self, steps: int) -> int:
        left, right = self.padding_of(steps)
        return max((steps + left + right - self.pool_size) // self.strides + 1, 0)

    parameter_count = 0


@dataclass(frozen=True, eq=False)
class Affine:
    """``y = x * scale + offset`` per feature over the last axis; ``scale``, ``offset`` ``(features,)``.

    Keras's BatchNormalization at inference folds into it:
    ``scale = gamma / sqrt(moving_variance + epsilon)``, ``offset = beta - moving_mean * scale``
    (gamma 1 without ``scale=True``, beta 0 without ``center=True``).
    """

    name: str
    scale: np.ndarray
    offset: np.ndarray

    def __post_init__(self):
        problems: list[str] = []
        if not isinstance(self.scale, np.ndarray) or self.scale.ndim != 1 or self.scale.size == 0:
            _raise(["scale must be a non-empty 1-D array"], self.name)
        _weights(self.name, "scale", self.scale, self.scale.shape, problems)
        _weights(self.name, "offset", self.offset, self.scale.shape, problems)
        _raise(problems, self.name)

    @property
    def input_size(self) -> int:
        return self.scale.shape[0]

    output_size = input_size

    @property
    def parameter_count(self) -> int:
        return self.scale.size + self.offset.size



@dataclass(frozen=True, eq=False)
class Flatten:
    """``(batch, steps, F) -> (batch, steps * F)``, timestep-major as Keras's (channels_last)
    ``Flatten``: ``y[:, t * F + f] = x[:, t, f]``. ``steps`` is fixed (the model's input has a fixed
    length); a sequence of another length is refused when the model runs."""

    name: str
    steps: int

    def __post_init__(self):
        problems: list[str] = []
        _positive(problems, steps=self.steps)
        _raise(problems, self.name)

    parameter_count = 0


NORM_KINDS = ("layer", "rms_scaling", "rms")


def _epsilon_problem(value) -> list[str]:
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        return [f"epsilon must be a finite number >= 0, got {value!r}"]
    return []


def _vector(owner: str, what: str, array, size, problems: list[str]) -> Optional[int]:
    """Check an optional per-feature weight: a non-empty 1-D float32 array of ``size`` (any size
    when None) and finite values; returns its size (None when the array is absent)."""
    if array is None:
        return size
    if not isinstance(array, np.ndarray) or array.ndim != 1 or array.size == 0:
        problems.append(f"{what} must be a non-empty 1-D array")
        return size
    _weights(owner, what, array, (array.size if size is None else size,), problems)
    return array.size if size is None else size


@dataclass(frozen=True, eq=False)
class LayerNorm:
    """Normalization over the features of each row (Keras ``LayerNormalization`` over the last axis,
    ``RMSNormalization``), ``(..., F) -> (..., F)``. With ``mean`` and ``var`` over the last axis,
    ``var(x) = mean((x - mean(x))^2)`` (the population variance, as Keras's ``moments``):

    * ``layer``: ``y = (x - mean(x)) / sqrt(var(x) + epsilon) * gamma + beta``;
    * ``rms_scaling`` (Keras 3's deprecated ``LayerNormalization(rms_scaling=True)``, which divides by
      the root of the variance, not of the mean square): ``y = x / sqrt(var(x) + epsilon) * gamma``;
    * ``rms`` (Keras 3's ``RMSNormalization``): ``y = x / sqrt(mean(x^2) + epsilon) * gamma``.

    ``gamma``, ``beta`` ``(F,)`` or None (then 1 and 0); ``beta`` only for ``layer``.
    """

    name: str
    kind: str
    epsilon: float
    gamma: Optional[np.ndarray] = None
    beta: Optional[np.ndarray] = None

    def __post_init__(self):
        problems: list[str] = []
        if self.kind not in NORM_KINDS:
            problems.append(f"kind must be one of {', '.join(NORM_KINDS)}, got {self.kind!r}")
        problems += _epsilon_problem(self.epsilon)
        size = _vector(self.name, "gamma", self.gamma, None, problems)
        _vector(self.name, "beta", self.beta, size, problems)
        if self.beta is not None and self.kind != "layer":
            problems.append(f"beta is only for kind 'layer', not {self.kind!r}")
        _raise(problems, self.name)

    @property
    def input_size(self) -> Optional[int]:
        """F, or None when neither gamma nor beta fixes it (any F then)."""
        array = self.gamma if self.gamma is not None else self.beta
        return None if array is None else array.size

    @property
    def parameter_count(self) -> int:
        return sum(a.size for a in (self.gamma, self.beta) if a is not None)


@dataclass(frozen=True, eq=False)
class Standardize:
    """``y = (x - mean) / std`` per feature over the last axis (Keras's preprocessing
    ``Normalization``, ``std = max(sqrt(variance), 1e-7)``, computed by the importer in float32 as
    Keras does); ``mean``, ``std`` ``(F,)``, ``std > 0``.

    Not an :class:`Affine`: ``x * (1/std) - mean/std`` loses the digits that ``x - mean`` keeps when
    the mean is large against the spread (a sensor's raw counts), so it is computed as written.
    """

    name: str
    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self):
        problems: list[str] = []
        size = _vector(self.name, "mean", self.mean, None, problems)
        _vector(self.name, "std", self.std, size, problems)
        if self.std is None or self.mean is None:
            problems.append("mean and std must be arrays")
        elif not problems and not np.all(self.std > 0):
            problems.append("std must be > 0")
        _raise(problems, self.name)

    @property
    def input_size(self) -> int:
        return self.mean.size

    @property
    def parameter_count(self) -> int:
        return self.mean.size + self.std.size


@dataclass(frozen=True, eq=False)
class Embedding:
    """Integer codes to vectors (Keras ``Embedding``): ``(batch, T)`` codes, read from an
    :class:`Input` of dtype ``int`` (its ``features`` are the T codes of a row), ``->
    (batch, T, dim)``, ``y[b, t] = embeddings[codes[b, t]]``; ``embeddings (vocab, dim)``.
    A code that is not an integer in ``[0, vocab)`` is refused when the model runs.

    With ``mask_zero`` the node makes a second tensor, the mask ``(batch, T)`` (True = keep:
    ``codes != 0``), which recurrent layers downstream honour as a Masking mask (code 0 is then
    padding; its vector is still looked up, as in Keras).
    """

    name: str
    embeddings: np.ndarray
    mask_zero: bool = False

    def __post_init__(self):
        problems: list[str] = []
        if not isinstance(self.embeddings, np.ndarray) or self.embeddings.ndim != 2 or 0 in self.embeddings.shape:
            _raise(["embeddings must be a non-empty 2-D array (vocab, dim)"], self.name)
        _weights(self.name, "embeddings", self.embeddings, self.embeddings.shape, problems)
        if type(self.mask_zero) is not bool:
            problems.append(f"mask_zero must be a bool, got {self.mask_zero!r}")
        _raise(problems, self.name)

    @property
    def vocab(self) -> int:
        return self.embeddings.shape[0]

    @property
    def output_size(self) -> int:
        return self.embeddings.shape[1]

    @property
    def parameter_count(self) -> int:
        return self.embeddings.size


def _signed(problems: list[str], **values) -> None:
    for what, value in values.items():
        if type(value) is not int:
            problems.append(f"{what} must be an integer, got {value!r}")


@dataclass(frozen=True, eq=False)
class Pad1D:
    """``(batch, T, F) -> (batch, T + left + right, F)``: ``left`` zero timesteps added before the
    sequence and ``right`` after (Keras ``ZeroPadding1D``); a negative count removes that many
    timesteps instead (Keras ``Cropping1D``)."""

    name: str
    left: int = 0
    right: int = 0

    def __post_init__(self):
        problems: list[str] = []
        _signed(problems, left=self.left, right=self.right)
        _raise(problems, self.name)

    def output_steps(self, steps: int) -> int:
        return max(steps + self.left + self.right, 0)

    parameter_count = 0


@dataclass(frozen=True, eq=False)
class UpSample1D:
    """``(batch, T, F) -> (batch, T * size, F)``, each timestep repeated ``size`` times (Keras
    ``UpSampling1D``): ``y[:, t * size + i] = x[:, t]``."""

    name: str
    size: int

    def __post_init__(self):
        problems: list[str] = []
        _positive(problems, size=self.size)
        _raise(problems, self.name)

    parameter_count = 0


@dataclass(frozen=True, eq=False)
class Reshape:
    """Each row's values, in order, laid out again as ``(steps, features)`` (Keras ``Reshape`` to a
    sequence): ``(batch, input_steps, C) -> (batch, steps, features)`` with ``input_steps * C =
    steps * features`` (the input's length is fixed; another is refused when the model runs), or
    from a vector ``(batch, C)`` (``input_steps`` 0, ``C = steps * features``)."""

    name: str
    input_steps: int
    steps: int
    features: int

    def __post_init__(self):
        problems: list[str] = []
        _positive(problems, steps=self.steps, features=self.features)
        if type(self.input_steps) is not int or self.input_steps < 0:
            problems.append(f"input_steps must be an integer >= 0, got {self.input_steps!r}")
        _raise(problems, self.name)

    parameter_count = 0


@dataclass(frozen=True, eq=False)
class Permute:
    """``(batch, steps, C) -> (batch, C, steps)``: time and features swapped (Keras ``Permute((2, 1))``);
    ``steps`` is the input's fixed length (another is refused when the model runs)."""

    name: str
    steps: int

    def __post_init__(self):
        problems: list[str] = []
        _positive(problems, steps=self.steps)
        _raise(problems, self.name)

    parameter_count = 0


MERGES = ("add", "subtract", "multiply", "average", "maximum", "minimum")
CONCAT_AXES = ("features", "time")


@dataclass(frozen=True, eq=False)
class Merge:
    """An element-wise merge of two or more tensors of one shape (Keras ``Add``, ``Subtract``,
    ``Multiply``, ``Average``, ``Maximum``, ``Minimum``): ``y = x_1 + ... + x_n``, ``x_1 - x_2``
    (two inputs only), ``x_1 * ... * x_n``, ``(x_1 + ... + x_n) / n``, the element-wise max or min."""

    name: str
    mode: str

    def __post_init__(self):
        if self.mode not in MERGES:
            _raise([f"mode must be one of {', '.join(MERGES)}, got {self.mode!r}"], self.name)

    parameter_count = 0


@dataclass(frozen=True, eq=False)
class Concatenate:
    """Two or more tensors joined (Keras ``Concatenate``): over ``features`` (the last axis; tensors
    of one rank, and of one length when sequences) or over ``time`` (sequences of one feature count,
    ``(batch, T_1 + ... + T_n, F)``)."""

    name: str
    axis: str = "features"

    def __post_init__(self):
        if self.axis not in CONCAT_AXES:
            _raise([f"axis must be one of {', '.join(CONCAT_AXES)}, got {self.axis!r}"], self.name)

    parameter_count = 0


def _merge_shape(op, xs: list[tuple[int, int]], where: str, problems: list[str]) -> tuple[int, int]:
    """The ``(rank, features)`` a Merge or Concatenate makes of its inputs' shapes."""
    ranks = {rank for rank, _ in xs}
    if isinstance(op, Merge):
        if op.mode == "subtract" and len(xs) != 2:
            problems.append(f"{where} (subtract) takes two inputs, gets {len(xs)}")
        if len(set(xs)) != 1:
            problems.append(f"{where} merges tensors of one shape, gets (rank, features) {sorted(set(xs))}")
        return xs[0]
    if len(ranks) != 1 or (op.axis == "time" and ranks != {3}):
        problems.append(f"{where} joins tensors of one rank (sequences over time), gets ranks {sorted(ranks)}")
    if op.axis == "time":
        if len({f for _, f in xs}) != 1:
            problems.append(f"{where} joins sequences of one feature count over time, gets {[f for _, f in xs]}")
        return xs[0]
    return (xs[0][0], sum(f for _, f in xs))


def _infer(node: Node, xs: list[tuple[int, int]], states: list[tuple[int, int]], problems: list[str]) -> list:
    """Shapes ``(rank, features)`` of what ``node`` makes from its inputs' shapes ``xs``; problems appended."""
    op, x = node.op, xs[0]
    rank, features = x
    where = f"node {op.name!r}"
    if isinstance(op, (Merge, Concatenate)):
        return [_merge_shape(op, xs, where, problems)]
    if isinstance(op, (Recurrent, Bidirectional)):
        layer = op.forward if isinstance(op, Bidirectional) else op
        if rank != 3 or features != layer.input_size:
            problems.append(f"{where} takes (batch, T, {layer.input_size}), gets rank {rank} with {features} features")
        expected_states = [] if isinstance(op, Bidirectional) else [(2, size) for size in layer.state_sizes]
        if states and states != expected_states:
            shapes = ", ".join(f"(batch, {size})" for size in layer.state_sizes)
            problems.append(f"{where}: initial_state must be {len(expected_states)} tensors of {shapes}")
        out = (3 if layer.return_sequences else 2, op.output_size)
        extra = len(node.outputs) - 1
        if isinstance(op, Recurrent) and extra == layer.state_count:
            return [out] + expected_states
        return [out]
    if isinstance(op, Dense):
        if features != op.input_size:
            problems.append(f"{where} takes {op.input_size} features, gets {features}")
        return [(rank, op.output_size)]
    if isinstance(op, Activation):
        return [x]
    if isinstance(op, Masking):
        if rank != 3:
            problems.append(f"{where} takes a sequence (batch, T, features)")
        return [x, (3, 0)]
    if isinstance(op, RepeatVector):
        if rank != 2:
            problems.append(f"{where} takes a vector (batch, features)")
        return [(3, features)]
    if isinstance(op, Conv1D):
        if rank != 3 or features != op.input_size:
            problems.append(f"{where} takes (batch, T, {op.input_size}), gets rank {rank} with {features} features")
        return [(3, op.output_size)]
    if isinstance(op, Pooling1D):
        if rank != 3:
            problems.append(f"{where} takes a sequence (batch, T, features)")
        return [(2 if op.global_pool else 3, features)]
    if isinstance(op, Flatten):
        if rank != 3:
            problems.append(f"{where} takes a sequence (batch, {op.steps}, features)")
        return [(2, op.steps * features)]
    if isinstance(op, (Pad1D, UpSample1D, Permute)):
        if rank != 3:
            problems.append(f"{where} takes a sequence (batch, T, features)")
        return [(3, op.steps) if isinstance(op, Permute) else x]
    if isinstance(op, Reshape):
        size = features * (op.input_steps if rank == 3 else 1)
        if (rank == 3) != (op.input_steps > 0) or size != op.steps * op.features:
            problems.append(f"{where} lays out {op.steps} x {op.features} values per row, gets rank {rank} with "
                            f"{features} features (input_steps {op.input_steps})")
        return [(3, op.features)]
    if isinstance(op, Embedding):
        if rank != 2:
            problems.append(f"{where} takes integer codes (batch, T)")
        return [(3, op.output_size)] + ([(3, 0)] if op.mask_zero else [])
    if isinstance(op, (LayerNorm, Standardize)):
        if op.input_size is not None and features != op.input_size:
            problems.append(f"{where} takes {op.input_size} features, gets {features}")
        return [x]
    if isinstance(op, Affine):
        if features != op.input_size:
            problems.append(f"{where} takes {op.input_size} features, gets {features}")
        return [x]
    problems.append(f"{where}: unknown op {type(op).__name__}")
    return []


def _time_of(node: Node, ins: list, made: int, problems: list[str], features: int = 0) -> list:
    """The time axis ``(axis, steps)`` of each of the ``made`` tensors ``node`` makes, from those of
    its data inputs ``ins``; ``(None, None)`` for a tensor without one (rank 2).

    ``axis`` says which timesteps a sequence's rows are: a set of names, the model input's, or a new
    axis made by a node that regroups timesteps (a convolution, a pooling, RepeatVector), named after
    that node; a merge of sequences (which must be of one length) is on all its inputs' axes at once,
    so that a mask on one input's axis applies to it, as Keras carries the mask through a merge.
    A mask is valid only over a tensor that shares its axis. ``steps`` is T when the model's input
    lengths fix it, else None. A node that needs a length it does not get appends a problem.
    """
    op, (axis, steps) = node.op, ins[0]
    none = (None, None)
    if isinstance(op, (Recurrent, Bidirectional)):
        layer = op.forward if isinstance(op, Bidirectional) else op
        return [(axis, steps) if layer.return_sequences else none] + [none] * (made - 1)
    if isinstance(op, (Dense, Activation, Affine, LayerNorm, Standardize)):
        return [(axis, steps)]
    if isinstance(op, Masking):
        return [(axis, steps), (axis, steps)]
    if isinstance(op, Embedding):  # the codes' time axis (an int input's, see sequence_problems)
        return [(axis, steps)] * made
    if isinstance(op, RepeatVector):
        return [(frozenset([op.name]), op.n)]
    if isinstance(op, (Conv1D, Pooling1D)):
        if isinstance(op, Pooling1D) and op.global_pool:
            return [none]
        out = None if steps is None else op.output_steps(steps)
        if steps and not out:
            kind = type(op).__name__
            problems.append(f"layer {op.name!r} ({kind}) makes no timestep from its input's {steps}: too short for it")
        return [(frozenset([op.name]), out)]
    if isinstance(op, (Merge, Concatenate)):
        lengths = [t for a, t in ins if a is not None]
        if isinstance(op, Concatenate) and op.axis == "time":
            return [(frozenset([op.name]), None if None in lengths else sum(lengths))]
        known = sorted({t for t in lengths if t is not None})
        if len(known) > 1:
            problems.append(f"layer {op.name!r} ({type(op).__name__}) joins sequences of {known} timesteps")
        if ins[0][0] is None:
            return [(None, None)]
        return [(frozenset().union(*(a for a, _ in ins)), known[0] if known else None)]
    if isinstance(op, (Pad1D, UpSample1D)):
        out = None if steps is None else (op.output_steps(steps) if isinstance(op, Pad1D) else steps * op.size)
        if steps and not out:
            problems.append(f"layer {op.name!r} (Pad1D) crops all of its input's {steps} timesteps")
        return [(frozenset([op.name]), out)]
    if isinstance(op, (Reshape, Permute)):
        fixed = op.input_steps if isinstance(op, Reshape) else op.steps
        if steps is not None and fixed and steps != fixed:
            problems.append(f"layer {op.name!r} ({type(op).__name__}) takes sequences of {fixed} timesteps here, "
                            f"gets {steps}")
        return [(frozenset([op.name]), op.steps if isinstance(op, Reshape) else features)]
    if isinstance(op, Flatten):
        if steps is not None and steps != op.steps:
            problems.append(f"layer {op.name!r} (Flatten) takes sequences of {op.steps} timesteps here, gets {steps}")
        return [none]
    return [none] * made


def sequence_problems(inputs, nodes, lengths: dict, shapes: dict) -> tuple[dict, list[str]]:
    """The time axis ``(axis, steps)`` of every tensor, from ``lengths`` (input name -> T or None),
    and the problems found: a mask read over a tensor of another time axis (e.g. across a Conv1D,
    where Keras drops it), a node that shrinks a sequence to no timestep, a Flatten of another
    length. :class:`ModelSpec` checks a spec with its inputs' fixed lengths; ``graph.execute``
    checks each call with the lengths it is given. Assumes the graph's shapes are valid."""
    problems: list[str] = []
    time = {i.name: (frozenset([i.name]), lengths.get(i.name)) if i.rank == 3 else (None, None) for i in inputs}
    # (batch, T) codes: T given when the model runs (predict takes any), else the input's own
    time.update({i.name: (frozenset([i.name]), lengths.get(i.name) or i.features) for i in inputs if i.dtype == "int"})
    for node in nodes:
        if node.mask and not (time[node.mask][0] or set()) & (time[node.inputs[0]][0] or set()):
            problems.append(f"node {node.op.name!r} reads mask {node.mask!r} over another time axis than its "
                            "input's (a mask does not cross a layer that regroups timesteps)")
        made = _time_of(node, [time[n] for n in node.inputs], len(node.outputs), problems, shapes[node.inputs[0]][1])
        time.update(zip(node.outputs, made))
    return time, problems


Op = Union[Recurrent, Bidirectional, Dense, Activation, Masking, RepeatVector, Conv1D, Pooling1D, Affine, Flatten,
           Merge, Concatenate, LayerNorm, Standardize, Embedding, Pad1D, UpSample1D, Reshape, Permute]
OP_TYPES = {cls.__name__: cls for cls in (Recurrent, Bidirectional, Dense, Activation, Masking, RepeatVector,
                                          Conv1D, Pooling1D, Affine, Flatten, Merge, Concatenate, LayerNorm, Standardize,
                                          Embedding, Pad1D, UpSample1D, Reshape, Permute)}
MULTI_INPUT_OPS = (Merge, Concatenate)


@dataclass(frozen=True, eq=False)
class Node:
    """One op applied to named tensors.

    ``inputs``: the data input (one name; two or more for :data:`MULTI_INPUT_OPS`). ``mask``: the name of a mask tensor ``(batch, T)`` or
    None. ``initial_state``: names of state tensors (Recurrent only; LSTM h, c). ``outputs``: the
    op's result first, then -- for Recurrent with return_state -- its final states (LSTM h, c),
    and for Masking the mask.
    """

    op: Op
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    mask: Optional[str] = None
    initial_state: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class Input:
    """A model input: ``(batch, timesteps, features)`` (rank 3) or ``(batch, features)`` (rank 2).

    ``timesteps`` is None when any length is accepted. ``dtype`` ``"int"``: integer codes
    ``(batch, T)`` (rank 2) that only :class:`Embedding` nodes read; ``features`` is the T the model
    was converted with (from codes of any length: the length verification uses, 24, or the fewest
    timesteps the layers fit if more),
    which validation uses; ``predict`` takes any T that the layers fit.
    """

    name: str
    features: int
    rank: int = 3
    timesteps: Optional[int] = None
    dtype: str = "float32"


INPUT_DTYPES = ("float32", "int")


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """A whole model: inputs, nodes in an order where every tensor is made before it is read, outputs.

    ``source`` records where it came from: ``{"format": "keras", "file": ..., "framework_version": ...}``.
    """

    inputs: tuple[Input, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    source: dict = field(default_factory=dict)

    def __post_init__(self):
        problems: list[str] = []
        if not self.inputs:
            problems.append("the model has no input")
        shapes = {i.name: (i.rank, i.features) for i in self.inputs}
        codes = {i.name for i in self.inputs if i.dtype == "int"}
        for i in self.inputs:
            if i.dtype not in INPUT_DTYPES or (i.dtype == "int" and i.rank != 2):
                problems.append(f"input {i.name!r}: dtype {i.dtype!r} with rank {i.rank} (float32, or int of rank 2)")
        # Fix: layer names must be unique (as in Keras): a stream's state is keyed by them
        # ("<layer>/h"), and two layers of one name shared one key, so set_state(get_state())
        # silently loaded the second layer's state into both.
        names = [node.op.name for node in self.nodes]
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"two or more layers are named {name!r}")
        for node in self.nodes:
            missing = [n for n in node.inputs + node.initial_state + ((node.mask,) if node.mask else ()) if n not in shapes]
            if missing or not node.inputs:
                problems.append(f"node {node.op.name!r} reads {missing or node.inputs} before it is made")
                break
            if (len(node.inputs) > 1) != isinstance(node.op, MULTI_INPUT_OPS):
                count = "two or more inputs" if isinstance(node.op, MULTI_INPUT_OPS) else "one input"
                problems.append(f"node {node.op.name!r} takes {count}, gets {len(node.inputs)}")
                break
            if node.mask and isinstance(node.op, MULTI_INPUT_OPS):
                problems.append(f"node {node.op.name!r} reads no mask")
            # integer codes go to Embedding nodes only, and an Embedding reads nothing else
            if isinstance(node.op, Embedding) != (node.inputs[0] in codes) or codes.intersection(node.inputs[1:] + node.initial_state):
                problems.append(f"node {node.op.name!r}: integer codes (an int input) are read by Embedding nodes "
                                "only, and an Embedding reads nothing else")
            # Fix: a mask must name a mask (a Masking node's second output, recorded as (3, 0)); naming
            # a data tensor passed validation and failed in predict with a NumPy ValueError.
            if node.mask and shapes[node.mask] != (3, 0):
                problems.append(f"node {node.op.name!r}: mask {node.mask!r} is not a mask made by a Masking node")
            made = _infer(node, [shapes[n] for n in node.inputs], [shapes[n] for n in node.initial_state], problems)
            if len(made) != len(node.outputs):
                problems.append(f"node {node.op.name!r} makes {len(made)} tensors, {len(node.outputs)} named")
                break
            shapes.update(zip(node.outputs, made))
        for name in self.outputs:
            if name not in shapes:
                problems.append(f"output {name!r} is never made")
        if not problems:  # lengths and masks, once every tensor's shape is known
            time, problems = sequence_problems(self.inputs, self.nodes, {i.name: i.timesteps for i in self.inputs}, shapes)
        if problems:
            raise InvalidModelFile("inconsistent model graph", problems)
        object.__setattr__(self, "_shapes", shapes)
        object.__setattr__(self, "_time", time)

    def tensor_shape(self, name: str) -> tuple[int, int]:
        """``(rank, features)`` of a tensor; rank 3 is (batch, T, features), 2 is (batch, features)."""
        return self._shapes[name]

    def sequence_problems(self, lengths: dict) -> tuple[dict, list[str]]:
        """:func:`sequence_problems` of this spec for the input lengths ``lengths`` (name -> T)."""
        return sequence_problems(self.inputs, self.nodes, lengths, self._shapes)

    def tensor_steps(self, name: str) -> Optional[int]:
        """T of a sequence tensor when the model's input lengths fix it, else None."""
        return self._time[name][1]

    @property
    def parameter_count(self) -> int:
        return sum(node.op.parameter_count for node in self.nodes)

    def replace(self, **changes) -> "ModelSpec":
        return dataclasses.replace(self, **changes)
