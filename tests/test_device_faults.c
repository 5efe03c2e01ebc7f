/*
 * test_device_faults.c: device allocation failures return a status and
 * leave the context usable (src/context.c, src/model.c): a model load that
 * runs out of device memory part-way through its upload, a workspace that
 * does not fit after a smaller one did, and a buffer above the device's
 * largest allocation (made small on PoCL with POCL_MEMORY_LIMIT). Each
 * test forks (Check's default), so setenv stays local to it.
 *
 * Why our own checks matter: PoCL 3.1 does not fail an allocation it
 * cannot make; it asserts and aborts the process (pocl_util.c,
 * pocl_create_migration_commands, when host memory runs out at first use
 * of a buffer), and POCL_MEMORY_LIMIT only changes the sizes it reports.
 * LN_DEVICE_MEMORY_LIMIT_MB and the CL_DEVICE_MAX_MEM_ALLOC_SIZE check in
 * ln_buffer_create are what turn "too big" into a status on that device.
 * A host wrapper failing part-way must not leave copies of the caller's
 * arrays queued. (Kernel build failures: tests/test_program.c.)
 */
#include "test_util.h"

#include <stdlib.h>
#include <string.h>

#define B 2
#define N 11

static void golden_path(char *path, size_t cap)
{
    const char *dir = getenv("LN_TEST_DATA");
    ck_assert_msg(dir != NULL, "LN_TEST_DATA is not set");
    snprintf(path, cap, "%s/golden_tiny.safetensors", dir);
}

/* Encodes a fixed input with the golden model on ctx into out. */
static void encode_golden(ln_context *ctx, float *out, size_t count)
{
    char path[512];
    golden_path(path, sizeof(path));
    ln_model *m = NULL;
    tu_assert_ok(ctx, ln_model_load(ctx, path, &m));
    size_t d = ln_model_d_model(m);
    ck_assert_uint_eq(count, (size_t)B * N * d);
    float *x = tu_malloc(count * sizeof(float));
    uint64_t rng = 12345;
    tu_fill_normal(x, count, 1.0f, &rng);
    tu_assert_ok(ctx, ln_model_encode(m, B, N, x, NULL, NULL, out));
    ln_model_free(m);
    free(x);
}

START_TEST(model_upload_failing_midway_leaves_context_usable)
{
    const size_t count = (size_t)B * N * 64; /* golden_tiny: d_model 64 */
    float *want = tu_malloc(count * 4), *got = tu_malloc(count * 4);
    ln_context *ctx = tu_context();
    encode_golden(ctx, want, count);
    ln_context_destroy(ctx);

    /* SPEC's default model holds about 14 MB of weights: a 4 MiB cap stops
     * its upload part-way, after some tensors are already on the device. */
    setenv("LN_DEVICE_MEMORY_LIMIT_MB", "4", 1);
    ctx = tu_context();
    ln_model *m = (ln_model *)&m;
    tu_assert_status(ctx, ln_model_create_seeded(ctx, NULL, 3, &m), LN_ERROR_DEVICE_MEMORY);
    ck_assert_ptr_null(m);
    ck_assert_ptr_nonnull(strstr(ln_last_error(ctx), "LN_DEVICE_MEMORY_LIMIT_MB"));
    ck_assert_uint_gt(ln_context_peak_device_bytes(ctx), 0);      /* it did start */
    ck_assert_uint_eq(ln_context_device_bytes(ctx), 0);           /* and gave all back */
    /* A second failing load, to be sure nothing accumulates. */
    tu_assert_status(ctx, ln_model_create_seeded(ctx, NULL, 4, &m), LN_ERROR_DEVICE_MEMORY);
    ck_assert_uint_eq(ln_context_device_bytes(ctx), 0);

    /* The same context still loads and runs a model that fits, with the
     * same numbers as an unconstrained context. */
    encode_golden(ctx, got, count);
    ck_assert_msg(memcmp(got, want, count * 4) == 0,
                  "results after a failed load differ from a fresh context's");
    ck_assert_uint_eq(ln_context_device_bytes(ctx), 0);
    ln_context_destroy(ctx);
    free(want), free(got);
}
END_TEST

START_TEST(workspace_too_large_keeps_the_model)
{
    char path[512];
    golden_path(path, sizeof(path));
    setenv("LN_DEVICE_MEMORY_LIMIT_MB", "8", 1);
    ln_context *ctx = tu_context();
    ln_model *m = NULL;
    tu_assert_ok(ctx, ln_model_load(ctx, path, &m));
    const uint64_t weights = ln_context_device_bytes(ctx);
    const size_t d = ln_model_d_model(m), count = (size_t)B * N * d;
    float *x = tu_malloc(count * 4), *first = tu_malloc(count * 4), *again = tu_malloc(count * 4);
    uint64_t rng = tu_seed();
    tu_fill_normal(x, count, 1.0f, &rng);
    tu_assert_ok(ctx, ln_model_encode(m, B, N, x, NULL, NULL, first));
    ck_assert_uint_gt(ln_context_device_bytes(ctx), weights); /* a workspace is held */

    /* B = 64, n = 4096: far beyond 8 MiB. Allocation comes before the host
     * arrays are read, so the small x is never touched. */
    tu_assert_status(ctx, ln_model_encode(m, 64, 4096, x, NULL, NULL, first),
                     LN_ERROR_DEVICE_MEMORY);
    ck_assert_uint_eq(ln_context_device_bytes(ctx), weights); /* old workspace released too */

    tu_assert_ok(ctx, ln_model_encode(m, B, N, x, NULL, NULL, again));
    ck_assert_msg(memcmp(first, again, count * 4) == 0, "results changed after the failure");
    ln_model_free(m);
    ck_assert_uint_eq(ln_context_device_bytes(ctx), 0);
    ln_context_destroy(ctx);
    free(x), free(first), free(again);
}
END_TEST

