/*
 * test_db_pg.c - the PostgreSQL engine (registry/db_pg.c) against a real
 * server, directly or through PgBouncer in transaction pooling mode.
 *
 * Run by tests/integration/test_db_pg.sh, which starts the servers of
 * pg.sh and runs this once per mode with:
 *   BFS_PG_MODE     direct | bouncer
 *   BFS_PG_TEST_PORT the port the engine connects to (127.0.0.1)
 *   PG_USER PG_PASSWORD PG_DATABASE PG_PORT PG_SOCKET_DIR PG_SUPERUSER
 *                   (pg.sh's; the observer connects as the superuser
 *                   over the socket, never through the engine)
 *   BFS_PG_SH       pg.sh, for pg_down/pg_up/pg_freeze/pg_thaw
 * Without them it skips (77).  Nothing is mocked; SQLite (in memory) is
 * the oracle of the GLOB translation.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netdb.h>
#include <dlfcn.h>
#include <stdatomic.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "clock.h"
#include "db.h"
#include "dbauth.h"
#include "log.h"
#include "registry.h"

#define NS "bfs_test"

static const char *g_mode, *g_user, *g_pass, *g_db, *g_sock, *g_pgport, *g_super, *g_pgsh;
static int g_port;
static bool g_direct;
static PGconn *g_obs; /* the observer: superuser over the socket */

/* ---- helpers ------------------------------------------------------------- */

static PGresult *obs(const char *sql)
{
    PGresult *r = PQexec(g_obs, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        fprintf(stderr, "observer: %s: %s", sql, PQerrorMessage(g_obs));
        fail();
    }
    return r;
}

static void obs_exec(const char *sql) { PQclear(obs(sql)); }

static long obs_long(const char *sql)
{
    PGresult *r = obs(sql);
    long v = PQntuples(r) ? atol(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    return v;
}

/* Server connections of the test role (not the observer's). */
static long role_backends(void)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_stat_activity WHERE usename = '%s'", g_user);
    return obs_long(sql);
}

static void pgsh(const char *fn)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "PG_ADOPT=1 bash -c '. \"%s\" && %s'", g_pgsh, fn);
    int rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr, "%s failed (%d)\n", fn, rc);
        fail();
    }
}

struct eopts {
    int port;
    const char *hosts; /* a libpq host list (URL query); NULL: 127.0.0.1 */
    const char *password;
    const char *ns;
    bool readonly;
    int max, idle_ms, connect_ms, stmt_ms;
};

static int open_engine(const struct eopts *x, db_engine **e, char **msg)
{
    char url[256];
    if (x->hosts)
        snprintf(url, sizeof url, "postgresql://%s@/%s?host=%s&port=%d", g_user, g_db, x->hosts,
                 x->port ? x->port : g_port);
    else
        snprintf(url, sizeof url, "postgresql://%s@127.0.0.1:%d/%s", g_user, x->port ? x->port : g_port, g_db);
    bfs_dburl_config cfg = {.password = x->password ? x->password : g_pass};
    bfs_dburl u;
    char *perr = NULL;
    assert_int_equal(bfs_dburl_parse(url, &cfg, &u, &perr), 0);
    struct db_options o = {
        .kind = DB_POSTGRESQL,
        .url = &u,
        .namespace = x->ns ? x->ns : NS,
        .writable = !x->readonly,
        .max_connections = x->max,
        .idle_close_ms = x->idle_ms,
        .connect_timeout_ms = x->connect_ms,
        .statement_timeout_ms = x->stmt_ms,
    };
    int ret = db_engine_open(&o, e, msg);
    bfs_dburl_free(&u);
    return ret;
}

static db_engine *engine(const struct eopts *x)
{
    db_engine *e = NULL;
    char *msg = NULL;
    struct eopts none = {0};
    int ret = open_engine(x ? x : &none, &e, &msg);
    if (ret)
        fprintf(stderr, "open: %s\n", msg ? msg : "?");
    assert_int_equal(ret, 0);
    free(msg);
    return e;
}

/* Run sql (no rows expected) on c with no parameters. */
static int run0(db_conn *c, const char *sql)
{
    db_stmt *s = db_prepare(c, sql);
    assert_non_null(s);
    int r = db_step(s);
    return r;
}

static int64_t one_int(db_conn *c, const char *sql)
{
    db_stmt *s = db_prepare(c, sql);
    assert_non_null(s);
    assert_int_equal(db_step(s), DB_ROW);
    int64_t v = db_column_int64(s, 0);
    assert_int_equal(db_step(s), DB_DONE);
    return v;
}

static int setup(void **state)
{
    (void)state;
    obs_exec("DROP SCHEMA IF EXISTS " NS " CASCADE");
    char sql[256];
    snprintf(sql, sizeof sql, "CREATE SCHEMA " NS " AUTHORIZATION \"%s\"", g_user);
    obs_exec(sql);
    return 0;
}

/* ---- open ------------------------------------------------------------------ */

static void test_open_errors(void **state)
{
    (void)state;
    db_engine *e = NULL;
    char *msg = NULL;

    struct eopts missing = {.ns = "no_such_ns"};
    assert_int_equal(open_engine(&missing, &e, &msg), -ENOENT);
    assert_null(e);
    printf("  missing namespace: %s\n", msg);
    assert_non_null(strstr(msg, "no namespace"));
    assert_non_null(strstr(msg, "no_such_ns"));
    assert_null(strstr(msg, g_pass));
    free(msg);
    msg = NULL;

    struct eopts badpw = {.password = "wrong-secret-pw"};
    assert_int_equal(open_engine(&badpw, &e, &msg), -EACCES);
    printf("  bad password: %s\n", msg);
    assert_non_null(strstr(msg, "refused the credentials"));
    assert_null(strstr(msg, "wrong-secret-pw"));
    assert_null(strstr(msg, g_pass));
    free(msg);
    msg = NULL;

    /* a port nobody listens on: bind one, close it */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    struct eopts closed = {.port = ntohs(a.sin_port), .connect_ms = 2000};
    int64_t t0 = bfs_mono_ms();
    assert_int_equal(open_engine(&closed, &e, &msg), -EIO);
    printf("  unreachable: %s (%lld ms)\n", msg, (long long)(bfs_mono_ms() - t0));
    assert_non_null(strstr(msg, "cannot reach"));
    assert_null(strstr(msg, g_pass));
    free(msg);
    msg = NULL;

    e = engine(NULL);
    const char *d = db_engine_describe(e);
    assert_non_null(strstr(d, "namespace " NS));
    assert_null(strstr(d, g_pass));
    int open, in_use, max;
    db_engine_pool_stats(e, &open, &in_use, &max);
    assert_int_equal(open, 1);
    assert_int_equal(in_use, 0);
    assert_int_equal(max, 4);
    db_engine_close(e);
}

/* ---- statements -------------------------------------------------------------- */

