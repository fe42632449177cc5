/* Every public function of ernn.h, called with each bad argument in turn: the exact status, and a
 * refused call changes nothing (state, scratch, outputs). A stream whose steps are interleaved with
 * refused calls ends bit for bit where a stream without them ends.
 *
 * Compiles against any exported folder whose model is named `net` (tests/test_firmware_hostile.py):
 *   cc -std=c99 -I FOLDER FOLDER/ernn_*.c FOLDER/net_model.c test_status.c
 * Prints each failed expectation and their number; exit status 1 if any. */
#include <stdio.h>
#include <string.h>

#include "net_model.h"

#define IN NET_INPUT_FEATURES
#define OUT NET_OUTPUT_FEATURES
#define STEPS 40
#define INT8 (NET_SCHEME == ERNN_SCHEME_INT8)
/* a model of integer codes (an Embedding first): ernn_step_code, or the code as ernn_step_float's x[0] */
#define CODES (net_model.layers[0].kind == ERNN_EMBED)

/* one word more than the model needs, so a pointer moved by a byte still has the room */
static int32_t state[NET_STATE_WORDS + 1], scratch[NET_SCRATCH_WORDS + 1];
static int32_t ref_state[NET_STATE_WORDS + 1];
static int fails;

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) {                                                          \
            printf("%s:%d: %s\n", __FILE__, __LINE__, #cond);                   \
            ++fails;                                                            \
        }                                                                       \
    } while (0)

/* buffers a refused call must leave alone: snapshot, call, compare */
static unsigned char saved_state[sizeof state], saved_scratch[sizeof scratch];
static float x[IN], y[OUT], saved_y[OUT];
static int8_t xq[IN], yq[OUT], saved_xq[IN], saved_yq[OUT];
static int32_t flag, saved_flag; /* ernn_emitted's output */
static int32_t code;               /* the step's code (a model of codes) */

static void snapshot(void)
{
    memcpy(saved_state, state, sizeof state);
    memcpy(saved_scratch, scratch, sizeof scratch);
    memcpy(saved_y, y, sizeof y);
    memcpy(saved_xq, xq, sizeof xq);
    memcpy(saved_yq, yq, sizeof yq);
    saved_flag = flag;
}

static int unchanged(void)
{
    return !memcmp(saved_state, state, sizeof state) && !memcmp(saved_scratch, scratch, sizeof scratch)
           && !memcmp(saved_y, y, sizeof y) && !memcmp(saved_xq, xq, sizeof xq) && !memcmp(saved_yq, yq, sizeof yq)
           && saved_flag == flag;
}

