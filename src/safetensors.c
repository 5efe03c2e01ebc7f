/*
 * safetensors.c: the safetensors reader and writer, the ln_tensor_file
 * container they fill, and the two file helpers npy.c shares (whole-file
 * read, atomic write). See tensor_io.h.
 *
 * The format: an 8-byte little-endian header length N, N bytes of JSON
 *   {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
 *    ..., "__metadata__": {"<key>": "<value>", ...}}
 * then the data section, which the offsets index from its first byte.
 * Nothing in the header is trusted until checked: every size is compared
 * with the bytes that are really there before anything is allocated or
 * copied, so a hostile header can make us allocate at most the file's own
 * size (twice for F16/BF16 widening) plus the capped header.
 */
#include "internal.h"
#include "tensor_io.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tensor files are little-endian and are copied, not swapped: a big-endian host needs byte swaps here"
#endif

/* Tensor names can be megabytes long in a hostile file; messages show the
 * start of them. */
#define NAME_FMT "'%.200s'"

/* ------------------------------------------------------------ ln_tensor */

const char *ln_dtype_name(ln_dtype dtype)
{
    switch (dtype) {
    case LN_DT_F32: return "F32";
    case LN_DT_I32: return "I32";
    case LN_DT_I64: return "I64";
    }
    return "?";
}

size_t ln_dtype_size(ln_dtype dtype)
{
    return dtype == LN_DT_I64 ? 8 : 4;
}

static bool dtype_valid(ln_dtype dtype)
{
    return dtype == LN_DT_F32 || dtype == LN_DT_I32 || dtype == LN_DT_I64;
}

void ln_tensor_clear(ln_tensor *t)
{
    if (!t)
        return;
    free(t->name);
    free(t->data);
    memset(t, 0, sizeof(*t));
}

bool ln_shape_count(int ndim, const int64_t *shape, size_t *count)
{
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0) {
            *count = 0;
            return true;
        }
    size_t c = 1;
    for (int i = 0; i < ndim; i++) {
        if ((uint64_t)shape[i] > SIZE_MAX / 8 / c)
            return false;
        c *= (size_t)shape[i];
    }
    *count = c;
    return true;
}

const char *ln_shape_str(int ndim, const int64_t *shape, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", i ? ", " : "[",
                                 (long long)shape[i]);
    if (used < cap)
        snprintf(buf + used, cap - used, "%s", ndim ? "]" : "[]");
    return buf;
}

/* -------------------------------------------------------- ln_tensor_file */

ln_status ln_tensor_file_create(ln_context *ctx, ln_tensor_file **out)
{
    if (!out)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "ln_tensor_file_create: out is NULL");
    *out = calloc(1, sizeof(**out));
    if (!*out)
        return ln_fail(ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "ln_tensor_file_create: out of memory");
    return LN_SUCCESS;
}

void ln_tensor_file_free(ln_tensor_file *file)
{
    if (!file)
        return;
    for (size_t i = 0; i < file->count; i++)
        ln_tensor_clear(&file->tensors[i]);
    for (size_t i = 0; i < file->metadata_count; i++) {
        free(file->metadata[i].key);
        free(file->metadata[i].value);
    }
    free(file->tensors);
    free(file->metadata);
    free(file);
}

