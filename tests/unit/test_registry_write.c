/*
 * test_registry_write.c - bfs_registry_init and the registry write API
 * (registry/schema.c, registry/write.c).
 *
 * Tests may not include sqlite3.h (only registry/ does), so rows are checked
 * from the outside with the sqlite3 command-line shell, and the schema is
 * compared with a registry the Python Butler made (the
 * prompt_processing_central fixture) by registry_schema_compare.py next to
 * this file.  Expected dataset ids were computed independently with
 * Python's uuid.uuid5 over the documented daf_butler string.
 */
#include <errno.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
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

#include "registry.h"

/* ---- helpers ------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb, (void)type, (void)ftw;
    return remove(path);
}

static void rm_tree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

struct repo {
    char tmp[64];
    char dir[128];
    char db[160];
};

static int repo_setup(void **state)
{
    struct repo *r = calloc(1, sizeof *r);
    snprintf(r->tmp, sizeof r->tmp, "/tmp/bfs_regwXXXXXX");
    if (!mkdtemp(r->tmp)) {
        free(r);
        return -1;
    }
    /* a directory that does not exist yet: init must create it */
    snprintf(r->dir, sizeof r->dir, "%s/repo/main", r->tmp);
    snprintf(r->db, sizeof r->db, "%s/gen3.sqlite3", r->dir);
    *state = r;
    return 0;
}

static int repo_teardown(void **state)
{
    struct repo *r = *state;
    rm_tree(r->tmp);
    free(r);
    return 0;
}

static const char *raw_dims[] = {"instrument", "detector", "exposure"};
#define RAW_ID "d353dd80923b5c78879fadce87a5963e"
#define PACKAGES_ID "53581b25b0a35d3c94c9d45f3fd50455"
#define FLAT_ID "842bec942d5258c6aa37fc4faef6e486"

/* Dataset types covering the kinds of dimension groups: governor + int
 * dimensions, a calibration, the empty group, a view dimension (band)
 * with the skymap governor, and a skypix dimension. */
static void add_dataset_types(bfs_registry *reg)
{
    const char *flat_dims[] = {"physical_filter", "detector"}; /* instrument is implied by both */
    const char *coadd_dims[] = {"patch", "band"};
    const char *refcat_dims[] = {"htm7"};
    assert_int_equal(bfs_registry_add_dataset_type(reg, "raw", "Exposure", raw_dims, 3, false), 0);
    assert_int_equal(bfs_registry_add_dataset_type(reg, "flat", "ExposureF", flat_dims, 2, true), 0);
    assert_int_equal(bfs_registry_add_dataset_type(reg, "packages", "Packages", NULL, 0, false), 0);
    assert_int_equal(bfs_registry_add_dataset_type(reg, "template_coadd", "ExposureF",
                                                   coadd_dims, 2, false), 0);
    assert_int_equal(bfs_registry_add_dataset_type(reg, "the_monster", "SimpleCatalog",
                                                   refcat_dims, 1, false), 0);
}

