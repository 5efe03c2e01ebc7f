/*
 * test_program.c: embedded kernel sources, per-options program builds and
 * the build-failure path with its log (src/program.c).
 */
#include "test_util.h"
#include "internal.h"

#include <string.h>

START_TEST(embeds_every_family)
{
    static const char *families[] = {"linear", "norm", "positional"};
    for (size_t i = 0; i < 3; i++) {
        size_t len = 0;
        const char *src = ln_kernel_source(families[i], &len);
        ck_assert_ptr_nonnull(src);
        ck_assert_uint_eq(strlen(src), len);
        ck_assert_ptr_nonnull(strstr(src, "__kernel"));
    }
    ck_assert_ptr_null(ln_kernel_source("no-such-family", NULL));
}
END_TEST

START_TEST(builds_once_per_options)
{
    ln_context *ctx = tu_context();
    cl_program a, b, c;
    tu_assert_ok(ctx, ln_program_get(ctx, "norm", "", &a));
    tu_assert_ok(ctx, ln_program_get(ctx, "norm", "", &b));
    ck_assert_ptr_eq(a, b);
    tu_assert_ok(ctx, ln_program_get(ctx, "norm", "-DLN_UNUSED_DEFINE=1", &c));
    ck_assert_ptr_ne(a, c);
    cl_kernel k1, k2;
    tu_assert_ok(ctx, ln_kernel_get(ctx, "norm", "", "layernorm", &k1));
    tu_assert_ok(ctx, ln_kernel_get(ctx, "norm", "", "layernorm", &k2));
    ck_assert_ptr_eq(k1, k2);
    tu_assert_status(ctx, ln_kernel_get(ctx, "norm", "", "no_such_kernel", &k1),
                     (ln_status)CL_INVALID_KERNEL_NAME);
    tu_assert_status(ctx, ln_program_get(ctx, "nope", "", &a), LN_ERROR_INVALID_ARGUMENT);
    ln_context_destroy(ctx);
}
END_TEST

START_TEST(build_failure_carries_the_log)
{
    ln_context *ctx = tu_context();
    cl_program p;
    /* A define that turns valid source into a compile error. */
    tu_assert_status(ctx, ln_program_get(ctx, "norm", "-Dfloat=struct", &p), LN_ERROR_BUILD_FAILED);
    const char *msg = ln_last_error(ctx);
    ck_assert_ptr_nonnull(strstr(msg, "cl/norm.cl"));
    ck_assert_ptr_nonnull(strstr(msg, "error"));
    ck_assert_ptr_null(p);
    /* The context is still usable afterwards. */
    float x[8], y[8];
    uint64_t rng = tu_seed();
    tu_fill(x, 8, -1, 1, &rng);
    tu_assert_ok(ctx, ln_unit_rows_host(ctx, 2, 4, x, y));
    ln_context_destroy(ctx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("program");
    TCase *tc = tcase_create("program");
    tcase_add_test(tc, embeds_every_family);
    tcase_add_test(tc, builds_once_per_options);
    tcase_add_test(tc, build_failure_carries_the_log);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