/* First index whose name is >= name (tensors are sorted by name). */
static size_t lower_bound(const ln_tensor_file *file, const char *name)
{
    size_t lo = 0, hi = file->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(file->tensors[mid].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

const ln_tensor *ln_tensor_file_find(const ln_tensor_file *file, const char *name)
{
    if (!file || !name)
        return NULL;
    size_t i = lower_bound(file, name);
    return i < file->count && strcmp(file->tensors[i].name, name) == 0 ? &file->tensors[i] : NULL;
}

const char *ln_tensor_file_metadata(const ln_tensor_file *file, const char *key)
{
    if (!file || !key)
        return NULL;
    for (size_t i = 0; i < file->metadata_count; i++)
        if (strcmp(file->metadata[i].key, key) == 0)
            return file->metadata[i].value;
    return NULL;
}

ln_status ln_tensor_file_add(ln_context *ctx, ln_tensor_file *file, const char *name,
                             ln_dtype dtype, int ndim, const int64_t *shape, const void *data)
{
    if (!file || !name || !*name)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "ln_tensor_file_add: %s is NULL or empty",
                       file ? "name" : "file");
    if (!dtype_valid(dtype) || ndim < 0 || ndim > LN_TENSOR_MAX_DIMS || (ndim && !shape))
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT,
                       "ln_tensor_file_add: tensor " NAME_FMT ": bad dtype %d or rank %d", name,
                       (int)dtype, ndim);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT,
                           "ln_tensor_file_add: tensor " NAME_FMT ": negative dimension %lld",
                           name, (long long)shape[i]);
    size_t count;
    if (!ln_shape_count(ndim, shape, &count))
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT,
                       "ln_tensor_file_add: tensor " NAME_FMT ": shape too large", name);
    size_t at = lower_bound(file, name);
    if (at < file->count && strcmp(file->tensors[at].name, name) == 0)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT,
                       "ln_tensor_file_add: duplicate tensor name " NAME_FMT, name);

    size_t bytes = count * ln_dtype_size(dtype);
    ln_tensor t = {0};
    t.name = strdup(name);
    t.data = data ? malloc(bytes ? bytes : 1) : calloc(bytes ? bytes : 1, 1);
    ln_tensor *grown = realloc(file->tensors, (file->count + 1) * sizeof(*grown));
    if (grown)
        file->tensors = grown;
    if (!t.name || !t.data || !grown) {
        ln_tensor_clear(&t);
        return ln_fail(ctx, LN_ERROR_OUT_OF_HOST_MEMORY,
                       "ln_tensor_file_add: out of memory for tensor " NAME_FMT " (%zu bytes)",
                       name, bytes);
    }
    if (data && bytes)
        memcpy(t.data, data, bytes);
    t.dtype = dtype;
    t.ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t.shape[i] = shape[i];
    t.count = count;
    memmove(&file->tensors[at + 1], &file->tensors[at], (file->count - at) * sizeof(ln_tensor));
    file->tensors[at] = t;
    file->count++;
    return LN_SUCCESS;
}

ln_status ln_tensor_file_set_metadata(ln_context *ctx, ln_tensor_file *file, const char *key,
                                      const char *value)
{
    if (!file || !key || !value)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT,
                       "ln_tensor_file_set_metadata: file, key or value is NULL");
    char *v = strdup(value);
    if (!v)
        return ln_fail(ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "ln_tensor_file_set_metadata: out of memory");
    for (size_t i = 0; i < file->metadata_count; i++)
        if (strcmp(file->metadata[i].key, key) == 0) {
            free(file->metadata[i].value);
            file->metadata[i].value = v;
            return LN_SUCCESS;
        }
    char *k = strdup(key);
    ln_tensor_meta *grown =
        realloc(file->metadata, (file->metadata_count + 1) * sizeof(*file->metadata));
    if (grown)
        file->metadata = grown;
    if (!k || !grown) {
        free(k);
        free(v);
        return ln_fail(ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "ln_tensor_file_set_metadata: out of memory");
    }
    file->metadata[file->metadata_count].key = k;
    file->metadata[file->metadata_count].value = v;
    file->metadata_count++;
    return LN_SUCCESS;
}

/* ----------------------------------------------------------- file helpers */

/* Reads exactly n bytes at offset; a file that ends early is BAD_FILE (it
 * was checked against its size, so it shrank or lied). */
static ln_status pread_all(ln_context *ctx, const char *label, int fd, uint64_t offset,
                           void *dst, size_t n)
{
    unsigned char *p = dst;
    while (n) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t got = pread(fd, p, chunk, (off_t)offset);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return ln_fail(ctx, LN_ERROR_IO, "%s: read failed at byte %llu: %s", label,
                           (unsigned long long)offset, strerror(errno));
        }
        if (got == 0)
            return ln_fail(ctx, LN_ERROR_BAD_FILE,
                           "%s: file ended at byte %llu, before the data it declares "
                           "(truncated while being read?)",
                           label, (unsigned long long)offset);
        p += got;
        n -= (size_t)got;
        offset += (uint64_t)got;
    }
    return LN_SUCCESS;
}

