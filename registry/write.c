/*
 * write.c - the registry write API: dimension records, collections of the
 * four types and chains, dataset types with their tag/calibration tables,
 * datasets with deterministic ids, TAGGED associations and CALIBRATION
 * certifications, written as the Python Butler writes them.
 *
 * Design.  Every write runs on the calling thread's handle (reg_db(), db.h),
 * which is read-write with foreign keys enforced for a BFS_REG_WRITE
 * registry, so the database itself rejects a dataset whose exposure or
 * detector record is missing (-ENOENT from the engine).  Each public
 * function is atomic: outside an explicit transaction it takes its own
 * write transaction (db_begin DB_TX_WRITE: in SQLite the write lock up
 * front, so two writers queue on the busy timeout instead of deadlocking on
 * a lock upgrade); inside bfs_registry_begin/commit it runs under a
 * savepoint, so a failed call leaves no partial rows and the caller may
 * still commit the rest or roll everything back.  Transactions are per
 * thread because handles are.
 *
 * PostgreSQL (several mounts of one repository write at once, READ
 * COMMITTED): a failed statement aborts the whole transaction, so every
 * call that can expect a failure (-EEXIST, a missing record) runs under its
 * own transaction or savepoint, as above; an INSERT ... ON CONFLICT DO
 * NOTHING that meets another writer's uncommitted row waits for it, and the
 * check after it sees the committed row, so two mounts writing one record,
 * collection or dataset end with one row and one -EEXIST.  Registering a
 * new dataset type locks the dataset_type table first (db_lock_table), so
 * two mounts do not both make a dimension group and tables for one type;
 * its tag table's foreign keys lock the record tables, so a transaction
 * that registers a type does it before writing records (ingest.c).  A
 * deadlock or serialization failure is -EBUSY, which the ingest retries.
 *
 * "Identical is fine, different is -EEXIST": records are inserted with
 * ON CONFLICT DO NOTHING (never INSERT OR IGNORE, which would also swallow
 * CHECK and NOT NULL violations), and when nothing was inserted the
 * existing row is compared column by column with IS (NULL-safe).
 *
 * Tag and calibration tables are shared by all dataset types with the same
 * set of required dimensions, keyed by the dimension group id of
 * dimension_graph_key (the empty group is key 0 and has no rows there), and
 * are created with the DDL daf_butler emits for them (column types, length
 * CHECKs, constraint and index names), taking key types and governor flags
 * from the stored universe JSON.
 *
 * Associations and certifications copy the dataset's dataId from its run's
 * tag row inside the database (INSERT ... SELECT), so they cannot disagree
 * with it; the collection summaries are written first because the tag and
 * calibration tables' foreign keys point at them.
 *
 * Catalog snapshots are not updated here: after adding runs or dataset types,
 * callers that read through the catalog call bfs_registry_refresh() (or
 * reopen).
 */
#include "registry_i.h"

#include "fdio.h"
#include "log.h"
#include "strutil.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <time.h>

/* ---- transactions -------------------------------------------------------- */

struct wtx {
    db_conn *db;
    bool own;   /* true: we opened a transaction; false: a savepoint in the caller's */
};

static int wtx_begin(bfs_registry *reg, struct wtx *t)
{
    if (!reg->writable)
        return -EROFS;
    t->db = reg_db(reg);
    if (!t->db)
        return -EIO;
    t->own = !db_in_transaction(t->db);
    return t->own ? db_begin(t->db, DB_TX_WRITE) : db_savepoint(t->db, "bfs_write");
}

/* Finish what wtx_begin started: keep the work when ret is 0, undo it
 * otherwise.  Returns ret, or the commit's error. */
static int wtx_end(struct wtx *t, int ret)
{
    if (t->own) {
        if (!ret)
            ret = db_commit(t->db);
        if (ret)
            db_rollback(t->db);
    } else {
        if (ret)
            db_rollback_to(t->db, "bfs_write");
        int r2 = db_release(t->db, "bfs_write");
        if (!ret)
            ret = r2;
    }
    return ret;
}

int bfs_registry_begin(bfs_registry *reg)
{
    if (!reg->writable)
        return -EROFS;
    db_conn *db = reg_db(reg);
    if (!db)
        return -EIO;
    return db_begin(db, DB_TX_WRITE);
}

int bfs_registry_commit(bfs_registry *reg)
{
    db_conn *db = reg_db(reg);
    if (!db)
        return -EIO;
    int ret = db_commit(db);
    if (ret)
        db_rollback(db);
    return ret;
}

void bfs_registry_rollback(bfs_registry *reg)
{
    db_conn *db = reg_db(reg);
    if (db)
        db_rollback(db);
}

/* ---- statement helpers --------------------------------------------------- */

/* Run a statement that returns no row to completion; the cached statement
 * is reset so it holds no lock afterwards. */
static int step_done(db_stmt *st, const char *what)
{
    int rc = db_step(st);
    db_reset(st);
    if (rc == DB_DONE || rc == DB_ROW)
        return 0;
    if (rc == -ENOENT)  /* the engine's word for a foreign key violation */
        bfs_info(REG_TAG, "%s: a referenced record does not exist", what);
    return rc;
}

/* Prepare sql, built from the dialect fragments a and b; all three are
 * freed (any may be NULL: out of memory).  NULL when out of memory or when
 * the prepare fails (logged). */
static db_stmt *prepare_built(db_conn *db, char *sql, char *a, char *b)
{
    free(a);
    free(b);
    db_stmt *st = sql ? db_prepare(db, sql) : NULL;
    free(sql);
    return st;
}

static void bind_text_or_null(db_stmt *st, int i, const char *s)
{
    if (s)
        db_bind_text(st, i, s, -1);
    else
        db_bind_null(st, i);
}

static void bind_double_or_null(db_stmt *st, int i, double v)
{
    if (isnan(v))
        db_bind_null(st, i);
    else
        db_bind_double(st, i, v);
}

/* One record for insert_same(): a table, its columns and a binder that
 * binds parameters 1..ncols in column order, and with span the timespan's
 * begin and end as ncols + 1 and ncols + 2 (written in the engine's form,
 * db_sql_span_values). */
struct record {
    const char *table;
    const char *const *cols;
    int ncols;
    void (*bind)(db_stmt *st, const void *ctx);
    const void *ctx;
    bool span;
    bool conflict_expected; /* the caller takes -EEXIST as success: no probes for conflict */
};

/* The calling thread's last conflict (bfs_registry_conflict): the columns a
 * record differed in from the repository's, "" when unknown. */
static _Thread_local char conflict[256];

const char *bfs_registry_conflict(void) { return conflict; }

/* "SELECT 1 FROM table WHERE" every column of rec equals its parameter (and
 * the span its pair), except that the terms with free[i] set (i < ncols a
 * column, ncols the span; free NULL: none) always hold: they still name
 * their parameters, so that the statement takes the same ones (PostgreSQL
 * needs each one's type).  NULL without memory. */
static char *same_sql(db_conn *db, const struct record *rec, const char *qt, const bool *free_)
{
    char *sql = NULL, pb[16], pe[16];
    size_t len = 0;
    FILE *f = open_memstream(&sql, &len);
    if (!f)
        return NULL;
    const char *is = db_sql_word(db, DB_WORD_IS);
    bool ok = true;
    fprintf(f, "SELECT 1 FROM %s WHERE ", qt);
    for (int i = 0; i < rec->ncols; i++) {
        char *qc = reg_quote_ident(rec->cols[i]);
        ok = ok && qc;
        bool skip = free_ && free_[i];
        fprintf(f, "%s%s%s %s ?%d%s", i ? " AND " : "", skip ? "(" : "", qc ? qc : "", is, i + 1,
                skip ? " OR 1 = 1)" : "");
        free(qc);
    }
    if (rec->span) {
        snprintf(pb, sizeof pb, "?%d", rec->ncols + 1);
        snprintf(pe, sizeof pe, "?%d", rec->ncols + 2);
        char *ssame = db_sql_span_same(db, "", pb, pe);
        ok = ok && ssame;
        fprintf(f, free_ && free_[rec->ncols] ? " AND (%s OR 1 = 1)" : " AND %s", ssame ? ssame : "");
        free(ssame);
    }
    if (fclose(f) != 0 || !ok) {
        free(sql);
        return NULL;
    }
    return sql;
}

/* Whether the statement sql, with rec's parameters, finds a row: 1, 0, or
 * negative errno. */
static int finds_row(bfs_registry *reg, const struct record *rec, const char *sql)
{
    db_stmt *st = sql ? reg_prepare(reg, sql) : NULL;
    if (!st)
        return sql ? -EIO : -ENOMEM;
    rec->bind(st, rec->ctx);
    int rc = db_step(st);
    db_reset(st);
    return rc == DB_ROW ? 1 : rc == DB_DONE ? 0 : rc;
}

/* After rec conflicted: the columns in which it differs from the row it
 * conflicts with, into conflict.  Every term starts free (any row matches);
 * each in turn is made to hold again, and freed back when then no row
 * matches: what stays free is where the closest row differs (the key
 * columns come first in rec, so that row is the one with rec's key).  One
 * probe per column, paid on the error path only. */
static void describe_conflict(bfs_registry *reg, const struct record *rec, const char *qt)
{
    int nterms = rec->ncols + (rec->span ? 1 : 0);
    bool free_[65];
    size_t used = 0;
    conflict[0] = '\0';
    if (nterms > 65)
        return;
    for (int i = 0; i < nterms; i++)
        free_[i] = true;
    for (int i = 0; i < nterms; i++) {
        free_[i] = false;
        char *sql = same_sql(reg_db(reg), rec, qt, free_);
        int found = finds_row(reg, rec, sql);
        free(sql);
        if (found < 0) {
            conflict[0] = '\0';
            return;
        }
        if (found == 1)
            continue;
        free_[i] = true;
        int w = snprintf(conflict + used, sizeof conflict - used, "%s%s", used ? ", " : "",
                         i < rec->ncols ? rec->cols[i] : "timespan");
        if (w < 0 || used + (size_t)w + 4 >= sizeof conflict) {
            snprintf(conflict + used, sizeof conflict - used, "%s...", used ? ", " : ""); /* no room for more */
            return;
        }
        used += (size_t)w;
    }
}

/* Insert rec unless an equal row exists.  0 when inserted or identical,
 * -EEXIST when a row conflicts on a key but differs (the columns it
 * differs in, in conflict). */
