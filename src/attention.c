/*
 * attention.c: semantic attention launched from cl/attention.cl: S = u u^T
 * by one batched GEMM (ln_similarity), the choice between precomputing S
 * and recomputing its tiles, the fused online-softmax kernels (all heads
 * per work-group for CPUs, one query per work-item for GPUs) with a tile
 * plan that fits the device's local memory, the host-array wrapper, and the
 * straightforward path that materialises the logits (for comparison only).
 */
#include "internal.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* When S tiles are recomputed, the query tile's u is held in local memory
 * for all key tiles if it fits, else staged again per key tile in chunks of
 * this many columns. */
#define ATTN_MIN_CHUNK_D 64

/* Tile sizes, vector width, register block and work-group size of one
 * build of attention_fused (cl/attention.cl explains each). */
typedef struct attn_plan {
    bool recompute;
    bool tiles; /* attention_tiles rather than attention_rows */
    size_t tile_q, tile_k, chunk_d, vec, block, wg;
} attn_plan;

/* Local memory of the kernel in floats: its static tiles plus the buffers
 * sized here (cl/attention.cl names them). */
static size_t plan_local_floats(const attn_plan *p, size_t heads, size_t head_dim)
{
    return 2 * p->tile_q * heads * head_dim             /* acc, q_t */
           + 2 * heads * p->tile_q                      /* running max and sum */
           + (p->recompute ? p->chunk_d * p->tile_q : 1) /* u_t */
           + 2 * p->tile_k * p->tile_q                  /* s_t, p_t */
           + p->tile_q;                                 /* rescale */
}

static size_t largest_pow2_dividing(size_t limit, size_t a, size_t b)
{
    size_t x = 1;
    while (x * 2 <= limit && a % (x * 2) == 0 && b % (x * 2) == 0)
        x *= 2;
    return x;
}

/* The tuned tiles (tp: ln-tune's for this shape's bucket, else the
 * context's) if they fit the device's local memory, else smaller ones
 * (u chunked first, then the per-query buffers, then the key tile), and
 * the vector width, register block and work-group size that go with them. */
static ln_status plan_fused(ln_context *ctx, const ln_params *tp, const char *op, size_t heads,
                            size_t head_dim, size_t d, bool recompute, attn_plan *p)
{
    p->recompute = recompute;
    p->tile_q = tp->attn_tile_q ? tp->attn_tile_q : 1;
    p->tile_k = tp->attn_tile_k ? tp->attn_tile_k : 1;
    /* d rounded up to 64 columns, so near sizes share one program. */
    p->chunk_d = recompute ? (d + ATTN_MIN_CHUNK_D - 1) / ATTN_MIN_CHUNK_D * ATTN_MIN_CHUNK_D : 0;
    const uint64_t budget = ctx->info.local_mem_bytes;
    while ((uint64_t)plan_local_floats(p, heads, head_dim) * sizeof(float) > budget) {
        if (recompute && p->chunk_d > ATTN_MIN_CHUNK_D)
            p->chunk_d = ATTN_MIN_CHUNK_D;
        else if (p->tile_q > 1 && (heads * head_dim >= p->tile_k || p->tile_k == 1))
            p->tile_q /= 2; /* per query: 2 x width floats of acc and q_t, 2 x tile_k of tiles */
        else if (p->tile_k > 1)
            p->tile_k /= 2;
        else if (recompute && p->chunk_d > 1)
            p->chunk_d /= 2;
        else
            return ln_fail(ctx, LN_ERROR_UNSUPPORTED,
                           "%s: %zu heads of %zu need %zu bytes of local memory even with "
                           "1 x 1 tiles; the device has %llu",
                           op, heads, head_dim,
                           plan_local_floats(p, heads, head_dim) * sizeof(float),
                           (unsigned long long)budget);
    }
    /* Queries are the vector lanes: the device's preferred float width
     * (16 on PoCL with AVX-512, 1 on NVIDIA) where it divides the tile and
     * the head. Blocks of 4 keys or rows per work-item: one vector load
     * feeds 4 FMAs. */
    cl_uint preferred = 1;
    if (clGetDeviceInfo(ctx->device, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, sizeof(preferred),
                        &preferred, NULL) != CL_SUCCESS)
        preferred = 1;
    p->vec = largest_pow2_dividing(preferred, p->tile_q, head_dim);
    p->block = largest_pow2_dividing(4, p->tile_q, p->tile_k);
    /* One work-item per register block of the logits or of P V, whichever
     * has more. */
    const size_t logit_items = p->tile_k / p->block * (p->tile_q / p->vec);
    const size_t pv_items = p->tile_q / p->block * (head_dim / p->vec);
    p->wg = logit_items > pv_items ? logit_items : pv_items;
    /* Capped by the tuned cap and the device; the kernel loops over what a
     * smaller group leaves. */
    if (p->wg > tp->wg_elementwise)
        p->wg = tp->wg_elementwise;
    if (p->wg > ctx->info.max_work_group_size)
        p->wg = ctx->info.max_work_group_size;
    if (p->wg == 0)
        p->wg = 1;
    return LN_SUCCESS;
}

/* attention_rows keeps a query's q row, numerators (head_dim floats each)
 * and one key tile of logits in registers: beyond 64 columns a GPU would
 * spill them, and the float4 loads need head_dim % 4 == 0. It reads S,
 * never recomputes it (that would cost d multiply-adds per pair per head). */
#define ROWS_MAX_HEAD_DIM 64

