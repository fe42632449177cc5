"""Float64 reference of :class:`~edgernn.ir.Conv1D`: the sum over kernel taps, written out.

``x (batch, T, C)`` is padded with zeros per ``op.padding_of(T)``; then, for each tap ``j`` of the
kernel, the strided slice ``x[:, j*d : j*d + (T'-1)*s + 1 : s]`` (the input each output sees through
that tap) is multiplied group by group with ``kernel[j]`` and summed:

    y[:, t, f] = activation(bias[f] + sum_j sum_c xp[:, t*s + j*d, g(f)*C/G + c] * kernel[j, c, f])
"""

from __future__ import annotations

import numpy as np

from .activations import activate


def conv1d(op, x):
    """``(batch, T, C) -> (batch, T', filters)`` in float64 (see :class:`~edgernn.ir.Conv1D`)."""
    x = np.asarray(x, dtype=np.float64)
    batch, steps, _ = x.shape
    left, right = op.padding_of(steps)
    xp = np.pad(x, ((0, 0), (left, right), (0, 0)))
    out = op.output_steps(steps)
    groups, per_group = op.groups, op.kernel.shape[1]
    per_filter_group = op.output_size // groups
    kernel = op.kernel.astype(np.float64)
    y = np.zeros((batch, out, op.output_size))
    for j in range(op.kernel_size):
        start = j * op.dilation_rate
        taps = xp[:, start:start + (out - 1) * op.strides + 1:op.strides] if out else xp[:, :0]
        for g in range(groups):
            block = taps[:, :, g * per_group:(g + 1) * per_group]
            filters = slice(g * per_filter_group, (g + 1) * per_filter_group)
            y[:, :, filters] += block @ kernel[j, :, filters]
    if op.bias is not None:
        y = y + op.bias
    return activate(op.activation, y)
