/*
 * test_safetensors.c: the safetensors reader/writer, the ln_tensor_file
 * container and the atomic write helper (src/safetensors.c). Bad inputs are
 * crafted byte by byte here; io_dtypes.safetensors (tests/data, written by
 * safetensors.torch, see make_io_fixtures.py) checks what real files hold.
 * No device is needed: every call runs with ctx == NULL.
 */
#include "tensor_io.h"
#include "test_util.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------- helpers */

/* A scratch directory per test (Check forks each test). */
static char scratch[64];

static void scratch_setup(void)
{
    snprintf(scratch, sizeof(scratch), "/tmp/ln-test-st-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(scratch));
}

/* Removes the scratch directory's files (one level) and the directory. */
static void scratch_teardown(void)
{
    DIR *d = opendir(scratch);
    if (!d)
        return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(path, sizeof(path), "%s/%s", scratch, e->d_name);
            if (rmdir(path) != 0)
                unlink(path);
        }
    closedir(d);
    rmdir(scratch);
}

static int scratch_entries(void)
{
    DIR *d = opendir(scratch);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

/* A path in the scratch directory; the last 4 results stay valid. */
static char *scratch_path(const char *name)
{
    static char paths[4][256];
    static int next;
    char *path = paths[next++ % 4];
    snprintf(path, 256, "%s/%s", scratch, name);
    return path;
}

static void write_bytes(const char *path, const void *bytes, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(bytes, 1, n, f), n);
    fclose(f);
}

static char *slurp(const char *path, size_t *n)
{
    void *bytes;
    tu_assert_ok(NULL, ln_file_read_all(NULL, path, SIZE_MAX, &bytes, n));
    return bytes;
}

/* A safetensors image: 8-byte little-endian header length, header, data. */
static unsigned char *st_image(uint64_t hlen, const char *header, const void *data,
                               size_t dlen, size_t *size)
{
    size_t n = 8 + strlen(header) + dlen;
    unsigned char *b = tu_malloc(n);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(b + 8, header, strlen(header));
    if (dlen)
        memcpy(b + 8 + strlen(header), data, dlen);
    *size = n;
    return b;
}

static unsigned char *st_make(const char *header, const void *data, size_t dlen, size_t *size)
{
    return st_image(strlen(header), header, data, dlen, size);
}

#define assert_msg_has(text)                                                               \
    ck_assert_msg(strstr(ln_last_error(NULL), (text)) != NULL, "message '%s' lacks '%s'",      \
                  ln_last_error(NULL), (text))

/* ------------------------------------------------------------ round trip */

