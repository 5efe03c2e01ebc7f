/*
 * test_status.c: status names and last-error messages (src/status.c).
 */
#include "test_util.h"

#include <string.h>

START_TEST(names_every_status)
{
    ck_assert_str_eq(ln_status_string(LN_SUCCESS), "LN_SUCCESS");
    ck_assert_str_eq(ln_status_string(LN_ERROR_SHAPE_MISMATCH), "LN_ERROR_SHAPE_MISMATCH");
    for (int s = LN_ERROR_UNSUPPORTED; s <= LN_ERROR_INVALID_ARGUMENT; s++)
        ck_assert_msg(strncmp(ln_status_string((ln_status)s), "LN_ERROR_", 9) == 0, "status %d", s);
    /* OpenCL's numbers pass through with OpenCL's names. */
    ck_assert_int_eq((int)CL_OUT_OF_RESOURCES, -5);
    ck_assert_str_eq(ln_status_string((ln_status)CL_OUT_OF_RESOURCES), "CL_OUT_OF_RESOURCES");
    ck_assert_str_eq(ln_status_string((ln_status)CL_BUILD_PROGRAM_FAILURE), "CL_BUILD_PROGRAM_FAILURE");
    ck_assert_str_eq(ln_status_string((ln_status)12345), "LN_UNKNOWN_STATUS");
}
END_TEST

START_TEST(errors_are_per_context_and_per_thread)
{
    ln_context *a = tu_context(), *b = tu_context();
    float x[4];
    tu_assert_status(a, ln_unit_rows_host(a, 0, 4, x, x), LN_ERROR_INVALID_ARGUMENT);
    ck_assert_str_eq(ln_last_error(b), "");
    ck_assert_ptr_nonnull(strstr(ln_last_error(a), "rows"));
    /* A success clears the context's message. */
    uint64_t rng = tu_seed();
    tu_fill(x, 4, 1, 2, &rng);
    tu_assert_ok(a, ln_unit_rows_host(a, 1, 4, x, x));
    ck_assert_str_eq(ln_last_error(a), "");
    ln_context_destroy(a);
    ln_context_destroy(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("status");
    TCase *tc = tcase_create("status");
    tcase_add_test(tc, names_every_status);
    tcase_add_test(tc, errors_are_per_context_and_per_thread);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