static void populate(const char *dir)
{
    bfs_registry *reg = NULL;
    char *msg = NULL;
    int rc = bfs_registry_open(dir, BFS_REG_WRITE, &reg, &msg);
    if (rc)
        print_error("open: %s\n", msg ? msg : "");
    assert_int_equal(rc, 0);

    bfs_instrument_record ins = {.name = "LSSTCam", .visit_max = 7050123199999,
                                 .exposure_max = 7050123199999, .detector_max = 1000,
                                 .visit_system = 2, .class_name = "lsst.obs.lsst.LsstCam"};
    assert_int_equal(bfs_registry_add_instrument(reg, &ins), 0);
    assert_int_equal(bfs_registry_add_instrument(reg, &ins), 0); /* identical again: fine */
    bfs_instrument_record other = ins;
    other.class_name = "lsst.obs.lsst.Other";
    assert_int_equal(bfs_registry_add_instrument(reg, &other), -EEXIST);

    bfs_detector_record det = {.instrument = "LSSTCam", .id = 94, .full_name = "R22_S11",
                               .raft = "R22", .name_in_raft = "S11", .purpose = "SCIENCE"};
    assert_int_equal(bfs_registry_add_detector(reg, &det), 0);
    assert_int_equal(bfs_registry_add_detector(reg, &det), 0);
    bfs_detector_record dup = det;
    dup.id = 95;
    assert_int_equal(bfs_registry_add_detector(reg, &dup), -EEXIST); /* full_name is unique */

    assert_int_equal(bfs_registry_add_physical_filter(reg, "LSSTCam", "r_57", "r"), 0);
    assert_int_equal(bfs_registry_add_physical_filter(reg, "LSSTCam", "r_57", "r"), 0);
    assert_int_equal(bfs_registry_add_physical_filter(reg, "LSSTCam", "r_57", "g"), -EEXIST);
    assert_string_equal(bfs_registry_conflict(), "band");

    bfs_exposure_record exp = {
        .instrument = "LSSTCam", .id = 2025041500060, .obs_id = "MC_O_20250415_000060",
        .physical_filter = "r_57", .group = "2025-04-16T03:11:42.000", .day_obs = 20250415,
        .seq_num = 60, .exposure_time = 30.0, .dark_time = 30.9,
        .observation_type = "science", .observation_reason = "field_survey_science",
        .target_name = "Rubin_SV", .science_program = "BLOCK-365",
        .tracking_ra = 225.8, .tracking_dec = -38.6, .sky_angle = NAN, .azimuth = NAN,
        .zenith_angle = 20.75, .has_simulated = false, .can_see_sky = true,
        .timespan_begin = 1744773139000000000, .timespan_end = 1744773169000000000};
    assert_int_equal(bfs_registry_add_exposure(reg, &exp), 0);
    assert_int_equal(bfs_registry_add_exposure(reg, &exp), 0);
    bfs_exposure_record exp2 = exp;
    exp2.seq_num = 61;
    assert_int_equal(bfs_registry_add_exposure(reg, &exp2), -EEXIST);
    assert_string_equal(bfs_registry_conflict(), "seq_num, seq_start, seq_end"); /* what differs is named */
    exp2.timespan_end += 1000000000;
    exp2.observation_reason = "engineering";
    assert_int_equal(bfs_registry_add_exposure(reg, &exp2), -EEXIST);
    assert_string_equal(bfs_registry_conflict(), "observation_reason, seq_num, seq_start, seq_end, timespan");
    assert_int_equal(bfs_registry_add_exposure(reg, &exp), 0);
    assert_string_equal(bfs_registry_conflict(), "");
    bfs_exposure_record exp3 = exp;
    exp3.id = 2025041500099;
    exp3.obs_id = "MC_O_20250415_000099";
    exp3.physical_filter = "no_such_filter";
    assert_int_equal(bfs_registry_add_exposure(reg, &exp3), -ENOENT);

    int64_t run = 0, again = 0;
    assert_int_equal(bfs_registry_add_run(reg, "LSSTCam/raw/all", &run), 0);
    assert_int_equal(bfs_registry_add_run(reg, "LSSTCam/raw/all", &again), 0);
    assert_true(run > 0);
    assert_int_equal(run, again);

    add_dataset_types(reg);
    add_dataset_types(reg); /* identical again: fine, no new tables */
    assert_int_equal(bfs_registry_add_dataset_type(reg, "raw", "ExposureF", raw_dims, 3, false),
                     -EEXIST);
    assert_int_equal(bfs_registry_add_dataset_type(reg, "raw", "Exposure", raw_dims, 2, false),
                     -EEXIST);
    const char *bogus[] = {"instrument", "nonsense"};
    assert_int_equal(bfs_registry_add_dataset_type(reg, "bad", "X", bogus, 2, false), -EINVAL);

    /* Values in another order and a non-canonical integer: same id. */
    const char *names[] = {"exposure", "instrument", "detector"};
    const char *values[] = {"2025041500060", "LSSTCam", "094"};
    bfs_new_dataset ds = {
        .dataset_type = "raw", .run = "LSSTCam/raw/all", .dim_names = names,
        .dim_values = values, .ndims = 3,
        .path = "LSSTCam/20250415/MC_O_20250415_000060/MC_O_20250415_000060_R22_S11.fits",
        .formatter = "lsst.obs.lsst.rawFormatter.LsstCamRawFormatter", .file_size = 16000000};
    char id[33] = "";
    assert_int_equal(bfs_registry_add_dataset(reg, &ds, id), 0);
    assert_string_equal(id, RAW_ID);
    assert_int_equal(bfs_registry_add_dataset(reg, &ds, id), -EEXIST);

    /* A dataset whose exposure record is missing is refused by the
     * foreign keys and leaves nothing behind. */
    const char *missing[] = {"2025041500061", "LSSTCam", "94"};
    ds.dim_values = missing;
    assert_int_equal(bfs_registry_add_dataset(reg, &ds, id), -ENOENT);
    ds.dim_values = values;

    /* A dataId lacking a required dimension. */
    ds.ndims = 2;
    assert_int_equal(bfs_registry_add_dataset(reg, &ds, id), -EINVAL);

    /* Explicit transaction: rolled back, nothing stays. */
    assert_int_equal(bfs_registry_begin(reg), 0);
    assert_int_equal(bfs_registry_add_run(reg, "LSSTCam/runs/rolled_back", NULL), 0);
    bfs_registry_rollback(reg);

    /* Explicit transaction: committed, including a failed call inside. */
    int64_t run2 = 0;
    assert_int_equal(bfs_registry_begin(reg), 0);
    assert_int_equal(bfs_registry_add_run(reg, "LSSTCam/runs/x", &run2), 0);
    bfs_new_dataset pk = {.dataset_type = "packages", .run = "LSSTCam/runs/x",
                          .path = "LSSTCam/runs/x/packages.yaml",
                          .formatter = "lsst.daf.butler.formatters.packages.PackagesFormatter",
                          .file_size = -1};
    assert_int_equal(bfs_registry_add_dataset(reg, &pk, id), 0);
    assert_string_equal(id, PACKAGES_ID);
    assert_int_equal(bfs_registry_add_dataset(reg, &pk, id), -EEXIST);
    assert_int_equal(bfs_registry_commit(reg), 0);

    bfs_registry_close(reg);
}

