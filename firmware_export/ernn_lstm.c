/* LSTM step (gate rows i, f, c, o); twin of edgernn/quantize/lstm.py. */
#include "ernn_internal.h"

/* int8: x (in_size), h (units, int8, in place), c (units, int16, in place), out (units),
 * work (ernn_work_words: the pre-activations of the 4 gates, P = ERNN_PAD4(units) rows each, and
 * the expanded x and h). */
void ernn_lstm_step_q(const ernn_layer *L, const int8_t *x, int8_t *h, int16_t *c, int8_t *out, int32_t *work)
{
    const int32_t units = L->units, P = ERNN_PAD4(units);
    const int32_t cs = L->cell_shift;
    int32_t *vx = work + 4 * P, *vh = vx + ERNN_PAD4(L->in_size);
    int32_t j;
    /* Stage 1 -- pre = sat32(requant(bx + x W) + requant(bh + h U)), Q3.12, from the old h */
    const int32_t sx = ernn_expand(x, NULL, L->in_size, vx), sh = ernn_expand(h, NULL, units, vh);
    ernn_preact_q(L, vx, sx, vh, sh, work, 4 * P);
    for (j = 0; j < units; ++j) {
        /* Stage 2 -- c' = f c + i g   (gates Q0.15, c at scale 2^-cs) */
        int32_t gi = ernn_lut(ernn_sat16(work[j]), L->lut_gate);
        int32_t gf = ernn_lut(ernn_sat16(work[P + j]), L->lut_gate);
        int32_t gg = ernn_lut(ernn_sat16(work[2 * P + j]), L->lut_act);
        int32_t go = ernn_lut(ernn_sat16(work[3 * P + j]), L->lut_gate);
        /* int16 x int16 products: below 2^30, with the rounding term within int32 (15 <= 30 - cs <= 30) */
        int32_t cell = ernn_sat16(ernn_rshift_round32(gf * c[j], 15) + ernn_rshift_round32(gi * gg, 30 - cs));
        int32_t q12, t;
        c[j] = (int16_t)cell;
        /* Stage 3 -- h' = o tanh(c'): c' to Q3.12, table, requantize to int8 */
        q12 = cs > 12 ? ernn_rshift_round32(cell, cs - 12) : ernn_sat16(cell * (1 << (12 - cs)));
        t = ernn_lut(q12, L->lut_act);
        h[j] = (int8_t)ernn_sat8((int64_t)L->zp_out + ernn_requant(go * t, L->mo, L->no));
    }
    for (j = 0; j < units; ++j) out[j] = h[j];
}

#ifndef ERNN_NO_FLOAT
/* float32 / int8-weights: work (4 units floats). */
void ernn_lstm_step_f(const ernn_layer *L, const float *x, float *h, float *c, float *out, float *work)
{
    const int32_t units = L->units;
    int32_t j;
    /* Stage 1 -- pre = (x W [* s_w] + b) + (h U [* s_u] + b_h) */
    ernn_preact_f(L, x, h, work, 4 * units);
    for (j = 0; j < units; ++j) {
        float gi = ernn_act_f(L->gate_act, work[j]);
        float gf = ernn_act_f(L->gate_act, work[units + j]);
        float gg = ernn_act_f(L->act, work[2 * units + j]);
        float go = ernn_act_f(L->gate_act, work[3 * units + j]);
        float cell = gf * c[j] + gi * gg;
        c[j] = cell;
        h[j] = go * ernn_act_f(L->act, cell);
    }
    for (j = 0; j < units; ++j) out[j] = h[j];
}
#endif
