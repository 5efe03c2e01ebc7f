/*
 * positional.c: continuous positional encoding fused with the add to x:
 * out = x + W2 gelu(W1 p + b1) + b2, in three launches. cl/positional.cl
 * writes W1 p and, in the same launch, out = x + b2; b1 and GELU come from
 * the Linear epilogue (one GELU for all of ln-cl, and PoCL's builtin erf
 * made this layer 14x slower); the second layer is one CLBlast GEMM that
 * accumulates into out through its beta. The model keeps W2 transposed, as
 * it keeps every Linear weight (linear.c says why), and lends its
 * workspace for the hidden layer.
 */
#include "internal.h"

#include <limits.h>

/* w2 is W2 [d, hidden] or, when w2_transposed, W2^T [hidden, d]. The
 * hidden layer goes in scratch where that holds rows x hidden floats,
 * else in a buffer of its own for the call. */
static ln_status positional_add(ln_context *ctx, const char *op, size_t batch, size_t n,
                                size_t d, size_t hidden, cl_mem positions, cl_mem w1, cl_mem b1,
                                cl_mem w2, bool w2_transposed, cl_mem b2, cl_mem x, cl_mem out,
                                cl_mem scratch)
{
    LN_CHECK_CTX(ctx);
    if (batch == 0 || n == 0 || d == 0 || hidden == 0)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT,
                       "%s: batch (%zu), n (%zu), d (%zu) and hidden (%zu) must be > 0", op, batch,
                       n, d, hidden);
    size_t rows = batch * n;
    if (rows > UINT_MAX / (hidden > d ? hidden : d))
        return ln_fail(ctx, LN_ERROR_UNSUPPORTED, "%s: %zu rows exceed 2^32 elements", op, rows);
    ln_status st;
    if ((positions && (st = ln_check_mem(ctx, op, "positions", positions, 0, rows))) ||
        (st = ln_check_mem(ctx, op, "w1", w1, 0, hidden)) ||
        (st = ln_check_mem(ctx, op, "b1", b1, 0, hidden)) ||
        (st = ln_check_mem(ctx, op, "w2", w2, 0, d * hidden)) ||
        (st = ln_check_mem(ctx, op, "b2", b2, 0, d)) ||
        (st = ln_check_mem(ctx, op, "x", x, 0, rows * d)) ||
        (st = ln_check_mem(ctx, op, "out", out, 0, rows * d)))
        return st;

    cl_kernel k;
    if ((st = ln_kernel_get(ctx, "positional", "", "positional_hidden", &k)))
        return st;
    size_t scratch_bytes = 0;
    if (scratch && clGetMemObjectInfo(scratch, CL_MEM_SIZE, sizeof(scratch_bytes), &scratch_bytes,
                                      NULL) != CL_SUCCESS)
        scratch_bytes = 0;
    cl_mem g = scratch_bytes >= rows * hidden * sizeof(float) ? scratch : NULL;
    if (!g && (st = ln_buffer_create(ctx, rows * hidden * sizeof(float), &g, op)))
        return st;
    cl_uint r = (cl_uint)rows, nn = (cl_uint)n, h = (cl_uint)hidden, dd = (cl_uint)d;
    cl_int has_positions = positions != NULL;
    /* Without positions the kernel never reads that argument; any valid
     * buffer keeps strict runtimes (Oclgrind) content. */
    cl_mem pos_arg = positions ? positions : w1;
    st = ln_set_args(ctx, k, op, LN_ARG(r), LN_ARG(nn), LN_ARG(h), LN_ARG(dd),
                     LN_ARG(has_positions), LN_ARG(pos_arg), LN_ARG(w1), LN_ARG(g), LN_ARG(x),
                     LN_ARG(b2), LN_ARG(out), LN_ARGS_END);
    if (!st) {
        const size_t cols = hidden > d ? hidden : d, wg = ctx->params.wg_elementwise;
        size_t local[2] = {cols < wg ? cols : wg, 1};
        size_t global[2] = {cols, rows};
        st = ln_enqueue(ctx, k, 2, global, local, op);
    }
    if (!st)
        st = ln_epilogue_apply(ctx, op, rows, hidden, ln_dmat_of(g, hidden), b1, 0,
                               LN_EPILOGUE_BIAS_GELU, (ln_dmat){0});
    if (!st)
        st = ln_gemm(ctx, false, !w2_transposed, rows, d, hidden, 1.0f, ln_dmat_of(g, hidden),
                     ln_dmat_of(w2, w2_transposed ? d : hidden), 1.0f, ln_dmat_of(out, d), op);
    /* Released now, freed by OpenCL once the queued GEMM no longer uses it. */
    if (g != scratch)
        ln_buffer_release(ctx, g);
    return st;
}

ln_status ln_positional_add(ln_context *ctx, size_t batch, size_t n, size_t d, size_t hidden,
                            cl_mem positions, cl_mem w1, cl_mem b1, cl_mem w2, cl_mem b2,
                            cl_mem x, cl_mem out)
{
    return positional_add(ctx, "ln_positional_add", batch, n, d, hidden, positions, w1, b1, w2,
                          false, b2, x, out, NULL);
}

ln_status ln_positional_add_wt(ln_context *ctx, size_t batch, size_t n, size_t d, size_t hidden,
                               cl_mem positions, cl_mem w1, cl_mem b1, cl_mem w2t, cl_mem b2,
                               cl_mem x, cl_mem out, cl_mem scratch)
{
    return positional_add(ctx, "ln_positional_add", batch, n, d, hidden, positions, w1, b1, w2t,
                          true, b2, x, out, scratch);
}

ln_status ln_positional_add_host(ln_context *ctx, size_t batch, size_t n, size_t d,
                                 size_t hidden, const float *positions, const float *w1,
                                 const float *b1, const float *w2, const float *b2,
                                 const float *x, float *out)
{
    LN_CHECK_CTX(ctx);
    const char *op = "ln_positional_add_host";
    if (!w1 || !b1 || !w2 || !b2 || !x || !out)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "%s: a host pointer is NULL", op);
    if (batch == 0 || n == 0 || d == 0 || hidden == 0)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT,
                       "%s: batch (%zu), n (%zu), d (%zu) and hidden (%zu) must be > 0", op, batch,
                       n, d, hidden);
    size_t rows = batch * n;
    cl_mem dp = NULL, dw1 = NULL, db1 = NULL, dw2 = NULL, db2 = NULL, dx = NULL, dout = NULL;
    ln_status st = LN_SUCCESS;
    if (positions)
        st = ln_buffer_from_host(ctx, positions, rows * 4, &dp, op);
    if (!st)
        st = ln_buffer_from_host(ctx, w1, hidden * 4, &dw1, op);
    if (!st)
        st = ln_buffer_from_host(ctx, b1, hidden * 4, &db1, op);
    if (!st)
        st = ln_buffer_from_host(ctx, w2, d * hidden * 4, &dw2, op);
    if (!st)
        st = ln_buffer_from_host(ctx, b2, d * 4, &db2, op);
    if (!st)
        st = ln_buffer_from_host(ctx, x, rows * d * 4, &dx, op);
    if (!st)
        st = ln_buffer_create(ctx, rows * d * 4, &dout, op);
    if (!st)
        st = ln_positional_add(ctx, batch, n, d, hidden, dp, dw1, db1, dw2, db2, dx, dout);
    if (!st)
        st = ln_buffer_to_host(ctx, dout, out, rows * d * 4);
    cl_mem all[] = {dp, dw1, db1, dw2, db2, dx, dout};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        ln_buffer_release(ctx, all[i]);
    return st;
}
