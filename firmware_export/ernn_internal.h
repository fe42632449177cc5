/* edgernn runtime internals: fixed-point primitives and the per-op step functions.
 *
 * Signed right shifts of negative numbers are implementation-defined in C99, so every shift of a
 * value that may be negative goes through ernn_floor_shift (a mathematical floor, as in the Python
 * simulation), and the results are the same on every compiler. */
#ifndef ERNN_INTERNAL_H
#define ERNN_INTERNAL_H

#include <string.h>

#include "ernn.h"

/* gcc and clang document >> of a negative signed integer as arithmetic (sign-extending): a floor,
 * one instruction. Other compilers get the formula, a floor by C99's rules alone. */
#if defined(__GNUC__)
#define ERNN_ARITHMETIC_SHIFT 1
#endif

/* floor(v / 2^n), 0 <= n <= 63 */
static inline int64_t ernn_floor_shift(int64_t v, int32_t n)
{
#ifdef ERNN_ARITHMETIC_SHIFT
    return v >> n;
#else
    return v >= 0 ? (v >> n) : -1 - ((-1 - v) >> n);
#endif
}

/* floor(v / 2^n), 0 <= n <= 31 */
static inline int32_t ernn_floor_shift32(int32_t v, int32_t n)
{
#ifdef ERNN_ARITHMETIC_SHIFT
    return v >> n;
#else
    return v >= 0 ? (v >> n) : -1 - ((-1 - v) >> n);
#endif
}

/* floor((v + 2^(n-1)) / 2^n), n >= 1 */
static inline int64_t ernn_rshift_round(int64_t v, int32_t n)
{
    return ernn_floor_shift(v + ((int64_t)1 << (n - 1)), n);
}

/* the same in 32 bits: 1 <= n <= 31 and v + 2^(n-1) within int32 (the callers' ranges) */
static inline int32_t ernn_rshift_round32(int32_t v, int32_t n)
{
    return ernn_floor_shift32(v + (int32_t)(1u << (n - 1)), n);
}

static inline int32_t ernn_sat8(int64_t v) { return v < -128 ? -128 : (v > 127 ? 127 : (int32_t)v); }
static inline int32_t ernn_sat16(int64_t v) { return v < -32768 ? -32768 : (v > 32767 ? 32767 : (int32_t)v); }
static inline int32_t ernn_sat32(int64_t v)
{
    return v < INT32_MIN ? INT32_MIN : (v > INT32_MAX ? INT32_MAX : (int32_t)v);
}

/* int32 of a sum computed modulo 2^32 (no implementation-defined conversion; compiles to nothing) */
static inline int32_t ernn_s32(uint32_t u)
{
    return u <= (uint32_t)INT32_MAX ? (int32_t)u : (int32_t)(u - 2147483648u) - INT32_MAX - 1;
}

/* a b, exactly, in int64. ARMv6-M has no 32 x 32 -> 64 multiply and gcc calls its 64 x 64 routine
 * there; four 16 x 16 products in 32-bit words take fewer instructions:
 * a = ah 2^16 + al, b = bh 2^16 + bl (al, bl in [0, 2^16)), a b = ah bh 2^32 + (ah bl + al bh) 2^16 + al bl. */
static inline int64_t ernn_mul64(int32_t a, int32_t b)
{
#if defined(__ARM_ARCH_6M__)
    const uint32_t al = (uint32_t)a & 0xFFFFu, bl = (uint32_t)b & 0xFFFFu;
    const int32_t ah = ernn_floor_shift32(a, 16), bh = ernn_floor_shift32(b, 16);
    const int32_t m1 = ah * (int32_t)bl, m2 = (int32_t)al * bh; /* |.| < 2^31 */
    uint32_t lo = al * bl, hi = (uint32_t)(ah * bh + ernn_floor_shift32(m1, 16) + ernn_floor_shift32(m2, 16));
    const uint32_t s1 = (uint32_t)m1 << 16, s2 = (uint32_t)m2 << 16; /* the low halves of m1, m2 times 2^16 */
    lo += s1;
    hi += lo < s1; /* carry */
    lo += s2;
    hi += lo < s2;
    return (int64_t)ernn_s32(hi) * 4294967296 + lo;
#else
    return (int64_t)a * b;
#endif
}

/* sat32(floor((x M + 2^(n-1)) / 2^n)): x times the real multiplier M 2^-n, one rounding (1 <= n <= 62).
 * Computed as floor((t + 1) / 2) with t = floor(x M / 2^(n-1)): the same integer, no 64-bit constant.
 * For n >= 33 (most multipliers: real ones below 1/4), t comes from the product's high word alone
 * and |t| < 2^30 needs no saturation. */
static inline int32_t ernn_requant_inline(int32_t x, int32_t m, int32_t n)
{
    const int64_t p = ernn_mul64(x, m);
    int64_t t;
    if (n >= 33) {
        const int32_t t32 = ernn_floor_shift32((int32_t)ernn_floor_shift(p, 32), n - 33);
        return ernn_floor_shift32(t32, 1) + (t32 & 1);
    }
    t = ernn_floor_shift(p, n - 1);
    return ernn_sat32(ernn_floor_shift(t, 1) + (t & 1));
}

