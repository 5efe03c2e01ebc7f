/*
 * test_util.c: shared helpers for the Check runners (see test_util.h).
 */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

ln_context *tu_context(void)
{
    ln_context *ctx = NULL;
    ln_status st = ln_context_create(NULL, &ctx);
    ck_assert_msg(st == LN_SUCCESS, "no device for tests: %s: %s", ln_status_string(st),
                  ln_last_error(NULL));
    return ctx;
}

uint64_t tu_seed(void)
{
    static uint64_t seed;
    if (!seed) {
        const char *env = getenv("LN_TEST_SEED");
        seed = env && *env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) * 1000003u + (uint64_t)getpid();
        if (!seed)
            seed = 1;
    }
    return seed;
}

static uint64_t next(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

float tu_uniform(uint64_t *state, float lo, float hi)
{
    double u = (double)(next(state) >> 11) / 9007199254740992.0;
    return (float)(lo + (hi - lo) * u);
}

void tu_fill(float *x, size_t n, float lo, float hi, uint64_t *state)
{
    for (size_t i = 0; i < n; i++)
        x[i] = tu_uniform(state, lo, hi);
}

void tu_fill_normal(float *x, size_t n, float scale, uint64_t *state)
{
    for (size_t i = 0; i < n; i++) {
        double u1 = ((double)(next(state) >> 11) + 1.0) / 9007199254740993.0;
        double u2 = (double)(next(state) >> 11) / 9007199254740992.0;
        x[i] = (float)(scale * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
}

void tu_fill_linear(float *w, float *b, size_t out, size_t in, uint64_t *state)
{
    float bound = (float)(1.0 / sqrt((double)in));
    tu_fill(w, out * in, -bound, bound, state);
    if (b)
        tu_fill(b, out, -bound, bound, state);
}

double tu_rel_l2(const float *got, const double *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]))
            return INFINITY;
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    if (den == 0)
        return num == 0 ? 0 : INFINITY;
    return sqrt(num / den);
}

double tu_gelu(double x)
{
    return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
}

void *tu_malloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    ck_assert_msg(p != NULL, "out of host memory (%zu bytes)", bytes);
    return p;
}

int tu_run(Suite *suite)
{
    fprintf(stderr, "LN_TEST_SEED=%llu\n", (unsigned long long)tu_seed());
    SRunner *sr = srunner_create(suite);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
