/*
 * tune_cache.c: the tuning cache: one JSON file per device
 * (<cache>/tuning/<platform>-<device>-<hash>.json) holding what ln-tune
 * measured, its validation against the device it is loaded on, the merge
 * that lets two tuners write at once, applying it to a context's
 * parameters (CLBlast's through src/gemm_tuning.c), the per-context cache
 * state and ln_context_tuning.
 *
 * File layout (format_version 1):
 *   {"format": "ln-cl-tuning", "format_version": 1,
 *    "key": {"platform_name", "platform_version", "device_name",
 *            "driver_version", "compute_units", "kernels_hash" (16 hex
 *            digits of ln_kernel_sources_hash), "tuner_version",
 *            "clblast_version" ("1.5.3": its defaults and parameter
 *            names are what the GEMM entries were measured against)},
 *    "entries": [{"kernel": "attention", "shape": "B1-n1024",
 *                 "params": {"attn_tile_q": 16, ...},
 *                 "default_us": 812.5, "tuned_us": 640.2},
 *                {"kernel": "clblast-Xgemm", "shape": "B1-n1024",
 *                 "params": {"GEMMK": 0, "KREG": 1, ... all 16, or none},
 *                 "default_us": ..., "tuned_us": ...}, ...]}
 * A GEMM entry's times are the model's GEMMs summed at that shape.
 * The driver version lives in the key, not the file name: after a driver
 * update the old file is found, named as stale on stderr, and replaced by
 * the next ln-tune run rather than left behind. A file whose key differs
 * only in kernels_hash still gives its CLBlast entries (parse_root says
 * why).
 */
#define _DEFAULT_SOURCE /* flock */
#include "internal.h"
#include "tensor_io.h"

#include <clblast_c.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define STR2(x) #x
#define STR(x) STR2(x)
#define CLBLAST_VERSION_STRING                                                                   \
    STR(CLBLAST_VERSION_MAJOR) "." STR(CLBLAST_VERSION_MINOR) "." STR(CLBLAST_VERSION_PATCH)
/* CLBlast parameter values: tiles and work-items below 1024 (gemm_tuning.c
 * checks the combinations), XGEMM_MIN_INDIRECT_SIZE up to 2^20. */
#define TUNE_MAX_CLBLAST ((long long)1 << 20)

/* A tuning file is a few KiB (3 kernels x a dozen shapes); 16 MiB is far
 * beyond any real one and bounds what a hostile file can make us allocate. */
#define TUNE_MAX_FILE ((size_t)16 << 20)
/* Work-group sizes and tiles above these are not from ln-tune. */
#define TUNE_MAX_WG 65536
#define TUNE_MAX_TILE 1024

const char *const ln_tune_param_names[LN_TP_COUNT] = {
    "wg_layernorm", "wg_elementwise", "attn_mode", "attn_tile_q", "attn_tile_k", "attn_kernel"};

static const char *const known_kernels[] = {"layernorm", "elementwise", "attention"};

/* ---------------------------------------------------------- shapes, tables */

uint64_t ln_tune_bucket(uint64_t x)
{
    uint64_t b = 1;
    while (b < x && b < ((uint64_t)1 << 62))
        b <<= 1;
    return b;
}

void ln_tune_shape_name(uint64_t batch, uint64_t n, char *buf, size_t cap)
{
    snprintf(buf, cap, "B%llu-n%llu", (unsigned long long)ln_tune_bucket(batch),
             (unsigned long long)ln_tune_bucket(n));
}

void ln_tune_entry_init(ln_tune_entry *e, const char *kernel, uint64_t batch, uint64_t n)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->kernel, sizeof(e->kernel), "%s", kernel);
    e->batch = ln_tune_bucket(batch);
    e->n = ln_tune_bucket(n);
    for (int i = 0; i < LN_TP_COUNT; i++)
        e->value[i] = -1;
    for (int i = 0; i < LN_CB_MAX_PARAMS; i++)
        e->clblast[i] = -1;
}

