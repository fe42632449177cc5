"""The many-streams products, ``C = b + X @ W + H @ U``, with the weights packed once.

One step of many streams multiplies the inputs and states of all streams, ``X`` (M streams, F)
and ``H`` (M, K), by weight matrices that never change. OpenBLAS through NumPy packs its operand
again on every call and, for these small shapes (K of 3-256), spends much of the call outside its
inner kernel; XNNPACK, which TFLite uses, packs its weights once. This module does the same:

* :func:`pack_columns` stores a weight matrix once as column panels of ``PANEL`` (16) columns,
  each panel (K, 16) contiguous, the last padded with zeros (a bias likewise as (panels, 16)).
* :func:`packed_affine` walks ``C`` in tiles of ``ROWS`` rows by ``PAIR`` panels, the panels in
  groups whose weights stay in L2 (``GROUP_BYTES``; one group for all but the largest). A tile is
  :func:`_tile`: its sums start from the bias and stay in vector registers through the sum over
  the input's F columns and then the state's K; each step of a sum loads one row of each panel,
  broadcasts one entry per row and issues a fused multiply-add per vector of sums. So an LSTM's
  whole pre-activation ``x W + b + h U`` leaves the registers once, with no separate pass for
  the bias or a narrow input's projection.
* The tile's shape is chosen once, from the features Numba compiles for (:data:`WIDE`): with
  AVX-512, 8 rows by 2 panels in 16-lane vectors (16 registers of sums, each broadcast feeding
  two multiply-adds); elsewhere -- AVX2, aarch64's NEON, ``NUMBA_CPU_NAME=generic`` -- 4 rows by
  1 panel in 8-lane vectors (8 registers of sums, one broadcast per two). The packed layout is
  the same for both.

Why LLVM IR rather than Numba loops: written as loops, LLVM either keeps the 64 sums in memory
(a load and a store per multiply-add) or vectorises the wrong loop (the sum over k, through
shuffles). The tile is therefore emitted directly as vector IR through a Numba intrinsic; LLVM
lowers the 8-lane vectors to AVX2 on x86-64 and to pairs of NEON registers on aarch64, the
16-lane ones to AVX-512. On the AVX-512 EPYC of docs/benchmarks.md the 16-lane tile ran the
products of tools/bench's four recurrent models' layers (400 streams) at 121-128 G multiply-adds
a second on one core, about two 16-lane fused multiply-adds a cycle, the core's peak, where the
8-lane tile ran them at 40-57 (by hand, outside tools/bench: 2026-12-04 09:14 UTC at load 2.5;
docs/benchmarks.md). ``tools/bench/profile_streams.py`` prints each product's rate in its
last column, next to OpenBLAS's ``h U`` and TFLite's FULLY_CONNECTED of the same shapes; for
model (e) it is in docs/benchmarks.md.

A Conv1D's product across streams reads its windows straight from the ring of past inputs
(``taps``: :func:`edgernn.kernels.window.conv_batch`) and may apply a relu as the sums are
stored: no copy of the windows and no pass of its own for the activation.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._config import JIT
from . import program

PANEL = 16  # columns per packed panel: one 16-lane vector, or two 8-lane ones


def _target_has(feature: str) -> bool:
    """Whether the machine code Numba generates may use ``feature`` (an LLVM feature name): the
    features Numba hands LLVM, ``NUMBA_CPU_FEATURES`` if set (empty under
    ``NUMBA_CPU_NAME=generic``), else the host's. Numba's on-disk cache is keyed by the same
    features, so a kernel compiled for one choice is never loaded under the other."""
    from numba.core import config
    from numba.core.codegen import get_host_cpu_features

    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()
    return f"+{feature}" in str(features).split(",")


# The tile's shape, chosen once from the target: ``ROWS`` rows by ``PAIR`` panels of sums in
# vectors of ``LANES`` floats. With AVX-512 (32 registers of 16 floats), 8 rows by 2 panels: 16
# registers of sums, 2 of weights, and each broadcast entry feeds two multiply-adds. Elsewhere
# (AVX2's or NEON's 16 registers of 8 or 4 floats) 4 rows by 1 panel: 8 vectors of sums (LLVM
# splits each into two NEON registers), 2 of weights, 1 broadcast.
WIDE = _target_has("avx512f")
LANES = 16 if WIDE else 8
ROWS = 8 if WIDE else 4
PAIR = 2 if WIDE else 1
# Weights per panel group of packed_affine: a quarter of this machine's 512 KB L2 (a Pi 5 has
# 512 KB per core, a Pi 4 1 MB shared by four). In a manual A/B (not in tools/bench), model
# (c)'s second layer (512 KB packed) took 5-13% less time in groups of 128 or 256 KB than in
# one, and the smaller layers (one group either way) the same.
GROUP_BYTES = 128 * 1024


def pack_columns(matrix: np.ndarray, width: int = PANEL) -> np.ndarray:
    """``B`` (K, N) as panels for :func:`packed_affine`: (ceil(N / 16), K, 16) float32, the last
    panel's missing columns zero; a bias (N,) as (ceil(N / 16), 16). Done once per weight matrix.
    Panels of another ``width`` (a multiple of 16) for :mod:`edgernn.kernels._matvec`."""
    return program.pack_columns(matrix, width)


@intrinsic
def _tile(typingctx, x, input_packed, h, packed, bias, row, panel, c, c_row, c_column, rows, panels, taps, relu):
    """``c[c_row + r, c_column + 16 j : c_column + 16 (j + 1)] = bias[panel + j] + x[row + r] @
    input_packed[panel + j] + h[row + r] @ packed[panel + j]`` for r < ``rows``, j < ``panels``,
    then ``max(v, 0)`` of every sum where ``relu`` (NaN and -0 kept, as ``activate``'s relu).

    ``x`` (M, F), ``h`` (M, K), ``c`` 2-D, ``input_packed`` (panels, F, 16), ``packed`` (panels,
    K, 16), ``bias`` (panels, 16): float32, C-contiguous (other layouts do not type: the tile
    assumes unit column strides); ``rows`` (1 to ``ROWS``) and ``panels`` (1 to ``PAIR``)
    compile-time constants; ``relu`` a bool. ``taps``: None, or (M, T) intp C-contiguous for a
    *gathered* first operand: its F = T * D entries of row r are then the T runs
    ``x[row + r, taps[row + r, t] : taps[row + r, t] + D]`` (a Conv1D's taps read straight from
    its ring of past inputs, :func:`edgernn.kernels.window.conv_batch`), not ``x[row + r, :F]``.
    No bounds checks: :func:`packed_affine` is the only caller.
    """
    arrays = {x: 2, input_packed: 3, h: 2, packed: 3, bias: 2, c: 2}
    gathered = not isinstance(taps, types.NoneType)
    if not isinstance(rows, types.IntegerLiteral) or not isinstance(panels, types.IntegerLiteral) or not all(
            isinstance(t, types.Array) and t.dtype == types.float32 and t.layout == "C" and t.ndim == n
            for t, n in arrays.items()) or not isinstance(relu, types.Boolean) or gathered and not (
            isinstance(taps, types.Array) and taps.dtype == types.intp and taps.layout == "C" and taps.ndim == 2):
        return None
    count, width = rows.literal_value, panels.literal_value
    parts = PANEL // LANES  # vectors per panel row

    def codegen(context, builder, signature, args):
        row, panel, c_row, c_column = args[5], args[6], args[8], args[9]
        f32 = ir.FloatType()
        vector = ir.VectorType(f32, LANES)
        vector_pointer = vector.as_pointer()
        byte_pointer = ir.IntType(8).as_pointer()
        intp = context.get_value_type(types.intp)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3),
                                             f"llvm.fma.v{LANES}f32")

        def array(index):
            return context.make_array(signature.args[index])(context, builder, args[index])

        def first_axis(index, position, element=None):
            """``element``* (float* unless given) to ``array[position]`` of argument ``index``
            (strides are in bytes), and the array's shape."""
            value = array(index)
            stride = cgutils.unpack_tuple(builder, value.strides)[0]
            start = builder.gep(builder.bitcast(value.data, byte_pointer), [builder.mul(position, stride)])
            return builder.bitcast(start, (element or f32).as_pointer()), cgutils.unpack_tuple(builder, value.shape)

        def vectors(pointer):
            """The vectors of the 16 floats at ``pointer``."""
            return [builder.load(builder.bitcast(builder.gep(pointer, [intp(part * LANES)]), vector_pointer), align=4)
                    for part in range(parts)]

        # The sums live in allocas that LLVM promotes to registers (nothing takes their address).
        start = [value for j in range(width) for value in vectors(first_axis(4, builder.add(panel, intp(j)))[0])]
        sums = [[cgutils.alloca_once_value(builder, value) for value in start] for _ in range(count)]
        splat_mask = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)

        def multiply_add(rows_of, entry_index, panel_starts, weight_row):
            """sums[r] += rows_of[r][entry_index] * (row ``weight_row`` of each panel)."""
            b = [value for start_j, _ in panel_starts
                 for value in vectors(builder.gep(start_j, [builder.mul(weight_row, intp(PANEL))]))]
            for r in range(count):
                entry = builder.load(builder.gep(rows_of[r], [entry_index]))
                one = builder.insert_element(ir.Constant(vector, ir.Undefined), entry, ir.Constant(ir.IntType(32), 0))
                broadcast = builder.shuffle_vector(one, ir.Constant(vector, ir.Undefined), splat_mask)
                for i, weight in enumerate(b):
                    total = builder.load(sums[r][i])
                    builder.store(builder.call(fma, [broadcast, weight, total]), sums[r][i])

        for operand, weights in ((0, 1), (2, 3)):  # x @ input_packed, then h @ packed
            rows_of = [first_axis(operand, builder.add(row, intp(r)))[0] for r in range(count)]
            panel_starts = [first_axis(weights, builder.add(panel, intp(j))) for j in range(width)]
            depth = panel_starts[0][1][1]
            if operand == 0 and gathered:  # tap by tap, each a run of D entries from where taps says
                tap_count = cgutils.unpack_tuple(builder, array(12).shape)[1]
                run = builder.udiv(depth, builder.select(builder.icmp_unsigned("==", tap_count, intp(0)), intp(1),
                                                         tap_count))
                tap_rows = [first_axis(12, builder.add(row, intp(r)), intp)[0] for r in range(count)]
                with cgutils.for_range(builder, tap_count) as tap:
                    starts = [builder.gep(rows_of[r], [builder.load(builder.gep(tap_rows[r], [tap.index]))])
                              for r in range(count)]
                    first_row = builder.mul(tap.index, run)
                    with cgutils.for_range(builder, run) as loop:
                        multiply_add(starts, loop.index, panel_starts, builder.add(first_row, loop.index))
                continue
            with cgutils.for_range(builder, depth) as loop:
                multiply_add(rows_of, loop.index, panel_starts, loop.index)
        zero = ir.Constant(vector, None)
        for r in range(count):
            target = builder.gep(first_axis(7, builder.add(c_row, intp(r)))[0], [c_column])
            for i in range(width * parts):
                pointer = builder.bitcast(builder.gep(target, [intp(i * LANES)]), vector_pointer)
                total = builder.load(sums[r][i])
                rectified = builder.select(builder.fcmp_ordered("<", total, zero), zero, total)
                builder.store(builder.select(args[13], rectified, total), pointer, align=4)
        return context.get_dummy_value()

    return (types.void(x, input_packed, h, packed, bias, row, panel, c, c_row, c_column, rows, panels, taps, relu),
            codegen)


