/*
 * test_hdrsvc.c - writers/hdrsvc.c: the Header Service merge and fetch.
 *
 * With ../shared (BFS_SHARED): the LATISS raw header blocks
 * AT_O_20190531_000001.header merged with curated_example.yml, the same
 * exposure's YAML, for sensor R01S01; the ComCam document against a
 * synthetic file (other sensors' blocks ignored).  Without it (always run):
 * a synthetic file and document covering every value type, a conflict,
 * structural keywords, a block without its HDU, a gzip-wrapped input,
 * refused documents; idempotence (a second merge gives the same bytes);
 * fitsverify on every result when it is installed; the fetch from a
 * directory (a document that appears after 300 ms, a timeout, a bad OBSID,
 * a document too large) and over HTTP from the test nginx.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "fits.h"
#include "hdrsvc.h"
#include "log.h"
#include "nginx_fixture.h"

/* ".Z" in the directory, as in test_fits.c: a gzip-wrapped input must not
 * be taken for an LZW one by its path */
static char dir[] = "/tmp/bfs_hdrsvc.Z_XXXXXX";

static int setup(void **state)
{
    (void)state;
    if (getenv("BFS_TEST_DEBUG"))
        bfs_log_set_level(LOG_DEBUG);
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    bfs_test_remove_tmpdir(dir);
    return 0;
}

/* ---- helpers ---------------------------------------------------------------- */

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len)
        *len = (size_t)n;
    return buf;
}

static void spit(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static bool same_bytes(const char *a, const char *b)
{
    size_t la, lb;
    char *x = slurp(a, &la), *y = slurp(b, &lb);
    bool same = x && y && la == lb && !memcmp(x, y, la);
    free(x);
    free(y);
    return same;
}

static const char *shared_dir(void)
{
    const char *s = getenv("BFS_SHARED");
    return s ? s : "../shared";
}

/* fitsverify -q -e on path, when installed: errors fail the test. */
static void fitsverify(const char *path)
{
    if (system("command -v fitsverify >/dev/null 2>&1") != 0) {
        print_message("fitsverify not installed: %s not verified\n", path);
        return;
    }
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "fitsverify -q -e '%s'", path);
    int rc = system(cmd);
    if (rc != 0) {
        snprintf(cmd, sizeof cmd, "fitsverify -e '%s' >&2", path);
        (void)system(cmd);
    }
    assert_int_equal(rc, 0);
}

/* The card key of HDU hdu of path (a copy; type '\0' when absent). */
static bfs_fits_card card(const char *path, int hdu, const char *key)
{
    bfs_fits_card *cards = NULL, out = {.type = '\0'};
    size_t n = 0;
    char *msg = NULL;
    int rc = bfs_fits_read_header(path, hdu, &cards, &n, &msg);
    if (rc)
        print_message("%s\n", msg ? msg : "?");
    assert_int_equal(rc, 0);
    const bfs_fits_card *c = bfs_fits_find(cards, n, key);
    if (c)
        out = *c;
    free(cards);
    return out;
}

/* All cards of HDU hdu, rendered "KEY=value/comment;" for comparisons. */
static char *cards_text(const char *path, int hdu, bool structural_only)
{
    static const char *const skeys[] = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2",
                                        "EXTEND", "XTENSION", "PCOUNT", "GCOUNT", "EXTNAME"};
    bfs_fits_card *cards = NULL;
    size_t n = 0;
    assert_int_equal(bfs_fits_read_header(path, hdu, &cards, &n, NULL), 0);
    char *out = calloc(n + 1, 240);
    assert_non_null(out);
    for (size_t i = 0; i < n; i++) {
        bool keep = !structural_only;
        for (size_t k = 0; k < sizeof skeys / sizeof *skeys && !keep; k++)
            keep = !strcmp(cards[i].key, skeys[k]);
        if (keep)
            sprintf(out + strlen(out), "%s=%s/%s;", cards[i].key, cards[i].value, cards[i].comment);
    }
    free(cards);
    return out;
}

/* Every HDU of b holds the same data unit as the same HDU of a (the merge
 * copies them through, headers grown or not), and b is no bigger than its
 * headers' growth: the copy had room where cards were added. */
static void data_units_equal(const char *a, const char *b)
{
    bfs_fits_extent *ea = NULL, *eb = NULL;
    int na = 0, nb = 0;
    char *msg = NULL;
    assert_int_equal(bfs_fits_extents(a, &ea, &na, &msg), 0);
    assert_int_equal(bfs_fits_extents(b, &eb, &nb, &msg), 0);
    assert_int_equal(na, nb);
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    assert_non_null(fa);
    assert_non_null(fb);
    for (int h = 0; h < na; h++) {
        long long len = ea[h].end - ea[h].data;
        assert_int_equal(len, eb[h].end - eb[h].data);
        assert_true(eb[h].head == (h ? eb[h - 1].end : 0)); /* one HDU after another */
        char *x = malloc((size_t)len + 1), *y = malloc((size_t)len + 1);
        assert_non_null(x);
        assert_non_null(y);
        assert_int_equal(fseeko(fa, ea[h].data, SEEK_SET), 0);
        assert_int_equal(fseeko(fb, eb[h].data, SEEK_SET), 0);
        assert_int_equal(fread(x, 1, (size_t)len, fa), (size_t)len);
        assert_int_equal(fread(y, 1, (size_t)len, fb), (size_t)len);
        assert_memory_equal(x, y, (size_t)len);
        free(x);
        free(y);
    }
    fclose(fa);
    fclose(fb);
    free(ea);
    free(eb);
}

