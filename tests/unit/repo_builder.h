/*
 * repo_builder.h - a small repository holding every collection type, built
 * with the registry write API only (no ../shared fixture), for the read and
 * tree unit tests.  Included by one test file each, so everything is static.
 *
 * The repository (instrument LSSTCam, detectors 0..3 named R22_S00..R22_S03,
 * exposures 2025041500001..3 with obs_id MC_O_20250415_00000N; instrument
 * LSSTComCam with one detector, 7, also named R22_S01, and no datasets):
 *
 *   A            RUN    raw (det, exp) (0,1) (1,1) (1,2) (2,2)
 *   B            RUN    raw (1,1) (1,2) (3,3)      -- (1,1) (1,2) also in A
 *   A/raw        RUN    empty: a child collection named like A's dataset type
 *   tags/50%     TAGGED raw A(0,1) and B(1,2)
 *   chain        CHAINED [B, A]
 *   nested       CHAINED [chain, tags/50%]
 *   calib/run1   RUN    bias det 0, det 1
 *   calib/run2   RUN    bias det 1
 *   calib        CALIBRATION  run1 det 0 [T0,T1), run1 det 1 [T0,T1),
 *                             run2 det 1 [T1, unbounded)
 *   defaults     CHAINED [nested, calib]
 *   flats        RUN    flat (det, physical_filter) (0,r_57) (0,i/39) (1,r_57)
 *
 * Datastore files are written under the repository with RB_SIZE bytes each
 * (byte i of a file is (size + i) & 0xff), except B's raw (3,3), which is
 * left missing on purpose.
 */
#ifndef REPO_BUILDER_H
#define REPO_BUILDER_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "registry.h"

#define RB_NCOLL 11
/* 2025-01-01T00:00:00Z and 2025-02-01T00:00:00Z on the TAI scale (+37 s). */
#define RB_T0 (INT64_C(1735689637) * 1000000000)
#define RB_T1 (INT64_C(1738368037) * 1000000000)
#define RB_T0_TEXT "20250101T000000Z"
#define RB_T1_TEXT "20250201T000000Z"

/* Every collection name, sorted as the catalog sorts them (strcmp). */
static const char *const rb_collections[RB_NCOLL] = {
    "A", "A/raw", "B", "calib", "calib/run1", "calib/run2", "chain", "defaults", "flats",
    "nested", "tags/50%",
};

struct rb_raw {
    const char *run;
    int det, exp; /* exposure 202504150000<exp> */
};

static const struct rb_raw rb_raws[] = {
    {"A", 0, 1}, {"A", 1, 1}, {"A", 1, 2}, {"A", 2, 2},
    {"B", 1, 1}, {"B", 1, 2}, {"B", 3, 3},
};
#define RB_NRAW (int)(sizeof rb_raws / sizeof rb_raws[0])
#define RB_MISSING_RAW 6 /* B (3,3): no datastore file */

struct rb_bias {
    const char *run;
    int det;
    int64_t begin, end;
};

static const struct rb_bias rb_biases[] = {
    {"calib/run1", 0, RB_T0, RB_T1},
    {"calib/run1", 1, RB_T0, RB_T1},
    {"calib/run2", 1, RB_T1, BFS_TIMESPAN_UNBOUNDED_END},
};
#define RB_NBIAS 3

struct rb_flat {
    int det;
    const char *filter;
};

static const struct rb_flat rb_flats[] = {{0, "r_57"}, {0, "i/39"}, {1, "r_57"}};
#define RB_NFLAT 3

struct rb_repo {
    char tmp[64];  /* mkdtemp root, removed by rb_destroy */
    char dir[96];  /* the repository */
    char raw_id[RB_NRAW][33];
    char bias_id[RB_NBIAS][33];
    char flat_id[RB_NFLAT][33];
    char raw_path[RB_NRAW][64];
    int64_t raw_size[RB_NRAW];
};

static int rb_rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb, (void)type, (void)ftw;
    return remove(path);
}

static void rb_destroy(struct rb_repo *r)
{
    if (r->tmp[0])
        nftw(r->tmp, rb_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(r);
}

/* Write a datastore file of size bytes at root + rel, creating directories. */
static void rb_write_file(const char *root, const char *rel, int64_t size)
{
    char path[512];
    snprintf(path, sizeof path, "%s%s", root, rel);
    for (char *p = path + strlen(root); *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0755);
            *p = '/';
        }
    }
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (int64_t i = 0; i < size; i++)
        fputc((int)((size + i) & 0xff), f);
    assert_int_equal(fclose(f), 0);
}