@njit(**JIT)
def packed_affine(x, input_packed, h, packed, bias, columns, c, tail, taps=None, relu=False):
    """``c[:, :columns] = bias + x @ W + h @ U``, ``W`` and ``U`` packed by :func:`pack_columns`.

    ``x`` (M, F) and ``h`` (M, K) float32 C-contiguous; ``input_packed`` (panels, F, 16),
    ``packed`` (panels, K, 16) and ``bias`` (panels, 16) with ``panels = ceil(columns / 16)``.
    F (or K) may be 0 for one product only: that operand is then never read, and it may have any
    number of rows and its packed weights any number of panels; ``c`` (M, >= columns) C-contiguous, its other columns
    untouched; ``tail`` (>= 1, 16) scratch for a last panel that ``c`` has no room for
    (``columns`` not a multiple of 16).

    ``taps`` (M, T) intp, for a Conv1D's product straight from its ring (``x`` the ring, F = T *
    D): row r's first operand is the T runs of D entries ``x[r, taps[r, t] :][:D]`` (see
    :func:`_tile`); None for a plain ``x``. ``relu``: ``c = max(c, 0)`` as the tile stores it,
    a Conv1D's relu without a pass of its own.
    """
    streams = h.shape[0]
    full_panels = columns // PANEL
    # Panels in groups whose weights fit GROUP_BYTES, rows outside the panels of a group: a
    # group's weights are read start to end once per ROWS rows, from L2 (which the prefetcher
    # follows), and only weights too large for it (model (c)'s 512 KB second layer) take more
    # than one group. (Chunks of 32 rows with the panels outside them, aimed at L1, were slower on
    # every model of tools/bench in a manual test, the 512 KB layer by 25%.)
    depth = input_packed.shape[1] + packed.shape[1]
    group = max(PAIR, GROUP_BYTES // (4 * PANEL * max(depth, 1)) // PAIR * PAIR)
    first = 0
    while first < full_panels:
        last = min(full_panels, first + group)
        row = 0
        while row < streams:
            count = min(ROWS, streams - row)
            for panel in range(first, last, PAIR):
                # Tiles of ROWS rows, then of 4 and of 1 for the rows left; a panel left over
                # from the pairs (PAIR 2) alone.
                if panel + PAIR <= last:
                    if count == ROWS:
                        _tile(x, input_packed, h, packed, bias, row, panel, c, row, panel * PANEL, ROWS, PAIR, taps,
                              relu)
                    else:
                        r = row
                        if ROWS > 4 and count >= 4:
                            _tile(x, input_packed, h, packed, bias, r, panel, c, r, panel * PANEL, 4, PAIR, taps, relu)
                            r += 4
                        while r < row + count:
                            _tile(x, input_packed, h, packed, bias, r, panel, c, r, panel * PANEL, 1, PAIR, taps, relu)
                            r += 1
                else:
                    r = row
                    while r + 4 <= row + count:
                        _tile(x, input_packed, h, packed, bias, r, panel, c, r, panel * PANEL, 4, 1, taps, relu)
                        r += 4
                    while r < row + count:
                        _tile(x, input_packed, h, packed, bias, r, panel, c, r, panel * PANEL, 1, 1, taps, relu)
                        r += 1
            row += ROWS
        first = last
    if bias.shape[0] > full_panels:  # the ragged last panel: through ``tail``, row by row
        for r in range(streams):
            _tile(x, input_packed, h, packed, bias, r, full_panels, tail, 0, 0, 1, 1, taps, relu)
            for j in range(columns - full_panels * PANEL):
                c[r, full_panels * PANEL + j] = tail[0, j]
