/*
 * test_binary_cache.c: the on-disk program-binary cache (src/binary_cache.c):
 * a build stores a binary, a new context (and a new process) loads it, a
 * corrupt, truncated or driver-refused file falls back to source, and
 * LN_TUNE_CACHE=off writes nothing. Each test runs in its own temporary
 * LN_CACHE_DIR (Check forks per test, so setenv stays local).
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "test_util.h"
#include "internal.h"
#include "tensor_io.h"

#include <dirent.h>
#include <math.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
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
    snprintf(cache_dir, sizeof(cache_dir), "/tmp/ln-bincache-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(cache_dir));
    setenv("LN_CACHE_DIR", cache_dir, 1);
    unsetenv("LN_TUNE_CACHE");
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static ln_tuning_info tuning(const ln_context *ctx)
{
    ln_tuning_info ti;
    ck_assert_int_eq(ln_context_tuning(ctx, &ti), LN_SUCCESS);
    return ti;
}

/* The norm family's binary path for this context. */
static void norm_path(const ln_context *ctx, char *path, size_t cap)
{
    size_t len;
    const char *src = ln_kernel_source("norm", &len);
    ck_assert_ptr_nonnull(src);
    ck_assert(ln_binary_cache_path(ctx, "norm", src, len, LN_BUILD_OPTIONS_BASE " ", path, cap));
}

/* LayerNorm of a few rows against float64: the program really works. */
static void check_layernorm_works(ln_context *ctx)
{
    enum { R = 3, W = 37 };
    float x[R * W], g[W], b[W], y[R * W];
    double ref[R * W];
    uint64_t rng = tu_seed() + 7;
    tu_fill(x, R * W, -2.0f, 2.0f, &rng);
    tu_fill(g, W, 0.5f, 1.5f, &rng);
    tu_fill(b, W, -0.5f, 0.5f, &rng);
    tu_assert_ok(ctx, ln_layernorm_host(ctx, R, W, x, g, b, 1e-5f, y));
    for (int r = 0; r < R; r++) {
        double mean = 0, var = 0;
        for (int c = 0; c < W; c++)
            mean += x[r * W + c];
        mean /= W;
        for (int c = 0; c < W; c++)
            var += (x[r * W + c] - mean) * (x[r * W + c] - mean);
        var /= W;
        for (int c = 0; c < W; c++)
            ref[r * W + c] = (x[r * W + c] - mean) / sqrt(var + 1e-5) * g[c] + b[c];
    }
    tu_assert_close(y, ref, R * W, 1e-5, "layernorm after the binary cache");
}

static double timed_get(ln_context *ctx)
{
    cl_program p;
    double t0 = now_s();
    tu_assert_ok(ctx, ln_program_get(ctx, "norm", "", &p));
    return now_s() - t0;
}

START_TEST(build_stores_then_new_context_hits)
{
    fresh_cache_dir();
    ln_context *a = tu_context();
    double cold = timed_get(a);
    ck_assert_uint_eq(tuning(a).binary_cache_stores, 1);
    ck_assert_uint_eq(tuning(a).binary_cache_hits, 0);
    char path[1024];
    norm_path(a, path, sizeof(path));
    struct stat st;
    ck_assert_msg(stat(path, &st) == 0 && st.st_size > 32, "no binary at %s", path);
    ln_context_destroy(a);

    ln_context *b = tu_context();
    double warm = timed_get(b);
    ln_tuning_info ti = tuning(b);
    ck_assert_uint_eq(ti.binary_cache_hits, 1);
    ck_assert_uint_eq(ti.binary_cache_stores, 0);
    /* Timing is printed, not asserted: the machine is shared. */
    fprintf(stderr, "norm program: from source %.4f s, from the binary cache %.4f s\n", cold,
            warm);
    check_layernorm_works(b);
    ln_context_destroy(b);
}
END_TEST

START_TEST(new_process_hits)
{
    /* The child is forked before this process touches OpenCL and waits on
     * a pipe until the binary is stored: NVIDIA's driver cannot be used in
     * a child forked after the parent initialised it. */
    fresh_cache_dir();
    int go[2];
    ck_assert_int_eq(pipe(go), 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(go[1]);
        char byte;
        if (read(go[0], &byte, 1) != 1)
            _exit(5);
        ln_context *c = NULL;
        if (ln_context_create(NULL, &c) != LN_SUCCESS)
            _exit(2);
        cl_program p;
        if (ln_program_get(c, "norm", "", &p) != LN_SUCCESS)
            _exit(3);
        ln_tuning_info ti;
        ln_context_tuning(c, &ti);
        ln_context_destroy(c);
        _exit(ti.binary_cache_hits == 1 ? 0 : 4);
    }
    close(go[0]);
    ln_context *a = tu_context();
    timed_get(a);
    ln_context_destroy(a);
    ck_assert_int_eq(write(go[1], "x", 1), 1);
    close(go[1]);
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "child did not load the binary (status %d)", status);
}
END_TEST

