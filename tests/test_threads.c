/*
 * test_threads.c: the thread-safety model of ln.h: one context per thread.
 * Four pthreads, each with its own context and the same model loaded from
 * one file (tests/data/golden_tiny.safetensors), encode different random
 * inputs at the same time; each result must equal a single-threaded run of
 * the same input (bitwise, or rel-L2 <= 1e-6) and agree with the float64
 * reference (tests/ref_model.c). The per-thread last error (ctx == NULL)
 * must stay each thread's own while the others fail at the same time.
 * Assertions run on the main thread only: workers record what they saw.
 */
#include "test_util.h"
#include "config.h"
#include "internal.h"
#include "ref_model.h"
#include "tensor_io.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4
#define ROUNDS 3 /* encodes per thread, each compared */
#define B 2
#define N 11

typedef struct job {
    const char *model_path;
    size_t d;
    const float *x, *positions;
    const int32_t *lengths;
    const float *expected; /* the single-threaded result */
    float *out;
    pthread_barrier_t *barrier;
    int index;
    /* results */
    ln_status status;
    char message[512];
    size_t differing; /* elements not bitwise equal to `expected`, worst round */
    double rel_l2;    /* worst round */
    bool own_error_kept;
} job;

static double rel_l2_f(const float *got, const float *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]))
            return INFINITY;
        double e = (double)got[i] - ref[i];
        num += e * e;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0);
}

/* Only the valid rows (padded query rows are unspecified). */
static double valid_rel_l2(const float *got, const double *ref, size_t d, const int32_t *lengths)
{
    double num = 0, den = 0;
    for (size_t b = 0; b < B; b++)
        for (size_t i = 0; i < (size_t)lengths[b]; i++)
            for (size_t c = 0; c < d; c++) {
                size_t at = (b * N + i) * d + c;
                if (!isfinite(got[at]))
                    return INFINITY;
                num += (got[at] - ref[at]) * (got[at] - ref[at]);
                den += ref[at] * ref[at];
            }
    return sqrt(num / den);
}

static void *worker(void *arg)
{
    job *j = arg;
    ln_context *ctx = NULL;
    ln_model *m = NULL;
    /* A context-less failure naming this thread's file; checked after the
     * others have made theirs. */
    char bogus[64];
    snprintf(bogus, sizeof(bogus), "/nonexistent/ln-thread-%d.safetensors", j->index);
    ln_tensor_file *none = NULL;
    ln_status own = ln_safetensors_read(NULL, bogus, &none);
    pthread_barrier_wait(j->barrier);
    j->own_error_kept = own == LN_ERROR_IO && strstr(ln_last_error(NULL), bogus) != NULL;

    /* Everyone creates, loads and encodes at once. */
    pthread_barrier_wait(j->barrier);
    j->status = ln_context_create(NULL, &ctx);
    if (j->status != LN_SUCCESS) {
        snprintf(j->message, sizeof(j->message), "ln_context_create: %s", ln_last_error(NULL));
        return NULL;
    }
    j->status = ln_model_load(ctx, j->model_path, &m);
    size_t count = (size_t)B * N * j->d;
    for (int r = 0; r < ROUNDS && j->status == LN_SUCCESS; r++) {
        memset(j->out, 0, count * sizeof(float));
        j->status = ln_model_encode(m, B, N, j->x, j->positions, j->lengths, j->out);
        if (j->status != LN_SUCCESS)
            break;
        size_t differing = 0;
        for (size_t b = 0; b < B; b++)
            for (size_t i = 0; i < (size_t)j->lengths[b]; i++)
                for (size_t c = 0; c < j->d; c++) {
                    size_t at = (b * N + i) * j->d + c;
                    differing += memcmp(&j->out[at], &j->expected[at], sizeof(float)) != 0;
                }
        double err = rel_l2_f(j->out, j->expected, count);
        if (differing > j->differing)
            j->differing = differing;
        if (err > j->rel_l2 || isnan(err))
            j->rel_l2 = err;
    }
    if (j->status != LN_SUCCESS)
        snprintf(j->message, sizeof(j->message), "%s", ln_last_error(ctx));
    ln_model_free(m);
    ln_context_destroy(ctx);
    return NULL;
}

static const float *lookup(void *user, const char *name)
{
    const ln_tensor *t = ln_tensor_file_find((const ln_tensor_file *)user, name);
    return t && t->dtype == LN_DT_F32 ? (const float *)t->data : NULL;
}