bool ln_attention_uses_rows(const ln_context *ctx, const ln_params *p, size_t head_dim,
                            bool recompute)
{
    if (recompute || head_dim % 4 != 0 || head_dim > ROWS_MAX_HEAD_DIM)
        return false;
    return p->attn_kernel == LN_ATTENTION_KERNEL_ROWS ||
           p->attn_kernel == LN_ATTENTION_KERNEL_TILES ||
           (p->attn_kernel == LN_ATTENTION_KERNEL_AUTO && ctx->info.is_gpu);
}

/* attention_tiles splits head_dim into 8 column blocks and loads 4 at a time. */
static bool uses_tiles(const ln_params *p, size_t head_dim)
{
    return p->attn_kernel == LN_ATTENTION_KERNEL_TILES && head_dim % 8 == 0;
}

static size_t rows_local_floats(size_t tile_q, size_t tile_k, size_t head_dim)
{
    return 2 * tile_k * head_dim + tile_q * (tile_k + 1); /* k and v tiles, padded S tile */
}

/* attention_tiles' tiles: 32 keys (8 blocks of 4) and up to 128 queries
 * (256 work-items). */
#define TILES_KEYS 32
#define TILES_MAX_Q 128

/* attention_tiles' query tile: attn_tile_q rounded up to a power of 2 in
 * 4..TILES_MAX_Q (a GPU's default 64: 128 work-items, 28 KiB of local
 * memory at head_dim 32). */
static size_t tiles_q(const ln_params *p)
{
    size_t q = 4;
    while (q < TILES_MAX_Q && q < p->attn_tile_q)
        q *= 2;
    return q;
}

/* attention_tiles' 32-key tiles: q_t, k_t, v_t, p_t and part, as declared in
 * cl/attention.cl. */
static size_t tiles_local_floats(size_t tile_q, size_t head_dim)
{
    return head_dim * (tile_q + 4) + TILES_KEYS * (head_dim + 4) + TILES_KEYS * head_dim +
           TILES_KEYS * (tile_q + 4) + 8 * (tile_q + 4);
}

/* Whether attention_tiles at tile_q queries fits the device's local
 * memory and work-group size (2 work-items per query). */
static bool tiles_fit(const ln_context *ctx, size_t tile_q, size_t head_dim)
{
    return (uint64_t)tiles_local_floats(tile_q, head_dim) * sizeof(float) <=
               ctx->info.local_mem_bytes &&
           2 * tile_q <= ctx->info.max_work_group_size;
}

size_t ln_attention_local_floats(const ln_context *ctx, const ln_params *p, size_t heads,
                                 size_t head_dim, size_t d, bool recompute)
{
    if (ln_attention_uses_rows(ctx, p, head_dim, recompute) && uses_tiles(p, head_dim))
        return tiles_local_floats(tiles_q(p), head_dim);
    if (ln_attention_uses_rows(ctx, p, head_dim, recompute))
        return rows_local_floats(p->attn_tile_q, p->attn_tile_k, head_dim);
    attn_plan plan = {.recompute = recompute, .tile_q = p->attn_tile_q, .tile_k = p->attn_tile_k,
                      .chunk_d = recompute ? (d + ATTN_MIN_CHUNK_D - 1) / ATTN_MIN_CHUNK_D *
                                                 ATTN_MIN_CHUNK_D
                                           : 0};
    return plan_local_floats(&plan, heads, head_dim);
}

/* attention_rows' plan: tile_q work-items (one per query), tile_k keys per
 * local tile; the key tile shrinks first, then the query tile, until the
 * tiles fit local memory and the group fits the device. */
static ln_status plan_rows(ln_context *ctx, const ln_params *tp, const char *op, size_t head_dim,
                           attn_plan *p)
{
    *p = (attn_plan){0};
    if (uses_tiles(tp, head_dim)) {
        /* 4 queries per work-item and 8 work-items per 4 queries: the
         * query tile halves until the tiles fit local memory and the group
         * the device. */
        p->tiles = true;
        p->tile_q = tiles_q(tp);
        p->tile_k = TILES_KEYS;
        while (p->tile_q > 4 && !tiles_fit(ctx, p->tile_q, head_dim))
            p->tile_q /= 2;
        if (!tiles_fit(ctx, p->tile_q, head_dim))
            return ln_fail(ctx, LN_ERROR_UNSUPPORTED,
                           "%s: attention_tiles at head_dim %zu needs %zu bytes of local "
                           "memory and 8 work-items; the device has %llu and %zu",
                           op, head_dim, tiles_local_floats(4, head_dim) * sizeof(float),
                           (unsigned long long)ctx->info.local_mem_bytes,
                           ctx->info.max_work_group_size);
        p->wg = 2 * p->tile_q;
        return LN_SUCCESS;
    }
    p->tile_q = tp->attn_tile_q ? tp->attn_tile_q : 1;
    p->tile_k = tp->attn_tile_k ? tp->attn_tile_k : 1;
    if (p->tile_q > ctx->info.max_work_group_size)
        p->tile_q = ctx->info.max_work_group_size;
    while ((uint64_t)rows_local_floats(p->tile_q, p->tile_k, head_dim) * sizeof(float) >
           ctx->info.local_mem_bytes) {
        if (p->tile_k > 1)
            p->tile_k /= 2;
        else if (p->tile_q > 1)
            p->tile_q /= 2;
        else
            return ln_fail(ctx, LN_ERROR_UNSUPPORTED,
                           "%s: head_dim %zu needs %zu bytes of local memory even with 1 x 1 "
                           "tiles; the device has %llu",
                           op, head_dim, rows_local_floats(1, 1, head_dim) * sizeof(float),
                           (unsigned long long)ctx->info.local_mem_bytes);
    }
    p->wg = p->tile_q;
    return LN_SUCCESS;
}

