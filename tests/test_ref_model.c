/*
 * test_ref_model.c: pins the float64 C port (tests/ref_model.c) to PyTorch.
 *
 * Every backend test judges the device against ref_model.c on fresh random
 * data, so the port itself must equal shared/reference/ln_reference.py. This
 * runner loads tests/data/golden_tiny.safetensors (a 2-layer, 3-branch model
 * with every LayerNorm and temperature perturbed, saved by
 * tests/data/make_golden.py exactly as users save models) and
 * golden_tiny_io.safetensors (inputs and LNEncoder.double() outputs stored as
 * float32 hi + lo pairs), runs the port, and requires rel-L2 <= 1e-10: both
 * sides are float64 on the same float32 weights, so only summation order
 * differs (measured ~4e-16). Missing golden files fail the test: they are
 * committed data, not optional.
 *
 * Needs no device: it exercises the safetensors reader (src/safetensors.c)
 * and the port only.
 */
#include "test_util.h"

#include "ref_model.h"
#include "tensor_io.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const double TOL = 1e-10;

/* ------------------------------------------------------------ file access */

static char *data_path(const char *file)
{
    const char *dir = getenv("LN_TEST_DATA");
    char buf[4096];
    if (dir && *dir) {
        snprintf(buf, sizeof(buf), "%s/%s", dir, file);
    } else {
        const char *src = getenv("LN_SOURCE_DIR");
        ck_assert_msg(src && *src, "neither LN_TEST_DATA nor LN_SOURCE_DIR is set");
        snprintf(buf, sizeof(buf), "%s/tests/data/%s", src, file);
    }
    char *p = malloc(strlen(buf) + 1);
    ck_assert_ptr_nonnull(p);
    strcpy(p, buf);
    return p;
}

static ln_tensor_file *read_golden(const char *file)
{
    char *path = data_path(file);
    ln_tensor_file *tf = NULL;
    ln_status st = ln_safetensors_read(NULL, path, &tf);
    ck_assert_msg(st == LN_SUCCESS && tf,
                  "cannot read golden file %s: %s: %s (regenerate with tests/data/make_golden.py)",
                  path, ln_status_string(st), ln_last_error(NULL));
    free(path);
    return tf;
}

static const ln_tensor *need(const ln_tensor_file *tf, const char *name, ln_dtype dtype, int ndim,
                             const int64_t *shape)
{
    const ln_tensor *t = ln_tensor_file_find(tf, name);
    ck_assert_msg(t != NULL, "golden tensor %s missing", name);
    ck_assert_msg(t->dtype == dtype, "%s: dtype %s, wanted %s", name, ln_dtype_name(t->dtype),
                  ln_dtype_name(dtype));
    ck_assert_msg(t->ndim == ndim, "%s: %d dims, wanted %d", name, t->ndim, ndim);
    for (int i = 0; i < ndim; i++)
        ck_assert_msg(t->shape[i] == shape[i], "%s: dim %d is %lld, wanted %lld", name, i,
                      (long long)t->shape[i], (long long)shape[i]);
    return t;
}

/* ------------------------------------------------------- the configuration */

/* ln_config metadata as LNEncoder(config) reads it: absent keys keep SPEC's
 * defaults. Parsed here with jansson so this test does not depend on the
 * library's own config parser (src/config.c), which it should not vouch for. */