static int insert_same(bfs_registry *reg, const struct record *rec)
{
    conflict[0] = '\0';
    db_conn *db = reg_db(reg);
    if (!db)
        return -EIO;
    char *ins = NULL;
    size_t ins_len = 0;
    FILE *fi = open_memstream(&ins, &ins_len);
    int ret = fi ? 0 : -ENOMEM;
    char *qt = reg_quote_ident(rec->table);
    /* the span's parameters follow the columns' */
    char pb[16], pe[16];
    snprintf(pb, sizeof pb, "?%d", rec->ncols + 1);
    snprintf(pe, sizeof pe, "?%d", rec->ncols + 2);
    char *scols = rec->span ? db_sql_span_columns(db, "") : NULL;
    char *svals = rec->span ? db_sql_span_values(db, pb, pe) : NULL;
    if (rec->span && (!scols || !svals))
        ret = -ENOMEM;
    if (fi && qt) {
        fprintf(fi, "INSERT INTO %s (", qt);
        for (int i = 0; i < rec->ncols; i++) {
            char *qc = reg_quote_ident(rec->cols[i]);
            if (!qc)
                ret = -ENOMEM;
            fprintf(fi, "%s%s", i ? ", " : "", qc ? qc : "");
            free(qc);
        }
        if (rec->span && !ret)
            fprintf(fi, ", %s", scols);
        fputs(") VALUES (", fi);
        for (int i = 0; i < rec->ncols; i++)
            fprintf(fi, "%s?%d", i ? ", " : "", i + 1);
        if (rec->span && !ret)
            fprintf(fi, ", %s", svals);
        fputs(") ON CONFLICT DO NOTHING", fi);
    } else {
        ret = -ENOMEM;
    }
    if (fi && fclose(fi) != 0)
        ret = -ENOMEM;
    free(scols);
    free(svals);

    db_stmt *st = ret ? NULL : reg_prepare(reg, ins);
    if (!ret && !st)
        ret = -EIO;
    if (!ret) {
        rec->bind(st, rec->ctx);
        ret = step_done(st, ins);
    }
    if (!ret && db_changes(db) == 0) {
        char *sel = same_sql(db, rec, qt, NULL);
        int found = finds_row(reg, rec, sel);
        free(sel);
        if (found == 0) {
            if (!rec->conflict_expected) {
                describe_conflict(reg, rec, qt);
                bfs_info(REG_TAG, "%s: a different record with the same key exists (differing: %s)", rec->table,
                         conflict[0] ? conflict : "unknown");
            }
            ret = -EEXIST;
        } else if (found < 0) {
            ret = found;
        }
    }
    free(qt);
    free(ins);
    return ret;
}

/* ---- dimension records ----------------------------------------------------- */

/* insert_same as one atomic call (its own transaction or savepoint). */
static int insert_same_atomic(bfs_registry *reg, const struct record *rec)
{
    struct wtx t;
    int ret = wtx_begin(reg, &t);
    if (ret)
        return ret;
    return wtx_end(&t, insert_same(reg, rec));
}

struct value_list {
    const bfs_record_value *v;
    int n;
};

static void bind_values(db_stmt *st, const void *ctx)
{
    const struct value_list *l = ctx;
    for (int i = 0; i < l->n; i++) {
        const bfs_record_value *v = &l->v[i];
        if (v->type == BFS_VAL_INT)
            db_bind_int64(st, i + 1, v->i);
        else if (v->type == BFS_VAL_REAL)
            bind_double_or_null(st, i + 1, v->f);
        else if (v->type == BFS_VAL_TEXT)
            bind_text_or_null(st, i + 1, v->s);
        else
            db_bind_null(st, i + 1);
    }
}

/* Whether table has column (a cheap catalog question; tables are few and
 * small).  1, 0 or -errno. */
static int table_has_column(bfs_registry *reg, const char *table, const char *column)
{
    db_conn *db = reg_db(reg);
    return db ? db_column_exists(db, table, column) : -EIO;
}

int bfs_registry_add_record(bfs_registry *reg, const char *element, const bfs_record_value *v, int n)
{
    const bfs_dimension *d = element ? bfs_registry_dimension_by_name(reg, element) : NULL;
    if (!d || !d->has_table || n <= 0 || n > 64) {
        bfs_info(REG_TAG, "no records of %s can be added", element ? element : "(null)");
        return -EINVAL;
    }
    /* The timespan travels as SQLite's pair of columns; it is written in
     * the engine's form (insert_same), after the other columns. */
    const char *cols[64];
    bfs_record_value ordered[64];
    int k = 0, ib = -1, ie = -1;
    for (int i = 0; i < n; i++) {
        if (v[i].column && !strcmp(v[i].column, "timespan_begin")) {
            ib = i;
            continue;
        }
        if (v[i].column && !strcmp(v[i].column, "timespan_end")) {
            ie = i;
            continue;
        }
        int has = v[i].column ? table_has_column(reg, element, v[i].column) : 0;
        if (has <= 0) {
            if (has == 0)
                bfs_info(REG_TAG, "%s records have no column %s", element, v[i].column ? v[i].column : "(null)");
            return has < 0 ? has : -EINVAL;
        }
        cols[k] = v[i].column;
        ordered[k++] = v[i];
    }
    /* the key's columns first (the dimensions that key the table, then its
     * own key): a conflict's description starts from the row with this key
     * (describe_conflict), whatever order the sidecar gave */
    for (int i = 0, front = 0; i < k; i++) {
        bool key = d->key && !strcmp(cols[i], d->key);
        for (int j = 0; j < d->n_requires && !key; j++)
            key = !strcmp(cols[i], d->requires[j]->name);
        if (!key)
            continue;
        const char *c = cols[i];
        bfs_record_value v0 = ordered[i];
        for (int j = i; j > front; j--) {
            cols[j] = cols[j - 1];
            ordered[j] = ordered[j - 1];
        }
        cols[front] = c;
        ordered[front++] = v0;
    }
    bool span = ib >= 0 || ie >= 0;
    if (span) {
        char *sc = db_sql_span_columns(reg_db(reg), "");
        char *comma = sc ? strchr(sc, ',') : NULL;
        if (comma)
            *comma = '\0'; /* SQLite's timespan_begin, PostgreSQL's timespan */
        int has = sc ? table_has_column(reg, element, sc) : -ENOMEM;
        free(sc);
        if (has <= 0 || ib < 0 || ie < 0) {
            if (has == 0 || (has > 0 && (ib < 0 || ie < 0)))
                bfs_info(REG_TAG, "%s records: a timespan needs both timespan_begin and timespan_end, in a "
                                  "table that has one", element);
            return has < 0 ? has : -EINVAL;
        }
        ordered[k] = v[ib];
        ordered[k + 1] = v[ie];
    }
    struct value_list l = {ordered, k + (span ? 2 : 0)};
    struct record rec = {element, cols, k, bind_values, &l, span, false};
    return insert_same_atomic(reg, &rec);
}

static void bind_instrument(db_stmt *st, const void *ctx)
{
    const bfs_instrument_record *r = ctx;
    bind_text_or_null(st, 1, r->name);
    db_bind_int64(st, 2, r->visit_max);
    db_bind_int64(st, 3, r->visit_system);
    db_bind_int64(st, 4, r->exposure_max);
    db_bind_int64(st, 5, r->detector_max);
    bind_text_or_null(st, 6, r->class_name);
}

int bfs_registry_has_record(bfs_registry *reg, const char *element, const char *instrument,
                            const char *key)
{
    /* every bound parameter is used: PostgreSQL cannot type one that is not */
    static const struct {
        const char *element, *sql;
        bool by_instrument;  /* ?1 the instrument, ?2 the key; else ?1 the key */
    } q[] = {
        {"instrument", "SELECT 1 FROM instrument WHERE name = ?1", false},
        {"detector", "SELECT 1 FROM detector WHERE instrument = ?1 AND id = CAST(?2 AS BIGINT)", true},
        {"exposure", "SELECT 1 FROM exposure WHERE instrument = ?1 AND id = CAST(?2 AS BIGINT)", true},
        {"visit", "SELECT 1 FROM visit WHERE instrument = ?1 AND id = CAST(?2 AS BIGINT)", true},
        {"physical_filter", "SELECT 1 FROM physical_filter WHERE instrument = ?1 AND name = ?2", true},
    };
    if (!element || !key)
        return -EINVAL;
    for (size_t i = 0; i < sizeof q / sizeof *q; i++) {
        if (strcmp(element, q[i].element))
            continue;
        db_stmt *st = reg_prepare(reg, q[i].sql);
        if (!st)
            return -EIO;
        if (q[i].by_instrument)
            bind_text_or_null(st, 1, instrument);
        db_bind_text(st, q[i].by_instrument ? 2 : 1, key, -1);
        int rc = db_step(st);
        int ret = rc == DB_ROW ? 1 : rc == DB_DONE ? 0 : rc;
        db_reset(st);
        return ret;
    }
    return -EINVAL;
}

/* A row of the run-file walks: id, run, type, path, size, ingest ns. */
static bfs_run_file run_file_of(db_stmt *st)
{
    return (bfs_run_file){
        .dataset_id = db_column_text(st, 0),
        .run = db_column_text(st, 1),
        .dataset_type = db_column_text(st, 2),
        .path = db_column_text(st, 3),
        .size = db_column_int64(st, 4),
        .ingest_ns = db_column_int64(st, 5),
    };
}

/* The statement of the run-file walks, its rows read by run_file_of (and
 * column 6, the stored id): the RUN collections' names GLOB ?1.  Whole
 * (page false): every file, in no order.  A page: the files of the first
 * ?2 datasets by the dataset table's key, after ?3 when after is set, in
 * that order, and a dataset without files as one row of NULL path.  Ids
 * in whichever form the registry stores them (db_sql_id_hex); ingest_date
 * is TAI ns (universe 6+) or a TIMESTAMP (older), read by db_sql_time_ns. */
static db_stmt *run_files_stmt(bfs_registry *reg, db_conn *db, bool page, bool after)
{
    char *id = db_sql_id_hex(db, "d.id"), *glob = db_sql_glob(db, page ? "pc.name" : "c.name", "?1");
    char *when = db_sql_time_ns(db, "d.ingest_date"), *records = reg_quote_ident(reg->records_table);
    char *from = !glob ? NULL : page ? bfs_asprintf("(SELECT p.id, p.run_id, p.dataset_type_id, p.ingest_date "
                                                    "FROM dataset p JOIN collection pc ON pc.collection_id = "
                                                    "p.run_id WHERE %s%s ORDER BY p.id LIMIT ?2) d",
                                                    glob, after ? " AND p.id > ?3" : "")
                                     : strdup("dataset d");
    char *sql = !id || !from || !when || !records ? NULL :
        bfs_asprintf("SELECT %s, c.name, t.name, r.path, coalesce(r.file_size, -1), %s, d.id "
                     "FROM %s JOIN collection c ON c.collection_id = d.run_id "
                     "JOIN dataset_type t ON t.id = d.dataset_type_id "
                     "%sJOIN %s r ON r.dataset_id = d.id %s%s", id, when, from, page ? "LEFT " : "", records,
                     page ? "ORDER BY d.id" : "WHERE ", page ? "" : glob);
    free(when);
    free(records);
    free(from);
    return prepare_built(db, sql, id, glob);
}

int bfs_registry_each_run_file(bfs_registry *reg, const char *run_glob, bfs_run_file_cb cb, void *ctx)
{
    db_conn *db = reg_db(reg);
    if (!db)
        return -EIO;
    db_stmt *st = run_files_stmt(reg, db, false, false);
    if (!st)
        return -EIO;
    db_bind_text(st, 1, run_glob, -1);
    int rc, ret = 0;
    while (ret == 0 && (rc = db_step(st)) == DB_ROW) {
        bfs_run_file f = run_file_of(st);
        if (f.dataset_id && f.run && f.dataset_type && f.path)
            ret = cb(ctx, &f);
    }
    if (ret == 0 && rc != DB_DONE)
        ret = rc;
    db_reset(st);
    return ret;
}

/* The key of column i (the dataset id as stored: SQLite text, or the text
 * PostgreSQL gives a uuid) into c, for the next page's "id > ?3". */
static int cursor_set(db_stmt *st, int i, bfs_dataset_cursor *c)
{
    if (db_column_type(st, i) != DB_TEXT)
        return -ENOTSUP; /* BLOB ids: a text bound would sort before every one of them */
    const char *v = db_column_text(st, i);
    int n = db_column_bytes(st, i);
    if (!v || n <= 0 || (size_t)n >= sizeof c->key)
        return -EINVAL;
    memcpy(c->key, v, (size_t)n);
    c->key[n] = '\0';
    c->started = true;
    return 0;
}

