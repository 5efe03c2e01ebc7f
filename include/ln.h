/*
 * ln.h: the one public header of ln-cl, a vendor-neutral OpenCL backend for
 * the LN (Latent Neurolese) encoder.
 *
 * Conventions
 *  - Every handle is opaque and has one constructor and one destructor:
 *      ln_context_create / ln_context_destroy
 *      ln_model_load     / ln_model_free
 *  - Every call that can fail returns an ln_status. Values below zero down to
 *    -72 are OpenCL's own error codes passed through unchanged; ln-cl's own
 *    codes start at -3000 so they never collide with OpenCL's or CLBlast's.
 *  - ln_last_error(ctx) returns a message with detail (which op, which size,
 *    which file, the kernel build log) for the last failure on ctx; with
 *    ctx == NULL it returns the calling thread's last failure that had no
 *    context (e.g. ln_context_create).
 *  - The caller owns its buffers: ops take the caller's cl_mem (or host
 *    arrays in the *_host wrappers) and write into the caller's output.
 *  - Matrices are row-major float32. A device matrix view (ln_dmat) is a
 *    buffer, an offset in floats and a leading dimension in floats, so an op
 *    can read or write a column slice of a wider matrix.
 *
 * Thread safety: a context (and everything created from it) is used by one
 * thread at a time; use one context per thread. A model is bound to the
 * context it was loaded on.
 *  - Different contexts may be used from different threads at the same
 *    time, on the same device or not (tests/test_threads.c: 4 threads, each
 *    with its own context and model, give bitwise the single-threaded
 *    results). A context has no lock of its own: handing one to another
 *    thread needs the caller's synchronisation (a mutex or a join).
 *  - ln_status_string, ln_device_list and ln_context_create may be called
 *    from any thread; ln_last_error(NULL) is the calling thread's own.
 *  - What contexts share is guarded: the record of applied CLBlast
 *    overrides by a mutex, the on-disk caches by atomic writes (and an
 *    flock for tuning merges), CLBlast's kernel and parameter caches by
 *    CLBlast's own mutexes. Tuned CLBlast parameters are per device for the whole
 *    process (see ln_tuning_info).
 *  - Environment variables (LN_DEVICE, LN_DEVICE_MEMORY_LIMIT_MB,
 *    LN_CACHE_DIR, ...) are read when a context is created: do not change
 *    them from another thread meanwhile.
 */
#ifndef LN_H
#define LN_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define LN_API __declspec(dllexport)
#else
#define LN_API __attribute__((visibility("default")))
#endif

typedef enum ln_status {
    LN_SUCCESS = 0,
    /* -1 ... -72: OpenCL error codes, passed through with their numbers. */
    LN_ERROR_INVALID_ARGUMENT = -3001, /* NULL handle, zero size, bad enum */
    LN_ERROR_SHAPE_MISMATCH = -3002,   /* sizes that do not fit together */
    LN_ERROR_DEVICE_NOT_FOUND = -3003, /* no device matches the spec */
    LN_ERROR_OUT_OF_HOST_MEMORY = -3004,
    LN_ERROR_BUILD_FAILED = -3005,     /* kernel build failed; log in message */
    LN_ERROR_CLBLAST = -3006,          /* CLBlast's own (non-OpenCL) error */
    LN_ERROR_IO = -3007,               /* a file could not be read or written */
    LN_ERROR_BAD_FILE = -3008,         /* a file is malformed */
    LN_ERROR_BAD_CONFIG = -3009,       /* model configuration invalid */
    LN_ERROR_NONFINITE_INPUT = -3010,  /* NaN or Inf in an input */
    LN_ERROR_DEVICE_MEMORY = -3011,    /* device allocation refused or over the cap */
    LN_ERROR_UNSUPPORTED = -3012       /* valid request this device cannot do */
} ln_status;

/* A short, static name for a status ("LN_ERROR_SHAPE_MISMATCH",
 * "CL_OUT_OF_RESOURCES", ...). Never NULL. */
LN_API const char *ln_status_string(ln_status status);

