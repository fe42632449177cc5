/* Pooling1D: max / average over a window (valid), or global max / average over time as a running
 * value; twin of edgernn/quantize/pooling.py. The output keeps the input's quantization. */
#include "ernn_internal.h"

/* int8 global average: the count stops here, so |sum| <= 128 2^23 = 2^30 stays within int32 */
#define ERNN_GLOBAL_COUNT_LIMIT 8388608

/* int8: x (in_size) -> out (in_size) when the input emits (returns 1). Windowed: ring ((taps - 1) x
 * in_size int8), max or round_div(sum, taps) over the window. Global: ring (in_size int32) the
 * running max or sum, counters[0] the count; every input emits. */
int32_t ernn_pool_step_q(const ernn_layer *L, const int8_t *x, void *ring, int32_t *counters, int8_t *out)
{
    const int32_t width = L->in_size, is_max = L->pool == ERNN_POOL_MAX || L->pool == ERNN_POOL_GLOBAL_MAX;
    int32_t c, lag, emit;
    if (L->pool >= ERNN_POOL_GLOBAL_MAX) {
        int32_t *acc = (int32_t *)ring, count = counters[0];
        for (c = 0; c < width; ++c) {
            const int32_t q = x[c];
            if (is_max) acc[c] = (count == 0 || q > acc[c]) ? q : acc[c];
            else if (count < ERNN_GLOBAL_COUNT_LIMIT) acc[c] += q;
            else acc[c] += q - ernn_round_div(acc[c], ERNN_GLOBAL_COUNT_LIMIT); /* a moving average from here */
        }
        if (count < ERNN_GLOBAL_COUNT_LIMIT) counters[0] = ++count;
        for (c = 0; c < width; ++c) out[c] = (int8_t)(is_max ? acc[c] : ernn_round_div(acc[c], count));
        return 1;
    }
    emit = ernn_tick(counters, L->need, L->strides);
    if (emit) {
        for (c = 0; c < width; ++c) {
            int32_t acc = x[c];
            for (lag = 1; lag < L->taps; ++lag) {
                const int32_t v = ((const int8_t *)ernn_lagged(x, ring, L->taps - 1, counters[ERNN_POS], lag,
                                                               (size_t)width))[c];
                acc = is_max ? (v > acc ? v : acc) : acc + v;
            }
            out[c] = (int8_t)(is_max ? acc : ernn_round_div(acc, L->taps));
        }
    }
    ernn_push(ring, x, L->taps - 1, counters, (size_t)width);
    return emit;
}

#ifndef ERNN_NO_FLOAT
/* float32: the float stream's arithmetic. Windowed: y = x, then each older input of the window in
 * turn (max: NaN wins; average: added, then / taps). Global: running max, or mean += (x - mean) / n,
 * n = count + 1 up to 2^24. */
int32_t ernn_pool_step_f(const ernn_layer *L, const float *x, float *ring, int32_t *counters, float *out)
{
    const int32_t width = L->in_size, is_max = L->pool == ERNN_POOL_MAX || L->pool == ERNN_POOL_GLOBAL_MAX;
    int32_t c, lag, emit;
    if (L->pool >= ERNN_POOL_GLOBAL_MAX) {
        const int32_t count = counters[0];
        const float n = (float)(count < 16777216 ? count + 1 : count);
        for (c = 0; c < width; ++c) {
            const float v = x[c];
            if (count == 0) ring[c] = v;
            else if (is_max) ring[c] = (v > ring[c] || v != v) ? v : ring[c];
            else ring[c] += (v - ring[c]) / n;
            out[c] = ring[c];
        }
        if (count < 16777216) counters[0] = count + 1;
        return 1;
    }
    emit = ernn_tick(counters, L->need, L->strides);
    if (emit) {
        for (c = 0; c < width; ++c) out[c] = x[c];
        for (lag = 1; lag < L->taps; ++lag) {
            const float *row = (const float *)ernn_lagged(x, ring, L->taps - 1, counters[ERNN_POS], lag,
                                                          (size_t)width * sizeof *x);
            for (c = 0; c < width; ++c) {
                if (is_max) out[c] = (row[c] > out[c] || row[c] != row[c]) ? row[c] : out[c];
                else out[c] += row[c];
            }
        }
        if (!is_max)
            for (c = 0; c < width; ++c) out[c] = out[c] / (float)L->taps;
    }
    ernn_push(ring, x, L->taps - 1, counters, (size_t)width * sizeof *x);
    return emit;
}
#endif
