/*
 * test_translate_decam.c - DECam raws -> datasets and exposure record
 * (writers/translate_decam.c).
 *
 * Sources of truth, none of them this code:
 *  - the two DECam header dumps of ../shared/fixtures/headers (copied from
 *    astro_metadata_translator's tests/data), with the values its
 *    tests/test_decam.py expects for those same files; the times, the ICRS
 *    position and the record columns test_decam.py does not state are
 *    worked out by hand next to each value;
 *  - synthetic headers, one per rule of DecamTranslator (quoted with the
 *    case); they run everywhere;
 *  - a synthetic multi-extension file written with cfitsio (fits.h), read
 *    back through bfs_decam_read_file;
 *  - a fresh registry holding (or not) DECam's records.
 * The fixture test skips when ../shared is absent.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <ftw.h>

#include <cmocka.h>

#include "config.h"
#include "translate_decam.h"

/* ---- building headers ------------------------------------------------------ */

#include "hdr_builder.h"

/* A DECam primary header (the keywords of a 2013 raw). */
static void primary(struct hdr *h)
{
    h->n = 0;
    put(h, "SIMPLE", 'L', "T");
    S(h, "TELESCOP", "CTIO 4.0-m telescope");
    S(h, "INSTRUME", "DECam");
    N(h, "EXPREQ", "90.0");
    N(h, "EXPTIME", "90.0");
    N(h, "DARKTIME", "91.5");
    S(h, "OBSID", "ct4m20140101t010203");
    S(h, "DATE-OBS", "2014-01-01T01:02:03.5");
    S(h, "TIMESYS", "UTC");
    N(h, "EXPNUM", "271000");
    S(h, "OBJECT", "field 7");
    S(h, "OBSTYPE", "object");
    S(h, "PROPID", "2013B-0440");
    S(h, "FILTER", "r DECam SDSS c0002 6415.0 1480.0");
    S(h, "TELRA", "06:00:00.000");
    S(h, "TELDEC", "-30:00:00.00");
    N(h, "ZD", "20.5");
    N(h, "AZ", "-10.0");
}

static void ccd(struct hdr *h, int ccdnum, const char *detpos)
{
    h->n = 0;
    S(h, "XTENSION", "IMAGE");
    char v[16];
    snprintf(v, sizeof v, "%d", ccdnum);
    N(h, "CCDNUM", v);
    S(h, "DETPOS", detpos);
    put(h, "INHERIT", 'L', "T");
    S(h, "RADESYS", "FK5");
}

static int run(const struct hdr *p, const struct hdr *e, bfs_raw_translation *t, char **msg)
{
    free(*msg);
    *msg = NULL;
    int rc = bfs_decam_translate(p->c, p->n, e ? e->c : NULL, e ? e->n : 0, t, msg);
    if (rc)
        print_message("translate: %s\n", *msg ? *msg : "?");
    return rc;
}

static void expect_fail(const struct hdr *p, const struct hdr *e, int err, const char *word)
{
    bfs_raw_translation t;
    char *msg = NULL;
    assert_int_equal(bfs_decam_translate(p->c, p->n, e ? e->c : NULL, e ? e->n : 0, &t, &msg), err);
    assert_non_null(msg);
    if (!strstr(msg, word))
        print_message("message '%s' lacks '%s'\n", msg, word);
    assert_non_null(strstr(msg, word));
    free(msg);
}

/* ---- rules, without fixtures -------------------------------------------- */