int bfs_registry_each_run_file_page(bfs_registry *reg, const char *run_glob, bfs_dataset_cursor *cursor,
                                    int max_datasets, bfs_run_file_cb cb, void *ctx, int *ndatasets)
{
    *ndatasets = 0;
    db_conn *db = reg_db(reg);
    if (!db)
        return -EIO;
    if (max_datasets <= 0)
        return -EINVAL;
    /* the page's datasets first (the dataset table's primary key gives
     * the order and the start), then their files; a dataset without file
     * records still moves the cursor */
    db_stmt *st = run_files_stmt(reg, db, true, cursor->started);
    if (!st)
        return -EIO;
    db_bind_text(st, 1, run_glob, -1);
    db_bind_int64(st, 2, max_datasets);
    if (cursor->started)
        db_bind_text(st, 3, cursor->key, -1);
    int rc, ret = 0, n = 0;
    char last[33] = "";
    while (ret == 0 && (rc = db_step(st)) == DB_ROW) {
        bfs_run_file f = run_file_of(st);
        if (!f.dataset_id)
            continue;
        if (strcmp(f.dataset_id, last)) {
            n++;
            snprintf(last, sizeof last, "%s", f.dataset_id);
            ret = cursor_set(st, 6, cursor);
        }
        if (ret == 0 && f.run && f.dataset_type && f.path)
            ret = cb(ctx, &f);
    }
    if (ret == 0 && rc != DB_DONE)
        ret = rc;
    db_reset(st);
    *ndatasets = n;
    return ret;
}

int bfs_registry_count_datasets(bfs_registry *reg, int64_t *n)
{
    *n = 0;
    db_stmt *st = reg_prepare(reg, "SELECT count(*) FROM dataset");
    if (!st)
        return -EIO;
    int rc = db_step(st);
    if (rc == DB_ROW)
        *n = db_column_int64(st, 0);
    db_reset(st);
    return rc == DB_ROW ? 0 : rc < 0 ? rc : -EIO;
}

int bfs_registry_record_text(bfs_registry *reg, const char *element, const char *instrument,
                             const char *key, const char *column, char *out, size_t outsz)
{
    static const struct {
        const char *element, *key, *columns[5];
    } allowed[] = {
        {"exposure", "id", {"obs_id", "group", "day_obs", "physical_filter", NULL}},
        {"exposure", "obs_id", {"id", NULL}}, /* an exposure's id by its obs_id */
        {"visit", "id", {"day_obs", "physical_filter", NULL}},
        {"detector", "id", {"full_name", "raft", "name_in_raft", "purpose", NULL}},
        {"physical_filter", "name", {"band", NULL}},
    };
    if (!element || !instrument || !key || !column || !outsz)
        return -EINVAL;
    for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++) {
        if (strcmp(element, allowed[i].element))
            continue;
        for (int c = 0; allowed[i].columns[c]; c++) {
            if (strcmp(column, allowed[i].columns[c]))
                continue;
            /* asked first: PostgreSQL prepares when the statement runs, and
             * a missing column would be a failed statement */
            int has = table_has_column(reg, element, column);
            if (has <= 0)
                return has < 0 ? has : -ENOENT; /* this universe has no such column */
            char sql[160];
            snprintf(sql, sizeof sql, "SELECT \"%s\" FROM %s WHERE instrument = ?1 AND %s = ?2", column,
                     element, allowed[i].key);
            db_stmt *st = reg_prepare(reg, sql);
            if (!st)
                return -ENOENT;
            db_bind_text(st, 1, instrument, -1);
            if (!strcmp(allowed[i].key, "id"))
                db_bind_int64(st, 2, strtoll(key, NULL, 10));
            else
                db_bind_text(st, 2, key, -1);
            int rc = db_step(st), ret = 0;
            const char *v = rc == DB_ROW ? db_column_text(st, 0) : NULL;
            if (rc == DB_ROW && v)
                ret = snprintf(out, outsz, "%s", (const char *)v) >= (int)outsz ? -ENAMETOOLONG : 0;
            else
                ret = rc == DB_ROW || rc == DB_DONE ? -ENOENT : rc;
            db_reset(st);
            return ret;
        }
    }
    return -EINVAL;
}

int bfs_registry_add_instrument(bfs_registry *reg, const bfs_instrument_record *r)
{
    static const char *const cols[] = {"name", "visit_max", "visit_system", "exposure_max",
                                       "detector_max", "class_name"};
    if (!r || !r->name)
        return -EINVAL;
    struct record rec = {"instrument", cols, 6, bind_instrument, r, false, false};
    return insert_same_atomic(reg, &rec);
}

static void bind_detector(db_stmt *st, const void *ctx)
{
    const bfs_detector_record *r = ctx;
    bind_text_or_null(st, 1, r->instrument);
    db_bind_int64(st, 2, r->id);
    bind_text_or_null(st, 3, r->full_name);
    bind_text_or_null(st, 4, r->name_in_raft);
    bind_text_or_null(st, 5, r->raft);
    bind_text_or_null(st, 6, r->purpose);
}

int bfs_registry_add_detector(bfs_registry *reg, const bfs_detector_record *r)
{
    static const char *const cols[] = {"instrument", "id", "full_name", "name_in_raft", "raft",
                                       "purpose"};
    if (!r || !r->instrument)
        return -EINVAL;
    struct record rec = {"detector", cols, 6, bind_detector, r, false, false};
    return insert_same_atomic(reg, &rec);
}

struct filter_args {
    const char *instrument, *name, *band;
};

static void bind_filter(db_stmt *st, const void *ctx)
{
    const struct filter_args *a = ctx;
    bind_text_or_null(st, 1, a->instrument);
    bind_text_or_null(st, 2, a->name);
    bind_text_or_null(st, 3, a->band);
}

/* band has no table of its own (it is a view of physical_filter), so the
 * physical_filter row is all there is to write. */
int bfs_registry_add_physical_filter(bfs_registry *reg, const char *instrument,
                                     const char *name, const char *band)
{
    static const char *const cols[] = {"instrument", "name", "band"};
    if (!instrument || !name || !band)
        return -EINVAL;
    struct filter_args a = {instrument, name, band};
    struct record rec = {"physical_filter", cols, 3, bind_filter, &a, false, false};
    return insert_same_atomic(reg, &rec);
}

struct day_obs_args {
    const char *instrument;
    int64_t id;
};

/* The day_obs validity range: the observing day YYYYMMDD rolls over at
 * 12:00 on the TAI scale (UTC-12h, as for the LSST instruments), which
 * obs_lsst records as [YYYY-MM-DDT12:00 TAI, +1 day).  A value that is not
 * a date gets no range (NULL), which the Butler accepts. */
static bool day_obs_span(int64_t day, int64_t *begin, int64_t *end)
{
    struct tm tm = {0};
    tm.tm_year = (int)(day / 10000) - 1900;
    tm.tm_mon = (int)(day / 100 % 100) - 1;
    tm.tm_mday = (int)(day % 100);
    if (day < 19000101 || day > 99991231 || tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 ||
        tm.tm_mday > 31)
        return false;
    time_t t = timegm(&tm);
    *begin = ((int64_t)t + 12 * 3600) * 1000000000LL;
    *end = *begin + 86400LL * 1000000000LL;
    return true;
}

static void bind_day_obs(db_stmt *st, const void *ctx)
{
    const struct day_obs_args *a = ctx;
    int64_t b, e;
    bind_text_or_null(st, 1, a->instrument);
    db_bind_int64(st, 2, a->id);
    if (day_obs_span(a->id, &b, &e)) {
        db_bind_int64(st, 3, b);
        db_bind_int64(st, 4, e);
    }
}

static void bind_group(db_stmt *st, const void *ctx)
{
    const bfs_exposure_record *r = ctx;
    bind_text_or_null(st, 1, r->instrument);
    bind_text_or_null(st, 2, r->group);
}

static void bind_exposure(db_stmt *st, const void *ctx)
{
    const bfs_exposure_record *r = ctx;
    int i = 1;
    bind_text_or_null(st, i++, r->instrument);
    db_bind_int64(st, i++, r->id);
    db_bind_int64(st, i++, r->day_obs);
    bind_text_or_null(st, i++, r->group);
    bind_text_or_null(st, i++, r->physical_filter);
    bind_text_or_null(st, i++, r->obs_id);
    bind_double_or_null(st, i++, r->exposure_time);
    bind_double_or_null(st, i++, r->dark_time);
    bind_text_or_null(st, i++, r->observation_type);
    bind_text_or_null(st, i++, r->observation_reason);
    db_bind_int64(st, i++, r->seq_num);
    bool seq = r->seq_start || r->seq_end; /* else a single exposure: its own sequence */
    db_bind_int64(st, i++, seq ? r->seq_start : r->seq_num);
    db_bind_int64(st, i++, seq ? r->seq_end : r->seq_num);
    bind_text_or_null(st, i++, r->target_name);
    bind_text_or_null(st, i++, r->science_program);
    bind_double_or_null(st, i++, r->tracking_ra);
    bind_double_or_null(st, i++, r->tracking_dec);
    bind_double_or_null(st, i++, r->sky_angle);
    bind_double_or_null(st, i++, r->azimuth);
    bind_double_or_null(st, i++, r->zenith_angle);
    db_bind_int64(st, i++, r->has_simulated);
    if (r->can_see_sky < 0)
        db_bind_null(st, i++);
    else
        db_bind_int64(st, i++, r->can_see_sky != 0);
    db_bind_int64(st, i++, r->timespan_begin);
    db_bind_int64(st, i++, r->timespan_end);
}

int bfs_registry_add_exposure(bfs_registry *reg, const bfs_exposure_record *r)
{
    static const char *const day_cols[] = {"instrument", "id"}; /* and the timespan */
    static const char *const group_cols[] = {"instrument", "name"};
    static const char *const cols[] = {
        "instrument", "id", "day_obs", "group", "physical_filter", "obs_id", "exposure_time",
        "dark_time", "observation_type", "observation_reason", "seq_num", "seq_start",
        "seq_end", "target_name", "science_program", "tracking_ra", "tracking_dec",
        "sky_angle", "azimuth", "zenith_angle", "has_simulated", "can_see_sky"}; /* and the timespan */
    if (!r || !r->instrument || !r->group || !r->physical_filter)
        return -EINVAL;
    struct day_obs_args day = {r->instrument, r->day_obs};
    struct record day_rec = {"day_obs", day_cols, 2, bind_day_obs, &day, true, true};
    struct record group_rec = {"group", group_cols, 2, bind_group, r, false, false};
    struct record rec = {"exposure", cols, (int)(sizeof cols / sizeof cols[0]), bind_exposure, r, true, false};
    struct wtx t;
    int ret = wtx_begin(reg, &t);
    if (ret)
        return ret;
    /* An existing day_obs row with another range (written by another tool)
     * is still the same day: only the exposure itself must be identical. */
    ret = insert_same(reg, &day_rec);
    if (ret == -EEXIST)
        ret = 0;
    if (!ret)
        ret = insert_same(reg, &group_rec);
    if (!ret)
        ret = insert_same(reg, &rec);
    return wtx_end(&t, ret);
}

/* ---- collections ----------------------------------------------------------- */

static int collection_lookup(bfs_registry *reg, const char *name, int64_t *id, int *type)
{
    db_stmt *st = reg_prepare(reg, "SELECT collection_id, type FROM collection WHERE name = ?1");
    if (!st)
        return -EIO;
    db_bind_text(st, 1, name, -1);
    int rc = db_step(st);
    int ret = 0;
    if (rc == DB_ROW) {
        *id = db_column_int64(st, 0);
        *type = (int)db_column_int64(st, 1);
    } else {
        ret = rc == DB_DONE ? -ENOENT : rc;
    }
    db_reset(st);
    return ret;
}

