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
    size_t vec_elementwise; /* epilogue columns per work-item, at most (a power of 2 <= 16) */
    /* semantic attention */
    int attn_mode;        /* ln_attention_mode; AUTO resolves by memory budget */
    size_t attn_tile_q;   /* queries per work-group */
    size_t attn_tile_k;   /* keys per local-memory tile */
    uint64_t attn_s_budget_bytes; /* precompute S while B n^2 floats fit */
    int attn_kernel;      /* ln_attention_kernel: which kernel runs the fused path */
    size_t chunk_rows;    /* the model's chunks hold at most this many rows (B n) */
} ln_params;

/* The kernels of the fused attention path (cl/attention.cl): AUTO takes
 * attention_rows on a GPU when S is precomputed and head_dim allows it,
 * else attention_fused. TILES: attention_tiles where head_dim allows it
 * (a multiple of 8), else attention_rows; it reads S like them. */
typedef enum ln_attention_kernel {
    LN_ATTENTION_KERNEL_AUTO = 0,
    LN_ATTENTION_KERNEL_FUSED = 1,
    LN_ATTENTION_KERNEL_ROWS = 2,
    LN_ATTENTION_KERNEL_TILES = 3,
} ln_attention_kernel;
/* Their names as LN_ATTENTION_KERNEL takes them, in that order (src/context.c). */
extern const char *const ln_attention_kernel_names[4];

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
    bool fp32_fma; /* CL_FP_FMA: fma() on floats is a hardware instruction */
    /* The most work-groups one launch puts along dimension 1 or 2:
     * LN_MAX_GROUPS_YZ (ln_enqueue slices larger ranges); tests lower it to
     * run the slicing on small problems. */
    size_t max_groups_yz;
    /* The most rows of C one CLBlast GEMM call computes: LN_GEMM_ROWS
     * (ln_gemm splits taller ones); tests lower it. */
    size_t gemm_rows;
    /* ln_semantic_attention_layer launches branch by branch even where one
     * launch could run them all: ln-bench's --attention-per-branch and the
     * tests set it, to compare the two. */
    bool attn_per_branch;
    /* ln_gemm's layout per call shape, as CLBlast's temporary-buffer sizes
     * decided it under the GEMM parameters of override generation
     * `generation` (src/linear.c); gemm_layout forces one (tests). */
    struct {
        size_t key[10];
        unsigned long generation;
        bool used, col_major;
    } gemm_layouts[64];
    int gemm_layout_next;
    int gemm_layout; /* ln_gemm_layout */
    /* Cache counters and the loaded tuning table (src/tune_cache.c): made
     * by ln_context_create, freed by ln_context_destroy; NULL only if that
     * allocation failed (then the caches are simply not used). */
    struct ln_cache_state *cache;
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

/* A file embedded at build time by cmake/embed_cl.cmake: the kernel
 * sources (ln_embedded_kernels, one per cl/<family>.cl) and, in ln-run, the
 * demo's data (ln_demo_files). */
struct ln_embedded_kernel {
    const char *family;
    const char *source;
    size_t length;
};
extern const struct ln_embedded_kernel ln_embedded_kernels[];
extern const size_t ln_embedded_kernels_count;
extern const struct ln_embedded_kernel ln_demo_files[];

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

/* NVIDIA's OpenCL runs a range as a CUDA grid, which takes at most 65535
 * work-groups along dimensions 1 and 2 (CUDA's gridDim.y and z); OpenCL
 * itself sets no such limit. The model's chunks stay inside it (2^16 rows
 * at most), but the ops take any number of rows or sequences. */
#define LN_MAX_GROUPS_YZ 65535
/* ln_gemm's rows per CLBlast call (src/linear.c says why). */
#define LN_GEMM_ROWS ((size_t)1 << 18)

/* Enqueue a 1-, 2- or 3-D range: `global` is rounded up to a multiple of the
 * local size (kernels guard), and the local size is clamped to the
 * kernel's CL_KERNEL_WORK_GROUP_SIZE. `local` entries are the wish. A
 * range with more than ctx->max_groups_yz work-groups along dimension 1
 * or 2 runs as several launches with global offsets, on every device, so
 * kernels read those two dimensions through get_global_id (never
 * get_group_id) and never across work-groups. */
ln_status ln_enqueue(ln_context *ctx, cl_kernel kernel, cl_uint dims, const size_t *global,
                     const size_t *local, const char *what);