/* ---- tests ---------------------------------------------------------------- */

static void test_init_creates_repo(void **state)
{
    struct repo *r = *state;
    char *msg = NULL;
    assert_int_equal(bfs_registry_init(r->dir, &msg), 0);
    assert_null(msg);
    assert_int_equal(bfs_registry_init(r->dir, &msg), -EEXIST);
    assert_non_null(msg);
    assert_non_null(strstr(msg, "butler.yaml"));
    free(msg);

    bfs_registry *reg = NULL;
    assert_int_equal(bfs_registry_open(r->dir, BFS_REG_READONLY, &reg, &msg), 0);
    assert_int_equal(bfs_registry_universe_version(reg), 7);
    assert_string_equal(bfs_registry_universe_namespace(reg), "daf_butler");
    const bfs_dimension *ins = bfs_registry_dimension_by_name(reg, "instrument");
    const bfs_dimension *det = bfs_registry_dimension_by_name(reg, "detector");
    const bfs_dimension *exp = bfs_registry_dimension_by_name(reg, "exposure");
    const bfs_dimension *band = bfs_registry_dimension_by_name(reg, "band");
    assert_non_null(ins);
    assert_non_null(det);
    assert_non_null(exp);
    assert_non_null(band);
    assert_true(ins->index < det->index && det->index < exp->index);
    assert_int_equal(exp->type, BFS_KEY_INT);
    assert_string_equal(exp->key, "id");
    assert_int_equal(exp->n_alt, 1);
    assert_string_equal(exp->alt_keys[0], "obs_id");
    assert_int_equal(ins->type, BFS_KEY_STRING);
    assert_false(band->has_table);
    assert_true(det->has_table);
    assert_int_equal(bfs_registry_catalog(reg)->ncollections, 0);
    bfs_registry_close(reg);

    expect_rows(r->db, "SELECT table_name FROM opaque_meta;", "file_datastore_records");
    expect_rows(r->db, "SELECT count(*) FROM butler_attributes;", "13");
}