/* Opens a regular file for reading and gives its size. */
static ln_status open_regular(ln_context *ctx, const char *path, int *fd_out, uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ln_fail(ctx, LN_ERROR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return ln_fail(ctx, LN_ERROR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ln_fail(ctx, LN_ERROR_IO, "%s: not a regular file", path);
    }
    *fd_out = fd;
    *size = (uint64_t)st.st_size;
    return LN_SUCCESS;
}

ln_status ln_file_read_all(ln_context *ctx, const char *path, size_t max_size, void **bytes,
                           size_t *size)
{
    if (!path || !bytes || !size)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "ln_file_read_all: NULL argument");
    *bytes = NULL;
    *size = 0;
    int fd;
    uint64_t fsize;
    ln_status st = open_regular(ctx, path, &fd, &fsize);
    if (st != LN_SUCCESS)
        return st;
    if (fsize > max_size) {
        close(fd);
        return ln_fail(ctx, LN_ERROR_BAD_FILE, "%s: %llu bytes, more than the %zu this reader accepts",
                       path, (unsigned long long)fsize, max_size);
    }
    void *buf = malloc(fsize ? (size_t)fsize : 1);
    if (!buf) {
        close(fd);
        return ln_fail(ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "%s: out of memory for %llu bytes", path,
                       (unsigned long long)fsize);
    }
    st = pread_all(ctx, path, fd, 0, buf, (size_t)fsize);
    close(fd);
    if (st != LN_SUCCESS) {
        free(buf);
        return st;
    }
    *bytes = buf;
    *size = (size_t)fsize;
    return LN_SUCCESS;
}

static ln_status write_all(ln_context *ctx, const char *path, int fd, const void *data, size_t n)
{
    const unsigned char *p = data;
    while (n) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t put = write(fd, p, chunk);
        if (put < 0) {
            if (errno == EINTR)
                continue;
            return ln_fail(ctx, LN_ERROR_IO, "%s: write failed: %s", path, strerror(errno));
        }
        p += put;
        n -= (size_t)put;
    }
    return LN_SUCCESS;
}

/* Makes a rename durable; best effort (some file systems refuse to fsync a
 * directory, and the data itself is already safe). */
static void sync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir)
        return;
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

/* Test hook: LN_TEST_PAUSE_BEFORE_RENAME="<ms>[:<text>]" makes every atomic
 * write whose target path contains <text> (any path without it) announce
 * itself on stderr and sleep <ms> milliseconds between writing the
 * temporary file and renaming it, so a test can SIGKILL the writer there
 * and check that the previous file is intact (tests/atomic_kill.cmake).
 * Read once per process; unset (the normal case) it costs one
 * pthread_once per write. */
static pthread_once_t pause_once = PTHREAD_ONCE_INIT;
static long pause_ms;
static char pause_match[256];

static void read_pause_env(void)
{
    const char *v = getenv("LN_TEST_PAUSE_BEFORE_RENAME");
    if (!v || !*v)
        return;
    char *end;
    long ms = strtol(v, &end, 10);
    if (ms <= 0 || (*end != '\0' && *end != ':'))
        return;
    if (*end == ':')
        snprintf(pause_match, sizeof(pause_match), "%s", end + 1);
    pause_ms = ms;
}

static void test_pause_before_rename(const char *tmp, const char *path)
{
    pthread_once(&pause_once, read_pause_env);
    if (!pause_ms || (pause_match[0] && !strstr(path, pause_match)))
        return;
    fprintf(stderr, "ln-cl: LN_TEST_PAUSE_BEFORE_RENAME: wrote %s, pausing %ld ms before "
            "renaming it over %s\n", tmp, pause_ms, path);
    struct timespec left = {pause_ms / 1000, (pause_ms % 1000) * 1000000L};
    while (nanosleep(&left, &left) != 0 && errno == EINTR)
        ;
}

