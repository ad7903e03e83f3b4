/*
 * test_dbauth.c - PostgreSQL registry URLs, the Butler's credential list
 * (~/.lsst/db-auth.yaml) and the log-safe form of URLs (registry/dbauth.c).
 *
 * Every credential file is written into the test's own temp dir and HOME,
 * LSST_DB_AUTH and LSST_DB_AUTH_CREDENTIALS point there or are unset, so
 * nothing of the user's real credentials is ever read.
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

#include "dbauth.h"
#include "registry.h"

/* ---- helpers ------------------------------------------------------------- */

static char *g_dir;

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb, (void)type, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    (void)state;
    g_dir = strdup("/tmp/bfs_dbauthXXXXXX");
    if (!g_dir || !mkdtemp(g_dir))
        return -1;
    setenv("HOME", g_dir, 1);
    unsetenv("LSST_DB_AUTH");
    unsetenv("LSST_DB_AUTH_CREDENTIALS");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(g_dir);
    g_dir = NULL;
    return 0;
}

/* Write text to g_dir/name with mode; returns the malloc'd path. */
static char *write_file(const char *name, const char *text, mode_t mode)
{
    char *path;
    assert_true(asprintf(&path, "%s/%s", g_dir, name) > 0);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    mkdir(path, 0700);
    *slash = '/';
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
    return path;
}

static void assert_str_or_null(const char *got, const char *want)
{
    if (!want)
        assert_null(got);
    else {
        assert_non_null(got);
        assert_string_equal(got, want);
    }
}

/* Parse url (no credential list), check it parses to the given parts. */
static void expect_parts(const char *url, const char *user, const char *password, const char *host,
                         const char *port, const char *dbname)
{
    bfs_dburl u;
    char *msg = NULL;
    int ret = bfs_dburl_parse(url, NULL, &u, &msg);
    if (ret != 0)
        fail_msg("%s: %d %s", url, ret, msg ? msg : "");
    assert_string_equal(u.dialect, "postgresql");
    assert_str_or_null(u.user, user);
    assert_str_or_null(u.password, password);
    assert_str_or_null(u.host, host);
    assert_str_or_null(u.port, port);
    assert_str_or_null(u.dbname, dbname);
    assert_str_or_null(u.password_source, password ? "the URL" : NULL);
    bfs_dburl_free(&u);
}

/* url is refused with -EINVAL and a sentence holding fragment and never
 * secret (when given). */
static void expect_refused(const char *url, const char *fragment, const char *secret)
{
    bfs_dburl u;
    char *msg = NULL;
    int ret = bfs_dburl_parse(url, NULL, &u, &msg);
    if (ret != -EINVAL)
        fail_msg("%s: expected -EINVAL, got %d", url, ret);
    assert_non_null(msg);
    if (!strstr(msg, fragment))
        fail_msg("%s: message '%s' lacks '%s'", url, msg, fragment);
    if (secret && strstr(msg, secret))
        fail_msg("%s: message '%s' shows the password", url, msg);
    assert_null(u.dialect);
    free(msg);
}

/* ---- URL forms ----------------------------------------------------------- */

