"""LSTM kernels, float32: the equations of :func:`edgernn.reference.lstm.lstm_step`.

``lstm_update`` is one stream's step from its full gate pre-activations; the kernels around it
differ only in where the pre-activations come from:

* ``lstm_sequence``: a block of T steps whose input projection ``x W`` was computed for the
  whole block by one BLAS matrix product (outside Numba); ``b + h U`` per step here, on the
  recurrent kernel packed in panels (:mod:`edgernn.kernels._matvec`).
* ``lstm_batch_update``: one step of many streams whose pre-activations ``x W + b + h U`` came from
  one packed product across streams (:func:`edgernn.kernels._gemm.packed_affine`); for the
  standard cell, with the sigmoid gates' pre-activations halved, so that one flat tanh loop
  over all streams makes every gate, and ``lstm_update_halved`` (the same equations from those
  gates) the rest.
* :mod:`edgernn.kernels.chain` calls ``lstm_update`` for the fused one-step path of small batches.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._config import INLINE, JIT
from ._linalg import accumulate, copy_row
from ._matvec import matvec
from .activations import activate, clipped, fast_sigmoid, fast_tanh, half_tanh_sigmoid, tanh_in_place


@njit(**INLINE)
def lstm_update(z, h, c, peephole, projection, clip, activation, recurrent_activation, standard, hidden, out):
    """One stream's LSTM step from its gate pre-activations; updates ``h`` and ``c`` in place and
    writes the output (h') into ``out`` too.

    ``z`` (4H,): ``x W + b + h U`` (blocks i, f, c, o); ``h`` and ``out`` (P,), ``c`` (H,);
    ``peephole`` (3, H); ``projection`` (H, P) or (0, 0); ``clip`` (inf for none); ``standard``:
    tanh/sigmoid, no peephole, no clip -- the common case, taken by a branch-free loop that
    vectorises; ``hidden`` (H,) scratch (used with a projection).
    """
    units = c.shape[0]
    projected = projection.shape[0] > 0
    # Without a projection h' is the hidden vector itself: written straight into h (h is not read
    # here) and, in the same pass, into out (the layer's output, which a masked step repeats).
    target = hidden if projected else h
    # With a projection both are the scratch (written twice, harmlessly); out gets h' after Stage 4.
    second = hidden if projected else out
    if standard:
        for j in range(units):
            # Stage 2 -- c' = σ(z_f) c + σ(z_i) tanh(z_c);  Stage 3 -- h' = σ(z_o) tanh(c')
            cell = fast_sigmoid(z[units + j]) * c[j] + fast_sigmoid(z[j]) * fast_tanh(z[2 * units + j])
            c[j] = cell
            value = fast_sigmoid(z[3 * units + j]) * fast_tanh(cell)
            target[j] = value
            second[j] = value
    else:
        for j in range(units):
            # Stage 2 -- c' = σ(clip(z_f + p_f c)) c + σ(clip(z_i + p_i c)) φ(clip(z_c))
            old = c[j]
            input_gate = activate(recurrent_activation, clipped(z[j] + peephole[0, j] * old, clip))
            forget_gate = activate(recurrent_activation, clipped(z[units + j] + peephole[1, j] * old, clip))
            candidate = activate(activation, clipped(z[2 * units + j], clip))
            cell = forget_gate * old + input_gate * candidate
            c[j] = cell
            # Stage 3 -- h' = σ(clip(z_o + p_o c')) φ(c')
            output_gate = activate(recurrent_activation, clipped(z[3 * units + j] + peephole[2, j] * cell, clip))
            value = output_gate * activate(activation, cell)
            target[j] = value
            second[j] = value
    # Stage 4 (PyTorch proj_size) -- h' = hidden @ projection
    if projected:
        h[:] = np.float32(0.0)
        accumulate(h, hidden, projection)
        copy_row(out, h)


@njit(**INLINE)
def lstm_update_halved(gates, h, c, out):
    """The standard cell's step (:func:`lstm_update` with ``standard``, no projection) from
    ``gates`` (4H,) = tanh of its pre-activations with the i, f and o blocks halved: each sigmoid
    gate is then σ(v) = (1 + tanh(v / 2)) / 2, so one activation per unit is left here."""
    units = c.shape[0]
    for j in range(units):  # Stage 2 -- c' = σ(z_f) c + σ(z_i) tanh(z_c)
        c[j] = half_tanh_sigmoid(gates[units + j]) * c[j] + half_tanh_sigmoid(gates[j]) * gates[2 * units + j]
    for j in range(units):  # Stage 3 -- h' = σ(z_o) tanh(c')
        value = half_tanh_sigmoid(gates[3 * units + j]) * fast_tanh(c[j])
        h[j] = value
        out[j] = value


@njit(**JIT)
def lstm_sequence(xw, recurrent_packed, bias, peephole, projection, clip, h, c, out, ys, keep,
                  activation, recurrent_activation, standard, zero_output, z):
    """T steps of B streams from precomputed input projections.

    ``xw`` (T, B, N') = ``x W`` without the bias, N' = 4H padded to whole panels
    (:func:`edgernn.kernels._matvec.padded_width`), overwritten (the gate pre-activations are
    built in it); ``recurrent_packed``: the recurrent kernel (P, 4H) packed by
    :func:`edgernn.kernels._matvec.pack_recurrent`; ``bias`` (N',) zero-padded; ``h`` (B, P) and
    ``c`` (B, H) updated in place; ``out`` (B, P) the previous output, repeated by a masked step
    (zeros with ``zero_output``); ``ys`` (T, B, P) receives every step's output; ``keep`` (T, B)
    bool, False = masked; ``z`` (5H,) scratch.
    """
    units = c.shape[1]
    hidden = z[4 * units :]
    reverse = False  # the panels' order, flipped at every step (see _matvec.matvec)
    for t in range(xw.shape[0]):
        # Stage 1 -- z = (x W) + b + h U, in place in the block's own projection buffer
        matvec(xw[t], bias, h, recurrent_packed, xw[t], keep[t], reverse)
        reverse = not reverse
        for s in range(xw.shape[1]):
            if keep[t, s]:
                lstm_update(xw[t, s], h[s], c[s], peephole, projection, clip, activation, recurrent_activation,
                            standard, hidden, out[s])
            elif zero_output:
                out[s, :] = np.float32(0.0)
            copy_row(ys[t, s], out[s])


@njit(**JIT)
def lstm_batch_update(z, h, c, out, keep, peephole, projection, clip, activation, recurrent_activation, standard,
                      zero_output, hidden, halved):
    """One step of B streams from their gate pre-activations ``z`` (B, 4H) = ``x W + b + h U``.
    ``keep`` (B,) bool; other shapes as in :func:`lstm_sequence`; ``hidden`` (H,) scratch.

    ``halved`` (a standard cell without projection, weights packed by
    :attr:`edgernn.kernels.recurrent.RecurrentKernel.products`): z's i, f and o blocks hold half
    their pre-activation, exactly (a power of two). Then every gate is one tanh,
    σ(v) = (1 + tanh(v / 2)) / 2, and one flat loop of tanh over all of ``z`` (overwritten) makes
    them all at the throughput of independent iterations; what is left per unit
    (:func:`lstm_update_halved`) is c' = σ_f c + σ_i g and h' = σ_o tanh(c'), with one
    activation. The one-loop form of :func:`lstm_update` chains three per unit (σ, then c', then
    tanh(c')) and runs at their latency: in a manual A/B on 400 streams this pass took 25-30%
    less time.
    Otherwise ``z`` is read only.
    """
    if halved:
        tanh_in_place(z)  # every gate of every stream, in one flat loop
    for s in range(z.shape[0]):
        if keep[s] and halved:
            lstm_update_halved(z[s], h[s], c[s], out[s])
        elif keep[s]:
            lstm_update(z[s], h[s], c[s], peephole, projection, clip, activation, recurrent_activation,
                        standard, hidden, out[s])
        elif zero_output:
            out[s, :] = np.float32(0.0)
