/* SimpleRNN step; twin of edgernn/quantize/simple_rnn.py. */
#include "ernn_internal.h"

/* int8: work (units int32). */
void ernn_rnn_step_q(const ernn_layer *L, const int8_t *x, int8_t *h, int8_t *out, int32_t *work)
{
    const int32_t units = L->units, features = L->in_size;
    int32_t r, j, k;
    for (r = 0; r < units; ++r) {
        const int8_t *wr = L->w + (size_t)r * features;
        const int8_t *ur = L->u + (size_t)r * units;
        int32_t ax = L->bx[r], ah = L->bh[r];
        for (k = 0; k < features; ++k) ax += (int32_t)x[k] * wr[k];
        for (k = 0; k < units; ++k) ah += (int32_t)h[k] * ur[k];
        work[r] = ernn_sat32((int64_t)ernn_requant(ax, L->mx[r], L->nx[r]) + ernn_requant(ah, L->mh[r], L->nh[r]));
    }
    for (j = 0; j < units; ++j) {
        int32_t v = L->use_table ? ernn_lut(ernn_sat16(work[j]), L->lut_act) : work[j];
        int32_t q = ernn_sat8((int64_t)L->zp_out + ernn_requant(v, L->mo, L->no));
        if (L->relu && q < L->zp_out) q = L->zp_out;
        h[j] = (int8_t)q;
    }
    for (j = 0; j < units; ++j) out[j] = h[j];
}

#ifndef ERNN_NO_FLOAT
void ernn_rnn_step_f(const ernn_layer *L, const float *x, float *h, float *out, float *work)
{
    const int32_t units = L->units, features = L->in_size;
    int32_t r, j;
    for (r = 0; r < units; ++r) {
        float ax = ernn_dot_f(x, L->wf ? L->wf + (size_t)r * features : NULL, L->w ? L->w + (size_t)r * features : NULL, features);
        float ah = ernn_dot_f(h, L->uf ? L->uf + (size_t)r * units : NULL, L->u ? L->u + (size_t)r * units : NULL, units);
        if (L->sw) {
            ax = ax * L->sw[r];
            ah = ah * L->su[r];
        }
        work[r] = (ax + L->bxf[r]) + (ah + L->bhf[r]);
    }
    for (j = 0; j < units; ++j) h[j] = ernn_act_f(L->act, work[j]);
    for (j = 0; j < units; ++j) out[j] = h[j];
}
#endif