static void test_recognise(void **state)
{
    (void)state;
    struct hdr h;
    primary(&h);
    assert_true(bfs_decam_is(h.c, h.n)); /* INSTRUME == "DECam" */
    S(&h, "INSTRUME", "decam");          /* exact, case-sensitive */
    S(&h, "FILTER", "r_57");
    assert_false(bfs_decam_is(h.c, h.n));
    S(&h, "FILTER", "g DECam SDSS c0001 4720.0 1520.0"); /* FILTER containing "DECam" */
    assert_true(bfs_decam_is(h.c, h.n));
    drop(&h, "FILTER");
    S(&h, "INSTRUME", "LSSTCam");
    assert_false(bfs_decam_is(h.c, h.n));
    put(&h, "INSTRUME", 'U', ""); /* undefined: the trivial map's default "DECam" */
    assert_true(bfs_decam_is(h.c, h.n));
    drop(&h, "INSTRUME"); /* absent: only FILTER could say */
    assert_false(bfs_decam_is(h.c, h.n));
}

static void test_detector(void **state)
{
    (void)state;
    struct hdr e;
    int64_t det;
    char pos[16], *msg = NULL;
    ccd(&e, 25, "S1");
    assert_int_equal(bfs_decam_detector(e.c, e.n, &det, pos, &msg), 0);
    assert_int_equal(det, 25); /* detector id == CCDNUM */
    assert_string_equal(pos, "S1");
    ccd(&e, 62, "N31");
    assert_int_equal(bfs_decam_detector(e.c, e.n, &det, NULL, &msg), 0);
    assert_int_equal(det, 62);
    /* determine_translatable_headers: CCDNUM > 62 are guide/focus CCDs */
    ccd(&e, 63, "FS1");
    assert_int_equal(bfs_decam_detector(e.c, e.n, &det, pos, &msg), BFS_DECAM_SKIPPED);
    assert_non_null(strstr(msg, "skipped"));
    free(msg);
    msg = NULL;
    drop(&e, "CCDNUM"); /* an HDU without CCDNUM is not a CCD */
    assert_int_equal(bfs_decam_detector(e.c, e.n, &det, pos, &msg), BFS_DECAM_SKIPPED);
    free(msg);
    msg = NULL;
    S(&e, "CCDNUM", "twenty");
    assert_int_equal(bfs_decam_detector(e.c, e.n, &det, pos, &msg), -EINVAL);
    assert_non_null(strstr(msg, "CCDNUM"));
    free(msg);
}

static void test_science(void **state)
{
    (void)state;
    struct hdr p, e;
    primary(&p);
    ccd(&e, 25, "S1");
    bfs_raw_translation t;
    char *msg = NULL;
    assert_int_equal(run(&p, &e, &t, &msg), 0);
    const bfs_exposure_record *r = &t.exposure;
    assert_string_equal(t.instrument, "DECam");
    assert_null(t.camera);
    assert_int_equal(t.detector, 25);
    assert_int_equal(t.exposure_id, 271000);
    assert_int_equal(r->id, 271000);
    /* seq_num = observation_counter = exposure id; counters the same */
    assert_int_equal(r->seq_num, 271000);
    assert_int_equal(r->seq_start, 271000);
    assert_int_equal(r->seq_end, 271000);
    assert_string_equal(r->group, "271000"); /* str(exposure_id) */
    assert_string_equal(r->obs_id, "ct4m20140101t010203");
    assert_string_equal(r->physical_filter, "r DECam SDSS c0002 6415.0 1480.0");
    assert_string_equal(r->observation_type, "science");
    assert_string_equal(r->observation_reason, "science");
    assert_string_equal(r->target_name, "field 7");
    assert_string_equal(r->science_program, "2013B-0440");
    assert_true(r->exposure_time == 90.0);
    assert_true(r->dark_time == 91.5);
    /* 2014-01-01T01:02:03.5 UTC = +35 s TAI; less 12 h is 2013-12-31 */
    assert_int_equal(r->day_obs, 20131231);
    int64_t b;
    assert_int_equal(bfs_translate_iso_ns("2014-01-01T01:02:38.5", false, &b), 0);
    assert_int_equal(r->timespan_begin, b);
    assert_int_equal(r->timespan_end, b + 90000000000LL); /* no DTUTC: + EXPTIME */
    /* FK5 06:00:00 -30:00:00 -> ICRS, a frame-bias shift of some 20 mas */
    assert_true(fabs(r->tracking_ra - 90.0) < 1e-5 && r->tracking_ra != 90.0);
    assert_true(fabs(r->tracking_dec + 30.0) < 1e-5 && r->tracking_dec != -30.0);
    assert_true(r->sky_angle == 90.0); /* boresight_rotation_angle: constant 90 deg, "sky" */
    assert_true(fabs(r->zenith_angle - 20.5) < 1e-12);
    assert_true(r->azimuth == 350.0); /* AltAz wraps the azimuth */
    assert_int_equal(r->can_see_sky, 1);
    assert_false(r->has_simulated);
    /* the primary alone: no RADESYS, so ICRS as it is */
    assert_int_equal(run(&p, NULL, &t, &msg), 0);
    assert_int_equal(t.detector, -1);
    assert_true(fabs(t.exposure.tracking_ra - 90.0) < 1e-9);
    assert_true(fabs(t.exposure.tracking_dec + 30.0) < 1e-9);
    free(msg);
}

