"""GRU kernel, float32: the equations of :func:`edgernn.reference.gru.gru_step`, per stream."""

from __future__ import annotations

import numpy as np
from numba import njit

from ._config import JIT
from ._linalg import project
from .activations import activate, clipped


@njit(**JIT)
def gru_run(
    x, kernel, bias, recurrent_kernel, recurrent_bias, clip, h, out, ys, keep,
    activation, recurrent_activation, reset_after, zero_output, z,
):
    """Run ``T`` GRU steps for ``B`` independent streams, updating ``h`` in place.

    Shapes: ``x`` (T, B, F); ``kernel`` (F, 3H); ``bias``, ``recurrent_bias`` (3H,) (zeros when
    absent); ``recurrent_kernel`` (H, 3H); ``clip`` the cell clip (inf when absent);
    ``h`` (B, H); ``out`` (B, H) previous output;
    ``ys`` (T, B, H); ``keep`` (T, B) bool; ``z`` (2, 3H) scratch: row 0 input part, row 1 recurrent.
    """
    steps, batch = x.shape[0], x.shape[1]
    units = recurrent_kernel.shape[0]
    xw, hu = z[0], z[1]
    for t in range(steps):
        for s in range(batch):
            if keep[t, s]:
                # Stage 1 -- input part: xw = x W + b  (blocks z, r, h)
                project(xw, bias, x[t, s], kernel)
                if reset_after:
                    # Stage 2 -- recurrent part, bias inside the reset product: hu = h U + b_U
                    project(hu, recurrent_bias, h[s], recurrent_kernel)
                    for j in range(units):
                        update = activate(recurrent_activation, clipped(xw[j] + hu[j], clip))
                        reset = activate(recurrent_activation, clipped(xw[units + j] + hu[units + j], clip))
                        # Stage 3 -- candidate: h~ = φ(xw_h + r * hu_h)
                        xw[j] = update
                        xw[2 * units + j] = activate(
                            activation, clipped(xw[2 * units + j] + reset * hu[2 * units + j], clip))
                else:
                    # Stage 2 -- gates from h U_z, h U_r (no recurrent bias in this form)
                    for j in range(2 * units):
                        hu[j] = np.float32(0.0)
                    for k in range(units):
                        hk = h[s, k]
                        for j in range(2 * units):
                            hu[j] += hk * recurrent_kernel[k, j]
                    for j in range(units):
                        xw[j] = activate(recurrent_activation, clipped(xw[j] + hu[j], clip))
                        # r * h, kept in hu's last block for the candidate's product
                        reset = activate(recurrent_activation, clipped(xw[units + j] + hu[units + j], clip))
                        hu[2 * units + j] = reset * h[s, j]
                    # Stage 3 -- candidate: h~ = φ(xw_h + (r * h) U_h)
                    for k in range(units):
                        rh = hu[2 * units + k]
                        for j in range(units):
                            xw[2 * units + j] += rh * recurrent_kernel[k, 2 * units + j]
                    for j in range(units):
                        xw[2 * units + j] = activate(activation, clipped(xw[2 * units + j], clip))
                # Stage 4 -- h' = z * h + (1 - z) * h~
                for j in range(units):
                    update = xw[j]
                    h[s, j] = update * h[s, j] + (np.float32(1.0) - update) * xw[2 * units + j]
                    out[s, j] = h[s, j]
            elif zero_output:
                out[s, :] = np.float32(0.0)
            ys[t, s, :] = out[s, :]
