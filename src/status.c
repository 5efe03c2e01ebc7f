/*
 * status.c: status names and the last-error messages, per context and, for
 * failures that have no context yet, per thread; and the "why" strings of
 * the validators that refuse a file or a parameter set.
 */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char thread_error[LN_ERRMSG_MAX];

const char *ln_cl_error_name(cl_int err)
{
    switch (err) {
#define N(x) \
    case x:  \
        return #x;
        N(CL_SUCCESS) N(CL_DEVICE_NOT_FOUND) N(CL_DEVICE_NOT_AVAILABLE)
        N(CL_COMPILER_NOT_AVAILABLE) N(CL_MEM_OBJECT_ALLOCATION_FAILURE)
        N(CL_OUT_OF_RESOURCES) N(CL_OUT_OF_HOST_MEMORY) N(CL_PROFILING_INFO_NOT_AVAILABLE)
        N(CL_MEM_COPY_OVERLAP) N(CL_IMAGE_FORMAT_MISMATCH) N(CL_IMAGE_FORMAT_NOT_SUPPORTED)
        N(CL_BUILD_PROGRAM_FAILURE) N(CL_MAP_FAILURE) N(CL_MISALIGNED_SUB_BUFFER_OFFSET)
        N(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST) N(CL_COMPILE_PROGRAM_FAILURE)
        N(CL_LINKER_NOT_AVAILABLE) N(CL_LINK_PROGRAM_FAILURE) N(CL_DEVICE_PARTITION_FAILED)
        N(CL_KERNEL_ARG_INFO_NOT_AVAILABLE) N(CL_INVALID_VALUE) N(CL_INVALID_DEVICE_TYPE)
        N(CL_INVALID_PLATFORM) N(CL_INVALID_DEVICE) N(CL_INVALID_CONTEXT)
        N(CL_INVALID_QUEUE_PROPERTIES) N(CL_INVALID_COMMAND_QUEUE) N(CL_INVALID_HOST_PTR)
        N(CL_INVALID_MEM_OBJECT) N(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR)
        N(CL_INVALID_IMAGE_SIZE) N(CL_INVALID_SAMPLER) N(CL_INVALID_BINARY)
        N(CL_INVALID_BUILD_OPTIONS) N(CL_INVALID_PROGRAM) N(CL_INVALID_PROGRAM_EXECUTABLE)
        N(CL_INVALID_KERNEL_NAME) N(CL_INVALID_KERNEL_DEFINITION) N(CL_INVALID_KERNEL)
        N(CL_INVALID_ARG_INDEX) N(CL_INVALID_ARG_VALUE) N(CL_INVALID_ARG_SIZE)
        N(CL_INVALID_KERNEL_ARGS) N(CL_INVALID_WORK_DIMENSION) N(CL_INVALID_WORK_GROUP_SIZE)
        N(CL_INVALID_WORK_ITEM_SIZE) N(CL_INVALID_GLOBAL_OFFSET) N(CL_INVALID_EVENT_WAIT_LIST)
        N(CL_INVALID_EVENT) N(CL_INVALID_OPERATION) N(CL_INVALID_GL_OBJECT)
        N(CL_INVALID_BUFFER_SIZE) N(CL_INVALID_MIP_LEVEL) N(CL_INVALID_GLOBAL_WORK_SIZE)
        N(CL_INVALID_PROPERTY) N(CL_INVALID_IMAGE_DESCRIPTOR) N(CL_INVALID_COMPILER_OPTIONS)
        N(CL_INVALID_LINKER_OPTIONS) N(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef N
    default:
        return "CL_UNKNOWN_ERROR";
    }
}

const char *ln_status_string(ln_status status)
{
    switch (status) {
    case LN_SUCCESS: return "LN_SUCCESS";
    case LN_ERROR_INVALID_ARGUMENT: return "LN_ERROR_INVALID_ARGUMENT";
    case LN_ERROR_SHAPE_MISMATCH: return "LN_ERROR_SHAPE_MISMATCH";
    case LN_ERROR_DEVICE_NOT_FOUND: return "LN_ERROR_DEVICE_NOT_FOUND";
    case LN_ERROR_OUT_OF_HOST_MEMORY: return "LN_ERROR_OUT_OF_HOST_MEMORY";
    case LN_ERROR_BUILD_FAILED: return "LN_ERROR_BUILD_FAILED";
    case LN_ERROR_CLBLAST: return "LN_ERROR_CLBLAST";
    case LN_ERROR_IO: return "LN_ERROR_IO";
    case LN_ERROR_BAD_FILE: return "LN_ERROR_BAD_FILE";
    case LN_ERROR_BAD_CONFIG: return "LN_ERROR_BAD_CONFIG";
    case LN_ERROR_NONFINITE_INPUT: return "LN_ERROR_NONFINITE_INPUT";
    case LN_ERROR_DEVICE_MEMORY: return "LN_ERROR_DEVICE_MEMORY";
    case LN_ERROR_UNSUPPORTED: return "LN_ERROR_UNSUPPORTED";
    }
    if ((int)status < 0 && (int)status >= -72)
        return ln_cl_error_name((cl_int)status);
    return "LN_UNKNOWN_STATUS";
}

static char *error_slot(ln_context *ctx)
{
    return ctx ? ctx->error : thread_error;
}

const char *ln_last_error(const ln_context *ctx)
{
    return ctx ? ctx->error : thread_error;
}

void ln_clear_error(ln_context *ctx)
{
    error_slot(ctx)[0] = '\0';
}

ln_status ln_fail(ln_context *ctx, ln_status status, const char *fmt, ...)
{
    char *slot = error_slot(ctx);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(slot, LN_ERRMSG_MAX, fmt, ap);
    va_end(ap);
    return status;
}

ln_status ln_fail_cl(ln_context *ctx, cl_int err, const char *what)
{
    return ln_fail(ctx, (ln_status)err, "%s: OpenCL error %d (%s)", what, (int)err,
                   ln_cl_error_name(err));
}

void ln_why_set(char *why, size_t cap, const char *fmt, ...)
{
    if (!why || !cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
}
