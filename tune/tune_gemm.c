/*
 * tune_gemm.c: ln-tune's CLBlast part: the GEMM parameters (Xgemm,
 * XgemmDirect, XGEMM_MIN_INDIRECT_SIZE) at the model's own GEMM shapes,
 * set through CLBlastOverrideParameters.
 *
 * CLBlast's override is per device and process-wide, not per shape, and
 * cannot be undone (its C API has no way to read its own defaults back).
 * So one set per CLBlast kernel is chosen for all of the model's GEMMs by
 * their summed time, and the candidates are ordered so that every one is
 * measured in a state the library can recreate from the tuning file:
 *   1. (Xgemm X_i, threshold 0): every GEMM on the indirect kernel,
 *   2. (XgemmDirect D_j, threshold 2^16): every GEMM on the direct one
 *      (Xgemm's leftover override is then unused),
 *   3. the best mix: X*, D* and the threshold that splits the shapes
 *      (sorted by m n k) where the per-shape times of 1 and 2 say it pays,
 *      measured again as a whole before it is believed.
 * CLBlast's defaults are measured first, with no override. A candidate is
 * kept only if its total beats the default's by more than the default's
 * run-to-run spread, and only if every GEMM's output matches the
 * default's (rel-L2 <= 1e-5). Every candidate costs CLBlast a rebuild of
 * its whole GEMM program (36-41 s on the 2-core PoCL CI machine, a few
 * seconds on GPU drivers): the budget check counts that in.
 */
#include "tune.h"

#include <clblast_c.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_GEMM_SHAPES 128
#define MAX_GEMM_CANDS 64
/* Output samples compared per GEMM: every element up to 2^16, else an
 * even stride (a wrong parameter set garbles whole tiles, never one
 * element). */
#define SAMPLE_CAP 65536
/* "Always direct": 2^16 cubed = 2^48 exceeds every m n k ln-cl runs. */
#define ALWAYS_DIRECT 65536
/* Compile-time guess before a candidate was measured: CLBlast's GEMM
 * program took 36-41 s to build on the 2-core PoCL machine; GPU drivers
 * build it in a few seconds. */
#define COMPILE_GUESS_CPU 40.0
#define COMPILE_GUESS_GPU 5.0

typedef struct gemm_shape {
    size_t m, n, k, batch; /* C[m, n] = A[m, k] B, `batch` of them */
    bool trans_b;          /* B stored [n, k]; else [k, n], the model's W^T */
    int count;             /* runs per forward */
    char what[24];
    unsigned long long mnk; /* what CLBlast compares with the threshold cubed */
} gemm_shape;

typedef struct gemm_cand {
    bool set[LN_CB_COUNT];
    long long v[LN_CB_COUNT][LN_CB_MAX_PARAMS];
    int phase; /* 1: indirect, 2: direct, 3: mix */
} gemm_cand;

typedef struct gemm_result {
    bool ok;
    double total, spread; /* seconds, count-weighted over the shapes */
    double t[MAX_GEMM_SHAPES];
} gemm_result;

typedef struct gemm_work {
    gemm_shape s[MAX_GEMM_SHAPES];
    int count;
    cl_mem a, b, c;
    float *host;  /* one C read back */
    float *ref[MAX_GEMM_SHAPES];
    size_t ref_n[MAX_GEMM_SHAPES], stride[MAX_GEMM_SHAPES];
} gemm_work;

/* ------------------------------------------------------------- shapes */

static void add_shape(gemm_work *w, size_t m, size_t n, size_t k, size_t batch, bool trans_b,
                      const char *what, int times)
{
    for (int i = 0; i < w->count; i++)
        if (w->s[i].m == m && w->s[i].n == n && w->s[i].k == k && w->s[i].batch == batch &&
            w->s[i].trans_b == trans_b) {
            w->s[i].count += times;
            return;
        }
    if (w->count == MAX_GEMM_SHAPES)
        return;
    gemm_shape *s = &w->s[w->count++];
    s->m = m, s->n = n, s->k = k, s->batch = batch, s->trans_b = trans_b, s->count = times;
    snprintf(s->what, sizeof(s->what), "%s", what);
    s->mnk = (unsigned long long)m * n * k;
}

/* The GEMMs of one forward (src/model.c), each in the layout it runs in:
 * the model's Linears against W^T [in, out]; S = u u^T against u^T where
 * the device writes it with u (ln_unit_rows_t), else against u, which
 * CLBlast transposes (s_trans_b). */
static void model_shapes(gemm_work *w, const ln_model_config *cfg, size_t batch, size_t n,
                         bool s_trans_b)
{
    const size_t rows = batch * n, d = (size_t)cfg->d_model;
    size_t sum = 0;
    for (int i = 0; i < cfg->n_scales; i++)
        sum += (size_t)cfg->scales[i];
    add_shape(w, n, n, d, batch, s_trans_b, "S=uu^T", 1);
    add_shape(w, rows, d, (size_t)cfg->pos_hidden, 1, false, "positional", 1);
    const int L = cfg->n_layers;
    add_shape(w, rows, sum, d, 1, false, "proj", L);
    for (int i = 0; i < cfg->n_scales; i++) {
        const size_t bw = (size_t)cfg->scales[i], f = bw * (size_t)cfg->ffn_mult;
        char what[24];
        snprintf(what, sizeof(what), "qkv w%zu", bw);
        add_shape(w, rows, 3 * bw, bw, 1, false, what, L);
        snprintf(what, sizeof(what), "out w%zu", bw);
        add_shape(w, rows, bw, bw, 1, false, what, L);
        snprintf(what, sizeof(what), "ffn1 w%zu", bw);
        add_shape(w, rows, f, bw, 1, false, what, L);
        snprintf(what, sizeof(what), "ffn2 w%zu", bw);
        add_shape(w, rows, bw, f, 1, false, what, L);
    }
    add_shape(w, rows, d, sum, 1, false, "fusion", L);
}