START_TEST(round_trip)
{
    ln_tensor_file *f = NULL;
    tu_assert_ok(NULL, ln_tensor_file_create(NULL, &f));
    float a[6] = {1, -2, 3.5f, 1e-30f, -0.0f, 1e30f};
    int32_t b[4] = {0, -1, 2147483647, -2147483647 - 1};
    int64_t c[4] = {INT64_MAX, INT64_MIN, 0, 42};
    float s = 0.125f;
    int64_t sa[2] = {2, 3}, sb[1] = {4}, sc[2] = {2, 2}, sz[2] = {0, 5};
    tu_assert_ok(NULL, ln_tensor_file_add(NULL, f, "w.a", LN_DT_F32, 2, sa, a));
    tu_assert_ok(NULL, ln_tensor_file_add(NULL, f, "lengths", LN_DT_I32, 1, sb, b));
    tu_assert_ok(NULL, ln_tensor_file_add(NULL, f, "big", LN_DT_I64, 2, sc, c));
    tu_assert_ok(NULL, ln_tensor_file_add(NULL, f, "scalar", LN_DT_F32, 0, NULL, &s));
    tu_assert_ok(NULL, ln_tensor_file_add(NULL, f, "empty", LN_DT_F32, 2, sz, NULL));
    tu_assert_status(NULL, ln_tensor_file_add(NULL, f, "w.a", LN_DT_F32, 2, sa, a),
                     LN_ERROR_INVALID_ARGUMENT);
    assert_msg_has("duplicate");
    ck_assert_uint_eq(f->count, 5);
    for (size_t i = 1; i < f->count; i++) /* kept sorted by name */
        ck_assert_int_lt(strcmp(f->tensors[i - 1].name, f->tensors[i].name), 0);

    const char *path = scratch_path("rt.safetensors");
    tu_assert_ok(NULL, ln_safetensors_write(NULL, path, f->tensors, f->count, "ln_config",
                                            "{\"d_model\": 8}"));
    ck_assert_int_eq(scratch_entries(), 1); /* no temporary left behind */

    size_t n;
    unsigned char *raw = (unsigned char *)slurp(path, &n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | raw[i];
    ck_assert_uint_eq(hlen % 8, 0); /* padded as safetensors pads */

    ln_tensor_file *g = NULL, *h = NULL;
    tu_assert_ok(NULL, ln_safetensors_read(NULL, path, &g));
    tu_assert_ok(NULL, ln_safetensors_parse(NULL, raw, n, "raw", &h));
    const ln_tensor_file *files[2] = {g, h};
    for (int k = 0; k < 2; k++) {
        const ln_tensor_file *r = files[k];
        ck_assert_uint_eq(r->count, 5);
        ck_assert_str_eq(ln_tensor_file_metadata(r, "ln_config"), "{\"d_model\": 8}");
        ck_assert_ptr_null(ln_tensor_file_metadata(r, "other"));
        ck_assert_ptr_null(ln_tensor_file_find(r, "nope"));
        for (size_t i = 0; i < f->count; i++) {
            const ln_tensor *want = &f->tensors[i], *got = ln_tensor_file_find(r, want->name);
            ck_assert_ptr_nonnull(got);
            ck_assert_int_eq(got->dtype, want->dtype);
            ck_assert_int_eq(got->ndim, want->ndim);
            for (int d = 0; d < LN_TENSOR_MAX_DIMS; d++)
                ck_assert_int_eq(got->shape[d], want->shape[d]);
            ck_assert_uint_eq(got->count, want->count);
            ck_assert_ptr_nonnull(got->data);
            ck_assert_int_eq(memcmp(got->data, want->data, want->count * ln_dtype_size(want->dtype)),
                             0);
        }
    }
    ck_assert_uint_eq(ln_tensor_file_find(g, "scalar")->count, 1);
    ck_assert_uint_eq(ln_tensor_file_find(g, "empty")->count, 0);

    /* No metadata at all. */
    tu_assert_ok(NULL, ln_safetensors_write(NULL, path, f->tensors, 2, NULL, NULL));
    ln_tensor_file *m = NULL;
    tu_assert_ok(NULL, ln_safetensors_read(NULL, path, &m));
    ck_assert_uint_eq(m->metadata_count, 0);
    ck_assert_uint_eq(m->count, 2);
    ln_tensor_file_free(m);
    ln_tensor_file_free(g);
    ln_tensor_file_free(h);
    ln_tensor_file_free(f);
    free(raw);
}
END_TEST

START_TEST(empty_file_set)
{
    /* "{}" is a valid file with no tensors; padded to "{}      ". */
    const char *path = scratch_path("empty.safetensors");
    tu_assert_ok(NULL, ln_safetensors_write(NULL, path, NULL, 0, NULL, NULL));
    ln_tensor_file *g = NULL;
    tu_assert_ok(NULL, ln_safetensors_read(NULL, path, &g));
    ck_assert_uint_eq(g->count, 0);
    ln_tensor_file_free(g);
}
END_TEST

/* --------------------------------------------------- F16/BF16 conversion */

static float bits_to_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

START_TEST(half_and_bfloat_widen_exactly)
{
    static const uint16_t h[] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x8200, 0x7C00, 0xFC00,
                                 0x7E00, 0x3555, 0x0000, 0x8000};
    const float hf[] = {1.0f, -2.0f, 65504.0f, 0x1p-24f, -0x1p-15f, INFINITY, -INFINITY,
                        NAN, 0.333251953125f, 0.0f, -0.0f};
    static const uint16_t bf[] = {0x3F80, 0xC040, 0x4049, 0x0001, 0x7F80};
    const size_t nh = sizeof(h) / 2, nb = sizeof(bf) / 2;
    unsigned char data[64];
    for (size_t i = 0; i < nh; i++)
        data[2 * i] = (unsigned char)h[i], data[2 * i + 1] = (unsigned char)(h[i] >> 8);
    for (size_t i = 0; i < nb; i++)
        data[2 * nh + 2 * i] = (unsigned char)bf[i],
                          data[2 * nh + 2 * i + 1] = (unsigned char)(bf[i] >> 8);
    char header[256];
    snprintf(header, sizeof(header),
             "{\"h\":{\"dtype\":\"F16\",\"shape\":[%zu],\"data_offsets\":[0,%zu]},"
             "\"b\":{\"dtype\":\"BF16\",\"shape\":[%zu],\"data_offsets\":[%zu,%zu]}}",
             nh, 2 * nh, nb, 2 * nh, 2 * nh + 2 * nb);
    size_t size;
    unsigned char *img = st_make(header, data, 2 * nh + 2 * nb, &size);
    ln_tensor_file *f = NULL;
    tu_assert_ok(NULL, ln_safetensors_parse(NULL, img, size, "halves", &f));
    const ln_tensor *th = ln_tensor_file_find(f, "h"), *tb = ln_tensor_file_find(f, "b");
    ck_assert_int_eq(th->dtype, LN_DT_F32);
    ck_assert_int_eq(tb->dtype, LN_DT_F32);
    const float *x = th->data;
    for (size_t i = 0; i < nh; i++) {
        if (isnan(hf[i]))
            ck_assert(isnan(x[i]));
        else
            ck_assert_msg(memcmp(&x[i], &hf[i], 4) == 0, "half %04x -> %a, want %a", h[i],
                          (double)x[i], (double)hf[i]);
    }
    const float *y = tb->data;
    ck_assert_float_eq(y[0], 1.0f);
    ck_assert_float_eq(y[1], -3.0f);
    ck_assert_float_eq(y[2], 3.140625f);
    ck_assert_float_eq(y[3], bits_to_float(0x00010000u));
    ck_assert(isinf(y[4]));
    ln_tensor_file_free(f);
    free(img);
}
END_TEST

