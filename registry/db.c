/*
 * db.c - the engine seam's common part: per-thread handles, the statement
 * cache, savepoints, and dispatch to the engine (db.h, db_i.h).
 */
#include "db_i.h"

#include "log.h"
#include "strutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define TAG "registry"

/* A thread that exits (libfuse ends idle workers) takes its db_conn along:
 * rolled back and freed, with its statements and, on PostgreSQL, any link
 * it held.  The destructor may run while db_engine_close runs on another
 * thread, so which of them frees a db_conn is settled under open_lock: the
 * destructor frees it only when it finds it in a still open engine's list
 * (and counts itself in e->dying, which close waits for before freeing the
 * engine); otherwise close has taken it.  pthread_key_delete (first in
 * close) stops destructors that have not started. */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t open_cond = PTHREAD_COND_INITIALIZER;
static db_engine *open_engines;

static void conn_free(db_conn *c);

/* Unlink c from e's list: true when it was there. */
static bool conn_unlink(db_engine *e, db_conn *c)
{
    bool found = false;
    pthread_mutex_lock(&e->lock);
    for (db_conn **pp = &e->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            found = true;
            break;
        }
    pthread_mutex_unlock(&e->lock);
    return found;
}

static void key_destructor(void *p)
{
    db_conn *c = p;
    db_engine *owner = NULL;
    pthread_mutex_lock(&open_lock);
    for (db_engine *e = open_engines; e && !owner; e = e->next_open)
        if (conn_unlink(e, c))
            owner = e;
    if (owner)
        owner->dying++;
    pthread_mutex_unlock(&open_lock);
    if (!owner)
        return; /* db_engine_close has it */
    conn_free(c);
    pthread_mutex_lock(&open_lock);
    owner->dying--;
    pthread_cond_broadcast(&open_cond);
    pthread_mutex_unlock(&open_lock);
}

int db_engine_open(const struct db_options *o, db_engine **out, char **errmsg)
{
    const struct db_ops *ops = NULL;
    *out = NULL;
    switch (o->kind) {
    case DB_SQLITE:
        ops = &db_sqlite_ops;
        break;
    case DB_POSTGRESQL:
#ifdef BFS_HAVE_LIBPQ
        ops = &db_pg_ops;
#endif
        break;
    }
    if (!ops) {
        bfs_set_errmsg(errmsg, "this butlerfs was built without PostgreSQL support (libpq)");
        return -ENOTSUP;
    }
    db_engine *e = NULL;
    int ret = ops->open(o, &e, errmsg);
    if (ret < 0)
        return ret;
    e->ops = ops;
    e->kind = o->kind;
    e->writable = o->writable;
    e->conns = NULL;
    if (pthread_mutex_init(&e->lock, NULL) != 0 || pthread_key_create(&e->key, key_destructor) != 0) {
        ops->close(e);
        bfs_set_errmsg(errmsg, "out of thread resources opening the registry");
        return -ENOMEM;
    }
    e->dying = 0;
    pthread_mutex_lock(&open_lock);
    e->next_open = open_engines;
    open_engines = e;
    pthread_mutex_unlock(&open_lock);
    *out = e;
    return 0;
}

static void conn_free(db_conn *c)
{
    const struct db_ops *ops = c->engine->ops;
    if (ops->in_transaction(c))
        ops->rollback(c);
    for (int i = 0; i < DB_STMT_CACHE; i++) {
        if (c->cache[i].stmt)
            ops->finalize(c->cache[i].stmt);
        free(c->cache[i].sql);
    }
    ops->conn_free(c);
}

void db_engine_close(db_engine *e)
{
    if (!e)
        return;
    pthread_key_delete(e->key);
    pthread_mutex_lock(&open_lock);
    for (db_engine **pp = &open_engines; *pp; pp = &(*pp)->next_open)
        if (*pp == e) {
            *pp = e->next_open;
            break;
        }
    while (e->dying > 0)
        pthread_cond_wait(&open_cond, &open_lock);
    pthread_mutex_unlock(&open_lock);
    db_conn *c = e->conns; /* no destructor can reach them now */
    while (c) {
        db_conn *next = c->next;
        conn_free(c);
        c = next;
    }
    pthread_mutex_destroy(&e->lock);
    e->ops->close(e);
}

