/*
 * test_tune_cache.c: the tuning cache (src/tune_cache.c): a written file is
 * applied by the next context (seen through ln_context_tuning), corrupt,
 * truncated, hostile and stale-key files are ignored with a warning naming
 * why, and two processes merging at once keep both's entries. Each test
 * runs in its own temporary LN_CACHE_DIR (Check forks per test).
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

START_TEST(mode_applied_only_when_all_agree)
{
    fresh_cache_dir();
    ln_context *a = tu_context();
    ln_tune_entry e[2] = {
        entry("attention", 1, 4096, LN_TP_ATTN_MODE, LN_ATTENTION_RECOMPUTE_S),
        entry("attention", 1, 64, LN_TP_ATTN_MODE, LN_ATTENTION_PRECOMPUTED_S),
    };
    char path[1024];
    write_entries(a, e, 2, path, sizeof(path));
    ln_context_destroy(a);
    ln_context *b = tu_context();
    ck_assert_int_eq(tuning(b).attn_mode, LN_ATTENTION_AUTO);
    ck_assert_int_eq(ln_attention_resolve_mode(b, 1, 64), LN_ATTENTION_PRECOMPUTED_S);
    ln_params p;
    ck_assert(ln_tuned_params_for(b, "attention", 1, 4000, &p));
    ck_assert_int_eq(p.attn_mode, LN_ATTENTION_RECOMPUTE_S);
    ln_context_destroy(b);
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

START_TEST(stale_kernels_ignored)
{
    stale_case("kernels_hash", json_string("0123456789abcdef"), "kernels hash");
}
END_TEST

START_TEST(stale_tuner_ignored)
{
    stale_case("tuner_version", json_integer(LN_TUNER_VERSION + 1), "tuner version");
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
    ln_context_destroy(b);
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
    tcase_add_test(tc, stale_driver_ignored);
    tcase_add_test(tc, stale_kernels_ignored);
    tcase_add_test(tc, stale_tuner_ignored);
    tcase_add_test(tc, stale_compute_units_ignored);
    tcase_add_test(tc, corrupt_files_ignored);
    tcase_add_test(tc, bad_entries_ignored);
    tcase_add_test(tc, truncated_file_ignored);
    tcase_add_test(tc, concurrent_writers_keep_both);
    tcase_add_test(tc, off_reads_nothing);
    tcase_add_checked_fixture(tc, NULL, remove_cache_dir);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
