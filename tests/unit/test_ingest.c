/*
 * test_ingest.c - writers/ingest.c without FUSE: the ingest: section of
 * the configuration, and uploads through writers.h into a repository made
 * by the repo builder (real SQLite, real files): path ingest, the seal's
 * outcome, duplicates, conflicts, read-only collections, the lock, and an
 * abandoned upload.  The crash story is tests/integration/test_ingest_crash.sh.
 */
#include "repo_builder.h"

#include "strutil.h"
#include "transfer.h"
#include "writers.h"

#include <libgen.h>
#include <sys/stat.h>

static int parse(const char *text, bfs_ingest_config *c, char **msg)
{
    bfs_yaml *y = NULL;
    bfs_ingest_config_defaults(c);
    assert_int_equal(bfs_yaml_load_string(text, &y, NULL), 0);
    const bfs_yaml_node *sec = bfs_yaml_get(y, bfs_yaml_root(y), "ingest");
    assert_non_null(sec);
    int ret = bfs_ingest_config_parse(y, sec, "c.yaml", c, msg);
    bfs_yaml_free(y);
    return ret;
}

static void expect_bad(const char *text, const char *words)
{
    bfs_ingest_config c;
    char *msg = NULL;
    assert_int_equal(parse(text, &c, &msg), -EINVAL);
    assert_non_null(msg);
    if (!strstr(msg, words))
        print_error("message '%s' lacks '%s'\n", msg, words);
    assert_non_null(strstr(msg, words));
    free(msg);
    bfs_ingest_config_free(&c);
}

static void test_config(void **state)
{
    bfs_ingest_config c;
    char *msg = NULL;
    assert_int_equal(parse("ingest:\n  readonly_collections: [\"LSSTCam/raw/*\", refcats]\n"
                           "  staging: [/data/staging]\n  inbox_ttl: 2m\n  workers: 3\n", &c, &msg), 0);
    assert_int_equal(c.n_readonly_collections, 2);
    assert_string_equal(c.readonly_collections[0], "LSSTCam/raw/*");
    assert_int_equal(c.n_staging, 1);
    assert_int_equal(c.inbox_ttl_ms, 120000);
    assert_int_equal(c.workers, 3);
    assert_int_equal(c.registry_deadline_ms, 30000); /* a default kept */
    assert_true(c.check_amplifiers);                 /* the default */
    assert_false(c.create_dataset_types);
    assert_true(c.drop_pages);                       /* page_cache: drop */
    bfs_ingest_config_free(&c);
    expect_bad("ingest:\n  workers: 3\n  stagin: [/x]\n", "c.yaml:3: unknown key 'ingest.stagin'");
    expect_bad("ingest:\n  inbox_ttl: soon\n", "ingest.inbox_ttl must be a duration");
    expect_bad("ingest:\n  workers: 0\n", "ingest.workers must be a whole number from 1 to 64");
    expect_bad("ingest:\n  staging: [relative/dir]\n", "must hold absolute directories");
    expect_bad("ingest:\n  readonly_collections: A\n", "must be a list of strings");
    /* the Header Service document: a directory or a URL template, and a wait */
    assert_int_equal(parse("ingest:\n  header_service:\n    dir: /data/hs\n    wait: 30s\n"
                           "  checksums: advisory\n", &c, &msg), 0);
    assert_string_equal(c.hs_dir, "/data/hs");
    assert_null(c.hs_url);
    assert_int_equal(c.hs_wait_ms, 30000);
    assert_true(c.checksums_advisory);
    bfs_ingest_config_free(&c);
    assert_int_equal(parse("ingest:\n  header_service: {url: \"https://hs.example.org/{obsid}.header\"}\n",
                           &c, &msg), 0);
    assert_string_equal(c.hs_url, "https://hs.example.org/{obsid}.header");
    assert_int_equal(c.hs_wait_ms, 10000); /* the default */
    bfs_ingest_config_free(&c);
    expect_bad("ingest:\n  header_service: {url: \"https://x/y\"}\n", "holding {obsid}");
    expect_bad("ingest:\n  header_service: {dir: rel}\n", "ingest.header_service.dir must be an absolute path");
    expect_bad("ingest:\n  header_service: {wait: 5s}\n", "needs exactly one of dir and url");
    expect_bad("ingest:\n  header_service: {dir: /a, url: \"http://h/{obsid}\"}\n", "exactly one");
    expect_bad("ingest:\n  header_service: {dir: /a, timeout: 3s}\n", "'ingest.header_service.timeout'");
    expect_bad("ingest:\n  checksums: maybe\n", "must be strict or advisory");
    assert_int_equal(parse("ingest:\n  page_cache: keep\n", &c, &msg), 0);
    assert_false(c.drop_pages);
    bfs_ingest_config_free(&c);
    expect_bad("ingest:\n  page_cache: maybe\n", "c.yaml:2: ingest.page_cache must be drop or keep");
    assert_int_equal(parse("ingest:\n  check_amplifiers: false\n  create_dataset_types: true\n", &c, &msg), 0);
    assert_false(c.check_amplifiers);
    assert_true(c.create_dataset_types);
    bfs_ingest_config_free(&c);
    expect_bad("ingest:\n  check_amplifiers: maybe\n", "c.yaml:2: ingest.check_amplifiers must be true or false");
    /* the rules of the whole file: a key given twice is an error, "key:" keeps
     * the default, booleans as elsewhere, a leading ~ expanded */
    expect_bad("ingest:\n  workers: 3\n  staging: [/a]\n  workers: 4\n",
               "c.yaml:4: ingest.workers is given twice (first at line 2)");
    expect_bad("ingest:\n  header_service:\n    dir: /a\n    dir: /b\n",
               "c.yaml:4: ingest.header_service.dir is given twice (first at line 3)");
    char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("HOME", "/home/summit", 1);
    assert_int_equal(parse("ingest:\n  workers:\n  allow_remove: yes\n  check_amplifiers: off\n"
                           "  quarantine: ~/quarantine\n  staging: [~/oods]\n  header_service: {dir: ~/hs}\n",
                           &c, &msg), 0);
    assert_int_equal(c.workers, 2); /* the default kept */
    assert_true(c.allow_remove);
    assert_false(c.check_amplifiers);
    assert_string_equal(c.quarantine_dir, "/home/summit/quarantine");
    assert_string_equal(c.staging[0], "/home/summit/oods");
    assert_string_equal(c.hs_dir, "/home/summit/hs");
    bfs_ingest_config_free(&c);
    if (old_home)
        setenv("HOME", old_home, 1);
    else
        unsetenv("HOME");
    free(old_home);
}

