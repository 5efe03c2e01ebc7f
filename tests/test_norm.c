/*
 * test_norm.c: LayerNorm and unit rows (src/norm.c) against float64; unit
 * rows with their per-sequence transposes, and S = u u^T from them
 * (ln_similarity_t, src/attention.c), against float64 and ln_similarity.
 */
#include "test_util.h"
#include "internal.h" /* ln_unit_rows_t, ln_similarity_t, the buffer helpers */

#include <math.h>
#include <stdlib.h>

static const size_t widths[] = {64, 192, 384, 768, 1, 37};
static const size_t row_counts[] = {1, 3, 67, 301};

static void ref_layernorm(size_t rows, size_t w, const float *x, const float *g, const float *b,
                          double eps, double *y)
{
    for (size_t r = 0; r < rows; r++) {
        double mean = 0, var = 0;
        for (size_t c = 0; c < w; c++)
            mean += x[r * w + c];
        mean /= (double)w;
        for (size_t c = 0; c < w; c++)
            var += (x[r * w + c] - mean) * (x[r * w + c] - mean);
        var /= (double)w;
        for (size_t c = 0; c < w; c++)
            y[r * w + c] = (x[r * w + c] - mean) / sqrt(var + eps) * g[c] + b[c];
    }
}

START_TEST(layernorm_matches_float64)
{
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 1;
    for (size_t wi = 0; wi < sizeof(widths) / sizeof(widths[0]); wi++)
        for (size_t ri = 0; ri < sizeof(row_counts) / sizeof(row_counts[0]); ri++) {
            size_t w = widths[wi], rows = row_counts[ri], n = rows * w;
            float *x = tu_malloc(n * 4), *y = tu_malloc(n * 4), *g = tu_malloc(w * 4),
                  *b = tu_malloc(w * 4);
            double *ref = tu_malloc(n * 8);
            tu_fill_normal(x, n, 3.0f, &rng);
            for (size_t i = 0; i < n; i++)
                x[i] += 1.5f; /* a non-zero mean exercises the centring */
            tu_fill(g, w, 0.5f, 1.5f, &rng);
            tu_fill(b, w, -0.5f, 0.5f, &rng);
            tu_assert_ok(ctx, ln_layernorm_host(ctx, rows, w, x, g, b, 1e-5f, y));
            ref_layernorm(rows, w, x, g, b, 1e-5, ref);
            tu_assert_close(y, ref, n, 1e-5, "layernorm rows %zu width %zu", rows, w);
            free(x), free(y), free(g), free(b), free(ref);
        }
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(layernorm_strided_views)
{
    /* Read a column slice of a wider matrix and write into another slice. */
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 2;
    const size_t rows = 45, w = 96, ldx = 300, xoff = 17, ldy = 200, yoff = 64;
    float *hx = tu_malloc(rows * ldx * 4 + xoff * 4), *hy = tu_malloc(rows * ldy * 4 + yoff * 4);
    float *g = tu_malloc(w * 4), *b = tu_malloc(w * 4);
    tu_fill_normal(hx, rows * ldx + xoff, 2.0f, &rng);
    tu_fill(hy, rows * ldy + yoff, -1, 1, &rng);
    tu_fill(g, w, 0.5f, 1.5f, &rng);
    tu_fill(b, w, -0.5f, 0.5f, &rng);
    cl_context cl = ln_context_cl_context(ctx);
    cl_command_queue q = ln_context_cl_queue(ctx);
    cl_int err;
    size_t xb = (rows * ldx + xoff) * 4, yb = (rows * ldy + yoff) * 4;
    cl_mem dx = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, xb, hx, &err);
    cl_mem dy = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, yb, hy, &err);
    cl_mem dg = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, w * 4, g, &err);
    cl_mem db = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, w * 4, b, &err);
    ln_dmat vx = {dx, xoff, ldx}, vy = {dy, yoff, ldy};
    tu_assert_ok(ctx, ln_layernorm(ctx, rows, w, vx, dg, db, 1e-5f, vy));
    float *out = tu_malloc(yb);
    clEnqueueReadBuffer(q, dy, CL_TRUE, 0, yb, out, 0, NULL, NULL);
    float *dense = tu_malloc(rows * w * 4), *got = tu_malloc(rows * w * 4);
    double *ref = tu_malloc(rows * w * 8);
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < w; c++) {
            dense[r * w + c] = hx[xoff + r * ldx + c];
            got[r * w + c] = out[yoff + r * ldy + c];
        }
    ref_layernorm(rows, w, dense, g, b, 1e-5, ref);
    tu_assert_close(got, ref, rows * w, 1e-5, "strided layernorm");
    /* Columns outside the written slice are untouched. */
    for (size_t r = 0; r < rows; r++)
        for (size_t c = w; c < ldy && yoff + r * ldy + c < rows * ldy + yoff; c++)
            ck_assert_float_eq(out[yoff + r * ldy + c], hy[yoff + r * ldy + c]);
    clReleaseMemObject(dx), clReleaseMemObject(dy), clReleaseMemObject(dg), clReleaseMemObject(db);
    free(hx), free(hy), free(g), free(b), free(out), free(dense), free(got), free(ref);
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(unit_rows_matches_float64)
{
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 3;
    for (size_t wi = 0; wi < sizeof(widths) / sizeof(widths[0]); wi++)
        for (size_t ri = 0; ri < sizeof(row_counts) / sizeof(row_counts[0]); ri++) {
            size_t w = widths[wi], rows = row_counts[ri], n = rows * w;
            float *x = tu_malloc(n * 4), *y = tu_malloc(n * 4);
            double *ref = tu_malloc(n * 8);
            tu_fill_normal(x, n, 1.0f, &rng);
            for (size_t c = 0; c < w; c++)
                x[c] = 0.0f; /* a zero row stays zero: max(||x||, 1e-12) */
            tu_assert_ok(ctx, ln_unit_rows_host(ctx, rows, w, x, y));
            for (size_t r = 0; r < rows; r++) {
                double s = 0;
                for (size_t c = 0; c < w; c++)
                    s += (double)x[r * w + c] * x[r * w + c];
                double inv = 1.0 / fmax(sqrt(s), 1e-12);
                for (size_t c = 0; c < w; c++)
                    ref[r * w + c] = x[r * w + c] * inv;
            }
            for (size_t c = 0; c < w; c++)
                ck_assert_float_eq(y[c], 0.0f);
            if (rows > 1)
                tu_assert_close(y + w, ref + w, n - w, 1e-5, "unit rows %zu width %zu", rows, w);
            free(x), free(y), free(ref);
        }
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(unit_rows_t_matches_float64)
{
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 4;
    /* n below, at and past the kernel's 16-row blocks, with partial last
     * blocks; from n = 256 a work-item takes 64 rows (300: 4 full items,
     * then 2 full blocks of 16 and 12 rows) */
    static const size_t shapes[][3] = {{1, 1, 16}, {3, 5, 64}, {2, 17, 384}, {4, 64, 48},
                                       {2, 50, 32}, {2, 300, 32}, {1, 256, 384}};
    for (size_t si = 0; si < sizeof(shapes) / sizeof(shapes[0]); si++) {
        const size_t batch = shapes[si][0], n = shapes[si][1], w = shapes[si][2];
        const size_t rows = batch * n, count = rows * w;
        if (!ln_unit_rows_t_supported(ctx, w)) {
            /* GPUs: the model keeps CLBlast's transpose; the op says so. */
            tu_assert_status(ctx, ln_unit_rows_t(ctx, batch, n, w, NULL, NULL, NULL),
                             LN_ERROR_UNSUPPORTED);
            continue;
        }
        float *x = tu_malloc(count * 4), *u = tu_malloc(count * 4), *ut = tu_malloc(count * 4);
        float *s = tu_malloc(batch * n * n * 4), *s_ref_op = tu_malloc(batch * n * n * 4);
        double *ref = tu_malloc(count * 8), *ref_t = tu_malloc(count * 8);
        double *ref_s = tu_malloc(batch * n * n * 8);
        tu_fill_normal(x, count, 1.0f, &rng);
        for (size_t r = 0; r < rows; r++) {
            double q = 0;
            for (size_t c = 0; c < w; c++)
                q += (double)x[r * w + c] * x[r * w + c];
            const double inv = 1.0 / fmax(sqrt(q), 1e-12);
            for (size_t c = 0; c < w; c++) {
                ref[r * w + c] = x[r * w + c] * inv;
                ref_t[(r / n) * w * n + c * n + r % n] = ref[r * w + c];
            }
        }
        for (size_t b = 0; b < batch; b++)
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < n; j++) {
                    double acc = 0;
                    for (size_t c = 0; c < w; c++)
                        acc += ref[(b * n + i) * w + c] * ref[(b * n + j) * w + c];
                    ref_s[(b * n + i) * n + j] = acc;
                }
        cl_mem dx, du, dut, ds;
        tu_assert_ok(ctx, ln_buffer_from_host(ctx, x, count * 4, &dx, "x"));
        tu_assert_ok(ctx, ln_buffer_create(ctx, count * 4, &du, "u"));
        tu_assert_ok(ctx, ln_buffer_create(ctx, count * 4, &dut, "u^T"));
        tu_assert_ok(ctx, ln_buffer_create(ctx, batch * n * n * 4, &ds, "S"));
        tu_assert_ok(ctx, ln_unit_rows_t(ctx, batch, n, w, dx, du, dut));
        tu_assert_ok(ctx, ln_similarity_t(ctx, batch, n, w, du, dut, ds));
        tu_assert_ok(ctx, ln_buffer_to_host(ctx, du, u, count * 4));
        tu_assert_ok(ctx, ln_buffer_to_host(ctx, dut, ut, count * 4));
        tu_assert_ok(ctx, ln_buffer_to_host(ctx, ds, s, batch * n * n * 4));
        tu_assert_close(u, ref, count, 1e-5, "u, B %zu n %zu width %zu", batch, n, w);
        tu_assert_close(ut, ref_t, count, 1e-5, "u^T, B %zu n %zu width %zu", batch, n, w);
        for (size_t r = 0; r < rows; r++) /* u^T holds u's very values */
            for (size_t c = 0; c < w; c++)
                ck_assert_msg(ut[(r / n) * w * n + c * n + r % n] == u[r * w + c],
                              "u^T of row %zu, column %zu differs from u", r, c);
        tu_assert_close(s, ref_s, batch * n * n, 1e-5, "S from u^T, B %zu n %zu", batch, n);
        /* The same S as the public op, which lets CLBlast transpose u. */
        tu_assert_ok(ctx, ln_similarity(ctx, batch, n, w, du, ds));
        tu_assert_ok(ctx, ln_buffer_to_host(ctx, ds, s_ref_op, batch * n * n * 4));
        for (size_t i = 0; i < batch * n * n; i++)
            ck_assert_msg(fabsf(s[i] - s_ref_op[i]) <= 1e-6f, "S[%zu]: %g against %g", i,
                          (double)s[i], (double)s_ref_op[i]);
        /* A u^T buffer one float short is refused, not overrun. */
        cl_mem short_t;
        tu_assert_ok(ctx, ln_buffer_create(ctx, count * 4 - 4, &short_t, "short u^T"));
        tu_assert_status(ctx, ln_unit_rows_t(ctx, batch, n, w, dx, du, short_t),
                         LN_ERROR_SHAPE_MISMATCH);
        tu_assert_status(ctx, ln_similarity_t(ctx, batch, n, w, du, short_t, ds),
                         LN_ERROR_SHAPE_MISMATCH);
        ln_buffer_release(ctx, short_t);
        /* In place would read rows it has already scaled: refused. */
        tu_assert_status(ctx, ln_unit_rows_t(ctx, batch, n, w, dx, dx, dut),
                         LN_ERROR_INVALID_ARGUMENT);
        ln_buffer_release(ctx, dx), ln_buffer_release(ctx, du), ln_buffer_release(ctx, dut);
        ln_buffer_release(ctx, ds);
        free(x), free(u), free(ut), free(s), free(s_ref_op), free(ref), free(ref_t), free(ref_s);
    }
    /* A width the float16 kernel cannot take is refused by name. */
    tu_assert_status(ctx, ln_unit_rows_t(ctx, 1, 4, 40, NULL, NULL, NULL), LN_ERROR_UNSUPPORTED);
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(norm_rejects_bad_input)
{
    ln_context *ctx = tu_context();
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, y[8], g[4] = {1, 1, 1, 1}, b[4] = {0};
    tu_assert_status(NULL, ln_layernorm_host(NULL, 2, 4, x, g, b, 1e-5f, y),
                     LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, ln_layernorm_host(ctx, 0, 4, x, g, b, 1e-5f, y),
                     LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, ln_layernorm_host(ctx, 2, 0, x, g, b, 1e-5f, y),
                     LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, ln_layernorm_host(ctx, 2, 4, x, NULL, b, 1e-5f, y),
                     LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, ln_layernorm_host(ctx, 2, 4, x, g, b, 0.0f, y),
                     LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, ln_unit_rows_host(ctx, 2, 4, NULL, y), LN_ERROR_INVALID_ARGUMENT);
    /* A view that runs past its buffer is a shape mismatch, not a crash. */
    cl_int err;
    cl_mem small = clCreateBuffer(ln_context_cl_context(ctx), CL_MEM_READ_WRITE, 16 * 4, NULL, &err);
    tu_assert_status(ctx, ln_unit_rows(ctx, 5, 4, ln_dmat_of(small, 4), ln_dmat_of(small, 4)),
                     LN_ERROR_SHAPE_MISMATCH);
    tu_assert_status(ctx, ln_unit_rows(ctx, 2, 8, ln_dmat_of(small, 4), ln_dmat_of(small, 8)),
                     LN_ERROR_SHAPE_MISMATCH);
    clReleaseMemObject(small);
    ln_context_destroy(ctx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("norm");
    TCase *tc = tcase_create("norm");
    tcase_add_test(tc, layernorm_matches_float64);
    tcase_add_test(tc, layernorm_strided_views);
    tcase_add_test(tc, unit_rows_matches_float64);
    tcase_add_test(tc, unit_rows_t_matches_float64);
    tcase_add_test(tc, norm_rejects_bad_input);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