ln_status ln_file_write_atomic(ln_context *ctx, const char *path, const ln_io_piece *pieces,
                               size_t count)
{
    if (!path || !*path || (count && !pieces))
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "ln_file_write_atomic: bad path or pieces");
    /* Not mkstemp: its files are mode 0600, and restoring 0666 & ~umask
     * would need umask(), which is process-wide and racy. O_EXCL with a
     * name unique to this process and call is as safe (no clobbering, no
     * symlink following) and lets open() apply the umask. */
    static _Thread_local unsigned serial;
    size_t cap = strlen(path) + 64;
    char *tmp = malloc(cap);
    if (!tmp)
        return ln_fail(ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "%s: out of memory", path);
    int fd = -1;
    for (int attempt = 0; attempt < 64 && fd < 0; attempt++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        unsigned long salt = (unsigned long)ts.tv_nsec ^ ((unsigned long)++serial << 20);
        snprintf(tmp, cap, "%s.tmp-%ld-%lx", path, (long)getpid(), salt);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) {
            ln_status st = ln_fail(ctx, LN_ERROR_IO, "%s: cannot create a temporary file beside it: %s",
                                   path, strerror(errno));
            free(tmp);
            return st;
        }
    }
    if (fd < 0) {
        free(tmp);
        return ln_fail(ctx, LN_ERROR_IO, "%s: no free temporary file name beside it", path);
    }
    ln_status st = LN_SUCCESS;
    for (size_t i = 0; i < count && st == LN_SUCCESS; i++)
        if (pieces[i].size)
            st = write_all(ctx, path, fd, pieces[i].data, pieces[i].size);
    if (st == LN_SUCCESS && fsync(fd) != 0)
        st = ln_fail(ctx, LN_ERROR_IO, "%s: fsync failed: %s", path, strerror(errno));
    /* close() can report a deferred write error (NFS), so it is checked. */
    if (close(fd) != 0 && st == LN_SUCCESS)
        st = ln_fail(ctx, LN_ERROR_IO, "%s: close failed: %s", path, strerror(errno));
    if (st == LN_SUCCESS)
        test_pause_before_rename(tmp, path);
    if (st == LN_SUCCESS && rename(tmp, path) != 0)
        st = ln_fail(ctx, LN_ERROR_IO, "%s: cannot replace it: %s", path, strerror(errno));
    if (st == LN_SUCCESS)
        sync_parent_dir(path);
    else
        unlink(tmp);
    free(tmp);
    return st;
}

/* --------------------------------------------------------- reading: header */

typedef struct st_dtype {
    const char *name;
    size_t file_size; /* bytes per element on disk */
    ln_dtype dtype;   /* after loading */
} st_dtype;

static const st_dtype st_dtypes[] = {
    {"F32", 4, LN_DT_F32}, {"F16", 2, LN_DT_F32}, {"BF16", 2, LN_DT_F32},
    {"I32", 4, LN_DT_I32}, {"I64", 8, LN_DT_I64},
};

typedef struct st_entry {
    const char *name; /* the header's key; lives as long as the json_t */
    const st_dtype *dt;
    int ndim;
    int64_t shape[LN_TENSOR_MAX_DIMS];
    size_t count;
    uint64_t begin, end; /* in the data section */
} st_entry;

/* Where the bytes come from: memory (parse) or a file descriptor (read). */
typedef struct st_source {
    const unsigned char *mem;
    int fd;
    const char *label;
} st_source;

static ln_status source_read(ln_context *ctx, const st_source *src, uint64_t offset, void *dst,
                             size_t n)
{
    if (src->mem) {
        if (n)
            memcpy(dst, src->mem + offset, n);
        return LN_SUCCESS;
    }
    return pread_all(ctx, src->label, src->fd, offset, dst, n);
}

static int entry_by_name(const void *a, const void *b)
{
    return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}