/* The work-group size a kernel may use on this device, <= wish, >= 1, and
 * for reductions a power of two when pow2 is set. */
size_t ln_kernel_wg_size(ln_context *ctx, cl_kernel kernel, size_t wish, bool pow2);

/* Tracked device buffers: counted toward ln_context_device_bytes and the
 * optional cap (LN_DEVICE_MEMORY_LIMIT_MB). */
ln_status ln_buffer_create(ln_context *ctx, size_t bytes, cl_mem *out, const char *what);
void ln_buffer_release(ln_context *ctx, cl_mem mem);

/* Host-wrapper helpers: copy host data in/out of a fresh tracked buffer.
 * Both copies are blocking, so `data` is free to go when they return. */
ln_status ln_buffer_from_host(ln_context *ctx, const void *data, size_t bytes, cl_mem *out,
                              const char *what);
ln_status ln_buffer_to_host(ln_context *ctx, cl_mem mem, void *data, size_t bytes);

/* GEMMs through CLBlast (src/linear.c), row-major:
 *   C[m, n] = alpha * op(A) op(B) + beta * C, op = transpose when trans_*.
 * Strided-batched: matrix i of A starts stride_a floats after matrix i-1.
 * CLBlast is called row-major, or column-major on C^T = op(B)^T op(A)^T
 * (the same memory), whichever CLBlast copies less for (ln_gemm_layout). */
ln_status ln_gemm(ln_context *ctx, bool trans_a, bool trans_b, size_t m, size_t n, size_t k,
                  float alpha, ln_dmat a, ln_dmat b, float beta, ln_dmat c, const char *what);
ln_status ln_gemm_batched(ln_context *ctx, bool trans_a, bool trans_b, size_t m, size_t n,
                          size_t k, float alpha, ln_dmat a, size_t stride_a, ln_dmat b,
                          size_t stride_b, float beta, ln_dmat c, size_t stride_c,
                          size_t batch, const char *what);
typedef enum ln_gemm_layout {
    LN_GEMM_LAYOUT_AUTO = 0, /* by CLBlast's temporary-buffer sizes, cached per shape */
    LN_GEMM_LAYOUT_ROW_MAJOR = 1,
    LN_GEMM_LAYOUT_COL_MAJOR = 2,
} ln_gemm_layout;
/* Whether ln_gemm calls CLBlast column-major for this call (see above). */
bool ln_gemm_col_major(ln_context *ctx, bool trans_a, bool trans_b, size_t m, size_t n, size_t k,
                       ln_dmat a, ln_dmat b, ln_dmat c);

/* ln_linear with the weight stored transposed, wt = W^T [in, out]: the
 * model's layout, whose GEMM CLBlast runs without transposing (linear.c). */
ln_status ln_linear_wt(ln_context *ctx, size_t rows, size_t in, size_t out, ln_dmat x,
                       ln_dmat wt, cl_mem bias, size_t bias_offset, ln_epilogue epilogue,
                       ln_dmat residual, ln_dmat y);

/* x += bias[bias_offset ..] in place (each row), then y = LayerNorm(x):
 * the bias of the GEMM that wrote x, added without a launch of its own.
 * x and y must not overlap unless they are the same view. */
ln_status ln_layernorm_add_bias(ln_context *ctx, size_t rows, size_t width, ln_dmat x,
                                cl_mem bias, size_t bias_offset, cl_mem gamma, cl_mem beta,
                                float eps, ln_dmat y);

/* A layer's branches in one launch, laid out as src/model.c does where
 * one launch runs every branch's attention: count (1..16) branches of
 * these widths, branch k's columns starting at column_k = the sum of the
 * widths before it. ln_branch_widths checks them and packs them for the
 * kernels.
 * ln_layernorm_branches: branch k's column slice of x ([rows, sum]
 * view), plus bias[column_k ..] first where bias is not NULL (written
 * back, as ln_layernorm_add_bias), normalised into y's dense block
 * [rows, w_k] at rows * column_k; bias, gamma, beta concatenated [sum].
 * ln_add_bias_blocks: y's dense blocks [rows, per w_k] at
 * rows * per * column_k += bias[per column_k ..] (bias [per sum]), then
 * GELU where gelu is set (the Linear epilogue's). */
ln_status ln_branch_widths(ln_context *ctx, const char *op, size_t count, const size_t *width,
                           cl_uint16 *packed, size_t *sum);