static void test_types_and_filters(void **state)
{
    (void)state;
    struct hdr p, e;
    ccd(&e, 1, "S29");
    bfs_raw_translation t;
    char *msg = NULL;
    /* fix_header: OBSTYPE with "zero" or "bias" -> FILTER "solid plate 0.0 0.0";
     * to_observation_type keeps "zero" (only "object" becomes "science") */
    primary(&p);
    S(&p, "OBSTYPE", "zero");
    assert_int_equal(run(&p, &e, &t, &msg), 0);
    assert_string_equal(t.exposure.physical_filter, "solid plate 0.0 0.0");
    assert_string_equal(t.exposure.observation_type, "zero");
    assert_string_equal(t.exposure.observation_reason, "unknown");
    assert_int_equal(t.exposure.can_see_sky, 0);
    S(&p, "OBSTYPE", " Dome Flat "); /* stripped, lower case */
    assert_int_equal(run(&p, &e, &t, &msg), 0);
    assert_string_equal(t.exposure.observation_type, "dome flat");
    assert_string_equal(t.exposure.physical_filter, "r DECam SDSS c0002 6415.0 1480.0");
    assert_int_equal(t.exposure.can_see_sky, 0);
    S(&p, "OBSTYPE", "standard");
    assert_int_equal(run(&p, &e, &t, &msg), 0);
    assert_int_equal(t.exposure.can_see_sky, 1);
    S(&p, "OBSTYPE", "sky flat");
    assert_int_equal(run(&p, &e, &t, &msg), 0);
    assert_int_equal(t.exposure.can_see_sky, 1);
    S(&p, "OBSTYPE", "focus");
    assert_int_equal(run(&p, &e, &t, &msg), 0);
    assert_int_equal(t.exposure.can_see_sky, -1);
    drop(&p, "OBSTYPE");
    assert_int_equal(run(&p, &e, &t, &msg), 0);
    assert_string_equal(t.exposure.observation_type, "none");
    /* FILTER stripped; other values kept as they are (the repository decides) */
    primary(&p);
    S(&p, "FILTER", "  N964 DECam c0008 9645.0 94.0 ");
    assert_int_equal(run(&p, &e, &t, &msg), 0);
    assert_string_equal(t.exposure.physical_filter, "N964 DECam c0008 9645.0 94.0");
    S(&p, "FILTER", "block/unknown");
    expect_fail(&p, &e, -EINVAL, "FILTER");
    S(&p, "FILTER", "a filter name far longer than the registry column");
    expect_fail(&p, &e, -EINVAL, "32");
    free(msg);
}

