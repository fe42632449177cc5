/* The public API: buffer checks, state layout, and the step that runs the layers in order. */
#include <string.h>

#include "ernn_internal.h"

/* The scheme and layer table: the part of the model every call checks. */
static int ernn_model_ok(const ernn_model *m)
{
    return m->layers && m->n_layers >= 1 && m->scheme >= ERNN_SCHEME_INT8 && m->scheme <= ERNN_SCHEME_FLOAT32;
}

uint32_t ernn_work_words(const ernn_layer *L, int integer)
{
    /* int8 recurrent layers: the pre-activations of their gates (ERNN_PAD4(units) rows each; LSTM and
     * GRU 4 of them (GRU: z, r, h and its r * h), SimpleRNN 1) and x and h expanded for the kernels;
     * int8 Conv1D: its window expanded and as bytes; float Conv1D: its window; float LSTM, GRU:
     * 4 units; Dense units; Masking, pooling, Embedding, merges none (in_size, units <= 65535 and
     * taps in_size <= 65535: no overflow). The outputs a graph keeps for a later layer are not work:
     * they have their own slots in the scratch (ernn_layer src, slot), after the work area. */
    const uint32_t units = (uint32_t)L->units, columns = (uint32_t)L->taps * (uint32_t)L->in_size;
    switch (L->kind) {
    case ERNN_MASK: case ERNN_POOL: case ERNN_EMBED: case ERNN_MERGE: return 0u;
    case ERNN_CONV: return integer ? (uint32_t)ERNN_PAD4(columns) + (uint32_t)ERNN_PAD4(columns) / 4u : columns;
    case ERNN_DENSE: return units;
    default:
        if (!integer) return (L->kind == ERNN_RNN ? 1u : 4u) * units;
        return (L->kind == ERNN_RNN ? 2u : 5u) * (uint32_t)ERNN_PAD4(L->units) + (uint32_t)ERNN_PAD4(L->in_size);
    }
}

/* [offset, offset + bytes) is a 4-byte aligned place within the stream state */
static int ernn_state_fits(const ernn_model *m, int32_t offset, uint64_t bytes)
{
    return offset >= 0 && offset % 4 == 0 && (uint64_t)(uint32_t)offset + bytes <= (uint64_t)m->state_bytes;
}

/* A Conv1D's or pooling's window options and state (value: bytes of a value in the ring). */
static int ernn_window_ok(const ernn_model *m, const ernn_layer *L, uint32_t value)
{
    uint64_t span, ring;
    if (L->taps < 1 || L->taps > 65535 || L->dilation < 1 || L->dilation > 65535 || L->strides < 1 || L->need < 0)
        return 0;
    span = (uint64_t)(L->taps - 1) * (uint64_t)L->dilation + 1u;
    if ((uint64_t)L->need > span - 1u) return 0;
    ring = (span - 1u) * (uint64_t)L->in_size * value;
    if (L->kind == ERNN_POOL) {
        if (L->pool < ERNN_POOL_MAX || L->pool > ERNN_POOL_GLOBAL_AVG || L->dilation != 1) return 0;
        if (L->pool >= ERNN_POOL_GLOBAL_MAX) ring = 4u * (uint64_t)L->in_size; /* running max / sum */
    } else if ((uint64_t)L->taps * (uint64_t)L->in_size > 65535u || L->groups < 1 || L->in_size % L->groups != 0
               || L->units % L->groups != 0) {
        return 0;
    }
    return ernn_state_fits(m, L->state_ring, ring) && ernn_state_fits(m, L->state_count, 12u);
}

/* Whether a layer's offsets, sizes and weight pointers fit the model's state and scratch layout
 * (ernn_init and ernn_reset; the steps trust what init accepted). width: the layer's input size. */
