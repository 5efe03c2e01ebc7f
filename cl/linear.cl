/*
 * linear.cl: the epilogues CLBlast has no fused form for, applied in place
 * to a GEMM's output y (a strided view): + bias, + bias then exact GELU,
 * + bias + residual. 2-D range: dim 0 over columns, dim 1 over rows.
 */

/* Exact-form GELU 0.5 v (1 + erf(v / sqrt 2)) with erf from Abramowitz &
 * Stegun 7.1.26 (|erf error| <= 1.5e-7; GELU's absolute error at most
 * 4.2e-7 over [-12, 12] in float32 against float64, rel-L2 1.6e-8: float
 * rounding of the output is of that size). PoCL's builtin made add_bias_gelu 7-9x slower
 * (B = 8, n = 256: 270 ms against 34 ms, 2-core Xeon). 1 + erf is formed
 * directly, so large negative v loses nothing to cancellation. */
inline float gelu_erf(float v)
{
    const float x = fabs(v) * 0.70710678118654752f;
    const float t = 1.0f / (1.0f + 0.3275911f * x);
    const float poly =
        t * (0.254829592f +
             t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    const float q = poly * exp(-x * x); /* 1 - erf(|x|) */
    return 0.5f * v * (v >= 0.0f ? 2.0f - q : q);
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
