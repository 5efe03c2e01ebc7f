/*
 * model.c: the LN encoder on the device: weights uploaded once (q, k, v and
 * every branch projection concatenated so each is one GEMM; Linear weights
 * transposed, the layout linear.c says is cheapest for CLBlast), a workspace
 * for a chunk of whole sequences (as many as S fits the S budget: device
 * memory scales with the chunk, not B) allocated once and reused, and the
 * forward pass of SPEC.md chunk by chunk with its fusions: S computed once
 * per chunk (or recomputed inside attention), each branch working in its
 * column slice of the buffer the fusion GEMM reads, every branch's
 * attention in one launch on GPUs, residual adds riding on
 * GEMM epilogues.
 */
#include "internal.h"
#include "config.h"
#include "tensor_io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct branch_weights {
    size_t width, heads, ffn_width;
    cl_mem ln1_g, ln1_b, qkv_w, qkv_b, out_w, out_b, temperature;
    cl_mem ln2_g, ln2_b, ffn1_w, ffn1_b, ffn2_w, ffn2_b;
} branch_weights;

typedef struct layer_weights {
    cl_mem proj_w, proj_b; /* all branch projections: W^T [d, sum(scales)] */
    cl_mem fusion_w, fusion_b;
    branch_weights branch[LN_MAX_SCALES];
    size_t column[LN_MAX_SCALES]; /* branch k's first column in zcat */
    /* The branches' attention as ln_semantic_attention_layer takes it:
     * widths, temperatures (each branch's and all concatenated). */
    size_t width[LN_MAX_SCALES];
    cl_mem temperature[LN_MAX_SCALES]; /* the branches' own (not owned here) */
    cl_mem all_temperature;
    /* Every branch's LayerNorm weights, out_proj biases and q, k, v biases
     * concatenated in branch order, for the launches that take all
     * branches at once (attention_half, multiscale). */
    cl_mem all_ln1_g, all_ln1_b, all_ln2_g, all_ln2_b, all_out_b, all_qkv_b, all_ffn1_b;
} layer_weights;

/* Device buffers for one chunk of G sequences of n rows (G = B when the
 * whole batch fits; see chunk_sequences); sizes in ensure_workspace.
 * Where one launch runs every branch's attention (`together`), a, qkv and
 * f hold every branch's block ([G n, sum], [G n, 3 sum] and
 * [G n, ffn_mult sum] floats, a and qkv as ln_attention_layer lays them
 * out); else one branch's ([G n, w], [G n, 3 w] and [G n, ffn_mult w] of
 * the widest). */
typedef struct workspace {
    size_t group, n;            /* G and n */
    ln_attention_mode mode;     /* resolved for (G, n) */
    bool together;              /* ln_attention_layer_in_one_launch for (G, n, mode) */
    cl_mem positions, lengths;  /* a chunk's inputs, [G n] and [G]: made on first use */
    cl_mem unit, s, h, zcat, a, qkv, f;
} workspace;

struct ln_model {
    ln_context *ctx;
    ln_model_config cfg;
    size_t d, sum_scales, max_width, max_ffn;
    cl_mem pos_w1, pos_b1, pos_w2t, pos_b2, final_g, final_b;
    cl_mem head_table; /* ln_attention_head_table of the scales */
    layer_weights *layers;
    workspace ws;
};

/* ------------------------------------------------------------ weights */

/* The tensors `names` concatenated along their first dimension, uploaded
 * as they are or, for Linear weights ([out_i, in] each, validated against
 * the config before this runs), transposed: [in, sum out_i], the layout
 * ln_linear_wt multiplies by without a transpose pass (linear.c). */
static ln_status upload_concat(ln_model *m, const ln_tensor_file *file, const char **names,
                               int count, bool transpose, cl_mem *out)
{
    size_t total = 0;
    const ln_tensor *first = ln_tensor_file_find(file, names[0]);
    for (int i = 0; i < count; i++) {
        const ln_tensor *t = ln_tensor_file_find(file, names[i]);
        if (!t)
            return ln_fail(m->ctx, LN_ERROR_BAD_FILE, "weights: tensor %s is missing", names[i]);
        /* A Linear weight's shape; the config check already stops any other. */
        if (transpose && (t->ndim != 2 || t->shape[1] != first->shape[1]))
            return ln_fail(m->ctx, LN_ERROR_BAD_FILE,
                           "weights: tensor %s is not a [out, %lld] Linear weight", names[i],
                           (long long)first->shape[1]);
        total += t->count;
    }
    float *host = malloc(total * sizeof(float) + 1);
    if (!host)
        return ln_fail(m->ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "weights: out of host memory");
    size_t at = 0;
    for (int i = 0; i < count; i++) {
        const ln_tensor *t = ln_tensor_file_find(file, names[i]);
        if (!transpose) {
            memcpy(host + at, t->data, t->count * sizeof(float));
            at += t->count;
            continue;
        }
        /* at counts rows of W here: W[at + r][c] goes to W^T[c][at + r] */
        const size_t rows = (size_t)t->shape[0], in = (size_t)t->shape[1], out_total = total / in;
        const float *w = t->data;
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < in; c++)
                host[c * out_total + at + r] = w[r * in + c];
        at += rows;
    }
    ln_status st = ln_buffer_from_host(m->ctx, host, total * sizeof(float), out, names[0]);
    if (!st) /* the upload is asynchronous; host must outlive it */
        st = ln_context_finish(m->ctx);
    free(host);
    return st;
}

static ln_status upload(ln_model *m, const ln_tensor_file *file, const char *name, cl_mem *out)
{
    return upload_concat(m, file, &name, 1, false, out);
}

static const ln_tensor *find_tensor(const ln_tensor_file *file, const char *name)
{
    const ln_tensor *t = ln_tensor_file_find(file, name);
    return t && t->ndim >= 1 ? t : NULL;
}

/* Layer l's fusion bias as the forward adds it: f + F [b4_1 .. b4_K], the
 * FFN output bias of every branch carried through the fusion GEMM. After
 * its FFN a branch's slice of zcat is read by that GEMM alone, so
 * F (z + b4) + f = F z + (f + F b4): the forward adds the FFN biases with
 * f and not in a launch per branch (multiscale). Summed in double, so it
 * differs from adding them one by one by float rounding only. */
