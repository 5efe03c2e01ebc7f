/*
 * tune.h: what ln-tune's two files share: the clock and the time budget,
 * timing statistics, the output comparison, the progress line and the
 * closing table's rows. ln_tune.c tunes ln-cl's own kernels and drives the
 * run; tune_gemm.c tunes CLBlast's GEMM parameters.
 */
#ifndef LN_TUNE_H
#define LN_TUNE_H

#include "config.h"
#include "internal.h"

#include <stdbool.h>
#include <stddef.h>

double now_s(void);

/* Device seconds of what `run` enqueues: between the completion of two
 * markers around it (profiling queue), so host-side argument setup does
 * not count; wall seconds when the driver gives no marker profile. */
typedef ln_status (*tune_enqueue_fn)(ln_context *ctx, void *arg);
double time_between_markers(ln_context *ctx, tune_enqueue_fn run, void *arg, ln_status *st);

/* Median and spread ((max - min) / 2) of `runs` times, in seconds; build:
 * what the warm-up call took beyond a run (kernel compilation). */
typedef struct measure {
    double median, spread, build;
    bool ok;
} measure;
/* Sorts t[0..runs) and summarises it. */
measure measure_of(double *t, int runs);

/* sqrt(sum (a - ref)^2 / sum ref^2); INFINITY on a non-finite a. */
double rel_l2(const float *a, const float *ref, size_t n);
/* Every candidate's output must match the default's this closely. */
#define TUNE_MAX_REL_L2 1e-5

/* One line on stderr, rewritten in place: job k of total, candidate c of
 * cands, elapsed and the budget left. */
void progress(int k, int total, const char *kernel, const char *shape, int c, int cands,
              double start, double budget);

/* A row of the closing table. */
typedef struct result_row {
    char kernel[32], shape[40], params[160];
    double default_us, tuned_us;
} result_row;
#define MAX_ROWS 160

/* The run's time budget: the whole run stops starting candidates once
 * `start + total` would be passed; a job gets a share of what is left. */
typedef struct budget {
    double start, total;
} budget;
/* Whether something predicted to take `cost` seconds still fits both the
 * job's share (from job_start) and the whole budget. */
bool budget_fits(const budget *b, double job_start, double share, double cost);

/* Parses one CLBlast parameter set as CLBlast's own tuners print it (the
 * "best_parameters" of their JSON, "GEMMK=0 KREG=1 KWG=32 ... VWN=2", in any
 * order, PRECISION ignored): an Xgemm set when it names MWG, an
 * XgemmDirect set when it names WGD. False with the reason in `why` on an
 * unknown or missing name or a value that is not a non-negative integer. */
#define MAX_GEMM_TRIES 4
typedef struct gemm_try {
    int kernel; /* LN_CB_XGEMM or LN_CB_XGEMM_DIRECT */
    long long v[LN_CB_MAX_PARAMS];
} gemm_try;
bool gemm_set_parse(const char *text, gemm_try *out, char *why, size_t cap);

typedef struct gemm_options {
    bool quick, redo;
    int runs;
    int random_sets;            /* random Xgemm sets; < 0: quick 0, full 8 */
    const gemm_try *tries;      /* --gemm-try sets, tried before the curated ones */
    int try_count;
    const ln_model_config *cfg; /* the model whose GEMM shapes are tuned */
    const size_t (*shapes)[2];  /* (batch, n) pairs */
    int shape_count;
    double *s_seconds; /* out, per pair or NULL: S = u u^T's time under the sets chosen;
                        * left as the caller set it where this run measured nothing */
    int job, jobs; /* for the progress line */
} gemm_options;

/* Tunes CLBlast's Xgemm, XgemmDirect and XGEMM_MIN_INDIRECT_SIZE over the
 * model's GEMMs at every (batch, n) within `share` seconds, merges the
 * result into the tuning file at `path` and appends table rows. Leaves
 * CLBlast's parameters overridden in this process (CLBlast cannot undo
 * an override), so it runs after every other job. Returns false when
 * nothing was stored (budget spent before any candidate, or a failure). */
bool gemm_tune(ln_context *ctx, const gemm_options *o, const char *path, const budget *b,
               double share, result_row *rows, int *nrows);

/* "GEMMK=0 KREG=1 ..." of an entry's CLBlast set, "CLBlast's own" when
 * empty. */
void describe_clblast(const ln_tune_entry *e, char *buf, size_t cap);

#endif
