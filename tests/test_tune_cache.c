/*
 * test_tune_cache.c: the tuning cache (src/tune_cache.c, and the CLBlast
 * GEMM entries of src/gemm_tuning.c): a written file is applied by the
 * next context (seen through ln_context_tuning), CLBlast overrides among
 * them with GEMMs still right, an invalid CLBlast set is ignored with a
 * warning while the rest applies, corrupt, truncated, hostile and
 * stale-key files are ignored with a warning naming why, and two processes
 * merging at once keep both's entries. Each test runs in its own temporary
 * LN_CACHE_DIR and process (Check forks per test), which matters: CLBlast's
 * overrides last for the process.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "test_util.h"
#include "internal.h"

#include <fcntl.h>
#include <jansson.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char cache_dir[256];

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* Checked teardown: the test's cache directory goes away. */
static void remove_cache_dir(void)
{
    if (cache_dir[0])
        nftw(cache_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    cache_dir[0] = '\0';
}

static void fresh_cache_dir(void)
{
    remove_cache_dir();
    snprintf(cache_dir, sizeof(cache_dir), "/tmp/ln-tunecache-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(cache_dir));
    setenv("LN_CACHE_DIR", cache_dir, 1);
    unsetenv("LN_TUNE_CACHE");
}

static ln_tuning_info tuning(const ln_context *ctx)
{
    ln_tuning_info ti;
    ck_assert_int_eq(ln_context_tuning(ctx, &ti), LN_SUCCESS);
    return ti;
}

static ln_tune_entry entry(const char *kernel, uint64_t batch, uint64_t n, int param,
                           long long value)
{
    ln_tune_entry e;
    ln_tune_entry_init(&e, kernel, batch, n);
    if (param >= 0)
        e.value[param] = value;
    e.default_us = 100;
    e.tuned_us = 80;
    return e;
}

/* The context's tuning file, written with `count` entries. */
static void write_entries(ln_context *ctx, const ln_tune_entry *e, size_t count, char *path,
                          size_t cap)
{
    ck_assert(ln_tune_file_path(&ctx->info, path, cap));
    tu_assert_ok(ctx, ln_tune_file_merge(ctx, &ctx->info, path, e, count));
}

/* Creates a context with stderr captured into `err` (cap bytes). */
static ln_context *context_capturing(char *err, size_t cap)
{
    char tmp[] = "/tmp/ln-stderr-XXXXXX";
    int fd = mkstemp(tmp);
    ck_assert_int_ge(fd, 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    ln_context *ctx = NULL;
    ln_status st = ln_context_create(NULL, &ctx);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ck_assert_int_eq(st, LN_SUCCESS);
    ssize_t n = pread(fd, err, cap - 1, 0);
    err[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(tmp);
    fprintf(stderr, "%s", err); /* keep it visible in the log */
    return ctx;
}

START_TEST(written_cache_is_applied)
{
    fresh_cache_dir();
    ln_context *a = tu_context();
    ln_params defaults = a->params;
    ln_tune_entry e[5] = {
        entry("layernorm", 1, 1024, LN_TP_WG_LAYERNORM, 32),
        entry("layernorm", 1, 64, LN_TP_WG_LAYERNORM, 8),
        entry("attention", 1, 4096, LN_TP_ATTN_TILE_Q, 8),
        entry("attention", 1, 64, LN_TP_ATTN_TILE_Q, 4),
        entry("elementwise", 2, 300, LN_TP_WG_ELEMENTWISE, 128),
    };
    e[2].value[LN_TP_ATTN_TILE_K] = 16;
    e[2].value[LN_TP_ATTN_MODE] = LN_ATTENTION_RECOMPUTE_S;
    e[3].value[LN_TP_ATTN_MODE] = LN_ATTENTION_RECOMPUTE_S;
    char path[1024];
    write_entries(a, e, 5, path, sizeof(path));
    ln_tuning_info ta = tuning(a);
    ck_assert_int_eq(ta.from_cache, 0); /* written after a was made */
    ck_assert_uint_eq(ta.wg_layernorm, defaults.wg_layernorm);
    ln_context_destroy(a);

    char err[4096];
    ln_context *b = context_capturing(err, sizeof(err));
    ck_assert_msg(strstr(err, "warning") == NULL, "unexpected warning: %s", err);
    ln_tuning_info tb = tuning(b);
    ck_assert_int_eq(tb.from_cache, 1);
    ck_assert_int_eq(tb.tuning_entries, 5);
    ck_assert_str_eq(tb.cache_path, path);
    /* The entry at the largest shape sets the device default. */
    ck_assert_uint_eq(tb.wg_layernorm, 32);
    ck_assert_uint_eq(tb.attn_tile_q, 8);
    ck_assert_uint_eq(tb.attn_tile_k, 16);
    ck_assert_uint_eq(tb.wg_elementwise, 128);
    ck_assert_int_eq(tb.attn_mode, LN_ATTENTION_RECOMPUTE_S);
    ck_assert_int_eq(tb.tuned_values, 5);
    /* Per bucket: n = 50 falls in the n64 bucket. */
    ln_params p;
    ck_assert(ln_tuned_params_for(b, "attention", 1, 50, &p));
    ck_assert_uint_eq(p.attn_tile_q, 4);
    ck_assert(!ln_tuned_params_for(b, "attention", 3, 50, &p));
    ck_assert_uint_eq(p.attn_tile_q, 8);
    /* And the ops run with what was applied. */
    float x[64 * 3], g[64], bb[64], y[64 * 3];
    uint64_t rng = tu_seed();
    tu_fill(x, 64 * 3, -1, 1, &rng);
    tu_fill(g, 64, 0.5f, 1.5f, &rng);
    tu_fill(bb, 64, -0.5f, 0.5f, &rng);
    tu_assert_ok(b, ln_layernorm_host(b, 3, 64, x, g, bb, 1e-5f, y));
    ln_context_destroy(b);
}
END_TEST

/* A context in a fresh cache directory whose tuning file holds two
 * attention entries of the given buckets and modes. */
static ln_context *context_with_modes(uint64_t n0, int mode0, uint64_t n1, int mode1)
{
    fresh_cache_dir();
    ln_context *a = tu_context();
    ln_tune_entry e[2] = {
        entry("attention", 1, n0, LN_TP_ATTN_MODE, mode0),
        entry("attention", 1, n1, LN_TP_ATTN_MODE, mode1),
    };
    char path[1024];
    write_entries(a, e, 2, path, sizeof(path));
    ln_context_destroy(a);
    return tu_context();
}

START_TEST(mode_applied_only_when_all_agree)
{
    ln_context *b = context_with_modes(4096, LN_ATTENTION_RECOMPUTE_S, 64,
                                       LN_ATTENTION_PRECOMPUTED_S);
    ck_assert_int_eq(tuning(b).attn_mode, LN_ATTENTION_AUTO);
    ck_assert_int_eq(ln_attention_resolve_mode(b, 1, 64), LN_ATTENTION_PRECOMPUTED_S);
    ln_params p;
    ck_assert(ln_tuned_params_for(b, "attention", 1, 4000, &p));
    ck_assert_int_eq(p.attn_mode, LN_ATTENTION_RECOMPUTE_S);
    ln_context_destroy(b);
}
END_TEST

/* A mode every tuned bucket agreed on holds up to the largest n measured;
 * beyond it the S budget decides (src/attention.c says why). */
START_TEST(agreed_mode_not_extrapolated)
{
    ln_context *b = context_with_modes(64, LN_ATTENTION_RECOMPUTE_S, 256, LN_ATTENTION_RECOMPUTE_S);
    ck_assert_int_eq(tuning(b).attn_mode, LN_ATTENTION_RECOMPUTE_S);
    ck_assert_uint_eq(ln_tuned_largest_n(b, "attention"), 256);
    ck_assert_uint_eq(ln_tuned_largest_n(b, "layernorm"), 0);
    ck_assert_int_eq(ln_attention_resolve_mode(b, 1, 200), LN_ATTENTION_RECOMPUTE_S);
    ck_assert_int_eq(ln_attention_resolve_mode(b, 2, 256), LN_ATTENTION_RECOMPUTE_S);
    ck_assert_int_eq(ln_attention_resolve_mode(b, 1, 300), LN_ATTENTION_PRECOMPUTED_S);
    ck_assert_int_eq(ln_attention_resolve_mode(b, 1, 4096), LN_ATTENTION_PRECOMPUTED_S);
    ln_context_destroy(b);
}
END_TEST

/* Attention of one 50-long sequence (width 64, heads of 32) through the
 * tuned context and through one that read no tuning file: the tuned one
 * built a program with `options` (what its bucket entry asked for), and
 * both compute the same. */
static void same_attention_as_untuned(ln_context *tuned, ln_context *plain, uint64_t seed,
                                      const char *options, const char *what)
{
    const size_t n = 50, width = 64, head_dim = 32, d = 48;
    uint64_t rng = seed;
    float *q = tu_malloc(n * width * 4), *k = tu_malloc(n * width * 4),
          *v = tu_malloc(n * width * 4), *u = tu_malloc(n * d * 4), temp[2] = {0.7f, 1.3f},
          *got = tu_malloc(n * width * 4), *want = tu_malloc(n * width * 4);
    tu_fill(q, n * width, -1, 1, &rng);
    tu_fill(k, n * width, -1, 1, &rng);
    tu_fill(v, n * width, -1, 1, &rng);
    tu_fill(u, n * d, -0.2f, 0.2f, &rng);
    tu_assert_ok(tuned, ln_semantic_attention_host(tuned, 1, n, width, head_dim, d, q, k, v, u,
                                                   temp, NULL, LN_ATTENTION_AUTO, got));
    tu_assert_ok(plain, ln_semantic_attention_host(plain, 1, n, width, head_dim, d, q, k, v, u,
                                                   temp, NULL, LN_ATTENTION_AUTO, want));
    bool found = false;
    for (int i = 0; i < tuned->program_count; i++)
        found |= strstr(tuned->programs[i].options, options) != NULL;
    ck_assert_msg(found, "no attention program with %s (%s)", what, options);
    double *ref = tu_malloc(n * width * 8);
    for (size_t i = 0; i < n * width; i++)
        ref[i] = want[i];
    tu_assert_close(got, ref, n * width, 1e-5, "%s against the untuned default", what);
    free(q), free(k), free(v), free(u), free(got), free(want), free(ref);
}

/* Attention takes the tiles and mode of its own shape's bucket when ln-tune
 * has an entry there (src/attention.c), the device-wide ones otherwise,
 * and computes the same either way. */
START_TEST(attention_uses_bucket_entry)
{
    fresh_cache_dir();
    ln_context *a = tu_context();
    ln_tune_entry e[2] = {
        entry("attention", 1, 64, LN_TP_ATTN_MODE, LN_ATTENTION_RECOMPUTE_S),
        entry("attention", 1, 4096, LN_TP_ATTN_MODE, LN_ATTENTION_PRECOMPUTED_S),
    };
    e[0].value[LN_TP_ATTN_TILE_Q] = 4, e[0].value[LN_TP_ATTN_TILE_K] = 8;
    e[1].value[LN_TP_ATTN_TILE_Q] = 16, e[1].value[LN_TP_ATTN_TILE_K] = 32;
    char path[1024];
    write_entries(a, e, 2, path, sizeof(path));
    ln_context_destroy(a);
    setenv("LN_TUNE_CACHE", "off", 1);
    ln_context *plain = tu_context();
    unsetenv("LN_TUNE_CACHE");
    ln_context *b = tu_context();
    /* Modes disagree: AUTO device-wide, each bucket its own. A 50-long
     * sequence's S (10 KB) is far inside the S budget: AUTO alone would
     * precompute it. */
    ck_assert_int_eq(tuning(b).attn_mode, LN_ATTENTION_AUTO);
    ck_assert_int_eq(ln_attention_resolve_mode(plain, 1, 50), LN_ATTENTION_PRECOMPUTED_S);
    ck_assert_int_eq(ln_attention_resolve_mode(b, 1, 50), LN_ATTENTION_RECOMPUTE_S);
    ck_assert_int_eq(ln_attention_resolve_mode(b, 1, 3000), LN_ATTENTION_PRECOMPUTED_S);
    ck_assert_int_eq(ln_attention_resolve_mode(b, 2, 50), LN_ATTENTION_PRECOMPUTED_S);
    /* The bucket's 4 x 8 tiles built the kernel b ran. */
    same_attention_as_untuned(b, plain, tu_seed(), "-DATTN_TILE_Q=4 -DATTN_TILE_K=8",
                              "the n64 bucket's 4 x 8 tiles");
    ln_context_destroy(b);
    ln_context_destroy(plain);
}
END_TEST

/* ln-tune's attention kernel per shape bucket: applied over the context's
 * AUTO only (LN_ATTENTION_KERNEL, or a caller, forcing one wins), never
 * device-wide, so a shape without an entry keeps the device's default; the
 * bucket's kernel is the one built, and computes what the default does. */
START_TEST(attention_kernel_per_bucket)
{
    fresh_cache_dir();
    ln_context *a = tu_context();
    ln_tune_entry e[2] = {
        entry("attention", 1, 64, LN_TP_ATTN_KERNEL, LN_ATTENTION_KERNEL_TILES),
        entry("attention", 1, 4096, LN_TP_ATTN_KERNEL, LN_ATTENTION_KERNEL_ROWS),
    };
    e[0].value[LN_TP_ATTN_TILE_Q] = 32;
    e[0].value[LN_TP_ATTN_MODE] = LN_ATTENTION_PRECOMPUTED_S;
    char path[1024];
    write_entries(a, e, 2, path, sizeof(path));
    ln_context_destroy(a);
    setenv("LN_TUNE_CACHE", "off", 1);
    ln_context *plain = tu_context();
    unsetenv("LN_TUNE_CACHE");
    ln_context *b = tu_context();
    ck_assert_int_eq(b->params.attn_kernel, LN_ATTENTION_KERNEL_AUTO); /* not device-wide */
    ln_params tp;
    ck_assert(ln_tuned_params_for(b, "attention", 1, 50, &tp));
    ck_assert_int_eq(tp.attn_kernel, LN_ATTENTION_KERNEL_TILES);
    ck_assert_uint_eq(tp.attn_tile_q, 32);
    ck_assert(ln_tuned_params_for(b, "attention", 1, 3000, &tp));
    ck_assert_int_eq(tp.attn_kernel, LN_ATTENTION_KERNEL_ROWS);
    ck_assert(!ln_tuned_params_for(b, "attention", 1, 300, &tp));
    ck_assert_int_eq(tp.attn_kernel, LN_ATTENTION_KERNEL_AUTO);
    setenv("LN_ATTENTION_KERNEL", "fused", 1);
    ln_context *forced = tu_context();
    unsetenv("LN_ATTENTION_KERNEL");
    ck_assert(ln_tuned_params_for(forced, "attention", 1, 50, &tp));
    ck_assert_int_eq(tp.attn_kernel, LN_ATTENTION_KERNEL_FUSED);

    same_attention_as_untuned(b, plain, tu_seed() + 3, "-DATTN_TILES=1 -DATTN_TILES_Q=32",
                              "the n64 bucket's attention_tiles of 32 queries");
    ln_context_destroy(forced);
    ln_context_destroy(b);
    ln_context_destroy(plain);
}
END_TEST

/* A valid file, then one key field replaced: ignored as stale, naming it. */
static void stale_case(const char *field, json_t *value, const char *expect_in_warning)
{
    fresh_cache_dir();
    ln_context *a = tu_context();
    ln_params defaults = a->params;
    ln_tune_entry e = entry("layernorm", 1, 1024, LN_TP_WG_LAYERNORM, 16);
    char path[1024];
    write_entries(a, &e, 1, path, sizeof(path));
    ln_context_destroy(a);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    ck_assert_ptr_nonnull(root);
    json_object_set_new(json_object_get(root, "key"), field, value);
    ck_assert_int_eq(json_dump_file(root, path, JSON_INDENT(2)), 0);
    json_decref(root);

    char err[4096];
    ln_context *b = context_capturing(err, sizeof(err));
    ck_assert_msg(strstr(err, "stale") && strstr(err, expect_in_warning),
                  "%s: warning should say stale and \"%s\": %s", field, expect_in_warning, err);
    ln_tuning_info tb = tuning(b);
    ck_assert_int_eq(tb.from_cache, 0);
    ck_assert_uint_eq(tb.wg_layernorm, defaults.wg_layernorm);
    ln_context_destroy(b);
}

START_TEST(stale_driver_ignored)
{
    stale_case("driver_version", json_string("99.0-other-driver"), "driver version");
}
END_TEST

START_TEST(stale_tuner_ignored)
{
    stale_case("tuner_version", json_integer(LN_TUNER_VERSION + 1), "tuner version");
}
END_TEST

/* CLBlast's defaults (what GEMM entries were measured against) and its
 * parameter names belong to its version. */
START_TEST(stale_clblast_ignored)
{
    stale_case("clblast_version", json_string("1.4.0"), "CLBlast version");
}
END_TEST

START_TEST(stale_compute_units_ignored)
{
    stale_case("compute_units", json_integer(977), "compute units");
}
END_TEST

static void write_text(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fwrite(text, 1, len, f);
    fclose(f);
}

/* The file replaced by `text`: ignored as corrupt, defaults in effect. */
static void corrupt_case(const char *text, size_t len, const char *label)
{
    ln_context *a = tu_context();
    ln_params defaults;
    ln_params_defaults(&a->info, &defaults);
    char path[1024];
    ck_assert(ln_tune_file_path(&a->info, path, sizeof(path)));
    ln_context_destroy(a);
    write_text(path, text, len);
    char err[4096];
    ln_context *b = context_capturing(err, sizeof(err));
    ck_assert_msg(strstr(err, "warning") && (strstr(err, "corrupt") || strstr(err, "stale")),
                  "%s: no warning: %s", label, err);
    ln_tuning_info tb = tuning(b);
    ck_assert_msg(tb.from_cache == 0, "%s: applied", label);
    ck_assert_uint_eq(tb.wg_layernorm, defaults.wg_layernorm);
    ck_assert_uint_eq(tb.attn_tile_q, defaults.attn_tile_q);
    ln_context_destroy(b);
}

START_TEST(corrupt_files_ignored)
{
    fresh_cache_dir();
    static const char *const bad[] = {
        "", "{", "null", "[]", "{}", "\"ln-cl-tuning\"", "{\"format\": \"ln-cl-tuning\"}",
        "{\"format\": \"ln-cl-tuning\", \"format_version\": 1}",
        "{\"format\": \"ln-cl-tuning\", \"format_version\": 1, \"key\": []}",
        "{\"format\": \"ln-cl-tuning\", \"format_version\": 1e400}",
        "{\"format\": \"ln-cl-tuning\", \"format_version\": 1, \"format_version\": 1}",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]"
        "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        "\xff\xfe\x00garbage",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char label[32];
        snprintf(label, sizeof(label), "bad[%zu]", i);
        corrupt_case(bad[i], i == sizeof(bad) / sizeof(bad[0]) - 1 ? 10 : strlen(bad[i]), label);
    }
}
END_TEST

/* A valid file, then one entry field changed to something out of range. */
START_TEST(bad_entries_ignored)
{
    static const char *const cases[][2] = {
        {"shape", "\"B3-n64\""},          {"shape", "\"B01-n64\""},
        {"shape", "\"B1-n64 \""},         {"kernel", "\"gemm\""},
        {"kernel", "7"},                  {"default_us", "\"fast\""},
        {"default_us", "-1"},             {"params", "{\"wg_layernorm\": 0}"},
        {"params", "{\"wg_layernorm\": -5}"},
        {"params", "{\"wg_layernorm\": 99999999999999}"},
        {"params", "{\"attn_mode\": 3}"}, {"params", "{\"attn_tile_q\": 1.5}"},
        {"params", "{\"attn_kernel\": 4}"}, {"params", "{\"attn_kernel\": -1}"},
        {"params", "{\"unknown\": 1}"},   {"params", "[]"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fresh_cache_dir();
        ln_context *a = tu_context();
        ln_tune_entry e = entry("layernorm", 1, 64, LN_TP_WG_LAYERNORM, 16);
        char path[1024];
        write_entries(a, &e, 1, path, sizeof(path));
        ln_context_destroy(a);
        json_t *root = json_load_file(path, 0, NULL);
        ck_assert_ptr_nonnull(root);
        json_t *v = json_loads(cases[i][1], JSON_DECODE_ANY, NULL);
        ck_assert_ptr_nonnull(v);
        json_object_set_new(json_array_get(json_object_get(root, "entries"), 0), cases[i][0], v);
        char *text = json_dumps(root, 0);
        json_decref(root);
        char label[128];
        snprintf(label, sizeof(label), "%s = %s", cases[i][0], cases[i][1]);
        corrupt_case(text, strlen(text), label);
        free(text);
    }
}
END_TEST

START_TEST(truncated_file_ignored)
{
    fresh_cache_dir();
    ln_context *a = tu_context();
    ln_tune_entry e[2] = {entry("layernorm", 1, 1024, LN_TP_WG_LAYERNORM, 16),
                          entry("attention", 1, 1024, LN_TP_ATTN_TILE_Q, 8)};
    char path[1024];
    write_entries(a, e, 2, path, sizeof(path));
    ln_context_destroy(a);
    void *bytes;
    size_t size;
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    size = (size_t)ftell(f);
    fclose(f);
    (void)bytes;
    /* Every cut point that leaves invalid JSON: a sample of them. */
    for (size_t cut = 0; cut < size - 2; cut += size / 7 + 1) {
        ck_assert_int_eq(truncate(path, (off_t)cut), 0);
        char err[4096];
        ln_context *b = context_capturing(err, sizeof(err));
        ck_assert_msg(strstr(err, "corrupt"), "cut at %zu: no warning: %s", cut, err);
        ck_assert_int_eq(tuning(b).from_cache, 0);
        ln_context_destroy(b);
        /* Put the whole file back for the next cut. */
        ln_context *w = tu_context();
        write_entries(w, e, 2, path, sizeof(path));
        ln_context_destroy(w);
        f = fopen(path, "rb");
        fseek(f, 0, SEEK_END);
        size = (size_t)ftell(f);
        fclose(f);
    }
}
END_TEST

/* Two processes each merge 24 entries of their own, one call at a time,
 * into the same file: every entry of both must be there afterwards. */
START_TEST(concurrent_writers_keep_both)
{
    fresh_cache_dir();
    ln_context *a = tu_context();
    ln_device_info info = a->info;
    char path[1024];
    ck_assert(ln_tune_file_path(&info, path, sizeof(path)));
    ln_context_destroy(a);
    enum { PER_WRITER = 24 };
    const char *kernels[2] = {"layernorm", "elementwise"};
    fflush(NULL);
    pid_t pids[2];
    for (int w = 0; w < 2; w++) {
        pids[w] = fork();
        ck_assert_int_ge(pids[w], 0);
        if (pids[w] == 0) {
            for (int i = 0; i < PER_WRITER; i++) {
                ln_tune_entry e = entry(kernels[w], (uint64_t)1 << (i % 4), (uint64_t)1 << (i / 4 + 3),
                                        w ? LN_TP_WG_ELEMENTWISE : LN_TP_WG_LAYERNORM, 1 + i);
                if (ln_tune_file_merge(NULL, &info, path, &e, 1) != LN_SUCCESS)
                    _exit(1);
            }
            _exit(0);
        }
    }
    for (int w = 0; w < 2; w++) {
        int status = 0;
        ck_assert_int_eq(waitpid(pids[w], &status, 0), pids[w]);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer %d failed", w);
    }
    ln_tune_table t;
    char why[512];
    ck_assert_msg(ln_tune_file_read(&info, path, &t, why, sizeof(why)) == LN_TUNE_FILE_OK,
                  "file invalid after concurrent writes: %s", why);
    ck_assert_uint_eq(t.count, 2 * PER_WRITER);
    int seen[2] = {0, 0};
    for (size_t i = 0; i < t.count; i++)
        seen[strcmp(t.entries[i].kernel, "elementwise") == 0]++;
    ck_assert_int_eq(seen[0], PER_WRITER);
    ck_assert_int_eq(seen[1], PER_WRITER);
    ln_tune_table_free(&t);
}
END_TEST

START_TEST(off_reads_nothing)
{
    fresh_cache_dir();
    ln_context *a = tu_context();
    ln_tune_entry e = entry("layernorm", 1, 1024, LN_TP_WG_LAYERNORM, 16);
    char path[1024];
    write_entries(a, &e, 1, path, sizeof(path));
    ln_params defaults = a->params;
    ln_context_destroy(a);
    setenv("LN_TUNE_CACHE", "off", 1);
    ln_context *b = tu_context();
    ln_tuning_info tb = tuning(b);
    ck_assert_int_eq(tb.from_cache, 0);
    ck_assert_int_eq(tb.cache_enabled, 0);
    ck_assert_uint_eq(tb.wg_layernorm, defaults.wg_layernorm);
    ck_assert_int_eq(tb.clblast_overrides, 0);
    ck_assert_int_eq(tb.clblast_min_indirect_size, -1);
    ln_context_destroy(b);
}
END_TEST

/* ------------------------------------------------ CLBlast GEMM entries */

/* A CLBlast entry with `values` (count of them, in params order). */
static ln_tune_entry clblast_entry(int kernel, uint64_t n, const long long *values, int count)
{
    ln_tune_entry e = entry(ln_clblast_kernels[kernel].entry, 1, n, -1, 0);
    for (int i = 0; i < count; i++)
        e.clblast[i] = values[i];
    return e;
}

/* A valid Xgemm set: 64x64 tiles, 8x8 threads, 4-wide vectors, no local
 * memory (valid on every device with 64 work-items). */
static const long long xgemm_ok[16] = {0, 1, 32, 2, 8, 8, 64, 8, 8, 64, 0, 0, 1, 1, 4, 4};
/* Xgemm as ln-tune's first AVX-512 CPU candidate: the 2-D register
 * tiling kernel (GEMMK 1), 64x64 tiles, 2x8 threads, 16-wide vectors, no
 * local memory; on PoCL it is built with USE_VECTOR_MAD
 * (src/gemm_tuning.c), so the override test checks that path's results. */
static const long long xgemm_cpu_first[16] = {1, 1, 32, 1, 2, 2, 64, 8, 8, 64, 0, 0, 0, 0, 16, 1};

/* y = x w^T + b through ln_linear_host, against float64, at sizes that are
 * no multiple of any tile (CLBlast pads them on the indirect path). */
static void check_linear(ln_context *ctx, size_t rows, size_t in, size_t out)
{
    uint64_t rng = tu_seed();
    float *x = tu_malloc(rows * in * 4), *w = tu_malloc(out * in * 4), *b = tu_malloc(out * 4),
          *y = tu_malloc(rows * out * 4);
    double *ref = tu_malloc(rows * out * 8);
    tu_fill(x, rows * in, -1, 1, &rng);
    tu_fill_linear(w, b, out, in, &rng);
    for (size_t r = 0; r < rows; r++)
        for (size_t o = 0; o < out; o++) {
            double acc = b[o];
            for (size_t i = 0; i < in; i++)
                acc += (double)x[r * in + i] * w[o * in + i];
            ref[r * out + o] = acc;
        }
    tu_assert_ok(ctx, ln_linear_host(ctx, rows, in, out, x, w, b, LN_EPILOGUE_BIAS, NULL, y));
    tu_assert_close(y, ref, rows * out, 1e-5, "linear %zux%zux%zu", rows, in, out);
    /* The model's route, W^T [in, out]: copy-free on GEMMK 1 at tile
     * multiples, padded otherwise. */
    float *wt = tu_malloc(out * in * 4);
    for (size_t o = 0; o < out; o++)
        for (size_t i = 0; i < in; i++)
            wt[i * out + o] = w[o * in + i];
    cl_mem dx, dwt, db, dy;
    tu_assert_ok(ctx, ln_buffer_from_host(ctx, x, rows * in * 4, &dx, "x"));
    tu_assert_ok(ctx, ln_buffer_from_host(ctx, wt, out * in * 4, &dwt, "w^T"));
    tu_assert_ok(ctx, ln_buffer_from_host(ctx, b, out * 4, &db, "b"));
    tu_assert_ok(ctx, ln_buffer_create(ctx, rows * out * 4, &dy, "y"));
    ln_dmat none = {0};
    tu_assert_ok(ctx, ln_linear_wt(ctx, rows, in, out, ln_dmat_of(dx, in), ln_dmat_of(dwt, out),
                                   db, 0, LN_EPILOGUE_BIAS, none, ln_dmat_of(dy, out)));
    tu_assert_ok(ctx, ln_buffer_to_host(ctx, dy, y, rows * out * 4));
    tu_assert_close(y, ref, rows * out, 1e-5, "linear W^T %zux%zux%zu", rows, in, out);
    ln_buffer_release(ctx, dx), ln_buffer_release(ctx, dwt), ln_buffer_release(ctx, db);
    ln_buffer_release(ctx, dy);
    free(x), free(w), free(wt), free(b), free(y), free(ref);
}

/* Strided-batched C_i = A_i B_i, B_i [k, n], as attention's P V runs it,
 * against float64, with k no multiple of the tiles. */
static void check_batched_nn(ln_context *ctx, size_t batch, size_t m, size_t n, size_t k)
{
    uint64_t rng = tu_seed() + 7;
    float *a = tu_malloc(batch * m * k * 4), *b = tu_malloc(batch * k * n * 4),
          *c = tu_malloc(batch * m * n * 4);
    double *ref = tu_malloc(batch * m * n * 8);
    tu_fill(a, batch * m * k, -1, 1, &rng);
    tu_fill(b, batch * k * n, -1, 1, &rng);
    for (size_t i = 0; i < batch; i++)
        for (size_t r = 0; r < m; r++)
            for (size_t j = 0; j < n; j++) {
                double acc = 0;
                for (size_t p = 0; p < k; p++)
                    acc += (double)a[(i * m + r) * k + p] * b[(i * k + p) * n + j];
                ref[(i * m + r) * n + j] = acc;
            }
    cl_mem da, dbm, dc;
    tu_assert_ok(ctx, ln_buffer_from_host(ctx, a, batch * m * k * 4, &da, "a"));
    tu_assert_ok(ctx, ln_buffer_from_host(ctx, b, batch * k * n * 4, &dbm, "b"));
    tu_assert_ok(ctx, ln_buffer_create(ctx, batch * m * n * 4, &dc, "c"));
    tu_assert_ok(ctx, ln_gemm_batched(ctx, false, false, m, n, k, 1.0f, ln_dmat_of(da, k), m * k,
                                      ln_dmat_of(dbm, n), k * n, 0.0f, ln_dmat_of(dc, n), m * n,
                                      batch, "test"));
    tu_assert_ok(ctx, ln_buffer_to_host(ctx, dc, c, batch * m * n * 4));
    tu_assert_close(c, ref, batch * m * n, 1e-5, "batched %zu x %zux%zux%zu", batch, m, n, k);
    ln_buffer_release(ctx, da), ln_buffer_release(ctx, dbm), ln_buffer_release(ctx, dc);
    free(a), free(b), free(c), free(ref);
}

START_TEST(clblast_override_applied)
{
    fresh_cache_dir();
    ln_context *a = tu_context();
    ck_assert_int_eq(tuning(a).clblast_overrides, 0);
    const long long all_indirect[1] = {0};
    ln_tune_entry e[3] = {
        clblast_entry(LN_CB_XGEMM, 256, xgemm_cpu_first, 16),
        clblast_entry(LN_CB_GEMM_ROUTINE, 256, all_indirect, 1),
        /* measured, CLBlast's own kept: nothing to apply */
        clblast_entry(LN_CB_XGEMM_DIRECT, 256, NULL, 0),
    };
    char path[1024];
    write_entries(a, e, 3, path, sizeof(path));
    ln_context_destroy(a);
    /* Written and read back as they were. */
    ln_device_info info;
    ln_tune_table t;
    char why[512];
    ln_context *probe = tu_context();
    info = probe->info;
    ln_context_destroy(probe);
    ck_assert_msg(ln_tune_file_read(&info, path, &t, why, sizeof(why)) == LN_TUNE_FILE_OK, "%s",
                  why);
    ck_assert_uint_eq(t.count, 3);
    for (size_t i = 0; i < t.count; i++)
        if (strcmp(t.entries[i].kernel, "clblast-Xgemm") == 0)
            for (int p = 0; p < 16; p++)
                ck_assert_int_eq(t.entries[i].clblast[p], xgemm_cpu_first[p]);
    ln_tune_table_free(&t);

    char err[4096];
    ln_context *b = context_capturing(err, sizeof(err));
    ck_assert_msg(strstr(err, "warning") == NULL, "unexpected warning: %s", err);
    ln_tuning_info tb = tuning(b);
    ck_assert_int_eq(tb.clblast_applied, 2);
    ck_assert_int_eq(tb.clblast_rejected, 0);
    ck_assert_int_eq(tb.clblast_overrides, 2);
    ck_assert_int_eq(tb.clblast_min_indirect_size, 0);
    ck_assert_int_eq(tb.from_cache, 1);
    /* Every GEMM now runs the overridden Xgemm (threshold 0: none direct),
     * and still computes the right thing, tile-multiple or not. */
    check_linear(b, 37, 70, 53);
    check_linear(b, 128, 64, 192);
    check_linear(b, 261, 384, 100); /* several tiles each way, K over 12 KWG steps */
    check_linear(b, 100, 96, 70);   /* m and n padded to different tile counts */
    check_batched_nn(b, 3, 64, 32, 100);
    ln_context_destroy(b);
    /* CLBlast keeps the override for the process: a later context says so. */
    ln_context *c = tu_context();
    ck_assert_int_eq(tuning(c).clblast_overrides, 2);
    ln_context_destroy(c);
}
END_TEST

/* A file tuned before ln-cl's kernels changed: its ln-cl kernel entries
 * are stale, its CLBlast GEMM sets still hold (src/tune_cache.c). The
 * context applies the sets, leaves ln-cl's parameters at their defaults
 * and says so; the next merge rewrites the file under the new hash with
 * the sets and without the stale entries. */
START_TEST(kernels_changed_keeps_gemm_sets)
{
    fresh_cache_dir();
    ln_context *a = tu_context();
    ln_params defaults = a->params;
    const long long all_indirect[1] = {0};
    ln_tune_entry e[3] = {
        entry("layernorm", 1, 1024, LN_TP_WG_LAYERNORM, 16),
        clblast_entry(LN_CB_XGEMM, 256, xgemm_cpu_first, 16),
        clblast_entry(LN_CB_GEMM_ROUTINE, 256, all_indirect, 1),
    };
    char path[1024];
    write_entries(a, e, 3, path, sizeof(path));
    ln_device_info info = a->info;
    ln_context_destroy(a);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    ck_assert_ptr_nonnull(root);
    json_object_set_new(json_object_get(root, "key"), "kernels_hash",
                        json_string("0123456789abcdef"));
    ck_assert_int_eq(json_dump_file(root, path, JSON_INDENT(2)), 0);
    json_decref(root);

    char err[4096];
    ln_context *b = context_capturing(err, sizeof(err));
    ck_assert_msg(strstr(err, "kernels changed") && strstr(err, "0123456789abcdef") &&
                      strstr(err, "GEMM sets are applied"),
                  "the warning should name the change and what still holds: %s", err);
    ln_tuning_info tb = tuning(b);
    ck_assert_int_eq(tb.clblast_applied, 2);
    ck_assert_uint_eq(tb.wg_layernorm, defaults.wg_layernorm);
    check_linear(b, 100, 96, 70); /* under the applied set */
    ln_context_destroy(b);

    ln_tune_table t;
    char why[512];
    ck_assert_int_eq(ln_tune_file_read(&info, path, &t, why, sizeof(why)), LN_TUNE_FILE_OK);
    ck_assert_msg(strstr(why, "CLBlast GEMM entries kept: 2") &&
                      strstr(why, "ln-cl kernel entries dropped: 1"),
                  "%s", why);
    ck_assert_uint_eq(t.count, 2);
    ln_tune_table_free(&t);

    ln_context *c = tu_context();
    ln_tune_entry fresh = entry("layernorm", 1, 64, LN_TP_WG_LAYERNORM, 32);
    tu_assert_ok(c, ln_tune_file_merge(c, &info, path, &fresh, 1));
    ln_context_destroy(c);
    ck_assert_int_eq(ln_tune_file_read(&info, path, &t, why, sizeof(why)), LN_TUNE_FILE_OK);
    ck_assert_msg(why[0] == '\0', "the rewritten file should be current: %s", why);
    ck_assert_uint_eq(t.count, 3);
    bool old_layernorm = false, new_layernorm = false;
    int gemm_entries = 0;
    for (size_t i = 0; i < t.count; i++) {
        if (strcmp(t.entries[i].kernel, "layernorm") == 0) {
            old_layernorm |= t.entries[i].n == 1024;
            new_layernorm |= t.entries[i].n == 64;
        }
        gemm_entries += ln_clblast_kernel_of(t.entries[i].kernel) >= 0;
    }
    ck_assert(!old_layernorm && new_layernorm);
    ck_assert_int_eq(gemm_entries, 2);
    ln_tune_table_free(&t);
}
END_TEST

START_TEST(clblast_bad_sets_ignored)
{
    fresh_cache_dir();
    ln_context *a = tu_context();
    long long bad_mwg[16];
    memcpy(bad_mwg, xgemm_ok, sizeof(bad_mwg));
    bad_mwg[6] = 60; /* MWG 60: not a multiple of MDIMC * VWM = 32 */
    const long long direct_partial[9] = {2, 8, 8, 8, 8, 1, 1, 4, 4}; /* WGD missing */
    ln_tune_entry e[3] = {
        clblast_entry(LN_CB_XGEMM, 256, bad_mwg, 16),
        clblast_entry(LN_CB_XGEMM_DIRECT, 256, direct_partial, 9),
        entry("layernorm", 1, 256, LN_TP_WG_LAYERNORM, 32),
    };
    char path[1024];
    write_entries(a, e, 3, path, sizeof(path));
    ln_context_destroy(a);
    char err[8192];
    ln_context *b = context_capturing(err, sizeof(err));
    ck_assert_msg(strstr(err, "warning") && strstr(err, "clblast-Xgemm") && strstr(err, "MWG"),
                  "no warning naming Xgemm's MWG: %s", err);
    ck_assert_msg(strstr(err, "clblast-XgemmDirect") && strstr(err, "WGD is missing"),
                  "no warning naming XgemmDirect's missing WGD: %s", err);
    ln_tuning_info tb = tuning(b);
    ck_assert_int_eq(tb.clblast_rejected, 2);
    ck_assert_int_eq(tb.clblast_applied, 0);
    ck_assert_int_eq(tb.clblast_overrides, 0);
    ck_assert_int_eq(tb.clblast_min_indirect_size, -1);
    /* The rest of the file applies, and GEMMs run CLBlast's own. */
    ck_assert_int_eq(tb.from_cache, 1);
    ck_assert_uint_eq(tb.wg_layernorm, 32);
    check_linear(b, 37, 70, 53);
    ln_context_destroy(b);
}
END_TEST

/* CLBlast names and ranges are checked when the file is read: a name the
 * kernel does not have, or a value outside 0..2^20, makes it corrupt. */
START_TEST(clblast_entry_checked_on_read)
{
    static const char *const params[] = {"{\"NOPE\": 1}", "{\"MWG\": -1}",
                                         "{\"MWG\": 2000000}", "{\"MWG\": 1.5}",
                                         "{\"wg_layernorm\": 16}"};
    for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
        fresh_cache_dir();
        ln_context *a = tu_context();
        ln_tune_entry e = clblast_entry(LN_CB_XGEMM, 64, xgemm_ok, 16);
        char path[1024];
        write_entries(a, &e, 1, path, sizeof(path));
        ln_context_destroy(a);
        json_t *root = json_load_file(path, 0, NULL);
        ck_assert_ptr_nonnull(root);
        json_object_set_new(json_array_get(json_object_get(root, "entries"), 0), "params",
                            json_loads(params[i], 0, NULL));
        ck_assert_int_eq(json_dump_file(root, path, 0), 0);
        json_decref(root);
        /* No context may read the valid file first: its override would
         * stay for the process. */
        char err[4096];
        ln_context *b = context_capturing(err, sizeof(err));
        ck_assert_msg(strstr(err, "corrupt"), "%s: no warning: %s", params[i], err);
        ln_tuning_info tb = tuning(b);
        ck_assert_int_eq(tb.from_cache, 0);
        ck_assert_int_eq(tb.clblast_overrides, 0);
        ln_context_destroy(b);
    }
}
END_TEST

START_TEST(clblast_validity)
{
    ln_context *ctx = tu_context();
    char why[256];
    ck_assert(ln_clblast_params_valid(LN_CB_XGEMM, xgemm_ok, &ctx->info, 256, why, sizeof(why)));
    long long v[16];
    /* Each of CLBlast's tuner constraints, broken once. */
    static const struct {
        int param;
        long long value;
        const char *says;
    } broken[] = {
        {3, 3, "KWI"},         /* KWG 32 % KWI 3 */
        {6, 48, "MWG"},        /* MWG 48 % (MDIMC 8 * VWM 4) */
        {9, 40, "NWG"},        /* NWG 40 % (NDIMC 8 * VWN 4) */
        {4, 16, "MDIMA"},      /* MWG 64 % (MDIMA 16 * VWM 4) = 0, KWG 32 % (64 / 16) = 0: */
        {14, 3, "VWM"},        /* vector width 3 */
        {10, 2, "SA"},         /* flag 2 */
        {0, 2, "GEMMK"},       /* flag 2 */
    };
    for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
        memcpy(v, xgemm_ok, sizeof(v));
        v[broken[i].param] = broken[i].value;
        bool ok = ln_clblast_params_valid(LN_CB_XGEMM, v, &ctx->info, 256, why, sizeof(why));
        if (broken[i].param == 4) { /* MDIMA 16 is valid: the checks are not too strict */
            ck_assert_msg(ok, "MDIMA 16 refused: %s", why);
            continue;
        }
        ck_assert_msg(!ok && strstr(why, broken[i].says), "%s = %lld: %s",
                      ln_clblast_kernels[LN_CB_XGEMM].params[broken[i].param], broken[i].value,
                      ok ? "accepted" : why);
    }
    /* GEMMK 1: valid as ln-tune's first CPU set, then each of CLBlast 1.5's
     * limits broken (src/gemm_tuning.c: wrong results on PoCL otherwise). */
    ck_assert_msg(ln_clblast_params_valid(LN_CB_XGEMM, xgemm_cpu_first, &ctx->info, 256, why,
                                          sizeof(why)),
                  "%s", why);
    memcpy(v, xgemm_cpu_first, sizeof(v));
    v[9] = 32; /* NWG 32 != MWG 64 */
    ck_assert(!ln_clblast_params_valid(LN_CB_XGEMM, v, &ctx->info, 256, why, sizeof(why)));
    ck_assert_msg(strstr(why, "MWG must equal NWG"), "%s", why);
    memcpy(v, xgemm_cpu_first, sizeof(v));
    v[1] = 2, v[2] = 16; /* KREG 2 */
    ck_assert(!ln_clblast_params_valid(LN_CB_XGEMM, v, &ctx->info, 256, why, sizeof(why)));
    ck_assert_msg(strstr(why, "KREG must be 1"), "%s", why);
    /* KWG a multiple of MDIMC * NDIMC / MDIMA: 8 * 8 / 2 = 32 does not divide 16. */
    memcpy(v, xgemm_ok, sizeof(v));
    v[2] = 16, v[3] = 2, v[4] = 2, v[6] = 64;
    ck_assert(!ln_clblast_params_valid(LN_CB_XGEMM, v, &ctx->info, 256, why, sizeof(why)));
    /* Work-group cap: 16 x 32 threads. */
    memcpy(v, xgemm_ok, sizeof(v));
    v[5] = 16, v[8] = 32, v[6] = 64, v[9] = 128, v[4] = 16, v[7] = 32, v[2] = 32;
    ck_assert(!ln_clblast_params_valid(LN_CB_XGEMM, v, &ctx->info, 256, why, sizeof(why)));
    ck_assert_msg(strstr(why, "work-group"), "%s", why);
    /* XgemmDirect: KWID MDIMAD MDIMCD NDIMBD NDIMCD PADA PADB VWMD VWND WGD */
    long long d[10] = {2, 8, 8, 8, 8, 1, 1, 4, 4, 32};
    ck_assert(ln_clblast_params_valid(LN_CB_XGEMM_DIRECT, d, &ctx->info, 256, why, sizeof(why)));
    d[9] = 48; /* WGD 48 % (MDIMCD 8 * VWMD 4) */
    ck_assert(!ln_clblast_params_valid(LN_CB_XGEMM_DIRECT, d, &ctx->info, 256, why, sizeof(why)));
    const long long t_ok[1] = {128}, t_bad[1] = {(1 << 20) + 1};
    ck_assert(ln_clblast_params_valid(LN_CB_GEMM_ROUTINE, t_ok, &ctx->info, 256, why, 256));
    ck_assert(!ln_clblast_params_valid(LN_CB_GEMM_ROUTINE, t_bad, &ctx->info, 256, why, 256));
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(buckets)
{
    ck_assert_uint_eq(ln_tune_bucket(0), 1);
    ck_assert_uint_eq(ln_tune_bucket(1), 1);
    ck_assert_uint_eq(ln_tune_bucket(3), 4);
    ck_assert_uint_eq(ln_tune_bucket(1024), 1024);
    ck_assert_uint_eq(ln_tune_bucket(1025), 2048);
    char name[64];
    ln_tune_shape_name(3, 1000, name, sizeof(name));
    ck_assert_str_eq(name, "B4-n1024");
    ln_tuning_info ti;
    ck_assert_int_eq(ln_context_tuning(NULL, &ti), LN_ERROR_INVALID_ARGUMENT);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tune_cache");
    TCase *tc = tcase_create("tune_cache");
    tcase_add_test(tc, buckets);
    tcase_add_test(tc, written_cache_is_applied);
    tcase_add_test(tc, mode_applied_only_when_all_agree);
    tcase_add_test(tc, agreed_mode_not_extrapolated);
    tcase_add_test(tc, stale_driver_ignored);
    tcase_add_test(tc, stale_tuner_ignored);
    tcase_add_test(tc, stale_compute_units_ignored);
    tcase_add_test(tc, stale_clblast_ignored);
    tcase_add_test(tc, corrupt_files_ignored);
    tcase_add_test(tc, bad_entries_ignored);
    tcase_add_test(tc, truncated_file_ignored);
    tcase_add_test(tc, concurrent_writers_keep_both);
    tcase_add_test(tc, off_reads_nothing);
    tcase_add_test(tc, attention_uses_bucket_entry);
    tcase_add_test(tc, attention_kernel_per_bucket);
    tcase_add_test(tc, clblast_validity);
    tcase_add_test(tc, clblast_entry_checked_on_read);
    tcase_add_test(tc, clblast_bad_sets_ignored);
    tcase_add_test(tc, clblast_override_applied);
    tcase_add_test(tc, kernels_changed_keeps_gemm_sets);
    tcase_add_checked_fixture(tc, NULL, remove_cache_dir);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
