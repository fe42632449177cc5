"""One stream's recurrent product ``z = init + bias + v @ U`` on weights packed once: the inner
loop of a block of steps (:func:`edgernn.kernels.lstm.lstm_sequence` and its GRU and SimpleRNN
twins).

A step of the block recurrence multiplies the state ``v`` (K,) by the recurrent kernel ``U``
(K, N); nothing else in the step is as long. The loop over rows of ``U`` that the one-step
kernels use (:func:`edgernn.kernels._linalg.accumulate`) loads and stores ``z`` once per four
rows of ``U``; here the sums stay in vector registers through all of K instead, so ``U`` is the
only stream of memory the product reads:

* :func:`pack_recurrent` stores ``U`` once as column panels of ``PANEL`` (32) columns, each
  panel (K, 32) contiguous and 64-byte aligned, the last padded with zero columns; so a row of
  the padded product has ``padded_width(N)`` entries.
* :func:`_panel` computes one panel's 32 sums in two sets of two 16-lane vectors (one set for
  the even k, one for the odd: four independent chains of fused multiply-adds, which cover the
  latency of each), the first set starting from ``init`` and the second from ``bias``, and adds
  the two sets at the end -- the same order of sums for every panel, step and stream.
* :func:`matvec` walks the panels, forward on one step and backward on the next (``reverse``):
  whatever part of ``U`` the first-level data cache still holds from the step before is then
  read first, before newer reads push it out. The order of panels changes no result (each panel
  owns its columns). With several streams, each panel serves all of them before the next.

Why: on one core of an AMD EPYC with AVX-512 (2026-12-04, docs/benchmarks.md), the row loop ran
model (a)'s LSTM(64) recurrence at 730-770 ns a step and a (K, N) = (128, 512) layer at
2.5-3.3 µs (by hand, at loads of 1-3), where the weights (64 KB; 256 KB) come from the
second-level cache at every step; in a manual sweep of panel widths (16-128 columns), sets of sums (1, 2, 4) and 8- or 16-lane vectors,
this form took 370-460 ns and 1.7 µs, and also beat the row loop by 1.5-2x compiled for AVX2
only (``NUMBA_CPU_NAME=haswell``). Panels of 128 columns kept the (128, 512) layer at 2.5 µs: the
narrow panel is what lets the loads keep up. Written as LLVM vector IR through a Numba intrinsic
for the reason given in :mod:`edgernn.kernels._gemm`; LLVM splits the 16-lane vectors into two
AVX2 registers or four NEON registers where the machine has no 512-bit ones.
"""

from __future__ import annotations

import weakref

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._config import INLINE
from .program import RECURRENT_PANEL, pack_columns, padded_width

LANES = 16  # float32 lanes of one vector (one AVX-512 register; two AVX2, four NEON)
VECTORS = 2  # vectors of sums per set: PANEL columns
PANEL = LANES * VECTORS  # columns per packed panel
assert PANEL == RECURRENT_PANEL  # the fused step's program packs its recurrent kernels for _panel
SETS = 2  # sets of sums: k even and k odd


def pad_columns(array: np.ndarray) -> np.ndarray:
    """``array`` (..., N) with zero columns up to :func:`padded_width` (N), float32 C-contiguous."""
    columns = array.shape[-1]
    out = np.zeros(array.shape[:-1] + (padded_width(columns),), np.float32)
    out[..., :columns] = array
    return out


_PREPARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def prepared(owner, name: str, make):
    """``make()``, made once per ``owner`` (an IR layer, held weakly) and ``name``: the packed
    and padded weights of a layer are then shared by every stream and every ``predict`` of it."""
    store = _PREPARED.setdefault(owner, {})
    if name not in store:
        store[name] = make()
    return store[name]


def pack_recurrent(matrix: np.ndarray) -> np.ndarray:
    """``U`` (K, N) packed for :func:`matvec`: (panels, K, 32) float32, 64-byte aligned."""
    return pack_columns(np.asarray(matrix, np.float32), PANEL)