static ref_config config_of(const ln_tensor_file *tf)
{
    const char *js = ln_tensor_file_metadata(tf, "ln_config");
    ck_assert_msg(js != NULL, "golden model has no ln_config metadata");
    json_error_t err;
    json_t *root = json_loads(js, 0, &err);
    ck_assert_msg(root && json_is_object(root), "ln_config is not a JSON object: %s", err.text);
    ref_config c = ref_config_default();
    struct {
        const char *key;
        size_t *dst;
    } ints[] = {{"d_model", &c.d_model}, {"pos_hidden", &c.pos_hidden}, {"head_dim", &c.head_dim},
                {"ffn_mult", &c.ffn_mult}, {"n_layers", &c.n_layers}};
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        json_t *v = json_object_get(root, ints[i].key);
        if (v) {
            ck_assert_msg(json_is_integer(v) && json_integer_value(v) > 0, "ln_config.%s",
                          ints[i].key);
            *ints[i].dst = (size_t)json_integer_value(v);
        }
    }
    json_t *eps = json_object_get(root, "ln_eps");
    if (eps) {
        ck_assert_msg(json_is_number(eps), "ln_config.ln_eps");
        c.ln_eps = json_number_value(eps);
    }
    json_t *sc = json_object_get(root, "scales");
    if (sc) {
        ck_assert_msg(json_is_array(sc) && json_array_size(sc) >= 1 &&
                          json_array_size(sc) <= REF_MAX_SCALES,
                      "ln_config.scales");
        c.n_scales = json_array_size(sc);
        for (size_t k = 0; k < c.n_scales; k++) {
            json_t *v = json_array_get(sc, k);
            ck_assert_msg(json_is_integer(v) && json_integer_value(v) > 0, "ln_config.scales[%zu]", k);
            c.scales[k] = (size_t)json_integer_value(v);
        }
    }
    json_decref(root);
    ck_assert_msg(ref_config_check(&c) == 0, "ln_config is not a valid configuration");
    return c;
}

/* One F32 tensor of shape [s0] (ndim 1) or [s0, s1] (ndim 2), named by fmt. */
static void need_f32(const ln_tensor_file *tf, size_t *count, int ndim, int64_t s0, int64_t s1,
                     const char *fmt, ...)
{
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    const int64_t shape[2] = {s0, s1};
    need(tf, name, LN_DT_F32, ndim, shape);
    ++*count;
}

/* The golden model holds exactly SPEC's tensors for its configuration, each
 * F32 with SPEC's shape: the port trusts shapes, so check them here once. */
static void check_model_tensors(const ln_tensor_file *tf, const ref_config *c)
{
    const int64_t d = (int64_t)c->d_model, ph = (int64_t)c->pos_hidden;
    int64_t sumw = 0;
    for (size_t k = 0; k < c->n_scales; k++)
        sumw += (int64_t)c->scales[k];
    size_t n = 0;
    need_f32(tf, &n, 2, ph, 1, "pos.position_mlp.0.weight");
    need_f32(tf, &n, 1, ph, 0, "pos.position_mlp.0.bias");
    need_f32(tf, &n, 2, d, ph, "pos.position_mlp.2.weight");
    need_f32(tf, &n, 1, d, 0, "pos.position_mlp.2.bias");
    need_f32(tf, &n, 1, d, 0, "final_norm.weight");
    need_f32(tf, &n, 1, d, 0, "final_norm.bias");
    static const char *sq[] = {"attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj"};
    for (size_t L = 0; L < c->n_layers; L++) {
        for (size_t K = 0; K < c->n_scales; K++) {
            const int64_t w = (int64_t)c->scales[K], fw = (int64_t)c->ffn_mult * w;
            const int64_t heads = w / (int64_t)c->head_dim;
            const char *p = "layers.%zu.processors.%zu.%s.%s";
            need_f32(tf, &n, 2, w, d, "layers.%zu.projections.%zu.weight", L, K);
            need_f32(tf, &n, 1, w, 0, "layers.%zu.projections.%zu.bias", L, K);
            need_f32(tf, &n, 1, w, 0, p, L, K, "ln1", "weight");
            need_f32(tf, &n, 1, w, 0, p, L, K, "ln1", "bias");
            need_f32(tf, &n, 1, w, 0, p, L, K, "ln2", "weight");
            need_f32(tf, &n, 1, w, 0, p, L, K, "ln2", "bias");
            for (int i = 0; i < 4; i++) {
                need_f32(tf, &n, 2, w, w, p, L, K, sq[i], "weight");
                need_f32(tf, &n, 1, w, 0, p, L, K, sq[i], "bias");
            }
            need_f32(tf, &n, 1, heads, 0, p, L, K, "attn", "temperature");
            need_f32(tf, &n, 2, fw, w, p, L, K, "ffn.0", "weight");
            need_f32(tf, &n, 1, fw, 0, p, L, K, "ffn.0", "bias");
            need_f32(tf, &n, 2, w, fw, p, L, K, "ffn.2", "weight");
            need_f32(tf, &n, 1, w, 0, p, L, K, "ffn.2", "bias");
        }
        need_f32(tf, &n, 2, d, sumw, "layers.%zu.fusion.weight", L);
        need_f32(tf, &n, 1, d, 0, "layers.%zu.fusion.bias", L);
    }
    ck_assert_msg(tf->count == n, "golden model has %zu tensors, its config needs %zu", tf->count, n);
}