static int by_mnk(const void *a, const void *b)
{
    const gemm_shape *x = a, *y = b;
    return (x->mnk > y->mnk) - (x->mnk < y->mnk);
}

/* ---------------------------------------------------------- measuring */

static cl_mem random_buffer(ln_context *ctx, size_t floats, uint64_t seed)
{
    float *h = malloc(floats * sizeof(float));
    cl_mem m = NULL;
    if (!h)
        return NULL;
    for (size_t i = 0; i < floats; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        h[i] = (float)((seed >> 40) * (2.0 / 16777216.0) - 1.0);
    }
    if (ln_buffer_from_host(ctx, h, floats * sizeof(float), &m, "ln-tune GEMM data") != LN_SUCCESS)
        m = NULL;
    clFinish(ctx->queue);
    free(h);
    return m;
}

static ln_status run_gemm(ln_context *ctx, gemm_work *w, const gemm_shape *s)
{
    return ln_gemm_batched(ctx, false, s->trans_b, s->m, s->n, s->k, 1.0f, ln_dmat_of(w->a, s->k),
                           s->m * s->k, ln_dmat_of(w->b, s->trans_b ? s->k : s->n), s->n * s->k,
                           0.0f, ln_dmat_of(w->c, s->n), s->m * s->n, s->batch, "ln-tune");
}

typedef struct gemm_call {
    gemm_work *w;
    const gemm_shape *s;
} gemm_call;

static ln_status run_gemm_call(ln_context *ctx, void *arg)
{
    const gemm_call *c = arg;
    return run_gemm(ctx, c->w, c->s);
}

/* Device time of one GEMM call. */
static double time_gemm(ln_context *ctx, gemm_work *w, const gemm_shape *s, ln_status *st)
{
    gemm_call call = {w, s};
    return time_between_markers(ctx, run_gemm_call, &call, st);
}

/* Every shape: a warm-up call (CLBlast builds its program on the first),
 * `runs` timed ones, then the output: kept as the reference (store) or
 * compared with it. *build_s gets what the warm-up calls took beyond a
 * run: CLBlast's rebuild, for the budget. */
static gemm_result measure_all(ln_context *ctx, gemm_work *w, int runs, bool store,
                               double *build_s, char *why, size_t why_cap)
{
    gemm_result r;
    memset(&r, 0, sizeof(r));
    *build_s = 0;
    for (int i = 0; i < w->count; i++) {
        const gemm_shape *s = &w->s[i];
        ln_status st;
        double t0 = now_s();
        time_gemm(ctx, w, s, &st);
        double warm = now_s() - t0;
        if (st != LN_SUCCESS) {
            snprintf(why, why_cap, "%s: %s", s->what, ln_last_error(ctx));
            return r;
        }
        double t[16];
        for (int j = 0; j < runs; j++) {
            t[j] = time_gemm(ctx, w, s, &st);
            if (st != LN_SUCCESS) {
                snprintf(why, why_cap, "%s: %s", s->what, ln_last_error(ctx));
                return r;
            }
        }
        measure m = measure_of(t, runs);
        if (warm > m.median)
            *build_s += warm - m.median;
        r.t[i] = m.median;
        r.total += m.median * s->count;
        r.spread += m.spread * s->count;
        const size_t floats = s->batch * s->m * s->n;
        if (ln_buffer_to_host(ctx, w->c, w->host, floats * sizeof(float)) != LN_SUCCESS) {
            snprintf(why, why_cap, "%s: reading C: %s", s->what, ln_last_error(ctx));
            return r;
        }
        const size_t stride = w->stride[i], n = w->ref_n[i];
        if (store) {
            for (size_t j = 0; j < n; j++)
                w->ref[i][j] = w->host[j * stride];
        } else {
            /* Compacted in place: sample j comes from index j * stride >= j. */
            for (size_t j = 0; j < n; j++)
                w->host[j] = w->host[j * stride];
            double err = rel_l2(w->host, w->ref[i], n);
            if (!(err <= TUNE_MAX_REL_L2)) {
                snprintf(why, why_cap, "%s %zux%zux%zu: output differs from the default's "
                         "(rel-L2 %.3g)", s->what, s->m, s->n, s->k, err);
                return r;
            }
        }
    }
    r.ok = true;
    return r;
}

/* ---------------------------------------------------------- candidates */

