/*
 * ref_model.c: float64 port of LNEncoder.forward (see ref_model.h), written
 * to follow shared/reference/ln_reference.py line by line so that a reader
 * can check it against the Python: unit rows, S, positional MLP, per layer
 * the K pre-norm branches and the fusion, then the final LayerNorm.
 *
 * Speed matters only enough for tests: linear layers use four partial sums
 * (breaks the add dependency chain; about 3x faster than one accumulator at
 * -O2 and still agrees with PyTorch float64 to ~1e-15), which keeps the
 * d_model 768 configuration at B=1, n=33 well under a second.
 */
#include "ref_model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double REF_SQRT1_2 = 0.70710678118654752440; /* M_SQRT1_2 is not C11 */

ref_config ref_config_default(void)
{
    ref_config c;
    memset(&c, 0, sizeof(c));
    c.d_model = 384;
    c.pos_hidden = 64;
    c.n_scales = 4;
    c.scales[0] = 64, c.scales[1] = 128, c.scales[2] = 256, c.scales[3] = 384;
    c.head_dim = 32;
    c.ffn_mult = 4;
    c.n_layers = 1;
    c.ln_eps = 1e-5;
    return c;
}

int ref_config_check(const ref_config *c)
{
    if (!c || !c->d_model || !c->pos_hidden || !c->head_dim || !c->ffn_mult || !c->n_layers ||
        !c->n_scales || c->n_scales > REF_MAX_SCALES || !(c->ln_eps > 0))
        return -1;
    for (size_t k = 0; k < c->n_scales; k++)
        if (!c->scales[k] || c->scales[k] % c->head_dim)
            return -1;
    return 0;
}

double ref_gelu(double x)
{
    return 0.5 * x * (1.0 + erf(x * REF_SQRT1_2));
}

static double dot_df(size_t n, const double *x, const float *w)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += x[i] * (double)w[i];
        s1 += x[i + 1] * (double)w[i + 1];
        s2 += x[i + 2] * (double)w[i + 2];
        s3 += x[i + 3] * (double)w[i + 3];
    }
    for (; i < n; i++)
        s0 += x[i] * (double)w[i];
    return (s0 + s1) + (s2 + s3);
}

static double dot_dd(size_t n, const double *x, const double *y)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += x[i] * y[i];
        s1 += x[i + 1] * y[i + 1];
        s2 += x[i + 2] * y[i + 2];
        s3 += x[i + 3] * y[i + 3];
    }
    for (; i < n; i++)
        s0 += x[i] * y[i];
    return (s0 + s1) + (s2 + s3);
}

void ref_linear(size_t rows, size_t in, size_t out, const double *x, const float *W,
                const float *b, double *y)
{
    for (size_t r = 0; r < rows; r++)
        for (size_t o = 0; o < out; o++)
            y[r * out + o] = dot_df(in, x + r * in, W + o * in) + (b ? (double)b[o] : 0.0);
}

void ref_linear_f(size_t rows, size_t in, size_t out, const float *x, const float *W,
                  const float *b, double *y)
{
    double *row = malloc((in ? in : 1) * sizeof(double));
    if (!row)
        abort();
    for (size_t r = 0; r < rows; r++) {
        for (size_t i = 0; i < in; i++)
            row[i] = x[r * in + i];
        ref_linear(1, in, out, row, W, b, y + r * out);
    }
    free(row);
}

void ref_layernorm(size_t rows, size_t w, const double *x, const float *g, const float *b,
                   double eps, double *y)
{
    for (size_t r = 0; r < rows; r++) {
        const double *xr = x + r * w;
        double *yr = y + r * w;
        double mean = 0, var = 0;
        for (size_t c = 0; c < w; c++)
            mean += xr[c];
        mean /= (double)w;
        for (size_t c = 0; c < w; c++)
            var += (xr[c] - mean) * (xr[c] - mean);
        var /= (double)w;
        double rstd = 1.0 / sqrt(var + eps);
        for (size_t c = 0; c < w; c++)
            yr[c] = (xr[c] - mean) * rstd * (double)g[c] + (double)b[c];
    }
}

