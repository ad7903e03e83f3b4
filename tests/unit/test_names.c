/* Unit tests for the path grammar (fs/names.c) and name escaping (common/strutil.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "names.h"
#include "strutil.h"

#include <errno.h>
#include <string.h>

static void test_escape_roundtrip(void **state)
{
    const char *cases[] = {"LSSTCam", "SDSSi~ND_OD0.5", "a/b", "100%", "..", ".", "", "x\ny", "é/ü"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char esc[256], back[256];
        assert_true(bfs_name_escape(cases[i], esc, sizeof esc) >= 0);
        assert_null(strchr(esc, '/'));
        assert_string_not_equal(esc, ".");
        assert_string_not_equal(esc, "..");
        assert_true(esc[0] != '\0');
        for (const char *p = esc; *p; p++)
            assert_true((unsigned char)*p >= 0x20 && *p != 0x7f);
        assert_true(bfs_name_unescape(esc, back, sizeof back) >= 0);
        assert_string_equal(back, cases[i]);
    }
}

static void test_escape_exact(void **state)
{
    char out[64];
    bfs_name_escape("a/b%c", out, sizeof out);
    assert_string_equal(out, "a%2Fb%25c");
    bfs_name_escape("..", out, sizeof out);
    assert_string_equal(out, "%2E%2E");
    assert_int_equal(bfs_name_escape("abcdef", out, 4), -ENAMETOOLONG);
    assert_int_equal(bfs_name_unescape("bad%zz", out, sizeof out), -EINVAL);
    assert_int_equal(bfs_name_unescape("a%00b", out, sizeof out), -EINVAL); /* no NUL smuggling */
    assert_int_equal(bfs_name_unescape("a%2", out, sizeof out), -EINVAL);
}

static void test_extension(void **state)
{
    char ext[32];
    bfs_names_extension("raw/2019/x-det000.fits", ext, sizeof ext);
    assert_string_equal(ext, ".fits");
    bfs_names_extension("a/b.c/file.fits.fz", ext, sizeof ext);
    assert_string_equal(ext, ".fits.fz");
    bfs_names_extension("cat.tar.gz", ext, sizeof ext);
    assert_string_equal(ext, ".tar.gz");
    bfs_names_extension("s3://bucket/run/x.json", ext, sizeof ext);
    assert_string_equal(ext, ".json");
    bfs_names_extension("dir.with.dots/noext", ext, sizeof ext);
    assert_string_equal(ext, "");
    bfs_names_extension(".hidden", ext, sizeof ext);
    assert_string_equal(ext, "");
    /* a compression suffix after a long dotted part keeps only itself */
    bfs_names_extension("bfkGen.20250320a.gz", ext, sizeof ext);
    assert_string_equal(ext, ".gz");
}

static void test_dim_entry(void **state)
{
    char name[256], dim[64], value[256];
    assert_true(bfs_names_dim_entry("physical_filter", "SDSSi~ND_OD0.5", name, sizeof name) > 0);
    assert_string_equal(name, "physical_filter=SDSSi~ND_OD0.5");
    assert_true(bfs_names_dim_entry("band", "a/b", name, sizeof name) > 0);
    assert_string_equal(name, "band=a%2Fb");
    assert_int_equal(bfs_names_parse_dim(name, dim, sizeof dim, value, sizeof value), 0);
    assert_string_equal(dim, "band");
    assert_string_equal(value, "a/b");
    assert_int_equal(bfs_names_parse_dim("novalue", dim, sizeof dim, value, sizeof value), -EINVAL);
    assert_int_equal(bfs_names_parse_dim("=x", dim, sizeof dim, value, sizeof value), -EINVAL);
    /* a value may itself contain '=' */
    assert_int_equal(bfs_names_parse_dim("group=a=b", dim, sizeof dim, value, sizeof value), 0);
    assert_string_equal(value, "a=b");
    /* one name per value: an escape bfs_name_escape would not write is no
     * spelling of it (hex digits aside, which may be lower case) */
    assert_int_equal(bfs_names_parse_dim("detector=%30", dim, sizeof dim, value, sizeof value), -EINVAL);
    assert_int_equal(bfs_names_parse_dim("band=%61", dim, sizeof dim, value, sizeof value), -EINVAL);
    assert_int_equal(bfs_names_parse_dim("band=a%2fb", dim, sizeof dim, value, sizeof value), 0);
    assert_string_equal(value, "a/b");
    assert_int_equal(bfs_names_parse_dim("band=%2e", dim, sizeof dim, value, sizeof value), 0);
    assert_string_equal(value, ".");
}

