/*
 * context.c: device discovery and selection, the context and its queue,
 * and the device buffers ln-cl allocates (counted, optionally capped).
 */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LN_MAX_PLATFORMS 16
#define LN_MAX_DEVICES 64

typedef struct found_device {
    cl_platform_id platform;
    cl_device_id device;
    ln_device_info info;
} found_device;

static void query_string(cl_device_id dev, cl_device_info what, char *out, size_t cap)
{
    out[0] = '\0';
    if (clGetDeviceInfo(dev, what, cap, out, NULL) != CL_SUCCESS)
        out[0] = '\0';
    out[cap - 1] = '\0';
}

static void fill_info(cl_platform_id plat, cl_device_id dev, int pi, int di, ln_device_info *info)
{
    memset(info, 0, sizeof(*info));
    info->platform_index = pi;
    info->device_index = di;
    if (clGetPlatformInfo(plat, CL_PLATFORM_NAME, sizeof(info->platform_name),
                          info->platform_name, NULL) != CL_SUCCESS)
        info->platform_name[0] = '\0';
    if (clGetPlatformInfo(plat, CL_PLATFORM_VERSION, sizeof(info->platform_version),
                          info->platform_version, NULL) != CL_SUCCESS)
        info->platform_version[0] = '\0';
    info->platform_name[sizeof(info->platform_name) - 1] = '\0';
    info->platform_version[sizeof(info->platform_version) - 1] = '\0';
    query_string(dev, CL_DEVICE_NAME, info->device_name, sizeof(info->device_name));
    query_string(dev, CL_DEVICE_VERSION, info->device_version, sizeof(info->device_version));
    query_string(dev, CL_DRIVER_VERSION, info->driver_version, sizeof(info->driver_version));
    cl_device_type type = 0;
    clGetDeviceInfo(dev, CL_DEVICE_TYPE, sizeof(type), &type, NULL);
    info->is_gpu = (type & CL_DEVICE_TYPE_GPU) != 0;
    info->is_cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
    cl_uint cu = 0;
    clGetDeviceInfo(dev, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof(cu), &cu, NULL);
    info->compute_units = cu;
    cl_ulong v = 0;
    clGetDeviceInfo(dev, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof(v), &v, NULL);
    info->global_mem_bytes = v;
    v = 0;
    clGetDeviceInfo(dev, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof(v), &v, NULL);
    info->max_alloc_bytes = v;
    v = 0;
    clGetDeviceInfo(dev, CL_DEVICE_LOCAL_MEM_SIZE, sizeof(v), &v, NULL);
    info->local_mem_bytes = v;
    size_t wg = 0;
    clGetDeviceInfo(dev, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof(wg), &wg, NULL);
    info->max_work_group_size = wg ? wg : 1;
    cl_device_fp_config fp64 = 0;
    clGetDeviceInfo(dev, CL_DEVICE_DOUBLE_FP_CONFIG, sizeof(fp64), &fp64, NULL);
    info->has_fp64 = fp64 != 0;
}

/* Every device of every platform, in platform then device order. A
 * platform that fails to answer is skipped rather than failing the list. */
static int enumerate(found_device *out, int cap)
{
    cl_platform_id plats[LN_MAX_PLATFORMS];
    cl_uint np = 0;
    if (clGetPlatformIDs(LN_MAX_PLATFORMS, plats, &np) != CL_SUCCESS)
        return 0;
    if (np > LN_MAX_PLATFORMS)
        np = LN_MAX_PLATFORMS;
    int count = 0;
    for (cl_uint p = 0; p < np; p++) {
        cl_device_id devs[LN_MAX_DEVICES];
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, LN_MAX_DEVICES, devs, &nd) != CL_SUCCESS)
            continue;
        if (nd > LN_MAX_DEVICES)
            nd = LN_MAX_DEVICES;
        for (cl_uint d = 0; d < nd && count < cap; d++) {
            out[count].platform = plats[p];
            out[count].device = devs[d];
            fill_info(plats[p], devs[d], (int)p, (int)d, &out[count].info);
            count++;
        }
    }
    return count;
}

