/*
 * ln_bench.c: ln-bench, the encoder benchmark. It owns the timing of the
 * whole forward (ln_model_encode_device and ln_model_encode), its FLOP
 * count, the per-op device-time breakdown (through the internal profile
 * hook of src/program.c and src/linear.c), peak device memory per shape,
 * and CLBlast SGEMM throughput at the model's GEMM shapes.
 *
 *   ln-bench [--batch 1,8] [--n 64,256,1024,4096] [--skip 8x4096]
 *            [--config JSON|FILE | --model FILE] [--seed S] [--repeats 5]
 *            [--warmup 1] [--profile-runs 1] [--device SPEC]
 *            [--gemm-rows LIST | --no-gemm] [--no-model] [--attention-per-branch]
 *            [--gemm-layout auto|row|col] [--json]
 *
 * Timing: every figure is the median over --repeats runs after --warmup
 * runs (kernel builds, CLBlast's compiles and the workspace allocation
 * happen in the warm-up). A repeat runs ln_model_encode_device on device
 * buffers prepared once, then ln_context_finish, then ln_model_encode on
 * host arrays, so the two are interleaved in time and see the same machine
 * load. Host wall time (CLOCK_MONOTONIC) throughout.
 *
 * FLOPs (model FLOPs, the basis of GFLOP/s): 2 m n k for every GEMM of
 * SPEC.md's forward, elementwise work ignored:
 *   per layer: projections 2 R d sum(w); per branch q, k, v 2 R w 3w,
 *   out_proj 2 R w^2, FFN 2 * 2 R w (f w), QK^T and PV 2 * 2 B n^2 w;
 *   fusion 2 R sum(w) d;  once: positional second layer 2 R p d and
 *   S = u u^T 2 B n^2 d  (R = B n rows, f = ffn_mult, p = pos_hidden).
 * When attention recomputes S tiles (RECOMPUTE_S) the device executes S
 * once per branch and layer: "flops_recompute_extra" is that surplus; it is
 * reported, not counted in GFLOP/s.
 *
 * Peak device memory: the bytes ln-cl itself allocated (weights, workspace,
 * temporaries; not the benchmark's own input and output buffers), per
 * shape: the model is made afresh for each shape and the context's peak
 * counter is reset to the bytes held before (a bench-only poke at the
 * internal context).
 *
 * GEMMs are timed twice: one call and a finish (what a lone GEMM costs a
 * caller) and back to back with one finish (what it costs inside a
 * forward); a one-float kernel timed both ways shows the device's fixed
 * cost per launch that separates the two.
 */
#include "config.h"
#include "internal.h"

#include <jansson.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LIST 16
#define MAX_RUNS 101
#define MAX_GEMMS 32

typedef struct options {
    size_t batch[MAX_LIST], n[MAX_LIST], skip_b[MAX_LIST], skip_n[MAX_LIST];
    size_t gemm_rows[MAX_LIST];
    int n_batch, n_n, n_skip, n_gemm_rows;
    const char *config_json, *model_path, *device;
    uint64_t seed;
    int repeats, warmup, profile_runs;
    bool json, no_gemm, no_model;
    bool per_branch; /* --attention-per-branch: one attention launch per branch */
    int gemm_layout; /* --gemm-layout: ln_gemm_layout */
} options;

/* ------------------------------------------------------------ helpers */

static void die(ln_context *ctx, ln_status st, const char *what)
{
    fprintf(stderr, "ln-bench: %s: %s: %s\n", what, ln_status_string(st), ln_last_error(ctx));
    exit(EXIT_FAILURE);
}

static void usage(FILE *to)
{
    fprintf(to,
            "usage: ln-bench [--batch 1,8] [--n 64,256,1024,4096] [--skip BxN,...]\n"
            "                [--config JSON|FILE | --model FILE.safetensors] [--seed S]\n"
            "                [--repeats 5] [--warmup 1] [--profile-runs 1] [--device SPEC]\n"
            "                [--gemm-rows R,... | --no-gemm] [--no-model]\n"
            "                [--attention-per-branch] [--gemm-layout auto|row|col] [--json]\n"
            "Times the LN encoder forward per (B, n) and CLBlast SGEMM at the model's\n"
            "GEMM shapes (rows = each B * n unless --gemm-rows). --json: one JSON object\n"
            "on stdout instead of the tables (progress goes to stderr).\n"
            "--attention-per-branch: where one launch would run every branch's attention\n"
            "(attention_rows, on GPUs), launch it branch by branch, as before 2026-11-27.\n"
            "--gemm-layout: call CLBlast row-major or column-major on C^T for every GEMM\n"
            "instead of whichever CLBlast copies less for (auto), to compare them.\n");
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..count) (sorted copy; the mean of the middle two for an
 * even count). */
static double median(const double *v, int count)
{
    double s[MAX_RUNS];
    if (count <= 0)
        return NAN;
    memcpy(s, v, (size_t)count * sizeof(double));
    qsort(s, (size_t)count, sizeof(double), compare_double);
    return count % 2 ? s[count / 2] : 0.5 * (s[count / 2 - 1] + s[count / 2]);
}

/* Sizes and counts on the command line: digits only, so "-5" is not read as
 * 2^64 - 5 by strtoull, and at most LIST_VALUE_MAX, far past any device's
 * memory at the model's width. */
#define LIST_VALUE_MAX (1ull << 24)

static int parse_list(const char *arg, size_t *out, const char *name)
{
    int count = 0;
    const char *p = arg;
    while (*p) {
        char *end = (char *)p;
        unsigned long long v = 0;
        if (*p >= '0' && *p <= '9')
            v = strtoull(p, &end, 10); /* ULLONG_MAX on overflow: over the cap */
        if (end == p || v == 0 || v > LIST_VALUE_MAX || count == MAX_LIST) {
            fprintf(stderr,
                    "ln-bench: %s \"%s\": want up to %d integers in 1..%llu, comma-separated\n",
                    name, arg, MAX_LIST, LIST_VALUE_MAX);
            exit(2);
        }
        out[count++] = (size_t)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') {
            fprintf(stderr, "ln-bench: %s \"%s\": unexpected \"%s\"\n", name, arg, end);
            exit(2);
        }
    }
    return count;
}