/* ------------------------------------------------------------ weight source */

/* Weights from the file, except that `override` (if set) replaces one tensor
 * and `hidden` (if set) is reported missing. */
typedef struct {
    const ln_tensor_file *tf;
    const char *override_name;
    const float *override_data;
    const char *hidden;
} weights;

static const float *get_weight(void *user, const char *name)
{
    const weights *w = user;
    if (w->hidden && !strcmp(name, w->hidden))
        return NULL;
    if (w->override_name && !strcmp(name, w->override_name))
        return w->override_data;
    const ln_tensor *t = ln_tensor_file_find(w->tf, name);
    return t && t->dtype == LN_DT_F32 ? t->data : NULL;
}

/* ------------------------------------------------------------- comparisons */

/* ||got - ref|| / ||ref|| over the rows of `rows` of width d that `valid`
 * marks (all when valid is NULL); +inf on NaN or Inf. */
static double rel_l2_rows(const double *got, const double *ref, size_t rows, size_t d,
                          const int *valid)
{
    double num = 0, den = 0;
    for (size_t r = 0; r < rows; r++) {
        if (valid && !valid[r])
            continue;
        for (size_t c = 0; c < d; c++) {
            double g = got[r * d + c], e = ref[r * d + c];
            if (!isfinite(g))
                return INFINITY;
            num += (g - e) * (g - e);
            den += e * e;
        }
    }
    return sqrt(num) / sqrt(den);
}

/* float64 reference = hi + lo (two float32 tensors of the io file). */
static double *ref_of(const ln_tensor_file *io, const char *hi_name, const char *lo_name, int ndim,
                      const int64_t *shape)
{
    const ln_tensor *hi = need(io, hi_name, LN_DT_F32, ndim, shape);
    const ln_tensor *lo = need(io, lo_name, LN_DT_F32, ndim, shape);
    double *ref = tu_malloc(hi->count * sizeof(double));
    const float *h = hi->data, *l = lo->data;
    for (size_t i = 0; i < hi->count; i++)
        ref[i] = (double)h[i] + (double)l[i];
    return ref;
}

typedef struct {
    ln_tensor_file *model, *io;
    ref_config cfg;
    size_t B, n, d;
    const float *x, *positions;
    int32_t lengths[2];
    double *ref;
    int valid[14];
} golden_case;