static int ernn_layer_ok(const ernn_model *m, const ernn_layer *L, int32_t width)
{
    const int integer = m->scheme == ERNN_SCHEME_INT8;
    const uint32_t value = integer ? 1u : 4u, units = (uint32_t)L->units;
    const int recurrent = L->kind <= ERNN_RNN, windowed = L->kind == ERNN_CONV || L->kind == ERNN_POOL;
    const int weights = recurrent || L->kind == ERNN_CONV || L->kind == ERNN_EMBED
                        || (L->kind == ERNN_DENSE && L->has_weights);
    if (L->kind < ERNN_LSTM || L->kind > ERNN_MERGE || L->units < 1 || L->units > 65535 || L->in_size != width)
        return 0;
    if (L->kind == ERNN_MERGE) /* two inputs, one of each's width; Concatenate: side by side */
        return L->merge >= ERNN_MERGE_ADD && L->merge <= ERNN_MERGE_MINIMUM && L->in_size2 >= 1
               && L->units == (L->merge == ERNN_MERGE_CONCAT ? L->in_size + L->in_size2 : L->in_size)
               && (L->merge == ERNN_MERGE_CONCAT || L->in_size2 == L->in_size)
               && units * value <= m->off_b - m->off_a && units * value <= m->off_work - m->off_b
               && (!integer || (L->mx && L->nx));
    if (!weights && L->units != width) return 0; /* Masking, standalone activation, pooling: elementwise */
    if (units * value > m->off_b - m->off_a || units * value > m->off_work - m->off_b) return 0;
    if (windowed && !ernn_window_ok(m, L, value)) return 0;
    if (4u * ernn_work_words(L, integer) > m->off_qx - m->off_work) return 0;
    if (recurrent) {
        if (!ernn_state_fits(m, L->state_h, units * value)) return 0;
        if (L->kind == ERNN_LSTM && !ernn_state_fits(m, L->state_c, units * (integer ? 2u : 4u))) return 0;
    }
    if (L->kind == ERNN_POOL) return 1;
    if (L->kind == ERNN_EMBED) /* the table: int8 (w, with sw in int8-weights) or float32 (wf) */
        return width == 1 && L->vocab >= 1 && L->vocab <= (1 << 24)
               && (integer ? L->w != NULL : (L->wf != NULL || (L->w != NULL && L->sw != NULL)));
    if (integer) {
        const int tiled = recurrent || (L->kind == ERNN_CONV && L->groups == 1);
        if (weights && (!(tiled ? L->wt : (const void *)L->w) || !L->bx)) return 0;
        if (recurrent && (!L->ut || !L->bh || !L->mh || !L->nh)) return 0;
        if (L->kind != ERNN_MASK && (!L->mx || !L->nx)) return 0;
        if ((L->kind == ERNN_LSTM || L->kind == ERNN_GRU) && (!L->lut_act || !L->lut_gate)) return 0;
        if (L->kind == ERNN_RNN && L->use_table && !L->lut_act) return 0;
        if ((L->kind == ERNN_DENSE || L->kind == ERNN_CONV) && L->mode == ERNN_MODE_TABLE && !L->lut_act) return 0;
        if (L->kind == ERNN_CONV && L->mode == ERNN_MODE_SOFTMAX) return 0;
        if (L->kind == ERNN_DENSE && L->mode == ERNN_MODE_SOFTMAX && (!L->exp_table || L->units > 2047))
            return 0; /* softmax: the int32 sum of units terms below 2^20 */
        if (L->kind == ERNN_LSTM && (L->cell_shift < 0 || L->cell_shift > 15)) return 0;
    } else if (weights) {
        if ((!L->wf && !L->w) || (!L->wf && !L->sw) || !L->bxf) return 0;
        if (recurrent && ((!L->uf && !L->u) || (!L->uf && !L->su) || !L->bhf)) return 0;
    }
    return 1;
}

/* The width of what layer i reads from src (ernn_layer: 0 the layer before, -1 the model's input, > 0
 * an earlier layer's slot, not the layer before's), or 0 when src names nothing it may read. */
static int32_t ernn_source_width(const ernn_model *m, int32_t i, int32_t src)
{
    int32_t j;
    if (src == 0) return i == 0 ? m->input_features : m->layers[i - 1].units;
    if (src == -1) return m->input_features;
    for (j = 0; j + 1 < i; ++j)
        if (m->layers[j].slot == src) return m->layers[j].units;
    return 0;
}