static int parse_int(const char *arg, const char *name, int lo, int hi)
{
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 10);
    if (*arg == '\0' || *end || errno == ERANGE || v < lo || v > hi) {
        fprintf(stderr, "ln-bench: %s \"%s\": want an integer in %d..%d\n", name, arg, lo, hi);
        exit(2);
    }
    return (int)v;
}

/* --config takes the JSON itself, or a file holding it: a value whose first
 * non-blank character is not '{' is read as a path. The text lives as long
 * as the process, as argv's strings do (held here, so LeakSanitizer sees it
 * reachable at exit). */
static char *config_file_text;

static const char *config_text(const char *v)
{
    const char *p = v;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (*p == '{')
        return v;
    FILE *f = fopen(v, "rb");
    if (!f) {
        fprintf(stderr, "ln-bench: --config \"%s\": neither JSON (no '{') nor a readable file: %s\n",
                v, strerror(errno));
        exit(2);
    }
    enum { CONFIG_MAX = 1 << 20 };
    char *text = malloc(CONFIG_MAX + 1);
    size_t got = text ? fread(text, 1, CONFIG_MAX + 1, f) : 0;
    const bool failed = !text || ferror(f);
    fclose(f);
    if (failed || got > CONFIG_MAX) {
        fprintf(stderr, "ln-bench: --config file \"%s\": %s\n", v,
                failed ? "could not be read" : "over 1 MiB, not an ln_config");
        exit(2);
    }
    text[got] = '\0';
    free(config_file_text); /* a second --config replaces the first */
    config_file_text = text;
    return text;
}

static void parse_args(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof(*o));
    o->batch[0] = 1, o->batch[1] = 8, o->n_batch = 2;
    const size_t ns[] = {64, 256, 1024, 4096};
    for (int i = 0; i < 4; i++)
        o->n[i] = ns[i];
    o->n_n = 4;
    o->seed = 0x1e5eedull;
    o->repeats = 5, o->warmup = 1, o->profile_runs = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE                                                                       \
    do {                                                                                 \
        if (!v) {                                                                        \
            fprintf(stderr, "ln-bench: %s needs a value\n", a);                           \
            exit(2);                                                                     \
        }                                                                                \
        i++;                                                                             \
    } while (0)
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--batch")) {
            NEED_VALUE;
            o->n_batch = parse_list(v, o->batch, a);
        } else if (!strcmp(a, "--n")) {
            NEED_VALUE;
            o->n_n = parse_list(v, o->n, a);
        } else if (!strcmp(a, "--skip")) {
            NEED_VALUE;
            for (const char *p = v; *p;) {
                unsigned long b, n;
                int used = 0;
                if (sscanf(p, "%lux%lu%n", &b, &n, &used) != 2 || o->n_skip == MAX_LIST) {
                    fprintf(stderr, "ln-bench: --skip \"%s\": want BxN,BxN...\n", v);
                    exit(2);
                }
                o->skip_b[o->n_skip] = b, o->skip_n[o->n_skip++] = n;
                p += used;
                if (*p == ',')
                    p++;
                else if (*p) {
                    fprintf(stderr, "ln-bench: --skip \"%s\": want BxN,BxN...\n", v);
                    exit(2);
                }
            }
        } else if (!strcmp(a, "--gemm-rows")) {
            NEED_VALUE;
            o->n_gemm_rows = parse_list(v, o->gemm_rows, a);
        } else if (!strcmp(a, "--config")) {
            NEED_VALUE;
            o->config_json = config_text(v);
        } else if (!strcmp(a, "--model")) {
            NEED_VALUE;
            o->model_path = v;
        } else if (!strcmp(a, "--device")) {
            NEED_VALUE;
            o->device = v;
        } else if (!strcmp(a, "--seed")) {
            NEED_VALUE;
            char *end;
            errno = 0;
            o->seed = strtoull(v, &end, 0);
            if (!(*v >= '0' && *v <= '9') || *end || errno == ERANGE) {
                fprintf(stderr, "ln-bench: --seed \"%s\": want an integer in 0..2^64-1\n", v);
                exit(2);
            }
        } else if (!strcmp(a, "--repeats")) {
            NEED_VALUE;
            o->repeats = parse_int(v, a, 1, MAX_RUNS);
        } else if (!strcmp(a, "--warmup")) {
            NEED_VALUE;
            o->warmup = parse_int(v, a, 0, 100);
        } else if (!strcmp(a, "--profile-runs")) {
            NEED_VALUE;
            o->profile_runs = parse_int(v, a, 0, MAX_RUNS);
        } else if (!strcmp(a, "--json")) {
            o->json = true;
        } else if (!strcmp(a, "--no-gemm")) {
            o->no_gemm = true;
        } else if (!strcmp(a, "--no-model")) {
            o->no_model = true;
        } else if (!strcmp(a, "--attention-per-branch")) {
            o->per_branch = true;
        } else if (!strcmp(a, "--gemm-layout")) {
            NEED_VALUE;
            if (!strcmp(v, "auto"))
                o->gemm_layout = LN_GEMM_LAYOUT_AUTO;
            else if (!strcmp(v, "row"))
                o->gemm_layout = LN_GEMM_LAYOUT_ROW_MAJOR;
            else if (!strcmp(v, "col"))
                o->gemm_layout = LN_GEMM_LAYOUT_COL_MAJOR;
            else {
                fprintf(stderr, "ln-bench: --gemm-layout takes auto, row or col, not \"%s\"\n", v);
                exit(2);
            }
        } else {
            fprintf(stderr, "ln-bench: unknown argument \"%s\"\n", a);
            usage(stderr);
            exit(2);
        }
#undef NEED_VALUE
    }
    if (o->config_json && o->model_path) {
        fprintf(stderr, "ln-bench: give --config or --model, not both\n");
        exit(2);
    }
}