static void test_int_canonical(void **state)
{
    (void)state;
    assert_true(bfs_names_int_canonical("0"));
    assert_true(bfs_names_int_canonical("94"));
    assert_true(bfs_names_int_canonical("-5"));
    assert_true(bfs_names_int_canonical("2025041500060"));
    assert_true(bfs_names_int_canonical("R22_S11")); /* no integer: maybe an alternate key */
    assert_true(bfs_names_int_canonical("MC_O_20250415_000060"));
    assert_false(bfs_names_int_canonical("00"));
    assert_false(bfs_names_int_canonical("+0"));
    assert_false(bfs_names_int_canonical("-0"));
    assert_false(bfs_names_int_canonical("094"));
    assert_false(bfs_names_int_canonical("+94"));
}

static bfs_dimension d_instrument = {.name = "instrument"}, d_detector = {.name = "detector"},
                     d_exposure = {.name = "exposure"};

static void test_file_name(void **state)
{
    bfs_dataset_type dt = {.name = "raw", .ndims = 3, .dims = {&d_instrument, &d_detector, &d_exposure}};
    bfs_dataset_file f = {.id = "0123456789abcdef0123456789abcdef",
                          .values = {"LSSTCam", "94", "2025041500060"},
                          .path = "LSSTCam/raw/all/raw/20250415/MC_O_20250415_000060/x.fits"};
    char name[256];
    assert_true(bfs_names_file(&dt, &f, name, sizeof name) > 0);
    assert_string_equal(name, "raw_LSSTCam_94_2025041500060.fits");

    f.component = "wcs";
    f.path = "a/b.json";
    bfs_names_file(&dt, &f, name, sizeof name);
    assert_string_equal(name, "raw.wcs_LSSTCam_94_2025041500060.json");

    /* calibration validity: 2025-05-15T11:59:23Z UTC is TAI + 37 s */
    bfs_dataset_type bias = {.name = "bias", .ndims = 2, .dims = {&d_instrument, &d_detector}};
    bfs_dataset_file c = {.values = {"LSSTCam", "90"}, .path = "x/bias.fits", .has_timespan = true,
                          .timespan_begin = (1747310363LL + 37) * 1000000000LL,
                          .timespan_end = 4102444800000000000LL};
    bfs_names_file(&bias, &c, name, sizeof name);
    assert_string_equal(name, "bias_LSSTCam_90_valid-20250515T115923Z-unbounded.fits");
    c.timespan_begin = 8000082000;
    bfs_names_file(&bias, &c, name, sizeof name);
    assert_string_equal(name, "bias_LSSTCam_90_valid-unbounded-unbounded.fits");

    /* a value with '/' cannot make a second path level */
    bfs_dataset_file s = {.values = {"LSST/../Cam", "1"}, .path = "p.fits"};
    bfs_names_file(&bias, &s, name, sizeof name);
    assert_null(strchr(name, '/'));
}

static void test_disambiguate(void **state)
{
    char name[256] = "raw_LSSTCam_94_1.fits";
    assert_int_equal(bfs_names_disambiguate(name, sizeof name, "deadbeef00112233", "x/y.fits"), 0);
    assert_string_equal(name, "raw_LSSTCam_94_1_deadbeef.fits");
    char noext[256] = "packages";
    assert_int_equal(bfs_names_disambiguate(noext, sizeof noext, "0011223344556677", "x/packages"), 0);
    assert_string_equal(noext, "packages_00112233");
}

static void test_tai(void **state)
{
    /* 2017-01-01T00:00:00Z: TAI-UTC became 37 s */
    assert_int_equal(bfs_tai_ns_to_unix((1483228800LL + 37) * 1000000000LL), 1483228800LL);
    assert_int_equal(bfs_unix_to_tai_ns(1483228800LL, 0), (1483228800LL + 37) * 1000000000LL);
    /* 2016-12-31T23:59:59Z was still at 36 s */
    assert_int_equal(bfs_tai_ns_to_unix((1483228799LL + 36) * 1000000000LL), 1483228799LL);
    char buf[32];
    bfs_tai_ns_format(bfs_unix_to_tai_ns(1744675200LL, 0), buf, sizeof buf);
    assert_string_equal(buf, "20250415T000000Z");
}

static void test_parse_i64(void **state)
{
    int64_t v;
    assert_true(bfs_parse_i64("2025041500060", &v));
    assert_true(v == 2025041500060LL);
    assert_false(bfs_parse_i64("R22_S11", &v));
    assert_false(bfs_parse_i64("12x", &v));
    assert_false(bfs_parse_i64("", &v));
    assert_false(bfs_parse_i64("99999999999999999999", &v));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_roundtrip), cmocka_unit_test(test_escape_exact),
        cmocka_unit_test(test_extension),        cmocka_unit_test(test_dim_entry),
        cmocka_unit_test(test_file_name),        cmocka_unit_test(test_disambiguate),
        cmocka_unit_test(test_tai),              cmocka_unit_test(test_parse_i64),
        cmocka_unit_test(test_int_canonical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
