/*
 * config.c: the model configuration: SPEC defaults, the `ln_config`
 * metadata JSON (via jansson), inference from tensor shapes, validation,
 * and the check that a weights file holds exactly the tensors a
 * configuration needs. See config.h.
 */
#include "config.h"
#include "internal.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ln_config_default(ln_model_config *cfg)
{
    static const ln_model_config def = {
        .d_model = 384,
        .pos_hidden = 64,
        .n_scales = 4,
        .scales = {64, 128, 256, 384},
        .head_dim = 32,
        .ffn_mult = 4,
        .n_layers = 1,
        .ln_eps = 1e-5f,
    };
    *cfg = def;
}

/* "[64, 128]" for messages. */
static const char *scales_str(const ln_model_config *cfg, char *buf, size_t cap)
{
    int64_t s[LN_MAX_SCALES];
    int n = cfg->n_scales < 0 ? 0 : cfg->n_scales > LN_MAX_SCALES ? LN_MAX_SCALES : cfg->n_scales;
    for (int i = 0; i < n; i++)
        s[i] = cfg->scales[i];
    return ln_shape_str(n, s, buf, cap);
}

/* ------------------------------------------------------------- validation */

static ln_status check_range(ln_context *ctx, const char *key, long long v, long long max)
{
    if (v < 1 || v > max)
        return ln_fail(ctx, LN_ERROR_BAD_CONFIG, "ln_config: %s is %lld; it must be 1 to %lld", key,
                       v, max);
    return LN_SUCCESS;
}

ln_status ln_config_validate(ln_context *ctx, const ln_model_config *cfg)
{
    if (!cfg)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "ln_config_validate: cfg is NULL");
    ln_status st;
    if ((st = check_range(ctx, "d_model", cfg->d_model, LN_CONFIG_MAX_WIDTH)) ||
        (st = check_range(ctx, "pos_hidden", cfg->pos_hidden, LN_CONFIG_MAX_WIDTH)) ||
        (st = check_range(ctx, "head_dim", cfg->head_dim, LN_CONFIG_MAX_WIDTH)) ||
        (st = check_range(ctx, "ffn_mult", cfg->ffn_mult, LN_CONFIG_MAX_FFN_MULT)) ||
        (st = check_range(ctx, "n_layers", cfg->n_layers, LN_CONFIG_MAX_LAYERS)) ||
        (st = check_range(ctx, "the number of scales", cfg->n_scales, LN_MAX_SCALES)))
        return st;
    for (int k = 0; k < cfg->n_scales; k++) {
        char key[32];
        snprintf(key, sizeof(key), "scales[%d]", k);
        if ((st = check_range(ctx, key, cfg->scales[k], LN_CONFIG_MAX_WIDTH)))
            return st;
        if (cfg->scales[k] % cfg->head_dim != 0)
            return ln_fail(ctx, LN_ERROR_BAD_CONFIG,
                           "ln_config: scales[%d] = %d is not divisible by head_dim %d", k,
                           cfg->scales[k], cfg->head_dim);
    }
    if (!isfinite(cfg->ln_eps) || !(cfg->ln_eps > 0.0f))
        return ln_fail(ctx, LN_ERROR_BAD_CONFIG, "ln_config: ln_eps is %g; it must be positive and "
                       "finite", (double)cfg->ln_eps);
    return LN_SUCCESS;
}

/* ------------------------------------------------------------------- JSON */

/* An optional positive integer key; absent keeps *out. */
static ln_status json_int_key(ln_context *ctx, json_t *root, const char *key, int *out)
{
    json_t *v = json_object_get(root, key);
    if (!v)
        return LN_SUCCESS;
    if (!json_is_integer(v))
        return ln_fail(ctx, LN_ERROR_BAD_CONFIG, "ln_config: \"%s\" must be an integer", key);
    json_int_t x = json_integer_value(v);
    if (x < 1 || x > INT_MAX)
        return ln_fail(ctx, LN_ERROR_BAD_CONFIG, "ln_config: \"%s\" is %lld; it must be positive",
                       key, (long long)x);
    *out = (int)x;
    return LN_SUCCESS;
}

