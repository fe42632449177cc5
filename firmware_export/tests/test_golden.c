/* The fixture model of one scheme (tests/fixtures/<scheme>/, written by tools/make_c_fixtures.py)
 * stepped over its golden inputs: every output must equal, bit for bit, what edgernn's Python
 * simulation computed for the same inputs. Float outputs through ernn_step_float (not with
 * ERNN_NO_FLOAT); on the int8 scheme also the raw path: ernn_step_int8 on the inputs as Python
 * quantized them.
 *
 * Built and run by `make test` in firmware_export/:
 *   cc -std=c99 -I . -I tests/fixtures -I tests/fixtures/int8 ernn_*.c tests/fixtures/int8/net_model.c tests/test_golden.c
 * Prints each mismatching step and the number of failures; exit status 1 if any. */
#include <stdio.h>
#include <string.h>

#include "net_model.h" /* first: the golden header uses its types and NET_ macros */
#include "net_golden.h"

static int32_t state[NET_STATE_WORDS], scratch[NET_SCRATCH_WORDS];
static int fails;

static void expect(int ok, const char *path, int step)
{
    if (!ok) {
        printf("step %d: %s output differs from the Python simulation\n", step, path);
        ++fails;
    }
}

/* A refused call is a failure of its own: the fixture's calls all have valid arguments. */
static int call(ernn_status status, const char *what, int step)
{
    if (status != ERNN_OK) {
        printf("step %d: %s returned %d\n", step, what, (int)status);
        ++fails;
    }
    return status == ERNN_OK;
}

#ifndef ERNN_NO_FLOAT
static void float_path(void)
{
    float y[NET_OUTPUT_FEATURES];
    int t;
    if (!call(ernn_init(&net_model, state, sizeof state), "ernn_init", 0)) return;
    for (t = 0; t < GOLDEN_STEPS; ++t) {
        if (golden_reset[t] && !call(ernn_reset(&net_model, state, sizeof state), "ernn_reset", t)) return;
        if (!call(ernn_step_float(&net_model, state, sizeof state, scratch, sizeof scratch, golden_x[t],
                                  sizeof golden_x[t], y, sizeof y), "ernn_step_float", t)) return;
        expect(memcmp(y, golden_y_bits[t], sizeof y) == 0, "float", t);
    }
}
#endif

#if GOLDEN_INT8 /* not NET_SCHEME: an enum is 0 to the preprocessor */
static void int8_path(void)
{
    int8_t yq[NET_OUTPUT_FEATURES];
    int t;
    if (!call(ernn_init(&net_model, state, sizeof state), "ernn_init", 0)) return;
    for (t = 0; t < GOLDEN_STEPS; ++t) {
        if (golden_reset[t] && !call(ernn_reset(&net_model, state, sizeof state), "ernn_reset", t)) return;
        if (!call(ernn_step_int8(&net_model, state, sizeof state, scratch, sizeof scratch, golden_xq[t],
                                 sizeof golden_xq[t], yq, sizeof yq), "ernn_step_int8", t)) return;
        expect(memcmp(yq, golden_yq[t], sizeof yq) == 0, "int8", t);
    }
}
#endif

int main(void)
{
#ifndef ERNN_NO_FLOAT
    float_path();
#endif
#if GOLDEN_INT8
    int8_path();
#endif
    printf("%d failed\n", fails);
    return fails != 0;
}