typedef struct ln_context ln_context;

/* Last error message with detail; see the conventions above. Never NULL;
 * "" when there was no error. Valid until the next call on the context. */
LN_API const char *ln_last_error(const ln_context *ctx);

/* ---------------------------------------------------------------- devices */

typedef struct ln_device_info {
    int platform_index;
    int device_index;
    char platform_name[128];
    char platform_version[128];
    char device_name[128];
    char device_version[128];
    char driver_version[128];
    int is_gpu;
    int is_cpu;
    unsigned compute_units;
    uint64_t global_mem_bytes;
    uint64_t max_alloc_bytes;
    uint64_t local_mem_bytes;
    size_t max_work_group_size;
    int has_fp64;
} ln_device_info;

/* Fills up to `capacity` entries of `infos` (may be NULL with capacity 0)
 * and sets *count to the number of devices on all platforms. */
LN_API ln_status ln_device_list(ln_device_info *infos, int capacity, int *count);

/* ---------------------------------------------------------------- context */

/* Constructor. device_spec: "P:D" (platform and device indices), or a
 * case-insensitive substring of "platform name / device name"; NULL means
 * the LN_DEVICE environment variable, else the first GPU, else the first
 * device of any kind. An empty spec (or empty LN_DEVICE) is an error. */
LN_API ln_status ln_context_create(const char *device_spec, ln_context **out);
/* Destructor; NULL is a no-op. Releases every OpenCL object ln-cl made. */
LN_API void ln_context_destroy(ln_context *ctx);

LN_API ln_status ln_context_device_info(const ln_context *ctx, ln_device_info *info);
/* The OpenCL objects behind the context, for callers with their own
 * buffers. They stay owned by the context. */
LN_API cl_context ln_context_cl_context(const ln_context *ctx);
LN_API cl_command_queue ln_context_cl_queue(const ln_context *ctx);
/* Blocks until all work queued by ln-cl on the context has finished. */
LN_API ln_status ln_context_finish(ln_context *ctx);
/* Bytes of device memory ln-cl itself holds right now, and the peak since
 * the context was created (caller-owned buffers are not counted). */
LN_API uint64_t ln_context_device_bytes(const ln_context *ctx);
LN_API uint64_t ln_context_peak_device_bytes(const ln_context *ctx);

/* ---------------------------------------------------------------- buffers */

/* A row-major float32 matrix view on a device buffer: element (r, c) is
 * mem[offset + r * ld + c]. */
typedef struct ln_dmat {
    cl_mem mem;
    size_t offset; /* in floats */
    size_t ld;     /* in floats; >= the view's width */
} ln_dmat;

/* Convenience: a dense view at offset 0 with leading dimension `ld`. */
static inline ln_dmat ln_dmat_of(cl_mem mem, size_t ld)
{
    ln_dmat m = {mem, 0, ld};
    return m;
}

/* -------------------------------------------------------------------- ops */

typedef enum ln_epilogue {
    LN_EPILOGUE_NONE = 0,      /* y = x W^T */
    LN_EPILOGUE_BIAS,          /* y = x W^T + b */
    LN_EPILOGUE_BIAS_GELU,     /* y = gelu(x W^T + b), exact erf GELU */
    LN_EPILOGUE_BIAS_RESIDUAL  /* y = x W^T + b + r  (r may be y itself) */
} ln_epilogue;

/* y[rows, out] = epilogue(x[rows, in] W^T), W stored [out, in] as PyTorch
 * does; bias is `out` floats at bias_offset (ignored for NONE); residual is
 * used only for BIAS_RESIDUAL. GEMM by CLBlast. */
LN_API ln_status ln_linear(ln_context *ctx, size_t rows, size_t in, size_t out,
                           ln_dmat x, ln_dmat w, cl_mem bias, size_t bias_offset,
                           ln_epilogue epilogue, ln_dmat residual, ln_dmat y);

/* y = LayerNorm(x) * gamma + beta over rows of `width`, biased variance. */
LN_API ln_status ln_layernorm(ln_context *ctx, size_t rows, size_t width, ln_dmat x,
                              cl_mem gamma, cl_mem beta, float eps, ln_dmat y);

