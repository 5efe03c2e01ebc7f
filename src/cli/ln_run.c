/*
 * ln_run.c: the ln-run command: encode a file of concept vectors with a
 * model saved from PyTorch, list devices, or (without arguments) run the
 * demo. Inputs are validated before any device work; outputs are written
 * atomically and never over the input.
 */
#include "demo.h"
#include "internal.h"
#include "tensor_io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static void usage(FILE *to)
{
    fprintf(to,
            "usage: ln-run --model M.safetensors --input IN [--output OUT] [--device SPEC]\n"
            "       ln-run --list-devices\n"
            "       ln-run                      (the demo, on the default device)\n"
            "IN:  .npy float32 [n, d] or [B, n, d], or .safetensors with x [B, n, d],\n"
            "     optional positions [B, n] (F32) and lengths [B] (I32 or I64)\n"
            "OUT: .npy, or .safetensors (tensor \"out\"), chosen by the extension\n"
            "SPEC: \"P:D\" indices or part of a device name (default: $LN_DEVICE, else the\n"
            "     first GPU, else the first device)\n");
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int fail(ln_context *ctx, ln_status st)
{
    fprintf(stderr, "ln-run: error: %s: %s\n", ln_status_string(st), ln_last_error(ctx));
    return 1;
}

static int list_devices(void)
{
    ln_device_info infos[64];
    int count = 0;
    ln_status st = ln_device_list(infos, 64, &count);
    if (st)
        return fail(NULL, st);
    if (count == 0) {
        fprintf(stderr, "ln-run: no OpenCL device found (is an ICD such as pocl-opencl-icd installed?)\n");
        return 1;
    }
    for (int i = 0; i < count && i < 64; i++) {
        ln_device_info *d = &infos[i];
        printf("%d:%d  %s / %s  (%s, %u compute units, %.1f GiB, driver %s)\n", d->platform_index,
               d->device_index, d->platform_name, d->device_name,
               d->is_gpu ? "GPU" : d->is_cpu ? "CPU" : "other", d->compute_units,
               (double)d->global_mem_bytes / (1 << 30), d->driver_version);
    }
    return 0;
}

typedef struct input {
    ln_tensor_file *file; /* safetensors input */
    ln_tensor npy;        /* .npy input */
    const float *x, *positions;
    int32_t *lengths;
    size_t batch, n, d;
    int x_ndim;
} input;

static ln_status read_input(const char *path, input *in)
{
    memset(in, 0, sizeof(*in));
    ln_status st;
    const ln_tensor *x;
    if (ends_with(path, ".npy")) {
        if ((st = ln_npy_read(NULL, path, &in->npy)))
            return st;
        x = &in->npy;
    } else if (ends_with(path, ".safetensors")) {
        if ((st = ln_safetensors_read(NULL, path, &in->file)))
            return st;
        x = ln_tensor_file_find(in->file, "x");
        if (!x)
            return ln_fail(NULL, LN_ERROR_BAD_FILE, "%s: no tensor \"x\" [B, n, d]", path);
    } else
        return ln_fail(NULL, LN_ERROR_INVALID_ARGUMENT,
                       "input %s: unknown extension (use .npy or .safetensors)", path);
    if (x->dtype != LN_DT_F32 || (x->ndim != 2 && x->ndim != 3))
        return ln_fail(NULL, LN_ERROR_BAD_FILE, "%s: x must be float32 [n, d] or [B, n, d] (has %d dims of %s)",
                       path, x->ndim, ln_dtype_name(x->dtype));
    in->x_ndim = x->ndim;
    in->batch = x->ndim == 3 ? (size_t)x->shape[0] : 1;
    in->n = (size_t)x->shape[x->ndim - 2];
    in->d = (size_t)x->shape[x->ndim - 1];
    in->x = x->data;
    if (in->batch == 0 || in->n == 0 || in->d == 0)
        return ln_fail(NULL, LN_ERROR_BAD_FILE, "%s: x has an empty dimension", path);
    if (!in->file)
        return LN_SUCCESS;
    const ln_tensor *p = ln_tensor_file_find(in->file, "positions");
    if (p) {
        if (p->dtype != LN_DT_F32 || p->ndim != 2 || (size_t)p->shape[0] != in->batch ||
            (size_t)p->shape[1] != in->n)
            return ln_fail(NULL, LN_ERROR_SHAPE_MISMATCH,
                           "%s: positions must be F32 [%zu, %zu] to match x", path, in->batch, in->n);
        in->positions = p->data;
    }
    const ln_tensor *l = ln_tensor_file_find(in->file, "lengths");
    if (l) {
        if ((l->dtype != LN_DT_I32 && l->dtype != LN_DT_I64) || l->ndim != 1 ||
            (size_t)l->shape[0] != in->batch)
            return ln_fail(NULL, LN_ERROR_SHAPE_MISMATCH,
                           "%s: lengths must be I32 or I64 [%zu] to match x", path, in->batch);
        in->lengths = malloc(in->batch * sizeof(int32_t));
        if (!in->lengths)
            return ln_fail(NULL, LN_ERROR_OUT_OF_HOST_MEMORY, "out of host memory");
        for (size_t b = 0; b < in->batch; b++) {
            int64_t v = l->dtype == LN_DT_I64 ? ((const int64_t *)l->data)[b]
                                              : ((const int32_t *)l->data)[b];
            if (v < 1 || (uint64_t)v > in->n)
                return ln_fail(NULL, LN_ERROR_INVALID_ARGUMENT,
                               "%s: lengths[%zu] = %lld is outside 1..n (n = %zu)", path, b,
                               (long long)v, in->n);
            in->lengths[b] = (int32_t)v;
        }
    }
    for (size_t i = 0; i < in->file->count; i++) {
        const char *name = in->file->tensors[i].name;
        if (strcmp(name, "x") && strcmp(name, "positions") && strcmp(name, "lengths"))
            fprintf(stderr, "ln-run: warning: %s: ignoring tensor \"%s\"\n", path, name);
    }
    return LN_SUCCESS;
}

static void free_input(input *in)
{
    ln_tensor_file_free(in->file);
    ln_tensor_clear(&in->npy);
    free(in->lengths);
}

static bool same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) != 0 || stat(b, &sb) != 0)
        return false;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int encode_file(const char *model_path, const char *in_path, const char *out_path,
                       const char *device)
{
    if (out_path && !ends_with(out_path, ".npy") && !ends_with(out_path, ".safetensors")) {
        fprintf(stderr, "ln-run: error: output %s: unknown extension (use .npy or .safetensors)\n",
                out_path);
        return 2;
    }
    if (out_path && (strcmp(out_path, in_path) == 0 || same_file(out_path, in_path) ||
                     same_file(out_path, model_path))) {
        fprintf(stderr, "ln-run: error: output %s is an input file; refusing to overwrite it\n",
                out_path);
        return 2;
    }
    input in;
    ln_status st = read_input(in_path, &in);
    if (st) {
        free_input(&in);
        return fail(NULL, st);
    }
    ln_context *ctx = NULL;
    if ((st = ln_context_create(device, &ctx))) {
        free_input(&in);
        return fail(NULL, st);
    }
    ln_model *model = NULL;
    int rc = 0;
    float *out = NULL;
    ln_tuning_info tuning;
    bool tuned = ln_context_tuning(ctx, &tuning) == LN_SUCCESS && tuning.from_cache;
    if ((st = ln_model_load(ctx, model_path, &model))) {
        rc = fail(ctx, st);
        goto done;
    }
    if (in.d != ln_model_d_model(model)) {
        fprintf(stderr, "ln-run: error: %s: concept vectors are %zu wide but the model's d_model is %zu\n",
                in_path, in.d, ln_model_d_model(model));
        rc = 1;
        goto done;
    }
    out = malloc(in.batch * in.n * in.d * sizeof(float));
    if (!out) {
        fprintf(stderr, "ln-run: error: out of host memory for %zu x %zu x %zu outputs\n", in.batch,
                in.n, in.d);
        rc = 1;
        goto done;
    }
    double t0 = now_ms();
    if ((st = ln_model_encode(model, in.batch, in.n, in.x, in.positions, in.lengths, out))) {
        rc = fail(ctx, st);
        goto done;
    }
    double ms = now_ms() - t0;
    if (out_path) {
        int64_t shape[3] = {(int64_t)in.batch, (int64_t)in.n, (int64_t)in.d};
        if (ends_with(out_path, ".npy"))
            st = in.x_ndim == 2 ? ln_npy_write(ctx, out_path, out, 2, shape + 1)
                                : ln_npy_write(ctx, out_path, out, 3, shape);
        else {
            ln_tensor t = {.name = "out", .dtype = LN_DT_F32, .ndim = 3,
                           .shape = {shape[0], shape[1], shape[2]},
                           .count = in.batch * in.n * in.d, .data = out};
            st = ln_safetensors_write(ctx, out_path, &t, 1, NULL, NULL);
        }
        if (st) {
            rc = fail(ctx, st);
            goto done;
        }
    } else {
        for (size_t r = 0; r < in.n && r < 3; r++) {
            printf("out[0, %zu, :4] =", r);
            for (size_t c = 0; c < 4 && c < in.d; c++)
                printf(" %.6f", out[r * in.d + c]);
            printf("\n");
        }
    }
    ln_device_info info;
    ln_context_device_info(ctx, &info);
    fprintf(stderr, "ln-run: %s (%s), B = %zu, n = %zu, %.2f ms\n", info.device_name,
            tuned ? "tuned" : "not tuned: run ln-tune", in.batch, in.n, ms);
done:
    free(out);
    ln_model_free(model);
    ln_context_destroy(ctx);
    free_input(&in);
    return rc;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *input_path = NULL, *output = NULL, *device = NULL;
    bool list = false;
    if (argc == 1)
        return ln_demo_run(NULL);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = !strcmp(a, "--model")    ? &model
                            : !strcmp(a, "--input")  ? &input_path
                            : !strcmp(a, "--output") ? &output
                            : !strcmp(a, "--device") ? &device
                                                     : NULL;
        if (slot) {
            if (i + 1 >= argc) {
                fprintf(stderr, "ln-run: error: %s needs a value\n", a);
                return 2;
            }
            *slot = argv[++i];
        } else if (!strcmp(a, "--list-devices"))
            list = true;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "ln-run: error: unknown argument \"%s\"\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (list)
        return list_devices();
    if (!model && !input_path)
        return ln_demo_run(device);
    if (!model || !input_path) {
        fprintf(stderr, "ln-run: error: --model and --input go together\n");
        usage(stderr);
        return 2;
    }
    return encode_file(model, input_path, output, device);
}
