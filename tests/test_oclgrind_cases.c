/*
 * test_oclgrind_cases.c: one tiny case per kernel family (linear, norm,
 * positional), small enough to run under Oclgrind's simulator in seconds.
 * tests/oclgrind.cmake runs each case (CK_RUN_CASE=<family>, CK_FORK=no)
 * under `oclgrind --data-races --uninitialized --check-api` and fails on
 * any report; run directly (as CTest also does) it is an ordinary
 * correctness test on the default device.
 *
 * Shapes are odd on purpose: widths that are not multiples of the
 * work-group size, views with offsets and leading dimensions wider than
 * the view, so that guards and strided indexing are what gets checked.
 * Every buffer is fully written from the host first, so any read of
 * uninitialised memory is the kernel's own.
 *
 * Buffers live until the end of their case: Oclgrind 21.10's
 * --uninitialized keeps the shadow size of a released buffer when its slot
 * is reused, so a larger buffer allocated there reads as uninitialised past
 * the old size even after a kernel wrote it (a standalone repro: create and
 * release 30 floats, create 42, fill them by a kernel, copy them by another:
 * 12 "Uninitialized value written" reports). Holding buffers keeps slot
 * reuse to same-sized temporaries (ln_positional_add's hidden layer).
 */
#include "test_util.h"
#include "internal.h" /* struct ln_context: the epilogue's vector width */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-5

