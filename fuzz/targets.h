/*
 * targets.h: the fuzz targets (fuzz/targets.c), one per file reader, shared
 * by the libFuzzer harnesses (fuzz/fuzz_<name>.c, built by fuzz/run.sh)
 * and by tests/test_fuzz_regressions.c, which feeds every kept crasher
 * (tests/data/crashers/<name>/) through exactly the same path.
 *
 * Each target parses one input the way ln-cl does and checks what a clean
 * outcome means: either success with a well-formed result, or a status
 * with a non-empty message. It returns NULL when the outcome was clean and
 * a description of the broken property otherwise (the harness aborts on
 * it, the Check test fails on it). Memory errors are the sanitizers' job.
 */
#ifndef LN_FUZZ_TARGETS_H
#define LN_FUZZ_TARGETS_H

#include <stddef.h>
#include <stdint.h>

/* ln_safetensors_parse, then on success ln_config_resolve and
 * ln_config_check_tensors (what ln_model_load does before any device
 * work). */
const char *ln_fuzz_safetensors(const uint8_t *data, size_t size);
/* ln_npy_parse. */
const char *ln_fuzz_npy(const uint8_t *data, size_t size);
/* ln_config_from_json on the bytes (up to the first NUL); on success the
 * configuration must survive ln_config_to_json and back unchanged. */
const char *ln_fuzz_config(const uint8_t *data, size_t size);
/* ln_tune_file_read (it reads a path, so the bytes go to a scratch file
 * first), then ln_tune_apply on success. The file's key is checked
 * against a fixed device (see targets.c); "@KERNELS_HASH@",
 * "@CLBLAST_VERSION@" and "\"@TUNER_VERSION@\"" (quotes included) in the
 * input are replaced by this build's values so that the seed corpus stays
 * valid when the kernels, CLBlast or the tuner change. */
const char *ln_fuzz_tune_cache(const uint8_t *data, size_t size);

typedef struct ln_fuzz_target {
    const char *name; /* harness, corpus and crashers directory name */
    const char *(*run)(const uint8_t *data, size_t size);
} ln_fuzz_target;

/* Every target, ended by {NULL, NULL}. */
extern const ln_fuzz_target ln_fuzz_targets[];

#endif