enum db_kind db_engine_kind(const db_engine *e) { return e->kind; }
enum db_kind db_kind_of(const db_conn *c) { return c->engine->kind; }

db_conn *db_engine_conn(db_engine *e)
{
    db_conn *c = pthread_getspecific(e->key);
    if (c)
        return c;
    c = e->ops->conn_new(e);
    if (!c)
        return NULL;
    c->engine = e;
    pthread_mutex_lock(&e->lock);
    c->next = e->conns;
    e->conns = c;
    pthread_mutex_unlock(&e->lock);
    pthread_setspecific(e->key, c);
    return c;
}

db_stmt *db_prepare(db_conn *c, const char *sql)
{
    const struct db_ops *ops = c->engine->ops;
    struct db_cached *victim = &c->cache[0];
    c->clock++;
    for (int i = 0; i < DB_STMT_CACHE; i++) {
        struct db_cached *s = &c->cache[i];
        if (s->sql && !strcmp(s->sql, sql)) {
            s->last_used = c->clock;
            ops->clear(s->stmt);
            return s->stmt;
        }
        if (s->last_used < victim->last_used)
            victim = s;
    }
    char *copy = strdup(sql);
    db_stmt *st = copy ? ops->prepare(c, sql) : NULL;
    if (!st) {
        free(copy);
        return NULL;
    }
    st->conn = c;
    if (victim->stmt)
        ops->finalize(victim->stmt);
    free(victim->sql);
    victim->sql = copy;
    victim->stmt = st;
    victim->last_used = c->clock;
    return st;
}

int db_exec(db_conn *c, const char *sql) { return c->engine->ops->exec(c, sql); }

int db_bind_int64(db_stmt *s, int i, int64_t v) { return s->conn->engine->ops->bind_int64(s, i, v); }
int db_bind_double(db_stmt *s, int i, double v) { return s->conn->engine->ops->bind_double(s, i, v); }
int db_bind_text(db_stmt *s, int i, const char *v, int len)
{
    return s->conn->engine->ops->bind_text(s, i, v, len);
}
int db_bind_blob(db_stmt *s, int i, const void *v, int len)
{
    return s->conn->engine->ops->bind_blob(s, i, v, len);
}
int db_bind_null(db_stmt *s, int i) { return s->conn->engine->ops->bind_null(s, i); }
int db_bind_id(db_stmt *s, int i, const uint8_t id[16]) { return s->conn->engine->ops->bind_id(s, i, id); }
int db_step(db_stmt *s) { return s->conn->engine->ops->step(s); }
void db_reset(db_stmt *s) { s->conn->engine->ops->reset(s); }

int db_column_count(db_stmt *s) { return s->conn->engine->ops->column_count(s); }
const char *db_column_name(db_stmt *s, int i) { return s->conn->engine->ops->column_name(s, i); }
enum db_type db_column_type(db_stmt *s, int i) { return s->conn->engine->ops->column_type(s, i); }
int64_t db_column_int64(db_stmt *s, int i) { return s->conn->engine->ops->column_int64(s, i); }
double db_column_double(db_stmt *s, int i) { return s->conn->engine->ops->column_double(s, i); }
const char *db_column_text(db_stmt *s, int i) { return s->conn->engine->ops->column_text(s, i); }
const void *db_column_blob(db_stmt *s, int i) { return s->conn->engine->ops->column_blob(s, i); }
int db_column_bytes(db_stmt *s, int i) { return s->conn->engine->ops->column_bytes(s, i); }

int db_column_id(db_stmt *s, int i, uint8_t out[16])
{
    enum db_type t = db_column_type(s, i);
    int n = db_column_bytes(s, i);
    if (t == DB_BLOB) {
        if (n != 16)
            return -EINVAL;
        memcpy(out, db_column_blob(s, i), 16);
        return 0;
    }
    if (t != DB_TEXT)
        return -EINVAL;
    const char *txt = db_column_text(s, i);
    int k = 0;
    for (int j = 0; j < n && txt[j]; j++) {
        if (txt[j] == '-')
            continue;
        int hi = bfs_hexval(txt[j]);
        if (hi < 0 || k >= 32)
            return -EINVAL;
        if (k % 2 == 0)
            out[k / 2] = (uint8_t)(hi << 4);
        else
            out[k / 2] |= (uint8_t)hi;
        k++;
    }
    return k == 32 ? 0 : -EINVAL;
}