static void rb_add(bfs_registry *reg, const char *dtype, const char *run, const char *const *names,
                   const char *const *values, int n, const char *path, int64_t size, char id[33])
{
    bfs_new_dataset d = {.dataset_type = dtype, .run = run, .dim_names = names,
                         .dim_values = values, .ndims = n, .path = path,
                         .formatter = "lsst.daf.butler.formatters.fits.FitsExposureFormatter",
                         .file_size = size};
    assert_int_equal(bfs_registry_add_dataset(reg, &d, id), 0);
    rb_write_file(bfs_registry_datastore_root(reg), path, size);
}

/* Create the repository described at the top in a new temp dir. */
static struct rb_repo *rb_build(void)
{
    struct rb_repo *r = calloc(1, sizeof *r);
    assert_non_null(r);
    snprintf(r->tmp, sizeof r->tmp, "/tmp/bfs_rbXXXXXX");
    assert_non_null(mkdtemp(r->tmp));
    snprintf(r->dir, sizeof r->dir, "%s/repo", r->tmp);
    char *msg = NULL;
    assert_int_equal(bfs_registry_init(r->dir, &msg), 0);

    bfs_registry *reg = NULL;
    assert_int_equal(bfs_registry_open(r->dir, BFS_REG_WRITE, &reg, &msg), 0);
    assert_int_equal(bfs_registry_begin(reg), 0);

    bfs_instrument_record ins = {.name = "LSSTCam", .visit_max = 7050123199999,
                                 .exposure_max = 7050123199999, .detector_max = 1000,
                                 .visit_system = 2, .class_name = "lsst.obs.lsst.LsstCam"};
    assert_int_equal(bfs_registry_add_instrument(reg, &ins), 0);
    for (int d = 0; d < 4; d++) {
        char full[16], nir[8];
        snprintf(full, sizeof full, "R22_S0%d", d);
        snprintf(nir, sizeof nir, "S0%d", d);
        bfs_detector_record det = {.instrument = "LSSTCam", .id = d, .full_name = full,
                                   .raft = "R22", .name_in_raft = nir, .purpose = "SCIENCE"};
        assert_int_equal(bfs_registry_add_detector(reg, &det), 0);
    }
    /* a second instrument whose detector full_name R22_S01 repeats LSSTCam's:
     * that alias is unique only once the instrument is known */
    bfs_instrument_record ins2 = ins;
    ins2.name = "LSSTComCam";
    ins2.class_name = "lsst.obs.lsst.LsstComCam";
    assert_int_equal(bfs_registry_add_instrument(reg, &ins2), 0);
    bfs_detector_record det2 = {.instrument = "LSSTComCam", .id = 7, .full_name = "R22_S01",
                                .raft = "R22", .name_in_raft = "S01", .purpose = "SCIENCE"};
    assert_int_equal(bfs_registry_add_detector(reg, &det2), 0);
    assert_int_equal(bfs_registry_add_physical_filter(reg, "LSSTCam", "r_57", "r"), 0);
    assert_int_equal(bfs_registry_add_physical_filter(reg, "LSSTCam", "i/39", "i"), 0);
    for (int e = 1; e <= 3; e++) {
        char obs[32], group[32];
        snprintf(obs, sizeof obs, "MC_O_20250415_00000%d", e);
        snprintf(group, sizeof group, "2025-04-16T03:11:4%d.000", e);
        int64_t begin = INT64_C(1744773139000000000) + e * INT64_C(60000000000);
        bfs_exposure_record x = {
            .instrument = "LSSTCam", .id = 2025041500000 + e, .obs_id = obs,
            .physical_filter = "r_57", .group = group, .day_obs = 20250415, .seq_num = e,
            .exposure_time = 30.0, .dark_time = 30.9, .observation_type = "science",
            .observation_reason = "test", .target_name = "t", .science_program = "p",
            .tracking_ra = NAN, .tracking_dec = NAN, .sky_angle = NAN, .azimuth = NAN,
            .zenith_angle = NAN, .can_see_sky = true, .timespan_begin = begin,
            .timespan_end = begin + INT64_C(30000000000)};
        assert_int_equal(bfs_registry_add_exposure(reg, &x), 0);
    }

    static const char *const raw_dims[] = {"instrument", "detector", "exposure"};
    static const char *const bias_dims[] = {"instrument", "detector"};
    static const char *const flat_dims[] = {"instrument", "detector", "physical_filter"};
    assert_int_equal(bfs_registry_add_dataset_type(reg, "raw", "Exposure", raw_dims, 3, false), 0);
    assert_int_equal(bfs_registry_add_dataset_type(reg, "bias", "ExposureF", bias_dims, 2, true), 0);
    assert_int_equal(bfs_registry_add_dataset_type(reg, "flat", "ExposureF", flat_dims, 3, false), 0);