static bool skipped(const options *o, size_t b, size_t n)
{
    for (int i = 0; i < o->n_skip; i++)
        if (o->skip_b[i] == b && o->skip_n[i] == n)
            return true;
    return false;
}

static void fill_uniform(float *v, size_t count, uint64_t *rng)
{
    for (size_t i = 0; i < count; i++) {
        *rng ^= *rng << 13, *rng ^= *rng >> 7, *rng ^= *rng << 17;
        v[i] = (float)((double)(*rng >> 40) / 8388608.0 - 1.0); /* U(-1, 1) */
    }
}

/* A buffer the benchmark owns: made with OpenCL directly, so ln-cl's byte
 * counters (and the reported peak) do not include it. */
static cl_mem own_buffer(ln_context *ctx, size_t bytes, const float *init)
{
    cl_int err;
    cl_mem m = clCreateBuffer(ln_context_cl_context(ctx), CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (!m)
        die(ctx, (ln_status)err, "allocating a benchmark buffer");
    if (init && (err = clEnqueueWriteBuffer(ln_context_cl_queue(ctx), m, CL_TRUE, 0, bytes, init,
                                            0, NULL, NULL)))
        die(ctx, (ln_status)err, "filling a benchmark buffer");
    return m;
}

/* ----------------------------------------------------------- FLOPs */

typedef struct flops {
    double linear;  /* every Linear's GEMM */
    double attn;    /* QK^T and PV over all heads, branches, layers */
    double s;       /* S = u u^T once */
    double total;   /* linear + attn + s: the GFLOP/s basis */
    double recompute_extra; /* S executed again per branch and layer in RECOMPUTE_S */
} flops;

static flops count_flops(const ln_model_config *c, size_t batch, size_t n, bool recompute)
{
    flops f = {0};
    const double R = (double)batch * (double)n, d = c->d_model, nn = (double)batch * n * n;
    double sum = 0;
    for (int k = 0; k < c->n_scales; k++)
        sum += c->scales[k];
    f.linear = 2 * R * c->pos_hidden * d;
    for (int l = 0; l < c->n_layers; l++) {
        f.linear += 2 * R * d * sum * 2; /* projections and fusion */
        for (int k = 0; k < c->n_scales; k++) {
            const double w = c->scales[k];
            f.linear += 2 * R * w * (3 * w + w + 2 * c->ffn_mult * w);
            f.attn += 2 * 2 * nn * w;
        }
    }
    f.s = 2 * nn * d;
    f.total = f.linear + f.attn + f.s;
    if (recompute)
        f.recompute_extra = f.s * (c->n_layers * c->n_scales - 1);
    return f;
}

/* ------------------------------------------------------ the profile */

typedef enum category { CAT_GEMM, CAT_ATTN, CAT_NORM, CAT_EPI, CAT_COPY, CAT_COUNT } category;
static const char *const cat_names[CAT_COUNT] = {"gemm", "attention", "norms",
                                                 "epilogues", "copies"};
static const char *const cat_titles[CAT_COUNT] = {
    "GEMMs (Linear layers)", "attention (S GEMM + fused kernel)", "norms (LayerNorm, unit rows)",
    "epilogues (bias, GELU, residual, positional hidden)", "host<->device copies (encode)"};

static category category_of(const ln_profile_entry *e)
{
    if (!strncmp(e->what, "ln_similarity", 13) || !strncmp(e->what, "ln_semantic_attention", 21))
        return CAT_ATTN;
    if (!strcmp(e->kernel, "gemm"))
        return CAT_GEMM;
    if (!strcmp(e->what, "ln_layernorm") || !strcmp(e->what, "ln_unit_rows") ||
        strstr(e->kernel, "norm") || strstr(e->kernel, "unit"))
        return CAT_NORM;
    return CAT_EPI;
}

/* One op of the breakdown: an entry of the profile with the median of its
 * time over the profiled runs. */
typedef struct op_time {
    ln_profile_entry e;
    double ms; /* median over runs, all launches of the run summed */
} op_time;

typedef struct shape_result {
    size_t batch, n;
    ln_attention_mode mode;
    flops fl;
    int repeats;
    double dev_ms[MAX_RUNS], host_ms[MAX_RUNS];
    double dev_median, host_median;
    uint64_t weights_bytes, peak_bytes;
    int profile_runs, n_ops;
    op_time ops[LN_PROFILE_ENTRIES];
    double profiled_wall_ms; /* median host wall of a profiled (serialised) run */
    double h2d_ms, d2h_ms;   /* median device time of the encode's copies */
    double cat_ms[CAT_COUNT];
} shape_result;

/* Device time of one copy of `bytes` (OpenCL profiling of its event). */
static double copy_ms(ln_context *ctx, bool to_device, cl_mem mem, void *host, size_t bytes)
{
    cl_event ev;
    cl_command_queue q = ln_context_cl_queue(ctx);
    cl_int err = to_device ? clEnqueueWriteBuffer(q, mem, CL_TRUE, 0, bytes, host, 0, NULL, &ev)
                           : clEnqueueReadBuffer(q, mem, CL_TRUE, 0, bytes, host, 0, NULL, &ev);
    if (err)
        die(ctx, (ln_status)err, "timing a copy");
    cl_ulong t0 = 0, t1 = 0;
    clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof(t0), &t0, NULL);
    clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof(t1), &t1, NULL);
    clReleaseEvent(ev);
    return t1 > t0 ? (double)(t1 - t0) * 1e-6 : 0.0;
}

static bool same_entry(const ln_profile_entry *a, const ln_profile_entry *b)
{
    return a->m == b->m && a->n == b->n && a->k == b->k && a->batch == b->batch &&
           !strcmp(a->kernel, b->kernel) && !strcmp(a->what, b->what);
}

