/* edgernn runtime internals: fixed-point primitives and the per-op step functions.
 *
 * Signed right shifts of negative numbers are implementation-defined in C99, so every shift of a
 * value that may be negative goes through ernn_floor_shift (a mathematical floor, as in the Python
 * simulation), and the results are the same on every compiler. */
#ifndef ERNN_INTERNAL_H
#define ERNN_INTERNAL_H

#include "ernn.h"

static inline int64_t ernn_floor_shift(int64_t v, int32_t n)
{
    return v >= 0 ? (v >> n) : -1 - ((-1 - v) >> n);
}

/* floor((v + 2^(n-1)) / 2^n), n >= 1 */
static inline int64_t ernn_rshift_round(int64_t v, int32_t n)
{
    return ernn_floor_shift(v + ((int64_t)1 << (n - 1)), n);
}

static inline int32_t ernn_sat8(int64_t v) { return v < -128 ? -128 : (v > 127 ? 127 : (int32_t)v); }
static inline int32_t ernn_sat16(int64_t v) { return v < -32768 ? -32768 : (v > 32767 ? 32767 : (int32_t)v); }
static inline int32_t ernn_sat32(int64_t v)
{
    return v < INT32_MIN ? INT32_MIN : (v > INT32_MAX ? INT32_MAX : (int32_t)v);
}

/* sat32(floor((x M + 2^(n-1)) / 2^n)): x times the real multiplier M 2^-n, one rounding. */
static inline int32_t ernn_requant(int64_t x, int32_t m, int32_t n)
{
    return ernn_sat32(ernn_rshift_round(x * m, n));
}

/* A 257-entry table on Q3.12 input (int16 range), linear interpolation between its points. */
static inline int32_t ernn_lut(int32_t x, const int16_t *table)
{
    int32_t u = x + 32768;
    int32_t i = u >> 8;
    int32_t f = u & 255;
    int32_t lo = table[i];
    return lo + (int32_t)ernn_floor_shift((int64_t)(table[i + 1] - lo) * f + 128, 8);
}

/* Rows [0, rows) of a recurrent layer's int8 pre-activations, from x (in_size) and the old h (units):
 * pre[r] = sat32(requant(bx[r] + x W[r], mx[r], nx[r]) + requant(bh[r] + h U[r], mh[r], nh[r])), Q3.12.
 * Twin of preact_q in edgernn/quantize/fixedpoint.py (LSTM: 4 units rows, SimpleRNN: units, GRU: z, r). */
static inline void ernn_preact_q(const ernn_layer *L, const int8_t *x, const int8_t *h, int32_t *pre, int32_t rows)
{
    const int32_t units = L->units, features = L->in_size;
    int32_t r, k;
    for (r = 0; r < rows; ++r) {
        const int8_t *wr = L->w + (size_t)r * features;
        const int8_t *ur = L->u + (size_t)r * units;
        int32_t ax = L->bx[r], ah = L->bh[r];
        for (k = 0; k < features; ++k) ax += (int32_t)x[k] * wr[k];
        for (k = 0; k < units; ++k) ah += (int32_t)h[k] * ur[k];
        pre[r] = ernn_sat32((int64_t)ernn_requant(ax, L->mx[r], L->nx[r]) + ernn_requant(ah, L->mh[r], L->nh[r]));
    }
}

void ernn_lstm_step_q(const ernn_layer *L, const int8_t *x, int8_t *h, int16_t *c, int8_t *out, int32_t *work);
void ernn_gru_step_q(const ernn_layer *L, const int8_t *x, int8_t *h, int8_t *out, int32_t *work);
void ernn_rnn_step_q(const ernn_layer *L, const int8_t *x, int8_t *h, int8_t *out, int32_t *work);
void ernn_dense_step_q(const ernn_layer *L, const int8_t *x, int8_t *out, int32_t *work);
int32_t ernn_mask_step_q(const ernn_layer *L, const int8_t *x, int8_t *out);

#ifndef ERNN_NO_FLOAT
float ernn_act_f(int32_t kind, float v);
void ernn_act_row_f(int32_t kind, float *row, int32_t n);
/* sum_k x[k] w[k] in order, w float (wf) or int8 (wq) */
float ernn_dot_f(const float *x, const float *wf, const int8_t *wq, int32_t n);
/* Rows [0, rows) of a recurrent layer's float pre-activations:
 * pre[r] = (x W[r] [* sw[r]] + bx[r]) + (h U[r] [* su[r]] + bh[r]), in that order.
 * Twin of preact_f in edgernn/quantize/fixedpoint.py. */
void ernn_preact_f(const ernn_layer *L, const float *x, const float *h, float *pre, int32_t rows);
void ernn_lstm_step_f(const ernn_layer *L, const float *x, float *h, float *c, float *out, float *work);
void ernn_gru_step_f(const ernn_layer *L, const float *x, float *h, float *out, float *work);
void ernn_rnn_step_f(const ernn_layer *L, const float *x, float *h, float *out, float *work);
void ernn_dense_step_f(const ernn_layer *L, const float *x, float *out);
int32_t ernn_mask_step_f(const ernn_layer *L, const float *x, float *out);
#endif

#endif /* ERNN_INTERNAL_H */
