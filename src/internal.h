/*
 * internal.h: what the library's source files share and the public header
 * does not show: the context's layout, error reporting, kernel programs,
 * the per-device parameter table and tracked device allocations.
 */
#ifndef LN_INTERNAL_H
#define LN_INTERNAL_H

#include "ln.h"

#include <stdarg.h>
#include <stdbool.h>

#define LN_ERRMSG_MAX 8192
#define LN_MAX_PROGRAMS 64

/* Kernel parameters for one device. Defaults come from params.c; ln-tune
 * may override them per device. Work-group sizes are clamped to
 * CL_KERNEL_WORK_GROUP_SIZE at launch. */
typedef struct ln_params {
    size_t wg_layernorm;  /* work-items per row in the row reductions */
    size_t wg_elementwise; /* epilogues, positional hidden layer */
    /* semantic attention */
    int attn_mode;        /* ln_attention_mode; AUTO resolves by memory budget */
    size_t attn_tile_q;   /* queries per work-group */
    size_t attn_tile_k;   /* keys per local-memory tile */
    uint64_t attn_s_budget_bytes; /* precompute S while B n^2 floats fit */
} ln_params;

typedef struct ln_program_entry {
    const char *family;
    char options[512];
    cl_program program;
} ln_program_entry;

typedef struct ln_kernel_entry {
    cl_program program; /* the program it came from (not owned) */
    char name[64];
    cl_kernel kernel;
} ln_kernel_entry;

struct ln_context {
    cl_platform_id platform;
    cl_device_id device;
    cl_context cl;
    cl_command_queue queue;
    ln_device_info info;
    ln_params params;
    ln_program_entry programs[LN_MAX_PROGRAMS];
    int program_count;
    ln_kernel_entry kernels[LN_MAX_PROGRAMS * 4];
    int kernel_count;
    uint64_t device_bytes;
    uint64_t peak_device_bytes;
    uint64_t device_bytes_cap; /* LN_DEVICE_MEMORY_LIMIT_MB, 0 = none */
    char error[LN_ERRMSG_MAX];
};

/* Record a failure on ctx (or the thread's context-less slot when ctx is
 * NULL) and return `status`, so callers write `return ln_fail(...)`. */
