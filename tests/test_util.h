/*
 * test_util.h: what every Check runner shares: the device under test, fresh
 * random data (seed printed so a failure can be replayed), and the one
 * float64 comparison every op is judged by.
 */
#ifndef LN_TEST_UTIL_H
#define LN_TEST_UTIL_H

#include "ln.h"

#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

/* Context on LN_DEVICE, else the default device; fails the test if none. */
ln_context *tu_context(void);

/* Per-process seed: LN_TEST_SEED if set, else time and pid. Printed once. */
uint64_t tu_seed(void);
/* xorshift-based uniform floats in [lo, hi). */
float tu_uniform(uint64_t *state, float lo, float hi);
void tu_fill(float *x, size_t n, float lo, float hi, uint64_t *state);
/* Approximately standard normal (Box-Muller). */
void tu_fill_normal(float *x, size_t n, float scale, uint64_t *state);
/* PyTorch's default init for a Linear(in, out): U(-1/sqrt(in), 1/sqrt(in)). */
void tu_fill_linear(float *w, float *b, size_t out, size_t in, uint64_t *state);

/* ||got - ref|| / ||ref|| over n values; +inf if got has NaN or Inf. */
double tu_rel_l2(const float *got, const double *ref, size_t n);

/* Asserts rel-L2 <= tol, naming the case in the message. */
#define tu_assert_close(got, ref, n, tol, ...)                                             \
    do {                                                                                   \
        double tu_err_ = tu_rel_l2((got), (ref), (n));                                     \
        char tu_case_[256];                                                                \
        snprintf(tu_case_, sizeof(tu_case_), __VA_ARGS__);                                 \
        ck_assert_msg(tu_err_ <= (tol), "%s: rel-L2 %.3g > %.1g (seed %llu)", tu_case_,     \
                      tu_err_, (double)(tol), (unsigned long long)tu_seed());              \
    } while (0)

#define tu_assert_ok(ctx, expr)                                                            \
    do {                                                                                   \
        ln_status tu_st_ = (expr);                                                         \
        ck_assert_msg(tu_st_ == LN_SUCCESS, "%s -> %s: %s", #expr, ln_status_string(tu_st_), \
                      ln_last_error(ctx));                                                 \
    } while (0)

#define tu_assert_status(ctx, expr, want)                                                  \
    do {                                                                                   \
        ln_status tu_st_ = (expr);                                                         \
        ck_assert_msg(tu_st_ == (want), "%s -> %s, wanted %s (message: %s)", #expr,          \
                      ln_status_string(tu_st_), ln_status_string(want), ln_last_error(ctx)); \
        ck_assert_msg(ln_last_error(ctx)[0] != '\0', "%s: no error message", #expr);        \
    } while (0)

double tu_gelu(double x);

void *tu_malloc(size_t bytes);

/* Runs a suite and returns the process exit code. */
int tu_run(Suite *suite);

#endif
