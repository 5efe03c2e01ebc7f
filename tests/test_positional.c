/*
 * test_positional.c: continuous positional encoding fused with the add
 * (src/positional.c, cl/positional.cl) against float64, with W2 as PyTorch
 * stores it and, as the model keeps it, transposed.
 */
#include "test_util.h"
#include "internal.h" /* ln_positional_add_wt */

#include <stdlib.h>

static void ref_positional(size_t batch, size_t n, size_t d, size_t hidden, const float *pos,
                           const float *w1, const float *b1, const float *w2, const float *b2,
                           const float *x, double *out)
{
    double *g = tu_malloc(hidden * 8);
    for (size_t r = 0; r < batch * n; r++) {
        double p = pos ? pos[r] : (n > 1 ? (double)(r % n) / (double)(n - 1) : 0.0);
        for (size_t j = 0; j < hidden; j++)
            g[j] = tu_gelu((double)w1[j] * p + b1[j]);
        for (size_t c = 0; c < d; c++) {
            double acc = (double)x[r * d + c] + b2[c];
            for (size_t j = 0; j < hidden; j++)
                acc += (double)w2[c * hidden + j] * g[j];
            out[r * d + c] = acc;
        }
    }
    free(g);
}

static void check(ln_context *ctx, size_t batch, size_t n, size_t d, size_t hidden,
                  bool explicit_positions, uint64_t *rng)
{
    size_t rows = batch * n;
    float *pos = tu_malloc(rows * 4), *w1 = tu_malloc(hidden * 4), *b1 = tu_malloc(hidden * 4),
          *w2 = tu_malloc(d * hidden * 4), *b2 = tu_malloc(d * 4), *x = tu_malloc(rows * d * 4),
          *out = tu_malloc(rows * d * 4);
    double *ref = tu_malloc(rows * d * 8);
    tu_fill(pos, rows, -1000.0f, 1000.0f, rng); /* unsorted, far outside [0, 1] */
    tu_fill_linear(w1, b1, hidden, 1, rng);
    tu_fill_linear(w2, b2, d, hidden, rng);
    tu_fill_normal(x, rows * d, 1.0f, rng);
    const float *p = explicit_positions ? pos : NULL;
    tu_assert_ok(ctx, ln_positional_add_host(ctx, batch, n, d, hidden, p, w1, b1, w2, b2, x, out));
    ref_positional(batch, n, d, hidden, p, w1, b1, w2, b2, x, ref);
    tu_assert_close(out, ref, rows * d, 1e-5, "positional B %zu n %zu d %zu hidden %zu %s", batch, n,
                    d, hidden, explicit_positions ? "given" : "default");
    free(pos), free(w1), free(b1), free(w2), free(b2), free(x), free(out), free(ref);
}