static void checksums_ok(const char *path, int min_sums)
{
    bfs_fits_summary sum;
    char *msg = NULL;
    int rc = bfs_fits_validate(path, NULL, &sum, &msg);
    if (rc)
        print_message("%s\n", msg ? msg : "?");
    assert_int_equal(rc, 0);
    assert_true(sum.n_checksums >= min_sums);
    free(msg);
}

static int merge(const char *path, const char *yaml, const char *sensor, bfs_hs_report *r)
{
    char *msg = NULL;
    int rc = bfs_hs_merge(path, yaml, strlen(yaml), sensor, r, &msg);
    char line[2048];
    bfs_hs_report_format(r, line, sizeof line);
    print_message("merge %s: %d%s%s\n  %s\n", path, rc, msg ? ": " : "", msg ? msg : "", line);
    free(msg);
    return rc;
}

/* A primary header and image extensions Segment10 and Segment11 (8 x 4
 * pixels each), with sums. */
static void write_synthetic(const char *path)
{
    bfs_fits *f = NULL;
    assert_int_equal(bfs_fits_create(path, &f), 0);
    bfs_fits_add_image(f, 16, 0, NULL);
    bfs_fits_key_str(f, "OBSID", "CC_O_20200521_000008", "image name");
    bfs_fits_key_lng(f, "SEQNUM", 8, NULL);
    bfs_fits_key_dbl(f, "EXPTIME", 3.0, 3, "seconds");
    bfs_fits_key_dbl(f, "DARKTIME", 3.0, 1, "same value, other type wanted");
    bfs_fits_key_str(f, "FILTER", "r   ", "trailing blanks do not count");
    bfs_fits_comment(f, "already here");
    bfs_fits_checksum(f);
    int32_t pix[8 * 4];
    for (int k = 0; k < 2; k++) {
        long naxes[2] = {8, 4};
        bfs_fits_add_image(f, 32, 2, naxes);
        bfs_fits_key_str(f, "EXTNAME", k ? "Segment11" : "Segment10", NULL);
        for (int i = 0; i < 8 * 4; i++)
            pix[i] = i * 3 + k;
        bfs_fits_write_i32(f, pix, 8 * 4);
        bfs_fits_checksum(f);
    }
    assert_int_equal(bfs_fits_close(f), 0);
}

/* ---- YAML types ------------------------------------------------------------- */

static void test_yaml_types(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        bfs_yaml_type type;
        int64_t i;
        double f;
        int rc;
    } cases[] = {
        {"42", BFS_YAML_INT, 42, 0, 0},
        {"-0x1F", BFS_YAML_INT, -31, 0, 0},
        {"017", BFS_YAML_INT, 15, 0, 0},
        {"0b101", BFS_YAML_INT, 5, 0, 0},
        {"1_000", BFS_YAML_INT, 1000, 0, 0},
        {"1:30", BFS_YAML_INT, 90, 0, 0},
        {"9223372036854775807", BFS_YAML_INT, INT64_MAX, 0, 0},
        {"-9223372036854775808", BFS_YAML_INT, INT64_MIN, 0, 0},
        {"9223372036854775808", BFS_YAML_INT, 0, 0, -ERANGE},
        {"09", BFS_YAML_STR, 0, 0, 0},
        {"1.5", BFS_YAML_FLOAT, 0, 1.5, 0},
        {"1.0e-05", BFS_YAML_FLOAT, 0, 1e-5, 0},
        {"-.5", BFS_YAML_STR, 0, 0, 0}, /* PyYAML: a sign needs a leading digit */
        {".5", BFS_YAML_FLOAT, 0, 0.5, 0},
        {"1e5", BFS_YAML_STR, 0, 0, 0},
        {"1:30.5", BFS_YAML_FLOAT, 0, 90.5, 0},
        {"true", BFS_YAML_BOOL, 1, 0, 0},
        {"Off", BFS_YAML_BOOL, 0, 0, 0},
        {"yes", BFS_YAML_BOOL, 1, 0, 0},
        {"y", BFS_YAML_STR, 0, 0, 0},
        {"~", BFS_YAML_NULL, 0, 0, 0},
        {"null", BFS_YAML_NULL, 0, 0, 0},
        {"", BFS_YAML_NULL, 0, 0, 0},
        {"'null'", BFS_YAML_STR, 0, 0, 0},
        {"\"42\"", BFS_YAML_STR, 0, 0, 0},
        {"!!int \"42\"", BFS_YAML_INT, 42, 0, 0},
        {"!!float '2'", BFS_YAML_FLOAT, 0, 2.0, 0},
        {"!!null 'x'", BFS_YAML_NULL, 0, 0, 0},
        {"!!int 'x'", BFS_YAML_STR, 0, 0, -EINVAL},
        {"2019-05-31", BFS_YAML_STR, 0, 0, 0},
        {"[1, 2]", BFS_YAML_NOT_SCALAR, 0, 0, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char doc[128];
        snprintf(doc, sizeof doc, "v: %s\n", cases[k].text);
        bfs_yaml *y = NULL;
        assert_int_equal(bfs_yaml_load_mem(doc, strlen(doc), "t", &y, NULL), 0);
        bfs_yaml_value v;
        int rc = bfs_yaml_resolve(y, bfs_yaml_get(y, bfs_yaml_root(y), "v"), &v);
        if (rc != cases[k].rc || v.type != cases[k].type)
            print_message("case %s: rc %d type %d\n", cases[k].text, rc, (int)v.type);
        assert_int_equal(rc, cases[k].rc);
        assert_int_equal(v.type, cases[k].type);
        if (!rc && v.type == BFS_YAML_INT)
            assert_true(v.i == cases[k].i);
        if (!rc && v.type == BFS_YAML_BOOL)
            assert_int_equal(v.b, cases[k].i);
        if (v.type == BFS_YAML_FLOAT)
            assert_true(v.f == cases[k].f);
        bfs_yaml_free(y);
    }
}

