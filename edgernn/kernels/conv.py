"""Float32 :class:`~edgernn.ir.Conv1D` for ``predict``: plain NumPy over whole sequences (a stream
steps a causal or valid convolution through :mod:`edgernn.kernels.window`, its last ``span - 1``
inputs kept as state).

im2col: the padded input's sliding windows ``(batch, T', span, C)`` taken every ``strides``
steps and every ``dilation_rate``-th tap, then one BLAS product per group with the kernel reshaped
to ``(kernel_size * C / groups, filters / groups)``; then the element-wise activation kernel.
The float64 oracle is :func:`edgernn.reference.conv.conv1d`.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def conv1d(op, x):
    """``(batch, T, C) -> (batch, T', filters)`` in float32."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    batch, steps, _ = x.shape
    left, right = op.padding_of(steps)
    out = op.output_steps(steps)
    y = np.empty((batch, out, op.output_size), dtype=np.float32)
    if out:
        xp = np.pad(x, ((0, 0), (left, right), (0, 0)))
        # (batch, windows, C, span) -> every strides-th window, every dilation_rate-th tap
        windows = sliding_window_view(xp, op.span, axis=1)[:, ::op.strides][:, :out, :, ::op.dilation_rate]
        per_group, per_filter = op.kernel.shape[1], op.output_size // op.groups
        for g in range(op.groups):
            cols = windows[:, :, g * per_group:(g + 1) * per_group]           # (batch, T', C/G, k)
            cols = np.ascontiguousarray(cols.transpose(0, 1, 3, 2)).reshape(batch * out, -1)
            kernel = op.kernel[:, :, g * per_filter:(g + 1) * per_filter].reshape(-1, per_filter)
            y[:, :, g * per_filter:(g + 1) * per_filter] = (cols @ kernel).reshape(batch, out, per_filter)
    if op.bias is not None:
        y += op.bias
    if op.activation != "linear" and y.size:
        # lazy: the element-wise Numba kernel. Not through .recurrent: importing it here, before the
        # package's __getattr__ had bound its Numba names, left ``kernels.dense`` the submodule.
        from ..ir import ACTIVATION_IDS
        from .activations import activation_forward

        rows = y.reshape(-1, y.shape[-1])
        activation_forward(rows, ACTIVATION_IDS[op.activation], rows)
    return y
