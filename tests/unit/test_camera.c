/*
 * test_camera.c - writers/camera.c: lookups, the facts that hold without
 * fixtures, every row of ../shared/fixtures/cameras/ (detectors and filters,
 * in order), and bfs_camera_register into a fresh registry, twice.
 *
 * The fixture tables were evaluated from obs_lsst independently of
 * camera.c (see their README.md); the simulated cameras are compared with
 * the tables of the real camera whose focal plane and filters they share.
 * Tests may not include sqlite3.h (only registry/ does), so the registered
 * rows are read back with the sqlite3 command-line shell, as in
 * test_registry_write.c.
 */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "sqlshell.h"

#include "camera.h"
#include "registry.h"

static const char *const all_cameras[] = {"LSSTCam", "LSSTComCam", "LATISS", "LSSTCamSim",
                                          "LSSTComCamSim"};
#define NCAMERAS ((int)(sizeof all_cameras / sizeof all_cameras[0]))

static const bfs_camera *cam(const char *name)
{
    const bfs_camera *c = bfs_camera_find(name);
    assert_non_null(c);
    return c;
}

/* ---- lookups and the facts that need no fixture ----------------------------- */

static void test_find(void **state)
{
    (void)state;
    for (int i = 0; i < NCAMERAS; i++)
        assert_string_equal(bfs_camera_name(cam(all_cameras[i])), all_cameras[i]);

    /* INSTRUME spellings, any case */
    assert_ptr_equal(bfs_camera_find("lsstCam"), bfs_camera_find("LSSTCam"));
    assert_ptr_equal(bfs_camera_find("LSSTCAM"), bfs_camera_find("LSSTCam"));
    assert_string_equal(bfs_camera_name(cam("COMCAM")), "LSSTComCam");
    assert_string_equal(bfs_camera_name(cam("ComCam")), "LSSTComCam");
    assert_string_equal(bfs_camera_name(cam("LSSTComCam")), "LSSTComCam");
    assert_string_equal(bfs_camera_name(cam("ComCamSim")), "LSSTComCamSim");
    assert_string_equal(bfs_camera_name(cam("LSSTComCamSim")), "LSSTComCamSim");
    assert_string_equal(bfs_camera_name(cam("LSSTCamSim")), "LSSTCamSim");
    assert_string_equal(bfs_camera_name(cam("LSST_ATISS")), "LATISS");
    assert_string_equal(bfs_camera_name(cam("latiss")), "LATISS");
    assert_ptr_not_equal(bfs_camera_find("LSSTCamSim"), bfs_camera_find("LSSTCam"));

    /* exact matches only; other obs_lsst instruments are not encoded */
    static const char *const unknown[] = {"",          "LSST",        "Cam",          "LSSTCam ",
                                          "LSSTCamS",  "LSSTCam-imSim", "LSST-TS8",   "LSST_CAMERA",
                                          "HSC",       "ComCamSimX"};
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++)
        assert_null(bfs_camera_find(unknown[i]));
    assert_null(bfs_camera_find(NULL));
}

static void test_instrument_records(void **state)
{
    (void)state;
    static const struct {
        const char *name, *prefix, *class_name, *formatter;
        int64_t detector_max;
    } want[] = {
        {"LSSTCam", "MC", "lsst.obs.lsst.LsstCam",
         "lsst.obs.lsst.rawFormatter.LsstCamRawFormatter", 1000},
        {"LSSTComCam", "CC", "lsst.obs.lsst.LsstComCam",
         "lsst.obs.lsst.rawFormatter.LsstComCamRawFormatter", 1000},
        {"LATISS", "AT", "lsst.obs.lsst.Latiss", "lsst.obs.lsst.rawFormatter.LatissRawFormatter", 1},
        {"LSSTCamSim", "MC", "lsst.obs.lsst.LsstCamSim",
         "lsst.obs.lsst.rawFormatter.LsstCamSimRawFormatter", 1000},
        {"LSSTComCamSim", "CC", "lsst.obs.lsst.LsstComCamSim",
         "lsst.obs.lsst.rawFormatter.LsstComCamSimRawFormatter", 1000},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        const bfs_camera *c = cam(want[i].name);
        bfs_instrument_record r;
        bfs_camera_instrument(c, &r);
        assert_string_equal(r.name, want[i].name);
        assert_int_equal(r.detector_max, want[i].detector_max);
        assert_int_equal(r.exposure_max, 7050123199999LL);
        assert_int_equal(r.visit_max, 7050123199999LL);
        assert_int_equal(r.visit_system, 2);
        assert_string_equal(r.class_name, want[i].class_name);
        assert_string_equal(bfs_camera_obs_prefix(c), want[i].prefix);
        assert_string_equal(bfs_camera_raw_formatter(c), want[i].formatter);
    }
}