ln_status ln_tune_table_put(ln_tune_table *t, const ln_tune_entry *e)
{
    for (size_t i = 0; i < t->count; i++)
        if (strcmp(t->entries[i].kernel, e->kernel) == 0 && t->entries[i].batch == e->batch &&
            t->entries[i].n == e->n) {
            t->entries[i] = *e;
            return LN_SUCCESS;
        }
    if (t->count == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        ln_tune_entry *grown = realloc(t->entries, cap * sizeof(*grown));
        if (!grown)
            return LN_ERROR_OUT_OF_HOST_MEMORY;
        t->entries = grown;
        t->cap = cap;
    }
    t->entries[t->count++] = *e;
    return LN_SUCCESS;
}

void ln_tune_table_free(ln_tune_table *t)
{
    free(t->entries);
    memset(t, 0, sizeof(*t));
}

/* ------------------------------------------------------------------ paths */

bool ln_tune_file_path(const ln_device_info *info, char *path, size_t cap)
{
    char dir[900];
    if (!ln_cache_subdir("tuning", dir, sizeof(dir)))
        return false;
    /* Readable name from the platform and device, plus a hash of both
     * (the sanitising may map two names onto one). */
    char name[100];
    size_t j = 0;
    char raw[300];
    snprintf(raw, sizeof(raw), "%s-%s", info->platform_name, info->device_name);
    for (const char *c = raw; *c && j + 1 < sizeof(name); c++) {
        bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || *c == '.' || *c == '-' || *c == '_';
        char ch = ok ? *c : '_';
        if (ch == '_' && j > 0 && name[j - 1] == '_')
            continue;
        name[j++] = ch;
    }
    name[j] = '\0';
    uint64_t h = ln_fnv1a64(LN_FNV_OFFSET, info->platform_name, strlen(info->platform_name) + 1);
    h = ln_fnv1a64(h, info->device_name, strlen(info->device_name) + 1);
    int w = snprintf(path, cap, "%s/%s-%08llx.json", dir, name,
                     (unsigned long long)(h & 0xffffffffu));
    return w > 0 && (size_t)w < cap;
}

/* ---------------------------------------------------------------- reading */

static bool is_pow2(uint64_t x)
{
    return x && !(x & (x - 1));
}

/* Parses "B<b>-n<n>" with both powers of two, nothing else around. */
static bool parse_shape(const char *s, uint64_t *batch, uint64_t *n)
{
    unsigned long long b = 0, m = 0;
    int used = 0;
    if (sscanf(s, "B%llu-n%llu%n", &b, &m, &used) != 2 || s[used] != '\0' || !is_pow2(b) ||
        !is_pow2(m) || b > ((uint64_t)1 << 40) || m > ((uint64_t)1 << 40))
        return false;
    char back[64];
    ln_tune_shape_name(b, m, back, sizeof(back));
    if (strcmp(back, s) != 0) /* rejects leading zeros, '+' and spaces */
        return false;
    *batch = b;
    *n = m;
    return true;
}

static bool value_ok(int param, long long v)
{
    switch (param) {
    case LN_TP_WG_LAYERNORM:
    case LN_TP_WG_ELEMENTWISE:
        return v >= 1 && v <= TUNE_MAX_WG;
    case LN_TP_ATTN_MODE:
        return v >= LN_ATTENTION_AUTO && v <= LN_ATTENTION_RECOMPUTE_S;
    case LN_TP_ATTN_TILE_Q:
    case LN_TP_ATTN_TILE_K:
        return v >= 1 && v <= TUNE_MAX_TILE;
    case LN_TP_ATTN_KERNEL:
        return v >= LN_ATTENTION_KERNEL_AUTO && v <= LN_ATTENTION_KERNEL_TILES;
    default:
        return false;
    }
}