START_TEST(fixture_from_torch)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/io_dtypes.safetensors", getenv("LN_TEST_DATA"));
    ln_tensor_file *f = NULL;
    tu_assert_ok(NULL, ln_safetensors_read(NULL, path, &f));
    ck_assert_uint_eq(f->count, 5);
    ck_assert_str_eq(ln_tensor_file_metadata(f, "note"), "io fixture");
    const ln_tensor *t = ln_tensor_file_find(f, "f16");
    ck_assert_int_eq(t->dtype, LN_DT_F32);
    ck_assert_uint_eq(t->count, 6);
    const float *v = t->data;
    ck_assert_float_eq(v[0], 1.0f);
    ck_assert_float_eq(v[1], -2.0f);
    ck_assert_float_eq(v[2], 0.5f);
    ck_assert_float_eq(v[3], 65504.0f);
    ck_assert_float_eq(v[4], 0x1p-24f);
    ck_assert(isinf(v[5]) && v[5] > 0);
    t = ln_tensor_file_find(f, "bf16");
    v = t->data;
    ck_assert_float_eq(v[0], 1.0f);
    ck_assert_float_eq(v[1], -3.0f);
    ck_assert_float_eq(v[2], 3.140625f);
    ck_assert(v[3] == 0.0f && signbit(v[3]));
    t = ln_tensor_file_find(f, "f32");
    ck_assert_int_eq(t->ndim, 2);
    ck_assert_int_eq(t->shape[0], 1);
    ck_assert_int_eq(t->shape[1], 2);
    ck_assert_float_eq(((const float *)t->data)[1], -2.25f);
    t = ln_tensor_file_find(f, "i32");
    ck_assert_int_eq(t->dtype, LN_DT_I32);
    ck_assert_int_eq(((const int32_t *)t->data)[1], -2);
    ck_assert_int_eq(((const int32_t *)t->data)[3], 2147483647);
    t = ln_tensor_file_find(f, "i64");
    ck_assert_int_eq(t->dtype, LN_DT_I64);
    ck_assert_int_eq(((const int64_t *)t->data)[1], -4);
    ck_assert_int_eq(((const int64_t *)t->data)[2], (int64_t)1 << 40);
    ln_tensor_file_free(f);
}
END_TEST