static void test_detector_ids(void **state)
{
    (void)state;
    const bfs_camera *mc = cam("LSSTCam"), *cc = cam("LSSTComCam"), *at = cam("LATISS");
    assert_int_equal(bfs_camera_n_detectors(mc), 205);
    assert_int_equal(bfs_camera_n_detectors(cc), 9);
    assert_int_equal(bfs_camera_n_detectors(at), 1);
    assert_int_equal(bfs_camera_n_detectors(cam("LSSTCamSim")), 205);
    assert_int_equal(bfs_camera_n_detectors(cam("LSSTComCamSim")), 9);

    assert_int_equal(bfs_camera_detector_id(mc, "R22", "S11"), 94);
    assert_int_equal(bfs_camera_detector_id(mc, "R01", "S00"), 0);
    assert_int_equal(bfs_camera_detector_id(mc, "R10", "S02"), 29);
    assert_int_equal(bfs_camera_detector_id(mc, "R43", "S22"), 188);
    assert_int_equal(bfs_camera_detector_id(mc, "R00", "SG0"), 189);
    assert_int_equal(bfs_camera_detector_id(mc, "R00", "SW0"), 191);
    assert_int_equal(bfs_camera_detector_id(mc, "R44", "SW1"), 204);
    assert_int_equal(bfs_camera_detector_id(cam("LSSTCamSim"), "R22", "S11"), 94);
    assert_int_equal(bfs_camera_detector_id(cc, "R22", "S00"), 0);
    assert_int_equal(bfs_camera_detector_id(cc, "R22", "S22"), 8);
    assert_int_equal(bfs_camera_detector_id(cam("ComCamSim"), "R22", "S11"), 4);
    /* LATISS: one detector, whatever the headers say */
    assert_int_equal(bfs_camera_detector_id(at, "R00", "S00"), 0);
    assert_int_equal(bfs_camera_detector_id(at, NULL, NULL), 0);

    /* bad rafts and slots */
    assert_int_equal(bfs_camera_detector_id(mc, "R00", "S00"), -ENOENT); /* corner raft */
    assert_int_equal(bfs_camera_detector_id(mc, "R22", "SG0"), -ENOENT);
    assert_int_equal(bfs_camera_detector_id(mc, "R22", "S33"), -ENOENT);
    assert_int_equal(bfs_camera_detector_id(mc, "R99", "S11"), -ENOENT);
    assert_int_equal(bfs_camera_detector_id(mc, "r22", "s11"), -ENOENT);
    assert_int_equal(bfs_camera_detector_id(mc, "R22W", "SW0"), -ENOENT);
    assert_int_equal(bfs_camera_detector_id(mc, "", ""), -ENOENT);
    assert_int_equal(bfs_camera_detector_id(cc, "R21", "S00"), -ENOENT);
    assert_int_equal(bfs_camera_detector_id(cc, "RXX", "S00"), -ENOENT);
    assert_int_equal(bfs_camera_detector_id(mc, NULL, "S11"), -EINVAL);
    assert_int_equal(bfs_camera_detector_id(mc, "R22", NULL), -EINVAL);
    assert_int_equal(bfs_camera_detector_id(NULL, "R22", "S11"), -EINVAL);

    /* records: ids dense, SCIENCE before the corner sensors, and each one
     * found again from its raft and slot */
    for (int k = 0; k < NCAMERAS; k++) {
        const bfs_camera *c = cam(all_cameras[k]);
        int n = bfs_camera_n_detectors(c);
        for (int i = 0; i < n; i++) {
            bfs_detector_record d;
            assert_int_equal(bfs_camera_detector(c, i, &d), 0);
            assert_int_equal(d.id, i);
            assert_string_equal(d.instrument, all_cameras[k]);
            if (c == at)
                continue;
            assert_int_equal(bfs_camera_detector_id(c, d.raft, d.name_in_raft), i);
            char full[16];
            snprintf(full, sizeof full, "%s_%s", d.raft, d.name_in_raft);
            assert_string_equal(d.full_name, full);
            assert_string_equal(d.purpose, i < 189 ? "SCIENCE" : (i - 189) % 4 < 2 ? "GUIDER" : "WAVEFRONT");
        }
        bfs_detector_record d;
        assert_int_equal(bfs_camera_detector(c, n, &d), -ENOENT);
        assert_int_equal(bfs_camera_detector(c, -1, &d), -ENOENT);
        assert_null(bfs_camera_detector_type(c, n));
        assert_int_equal(bfs_camera_n_amplifiers(c, n), -ENOENT);
        assert_int_equal(bfs_camera_n_amplifiers(c, -1), -ENOENT);
        /* policy/cameraHeader.yaml: 16 amplifiers, 8 on a wavefront half-sensor */
        for (int i = 0; i < n; i++)
            assert_int_equal(bfs_camera_n_amplifiers(c, i),
                             strcmp(bfs_camera_detector_type(c, i), "ITL_WF") == 0 ? 8 : 16);
    }

    bfs_detector_record d;
    assert_int_equal(bfs_camera_detector(at, 0, &d), 0);
    assert_string_equal(d.full_name, "RXX_S00");
    assert_null(d.raft);
    assert_string_equal(d.name_in_raft, "RXX_S00");
    assert_string_equal(d.purpose, "SCIENCE");

    assert_string_equal(bfs_camera_detector_type(mc, 0), "ITL");
    assert_string_equal(bfs_camera_detector_type(mc, 94), "E2V");
    assert_string_equal(bfs_camera_detector_type(mc, 189), "ITL_G");
    assert_string_equal(bfs_camera_detector_type(mc, 204), "ITL_WF");
    assert_string_equal(bfs_camera_detector_type(at, 0), "ITL");
    assert_int_equal(bfs_camera_n_amplifiers(mc, 94), 16);
    assert_int_equal(bfs_camera_n_amplifiers(mc, 189), 16);
    assert_int_equal(bfs_camera_n_amplifiers(mc, 191), 8);
    assert_int_equal(bfs_camera_n_amplifiers(at, 0), 16);
    assert_int_equal(bfs_camera_n_amplifiers(NULL, 0), -ENOENT);
}