static void test_required(void **state)
{
    (void)state;
    struct hdr p, e;
    ccd(&e, 1, "S29");
    static const char *const keys[] = {"EXPNUM", "OBSID", "FILTER", "EXPREQ"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        primary(&p);
        drop(&p, keys[i]);
        expect_fail(&p, &e, -EINVAL, keys[i]);
    }
    primary(&p);
    drop(&p, "DATE-OBS");
    expect_fail(&p, &e, -EINVAL, "DATE-OBS");
    primary(&p);
    drop(&p, "EXPTIME"); /* the end needs it without DTUTC */
    expect_fail(&p, &e, -EINVAL, "EXPTIME");
    S(&p, "DTUTC", "2014-01-01T01:04:00");
    bfs_raw_translation t;
    char *msg = NULL;
    assert_int_equal(run(&p, &e, &t, &msg), 0);
    primary(&p);
    S(&p, "EXPNUM", "12x");
    expect_fail(&p, &e, -EINVAL, "EXPNUM");
    primary(&p);
    S(&p, "INSTRUME", "Mosaic3");
    expect_fail(&p, &e, -ENOENT, "Mosaic3");
    primary(&p);
    S(&p, "TIMESYS", "TT");
    expect_fail(&p, &e, -EINVAL, "TIMESYS");
    primary(&p);
    S(&p, "OBSID", "../x");
    expect_fail(&p, &e, -EINVAL, "OBSID");
    /* optional properties absent: NULL in the record */
    primary(&p);
    drop(&p, "DARKTIME");
    drop(&p, "OBJECT");
    drop(&p, "PROPID");
    drop(&p, "TELRA");
    drop(&p, "ZD");
    assert_int_equal(run(&p, &e, &t, &msg), 0);
    assert_true(isnan(t.exposure.dark_time));
    assert_null(t.exposure.target_name);
    assert_null(t.exposure.science_program);
    assert_true(isnan(t.exposure.tracking_ra) && isnan(t.exposure.tracking_dec));
    assert_true(isnan(t.exposure.sky_angle));
    assert_true(isnan(t.exposure.zenith_angle) && isnan(t.exposure.azimuth));
    /* RADESYS GAPPT: a moving target, no tracking position */
    primary(&p);
    S(&e, "RADESYS", "GAPPT");
    assert_int_equal(run(&p, &e, &t, &msg), 0);
    assert_true(isnan(t.exposure.tracking_ra));
    free(msg);
}

static void test_times(void **state)
{
    (void)state;
    struct hdr p, e;
    ccd(&e, 1, "S29");
    bfs_raw_translation t;
    char *msg = NULL;
    primary(&p);
    /* day_obs rolls over at 12:00 TAI: 11:59:24 UTC is 11:59:59 TAI (2013: +35 s) */
    S(&p, "DATE-OBS", "2013-06-10T11:59:24.999");
    assert_int_equal(run(&p, &e, &t, &msg), 0);
    assert_int_equal(t.exposure.day_obs, 20130609);
    S(&p, "DATE-OBS", "2013-06-10T11:59:25");
    assert_int_equal(run(&p, &e, &t, &msg), 0);
    assert_int_equal(t.exposure.day_obs, 20130610);
    /* DTUTC is the end, on the UTC scale */
    S(&p, "DTUTC", "2013-06-10T12:01:00");
    assert_int_equal(run(&p, &e, &t, &msg), 0);
    int64_t end;
    assert_int_equal(bfs_translate_iso_ns("2013-06-10T12:01:00", true, &end), 0);
    assert_int_equal(t.exposure.timespan_end, end);
    /* an end before the begin is the begin (obs_base), one instant */
    S(&p, "DTUTC", "2013-06-10T11:00:00");
    assert_int_equal(run(&p, &e, &t, &msg), 0);
    assert_int_equal(t.exposure.timespan_end, t.exposure.timespan_begin + 1);
    /* TIMESYS TAI: DATE-OBS read as TAI */
    primary(&p);
    S(&p, "TIMESYS", "TAI");
    assert_int_equal(run(&p, &e, &t, &msg), 0);
    int64_t b;
    assert_int_equal(bfs_translate_iso_ns("2014-01-01T01:02:03.5", false, &b), 0);
    assert_int_equal(t.exposure.timespan_begin, b);
    /* MJD-OBS when there is no DATE-OBS, in the TIMESYS scale (UTC) */
    primary(&p);
    drop(&p, "DATE-OBS");
    N(&p, "MJD-OBS", "56658.0");
    assert_int_equal(run(&p, &e, &t, &msg), 0);
    assert_int_equal(bfs_translate_iso_ns("2014-01-01T00:00:00", true, &b), 0);
    assert_int_equal(t.exposure.timespan_begin, b);
    free(msg);
}