/* Layer i's slot (if any) and the int32 flag in the 4 bytes before it (did the layer write a new row
 * this step): 4-byte aligned, after the int8 input and output of the scratch, within it, apart from
 * every earlier layer's; not on the last layer (which writes the step's output). */
static int ernn_slot_ok(const ernn_model *m, int32_t i, uint32_t value)
{
    const ernn_layer *L = &m->layers[i];
    const uint64_t start = (uint64_t)m->off_qy + (value == 1u ? (uint32_t)m->output_features : 0u);
    const uint64_t bytes = (uint64_t)(uint32_t)L->units * value;
    int32_t j;
    if (L->slot == 0) return 1;
    if (L->slot < 0 || L->slot % 4 != 0 || i == m->n_layers - 1 || (uint64_t)L->slot < start + 4u
        || (uint64_t)L->slot + bytes > m->scratch_bytes) return 0;
    for (j = 0; j < i; ++j) { /* each slot and its flag apart from the others */
        const ernn_layer *K = &m->layers[j];
        if (K->slot != 0 && (uint64_t)K->slot - 4u < (uint64_t)L->slot + bytes
            && (uint64_t)L->slot - 4u < (uint64_t)K->slot + (uint64_t)(uint32_t)K->units * value) return 0;
    }
    return 1;
}

/* The whole model: every layer, the widths each reads and the scratch layout. */
static int ernn_model_consistent(const ernn_model *m)
{
    const uint32_t value = m->scheme == ERNN_SCHEME_INT8 ? 1u : 4u;
    int32_t i, width, windowed = 0;
    if (!ernn_model_ok(m) || m->input_features < 1 || m->input_features > 65535 || m->output_features < 1
        || m->output_features > 65535) return 0;
    if (m->off_a > m->off_b || m->off_b > m->off_work || m->off_work > m->off_qx || m->off_qx > m->off_qy
        || m->off_qy > m->scratch_bytes || ((m->off_a | m->off_b | m->off_work | m->off_qx | m->off_qy) & 3u) != 0)
        return 0;
    if ((uint32_t)m->input_features * value > m->off_b - m->off_a
        || (uint32_t)m->input_features * value > m->off_work - m->off_b) return 0; /* (a folded Normalization) */
    if (value == 1u && ((uint32_t)m->input_features > m->off_qy - m->off_qx
                        || (uint32_t)m->output_features > m->scratch_bytes - m->off_qy)) return 0;
    if ((m->in_offset == NULL) != (m->in_scale == NULL)) return 0;
    for (i = 0; i < m->n_layers; ++i) {
        const ernn_layer *L = &m->layers[i];
        width = ernn_source_width(m, i, L->src);
        if (!ernn_layer_ok(m, L, width) || (i > 0 && L->kind == ERNN_EMBED) || !ernn_slot_ok(m, i, value)) return 0;
        /* a merge's second input; any other layer reads one (src2 0) */
        if (L->kind == ERNN_MERGE ? ernn_source_width(m, i, L->src2) != L->in_size2 : L->src2 != 0) return 0;
        if (m->in_scale && L->src == -1 && i > 0) return 0; /* the folded Normalization's input is read once */
        windowed |= L->kind == ERNN_CONV || L->kind == ERNN_POOL;
    }
    if (windowed && !ernn_state_fits(m, m->state_emitted, 4u + (uint64_t)m->output_features * value)) return 0;
    if (!windowed && m->state_emitted != -1) return 0;
    return m->layers[m->n_layers - 1].units == m->output_features;
}

/* [p, p + n) and [q, q + k) share a byte (addresses compared as integers: no relational
 * comparison of pointers into different objects, which C leaves undefined). */
static int ernn_overlap(const void *p, size_t n, const void *q, size_t k)
{
    const uintptr_t a = (uintptr_t)p, b = (uintptr_t)q;
    return a < b + k && b < a + n;
}

static int ernn_misaligned(const void *p) { return ((uintptr_t)p & 3u) != 0; }

static ernn_status ernn_check_state(const ernn_model *m, const void *state, size_t state_bytes)
{
    if (!m || !state) return ERNN_ERR_NULL;
    if (!ernn_model_consistent(m)) return ERNN_ERR_MODEL;
    if (ernn_misaligned(state)) return ERNN_ERR_ALIGN;
    if (state_bytes < m->state_bytes) return ERNN_ERR_SIZE;
    return ERNN_OK;
}