/* ------------------------------------------------------------- bad input */

typedef struct bad_case {
    const char *header;
    size_t data_len;
    const char *needle; /* the message must contain it */
} bad_case;

static const bad_case bad_cases[] = {
    {"{\"a\":", 0, "not valid JSON"},
    {"", 0, "not valid JSON"},
    {"[1, 2]", 0, "not a JSON object"},
    {"{\"a\": 3}", 0, "'a': entry is not a JSON object"},
    {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'a': \"dtype\""},
    {"{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'a': \"dtype\""},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":3,\"data_offsets\":[0,4]}}", 4, "'a': \"shape\""},
    {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "'a': \"shape\""},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "non-negative"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, "non-negative"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, "non-negative"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
     "9 dimensions"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "'a': \"data_offsets\""},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, "\"data_offsets\""},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":\"0,4\"}}", 4, "\"data_offsets\""},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0.0,4]}}", 4, "\"data_offsets\""},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[100],\"data_offsets\":[0,400]}}", 16, "not within"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 16, "not within"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 16, "not within"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[9223372036854775800,"
     "9223372036854775804]}}", 16, "not within"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 16, "overlap"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 16, "overlap"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 16,
     "'a': shape [3] of F32 needs 12 bytes"},
    {"{\"a\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,8]}}", 16, "needs 16 bytes"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
     "\"data_offsets\":[0,16]}}", 16, "too large"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[9223372036854775807,2],\"data_offsets\":[0,16]}}", 16,
     "too large"},
    {"{\"a\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16, "'a': dtype \"F64\""},
    {"{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 16, "dtype \"U8\""},
    {"{\"a\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 16, "dtype \"f32\""},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 16, "duplicate"},
    {"{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "not valid JSON"},
    {"{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "empty name"},
    {"{\"__metadata__\": 3}", 0, "\"__metadata__\" is not a JSON object"},
    {"{\"__metadata__\": {\"k\": 1}}", 0, "metadata 'k' is not a string"},
    {"{\"__metadata__\": {\"k\": \"a\\u0000b\"}}", 0, "not valid JSON"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,99999999999999999999999]}}", 4,
     "not valid JSON"},
    {"{} trailing", 0, "not valid JSON"},
};

START_TEST(bad_headers_fail_cleanly)
{
    const bad_case *c = &bad_cases[_i];
    unsigned char data[32] = {0};
    size_t size;
    unsigned char *img = st_make(c->header, data, c->data_len, &size);
    ln_tensor_file *f = (ln_tensor_file *)&size; /* must be reset to NULL */
    char label[32];
    snprintf(label, sizeof(label), "case%d", _i);
    tu_assert_status(NULL, ln_safetensors_parse(NULL, img, size, label, &f), LN_ERROR_BAD_FILE);
    ck_assert_ptr_null(f);
    assert_msg_has(label);
    assert_msg_has(c->needle);
    free(img);
}
END_TEST

START_TEST(bad_lengths_fail_cleanly)
{
    ln_tensor_file *f = NULL;
    const unsigned char five[5] = {1, 2, 3, 4, 5};
    tu_assert_status(NULL, ln_safetensors_parse(NULL, five, 5, "short", &f), LN_ERROR_BAD_FILE);
    assert_msg_has("too short");
    tu_assert_status(NULL, ln_safetensors_parse(NULL, NULL, 0, "nothing", &f), LN_ERROR_BAD_FILE);

    size_t size;
    unsigned char *img = st_image(100, "{}", NULL, 0, &size); /* header cut */
    tu_assert_status(NULL, ln_safetensors_parse(NULL, img, size, "cut", &f), LN_ERROR_BAD_FILE);
    assert_msg_has("runs past the end");
    free(img);
    img = st_image((uint64_t)1 << 40, "{}", NULL, 0, &size);
    tu_assert_status(NULL, ln_safetensors_parse(NULL, img, size, "absurd", &f), LN_ERROR_BAD_FILE);
    assert_msg_has("exceeds");
    free(img);
    img = st_image(UINT64_MAX, "{}", NULL, 0, &size);
    tu_assert_status(NULL, ln_safetensors_parse(NULL, img, size, "max", &f), LN_ERROR_BAD_FILE);
    free(img);
    /* A raw NUL byte inside the header. */
    img = st_image(4, "{} ", NULL, 0, &size);
    img[10] = '\0'; /* "{}\0" then nothing: 11 bytes, header length 4 */
    tu_assert_status(NULL, ln_safetensors_parse(NULL, img, size, "nul", &f), LN_ERROR_BAD_FILE);
    free(img);
    img = st_image(4, "{}  ", NULL, 0, &size);
    img[10] = '\0'; /* "{}\0 " */
    tu_assert_status(NULL, ln_safetensors_parse(NULL, img, size, "nul", &f), LN_ERROR_BAD_FILE);
    assert_msg_has("not valid JSON");
    free(img);
    ck_assert_ptr_null(f);
}
END_TEST

