/* float32 activations of the float32 and int8-weights schemes; twin of edgernn/quantize/activations.py
 * (and the float row loops ernn_dot_f / ernn_preact_f, twins of dot_f / preact_f in fixedpoint.py).
 * Only IEEE +, -, *, / and comparisons, in a fixed order: build with -ffp-contract=off and the
 * results are bit-exact with the Python simulation. No libm. */
#ifndef ERNN_NO_FLOAT
#include <string.h>

#include "ernn_internal.h"

/* tanh: x P(x^2) / Q(x^2) on [-7.905, 7.905] (|error| < 4e-7) */
static float ernn_tanh_f(float v)
{
    float v2, p, q;
    if (v > 7.90531110763549805f) v = 7.90531110763549805f;
    else if (v < -7.90531110763549805f) v = -7.90531110763549805f;
    v2 = v * v;
    p = ((((((-2.76076847742355e-16f * v2 + 2.00018790482477e-13f) * v2 + -8.60467152213735e-11f) * v2
           + 5.12229709037114e-08f) * v2 + 1.48572235717979e-05f) * v2 + 6.37261928875436e-04f) * v2
         + 4.89352455891786e-03f) * v;
    q = ((1.19825839466702e-06f * v2 + 1.18534705686654e-04f) * v2 + 2.26843463243900e-03f) * v2 + 4.89352518554385e-03f;
    return p / q;
}

/* e^v: k = floor(v log2(e) + 1/2), r = v - k ln2 (two parts), degree-6 polynomial, times 2^k */
static float ernn_exp_f(float v)
{
    float t, kf, r, p, scale;
    int32_t k;
    uint32_t bits;
    if (v != v) return v; /* NaN (a NaN input reached a softmax): (int32_t)NaN below is undefined in C */
    if (v < -87.0f) v = -87.0f;
    else if (v > 88.0f) v = 88.0f;
    t = v * 1.44269504088896341f + 0.5f;
    k = (int32_t)t;
    if (t < 0.0f && (float)k != t) k -= 1;
    kf = (float)k;
    r = (v - kf * 0.693145751953125f) - kf * 1.42860682030941723212e-6f;
    p = 1.0f + r * (1.0f + r * (0.5f + r * (0.16666666666666666f + r * (0.041666666666666664f
        + r * (0.008333333333333333f + r * 0.001388888888888889f)))));
    bits = (uint32_t)(k + 127) << 23;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

float ernn_act_f(int32_t kind, float v)
{
    switch (kind) {
    case ERNN_ACT_RELU: return v > 0.0f ? v : 0.0f;
    case ERNN_ACT_SIGMOID: return 0.5f + 0.5f * ernn_tanh_f(0.5f * v);
    case ERNN_ACT_TANH: return ernn_tanh_f(v);
    case ERNN_ACT_HARD_SIGMOID:
        v = v + 3.0f;
        v = v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v);
        return v / 6.0f;
    case ERNN_ACT_HARD_SIGMOID_KERAS2:
        v = 0.2f * v + 0.5f;
        return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
    case ERNN_ACT_HARD_TANH: return v < -1.0f ? -1.0f : (v > 1.0f ? 1.0f : v);
    case ERNN_ACT_SOFTSIGN: return v / (1.0f + (v >= 0.0f ? v : -v));
    case ERNN_ACT_RELU6: return v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v);
    default: return v;
    }
}

void ernn_act_row_f(int32_t kind, float *row, int32_t n)
{
    int32_t j;
    if (kind == ERNN_ACT_SOFTMAX) {
        float top = row[0], total = 0.0f;
        for (j = 1; j < n; ++j)
            if (row[j] > top) top = row[j];
        for (j = 0; j < n; ++j) {
            row[j] = ernn_exp_f(row[j] - top);
            total = total + row[j];
        }
        for (j = 0; j < n; ++j) row[j] = row[j] / total;
    } else if (kind != ERNN_ACT_LINEAR) {
        for (j = 0; j < n; ++j) row[j] = ernn_act_f(kind, row[j]);
    }
}

float ernn_dot_f(const float *x, const float *wf, const int8_t *wq, int32_t n)
{
    float acc = 0.0f;
    int32_t k;
    if (wf) {
        for (k = 0; k < n; ++k) acc = acc + x[k] * wf[k];
    } else {
        for (k = 0; k < n; ++k) acc = acc + x[k] * (float)wq[k];
    }
    return acc;
}

/* twin of preact_f in edgernn/quantize/fixedpoint.py */
void ernn_preact_f(const ernn_layer *L, const float *x, const float *h, float *pre, int32_t rows)
{
    const int32_t units = L->units, features = L->in_size;
    int32_t r;
    for (r = 0; r < rows; ++r) {
        float ax = ernn_dot_f(x, L->wf ? L->wf + (size_t)r * features : NULL, L->w ? L->w + (size_t)r * features : NULL, features);
        float ah = ernn_dot_f(h, L->uf ? L->uf + (size_t)r * units : NULL, L->u ? L->u + (size_t)r * units : NULL, units);
        if (L->sw) {
            ax = ax * L->sw[r];
            ah = ah * L->su[r];
        }
        pre[r] = (ax + L->bxf[r]) + (ah + L->bhf[r]);
    }
}
#else
typedef int ernn_floatmath_unused; /* ISO C forbids an empty translation unit */
#endif