static void test_filters(void **state)
{
    (void)state;
    const bfs_camera *mc = cam("LSSTCam"), *cc = cam("LSSTComCam"), *at = cam("LATISS");
    assert_int_equal(bfs_camera_n_filters(mc), 276);
    assert_int_equal(bfs_camera_n_filters(cc), 15);
    assert_int_equal(bfs_camera_n_filters(at), 707);
    assert_int_equal(bfs_camera_n_filters(cam("LSSTCamSim")), 276);
    assert_int_equal(bfs_camera_n_filters(cam("LSSTComCamSim")), 15);

    static const struct {
        const char *camera, *physical_filter, *band; /* band NULL: not defined */
    } bands[] = {
        {"LSSTCam", "r_57", "r"},
        {"LSSTCam", "empty", "white"},
        {"LSSTCam", "SDSSg~ND_OD0.5", "g~nd"},
        {"LSSTCam", "ND_OD0.1", "white~nd"},
        {"LSSTCam", "HIGH", "white"},
        {"LSSTCam", "ph_5~uv", "u"},
        {"LSSTCam", "u_24~uv", "u"},
        {"LSSTCam", "u_24~blue", NULL}, /* a CCOB filter of another band */
        {"LSSTCam", "u", NULL},         /* generic filters: PhoSim/UCDCam only */
        {"LSSTCam", "u_05", NULL},
        {"LSSTCamSim", "ellipses~ND_OD4.0", "ellipses~nd"},
        {"LSSTComCam", "OG590_2_5mm", "OG590"},
        {"LSSTComCam", "u_05", "u"},
        {"LSSTComCamSim", "z_02", "z"},
        {"LSSTComCam", "r_57", NULL},
        {"LATISS", "SDSSi~ND_OD0.5", NULL},
        {"LATISS", "empty~SDSSu_65mm", "u"},
        {"LATISS", "SDSSu_65mm~holo4_003", "u"},
        {"LATISS", "BG40~empty", "g"},
        {"LATISS", "diffuser", "diffuser"},
        {"LATISS", "diffuser~ronchi90lpmm", NULL}, /* never with a grating */
        {"LATISS", "BG40~SDSSu_65mm", NULL},       /* two filters at once */
        {"LATISS", "EMPTY", NULL},                 /* exact match */
    };
    for (size_t i = 0; i < sizeof bands / sizeof *bands; i++) {
        const char *got = bfs_camera_band(cam(bands[i].camera), bands[i].physical_filter);
        if (bands[i].band)
            assert_string_equal(got, bands[i].band);
        else
            assert_null(got);
    }
    assert_null(bfs_camera_band(mc, NULL));

    /* physical_filter is a registry key: no name twice */
    for (int k = 0; k < NCAMERAS; k++) {
        const bfs_camera *c = cam(all_cameras[k]);
        int n = bfs_camera_n_filters(c);
        for (int i = 0; i < n; i++) {
            const char *pi, *bi;
            bfs_camera_filter(c, i, &pi, &bi);
            assert_non_null(pi);
            assert_non_null(bi);
            assert_string_equal(bfs_camera_band(c, pi), bi);
            for (int j = 0; j < i; j++) {
                const char *pj;
                bfs_camera_filter(c, j, &pj, NULL);
                assert_string_not_equal(pi, pj);
            }
        }
        const char *p = "x", *b = "x";
        bfs_camera_filter(c, n, &p, &b);
        assert_null(p);
        assert_null(b);
    }
}

