/*
 * attention.cl: semantic attention
 *   out_i = sum_j softmax_j(q_i . k_j * scale + temperature[h] * S_ij) v_j
 * over the non-padding keys j < kv_len, for every head h of a branch.
 *
 * attention_fused: one work-group takes ATTN_TILE_Q queries of one sequence
 * for ALL heads. It walks the keys in tiles of ATTN_TILE_K; for each key
 * tile it gets the S tile once (read from a precomputed S, or recomputed
 * from the unit vectors u in chunks of ATTN_CHUNK_D columns) and then loops
 * over the heads, updating a per-(query, head) online softmax ("flash"
 * attention). No n x n matrix of logits ever exists; the state that does is
 * [ATTN_TILE_Q, heads * head_dim] numerators plus a running max and sum per
 * query and head, all in local memory.
 *
 * attention_naive_softmax: the row softmax of the straightforward path that
 * materialises the logits [heads, n, n] (src/attention.c, for comparison).
 *
 * Both kernels are OpenCL C 1.2 core only. Every work-item reaches every
 * barrier: loops that contain barriers have trip counts uniform over the
 * work-group, and surplus lanes (queries past n, keys past kv_len, items past
 * a tile's size) only skip loads, stores and arithmetic.
 */

/* Build-time parameters; src/attention.c always sets them. ATTN_VEC is the
 * width of the float vectors the inner loops run on; it divides
 * ATTN_TILE_K and ATTN_HEAD_DIM. */
#ifndef ATTN_TILE_Q
#define ATTN_TILE_Q 16
#endif
#ifndef ATTN_TILE_K
#define ATTN_TILE_K 32
#endif
#ifndef ATTN_CHUNK_D
#define ATTN_CHUNK_D 64
#endif
#ifndef ATTN_WG
#define ATTN_WG 64
#endif
#ifndef ATTN_HEAD_DIM
#define ATTN_HEAD_DIM 32
#endif
#ifndef ATTN_VEC
#define ATTN_VEC 8
#endif
#ifndef ATTN_RECOMPUTE_S
#define ATTN_RECOMPUTE_S 1
#endif

#define TQ ATTN_TILE_Q
#define TK ATTN_TILE_K
#define DC ATTN_CHUNK_D
#define HD ATTN_HEAD_DIM
#define TKV (TK / ATTN_VEC) /* vectors per key-tile row */
#define HDV (HD / ATTN_VEC) /* vectors per head row */

/* vecf: ATTN_VEC floats; VLOAD(i, p) / VSTORE(x, i, p) move the i-th
 * vector of p; vmax_all / vsum_all reduce one to a float. */
#if ATTN_VEC == 16
typedef float16 vecf;
#define VLOAD vload16
#define VSTORE vstore16
static float vmax_all(vecf x)
{
    const float8 a = fmax(x.lo, x.hi);
    const float4 b = fmax(a.lo, a.hi);
    return fmax(fmax(b.x, b.y), fmax(b.z, b.w));
}
static float vsum_all(vecf x)
{
    const float8 a = x.lo + x.hi;
    const float4 b = a.lo + a.hi;
    return (b.x + b.y) + (b.z + b.w);
}
#elif ATTN_VEC == 8
typedef float8 vecf;
#define VLOAD vload8
#define VSTORE vstore8
static float vmax_all(vecf x)
{
    const float4 b = fmax(x.lo, x.hi);
    return fmax(fmax(b.x, b.y), fmax(b.z, b.w));
}
static float vsum_all(vecf x)
{
    const float4 b = x.lo + x.hi;
    return (b.x + b.y) + (b.z + b.w);
}
#elif ATTN_VEC == 4
typedef float4 vecf;
#define VLOAD vload4
#define VSTORE vstore4
static float vmax_all(vecf x)
{
    return fmax(fmax(x.x, x.y), fmax(x.z, x.w));
}
static float vsum_all(vecf x)
{
    return (x.x + x.y) + (x.z + x.w);
}
#elif ATTN_VEC == 2
typedef float2 vecf;
#define VLOAD vload2
#define VSTORE vstore2
static float vmax_all(vecf x)
{
    return fmax(x.x, x.y);
}
static float vsum_all(vecf x)
{
    return x.x + x.y;
}
#else
typedef float vecf;
#define VLOAD(i, p) ((p)[i])
#define VSTORE(x, i, p) ((p)[i] = (x))
#define vmax_all(x) (x)
#define vsum_all(x) (x)
#endif

