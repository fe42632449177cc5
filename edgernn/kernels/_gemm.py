"""The many-streams products, ``C = b + X @ W + H @ U``, with the weights packed once.

One step of many streams multiplies the inputs and states of all streams, ``X`` (M streams, F)
and ``H`` (M, K), by weight matrices that never change. OpenBLAS through NumPy packs its operand
again on every call and, for these small shapes (K of 3-256), spends much of the call outside its
inner kernel; XNNPACK, which TFLite uses, packs its weights once. This module does the same:

* :func:`pack_columns` stores a weight matrix once as column panels of ``PANEL`` (16) columns,
  each panel (K, 16) contiguous, the last padded with zeros (a bias likewise as (panels, 16)).
* :func:`packed_affine` walks ``C`` in tiles of ``ROWS`` (4) rows by one panel, the panels in
  groups whose weights stay in L2 (``GROUP_BYTES``; one group for all but the largest). A tile is
  :func:`_tile`: its 4 x 16 sums start from the bias and stay in eight 8-lane vector registers
  through the sum over the input's F columns and then the state's K; each step of a sum loads
  one panel row (two vectors), broadcasts four entries and issues eight fused multiply-adds. So
  an LSTM's whole pre-activation ``x W + b + h U`` leaves the registers once, with no separate
  pass for the bias or a narrow input's projection.

Why LLVM IR rather than Numba loops: written as loops, LLVM either keeps the 64 sums in memory
(a load and a store per multiply-add) or vectorises the wrong loop (the sum over k, through
shuffles). The tile is therefore emitted directly as vector IR through a Numba intrinsic; LLVM
lowers the 8-lane vectors to AVX2 on x86-64 and to pairs of NEON registers on aarch64.
``tools/bench/profile_streams.py`` times it next to OpenBLAS's ``h U`` (docs/benchmarks.md).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._config import JIT
from .program import aligned_zeros

LANES = 8  # float32 lanes of one vector (AVX2; two NEON registers on aarch64)
PANEL = 2 * LANES  # columns per packed panel: two vectors
ROWS = 4  # rows per tile: 4 x 2 vectors of sums + 2 of B + 1 broadcast fit AVX2's 16 registers
# Weights per panel group of packed_affine: a quarter of this machine's 512 KB L2 (a Pi 5 has
# 512 KB per core, a Pi 4 1 MB shared by four). In a manual A/B (not in tools/bench), model
# (c)'s second layer (512 KB packed) took 5-13% less time in groups of 128 or 256 KB than in
# one, and the smaller layers (one group either way) the same.
GROUP_BYTES = 128 * 1024


def pack_columns(matrix: np.ndarray, width: int = PANEL) -> np.ndarray:
    """``B`` (K, N) as panels for :func:`packed_affine`: (ceil(N / 16), K, 16) float32, the last
    panel's missing columns zero; a bias (N,) as (ceil(N / 16), 16). Done once per weight matrix.
    Panels of another ``width`` (a multiple of 16) for :mod:`edgernn.kernels._matvec`."""
    if matrix.ndim == 1:
        vector = pack_columns(matrix[None, :], width)
        return vector.reshape(vector.shape[0], width)
    depth, columns = matrix.shape
    panels = -(-columns // width)
    padded = np.zeros((depth, panels * width), np.float32)
    padded[:, :columns] = matrix
    packed = aligned_zeros((panels, depth, width))  # each panel row whole cache lines
    packed[...] = padded.reshape(depth, panels, width).transpose(1, 0, 2)
    return packed


@intrinsic
def _tile(typingctx, x, input_packed, h, packed, bias, row, panel, c, c_row, c_column, rows):
    """``c[c_row + r, c_column : c_column + 16] = bias[panel] + x[row + r] @ input_packed[panel]
    + h[row + r] @ packed[panel]`` for r < ``rows``.

    ``x`` (M, F), ``h`` (M, K), ``c`` 2-D, ``input_packed`` (panels, F, 16), ``packed`` (panels,
    K, 16), ``bias`` (panels, 16): float32, C-contiguous (other layouts do not type: the tile
    assumes unit column strides); ``rows`` a compile-time constant (1 to ``ROWS``). No bounds
    checks: :func:`packed_affine` is the only caller.
    """
    arrays = {x: 2, input_packed: 3, h: 2, packed: 3, bias: 2, c: 2}
    if not isinstance(rows, types.IntegerLiteral) or not all(
            isinstance(t, types.Array) and t.dtype == types.float32 and t.layout == "C" and t.ndim == n
            for t, n in arrays.items()):
        return None
    count = rows.literal_value

    def codegen(context, builder, signature, args):
        x_value, input_value, h_value, packed_value, bias_value, row, panel, c_value, c_row, c_column, _ = args
        f32 = ir.FloatType()
        vector = ir.VectorType(f32, LANES)
        vector_pointer = vector.as_pointer()
        byte_pointer = ir.IntType(8).as_pointer()
        intp = context.get_value_type(types.intp)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3),
                                             f"llvm.fma.v{LANES}f32")

        def array(index):
            return context.make_array(signature.args[index])(context, builder, args[index])

        def first_axis(index, position):
            """float* to ``array[position]`` of argument ``index`` (strides are in bytes), and the
            array's shape."""
            value = array(index)
            stride = cgutils.unpack_tuple(builder, value.strides)[0]
            start = builder.gep(builder.bitcast(value.data, byte_pointer), [builder.mul(position, stride)])
            return builder.bitcast(start, f32.as_pointer()), cgutils.unpack_tuple(builder, value.shape)

        def vectors(pointer):
            """The two 8-lane vectors at ``pointer`` (16 floats)."""
            return [builder.load(builder.bitcast(builder.gep(pointer, [intp(half * LANES)]), vector_pointer), align=4)
                    for half in range(2)]

        # The sums live in allocas that LLVM promotes to registers (nothing takes their address).
        start = vectors(first_axis(4, panel)[0])
        sums = [[cgutils.alloca_once_value(builder, value) for value in start] for _ in range(count)]
        splat_mask = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
        for operand, weights in ((0, 1), (2, 3)):  # x @ input_packed, then h @ packed
            rows_of = [first_axis(operand, builder.add(row, intp(r)))[0] for r in range(count)]
            panel_start, (_, depth, _) = first_axis(weights, panel)
            with cgutils.for_range(builder, depth) as loop:
                k = loop.index
                b = vectors(builder.gep(panel_start, [builder.mul(k, intp(PANEL))]))
                for r in range(count):
                    entry = builder.load(builder.gep(rows_of[r], [k]))
                    one = builder.insert_element(ir.Constant(vector, ir.Undefined), entry, ir.Constant(ir.IntType(32), 0))
                    broadcast = builder.shuffle_vector(one, ir.Constant(vector, ir.Undefined), splat_mask)
                    for half in range(2):
                        total = builder.load(sums[r][half])
                        builder.store(builder.call(fma, [broadcast, b[half], total]), sums[r][half])
        for r in range(count):
            target = builder.gep(first_axis(7, builder.add(c_row, intp(r)))[0], [c_column])
            for half in range(2):
                pointer = builder.bitcast(builder.gep(target, [intp(half * LANES)]), vector_pointer)
                builder.store(builder.load(sums[r][half]), pointer, align=4)
        return context.get_dummy_value()

    return types.void(x, input_packed, h, packed, bias, row, panel, c, c_row, c_column, rows), codegen


