/*
 * db.h - the registry's database engine seam (internal to registry/).
 *
 * Every file of registry/ talks to its database through this header; only
 * db_sqlite.c includes <sqlite3.h> and only db_pg.c includes <libpq-fe.h>.
 * Nothing outside registry/ includes it (check_layering.py).
 *
 * Model (SQLite's, so the code above reads as it did):
 *
 *   db_engine   one per open registry: where the database is, and for
 *               PostgreSQL the bounded connection pool.  Thread-safe.
 *   db_conn     the calling thread's handle (db_engine_conn), created on
 *               first use and owned by the engine.  Not shared between
 *               threads.  Holds the thread's statement cache and, inside a
 *               transaction, the one server connection that transaction
 *               runs on.
 *   db_stmt     a statement prepared on a db_conn (db_prepare), cached by
 *               SQL text and owned by the db_conn: never freed by the caller.
 *               db_prepare hands it back reset with its bindings cleared.
 *
 * SQL is written once, in the dialect both engines accept, with numbered
 * parameters ?1, ?2, ... (db_pg.c rewrites them to $1, $2 outside quotes)
 * and these rules: ON CONFLICT DO NOTHING (never INSERT OR IGNORE),
 * RETURNING instead of last_insert_rowid(), no GLOB/typeof/hex/pragma/
 * sqlite_master (use the helpers below).  Where the engines' schemas differ
 * (dataset ids, timespans) the SQL is built with the dialect helpers below.
 * Table names are unqualified: PostgreSQL runs every transaction with
 * SET LOCAL search_path to the repository's namespace.
 *
 * Transactions: a statement stepped outside db_begin/db_commit runs in a
 * transaction of its own (PostgreSQL: BEGIN READ ONLY when the engine is not
 * writable, SET LOCAL search_path, statement_timeout and TIME ZONE 0, the
 * statement, COMMIT; all rows are fetched before db_step returns the first).
 * db_begin starts an explicit transaction on this thread's db_conn (SQLite:
 * BEGIN IMMEDIATE for DB_TX_WRITE, BEGIN for DB_TX_READ; PostgreSQL: a
 * pooled connection is held until commit/rollback).  db_savepoint /
 * db_release / db_rollback_to nest inside one.  Nothing keeps session state
 * between transactions (PgBouncer in transaction pooling mode).
 *
 * Errors: negative errno, translated from the engine's codes in one place
 * per engine (db_sqlite.c, db_pg.c), which also logs the detail once with
 * the statement named: -EEXIST for a unique/primary key/exclusion violation
 * (logged at debug level: "insert if new" expects it), -ENOENT for a foreign
 * key violation (a referenced row is missing; also at debug level: the
 * write API answers it as such), -EINVAL for a NOT NULL or CHECK violation,
 * -EBUSY for a lock
 * timeout, -EROFS for a write to a read-only database, -EACCES for
 * authentication, -ETIMEDOUT for a deadline passed (statement timeout,
 * connect timeout, no pooled connection free in time), -ECONNRESET for a
 * lost server connection (the caller may retry the transaction once),
 * -ENOSPC, -ENOMEM, -EBADMSG for a corrupt database, else -EIO.  Text from
 * the server is logged through the logger's escaping, and no message ever
 * holds a password.
 */
#ifndef BFS_REGISTRY_DB_H
#define BFS_REGISTRY_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct db_engine db_engine;
typedef struct db_conn db_conn;
typedef struct db_stmt db_stmt;
struct bfs_dburl;

enum db_kind { DB_SQLITE, DB_POSTGRESQL };

/* Column types as db_column_type reports them. */
enum db_type { DB_NULL, DB_INTEGER, DB_FLOAT, DB_TEXT, DB_BLOB };

/* db_step's answers besides -errno. */
enum { DB_DONE = 0, DB_ROW = 1 };

enum db_tx { DB_TX_READ, DB_TX_WRITE };

struct db_options {
    enum db_kind kind;
    const char *sqlite_path;        /* DB_SQLITE: the file */
    const struct bfs_dburl *url;    /* DB_POSTGRESQL: resolved URL (copied) */
    const char *namespace;          /* DB_POSTGRESQL: the schema; NULL = "public" */
    bool writable;
    int max_connections;            /* DB_POSTGRESQL: pool bound; 0 = 4 */
    int idle_close_ms;              /* close a pooled connection idle this long; 0 = 60000 */
    int connect_timeout_ms;         /* 0 = 10000 */
    int statement_timeout_ms;       /* each statement and each wait for a pooled
                                       connection; 0 = 30000 */
};

