/*
 * npy.c: the .npy reader and writer (inputs and outputs of the command-line
 * tools and tests). See tensor_io.h.
 *
 * The format: "\x93NUMPY", major and minor version bytes, a little-endian
 * header length (2 bytes in 1.0, 4 in 2.0 and 3.0), then the header, a
 * Python dict literal such as
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 * padded with spaces and ending in '\n', then the raw array. The header is
 * read by a small strict parser that accepts exactly those three keys with
 * literal values and nothing else: not a general Python reader.
 */
#include "internal.h"
#include "tensor_io.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "'<f4' data is copied, not swapped: a big-endian host needs byte swaps here"
#endif

#define NPY_MAX_DIMS 3
/* The parser reads up to this many dimensions so that it can say how many
 * there were before refusing more than NPY_MAX_DIMS. */
#define NPY_PARSE_DIMS LN_TENSOR_MAX_DIMS

static const char npy_magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

typedef struct npy_header {
    bool f8; /* '<f8', narrowed to float on load */
    int ndim;
    int64_t shape[NPY_PARSE_DIMS];
    size_t count;
    size_t data_offset;
} npy_header;

/* ------------------------------------------------------------ dict parser */

typedef struct cursor {
    const char *p, *begin, *end;
} cursor;

static void skip_ws(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool eat(cursor *c, char ch)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

/* A quoted string without escapes ('...' or "..."), at most cap - 1 bytes. */
static bool parse_str(cursor *c, char *buf, size_t cap)
{
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return false;
    char quote = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != quote) {
        if (*c->p == '\\' || *c->p == '\n' || *c->p == '\0' || n + 1 >= cap)
            return false;
        buf[n++] = *c->p++;
    }
    if (c->p >= c->end)
        return false;
    c->p++;
    buf[n] = '\0';
    return true;
}

static bool parse_word(cursor *c, const char *word)
{
    skip_ws(c);
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
        return false;
    c->p += n;
    return true;
}

/* A non-negative decimal integer without leading zeros, up to INT64_MAX. */
static bool parse_int(cursor *c, int64_t *out)
{
    skip_ws(c);
    if (c->p >= c->end || *c->p < '0' || *c->p > '9')
        return false;
    if (*c->p == '0' && c->p + 1 < c->end && c->p[1] >= '0' && c->p[1] <= '9')
        return false;
    int64_t v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        int digit = *c->p++ - '0';
        if (v > (INT64_MAX - digit) / 10)
            return false;
        v = v * 10 + digit;
    }
    *out = v;
    return true;
}

/* A tuple of integers: "()", "(3,)", "(2, 3)", "(2, 3,)". */
static bool parse_shape(cursor *c, int *ndim, int64_t *shape)
{
    if (!eat(c, '('))
        return false;
    *ndim = 0;
    if (eat(c, ')'))
        return true;
    for (;;) {
        if (*ndim == NPY_PARSE_DIMS || !parse_int(c, &shape[*ndim]))
            return false;
        (*ndim)++;
        bool comma = eat(c, ',');
        if (eat(c, ')'))
            return *ndim > 1 || comma; /* "(3)" is an int in Python, not a tuple */
        if (!comma)
            return false;
    }
}

/* Fills h (but data_offset) from the dict, or returns what was wrong. */
static const char *parse_dict(cursor *c, char *descr, size_t descr_cap, bool *fortran,
                              npy_header *h)
{
    bool have_descr = false, have_fortran = false, have_shape = false;
    if (!eat(c, '{'))
        return "it does not start with '{'";
    while (!eat(c, '}')) {
        char key[32];
        if (!parse_str(c, key, sizeof(key)))
            return "expected a quoted key";
        if (!eat(c, ':'))
            return "expected ':' after a key";
        if (strcmp(key, "descr") == 0) {
            if (have_descr)
                return "'descr' appears twice";
            if (!parse_str(c, descr, descr_cap))
                return "'descr' is not a short string (structured dtypes are not supported)";
            have_descr = true;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (have_fortran)
                return "'fortran_order' appears twice";
            if (parse_word(c, "True"))
                *fortran = true;
            else if (parse_word(c, "False"))
                *fortran = false;
            else
                return "'fortran_order' is not True or False";
            have_fortran = true;
        } else if (strcmp(key, "shape") == 0) {
            if (have_shape)
                return "'shape' appears twice";
            if (!parse_shape(c, &h->ndim, h->shape))
                return "'shape' is not a tuple of at most 8 non-negative integers";
            have_shape = true;
        } else {
            return "unexpected key (only 'descr', 'fortran_order' and 'shape' are allowed)";
        }
        /* Entries are separated by commas; a trailing one is allowed. */
        if (!eat(c, ',')) {
            if (!eat(c, '}'))
                return "expected ',' or '}' after a value";
            break;
        }
    }
    if (!have_descr || !have_fortran || !have_shape)
        return "a key is missing (it needs 'descr', 'fortran_order' and 'shape')";
    skip_ws(c);
    if (c->p != c->end)
        return "something follows the closing '}'";
    return NULL;
}

