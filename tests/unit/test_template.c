/*
 * test_template.c - daf_butler file templates (writers/template.c).
 *
 * The cases are daf_butler's own (tests/test_templates.py: the same template,
 * dataId and expected path), so the C formatter is held to the Python one;
 * then the default template for a raw, and butler.yaml's templates section.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "template.h"

static const bfs_template_value calexp[] = {
    {"instrument", "dummy"}, {"visit", "52"}, {"physical_filter", "Most Amazing U Filter Ever"},
    {"band", "b"}, {"day_obs", "20200101"}, {"group", "2025-08-07>08:25:27.100"},
};
#define NCALEXP (sizeof calexp / sizeof *calexp)

static void expect(const char *tmpl, const char *run, const bfs_template_value *v, size_t n,
                   const char *want)
{
    char *out = NULL, *msg = NULL;
    int rc = bfs_template_format(tmpl, "calexp", run, v, n, &out, &msg);
    if (rc)
        print_message("%s: %s\n", tmpl, msg ? msg : "?");
    assert_int_equal(rc, 0);
    if (strcmp(out, want))
        print_message("%s\n  got  %s\n  want %s\n", tmpl, out, want);
    assert_string_equal(out, want);
    free(out);
    free(msg);
}

static void test_daf_butler_cases(void **state)
{
    (void)state;
    expect("{run}/{datasetType}/{visit:05d}/{physical_filter}", "run2", calexp, NCALEXP,
           "run2/calexp/00052/Most_Amazing_U_Filter_Ever");
    expect("{run}/{datasetType}/{visit:05d}/{physical_filter}-trail-{run}", "run2", calexp, NCALEXP,
           "run2/calexp/00052/Most_Amazing_U_Filter_Ever-trail-run2");
    expect("{run}/{datasetType}/{visit:05d}/{physical_filter}-trail-{run}", "run/2", calexp, NCALEXP,
           "run_2/calexp/00052/Most_Amazing_U_Filter_Ever-trail-run_2");
    expect("{run:/}/{datasetType}/{visit:05d}/{physical_filter}-trail-{run}", "run/2", calexp, NCALEXP,
           "run/2/calexp/00052/Most_Amazing_U_Filter_Ever-trail-run_2");
    static const bfs_template_value g10[] = {
        {"instrument", "dummy"}, {"visit", "52"}, {"physical_filter", "g.10"}, {"band", "b"},
        {"day_obs", "20250101"}};
    expect("{run:/}/{datasetType}/{visit:05d}/{physical_filter}-trail-{run}", "run.2", g10, 5,
           "run.2/calexp/00052/g_10-trail-run_2");
    static const bfs_template_value day[] = {{"instrument", "dummy"}, {"day_obs", "20250203"}};
    expect("{run}/{datasetType}/{day_obs!s:.4s}", "run3", day, 2, "run3/calexp/2025");
    expect("{run}/{datasetType}/{group}", "run2", calexp, NCALEXP, "run2/calexp/2025-08-07_08_25_27_100");
    expect("{run}/{datasetType}/{visit:05d}/{physical_filter|day_obs}_{day_obs|physical_filter}", "run2",
           calexp, NCALEXP, "run2/calexp/00052/Most_Amazing_U_Filter_Ever_20200101");
    expect("{run}/{datasetType}/{exposure|visit:05d}/{physical_filter|day_obs}_{tract|exposure:?}", "run2",
           calexp, NCALEXP, "run2/calexp/00052/Most_Amazing_U_Filter_Ever");
    expect("{run}/{datasetType}/v{visit:05d}_f{physical_filter:?}_{skypix:?}", "run2", calexp, NCALEXP,
           "run2/calexp/v00052_fMost_Amazing_U_Filter_Ever");
    expect("{run}/{tract:?}/{visit:?}/f{physical_filter}", "run2", calexp, NCALEXP,
           "run2/52/fMost_Amazing_U_Filter_Ever");
    expect("{run}/{datasetType}/{patch:?}/{tract:?}/f{physical_filter}", "run2", calexp, NCALEXP,
           "run2/calexp/fMost_Amazing_U_Filter_Ever");
    expect("{run}/{datasetType}/p{patch:?}_t{tract:?}/f{physical_filter}", "run2", calexp, NCALEXP,
           "run2/calexp/p/fMost_Amazing_U_Filter_Ever");
    expect("{run}/{datasetType}/p{patch:?}_t{visit:04d?}/f{physical_filter}", "run2", calexp, NCALEXP,
           "run2/calexp/p_t0052/fMost_Amazing_U_Filter_Ever");
    /* a required field that is missing, an unclosed brace */
    char *out = NULL, *msg = NULL;
    assert_int_equal(bfs_template_format("{run}/{tract}", "calexp", "r", calexp, NCALEXP, &out, &msg), -EINVAL);
    assert_non_null(strstr(msg, "tract"));
    assert_int_equal(bfs_template_format("{run}/{visit", "calexp", "r", calexp, NCALEXP, &out, &msg), -EINVAL);
    free(msg);
}

static void test_raw_default(void **state)
{
    (void)state;
    /* the expanded dataId of a raw, as raw ingest has it */
    static const bfs_template_value raw[] = {
        {"instrument", "LSSTCam"}, {"detector", "94"}, {"exposure", "2025041500060"},
        {"physical_filter", "r_57"}, {"band", "r"}, {"day_obs", "20250415"},
        {"group", "2025-04-16T05:18:05.100"}, {"exposure.obs_id", "MC_O_20250415_000060"},
        {"exposure.day_obs", "20250415"}, {"detector.full_name", "R22_S11"},
    };
    char *out = NULL, *msg = NULL;
    assert_int_equal(bfs_template_format(bfs_template_default, "raw", "LSSTCam/raw/all", raw,
                                         sizeof raw / sizeof *raw, &out, &msg), 0);
    assert_string_equal(out, "LSSTCam/raw/all/raw/20250415/r/r_57/MC_O_20250415_000060/"
                             "raw_LSSTCam_r_r_57_MC_O_20250415_000060_R22_S11_LSSTCam_raw_all");
    free(out);
}

static void test_butler_yaml(void **state)
{
    (void)state;
    char dir[] = "/tmp/bfs-template-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], *t = NULL;
    /* no butler.yaml: the default */
    assert_int_equal(bfs_template_for(dir, "raw", "Exposure", &t, NULL), 0);
    assert_string_equal(t, bfs_template_default);
    free(t);
    snprintf(path, sizeof path, "%s/butler.yaml", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("datastore:\n  templates:\n    default: \"{run}/{datasetType}/{id}\"\n"
          "    raw: \"{run:/}/raw/{exposure}/{detector}\"\n    Exposure: \"{run}/exp/{exposure}\"\n", f);
    fclose(f);
    assert_int_equal(bfs_template_for(dir, "raw", "Exposure", &t, NULL), 0);
    assert_string_equal(t, "{run:/}/raw/{exposure}/{detector}"); /* the dataset type's first */
    free(t);
    assert_int_equal(bfs_template_for(dir, "calexp", "Exposure", &t, NULL), 0);
    assert_string_equal(t, "{run}/exp/{exposure}"); /* then the storage class's */
    free(t);
    assert_int_equal(bfs_template_for(dir, "calexp", "ExposureF", &t, NULL), 0);
    assert_string_equal(t, "{run}/{datasetType}/{id}");
    free(t);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_daf_butler_cases),
        cmocka_unit_test(test_raw_default),
        cmocka_unit_test(test_butler_yaml),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