ln_status ln_layernorm_branches(ln_context *ctx, size_t rows, size_t count, const size_t *width,
                                ln_dmat x, cl_mem bias, cl_mem gamma, cl_mem beta, float eps,
                                cl_mem y);
ln_status ln_add_bias_blocks(ln_context *ctx, size_t rows, size_t count, const size_t *width,
                             size_t per, bool gelu, cl_mem y, cl_mem bias);

/* ln_positional_add with W2 stored transposed, w2t = W2^T [hidden, d]:
 * the model's layout (ln_linear_wt); its hidden layer in scratch where
 * that is not NULL and holds batch n hidden floats (else a buffer of its
 * own). */
ln_status ln_positional_add_wt(ln_context *ctx, size_t batch, size_t n, size_t d, size_t hidden,
                               cl_mem positions, cl_mem w1, cl_mem b1, cl_mem w2t, cl_mem b2,
                               cl_mem x, cl_mem out, cl_mem scratch);

/* Unit rows of `batch` sequences of n rows (x and y dense [batch n,
 * width], three distinct buffers with yt) that also writes each
 * sequence's u^T to yt ([batch][width][n]), for ln_similarity_t. Only
 * where ln_unit_rows_t_supported: devices that take rows one per
 * work-item (CPUs), where CLBlast's transpose pass over the second operand
 * of S = u u^T cost more than these writes (src/model.c has the numbers). */
bool ln_unit_rows_t_supported(const ln_context *ctx, size_t width);
ln_status ln_unit_rows_t(ln_context *ctx, size_t batch, size_t n, size_t width, cl_mem x,
                         cl_mem y, cl_mem yt);
/* ln_similarity from unit and its transposes (ln_unit_rows_t's yt). */
ln_status ln_similarity_t(ln_context *ctx, size_t batch, size_t n, size_t d, cl_mem unit,
                          cl_mem unit_t, cl_mem s);

/* A Linear's epilogue alone, in place on y [rows, cols] (cl/linear.cl):
 * + bias, + bias then GELU, or + bias + residual (residual.mem NULL: bias
 * only). No argument checks: callers have made them. */
ln_status ln_epilogue_apply(ln_context *ctx, const char *op, size_t rows, size_t cols, ln_dmat y,
                            cl_mem bias, size_t bias_offset, ln_epilogue epilogue,
                            ln_dmat residual);

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

/* Writes a printf-style reason into why[cap] (nothing when why is NULL):
 * the validators of tuning files and CLBlast parameters say why they refuse. */