/* Xgemm in CLBlast's order: GEMMK KREG KWG KWI MDIMA MDIMC MWG NDIMB NDIMC
 * NWG SA SB STRM STRN VWM VWN. CPU sets first, then the GPU shapes of
 * CLBlast's database (16x16 threads, local memory, 64 and 128 tiles).
 *
 * CPU sets: PoCL runs a work-group as a loop over its work-items, each
 * one's code vectorised only by its own vector types. So the vector width
 * VWM should be the SIMD width (16 floats on AVX-512, 8 on AVX2; the
 * device's preferred width picks which comes first) and each work-item a
 * register-blocked micro-kernel. All measured on the 2-core
 * Skylake-AVX512 machine with USE_VECTOR_MAD (gemm_tuning.c), on a shared
 * machine (OpenBLAS: 168 GFLOP/s at 2048x1536x384).
 *
 * First the 2-D register-tiling kernel (GEMMK 1): it reads the model's
 * layout (x [rows, in] times W^T [in, out], linear.c) as it is, with no
 * transpose or copy pass. Each work-item keeps MWI = 2 vectors of a C row
 * by NWI = 8 rows and adds a broadcast element of A times a vector of B
 * per step, a BLAS micro-kernel's shape; 64x64 tiles divide every width of
 * the default model. Medians of 15-21, one run each: 75-108 GFLOP/s at
 * 2048x{1536,384,1152,832}x{384,1536}, 1024x384x832 and 8192x64x64, and
 * 0.65-1.8 ms at 64x1152x384 where the GEMMK 0 set below takes 4.2 ms in
 * its layout (with its transposes); 4-vector rows, KWG 64, or 8 x 8
 * threads with 1-vector rows: the same within the noise. The 8-wide one
 * (2 vectors x 4 rows, for AVX2's 16 registers) is not measured here.
 * Less unrolling of the k loop won on the 2-core AMD EPYC machine with
 * AVX-512 (2026-11-27). KWI 2 against 4: ln-bench's B = 8, n = 256
 * forward in two alternating runs took 101-103 ms against 113-121 (its
 * GEMMs 72 against 84-96 ms; 190-215 GFLOP/s at most of the 2048-row
 * shapes, where OpenBLAS runs 190-205). On ln-tune's sum of that
 * forward's GEMMs, one run: KWI 1 70.0 ms, KWI 2 81.1 (77.1 in another
 * run), KWI 2 with KWG 16 78.4, with 32x32 tiles of 1x4 threads 77.6;
 * KWI 8 and KWG 64 85. ln-bench, two alternating runs: the GEMMs of
 * that forward 68.6-69.7 ms with KWI 1 against 72.2-72.8 with KWI 2.
 * --quick tries the first two.
 *
 * Then the GEMMK 0 kernel, which needs A and C transposed in this layout:
 * 128x48 tiles, 4x4 threads (MWI = 2 vectors by NWI = 12), KWG 64 and
 * local memory (SA = SB = 1, a KWG-deep tile that stays in L1, as a BLAS
 * packs its panels): 45-72 GFLOP/s at 2048x1536x384 with A W^T (medians of
 * 9); KWG 32 or 128, KWI 16, 64x96 tiles or 2x2 threads with 4-vector
 * rows: the same within that noise; 64x16 tiles without local memory:
 * 39-49; CLBlast's default 15-22. Its 8-wide scaling to AVX2 follows,
 * unmeasured, then the older 4-wide sets (6.1 against the default's 2.7 at
 * 256x1536x384 before USE_VECTOR_MAD). */
static const long long xgemm_cpu[][16] = {
    {1, 1, 32, 1, 2, 2, 64, 8, 8, 64, 0, 0, 0, 0, 16, 1},
    {1, 1, 32, 2, 2, 2, 64, 8, 8, 64, 0, 0, 0, 0, 16, 1},
    {1, 1, 32, 4, 2, 2, 64, 8, 8, 64, 0, 0, 0, 0, 16, 1},
    {1, 1, 32, 4, 4, 4, 64, 16, 16, 64, 0, 0, 0, 0, 8, 1},
    {1, 1, 16, 4, 1, 1, 64, 8, 8, 64, 0, 0, 0, 0, 16, 1},
    {0, 1, 64, 8, 4, 4, 128, 4, 4, 48, 1, 1, 0, 0, 16, 4},
    {0, 1, 64, 8, 4, 4, 64, 4, 4, 24, 1, 1, 0, 0, 8, 2},
    {0, 1, 64, 4, 8, 8, 256, 8, 8, 96, 1, 1, 0, 0, 16, 4},
    {0, 1, 32, 4, 2, 2, 64, 2, 2, 16, 0, 0, 0, 0, 16, 8},
    {0, 1, 32, 2, 8, 8, 64, 8, 8, 64, 0, 0, 1, 1, 4, 4},
    {0, 1, 32, 2, 8, 8, 32, 8, 8, 32, 0, 0, 1, 1, 4, 4},
    {0, 1, 32, 2, 8, 8, 64, 16, 16, 128, 0, 0, 1, 1, 4, 8},
    {0, 1, 16, 2, 8, 8, 64, 8, 8, 64, 0, 0, 1, 1, 8, 8},
};
/* GPU sets, in the order a budget cut should try them. First the two
 * best that CLBlast's own Xgemm tuner found on an NVIDIA H200 (150 s, 804
 * sets, at the model's largest GEMM, 8192x1536x384, 2026-11-27): 37.0 and
 * 35.1 TFLOP/s, kernel alone, where CLBlast's defaults run that GEMM at
 * 15.6 in ln-cl (host-timed) and torch.matmul at 37.9. With every GEMM
 * of the model on one of them, the sum over the 40 GEMMs at B = 8, n = 64
 * and 1024 was 7.4-8.7 ms against the defaults' 4.66 (the small GEMMs,
 * which the defaults send to the direct kernel, padded to large tiles are
 * the likely loss), so they belong in the mix with a direct set
 * (gemm_tune's phase 3). Then an
 * NVIDIA-style SGEMM: 128x128 tiles of 16x16 threads, each an 8x8
 * register block, A and B panels in local memory (16-32 KiB, inside every
 * GPU's 32-48 KiB): 8.5 ms on that sum. Then the 2-D register-tiling
 * kernel (GEMMK 1), which reads the model's layout with no pad or
 * transpose launch around it, one launch per GEMM instead of three: 5.86
 * ms. Then 64x64 and 64x128 tiles, which give the 8192 x 384 GEMMs 768 or
 * 384 work-groups where 128x128 gives 192 (under two per SM on a 132-SM
 * H200). */