void ref_unit_rows(size_t rows, size_t d, const float *x, double *u)
{
    for (size_t r = 0; r < rows; r++) {
        double s = 0;
        for (size_t c = 0; c < d; c++)
            s += (double)x[r * d + c] * (double)x[r * d + c];
        double nrm = fmax(sqrt(s), 1e-12);
        for (size_t c = 0; c < d; c++)
            u[r * d + c] = (double)x[r * d + c] / nrm;
    }
}

void ref_similarity(size_t B, size_t n, size_t d, const double *unit, double *S)
{
    for (size_t b = 0; b < B; b++)
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++)
                S[(b * n + i) * n + j] = dot_dd(d, unit + (b * n + i) * d, unit + (b * n + j) * d);
}

void ref_semantic_attention_s(size_t B, size_t n, size_t width, size_t head_dim, const double *q,
                              const double *k, const double *v, const double *S,
                              const float *temperature, const int32_t *lengths, double *out)
{
    size_t H = width / head_dim;
    double scale = 1.0 / sqrt((double)head_dim);
    double *p = malloc(n * sizeof(double));
    if (!p)
        abort();
    for (size_t b = 0; b < B; b++) {
        size_t len = n;
        if (lengths)
            len = lengths[b] < 1 ? 0 : ((size_t)lengths[b] < n ? (size_t)lengths[b] : n);
        for (size_t h = 0; h < H; h++) {
            double t = temperature[h];
            for (size_t i = 0; i < n; i++) {
                double *o = out + (b * n + i) * width + h * head_dim;
                if (len == 0) {
                    for (size_t c = 0; c < head_dim; c++)
                        o[c] = NAN;
                    continue;
                }
                const double *qi = q + (b * n + i) * width + h * head_dim;
                const double *Si = S + (b * n + i) * n;
                double mx = -INFINITY;
                for (size_t j = 0; j < len; j++) {
                    const double *kj = k + (b * n + j) * width + h * head_dim;
                    p[j] = dot_dd(head_dim, qi, kj) * scale + t * Si[j];
                    mx = fmax(mx, p[j]);
                }
                double sum = 0;
                for (size_t j = 0; j < len; j++)
                    sum += p[j] = exp(p[j] - mx);
                for (size_t c = 0; c < head_dim; c++)
                    o[c] = 0;
                for (size_t j = 0; j < len; j++) {
                    const double *vj = v + (b * n + j) * width + h * head_dim;
                    double pj = p[j] / sum;
                    for (size_t c = 0; c < head_dim; c++)
                        o[c] += pj * vj[c];
                }
            }
        }
    }
    free(p);
}

void ref_semantic_attention(size_t B, size_t n, size_t width, size_t head_dim, size_t d,
                            const double *q, const double *k, const double *v, const double *unit,
                            const float *temperature, const int32_t *lengths, double *out)
{
    double *S = malloc(B * n * n * sizeof(double));
    if (!S)
        abort();
    ref_similarity(B, n, d, unit, S);
    ref_semantic_attention_s(B, n, width, head_dim, q, k, v, S, temperature, lengths, out);
    free(S);
}

/* Weight lookup by printf-style name; remembers the first missing one. */
typedef struct {
    ref_weight_fn get;
    void *user;
    int missing;
} lookup;

static const float *wt(lookup *lk, const char *fmt, ...)
{
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    const float *p = lk->get(lk->user, name);
    if (!p && !lk->missing) {
        lk->missing = 1;
        fprintf(stderr, "ref_model: missing weight %s\n", name);
    }
    return p;
}

typedef struct {
    const float *proj_w, *proj_b, *ln1_w, *ln1_b, *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b,
        *temp, *ln2_w, *ln2_b, *f0_w, *f0_b, *f2_w, *f2_b;
} branch_weights;

