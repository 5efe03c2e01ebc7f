/*
 * test_context.c: device listing and selection, the context's lifecycle,
 * device-memory accounting and its cap, the attention kernel chosen by
 * LN_ATTENTION_KERNEL (src/context.c).
 */
#include "internal.h"
#include "test_util.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

START_TEST(lists_devices)
{
    int count = -1;
    tu_assert_ok(NULL, ln_device_list(NULL, 0, &count));
    ck_assert_int_ge(count, 1);
    ln_device_info *infos = tu_malloc(sizeof(*infos) * (size_t)count);
    int again = 0;
    tu_assert_ok(NULL, ln_device_list(infos, count, &again));
    ck_assert_int_eq(again, count);
    for (int i = 0; i < count; i++) {
        ck_assert(infos[i].device_name[0] != '\0');
        ck_assert(infos[i].max_work_group_size >= 1);
        ck_assert(infos[i].global_mem_bytes > 0);
    }
    tu_assert_status(NULL, ln_device_list(NULL, 0, NULL), LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(NULL, ln_device_list(NULL, 3, &count), LN_ERROR_INVALID_ARGUMENT);
    free(infos);
}
END_TEST

START_TEST(selects_by_index_and_name)
{
    ln_device_info first;
    int count = 0;
    tu_assert_ok(NULL, ln_device_list(&first, 1, &count));
    char spec[64];
    snprintf(spec, sizeof(spec), "%d:%d", first.platform_index, first.device_index);
    ln_context *ctx = NULL;
    tu_assert_ok(NULL, ln_context_create(spec, &ctx));
    ln_device_info got;
    tu_assert_ok(ctx, ln_context_device_info(ctx, &got));
    ck_assert_str_eq(got.device_name, first.device_name);
    ln_context_destroy(ctx);

    /* A case-insensitive substring of the device name, upper-cased. */
    char name[16] = {0};
    for (size_t i = 0; i < 4 && first.device_name[i]; i++)
        name[i] = (char)(first.device_name[i] >= 'a' && first.device_name[i] <= 'z'
                             ? first.device_name[i] - 32
                             : first.device_name[i]);
    tu_assert_ok(NULL, ln_context_create(name, &ctx));
    ck_assert_ptr_nonnull(ln_context_cl_context(ctx));
    ck_assert_ptr_nonnull(ln_context_cl_queue(ctx));
    tu_assert_ok(ctx, ln_context_finish(ctx));
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(rejects_missing_devices)
{
    ln_context *ctx = (ln_context *)0x1;
    tu_assert_status(NULL, ln_context_create("7:99", &ctx), LN_ERROR_DEVICE_NOT_FOUND);
    ck_assert_ptr_null(ctx);
    ck_assert_ptr_nonnull(strstr(ln_last_error(NULL), "7:99"));
    tu_assert_status(NULL, ln_context_create("no-such-device-xyz", &ctx), LN_ERROR_DEVICE_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(ln_last_error(NULL), "no-such-device-xyz"));
    tu_assert_status(NULL, ln_context_create("", &ctx), LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(NULL, ln_context_create(NULL, NULL), LN_ERROR_INVALID_ARGUMENT);
}
END_TEST

START_TEST(honours_ln_device)
{
    /* Runs in its own forked process (Check's default), so setenv is local. */
    ln_context *ctx = NULL;
    setenv("LN_DEVICE", "", 1);
    tu_assert_status(NULL, ln_context_create(NULL, &ctx), LN_ERROR_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(ln_last_error(NULL), "LN_DEVICE"));
    setenv("LN_DEVICE", "99:0", 1);
    tu_assert_status(NULL, ln_context_create(NULL, &ctx), LN_ERROR_DEVICE_NOT_FOUND);
    setenv("LN_DEVICE", "0:0", 1);
    tu_assert_ok(NULL, ln_context_create(NULL, &ctx));
    ln_context_destroy(ctx);
    unsetenv("LN_DEVICE");
    tu_assert_ok(NULL, ln_context_create(NULL, &ctx));
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(null_handles_are_safe)
{
    ln_context_destroy(NULL);
    ck_assert_ptr_null(ln_context_cl_context(NULL));
    ck_assert_ptr_null(ln_context_cl_queue(NULL));
    ck_assert_uint_eq(ln_context_device_bytes(NULL), 0);
    ln_device_info info;
    tu_assert_status(NULL, ln_context_device_info(NULL, &info), LN_ERROR_INVALID_ARGUMENT);
    tu_assert_status(NULL, ln_context_finish(NULL), LN_ERROR_INVALID_ARGUMENT);
}
END_TEST

START_TEST(device_memory_is_counted_and_capped)
{
    ln_context *ctx = tu_context();
    float x[4 * 64], y[4 * 64];
    uint64_t rng = tu_seed();
    tu_fill(x, 4 * 64, -1, 1, &rng);
    tu_assert_ok(ctx, ln_unit_rows_host(ctx, 4, 64, x, y));
    ck_assert_uint_eq(ln_context_device_bytes(ctx), 0); /* wrappers free what they make */
    ck_assert_uint_ge(ln_context_peak_device_bytes(ctx), 2 * 4 * 64 * sizeof(float));
    ln_context_destroy(ctx);

    /* A cap that the op's buffers exceed: a status, and the context stays usable. */
    setenv("LN_DEVICE_MEMORY_LIMIT_MB", "1", 1);
    ctx = tu_context();
    size_t rows = 1024, w = 384;
    float *big = tu_malloc(rows * w * 4), *out = tu_malloc(rows * w * 4);
    tu_fill(big, rows * w, -1, 1, &rng);
    tu_assert_status(ctx, ln_unit_rows_host(ctx, rows, w, big, out), LN_ERROR_DEVICE_MEMORY);
    ck_assert_ptr_nonnull(strstr(ln_last_error(ctx), "LN_DEVICE_MEMORY_LIMIT_MB"));
    ck_assert_uint_eq(ln_context_device_bytes(ctx), 0);
    tu_assert_ok(ctx, ln_unit_rows_host(ctx, 4, 64, x, y));
    ln_context_destroy(ctx);
    setenv("LN_DEVICE_MEMORY_LIMIT_MB", "lots", 1);
    ln_context *bad = NULL;
    tu_assert_status(NULL, ln_context_create(NULL, &bad), LN_ERROR_INVALID_ARGUMENT);
    unsetenv("LN_DEVICE_MEMORY_LIMIT_MB");
    free(big), free(out);
}
END_TEST

/* LN_ATTENTION_KERNEL picks the fused attention kernel; anything else is
 * refused by name. */
START_TEST(honours_ln_attention_kernel)
{
    static const struct { const char *value; int kernel; } ok[] = {
        {"auto", LN_ATTENTION_KERNEL_AUTO},
        {"fused", LN_ATTENTION_KERNEL_FUSED},
        {"rows", LN_ATTENTION_KERNEL_ROWS},
        {"tiles", LN_ATTENTION_KERNEL_TILES},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        setenv("LN_ATTENTION_KERNEL", ok[i].value, 1);
        ln_context *ctx = tu_context();
        ck_assert_int_eq(ctx->params.attn_kernel, ok[i].kernel);
        ln_context_destroy(ctx);
    }
    setenv("LN_ATTENTION_KERNEL", "tile", 1);
    ln_context *bad = NULL;
    tu_assert_status(NULL, ln_context_create(NULL, &bad), LN_ERROR_INVALID_ARGUMENT);
    ck_assert_ptr_null(bad);
    ck_assert_ptr_nonnull(strstr(ln_last_error(NULL), "LN_ATTENTION_KERNEL=\"tile\""));
    unsetenv("LN_ATTENTION_KERNEL");
}
END_TEST

/* On PoCL, context creation sets POCL_EXTRA_BUILD_FLAGS for CLBlast's
 * vector kernels (src/gemm_tuning.c) unless the user set it or
 * LN_POCL_VECTOR_MAD=0; elsewhere it touches nothing. Checked on the
 * environment as the context leaves it, then on a user's value, then with
 * the opt-out (separate tests: Check forks each one). */
static char *env_copy(const char *name)
{
    const char *v = getenv(name);
    return v ? strdup(v) : NULL;
}

static bool on_pocl(ln_context *ctx)
{
    ln_device_info info;
    tu_assert_ok(ctx, ln_context_device_info(ctx, &info));
    return strstr(info.platform_name, "Portable Computing Language") != NULL;
}

static bool opted_out(void)
{
    const char *opt = getenv("LN_POCL_VECTOR_MAD");
    return opt && strcmp(opt, "0") == 0;
}

START_TEST(pocl_build_flag_set_when_unset)
{
    char *before = env_copy("POCL_EXTRA_BUILD_FLAGS");
    ln_context *ctx = tu_context();
    const char *after = getenv("POCL_EXTRA_BUILD_FLAGS");
    if (before)
        ck_assert_str_eq(after, before); /* the user's (or an earlier test's) value */
    else if (on_pocl(ctx) && !opted_out())
        ck_assert_str_eq(after, "-DUSE_VECTOR_MAD=1");
    else
        ck_assert_ptr_null(after);
    ln_context_destroy(ctx);
    free(before);
}
END_TEST

START_TEST(pocl_build_flag_opt_out)
{
    unsetenv("POCL_EXTRA_BUILD_FLAGS");
    setenv("LN_POCL_VECTOR_MAD", "0", 1);
    ln_context *ctx = tu_context();
    ck_assert_ptr_null(getenv("POCL_EXTRA_BUILD_FLAGS"));
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(pocl_build_flag_user_value_kept)
{
    setenv("POCL_EXTRA_BUILD_FLAGS", "-DLN_TEST_USER_FLAG=1", 1);
    ln_context *ctx = tu_context();
    ck_assert_str_eq(getenv("POCL_EXTRA_BUILD_FLAGS"), "-DLN_TEST_USER_FLAG=1");
    ln_context_destroy(ctx);
    unsetenv("POCL_EXTRA_BUILD_FLAGS");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("context");
    TCase *tc = tcase_create("context");
    tcase_add_test(tc, lists_devices);
    tcase_add_test(tc, selects_by_index_and_name);
    tcase_add_test(tc, rejects_missing_devices);
    tcase_add_test(tc, honours_ln_device);
    tcase_add_test(tc, null_handles_are_safe);
    tcase_add_test(tc, device_memory_is_counted_and_capped);
    tcase_add_test(tc, honours_ln_attention_kernel);
    tcase_add_test(tc, pocl_build_flag_set_when_unset);
    tcase_add_test(tc, pocl_build_flag_user_value_kept);
    tcase_add_test(tc, pocl_build_flag_opt_out);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