static void test_translate(void **state)
{
    (void)state;
    db_engine *e = engine(NULL);
    db_conn *c = db_engine_conn(e);
    db_stmt *s = db_prepare(c, "SELECT CAST(?1 AS text) AS a, '?2' AS b, \"?3\".x AS c, $$?4$$ AS d, "
                               "E'\\'?5' AS e, ?2::int AS f /* ?6 /* ?7 */ */ -- ?8\n"
                               ", '{\"a\": 1}'::jsonb ? 'a' AS g FROM (SELECT 'q' AS x) AS \"?3\"");
    assert_non_null(s);
    assert_int_equal(db_bind_text(s, 1, "one", -1), 0);
    assert_int_equal(db_bind_int64(s, 2, 42), 0);
    assert_int_equal(db_bind_int64(s, 3, 1), -EINVAL); /* no ?3 outside quotes */
    assert_int_equal(db_step(s), DB_ROW);
    assert_int_equal(db_column_count(s), 7);
    assert_string_equal(db_column_name(s, 0), "a");
    assert_string_equal(db_column_text(s, 0), "one");
    assert_string_equal(db_column_text(s, 1), "?2");
    assert_string_equal(db_column_text(s, 2), "q");
    assert_string_equal(db_column_text(s, 3), "?4");
    assert_string_equal(db_column_text(s, 4), "'?5");
    assert_int_equal(db_column_int64(s, 5), 42);
    assert_int_equal(db_column_type(s, 6), DB_INTEGER); /* bool */
    assert_int_equal(db_column_int64(s, 6), 1);
    assert_int_equal(db_step(s), DB_DONE);
    /* the cache hands the same statement back, cleared */
    db_stmt *again = db_prepare(c, "SELECT CAST(?1 AS text) AS a, '?2' AS b, \"?3\".x AS c, $$?4$$ AS d, "
                                   "E'\\'?5' AS e, ?2::int AS f /* ?6 /* ?7 */ */ -- ?8\n"
                                   ", '{\"a\": 1}'::jsonb ? 'a' AS g FROM (SELECT 'q' AS x) AS \"?3\"");
    assert_ptr_equal(again, s);
    assert_int_equal(db_bind_int64(s, 2, 7), 0);
    assert_int_equal(db_step(s), DB_ROW);
    assert_null(db_column_text(s, 0)); /* unbound: NULL */
    assert_int_equal(db_column_type(s, 0), DB_NULL);
    assert_int_equal(db_column_int64(s, 5), 7);
    db_reset(s); /* keeps bindings */
    assert_int_equal(db_step(s), DB_ROW);
    assert_int_equal(db_column_int64(s, 5), 7);
    db_engine_close(e);
}