static int entry_by_offset(const void *a, const void *b)
{
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Checks one tensor entry of the header against the data section's size. */
static ln_status parse_entry(ln_context *ctx, const char *label, const char *name,
                             json_t *value, uint64_t data_size, st_entry *e)
{
    memset(e, 0, sizeof(*e));
    e->name = name;
    if (!*name)
        return ln_fail(ctx, LN_ERROR_BAD_FILE, "%s: a tensor has an empty name", label);
    if (!json_is_object(value))
        return ln_fail(ctx, LN_ERROR_BAD_FILE, "%s: tensor " NAME_FMT ": entry is not a JSON object",
                       label, name);

    json_t *dtype = json_object_get(value, "dtype");
    if (!json_is_string(dtype))
        return ln_fail(ctx, LN_ERROR_BAD_FILE,
                       "%s: tensor " NAME_FMT ": \"dtype\" is missing or not a string", label, name);
    for (size_t i = 0; i < sizeof(st_dtypes) / sizeof(st_dtypes[0]); i++)
        if (strcmp(json_string_value(dtype), st_dtypes[i].name) == 0)
            e->dt = &st_dtypes[i];
    if (!e->dt)
        return ln_fail(ctx, LN_ERROR_BAD_FILE,
                       "%s: tensor " NAME_FMT ": dtype \"%.32s\" is not supported (ln-cl reads "
                       "F32, F16, BF16, I32 and I64)",
                       label, name, json_string_value(dtype));

    json_t *shape = json_object_get(value, "shape");
    if (!json_is_array(shape))
        return ln_fail(ctx, LN_ERROR_BAD_FILE,
                       "%s: tensor " NAME_FMT ": \"shape\" is missing or not an array", label, name);
    if (json_array_size(shape) > LN_TENSOR_MAX_DIMS)
        return ln_fail(ctx, LN_ERROR_BAD_FILE,
                       "%s: tensor " NAME_FMT ": %zu dimensions, more than the %d ln-cl reads",
                       label, name, json_array_size(shape), LN_TENSOR_MAX_DIMS);
    e->ndim = (int)json_array_size(shape);
    for (int i = 0; i < e->ndim; i++) {
        json_t *d = json_array_get(shape, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return ln_fail(ctx, LN_ERROR_BAD_FILE,
                           "%s: tensor " NAME_FMT ": shape entry %d is not a non-negative integer",
                           label, name, i);
        e->shape[i] = (int64_t)json_integer_value(d);
    }

    json_t *offs = json_object_get(value, "data_offsets");
    json_t *b = json_array_get(offs, 0), *en = json_array_get(offs, 1);
    if (!json_is_array(offs) || json_array_size(offs) != 2 || !json_is_integer(b) ||
        !json_is_integer(en))
        return ln_fail(ctx, LN_ERROR_BAD_FILE,
                       "%s: tensor " NAME_FMT ": \"data_offsets\" is not [begin, end] integers",
                       label, name);
    json_int_t begin = json_integer_value(b), end = json_integer_value(en);
    if (begin < 0 || end < begin || (uint64_t)end > data_size)
        return ln_fail(ctx, LN_ERROR_BAD_FILE,
                       "%s: tensor " NAME_FMT ": data_offsets [%lld, %lld] are not within the "
                       "%llu-byte data section",
                       label, name, (long long)begin, (long long)end,
                       (unsigned long long)data_size);
    e->begin = (uint64_t)begin;
    e->end = (uint64_t)end;

    char sbuf[256];
    if (!ln_shape_count(e->ndim, e->shape, &e->count))
        return ln_fail(ctx, LN_ERROR_BAD_FILE, "%s: tensor " NAME_FMT ": shape %s is too large",
                       label, name, ln_shape_str(e->ndim, e->shape, sbuf, sizeof(sbuf)));
    if ((uint64_t)e->count * e->dt->file_size != e->end - e->begin)
        return ln_fail(ctx, LN_ERROR_BAD_FILE,
                       "%s: tensor " NAME_FMT ": shape %s of %s needs %llu bytes but "
                       "data_offsets [%llu, %llu] hold %llu",
                       label, name, ln_shape_str(e->ndim, e->shape, sbuf, sizeof(sbuf)), e->dt->name,
                       (unsigned long long)e->count * e->dt->file_size,
                       (unsigned long long)e->begin, (unsigned long long)e->end,
                       (unsigned long long)(e->end - e->begin));
    return LN_SUCCESS;
}

/* ---------------------------------------------------------- reading: data */

/* IEEE half to float, exactly (every half is a float). */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
    if (exp == 0x1f)
        bits = sign | 0x7f800000u | (mant << 13); /* Inf, or NaN with its payload */
    else if (exp)
        bits = sign | ((exp + 112) << 23) | (mant << 13); /* rebias 15 -> 127 */
    else if (!mant)
        bits = sign;
    else {
        float f = (float)mant * 0x1p-24f; /* subnormal: mant * 2^-24 */
        return sign ? -f : f;
    }
    float f;
    memcpy(&f, &bits, sizeof(f));
    return f;
}

static float bf16_to_float(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof(f));
    return f;
}