static const float *pwt(lookup *lk, size_t L, size_t K, const char *suffix)
{
    return wt(lk, "layers.%zu.processors.%zu.%s", L, K, suffix);
}

static void get_branch(lookup *lk, size_t L, size_t K, branch_weights *w)
{
    w->proj_w = wt(lk, "layers.%zu.projections.%zu.weight", L, K);
    w->proj_b = wt(lk, "layers.%zu.projections.%zu.bias", L, K);
    w->ln1_w = pwt(lk, L, K, "ln1.weight");
    w->ln1_b = pwt(lk, L, K, "ln1.bias");
    w->q_w = pwt(lk, L, K, "attn.q_proj.weight");
    w->q_b = pwt(lk, L, K, "attn.q_proj.bias");
    w->k_w = pwt(lk, L, K, "attn.k_proj.weight");
    w->k_b = pwt(lk, L, K, "attn.k_proj.bias");
    w->v_w = pwt(lk, L, K, "attn.v_proj.weight");
    w->v_b = pwt(lk, L, K, "attn.v_proj.bias");
    w->o_w = pwt(lk, L, K, "attn.out_proj.weight");
    w->o_b = pwt(lk, L, K, "attn.out_proj.bias");
    w->temp = pwt(lk, L, K, "attn.temperature");
    w->ln2_w = pwt(lk, L, K, "ln2.weight");
    w->ln2_b = pwt(lk, L, K, "ln2.bias");
    w->f0_w = pwt(lk, L, K, "ffn.0.weight");
    w->f0_b = pwt(lk, L, K, "ffn.0.bias");
    w->f2_w = pwt(lk, L, K, "ffn.2.weight");
    w->f2_b = pwt(lk, L, K, "ffn.2.bias");
}

