/* Conv1D (causal or valid; strides, dilation, groups), streamed: a ring of the last span - 1 inputs
 * in the stream state; twin of edgernn/quantize/conv.py. Also BatchNormalization (a per-channel
 * affine: taps 1, one group per channel). */
#include "ernn_internal.h"

/* int8: x (in_size) -> out (units) when the input emits (returns 1). ring ((span - 1) x in_size int8,
 * starting full of zp_in: the int8 of 0.0, the causal padding), counters (3). work (ernn_work_words):
 * the expanded window for the kernels (ERNN_PAD4(taps in_size) words), then the window itself
 * (taps in_size bytes, tap-major, oldest first). */
int32_t ernn_conv_step_q(const ernn_layer *L, const int8_t *x, int8_t *ring, int32_t *counters, int8_t *out,
                         int32_t *work)
{
    const int32_t width = L->in_size, filters = L->units, columns = L->taps * width;
    const int32_t rows = (L->taps - 1) * L->dilation;
    const int32_t emit = ernn_tick(counters, L->need, L->strides);
    int32_t f, i, j, c;
    if (emit) {
        int32_t *v = work;
        int8_t *cols = (int8_t *)(void *)(work + ERNN_PAD4(columns));
        ernn_gather(cols, x, ring, rows, counters[ERNN_POS], L->taps, L->dilation, (size_t)width);
        if (L->groups == 1) { /* the tiled kernels, 4 filters a pass: acc = bx + sum_k cols[k] w[f, k] */
            const int32_t sum = ernn_expand(cols, NULL, columns, v);
            for (f = 0; f < filters; f += 4) {
                int32_t acc[4];
                ernn_rows4(L->wt, v, sum, ERNN_PAD4(columns) / 4, NULL, f, acc);
                for (i = 0; i < 4 && f + i < filters; ++i)
                    out[f + i] = (int8_t)ernn_output_q(L, f + i, ernn_s32((uint32_t)acc[i] + (uint32_t)L->bx[f + i]));
            }
        } else { /* filter f reads the channels of its group in every tap */
            const int32_t per_group = width / L->groups, per_filter = filters / L->groups;
            for (f = 0; f < filters; ++f) {
                const int8_t *wr = L->w + (size_t)f * (size_t)(L->taps * per_group);
                const int8_t *xg = cols + (f / per_filter) * per_group;
                int32_t acc = L->bx[f];
                for (j = 0; j < L->taps; ++j)
                    for (c = 0; c < per_group; ++c) acc += (int32_t)xg[j * width + c] * wr[j * per_group + c];
                out[f] = (int8_t)ernn_output_q(L, f, acc);
            }
        }
    }
    ernn_push(ring, x, rows, counters, (size_t)width);
    return emit;
}

#ifndef ERNN_NO_FLOAT
/* float32 / int8-weights: work (taps in_size floats, the window). Per filter, in this order:
 * a = sum_j sum_c cols[j in_size + group c] w[f, j in_size / groups + c] from 0, [* sw[f]], + b[f]. */
int32_t ernn_conv_step_f(const ernn_layer *L, const float *x, float *ring, int32_t *counters, float *out, float *work)
{
    const int32_t width = L->in_size, filters = L->units;
    const int32_t rows = (L->taps - 1) * L->dilation;
    const int32_t emit = ernn_tick(counters, L->need, L->strides);
    const int32_t per_group = width / L->groups, per_filter = filters / L->groups, columns = L->taps * per_group;
    int32_t f, j, c;
    if (emit) {
        ernn_gather(work, x, ring, rows, counters[ERNN_POS], L->taps, L->dilation, (size_t)width * sizeof *x);
        for (f = 0; f < filters; ++f) {
            const float *xg = work + (f / per_filter) * per_group;
            float a = 0.0f;
            for (j = 0; j < L->taps; ++j)
                for (c = 0; c < per_group; ++c) {
                    const size_t k = (size_t)f * (size_t)columns + (size_t)(j * per_group + c);
                    a = a + xg[j * width + c] * (L->wf ? L->wf[k] : (float)L->w[k]);
                }
            if (L->sw) a = a * L->sw[f];
            out[f] = a + L->bxf[f];
        }
        ernn_act_row_f(L->act, out, filters);
    }
    ernn_push(ring, x, rows, counters, (size_t)width * sizeof *x);
    return emit;
}
#endif
