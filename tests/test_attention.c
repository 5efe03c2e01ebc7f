/*
 * test_attention.c: semantic attention (src/attention.c, cl/attention.cl)
 * against a float64 reference: both S modes over many n, padding, a zero
 * temperature against plain scaled dot-product attention, negative
 * temperatures, every head_dim, d up to 1024, strided views of one qkv
 * buffer, tiles shrunk to fit a small local memory, a long sequence that
 * must stay in O(n d) memory, the materialising path, the GPU kernel
 * (attention_rows) forced on any device, and bad input.
 * The "oclgrind" case is small and uses no CLBlast (tests/attention_oclgrind.cmake).
 */
#include "internal.h"
#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ATTN_TOL 1e-4

/* One problem in the dense layout of ln.h. */
typedef struct problem {
    size_t batch, n, width, head_dim, d;
    float *q, *k, *v, *unit, *temperature;
    int32_t *lengths; /* NULL: every key is valid */
} problem;

/* Unit vectors around 4 random centroids, so S spreads over about 0..0.8
 * and the temperature term moves the softmax. */
static void fill_unit_rows(float *u, size_t rows, size_t d, uint64_t *rng)
{
    float *centroids = tu_malloc(4 * d * sizeof(float));
    tu_fill_normal(centroids, 4 * d, 1.0f, rng);
    for (size_t r = 0; r < rows; r++) {
        const float *c = centroids + (size_t)(tu_uniform(rng, 0.0f, 4.0f)) % 4 * d;
        double norm = 0;
        tu_fill_normal(u + r * d, d, 0.6f, rng);
        for (size_t j = 0; j < d; j++) {
            u[r * d + j] += c[j];
            norm += (double)u[r * d + j] * u[r * d + j];
        }
        for (size_t j = 0; j < d; j++)
            u[r * d + j] = (float)(u[r * d + j] / fmax(sqrt(norm), 1e-12));
    }
    free(centroids);
}

/* Random q, k, v, unit rows and temperatures in [t_lo, t_hi). With
 * `padded`, sequence 0 gets a random length, 1 the shortest (1) and 2 the
 * full n. */
static void problem_make(problem *p, size_t batch, size_t n, size_t width, size_t head_dim,
                         size_t d, float t_lo, float t_hi, bool padded, uint64_t *rng)
{
    const size_t rows = batch * n, heads = width / head_dim;
    *p = (problem){batch, n, width, head_dim, d, NULL, NULL, NULL, NULL, NULL, NULL};
    p->q = tu_malloc(rows * width * sizeof(float));
    p->k = tu_malloc(rows * width * sizeof(float));
    p->v = tu_malloc(rows * width * sizeof(float));
    p->unit = tu_malloc(rows * d * sizeof(float));
    p->temperature = tu_malloc(heads * sizeof(float));
    tu_fill_normal(p->q, rows * width, 1.0f, rng);
    tu_fill_normal(p->k, rows * width, 1.0f, rng);
    tu_fill_normal(p->v, rows * width, 1.0f, rng);
    fill_unit_rows(p->unit, rows, d, rng);
    tu_fill(p->temperature, heads, t_lo, t_hi, rng);
    if (padded) {
        p->lengths = tu_malloc(batch * sizeof(int32_t));
        for (size_t b = 0; b < batch; b++)
            p->lengths[b] = b == 1 ? 1 : b == 2 ? (int32_t)n
                                            : 1 + (int32_t)(tu_uniform(rng, 0.0f, (float)n));
        if (p->lengths[0] > (int32_t)n)
            p->lengths[0] = (int32_t)n;
    }
}

static void problem_free(problem *p)
{
    free(p->q), free(p->k), free(p->v), free(p->unit), free(p->temperature), free(p->lengths);
}

/* Reference rows of out in float64. semantic = false leaves the S term out
 * entirely: plain scaled dot-product attention over the valid keys. */
static void ref_row(const problem *p, size_t row, bool semantic, double *out)
{
    const size_t n = p->n, w = p->width, hd = p->head_dim, d = p->d, b = row / n;
    const size_t kv = p->lengths ? (size_t)p->lengths[b] : n;
    double *sim = tu_malloc(kv * sizeof(double)), *logit = tu_malloc(kv * sizeof(double));
    for (size_t j = 0; j < kv; j++) {
        double s = 0;
        for (size_t c = 0; c < d; c++)
            s += (double)p->unit[row * d + c] * p->unit[(b * n + j) * d + c];
        sim[j] = s;
    }
    for (size_t h = 0; h < w / hd; h++) {
        double m = -INFINITY, sum = 0;
        for (size_t j = 0; j < kv; j++) {
            double dot = 0;
            for (size_t c = 0; c < hd; c++)
                dot += (double)p->q[row * w + h * hd + c] * p->k[(b * n + j) * w + h * hd + c];
            logit[j] = dot / sqrt((double)hd) + (semantic ? p->temperature[h] * sim[j] : 0.0);
            m = fmax(m, logit[j]);
        }
        for (size_t c = 0; c < hd; c++)
            out[h * hd + c] = 0;
        for (size_t j = 0; j < kv; j++) {
            double e = exp(logit[j] - m);
            sum += e;
            for (size_t c = 0; c < hd; c++)
                out[h * hd + c] += e * p->v[(b * n + j) * w + h * hd + c];
        }
        for (size_t c = 0; c < hd; c++)
            out[h * hd + c] /= sum;
    }
    free(sim), free(logit);
}

static double *ref_all(const problem *p, bool semantic)
{
    const size_t rows = p->batch * p->n;
    double *ref = tu_malloc(rows * p->width * sizeof(double));
    for (size_t r = 0; r < rows; r++)
        ref_row(p, r, semantic, ref + r * p->width);
    return ref;
}

