/*
 * linear.c: every GEMM of ln-cl goes through CLBlast from here (ln_gemm,
 * ln_gemm_batched), and the Linear op y = epilogue(x W^T) whose epilogues
 * (bias, bias + GELU, bias + residual; bias on every branch's block of a
 * layer at once) are ours, from cl/linear.cl.
 *
 * The model keeps its weights transposed, W^T stored [in, out]
 * (ln_linear_wt): a row-major C = A B with B stored that way is the one
 * layout CLBlast's 2-D register-tiling Xgemm kernel (GEMMK 1) reads as it
 * is, with no transpose or copy pass over A, B or C when the sizes are
 * tile multiples; with W [out, in] (C = A W^T) CLBlast transposes all
 * three. On the 2-core PoCL machine that took the model's GEMMs from
 * 40-55 to 75-105 GFLOP/s, and a 64x1152x384 one from 4.2 to 0.7-1.8 ms
 * (tune/tune_gemm.c has the sets). Its GEMMK 0 kernel still skips the
 * copy of B this way, and ln_gemm then calls CLBlast column-major, which
 * also skips the copy of C (see ln_gemm_col_major).
 */
#include "internal.h"

#include <clblast_c.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ln_status clblast_failed(ln_context *ctx, CLBlastStatusCode code, const char *what,
                                size_t m, size_t n, size_t k)
{
    if (code < 0 && code >= -72)
        return ln_fail(ctx, (ln_status)code, "%s: CLBlast GEMM %zu x %zu x %zu failed: %s", what,
                       m, n, k, ln_cl_error_name(code));
    return ln_fail(ctx, LN_ERROR_CLBLAST, "%s: CLBlast GEMM %zu x %zu x %zu failed with CLBlast status %d",
                   what, m, n, k, (int)code);
}

/* Row-major C = op(A) op(B) and column-major C^T = op(B)^T op(A)^T are one
 * product on the same memory (op flags and leading dimensions unchanged),
 * but CLBlast's Xgemm kernel copies different matrices for each: with its
 * GEMMK 0 kernel (CLBlast's defaults on most devices, PoCL and NVIDIA
 * included) a row-major call transposes A and C through temporary
 * buffers, the column-major one only B's side (here A); with GEMMK 1 (the
 * sets ln-tune keeps on the PoCL machine) the row-major call copies
 * nothing and the column-major one all three. Every matrix that is not a
 * multiple of the tiles is padded either way. CLBlast says what it would
 * copy, as the size of its temporary buffer for the call: the smaller
 * wins, row-major on a tie (a direct-kernel GEMM copies nothing either
 * way). Asking costs about 3 us (two calls), so the answer is kept per
 * call shape until the GEMM parameters change. On the 2-core PoCL machine
 * with CLBlast's own parameters, 2048x1536x384: 15.7 M floats of
 * temporaries row-major, 3.1 M column-major; 84-87 ms against 93-109. */
bool ln_gemm_col_major(ln_context *ctx, bool trans_a, bool trans_b, size_t m, size_t n, size_t k,
                       ln_dmat a, ln_dmat b, ln_dmat c)
{
    if (ctx->gemm_layout != LN_GEMM_LAYOUT_AUTO)
        return ctx->gemm_layout == LN_GEMM_LAYOUT_COL_MAJOR;
    const size_t key[10] = {(size_t)trans_a * 2 + (size_t)trans_b, m, n, k, a.offset, a.ld,
                            b.offset, b.ld, c.offset, c.ld};
    const unsigned long generation = ln_clblast_override_generation();
    const int slots = (int)(sizeof(ctx->gemm_layouts) / sizeof(ctx->gemm_layouts[0]));
    for (int i = 0; i < slots; i++)
        if (ctx->gemm_layouts[i].used && ctx->gemm_layouts[i].generation == generation &&
            memcmp(ctx->gemm_layouts[i].key, key, sizeof(key)) == 0)
            return ctx->gemm_layouts[i].col_major;
    cl_command_queue q = ctx->queue;
    const CLBlastTranspose ta = trans_a ? CLBlastTransposeYes : CLBlastTransposeNo,
                           tb = trans_b ? CLBlastTransposeYes : CLBlastTransposeNo;
    size_t row_floats = 0, col_floats = 0;
    /* A call CLBlast would refuse keeps row-major, and the GEMM says why. */
    const bool col_major =
        CLBlastSGemmTempBufferSize(CLBlastLayoutRowMajor, ta, tb, m, n, k, a.offset, a.ld,
                                   b.offset, b.ld, c.offset, c.ld, &q,
                                   &row_floats) == CLBlastSuccess &&
        CLBlastSGemmTempBufferSize(CLBlastLayoutColMajor, tb, ta, n, m, k, b.offset, b.ld,
                                   a.offset, a.ld, c.offset, c.ld, &q,
                                   &col_floats) == CLBlastSuccess &&
        col_floats < row_floats;
    const int i = ctx->gemm_layout_next;
    ctx->gemm_layout_next = (i + 1) % slots;
    memcpy(ctx->gemm_layouts[i].key, key, sizeof(key));
    ctx->gemm_layouts[i].generation = generation;
    ctx->gemm_layouts[i].used = true;
    ctx->gemm_layouts[i].col_major = col_major;
    return col_major;
}