/* call refused with code, nothing written */
#define REFUSED(call, code)                                                     \
    do {                                                                        \
        ernn_status got_;                                                       \
        snapshot();                                                             \
        got_ = (call);                                                          \
        if (got_ != (code)) {                                                   \
            printf("%s:%d: %s returned %d, not %s\n", __FILE__, __LINE__, #call, (int)got_, #code); \
            ++fails;                                                            \
        }                                                                       \
        if (!unchanged()) {                                                     \
            printf("%s:%d: %s wrote to a buffer\n", __FILE__, __LINE__, #call); \
            ++fails;                                                            \
        }                                                                       \
    } while (0)

#define S state, NET_STATE_BYTES
#define W scratch, NET_SCRATCH_BYTES

/* inconsistent copies of the model: each one field wrong */
static ernn_model bad_models[24];
static ernn_layer bad_layers[13][64];
static int n_bad;

/* the index of the model's first Conv1D or pooling, -1 if none */
static int first_window(void)
{
    int i;
    for (i = 0; i < net_model.n_layers; ++i)
        if (net_model.layers[i].kind == ERNN_CONV || net_model.layers[i].kind == ERNN_POOL) return i;
    return -1;
}

/* the index of the model's first merge (a graph), -1 if none; *kept: the first layer with a slot */
static int first_merge(int *kept)
{
    int i;
    *kept = -1;
    for (i = net_model.n_layers - 1; i >= 0; --i)
        if (net_model.layers[i].slot != 0) *kept = i;
    for (i = 0; i < net_model.n_layers; ++i)
        if (net_model.layers[i].kind == ERNN_MERGE) return i;
    return -1;
}

static void make_bad_models(void)
{
    const int n = net_model.n_layers < 64 ? net_model.n_layers : 64;
    int i, weighted = 0; /* the first layer with weights (not a Masking) */
    while (net_model.layers[weighted].kind == ERNN_MASK) ++weighted;
    for (i = 0; i < 8; ++i) bad_models[i] = net_model;
    bad_models[0].layers = NULL;
    bad_models[1].n_layers = 0;
    bad_models[2].scheme = 7;
    bad_models[3].scheme = -1;
    /* the rest are caught by ernn_init / ernn_reset, which check every layer */
    bad_models[4].output_features = OUT + 1;
    bad_models[5].off_work = NET_SCRATCH_BYTES; /* no room for the work area */
    for (i = 0; i < 4; ++i) memcpy(bad_layers[i], net_model.layers, (size_t)n * sizeof(ernn_layer));
    bad_layers[0][0].in_size = IN + 1;
    bad_layers[1][0].kind = 9;
    bad_layers[2][0].units = 0;
    bad_layers[3][weighted].bx = NULL; /* a layer without its biases (int8: bx, float: bxf) */
    bad_layers[3][weighted].bxf = NULL;
    if (CODES) bad_layers[3][0].w = NULL, bad_layers[3][0].wf = NULL; /* an Embedding without its table */
    bad_models[6].layers = bad_layers[0];
    bad_models[7].layers = bad_layers[1];
    n_bad = 8;
    /* a window's options and state, and the emitted flag's place */
    bad_models[n_bad] = net_model;
    bad_models[n_bad++].state_emitted = first_window() < 0 ? 0 : -1; /* a flag it does not (does) need */
    if (first_window() >= 0) {
        const int w = first_window();
        const ernn_layer *L = &net_model.layers[w];
        for (i = 4; i < 8; ++i) memcpy(bad_layers[i], net_model.layers, (size_t)n * sizeof(ernn_layer));
        bad_layers[4][w].taps = 0;
        bad_layers[5][w].state_count = (int32_t)NET_STATE_BYTES - 8; /* the counters past the state */
        bad_layers[6][w].need = (L->taps - 1) * L->dilation + 1; /* more than the window holds */
        if (L->kind == ERNN_CONV) bad_layers[7][w].groups = L->in_size + 1; /* not a divisor */
        else bad_layers[7][w].pool = 4;
        for (i = 4; i < 8; ++i) {
            bad_models[n_bad] = net_model;
            bad_models[n_bad++].layers = bad_layers[i];
        }
        bad_models[n_bad] = net_model;
        bad_models[n_bad++].state_emitted = (int32_t)NET_STATE_BYTES - 2; /* misaligned, past the state */
    }
    /* a graph: a merge's options and what it reads, a kept output's slot */
    {
        int kept, g = first_merge(&kept);
        if (g >= 0 && kept >= 0) {
            for (i = 8; i < 13; ++i) memcpy(bad_layers[i], net_model.layers, (size_t)n * sizeof(ernn_layer));
            bad_layers[8][g].merge = ERNN_MERGE_MINIMUM + 1; /* no such merge */
            bad_layers[9][g].in_size2 += 1; /* not the width of what src2 names */
            bad_layers[10][g].src2 = 2; /* no layer's slot */
            bad_layers[11][kept].slot = (int32_t)NET_SCRATCH_BYTES - 4; /* past the scratch */
            bad_layers[12][kept].slot = 4; /* inside the buffers of the chain's steps */
            for (i = 8; i < 13; ++i) {
                bad_models[n_bad] = net_model;
                bad_models[n_bad++].layers = bad_layers[i];
            }
        }
    }
}

static void bad_emitted(void)
{
    int i;
    REFUSED(ernn_emitted(NULL, S, &flag), ERNN_ERR_NULL);
    REFUSED(ernn_emitted(&net_model, NULL, NET_STATE_BYTES, &flag), ERNN_ERR_NULL);
    REFUSED(ernn_emitted(&net_model, S, NULL), ERNN_ERR_NULL);
    for (i = 0; i < 4; ++i) REFUSED(ernn_emitted(&bad_models[i], S, &flag), ERNN_ERR_MODEL);
    REFUSED(ernn_emitted(&net_model, (char *)state + 1, NET_STATE_BYTES, &flag), ERNN_ERR_ALIGN);
    REFUSED(ernn_emitted(&net_model, state, NET_STATE_BYTES - 1, &flag), ERNN_ERR_SIZE);
    REFUSED(ernn_emitted(&net_model, S, (int32_t *)state), ERNN_ERR_OVERLAP);
}

static void bad_init_and_reset(void)
{
    ernn_layer copy[64];
    ernn_model m = net_model;
    int i;
    REFUSED(ernn_init(NULL, S), ERNN_ERR_NULL);
    REFUSED(ernn_init(&net_model, NULL, NET_STATE_BYTES), ERNN_ERR_NULL);
    REFUSED(ernn_init(&net_model, (char *)state + 1, NET_STATE_BYTES), ERNN_ERR_ALIGN);
    REFUSED(ernn_init(&net_model, (char *)state + 2, NET_STATE_BYTES), ERNN_ERR_ALIGN);
    REFUSED(ernn_init(&net_model, state, NET_STATE_BYTES - 1), ERNN_ERR_SIZE);
    REFUSED(ernn_init(&net_model, state, 0), ERNN_ERR_SIZE);
    REFUSED(ernn_reset(NULL, S), ERNN_ERR_NULL);
    REFUSED(ernn_reset(&net_model, NULL, NET_STATE_BYTES), ERNN_ERR_NULL);
    REFUSED(ernn_reset(&net_model, (char *)state + 3, NET_STATE_BYTES), ERNN_ERR_ALIGN);
    REFUSED(ernn_reset(&net_model, state, NET_STATE_BYTES - 4), ERNN_ERR_SIZE);
    for (i = 0; i < n_bad; ++i) {
        REFUSED(ernn_init(&bad_models[i], S), ERNN_ERR_MODEL);
        REFUSED(ernn_reset(&bad_models[i], S), ERNN_ERR_MODEL);
    }
    m.layers = bad_layers[2];
    REFUSED(ernn_init(&m, S), ERNN_ERR_MODEL);
    m.layers = bad_layers[3];
    REFUSED(ernn_init(&m, S), ERNN_ERR_MODEL);
    /* a state offset past the state buffer, in the last recurrent layer */
    memcpy(copy, net_model.layers, (size_t)net_model.n_layers * sizeof(ernn_layer));
    for (i = net_model.n_layers - 1; i >= 0; --i) {
        if (copy[i].kind <= ERNN_RNN) {
            copy[i].state_h = (int32_t)NET_STATE_BYTES;
            break;
        }
    }
    m.layers = copy;
    if (i >= 0) REFUSED(ernn_init(&m, S), ERNN_ERR_MODEL);
    m = net_model;
    m.state_bytes = 0xfffffff0u; /* a consistent model, whose state the buffer cannot hold */
    REFUSED(ernn_init(&m, S), ERNN_ERR_SIZE);
}

/* a step of the int8 API with every bad argument in turn */
static void bad_step_int8(void)
{
    static int8_t both[IN + OUT];
    int i;
    REFUSED(ernn_step_int8(NULL, S, W, xq, IN, yq, OUT), ERNN_ERR_NULL);
    REFUSED(ernn_step_int8(&net_model, NULL, NET_STATE_BYTES, W, xq, IN, yq, OUT), ERNN_ERR_NULL);
    REFUSED(ernn_step_int8(&net_model, S, NULL, NET_SCRATCH_BYTES, xq, IN, yq, OUT), ERNN_ERR_NULL);
    REFUSED(ernn_step_int8(&net_model, S, W, NULL, IN, yq, OUT), ERNN_ERR_NULL);
    REFUSED(ernn_step_int8(&net_model, S, W, xq, IN, NULL, OUT), ERNN_ERR_NULL);
    for (i = 0; i < 4; ++i) REFUSED(ernn_step_int8(&bad_models[i], S, W, xq, IN, yq, OUT), ERNN_ERR_MODEL);
    if (!INT8 || CODES) { /* a model of codes steps codes (ernn_step_code) */
        REFUSED(ernn_step_int8(&net_model, S, W, xq, IN, yq, OUT), ERNN_ERR_SCHEME);
        return;
    }
    REFUSED(ernn_step_int8(&net_model, (char *)state + 1, NET_STATE_BYTES, W, xq, IN, yq, OUT), ERNN_ERR_ALIGN);
    REFUSED(ernn_step_int8(&net_model, S, (char *)scratch + 2, NET_SCRATCH_BYTES, xq, IN, yq, OUT), ERNN_ERR_ALIGN);
    REFUSED(ernn_step_int8(&net_model, state, NET_STATE_BYTES - 1, W, xq, IN, yq, OUT), ERNN_ERR_SIZE);
    REFUSED(ernn_step_int8(&net_model, S, scratch, NET_SCRATCH_BYTES - 1, xq, IN, yq, OUT), ERNN_ERR_SIZE);
    REFUSED(ernn_step_int8(&net_model, S, W, xq, IN - 1, yq, OUT), ERNN_ERR_LENGTH);
    REFUSED(ernn_step_int8(&net_model, S, W, xq, IN + 1, yq, OUT), ERNN_ERR_LENGTH);
    REFUSED(ernn_step_int8(&net_model, S, W, xq, 0, yq, OUT), ERNN_ERR_LENGTH);
    REFUSED(ernn_step_int8(&net_model, S, W, xq, IN, yq, OUT - 1), ERNN_ERR_LENGTH);
    REFUSED(ernn_step_int8(&net_model, S, W, xq, IN, yq, 4 * OUT), ERNN_ERR_LENGTH);
    REFUSED(ernn_step_int8(&net_model, state, NET_STATE_BYTES, state, NET_SCRATCH_BYTES, xq, IN, yq, OUT),
            ERNN_ERR_OVERLAP);
    REFUSED(ernn_step_int8(&net_model, S, W, (const int8_t *)scratch + 1, IN, yq, OUT), ERNN_ERR_OVERLAP);
    REFUSED(ernn_step_int8(&net_model, S, W, (const int8_t *)state, IN, yq, OUT), ERNN_ERR_OVERLAP);
    REFUSED(ernn_step_int8(&net_model, S, W, xq, IN, (int8_t *)scratch + NET_SCRATCH_BYTES - 1, OUT),
            ERNN_ERR_OVERLAP);
    REFUSED(ernn_step_int8(&net_model, S, W, xq, IN, (int8_t *)state, OUT), ERNN_ERR_OVERLAP);
    REFUSED(ernn_step_int8(&net_model, S, W, both, IN, both + IN - 1, OUT), ERNN_ERR_OVERLAP);
}

/* ernn_step_code: a model of codes in the int8 scheme only; a code out of [0, vocab) is ERNN_ERR_CODE */
static void bad_step_code(void)
{
    static int32_t bad_codes[] = {-1, 0, INT32_MIN, INT32_MAX}, both[1 + OUT];
    const int32_t good = code;
    size_t i;
    REFUSED(ernn_step_code(NULL, S, W, &code, sizeof code, yq, OUT), ERNN_ERR_NULL);
    REFUSED(ernn_step_code(&net_model, S, W, NULL, sizeof code, yq, OUT), ERNN_ERR_NULL);
    REFUSED(ernn_step_code(&net_model, S, W, &code, sizeof code, NULL, OUT), ERNN_ERR_NULL);
    for (i = 0; i < 4; ++i) REFUSED(ernn_step_code(&bad_models[i], S, W, &code, sizeof code, yq, OUT), ERNN_ERR_MODEL);
    if (!INT8 || !CODES) {
        REFUSED(ernn_step_code(&net_model, S, W, &code, sizeof code, yq, OUT), ERNN_ERR_SCHEME);
        return;
    }
    REFUSED(ernn_step_code(&net_model, (char *)state + 1, NET_STATE_BYTES, W, &code, sizeof code, yq, OUT),
            ERNN_ERR_ALIGN);
    REFUSED(ernn_step_code(&net_model, state, NET_STATE_BYTES - 1, W, &code, sizeof code, yq, OUT), ERNN_ERR_SIZE);
    REFUSED(ernn_step_code(&net_model, S, W, &code, 1, yq, OUT), ERNN_ERR_LENGTH); /* bytes of an int32 */
    REFUSED(ernn_step_code(&net_model, S, W, &code, sizeof code, yq, OUT + 1), ERNN_ERR_LENGTH);
    REFUSED(ernn_step_code(&net_model, S, W, (const int32_t *)state, sizeof code, yq, OUT), ERNN_ERR_OVERLAP);
    REFUSED(ernn_step_code(&net_model, S, W, both, sizeof code, (int8_t *)both + 3, OUT), ERNN_ERR_OVERLAP);
    bad_codes[1] = net_model.layers[0].vocab;
    for (i = 0; i < sizeof bad_codes / sizeof bad_codes[0]; ++i) {
        code = bad_codes[i];
        REFUSED(ernn_step_code(&net_model, S, W, &code, sizeof code, yq, OUT), ERNN_ERR_CODE);
    }
    code = good;
}

#ifndef ERNN_NO_FLOAT
/* a model of codes: ernn_step_float's x[0] that is no code in [0, vocab) is ERNN_ERR_CODE */
static void bad_float_codes(void)
{
    const float good = x[0], zero = 0.0f;
    float bad[5];
    size_t i;
    if (!CODES) return;
    bad[0] = -1.0f;
    bad[1] = (float)net_model.layers[0].vocab;
    bad[2] = 0.5f;
    bad[3] = zero / zero; /* NaN */
    bad[4] = 1e30f;
    for (i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
        x[0] = bad[i];
        REFUSED(ernn_step_float(&net_model, S, W, x, sizeof x, y, sizeof y), ERNN_ERR_CODE);
    }
    x[0] = good;
}

static void bad_step_float(void)
{
    static float big[IN + OUT];
    int i;
    REFUSED(ernn_step_float(NULL, S, W, x, sizeof x, y, sizeof y), ERNN_ERR_NULL);
    REFUSED(ernn_step_float(&net_model, NULL, NET_STATE_BYTES, W, x, sizeof x, y, sizeof y), ERNN_ERR_NULL);
    REFUSED(ernn_step_float(&net_model, S, NULL, NET_SCRATCH_BYTES, x, sizeof x, y, sizeof y), ERNN_ERR_NULL);
    REFUSED(ernn_step_float(&net_model, S, W, NULL, sizeof x, y, sizeof y), ERNN_ERR_NULL);
    REFUSED(ernn_step_float(&net_model, S, W, x, sizeof x, NULL, sizeof y), ERNN_ERR_NULL);
    for (i = 0; i < 4; ++i) REFUSED(ernn_step_float(&bad_models[i], S, W, x, sizeof x, y, sizeof y), ERNN_ERR_MODEL);
    REFUSED(ernn_step_float(&net_model, (char *)state + 2, NET_STATE_BYTES, W, x, sizeof x, y, sizeof y), ERNN_ERR_ALIGN);
    REFUSED(ernn_step_float(&net_model, S, (char *)scratch + 1, NET_SCRATCH_BYTES, x, sizeof x, y, sizeof y), ERNN_ERR_ALIGN);
    REFUSED(ernn_step_float(&net_model, state, NET_STATE_BYTES - 4, W, x, sizeof x, y, sizeof y), ERNN_ERR_SIZE);
    REFUSED(ernn_step_float(&net_model, S, scratch, NET_SCRATCH_BYTES - 4, x, sizeof x, y, sizeof y), ERNN_ERR_SIZE);
    REFUSED(ernn_step_float(&net_model, S, W, x, IN, y, sizeof y), ERNN_ERR_LENGTH);          /* a count, not bytes */
    REFUSED(ernn_step_float(&net_model, S, W, x, sizeof x - 4, y, sizeof y), ERNN_ERR_LENGTH);
    REFUSED(ernn_step_float(&net_model, S, W, x, sizeof x + 4, y, sizeof y), ERNN_ERR_LENGTH);
    REFUSED(ernn_step_float(&net_model, S, W, x, sizeof x, y, OUT), ERNN_ERR_LENGTH);
    REFUSED(ernn_step_float(&net_model, S, W, x, sizeof x, y, sizeof y + 4), ERNN_ERR_LENGTH);
    REFUSED(ernn_step_float(&net_model, state, NET_STATE_BYTES, state, NET_SCRATCH_BYTES, x, sizeof x, y, sizeof y),
            ERNN_ERR_OVERLAP);
    REFUSED(ernn_step_float(&net_model, S, W, (const float *)(void *)scratch, sizeof x, y, sizeof y), ERNN_ERR_OVERLAP);
    REFUSED(ernn_step_float(&net_model, S, W, (const float *)(void *)state, sizeof x, y, sizeof y), ERNN_ERR_OVERLAP);
    REFUSED(ernn_step_float(&net_model, S, W, x, sizeof x, (float *)(void *)scratch, sizeof y), ERNN_ERR_OVERLAP);
    REFUSED(ernn_step_float(&net_model, S, W, x, sizeof x, (float *)(void *)state, sizeof y), ERNN_ERR_OVERLAP);
    REFUSED(ernn_step_float(&net_model, S, W, big, sizeof x, big + IN - 1, sizeof y), ERNN_ERR_OVERLAP);
    bad_float_codes();
}

static void bad_helpers(void)
{
    int i;
    REFUSED(ernn_quantize_input(NULL, x, sizeof x, xq, sizeof xq), ERNN_ERR_NULL);
    REFUSED(ernn_quantize_input(&net_model, NULL, sizeof x, xq, sizeof xq), ERNN_ERR_NULL);
    REFUSED(ernn_quantize_input(&net_model, x, sizeof x, NULL, sizeof xq), ERNN_ERR_NULL);
    REFUSED(ernn_dequantize_output(NULL, yq, sizeof yq, y, sizeof y), ERNN_ERR_NULL);
    REFUSED(ernn_dequantize_output(&net_model, NULL, sizeof yq, y, sizeof y), ERNN_ERR_NULL);
    REFUSED(ernn_dequantize_output(&net_model, yq, sizeof yq, NULL, sizeof y), ERNN_ERR_NULL);
    for (i = 0; i < 4; ++i) {
        REFUSED(ernn_quantize_input(&bad_models[i], x, sizeof x, xq, sizeof xq), ERNN_ERR_MODEL);
        REFUSED(ernn_dequantize_output(&bad_models[i], yq, sizeof yq, y, sizeof y), ERNN_ERR_MODEL);
    }
    if (!INT8) {
        REFUSED(ernn_quantize_input(&net_model, x, sizeof x, xq, sizeof xq), ERNN_ERR_SCHEME);
        REFUSED(ernn_dequantize_output(&net_model, yq, sizeof yq, y, sizeof y), ERNN_ERR_SCHEME);
        return;
    }
    if (CODES) { /* the code is no quantized value */
        REFUSED(ernn_quantize_input(&net_model, x, sizeof x, xq, sizeof xq), ERNN_ERR_SCHEME);
    } else {
        REFUSED(ernn_quantize_input(&net_model, x, IN, xq, sizeof xq), ERNN_ERR_LENGTH);
        REFUSED(ernn_quantize_input(&net_model, x, sizeof x, xq, sizeof xq + 1), ERNN_ERR_LENGTH);
        REFUSED(ernn_quantize_input(&net_model, x, sizeof x, xq, 0), ERNN_ERR_LENGTH);
    }
    REFUSED(ernn_dequantize_output(&net_model, yq, sizeof yq - 1, y, sizeof y), ERNN_ERR_LENGTH);
    REFUSED(ernn_dequantize_output(&net_model, yq, sizeof yq, y, OUT), ERNN_ERR_LENGTH);
    if (!CODES)
        REFUSED(ernn_quantize_input(&net_model, (const float *)(void *)scratch, sizeof x,
                                    (int8_t *)scratch + 4 * IN - 1, sizeof xq), ERNN_ERR_OVERLAP);
    REFUSED(ernn_dequantize_output(&net_model, (const int8_t *)scratch, sizeof yq, (float *)(void *)scratch, sizeof y),
            ERNN_ERR_OVERLAP);
}
#endif

/* the input of step t: every feature moves, so the state goes somewhere */
static void input(int t)
{
    int j;
    for (j = 0; j < IN; ++j) {
        x[j] = (float)(((t * 7 + j * 3) % 11) - 5) * 0.37f;
        xq[j] = (int8_t)(((t * 29 + j * 13) % 255) - 127);
    }
    if (CODES) { /* the code of step t (0 among them: masked with mask_zero) */
        code = (t * 7) % net_model.layers[0].vocab;
        x[0] = (float)code;
    }
}

/* one int8 step of the clean stream: ernn_step_int8, or ernn_step_code for a model of codes */
static ernn_status step_q(void)
{
    return CODES ? ernn_step_code(&net_model, S, W, &code, sizeof code, yq, OUT)
                 : ernn_step_int8(&net_model, S, W, xq, IN, yq, OUT);
}

int main(void)
{
#ifndef ERNN_NO_FLOAT
    static float ref_y[STEPS][OUT];
#endif
    static int8_t ref_yq[STEPS][OUT];
    static int32_t ref_flag[STEPS];
    int t, emitted_steps = 0, steps = 0;
    make_bad_models();
    /* reference: a clean stream */
    CHECK(ernn_init(&net_model, S) == ERNN_OK);
    for (t = 0; t < STEPS; ++t) {
        input(t);
#ifndef ERNN_NO_FLOAT
        CHECK(ernn_step_float(&net_model, S, W, x, sizeof x, y, sizeof y) == ERNN_OK);
        memcpy(ref_y[t], y, sizeof y);
        CHECK(ernn_emitted(&net_model, S, &flag) == ERNN_OK);
        emitted_steps += flag;
        ++steps;
#endif
        if (INT8) CHECK(step_q() == ERNN_OK);
        memcpy(ref_yq[t], yq, sizeof yq);
        CHECK(ernn_emitted(&net_model, S, &ref_flag[t]) == ERNN_OK);
        CHECK(ref_flag[t] == 0 || ref_flag[t] == 1);
        if (INT8) {
            emitted_steps += ref_flag[t];
            ++steps;
        }
        if (t == STEPS / 2) {
            CHECK(ernn_reset(&net_model, S) == ERNN_OK);
            CHECK(ernn_emitted(&net_model, S, &flag) == ERNN_OK && flag == (first_window() < 0));
        }
    }
    /* a model without Conv1D or pooling emits at every step */
    CHECK(first_window() < 0 ? emitted_steps == steps : emitted_steps > 0);
    memcpy(ref_state, state, sizeof state);
    /* the same stream with every refused call before each step */
    memset(state, 0x5a, sizeof state);
    memset(y, 0, sizeof y);
    memset(yq, 0, sizeof yq);
    bad_init_and_reset();
    CHECK(ernn_init(&net_model, S) == ERNN_OK);
    for (t = 0; t < STEPS; ++t) {
        input(t);
        bad_init_and_reset();
        bad_step_int8();
#ifndef ERNN_NO_FLOAT
        bad_helpers();
        bad_step_float();
        CHECK(ernn_step_float(&net_model, S, W, x, sizeof x, y, sizeof y) == ERNN_OK);
        CHECK(memcmp(ref_y[t], y, sizeof y) == 0);
        bad_step_float();
#endif
        bad_step_int8();
        bad_step_code();
        if (INT8) CHECK(step_q() == ERNN_OK);
        CHECK(memcmp(ref_yq[t], yq, sizeof yq) == 0);
        bad_emitted();
        CHECK(ernn_emitted(&net_model, S, &flag) == ERNN_OK && flag == ref_flag[t]);
        if (t == STEPS / 2) CHECK(ernn_reset(&net_model, S) == ERNN_OK);
    }
    CHECK(memcmp(ref_state, state, NET_STATE_BYTES) == 0);
    printf("%d failed\n", fails);
    return fails != 0;
}