static const char *mode_name(ln_attention_mode mode)
{
    return mode == LN_ATTENTION_PRECOMPUTED_S ? "precomputed S"
           : mode == LN_ATTENTION_RECOMPUTE_S ? "recomputed S"
                                              : "auto";
}

/* Runs the host wrapper in `mode` and compares every row with the reference. */
static void check_host(ln_context *ctx, const problem *p, ln_attention_mode mode, bool semantic,
                       const char *what)
{
    const size_t count = p->batch * p->n * p->width;
    float *out = tu_malloc(count * sizeof(float));
    tu_assert_ok(ctx, ln_semantic_attention_host(ctx, p->batch, p->n, p->width, p->head_dim, p->d,
                                                 p->q, p->k, p->v, p->unit, p->temperature,
                                                 p->lengths, mode, out));
    double *ref = ref_all(p, semantic);
    tu_assert_close(out, ref, count, ATTN_TOL, "%s: B %zu n %zu width %zu head_dim %zu d %zu, %s",
                    what, p->batch, p->n, p->width, p->head_dim, p->d, mode_name(mode));
    free(out), free(ref);
}

static const ln_attention_mode both_modes[] = {LN_ATTENTION_PRECOMPUTED_S,
                                               LN_ATTENTION_RECOMPUTE_S};