@intrinsic
def _panel(typingctx, init, bias, v, packed, panel, out):
    """``out[p * 32 : (p + 1) * 32] = init[same] + bias[same] + v[:K] @ packed[p]`` for panel
    ``p``: ``init``, ``bias``, ``out`` (>= (p + 1) * 32,) and ``v`` (>= K,) float32 C-contiguous,
    ``packed`` (panels, K, 32) float32 C-contiguous and 64-byte aligned (:func:`pack_recurrent`).
    No bounds checks: :func:`matvec` is the only caller. ``init`` may be ``out`` (in place)."""
    shapes = {init: 1, bias: 1, v: 1, packed: 3, out: 1}
    if not all(isinstance(t, types.Array) and t.dtype == types.float32 and t.layout == "C" and t.ndim == n
               for t, n in shapes.items()):
        return None

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        vector = ir.VectorType(f32, LANES)
        intp = context.get_value_type(types.intp)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3),
                                             f"llvm.fma.v{LANES}f32")

        def array(index):
            return context.make_array(signature.args[index])(context, builder, args[index])

        def floats(index):
            return builder.bitcast(array(index).data, f32.as_pointer())

        def vector_at(pointer, offset):
            return builder.bitcast(builder.gep(pointer, [offset]), vector.as_pointer())

        start = builder.mul(args[4], intp(PANEL))
        init_at, bias_at, out_at = (builder.gep(floats(i), [start]) for i in (0, 1, 5))
        depth = cgutils.unpack_tuple(builder, array(3).shape)[1]
        weights = builder.gep(floats(3), [builder.mul(builder.mul(args[4], depth), intp(PANEL))])
        # The sums live in allocas that LLVM promotes to registers (nothing takes their address).
        sums = [[cgutils.alloca_once_value(builder, builder.load(vector_at(origin, intp(j * LANES)), align=4))
                 for j in range(VECTORS)] for origin in (init_at, bias_at)]
        v_at = floats(2)
        splat = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)

        def multiply_add(k, which):
            entry = builder.insert_element(ir.Constant(vector, ir.Undefined), builder.load(builder.gep(v_at, [k])),
                                           ir.Constant(ir.IntType(32), 0))
            broadcast = builder.shuffle_vector(entry, ir.Constant(vector, ir.Undefined), splat)
            row = builder.gep(weights, [builder.mul(k, intp(PANEL))])
            for j in range(VECTORS):
                w = builder.load(vector_at(row, intp(j * LANES)), align=64)
                builder.store(builder.call(fma, [broadcast, w, builder.load(sums[which][j])]), sums[which][j])

        pairs = builder.udiv(depth, intp(SETS))
        with cgutils.for_range(builder, pairs) as loop:
            for which in range(SETS):
                multiply_add(builder.add(builder.mul(loop.index, intp(SETS)), intp(which)), which)
        with cgutils.if_unlikely(builder, builder.icmp_unsigned("!=", builder.mul(pairs, intp(SETS)), depth)):
            multiply_add(builder.sub(depth, intp(1)), 0)  # K odd: its last row
        for j in range(VECTORS):
            total = builder.fadd(builder.load(sums[0][j]), builder.load(sums[1][j]))
            builder.store(total, vector_at(out_at, intp(j * LANES)), align=4)
        return context.get_dummy_value()

    return types.void(init, bias, v, packed, panel, out), codegen


@njit(**INLINE)
def matvec(init, bias, v, packed, out, keep, reverse):
    """``out[s] = init[s] + bias + v[s] @ U`` for every stream ``s`` with ``keep[s]``, U packed by
    :func:`pack_recurrent`: ``init`` and ``out`` (B, >= padded_width(N)) (``out`` may be
    ``init``), ``bias`` (>= padded_width(N),), ``v`` (B, K), ``keep`` (B,) bool.

    Panel by panel, every stream's sums of one panel before the next panel (backward when
    ``reverse``): with several streams a panel's weights are then read from the first-level cache
    for all but the first. Each stream's sums are the same whatever B, so a stream's outputs do
    not depend on the streams run beside it."""
    panels = packed.shape[0]
    for p in range(panels):
        panel = panels - 1 - p if reverse else p
        for s in range(v.shape[0]):
            if keep[s]:
                _panel(init[s], bias, v[s], packed, panel, out[s])


@njit(**INLINE)
def matvec_row(init, bias, v, packed, out):
    """``out = init + bias + v @ U`` for one stream, U packed by :func:`pack_recurrent`: ``init``,
    ``bias`` and ``out`` (>= padded_width(N),) (``out`` may be ``init``), ``v`` (K,). The fused
    step's recurrent product (:mod:`edgernn.kernels.chain`)."""
    for panel in range(packed.shape[0]):
        _panel(init, bias, v, packed, panel, out)