/* Case 1 of the io file: positions and lengths given. */
static void load_case1(golden_case *g)
{
    memset(g, 0, sizeof(*g));
    g->model = read_golden("golden_tiny.safetensors");
    g->io = read_golden("golden_tiny_io.safetensors");
    g->cfg = config_of(g->model);
    check_model_tensors(g->model, &g->cfg);
    g->B = 2, g->n = 7, g->d = g->cfg.d_model;
    const int64_t xs[] = {2, 7, (int64_t)g->d}, ps[] = {2, 7}, ls[] = {2};
    g->x = need(g->io, "x", LN_DT_F32, 3, xs)->data;
    g->positions = need(g->io, "positions", LN_DT_F32, 2, ps)->data;
    const int64_t *len64 = need(g->io, "lengths", LN_DT_I64, 1, ls)->data;
    for (size_t b = 0; b < g->B; b++) {
        ck_assert(len64[b] >= 1 && len64[b] <= (int64_t)g->n);
        g->lengths[b] = (int32_t)len64[b];
        for (size_t i = 0; i < g->n; i++)
            g->valid[b * g->n + i] = (int64_t)i < len64[b];
    }
    ck_assert_msg(g->lengths[0] != g->lengths[1], "golden case 1 should pad one sequence");
    g->ref = ref_of(g->io, "out_ref_hi", "out_ref_lo", 3, xs);
}

static void free_case(golden_case *g)
{
    ln_tensor_file_free(g->model);
    ln_tensor_file_free(g->io);
    free(g->ref);
}

/* ------------------------------------------------------------------- tests */

START_TEST(port_matches_pytorch_with_positions_and_lengths)
{
    golden_case g;
    load_case1(&g);
    weights w = {g.model, NULL, NULL, NULL};
    double *out = tu_malloc(g.B * g.n * g.d * sizeof(double));
    int rc = ref_encoder_forward(&g.cfg, get_weight, &w, g.B, g.n, g.x, g.positions, g.lengths, out);
    ck_assert_int_eq(rc, 0);
    double valid = rel_l2_rows(out, g.ref, g.B * g.n, g.d, g.valid);
    double all = rel_l2_rows(out, g.ref, g.B * g.n, g.d, NULL);
    printf("ref_model vs PyTorch float64 (positions, lengths [%d, %d]): rel-L2 %.3g valid rows, "
           "%.3g all rows\n",
           g.lengths[0], g.lengths[1], valid, all);
    ck_assert_msg(valid <= TOL, "valid rows: rel-L2 %.3g > %.0g", valid, TOL);
    /* Padded query rows are unspecified for backends, but the port computes
     * them as PyTorch does, so they must agree too. */
    ck_assert_msg(all <= TOL, "all rows: rel-L2 %.3g > %.0g", all, TOL);
    free(out);
    free_case(&g);
}
END_TEST

START_TEST(port_matches_pytorch_default_positions)
{
    ln_tensor_file *model = read_golden("golden_tiny.safetensors");
    ln_tensor_file *io = read_golden("golden_tiny_io.safetensors");
    ref_config cfg = config_of(model);
    const size_t B = 1, n = 5, d = cfg.d_model;
    const int64_t xs[] = {1, 5, (int64_t)d};
    const float *x = need(io, "x2", LN_DT_F32, 3, xs)->data;
    double *ref = ref_of(io, "out2_ref_hi", "out2_ref_lo", 3, xs);
    weights w = {model, NULL, NULL, NULL};
    double *out = tu_malloc(B * n * d * sizeof(double));
    ck_assert_int_eq(ref_encoder_forward(&cfg, get_weight, &w, B, n, x, NULL, NULL, out), 0);
    double err = rel_l2_rows(out, ref, B * n, d, NULL);
    printf("ref_model vs PyTorch float64 (default positions, no lengths): rel-L2 %.3g\n", err);
    ck_assert_msg(err <= TOL, "rel-L2 %.3g > %.0g", err, TOL);
    /* Explicit positions i / (n - 1) and lengths n give the same result. */
    float pos[5];
    int32_t len[1] = {5};
    for (size_t i = 0; i < n; i++)
        pos[i] = (float)i / (float)(n - 1); /* exact in float32 for n = 5 */
    double *out2 = tu_malloc(B * n * d * sizeof(double));
    ck_assert_int_eq(ref_encoder_forward(&cfg, get_weight, &w, B, n, x, pos, len, out2), 0);
    ck_assert_msg(rel_l2_rows(out2, out, B * n, d, NULL) == 0.0, "explicit defaults differ");
    free(out), free(out2), free(ref);
    ln_tensor_file_free(model);
    ln_tensor_file_free(io);
}
END_TEST