    /* RUNs both ways: add_run and add_collection(RUN) make the same rows */
    assert_int_equal(bfs_registry_add_run(reg, "A", NULL), 0);
    assert_int_equal(bfs_registry_add_collection(reg, "B", BFS_COLL_RUN, "run B", NULL), 0);
    assert_int_equal(bfs_registry_add_run(reg, "A/raw", NULL), 0);
    assert_int_equal(bfs_registry_add_run(reg, "calib/run1", NULL), 0);
    assert_int_equal(bfs_registry_add_collection(reg, "calib/run2", BFS_COLL_RUN, NULL, NULL), 0);
    assert_int_equal(bfs_registry_add_collection(reg, "flats", BFS_COLL_RUN, NULL, NULL), 0);
    assert_int_equal(bfs_registry_add_collection(reg, "tags/50%", BFS_COLL_TAGGED, NULL, NULL), 0);
    assert_int_equal(bfs_registry_add_collection(reg, "chain", BFS_COLL_CHAINED, "B before A", NULL), 0);
    assert_int_equal(bfs_registry_add_collection(reg, "nested", BFS_COLL_CHAINED, NULL, NULL), 0);
    assert_int_equal(bfs_registry_add_collection(reg, "defaults", BFS_COLL_CHAINED, NULL, NULL), 0);
    assert_int_equal(bfs_registry_add_collection(reg, "calib", BFS_COLL_CALIBRATION, NULL, NULL), 0);

    for (int i = 0; i < RB_NRAW; i++) {
        const struct rb_raw *x = &rb_raws[i];
        char det[8], exp[16];
        snprintf(det, sizeof det, "%d", x->det);
        snprintf(exp, sizeof exp, "202504150000%d", x->exp);
        const char *values[] = {"LSSTCam", det, exp};
        snprintf(r->raw_path[i], sizeof r->raw_path[i], "%s/raw/raw_%d_%s.fits", x->run, x->det, exp);
        r->raw_size[i] = (x->run[0] == 'A' ? 100 : 200) + 10 * x->det + x->exp;
        bfs_new_dataset d = {.dataset_type = "raw", .run = x->run, .dim_names = raw_dims,
                             .dim_values = values, .ndims = 3, .path = r->raw_path[i],
                             .formatter = "lsst.obs.lsst.rawFormatter.LsstCamRawFormatter",
                             .file_size = r->raw_size[i]};
        assert_int_equal(bfs_registry_add_dataset(reg, &d, r->raw_id[i]), 0);
        if (i != RB_MISSING_RAW)
            rb_write_file(bfs_registry_datastore_root(reg), r->raw_path[i], r->raw_size[i]);
    }
    for (int i = 0; i < RB_NBIAS; i++) {
        char det[8], path[64];
        snprintf(det, sizeof det, "%d", rb_biases[i].det);
        snprintf(path, sizeof path, "%s/bias/bias_%d.fits", rb_biases[i].run, rb_biases[i].det);
        const char *values[] = {"LSSTCam", det};
        rb_add(reg, "bias", rb_biases[i].run, bias_dims, values, 2, path, 300 + i, r->bias_id[i]);
    }
    for (int i = 0; i < RB_NFLAT; i++) {
        char det[8], path[64];
        snprintf(det, sizeof det, "%d", rb_flats[i].det);
        snprintf(path, sizeof path, "flats/flat/flat_%d_%d.fits", rb_flats[i].det, i);
        const char *values[] = {"LSSTCam", det, rb_flats[i].filter};
        rb_add(reg, "flat", "flats", flat_dims, values, 3, path, 400 + i, r->flat_id[i]);
    }

    assert_int_equal(bfs_registry_associate(reg, "tags/50%", r->raw_id[0]), 0); /* A (0,1) */
    assert_int_equal(bfs_registry_associate(reg, "tags/50%", r->raw_id[5]), 0); /* B (1,2) */
    static const char *const chain[] = {"B", "A"};
    static const char *const nested[] = {"chain", "tags/50%"};
    static const char *const defaults[] = {"nested", "calib"};
    assert_int_equal(bfs_registry_set_chain(reg, "chain", chain, 2), 0);
    assert_int_equal(bfs_registry_set_chain(reg, "nested", nested, 2), 0);
    assert_int_equal(bfs_registry_set_chain(reg, "defaults", defaults, 2), 0);
    for (int i = 0; i < RB_NBIAS; i++)
        assert_int_equal(bfs_registry_certify(reg, "calib", r->bias_id[i], rb_biases[i].begin,
                                              rb_biases[i].end), 0);

    assert_int_equal(bfs_registry_commit(reg), 0);
    bfs_registry_close(reg);
    return r;
}

static bfs_registry *rb_open(const struct rb_repo *r, int flags)
{
    bfs_registry *reg = NULL;
    char *msg = NULL;
    int rc = bfs_registry_open(r->dir, flags, &reg, &msg);
    if (rc)
        print_error("open %s: %s\n", r->dir, msg ? msg : "");
    free(msg);
    assert_int_equal(rc, 0);
    return reg;
}

#endif