/* Masked logits: finite, so the kernel stays correct under
 * -cl-finite-math-only; exp(ATTN_MASKED - m) is exactly 0 for any real m. */
#define ATTN_MASKED (-1.0e30f)

static uint kv_length(__global const int *lengths, const uint has_lengths, const uint b,
                      const uint n)
{
    /* Device-buffer lengths are trusted to lie in 1..n (ln.h); clamping
     * keeps a bad value from reading out of bounds or emptying the softmax. */
    return has_lengths ? (uint)clamp(lengths[b], 1, (int)n) : n;
}

__kernel __attribute__((reqd_work_group_size(ATTN_WG, 1, 1)))
void attention_fused(const uint n, const uint heads, const uint d,
                     __global const float *q, const uint q_off, const uint ldq,
                     __global const float *k, const uint k_off, const uint ldk,
                     __global const float *v, const uint v_off, const uint ldv,
                     /* ATTN_RECOMPUTE_S: unit rows u [B * n, d]; else S [B, n, n] */
                     __global const float *sim_source,
                     __global const float *temperature,
                     __global const int *lengths, const uint has_lengths,
                     const float scale,
                     __global float *out, const uint out_off, const uint ldo,
                     __local float *acc,   /* [TQ, heads * HD] softmax numerators */
                     __local float *stats, /* [heads, TQ] running max, then [heads, TQ] sums */
                     __local float *stage) /* u chunks, then one head's q, k^T, v tiles */
{
    __local float s_tile[TQ * TK]; /* S for this query tile x key tile */
    __local float p_tile[TQ * TK]; /* logits, then exp(logit - running max) */
    __local float rescale[TQ];     /* exp(old max - new max) of the current head */

    const uint lid = get_local_id(0);
    const uint q_tiles = (n + TQ - 1) / TQ;
    const uint b = get_group_id(0) / q_tiles;
    const uint q0 = (get_group_id(0) % q_tiles) * TQ;
    const uint width = heads * HD;
    const uint kv_len = kv_length(lengths, has_lengths, b, n);
    const uint row0 = b * n; /* first row of sequence b in the [B * n, .] views */

    __local float *run_max = stats;
    __local float *run_sum = stats + heads * TQ;
    for (uint e = lid; e < TQ * width; e += ATTN_WG)
        acc[e] = 0.0f;
    for (uint e = lid; e < heads * TQ; e += ATTN_WG) {
        run_max[e] = ATTN_MASKED;
        run_sum[e] = 0.0f;
    }

    for (uint j0 = 0; j0 < kv_len; j0 += TK) { /* uniform: kv_len is per group */
        /* ---- S tile, once for all heads ---- */
#if ATTN_RECOMPUTE_S
        __global const float *unit = sim_source;
        __local float *uq = stage;             /* [TQ, DC] */
        __local float *uk_t = stage + TQ * DC; /* [DC, TK]: keys contiguous */
        for (uint e = lid; e < TQ * TK; e += ATTN_WG)
            s_tile[e] = 0.0f;
        for (uint c0 = 0; c0 < d; c0 += DC) {
            /* The stage is free: the last head (or chunk) is done with it. */
            barrier(CLK_LOCAL_MEM_FENCE);
            for (uint e = lid; e < TQ * DC; e += ATTN_WG) {
                const uint i = e / DC, c = e % DC;
                uq[e] = (q0 + i < n && c0 + c < d) ? unit[(row0 + q0 + i) * d + c0 + c] : 0.0f;
            }
            for (uint e = lid; e < TK * DC; e += ATTN_WG) {
                const uint j = e / DC, c = e % DC;
                uk_t[c * TK + j] =
                    (j0 + j < kv_len && c0 + c < d) ? unit[(row0 + j0 + j) * d + c0 + c] : 0.0f;
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            for (uint e = lid; e < TQ * TKV; e += ATTN_WG) {
                const uint i = e / TKV, jv = e % TKV;
                __local float *srow = s_tile + i * TK; /* item e owns this vector */
                vecf s = VLOAD(jv, srow);
                for (uint c = 0; c < DC; c++)
                    s = mad((vecf)uq[i * DC + c], VLOAD(jv, uk_t + c * TK), s);
                VSTORE(s, jv, srow);
            }
        }
#else
        __global const float *sim = sim_source;
        for (uint e = lid; e < TQ * TK; e += ATTN_WG) {
            const uint i = e / TK, j = e % TK;
            s_tile[e] = (q0 + i < n && j0 + j < kv_len)
                            ? sim[((size_t)row0 + q0 + i) * n + j0 + j]
                            : 0.0f;
        }
#endif

        /* ---- every head against this key tile ---- */
        for (uint h = 0; h < heads; h++) {
            __local float *qs = stage;            /* [TQ, HD] */
            __local float *k_t = stage + TQ * HD; /* [HD, TK]: keys contiguous */
            __local float *vs = k_t + HD * TK;    /* [TK, HD] */
            /* The stage, p_tile and rescale are free; s_tile is complete. */
            barrier(CLK_LOCAL_MEM_FENCE);
#ifndef X_NOLOAD
            for (uint e = lid; e < TQ * HD; e += ATTN_WG) {
                const uint i = e / HD, c = e % HD;
                qs[e] = q0 + i < n ? q[q_off + (row0 + q0 + i) * ldq + h * HD + c] : 0.0f;
            }
            for (uint e = lid; e < TK * HD; e += ATTN_WG) {
                const uint j = e / HD, c = e % HD;
                const bool live = j0 + j < kv_len;
                k_t[c * TK + j] = live ? k[k_off + (row0 + j0 + j) * ldk + h * HD + c] : 0.0f;
                vs[e] = live ? v[v_off + (row0 + j0 + j) * ldv + h * HD + c] : 0.0f;
            }
#endif
            barrier(CLK_LOCAL_MEM_FENCE);

            /* Logits, ATTN_VEC keys at a time: no reductions in the inner loop. */
            const float t = temperature[h];
            for (uint e = lid; e < TQ * TKV; e += ATTN_WG) {
                const uint i = e / TKV, jv = e % TKV;
                vecf dot = 0.0f;
                for (uint c = 0; c < HD; c++)
                    dot = mad((vecf)qs[i * HD + c], VLOAD(jv, k_t + c * TK), dot);
                __local float *prow = p_tile + i * TK;
                VSTORE(mad(dot, (vecf)scale, (vecf)t * VLOAD(jv, s_tile + i * TK)), jv, prow);
                for (uint j = jv * ATTN_VEC; j < (jv + 1) * ATTN_VEC; j++)
                    if (j0 + j >= kv_len)
                        prow[j] = ATTN_MASKED;
            }
            barrier(CLK_LOCAL_MEM_FENCE);

            /* Online softmax, one row per item: new max, weights, sum. */
            __local float *head_max = run_max + h * TQ;
            __local float *head_sum = run_sum + h * TQ;
            for (uint i = lid; i < TQ; i += ATTN_WG) {
                __local float *prow = p_tile + i * TK;
                vecf mv = VLOAD(0, prow);
                for (uint jv = 1; jv < TKV; jv++)
                    mv = fmax(mv, VLOAD(jv, prow));
                const float old_max = head_max[i];
                const float m = fmax(old_max, vmax_all(mv));
                vecf sv = 0.0f;
                for (uint jv = 0; jv < TKV; jv++) {
#ifdef X_NOEXP
                    const vecf p = (VLOAD(jv, prow) - (vecf)m);
#else
                    const vecf p = exp(VLOAD(jv, prow) - (vecf)m);
#endif
                    VSTORE(p, jv, prow);
                    sv += p;
                }
                /* The first tile always holds key 0 < kv_len, so m is a real
                 * logit from then on and the old state's weight is 0 here. */
                const float r = exp(old_max - m);
                head_max[i] = m;
                head_sum[i] = head_sum[i] * r + vsum_all(sv);
                rescale[i] = r;
            }
            barrier(CLK_LOCAL_MEM_FENCE);

            /* Numerators += P V, ATTN_VEC columns at a time. */
#ifndef X_NOPV
            for (uint e = lid; e < TQ * HDV; e += ATTN_WG) {
                const uint i = e / HDV, cv = e % HDV;
                __local float *arow = acc + i * width + h * HD;
                __local const float *prow = p_tile + i * TK;
                vecf a = VLOAD(cv, arow) * (vecf)rescale[i];
                for (uint j = 0; j < TK; j++)
                    a = mad((vecf)prow[j], VLOAD(cv, vs + j * HD), a);
                VSTORE(a, cv, arow);
            }
#endif
        }
    }

    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint e = lid; e < TQ * width; e += ATTN_WG) {
        const uint i = e / width, col = e % width;
        if (q0 + i < n) {
            const float l = run_sum[(col / HD) * TQ + i];
            out[out_off + (row0 + q0 + i) * ldo + col] = l > 0.0f ? acc[e] / l : 0.0f;
        }
    }
}