static void test_url_forms(void **state)
{
    (void)state;
    expect_parts("postgresql://butler@db.example.org:5432/butler", "butler", NULL, "db.example.org", "5432",
                 "butler");
    expect_parts("postgresql://butler:s3cret@db.example.org:5432/butler", "butler", "s3cret",
                 "db.example.org", "5432", "butler");
    expect_parts("postgresql+psycopg2://butler@db.example.org/butler", "butler", NULL, "db.example.org", NULL,
                 "butler");
    expect_parts("postgresql://db.example.org/butler", NULL, NULL, "db.example.org", NULL, "butler");
    expect_parts("postgresql://db.example.org", NULL, NULL, "db.example.org", NULL, NULL);
    /* percent-escapes in user and password (a password with @ : / %) */
    expect_parts("postgresql://bu%74ler:p%40ss%3Aw%2Fd%25@db/b", "butler", "p@ss:w/d%", "db", NULL, "b");
    /* an empty password is a password */
    expect_parts("postgresql://butler:@db/b", "butler", "", "db", NULL, "b");
    /* IPv6 */
    expect_parts("postgresql://u@[fe80::1ff:fe23:4567:890a]:5433/db", "u", NULL, "fe80::1ff:fe23:4567:890a",
                 "5433", "db");
    /* nothing but the database: libpq's defaults (PGHOST, the socket) */
    expect_parts("postgresql:///butler", NULL, NULL, NULL, NULL, "butler");

    /* the query: libpq keywords, a unix socket directory as host */
    bfs_dburl u;
    char *msg = NULL;
    assert_int_equal(bfs_dburl_parse("postgresql://butler@/main?host=/run/postgresql&port=6432"
                                     "&sslmode=verify-full&sslrootcert=/etc/ssl/ca%20bundle.pem"
                                     "&connect_timeout=5&application_name=butlerfs",
                                     NULL, &u, &msg), 0);
    assert_string_equal(u.host, "/run/postgresql");
    assert_string_equal(u.port, "6432");
    assert_string_equal(u.dbname, "main");
    assert_string_equal(u.sslmode, "verify-full");
    assert_string_equal(u.sslrootcert, "/etc/ssl/ca bundle.pem");
    assert_string_equal(u.connect_timeout, "5");
    assert_string_equal(u.application_name, "butlerfs");

    /* libpq's keyword arrays */
    const char *keys[16], *vals[16];
    int n = bfs_dburl_params(&u, keys, vals, 16);
    assert_int_equal(n, 8);
    assert_string_equal(keys[0], "host");
    assert_string_equal(vals[0], "/run/postgresql");
    assert_string_equal(keys[2], "dbname");
    assert_string_equal(keys[3], "user");
    assert_string_equal(vals[3], "butler");
    assert_string_equal(keys[4], "sslmode");
    assert_null(keys[n]);
    assert_null(vals[n]);
    assert_int_equal(bfs_dburl_params(&u, keys, vals, 8), -ENOSPC);
    bfs_dburl_free(&u);
    bfs_dburl_free(&u); /* harmless on a zeroed one */

    assert_true(bfs_dburl_is_postgresql("postgresql://h/d"));
    assert_true(bfs_dburl_is_postgresql("postgresql+psycopg2://h/d"));
    assert_false(bfs_dburl_is_postgresql("postgres://h/d"));
    assert_false(bfs_dburl_is_postgresql("sqlite:///x.sqlite3"));
    assert_false(bfs_dburl_is_postgresql("postgresqlx://h/d"));
    assert_false(bfs_dburl_is_postgresql(NULL));
}

/* butler.yaml's registry.username/.host/.port/.database fill the URL's gaps,
 * never replace what it says */
static void test_config_keys(void **state)
{
    (void)state;
    bfs_dburl u;
    char *msg = NULL;
    bfs_dburl_config cfg = {.username = "cfguser", .port = "5432", .database = "my_database",
                            .host = "other.example.com"};
    assert_int_equal(bfs_dburl_parse("postgresql://host.example.com", &cfg, &u, &msg), 0);
    assert_string_equal(u.host, "host.example.com");
    assert_string_equal(u.user, "cfguser");
    assert_string_equal(u.port, "5432");
    assert_string_equal(u.dbname, "my_database");
    assert_null(u.password);
    bfs_dburl_free(&u);

    cfg = (bfs_dburl_config){.password = "frompw"};
    assert_int_equal(bfs_dburl_parse("postgresql://u@h/d", &cfg, &u, &msg), 0);
    assert_string_equal(u.password, "frompw");
    assert_string_equal(u.password_source, "butler.yaml (registry.password)");
    bfs_dburl_free(&u);

    cfg = (bfs_dburl_config){.port = "54x"};
    assert_int_equal(bfs_dburl_parse("postgresql://u@h/d", &cfg, &u, &msg), -EINVAL);
    assert_non_null(strstr(msg, "registry.port"));
    free(msg);
}

