/*
 * test_source.c - where a location may lead (fetchers/source.c): locations
 * judged after percent-decoding, local files served only under the
 * datastore root, the local replicas and allowed_roots (symlinks resolved),
 * remote URLs fetched only under the datastore root and the configured
 * replicas.
 *
 * Every test works in its own temp dir: ROOT/ (the datastore root),
 * OUT/ (outside it), CFG (a configuration file).  The remote cases use
 * 127.0.0.1:1, where nothing listens: a refusal is -EACCES at once, a
 * location that was allowed fails otherwise.
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

#include "config.h"
#include "source.h"
#include "strutil.h"

struct ctx {
    char dir[64];
    char root[128];   /* dir/root/ */
    char out[128];    /* dir/out */
};

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb, (void)type, (void)ftw;
    return remove(path);
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof *c);
    snprintf(c->dir, sizeof c->dir, "/tmp/bfs_sourceXXXXXX");
    if (!mkdtemp(c->dir))
        return -1;
    snprintf(c->root, sizeof c->root, "%s/root/", c->dir);
    snprintf(c->out, sizeof c->out, "%s/out", c->dir);
    char p[256];
    mkdir(c->root, 0755);
    mkdir(c->out, 0755);
    snprintf(p, sizeof p, "%s/a", c->root);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%sa/in.fits", c->root);
    put(p, "inside");
    snprintf(p, sizeof p, "%s/secret.fits", c->out);
    put(p, "secret");
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    nftw(c->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(c);
    return 0;
}

/* A fetcher with the configuration text (NULL: defaults); *cfg is kept for
 * the fetcher's lifetime. */
static bfs_fetcher *fetcher(struct ctx *c, const char *yaml, bfs_config *cfg)
{
    bfs_fetcher *f = NULL;
    if (!yaml) {
        assert_int_equal(bfs_fetcher_new(NULL, &f), 0);
        return f;
    }
    char path[256];
    snprintf(path, sizeof path, "%s/config.yaml", c->dir);
    put(path, yaml);
    char *msg = NULL;
    int ret = bfs_config_load(path, cfg, &msg);
    if (ret < 0)
        fail_msg("config: %s", msg ? msg : "?");
    assert_int_equal(bfs_fetcher_new(cfg, &f), 0);
    return f;
}

/* bfs_source_open's result, closing what it opened; *text gets the first
 * bytes when it opened. */
static int try_open(bfs_fetcher *f, const char *root, const char *location, char *text, size_t n)
{
    bfs_source *s = NULL;
    int ret = bfs_source_open(f, root, location, -1, NULL, &s);
    if (ret == 0) {
        ssize_t k = bfs_source_pread(s, text, n - 1, 0);
        text[k > 0 ? k : 0] = '\0';
        bfs_source_close(s);
    }
    return ret;
}

static void test_uri_judged_decoded(void **state)
{
    (void)state;
    static const char *refused[] = {
        "%2e%2e/OUTSIDE.txt", "%2E%2E/x", "a/%2e%2E/b", ".%2e/x", "a/../b", "..", "a/.", "./a",
        "a/..\\b", "a\\..\\b", "..%2fx", "a%2Fb", "a%5cb", "a%5C..%5Cb", "a/%00.fits",
        "http://h/data/sec/%2e%2e/x", "https://h/a/../b", "x/%2e%2e/y://z", "../a://b", "s3://b/p/%2E%2E/k", "file:///r/%2e%2e/etc",
    };
    static const char *fine[] = {
        "a/b.fits", "a/..b/c", "a/b../c", "a/.../c", "a%20b.fits", "a/.hidden", "x%zz", "%2e%2e%2e/x",
        "http://h/data/sec/x.fits",
    };
    char *out;
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        if (bfs_source_uri("http://h/data/sec/", refused[i], &out) != -EACCES)
            fail_msg("location %s was not refused", refused[i]);
        assert_null(out);
    }
    for (size_t i = 0; i < sizeof fine / sizeof *fine; i++) {
        if (bfs_source_uri("http://h/data/sec/", fine[i], &out) != 0)
            fail_msg("location %s was refused", fine[i]);
        free(out);
    }
    assert_int_equal(bfs_source_uri("http://h/data/sec/", "a/b.fits", &out), 0);
    assert_string_equal(out, "http://h/data/sec/a/b.fits");
    free(out);
}