/* Writes `bytes` over the file at `path` from `offset` (or truncates to
 * `offset` when bytes is NULL). */
static void damage(const char *path, long offset, const char *bytes)
{
    if (!bytes) {
        ck_assert_int_eq(truncate(path, offset), 0);
        return;
    }
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    if (offset < 0)
        fseek(f, offset, SEEK_END);
    else
        fseek(f, offset, SEEK_SET);
    fwrite(bytes, 1, strlen(bytes), f);
    fclose(f);
}

/* Builds once, damages the file, then expects a fallback that works and
 * rewrites the file so the next context hits again. */
static void fallback_case(long offset, const char *bytes, const char *label)
{
    fresh_cache_dir();
    ln_context *a = tu_context();
    timed_get(a);
    char path[1024];
    norm_path(a, path, sizeof(path));
    ln_context_destroy(a);
    damage(path, offset, bytes);

    ln_context *b = tu_context();
    timed_get(b);
    ln_tuning_info ti = tuning(b);
    ck_assert_msg(ti.binary_cache_hits == 0, "%s: a damaged binary was used", label);
    ck_assert_msg(ti.binary_cache_stores == 1, "%s: the file was not rewritten", label);
    ck_assert_str_eq(ln_last_error(b), "");
    check_layernorm_works(b);
    ln_context_destroy(b);

    ln_context *c = tu_context();
    timed_get(c);
    ck_assert_msg(tuning(c).binary_cache_hits == 1, "%s: rewritten binary not used", label);
    ln_context_destroy(c);
}

START_TEST(corrupt_payload_falls_back)
{
    fallback_case(-100, "garbage!garbage!", "payload bytes flipped");
}
END_TEST

START_TEST(truncated_falls_back)
{
    fallback_case(40, NULL, "truncated in the key");
}
END_TEST

START_TEST(bad_magic_falls_back)
{
    fallback_case(0, "NOTABIN", "bad magic");
}
END_TEST

START_TEST(empty_file_falls_back)
{
    fallback_case(0, NULL, "empty file");
}
END_TEST

/* A well-formed container whose payload is not a binary the driver knows:
 * the driver's refusal (CL_INVALID_BINARY) or build failure falls back. */
START_TEST(driver_refusal_falls_back)
{
    fresh_cache_dir();
    ln_context *a = tu_context();
    size_t len;
    const char *src = ln_kernel_source("norm", &len);
    char path[1024];
    norm_path(a, path, sizeof(path));
    /* Store a "binary" of the key's program made of junk, with a correct
     * checksum: write it with the real writer's layout. */
    void *bytes = NULL;
    size_t size = 0;
    timed_get(a);
    ck_assert_int_eq(ln_file_read_all(NULL, path, 1 << 28, &bytes, &size), LN_SUCCESS);
    unsigned char *b = bytes;
    uint32_t klen;
    memcpy(&klen, b + 12, 4);
    size_t payload = 32 + klen;
    ck_assert_uint_gt(size, payload + 64);
    for (size_t i = payload; i < size; i++)
        b[i] = (unsigned char)(i * 131u + 7u);
    uint64_t sum = ln_fnv1a64(LN_FNV_OFFSET, b + payload, size - payload);
    memcpy(b + 24, &sum, 8);
    ln_io_piece piece = {b, size};
    ck_assert_int_eq(ln_file_write_atomic(NULL, path, &piece, 1), LN_SUCCESS);
    free(bytes);
    (void)src;
    ln_context_destroy(a);

    ln_context *c = tu_context();
    timed_get(c);
    ck_assert_uint_eq(tuning(c).binary_cache_hits, 0);
    check_layernorm_works(c);
    ln_context_destroy(c);
}
END_TEST

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

START_TEST(off_writes_nothing)
{
    fresh_cache_dir();
    setenv("LN_TUNE_CACHE", "off", 1);
    ln_context *a = tu_context();
    timed_get(a);
    check_layernorm_works(a);
    ln_tuning_info ti = tuning(a);
    ck_assert_int_eq(ti.cache_enabled, 0);
    ck_assert_uint_eq(ti.binary_cache_stores, 0);
    ck_assert_str_eq(ti.cache_path, "");
    ln_context_destroy(a);
    ck_assert_int_eq(count_files(cache_dir), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("binary_cache");
    TCase *tc = tcase_create("binary_cache");
    tcase_add_test(tc, build_stores_then_new_context_hits);
    tcase_add_test(tc, new_process_hits);
    tcase_add_test(tc, corrupt_payload_falls_back);
    tcase_add_test(tc, truncated_falls_back);
    tcase_add_test(tc, bad_magic_falls_back);
    tcase_add_test(tc, empty_file_falls_back);
    tcase_add_test(tc, driver_refusal_falls_back);
    tcase_add_test(tc, off_writes_nothing);
    tcase_add_checked_fixture(tc, NULL, remove_cache_dir);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
