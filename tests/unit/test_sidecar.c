/*
 * test_sidecar.c - the export sidecar (writers/sidecar.c, docs/transfer.md
 * "Sidecars"): a sidecar built from a synthetic repository parses back to
 * the registry's values; bfs_sums agrees with known Adler-32 and MD5
 * values; bfs_sidecar_parse refuses each kind of bad input with a sentence.
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
#include <unistd.h>

#include <cmocka.h>

#include "registry.h"
#include "sidecar.h"
#include "synth.h"

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb, (void)type, (void)ftw;
    return remove(path);
}

/* A valid sidecar; each rejection test changes one thing in it. */
static const char good[] =
    "{\"ref\": {\"id\": \"84cb0107-04eb-5dad-a023-cc027e09552f\", \"run\": \"LSSTCam/raw/all\", \"component\": null,"
    " \"datasetType\": {\"name\": \"raw\", \"storageClass\": \"Exposure\","
    " \"dimensions\": [\"instrument\", \"detector\", \"exposure\"], \"parentStorageClass\": null,"
    " \"isCalibration\": false},"
    " \"dataId\": {\"dataId\": {\"instrument\": \"LSSTCam\", \"detector\": 94, \"exposure\": 2025041500060,"
    " \"physical_filter\": \"r_57\"},"
    " \"records\": {\"detector\": {\"definition\": \"detector\", \"record\": {\"id\": 94}}}}},"
    " \"size\": 12, \"adler32\": \"1c49043e\", \"md5\": \"e4d7f1b4ed2e42d15898f4b27b019da4\","
    " \"formatter\": \"lsst.obs.lsst.rawFormatter.LsstCamRawFormatter\","
    " \"path\": \"LSSTCam/raw/all/raw/x.fits\"}";

static char *replace(const char *from, const char *to)
{
    const char *at = strstr(good, from);
    assert_non_null(at);
    size_t n = strlen(good) - strlen(from) + strlen(to);
    char *s = malloc(n + 1);
    assert_non_null(s);
    snprintf(s, n + 1, "%.*s%s%s", (int)(at - good), good, to, at + strlen(from));
    return s;
}

static void test_parse_good(void **state)
{
    (void)state;
    bfs_sidecar sc;
    char *msg = NULL;
    assert_int_equal(bfs_sidecar_parse(good, strlen(good), &sc, &msg), 0);
    assert_null(msg);
    assert_string_equal(sc.id, "84cb010704eb5dada023cc027e09552f");
    assert_string_equal(sc.run, "LSSTCam/raw/all");
    assert_string_equal(sc.dataset_type, "raw");
    assert_string_equal(sc.storage_class, "Exposure");
    assert_int_equal(sc.ndims, 3);
    assert_string_equal(sc.dims[2], "exposure");
    assert_false(sc.is_calibration);
    assert_int_equal(sc.n_data_id, 4);
    assert_string_equal(sc.data_id_names[1], "detector");
    assert_string_equal(sc.data_id_values[1], "94");
    assert_string_equal(sc.data_id_values[2], "2025041500060");
    assert_string_equal(sc.data_id_values[3], "r_57");
    assert_int_equal(sc.size, 12);
    assert_string_equal(sc.adler32, "1c49043e");
    assert_string_equal(sc.md5, "e4d7f1b4ed2e42d15898f4b27b019da4");
    assert_string_equal(sc.checksum, "");
    assert_string_equal(sc.path, "LSSTCam/raw/all/raw/x.fits");
    bfs_sidecar_free(&sc);
}

static void test_parse_rejects(void **state)
{
    (void)state;
    static const struct {
        const char *from, *to, *why;
    } cases[] = {
        {"\"id\": \"84cb0107-04eb", "\"id\": \"84CB0107-04eb", "ref.id"},
        {"-cc027e09552f\"", "-cc027e09552\"", "ref.id"},
        {"\"run\": \"LSSTCam/raw/all\"", "\"run\": \"LSSTCam/../all\"", "ref.run"},
        {"\"run\": \"LSSTCam/raw/all\"", "\"run\": 7", "ref.run"},
        {"\"component\": null", "\"component\": \"wcs\"", "component"},
        {"\"name\": \"raw\"", "\"name\": \"raw/x\"", "datasetType.name"},
        {"\"detector\", \"exposure\"]", "\"detector\", \"exp osure\"]", "dimensions"},
        {"\"detector\", \"exposure\"]", "\"detector\", \"detector\"]", "twice"},
        {"\"detector\": 94,", "\"detector\": \"../94\",", "path component"},
        {"\"detector\": 94,", "\"detector\": 9.4,", "path component"},
        {"\"detector\": 94,", "\"detectr\": 94,", "lacks required dimension detector"},
        {"\"size\": 12", "\"size\": -1", "size"},
        {"\"size\": 12", "\"size\": \"12\"", "size"},
        {"\"adler32\": \"1c49043e\"", "\"adler32\": \"1C49043E\"", "adler32"},
        {"\"adler32\": \"1c49043e\"", "\"adler32\": \"1c49043\"", "adler32"},
        {"\"md5\": \"e4d7", "\"md5\": \"e4d", "md5"},
        {"\"formatter\": \"lsst", "\"formatter\": \"; rm lsst", "formatter"},
        {"\"path\": \"LSSTCam", "\"path\": \"/LSSTCam", "path"},
        {"\"path\": \"LSSTCam/raw", "\"path\": \"../raw", "path"},
        {"\"path\": \"LSSTCam/raw", "\"path\": \"LSSTCam//raw", "path"},
        {"\"size\": 12,", "\"checksum\": \"abc\", \"size\": 12,", "checksum"},
        {"\"size\": 12,", "\"size\": 12, \"size\": 13,", "not JSON"},
        {"{\"detector\": {\"definition\": \"detector\"", "{\"detector\": {\"definition\": \"visit\"", "record"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *bad = replace(cases[i].from, cases[i].to), *msg = NULL;
        bfs_sidecar sc;
        int ret = bfs_sidecar_parse(bad, strlen(bad), &sc, &msg);
        if (ret != -EINVAL || !msg || !strstr(msg, cases[i].why))
            fail_msg("case %zu (%s): ret %d, message %s", i, cases[i].to, ret, msg ? msg : "(none)");
        bfs_sidecar_free(&sc);
        free(msg);
        free(bad);
    }
    /* missing keys, wrong shapes, too long */
    const char *shapes[] = {"[]", "{}", "{\"ref\": 1}", "not json", ""};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        char *msg = NULL;
        bfs_sidecar sc;
        assert_int_equal(bfs_sidecar_parse(shapes[i], strlen(shapes[i]), &sc, &msg), -EINVAL);
        assert_non_null(msg);
        bfs_sidecar_free(&sc);
        free(msg);
    }
    char *msg = NULL;
    bfs_sidecar sc;
    assert_int_equal(bfs_sidecar_parse(good, BFS_SIDECAR_MAX_BYTES + 1, &sc, &msg), -E2BIG);
    free(msg);
}

