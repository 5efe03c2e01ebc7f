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

#ifdef __cplusplus
}
#endif
#endif /* LN_H */