static void test_types(void **state)
{
    (void)state;
    db_engine *e = engine(NULL);
    db_conn *c = db_engine_conn(e);
    assert_int_equal(db_exec(c, "CREATE TABLE types (i bigint, b boolean, y bytea, u uuid, f double precision, "
                                "n numeric, t text, z integer)"),
                     0);
    db_stmt *s = db_prepare(c, "INSERT INTO types VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
    const uint8_t blob[] = {0, 1, 0x5c, 0x27, 0xff, 0, 'x'};
    const uint8_t id[16] = {0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0xa, 0xb};
    const char *utf8 = "M\xc3\xa9lange \xe2\x88\x9e \xf0\x9f\x94\xad 'q' \"d\" \\";
    assert_int_equal(db_bind_int64(s, 1, INT64_MIN + 1), 0);
    assert_int_equal(db_bind_int64(s, 2, 1), 0); /* '1' is a boolean literal */
    assert_int_equal(db_bind_blob(s, 3, blob, sizeof blob), 0);
    assert_int_equal(db_bind_id(s, 4, id), 0);
    assert_int_equal(db_bind_double(s, 5, 0.1), 0);
    assert_int_equal(db_bind_double(s, 6, 2.5), 0);
    assert_int_equal(db_bind_text(s, 7, utf8, -1), 0);
    assert_int_equal(db_bind_null(s, 8), 0);
    assert_int_equal(db_step(s), DB_DONE);
    assert_int_equal(db_changes(c), 1);

    s = db_prepare(c, "SELECT i, b, y, u, f, n, t, z, NOT b, y FROM types");
    assert_int_equal(db_step(s), DB_ROW);
    assert_int_equal(db_column_type(s, 0), DB_INTEGER);
    assert_true(db_column_int64(s, 0) == INT64_MIN + 1);
    assert_int_equal(db_column_type(s, 1), DB_INTEGER);
    assert_int_equal(db_column_int64(s, 1), 1);
    assert_int_equal(db_column_int64(s, 8), 0);
    assert_int_equal(db_column_type(s, 2), DB_BLOB);
    assert_int_equal(db_column_bytes(s, 2), sizeof blob);
    assert_memory_equal(db_column_blob(s, 2), blob, sizeof blob);
    assert_memory_equal(db_column_blob(s, 9), blob, sizeof blob);
    assert_int_equal(db_column_type(s, 3), DB_TEXT);
    assert_string_equal(db_column_text(s, 3), "deadbeef000102030405060708090a0b");
    assert_int_equal(db_column_bytes(s, 3), 32);
    uint8_t back[16];
    assert_int_equal(db_column_id(s, 3, back), 0);
    assert_memory_equal(back, id, 16);
    assert_int_equal(db_column_type(s, 4), DB_FLOAT);
    assert_true(db_column_double(s, 4) == 0.1);
    assert_int_equal(db_column_type(s, 5), DB_FLOAT);
    assert_true(db_column_double(s, 5) == 2.5);
    assert_int_equal(db_column_type(s, 6), DB_TEXT);
    assert_string_equal(db_column_text(s, 6), utf8);
    assert_int_equal(db_column_bytes(s, 6), (int)strlen(utf8));
    assert_int_equal(db_column_type(s, 7), DB_NULL);
    assert_null(db_column_text(s, 7));
    assert_int_equal(db_step(s), DB_DONE);

    /* the id binds where a uuid is compared */
    s = db_prepare(c, "SELECT count(*) FROM types WHERE u = ?1");
    db_bind_id(s, 1, id);
    assert_int_equal(db_step(s), DB_ROW);
    assert_int_equal(db_column_int64(s, 0), 1);
    db_engine_close(e);
}

static void test_writes(void **state)
{
    (void)state;
    db_engine *e = engine(NULL);
    db_conn *c = db_engine_conn(e);
    assert_int_equal(db_exec(c, "CREATE TABLE coll (id bigserial PRIMARY KEY, name text UNIQUE NOT NULL);"
                                "CREATE TABLE ds (coll bigint REFERENCES coll (id), k int)"),
                     0);
    assert_int_equal(db_table_exists(c, "coll"), 1);
    assert_int_equal(db_table_exists(c, "nope"), 0);
    assert_int_equal(db_column_exists(c, "coll", "name"), 1);
    assert_int_equal(db_column_exists(c, "coll", "nope"), 0);

    db_stmt *s = db_prepare(c, "INSERT INTO coll (name) VALUES (?1) RETURNING id");
    db_bind_text(s, 1, "a", -1);
    assert_int_equal(db_step(s), DB_ROW);
    int64_t id = db_column_int64(s, 0);
    assert_true(id > 0);
    assert_int_equal(db_step(s), DB_DONE);
    assert_int_equal(db_changes(c), 1);

    s = db_prepare(c, "INSERT INTO coll (name) VALUES (?1) ON CONFLICT DO NOTHING");
    db_bind_text(s, 1, "a", -1);
    assert_int_equal(db_step(s), DB_DONE);
    assert_int_equal(db_changes(c), 0);
    db_bind_text(s, 1, "b", -1);
    assert_int_equal(db_step(s), DB_DONE);
    assert_int_equal(db_changes(c), 1);

    s = db_prepare(c, "INSERT INTO coll (name) VALUES (?1)");
    db_bind_text(s, 1, "a", -1);
    assert_int_equal(db_step(s), -EEXIST);
    s = db_prepare(c, "INSERT INTO ds VALUES (?1, 1)");
    db_bind_int64(s, 1, 999);
    assert_int_equal(db_step(s), -ENOENT); /* foreign key: a referenced row is missing */
    s = db_prepare(c, "UPDATE coll SET name = name || 'x'");
    assert_int_equal(db_step(s), DB_DONE);
    assert_int_equal(db_changes(c), 2);
    assert_int_equal(run0(c, "SELECT * FROM no_such_table"), -ENOENT);
    assert_int_equal(run0(c, "SELEKT"), -EIO);
    db_engine_close(e);
}

static void test_transactions(void **state)
{
    (void)state;
    db_engine *e = engine(NULL);
    db_conn *c = db_engine_conn(e);
    assert_int_equal(db_exec(c, "CREATE TABLE t (k int PRIMARY KEY)"), 0);
    db_stmt *ins = db_prepare(c, "INSERT INTO t VALUES (?1)");

    assert_int_equal(db_begin(c, DB_TX_WRITE), 0);
    assert_true(db_in_transaction(c));
    int open, in_use;
    db_engine_pool_stats(e, &open, &in_use, NULL);
    assert_int_equal(in_use, 1); /* held until commit */
    db_bind_int64(ins, 1, 1);
    assert_int_equal(db_step(ins), DB_DONE);
    assert_int_equal(db_savepoint(c, "sp"), 0);
    db_bind_int64(ins, 1, 1);
    assert_int_equal(db_step(ins), -EEXIST);
    db_rollback_to(c, "sp"); /* the transaction goes on */
    db_bind_int64(ins, 1, 2);
    assert_int_equal(db_step(ins), DB_DONE);
    assert_int_equal(db_release(c, "sp"), 0);
    assert_int_equal(db_commit(c), 0);
    assert_false(db_in_transaction(c));
    db_engine_pool_stats(e, &open, &in_use, NULL);
    assert_int_equal(in_use, 0);
    assert_int_equal(one_int(c, "SELECT count(*) FROM t"), 2);

    assert_int_equal(db_begin(c, DB_TX_WRITE), 0);
    db_bind_int64(ins, 1, 3);
    assert_int_equal(db_step(ins), DB_DONE);
    assert_int_equal(one_int(c, "SELECT count(*) FROM t"), 3); /* sees its own row */
    db_rollback(c);
    assert_int_equal(one_int(c, "SELECT count(*) FROM t"), 2);

    /* a failed statement aborts a PostgreSQL transaction: COMMIT rolls back */
    assert_int_equal(db_begin(c, DB_TX_WRITE), 0);
    db_bind_int64(ins, 1, 4);
    assert_int_equal(db_step(ins), DB_DONE);
    db_bind_int64(ins, 1, 4);
    assert_int_equal(db_step(ins), -EEXIST);
    assert_int_equal(db_commit(c), -EIO);
    assert_int_equal(one_int(c, "SELECT count(*) FROM t"), 2);

    /* a read transaction refuses writes */
    assert_int_equal(db_begin(c, DB_TX_READ), 0);
    assert_int_equal(one_int(c, "SELECT count(*) FROM t"), 2);
    db_bind_int64(ins, 1, 5);
    assert_int_equal(db_step(ins), -EROFS);
    db_rollback(c);
    db_rollback(c); /* harmless outside one */

    /* a read-only engine refuses writes, with and without db_begin */
    struct eopts ro = {.readonly = true};
    db_engine *r = engine(&ro);
    db_conn *rc = db_engine_conn(r);
    db_stmt *rins = db_prepare(rc, "INSERT INTO t VALUES (?1)");
    db_bind_int64(rins, 1, 9);
    assert_int_equal(db_step(rins), -EROFS);
    assert_int_equal(db_begin(rc, DB_TX_WRITE), -EROFS);
    assert_int_equal(one_int(rc, "SELECT count(*) FROM t"), 2);
    db_engine_close(r);
    db_engine_close(e);
}

/* ---- the pool ---------------------------------------------------------------- */

struct worker {
    db_engine *e;
    int n, ok, failed;
};

static void *worker_main(void *p)
{
    struct worker *w = p;
    db_conn *c = db_engine_conn(w->e);
    for (int i = 0; i < w->n; i++) {
        db_stmt *s = db_prepare(c, "SELECT CAST(?1 AS bigint) + 1 FROM pg_sleep(0.005)");
        db_bind_int64(s, 1, i);
        if (db_step(s) == DB_ROW && db_column_int64(s, 0) == i + 1 && db_step(s) == DB_DONE)
            w->ok++;
        else
            w->failed++;
    }
    return NULL;
}

/* Start nt workers of n statements each on e, into t[] and w[]. */
static void workers_start(db_engine *e, int nt, int n, pthread_t *t, struct worker *w)
{
    for (int i = 0; i < nt; i++) {
        w[i] = (struct worker){.e = e, .n = n};
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
}

/* Join them: the statements that worked; those that failed into *failed. */
static int workers_join(int nt, pthread_t *t, struct worker *w, int *failed)
{
    int ok = 0;
    *failed = 0;
    for (int i = 0; i < nt; i++) {
        pthread_join(t[i], NULL);
        ok += w[i].ok;
        *failed += w[i].failed;
    }
    return ok;
}

/* An engine on the host list hosts (pool of max), nt <= 32 workers of n
 * statements on it, closed again: the statements that worked; those that
 * failed into *failed. */
static int run_on_hosts(const char *hosts, int max, int nt, int n, int *failed)
{
    struct eopts x = {.hosts = hosts, .max = max, .connect_ms = 5000, .idle_ms = 50};
    db_engine *e = engine(&x);
    pthread_t t[32];
    struct worker w[32];
    assert_true(nt <= 32);
    workers_start(e, nt, n, t, w);
    int ok = workers_join(nt, t, w, failed);
    db_engine_close(e);
    return ok;
}

static void test_pool_bound(void **state)
{
    (void)state;
    struct eopts x = {.max = 3};
    db_engine *e = engine(&x);
    enum { NT = 12, N = 25 };
    pthread_t t[NT];
    struct worker w[NT];
    workers_start(e, NT, N, t, w);
    long peak = 0;
    int peak_open = 0;
    for (int k = 0; k < 40; k++) {
        long n = g_direct ? role_backends() : 0;
        int open;
        db_engine_pool_stats(e, &open, NULL, NULL);
        if (n > peak)
            peak = n;
        if (open > peak_open)
            peak_open = open;
        bfs_sleep_ms(10);
    }
    int failed;
    int ok = workers_join(NT, t, w, &failed);
    printf("  %d threads x %d: %d ok, %d failed; peak %d open, %ld server backends\n", NT, N, ok, failed,
           peak_open, peak);
    assert_int_equal(failed, 0);
    assert_int_equal(ok, NT * N);
    assert_true(peak_open <= 3);
    if (g_direct) {
        assert_true(peak >= 1);
        assert_true(peak <= 3);
    }
    db_engine_close(e);
    if (g_direct)
        for (int k = 0; k < 50 && role_backends() > 0; k++)
            bfs_sleep_ms(20);
    if (g_direct)
        assert_int_equal(role_backends(), 0); /* close leaves nothing */
}

/* Host names are looked up by the engine within connect_timeout, each by a
 * thread of its own, and handed to libpq as hostaddr beside host
 * (db_pg.c, "host names"): a name, a list whose first name does not exist
 * (skipped, as libpq does), a list mixing an address and a name; threads
 * connecting at once (each connect looks up again); a name that does not
 * resolve is one sentence naming it. */
static void test_host_names(void **state)
{
    (void)state;
    const char *lists[] = {"localhost", "no-such-host-bfs.invalid,localhost", "127.0.0.1,localhost"};
    for (size_t k = 0; k < sizeof lists / sizeof lists[0]; k++) {
        int failed, ok = run_on_hosts(lists[k], 4, 4, 6, &failed);
        printf("  host=%s: %d of %d statements\n", lists[k], ok, 4 * 6);
        assert_int_equal(ok, 4 * 6);
    }
    struct eopts bad = {.hosts = "no-such-host-bfs.invalid", .connect_ms = 3000};
    db_engine *e = NULL;
    char *msg = NULL;
    int64_t t0 = bfs_mono_ms();
    int ret = open_engine(&bad, &e, &msg);
    printf("  a name that does not resolve: %s (%lld ms)\n", msg ? msg : "?", (long long)(bfs_mono_ms() - t0));
    assert_true(ret == -EIO || ret == -ETIMEDOUT); /* -ETIMEDOUT: this machine's name server is slow */
    assert_null(e);
    assert_non_null(strstr(msg, "cannot reach"));
    assert_non_null(strstr(msg, "no-such-host-bfs.invalid"));
    assert_true(bfs_mono_ms() - t0 < 3000 + 1000);
    free(msg);
}

/* getaddrinfo, as db_pg.c calls it, lands here (this executable's definition
 * comes first): a host name (not an address) takes g_gai_delay_ms first, a
 * name server that answers slowly. */
static atomic_int g_gai_delay_ms;

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    static int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
    if (!real)
        real = (int (*)(const char *, const char *, const struct addrinfo *, struct addrinfo **))dlsym(
            RTLD_NEXT, "getaddrinfo");
    int ms = atomic_load(&g_gai_delay_ms);
    if (ms && node && !strcmp(node, "localhost"))
        bfs_sleep_ms(ms);
    return real(node, service, hints, res);
}

/* A burst of connects, each looking its host name up for 300 ms: 24 at once
 * are more than the 16 lookups a process runs at a time; the others wait
 * for one to end, within connect_timeout (they once failed at once with
 * "could not translate host name" while the name server worked). */
static void test_lookup_burst(void **state)
{
    (void)state;
    atomic_store(&g_gai_delay_ms, 300);
    int failed, ok = run_on_hosts("localhost", 24, 24, 2, &failed);
    printf("  24 threads, lookups of 300 ms: %d of %d statements, %d failed\n", ok, 24 * 2, failed);
    atomic_store(&g_gai_delay_ms, 0);
    assert_int_equal(failed, 0);
    assert_int_equal(ok, 24 * 2);
}

static void test_idle_close(void **state)
{
    (void)state;
    struct eopts x = {.idle_ms = 300};
    db_engine *e = engine(&x);
    db_conn *c = db_engine_conn(e);
    assert_int_equal(one_int(c, "SELECT 1"), 1);
    int open;
    db_engine_pool_stats(e, &open, NULL, NULL);
    assert_int_equal(open, 1);
    bfs_sleep_ms(800); /* no call on the engine: the reaper closes it */
    db_engine_pool_stats(e, &open, NULL, NULL);
    assert_int_equal(open, 0);
    if (g_direct)
        for (int k = 0; k < 50 && role_backends() > 0; k++)
            bfs_sleep_ms(20);
    if (g_direct)
        assert_int_equal(role_backends(), 0);
    assert_int_equal(one_int(c, "SELECT 2"), 2); /* opened again on demand */
    db_engine_close(e);
}

/* ---- deadlines and faults ---------------------------------------------------- */

static void test_statement_timeout(void **state)
{
    (void)state;
    struct eopts x = {.stmt_ms = 500};
    db_engine *e = engine(&x);
    db_conn *c = db_engine_conn(e);
    int64_t t0 = bfs_mono_ms();
    assert_int_equal(run0(c, "SELECT pg_sleep(5)"), -ETIMEDOUT);
    int64_t ms = bfs_mono_ms() - t0;
    printf("  pg_sleep(5) with a 500 ms statement timeout: -ETIMEDOUT after %lld ms\n", (long long)ms);
    assert_true(ms >= 450 && ms < 1500);
    assert_int_equal(one_int(c, "SELECT 3"), 3);
    /* inside a transaction too; the transaction is then aborted */
    assert_int_equal(db_begin(c, DB_TX_READ), 0);
    assert_int_equal(run0(c, "SELECT pg_sleep(5)"), -ETIMEDOUT);
    db_rollback(c);
    assert_int_equal(one_int(c, "SELECT 4"), 4);
    db_engine_close(e);
}

static void test_frozen_server(void **state)
{
    (void)state;
    struct eopts x = {.stmt_ms = 800, .connect_ms = 1000, .max = 2};
    db_engine *e = engine(&x);
    db_conn *c = db_engine_conn(e);
    assert_int_equal(one_int(c, "SELECT 5"), 5);
    pgsh("pg_freeze");
    int64_t t0 = bfs_mono_ms();
    int r = run0(c, "SELECT 6");
    int64_t ms = bfs_mono_ms() - t0;
    printf("  a statement to a stopped server: %d after %lld ms\n", r, (long long)ms);
    assert_int_equal(r, -ETIMEDOUT);
    assert_true(ms < 800 + 500 + 1000); /* deadline + grace + slack */
    /* a new connection (direct) meets the connect deadline */
    t0 = bfs_mono_ms();
    r = run0(c, "SELECT 7");
    ms = bfs_mono_ms() - t0;
    printf("  the next one: %d after %lld ms\n", r, (long long)ms);
    assert_true(r == -ETIMEDOUT);
    assert_true(ms < 1000 + 800 + 500 + 1000);
    pgsh("pg_thaw");
    int64_t v = -1;
    for (int k = 0; k < 20 && v != 8; k++) {
        db_stmt *s = db_prepare(c, "SELECT 8");
        if (db_step(s) == DB_ROW)
            v = db_column_int64(s, 0);
        else
            bfs_sleep_ms(200);
    }
    assert_int_equal(v, 8);
    db_engine_close(e);
}

static void test_terminated(void **state)
{
    (void)state;
    struct eopts x = {.max = 2};
    db_engine *e = engine(&x);
    db_conn *c = db_engine_conn(e);
    assert_int_equal(one_int(c, "SELECT 9"), 9);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '%s'", g_user);
    long killed = obs_long(sql);
    printf("  terminated %ld backends of the role\n", killed);
    assert_true(killed >= 1);
    bfs_sleep_ms(100);
    assert_int_equal(one_int(c, "SELECT 10"), 10); /* reconnects by itself */

    /* a link lost inside a transaction: -ECONNRESET until rollback */
    assert_int_equal(db_begin(c, DB_TX_READ), 0);
    killed = obs_long(sql);
    bfs_sleep_ms(100);
    int r = run0(c, "SELECT 11");
    assert_true(r == -ECONNRESET);
    assert_true(db_in_transaction(c));
    assert_int_equal(run0(c, "SELECT 11"), -ECONNRESET);
    assert_int_equal(db_commit(c), -ECONNRESET);
    assert_false(db_in_transaction(c));
    assert_int_equal(one_int(c, "SELECT 12"), 12);
    int open, in_use;
    db_engine_pool_stats(e, &open, &in_use, NULL);
    assert_int_equal(in_use, 0);
    db_engine_close(e);
}

static void test_restart(void **state)
{
    (void)state;
    struct eopts x = {.stmt_ms = 1500, .connect_ms = 1000};
    db_engine *e = engine(&x);
    db_conn *c = db_engine_conn(e);
    assert_int_equal(one_int(c, "SELECT 13"), 13);
    pgsh("pg_down");
    int64_t t0 = bfs_mono_ms();
    int r = run0(c, "SELECT 14");
    int64_t ms = bfs_mono_ms() - t0;
    printf("  during the outage: %d after %lld ms\n", r, (long long)ms);
    assert_true(r < 0);
    assert_true(ms < 1500 + 500 + 1000);
    t0 = bfs_mono_ms();
    r = run0(c, "SELECT 14");
    ms = bfs_mono_ms() - t0;
    printf("  again: %d after %lld ms\n", r, (long long)ms);
    assert_true(r < 0);
    if (g_direct)
        assert_true(ms < 500); /* refused at once */
    pgsh("pg_up");
    t0 = bfs_mono_ms();
    int64_t v = -1;
    int tries = 0;
    while (v != 15 && bfs_mono_ms() - t0 < 20000) {
        tries++;
        db_stmt *s = db_prepare(c, "SELECT 15");
        if (db_step(s) == DB_ROW)
            v = db_column_int64(s, 0);
        else
            bfs_sleep_ms(200);
    }
    printf("  after the restart: ok after %d tries, %lld ms\n", tries, (long long)(bfs_mono_ms() - t0));
    assert_int_equal(v, 15);
    if (g_direct)
        assert_int_equal(tries, 1);
    db_engine_close(e);
}

/* ---- dialect ------------------------------------------------------------------ */

/* The write side's helpers: a range column read back as SQLite's pair
 * (db_column_span), NULL-safe span equality, ingest_date from BIGINT or
 * TIMESTAMP, NOT DISTINCT, and a table lock that holds off a second writer. */
static void test_write_helpers(void **state)
{
    (void)state;
    db_engine *e = engine(NULL);
    db_conn *c = db_engine_conn(e);
    const int64_t MAX = BFS_TIMESPAN_UNBOUNDED_END;
    char *ddl = db_sql_span_ddl(c);
    char *sql = NULL;
    assert_true(asprintf(&sql, "CREATE TABLE sp (k int PRIMARY KEY, %s, n bigint, ts timestamp)", ddl) > 0);
    assert_int_equal(db_exec(c, sql), 0);
    free(sql);
    free(ddl);
    char *vals = db_sql_span_values(c, "?2", "?3");
    assert_true(asprintf(&sql, "INSERT INTO sp (k, timespan) VALUES (?1, %s)", vals) > 0);
    struct {
        int k;
        int64_t b, e;
    } rows[] = {{1, 0, MAX}, {2, 100, 200}, {3, 0, 500}, {4, 300, MAX}, {5, MAX, 0}};
    db_stmt *s = db_prepare(c, sql);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        db_bind_int64(s, 1, rows[i].k);
        db_bind_int64(s, 2, rows[i].b);
        db_bind_int64(s, 3, rows[i].e);
        assert_int_equal(db_step(s), DB_DONE);
    }
    free(sql);
    free(vals);
    s = db_prepare(c, "SELECT k, timespan, n FROM sp ORDER BY k");
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int64_t b = -1, en = -1;
        assert_int_equal(db_step(s), DB_ROW);
        assert_int_equal(db_column_span(s, 1, &b, &en), 1);
        assert_true(b == rows[i].b && en == rows[i].e);
        assert_int_equal(db_column_span(s, 0, &b, &en), -EINVAL); /* not a range */
    }
    assert_int_equal(db_step(s), DB_DONE);
    assert_int_equal(db_exec(c, "INSERT INTO sp (k, timespan) VALUES (6, NULL)"), -EINVAL); /* NOT NULL */

    char *same = db_sql_span_same(c, "", "?1", "?2");
    assert_true(asprintf(&sql, "SELECT count(*) FROM sp WHERE %s", same) > 0);
    s = db_prepare(c, sql);
    db_bind_int64(s, 1, 100);
    db_bind_int64(s, 2, 200);
    assert_int_equal(db_step(s), DB_ROW);
    assert_int_equal(db_column_int64(s, 0), 1);
    db_reset(s);
    db_bind_int64(s, 1, 0);
    db_bind_int64(s, 2, MAX);
    assert_int_equal(db_step(s), DB_ROW);
    assert_int_equal(db_column_int64(s, 0), 1);
    db_reset(s);
    db_bind_null(s, 1);
    db_bind_null(s, 2);
    assert_int_equal(db_step(s), DB_ROW);
    assert_int_equal(db_column_int64(s, 0), 0);
    free(sql);
    free(same);

    /* ingest_date: TAI ns as they are; a TIMESTAMP as its whole UTC seconds */
    assert_int_equal(db_exec(c, "UPDATE sp SET n = 1700000000123456789 WHERE k = 1;"
                                "UPDATE sp SET ts = '2023-11-14 22:13:20.5' WHERE k = 2"),
                     0);
    char *tn = db_sql_time_ns(c, "n"), *tt = db_sql_time_ns(c, "ts");
    assert_true(asprintf(&sql, "SELECT %s, %s FROM sp WHERE k IN (1, 2) ORDER BY k", tn, tt) > 0);
    s = db_prepare(c, sql);
    assert_int_equal(db_step(s), DB_ROW);
    assert_true(db_column_int64(s, 0) == INT64_C(1700000000123456789));
    assert_int_equal(db_step(s), DB_ROW);
    assert_true(db_column_int64(s, 1) == INT64_C(1700000000) * 1000000000);
    free(sql);
    free(tn);
    free(tt);

    assert_true(asprintf(&sql, "SELECT count(*) FROM sp WHERE n %s ?1", db_sql_word(c, DB_WORD_IS)) > 0);
    s = db_prepare(c, sql);
    db_bind_null(s, 1);
    assert_int_equal(db_step(s), DB_ROW);
    assert_int_equal(db_column_int64(s, 0), 4);
    free(sql);

    /* the lock holds a second writer off until the first commits */
    assert_int_equal(db_begin(c, DB_TX_WRITE), 0);
    assert_int_equal(db_lock_table(c, "sp"), 0);
    assert_non_null(g_obs);
    PGresult *r = PQexec(g_obs, "SET lock_timeout = 200; "
                                "INSERT INTO bfs_test.sp (k, timespan) VALUES (9, '(,)')");
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR); /* 55P03 lock_not_available */
    PQclear(r);
    db_rollback(c);
    r = PQexec(g_obs, "SET lock_timeout = 0; SELECT 1");
    PQclear(r);
    db_engine_close(e);
}

