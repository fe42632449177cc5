/* Bare-metal harness of tools/bench/mcu.py: the exported int8 model (exported as "net") stepped on an
 * emulated Cortex-M4 or Cortex-M0+. Not part of the runtime; nothing here is shipped.
 *
 * The emulator loads the ELF, writes bench_io (its own RAM section, at the address of the symbol
 * bench_io) and starts at Reset_Handler; emulation ends when the core reaches bench_done.
 *   mode 0: ernn_init, then bench_io.n times ernn_step_int8 over bench_io.x, outputs to bench_io.y;
 *           bench_io.status is the first status that is not ERNN_OK (else 0).
 *   mode 1: the calibration loop: exactly 2 * n instructions more than with n = 0 (subs, bne).
 * Instructions per step = (count with n steps - count with 0 steps) / n: startup, ernn_init and the
 * harness around the loop cancel out. */
#include <stdint.h>
#include <string.h>

#include "net_model.h"

#ifndef BENCH_MAX_STEPS
#define BENCH_MAX_STEPS 64
#endif

typedef struct {
    uint32_t mode;
    uint32_t n;
    int32_t status;
    uint32_t reserved;
    int8_t x[BENCH_MAX_STEPS * NET_INPUT_FEATURES];
    int8_t y[BENCH_MAX_STEPS * NET_OUTPUT_FEATURES];
} bench_io_t;

/* Written by the emulator before the start: not zeroed by the startup code. */
__attribute__((section(".bench_io"), used)) volatile bench_io_t bench_io;

static int32_t state[NET_STATE_WORDS], scratch[NET_SCRATCH_WORDS];

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
void Reset_Handler(void);

__attribute__((section(".isr_vector"), used)) const void *const bench_vectors[2] = {&_estack, Reset_Handler};

/* The end: the emulator stops when the core gets here (a breakpoint on hardware). */
__attribute__((noinline, noreturn)) void bench_done(void)
{
    for (;;) __asm volatile("bkpt #0");
}

/* 2 * n instructions after the branch over it (ARMv6-M: runs on both cores). */
__attribute__((noinline)) static void bench_calibration_loop(uint32_t n)
{
    __asm volatile(
        "    .syntax unified\n"
        "    cmp %0, #0\n"
        "    beq 2f\n"
        "1:  subs %0, %0, #1\n"
        "    bne 1b\n"
        "2:\n"
        : "+l"(n)
        :
        : "cc");
}

__attribute__((noinline)) static void bench_main(void)
{
    uint32_t i, n = bench_io.n;
    int32_t status = 0;
    if (bench_io.mode == 1) {
        bench_calibration_loop(n);
        bench_io.status = 0;
        return;
    }
    if (n > BENCH_MAX_STEPS) n = BENCH_MAX_STEPS;
    status = ernn_init(&net_model, state, sizeof state);
    for (i = 0; i < n && status == 0; ++i) {
        status = ernn_step_int8(&net_model, state, sizeof state, scratch, sizeof scratch,
                                (const int8_t *)&bench_io.x[i * NET_INPUT_FEATURES], NET_INPUT_FEATURES,
                                (int8_t *)&bench_io.y[i * NET_OUTPUT_FEATURES], NET_OUTPUT_FEATURES);
    }
    bench_io.status = status;
}

void Reset_Handler(void)
{
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata) *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss;) *dst++ = 0;
    bench_main();
    bench_done();
}
