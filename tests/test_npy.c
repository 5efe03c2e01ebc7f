/*
 * test_npy.c: the .npy reader and writer (src/npy.c). Files written by
 * numpy itself are in tests/data (io_*.npy, see make_io_fixtures.py); bad
 * headers are crafted here. No device is needed: ctx is NULL throughout.
 */
#include "tensor_io.h"
#include "test_util.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char scratch[64];

static void scratch_setup(void)
{
    snprintf(scratch, sizeof(scratch), "/tmp/ln-test-npy-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(scratch));
}

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
            unlink(path);
        }
    closedir(d);
    rmdir(scratch);
}

static const char *data_path(const char *name)
{
    static char path[1024];
    snprintf(path, sizeof(path), "%s/%s", getenv("LN_TEST_DATA"), name);
    return path;
}

#define assert_msg_has(text)                                                               \
    ck_assert_msg(strstr(ln_last_error(NULL), (text)) != NULL, "message '%s' lacks '%s'",      \
                  ln_last_error(NULL), (text))

/* A version 1.0 image with the given dict (padded as numpy pads) and data. */
static unsigned char *npy_image(const char *dict, const void *data, size_t dlen, size_t *size)
{
    size_t dl = strlen(dict), total = (10 + dl + 1 + 63) / 64 * 64, hlen = total - 10;
    unsigned char *b = tu_malloc(total + dlen);
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (unsigned char)hlen;
    b[9] = (unsigned char)(hlen >> 8);
    memcpy(b + 10, dict, dl);
    memset(b + 10 + dl, ' ', hlen - dl - 1);
    b[total - 1] = '\n';
    if (dlen)
        memcpy(b + total, data, dlen);
    *size = total + dlen;
    return b;
}

START_TEST(round_trip)
{
    uint64_t rng = tu_seed() + 21;
    static const int64_t shapes[][3] = {{7, 0, 0}, {3, 5, 0}, {2, 3, 4}, {1, 1, 1}, {0, 4, 0}};
    static const int ndims[] = {1, 2, 3, 3, 2};
    char path[128];
    snprintf(path, sizeof(path), "%s/x.npy", scratch);
    for (size_t c = 0; c < sizeof(ndims) / sizeof(ndims[0]); c++) {
        size_t count = 1;
        for (int d = 0; d < ndims[c]; d++)
            count *= (size_t)shapes[c][d];
        float *x = tu_malloc(count * 4);
        tu_fill_normal(x, count, 3.0f, &rng);
        tu_assert_ok(NULL, ln_npy_write(NULL, path, x, ndims[c], shapes[c]));
        ln_tensor t;
        tu_assert_ok(NULL, ln_npy_read(NULL, path, &t));
        ck_assert_int_eq(t.dtype, LN_DT_F32);
        ck_assert_int_eq(t.ndim, ndims[c]);
        ck_assert_ptr_null(t.name);
        for (int d = 0; d < ndims[c]; d++)
            ck_assert_int_eq(t.shape[d], shapes[c][d]);
        ck_assert_uint_eq(t.count, count);
        ck_assert_ptr_nonnull(t.data);
        ck_assert_int_eq(memcmp(t.data, x, count * 4), 0);
        ln_tensor_clear(&t);

        /* The header is what numpy writes: 64-byte aligned, '\n' last. */
        void *raw;
        size_t n;
        tu_assert_ok(NULL, ln_file_read_all(NULL, path, SIZE_MAX, &raw, &n));
        const unsigned char *b = raw;
        size_t hl = (size_t)b[8] | (size_t)b[9] << 8;
        ck_assert_uint_eq((10 + hl) % 64, 0);
        ck_assert_int_eq(b[10 + hl - 1], '\n');
        ck_assert_uint_eq(n, 10 + hl + count * 4);
        free(raw);
        free(x);
    }
}
END_TEST