/* One "entries" element; false with `why` on anything unexpected. */
static bool parse_entry(json_t *je, size_t index, ln_tune_entry *e, char *why, size_t cap)
{
    if (!json_is_object(je)) {
        ln_why_set(why, cap, "entries[%zu] is not an object", index);
        return false;
    }
    json_t *k = json_object_get(je, "kernel"), *s = json_object_get(je, "shape"),
           *p = json_object_get(je, "params"), *d = json_object_get(je, "default_us"),
           *t = json_object_get(je, "tuned_us");
    if (!json_is_string(k) || !json_is_string(s) || !json_is_object(p) || !json_is_number(d) ||
        !json_is_number(t)) {
        ln_why_set(why, cap,
                "entries[%zu] lacks kernel/shape (strings), params (object) or "
                "default_us/tuned_us (numbers)",
                index);
        return false;
    }
    const char *kernel = json_string_value(k);
    const int cb = ln_clblast_kernel_of(kernel);
    bool known = cb >= 0;
    for (size_t i = 0; i < sizeof(known_kernels) / sizeof(known_kernels[0]); i++)
        known |= strcmp(kernel, known_kernels[i]) == 0;
    if (!known) {
        ln_why_set(why, cap, "entries[%zu]: unknown kernel \"%.40s\"", index, kernel);
        return false;
    }
    uint64_t batch, n;
    if (!parse_shape(json_string_value(s), &batch, &n)) {
        ln_why_set(why, cap, "entries[%zu]: shape \"%.40s\" is not B<pow2>-n<pow2>", index,
                json_string_value(s));
        return false;
    }
    ln_tune_entry_init(e, kernel, batch, n);
    e->default_us = json_number_value(d);
    e->tuned_us = json_number_value(t);
    if (!isfinite(e->default_us) || !isfinite(e->tuned_us) || e->default_us < 0 ||
        e->tuned_us < 0) {
        ln_why_set(why, cap, "entries[%zu]: times must be finite and >= 0", index);
        return false;
    }
    const char *name;
    json_t *v;
    json_object_foreach(p, name, v)
    {
        if (cb >= 0) {
            /* Names and ranges here; whether the set is whole and a valid
             * combination is ln_clblast_apply's call (a warning, not a
             * corrupt file). */
            int param = ln_clblast_param_of(cb, name);
            if (param < 0) {
                ln_why_set(why, cap, "entries[%zu]: %s has no parameter \"%.40s\"", index,
                        ln_clblast_kernels[cb].name, name);
                return false;
            }
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > TUNE_MAX_CLBLAST) {
                ln_why_set(why, cap, "entries[%zu]: %s is not an integer in 0..%lld", index, name,
                        TUNE_MAX_CLBLAST);
                return false;
            }
            e->clblast[param] = (long long)json_integer_value(v);
            continue;
        }
        int param = -1;
        for (int i = 0; i < LN_TP_COUNT; i++)
            if (strcmp(name, ln_tune_param_names[i]) == 0)
                param = i;
        if (param < 0) {
            ln_why_set(why, cap, "entries[%zu]: unknown parameter \"%.40s\"", index, name);
            return false;
        }
        if (!json_is_integer(v) || !value_ok(param, (long long)json_integer_value(v))) {
            ln_why_set(why, cap, "entries[%zu]: %s is not an integer in its range", index, name);
            return false;
        }
        e->value[param] = (long long)json_integer_value(v);
    }
    return true;
}

/* Compares one key string; false with why naming the field on mismatch. */
static bool key_str(json_t *key, const char *field, const char *label, const char *want,
                    ln_tune_file_result *r, char *why, size_t cap)
{
    json_t *v = json_object_get(key, field);
    if (!json_is_string(v)) {
        ln_why_set(why, cap, "key.%s is missing or not a string", field);
        *r = LN_TUNE_FILE_CORRUPT;
        return false;
    }
    if (strcmp(json_string_value(v), want) != 0) {
        ln_why_set(why, cap, "%s \"%.120s\" differs from this device's \"%.120s\"", label,
                json_string_value(v), want);
        *r = LN_TUNE_FILE_STALE;
        return false;
    }
    return true;
}

