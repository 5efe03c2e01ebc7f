/*
 * attention_bench.c: times semantic attention on the context's device
 * (LN_DEVICE, else the default): the fused kernels reading a precomputed S
 * (attention_fused, the CPU's, and attention_rows and attention_tiles, the
 * GPU's, each forced, attention_tiles also at 32 and 128 queries per
 * work-group; and the largest difference between the rows and tiles
 * outputs), the S GEMM itself, the fused kernel recomputing S tiles, and the
 * straightforward path that materialises the logits [H, n, n] (S GEMM,
 * Q K^T GEMM, softmax kernel, P V GEMM). B = 1, 12 heads of 32, d = 384.
 *
 *   attention_bench [n ...]        default n: 256 1024 4096
 *
 * Each figure is the median of repeats after one warm-up run, measured by
 * OpenCL profiling on markers enqueued around the run (in-order queue), so
 * it counts device time only.
 */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define HEADS 12
#define HEAD_DIM 32
#define WIDTH (HEADS * HEAD_DIM)
#define D_MODEL 384

typedef enum run_kind {
    RUN_S_GEMM,
    RUN_FUSED_PRE,
    RUN_ROWS_PRE,
    RUN_TILES_PRE,
    RUN_TILES32_PRE,
    RUN_TILES128_PRE,
    RUN_FUSED_RECOMPUTE,
    RUN_NAIVE,
    RUN_KINDS
} run_kind;
static const char *const run_names[RUN_KINDS] = {"S GEMM",       "fused, S read",
                                                 "rows, S read", "tiles, S read",
                                                 "tiles 32, S read", "tiles 128, S read",
                                                 "fused, S recomputed", "materialised"};

typedef struct bench_bufs {
    ln_dmat q, k, v, out;
    cl_mem unit, s, temperature;
} bench_bufs;

static void die(ln_context *ctx, ln_status st, const char *what)
{
    fprintf(stderr, "attention_bench: %s: %s: %s\n", what, ln_status_string(st),
            ln_last_error(ctx));
    exit(EXIT_FAILURE);
}

static cl_mem random_buffer(ln_context *ctx, size_t floats, float lo, float hi, uint64_t *rng)
{
    float *host = malloc(floats * sizeof(float));
    if (!host)
        die(ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "host buffer");
    for (size_t i = 0; i < floats; i++) {
        *rng ^= *rng << 13, *rng ^= *rng >> 7, *rng ^= *rng << 17;
        host[i] = lo + (hi - lo) * (float)((*rng >> 40) / 16777216.0);
    }
    cl_mem m;
    ln_status st = ln_buffer_from_host(ctx, host, floats * sizeof(float), &m, "bench input");
    if (st)
        die(ctx, st, "uploading inputs");
    clFinish(ln_context_cl_queue(ctx));
    free(host);
    return m;
}

/* The query tile by default (src/params.c). */
static size_t default_tile_q;

static ln_status run_once(ln_context *ctx, run_kind kind, size_t n, const bench_bufs *b)
{
    switch (kind) {
    case RUN_S_GEMM:
        return ln_similarity(ctx, 1, n, D_MODEL, b->unit, b->s);
    case RUN_FUSED_PRE:
    case RUN_ROWS_PRE:
    case RUN_TILES_PRE:
    case RUN_TILES32_PRE:
    case RUN_TILES128_PRE:
        ctx->params.attn_kernel = kind == RUN_ROWS_PRE    ? LN_ATTENTION_KERNEL_ROWS
                                  : kind == RUN_FUSED_PRE ? LN_ATTENTION_KERNEL_FUSED
                                                          : LN_ATTENTION_KERNEL_TILES;
        /* attention_tiles' query tile is attn_tile_q (src/attention.c). */
        ctx->params.attn_tile_q = kind == RUN_TILES32_PRE    ? 32
                                  : kind == RUN_TILES128_PRE ? 128
                                                             : default_tile_q;
        return ln_semantic_attention(ctx, 1, n, WIDTH, HEAD_DIM, D_MODEL, b->q, b->k, b->v, b->unit,
                                     b->s, b->temperature, NULL, LN_ATTENTION_PRECOMPUTED_S, b->out);
    case RUN_FUSED_RECOMPUTE:
        ctx->params.attn_kernel = LN_ATTENTION_KERNEL_AUTO;
        return ln_semantic_attention(ctx, 1, n, WIDTH, HEAD_DIM, D_MODEL, b->q, b->k, b->v, b->unit,
                                     NULL, b->temperature, NULL, LN_ATTENTION_RECOMPUTE_S, b->out);
    default:
        return ln_semantic_attention_naive(ctx, 1, n, WIDTH, HEAD_DIM, D_MODEL, b->q, b->k, b->v,
                                           b->unit, NULL, b->temperature, NULL, b->out);
    }
}

