/*
 * binary_cache.c: the on-disk cache of built program binaries
 * (<cache>/binaries/<family>-<key hash>.bin) and the helpers both caches
 * share: the cache directory, LN_TUNE_CACHE=off, FNV-1a and the hash of
 * the embedded kernels.
 *
 * Why: PoCL compiles a small kernel family in about 0.55 s, and its binary
 * loads in 0.003 s (CI-NOTES); a GPU driver's compile is often slower.
 *
 * A file is: a header (magic, format version, key length, payload length,
 * FNV-1a of the payload), the key text, then the binary. The key text names
 * everything that changes the binary (source hash, options, device, driver,
 * platform, format version) and is compared exactly, so a hash collision in
 * the file name is a miss, not a wrong program. The payload checksum is
 * checked before the driver sees the bytes: drivers are not fuzz-hardened,
 * so a flipped bit must not reach clCreateProgramWithBinary.
 */
#include "internal.h"
#include "tensor_io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>


#define BIN_MAGIC "LNCLBIN\0"
/* A program binary beyond 256 MiB is not one ln-cl made: refuse before
 * allocating. PoCL's are about 20-200 KiB. */
#define BIN_MAX_FILE ((size_t)256 << 20)
#define BIN_HEADER 32 /* magic 8, version 4, key length 4, payload length 8, checksum 8 */

