/*
 * test_synth.c - synthetic LSSTCam raws (writers/synth.c).
 *
 * The FITS file is checked from the outside: fitsverify (the HEASARC
 * validator) for the structure and checksums, and the raw header bytes
 * (80-character cards in 2880-byte blocks) for the values ingest relies on.
 * Tests link bfs_writers but get no cfitsio include path, which is also why
 * cfitsio is not used to read the file back.  The last test builds a real
 * repository through the registry write API and reads it back through the
 * registry query API.
 */
#include <errno.h>
#include <ftw.h>
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

#include "camera.h"
#include "fits.h"
#include "registry.h"
#include "synth.h"
#include "translate.h"

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

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        *len = (size_t)n;
    }
    return buf;
}

/* The value of keyword key in the header starting at hdr (up to END), as
 * text: a string without its quotes and trailing blanks, or the bare token
 * of a number or logical.  NULL when absent. */
static const char *card_value(const char *hdr, size_t len, const char *key, char *out,
                              size_t outsz)
{
    size_t klen = strlen(key);
    for (size_t off = 0; off + 80 <= len; off += 80) {
        const char *c = hdr + off;
        if (memcmp(c, "END     ", 8) == 0 && c[8] == ' ')
            return NULL;
        if (memcmp(c, key, klen) != 0 || (klen < 8 && c[klen] != ' ') || memcmp(c + 8, "= ", 2))
            continue;
        const char *v = c + 10, *e = c + 80;
        while (v < e && *v == ' ')
            v++;
        size_t n = 0;
        if (v < e && *v == '\'') {
            for (v++; v < e && *v != '\'' && n + 1 < outsz; v++)
                out[n++] = *v;
            while (n > 0 && out[n - 1] == ' ')
                n--;
        } else {
            for (; v < e && *v != ' ' && *v != '/' && n + 1 < outsz; v++)
                out[n++] = *v;
        }
        out[n] = '\0';
        return out;
    }
    return NULL;
}

/* Run fitsverify -q on path: 1 when it says OK, 0 when not, -1 when the
 * tool is missing. */
static int fitsverify_ok(const char *path)
{
    if (system("command -v fitsverify >/dev/null 2>&1") != 0)
        return -1;
    char cmd[4200], line[512] = "";
    snprintf(cmd, sizeof cmd, "fitsverify -q '%s' 2>&1", path);
    FILE *p = popen(cmd, "r");
    if (!p)
        return 0;
    if (!fgets(line, sizeof line, p))
        line[0] = '\0';
    int status = pclose(p);
    if (status != 0 || strstr(line, "verification OK") == NULL) {
        print_message("fitsverify: %s", line);
        return 0;
    }
    return 1;
}

/* Each file-writing test gets a fresh temp dir in *state, removed by the
 * teardown even when an assertion fails half-way. */
static int make_tmpdir(void **state)
{
    char *dir = strdup("/tmp/bfs_synth_XXXXXX");
    if (!dir || !mkdtemp(dir)) {
        free(dir);
        return -1;
    }
    *state = dir;
    return 0;
}

static int remove_tmpdir(void **state)
{
    rm_tree(*state);
    free(*state);
    return 0;
}

/* ---- tests ----------------------------------------------------------------- */

static void test_detector_ids(void **state)
{
    (void)state;
    assert_int_equal(bfs_synth_detector_id("R22_S11"), 94);
    assert_int_equal(bfs_synth_detector_id("R01_S00"), 0);
    assert_int_equal(bfs_synth_detector_id("R43_S22"), 188);
    assert_int_equal(bfs_synth_detector_id("R10_S02"), 29);
    assert_int_equal(bfs_synth_detector_id("R00_SG0"), -EINVAL); /* guider */
    assert_int_equal(bfs_synth_detector_id("R22_S33"), -EINVAL);
    assert_int_equal(bfs_synth_detector_id("R22S11"), -EINVAL);
    assert_int_equal(bfs_synth_detector_id("R22_S11x"), -EINVAL);
    assert_int_equal(bfs_synth_detector_id(""), -EINVAL);

    char name[8];
    for (int id = 0; id < BFS_SYNTH_NUM_DETECTORS; id++) {
        assert_int_equal(bfs_synth_detector_name(id, name), 0);
        assert_int_equal(bfs_synth_detector_id(name), id);
    }
    assert_int_equal(bfs_synth_detector_name(94, name), 0);
    assert_string_equal(name, "R22_S11");
    assert_int_equal(bfs_synth_detector_name(189, name), -EINVAL);
    assert_int_equal(bfs_synth_detector_name(-1, name), -EINVAL);
}