static void test_write_records(void **state)
{
    struct repo *r = *state;
    if (!have_program("sqlite3"))
        skip();
    char *msg = NULL;
    assert_int_equal(bfs_registry_init(r->dir, &msg), 0);
    populate(r->dir);

    expect_rows(r->db, "SELECT * FROM instrument;",
                "LSSTCam|7050123199999|2|7050123199999|1000|lsst.obs.lsst.LsstCam");
    expect_rows(r->db, "SELECT * FROM detector;", "LSSTCam|94|R22_S11|S11|R22|SCIENCE");
    expect_rows(r->db, "SELECT * FROM physical_filter;", "LSSTCam|r_57|r");
    expect_rows(r->db, "SELECT * FROM day_obs;",
                "LSSTCam|20250415|1744718400000000000|1744804800000000000");
    expect_rows(r->db, "SELECT * FROM \"group\";", "LSSTCam|2025-04-16T03:11:42.000");
    expect_rows(r->db,
                "SELECT instrument, id, day_obs, \"group\", physical_filter, obs_id, exposure_time,"
                " seq_num, seq_start, seq_end, sky_angle IS NULL, azimuth IS NULL, zenith_angle,"
                " has_simulated, can_see_sky, timespan_begin, timespan_end FROM exposure;",
                "LSSTCam|2025041500060|20250415|2025-04-16T03:11:42.000|r_57|MC_O_20250415_000060"
                "|30.0|60|60|60|1|1|20.75|0|1|1744773139000000000|1744773169000000000");

    expect_rows(r->db, "SELECT collection_id, name, type, doc IS NULL FROM collection ORDER BY 1;",
                "1|LSSTCam/raw/all|1|1\n2|LSSTCam/runs/x|1|1");
    expect_rows(r->db, "SELECT collection_id, host IS NULL FROM run ORDER BY 1;", "1|1\n2|1");

    expect_rows(r->db, "SELECT * FROM dataset_type ORDER BY id;",
                "1|raw|Exposure|1|dataset_tags_00000001|\n"
                "2|flat|ExposureF|2|dataset_tags_00000002|dataset_calibs_00000002\n"
                "3|packages|Packages|0|dataset_tags_00000000|\n"
                "4|template_coadd|ExposureF|3|dataset_tags_00000003|\n"
                "5|the_monster|SimpleCatalog|4|dataset_tags_00000004|");
    expect_rows(r->db, "SELECT id FROM dimension_graph_key;", "1\n2\n3\n4");
    expect_rows(r->db,
                "SELECT dimension_graph_id, group_concat(dimension_name, ',') FROM"
                " (SELECT * FROM dimension_graph_definition ORDER BY 1, 2) GROUP BY 1;",
                "1|detector,exposure,instrument\n"
                "2|detector,instrument,physical_filter\n"
                "3|band,patch,skymap,tract\n"
                "4|htm7");
    /* tag table columns follow universe order */
    expect_rows(r->db, "SELECT group_concat(name, ',') FROM pragma_table_info('dataset_tags_00000003');",
                "dataset_type_id,dataset_id,collection_id,band,skymap,tract,patch");

    expect_rows(r->db, "SELECT id, dataset_type_id, run_id, ingest_date > 1700000000000000000"
                       " FROM dataset ORDER BY run_id;",
                RAW_ID "|1|1|1\n" PACKAGES_ID "|3|2|1");
    expect_rows(r->db, "SELECT * FROM dataset_tags_00000001;",
                "1|" RAW_ID "|1|LSSTCam|94|2025041500060");
    expect_rows(r->db, "SELECT typeof(detector), typeof(exposure) FROM dataset_tags_00000001;",
                "integer|integer");
    expect_rows(r->db, "SELECT * FROM dataset_tags_00000000;", "3|" PACKAGES_ID "|2");
    expect_rows(r->db, "SELECT * FROM file_datastore_records ORDER BY file_size;",
                PACKAGES_ID "|LSSTCam/runs/x/packages.yaml|"
                "lsst.daf.butler.formatters.packages.PackagesFormatter|Packages|__NULL_STRING__||-1\n"
                RAW_ID "|LSSTCam/20250415/MC_O_20250415_000060/MC_O_20250415_000060_R22_S11.fits|"
                "lsst.obs.lsst.rawFormatter.LsstCamRawFormatter|Exposure|__NULL_STRING__||16000000");
    expect_rows(r->db, "SELECT * FROM dataset_location ORDER BY dataset_id;",
                "FileDatastore@<butlerRoot>|" PACKAGES_ID "\n"
                "FileDatastore@<butlerRoot>|" RAW_ID);
    expect_rows(r->db, "SELECT * FROM collection_summary_dataset_type ORDER BY 1;", "1|1\n2|3");
    expect_rows(r->db, "SELECT * FROM collection_summary_instrument;", "1|LSSTCam");
    expect_rows(r->db, "PRAGMA foreign_key_check;", "");

    /* Read back through the query API. */
    bfs_registry *reg = NULL;
    assert_int_equal(bfs_registry_open(r->dir, BFS_REG_READONLY, &reg, &msg), 0);
    const bfs_catalog *cat = bfs_registry_catalog(reg);
    const bfs_collection *c = bfs_catalog_collection(cat, "LSSTCam/raw/all");
    const bfs_dataset_type *dt = bfs_catalog_dataset_type(cat, "raw");
    assert_non_null(c);
    assert_non_null(dt);
    assert_null(bfs_catalog_collection(cat, "LSSTCam/runs/rolled_back"));
    assert_int_equal(dt->ndims, 3);
    assert_string_equal(dt->dims[0]->name, "instrument");
    assert_string_equal(dt->dims[1]->name, "detector");
    assert_string_equal(dt->dims[2]->name, "exposure");
    const bfs_dataset_type *flat = bfs_catalog_dataset_type(cat, "flat");
    assert_non_null(flat);
    assert_string_equal(flat->calibs_table, "dataset_calibs_00000002");
    assert_int_equal(bfs_registry_collection_has(reg, c, dt), 1);
    bfs_registry_close(reg);
}

