/*
 * program.c: the kernel sources embedded at build time, per-device program
 * builds cached in the context (one per family and options string) and on
 * disk (src/binary_cache.c), and the launch helper that pads global sizes
 * and clamps work-group sizes.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* Under AddressSanitizer, allocations made inside clBuildProgram are not
 * counted as leaks: PoCL 3.1 leaks its copy of the build options on every
 * successful build while POCL_EXTRA_BUILD_FLAGS is set (ln-cl sets it on
 * PoCL, src/gemm_tuning.c), from PoCL frames no suppression can name.
 * Only the build call is covered: a cl_program or kernel ln-cl forgets to
 * release is allocated elsewhere and still reported. */
#if defined(__SANITIZE_ADDRESS__)
#define LN_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LN_LSAN 1
#endif
#endif
#ifdef LN_LSAN
#include <sanitizer/lsan_interface.h>
#endif

cl_int ln_build_program(ln_context *ctx, cl_program prog, const char *options)
{
#ifdef LN_LSAN
    __lsan_disable();
#endif
    cl_int err = clBuildProgram(prog, 1, &ctx->device, options, NULL, NULL);
#ifdef LN_LSAN
    __lsan_enable();
#endif
    return err;
}

static void drop_kernels_of(ln_context *ctx, cl_program prog);

const char *ln_kernel_source(const char *family, size_t *length)
{
    for (size_t i = 0; i < ln_embedded_kernels_count; i++)
        if (strcmp(ln_embedded_kernels[i].family, family) == 0) {
            if (length)
                *length = ln_embedded_kernels[i].length;
            return ln_embedded_kernels[i].source;
        }
    return NULL;
}

static ln_status build_failed(ln_context *ctx, cl_program prog, cl_int err, const char *family,
                              const char *options)
{
    size_t log_size = 0;
    clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &log_size);
    char *log = malloc(log_size + 1);
    if (log) {
        if (clGetProgramBuildInfo(prog, ctx->device, CL_PROGRAM_BUILD_LOG, log_size, log, NULL) !=
            CL_SUCCESS)
            log_size = 0;
        log[log_size] = '\0';
    }
    ln_fail(ctx, LN_ERROR_BUILD_FAILED, "building kernels cl/%s.cl with \"%s\" failed (%s):\n%s",
            family, options, ln_cl_error_name(err), log ? log : "(no build log)");
    free(log);
    clReleaseProgram(prog);
    return LN_ERROR_BUILD_FAILED;
}

ln_status ln_program_get(ln_context *ctx, const char *family, const char *options,
                         cl_program *out)
{
    *out = NULL;
    if (!options)
        options = "";
    for (int i = 0; i < ctx->program_count; i++)
        if (strcmp(ctx->programs[i].family, family) == 0 &&
            strcmp(ctx->programs[i].options, options) == 0) {
            *out = ctx->programs[i].program;
            return LN_SUCCESS;
        }
    if (strlen(options) >= sizeof(ctx->programs[0].options))
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "build options for %s too long", family);
    if (ctx->program_count == LN_MAX_PROGRAMS) {
        /* Programs are small; dropping the oldest keeps memory bounded when
         * a tuner tries many variants. Kernels made from it stay valid. */
        drop_kernels_of(ctx, ctx->programs[0].program);
        clReleaseProgram(ctx->programs[0].program);
        memmove(&ctx->programs[0], &ctx->programs[1],
                sizeof(ctx->programs[0]) * (LN_MAX_PROGRAMS - 1));
        ctx->program_count--;
    }
    size_t length = 0;
    const char *source = ln_kernel_source(family, &length);
    if (!source)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "no kernel family \"%s\" is embedded",
                       family);
    char full[640];
    snprintf(full, sizeof(full), "%s %s", LN_BUILD_OPTIONS_BASE, options);
    /* The disk cache first (src/binary_cache.c): 0.003 s instead of 0.55 s
     * per family on PoCL. Any trouble there means building from source. */
    cl_program prog = ln_binary_cache_load(ctx, family, source, length, full);
    if (!prog) {
        cl_int err;
        prog = clCreateProgramWithSource(ctx->cl, 1, &source, &length, &err);
        if (!prog)
            return ln_fail_cl(ctx, err, "clCreateProgramWithSource");
        err = ln_build_program(ctx, prog, full);
        if (err != CL_SUCCESS)
            return build_failed(ctx, prog, err, family, full);
        ln_binary_cache_store(ctx, family, source, length, full, prog);
    }
    ln_program_entry *e = &ctx->programs[ctx->program_count++];
    e->family = family;
    snprintf(e->options, sizeof(e->options), "%s", options);
    e->program = prog;
    *out = prog;
    return LN_SUCCESS;
}

static void drop_kernels_of(ln_context *ctx, cl_program prog)
{
    int kept = 0;
    for (int i = 0; i < ctx->kernel_count; i++) {
        if (ctx->kernels[i].program == prog)
            clReleaseKernel(ctx->kernels[i].kernel);
        else
            ctx->kernels[kept++] = ctx->kernels[i];
    }
    ctx->kernel_count = kept;
}

