"""SimpleRNN kernel, float32: ``h' = φ(x W + b + h U)`` per stream."""

from __future__ import annotations

import numpy as np
from numba import njit

from ._config import JIT
from ._linalg import accumulate, project
from .activations import activate, clipped


@njit(**JIT)
def simple_run(x, kernel, bias, recurrent_kernel, clip, h, out, ys, keep, activation, zero_output, z):
    """Run ``T`` SimpleRNN steps for ``B`` streams; shapes as in :func:`edgernn.kernels.lstm.lstm_run`
    with one gate block: ``kernel`` (F, H), ``h`` (B, H), ``z`` (H,) scratch."""
    steps, batch = x.shape[0], x.shape[1]
    units = recurrent_kernel.shape[0]
    for t in range(steps):
        for s in range(batch):
            if keep[t, s]:
                # Stage 1 -- pre-activation: z = x W + b + h U
                project(z, bias, x[t, s], kernel)
                accumulate(z, h[s], recurrent_kernel)
                # Stage 2 -- h' = φ(z)
                for j in range(units):
                    h[s, j] = activate(activation, clipped(z[j], clip))
                    out[s, j] = h[s, j]
            elif zero_output:
                out[s, :] = np.float32(0.0)
            ys[t, s, :] = out[s, :]
