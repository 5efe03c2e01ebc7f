/*
 * norm.c: row normalisations launched from cl/norm.cl: LayerNorm (biased
 * variance) and unit rows, on device views and on host arrays.
 */
#include "internal.h"

#include <limits.h>

/* Launches one work-group per row, or on CPUs one work-item per row of a
 * LayerNorm; indices are 32-bit in the kernels. */
static ln_status launch_rows(ln_context *ctx, const char *kernel_name, const char *op,
                             size_t rows, size_t width, ln_dmat x, cl_mem gamma, cl_mem beta,
                             float eps, ln_dmat y)
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
    if (x.offset + rows * x.ld > UINT_MAX || y.offset + rows * y.ld > UINT_MAX)
        return ln_fail(ctx, LN_ERROR_UNSUPPORTED, "%s: %zu x %zu exceeds 2^32 elements", op, rows,
                       width);
    cl_kernel k;
    cl_uint r = (cl_uint)rows, w = (cl_uint)width;
    cl_uint xo = (cl_uint)x.offset, xl = (cl_uint)x.ld, yo = (cl_uint)y.offset, yl = (cl_uint)y.ld;
    /* Where the epilogues take float16s (CPUs, params.c), LayerNorm takes
     * one row per work-item in float16s: no barriers, which PoCL runs as
     * loop splits. B = 8, n = 256 on PoCL (2-core AMD EPYC), the forward's
     * 9 LayerNorms: 3.7-3.9 ms with the work-group kernel at its tuned
     * size, 1.9-2.0 with this one (one row per work-group; a first
     * version ran the same at 4 rows per work-group, worse at 16). */
    if (gamma && ctx->params.vec_elementwise >= 16 && width % 16 == 0) {
        if ((st = ln_kernel_get(ctx, "norm", "", "layernorm_rows16", &k)) ||
            (st = ln_set_args(ctx, k, op, LN_ARG(r), LN_ARG(w), LN_ARG(x.mem), LN_ARG(xo),
                              LN_ARG(xl), LN_ARG(gamma), LN_ARG(beta), LN_ARG(eps),
                              LN_ARG(y.mem), LN_ARG(yo), LN_ARG(yl), LN_ARGS_END)))
            return st;
        size_t one = 1;
        return ln_enqueue(ctx, k, 1, &rows, &one, op);
    }
    if ((st = ln_kernel_get(ctx, "norm", "", kernel_name, &k)))
        return st;
    size_t wg = ln_kernel_wg_size(ctx, k, ctx->params.wg_layernorm, true);
    if (gamma)
        st = ln_set_args(ctx, k, op, LN_ARG(r), LN_ARG(w), LN_ARG(x.mem), LN_ARG(xo), LN_ARG(xl),
                         LN_ARG(gamma), LN_ARG(beta), LN_ARG(eps), LN_ARG(y.mem), LN_ARG(yo),
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

ln_status ln_layernorm(ln_context *ctx, size_t rows, size_t width, ln_dmat x, cl_mem gamma,
                       cl_mem beta, float eps, ln_dmat y)
{
    LN_CHECK_CTX(ctx);
    if (!gamma || !beta)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "ln_layernorm: gamma or beta is NULL");
    if (!(eps > 0.0f))
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "ln_layernorm: eps must be > 0 (got %g)",
                       (double)eps);
    return launch_rows(ctx, "layernorm", "ln_layernorm", rows, width, x, gamma, beta, eps, y);
}

ln_status ln_unit_rows(ln_context *ctx, size_t rows, size_t width, ln_dmat x, ln_dmat y)
{
    LN_CHECK_CTX(ctx);
    return launch_rows(ctx, "unit_rows", "ln_unit_rows", rows, width, x, NULL, NULL, 0.0f, y);
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