START_TEST(every_golden_tensor_matters)
{
    /* The golden pins the port only through parameters that move the output:
     * shifting any one tensor (by a non-constant pattern of size ~0.05) must
     * change the valid rows by far more than the tolerance. Catches a weight
     * the port (or the golden model) silently ignores. The one exception is
     * attn.k_proj.bias: it adds q_i . b_k to every logit of row i, which
     * softmax cancels exactly, so no test can see it (checked: the change is
     * rounding noise, < 1e-12). */
    golden_case g;
    load_case1(&g);
    double *base = tu_malloc(g.B * g.n * g.d * sizeof(double));
    double *out = tu_malloc(g.B * g.n * g.d * sizeof(double));
    weights w = {g.model, NULL, NULL, NULL};
    ck_assert_int_eq(ref_encoder_forward(&g.cfg, get_weight, &w, g.B, g.n, g.x, g.positions,
                                         g.lengths, base), 0);
    double least = INFINITY;
    const char *least_name = "";
    size_t invariant = 0;
    for (size_t t = 0; t < g.model->count; t++) {
        const ln_tensor *tt = &g.model->tensors[t];
        float *shifted = tu_malloc(tt->count * sizeof(float));
        for (size_t i = 0; i < tt->count; i++)
            shifted[i] = ((const float *)tt->data)[i] + 0.025f * (float)(i % 5) - 0.04f;
        w.override_name = tt->name;
        w.override_data = shifted;
        ck_assert_int_eq(ref_encoder_forward(&g.cfg, get_weight, &w, g.B, g.n, g.x, g.positions,
                                             g.lengths, out), 0);
        double change = rel_l2_rows(out, base, g.B * g.n, g.d, g.valid);
        free(shifted);
        if (strstr(tt->name, "attn.k_proj.bias")) {
            ck_assert_msg(change < 1e-12, "%s should be softmax-invariant: %.3g", tt->name, change);
            invariant++;
            continue;
        }
        ck_assert_msg(change > 1e3 * TOL, "shifting %s changes the output by only %.3g", tt->name,
                      change);
        if (change < least)
            least = change, least_name = tt->name;
    }
    printf("%zu of %zu tensors move the output (the other %zu are k_proj biases); least "
           "sensitive: %s (rel change %.3g)\n",
           g.model->count - invariant, g.model->count, invariant, least_name, least);
    free(base), free(out);
    free_case(&g);
}
END_TEST

START_TEST(port_reports_missing_weights_and_bad_arguments)
{
    golden_case g;
    load_case1(&g);
    double *out = tu_malloc(g.B * g.n * g.d * sizeof(double));
    weights w = {g.model, NULL, NULL, "layers.1.processors.2.attn.temperature"};
    ck_assert_int_eq(ref_encoder_forward(&g.cfg, get_weight, &w, g.B, g.n, g.x, g.positions,
                                         g.lengths, out), -1);
    w.hidden = "final_norm.bias";
    ck_assert_int_eq(ref_encoder_forward(&g.cfg, get_weight, &w, g.B, g.n, g.x, NULL, NULL, out), -1);
    w.hidden = NULL;
    int32_t zero_len[2] = {7, 0};
    ck_assert_int_eq(ref_encoder_forward(&g.cfg, get_weight, &w, g.B, g.n, g.x, NULL, zero_len, out), -2);
    ref_config bad = g.cfg;
    bad.head_dim = 12; /* 16 % 12 != 0 */
    ck_assert_int_eq(ref_encoder_forward(&bad, get_weight, &w, g.B, g.n, g.x, NULL, NULL, out), -2);
    ck_assert_int_eq(ref_encoder_forward(&g.cfg, get_weight, &w, 0, g.n, g.x, NULL, NULL, out), -2);
    /* A length above n means n. */
    int32_t long_len[2] = {7, 100}, full_len[2] = {7, 7};
    double *out2 = tu_malloc(g.B * g.n * g.d * sizeof(double));
    ck_assert_int_eq(ref_encoder_forward(&g.cfg, get_weight, &w, g.B, g.n, g.x, g.positions,
                                         long_len, out), 0);
    ck_assert_int_eq(ref_encoder_forward(&g.cfg, get_weight, &w, g.B, g.n, g.x, g.positions,
                                         full_len, out2), 0);
    ck_assert(rel_l2_rows(out, out2, g.B * g.n, g.d, NULL) == 0.0);
    free(out), free(out2);
    free_case(&g);
}
END_TEST

