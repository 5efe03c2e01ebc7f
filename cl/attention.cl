/*
 * attention.cl: semantic attention
 *   out_i = sum_j softmax_j(q_i . k_j * scale + temperature[h] * S_ij) v_j
 * over the non-padding keys j < kv_len, for every head h of a branch.
 *
 * attention_fused: one work-group takes ATTN_TILE_Q queries of one sequence
 * for ALL heads. It walks the keys in tiles of ATTN_TILE_K; for each key
 * tile it gets the S tile once (read from a precomputed S, or recomputed
 * from the unit vectors u, in chunks of ATTN_CHUNK_D columns when d is
 * larger than that) and then loops
 * over the heads, updating a per-(query, head) online softmax ("flash"
 * attention). No n x n matrix of logits ever exists; what does is, in local
 * memory, [ATTN_TILE_Q, heads * head_dim] numerators, the query tile, a
 * running max and sum per query and head, and one tile of S and of logits.
 *
 * Queries are the vector lanes: q, the S tile and the logits tile are kept
 * transposed ([column][query]), so logits and S are vector FMAs of a
 * broadcast k or u element into ATTN_VEC queries, the softmax runs down the
 * keys without horizontal reductions, and k and v rows are read where they
 * lie (no staging; a CPU's cache holds them, a GPU's L1 too). Each
 * work-item keeps ATTN_BLOCK keys (logits, S) or ATTN_BLOCK query rows
 * (P V) in registers so one vector load feeds ATTN_BLOCK FMAs. Those
 * ATTN_BLOCK loops carry `#pragma unroll` (a hint any OpenCL C compiler may
 * ignore): PoCL 3.1 left them rolled, so the block's accumulators and row
 * pointers lived on the stack and every multiply-add became a load,
 * multiply, add and store. Unrolled, attention-bench on the 2-core
 * Skylake-AVX512 machine (B = 1, 12 heads of 32, S read; two runs each,
 * shared machine) went from 69 / 1144-1222 ms to 39-47 / 553-839 ms at
 * n = 1024 / 4096, and with S recomputed from 108-117 / 1867 to 44-73 /
 * 871-1087.
 *
 * MADD: PoCL 3.1 emits a multiply and an add for mad() even with
 * -cl-mad-enable (perf annotate), one vfmadd for fma(). So where the
 * device has a hardware fma (CL_FP_FMA; src/attention.c passes ATTN_FMA)
 * the kernels use fma(), which also rounds once; elsewhere fma() would be
 * a software routine, so mad(). attention-bench on the same machine, six
 * alternating runs of each build at n = 4096 (medians of the six, ranges):
 * S read 461 ms (352-625) against 582 (397-711) with mad(), S recomputed
 * 558 (519-682) against 780 (673-956), attention_rows 2241 (1954-3023)
 * against 3257 (2684-4188); n = 1024, three runs: S read 29-33 against
 * 33-39. NVIDIA's compiler makes an FMA of either (not re-measured there).
 *
 * attention_rows: the GPU's kernel for a precomputed S, one work-item per
 * (query, head), for one branch or every branch of a layer in one
 * launch; its own comments below say why.
 *
 * attention_tiles: the same work as attention_rows in register blocks of 4
 * queries x 4 keys per work-item (opt-in until measured on a GPU).
 *
 * attention_naive_softmax: the row softmax of the straightforward path that
 * materialises the logits [heads, n, n] (src/attention.c, for comparison).
 *
 * Both kernels are OpenCL C 1.2 core only. Every work-item reaches every
 * barrier: loops that contain barriers have trip counts uniform over the
 * work-group, and surplus lanes (queries past n, keys past kv_len, items past
 * a tile's size) only skip loads, stores and arithmetic.
 */

#if ATTN_FMA
#define MADD(a, b, c) fma(a, b, c)
#else
#define MADD(a, b, c) mad(a, b, c)
#endif

/* Build-time parameters; src/attention.c always sets them. ATTN_VEC
 * divides ATTN_TILE_Q and ATTN_HEAD_DIM; ATTN_BLOCK divides ATTN_TILE_Q
 * and ATTN_TILE_K. */
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
#define ATTN_WG 8
#endif
#ifndef ATTN_HEAD_DIM
#define ATTN_HEAD_DIM 32
#endif
#ifndef ATTN_VEC
#define ATTN_VEC 16
#endif
#ifndef ATTN_BLOCK
#define ATTN_BLOCK 4
#endif
#ifndef ATTN_RECOMPUTE_S
#define ATTN_RECOMPUTE_S 1
#endif

#define TQ ATTN_TILE_Q
#define TK ATTN_TILE_K
#define DC ATTN_CHUNK_D
#define HD ATTN_HEAD_DIM
#define BL ATTN_BLOCK
#define TQV (TQ / ATTN_VEC) /* query vectors per tile */
#define HDV (HD / ATTN_VEC) /* vectors per head row */

