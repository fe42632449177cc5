/* Embedding (first layer, on integer codes); twin of edgernn/quantize/embedding.py. The step checked
 * the code (0 <= code < vocab) before any layer ran. Returns keep: 0 for code 0 with mask_zero (the
 * masked recurrent layers skip the step), else 1; the output is the code's row either way. */
#include "ernn_internal.h"

int32_t ernn_embed_step_q(const ernn_layer *L, int32_t code, int8_t *out)
{
    memcpy(out, L->w + (size_t)code * (size_t)L->units, (size_t)L->units); /* int8 table: a row copy */
    return !(L->mask_zero && code == 0);
}

#ifndef ERNN_NO_FLOAT
int32_t ernn_embed_step_f(const ernn_layer *L, int32_t code, float *out)
{
    const size_t row = (size_t)code * (size_t)L->units;
    int32_t j;
    if (L->wf) memcpy(out, L->wf + row, (size_t)L->units * sizeof *out);
    else for (j = 0; j < L->units; ++j) out[j] = (float)L->w[row + (size_t)j] * L->sw[code]; /* int8-weights */
    return !(L->mask_zero && code == 0);
}
#endif