/* Fills t->data from the data section (which starts at data_start). */
static ln_status load_entry(ln_context *ctx, const st_source *src, uint64_t data_start,
                            const st_entry *e, ln_tensor *t)
{
    size_t out_bytes = e->count * ln_dtype_size(e->dt->dtype);
    size_t file_bytes = e->count * e->dt->file_size;
    t->data = malloc(out_bytes ? out_bytes : 1);
    if (!t->data)
        return ln_fail(ctx, LN_ERROR_OUT_OF_HOST_MEMORY,
                       "%s: tensor " NAME_FMT ": out of memory for %zu bytes", src->label, e->name,
                       out_bytes);
    if (e->dt->file_size == ln_dtype_size(e->dt->dtype))
        return source_read(ctx, src, data_start + e->begin, t->data, file_bytes);

    /* F16 / BF16: read the halves, widen into the float buffer. */
    unsigned char *raw = malloc(file_bytes ? file_bytes : 1);
    if (!raw)
        return ln_fail(ctx, LN_ERROR_OUT_OF_HOST_MEMORY,
                       "%s: tensor " NAME_FMT ": out of memory for %zu bytes", src->label, e->name,
                       file_bytes);
    ln_status st = source_read(ctx, src, data_start + e->begin, raw, file_bytes);
    if (st == LN_SUCCESS) {
        bool bf16 = strcmp(e->dt->name, "BF16") == 0;
        float *dst = t->data;
        for (size_t i = 0; i < e->count; i++) {
            uint16_t h = (uint16_t)(raw[2 * i] | (raw[2 * i + 1] << 8));
            dst[i] = bf16 ? bf16_to_float(h) : half_to_float(h);
        }
    }
    free(raw);
    return st;
}