/* ---- the materialising path: logits from a GEMM, softmax here, P V by GEMM ---- */

static float group_reduce(float x, const bool take_max, __local float *scratch)
{
    const uint lid = get_local_id(0), wg = get_local_size(0); /* a power of two */
    scratch[lid] = x;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = wg / 2; s > 0; s >>= 1) {
        if (lid < s)
            scratch[lid] = take_max ? fmax(scratch[lid], scratch[lid + s])
                                    : scratch[lid] + scratch[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float r = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

/* One work-group per row (h, i) of sequence b's logits [heads, n, n], which
 * hold q . k * scale on entry and the probabilities on exit (0 at padding
 * keys). sim is S of sequence b: [n, n] at sim_off. */
__kernel void attention_naive_softmax(const uint n, const uint heads, const uint b,
                                      __global float *logits,
                                      __global const float *sim, const uint sim_off,
                                      __global const float *temperature,
                                      __global const int *lengths, const uint has_lengths,
                                      __local float *scratch)
{
    const uint row = get_group_id(0), lid = get_local_id(0), wg = get_local_size(0);
    const bool live = row < heads * n;
    const uint h = live ? row / n : 0, i = live ? row % n : 0;
    const uint kv_len = kv_length(lengths, has_lengths, b, n);
    __global float *lr = logits + (size_t)(live ? row : 0) * n;
    __global const float *sr = sim + sim_off + (size_t)i * n;
    const float t = temperature[h];

    float m = ATTN_MASKED;
    if (live)
        for (uint j = lid; j < kv_len; j += wg) {
            const float x = mad(t, sr[j], lr[j]);
            lr[j] = x;
            m = fmax(m, x);
        }
    m = group_reduce(m, true, scratch);
    float sum = 0.0f;
    if (live)
        for (uint j = lid; j < kv_len; j += wg) {
            const float p = exp(lr[j] - m);
            lr[j] = p;
            sum += p;
        }
    sum = group_reduce(sum, false, scratch);
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    if (live)
        for (uint j = lid; j < n; j += wg)
            lr[j] = j < kv_len ? lr[j] * inv : 0.0f;
}