/* ---- synthetic merge ---------------------------------------------------- */

static const char synthetic_doc[] =
    "PRIMARY:\n"
    "- {keyword: SIMPLE, value: true, comment: structural}\n"
    "- {keyword: BITPIX, value: 32, comment: structural}\n"
    "- {keyword: NAXIS1, value: 5}\n"
    "- {keyword: INTKEY, value: 42, comment: an int}\n"
    "- {keyword: BIGINT, value: 9007199254740993}\n"
    "- {keyword: FLTKEY, value: 0.1, comment: a float}\n"
    "- {keyword: SMALLFLT, value: 1.0e-05}\n"
    "- {keyword: BOOLT, value: true}\n"
    "- {keyword: BOOLN, value: no}\n"
    "- {keyword: STRKEY, value: hello world, comment: ''}\n"
    "- {keyword: QSTR, value: '42'}\n"
    "- {keyword: STRNULL, value: 'null'}\n"
    "- {keyword: NULLKEY, value: null, comment: undefined here}\n"
    "- {keyword: TILDE, value: ~}\n"
    "- {keyword: TAGINT, value: !!int \"8\"}\n"
    "- {keyword: LONGSTR, value: 'LONGVALUE-LONGVALUE-LONGVALUE-LONGVALUE-LONGVALUE-"
    "LONGVALUE-LONGVALUE-LONGVALUE-LONGVALUE-LONGVALUE-LONGVALUE-LONGVALUE-end', comment: long}\n"
    "- {keyword: EXPTIME, value: 3.5, comment: seconds}\n"
    "- {keyword: SEQNUM, value: 8}\n"
    "- {keyword: FILTER, value: r, comment: trailing blanks do not count}\n"
    "- {keyword: DARKTIME, value: 3, comment: same value, other type wanted}\n"
    "- {keyword: lowcase, value: 1}\n"
    "- {keyword: BADVAL, value: [1, 2]}\n"
    "- {keyword: NANKEY, value: .nan}\n"
    "- {keyword: COMMENT, value: '', comment: already here}\n"
    "- {keyword: COMMENT, value: '', comment: a new comment}\n"
    "- {keyword: null, value: '', comment: '---- section ----'}\n"
    "PRIMARY_R22S00:\n"
    "- {keyword: CCD_MANU, value: ITL, comment: from the sensor block}\n"
    "R22S00_Segment10:\n"
    "- {keyword: GAIN, value: 1.5, comment: segment gain}\n"
    "- {keyword: EXTNAME, value: Other}\n"
    "R22S00_Segment99:\n"
    "- {keyword: GAIN, value: 1.5}\n"
    "R22S01_Segment10:\n"
    "- {keyword: GAIN, value: 9.9}\n"
    "Segment11:\n"
    "- {keyword: RDNOISE, value: 4.25}\n";

/* <dir>/<stem>.fits to merge into and <dir>/<stem>.orig to compare with,
 * both the synthetic file (path and orig: 256 bytes each). */
static void synthetic_pair(const char *stem, char *path, char *orig)
{
    snprintf(path, 256, "%s/%s.fits", dir, stem);
    snprintf(orig, 256, "%s/%s.orig", dir, stem);
    write_synthetic(path);
    write_synthetic(orig);
}