/* The run row of a new RUN collection, with no host and no timespan. */
static int run_insert(bfs_registry *reg, int64_t id)
{
    db_conn *db = reg_db(reg);
    char *cols = db_sql_span_columns(db, ""), *vals = db_sql_span_values(db, "NULL", "NULL");
    db_stmt *st = prepare_built(db, !cols || !vals ? NULL :
        bfs_asprintf("INSERT INTO run (collection_id, host, %s) VALUES (?1, NULL, %s) ON CONFLICT DO NOTHING",
                     cols, vals),
        cols, vals);
    if (!st)
        return -EIO;
    db_bind_int64(st, 1, id);
    return step_done(st, "insert into run");
}

/* Inside a transaction: the collection name of type type, created when
 * missing (see bfs_registry_add_collection for what "identical" means). */
static int collection_ensure(bfs_registry *reg, const char *name, bfs_collection_type type,
                             const char *doc, int64_t *id_out)
{
    db_stmt *st = reg_prepare(reg, "INSERT INTO collection (name, type, doc) "
                                   "VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING");
    if (!st)
        return -EIO;
    db_bind_text(st, 1, name, -1);
    db_bind_int64(st, 2, (int)type);
    bind_text_or_null(st, 3, doc);
    int ret = step_done(st, "insert into collection");
    int64_t id = 0;
    int have = 0;
    if (!ret)
        ret = collection_lookup(reg, name, &id, &have);
    if (!ret && have != (int)type) {
        bfs_info(REG_TAG, "collection %s exists with type %d, not %d", name, have, (int)type);
        ret = -EEXIST;
    }
    if (!ret && doc) {
        st = reg_prepare(reg, "SELECT 1 FROM collection WHERE collection_id = ?1 AND doc = ?2");
        if (!st)
            return -EIO;
        db_bind_int64(st, 1, id);
        db_bind_text(st, 2, doc, -1);
        int rc = db_step(st);
        db_reset(st);
        if (rc == DB_DONE) {
            bfs_info(REG_TAG, "collection %s exists with another doc", name);
            ret = -EEXIST;
        } else if (rc != DB_ROW) {
            ret = rc;
        }
    }
    if (!ret && type == BFS_COLL_RUN)
        ret = run_insert(reg, id);
    if (!ret)
        *id_out = id;
    return ret;
}

int bfs_registry_add_collection(bfs_registry *reg, const char *name, bfs_collection_type type,
                                const char *doc, int64_t *id_out)
{
    if (!name || !*name || type < BFS_COLL_RUN || type > BFS_COLL_CALIBRATION)
        return -EINVAL;
    struct wtx t;
    int ret = wtx_begin(reg, &t);
    if (ret)
        return ret;
    int64_t id = 0;
    ret = wtx_end(&t, collection_ensure(reg, name, type, doc, &id));
    if (!ret && id_out)
        *id_out = id;
    return ret;
}

int bfs_registry_add_run(bfs_registry *reg, const char *name, int64_t *id_out)
{
    return bfs_registry_add_collection(reg, name, BFS_COLL_RUN, NULL, id_out);
}

/* ---- dataset types ---------------------------------------------------------- */

/* SQL facts about a dimension used as a column, from the stored universe:
 * declared type, length CHECK (0: none), whether it is a governor. */
struct dim_sql {
    char type[24];
    int check_len;
    bool governor;
};

static void dim_sql_of(const bfs_registry *reg, const bfs_dimension *d, struct dim_sql *out)
{
    json_t *el = json_object_get(json_object_get(reg->universe_json, "elements"), d->name);
    json_t *key = json_array_get(json_object_get(el, "keys"), 0);
    const char *type = json_string_value(json_object_get(key, "type"));
    json_int_t len = json_integer_value(json_object_get(key, "length"));
    out->check_len = 0;
    out->governor = json_is_true(json_object_get(el, "governor"));
    if (type && !strcmp(type, "string")) {
        /* daf_butler declares strings longer than 32 characters as TEXT */
        if (len > 0 && len <= 32) {
            snprintf(out->type, sizeof out->type, "VARCHAR(%d)", (int)len);
            out->check_len = (int)len;
        } else {
            snprintf(out->type, sizeof out->type, "TEXT");
        }
    } else {
        snprintf(out->type, sizeof out->type, "BIGINT");  /* int keys and skypix indices */
    }
}

static int cmp_dim_index(const void *a, const void *b)
{
    const bfs_dimension *x = *(const bfs_dimension *const *)a, *y = *(const bfs_dimension *const *)b;
    return x->index - y->index;
}

/* Add d and the dimensions it requires (transitively) to set. */
static int add_closure(const bfs_dimension *d, const bfs_dimension **set, int *n)
{
    for (int i = 0; i < *n; i++)
        if (set[i] == d)
            return 0;
    if (*n >= BFS_MAX_DIMS)
        return -E2BIG;
    set[(*n)++] = d;
    for (int i = 0; i < d->n_requires; i++) {
        int ret = add_closure(d->requires[i], set, n);
        if (ret)
            return ret;
    }
    return 0;
}

/* The dimension group key of exactly these dimensions, allocating one when
 * none exists.  The empty group is 0 and is never stored. */
static int dimension_group(bfs_registry *reg, const bfs_dimension *const *dims, int n, int64_t *key)
{
    *key = 0;
    if (n == 0)
        return 0;
    db_stmt *st = reg_prepare(reg, "SELECT dimension_graph_id, dimension_name "
                                   "FROM dimension_graph_definition "
                                   "ORDER BY dimension_graph_id");
    if (!st)
        return -EIO;
    int64_t cur = -1, found = -1;
    int count = 0, matched = 0, rc;
    while ((rc = db_step(st)) == DB_ROW && found < 0) {
        int64_t id = db_column_int64(st, 0);
        const char *name = db_column_text(st, 1);
        if (id != cur) {
            if (cur >= 0 && count == n && matched == n)
                found = cur;
            cur = id;
            count = matched = 0;
        }
        count++;
        for (int i = 0; name && i < n; i++)
            if (!strcmp(dims[i]->name, name))
                matched++;
    }
    if (rc == DB_DONE && found < 0 && cur >= 0 && count == n && matched == n)
        found = cur;
    db_reset(st);
    if (rc != DB_DONE && rc != DB_ROW)
        return rc;
    if (found >= 0) {
        *key = found;
        return 0;
    }

    st = reg_prepare(reg, "INSERT INTO dimension_graph_key DEFAULT VALUES RETURNING id");
    if (!st)
        return -EIO;
    rc = db_step(st);
    if (rc == DB_ROW)
        *key = db_column_int64(st, 0);
    db_reset(st);
    int ret = rc == DB_ROW ? 0 : rc < 0 ? rc : -EIO;
    for (int i = 0; !ret && i < n; i++) {
        st = reg_prepare(reg, "INSERT INTO dimension_graph_definition "
                              "(dimension_graph_id, dimension_name) VALUES (?1, ?2)");
        if (!st)
            return -EIO;
        db_bind_int64(st, 1, *key);
        db_bind_text(st, 2, dims[i]->name, -1);
        ret = step_done(st, "insert into dimension_graph_definition");
    }
    return ret;
}

/* Quote only keywords ("group") and unusual names, as SQLAlchemy does, so
 * the DDL text of our tables reads like the Python Butler's. */
static void put_ident(const db_conn *db, FILE *f, const char *name)
{
    if (!db_ident_needs_quotes(db, name)) {
        fputs(name, f);
        return;
    }
    char *q = reg_quote_ident(name);
    fputs(q ? q : name, f);
    free(q);
}

static void put_cols(const db_conn *db, FILE *f, const char *const *cols, int n)
{
    for (int i = 0; i < n; i++) {
        if (i)
            fputs(", ", f);
        put_ident(db, f, cols[i]);
    }
}

static void put_joined(FILE *f, const char *const *cols, int n)
{
    for (int i = 0; i < n; i++)
        fprintf(f, "_%s", cols[i]);
}

/* One foreign key of a tag/calib table, as daf_butler names it. */
static void put_fk(const db_conn *db, FILE *f, const char *table, const char *target, const char *const *src,
                   const char *const *dst, int n, bool cascade)
{
    fprintf(f, ", \n\tCONSTRAINT fkey_%s_%s", table, target);
    put_joined(f, dst, n);
    put_joined(f, src, n);
    fputs(" FOREIGN KEY(", f);
    put_cols(db, f, src, n);
    fputs(") REFERENCES ", f);
    put_ident(db, f, target);
    fputs(" (", f);
    put_cols(db, f, dst, n);
    fprintf(f, ")%s", cascade ? " ON DELETE CASCADE" : "");
}

#define MAX_FK (4 + 2 * BFS_MAX_DIMS)

/* DDL of a tag (calib = false) or calibration table for dims (universe
 * order) into f. */
