/*
 * norm.cl: row reductions: LayerNorm and unit rows. One work-group per row;
 * the group's size is a power of two chosen by the host (params table),
 * scratch is local memory sized by the host.
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

__kernel void layernorm(const uint rows, const uint width,
                        __global const float *x, const uint x_off, const uint ldx,
                        __global const float *gamma, __global const float *beta,
                        const float eps,
                        __global float *y, const uint y_off, const uint ldy,
                        __local float *scratch)
{
    const size_t row = get_group_id(0);
    const size_t lid = get_local_id(0), wg = get_local_size(0);
    /* rows is the true count; the host launches exactly `rows` groups, but
     * keep the guard uniform per group so barriers stay legal. */
    const bool live = row < rows;
    __global const float *xr = x + x_off + (live ? row : 0) * ldx;
    float s = 0.0f;
    if (live)
        for (size_t c = lid; c < width; c += wg)
            s += xr[c];
    const float mean = group_sum(s, scratch) / (float)width;
    float q = 0.0f;
    if (live)
        for (size_t c = lid; c < width; c += wg) {
            float d = xr[c] - mean;
            q += d * d;
        }
    const float var = group_sum(q, scratch) / (float)width;
    const float inv = rsqrt(var + eps);
    if (live) {
        __global float *yr = y + y_off + row * ldy;
        for (size_t c = lid; c < width; c += wg)
            yr[c] = (xr[c] - mean) * inv * gamma[c] + beta[c];
    }
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