START_TEST(positional_matches_float64)
{
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 20;
    static const size_t widths[] = {64, 192, 384, 768};
    for (size_t i = 0; i < 4; i++) {
        check(ctx, 2, 37, widths[i], 64, true, &rng);
        check(ctx, 3, 19, widths[i], 64, false, &rng);
    }
    check(ctx, 1, 1, 384, 64, false, &rng); /* n = 1: position 0 */
    check(ctx, 4, 1, 192, 64, true, &rng);
    check(ctx, 1, 301, 96, 13, true, &rng); /* odd hidden width */
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(positional_in_place)
{
    /* out may be x: the add rides on the GEMM's beta. */
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 21;
    const size_t batch = 2, n = 23, d = 64, hidden = 64, rows = batch * n;
    float *w1 = tu_malloc(hidden * 4), *b1 = tu_malloc(hidden * 4), *w2 = tu_malloc(d * hidden * 4),
          *b2 = tu_malloc(d * 4), *x = tu_malloc(rows * d * 4), *out = tu_malloc(rows * d * 4);
    double *ref = tu_malloc(rows * d * 8);
    tu_fill_linear(w1, b1, hidden, 1, &rng);
    tu_fill_linear(w2, b2, d, hidden, &rng);
    tu_fill_normal(x, rows * d, 1.0f, &rng);
    cl_int err;
    cl_context cl = ln_context_cl_context(ctx);
    cl_mem m[5];
    const float *src[5] = {w1, b1, w2, b2, x};
    size_t len[5] = {hidden, hidden, d * hidden, d, rows * d};
    for (int i = 0; i < 5; i++)
        m[i] = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, len[i] * 4, (void *)src[i], &err);
    tu_assert_ok(ctx, ln_positional_add(ctx, batch, n, d, hidden, NULL, m[0], m[1], m[2], m[3], m[4], m[4]));
    clEnqueueReadBuffer(ln_context_cl_queue(ctx), m[4], CL_TRUE, 0, rows * d * 4, out, 0, NULL, NULL);
    ref_positional(batch, n, d, hidden, NULL, w1, b1, w2, b2, x, ref);
    tu_assert_close(out, ref, rows * d, 1e-5, "in-place positional");
    /* The model's call: W2^T [hidden, d], in place on a fresh copy of x. */
    float *w2t = tu_malloc(d * hidden * 4);
    for (size_t c = 0; c < d; c++)
        for (size_t j = 0; j < hidden; j++)
            w2t[j * d + c] = w2[c * hidden + j];
    cl_mem dw2t = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, d * hidden * 4,
                                 w2t, &err);
    clEnqueueWriteBuffer(ln_context_cl_queue(ctx), m[4], CL_TRUE, 0, rows * d * 4, x, 0, NULL,
                         NULL);
    tu_assert_ok(ctx, ln_positional_add_wt(ctx, batch, n, d, hidden, NULL, m[0], m[1], dw2t, m[3],
                                           m[4], m[4], NULL));
    clEnqueueReadBuffer(ln_context_cl_queue(ctx), m[4], CL_TRUE, 0, rows * d * 4, out, 0, NULL, NULL);
    tu_assert_close(out, ref, rows * d, 1e-5, "in-place positional, W2 transposed");
    /* With the model's scratch for the hidden layer (stale values in it):
     * the same result and no buffer of its own; a scratch too small is
     * passed over, untouched. */
    float *junk = tu_malloc(rows * hidden * 4), *after = tu_malloc(rows * hidden * 4);
    tu_fill(junk, rows * hidden, -9, 9, &rng);
    cl_mem big, small;
    tu_assert_ok(ctx, ln_buffer_from_host(ctx, junk, rows * hidden * 4, &big, "scratch"));
    tu_assert_ok(ctx, ln_buffer_from_host(ctx, junk, rows * hidden * 4 - 4, &small, "scratch"));
    for (int i = 0; i < 2; i++) {
        clEnqueueWriteBuffer(ln_context_cl_queue(ctx), m[4], CL_TRUE, 0, rows * d * 4, x, 0, NULL,
                             NULL);
        ctx->peak_device_bytes = ctx->device_bytes; /* this call's peak alone */
        const uint64_t held = ln_context_device_bytes(ctx);
        tu_assert_ok(ctx, ln_positional_add_wt(ctx, batch, n, d, hidden, NULL, m[0], m[1], dw2t,
                                               m[3], m[4], m[4], i ? small : big));
        tu_assert_ok(ctx, ln_context_finish(ctx));
        ck_assert_uint_eq(ln_context_peak_device_bytes(ctx) - held,
                          i ? rows * hidden * 4 : 0);
        clEnqueueReadBuffer(ln_context_cl_queue(ctx), m[4], CL_TRUE, 0, rows * d * 4, out, 0, NULL,
                            NULL);
        tu_assert_close(out, ref, rows * d, 1e-5, "positional, W2 transposed, %s scratch",
                        i ? "too small a" : "the");
    }
    tu_assert_ok(ctx, ln_buffer_to_host(ctx, small, after, rows * hidden * 4 - 4));
    ck_assert_mem_eq(after, junk, rows * hidden * 4 - 4);
    ln_buffer_release(ctx, big), ln_buffer_release(ctx, small);
    free(junk), free(after);
    clReleaseMemObject(dw2t);
    free(w2t);
    for (int i = 0; i < 5; i++)
        clReleaseMemObject(m[i]);
    free(w1), free(b1), free(w2), free(b2), free(x), free(out), free(ref);
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(positional_rejects_bad_input)
{
    ln_context *ctx = tu_context();
    float v[64] = {0.5f};
    tu_assert_status(NULL, ln_positional_add_host(NULL, 1, 2, 4, 2, NULL, v, v, v, v, v, v),
                     LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, ln_positional_add_host(ctx, 0, 2, 4, 2, NULL, v, v, v, v, v, v),
                     LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, ln_positional_add_host(ctx, 1, 0, 4, 2, NULL, v, v, v, v, v, v),
                     LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, ln_positional_add_host(ctx, 1, 2, 4, 2, NULL, v, NULL, v, v, v, v),
                     LN_ERROR_INVALID_ARGUMENT);
    cl_int err;
    cl_mem small = clCreateBuffer(ln_context_cl_context(ctx), CL_MEM_READ_WRITE, 8 * 4, NULL, &err);
    tu_assert_status(ctx, ln_positional_add(ctx, 1, 4, 4, 2, NULL, small, small, small, small, small, small),
                     LN_ERROR_SHAPE_MISMATCH);
    clReleaseMemObject(small);
    ln_context_destroy(ctx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("positional");
    TCase *tc = tcase_create("positional");
    tcase_add_test(tc, positional_matches_float64);
    tcase_add_test(tc, positional_in_place);
    tcase_add_test(tc, positional_rejects_bad_input);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