static void test_local_confined(void **state)
{
    struct ctx *c = *state;
    bfs_fetcher *f = fetcher(c, NULL, NULL);
    char text[32], loc[512];
    assert_int_equal(try_open(f, c->root, "a/in.fits", text, sizeof text), 0);
    assert_string_equal(text, "inside");
    assert_int_equal(try_open(f, c->root, "a/missing.fits", text, sizeof text), -ENOENT);
    /* absolute, under the root: served in both spellings */
    snprintf(loc, sizeof loc, "file://%sa/in.fits", c->root);
    assert_int_equal(try_open(f, c->root, loc, text, sizeof text), 0);
    snprintf(loc, sizeof loc, "%sa/in.fits", c->root);
    assert_int_equal(try_open(f, c->root, loc, text, sizeof text), 0);
    /* outside: refused in both spellings, existing or not */
    snprintf(loc, sizeof loc, "file://%s/secret.fits", c->out);
    assert_int_equal(try_open(f, c->root, loc, text, sizeof text), -EACCES);
    snprintf(loc, sizeof loc, "%s/secret.fits", c->out);
    assert_int_equal(try_open(f, c->root, loc, text, sizeof text), -EACCES);
    snprintf(loc, sizeof loc, "%s/none.fits", c->out);
    assert_int_equal(try_open(f, c->root, loc, text, sizeof text), -EACCES);
    assert_int_equal(try_open(f, c->root, "file:///etc/passwd", text, sizeof text), -EACCES);
    assert_int_equal(try_open(f, c->root, "/etc/passwd", text, sizeof text), -EACCES);
    assert_int_equal(try_open(f, c->root, "file://localhost/etc/passwd", text, sizeof text), -EACCES);
    /* a root that is a prefix of another directory's name is no parent of it */
    char sib[256];
    snprintf(sib, sizeof sib, "%.*s2", (int)strlen(c->root) - 1, c->root);
    mkdir(sib, 0755);
    snprintf(loc, sizeof loc, "%s/x.fits", sib);
    put(loc, "sibling");
    assert_int_equal(try_open(f, c->root, loc, text, sizeof text), -EACCES);
    /* a symlink inside the root that leads out, at the end or in the middle */
    char link[256], target[256];
    snprintf(link, sizeof link, "%sa/link.fits", c->root);
    snprintf(target, sizeof target, "%s/secret.fits", c->out);
    assert_int_equal(symlink(target, link), 0);
    assert_int_equal(try_open(f, c->root, "a/link.fits", text, sizeof text), -EACCES);
    snprintf(link, sizeof link, "%sdirlink", c->root);
    assert_int_equal(symlink(c->out, link), 0);
    assert_int_equal(try_open(f, c->root, "dirlink/secret.fits", text, sizeof text), -EACCES);
    /* a symlink that stays inside is fine */
    snprintf(link, sizeof link, "%sa/same.fits", c->root);
    assert_int_equal(symlink("in.fits", link), 0);
    assert_int_equal(try_open(f, c->root, "a/same.fits", text, sizeof text), 0);
    assert_string_equal(text, "inside");
    /* only regular files: a FIFO would block the open */
    snprintf(link, sizeof link, "%sa/fifo.fits", c->root);
    assert_int_equal(mkfifo(link, 0644), 0);
    assert_int_equal(try_open(f, c->root, "a/fifo.fits", text, sizeof text), -EACCES);
    /* the size without reading follows the same rules */
    int64_t size = 0;
    assert_int_equal(bfs_source_stat_size(f, c->root, "a/in.fits", &size), 0);
    assert_int_equal(size, 6);
    snprintf(loc, sizeof loc, "%s/secret.fits", c->out);
    assert_int_equal(bfs_source_stat_size(f, c->root, loc, &size), -EACCES);
    assert_int_equal(bfs_source_stat_size(f, c->root, "a/link.fits", &size), -EACCES);
    bfs_fetcher_free(f);
}

