/*
 * linear.cl: the epilogues CLBlast has no fused form for, applied in place
 * to a GEMM's output y (a strided view): + bias, + bias then exact GELU,
 * + bias + residual. 2-D range: dim 0 over columns, dim 1 over rows.
 */

inline float gelu_erf(float v)
{
    return 0.5f * v * (1.0f + erf(v * 0.70710678118654752f));
}

__kernel void add_bias(const uint rows, const uint cols, __global float *y, const uint y_off,
                       const uint ldy, __global const float *bias, const uint b_off)
{
    const uint c = get_global_id(0), r = get_global_id(1);
    if (c < cols && r < rows)
        y[y_off + r * ldy + c] += bias[b_off + c];
}

__kernel void add_bias_gelu(const uint rows, const uint cols, __global float *y,
                            const uint y_off, const uint ldy, __global const float *bias,
                            const uint b_off)
{
    const uint c = get_global_id(0), r = get_global_id(1);
    if (c < cols && r < rows) {
        const uint i = y_off + r * ldy + c;
        y[i] = gelu_erf(y[i] + bias[b_off + c]);
    }
}

__kernel void add_bias_residual(const uint rows, const uint cols, __global float *y,
                                const uint y_off, const uint ldy, __global const float *bias,
                                const uint b_off, __global const float *res, const uint r_off,
                                const uint ldr)
{
    const uint c = get_global_id(0), r = get_global_id(1);
    if (c < cols && r < rows)
        y[y_off + r * ldy + c] += bias[b_off + c] + res[r_off + r * ldr + c];
}