START_TEST(reads_what_numpy_writes)
{
    ln_tensor t;
    tu_assert_ok(NULL, ln_npy_read(NULL, data_path("io_f4_2x3.npy"), &t));
    ck_assert_int_eq(t.ndim, 2);
    ck_assert_int_eq(t.shape[0], 2);
    ck_assert_int_eq(t.shape[1], 3);
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(((const float *)t.data)[i], (float)i / 4 - 0.5f);
    ln_tensor_clear(&t);

    tu_assert_ok(NULL, ln_npy_read(NULL, data_path("io_f4_1d.npy"), &t));
    ck_assert_int_eq(t.ndim, 1);
    ck_assert_int_eq(t.shape[0], 5);
    ck_assert_float_eq(((const float *)t.data)[3], 1e-8f);
    ln_tensor_clear(&t);

    tu_assert_ok(NULL, ln_npy_read(NULL, data_path("io_f4_v2_2x1x3.npy"), &t));
    ck_assert_int_eq(t.ndim, 3);
    ck_assert_int_eq(t.shape[1], 1);
    ck_assert_float_eq(((const float *)t.data)[5], 7.5f);
    ln_tensor_clear(&t);

    tu_assert_ok(NULL, ln_npy_read(NULL, data_path("io_f8_3.npy"), &t));
    ck_assert_int_eq(t.dtype, LN_DT_F32);
    ck_assert_float_eq(((const float *)t.data)[0], 0.1f);
    ck_assert_float_eq(((const float *)t.data)[1], -2.5f);
    ck_assert(isinf(((const float *)t.data)[2])); /* 1e300 does not fit a float */
    ln_tensor_clear(&t);

    tu_assert_status(NULL, ln_npy_read(NULL, data_path("io_f4_fortran.npy"), &t),
                     LN_ERROR_BAD_FILE);
    assert_msg_has("Fortran order");
    assert_msg_has("io_f4_fortran.npy");
    tu_assert_status(NULL, ln_npy_read(NULL, data_path("io_f4_be.npy"), &t), LN_ERROR_BAD_FILE);
    assert_msg_has("big-endian");
    ck_assert_ptr_null(t.data);
}
END_TEST

START_TEST(header_variants_parse)
{
    /* Spellings numpy (or a hand-written header) may produce. */
    static const char *const dicts[] = {
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
        "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}",
        "{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(2,3,)}",
        "{ 'descr' : '<f4' ,\t'fortran_order' : False , 'shape' : ( 2 , 3 ) , }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 6, 1), }",
    };
    float x[6] = {1, 2, 3, 4, 5, 6};
    for (size_t i = 0; i < sizeof(dicts) / sizeof(dicts[0]); i++) {
        size_t size;
        unsigned char *img = npy_image(dicts[i], x, sizeof(x), &size);
        ln_tensor t;
        tu_assert_ok(NULL, ln_npy_parse(NULL, img, size, dicts[i], &t));
        ck_assert_uint_eq(t.count, 6);
        ck_assert_float_eq(((const float *)t.data)[5], 6.0f);
        ln_tensor_clear(&t);
        free(img);
    }
}
END_TEST

typedef struct bad_case {
    const char *dict;
    size_t data_len;
    const char *needle;
} bad_case;

static const bad_case bad_cases[] = {
    {"{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8, "big-endian"},
    {"{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", 8, "dtype '<i4'"},
    {"{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }", 4, "dtype '<f2'"},
    {"{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }", 2, "dtype '|u1'"},
    {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8, "structured"},
    {"{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", 8, "Fortran"},
    {"{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }", 8, "True or False"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 4, "0 dimensions"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 2), }", 8, "4 dimensions"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", 4, "tuple"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2), }", 8, "tuple"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", 8, "tuple"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2.0,), }", 8, "tuple"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (02,), }", 8, "tuple"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 8, "tuple"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }",
     8, "too large"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': [2], }", 8, "tuple"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 8, "truncated"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 8, "trailing bytes"},
    {"{'descr': '<f4', 'fortran_order': False}", 8, "missing"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}", 8, "unexpected key"},
    {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", 8, "twice"},
    {"{'descr': '<f4' 'fortran_order': False, 'shape': (2,)}", 8, "',' or '}'"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x", 8, "follows"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", 8, "',' or '}'"},
    {"{'descr': '<\\f4', 'fortran_order': False, 'shape': (2,)}", 8, "'descr'"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,),,}", 8, "quoted key"},
    {"('descr', '<f4')", 8, "'{'"},
    {"{descr: '<f4', 'fortran_order': False, 'shape': (2,)}", 8, "quoted key"},
    {"{'descr' '<f4', 'fortran_order': False, 'shape': (2,)}", 8, "':'"},
    {"", 8, "'{'"},
};

START_TEST(bad_headers_fail_cleanly)
{
    const bad_case *c = &bad_cases[_i];
    unsigned char data[16] = {0};
    size_t size;
    unsigned char *img = npy_image(c->dict, data, c->data_len, &size);
    char label[32];
    snprintf(label, sizeof(label), "case%d.npy", _i);
    ln_tensor t;
    tu_assert_status(NULL, ln_npy_parse(NULL, img, size, label, &t), LN_ERROR_BAD_FILE);
    assert_msg_has(label);
    assert_msg_has(c->needle);
    ck_assert_ptr_null(t.data);
    free(img);
}
END_TEST

