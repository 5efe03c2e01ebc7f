/*
 * targets.c: the fuzz targets declared in targets.h: one input through one
 * reader of ln-cl, and the checks that make an outcome "clean". Compiled
 * into the libFuzzer harnesses by fuzz/run.sh and into
 * tests/test_fuzz_regressions.c by tests/fuzz_regressions.cmake.
 */
#include "targets.h"

#include "config.h"
#include "internal.h"
#include "tensor_io.h"

#include <clblast_c.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const ln_fuzz_target ln_fuzz_targets[] = {
    {"safetensors", ln_fuzz_safetensors},
    {"npy", ln_fuzz_npy},
    {"config", ln_fuzz_config},
    {"tune_cache", ln_fuzz_tune_cache},
    {NULL, NULL},
};

/* Reads every byte of a result so that a short allocation shows up under
 * AddressSanitizer; the sum goes to a volatile so it is not optimised out. */
static volatile unsigned fuzz_sink;

static void touch(const void *data, size_t bytes)
{
    const unsigned char *p = data;
    unsigned s = 0;
    for (size_t i = 0; i < bytes; i++)
        s += p[i];
    fuzz_sink += s;
}

static bool has_message(void)
{
    return ln_last_error(NULL)[0] != '\0';
}

/* ------------------------------------------------------------ safetensors */

static const char *check_tensor(const ln_tensor *t, bool named)
{
    if (named && (!t->name || !t->name[0]))
        return "a tensor has no name";
    if (t->dtype != LN_DT_F32 && t->dtype != LN_DT_I32 && t->dtype != LN_DT_I64)
        return "a tensor has an unknown dtype";
    if (t->ndim < 0 || t->ndim > LN_TENSOR_MAX_DIMS)
        return "a tensor has an impossible rank";
    if (!t->data)
        return "a tensor has no data pointer";
    size_t count;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] < 0)
            return "a tensor has a negative dimension";
    if (!ln_shape_count(t->ndim, t->shape, &count) || count != t->count)
        return "a tensor's count does not match its shape";
    touch(t->data, t->count * ln_dtype_size(t->dtype));
    return NULL;
}

const char *ln_fuzz_safetensors(const uint8_t *data, size_t size)
{
    ln_tensor_file *file = (ln_tensor_file *)&file; /* must be overwritten */
    ln_status st = ln_safetensors_parse(NULL, data, size, "fuzz", &file);
    if (st != LN_SUCCESS) {
        if (file)
            return "failed parse left *out set";
        if (st != LN_ERROR_BAD_FILE && st != LN_ERROR_OUT_OF_HOST_MEMORY)
            return "failed parse returned a status other than BAD_FILE / OUT_OF_HOST_MEMORY";
        return has_message() ? NULL : "failed parse left no message";
    }
    const char *why = NULL;
    if (!file)
        return "successful parse gave no file";
    for (size_t i = 0; i < file->count && !why; i++) {
        why = check_tensor(&file->tensors[i], true);
        if (!why && i && strcmp(file->tensors[i - 1].name, file->tensors[i].name) >= 0)
            why = "tensors are not sorted by unique name";
        if (!why && ln_tensor_file_find(file, file->tensors[i].name) != &file->tensors[i])
            why = "ln_tensor_file_find does not find a tensor";
    }
    for (size_t i = 0; i < file->metadata_count && !why; i++)
        if (!file->metadata[i].key || !file->metadata[i].value)
            why = "a metadata entry is NULL";
    if (!why) {
        /* What ln_model_load does next, before touching a device. */
        ln_model_config cfg;
        st = ln_config_resolve(NULL, file, &cfg);
        if (st == LN_SUCCESS) {
            if (ln_config_validate(NULL, &cfg) != LN_SUCCESS)
                why = "ln_config_resolve returned an invalid configuration";
            else if ((st = ln_config_check_tensors(NULL, file, &cfg)) != LN_SUCCESS &&
                     !has_message())
                why = "ln_config_check_tensors failed without a message";
        } else if (!has_message()) {
            why = "ln_config_resolve failed without a message";
        }
        if (getenv("LN_FUZZ_VERBOSE")) /* to check that the seeds get this far */
            fprintf(stderr, "ln_fuzz_safetensors: %zu tensors, configuration: %s %s\n",
                    file->count, ln_status_string(st), ln_last_error(NULL));
    }
    ln_tensor_file_free(file);
    return why;
}

/* -------------------------------------------------------------------- npy */