@njit(**JIT)
def packed_affine(x, input_packed, h, packed, bias, columns, c, tail):
    """``c[:, :columns] = bias + x @ W + h @ U``, ``W`` and ``U`` packed by :func:`pack_columns`.

    ``x`` (M, F) and ``h`` (M, K) float32 C-contiguous; ``input_packed`` (panels, F, 16),
    ``packed`` (panels, K, 16) and ``bias`` (panels, 16) with ``panels = ceil(columns / 16)``.
    F (or K) may be 0 for one product only: that operand is then never read, and it may have any
    number of rows and its packed weights any number of panels; ``c`` (M, >= columns) C-contiguous, its other columns
    untouched; ``tail`` (ROWS, 16) scratch for a last panel that ``c`` has no room for
    (``columns`` not a multiple of 16).
    """
    streams = h.shape[0]
    full_panels = columns // PANEL
    # Panels in groups whose weights fit GROUP_BYTES, rows outside the panels of a group: a
    # group's weights are read start to end once per 4 rows, from L2 (which the prefetcher
    # follows), and only weights too large for it (model (c)'s 512 KB second layer) take more
    # than one group. (Chunks of 32 rows with the panels outside them, aimed at L1, were slower on
    # every model of tools/bench in a manual test, the 512 KB layer by 25%.)
    depth = input_packed.shape[1] + packed.shape[1]
    group = max(1, GROUP_BYTES // (4 * PANEL * max(depth, 1)))
    first = 0
    while first < full_panels:
        last = min(full_panels, first + group)
        row = 0
        while row < streams:
            count = min(ROWS, streams - row)
            for panel in range(first, last):
                if count == ROWS:
                    _tile(x, input_packed, h, packed, bias, row, panel, c, row, panel * PANEL, ROWS)
                else:
                    for r in range(row, row + count):
                        _tile(x, input_packed, h, packed, bias, r, panel, c, r, panel * PANEL, 1)
            row += ROWS
        first = last
    if bias.shape[0] > full_panels:  # the ragged last panel: through ``tail``, row by row
        for r in range(streams):
            _tile(x, input_packed, h, packed, bias, r, full_panels, tail, 0, 0, 1)
            for j in range(columns - full_panels * PANEL):
                c[r, full_panels * PANEL + j] = tail[0, j]