static bool key_int(json_t *key, const char *field, const char *label, long long want,
                    ln_tune_file_result *r, char *why, size_t cap)
{
    json_t *v = json_object_get(key, field);
    if (!json_is_integer(v)) {
        ln_why_set(why, cap, "key.%s is missing or not an integer", field);
        *r = LN_TUNE_FILE_CORRUPT;
        return false;
    }
    if ((long long)json_integer_value(v) != want) {
        ln_why_set(why, cap, "%s %lld differs from this one's %lld", label,
                (long long)json_integer_value(v), want);
        *r = LN_TUNE_FILE_STALE;
        return false;
    }
    return true;
}

static ln_tune_file_result parse_key(const ln_device_info *info, json_t *key, const char *hash,
                                     char *why, size_t cap);

static ln_tune_file_result parse_root(const ln_device_info *info, json_t *root,
                                      ln_tune_table *out, char *why, size_t cap)
{
    ln_tune_file_result r = LN_TUNE_FILE_CORRUPT;
    json_t *fmt = json_object_get(root, "format"), *ver = json_object_get(root, "format_version");
    if (!json_is_object(root) || !json_is_string(fmt) ||
        strcmp(json_string_value(fmt), "ln-cl-tuning") != 0 || !json_is_integer(ver)) {
        ln_why_set(why, cap, "not an ln-cl tuning file (no \"format\": \"ln-cl-tuning\")");
        return LN_TUNE_FILE_CORRUPT;
    }
    if (json_integer_value(ver) != LN_CACHE_FORMAT_VERSION) {
        ln_why_set(why, cap, "cache format version %lld, this ln-cl reads %u",
                (long long)json_integer_value(ver), LN_CACHE_FORMAT_VERSION);
        return LN_TUNE_FILE_STALE;
    }
    json_t *key = json_object_get(root, "key");
    if (!json_is_object(key)) {
        ln_why_set(why, cap, "\"key\" is missing or not an object");
        return LN_TUNE_FILE_CORRUPT;
    }
    char hash[20];
    snprintf(hash, sizeof(hash), "%016llx", (unsigned long long)ln_kernel_sources_hash());
    /* Changed ln-cl kernels make the entries of ln-cl's kernels stale, not
     * CLBlast's GEMM sets: those depend on the device, its driver and
     * CLBlast's version alone, and on PoCL they are 7-13x over CLBlast's
     * defaults. So a file that differs only in kernels_hash keeps its GEMM
     * entries (the table holds no other) and says so in `why`. */
    bool kernels_changed = false;
    json_t *file_hash = json_object_get(key, "kernels_hash");
    if (json_is_string(file_hash) && strcmp(json_string_value(file_hash), hash) != 0) {
        kernels_changed = true;
        json_t *copy = json_deep_copy(key);
        if (!copy) {
            ln_why_set(why, cap, "out of host memory");
            return LN_TUNE_FILE_CORRUPT;
        }
        json_object_set_new(copy, "kernels_hash", json_string(hash));
        ln_tune_file_result kr = parse_key(info, copy, hash, why, cap);
        json_decref(copy);
        if (kr != LN_TUNE_FILE_OK)
            return kr;
    } else if ((r = parse_key(info, key, hash, why, cap)) != LN_TUNE_FILE_OK) {
        return r;
    }
    json_t *entries = json_object_get(root, "entries");
    if (!json_is_array(entries)) {
        ln_why_set(why, cap, "\"entries\" is missing or not an array");
        return LN_TUNE_FILE_CORRUPT;
    }
    size_t i, dropped = 0;
    json_t *je;
    json_array_foreach(entries, i, je)
    {
        ln_tune_entry e;
        if (!parse_entry(je, i, &e, why, cap))
            return LN_TUNE_FILE_CORRUPT;
        if (kernels_changed && ln_clblast_kernel_of(e.kernel) < 0) {
            dropped++;
            continue;
        }
        if (ln_tune_table_put(out, &e) != LN_SUCCESS) {
            ln_why_set(why, cap, "out of host memory");
            return LN_TUNE_FILE_CORRUPT;
        }
    }
    if (kernels_changed)
        ln_why_set(why, cap,
                   "ln-cl's kernels changed since it was tuned (kernels hash \"%.20s\", now "
                   "\"%s\"; CLBlast GEMM entries kept: %zu, ln-cl kernel entries dropped: %zu)",
                   json_string_value(file_hash), hash, out->count, dropped);
    return LN_TUNE_FILE_OK;
}