const char *ln_fuzz_npy(const uint8_t *data, size_t size)
{
    ln_tensor t;
    memset(&t, 0xa5, sizeof(t)); /* must be overwritten */
    ln_status st = ln_npy_parse(NULL, data, size, "fuzz", &t);
    if (st != LN_SUCCESS) {
        if (t.data || t.name || t.count)
            return "failed parse left the tensor non-empty";
        if (st != LN_ERROR_BAD_FILE && st != LN_ERROR_OUT_OF_HOST_MEMORY)
            return "failed parse returned a status other than BAD_FILE / OUT_OF_HOST_MEMORY";
        return has_message() ? NULL : "failed parse left no message";
    }
    const char *why = check_tensor(&t, false);
    if (!why && (t.dtype != LN_DT_F32 || t.ndim < 1 || t.ndim > 3))
        why = ".npy result is not F32 with 1 to 3 dimensions";
    ln_tensor_clear(&t);
    return why;
}

/* ----------------------------------------------------------------- config */

static bool same_config(const ln_model_config *a, const ln_model_config *b)
{
    if (a->d_model != b->d_model || a->pos_hidden != b->pos_hidden ||
        a->n_scales != b->n_scales || a->head_dim != b->head_dim ||
        a->ffn_mult != b->ffn_mult || a->n_layers != b->n_layers || a->ln_eps != b->ln_eps)
        return false;
    for (int k = 0; k < a->n_scales; k++)
        if (a->scales[k] != b->scales[k])
            return false;
    return true;
}

const char *ln_fuzz_config(const uint8_t *data, size_t size)
{
    char *json = malloc(size + 1);
    if (!json)
        return NULL; /* the fuzzer's own memory limit, not ln-cl's bug */
    memcpy(json, data, size);
    json[size] = '\0';
    ln_model_config cfg, back;
    memset(&cfg, 0, sizeof(cfg));
    const char *why = NULL;
    ln_status st = ln_config_from_json(NULL, json, &cfg);
    if (st != LN_SUCCESS) {
        if (st != LN_ERROR_BAD_CONFIG && st != LN_ERROR_OUT_OF_HOST_MEMORY)
            why = "failed parse returned a status other than BAD_CONFIG / OUT_OF_HOST_MEMORY";
        else if (!has_message())
            why = "failed parse left no message";
    } else {
        char text[1024];
        if (ln_config_validate(NULL, &cfg) != LN_SUCCESS)
            why = "ln_config_from_json returned an invalid configuration";
        else if (ln_config_to_json(NULL, &cfg, text, sizeof(text)) != LN_SUCCESS)
            why = "a valid configuration does not serialise into 1 KiB";
        else if (ln_config_from_json(NULL, text, &back) != LN_SUCCESS)
            why = "ln_config_to_json wrote JSON that ln_config_from_json refuses";
        else if (!same_config(&cfg, &back))
            why = "configuration changed through ln_config_to_json and back";
    }
    free(json);
    return why;
}

/* ------------------------------------------------------------- tune cache */

/* The device every fuzzed tuning file is checked against. */
static void fuzz_device(ln_device_info *info)
{
    memset(info, 0, sizeof(*info));
    snprintf(info->platform_name, sizeof(info->platform_name), "Fuzz Platform");
    snprintf(info->platform_version, sizeof(info->platform_version), "OpenCL 1.2 fuzz");
    snprintf(info->device_name, sizeof(info->device_name), "fuzz-device");
    snprintf(info->device_version, sizeof(info->device_version), "OpenCL 1.2 fuzz");
    snprintf(info->driver_version, sizeof(info->driver_version), "1.0");
    info->is_cpu = 1;
    info->compute_units = 2;
    info->global_mem_bytes = (uint64_t)4 << 30;
    info->max_alloc_bytes = (uint64_t)1 << 30;
    info->local_mem_bytes = (uint64_t)1 << 20;
    info->max_work_group_size = 4096;
}

/* One scratch file per process, removed at exit. */
static char scratch_path[256];

static void remove_scratch(void)
{
    if (scratch_path[0])
        unlink(scratch_path);
}

static const char *scratch_file(void)
{
    if (!scratch_path[0]) {
        const char *dir = getenv("TMPDIR");
        snprintf(scratch_path, sizeof(scratch_path), "%s/ln-fuzz-tune-XXXXXX",
                 dir && *dir ? dir : "/tmp");
        int fd = mkstemp(scratch_path);
        if (fd < 0) {
            scratch_path[0] = '\0';
            return NULL;
        }
        close(fd);
        atexit(remove_scratch);
    }
    return scratch_path;
}

#define STR2(x) #x
#define STR(x) STR2(x)