/* ---- the fixture header dumps -------------------------------------------- */


/* One card into the primary or, from XTENSION on, the extension. */
static void add_card(struct hdr *p, struct hdr *e, bool *in_ext, const char *k, char type,
                     const char *v)
{
    if (!strcmp(k, "XTENSION"))
        *in_ext = true;
    if (type == 'L')
        v = v[0] == 't' || v[0] == 'T' ? "T" : "F";
    put(*in_ext ? e : p, k, type, v);
}

/* A dump of a merged DECam header (primary, then the CCD's cards from
 * XTENSION on): the plain mapping, or daf_base's PropertyList list of
 * [KEY, Type, value, comment]. */
static bool load_yaml(const char *file, struct hdr *p, struct hdr *e)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/fixtures/headers/%s", shared_dir(), file);
    bfs_yaml *y = NULL;
    if (access(path, R_OK) != 0 || bfs_yaml_load_file(path, &y, NULL) != 0)
        return false;
    const bfs_yaml_node *root = bfs_yaml_root(y);
    p->n = e->n = 0;
    bool in_ext = false;
    for (size_t i = 0; i < bfs_yaml_len(y, root) && p->n + e->n < 780; i++) {
        const bfs_yaml_node *v = bfs_yaml_item(y, root, i);
        if (bfs_yaml_is_seq(y, v)) {
            const char *k = bfs_yaml_scalar(y, bfs_yaml_item(y, v, 0));
            const char *type = bfs_yaml_scalar(y, bfs_yaml_item(y, v, 1));
            const char *s = bfs_yaml_scalar(y, bfs_yaml_item(y, v, 2));
            if (!k || !type || !s)
                continue;
            char t = !strcmp(type, "Bool") ? 'L' : !strcmp(type, "Int") ? 'I'
                   : !strcmp(type, "Double") ? 'F' : 'C';
            add_card(p, e, &in_ext, k, t, s);
            continue;
        }
        const char *k = bfs_yaml_key(y, root, i);
        if (bfs_yaml_is_null(y, v)) {
            add_card(p, e, &in_ext, k, 'U', "");
            continue;
        }
        const char *s = bfs_yaml_scalar(y, v);
        if (s)
            add_card(p, e, &in_ext, k, classify(s), s);
    }
    bfs_yaml_free(y);
    return p->n > 0;
}

