/*
 * test_norm.c: LayerNorm (with and without its bias add into x, one row
 * and every branch of a layer at once) and unit rows (src/norm.c) against
 * float64; unit
 * rows with their per-sequence transposes, and S = u u^T from them
 * (ln_similarity_t, src/attention.c), against float64 and ln_similarity.
 */
#include "test_util.h"
#include "internal.h" /* ln_unit_rows_t, ln_similarity_t, the buffer helpers */

#include <math.h>
#include <stdlib.h>
#include <string.h>

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

/* x += bias then LayerNorm, on strided views and in place, through both
 * kernels: width 96 takes the row-per-work-item float16 kernel on CPUs,
 * width 37 the work-group one everywhere. x afterwards holds x + bias
 * (the model reads it as its residual stream) unless y is x. */
START_TEST(layernorm_add_bias_matches_float64)
{
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 5;
    static const size_t widths_here[] = {96, 37, 384};
    for (size_t wi = 0; wi < 3; wi++)
        for (int in_place = 0; in_place < 2; in_place++) {
            const size_t rows = 53, w = widths_here[wi], ldx = w + 29, xoff = 11,
                         ldy = in_place ? ldx : w + 3, yoff = in_place ? xoff : 5, boff = 7;
            const size_t xn = rows * ldx + xoff, yn = rows * ldy + yoff;
            float *hx = tu_malloc(xn * 4), *hy = tu_malloc(yn * 4), *g = tu_malloc(w * 4),
                  *b = tu_malloc(w * 4), *bias = tu_malloc((boff + w) * 4);
            tu_fill_normal(hx, xn, 2.0f, &rng);
            tu_fill(hy, yn, -1, 1, &rng);
            tu_fill(g, w, 0.5f, 1.5f, &rng);
            tu_fill(b, w, -0.5f, 0.5f, &rng);
            tu_fill(bias, boff + w, 1.0f, 3.0f, &rng); /* shifts the mean: centring counts */
            cl_mem dx, dy, dg, db, dbias;
            tu_assert_ok(ctx, ln_buffer_from_host(ctx, hx, xn * 4, &dx, "x"));
            tu_assert_ok(ctx, ln_buffer_from_host(ctx, hy, yn * 4, &dy, "y"));
            tu_assert_ok(ctx, ln_buffer_from_host(ctx, g, w * 4, &dg, "g"));
            tu_assert_ok(ctx, ln_buffer_from_host(ctx, b, w * 4, &db, "b"));
            tu_assert_ok(ctx, ln_buffer_from_host(ctx, bias, (boff + w) * 4, &dbias, "bias"));
            const ln_dmat vx = {dx, xoff, ldx}, vy = in_place ? vx : (ln_dmat){dy, yoff, ldy};
            tu_assert_ok(ctx,
                         ln_layernorm_add_bias(ctx, rows, w, vx, dbias, boff, dg, db, 1e-5f, vy));
            float *out_x = tu_malloc(xn * 4), *out_y = tu_malloc(yn * 4);
            tu_assert_ok(ctx, ln_buffer_to_host(ctx, dx, out_x, xn * 4));
            tu_assert_ok(ctx, ln_buffer_to_host(ctx, in_place ? dx : dy, out_y,
                                                (in_place ? xn : yn) * 4));
            float *sum = tu_malloc(rows * w * 4), *got_x = tu_malloc(rows * w * 4),
                  *got_y = tu_malloc(rows * w * 4);
            double *ref_x = tu_malloc(rows * w * 8), *ref_y = tu_malloc(rows * w * 8);
            for (size_t r = 0; r < rows; r++)
                for (size_t c = 0; c < w; c++) {
                    ref_x[r * w + c] = (double)hx[xoff + r * ldx + c] + bias[boff + c];
                    sum[r * w + c] = hx[xoff + r * ldx + c] + bias[boff + c];
                    got_x[r * w + c] = out_x[xoff + r * ldx + c];
                    got_y[r * w + c] = out_y[yoff + r * ldy + c];
                }
            ref_layernorm(rows, w, sum, g, b, 1e-5, ref_y);
            if (!in_place) /* in place, y overwrote x + bias */
                tu_assert_close(got_x, ref_x, rows * w, 1e-7, "x + bias, width %zu", w);
            tu_assert_close(got_y, ref_y, rows * w, 1e-5, "layernorm(x + bias), width %zu in "
                            "place %d", w, in_place);
            /* Everything outside the views is untouched. */
            for (size_t i = 0; i < xn; i++) {
                const size_t r = i < xoff ? 0 : (i - xoff) / ldx, c = i < xoff ? w : (i - xoff) % ldx;
                if (i < xoff || r >= rows || c >= w)
                    ck_assert_float_eq(out_x[i], hx[i]);
            }
            if (!in_place)
                for (size_t i = 0; i < yn; i++) {
                    const size_t r = i < yoff ? 0 : (i - yoff) / ldy,
                                 c = i < yoff ? w : (i - yoff) % ldy;
                    if (i < yoff || r >= rows || c >= w)
                        ck_assert_float_eq(out_y[i], hy[i]);
                }
            ln_buffer_release(ctx, dx), ln_buffer_release(ctx, dy), ln_buffer_release(ctx, dg);
            ln_buffer_release(ctx, db), ln_buffer_release(ctx, dbias);
            free(hx), free(hy), free(g), free(b), free(bias), free(out_x), free(out_y);
            free(sum), free(got_x), free(got_y), free(ref_x), free(ref_y);
        }
    /* A missing or short bias is refused by name. */
    cl_mem x16, short_bias;
    float ones[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    tu_assert_ok(ctx, ln_buffer_from_host(ctx, ones, sizeof(ones), &x16, "x"));
    tu_assert_ok(ctx, ln_buffer_from_host(ctx, ones, 4 * 4, &short_bias, "bias"));
    const ln_dmat v = ln_dmat_of(x16, 8);
    tu_assert_status(ctx, ln_layernorm_add_bias(ctx, 2, 8, v, NULL, 0, x16, x16, 1e-5f, v),
                     LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, ln_layernorm_add_bias(ctx, 2, 8, v, short_bias, 0, x16, x16, 1e-5f, v),
                     LN_ERROR_SHAPE_MISMATCH);
    ck_assert_ptr_nonnull(strstr(ln_last_error(ctx), "bias"));
    tu_assert_status(ctx, ln_layernorm_add_bias(ctx, 2, 4, v, short_bias, 1, x16, x16, 1e-5f, v),
                     LN_ERROR_SHAPE_MISMATCH);
    ln_buffer_release(ctx, x16), ln_buffer_release(ctx, short_bias);
    ln_context_destroy(ctx);
}
END_TEST

/* Every branch's LayerNorm in one launch (ln_layernorm_branches): branch
 * k's column slice of a strided x, plus its slice of the concatenated
 * bias where with_bias, normalised into y's dense block at rows * column_k,
 * as the model's LN1 and LN2 run where one launch takes all branches. */
static void check_layernorm_branches(ln_context *ctx, const size_t *widths_here, size_t count,
                                     int with_bias, uint64_t *state)
{
    const size_t rows = 29;
    size_t sum = 0;
    for (size_t k = 0; k < count; k++)
        sum += widths_here[k];
    const size_t ldx = sum + 13, xoff = 9, xn = xoff + rows * ldx, yn = rows * sum + 21;
    float *hx = tu_malloc(xn * 4), *hy = tu_malloc(yn * 4), *g = tu_malloc(sum * 4),
          *b = tu_malloc(sum * 4), *bias = tu_malloc(sum * 4);
    tu_fill_normal(hx, xn, 2.0f, state);
    tu_fill(hy, yn, -1, 1, state);
    tu_fill(g, sum, 0.5f, 1.5f, state);
    tu_fill(b, sum, -0.5f, 0.5f, state);
    tu_fill(bias, sum, -3.0f, 3.0f, state);
    cl_mem dx, dy, dg, db, dbias;
    tu_assert_ok(ctx, ln_buffer_from_host(ctx, hx, xn * 4, &dx, "x"));
    tu_assert_ok(ctx, ln_buffer_from_host(ctx, hy, yn * 4, &dy, "y"));
    tu_assert_ok(ctx, ln_buffer_from_host(ctx, g, sum * 4, &dg, "g"));
    tu_assert_ok(ctx, ln_buffer_from_host(ctx, b, sum * 4, &db, "b"));
    tu_assert_ok(ctx, ln_buffer_from_host(ctx, bias, sum * 4, &dbias, "bias"));
    tu_assert_ok(ctx, ln_layernorm_branches(ctx, rows, count, widths_here,
                                            (ln_dmat){dx, xoff, ldx}, with_bias ? dbias : NULL,
                                            dg, db, 1e-5f, dy));
    float *out_x = tu_malloc(xn * 4), *out_y = tu_malloc(yn * 4);
    tu_assert_ok(ctx, ln_buffer_to_host(ctx, dx, out_x, xn * 4));
    tu_assert_ok(ctx, ln_buffer_to_host(ctx, dy, out_y, yn * 4));
    for (size_t k = 0, column = 0; k < count; column += widths_here[k], k++) {
        const size_t w = widths_here[k];
        float *in = tu_malloc(rows * w * 4), *got_x = tu_malloc(rows * w * 4);
        double *ref_x = tu_malloc(rows * w * 8), *ref_y = tu_malloc(rows * w * 8);
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < w; c++) {
                const float x0 = hx[xoff + r * ldx + column + c];
                in[r * w + c] = with_bias ? x0 + bias[column + c] : x0;
                ref_x[r * w + c] = (double)in[r * w + c];
                got_x[r * w + c] = out_x[xoff + r * ldx + column + c];
            }
        ref_layernorm(rows, w, in, g + column, b + column, 1e-5, ref_y);
        if (w > 1) /* a 1-wide LayerNorm is beta exactly */
            tu_assert_close(out_y + rows * column, ref_y, rows * w, 1e-5,
                            "branch %zu (width %zu), bias %d", k, w, with_bias);
        else
            for (size_t r = 0; r < rows; r++)
                ck_assert_float_eq(out_y[rows * column + r], b[column]);
        tu_assert_close(got_x, ref_x, rows * w, 1e-7, "branch %zu's x, bias %d", k,
                        with_bias);
        free(in), free(got_x), free(ref_x), free(ref_y);
    }
    for (size_t i = rows * sum; i < yn; i++) /* past the blocks */
        ck_assert_float_eq(out_y[i], hy[i]);
    for (size_t i = 0; i < xn; i++) /* x outside the view */
        if (i < xoff || (i - xoff) % ldx >= sum)
            ck_assert_float_eq(out_x[i], hx[i]);
    ln_buffer_release(ctx, dx), ln_buffer_release(ctx, dy), ln_buffer_release(ctx, dg);
    ln_buffer_release(ctx, db), ln_buffer_release(ctx, dbias);
    free(hx), free(hy), free(g), free(b), free(bias), free(out_x), free(out_y);
}

