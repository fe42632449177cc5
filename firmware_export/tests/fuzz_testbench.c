/* libFuzzer target on the testbench's input path: arbitrary bytes go through the very functions the
 * exported testbench.c reads its stdin with (tb_begin, tb_row), so every byte string is a possible
 * testbench input. The first byte picks the mode (bit 0: --int8, on int8 models), the rest are rows
 * (a trailing partial row is what the testbench refuses as truncated, so it is dropped).
 *
 * Every call gets valid arguments, so a refused call is a bug (abort), as is anything the
 * sanitizers report -- but for a model of codes's row that is no code (ERNN_ERR_CODE, nothing written). Build in an exported folder (tests/test_firmware_hostile.py):
 *   clang -fsanitize=fuzzer,address,undefined -I FOLDER FOLDER/ernn_*.c FOLDER/net_model.c fuzz_testbench.c */
#include <stdlib.h>

#define ERNN_TESTBENCH_NO_MAIN
#include "testbench.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int32_t before[sizeof tb_state / sizeof tb_state[0]];
    unsigned char out[TB_OUT_BYTES];
    size_t out_bytes;
    ernn_status status;
    int raw;
    if (size < 1) return 0;
    raw = (data[0] & 1) && NET_SCHEME == ERNN_SCHEME_INT8;
    if (tb_begin() != ERNN_OK) abort();
    for (++data, --size; size >= TB_ROW_BYTES; data += TB_ROW_BYTES, size -= TB_ROW_BYTES) {
        memcpy(before, tb_state, sizeof tb_state);
        status = tb_row(data, raw, out, &out_bytes);
        /* a model of codes: a row that is no code in [0, vocab) is refused, the state untouched */
        if (status == ERNN_ERR_CODE && net_model.layers[0].kind == ERNN_EMBED && out_bytes == 0
            && memcmp(before, tb_state, sizeof tb_state) == 0)
            continue;
        if (status != ERNN_OK) abort();
    }
    return 0;
}