static ln_status config_from_root(ln_context *ctx, json_t *root, ln_model_config *c)
{
    if (!json_is_object(root))
        return ln_fail(ctx, LN_ERROR_BAD_CONFIG, "ln_config: not a JSON object");
    ln_status st;
    if ((st = json_int_key(ctx, root, "d_model", &c->d_model)) ||
        (st = json_int_key(ctx, root, "pos_hidden", &c->pos_hidden)) ||
        (st = json_int_key(ctx, root, "head_dim", &c->head_dim)) ||
        (st = json_int_key(ctx, root, "ffn_mult", &c->ffn_mult)) ||
        (st = json_int_key(ctx, root, "n_layers", &c->n_layers)))
        return st;
    json_t *scales = json_object_get(root, "scales");
    if (scales) {
        size_t n = json_array_size(scales);
        if (!json_is_array(scales) || n < 1 || n > LN_MAX_SCALES)
            return ln_fail(ctx, LN_ERROR_BAD_CONFIG,
                           "ln_config: \"scales\" must be an array of 1 to %d integers",
                           LN_MAX_SCALES);
        for (size_t k = 0; k < n; k++) {
            json_t *s = json_array_get(scales, k);
            if (!json_is_integer(s) || json_integer_value(s) < 1 || json_integer_value(s) > INT_MAX)
                return ln_fail(ctx, LN_ERROR_BAD_CONFIG,
                               "ln_config: \"scales\"[%zu] is not a positive integer", k);
            c->scales[k] = (int)json_integer_value(s);
        }
        for (size_t k = n; k < LN_MAX_SCALES; k++)
            c->scales[k] = 0;
        c->n_scales = (int)n;
    }
    json_t *eps = json_object_get(root, "ln_eps");
    if (eps) {
        if (!json_is_number(eps))
            return ln_fail(ctx, LN_ERROR_BAD_CONFIG, "ln_config: \"ln_eps\" must be a number");
        c->ln_eps = (float)json_number_value(eps);
    }
    return LN_SUCCESS;
}

ln_status ln_config_from_json(ln_context *ctx, const char *json, ln_model_config *cfg)
{
    ln_clear_error(ctx);
    if (!json || !cfg)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "ln_config_from_json: NULL argument");
    json_error_t err;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return ln_fail(ctx, LN_ERROR_BAD_CONFIG, "ln_config: not valid JSON: %s (line %d, column %d)",
                       err.text, err.line, err.column);
    ln_model_config c;
    ln_config_default(&c);
    ln_status st = config_from_root(ctx, root, &c);
    json_decref(root);
    if (st == LN_SUCCESS)
        st = ln_config_validate(ctx, &c);
    if (st == LN_SUCCESS)
        *cfg = c;
    return st;
}

ln_status ln_config_to_json(ln_context *ctx, const ln_model_config *cfg, char *buf, size_t cap)
{
    ln_clear_error(ctx);
    if (!cfg || !buf)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "ln_config_to_json: NULL argument");
    ln_status st = ln_config_validate(ctx, cfg);
    if (st != LN_SUCCESS)
        return st;
    /* The fewest digits that read back as the same float: 1e-5f prints as
     * "1e-05", not "9.99999975e-06". */
    int digits = 9;
    for (int p = 1; p < 9; p++) {
        char tmp[32];
        snprintf(tmp, sizeof(tmp), "%.*g", p, (double)cfg->ln_eps);
        if ((float)strtod(tmp, NULL) == cfg->ln_eps) {
            digits = p;
            break;
        }
    }
    json_t *scales = json_array();
    for (int k = 0; scales && k < cfg->n_scales; k++)
        json_array_append_new(scales, json_integer(cfg->scales[k]));
    json_t *root = json_pack("{s:i, s:i, s:o, s:i, s:i, s:i, s:f}", "d_model", cfg->d_model,
                             "pos_hidden", cfg->pos_hidden, "scales", scales, "head_dim",
                             cfg->head_dim, "ffn_mult", cfg->ffn_mult, "n_layers", cfg->n_layers,
                             "ln_eps", (double)cfg->ln_eps);
    char *text = root ? json_dumps(root, JSON_SORT_KEYS | JSON_REAL_PRECISION(digits)) : NULL;
    json_decref(root);
    if (!text)
        return ln_fail(ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "ln_config_to_json: out of memory");
    size_t len = strlen(text);
    if (len + 1 > cap)
        st = ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT,
                     "ln_config_to_json: needs %zu bytes, the buffer has %zu", len + 1, cap);
    else
        memcpy(buf, text, len + 1);
    free(text);
    return st;
}

/* -------------------------------------------------------------- inference */