static void test_describe(void **state)
{
    (void)state;
    bfs_synth_opts o = {.n_exposures = 100};
    bfs_synth_raw r, r2;
    assert_int_equal(bfs_synth_describe(&o, 59, 94, &r), 0);
    assert_int_equal(r.exposure_id, 2025041500060LL);
    assert_int_equal(r.seq_num, 60);
    assert_string_equal(r.obs_id, "MC_O_20250415_000060");
    assert_string_equal(r.full_name, "R22_S11");
    assert_string_equal(r.raft, "R22");
    assert_string_equal(r.slot, "S11");
    assert_true(r.end_tai_ns > r.begin_tai_ns);

    char path[512];
    assert_true(bfs_synth_raw_path(&r, "LSSTCam/raw/all", path, sizeof path) > 0);
    char want[512];
    snprintf(want, sizeof want,
             "LSSTCam/raw/all/raw/20250415/MC_O_20250415_000060/"
             "raw_LSSTCam_%s_MC_O_20250415_000060_R22_S11_LSSTCam_raw_all.fits",
             r.physical_filter);
    assert_string_equal(path, want);
    assert_int_equal(bfs_synth_raw_path(&r, "LSSTCam/raw/all", path, 20), -ENAMETOOLONG);

    /* Exposures move forward in time, in distinct groups, and mix types. */
    assert_int_equal(bfs_synth_describe(&o, 60, 94, &r2), 0);
    assert_true(r2.begin_tai_ns > r.end_tai_ns);
    assert_string_not_equal(r.group, r2.group);
    assert_int_equal(bfs_synth_describe(&o, 0, 0, &r), 0);
    assert_string_equal(r.observation_type, "bias");
    assert_int_equal(bfs_synth_describe(&o, 1, 0, &r), 0);
    assert_string_equal(r.observation_type, "flat");
    assert_int_equal(bfs_synth_describe(&o, 2, 0, &r), 0);
    assert_string_equal(r.observation_type, "science");

    /* Out of range. */
    assert_int_equal(bfs_synth_describe(&o, 100, 0, &r), -EINVAL);
    assert_int_equal(bfs_synth_describe(&o, 0, 189, &r), -EINVAL);
    bfs_synth_opts bad = {.first_seq = 99999, .n_exposures = 2};
    assert_int_equal(bfs_synth_describe(&bad, 0, 0, &r), -EINVAL);
    bfs_synth_opts bad_day = {.day_obs = 20250231};
    assert_int_equal(bfs_synth_describe(&bad_day, 0, 0, &r), -EINVAL);
}