/* Builds attention_rows for the plan; a device that allows fewer
 * work-items for it gets a rebuild with a smaller query tile. */
static ln_status rows_kernel(ln_context *ctx, attn_plan *p, size_t head_dim, cl_kernel *out)
{
    for (;;) {
        char options[160];
        if (p->tiles)
            snprintf(options, sizeof(options),
                     "-DATTN_TILES=1 -DATTN_TILES_Q=%zu -DATTN_HEAD_DIM=%zu -DATTN_FMA=%d",
                     p->tile_q, head_dim, ctx->fp32_fma ? 1 : 0);
        else
            snprintf(options, sizeof(options),
                     "-DROWS_TILE_Q=%zu -DROWS_TILE_K=%zu -DATTN_HEAD_DIM=%zu -DATTN_FMA=%d",
                     p->tile_q, p->tile_k, head_dim, ctx->fp32_fma ? 1 : 0);
        ln_status st = ln_kernel_get(ctx, "attention", options,
                                     p->tiles ? "attention_tiles" : "attention_rows", out);
        if (st)
            return st;
        if (ln_kernel_wg_size(ctx, *out, p->wg, false) >= p->wg)
            return LN_SUCCESS;
        if (p->tiles) {
            if (p->tile_q <= 4)
                return ln_fail(ctx, LN_ERROR_UNSUPPORTED,
                               "attention_tiles: the device runs fewer than 8 work-items of it");
            p->tile_q /= 2;
            p->wg = 2 * p->tile_q;
        } else
            p->tile_q = p->wg = ln_kernel_wg_size(ctx, *out, p->wg, true);
    }
}

/* attention_rows' arguments. */
typedef struct rows_args {
    cl_mem q;
    cl_uint q_off, ldq;
    cl_mem k;
    cl_uint k_off, ldk;
    cl_mem v;
    cl_uint v_off, ldv;
    cl_mem head_table; /* NULL: one branch's heads, in order */
    cl_uint rows;      /* with a head_table: batch * n */
    cl_mem s, temperature, lengths;
    cl_mem out;
    cl_uint out_off, ldo;
} rows_args;

/* Heads and sequences lie along dimensions 1 and 2, where ln_enqueue
 * slices more than 65535 work-groups (NVIDIA's grid limit). */
static ln_status enqueue_rows(ln_context *ctx, const char *op, cl_kernel kern, const rows_args *a,
                              size_t batch, size_t n, size_t heads, size_t head_dim,
                              const attn_plan *plan)
{
    const cl_uint un = (cl_uint)n, has_table = a->head_table != NULL,
                  has_lengths = a->lengths != NULL;
    const float scale = (float)(1.0 / sqrt((double)head_dim));
    ln_status st = ln_set_args(
        ctx, kern, op, LN_ARG(un), LN_ARG(a->q), LN_ARG(a->q_off), LN_ARG(a->ldq), LN_ARG(a->k),
        LN_ARG(a->k_off), LN_ARG(a->ldk), LN_ARG(a->v), LN_ARG(a->v_off), LN_ARG(a->ldv),
        LN_ARG(a->head_table), LN_ARG(has_table), LN_ARG(a->rows), LN_ARG(a->s),
        LN_ARG(a->temperature), LN_ARG(a->lengths), LN_ARG(has_lengths), LN_ARG(scale),
        LN_ARG(a->out), LN_ARG(a->out_off), LN_ARG(a->ldo), LN_ARGS_END);
    if (st)
        return st;
    const size_t global[3] = {(n + plan->tile_q - 1) / plan->tile_q * plan->wg, heads, batch};
    const size_t local[3] = {plan->wg, 1, 1};
    return ln_enqueue(ctx, kern, 3, global, local, op);
}

static ln_status launch_rows(ln_context *ctx, const char *op, const ln_params *tp, size_t batch,
                             size_t n, size_t width, size_t head_dim, ln_dmat q, ln_dmat k,
                             ln_dmat v, cl_mem s, cl_mem temperature, cl_mem lengths, ln_dmat out)
{
    attn_plan plan;
    cl_kernel kern;
    ln_status st;
    if ((st = plan_rows(ctx, tp, op, head_dim, &plan)) ||
        (st = rows_kernel(ctx, &plan, head_dim, &kern)))
        return st;
    const rows_args a = {q.mem, (cl_uint)q.offset, (cl_uint)q.ld, k.mem, (cl_uint)k.offset,
                         (cl_uint)k.ld, v.mem, (cl_uint)v.offset, (cl_uint)v.ld, NULL, 0, s,
                         temperature, lengths, out.mem, (cl_uint)out.offset, (cl_uint)out.ld};
    return enqueue_rows(ctx, op, kern, &a, batch, n, width / head_dim, head_dim, &plan);
}

/* Builds attention_fused for the plan. The kernel declares its work-group
 * size (reqd_work_group_size), so a device that allows fewer work-items
 * for it gets a rebuild with the largest power of two it allows.
 * ATTN_FMA: the kernels' multiply-adds are fma() where the device does it
 * in hardware (CL_FP_FMA), mad() with -cl-mad-enable elsewhere (see the
 * kernel's comment for why and what it measured). */