static int find_cb(void *ctx, const bfs_dataset_file *f)
{
    char *out = ctx;
    snprintf(out, 256, "%s %s %s %s %lld", f->id, f->values[1], f->values[2], f->path,
             (long long)f->file_size);
    return 0;
}

static void test_find_written_file(void **state)
{
    struct repo *r = *state;
    char *msg = NULL;
    assert_int_equal(bfs_registry_init(r->dir, &msg), 0);
    populate(r->dir);
    bfs_registry *reg = NULL;
    assert_int_equal(bfs_registry_open(r->dir, BFS_REG_READONLY, &reg, &msg), 0);
    const bfs_catalog *cat = bfs_registry_catalog(reg);
    const bfs_collection *c = bfs_catalog_collection(cat, "LSSTCam/raw/all");
    const bfs_dataset_type *dt = bfs_catalog_dataset_type(cat, "raw");
    assert_non_null(c);
    assert_non_null(dt);
    const char *values[BFS_MAX_DIMS] = {"LSSTCam", NULL, NULL};
    char out[256] = "";
    assert_int_equal(bfs_registry_find_files(reg, c, dt, values, find_cb, out), 0);
    assert_string_equal(out, RAW_ID " 94 2025041500060 "
                        "LSSTCam/20250415/MC_O_20250415_000060/MC_O_20250415_000060_R22_S11.fits"
                        " 16000000");
    bfs_registry_close(reg);
}