/* The key's fields against this device and build (kernels_hash against
 * `hash`); OK or, with `why`, STALE or CORRUPT. */
static ln_tune_file_result parse_key(const ln_device_info *info, json_t *key, const char *hash,
                                     char *why, size_t cap)
{
    ln_tune_file_result r = LN_TUNE_FILE_OK;
    if (!key_str(key, "platform_name", "platform", info->platform_name, &r, why, cap) ||
        !key_str(key, "platform_version", "platform version", info->platform_version, &r, why,
                 cap) ||
        !key_str(key, "device_name", "device", info->device_name, &r, why, cap) ||
        !key_str(key, "driver_version", "driver version", info->driver_version, &r, why, cap) ||
        !key_int(key, "compute_units", "tuned on a device with compute units",
                 (long long)info->compute_units, &r, why, cap) ||
        !key_str(key, "kernels_hash", "kernels hash (kernel sources or build options changed)",
                 hash, &r, why, cap) ||
        !key_int(key, "tuner_version", "tuner version", LN_TUNER_VERSION, &r, why, cap) ||
        !key_str(key, "clblast_version", "CLBlast version", CLBLAST_VERSION_STRING, &r, why, cap))
        return r;
    return LN_TUNE_FILE_OK;
}

ln_tune_file_result ln_tune_file_read(const ln_device_info *info, const char *path,
                                      ln_tune_table *out, char *why, size_t why_cap)
{
    memset(out, 0, sizeof(*out));
    ln_why_set(why, why_cap, "%s", "");
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT) {
        ln_why_set(why, why_cap, "no such file");
        return LN_TUNE_FILE_ABSENT;
    }
    /* The file helpers report into the thread's slot; keep it as it was. */
    char saved[LN_ERRMSG_MAX];
    snprintf(saved, sizeof(saved), "%s", ln_last_error(NULL));
    void *bytes = NULL;
    size_t size = 0;
    ln_tune_file_result r;
    if (ln_file_read_all(NULL, path, TUNE_MAX_FILE, &bytes, &size) != LN_SUCCESS) {
        ln_why_set(why, why_cap, "%s", ln_last_error(NULL));
        r = LN_TUNE_FILE_CORRUPT;
    } else {
        json_error_t jerr;
        json_t *root = json_loadb(bytes, size, JSON_REJECT_DUPLICATES, &jerr);
        if (!root) {
            ln_why_set(why, why_cap, "not valid JSON (line %d: %s)", jerr.line, jerr.text);
            r = LN_TUNE_FILE_CORRUPT;
        } else {
            r = parse_root(info, root, out, why, why_cap);
            json_decref(root);
        }
    }
    free(bytes);
    if (r != LN_TUNE_FILE_OK)
        ln_tune_table_free(out);
    if (saved[0])
        ln_fail(NULL, LN_SUCCESS, "%s", saved);
    else
        ln_clear_error(NULL);
    return r;
}

/* ---------------------------------------------------------------- writing */