static void test_bad_urls(void **state)
{
    (void)state;
    expect_refused("sqlite:///repo/gen3.sqlite3", "is not a PostgreSQL URL", NULL);
    expect_refused("mysql://u:hunter2@h/d", "is not a PostgreSQL URL", "hunter2");
    expect_refused("postgresql:/h/d", "is not a PostgreSQL URL", NULL);
    expect_refused("", "is not a PostgreSQL URL", NULL);
    expect_refused("postgresql://u:hunter2@h:99999/d", "not a number from 1 to 65535", "hunter2");
    expect_refused("postgresql://u:hunter2@h:54a/d", "not a number", "hunter2");
    expect_refused("postgresql://u:hunter2@[::1/d", "'[' without ']'", "hunter2");
    expect_refused("postgresql://u:hunter2@[::1]x/d", "junk after", "hunter2");
    expect_refused("postgresql://u@h/d?password=hunter2", "password may not be given in the query", "hunter2");
    expect_refused("postgresql://u:hunter2@h/d?sslmod=require", "unknown query parameter 'sslmod'", "hunter2");
    expect_refused("postgresql://u:hunter2@h/d?sslmode", "has no value", "hunter2");
    expect_refused("postgresql://u:hunter2@h/d?host=/a&host=/b", "gives host twice", "hunter2");
    expect_refused("postgresql://u:hunter2@h/d#frag", "fragment", "hunter2");
    expect_refused("postgresql://u:hunt%00er2@h/d", "NUL byte", "hunt");
    bfs_dburl u;
    char *msg = NULL;
    assert_int_equal(bfs_dburl_parse(NULL, NULL, &u, &msg), -EINVAL);
    free(msg);
}

/* ---- the log-safe form ----------------------------------------------------- */

static void expect_redacted(const char *url, const char *want)
{
    char *got = bfs_dburl_redact(url);
    assert_non_null(got);
    if (strcmp(got, want) != 0)
        fail_msg("redact(%s) = %s, expected %s", url, got, want);
    free(got);
}

static void test_redact(void **state)
{
    (void)state;
    expect_redacted("postgresql://butler:s3cret@db.example.org:5432/butler",
                    "postgresql://butler@db.example.org:5432/butler");
    expect_redacted("postgresql://butler@db.example.org:5432/butler",
                    "postgresql://butler@db.example.org:5432/butler");
    expect_redacted("postgresql+psycopg2://u:p%40ss@[::1]:5432/b?sslmode=require",
                    "postgresql+psycopg2://u@[::1]:5432/b?sslmode=require");
    /* an '@' left unescaped in the password: everything to the last '@' goes */
    expect_redacted("postgresql://u:p@ss@h/b", "postgresql://u@h/b");
    expect_redacted("postgresql://:secret@h/b", "postgresql://@h/b");
    expect_redacted("postgresql://u@h/b?password=secret&sslmode=require&PASSWORD=x",
                    "postgresql://u@h/b?sslmode=require");
    expect_redacted("postgresql://u@h/b?sslmode=require&password=secret#f",
                    "postgresql://u@h/b?sslmode=require#f");
    expect_redacted("sqlite:///<butlerRoot>/gen3.sqlite3", "sqlite:///<butlerRoot>/gen3.sqlite3");
    expect_redacted("mysql://root:pw@h/d", "mysql://root@h/d");
    expect_redacted("not a url", "not a url");
    expect_redacted("", "");
    assert_null(bfs_dburl_redact(NULL));

    /* no password survives in any form */
    static const char *const urls[] = {
        "postgresql://butler:Zq9secret@db/b",
        "postgresql+psycopg2://butler:Zq9secret@db:1/b?sslmode=disable",
        "postgresql://butler:Zq9secret@[::1]/b",
        "postgresql://butler:Zq9secret@/b?host=/tmp",
        "postgresql://butler@db/b?password=Zq9secret",
        "postgresql://butler:Zq9secret@",
        "user:Zq9secret@host/db",
    };
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        char *r = bfs_dburl_redact(urls[i]);
        assert_non_null(r);
        if (strstr(r, "Zq9secret"))
            fail_msg("redact(%s) = %s keeps the password", urls[i], r);
        free(r);
    }
}

/* ---- the credential list ----------------------------------------------------- */

/* The entries, in order, and which one answers each connection: the first
 * match wins; a pattern's user and port, when given, must be equal; host
 * and database take wildcards. */