static const long long xgemm_gpu[][16] = {
    {0, 1, 32, 2, 32, 16, 128, 16, 8, 128, 1, 1, 0, 1, 4, 2},
    {0, 1, 32, 2, 16, 16, 64, 8, 8, 64, 1, 1, 0, 0, 4, 4},
    {0, 1, 16, 2, 16, 16, 128, 16, 16, 128, 1, 1, 0, 0, 4, 4},
    {1, 1, 16, 2, 16, 16, 64, 16, 16, 64, 0, 0, 0, 0, 4, 1},
    {0, 1, 32, 2, 16, 16, 128, 16, 16, 128, 1, 1, 0, 0, 4, 4},
    {1, 1, 16, 2, 8, 8, 64, 8, 8, 64, 0, 0, 0, 0, 4, 1},
    {0, 1, 16, 2, 16, 16, 64, 16, 16, 64, 1, 1, 1, 1, 4, 4},
    {1, 1, 16, 2, 16, 16, 128, 16, 16, 128, 0, 0, 0, 0, 4, 1},
    {0, 1, 32, 2, 8, 16, 64, 8, 16, 128, 1, 1, 1, 0, 2, 4},
    {0, 1, 32, 2, 8, 8, 64, 8, 8, 64, 1, 1, 0, 0, 4, 4},
};
/* XgemmDirect: KWID MDIMAD MDIMCD NDIMBD NDIMCD PADA PADB VWMD VWND WGD. */
static const long long direct_cpu[][10] = {
    /* 8-wide, 4x4 threads, KWID 8: 14-19 GFLOP/s at 2048x{64,256,384}x{64,384}
     * where the next one ran 8-12 (2-core Skylake-AVX512, PoCL 3.1). 16-wide
     * XgemmDirect sets took PoCL over 6 minutes to build: none here. */
    {8, 4, 4, 4, 4, 1, 1, 8, 4, 32},
    {2, 8, 8, 8, 8, 1, 1, 4, 4, 32},
    {8, 8, 8, 8, 8, 1, 1, 8, 8, 64},
    {2, 8, 8, 8, 8, 1, 1, 2, 2, 16},
};
static const long long direct_gpu[][10] = {
    {2, 16, 16, 16, 16, 1, 1, 2, 2, 32},
    {2, 16, 16, 16, 16, 1, 1, 4, 4, 64},
    {2, 8, 8, 8, 8, 1, 1, 4, 4, 32},
    {8, 16, 16, 16, 16, 1, 1, 4, 4, 64},
    {2, 8, 8, 8, 8, 1, 1, 8, 8, 64},
};

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

static long long pick(uint64_t *rng, const long long *from, int n)
{
    return from[next_rand(rng) % (uint64_t)n];
}

/* A random valid set from the ranges of CLBlast's own random-search
 * tuners (its xgemm variation 2, xgemm_direct variation 2). */
static bool random_set(int kernel, const ln_device_info *info, size_t wg_cap, uint64_t *rng,
                       long long *v)
{
    static const long long tile[] = {16, 32, 64, 128}, dim[] = {8, 16, 32}, vw[] = {1, 2, 4, 8},
                           bit[] = {0, 1}, kwg[] = {16, 32}, wgd[] = {8, 16, 32, 64},
                           kwid[] = {2, 8, 16};
    for (int attempt = 0; attempt < 1000; attempt++) {
        if (kernel == LN_CB_XGEMM) {
            long long x[16] = {0, 1, pick(rng, kwg, 2), 2, pick(rng, dim, 3), pick(rng, dim, 3),
                               pick(rng, tile, 4), pick(rng, dim, 3), pick(rng, dim, 3),
                               pick(rng, tile, 4), pick(rng, bit, 2), pick(rng, bit, 2),
                               pick(rng, bit, 2), pick(rng, bit, 2), pick(rng, vw, 4),
                               pick(rng, vw, 4)};
            memcpy(v, x, sizeof(x));
        } else {
            long long x[10] = {pick(rng, kwid, 3), pick(rng, dim, 3), pick(rng, dim, 3),
                               pick(rng, dim, 3), pick(rng, dim, 3), pick(rng, bit, 2),
                               pick(rng, bit, 2), pick(rng, vw, 4), pick(rng, vw, 4),
                               pick(rng, wgd, 4)};
            memcpy(v, x, sizeof(x));
        }
        if (ln_clblast_params_valid(kernel, v, info, wg_cap, NULL, 0))
            return true;
    }
    return false;
}

static bool same_set(const gemm_cand *a, const gemm_cand *b)
{
    for (int k = 0; k < LN_CB_COUNT; k++) {
        if (a->set[k] != b->set[k])
            return false;
        if (a->set[k] &&
            memcmp(a->v[k], b->v[k], sizeof(long long) * (size_t)ln_clblast_kernels[k].count))
            return false;
    }
    return true;
}

static int push_cand(gemm_cand *c, int n, const gemm_cand *add, const ln_device_info *info,
                     size_t wg_cap)
{
    if (n == MAX_GEMM_CANDS)
        return n;
    for (int k = 0; k < LN_CB_COUNT; k++)
        if (add->set[k] && !ln_clblast_params_valid(k, add->v[k], info, wg_cap, NULL, 0))
            return n; /* beyond this device's limits */
    for (int i = 0; i < n; i++)
        if (same_set(&c[i], add))
            return n;
    c[n] = *add;
    return n + 1;
}

static gemm_cand pure(int kernel, const long long *v)
{
    gemm_cand c;
    memset(&c, 0, sizeof(c));
    c.set[kernel] = true;
    memcpy(c.v[kernel], v, sizeof(long long) * (size_t)ln_clblast_kernels[kernel].count);
    c.set[LN_CB_GEMM_ROUTINE] = true;
    c.v[LN_CB_GEMM_ROUTINE][0] = kernel == LN_CB_XGEMM ? 0 : ALWAYS_DIRECT;
    c.phase = kernel == LN_CB_XGEMM ? 1 : 2;
    return c;
}

#define COUNT_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Adds the curated Xgemm sets of `sets`, those whose VWM is the device's
 * preferred float width first (0: in their order), until `want` were
 * added since `start`. */
static int push_xgemm_sets(gemm_cand *out, int n, int start, int want, const long long (*sets)[16],
                           int count, cl_uint preferred, const ln_device_info *info, size_t wg_cap)
{
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < count && n - start < want; i++) {
            if ((sets[i][14] == (long long)preferred) != (pass == 0))
                continue;
            gemm_cand c = pure(LN_CB_XGEMM, sets[i]);
            n = push_cand(out, n, &c, info, wg_cap);
        }
    return n;
}