ln_status ln_gemm(ln_context *ctx, bool trans_a, bool trans_b, size_t m, size_t n, size_t k,
                  float alpha, ln_dmat a, ln_dmat b, float beta, ln_dmat c, const char *what)
{
    /* CLBlast's copy, pad and GEMM kernels can put C's rows along a grid
     * dimension at as few as 8 a work-group, past the 65535 work-groups an
     * NVIDIA grid takes there (src/internal.h) beyond 2^19 rows: taller
     * GEMMs run as several of at most gemm_rows rows each. */
    const size_t most = ctx->gemm_rows ? ctx->gemm_rows : LN_GEMM_ROWS;
    if (m > most) {
        for (size_t m0 = 0; m0 < m; m0 += most) {
            const ln_dmat as = {a.mem, a.offset + (trans_a ? m0 : m0 * a.ld), a.ld},
                          cs = {c.mem, c.offset + m0 * c.ld, c.ld};
            ln_status st = ln_gemm(ctx, trans_a, trans_b, m - m0 < most ? m - m0 : most, n, k,
                                   alpha, as, b, beta, cs, what);
            if (st)
                return st;
        }
        return LN_SUCCESS;
    }
    cl_command_queue q = ctx->queue;
    const bool col_major = ln_gemm_col_major(ctx, trans_a, trans_b, m, n, k, a, b, c);
    const CLBlastTranspose ta = trans_a ? CLBlastTransposeYes : CLBlastTransposeNo,
                           tb = trans_b ? CLBlastTransposeYes : CLBlastTransposeNo;
    cl_event start = ln_profile_begin(ctx), last = NULL; /* NULL unless profiled */
    CLBlastStatusCode code =
        col_major ? CLBlastSgemm(CLBlastLayoutColMajor, tb, ta, n, m, k, alpha, b.mem, b.offset,
                                 b.ld, a.mem, a.offset, a.ld, beta, c.mem, c.offset, c.ld, &q,
                                 start ? &last : NULL)
                  : CLBlastSgemm(CLBlastLayoutRowMajor, ta, tb, m, n, k, alpha, a.mem, a.offset,
                                 a.ld, b.mem, b.offset, b.ld, beta, c.mem, c.offset, c.ld, &q,
                                 start ? &last : NULL);
    if (start)
        ln_profile_end(ctx, start, code == CLBlastSuccess ? last : NULL, "gemm", what, m, n, k, 1);
    return code == CLBlastSuccess ? LN_SUCCESS : clblast_failed(ctx, code, what, m, n, k);
}