ln_status ln_device_list(ln_device_info *infos, int capacity, int *count)
{
    if (!count || capacity < 0 || (capacity > 0 && !infos))
        return ln_fail(NULL, LN_ERROR_INVALID_ARGUMENT,
                       "ln_device_list: count is NULL or infos/capacity inconsistent");
    found_device found[LN_MAX_DEVICES];
    int n = enumerate(found, LN_MAX_DEVICES);
    for (int i = 0; i < n && i < capacity; i++)
        infos[i] = found[i].info;
    *count = n;
    return LN_SUCCESS;
}

static bool contains_nocase(const char *hay, const char *needle)
{
    size_t nl = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, nl) == 0)
            return true;
    return nl == 0;
}

static bool parse_indices(const char *spec, int *p, int *d)
{
    char *end;
    if (!isdigit((unsigned char)spec[0]))
        return false;
    long pv = strtol(spec, &end, 10);
    if (*end != ':' || !isdigit((unsigned char)end[1]))
        return false;
    long dv = strtol(end + 1, &end, 10);
    if (*end != '\0' || pv > 1000 || dv > 1000)
        return false;
    *p = (int)pv;
    *d = (int)dv;
    return true;
}

static void describe_devices(const found_device *found, int n, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && used < cap; i++) {
        int w = snprintf(buf + used, cap - used, "%s  %d:%d %s / %s", i ? "\n" : "",
                         found[i].info.platform_index, found[i].info.device_index,
                         found[i].info.platform_name, found[i].info.device_name);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

/* Picks a device per the spec rules in ln.h; returns its index in found. */
static ln_status select_device(const char *spec, const found_device *found, int n, int *pick)
{
    const char *source = "device spec";
    if (!spec) {
        spec = getenv("LN_DEVICE");
        source = "LN_DEVICE";
    }
    if (n == 0)
        return ln_fail(NULL, LN_ERROR_DEVICE_NOT_FOUND,
                       "no OpenCL device found: is an ICD (e.g. pocl-opencl-icd) installed "
                       "and listed in /etc/OpenCL/vendors?");
    char list[2048];
    describe_devices(found, n, list, sizeof(list));
    if (!spec) {
        for (int i = 0; i < n; i++)
            if (found[i].info.is_gpu) {
                *pick = i;
                return LN_SUCCESS;
            }
        *pick = 0;
        return LN_SUCCESS;
    }
    if (spec[0] == '\0')
        return ln_fail(NULL, LN_ERROR_INVALID_ARGUMENT,
                       "%s is empty: give \"P:D\" indices or part of a device name; devices:\n%s",
                       source, list);
    int p, d;
    if (parse_indices(spec, &p, &d)) {
        for (int i = 0; i < n; i++)
            if (found[i].info.platform_index == p && found[i].info.device_index == d) {
                *pick = i;
                return LN_SUCCESS;
            }
        return ln_fail(NULL, LN_ERROR_DEVICE_NOT_FOUND,
                       "%s \"%s\": no device %d on platform %d; devices:\n%s", source, spec, d,
                       p, list);
    }
    for (int i = 0; i < n; i++) {
        char full[300];
        snprintf(full, sizeof(full), "%s / %s", found[i].info.platform_name,
                 found[i].info.device_name);
        if (contains_nocase(full, spec)) {
            *pick = i;
            return LN_SUCCESS;
        }
    }
    return ln_fail(NULL, LN_ERROR_DEVICE_NOT_FOUND,
                   "%s \"%s\" matches no device name; devices:\n%s", source, spec, list);
}

const char *const ln_attention_kernel_names[4] = {"auto", "fused", "rows", "tiles"};

ln_status ln_context_create(const char *device_spec, ln_context **out)
{
    if (!out)
        return ln_fail(NULL, LN_ERROR_INVALID_ARGUMENT, "ln_context_create: out is NULL");
    *out = NULL;
    ln_clear_error(NULL);
    found_device found[LN_MAX_DEVICES];
    int n = enumerate(found, LN_MAX_DEVICES);
    int pick = 0;
    ln_status st = select_device(device_spec, found, n, &pick);
    if (st != LN_SUCCESS)
        return st;

    ln_context *ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return ln_fail(NULL, LN_ERROR_OUT_OF_HOST_MEMORY, "ln_context_create: out of host memory");
    ctx->platform = found[pick].platform;
    ctx->device = found[pick].device;
    ctx->info = found[pick].info;
    cl_device_fp_config fp32 = 0;
    clGetDeviceInfo(ctx->device, CL_DEVICE_SINGLE_FP_CONFIG, sizeof(fp32), &fp32, NULL);
    ctx->fp32_fma = (fp32 & CL_FP_FMA) != 0;
    ctx->max_groups_yz = LN_MAX_GROUPS_YZ;
    ctx->gemm_rows = LN_GEMM_ROWS;
    ln_clblast_prepare_compiler(&ctx->info);
    cl_int err;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)ctx->platform,
                                     0};
    ctx->cl = clCreateContext(props, 1, &ctx->device, NULL, NULL, &err);
    if (!ctx->cl) {
        free(ctx);
        return ln_fail_cl(NULL, err, "clCreateContext");
    }
    ctx->queue = clCreateCommandQueue(ctx->cl, ctx->device, CL_QUEUE_PROFILING_ENABLE, &err);
    if (!ctx->queue) {
        clReleaseContext(ctx->cl);
        free(ctx);
        return ln_fail_cl(NULL, err, "clCreateCommandQueue");
    }
    ln_params_defaults(&ctx->info, &ctx->params);
    ln_tune_context_init(ctx);
    const char *cap = getenv("LN_DEVICE_MEMORY_LIMIT_MB");
    if (cap && *cap) {
        char *end;
        unsigned long long mb = strtoull(cap, &end, 10);
        if (*end != '\0') {
            ln_context_destroy(ctx);
            return ln_fail(NULL, LN_ERROR_INVALID_ARGUMENT,
                           "LN_DEVICE_MEMORY_LIMIT_MB=\"%s\" is not a whole number of MiB", cap);
        }
        ctx->device_bytes_cap = (uint64_t)mb << 20;
    }
    /* Which fused attention kernel runs, for comparing them on a device
     * (bench/gpu_check.sh) without rebuilding: ln_attention_kernel's order. */
    const char *kernel = getenv("LN_ATTENTION_KERNEL");
    if (kernel && *kernel) {
        int k = 0;
        while (k < 4 && strcmp(kernel, ln_attention_kernel_names[k]) != 0)
            k++;
        if (k == 4) {
            ln_context_destroy(ctx);
            return ln_fail(NULL, LN_ERROR_INVALID_ARGUMENT,
                           "LN_ATTENTION_KERNEL=\"%s\" is not auto, fused, rows or tiles", kernel);
        }
        ctx->params.attn_kernel = k;
    }
    ln_tune_context_load(ctx);
    *out = ctx;
    return LN_SUCCESS;
}

