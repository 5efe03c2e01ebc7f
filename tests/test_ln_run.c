/*
 * test_ln_run.c: the ln-run command (src/cli/ln_run.c) end to end: a model
 * saved by PyTorch runs from .safetensors and .npy inputs and matches
 * PyTorch's numbers; every bad input gives a message and a non-zero exit,
 * leaves no partial output, and never touches the input.
 */
#include "test_util.h"
#include "tensor_io.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[256];
static char model[512], io[512];

static void setup(void)
{
    const char *data = getenv("LN_TEST_DATA");
    ck_assert_msg(data && getenv("LN_BINARY_DIR"), "LN_TEST_DATA / LN_BINARY_DIR not set");
    snprintf(model, sizeof(model), "%s/golden_tiny.safetensors", data);
    snprintf(io, sizeof(io), "%s/golden_tiny_io.safetensors", data);
    snprintf(dir, sizeof(dir), "/tmp/ln-run-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Runs ln-run with `args` (and an optional environment prefix); returns the
 * exit status and leaves stderr in dir/stderr. */
static int ln_run(const char *env, const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "%s '%s/ln-run' %s > '%s/stdout' 2> '%s/stderr'", env ? env : "",
             getenv("LN_BINARY_DIR"), args, dir, dir);
    int rc = system(cmd);
    ck_assert_msg(rc != -1 && WIFEXITED(rc), "ln-run did not exit normally: %s", cmd);
    return WEXITSTATUS(rc);
}

static char *slurp(const char *name)
{
    static char buf[1 << 16];
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    return buf;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* A failing run: non-zero exit, `expect` in the message, no output left. */
static void expect_failure(const char *env, const char *args, const char *expect, const char *output)
{
    int rc = ln_run(env, args);
    char *err = slurp("stderr");
    ck_assert_msg(rc != 0, "ln-run %s succeeded; stderr: %s", args, err);
    ck_assert_msg(strstr(err, expect) != NULL, "ln-run %s: wanted \"%s\" in: %s", args, expect, err);
    if (output)
        ck_assert_msg(!exists(output), "ln-run %s left %s behind", args, output);
    /* No temporary file of the atomic writer is left either. */
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "ls -A '%s' | grep -v -e '^stdout$' -e '^stderr$' -e '^keep' -e '^in' -q", dir);
    ck_assert_msg(system(cmd) != 0, "ln-run %s left files in %s", args, dir);
}

static double rel_l2_valid(const float *got, const ln_tensor_file *io_file, const char *hi_name,
                           const char *lo_name, const int32_t *lengths)
{
    const ln_tensor *hi = ln_tensor_file_find(io_file, hi_name), *lo = ln_tensor_file_find(io_file, lo_name);
    ck_assert(hi && lo && hi->ndim == 3);
    size_t B = (size_t)hi->shape[0], n = (size_t)hi->shape[1], d = (size_t)hi->shape[2];
    double num = 0, den = 0;
    for (size_t b = 0; b < B; b++)
        for (size_t i = 0; i < (lengths ? (size_t)lengths[b] : n); i++)
            for (size_t c = 0; c < d; c++) {
                size_t at = (b * n + i) * d + c;
                double ref = (double)((float *)hi->data)[at] + ((float *)lo->data)[at];
                if (!isfinite(got[at]))
                    return INFINITY;
                num += (got[at] - ref) * (got[at] - ref);
                den += ref * ref;
            }
    return sqrt(num / den);
}

START_TEST(runs_a_pytorch_model_from_safetensors)
{
    char args[1600], out[400];
    snprintf(out, sizeof(out), "%s/out.safetensors", dir);
    snprintf(args, sizeof(args), "--model '%s' --input '%s' --output '%s'", model, io, out);
    ck_assert_int_eq(ln_run(NULL, args), 0);
    char *err = slurp("stderr");
    ck_assert_msg(strstr(err, "B = 2, n = 7") && strstr(err, " ms"), "summary line: %s", err);
    ln_tensor_file *got = NULL, *ref = NULL;
    tu_assert_ok(NULL, ln_safetensors_read(NULL, out, &got));
    tu_assert_ok(NULL, ln_safetensors_read(NULL, io, &ref));
    const ln_tensor *o = ln_tensor_file_find(got, "out");
    ck_assert(o && o->ndim == 3 && o->shape[0] == 2 && o->shape[1] == 7 && o->shape[2] == 64);
    const ln_tensor *lt = ln_tensor_file_find(ref, "lengths");
    int32_t lengths[2];
    for (int b = 0; b < 2; b++)
        lengths[b] = lt->dtype == LN_DT_I64 ? (int32_t)((int64_t *)lt->data)[b] : ((int32_t *)lt->data)[b];
    double e = rel_l2_valid(o->data, ref, "out_ref_hi", "out_ref_lo", lengths);
    ck_assert_msg(e <= 1e-4, "ln-run output vs PyTorch: rel-L2 %.3g", e);
    ln_tensor_file_free(got);
    ln_tensor_file_free(ref);
}
END_TEST

START_TEST(runs_npy_in_and_out)
{
    ln_tensor_file *ref = NULL;
    tu_assert_ok(NULL, ln_safetensors_read(NULL, io, &ref));
    const ln_tensor *x2 = ln_tensor_file_find(ref, "x2"); /* [1, 5, 64] */
    ck_assert(x2 != NULL);
    char in[400], out[400], args[1600];
    snprintf(in, sizeof(in), "%s/in.npy", dir);
    snprintf(out, sizeof(out), "%s/out.npy", dir);
    tu_assert_ok(NULL, ln_npy_write(NULL, in, x2->data, 2, x2->shape + 1)); /* [n, d] */
    snprintf(args, sizeof(args), "--model '%s' --input '%s' --output '%s'", model, in, out);
    ck_assert_int_eq(ln_run(NULL, args), 0);
    ln_tensor o;
    tu_assert_ok(NULL, ln_npy_read(NULL, out, &o));
    ck_assert(o.ndim == 2 && o.shape[0] == 5 && o.shape[1] == 64);
    double e = rel_l2_valid(o.data, ref, "out2_ref_hi", "out2_ref_lo", NULL);
    ck_assert_msg(e <= 1e-4, "npy run vs PyTorch: rel-L2 %.3g", e);
    ln_tensor_clear(&o);
    ln_tensor_file_free(ref);
}
END_TEST

static void copy_file(const char *from, const char *to, long truncate_to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    ck_assert(a && b);
    char buf[4096];
    size_t n;
    long total = 0;
    while ((n = fread(buf, 1, sizeof(buf), a)) > 0) {
        if (truncate_to >= 0 && total + (long)n > truncate_to)
            n = (size_t)(truncate_to - total);
        fwrite(buf, 1, n, b);
        total += (long)n;
        if (truncate_to >= 0 && total >= truncate_to)
            break;
    }
    fclose(a);
    fclose(b);
}

START_TEST(bad_inputs_fail_cleanly)
{
    char args[2000], out[400], bad[400], in[400];
    snprintf(out, sizeof(out), "%s/out.safetensors", dir);
    /* Truncated model file. */
    snprintf(bad, sizeof(bad), "%s/in-truncated.safetensors", dir);
    copy_file(model, bad, 3000);
    snprintf(args, sizeof(args), "--model '%s' --input '%s' --output '%s'", bad, io, out);
    expect_failure(NULL, args, "LN_ERROR_BAD_FILE", out);
    /* Header length beyond the file. */
    snprintf(bad, sizeof(bad), "%s/in-header.safetensors", dir);
    FILE *f = fopen(bad, "wb");
    uint64_t len = 1u << 20;
    fwrite(&len, 8, 1, f);
    fputs("{}", f);
    fclose(f);
    snprintf(args, sizeof(args), "--model '%s' --input '%s' --output '%s'", bad, io, out);
    expect_failure(NULL, args, "LN_ERROR_BAD_FILE", out);
    /* Input width not matching the model. */
    snprintf(in, sizeof(in), "%s/in-narrow.npy", dir);
    float narrow[3 * 32];
    uint64_t rng = tu_seed();
    tu_fill(narrow, 96, -1, 1, &rng);
    int64_t shape[2] = {3, 32};
    tu_assert_ok(NULL, ln_npy_write(NULL, in, narrow, 2, shape));
    snprintf(args, sizeof(args), "--model '%s' --input '%s' --output '%s'", model, in, out);
    expect_failure(NULL, args, "d_model", out);
    /* NaN in the input. */
    snprintf(in, sizeof(in), "%s/in-nan.npy", dir);
    float wide[3 * 64];
    tu_fill(wide, 192, -1, 1, &rng);
    wide[70] = NAN;
    shape[1] = 64;
    tu_assert_ok(NULL, ln_npy_write(NULL, in, wide, 2, shape));
    snprintf(args, sizeof(args), "--model '%s' --input '%s' --output '%s'", model, in, out);
    expect_failure(NULL, args, "NaN", out);
    /* lengths out of range. */
    snprintf(in, sizeof(in), "%s/in-lengths.safetensors", dir);
    wide[70] = 0.5f;
    ln_tensor t[2] = {{.name = "x", .dtype = LN_DT_F32, .ndim = 3, .shape = {1, 3, 64}, .count = 192, .data = wide},
                      {.name = "lengths", .dtype = LN_DT_I32, .ndim = 1, .shape = {1}, .count = 1,
                       .data = (int32_t[]){4}}};
    tu_assert_ok(NULL, ln_safetensors_write(NULL, in, t, 2, NULL, NULL));
    snprintf(args, sizeof(args), "--model '%s' --input '%s' --output '%s'", model, in, out);
    expect_failure(NULL, args, "lengths[0] = 4", out);
    /* More than the device may hold: B n = 3000 rows under a 2 MiB cap,
     * which stands in for a full GPU. */
    snprintf(in, sizeof(in), "%s/in-big.npy", dir);
    float *big = tu_malloc(3000 * 64 * 4);
    tu_fill(big, 3000 * 64, -1, 1, &rng);
    shape[0] = 3000;
    tu_assert_ok(NULL, ln_npy_write(NULL, in, big, 2, shape));
    free(big);
    snprintf(args, sizeof(args), "--model '%s' --input '%s' --output '%s'", model, in, out);
    expect_failure("LN_DEVICE_MEMORY_LIMIT_MB=2", args, "LN_ERROR_DEVICE_MEMORY", out);
    /* Unknown arguments and a missing device. */
    ck_assert_int_eq(ln_run(NULL, "--frobnicate"), 2);
    snprintf(args, sizeof(args), "--model '%s' --input '%s' --device no-such-device-xyz", model, io);
    expect_failure(NULL, args, "no-such-device-xyz", NULL);
    ck_assert_int_eq(ln_run(NULL, "--list-devices"), 0);
    ck_assert_msg(strlen(slurp("stdout")) > 0, "--list-devices printed nothing");
}
END_TEST

START_TEST(never_overwrites_inputs_or_good_outputs)
{
    char in[400], keep[400], args[2000];
    snprintf(in, sizeof(in), "%s/in.safetensors", dir);
    copy_file(io, in, -1);
    struct stat before, after;
    ck_assert_int_eq(stat(in, &before), 0);
    /* The output named as the input: refused, the input untouched. */
    snprintf(args, sizeof(args), "--model '%s' --input '%s' --output '%s'", model, in, in);
    expect_failure(NULL, args, "refusing", NULL);
    ck_assert_int_eq(stat(in, &after), 0);
    ck_assert_int_eq(before.st_size, after.st_size);
    ck_assert_int_eq(before.st_mtime, after.st_mtime);
    /* An existing output survives a run that fails. */
    snprintf(keep, sizeof(keep), "%s/keep.npy", dir);
    FILE *f = fopen(keep, "wb");
    fputs("precious", f);
    fclose(f);
    snprintf(args, sizeof(args), "--model '%s/missing.safetensors' --input '%s' --output '%s'", dir, in, keep);
    expect_failure(NULL, args, "LN_ERROR_IO", NULL);
    ck_assert_str_eq(slurp("keep.npy"), "precious");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ln_run");
    TCase *tc = tcase_create("ln_run");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, runs_a_pytorch_model_from_safetensors);
    tcase_add_test(tc, runs_npy_in_and_out);
    tcase_add_test(tc, bad_inputs_fail_cleanly);
    tcase_add_test(tc, never_overwrites_inputs_or_good_outputs);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
