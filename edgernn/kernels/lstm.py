"""LSTM kernel, float32: the equations of :func:`edgernn.reference.lstm.lstm_step`, per stream."""

from __future__ import annotations

import numpy as np
from numba import njit

from ._config import JIT
from ._linalg import accumulate, project
from .activations import activate


@njit(**JIT)
def lstm_run(x, kernel, bias, recurrent_kernel, state, out, ys, keep, activation, recurrent_activation, zero_output, z):
    """Run ``T`` LSTM steps for ``B`` independent streams, updating ``state`` in place.

    Shapes (float32 unless noted): ``x`` (T, B, F) time-major; ``kernel`` (F, 4H); ``bias`` (4H,)
    (zeros when the layer has none); ``recurrent_kernel`` (H, 4H); ``state`` (2, B, H) = h, c;
    ``out`` (B, H), the previous output, which a masked step repeats; ``ys`` (T, B, H) receives each
    step's output; ``keep`` (T, B) bool, False = masked step; ``z`` (4H,) scratch.
    """
    steps, batch = x.shape[0], x.shape[1]
    units = recurrent_kernel.shape[0]
    h, c = state[0], state[1]
    for t in range(steps):
        for s in range(batch):
            if keep[t, s]:
                # Stage 1 -- gate pre-activations: z = x W + b + h U  (blocks i, f, c, o)
                project(z, bias, x[t, s], kernel)
                accumulate(z, h[s], recurrent_kernel)
                # Stage 2 -- cell update: c' = σ(z_f) * c + σ(z_i) * φ(z_c)
                # Stage 3 -- hidden update: h' = σ(z_o) * φ(c')
                for j in range(units):
                    input_gate = activate(recurrent_activation, z[j])
                    forget_gate = activate(recurrent_activation, z[units + j])
                    candidate = activate(activation, z[2 * units + j])
                    output_gate = activate(recurrent_activation, z[3 * units + j])
                    cell = forget_gate * c[s, j] + input_gate * candidate
                    c[s, j] = cell
                    h[s, j] = output_gate * activate(activation, cell)
                    out[s, j] = h[s, j]
            elif zero_output:
                out[s, :] = np.float32(0.0)
            ys[t, s, :] = out[s, :]