/* docs/butlerfs.example.yaml's ingest: and transfer: sections parse. */
static void test_example_file(void **state)
{
    (void)state;
    char *src = strdup(__FILE__), *path = NULL;
    assert_true(asprintf(&path, "%s/../../docs/butlerfs.example.yaml", dirname(src)) > 0);
    bfs_yaml *y = NULL;
    char *msg = NULL;
    assert_int_equal(bfs_yaml_load_file(path, &y, &msg), 0);
    bfs_ingest_config c;
    bfs_ingest_config_defaults(&c);
    const bfs_yaml_node *sec = bfs_yaml_get(y, bfs_yaml_root(y), "ingest");
    assert_non_null(sec);
    if (bfs_ingest_config_parse(y, sec, path, &c, &msg) != 0)
        fail_msg("%s", msg ? msg : "?");
    assert_int_equal(c.n_staging, 2);
    assert_non_null(c.hs_dir);
    bfs_ingest_config_free(&c);
    bfs_transfer_config t;
    bfs_transfer_config_defaults(&t);
    sec = bfs_yaml_get(y, bfs_yaml_root(y), "transfer");
    assert_non_null(sec);
    if (bfs_transfer_config_parse(y, sec, path, &t, &msg) != 0)
        fail_msg("%s", msg ? msg : "?");
    bfs_transfer_config_free(&t);
    bfs_yaml_free(y);
    free(path);
    free(src);
}

struct ictx {
    struct rb_repo *repo;
    bfs_registry *reg;
    bfs_ingest_config cfg;
    bfs_ingest *ing;
};

static int setup(void **state)
{
    struct ictx *c = calloc(1, sizeof *c);
    c->repo = rb_build();
    c->reg = rb_open(c->repo, BFS_REG_WRITE);
    bfs_ingest_config_defaults(&c->cfg);
    c->cfg.readonly_collections = calloc(1, sizeof(char *));
    c->cfg.readonly_collections[0] = strdup("frozen*");
    c->cfg.n_readonly_collections = 1;
    char *msg = NULL;
    if (bfs_ingest_open(c->repo->dir, bfs_registry_datastore_root(c->reg), c->reg, &c->cfg, NULL, NULL, &c->ing, &msg) != 0) {
        print_error("%s\n", msg ? msg : "?");
        return -1;
    }
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ictx *c = *state;
    bfs_ingest_close(c->ing);
    bfs_registry_close(c->reg);
    bfs_ingest_config_free(&c->cfg);
    rb_destroy(c->repo);
    free(c);
    return 0;
}