static ln_status upload_fusion_bias(ln_model *m, const ln_tensor_file *file, int l, cl_mem *out)
{
    const size_t d = m->d, sum = m->sum_scales;
    char name[96];
    snprintf(name, sizeof(name), "layers.%d.fusion.weight", l);
    const ln_tensor *fw = find_tensor(file, name);
    snprintf(name, sizeof(name), "layers.%d.fusion.bias", l);
    const ln_tensor *fb = find_tensor(file, name);
    if (!fw || !fb || fw->count != d * sum || fb->count != d)
        return ln_fail(m->ctx, LN_ERROR_BAD_FILE,
                       "weights: layer %d's fusion weight or bias is missing or misshapen", l);
    double *b4 = malloc(sum * sizeof(double));
    float *host = malloc(d * sizeof(float));
    ln_status st = LN_SUCCESS;
    if (!b4 || !host)
        st = ln_fail(m->ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "weights: out of host memory");
    for (int k = 0, column = 0; k < m->cfg.n_scales && !st; column += m->cfg.scales[k], k++) {
        snprintf(name, sizeof(name), "layers.%d.processors.%d.ffn.2.bias", l, k);
        const ln_tensor *b = find_tensor(file, name);
        if (!b || b->count != (size_t)m->cfg.scales[k])
            st = ln_fail(m->ctx, LN_ERROR_BAD_FILE, "weights: tensor %s is missing or misshapen",
                         name);
        for (size_t i = 0; !st && i < b->count; i++)
            b4[(size_t)column + i] = ((const float *)b->data)[i];
    }
    const float *f = fb->data, *F = fw->data; /* F32, as the config check demands */
    for (size_t j = 0; !st && j < d; j++) {
        double acc = f[j];
        for (size_t i = 0; i < sum; i++)
            acc += (double)F[j * sum + i] * b4[i];
        host[j] = (float)acc;
    }
    if (!st && !(st = ln_buffer_from_host(m->ctx, host, d * sizeof(float), out, name)))
        st = ln_context_finish(m->ctx); /* the upload is asynchronous */
    free(b4);
    free(host);
    return st;
}

static ln_status upload_layer(ln_model *m, const ln_tensor_file *file, int l)
{
    layer_weights *L = &m->layers[l];
    char names[LN_MAX_SCALES][96];
    const char *ptrs[LN_MAX_SCALES];
    ln_status st;
    for (int k = 0; k < m->cfg.n_scales; k++) {
        snprintf(names[k], sizeof(names[k]), "layers.%d.projections.%d.weight", l, k);
        ptrs[k] = names[k];
    }
    if ((st = upload_concat(m, file, ptrs, m->cfg.n_scales, true, &L->proj_w)))
        return st;
    for (int k = 0; k < m->cfg.n_scales; k++)
        snprintf(names[k], sizeof(names[k]), "layers.%d.projections.%d.bias", l, k);
    if ((st = upload_concat(m, file, ptrs, m->cfg.n_scales, false, &L->proj_b)))
        return st;
    char n1[96];
    snprintf(n1, sizeof(n1), "layers.%d.fusion.weight", l);
    if ((st = upload_concat(m, file, (const char *[]){n1}, 1, true, &L->fusion_w)) ||
        (st = upload_fusion_bias(m, file, l, &L->fusion_b)))
        return st;
    size_t column = 0;
    for (int k = 0; k < m->cfg.n_scales; k++) {
        branch_weights *B = &L->branch[k];
        B->width = (size_t)m->cfg.scales[k];
        B->heads = B->width / (size_t)m->cfg.head_dim;
        B->ffn_width = B->width * (size_t)m->cfg.ffn_mult;
        L->column[k] = column;
        column += B->width;
        char p[64], a[128], b[128], c[128];
        snprintf(p, sizeof(p), "layers.%d.processors.%d.", l, k);
        struct {
            const char *suffix;
            cl_mem *dst;
            bool linear_weight;
        } single[] = {
            {"ln1.weight", &B->ln1_g, false},
            {"ln1.bias", &B->ln1_b, false},
            {"attn.out_proj.weight", &B->out_w, true},
            {"attn.out_proj.bias", &B->out_b, false},
            {"attn.temperature", &B->temperature, false},
            {"ln2.weight", &B->ln2_g, false},
            {"ln2.bias", &B->ln2_b, false},
            {"ffn.0.weight", &B->ffn1_w, true},
            {"ffn.0.bias", &B->ffn1_b, false},
            {"ffn.2.weight", &B->ffn2_w, true},
            {"ffn.2.bias", &B->ffn2_b, false},
        };
        for (size_t i = 0; i < sizeof(single) / sizeof(single[0]); i++) {
            snprintf(a, sizeof(a), "%s%s", p, single[i].suffix);
            if ((st = upload_concat(m, file, (const char *[]){a}, 1, single[i].linear_weight,
                                    single[i].dst)))
                return st;
        }
        L->width[k] = B->width;
        L->temperature[k] = B->temperature;
        /* q, k and v of a branch are one GEMM against W^T [w, 3w]. */
        for (int bias = 0; bias < 2; bias++) {
            const char *kind = bias ? "bias" : "weight";
            snprintf(a, sizeof(a), "%sattn.q_proj.%s", p, kind);
            snprintf(b, sizeof(b), "%sattn.k_proj.%s", p, kind);
            snprintf(c, sizeof(c), "%sattn.v_proj.%s", p, kind);
            const char *qkv[3] = {a, b, c};
            if ((st = upload_concat(m, file, qkv, 3, !bias, bias ? &B->qkv_b : &B->qkv_w)))
                return st;
        }
    }
    const struct {
        const char *suffix;
        cl_mem *dst;
    } all[] = {
        {"attn.temperature", &L->all_temperature}, {"ln1.weight", &L->all_ln1_g},
        {"ln1.bias", &L->all_ln1_b},               {"ln2.weight", &L->all_ln2_g},
        {"ln2.bias", &L->all_ln2_b},               {"attn.out_proj.bias", &L->all_out_b},
        {"ffn.0.bias", &L->all_ffn1_b},
    };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        for (int k = 0; k < m->cfg.n_scales; k++)
            snprintf(names[k], sizeof(names[k]), "layers.%d.processors.%d.%s", l, k,
                     all[i].suffix);
        if ((st = upload_concat(m, file, ptrs, m->cfg.n_scales, false, all[i].dst)))
            return st;
    }
    /* q, k, v biases branch after branch: [b_q1 b_k1 b_v1 b_q2 ..], as the
     * qkv workspace stacks the branches' [rows, 3 w_k] blocks. */
    char qkv_names[3 * LN_MAX_SCALES][96];
    const char *qkv_ptrs[3 * LN_MAX_SCALES];
    static const char *const proj[3] = {"q_proj", "k_proj", "v_proj"};
    for (int k = 0; k < m->cfg.n_scales; k++)
        for (int j = 0; j < 3; j++) {
            snprintf(qkv_names[3 * k + j], sizeof(qkv_names[0]),
                     "layers.%d.processors.%d.attn.%s.bias", l, k, proj[j]);
            qkv_ptrs[3 * k + j] = qkv_names[3 * k + j];
        }
    return upload_concat(m, file, qkv_ptrs, 3 * m->cfg.n_scales, false, &L->all_qkv_b);
}

