/*
 * db_i.h - what the engines (db_sqlite.c, db_pg.c) share with db.c.
 *
 * db.c owns the parts both engines need the same way: the per-thread
 * db_conn (a pthread key, and a list of every db_conn for close), the
 * per-db_conn statement cache by SQL text (LRU, DB_STMT_CACHE entries),
 * savepoints, db_column_id, and dispatch of every db.h call through the
 * engine's db_ops.  An engine embeds db_engine, db_conn and db_stmt as the
 * FIRST member of its own structs and fills a const struct db_ops.
 */
#ifndef BFS_REGISTRY_DB_I_H
#define BFS_REGISTRY_DB_I_H

#include "db.h"

#include <pthread.h>

#define DB_STMT_CACHE 128

struct db_cached {
    char *sql;
    db_stmt *stmt;
    uint64_t last_used;
};

struct db_engine {
    const struct db_ops *ops;
    enum db_kind kind;
    bool writable;
    pthread_key_t key;
    pthread_mutex_t lock;      /* leaf lock: the conns list */
    db_conn *conns;
    /* db.c's, under its process-wide lock (taken before lock): the open
     * engines, and the thread exit destructors freeing a db_conn of this
     * one right now (db_engine_close waits for them) */
    db_engine *next_open;
    int dying;
};

struct db_conn {
    db_engine *engine;
    struct db_cached cache[DB_STMT_CACHE];
    uint64_t clock;
    db_conn *next;
};

struct db_stmt {
    db_conn *conn;
};

/* Every function has the meaning of its db.h namesake.  open allocates the
 * engine's struct; db.c then fills the common fields after ops/kind. */
struct db_ops {
    int (*open)(const struct db_options *o, db_engine **out, char **errmsg);
    void (*close)(db_engine *e);               /* after db.c freed every conn */
    db_conn *(*conn_new)(db_engine *e);        /* zeroed common part */
    void (*conn_free)(db_conn *c);             /* after its statements */
    db_stmt *(*prepare)(db_conn *c, const char *sql);
    void (*finalize)(db_stmt *s);
    void (*clear)(db_stmt *s);                 /* reset and unbind */
    int (*exec)(db_conn *c, const char *sql);

    int (*bind_int64)(db_stmt *s, int i, int64_t v);
    int (*bind_double)(db_stmt *s, int i, double v);
    int (*bind_text)(db_stmt *s, int i, const char *v, int len);
    int (*bind_blob)(db_stmt *s, int i, const void *v, int len);
    int (*bind_null)(db_stmt *s, int i);
    int (*bind_id)(db_stmt *s, int i, const uint8_t id[16]);
    int (*step)(db_stmt *s);
    void (*reset)(db_stmt *s);

    int (*column_count)(db_stmt *s);
    const char *(*column_name)(db_stmt *s, int i);
    enum db_type (*column_type)(db_stmt *s, int i);
    int64_t (*column_int64)(db_stmt *s, int i);
    double (*column_double)(db_stmt *s, int i);
    const char *(*column_text)(db_stmt *s, int i);
    const void *(*column_blob)(db_stmt *s, int i);
    int (*column_bytes)(db_stmt *s, int i);

    int64_t (*changes)(db_conn *c);
    int (*begin)(db_conn *c, enum db_tx mode);
    int (*commit)(db_conn *c);
    void (*rollback)(db_conn *c);
    bool (*in_transaction)(const db_conn *c);

    int (*table_exists)(db_conn *c, const char *table);
    int (*column_exists)(db_conn *c, const char *table, const char *column);
    int (*column_takes_timestamp)(db_conn *c, const char *table, const char *column);

    char *(*span_columns)(const db_conn *c, const char *prefix);
    char *(*span_values)(const db_conn *c, const char *b, const char *e);
    char *(*span_select)(const db_conn *c, const char *alias);
    char *(*span_overlaps)(const db_conn *c, const char *alias, const char *b, const char *e);
    char *(*glob)(const db_conn *c, const char *expr, const char *param);
    char *(*id_hex)(const db_conn *c, const char *expr);
    char *(*span_same)(const db_conn *c, const char *alias, const char *b, const char *e);
    char *(*span_ddl)(const db_conn *c);
    char *(*time_ns)(const db_conn *c, const char *expr);
    const char *(*word)(const db_conn *c, enum db_word w);
    int (*column_span)(db_stmt *s, int i, int64_t *begin, int64_t *end);
    int (*lock_table)(db_conn *c, const char *table);
    bool (*ident_needs_quotes)(const db_conn *c, const char *name);

    const char *(*describe)(const db_engine *e);
    void (*pool_stats)(db_engine *e, int *open, int *in_use, int *max);
};

extern const struct db_ops db_sqlite_ops;
extern const struct db_ops db_pg_ops;   /* absent when built without libpq */

/* daf_butler's TimeConverter bounds are min_nsec 0 and max_nsec
 * BFS_TIMESPAN_UNBOUNDED_END (registry.h). */

#endif