/* Removing a dataset (local retention): its rows go, a TAGGED membership
 * with them (the tag table's foreign key cascades), other datasets stay. */
static void test_remove_dataset(void **state)
{
    struct repo *r = *state;
    char *msg = NULL;
    assert_int_equal(bfs_registry_init(r->dir, &msg), 0);
    populate(r->dir);
    bfs_registry *reg = NULL;
    assert_int_equal(bfs_registry_open(r->dir, BFS_REG_WRITE, &reg, &msg), 0);
    const char *raw_path = "LSSTCam/20250415/MC_O_20250415_000060/MC_O_20250415_000060_R22_S11.fits";
    assert_int_equal(bfs_registry_add_collection(reg, "tagged", BFS_COLL_TAGGED, NULL, NULL), 0);
    assert_int_equal(bfs_registry_associate(reg, "tagged", RAW_ID), 0);
    assert_int_equal(bfs_registry_has_dataset(reg, RAW_ID), 1);
    assert_int_equal(bfs_registry_path_referenced(reg, raw_path), 1);

    assert_int_equal(bfs_registry_remove_dataset(reg, RAW_ID), 0);
    assert_int_equal(bfs_registry_has_dataset(reg, RAW_ID), 0);
    assert_int_equal(bfs_registry_path_referenced(reg, raw_path), 0);
    assert_int_equal(bfs_registry_has_dataset(reg, PACKAGES_ID), 1); /* the other one stays */
    assert_int_equal(bfs_registry_path_referenced(reg, "LSSTCam/runs/x/packages.yaml"), 1);
    assert_int_equal(bfs_registry_remove_dataset(reg, RAW_ID), -ENOENT);
    assert_int_equal(bfs_registry_remove_dataset(reg, "not-an-id"), -EINVAL);
    assert_int_equal(bfs_registry_associate(reg, "tagged", RAW_ID), -ENOENT);

    /* inside a transaction that is rolled back, nothing goes */
    assert_int_equal(bfs_registry_begin(reg), 0);
    assert_int_equal(bfs_registry_remove_dataset(reg, PACKAGES_ID), 0);
    bfs_registry_rollback(reg);
    assert_int_equal(bfs_registry_has_dataset(reg, PACKAGES_ID), 1);
    bfs_registry_close(reg);

    /* read-only: refused */
    assert_int_equal(bfs_registry_open(r->dir, BFS_REG_READONLY, &reg, &msg), 0);
    assert_int_equal(bfs_registry_remove_dataset(reg, PACKAGES_ID), -EROFS);
    bfs_registry_close(reg);
}

/* ---- the paged walk (bfs_registry_each_run_file_page) ---- */

struct seen {
    char ids[16][33];
    int n, stop_at; /* stop_at > 0: the callback returns 7 at the first file of that dataset (1-based) */
    bfs_dataset_cursor *cursor, at_stop;
};

static int seen_cb(void *ctx, const bfs_run_file *f)
{
    struct seen *s = ctx;
    if (s->n == 0 || strcmp(s->ids[s->n - 1], f->dataset_id)) {
        assert_true(s->n < 16);
        snprintf(s->ids[s->n++], sizeof s->ids[0], "%s", f->dataset_id);
        if (s->n == s->stop_at) {
            s->at_stop = *s->cursor;
            return 7;
        }
    }
    return 0;
}

