/*
 * norm.c: row normalisations launched from cl/norm.cl: LayerNorm (biased
 * variance; optionally adding a bias to its input first, and for every
 * branch of a layer in one launch) and unit rows, on device views and on
 * host arrays; on CPUs, unit rows that also write each sequence's u^T for
 * S's GEMM.
 */
#include "internal.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

/* Where the epilogues take float16s (CPUs, params.c), the row kernels take
 * one row per work-item in float16s: no barriers, which PoCL runs as loop
 * splits. On PoCL (2-core AMD EPYC): B = 8, n = 256, the forward's 9
 * LayerNorms took 3.7-3.9 ms with the work-group kernel at its tuned size,
 * 1.9-2.0 with this one (one row per work-group; a first version ran the
 * same at 4 rows per work-group, worse at 16); unit rows of 8192 x 384
 * 3.6-4.1 ms with the work-group kernel at its default size, 0.57-0.74. */
static bool row_per_item(const ln_context *ctx, size_t width)
{
    return ctx->params.vec_elementwise >= 16 && width % 16 == 0;
}

/* Launches one work-group per row, or (row_per_item) one work-item per
 * row; indices are 32-bit in the kernels. */
static ln_status launch_rows(ln_context *ctx, const char *kernel_name, const char *op,
                             size_t rows, size_t width, ln_dmat x, cl_mem bias,
                             size_t bias_offset, cl_mem gamma, cl_mem beta, float eps, ln_dmat y)
{
    if (rows == 0 || width == 0)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "%s: rows (%zu) and width (%zu) must be > 0",
                       op, rows, width);
    ln_status st;
    if ((st = ln_check_view(ctx, op, "x", x, rows, width)) ||
        (st = ln_check_view(ctx, op, "y", y, rows, width)))
        return st;
    if (gamma && ((st = ln_check_mem(ctx, op, "gamma", gamma, 0, width)) ||
                  (st = ln_check_mem(ctx, op, "beta", beta, 0, width))))
        return st;
    if (bias && (st = ln_check_mem(ctx, op, "bias", bias, bias_offset, width)))
        return st;
    if (bias_offset > UINT_MAX)
        return ln_fail(ctx, LN_ERROR_UNSUPPORTED, "%s: bias offset %zu exceeds 2^32", op,
                       bias_offset);
    if (x.offset + rows * x.ld > UINT_MAX || y.offset + rows * y.ld > UINT_MAX)
        return ln_fail(ctx, LN_ERROR_UNSUPPORTED, "%s: %zu x %zu exceeds 2^32 elements", op, rows,
                       width);
    cl_kernel k;
    cl_uint r = (cl_uint)rows, w = (cl_uint)width;
    cl_uint xo = (cl_uint)x.offset, xl = (cl_uint)x.ld, yo = (cl_uint)y.offset, yl = (cl_uint)y.ld;
    /* Without a bias the kernel never reads its bias argument: gamma
     * stands in, so that no NULL buffer goes to the driver. */
    cl_uint add_bias = bias != NULL, bo = (cl_uint)bias_offset;
    cl_mem bias_arg = bias ? bias : gamma;
    if (row_per_item(ctx, width)) {
        if ((st = ln_kernel_get(ctx, "norm", "", gamma ? "layernorm_rows16" : "unit_rows16", &k)))
            return st;
        if (gamma)
            st = ln_set_args(ctx, k, op, LN_ARG(r), LN_ARG(w), LN_ARG(x.mem), LN_ARG(xo),
                             LN_ARG(xl), LN_ARG(add_bias), LN_ARG(bias_arg), LN_ARG(bo),
                             LN_ARG(gamma), LN_ARG(beta), LN_ARG(eps), LN_ARG(y.mem),
                             LN_ARG(yo), LN_ARG(yl), LN_ARGS_END);
        else
            st = ln_set_args(ctx, k, op, LN_ARG(r), LN_ARG(w), LN_ARG(x.mem), LN_ARG(xo),
                             LN_ARG(xl), LN_ARG(y.mem), LN_ARG(yo), LN_ARG(yl), LN_ARGS_END);
        if (st)
            return st;
        size_t one = 1;
        return ln_enqueue(ctx, k, 1, &rows, &one, op);
    }
    if ((st = ln_kernel_get(ctx, "norm", "", kernel_name, &k)))
        return st;
    size_t wg = ln_kernel_wg_size(ctx, k, ctx->params.wg_layernorm, true);
    if (gamma)
        st = ln_set_args(ctx, k, op, LN_ARG(r), LN_ARG(w), LN_ARG(x.mem), LN_ARG(xo), LN_ARG(xl),
                         LN_ARG(add_bias), LN_ARG(bias_arg), LN_ARG(bo), LN_ARG(gamma),
                         LN_ARG(beta), LN_ARG(eps), LN_ARG(y.mem), LN_ARG(yo),
                         LN_ARG(yl), LN_LOCAL(wg * sizeof(float)), LN_ARGS_END);
    else
        st = ln_set_args(ctx, k, op, LN_ARG(r), LN_ARG(w), LN_ARG(x.mem), LN_ARG(xo), LN_ARG(xl),
                         LN_ARG(y.mem), LN_ARG(yo), LN_ARG(yl), LN_LOCAL(wg * sizeof(float)),
                         LN_ARGS_END);
    if (st)
        return st;
    size_t global = rows * wg;
    return ln_enqueue(ctx, k, 1, &global, &wg, op);
}

