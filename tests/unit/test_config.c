/*
 * test_config.c - the YAML document API, size and duration parsing, the
 * configuration file and source-chain resolution (common/config.c).
 *
 * Every test that loads a file writes it into its own temp dir; the
 * default-location tests point XDG_CONFIG_HOME there, so nothing of the
 * user's real configuration is ever read.
 */
#include <errno.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
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

#include "config.h"
#include "strutil.h"

#define KiB (1LL << 10)
#define MiB (1LL << 20)
#define GiB (1LL << 30)

/* ---- helpers ------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb, (void)type, (void)ftw;
    return remove(path);
}

static int setup_dir(void **state)
{
    char *dir = strdup("/tmp/bfs_configXXXXXX");
    if (!dir || !mkdtemp(dir))
        return -1;
    *state = dir;
    return 0;
}

static int teardown_dir(void **state)
{
    nftw(*state, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(*state);
    return 0;
}

/* Write text to dir/name; returns the malloc'd path. */
static char *write_file(const char *dir, const char *name, const char *text)
{
    char *path;
    assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Load text as a config file; returns bfs_config_load's result, *msg the message. */
static int load_text(const char *dir, const char *text, bfs_config *c, char **msg)
{
    char *path = write_file(dir, "config.yaml", text);
    *msg = NULL;
    int ret = bfs_config_load(path, c, msg);
    free(path);
    return ret;
}

/* Loading text fails with -EINVAL and a message that contains every
 * given fragment (NULL-terminated). */
static void expect_error(const char *dir, const char *text, ...)
{
    bfs_config c;
    char *msg = NULL;
    int ret = load_text(dir, text, &c, &msg);
    if (ret != -EINVAL)
        fail_msg("expected -EINVAL, got %d for:\n%s", ret, text);
    assert_non_null(msg);
    va_list ap;
    va_start(ap, text);
    for (const char *frag; (frag = va_arg(ap, const char *)) != NULL;)
        if (!strstr(msg, frag))
            fail_msg("message '%s' lacks '%s'", msg, frag);
    va_end(ap);
    /* a failed load leaves the defaults, nothing owned */
    assert_int_equal(c.parallel, 4);
    assert_null(c.rules);
    assert_null(c.path);
    bfs_config_free(&c);
    free(msg);
}

/* ---- sizes and durations -------------------------------------------------- */

static void test_parse_size(void **state)
{
    (void)state;
    static const struct { const char *s; int64_t v; } good[] = {
        {"4MiB", 4 * MiB}, {"20GiB", 20 * GiB}, {"512k", 512 * KiB}, {"512K", 512 * KiB},
        {"1G", GiB}, {"1g", GiB}, {"1048576", 1048576}, {"0", 0}, {"100B", 100},
        {"64KiB", 64 * KiB}, {"4 MiB", 4 * MiB}, {"512m", 512 * MiB}, {"1KB", 1000},
        {"1kB", 1000}, {"2MB", 2000000}, {"1GB", 1000000000}, {"1TiB", 1LL << 40},
        {"8388607T", 8388607LL << 40},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int64_t v = -1;
        if (!bfs_parse_size(good[i].s, &v))
            fail_msg("'%s' rejected", good[i].s);
        assert_int_equal(v, good[i].v);
    }
    static const char *bad[] = {
        "", "MiB", "-1", "+4MiB", "4XB", "4.5MiB", "4mib", "4 ", " 4", "4MiBs", "0x10",
        "99999999999999999999", "9223372036854775807KiB", "8388608T", "1e6", "4 M iB",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = 12345;
        if (bfs_parse_size(bad[i], &v))
            fail_msg("'%s' accepted as %lld", bad[i], (long long)v);
    }
    int64_t v;
    assert_false(bfs_parse_size(NULL, &v));
}

static void test_parse_duration(void **state)
{
    (void)state;
    static const struct { const char *s; int64_t ms; } good[] = {
        {"30s", 30000}, {"500ms", 500}, {"1m", 60000}, {"2min", 120000}, {"2", 2000},
        {"0", 0}, {"1h", 3600000}, {"1d", 86400000}, {"100 ms", 100}, {"0ms", 0},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int64_t v = -1;
        if (!bfs_parse_duration_ms(good[i].s, &v))
            fail_msg("'%s' rejected", good[i].s);
        assert_int_equal(v, good[i].ms);
    }
    static const char *bad[] = {
        "", "s", "-1s", "1.5s", "10 sec", "1y", "5S", "5 s s", "ms", "9223372036854775807s",
        "99999999999999999999",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t v = 12345;
        if (bfs_parse_duration_ms(bad[i], &v))
            fail_msg("'%s' accepted as %lld", bad[i], (long long)v);
    }
}

/* ---- YAML documents ------------------------------------------------------- */

static void test_yaml_api(void **state)
{
    (void)state;
    const char *text =
        "registry:\n"
        "  db: sqlite:///x\n"
        "datastore:\n"
        "  records:\n"
        "    table: recs\n"
        "list:\n"
        "  - a\n"
        "  - 'b'\n"
        "empty:\n"
        "quoted: '~'\n"
        "dotted.key: 1\n";
    bfs_yaml *y = NULL;
    char *msg = NULL;
    assert_int_equal(bfs_yaml_load_string(text, &y, &msg), 0);
    assert_null(msg);
    const bfs_yaml_node *root = bfs_yaml_root(y);
    assert_true(bfs_yaml_is_map(y, root));
    assert_false(bfs_yaml_is_seq(y, root));
    assert_int_equal(bfs_yaml_len(y, root), 6);
    assert_string_equal(bfs_yaml_key(y, root, 0), "registry");
    assert_string_equal(bfs_yaml_key(y, root, 5), "dotted.key");
    assert_null(bfs_yaml_key(y, root, 6));
    assert_null(bfs_yaml_item(y, root, 6));

    assert_string_equal(bfs_yaml_scalar(y, bfs_yaml_get(y, root, "registry.db")), "sqlite:///x");
    const bfs_yaml_node *t = bfs_yaml_get(y, root, "datastore.records.table");
    assert_string_equal(bfs_yaml_scalar(y, t), "recs");
    assert_int_equal(bfs_yaml_line(y, t), 5);
    assert_null(bfs_yaml_get(y, root, "datastore.records.missing"));
    assert_null(bfs_yaml_get(y, root, "registry.db.deeper"));
    assert_null(bfs_yaml_get(y, root, "dotted.key")); /* paths split at dots */
    /* a mapping is not a scalar */
    assert_null(bfs_yaml_scalar(y, bfs_yaml_get(y, root, "datastore")));

    const bfs_yaml_node *list = bfs_yaml_get(y, root, "list");
    assert_true(bfs_yaml_is_seq(y, list));
    assert_int_equal(bfs_yaml_len(y, list), 2);
    assert_string_equal(bfs_yaml_scalar(y, bfs_yaml_item(y, list, 0)), "a");
    assert_string_equal(bfs_yaml_scalar(y, bfs_yaml_item(y, list, 1)), "b");
    assert_int_equal(bfs_yaml_line(y, bfs_yaml_item(y, list, 1)), 8);
    assert_null(bfs_yaml_key(y, list, 0));

    assert_true(bfs_yaml_is_null(y, bfs_yaml_get(y, root, "empty")));
    assert_true(bfs_yaml_is_null(y, NULL));
    assert_false(bfs_yaml_is_null(y, bfs_yaml_get(y, root, "quoted")));
    assert_false(bfs_yaml_is_null(y, list));

    /* NULL nodes are "missing" everywhere */
    assert_null(bfs_yaml_scalar(y, NULL));
    assert_false(bfs_yaml_is_map(y, NULL));
    assert_int_equal(bfs_yaml_len(y, NULL), 0);
    assert_int_equal(bfs_yaml_line(y, NULL), 0);
    assert_null(bfs_yaml_get(y, NULL, "a"));
    bfs_yaml_free(y);

    /* an empty document has no root */
    assert_int_equal(bfs_yaml_load_string("", &y, &msg), 0);
    assert_null(bfs_yaml_root(y));
    bfs_yaml_free(y);
    bfs_yaml_free(NULL);

    /* syntax errors: "FILE:LINE: problem" */
    assert_int_equal(bfs_yaml_load_string("a: 1\nb: [x\nc: 2\n", &y, &msg), -EINVAL);
    assert_null(y);
    assert_non_null(msg);
    assert_true(bfs_startswith(msg, "<string>:"));
    assert_non_null(strstr(msg, "did not find expected"));
    free(msg);
    msg = NULL;

    /* the stream form fills the parts for callers with their own wording */
    FILE *f = fmemopen((void *)"a: 1\n  b: 2\n", 12, "r");
    bfs_yaml_error err;
    assert_int_equal(bfs_yaml_load_stream(f, "mem.yaml", &y, &msg, &err), -EINVAL);
    fclose(f);
    assert_int_equal(err.line, 2);
    assert_string_equal(err.problem, "mapping values are not allowed in this context");
    char want[sizeof err.problem + 32];
    snprintf(want, sizeof want, "mem.yaml:2: %s", err.problem);
    assert_string_equal(msg, want);
    free(msg);
    msg = NULL;

    assert_int_equal(bfs_yaml_load_file("/nonexistent/bfs.yaml", &y, &msg), -ENOENT);
    assert_non_null(strstr(msg, "/nonexistent/bfs.yaml"));
    free(msg);
}

/* ---- loading -------------------------------------------------------------- */

/* The full example, naming ca.pem and token in dir (they must exist). */
static char *full_example(const char *dir)
{
    char *text;
    assert_true(asprintf(&text,
                         "cache:\n"
                         "  dir: /var/cache/bfs\n"
                         "  max_size: 20GiB\n"
                         "  min_free: 2GiB\n"
                         "  block_size: 1MiB\n"
                         "fetch:\n"
                         "  readahead: 32MiB\n"
                         "  parallel: 8\n"
                         "  memory_budget: 512MiB\n"
                         "  connect_timeout: 2s\n"
                         "  request_timeout: 1m\n"
                         "  low_speed_limit: 4KiB\n"
                         "  low_speed_time: 20s\n"
                         "  attempts: 6\n"
                         "  backoff_base: 250ms\n"
                         "  backoff_max: 10s\n"
                         "  deadline: 2m\n"
                         "  replica_retry: 45s\n"
                         "  tls_verify: false\n"
                         "  ca_file: %s/ca.pem\n"
                         "  token_file: %s/token\n"
                         "  s3_profile: rubin\n"
                         "sources:\n"
                         "  - prefix: s3://rubin-summit/\n"
                         "    replicas:\n"
                         "      - file:///summit/cache/\n"
                         "      - https://mirror.example.org/rubin-summit/\n"
                         "      - s3://rubin-summit/\n"
                         "  - prefix: https://data.lsst.cloud/repo\n"
                         "    replicas: [/local/repo, 'https://data.lsst.cloud/repo']\n",
                         dir, dir) > 0);
    return text;
}

static void test_load_full(void **state)
{
    const char *dir = *state;
    free(write_file(dir, "ca.pem", "-----BEGIN CERTIFICATE-----\n"));
    free(write_file(dir, "token", "t0ken\n"));
    char *text = full_example(dir), *want;
    bfs_config c;
    char *msg;
    assert_int_equal(load_text(dir, text, &c, &msg), 0);
    free(text);
    assert_null(msg);
    assert_string_equal(c.cache_dir, "/var/cache/bfs");
    assert_int_equal(c.cache_max_bytes, 20 * GiB);
    assert_int_equal(c.cache_min_free, 2 * GiB);
    assert_int_equal(c.block_size, MiB);
    assert_int_equal(c.readahead_max, 32 * MiB);
    assert_int_equal(c.parallel, 8);
    assert_int_equal(c.memory_budget, 512 * MiB);
    assert_int_equal(c.connect_timeout_ms, 2000);
    assert_int_equal(c.request_timeout_ms, 60000);
    assert_int_equal(c.low_speed_bytes, 4096);
    assert_int_equal(c.low_speed_time_ms, 20000);
    assert_int_equal(c.max_attempts, 6);
    assert_int_equal(c.backoff_base_ms, 250);
    assert_int_equal(c.backoff_max_ms, 10000);
    assert_int_equal(c.deadline_ms, 120000);
    assert_int_equal(c.replica_retry_ms, 45000);
    assert_false(c.tls_verify);
    assert_true(asprintf(&want, "%s/ca.pem", dir) > 0);
    assert_string_equal(c.ca_file, want);
    free(want);
    assert_true(asprintf(&want, "%s/token", dir) > 0);
    assert_string_equal(c.token_file, want);
    free(want);
    assert_string_equal(c.s3_profile, "rubin");
    assert_int_equal(c.n_rules, 2);
    assert_string_equal(c.rules[0].prefix, "s3://rubin-summit/");
    assert_int_equal(c.rules[0].n_replicas, 3);
    assert_string_equal(c.rules[0].replicas[0], "file:///summit/cache/");
    assert_string_equal(c.rules[0].replicas[1], "https://mirror.example.org/rubin-summit/");
    assert_string_equal(c.rules[0].replicas[2], "s3://rubin-summit/");
    /* normalized: trailing '/', a path becomes a file:// URI */
    assert_string_equal(c.rules[1].prefix, "https://data.lsst.cloud/repo/");
    assert_int_equal(c.rules[1].n_replicas, 2);
    assert_string_equal(c.rules[1].replicas[0], "file:///local/repo/");
    assert_string_equal(c.rules[1].replicas[1], "https://data.lsst.cloud/repo/");
    assert_non_null(c.path);
    assert_non_null(strstr(c.path, "config.yaml"));
    bfs_config_free(&c);
    assert_null(c.rules);
    bfs_config_free(&c); /* harmless twice */
}

static void check_defaults(const bfs_config *c)
{
    assert_null(c->cache_dir);
    assert_int_equal(c->cache_max_bytes, 10 * GiB);
    assert_int_equal(c->cache_min_free, GiB);
    assert_int_equal(c->block_size, 4 * MiB);
    assert_int_equal(c->readahead_max, 64 * MiB);
    assert_int_equal(c->memory_budget, 256 * MiB);
    assert_int_equal(c->connect_timeout_ms, 5000);
    assert_int_equal(c->request_timeout_ms, 30000);
    assert_int_equal(c->low_speed_bytes, 1024);
    assert_int_equal(c->low_speed_time_ms, 10000);
    assert_int_equal(c->max_attempts, 4);
    assert_int_equal(c->backoff_base_ms, 100);
    assert_int_equal(c->backoff_max_ms, 5000);
    assert_int_equal(c->deadline_ms, 60000);
    assert_int_equal(c->replica_retry_ms, 30000);
    assert_true(c->warn_failure_rate == 0.05);
    assert_true(c->tls_verify);
    assert_null(c->ca_file);
    assert_null(c->token_file);
    assert_null(c->s3_profile);
}

static void test_defaults(void **state)
{
    bfs_config c;
    bfs_config_defaults(&c);
    check_defaults(&c);
    assert_int_equal(c.parallel, 4);
    assert_int_equal(c.n_rules, 0);
    assert_null(c.path);
    bfs_config_free(&c);

    /* absent keys keep their defaults */
    char *msg;
    assert_int_equal(load_text(*state, "fetch:\n  parallel: 8\n", &c, &msg), 0);
    check_defaults(&c);
    assert_int_equal(c.parallel, 8);
    assert_int_equal(c.n_rules, 0);
    bfs_config_free(&c);

    /* empty file, comments only, empty sections, explicit nulls */
    static const char *empties[] = {
        "", "# nothing\n", "cache:\nfetch:\nsources:\n", "cache: {}\nfetch: {}\nsources: []\n",
        "fetch:\n  parallel: ~\n  ca_file:\n  tls_verify: null\n",
    };
    for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
        assert_int_equal(load_text(*state, empties[i], &c, &msg), 0);
        check_defaults(&c);
        assert_int_equal(c.parallel, 4);
        assert_int_equal(c.n_rules, 0);
        bfs_config_free(&c);
    }
}

