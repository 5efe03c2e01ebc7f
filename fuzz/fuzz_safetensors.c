/*
 * fuzz_safetensors.c: libFuzzer entry point for ln_safetensors_parse, then ln_config_resolve + ln_config_check_tensors.
 * The target itself is ln_fuzz_safetensors in fuzz/targets.c, shared with
 * tests/test_fuzz_regressions.c; built and run by fuzz/run.sh.
 */
#include "targets.h"

#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *why = ln_fuzz_safetensors(data, size);
    if (why) {
        fprintf(stderr, "ln_fuzz_safetensors: %s\n", why);
        abort();
    }
    return 0;
}