static ln_status layernorm(ln_context *ctx, const char *op, size_t rows, size_t width,
                           ln_dmat x, cl_mem bias, size_t bias_offset, cl_mem gamma, cl_mem beta,
                           float eps, ln_dmat y)
{
    LN_CHECK_CTX(ctx);
    if (!gamma || !beta)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "%s: gamma or beta is NULL", op);
    if (!(eps > 0.0f))
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "%s: eps must be > 0 (got %g)", op,
                       (double)eps);
    return launch_rows(ctx, "layernorm", op, rows, width, x, bias, bias_offset, gamma, beta, eps,
                       y);
}

ln_status ln_layernorm(ln_context *ctx, size_t rows, size_t width, ln_dmat x, cl_mem gamma,
                       cl_mem beta, float eps, ln_dmat y)
{
    return layernorm(ctx, "ln_layernorm", rows, width, x, NULL, 0, gamma, beta, eps, y);
}

ln_status ln_layernorm_add_bias(ln_context *ctx, size_t rows, size_t width, ln_dmat x,
                                cl_mem bias, size_t bias_offset, cl_mem gamma, cl_mem beta,
                                float eps, ln_dmat y)
{
    if (ctx && !bias)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "ln_layernorm_add_bias: bias is NULL");
    return layernorm(ctx, "ln_layernorm_add_bias", rows, width, x, bias, bias_offset, gamma,
                     beta, eps, y);
}

/* Sum of the widths, after checking that there are 1 to 16 of them (the
 * kernels take them as one uint16), all > 0. */
ln_status ln_branch_widths(ln_context *ctx, const char *op, size_t count, const size_t *width,
                           cl_uint16 *packed, size_t *sum)
{
    if (count == 0 || count > 16 || !width)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "%s: %zu branches; 1 to 16 are supported",
                       op, count);
    memset(packed, 0, sizeof(*packed));
    *sum = 0;
    for (size_t k = 0; k < count; k++) {
        if (width[k] == 0 || width[k] > UINT_MAX)
            return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "%s: branch %zu's width is %zu", op, k,
                           width[k]);
        packed->s[k] = (cl_uint)width[k];
        *sum += width[k];
    }
    return LN_SUCCESS;
}