/* vecf: ATTN_VEC floats; VLOAD(i, p) / VSTORE(x, i, p) move the i-th
 * vector of p (any alignment). */
#if ATTN_VEC == 16
typedef float16 vecf;
#define VLOAD vload16
#define VSTORE vstore16
#elif ATTN_VEC == 8
typedef float8 vecf;
#define VLOAD vload8
#define VSTORE vstore8
#elif ATTN_VEC == 4
typedef float4 vecf;
#define VLOAD vload4
#define VSTORE vstore4
#elif ATTN_VEC == 2
typedef float2 vecf;
#define VLOAD vload2
#define VSTORE vstore2
#else
typedef float vecf;
#define VLOAD(i, p) ((p)[i])
#define VSTORE(x, i, p) ((p)[i] = (x))
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

/* Where head h's q, k, v and output columns start and their leading
 * dimensions, for attention_rows and attention_tiles: from the head table
 * (every branch of a layer in one launch; see attention_rows) or, for one
 * branch, h * ATTN_HEAD_DIM of the views given. Uniform over a work-group. */
typedef struct head_view {
    uint qc, kc, vc, oc, ldq, ldk, ldv, ldo;
} head_view;

static head_view head_columns(__global const uint *head_table, const uint has_table,
                              const uint rows, const uint h, const uint q_off, const uint ldq,
                              const uint k_off, const uint ldk, const uint v_off, const uint ldv,
                              const uint out_off, const uint ldo)
{
    head_view hv;
    if (has_table) {
        const uint w = head_table[4 * h + 1], column = head_table[4 * h + 3];
        hv.qc = q_off + rows * head_table[4 * h] + column;
        hv.kc = hv.qc + w;
        hv.vc = hv.qc + 2 * w;
        hv.oc = out_off + rows * head_table[4 * h + 2] + column;
        hv.ldq = hv.ldk = hv.ldv = 3 * w;
        hv.ldo = w;
    } else {
        hv.qc = q_off + h * ATTN_HEAD_DIM;
        hv.kc = k_off + h * ATTN_HEAD_DIM;
        hv.vc = v_off + h * ATTN_HEAD_DIM;
        hv.oc = out_off + h * ATTN_HEAD_DIM;
        hv.ldq = ldq, hv.ldk = ldk, hv.ldv = ldv, hv.ldo = ldo;
    }
    return hv;
}

/* A build with ATTN_TILES holds attention_tiles alone, any other build
 * every other kernel: Oclgrind adds up all kernel-scope __local arrays of
 * a program against its 32 KiB, and attention_tiles' take most of it. */