static void test_synthetic(void **state)
{
    (void)state;
    char path[256], before[256];
    synthetic_pair("synth", path, before);
    char *s1 = cards_text(path, 1, true), *s2 = cards_text(path, 2, true);

    bfs_hs_report r;
    assert_int_equal(merge(path, synthetic_doc, "R22_S00", &r), 0);
    assert_true(r.rewritten);
    assert_false(r.decompressed);
    assert_int_equal(r.skipped_structural, 4); /* SIMPLE, BITPIX, NAXIS1, EXTNAME */
    assert_int_equal(r.invalid, 1);            /* BADVAL */
    assert_int_equal(r.undefined, 3);          /* NULLKEY, TILDE, NANKEY */
    assert_int_equal(r.conflicts, 1);          /* EXPTIME */
    assert_int_equal(r.replaced, 2);           /* EXPTIME, DARKTIME */
    assert_int_equal(r.unchanged, 3);          /* SEQNUM, FILTER, the old COMMENT */
    assert_int_equal(r.commentary, 2);
    assert_int_equal(r.blocks_without_hdu, 1);
    assert_string_equal(r.first_missing, "R22S00_Segment99");
    assert_int_equal(r.blocks_other, 1);
    assert_int_equal(r.blocks_merged, 4);
    assert_int_equal(r.hdus_changed, 3);
    assert_int_equal(r.n_listed, 1);
    assert_string_equal(r.conflict[0].keyword, "EXPTIME");
    assert_int_equal(r.conflict[0].hdu, 1);
    assert_string_equal(r.conflict[0].old_value, "3.000");
    assert_string_equal(r.conflict[0].new_value, "3.5");

    bfs_fits_card c = card(path, 1, "INTKEY");
    assert_int_equal(c.type, 'I');
    assert_string_equal(c.value, "42");
    assert_string_equal(c.comment, "an int");
    c = card(path, 1, "BIGINT");
    assert_int_equal(c.type, 'I');
    assert_string_equal(c.value, "9007199254740993");
    c = card(path, 1, "FLTKEY");
    assert_int_equal(c.type, 'F');
    assert_true(strtod(c.value, NULL) == 0.1);
    c = card(path, 1, "SMALLFLT");
    assert_int_equal(c.type, 'F');
    assert_true(strtod(c.value, NULL) == 1e-5);
    assert_string_equal(card(path, 1, "BOOLT").value, "T");
    assert_int_equal(card(path, 1, "BOOLN").type, 'L');
    assert_string_equal(card(path, 1, "BOOLN").value, "F");
    c = card(path, 1, "STRKEY");
    assert_int_equal(c.type, 'C');
    assert_string_equal(c.value, "hello world");
    c = card(path, 1, "QSTR");
    assert_int_equal(c.type, 'C');
    assert_string_equal(c.value, "42");
    c = card(path, 1, "STRNULL");
    assert_int_equal(c.type, 'C');
    assert_string_equal(c.value, "null");
    c = card(path, 1, "NULLKEY");
    assert_int_equal(c.type, 'U');
    assert_string_equal(c.comment, "undefined here");
    assert_int_equal(card(path, 1, "TILDE").type, 'U');
    assert_int_equal(card(path, 1, "NANKEY").type, 'U');
    assert_int_equal(card(path, 1, "TAGINT").type, 'I');
    assert_int_equal(card(path, 1, "LOWCASE").type, 'I');
    assert_int_equal(card(path, 1, "BADVAL").type, '\0');
    c = card(path, 1, "LONGSTR");
    assert_int_equal(c.type, 'C');
    assert_int_equal(c.value[strlen(c.value) - 1], '&'); /* continued */
    assert_int_equal(card(path, 1, "CONTINUE").type, 'U');
    c = card(path, 1, "EXPTIME");
    assert_string_equal(c.value, "3.5");
    c = card(path, 1, "DARKTIME");
    assert_int_equal(c.type, 'I');
    assert_string_equal(card(path, 1, "FILTER").value, "r");
    assert_string_equal(card(path, 1, "CCD_MANU").value, "ITL");
    c = card(path, 2, "GAIN");
    assert_int_equal(c.type, 'F');
    assert_string_equal(c.value, "1.5");
    assert_string_equal(card(path, 2, "EXTNAME").value, "Segment10");
    assert_string_equal(card(path, 3, "RDNOISE").value, "4.25");
    assert_int_equal(card(path, 3, "GAIN").type, '\0');

    /* structural cards and pixels as they were */
    char *t1 = cards_text(path, 1, true), *t2 = cards_text(path, 2, true);
    assert_string_equal(s1, t1);
    assert_string_equal(s2, t2);
    free(s1), free(s2), free(t1), free(t2);
    checksums_ok(path, 3);
    fitsverify(path);
    data_units_equal(before, path);

    /* the COMMENT cards: the old one once, the new one once, the blank card */
    char *all = cards_text(path, 1, false);
    char *first = strstr(all, "COMMENT=/already here;");
    assert_non_null(first);
    assert_null(strstr(first + 1, "COMMENT=/already here;"));
    assert_non_null(strstr(all, "COMMENT=/a new comment;"));
    assert_non_null(strstr(all, "=/---- section ----;"));
    free(all);

    /* idempotent: the second merge changes nothing, and writes nothing */
    char once[256];
    snprintf(once, sizeof once, "%s/synth.once", dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", path, once);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(merge(path, synthetic_doc, "R22S00", &r), 0);
    assert_false(r.rewritten);
    assert_int_equal(r.added + r.replaced + r.conflicts + r.commentary + r.hdus_changed, 0);
    assert_true(same_bytes(path, once));
    struct stat sb;
    char copy[300];
    snprintf(copy, sizeof copy, "%s.merge", path);
    assert_int_equal(stat(copy, &sb), -1); /* no working copy left behind */
}

/* Blocks for another sensor and no sensor given: only PRIMARY applies. */
static void test_other_sensor(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/other.fits", dir);
    write_synthetic(path);
    bfs_hs_report r;
    assert_int_equal(merge(path, synthetic_doc, "R00S11", &r), 0);
    assert_int_equal(r.blocks_other, 4); /* PRIMARY_R22S00, R22S00_* (2), R22S01_Segment10 */
    assert_int_equal(card(path, 1, "CCD_MANU").type, '\0');
    assert_int_equal(card(path, 2, "GAIN").type, '\0');
    assert_string_equal(card(path, 3, "RDNOISE").value, "4.25"); /* unprefixed Segment11 */
    assert_int_equal(merge(path, synthetic_doc, NULL, &r), 0);
    assert_int_equal(r.blocks_other, 4);
    assert_int_equal(r.hdus_changed, 0);
}

/* No sensor given and a document whose sensor blocks all name one sensor:
 * that sensor's blocks apply (the 2019 LATISS raws name no RAFTBAY or
 * CCDSLOT, their documents one sensor). */
static void test_document_sensor(void **state)
{
    (void)state;
    static const char doc[] = "PRIMARY:\n"
                              "- {keyword: HSKEY, value: 1}\n"
                              "PRIMARY_R01S01:\n"
                              "- {keyword: CCD_MANU, value: ITL}\n"
                              "R01S01_Segment10:\n"
                              "- {keyword: GAIN, value: 1.5}\n"
                              "R01S01_Segment11:\n"
                              "- {keyword: GAIN, value: 2.5}\n";
    char path[256];
    snprintf(path, sizeof path, "%s/docsensor.fits", dir);
    write_synthetic(path);
    bfs_hs_report r;
    assert_int_equal(merge(path, doc, NULL, &r), 0);
    assert_true(r.sensor_from_document);
    assert_string_equal(r.sensor, "R01S01");
    assert_int_equal(r.blocks_merged, 4);
    assert_int_equal(r.blocks_other, 0);
    assert_string_equal(card(path, 1, "HSKEY").value, "1");
    assert_string_equal(card(path, 1, "CCD_MANU").value, "ITL");
    assert_string_equal(card(path, 2, "GAIN").value, "1.5");
    assert_string_equal(card(path, 3, "GAIN").value, "2.5");
    char line[2048];
    bfs_hs_report_format(&r, line, sizeof line);
    assert_non_null(strstr(line, "(sensor R01S01 from the document)"));
    /* a sensor given is not overridden by the document's */
    write_synthetic(path);
    assert_int_equal(merge(path, doc, "R22S00", &r), 0);
    assert_false(r.sensor_from_document);
    assert_string_equal(r.sensor, "R22S00");
    assert_int_equal(r.blocks_other, 3);
    assert_int_equal(card(path, 1, "CCD_MANU").type, '\0');
}

/* A gzip-wrapped input becomes plain FITS at the same path. */
static void test_gzip(void **state)
{
    (void)state;
    char plain[256], path[256], cmd[700];
    snprintf(plain, sizeof plain, "%s/gz.plain", dir);
    snprintf(path, sizeof path, "%s/gz.fits", dir);
    write_synthetic(plain);
    snprintf(cmd, sizeof cmd, "gzip -c '%s' > '%s'", plain, path);
    assert_int_equal(system(cmd), 0);
    chmod(path, 0640);
    bfs_hs_report r;
    assert_int_equal(merge(path, synthetic_doc, "R22S00", &r), 0);
    assert_true(r.decompressed);
    assert_true(r.rewritten);
    char head[7] = "";
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(head, 1, 6, f), 6);
    fclose(f);
    assert_string_equal(head, "SIMPLE");
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0640); /* the file's mode is kept */
    assert_string_equal(card(path, 1, "INTKEY").value, "42");
    checksums_ok(path, 3);
    fitsverify(path);

    /* merging into the same plain file gives the same bytes */
    char again[256];
    snprintf(again, sizeof again, "%s/gz2.fits", dir);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", plain, again);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(merge(again, synthetic_doc, "R22S00", &r), 0);
    assert_false(r.decompressed);
    assert_true(same_bytes(path, again));
}