static ln_status fused_kernel(ln_context *ctx, attn_plan *p, size_t head_dim, cl_kernel *out)
{
    for (;;) {
        char options[256];
        snprintf(options, sizeof(options),
                 "-DATTN_TILE_Q=%zu -DATTN_TILE_K=%zu -DATTN_CHUNK_D=%zu -DATTN_WG=%zu "
                 "-DATTN_HEAD_DIM=%zu -DATTN_VEC=%zu -DATTN_BLOCK=%zu -DATTN_RECOMPUTE_S=%d "
                 "-DATTN_FMA=%d -cl-mad-enable",
                 p->tile_q, p->tile_k, p->chunk_d, p->wg, head_dim, p->vec, p->block,
                 p->recompute ? 1 : 0, ctx->fp32_fma ? 1 : 0);
        ln_status st = ln_kernel_get(ctx, "attention", options, "attention_fused", out);
        if (st)
            return st;
        if (ln_kernel_wg_size(ctx, *out, p->wg, false) >= p->wg)
            return LN_SUCCESS;
        p->wg = ln_kernel_wg_size(ctx, *out, p->wg, true);
    }
}

static bool is_mode(ln_attention_mode mode)
{
    return mode == LN_ATTENTION_AUTO || mode == LN_ATTENTION_PRECOMPUTED_S ||
           mode == LN_ATTENTION_RECOMPUTE_S;
}

/* Whether S = B n^2 floats can exist on this device at all: one
 * allocation, 32-bit kernel indices. */
static bool s_fits_device(const ln_context *ctx, size_t batch, size_t n)
{
    double floats = (double)batch * (double)n * (double)n;
    return floats <= (double)UINT_MAX &&
           floats * sizeof(float) <= (double)ctx->info.max_alloc_bytes;
}

ln_attention_mode ln_attention_resolve_mode(const ln_context *ctx, size_t batch, size_t n)
{
    if (!ctx || !s_fits_device(ctx, batch, n))
        return LN_ATTENTION_RECOMPUTE_S;
    /* ln-tune's mode for this shape's bucket, else the context's, but the
     * context's (the mode every tuned bucket agreed on) only up to the
     * largest n ln-tune measured: the two modes' costs grow differently
     * with n. ln-tune --quick on the 2-core PoCL machine picked recompute
     * at n = 64 and 256; at B = 1, n = 4096 the forward then took 3557 ms
     * against 2602 with S precomputed (ln-bench, same run). */
    ln_params tp;
    bool own_bucket = ln_tuned_params_for(ctx, "attention", batch, n, &tp);
    uint64_t largest = ln_tuned_largest_n(ctx, "attention");
    bool measured_here = own_bucket || largest == 0 || ln_tune_bucket(n) <= largest;
    if (measured_here &&
        (tp.attn_mode == LN_ATTENTION_PRECOMPUTED_S || tp.attn_mode == LN_ATTENTION_RECOMPUTE_S))
        return (ln_attention_mode)tp.attn_mode;
    /* Within the budget; or a single sequence (the model's smallest chunk)
     * whose S takes at most 1/8 of device memory: precomputing it is
     * cheaper than recomputing its tiles per branch and head. */
    double bytes = (double)batch * (double)n * (double)n * sizeof(float);
    bool fits = bytes <= (double)ctx->params.attn_s_budget_bytes ||
                (batch == 1 && bytes <= (double)ctx->info.global_mem_bytes / 8);
    return fits ? LN_ATTENTION_PRECOMPUTED_S : LN_ATTENTION_RECOMPUTE_S;
}

/* S = u u^T per sequence, against u (CLBlast transposes it) or, given
 * unit_t, against each sequence's u^T as it is. */
static ln_status similarity(ln_context *ctx, const char *op, size_t batch, size_t n, size_t d,
                            cl_mem unit, cl_mem unit_t, cl_mem s)
{
    LN_CHECK_CTX(ctx);
    if (batch == 0 || n == 0 || d == 0)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT,
                       "%s: batch (%zu), n (%zu) and d (%zu) must be > 0", op, batch, n, d);
    ln_status st;
    if ((st = ln_check_mem(ctx, op, "unit", unit, 0, batch * n * d)) ||
        (unit_t && (st = ln_check_mem(ctx, op, "unit_t", unit_t, 0, batch * n * d))) ||
        (st = ln_check_mem(ctx, op, "s", s, 0, batch * n * n)))
        return st;
    ln_dmat second = unit_t ? ln_dmat_of(unit_t, n) : ln_dmat_of(unit, d);
    return ln_gemm_batched(ctx, false, !unit_t, n, n, d, 1.0f, ln_dmat_of(unit, d), n * d, second,
                           n * d, 0.0f, ln_dmat_of(s, n), n * n, batch, op);
}

ln_status ln_similarity(ln_context *ctx, size_t batch, size_t n, size_t d, cl_mem unit, cl_mem s)
{
    return similarity(ctx, "ln_similarity", batch, n, d, unit, NULL, s);
}

ln_status ln_similarity_t(ln_context *ctx, size_t batch, size_t n, size_t d, cl_mem unit,
                          cl_mem unit_t, cl_mem s)
{
    if (!unit_t)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "ln_similarity_t: unit_t is NULL");
    return similarity(ctx, "ln_similarity_t", batch, n, d, unit, unit_t, s);
}

static ln_status check_sizes(ln_context *ctx, const char *op, size_t batch, size_t n,
                             size_t width, size_t head_dim, size_t d)
{
    if (batch == 0 || n == 0 || width == 0 || head_dim == 0 || d == 0)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT,
                       "%s: batch (%zu), n (%zu), width (%zu), head_dim (%zu) and d (%zu) "
                       "must be > 0",
                       op, batch, n, width, head_dim, d);
    if (width % head_dim != 0)
        return ln_fail(ctx, LN_ERROR_SHAPE_MISMATCH,
                       "%s: width %zu is not a multiple of head_dim %zu", op, width, head_dim);
    return LN_SUCCESS;
}