/* The arguments of a step; value: the byte size of an input and output element (int8 1, float 4). */
/* codes: the call's input is an int32 code (ernn_step_code), which only a model of codes takes. */
static ernn_status ernn_check_step(const ernn_model *m, const void *state, size_t state_bytes, const void *scratch,
                                   size_t scratch_bytes, const void *x, size_t x_bytes, const void *y,
                                   size_t y_bytes, size_t value, int codes)
{
    size_t nx, ny;
    if (!m || !state || !scratch || !x || !y) return ERNN_ERR_NULL;
    if (!ernn_model_ok(m)) return ERNN_ERR_MODEL;
    if (value == 1u && (m->scheme != ERNN_SCHEME_INT8 || codes != (m->layers[0].kind == ERNN_EMBED)))
        return ERNN_ERR_SCHEME;
    if (ernn_misaligned(state) || ernn_misaligned(scratch)) return ERNN_ERR_ALIGN;
    if (state_bytes < m->state_bytes || scratch_bytes < m->scratch_bytes) return ERNN_ERR_SIZE;
    nx = (size_t)m->input_features * (codes ? 4u : value);
    ny = (size_t)m->output_features * value;
    if (x_bytes != nx || y_bytes != ny) return ERNN_ERR_LENGTH;
    if (ernn_overlap(state, m->state_bytes, scratch, m->scratch_bytes) || ernn_overlap(x, nx, y, ny)
        || ernn_overlap(x, nx, state, m->state_bytes) || ernn_overlap(x, nx, scratch, m->scratch_bytes)
        || ernn_overlap(y, ny, state, m->state_bytes) || ernn_overlap(y, ny, scratch, m->scratch_bytes))
        return ERNN_ERR_OVERLAP;
    return ERNN_OK;
}

ernn_status ernn_reset(const ernn_model *m, void *state, size_t state_bytes)
{
    int32_t i;
    ernn_status status = ernn_check_state(m, state, state_bytes);
    if (status != ERNN_OK) return status;
    memset(state, 0, m->state_bytes); /* float zeros, int16 c = 0, counters 0, emitted 0 */
    if (m->scheme == ERNN_SCHEME_INT8) { /* the int8 of 0.0: h, the rings of past inputs, the last output */
        for (i = 0; i < m->n_layers; ++i) {
            const ernn_layer *L = &m->layers[i];
            if (L->kind <= ERNN_RNN) memset((int8_t *)state + L->state_h, L->zp_out & 0xff, (size_t)L->units);
            if (L->kind == ERNN_CONV || (L->kind == ERNN_POOL && L->pool < ERNN_POOL_GLOBAL_MAX))
                memset((int8_t *)state + L->state_ring, L->zp_in & 0xff,
                       (size_t)((L->taps - 1) * L->dilation) * (size_t)L->in_size);
        }
        if (m->state_emitted >= 0) memset((int8_t *)state + m->state_emitted + 4, m->zp_out & 0xff, (size_t)m->output_features);
    }
    return ERNN_OK;
}

ernn_status ernn_init(const ernn_model *m, void *state, size_t state_bytes)
{
    return ernn_reset(m, state, state_bytes);
}

/* After the layers of a step: a model with Conv1D or pooling records whether the step emitted and
 * the row it emitted, or writes its last emitted row again into y (bytes: its size). */
static void ernn_emit(const ernn_model *m, void *state, int32_t emitted, void *y, size_t bytes)
{
    unsigned char *flag = (unsigned char *)state + m->state_emitted;
    if (m->state_emitted < 0) return;
    memcpy(flag, &emitted, sizeof emitted);
    if (emitted) memcpy(flag + 4, y, bytes);
    else memcpy(y, flag + 4, bytes);
}

/* Whether what a layer reads from src (ernn_layer) made a row this step: the layer before's output
 * if it emitted, the model's input always, a slot if the int32 flag in the 4 bytes before it says so. */