static void tags_ddl(const bfs_registry *reg, const db_conn *db, FILE *f, const char *table,
                     const bfs_dimension *const *dims, int n, bool calib, const char *span_ddl,
                     const char *span_cols)
{
    struct dim_sql info[BFS_MAX_DIMS];
    for (int i = 0; i < n; i++)
        dim_sql_of(reg, dims[i], &info[i]);

    /* the engine's types: SQLite's CHAR(32) ids and rowid key, PostgreSQL's
     * uuid and BIGSERIAL (as copy.c makes them) */
    fprintf(f, "CREATE TABLE %s (\n", table);
    if (calib)
        fprintf(f, "\tid %s NOT NULL, \n", db_sql_word(db, DB_WORD_SERIAL));
    fprintf(f, "\tdataset_type_id BIGINT NOT NULL, \n\tdataset_id %s NOT NULL, \n"
               "\tcollection_id BIGINT NOT NULL, \n", db_sql_word(db, DB_WORD_ID_TYPE));
    for (int i = 0; i < n; i++) {
        fputc('\t', f);
        put_ident(db, f, dims[i]->name);
        fprintf(f, " %s NOT NULL, \n", info[i].type);
    }
    if (calib && span_ddl)
        fprintf(f, "\t%s, \n", span_ddl);
    fputs(calib ? "\tPRIMARY KEY (id)" : "\tPRIMARY KEY (dataset_id, collection_id)", f);
    for (int i = 0; i < n; i++)
        if (info[i].check_len)
            fprintf(f, ", \n\tCONSTRAINT %s_len_%s CHECK (length(\"%s\")<=%d AND length(\"%s\")>=1)",
                    table, dims[i]->name, dims[i]->name, info[i].check_len, dims[i]->name);

    const char *dimcols[2 + BFS_MAX_DIMS];
    dimcols[0] = "dataset_type_id";
    dimcols[1] = "collection_id";
    for (int i = 0; i < n; i++)
        dimcols[2 + i] = dims[i]->name;
    if (calib && db_kind_of(db) == DB_POSTGRESQL) {
        /* daf_butler's exclusion on PostgreSQL (btree_gist; SQLite has no
         * such constraint): no two certifications of one dataId and type
         * in a collection overlap in time */
        fprintf(f, ", \n\tCONSTRAINT %s_excl EXCLUDE USING gist (", table);
        for (int i = 0; i < 2 + n; i++) {
            put_ident(db, f, dimcols[i]);
            fputs(" WITH =, ", f);
        }
        fputs("timespan WITH &&)", f);
    }
    if (!calib) {
        /* one dataset per dataId and type in a RUN or TAGGED collection */
        fprintf(f, ", \n\tCONSTRAINT %s_unq", table);
        put_joined(f, dimcols, 2 + n);
        fputs(" UNIQUE (", f);
        put_cols(db, f, dimcols, 2 + n);
        fputc(')', f);
    }

    /* Foreign keys, remembered for their indexes. */
    struct { const char *cols[1 + 4]; int n; } fks[MAX_FK];
    int nfk = 0;
    static const char *const c_dt[] = {"dataset_type_id"}, *const c_id[] = {"id"};
    static const char *const c_ds[] = {"dataset_id"}, *const c_coll[] = {"collection_id"};
    static const char *const c_sum[] = {"collection_id", "dataset_type_id"};
    put_fk(db, f, table, "dataset_type", c_dt, c_id, 1, false);
    fks[nfk].cols[0] = "dataset_type_id"; fks[nfk++].n = 1;
    put_fk(db, f, table, "dataset", c_ds, c_id, 1, true);
    fks[nfk].cols[0] = "dataset_id"; fks[nfk++].n = 1;
    put_fk(db, f, table, "collection", c_coll, c_coll, 1, true);
    fks[nfk].cols[0] = "collection_id"; fks[nfk++].n = 1;
    put_fk(db, f, table, "collection_summary_dataset_type", c_sum, c_sum, 2, false);
    fks[nfk].cols[0] = "collection_id"; fks[nfk].cols[1] = "dataset_type_id"; fks[nfk++].n = 2;
    for (int i = 0; i < n; i++) {
        const bfs_dimension *d = dims[i];
        if (!d->has_table)
            continue;  /* band is a view, skypix has no table: nothing to reference */
        /* columns of everything d requires, in universe order, then d */
        const bfs_dimension *req[BFS_MAX_DIMS];
        int nreq = 0;
        for (int r = 0; r < d->n_requires; r++)
            add_closure(d->requires[r], req, &nreq);
        qsort(req, nreq, sizeof *req, cmp_dim_index);
        const char *src[5], *dst[5];
        int k = 0;
        for (int r = 0; r < nreq && k < 4; r++) {
            src[k] = dst[k] = req[r]->name;
            k++;
        }
        src[k] = d->name;
        dst[k++] = d->key;
        put_fk(db, f, table, d->name, src, dst, k, false);
        memcpy(fks[nfk].cols, src, sizeof src);
        fks[nfk++].n = k;
        if (info[i].governor) {
            char target[128];
            const char *s2[2] = {"collection_id", d->name};
            snprintf(target, sizeof target, "collection_summary_%s", d->name);
            put_fk(db, f, table, target, s2, s2, 2, false);
            memcpy(fks[nfk].cols, s2, sizeof s2);
            fks[nfk++].n = 2;
        }
    }
    fputs("\n);\n", f);
    for (int i = 0; i < nfk; i++) {
        fprintf(f, "CREATE INDEX %s_fkidx", table);
        put_joined(f, fks[i].cols, fks[i].n);
        fprintf(f, " ON %s (", table);
        put_cols(db, f, fks[i].cols, fks[i].n);
        fputs(");\n", f);
    }
    if (calib) {
        /* the temporal lookup of a calibration by dataId */
        const char *ix[4 + BFS_MAX_DIMS];
        int k = 0;
        for (int i = 0; i < 2 + n; i++)
            ix[k++] = dimcols[i];
        ix[k++] = "timespan_begin";
        ix[k++] = "timespan_end";
        fprintf(f, "CREATE INDEX %s_idx", table);
        put_joined(f, ix, k);
        fprintf(f, " ON %s (", table);
        put_cols(db, f, ix, k - 2);
        fprintf(f, ", %s);\n", span_cols ? span_cols : "");
    }
}

static int ensure_tags_table(bfs_registry *reg, const char *table,
                             const bfs_dimension *const *dims, int n, bool calib)
{
    int exists = db_table_exists(reg_db(reg), table);
    if (exists)
        return exists < 0 ? exists : 0;
    char *ddl = NULL;
    size_t len = 0;
    char *span_ddl = db_sql_span_ddl(reg_db(reg)), *span_cols = db_sql_span_columns(reg_db(reg), "");
    FILE *f = span_ddl && span_cols ? open_memstream(&ddl, &len) : NULL;
    if (f)
        tags_ddl(reg, reg_db(reg), f, table, dims, n, calib, span_ddl, span_cols);
    free(span_ddl);
    free(span_cols);
    if (!f || fclose(f) != 0) {
        free(ddl);
        return -ENOMEM;
    }
    int ret = db_exec(reg_db(reg), ddl);
    free(ddl);
    return ret;
}

/* Whether the dataset type name exists with this definition: 1 yes, 0 no
 * such type, -EEXIST another definition (logged). */
static int dtype_same(bfs_registry *reg, const char *name, const char *storage_class,
                      const bfs_dimension *const *dims, int n, bool is_calibration);

int bfs_registry_add_dataset_type(bfs_registry *reg, const char *name,
                                  const char *storage_class, const char *const dims[],
                                  int ndims, bool is_calibration)
{
    if (!name || !*name || !storage_class || ndims < 0 || ndims > BFS_MAX_DIMS || (ndims && !dims))
        return -EINVAL;
    const bfs_dimension *set[BFS_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < ndims; i++) {
        const bfs_dimension *d = dims[i] ? bfs_registry_dimension_by_name(reg, dims[i]) : NULL;
        if (!d) {
            bfs_info(REG_TAG, "dataset type %s: unknown dimension %s", name,
                     dims[i] ? dims[i] : "(null)");
            return -EINVAL;
        }
        /* The Butler's dimension groups always hold what their members
         * require (detector brings instrument). */
        int ret = add_closure(d, set, &n);
        if (ret)
            return ret;
    }
    qsort(set, n, sizeof *set, cmp_dim_index);

    struct wtx t;
    int ret = wtx_begin(reg, &t);
    if (ret)
        return ret;
    /* Two writers registering one type at once (mounts of one PostgreSQL
     * repository) would each make a dimension group and tables and one would
     * then fail on the name: the first to get here finishes first.  An
     * existing identical type (the usual case) takes no lock. */
    ret = dtype_same(reg, name, storage_class, set, n, is_calibration);
    if (ret == 1)
        return wtx_end(&t, 0);
    if (!ret)
        ret = db_lock_table(t.db, "dataset_type");
    int64_t key = 0;
    if (!ret)
        ret = dimension_group(reg, set, n, &key);
    char tags[40], calibs[40];
    snprintf(tags, sizeof tags, "dataset_tags_%08lld", (long long)key);
    snprintf(calibs, sizeof calibs, "dataset_calibs_%08lld", (long long)key);

    db_stmt *st = NULL;
    if (!ret) {
        st = reg_prepare(reg, "SELECT storage_class, dimensions_key, calibration_association_table "
                              "FROM dataset_type WHERE name = ?1");
        ret = st ? 0 : -EIO;
    }
    if (!ret) {
        db_bind_text(st, 1, name, -1);
        int rc = db_step(st);
        if (rc == DB_ROW) {
            const char *sc = db_column_text(st, 0);
            bool same = sc && !strcmp(sc, storage_class) && db_column_int64(st, 1) == key &&
                        (db_column_type(st, 2) != DB_NULL) == is_calibration;
            ret = same ? 1 : -EEXIST;
            if (!same)
                bfs_info(REG_TAG, "dataset type %s exists with another definition", name);
        } else if (rc != DB_DONE) {
            ret = rc;
        }
        db_reset(st);
    }
    if (ret == 1)
        return wtx_end(&t, 0);  /* identical: the group rows above were found, not made */

    if (!ret)
        ret = ensure_tags_table(reg, tags, set, n, false);
    if (!ret && is_calibration)
        ret = ensure_tags_table(reg, calibs, set, n, true);
    if (!ret) {
        st = reg_prepare(reg, "INSERT INTO dataset_type (name, storage_class, dimensions_key, "
                              "tag_association_table, calibration_association_table) "
                              "VALUES (?1, ?2, ?3, ?4, ?5)");
        ret = st ? 0 : -EIO;
    }
    if (!ret) {
        db_bind_text(st, 1, name, -1);
        db_bind_text(st, 2, storage_class, -1);
        db_bind_int64(st, 3, key);
        db_bind_text(st, 4, tags, -1);
        bind_text_or_null(st, 5, is_calibration ? calibs : NULL);
        ret = step_done(st, "insert into dataset_type");
    }
    return wtx_end(&t, ret);
}

/* ---- datasets -------------------------------------------------------------- */

/* "840b31d9-05cd-5161-b2c8-00d32b280d0f": daf_butler's DatasetIdFactory
 * namespace, uuid5(NAMESPACE_DNS, "lsst.org"). */
static const unsigned char dataset_ns[16] = {
    0x84, 0x0b, 0x31, 0xd9, 0x05, 0xcd, 0x51, 0x61,
    0xb2, 0xc8, 0x00, 0xd3, 0x2b, 0x28, 0x0d, 0x0f,
};

static int cmp_str_index(const void *a, const void *b, void *names)
{
    const char *const *n = names;
    return strcmp(n[*(const int *)a], n[*(const int *)b]);
}

int bfs_dataset_id_v5(const char *dataset_type, const char *run, const char *const *dim_names,
                      const char *const *dim_values, int ndims, char id_out[33])
{
    if (!dataset_type || !run || ndims < 0 || ndims > BFS_MAX_DIMS ||
        (ndims && (!dim_names || !dim_values)))
        return -EINVAL;
    int order[BFS_MAX_DIMS];
    for (int i = 0; i < ndims; i++) {
        if (!dim_names[i] || !dim_values[i])
            return -EINVAL;
        order[i] = i;
    }
    /* Python sorts the names as str; byte order of UTF-8 is the same. */
    qsort_r(order, ndims, sizeof *order, cmp_str_index, (void *)dim_names);
    for (int i = 1; i < ndims; i++)
        if (!strcmp(dim_names[order[i]], dim_names[order[i - 1]]))
            return -EINVAL;

    char *data = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&data, &len);
    if (!f)
        return -ENOMEM;
    fprintf(f, "dataset_type=%s,run=%s", dataset_type, run);
    for (int i = 0; i < ndims; i++)
        fprintf(f, ",%s=%s", dim_names[order[i]], dim_values[order[i]]);
    if (fclose(f) != 0) {
        free(data);
        return -ENOMEM;
    }

    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) &&
             EVP_DigestUpdate(ctx, dataset_ns, sizeof dataset_ns) &&
             EVP_DigestUpdate(ctx, data, len) && EVP_DigestFinal_ex(ctx, md, &mdlen) &&
             mdlen >= 16;
    EVP_MD_CTX_free(ctx);
    free(data);
    if (!ok) {
        bfs_err(REG_TAG, "SHA-1 digest failed");
        return -EIO;
    }
    md[6] = (md[6] & 0x0f) | 0x50;  /* version 5 */
    md[8] = (md[8] & 0x3f) | 0x80;  /* RFC 4122 variant */
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        id_out[2 * i] = hex[md[i] >> 4];
        id_out[2 * i + 1] = hex[md[i] & 15];
    }
    id_out[32] = '\0';
    return 0;
}

/* A dataset type as the database holds it now (the catalog snapshot may
 * predate it).  Strings are malloc'd; free with dtype_free. */
struct dtype_row {
    int64_t id, key;
    char *storage_class, *tags;
    char *calibs;  /* NULL when not a calibration type */
    const bfs_dimension *dims[BFS_MAX_DIMS];
    int ndims;
};

static void dtype_free(struct dtype_row *r)
{
    free(r->storage_class);
    free(r->tags);
    free(r->calibs);
}