/* y = x / max(||x||, 1e-12) per row. */
LN_API ln_status ln_unit_rows(ln_context *ctx, size_t rows, size_t width, ln_dmat x,
                              ln_dmat y);

/* Continuous positional encoding fused with the add:
 *   out[b, i, :] = x[b, i, :] + W2 gelu(W1 p[b, i] + b1) + b2
 * positions: [B, n] floats, or NULL for the default i / (n - 1) (0 when
 * n = 1). w1 [hidden, 1], b1 [hidden], w2 [d, hidden], b2 [d]. x and out are
 * dense [B * n, d]; out may be x. */
LN_API ln_status ln_positional_add(ln_context *ctx, size_t batch, size_t n, size_t d,
                                   size_t hidden, cl_mem positions, cl_mem w1, cl_mem b1,
                                   cl_mem w2, cl_mem b2, cl_mem x, cl_mem out);

/* Host-array wrappers of the ops above (dense matrices), for callers
 * without OpenCL code. Blocking. */
LN_API ln_status ln_linear_host(ln_context *ctx, size_t rows, size_t in, size_t out,
                                const float *x, const float *w, const float *bias,
                                ln_epilogue epilogue, const float *residual, float *y);
LN_API ln_status ln_layernorm_host(ln_context *ctx, size_t rows, size_t width,
                                   const float *x, const float *gamma, const float *beta,
                                   float eps, float *y);
LN_API ln_status ln_unit_rows_host(ln_context *ctx, size_t rows, size_t width,
                                   const float *x, float *y);
LN_API ln_status ln_positional_add_host(ln_context *ctx, size_t batch, size_t n, size_t d,
                                        size_t hidden, const float *positions,
                                        const float *w1, const float *b1, const float *w2,
                                        const float *b2, const float *x, float *out);

/* ----------------------------------------------------- semantic attention */

/* Layout shared by the attention calls: B sequences of n rows each are
 * stacked as [B * n, .] row-major matrices (row b * n + i is position i of
 * sequence b). A branch of width w has H = w / head_dim heads; head h is the
 * column slice [h * head_dim, (h + 1) * head_dim) of q, k, v and out, so q,
 * k and v may be column slices of one fused [B * n, 3w] qkv buffer (ld 3w)
 * and out a slice of a wider matrix. unit is dense [B * n, d]: the unit
 * concept vectors u = x / max(||x||, 1e-12). S is dense [B, n, n].
 * temperature is H floats; lengths is B int32 values or NULL (all n): key j
 * of sequence b is padding when j >= lengths[b]. Every query row is
 * computed (padded query rows too, over the valid keys). */

typedef enum ln_attention_mode {
    LN_ATTENTION_AUTO = 0,          /* by the context's tuning and memory budget */
    LN_ATTENTION_PRECOMPUTED_S = 1, /* read S (B n^2 floats) made by ln_similarity */
    LN_ATTENTION_RECOMPUTE_S = 2    /* recompute S tiles from unit: O(B n d) memory */
} ln_attention_mode;

/* S[b] = u[b] u[b]^T: s is dense [B, n, n], one batched GEMM. */
LN_API ln_status ln_similarity(ln_context *ctx, size_t batch, size_t n, size_t d, cl_mem unit,
                               cl_mem s);

/* The mode an AUTO call resolves to for this size: RECOMPUTE_S when S (B n^2
 * floats) cannot be one device allocation, else the mode ln-tune chose for
 * this size (its (B, n) bucket's entry, else the device-wide one) if any,
 * else PRECOMPUTED_S while S fits the context's S budget (1/8 of device
 * memory by default). A caller running several attention calls on one
 * S (branches, layers) asks once, and on PRECOMPUTED_S computes S once with
 * ln_similarity and passes it to each call. Never returns AUTO. */
LN_API ln_attention_mode ln_attention_resolve_mode(const ln_context *ctx, size_t batch,
                                                   size_t n);