static void release_weights(ln_model *m)
{
    ln_context *ctx = m->ctx;
    cl_mem top[] = {m->pos_w1,  m->pos_b1,  m->pos_w2t,      m->pos_b2,
                    m->final_g, m->final_b, m->head_table};
    for (size_t i = 0; i < sizeof(top) / sizeof(top[0]); i++)
        ln_buffer_release(ctx, top[i]);
    if (!m->layers)
        return;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        layer_weights *L = &m->layers[l];
        ln_buffer_release(ctx, L->proj_w);
        ln_buffer_release(ctx, L->proj_b);
        ln_buffer_release(ctx, L->fusion_w);
        ln_buffer_release(ctx, L->fusion_b);
        cl_mem all[] = {L->all_temperature, L->all_ln1_g, L->all_ln1_b, L->all_ln2_g,
                        L->all_ln2_b,       L->all_out_b, L->all_qkv_b, L->all_ffn1_b};
        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
            ln_buffer_release(ctx, all[i]);
        for (int k = 0; k < m->cfg.n_scales; k++) {
            branch_weights *B = &L->branch[k];
            cl_mem all[] = {B->ln1_g, B->ln1_b, B->qkv_w, B->qkv_b, B->out_w, B->out_b,
                            B->temperature, B->ln2_g, B->ln2_b, B->ffn1_w, B->ffn1_b,
                            B->ffn2_w, B->ffn2_b};
            for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
                ln_buffer_release(ctx, all[i]);
        }
    }
    free(m->layers);
}

static void release_workspace(ln_model *m)
{
    workspace *w = &m->ws;
    cl_mem all[] = {w->positions, w->lengths, w->unit, w->s, w->h, w->zcat, w->a, w->qkv, w->f};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        ln_buffer_release(m->ctx, all[i]);
    memset(w, 0, sizeof(*w));
}

void ln_model_free(ln_model *model)
{
    if (!model)
        return;
    if (model->ctx) {
        clFinish(model->ctx->queue);
        release_workspace(model);
        release_weights(model);
    }
    free(model);
}

/* Builds a model from a validated tensor set. */
static ln_status model_from_tensors(ln_context *ctx, const ln_tensor_file *file,
                                    ln_model **out)
{
    ln_model_config cfg;
    ln_status st;
    if ((st = ln_config_resolve(ctx, file, &cfg)) || (st = ln_config_check_tensors(ctx, file, &cfg)))
        return st;
    ln_model *m = calloc(1, sizeof(*m));
    if (!m)
        return ln_fail(ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "ln_model: out of host memory");
    m->ctx = ctx;
    m->cfg = cfg;
    m->d = (size_t)cfg.d_model;
    for (int k = 0; k < cfg.n_scales; k++) {
        size_t w = (size_t)cfg.scales[k];
        m->sum_scales += w;
        if (w > m->max_width)
            m->max_width = w;
    }
    m->max_ffn = m->max_width * (size_t)cfg.ffn_mult;
    m->layers = calloc((size_t)cfg.n_layers, sizeof(layer_weights));
    if (!m->layers) {
        free(m);
        return ln_fail(ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "ln_model: out of host memory");
    }
    if (!(st = upload(m, file, "pos.position_mlp.0.weight", &m->pos_w1)) &&
        !(st = upload(m, file, "pos.position_mlp.0.bias", &m->pos_b1)) &&
        !(st = upload_concat(m, file, (const char *[]){"pos.position_mlp.2.weight"}, 1, true,
                             &m->pos_w2t)) &&
        !(st = upload(m, file, "pos.position_mlp.2.bias", &m->pos_b2)) &&
        !(st = upload(m, file, "final_norm.weight", &m->final_g)) &&
        !(st = upload(m, file, "final_norm.bias", &m->final_b)))
        for (int l = 0; l < cfg.n_layers && !st; l++)
            st = upload_layer(m, file, l);
    if (!st)
        st = ln_attention_head_table(ctx, (size_t)cfg.n_scales, m->layers[0].width,
                                       (size_t)cfg.head_dim, &m->head_table);
    if (st) {
        char keep[LN_ERRMSG_MAX];
        memcpy(keep, ctx->error, sizeof(keep));
        ln_model_free(m);
        memcpy(ctx->error, keep, sizeof(keep));
        return st;
    }
    *out = m;
    return LN_SUCCESS;
}

ln_status ln_model_load(ln_context *ctx, const char *path, ln_model **out)
{
    LN_CHECK_CTX(ctx);
    if (!path || !out)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "ln_model_load: path or out is NULL");
    *out = NULL;
    ln_tensor_file *file = NULL;
    ln_status st = ln_safetensors_read(ctx, path, &file);
    if (!st) {
        st = model_from_tensors(ctx, file, out);
        if (st && !strstr(ctx->error, path)) {
            char keep[LN_ERRMSG_MAX];
            memcpy(keep, ctx->error, sizeof(keep));
            ln_fail(ctx, st, "%s: %s", path, keep);
        }
    }
    ln_tensor_file_free(file);
    return st;
}