#if defined(__ARM_ARCH_6M__)
/* ARMv6-M: out of line (ernn_matvec.c). Inlined at each call, its 64-bit arithmetic made gcc -O2's
 * steps longer, slower and deeper on the stack there (measured with tools/bench/mcu.py). */
int32_t ernn_requant(int32_t x, int32_t m, int32_t n);
#else
static inline int32_t ernn_requant(int32_t x, int32_t m, int32_t n) { return ernn_requant_inline(x, m, n); }
#endif

/* the same for an int64 x (|x| < 2^31 M^-1 2^62 as the simulation's) */
static inline int32_t ernn_requant64(int64_t x, int32_t m, int32_t n)
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
    return lo + ernn_floor_shift32((table[i + 1] - lo) * f + 128, 8); /* |.| < 2^24 */
}

/* floor(a / b), b > 0 (C99's / truncates toward zero) */
static inline int32_t ernn_floor_div(int32_t a, int32_t b)
{
    const int32_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* a / b rounded half up, b > 0: floor((a + floor(b / 2)) / b) (|a| + b / 2 within int32 at the callers) */
static inline int32_t ernn_round_div(int32_t a, int32_t b) { return ernn_floor_div(a + b / 2, b); }

/* The int8 output of row j of a Dense or Conv1D from its int32 accumulator a (twin of output_q in
 * edgernn/quantize/dense.py): through the table (ERNN_MODE_TABLE), else sat8(zp_a + requant(a)), relu
 * clamped at zp_a (affine, relu, softmax logits). */
static inline int32_t ernn_output_q(const ernn_layer *L, int32_t j, int32_t a)
{
    int32_t q;
    if (L->mode == ERNN_MODE_TABLE) {
        const int32_t v = ernn_lut(ernn_sat16(ernn_requant(a, L->mx[j], L->nx[j])), L->lut_act);
        return ernn_sat8((int64_t)L->zp_out + ernn_requant(v, L->mo, L->no));
    }
    q = ernn_sat8((int64_t)L->zp_a + ernn_requant(a, L->mx[j], L->nx[j]));
    return (L->relu && q < L->zp_a) ? L->zp_a : q;
}

/* ---- The window of a Conv1D or pooling (twins of edgernn/kernels/window.py's _tick, _lagged, _push) --
 * counters: [0] inputs seen, saturating at need; [1] inputs since the last output, modulo strides;
 * [2] the ring's next row. The ring holds `rows` rows of row_bytes: the input `lag` steps back is
 * row pos - lag (mod rows). */
enum { ERNN_FILL = 0, ERNN_PHASE = 1, ERNN_POS = 2 };

/* Count one input; 1 when it completes an output row. */
static inline int32_t ernn_tick(int32_t *counters, int32_t need, int32_t strides)
{
    const int32_t emit = counters[ERNN_PHASE] == 0;
    if (counters[ERNN_FILL] < need) {
        counters[ERNN_FILL] += 1;
        return 0;
    }
    counters[ERNN_PHASE] = counters[ERNN_PHASE] + 1 >= strides ? 0 : counters[ERNN_PHASE] + 1;
    return emit;
}

/* The input lag steps back: x itself for lag 0, else its row of the ring. */
static inline const void *ernn_lagged(const void *x, const void *ring, int32_t rows, int32_t pos, int32_t lag,
                                      size_t row_bytes)
{
    int32_t slot = pos - lag;
    if (lag == 0) return x;
    if (slot < 0) slot += rows;
    return (const unsigned char *)ring + (size_t)slot * row_bytes;
}

/* x into the ring at row counters[ERNN_POS], which moves on (an empty ring keeps nothing). */
static inline void ernn_push(void *ring, const void *x, int32_t rows, int32_t *counters, size_t row_bytes)
{
    const int32_t pos = counters[ERNN_POS];
    if (rows == 0) return;
    memcpy((unsigned char *)ring + (size_t)pos * row_bytes, x, row_bytes);
    counters[ERNN_POS] = pos + 1 == rows ? 0 : pos + 1;
}

/* The window of x into cols (taps rows of row_bytes, oldest first): tap j is the input
 * (taps - 1 - j) dilation steps back. */
static inline void ernn_gather(void *cols, const void *x, const void *ring, int32_t rows, int32_t pos, int32_t taps,
                               int32_t dilation, size_t row_bytes)
{
    int32_t j;
    for (j = 0; j < taps; ++j)
        memcpy((unsigned char *)cols + (size_t)j * row_bytes,
               ernn_lagged(x, ring, rows, pos, (taps - 1 - j) * dilation, row_bytes), row_bytes);
}

/* ---- The int8 matrix-vector products of the recurrent layers -------------------------------------
 *
 * Layout (written by edgernn export): a matrix of the int8 scheme's recurrent layer, W (in_size
 * columns) or U (units columns), is stored as wt / ut for speed: each gate's rows padded with zero
 * rows to P = ERNN_PAD4(units), the columns with zeros to ERNN_PAD4(columns), cut into 4 x 4 tiles
 * of the bytes w + 128 (uint8). Tile (row block b, column block c) is at byte 16 (b C + c), C the
 * number of column blocks; row i, column j of a tile at byte 4 i + j. The per-row arrays bx, bh,
 * mx, nx, mh, nh are padded to P rows per gate the same way (bias 0, m 0, n 1: a padded row is 0).
 *
 * A vector (x, h, or the GRU's r * h) is expanded once per step into words of the work buffer
 * (ernn_expand, ERNN_PAD4(n) words, zero-padded):
 *   with the DSP extension: per column block two words, lanes (v0, v2) and (v1, v3) (int16 halves),
 *       so that SMLAD of UXTB16(tile word) and UXTB16(tile word ror 8) sums the four products;
 *   else: one int32 per column.
 * sum_k (w_k + 128) v_k = sum_k w_k v_k + 128 sum_k v_k, so each sum starts at bias - 128 sum_k v_k.
 * The sums wrap modulo 2^32 (unsigned) and end, exactly, at the int32 the simulation's row-by-row
 * dot_q gives: integer addition is exact in any order, with no saturation inside a dot product.
 * ernn_matvec.c has the kernels, one per target. */
#define ERNN_PAD4(n) (((n) + 3) & ~3)

/* x (n int8, or n int32 in [-32768, 32767] when x is NULL) into the kernels' vector v
 * (ERNN_PAD4(n) words); returns sum_k x[k]. */
int32_t ernn_expand(const int8_t *x, const int32_t *x32, int32_t n, int32_t *v);
/* Rows r..r+3 (r a multiple of 4, P-padded row numbering) of tiled matrix t (`blocks` column blocks)
 * times the expanded vector v whose sum is `sum`, each from its bias b[r + i] (0 when b is NULL): acc[i]. */
void ernn_rows4(const uint8_t *t, const int32_t *v, int32_t sum, int32_t blocks, const int32_t *b, int32_t r,
                int32_t *acc);
/* Rows [0, rows) (rows a multiple of 4, P-padded numbering) of a recurrent layer's int8 pre-activations
 * from the expanded x (vx, sum sx) and old h (vh, sum sh):
 * pre[r] = sat32(requant(bx[r] + x W[r], mx[r], nx[r]) + requant(bh[r] + h U[r], mh[r], nh[r])), Q3.12.
 * Twin of preact_q in edgernn/quantize/fixedpoint.py (LSTM: 4 gates, SimpleRNN: 1, GRU: z, r). */
void ernn_preact_q(const ernn_layer *L, const int32_t *vx, int32_t sx, const int32_t *vh, int32_t sh, int32_t *pre,
                   int32_t rows);


void ernn_lstm_step_q(const ernn_layer *L, const int8_t *x, int8_t *h, int16_t *c, int8_t *out, int32_t *work);
void ernn_gru_step_q(const ernn_layer *L, const int8_t *x, int8_t *h, int8_t *out, int32_t *work);
void ernn_rnn_step_q(const ernn_layer *L, const int8_t *x, int8_t *h, int8_t *out, int32_t *work);
void ernn_dense_step_q(const ernn_layer *L, const int8_t *x, int8_t *out, int32_t *work);
int32_t ernn_mask_step_q(const ernn_layer *L, const int8_t *x, int8_t *out);
/* Embedding: the row of code (in [0, vocab), checked by the step) into out; returns keep (0: code 0
 * with mask_zero). */
int32_t ernn_embed_step_q(const ernn_layer *L, int32_t code, int8_t *out);
/* Conv1D and pooling: return 1 when the input emitted an output row (out written), else 0. */
int32_t ernn_conv_step_q(const ernn_layer *L, const int8_t *x, int8_t *ring, int32_t *counters, int8_t *out,
                         int32_t *work);
int32_t ernn_pool_step_q(const ernn_layer *L, const int8_t *x, void *ring, int32_t *counters, int8_t *out);
/* Merge: out from a (in_size) and b (in_size2), see ernn_merge.c. */
void ernn_merge_step_q(const ernn_layer *L, const int8_t *a, const int8_t *b, int8_t *out);
/* The int32 words of scratch a layer's step works in (the work area; integer: the int8 scheme). */
uint32_t ernn_work_words(const ernn_layer *L, int integer);

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
int32_t ernn_embed_step_f(const ernn_layer *L, int32_t code, float *out);
int32_t ernn_conv_step_f(const ernn_layer *L, const float *x, float *ring, int32_t *counters, float *out, float *work);
int32_t ernn_pool_step_f(const ernn_layer *L, const float *x, float *ring, int32_t *counters, float *out);
void ernn_merge_step_f(const ernn_layer *L, const float *a, const float *b, float *out);
#endif

#endif /* ERNN_INTERNAL_H */