/* The tensor `name` with `ndim` dimensions, each 1 .. INT_MAX. */
static ln_status need(ln_context *ctx, const ln_tensor_file *file, const char *name, int ndim,
                      const ln_tensor **out)
{
    const ln_tensor *t = ln_tensor_file_find(file, name);
    if (!t)
        return ln_fail(ctx, LN_ERROR_BAD_FILE,
                       "weights: tensor '%s' is missing (needed to read the configuration off the "
                       "shapes)", name);
    char sbuf[256];
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] >= 1 && t->shape[i] <= INT_MAX;
    if (!ok)
        return ln_fail(ctx, LN_ERROR_SHAPE_MISMATCH,
                       "weights: tensor '%s' has shape %s; expected %d positive dimensions", name,
                       ln_shape_str(t->ndim, t->shape, sbuf, sizeof(sbuf)), ndim);
    *out = t;
    return LN_SUCCESS;
}

ln_status ln_config_infer(ln_context *ctx, const ln_tensor_file *file, ln_model_config *cfg)
{
    ln_clear_error(ctx);
    if (!file || !cfg)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "ln_config_infer: NULL argument");
    ln_model_config c;
    memset(&c, 0, sizeof(c));
    c.ln_eps = 1e-5f; /* not in the shapes; SPEC's default */
    const ln_tensor *t;
    char name[96];
    ln_status st = need(ctx, file, "pos.position_mlp.2.weight", 2, &t);
    if (st != LN_SUCCESS)
        return st;
    c.d_model = (int)t->shape[0];
    c.pos_hidden = (int)t->shape[1];

    /* Layers are numbered from 0 without gaps; one past the cap is enough
     * for validation to refuse. */
    while (c.n_layers <= LN_CONFIG_MAX_LAYERS) {
        snprintf(name, sizeof(name), "layers.%d.fusion.weight", c.n_layers);
        if (!ln_tensor_file_find(file, name))
            break;
        c.n_layers++;
    }
    if (c.n_layers == 0)
        return ln_fail(ctx, LN_ERROR_BAD_FILE,
                       "weights: tensor 'layers.0.fusion.weight' is missing (needed to read the "
                       "configuration off the shapes)");

    for (int k = 0;; k++) {
        snprintf(name, sizeof(name), "layers.0.projections.%d.weight", k);
        if (!ln_tensor_file_find(file, name)) {
            if (k == 0)
                return need(ctx, file, name, 2, &t); /* names it in the message */
            break;
        }
        if (k == LN_MAX_SCALES)
            return ln_fail(ctx, LN_ERROR_BAD_CONFIG,
                           "weights: more than %d multi-scale branches ('%s' exists)",
                           LN_MAX_SCALES, name);
        if ((st = need(ctx, file, name, 2, &t)))
            return st;
        int w = (int)t->shape[0];
        c.scales[k] = w;
        c.n_scales = k + 1;

        snprintf(name, sizeof(name), "layers.0.processors.%d.attn.temperature", k);
        if ((st = need(ctx, file, name, 1, &t)))
            return st;
        int heads = (int)t->shape[0];
        if (w % heads != 0)
            return ln_fail(ctx, LN_ERROR_BAD_CONFIG,
                           "weights: branch %d has width %d, not a multiple of its %d heads "
                           "('%s')", k, w, heads, name);
        if (k == 0)
            c.head_dim = w / heads;
        else if (w / heads != c.head_dim)
            return ln_fail(ctx, LN_ERROR_BAD_CONFIG,
                           "weights: branch 0 has head_dim %d but branch %d has %d (%d / %d heads)",
                           c.head_dim, k, w / heads, w, heads);
    }

    if ((st = need(ctx, file, "layers.0.processors.0.ffn.0.weight", 2, &t)))
        return st;
    if (t->shape[0] % c.scales[0] != 0)
        return ln_fail(ctx, LN_ERROR_BAD_CONFIG,
                       "weights: 'layers.0.processors.0.ffn.0.weight' has %lld rows, not a multiple "
                       "of the branch width %d", (long long)t->shape[0], c.scales[0]);
    c.ffn_mult = (int)(t->shape[0] / c.scales[0]);

    if ((st = ln_config_validate(ctx, &c)))
        return st;
    *cfg = c;
    return LN_SUCCESS;
}

/* -------------------------------------------------------------- resolving */