/* Checks shared by the fused and the materialising paths. */
static ln_status check_attention(ln_context *ctx, const char *op, size_t batch, size_t n,
                                 size_t width, size_t head_dim, size_t d, ln_dmat q, ln_dmat k,
                                 ln_dmat v, cl_mem unit, bool need_unit, cl_mem s,
                                 cl_mem temperature, cl_mem lengths, ln_dmat out)
{
    ln_status st = check_sizes(ctx, op, batch, n, width, head_dim, d);
    if (st)
        return st;
    const size_t rows = batch * n;
    if ((st = ln_check_view(ctx, op, "q", q, rows, width)) ||
        (st = ln_check_view(ctx, op, "k", k, rows, width)) ||
        (st = ln_check_view(ctx, op, "v", v, rows, width)) ||
        (st = ln_check_view(ctx, op, "out", out, rows, width)) ||
        (st = ln_check_mem(ctx, op, "temperature", temperature, 0, width / head_dim)))
        return st;
    if (need_unit && (st = ln_check_mem(ctx, op, "unit", unit, 0, rows * d)))
        return st;
    if (s && (st = ln_check_mem(ctx, op, "s", s, 0, batch * n * n)))
        return st;
    /* int32 and float have one size: ln_check_mem counts 4-byte elements. */
    if (lengths && (st = ln_check_mem(ctx, op, "lengths", lengths, 0, batch)))
        return st;
    const ln_dmat views[] = {q, k, v, out};
    for (size_t i = 0; i < 4; i++)
        if ((double)views[i].offset + (double)rows * (double)views[i].ld > (double)UINT_MAX)
            return ln_fail(ctx, LN_ERROR_UNSUPPORTED,
                           "%s: a [%zu, %zu] view with ld %zu exceeds 2^32 elements", op, rows,
                           width, views[i].ld);
    if ((double)rows * (double)d > (double)UINT_MAX)
        return ln_fail(ctx, LN_ERROR_UNSUPPORTED, "%s: unit [%zu, %zu] exceeds 2^32 elements",
                       op, rows, d);
    return LN_SUCCESS;
}

static ln_status launch_fused(ln_context *ctx, const char *op, size_t batch, size_t n,
                              size_t width, size_t head_dim, size_t d, ln_dmat q, ln_dmat k,
                              ln_dmat v, cl_mem sim_source, bool recompute, cl_mem temperature,
                              cl_mem lengths, ln_dmat out)
{
    const size_t heads = width / head_dim;
    attn_plan plan = {0};
    cl_kernel kern;
    ln_status st;
    /* Tiles tuned at this (B, n) bucket win over the device-wide ones (the
     * largest tuned shape's): ln-tune measured them at this size. */
    ln_params tp;
    ln_tuned_params_for(ctx, "attention", batch, n, &tp);
    if (ln_attention_uses_rows(ctx, &tp, head_dim, recompute))
        return launch_rows(ctx, op, &tp, batch, n, width, head_dim, q, k, v, sim_source,
                           temperature, lengths, out);
    if ((st = plan_fused(ctx, &tp, op, heads, head_dim, d, recompute, &plan)) ||
        (st = fused_kernel(ctx, &plan, head_dim, &kern)))
        return st;
    const cl_uint un = (cl_uint)n, uheads = (cl_uint)heads, ud = (cl_uint)d;
    const cl_uint qo = (cl_uint)q.offset, qld = (cl_uint)q.ld, ko = (cl_uint)k.offset,
                  kld = (cl_uint)k.ld, vo = (cl_uint)v.offset, vld = (cl_uint)v.ld,
                  oo = (cl_uint)out.offset, old = (cl_uint)out.ld;
    const cl_uint has_lengths = lengths != NULL;
    const float scale = (float)(1.0 / sqrt((double)head_dim));
    if ((st = ln_set_args(ctx, kern, op, LN_ARG(un), LN_ARG(uheads), LN_ARG(ud), LN_ARG(q.mem),
                          LN_ARG(qo), LN_ARG(qld), LN_ARG(k.mem), LN_ARG(ko), LN_ARG(kld),
                          LN_ARG(v.mem), LN_ARG(vo), LN_ARG(vld), LN_ARG(sim_source),
                          LN_ARG(temperature), LN_ARG(lengths), LN_ARG(has_lengths),
                          LN_ARG(scale), LN_ARG(out.mem), LN_ARG(oo), LN_ARG(old),
                          LN_LOCAL(plan.tile_q * width * sizeof(float)),
                          LN_LOCAL(width * plan.tile_q * sizeof(float)),
                          LN_LOCAL(2 * heads * plan.tile_q * sizeof(float)),
                          LN_LOCAL((recompute ? plan.chunk_d * plan.tile_q : 1) * sizeof(float)),
                          LN_ARGS_END)))
        return st;
    const size_t global[2] = {(n + plan.tile_q - 1) / plan.tile_q * plan.wg, batch};
    const size_t local[2] = {plan.wg, 1};
    return ln_enqueue(ctx, kern, 2, global, local, op);
}

/* A precomputed S that the caller did not give: made here for one call
 * (the caller releases it; OpenCL keeps it until its kernels are done). */