struct exiting {
    db_engine *e;
    bool in_tx;
    int ret;  /* checked by the main thread: cmocka asserts only there */
};

static void *exiting_thread(void *p)
{
    struct exiting *x = p;
    db_conn *c = db_engine_conn(x->e);
    x->ret = !c ? -ENOMEM : x->in_tx ? db_begin(c, DB_TX_WRITE) : 0;
    db_stmt *s = x->ret ? NULL : db_prepare(c, "SELECT 1");
    if (!x->ret)
        x->ret = s && db_step(s) == DB_ROW ? 0 : -EIO;
    return NULL; /* exits with its db_conn, inside a transaction or not */
}

/* A thread that exits takes its db_conn along, and a link it held inside a
 * transaction goes back to the pool (rolled back). */
static void test_thread_exit(void **state)
{
    (void)state;
    db_engine *e = engine(NULL);
    for (int round = 0; round < 2; round++) {
        pthread_t t[4];
        struct exiting x[4];
        for (int i = 0; i < 4; i++) {
            x[i] = (struct exiting){e, (i + round) % 2 == 0, -1};
            assert_int_equal(pthread_create(&t[i], NULL, exiting_thread, &x[i]), 0);
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(t[i], NULL);
            assert_int_equal(x[i].ret, 0);
        }
        int open = 0, in_use = -1, max = 0;
        db_engine_pool_stats(e, &open, &in_use, &max);
        assert_int_equal(in_use, 0);
    }
    db_conn *c = db_engine_conn(e); /* the pool still serves */
    assert_int_equal(one_int(c, "SELECT 2"), 2);
    db_engine_close(e);
}