static json_t *table_json(const ln_device_info *info, const ln_tune_table *t)
{
    char hash[20];
    snprintf(hash, sizeof(hash), "%016llx", (unsigned long long)ln_kernel_sources_hash());
    json_t *entries = json_array();
    for (size_t i = 0; i < t->count; i++) {
        const ln_tune_entry *e = &t->entries[i];
        char shape[64];
        ln_tune_shape_name(e->batch, e->n, shape, sizeof(shape));
        json_t *params = json_object();
        for (int p = 0; p < LN_TP_COUNT; p++)
            if (e->value[p] >= 0)
                json_object_set_new(params, ln_tune_param_names[p], json_integer(e->value[p]));
        int cb = ln_clblast_kernel_of(e->kernel);
        for (int p = 0; cb >= 0 && p < ln_clblast_kernels[cb].count; p++)
            if (e->clblast[p] >= 0)
                json_object_set_new(params, ln_clblast_kernels[cb].params[p],
                                    json_integer(e->clblast[p]));
        json_array_append_new(entries, json_pack("{s:s, s:s, s:o, s:f, s:f}", "kernel",
                                                 e->kernel, "shape", shape, "params", params,
                                                 "default_us", e->default_us, "tuned_us",
                                                 e->tuned_us));
    }
    return json_pack("{s:s, s:i, s:{s:s, s:s, s:s, s:s, s:I, s:s, s:i, s:s}, s:o}", "format",
                     "ln-cl-tuning", "format_version", (int)LN_CACHE_FORMAT_VERSION, "key",
                     "platform_name", info->platform_name, "platform_version",
                     info->platform_version, "device_name", info->device_name, "driver_version",
                     info->driver_version, "compute_units", (json_int_t)info->compute_units,
                     "kernels_hash", hash, "tuner_version", (int)LN_TUNER_VERSION,
                     "clblast_version", CLBLAST_VERSION_STRING, "entries", entries);
}

ln_status ln_tune_file_merge(ln_context *ctx, const ln_device_info *info, const char *path,
                             const ln_tune_entry *add, size_t count)
{
    char lock_path[1100];
    snprintf(lock_path, sizeof(lock_path), "%s.lock", path);
    /* The lock file stays: removing it would let a third writer lock a
     * fresh inode while the second still holds the old one. */
    int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0)
        return ln_fail(ctx, LN_ERROR_IO, "%s: cannot open the lock file: %s", lock_path,
                       strerror(errno));
    while (flock(fd, LOCK_EX) != 0)
        if (errno != EINTR) {
            int e = errno;
            close(fd);
            return ln_fail(ctx, LN_ERROR_IO, "%s: flock failed: %s", lock_path, strerror(e));
        }
    ln_tune_table t;
    char why[512];
    ln_tune_file_result r = ln_tune_file_read(info, path, &t, why, sizeof(why));
    if (r == LN_TUNE_FILE_STALE || r == LN_TUNE_FILE_CORRUPT)
        fprintf(stderr, "ln-cl: warning: replacing tuning file %s: %s\n", path, why);
    else if (r == LN_TUNE_FILE_OK && why[0])
        fprintf(stderr, "ln-cl: rewriting tuning file %s for the current kernels: %s\n", path,
                why);
    ln_status st = LN_SUCCESS;
    for (size_t i = 0; i < count && st == LN_SUCCESS; i++)
        st = ln_tune_table_put(&t, &add[i]);
    char *text = NULL;
    if (st == LN_SUCCESS) {
        json_t *root = table_json(info, &t);
        text = root ? json_dumps(root, JSON_INDENT(2)) : NULL;
        json_decref(root);
        if (!text)
            st = ln_fail(ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "%s: cannot format JSON", path);
    } else {
        st = ln_fail(ctx, st, "%s: out of host memory merging entries", path);
    }
    if (st == LN_SUCCESS) {
        ln_io_piece pieces[2] = {{text, strlen(text)}, {"\n", 1}};
        st = ln_file_write_atomic(ctx, path, pieces, 2);
    }
    free(text);
    ln_tune_table_free(&t);
    flock(fd, LOCK_UN);
    close(fd);
    return st;
}