int ref_encoder_forward(const ref_config *cfg, ref_weight_fn get, void *user, size_t B, size_t n,
                        const float *x, const float *positions, const int32_t *lengths,
                        double *out)
{
    if (ref_config_check(cfg) || !get || !x || !out || !B || !n)
        return -2;
    if (lengths)
        for (size_t b = 0; b < B; b++)
            if (lengths[b] < 1)
                return -2;
    const size_t d = cfg->d_model, ph = cfg->pos_hidden, rows = B * n;
    size_t sumw = 0, maxw = 0;
    for (size_t k = 0; k < cfg->n_scales; k++) {
        sumw += cfg->scales[k];
        maxw = cfg->scales[k] > maxw ? cfg->scales[k] : maxw;
    }
    const size_t fw = cfg->ffn_mult * maxw;
    lookup lk = {get, user, 0};

    /* Look every weight up before computing, so a missing one costs nothing. */
    const float *pw1 = wt(&lk, "pos.position_mlp.0.weight"), *pb1 = wt(&lk, "pos.position_mlp.0.bias"),
                *pw2 = wt(&lk, "pos.position_mlp.2.weight"), *pb2 = wt(&lk, "pos.position_mlp.2.bias"),
                *fin_w = wt(&lk, "final_norm.weight"), *fin_b = wt(&lk, "final_norm.bias");
    for (size_t L = 0; L < cfg->n_layers; L++) {
        branch_weights bw;
        for (size_t K = 0; K < cfg->n_scales; K++)
            get_branch(&lk, L, K, &bw);
        wt(&lk, "layers.%zu.fusion.weight", L);
        wt(&lk, "layers.%zu.fusion.bias", L);
    }
    if (lk.missing)
        return -1;

    double *unit = malloc(rows * d * sizeof(double)), *S = malloc(B * n * n * sizeof(double)),
           *h = malloc(rows * d * sizeof(double)), *tmp_d = malloc(rows * d * sizeof(double)),
           *hid = malloc(ph * sizeof(double)), *cat = malloc(rows * sumw * sizeof(double)),
           *z = malloc(rows * maxw * sizeof(double)), *zn = malloc(rows * maxw * sizeof(double)),
           *q = malloc(rows * maxw * sizeof(double)), *k = malloc(rows * maxw * sizeof(double)),
           *v = malloc(rows * maxw * sizeof(double)), *a = malloc(rows * maxw * sizeof(double)),
           *f = malloc(rows * fw * sizeof(double));
    if (!unit || !S || !h || !tmp_d || !hid || !cat || !z || !zn || !q || !k || !v || !a || !f)
        abort();

    /* unit = x / max(||x||, 1e-12); S = u u^T, shared by every head, branch, layer. */
    ref_unit_rows(rows, d, x, unit);
    ref_similarity(B, n, d, unit, S);

    /* h = x + W2 gelu(W1 p + b1) + b2 */
    for (size_t b = 0; b < B; b++)
        for (size_t i = 0; i < n; i++) {
            size_t r = b * n + i;
            double p = positions ? (double)positions[r] : (n == 1 ? 0.0 : (double)i / (double)(n - 1));
            for (size_t c = 0; c < ph; c++)
                hid[c] = ref_gelu(p * (double)pw1[c] + (double)pb1[c]);
            ref_linear(1, ph, d, hid, pw2, pb2, tmp_d + r * d);
            for (size_t c = 0; c < d; c++)
                h[r * d + c] = (double)x[r * d + c] + tmp_d[r * d + c];
        }

    for (size_t L = 0; L < cfg->n_layers; L++) {
        size_t off = 0;
        for (size_t K = 0; K < cfg->n_scales; K++) {
            const size_t w = cfg->scales[K], fwk = cfg->ffn_mult * w;
            branch_weights bw;
            get_branch(&lk, L, K, &bw);
            /* z = projections.K(h) */
            ref_linear(rows, d, w, h, bw.proj_w, bw.proj_b, z);
            /* z = z + attn(ln1(z)) */
            ref_layernorm(rows, w, z, bw.ln1_w, bw.ln1_b, cfg->ln_eps, zn);
            ref_linear(rows, w, w, zn, bw.q_w, bw.q_b, q);
            ref_linear(rows, w, w, zn, bw.k_w, bw.k_b, k);
            ref_linear(rows, w, w, zn, bw.v_w, bw.v_b, v);
            ref_semantic_attention_s(B, n, w, cfg->head_dim, q, k, v, S, bw.temp, lengths, a);
            ref_linear(rows, w, w, a, bw.o_w, bw.o_b, q);
            for (size_t e = 0; e < rows * w; e++)
                z[e] += q[e];
            /* z = z + ffn(ln2(z)) */
            ref_layernorm(rows, w, z, bw.ln2_w, bw.ln2_b, cfg->ln_eps, zn);
            ref_linear(rows, w, fwk, zn, bw.f0_w, bw.f0_b, f);
            for (size_t e = 0; e < rows * fwk; e++)
                f[e] = ref_gelu(f[e]);
            ref_linear(rows, fwk, w, f, bw.f2_w, bw.f2_b, q);
            for (size_t r = 0; r < rows; r++)
                for (size_t c = 0; c < w; c++)
                    cat[r * sumw + off + c] = z[r * w + c] + q[r * w + c];
            off += w;
        }
        /* h = h + fusion(cat) */
        ref_linear(rows, sumw, d, cat, wt(&lk, "layers.%zu.fusion.weight", L),
                   wt(&lk, "layers.%zu.fusion.bias", L), tmp_d);
        for (size_t e = 0; e < rows * d; e++)
            h[e] += tmp_d[e];
    }
    ref_layernorm(rows, d, h, fin_w, fin_b, cfg->ln_eps, out);

    free(unit), free(S), free(h), free(tmp_d), free(hid), free(cat), free(z), free(zn);
    free(q), free(k), free(v), free(a), free(f);
    return 0;
}