const char *ln_fuzz_tune_cache(const uint8_t *data, size_t size)
{
    const char *path = scratch_file();
    if (!path)
        return "cannot create the scratch file";
    /* What the file's key must hold on this build, put in for the seeds'
     * placeholders (so they stay valid when kernels or CLBlast change). */
    char hash[20], tuner[16];
    snprintf(hash, sizeof(hash), "%016llx", (unsigned long long)ln_kernel_sources_hash());
    snprintf(tuner, sizeof(tuner), "%u", (unsigned)LN_TUNER_VERSION);
    const struct {
        const char *placeholder, *value;
    } subst[] = {
        {"@KERNELS_HASH@", hash},
        {"\"@TUNER_VERSION@\"", tuner}, /* a number: the quotes go too */
        {"@CLBLAST_VERSION@", STR(CLBLAST_VERSION_MAJOR) "." STR(CLBLAST_VERSION_MINOR) "." STR(
                                  CLBLAST_VERSION_PATCH)},
    };
    /* Overwritten in place and cut to size rather than opened with O_TRUNC:
     * ext4 flushes a file truncated to zero when it is closed, which made
     * each run cost 4 ms instead of 0.1 ms. */
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return "cannot open the scratch file";
    size_t i = 0, from = 0;
    bool ok = true;
    while (i < size && ok) {
        size_t k = 0, plen = 0;
        for (; k < sizeof(subst) / sizeof(subst[0]); k++) {
            plen = strlen(subst[k].placeholder);
            if (i + plen <= size && memcmp(data + i, subst[k].placeholder, plen) == 0)
                break;
        }
        if (k == sizeof(subst) / sizeof(subst[0])) {
            i++;
            continue;
        }
        size_t vlen = strlen(subst[k].value);
        ok = write(fd, data + from, i - from) == (ssize_t)(i - from) &&
             write(fd, subst[k].value, vlen) == (ssize_t)vlen;
        i += plen;
        from = i;
    }
    ok = ok && write(fd, data + from, size - from) == (ssize_t)(size - from);
    off_t end = lseek(fd, 0, SEEK_CUR);
    ok = ok && end >= 0 && ftruncate(fd, end) == 0;
    close(fd);
    if (!ok)
        return "cannot write the scratch file";

    ln_device_info info;
    fuzz_device(&info);
    ln_tune_table table;
    memset(&table, 0x5a, sizeof(table)); /* must be overwritten */
    char why_buf[512];
    ln_tune_file_result r = ln_tune_file_read(&info, path, &table, why_buf, sizeof(why_buf));
    if (getenv("LN_FUZZ_VERBOSE")) /* to check that the seeds reach OK */
        fprintf(stderr, "ln_fuzz_tune_cache: result %d (%zu entries): %s\n", (int)r,
                r == LN_TUNE_FILE_OK ? table.count : 0, why_buf);
    const char *why = NULL;
    if (r == LN_TUNE_FILE_OK) {
        if (table.count > table.cap || (table.count && !table.entries))
            why = "tuning table count/cap/entries inconsistent";
        for (size_t k = 0; k < table.count && !why; k++) {
            const ln_tune_entry *e = &table.entries[k];
            if (!memchr(e->kernel, '\0', sizeof(e->kernel)))
                why = "a tuning entry's kernel name is not terminated";
            else if (e->batch == 0 || e->n == 0 || (e->batch & (e->batch - 1)) ||
                     (e->n & (e->n - 1)))
                why = "a tuning entry's shape is not a power-of-two bucket";
        }
        if (!why) {
            ln_params p;
            ln_params_defaults(&info, &p);
            int set = ln_tune_apply(&table, &info, &p);
            if (set < 0 || p.wg_layernorm < 1 || p.wg_layernorm > info.max_work_group_size ||
                p.wg_elementwise < 1 || p.wg_elementwise > info.max_work_group_size ||
                p.attn_tile_q < 1 || p.attn_tile_k < 1 || p.attn_mode < LN_ATTENTION_AUTO ||
                p.attn_mode > LN_ATTENTION_RECOMPUTE_S)
                why = "ln_tune_apply produced parameters out of range";
        }
    } else if (r == LN_TUNE_FILE_CORRUPT || r == LN_TUNE_FILE_STALE) {
        if (table.entries || table.count)
            why = "a refused tuning file left entries behind";
        else if (!why_buf[0])
            why = "a refused tuning file gave no reason";
    } else {
        why = "ln_tune_file_read returned ABSENT or an unknown result for an existing file";
    }
    ln_tune_table_free(&table);
    return why;
}