static ln_status own_similarity(ln_context *ctx, const char *op, size_t batch, size_t n, size_t d,
                                cl_mem unit, cl_mem *s)
{
    ln_status st = ln_buffer_create(ctx, batch * n * n * sizeof(float), s, op);
    if (!st && (st = ln_similarity(ctx, batch, n, d, unit, *s))) {
        ln_buffer_release(ctx, *s);
        *s = NULL;
    }
    return st;
}

ln_status ln_semantic_attention(ln_context *ctx, size_t batch, size_t n, size_t width,
                                size_t head_dim, size_t d, ln_dmat q, ln_dmat k, ln_dmat v,
                                cl_mem unit, cl_mem s, cl_mem temperature, cl_mem lengths,
                                ln_attention_mode mode, ln_dmat out)
{
    LN_CHECK_CTX(ctx);
    const char *op = "ln_semantic_attention";
    if (!is_mode(mode))
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "%s: mode %d is not an ln_attention_mode",
                       op, (int)mode);
    if (mode == LN_ATTENTION_AUTO)
        mode = s ? LN_ATTENTION_PRECOMPUTED_S : ln_attention_resolve_mode(ctx, batch, n);
    const bool recompute = mode == LN_ATTENTION_RECOMPUTE_S;
    if (recompute)
        s = NULL;
    ln_status st = check_attention(ctx, op, batch, n, width, head_dim, d, q, k, v, unit, !s,
                                   s, temperature, lengths, out);
    if (st)
        return st;
    if (recompute)
        return launch_fused(ctx, op, batch, n, width, head_dim, d, q, k, v, unit, true,
                            temperature, lengths, out);
    if (!s_fits_device(ctx, batch, n))
        return ln_fail(ctx, LN_ERROR_UNSUPPORTED,
                       "%s: S for batch %zu, n %zu does not fit one allocation with 32-bit "
                       "indices; use LN_ATTENTION_RECOMPUTE_S",
                       op, batch, n);
    if (s)
        return launch_fused(ctx, op, batch, n, width, head_dim, d, q, k, v, s, false,
                            temperature, lengths, out);
    cl_mem own_s = NULL;
    if ((st = own_similarity(ctx, op, batch, n, d, unit, &own_s)))
        return st;
    st = launch_fused(ctx, op, batch, n, width, head_dim, d, q, k, v, own_s, false, temperature,
                      lengths, out);
    ln_buffer_release(ctx, own_s);
    return st;
}

ln_status ln_attention_head_table(ln_context *ctx, size_t count, const size_t *width,
                                  size_t head_dim, cl_mem *out)
{
    LN_CHECK_CTX(ctx);
    const char *op = "ln_attention_head_table";
    if (!out || !width || count == 0 || head_dim == 0)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT,
                       "%s: needs widths, an output and count, head_dim > 0", op);
    *out = NULL;
    size_t heads = 0, sum = 0;
    for (size_t k = 0; k < count; k++) {
        if (width[k] == 0 || width[k] % head_dim != 0)
            return ln_fail(ctx, LN_ERROR_SHAPE_MISMATCH,
                           "%s: branch %zu's width %zu is not a positive multiple of head_dim %zu",
                           op, k, width[k], head_dim);
        heads += width[k] / head_dim;
        sum += width[k];
    }
    if ((double)sum * 3 > (double)UINT_MAX)
        return ln_fail(ctx, LN_ERROR_UNSUPPORTED, "%s: %zu columns exceed 32-bit indices", op,
                       sum);
    cl_uint *table = malloc(4 * heads * sizeof(cl_uint));
    if (!table)
        return ln_fail(ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "%s: out of host memory", op);
    size_t h = 0, before = 0;
    for (size_t k = 0; k < count; before += width[k], k++)
        for (size_t i = 0; i < width[k] / head_dim; i++, h++) {
            table[4 * h + 0] = (cl_uint)(3 * before);
            table[4 * h + 1] = (cl_uint)width[k];
            table[4 * h + 2] = (cl_uint)before;
            table[4 * h + 3] = (cl_uint)(i * head_dim);
        }
    ln_status st = ln_buffer_from_host(ctx, table, 4 * heads * sizeof(cl_uint), out,
                                       "attention head table");
    if (!st) /* the upload is asynchronous; table must outlive it */
        st = ln_context_finish(ctx);
    free(table);
    return st;
}

/* tp: the tuned params for this shape's bucket; mode resolved. */
static bool one_launch_for(const ln_context *ctx, const ln_params *tp, size_t head_dim,
                           ln_attention_mode mode)
{
    return mode == LN_ATTENTION_PRECOMPUTED_S && !ctx->attn_per_branch &&
           ln_attention_uses_rows(ctx, tp, head_dim, false);
}

bool ln_attention_layer_in_one_launch(ln_context *ctx, size_t batch, size_t n, size_t head_dim,
                                      ln_attention_mode mode)
{
    if (mode == LN_ATTENTION_AUTO)
        mode = ln_attention_resolve_mode(ctx, batch, n);
    ln_params tp;
    ln_tuned_params_for(ctx, "attention", batch, n, &tp);
    return one_launch_for(ctx, &tp, head_dim, mode);
}

