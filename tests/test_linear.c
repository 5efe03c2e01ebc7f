/*
 * test_linear.c: Linear through CLBlast and its epilogues (src/linear.c,
 * cl/linear.cl) against float64, including strided column slices and the
 * model's transposed-weight route; ln_gemm in both of its CLBlast layouts
 * and how it chooses between them; the bias (and GELU) on every branch's
 * block at once (ln_add_bias_blocks).
 */
#include "test_util.h"
#include "internal.h" /* ln_linear_wt and the tracked-buffer helpers */

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reference y = epilogue(x W^T) in float64 over dense arrays. */
static void ref_linear(size_t rows, size_t in, size_t out, const float *x, const float *w,
                       const float *b, ln_epilogue ep, const float *res, double *y)
{
    for (size_t r = 0; r < rows; r++)
        for (size_t o = 0; o < out; o++) {
            double acc = 0;
            for (size_t i = 0; i < in; i++)
                acc += (double)x[r * in + i] * w[o * in + i];
            if (ep != LN_EPILOGUE_NONE)
                acc += b[o];
            if (ep == LN_EPILOGUE_BIAS_GELU)
                acc = tu_gelu(acc);
            if (ep == LN_EPILOGUE_BIAS_RESIDUAL)
                acc += res[r * out + o];
            y[r * out + o] = acc;
        }
}

static const char *ep_name[] = {"none", "bias", "bias+gelu", "bias+residual"};

static void check_dense(ln_context *ctx, size_t rows, size_t in, size_t out, ln_epilogue ep,
                        uint64_t *rng)
{
    float *x = tu_malloc(rows * in * 4), *w = tu_malloc(out * in * 4), *b = tu_malloc(out * 4),
          *res = tu_malloc(rows * out * 4), *y = tu_malloc(rows * out * 4);
    double *ref = tu_malloc(rows * out * 8);
    tu_fill_normal(x, rows * in, 1.0f, rng);
    tu_fill_linear(w, b, out, in, rng);
    tu_fill_normal(res, rows * out, 1.0f, rng);
    tu_assert_ok(ctx, ln_linear_host(ctx, rows, in, out, x, w, b, ep, res, y));
    ref_linear(rows, in, out, x, w, b, ep, res, ref);
    tu_assert_close(y, ref, rows * out, 1e-4, "linear %zux%zu->%zu %s", rows, in, out, ep_name[ep]);
    free(x), free(w), free(b), free(res), free(y), free(ref);
}

