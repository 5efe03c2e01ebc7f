/*
 * norm.cl: row reductions: LayerNorm and unit rows. One work-group per row;
 * the group's size is a power of two chosen by the host (params table),
 * scratch is local memory sized by the host. On CPUs both take one row
 * per work-item instead (layernorm_rows16, layernorm_branches_rows16,
 * unit_rows16; src/norm.c says why).
 *
 * The LayerNorms can first add a bias to x in place (add_bias != 0:
 * x += bias[bias_off ..], written back, then normalised): the bias of the
 * GEMM that made x, so that it costs no launch of its own (src/model.c).
 * Each work-item rewrites only the columns it reads, so no barrier is
 * needed between the write and the later passes.
 */

/* Tree reduction of one value per work-item; every item reaches every
 * barrier, and all items get the result. */
static float group_sum(float v, __local float *scratch)
{
    const size_t lid = get_local_id(0), wg = get_local_size(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (size_t s = wg / 2; s > 0; s >>= 1) {
        if (lid < s)
            scratch[lid] += scratch[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

/* LayerNorm of one row (xr, width floats) by one work-group, into yr;
 * bias, gamma and beta point at the row's first column. Every work-item
 * reaches every barrier; only `live` groups touch memory. */
static void layernorm_row(const bool live, const uint width, __global float *xr,
                          const uint add_bias, __global const float *bias,
                          __global const float *gamma, __global const float *beta,
                          const float eps, __global float *yr, __local float *scratch)
{
    const size_t lid = get_local_id(0), wg = get_local_size(0);
    float s = 0.0f;
    if (live)
        for (size_t c = lid; c < width; c += wg) {
            float v = xr[c];
            if (add_bias) {
                v += bias[c];
                xr[c] = v;
            }
            s += v;
        }
    const float mean = group_sum(s, scratch) / (float)width;
    float q = 0.0f;
    if (live)
        for (size_t c = lid; c < width; c += wg) {
            float d = xr[c] - mean;
            q += d * d;
        }
    const float var = group_sum(q, scratch) / (float)width;
    const float inv = rsqrt(var + eps);
    if (live)
        for (size_t c = lid; c < width; c += wg)
            yr[c] = (xr[c] - mean) * inv * gamma[c] + beta[c];
}

__kernel void layernorm(const uint rows, const uint width,
                        __global float *x, const uint x_off, const uint ldx,
                        const uint add_bias, __global const float *bias, const uint bias_off,
                        __global const float *gamma, __global const float *beta,
                        const float eps,
                        __global float *y, const uint y_off, const uint ldy,
                        __local float *scratch)
{
    const size_t row = get_group_id(0);
    /* rows is the true count; the host launches exactly `rows` groups, but
     * keep the guard uniform per group so barriers stay legal. */
    const bool live = row < rows;
    layernorm_row(live, width, x + x_off + (live ? row : 0) * ldx, add_bias, bias + bias_off,
                  gamma, beta, eps, y + y_off + (live ? row : 0) * ldy, scratch);
}

/* Branch k's first column (the sum of the widths before it) and, in
 * *width, its width, from the widths passed as one vector. */
static uint branch_column(const uint16 widths, const uint k, uint *width)
{
    uint width_of[16];
    vstore16(widths, 0, width_of);
    uint column = 0;
    for (uint i = 0; i < k; i++)
        column += width_of[i];
    *width = width_of[k];
    return column;
}

/* Every branch's LayerNorm of a layer in one launch, as src/model.c lays
 * the branches out where one launch runs all their attention: branch k's
 * input is columns column_k .. column_k + w_k of x ([rows, sum w], row
 * stride ldx), its output the dense block [rows, w_k] of y at
 * rows * column_k; bias, gamma and beta are the branches' concatenated in
 * column order. column_k is the sum of the widths before k (at most 16
 * branches, passed as a vector). One work-group per (row, branch): a 2-D
 * range of groups [rows, branches]. (With one dimension, group g as
 * g / rows and g % rows, Clang emits a `freeze` that Oclgrind 21.10's
 * uninitialised-value checker cannot run.) */
__kernel void layernorm_branches(const uint rows, const uint16 widths, __global float *x,
                                 const uint x_off, const uint ldx, const uint add_bias,
                                 __global const float *bias, __global const float *gamma,
                                 __global const float *beta, const float eps,
                                 __global float *y, __local float *scratch)
{
    const uint row = get_group_id(0);
    uint width;
    const uint column = branch_column(widths, get_global_id(1), &width);
    layernorm_row(true, width, x + x_off + row * ldx + column, add_bias, bias + column,
                  gamma + column, beta + column, eps, y + rows * column + row * width, scratch);
}

__kernel void unit_rows(const uint rows, const uint width,
                        __global const float *x, const uint x_off, const uint ldx,
                        __global float *y, const uint y_off, const uint ldy,
                        __local float *scratch)
{
    const size_t row = get_group_id(0);
    const size_t lid = get_local_id(0), wg = get_local_size(0);
    const bool live = row < rows;
    __global const float *xr = x + x_off + (live ? row : 0) * ldx;
    float q = 0.0f;
    if (live)
        for (size_t c = lid; c < width; c += wg)
            q += xr[c] * xr[c];
    const float norm = sqrt(group_sum(q, scratch));
    const float inv = 1.0f / fmax(norm, 1e-12f);
    if (live) {
        __global float *yr = y + y_off + row * ldy;
        for (size_t c = lid; c < width; c += wg)
            yr[c] = xr[c] * inv;
    }
}

/* The 16 lanes' sum: four float4 quarters through a private array, then
 * dot(). Halving with .lo/.hi ran the kernel in 1.1-1.2 ms instead of
 * 1.9-2.0 (see src/norm.c), but Oclgrind 21.10's --uninitialized loses
 * track of those shuffles: halves down to a float2 crashed it, down to a
 * float4 it reported the sums as uninitialised. A kernel that the
 * simulator checks clean is worth the 0.8 ms; two float8 accumulators
 * were no faster. */
static float sum16(float16 v)
{
    float lanes[16];
    vstore16(v, 0, lanes);
    const float4 a = (vload4(0, lanes) + vload4(1, lanes)) + (vload4(2, lanes) + vload4(3, lanes));
    return dot(a, (float4)(1.0f));
}

/* Sum over a row of (x - shift)^2, 16 floats at a time. */
static float sum_sq16(__global const float *xr, const uint width, const float shift)
{
    float16 q16 = 0.0f;
    for (uint c = 0; c < width; c += 16) {
        const float16 d = vload16(0, xr + c) - shift;
        q16 += d * d;
    }
    return sum16(q16);
}

/* LayerNorm of one row whose width is a multiple of 16 by one work-item,
 * as float16s (vloadn needs only float alignment); the same two passes
 * over the row as layernorm_row. bias, gamma and beta point at the row's
 * first column. */
static void layernorm_row16(const uint width, __global float *xr, const uint add_bias,
                            __global const float *bias, __global const float *gamma,
                            __global const float *beta, const float eps, __global float *yr)
{
    float16 s16 = 0.0f;
    if (add_bias)
        for (uint c = 0; c < width; c += 16) {
            const float16 v = vload16(0, xr + c) + vload16(0, bias + c);
            vstore16(v, 0, xr + c);
            s16 += v;
        }
    else
        for (uint c = 0; c < width; c += 16)
            s16 += vload16(0, xr + c);
    const float mean = sum16(s16) / (float)width;
    const float inv = rsqrt(sum_sq16(xr, width, mean) / (float)width + eps);
    for (uint c = 0; c < width; c += 16)
        vstore16((vload16(0, xr + c) - mean) * inv * vload16(0, gamma + c) + vload16(0, beta + c),
                 0, yr + c);
}

/* layernorm with one row per work-item (widths a multiple of 16). */
__kernel void layernorm_rows16(const uint rows, const uint width,
                               __global float *x, const uint x_off, const uint ldx,
                               const uint add_bias, __global const float *bias,
                               const uint bias_off,
                               __global const float *gamma, __global const float *beta,
                               const float eps,
                               __global float *y, const uint y_off, const uint ldy)
{
    const uint row = get_global_id(0);
    if (row < rows)
        layernorm_row16(width, x + x_off + row * ldx, add_bias, bias + bias_off, gamma, beta,
                        eps, y + y_off + row * ldy);
}

/* layernorm_branches with one row per work-item (every width a multiple
 * of 16): a 2-D range [rows, branches]. */
__kernel void layernorm_branches_rows16(const uint rows, const uint16 widths,
                                        __global float *x, const uint x_off, const uint ldx,
                                        const uint add_bias, __global const float *bias,
                                        __global const float *gamma,
                                        __global const float *beta, const float eps,
                                        __global float *y)
{
    const uint row = get_global_id(0), k = get_global_id(1);
    if (row >= rows)
        return;
    uint width;
    const uint column = branch_column(widths, k, &width);
    layernorm_row16(width, x + x_off + row * ldx + column, add_bias, bias + column,
                    gamma + column, beta + column, eps, y + rows * column + row * width);
}

/* Unit rows of width a multiple of 16, one row per work-item, as float16s. */
__kernel void unit_rows16(const uint rows, const uint width,
                          __global const float *x, const uint x_off, const uint ldx,
                          __global float *y, const uint y_off, const uint ldy)
{
    const uint row = get_global_id(0);
    if (row >= rows)
        return;
    __global const float *xr = x + x_off + row * ldx;
    const float inv = 1.0f / fmax(sqrt(sum_sq16(xr, width, 0.0f)), 1e-12f);
    __global float *yr = y + y_off + row * ldy;
    for (uint c = 0; c < width; c += 16)
        vstore16(vload16(0, xr + c) * inv, 0, yr + c);
}

#ifndef UT_ROWS
#define UT_ROWS 16
#endif
/* Unit rows of dense [B n, width] x into y, and each sequence's u^T into
 * yt ([B][width][n]), so that S = u u^T is a GEMM without a transpose pass
 * (src/norm.c). A work-item takes UT_ROWS rows of one sequence (launched
 * as [ceil(n / UT_ROWS), B]) and writes u^T from 16 x 16 blocks held in
 * private memory, 16 consecutive floats per column. */
__kernel void unit_rows16_t(const uint n, const uint width, __global const float *x,
                            __global float *y, __global float *yt)
{
    const uint i0 = get_global_id(0) * UT_ROWS, seq = get_global_id(1);
    if (i0 >= n)
        return;
    const uint count = min((uint)UT_ROWS, n - i0);
    __global const float *xs = x + (seq * n + i0) * width;
    __global float *ys = y + (seq * n + i0) * width;
    float inv[UT_ROWS];
    for (uint j = 0; j < count; j++) {
        inv[j] = 1.0f / fmax(sqrt(sum_sq16(xs + j * width, width, 0.0f)), 1e-12f);
        for (uint c = 0; c < width; c += 16)
            vstore16(vload16(0, xs + j * width + c) * inv[j], 0, ys + j * width + c);
    }
    __global float *ts = yt + seq * width * n + i0;
    for (uint c0 = 0; c0 < width; c0 += 16)
        for (uint b0 = 0; b0 < count; b0 += 16) {
            if (count - b0 >= 16) {
                float tile[16 * 16]; /* [row][column]: the values stored in y */
                for (uint j = 0; j < 16; j++)
                    vstore16(vload16(0, xs + (b0 + j) * width + c0) * inv[b0 + j], j, tile);
                for (uint c = 0; c < 16; c++) {
                    float lanes[16];
                    for (uint j = 0; j < 16; j++)
                        lanes[j] = tile[j * 16 + c];
                    vstore16(vload16(0, lanes), 0, ts + (c0 + c) * n + b0);
                }
            } else {
                for (uint c = 0; c < 16; c++)
                    for (uint j = b0; j < count; j++)
                        ts[(c0 + c) * n + j] = xs[j * width + c0 + c] * inv[j];
            }
        }
}
