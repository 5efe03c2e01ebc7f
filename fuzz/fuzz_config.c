/*
 * fuzz_config.c: libFuzzer entry point for ln_config_from_json (and ln_config_to_json back).
 * The target itself is ln_fuzz_config in fuzz/targets.c, shared with
 * tests/test_fuzz_regressions.c; built and run by fuzz/run.sh.
 */
#include "targets.h"

#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *why = ln_fuzz_config(data, size);
    if (why) {
        fprintf(stderr, "ln_fuzz_config: %s\n", why);
        abort();
    }
    return 0;
}
