"""Activations of the exported runtime: ids shared with C, float32 twins of ``ernn_floatmath.c``,
and the float64 functions the int8 tables are made from.

The float32 functions use only IEEE operations (+, -, *, /, comparisons and exact power-of-two
scaling), evaluated in the same order as the C with no contraction to FMA, so the float32 and
int8-weights schemes are bit-exact between this simulation and the C runtime (the C is compiled
with ``-ffp-contract=off``). tanh is the rational approximation the float kernels use
(|error| < 4e-7); sigmoid(x) = 1/2 + tanh(x/2)/2; exp (softmax) is a degree-6 polynomial on
[-ln2/2, ln2/2] scaled by 2^k (relative error < 2e-7).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..kernels.activations import TANH_CLAMP, TANH_P, TANH_Q
from .fixedpoint import INLINE, JIT

# Ids shared with the C runtime (ernn.h ERNN_ACT_*).
ACT_IDS = {
    "linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3, "hard_sigmoid": 4, "hard_sigmoid_keras2": 5,
    "hard_tanh": 6, "softsign": 7, "relu6": 8, "softmax": 9,
}
LINEAR, RELU, SIGMOID, TANH, HARD_SIGMOID, HARD_SIGMOID_KERAS2, HARD_TANH, SOFTSIGN, RELU6, SOFTMAX = range(10)

# Functions an int8 model evaluates through a 257-entry table (all bounded by [-1, 1]), as float64.
TABLE_FUNCTIONS = {
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "tanh": np.tanh,
    "hard_sigmoid": lambda x: np.clip(x + 3.0, 0.0, 6.0) / 6.0,
    "hard_sigmoid_keras2": lambda x: np.clip(0.2 * x + 0.5, 0.0, 1.0),
    "hard_tanh": lambda x: np.clip(x, -1.0, 1.0),
    "softsign": lambda x: x / (1.0 + np.abs(x)),
}
# Of those, the ones whose values are in [0, 1] (usable as gates, and output as int8 with scale 1/256).
UNIT_INTERVAL = ("sigmoid", "hard_sigmoid", "hard_sigmoid_keras2")


_F = np.float32
_ZERO, _ONE, _HALF = _F(0.0), _F(1.0), _F(0.5)
_THREE, _SIX, _POINT2 = _F(3.0), _F(6.0), _F(0.2)
# The same rational tanh as the float kernels (and ernn_floatmath.c), compiled here without
# fastmath so that it rounds exactly as the C does.
_TANH_CLAMP = TANH_CLAMP
_P0, _P1, _P2, _P3, _P4, _P5, _P6 = TANH_P
_Q0, _Q1, _Q2, _Q3 = TANH_Q
_EXP_LO, _EXP_HI = _F(-87.0), _F(88.0)
_LOG2E = _F(1.44269504088896341)
_LN2_HI, _LN2_LO = _F(0.693145751953125), _F(1.42860682030941723212e-6)
_E2, _E3, _E4, _E5, _E6 = (_F(1.0 / 2.0), _F(1.0 / 6.0), _F(1.0 / 24.0), _F(1.0 / 120.0), _F(1.0 / 720.0))


@njit(**INLINE)
def f_tanh(v):
    if v > _TANH_CLAMP:
        v = _TANH_CLAMP
    elif v < -_TANH_CLAMP:
        v = -_TANH_CLAMP
    v2 = v * v
    p = ((((((_P6 * v2 + _P5) * v2 + _P4) * v2 + _P3) * v2 + _P2) * v2 + _P1) * v2 + _P0) * v
    q = ((_Q3 * v2 + _Q2) * v2 + _Q1) * v2 + _Q0
    return p / q


@njit(**INLINE)
def f_exp(v):
    """e^v for float32 ``v``: v clamped to [-87, 88], k = floor(v log2 e + 1/2), r = v - k ln2
    (two-part ln2), e^r by Horner, times 2^k (exact: 2^k and the result stay normal)."""
    if v < _EXP_LO:
        v = _EXP_LO
    elif v > _EXP_HI:
        v = _EXP_HI
    t = v * _LOG2E + _HALF
    k = np.int32(t)  # truncation toward zero, then floor
    if t < _ZERO and _F(k) != t:
        k -= 1
    kf = _F(k)
    r = (v - kf * _LN2_HI) - kf * _LN2_LO
    p = _ONE + r * (_ONE + r * (_E2 + r * (_E3 + r * (_E4 + r * (_E5 + r * _E6)))))
    return p * _F(math.ldexp(1.0, k))


@njit(**JIT)
def f_activate(kind, v):
    """Element-wise activation ``kind`` (an ACT id, not softmax) of float32 ``v``, as ernn_act_f."""
    if kind == RELU:
        return v if v > _ZERO else _ZERO
    if kind == SIGMOID:
        return _HALF + _HALF * f_tanh(_HALF * v)
    if kind == TANH:
        return f_tanh(v)
    if kind == HARD_SIGMOID:
        v = v + _THREE
        v = _ZERO if v < _ZERO else (_SIX if v > _SIX else v)
        return v / _SIX
    if kind == HARD_SIGMOID_KERAS2:
        v = _POINT2 * v + _HALF
        return _ZERO if v < _ZERO else (_ONE if v > _ONE else v)
    if kind == HARD_TANH:
        return -_ONE if v < -_ONE else (_ONE if v > _ONE else v)
    if kind == SOFTSIGN:
        return v / (_ONE + (v if v >= _ZERO else -v))
    if kind == RELU6:
        return _ZERO if v < _ZERO else (_SIX if v > _SIX else v)
    return v


@njit(**JIT)
def f_activate_row(kind, row):
    """Activation ``kind`` in place over a float32 row (softmax over the row), as ernn_act_row_f."""
    n = row.shape[0]
    if kind == SOFTMAX:
        top = row[0]
        for j in range(1, n):
            if row[j] > top:
                top = row[j]
        total = _ZERO
        for j in range(n):
            row[j] = f_exp(row[j] - top)
            total = total + row[j]
        for j in range(n):
            row[j] = row[j] / total
    elif kind != LINEAR:
        for j in range(n):
            row[j] = f_activate(kind, row[j])