void ln_why_set(char *why, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Which kernel the fused attention path runs for these params and shapes
 * (true: a GPU kernel reading S, attention_rows or attention_tiles; false:
 * attention_fused), and the local memory (floats) it needs at the params'
 * tiles; ln-tune uses both to skip candidates the library would have to
 * shrink. */
bool ln_attention_uses_rows(const ln_context *ctx, const ln_params *p, size_t head_dim,
                            bool recompute);
size_t ln_attention_local_floats(const ln_context *ctx, const ln_params *p, size_t heads,
                                 size_t head_dim, size_t d, bool recompute);

/* A layer's branches in blocks, as the model lays them out (src/model.c):
 * branch k's q, k and v are a dense [rows, 3 w_k] block at element
 * rows * 3 c_k of qkv, its result a dense [rows, w_k] block at rows * c_k
 * of out, where c_k is the sum of the widths before it. Every GEMM of a
 * branch then reads and writes dense matrices (ld = width). With the
 * branches side by side in rows instead (wider leading dimensions), the
 * step-by-step forward took 4-9% longer than branch by branch at B = 1,
 * n = 1024 and B = 8, n = 256 on the 2-core PoCL machine; with blocks,
 * 1-7% (three alternating ln-bench runs each). */
typedef struct ln_attention_layer {
    size_t count;               /* branches */
    const size_t *width;        /* each a multiple of head_dim */
    const cl_mem *temperature;  /* each branch's [w_k / head_dim] */
    cl_mem all_temperature;     /* the same, concatenated in branch order */
    cl_mem head_table;          /* ln_attention_head_table of these widths */
} ln_attention_layer;

/* Branch k's blocks in that layout: its q, k and v ([rows, 3 w] at
 * rows * 3 c) and its result ([rows, w] at rows * c), c its first column. */
static inline ln_dmat ln_layer_qkv_block(cl_mem qkv, size_t rows, size_t column, size_t width)
{
    ln_dmat m = {qkv, rows * 3 * column, 3 * width};
    return m;
}
static inline ln_dmat ln_layer_out_block(cl_mem out, size_t rows, size_t column, size_t width)
{
    ln_dmat m = {out, rows * column, width};
    return m;
}

/* attention_rows' table for a layer of branches of these widths: per
 * head, uint32 3 c_k, w_k, c_k and its first column in its branch. */
ln_status ln_attention_head_table(ln_context *ctx, size_t count, const size_t *width,
                                  size_t head_dim, cl_mem *out);

/* Whether ln_semantic_attention_layer runs every branch in one launch at
 * this shape and mode (AUTO: as ln_attention_resolve_mode resolves it). */
bool ln_attention_layer_in_one_launch(ln_context *ctx, size_t batch, size_t n, size_t head_dim,
                                      ln_attention_mode mode);

/* Semantic attention of every branch of a layer (qkv: [rows, 3 sum] and
 * out: [rows, sum] floats, laid out as ln_attention_layer says): where
 * attention_rows would run each branch, one launch of it runs them all
 * (unless ctx->attn_per_branch); else one ln_semantic_attention per
 * branch. unit, s, lengths and mode as ln_semantic_attention takes them. */
ln_status ln_semantic_attention_layer(ln_context *ctx, size_t batch, size_t n, size_t head_dim,
                                      size_t d, const ln_attention_layer *layer, cl_mem qkv,
                                      cl_mem unit, cl_mem s, cl_mem lengths,
                                      ln_attention_mode mode, cl_mem out);

/* Sequences per chunk of the model's forward (src/model.c): S and the
 * workspace are sized for this many; the attention mode is
 * ln_attention_resolve_mode(ctx, chunk, n). For benchmarks and tests. */
size_t ln_model_chunk_sequences(const ln_context *ctx, size_t batch, size_t n);

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

/* ------------------------------------------------ caches (issue 5) */
/* The on-disk caches: program binaries (src/binary_cache.c) and tuned
 * parameters (src/tune_cache.c), both under ln_cache_subdir(). */

/* Bumped when a cache file's layout changes; old files are then misses. */
#define LN_CACHE_FORMAT_VERSION 1u
/* Bumped when ln-tune measures differently; tuning files of another
 * version are ignored as stale. */
#define LN_TUNER_VERSION 5u /* 2: CLBlast GEMM entries, CLBlast version in the key; 3: CLBlast
                              * sets chosen with USE_VECTOR_MAD on PoCL (gemm_tuning.c); 4:
                              * the model's GEMMs timed against W^T [in, out] (linear.c); 5:
                              * attention timed over every branch of a layer (tune/ln_tune.c),
                              * which changes its S-mode choice */
/* Options every program is built with, before the family's own. */
#define LN_BUILD_OPTIONS_BASE "-cl-std=CL1.2"

#define LN_FNV_OFFSET 0xcbf29ce484222325ull
/* FNV-1a 64 of `n` bytes, continuing from `h` (start with LN_FNV_OFFSET). */
uint64_t ln_fnv1a64(uint64_t h, const void *data, size_t n);
/* False when LN_TUNE_CACHE=off (or 0, no, false): no cache is read or written. */
bool ln_cache_enabled(void);
/* <cache>/<sub> made if missing (mode 0777 minus umask), where <cache> is
 * $LN_CACHE_DIR, else $XDG_CACHE_HOME/ln-cl, else $HOME/.cache/ln-cl.
 * False when caching is off, no base directory is known or mkdir fails. */
bool ln_cache_subdir(const char *sub, char *path, size_t cap);
/* FNV-1a 64 of LN_BUILD_OPTIONS_BASE and every embedded family's name
 * and source: a tuning file made for other kernels is stale. */
uint64_t ln_kernel_sources_hash(void);

/* Program-binary cache, used by ln_program_get. `full_options` is the
 * whole option string given to clBuildProgram. load returns a built
 * program or NULL (absent, stale, corrupt, refused: then build from
 * source); neither ever fails the caller or leaves an error message. */
cl_program ln_binary_cache_load(ln_context *ctx, const char *family, const char *source,
                                size_t length, const char *full_options);
void ln_binary_cache_store(ln_context *ctx, const char *family, const char *source,
                           size_t length, const char *full_options, cl_program prog);
/* Path of the binary for this key (whether or not it exists); false when
 * caching is off. For tests and ln-tune --show. */
bool ln_binary_cache_path(const ln_context *ctx, const char *family, const char *source,
                          size_t length, const char *full_options, char *path, size_t cap);

/* Tuned parameters: the ln_params fields ln-tune sets, by index. */
enum {
    LN_TP_WG_LAYERNORM = 0,
    LN_TP_WG_ELEMENTWISE,
    LN_TP_ATTN_MODE,
    LN_TP_ATTN_TILE_Q,
    LN_TP_ATTN_TILE_K,
    LN_TP_ATTN_KERNEL, /* per shape, only where the context's kernel is AUTO */
    LN_TP_COUNT
};
extern const char *const ln_tune_param_names[LN_TP_COUNT];

/* One tuning result: a kernel family at a shape bucket (batch and n
 * rounded up to powers of two), the values it sets (-1: not set) and the
 * median times of the default and the tuned values in microseconds. */
/* CLBlast's GEMM kernels whose parameters ln-tune sets (src/gemm_tuning.c).
 * Their entries are kernel "clblast-<name>", shape = the largest (B, n) the
 * set was chosen over, and either every parameter of the kernel (what
 * CLBlastOverrideParameters wants) or none (measured: CLBlast's own
 * choice kept). */
enum { LN_CB_XGEMM = 0, LN_CB_XGEMM_DIRECT, LN_CB_GEMM_ROUTINE, LN_CB_COUNT };
#define LN_CB_MAX_PARAMS 16
typedef struct ln_clblast_kernel {
    const char *entry; /* the tuning file's kernel name: "clblast-Xgemm" */
    const char *name;  /* CLBlast's: "Xgemm" */
    int count;
    const char *params[LN_CB_MAX_PARAMS]; /* CLBlast 1.5's names, sorted */
} ln_clblast_kernel;
extern const ln_clblast_kernel ln_clblast_kernels[LN_CB_COUNT];
/* LN_CB_* of a tuning-file kernel name, or -1. */
int ln_clblast_kernel_of(const char *entry_kernel);
/* Index of `param` in ln_clblast_kernels[kernel].params, or -1. */
int ln_clblast_param_of(int kernel, const char *param);

typedef struct ln_tune_entry {
    char kernel[32]; /* "layernorm", "elementwise", "attention", "clblast-Xgemm", ... */
    uint64_t batch, n;
    long long value[LN_TP_COUNT];
    long long clblast[LN_CB_MAX_PARAMS]; /* clblast-* entries, in params order; -1: unset */
    double default_us, tuned_us;
} ln_tune_entry;

typedef struct ln_tune_table {
    ln_tune_entry *entries;
    size_t count, cap;
} ln_tune_table;

typedef enum ln_tune_file_result {
    LN_TUNE_FILE_OK = 0,
    LN_TUNE_FILE_ABSENT,
    LN_TUNE_FILE_CORRUPT, /* unreadable, not JSON, wrong types or values */
    LN_TUNE_FILE_STALE    /* valid, but made for another device, driver, kernels or tuner */
} ln_tune_file_result;

/* Smallest power of two >= x (1 for 0); shapes are tuned per bucket. */
uint64_t ln_tune_bucket(uint64_t x);
/* "B1-n1024" for the bucket of (batch, n). */
void ln_tune_shape_name(uint64_t batch, uint64_t n, char *buf, size_t cap);
/* An entry with no values set, for (kernel, bucket of batch and n). */
void ln_tune_entry_init(ln_tune_entry *e, const char *kernel, uint64_t batch, uint64_t n);
/* Adds e, replacing the entry of the same kernel and shape. */
ln_status ln_tune_table_put(ln_tune_table *t, const ln_tune_entry *e);
void ln_tune_table_free(ln_tune_table *t);

/* tuning/<sanitised platform and device>.json; false when caching is off. */
bool ln_tune_file_path(const ln_device_info *info, char *path, size_t cap);
/* Reads and validates a tuning file against `info` (the key: platform name
 * and version, device, driver, compute units, kernel hash, tuner version).
 * On anything but OK, `why` says what (and *out is empty). OK with a
 * non-empty `why`: only the kernel hash differed, and *out holds the
 * file's CLBlast GEMM entries alone (they do not depend on ln-cl's
 * kernels). Never crashes on any content. */
ln_tune_file_result ln_tune_file_read(const ln_device_info *info, const char *path,
                                      ln_tune_table *out, char *why, size_t why_cap);
/* Merges `count` entries into the file at `path` under an flock on
 * <path>.lock: re-reads what is there (a stale or corrupt file is
 * replaced), puts the new entries over it and writes it atomically, so two
 * tuners running at once both keep their results. */
ln_status ln_tune_file_merge(ln_context *ctx, const ln_device_info *info, const char *path,
                             const ln_tune_entry *add, size_t count);
/* Sets p from a table: per kernel, the entry of the largest shape (n,
 * then batch) gives the work-group sizes and attention tiles; attn_mode
 * only when every attention entry agrees. Returns how many values it set. */
int ln_tune_apply(const ln_tune_table *t, const ln_device_info *info, ln_params *p);

/* Per-context cache state (ctx->cache): counters of the binary cache and
 * the loaded tuning table. */
typedef struct ln_cache_state {
    unsigned binary_hits, binary_misses, binary_stores, binary_rejects;
    ln_tune_table tuning;
    int tuned_values; /* values ln_tune_apply set from the file */
    int clblast_applied, clblast_rejected; /* CLBlast sets of the file */
    char tuning_path[1024];
} ln_cache_state;
/* ctx->cache; NULL when ctx is NULL or its allocation failed. */
ln_cache_state *ln_cache_state_of(const ln_context *ctx);
/* Called by ln_context_create before anything uses the caches: allocates
 * ctx->cache (left NULL when out of memory). */
void ln_tune_context_init(ln_context *ctx);
/* True unless ln-tune cleared it: ln_tune_context_load then only finds the
 * file's path. ln-tune measures the defaults first, so its context must
 * not run with an earlier run's values (CLBlast's cannot be undone). */
extern bool ln_tune_load_on_create;
/* Called at the end of ln_context_create: loads the device's tuning file
 * (unless LN_TUNE_CACHE=off), applies it to ctx->params, warns on stderr
 * about an ignored file. Never fails. */
void ln_tune_context_load(ln_context *ctx);
/* Called by ln_context_destroy: drops the context's cache state. */
void ln_tune_context_free(ln_context *ctx);
/* The tuned parameters for one shape: ctx->params with the values of the
 * entries at the bucket of (batch, n) laid over it. For ops that want the
 * per-bucket values (attention); false when no entry matches. */
bool ln_tuned_params_for(const ln_context *ctx, const char *kernel, size_t batch, size_t n,
                         ln_params *out);
/* The largest n (a bucket) the context's tuning file has an entry of
 * `kernel` at; 0 when it has none. */
uint64_t ln_tuned_largest_n(const ln_context *ctx, const char *kernel);

/* CLBlast GEMM parameters (src/gemm_tuning.c). */
/* Whether CLBlast can run `v` (ln_clblast_kernels[kernel].count values in
 * params order) on this device: every value set and in range, CLBlast's
 * own tuner constraints (e.g. MWG % (MDIMC * VWM) == 0), the work-group
 * size (at most wg_cap) and local memory. False with `why` otherwise: CLBlast
 * itself would compile such a set and compute garbage or fail at launch. */
bool ln_clblast_params_valid(int kernel, const long long *v, const ln_device_info *info,
                             size_t wg_cap, char *why, size_t why_cap);
/* Validates `v` and hands it to CLBlastOverrideParameters for `device`
 * (single precision); CLBlast then rebuilds its GEMM program on the next
 * call. Records the set process-wide (see ln_clblast_overrides_on). False
 * with `why` when refused. */
bool ln_clblast_override(cl_device_id device, const ln_device_info *info, int kernel,
                         const long long *v, char *why, size_t why_cap);
/* How many CLBlast kernels carry an override on `device` in this process;
 * *min_indirect gets the GemmRoutine value, -1 without one. */
int ln_clblast_overrides_on(cl_device_id device, long long *min_indirect);
/* Counts the overrides handed to CLBlast in this process, on any device:
 * what CLBlast decided under one count may differ under the next. */
unsigned long ln_clblast_override_generation(void);
/* ln_tune_context_load's part for CLBlast: per kernel, the set of the
 * entry at the largest shape (an empty set keeps CLBlast's own), each
 * invalid one ignored with a warning on stderr. */
void ln_clblast_apply(ln_context *ctx, const ln_tune_table *t, int *applied, int *rejected);
/* clBuildProgram for `ctx`'s device (src/program.c; PoCL's options leak
 * kept out of LeakSanitizer's reports). */
cl_int ln_build_program(ln_context *ctx, cl_program prog, const char *options);
/* On PoCL, the build flag CLBlast's vector kernels need (gemm_tuning.c);
 * called before anything builds on the device. */
void ln_clblast_prepare_compiler(const ln_device_info *info);

#endif