START_TEST(layernorm_branches_matches_float64)
{
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 6;
    /* The first set has widths no float16 kernel takes; the second takes
     * layernorm_branches_rows16 on CPUs. Both again with the branches
     * (dimension 1) launched 2 work-groups at a time, as ln_enqueue slices
     * ranges past NVIDIA's grid limit. */
    static const size_t width_sets[2][5] = {{48, 16, 37, 96, 1}, {48, 16, 32, 96, 384}};
    for (int sliced = 0; sliced < 2; sliced++) {
        ctx->max_groups_yz = sliced ? 2 : LN_MAX_GROUPS_YZ;
        for (int set = 0; set < 2; set++)
            for (int with_bias = 0; with_bias < 2; with_bias++)
                check_layernorm_branches(ctx, width_sets[set], 5, with_bias, &rng);
    }
    ctx->max_groups_yz = LN_MAX_GROUPS_YZ;
    /* Bad widths, counts and short buffers are refused by name. */
    cl_mem small;
    float ones[64];
    for (int i = 0; i < 64; i++)
        ones[i] = 1.0f;
    tu_assert_ok(ctx, ln_buffer_from_host(ctx, ones, sizeof(ones), &small, "small"));
    const size_t w17[17] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
                 w_zero[2] = {4, 0}, w_ok[2] = {4, 4};
    const ln_dmat v = ln_dmat_of(small, 8);
    tu_assert_status(ctx, ln_layernorm_branches(ctx, 2, 17, w17, ln_dmat_of(small, 17), NULL,
                                                small, small, 1e-5f, small),
                     LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, ln_layernorm_branches(ctx, 2, 2, w_zero, v, NULL, small, small, 1e-5f,
                                                small),
                     LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, ln_layernorm_branches(ctx, 9, 2, w_ok, v, NULL, small, small, 1e-5f,
                                                small),
                     LN_ERROR_SHAPE_MISMATCH);
    tu_assert_status(ctx, ln_layernorm_branches(ctx, 2, 2, w_ok, ln_dmat_of(small, 4), NULL, small,
                                                small, 1e-5f, small),
                     LN_ERROR_SHAPE_MISMATCH);
    tu_assert_status(ctx, ln_layernorm_branches(ctx, 2, 2, w_ok, v, NULL, small, small, 0.0f,
                                                small),
                     LN_ERROR_INVALID_ARGUMENT);
    ln_buffer_release(ctx, small);
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
    tcase_add_test(tc, layernorm_add_bias_matches_float64);
    tcase_add_test(tc, layernorm_branches_matches_float64);
    tcase_add_test(tc, unit_rows_matches_float64);
    tcase_add_test(tc, unit_rows_t_matches_float64);
    tcase_add_test(tc, norm_rejects_bad_input);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