static void test_fixture_headers(void **state)
{
    (void)state;
    /* Expected: astro_metadata_translator tests/test_decam.py for these files
     * (exposure_time here is exposure_time_requested, as in the record).  The
     * times: DATE-OBS and DTUTC (the end) in UTC, 2013's TAI-UTC 35 s.  The
     * position: TELRA/TELDEC in RADESYS FK5 (the CCD's card) turned to ICRS;
     * for 177764 after fix_header's 2013A-0351 correction (RA - 0.027417 deg,
     * DEC - 0.002833 deg). */
    static const struct {
        const char *file;
        long long exposure;
        int detector;
        const char *obs_id, *filter, *group, *program, *target;
        long long day_obs;
        double exptime, dark;
        long long begin, end;
        double ra, dec, zen, az;
    } cases[] = {
        {"fitsheader-decam.yaml", 229388, 25, "ct4m20130901t060255",
         "z DECam SDSS c0004 9260.0 1520.0", "229388", "2012B-0001",
         "DES supernova hex SN-S1 tiling 22", 20130831, 200.0, 201.15662, 1378015410753848000LL,
         1378015711000000000LL, 42.8199519723815, -0.0015811524500857223, 50.46, 61.24},
        {"fitsheader-decam-raw_dec050441_25.yaml", 177764, 25, "ct4m20130213t090140",
         "g DECam SDSS c0001 4720.0 1520.0", "177764", "2013A-0351", "Trifid and Lagoon",
         20130212, 30.0, 31.1290202, 1360746135966998000LL, 1360779041000000000LL,
         270.6114630507999, -23.786171609994895, 55.59, 99.51},
    };
    int seen = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        static struct hdr p, e;
        if (!load_yaml(cases[i].file, &p, &e))
            continue;
        seen++;
        print_message("%s: %zu primary cards, %zu CCD cards\n", cases[i].file, p.n, e.n);
        assert_true(bfs_decam_is(p.c, p.n));
        int64_t det;
        char pos[16];
        assert_int_equal(bfs_decam_detector(e.c, e.n, &det, pos, NULL), 0);
        assert_int_equal(det, cases[i].detector);
        assert_string_equal(pos, "S1");
        bfs_raw_translation t;
        char *msg = NULL;
        assert_int_equal(run(&p, &e, &t, &msg), 0);
        const bfs_exposure_record *r = &t.exposure;
        assert_string_equal(t.instrument, "DECam");
        assert_int_equal(t.exposure_id, cases[i].exposure);
        assert_int_equal(t.detector, cases[i].detector);
        assert_int_equal(r->seq_num, cases[i].exposure);
        assert_int_equal(r->seq_start, cases[i].exposure);
        assert_int_equal(r->seq_end, cases[i].exposure);
        assert_string_equal(r->obs_id, cases[i].obs_id);
        assert_string_equal(r->observation_type, "science");
        assert_string_equal(r->observation_reason, "science");
        assert_string_equal(r->physical_filter, cases[i].filter);
        assert_string_equal(r->group, cases[i].group);
        assert_string_equal(r->science_program, cases[i].program);
        assert_string_equal(r->target_name, cases[i].target);
        assert_int_equal(r->day_obs, cases[i].day_obs);
        assert_true(r->exposure_time == cases[i].exptime);
        assert_true(fabs(r->dark_time - cases[i].dark) < 1e-9);
        assert_int_equal(r->timespan_begin, cases[i].begin);
        assert_int_equal(r->timespan_end, cases[i].end);
        assert_true(fabs(r->tracking_ra - cases[i].ra) < 1e-9);
        assert_true(fabs(r->tracking_dec - cases[i].dec) < 1e-9);
        assert_true(r->sky_angle == 90.0);
        assert_true(fabs(r->zenith_angle - cases[i].zen) < 1e-9);
        assert_true(fabs(r->azimuth - cases[i].az) < 1e-9);
        assert_int_equal(r->can_see_sky, 1);
        assert_false(r->has_simulated);
        free(msg);
    }
    if (!seen)
        skip();
}

/* ---- a multi-extension file through cfitsio ---------------------------------- */

static char tmpdir[64];