int64_t db_changes(db_conn *c) { return c->engine->ops->changes(c); }

int db_begin(db_conn *c, enum db_tx mode) { return c->engine->ops->begin(c, mode); }
int db_commit(db_conn *c) { return c->engine->ops->commit(c); }
void db_rollback(db_conn *c)
{
    if (c->engine->ops->in_transaction(c))
        c->engine->ops->rollback(c);
}
bool db_in_transaction(const db_conn *c) { return c->engine->ops->in_transaction(c); }

/* Savepoint names are the caller's constants, never data. */
static int savepoint_sql(db_conn *c, const char *verb, const char *name)
{
    char *sql = bfs_asprintf("%s %s", verb, name);
    if (!sql)
        return -ENOMEM;
    int ret = db_exec(c, sql);
    free(sql);
    return ret;
}

int db_savepoint(db_conn *c, const char *name) { return savepoint_sql(c, "SAVEPOINT", name); }
int db_release(db_conn *c, const char *name) { return savepoint_sql(c, "RELEASE SAVEPOINT", name); }
void db_rollback_to(db_conn *c, const char *name)
{
    if (savepoint_sql(c, "ROLLBACK TO SAVEPOINT", name) < 0)
        bfs_warn(TAG, "rollback to savepoint %s failed", name);
}

int db_table_exists(db_conn *c, const char *table) { return c->engine->ops->table_exists(c, table); }
int db_column_exists(db_conn *c, const char *table, const char *column)
{
    return c->engine->ops->column_exists(c, table, column);
}

int db_column_takes_timestamp(db_conn *c, const char *table, const char *column)
{
    return c->engine->ops->column_takes_timestamp(c, table, column);
}

char *db_sql_span_columns(const db_conn *c, const char *prefix)
{
    return c->engine->ops->span_columns(c, prefix);
}
char *db_sql_span_values(const db_conn *c, const char *b, const char *e)
{
    return c->engine->ops->span_values(c, b, e);
}
char *db_sql_span_select(const db_conn *c, const char *alias) { return c->engine->ops->span_select(c, alias); }
char *db_sql_span_overlaps(const db_conn *c, const char *alias, const char *b, const char *e)
{
    return c->engine->ops->span_overlaps(c, alias, b, e);
}
char *db_sql_glob(const db_conn *c, const char *expr, const char *param)
{
    return c->engine->ops->glob(c, expr, param);
}
char *db_sql_id_hex(const db_conn *c, const char *expr) { return c->engine->ops->id_hex(c, expr); }
char *db_sql_span_same(const db_conn *c, const char *alias, const char *b, const char *e)
{
    return c->engine->ops->span_same(c, alias, b, e);
}
char *db_sql_span_ddl(const db_conn *c) { return c->engine->ops->span_ddl(c); }
char *db_sql_time_ns(const db_conn *c, const char *expr) { return c->engine->ops->time_ns(c, expr); }
const char *db_sql_word(const db_conn *c, enum db_word w) { return c->engine->ops->word(c, w); }
int db_column_span(db_stmt *s, int i, int64_t *begin, int64_t *end)
{
    return s->conn->engine->ops->column_span(s, i, begin, end);
}
int db_lock_table(db_conn *c, const char *table) { return c->engine->ops->lock_table(c, table); }
bool db_ident_needs_quotes(const db_conn *c, const char *name)
{
    return c->engine->ops->ident_needs_quotes(c, name);
}

const char *db_engine_describe(const db_engine *e) { return e->ops->describe(e); }
void db_engine_pool_stats(db_engine *e, int *open, int *in_use, int *max)
{
    e->ops->pool_stats(e, open, in_use, max);
}