static void test_sums(void **state)
{
    (void)state;
    bfs_sums *s = bfs_sums_new();
    assert_non_null(s);
    assert_int_equal(bfs_sums_update(s, "hello ", 6), 0);
    assert_int_equal(bfs_sums_update(s, "world\n", 6), 0);
    bfs_file_sums fs;
    assert_int_equal(bfs_sums_final(s, &fs), 0);
    bfs_sums_free(s);
    assert_int_equal(fs.size, 12);
    /* python3: zlib.adler32(b"hello world\n"), hashlib.md5(...).hexdigest() */
    assert_string_equal(fs.adler32, "1e720467");
    assert_string_equal(fs.md5, "6f5902ac237024bdd0c176cb93063dc4");
}

struct built {
    bfs_registry *reg;
    int n;
};

static int build_and_parse(void *ctx, const bfs_dataset_record *r)
{
    struct built *b = ctx;
    bfs_file_sums fs = {.size = 1234, .adler32 = "0000abcd", .md5 = "0123456789abcdef0123456789abcdef"};
    char *json = NULL, *msg = NULL;
    assert_int_equal(bfs_sidecar_build(b->reg, r, &fs, &json, &msg), 0);
    bfs_sidecar sc;
    int ret = bfs_sidecar_parse(json, strlen(json), &sc, &msg);
    if (ret)
        fail_msg("%s\n%s", msg ? msg : "?", json);
    assert_string_equal(sc.id, r->id);
    assert_string_equal(sc.run, r->run);
    assert_string_equal(sc.dataset_type, r->dt->name);
    assert_int_equal(sc.ndims, r->dt->ndims);
    for (int i = 0; i < r->dt->ndims; i++) {
        assert_string_equal(sc.dims[i], r->dt->dims[i]->name);
        assert_string_equal(sc.data_id_names[i], r->dt->dims[i]->name); /* required first, in order */
        assert_string_equal(sc.data_id_values[i], r->values[i]);
    }
    assert_true(sc.n_data_id > r->dt->ndims); /* implied dimensions too */
    assert_int_equal(sc.size, 1234);
    assert_string_equal(sc.adler32, "0000abcd");
    assert_string_equal(sc.md5, fs.md5);
    assert_string_equal(sc.path, r->path);
    assert_string_equal(sc.formatter, r->formatter);
    /* the same input, the same text */
    char *again = NULL;
    assert_int_equal(bfs_sidecar_build(b->reg, r, &fs, &again, &msg), 0);
    assert_string_equal(json, again);
    free(again);
    bfs_sidecar_free(&sc);
    free(json);
    b->n++;
    return 0;
}

static int collect_id(void *ctx, const bfs_run_file *f)
{
    char (*id)[33] = ctx;
    snprintf(*id, 33, "%s", f->dataset_id);
    return 0;
}

static void test_round_trip(void **state)
{
    (void)state;
    char dir[] = "/tmp/bfs_sidecar_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *msg = NULL;
    bfs_registry *reg = NULL;
    assert_int_equal(bfs_registry_init(dir, &msg), 0);
    assert_int_equal(bfs_registry_open(dir, BFS_REG_WRITE, &reg, &msg), 0);
    bfs_synth_opts o = {.n_exposures = 1, .n_detectors = 1};
    assert_int_equal(bfs_synth_raws(reg, &o), 1);
    assert_int_equal(bfs_registry_refresh(reg) >= 0, 1);
    char id[33] = "";
    assert_int_equal(bfs_registry_each_run_file(reg, "*", collect_id, &id), 0);
    struct built b = {reg, 0};
    assert_int_equal(bfs_registry_dataset_records(reg, id, build_and_parse, &b), 0);
    assert_int_equal(b.n, 1);
    assert_int_equal(bfs_registry_dataset_records(reg, "00000000000000000000000000000000", build_and_parse, &b),
                     -ENOENT);
    assert_int_equal(bfs_registry_dataset_records(reg, "xyz", build_and_parse, &b), -EINVAL);
    bfs_registry_close(reg);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_sums),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