static cl_mem from_host(ln_context *ctx, const float *data, size_t floats)
{
    cl_int err;
    cl_mem m = clCreateBuffer(ln_context_cl_context(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                              floats * sizeof(float), (void *)data, &err);
    ck_assert_msg(m != NULL, "clCreateBuffer: %d", (int)err);
    return m;
}

static void to_host(ln_context *ctx, cl_mem m, float *data, size_t floats)
{
    cl_int err = clEnqueueReadBuffer(ln_context_cl_queue(ctx), m, CL_TRUE, 0,
                                     floats * sizeof(float), data, 0, NULL, NULL);
    ck_assert_int_eq(err, CL_SUCCESS);
}

static float *random_floats(size_t n, uint64_t *rng)
{
    float *v = tu_malloc(n * sizeof(float));
    tu_fill(v, n, -1.0f, 1.0f, rng);
    return v;
}

/* Elements of a [rows, cols] view outside the view must be untouched. */
static void assert_outside_untouched(const float *got, const float *before, size_t total,
                                     size_t off, size_t ld, size_t rows, size_t cols,
                                     const char *what)
{
    for (size_t i = 0; i < total; i++) {
        bool inside = i >= off && (i - off) / ld < rows && (i - off) % ld < cols;
        if (!inside)
            ck_assert_msg(got[i] == before[i], "%s: element %zu outside the view changed", what,
                          i);
    }
}

/* ------------------------------------------------------------- linear */

/* out 6 and 16 with up to 16 columns per work-item, a CPU's setting
 * (Oclgrind's device calls itself a GPU too): the epilogue takes 2 and 16
 * columns per work-item (cl/linear.cl), at offsets that are no multiple
 * of either. */
static void linear_case(size_t out, uint64_t rng)
{
    ln_context *ctx = tu_context();
    ctx->params.vec_elementwise = 16;
    const size_t rows = 5, in = 7;
    const size_t x_off = 3, x_ld = 9, y_off = 2, y_ld = out + 4, r_off = 1, r_ld = out + 2,
                 b_off = 1;
    const size_t x_n = x_off + rows * x_ld, y_n = y_off + rows * y_ld, r_n = r_off + rows * r_ld;
    float *x = random_floats(x_n, &rng), *w = random_floats(out * in, &rng),
          *b = random_floats(b_off + out, &rng), *r = random_floats(r_n, &rng),
          *y0 = random_floats(y_n, &rng), *got = tu_malloc(y_n * sizeof(float));
    double *ref = tu_malloc(rows * out * sizeof(double));
    float *view = tu_malloc(rows * out * sizeof(float));
    cl_mem dx = from_host(ctx, x, x_n), dw = from_host(ctx, w, out * in),
           db = from_host(ctx, b, b_off + out), dr = from_host(ctx, r, r_n);
    ln_dmat vx = {dx, x_off, x_ld}, vw = ln_dmat_of(dw, in), vr = {dr, r_off, r_ld};

    static const char *names[] = {"none", "bias", "bias_gelu", "bias_residual",
                                  "bias_residual_in_place"};
    cl_mem held[5];
    for (int e = 0; e < 5; e++) {
        ln_epilogue ep = e == 4 ? LN_EPILOGUE_BIAS_RESIDUAL : (ln_epilogue)e;
        cl_mem dy = held[e] = from_host(ctx, y0, y_n);
        ln_dmat vy = {dy, y_off, y_ld};
        tu_assert_ok(ctx, ln_linear(ctx, rows, in, out, vx, vw, db, b_off, ep,
                                    e == 4 ? vy : vr, vy));
        to_host(ctx, dy, got, y_n);
        for (size_t i = 0; i < rows; i++)
            for (size_t o = 0; o < out; o++) {
                double s = 0;
                for (size_t k = 0; k < in; k++)
                    s += (double)x[x_off + i * x_ld + k] * w[o * in + k];
                if (ep != LN_EPILOGUE_NONE)
                    s += b[b_off + o];
                if (ep == LN_EPILOGUE_BIAS_GELU)
                    s = tu_gelu(s);
                if (e == 3)
                    s += r[r_off + i * r_ld + o];
                if (e == 4)
                    s += y0[y_off + i * y_ld + o];
                ref[i * out + o] = s;
                view[i * out + o] = got[y_off + i * y_ld + o];
            }
        tu_assert_close(view, ref, rows * out, TOL, "linear, epilogue %s", names[e]);
        assert_outside_untouched(got, y0, y_n, y_off, y_ld, rows, out, names[e]);
    }
    for (int e = 0; e < 5; e++)
        clReleaseMemObject(held[e]);
    clReleaseMemObject(dx), clReleaseMemObject(dw), clReleaseMemObject(db), clReleaseMemObject(dr);
    ck_assert_uint_eq(ln_context_device_bytes(ctx), 0);
    ln_context_destroy(ctx);
    free(x), free(w), free(b), free(r), free(y0), free(got), free(ref), free(view);
}

/* ln_add_bias_blocks over three stacked blocks of 3 w_k columns and a
 * tail past them that must stay as it was: widths 2, 5, 1 one column per
 * work-item, 16, 32, 48 with a CPU's vector setting 16 at a time; with
 * GELU after the bias where gelu is set. */
static void bias_blocks_case(const size_t widths[3], bool gelu, uint64_t rng)
{
    ln_context *ctx = tu_context();
    ctx->params.vec_elementwise = 16;
    const size_t rows = 7, sum = widths[0] + widths[1] + widths[2], total = rows * 3 * sum,
                 n = total + 5;
    float *y = random_floats(n, &rng), *b = random_floats(3 * sum, &rng),
          *got = tu_malloc(n * sizeof(float));
    cl_mem dy = from_host(ctx, y, n), db = from_host(ctx, b, 3 * sum);
    tu_assert_ok(ctx, ln_add_bias_blocks(ctx, rows, 3, widths, 3, gelu, dy, db));
    to_host(ctx, dy, got, n);
    for (size_t k = 0, column = 0; k < 3; column += widths[k], k++)
        for (size_t i = 0; i < rows * 3 * widths[k]; i++) {
            const size_t at = rows * 3 * column + i;
            const float sum_f = y[at] + b[3 * column + i % (3 * widths[k])];
            const double want = gelu ? tu_gelu(sum_f) : sum_f;
            ck_assert_msg(fabs(got[at] - want) <= (gelu ? 1e-6 * (1 + fabs(want)) : 0),
                          "add_bias_blocks: element %zu", at);
        }
    for (size_t i = total; i < n; i++)
        ck_assert_msg(got[i] == y[i], "add_bias_blocks: element %zu past the blocks changed", i);
    clReleaseMemObject(dy), clReleaseMemObject(db);
    ln_context_destroy(ctx);
    free(y), free(b), free(got);
}

START_TEST(linear)
{
    linear_case(6, tu_seed());
    linear_case(16, tu_seed() + 1);
    static const size_t narrow[3] = {2, 5, 1}, wide[3] = {16, 32, 48};
    bias_blocks_case(narrow, false, tu_seed() + 2);
    bias_blocks_case(wide, true, tu_seed() + 3);
}
END_TEST

/* --------------------------------------------------------------- norm */

START_TEST(norm)
{
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 1;
    /* 150 columns: more than the default work-group of 64, not a multiple. */
    const size_t rows = 3, full_width = 150, x_off = 5, x_ld = 157, y_off = 3, y_ld = 151;
    const size_t x_n = x_off + rows * x_ld, y_n = y_off + rows * y_ld;
    float *x = random_floats(x_n, &rng), *g = random_floats(full_width, &rng),
          *b = random_floats(full_width, &rng), *y0 = random_floats(y_n, &rng),
          *got = tu_malloc(y_n * sizeof(float)),
          *view = tu_malloc(rows * full_width * sizeof(float));
    double *ref = tu_malloc(rows * full_width * sizeof(double));
    for (size_t c = 0; c < full_width; c++) /* a zero row: unit_rows' 1e-12 floor */
        x[x_off + 2 * x_ld + c] = 0.0f;
    cl_mem dx = from_host(ctx, x, x_n), dg = from_host(ctx, g, full_width),
           db = from_host(ctx, b, full_width);
    ln_dmat vx = {dx, x_off, x_ld};

    /* ops 2 and 3: LayerNorm and unit rows over the first 144 columns with
     * a CPU's vector setting, which takes one row per work-item in
     * float16s (cl/norm.cl; Oclgrind's device calls itself a GPU too). */
    static const char *names[] = {"layernorm", "unit_rows", "layernorm_rows16", "unit_rows16"};
    cl_mem held[4];
    for (int op = 0; op < 4; op++) {
        const size_t width = op >= 2 ? 144 : full_width;
        const bool unit = op == 1 || op == 3;
        ctx->params.vec_elementwise = op >= 2 ? 16 : 1;
        cl_mem dy = held[op] = from_host(ctx, y0, y_n);
        ln_dmat vy = {dy, y_off, y_ld};
        if (!unit)
            tu_assert_ok(ctx, ln_layernorm(ctx, rows, width, vx, dg, db, 1e-5f, vy));
        else
            tu_assert_ok(ctx, ln_unit_rows(ctx, rows, width, vx, vy));
        to_host(ctx, dy, got, y_n);
        for (size_t i = 0; i < rows; i++) {
            const float *xr = x + x_off + i * x_ld;
            double mean = 0, var = 0, sq = 0;
            for (size_t c = 0; c < width; c++)
                mean += xr[c], sq += (double)xr[c] * xr[c];
            mean /= (double)width;
            for (size_t c = 0; c < width; c++)
                var += (xr[c] - mean) * (xr[c] - mean);
            var /= (double)width;
            double norm = sqrt(sq) > 1e-12 ? sqrt(sq) : 1e-12;
            for (size_t c = 0; c < width; c++) {
                ref[i * width + c] = !unit ? (xr[c] - mean) / sqrt(var + 1e-5) * g[c] + b[c]
                                           : xr[c] / norm;
                view[i * width + c] = got[y_off + i * y_ld + c];
            }
        }
        tu_assert_close(view, ref, rows * width, TOL, "%s", names[op]);
        assert_outside_untouched(got, y0, y_n, y_off, y_ld, rows, width, names[op]);
    }
    for (int op = 0; op < 4; op++)
        clReleaseMemObject(held[op]);

    /* ln_layernorm_add_bias through both kernels: x += bias (offset 2) in
     * place, then LayerNorm of the sum, as the model's LN1 and LN2 run. */
    for (int rows16 = 0; rows16 < 2; rows16++) {
        const size_t width = rows16 ? 144 : full_width;
        ctx->params.vec_elementwise = rows16 ? 16 : 1;
        float *bias = random_floats(2 + width, &rng), *got_x = tu_malloc(x_n * sizeof(float));
        cl_mem dxb = from_host(ctx, x, x_n), dbias = from_host(ctx, bias, 2 + width),
               dy = from_host(ctx, y0, y_n);
        ln_dmat vxb = {dxb, x_off, x_ld}, vy = {dy, y_off, y_ld};
        tu_assert_ok(ctx, ln_layernorm_add_bias(ctx, rows, width, vxb, dbias, 2, dg, db, 1e-5f, vy));
        to_host(ctx, dy, got, y_n);
        to_host(ctx, dxb, got_x, x_n);
        double *ref_x = tu_malloc(rows * width * sizeof(double));
        float *view_x = tu_malloc(rows * width * sizeof(float));
        for (size_t i = 0; i < rows; i++) {
            const float *xr = x + x_off + i * x_ld;
            double mean = 0, var = 0;
            for (size_t c = 0; c < width; c++)
                mean += xr[c] + bias[2 + c];
            mean /= (double)width;
            for (size_t c = 0; c < width; c++) {
                const double v = (double)xr[c] + bias[2 + c];
                var += (v - mean) * (v - mean);
            }
            var /= (double)width;
            for (size_t c = 0; c < width; c++) {
                const double v = (double)xr[c] + bias[2 + c];
                ref[i * width + c] = (v - mean) / sqrt(var + 1e-5) * g[c] + b[c];
                view[i * width + c] = got[y_off + i * y_ld + c];
                ref_x[i * width + c] = v;
                view_x[i * width + c] = got_x[x_off + i * x_ld + c];
            }
        }
        const char *name = rows16 ? "layernorm_rows16 + bias" : "layernorm + bias";
        tu_assert_close(view, ref, rows * width, TOL, "%s", name);
        tu_assert_close(view_x, ref_x, rows * width, TOL, "%s: x + bias", name);
        assert_outside_untouched(got, y0, y_n, y_off, y_ld, rows, width, name);
        assert_outside_untouched(got_x, x, x_n, x_off, x_ld, rows, width, name);
        clReleaseMemObject(dxb), clReleaseMemObject(dbias), clReleaseMemObject(dy);
        free(bias), free(got_x), free(ref_x), free(view_x);
    }

    /* Every branch's LayerNorm in one launch, adding the bias, from x's
     * slices into y's dense blocks: widths 150 and 6 (more and fewer
     * columns than the work-group) take the work-group kernel, 144 and 16
     * with a CPU's vector setting the one-row-per-work-item one. */
    static const size_t branch_widths[2][2] = {{150, 6}, {144, 16}};
    for (int rows16 = 0; rows16 < 2; rows16++) {
        const size_t *widths = branch_widths[rows16];
        ctx->params.vec_elementwise = rows16 ? 16 : 1;
        const size_t sum = widths[0] + widths[1], ld = sum + 1, n_x = x_off + rows * ld,
                     n_y = rows * sum + 4;
        float *xb = random_floats(n_x, &rng), *gb = random_floats(sum, &rng),
              *bb = random_floats(sum, &rng), *bias = random_floats(sum, &rng),
              *yb = random_floats(n_y, &rng), *got_y = tu_malloc(n_y * sizeof(float));
        cl_mem dxb = from_host(ctx, xb, n_x), dgb = from_host(ctx, gb, sum),
               dbb = from_host(ctx, bb, sum), dbias = from_host(ctx, bias, sum),
               dyb = from_host(ctx, yb, n_y);
        tu_assert_ok(ctx, ln_layernorm_branches(ctx, rows, 2, widths, (ln_dmat){dxb, x_off, ld},
                                                dbias, dgb, dbb, 1e-5f, dyb));
        to_host(ctx, dyb, got_y, n_y);
        for (size_t k = 0, column = 0; k < 2; column += widths[k], k++) {
            const size_t w = widths[k];
            for (size_t i = 0; i < rows; i++) {
                double mean = 0, var = 0;
                for (size_t c = 0; c < w; c++)
                    mean += xb[x_off + i * ld + column + c] + bias[column + c];
                mean /= (double)w;
                for (size_t c = 0; c < w; c++) {
                    const double v = (double)xb[x_off + i * ld + column + c] + bias[column + c];
                    var += (v - mean) * (v - mean);
                }
                var /= (double)w;
                for (size_t c = 0; c < w; c++) {
                    const double v = (double)xb[x_off + i * ld + column + c] + bias[column + c];
                    ref[i * w + c] = (v - mean) / sqrt(var + 1e-5) * gb[column + c] + bb[column + c];
                }
            }
            tu_assert_close(got_y + rows * column, ref, rows * w, TOL,
                            "layernorm_branches%s %zu", rows16 ? "_rows16" : "", k);
        }
        for (size_t i = rows * sum; i < n_y; i++)
            ck_assert_msg(got_y[i] == yb[i], "layernorm_branches: element %zu changed", i);
        clReleaseMemObject(dxb), clReleaseMemObject(dgb), clReleaseMemObject(dbb);
        clReleaseMemObject(dbias), clReleaseMemObject(dyb);
        free(xb), free(gb), free(bb), free(bias), free(yb), free(got_y);
    }

    /* Unit rows with each sequence's u^T, as the model writes them on CPUs
     * before S's GEMM, dense: B = 2, n = 19 (16 rows a work-item: a full
     * block and a partial one) and B = 1, n = 270 (64 rows a work-item:
     * the last takes 14). */
    static const size_t ut_shapes[][3] = {{2, 19, 32}, {1, 270, 16}};
    for (int si = 0; si < 2; si++) {
        const size_t B = ut_shapes[si][0], n = ut_shapes[si][1], w = ut_shapes[si][2];
        const size_t count = B * n * w;
        ctx->params.vec_elementwise = 16;
        float *xt = random_floats(count, &rng), *u = tu_malloc(count * 4),
              *ut = tu_malloc(count * 4);
        cl_mem dxt = from_host(ctx, xt, count), du = from_host(ctx, xt, count),
               dut = from_host(ctx, xt, count);
        tu_assert_ok(ctx, ln_unit_rows_t(ctx, B, n, w, dxt, du, dut));
        to_host(ctx, du, u, count);
        to_host(ctx, dut, ut, count);
        for (size_t r = 0; r < B * n; r++) {
            double sq = 0;
            for (size_t c = 0; c < w; c++)
                sq += (double)xt[r * w + c] * xt[r * w + c];
            for (size_t c = 0; c < w; c++) {
                ck_assert_msg(fabs(u[r * w + c] - xt[r * w + c] / sqrt(sq)) <= 1e-6,
                              "unit_rows16 with u^T: row %zu, column %zu", r, c);
                ck_assert_msg(ut[(r / n) * w * n + c * n + r % n] == u[r * w + c],
                              "u^T of row %zu, column %zu", r, c);
            }
        }
        clReleaseMemObject(dxt), clReleaseMemObject(du), clReleaseMemObject(dut);
        free(xt), free(u), free(ut);
    }
    clReleaseMemObject(dx), clReleaseMemObject(dg), clReleaseMemObject(db);
    ln_context_destroy(ctx);
    free(x), free(g), free(b), free(y0), free(got), free(view), free(ref);
}
END_TEST

/* --------------------------------------------------------- positional */

START_TEST(positional)
{
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 2;
    const size_t batch = 2, n = 3, d = 5, hidden = 7, rows = batch * n;
    float *p = random_floats(rows, &rng), *w1 = random_floats(hidden, &rng),
          *b1 = random_floats(hidden, &rng), *w2 = random_floats(d * hidden, &rng),
          *b2 = random_floats(d, &rng), *x = random_floats(rows * d, &rng),
          *got = tu_malloc(rows * d * sizeof(float));
    double *ref = tu_malloc(rows * d * sizeof(double));
    cl_mem dp = from_host(ctx, p, rows), dw1 = from_host(ctx, w1, hidden),
           db1 = from_host(ctx, b1, hidden), dw2 = from_host(ctx, w2, d * hidden),
           db2 = from_host(ctx, b2, d);
    /* Given positions into a separate output; default positions in place;
     * a one-element sequence (default position 0). */
    cl_mem held[4] = {NULL, NULL, NULL, NULL};
    for (int c = 0; c < 3; c++) {
        size_t bn = c == 2 ? 1 : batch, nn = c == 2 ? 1 : n, rr = bn * nn;
        cl_mem dx = from_host(ctx, x, rows * d), dout = c == 0 ? from_host(ctx, x, rows * d) : dx;
        held[c] = dx;
        if (dout != dx)
            held[3] = dout;
        tu_assert_ok(ctx, ln_positional_add(ctx, bn, nn, d, hidden, c == 0 ? dp : NULL, dw1, db1,
                                            dw2, db2, dx, dout));
        to_host(ctx, dout, got, rr * d);
        for (size_t r = 0; r < rr; r++) {
            double pos = c == 0 ? p[r] : nn > 1 ? (double)(r % nn) / (double)(nn - 1) : 0.0;
            for (size_t o = 0; o < d; o++) {
                double s = b2[o] + x[r * d + o];
                for (size_t j = 0; j < hidden; j++)
                    s += w2[o * hidden + j] * tu_gelu((double)w1[j] * pos + b1[j]);
                ref[r * d + o] = s;
            }
        }
        tu_assert_close(got, ref, rr * d, TOL, "positional case %d", c);
    }
    for (int i = 0; i < 4; i++)
        clReleaseMemObject(held[i]);
    clReleaseMemObject(dp), clReleaseMemObject(dw1), clReleaseMemObject(db1);
    clReleaseMemObject(dw2), clReleaseMemObject(db2);
    ck_assert_uint_eq(ln_context_device_bytes(ctx), 0);
    ln_context_destroy(ctx);
    free(p), free(w1), free(b1), free(w2), free(b2), free(x), free(got), free(ref);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("oclgrind_cases");
    /* One TCase per kernel family, named as CK_RUN_CASE selects it. */
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {{"linear", linear}, {"norm", norm}, {"positional", positional}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return tu_run(s);
}