/* Walk run_glob in pages of page datasets: returns the calls made. */
static int walk(bfs_registry *reg, const char *run_glob, int page, struct seen *s)
{
    bfs_dataset_cursor c = {0};
    s->cursor = &c;
    for (int calls = 1; calls < 20; calls++) {
        int got = -1;
        assert_int_equal(bfs_registry_each_run_file_page(reg, run_glob, &c, page, seen_cb, s, &got), 0);
        assert_true(got >= 0 && got <= page);
        if (got < page)
            return calls;
    }
    fail_msg("the walk does not end");
    return 0;
}

/* Each dataset once, in ascending order of its stored id, and all of them:
 * want the number. */
static void expect_each_once(const struct seen *s, int want)
{
    assert_int_equal(s->n, want);
    for (int i = 0; i < s->n; i++)
        for (int j = i + 1; j < s->n; j++)
            assert_string_not_equal(s->ids[i], s->ids[j]);
}

static void test_run_file_pages(void **state)
{
    struct repo *r = *state;
    char *msg = NULL;
    assert_int_equal(bfs_registry_init(r->dir, &msg), 0);
    populate(r->dir); /* a raw and a packages dataset */
    bfs_registry *reg = NULL;
    assert_int_equal(bfs_registry_open(r->dir, BFS_REG_WRITE, &reg, &msg), 0);
    for (int i = 0; i < 8; i++) { /* one packages dataset per run: 10 datasets */
        char run[32], path[64], id[33];
        snprintf(run, sizeof run, "extra/r%d", i);
        snprintf(path, sizeof path, "extra/r%d/packages.yaml", i);
        assert_int_equal(bfs_registry_add_run(reg, run, NULL), 0);
        bfs_new_dataset pk = {.dataset_type = "packages", .run = run, .path = path,
                              .formatter = "lsst.daf.butler.formatters.packages.PackagesFormatter",
                              .file_size = -1};
        assert_int_equal(bfs_registry_add_dataset(reg, &pk, id), 0);
    }
    int64_t total = 0;
    assert_int_equal(bfs_registry_count_datasets(reg, &total), 0);
    assert_int_equal(total, 10);

    struct seen s = {0};
    assert_int_equal(walk(reg, "*", 3, &s), 4); /* 3 + 3 + 3 + 1 */
    expect_each_once(&s, 10);
    for (int i = 1; i < s.n; i++) /* text ids: the key's order is the hex order */
        assert_true(strcmp(s.ids[i - 1], s.ids[i]) < 0);
    memset(&s, 0, sizeof s);
    assert_int_equal(walk(reg, "*", 5, &s), 3); /* 5 + 5 + an empty page */
    expect_each_once(&s, 10);
    memset(&s, 0, sizeof s);
    assert_int_equal(walk(reg, "extra/*", 3, &s), 3); /* the glob picks the page's datasets: 3 + 3 + 2 */
    expect_each_once(&s, 8);

    /* a callback that stops: its return, and a cursor copied at a dataset
     * resumes after it */
    struct seen all = {0};
    walk(reg, "*", 10, &all);
    memset(&s, 0, sizeof s);
    s.stop_at = 4;
    bfs_dataset_cursor c = {0};
    s.cursor = &c;
    int got = 0;
    assert_int_equal(bfs_registry_each_run_file_page(reg, "*", &c, 10, seen_cb, &s, &got), 7);
    c = s.at_stop;
    s.stop_at = 0;
    s.n = 0;
    assert_int_equal(bfs_registry_each_run_file_page(reg, "*", &c, 2, seen_cb, &s, &got), 0);
    assert_int_equal(got, 2);
    assert_string_equal(s.ids[0], all.ids[4]);
    assert_string_equal(s.ids[1], all.ids[5]);
    bfs_registry_close(reg);
}