static int dtype_load(bfs_registry *reg, const char *name, struct dtype_row *r)
{
    memset(r, 0, sizeof *r);
    db_stmt *st = reg_prepare(reg, "SELECT id, storage_class, dimensions_key, "
                                   "tag_association_table, calibration_association_table "
                                   "FROM dataset_type WHERE name = ?1");
    if (!st)
        return -EIO;
    db_bind_text(st, 1, name, -1);
    int rc = db_step(st);
    int ret = 0;
    if (rc == DB_ROW) {
        r->id = db_column_int64(st, 0);
        r->storage_class = strdup(db_column_text(st, 1));
        r->key = db_column_int64(st, 2);
        r->tags = strdup(db_column_text(st, 3));
        const char *calibs = db_column_text(st, 4);
        r->calibs = calibs ? strdup(calibs) : NULL;
        if (!r->storage_class || !r->tags || (calibs && !r->calibs))
            ret = -ENOMEM;
    } else {
        ret = rc == DB_DONE ? -ENOENT : rc;
    }
    db_reset(st);
    if (ret)
        return ret;

    st = reg_prepare(reg, "SELECT dimension_name FROM dimension_graph_definition "
                          "WHERE dimension_graph_id = ?1");
    if (!st)
        return -EIO;
    db_bind_int64(st, 1, r->key);
    while ((rc = db_step(st)) == DB_ROW && !ret) {
        const char *dn = db_column_text(st, 0);
        const bfs_dimension *d = dn ? bfs_registry_dimension_by_name(reg, dn) : NULL;
        if (!d || r->ndims >= BFS_MAX_DIMS) {
            bfs_err(REG_TAG, "dataset type %s: dimension %s is not in the universe", name,
                    dn ? dn : "(null)");
            ret = -EBADMSG;
        } else {
            r->dims[r->ndims++] = d;
        }
    }
    if (!ret && rc != DB_DONE)
        ret = rc;
    db_reset(st);
    qsort(r->dims, r->ndims, sizeof *r->dims, cmp_dim_index);
    return ret;
}

static int dtype_same(bfs_registry *reg, const char *name, const char *storage_class,
                      const bfs_dimension *const *dims, int n, bool is_calibration)
{
    struct dtype_row r;
    int ret = dtype_load(reg, name, &r);
    if (ret == -ENOENT)
        ret = 0;
    else if (ret == 0) {
        bool same = !strcmp(r.storage_class, storage_class) && (r.calibs != NULL) == is_calibration &&
                    r.ndims == n;
        for (int i = 0; same && i < n; i++)
            same = r.dims[i] == dims[i]; /* both in universe order */
        if (!same)
            bfs_info(REG_TAG, "dataset type %s exists with another definition", name);
        ret = same ? 1 : -EEXIST;
    }
    dtype_free(&r);
    return ret;
}

static int exec_bound(bfs_registry *reg, const char *sql, const char *what,
                      void (*bind)(db_stmt *, const void *), const void *ctx)
{
    db_stmt *st = reg_prepare(reg, sql);
    if (!st)
        return -EIO;
    bind(st, ctx);
    return step_done(st, what);
}

struct ds_ctx {
    const bfs_new_dataset *d;
    const struct dtype_row *dt;
    const char *id;
    int64_t run;
    int64_t ingest;
    const char *ingest_text;           /* instead, for a TIMESTAMP column: UTC text */
    const char *values[BFS_MAX_DIMS];  /* normalized, parallel to dt->dims */
    int64_t ivalues[BFS_MAX_DIMS];
    const char *datastore;             /* dataset_location.datastore_name */
    int gov_index;                     /* for bind_summary_gov */
};

static void bind_summary_dt(db_stmt *st, const void *p)
{
    const struct ds_ctx *c = p;
    db_bind_int64(st, 1, c->run);
    db_bind_int64(st, 2, c->dt->id);
}

static void bind_summary_gov(db_stmt *st, const void *p)
{
    const struct ds_ctx *c = p;
    db_bind_int64(st, 1, c->run);
    db_bind_text(st, 2, c->values[c->gov_index], -1);
}

static void bind_dataset(db_stmt *st, const void *p)
{
    const struct ds_ctx *c = p;
    db_bind_text(st, 1, c->id, -1);
    db_bind_int64(st, 2, c->dt->id);
    if (c->ingest_text)
        db_bind_text(st, 3, c->ingest_text, -1);
    else
        db_bind_int64(st, 3, c->ingest);
    db_bind_int64(st, 4, c->run);
}

static void bind_tags(db_stmt *st, const void *p)
{
    const struct ds_ctx *c = p;
    db_bind_int64(st, 1, c->dt->id);
    db_bind_text(st, 2, c->id, -1);
    db_bind_int64(st, 3, c->run);
    for (int i = 0; i < c->dt->ndims; i++) {
        if (c->dt->dims[i]->type == BFS_KEY_INT)
            db_bind_int64(st, 4 + i, c->ivalues[i]);
        else
            db_bind_text(st, 4 + i, c->values[i], -1);
    }
}

static void bind_record(db_stmt *st, const void *p)
{
    const struct ds_ctx *c = p;
    db_bind_text(st, 1, c->id, -1);
    db_bind_text(st, 2, c->d->path, -1);
    db_bind_text(st, 3, c->d->formatter, -1);
    db_bind_text(st, 4, c->d->storage_class ? c->d->storage_class : c->dt->storage_class, -1);
    /* daf_butler stores "no component" as this literal, not NULL, because
     * component is part of the primary key */
    db_bind_text(st, 5, "__NULL_STRING__", -1);
    bind_text_or_null(st, 6, c->d->checksum);
    db_bind_int64(st, 7, c->d->file_size);
}

static void bind_location(db_stmt *st, const void *p)
{
    const struct ds_ctx *c = p;
    db_bind_text(st, 1, c->datastore, -1);
    db_bind_text(st, 2, c->id, -1);
}

/* Match the caller's (name, value) pairs to the type's required dimensions;
 * integer values are re-printed in canonical decimal, as Python's str(int)
 * would give them for the id.  Names of other dimensions (implied values a
 * caller passes along) are ignored; names outside the universe are not. */
static int match_data_id(bfs_registry *reg, const bfs_new_dataset *d, struct ds_ctx *c,
                         char buf[BFS_MAX_DIMS][24])
{
    for (int i = 0; i < c->dt->ndims; i++)
        c->values[i] = NULL;
    for (int j = 0; j < d->ndims; j++) {
        if (!d->dim_names[j] || !d->dim_values[j])
            return -EINVAL;
        if (!bfs_registry_dimension_by_name(reg, d->dim_names[j])) {
            bfs_info(REG_TAG, "%s: unknown dimension %s", d->dataset_type, d->dim_names[j]);
            return -EINVAL;
        }
        for (int i = 0; i < c->dt->ndims; i++) {
            if (strcmp(c->dt->dims[i]->name, d->dim_names[j]))
                continue;
            if (c->values[i])
                return -EINVAL;  /* given twice */
            c->values[i] = d->dim_values[j];
            if (c->dt->dims[i]->type == BFS_KEY_INT) {
                if (!bfs_parse_i64(d->dim_values[j], &c->ivalues[i])) {
                    bfs_info(REG_TAG, "%s: %s=%s is not an integer", d->dataset_type,
                             d->dim_names[j], d->dim_values[j]);
                    return -EINVAL;
                }
                snprintf(buf[i], 24, "%lld", (long long)c->ivalues[i]);
                c->values[i] = buf[i];
            }
        }
    }
    for (int i = 0; i < c->dt->ndims; i++)
        if (!c->values[i]) {
            bfs_info(REG_TAG, "%s: no value for dimension %s", d->dataset_type,
                     c->dt->dims[i]->name);
            return -EINVAL;
        }
    return 0;
}

/* INSERT INTO <table> (cols) VALUES (?1..?n), table and columns quoted. */
static char *insert_sql(const db_conn *db, const char *table, const char *const *cols, int n,
                        const char *tail)
{
    char *sql = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&sql, &len);
    if (!f)
        return NULL;
    fputs("INSERT INTO ", f);
    put_ident(db, f, table);
    fputs(" (", f);
    put_cols(db, f, cols, n);
    fputs(") VALUES (", f);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s?%d", i ? ", " : "", i + 1);
    fprintf(f, ")%s", tail);
    if (fclose(f) != 0) {
        free(sql);
        return NULL;
    }
    return sql;
}

static int insert_dataset_rows(bfs_registry *reg, struct ds_ctx *c)
{
    const struct dtype_row *dt = c->dt;
    int ret = exec_bound(reg, "INSERT INTO collection_summary_dataset_type "
                              "(collection_id, dataset_type_id) VALUES (?1, ?2) "
                              "ON CONFLICT DO NOTHING",
                         "insert into collection_summary_dataset_type", bind_summary_dt, c);
    for (int i = 0; !ret && i < dt->ndims; i++) {
        struct dim_sql info;
        dim_sql_of(reg, dt->dims[i], &info);
        if (!info.governor)
            continue;
        char table[96];
        const char *cols[2] = {"collection_id", dt->dims[i]->name};
        snprintf(table, sizeof table, "collection_summary_%s", dt->dims[i]->name);
        char *sql = insert_sql(reg_db(reg), table, cols, 2, " ON CONFLICT DO NOTHING");
        c->gov_index = i;
        ret = sql ? exec_bound(reg, sql, sql, bind_summary_gov, c) : -ENOMEM;
        free(sql);
    }
    if (!ret)
        ret = exec_bound(reg, "INSERT INTO dataset (id, dataset_type_id, ingest_date, run_id) "
                              "VALUES (?1, ?2, ?3, ?4)",
                         "insert into dataset", bind_dataset, c);
    if (!ret) {
        const char *cols[3 + BFS_MAX_DIMS] = {"dataset_type_id", "dataset_id", "collection_id"};
        for (int i = 0; i < dt->ndims; i++)
            cols[3 + i] = dt->dims[i]->name;
        char *sql = insert_sql(reg_db(reg), dt->tags, cols, 3 + dt->ndims, "");
        ret = sql ? exec_bound(reg, sql, sql, bind_tags, c) : -ENOMEM;
        free(sql);
    }
    if (!ret) {
        static const char *const cols[] = {"dataset_id", "path", "formatter", "storage_class",
                                           "component", "checksum", "file_size"};
        char *sql = insert_sql(reg_db(reg), reg->records_table, cols, 7, "");
        ret = sql ? exec_bound(reg, sql, sql, bind_record, c) : -ENOMEM;
        free(sql);
    }
    if (!ret) {
        c->datastore = reg->datastore_name;
        ret = exec_bound(reg, "INSERT INTO dataset_location (datastore_name, dataset_id) "
                              "VALUES (?1, ?2)",
                         "insert into dataset_location", bind_location, c);
    }
    return ret;
}