/* Device milliseconds of one run: from a marker before it to one after. */
static double timed_run(ln_context *ctx, run_kind kind, size_t n, const bench_bufs *b)
{
    cl_command_queue queue = ln_context_cl_queue(ctx);
    cl_event before, after;
    clFinish(queue);
    if (clEnqueueMarkerWithWaitList(queue, 0, NULL, &before) != CL_SUCCESS)
        die(ctx, LN_ERROR_UNSUPPORTED, "enqueueing a marker");
    ln_status st = run_once(ctx, kind, n, b);
    if (st)
        die(ctx, st, run_names[kind]);
    if (clEnqueueMarkerWithWaitList(queue, 0, NULL, &after) != CL_SUCCESS)
        die(ctx, LN_ERROR_UNSUPPORTED, "enqueueing a marker");
    clFinish(queue);
    cl_ulong t0 = 0, t1 = 0;
    if (clGetEventProfilingInfo(before, CL_PROFILING_COMMAND_END, sizeof(t0), &t0, NULL) ||
        clGetEventProfilingInfo(after, CL_PROFILING_COMMAND_END, sizeof(t1), &t1, NULL))
        die(ctx, LN_ERROR_UNSUPPORTED, "reading profiling times of markers");
    clReleaseEvent(before);
    clReleaseEvent(after);
    return (double)(t1 - t0) * 1e-6;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_ms(ln_context *ctx, run_kind kind, size_t n, const bench_bufs *b,
                        int repeats)
{
    double t[16];
    timed_run(ctx, kind, n, b); /* warm-up: kernel builds, CLBlast's compile */
    for (int r = 0; r < repeats; r++)
        t[r] = timed_run(ctx, kind, n, b);
    qsort(t, (size_t)repeats, sizeof(double), compare_double);
    return t[repeats / 2];
}

static float *download_out(ln_context *ctx, run_kind kind, size_t n, const bench_bufs *b)
{
    ln_status st = run_once(ctx, kind, n, b);
    if (st)
        die(ctx, st, run_names[kind]);
    float *host = malloc(n * WIDTH * sizeof(float));
    if (!host)
        die(ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "host buffer");
    if (clEnqueueReadBuffer(ln_context_cl_queue(ctx), b->out.mem, CL_TRUE, 0,
                            n * WIDTH * sizeof(float), host, 0, NULL, NULL) != CL_SUCCESS)
        die(ctx, LN_ERROR_UNSUPPORTED, "reading the output");
    return host;
}

static double kernels_differ(ln_context *ctx, size_t n, const bench_bufs *b)
{
    float *rows = download_out(ctx, RUN_ROWS_PRE, n, b), *tiles = download_out(ctx, RUN_TILES_PRE, n, b);
    double diff = 0, scale = 0;
    for (size_t i = 0; i < n * WIDTH; i++) {
        const double d = fabs((double)rows[i] - tiles[i]);
        diff = d > diff || d != d ? d : diff; /* a NaN sticks */
        scale = fabs((double)rows[i]) > scale ? fabs((double)rows[i]) : scale;
    }
    free(rows), free(tiles);
    return scale > 0 ? diff / scale : diff;
}

int main(int argc, char **argv)
{
    size_t ns[16] = {256, 1024, 4096};
    int count = 3;
    if (argc > 1) {
        count = 0;
        for (int i = 1; i < argc; i++) {
            char *end = argv[i];
            unsigned long v = 0;
            if (*argv[i] >= '0' && *argv[i] <= '9')
                v = strtoul(argv[i], &end, 10); /* ULONG_MAX on overflow: over the cap */
            /* 2^20 keys is past any device's memory for S at B = 1. */
            if (end == argv[i] || *end || v == 0 || v > (1ul << 20) || count == 16) {
                fprintf(stderr, "usage: attention-bench [n ...]: up to 16 sequence lengths in "
                                "1..1048576, not \"%s\"\n",
                        argv[i]);
                return 2;
            }
            ns[count++] = v;
        }
    }
    ln_context *ctx;
    ln_status st = ln_context_create(NULL, &ctx);
    if (st)
        die(NULL, st, "creating the context");
    ln_device_info info;
    ln_context_device_info(ctx, &info);
    default_tile_q = ctx->params.attn_tile_q;
    printf("device: %s / %s\nB = 1, %d heads of %d, d = %d; median device ms after a warm-up\n\n",
           info.platform_name, info.device_name, HEADS, HEAD_DIM, D_MODEL);
    printf("%6s %8s %12s %12s %12s %9s %9s %14s %12s %10s %10s %12s %13s %16s\n", "n",
           "S GEMM", "fused S read", "rows S read", "tiles S read", "tiles 32", "tiles 128",
           "fused S recomp", "materialised", "fused/rows", "tiles/rows", "rows GFLOP/s",
           "tiles GFLOP/s", "tiles-rows rel");
    uint64_t rng = 0x5eed1234abcdull;
    for (int i = 0; i < count; i++) {
        const size_t n = ns[i];
        if (n == 0)
            continue;
        bench_bufs b;
        cl_mem qkv = random_buffer(ctx, n * 3 * WIDTH, -1.0f, 1.0f, &rng);
        b.q = (ln_dmat){qkv, 0, 3 * WIDTH};
        b.k = (ln_dmat){qkv, WIDTH, 3 * WIDTH};
        b.v = (ln_dmat){qkv, 2 * WIDTH, 3 * WIDTH};
        b.unit = random_buffer(ctx, n * D_MODEL, -1.0f, 1.0f, &rng);
        /* Unit rows as the model makes them; S's values do not change the work. */
        if ((st = ln_unit_rows(ctx, n, D_MODEL, ln_dmat_of(b.unit, D_MODEL),
                               ln_dmat_of(b.unit, D_MODEL))))
            die(ctx, st, "unit rows");
        b.temperature = random_buffer(ctx, HEADS, 0.5f, 2.0f, &rng);
        b.out = ln_dmat_of(random_buffer(ctx, n * WIDTH, 0.0f, 1.0f, &rng), WIDTH);
        if ((st = ln_buffer_create(ctx, n * n * sizeof(float), &b.s, "S")))
            die(ctx, st, "allocating S");
        const int repeats = n >= 4096 ? 3 : 5;
        double ms[RUN_KINDS];
        for (int k = 0; k < RUN_KINDS; k++)
            ms[k] = median_ms(ctx, (run_kind)k, n, &b, repeats);
        /* The two GPU kernels' outputs on the same inputs: largest
         * difference relative to the largest output (the tests compare
         * each with float64; this says the timed runs computed it too). */
        const double rel = kernels_differ(ctx, n, &b);
        /* q . k and p v: 2 FLOPs per multiply-add, n^2 pairs, every column. */
        const double flops = 4.0 * (double)n * (double)n * WIDTH;
        printf("%6zu %8.2f %12.2f %12.2f %12.2f %9.2f %9.2f %14.2f %12.2f %10.2f %10.2f %12.1f "
               "%13.1f %16.2e\n",
               n, ms[RUN_S_GEMM], ms[RUN_FUSED_PRE], ms[RUN_ROWS_PRE], ms[RUN_TILES_PRE],
               ms[RUN_TILES32_PRE], ms[RUN_TILES128_PRE], ms[RUN_FUSED_RECOMPUTE], ms[RUN_NAIVE], ms[RUN_FUSED_PRE] / ms[RUN_ROWS_PRE],
               ms[RUN_TILES_PRE] / ms[RUN_ROWS_PRE], flops / (ms[RUN_ROWS_PRE] * 1e6),
               flops / (ms[RUN_TILES_PRE] * 1e6), rel);
        fflush(stdout);
        ln_buffer_release(ctx, qkv);
        ln_buffer_release(ctx, b.unit);
        ln_buffer_release(ctx, b.temperature);
        ln_buffer_release(ctx, b.out.mem);
        ln_buffer_release(ctx, b.s);
    }
    ln_context_destroy(ctx);
    return EXIT_SUCCESS;
}