START_TEST(edge_cases_that_are_valid)
{
    /* Gaps between tensors, unknown entry keys, empty tensors sharing an
     * offset, and a zero dimension beside huge ones are all fine. */
    const char *header =
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12],\"extra\":1},"
        "\"e1\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[12,12]},"
        "\"e2\":{\"dtype\":\"I64\",\"shape\":[0,9223372036854775807,9223372036854775807],"
        "\"data_offsets\":[12,12]},"
        "\"s\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[0,4]}}   ";
    unsigned char data[16] = {7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x3f, 0, 0, 0, 0};
    size_t size;
    unsigned char *img = st_make(header, data, 16, &size);
    ln_tensor_file *f = NULL;
    tu_assert_ok(NULL, ln_safetensors_parse(NULL, img, size, "edge", &f));
    ck_assert_uint_eq(f->count, 4);
    ck_assert_float_eq(*(const float *)ln_tensor_file_find(f, "a")->data, 1.0f);
    ck_assert_int_eq(*(const int32_t *)ln_tensor_file_find(f, "s")->data, 7);
    ck_assert_uint_eq(ln_tensor_file_find(f, "e2")->count, 0);
    ck_assert_ptr_nonnull(ln_tensor_file_find(f, "e2")->data);
    ln_tensor_file_free(f);
    free(img);
}
END_TEST

START_TEST(every_truncation_and_mutation_is_safe)
{
    /* A valid image, then every prefix of it and random single-byte
     * corruptions: any result is fine except a crash (Check forks; ASan
     * builds catch overreads). */
    ln_tensor_file *f = NULL;
    tu_assert_ok(NULL, ln_tensor_file_create(NULL, &f));
    float a[6] = {1, 2, 3, 4, 5, 6};
    int64_t sa[2] = {2, 3}, sb[1] = {3};
    tu_assert_ok(NULL, ln_tensor_file_add(NULL, f, "a", LN_DT_F32, 2, sa, a));
    tu_assert_ok(NULL, ln_tensor_file_add(NULL, f, "b", LN_DT_I64, 1, sb, NULL));
    const char *path = scratch_path("m.safetensors");
    tu_assert_ok(NULL, ln_safetensors_write(NULL, path, f->tensors, f->count, "k", "v"));
    ln_tensor_file_free(f);
    size_t n;
    unsigned char *img = (unsigned char *)slurp(path, &n);
    for (size_t len = 0; len < n; len++) {
        unsigned char *copy = tu_malloc(len); /* exact size, so ASan sees overreads */
        memcpy(copy, img, len);
        ln_tensor_file *g = NULL;
        ck_assert_int_ne(ln_safetensors_parse(NULL, copy, len, "prefix", &g), LN_SUCCESS);
        ck_assert_ptr_null(g);
        free(copy);
    }
    uint64_t rng = tu_seed() + 11;
    for (int it = 0; it < 20000; it++) {
        unsigned char *copy = tu_malloc(n);
        memcpy(copy, img, n);
        int flips = 1 + (int)tu_uniform(&rng, 0, 3);
        for (int k = 0; k < flips; k++)
            copy[(size_t)tu_uniform(&rng, 0, (float)n) % n] = (unsigned char)tu_uniform(&rng, 0, 256);
        ln_tensor_file *g = NULL;
        if (ln_safetensors_parse(NULL, copy, n, "mutant", &g) == LN_SUCCESS)
            ck_assert_ptr_nonnull(g);
        else
            ck_assert_ptr_null(g);
        ln_tensor_file_free(g);
        free(copy);
    }
    free(img);
}
END_TEST

