/*
 * linear.cl: the epilogues CLBlast has no fused form for, applied in place
 * to a GEMM's output y (a strided view): + bias, + bias then exact GELU,
 * + bias + residual. 2-D range: dim 0 over groups of EPI_VEC columns,
 * dim 1 over rows. And + bias (then GELU) on the blocks of every branch
 * of a layer at once (add_bias_blocks, at the end).
 *
 * EPI_VEC (1, 2, 4, 8 or 16; src/linear.c picks the widest that divides
 * the columns, up to the device's vec_elementwise) is how many columns one
 * work-item takes, as one vector. vloadn and vstoren need only float
 * alignment, so views at any offset and leading dimension work. Why: on
 * PoCL 3.1 (2-core AMD EPYC, B = 8, n = 256, the four FFN GELUs, 6.8 M
 * elements) add_bias_gelu took 4.5 ms with one column per work-item and
 * 2.5-2.7 with 16; PoCL vectorises the explicit vector arithmetic, while
 * across work-items it left most of the GELU scalar.
 */
#ifndef EPI_VEC
#define EPI_VEC 1
#endif
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#if EPI_VEC == 1
typedef float floatv;
typedef int intv;
#define LOADV(p) (*(p))
#define STOREV(v, p) (*(p) = (v))
#define AS_FLOATV as_float
#define CONVERT_INTV convert_int
#else
typedef CAT(float, EPI_VEC) floatv;
typedef CAT(int, EPI_VEC) intv;
#define LOADV(p) CAT(vload, EPI_VEC)(0, p)
#define STOREV(v, p) CAT(vstore, EPI_VEC)(v, 0, p)
#define AS_FLOATV CAT(as_float, EPI_VEC)
#define CONVERT_INTV CAT(convert_int, EPI_VEC)
#endif

/* exp(z) for z <= 0, within 2 ulp above FLT_MIN (1.2 ulp over a dense
 * grid of [-87, 0], float32 emulated in numpy); from z = -87 down it
 * returns about 1e-38, where the GELU below needs no more. Cody-Waite:
 * z = n ln2 + r with |r| <= ln2 / 2 (ln2's high part has 12 bits, so
 * n ln2_hi is exact), a degree-7 Taylor polynomial for e^r (truncation
 * below 6e-9) and 2^n put straight into the exponent bits. n is rounded by
 * adding and subtracting 1.5 * 2^23, not with convert_int_rte, which PoCL
 * 3.1 makes a slow call. The four FFN GELUs of the run above: builtin
 * exp() 6.4 ms; this one with convert_int_rte 5.5, with the add and
 * subtract 4.5, one column per work-item; 8 columns 4.3 and 3.0; 16
 * columns 2.5-2.7; the bias add alone, no GELU, 1.1. */
inline floatv exp_nonpositive(floatv z)
{
    z = fmax(z, -87.0f);
    const floatv nf = (z * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const floatv r = (z - nf * 0.693145751953125f) - nf * 1.428606765330187045e-6f;
    const floatv p =
        1.0f +
        r * (1.0f +
             r * (0.5f +
                  r * (1.66666667e-1f +
                       r * (4.16666667e-2f +
                            r * (8.33333333e-3f + r * (1.38888889e-3f + r * 1.98412698e-4f))))));
    return p * AS_FLOATV((CONVERT_INTV(nf) + 127) << 23);
}

/* Exact-form GELU 0.5 v (1 + erf(v / sqrt 2)) with erf from Abramowitz &
 * Stegun 7.1.26 (|erf error| <= 1.5e-7; GELU's absolute error at most
 * 4.2e-7 over [-12, 12] in float32 against float64, rel-L2 1.6e-8: float
 * rounding of the output is of that size). PoCL's builtin erf made
 * add_bias_gelu 7-9x slower (B = 8, n = 256: 270 ms against 34 ms, 2-core
 * Xeon). 1 + erf is formed directly, so large negative v loses nothing to
 * cancellation. */
inline floatv gelu_erf(floatv v)
{
    const floatv x = fabs(v) * 0.70710678118654752f;
    const floatv t = 1.0f / (1.0f + 0.3275911f * x);
    const floatv poly =
        t * (0.254829592f +
             t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
    const floatv q = poly * exp_nonpositive(-x * x); /* 1 - erf(|x|) */
    return 0.5f * v * select(q, 2.0f - q, v >= 0.0f);
}

__kernel void add_bias(const uint rows, const uint cols, __global float *y, const uint y_off,
                       const uint ldy, __global const float *bias, const uint b_off)
{
    const uint c = get_global_id(0) * EPI_VEC, r = get_global_id(1);
    if (c < cols && r < rows) {
        __global float *yr = y + y_off + r * ldy + c;
        STOREV(LOADV(yr) + LOADV(bias + b_off + c), yr);
    }
}

__kernel void add_bias_gelu(const uint rows, const uint cols, __global float *y,
                            const uint y_off, const uint ldy, __global const float *bias,
                            const uint b_off)
{
    const uint c = get_global_id(0) * EPI_VEC, r = get_global_id(1);
    if (c < cols && r < rows) {
        __global float *yr = y + y_off + r * ldy + c;
        STOREV(gelu_erf(LOADV(yr) + LOADV(bias + b_off + c)), yr);
    }
}

__kernel void add_bias_residual(const uint rows, const uint cols, __global float *y,
                                const uint y_off, const uint ldy, __global const float *bias,
                                const uint b_off, __global const float *res, const uint r_off,
                                const uint ldr)
{
    const uint c = get_global_id(0) * EPI_VEC, r = get_global_id(1);
    if (c < cols && r < rows) {
        __global float *yr = y + y_off + r * ldy + c;
        STOREV(LOADV(yr) + (LOADV(bias + b_off + c) + LOADV(res + r_off + r * ldr + c)), yr);
    }
}

/* + bias (then GELU where gelu != 0) on every branch's dense block of y,
 * as src/model.c lays out a layer's q, k and v (per = 3) and its FFN
 * hidden layers (per = ffn_mult) where one launch runs every branch's
 * attention. Branch k's block is [rows, per w_k] at rows * per * column_k
 * (column_k the sum of the widths before k, at most 16 branches, passed as
 * a vector), its bias per w_k floats at per * column_k of the branches'
 * concatenated biases. One launch instead of one per branch. 3-D range:
 * EPI_VEC columns (dividing every per w_k), rows, branches; the narrower
 * branches leave the columns past theirs idle. */
__kernel void add_bias_blocks(const uint rows, const uint per, const uint16 widths,
                              const uint gelu, __global float *y, __global const float *bias)
{
    const uint c = get_global_id(0) * EPI_VEC, r = get_global_id(1), k = get_global_id(2);
    uint width_of[16];
    vstore16(widths, 0, width_of);
    uint column = 0;
    for (uint i = 0; i < k; i++)
        column += width_of[i];
    const uint cols = per * width_of[k];
    if (c < cols && r < rows) {
        __global float *yr = y + rows * per * column + r * cols + c;
        const floatv v = LOADV(yr) + LOADV(bias + per * column + c);
        STOREV(gelu ? gelu_erf(v) : v, yr);
    }
}