START_TEST(bad_prefixes_fail_cleanly)
{
    float x[2] = {1, 2};
    size_t size;
    unsigned char *img =
        npy_image("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", x, 8, &size);
    ln_tensor t;
    unsigned char *copy = tu_malloc(size);

    memcpy(copy, img, size);
    copy[1] = 'X';
    tu_assert_status(NULL, ln_npy_parse(NULL, copy, size, "magic", &t), LN_ERROR_BAD_FILE);
    assert_msg_has("magic");
    memcpy(copy, img, size);
    copy[6] = 4;
    tu_assert_status(NULL, ln_npy_parse(NULL, copy, size, "version", &t), LN_ERROR_BAD_FILE);
    assert_msg_has("version 4.0");
    memcpy(copy, img, size);
    copy[9] = 0xff; /* header length past the end */
    tu_assert_status(NULL, ln_npy_parse(NULL, copy, size, "hlen", &t), LN_ERROR_BAD_FILE);
    assert_msg_has("runs past the end");
    memcpy(copy, img, size);
    copy[6] = 2; /* 2.0 reads 4 length bytes: these now include header text */
    tu_assert_status(NULL, ln_npy_parse(NULL, copy, size, "v2", &t), LN_ERROR_BAD_FILE);
    memcpy(copy, img, size);
    copy[20] = '\0'; /* NUL inside the dict */
    tu_assert_status(NULL, ln_npy_parse(NULL, copy, size, "nul", &t), LN_ERROR_BAD_FILE);

    /* Every prefix fails; none crashes (exact-size copies for ASan). */
    for (size_t len = 0; len < size; len++) {
        unsigned char *p = tu_malloc(len);
        memcpy(p, img, len);
        ck_assert_int_eq(ln_npy_parse(NULL, p, len, "prefix", &t), LN_ERROR_BAD_FILE);
        free(p);
    }
    /* Random corruption of the prefix and dict: any status, no crash. */
    uint64_t rng = tu_seed() + 22;
    for (int it = 0; it < 20000; it++) {
        memcpy(copy, img, size);
        copy[(size_t)tu_uniform(&rng, 0, 74) % 74] = (unsigned char)tu_uniform(&rng, 0, 256);
        if (ln_npy_parse(NULL, copy, size, "mutant", &t) == LN_SUCCESS)
            ln_tensor_clear(&t);
    }
    free(copy);
    free(img);
}
END_TEST

START_TEST(file_errors)
{
    ln_tensor t;
    char path[128];
    snprintf(path, sizeof(path), "%s/none.npy", scratch);
    tu_assert_status(NULL, ln_npy_read(NULL, path, &t), LN_ERROR_IO);
    assert_msg_has("none.npy");
    tu_assert_status(NULL, ln_npy_read(NULL, scratch, &t), LN_ERROR_IO);

    float x[4] = {1, 2, 3, 4};
    int64_t shape[4] = {2, 2, 1, 1}, neg[1] = {-1};
    tu_assert_status(NULL, ln_npy_write(NULL, path, x, 0, shape), LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(NULL, ln_npy_write(NULL, path, x, 4, shape), LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(NULL, ln_npy_write(NULL, path, x, 1, neg), LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(NULL, ln_npy_write(NULL, path, NULL, 2, shape), LN_ERROR_INVALID_ARGUMENT);
    ck_assert_int_ne(access(path, F_OK), 0); /* nothing was written */
    char nodir[160];
    snprintf(nodir, sizeof(nodir), "%s/no/dir/x.npy", scratch);
    tu_assert_status(NULL, ln_npy_write(NULL, nodir, x, 2, shape), LN_ERROR_IO);
    assert_msg_has("x.npy");

    /* A truncated file on disk names itself. */
    tu_assert_ok(NULL, ln_npy_write(NULL, path, x, 2, shape));
    ck_assert_int_eq(truncate(path, 128 + 10), 0); /* 128-byte header, 16 data bytes */
    tu_assert_status(NULL, ln_npy_read(NULL, path, &t), LN_ERROR_BAD_FILE);
    assert_msg_has("none.npy");
    assert_msg_has("truncated");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("npy");
    TCase *tc = tcase_create("npy");
    tcase_add_checked_fixture(tc, scratch_setup, scratch_teardown);
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, reads_what_numpy_writes);
    tcase_add_test(tc, header_variants_parse);
    tcase_add_loop_test(tc, bad_headers_fail_cleanly, 0,
                        (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
    tcase_add_test(tc, bad_prefixes_fail_cleanly);
    tcase_add_test(tc, file_errors);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