ln_status ln_fail(ln_context *ctx, ln_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* An OpenCL call failed: status keeps the OpenCL number. */
ln_status ln_fail_cl(ln_context *ctx, cl_int err, const char *what);
void ln_clear_error(ln_context *ctx);

const char *ln_cl_error_name(cl_int err);

/* Embedded kernel source of one op family (cl/<family>.cl); NULL if none. */
const char *ln_kernel_source(const char *family, size_t *length);

/* Build (once per options string) and return the program of a kernel
 * family. On failure the message holds the build log. */
ln_status ln_program_get(ln_context *ctx, const char *family, const char *options,
                         cl_program *out);
/* A kernel of a family's program, created once and owned by the context
 * (callers set its arguments and launch it; they do not release it). */
ln_status ln_kernel_get(ln_context *ctx, const char *family, const char *options,
                        const char *kernel_name, cl_kernel *out);

/* Sets a kernel's arguments in order from (size, pointer) pairs ended by a
 * size of 0: write LN_ARG(x) for a value and LN_LOCAL(bytes) for local
 * memory, then LN_ARGS_END. */
ln_status ln_set_args(ln_context *ctx, cl_kernel kernel, const char *what, ...);
#define LN_ARG(x) sizeof(x), (const void *)&(x)
#define LN_LOCAL(bytes) (size_t)(bytes), (const void *)NULL
#define LN_ARGS_END (size_t)0

/* Enqueue a 1-D or 2-D range: `global` is rounded up to a multiple of the
 * local size (kernels guard), and the local size is clamped to the
 * kernel's CL_KERNEL_WORK_GROUP_SIZE. `local` entries are the wish. */
ln_status ln_enqueue(ln_context *ctx, cl_kernel kernel, cl_uint dims, const size_t *global,
                     const size_t *local, const char *what);
/* The work-group size a kernel may use on this device, <= wish, >= 1, and
 * for reductions a power of two when pow2 is set. */
size_t ln_kernel_wg_size(ln_context *ctx, cl_kernel kernel, size_t wish, bool pow2);

/* Tracked device buffers: counted toward ln_context_device_bytes and the
 * optional cap (LN_DEVICE_MEMORY_LIMIT_MB). */
ln_status ln_buffer_create(ln_context *ctx, size_t bytes, cl_mem *out, const char *what);
void ln_buffer_release(ln_context *ctx, cl_mem mem);

/* Host-wrapper helpers: copy host data in/out of a fresh tracked buffer. */
ln_status ln_buffer_from_host(ln_context *ctx, const void *data, size_t bytes, cl_mem *out,
                              const char *what);
ln_status ln_buffer_to_host(ln_context *ctx, cl_mem mem, void *data, size_t bytes);

/* GEMMs through CLBlast (src/linear.c), row-major:
 *   C[m, n] = alpha * op(A) op(B) + beta * C, op = transpose when trans_*.
 * Strided-batched: matrix i of A starts stride_a floats after matrix i-1. */
ln_status ln_gemm(ln_context *ctx, bool trans_a, bool trans_b, size_t m, size_t n, size_t k,
                  float alpha, ln_dmat a, ln_dmat b, float beta, ln_dmat c, const char *what);
ln_status ln_gemm_batched(ln_context *ctx, bool trans_a, bool trans_b, size_t m, size_t n,
                          size_t k, float alpha, ln_dmat a, size_t stride_a, ln_dmat b,
                          size_t stride_b, float beta, ln_dmat c, size_t stride_c,
                          size_t batch, const char *what);

void ln_params_defaults(const ln_device_info *info, ln_params *p);

/* Argument checks shared by every op. */
#define LN_CHECK_CTX(ctx)                                                                  \
    do {                                                                                   \
        if (!(ctx))                                                                        \
            return ln_fail(NULL, LN_ERROR_INVALID_ARGUMENT, "%s: context is NULL", __func__); \
        ln_clear_error(ctx);                                                               \
    } while (0)

/* Bytes the view touches for a [rows, cols] matrix, to check buffer sizes. */
ln_status ln_check_view(ln_context *ctx, const char *op, const char *name, ln_dmat m,
                        size_t rows, size_t cols);
ln_status ln_check_mem(ln_context *ctx, const char *op, const char *name, cl_mem mem,
                       size_t offset_floats, size_t floats);

/* Semantic attention the straightforward way (src/attention.c): logits
 * [H, n, n] per sequence by GEMM, softmax, P V by GEMM. For comparison. */
ln_status ln_semantic_attention_naive(ln_context *ctx, size_t batch, size_t n, size_t width,
                                      size_t head_dim, size_t d, ln_dmat q, ln_dmat k, ln_dmat v,
                                      cl_mem unit, cl_mem s, cl_mem temperature, cl_mem lengths,
                                      ln_dmat out);

/* Optional device-time accounting for bench/ln_bench.c. While a profile is
 * attached to a context (on the calling thread), ln_enqueue and ln_gemm /
 * ln_gemm_batched wait for each launch and add its OpenCL profiling time
 * (the queue has CL_QUEUE_PROFILING_ENABLE) to an entry keyed by the
 * kernel's name (or "gemm" and its shape) and the op that launched it.
 * Detached (the default), the hooks cost one thread-local pointer test per
 * launch. It serialises the queue, so time a run without a profile and
 * profile a separate one. The pointer lives beside the context (context.c)
 * rather than in it, so struct ln_context keeps its layout. */
#define LN_PROFILE_ENTRIES 64
typedef struct ln_profile_entry {
    char kernel[48];  /* the kernel's function name, or "gemm" */
    char what[40];    /* the op that launched it ("ln_linear", ...) */
    size_t m, n, k;   /* GEMM shape (one matrix of a batch); 0 for kernels */
    size_t batch;     /* GEMM batch count; 0 for kernels */
    unsigned count;   /* launches summed here */
    double ms;        /* device milliseconds summed */
} ln_profile_entry;
typedef struct ln_profile {
    int count;
    unsigned dropped; /* launches that found no free entry */
    ln_profile_entry entry[LN_PROFILE_ENTRIES];
} ln_profile;
/* Attaches p to ctx for the calling thread (NULL detaches); destroying ctx
 * detaches it. */
void ln_profile_attach(ln_context *ctx, ln_profile *p);
ln_profile *ln_profile_of(const ln_context *ctx);
/* For ln_gemm: with a profile, finishes the queue and returns a marker
 * that starts the timed span (NULL without a profile or on failure). */
cl_event ln_profile_begin(ln_context *ctx);
/* Waits for `last`, adds END(last) - END(start) (start NULL: END - START
 * of last) to the entry of (kernel, what, shape), and releases both. */
void ln_profile_end(ln_context *ctx, cl_event start, cl_event last, const char *kernel,
                    const char *what, size_t m, size_t n, size_t k, size_t batch);

#endif