void ln_context_destroy(ln_context *ctx)
{
    if (!ctx)
        return;
    if (ln_profile_of(ctx))
        ln_profile_attach(ctx, NULL);
    if (ctx->queue) {
        clFinish(ctx->queue);
        clReleaseCommandQueue(ctx->queue);
    }
    for (int i = 0; i < ctx->kernel_count; i++)
        clReleaseKernel(ctx->kernels[i].kernel);
    for (int i = 0; i < ctx->program_count; i++)
        clReleaseProgram(ctx->programs[i].program);
    if (ctx->cl)
        clReleaseContext(ctx->cl);
    ln_tune_context_free(ctx);
    free(ctx);
}

ln_status ln_context_device_info(const ln_context *ctx, ln_device_info *info)
{
    if (!ctx || !info)
        return ln_fail((ln_context *)ctx, LN_ERROR_INVALID_ARGUMENT,
                       "ln_context_device_info: context or info is NULL");
    *info = ctx->info;
    return LN_SUCCESS;
}

cl_context ln_context_cl_context(const ln_context *ctx)
{
    return ctx ? ctx->cl : NULL;
}

cl_command_queue ln_context_cl_queue(const ln_context *ctx)
{
    return ctx ? ctx->queue : NULL;
}

ln_status ln_context_finish(ln_context *ctx)
{
    LN_CHECK_CTX(ctx);
    cl_int err = clFinish(ctx->queue);
    return err == CL_SUCCESS ? LN_SUCCESS : ln_fail_cl(ctx, err, "clFinish");
}

