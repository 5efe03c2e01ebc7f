/*
 * test_fuzz_regressions.c: every input the fuzzers found trouble with
 * (tests/data/crashers/<target>/), and every seed of the fuzz corpora
 * (fuzz/corpus/<target>/), fed through the fuzz targets of fuzz/targets.c
 * (linked in by tests/fuzz_regressions.cmake): each must give a clean
 * outcome (success with a well-formed result, or a status with a message).
 * Memory errors on these inputs show up in the sanitizer build that
 * .ci/hardening runs. No device is needed.
 */
#include "test_util.h"
#include "targets.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every file of dir through target; returns how many there were
 * (0 when the directory does not exist). */
static int run_dir(const ln_fuzz_target *target, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    char **names = NULL;
    size_t count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        names = realloc(names, (count + 1) * sizeof(*names));
        ck_assert_ptr_nonnull(names);
        names[count] = strdup(e->d_name);
        ck_assert_ptr_nonnull(names[count]);
        count++;
    }
    closedir(d);
    qsort(names, count, sizeof(*names), by_name);
    for (size_t i = 0; i < count; i++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "rb");
        ck_assert_msg(f != NULL, "cannot open %s", path);
        ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
        long size = ftell(f);
        ck_assert_int_ge(size, 0);
        rewind(f);
        unsigned char *bytes = tu_malloc((size_t)size);
        ck_assert_uint_eq(fread(bytes, 1, (size_t)size, f), (size_t)size);
        fclose(f);
        const char *why = target->run(bytes, (size_t)size);
        ck_assert_msg(why == NULL, "%s on %s: %s", target->name, path, why ? why : "");
        free(bytes);
        free(names[i]);
    }
    free(names);
    return (int)count;
}

START_TEST(inputs_fail_cleanly)
{
    const ln_fuzz_target *target = &ln_fuzz_targets[_i];
    const char *src = getenv("LN_SOURCE_DIR"), *data = getenv("LN_TEST_DATA");
    ck_assert_msg(src && data, "LN_SOURCE_DIR and LN_TEST_DATA must be set (CTest sets them)");
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/fuzz/corpus/%s", src, target->name);
    int seeds = run_dir(target, dir);
    ck_assert_msg(seeds > 0, "no seed corpus in %s", dir);
    snprintf(dir, sizeof(dir), "%s/crashers/%s", data, target->name);
    int crashers = run_dir(target, dir);
    fprintf(stderr, "%s: %d seeds and %d crashers clean\n", target->name, seeds, crashers);
}
END_TEST

int main(void)
{
    int targets = 0;
    while (ln_fuzz_targets[targets].name)
        targets++;
    Suite *s = suite_create("fuzz_regressions");
    TCase *tc = tcase_create("fuzz_regressions");
    tcase_add_loop_test(tc, inputs_fail_cleanly, 0, targets);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