START_TEST(linear_model_widths)
{
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 10;
    static const size_t widths[] = {64, 192, 384, 768};
    static const size_t rows[] = {1, 37};
    for (size_t a = 0; a < 4; a++)
        for (size_t r = 0; r < 2; r++)
            for (int ep = 0; ep <= LN_EPILOGUE_BIAS_RESIDUAL; ep++)
                check_dense(ctx, rows[r], widths[a], widths[(a + 1 + (size_t)ep) % 4],
                            (ln_epilogue)ep, &rng);
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(linear_odd_sizes)
{
    /* Sizes that are no multiple of any work-group or GEMM tile size. */
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 11;
    check_dense(ctx, 131, 33, 71, LN_EPILOGUE_BIAS_GELU, &rng);
    check_dense(ctx, 3, 5, 7, LN_EPILOGUE_BIAS_RESIDUAL, &rng);
    check_dense(ctx, 257, 1, 19, LN_EPILOGUE_BIAS, &rng);
    ln_context_destroy(ctx);
}
END_TEST

/* Output written into a column slice of a wider matrix (as a branch writes
 * its slice of the fusion GEMM's input); residual both separate and the
 * output itself; bias alone. The widths make the epilogue take 16, 8, 4, 2
 * and 1 columns per work-item (cl/linear.cl, on a CPU), at offsets that
 * are no multiple of those. */
START_TEST(linear_strided_slices)
{
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 12;
    const size_t rows = 53, in = 48, ldx = 100, xoff = 30, ldy = 150, yoff = 70;
    static const size_t outs[] = {80, 40, 36, 34, 33};
    cl_context cl = ln_context_cl_context(ctx);
    cl_command_queue q = ln_context_cl_queue(ctx);
    for (int mode = 0; mode < 4 * 5; mode++) {
        const size_t out = outs[mode / 4];
        ln_epilogue ep = mode % 4 == 0   ? LN_EPILOGUE_BIAS_GELU
                         : mode % 4 == 3 ? LN_EPILOGUE_BIAS
                                         : LN_EPILOGUE_BIAS_RESIDUAL;
        bool in_place = mode % 4 == 2;
        size_t xn = xoff + rows * ldx, yn = yoff + rows * ldy;
        float *hx = tu_malloc(xn * 4), *hy = tu_malloc(yn * 4), *w = tu_malloc(out * in * 4),
              *b = tu_malloc(out * 4), *res = tu_malloc(rows * out * 4);
        tu_fill_normal(hx, xn, 1.0f, &rng);
        tu_fill_normal(hy, yn, 1.0f, &rng);
        tu_fill_linear(w, b, out, in, &rng);
        tu_fill_normal(res, rows * out, 1.0f, &rng);
        cl_int err;
        cl_mem dx = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, xn * 4, hx, &err);
        cl_mem dy = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, yn * 4, hy, &err);
        cl_mem dw = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, out * in * 4, w, &err);
        /* bias at an offset inside a larger buffer */
        float *bb = tu_malloc((out + 5) * 4);
        tu_fill(bb, out + 5, -1, 1, &rng);
        memcpy(bb + 5, b, out * 4);
        cl_mem db = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, (out + 5) * 4, bb, &err);
        cl_mem dr = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, rows * out * 4, res, &err);
        ln_dmat vx = {dx, xoff, ldx}, vy = {dy, yoff, ldy}, vw = {dw, 0, in}, vr = {dr, 0, out};
        if (in_place) { /* residual is what y's slice held before */
            vr = vy;
            for (size_t r = 0; r < rows; r++)
                for (size_t c = 0; c < out; c++)
                    res[r * out + c] = hy[yoff + r * ldy + c];
        }
        tu_assert_ok(ctx, ln_linear(ctx, rows, in, out, vx, vw, db, 5, ep, vr, vy));
        float *got = tu_malloc(yn * 4), *dense_y = tu_malloc(rows * out * 4),
              *dense_x = tu_malloc(rows * in * 4);
        double *ref = tu_malloc(rows * out * 8);
        clEnqueueReadBuffer(q, dy, CL_TRUE, 0, yn * 4, got, 0, NULL, NULL);
        for (size_t r = 0; r < rows; r++) {
            for (size_t c = 0; c < in; c++)
                dense_x[r * in + c] = hx[xoff + r * ldx + c];
            for (size_t c = 0; c < out; c++)
                dense_y[r * out + c] = got[yoff + r * ldy + c];
        }
        ref_linear(rows, in, out, dense_x, w, b, ep, res, ref);
        tu_assert_close(dense_y, ref, rows * out, 1e-4, "strided linear %s out %zu%s", ep_name[ep],
                        out, in_place ? " in place" : "");
        for (size_t i = 0; i < yn; i++) {
            size_t rel = i < yoff ? 0 : i - yoff;
            bool inside = i >= yoff && rel / ldy < rows && rel % ldy < out;
            if (!inside)
                ck_assert_msg(got[i] == hy[i], "element %zu outside the slice changed", i);
        }
        clReleaseMemObject(dx), clReleaseMemObject(dy), clReleaseMemObject(dw);
        clReleaseMemObject(db), clReleaseMemObject(dr);
        free(hx), free(hy), free(w), free(b), free(bb), free(res), free(got), free(dense_y);
        free(dense_x), free(ref);
    }
    ln_context_destroy(ctx);
}
END_TEST

/* The GELU epilogue element by element over [-12, 12] against float64's
 * erf, at 16 columns per work-item and at 1 (cl/linear.cl): y = x * 1 + 0
 * is v exactly, so only the GELU's own error is measured. The bound: its
 * approximation of erf is within 1.5e-7 and the output is rounded. */