static void write_mef(const char *path, const int *ccdnums, int n, const char *instrume)
{
    bfs_fits *f = NULL;
    assert_int_equal(bfs_fits_create(path, &f), 0);
    bfs_fits_add_image(f, 32, 0, NULL);
    struct hdr p;
    primary(&p);
    S(&p, "INSTRUME", instrume);
    if (strcmp(instrume, "DECam"))
        S(&p, "FILTER", "r_57"); /* a FILTER naming DECam would claim the file */
    for (size_t i = 0; i < p.n; i++) {
        const bfs_fits_card *c = &p.c[i];
        if (c->type == 'C')
            bfs_fits_key_str(f, c->key, c->value, NULL);
        else if (c->type == 'I')
            bfs_fits_key_lng(f, c->key, strtoll(c->value, NULL, 10), NULL);
        else if (c->type == 'F')
            bfs_fits_key_dbl(f, c->key, strtod(c->value, NULL), 3, NULL);
    }
    long naxes[2] = {4, 3};
    int32_t pix[12] = {0};
    for (int i = 0; i < n; i++) {
        bfs_fits_add_image(f, 32, 2, naxes);
        if (ccdnums[i] >= 0) {
            char pos[16];
            snprintf(pos, sizeof pos, "%c%d", ccdnums[i] > 31 ? 'N' : 'S', ccdnums[i]);
            bfs_fits_key_lng(f, "CCDNUM", ccdnums[i], NULL);
            bfs_fits_key_str(f, "DETPOS", pos, NULL);
            bfs_fits_key_str(f, "EXTNAME", pos, NULL);
        }
        bfs_fits_key_log(f, "INHERIT", true, NULL);
        bfs_fits_key_str(f, "RADESYS", "FK5", NULL);
        bfs_fits_write_i32(f, pix, 12);
    }
    assert_int_equal(bfs_fits_close(f), 0);
}

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb, (void)type, (void)ftw;
    return remove(path);
}

