/*
 * demo.c: what `ln-run` shows without arguments. Real all-MiniLM-L6-v2
 * concept vectors of two sentences (examples/demo_concepts.safetensors,
 * made by examples/make_demo_vectors.py, embedded at build time) go through
 * the semantic term S = u u^T on the device; the demo prints each
 * concept's strongest links, shows that shuffling the order leaves them
 * unchanged (S depends on content, not position), then runs the full
 * encoder with a seeded model and times it.
 */
#define _POSIX_C_SOURCE 200809L
#include "demo.h"
#include "internal.h"
#include "tensor_io.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


#define MAX_CONCEPTS 16
#define LINKS 2

typedef struct demo {
    ln_context *ctx;
    size_t count, d;
    const float *vectors;
    char names[MAX_CONCEPTS][64];
} demo;

static int fail(ln_context *ctx, ln_status st, const char *what)
{
    fprintf(stderr, "ln-run demo: %s: %s: %s\n", what, ln_status_string(st), ln_last_error(ctx));
    return 1;
}

/* S on the device for the concepts in `order`; s is [count, count]. */
static ln_status similarity(demo *dm, const size_t *order, float *s)
{
    size_t n = dm->count, d = dm->d;
    float *x = malloc(n * d * sizeof(float));
    if (!x)
        return ln_fail(dm->ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "demo: out of host memory");
    for (size_t i = 0; i < n; i++)
        memcpy(x + i * d, dm->vectors + order[i] * d, d * sizeof(float));
    cl_mem dx = NULL, du = NULL, ds = NULL;
    ln_status st = ln_buffer_from_host(dm->ctx, x, n * d * sizeof(float), &dx, "demo");
    if (!st)
        st = ln_buffer_create(dm->ctx, n * d * sizeof(float), &du, "demo");
    if (!st)
        st = ln_buffer_create(dm->ctx, n * n * sizeof(float), &ds, "demo");
    if (!st)
        st = ln_unit_rows(dm->ctx, n, d, ln_dmat_of(dx, d), ln_dmat_of(du, d));
    if (!st)
        st = ln_similarity(dm->ctx, 1, n, d, du, ds);
    if (!st)
        st = ln_buffer_to_host(dm->ctx, ds, s, n * n * sizeof(float));
    ln_buffer_release(dm->ctx, dx);
    ln_buffer_release(dm->ctx, du);
    ln_buffer_release(dm->ctx, ds);
    free(x);
    return st;
}

/* links[c][k]: the k-th strongest other concept of concept c (by index
 * into the original list), read off S computed in `order`. */