/* One ln_semantic_attention per branch, on its blocks of qkv and out. */
static ln_status layer_by_branch(ln_context *ctx, size_t batch, size_t n, size_t head_dim,
                                 size_t d, const ln_attention_layer *layer, cl_mem qkv,
                                 cl_mem unit, cl_mem s, cl_mem lengths, ln_attention_mode mode,
                                 cl_mem out)
{
    const size_t rows = batch * n;
    size_t before = 0;
    for (size_t k = 0; k < layer->count; before += layer->width[k], k++) {
        const size_t w = layer->width[k];
        const ln_dmat q = ln_layer_qkv_block(qkv, rows, before, w),
                      kk = {qkv, q.offset + w, q.ld}, v = {qkv, q.offset + 2 * w, q.ld},
                      o = ln_layer_out_block(out, rows, before, w);
        ln_status st = ln_semantic_attention(ctx, batch, n, w, head_dim, d, q, kk, v, unit, s,
                                             layer->temperature[k], lengths, mode, o);
        if (st)
            return st;
    }
    return LN_SUCCESS;
}

ln_status ln_semantic_attention_layer(ln_context *ctx, size_t batch, size_t n, size_t head_dim,
                                      size_t d, const ln_attention_layer *layer, cl_mem qkv,
                                      cl_mem unit, cl_mem s, cl_mem lengths,
                                      ln_attention_mode mode, cl_mem out)
{
    LN_CHECK_CTX(ctx);
    const char *op = "ln_semantic_attention_layer";
    if (!layer || layer->count == 0 || !layer->width || !layer->temperature)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "%s: no branches", op);
    if (!is_mode(mode))
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "%s: mode %d is not an ln_attention_mode",
                       op, (int)mode);
    size_t sum = 0;
    for (size_t k = 0; k < layer->count; k++) {
        ln_status st = check_sizes(ctx, op, batch, n, layer->width[k], head_dim, d);
        if (st)
            return st;
        sum += layer->width[k];
    }
    const size_t rows = batch * n, heads = sum / head_dim;
    ln_status st;
    if ((st = ln_check_mem(ctx, op, "qkv", qkv, 0, rows * 3 * sum)) ||
        (st = ln_check_mem(ctx, op, "out", out, 0, rows * sum)))
        return st;
    if ((double)rows * 3 * (double)sum > (double)UINT_MAX)
        return ln_fail(ctx, LN_ERROR_UNSUPPORTED,
                       "%s: qkv of %zu rows x %zu columns exceeds 2^32 elements", op, rows,
                       3 * sum);
    if (mode == LN_ATTENTION_AUTO)
        mode = s ? LN_ATTENTION_PRECOMPUTED_S : ln_attention_resolve_mode(ctx, batch, n);
    ln_params tp;
    ln_tuned_params_for(ctx, "attention", batch, n, &tp);
    const bool one_launch = layer->head_table && layer->all_temperature &&
                            one_launch_for(ctx, &tp, head_dim, mode);
    if (!one_launch && !(mode == LN_ATTENTION_PRECOMPUTED_S && !s))
        return layer_by_branch(ctx, batch, n, head_dim, d, layer, qkv, unit, s, lengths, mode,
                               out);

    if ((!s && (st = ln_check_mem(ctx, op, "unit", unit, 0, rows * d))) ||
        (s && (st = ln_check_mem(ctx, op, "s", s, 0, batch * n * n))) ||
        (lengths && (st = ln_check_mem(ctx, op, "lengths", lengths, 0, batch))))
        return st;
    if (one_launch &&
        ((st = ln_check_mem(ctx, op, "all_temperature", layer->all_temperature, 0, heads)) ||
         (st = ln_check_mem(ctx, op, "head_table", layer->head_table, 0, 4 * heads))))
        return st;
    if (!s_fits_device(ctx, batch, n))
        return ln_fail(ctx, LN_ERROR_UNSUPPORTED,
                       "%s: S for batch %zu, n %zu does not fit one allocation with 32-bit "
                       "indices; use LN_ATTENTION_RECOMPUTE_S",
                       op, batch, n);
    /* Precomputed S not given: made once here for every branch. */
    cl_mem own_s = NULL;
    if (!s) {
        if ((st = own_similarity(ctx, op, batch, n, d, unit, &own_s)))
            return st;
        s = own_s;
    }
    if (!one_launch)
        st = layer_by_branch(ctx, batch, n, head_dim, d, layer, qkv, unit, s, lengths, mode, out);
    else {
        attn_plan plan;
        cl_kernel kern;
        if (!(st = plan_rows(ctx, &tp, op, head_dim, &plan)) &&
            !(st = rows_kernel(ctx, &plan, head_dim, &kern))) {
            /* The table supplies every head's offsets and leading dimensions. */
            const rows_args a = {.q = qkv,
                                 .k = qkv,
                                 .v = qkv,
                                 .head_table = layer->head_table,
                                 .rows = (cl_uint)rows,
                                 .s = s,
                                 .temperature = layer->all_temperature,
                                 .lengths = lengths,
                                 .out = out};
            st = enqueue_rows(ctx, op, kern, &a, batch, n, heads, head_dim, &plan);
        }
    }
    ln_buffer_release(ctx, own_s);
    return st;
}