static void profile_shape(ln_context *ctx, ln_model *model, const options *o, cl_mem dx,
                          cl_mem dout, float *x, float *out, shape_result *r)
{
    static ln_profile runs[MAX_RUNS];
    double wall[MAX_RUNS], h2d[MAX_RUNS], d2h[MAX_RUNS];
    const size_t bytes = r->batch * r->n * ln_model_d_model(model) * sizeof(float);
    const int P = o->profile_runs;
    r->profile_runs = P;
    for (int i = 0; i < P; i++) {
        memset(&runs[i], 0, sizeof(runs[i]));
        ln_status st = ln_context_finish(ctx);
        double t = now_ms();
        ln_profile_attach(ctx, &runs[i]);
        if (!st)
            st = ln_model_encode_device(model, r->batch, r->n, dx, NULL, NULL, dout);
        if (!st)
            st = ln_context_finish(ctx);
        ln_profile_attach(ctx, NULL);
        wall[i] = now_ms() - t;
        if (st)
            die(ctx, st, "profiled encode");
        h2d[i] = copy_ms(ctx, true, dx, x, bytes);
        d2h[i] = copy_ms(ctx, false, dout, out, bytes);
    }
    r->profiled_wall_ms = median(wall, P);
    r->h2d_ms = median(h2d, P);
    r->d2h_ms = median(d2h, P);
    /* Entries in the order of the first run; the median over runs of each. */
    r->n_ops = P ? runs[0].count : 0;
    for (int j = 0; j < r->n_ops; j++) {
        double v[MAX_RUNS];
        r->ops[j].e = runs[0].entry[j];
        for (int i = 0; i < P; i++) {
            v[i] = 0;
            for (int k = 0; k < runs[i].count; k++)
                if (same_entry(&runs[i].entry[k], &runs[0].entry[j]))
                    v[i] = runs[i].entry[k].ms;
        }
        r->ops[j].ms = median(v, P);
        r->cat_ms[category_of(&r->ops[j].e)] += r->ops[j].ms;
    }
    if (P && runs[0].dropped)
        fprintf(stderr, "ln-bench: the profile dropped %u launches (more than %d distinct ops)\n",
                runs[0].dropped, LN_PROFILE_ENTRIES);
    r->cat_ms[CAT_COPY] = r->h2d_ms + r->d2h_ms;
}

/* ------------------------------------------------------- one shape */

static ln_model *make_model(ln_context *ctx, const options *o)
{
    ln_model *m = NULL;
    ln_status st = o->model_path ? ln_model_load(ctx, o->model_path, &m)
                                 : ln_model_create_seeded(ctx, o->config_json, o->seed, &m);
    if (st)
        die(ctx, st, o->model_path ? "loading the model" : "creating the seeded model");
    return m;
}

static void bench_shape(ln_context *ctx, const options *o, const ln_model_config *cfg,
                        size_t batch, size_t n, shape_result *r)
{
    memset(r, 0, sizeof(*r));
    r->batch = batch, r->n = n, r->repeats = o->repeats;
    r->mode = ln_attention_resolve_mode(ctx, ln_model_chunk_sequences(ctx, batch, n), n);
    r->fl = count_flops(cfg, batch, n, r->mode == LN_ATTENTION_RECOMPUTE_S);
    /* A fresh model per shape, and the peak counter restarted from what
     * the context holds now, so the peak is this shape's alone. */
    ctx->peak_device_bytes = ctx->device_bytes;
    const uint64_t before = ctx->device_bytes;
    ln_model *model = make_model(ctx, o);
    r->weights_bytes = ctx->device_bytes - before;

    const size_t d = (size_t)cfg->d_model;
    const double want = (double)batch * (double)n * (double)d * sizeof(float);
    const size_t count = batch * n * d, bytes = count * sizeof(float);
    float *x = NULL, *out = NULL;
    if (want < (double)SIZE_MAX / 2) /* else B n d floats would wrap size_t */
        x = malloc(bytes), out = malloc(bytes);
    if (!x || !out) {
        fprintf(stderr,
                "ln-bench: B = %zu, n = %zu, d = %zu: the input and output host arrays, "
                "2 x %.3g GiB, do not fit in this machine's memory\n",
                batch, n, d, want / (1u << 30));
        exit(EXIT_FAILURE);
    }
    uint64_t rng = o->seed ^ (batch * 1000003u + n);
    fill_uniform(x, count, &rng);
    cl_mem dx = own_buffer(ctx, bytes, x), dout = own_buffer(ctx, bytes, NULL);

    ln_status st;
    for (int i = 0; i < o->warmup; i++) {
        if ((st = ln_model_encode_device(model, batch, n, dx, NULL, NULL, dout)) ||
            (st = ln_context_finish(ctx)))
            die(ctx, st, "warm-up encode_device");
        if ((st = ln_model_encode(model, batch, n, x, NULL, NULL, out)))
            die(ctx, st, "warm-up encode");
    }
    for (int i = 0; i < o->repeats; i++) {
        double t = now_ms();
        if ((st = ln_model_encode_device(model, batch, n, dx, NULL, NULL, dout)) ||
            (st = ln_context_finish(ctx)))
            die(ctx, st, "encode_device");
        r->dev_ms[i] = now_ms() - t;
        t = now_ms();
        if ((st = ln_model_encode(model, batch, n, x, NULL, NULL, out)))
            die(ctx, st, "encode");
        r->host_ms[i] = now_ms() - t;
        fprintf(stderr, "  B=%zu n=%zu repeat %d: encode_device %.2f ms, encode %.2f ms\n", batch,
                n, i + 1, r->dev_ms[i], r->host_ms[i]);
    }
    r->dev_median = median(r->dev_ms, o->repeats);
    r->host_median = median(r->host_ms, o->repeats);
    /* ln-cl's own peak (weights, workspace) plus the caller's x and out on
     * the device: what torch.cuda.max_memory_allocated counts too. */
    r->peak_bytes = ln_context_peak_device_bytes(ctx) - before + 2 * bytes;
    profile_shape(ctx, model, o, dx, dout, x, out, r);

    clReleaseMemObject(dx);
    clReleaseMemObject(dout);
    free(x);
    free(out);
    ln_model_free(model);
}

/* -------------------------------------------------- GEMM throughput */