/* A document that adds many cards, long strings among them (CONTINUE
 * records), to the primary and a segment header: every card lands, the
 * checksums hold, the data units are the original's, and the headers grew
 * by no more than the cards need (the copy was made with room, not padded
 * beyond a block). */
static void test_many_cards(void **state)
{
    (void)state;
    char path[256], orig[256];
    synthetic_pair("many", path, orig);
    size_t cap = 64 << 10, o = 0;
    char *doc = malloc(cap);
    assert_non_null(doc);
    o += (size_t)snprintf(doc + o, cap - o, "PRIMARY:\n");
    for (int k = 0; k < 150; k++)
        o += (size_t)snprintf(doc + o, cap - o, "- keyword: MANY%03d\n  value: %d\n  comment: card %d\n", k, k, k);
    o += (size_t)snprintf(doc + o, cap - o,
                          "- keyword: LONGSTR\n  value: '%0150d'\n  comment: a string of 150 characters\n", 7);
    o += (size_t)snprintf(doc + o, cap - o, "R22S00_Segment10:\n");
    for (int k = 0; k < 40; k++)
        o += (size_t)snprintf(doc + o, cap - o, "- keyword: SEG%03d\n  value: %d.5\n  comment: seg\n", k, k);
    bfs_hs_report r;
    assert_int_equal(merge(path, doc, "R22S00", &r), 0);
    free(doc);
    assert_int_equal(r.added, 191);
    assert_string_equal(card(path, 1, "MANY149").value, "149");
    assert_int_equal(strlen(card(path, 1, "LONGSTR").value) > 60, true);
    assert_string_equal(card(path, 2, "SEG039").value, "39.5");
    checksums_ok(path, 3);
    fitsverify(path);
    data_units_equal(orig, path);
    /* 151 cards (the long string in 3 records) and 40: at most the blocks
     * those records need, plus one each for the estimate's slack */
    struct stat a, b;
    assert_int_equal(stat(orig, &a), 0);
    assert_int_equal(stat(path, &b), 0);
    assert_true(b.st_size - a.st_size <= (off_t)((153 + 2 + 35) / 36 + 1 + (40 + 2 + 35) / 36 + 1) * 2880);
}