static void test_tilde(void **state)
{
    const char *dir = *state;
    char *old = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("HOME", dir, 1);
    free(write_file(dir, "ca.pem", ""));
    free(write_file(dir, "token", ""));
    bfs_config c;
    char *msg;
    int ret = load_text(dir,
                        "cache:\n  dir: '~'\nfetch:\n  token_file: ~/token\n"
                        "  ca_file: ~/ca.pem\nsources:\n  - prefix: ~/repo\n    replicas: [~/mirror/]\n",
                        &c, &msg);
    /* the file name itself is expanded too */
    bfs_config c2;
    char *msg2 = NULL;
    int ret2 = bfs_config_load("~/config.yaml", &c2, &msg2);
    if (old)
        setenv("HOME", old, 1);
    else
        unsetenv("HOME");
    free(old);
    assert_int_equal(ret, 0);
    assert_int_equal(ret2, 0);
    assert_null(msg2);
    assert_string_equal(c2.cache_dir, c.cache_dir);
    bfs_config_free(&c2);
    char want[PATH_MAX];
    assert_string_equal(c.cache_dir, dir);
    snprintf(want, sizeof want, "%s/token", dir);
    assert_string_equal(c.token_file, want);
    snprintf(want, sizeof want, "%s/ca.pem", dir);
    assert_string_equal(c.ca_file, want);
    snprintf(want, sizeof want, "file://%s/repo/", dir);
    assert_string_equal(c.rules[0].prefix, want);
    snprintf(want, sizeof want, "file://%s/mirror/", dir);
    assert_string_equal(c.rules[0].replicas[0], want);
    bfs_config_free(&c);
}