uint64_t ln_context_device_bytes(const ln_context *ctx)
{
    return ctx ? ctx->device_bytes : 0;
}

uint64_t ln_context_peak_device_bytes(const ln_context *ctx)
{
    return ctx ? ctx->peak_device_bytes : 0;
}

ln_status ln_buffer_create(ln_context *ctx, size_t bytes, cl_mem *out, const char *what)
{
    *out = NULL;
    if (bytes == 0)
        bytes = sizeof(float); /* OpenCL refuses empty buffers */
    if (bytes > ctx->info.max_alloc_bytes)
        return ln_fail(ctx, LN_ERROR_DEVICE_MEMORY,
                       "%s: %zu bytes exceed the device's largest allocation (%llu bytes)", what,
                       bytes, (unsigned long long)ctx->info.max_alloc_bytes);
    if (ctx->device_bytes_cap && ctx->device_bytes + bytes > ctx->device_bytes_cap)
        return ln_fail(ctx, LN_ERROR_DEVICE_MEMORY,
                       "%s: %zu more bytes would exceed LN_DEVICE_MEMORY_LIMIT_MB "
                       "(%llu bytes held, cap %llu)",
                       what, bytes, (unsigned long long)ctx->device_bytes,
                       (unsigned long long)ctx->device_bytes_cap);
    cl_int err;
    cl_mem mem = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (!mem) {
        ln_status st = ln_fail(ctx, LN_ERROR_DEVICE_MEMORY,
                               "%s: device allocation of %zu bytes failed: %s", what, bytes,
                               ln_cl_error_name(err));
        return st;
    }
    ctx->device_bytes += bytes;
    if (ctx->device_bytes > ctx->peak_device_bytes)
        ctx->peak_device_bytes = ctx->device_bytes;
    *out = mem;
    return LN_SUCCESS;
}

void ln_buffer_release(ln_context *ctx, cl_mem mem)
{
    if (!mem)
        return;
    size_t bytes = 0;
    if (clGetMemObjectInfo(mem, CL_MEM_SIZE, sizeof(bytes), &bytes, NULL) == CL_SUCCESS &&
        bytes <= ctx->device_bytes)
        ctx->device_bytes -= bytes;
    clReleaseMemObject(mem);
}

ln_status ln_buffer_from_host(ln_context *ctx, const void *data, size_t bytes, cl_mem *out,
                              const char *what)
{
    ln_status st = ln_buffer_create(ctx, bytes, out, what);
    if (st != LN_SUCCESS || !data || bytes == 0)
        return st;
    /* Blocking: the host wrappers return early when a later step fails
     * (bad argument, device memory), and a queued write would then read
     * the caller's array after the call returned and the caller freed it
     * (AddressSanitizer caught PoCL's worker thread doing exactly that). */
    cl_int err = clEnqueueWriteBuffer(ctx->queue, *out, CL_TRUE, 0, bytes, data, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        ln_buffer_release(ctx, *out);
        *out = NULL;
        return ln_fail_cl(ctx, err, what);
    }
    return LN_SUCCESS;
}

ln_status ln_buffer_to_host(ln_context *ctx, cl_mem mem, void *data, size_t bytes)
{
    cl_int err = clEnqueueReadBuffer(ctx->queue, mem, CL_TRUE, 0, bytes, data, 0, NULL, NULL);
    return err == CL_SUCCESS ? LN_SUCCESS : ln_fail_cl(ctx, err, "reading results to the host");
}