typedef struct gemm_shape {
    char label[96];
    size_t m, n, k, batch; /* C[m, n] = A[m, k] B, B stored [k, n] (W^T, as the model
                            * keeps its Linear weights) or, when trans_b, [n, k] */
    bool trans_b;
} gemm_shape;

typedef struct gemm_result {
    gemm_shape s;
    double ms, min_ms, gflops;
    /* Back to back: `stream_calls` calls queued, one finish, per call. */
    double stream_ms, stream_gflops;
    int stream_calls;
} gemm_result;

static void add_gemm(gemm_shape *list, int *count, size_t m, size_t n, size_t k, size_t batch,
                     bool trans_b, const char *label)
{
    for (int i = 0; i < *count; i++)
        if (list[i].m == m && list[i].n == n && list[i].k == k && list[i].batch == batch &&
            list[i].trans_b == trans_b) {
            size_t used = strlen(list[i].label);
            snprintf(list[i].label + used, sizeof(list[i].label) - used, ", %s", label);
            return;
        }
    if (*count == MAX_GEMMS)
        return;
    gemm_shape *g = &list[(*count)++];
    snprintf(g->label, sizeof(g->label), "%s", label);
    g->m = m, g->n = n, g->k = k, g->batch = batch, g->trans_b = trans_b;
}

/* The model's Linear GEMMs at `rows` rows, in forward order, deduplicated. */
static int model_gemms(const ln_model_config *c, size_t rows, gemm_shape *list)
{
    int count = 0;
    size_t d = (size_t)c->d_model, sum = 0;
    char label[48];
    for (int k = 0; k < c->n_scales; k++)
        sum += (size_t)c->scales[k];
    add_gemm(list, &count, rows, d, (size_t)c->pos_hidden, 1, false, "pos");
    add_gemm(list, &count, rows, sum, d, 1, false, "proj");
    for (int k = 0; k < c->n_scales; k++) {
        size_t w = (size_t)c->scales[k], f = w * (size_t)c->ffn_mult;
        snprintf(label, sizeof(label), "qkv%zu", w);
        add_gemm(list, &count, rows, 3 * w, w, 1, false, label);
        snprintf(label, sizeof(label), "out%zu", w);
        add_gemm(list, &count, rows, w, w, 1, false, label);
        snprintf(label, sizeof(label), "ffn1_%zu", w);
        add_gemm(list, &count, rows, f, w, 1, false, label);
        snprintf(label, sizeof(label), "ffn2_%zu", w);
        add_gemm(list, &count, rows, w, f, 1, false, label);
    }
    add_gemm(list, &count, rows, d, sum, 1, false, "fusion");
    return count;
}

static ln_status enqueue_gemm(ln_context *ctx, const gemm_shape *s, cl_mem a, cl_mem b, cl_mem c)
{
    return ln_gemm_batched(ctx, false, s->trans_b, s->m, s->n, s->k, 1.0f, ln_dmat_of(a, s->k),
                           s->m * s->k, ln_dmat_of(b, s->trans_b ? s->k : s->n), s->n * s->k,
                           0.0f, ln_dmat_of(c, s->n), s->m * s->n, s->batch, "ln-bench");
}

static gemm_result time_gemm(ln_context *ctx, const options *o, const gemm_shape *s)
{
    gemm_result r = {.s = *s};
    uint64_t rng = 0xfeedull + s->m * 31 + s->n * 7 + s->k;
    size_t a_floats = s->batch * s->m * s->k, b_floats = s->batch * s->n * s->k;
    float *host = malloc((a_floats > b_floats ? a_floats : b_floats) * sizeof(float));
    if (!host) {
        fprintf(stderr, "ln-bench: GEMM %zux%zux%zu: its %zu input floats do not fit in host memory\n",
                s->m, s->n, s->k, a_floats > b_floats ? a_floats : b_floats);
        exit(EXIT_FAILURE);
    }
    fill_uniform(host, a_floats, &rng);
    cl_mem a = own_buffer(ctx, a_floats * sizeof(float), host);
    fill_uniform(host, b_floats, &rng);
    cl_mem b = own_buffer(ctx, b_floats * sizeof(float), host);
    cl_mem c = own_buffer(ctx, s->batch * s->m * s->n * sizeof(float), NULL);
    free(host);
    double t[MAX_RUNS];
    for (int i = -o->warmup; i < o->repeats; i++) {
        double t0 = now_ms();
        ln_status st = enqueue_gemm(ctx, s, a, b, c);
        if (!st)
            st = ln_context_finish(ctx);
        if (st)
            die(ctx, st, "GEMM");
        if (i >= 0)
            t[i] = now_ms() - t0;
    }
    const double flop = 2.0 * (double)s->batch * s->m * s->n * s->k;
    r.ms = median(t, o->repeats);
    r.min_ms = t[0];
    for (int i = 1; i < o->repeats; i++)
        r.min_ms = t[i] < r.min_ms ? t[i] : r.min_ms;
    r.gflops = flop / (r.ms * 1e6);

    /* One call and a finish pays the device's wake-up from idle each time
     * (11-40 us for a kernel doing next to nothing on the 2-core PoCL VM,
     * 1.7-3 us queued back to back; launch_overhead below measures it); in
     * a forward the GEMMs are queued back to back and that cost is paid
     * once. So each GEMM is also timed as a stream: enough calls for about
     * 2 ms (4 to 64), one finish, the median per call. */
    r.stream_calls = (int)(2.0 / (r.ms > 1e-3 ? r.ms : 1e-3)) + 1;
    r.stream_calls = r.stream_calls < 4 ? 4 : r.stream_calls > 64 ? 64 : r.stream_calls;
    for (int i = -1; i < o->repeats; i++) {
        double t0 = now_ms();
        ln_status st = LN_SUCCESS;
        for (int j = 0; j < r.stream_calls && !st; j++)
            st = enqueue_gemm(ctx, s, a, b, c);
        if (!st)
            st = ln_context_finish(ctx);
        if (st)
            die(ctx, st, "GEMM");
        if (i >= 0)
            t[i] = (now_ms() - t0) / r.stream_calls;
    }
    r.stream_ms = median(t, o->repeats);
    r.stream_gflops = flop / (r.stream_ms * 1e6);
    clReleaseMemObject(a);
    clReleaseMemObject(b);
    clReleaseMemObject(c);
    return r;
}