/* --------------------------------------------------------------- reading */

static ln_status npy_header_parse(ln_context *ctx, const unsigned char *b, size_t size,
                                  const char *label, npy_header *h)
{
    memset(h, 0, sizeof(*h));
    if (size < 10 || memcmp(b, npy_magic, sizeof(npy_magic)) != 0)
        return ln_fail(ctx, LN_ERROR_BAD_FILE, "%s: not a .npy file (no \\x93NUMPY magic)", label);
    int major = b[6], minor = b[7];
    size_t prefix, hlen;
    if (major == 1 && minor == 0) {
        prefix = 10;
        hlen = (size_t)b[8] | (size_t)b[9] << 8;
    } else if ((major == 2 || major == 3) && minor == 0) {
        prefix = 12;
        if (size < prefix)
            return ln_fail(ctx, LN_ERROR_BAD_FILE, "%s: .npy file cut inside its header length",
                           label);
        hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
    } else {
        return ln_fail(ctx, LN_ERROR_BAD_FILE, "%s: .npy format version %d.%d is not supported "
                       "(1.0, 2.0 and 3.0 are)", label, major, minor);
    }
    if (hlen > size - prefix)
        return ln_fail(ctx, LN_ERROR_BAD_FILE,
                       "%s: .npy header length %zu runs past the end of the %zu-byte file", label,
                       hlen, size);

    cursor c = {(const char *)b + prefix, (const char *)b + prefix, (const char *)b + prefix + hlen};
    char descr[16];
    bool fortran = false;
    const char *why = parse_dict(&c, descr, sizeof(descr), &fortran, h);
    if (why)
        return ln_fail(ctx, LN_ERROR_BAD_FILE, "%s: bad .npy header at byte %zu: %s", label,
                       prefix + (size_t)(c.p - c.begin), why);
    if (strcmp(descr, "<f8") == 0)
        h->f8 = true;
    else if (strcmp(descr, "<f4") != 0)
        return ln_fail(ctx, LN_ERROR_BAD_FILE, "%s: .npy dtype '%s' is not supported: ln-cl reads "
                       "little-endian float32 ('<f4') and float64 ('<f8')%s",
                       label, descr, descr[0] == '>' ? " (this one is big-endian)" : "");
    if (fortran)
        return ln_fail(ctx, LN_ERROR_BAD_FILE, "%s: .npy array is in Fortran order; save a "
                       "C-order array (numpy.ascontiguousarray)", label);
    char sbuf[256];
    if (h->ndim < 1 || h->ndim > NPY_MAX_DIMS)
        return ln_fail(ctx, LN_ERROR_BAD_FILE, "%s: .npy shape %s has %d dimensions; ln-cl reads "
                       "1 to %d", label, ln_shape_str(h->ndim, h->shape, sbuf, sizeof(sbuf)),
                       h->ndim, NPY_MAX_DIMS);
    if (!ln_shape_count(h->ndim, h->shape, &h->count))
        return ln_fail(ctx, LN_ERROR_BAD_FILE, "%s: .npy shape %s is too large", label,
                       ln_shape_str(h->ndim, h->shape, sbuf, sizeof(sbuf)));
    h->data_offset = prefix + hlen;
    size_t want = h->count * (h->f8 ? 8 : 4), have = size - h->data_offset;
    if (want != have)
        return ln_fail(ctx, LN_ERROR_BAD_FILE, "%s: .npy shape %s of %s needs %zu data bytes, the "
                       "file has %zu (%s)", label, ln_shape_str(h->ndim, h->shape, sbuf, sizeof(sbuf)),
                       descr, want, have, want > have ? "truncated" : "trailing bytes");
    return LN_SUCCESS;
}

/* Narrows or copies count values at src into dst. dst may lie at or before
 * src in the same buffer: value i is read before dst[i] is written, and
 * dst[i] ends before src value i + 1 begins. */
