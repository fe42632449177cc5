"""Calibration: run the float model (the float64 reference equations) over representative data and
record the ranges the int8 scheme needs.

Recorded per node (a graph's branches are kept until their merge reads them): the range of its output (every row a stream emits: every timestep, or a
Conv1D's and a windowed pooling's rows of ``predict``, a global pooling's running max or mean
after every step), and for an LSTM the largest |c| (the cell state's power-of-two scale), for a Dense the
range of its pre-activation (softmax logits). The model input's range comes first. Gate
pre-activations need no calibration: they are held in Q3.12, whose range [-8, 8) covers every
value where sigmoid and tanh are not already flat to within 4e-4.
"""

from __future__ import annotations

import numpy as np

from .. import ir, reference
from ..errors import InvalidInput
from ..graph import check_codes, merge


class Ranges:
    """min / max of every tensor seen, and per-layer extras, keyed by node name ('' = model input)."""

    def __init__(self):
        self.low: dict[str, float] = {}
        self.high: dict[str, float] = {}
        self.cell_max: dict[str, float] = {}
        self.pre_low: dict[str, float] = {}
        self.pre_high: dict[str, float] = {}

    def see(self, key, values, low=None, high=None):
        low = self.low if low is None else low
        high = self.high if high is None else high
        if values.size:
            low[key] = min(low.get(key, np.inf), float(values.min()))
            high[key] = max(high.get(key, -np.inf), float(values.max()))


def float_layers(spec: ir.ModelSpec, x: np.ndarray, ranges: Ranges | None = None) -> list[np.ndarray]:
    """Every node's output over the whole block ``x`` (B, T, F), float64, from zero state
    (every timestep, also for a recurrent layer without return_sequences), recording ranges."""
    current = np.asarray(x, dtype=np.float64)
    if ranges is not None:
        ranges.see("", current)
    outputs = []
    keep = np.ones(current.shape[:2], bool)
    made = {spec.inputs[0].name: current}  # every tensor by name: a branch is read where it merges
    for node in spec.nodes:
        op = node.op
        current = made[node.inputs[0]]
        if isinstance(op, ir.MULTI_INPUT_OPS):  # a merge, or a Concatenate over features
            parts = [made[name] for name in node.inputs]
            current = np.concatenate(parts, axis=-1) if isinstance(op, ir.Concatenate) else merge(op, parts)
        elif isinstance(op, ir.Embedding):  # first, on the codes (B, T) (:func:`as_sequences` checked them)
            codes = current.reshape(current.shape[0], -1).astype(np.intp)
            keep = codes != 0 if op.mask_zero else keep
            current = op.embeddings.astype(np.float64)[codes]
            if ranges is not None:  # the whole table: any code may come, not only the calibration's
                ranges.see(op.name, op.embeddings)
        elif isinstance(op, ir.Masking):
            keep = np.any(current != np.float32(op.mask_value), axis=-1)
            current = current * keep[..., None]
        elif isinstance(op, ir.Recurrent):
            batch, steps, _ = current.shape
            states = tuple(np.zeros((batch, size)) for size in op.state_sizes)
            ys = np.zeros((batch, steps, op.output_size))
            cell_max = 0.0
            for t in range(steps):
                new = reference.cell_step(op, current[:, t], states)
                if node.mask is not None:  # a masked step keeps the state; outputs h or zeros
                    kept = keep[:, t, None]
                    new = tuple(np.where(kept, n, s) for n, s in zip(new, states))
                    ys[:, t] = np.where(kept, new[0], 0.0 if op.zero_output_for_mask else new[0])
                else:
                    ys[:, t] = new[0]
                states = new
                if op.cell == "lstm":
                    cell_max = max(cell_max, float(np.abs(states[1]).max()))
            if ranges is not None:
                ranges.cell_max[op.name] = max(ranges.cell_max.get(op.name, 0.0), cell_max)
            current = ys
        elif isinstance(op, ir.Dense):
            pre = current @ op.kernel.astype(np.float64)
            if op.bias is not None:
                pre = pre + op.bias
            if ranges is not None:
                ranges.see(op.name, pre, ranges.pre_low, ranges.pre_high)
            current = reference.activate(op.activation, pre)
        elif isinstance(op, ir.Activation):
            if ranges is not None:
                ranges.see(op.name, current, ranges.pre_low, ranges.pre_high)
            current = reference.activate(op.activation, current)
        elif isinstance(op, ir.Conv1D):  # the rows a stream emits: predict's on the whole block
            current = reference.conv1d(op, current)
        elif isinstance(op, ir.Pooling1D) and op.global_pool:  # a stream emits the running max / mean
            if op.kind == "max":
                current = np.maximum.accumulate(current, axis=1)
            else:
                current = np.cumsum(current, axis=1) / np.arange(1, current.shape[1] + 1)[:, None]
        elif isinstance(op, ir.Pooling1D):
            current = reference.pool1d(op, current)
        elif isinstance(op, ir.Affine):
            current = reference.affine(op, current)
        elif isinstance(op, ir.Standardize):
            current = reference.standardize(op, current)
        elif not isinstance(op, ir.Flatten):  # (of a vector: nothing to do) the rest is refused earlier
            raise TypeError(type(op).__name__)
        if ranges is not None:
            ranges.see(op.name, current)
        outputs.append(current)
        made[node.outputs[0]] = current
    return outputs


def as_sequences(calibration_x, features: int, embedding: ir.Embedding | None = None) -> np.ndarray:
    """Calibration data as (B, T, features) float64: (B, T, F) as is, (T, F) as one sequence. A model of
    integer codes (``embedding`` its first layer): (B, T) codes, or (T,) one sequence -> (B, T, 1)."""
    if embedding is not None:
        x = np.asarray(calibration_x)
        if x.dtype.kind not in "fiub" or x.ndim not in (1, 2) or x.size == 0:
            raise InvalidInput(f"calibration data of a model of integer codes must be (sequences, T) or (T,) codes "
                               f"with at least one timestep, got shape {x.shape} of {x.dtype}")
        check_codes(embedding, x)
        return x.reshape((1, -1) if x.ndim == 1 else x.shape).astype(np.float64)[..., None]
    try:
        x = np.asarray(calibration_x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"calibration data is not a numeric array: {exc}") from None
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[2] != features or x.shape[0] * x.shape[1] == 0:
        raise InvalidInput(f"calibration data must be (sequences, T, {features}) or (T, {features}) "
                           f"with at least one timestep, got shape {np.shape(calibration_x)}")
    if not np.all(np.isfinite(x)):
        raise InvalidInput("calibration data holds NaN or Inf")
    return x