ln_status ln_semantic_attention_host(ln_context *ctx, size_t batch, size_t n, size_t width,
                                     size_t head_dim, size_t d, const float *q, const float *k,
                                     const float *v, const float *unit,
                                     const float *temperature, const int32_t *lengths,
                                     ln_attention_mode mode, float *out)
{
    LN_CHECK_CTX(ctx);
    const char *op = "ln_semantic_attention_host";
    if (!q || !k || !v || !unit || !temperature || !out)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "%s: a host pointer is NULL", op);
    ln_status st = check_sizes(ctx, op, batch, n, width, head_dim, d);
    if (st)
        return st;
    if (lengths)
        for (size_t b = 0; b < batch; b++)
            if (lengths[b] < 1 || (uint64_t)lengths[b] > n)
                return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT,
                               "%s: lengths[%zu] = %d is outside 1..n (n = %zu)", op, b,
                               (int)lengths[b], n);
    const size_t rows = batch * n, mat = rows * width * sizeof(float);
    cl_mem dq = NULL, dk = NULL, dv = NULL, du = NULL, dt = NULL, dl = NULL, dout = NULL;
    st = ln_buffer_from_host(ctx, q, mat, &dq, op);
    if (!st)
        st = ln_buffer_from_host(ctx, k, mat, &dk, op);
    if (!st)
        st = ln_buffer_from_host(ctx, v, mat, &dv, op);
    if (!st)
        st = ln_buffer_from_host(ctx, unit, rows * d * sizeof(float), &du, op);
    if (!st)
        st = ln_buffer_from_host(ctx, temperature, width / head_dim * sizeof(float), &dt, op);
    if (!st && lengths)
        st = ln_buffer_from_host(ctx, lengths, batch * sizeof(int32_t), &dl, op);
    if (!st)
        st = ln_buffer_create(ctx, mat, &dout, op);
    if (!st)
        st = ln_semantic_attention(ctx, batch, n, width, head_dim, d, ln_dmat_of(dq, width),
                                   ln_dmat_of(dk, width), ln_dmat_of(dv, width), du, NULL, dt,
                                   dl, mode, ln_dmat_of(dout, width));
    if (!st)
        st = ln_buffer_to_host(ctx, dout, out, mat);
    ln_buffer_release(ctx, dq);
    ln_buffer_release(ctx, dk);
    ln_buffer_release(ctx, dv);
    ln_buffer_release(ctx, du);
    ln_buffer_release(ctx, dt);
    ln_buffer_release(ctx, dl);
    ln_buffer_release(ctx, dout);
    return st;
}

/* The straightforward path, one sequence at a time: logits [H, n, n] =
 * Q K^T * scale by a batched GEMM over heads (head h is a column slice, so
 * consecutive heads are head_dim floats apart), the softmax kernel adds
 * temperature * S and masks, then out = P V by a second batched GEMM. */
ln_status ln_semantic_attention_naive(ln_context *ctx, size_t batch, size_t n, size_t width,
                                      size_t head_dim, size_t d, ln_dmat q, ln_dmat k, ln_dmat v,
                                      cl_mem unit, cl_mem s, cl_mem temperature, cl_mem lengths,
                                      ln_dmat out)
{
    LN_CHECK_CTX(ctx);
    const char *op = "ln_semantic_attention_naive";
    ln_status st = check_attention(ctx, op, batch, n, width, head_dim, d, q, k, v, unit, !s, s,
                                   temperature, lengths, out);
    if (st)
        return st;
    const size_t heads = width / head_dim;
    if (!s_fits_device(ctx, batch, n) || !s_fits_device(ctx, heads, n))
        return ln_fail(ctx, LN_ERROR_UNSUPPORTED, "%s: S or the logits of %zu heads x %zu^2 "
                       "do not fit one allocation", op, heads, n);
    cl_kernel softmax;
    if ((st = ln_kernel_get(ctx, "attention", "", "attention_naive_softmax", &softmax)))
        return st;
    const size_t wg = ln_kernel_wg_size(ctx, softmax, ctx->params.wg_layernorm, true);
    cl_mem own_s = NULL, logits = NULL;
    if (!s && !(st = ln_buffer_create(ctx, batch * n * n * sizeof(float), &own_s, op)))
        st = ln_similarity(ctx, batch, n, d, unit, own_s);
    if (!st)
        st = ln_buffer_create(ctx, heads * n * n * sizeof(float), &logits, op);
    const cl_mem sim = s ? s : own_s;
    const float scale = (float)(1.0 / sqrt((double)head_dim));
    const cl_uint un = (cl_uint)n, uheads = (cl_uint)heads, has_lengths = lengths != NULL;
    for (size_t b = 0; b < batch && !st; b++) {
        const ln_dmat qb = {q.mem, q.offset + b * n * q.ld, q.ld};
        const ln_dmat kb = {k.mem, k.offset + b * n * k.ld, k.ld};
        const ln_dmat vb = {v.mem, v.offset + b * n * v.ld, v.ld};
        const ln_dmat ob = {out.mem, out.offset + b * n * out.ld, out.ld};
        const ln_dmat lg = ln_dmat_of(logits, n);
        const cl_uint ub = (cl_uint)b, sim_off = (cl_uint)(b * n * n);
        const size_t global[2] = {n * wg, heads}, local[2] = {wg, 1};
        if (!(st = ln_gemm_batched(ctx, false, true, n, n, head_dim, scale, qb, head_dim, kb,
                                   head_dim, 0.0f, lg, n * n, heads, op)) &&
            !(st = ln_set_args(ctx, softmax, op, LN_ARG(un), LN_ARG(uheads), LN_ARG(ub),
                               LN_ARG(logits), LN_ARG(sim), LN_ARG(sim_off), LN_ARG(temperature),
                               LN_ARG(lengths), LN_ARG(has_lengths),
                               LN_LOCAL(wg * sizeof(float)), LN_ARGS_END)) &&
            !(st = ln_enqueue(ctx, softmax, 2, global, local, op)))
            st = ln_gemm_batched(ctx, false, false, n, head_dim, n, 1.0f, lg, n * n, vb,
                                 head_dim, 0.0f, ob, head_dim, heads, op);
    }
    ln_buffer_release(ctx, own_s);
    ln_buffer_release(ctx, logits);
    return st;
}