static void npy_convert(float *dst, const unsigned char *src, size_t count, bool f8)
{
    if (!f8) {
        memmove(dst, src, count * 4);
        return;
    }
    for (size_t i = 0; i < count; i++) {
        double d;
        memcpy(&d, src + 8 * i, 8);
        dst[i] = (float)d; /* out of range gives +-Inf (IEC 60559 rounding) */
    }
}

static void fill_tensor(ln_tensor *out, const npy_header *h, void *data)
{
    memset(out, 0, sizeof(*out));
    out->dtype = LN_DT_F32;
    out->ndim = h->ndim;
    memcpy(out->shape, h->shape, sizeof(out->shape));
    out->count = h->count;
    out->data = data;
}

ln_status ln_npy_parse(ln_context *ctx, const void *bytes, size_t size, const char *label,
                       ln_tensor *out)
{
    ln_clear_error(ctx);
    if (!out || (!bytes && size))
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "ln_npy_parse: NULL argument");
    memset(out, 0, sizeof(*out));
    npy_header h;
    ln_status st = npy_header_parse(ctx, bytes, size, label ? label : "<memory>", &h);
    if (st != LN_SUCCESS)
        return st;
    float *data = malloc(h.count ? h.count * 4 : 1);
    if (!data)
        return ln_fail(ctx, LN_ERROR_OUT_OF_HOST_MEMORY, "%s: out of memory for %zu floats",
                       label ? label : "<memory>", h.count);
    npy_convert(data, (const unsigned char *)bytes + h.data_offset, h.count, h.f8);
    fill_tensor(out, &h, data);
    return LN_SUCCESS;
}

ln_status ln_npy_read(ln_context *ctx, const char *path, ln_tensor *out)
{
    ln_clear_error(ctx);
    if (!path || !out)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "ln_npy_read: NULL argument");
    memset(out, 0, sizeof(*out));
    void *buf;
    size_t size;
    ln_status st = ln_file_read_all(ctx, path, SIZE_MAX, &buf, &size);
    if (st != LN_SUCCESS)
        return st;
    npy_header h;
    st = npy_header_parse(ctx, buf, size, path, &h);
    if (st != LN_SUCCESS) {
        free(buf);
        return st;
    }
    /* Decode in place and shrink, so a large input costs its size once. */
    npy_convert(buf, (const unsigned char *)buf + h.data_offset, h.count, h.f8);
    void *shrunk = realloc(buf, h.count ? h.count * 4 : 1);
    fill_tensor(out, &h, shrunk ? shrunk : buf);
    return LN_SUCCESS;
}

/* --------------------------------------------------------------- writing */

ln_status ln_npy_write(ln_context *ctx, const char *path, const float *data, int ndim,
                       const int64_t *shape)
{
    ln_clear_error(ctx);
    if (!path || !shape || ndim < 1 || ndim > NPY_MAX_DIMS)
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT,
                       "ln_npy_write: NULL path or shape, or %d dimensions (1 to %d allowed)", ndim,
                       NPY_MAX_DIMS);
    size_t count = 0;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "%s: negative dimension %lld", path,
                           (long long)shape[i]);
    if (!ln_shape_count(ndim, shape, &count) || (count && !data))
        return ln_fail(ctx, LN_ERROR_INVALID_ARGUMENT, "%s: shape too large or data is NULL",
                       path);

    /* Prefix (10) + dict + padding + '\n' is a multiple of 64, as numpy
     * writes it, so the data is aligned when the file is mapped. At most 3
     * dims of 19 digits: the header stays far below 1.0's 65535 limit. */
    char header[256];
    int n = snprintf(header, sizeof(header), "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (int i = 0; i < ndim; i++)
        n += snprintf(header + n, sizeof(header) - (size_t)n, "%s%lld", i ? ", " : "",
                      (long long)shape[i]);
    n += snprintf(header + n, sizeof(header) - (size_t)n, "%s), }", ndim == 1 ? "," : "");
    size_t total = ((size_t)10 + (size_t)n + 1 + 63) / 64 * 64, hlen = total - 10;
    unsigned char prefix[10 + 192];
    memcpy(prefix, npy_magic, 6);
    prefix[6] = 1;
    prefix[7] = 0;
    prefix[8] = (unsigned char)(hlen & 0xff);
    prefix[9] = (unsigned char)(hlen >> 8);
    memcpy(prefix + 10, header, (size_t)n);
    memset(prefix + 10 + n, ' ', hlen - (size_t)n - 1);
    prefix[total - 1] = '\n';
    ln_io_piece pieces[2] = {{prefix, total}, {data, count * 4}};
    return ln_file_write_atomic(ctx, path, pieces, 2);
}
