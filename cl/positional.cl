/*
 * positional.cl: the first layer of the continuous positional encoding
 * before its bias and GELU, g[r, j] = w1[j] * p[r], for float positions of
 * any value, and in the same launch out = x + b2, the sum that the second
 * layer's GEMM then accumulates into (x may be out). src/positional.c adds
 * b1 and applies GELU with the Linear epilogue (cl/linear.cl, ln-cl's one
 * GELU). 2-D range: dim 0 over max(hidden, d) columns, dim 1 over rows.
 */

__kernel void positional_hidden(const uint rows, const uint n, const uint hidden, const uint d,
                                const int has_positions, __global const float *positions,
                                __global const float *w1, __global float *g,
                                __global const float *x, __global const float *b2,
                                __global float *out)
{
    const uint j = get_global_id(0), r = get_global_id(1);
    if (r >= rows)
        return;
    if (j < hidden) {
        float p;
        if (has_positions)
            p = positions[r];
        else /* default p_i = i / (n - 1), and 0 for a one-element sequence */
            p = n > 1 ? (float)(r % n) / (float)(n - 1) : 0.0f;
        g[r * hidden + j] = w1[j] * p;
    }
    if (j < d)
        out[r * d + j] = x[r * d + j] + b2[j];
}