static int32_t ernn_fresh(const int8_t *s, int32_t src, int32_t emitted)
{
    int32_t flag;
    if (src == 0) return emitted;
    if (src < 0) return 1;
    memcpy(&flag, s + src - 4, sizeof flag);
    return flag;
}

/* A layer with a slot records whether it wrote a new row there this step (its flag). */
static void ernn_mark(int8_t *s, const ernn_layer *L, int32_t fresh)
{
    if (L->slot) memcpy(s + L->slot - 4, &fresh, sizeof fresh);
}

/* The int8 layers, in order (arguments checked by the caller). Each reads the layer before's output,
 * or (src, a graph) the input or an earlier layer's slot; a layer whose input made no row this step
 * (behind a Conv1D or pooling that did not emit) does not run. code: the input of a model of codes
 * (an Embedding first; x_q unused). */
static void ernn_run_int8(const ernn_model *m, void *state, int8_t *s, const int8_t *x_q, int32_t code, int8_t *y_q)
{
    int32_t i, j, keep = 1, emitted = 1;
    const int8_t *in = x_q, *previous;
    int32_t *work;
    work = (int32_t *)(void *)(s + m->off_work);
    for (i = 0; i < m->n_layers; ++i) {
        const ernn_layer *L = &m->layers[i];
        int8_t *out = i == m->n_layers - 1 ? y_q : s + (L->slot ? (uint32_t)L->slot : (i & 1) ? m->off_b : m->off_a);
        int8_t *h = (int8_t *)state + L->state_h;
        int32_t *counters = (int32_t *)(void *)((int8_t *)state + L->state_count);
        previous = in;
        if (L->src) { /* a graph: a branch from the input or a slot */
            emitted = ernn_fresh(s, L->src, emitted);
            in = L->src < 0 ? x_q : s + L->src;
        }
        if (!emitted) {
            ernn_mark(s, L, 0);
            continue;
        }
        if (L->masked && !keep) { /* a masked step: state kept, output h or zeros */
            for (j = 0; j < L->units; ++j) out[j] = L->zero_output ? (int8_t)L->zp_out : h[j];
            ernn_mark(s, L, 1);
            in = out;
            continue;
        }
        switch (L->kind) {
        case ERNN_MASK: keep = ernn_mask_step_q(L, in, out); break;
        case ERNN_EMBED: keep = ernn_embed_step_q(L, code, out); break;
        case ERNN_LSTM: ernn_lstm_step_q(L, in, h, (int16_t *)(void *)((int8_t *)state + L->state_c), out, work); break;
        case ERNN_GRU: ernn_gru_step_q(L, in, h, out, work); break;
        case ERNN_RNN: ernn_rnn_step_q(L, in, h, out, work); break;
        case ERNN_CONV: emitted = ernn_conv_step_q(L, in, (int8_t *)state + L->state_ring, counters, out, work); break;
        case ERNN_POOL: emitted = ernn_pool_step_q(L, in, (int8_t *)state + L->state_ring, counters, out); break;
        case ERNN_MERGE:
            ernn_merge_step_q(L, in, L->src2 == 0 ? previous : L->src2 < 0 ? x_q : s + L->src2, out);
            break;
        default: ernn_dense_step_q(L, in, out, work); break;
        }
        ernn_mark(s, L, emitted);
        in = out;
    }
    ernn_emit(m, state, emitted, y_q, (size_t)m->output_features);
}

ernn_status ernn_emitted(const ernn_model *m, const void *state, size_t state_bytes, int32_t *emitted)
{
    if (!m || !state || !emitted) return ERNN_ERR_NULL;
    if (!ernn_model_ok(m)) return ERNN_ERR_MODEL;
    if (ernn_misaligned(state)) return ERNN_ERR_ALIGN;
    if (state_bytes < m->state_bytes) return ERNN_ERR_SIZE;
    if (ernn_overlap(state, m->state_bytes, emitted, sizeof *emitted)) return ERNN_ERR_OVERLAP;
    if (m->state_emitted < 0) *emitted = 1;
    else memcpy(emitted, (const unsigned char *)state + m->state_emitted, sizeof *emitted);
    return ERNN_OK;
}

