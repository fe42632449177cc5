/* The public API: buffer checks, state layout, and the step that runs the layers in order. */
#include <string.h>

#include "ernn_internal.h"

static ernn_status ernn_check(const ernn_model *m, const void *buffer, size_t bytes, uint32_t needed)
{
    if (!m || !buffer) return ERNN_ERR_NULL;
    if (!m->layers || m->n_layers < 1) return ERNN_ERR_MODEL;
    if (((uintptr_t)buffer & 3u) != 0) return ERNN_ERR_ALIGN;
    if (bytes < needed) return ERNN_ERR_SIZE;
    return ERNN_OK;
}

ernn_status ernn_reset(const ernn_model *m, void *state, size_t state_bytes)
{
    int32_t i, j;
    ernn_status status = ernn_check(m, state, state_bytes, m ? m->state_bytes : 0);
    if (status != ERNN_OK) return status;
    memset(state, 0, m->state_bytes); /* float zeros, int16 c = 0 */
    if (m->scheme == ERNN_SCHEME_INT8) {
        for (i = 0; i < m->n_layers; ++i) {
            const ernn_layer *L = &m->layers[i];
            if (L->kind <= ERNN_RNN) {
                int8_t *h = (int8_t *)state + L->state_h;
                for (j = 0; j < L->units; ++j) h[j] = (int8_t)L->zp_out; /* the int8 of 0.0 */
            }
        }
    }
    return ERNN_OK;
}

ernn_status ernn_init(const ernn_model *m, void *state, size_t state_bytes)
{
    if (m && (m->scheme < ERNN_SCHEME_INT8 || m->scheme > ERNN_SCHEME_FLOAT32)) return ERNN_ERR_MODEL;
    return ernn_reset(m, state, state_bytes);
}

ernn_status ernn_step_int8(const ernn_model *m, void *state, size_t state_bytes, void *scratch,
                           size_t scratch_bytes, const int8_t *x_q, int8_t *y_q)
{
    int32_t i, j, keep = 1;
    const int8_t *in = x_q;
    int8_t *s = (int8_t *)scratch;
    int32_t *work;
    ernn_status status = ernn_check(m, state, state_bytes, m ? m->state_bytes : 0);
    if (status != ERNN_OK) return status;
    status = ernn_check(m, scratch, scratch_bytes, m->scratch_bytes);
    if (status != ERNN_OK) return status;
    if (!x_q || !y_q) return ERNN_ERR_NULL;
    if (m->scheme != ERNN_SCHEME_INT8) return ERNN_ERR_SCHEME;
    work = (int32_t *)(void *)(s + m->off_work);
    for (i = 0; i < m->n_layers; ++i) {
        const ernn_layer *L = &m->layers[i];
        int8_t *out = i == m->n_layers - 1 ? y_q : s + ((i & 1) ? m->off_b : m->off_a);
        int8_t *h = (int8_t *)state + L->state_h;
        if (L->masked && !keep) { /* a masked step: state kept, output h or zeros */
            for (j = 0; j < L->units; ++j) out[j] = L->zero_output ? (int8_t)L->zp_out : h[j];
            in = out;
            continue;
        }
        switch (L->kind) {
        case ERNN_MASK: keep = ernn_mask_step_q(L, in, out); break;
        case ERNN_LSTM: ernn_lstm_step_q(L, in, h, (int16_t *)(void *)((int8_t *)state + L->state_c), out, work); break;
        case ERNN_GRU: ernn_gru_step_q(L, in, h, out, work); break;
        case ERNN_RNN: ernn_rnn_step_q(L, in, h, out, work); break;
        default: ernn_dense_step_q(L, in, out, work); break;
        }
        in = out;
    }
    return ERNN_OK;
}

#ifndef ERNN_NO_FLOAT
ernn_status ernn_quantize_input(const ernn_model *m, const float *x, int8_t *x_q)
{
    int32_t j;
    if (!m || !x || !x_q) return ERNN_ERR_NULL;
    if (m->scheme != ERNN_SCHEME_INT8) return ERNN_ERR_SCHEME;
    for (j = 0; j < m->input_features; ++j) {
        float t = x[j] / m->s_in + 0.5f;
        int32_t k;
        if (t != t) t = 0.0f; /* NaN */
        t = t < -1000.0f ? -1000.0f : (t > 1000.0f ? 1000.0f : t);
        k = (int32_t)t; /* toward zero, then floor */
        if ((float)k > t) k -= 1;
        x_q[j] = (int8_t)ernn_sat8((int64_t)k + m->zp_in);
    }
    return ERNN_OK;
}

ernn_status ernn_dequantize_output(const ernn_model *m, const int8_t *y_q, float *y)
{
    int32_t j;
    if (!m || !y_q || !y) return ERNN_ERR_NULL;
    if (m->scheme != ERNN_SCHEME_INT8) return ERNN_ERR_SCHEME;
    for (j = 0; j < m->output_features; ++j) y[j] = (float)((int32_t)y_q[j] - m->zp_out) * m->s_out;
    return ERNN_OK;
}

ernn_status ernn_step_float(const ernn_model *m, void *state, size_t state_bytes, void *scratch,
                            size_t scratch_bytes, const float *x, float *y)
{
    int32_t i, j, keep = 1;
    const float *in = x;
    int8_t *s = (int8_t *)scratch;
    float *work;
    ernn_status status = ernn_check(m, state, state_bytes, m ? m->state_bytes : 0);
    if (status != ERNN_OK) return status;
    status = ernn_check(m, scratch, scratch_bytes, m->scratch_bytes);
    if (status != ERNN_OK) return status;
    if (!x || !y) return ERNN_ERR_NULL;
    if (m->scheme == ERNN_SCHEME_INT8) {
        int8_t *qx = s + m->off_qx, *qy = s + m->off_qy;
        ernn_quantize_input(m, x, qx);
        status = ernn_step_int8(m, state, state_bytes, scratch, scratch_bytes, qx, qy);
        if (status == ERNN_OK) ernn_dequantize_output(m, qy, y);
        return status;
    }
    work = (float *)(void *)(s + m->off_work);
    for (i = 0; i < m->n_layers; ++i) {
        const ernn_layer *L = &m->layers[i];
        float *out = i == m->n_layers - 1 ? y : (float *)(void *)(s + ((i & 1) ? m->off_b : m->off_a));
        float *h = (float *)(void *)((int8_t *)state + L->state_h);
        if (L->masked && !keep) {
            for (j = 0; j < L->units; ++j) out[j] = L->zero_output ? 0.0f : h[j];
            in = out;
            continue;
        }
        switch (L->kind) {
        case ERNN_MASK: keep = ernn_mask_step_f(L, in, out); break;
        case ERNN_LSTM: ernn_lstm_step_f(L, in, h, (float *)(void *)((int8_t *)state + L->state_c), out, work); break;
        case ERNN_GRU: ernn_gru_step_f(L, in, h, out, work); break;
        case ERNN_RNN: ernn_rnn_step_f(L, in, h, out, work); break;
        default: ernn_dense_step_f(L, in, out); break;
        }
        in = out;
    }
    return ERNN_OK;
}
#endif
