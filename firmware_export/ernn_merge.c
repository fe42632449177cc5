/* Add, Subtract, Average, Multiply, Maximum, Minimum and Concatenate (over features) of two tensors;
 * twin of edgernn/quantize/merge.py. a: the first input (in_size), b: the second (in_size2). */
#include "ernn_internal.h"

/* bits the inputs of an int8 Add are scaled up before their rescaling (HEADROOM in merge.py) */
#define ERNN_HEADROOM 20

/* x (zero point zp) at the output's scale: sat8(zp_out + requant(x - zp, m, n)) */
static int8_t ernn_rescale_q(const ernn_layer *L, int32_t x, int32_t zp, int32_t m, int32_t n)
{
    return (int8_t)ernn_sat8((int64_t)L->zp_out + ernn_requant(x - zp, m, n));
}

/* Concatenate's int8 part: n values of x at the output's scale; a copy when the scales and zero points
 * are equal (multiplier 2^30 2^-30). */
static void ernn_concat_part_q(const ernn_layer *L, const int8_t *x, int32_t count, int32_t zp, int32_t m, int32_t n,
                               int8_t *out)
{
    int32_t j;
    if (m == (1 << 30) && n == 30 && zp == L->zp_out) {
        memcpy(out, x, (size_t)count);
        return;
    }
    for (j = 0; j < count; ++j) out[j] = ernn_rescale_q(L, x[j], zp, m, n);
}

/* int8 Add, Subtract, Average: t_i = requant((q_i - z_i) 2^20, mx[i], nx[i]), out = sat8(zp_out +
 * requant(t_1 +- t_2, mo, no)); |q - z| <= 255: (q - z) 2^20 < 2^28, no overflow. Multiply: out =
 * sat8(zp_out + requant((q_1 - z_1)(q_2 - z_2), mo, no)), the product below 2^16. Maximum, Minimum:
 * the larger / smaller of the two at the output's scale. Concatenate: each part at the output's scale. */
void ernn_merge_step_q(const ernn_layer *L, const int8_t *a, const int8_t *b, int8_t *out)
{
    const int32_t n = L->units;
    int32_t j;
    switch (L->merge) { /* the mode picked once per step, not per value */
    case ERNN_MERGE_CONCAT:
        ernn_concat_part_q(L, a, L->in_size, L->zp_in, L->mx[0], L->nx[0], out);
        ernn_concat_part_q(L, b, L->in_size2, L->zp_in2, L->mx[1], L->nx[1], out + L->in_size);
        return;
    case ERNN_MERGE_MULTIPLY:
        for (j = 0; j < n; ++j)
            out[j] = (int8_t)ernn_sat8((int64_t)L->zp_out
                                       + ernn_requant((a[j] - L->zp_in) * (b[j] - L->zp_in2), L->mo, L->no));
        return;
    case ERNN_MERGE_MAXIMUM:
    case ERNN_MERGE_MINIMUM: {
        const int larger = L->merge == ERNN_MERGE_MAXIMUM;
        for (j = 0; j < n; ++j) {
            const int8_t r1 = ernn_rescale_q(L, a[j], L->zp_in, L->mx[0], L->nx[0]);
            const int8_t r2 = ernn_rescale_q(L, b[j], L->zp_in2, L->mx[1], L->nx[1]);
            out[j] = larger == (r1 > r2) ? r1 : r2;
        }
        return;
    }
    default: { /* Add, Subtract, Average: the sign of the second term */
        const int32_t sign = L->merge == ERNN_MERGE_SUBTRACT ? -1 : 1;
        for (j = 0; j < n; ++j) {
            const int32_t t1 = ernn_requant((a[j] - L->zp_in) * (1 << ERNN_HEADROOM), L->mx[0], L->nx[0]);
            const int32_t t2 = ernn_requant((b[j] - L->zp_in2) * (1 << ERNN_HEADROOM), L->mx[1], L->nx[1]);
            out[j] = (int8_t)ernn_sat8((int64_t)L->zp_out + ernn_requant(t1 + sign * t2, L->mo, L->no));
        }
    }
    }
}

#ifndef ERNN_NO_FLOAT
/* float: a + b, a - b, (a + b) 0.5 (exactly (a + b) / 2), a b, max, min, or a then b */
void ernn_merge_step_f(const ernn_layer *L, const float *a, const float *b, float *out)
{
    const int32_t n = L->units;
    int32_t j;
    switch (L->merge) { /* the mode picked once per step, not per value */
    case ERNN_MERGE_CONCAT:
        memcpy(out, a, (size_t)L->in_size * sizeof *out);
        memcpy(out + L->in_size, b, (size_t)L->in_size2 * sizeof *out);
        return;
    case ERNN_MERGE_SUBTRACT: for (j = 0; j < n; ++j) out[j] = a[j] - b[j]; return;
    case ERNN_MERGE_AVERAGE: for (j = 0; j < n; ++j) out[j] = (a[j] + b[j]) * 0.5f; return;
    case ERNN_MERGE_MULTIPLY: for (j = 0; j < n; ++j) out[j] = a[j] * b[j]; return;
    case ERNN_MERGE_MAXIMUM: for (j = 0; j < n; ++j) out[j] = a[j] > b[j] ? a[j] : b[j]; return;
    case ERNN_MERGE_MINIMUM: for (j = 0; j < n; ++j) out[j] = a[j] < b[j] ? a[j] : b[j]; return;
    default: for (j = 0; j < n; ++j) out[j] = a[j] + b[j]; return;
    }
}
#endif