/* ----------------------------------------------------------- reading files */

START_TEST(read_errors_name_the_file)
{
    ln_tensor_file *f = NULL;
    tu_assert_status(NULL, ln_safetensors_read(NULL, scratch_path("missing.safetensors"), &f),
                     LN_ERROR_IO);
    assert_msg_has("missing.safetensors");
    tu_assert_status(NULL, ln_safetensors_read(NULL, scratch, &f), LN_ERROR_IO);
    assert_msg_has("not a regular file");
    const char *path = scratch_path("short.safetensors");
    write_bytes(path, "\x10\0\0", 3);
    tu_assert_status(NULL, ln_safetensors_read(NULL, path, &f), LN_ERROR_BAD_FILE);
    assert_msg_has("short.safetensors");
    size_t size;
    unsigned char *img =
        st_make("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "abcd", 4, &size);
    write_bytes(path, img, size);
    tu_assert_status(NULL, ln_safetensors_read(NULL, path, &f), LN_ERROR_BAD_FILE);
    assert_msg_has("short.safetensors: tensor 'w'");
    ck_assert_ptr_null(f);
    tu_assert_status(NULL, ln_safetensors_read(NULL, NULL, &f), LN_ERROR_INVALID_ARGUMENT);
    free(img);
}
END_TEST

/* ------------------------------------------------------------ atomic write */

START_TEST(write_is_atomic)
{
    float v[2] = {1, 2};
    ln_tensor good = {.name = "v", .dtype = LN_DT_F32, .ndim = 1, .shape = {2}, .count = 2, .data = v};

    /* The directory does not exist: a clean I/O error. */
    char nodir[300];
    snprintf(nodir, sizeof(nodir), "%s/no/such/dir/x.safetensors", scratch);
    tu_assert_status(NULL, ln_safetensors_write(NULL, nodir, &good, 1, NULL, NULL), LN_ERROR_IO);
    assert_msg_has("x.safetensors");

    /* Refused arguments leave an existing file as it was and no temporary. */
    const char *path = scratch_path("keep.safetensors");
    write_bytes(path, "old", 3);
    ln_tensor bad[3] = {good, good, good};
    bad[1].count = 3; /* does not match the shape */
    tu_assert_status(NULL, ln_safetensors_write(NULL, path, bad, 2, NULL, NULL),
                     LN_ERROR_INVALID_ARGUMENT);
    bad[1] = good; /* duplicate name */
    tu_assert_status(NULL, ln_safetensors_write(NULL, path, bad, 2, NULL, NULL),
                     LN_ERROR_INVALID_ARGUMENT);
    assert_msg_has("duplicate");
    bad[1].name = "__metadata__";
    tu_assert_status(NULL, ln_safetensors_write(NULL, path, bad, 2, NULL, NULL),
                     LN_ERROR_INVALID_ARGUMENT);
    bad[1].name = NULL;
    tu_assert_status(NULL, ln_safetensors_write(NULL, path, bad, 2, NULL, NULL),
                     LN_ERROR_INVALID_ARGUMENT);
    bad[1] = good, bad[1].name = "w", bad[1].data = NULL;
    tu_assert_status(NULL, ln_safetensors_write(NULL, path, bad, 2, NULL, NULL),
                     LN_ERROR_INVALID_ARGUMENT);
    bad[1] = good, bad[1].name = "w", bad[1].ndim = 9;
    tu_assert_status(NULL, ln_safetensors_write(NULL, path, bad, 2, NULL, NULL),
                     LN_ERROR_INVALID_ARGUMENT);
    bad[1] = good, bad[1].name = "w", bad[1].shape[0] = -2;
    tu_assert_status(NULL, ln_safetensors_write(NULL, path, bad, 2, NULL, NULL),
                     LN_ERROR_INVALID_ARGUMENT);
    bad[1] = good, bad[1].name = "\xff\xfe"; /* not UTF-8: JSON cannot hold it */
    tu_assert_status(NULL, ln_safetensors_write(NULL, path, bad, 2, NULL, NULL),
                     LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(NULL, ln_safetensors_write(NULL, path, &good, 1, "k", "\xc3"),
                     LN_ERROR_INVALID_ARGUMENT);
    size_t n;
    char *content = slurp(path, &n);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(memcmp(content, "old", 3), 0);
    free(content);
    ck_assert_int_eq(scratch_entries(), 1);

    /* A failure after the temporary exists (renaming over a non-empty
     * directory fails) removes it and leaves the directory alone. */
    const char *dir = scratch_path("adir");
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    char inner[300];
    snprintf(inner, sizeof(inner), "%s/f", dir);
    write_bytes(inner, "x", 1);
    tu_assert_status(NULL, ln_safetensors_write(NULL, dir, &good, 1, NULL, NULL), LN_ERROR_IO);
    assert_msg_has("adir");
    ck_assert_int_eq(scratch_entries(), 2); /* keep.safetensors and adir only */
    unlink(inner);

    /* Success replaces the old content. */
    tu_assert_ok(NULL, ln_safetensors_write(NULL, path, &good, 1, NULL, NULL));
    ln_tensor_file *f = NULL;
    tu_assert_ok(NULL, ln_safetensors_read(NULL, path, &f));
    ck_assert_float_eq(((const float *)ln_tensor_file_find(f, "v")->data)[1], 2.0f);
    ln_tensor_file_free(f);
    ck_assert_int_eq(scratch_entries(), 2);

    /* The new file honours the umask like any other (not mkstemp's 0600). */
    struct stat st;
    mode_t mask = umask(022);
    tu_assert_ok(NULL, ln_safetensors_write(NULL, path, &good, 1, NULL, NULL));
    umask(mask);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0644);
}
END_TEST

START_TEST(container_misuse)
{
    ln_tensor_file *f = NULL;
    tu_assert_ok(NULL, ln_tensor_file_create(NULL, &f));
    int64_t neg[1] = {-1}, ok[1] = {1};
    tu_assert_status(NULL, ln_tensor_file_add(NULL, f, "", LN_DT_F32, 1, ok, NULL),
                     LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(NULL, ln_tensor_file_add(NULL, f, "n", LN_DT_F32, 1, neg, NULL),
                     LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(NULL, ln_tensor_file_add(NULL, f, "n", (ln_dtype)7, 1, ok, NULL),
                     LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(NULL, ln_tensor_file_add(NULL, f, "n", LN_DT_F32, 9, ok, NULL),
                     LN_ERROR_INVALID_ARGUMENT);
    tu_assert_ok(NULL, ln_tensor_file_set_metadata(NULL, f, "k", "1"));
    tu_assert_ok(NULL, ln_tensor_file_set_metadata(NULL, f, "k", "2"));
    ck_assert_uint_eq(f->metadata_count, 1);
    ck_assert_str_eq(ln_tensor_file_metadata(f, "k"), "2");
    ck_assert_ptr_null(ln_tensor_file_find(NULL, "x"));
    ln_tensor_file_free(f);
    ln_tensor_file_free(NULL);
    ln_tensor t = {0};
    ln_tensor_clear(&t);
    ln_tensor_clear(NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("safetensors");
    tcase_add_checked_fixture(tc, scratch_setup, scratch_teardown);
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, empty_file_set);
    tcase_add_test(tc, half_and_bfloat_widen_exactly);
    tcase_add_test(tc, fixture_from_torch);
    tcase_add_loop_test(tc, bad_headers_fail_cleanly, 0,
                        (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
    tcase_add_test(tc, bad_lengths_fail_cleanly);
    tcase_add_test(tc, edge_cases_that_are_valid);
    tcase_add_test(tc, every_truncation_and_mutation_is_safe);
    tcase_add_test(tc, read_errors_name_the_file);
    tcase_add_test(tc, write_is_atomic);
    tcase_add_test(tc, container_misuse);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