static void test_timespans(void **state)
{
    (void)state;
    db_engine *e = engine(NULL);
    db_conn *c = db_engine_conn(e);
    char *cols = db_sql_span_columns(c, "");
    assert_string_equal(cols, "timespan");
    char *ddl = NULL;
    assert_true(asprintf(&ddl,
                         "CREATE TABLE calib (det bigint NOT NULL, %s int8range, "
                         "EXCLUDE USING gist (det WITH =, timespan WITH &&))",
                         cols) > 0);
    assert_int_equal(db_exec(c, ddl), 0);
    free(ddl);
    char *vals = db_sql_span_values(c, "?2", "?3");
    char *ins = NULL;
    assert_true(asprintf(&ins, "INSERT INTO calib (det, %s) VALUES (?1, %s)", cols, vals) > 0);
    const int64_t MAX = BFS_TIMESPAN_UNBOUNDED_END;
    struct {
        int64_t det, b, e;
        bool null;
    } rows[] = {{1, 0, MAX, false}, {2, 100, 200, false}, {3, 0, 500, false},
                {4, 300, MAX, false}, {5, MAX, 0, false},  {6, 0, 0, true}};
    db_stmt *s = db_prepare(c, ins);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        db_bind_int64(s, 1, rows[i].det);
        if (rows[i].null) {
            db_bind_null(s, 2);
            db_bind_null(s, 3);
        } else {
            db_bind_int64(s, 2, rows[i].b);
            db_bind_int64(s, 3, rows[i].e);
        }
        assert_int_equal(db_step(s), DB_DONE);
    }
    /* the server's form is daf_butler's: NULL bounds for unbounded ends */
    assert_int_equal(one_int(c, "SELECT count(*) FROM calib WHERE det = 1 AND lower_inf(timespan) "
                                "AND upper_inf(timespan)"),
                     1);
    assert_int_equal(one_int(c, "SELECT count(*) FROM calib WHERE det = 3 AND lower_inf(timespan) "
                                "AND upper(timespan) = 500"),
                     1);
    assert_int_equal(one_int(c, "SELECT count(*) FROM calib WHERE det = 5 AND isempty(timespan)"), 1);
    assert_int_equal(one_int(c, "SELECT count(*) FROM calib WHERE det = 6 AND timespan IS NULL"), 1);
    /* the exclusion constraint refuses an overlap: -EEXIST */
    db_bind_int64(s, 1, 2);
    db_bind_int64(s, 2, 150);
    db_bind_int64(s, 3, 250);
    assert_int_equal(db_step(s), -EEXIST);
    db_bind_int64(s, 2, 200); /* [200, 250) touches, does not overlap */
    assert_int_equal(db_step(s), DB_DONE);

    char *sel = db_sql_span_select(c, "a");
    char *q = NULL;
    assert_true(asprintf(&q, "SELECT a.det, %s FROM calib a WHERE a.det <> 2 ORDER BY a.det", sel) > 0);
    s = db_prepare(c, q);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (rows[i].det == 2)
            continue;
        assert_int_equal(db_step(s), DB_ROW);
        assert_int_equal(db_column_int64(s, 0), rows[i].det);
        if (rows[i].null) {
            assert_int_equal(db_column_type(s, 1), DB_NULL);
            assert_int_equal(db_column_type(s, 2), DB_NULL);
        } else {
            assert_int_equal(db_column_type(s, 1), DB_INTEGER);
            assert_true(db_column_int64(s, 1) == rows[i].b);
            assert_true(db_column_int64(s, 2) == rows[i].e);
        }
    }
    assert_int_equal(db_step(s), DB_DONE);
    free(q);

    char *ov = db_sql_span_overlaps(c, "a", "?1", "?2");
    assert_true(asprintf(&q, "SELECT string_agg(a.det::text, ',' ORDER BY a.det) FROM calib a WHERE %s", ov) > 0);
    s = db_prepare(c, q);
    struct {
        int64_t b, e;
        const char *want;
    } ovq[] = {{150, 160, "1,2,3"}, {450, 600, "1,3,4"}, {0, MAX, "1,2,2,3,4"}, {600, MAX, "1,4"},
               {210, 220, "1,2,3"}, {7, 7, NULL}};
    for (size_t i = 0; i < sizeof ovq / sizeof ovq[0]; i++) {
        db_bind_int64(s, 1, ovq[i].b);
        db_bind_int64(s, 2, ovq[i].e);
        assert_int_equal(db_step(s), DB_ROW);
        const char *got = db_column_text(s, 0);
        if (ovq[i].want)
            assert_string_equal(got, ovq[i].want);
        else
            assert_null(got);
    }
    free(q);
    free(ov);
    free(sel);
    free(ins);
    free(vals);
    free(cols);

    char *hex = db_sql_id_hex(c, "CAST(?1 AS uuid)");
    assert_true(asprintf(&q, "SELECT %s", hex) > 0);
    s = db_prepare(c, q);
    const uint8_t id[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    db_bind_id(s, 1, id);
    assert_int_equal(db_step(s), DB_ROW);
    assert_string_equal(db_column_text(s, 0), "0102030405060708090a0b0c0d0e0f10");
    free(q);
    free(hex);

    assert_false(db_ident_needs_quotes(c, "dataset"));
    assert_false(db_ident_needs_quotes(c, "_x1"));
    assert_true(db_ident_needs_quotes(c, "user"));
    assert_true(db_ident_needs_quotes(c, "order"));
    assert_true(db_ident_needs_quotes(c, "Foo"));
    assert_true(db_ident_needs_quotes(c, "a b"));
    assert_true(db_ident_needs_quotes(c, "1a"));
    assert_true(db_ident_needs_quotes(c, ""));
    db_engine_close(e);
}