uint64_t ln_fnv1a64(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

bool ln_cache_enabled(void)
{
    const char *v = getenv("LN_TUNE_CACHE");
    if (!v)
        return true;
    return !(strcasecmp(v, "off") == 0 || strcmp(v, "0") == 0 || strcasecmp(v, "no") == 0 ||
             strcasecmp(v, "false") == 0);
}

/* mkdir -p for a path we built ourselves (absolute or relative). */
static bool make_dirs(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        bool ok = mkdir(path, 0777) == 0 || errno == EEXIST;
        *p = '/';
        if (!ok)
            return false;
    }
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return false;
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool ln_cache_subdir(const char *sub, char *path, size_t cap)
{
    if (!ln_cache_enabled())
        return false;
    const char *dir = getenv("LN_CACHE_DIR");
    int w;
    if (dir && *dir)
        w = snprintf(path, cap, "%s/%s", dir, sub);
    else if ((dir = getenv("XDG_CACHE_HOME")) && *dir)
        w = snprintf(path, cap, "%s/ln-cl/%s", dir, sub);
    else if ((dir = getenv("HOME")) && *dir)
        w = snprintf(path, cap, "%s/.cache/ln-cl/%s", dir, sub);
    else
        return false;
    if (w < 0 || (size_t)w >= cap)
        return false;
    return make_dirs(path);
}

uint64_t ln_kernel_sources_hash(void)
{
    uint64_t h = ln_fnv1a64(LN_FNV_OFFSET, LN_BUILD_OPTIONS_BASE, sizeof(LN_BUILD_OPTIONS_BASE));
    for (size_t i = 0; i < ln_embedded_kernels_count; i++) {
        h = ln_fnv1a64(h, ln_embedded_kernels[i].family, strlen(ln_embedded_kernels[i].family) + 1);
        h = ln_fnv1a64(h, ln_embedded_kernels[i].source, ln_embedded_kernels[i].length);
    }
    return h;
}

/* The exact key text of a program; NULL when out of memory. */
static char *key_text(const ln_context *ctx, const char *family, const char *source,
                      size_t length, const char *full_options)
{
    /* Two FNV passes with different starts: 128 bits for the source. */
    uint64_t h1 = ln_fnv1a64(LN_FNV_OFFSET, source, length);
    uint64_t h2 = ln_fnv1a64(0x84222325cbf29ce4ull, source, length);
    const ln_device_info *i = &ctx->info;
    const char *fmt = "ln-cl program binary v%u\nfamily=%s\nsource=%zu:%016llx%016llx\n"
                      "options=%s\nplatform=%s\nplatform_version=%s\ndevice=%s\n"
                      "device_version=%s\ndriver=%s\n";
    int n = snprintf(NULL, 0, fmt, LN_CACHE_FORMAT_VERSION, family, length,
                     (unsigned long long)h1, (unsigned long long)h2, full_options,
                     i->platform_name, i->platform_version, i->device_name, i->device_version,
                     i->driver_version);
    if (n < 0)
        return NULL;
    char *k = malloc((size_t)n + 1);
    if (k)
        snprintf(k, (size_t)n + 1, fmt, LN_CACHE_FORMAT_VERSION, family, length,
                 (unsigned long long)h1, (unsigned long long)h2, full_options, i->platform_name,
                 i->platform_version, i->device_name, i->device_version, i->driver_version);
    return k;
}

static bool path_for_key(const char *family, const char *key, char *path, size_t cap)
{
    char dir[900];
    if (!ln_cache_subdir("binaries", dir, sizeof(dir)))
        return false;
    char fam[40];
    size_t j = 0;
    for (const char *c = family; *c && j + 1 < sizeof(fam); c++)
        fam[j++] = (char)((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                                  (*c >= '0' && *c <= '9') || *c == '_'
                              ? *c
                              : '_');
    fam[j] = '\0';
    int w = snprintf(path, cap, "%s/%s-%016llx.bin", dir, fam,
                     (unsigned long long)ln_fnv1a64(LN_FNV_OFFSET, key, strlen(key)));
    return w > 0 && (size_t)w < cap;
}

bool ln_binary_cache_path(const ln_context *ctx, const char *family, const char *source,
                          size_t length, const char *full_options, char *path, size_t cap)
{
    char *key = key_text(ctx, family, source, length, full_options);
    bool ok = key && path_for_key(family, key, path, cap);
    free(key);
    return ok;
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* A warning for a file that exists but cannot be used; the caller then
 * builds from source and overwrites it. */
static void reject(ln_context *ctx, const char *path, const char *why)
{
    ln_cache_state *cs = ln_cache_state_of(ctx);
    if (cs)
        cs->binary_rejects++;
    fprintf(stderr, "ln-cl: warning: ignoring cached program binary %s: %s; building from source\n",
            path, why);
}

cl_program ln_binary_cache_load(ln_context *ctx, const char *family, const char *source,
                                size_t length, const char *full_options)
{
    ln_cache_state *cs = ln_cache_state_of(ctx);
    char path[1024];
    char *key = key_text(ctx, family, source, length, full_options);
    if (!key || !path_for_key(family, key, path, sizeof(path))) {
        free(key);
        return NULL;
    }
    if (cs)
        cs->binary_misses++; /* undone below on a hit */
    struct stat stt;
    if (stat(path, &stt) != 0) {
        free(key);
        return NULL;
    }
    char saved[LN_ERRMSG_MAX];
    snprintf(saved, sizeof(saved), "%s", ctx->error);
    void *bytes = NULL;
    size_t size = 0;
    cl_program prog = NULL;
    size_t key_len = strlen(key);
    if (ln_file_read_all(ctx, path, BIN_MAX_FILE, &bytes, &size) != LN_SUCCESS) {
        reject(ctx, path, ctx->error);
        goto done;
    }
    const unsigned char *b = bytes;
    if (size < BIN_HEADER || memcmp(b, BIN_MAGIC, 8) != 0) {
        reject(ctx, path, "not an ln-cl binary (bad magic or too short)");
        goto done;
    }
    if (get_u32(b + 8) != LN_CACHE_FORMAT_VERSION) {
        reject(ctx, path, "other cache format version");
        goto done;
    }
    uint64_t klen = get_u32(b + 12), plen = get_u64(b + 16);
    if (klen > size - BIN_HEADER || plen != size - BIN_HEADER - klen || plen == 0) {
        reject(ctx, path, "truncated or lengths do not add up");
        goto done;
    }
    if (klen != key_len || memcmp(b + BIN_HEADER, key, key_len) != 0) {
        reject(ctx, path, "made for another source, options, device or driver");
        goto done;
    }
    const unsigned char *payload = b + BIN_HEADER + klen;
    if (ln_fnv1a64(LN_FNV_OFFSET, payload, plen) != get_u64(b + 24)) {
        reject(ctx, path, "checksum mismatch (corrupt)");
        goto done;
    }
    cl_int err, bin_status = CL_SUCCESS;
    size_t psize = (size_t)plen;
    prog = clCreateProgramWithBinary(ctx->cl, 1, &ctx->device, &psize, &payload, &bin_status,
                                     &err);
    if (!prog || err != CL_SUCCESS || bin_status != CL_SUCCESS) {
        char why[160];
        snprintf(why, sizeof(why), "the driver refused it (%s)",
                 ln_cl_error_name(err != CL_SUCCESS ? err : bin_status));
        reject(ctx, path, why);
        if (prog)
            clReleaseProgram(prog);
        prog = NULL;
        goto done;
    }
    err = ln_build_program(ctx, prog, full_options);
    if (err != CL_SUCCESS) {
        char why[160];
        snprintf(why, sizeof(why), "building from it failed (%s)", ln_cl_error_name(err));
        reject(ctx, path, why);
        clReleaseProgram(prog);
        prog = NULL;
        goto done;
    }
    if (cs) {
        cs->binary_misses--;
        cs->binary_hits++;
    }
done:
    free(bytes);
    free(key);
    snprintf(ctx->error, sizeof(ctx->error), "%s", saved);
    return prog;
}

void ln_binary_cache_store(ln_context *ctx, const char *family, const char *source,
                           size_t length, const char *full_options, cl_program prog)
{
    char path[1024];
    char *key = key_text(ctx, family, source, length, full_options);
    if (!key || !path_for_key(family, key, path, sizeof(path))) {
        free(key);
        return;
    }
    cl_uint ndev = 0;
    size_t bsize = 0;
    unsigned char *bin = NULL;
    if (clGetProgramInfo(prog, CL_PROGRAM_NUM_DEVICES, sizeof(ndev), &ndev, NULL) != CL_SUCCESS ||
        ndev != 1 ||
        clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof(bsize), &bsize, NULL) !=
            CL_SUCCESS ||
        bsize == 0 || bsize > BIN_MAX_FILE / 2 || !(bin = malloc(bsize)) ||
        clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof(bin), &bin, NULL) != CL_SUCCESS) {
        free(bin);
        free(key);
        return; /* a driver without binaries: nothing to cache */
    }
    unsigned char header[BIN_HEADER];
    uint32_t ver = LN_CACHE_FORMAT_VERSION, klen = (uint32_t)strlen(key);
    uint64_t plen = bsize, sum = ln_fnv1a64(LN_FNV_OFFSET, bin, bsize);
    memcpy(header, BIN_MAGIC, 8);
    memcpy(header + 8, &ver, 4);
    memcpy(header + 12, &klen, 4);
    memcpy(header + 16, &plen, 8);
    memcpy(header + 24, &sum, 8);
    ln_io_piece pieces[3] = {{header, sizeof(header)}, {key, klen}, {bin, bsize}};
    char saved[LN_ERRMSG_MAX];
    snprintf(saved, sizeof(saved), "%s", ctx->error);
    /* Atomic: a concurrent reader sees the old file or the new one; two
     * writers of one key write the same bytes, the last rename wins. */
    if (ln_file_write_atomic(ctx, path, pieces, 3) == LN_SUCCESS) {
        ln_cache_state *cs = ln_cache_state_of(ctx);
        if (cs)
            cs->binary_stores++;
    }
    snprintf(ctx->error, sizeof(ctx->error), "%s", saved);
    free(bin);
    free(key);
}