START_TEST(pieces_match_closed_forms)
{
    /* Small hand-checkable cases for the reusable pieces. */
    ck_assert(fabs(ref_gelu(0.0)) == 0.0);
    ck_assert(fabs(ref_gelu(1.0) - 0.8413447460685429) < 1e-15);
    ck_assert(fabs(ref_gelu(-1.0) + 0.15865525393145707) < 1e-15);

    const float W[6] = {1, 2, 3, 4, 5, 6}, b[2] = {0.5f, -1};
    const double x[3] = {1, -1, 2};
    double y[2];
    ref_linear(1, 3, 2, x, W, b, y);
    ck_assert(y[0] == 1 - 2 + 6 + 0.5 && y[1] == 4 - 5 + 12 - 1);
    const float xf[3] = {1, -1, 2};
    ref_linear_f(1, 3, 2, xf, W, NULL, y);
    ck_assert(y[0] == 5 && y[1] == 11);

    const float g1[4] = {1, 1, 1, 1}, b0[4] = {0, 0, 0, 0};
    const double xl[4] = {1, 2, 3, 4};
    double yl[4];
    ref_layernorm(1, 4, xl, g1, b0, 0.0, yl);
    /* mean 2.5, biased variance 1.25 */
    for (int c = 0; c < 4; c++)
        ck_assert(fabs(yl[c] - (xl[c] - 2.5) / sqrt(1.25)) < 1e-15);

    const float xu[6] = {3, 4, 0, 0, 0, 0};
    double u[6];
    ref_unit_rows(2, 3, xu, u);
    ck_assert(u[0] == 0.6 && u[1] == 0.8 && u[2] == 0 && u[3] == 0 && u[4] == 0 && u[5] == 0);

    /* Attention with one head, two keys, q = 0: weights softmax(t S_ij). */
    const double q[4] = {0, 0, 0, 0}, k[4] = {1, 2, 3, 4}, v[4] = {1, 0, 0, 1};
    const double un[4] = {1, 0, 0, 1}; /* S = identity */
    const float temp[1] = {-2};
    double o[4];
    ref_semantic_attention(1, 2, 2, 2, 2, q, k, v, un, temp, NULL, o);
    double p0 = exp(-2.0) / (exp(-2.0) + 1.0); /* row 0: logits (-2, 0) */
    ck_assert(fabs(o[0] - p0) < 1e-15 && fabs(o[1] - (1 - p0)) < 1e-15);
    const int32_t one[1] = {1};
    ref_semantic_attention(1, 2, 2, 2, 2, q, k, v, un, temp, one, o);
    ck_assert(o[0] == 1 && o[1] == 0 && o[2] == 1 && o[3] == 0); /* only key 0 */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ref_model");
    TCase *tc = tcase_create("ref_model");
    tcase_add_test(tc, port_matches_pytorch_with_positions_and_lengths);
    tcase_add_test(tc, port_matches_pytorch_default_positions);
    tcase_add_test(tc, every_golden_tensor_matters);
    tcase_add_test(tc, port_reports_missing_weights_and_bad_arguments);
    tcase_add_test(tc, pieces_match_closed_forms);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