static void test_fits_raw(void **state)
{
    const char *dir = *state;
    char path[256], path2[256];
    snprintf(path, sizeof path, "%s/raw.fits", dir);
    snprintf(path2, sizeof path2, "%s/again.fits", dir);

    bfs_synth_opts o = {.n_exposures = 100, .fits = true};
    bfs_synth_raw r;
    assert_int_equal(bfs_synth_describe(&o, 59, 94, &r), 0);
    const int64_t payload = 200000;
    assert_int_equal(bfs_synth_write_raw_fits(path, &r, payload), 0);

    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0644);
    assert_int_equal(sb.st_size % 2880, 0);
    /* Pixel data about payload, plus 17 headers of a few blocks each. */
    assert_true(sb.st_size >= payload * 8 / 10);
    assert_true(sb.st_size <= payload * 12 / 10 + 17 * 2 * 2880);

    int v = fitsverify_ok(path);
    if (v < 0)
        print_message("fitsverify not installed: structure not verified\n");
    else
        assert_int_equal(v, 1);

    size_t len = 0;
    char *buf = read_all(path, &len);
    assert_non_null(buf);
    char val[80];
    assert_non_null(card_value(buf, len, "SIMPLE", val, sizeof val));
    assert_string_equal(val, "T");
    assert_non_null(card_value(buf, len, "NAXIS", val, sizeof val));
    assert_string_equal(val, "0");
    assert_non_null(card_value(buf, len, "INSTRUME", val, sizeof val));
    assert_string_equal(val, "LSSTCam");
    assert_non_null(card_value(buf, len, "OBSID", val, sizeof val));
    assert_string_equal(val, "MC_O_20250415_000060");
    assert_non_null(card_value(buf, len, "CAMCODE", val, sizeof val));
    assert_string_equal(val, "MC");
    assert_non_null(card_value(buf, len, "CONTRLLR", val, sizeof val));
    assert_string_equal(val, "O");
    assert_non_null(card_value(buf, len, "DAYOBS", val, sizeof val));
    assert_string_equal(val, "20250415");
    assert_non_null(card_value(buf, len, "SEQNUM", val, sizeof val));
    assert_string_equal(val, "60");
    assert_non_null(card_value(buf, len, "RAFTBAY", val, sizeof val));
    assert_string_equal(val, "R22");
    assert_non_null(card_value(buf, len, "CCDSLOT", val, sizeof val));
    assert_string_equal(val, "S11");
    assert_non_null(card_value(buf, len, "FILTER", val, sizeof val));
    assert_string_equal(val, r.physical_filter);
    assert_non_null(card_value(buf, len, "IMGTYPE", val, sizeof val));
    assert_string_equal(val, "OBJECT");
    assert_non_null(card_value(buf, len, "GROUPID", val, sizeof val));
    assert_string_equal(val, r.group);
    assert_non_null(card_value(buf, len, "DATE-BEG", val, sizeof val));
    assert_true(strncmp(val, "2025-04-16T", 11) == 0);
    assert_null(card_value(buf, len, "EXTNAME", val, sizeof val)); /* primary only */

    /* 16 image extensions, each header starting on a block boundary, in the
     * amplifier order of a real LSSTCam raw. */
    static const char *const order[16] = {
        "Segment10", "Segment11", "Segment12", "Segment13", "Segment14", "Segment15",
        "Segment16", "Segment17", "Segment07", "Segment06", "Segment05", "Segment04",
        "Segment03", "Segment02", "Segment01", "Segment00"};
    int next = 0;
    for (size_t off = 2880; off < len; off += 2880) {
        if (memcmp(buf + off, "XTENSION= 'IMAGE   '", 20) != 0)
            continue;
        assert_true(next < 16);
        assert_non_null(card_value(buf + off, len - off, "EXTNAME", val, sizeof val));
        assert_string_equal(val, order[next]);
        assert_non_null(card_value(buf + off, len - off, "BITPIX", val, sizeof val));
        assert_string_equal(val, "32");
        assert_non_null(card_value(buf + off, len - off, "DATASEC", val, sizeof val));
        assert_non_null(card_value(buf + off, len - off, "DETSEC", val, sizeof val));
        next++;
    }
    /* as many as raw ingest requires of the detector (camera.h) */
    assert_int_equal(next, bfs_camera_n_amplifiers(bfs_camera_find("LSSTCam"), r.detector));

    /* Deterministic: the same raw gives the same bytes. */
    assert_int_equal(bfs_synth_write_raw_fits(path2, &r, payload), 0);
    size_t len2 = 0;
    char *buf2 = read_all(path2, &len2);
    assert_non_null(buf2);
    assert_int_equal(len2, len);
    assert_memory_equal(buf, buf2, len);
    free(buf);
    free(buf2);

    /* A directory that does not exist: an errno, and no file left. */
    char missing[300];
    snprintf(missing, sizeof missing, "%s/no/such/dir/raw.fits", dir);
    int rc = bfs_synth_write_raw_fits(missing, &r, payload);
    assert_true(rc < 0);
    assert_int_not_equal(access(missing, F_OK), 0);
}

struct progress {
    int calls;
    int64_t last_done, total;
};

static void on_progress(void *ctx, int64_t done, int64_t total)
{
    struct progress *p = ctx;
    p->calls++;
    assert_true(done >= p->last_done);
    p->last_done = done;
    p->total = total;
}

struct files {
    int n;
    const char *root;
    int64_t expect_size; /* -1: only check that the size matches the file */
    const char *run;
};