ln_status ln_layernorm_branches(ln_context *ctx, size_t rows, size_t count, const size_t *width,
                                ln_dmat x, cl_mem bias, cl_mem gamma, cl_mem beta, float eps,
                                cl_mem y)
{
    LN_CHECK_CTX(ctx);
    const char *op = "ln_layernorm_branches";
    cl_uint16 widths;
    size_t sum = 0;
    ln_status st;
    if ((st = ln_branch_widths(ctx, op, count, width, &widths, &sum)))
        return st;
    if (rows == 0 || !gamma || !beta || !(eps > 0.0f))
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT,
                       "%s: needs rows > 0, gamma, beta and eps > 0 (rows %zu, eps %g)", op, rows,
                       (double)eps);
    if ((st = ln_check_view(ctx, op, "x", x, rows, sum)) ||
        (st = ln_check_mem(ctx, op, "y", y, 0, rows * sum)) ||
        (st = ln_check_mem(ctx, op, "gamma", gamma, 0, sum)) ||
        (st = ln_check_mem(ctx, op, "beta", beta, 0, sum)) ||
        (bias && (st = ln_check_mem(ctx, op, "bias", bias, 0, sum))))
        return st;
    if (x.offset + rows * x.ld > UINT_MAX || rows * sum > UINT_MAX)
        return ln_fail(ctx, LN_ERROR_UNSUPPORTED, "%s: %zu x %zu exceeds 2^32 elements", op, rows,
                       sum);
    bool per_item = true;
    for (size_t i = 0; i < count; i++)
        per_item = per_item && row_per_item(ctx, width[i]);
    cl_kernel k;
    if ((st = ln_kernel_get(ctx, "norm", "",
                            per_item ? "layernorm_branches_rows16" : "layernorm_branches", &k)))
        return st;
    const size_t wg = per_item ? 1 : ln_kernel_wg_size(ctx, k, ctx->params.wg_layernorm, true);
    cl_uint r = (cl_uint)rows, xo = (cl_uint)x.offset, xl = (cl_uint)x.ld, add_bias = bias != NULL;
    cl_mem bias_arg = bias ? bias : gamma; /* never read without a bias */
    st = per_item ? ln_set_args(ctx, k, op, LN_ARG(r), LN_ARG(widths), LN_ARG(x.mem), LN_ARG(xo),
                                LN_ARG(xl), LN_ARG(add_bias), LN_ARG(bias_arg), LN_ARG(gamma),
                                LN_ARG(beta), LN_ARG(eps), LN_ARG(y), LN_ARGS_END)
                  : ln_set_args(ctx, k, op, LN_ARG(r), LN_ARG(widths), LN_ARG(x.mem), LN_ARG(xo),
                                LN_ARG(xl), LN_ARG(add_bias), LN_ARG(bias_arg), LN_ARG(gamma),
                                LN_ARG(beta), LN_ARG(eps), LN_ARG(y),
                                LN_LOCAL(wg * sizeof(float)), LN_ARGS_END);
    if (st)
        return st;
    size_t global[2] = {rows * wg, count}, local[2] = {wg, 1};
    return ln_enqueue(ctx, k, 2, global, local, op);
}

ln_status ln_unit_rows(ln_context *ctx, size_t rows, size_t width, ln_dmat x, ln_dmat y)
{
    LN_CHECK_CTX(ctx);
    return launch_rows(ctx, "unit_rows", "ln_unit_rows", rows, width, x, NULL, 0, NULL, NULL,
                       0.0f, y);
}

bool ln_unit_rows_t_supported(const ln_context *ctx, size_t width)
{
    return ctx && row_per_item(ctx, width);
}