/* --------------------------------------------------------------- applying */

static bool larger_shape(const ln_tune_entry *a, const ln_tune_entry *b)
{
    return a->n > b->n || (a->n == b->n && a->batch > b->batch);
}

static void set_param(ln_params *p, const ln_device_info *info, int param, long long v)
{
    size_t wg_cap = info->max_work_group_size ? info->max_work_group_size : 1;
    switch (param) {
    case LN_TP_WG_LAYERNORM:
        p->wg_layernorm = (size_t)v < wg_cap ? (size_t)v : wg_cap;
        break;
    case LN_TP_WG_ELEMENTWISE:
        p->wg_elementwise = (size_t)v < wg_cap ? (size_t)v : wg_cap;
        break;
    case LN_TP_ATTN_MODE:
        p->attn_mode = (int)v;
        break;
    case LN_TP_ATTN_TILE_Q:
        p->attn_tile_q = (size_t)v;
        break;
    case LN_TP_ATTN_TILE_K:
        p->attn_tile_k = (size_t)v;
        break;
    case LN_TP_ATTN_KERNEL:
        /* Only over AUTO: LN_ATTENTION_KERNEL (or a caller) forcing one wins. */
        if (p->attn_kernel == LN_ATTENTION_KERNEL_AUTO)
            p->attn_kernel = (int)v;
        break;
    }
}

int ln_tune_apply(const ln_tune_table *t, const ln_device_info *info, ln_params *p)
{
    int set = 0;
    for (size_t k = 0; k < sizeof(known_kernels) / sizeof(known_kernels[0]); k++) {
        const ln_tune_entry *best = NULL;
        int mode = -2; /* -2: none seen, -3: entries disagree */
        for (size_t i = 0; i < t->count; i++) {
            const ln_tune_entry *e = &t->entries[i];
            if (strcmp(e->kernel, known_kernels[k]) != 0)
                continue;
            if (!best || larger_shape(e, best))
                best = e;
            long long m = e->value[LN_TP_ATTN_MODE];
            if (m >= 0)
                mode = mode == -2 ? (int)m : (mode == (int)m ? mode : -3);
        }
        if (!best)
            continue;
        /* The attention kernel stays per shape (ln_tuned_params_for): the
         * context's own stays AUTO, so a shape ln-tune did not measure runs
         * the device's default kernel. */
        for (int q = 0; q < LN_TP_COUNT; q++)
            if (q != LN_TP_ATTN_MODE && q != LN_TP_ATTN_KERNEL && best->value[q] >= 0) {
                set_param(p, info, q, best->value[q]);
                set++;
            }
        /* S mode depends on n (precomputing S wins small, recomputing wins
         * when B n^2 floats stop fitting caches): a device-wide mode only
         * when every tuned shape chose the same one; else AUTO decides. */
        if (mode >= 0) {
            set_param(p, info, LN_TP_ATTN_MODE, mode);
            set++;
        }
    }
    return set;
}

/* ------------------------------------------------- per-context state */

bool ln_tune_load_on_create = true;

ln_cache_state *ln_cache_state_of(const ln_context *ctx)
{
    return ctx ? ctx->cache : NULL;
}

void ln_tune_context_init(ln_context *ctx)
{
    ctx->cache = calloc(1, sizeof(*ctx->cache));
}

void ln_tune_context_free(ln_context *ctx)
{
    if (ctx->cache) {
        ln_tune_table_free(&ctx->cache->tuning);
        free(ctx->cache);
        ctx->cache = NULL;
    }
}