/* out = semantic attention over q, k, v (layout above), per head h and
 * query i: softmax_j(q_i . k_j / sqrt(head_dim) + temperature[h] * S_ij)
 * over the keys j < lengths[b], times v. One fused kernel; no n x n logits
 * are stored.
 *  - s: a precomputed S, or NULL. PRECOMPUTED_S with s NULL computes S into
 *    a temporary buffer; AUTO with s given uses it; RECOMPUTE_S ignores s.
 *  - unit may be NULL when s is given and mode is not RECOMPUTE_S.
 *  - lengths on the device are trusted to lie in 1..n (values outside are
 *    clamped into it, not reported); the host wrapper checks them.
 *  - out must not overlap q, k, v, unit or s.
 * head_dim may be any size (16, 32, 64, 96 and 128 are tested); width must
 * be a multiple of it. */
LN_API ln_status ln_semantic_attention(ln_context *ctx, size_t batch, size_t n, size_t width,
                                       size_t head_dim, size_t d, ln_dmat q, ln_dmat k,
                                       ln_dmat v, cl_mem unit, cl_mem s, cl_mem temperature,
                                       cl_mem lengths, ln_attention_mode mode, ln_dmat out);

/* Host-array wrapper (blocking): q, k, v and out dense [B * n, width], unit
 * [B * n, d], temperature [H], lengths [B] or NULL; each lengths[b] must lie
 * in 1..n (else LN_ERROR_INVALID_ARGUMENT). */
LN_API ln_status ln_semantic_attention_host(ln_context *ctx, size_t batch, size_t n,
                                            size_t width, size_t head_dim, size_t d,
                                            const float *q, const float *k, const float *v,
                                            const float *unit, const float *temperature,
                                            const int32_t *lengths, ln_attention_mode mode,
                                            float *out);

/* ------------------------------------------------------------ the model */

/* An LN encoder's weights on one context's device, with a workspace that is
 * allocated once per (chunk, n) shape and reused across calls. A batch runs
 * in chunks of whole sequences whose S (chunk * n^2 floats) fits the
 * context's S budget (128 MiB by default), so device memory grows with the
 * chunk, not with B. */
typedef struct ln_model ln_model;

/* Constructor: reads a safetensors file saved from PyTorch
 * (safetensors.torch.save_file(LNEncoder().state_dict(), path,
 * metadata={"ln_config": json})). The configuration comes from the
 * `ln_config` metadata, else from the tensor shapes (ln_eps then 1e-5); a
 * contradiction, a missing or unexpected tensor, a wrong shape or dtype is
 * an error naming it. F16 and BF16 weights are widened to float32. */
LN_API ln_status ln_model_load(ln_context *ctx, const char *path, ln_model **out);

/* Constructor: a model with seeded random weights drawn like PyTorch's
 * default initialisation (Linear: weight and bias U(-1/sqrt(in),
 * 1/sqrt(in)); LayerNorm: weight 1, bias 0; temperature 1), from ln-cl's
 * own generator (so not PyTorch's numbers). config_json as the `ln_config`
 * metadata; NULL means SPEC's defaults. */
LN_API ln_status ln_model_create_seeded(ln_context *ctx, const char *config_json,
                                        uint64_t seed, ln_model **out);

/* Destructor; NULL is a no-op. Releases the weights and the workspace. */
LN_API void ln_model_free(ln_model *model);

/* The model's configuration as JSON ({"d_model": 384, ...}); returns the
 * length, or -1 if cap (with the NUL) is too small. */
LN_API int ln_model_config_json(const ln_model *model, char *buf, size_t cap);
LN_API size_t ln_model_d_model(const ln_model *model);

/* NaN and Inf in x or positions are rejected (LN_ERROR_NONFINITE_INPUT,
 * naming the first bad element) before any device work: a transformer
 * spreads one NaN over every row of its sequence, so propagating would
 * silently poison valid outputs. */

/* Encodes host arrays: x [B, n, d]; positions [B, n] or NULL for the
 * default i / (n - 1); lengths [B] in 1..n or NULL for all n; writes out
 * [B, n, d] (rows at padded positions are unspecified). Blocking. */