ln_status ln_unit_rows_t(ln_context *ctx, size_t batch, size_t n, size_t width, cl_mem x,
                         cl_mem y, cl_mem yt)
{
    LN_CHECK_CTX(ctx);
    const char *op = "ln_unit_rows_t";
    if (!ln_unit_rows_t_supported(ctx, width))
        return ln_fail(ctx, LN_ERROR_UNSUPPORTED,
                       "%s: needs a device that takes rows one per work-item and a width that "
                       "is a multiple of 16 (got %zu)", op, width);
    if (batch == 0 || n == 0)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "%s: batch (%zu) and n (%zu) must be > 0",
                       op, batch, n);
    const size_t count = batch * n * width;
    if (count > UINT_MAX)
        return ln_fail(ctx, LN_ERROR_UNSUPPORTED, "%s: %zu x %zu exceeds 2^32 elements", op,
                       batch * n, width);
    if (x == y || x == yt || y == yt)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "%s: x, y and yt must be three buffers",
                       op);
    ln_status st;
    if ((st = ln_check_mem(ctx, op, "x", x, 0, count)) ||
        (st = ln_check_mem(ctx, op, "y", y, 0, count)) ||
        (st = ln_check_mem(ctx, op, "yt", yt, 0, count)))
        return st;
    cl_kernel k;
    cl_uint nn = (cl_uint)n, w = (cl_uint)width;
    /* Rows per work-item: u^T's column stores are that many floats long.
     * B = 8, n = 1024 on PoCL (2-core AMD EPYC): 16 rows 3.2-3.6 ms, 64
     * rows 2.2-2.8, 128 and 256 no better; the kernel without u^T takes
     * 1.3. Below n = 256, 16 rows keep both cores busy at B = 1. */
    const size_t per_item = n >= 256 ? 64 : 16;
    char options[32];
    snprintf(options, sizeof(options), "-DUT_ROWS=%zu", per_item);
    if ((st = ln_kernel_get(ctx, "norm", options, "unit_rows16_t", &k)) ||
        (st = ln_set_args(ctx, k, op, LN_ARG(nn), LN_ARG(w), LN_ARG(x), LN_ARG(y), LN_ARG(yt),
                          LN_ARGS_END)))
        return st;
    size_t global[2] = {(n + per_item - 1) / per_item, batch}, local[2] = {1, 1};
    return ln_enqueue(ctx, k, 2, global, local, op);
}

/* Host wrappers: copy in, run, copy out, release. */
static ln_status host_rows(ln_context *ctx, size_t rows, size_t width, const float *x,
                           bool layernorm, const float *gamma, const float *beta, float eps,
                           float *y, const char *op)
{
    LN_CHECK_CTX(ctx);
    if (!x || !y || (layernorm && (!gamma || !beta)))
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "%s: a host pointer is NULL", op);
    if (rows == 0 || width == 0)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "%s: rows (%zu) and width (%zu) must be > 0",
                       op, rows, width);
    size_t bytes = rows * width * sizeof(float);
    cl_mem dx = NULL, dy = NULL, dg = NULL, db = NULL;
    ln_status st = ln_buffer_from_host(ctx, x, bytes, &dx, op);
    if (!st)
        st = ln_buffer_create(ctx, bytes, &dy, op);
    if (!st && layernorm)
        st = ln_buffer_from_host(ctx, gamma, width * sizeof(float), &dg, op);
    if (!st && layernorm)
        st = ln_buffer_from_host(ctx, beta, width * sizeof(float), &db, op);
    if (!st)
        st = layernorm ? ln_layernorm(ctx, rows, width, ln_dmat_of(dx, width), dg, db, eps,
                                  ln_dmat_of(dy, width))
                   : ln_unit_rows(ctx, rows, width, ln_dmat_of(dx, width), ln_dmat_of(dy, width));
    if (!st)
        st = ln_buffer_to_host(ctx, dy, y, bytes);
    ln_buffer_release(ctx, dx);
    ln_buffer_release(ctx, dy);
    ln_buffer_release(ctx, dg);
    ln_buffer_release(ctx, db);
    return st;
}

ln_status ln_layernorm_host(ln_context *ctx, size_t rows, size_t width, const float *x,
                            const float *gamma, const float *beta, float eps, float *y)
{
    return host_rows(ctx, rows, width, x, true, gamma, beta, eps, y, "ln_layernorm_host");
}

ln_status ln_unit_rows_host(ln_context *ctx, size_t rows, size_t width, const float *x, float *y)
{
    return host_rows(ctx, rows, width, x, false, NULL, NULL, 0.0f, y, "ln_unit_rows_host");
}