START_TEST(attention_matches_float64_over_n)
{
    static const size_t ns[] = {1, 2, 17, 64, 257, 1000};
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 11;
    for (size_t ni = 0; ni < sizeof(ns) / sizeof(ns[0]); ni++)
        for (int padded = 0; padded <= 1; padded++) {
            problem p;
            problem_make(&p, padded ? 3 : 2, ns[ni], 64, 32, 96, -2.0f, 3.0f, padded, &rng);
            for (size_t m = 0; m < 2; m++)
                check_host(ctx, &p, both_modes[m], true, padded ? "padded" : "unpadded");
            problem_free(&p);
        }
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(attention_every_head_dim)
{
    /* The code that depends on head_dim (logits, P V) is the same in both S
     * modes, and each (head_dim, mode) is a kernel build of 2-5 s on PoCL:
     * the modes take turns (32 runs in both elsewhere). */
    static const size_t head_dims[] = {16, 32, 64, 96, 128};
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 12;
    for (size_t hi = 0; hi < sizeof(head_dims) / sizeof(head_dims[0]); hi++) {
        problem p;
        problem_make(&p, 2, 45, 2 * head_dims[hi], head_dims[hi], 384, -1.0f, 2.0f, true, &rng);
        check_host(ctx, &p, both_modes[hi % 2], true, "head_dim");
        problem_free(&p);
    }
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(attention_wide_unit_vectors)
{
    /* d = 1024 fills whole u chunks; d = 1000 and 5 end inside one. */
    static const size_t ds[] = {1024, 1000, 5};
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 13;
    for (size_t di = 0; di < sizeof(ds) / sizeof(ds[0]); di++) {
        problem p;
        problem_make(&p, 2, 70, 96, 32, ds[di], 1.0f, 4.0f, true, &rng);
        for (size_t m = 0; m < 2; m++)
            check_host(ctx, &p, both_modes[m], true, "wide d");
        problem_free(&p);
    }
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(attention_zero_temperature_is_sdpa)
{
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 14;
    problem p;
    problem_make(&p, 3, 83, 128, 32, 384, 0.0f, 0.0f, true, &rng);
    for (size_t m = 0; m < 2; m++)
        check_host(ctx, &p, both_modes[m], false, "temperature 0 vs plain SDPA");
    problem_free(&p);
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(attention_negative_temperature)
{
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 15;
    problem p;
    problem_make(&p, 3, 61, 96, 32, 384, -6.0f, -0.5f, true, &rng);
    for (size_t m = 0; m < 2; m++)
        check_host(ctx, &p, both_modes[m], true, "negative temperature");
    check_host(ctx, &p, LN_ATTENTION_AUTO, true, "negative temperature");
    problem_free(&p);
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(attention_tiles_fit_small_local_memory)
{
    /* A device with 8 KiB of local memory: the tuned 16 x 32 tiles with 12
     * heads of 32 need about 50 KiB, so the plan must shrink. Odd tuned
     * tiles (7 x 13) must work too. */
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 16;
    problem p;
    problem_make(&p, 2, 50, 384, 32, 384, -1.0f, 2.0f, true, &rng);
    ctx->info.local_mem_bytes = 8 << 10;
    for (size_t m = 0; m < 2; m++)
        check_host(ctx, &p, both_modes[m], true, "8 KiB of local memory");
    ctx->info.local_mem_bytes = 1 << 20;
    ctx->params.attn_tile_q = 7;
    ctx->params.attn_tile_k = 13;
    for (size_t m = 0; m < 2; m++)
        check_host(ctx, &p, both_modes[m], true, "7 x 13 tiles");
    problem_free(&p);
    ln_context_destroy(ctx);
}
END_TEST

static cl_mem upload(ln_context *ctx, const void *data, size_t bytes)
{
    cl_int err;
    cl_mem m = clCreateBuffer(ln_context_cl_context(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                              bytes, (void *)data, &err);
    ck_assert_msg(m != NULL, "clCreateBuffer of %zu bytes: %d", bytes, (int)err);
    return m;
}

static void download(ln_context *ctx, cl_mem m, void *data, size_t bytes)
{
    cl_int err = clEnqueueReadBuffer(ln_context_cl_queue(ctx), m, CL_TRUE, 0, bytes, data, 0, NULL,
                                     NULL);
    ck_assert_msg(err == CL_SUCCESS, "clEnqueueReadBuffer: %d", (int)err);
}

/* The fused path's kernel choices: the device's own (AUTO), and
 * attention_rows and attention_tiles forced, so a CPU runs the GPU
 * kernels too. */
static const int kernels[] = {LN_ATTENTION_KERNEL_AUTO, LN_ATTENTION_KERNEL_ROWS,
                              LN_ATTENTION_KERNEL_TILES};

START_TEST(attention_strided_views)
{
    /* q, k, v are column slices of one [B n, 3w] buffer; out is a slice of
     * a wider matrix whose other columns must stay as they were. Looped
     * over `kernels`, then over them again with one work-group per launch
     * along dimensions 1 and 2: ln_enqueue's slices for NVIDIA's grid
     * limit (heads, sequences, the materialising path's batched GEMMs). */
    ln_context *ctx = tu_context();
    const size_t nk = sizeof(kernels) / sizeof(kernels[0]);
    ctx->params.attn_kernel = kernels[_i % nk];
    if (_i >= (int)nk)
        ctx->max_groups_yz = 1;
    uint64_t rng = tu_seed() + 17;
    problem p;
    problem_make(&p, 2, 37, 96, 32, 50, -2.0f, 2.0f, true, &rng);
    const size_t rows = p.batch * p.n, w = p.width, ldqkv = 3 * w, ldo = w + 40, out_col = 17;
    float *qkv = tu_malloc(rows * ldqkv * sizeof(float));
    for (size_t r = 0; r < rows; r++) {
        memcpy(qkv + r * ldqkv, p.q + r * w, w * sizeof(float));
        memcpy(qkv + r * ldqkv + w, p.k + r * w, w * sizeof(float));
        memcpy(qkv + r * ldqkv + 2 * w, p.v + r * w, w * sizeof(float));
    }
    const size_t out_floats = rows * ldo;
    float *sentinel = tu_malloc(out_floats * sizeof(float)), *got = tu_malloc(out_floats * sizeof(float));
    float *dense = tu_malloc(rows * w * sizeof(float));
    tu_fill(sentinel, out_floats, -1.0f, 1.0f, &rng);
    cl_mem dqkv = upload(ctx, qkv, rows * ldqkv * sizeof(float));
    cl_mem du = upload(ctx, p.unit, rows * p.d * sizeof(float));
    cl_mem dt = upload(ctx, p.temperature, w / p.head_dim * sizeof(float));
    cl_mem dl = upload(ctx, p.lengths, p.batch * sizeof(int32_t));
    cl_mem ds = upload(ctx, sentinel, p.batch * p.n * p.n * sizeof(float)); /* any content */
    cl_mem dout = upload(ctx, sentinel, out_floats * sizeof(float));
    const ln_dmat q = {dqkv, 0, ldqkv}, k = {dqkv, w, ldqkv}, v = {dqkv, 2 * w, ldqkv};
    const ln_dmat out = {dout, out_col, ldo};
    double *ref = ref_all(&p, true);

    /* S itself first: ln_similarity against float64. */
    tu_assert_ok(ctx, ln_similarity(ctx, p.batch, p.n, p.d, du, ds));
    float *s_got = tu_malloc(p.batch * p.n * p.n * sizeof(float));
    double *s_ref = tu_malloc(p.batch * p.n * p.n * sizeof(double));
    download(ctx, ds, s_got, p.batch * p.n * p.n * sizeof(float));
    for (size_t b = 0; b < p.batch; b++)
        for (size_t i = 0; i < p.n; i++)
            for (size_t j = 0; j < p.n; j++) {
                double s = 0;
                for (size_t c = 0; c < p.d; c++)
                    s += (double)p.unit[(b * p.n + i) * p.d + c] * p.unit[(b * p.n + j) * p.d + c];
                s_ref[(b * p.n + i) * p.n + j] = s;
            }
    tu_assert_close(s_got, s_ref, p.batch * p.n * p.n, 1e-5, "ln_similarity");

    /* Fused in every way of getting S, then the materialising path. */
    struct { ln_attention_mode mode; cl_mem s; const char *what; } runs[] = {
        {LN_ATTENTION_PRECOMPUTED_S, ds, "S from ln_similarity"},
        {LN_ATTENTION_AUTO, ds, "auto with S given"},
        {LN_ATTENTION_PRECOMPUTED_S, NULL, "S computed inside"},
        {LN_ATTENTION_RECOMPUTE_S, ds, "recomputed S (s ignored)"},
        {LN_ATTENTION_AUTO, NULL, "naive path"},
    };
    for (size_t ri = 0; ri < sizeof(runs) / sizeof(runs[0]); ri++) {
        cl_int err = clEnqueueWriteBuffer(ln_context_cl_queue(ctx), dout, CL_TRUE, 0,
                                          out_floats * sizeof(float), sentinel, 0, NULL, NULL);
        ck_assert_int_eq(err, CL_SUCCESS);
        if (ri + 1 < sizeof(runs) / sizeof(runs[0]))
            tu_assert_ok(ctx, ln_semantic_attention(ctx, p.batch, p.n, w, p.head_dim, p.d, q, k, v,
                                                    du, runs[ri].s, dt, dl, runs[ri].mode, out));
        else
            tu_assert_ok(ctx, ln_semantic_attention_naive(ctx, p.batch, p.n, w, p.head_dim, p.d, q,
                                                          k, v, du, NULL, dt, dl, out));
        download(ctx, dout, got, out_floats * sizeof(float));
        for (size_t e = 0; e < out_floats; e++) {
            const size_t r = e / ldo, c = e % ldo;
            if (c >= out_col && c < out_col + w && r < rows)
                dense[r * w + c - out_col] = got[e];
            else
                ck_assert_msg(got[e] == sentinel[e], "%s: out[%zu] outside the view changed",
                              runs[ri].what, e);
        }
        tu_assert_close(dense, ref, rows * w, ATTN_TOL, "strided views, %s, kernel %d, %zu groups",
                        runs[ri].what, kernels[_i % nk], ctx->max_groups_yz);
    }
    clReleaseMemObject(dqkv), clReleaseMemObject(du), clReleaseMemObject(dt);
    clReleaseMemObject(dl), clReleaseMemObject(ds), clReleaseMemObject(dout);
    free(qkv), free(sentinel), free(got), free(dense), free(ref), free(s_got), free(s_ref);
    problem_free(&p);
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(attention_long_sequence_in_linear_memory)
{
    /* B = 1, n = 4096, 12 heads of 32, d = 384, S recomputed: ln-cl may
     * hold the host wrapper's copies of its inputs and output (O(n d)) and
     * nothing of size n^2. 64 random rows are checked in float64. */
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 18;
    problem p;
    problem_make(&p, 1, 4096, 384, 32, 384, -1.0f, 3.0f, false, &rng);
    const size_t rows = p.n, w = p.width;
    float *out = tu_malloc(rows * w * sizeof(float));
    tu_assert_ok(ctx, ln_semantic_attention_host(ctx, 1, p.n, w, p.head_dim, p.d, p.q, p.k, p.v,
                                                 p.unit, p.temperature, NULL,
                                                 LN_ATTENTION_RECOMPUTE_S, out));
    const uint64_t io_bytes = (4 * rows * w + rows * p.d + w / p.head_dim) * sizeof(float);
    const uint64_t peak = ln_context_peak_device_bytes(ctx);
    ck_assert_msg(peak <= io_bytes && peak < (uint64_t)p.n * p.n * sizeof(float) / 2,
                  "peak device bytes %llu: more than the inputs and output (%llu)",
                  (unsigned long long)peak, (unsigned long long)io_bytes);
    enum { CHECKED = 64 };
    float *got = tu_malloc(CHECKED * w * sizeof(float));
    double *ref = tu_malloc(CHECKED * w * sizeof(double));
    for (size_t c = 0; c < CHECKED; c++) {
        const size_t row = (size_t)tu_uniform(&rng, 0.0f, (float)rows) % rows;
        memcpy(got + c * w, out + row * w, w * sizeof(float));
        ref_row(&p, row, true, ref + c * w);
    }
    tu_assert_close(got, ref, CHECKED * w, ATTN_TOL, "n 4096, %d random rows", CHECKED);
    free(out), free(got), free(ref);
    problem_free(&p);
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(attention_resolves_mode_by_budget)
{
    ln_context *ctx = tu_context();
    ctx->params.attn_mode = LN_ATTENTION_AUTO; /* whatever a tuning file in the cache says */
    ck_assert_int_eq(ln_attention_resolve_mode(ctx, 2, 64), LN_ATTENTION_PRECOMPUTED_S);
    /* 2^40 floats of S fit no device. */
    ck_assert_int_eq(ln_attention_resolve_mode(ctx, 1, (size_t)1 << 20), LN_ATTENTION_RECOMPUTE_S);
    ctx->params.attn_s_budget_bytes = 2 * 64 * 64 * sizeof(float);
    ck_assert_int_eq(ln_attention_resolve_mode(ctx, 2, 64), LN_ATTENTION_PRECOMPUTED_S);
    ck_assert_int_eq(ln_attention_resolve_mode(ctx, 2, 65), LN_ATTENTION_RECOMPUTE_S);
    ctx->params.attn_mode = LN_ATTENTION_RECOMPUTE_S; /* a tuned choice wins */
    ck_assert_int_eq(ln_attention_resolve_mode(ctx, 2, 8), LN_ATTENTION_RECOMPUTE_S);
    ck_assert_int_eq(ln_attention_resolve_mode(NULL, 2, 8), LN_ATTENTION_RECOMPUTE_S);
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(attention_rejects_bad_input)
{
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 19;
    problem p;
    problem_make(&p, 2, 8, 64, 32, 16, 0.0f, 1.0f, true, &rng);
    float out[2 * 8 * 64];
    const float *q = p.q, *k = p.k, *v = p.v, *u = p.unit, *t = p.temperature;
    const ln_attention_mode pre = LN_ATTENTION_PRECOMPUTED_S;
#define HOST(c, B, n, w, hd, d, qq, ll) \
    ln_semantic_attention_host(c, B, n, w, hd, d, qq, k, v, u, t, ll, pre, out)
    tu_assert_status(NULL, HOST(NULL, 2, 8, 64, 32, 16, q, p.lengths), LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, HOST(ctx, 2, 8, 64, 32, 16, NULL, p.lengths), LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, HOST(ctx, 0, 8, 64, 32, 16, q, p.lengths), LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, HOST(ctx, 2, 0, 64, 32, 16, q, p.lengths), LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, HOST(ctx, 2, 8, 0, 32, 16, q, p.lengths), LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, HOST(ctx, 2, 8, 64, 0, 16, q, p.lengths), LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, HOST(ctx, 2, 8, 64, 32, 0, q, p.lengths), LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, HOST(ctx, 2, 8, 64, 24, 16, q, p.lengths), LN_ERROR_SHAPE_MISMATCH);
    static const int32_t bad_lengths[][2] = {{0, 8}, {8, 9}, {-3, 4}};
    for (size_t i = 0; i < 3; i++) {
        tu_assert_status(ctx, HOST(ctx, 2, 8, 64, 32, 16, q, bad_lengths[i]),
                         LN_ERROR_INVALID_ARGUMENT);
        ck_assert_msg(strstr(ln_last_error(ctx), "lengths[") != NULL, "message names lengths: %s",
                      ln_last_error(ctx));
    }
#undef HOST
    tu_assert_status(ctx, ln_semantic_attention_host(ctx, 2, 8, 64, 32, 16, q, k, v, u, t, NULL,
                                                     (ln_attention_mode)7, out),
                     LN_ERROR_INVALID_ARGUMENT);

    /* Device views: too small, missing buffers. */
    cl_mem small = upload(ctx, p.q, 16 * 64 * sizeof(float));
    cl_mem dt = upload(ctx, p.temperature, 2 * sizeof(float));
    cl_mem du = upload(ctx, p.unit, 16 * 16 * sizeof(float));
    const ln_dmat m = ln_dmat_of(small, 64);
    tu_assert_status(ctx, ln_semantic_attention(ctx, 2, 9, 64, 32, 16, m, m, m, du, NULL, dt, NULL,
                                                LN_ATTENTION_RECOMPUTE_S, m),
                     LN_ERROR_SHAPE_MISMATCH);
    tu_assert_status(ctx, ln_semantic_attention(ctx, 2, 8, 64, 32, 16, m, m, m, NULL, NULL, dt,
                                                NULL, LN_ATTENTION_RECOMPUTE_S, m),
                     LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, ln_semantic_attention(ctx, 2, 8, 64, 32, 16, m, m, m, du, NULL, NULL,
                                                NULL, LN_ATTENTION_RECOMPUTE_S, m),
                     LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, ln_semantic_attention(ctx, 2, 8, 64, 32, 16, m, m, ln_dmat_of(small, 32),
                                                du, NULL, dt, NULL, LN_ATTENTION_RECOMPUTE_S, m),
                     LN_ERROR_SHAPE_MISMATCH);
    tu_assert_status(ctx, ln_similarity(ctx, 2, 8, 0, du, small), LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, ln_similarity(ctx, 2, 8, 16, NULL, small), LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(ctx, ln_similarity(ctx, 2, 8, 17, du, small), LN_ERROR_SHAPE_MISMATCH);
    clReleaseMemObject(small), clReleaseMemObject(dt), clReleaseMemObject(du);
    problem_free(&p);
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(attention_small_without_clblast)
{
    /* Small enough for Oclgrind: S recomputed in the kernel, then the
     * precomputed-S kernel reading an S made here on the host. Looped over
     * `kernels`, so Oclgrind checks attention_rows and attention_tiles as
     * well, then over them again with every launch sliced to one
     * work-group along dimensions 1 and 2 (global offsets, ln_enqueue). */
    ln_context *ctx = tu_context();
    const size_t nk = sizeof(kernels) / sizeof(kernels[0]);
    ctx->params.attn_kernel = kernels[_i % nk];
    if (_i >= (int)nk)
        ctx->max_groups_yz = 1;
    uint64_t rng = tu_seed() + 20;
    problem p;
    problem_make(&p, 3, 19, 64, 32, 40, -2.0f, 2.0f, true, &rng);
    check_host(ctx, &p, LN_ATTENTION_RECOMPUTE_S, true, "small");

    const size_t rows = p.batch * p.n, w = p.width, s_floats = p.batch * p.n * p.n;
    float *s = tu_malloc(s_floats * sizeof(float)), *out = tu_malloc(rows * w * sizeof(float));
    for (size_t b = 0; b < p.batch; b++)
        for (size_t i = 0; i < p.n; i++)
            for (size_t j = 0; j < p.n; j++) {
                double acc = 0;
                for (size_t c = 0; c < p.d; c++)
                    acc += (double)p.unit[(b * p.n + i) * p.d + c] * p.unit[(b * p.n + j) * p.d + c];
                s[(b * p.n + i) * p.n + j] = (float)acc;
            }
    cl_mem dq = upload(ctx, p.q, rows * w * sizeof(float));
    cl_mem dk = upload(ctx, p.k, rows * w * sizeof(float));
    cl_mem dv = upload(ctx, p.v, rows * w * sizeof(float));
    cl_mem ds = upload(ctx, s, s_floats * sizeof(float));
    cl_mem dt = upload(ctx, p.temperature, w / p.head_dim * sizeof(float));
    cl_mem dl = upload(ctx, p.lengths, p.batch * sizeof(int32_t));
    cl_mem dout = upload(ctx, out, rows * w * sizeof(float)); /* content irrelevant */
    tu_assert_ok(ctx, ln_semantic_attention(ctx, p.batch, p.n, w, p.head_dim, p.d,
                                            ln_dmat_of(dq, w), ln_dmat_of(dk, w), ln_dmat_of(dv, w),
                                            NULL, ds, dt, dl, LN_ATTENTION_PRECOMPUTED_S,
                                            ln_dmat_of(dout, w)));
    download(ctx, dout, out, rows * w * sizeof(float));
    double *ref = ref_all(&p, true);
    tu_assert_close(out, ref, rows * w, ATTN_TOL,
                    "small, S uploaded from the host, kernel %d, %zu groups", kernels[_i % nk],
                    ctx->max_groups_yz);
    clReleaseMemObject(dq), clReleaseMemObject(dk), clReleaseMemObject(dv);
    clReleaseMemObject(ds), clReleaseMemObject(dt), clReleaseMemObject(dl), clReleaseMemObject(dout);
    free(s), free(out), free(ref);
    problem_free(&p);
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(attention_rows_kernel_matches_float64)
{
    /* attention_rows forced (a GPU's default), S precomputed: n around its
     * 64-query and 32-key tiles, padding, every head_dim it takes (16, 32,
     * 64; 96 falls back to attention_fused), odd and large tiles. */
    static const size_t ns[] = {1, 2, 31, 64, 65, 257};
    static const size_t head_dims[] = {16, 32, 64, 96};
    static const size_t tiles[][2] = {{64, 32}, {7, 13}, {128, 64}};
    ln_context *ctx = tu_context();
    ctx->params.attn_kernel = LN_ATTENTION_KERNEL_ROWS;
    uint64_t rng = tu_seed() + 21;
    for (size_t ni = 0; ni < sizeof(ns) / sizeof(ns[0]); ni++) {
        const size_t hd = head_dims[ni % 4];
        const size_t *t = tiles[ni % 3];
        ctx->params.attn_tile_q = t[0];
        ctx->params.attn_tile_k = t[1];
        ck_assert(ln_attention_uses_rows(ctx, &ctx->params, hd, false) == (hd <= 64));
        ck_assert(!ln_attention_uses_rows(ctx, &ctx->params, hd, true));
        for (int padded = 0; padded <= 1; padded++) {
            problem p;
            problem_make(&p, padded ? 3 : 2, ns[ni], 2 * hd, hd, 96, -2.0f, 3.0f, padded, &rng);
            check_host(ctx, &p, LN_ATTENTION_PRECOMPUTED_S, true, "attention_rows");
            problem_free(&p);
        }
    }
    /* More sequences than an NVIDIA grid takes along one dimension (65535
     * groups): launched in slices. */
    ctx->params.attn_tile_q = 64;
    ctx->params.attn_tile_k = 32;
    problem p;
    problem_make(&p, 65537, 1, 32, 32, 8, -2.0f, 3.0f, false, &rng);
    check_host(ctx, &p, LN_ATTENTION_PRECOMPUTED_S, true, "attention_rows, 65537 sequences");
    problem_free(&p);
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(attention_tiles_kernel_matches_float64)
{
    /* attention_tiles forced, S precomputed: n around its 4-query blocks,
     * 64-query and 32-key tiles, padding, head_dim 8 to 64 (column blocks
     * of 1 to 8; 12 falls back to attention_rows, 96 to attention_fused),
     * query tiles of 32, 64 and 128, and the query tile halved to fit a
     * small local memory. */
    static const size_t ns[] = {1, 3, 33, 64, 67, 130};
    static const size_t head_dims[] = {32, 8, 64, 24, 16, 12, 96};
    ln_context *ctx = tu_context();
    ctx->params.attn_kernel = LN_ATTENTION_KERNEL_TILES;
    const uint64_t local_bytes = ctx->info.local_mem_bytes;
    uint64_t rng = tu_seed() + 25;
    for (size_t hi = 0; hi < sizeof(head_dims) / sizeof(head_dims[0]); hi++) {
        const size_t hd = head_dims[hi];
        ck_assert(ln_attention_uses_rows(ctx, &ctx->params, hd, false) == (hd <= 64));
        for (size_t ni = hi % 2; ni < sizeof(ns) / sizeof(ns[0]); ni += 2) {
            /* Every third shape with local memory for a 16-query tile only. */
            ctx->info.local_mem_bytes =
                ni % 3 == 2 ? 4 * (20 * hd + 32 * (hd + 4) + 32 * hd + 32 * 20 + 8 * 20)
                            : local_bytes;
            /* Query tiles of 64 (the default), 128 and 32. */
            ctx->params.attn_tile_q = (size_t[]){64, 128, 32}[(hi + ni) % 3];
            problem p;
            const bool padded = ni % 2 == 0;
            problem_make(&p, padded ? 3 : 2, ns[ni], 2 * hd, hd, 40, -2.0f, 3.0f, padded, &rng);
            char what[96];
            snprintf(what, sizeof(what), "attention_tiles, head_dim %zu, tile %zu, local %llu", hd,
                     ctx->params.attn_tile_q, (unsigned long long)ctx->info.local_mem_bytes);
            check_host(ctx, &p, LN_ATTENTION_PRECOMPUTED_S, true, what);
            problem_free(&p);
        }
    }
    ctx->info.local_mem_bytes = local_bytes;
    ctx->params.attn_tile_q = 64;
    /* Slices of 65535 sequences, as for attention_rows. */
    problem p;
    problem_make(&p, 65537, 1, 32, 32, 8, -2.0f, 3.0f, false, &rng);
    check_host(ctx, &p, LN_ATTENTION_PRECOMPUTED_S, true, "attention_tiles, 65537 sequences");
    problem_free(&p);
    /* A local memory too small even for 4-query tiles is named. */
    ctx->info.local_mem_bytes = 1024;
    problem_make(&p, 1, 5, 32, 32, 8, -2.0f, 3.0f, false, &rng);
    const size_t rows = p.batch * p.n;
    cl_mem dq = upload(ctx, p.q, rows * 32 * sizeof(float));
    cl_mem ds = upload(ctx, p.q, 25 * sizeof(float));
    cl_mem dt = upload(ctx, p.temperature, sizeof(float));
    const ln_dmat m = ln_dmat_of(dq, 32);
    tu_assert_status(ctx, ln_semantic_attention(ctx, 1, 5, 32, 32, 8, m, m, m, NULL, ds, dt, NULL,
                                                LN_ATTENTION_PRECOMPUTED_S, m),
                     LN_ERROR_UNSUPPORTED);
    ck_assert_msg(strstr(ln_last_error(ctx), "attention_tiles") != NULL, "names the kernel: %s",
                  ln_last_error(ctx));
    clReleaseMemObject(dq), clReleaseMemObject(ds), clReleaseMemObject(dt);
    problem_free(&p);
    ln_context_destroy(ctx);
}
END_TEST

/* ln_semantic_attention_layer on `count` branches laid out as the model
 * keeps them (ln_attention_layer): each branch's q, k, v a dense block of
 * one qkv buffer, its result a block of out, whose floats past the blocks
 * must stay as they were. Each branch against float64, for the device's
 * own kernel and attention_rows forced, in one launch and branch by
 * branch, with S given, S made inside and S recomputed. Without CLBlast
 * (Oclgrind), S is computed on the host and never made inside. */
static void check_layer(ln_context *ctx, size_t B, size_t n, size_t hd, size_t count,
                        const size_t *width, bool padded, bool with_clblast, uint64_t *rng)
{
    const size_t d = 40, rows = B * n, tail = 7;
    problem p[4];
    size_t sum = 0, heads = 0;
    for (size_t k = 0; k < count; k++) {
        problem_make(&p[k], B, n, width[k], hd, d, -2.0f, 3.0f, padded, rng);
        if (k > 0) { /* one sequence set: branch 0's unit rows and lengths */
            memcpy(p[k].unit, p[0].unit, rows * d * sizeof(float));
            if (p[0].lengths)
                memcpy(p[k].lengths, p[0].lengths, B * sizeof(int32_t));
        }
        sum += width[k];
        heads += width[k] / hd;
    }
    const size_t qkv_floats = rows * 3 * sum + tail, out_floats = rows * sum + tail;
    float *qkv = tu_malloc(qkv_floats * sizeof(float));
    float *all_t = tu_malloc(heads * sizeof(float));
    tu_fill(qkv, qkv_floats, -1.0f, 1.0f, rng); /* the tail holds noise */
    cl_mem dt[4];
    for (size_t k = 0, c = 0, h = 0; k < count; c += width[k], h += width[k] / hd, k++) {
        const size_t w = width[k];
        for (size_t r = 0; r < rows; r++) {
            float *row = qkv + rows * 3 * c + r * 3 * w;
            memcpy(row, p[k].q + r * w, w * sizeof(float));
            memcpy(row + w, p[k].k + r * w, w * sizeof(float));
            memcpy(row + 2 * w, p[k].v + r * w, w * sizeof(float));
        }
        memcpy(all_t + h, p[k].temperature, w / hd * sizeof(float));
        dt[k] = upload(ctx, p[k].temperature, w / hd * sizeof(float));
    }
    cl_mem table = NULL;
    tu_assert_ok(ctx, ln_attention_head_table(ctx, count, width, hd, &table));
    const ln_attention_layer layer = {count, width, dt, upload(ctx, all_t, heads * 4), table};
    float *sentinel = tu_malloc(out_floats * sizeof(float));
    float *got = tu_malloc(out_floats * sizeof(float));
    float *s = tu_malloc(B * n * n * sizeof(float));
    tu_fill(sentinel, out_floats, -1.0f, 1.0f, rng);
    for (size_t b = 0; b < B; b++)
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++) {
                double acc = 0;
                for (size_t c = 0; c < d; c++)
                    acc += (double)p[0].unit[(b * n + i) * d + c] * p[0].unit[(b * n + j) * d + c];
                s[(b * n + i) * n + j] = (float)acc;
            }
    cl_mem dqkv = upload(ctx, qkv, qkv_floats * sizeof(float));
    cl_mem du = upload(ctx, p[0].unit, rows * d * sizeof(float));
    cl_mem dl = p[0].lengths ? upload(ctx, p[0].lengths, B * sizeof(int32_t)) : NULL;
    cl_mem ds = upload(ctx, s, B * n * n * sizeof(float));
    cl_mem dout = upload(ctx, sentinel, out_floats * sizeof(float));
    if (with_clblast)
        tu_assert_ok(ctx, ln_similarity(ctx, B, n, d, du, ds));
    double *ref[4];
    for (size_t k = 0; k < count; k++)
        ref[k] = ref_all(&p[k], true);

    const struct { ln_attention_mode mode; bool given_s; const char *what; } runs[] = {
        {LN_ATTENTION_PRECOMPUTED_S, true, "S given"},
        {LN_ATTENTION_AUTO, true, "auto, S given"},
        {LN_ATTENTION_RECOMPUTE_S, false, "S recomputed"},
        {LN_ATTENTION_PRECOMPUTED_S, false, "S made inside"},
    };
    const size_t n_runs = sizeof(runs) / sizeof(runs[0]) - (with_clblast ? 0 : 1);
    for (size_t ki = 0; ki < sizeof(kernels) / sizeof(kernels[0]); ki++)
        for (int per_branch = 0; per_branch <= 1; per_branch++)
            for (size_t ri = 0; ri < n_runs; ri++) {
                ctx->params.attn_kernel = kernels[ki];
                ctx->attn_per_branch = per_branch;
                cl_int err = clEnqueueWriteBuffer(ln_context_cl_queue(ctx), dout, CL_TRUE, 0,
                                                  out_floats * sizeof(float), sentinel, 0, NULL,
                                                  NULL);
                ck_assert_int_eq(err, CL_SUCCESS);
                const uint64_t held = ln_context_device_bytes(ctx);
                tu_assert_ok(ctx, ln_semantic_attention_layer(ctx, B, n, hd, d, &layer, dqkv, du,
                                                              runs[ri].given_s ? ds : NULL, dl,
                                                              runs[ri].mode, dout));
                download(ctx, dout, got, out_floats * sizeof(float));
                ck_assert_uint_eq(ln_context_device_bytes(ctx), held); /* own S released */
                for (size_t e = rows * sum; e < out_floats; e++)
                    ck_assert_msg(got[e] == sentinel[e], "%s: out[%zu] past the blocks changed",
                                  runs[ri].what, e);
                for (size_t k = 0, c = 0; k < count; c += width[k], k++)
                    tu_assert_close(got + rows * c, ref[k], rows * width[k], ATTN_TOL,
                                    "B %zu, n %zu, branch %zu, %s, kernel %d, per branch %d", B,
                                    n, k, runs[ri].what, kernels[ki], per_branch);
            }
    for (size_t k = 0; k < count; k++) {
        free(ref[k]);
        clReleaseMemObject(dt[k]);
        problem_free(&p[k]);
    }
    clReleaseMemObject(layer.all_temperature);
    ln_buffer_release(ctx, table);
    clReleaseMemObject(dqkv), clReleaseMemObject(du), clReleaseMemObject(ds);
    clReleaseMemObject(dout);
    if (dl)
        clReleaseMemObject(dl);
    free(qkv), free(all_t), free(sentinel), free(got), free(s);
}

START_TEST(attention_layer_matches_float64)
{
    static const size_t w4[] = {64, 128, 32, 96}, w3[] = {48, 16, 32}, w2[] = {64, 128};
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 22;
    check_layer(ctx, 3, 37, 32, 4, w4, true, true, &rng);
    check_layer(ctx, 2, 65, 16, 3, w3, false, true, &rng);
    check_layer(ctx, 1, 9, 64, 2, w2, false, true, &rng);
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(attention_layer_small_without_clblast)
{
    /* Small enough for Oclgrind: attention_rows and attention_tiles for a
     * whole layer (and the per-branch paths) on S made on the host. */
    static const size_t widths[] = {32, 64};
    ln_context *ctx = tu_context();
    uint64_t rng = tu_seed() + 24;
    check_layer(ctx, 3, 11, 32, 2, widths, true, false, &rng);
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(attention_layer_rejects_bad_input)
{
    ln_context *ctx = tu_context();
    const size_t width[2] = {64, 32}, bad_width[2] = {64, 24};
    cl_mem table = NULL;
    tu_assert_status(ctx, ln_attention_head_table(ctx, 2, bad_width, 32, &table),
                     LN_ERROR_SHAPE_MISMATCH);
    ck_assert_msg(strstr(ln_last_error(ctx), "branch 1") != NULL, "names the branch: %s",
                  ln_last_error(ctx));
    tu_assert_status(ctx, ln_attention_head_table(ctx, 0, width, 32, &table),
                     LN_ERROR_INVALID_ARGUMENT);
    tu_assert_ok(ctx, ln_attention_head_table(ctx, 2, width, 32, &table));
    /* The table itself: per head 3 c_k, w_k, c_k and its column. */
    cl_uint got[3 * 4];
    download(ctx, table, got, sizeof(got));
    const cl_uint want[3 * 4] = {0, 64, 0, 0, 0, 64, 0, 32, 192, 32, 64, 0};
    for (size_t i = 0; i < 12; i++)
        ck_assert_uint_eq(got[i], want[i]);
    float buf[8 * 96];
    memset(buf, 0, sizeof(buf));
    cl_mem small = upload(ctx, buf, sizeof(buf)), dt = upload(ctx, buf, 64);
    const cl_mem temps[2] = {dt, dt};
    const ln_attention_layer layer = {2, width, temps, dt, table};
    /* qkv holds 8 x 96 floats where 8 x 3 x 96 are needed. */
    ctx->params.attn_kernel = LN_ATTENTION_KERNEL_ROWS;
    tu_assert_status(ctx, ln_semantic_attention_layer(ctx, 1, 8, 32, 16, &layer, small, small,
                                                      NULL, NULL, LN_ATTENTION_PRECOMPUTED_S,
                                                      small),
                     LN_ERROR_SHAPE_MISMATCH);
    ck_assert_msg(strstr(ln_last_error(ctx), "qkv") != NULL, "names qkv: %s", ln_last_error(ctx));
    const ln_attention_layer none = {0, width, temps, dt, table};
    tu_assert_status(ctx, ln_semantic_attention_layer(ctx, 1, 8, 32, 16, &none, small, small,
                                                      NULL, NULL, LN_ATTENTION_PRECOMPUTED_S,
                                                      small),
                     LN_ERROR_INVALID_ARGUMENT);
    const ln_attention_layer odd = {2, bad_width, temps, dt, table};
    tu_assert_status(ctx, ln_semantic_attention_layer(ctx, 1, 8, 32, 16, &odd, small, small,
                                                      NULL, NULL, LN_ATTENTION_PRECOMPUTED_S,
                                                      small),
                     LN_ERROR_SHAPE_MISMATCH);
    tu_assert_status(ctx, ln_semantic_attention_layer(ctx, 1, 8, 32, 16, &layer, small, small,
                                                      NULL, NULL, (ln_attention_mode)9, small),
                     LN_ERROR_INVALID_ARGUMENT);
    clReleaseMemObject(small), clReleaseMemObject(dt);
    ln_buffer_release(ctx, table);
    ln_context_destroy(ctx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("attention");
    TCase *tc = tcase_create("attention");
    tcase_add_test(tc, attention_matches_float64_over_n);
    tcase_add_test(tc, attention_every_head_dim);
    tcase_add_test(tc, attention_wide_unit_vectors);
    tcase_add_test(tc, attention_zero_temperature_is_sdpa);
    tcase_add_test(tc, attention_negative_temperature);
    tcase_add_test(tc, attention_tiles_fit_small_local_memory);
    tcase_add_test(tc, attention_layer_rejects_bad_input);
    tcase_add_test(tc, attention_long_sequence_in_linear_memory);
    tcase_add_test(tc, attention_resolves_mode_by_budget);
    tcase_add_test(tc, attention_rejects_bad_input);
    suite_add_tcase(s, tc);
    /* The GPU kernels forced (a case of its own, so that bench/gpu_check.sh
     * can run it first on a short lease). */
    TCase *kernels = tcase_create("kernels");
    tcase_add_loop_test(kernels, attention_strided_views, 0, 6);
    tcase_add_test(kernels, attention_rows_kernel_matches_float64);
    tcase_add_test(kernels, attention_tiles_kernel_matches_float64);
    tcase_add_test(kernels, attention_layer_matches_float64);
    suite_add_tcase(s, kernels);
    TCase *small = tcase_create("oclgrind");
    tcase_add_loop_test(small, attention_small_without_clblast, 0, 6);
    tcase_add_test(small, attention_layer_small_without_clblast);
    suite_add_tcase(s, small);
    return tu_run(s);
}