ln_status ln_check_mem(ln_context *ctx, const char *op, const char *name, cl_mem mem,
                       size_t offset_floats, size_t floats)
{
    if (!mem)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "%s: %s is NULL", op, name);
    size_t bytes = 0;
    cl_int err = clGetMemObjectInfo(mem, CL_MEM_SIZE, sizeof(bytes), &bytes, NULL);
    if (err != CL_SUCCESS)
        return ln_fail(ctx, (ln_status)err, "%s: %s is not a valid buffer (%s)", op, name,
                       ln_cl_error_name(err));
    size_t need = (offset_floats + floats) * sizeof(float);
    if (need > bytes)
        return ln_fail(ctx, LN_ERROR_SHAPE_MISMATCH,
                       "%s: %s needs %zu bytes (offset %zu + %zu floats) but its buffer has %zu",
                       op, name, need, offset_floats, floats, bytes);
    return LN_SUCCESS;
}

ln_status ln_check_view(ln_context *ctx, const char *op, const char *name, ln_dmat m,
                        size_t rows, size_t cols)
{
    if (m.ld < cols)
        return ln_fail(ctx, LN_ERROR_SHAPE_MISMATCH,
                       "%s: %s has leading dimension %zu, less than its width %zu", op, name,
                       m.ld, cols);
    return ln_check_mem(ctx, op, name, m.mem, m.offset, rows ? (rows - 1) * m.ld + cols : 0);
}

/* ------------------------------------------------ profiling (ln_bench) */

/* One attachment per thread: a context is used by one thread at a time. */
static _Thread_local const ln_context *profile_ctx;
static _Thread_local ln_profile *profile_sink;

void ln_profile_attach(ln_context *ctx, ln_profile *p)
{
    profile_ctx = p ? ctx : NULL;
    profile_sink = p;
}

ln_profile *ln_profile_of(const ln_context *ctx)
{
    return profile_sink && profile_ctx == ctx ? profile_sink : NULL;
}

cl_event ln_profile_begin(ln_context *ctx)
{
    cl_event marker = NULL;
    if (!ln_profile_of(ctx) || clFinish(ctx->queue) != CL_SUCCESS ||
        clEnqueueMarkerWithWaitList(ctx->queue, 0, NULL, &marker) != CL_SUCCESS)
        return NULL;
    return marker;
}

void ln_profile_end(ln_context *ctx, cl_event start, cl_event last, const char *kernel,
                    const char *what, size_t m, size_t n, size_t k, size_t batch)
{
    ln_profile *p = ln_profile_of(ctx);
    cl_ulong t0 = 0, t1 = 0;
    bool ok = p && last && clWaitForEvents(1, &last) == CL_SUCCESS &&
              clGetEventProfilingInfo(last, CL_PROFILING_COMMAND_END, sizeof(t1), &t1, NULL) ==
                  CL_SUCCESS &&
              clGetEventProfilingInfo(start ? start : last,
                                      start ? CL_PROFILING_COMMAND_END : CL_PROFILING_COMMAND_START,
                                      sizeof(t0), &t0, NULL) == CL_SUCCESS;
    if (start)
        clReleaseEvent(start);
    if (last)
        clReleaseEvent(last);
    if (!ok)
        return;
    ln_profile_entry *e = NULL;
    for (int i = 0; i < p->count && !e; i++)
        if (p->entry[i].m == m && p->entry[i].n == n && p->entry[i].k == k &&
            p->entry[i].batch == batch && strcmp(p->entry[i].kernel, kernel) == 0 &&
            strcmp(p->entry[i].what, what) == 0)
            e = &p->entry[i];
    if (!e) {
        if (p->count == LN_PROFILE_ENTRIES) {
            p->dropped++;
            return;
        }
        e = &p->entry[p->count++];
        memset(e, 0, sizeof(*e));
        snprintf(e->kernel, sizeof(e->kernel), "%s", kernel);
        snprintf(e->what, sizeof(e->what), "%s", what);
        e->m = m, e->n = n, e->k = k, e->batch = batch;
    }
    e->count++;
    e->ms += t1 > t0 ? (double)(t1 - t0) * 1e-6 : 0.0;
}
