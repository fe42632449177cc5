/* SimpleRNN step; twin of edgernn/quantize/simple_rnn.py. */
#include "ernn_internal.h"

/* int8: work (ernn_work_words: P = ERNN_PAD4(units) pre-activations, the expanded x and h). */
void ernn_rnn_step_q(const ernn_layer *L, const int8_t *x, int8_t *h, int8_t *out, int32_t *work)
{
    const int32_t units = L->units, P = ERNN_PAD4(units);
    int32_t *vx = work + P, *vh = vx + ERNN_PAD4(L->in_size);
    const int32_t sx = ernn_expand(x, NULL, L->in_size, vx), sh = ernn_expand(h, NULL, units, vh);
    int32_t j;
    ernn_preact_q(L, vx, sx, vh, sh, work, P);
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
    const int32_t units = L->units;
    int32_t j;
    ernn_preact_f(L, x, h, work, units);
    for (j = 0; j < units; ++j) h[j] = ernn_act_f(L->act, work[j]);
    for (j = 0; j < units; ++j) out[j] = h[j];
}
#endif