/* ------------------------------------------------------------ output */

static const char *mode_name(ln_attention_mode m)
{
    return m == LN_ATTENTION_RECOMPUTE_S ? "recompute_s" : "precomputed_s";
}

static json_t *runs_json(const double *v, int count)
{
    json_t *a = json_array();
    for (int i = 0; i < count; i++)
        json_array_append_new(a, json_real(v[i]));
    return a;
}

static json_t *shape_json(const shape_result *r)
{
    const double rows = (double)r->batch * r->n;
    json_t *ops = json_array();
    for (int j = 0; j < r->n_ops; j++) {
        const ln_profile_entry *e = &r->ops[j].e;
        json_t *op = json_pack("{s:s, s:s, s:s, s:i, s:f}", "kernel", e->kernel, "what", e->what,
                               "category", cat_names[category_of(e)], "launches", (int)e->count,
                               "ms", r->ops[j].ms);
        if (!strcmp(e->kernel, "gemm")) {
            json_object_set_new(op, "m", json_integer((json_int_t)e->m));
            json_object_set_new(op, "n", json_integer((json_int_t)e->n));
            json_object_set_new(op, "k", json_integer((json_int_t)e->k));
            json_object_set_new(op, "batch", json_integer((json_int_t)e->batch));
            double fl = 2.0 * (double)e->batch * e->m * e->n * e->k * e->count;
            if (r->ops[j].ms > 0)
                json_object_set_new(op, "gflops", json_real(fl / (r->ops[j].ms * 1e6)));
        }
        json_array_append_new(ops, op);
    }
    json_t *cats = json_object();
    for (int c = 0; c < CAT_COUNT; c++)
        json_object_set_new(cats, cat_names[c], json_real(r->cat_ms[c]));
    /* --profile-runs 0: no profile, and no NaN medians for json_pack to
     * refuse (which dropped the whole shape). */
    json_t *prof = r->profile_runs == 0
                       ? (json_decref(cats), json_decref(ops), json_null())
                       : json_pack("{s:i, s:f, s:f, s:f, s:o, s:o}", "runs", r->profile_runs,
                                   "wall_ms", r->profiled_wall_ms, "h2d_ms", r->h2d_ms, "d2h_ms",
                                   r->d2h_ms, "categories_ms", cats, "ops", ops);
    json_t *fl = json_pack("{s:f, s:f, s:f, s:f, s:f}", "total", r->fl.total, "linear",
                           r->fl.linear, "attention_qk_pv", r->fl.attn, "similarity_s", r->fl.s,
                           "recompute_extra", r->fl.recompute_extra);
    return json_pack(
        "{s:i, s:i, s:i, s:s, s:o, s:f, s:o, s:f, s:o, s:f, s:f, s:f, s:f, s:I, s:I, s:o}",
        "batch", (int)r->batch, "n", (int)r->n, "rows", (int)(r->batch * r->n), "attention_mode",
        mode_name(r->mode), "flops", fl, "encode_device_ms", r->dev_median,
        "encode_device_runs_ms", runs_json(r->dev_ms, r->repeats), "encode_ms", r->host_median,
        "encode_runs_ms", runs_json(r->host_ms, r->repeats), "concepts_per_s_device",
        rows / (r->dev_median * 1e-3), "concepts_per_s", rows / (r->host_median * 1e-3),
        "gflops_device", r->fl.total / (r->dev_median * 1e6), "gflops", r->fl.total / (r->host_median * 1e6),
        "weights_bytes", (json_int_t)r->weights_bytes, "peak_device_bytes",
        (json_int_t)r->peak_bytes, "profile", prof);
}

static void print_shape_table(const shape_result *res, int count)
{
    printf("\nEncoder forward (median host wall ms; GFLOP/s by SPEC's GEMM FLOPs)\n");
    printf("%3s %5s %9s %11s %11s %12s %9s %9s %10s %14s\n", "B", "n", "GFLOP", "device ms",
           "encode ms", "concepts/s", "GFLOP/s", "S mode", "peak MiB", "(weights MiB)");
    for (int i = 0; i < count; i++) {
        const shape_result *r = &res[i];
        printf("%3zu %5zu %9.2f %11.2f %11.2f %12.0f %9.2f %9s %10.1f %14.1f\n", r->batch, r->n,
               r->fl.total * 1e-9, r->dev_median, r->host_median,
               (double)r->batch * r->n / (r->dev_median * 1e-3),
               r->fl.total / (r->dev_median * 1e6),
               r->mode == LN_ATTENTION_RECOMPUTE_S ? "recomp" : "precomp",
               (double)r->peak_bytes / 1048576.0, (double)r->weights_bytes / 1048576.0);
    }
    printf("device ms: ln_model_encode_device + ln_context_finish on prepared buffers;\n"
           "encode ms: ln_model_encode on host arrays (finiteness check, copies included).\n");
}