int bfs_registry_add_dataset(bfs_registry *reg, const bfs_new_dataset *d, char id_out[33])
{
    if (!d || !d->dataset_type || !d->run || !d->path || !d->formatter || d->ndims < 0 ||
        d->ndims > BFS_MAX_DIMS || (d->ndims && (!d->dim_names || !d->dim_values)))
        return -EINVAL;
    struct wtx t;
    int ret = wtx_begin(reg, &t);
    if (ret)
        return ret;

    struct dtype_row dt;
    struct ds_ctx c = {.d = d, .dt = &dt};
    char buf[BFS_MAX_DIMS][24];
    char id[33];
    int type = 0;
    ret = dtype_load(reg, d->dataset_type, &dt);
    if (ret == -ENOENT)
        bfs_info(REG_TAG, "dataset type %s is not registered", d->dataset_type);
    if (!ret)
        ret = match_data_id(reg, d, &c, buf);
    if (!ret) {
        ret = collection_lookup(reg, d->run, &c.run, &type);
        if (!ret && type != BFS_COLL_RUN)
            ret = -EINVAL; /* a collection, but not one datasets can be written to */
        if (ret)
            bfs_info(REG_TAG, "%s: %s is not a RUN collection", d->dataset_type, d->run);
    }
    if (!ret && d->id) {
        bool hex = strlen(d->id) == 32;
        for (int i = 0; hex && i < 32; i++)
            hex = (d->id[i] >= '0' && d->id[i] <= '9') || (d->id[i] >= 'a' && d->id[i] <= 'f');
        ret = hex ? 0 : -EINVAL;
        memcpy(id, d->id, hex ? 33 : 0);
        c.id = hex ? id : NULL;
    } else if (!ret) {
        const char *names[BFS_MAX_DIMS];
        for (int i = 0; i < dt.ndims; i++)
            names[i] = dt.dims[i]->name;
        ret = bfs_dataset_id_v5(d->dataset_type, d->run, names, c.values, dt.ndims, id);
        c.id = id;
    }
    if (!ret) {
        db_stmt *st = reg_prepare(reg, "SELECT 1 FROM dataset WHERE id = ?1");
        ret = st ? 0 : -EIO;
        if (st) {
            db_bind_text(st, 1, id, -1);
            int rc = db_step(st);
            db_reset(st);
            if (rc == DB_ROW)
                ret = -EEXIST;
            else if (rc != DB_DONE)
                ret = rc;
        }
    }
    /* ingest_date: TAI ns (universe 6+ schemas, and any SQLite column), or
     * on PostgreSQL a TIMESTAMP (older daf_butler repositories): UTC text */
    int ts = atomic_load(&reg->ingest_ts);
    if (!ret && !ts) {
        int r = db_column_takes_timestamp(t.db, "dataset", "ingest_date");
        if (r < 0)
            ret = r;
        else
            atomic_store(&reg->ingest_ts, ts = r ? 2 : 1);
    }
    char when[40];
    if (!ret) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        c.ingest = bfs_unix_to_tai_ns(now.tv_sec, now.tv_nsec);
        struct tm tm;
        if (ts == 2 && gmtime_r(&now.tv_sec, &tm)) {
            size_t k = strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
            snprintf(when + k, sizeof when - k, ".%06ld", now.tv_nsec / 1000);
            c.ingest_text = when;
        }
        ret = insert_dataset_rows(reg, &c);
    }
    dtype_free(&dt);
    ret = wtx_end(&t, ret);
    if (id_out && (ret == 0 || ret == -EEXIST) && c.id)
        memcpy(id_out, id, 33);
    return ret;
}

/* ---- chains, tags and certifications --------------------------------------- */

/* A collection by name with the type the caller needs: -ENOENT when there is
 * none, -EINVAL when it has another type. */
static int collection_of_type(bfs_registry *reg, const char *name, bfs_collection_type want,
                              int64_t *id)
{
    int type = 0;
    int ret = collection_lookup(reg, name, id, &type);
    if (ret == -ENOENT)
        bfs_info(REG_TAG, "collection %s does not exist", name);
    if (!ret && type != (int)want) {
        bfs_info(REG_TAG, "collection %s has type %d, not %d", name, type, (int)want);
        ret = -EINVAL;
    }
    return ret;
}

/* Is target reachable from start through collection_chain (start itself
 * included)?  UNION keeps the walk finite even over a cyclic table. */
static int chain_reaches(bfs_registry *reg, int64_t start, int64_t target, bool *found)
{
    db_stmt *st = reg_prepare(reg, "WITH RECURSIVE r(id) AS (SELECT CAST(?1 AS BIGINT) UNION "
                                   "SELECT c.child FROM collection_chain AS c JOIN r ON c.parent = r.id) "
                                   "SELECT 1 FROM r WHERE id = ?2");
    if (!st)
        return -EIO;
    db_bind_int64(st, 1, start);
    db_bind_int64(st, 2, target);
    int rc = db_step(st);
    db_reset(st);
    if (rc != DB_ROW && rc != DB_DONE)
        return rc;
    *found = rc == DB_ROW;
    return 0;
}

int bfs_registry_set_chain(bfs_registry *reg, const char *parent, const char *const *children, int n)
{
    if (!parent || n < 0 || (n && !children))
        return -EINVAL;
    for (int i = 0; i < n; i++)
        if (!children[i])
            return -EINVAL;
    int64_t *ids = calloc(n ? (size_t)n : 1, sizeof *ids);
    if (!ids)
        return -ENOMEM;
    struct wtx t;
    int ret = wtx_begin(reg, &t);
    if (ret) {
        free(ids);
        return ret;
    }
    int64_t pid = 0;
    int m = 0;  /* children kept after dropping repeats */
    ret = collection_of_type(reg, parent, BFS_COLL_CHAINED, &pid);
    for (int i = 0; !ret && i < n; i++) {
        int64_t id = 0;
        int type = 0;
        ret = collection_lookup(reg, children[i], &id, &type);
        if (ret == -ENOENT)
            bfs_info(REG_TAG, "chain %s: child %s does not exist", parent, children[i]);
        bool seen = false;
        for (int j = 0; !ret && j < m; j++)
            seen |= ids[j] == id;
        if (ret || seen)
            continue;
        /* parent -> child -> ... -> parent would never end a search */
        bool loop = false;
        ret = chain_reaches(reg, id, pid, &loop);
        if (!ret && loop) {
            bfs_info(REG_TAG, "chain %s: child %s leads back to it", parent, children[i]);
            ret = -ELOOP;
        }
        ids[m++] = id;
    }
    db_stmt *st = NULL;
    if (!ret) {
        st = reg_prepare(reg, "DELETE FROM collection_chain WHERE parent = ?1");
        ret = st ? 0 : -EIO;
    }
    if (!ret) {
        db_bind_int64(st, 1, pid);
        ret = step_done(st, "delete from collection_chain");
    }
    for (int i = 0; !ret && i < m; i++) {
        st = reg_prepare(reg, "INSERT INTO collection_chain (parent, position, child) "
                              "VALUES (?1, ?2, ?3)");
        if (!st) {
            ret = -EIO;
            break;
        }
        db_bind_int64(st, 1, pid);
        db_bind_int64(st, 2, i);
        db_bind_int64(st, 3, ids[i]);
        ret = step_done(st, "insert into collection_chain");
    }
    free(ids);
    return wtx_end(&t, ret);
}

int bfs_registry_normalize_id(const char *in, char out[33])
{
    int n = 0;
    for (const char *p = in; p && *p; p++) {
        char ch = *p;
        if (ch == '-')
            continue;
        if (ch >= 'A' && ch <= 'F')
            ch = (char)(ch - 'A' + 'a');
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')) || n == 32)
            return -EINVAL;
        out[n++] = ch;
    }
    out[n] = '\0';
    return n == 32 ? 0 : -EINVAL;
}

/* What associate and certify need of an existing dataset: its type as the
 * database holds it now and its run, whose tag row carries its dataId. */
struct member {
    char id[33];
    int64_t coll;          /* the target collection */
    int64_t run;
    struct dtype_row dt;
    const char *table;     /* tag or calibration table being written */
    int gov;               /* dimension index, for member_summaries */
    int64_t begin, end;    /* validity, for certify */
};

static int member_load(bfs_registry *reg, const char *dataset_id, struct member *m)
{
    memset(&m->dt, 0, sizeof m->dt);
    if (!dataset_id || bfs_registry_normalize_id(dataset_id, m->id) < 0) {
        bfs_info(REG_TAG, "%s is not a dataset id", dataset_id ? dataset_id : "(null)");
        return -EINVAL;
    }
    db_stmt *st = reg_prepare(reg, "SELECT t.name, d.run_id FROM dataset AS d "
                                   "JOIN dataset_type AS t ON t.id = d.dataset_type_id "
                                   "WHERE d.id = ?1");
    if (!st)
        return -EIO;
    db_bind_text(st, 1, m->id, -1);
    int rc = db_step(st);
    char *name = NULL;
    int ret = 0;
    if (rc == DB_ROW) {
        name = strdup(db_column_text(st, 0));
        m->run = db_column_int64(st, 1);
        ret = name ? 0 : -ENOMEM;
    } else if (rc == DB_DONE) {
        bfs_info(REG_TAG, "dataset %s does not exist", m->id);
        ret = -ENOENT;
    } else {
        ret = rc;
    }
    db_reset(st);
    if (!ret)
        ret = dtype_load(reg, name, &m->dt);
    free(name);
    return ret;
}

static void bind_member_summary_dt(db_stmt *st, const void *p)
{
    const struct member *m = p;
    db_bind_int64(st, 1, m->coll);
    db_bind_int64(st, 2, m->dt.id);
}

/* ?1 target collection, ?2 dataset id, ?3 its run. */
static void bind_member_copy(db_stmt *st, const void *p)
{
    const struct member *m = p;
    db_bind_int64(st, 1, m->coll);
    db_bind_text(st, 2, m->id, -1);
    db_bind_int64(st, 3, m->run);
}

/* ?1 the dataset id, ?2 its run: its run's tag row. */
static void bind_member_run(db_stmt *st, const void *p)
{
    const struct member *m = p;
    db_bind_text(st, 1, m->id, -1);
    db_bind_int64(st, 2, m->run);
}

/* ?1 target collection, ?2 dataset id, ?3 ?4 the validity range. */
static void bind_member_validity(db_stmt *st, const void *p)
{
    const struct member *m = p;
    db_bind_int64(st, 1, m->coll);
    db_bind_text(st, 2, m->id, -1);
    db_bind_int64(st, 3, m->begin);
    db_bind_int64(st, 4, m->end);
}

/* ?1..?3 as bind_member_copy, ?4 ?5 the validity range. */
static void bind_member_span(db_stmt *st, const void *p)
{
    const struct member *m = p;
    bind_member_copy(st, p);
    db_bind_int64(st, 4, m->begin);
    db_bind_int64(st, 5, m->end);
}

/* Summaries of the target collection: the dataset type, and the governor
 * values of the dataset's dataId (read from its run's tag row).  Written
 * before the member row, whose foreign keys point at them. */
static int member_summaries(bfs_registry *reg, struct member *m)
{
    const db_conn *db = reg_db(reg);
    int ret = exec_bound(reg, "INSERT INTO collection_summary_dataset_type "
                              "(collection_id, dataset_type_id) VALUES (?1, ?2) "
                              "ON CONFLICT DO NOTHING",
                         "insert into collection_summary_dataset_type", bind_member_summary_dt, m);
    for (int i = 0; !ret && i < m->dt.ndims; i++) {
        struct dim_sql info;
        dim_sql_of(reg, m->dt.dims[i], &info);
        if (!info.governor)
            continue;
        char *sql = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&sql, &len);
        if (!f)
            return -ENOMEM;
        char table[96];
        snprintf(table, sizeof table, "collection_summary_%s", m->dt.dims[i]->name);
        fputs("INSERT INTO ", f);
        put_ident(db, f, table);
        fputs(" (collection_id, ", f);
        put_ident(db, f, m->dt.dims[i]->name);
        fputs(") SELECT ?1, ", f);
        put_ident(db, f, m->dt.dims[i]->name);
        fputs(" FROM ", f);
        put_ident(db, f, m->dt.tags);
        /* the WHERE also settles SQLite's INSERT ... SELECT ... ON CONFLICT parse */
        fputs(" WHERE dataset_id = ?2 AND collection_id = ?3 ON CONFLICT DO NOTHING", f);
        if (fclose(f) != 0) {
            free(sql);
            return -ENOMEM;
        }
        ret = exec_bound(reg, sql, sql, bind_member_copy, m);
        free(sql);
    }
    return ret;
}

/* INSERT INTO <m->table> (dataset_type_id, dataset_id, collection_id, dims
 * [, timespan]) SELECT ... FROM the run's tag row, for associate (span
 * false) and certify (span true). */