static int on_file(void *ctx, const bfs_dataset_file *f)
{
    struct files *fs = ctx;
    char full[4200];
    snprintf(full, sizeof full, "%s%s", fs->root, f->path);
    struct stat sb;
    assert_int_equal(stat(full, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0644);
    assert_int_equal((int64_t)sb.st_size, f->file_size);
    if (fs->expect_size >= 0)
        assert_int_equal(f->file_size, fs->expect_size);
    char want[256];
    snprintf(want, sizeof want, "%s/raw/20250415/MC_O_20250415_0000", fs->run);
    assert_true(strncmp(f->path, want, strlen(want)) == 0);
    fs->n++;
    return 0;
}

/* Count the raws of run in repo and check each record against its file. */
static int count_raws(const char *repo, const char *run, int64_t expect_size)
{
    bfs_registry *reg = NULL;
    char *msg = NULL;
    int rc = bfs_registry_open(repo, BFS_REG_READONLY, &reg, &msg);
    if (rc < 0)
        print_message("open: %s\n", msg ? msg : "?");
    free(msg);
    assert_int_equal(rc, 0);
    const bfs_catalog *cat = bfs_registry_catalog(reg);
    const bfs_collection *c = bfs_catalog_collection(cat, run);
    const bfs_dataset_type *dt = bfs_catalog_dataset_type(cat, "raw");
    assert_non_null(c);
    assert_non_null(dt);
    assert_string_equal(dt->storage_class, "Exposure");
    const char *values[BFS_MAX_DIMS] = {0};
    struct files fs = {0, bfs_registry_datastore_root(reg), expect_size, run};
    assert_int_equal(bfs_registry_find_files(reg, c, dt, values, on_file, &fs), 0);
    /* the run's instrument (its first path level), for the alias below */
    char instrument[64];
    snprintf(instrument, sizeof instrument, "%.*s", (int)strcspn(run, "/"), run);
    for (int k = 0; k < dt->ndims; k++)
        if (strcmp(dt->dims[k]->name, "instrument") == 0)
            values[k] = instrument;

    /* The detector alias resolves as the camera says. */
    for (int k = 0; k < dt->ndims; k++)
        if (strcmp(dt->dims[k]->name, "detector") == 0) {
            char id[32];
            assert_int_equal(bfs_registry_resolve_alias(reg, dt, values, dt->dims[k], "R22_S11",
                                                        id, sizeof id),
                             0);
            assert_string_equal(id, "94");
        }
    bfs_registry_close(reg);
    return fs.n;
}

static void test_synth_repository(void **state)
{
    const char *dir = *state;
    char repo[256];
    snprintf(repo, sizeof repo, "%s/repo", dir);
    char *msg = NULL;
    int rc = bfs_registry_init(repo, &msg);
    if (rc < 0)
        print_message("init: %s\n", msg ? msg : "?");
    free(msg);
    assert_int_equal(rc, 0);

    bfs_registry *reg = NULL;
    msg = NULL;
    rc = bfs_registry_open(repo, BFS_REG_WRITE, &reg, &msg);
    if (rc < 0)
        print_message("open: %s\n", msg ? msg : "?");
    free(msg);
    assert_int_equal(rc, 0);

    /* Opaque payloads: 3 exposures x 4 detectors. */
    struct progress p = {0};
    bfs_synth_opts o = {.n_exposures = 3, .n_detectors = 4, .payload_bytes = 1000,
                        .progress = on_progress, .progress_ctx = &p};
    assert_int_equal(bfs_synth_raws(reg, &o), 12);
    assert_true(p.calls >= 1);
    assert_int_equal(p.last_done, 12);
    assert_int_equal(p.total, 12);

    /* Running again: the records are there, the first dataset collides. */
    assert_int_equal(bfs_synth_raws(reg, &o), -EEXIST);

    /* FITS payloads in a second run, later in the night's sequence. */
    bfs_synth_opts of = {.run = "LSSTCam/raw/fits", .n_exposures = 2, .first_seq = 61,
                         .n_detectors = 2, .fits = true, .payload_bytes = 50000};
    assert_int_equal(bfs_synth_raws(reg, &of), 4);
    bfs_registry_close(reg);

    assert_int_equal(count_raws(repo, "LSSTCam/raw/all", 1000), 12);

    /* One of the FITS raws, where the Butler template puts it. */
    bfs_synth_raw r;
    assert_int_equal(bfs_synth_describe(&of, 1, 1, &r), 0);
    char rel[512], full[1024];
    assert_true(bfs_synth_raw_path(&r, of.run, rel, sizeof rel) > 0);
    snprintf(full, sizeof full, "%s/%s", repo, rel);
    assert_true(strstr(full, "/LSSTCam/raw/fits/raw/20250415/MC_O_20250415_000062/"
                             "raw_LSSTCam_") != NULL);
    int v = fitsverify_ok(full);
    if (v >= 0)
        assert_int_equal(v, 1);

    /* Its headers translate to exactly the exposure record synth wrote: a
     * raw ingest of it into another RUN finds the record identical (0, not
     * -EEXIST), to the nanosecond of the timespan. */
    bfs_fits_card *cards = NULL;
    size_t n = 0;
    bfs_raw_translation t;
    char *why = NULL;
    assert_int_equal(bfs_fits_read_header(full, 1, &cards, &n, &why), 0);
    assert_int_equal(bfs_translate_raw(cards, n, NULL, &t, &why), 0);
    free(cards);
    free(why);
    assert_int_equal(bfs_registry_open(repo, BFS_REG_WRITE, &reg, &why), 0);
    assert_int_equal(bfs_registry_add_exposure(reg, &t.exposure), 0);
    t.exposure.timespan_end++;
    assert_int_equal(bfs_registry_add_exposure(reg, &t.exposure), -EEXIST);
    assert_string_equal(bfs_registry_conflict(), "timespan");

    /* Records named for another instrument (the camera stays LSSTCam). */
    bfs_synth_opts ot = {.instrument = "TestCam", .n_exposures = 2, .n_detectors = 1, .payload_bytes = 100};
    assert_int_equal(bfs_synth_raws(reg, &ot), 2);
    bfs_registry_close(reg);
    assert_int_equal(count_raws(repo, "TestCam/raw/all", 100), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detector_ids),
        cmocka_unit_test(test_describe),
        cmocka_unit_test_setup_teardown(test_fits_raw, make_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_synth_repository, make_tmpdir, remove_tmpdir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