START_TEST(linear_gelu_accuracy)
{
    ln_context *ctx = tu_context();
    const size_t rows = 2401;
    static const size_t outs[] = {16, 3};
    float *x = tu_malloc(rows * 4);
    for (size_t r = 0; r < rows; r++)
        x[r] = -12.0f + 0.01f * (float)r;
    for (int o = 0; o < 2; o++) {
        const size_t out = outs[o];
        float *w = tu_malloc(out * 4), *b = tu_malloc(out * 4), *y = tu_malloc(rows * out * 4);
        for (size_t c = 0; c < out; c++)
            w[c] = 1.0f, b[c] = 0.0f;
        tu_assert_ok(ctx, ln_linear_host(ctx, rows, 1, out, x, w, b, LN_EPILOGUE_BIAS_GELU, NULL, y));
        double worst = 0;
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < out; c++) {
                double ref = tu_gelu((double)x[r]), err = fabs((double)y[r * out + c] - ref);
                ck_assert_msg(err <= 5e-7 + 4 * FLT_EPSILON * fabs(ref),
                              "gelu(%.9g) = %.9g, float64 %.9g (out %zu)", (double)x[r],
                              (double)y[r * out + c], ref, out);
                worst = err > worst ? err : worst;
            }
        printf("gelu over [-12, 12], %zu columns: worst absolute error %.3g\n", out, worst);
        free(w), free(b), free(y);
    }
    free(x);
    ln_context_destroy(ctx);
}
END_TEST

/* ln_linear_wt, the model's route: W^T [in, out] (src/linear.c), here at
 * an offset inside a wider buffer (ld > out) or dense; sizes that are tile
 * multiples (no CLBlast copy pass at all on PoCL's tuned GEMMK 1 sets) and
 * odd ones; every epilogue. */
static void check_wt(ln_context *ctx, size_t rows, size_t in, size_t out, ln_epilogue ep,
                     size_t wt_off, size_t ldwt, uint64_t *rng)
{
    size_t wn = wt_off + in * ldwt;
    float *x = tu_malloc(rows * in * 4), *w = tu_malloc(out * in * 4), *b = tu_malloc(out * 4),
          *res = tu_malloc(rows * out * 4), *y = tu_malloc(rows * out * 4),
          *wt = tu_malloc(wn * 4);
    double *ref = tu_malloc(rows * out * 8);
    tu_fill_normal(x, rows * in, 1.0f, rng);
    tu_fill_linear(w, b, out, in, rng);
    tu_fill_normal(res, rows * out, 1.0f, rng);
    tu_fill(wt, wn, -9, 9, rng); /* what lies outside W^T must not count */
    for (size_t o = 0; o < out; o++)
        for (size_t i = 0; i < in; i++)
            wt[wt_off + i * ldwt + o] = w[o * in + i];
    cl_mem dx, dwt, db, dr, dy;
    tu_assert_ok(ctx, ln_buffer_from_host(ctx, x, rows * in * 4, &dx, "x"));
    tu_assert_ok(ctx, ln_buffer_from_host(ctx, wt, wn * 4, &dwt, "w^T"));
    tu_assert_ok(ctx, ln_buffer_from_host(ctx, b, out * 4, &db, "b"));
    tu_assert_ok(ctx, ln_buffer_from_host(ctx, res, rows * out * 4, &dr, "residual"));
    tu_assert_ok(ctx, ln_buffer_create(ctx, rows * out * 4, &dy, "y"));
    ln_dmat vwt = {dwt, wt_off, ldwt};
    tu_assert_ok(ctx, ln_linear_wt(ctx, rows, in, out, ln_dmat_of(dx, in), vwt, db, 0, ep,
                                   ln_dmat_of(dr, out), ln_dmat_of(dy, out)));
    tu_assert_ok(ctx, ln_buffer_to_host(ctx, dy, y, rows * out * 4));
    ref_linear(rows, in, out, x, w, b, ep, res, ref);
    tu_assert_close(y, ref, rows * out, 1e-4, "linear W^T %zux%zu->%zu %s, W^T at %zu ld %zu",
                    rows, in, out, ep_name[ep], wt_off, ldwt);
    cl_mem all[] = {dx, dwt, db, dr, dy};
    for (int i = 0; i < 5; i++)
        ln_buffer_release(ctx, all[i]);
    free(x), free(w), free(b), free(res), free(y), free(wt), free(ref);
}