void ln_tune_context_load(ln_context *ctx)
{
    ln_cache_state *cs = ln_cache_state_of(ctx);
    if (!cs)
        return;
    if (!ln_tune_file_path(&ctx->info, cs->tuning_path, sizeof(cs->tuning_path))) {
        cs->tuning_path[0] = '\0';
        return;
    }
    if (!ln_tune_load_on_create)
        return;
    char why[512];
    ln_tune_file_result r = ln_tune_file_read(&ctx->info, cs->tuning_path, &cs->tuning, why,
                                              sizeof(why));
    if (r == LN_TUNE_FILE_OK) {
        if (why[0])
            fprintf(stderr,
                    "ln-cl: warning: tuning file %s: %s. Its CLBlast GEMM sets are applied; "
                    "ln-cl's kernels run with defaults until ln-tune is run again on this "
                    "device (it keeps the GEMM sets)\n",
                    cs->tuning_path, why);
        cs->tuned_values = ln_tune_apply(&cs->tuning, &ctx->info, &ctx->params);
        ln_clblast_apply(ctx, &cs->tuning, &cs->clblast_applied, &cs->clblast_rejected);
    } else if (r != LN_TUNE_FILE_ABSENT)
        fprintf(stderr,
                "ln-cl: warning: ignoring %s tuning file %s: %s; using defaults until ln-tune "
                "is run again on this device\n",
                r == LN_TUNE_FILE_STALE ? "stale" : "corrupt", cs->tuning_path, why);
}

bool ln_tuned_params_for(const ln_context *ctx, const char *kernel, size_t batch, size_t n,
                         ln_params *out)
{
    *out = ctx->params;
    ln_cache_state *cs = ln_cache_state_of(ctx);
    if (!cs)
        return false;
    uint64_t b = ln_tune_bucket(batch), m = ln_tune_bucket(n);
    for (size_t i = 0; i < cs->tuning.count; i++) {
        const ln_tune_entry *e = &cs->tuning.entries[i];
        if (e->batch == b && e->n == m && strcmp(e->kernel, kernel) == 0) {
            for (int q = 0; q < LN_TP_COUNT; q++)
                if (e->value[q] >= 0)
                    set_param(out, &ctx->info, q, e->value[q]);
            return true;
        }
    }
    return false;
}

uint64_t ln_tuned_largest_n(const ln_context *ctx, const char *kernel)
{
    ln_cache_state *cs = ln_cache_state_of(ctx);
    uint64_t largest = 0;
    for (size_t i = 0; cs && i < cs->tuning.count; i++) {
        const ln_tune_entry *e = &cs->tuning.entries[i];
        if (strcmp(e->kernel, kernel) == 0 && e->n > largest)
            largest = e->n;
    }
    return largest;
}

ln_status ln_context_tuning(const ln_context *ctx, ln_tuning_info *out)
{
    if (!ctx || !out)
        return ln_fail((ln_context *)ctx, LN_ERROR_INVALID_ARGUMENT,
                       "ln_context_tuning: context or out is NULL");
    memset(out, 0, sizeof(*out));
    out->wg_layernorm = ctx->params.wg_layernorm;
    out->wg_elementwise = ctx->params.wg_elementwise;
    out->attn_mode = (ln_attention_mode)ctx->params.attn_mode;
    out->attn_tile_q = ctx->params.attn_tile_q;
    out->attn_tile_k = ctx->params.attn_tile_k;
    out->cache_enabled = ln_cache_enabled();
    ln_cache_state *cs = ln_cache_state_of(ctx);
    if (cs) {
        out->tuned_values = cs->tuned_values;
        out->from_cache = cs->tuned_values > 0 || cs->clblast_applied > 0;
        out->tuning_entries = (int)cs->tuning.count;
        snprintf(out->cache_path, sizeof(out->cache_path), "%s", cs->tuning_path);
        out->binary_cache_hits = cs->binary_hits;
        out->binary_cache_misses = cs->binary_misses;
        out->binary_cache_stores = cs->binary_stores;
        out->clblast_applied = cs->clblast_applied;
        out->clblast_rejected = cs->clblast_rejected;
    }
    out->clblast_overrides = ln_clblast_overrides_on(ctx->device, &out->clblast_min_indirect_size);
    return LN_SUCCESS;
}
