/*
 * db_sqlite.c - the SQLite engine behind db.h: the only file of butlerfs
 * that includes <sqlite3.h>.
 *
 * One sqlite3 connection per thread (db.c's db_conn), opened
 * SQLITE_OPEN_NOMUTEX because a connection never leaves its thread, with a
 * busy timeout so a writer in another process (the Python Butler, an
 * ingest) makes a listing wait instead of fail.  A writable connection
 * enforces foreign keys, as daf_butler's does, so the database itself
 * rejects a dataset whose records are missing.  Statements are prepared
 * SQLITE_PREPARE_PERSISTENT: db.c keeps them for the connection's life.
 *
 * sq_errno is the one place SQLite result codes become errno; it logs the
 * detail once, naming the statement.  The dialect helpers return the SQL
 * the registry used before the engine seam existed: the two timespan
 * columns, GLOB, ids stored as a 16-byte BLOB or as text.
 */
#include "db_i.h"

#include "log.h"
#include "registry.h"
#include "strutil.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#define TAG "registry"

struct sq_engine {
    db_engine base;
    char *path;
};

struct sq_conn {
    db_conn base;
    sqlite3 *db;
};

struct sq_stmt {
    db_stmt base;
    sqlite3_stmt *st;
};

static sqlite3 *sq_db(const db_conn *c) { return ((const struct sq_conn *)c)->db; }
static sqlite3_stmt *sq_st(db_stmt *s) { return ((struct sq_stmt *)s)->st; }

/* SQLite's primary result code as errno (0 for the codes of success). */
static int code_errno(int rc)
{
    switch (rc) {
    case SQLITE_CONSTRAINT_FOREIGNKEY:
        return -ENOENT;  /* a referenced row is missing: not a duplicate */
    case SQLITE_CONSTRAINT_NOTNULL:
    case SQLITE_CONSTRAINT_CHECK:
        return -EINVAL;  /* the caller's data is wrong (as db_pg.c) */
    default:
        break;
    }
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return 0;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_READONLY:
        return -EROFS;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_CANTOPEN:
        return -ENOENT;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_CONSTRAINT:
        return -EEXIST;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return -EBADMSG;
    case SQLITE_INTERRUPT:
        return -EINTR;
    default:
        return -EIO;
    }
}

/* rc as -errno, logging the detail once with the statement or action named
 * in what.  A constraint violation is an expected answer ("insert if new",
 * a missing referenced record), so it goes to the debug level. */
static int sq_errno(sqlite3 *db, int rc, const char *what)
{
    int e = code_errno(rc);
    if (!e)
        return 0;
    const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        bfs_debug(TAG, "%s: %s", what, msg);
    else
        bfs_err(TAG, "%s: %s", what, msg);
    return e;
}

/* Open a connection to path; -errno and a sentence in *errmsg on failure. */
static int open_db(const char *path, bool writable, sqlite3 **out, char **errmsg)
{
    sqlite3 *db = NULL;
    int flags = (writable ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY) | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path, &db, flags, NULL);
    if (rc != SQLITE_OK) {
        bfs_set_errmsg(errmsg, "cannot open registry database %s: %s", path,
                db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return rc == SQLITE_CANTOPEN ? -ENOENT : -EIO;
    }
    /* Writers in other processes (the Python Butler, ingest) hold the lock
     * briefly; wait rather than fail a listing. */
    sqlite3_busy_timeout(db, 10000);
    sqlite3_extended_result_codes(db, 1);
    if (writable) {
        sqlite3_exec(db, "PRAGMA foreign_keys=ON", NULL, NULL, NULL);
        /* savepoint journals in memory: a file per savepoint cost ~46
         * writes per dataset in bulk inserts */
        sqlite3_exec(db, "PRAGMA temp_store=MEMORY", NULL, NULL, NULL);
    }
    *out = db;
    return 0;
}

/* Read the schema once, so an unreadable file is named at open and not at
 * the first query.  A read-only connection cannot roll back a hot journal,
 * which SQLite reports as SQLITE_READONLY on the first read. */
static int probe(sqlite3 *db, const char *path, char **errmsg)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master", -1, &st, NULL);
    sqlite3_finalize(st);
    if (rc == SQLITE_OK)
        return 0;
    if ((rc & 0xff) == SQLITE_READONLY || (sqlite3_extended_errcode(db) & 0xff) == SQLITE_READONLY) {
        bfs_set_errmsg(errmsg, "%s has a transaction that a writer left unfinished when it stopped (a "
                               "hot journal); a read-only open cannot undo it: open the repository once "
                               "for writing (butlerfs mount -o rw, or the Python Butler), or give this "
                               "user write access to its directory", path);
        return -EROFS;
    }
    bfs_set_errmsg(errmsg, "cannot read registry database %s: %s", path, sqlite3_errmsg(db));
    return code_errno(rc) ? code_errno(rc) : -EIO;
}