/* GLOB: SQLite's answers are the reference. */
static void test_glob(void **state)
{
    (void)state;
    db_engine *e = engine(NULL);
    db_conn *c = db_engine_conn(e);
    sqlite3 *lite;
    assert_int_equal(sqlite3_open(":memory:", &lite), SQLITE_OK);
    sqlite3_stmt *ls;
    assert_int_equal(sqlite3_prepare_v2(lite, "SELECT ?1 GLOB ?2", -1, &ls, NULL), SQLITE_OK);

    static const char *const fixed_pat[] = {
        "*", "", "a*", "*b", "a?c", "[ab]*", "[^ab]", "[]]", "[]a]", "[^]]", "[a-c]x", "[c-a]", "[^c-a]",
        "[a-]", "[-a]", "[]-a]", "[a-c-e]", "[--a]", "[", "[]", "[^]", "a[b", "%", "_", "a%b", "a_b", ".",
        "a.c", "(a|b)", "a+", "a{2}", "$", "^a", "\\", "a\\*", "[\\]", "[[]", "[[:alpha:]]", "x[!a]",
        "caf\xc3\xa9", "[\xc3\xa9" "e]", "*\n*", "?", "??", "**a**", "[*]", "[?]", "[.]", "a]",
        "[a]b]", "*/*",
    };
    static const char *const fixed_str[] = {
        "", "a", "b", "c", "ab", "abc", "aXc", "ac", "]", "]a", "-", "!", "x!", "xa", "xb", "%", "_",
        "a%b", "aXb", "a_b", ".", "a.c", "abc.", "(a|b)", "a", "aa", "a+", "a{2}", "$", "^a", "\\",
        "a\\", "a*", "[", "[]", "[a", "caf\xc3\xa9", "\xc3\xa9", "e", "x\ny", "d", "e]", "a]", "ab]",
        "b]", "r/x", ":", "*", "?", "[[:alpha:]]", "a}", "^", "ax",
    };
    enum { NSTR = sizeof fixed_str / sizeof fixed_str[0] };
    assert_int_equal(db_exec(c, "CREATE TABLE strs (i int, s text)"), 0);
    db_stmt *ins = db_prepare(c, "INSERT INTO strs VALUES (?1, ?2)");
    for (int i = 0; i < NSTR; i++) {
        db_bind_int64(ins, 1, i);
        db_bind_text(ins, 2, fixed_str[i], -1);
        assert_int_equal(db_step(ins), DB_DONE);
    }
    char *cond = db_sql_glob(c, "s", "?1");
    char *q = NULL;
    assert_true(asprintf(&q, "SELECT i FROM strs WHERE %s ORDER BY i", cond) > 0);
    free(cond);

    /* the fixed patterns, then random ones over a nasty alphabet */
    static const char alpha[] = "ab*?[]^-!%_.\\(|$]e";
    unsigned seed = 12345;
    int npat = 0, mismatches = 0;
    for (int round = 0; round < 400 + (int)(sizeof fixed_pat / sizeof fixed_pat[0]); round++) {
        char pat[16];
        if (round < (int)(sizeof fixed_pat / sizeof fixed_pat[0])) {
            snprintf(pat, sizeof pat, "%s", fixed_pat[round]);
        } else {
            int len = (int)(rand_r(&seed) % 7);
            for (int k = 0; k < len; k++)
                pat[k] = alpha[rand_r(&seed) % (sizeof alpha - 1)];
            pat[len] = '\0';
        }
        bool want[NSTR] = {false}, got[NSTR] = {false};
        for (int i = 0; i < NSTR; i++) {
            sqlite3_reset(ls);
            sqlite3_bind_text(ls, 1, fixed_str[i], -1, SQLITE_STATIC);
            sqlite3_bind_text(ls, 2, pat, -1, SQLITE_STATIC);
            assert_int_equal(sqlite3_step(ls), SQLITE_ROW);
            want[i] = sqlite3_column_int(ls, 0) == 1;
        }
        db_stmt *s = db_prepare(c, q);
        db_bind_text(s, 1, pat, -1);
        int r;
        while ((r = db_step(s)) == DB_ROW)
            got[db_column_int64(s, 0)] = true;
        if (r != DB_DONE) {
            fprintf(stderr, "glob pattern '%s': error %d\n", pat, r);
            mismatches++;
            continue;
        }
        for (int i = 0; i < NSTR; i++)
            if (want[i] != got[i]) {
                fprintf(stderr, "glob '%s' on '%s': sqlite %d, PostgreSQL %d\n", pat, fixed_str[i], want[i],
                        got[i]);
                mismatches++;
            }
        npat++;
    }
    printf("  %d patterns x %d strings: %d mismatches with SQLite's GLOB\n", npat, NSTR, mismatches);
    assert_int_equal(mismatches, 0);
    /* a NULL pattern matches nothing */
    db_stmt *s = db_prepare(c, q);
    db_bind_null(s, 1);
    assert_int_equal(db_step(s), DB_DONE);
    free(q);
    sqlite3_finalize(ls);
    sqlite3_close(lite);
    db_engine_close(e);
}