static const char AUTH_YAML[] =
    "- url: postgresql://user@host.example.com:5432/my_database\n"
    "  password: pw1\n"
    "- url: postgresql://user@host.example.com/my_database\n"
    "  password: pw2\n"
    "- url: postgresql://host.example.com:5432/my_database\n"
    "  username: user\n"
    "  password: pw3\n"
    "- url: postgresql://host.example.com/my_database\n"
    "  username: user\n"
    "  password: pw4\n"
    "- url: postgresql://*.example.com/my_*\n"
    "  username: user\n"
    "  password: pw5\n"
    "- url: postgresql://*.example.com/\n"
    "  username: user\n"
    "  password: pw6\n"
    "- url: postgresql://*.example.com\n"
    "  password: pw7\n"
    "- url: oracle://*.other.com\n"
    "  username: user\n"
    "  password: pw-oracle\n"
    "- url: postgresql://*\n"
    "  username: anyone\n"
    "  password: 'pw8: with \"quotes\"'\n";

/* Resolve url against the list at path: expect user and password (NULL:
 * no match, the password left to libpq). */
static void expect_auth(const char *path, const char *url, const char *user, const char *password)
{
    bfs_dburl u;
    char *msg = NULL;
    assert_int_equal(bfs_dburl_parse(url, NULL, &u, &msg), 0);
    int ret = bfs_dbauth_lookup(&u, path, &msg);
    if (ret != 0)
        fail_msg("%s: %d %s", url, ret, msg ? msg : "");
    assert_str_or_null(u.user, user);
    assert_str_or_null(u.password, password);
    if (password && path && strcmp(u.password_source, "the URL") != 0)
        assert_string_equal(u.password_source, path);
    bfs_dburl_free(&u);
}

static void test_dbauth_match(void **state)
{
    (void)state;
    char *path = write_file("db-auth.yaml", AUTH_YAML, 0600);
    expect_auth(path, "postgresql://user@host.example.com:5432/my_database", "user", "pw1");
    expect_auth(path, "postgresql+psycopg2://user@host.example.com:3360/my_database", "user", "pw2");
    expect_auth(path, "postgresql://user@host.example.com/my_database", "user", "pw2");
    expect_auth(path, "postgresql://host.example.com:5432/my_database", "user", "pw3");
    expect_auth(path, "postgresql://host.example.com/my_database", "user", "pw4");
    /* the URL's own user wins over the entry's username */
    expect_auth(path, "postgresql://other@host.example.com/my_database", "other", "pw4");
    expect_auth(path, "postgresql://host2.example.com/my_other", "user", "pw5");
    /* host names ignore case */
    expect_auth(path, "postgresql://HOST2.Example.COM/my_other", "user", "pw5");
    expect_auth(path, "postgresql://host3.example.com:3360/some_database", "user", "pw6");
    expect_auth(path, "postgresql://u7@db.example.com/x", "u7", "pw6");
    expect_auth(path, "postgresql://db.other.com/x", "anyone", "pw8: with \"quotes\"");
    /* database names are case-sensitive: "My_x" is no my_* */
    expect_auth(path, "postgresql://host2.example.com/My_x", "user", "pw6");
    /* a password in the URL wins: the list is not consulted */
    expect_auth(path, "postgresql://user:mine@host.example.com:5432/my_database", "user", "mine");
    /* no host or no database: the list is not consulted (libpq decides) */
    expect_auth(path, "postgresql:///my_database", NULL, NULL);
    expect_auth(path, "postgresql://host.example.com", NULL, NULL);

    /* a list where nothing matches: the password is left to libpq */
    char *path2 = write_file("narrow.yaml",
                             "- url: postgresql://db.example.org:6432/butler\n  password: x\n", 0400);
    expect_auth(path2, "postgresql://butler@db.example.org/butler", "butler", NULL);
    expect_auth(path2, "postgresql://butler@db.example.org:6432/butler", "butler", "x");
    expect_auth(path2, "postgresql://butler@db.example.org:06432/butler", "butler", "x");
    /* an entry without username and a URL without user: no user */
    expect_auth(path2, "postgresql://db.example.org:6432/butler", NULL, "x");
    free(path2);

    /* the default location, ~/.lsst/db-auth.yaml, and $LSST_DB_AUTH */
    char *home = write_file(".lsst/db-auth.yaml", "- url: postgresql://h.example.org\n  password: fromhome\n",
                            0600);
    bfs_dburl u;
    char *msg = NULL;
    assert_int_equal(bfs_dburl_resolve("postgresql://u@h.example.org/b", NULL, &u, &msg), 0);
    assert_string_equal(u.password, "fromhome");
    assert_string_equal(u.password_source, home);
    bfs_dburl_free(&u);
    setenv("LSST_DB_AUTH", path, 1);
    assert_int_equal(bfs_dburl_resolve("postgresql://u@h.example.org/b", NULL, &u, &msg), 0);
    assert_string_equal(u.password, "pw8: with \"quotes\""); /* the catch-all entry */
    assert_string_equal(u.password_source, path);
    bfs_dburl_free(&u);
    unsetenv("LSST_DB_AUTH");
    free(home);

    /* $LSST_DB_AUTH_CREDENTIALS (JSON) comes first */
    setenv("LSST_DB_AUTH_CREDENTIALS",
           "[{\"url\": \"postgresql://h.example.org\", \"password\": \"fromjson\", \"username\": \"j\"}]", 1);
    assert_int_equal(bfs_dburl_resolve("postgresql://h.example.org/b", NULL, &u, &msg), 0);
    assert_string_equal(u.password, "fromjson");
    assert_string_equal(u.user, "j");
    assert_string_equal(u.password_source, "$LSST_DB_AUTH_CREDENTIALS");
    bfs_dburl_free(&u);
    setenv("LSST_DB_AUTH_CREDENTIALS", "[{\"url\": \"postgresql://h\", \"password\": \"sec", 1);
    assert_int_equal(bfs_dburl_resolve("postgresql://h/b", NULL, &u, &msg), -EINVAL);
    assert_string_equal(msg, "$LSST_DB_AUTH_CREDENTIALS is not valid JSON");
    free(msg);
    msg = NULL;
    unsetenv("LSST_DB_AUTH_CREDENTIALS");
    free(path);
}