static int member_insert(bfs_registry *reg, struct member *m, bool span)
{
    const db_conn *db = reg_db(reg);
    char *cols = span ? db_sql_span_columns(db, "") : NULL;
    char *vals = span ? db_sql_span_values(db, "?4", "?5") : NULL;
    char *sql = NULL;
    size_t len = 0;
    FILE *f = !span || (cols && vals) ? open_memstream(&sql, &len) : NULL;
    if (!f) {
        free(cols);
        free(vals);
        return -ENOMEM;
    }
    fputs("INSERT INTO ", f);
    put_ident(db, f, m->table);
    fputs(" (dataset_type_id, dataset_id, collection_id", f);
    for (int i = 0; i < m->dt.ndims; i++) {
        fputs(", ", f);
        put_ident(db, f, m->dt.dims[i]->name);
    }
    if (span)
        fprintf(f, ", %s", cols);
    fputs(") ", f);
    fputs("SELECT dataset_type_id, dataset_id, ?1", f);
    for (int i = 0; i < m->dt.ndims; i++) {
        fputs(", ", f);
        put_ident(db, f, m->dt.dims[i]->name);
    }
    if (span)
        fprintf(f, ", %s", vals);
    fputs(" FROM ", f);
    put_ident(db, f, m->dt.tags);
    fputs(" WHERE dataset_id = ?2 AND collection_id = ?3 ON CONFLICT DO NOTHING", f);
    free(cols);
    free(vals);
    if (fclose(f) != 0) {
        free(sql);
        return -ENOMEM;
    }
    int ret = exec_bound(reg, sql, sql, span ? bind_member_span : bind_member_copy, m);
    free(sql);
    return ret;
}

/* 1 when the statement (bound by bind) yields a row, 0 when not. */
static int exists_bound(bfs_registry *reg, const char *sql, void (*bind)(db_stmt *, const void *),
                        const void *ctx)
{
    db_stmt *st = reg_prepare(reg, sql);
    if (!st)
        return -EIO;
    bind(st, ctx);
    int rc = db_step(st);
    db_reset(st);
    if (rc == DB_ROW)
        return 1;
    return rc == DB_DONE ? 0 : rc;
}

/* SELECT 1 FROM <table> WHERE <where>, table quoted; caller frees. */
static char *select_one_sql(const db_conn *db, const char *table, const char *where)
{
    char *sql = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&sql, &len);
    if (!f)
        return NULL;
    fputs("SELECT 1 FROM ", f);
    put_ident(db, f, table);
    fprintf(f, " WHERE %s", where);
    if (fclose(f) != 0) {
        free(sql);
        return NULL;
    }
    return sql;
}

/* ---- removing datasets ---------------------------------------------------- */

static void bind_id(db_stmt *st, const void *p)
{
    db_bind_text(st, 1, p, -1);
}

int bfs_registry_has_dataset(bfs_registry *reg, const char *dataset_id)
{
    char id[33];
    if (!dataset_id || bfs_registry_normalize_id(dataset_id, id) < 0)
        return -EINVAL;
    return exists_bound(reg, "SELECT 1 FROM dataset WHERE id = ?1", bind_id, id);
}

int bfs_registry_path_referenced(bfs_registry *reg, const char *path)
{
    if (!path)
        return -EINVAL;
    db_conn *db = reg_db(reg);
    if (!db)
        return -EIO;
    char *sql = select_one_sql(db, reg->records_table, "path = ?1");
    int ret = sql ? exists_bound(reg, sql, bind_id, path) : -ENOMEM;
    free(sql);
    return ret;
}

int bfs_registry_remove_dataset(bfs_registry *reg, const char *dataset_id)
{
    char id[33];
    if (!dataset_id || bfs_registry_normalize_id(dataset_id, id) < 0)
        return -EINVAL;
    struct wtx t;
    int ret = wtx_begin(reg, &t);
    if (ret)
        return ret;
    ret = exec_bound(reg, "DELETE FROM dataset_location WHERE dataset_id = ?1", "delete from dataset_location",
                     bind_id, id);
    if (!ret) {
        char *sql = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&sql, &len);
        if (f) {
            fputs("DELETE FROM ", f);
            put_ident(t.db, f, reg->records_table);
            fputs(" WHERE dataset_id = ?1", f);
        }
        ret = f && fclose(f) == 0 ? exec_bound(reg, sql, "delete file records", bind_id, id) : -ENOMEM;
        free(sql);
    }
    if (!ret) {
        ret = exec_bound(reg, "DELETE FROM dataset WHERE id = ?1", "delete from dataset", bind_id, id);
        if (ret == -ENOENT) /* step_done's word for a foreign key: a row that does not cascade refers to it */
            ret = -EBUSY;
        if (!ret && db_changes(reg_db(reg)) == 0)
            ret = -ENOENT;
    }
    return wtx_end(&t, ret);
}

/* 1 when the dataset's run holds its tag row (always, in a sound registry). */
static int member_has_run_row(bfs_registry *reg, struct member *m)
{
    char *sql = select_one_sql(reg_db(reg), m->dt.tags, "dataset_id = ?1 AND collection_id = ?2");
    int r = sql ? exists_bound(reg, sql, bind_member_run, m) : -ENOMEM;
    free(sql);
    if (r == 0)
        bfs_err(REG_TAG, "dataset %s has no row for its run in %s", m->id, m->dt.tags);
    return r;
}

int bfs_registry_associate(bfs_registry *reg, const char *tagged, const char *dataset_id)
{
    if (!tagged)
        return -EINVAL;
    struct wtx t;
    int ret = wtx_begin(reg, &t);
    if (ret)
        return ret;
    struct member m = {0};
    ret = collection_of_type(reg, tagged, BFS_COLL_TAGGED, &m.coll);
    if (!ret)
        ret = member_load(reg, dataset_id, &m);
    if (!ret) {
        int has = member_has_run_row(reg, &m);
        ret = has < 0 ? has : has ? 0 : -ENOENT;
    }
    m.table = m.dt.tags;
    if (!ret)
        ret = member_summaries(reg, &m);
    if (!ret)
        ret = member_insert(reg, &m, false);
    if (!ret && db_changes(reg_db(reg)) == 0) {
        /* nothing inserted: already a member (fine), or the dataId is taken
         * by another dataset of the type (the table's unique constraint) */
        char *sql = select_one_sql(t.db, m.dt.tags, "dataset_id = ?2 AND collection_id = ?1");
        int member = sql ? exists_bound(reg, sql, bind_member_copy, &m) : -ENOMEM;
        free(sql);
        ret = member < 0 ? member : 0;
        if (member == 0) {
            bfs_info(REG_TAG, "%s: another dataset of the type of %s has its dataId there",
                     tagged, m.id);
            ret = -EEXIST;
        }
    }
    dtype_free(&m.dt);
    return wtx_end(&t, ret);
}

int bfs_registry_certify(bfs_registry *reg, const char *calib, const char *dataset_id,
                         int64_t begin_tai_ns, int64_t end_tai_ns)
{
    if (!calib || begin_tai_ns >= end_tai_ns)
        return -EINVAL;
    struct wtx t;
    int ret = wtx_begin(reg, &t);
    if (ret)
        return ret;
    struct member m = {.begin = begin_tai_ns, .end = end_tai_ns};
    ret = collection_of_type(reg, calib, BFS_COLL_CALIBRATION, &m.coll);
    if (!ret)
        ret = member_load(reg, dataset_id, &m);
    if (!ret && !m.dt.calibs) {
        bfs_info(REG_TAG, "dataset %s: its type is not a calibration type", m.id);
        ret = -EINVAL;
    }
    if (!ret) {
        int has = member_has_run_row(reg, &m);
        ret = has < 0 ? has : has ? 0 : -ENOENT;
    }
    m.table = m.dt.calibs;
    int same = 0;
    if (!ret) {
        char *span = db_sql_span_same(t.db, "", "?3", "?4");
        char *where = span ? bfs_asprintf("dataset_id = ?2 AND collection_id = ?1 AND %s", span) : NULL;
        char *sql = where ? select_one_sql(t.db, m.dt.calibs, where) : NULL;
        same = sql ? exists_bound(reg, sql, bind_member_validity, &m) : -ENOMEM;
        free(span);
        free(where);
        free(sql);
        if (same < 0)
            ret = same;
    }
    if (!ret && !same) {
        /* An overlapping range for the same dataId (half-open ranges, as the
         * Butler's Timespan), whichever dataset it certifies. */
        char *overlaps = db_sql_span_overlaps(t.db, "c", "?4", "?5");
        char *sql = NULL;
        size_t len = 0;
        FILE *f = overlaps ? open_memstream(&sql, &len) : NULL;
        if (f) {
            fputs("SELECT 1 FROM ", f);
            put_ident(t.db, f, m.dt.calibs);
            fputs(" AS c JOIN ", f);
            put_ident(t.db, f, m.dt.tags);
            fputs(" AS r ON r.dataset_id = ?2 AND r.collection_id = ?3 "
                  "WHERE c.dataset_type_id = r.dataset_type_id AND c.collection_id = ?1", f);
            for (int i = 0; i < m.dt.ndims; i++) {
                fputs(" AND c.", f);
                put_ident(t.db, f, m.dt.dims[i]->name);
                fputs(" = r.", f);
                put_ident(t.db, f, m.dt.dims[i]->name);
            }
            fprintf(f, " AND %s", overlaps);
        }
        free(overlaps);
        if (!f || fclose(f) != 0) {
            ret = -ENOMEM;
        } else {
            int overlap = exists_bound(reg, sql, bind_member_span, &m);
            if (overlap < 0)
                ret = overlap;
            else if (overlap) {
                bfs_info(REG_TAG, "%s: dataset %s: a certification overlapping that range "
                                  "exists for its dataId", calib, m.id);
                ret = -EEXIST;
            }
        }
        free(sql);
        if (!ret)
            ret = member_summaries(reg, &m);
        if (!ret)
            ret = member_insert(reg, &m, true);
        if (!ret && db_changes(reg_db(reg)) != 1)
            ret = -EIO;  /* the run row was there a moment ago, in this transaction */
    }
    dtype_free(&m.dt);
    return wtx_end(&t, ret);
}

struct bfs_checksum {
    EVP_MD_CTX *md;
};

bfs_checksum *bfs_checksum_new(void)
{
    bfs_checksum *c = calloc(1, sizeof *c);
    if (c && (!(c->md = EVP_MD_CTX_new()) || EVP_DigestInit_ex(c->md, EVP_blake2b512(), NULL) != 1)) {
        bfs_checksum_free(c);
        c = NULL;
    }
    return c;
}

void bfs_checksum_free(bfs_checksum *c)
{
    if (c) {
        EVP_MD_CTX_free(c->md);
        free(c);
    }
}

int bfs_checksum_update(bfs_checksum *c, const void *buf, size_t len)
{
    return EVP_DigestUpdate(c->md, buf, len) == 1 ? 0 : -ENOMEM;
}

static int checksum_chunk(void *ctx, const void *data, size_t n)
{
    return bfs_checksum_update(ctx, data, n);
}

int bfs_checksum_add(bfs_checksum *c, int fd, int64_t from, int64_t size, void *buf, size_t buflen)
{
    return bfs_pread_chunks(fd, from, size, buf, buflen, checksum_chunk, c);
}

int bfs_checksum_hex(bfs_checksum *c, char out[129])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_DigestFinal_ex(c->md, md, &mdlen) != 1 || mdlen != 64)
        return -EIO;
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

int bfs_file_checksum(int fd, int64_t size, char out[129])
{
    bfs_checksum *c = bfs_checksum_new();
    int ret = c ? bfs_checksum_add(c, fd, 0, size, NULL, 0) : -ENOMEM;
    if (ret == 0)
        ret = bfs_checksum_hex(c, out);
    bfs_checksum_free(c);
    return ret;
}