/* splitmix64: a small, well-mixed generator for the seeded weights. */
static double next_uniform(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

/* Adds Linear(in, out) weights named prefix.weight / prefix.bias, drawn as
 * PyTorch's default init: U(-1/sqrt(in), 1/sqrt(in)) for both. */
static ln_status add_linear(ln_context *ctx, ln_tensor_file *f, const char *prefix, size_t out,
                            size_t in, uint64_t *rng)
{
    float *buf = malloc(out * in * sizeof(float));
    if (!buf)
        return ln_fail(ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "seeded model: out of host memory");
    double bound = 1.0 / sqrt((double)in);
    char name[128];
    int64_t shape[2] = {(int64_t)out, (int64_t)in};
    for (size_t i = 0; i < out * in; i++)
        buf[i] = (float)((2.0 * next_uniform(rng) - 1.0) * bound);
    snprintf(name, sizeof(name), "%s.weight", prefix);
    ln_status st = ln_tensor_file_add(ctx, f, name, LN_DT_F32, 2, shape, buf);
    for (size_t i = 0; i < out && !st; i++)
        buf[i] = (float)((2.0 * next_uniform(rng) - 1.0) * bound);
    snprintf(name, sizeof(name), "%s.bias", prefix);
    if (!st)
        st = ln_tensor_file_add(ctx, f, name, LN_DT_F32, 1, shape, buf);
    free(buf);
    return st;
}

static ln_status add_constant(ln_context *ctx, ln_tensor_file *f, const char *name, size_t count,
                              float value)
{
    float *buf = malloc(count * sizeof(float));
    if (!buf)
        return ln_fail(ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "seeded model: out of host memory");
    for (size_t i = 0; i < count; i++)
        buf[i] = value;
    int64_t shape[1] = {(int64_t)count};
    ln_status st = ln_tensor_file_add(ctx, f, name, LN_DT_F32, 1, shape, buf);
    free(buf);
    return st;
}

static ln_status add_layernorm(ln_context *ctx, ln_tensor_file *f, const char *prefix, size_t w)
{
    char a[128], b[128];
    snprintf(a, sizeof(a), "%s.weight", prefix);
    snprintf(b, sizeof(b), "%s.bias", prefix);
    ln_status st = add_constant(ctx, f, a, w, 1.0f);
    return st ? st : add_constant(ctx, f, b, w, 0.0f);
}

static ln_status seeded_tensors(ln_context *ctx, const ln_model_config *c, uint64_t seed,
                                ln_tensor_file *f)
{
    uint64_t rng = seed;
    size_t d = (size_t)c->d_model, sum = 0;
    ln_status st;
    if ((st = add_linear(ctx, f, "pos.position_mlp.0", (size_t)c->pos_hidden, 1, &rng)) ||
        (st = add_linear(ctx, f, "pos.position_mlp.2", d, (size_t)c->pos_hidden, &rng)))
        return st;
    for (int k = 0; k < c->n_scales; k++)
        sum += (size_t)c->scales[k];
    for (int l = 0; l < c->n_layers; l++) {
        char p[128];
        for (int k = 0; k < c->n_scales; k++) {
            size_t w = (size_t)c->scales[k], ffn = w * (size_t)c->ffn_mult;
            snprintf(p, sizeof(p), "layers.%d.projections.%d", l, k);
            if ((st = add_linear(ctx, f, p, w, d, &rng)))
                return st;
            static const char *attn[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
            for (int i = 0; i < 4; i++) {
                snprintf(p, sizeof(p), "layers.%d.processors.%d.attn.%s", l, k, attn[i]);
                if ((st = add_linear(ctx, f, p, w, w, &rng)))
                    return st;
            }
            snprintf(p, sizeof(p), "layers.%d.processors.%d.attn.temperature", l, k);
            if ((st = add_constant(ctx, f, p, w / (size_t)c->head_dim, 1.0f)))
                return st;
            snprintf(p, sizeof(p), "layers.%d.processors.%d.ln1", l, k);
            if ((st = add_layernorm(ctx, f, p, w)))
                return st;
            snprintf(p, sizeof(p), "layers.%d.processors.%d.ln2", l, k);
            if ((st = add_layernorm(ctx, f, p, w)))
                return st;
            snprintf(p, sizeof(p), "layers.%d.processors.%d.ffn.0", l, k);
            if ((st = add_linear(ctx, f, p, ffn, w, &rng)))
                return st;
            snprintf(p, sizeof(p), "layers.%d.processors.%d.ffn.2", l, k);
            if ((st = add_linear(ctx, f, p, w, ffn, &rng)))
                return st;
        }
        snprintf(p, sizeof(p), "layers.%d.fusion", l);
        if ((st = add_linear(ctx, f, p, d, sum, &rng)))
            return st;
    }
    return add_layernorm(ctx, f, "final_norm", d);
}

ln_status ln_model_create_seeded(ln_context *ctx, const char *config_json, uint64_t seed,
                                 ln_model **out)
{
    LN_CHECK_CTX(ctx);
    if (!out)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "ln_model_create_seeded: out is NULL");
    *out = NULL;
    ln_model_config cfg;
    ln_status st;
    if (config_json)
        st = ln_config_from_json(ctx, config_json, &cfg);
    else {
        ln_config_default(&cfg);
        st = ln_config_validate(ctx, &cfg);
    }
    if (st)
        return st;
    ln_tensor_file *f = NULL;
    if ((st = ln_tensor_file_create(ctx, &f)))
        return st;
    char json[1024];
    if (!(st = seeded_tensors(ctx, &cfg, seed, f)) &&
        !(st = ln_config_to_json(ctx, &cfg, json, sizeof(json))) &&
        !(st = ln_tensor_file_set_metadata(ctx, f, LN_CONFIG_METADATA_KEY, json)))
        st = model_from_tensors(ctx, f, out);
    ln_tensor_file_free(f);
    return st;
}

int ln_model_config_json(const ln_model *model, char *buf, size_t cap)
{
    if (!model || !buf)
        return -1;
    if (ln_config_to_json(NULL, &model->cfg, buf, cap) != LN_SUCCESS)
        return -1;
    return (int)strlen(buf);
}

size_t ln_model_d_model(const ln_model *model)
{
    return model ? model->d : 0;
}

/* ---------------------------------------------------------- workspace */

/* Sequences per chunk: the largest G in [1, B] whose S (G n^2 floats) fits
 * the context's S budget, the budget ln_attention_resolve_mode uses, and
 * whose G n rows fit the chunk's row cap (src/params.c says why).
 * Attention never looks across sequences, so the batch can run G whole
 * sequences at a time: S and every per-row buffer of the workspace then
 * scale with G, not B, while each GEMM still sees G n rows (and a batch
 * that fits runs whole, as one chunk). When not even one sequence's S fits
 * the budget, G = 1 and ln_attention_resolve_mode(ctx, 1, n) decides
 * whether that one S is held or its tiles recomputed (then no S buffer);
 * a sequence longer than the row cap also runs alone. */
static size_t chunk_sequences(const ln_context *ctx, size_t batch, size_t n)
{
    uint64_t per_sequence = (uint64_t)n * (uint64_t)n * sizeof(float); /* n <= 2^20 */
    uint64_t g = ctx->params.attn_s_budget_bytes / per_sequence;
    const uint64_t by_rows = ctx->params.chunk_rows / n;
    if (by_rows < g)
        g = by_rows;
    return g < 1 ? 1 : g >= batch ? batch : (size_t)g;
}

size_t ln_model_chunk_sequences(const ln_context *ctx, size_t batch, size_t n)
{
    return chunk_sequences(ctx, batch, n);
}

/* The workspace for chunks of `group` sequences of n rows (batch only
 * names the call in messages). Kept while G, n and the attention mode for
 * (G, n) stay the same, so repeated calls allocate nothing. */
static ln_status ensure_workspace(ln_model *m, size_t batch, size_t n, size_t group)
{
    workspace *w = &m->ws;
    ln_context *ctx = m->ctx;
    ln_attention_mode mode = ln_attention_resolve_mode(ctx, group, n);
    const bool together =
        ln_attention_layer_in_one_launch(ctx, group, n, (size_t)m->cfg.head_dim, mode);
    if (w->h && w->group == group && w->n == n && w->mode == mode && w->together == together)
        return LN_SUCCESS;
    release_workspace(m);
    size_t rows = group * n, f = sizeof(float);
    const size_t branch_cols = together ? m->sum_scales : m->max_width;
    char what[128];
    snprintf(what, sizeof(what), "encoder workspace for B = %zu, n = %zu (%zu sequences a chunk)",
             batch, n, group);
    struct {
        cl_mem *dst;
        size_t bytes;
    } plan[] = {
        {&w->unit, rows * m->d * f},    {&w->h, rows * m->d * f},
        {&w->zcat, rows * m->sum_scales * f}, {&w->a, rows * branch_cols * f},
        {&w->qkv, rows * (3 * branch_cols > m->d ? 3 * branch_cols : m->d) * f}, /* or u^T */
        {&w->f, rows * (together ? m->sum_scales * (size_t)m->cfg.ffn_mult : m->max_ffn) * f},
        {&w->s, mode == LN_ATTENTION_PRECOMPUTED_S ? group * n * n * f : 0},
    };
    for (size_t i = 0; i < sizeof(plan) / sizeof(plan[0]); i++) {
        if (!plan[i].bytes)
            continue;
        ln_status st = ln_buffer_create(ctx, plan[i].bytes, plan[i].dst, what);
        if (st) {
            char keep[LN_ERRMSG_MAX];
            memcpy(keep, ctx->error, sizeof(keep));
            release_workspace(m);
            memcpy(ctx->error, keep, sizeof(keep));
            return st;
        }
    }
    w->group = group;
    w->n = n;
    w->mode = mode;
    w->together = together;
    return LN_SUCCESS;
}

/* The workspace's staging for a chunk's positions ([G n] floats) and
 * lengths ([G] int32), made only when a call has them. */
static ln_status ensure_chunk_inputs(ln_model *m, bool positions, bool lengths)
{
    workspace *w = &m->ws;
    size_t g = w->group;
    ln_status st = LN_SUCCESS;
    if (positions && !w->positions)
        st = ln_buffer_create(m->ctx, g * w->n * sizeof(float), &w->positions,
                              "encoder workspace: a chunk's positions");
    if (!st && lengths && !w->lengths)
        st = ln_buffer_create(m->ctx, g * sizeof(cl_int), &w->lengths,
                              "encoder workspace: a chunk's lengths");
    return st;
}

/* ------------------------------------------------------------ forward */

/* Branch k's dense blocks of the workspace's a ([rows, w]) and qkv
 * ([rows, 3w]), as ln_attention_layer lays them out. */
static ln_dmat a_block(const ln_model *m, const layer_weights *L, int k, size_t rows)
{
    return ln_layer_out_block(m->ws.a, rows, L->column[k], L->width[k]);
}

static ln_dmat qkv_block(const ln_model *m, const layer_weights *L, int k, size_t rows)
{
    return ln_layer_qkv_block(m->ws.qkv, rows, L->column[k], L->width[k]);
}

/* Branch k's dense block of the workspace's f where it holds every
 * branch's FFN hidden layer ([rows, ffn_mult w_k] at rows ffn_mult
 * column_k, the layout ln_add_bias_blocks takes). */
static ln_dmat ffn_block(const ln_model *m, const layer_weights *L, int k, size_t rows)
{
    const ln_dmat f = {m->ws.f, rows * (size_t)m->cfg.ffn_mult * L->column[k],
                       L->branch[k].ffn_width};
    return f;
}

/* y += x W^T (wt = W^T [in, out]) through the GEMM's beta: a Linear whose
 * bias the next LayerNorm adds (ln_layernorm_add_bias) or the fusion's
 * bias carries (upload_fusion_bias). Each bias folded that way is one
 * launch fewer: 2 K + 1 of a layer's 11 K + 4 branch by branch (K
 * branches), and the last layer's fusion bias; at B = 8, n = 64 the
 * launches rather than the work set the forward's time on a GPU (README). */
static ln_status linear_accumulate(ln_model *m, size_t rows, size_t in, size_t out, ln_dmat x,
                                   cl_mem wt, ln_dmat y)
{
    return ln_gemm(m->ctx, false, false, rows, out, in, 1.0f, x, ln_dmat_of(wt, out), 1.0f, y,
                   "ln_linear");
}

/* z's bias still to add (the branch's slice of the projection's), or
 * none: .mem NULL. */
typedef struct pending_bias {
    cl_mem mem;
    size_t offset;
} pending_bias;

/* Branch B's attention input: z += pending bias, a = LN1 z, then
 * qkv = a W_qkv^T + b_qkv. */
static ln_status attention_in(ln_model *m, const branch_weights *B, size_t rows, ln_dmat z,
                              pending_bias z_bias, ln_dmat a, ln_dmat qkv)
{
    const size_t w = B->width;
    const float eps = m->cfg.ln_eps;
    ln_status st = z_bias.mem ? ln_layernorm_add_bias(m->ctx, rows, w, z, z_bias.mem,
                                                      z_bias.offset, B->ln1_g, B->ln1_b, eps, a)
                              : ln_layernorm(m->ctx, rows, w, z, B->ln1_g, B->ln1_b, eps, a);
    return st ? st
              : ln_linear_wt(m->ctx, rows, w, 3 * w, a, ln_dmat_of(B->qkv_w, 3 * w), B->qkv_b,
                             0, LN_EPILOGUE_BIAS, (ln_dmat){0}, qkv);
}

/* z += a W_out^T, a holding branch B's attention result; its bias b_out
 * is added by LN2 (ffn_half). */
static ln_status attention_out(ln_model *m, const branch_weights *B, size_t rows, ln_dmat a,
                               ln_dmat z)
{
    return linear_accumulate(m, rows, B->width, B->width, a, B->out_w, z);
}

/* z += out_proj(attn(LN1 z)) for every branch of layer L (zcat's
 * projections still without their bias), in steps that each take all
 * branches where they can: one LayerNorm launch (adding the projection
 * bias) into a's blocks, the QKV GEMM of each branch into its block of
 * qkv, one launch for their biases, one attention launch for all
 * branches (its results in a's blocks), then each out_proj. 3 + K
 * launches where a branch at a time takes 4 K + 1 (K = 4 by default). */
static ln_status attention_half(ln_model *m, const layer_weights *L, size_t batch, size_t n,
                                cl_mem unit, cl_mem s, cl_mem lengths)
{
    ln_context *ctx = m->ctx;
    const size_t rows = batch * n, sum = m->sum_scales, count = (size_t)m->cfg.n_scales;
    const ln_dmat none = {0};
    ln_status st;
    if ((st = ln_layernorm_branches(ctx, rows, count, L->width, ln_dmat_of(m->ws.zcat, sum),
                                    L->proj_b, L->all_ln1_g, L->all_ln1_b, m->cfg.ln_eps,
                                    m->ws.a)))
        return st;
    for (int k = 0; k < m->cfg.n_scales; k++) {
        const size_t w = L->width[k];
        if ((st = ln_linear_wt(ctx, rows, w, 3 * w, a_block(m, L, k, rows),
                               ln_dmat_of(L->branch[k].qkv_w, 3 * w), NULL, 0, LN_EPILOGUE_NONE,
                               none, qkv_block(m, L, k, rows))))
            return st;
    }
    if ((st = ln_add_bias_blocks(ctx, rows, count, L->width, 3, false, m->ws.qkv, L->all_qkv_b)))
        return st;
    const ln_attention_layer layer = {(size_t)m->cfg.n_scales, L->width, L->temperature,
                                      L->all_temperature, m->head_table};
    if ((st = ln_semantic_attention_layer(
             m->ctx, batch, n, (size_t)m->cfg.head_dim, m->d, &layer, m->ws.qkv, unit, s,
             lengths, s ? LN_ATTENTION_PRECOMPUTED_S : LN_ATTENTION_RECOMPUTE_S, m->ws.a)))
        return st;
    for (int k = 0; k < m->cfg.n_scales; k++) {
        const ln_dmat z = {m->ws.zcat, L->column[k], sum};
        if ((st = attention_out(m, &L->branch[k], rows, a_block(m, L, k, rows), z)))
            return st;
    }
    return LN_SUCCESS;
}

/* z += W4 gelu(W3 a + b3) + b4 for branch B, a = LN2 z; b4 left out
 * where the fusion's bias carries it (!with_b4, multiscale). */
static ln_status ffn(ln_model *m, const branch_weights *B, size_t rows, ln_dmat a, ln_dmat z,
                     bool with_b4)
{
    ln_context *ctx = m->ctx;
    const size_t w = B->width;
    const ln_dmat f = ln_dmat_of(m->ws.f, B->ffn_width), none = {0};
    ln_status st;
    if ((st = ln_linear_wt(ctx, rows, w, B->ffn_width, a, ln_dmat_of(B->ffn1_w, B->ffn_width),
                           B->ffn1_b, 0, LN_EPILOGUE_BIAS_GELU, none, f)))
        return st;
    if (!with_b4)
        return linear_accumulate(m, rows, B->ffn_width, w, f, B->ffn2_w, z);
    return ln_linear_wt(ctx, rows, B->ffn_width, w, f, ln_dmat_of(B->ffn2_w, w), B->ffn2_b, 0,
                        LN_EPILOGUE_BIAS_RESIDUAL, z, z);
}

/* z += b_out (attention_out's bias), a = LN2 z, then ffn. */
static ln_status ffn_half(ln_model *m, const branch_weights *B, size_t rows, ln_dmat z, ln_dmat a,
                          bool with_b4)
{
    ln_status st = ln_layernorm_add_bias(m->ctx, rows, B->width, z, B->out_b, 0, B->ln2_g,
                                         B->ln2_b, m->cfg.ln_eps, a);
    return st ? st : ffn(m, B, rows, a, z, with_b4);
}

/* One branch's whole block on z [B n, w] (a column slice of zcat, or the
 * caller's for ln_model_transformer_block), in the workspace's first
 * columns; z_bias and with_b4 as attention_in and ffn_half take them. */
static ln_status block(ln_model *m, const branch_weights *B, size_t batch, size_t n, ln_dmat z,
                       pending_bias z_bias, bool with_b4, cl_mem unit, cl_mem s, cl_mem lengths)
{
    workspace *ws = &m->ws;
    const size_t rows = batch * n, w = B->width;
    const ln_dmat a = ln_dmat_of(ws->a, w), qkv = ln_dmat_of(ws->qkv, 3 * w);
    const ln_dmat q = {ws->qkv, 0, 3 * w}, k = {ws->qkv, w, 3 * w}, v = {ws->qkv, 2 * w, 3 * w};
    const ln_attention_mode mode = s ? LN_ATTENTION_PRECOMPUTED_S : LN_ATTENTION_RECOMPUTE_S;
    ln_status st;
    if ((st = attention_in(m, B, rows, z, z_bias, a, qkv)) ||
        (st = ln_semantic_attention(m->ctx, batch, n, w, (size_t)m->cfg.head_dim, m->d, q, k, v,
                                    unit, s, B->temperature, lengths, mode, a)) ||
        (st = attention_out(m, B, rows, a, z)))
        return st;
    return ffn_half(m, B, rows, z, a, with_b4);
}

/* z += W4 gelu(W3 LN2 (z + b_out) + b3) for every branch of layer L (b4
 * is the fusion bias's, upload_fusion_bias), the launches that can take
 * all branches doing so: one LayerNorm (adding the out_proj biases) into
 * a's blocks, each branch's W3 GEMM into its block of f ([rows, ffn_mult
 * w_k] at rows ffn_mult column_k), one bias + GELU launch, each W4 GEMM.
 * 2 K + 2 launches where a branch at a time takes 5 K. */
static ln_status ffn_half_together(ln_model *m, const layer_weights *L, size_t rows)
{
    ln_context *ctx = m->ctx;
    const size_t sum = m->sum_scales, count = (size_t)m->cfg.n_scales,
                 mult = (size_t)m->cfg.ffn_mult;
    const ln_dmat none = {0};
    ln_status st;
    if ((st = ln_layernorm_branches(ctx, rows, count, L->width, ln_dmat_of(m->ws.zcat, sum),
                                    L->all_out_b, L->all_ln2_g, L->all_ln2_b, m->cfg.ln_eps,
                                    m->ws.a)))
        return st;
    for (int k = 0; k < m->cfg.n_scales; k++) {
        const branch_weights *B = &L->branch[k];
        if ((st = ln_linear_wt(ctx, rows, B->width, B->ffn_width, a_block(m, L, k, rows),
                               ln_dmat_of(B->ffn1_w, B->ffn_width), NULL, 0, LN_EPILOGUE_NONE,
                               none, ffn_block(m, L, k, rows))))
            return st;
    }
    if ((st = ln_add_bias_blocks(ctx, rows, count, L->width, mult, true, m->ws.f,
                                 L->all_ffn1_b)))
        return st;
    for (int k = 0; k < m->cfg.n_scales; k++) {
        const branch_weights *B = &L->branch[k];
        const ln_dmat z = {m->ws.zcat, L->column[k], sum};
        if ((st = linear_accumulate(m, rows, B->ffn_width, B->width, ffn_block(m, L, k, rows),
                                    B->ffn2_w, z)))
            return st;
    }
    return LN_SUCCESS;
}

/* h += F [z_1 .. z_K] + f for layer l; f left out where !fusion_bias
 * (the final LayerNorm adds the last layer's). */
static ln_status multiscale(ln_model *m, int l, size_t batch, size_t n, cl_mem h, cl_mem unit,
                            cl_mem s, cl_mem lengths, bool fusion_bias)
{
    ln_context *ctx = m->ctx;
    layer_weights *L = &m->layers[l];
    size_t rows = batch * n, sum = m->sum_scales;
    ln_dmat zcat = ln_dmat_of(m->ws.zcat, sum), hv = ln_dmat_of(h, m->d), none = {0};
    ln_status st;
    /* Every branch projection reads h: one GEMM into the concatenation,
     * whose bias each branch's LN1 adds. */
    if ((st = ln_linear_wt(ctx, rows, m->d, sum, hv, ln_dmat_of(L->proj_w, sum), NULL, 0,
                           LN_EPILOGUE_NONE, none, zcat)))
        return st;
    /* Where one launch runs every branch's attention (attention_rows, on
     * GPUs), the branches go through the layer step by step; else each
     * runs its whole block in turn on the workspace's first columns, as
     * dense and as cache-warm as they can be: on the 2-core PoCL machine
     * the step-by-step order took 1-7% longer at B = 1, n = 1024 and
     * B = 8, n = 256 (ln-bench, three alternating runs each), and its
     * workspace is larger. */
    if (m->ws.together) {
        if ((st = attention_half(m, L, batch, n, unit, s, lengths)) ||
            (st = ffn_half_together(m, L, rows)))
            return st;
    } else
        for (int k = 0; k < m->cfg.n_scales; k++) {
            const ln_dmat z = {m->ws.zcat, L->column[k], sum};
            const pending_bias proj_bias = {L->proj_b, L->column[k]};
            if ((st = block(m, &L->branch[k], batch, n, z, proj_bias, false, unit, s, lengths)))
                return st;
        }
    /* h += F [z_1 .. z_K] + f, in place through the GEMM's beta; f holds
     * the branches' b4 too (upload_fusion_bias). */
    if (!fusion_bias)
        return linear_accumulate(m, rows, sum, m->d, zcat, L->fusion_w, hv);
    return ln_linear_wt(ctx, rows, sum, m->d, zcat, ln_dmat_of(L->fusion_w, m->d), L->fusion_b,
                        0, LN_EPILOGUE_BIAS_RESIDUAL, hv, hv);
}

static ln_status check_shape(ln_model *m, const char *op, size_t batch, size_t n)
{
    if (batch == 0 || n == 0)
        return ln_fail(m->ctx, LN_ERROR_INVALID_ARGUMENT, "%s: batch (%zu) and n (%zu) must be > 0",
                       op, batch, n);
    /* Keep every workspace size (B n^2 floats of S, B n * ffn width) well
     * inside size_t and the kernels' 32-bit indices. */
    if (batch > (1u << 20) || n > (1u << 20) || batch * n > (1u << 26))
        return ln_fail(m->ctx, LN_ERROR_DEVICE_MEMORY,
                       "%s: B = %zu, n = %zu is beyond what ln-cl can hold (B n <= 2^26)", op,
                       batch, n);
    return LN_SUCCESS;
}

/* The forward pass of `batch` sequences (the whole call, or one chunk of
 * at most the workspace's G) from x (dense [batch n, d], may be ws->h) to
 * the view out; positions and lengths as ln_model_encode_device takes them. */
static ln_status forward(ln_model *m, size_t batch, size_t n, cl_mem x, cl_mem positions,
                         cl_mem lengths, ln_dmat out)
{
    ln_context *ctx = m->ctx;
    workspace *ws = &m->ws;
    size_t rows = batch * n, d = m->d;
    ln_status st;
    /* S is shared by every head, branch and layer: computed once here.
     * Where the device writes u^T with u (CPUs), S's GEMM takes it as is.
     * PoCL, 2-core AMD EPYC: S's GEMM alone took 40 us against 74 with
     * CLBlast transposing u (B = 1, n = 64), 262 against 360 (n = 256),
     * 3.8 ms against 4.3 (n = 1024); unit rows with u^T and S together
     * 33.9-34.6 ms against 34.9-37.9 at B = 8, n = 1024. qkv holds u^T until
     * the first layer's QKV GEMM (ensure_workspace sizes it). */
    if (ws->s && ln_unit_rows_t_supported(ctx, d)) {
        if ((st = ln_unit_rows_t(ctx, batch, n, d, x, ws->unit, ws->qkv)) ||
            (st = ln_similarity_t(ctx, batch, n, d, ws->unit, ws->qkv, ws->s)))
            return st;
    } else if ((st = ln_unit_rows(ctx, rows, d, ln_dmat_of(x, d), ln_dmat_of(ws->unit, d))) ||
               (ws->s && (st = ln_similarity(ctx, batch, n, d, ws->unit, ws->s)))) {
        return st;
    }
    /* f, free until the first FFN, holds the positional hidden layer. */
    if ((st = ln_positional_add_wt(ctx, batch, n, d, (size_t)m->cfg.pos_hidden, positions,
                                   m->pos_w1, m->pos_b1, m->pos_w2t, m->pos_b2, x, ws->h, ws->f)))
        return st;
    const int last = m->cfg.n_layers - 1;
    for (int l = 0; l <= last; l++)
        if ((st = multiscale(m, l, batch, n, ws->h, ws->unit, ws->s, lengths, l < last)))
            return st;
    return ln_layernorm_add_bias(ctx, rows, d, ln_dmat_of(ws->h, d), m->layers[last].fusion_b, 0,
                                 m->final_g, m->final_b, m->cfg.ln_eps, out);
}

/* Device-to-device copy on the in-order queue (no host wait). */
static ln_status copy_chunk(ln_context *ctx, const char *op, const char *name, cl_mem src,
                            size_t src_offset, cl_mem dst, size_t bytes, size_t c0, size_t g)
{
    cl_int err = clEnqueueCopyBuffer(ctx->queue, src, dst, src_offset, 0, bytes, 0, NULL, NULL);
    if (err == CL_SUCCESS)
        return LN_SUCCESS;
    char what[160];
    snprintf(what, sizeof(what), "%s: copying %s of sequences %zu..%zu into the workspace", op,
             name, c0, c0 + g - 1);
    return ln_fail_cl(ctx, err, what);
}

ln_status ln_model_encode_device(ln_model *model, size_t batch, size_t n, cl_mem x,
                                 cl_mem positions, cl_mem lengths, cl_mem out)
{
    if (!model)
        return ln_fail(NULL, LN_ERROR_INVALID_ARGUMENT, "ln_model_encode_device: model is NULL");
    ln_context *ctx = model->ctx;
    ln_clear_error(ctx);
    const char *op = "ln_model_encode_device";
    ln_status st;
    if ((st = check_shape(model, op, batch, n)))
        return st;
    size_t rows = batch * n, d = model->d, f = sizeof(float);
    if ((st = ln_check_mem(ctx, op, "x", x, 0, rows * d)) ||
        (st = ln_check_mem(ctx, op, "out", out, 0, rows * d)) ||
        (positions && (st = ln_check_mem(ctx, op, "positions", positions, 0, rows))) ||
        (lengths && (st = ln_check_mem(ctx, op, "lengths", lengths, 0, batch))))
        return st;
    const size_t G = chunk_sequences(ctx, batch, n);
    if ((st = ensure_workspace(model, batch, n, G)))
        return st;
    if (G == batch) /* one chunk: straight from the caller's buffers */
        return forward(model, batch, n, x, positions, lengths, ln_dmat_of(out, d));
    workspace *ws = &model->ws;
    if ((st = ensure_chunk_inputs(model, positions != NULL, lengths != NULL)))
        return st;
    /* Chunk by chunk: its x rows into h (positional_add then works in
     * place), its positions and lengths into the staging buffers, and the
     * final LayerNorm writes its rows of out directly. out may be x: a
     * chunk's rows of x are copied before its rows of out are written. */
    for (size_t c0 = 0; c0 < batch; c0 += G) {
        size_t g = G < batch - c0 ? G : batch - c0, crows = g * n;
        ln_dmat chunk_out = {out, c0 * n * d, d};
        if ((st = copy_chunk(ctx, op, "x", x, c0 * n * d * f, ws->h, crows * d * f, c0, g)) ||
            (positions && (st = copy_chunk(ctx, op, "positions", positions, c0 * n * f,
                                           ws->positions, crows * f, c0, g))) ||
            (lengths && (st = copy_chunk(ctx, op, "lengths", lengths, c0 * sizeof(cl_int),
                                         ws->lengths, g * sizeof(cl_int), c0, g))) ||
            (st = forward(model, g, n, ws->h, positions ? ws->positions : NULL,
                          lengths ? ws->lengths : NULL, chunk_out)))
            return st;
    }
    return LN_SUCCESS;
}

static ln_status check_finite(ln_context *ctx, const char *name, const float *v, size_t count,
                              size_t row_width)
{
    for (size_t i = 0; i < count; i++)
        if (!isfinite(v[i]))
            return ln_fail(ctx, LN_ERROR_NONFINITE_INPUT,
                           "ln_model_encode: %s holds %s at row %zu, column %zu: NaN and Inf are "
                           "rejected",
                           name, isnan(v[i]) ? "NaN" : "Inf", i / row_width, i % row_width);
    return LN_SUCCESS;
}

/* One chunk of ln_model_encode: uploads its inputs into the workspace
 * (x into h, where positional_add works in place), runs it with the final
 * LayerNorm into unit (free once the last layer's attention has read it)
 * and queues the read of its rows of out. Non-blocking: the caller waits. */
static ln_status encode_host_chunk(ln_model *m, size_t c0, size_t g, size_t n, const float *x,
                                   const float *positions, const int32_t *lengths, float *out)
{
    ln_context *ctx = m->ctx;
    workspace *ws = &m->ws;
    size_t rows = g * n, d = m->d, f = sizeof(float);
    cl_int err = clEnqueueWriteBuffer(ctx->queue, ws->h, CL_FALSE, 0, rows * d * f,
                                      x + c0 * n * d, 0, NULL, NULL);
    if (!err && positions)
        err = clEnqueueWriteBuffer(ctx->queue, ws->positions, CL_FALSE, 0, rows * f,
                                   positions + c0 * n, 0, NULL, NULL);
    if (!err && lengths)
        err = clEnqueueWriteBuffer(ctx->queue, ws->lengths, CL_FALSE, 0, g * sizeof(cl_int),
                                   lengths + c0, 0, NULL, NULL);
    if (err)
        return ln_fail_cl(ctx, err, "ln_model_encode: copying inputs to the device");
    ln_status st = forward(m, g, n, ws->h, positions ? ws->positions : NULL,
                           lengths ? ws->lengths : NULL, ln_dmat_of(ws->unit, d));
    if (st)
        return st;
    err = clEnqueueReadBuffer(ctx->queue, ws->unit, CL_FALSE, 0, rows * d * f, out + c0 * n * d,
                              0, NULL, NULL);
    return err ? ln_fail_cl(ctx, err, "ln_model_encode: reading results to the host") : LN_SUCCESS;
}

ln_status ln_model_encode(ln_model *model, size_t batch, size_t n, const float *x,
                          const float *positions, const int32_t *lengths, float *out)
{
    if (!model)
        return ln_fail(NULL, LN_ERROR_INVALID_ARGUMENT, "ln_model_encode: model is NULL");
    ln_context *ctx = model->ctx;
    ln_clear_error(ctx);
    const char *op = "ln_model_encode";
    if (!x || !out)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "%s: x or out is NULL", op);
    ln_status st;
    if ((st = check_shape(model, op, batch, n)))
        return st;
    size_t rows = batch * n, d = model->d;
    if (lengths)
        for (size_t b = 0; b < batch; b++)
            if (lengths[b] < 1 || (size_t)lengths[b] > n)
                return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT,
                               "%s: lengths[%zu] = %d is outside 1..n (n = %zu)", op, b,
                               (int)lengths[b], n);
    /* Allocation first: a shape the device cannot hold fails before the
     * host arrays are read. The host arrays go straight into the chunk
     * workspace, so this path holds no [B n, d] buffer either. */
    const size_t G = chunk_sequences(ctx, batch, n);
    if ((st = ensure_workspace(model, batch, n, G)) ||
        (st = ensure_chunk_inputs(model, positions != NULL, lengths != NULL)) ||
        (st = check_finite(ctx, "x", x, rows * d, d)) ||
        (positions && (st = check_finite(ctx, "positions", positions, rows, n))))
        return st;
    for (size_t c0 = 0; c0 < batch && !st; c0 += G)
        st = encode_host_chunk(model, c0, G < batch - c0 ? G : batch - c0, n, x, positions,
                               lengths, out);
    /* Wait even on failure: a queued copy must not touch the caller's
     * arrays after we return. */
    cl_int err = clFinish(ctx->queue);
    if (st)
        return st;
    return err ? ln_fail_cl(ctx, err, "ln_model_encode: waiting for the device") : LN_SUCCESS;
}