static int sq_open(const struct db_options *o, db_engine **out, char **errmsg)
{
    struct sq_engine *e = calloc(1, sizeof *e);
    if (!e || !(e->path = strdup(o->sqlite_path))) {
        free(e);
        bfs_set_errmsg(errmsg, "out of memory opening the registry");
        return -ENOMEM;
    }
    sqlite3 *db = NULL;
    int ret = open_db(e->path, o->writable, &db, errmsg);
    if (ret == 0)
        ret = probe(db, e->path, errmsg);
    sqlite3_close(db);
    if (ret < 0) {
        free(e->path);
        free(e);
        return ret;
    }
    *out = &e->base;
    return 0;
}

static void sq_close(db_engine *base)
{
    struct sq_engine *e = (struct sq_engine *)base;
    free(e->path);
    free(e);
}

static db_conn *sq_conn_new(db_engine *base)
{
    struct sq_engine *e = (struct sq_engine *)base;
    struct sq_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    char *msg = NULL;
    if (open_db(e->path, base->writable, &c->db, &msg) < 0) {
        bfs_err(TAG, "%s", msg ? msg : "cannot open registry");
        free(msg);
        free(c);
        return NULL;
    }
    return &c->base;
}

static void sq_conn_free(db_conn *c)
{
    sqlite3_close(sq_db(c));
    free(c);
}