static void strongest_links(const demo *dm, const size_t *order, const float *s,
                            size_t links[][LINKS], float strength[][LINKS])
{
    size_t n = dm->count;
    for (size_t i = 0; i < n; i++) {
        size_t c = order[i];
        for (size_t k = 0; k < LINKS; k++) {
            float best = -INFINITY;
            size_t pick = c;
            for (size_t j = 0; j < n; j++) {
                bool taken = order[j] == c;
                for (size_t p = 0; p < k; p++)
                    taken |= links[c][p] == order[j];
                if (!taken && s[i * n + j] > best) {
                    best = s[i * n + j];
                    pick = order[j];
                }
            }
            links[c][k] = pick;
            strength[c][k] = best;
        }
    }
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double cosine(const float *a, const float *b, size_t d)
{
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < d; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / sqrt(aa * bb + 1e-30);
}

/* The encoder on a batch of three: both sentences, and the first one
 * reversed ("periodic table element new discovered scientist"), padded to
 * the longest with a lengths mask. */
static int run_encoder(demo *dm, const json_t *sentences)
{
    enum { BATCH = 3 };
    size_t n = 0, d = dm->d;
    size_t seq[BATCH][MAX_CONCEPTS];
    int32_t lengths[BATCH];
    if (json_array_size(sentences) != 2)
        return fail(dm->ctx, LN_ERROR_BAD_FILE, "demo data: two sentences expected");
    for (size_t b = 0; b < 2; b++) {
        json_t *s = json_array_get(sentences, b);
        lengths[b] = (int32_t)json_array_size(s);
        if (lengths[b] < 1 || lengths[b] > MAX_CONCEPTS)
            return fail(dm->ctx, LN_ERROR_BAD_FILE, "demo data: sentence length");
        for (size_t i = 0; i < (size_t)lengths[b]; i++) {
            json_int_t c = json_integer_value(json_array_get(s, i));
            if (c < 0 || (size_t)c >= dm->count)
                return fail(dm->ctx, LN_ERROR_BAD_FILE, "demo data: sentence index");
            seq[b][i] = (size_t)c;
        }
        if ((size_t)lengths[b] > n)
            n = (size_t)lengths[b];
    }
    lengths[2] = lengths[0];
    for (size_t i = 0; i < (size_t)lengths[0]; i++)
        seq[2][i] = seq[0][(size_t)lengths[0] - 1 - i];
    float *x = calloc(BATCH * n * d, sizeof(float)), *out = malloc(BATCH * n * d * sizeof(float));
    if (!x || !out) {
        free(x), free(out);
        return fail(dm->ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "demo");
    }
    for (size_t b = 0; b < BATCH; b++)
        for (size_t i = 0; i < n; i++) {
            /* Padding rows repeat the last concept: they are masked anyway. */
            size_t at = i < (size_t)lengths[b] ? i : (size_t)lengths[b] - 1;
            memcpy(x + (b * n + i) * d, dm->vectors + seq[b][at] * d, d * sizeof(float));
        }
    ln_model *model = NULL;
    ln_status st = ln_model_create_seeded(dm->ctx, NULL, 20261126, &model);
    if (st) {
        free(x), free(out);
        return fail(dm->ctx, st, "building the seeded model");
    }
    char cfg[512];
    ln_model_config_json(model, cfg, sizeof(cfg));
    printf("\nFull encoder: seeded model (PyTorch-style default init) %s\n", cfg);
    double first = now_ms();
    st = ln_model_encode(model, BATCH, n, x, NULL, lengths, out);
    first = now_ms() - first;
    enum { RUNS = 9 };
    double t[RUNS];
    for (int r = 0; r < RUNS && !st; r++) {
        double t0 = now_ms();
        st = ln_model_encode(model, BATCH, n, x, NULL, lengths, out);
        t[r] = now_ms() - t0;
    }
    if (st) {
        ln_model_free(model);
        free(x), free(out);
        return fail(dm->ctx, st, "encoding");
    }
    qsort(t, RUNS, sizeof(t[0]), cmp_double);
    printf("  unlike S, the encoder sees order (continuous positions): cosine between each\n"
           "  concept's encoding in sentence 1 and in its reversed order\n   ");
    size_t len0 = (size_t)lengths[0];
    for (size_t i = 0; i < len0; i++) {
        const float *a = out + i * d, *b = out + (2 * n + (len0 - 1 - i)) * d;
        printf(" %s %.3f%s", dm->names[seq[0][i]], cosine(a, b, d), i + 1 < len0 ? "," : "\n");
    }
    printf("  B = %d, n = %zu (lengths %d, %d, %d), d = %zu: first call %.1f ms (includes kernel "
           "builds), then median %.2f ms over %d calls\n",
           BATCH, n, lengths[0], lengths[1], lengths[2], d, first, t[RUNS / 2], RUNS);
    ln_model_free(model);
    free(x), free(out);
    return 0;
}

int ln_demo_run(const char *device_spec)
{
    demo dm = {0};
    ln_tensor_file *file = NULL;
    json_t *concepts = NULL, *sentences = NULL;
    int rc = 1;
    ln_status st = ln_safetensors_parse(NULL, ln_demo_files[0].source, ln_demo_files[0].length,
                                        "embedded demo_concepts.safetensors", &file);
    if (st)
        return fail(NULL, st, "reading the demo's concept vectors");
    const ln_tensor *v = ln_tensor_file_find(file, "vectors");
    const char *names = ln_tensor_file_metadata(file, "concepts");
    const char *sents = ln_tensor_file_metadata(file, "sentences");
    concepts = names ? json_loads(names, 0, NULL) : NULL;
    sentences = sents ? json_loads(sents, 0, NULL) : NULL;
    if (!v || v->ndim != 2 || !json_is_array(concepts) || !json_is_array(sentences) ||
        json_array_size(concepts) != (size_t)v->shape[0] || v->shape[0] > MAX_CONCEPTS) {
        fail(NULL, LN_ERROR_BAD_FILE, "the embedded demo data is inconsistent");
        goto done;
    }
    dm.count = (size_t)v->shape[0];
    dm.d = (size_t)v->shape[1];
    dm.vectors = v->data;
    for (size_t i = 0; i < dm.count; i++)
        snprintf(dm.names[i], sizeof(dm.names[i]), "%s",
                 json_string_value(json_array_get(concepts, i)) ? json_string_value(json_array_get(concepts, i)) : "?");
    if ((st = ln_context_create(device_spec, &dm.ctx))) {
        fail(NULL, st, "opening a device");
        goto done;
    }
    ln_device_info info;
    ln_context_device_info(dm.ctx, &info);
    printf("ln-cl demo on %s / %s\n", info.platform_name, info.device_name);
    printf("%zu concepts, all-MiniLM-L6-v2 vectors (d = %zu), from \"%s\"\n", dm.count, dm.d,
           "The scientist discovered a new element in the periodic table. Einstein "
           "revolutionized physics with relativity.");

    size_t order[MAX_CONCEPTS], shuffled[MAX_CONCEPTS];
    for (size_t i = 0; i < dm.count; i++)
        order[i] = i;
    /* "Element new discovered scientist ...": reverse the order, the way
     * the seed's shuffled sentence reads. */
    for (size_t i = 0; i < dm.count; i++)
        shuffled[i] = dm.count - 1 - i;
    float s[MAX_CONCEPTS * MAX_CONCEPTS], s2[MAX_CONCEPTS * MAX_CONCEPTS];
    size_t links[MAX_CONCEPTS][LINKS], links2[MAX_CONCEPTS][LINKS];
    float strength[MAX_CONCEPTS][LINKS], strength2[MAX_CONCEPTS][LINKS];
    if ((st = similarity(&dm, order, s)) || (st = similarity(&dm, shuffled, s2))) {
        fail(dm.ctx, st, "computing S on the device");
        goto done;
    }
    strongest_links(&dm, order, s, links, strength);
    strongest_links(&dm, shuffled, s2, links2, strength2);
    printf("\nSemantic links: for each concept, the concepts S = u u^T ties it to most strongly\n");
    bool same = true;
    for (size_t c = 0; c < dm.count; c++) {
        printf("  %-15s ->", dm.names[c]);
        for (size_t k = 0; k < LINKS; k++) {
            printf(" %s (%.2f)%s", dm.names[links[c][k]], strength[c][k], k + 1 < LINKS ? "," : "");
            same &= links[c][k] == links2[c][k] && fabsf(strength[c][k] - strength2[c][k]) < 1e-5f;
        }
        printf("\n");
    }
    printf("\nShuffled order (");
    for (size_t i = 0; i < dm.count; i++)
        printf("%s%s", dm.names[shuffled[i]], i + 1 < dm.count ? " " : "");
    printf("):\n  every concept keeps the same links with the same strengths: %s\n",
           same ? "yes" : "NO");
    if (!same) {
        fprintf(stderr, "ln-run demo: the semantic links changed under shuffling\n");
        goto done;
    }
    rc = run_encoder(&dm, sentences);
done:
    json_decref(concepts);
    json_decref(sentences);
    ln_tensor_file_free(file);
    ln_context_destroy(dm.ctx);
    return rc;
}