/* ---- the fixture tables ------------------------------------------------------ */

#define MAXF 12

struct csv {
    char *text;
    char **lines; /* data lines, header removed, CR/LF stripped */
    int n;
};

/* Read ../shared/fixtures/cameras/<name>.csv; false when it is not there. */
static bool csv_read(const char *name, struct csv *t)
{
    const char *shared = getenv("BFS_SHARED");
    char path[1024];
    snprintf(path, sizeof path, "%s/fixtures/cameras/%s.csv", shared ? shared : "../shared", name);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    memset(t, 0, sizeof *t);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    bool header = true;
    while ((len = getline(&line, &cap, f)) >= 0) {
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (header) {
            header = false;
            continue;
        }
        t->lines = realloc(t->lines, (size_t)(t->n + 1) * sizeof *t->lines);
        t->lines[t->n++] = strdup(line);
    }
    free(line);
    fclose(f);
    return true;
}

static void csv_free(struct csv *t)
{
    for (int i = 0; i < t->n; i++)
        free(t->lines[i]);
    free(t->lines);
}

/* Split line (modified) at commas into at most MAXF fields; the count. */
static int split(char *line, char *fields[MAXF])
{
    int n = 0;
    char *s = line;
    while (n < MAXF) {
        fields[n++] = s;
        char *comma = strchr(s, ',');
        if (!comma)
            break;
        *comma = '\0';
        s = comma + 1;
    }
    return n;
}

/* Columns: detector_id, full_name, raft, name_in_raft, purpose, serial,
 * raft_serial, detector_type, policy_file. */
static void check_detectors(const char *camera, const char *table)
{
    struct csv t;
    if (!csv_read(table, &t)) {
        print_message("fixture %s.csv missing\n", table);
        skip();
    }
    const bfs_camera *c = cam(camera);
    assert_int_equal(bfs_camera_n_detectors(c), t.n);
    for (int i = 0; i < t.n; i++) {
        char *f[MAXF];
        assert_int_equal(split(t.lines[i], f), 9);
        bfs_detector_record d;
        int id = atoi(f[0]);
        assert_int_equal(bfs_camera_detector(c, id, &d), 0);
        assert_int_equal(d.id, id);
        assert_int_equal(id, i); /* the tables are in id order */
        assert_string_equal(d.full_name, f[1]);
        if (f[2][0])
            assert_string_equal(d.raft, f[2]);
        else
            assert_null(d.raft);
        assert_string_equal(d.name_in_raft, f[3]);
        assert_string_equal(d.purpose, f[4]);
        assert_string_equal(bfs_camera_detector_type(c, id), f[7]);
    }
    csv_free(&t);
}

static void check_filters(const char *camera, const char *table)
{
    struct csv t;
    if (!csv_read(table, &t)) {
        print_message("fixture %s.csv missing\n", table);
        skip();
    }
    const bfs_camera *c = cam(camera);
    assert_int_equal(bfs_camera_n_filters(c), t.n);
    for (int i = 0; i < t.n; i++) {
        char *f[MAXF];
        assert_int_equal(split(t.lines[i], f), 2);
        const char *pf, *band;
        bfs_camera_filter(c, i, &pf, &band);
        if (strcmp(pf, f[0]) || strcmp(band, f[1]))
            print_error("%s row %d: got %s,%s want %s,%s\n", table, i + 2, pf, band, f[0], f[1]);
        assert_string_equal(pf, f[0]);
        assert_string_equal(band, f[1]);
    }
    csv_free(&t);
}

