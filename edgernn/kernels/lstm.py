"""LSTM kernel, float32: the equations of :func:`edgernn.reference.lstm.lstm_step`, per stream."""

from __future__ import annotations

import numpy as np
from numba import njit

from ._config import JIT
from ._linalg import accumulate, project
from .activations import activate, clipped


@njit(**JIT)
def lstm_run(x, kernel, bias, recurrent_kernel, peephole, projection, clip, h, c, out, ys, keep,
             activation, recurrent_activation, zero_output, z):
    """Run ``T`` LSTM steps for ``B`` independent streams, updating ``h`` and ``c`` in place.

    Shapes (float32 unless noted): ``x`` (T, B, F) time-major; ``kernel`` (F, 4H); ``bias`` (4H,)
    (zeros when the layer has none); ``recurrent_kernel`` (P, 4H); ``peephole`` (3, H) rows i, f, o
    (zeros when absent); ``projection`` (H, P), or (0, 0) when absent (then P = H); ``clip`` the
    cell clip (inf when absent); ``h`` (B, P); ``c`` (B, H); ``out`` (B, P), the previous output,
    which a masked step repeats; ``ys`` (T, B, P) receives each step's output; ``keep`` (T, B)
    bool, False = masked step; ``z`` (5H,) scratch: 4H gate pre-activations, H for o * φ(c').
    """
    steps, batch = x.shape[0], x.shape[1]
    units = c.shape[1]
    projected = projection.shape[0] > 0
    gates = z[: 4 * units]
    hidden = z[4 * units :]
    for t in range(steps):
        for s in range(batch):
            if keep[t, s]:
                # Stage 1 -- gate pre-activations: z = x W + b + h U  (blocks i, f, c, o)
                project(gates, bias, x[t, s], kernel)
                accumulate(gates, h[s], recurrent_kernel)
                for j in range(units):
                    # Stage 2 -- cell update: c' = σ(z_i + p_i c) * φ(z_c) + σ(z_f + p_f c) * c
                    old = c[s, j]
                    input_gate = activate(recurrent_activation, clipped(gates[j] + peephole[0, j] * old, clip))
                    forget_gate = activate(recurrent_activation,
                                           clipped(gates[units + j] + peephole[1, j] * old, clip))
                    candidate = activate(activation, clipped(gates[2 * units + j], clip))
                    cell = forget_gate * old + input_gate * candidate
                    c[s, j] = cell
                    # Stage 3 -- hidden update: h' = σ(z_o + p_o c') * φ(c')
                    output_gate = activate(recurrent_activation,
                                           clipped(gates[3 * units + j] + peephole[2, j] * cell, clip))
                    hidden[j] = output_gate * activate(activation, cell)
                # Stage 4 -- optional projection: h' = (o * φ(c')) P
                if projected:
                    for j in range(h.shape[1]):
                        h[s, j] = np.float32(0.0)
                    accumulate(h[s], hidden, projection)
                else:
                    h[s, :] = hidden
                out[s, :] = h[s, :]
            elif zero_output:
                out[s, :] = np.float32(0.0)
            ys[t, s, :] = out[s, :]
