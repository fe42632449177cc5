/* The sensor loop on the exported C runtime: CSV rows of sensor values on stdin (one timestep per
 * row; '#' comments and a header skipped), one line out per row: the int8 outputs and the argmax.
 * Links the folder written by `edgernn export ... --name imu`. On a microcontroller, replace the
 * stdin read with your sensor and keep the rest. Build: cc -std=c99 -I FW FW/ernn_*.c FW/imu_model.c main.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imu_model.h"

static int32_t state[IMU_STATE_WORDS];     /* one stream; int32_t for 4-byte alignment */
static int32_t scratch[IMU_SCRATCH_WORDS];

int main(void) {
    char line[512];
    float x[IMU_INPUT_FEATURES];
    int8_t xq[IMU_INPUT_FEATURES], yq[IMU_OUTPUT_FEATURES];
    if (ernn_init(&imu_model, state, sizeof state) != ERNN_OK) return 1;
    while (fgets(line, sizeof line, stdin)) {
        char *p = line, *end;
        int n = 0;
        if (line[0] == '#') continue;
        for (; n < IMU_INPUT_FEATURES; n++) {
            x[n] = strtof(p, &end);
            if (end == p) break;            /* not a number: header or blank line */
            p = end + (*end == ',');
        }
        if (n != IMU_INPUT_FEATURES) continue;
        ernn_quantize_input(&imu_model, x, sizeof x, xq, sizeof xq);  /* or compute xq from raw counts */
        if (ernn_step_int8(&imu_model, state, sizeof state, scratch, sizeof scratch, xq, sizeof xq, yq, sizeof yq)
            != ERNN_OK)
            return 1;
        int best = 0;
        for (int k = 0; k < IMU_OUTPUT_FEATURES; k++) {
            printf("%d,", yq[k]);
            if (yq[k] > yq[best]) best = k;
        }
        printf("%d\n", best);
    }
    return 0;
}