static void test_fixture_detectors(void **state)
{
    (void)state;
    check_detectors("LSSTCam", "LSSTCam");
    check_detectors("LSSTComCam", "LSSTComCam");
    check_detectors("LATISS", "LATISS");
    check_detectors("LSSTCamSim", "LSSTCam");
    check_detectors("LSSTComCamSim", "LSSTComCam");
}

static void test_fixture_filters(void **state)
{
    (void)state;
    check_filters("LSSTCam", "LSSTCam-filters");
    check_filters("LSSTComCam", "LSSTComCam-filters");
    check_filters("LATISS", "LATISS-filters");
    check_filters("LSSTCamSim", "LSSTCam-filters");
    check_filters("LSSTComCamSim", "LSSTComCam-filters");
}

/* ---- registering -------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb, (void)type, (void)ftw;
    return remove(path);
}

static void register_all(const char *dir)
{
    bfs_registry *reg = NULL;
    char *msg = NULL;
    assert_int_equal(bfs_registry_open(dir, BFS_REG_WRITE, &reg, &msg), 0);
    assert_int_equal(bfs_registry_begin(reg), 0);
    for (int k = 0; k < NCAMERAS; k++)
        assert_int_equal(bfs_camera_register(reg, cam(all_cameras[k])), 0);
    assert_int_equal(bfs_registry_commit(reg), 0);
    assert_int_equal(bfs_camera_register(NULL, cam("LSSTCam")), -EINVAL);
    assert_int_equal(bfs_camera_register(reg, NULL), -EINVAL);
    bfs_registry_close(reg);
}

static void test_register(void **state)
{
    (void)state;
    if (!have_program("sqlite3"))
        skip();
    char tmp[] = "/tmp/bfs_cameraXXXXXX";
    assert_non_null(mkdtemp(tmp));
    char dir[64], db[96];
    snprintf(dir, sizeof dir, "%s/repo", tmp);
    snprintf(db, sizeof db, "%s/gen3.sqlite3", dir);
    char *msg = NULL;
    assert_int_equal(bfs_registry_init(dir, &msg), 0);

    for (int round = 0; round < 2; round++) { /* the second adds nothing */
        register_all(dir);
        expect_rows(db,
                    "SELECT name, visit_max, visit_system, exposure_max, detector_max, class_name"
                    " FROM instrument ORDER BY name;",
                    "LATISS|7050123199999|2|7050123199999|1|lsst.obs.lsst.Latiss\n"
                    "LSSTCam|7050123199999|2|7050123199999|1000|lsst.obs.lsst.LsstCam\n"
                    "LSSTCamSim|7050123199999|2|7050123199999|1000|lsst.obs.lsst.LsstCamSim\n"
                    "LSSTComCam|7050123199999|2|7050123199999|1000|lsst.obs.lsst.LsstComCam\n"
                    "LSSTComCamSim|7050123199999|2|7050123199999|1000|lsst.obs.lsst.LsstComCamSim");
        expect_rows(db,
                    "SELECT instrument, count(*), min(id), max(id) FROM detector"
                    " GROUP BY instrument ORDER BY instrument;",
                    "LATISS|1|0|0\nLSSTCam|205|0|204\nLSSTCamSim|205|0|204\n"
                    "LSSTComCam|9|0|8\nLSSTComCamSim|9|0|8");
        expect_rows(db,
                    "SELECT instrument, count(*) FROM physical_filter"
                    " GROUP BY instrument ORDER BY instrument;",
                    "LATISS|707\nLSSTCam|276\nLSSTCamSim|276\nLSSTComCam|15\nLSSTComCamSim|15");
        expect_rows(db,
                    "SELECT id, full_name, quote(raft), name_in_raft, purpose FROM detector"
                    " WHERE instrument = 'LATISS'"
                    " OR (instrument = 'LSSTCam' AND id IN (94, 189, 204)) ORDER BY instrument, id;",
                    "0|RXX_S00|NULL|RXX_S00|SCIENCE\n94|R22_S11|'R22'|S11|SCIENCE\n"
                    "189|R00_SG0|'R00'|SG0|GUIDER\n204|R44_SW1|'R44'|SW1|WAVEFRONT");
        expect_rows(db,
                    "SELECT band FROM physical_filter"
                    " WHERE instrument = 'LATISS' AND name = 'empty~SDSSu_65mm';",
                    "u");
    }
    nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_instrument_records),
        cmocka_unit_test(test_detector_ids),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_fixture_detectors),
        cmocka_unit_test(test_fixture_filters),
        cmocka_unit_test(test_register),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