/* ---- cost ---------------------------------------------------------------------- */

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* A trivial lookup through the engine against one bare libpq round trip on
 * the same path: near 1 means the engine's transaction costs one round trip. */
static void test_latency(void **state)
{
    (void)state;
    db_engine *e = engine(NULL);
    db_conn *c = db_engine_conn(e);
    assert_int_equal(db_exec(c, "CREATE TABLE kv (k int PRIMARY KEY, v text)"), 0);
    assert_int_equal(db_exec(c, "INSERT INTO kv SELECT g, 'v' || g FROM generate_series(1, 1000) g"), 0);
    enum { N = 2000 };
    static int64_t eng_us[N], raw_us[N];
    for (int i = 0; i < N; i++) {
        int64_t t0 = (int64_t)(bfs_mono_s() * 1e6);
        db_stmt *s = db_prepare(c, "SELECT v FROM kv WHERE k = ?1");
        db_bind_int64(s, 1, 1 + i % 1000);
        assert_int_equal(db_step(s), DB_ROW);
        eng_us[i] = (int64_t)(bfs_mono_s() * 1e6) - t0;
    }
    char conninfo[512];
    snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%d user=%s dbname=%s password=%s", g_port, g_user,
             g_db, g_pass);
    PGconn *raw = PQconnectdb(conninfo);
    assert_int_equal(PQstatus(raw), CONNECTION_OK);
    for (int i = 0; i < N; i++) {
        char k[16];
        snprintf(k, sizeof k, "%d", 1 + i % 1000);
        const char *v[] = {k};
        int64_t t0 = (int64_t)(bfs_mono_s() * 1e6);
        PGresult *r = PQexecParams(raw, "SELECT v FROM " NS ".kv WHERE k = $1", 1, NULL, v, NULL, NULL, 0);
        raw_us[i] = (int64_t)(bfs_mono_s() * 1e6) - t0;
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        PQclear(r);
    }
    /* where the engine's time goes: the same pipeline by hand, with and
     * without the SET LOCALs */
    static int64_t pipe_us[2][N];
    for (int with_sets = 0; with_sets < 2; with_sets++) {
        for (int i = 0; i < N; i++) {
            const char *v[] = {"7"};
            int64_t t0 = (int64_t)(bfs_mono_s() * 1e6);
            assert_int_equal(PQenterPipelineMode(raw), 1);
            PQsendQueryParams(raw, "BEGIN READ ONLY", 0, NULL, NULL, NULL, NULL, 0);
            if (with_sets) {
                PQsendQueryParams(raw, "SET LOCAL search_path TO \"" NS "\"", 0, NULL, NULL, NULL, NULL, 0);
                PQsendQueryParams(raw, "SET LOCAL statement_timeout = 30000", 0, NULL, NULL, NULL, NULL, 0);
                PQsendQueryParams(raw, "SET LOCAL TIME ZONE 'UTC'", 0, NULL, NULL, NULL, NULL, 0);
            }
            PQsendQueryParams(raw, "SELECT v FROM " NS ".kv WHERE k = $1", 1, NULL, v, NULL, NULL, 0);
            PQsendQueryParams(raw, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
            PQpipelineSync(raw);
            PGresult *r;
            for (;;) {
                r = PQgetResult(raw);
                if (r && PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
                    PQclear(r);
                    break;
                }
                PQclear(r);
            }
            PQexitPipelineMode(raw);
            pipe_us[with_sets][i] = (int64_t)(bfs_mono_s() * 1e6) - t0;
        }
        qsort(pipe_us[with_sets], N, sizeof pipe_us[0][0], cmp64);
    }
    printf("  LATENCY %s: by hand, one pipeline BEGIN+query+COMMIT median %lld us, with the 3 SET LOCALs %lld us\n",
           g_mode, (long long)pipe_us[0][N / 2], (long long)pipe_us[1][N / 2]);
    PQfinish(raw);
    qsort(eng_us, N, sizeof eng_us[0], cmp64);
    qsort(raw_us, N, sizeof raw_us[0], cmp64);
    printf("  LATENCY %s: engine lookup median %lld us (p90 %lld), bare PQexecParams median %lld us (p90 %lld)\n",
           g_mode, (long long)eng_us[N / 2], (long long)eng_us[N * 9 / 10], (long long)raw_us[N / 2],
           (long long)raw_us[N * 9 / 10]);
    db_engine_close(e);
}