static void test_dbauth_file_rules(void **state)
{
    (void)state;
    bfs_dburl u;
    char *msg = NULL;
    const char *url = "postgresql://butler@db.example.org/butler";

    /* a missing file is no error */
    char *missing;
    assert_true(asprintf(&missing, "%s/nope/db-auth.yaml", g_dir) > 0);
    expect_auth(missing, url, "butler", NULL);
    assert_int_equal(bfs_dburl_resolve(url, NULL, &u, &msg), 0); /* no ~/.lsst at all */
    assert_null(u.password);
    bfs_dburl_free(&u);
    free(missing);

    /* group- or world-accessible: refused, with the mode and the fix */
    static const mode_t bad_modes[] = {0644, 0640, 0604, 0660, 0601, 0610};
    for (size_t i = 0; i < sizeof bad_modes / sizeof bad_modes[0]; i++) {
        char *path = write_file("open.yaml", "- url: postgresql://*\n  password: Zq9secret\n", bad_modes[i]);
        assert_int_equal(bfs_dburl_parse(url, NULL, &u, &msg), 0);
        assert_int_equal(bfs_dbauth_lookup(&u, path, &msg), -EACCES);
        assert_null(u.password);
        char want[64];
        snprintf(want, sizeof want, "has mode %04o", (unsigned)bad_modes[i]);
        if (!strstr(msg, want) || !strstr(msg, "chmod 600") || !strstr(msg, path))
            fail_msg("mode %o: %s", (unsigned)bad_modes[i], msg);
        assert_null(strstr(msg, "Zq9secret"));
        free(msg);
        msg = NULL;
        bfs_dburl_free(&u);
        free(path);
    }
    /* ... also at the default location */
    char *home = write_file(".lsst/db-auth.yaml", "- url: postgresql://*\n  password: x\n", 0644);
    assert_int_equal(bfs_dburl_resolve(url, NULL, &u, &msg), -EACCES);
    assert_non_null(strstr(msg, home));
    free(msg);
    msg = NULL;
    unlink(home);
    free(home);

    /* a directory in its place: nothing there */
    char *dir;
    assert_true(asprintf(&dir, "%s/adir", g_dir) > 0);
    assert_int_equal(mkdir(dir, 0700), 0);
    expect_auth(dir, url, "butler", NULL);
    free(dir);

    /* malformed lists and entries: one sentence, no secret in it */
    static const struct {
        const char *yaml, *fragment;
    } bad[] = {
        {"url: postgresql://*\npassword: Zq9secret\n", "is not a list of credentials"},
        {"- postgresql://*\n", "entry 1 is not a mapping"},
        {"- password: Zq9secret\n", "entry 1 has no url"},
        {"- url: postgresql+psycopg2://*\n  password: Zq9secret\n", "names a driver"},
        {"- url: db.example.org\n  password: Zq9secret\n", "entry 1: 'db.example.org' is not a database URL"},
        {"- url: postgresql:///butler\n  password: Zq9secret\n", "entry 1: its url names no host"},
        {"- url: postgresql://db.example.org\n  username: u\n", "entry 1 matches but has no password"},
        {"- url: postgresql://other\n  password: a\n- url: [x\n", "is not valid YAML"},
        {"- url: postgresql://db.example.org:x\n  password: Zq9secret\n", "is not a number"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *path = write_file("bad.yaml", bad[i].yaml, 0600);
        assert_int_equal(bfs_dburl_parse(url, NULL, &u, &msg), 0);
        int ret = bfs_dbauth_lookup(&u, path, &msg);
        if (ret != -EINVAL || !msg || !strstr(msg, bad[i].fragment) || strstr(msg, "Zq9secret"))
            fail_msg("case %zu: %d %s", i, ret, msg ? msg : "(no message)");
        assert_null(u.password);
        free(msg);
        msg = NULL;
        bfs_dburl_free(&u);
        free(path);
    }
    /* an empty file is an empty list */
    char *empty = write_file("empty.yaml", "", 0600);
    expect_auth(empty, url, "butler", NULL);
    free(empty);
    /* entries before the match are checked, those after it are not */
    char *later = write_file("later.yaml",
                             "- url: postgresql://db.example.org\n  password: ok\n- nonsense\n", 0600);
    expect_auth(later, url, "butler", "ok");
    free(later);
}

/* ---- the registry today: PostgreSQL is refused in one sentence ---------- */

static int open_repo(const char *yaml, char **msg)
{
    char *path = write_file("repo/butler.yaml", yaml, 0644);
    char *repo = strdup(path);
    *strrchr(repo, '/') = '\0';
    bfs_registry *reg = NULL;
    *msg = NULL;
    int ret = bfs_registry_open(repo, 0, &reg, msg);
    assert_null(reg);
    free(repo);
    free(path);
    return ret;
}

static void test_registry_postgresql_errors(void **state)
{
    (void)state;
    char *msg;
    /* a server that cannot be reached (port 1 on loopback: refused at once):
     * one sentence naming it, without the password */
    assert_true(open_repo("registry:\n  db: postgresql://butler:Zq9secret@127.0.0.1:1/butler\n"
                          "  namespace: main_20250601\ndatastore:\n  root: s3://rubin-main/\n", &msg) < 0);
    assert_non_null(strstr(msg, "cannot reach the PostgreSQL server of postgresql://butler@127.0.0.1:1/butler"));
    assert_null(strstr(msg, "Zq9secret"));
    free(msg);

    /* no password in the URL: the credential file is read, and refused when
     * others may read it (before any connection is tried) */
    free(write_file(".lsst/db-auth.yaml", "- url: postgresql://*\n  password: fromfile\n", 0644));
    assert_int_equal(open_repo("registry:\n  db: postgresql://butler@127.0.0.1:1/butler\n", &msg), -EACCES);
    assert_non_null(strstr(msg, "db-auth.yaml has mode 0644"));
    assert_null(strstr(msg, "fromfile"));
    free(msg);

    /* a malformed URL is named as such, without its password */
    assert_int_equal(open_repo("registry:\n  db: postgresql://u:Zq9secret@h/d?sslmod=require\n", &msg), -EINVAL);
    assert_non_null(strstr(msg, "butler.yaml: registry.db: 'postgresql://u@h/d?sslmod=require': unknown query "
                                "parameter 'sslmod'"));
    assert_null(strstr(msg, "Zq9secret"));
    free(msg);

    /* other databases: not SQLite, not PostgreSQL, password hidden too */
    assert_int_equal(open_repo("registry:\n  db: mysql://root:Zq9secret@h/d\n", &msg), -EPROTONOSUPPORT);
    assert_non_null(strstr(msg, "registry.db 'mysql://root@h/d' is neither an SQLite URL"));
    assert_null(strstr(msg, "Zq9secret"));
    free(msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_url_forms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dbauth_match, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dbauth_file_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry_postgresql_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