LN_API ln_status ln_model_encode(ln_model *model, size_t batch, size_t n, const float *x,
                                 const float *positions, const int32_t *lengths, float *out);

/* The same on device buffers the caller owns: x and out dense [B * n, d]
 * (out may be x), positions [B * n] or NULL, lengths B int32 or NULL
 * (trusted to lie in 1..n). Non-blocking: ln_context_finish waits. No
 * finiteness check (that would need a device-to-host copy). */
LN_API ln_status ln_model_encode_device(ln_model *model, size_t batch, size_t n, cl_mem x,
                                        cl_mem positions, cl_mem lengths, cl_mem out);

/* The pieces on their own, on device buffers, using the model's weights:
 * transformer block `branch` of layer `layer` updates z [B * n, w_branch]
 * in place (a view, so it may be a column slice); the multi-scale
 * processor of `layer` updates h [B * n, d] in place: h += F[z_1..z_K] + f.
 * unit is [B * n, d] unit rows; s is a precomputed S [B, n, n] or NULL
 * (then S tiles are recomputed inside attention). */
LN_API ln_status ln_model_transformer_block(ln_model *model, int layer, int branch,
                                            size_t batch, size_t n, ln_dmat z, cl_mem unit,
                                            cl_mem s, cl_mem lengths);
LN_API ln_status ln_model_multiscale(ln_model *model, int layer, size_t batch, size_t n,
                                     cl_mem h, cl_mem unit, cl_mem s, cl_mem lengths);

/* ------------------------------------------------------------- tuning */

/* ln-cl keeps two caches per user under $LN_CACHE_DIR, else
 * $XDG_CACHE_HOME/ln-cl, else ~/.cache/ln-cl: program binaries
 * (binaries/, so a second process skips the kernel compiler) and the
 * parameters ln-tune found for each device (tuning/<device>.json, read by
 * ln_context_create). LN_TUNE_CACHE=off disables both. A missing, stale
 * (other driver, kernels or tuner) or corrupt file is never an error: the
 * defaults are used and a warning names the reason on stderr. */
typedef struct ln_tuning_info {
    /* The parameters in effect on the context. */
    size_t wg_layernorm;   /* work-items per row of LayerNorm / unit rows */
    size_t wg_elementwise; /* epilogues, positional encoding, attention cap */
    ln_attention_mode attn_mode; /* AUTO unless tuned */
    size_t attn_tile_q;
    size_t attn_tile_k;
    int from_cache;        /* 1 when any of them came from the tuning file */
    int tuned_values;      /* how many of them did */
    int tuning_entries;    /* entries (kernel x shape) in the loaded file */
    int cache_enabled;     /* 0 under LN_TUNE_CACHE=off */
    char cache_path[1024]; /* the device's tuning file ("" when disabled) */
    /* Program-binary cache use on this context so far. */
    unsigned binary_cache_hits;
    unsigned binary_cache_misses;
    unsigned binary_cache_stores;
    /* CLBlast's GEMM parameters: the Xgemm, XgemmDirect and GemmRoutine
     * (XGEMM_MIN_INDIRECT_SIZE) sets ln-tune chose, handed to CLBlast with
     * CLBlastOverrideParameters when the context was created. CLBlast keeps
     * them per device for the rest of the process (it has no call to undo
     * one), so a later context on the same device runs GEMMs with them
     * whatever its own tuning file says; clblast_overrides tells. */
    int clblast_overrides;  /* CLBlast kernels running ln-tune's values on this device, 0..3 */
    int clblast_applied;    /* of them, set by this context's tuning file */
    int clblast_rejected;   /* sets in this context's file ignored as invalid (warned) */
    long long clblast_min_indirect_size; /* GemmRoutine override in effect (0: all indirect); -1: none */
} ln_tuning_info;

/* Method: what the context's kernels run with and where it came from. */
LN_API ln_status ln_context_tuning(const ln_context *ctx, ln_tuning_info *out);

#ifdef __cplusplus
}
#endif
#endif /* LN_H */