bool gemm_set_parse(const char *text, gemm_try *out, char *why, size_t cap)
{
    out->kernel = strstr(text, "WGD=") ? LN_CB_XGEMM_DIRECT : LN_CB_XGEMM;
    long long *v = out->v;
    const ln_clblast_kernel *k = &ln_clblast_kernels[out->kernel];
    bool seen[LN_CB_MAX_PARAMS] = {false};
    const char *p = text;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n')
            p++;
        if (!*p)
            break;
        const char *eq = strchr(p, '=');
        size_t len = eq ? (size_t)(eq - p) : 0;
        if (!eq || len == 0 || len > 32 || memchr(p, ' ', len)) {
            ln_why_set(why, cap, "'%.40s' is not NAME=VALUE", p);
            return false;
        }
        char *end;
        long long value = strtoll(eq + 1, &end, 10);
        if (end == eq + 1 || value < 0 || (*end && !strchr(" ,\t\n", *end))) {
            ln_why_set(why, cap, "%.*s: '%.20s' is not a non-negative integer", (int)len, p,
                       eq + 1);
            return false;
        }
        int i = 0;
        while (i < k->count && (strlen(k->params[i]) != len || strncmp(k->params[i], p, len)))
            i++;
        if (i < k->count) {
            v[i] = value;
            seen[i] = true;
        } else if (!(len == 9 && strncmp(p, "PRECISION", 9) == 0)) {
            ln_why_set(why, cap, "%.*s is not a parameter of CLBlast's %s", (int)len, p, k->name);
            return false;
        }
        p = end;
    }
    /* CLBlast's Xgemm variations 1 and 2 print no GEMMK or KREG. */
    if (out->kernel == LN_CB_XGEMM) {
        if (!seen[0])
            v[0] = 0, seen[0] = true;
        if (!seen[1])
            v[1] = 1, seen[1] = true;
    }
    for (int i = 0; i < k->count; i++)
        if (!seen[i]) {
            ln_why_set(why, cap, "%s set without %s", k->name, k->params[i]);
            return false;
        }
    return true;
}

/* The --gemm-try sets of kernel `kernel` that this device can run. */
static int push_tries(gemm_cand *out, int n, int kernel, const gemm_try *tries, int count,
                      const ln_device_info *info, size_t wg_cap)
{
    for (int i = 0; i < count; i++) {
        char why[200];
        if (tries[i].kernel != kernel)
            continue; /* the other kernel's list takes it */
        if (!ln_clblast_params_valid(kernel, tries[i].v, info, wg_cap, why, sizeof(why))) {
            fprintf(stderr, "\nln-tune: --gemm-try set %d is not for this device: %s\n", i + 1,
                    why);
            continue;
        }
        gemm_cand c = pure(kernel, tries[i].v);
        n = push_cand(out, n, &c, info, wg_cap);
    }
    return n;
}

/* Phase 1 then phase 2: the --gemm-try sets, curated sets (the device
 * kind's first), then in --full random ones (`random_x_sets` Xgemm sets
 * when >= 0). */
static int build_candidates(const ln_device_info *info, cl_uint preferred, size_t wg_cap,
                            bool quick, int random_x_sets, const gemm_try *tries,
                            int try_count, gemm_cand *out)
{
    int n = 0;
    uint64_t rng = 0x6a09e667f3bcc909ull;
    const int curated_x = quick ? 2 : 8;
    const int random_x = random_x_sets >= 0 ? random_x_sets : quick ? 0 : 8;
    const int curated_d = quick ? 1 : 6, random_d = quick ? 0 : 6;
    const long long(*da)[10] = info->is_gpu ? direct_gpu : direct_cpu;
    const long long(*db)[10] = info->is_gpu ? direct_cpu : direct_gpu;
    const int nda = info->is_gpu ? COUNT_OF(direct_gpu) : COUNT_OF(direct_cpu);
    const int ndb = info->is_gpu ? COUNT_OF(direct_cpu) : COUNT_OF(direct_gpu);
    const long long(*xa)[16] = info->is_gpu ? xgemm_gpu : xgemm_cpu;
    const long long(*xb)[16] = info->is_gpu ? xgemm_cpu : xgemm_gpu;
    const int nxa = info->is_gpu ? COUNT_OF(xgemm_gpu) : COUNT_OF(xgemm_cpu);
    const int nxb = info->is_gpu ? COUNT_OF(xgemm_cpu) : COUNT_OF(xgemm_gpu);
    n = push_tries(out, n, LN_CB_XGEMM, tries, try_count, info, wg_cap);
    int start = n;
    n = push_xgemm_sets(out, n, start, curated_x, xa, nxa, preferred, info, wg_cap);
    n = push_xgemm_sets(out, n, start, curated_x, xb, nxb, preferred, info, wg_cap);
    for (int i = 0, added = 0; i < 4 * random_x && added < random_x; i++) {
        long long v[16];
        int before = n;
        if (random_set(LN_CB_XGEMM, info, wg_cap, &rng, v)) {
            gemm_cand c = pure(LN_CB_XGEMM, v);
            n = push_cand(out, n, &c, info, wg_cap);
        }
        added += n > before;
    }
    n = push_tries(out, n, LN_CB_XGEMM_DIRECT, tries, try_count, info, wg_cap);
    start = n;
    for (int i = 0; i < nda && n - start < curated_d; i++) {
        gemm_cand c = pure(LN_CB_XGEMM_DIRECT, da[i]);
        n = push_cand(out, n, &c, info, wg_cap);
    }
    for (int i = 0; i < ndb && n - start < curated_d; i++) {
        gemm_cand c = pure(LN_CB_XGEMM_DIRECT, db[i]);
        n = push_cand(out, n, &c, info, wg_cap);
    }
    for (int i = 0, added = 0; i < 4 * random_d && added < random_d; i++) {
        long long v[10];
        int before = n;
        if (random_set(LN_CB_XGEMM_DIRECT, info, wg_cap, &rng, v)) {
            gemm_cand c = pure(LN_CB_XGEMM_DIRECT, v);
            n = push_cand(out, n, &c, info, wg_cap);
        }
        added += n > before;
    }
    /* Interleave so that a budget cut leaves both kernels tried: X, D, X, D... */
    gemm_cand tmp[MAX_GEMM_CANDS];
    int nx = 0, m = 0, ix = 0, id;
    while (nx < n && out[nx].phase == 1)
        nx++;
    id = nx;
    while (m < n) {
        if (ix < nx)
            tmp[m++] = out[ix++];
        if (id < n)
            tmp[m++] = out[id++];
    }
    memcpy(out, tmp, sizeof(gemm_cand) * (size_t)n);
    return n;
}