/* Open the engine and check, before returning, that a connection can be
 * made (SQLite: the file opens and is a database; PostgreSQL: connect, the
 * namespace exists).  0, or -errno with *errmsg a malloc'd sentence naming
 * what failed (never a password). */
int db_engine_open(const struct db_options *o, db_engine **out, char **errmsg);

/* Close every connection and free the engine; no db_conn of it may be in
 * use.  NULL is harmless. */
void db_engine_close(db_engine *e);

enum db_kind db_engine_kind(const db_engine *e);

/* The calling thread's handle (created on first use; NULL only when out of
 * memory).  Owned by the engine; valid until db_engine_close. */
db_conn *db_engine_conn(db_engine *e);

enum db_kind db_kind_of(const db_conn *c);

/* Prepare sql (or take it from the thread's cache) reset and unbound.
 * NULL on error (logged with the SQL). */
db_stmt *db_prepare(db_conn *c, const char *sql);

/* Run sql, which returns no rows and takes no parameters (DDL, BEGIN...).
 * PostgreSQL: may hold several statements separated by ';'. */
int db_exec(db_conn *c, const char *sql);

/* Bindings, 1-based.  Text and blobs are copied.  0 or -errno. */
int db_bind_int64(db_stmt *s, int i, int64_t v);
int db_bind_double(db_stmt *s, int i, double v);
int db_bind_text(db_stmt *s, int i, const char *v, int len);   /* len -1: strlen */
int db_bind_blob(db_stmt *s, int i, const void *v, int len);
int db_bind_null(db_stmt *s, int i);
/* A dataset id (16 bytes): SQLite binds the form daf_butler stores there
 * (the 16-byte blob), PostgreSQL the uuid's text. */
int db_bind_id(db_stmt *s, int i, const uint8_t id[16]);

/* DB_ROW, DB_DONE or -errno (then the statement is reset). */
int db_step(db_stmt *s);

/* Rewind for another run, keeping the bindings. */
void db_reset(db_stmt *s);

/* Columns of the current row, 0-based.  Text and blobs stay valid until the
 * next db_step/db_reset on s.  A boolean column reads as DB_INTEGER 0/1.  A
 * uuid column reads as DB_TEXT (its 32 hex digits, no dashes). */
int db_column_count(db_stmt *s);
const char *db_column_name(db_stmt *s, int i);
enum db_type db_column_type(db_stmt *s, int i);
int64_t db_column_int64(db_stmt *s, int i);
double db_column_double(db_stmt *s, int i);
const char *db_column_text(db_stmt *s, int i);        /* NULL for NULL */
const void *db_column_blob(db_stmt *s, int i);
int db_column_bytes(db_stmt *s, int i);
/* A dataset id column in either stored form (blob, 32 hex digits, dashed
 * uuid) into 16 bytes: 0, or -EINVAL. */
int db_column_id(db_stmt *s, int i, uint8_t out[16]);

/* Rows changed by the last INSERT/UPDATE/DELETE stepped on c. */
int64_t db_changes(db_conn *c);

/* Transactions (see the top of this file). */
int db_begin(db_conn *c, enum db_tx mode);
int db_commit(db_conn *c);
void db_rollback(db_conn *c);                 /* harmless outside one */
bool db_in_transaction(const db_conn *c);
int db_savepoint(db_conn *c, const char *name);
int db_release(db_conn *c, const char *name);
void db_rollback_to(db_conn *c, const char *name);

/* Catalog questions, answered from sqlite_master / pragma_table_info or
 * information_schema in the namespace: 1 yes, 0 no, -errno. */
int db_table_exists(db_conn *c, const char *table);
int db_column_exists(db_conn *c, const char *table, const char *column);
/* Whether a value written to the column must be a timestamp: PostgreSQL's
 * TIMESTAMP (daf_butler's ingest_date before TAI ns); SQLite stores any
 * value in any column (0).  1 yes, 0 no, -errno. */
int db_column_takes_timestamp(db_conn *c, const char *table, const char *column);