START_TEST(four_threads_encode_concurrently)
{
    const char *dir = getenv("LN_TEST_DATA");
    ck_assert_msg(dir != NULL, "LN_TEST_DATA is not set");
    char path[512];
    snprintf(path, sizeof(path), "%s/golden_tiny.safetensors", dir);

    /* Single-threaded first: the expected outputs, and the reference. */
    ln_context *ctx = tu_context();
    ln_model *m = NULL;
    tu_assert_ok(ctx, ln_model_load(ctx, path, &m));
    const size_t d = ln_model_d_model(m), count = (size_t)B * N * d;
    ln_tensor_file *weights = NULL;
    tu_assert_ok(NULL, ln_safetensors_read(NULL, path, &weights));
    ref_config rc = ref_config_default();
    {
        ln_model_config cfg;
        tu_assert_ok(NULL, ln_config_resolve(NULL, weights, &cfg));
        rc.d_model = (size_t)cfg.d_model;
        rc.pos_hidden = (size_t)cfg.pos_hidden;
        rc.n_scales = (size_t)cfg.n_scales;
        for (int k = 0; k < cfg.n_scales; k++)
            rc.scales[k] = (size_t)cfg.scales[k];
        rc.head_dim = (size_t)cfg.head_dim;
        rc.ffn_mult = (size_t)cfg.ffn_mult;
        rc.n_layers = (size_t)cfg.n_layers;
        rc.ln_eps = cfg.ln_eps;
    }

    uint64_t rng = tu_seed();
    float *x[THREADS], *pos[THREADS], *expected[THREADS], *out[THREADS];
    int32_t len[THREADS][B];
    double *ref = tu_malloc(count * sizeof(double));
    for (int t = 0; t < THREADS; t++) {
        x[t] = tu_malloc(count * 4);
        pos[t] = tu_malloc((size_t)B * N * 4);
        expected[t] = tu_malloc(count * 4);
        out[t] = tu_malloc(count * 4);
        tu_fill_normal(x[t], count, 1.0f, &rng);
        tu_fill(pos[t], (size_t)B * N, -1.0f, 2.0f, &rng);
        len[t][0] = N;
        len[t][1] = 1 + t * 3; /* 1, 4, 7, 10: different padding per thread */
        tu_assert_ok(ctx, ln_model_encode(m, B, N, x[t], pos[t], len[t], expected[t]));
        ck_assert_int_eq(ref_encoder_forward(&rc, lookup, weights, B, N, x[t], pos[t], len[t], ref),
                         0);
        double err = valid_rel_l2(expected[t], ref, d, len[t]);
        fprintf(stderr, "input %d: single-threaded vs float64 reference rel-L2 %.2e\n", t, err);
        ck_assert_msg(err <= 1e-4, "input %d: rel-L2 %.3g against the reference (seed %llu)", t,
                      err, (unsigned long long)tu_seed());
    }
    ln_model_free(m);
    ln_context_destroy(ctx);

    pthread_barrier_t barrier;
    ck_assert_int_eq(pthread_barrier_init(&barrier, NULL, THREADS), 0);
    job jobs[THREADS];
    pthread_t tid[THREADS];
    for (int t = 0; t < THREADS; t++) {
        memset(&jobs[t], 0, sizeof(jobs[t]));
        jobs[t] = (job){.model_path = path, .d = d, .x = x[t], .positions = pos[t],
                        .lengths = len[t], .expected = expected[t], .out = out[t],
                        .barrier = &barrier, .index = t};
        ck_assert_int_eq(pthread_create(&tid[t], NULL, worker, &jobs[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        ck_assert_int_eq(pthread_join(tid[t], NULL), 0);
    pthread_barrier_destroy(&barrier);

    for (int t = 0; t < THREADS; t++) {
        const job *j = &jobs[t];
        fprintf(stderr, "thread %d: %s, %zu elements not bitwise equal, rel-L2 %.2e\n", t,
                ln_status_string(j->status), j->differing, j->rel_l2);
        ck_assert_msg(j->own_error_kept, "thread %d: ln_last_error(NULL) lost its own message", t);
        ck_assert_msg(j->status == LN_SUCCESS, "thread %d: %s: %s", t,
                      ln_status_string(j->status), j->message);
        ck_assert_msg(j->differing == 0 || j->rel_l2 <= 1e-6,
                      "thread %d: %zu elements differ from the single-threaded run, rel-L2 %.3g "
                      "(seed %llu)",
                      t, j->differing, j->rel_l2, (unsigned long long)tu_seed());
    }
    for (int t = 0; t < THREADS; t++)
        free(x[t]), free(pos[t]), free(expected[t]), free(out[t]);
    free(ref);
    ln_tensor_file_free(weights);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("threads");
    TCase *tc = tcase_create("threads");
    tcase_add_test(tc, four_threads_encode_concurrently);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