/* A contradiction between metadata and shapes, or LN_SUCCESS. */
static ln_status compare(ln_context *ctx, const ln_model_config *meta, const ln_model_config *inf)
{
    static const struct {
        const char *key;
        size_t offset;
    } keys[] = {
        {"d_model", offsetof(ln_model_config, d_model)},
        {"pos_hidden", offsetof(ln_model_config, pos_hidden)},
        {"head_dim", offsetof(ln_model_config, head_dim)},
        {"ffn_mult", offsetof(ln_model_config, ffn_mult)},
        {"n_layers", offsetof(ln_model_config, n_layers)},
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        int a = *(const int *)((const char *)meta + keys[i].offset);
        int b = *(const int *)((const char *)inf + keys[i].offset);
        if (a != b)
            return ln_fail(ctx, LN_ERROR_BAD_CONFIG,
                           "weights: metadata ln_config says %s %d but the tensor shapes say %d",
                           keys[i].key, a, b);
    }
    bool same = meta->n_scales == inf->n_scales;
    for (int k = 0; same && k < meta->n_scales; k++)
        same = meta->scales[k] == inf->scales[k];
    if (!same) {
        char a[256], b[256];
        return ln_fail(ctx, LN_ERROR_BAD_CONFIG,
                       "weights: metadata ln_config says scales %s but the tensor shapes say %s",
                       scales_str(meta, a, sizeof(a)), scales_str(inf, b, sizeof(b)));
    }
    return LN_SUCCESS;
}

ln_status ln_config_resolve(ln_context *ctx, const ln_tensor_file *file, ln_model_config *cfg)
{
    ln_clear_error(ctx);
    if (!file || !cfg)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "ln_config_resolve: NULL argument");
    const char *json = ln_tensor_file_metadata(file, LN_CONFIG_METADATA_KEY);
    ln_model_config meta, inf;
    if (json) {
        ln_status st = ln_config_from_json(ctx, json, &meta);
        if (st != LN_SUCCESS)
            return st;
    }
    ln_status st = ln_config_infer(ctx, file, &inf);
    if (!json) {
        if (st == LN_SUCCESS)
            *cfg = inf;
        return st;
    }
    if (st != LN_SUCCESS) {
        /* The shapes cannot say: the full check against the metadata names
         * every missing or misshapen tensor, which is the better message.
         * (Should it pass, the file is exactly what the metadata says.) */
        st = ln_config_check_tensors(ctx, file, &meta);
        if (st == LN_SUCCESS)
            *cfg = meta;
        return st;
    }
    if ((st = compare(ctx, &meta, &inf)))
        return st;
    *cfg = meta; /* the shapes agree; ln_eps comes only from here */
    return LN_SUCCESS;
}

/* ------------------------------------------------------------ tensor check */

#define CHECK_LIST_MAX 4

typedef struct checker {
    const ln_tensor_file *file;
    unsigned char *seen; /* per file tensor */
    size_t missing, wrong_shape, wrong_dtype;
    char missing_list[640], shape_list[1280], dtype_list[640];
} checker;