ln_status ln_gemm_batched(ln_context *ctx, bool trans_a, bool trans_b, size_t m, size_t n,
                          size_t k, float alpha, ln_dmat a, size_t stride_a, ln_dmat b,
                          size_t stride_b, float beta, ln_dmat c, size_t stride_c, size_t batch,
                          const char *what)
{
    if (batch == 1)
        return ln_gemm(ctx, trans_a, trans_b, m, n, k, alpha, a, b, beta, c, what);
    /* CLBlast's batched kernels put the batch along dimension 2, where an
     * NVIDIA grid takes at most 65535 work-groups (src/internal.h): more
     * run as several calls. */
    const size_t most = ctx->max_groups_yz ? ctx->max_groups_yz : LN_MAX_GROUPS_YZ;
    if (batch > most) {
        for (size_t b0 = 0; b0 < batch; b0 += most) {
            const ln_dmat as = {a.mem, a.offset + b0 * stride_a, a.ld},
                          bs = {b.mem, b.offset + b0 * stride_b, b.ld},
                          cs = {c.mem, c.offset + b0 * stride_c, c.ld};
            ln_status st = ln_gemm_batched(ctx, trans_a, trans_b, m, n, k, alpha, as, stride_a,
                                           bs, stride_b, beta, cs, stride_c,
                                           batch - b0 < most ? batch - b0 : most, what);
            if (st)
                return st;
        }
        return LN_SUCCESS;
    }
    cl_command_queue q = ctx->queue;
    /* The batched routine copies by the same rules as one GEMM of the
     * shape, offsets aside (it pads and transposes whole strided batches). */
    const bool col_major = ln_gemm_col_major(ctx, trans_a, trans_b, m, n, k, (ln_dmat){0, 0, a.ld},
                                             (ln_dmat){0, 0, b.ld}, (ln_dmat){0, 0, c.ld});
    const CLBlastTranspose ta = trans_a ? CLBlastTransposeYes : CLBlastTransposeNo,
                           tb = trans_b ? CLBlastTransposeYes : CLBlastTransposeNo;
    cl_event start = ln_profile_begin(ctx), last = NULL; /* NULL unless profiled */
    CLBlastStatusCode code =
        col_major ? CLBlastSgemmStridedBatched(CLBlastLayoutColMajor, tb, ta, n, m, k, alpha,
                                               b.mem, b.offset, b.ld, stride_b, a.mem, a.offset,
                                               a.ld, stride_a, beta, c.mem, c.offset, c.ld,
                                               stride_c, batch, &q, start ? &last : NULL)
                  : CLBlastSgemmStridedBatched(CLBlastLayoutRowMajor, ta, tb, m, n, k, alpha,
                                               a.mem, a.offset, a.ld, stride_a, b.mem, b.offset,
                                               b.ld, stride_b, beta, c.mem, c.offset, c.ld,
                                               stride_c, batch, &q, start ? &last : NULL);
    if (start)
        ln_profile_end(ctx, start, code == CLBlastSuccess ? last : NULL, "gemm", what, m, n, k,
                       batch);
    return code == CLBlastSuccess ? LN_SUCCESS : clblast_failed(ctx, code, what, m, n, k);
}

static bool same_view(ln_dmat a, ln_dmat b)
{
    return a.mem == b.mem && a.offset == b.offset && a.ld == b.ld;
}

static ln_status linear(ln_context *ctx, const char *op, size_t rows, size_t in, size_t out,
                        ln_dmat x, ln_dmat w, bool w_transposed, cl_mem bias, size_t bias_offset,
                        ln_epilogue epilogue, ln_dmat residual, ln_dmat y)
{
    LN_CHECK_CTX(ctx);
    if (rows == 0 || in == 0 || out == 0)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT,
                       "%s: rows (%zu), in (%zu) and out (%zu) must be > 0", op, rows, in, out);
    if (epilogue < LN_EPILOGUE_NONE || epilogue > LN_EPILOGUE_BIAS_RESIDUAL)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "%s: unknown epilogue %d", op, (int)epilogue);
    ln_status st;
    if ((st = ln_check_view(ctx, op, "x", x, rows, in)) ||
        (st = w_transposed ? ln_check_view(ctx, op, "w^T", w, in, out)
                           : ln_check_view(ctx, op, "w", w, out, in)) ||
        (st = ln_check_view(ctx, op, "y", y, rows, out)))
        return st;
    if (epilogue != LN_EPILOGUE_NONE && (st = ln_check_mem(ctx, op, "bias", bias, bias_offset, out)))
        return st;
    if (epilogue == LN_EPILOGUE_BIAS_RESIDUAL &&
        (st = ln_check_view(ctx, op, "residual", residual, rows, out)))
        return st;
    if (y.offset + rows * y.ld > UINT_MAX || residual.offset + rows * residual.ld > UINT_MAX)
        return ln_fail(ctx, LN_ERROR_UNSUPPORTED, "%s: %zu x %zu output exceeds 2^32 elements", op,
                       rows, out);

    /* A residual that is y itself rides on the GEMM's beta = 1 for free;
     * any other residual is added by the epilogue kernel. */
    bool residual_in_place = epilogue == LN_EPILOGUE_BIAS_RESIDUAL && same_view(residual, y);
    if ((st = ln_gemm(ctx, false, !w_transposed, rows, out, in, 1.0f, x, w,
                      residual_in_place ? 1.0f : 0.0f, y, op)))
        return st;
    return ln_epilogue_apply(ctx, op, rows, out, y, bias, bias_offset, epilogue,
                             residual_in_place ? (ln_dmat){0} : residual);
}

