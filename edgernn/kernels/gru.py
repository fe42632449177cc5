"""GRU kernels, float32: the equations of :func:`edgernn.reference.gru.gru_step`, both candidate forms.

As for the LSTM (see :mod:`edgernn.kernels.lstm`): ``gru_update`` is one stream's step; the
sequence kernel takes input projections computed by BLAS for a whole block, and its recurrent
product per step on weights packed in panels (:mod:`edgernn.kernels._matvec`); the batch kernel
takes input and recurrent projections computed across streams on packed weights
(:mod:`edgernn.kernels._gemm`).

The recurrent kernel arrives split: ``recurrent_main`` is U (H, 3H) with ``reset_after=True``,
and U's z, r blocks (H, 2H) with ``reset_after=False``, whose candidate needs ``(r * h) U_h`` after
r is known, so U_h (H, H) comes apart as ``recurrent_candidate``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._config import INLINE, JIT
from ._linalg import accumulate, copy_row
from ._matvec import matvec
from .activations import activate, clipped, fast_sigmoid, fast_tanh, half_tanh_sigmoid, tanh_in_place


@njit(**INLINE)
def gru_update(xw, hu, h, recurrent_candidate, reset_after, clip, activation, recurrent_activation, standard, out):
    """One stream's GRU step; updates ``h`` (H,) in place and writes it into ``out`` (H,) in the
    same pass; overwrites ``xw`` and ``hu``.

    ``xw`` (3H,) = ``x W + b`` (blocks z, r, h). ``hu`` (>= 3H,): with ``reset_after``, ``h U + b_U``
    (all three blocks); without, ``h U_zr`` in its first 2H entries (the rest is scratch).
    ``standard``: tanh/sigmoid and no clip.
    """
    units = h.shape[0]
    if reset_after and standard:  # the common case, branch-free so it vectorises
        for j in range(units):
            # Stage 2 -- z = σ(xw_z + hu_z), r = σ(xw_r + hu_r); Stage 3 -- h~ = tanh(xw_h + r hu_h)
            update = fast_sigmoid(xw[j] + hu[j])
            reset = fast_sigmoid(xw[units + j] + hu[units + j])
            candidate = fast_tanh(xw[2 * units + j] + reset * hu[2 * units + j])
            # Stage 4 -- h' = z h + (1 - z) h~
            value = update * h[j] + (np.float32(1.0) - update) * candidate
            h[j] = value
            out[j] = value
    elif reset_after:
        for j in range(units):
            update = activate(recurrent_activation, clipped(xw[j] + hu[j], clip))
            reset = activate(recurrent_activation, clipped(xw[units + j] + hu[units + j], clip))
            candidate = activate(activation, clipped(xw[2 * units + j] + reset * hu[2 * units + j], clip))
            value = update * h[j] + (np.float32(1.0) - update) * candidate
            h[j] = value
            out[j] = value
    else:
        for j in range(units):
            # Stage 2 -- z and r; r * h kept in hu's last block for the candidate's product
            xw[j] = activate(recurrent_activation, clipped(xw[j] + hu[j], clip))
            reset = activate(recurrent_activation, clipped(xw[units + j] + hu[units + j], clip))
            hu[2 * units + j] = reset * h[j]
        # Stage 3 -- h~ = φ(xw_h + (r * h) U_h)
        accumulate(xw[2 * units : 3 * units], hu[2 * units : 3 * units], recurrent_candidate)
        for j in range(units):
            candidate = activate(activation, clipped(xw[2 * units + j], clip))
            # Stage 4 -- h' = z h + (1 - z) h~
            value = xw[j] * h[j] + (np.float32(1.0) - xw[j]) * candidate
            h[j] = value
            out[j] = value


@njit(**INLINE)
def gru_update_halved(gates, candidate_input, candidate_recurrent, h, out):
    """The standard reset_after step (:func:`gru_update`) from ``gates`` (2H,) = tanh of the
    halved z and r pre-activations (σ(v) = (1 + tanh(v / 2)) / 2) and the candidate's parts
    ``x W_h + b_h`` and ``h U_h + b_Uh`` (H,); one activation per unit, the candidate's."""
    units = h.shape[0]
    for j in range(units):
        # z = σ(.), r = σ(.); h~ = tanh(xw_h + r hu_h); h' = z h + (1 - z) h~
        update = half_tanh_sigmoid(gates[j])
        candidate = fast_tanh(candidate_input[j] + half_tanh_sigmoid(gates[units + j]) * candidate_recurrent[j])
        value = update * h[j] + (np.float32(1.0) - update) * candidate
        h[j] = value
        out[j] = value