ernn_status ernn_step_int8(const ernn_model *m, void *state, size_t state_bytes, void *scratch,
                           size_t scratch_bytes, const int8_t *x_q, size_t x_q_bytes, int8_t *y_q,
                           size_t y_q_bytes)
{
    ernn_status status = ernn_check_step(m, state, state_bytes, scratch, scratch_bytes, x_q, x_q_bytes, y_q,
                                         y_q_bytes, 1u, 0);
    if (status == ERNN_OK) ernn_run_int8(m, state, (int8_t *)scratch, x_q, 0, y_q);
    return status;
}

ernn_status ernn_step_code(const ernn_model *m, void *state, size_t state_bytes, void *scratch, size_t scratch_bytes,
                           const int32_t *code, size_t code_bytes, int8_t *y_q, size_t y_q_bytes)
{
    ernn_status status = ernn_check_step(m, state, state_bytes, scratch, scratch_bytes, code, code_bytes, y_q,
                                         y_q_bytes, 1u, 1);
    if (status != ERNN_OK) return status;
    if (*code < 0 || *code >= m->layers[0].vocab) return ERNN_ERR_CODE;
    ernn_run_int8(m, state, (int8_t *)scratch, NULL, *code, y_q);
    return ERNN_OK;
}

#ifndef ERNN_NO_FLOAT
/* The arguments of the int8 helpers: in (n_in elements of in_value bytes) -> out (out_value bytes each). */
static ernn_status ernn_check_convert(const ernn_model *m, const void *in, size_t in_bytes, size_t in_value,
                                      const void *out, size_t out_bytes, size_t out_value, int32_t n)
{
    if (!m || !in || !out) return ERNN_ERR_NULL;
    if (!ernn_model_ok(m)) return ERNN_ERR_MODEL;
    if (m->scheme != ERNN_SCHEME_INT8 || (in_value == 4u && m->layers[0].kind == ERNN_EMBED)) return ERNN_ERR_SCHEME;
    if (in_bytes != (size_t)n * in_value || out_bytes != (size_t)n * out_value) return ERNN_ERR_LENGTH;
    if (ernn_overlap(in, in_bytes, out, out_bytes)) return ERNN_ERR_OVERLAP;
    return ERNN_OK;
}

ernn_status ernn_quantize_input(const ernn_model *m, const float *x, size_t x_bytes, int8_t *x_q,
                                size_t x_q_bytes)
{
    int32_t j;
    ernn_status status = ernn_check_convert(m, x, x_bytes, sizeof *x, x_q, x_q_bytes, 1u, m ? m->input_features : 0);
    if (status != ERNN_OK) return status;
    for (j = 0; j < m->input_features; ++j) {
        float t = (m->in_scale ? (x[j] - m->in_offset[j]) / m->in_scale[j] : x[j] / m->s_in) + 0.5f;
        int32_t k;
        if (t != t) t = 0.0f; /* NaN */
        t = t < -1000.0f ? -1000.0f : (t > 1000.0f ? 1000.0f : t);
        k = (int32_t)t; /* toward zero, then floor */
        if ((float)k > t) k -= 1;
        x_q[j] = (int8_t)ernn_sat8((int64_t)k + m->zp_in);
    }
    return ERNN_OK;
}

ernn_status ernn_dequantize_output(const ernn_model *m, const int8_t *y_q, size_t y_q_bytes, float *y,
                                   size_t y_bytes)
{
    int32_t j;
    ernn_status status = ernn_check_convert(m, y_q, y_q_bytes, 1u, y, y_bytes, sizeof *y, m ? m->output_features : 0);
    if (status != ERNN_OK) return status;
    for (j = 0; j < m->output_features; ++j) y[j] = (float)((int32_t)y_q[j] - m->zp_out) * m->s_out;
    return ERNN_OK;
}

/* The code of a model of codes in [0, vocab), or -1 given as a float (NaN, out of range, not an integer). */
static int32_t ernn_code_of(const ernn_model *m, float x)
{
    return x >= 0.0f && x < (float)m->layers[0].vocab && x == (float)(int32_t)x ? (int32_t)x : -1;
}