/* Whether candidates [0, upto) hold a measured Xgemm and a measured
 * XgemmDirect set, the ingredients of a mix. */
static bool measured_both(const gemm_cand *cands, const gemm_result *res, int upto)
{
    bool x = false, d = false;
    for (int i = 0; i < upto; i++)
        if (res[i].ok) {
            x |= cands[i].phase == 1;
            d |= cands[i].phase == 2;
        }
    return x && d;
}

static bool apply_cand(ln_context *ctx, const gemm_cand *c, char *why, size_t cap)
{
    for (int k = 0; k < LN_CB_COUNT; k++)
        if (c->set[k] && !ln_clblast_override(ctx->device, &ctx->info, k, c->v[k], why, cap))
            return false;
    return true;
}

/* The smallest threshold T with T^3 > below and T^3 <= at, or -1. */
static long long threshold_between(unsigned long long below, unsigned long long at)
{
    long long t = (long long)cbrt((double)at);
    while (t > 0 && (unsigned long long)t * t * t > at)
        t--;
    while ((unsigned long long)(t + 1) * (t + 1) * (t + 1) <= at)
        t++;
    /* t is the largest with t^3 <= at; any smaller one with t^3 > below works too. */
    if ((unsigned long long)t * t * t <= below)
        return -1;
    return t;
}

/* --------------------------------------------------------------- table */

/* Appends " NAME=V" (no leading space when buf is empty) for each of
 * kernel k's parameters that is set (>= 0); returns the new length. */
static size_t append_params(int k, const long long *v, char *buf, size_t used, size_t cap)
{
    for (int i = 0; i < ln_clblast_kernels[k].count && used < cap; i++)
        if (v[i] >= 0) {
            int w = snprintf(buf + used, cap - used, "%s%s=%lld", used ? " " : "",
                             ln_clblast_kernels[k].params[i], v[i]);
            if (w > 0)
                used += (size_t)w;
        }
    return used;
}

void describe_clblast(const ln_tune_entry *e, char *buf, size_t cap)
{
    int k = ln_clblast_kernel_of(e->kernel);
    buf[0] = '\0';
    if (k >= 0)
        append_params(k, e->clblast, buf, 0, cap);
    if (!buf[0])
        snprintf(buf, cap, "CLBlast's own (kept)");
}

/* "Xgemm GEMMK=0 ... | GemmRoutine XGEMM_MIN_INDIRECT_SIZE=0" of a candidate. */
static void describe_cand(const gemm_cand *c, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int k = 0; k < LN_CB_COUNT && used < cap; k++)
        if (c->set[k]) {
            int w = snprintf(buf + used, cap - used, "%s%s", used ? " | " : "",
                             ln_clblast_kernels[k].name);
            if (w > 0)
                used = append_params(k, c->v[k], buf, used + (size_t)w, cap);
        }
}

static void shape_label(const gemm_shape *s, char *buf, size_t cap)
{
    if (s->batch > 1)
        snprintf(buf, cap, "%zux%zux%zu*%zu", s->m, s->n, s->k, s->batch);
    else
        snprintf(buf, cap, "%zux%zux%zu", s->m, s->n, s->k);
}

static double gflops(const gemm_shape *s, double t)
{
    return t > 0 ? 2.0 * (double)s->mnk * (double)s->batch / t * 1e-9 : 0;
}

/* -------------------------------------------------------------- tuning */

static void work_free(ln_context *ctx, gemm_work *w)
{
    ln_buffer_release(ctx, w->a);
    ln_buffer_release(ctx, w->b);
    ln_buffer_release(ctx, w->c);
    free(w->host);
    for (int i = 0; i < w->count; i++)
        free(w->ref[i]);
    free(w);
}