START_TEST(linear_transposed_weights)
{
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 13;
    for (int ep = 0; ep <= LN_EPILOGUE_BIAS_RESIDUAL; ep++) {
        check_wt(ctx, 128, 64, 192, (ln_epilogue)ep, 0, 192, &rng);
        check_wt(ctx, 37, 70, 53, (ln_epilogue)ep, 0, 53, &rng);
    }
    check_wt(ctx, 64, 384, 128, LN_EPILOGUE_BIAS, 64, 384, &rng); /* a column slice */
    check_wt(ctx, 131, 33, 71, LN_EPILOGUE_BIAS_GELU, 3, 80, &rng);
    /* W^T's shape is [in, out]: a view too narrow for out is refused. */
    cl_mem m;
    tu_assert_ok(ctx, ln_buffer_create(ctx, 64 * 4, &m, "small"));
    ln_dmat v = ln_dmat_of(m, 4);
    tu_assert_status(ctx, ln_linear_wt(ctx, 2, 4, 8, v, v, m, 0, LN_EPILOGUE_BIAS, v, v),
                     LN_ERROR_SHAPE_MISMATCH);
    ln_buffer_release(ctx, m);
    ln_context_destroy(ctx);
}
END_TEST

/* C = alpha op(A) op(B) + beta C0 in float64 over strided storage. */
static void ref_gemm(bool ta, bool tb, size_t m, size_t n, size_t k, double alpha, const float *a,
                     size_t lda, const float *b, size_t ldb, double beta, const float *c0,
                     size_t ldc, double *out)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double acc = 0;
            for (size_t p = 0; p < k; p++)
                acc += (double)(ta ? a[p * lda + i] : a[i * lda + p]) *
                       (tb ? b[j * ldb + p] : b[p * ldb + j]);
            out[i * n + j] = alpha * acc + beta * c0[i * ldc + j];
        }
}

