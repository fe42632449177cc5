/* GRU step (gate rows z, r, h; both candidate forms); twin of edgernn/quantize/gru.py. */
#include "ernn_internal.h"

/* int8: work (ernn_work_words): pre (3 gates of P = ERNN_PAD4(units) rows), extra (P), the
 * expanded x and h (then r * h, for the candidate of reset_after = 0). */
void ernn_gru_step_q(const ernn_layer *L, const int8_t *x, int8_t *h, int8_t *out, int32_t *work)
{
    const int32_t units = L->units, P = ERNN_PAD4(units);
    const int32_t cx = ERNN_PAD4(L->in_size) / 4, ch = P / 4;
    int32_t *pre = work, *extra = work + 3 * P, *vx = work + 4 * P, *vh = vx + 4 * cx;
    const int32_t sx = ernn_expand(x, NULL, L->in_size, vx), sh = ernn_expand(h, NULL, units, vh);
    int32_t r, j, i, acc[4];
    /* Stage 1 -- z, r pre-activations (Q3.12); candidate input part; reset_after: h U_h + b_h */
    ernn_preact_q(L, vx, sx, vh, sh, pre, 2 * P);
    for (r = 2 * P; r < 3 * P; r += 4) {
        ernn_rows4(L->wt, vx, sx, cx, L->bx, r, acc);
        for (i = 0; i < 4; ++i) pre[r + i] = ernn_requant(acc[i], L->mx[r + i], L->nx[r + i]);
        if (L->reset_after) {
            ernn_rows4(L->ut, vh, sh, ch, L->bh, r, acc);
            for (i = 0; i < 4; ++i) extra[r - 2 * P + i] = ernn_requant(acc[i], L->mh[r + i], L->nh[r + i]);
        }
    }
    /* Stage 2 -- gates z, r in Q0.15 */
    for (r = 0; r < 2 * P; ++r) pre[r] = ernn_lut(ernn_sat16(pre[r]), L->lut_gate);
    /* Stage 3 -- candidate pre-activation */
    if (L->reset_after) {
        for (j = 0; j < units; ++j)
            pre[2 * P + j] = ernn_sat32(pre[2 * P + j] + ernn_rshift_round((int64_t)pre[P + j] * extra[j], 15));
    } else {
        int32_t se;
        /* (r * (h - zp)) U_h: |r * (h - zp)| <= 255, an int16 lane of the DSP kernel */
        for (j = 0; j < units; ++j)
            extra[j] = ernn_rshift_round32(pre[P + j] * ((int32_t)h[j] - L->zp_out), 15); /* < 2^23 */
        se = ernn_expand(NULL, extra, units, vh);
        for (r = 2 * P; r < 3 * P; r += 4) {
            ernn_rows4(L->ut, vh, se, ch, NULL, r, acc);
            for (i = 0; i < 4; ++i)
                pre[r + i] = ernn_sat32((int64_t)pre[r + i] + ernn_requant(acc[i], L->mh[r + i], L->nh[r + i]));
        }
    }
    /* Stage 4 -- h' = z h + (1 - z) h~, in Q0.30, requantized to int8 */
    for (j = 0; j < units; ++j) {
        int32_t hc = ernn_lut(ernn_sat16(pre[2 * P + j]), L->lut_act);
        int32_t hp = ernn_sat16(ernn_requant((int32_t)h[j] - L->zp_out, L->mq, L->nq));
        int32_t z = pre[j];
        h[j] = (int8_t)ernn_sat8((int64_t)L->zp_out + ernn_requant64((int64_t)z * hp + (int64_t)(32768 - z) * hc, L->mo, L->no));
    }
    for (j = 0; j < units; ++j) out[j] = h[j];
}

#ifndef ERNN_NO_FLOAT
void ernn_gru_step_f(const ernn_layer *L, const float *x, float *h, float *out, float *work)
{
    const int32_t units = L->units, features = L->in_size, rows = 3 * L->units;
    float *pre = work, *extra = work + rows;
    int32_t r, j, k;
    /* Stage 1 -- z, r pre-activations; the candidate row's x W_h + b (and h U_h + b_h) */
    ernn_preact_f(L, x, h, pre, 2 * units);
    for (r = 2 * units; r < rows; ++r) {
        float ax = ernn_dot_f(x, L->wf ? L->wf + (size_t)r * features : NULL, L->w ? L->w + (size_t)r * features : NULL, features);
        if (L->sw) ax = ax * L->sw[r];
        pre[r] = ax + L->bxf[r];
        if (L->reset_after) {
            float ah = ernn_dot_f(h, L->uf ? L->uf + (size_t)r * units : NULL, L->u ? L->u + (size_t)r * units : NULL, units);
            if (L->sw) ah = ah * L->su[r];
            extra[r - 2 * units] = ah + L->bhf[r];
        }
    }
    for (r = 0; r < 2 * units; ++r) pre[r] = ernn_act_f(L->gate_act, pre[r]);
    if (L->reset_after) {
        for (j = 0; j < units; ++j) pre[2 * units + j] = pre[2 * units + j] + pre[units + j] * extra[j];
    } else {
        for (k = 0; k < units; ++k) extra[k] = pre[units + k] * h[k];
        for (j = 0; j < units; ++j) {
            const int32_t row = 2 * units + j;
            float acc = 0.0f;
            if (L->uf) {
                for (k = 0; k < units; ++k) acc = acc + extra[k] * L->uf[(size_t)row * units + k];
            } else {
                for (k = 0; k < units; ++k) acc = acc + extra[k] * (float)L->u[(size_t)row * units + k];
            }
            if (L->sw) acc = acc * L->su[row];
            pre[row] = pre[row] + acc;
        }
    }
    for (j = 0; j < units; ++j) {
        float hc = ernn_act_f(L->act, pre[2 * units + j]);
        float z = pre[j];
        h[j] = z * h[j] + (1.0f - z) * hc;
    }
    for (j = 0; j < units; ++j) out[j] = h[j];
}
#endif