static void print_profile(const shape_result *r)
{
    double total = 0;
    for (int c = 0; c < CAT_COUNT; c++)
        total += r->cat_ms[c];
    printf("\nProfile B=%zu n=%zu (device time, median of %d serialised run%s; wall of a "
           "profiled run %.2f ms, unprofiled %.2f ms)\n",
           r->batch, r->n, r->profile_runs, r->profile_runs == 1 ? "" : "s", r->profiled_wall_ms,
           r->dev_median);
    for (int c = 0; c < CAT_COUNT; c++)
        printf("  %-52s %10.2f ms %5.1f%%\n", cat_titles[c], r->cat_ms[c],
               total > 0 ? 100.0 * r->cat_ms[c] / total : 0.0);
    printf("  %-24s %-22s %-22s %6s %10s %7s %8s\n", "kernel", "op", "shape", "calls", "ms", "%",
           "GFLOP/s");
    for (int j = 0; j < r->n_ops; j++) {
        const ln_profile_entry *e = &r->ops[j].e;
        char shape[32] = "";
        double gf = 0;
        if (!strcmp(e->kernel, "gemm")) {
            if (e->batch > 1)
                snprintf(shape, sizeof(shape), "%zux%zux%zu x%zu", e->m, e->n, e->k, e->batch);
            else
                snprintf(shape, sizeof(shape), "%zux%zux%zu", e->m, e->n, e->k);
            gf = 2.0 * (double)e->batch * e->m * e->n * e->k * e->count / (r->ops[j].ms * 1e6);
        }
        printf("  %-24s %-22s %-22s %6u %10.3f %6.1f%% ", e->kernel, e->what, shape, e->count,
               r->ops[j].ms, total > 0 ? 100.0 * r->ops[j].ms / total : 0.0);
        if (gf > 0)
            printf("%8.2f\n", gf);
        else
            printf("%8s\n", "");
    }
    printf("  %-24s %-22s %-22s %6d %10.3f\n  %-24s %-22s %-22s %6d %10.3f\n", "write x",
           "encode (host->device)", "", 1, r->h2d_ms, "read out", "encode (device->host)", "", 1,
           r->d2h_ms);
}

static void print_gemms(const gemm_result *g, int count)
{
    printf("\nCLBlast SGEMM at the model's shapes (C = A B, B stored [k, n] as the model keeps its\n"
           "Linear weights and, on CPUs, u^T; [n, k] for S = u u^T elsewhere). ms: median host\n"
           "wall of one call and a finish; stream ms: per call, with that many calls queued back\n"
           "to back and one finish\n");
    printf("%6s %6s %6s %5s %10s %10s %9s %10s %6s %9s  %s\n", "m", "n", "k", "batch", "ms",
           "min ms", "GFLOP/s", "stream ms", "calls", "GFLOP/s", "used by");
    for (int i = 0; i < count; i++)
        printf("%6zu %6zu %6zu %5zu %10.3f %10.3f %9.2f %10.3f %6d %9.2f  %s\n", g[i].s.m,
               g[i].s.n, g[i].s.k, g[i].s.batch, g[i].ms, g[i].min_ms, g[i].gflops,
               g[i].stream_ms, g[i].stream_calls, g[i].stream_gflops, g[i].s.label);
}

/* The device's fixed cost per launch, which the GEMM section's two timings
 * differ by at small shapes: ln-cl's smallest kernel (a bias add on one
 * float; built through src/program.c like every ln-cl kernel) with a
 * finish after each, and queued back to back (median us per launch of 5
 * runs of 64). */
static void launch_overhead(ln_context *ctx, double *sync_us, double *stream_us)
{
    *sync_us = *stream_us = -1.0;
    const float one_float = 0.5f;
    cl_mem y = own_buffer(ctx, sizeof(float), &one_float),
           bias = own_buffer(ctx, sizeof(float), &one_float);
    ln_status st = LN_SUCCESS;
    double sync[5], stream[5];
    for (int r = -1; r < 5 && !st; r++) {
        double t0 = now_ms();
        for (int i = 0; i < 64 && !st; i++)
            if (!(st = ln_epilogue_apply(ctx, "ln-bench", 1, 1, ln_dmat_of(y, 1), bias, 0,
                                         LN_EPILOGUE_BIAS, (ln_dmat){0})))
                st = ln_context_finish(ctx);
        double t1 = now_ms();
        for (int i = 0; i < 64 && !st; i++)
            st = ln_epilogue_apply(ctx, "ln-bench", 1, 1, ln_dmat_of(y, 1), bias, 0,
                                   LN_EPILOGUE_BIAS, (ln_dmat){0});
        if (!st)
            st = ln_context_finish(ctx);
        if (r >= 0) {
            sync[r] = (t1 - t0) * 1e3 / 64;
            stream[r] = (now_ms() - t1) * 1e3 / 64;
        }
    }
    if (st)
        die(ctx, st, "timing a one-float kernel");
    *sync_us = median(sync, 5);
    *stream_us = median(stream, 5);
    clReleaseMemObject(y);
    clReleaseMemObject(bias);
}