int main(void)
{
    g_mode = getenv("BFS_PG_MODE");
    const char *port = getenv("BFS_PG_TEST_PORT");
    g_user = getenv("PG_USER");
    g_pass = getenv("PG_PASSWORD");
    g_db = getenv("PG_DATABASE");
    g_sock = getenv("PG_SOCKET_DIR");
    g_pgport = getenv("PG_PORT");
    g_super = getenv("PG_SUPERUSER");
    g_pgsh = getenv("BFS_PG_SH");
    if (!g_mode || !port || !g_user || !g_pass || !g_db || !g_sock || !g_pgport || !g_super || !g_pgsh) {
        printf("SKIP: run by tests/integration/test_db_pg.sh (no BFS_PG_MODE, PG_* servers)\n");
        return 77;
    }
    g_port = atoi(port);
    g_direct = !strcmp(g_mode, "direct");
    if (getenv("BFS_PG_DEBUG"))
        bfs_log_set_level(LOG_DEBUG);
    char conninfo[512];
    snprintf(conninfo, sizeof conninfo, "host=%s port=%s user=%s dbname=%s", g_sock, g_pgport, g_super, g_db);
    g_obs = PQconnectdb(conninfo);
    if (PQstatus(g_obs) != CONNECTION_OK) {
        fprintf(stderr, "observer: %s", PQerrorMessage(g_obs));
        return 1;
    }
    printf("mode %s, port %d\n", g_mode, g_port);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_open_errors, setup),
        cmocka_unit_test_setup(test_translate, setup),
        cmocka_unit_test_setup(test_types, setup),
        cmocka_unit_test_setup(test_writes, setup),
        cmocka_unit_test_setup(test_transactions, setup),
        cmocka_unit_test_setup(test_pool_bound, setup),
        cmocka_unit_test_setup(test_host_names, setup),
        cmocka_unit_test_setup(test_lookup_burst, setup),
        cmocka_unit_test_setup(test_idle_close, setup),
        cmocka_unit_test_setup(test_statement_timeout, setup),
        cmocka_unit_test_setup(test_timespans, setup),
        cmocka_unit_test_setup(test_write_helpers, setup),
        cmocka_unit_test_setup(test_thread_exit, setup),
        cmocka_unit_test_setup(test_glob, setup),
        cmocka_unit_test_setup(test_latency, setup),
        cmocka_unit_test_setup(test_terminated, setup),
        cmocka_unit_test_setup(test_frozen_server, setup),
        cmocka_unit_test_setup(test_restart, setup),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    PQfinish(g_obs);
    return failed ? 1 : 0;
}
