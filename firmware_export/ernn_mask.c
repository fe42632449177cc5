/* Masking (first layer only); twin of edgernn/quantize/masking.py. Returns keep: 0 when every
 * feature equals the mask value (the step is masked: output zeros, masked recurrent layers skip it). */
#include "ernn_internal.h"

int32_t ernn_mask_step_q(const ernn_layer *L, const int8_t *x, int8_t *out)
{
    int32_t k, keep = 0;
    for (k = 0; k < L->units; ++k) keep |= x[k] != L->mask_q;
    for (k = 0; k < L->units; ++k) out[k] = keep ? x[k] : (int8_t)L->zp_out;
    return keep;
}

#ifndef ERNN_NO_FLOAT
int32_t ernn_mask_step_f(const ernn_layer *L, const float *x, float *out)
{
    int32_t k, keep = 0;
    for (k = 0; k < L->units; ++k) keep |= x[k] != L->mask_f;
    for (k = 0; k < L->units; ++k) out[k] = keep ? x[k] : 0.0f;
    return keep;
}
#endif