/* Refused documents and files leave the file alone. */
static void test_refused(void **state)
{
    (void)state;
    char path[256], orig[256], cmd[600];
    snprintf(path, sizeof path, "%s/refused.fits", dir);
    snprintf(orig, sizeof orig, "%s/refused.orig", dir);
    write_synthetic(path);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", path, orig);
    assert_int_equal(system(cmd), 0);
    static const char *const bad[] = {
        "PRIMARY: [\n", "- just a list\n", "PRIMARY: 5\n", "PRIMARY:\n- 5\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        bfs_hs_report r;
        char *msg = NULL;
        assert_int_equal(bfs_hs_merge(path, bad[i], strlen(bad[i]), "R22S00", &r, &msg), -EINVAL);
        assert_non_null(msg);
        assert_non_null(strstr(msg, "line"));
        free(msg);
        assert_true(same_bytes(path, orig));
    }
    /* not FITS */
    char junk[256];
    snprintf(junk, sizeof junk, "%s/junk.fits", dir);
    spit(junk, "not a FITS file at all", 22);
    char *msg = NULL;
    assert_int_equal(bfs_hs_merge(junk, "PRIMARY: []\n", 12, NULL, NULL, &msg), -EBADMSG);
    assert_non_null(strstr(msg, junk));
    free(msg);
    snprintf(cmd, sizeof cmd, "%s.merge", junk);
    assert_int_equal(access(cmd, F_OK), -1);
    /* missing file */
    snprintf(cmd, sizeof cmd, "%s/none.fits", dir);
    assert_int_equal(bfs_hs_merge(cmd, "PRIMARY: []\n", 12, NULL, NULL, NULL), -ENOENT);
}

/* ---- the fixtures ------------------------------------------------------- */