static ln_status st_load(ln_context *ctx, const st_source *src, uint64_t total,
                         ln_tensor_file **out)
{
    const char *label = src->label;
    if (total < 8)
        return ln_fail(ctx, LN_ERROR_BAD_FILE,
                       "%s: %llu bytes, too short for the 8-byte header length", label,
                       (unsigned long long)total);
    unsigned char len8[8];
    ln_status st = source_read(ctx, src, 0, len8, 8);
    if (st != LN_SUCCESS)
        return st;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | len8[i];
    if (hlen > LN_SAFETENSORS_MAX_HEADER)
        return ln_fail(ctx, LN_ERROR_BAD_FILE,
                       "%s: header length %llu exceeds the %llu-byte cap (not a safetensors file?)",
                       label, (unsigned long long)hlen,
                       (unsigned long long)LN_SAFETENSORS_MAX_HEADER);
    if (hlen > total - 8)
        return ln_fail(ctx, LN_ERROR_BAD_FILE,
                       "%s: header length %llu runs past the end of the %llu-byte file", label,
                       (unsigned long long)hlen, (unsigned long long)total);
    uint64_t data_size = total - 8 - hlen;

    char *hbuf = NULL;
    const char *header = (const char *)src->mem + 8;
    if (!src->mem) {
        hbuf = malloc(hlen ? (size_t)hlen : 1);
        if (!hbuf)
            return ln_fail(ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "%s: out of memory for the header",
                           label);
        st = source_read(ctx, src, 8, hbuf, (size_t)hlen);
        if (st != LN_SUCCESS) {
            free(hbuf);
            return st;
        }
        header = hbuf;
    }
    json_error_t jerr;
    json_t *root = json_loadb(header, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    free(hbuf);
    if (!root)
        return ln_fail(ctx, LN_ERROR_BAD_FILE, "%s: header is not valid JSON: %s (line %d, column %d)",
                       label, jerr.text, jerr.line, jerr.column);

    st_entry *entries = NULL, **by_offset = NULL;
    ln_tensor_file *file = NULL;
    json_t *meta = NULL;
    size_t n = 0;
    if (!json_is_object(root)) {
        st = ln_fail(ctx, LN_ERROR_BAD_FILE, "%s: header is not a JSON object", label);
        goto done;
    }
    size_t cap = json_object_size(root);
    entries = malloc((cap ? cap : 1) * sizeof(*entries));
    by_offset = malloc((cap ? cap : 1) * sizeof(*by_offset));
    st = ln_tensor_file_create(ctx, &file);
    if (st == LN_SUCCESS && (!entries || !by_offset))
        st = ln_fail(ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "%s: out of memory for %zu header entries",
                     label, cap);
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value)
    {
        if (st != LN_SUCCESS)
            break;
        if (strcmp(key, "__metadata__") == 0) {
            meta = value;
            continue;
        }
        st = parse_entry(ctx, label, key, value, data_size, &entries[n]);
        by_offset[n] = &entries[n];
        n++;
    }
    if (st != LN_SUCCESS)
        goto done;

    if (meta) {
        if (!json_is_object(meta)) {
            st = ln_fail(ctx, LN_ERROR_BAD_FILE, "%s: \"__metadata__\" is not a JSON object", label);
            goto done;
        }
        json_object_foreach(meta, key, value)
        {
            if (!json_is_string(value)) {
                st = ln_fail(ctx, LN_ERROR_BAD_FILE,
                             "%s: metadata " NAME_FMT " is not a string (safetensors metadata "
                             "maps strings to strings)",
                             label, key);
                goto done;
            }
            st = ln_tensor_file_set_metadata(ctx, file, key, json_string_value(value));
            if (st != LN_SUCCESS)
                goto done;
        }
    }

    /* Overlap: sorted by start, each tensor must begin at or after the end
     * of the one before. Gaps are allowed. */
    qsort(by_offset, n, sizeof(*by_offset), entry_by_offset);
    for (size_t i = 1; i < n; i++)
        if (by_offset[i]->begin < by_offset[i - 1]->end) {
            st = ln_fail(ctx, LN_ERROR_BAD_FILE,
                         "%s: tensors " NAME_FMT " [%llu, %llu] and " NAME_FMT
                         " [%llu, %llu] overlap in the data section",
                         label, by_offset[i - 1]->name, (unsigned long long)by_offset[i - 1]->begin,
                         (unsigned long long)by_offset[i - 1]->end, by_offset[i]->name,
                         (unsigned long long)by_offset[i]->begin,
                         (unsigned long long)by_offset[i]->end);
            goto done;
        }

    /* Everything is checked: now allocate and copy, in name order. */
    qsort(entries, n, sizeof(*entries), entry_by_name);
    file->tensors = calloc(n ? n : 1, sizeof(ln_tensor));
    if (!file->tensors) {
        st = ln_fail(ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "%s: out of memory", label);
        goto done;
    }
    for (size_t i = 0; i < n && st == LN_SUCCESS; i++) {
        ln_tensor *t = &file->tensors[i];
        file->count = i + 1; /* so a failure frees what was made */
        t->name = strdup(entries[i].name);
        if (!t->name) {
            st = ln_fail(ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "%s: out of memory", label);
            break;
        }
        t->dtype = entries[i].dt->dtype;
        t->ndim = entries[i].ndim;
        memcpy(t->shape, entries[i].shape, sizeof(t->shape));
        t->count = entries[i].count;
        st = load_entry(ctx, src, 8 + hlen, &entries[i], t);
    }

done:
    free(entries);
    free(by_offset);
    json_decref(root);
    if (st != LN_SUCCESS) {
        ln_tensor_file_free(file);
        return st;
    }
    *out = file;
    return LN_SUCCESS;
}

ln_status ln_safetensors_parse(ln_context *ctx, const void *bytes, size_t size,
                               const char *label, ln_tensor_file **out)
{
    ln_clear_error(ctx);
    if (!out || (!bytes && size))
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "ln_safetensors_parse: NULL argument");
    *out = NULL;
    /* An empty input has no bytes to point at; any non-NULL pointer works. */
    static const unsigned char empty[1];
    st_source src = {bytes ? bytes : empty, -1, label ? label : "<memory>"};
    return st_load(ctx, &src, size, out);
}

ln_status ln_safetensors_read(ln_context *ctx, const char *path, ln_tensor_file **out)
{
    ln_clear_error(ctx);
    if (!path || !out)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "ln_safetensors_read: NULL argument");
    *out = NULL;
    int fd;
    uint64_t size;
    ln_status st = open_regular(ctx, path, &fd, &size);
    if (st != LN_SUCCESS)
        return st;
    st_source src = {NULL, fd, path};
    st = st_load(ctx, &src, size, out);
    close(fd);
    return st;
}

