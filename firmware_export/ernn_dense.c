/* Dense (and a standalone activation: has_weights = 0); twin of edgernn/quantize/dense.py. */
#include "ernn_internal.h"

/* int8: x (in_size) -> out (units); work (units int32). */
void ernn_dense_step_q(const ernn_layer *L, const int8_t *x, int8_t *out, int32_t *work)
{
    const int32_t units = L->units, features = L->in_size;
    int32_t j, k;
    for (j = 0; j < units; ++j) {
        int32_t a;
        if (L->has_weights) {
            const int8_t *wr = L->w + (size_t)j * features;
            a = L->bx[j];
            for (k = 0; k < features; ++k) a += (int32_t)x[k] * wr[k];
        } else {
            a = (int32_t)x[j] - L->zp_in;
        }
        if (L->mode == ERNN_MODE_TABLE) {
            int32_t v = ernn_lut(ernn_sat16(ernn_requant(a, L->mx[j], L->nx[j])), L->lut_act);
            work[j] = ernn_sat8((int64_t)L->zp_out + ernn_requant(v, L->mo, L->no));
        } else {
            int32_t q = ernn_sat8((int64_t)L->zp_a + ernn_requant(a, L->mx[j], L->nx[j]));
            if (L->relu && q < L->zp_a) q = L->zp_a;
            work[j] = q;
        }
    }
    if (L->mode == ERNN_MODE_SOFTMAX) {
        /* integer softmax over int8 logits: e = 2^20 exp(-(max - l) s), y = 256 e / sum - 128 */
        int32_t top = work[0];
        int32_t total = 0;
        for (j = 1; j < units; ++j) top = work[j] > top ? work[j] : top;
        for (j = 0; j < units; ++j) {
            work[j] = L->exp_table[top - work[j]];
            total += work[j];
        }
        for (j = 0; j < units; ++j) work[j] = ernn_sat8((work[j] * 256 + total / 2) / total - 128);
    }
    for (j = 0; j < units; ++j) out[j] = (int8_t)work[j];
}

#ifndef ERNN_NO_FLOAT
void ernn_dense_step_f(const ernn_layer *L, const float *x, float *out)
{
    const int32_t units = L->units, features = L->in_size;
    int32_t j;
    for (j = 0; j < units; ++j) {
        if (L->has_weights) {
            float a = ernn_dot_f(x, L->wf ? L->wf + (size_t)j * features : NULL, L->w ? L->w + (size_t)j * features : NULL, features);
            if (L->sw) a = a * L->sw[j];
            out[j] = a + L->bxf[j];
        } else {
            out[j] = x[j];
        }
    }
    ernn_act_row_f(L->act, out, units);
}
#endif