static void test_fixture_latiss(void **state)
{
    (void)state;
    char src[1024], yml[1024], path[256], once[256], cmd[2400];
    snprintf(src, sizeof src, "%s/fixtures/headerservice/AT_O_20190531_000001.header", shared_dir());
    snprintf(yml, sizeof yml, "%s/fixtures/headerservice/curated_example.yml", shared_dir());
    if (access(src, R_OK) || access(yml, R_OK)) {
        print_message("no ../shared fixtures (BFS_SHARED): skipped\n");
        skip();
    }
    snprintf(path, sizeof path, "%s/AT_O_20190531_000001.fits", dir);
    snprintf(once, sizeof once, "%s/AT_O_20190531_000001.once", dir);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && chmod u+w '%s'", src, path, path);
    assert_int_equal(system(cmd), 0);
    char *before[17];
    for (int h = 1; h <= 17; h++)
        before[h - 1] = cards_text(path, h, true);
    size_t len;
    char *doc = slurp(yml, &len);
    assert_non_null(doc);
    bfs_hs_report r;
    char *msg = NULL, line[2048];
    int rc = bfs_hs_merge(path, doc, len, "R01S01", &r, &msg);
    bfs_hs_report_format(&r, line, sizeof line);
    print_message("LATISS: %s\n", line);
    if (rc)
        print_message("%s\n", msg ? msg : "?");
    assert_int_equal(rc, 0);
    assert_int_equal(r.blocks_merged, 18);
    assert_int_equal(r.blocks_without_hdu, 0);
    assert_int_equal(r.blocks_other, 0);
    assert_int_equal(r.invalid, 0);
    assert_true(r.skipped_structural >= 5); /* SIMPLE BITPIX NAXIS EXTEND EXTNAME */
    assert_true(r.rewritten);

    /* PRIMARY's cards in HDU 1, with their YAML types */
    bfs_fits_card c = card(path, 1, "ORIGIN");
    assert_int_equal(c.type, 'C');
    assert_string_equal(c.value, "LSST DM Header Service");
    c = card(path, 1, "MJD-OBS");
    assert_int_equal(c.type, 'F');
    assert_true(strtod(c.value, NULL) == 58634.9063894134);
    c = card(path, 1, "SEQNUM");
    assert_int_equal(c.type, 'I');
    assert_string_equal(c.value, "1");
    assert_string_equal(card(path, 1, "OBSID").value, "AT_O_20190531_000001");
    assert_int_equal(card(path, 1, "OBSTYPE").type, 'U'); /* value: null */
    /* PRIMARY_R01S01's too */
    c = card(path, 1, "CCD_SERN");
    assert_int_equal(c.type, 'C'); /* '20304' quoted in the YAML */
    assert_string_equal(c.value, "20304");
    c = card(path, 1, "OVERH");
    assert_int_equal(c.type, 'I');
    assert_string_equal(c.value, "54");
    assert_int_equal(card(path, 1, "REBNAME").type, 'U');
    c = card(path, 1, "CCDTEMP");
    assert_int_equal(c.type, 'F');
    assert_true(strtod(c.value, NULL) == -18.1388607025146);
    /* a segment's cards in its HDU */
    char ext[72];
    for (int h = 2; h <= 17; h++) {
        bfs_fits_card e = card(path, h, "EXTNAME");
        snprintf(ext, sizeof ext, "%s", e.value);
        if (!strcmp(ext, "Segment10"))
            break;
    }
    assert_string_equal(ext, "Segment10");
    assert_string_equal(card(path, 2, "EXTNAME").value, "Segment10");
    c = card(path, 2, "DATASEC");
    assert_string_equal(c.value, "[11:519,1:2000]");
    /* structural cards unchanged everywhere */
    for (int h = 1; h <= 17; h++) {
        char *after = cards_text(path, h, true);
        assert_string_equal(before[h - 1], after);
        free(before[h - 1]);
        free(after);
    }
    checksums_ok(path, r.hdus_changed);
    assert_true(r.hdus_changed >= 1);
    fitsverify(path);

    /* a second merge: same bytes */
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", path, once);
    assert_int_equal(system(cmd), 0);
    free(msg);
    msg = NULL;
    assert_int_equal(bfs_hs_merge(path, doc, len, "R01S01", &r, &msg), 0);
    bfs_hs_report_format(&r, line, sizeof line);
    print_message("LATISS again: %s\n", line);
    assert_false(r.rewritten);
    assert_int_equal(r.added + r.replaced + r.commentary, 0);
    assert_true(same_bytes(path, once));

    /* the ingest passes no sensor (the raw has no RAFTBAY or CCDSLOT): the
     * document's only one, R01S01, is taken */
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && chmod u+w '%s'", src, path, path);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(bfs_hs_merge(path, doc, len, NULL, &r, &msg), 0);
    bfs_hs_report_format(&r, line, sizeof line);
    print_message("LATISS, no sensor given: %s\n", line);
    assert_true(r.sensor_from_document);
    assert_string_equal(r.sensor, "R01S01");
    assert_int_equal(r.blocks_merged, 18);
    assert_int_equal(r.blocks_other, 0);
    assert_string_equal(card(path, 1, "LSST_NUM").value, "ITL-3800C-098");
    assert_true(same_bytes(path, once)); /* as merged for R01S01 */
    free(doc);
}

/* The ComCam document into a synthetic R22S00 file: only R22S00's blocks
 * apply; the other 8 sensors' 136 blocks are ignored. */
static void test_fixture_comcam(void **state)
{
    (void)state;
    char yml[1024], path[256];
    snprintf(yml, sizeof yml, "%s/fixtures/headerservice/CC_O_20200521_000008.header", shared_dir());
    if (access(yml, R_OK)) {
        print_message("no ../shared fixtures (BFS_SHARED): skipped\n");
        skip();
    }
    snprintf(path, sizeof path, "%s/CC_O_20200521_000008_R22_S00.fits", dir);
    write_synthetic(path);
    size_t len;
    char *doc = slurp(yml, &len);
    bfs_hs_report r;
    char *msg = NULL;
    assert_int_equal(bfs_hs_merge(path, doc, len, "R22S00", &r, &msg), 0);
    char line[2048];
    bfs_hs_report_format(&r, line, sizeof line);
    print_message("ComCam: %s\n", line);
    assert_int_equal(r.blocks_other, 8 * 17);
    assert_int_equal(r.blocks_merged, 4); /* PRIMARY, R22S00_PRIMARY, Segment10, Segment11 */
    assert_int_equal(r.blocks_without_hdu, 14);
    assert_int_equal(r.invalid, 2); /* OBJECT and RADESYS: null, but typed by the standard */
    assert_true(r.conflicts >= 1); /* EXPTIME */
    assert_string_equal(card(path, 1, "INSTRUME").value, "ComCam");
    assert_int_equal(card(path, 1, "FILTER").type, 'U'); /* null in the document */
    checksums_ok(path, 3);
    fitsverify(path);
    free(doc);
    free(msg);
}

/* ---- fetch ---------------------------------------------------------------- */

struct late_writer {
    char path[300];
    int delay_ms;
};