static const char *const flat_dims[] = {"instrument", "detector", "physical_filter"};

/* Write text as a flat of detector det in run, seal, return the outcome. */
static int put_flat(struct ictx *c, const char *run, const char *det, const char *text, char id[33])
{
    const char *values[] = {"LSSTCam", det, "r_57"};
    bfs_ingest_target t = {.run = run, .dataset_type = "flat", .dim_names = flat_dims, .dim_values = values,
                           .ndims = 3, .name = "flat.txt"};
    bfs_upload *u = NULL;
    int ret = bfs_upload_begin(c->ing, &t, getuid(), &u);
    if (ret < 0)
        return ret;
    assert_int_equal(bfs_upload_pwrite(u, text, strlen(text), 0), (ssize_t)strlen(text));
    ret = bfs_upload_seal_wait(u);
    assert_int_equal(bfs_upload_seal_wait(u), ret); /* a second close: the same outcome */
    bfs_upload_info info;
    bfs_upload_stat(u, &info);
    assert_true(info.sealed);
    assert_int_equal(info.outcome, ret);
    if (ret == 0) {
        assert_non_null(info.dataset_id);
        snprintf(id, 33, "%s", info.dataset_id);
        assert_int_equal(bfs_upload_pwrite(u, "x", 1, 0), -EBADF); /* immutable once ingested */
        char back[64] = {0};
        assert_int_equal(bfs_upload_pread(u, back, sizeof back - 1, 0), (ssize_t)strlen(text));
        assert_string_equal(back, text);
    }
    bfs_upload_put(u);
    return ret;
}