static void test_dataset_id_v5(void **state)
{
    (void)state;
    char id[33];
    const char *names[] = {"instrument", "detector", "exposure"};
    const char *values[] = {"LSSTCam", "94", "2025041500060"};
    assert_int_equal(bfs_dataset_id_v5("raw", "LSSTCam/raw/all", names, values, 3, id), 0);
    assert_string_equal(id, RAW_ID);
    /* order of the pairs does not matter: names are sorted */
    const char *names2[] = {"physical_filter", "detector", "instrument"};
    const char *values2[] = {"r_57", "94", "LSSTCam"};
    assert_int_equal(bfs_dataset_id_v5("flat", "LSSTCam/calib/r1", names2, values2, 3, id), 0);
    assert_string_equal(id, FLAT_ID);
    assert_int_equal(bfs_dataset_id_v5("packages", "LSSTCam/runs/x", NULL, NULL, 0, id), 0);
    assert_string_equal(id, PACKAGES_ID);
    /* version and variant nibbles of a UUIDv5 */
    assert_int_equal(id[12], '5');
    assert_non_null(strchr("89ab", id[16]));
    const char *twice[] = {"detector", "detector"};
    assert_int_equal(bfs_dataset_id_v5("raw", "r", twice, values, 2, id), -EINVAL);
    assert_int_equal(bfs_dataset_id_v5(NULL, "r", NULL, NULL, 0, id), -EINVAL);
}

static void test_schema_matches_python_butler(void **state)
{
    struct repo *r = *state;
    char src[PATH_MAX];
    snprintf(src, sizeof src, "%s", __FILE__);
    const char *here = dirname(src);
    char shared[PATH_MAX], fixture[PATH_MAX + 64], script[PATH_MAX + 64];
    const char *env = getenv("BFS_SHARED");
    if (env && *env)
        snprintf(shared, sizeof shared, "%s", env);
    else
        snprintf(shared, sizeof shared, "%s/../../../shared", here);
    snprintf(fixture, sizeof fixture, "%s/fixtures/repos/prompt_processing_central/gen3.sqlite3",
             shared);
    snprintf(script, sizeof script, "%s/registry_schema_compare.py", here);
    if (access(fixture, R_OK) != 0 || access(script, R_OK) != 0 || !have_program("python3")) {
        print_message("fixture %s or python3 missing: schema comparison skipped\n", fixture);
        skip();
    }

    char *msg = NULL;
    assert_int_equal(bfs_registry_init(r->dir, &msg), 0);
    bfs_registry *reg = NULL;
    assert_int_equal(bfs_registry_open(r->dir, BFS_REG_WRITE, &reg, &msg), 0);
    add_dataset_types(reg);
    bfs_registry_close(reg);

    /* Our dimension groups 1..4 are the fixture's 7, 3, 5 and 6; the empty
     * group is 0 in both. */
    char *cmd;
    assert_true(asprintf(&cmd,
                         "python3 '%s' '%s' '%s'"
                         " dataset_tags_00000001=dataset_tags_00000007"
                         " dataset_tags_00000002=dataset_tags_00000003"
                         " dataset_calibs_00000002=dataset_calibs_00000003"
                         " dataset_tags_00000000=dataset_tags_00000000"
                         " dataset_tags_00000003=dataset_tags_00000005"
                         " dataset_tags_00000004=dataset_tags_00000006",
                         script, r->db, fixture) > 0);
    int rc = system(cmd);
    free(cmd);
    assert_int_equal(rc, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_init_creates_repo, repo_setup, repo_teardown),
        cmocka_unit_test_setup_teardown(test_write_records, repo_setup, repo_teardown),
        cmocka_unit_test_setup_teardown(test_find_written_file, repo_setup, repo_teardown),
        cmocka_unit_test_setup_teardown(test_remove_dataset, repo_setup, repo_teardown),
        cmocka_unit_test_setup_teardown(test_run_file_pages, repo_setup, repo_teardown),
        cmocka_unit_test(test_dataset_id_v5),
        cmocka_unit_test_setup_teardown(test_schema_matches_python_butler, repo_setup,
                                        repo_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
