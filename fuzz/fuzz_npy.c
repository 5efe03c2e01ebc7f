/*
 * fuzz_npy.c: libFuzzer entry point for ln_npy_parse.
 * The target itself is ln_fuzz_npy in fuzz/targets.c, shared with
 * tests/test_fuzz_regressions.c; built and run by fuzz/run.sh.
 */
#include "targets.h"

#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *why = ln_fuzz_npy(data, size);
    if (why) {
        fprintf(stderr, "ln_fuzz_npy: %s\n", why);
        abort();
    }
    return 0;
}