ln_status ln_epilogue_apply(ln_context *ctx, const char *op, size_t rows, size_t cols, ln_dmat y,
                            cl_mem bias, size_t bias_offset, ln_epilogue epilogue,
                            ln_dmat residual)
{
    if (epilogue == LN_EPILOGUE_NONE)
        return LN_SUCCESS;
    bool with_residual = epilogue == LN_EPILOGUE_BIAS_RESIDUAL && residual.mem;
    const char *kernel_name = epilogue == LN_EPILOGUE_BIAS_GELU ? "add_bias_gelu"
                              : with_residual                   ? "add_bias_residual"
                                                                : "add_bias";
    /* The widest vector up to the device's that divides the columns: views
     * need no alignment (cl/linear.cl), only whole vectors per row. */
    size_t vec = ctx->params.vec_elementwise;
    while (vec > 1 && cols % vec != 0)
        vec /= 2;
    char options[32];
    snprintf(options, sizeof(options), "-DEPI_VEC=%zu", vec);
    cl_kernel k;
    ln_status st;
    if ((st = ln_kernel_get(ctx, "linear", options, kernel_name, &k)))
        return st;
    cl_uint r = (cl_uint)rows, c = (cl_uint)cols, yo = (cl_uint)y.offset, yl = (cl_uint)y.ld,
            bo = (cl_uint)bias_offset, ro = (cl_uint)residual.offset, rl = (cl_uint)residual.ld;
    if (with_residual)
        st = ln_set_args(ctx, k, op, LN_ARG(r), LN_ARG(c), LN_ARG(y.mem), LN_ARG(yo), LN_ARG(yl),
                         LN_ARG(bias), LN_ARG(bo), LN_ARG(residual.mem), LN_ARG(ro), LN_ARG(rl),
                         LN_ARGS_END);
    else
        st = ln_set_args(ctx, k, op, LN_ARG(r), LN_ARG(c), LN_ARG(y.mem), LN_ARG(yo), LN_ARG(yl),
                         LN_ARG(bias), LN_ARG(bo), LN_ARGS_END);
    if (st)
        return st;
    size_t wg = ctx->params.wg_elementwise;
    size_t groups = cols / vec;
    size_t local[2] = {wg < 64 ? wg : 64, wg > 64 ? wg / 64 : 1};
    if (local[0] > groups) /* keep narrow views from padding to 64 idle lanes */
        local[0] = groups;
    size_t global[2] = {groups, rows};
    return ln_enqueue(ctx, k, 2, global, local, op);
}