static int count_files(const char *dir)
{
    char *cmd = bfs_asprintf("find '%s' -type f 2>/dev/null | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    assert_int_equal(fscanf(p, "%d", &n), 1);
    pclose(p);
    free(cmd);
    return n;
}

struct collect {
    int n;
    char path[512];
};

static int collect_cb(void *ctx, const bfs_dataset_file *f)
{
    struct collect *g = ctx;
    g->n++;
    snprintf(g->path, sizeof g->path, "%s", f->path);
    return 0;
}

static void test_path_ingest(void **state)
{
    struct ictx *c = *state;
    char id[33] = "", id2[33] = "";
    assert_int_equal(put_flat(c, "A", "2", "flat bytes\n", id), 0);
    /* the id is the Butler's deterministic one */
    const char *values[] = {"LSSTCam", "2", "r_57"};
    char want[33];
    assert_int_equal(bfs_dataset_id_v5("flat", "A", flat_dims, values, 3, want), 0);
    assert_string_equal(id, want);
    /* registered, with its file under the datastore root */
    struct collect got = {0};
    assert_int_equal(bfs_registry_refresh(c->reg), 0);
    const bfs_catalog *cat = bfs_registry_catalog(c->reg);
    const char *q[BFS_MAX_DIMS] = {"LSSTCam", "2", "r_57"};
    assert_int_equal(bfs_registry_find_files(c->reg, bfs_catalog_collection(cat, "A"),
                                             bfs_catalog_dataset_type(cat, "flat"), q, collect_cb, &got), 0);
    assert_int_equal(got.n, 1);
    char *full = bfs_asprintf("%s%s", bfs_registry_datastore_root(c->reg), got.path);
    struct stat sb;
    assert_int_equal(stat(full, &sb), 0);
    assert_int_equal(sb.st_size, 11);
    free(full);
    /* the same bytes again: success, nothing new */
    assert_int_equal(put_flat(c, "A", "2", "flat bytes\n", id2), 0);
    assert_string_equal(id2, id);
    /* other bytes at the same dataId: EEXIST, quarantined */
    char *qdir = bfs_asprintf("%s/.butlerfs/quarantine", c->repo->dir);
    assert_int_equal(put_flat(c, "A", "2", "other bytes\n", id2), -EEXIST);
    assert_int_equal(count_files(qdir), 2); /* U.data + U.reason */
    /* an unknown dimension value: ENOENT, quarantined */
    assert_int_equal(put_flat(c, "A", "77", "flat bytes\n", id2), -ENOENT);
    assert_int_equal(count_files(qdir), 4);
    free(qdir);
    /* a read-only collection takes nothing */
    assert_int_equal(put_flat(c, "frozen/run", "2", "x", id2), -EROFS);
    assert_int_equal(bfs_ingest_make_run(c->ing, "frozen/x"), -EROFS);
    /* a dataset type the registry lacks */
    const char *v1[] = {"1"};
    const char *n1[] = {"detector"};
    bfs_ingest_target t = {.run = "A", .dataset_type = "nosuch", .dim_names = n1, .dim_values = v1,
                           .ndims = 1, .name = "x"};
    bfs_upload *u = NULL;
    assert_int_equal(bfs_upload_begin(c->ing, &t, getuid(), &u), -ENOENT);
    /* an upload never written is abandoned without a trace */
    t.dataset_type = "flat";
    t.dim_names = flat_dims;
    t.dim_values = values;
    t.ndims = 3;
    assert_int_equal(bfs_upload_begin(c->ing, &t, getuid(), &u), 0);
    char *spool = bfs_asprintf("%s/.butlerfs/spool", c->repo->dir);
    assert_int_equal(count_files(spool), 2);
    bfs_upload_put(u);
    assert_int_equal(count_files(spool), 0);
    free(spool);
    bfs_ingest_stats st;
    bfs_ingest_stats_get(c->ing, &st);
    assert_int_equal(st.ingested, 1);
    assert_int_equal(st.duplicates, 1);
    assert_int_equal(st.quarantined, 2);
}

/* A file at a dataId path written again under its name (a copy run twice):
 * a new upload at the same dataId, whose seal compares; the first stays. */
static void test_path_rewrite(void **state)
{
    struct ictx *c = *state;
    const char *values[] = {"LSSTCam", "3", "r_57"};
    bfs_ingest_target t = {.run = "B", .dataset_type = "flat", .dim_names = flat_dims, .dim_values = values,
                           .ndims = 3, .name = "mine.txt"};
    const char *text = "flat bytes\n", *other = "other bytes\n";
    bfs_upload *u = NULL, *again = NULL, *third = NULL, *busy = NULL;
    assert_int_equal(bfs_upload_begin(c->ing, &t, getuid(), &u), 0);
    assert_int_equal(bfs_upload_rewrite(u, getuid(), &again), -EPERM); /* not ingested yet */
    assert_int_equal(bfs_upload_pwrite(u, text, strlen(text), 0), (ssize_t)strlen(text));
    assert_int_equal(bfs_upload_seal_wait(u), 0);
    bfs_upload_info info;
    bfs_upload_stat(u, &info);
    assert_true(info.rewritable);
    char id[33];
    snprintf(id, sizeof id, "%s", info.dataset_id);

    /* the same bytes again under the same name: a duplicate at the same dataId */
    assert_int_equal(bfs_upload_rewrite(u, getuid(), &again), 0);
    assert_int_equal(bfs_upload_rewrite(u, getuid(), &busy), -ETXTBSY); /* one writer of a name */
    assert_int_equal(bfs_upload_pwrite(again, text, strlen(text), 0), (ssize_t)strlen(text));
    assert_int_equal(bfs_upload_seal_wait(again), 0);
    bfs_upload_stat(again, &info);
    assert_string_equal(info.name, "mine.txt");
    assert_string_equal(info.dataset_type, "flat");
    assert_int_equal(info.ndims, 3);
    assert_string_equal(info.dim_values[1], "3");
    assert_string_equal(info.dataset_id, id);

    /* other bytes: EEXIST, and the name still finds the ingested upload */
    assert_int_equal(bfs_upload_rewrite(again, getuid(), &third), 0);
    assert_int_equal(bfs_upload_pwrite(third, other, strlen(other), 0), (ssize_t)strlen(other));
    assert_int_equal(bfs_upload_seal_wait(third), -EEXIST);
    assert_int_equal(bfs_upload_rewrite(third, getuid(), &busy), -EPERM); /* refused: not a dataset's name */
    bfs_upload *found = NULL;
    assert_int_equal(bfs_upload_find(c->ing, &t, &found), 0);
    assert_ptr_equal(found, again);
    bfs_upload_put(found);

    /* rm of the name removes the name alone */
    assert_int_equal(bfs_upload_discard(again), 0);
    assert_int_equal(bfs_upload_find(c->ing, &t, &found), -ENOENT);
    bfs_ingest_stats st;
    bfs_ingest_stats_get(c->ing, &st);
    assert_int_equal(st.ingested, 1);
    assert_int_equal(st.duplicates, 1);
    assert_int_equal(st.quarantined, 1);
    bfs_upload_put(third);
    bfs_upload_put(again);
    bfs_upload_put(u);
}

struct collect_ck {
    char checksum[129];
    char path[512];
};

static int collect_ck_cb(void *ctx, const bfs_dataset_file *f)
{
    struct collect_ck *g = ctx;
    snprintf(g->checksum, sizeof g->checksum, "%s", f->checksum ? f->checksum : "");
    snprintf(g->path, sizeof g->path, "%s", f->path);
    return 0;
}

enum { CK_SIZE = 11 << 20, CK_WRITE = 128 << 10 };

/* Write buf into detector det as pattern says, seal, and check that the
 * registered checksum is the placed file's. */
static void put_and_check(struct ictx *c, const char *det, const unsigned char *buf, int pattern)
{
    const char *values[] = {"LSSTCam", det, "r_57"};
    bfs_ingest_target t = {.run = "ck", .dataset_type = "flat", .dim_names = flat_dims, .dim_values = values,
                           .ndims = 3, .name = "flat.dat"};
    bfs_upload *u = NULL;
    assert_int_equal(bfs_upload_begin(c->ing, &t, getuid(), &u), 0);
    for (off_t off = 0; off < CK_SIZE; off += CK_WRITE) {
        if (pattern == 1 && off == CK_SIZE / 2)
            usleep(200000); /* the hasher catches up, then ... */
        assert_int_equal(bfs_upload_pwrite(u, buf + off, CK_WRITE, off), CK_WRITE);
    }
    if (pattern == 1) {
        /* ... a write behind it (bytes it has hashed) */
        usleep(200000);
        assert_int_equal(bfs_upload_pwrite(u, "changed", 7, 4096), 7);
    } else if (pattern == 2) {
        /* a shrink, then the tail written again */
        usleep(200000);
        assert_int_equal(bfs_upload_truncate(u, 1000), 0);
        assert_int_equal(bfs_upload_pwrite(u, buf + 1000, CK_SIZE - 1000, 1000), CK_SIZE - 1000);
    }
    assert_int_equal(bfs_upload_seal_wait(u), 0);
    bfs_upload_put(u);

    struct collect_ck got = {0};
    assert_true(bfs_registry_refresh(c->reg) >= 0);
    const bfs_catalog *cat = bfs_registry_catalog(c->reg);
    assert_int_equal(bfs_registry_find_files(c->reg, bfs_catalog_collection(cat, "ck"),
                                             bfs_catalog_dataset_type(cat, "flat"), values, collect_ck_cb, &got), 0);
    char *full = bfs_asprintf("%s%s", bfs_registry_datastore_root(c->reg), got.path);
    int fd = open(full, O_RDONLY);
    assert_true(fd >= 0);
    char want[129];
    assert_int_equal(bfs_file_checksum(fd, CK_SIZE, want), 0);
    close(fd);
    free(full);
    assert_string_equal(got.checksum, want);
}

/* The checksum built while the bytes arrive equals the file's, whichever
 * way they arrived. */
static void test_streamed_checksum(void **state)
{
    struct ictx *c = *state;
    unsigned char *buf = malloc(CK_SIZE);
    for (size_t i = 0; i < CK_SIZE; i++)
        buf[i] = (unsigned char)(i * 2654435761u >> 13);
    assert_true(bfs_ingest_make_run(c->ing, "ck") >= 0);
    put_and_check(c, "1", buf, 0); /* in order */
    put_and_check(c, "2", buf, 1); /* a write behind the hasher */
    put_and_check(c, "3", buf, 2); /* truncated and written again */
    free(buf);
}

static void test_lock(void **state)
{
    struct ictx *c = *state;
    bfs_ingest *second = NULL;
    char *msg = NULL;
    assert_int_equal(bfs_ingest_open(c->repo->dir, bfs_registry_datastore_root(c->reg), c->reg, &c->cfg, NULL, NULL,
                                     &second, &msg), -EBUSY);
    assert_null(second);
    assert_non_null(strstr(msg, "another butlerfs -o rw mount serves"));
    free(msg);
    struct stat sb;
    char *dir = bfs_asprintf("%s/.butlerfs", c->repo->dir);
    assert_int_equal(stat(dir, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_example_file),
        cmocka_unit_test_setup_teardown(test_path_ingest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_rewrite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_streamed_checksum, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