/* -------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    options o;
    parse_args(argc, argv, &o);
    ln_context *ctx;
    ln_status st = ln_context_create(o.device, &ctx);
    if (st)
        die(NULL, st, "creating the context");
    ctx->attn_per_branch = o.per_branch;
    ctx->gemm_layout = o.gemm_layout;
    ln_device_info info;
    ln_context_device_info(ctx, &info);

    /* The configuration, from the model that the shapes will use. */
    ln_model_config cfg;
    char cfg_json[1024];
    {
        ln_model *m = make_model(ctx, &o);
        if (ln_model_config_json(m, cfg_json, sizeof(cfg_json)) < 0)
            die(ctx, LN_ERROR_BAD_CONFIG, "reading the model's configuration");
        ln_model_free(m);
        if ((st = ln_config_from_json(ctx, cfg_json, &cfg)))
            die(ctx, st, "parsing the model's configuration");
    }
    if (!o.json)
        printf("ln-bench: %s / %s (%s, driver %s), %u compute units\nconfig %s\nweights: %s; "
               "median of %d repeats after %d warm-up\n",
               info.platform_name, info.device_name, info.device_version, info.driver_version,
               info.compute_units, cfg_json, o.model_path ? o.model_path : "seeded", o.repeats,
               o.warmup);
    if (!o.json && o.per_branch)
        printf("attention launched branch by branch (--attention-per-branch)\n");
    static const char *const gemm_layouts[] = {"auto", "row", "col"};
    if (!o.json && o.gemm_layout != LN_GEMM_LAYOUT_AUTO)
        printf("every GEMM called %s-major (--gemm-layout)\n", gemm_layouts[o.gemm_layout]);
    /* LN_ATTENTION_KERNEL (src/context.c) picks it. */
    const char *attention_kernel = ctx->params.attn_kernel >= 0 && ctx->params.attn_kernel < 4
                                       ? ln_attention_kernel_names[ctx->params.attn_kernel]
                                       : "?";
    if (!o.json && ctx->params.attn_kernel != LN_ATTENTION_KERNEL_AUTO)
        printf("attention kernel: %s (LN_ATTENTION_KERNEL)\n", attention_kernel);

    static shape_result shapes[MAX_LIST * MAX_LIST];
    int n_shapes = 0;
    size_t rows_seen[MAX_LIST * MAX_LIST];
    int n_rows = 0;
    for (int bi = 0; bi < o.n_batch; bi++)
        for (int ni = 0; ni < o.n_n; ni++) {
            size_t b = o.batch[bi], n = o.n[ni];
            if (skipped(&o, b, n))
                continue;
            bool seen = false;
            for (int i = 0; i < n_rows; i++)
                seen |= rows_seen[i] == b * n;
            if (!seen)
                rows_seen[n_rows++] = b * n;
            if (o.no_model)
                continue;
            fprintf(stderr, "ln-bench: B=%zu n=%zu\n", b, n);
            bench_shape(ctx, &o, &cfg, b, n, &shapes[n_shapes]);
            if (!o.json) {
                print_shape_table(&shapes[n_shapes], 1);
                if (o.profile_runs > 0)
                    print_profile(&shapes[n_shapes]);
                fflush(stdout);
            }
            n_shapes++;
        }

    static gemm_result gemms[MAX_LIST * MAX_LIST * MAX_GEMMS];
    int n_gemms = 0;
    double launch_sync_us = -1.0, launch_stream_us = -1.0;
    if (!o.no_gemm) {
        launch_overhead(ctx, &launch_sync_us, &launch_stream_us);
        const size_t *rows = o.n_gemm_rows ? o.gemm_rows : rows_seen;
        int count = o.n_gemm_rows ? o.n_gemm_rows : n_rows;
        for (int i = 0; i < count; i++) {
            gemm_shape list[MAX_GEMMS];
            int k = model_gemms(&cfg, rows[i], list);
            for (int j = 0; j < k; j++) {
                fprintf(stderr, "ln-bench: GEMM %zux%zux%zu (%s)\n", list[j].m, list[j].n,
                        list[j].k, list[j].label);
                gemms[n_gemms++] = time_gemm(ctx, &o, &list[j]);
            }
        }
        /* S = u u^T of each benchmarked shape: batched n x n x d. */
        for (int bi = 0; bi < o.n_batch && !o.n_gemm_rows; bi++)
            for (int ni = 0; ni < o.n_n; ni++) {
                size_t b = o.batch[bi], n = o.n[ni];
                if (skipped(&o, b, n) || (double)b * n * n * 4 > (double)info.max_alloc_bytes)
                    continue;
                /* Against u^T where the device writes it (src/model.c). */
                gemm_shape s = {"", n, n, (size_t)cfg.d_model, b,
                                !ln_unit_rows_t_supported(ctx, (size_t)cfg.d_model)};
                snprintf(s.label, sizeof(s.label), "S = u u^T (B=%zu)", b);
                fprintf(stderr, "ln-bench: GEMM %s n=%zu\n", s.label, n);
                gemms[n_gemms++] = time_gemm(ctx, &o, &s);
            }
    }

    if (o.json) {
        json_t *dev = json_pack("{s:s, s:s, s:s, s:s, s:i, s:b}", "platform", info.platform_name,
                                "name", info.device_name, "version", info.device_version,
                                "driver", info.driver_version, "compute_units",
                                (int)info.compute_units, "is_gpu", info.is_gpu);
        json_t *cfgj = json_loads(cfg_json, 0, NULL);
        json_t *sh = json_array();
        for (int i = 0; i < n_shapes; i++)
            json_array_append_new(sh, shape_json(&shapes[i]));
        json_t *gm = json_array();
        for (int i = 0; i < n_gemms; i++)
            json_array_append_new(
                gm, json_pack("{s:s, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:i, s:f}", "label",
                              gemms[i].s.label, "m", (int)gemms[i].s.m, "n", (int)gemms[i].s.n,
                              "k", (int)gemms[i].s.k, "batch", (int)gemms[i].s.batch, "ms",
                              gemms[i].ms, "min_ms", gemms[i].min_ms, "gflops",
                              gemms[i].gflops, "stream_ms", gemms[i].stream_ms, "stream_calls",
                              gemms[i].stream_calls, "stream_gflops", gemms[i].stream_gflops));
        json_t *root = json_pack(
            "{s:s, s:o, s:o, s:s, s:i, s:i, s:i, s:b, s:o, s:o}", "tool", "ln-bench", "device",
            dev, "config", cfgj ? cfgj : json_null(), "weights",
            o.model_path ? o.model_path : "seeded", "repeats", o.repeats, "warmup", o.warmup,
            "profile_runs", o.profile_runs, "attention_per_branch", (int)o.per_branch, "shapes",
            sh, "gemm", gm);
        json_object_set_new(root, "attention_kernel", json_string(attention_kernel));
        json_object_set_new(root, "gemm_layout", json_string(gemm_layouts[o.gemm_layout]));
        json_object_set_new(root, "launch_us",
                            json_pack("{s:f, s:f}", "with_finish", launch_sync_us,
                                      "back_to_back", launch_stream_us));
        json_dumpf(root, stdout, JSON_INDENT(1) | JSON_REAL_PRECISION(10));
        printf("\n");
        json_decref(root);
    } else {
        if (n_shapes > 1)
            print_shape_table(shapes, n_shapes);
        if (n_gemms) {
            print_gemms(gemms, n_gemms);
            printf("A one-float kernel: %.1f us with a finish after each, %.1f us queued back "
                   "to back\n(the device's fixed cost per launch; median of 5 x 64).\n",
                   launch_sync_us, launch_stream_us);
        }
    }
    ln_context_destroy(ctx);
    return EXIT_SUCCESS;
}