ln_status ln_kernel_get(ln_context *ctx, const char *family, const char *options,
                        const char *kernel_name, cl_kernel *out)
{
    cl_program prog;
    ln_status st = ln_program_get(ctx, family, options, &prog);
    if (st != LN_SUCCESS)
        return st;
    for (int i = 0; i < ctx->kernel_count; i++)
        if (ctx->kernels[i].program == prog && strcmp(ctx->kernels[i].name, kernel_name) == 0) {
            *out = ctx->kernels[i].kernel;
            return LN_SUCCESS;
        }
    if (strlen(kernel_name) >= sizeof(ctx->kernels[0].name))
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "kernel name %s too long", kernel_name);
    if (ctx->kernel_count == (int)(sizeof(ctx->kernels) / sizeof(ctx->kernels[0]))) {
        clReleaseKernel(ctx->kernels[0].kernel);
        memmove(&ctx->kernels[0], &ctx->kernels[1], sizeof(ctx->kernels[0]) * (size_t)(ctx->kernel_count - 1));
        ctx->kernel_count--;
    }
    cl_int err;
    cl_kernel k = clCreateKernel(prog, kernel_name, &err);
    if (!k)
        return ln_fail(ctx, (ln_status)err, "clCreateKernel(%s) from cl/%s.cl: %s", kernel_name,
                       family, ln_cl_error_name(err));
    ln_kernel_entry *e = &ctx->kernels[ctx->kernel_count++];
    e->program = prog;
    snprintf(e->name, sizeof(e->name), "%s", kernel_name);
    e->kernel = k;
    *out = k;
    return LN_SUCCESS;
}

size_t ln_kernel_wg_size(ln_context *ctx, cl_kernel kernel, size_t wish, bool pow2)
{
    size_t limit = 0;
    if (clGetKernelWorkGroupInfo(kernel, ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof(limit),
                                 &limit, NULL) != CL_SUCCESS || limit == 0)
        limit = 1;
    size_t wg = wish < limit ? wish : limit;
    if (wg == 0)
        wg = 1;
    if (pow2) {
        size_t p = 1;
        while (p * 2 <= wg)
            p *= 2;
        wg = p;
    }
    return wg;
}

ln_status ln_enqueue(ln_context *ctx, cl_kernel kernel, cl_uint dims, const size_t *global,
                     const size_t *local, const char *what)
{
    size_t g[3] = {1, 1, 1}, l[3] = {1, 1, 1};
    size_t limit = ln_kernel_wg_size(ctx, kernel, SIZE_MAX, false);
    size_t total = 1;
    for (cl_uint i = 0; i < dims; i++) {
        l[i] = local[i] ? local[i] : 1;
        total *= l[i];
    }
    /* Shrink the largest dimension until the group fits the kernel's limit. */
    while (total > limit) {
        cl_uint big = 0;
        for (cl_uint i = 1; i < dims; i++)
            if (l[i] > l[big])
                big = i;
        total /= l[big];
        l[big] = (l[big] + 1) / 2;
        total *= l[big];
    }
    for (cl_uint i = 0; i < dims; i++) {
        if (global[i] == 0)
            return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "%s: empty launch (dimension %u)",
                           what, (unsigned)i);
        g[i] = (global[i] + l[i] - 1) / l[i] * l[i];
    }
    /* Slices of at most max_groups_yz work-groups along dimensions 1 and 2
     * (internal.h says why), each launched with its global offset. */
    const size_t most = ctx->max_groups_yz ? ctx->max_groups_yz : LN_MAX_GROUPS_YZ;
    size_t step[3] = {g[0], 1, 1}, offset[3] = {0, 0, 0}, size[3] = {g[0], 1, 1};
    for (cl_uint i = 1; i < dims; i++)
        step[i] = g[i] / l[i] > most ? most * l[i] : g[i];
    const bool profiled = ln_profile_of(ctx) != NULL; /* bench/ln_bench.c */
    for (offset[2] = 0; offset[2] < (dims > 2 ? g[2] : 1); offset[2] += step[2]) {
        if (dims > 2)
            size[2] = g[2] - offset[2] < step[2] ? g[2] - offset[2] : step[2];
        for (offset[1] = 0; offset[1] < (dims > 1 ? g[1] : 1); offset[1] += step[1]) {
            if (dims > 1)
                size[1] = g[1] - offset[1] < step[1] ? g[1] - offset[1] : step[1];
            cl_event ev = NULL;
            cl_int err = clEnqueueNDRangeKernel(ctx->queue, kernel, dims, offset, size, l, 0,
                                                NULL, profiled ? &ev : NULL);
            if (err != CL_SUCCESS)
                return ln_fail(ctx, (ln_status)err, "%s: launching the kernel failed: %s", what,
                               ln_cl_error_name(err));
            if (profiled) {
                char name[48] = "?";
                if (clGetKernelInfo(kernel, CL_KERNEL_FUNCTION_NAME, sizeof(name), name, NULL) !=
                    CL_SUCCESS)
                    snprintf(name, sizeof(name), "?");
                ln_profile_end(ctx, NULL, ev, name, what, 0, 0, 0, 0);
            }
        }
    }
    return LN_SUCCESS;
}

ln_status ln_set_args(ln_context *ctx, cl_kernel kernel, const char *what, ...)
{
    va_list ap;
    va_start(ap, what);
    cl_uint index = 0;
    for (;;) {
        size_t size = va_arg(ap, size_t);
        if (size == 0)
            break;
        const void *value = va_arg(ap, const void *);
        cl_int err = clSetKernelArg(kernel, index, size, value);
        if (err != CL_SUCCESS) {
            va_end(ap);
            return ln_fail(ctx, (ln_status)err, "%s: setting kernel argument %u failed: %s",
                           what, index, ln_cl_error_name(err));
        }
        index++;
    }
    va_end(ap);
    return LN_SUCCESS;
}