static db_stmt *sq_prepare(db_conn *c, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v3(sq_db(c), sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
    if (rc != SQLITE_OK) {
        sq_errno(sq_db(c), rc, sql);
        return NULL;
    }
    struct sq_stmt *s = calloc(1, sizeof *s);
    if (!s) {
        sqlite3_finalize(st);
        return NULL;
    }
    s->st = st;
    return &s->base;
}

static void sq_finalize(db_stmt *s)
{
    sqlite3_finalize(sq_st(s));
    free(s);
}

static void sq_clear(db_stmt *s)
{
    sqlite3_reset(sq_st(s));
    sqlite3_clear_bindings(sq_st(s));
}

static int sq_exec(db_conn *c, const char *sql)
{
    int rc = sqlite3_exec(sq_db(c), sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : sq_errno(sq_db(c), rc, sql);
}

/* A binding's result: only a misuse (index out of range, no memory) fails. */
static int bound(db_stmt *s, int rc)
{
    return rc == SQLITE_OK ? 0 : sq_errno(sq_db(s->conn), rc, sqlite3_sql(sq_st(s)));
}

static int sq_bind_int64(db_stmt *s, int i, int64_t v) { return bound(s, sqlite3_bind_int64(sq_st(s), i, v)); }
static int sq_bind_double(db_stmt *s, int i, double v) { return bound(s, sqlite3_bind_double(sq_st(s), i, v)); }
static int sq_bind_null(db_stmt *s, int i) { return bound(s, sqlite3_bind_null(sq_st(s), i)); }

static int sq_bind_text(db_stmt *s, int i, const char *v, int len)
{
    return bound(s, sqlite3_bind_text(sq_st(s), i, v, len, SQLITE_TRANSIENT));
}

static int sq_bind_blob(db_stmt *s, int i, const void *v, int len)
{
    return bound(s, sqlite3_bind_blob(sq_st(s), i, v, len, SQLITE_TRANSIENT));
}

/* daf_butler's UUID managers store the id as a 16-byte BLOB in SQLite. */
static int sq_bind_id(db_stmt *s, int i, const uint8_t id[16]) { return sq_bind_blob(s, i, id, 16); }

static int sq_step(db_stmt *s)
{
    int rc = sqlite3_step(sq_st(s));
    if (rc == SQLITE_ROW)
        return DB_ROW;
    if (rc == SQLITE_DONE)
        return DB_DONE;
    int e = sq_errno(sq_db(s->conn), rc, sqlite3_sql(sq_st(s)));
    sqlite3_reset(sq_st(s));
    return e ? e : -EIO;
}

static void sq_reset(db_stmt *s) { sqlite3_reset(sq_st(s)); }

static int sq_column_count(db_stmt *s) { return sqlite3_column_count(sq_st(s)); }
static const char *sq_column_name(db_stmt *s, int i) { return sqlite3_column_name(sq_st(s), i); }
static int64_t sq_column_int64(db_stmt *s, int i) { return sqlite3_column_int64(sq_st(s), i); }
static double sq_column_double(db_stmt *s, int i) { return sqlite3_column_double(sq_st(s), i); }
static const void *sq_column_blob(db_stmt *s, int i) { return sqlite3_column_blob(sq_st(s), i); }
static int sq_column_bytes(db_stmt *s, int i) { return sqlite3_column_bytes(sq_st(s), i); }

static const char *sq_column_text(db_stmt *s, int i)
{
    return (const char *)sqlite3_column_text(sq_st(s), i);
}

static enum db_type sq_column_type(db_stmt *s, int i)
{
    switch (sqlite3_column_type(sq_st(s), i)) {
    case SQLITE_INTEGER: return DB_INTEGER;
    case SQLITE_FLOAT: return DB_FLOAT;
    case SQLITE_TEXT: return DB_TEXT;
    case SQLITE_BLOB: return DB_BLOB;
    default: return DB_NULL;
    }
}

static int64_t sq_changes(db_conn *c) { return sqlite3_changes(sq_db(c)); }

/* BEGIN IMMEDIATE takes the write lock up front, so two writers queue on
 * the busy timeout instead of deadlocking on a lock upgrade. */
static int sq_begin(db_conn *c, enum db_tx mode)
{
    return sq_exec(c, mode == DB_TX_WRITE ? "BEGIN IMMEDIATE" : "BEGIN");
}

static int sq_commit(db_conn *c) { return sq_exec(c, "COMMIT"); }
static void sq_rollback(db_conn *c) { sqlite3_exec(sq_db(c), "ROLLBACK", NULL, NULL, NULL); }
static bool sq_in_transaction(const db_conn *c) { return !sqlite3_get_autocommit(sq_db(c)); }

/* 1 when the statement, bound with up to two texts, yields a row. */
static int any_row(db_conn *c, const char *sql, const char *a, const char *b)
{
    db_stmt *s = db_prepare(c, sql);
    if (!s)
        return -EIO;
    int ret = db_bind_text(s, 1, a, -1);
    if (!ret && b)
        ret = db_bind_text(s, 2, b, -1);
    if (!ret)
        ret = db_step(s);
    db_reset(s);
    return ret;
}

static int sq_table_exists(db_conn *c, const char *table)
{
    return any_row(c, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", table, NULL);
}

static int sq_column_exists(db_conn *c, const char *table, const char *column)
{
    return any_row(c, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", table, column);
}

static int sq_column_takes_timestamp(db_conn *c, const char *table, const char *column)
{
    (void)c, (void)table, (void)column;
    return 0; /* any value goes in any column: ingest writes TAI ns, as always */
}

static const char *or_empty(const char *s) { return s ? s : ""; }

static char *sq_span_columns(const db_conn *c, const char *prefix)
{
    (void)c;
    return bfs_asprintf("%stimespan_begin, %stimespan_end", or_empty(prefix), or_empty(prefix));
}

static char *sq_span_values(const db_conn *c, const char *b, const char *e)
{
    (void)c;
    return bfs_asprintf("%s, %s", b, e);
}

static char *sq_span_select(const db_conn *c, const char *alias)
{
    (void)c;
    const char *dot = alias && *alias ? "." : "";
    return bfs_asprintf("%s%stimespan_begin, %s%stimespan_end", or_empty(alias), dot, or_empty(alias), dot);
}

/* Half-open ranges, as the Butler's Timespan. */
static char *sq_span_overlaps(const db_conn *c, const char *alias, const char *b, const char *e)
{
    (void)c;
    const char *dot = alias && *alias ? "." : "";
    return bfs_asprintf("%s%stimespan_begin < %s AND %s < %s%stimespan_end", or_empty(alias), dot, e, b,
                        or_empty(alias), dot);
}

static char *sq_glob(const db_conn *c, const char *expr, const char *param)
{
    (void)c;
    return bfs_asprintf("%s GLOB %s", expr, param);
}

/* Ids are BLOBs (UUID managers) or 32-character text, dashed in some
 * older repositories. */
static char *sq_id_hex(const db_conn *c, const char *expr)
{
    (void)c;
    return bfs_asprintf("CASE WHEN typeof(%s) = 'blob' THEN lower(hex(%s)) ELSE lower(replace(%s, '-', '')) END",
                        expr, expr, expr);
}

static char *sq_span_same(const db_conn *c, const char *alias, const char *b, const char *e)
{
    (void)c;
    const char *dot = alias && *alias ? "." : "";
    return bfs_asprintf("%s%stimespan_begin IS %s AND %s%stimespan_end IS %s", or_empty(alias), dot, b,
                        or_empty(alias), dot, e);
}

/* daf_butler's SQLite calibration tables: unbounded is 0 and max_nsec */
static char *sq_span_ddl(const db_conn *c)
{
    (void)c;
    return bfs_asprintf("timespan_begin BIGINT DEFAULT %lld NOT NULL, \n"
                        "\ttimespan_end BIGINT DEFAULT %lld NOT NULL",
                        (long long)BFS_TIMESPAN_UNBOUNDED_BEGIN, (long long)BFS_TIMESPAN_UNBOUNDED_END);
}

/* The column's storage class tells: an integer is TAI ns, else a
 * TIMESTAMP text (older repositories). */
static char *sq_time_ns(const db_conn *c, const char *expr)
{
    (void)c;
    return bfs_asprintf("CASE WHEN typeof(%s) = 'integer' THEN %s "
                        "ELSE coalesce(CAST(strftime('%%s', %s) AS INTEGER), 0) * 1000000000 END",
                        expr, expr, expr);
}

static const char *sq_word(const db_conn *c, enum db_word w)
{
    (void)c;
    switch (w) {
    case DB_WORD_IS:
        return "IS";
    case DB_WORD_ID_TYPE:
        return "CHAR(32)";
    case DB_WORD_SERIAL:
        return "INTEGER";
    }
    return "";
}

static int sq_column_span(db_stmt *s, int i, int64_t *begin, int64_t *end)
{
    (void)s, (void)i, (void)begin, (void)end;
    return -EINVAL; /* SQLite's timespans are two integer columns */
}

static int sq_lock_table(db_conn *c, const char *table)
{
    (void)c, (void)table;
    return 0; /* BEGIN IMMEDIATE: the one writer holds the whole database */
}

static bool sq_ident_needs_quotes(const db_conn *c, const char *name)
{
    (void)c;
    if (!*name || sqlite3_keyword_check(name, (int)strlen(name)) || (*name >= '0' && *name <= '9'))
        return true;
    for (const char *s = name; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return true;
    return false;
}

static const char *sq_describe(const db_engine *e) { return ((const struct sq_engine *)e)->path; }

/* No pool: every thread has its own connection, opened on first use. */
static void sq_pool_stats(db_engine *e, int *open, int *in_use, int *max)
{
    int n = 0;
    pthread_mutex_lock(&e->lock);
    for (db_conn *c = e->conns; c; c = c->next)
        n++;
    pthread_mutex_unlock(&e->lock);
    *open = n;
    *in_use = 0;
    *max = 0;
}

const struct db_ops db_sqlite_ops = {
    .open = sq_open,
    .close = sq_close,
    .conn_new = sq_conn_new,
    .conn_free = sq_conn_free,
    .prepare = sq_prepare,
    .finalize = sq_finalize,
    .clear = sq_clear,
    .exec = sq_exec,
    .bind_int64 = sq_bind_int64,
    .bind_double = sq_bind_double,
    .bind_text = sq_bind_text,
    .bind_blob = sq_bind_blob,
    .bind_null = sq_bind_null,
    .bind_id = sq_bind_id,
    .step = sq_step,
    .reset = sq_reset,
    .column_count = sq_column_count,
    .column_name = sq_column_name,
    .column_type = sq_column_type,
    .column_int64 = sq_column_int64,
    .column_double = sq_column_double,
    .column_text = sq_column_text,
    .column_blob = sq_column_blob,
    .column_bytes = sq_column_bytes,
    .changes = sq_changes,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .in_transaction = sq_in_transaction,
    .table_exists = sq_table_exists,
    .column_exists = sq_column_exists,
    .column_takes_timestamp = sq_column_takes_timestamp,
    .span_columns = sq_span_columns,
    .span_values = sq_span_values,
    .span_select = sq_span_select,
    .span_overlaps = sq_span_overlaps,
    .glob = sq_glob,
    .id_hex = sq_id_hex,
    .span_same = sq_span_same,
    .span_ddl = sq_span_ddl,
    .time_ns = sq_time_ns,
    .word = sq_word,
    .column_span = sq_column_span,
    .lock_table = sq_lock_table,
    .ident_needs_quotes = sq_ident_needs_quotes,
    .describe = sq_describe,
    .pool_stats = sq_pool_stats,
};