START_TEST(pocl_memory_limit_gives_a_status)
{
    setenv("POCL_MEMORY_LIMIT", "1", 1); /* GiB: PoCL then reports 256 MiB max alloc */
    ln_context *ctx = tu_context();
    ln_device_info info;
    tu_assert_ok(ctx, ln_context_device_info(ctx, &info));
    if (!strstr(info.platform_name, "Portable Computing Language") ||
        info.max_alloc_bytes != (uint64_t)256 << 20) {
        fprintf(stderr, "skipped: not PoCL, or POCL_MEMORY_LIMIT not honoured (%s, %llu)\n",
                info.platform_name, (unsigned long long)info.max_alloc_bytes);
        ln_context_destroy(ctx);
        return;
    }
    char path[512];
    golden_path(path, sizeof(path));
    ln_model *m = NULL;
    tu_assert_ok(ctx, ln_model_load(ctx, path, &m));
    const size_t d = ln_model_d_model(m), count = (size_t)B * N * d;
    float *x = tu_malloc(count * 4), *out = tu_malloc(count * 4);
    uint64_t rng = tu_seed();
    tu_fill_normal(x, count, 1.0f, &rng);
    /* 2 x 2^20 rows of 64 floats: one 512 MiB buffer, above 256 MiB. */
    tu_assert_status(ctx, ln_model_encode(m, 2, (size_t)1 << 20, x, NULL, NULL, out),
                     LN_ERROR_DEVICE_MEMORY);
    ck_assert_ptr_nonnull(strstr(ln_last_error(ctx), "largest allocation"));
    tu_assert_ok(ctx, ln_model_encode(m, B, N, x, NULL, NULL, out));
    ln_model_free(m);
    ck_assert_uint_eq(ln_context_device_bytes(ctx), 0);
    ln_context_destroy(ctx);
    free(x), free(out);
}
END_TEST

/* A host wrapper that fails after uploading some arrays (here: no room
 * for the output under the cap) must not leave copies queued that read
 * the caller's arrays after it returned: the caller frees them at once.
 * Under AddressSanitizer (.ci/hardening) a queued copy shows up as a
 * heap-use-after-free in PoCL's worker thread; it did, in
 * ln_semantic_attention_host, before ln_buffer_from_host became blocking. */
START_TEST(failed_host_wrapper_leaves_no_copy_queued)
{
    setenv("LN_DEVICE_MEMORY_LIMIT_MB", "1", 1);
    ln_context *ctx = tu_context();
    const size_t rows = 256, in = 256, out = 512; /* x 256 KiB + w 512 KiB fit, y does not */
    float *x = tu_malloc(rows * in * 4), *w = tu_malloc(out * in * 4), *b = tu_malloc(out * 4),
          *y = tu_malloc(rows * out * 4);
    uint64_t rng = tu_seed();
    tu_fill(x, rows * in, -1, 1, &rng);
    tu_fill(w, out * in, -1, 1, &rng);
    tu_fill(b, out, -1, 1, &rng);
    /* Keep the queue busy first (a 256 MiB fill of a buffer of the test's
     * own, outside the cap), so that a non-blocking copy would still be
     * waiting when the arrays are freed. */
    cl_int err;
    const size_t busy_bytes = (size_t)256 << 20;
    cl_mem busy = clCreateBuffer(ln_context_cl_context(ctx), CL_MEM_READ_WRITE, busy_bytes, NULL,
                                 &err);
    ck_assert_msg(busy != NULL, "clCreateBuffer: %d", (int)err);
    const float zero = 0.0f;
    ck_assert_int_eq(clEnqueueFillBuffer(ln_context_cl_queue(ctx), busy, &zero, sizeof(zero), 0,
                                         busy_bytes, 0, NULL, NULL),
                     CL_SUCCESS);
    tu_assert_status(ctx, ln_linear_host(ctx, rows, in, out, x, w, b, LN_EPILOGUE_BIAS, NULL, y),
                     LN_ERROR_DEVICE_MEMORY);
    free(x), free(w), free(b); /* the caller's right once the call returned */
    tu_assert_ok(ctx, ln_context_finish(ctx));
    clReleaseMemObject(busy);
    ck_assert_uint_eq(ln_context_device_bytes(ctx), 0);
    float small[16], unit[16];
    tu_fill(small, 16, -1, 1, &rng);
    tu_assert_ok(ctx, ln_unit_rows_host(ctx, 4, 4, small, unit));
    ln_context_destroy(ctx);
    free(y);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("device_faults");
    TCase *tc = tcase_create("device_faults");
    tcase_add_test(tc, model_upload_failing_midway_leaves_context_usable);
    tcase_add_test(tc, workspace_too_large_keeps_the_model);
    tcase_add_test(tc, pocl_memory_limit_gives_a_status);
    tcase_add_test(tc, failed_host_wrapper_leaves_no_copy_queued);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