@njit(**JIT)
def gru_sequence(xw, recurrent_packed, recurrent_bias, recurrent_candidate, reset_after, clip, h, out, ys, keep,
                 activation, recurrent_activation, standard, zero_output, hu, nothing):
    """T steps of B streams from ``xw`` (T, B, 3H) = ``x W + b`` (BLAS over the block), overwritten.

    ``recurrent_packed``: ``recurrent_main`` (H, 3H or 2H) packed by
    :func:`edgernn.kernels._matvec.pack_recurrent`; ``recurrent_bias`` its bias (zeros when absent
    or without reset_after), zero-padded to N' = its padded width; ``h`` (B, H); ``out``, ``ys``,
    ``keep`` as in :func:`edgernn.kernels.lstm.lstm_sequence`; ``hu`` (B, max(3H, N')) scratch,
    ``nothing`` zeros of the same shape (where the recurrent product starts).
    """
    reverse = False  # the panels' order, flipped at every step (see _matvec.matvec)
    for t in range(xw.shape[0]):
        # Stage 1 -- recurrent part: hu = h U + b_U (reset_after) or h U_zr
        matvec(nothing, recurrent_bias, h, recurrent_packed, hu, keep[t], reverse)
        reverse = not reverse
        for s in range(xw.shape[1]):
            if keep[t, s]:
                gru_update(xw[t, s], hu[s], h[s], recurrent_candidate, reset_after, clip, activation,
                           recurrent_activation, standard, out[s])
            elif zero_output:
                out[s, :] = np.float32(0.0)
            copy_row(ys[t, s], out[s])


@njit(**JIT)
def gru_batch_update(gates, xw, hu, h, out, keep, recurrent_candidate, reset_after, clip, activation,
                     recurrent_activation, standard, zero_output, halved):
    """One step of B streams from their input part ``xw`` (B, 3H) = ``x W + b`` and recurrent part
    ``hu`` (B, 3H) = ``h U + b_h`` (without reset_after: ``h U_zr`` in its first 2H columns, the
    rest scratch), both from packed products across streams
    (:func:`edgernn.kernels._gemm.packed_affine`). Other shapes as in :func:`gru_sequence`.

    ``halved`` (standard with reset_after; weights packed by
    :attr:`edgernn.kernels.recurrent.RecurrentKernel.products`): ``gates`` (B, 2H) holds half the
    z and r pre-activations, ``(x W_zr + b_zr + h U_zr + b_Uzr) / 2`` from one product, and
    ``xw``, ``hu`` (B, H) the candidate's parts ``x W_h + b_h`` and ``h U_h + b_Uh``. As in
    :func:`edgernn.kernels.lstm.lstm_batch_update`, one flat loop of tanh over ``gates`` makes
    both gates (σ(v) = (1 + tanh(v / 2)) / 2), and :func:`gru_update_halved` the rest, with one
    activation per unit, the candidate's. Otherwise ``gates`` is unused.
    """
    if halved:
        tanh_in_place(gates)  # both gates of every stream, in one flat loop
    for s in range(h.shape[0]):
        if keep[s] and halved:
            gru_update_halved(gates[s], xw[s], hu[s], h[s], out[s])
        elif keep[s]:
            gru_update(xw[s], hu[s], h[s], recurrent_candidate, reset_after, clip, activation,
                       recurrent_activation, standard, out[s])
        elif zero_output:
            out[s, :] = np.float32(0.0)