ln_status ln_model_transformer_block(ln_model *model, int layer, int branch, size_t batch,
                                     size_t n, ln_dmat z, cl_mem unit, cl_mem s, cl_mem lengths)
{
    if (!model)
        return ln_fail(NULL, LN_ERROR_INVALID_ARGUMENT, "ln_model_transformer_block: model is NULL");
    ln_context *ctx = model->ctx;
    ln_clear_error(ctx);
    const char *op = "ln_model_transformer_block";
    if (layer < 0 || layer >= model->cfg.n_layers || branch < 0 || branch >= model->cfg.n_scales)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT,
                       "%s: layer %d / branch %d outside the model's %d layers of %d branches", op,
                       layer, branch, model->cfg.n_layers, model->cfg.n_scales);
    ln_status st;
    const branch_weights *B = &model->layers[layer].branch[branch];
    if ((st = check_shape(model, op, batch, n)) ||
        (st = ln_check_view(ctx, op, "z", z, batch * n, B->width)) ||
        (st = ln_check_mem(ctx, op, "unit", unit, 0, batch * n * model->d)) ||
        (s && (st = ln_check_mem(ctx, op, "s", s, 0, batch * n * n))) ||
        (st = ensure_workspace(model, batch, n, batch)))
        return st;
    return block(model, B, batch, n, z, (pending_bias){0}, true, unit, s, lengths);
}

ln_status ln_model_multiscale(ln_model *model, int layer, size_t batch, size_t n, cl_mem h,
                              cl_mem unit, cl_mem s, cl_mem lengths)
{
    if (!model)
        return ln_fail(NULL, LN_ERROR_INVALID_ARGUMENT, "ln_model_multiscale: model is NULL");
    ln_context *ctx = model->ctx;
    ln_clear_error(ctx);
    const char *op = "ln_model_multiscale";
    if (layer < 0 || layer >= model->cfg.n_layers)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "%s: layer %d outside the model's %d", op,
                       layer, model->cfg.n_layers);
    ln_status st;
    if ((st = check_shape(model, op, batch, n)) ||
        (st = ln_check_mem(ctx, op, "h", h, 0, batch * n * model->d)) ||
        (st = ln_check_mem(ctx, op, "unit", unit, 0, batch * n * model->d)) ||
        (s && (st = ln_check_mem(ctx, op, "s", s, 0, batch * n * n))) ||
        (st = ensure_workspace(model, batch, n, batch)))
        return st;
    return multiscale(model, layer, batch, n, h, unit, s, lengths, true);
}
