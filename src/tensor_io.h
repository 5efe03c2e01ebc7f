/*
 * tensor_io.h: host tensors and the files they come from: the safetensors
 * reader/writer (src/safetensors.c), the .npy reader/writer (src/npy.c) and
 * the two file helpers they share (whole-file read, atomic write; defined in
 * src/safetensors.c). Internal: nothing here is in ln.h.
 *
 * Every reader validates its whole input before trusting any of it: a
 * malformed, truncated or hostile file gives LN_ERROR_BAD_FILE (or
 * LN_ERROR_IO when the file cannot be read at all) with a message naming the
 * file and the tensor, never a crash. ctx may be NULL everywhere: messages
 * then go to the thread's slot, read by ln_last_error(NULL).
 *
 * Hosts are little-endian (checked at compile time in the .c files): both
 * formats are little-endian on disk, so data is copied, not swapped.
 */
#ifndef LN_TENSOR_IO_H
#define LN_TENSOR_IO_H

#include "ln.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LN_TENSOR_MAX_DIMS 8
/* safetensors headers longer than this are refused before any allocation
 * (the same cap as the reference Rust reader). */
#define LN_SAFETENSORS_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

/* Element types after loading: F16 and BF16 files are widened to F32. */
typedef enum ln_dtype { LN_DT_F32 = 0, LN_DT_I32, LN_DT_I64 } ln_dtype;

/* One host tensor, row-major and dense. `data` holds count elements of
 * `dtype` (never NULL after a successful read, even when count is 0).
 * `name` may be NULL (a tensor read from .npy has none). */
typedef struct ln_tensor {
    char *name;
    ln_dtype dtype;
    int ndim;                          /* 0 (scalar) .. LN_TENSOR_MAX_DIMS */
    int64_t shape[LN_TENSOR_MAX_DIMS]; /* entries past ndim are 0 */
    size_t count;                      /* product of shape; 1 for a scalar */
    void *data;
} ln_tensor;

typedef struct ln_tensor_meta {
    char *key;
    char *value;
} ln_tensor_meta;

/* A set of named tensors plus string metadata: what a safetensors file
 * holds. A plain struct so callers can iterate; build one with
 * ln_tensor_file_create/_add/_set_metadata or a reader, free it with
 * ln_tensor_file_free. Tensors are kept sorted by name (find is a binary
 * search), names are unique. */
typedef struct ln_tensor_file {
    ln_tensor *tensors;
    size_t count;
    ln_tensor_meta *metadata;
    size_t metadata_count;
} ln_tensor_file;

const char *ln_dtype_name(ln_dtype dtype); /* "F32", "I32", "I64" */
size_t ln_dtype_size(ln_dtype dtype);

/* Element count of a shape whose entries are all >= 0, or false when it
 * exceeds SIZE_MAX / 8 (so count * any element size cannot overflow). A
 * zero dimension anywhere gives 0, whatever the others are. */
bool ln_shape_count(int ndim, const int64_t *shape, size_t *count);
/* "[2, 3]" ("[]" for a scalar) into buf, for messages; returns buf. */
const char *ln_shape_str(int ndim, const int64_t *shape, char *buf, size_t cap);

/* Frees name and data and zeroes the struct; NULL is a no-op. */
void ln_tensor_clear(ln_tensor *t);

/* Constructor of an empty set. */
ln_status ln_tensor_file_create(ln_context *ctx, ln_tensor_file **out);
/* Destructor; NULL is a no-op. */
void ln_tensor_file_free(ln_tensor_file *file);
/* Adds a copy of `data` (count * dtype size bytes; NULL gives zeros) under
 * `name`. A duplicate or empty name, a negative dimension or more than
 * LN_TENSOR_MAX_DIMS dimensions is LN_ERROR_INVALID_ARGUMENT. */
ln_status ln_tensor_file_add(ln_context *ctx, ln_tensor_file *file, const char *name,
                             ln_dtype dtype, int ndim, const int64_t *shape, const void *data);
/* Sets (or replaces) a metadata entry. */
ln_status ln_tensor_file_set_metadata(ln_context *ctx, ln_tensor_file *file, const char *key,
                                      const char *value);
/* NULL when absent. */
const ln_tensor *ln_tensor_file_find(const ln_tensor_file *file, const char *name);
const char *ln_tensor_file_metadata(const ln_tensor_file *file, const char *key);

/* ------------------------------------------------------------ safetensors */

/* Reads a safetensors file: F32, I32 and I64 tensors as they are, F16 and
 * BF16 widened to F32; any other dtype is LN_ERROR_BAD_FILE naming the
 * tensor. The caller frees *out with ln_tensor_file_free. */
ln_status ln_safetensors_read(ln_context *ctx, const char *path, ln_tensor_file **out);
/* The same from bytes in memory (the fuzzer's entry point); `label` names
 * the input in messages (NULL: "<memory>"). */
ln_status ln_safetensors_parse(ln_context *ctx, const void *bytes, size_t size,
                               const char *label, ln_tensor_file **out);
/* Writes `count` tensors (F32/I32/I64) in the given order, with one
 * metadata entry when metadata_key is not NULL, as safetensors does (header
 * padded with spaces to a multiple of 8). Atomic: see ln_file_write_atomic.
 * Bad arguments (NULL or duplicate names, count not matching the shape)
 * are LN_ERROR_INVALID_ARGUMENT and touch no file. */
ln_status ln_safetensors_write(ln_context *ctx, const char *path, const ln_tensor *tensors,
                               size_t count, const char *metadata_key,
                               const char *metadata_value);

/* -------------------------------------------------------------------- npy */

/* Reads a .npy file (format 1.0, 2.0 or 3.0) holding a C-order array of 1
 * to 3 dimensions of '<f4' (or '<f8', narrowed to float32) into *out, an
 * F32 tensor without a name. On failure *out is left empty. Free it with
 * ln_tensor_clear. */
ln_status ln_npy_read(ln_context *ctx, const char *path, ln_tensor *out);
ln_status ln_npy_parse(ln_context *ctx, const void *bytes, size_t size, const char *label,
                       ln_tensor *out);
/* Writes a float32 C-order array of 1 to 3 dimensions as .npy 1.0 ('<f4',
 * header padded to 64 bytes as numpy does), atomically. */
ln_status ln_npy_write(ln_context *ctx, const char *path, const float *data, int ndim,
                       const int64_t *shape);

/* ------------------------------------------------------------ file helpers */

/* Reads a whole regular file into a fresh malloc'd buffer (*bytes is never
 * NULL on success, even for an empty file). At most max_size bytes: a
 * longer file is LN_ERROR_BAD_FILE. */
ln_status ln_file_read_all(ln_context *ctx, const char *path, size_t max_size, void **bytes,
                           size_t *size);

typedef struct ln_io_piece {
    const void *data;
    size_t size;
} ln_io_piece;

/* Writes the concatenation of `pieces` to `path` atomically: into a fresh
 * temporary file in the same directory, fsync, rename over `path`, fsync
 * the directory. On any failure the temporary is removed and an existing
 * `path` is left as it was. The new file gets mode 0666 minus the umask.
 * A process killed before the rename leaves `path` as it was and its
 * temporary (<path>.tmp-<pid>-<hex>) behind. For tests,
 * LN_TEST_PAUSE_BEFORE_RENAME="<ms>[:<text in path>]" sleeps before the
 * rename (see src/safetensors.c). */
ln_status ln_file_write_atomic(ln_context *ctx, const char *path, const ln_io_piece *pieces,
                               size_t count);

#endif