static int setup_tmp(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/bfs_decamXXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state)
{
    (void)state;
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static void test_file(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/DECam_00271000.fits", tmpdir);
    /* S1 (25), a guide CCD (66), an HDU without CCDNUM (-1), S29 (1) */
    static const int ccds[] = {25, 66, -1, 1};
    write_mef(path, ccds, 4, "DECam");
    bfs_decam_file f;
    char *msg = NULL;
    int rc = bfs_decam_read_file(path, &f, &msg);
    if (rc)
        print_message("%s\n", msg ? msg : "?");
    assert_int_equal(rc, 0);
    assert_int_equal(f.n_ccds, 2);
    assert_int_equal(f.n_skipped, 2);
    assert_int_equal(f.ccds[0].hdu, 2);
    assert_int_equal(f.ccds[0].detector, 25);
    assert_string_equal(f.ccds[0].detpos, "S25");
    assert_int_equal(f.ccds[1].hdu, 5);
    assert_int_equal(f.ccds[1].detector, 1);
    assert_int_equal(f.raw.exposure_id, 271000);
    assert_int_equal(f.raw.detector, 25); /* the record came from the first CCD */
    assert_string_equal(f.raw.exposure.obs_id, "ct4m20140101t010203");
    assert_string_equal(f.raw.exposure.physical_filter, "r DECam SDSS c0002 6415.0 1480.0");
    assert_true(f.raw.exposure.tracking_ra != 90.0); /* the CCD's RADESYS FK5 */
    bfs_decam_file_free(&f);
    /* the same CCDNUM twice: refused */
    static const int twice[] = {25, 26, 25};
    write_mef(path, twice, 3, "DECam");
    assert_int_equal(bfs_decam_read_file(path, &f, &msg), -EINVAL);
    assert_non_null(strstr(msg, "CCDNUM 25"));
    free(msg);
    msg = NULL;
    /* only guide and focus CCDs: nothing to ingest */
    static const int guides[] = {63, 70};
    write_mef(path, guides, 2, "DECam");
    assert_int_equal(bfs_decam_read_file(path, &f, &msg), -EINVAL);
    assert_non_null(strstr(msg, "no science CCD"));
    free(msg);
    msg = NULL;
    /* not DECam */
    write_mef(path, ccds, 2, "Mosaic3");
    assert_int_equal(bfs_decam_read_file(path, &f, &msg), -ENOENT);
    assert_non_null(strstr(msg, "not a DECam raw"));
    free(msg);
    msg = NULL;
    /* a missing file keeps its errno */
    snprintf(path, sizeof path, "%s/absent.fits", tmpdir);
    assert_int_equal(bfs_decam_read_file(path, &f, &msg), -ENOENT);
    free(msg);
}

/* ---- what the repository must hold ----------------------------------------------- */

static void test_repository(void **state)
{
    (void)state;
    char path[128], repo[128];
    snprintf(path, sizeof path, "%s/DECam_00271001.fits", tmpdir);
    static const int ccds[] = {25, 1};
    write_mef(path, ccds, 2, "DECam");
    bfs_decam_file f;
    char *msg = NULL;
    assert_int_equal(bfs_decam_read_file(path, &f, &msg), 0);

    snprintf(repo, sizeof repo, "%s/repo", tmpdir);
    assert_int_equal(bfs_registry_init(repo, &msg), 0);
    bfs_registry *reg = NULL;
    assert_int_equal(bfs_registry_open(repo, BFS_REG_WRITE, &reg, &msg), 0);
    char band[32];
    assert_int_equal(bfs_decam_check_repository(reg, &f, band, sizeof band, &msg), -ENOENT);
    assert_non_null(strstr(msg, "no DECam instrument"));
    free(msg);
    msg = NULL;

    assert_int_equal(bfs_registry_begin(reg), 0);
    bfs_instrument_record ins = {.name = "DECam", .visit_max = 33554432, .exposure_max = 33554432,
                                 .detector_max = 100, .visit_system = 0,
                                 .class_name = "lsst.obs.decam.DarkEnergyCamera"};
    assert_int_equal(bfs_registry_add_instrument(reg, &ins), 0);
    bfs_detector_record det = {.instrument = "DECam", .id = 25, .full_name = "S1", .raft = "S",
                               .name_in_raft = "1", .purpose = "SCIENCE"};
    assert_int_equal(bfs_registry_add_detector(reg, &det), 0);
    assert_int_equal(bfs_registry_commit(reg), 0);
    assert_int_equal(bfs_decam_check_repository(reg, &f, band, sizeof band, &msg), -ENOENT);
    assert_non_null(strstr(msg, "detector 1 "));
    free(msg);
    msg = NULL;

    assert_int_equal(bfs_registry_begin(reg), 0);
    det = (bfs_detector_record){.instrument = "DECam", .id = 1, .full_name = "S29", .raft = "S",
                                .name_in_raft = "29", .purpose = "SCIENCE"};
    assert_int_equal(bfs_registry_add_detector(reg, &det), 0);
    assert_int_equal(bfs_registry_add_physical_filter(reg, "DECam", "g DECam SDSS c0001 4720.0 1520.0",
                                                      "g"), 0);
    assert_int_equal(bfs_registry_commit(reg), 0);
    /* an unknown filter value: refused, named */
    assert_int_equal(bfs_decam_check_repository(reg, &f, band, sizeof band, &msg), -ENOENT);
    assert_non_null(strstr(msg, "physical_filter 'r DECam SDSS c0002 6415.0 1480.0'"));
    free(msg);
    msg = NULL;

    assert_int_equal(bfs_registry_begin(reg), 0);
    assert_int_equal(bfs_registry_add_physical_filter(reg, "DECam", "r DECam SDSS c0002 6415.0 1480.0",
                                                      "r"), 0);
    assert_int_equal(bfs_registry_commit(reg), 0);
    assert_int_equal(bfs_decam_check_repository(reg, &f, band, sizeof band, &msg), 0);
    assert_string_equal(band, "r");
    bfs_registry_close(reg);
    bfs_decam_file_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recognise),
        cmocka_unit_test(test_detector),
        cmocka_unit_test(test_science),
        cmocka_unit_test(test_types_and_filters),
        cmocka_unit_test(test_required),
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_fixture_headers),
        cmocka_unit_test(test_file),
        cmocka_unit_test(test_repository),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