ln_status ln_add_bias_blocks(ln_context *ctx, size_t rows, size_t count, const size_t *width,
                             size_t per, bool gelu, cl_mem y, cl_mem bias)
{
    LN_CHECK_CTX(ctx);
    const char *op = "ln_add_bias_blocks";
    cl_uint16 widths;
    size_t sum = 0;
    ln_status st;
    if ((st = ln_branch_widths(ctx, op, count, width, &widths, &sum)))
        return st;
    if (rows == 0 || per == 0)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "%s: rows (%zu) and per (%zu) must be > 0",
                       op, rows, per);
    if ((double)rows * (double)per * (double)sum > (double)UINT_MAX)
        return ln_fail(ctx, LN_ERROR_UNSUPPORTED, "%s: %zu x %zu x %zu floats exceed 32-bit indices",
                       op, rows, per, sum);
    const size_t total = rows * per * sum;
    if ((st = ln_check_mem(ctx, op, "y", y, 0, total)) ||
        (st = ln_check_mem(ctx, op, "bias", bias, 0, per * sum)))
        return st;
    /* The widest vector up to the device's that divides every block's
     * columns, as ln_epilogue_apply. */
    size_t vec = ctx->params.vec_elementwise, widest = 0;
    for (size_t i = 0; i < count; i++) {
        while (vec > 1 && per * width[i] % vec != 0)
            vec /= 2;
        if (per * width[i] > widest)
            widest = per * width[i];
    }
    char options[32];
    snprintf(options, sizeof(options), "-DEPI_VEC=%zu", vec);
    cl_kernel k;
    if ((st = ln_kernel_get(ctx, "linear", options, "add_bias_blocks", &k)))
        return st;
    cl_uint r = (cl_uint)rows, p = (cl_uint)per, g = gelu;
    if ((st = ln_set_args(ctx, k, op, LN_ARG(r), LN_ARG(p), LN_ARG(widths), LN_ARG(g), LN_ARG(y),
                          LN_ARG(bias), LN_ARGS_END)))
        return st;
    /* Dimension 0's local size divides the widest block's column groups
     * (72 at the default widths, 16 columns each), so that only the
     * narrower blocks leave work-items idle. */
    const size_t wg = ctx->params.wg_elementwise, groups = widest / vec;
    size_t local[3] = {wg < 64 ? wg : 64, wg > 64 ? wg / 64 : 1, 1};
    while (groups % local[0] != 0)
        local[0]--;
    size_t global[3] = {groups, rows, count};
    return ln_enqueue(ctx, k, 3, global, local, op);
}

ln_status ln_linear(ln_context *ctx, size_t rows, size_t in, size_t out, ln_dmat x, ln_dmat w,
                    cl_mem bias, size_t bias_offset, ln_epilogue epilogue, ln_dmat residual,
                    ln_dmat y)
{
    return linear(ctx, "ln_linear", rows, in, out, x, w, false, bias, bias_offset, epilogue,
                  residual, y);
}

ln_status ln_linear_wt(ln_context *ctx, size_t rows, size_t in, size_t out, ln_dmat x,
                       ln_dmat wt, cl_mem bias, size_t bias_offset, ln_epilogue epilogue,
                       ln_dmat residual, ln_dmat y)
{
    return linear(ctx, "ln_linear", rows, in, out, x, wt, true, bias, bias_offset, epilogue,
                  residual, y);
}

ln_status ln_linear_host(ln_context *ctx, size_t rows, size_t in, size_t out, const float *x,
                         const float *w, const float *bias, ln_epilogue epilogue,
                         const float *residual, float *y)
{
    LN_CHECK_CTX(ctx);
    if (!x || !w || !y || (epilogue != LN_EPILOGUE_NONE && !bias) ||
        (epilogue == LN_EPILOGUE_BIAS_RESIDUAL && !residual))
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT,
                       "ln_linear_host: a host pointer the epilogue needs is NULL");
    if (rows == 0 || in == 0 || out == 0)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT,
                       "ln_linear_host: rows (%zu), in (%zu) and out (%zu) must be > 0", rows, in,
                       out);
    cl_mem dx = NULL, dw = NULL, db = NULL, dr = NULL, dy = NULL;
    const char *op = "ln_linear_host";
    ln_status st = ln_buffer_from_host(ctx, x, rows * in * 4, &dx, op);
    if (!st)
        st = ln_buffer_from_host(ctx, w, out * in * 4, &dw, op);
    if (!st && bias)
        st = ln_buffer_from_host(ctx, bias, out * 4, &db, op);
    if (!st && residual)
        st = ln_buffer_from_host(ctx, residual, rows * out * 4, &dr, op);
    if (!st)
        st = ln_buffer_create(ctx, rows * out * 4, &dy, op);
    if (!st)
        st = ln_linear(ctx, rows, in, out, ln_dmat_of(dx, in), ln_dmat_of(dw, in), db, 0, epilogue,
                       ln_dmat_of(dr, out), ln_dmat_of(dy, out));
    if (!st)
        st = ln_buffer_to_host(ctx, dy, y, rows * out * 4);
    ln_buffer_release(ctx, dx);
    ln_buffer_release(ctx, dw);
    ln_buffer_release(ctx, db);
    ln_buffer_release(ctx, dr);
    ln_buffer_release(ctx, dy);
    return st;
}