/* Relative paths are relative to the configuration file's directory (the
 * daemon runs in "/"), whatever the current directory is. */
static void test_relative_paths(void **state)
{
    const char *dir = *state;
    char sub[PATH_MAX];
    snprintf(sub, sizeof sub, "%s/etc", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    free(write_file(sub, "ca.pem", ""));
    char *path = write_file(sub, "config.yaml", "cache:\n  dir: cache\nfetch:\n  ca_file: ./ca.pem\n");
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    bfs_config c;
    char *msg = NULL;
    int ret = bfs_config_load("etc/config.yaml", &c, &msg); /* a relative file name, too */
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(ret, 0);
    char want[PATH_MAX + 16];
    snprintf(want, sizeof want, "%s/cache", sub);
    assert_string_equal(c.cache_dir, want);
    snprintf(want, sizeof want, "%s/./ca.pem", sub);
    assert_string_equal(c.ca_file, want);
    bfs_config_free(&c);
    free(path);
}

/* registry: (PostgreSQL registries): defaults, values with units, ranges */
static void test_registry_section(void **state)
{
    bfs_config c;
    char *msg;
    bfs_config_defaults(&c);
    assert_int_equal(c.reg_connections, 4);
    assert_int_equal(c.reg_idle_close_ms, 60000);
    assert_int_equal(c.reg_connect_timeout_ms, 10000);
    assert_int_equal(c.reg_statement_timeout_ms, 30000);
    bfs_config_free(&c);
    assert_int_equal(load_text(*state,
                               "registry:\n  connections: 2\n  idle_close: 5m\n  connect_timeout: 1500ms\n"
                               "  statement_timeout: 3s\n", &c, &msg), 0);
    assert_int_equal(c.reg_connections, 2);
    assert_int_equal(c.reg_idle_close_ms, 300000);
    assert_int_equal(c.reg_connect_timeout_ms, 1500);
    assert_int_equal(c.reg_statement_timeout_ms, 3000);
    bfs_config_free(&c);
    const char *dir = *state;
    expect_error(dir, "registry:\n  connections: 0\n", "config.yaml:2:", "registry.connections", "range", NULL);
    expect_error(dir, "registry:\n  statement_timeout: forever\n", "config.yaml:2:", "registry.statement_timeout",
                 NULL);
    expect_error(dir, "registry:\n  pool: 3\n", "config.yaml:2:", "'registry.pool'", NULL);
}

static void test_unknown_keys(void **state)
{
    const char *dir = *state;
    expect_error(dir, "cache:\n  dir: /x\n  max_sise: 1GiB\n", "config.yaml:3:", "'cache.max_sise'",
                 "max_size", NULL);
    expect_error(dir, "# comment\n\nfetchh:\n  parallel: 2\n", "config.yaml:3:", "'fetchh'",
                 "cache, fetch, registry, sources", NULL);
    expect_error(dir, "fetch:\n  parallel: 2\n  retries: 3\n", ":3:", "'fetch.retries'", "attempts",
                 NULL);
    expect_error(dir,
                 "sources:\n  - prefix: s3://a/\n    replicas: [s3://a/]\n"
                 "  - prefix: s3://b/\n    replica: [s3://b/]\n",
                 ":5:", "'sources[1].replica'", "prefix, replicas", NULL);
    /* duplicates are reported, not silently overridden */
    expect_error(dir, "fetch:\n  parallel: 2\n  parallel: 3\n", ":3:", "fetch.parallel", "twice",
                 "line 2", NULL);
    expect_error(dir, "fetch:\n  parallel: 2\nfetch:\n  attempts: 3\n", ":3:", "fetch", "twice",
                 "line 1", NULL);
    /* a key whose value is a block is reported at the key's line */
    expect_error(dir, "fetch:\n  parallel: 2\n  proxy:\n    host: x\n", ":3:", "'fetch.proxy'", NULL);
}

static void test_wrong_types(void **state)
{
    const char *dir = *state;
    expect_error(dir, "fetch:\n  parallel: [1, 2]\n", ":2:", "fetch.parallel", "whole number",
                 "a list", NULL);
    expect_error(dir, "fetch:\n  parallel: four\n", ":2:", "fetch.parallel", "'four'", NULL);
    expect_error(dir, "fetch:\n  parallel: 4.5\n", ":2:", "fetch.parallel", NULL);
    expect_error(dir, "fetch:\n  tls_verify: maybe\n", ":2:", "fetch.tls_verify", "true or false",
                 NULL);
    expect_error(dir, "cache:\n  max_size: lots\n", ":2:", "cache.max_size", "4MiB", NULL);
    expect_error(dir, "fetch:\n  deadline: 1 minute\n", ":2:", "fetch.deadline", "30s", NULL);
    expect_error(dir, "fetch:\n  deadline: {a: 1}\n", ":2:", "fetch.deadline", "a mapping", NULL);
    expect_error(dir, "cache: 5\n", ":1:", "cache", "mapping", NULL);
    expect_error(dir, "- a\n- b\n", ":1:", "mapping", NULL);
    expect_error(dir, "cache:\n  dir: [a]\n", ":2:", "cache.dir", "path", NULL);
    expect_error(dir, "fetch:\n  s3_profile: ''\n", ":2:", "fetch.s3_profile", "empty", NULL);
    expect_error(dir, "sources:\n  prefix: s3://a/\n", ":2:", "sources", "list", NULL);
    expect_error(dir, "sources:\n  - s3://a/\n", ":2:", "sources[0]", "mapping", NULL);
    expect_error(dir, "sources:\n  - prefix: s3://a/\n    replicas: s3://b/\n", ":3:",
                 "sources[0].replicas", "list", NULL);
    expect_error(dir, "sources:\n  - prefix: s3://a/\n    replicas: []\n", ":3:",
                 "sources[0].replicas", "non-empty", NULL);
    expect_error(dir, "sources:\n  - replicas: [s3://b/]\n", ":2:", "sources[0]", "missing prefix",
                 NULL);
    expect_error(dir, "sources:\n  - prefix: s3://a/\n", ":2:", "sources[0]", "missing replicas",
                 NULL);
    expect_error(dir, "sources:\n  - prefix: s3://a/\n    replicas: [[x]]\n", ":3:",
                 "sources[0].replicas[0]", NULL);
    expect_error(dir, "sources:\n  - prefix: s3://a/\n    replicas:\n      - ftp://b/\n", ":4:",
                 "sources[0].replicas[0]", "unsupported scheme", NULL);
    expect_error(dir, "sources:\n  - prefix: relative/dir\n    replicas: [s3://b/]\n", ":2:",
                 "sources[0].prefix", "absolute path", NULL);
    expect_error(dir, "sources:\n  - prefix: s3://a/\n    replicas: [file://host/x/]\n", ":3:",
                 "local absolute path", NULL);
    expect_error(dir,
                 "sources:\n  - prefix: s3://a/\n    replicas: [s3://b/]\n"
                 "  - prefix: s3://a\n    replicas: [s3://c/]\n",
                 ":4:", "sources[1]", "already mapped", NULL);
    /* a YAML syntax error is reported the same way */
    expect_error(dir, "fetch:\n  parallel: [1\n  attempts: 2\n", "config.yaml:", "did not find", NULL);
}

static void test_ranges(void **state)
{
    const char *dir = *state;
    expect_error(dir, "cache:\n  block_size: 32KiB\n", ":2:", "cache.block_size", "64KiB..64MiB",
                 NULL);
    expect_error(dir, "cache:\n  block_size: 128MiB\n", "64KiB..64MiB", NULL);
    expect_error(dir, "fetch:\n  parallel: 0\n", ":2:", "fetch.parallel", "1..64", NULL);
    expect_error(dir, "fetch:\n  parallel: 65\n", "1..64", NULL);
    expect_error(dir, "fetch:\n  parallel: -3\n", "1..64", NULL);
    expect_error(dir, "fetch:\n  attempts: 0\n", "fetch.attempts", "1..20", NULL);
    expect_error(dir, "fetch:\n  attempts: 21\n", "1..20", NULL);
    expect_error(dir, "fetch:\n  deadline: 500ms\n", "fetch.deadline", "1s..1d", NULL);
    expect_error(dir, "fetch:\n  connect_timeout: 0\n", "fetch.connect_timeout", "10ms..10m", NULL);
    expect_error(dir, "fetch:\n  low_speed_time: 0s\n", "fetch.low_speed_time", "1s..1h", NULL);
    expect_error(dir, "cache:\n  max_size: 100k\n", "cache.max_size", "allowed: at least 1MiB", NULL);
    expect_error(dir, "fetch:\n  low_speed_limit: -5\n",
                 "fetch.low_speed_limit: expected a size such as 4MiB, found '-5'", NULL);
    expect_error(dir, "fetch:\n  memory_budget: 100TiB\n", "fetch.memory_budget", "1MiB..1TiB", NULL);
    /* relations between keys, at the line of the key given */
    expect_error(dir, "cache:\n  block_size: 16MiB\n  max_size: 8MiB\n", ":3:",
                 "cache.max_size (8MiB) must be at least cache.block_size (16MiB)", NULL);
    expect_error(dir, "fetch:\n  memory_budget: 2MiB\n", ":2:",
                 "fetch.memory_budget (2MiB) must be at least cache.block_size (4MiB)", NULL);
    expect_error(dir, "fetch:\n  backoff_base: 10s\n", ":2:",
                 "fetch.backoff_max (5s) must be at least fetch.backoff_base (10s)", NULL);
    /* the edges themselves are allowed */
    bfs_config c;
    char *msg;
    assert_int_equal(load_text(dir,
                               "cache:\n  block_size: 64MiB\n  max_size: 64MiB\n"
                               "fetch:\n  parallel: 64\n  attempts: 1\n  deadline: 1s\n"
                               "  replica_retry: 0\n  readahead: 0\n  low_speed_limit: 0\n",
                               &c, &msg),
                     0);
    assert_int_equal(c.block_size, 64 * MiB);
    assert_int_equal(c.parallel, 64);
    assert_int_equal(c.replica_retry_ms, 0);
    bfs_config_free(&c);
    /* a fraction, or a percentage */
    expect_error(dir, "fetch:\n  warn_failure_rate: 1.5\n", ":2:", "fetch.warn_failure_rate",
                 "a fraction such as 0.05 or 5%", "0..1", NULL);
    expect_error(dir, "fetch:\n  warn_failure_rate: -0.1\n", "0..1", NULL);
    expect_error(dir, "fetch:\n  warn_failure_rate: lots\n", "found 'lots'", NULL);
    expect_error(dir, "fetch:\n  warn_failure_rate: nan\n", "0..1", NULL);
    assert_int_equal(load_text(dir, "fetch:\n  warn_failure_rate: 10%\n", &c, &msg), 0);
    assert_true(c.warn_failure_rate > 0.0999 && c.warn_failure_rate < 0.1001);
    bfs_config_free(&c);
    assert_int_equal(load_text(dir, "fetch:\n  warn_failure_rate: 0\n", &c, &msg), 0);
    assert_true(c.warn_failure_rate == 0.0);
    bfs_config_free(&c);
}

/* ---- files the configuration names ---------------------------------------- */

/* key (ca_file or token_file) set to path fails at line 3 with
 * "fetch.KEY PATH: WHY; ...", and the advice that follows names fix. */
static void expect_file_error(const char *dir, const char *key, const char *path, const char *why,
                              const char *fix)
{
    char *text, *want;
    assert_true(asprintf(&text, "fetch:\n  parallel: 2\n  %s: %s\n", key, path) > 0);
    assert_true(asprintf(&want, "config.yaml:3: fetch.%s %s: %s; ", key, path, why) > 0);
    expect_error(dir, text, want, fix, "or remove the key", NULL);
    free(want);
    free(text);
}

static void test_input_files(void **state)
{
    const char *dir = *state;
    char *missing, *fifo, *ca, *token;
    assert_true(asprintf(&missing, "%s/nope/ca.pem", dir) > 0);
    assert_true(asprintf(&fifo, "%s/fifo", dir) > 0);
    assert_int_equal(mkfifo(fifo, 0600), 0);

    expect_file_error(dir, "ca_file", missing, "No such file or directory", "PEM file of the CA");
    expect_file_error(dir, "ca_file", dir, "Is a directory", "PEM file of the CA");
    /* a FIFO is refused without being opened (opening it would block) */
    expect_file_error(dir, "ca_file", fifo, "not a regular file", "PEM file of the CA");
    /* Unreadable token files: tests usually run as root, for whom chmod 000
     * does not make a file unreadable, so a missing path and a directory
     * stand in for one; only a non-root run also tries chmod 000. */
    expect_file_error(dir, "token_file", missing, "No such file or directory", "bearer token");
    expect_file_error(dir, "token_file", dir, "Is a directory", "bearer token");
    if (geteuid() != 0) {
        char *locked = write_file(dir, "locked", "t0ken\n");
        assert_int_equal(chmod(locked, 0), 0);
        expect_file_error(dir, "token_file", locked, "Permission denied", "bearer token");
        free(locked);
    }

    /* good files load; the token's content is not looked at (an empty one
     * is http.c's to refuse, request by request, since tokens rotate) */
    ca = write_file(dir, "ca.pem", "-----BEGIN CERTIFICATE-----\n");
    token = write_file(dir, "token", "");
    char *text;
    assert_true(asprintf(&text, "fetch:\n  ca_file: %s\n  token_file: %s\n", ca, token) > 0);
    bfs_config c;
    char *msg;
    assert_int_equal(load_text(dir, text, &c, &msg), 0);
    assert_null(msg);
    assert_string_equal(c.ca_file, ca);
    assert_string_equal(c.token_file, token);
    bfs_config_free(&c);
    free(text);
    free(token);
    free(ca);
    free(fifo);
    free(missing);
}

/* ---- source chains -------------------------------------------------------- */

static void expect_urls(const bfs_config *c, const char *location, ...)
{
    char **urls = NULL;
    int n = bfs_config_replicas(c, location, &urls);
    assert_true(n >= 1);
    va_list ap;
    va_start(ap, location);
    int i = 0;
    for (const char *want; (want = va_arg(ap, const char *)) != NULL; i++) {
        if (i >= n)
            fail_msg("%s: only %d replicas, expected %s next", location, n, want);
        if (strcmp(urls[i], want))
            fail_msg("%s: replica %d is %s, expected %s", location, i, urls[i], want);
    }
    va_end(ap);
    assert_int_equal(n, i);
    bfs_config_free_urls(urls, n);
}

static void test_replicas(void **state)
{
    bfs_config c;
    char *msg;
    assert_int_equal(load_text(*state,
                               "sources:\n"
                               "  - prefix: s3://rubin-summit/\n"
                               "    replicas:\n"
                               "      - file:///summit/cache/\n"
                               "      - https://mirror.example.org/rubin-summit/\n"
                               "      - s3://rubin-summit/\n"
                               "  - prefix: s3://rubin-summit/raw/\n"
                               "    replicas: [https://raw.example.org/]\n"
                               "  - prefix: s3://bucket\n"                  /* no trailing '/' */
                               "    replicas: [https://m.example.org/x]\n"  /* nor here */
                               "  - prefix: /data/repo/\n"
                               "    replicas: [file://localhost/mirror, /data/repo]\n",
                               &c, &msg),
                     0);

    expect_urls(&c, "s3://rubin-summit/calexp/a.fits", "file:///summit/cache/calexp/a.fits",
                "https://mirror.example.org/rubin-summit/calexp/a.fits",
                "s3://rubin-summit/calexp/a.fits", NULL);
    /* longest prefix wins, whatever the order of the rules */
    expect_urls(&c, "s3://rubin-summit/raw/b.fits", "https://raw.example.org/b.fits", NULL);
    expect_urls(&c, "s3://rubin-summit/rawx/b.fits", "file:///summit/cache/rawx/b.fits",
                "https://mirror.example.org/rubin-summit/rawx/b.fits", "s3://rubin-summit/rawx/b.fits",
                NULL);
    /* no rule: the location itself */
    expect_urls(&c, "s3://other/c.fits", "s3://other/c.fits", NULL);
    expect_urls(&c, "https://elsewhere/d", "https://elsewhere/d", NULL);
    expect_urls(&c, "/elsewhere/e.fits", "/elsewhere/e.fits", NULL);
    /* trailing slashes: prefix and base are joined with exactly one '/',
     * and a prefix matches whole components only */
    expect_urls(&c, "s3://bucket/a/b", "https://m.example.org/x/a/b", NULL);
    expect_urls(&c, "s3://bucket", "https://m.example.org/x", NULL);
    expect_urls(&c, "s3://bucketful/a", "s3://bucketful/a", NULL);
    /* local paths match file:// and plain path prefixes; file:// replicas
     * give file:/// URIs */
    expect_urls(&c, "/data/repo/raw/f.fits", "file:///mirror/raw/f.fits", "file:///data/repo/raw/f.fits",
                NULL);
    expect_urls(&c, "file:///data/repo/g", "file:///mirror/g", "file:///data/repo/g", NULL);
    expect_urls(&c, "file://localhost/data/repo/g", "file:///mirror/g", "file:///data/repo/g", NULL);
    expect_urls(&c, "/data/repository/h", "/data/repository/h", NULL);
    bfs_config_free(&c);

    /* no configuration at all */
    expect_urls(NULL, "s3://rubin-summit/x", "s3://rubin-summit/x", NULL);
    bfs_config_defaults(&c);
    expect_urls(&c, "s3://rubin-summit/x", "s3://rubin-summit/x", NULL);
}

/* ---- locations of the file ------------------------------------------------ */

static void test_allowed_roots(void **state)
{
    const char *dir = *state;
    bfs_config c;
    char *msg = NULL, *want;
    char *home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("HOME", "/home/tester", 1);
    assert_int_equal(load_text(dir, "allowed_roots:\n  - /sdf/data/rubin/\n  - file:///project//\n"
                                    "  - file://localhost/scratch\n  - ~/repos\n  - rel/dir\n", &c, &msg), 0);
    if (home)
        setenv("HOME", home, 1);
    free(home);
    assert_int_equal(c.n_allowed_roots, 5);
    assert_string_equal(c.allowed_roots[0], "/sdf/data/rubin");
    assert_string_equal(c.allowed_roots[1], "/project");
    assert_string_equal(c.allowed_roots[2], "/scratch");
    assert_string_equal(c.allowed_roots[3], "/home/tester/repos");
    assert_true(asprintf(&want, "%s/rel/dir", dir) > 0);
    char *real = realpath(dir, NULL);
    assert_true(!strcmp(c.allowed_roots[4], want) || (real && strstr(c.allowed_roots[4], real)));
    free(real);
    free(want);
    bfs_config_free(&c);
    assert_int_equal(load_text(dir, "allowed_roots:\n", &c, &msg), 0);
    assert_int_equal(c.n_allowed_roots, 0);
    bfs_config_free(&c);
    static const char *bad[][2] = {
        {"allowed_roots: /sdf\n", ":1: allowed_roots: expected a list of directories, found"},
        {"allowed_roots:\n  - [a]\n", ":2: allowed_roots[0]: expected a directory"},
        {"allowed_roots:\n  - s3://b/x/\n", "expected a local directory; remote locations are allowed by mapping them under sources:"},
        {"allowed_roots:\n  - file://host/x/\n", "local absolute path"},
        {"allowed_roots: []\nallowed_roots: []\n", ":2: allowed_roots is given twice"},
        {"ingest: {}\ntransfer: {}\ningest: {workers: 2}\n", ":3: ingest is given twice (first at line 1)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(load_text(dir, bad[i][0], &c, &msg), -EINVAL);
        if (!strstr(msg, bad[i][1]))
            fail_msg("%s: message '%s' lacks '%s'", bad[i][0], msg, bad[i][1]);
        free(msg);
    }
}

static void test_missing_files(void **state)
{
    const char *dir = *state;
    char *old = getenv("XDG_CONFIG_HOME") ? strdup(getenv("XDG_CONFIG_HOME")) : NULL;
    setenv("XDG_CONFIG_HOME", dir, 1);

    bfs_config c;
    char *msg = NULL;
    /* a missing default file is fine: the defaults */
    assert_int_equal(bfs_config_load(NULL, &c, &msg), 0);
    assert_null(msg);
    assert_null(c.path);
    check_defaults(&c);
    bfs_config_free(&c);

    /* a missing explicit file is an error naming it */
    char *missing;
    assert_true(asprintf(&missing, "%s/nope.yaml", dir) > 0);
    assert_int_equal(bfs_config_load(missing, &c, &msg), -ENOENT);
    assert_non_null(msg);
    assert_non_null(strstr(msg, missing));
    assert_non_null(strstr(msg, "No such file"));
    assert_null(c.path);
    free(msg);
    msg = NULL;
    free(missing);

    /* the default file is read when present, and its errors name it */
    char *sub;
    assert_true(asprintf(&sub, "%s/butlerfs", dir) > 0);
    assert_int_equal(mkdir(sub, 0700), 0);
    char *path = write_file(sub, "config.yaml", "fetch:\n  attempts: 7\n");
    assert_int_equal(bfs_config_load(NULL, &c, &msg), 0);
    assert_string_equal(c.path, path);
    assert_int_equal(c.max_attempts, 7);
    bfs_config_free(&c);
    free(write_file(sub, "config.yaml", "fetch:\n  attempts: 70\n"));
    assert_int_equal(bfs_config_load(NULL, &c, &msg), -EINVAL);
    char *want;
    assert_true(asprintf(&want, "%s:2: fetch.attempts: 70 is out of range (allowed 1..20)", path) > 0);
    assert_string_equal(msg, want);
    free(want);
    free(msg);
    free(path);
    free(sub);

    if (old)
        setenv("XDG_CONFIG_HOME", old, 1);
    else
        unsetenv("XDG_CONFIG_HOME");
    free(old);
}

/* docs/butlerfs.example.yaml must stay loadable. */
static void test_example_file(void **state)
{
    (void)state;
    char src[PATH_MAX];
    snprintf(src, sizeof src, "%s", __FILE__);
    char *path;
    assert_true(asprintf(&path, "%s/../../docs/butlerfs.example.yaml", dirname(src)) > 0);
    bfs_config c;
    char *msg = NULL;
    int ret = bfs_config_load(path, &c, &msg);
    if (ret != 0)
        fail_msg("%s: %s", path, msg ? msg : "?");
    assert_true(c.n_rules >= 1);
    assert_true(c.tls_verify);
    bfs_config_free(&c);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_yaml_api),
        cmocka_unit_test_setup_teardown(test_load_full, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_defaults, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_tilde, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_relative_paths, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_registry_section, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_unknown_keys, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_wrong_types, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_ranges, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_input_files, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_replicas, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_missing_files, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_allowed_roots, setup_dir, teardown_dir),
        cmocka_unit_test(test_example_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