START_TEST(gemm_both_layouts_match_float64)
{
    /* ln_gemm calls CLBlast row-major, or column-major on C^T (linear.c):
     * each forced, and the automatic choice, for every op combination on
     * views with offsets and padded rows, odd and tile-multiple sizes; one
     * and strided-batched. Floats around the views stay as they were. All
     * again with the splits meant for NVIDIA's grid limit made small: C in
     * calls of 16 rows, batches of 1. */
    static const size_t shapes[][3] = {{37, 53, 29}, {64, 192, 128}, {130, 96, 64}};
    static const int layouts[] = {LN_GEMM_LAYOUT_AUTO, LN_GEMM_LAYOUT_ROW_MAJOR,
                                  LN_GEMM_LAYOUT_COL_MAJOR};
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 31;
    for (size_t si = 0; si < 3; si++)
        for (int ops = 0; ops < 4; ops++) {
            const bool ta = ops & 1, tb = ops & 2;
            const size_t m = shapes[si][0], n = shapes[si][1], k = shapes[si][2], batch = 2;
            const size_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 1;
            const size_t a_rows = ta ? k : m, b_rows = tb ? n : k;
            const size_t oa = 5, ob = 7, oc = 3;
            const size_t sa = a_rows * lda + 4, sb = b_rows * ldb, sc = m * ldc + 2;
            const size_t fa = oa + batch * sa, fb = ob + batch * sb, fc = oc + batch * sc;
            float *a = tu_malloc(fa * 4), *b = tu_malloc(fb * 4), *c0 = tu_malloc(fc * 4),
                  *got = tu_malloc(fc * 4);
            double *ref = tu_malloc(batch * m * n * 8);
            tu_fill(a, fa, -1.0f, 1.0f, &rng);
            tu_fill(b, fb, -1.0f, 1.0f, &rng);
            tu_fill(c0, fc, -1.0f, 1.0f, &rng);
            for (size_t i = 0; i < batch; i++)
                ref_gemm(ta, tb, m, n, k, 1.25, a + oa + i * sa, lda, b + ob + i * sb, ldb, 0.5,
                         c0 + oc + i * sc, ldc, ref + i * m * n);
            cl_mem da, db, dc;
            tu_assert_ok(ctx, ln_buffer_from_host(ctx, a, fa * 4, &da, "a"));
            tu_assert_ok(ctx, ln_buffer_from_host(ctx, b, fb * 4, &db, "b"));
            tu_assert_ok(ctx, ln_buffer_create(ctx, fc * 4, &dc, "c"));
            for (int run = 0; run < 6; run++)
                for (int batched = 0; batched <= 1; batched++) {
                    const int li = run % 3, split = run / 3;
                    ctx->gemm_layout = layouts[li];
                    ctx->gemm_rows = split ? 16 : LN_GEMM_ROWS;
                    ctx->max_groups_yz = split ? 1 : LN_MAX_GROUPS_YZ;
                    ck_assert_int_eq(clEnqueueWriteBuffer(ln_context_cl_queue(ctx), dc, CL_TRUE,
                                                          0, fc * 4, c0, 0, NULL, NULL),
                                     CL_SUCCESS);
                    const ln_dmat va = {da, oa, lda}, vb = {db, ob, ldb}, vc = {dc, oc, ldc};
                    if (batched)
                        tu_assert_ok(ctx, ln_gemm_batched(ctx, ta, tb, m, n, k, 1.25f, va, sa, vb,
                                                          sb, 0.5f, vc, sc, batch, "test"));
                    else
                        tu_assert_ok(ctx,
                                     ln_gemm(ctx, ta, tb, m, n, k, 1.25f, va, vb, 0.5f, vc, "test"));
                    tu_assert_ok(ctx, ln_buffer_to_host(ctx, dc, got, fc * 4));
                    for (size_t i = 0; i < (batched ? batch : 1); i++) {
                        float *dense = tu_malloc(m * n * 4);
                        for (size_t r = 0; r < m; r++)
                            memcpy(dense + r * n, got + oc + i * sc + r * ldc, n * 4);
                        tu_assert_close(dense, ref + i * m * n, m * n, 1e-5,
                                        "gemm %zux%zux%zu ta %d tb %d layout %d batched %d "
                                        "split %d matrix %zu",
                                        m, n, k, ta, tb, layouts[li], batched, split, i);
                        free(dense);
                    }
                    /* Outside the views: the offset, row padding and gaps. */
                    for (size_t e = 0; e < fc; e++) {
                        const size_t rel = e < oc ? SIZE_MAX : (e - oc) % sc,
                                     which = e < oc ? SIZE_MAX : (e - oc) / sc;
                        const bool inside = e >= oc && which < (batched ? batch : 1) &&
                                            rel < m * ldc && rel % ldc < n;
                        if (!inside)
                            ck_assert_msg(got[e] == c0[e],
                                          "layout %d batched %d split %d: c[%zu] changed",
                                          layouts[li], batched, split, e);
                    }
                }
            ctx->gemm_layout = LN_GEMM_LAYOUT_AUTO;
            ctx->gemm_rows = LN_GEMM_ROWS;
            ctx->max_groups_yz = LN_MAX_GROUPS_YZ;
            ln_buffer_release(ctx, da), ln_buffer_release(ctx, db), ln_buffer_release(ctx, dc);
            free(a), free(b), free(c0), free(got), free(ref);
        }
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(gemm_layout_follows_clblast_copies)
{
    /* The automatic choice under two Xgemm sets (CLBlast overrides last
     * for the process: this test runs in its own fork, and no GEMM runs
     * under them). Dense no-transpose 256x192x128, always the indirect
     * kernel: GEMMK 1 copies nothing row-major (row-major kept); GEMMK 0
     * transposes A and C row-major and only B's side column-major. A
     * transposed A under GEMMK 0: nothing to copy column-major. */
    ln_context *ctx = tu_context();
    char why[256];
    const long long routine[1] = {0}; /* XGEMM_MIN_INDIRECT_SIZE: every GEMM indirect */
    const long long gemmk1[16] = {1, 1, 32, 1, 2, 2, 64, 8, 8, 64, 0, 0, 0, 0, 16, 1};
    const long long gemmk0[16] = {0, 1, 32, 2, 8, 8, 64, 8, 8, 64, 0, 0, 1, 1, 4, 4};
    cl_mem buf;
    tu_assert_ok(ctx, ln_buffer_create(ctx, 256 * 256 * 4, &buf, "gemm"));
    const ln_dmat a = {buf, 0, 128}, b = {buf, 0, 192}, c = {buf, 0, 192};
    const ln_dmat at = {buf, 0, 256};
    ck_assert_msg(ln_clblast_override(ctx->device, &ctx->info, LN_CB_GEMM_ROUTINE, routine, why,
                                      sizeof(why)),
                  "%s", why);
    ck_assert_msg(ln_clblast_override(ctx->device, &ctx->info, LN_CB_XGEMM, gemmk1, why,
                                      sizeof(why)),
                  "%s", why);
    ck_assert(!ln_gemm_col_major(ctx, false, false, 256, 192, 128, a, b, c));
    const unsigned long before = ln_clblast_override_generation();
    ck_assert_msg(ln_clblast_override(ctx->device, &ctx->info, LN_CB_XGEMM, gemmk0, why,
                                      sizeof(why)),
                  "%s", why);
    ck_assert_uint_gt(ln_clblast_override_generation(), before);
    ck_assert(ln_gemm_col_major(ctx, false, false, 256, 192, 128, a, b, c)); /* not the cached answer */
    ck_assert(ln_gemm_col_major(ctx, true, false, 256, 192, 128, at, b, c));
    /* Forced layouts win. */
    ctx->gemm_layout = LN_GEMM_LAYOUT_ROW_MAJOR;
    ck_assert(!ln_gemm_col_major(ctx, false, false, 256, 192, 128, a, b, c));
    ctx->gemm_layout = LN_GEMM_LAYOUT_COL_MAJOR;
    ck_assert(ln_gemm_col_major(ctx, false, false, 256, 192, 128, a, b, c));
    ln_buffer_release(ctx, buf);
    ln_context_destroy(ctx);
}
END_TEST

/* + bias (and GELU) on every branch's dense block at once
 * (ln_add_bias_blocks), as the model adds a layer's q, k and v biases
 * (per 3) and its FFN hidden layers' (per ffn_mult, with GELU) where one
 * launch takes all branches: blocks [rows, per w_k] stacked, biases
 * concatenated. Without GELU exact (one float add each); with it within
 * the GELU's float error (linear_gelu_accuracy). */
START_TEST(add_bias_blocks_matches_per_block)
{
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 40;
    static const size_t widths[] = {64, 3, 128, 32, 1};
    const size_t count = 5, sum = 64 + 3 + 128 + 32 + 1;
    static const size_t pers[] = {1, 3, 4};
    for (int gelu = 0; gelu < 2; gelu++)
        for (size_t pi = 0; pi < 3; pi++)
            for (size_t rows = 1; rows <= 301; rows += 100) {
                const size_t per = pers[pi], total = rows * per * sum, extra = 37;
                float *y = tu_malloc((total + extra) * 4), *bias = tu_malloc(per * sum * 4),
                      *got = tu_malloc((total + extra) * 4);
                tu_fill(y, total + extra, -4, 4, &rng);
                tu_fill(bias, per * sum, -2, 2, &rng);
                cl_mem dy, db;
                tu_assert_ok(ctx, ln_buffer_from_host(ctx, y, (total + extra) * 4, &dy, "y"));
                tu_assert_ok(ctx, ln_buffer_from_host(ctx, bias, per * sum * 4, &db, "bias"));
                tu_assert_ok(ctx, ln_add_bias_blocks(ctx, rows, count, widths, per, gelu, dy, db));
                tu_assert_ok(ctx, ln_buffer_to_host(ctx, dy, got, (total + extra) * 4));
                for (size_t k = 0, column = 0; k < count; column += widths[k], k++) {
                    const size_t w = per * widths[k], start = rows * per * column;
                    for (size_t r = 0; r < rows; r++)
                        for (size_t c = 0; c < w; c++) {
                            const size_t i = start + r * w + c;
                            const float sum_f = y[i] + bias[per * column + c];
                            const double want = gelu ? tu_gelu(sum_f) : sum_f;
                            ck_assert_msg(gelu ? fabs(got[i] - want) <= 1e-6 * (1 + fabs(want))
                                               : got[i] == sum_f,
                                          "gelu %d per %zu rows %zu branch %zu row %zu column "
                                          "%zu: %.9g, want %.9g",
                                          gelu, per, rows, k, r, c, got[i], want);
                        }
                }
                for (size_t i = total; i < total + extra; i++)
                    ck_assert_float_eq(got[i], y[i]);
                ln_buffer_release(ctx, dy), ln_buffer_release(ctx, db);
                free(y), free(bias), free(got);
            }
    cl_mem small;
    float ones[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    tu_assert_ok(ctx, ln_buffer_from_host(ctx, ones, sizeof(ones), &small, "small"));
    const size_t w2[2] = {2, 2}, w0[2] = {2, 0};
    tu_assert_status(ctx, ln_add_bias_blocks(ctx, 5, 2, w2, 1, false, small, small),
                     LN_ERROR_SHAPE_MISMATCH); /* 20 floats of blocks in 16 */
    tu_assert_status(ctx, ln_add_bias_blocks(ctx, 1, 2, w2, 5, false, small, small),
                     LN_ERROR_SHAPE_MISMATCH); /* 20 floats of bias in 16 */
    tu_assert_status(ctx, ln_add_bias_blocks(ctx, 2, 2, w0, 1, false, small, small),
                     LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, ln_add_bias_blocks(ctx, 2, 0, w2, 1, false, small, small),
                     LN_ERROR_INVALID_ARGUMENT);
    ln_buffer_release(ctx, small);
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(linear_rejects_bad_input)
{
    ln_context *ctx = tu_context();
    float x[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, w[12], b[4], y[16];
    memcpy(w, x, sizeof(w));
    memcpy(b, x, sizeof(b));
    tu_assert_status(NULL, ln_linear_host(NULL, 3, 4, 3, x, w, b, LN_EPILOGUE_BIAS, NULL, y),
                     LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, ln_linear_host(ctx, 0, 4, 3, x, w, b, LN_EPILOGUE_BIAS, NULL, y),
                     LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, ln_linear_host(ctx, 3, 4, 3, x, w, NULL, LN_EPILOGUE_BIAS, NULL, y),
                     LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, ln_linear_host(ctx, 3, 4, 3, x, w, b, LN_EPILOGUE_BIAS_RESIDUAL, NULL, y),
                     LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, ln_linear_host(ctx, 3, 4, 3, x, w, b, (ln_epilogue)9, NULL, y),
                     LN_ERROR_INVALID_ARGUMENT);
    /* Device views too small for the stated sizes. */
    cl_int err;
    cl_mem m = clCreateBuffer(ln_context_cl_context(ctx), CL_MEM_READ_WRITE, 12 * 4, NULL, &err);
    ln_dmat v = ln_dmat_of(m, 4);
    tu_assert_status(ctx, ln_linear(ctx, 4, 4, 3, v, v, m, 0, LN_EPILOGUE_BIAS, v, v),
                     LN_ERROR_SHAPE_MISMATCH);
    ln_dmat narrow = ln_dmat_of(m, 2);
    tu_assert_status(ctx, ln_linear(ctx, 2, 4, 2, narrow, v, m, 0, LN_EPILOGUE_BIAS, v, v),
                     LN_ERROR_SHAPE_MISMATCH);
    tu_assert_status(ctx, ln_linear(ctx, 2, 3, 2, ln_dmat_of(m, 3), ln_dmat_of(m, 3), m, 11,
                                    LN_EPILOGUE_BIAS, v, ln_dmat_of(m, 2)),
                     LN_ERROR_SHAPE_MISMATCH);
    clReleaseMemObject(m);
    ln_context_destroy(ctx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("linear");
    TCase *tc = tcase_create("linear");
    tcase_add_test(tc, linear_model_widths);
    tcase_add_test(tc, linear_odd_sizes);
    tcase_add_test(tc, linear_strided_slices);
    tcase_add_test(tc, linear_gelu_accuracy);
    tcase_add_test(tc, linear_transposed_weights);
    tcase_add_test(tc, linear_rejects_bad_input);
    tcase_add_test(tc, add_bias_blocks_matches_per_block);
    tcase_add_test(tc, gemm_both_layouts_match_float64);
    tcase_add_test(tc, gemm_layout_follows_clblast_copies);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