static void append(char *list, size_t cap, size_t nth, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Appends the nth (1-based) offender to a list if it is among the first
 * CHECK_LIST_MAX. */
static void append(char *list, size_t cap, size_t nth, const char *fmt, ...)
{
    if (nth > CHECK_LIST_MAX)
        return;
    size_t used = strlen(list);
    if (used + 3 >= cap)
        return;
    if (nth > 1)
        used += (size_t)snprintf(list + used, cap - used, ", ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(list + used, cap - used, fmt, ap);
    va_end(ap);
}

static void expect(checker *c, const char *name, int ndim, int64_t d0, int64_t d1)
{
    const ln_tensor *t = ln_tensor_file_find(c->file, name);
    if (!t) {
        append(c->missing_list, sizeof(c->missing_list), ++c->missing, "%s", name);
        return;
    }
    c->seen[t - c->file->tensors] = 1;
    int64_t want[2] = {d0, d1};
    bool ok = t->ndim == ndim && t->shape[0] == d0 && (ndim < 2 || t->shape[1] == d1);
    if (!ok) {
        char got[256], exp[64];
        append(c->shape_list, sizeof(c->shape_list), ++c->wrong_shape, "%s %s (expected %s)", name,
               ln_shape_str(t->ndim, t->shape, got, sizeof(got)),
               ln_shape_str(ndim, want, exp, sizeof(exp)));
    }
    if (t->dtype != LN_DT_F32)
        append(c->dtype_list, sizeof(c->dtype_list), ++c->wrong_dtype, "%s (%s)", name,
               ln_dtype_name(t->dtype));
}

/* A weight [out, in] and its bias [out]. */
static void expect_linear(checker *c, const char *prefix, int64_t out, int64_t in)
{
    char name[128];
    snprintf(name, sizeof(name), "%s.weight", prefix);
    expect(c, name, 2, out, in);
    snprintf(name, sizeof(name), "%s.bias", prefix);
    expect(c, name, 1, out, 0);
}

/* A LayerNorm's weight and bias, both [w]. */
static void expect_norm(checker *c, const char *prefix, int64_t w)
{
    char name[128];
    snprintf(name, sizeof(name), "%s.weight", prefix);
    expect(c, name, 1, w, 0);
    snprintf(name, sizeof(name), "%s.bias", prefix);
    expect(c, name, 1, w, 0);
}

/* Every tensor SPEC.md "Weights file" names for cfg, in state_dict order. */
static void expect_all(checker *c, const ln_model_config *cfg)
{
    static const char *const attn[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
    int64_t d = cfg->d_model, sum = 0;
    for (int k = 0; k < cfg->n_scales; k++)
        sum += cfg->scales[k];
    expect_linear(c, "pos.position_mlp.0", cfg->pos_hidden, 1);
    expect_linear(c, "pos.position_mlp.2", d, cfg->pos_hidden);
    char p[96], q[128];
    for (int l = 0; l < cfg->n_layers; l++) {
        for (int k = 0; k < cfg->n_scales; k++) {
            int64_t w = cfg->scales[k], f = (int64_t)cfg->ffn_mult * w;
            snprintf(p, sizeof(p), "layers.%d.projections.%d", l, k);
            expect_linear(c, p, w, d);
            snprintf(p, sizeof(p), "layers.%d.processors.%d", l, k);
            snprintf(q, sizeof(q), "%s.ln1", p);
            expect_norm(c, q, w);
            for (int a = 0; a < 4; a++) {
                snprintf(q, sizeof(q), "%s.attn.%s", p, attn[a]);
                expect_linear(c, q, w, w);
            }
            snprintf(q, sizeof(q), "%s.attn.temperature", p);
            expect(c, q, 1, w / cfg->head_dim, 0);
            snprintf(q, sizeof(q), "%s.ln2", p);
            expect_norm(c, q, w);
            snprintf(q, sizeof(q), "%s.ffn.0", p);
            expect_linear(c, q, f, w);
            snprintf(q, sizeof(q), "%s.ffn.2", p);
            expect_linear(c, q, w, f);
        }
        snprintf(p, sizeof(p), "layers.%d.fusion", l);
        expect_linear(c, p, d, sum);
    }
    expect_norm(c, "final_norm", d);
}

/* ", 3 missing: a, b, c" style section of the final message. */
static void report(char *msg, size_t cap, const char *what, size_t n, const char *list)
{
    if (!n)
        return;
    size_t used = strlen(msg);
    snprintf(msg + used, cap - used, "%s%zu %s: %s%s", used ? "; " : "", n, what, list,
             n > CHECK_LIST_MAX ? ", ..." : "");
}

ln_status ln_config_check_tensors(ln_context *ctx, const ln_tensor_file *file,
                                  const ln_model_config *cfg)
{
    ln_clear_error(ctx);
    if (!file || !cfg)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "ln_config_check_tensors: NULL argument");
    ln_status st = ln_config_validate(ctx, cfg);
    if (st != LN_SUCCESS)
        return st;
    checker *c = calloc(1, sizeof(*c));
    unsigned char *seen = calloc(file->count ? file->count : 1, 1);
    if (!c || !seen) {
        free(c);
        free(seen);
        return ln_fail(ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "ln_config_check_tensors: out of memory");
    }
    c->file = file;
    c->seen = seen;
    expect_all(c, cfg);

    size_t unexpected = 0;
    char unexpected_list[640] = "";
    for (size_t i = 0; i < file->count; i++)
        if (!seen[i])
            append(unexpected_list, sizeof(unexpected_list), ++unexpected, "%.200s",
                   file->tensors[i].name);

    if (c->missing || unexpected || c->wrong_dtype || c->wrong_shape) {
        char msg[4096] = "", sc[256];
        report(msg, sizeof(msg), "missing", c->missing, c->missing_list);
        report(msg, sizeof(msg), "unexpected", unexpected, unexpected_list);
        report(msg, sizeof(msg), "not F32", c->wrong_dtype, c->dtype_list);
        report(msg, sizeof(msg), "with the wrong shape", c->wrong_shape, c->shape_list);
        st = ln_fail(ctx,
                     c->missing || unexpected || c->wrong_dtype ? LN_ERROR_BAD_FILE
                                                                : LN_ERROR_SHAPE_MISMATCH,
                     "weights do not match the configuration (d_model %d, pos_hidden %d, scales "
                     "%s, head_dim %d, ffn_mult %d, n_layers %d): %s",
                     cfg->d_model, cfg->pos_hidden, scales_str(cfg, sc, sizeof(sc)), cfg->head_dim,
                     cfg->ffn_mult, cfg->n_layers, msg);
    }
    free(c);
    free(seen);
    return st;
}