/* Dialect fragments, written into malloc'd strings (NULL: out of memory).
 *
 * db_sql_span_columns: the column list naming a timespan in a table's DDL
 * or an INSERT's column list ("timespan_begin, timespan_end" / "timespan").
 * db_sql_span_values(c, "?4", "?5"): the matching values for an INSERT
 * ("?4, ?5" / "int8range(?4, ?5)" with 0 and 2100-01-01 TAI as unbounded).
 * db_sql_span_select(c, "t"): two result columns, begin and end in TAI ns,
 * unbounded ends read as daf_butler's min_nsec (0) and max_nsec.
 * db_sql_span_overlaps(c, "t", "?4", "?5"): a condition, true when the
 * row's timespan overlaps [?4, ?5).
 * db_sql_glob(c, "c.name", "?1"): a condition, shell-glob match.
 * db_sql_id_hex(c, "d.id"): a result column of the id as 32 hex digits.
 * db_sql_span_same(c, "", "?3", "?4"): a condition, true when the row's
 * timespan is [?3, ?4), NULL-safe (a NULL pair matches no timespan).
 * db_sql_span_ddl(c): the timespan column(s) of a calibration table's
 * CREATE TABLE, NOT NULL and unbounded by default (no leading tab, no
 * trailing comma; SQLite's two are separated by ", \n\t").
 * db_sql_time_ns(c, "d.ingest_date"): a result column of a column holding
 * TAI ns (BIGINT) or a TIMESTAMP as an integer (a TIMESTAMP: its whole UTC
 * seconds times 1e9, as older repositories were read). */
char *db_sql_span_columns(const db_conn *c, const char *prefix);
char *db_sql_span_values(const db_conn *c, const char *p_begin, const char *p_end);
char *db_sql_span_select(const db_conn *c, const char *alias);
char *db_sql_span_overlaps(const db_conn *c, const char *alias, const char *p_begin,
                           const char *p_end);
char *db_sql_glob(const db_conn *c, const char *expr, const char *pattern_param);
char *db_sql_id_hex(const db_conn *c, const char *expr);
char *db_sql_span_same(const db_conn *c, const char *alias, const char *p_begin, const char *p_end);
char *db_sql_span_ddl(const db_conn *c);
char *db_sql_time_ns(const db_conn *c, const char *expr);

/* Static dialect words (never NULL):
 * DB_WORD_IS: NULL-safe equality between an expression and a parameter
 *   ("IS" / "IS NOT DISTINCT FROM");
 * DB_WORD_ID_TYPE: a dataset id column's type in DDL ("CHAR(32)" / "UUID");
 * DB_WORD_SERIAL: an autoincrement key's type in DDL ("INTEGER", which with
 *   PRIMARY KEY is SQLite's rowid / "BIGSERIAL"). */
enum db_word { DB_WORD_IS, DB_WORD_ID_TYPE, DB_WORD_SERIAL };
const char *db_sql_word(const db_conn *c, enum db_word w);

/* A timespan column of the current row (PostgreSQL's int8range; SQLite has
 * none, its pair are two integer columns): 1 with *begin and *end in TAI ns
 * (unbounded ends as 0 and BFS_TIMESPAN_UNBOUNDED_END, the empty range as
 * (max, 0), as db_sql_span_select), 0 when NULL, -EINVAL when column i is
 * not a timespan. */
int db_column_span(db_stmt *s, int i, int64_t *begin, int64_t *end);

/* Inside a write transaction: hold off every other writer of table until
 * it ends (schema changes that must not race: a dataset type and its
 * tables).  SQLite: nothing to do, its one writer holds the database;
 * PostgreSQL: LOCK TABLE ... IN SHARE ROW EXCLUSIVE MODE (readers go on). */
int db_lock_table(db_conn *c, const char *table);

/* Tell whether name would need quoting as an identifier (a keyword of the
 * engine, or not [a-z_][a-z0-9_]*). */
bool db_ident_needs_quotes(const db_conn *c, const char *name);

/* The engine's description for logs and `butlerfs status`: the SQLite path
 * or the redacted PostgreSQL URL with the namespace, and the pool's numbers
 * (open, in use, max).  Owned by the engine. */
const char *db_engine_describe(const db_engine *e);
void db_engine_pool_stats(db_engine *e, int *open, int *in_use, int *max);

#endif