/* ----------------------------------------------------------------- writing */

ln_status ln_safetensors_write(ln_context *ctx, const char *path, const ln_tensor *tensors,
                               size_t count, const char *metadata_key,
                               const char *metadata_value)
{
    ln_clear_error(ctx);
    if (!path || !*path || (count && !tensors) || (metadata_key && !metadata_value))
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT,
                       "ln_safetensors_write: NULL path, tensors or metadata value");
    json_t *root = json_object();
    ln_io_piece *pieces = malloc((count + 1) * sizeof(*pieces));
    char *json = NULL, *header = NULL;
    ln_status st = LN_SUCCESS;
    if (!root || !pieces) {
        st = ln_fail(ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "%s: out of memory", path);
        goto done;
    }
    if (metadata_key) {
        json_t *meta = json_object();
        if (json_object_set_new(root, "__metadata__", meta) != 0 ||
            json_object_set_new(meta, metadata_key, json_string(metadata_value)) != 0) {
            st = ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT,
                         "%s: metadata key or value is not valid UTF-8 (or out of memory)", path);
            goto done;
        }
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < count; i++) {
        const ln_tensor *t = &tensors[i];
        size_t c;
        bool dims_ok = t->ndim >= 0 && t->ndim <= LN_TENSOR_MAX_DIMS;
        for (int d = 0; dims_ok && d < t->ndim; d++)
            dims_ok = t->shape[d] >= 0;
        if (!t->name || !*t->name || strcmp(t->name, "__metadata__") == 0 ||
            !dtype_valid(t->dtype) || !dims_ok || !ln_shape_count(t->ndim, t->shape, &c) ||
            c != t->count || (c && !t->data)) {
            st = ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT,
                         "%s: tensor %zu (%.200s): bad name, dtype, shape, count or data", path, i,
                         t->name ? t->name : "NULL");
            goto done;
        }
        if (json_object_get(root, t->name)) {
            st = ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "%s: duplicate tensor name " NAME_FMT,
                         path, t->name);
            goto done;
        }
        size_t bytes = c * ln_dtype_size(t->dtype);
        json_t *entry = json_object(), *shape = json_array();
        if (entry)
            json_object_set_new(entry, "dtype", json_string(ln_dtype_name(t->dtype)));
        for (int d = 0; shape && d < t->ndim; d++)
            json_array_append_new(shape, json_integer((json_int_t)t->shape[d]));
        if (entry)
            json_object_set_new(entry, "shape", shape);
        else
            json_decref(shape);
        if (entry)
            json_object_set_new(entry, "data_offsets",
                                json_pack("[II]", (json_int_t)offset, (json_int_t)(offset + bytes)));
        if (!entry || json_object_size(entry) != 3 ||
            json_object_set_new(root, t->name, entry) != 0) {
            st = ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT,
                         "%s: tensor " NAME_FMT ": name is not valid UTF-8 (or out of memory)", path,
                         t->name);
            goto done;
        }
        pieces[i + 1].data = t->data;
        pieces[i + 1].size = bytes;
        offset += bytes;
    }
    /* Insertion order is kept (jansson >= 2.8), so offsets ascend in the
     * header as in the data. */
    json = json_dumps(root, JSON_COMPACT);
    if (!json) {
        st = ln_fail(ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "%s: out of memory for the header", path);
        goto done;
    }
    size_t jlen = strlen(json), padded = (jlen + 7) & ~(size_t)7;
    header = malloc(8 + padded);
    if (!header) {
        st = ln_fail(ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "%s: out of memory for the header", path);
        goto done;
    }
    for (int i = 0; i < 8; i++)
        header[i] = (char)(((uint64_t)padded >> (8 * i)) & 0xff);
    memcpy(header + 8, json, jlen);
    memset(header + 8 + jlen, ' ', padded - jlen); /* as the reference writer pads */
    pieces[0].data = header;
    pieces[0].size = 8 + padded;
    st = ln_file_write_atomic(ctx, path, pieces, count + 1);

done:
    free(header);
    free(json);
    free(pieces);
    json_decref(root);
    return st;
}