#ifndef ATTN_TILES

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
                     __local float *q_t,   /* [heads * HD, TQ] the query tile */
                     __local float *stats, /* [heads, TQ] running max, then [heads, TQ] sums */
                     __local float *u_t)   /* [min(d, DC), TQ] (a chunk of) the queries' u */
{
    __local float s_t[TK * TQ]; /* S tile, [key][query] */
    __local float p_t[TK * TQ]; /* logits, then exp(logit - running max), [key][query] */
    __local float rescale[TQ];  /* exp(old max - new max) of the current head */

    /* Launched as [query tiles * ATTN_WG, B]: no runtime division (whose
     * div/rem pairs LLVM rewrites with `freeze`, which Oclgrind's
     * uninitialized-value check cannot follow). */
    const uint lid = get_local_id(0);
    const uint b = get_global_id(1); /* work-groups of 1 along it: src/internal.h's ln_enqueue */
    const uint q0 = get_group_id(0) * TQ;
    const uint width = heads * HD;
    const uint kv_len = kv_length(lengths, has_lengths, b, n);
    const uint row0 = b * n; /* first row of sequence b in the [B * n, .] views */

    __local float *run_max = stats;
    __local float *run_sum = stats + heads * TQ;
    for (uint i = 0; i < TQ; i++)
        for (uint col = lid; col < width; col += ATTN_WG) { /* along q's rows */
            acc[i * width + col] = 0.0f;
            q_t[col * TQ + i] = q0 + i < n ? q[q_off + (row0 + q0 + i) * ldq + col] : 0.0f;
        }
    for (uint e = lid; e < heads * TQ; e += ATTN_WG) {
        run_max[e] = ATTN_MASKED;
        run_sum[e] = 0.0f;
    }

    for (uint j0 = 0; j0 < kv_len; j0 += TK) { /* uniform: kv_len is per group */
        /* Keys past kv_len read the last valid row: in bounds and finite,
         * and their weight is exactly 0. */
        const uint last = kv_len - 1;

        /* ---- S tile, once for all heads ---- */
#if ATTN_RECOMPUTE_S
        __global const float *unit = sim_source;
        for (uint e = lid; e < TK * TQ; e += ATTN_WG)
            s_t[e] = 0.0f;
        /* With d <= ATTN_CHUNK_D the queries' u stays in u_t for all key
         * tiles; else it is staged again chunk by chunk. */
        const bool u_resident = d <= DC;
        for (uint c0 = 0; c0 < d; c0 += DC) {
            const uint dc = min((uint)DC, d - c0);
            if (!u_resident || j0 == 0)
                for (uint i = 0; i < TQ; i++)
                    for (uint c = lid; c < dc; c += ATTN_WG)
                        u_t[c * TQ + i] = q0 + i < n ? unit[(row0 + q0 + i) * d + c0 + c] : 0.0f;
            barrier(CLK_LOCAL_MEM_FENCE);
            for (uint e = lid; e < (TK / BL) * TQV; e += ATTN_WG) {
                const uint jb = e / TQV * BL, iv = e % TQV; /* item e owns these entries */
                __global const float *urow[BL];
                vecf s[BL];
                #pragma unroll
                for (uint r = 0; r < BL; r++) {
                    urow[r] = unit + (row0 + min(j0 + jb + r, last)) * d + c0;
                    s[r] = VLOAD(iv, s_t + (jb + r) * TQ);
                }
                for (uint c = 0; c < dc; c++) {
                    const vecf uq = VLOAD(iv, u_t + c * TQ);
                    #pragma unroll
                    for (uint r = 0; r < BL; r++)
                        s[r] = MADD((vecf)urow[r][c], uq, s[r]);
                }
                #pragma unroll
                for (uint r = 0; r < BL; r++)
                    VSTORE(s[r], iv, s_t + (jb + r) * TQ);
            }
            barrier(CLK_LOCAL_MEM_FENCE); /* u_t is free again; s_t complete after the last */
        }
#else
        __global const float *sim = sim_source;
        for (uint e = lid; e < TQ * TK; e += ATTN_WG) {
            const uint i = e / TK, j = e % TK; /* reads along S's rows */
            s_t[j * TQ + i] = (q0 + i < n && j0 + j < kv_len)
                                  ? sim[((size_t)row0 + q0 + i) * n + j0 + j]
                                  : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
#endif

        /* ---- every head against this key tile ---- */
        for (uint h = 0; h < heads; h++) {
            const float t = temperature[h];
            for (uint e = lid; e < (TK / BL) * TQV; e += ATTN_WG) {
                const uint jb = e / TQV * BL, iv = e % TQV;
                __global const float *krow[BL];
                vecf dot[BL];
                #pragma unroll
                for (uint r = 0; r < BL; r++) {
                    krow[r] = k + k_off + (row0 + min(j0 + jb + r, last)) * ldk + h * HD;
                    dot[r] = 0.0f;
                }
                __local const float *qh = q_t + h * HD * TQ;
                for (uint c = 0; c < HD; c++) {
                    const vecf qv = VLOAD(iv, qh + c * TQ);
                    #pragma unroll
                    for (uint r = 0; r < BL; r++)
                        dot[r] = MADD((vecf)krow[r][c], qv, dot[r]);
                }
                #pragma unroll
                for (uint r = 0; r < BL; r++) {
                    const uint j = jb + r;
                    const vecf logit = MADD(dot[r], (vecf)scale, (vecf)t * VLOAD(iv, s_t + j * TQ));
                    VSTORE(j0 + j < kv_len ? logit : (vecf)ATTN_MASKED, iv, p_t + j * TQ);
                }
            }
            barrier(CLK_LOCAL_MEM_FENCE);

            /* Online softmax down the keys, ATTN_VEC queries at a time. */
            __local float *head_max = run_max + h * TQ;
            __local float *head_sum = run_sum + h * TQ;
            for (uint iv = lid; iv < TQV; iv += ATTN_WG) {
                const vecf old_max = VLOAD(iv, head_max);
                vecf m = old_max;
                for (uint j = 0; j < TK; j++)
                    m = fmax(m, VLOAD(iv, p_t + j * TQ));
                vecf sum = 0.0f;
                for (uint j = 0; j < TK; j++) {
                    const vecf p = exp(VLOAD(iv, p_t + j * TQ) - m);
                    VSTORE(p, iv, p_t + j * TQ);
                    sum += p;
                }
                /* The first tile always holds key 0 < kv_len, so m is a real
                 * logit from then on and the old state's weight is 0 here. */
                const vecf r = exp(old_max - m);
                VSTORE(m, iv, head_max);
                VSTORE(MADD(VLOAD(iv, head_sum), r, sum), iv, head_sum);
                VSTORE(r, iv, rescale);
            }
            barrier(CLK_LOCAL_MEM_FENCE);

            /* Numerators += P V over the live keys, ATTN_VEC columns at a time. */
            const uint live_keys = min((uint)TK, kv_len - j0);
            for (uint e = lid; e < (TQ / BL) * HDV; e += ATTN_WG) {
                const uint ib = e / HDV * BL, cv = e % HDV;
                vecf a[BL];
                #pragma unroll
                for (uint r = 0; r < BL; r++)
                    a[r] = VLOAD(cv, acc + (ib + r) * width + h * HD) * (vecf)rescale[ib + r];
                __global const float *vcol = v + v_off + (row0 + j0) * ldv + h * HD;
                for (uint j = 0; j < live_keys; j++) {
                    const vecf vv = VLOAD(cv, vcol + j * ldv);
                    #pragma unroll
                    for (uint r = 0; r < BL; r++)
                        a[r] = MADD((vecf)p_t[j * TQ + ib + r], vv, a[r]);
                }
                #pragma unroll
                for (uint r = 0; r < BL; r++)
                    VSTORE(a[r], cv, acc + (ib + r) * width + h * HD);
            }
            barrier(CLK_LOCAL_MEM_FENCE); /* p_t, rescale and (last head) s_t are free */
        }
    }

    for (uint i = 0; i < TQ && q0 + i < n; i++)
        for (uint col = lid; col < width; col += ATTN_WG) {
            const float l = run_sum[(col / HD) * TQ + i];
            out[out_off + (row0 + q0 + i) * ldo + col] = l > 0.0f ? acc[i * width + col] / l : 0.0f;
        }
}

/* ---- attention_rows: one work-item per (query, head), for GPUs ----
 *
 * attention_fused above makes queries the vector lanes and walks all heads
 * in one work-group: right for a CPU, where a work-group is a loop on one
 * core, but on an H200 it ran at about 3.6 TFLOP/s (B = 8, n = 1024 and
 * 4096; its softmax step keeps TQ / ATTN_VEC work-items busy out of the
 * group and every head step costs three barriers). Here a work-group is
 * ROWS_TILE_Q queries of one head of one sequence, one query per
 * work-item, which keeps its q row, its numerators and the logits of one
 * key tile in registers (the flash-attention loop). The group stages a
 * tile of ROWS_TILE_K keys (k and v rows) in local memory, read by every
 * work-item at the same address (a broadcast), and the S tile with a
 * padded row per query (no bank conflicts). S must be precomputed: the
 * kernel reads it once per head from global memory (L2 on a GPU).
 * Registers are plain float arrays with four independent dot-product
 * chains, not float4 arrays: Oclgrind's uninitialized-value checker
 * crashes on private float4 arrays, and a GPU compiler scalarises them
 * anyway; the aligned local tiles let it use 16-byte loads.
 * Measured on an H200 (B = 1, n = 1024 / 4096, 12 heads of 32): 0.235 /
 * 1.41 ms, 18.3-18.6 TFLOP/s. Register blocking, 2 queries per work-item
 * so that each local k and v element feeds two multiply-adds, was slower:
 * 0.40-0.41 / 1.88-1.95 ms (128 x 16 and 128 x 32 tiles), and 4 queries
 * 1.35 / 7.27 ms; twice the registers cost more occupancy than the halved
 * local loads gained, so it was taken out again.
 */
#ifndef ROWS_TILE_Q
#define ROWS_TILE_Q 64
#endif
#ifndef ROWS_TILE_K
#define ROWS_TILE_K 32
#endif
#define RQ ROWS_TILE_Q
#define RK ROWS_TILE_K
#define HD4 (ATTN_HEAD_DIM / 4) /* ATTN_HEAD_DIM is a multiple of 4 here */

/* Launched as [query tiles * RQ, heads, B] with work-groups of 1 along
 * heads and sequences, which it reads through get_global_id: ln_enqueue
 * launches more than 65535 of either (the most an NVIDIA grid takes along
 * dimensions 1 and 2) in slices with global offsets. Query tiles vary
 * fastest, so the work-groups a GPU runs side by side share one head's k
 * and v tiles.
 *
 * Heads are those of one branch (has_table = 0: head h owns columns
 * h * ATTN_HEAD_DIM of q, k, v and out) or of every branch of a layer in
 * one launch (src/attention.c, ln_semantic_attention_layer), whose
 * branches lie in blocks: branch k's q, k and v a dense [rows, 3 w_k]
 * block at rows * 3 c_k of q (= k = v), its result a [rows, w_k] block at
 * rows * c_k of out (c_k: the widths before it). head_table holds per
 * head 3 c_k, w_k, c_k and its first column in the branch; temperature
 * holds every head's in that order. A branch of 2 heads alone fills few
 * of a GPU's cores (B = 8, n = 1024: 256 work-groups of 64 for an H200's
 * 132 SMs); all 26 heads of the default model's four branches together
 * fill them. One kernel serves both, so
 * the program declares its local tiles once: Oclgrind adds up every
 * kernel-scope __local array of a program against its 32 KiB.
 *
 * Measured on an H200 (2026-11-27, B = 8, n = 4096 / 1024, the kernel's
 * time over the four branches): one launch 40.2 / 2.52 ms against 44.4-44.8
 * / 2.85-2.87 per branch; n = 64: 0.034 against 0.111. That build had the
 * local tiles as kernel arguments and heads varying fastest (so a query
 * tile's heads would share S rows in L2), and per branch it took 44.4 ms
 * where this kernel as below took about 29 that morning (B = 8, n = 4096;
 * PyTorch's times within 1% in both runs): one of those two changes cost
 * 50%, both are undone here, and one launch with them undone has not run
 * on a GPU yet. A guess, not measured: without the tiles' declared
 * 16-byte alignment NVIDIA's compiler cannot use 16-byte local loads, and
 * the kernel is bound by its local loads. */
__kernel __attribute__((reqd_work_group_size(ROWS_TILE_Q, 1, 1)))
void attention_rows(const uint n,
                    __global const float *q, const uint q_off, const uint ldq,
                    __global const float *k, const uint k_off, const uint ldk,
                    __global const float *v, const uint v_off, const uint ldv,
                    __global const uint *head_table, /* [heads][3 c_k, w_k, c_k, column] */
                    const uint has_table, const uint rows,
                    __global const float *sim, /* S [B, n, n] */
                    __global const float *temperature,
                    __global const int *lengths, const uint has_lengths,
                    const float scale,
                    __global float *out, const uint out_off, const uint ldo)
{
    __local float k_t[RK * ATTN_HEAD_DIM] __attribute__((aligned(16))); /* [key][column] */
    __local float v_t[RK * ATTN_HEAD_DIM] __attribute__((aligned(16)));
    __local float s_t[RQ * (RK + 1)]; /* [query][key], rows padded by one */

    const uint lid = get_local_id(0);
    const uint q0 = get_group_id(0) * RQ;
    const uint h = get_global_id(1);
    const uint b = get_global_id(2);
    const uint row0 = b * n;
    const uint kv_len = kv_length(lengths, has_lengths, b, n);
    const uint last = kv_len - 1;
    /* Surplus work-items (queries past n) compute on row n - 1 and store nothing. */
    const uint qi = min(q0 + lid, n - 1);
    const head_view hv = head_columns(head_table, has_table, rows, h, q_off, ldq, k_off, ldk,
                                      v_off, ldv, out_off, ldo);
    const uint qc = hv.qc, kc = hv.kc, vc = hv.vc, oc = hv.oc;
    const uint ldq_h = hv.ldq, ldk_h = hv.ldk, ldv_h = hv.ldv, ldo_h = hv.ldo;

    float qv[ATTN_HEAD_DIM], acc[ATTN_HEAD_DIM];
    __global const float *qrow = q + qc + (row0 + qi) * ldq_h;
#pragma unroll
    for (uint c = 0; c < ATTN_HEAD_DIM; c++) {
        qv[c] = qrow[c] * scale; /* scale folded into q once */
        acc[c] = 0.0f;
    }
    const float t = temperature[h];
    float run_max = ATTN_MASKED, run_sum = 0.0f;

    for (uint j0 = 0; j0 < kv_len; j0 += RK) { /* uniform: kv_len is per group */
        barrier(CLK_LOCAL_MEM_FENCE);          /* the previous tile is consumed */
        /* Keys past kv_len read the last valid row (in bounds, finite);
         * their logits are masked below. Consecutive work-items read
         * consecutive columns of one row: coalesced. */
        for (uint e = lid; e < RK * HD4; e += RQ) {
            const uint j = e / HD4, c = e % HD4;
            const uint row = row0 + min(j0 + j, last);
            vstore4(vload4(c, k + kc + row * ldk_h), e, k_t);
            vstore4(vload4(c, v + vc + row * ldv_h), e, v_t);
        }
        for (uint e = lid; e < RQ * RK; e += RQ) {
            const uint i = e / RK, j = e % RK;
            const uint si = min(q0 + i, n - 1), sj = min(j0 + j, last);
            s_t[i * (RK + 1) + j] = sim[(row0 + si) * n + sj];
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        float logit[RK];
        float tile_max = run_max;
#pragma unroll
        for (uint j = 0; j < RK; j++) {
            float d0 = 0.0f, d1 = 0.0f, d2 = 0.0f, d3 = 0.0f; /* four independent FMA chains */
            __local const float *kj = k_t + j * ATTN_HEAD_DIM;
#pragma unroll
            for (uint c = 0; c < ATTN_HEAD_DIM; c += 4) {
                d0 = MADD(qv[c], kj[c], d0);
                d1 = MADD(qv[c + 1], kj[c + 1], d1);
                d2 = MADD(qv[c + 2], kj[c + 2], d2);
                d3 = MADD(qv[c + 3], kj[c + 3], d3);
            }
            const float x = MADD(t, s_t[lid * (RK + 1) + j], (d0 + d1) + (d2 + d3));
            logit[j] = j0 + j < kv_len ? x : ATTN_MASKED;
            tile_max = fmax(tile_max, logit[j]);
        }
        /* The first tile holds key 0 < kv_len, so tile_max is a real logit
         * and the empty initial state gets weight exp(MASKED - m) = 0. */
        const float r = exp(run_max - tile_max);
        run_max = tile_max;
        run_sum *= r;
#pragma unroll
        for (uint c = 0; c < ATTN_HEAD_DIM; c++)
            acc[c] *= r;
#pragma unroll
        for (uint j = 0; j < RK; j++) {
            const float p = exp(logit[j] - run_max);
            run_sum += p;
            __local const float *vj = v_t + j * ATTN_HEAD_DIM;
#pragma unroll
            for (uint c = 0; c < ATTN_HEAD_DIM; c++)
                acc[c] = MADD(p, vj[c], acc[c]);
        }
    }

    if (q0 + lid < n) {
        __global float *orow = out + oc + (row0 + q0 + lid) * ldo_h;
        const float inv = 1.0f / run_sum; /* >= 1: the row's max contributes exp(0) */
#pragma unroll
        for (uint c = 0; c < ATTN_HEAD_DIM; c++)
            orow[c] = acc[c] * inv;
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
 * keys); launched as [n * work-group, heads]. sim is S of sequence b:
 * [n, n] at sim_off. */
__kernel void attention_naive_softmax(const uint n, const uint heads, const uint b,
                                      __global float *logits,
                                      __global const float *sim, const uint sim_off,
                                      __global const float *temperature,
                                      __global const int *lengths, const uint has_lengths,
                                      __local float *scratch)
{
    const uint i = get_group_id(0), h = get_global_id(1);
    const uint lid = get_local_id(0), wg = get_local_size(0);
    const bool live = i < n && h < heads;
    const uint kv_len = kv_length(lengths, has_lengths, b, n);
    __global float *lr = logits + ((size_t)(live ? h : 0) * n + (live ? i : 0)) * n;
    __global const float *sr = sim + sim_off + (size_t)(live ? i : 0) * n;
    const float t = temperature[live ? h : 0];

    float m = ATTN_MASKED;
    if (live)
        for (uint j = lid; j < kv_len; j += wg) {
            const float x = MADD(t, sr[j], lr[j]);
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

#endif /* !ATTN_TILES */

#ifdef ATTN_TILES
/* ---- attention_tiles: register tiles of 4 queries x 4 keys, for GPUs ----
 *
 * attention_rows gives a work-item one query: each k or v element it
 * loads from local memory feeds one multiply-add (17 local loads per 64
 * FMAs per key at head_dim 32), and on an H200 it ran at 15-18 TFLOP/s,
 * about a quarter of fp32 peak. Two queries per work-item there doubled its
 * registers and was slower. Here the work-group's ATTN_TILES_Q queries x 32
 * keys of logits, and its queries x head_dim numerators, are split into
 * register blocks as a GEMM would split them: a work-item holds 4 queries
 * x 4 keys of logits and 4 queries x head_dim / 8 columns of numerators,
 * so a 16-byte local load feeds 4-16 multiply-adds (8 local loads per 64
 * FMAs), with fewer registers than attention_rows (no q row or head_dim
 * numerators per query).
 *
 * A work-item's queries are the same in both blocks (tq = lid % TL_QG),
 * so the softmax state of its 4 queries lives in its registers. The 8
 * work-items that share a query (g = lid / TL_QG: its 4 keys of the tile,
 * then its head_dim / 8 columns) each hold the running max, computed
 * identically from the same partial maxima in local memory, and a partial
 * running sum over their own keys, added up at the end. Three barriers per
 * key tile: the k and v tiles are staged; the partial maxima are written;
 * the probabilities are written.
 *
 * Same arguments, grid and head table as attention_rows, with 2 x
 * ATTN_TILES_Q work-items per group. ATTN_HEAD_DIM is a multiple of 8. */
#define TL_Q ATTN_TILES_Q         /* queries per work-group */
#define TL_QG (TL_Q / 4)          /* query blocks of 4 */
#define TL_K 32                   /* keys per tile: 8 blocks of 4 */
#define TL_WG (8 * TL_QG)         /* work-items */
#define TL_HD ATTN_HEAD_DIM
#define TL_DPT (TL_HD / 8)        /* numerator columns per work-item */
/* Row strides padded by 4 floats (16-byte aligned rows): the two query or
 * key blocks a warp's half-warps read then lie in different banks. */
#define TL_QST (TL_Q + 4)
#define TL_KST (TL_HD + 4)

__kernel __attribute__((reqd_work_group_size(TL_WG, 1, 1)))
void attention_tiles(const uint n,
                     __global const float *q, const uint q_off, const uint ldq,
                     __global const float *k, const uint k_off, const uint ldk,
                     __global const float *v, const uint v_off, const uint ldv,
                     __global const uint *head_table, /* [heads][3 c_k, w_k, c_k, column] */
                     const uint has_table, const uint rows,
                     __global const float *sim, /* S [B, n, n] */
                     __global const float *temperature,
                     __global const int *lengths, const uint has_lengths,
                     const float scale,
                     __global float *out, const uint out_off, const uint ldo)
{
    __local float q_t[TL_HD * TL_QST] __attribute__((aligned(16))); /* [column][query], scaled */
    __local float k_t[TL_K * TL_KST] __attribute__((aligned(16))); /* [key][column] */
    __local float v_t[TL_K * TL_HD] __attribute__((aligned(16)));  /* [key][column] */
    __local float p_t[TL_K * TL_QST] __attribute__((aligned(16))); /* [key][query] */
    __local float part[8 * TL_QST] __attribute__((aligned(16)));   /* [g][query] */

    const uint lid = get_local_id(0);
    const uint tq = lid % TL_QG, g = lid / TL_QG;
    const uint q0 = get_group_id(0) * TL_Q;
    const uint h = get_global_id(1);
    const uint b = get_global_id(2);
    const uint row0 = b * n;
    const uint kv_len = kv_length(lengths, has_lengths, b, n);
    const uint last = kv_len - 1;
    const head_view hv = head_columns(head_table, has_table, rows, h, q_off, ldq, k_off, ldk,
                                      v_off, ldv, out_off, ldo);
    const uint qc = hv.qc, kc = hv.kc, vc = hv.vc, oc = hv.oc;
    const uint ldq_h = hv.ldq, ldk_h = hv.ldk, ldv_h = hv.ldv, ldo_h = hv.ldo;

    /* The query tile, transposed and scaled once. Queries past n take row
     * n - 1 and store nothing. */
    for (uint e = lid; e < TL_Q * TL_HD; e += TL_WG) {
        const uint i = e / TL_HD, c = e % TL_HD;
        q_t[c * TL_QST + i] = q[qc + (row0 + min(q0 + i, n - 1)) * ldq_h + c] * scale;
    }
    /* This work-item's S rows: queries 4 tq .. 4 tq + 3. */
    __global const float *srow[4];
#pragma unroll
    for (uint qq = 0; qq < 4; qq++)
        srow[qq] = sim + (row0 + min(q0 + 4 * tq + qq, n - 1)) * n;

    const float t = temperature[h];
    float run_max[4], run_sum[4], acc[4 * TL_DPT]; /* [query][column] */
#pragma unroll
    for (uint qq = 0; qq < 4; qq++) {
        run_max[qq] = ATTN_MASKED;
        run_sum[qq] = 0.0f;
    }
#pragma unroll
    for (uint e = 0; e < 4 * TL_DPT; e++)
        acc[e] = 0.0f;

    for (uint j0 = 0; j0 < kv_len; j0 += TL_K) { /* uniform: kv_len is per group */
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile is consumed (and q_t staged) */
        /* Keys past kv_len read the last valid row; their logits are masked. */
        for (uint e = lid; e < TL_K * (TL_HD / 4); e += TL_WG) {
            const uint j = e / (TL_HD / 4), c4 = e % (TL_HD / 4);
            const uint row = row0 + min(j0 + j, last);
            vstore4(vload4(c4, k + kc + row * ldk_h), 0, k_t + j * TL_KST + 4 * c4);
            vstore4(vload4(c4, v + vc + row * ldv_h), e, v_t);
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        /* Logits of queries 4 tq + qq and keys 4 g + kk: l[qq * 4 + kk]. */
        float l[16];
#pragma unroll
        for (uint e = 0; e < 16; e++)
            l[e] = 0.0f;
#pragma unroll
        for (uint c = 0; c < TL_HD; c += 4) {
            const float4 qa0 = vload4(0, q_t + (c + 0) * TL_QST + 4 * tq);
            const float4 qa1 = vload4(0, q_t + (c + 1) * TL_QST + 4 * tq);
            const float4 qa2 = vload4(0, q_t + (c + 2) * TL_QST + 4 * tq);
            const float4 qa3 = vload4(0, q_t + (c + 3) * TL_QST + 4 * tq);
            const float qa[16] = {qa0.x, qa0.y, qa0.z, qa0.w, qa1.x, qa1.y, qa1.z, qa1.w,
                                  qa2.x, qa2.y, qa2.z, qa2.w, qa3.x, qa3.y, qa3.z, qa3.w};
#pragma unroll
            for (uint kk = 0; kk < 4; kk++) {
                const float4 kb = vload4(0, k_t + (4 * g + kk) * TL_KST + c);
#pragma unroll
                for (uint qq = 0; qq < 4; qq++) {
                    float x = l[qq * 4 + kk];
                    x = MADD(qa[qq], kb.x, x);
                    x = MADD(qa[4 + qq], kb.y, x);
                    x = MADD(qa[8 + qq], kb.z, x);
                    l[qq * 4 + kk] = MADD(qa[12 + qq], kb.w, x);
                }
            }
        }
        float m[4];
#pragma unroll
        for (uint qq = 0; qq < 4; qq++) {
            m[qq] = ATTN_MASKED;
#pragma unroll
            for (uint kk = 0; kk < 4; kk++) {
                const uint j = j0 + 4 * g + kk;
                const float x = MADD(t, srow[qq][min(j, last)], l[qq * 4 + kk]);
                l[qq * 4 + kk] = j < kv_len ? x : ATTN_MASKED;
                m[qq] = fmax(m[qq], l[qq * 4 + kk]);
            }
        }
        vstore4((float4)(m[0], m[1], m[2], m[3]), 0, part + g * TL_QST + 4 * tq);
        barrier(CLK_LOCAL_MEM_FENCE);

        /* The tile's max over all 8 key blocks; the tile holds key j0 <
         * kv_len, so it is a real logit and the empty initial state gets
         * weight exp(MASKED - max) = 0. */
#pragma unroll
        for (uint qq = 0; qq < 4; qq++)
            m[qq] = run_max[qq];
#pragma unroll
        for (uint gg = 0; gg < 8; gg++) {
            const float4 x = vload4(0, part + gg * TL_QST + 4 * tq);
            m[0] = fmax(m[0], x.x);
            m[1] = fmax(m[1], x.y);
            m[2] = fmax(m[2], x.z);
            m[3] = fmax(m[3], x.w);
        }
        float r[4];
#pragma unroll
        for (uint qq = 0; qq < 4; qq++) {
            r[qq] = exp(run_max[qq] - m[qq]);
            run_max[qq] = m[qq];
            run_sum[qq] *= r[qq];
        }
#pragma unroll
        for (uint kk = 0; kk < 4; kk++) {
            float p[4];
#pragma unroll
            for (uint qq = 0; qq < 4; qq++) {
                p[qq] = exp(l[qq * 4 + kk] - m[qq]);
                run_sum[qq] += p[qq];
            }
            vstore4((float4)(p[0], p[1], p[2], p[3]), 0, p_t + (4 * g + kk) * TL_QST + 4 * tq);
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        /* Numerators of queries 4 tq + qq, columns g * TL_DPT + dd. */
#pragma unroll
        for (uint qq = 0; qq < 4; qq++)
#pragma unroll
            for (uint dd = 0; dd < TL_DPT; dd++)
                acc[qq * TL_DPT + dd] *= r[qq];
        for (uint j = 0; j < TL_K; j++) {
            const float4 p = vload4(0, p_t + j * TL_QST + 4 * tq);
            __local const float *vj = v_t + j * TL_HD + g * TL_DPT;
#pragma unroll
            for (uint dd = 0; dd < TL_DPT; dd++) {
                const float x = vj[dd];
                acc[0 * TL_DPT + dd] = MADD(p.x, x, acc[0 * TL_DPT + dd]);
                acc[1 * TL_DPT + dd] = MADD(p.y, x, acc[1 * TL_DPT + dd]);
                acc[2 * TL_DPT + dd] = MADD(p.z, x, acc[2 * TL_DPT + dd]);
                acc[3 * TL_DPT + dd] = MADD(p.w, x, acc[3 * TL_DPT + dd]);
            }
        }
    }

    /* Every read of part happened before the last tile's third barrier. */
    vstore4((float4)(run_sum[0], run_sum[1], run_sum[2], run_sum[3]), 0,
            part + g * TL_QST + 4 * tq);
    barrier(CLK_LOCAL_MEM_FENCE);
    float sum[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (uint gg = 0; gg < 8; gg++) {
        const float4 x = vload4(0, part + gg * TL_QST + 4 * tq);
        sum[0] += x.x;
        sum[1] += x.y;
        sum[2] += x.z;
        sum[3] += x.w;
    }
#pragma unroll
    for (uint qq = 0; qq < 4; qq++)
        if (q0 + 4 * tq + qq < n) {
            __global float *orow = out + oc + (row0 + q0 + 4 * tq + qq) * ldo_h + g * TL_DPT;
            const float inv = 1.0f / sum[qq]; /* >= 1: the row's max contributes exp(0) */
#pragma unroll
            for (uint dd = 0; dd < TL_DPT; dd++)
                orow[dd] = acc[qq * TL_DPT + dd] * inv;
        }
}
#endif /* ATTN_TILES */