ernn_status ernn_step_float(const ernn_model *m, void *state, size_t state_bytes, void *scratch,
                            size_t scratch_bytes, const float *x, size_t x_bytes, float *y, size_t y_bytes)
{
    int32_t i, j, keep = 1, emitted = 1, code = 0;
    const float *in = x, *first, *previous;
    int8_t *s = (int8_t *)scratch;
    float *work;
    ernn_status status = ernn_check_step(m, state, state_bytes, scratch, scratch_bytes, x, x_bytes, y, y_bytes,
                                         sizeof *x, 0);
    if (status != ERNN_OK) return status;
    if (m->layers[0].kind == ERNN_EMBED) { /* a model of codes: x[0] is the code */
        code = ernn_code_of(m, x[0]);
        if (code < 0) return ERNN_ERR_CODE;
    }
    if (m->scheme == ERNN_SCHEME_INT8 && m->layers[0].kind == ERNN_EMBED) {
        int8_t *qy = s + m->off_qy;
        ernn_run_int8(m, state, s, NULL, code, qy);
        return ernn_dequantize_output(m, qy, (size_t)m->output_features, y, y_bytes);
    }
    if (m->scheme == ERNN_SCHEME_INT8) { /* qx, qy: the int8 input and output, in the scratch */
        int8_t *qx = s + m->off_qx, *qy = s + m->off_qy;
        ernn_quantize_input(m, x, x_bytes, qx, (size_t)m->input_features);
        ernn_run_int8(m, state, s, qx, 0, qy);
        return ernn_dequantize_output(m, qy, (size_t)m->output_features, y, y_bytes);
    }
    work = (float *)(void *)(s + m->off_work);
    if (m->in_scale) { /* a Normalization folded into the input: into b, which the first layer does not write */
        float *standardized = (float *)(void *)(s + m->off_b);
        for (j = 0; j < m->input_features; ++j) standardized[j] = (x[j] - m->in_offset[j]) / m->in_scale[j];
        in = standardized;
    }
    first = in;
    for (i = 0; i < m->n_layers; ++i) {
        const ernn_layer *L = &m->layers[i];
        float *out = i == m->n_layers - 1 ? y : (float *)(void *)(s + (L->slot ? (uint32_t)L->slot : (i & 1) ? m->off_b : m->off_a));
        float *h = (float *)(void *)((int8_t *)state + L->state_h);
        float *ring = (float *)(void *)((int8_t *)state + L->state_ring);
        int32_t *counters = (int32_t *)(void *)((int8_t *)state + L->state_count);
        previous = in;
        if (L->src) { /* a graph: a branch from the input or a slot */
            emitted = ernn_fresh(s, L->src, emitted);
            in = L->src < 0 ? first : (const float *)(const void *)(s + L->src);
        }
        if (!emitted) {
            ernn_mark(s, L, 0);
            continue;
        }
        if (L->masked && !keep) {
            for (j = 0; j < L->units; ++j) out[j] = L->zero_output ? 0.0f : h[j];
            ernn_mark(s, L, 1);
            in = out;
            continue;
        }
        switch (L->kind) {
        case ERNN_MASK: keep = ernn_mask_step_f(L, in, out); break;
        case ERNN_EMBED: keep = ernn_embed_step_f(L, code, out); break;
        case ERNN_LSTM: ernn_lstm_step_f(L, in, h, (float *)(void *)((int8_t *)state + L->state_c), out, work); break;
        case ERNN_GRU: ernn_gru_step_f(L, in, h, out, work); break;
        case ERNN_RNN: ernn_rnn_step_f(L, in, h, out, work); break;
        case ERNN_CONV: emitted = ernn_conv_step_f(L, in, ring, counters, out, work); break;
        case ERNN_POOL: emitted = ernn_pool_step_f(L, in, ring, counters, out); break;
        case ERNN_MERGE:
            ernn_merge_step_f(L, in, L->src2 == 0 ? previous : L->src2 < 0 ? first
                                     : (const float *)(const void *)(s + L->src2), out);
            break;
        default: ernn_dense_step_f(L, in, out); break;
        }
        ernn_mark(s, L, emitted);
        in = out;
    }
    ernn_emit(m, state, emitted, y, y_bytes);
    return ERNN_OK;
}
#endif
