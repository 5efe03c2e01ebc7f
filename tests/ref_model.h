/*
 * ref_model.h: the float64 C port of LNEncoder.forward
 * (shared/reference/ln_reference.py) that every backend test is judged by.
 *
 * Why a C port: SPEC's accuracy rule compares the backend with the reference
 * run in float64 on the same float32 weights and inputs. Tests draw fresh
 * random weights and inputs, so the reference has to run inside the test, in
 * C, without Python. test_ref_model.c pins this port to PyTorch float64 on
 * golden files (rel-L2 <= 1e-10), so a backend test that agrees with it
 * agrees with PyTorch.
 *
 * All arithmetic is double; weights stay float32 (as stored) and are widened
 * on use. Weights come through a lookup callback keyed by the exact
 * state_dict names of SPEC's table ("layers.0.processors.1.attn.q_proj.weight"),
 * so the port does not care how the caller stores them. Depends on libm only.
 */
#ifndef LN_REF_MODEL_H
#define LN_REF_MODEL_H

#include <stddef.h>
#include <stdint.h>

#define REF_MAX_SCALES 16

typedef struct ref_config {
    size_t d_model;                /* 384 */
    size_t pos_hidden;             /* 64 */
    size_t n_scales;               /* 4 */
    size_t scales[REF_MAX_SCALES]; /* 64, 128, 256, 384 */
    size_t head_dim;               /* 32 */
    size_t ffn_mult;               /* 4 */
    size_t n_layers;               /* 1 */
    double ln_eps;                 /* 1e-5 */
} ref_config;

/* SPEC's defaults (the table in "Configuration"). */
ref_config ref_config_default(void);
/* 0 if every size is positive and each scale divides by head_dim, else -1. */
int ref_config_check(const ref_config *cfg);

/* Returns the float32 tensor stored under `name`, or NULL if there is none.
 * Shapes are the caller's promise (SPEC's table); the port only reads. */
typedef const float *(*ref_weight_fn)(void *user, const char *name);

/*
 * The whole forward pass. x [B, n, d] float32; positions [B, n] float32 or
 * NULL for the default p_i = i / (n - 1) (0 when n = 1, computed in double as
 * PyTorch's float64 run does); lengths [B] or NULL for no padding (key j of
 * sequence b is padding when j >= lengths[b]; a length above n means n).
 * out [B, n, d] double, every row written (padded query rows too, attending
 * to the valid keys as PyTorch does).
 * Returns 0; -1 if a weight is missing (nothing useful in out); -2 for a bad
 * configuration or argument (NULL pointer, B or n zero, a length < 1).
 * Allocates O(B n (n + d + ffn_mult max(scales))) doubles of scratch.
 */
int ref_encoder_forward(const ref_config *cfg, ref_weight_fn get, void *user, size_t B, size_t n,
                        const float *x, const float *positions, const int32_t *lengths,
                        double *out);

/* The pieces, reusable by op-level tests. Row-major, dense. */

/* y[r, o] = b[o] + sum_i x[r, i] W[o, i]: PyTorch's Linear, W [out, in];
 * b may be NULL. x and y must not overlap. */
void ref_linear(size_t rows, size_t in, size_t out, const double *x, const float *W,
                const float *b, double *y);
/* Same with float32 input rows (widened exactly). */
void ref_linear_f(size_t rows, size_t in, size_t out, const float *x, const float *W,
                  const float *b, double *y);

/* LayerNorm over the last axis, biased variance; g, b [w]; y may equal x. */
void ref_layernorm(size_t rows, size_t w, const double *x, const float *g, const float *b,
                   double eps, double *y);

/* Exact GELU: 0.5 x (1 + erf(x / sqrt 2)). */
double ref_gelu(double x);

/* u = x / max(||x||, 1e-12) per row of width d. */
void ref_unit_rows(size_t rows, size_t d, const float *x, double *u);

/* S[b] = u[b] u[b]^T: unit [B, n, d] -> S [B, n, n]. */
void ref_similarity(size_t B, size_t n, size_t d, const double *unit, double *S);

/*
 * Semantic attention core (before out_proj), float64:
 *   out[b, i, h*hd + c] = sum_j softmax_j(q_i . k_j / sqrt(hd) + temperature[h] S_ij) v[j, h*hd + c]
 * over keys j < lengths[b] (all keys if lengths is NULL). q, k, v, out
 * [B, n, width] with heads laid out as in PyTorch's view(B, n, H, hd);
 * unit [B, n, d] (S = u u^T is formed here); temperature [width / head_dim].
 * ref_semantic_attention_s takes a precomputed S [B, n, n] instead.
 * A sequence whose lengths[b] < 1 gets NaN rows (as PyTorch's all -inf softmax).
 */
void ref_semantic_attention(size_t B, size_t n, size_t width, size_t head_dim, size_t d,
                            const double *q, const double *k, const double *v, const double *unit,
                            const float *temperature, const int32_t *lengths, double *out);
void ref_semantic_attention_s(size_t B, size_t n, size_t width, size_t head_dim, const double *q,
                              const double *k, const double *v, const double *S,
                              const float *temperature, const int32_t *lengths, double *out);

#endif