static void test_allowed_roots(void **state)
{
    struct ctx *c = *state;
    char yaml[512], loc[256], text[32];
    snprintf(yaml, sizeof yaml, "allowed_roots:\n  - %s/\n", c->out);
    bfs_config cfg;
    bfs_fetcher *f = fetcher(c, yaml, &cfg);
    assert_int_equal(cfg.n_allowed_roots, 1);
    assert_string_equal(cfg.allowed_roots[0], c->out);
    snprintf(loc, sizeof loc, "file://%s/secret.fits", c->out);
    assert_int_equal(try_open(f, c->root, loc, text, sizeof text), 0);
    assert_string_equal(text, "secret");
    snprintf(loc, sizeof loc, "%s/secret.fits", c->out);
    assert_int_equal(try_open(f, c->root, loc, text, sizeof text), 0);
    char link[256], target[256];
    snprintf(link, sizeof link, "%sa/link.fits", c->root);
    snprintf(target, sizeof target, "%s/secret.fits", c->out);
    assert_int_equal(symlink(target, link), 0);
    assert_int_equal(try_open(f, c->root, "a/link.fits", text, sizeof text), 0);
    /* still nothing else, and no symlink out of the allowed root either */
    assert_int_equal(try_open(f, c->root, "file:///etc/passwd", text, sizeof text), -EACCES);
    snprintf(link, sizeof link, "%s/passwd", c->out);
    assert_int_equal(symlink("/etc/passwd", link), 0);
    snprintf(loc, sizeof loc, "%s/passwd", c->out);
    assert_int_equal(try_open(f, c->root, loc, text, sizeof text), -EACCES);
    bfs_fetcher_free(f);
    bfs_config_free(&cfg);

    /* a local replica of a remote prefix is a place files may come from */
    snprintf(yaml, sizeof yaml,
             "sources:\n  - prefix: s3://bucket/\n    replicas:\n      - file://%s/\n", c->out);
    f = fetcher(c, yaml, &cfg);
    assert_int_equal(try_open(f, c->root, "s3://bucket/secret.fits", text, sizeof text), 0);
    assert_string_equal(text, "secret");
    assert_int_equal(try_open(f, "s3://bucket/", "secret.fits", text, sizeof text), 0);
    bfs_fetcher_free(f);
    bfs_config_free(&cfg);

    /* wrong types */
    char path[256], *msg = NULL;
    snprintf(path, sizeof path, "%s/bad.yaml", c->dir);
    put(path, "allowed_roots: /data\n");
    assert_int_equal(bfs_config_load(path, &cfg, &msg), -EINVAL);
    assert_non_null(strstr(msg, "allowed_roots: expected a list of directories"));
    put(path, "allowed_roots:\n  - https://h/x/\n");
    assert_int_equal(bfs_config_load(path, &cfg, &msg), -EINVAL);
    assert_non_null(strstr(msg, "sources:"));
    free(msg);
}

static void test_remote_confined(void **state)
{
    struct ctx *c = *state;
    char yaml[1024], text[32];
    snprintf(yaml, sizeof yaml,
             "cache:\n  dir: %s/cache\n  min_free: 1MiB\n"
             "fetch:\n  attempts: 1\n  deadline: 2s\n  connect_timeout: 1s\n"
             "sources:\n  - prefix: s3://bucket/\n    replicas:\n      - http://127.0.0.1:1/mirror/\n",
             c->dir);
    bfs_config cfg;
    bfs_fetcher *f = fetcher(c, yaml, &cfg);
    const char *root = "http://127.0.0.1:1/data/sec/";
    /* refused before any request */
    assert_int_equal(try_open(f, root, "%2e%2e/OUTSIDE.txt", text, sizeof text), -EACCES);
    assert_int_equal(try_open(f, root, "http://127.0.0.1:1/data/OUTSIDE.txt", text, sizeof text), -EACCES);
    assert_int_equal(try_open(f, root, "http://127.0.0.1:1/data/sec2/x", text, sizeof text), -EACCES);
    assert_int_equal(try_open(f, root, "http://evil.example/x", text, sizeof text), -EACCES);
    assert_int_equal(try_open(f, root, "s3://other/x", text, sizeof text), -EACCES);
    assert_int_equal(try_open(f, root, "http://127.0.0.1:1/mirror2/x", text, sizeof text), -EACCES);
    int64_t size;
    assert_int_equal(bfs_source_stat_size(f, root, "http://evil.example/x", &size), -EACCES);
    /* allowed: tried (and failing, nobody listens), never refused */
    assert_int_not_equal(try_open(f, root, "a/x.fits", text, sizeof text), -EACCES);
    assert_int_not_equal(try_open(f, root, "http://127.0.0.1:1/data/sec/x", text, sizeof text), -EACCES);
    assert_int_not_equal(try_open(f, root, "s3://bucket/x", text, sizeof text), -EACCES);
    assert_int_not_equal(try_open(f, root, "http://127.0.0.1:1/mirror/x", text, sizeof text), -EACCES);
    bfs_fetcher_free(f);
    bfs_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uri_judged_decoded),
        cmocka_unit_test_setup_teardown(test_local_confined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_allowed_roots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remote_confined, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