static void *write_late(void *arg)
{
    struct late_writer *w = arg;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = w->delay_ms * 1000000L};
    nanosleep(&ts, NULL);
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s.tmp", w->path);
    spit(tmp, synthetic_doc, strlen(synthetic_doc));
    rename(tmp, w->path);
    return NULL;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_fetch_dir(void **state)
{
    (void)state;
    char hsdir[256];
    snprintf(hsdir, sizeof hsdir, "%s/hs", dir);
    assert_int_equal(mkdir(hsdir, 0755), 0);

    /* a document that appears after 300 ms (.yaml, the second name tried) */
    struct late_writer w = {.delay_ms = 300};
    snprintf(w.path, sizeof w.path, "%s/CC_O_20200521_000008.yaml", hsdir);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, write_late, &w), 0);
    char *text = NULL, *msg = NULL;
    size_t len = 0;
    int64_t t0 = mono_ms();
    int rc = bfs_hs_fetch(hsdir, NULL, "CC_O_20200521_000008", 5000, &text, &len, &msg);
    int64_t took = mono_ms() - t0;
    pthread_join(t, NULL);
    if (rc)
        print_message("%s\n", msg ? msg : "?");
    assert_int_equal(rc, 0);
    assert_true(took >= 250 && took < 2000);
    assert_int_equal(len, strlen(synthetic_doc));
    assert_memory_equal(text, synthetic_doc, len);
    assert_int_equal(text[len], '\0');
    free(text);

    /* nothing arrives: -ETIMEDOUT after the wait, naming where it looked */
    t0 = mono_ms();
    rc = bfs_hs_fetch(hsdir, NULL, "AT_O_20190531_000002", 300, &text, &len, &msg);
    took = mono_ms() - t0;
    assert_int_equal(rc, -ETIMEDOUT);
    assert_null(text);
    assert_true(took >= 300 && took < 1500);
    print_message("%s\n", msg);
    assert_non_null(strstr(msg, hsdir));
    assert_non_null(strstr(msg, "AT_O_20190531_000002"));
    free(msg);

    /* an OBSID that is not one path component */
    static const char *const bad[] = {"../etc/passwd", "..", ".", "", "a/b", "a\nb"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(bfs_hs_fetch(hsdir, NULL, bad[i], 0, &text, &len, &msg), -EINVAL);
        free(msg);
    }
    assert_int_equal(bfs_hs_fetch(NULL, NULL, "X", 0, &text, &len, NULL), -EINVAL);

    /* larger than 16 MiB */
    char big[300];
    snprintf(big, sizeof big, "%s/BIG.header", hsdir);
    int fd = open(big, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, BFS_HS_MAX_DOC + 1), 0);
    close(fd);
    assert_int_equal(bfs_hs_fetch(hsdir, NULL, "BIG", 0, &text, &len, &msg), -EFBIG);
    assert_non_null(strstr(msg, "BIG.header"));
    free(msg);
}

static void test_fetch_http(void **state)
{
    (void)state;
    if (access("/usr/sbin/nginx", X_OK) != 0 && system("command -v nginx >/dev/null 2>&1") != 0) {
        print_message("nginx is not installed: the HTTP fetch is not tested\n");
        skip();
    }
    char docroot[256], p[400];
    snprintf(docroot, sizeof docroot, "%s/www", dir);
    assert_int_equal(mkdir(docroot, 0755), 0);
    snprintf(p, sizeof p, "%s/AT_O_20190531_000001.header", docroot);
    spit(p, synthetic_doc, strlen(synthetic_doc));
    pid_t pid = 0;
    int port = 0;
    if (bfs_test_nginx_start(__FILE__, dir, docroot, "hs", &pid, &port) < 0) {
        print_message("nginx did not start: the HTTP fetch is not tested\n");
        skip();
    }
    char url[200];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/data/{obsid}.header?token=secret", port);
    char *text = NULL, *msg = NULL;
    size_t len = 0;
    int rc = bfs_hs_fetch(NULL, url, "AT_O_20190531_000001", 2000, &text, &len, &msg);
    if (rc)
        print_message("%s\n", msg ? msg : "?");
    assert_int_equal(rc, 0);
    assert_int_equal(len, strlen(synthetic_doc));
    assert_memory_equal(text, synthetic_doc, len);
    free(text);

    /* 404 until the deadline */
    int64_t t0 = mono_ms();
    rc = bfs_hs_fetch(NULL, url, "AT_O_20190531_000009", 600, &text, &len, &msg);
    int64_t took = mono_ms() - t0;
    assert_int_equal(rc, -ETIMEDOUT);
    assert_true(took >= 600 && took < 3000);
    print_message("%s\n", msg);
    assert_non_null(strstr(msg, "/data/AT_O_20190531_000009.header"));
    assert_null(strstr(msg, "secret")); /* no query string in messages */
    free(msg);

    /* a document that appears on the server after 300 ms */
    struct late_writer w = {.delay_ms = 300};
    snprintf(w.path, sizeof w.path, "%s/AT_O_20190531_000003.header", docroot);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, write_late, &w), 0);
    rc = bfs_hs_fetch(NULL, url, "AT_O_20190531_000003", 5000, &text, &len, &msg);
    pthread_join(t, NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(len, strlen(synthetic_doc));
    free(text);
    bfs_test_nginx_stop(&pid);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_yaml_types),
        cmocka_unit_test(test_synthetic),
        cmocka_unit_test(test_other_sensor),
        cmocka_unit_test(test_document_sensor),
        cmocka_unit_test(test_gzip),
        cmocka_unit_test(test_many_cards),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_fixture_latiss),
        cmocka_unit_test(test_fixture_comcam),
        cmocka_unit_test(test_fetch_dir),
        cmocka_unit_test(test_fetch_http),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