bool gemm_tune(ln_context *ctx, const gemm_options *o, const char *path, const budget *b,
               double share, result_row *rows, int *nrows)
{
    const double job_start = now_s();
    /* The entries' shape: the largest (B, n) the set is chosen over. */
    size_t lb = o->shapes[0][0], ln = o->shapes[0][1];
    for (int i = 1; i < o->shape_count; i++)
        if (o->shapes[i][1] > ln || (o->shapes[i][1] == ln && o->shapes[i][0] > lb))
            lb = o->shapes[i][0], ln = o->shapes[i][1];
    char label[32];
    ln_tune_shape_name(lb, ln, label, sizeof(label));
    ln_tune_entry e[LN_CB_COUNT];
    for (int k = 0; k < LN_CB_COUNT; k++)
        ln_tune_entry_init(&e[k], ln_clblast_kernels[k].entry, lb, ln);

    /* Resume: all three entries of this shape there already. */
    if (!o->redo) {
        ln_tune_table old;
        char why[512];
        int found = 0;
        if (ln_tune_file_read(&ctx->info, path, &old, why, sizeof(why)) == LN_TUNE_FILE_OK) {
            for (size_t i = 0; i < old.count; i++)
                for (int k = 0; k < LN_CB_COUNT; k++)
                    if (strcmp(old.entries[i].kernel, e[k].kernel) == 0 &&
                        old.entries[i].batch == e[k].batch && old.entries[i].n == e[k].n) {
                        e[k] = old.entries[i];
                        found |= 1 << k;
                    }
            ln_tune_table_free(&old);
        }
        if (found == (1 << LN_CB_COUNT) - 1) {
            for (int k = 0; k < LN_CB_COUNT && *nrows < MAX_ROWS; k++) {
                result_row *r = &rows[(*nrows)++];
                snprintf(r->kernel, sizeof(r->kernel), "%s*", e[k].kernel);
                snprintf(r->shape, sizeof(r->shape), "%s", label);
                describe_clblast(&e[k], r->params, sizeof(r->params));
                r->default_us = e[k].default_us;
                r->tuned_us = e[k].tuned_us;
            }
            return true;
        }
    }

    /* Not even one rebuild fits: skip before measuring anything. */
    double compile_est = ctx->info.is_gpu ? COMPILE_GUESS_GPU : COMPILE_GUESS_CPU;
    if (!budget_fits(b, job_start, share, compile_est)) {
        fprintf(stderr, "\nln-tune: gemm: %.0f s of budget left, a CLBlast rebuild takes ~%.0f s "
                        "here: not tuned (a later run with more --budget does it)\n",
                share, compile_est);
        return false;
    }
    gemm_work *w = calloc(1, sizeof(*w));
    if (!w)
        return false;
    const bool s_trans_b = !ln_unit_rows_t_supported(ctx, (size_t)o->cfg->d_model);
    for (int i = 0; i < o->shape_count; i++)
        model_shapes(w, o->cfg, o->shapes[i][0], o->shapes[i][1], s_trans_b);
    qsort(w->s, (size_t)w->count, sizeof(w->s[0]), by_mnk);
    size_t max_a = 0, max_b = 0, max_c = 0;
    for (int i = 0; i < w->count; i++) {
        const gemm_shape *s = &w->s[i];
        max_a = s->batch * s->m * s->k > max_a ? s->batch * s->m * s->k : max_a;
        max_b = s->batch * s->n * s->k > max_b ? s->batch * s->n * s->k : max_b;
        max_c = s->batch * s->m * s->n > max_c ? s->batch * s->m * s->n : max_c;
        size_t floats = s->batch * s->m * s->n;
        w->stride[i] = floats > SAMPLE_CAP ? (floats + SAMPLE_CAP - 1) / SAMPLE_CAP : 1;
        w->ref_n[i] = (floats + w->stride[i] - 1) / w->stride[i];
        w->ref[i] = malloc(w->ref_n[i] * sizeof(float));
        if (!w->ref[i]) {
            work_free(ctx, w);
            return false;
        }
    }
    w->host = malloc(max_c * sizeof(float));
    w->a = random_buffer(ctx, max_a, 0x243f6a8885a308d3ull);
    w->b = random_buffer(ctx, max_b, 0x13198a2e03707344ull);
    ln_buffer_create(ctx, max_c * sizeof(float), &w->c, "ln-tune GEMM C");
    if (!w->host || !w->a || !w->b || !w->c) {
        fprintf(stderr, "\nln-tune: gemm: cannot allocate the data: %s\n", ln_last_error(ctx));
        work_free(ctx, w);
        return false;
    }

    /* The default: no override in this process yet (this job runs last). */
    char why[600];
    double build = 0;
    progress(o->job, o->jobs, "gemm", label, 0, 0, b->start, b->total);
    gemm_result def = measure_all(ctx, w, o->runs, true, &build, why, sizeof(why));
    if (!def.ok) {
        fprintf(stderr, "\nln-tune: gemm: CLBlast's default fails: %s\n", why);
        work_free(ctx, w);
        return false;
    }
    const double run_cost = (o->runs + 1) * def.total;
    /* The default's first calls built CLBlast's program unless an earlier
     * job had: a measured build beats the guess. */
    if (build > 1.0)
        compile_est = build;

    size_t wg_cap = ctx->info.max_work_group_size;
    if (ctx->info.is_cpu && wg_cap > 256)
        wg_cap = 256; /* PoCL runs a group as a loop on one core (ln_tune.c) */
    gemm_cand cands[MAX_GEMM_CANDS];
    cl_uint preferred = 1;
    if (clGetDeviceInfo(ctx->device, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, sizeof(preferred),
                        &preferred, NULL) != CL_SUCCESS)
        preferred = 1;
    /* A GPU's preferred width (1 on NVIDIA) says nothing about which
     * tile shape wins there: keep the GPU list's own order. */
    if (ctx->info.is_gpu)
        preferred = 0;
    int nc = build_candidates(&ctx->info, preferred, wg_cap, o->quick, o->random_sets, o->tries,
                              o->try_count, cands);
    static gemm_result res[MAX_GEMM_CANDS + 1];
    memset(res, 0, sizeof(res));
    /* The last set of each kernel CLBlast built: a candidate that fails to
     * build would otherwise break the next ones, which rebuild the whole
     * program with its leftover values. */
    int last_good[LN_CB_COUNT] = {-1, -1, -1};
    int best = -1, tried = 0;
    double best_total = def.total;
    for (int c = 0; c <= nc; c++) {
        /* Keep one rebuild's worth of budget for the mix, once both kernels
         * have a measured set: on a GPU the mix is the likely winner (the
         * H200 numbers at xgemm_gpu: fast Xgemm sets lose over all the
         * GEMMs, the all-direct ones tie; a budget cut after 10
         * candidates left the mix untried). */
        if (c < nc && measured_both(cands, res, c) &&
            !budget_fits(b, job_start, share, 2 * (compile_est + run_cost)))
            c = nc;
        if (c == nc) {
            /* Phase 3: the best mix of a measured X and D, split by m n k. */
            double mix_best = INFINITY;
            gemm_cand mix;
            memset(&mix, 0, sizeof(mix));
            for (int cut = 1; cut < w->count; cut++) {
                long long t = threshold_between(w->s[cut - 1].mnk, w->s[cut].mnk);
                if (t < 0)
                    continue;
                double bx = INFINITY, bd = INFINITY;
                int ix = -1, id = -1;
                for (int i = 0; i < nc; i++) {
                    if (!res[i].ok)
                        continue;
                    double sum = 0;
                    bool x = cands[i].phase == 1;
                    for (int s = x ? cut : 0; s < (x ? w->count : cut); s++)
                        sum += res[i].t[s] * w->s[s].count;
                    if (x && sum < bx)
                        bx = sum, ix = i;
                    if (!x && sum < bd)
                        bd = sum, id = i;
                }
                if (ix >= 0 && id >= 0 && bx + bd < mix_best) {
                    mix_best = bx + bd;
                    mix = cands[ix];
                    mix.set[LN_CB_XGEMM_DIRECT] = true;
                    memcpy(mix.v[LN_CB_XGEMM_DIRECT], cands[id].v[LN_CB_XGEMM_DIRECT],
                           sizeof(mix.v[0]));
                    mix.v[LN_CB_GEMM_ROUTINE][0] = t;
                    mix.phase = 3;
                }
            }
            /* Worth a rebuild only if it promises more than the noise. */
            if (!(mix_best < best_total - def.spread)) {
                if (isfinite(mix_best))
                    fprintf(stderr, "\nln-tune: gemm: the best mix of the measured sets "
                                    "predicts %.1f us against %.1f: not tried\n",
                            mix_best * 1e6, best_total * 1e6);
                break;
            }
            cands[nc] = mix;
        }
        progress(o->job, o->jobs, "gemm", label, c, nc + 1, b->start, b->total);
        if (!budget_fits(b, job_start, share, compile_est + run_cost))
            break; /* share or budget spent: stop before a rebuild that would pass it */
        if (!apply_cand(ctx, &cands[c], why, sizeof(why))) {
            fprintf(stderr, "\nln-tune: gemm candidate %d refused: %s\n", c, why);
            continue;
        }
        res[c] = measure_all(ctx, w, o->runs, false, &build, why, sizeof(why));
        tried++;
        /* What the rebuild cost, for the next budget check: the largest seen. */
        if (tried == 1 || build > compile_est)
            compile_est = build;
        if (!res[c].ok) {
            fprintf(stderr, "\nln-tune: gemm candidate %d rejected: %s\n", c, why);
            if (strstr(why, "differs") == NULL) /* failed to build or run: undo its sets */
                for (int k = 0; k < LN_CB_COUNT; k++)
                    if (cands[c].set[k] && last_good[k] >= 0)
                        ln_clblast_override(ctx->device, &ctx->info, k, cands[last_good[k]].v[k],
                                            why, sizeof(why));
            continue;
        }
        for (int k = 0; k < LN_CB_COUNT; k++)
            if (cands[c].set[k])
                last_good[k] = c;
        /* Every measured set with its total, so that a run that keeps the
         * default still says how close each candidate came. */
        char desc[512];
        describe_cand(&cands[c], desc, sizeof(desc));
        fprintf(stderr, "\nln-tune: gemm candidate %d: %.1f us against the default's %.1f "
                        "(build %.1f s): %s\n", c, res[c].total * 1e6, def.total * 1e6, build,
                desc);
        if (res[c].total < best_total && res[c].total < def.total - def.spread) {
            best = c;
            best_total = res[c].total;
        }
    }
    if (tried == 0) {
        fprintf(stderr, "\nln-tune: gemm: the budget left no room for a CLBlast rebuild "
                        "(~%.0f s each here); not stored, a later run with more --budget "
                        "tunes it\n", compile_est);
        work_free(ctx, w);
        return false;
    }

    for (int k = 0; k < LN_CB_COUNT; k++) {
        e[k].default_us = def.total * 1e6;
        e[k].tuned_us = best_total * 1e6;
        if (best >= 0 && cands[best].set[k])
            memcpy(e[k].clblast, cands[best].v[k], sizeof(long long) * LN_CB_MAX_PARAMS);
    }
    if (best >= 0)
        for (int k = 0; k < LN_CB_COUNT; k++)
            for (int i = ln_clblast_kernels[k].count; i < LN_CB_MAX_PARAMS; i++)
                e[k].clblast[i] = -1;
    if (ln_tune_file_merge(ctx, &ctx->info, path, e, LN_CB_COUNT) != LN_SUCCESS)
        fprintf(stderr, "\nln-tune: cannot write %s: %s\n", path, ln_last_error(ctx));

    /* Rows: every GEMM shape (GFLOP/s default -> tuned), then the sets. */
    const gemm_result *tuned = best >= 0 ? &res[best] : &def;
    for (int j = 0; o->s_seconds && j < o->shape_count; j++)
        for (int i = 0; i < w->count; i++)
            if (w->s[i].trans_b == s_trans_b && w->s[i].batch == o->shapes[j][0] &&
                w->s[i].m == o->shapes[j][1] && w->s[i].n == o->shapes[j][1] &&
                w->s[i].k == (size_t)o->cfg->d_model)
                o->s_seconds[j] = tuned->t[i];
    for (int i = 0; i < w->count && *nrows < MAX_ROWS; i++) {
        const gemm_shape *s = &w->s[i];
        result_row *r = &rows[(*nrows)++];
        snprintf(r->kernel, sizeof(r->kernel), "gemm");
        shape_label(s, r->shape, sizeof(r->shape));
        snprintf(r->params, sizeof(r->params), "%-12s x%d  %6.2f -> %6.2f GFLOP/s", s->what,
                 s->count, gflops(s, def.t[i]), gflops(s, tuned->t[i]));
        r->default_us = def.t[i] * 1e6;
        r->tuned_us = tuned->t[i] * 1e6;
    }
    for (int k = 0; k < LN_CB_COUNT && *nrows < MAX_ROWS; k++) {
        result_row *r = &rows[(*nrows)++];
        snprintf(r->kernel, sizeof(r->kernel), "%s", e[k].kernel);
        snprintf(r->shape, sizeof(r->shape), "%s", label);
        describe_clblast(&e[k], r->params, sizeof(r->params));
        r->default_us = e[k].default_us;
        r->tuned_us = e[k].tuned_us;
    }
    work_free(ctx, w);
    return true;
}
