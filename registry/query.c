/*
 * query.c - the queries behind directory listings and file lookups.
 *
 * Every query is built from what the schema stores: the dataset type's tag
 * and calibration table names, its required dimensions (one column each,
 * quoted because "group" is a reserved word) and the datastore records
 * table named in butler.yaml.  A collection is first flattened into its
 * leaf collections in search order (chains expanded depth-first, a
 * collection reached twice keeps its first position); RUN and TAGGED
 * members are found in the tag table, CALIBRATION members in the
 * calibration table.
 *
 * Find-first across a chain is done in C on rows ordered by dataId and then
 * by search position: the first position seen for a dataId wins and rows
 * from later positions are dropped.  This keeps one SQL statement per
 * listing whatever the chain length.
 *
 * Parameters are numbered (?1, ?2...) as they are written, so one SELECT
 * per table joined by UNION binds in the order the text was built.
 */
#include "registry_i.h"

#include "log.h"
#include "strutil.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LEAVES 4096

struct leaves {
    int n;
    int64_t id[MAX_LEAVES];
    bool calib[MAX_LEAVES];
};

/* A set of collections (by address, within one catalog snapshot): open
 * addressing, NULL for an empty slot, grown at half full. */
struct coll_set {
    const bfs_collection **slot;
    size_t cap, n;
};

static size_t coll_hash(const bfs_collection *c, size_t cap)
{
    return (size_t)(((uintptr_t)c >> 4) * UINT64_C(0x9E3779B97F4A7C15) >> 17) & (cap - 1);
}

/* 1 when c was added, 0 when it was there already, -ENOMEM. */
static int coll_set_add(struct coll_set *s, const bfs_collection *c)
{
    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        const bfs_collection **slot = calloc(cap, sizeof *slot);
        if (!slot)
            return -ENOMEM;
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->slot[i])
                continue;
            size_t h = coll_hash(s->slot[i], cap);
            while (slot[h])
                h = (h + 1) & (cap - 1);
            slot[h] = s->slot[i];
        }
        free(s->slot);
        s->slot = slot;
        s->cap = cap;
    }
    size_t h = coll_hash(c, s->cap);
    while (s->slot[h]) {
        if (s->slot[h] == c)
            return 0;
        h = (h + 1) & (s->cap - 1);
    }
    s->slot[h] = c;
    s->n++;
    return 1;
}

/* The leaves of c in search order: chains expanded depth-first, each
 * collection visited once (a sub-chain shared by several paths, or a leaf
 * reached twice, keeps its first position), so the cost is one visit per
 * collection and chain row.  Iterative, so a deep chain cannot exhaust the
 * stack.  0, -ELOOP under a cyclic chain (marked when the catalog loaded),
 * -ENOMEM. */
static int flatten(const bfs_collection *c, struct leaves *out)
{
    struct frame {
        const bfs_collection *c;
        int next;
    } *stack = NULL;
    size_t top = 0, cap = 0;
    struct coll_set seen = {0};
    int ret = c->cyclic ? -ELOOP : coll_set_add(&seen, c);
    if (ret > 0 && c->type == BFS_COLL_CHAINED) {
        cap = 16;
        if ((stack = malloc(cap * sizeof *stack)))
            stack[top++] = (struct frame){c, 0};
        else
            ret = -ENOMEM;
    } else if (ret > 0 && out->n < MAX_LEAVES) {
        out->id[out->n] = c->id;
        out->calib[out->n++] = c->type == BFS_COLL_CALIBRATION;
    }
    while (ret >= 0 && top) {
        struct frame *f = &stack[top - 1];
        if (f->next == f->c->n_children) {
            top--;
            continue;
        }
        const bfs_collection *kid = f->c->children[f->next++];
        if (kid->cyclic) {
            ret = -ELOOP; /* not reached when the root is not cyclic; stay safe anyway */
            break;
        }
        if ((ret = coll_set_add(&seen, kid)) <= 0)
            continue;
        if (kid->type != BFS_COLL_CHAINED) {
            if (out->n < MAX_LEAVES) {
                out->id[out->n] = kid->id;
                out->calib[out->n++] = kid->type == BFS_COLL_CALIBRATION;
            }
            continue;
        }
        if (top == cap) {
            struct frame *bigger = realloc(stack, 2 * cap * sizeof *stack);
            if (!bigger) {
                ret = -ENOMEM;
                break;
            }
            stack = bigger;
            cap *= 2;
        }
        stack[top++] = (struct frame){kid, 0};
    }
    free(stack);
    free(seen.slot);
    return ret < 0 ? ret : 0;
}

/* SQL text builder over open_memstream; nparam numbers the parameters. */
struct sql {
    char *text;
    size_t len;
    FILE *f;
    int nparam;
};

static void sql_init(struct sql *q)
{
    q->text = NULL, q->len = 0, q->nparam = 0, q->f = open_memstream(&q->text, &q->len);
}

/* The next parameter, "?<n>". */
static void sql_param(struct sql *q) { fprintf(q->f, "?%d", ++q->nparam); }
static char *sql_finish(struct sql *q)
{
    if (!q->f)
        return NULL;
    fclose(q->f);
    q->f = NULL;
    return q->text;
}

static void sql_ident(struct sql *q, const char *name)
{
    fputc('"', q->f);
    for (const char *p = name; *p; p++) {
        if (*p == '"')
            fputc('"', q->f);
        fputc(*p, q->f);
    }
    fputc('"', q->f);
}

/* " AND collection_id IN (1,2,3)" over leaves of one kind; false when none. */
static bool sql_collections(struct sql *q, const struct leaves *l, bool calib)
{
    int n = 0;
    for (int i = 0; i < l->n; i++) {
        if (l->calib[i] != calib)
            continue;
        fprintf(q->f, "%s%lld", n ? "," : " AND collection_id IN (", (long long)l->id[i]);
        n++;
    }
    if (n)
        fputc(')', q->f);
    return n > 0;
}

/* Bind a dimension value with the dimension's key type.  false when the text
 * cannot be a value of that type (then nothing can match). */
static bool bind_value(db_stmt *st, int idx, const bfs_dimension *dim, const char *value)
{
    if (dim->type == BFS_KEY_INT) {
        int64_t v;
        if (!bfs_parse_i64(value, &v))
            return false;
        return db_bind_int64(st, idx, v) == 0;
    }
    return db_bind_text(st, idx, value, -1) == 0;
}

/* " AND <alias>"dim" = ?<n>" for each constrained value. */
static void sql_constraints(struct sql *q, const char *alias, const bfs_dataset_type *dt, const char *const values[])
{
    for (int i = 0; i < dt->ndims; i++) {
        if (!values || !values[i])
            continue;
        fprintf(q->f, " AND %s", alias);
        sql_ident(q, dt->dims[i]->name);
        fputs(" = ", q->f);
        sql_param(q);
    }
}

/* Bind dataset_type_id and the constraints of one SELECT starting at idx.
 * Returns the next index, or 0 when a value cannot match its type. */
static int bind_select(db_stmt *st, int idx, const bfs_dataset_type *dt, const char *const values[])
{
    db_bind_int64(st, idx++, dt->id);
    for (int i = 0; i < dt->ndims; i++) {
        if (!values || !values[i])
            continue;
        if (!bind_value(st, idx++, dt->dims[i], values[i]))
            return 0;
    }
    return idx;
}

static const char *table_of(const bfs_dataset_type *dt, bool calib)
{
    return calib ? dt->calibs_table : dt->tags_table;
}

/* Does the flattened collection have leaves whose members live in this table? */
static bool has_leaves(const bfs_dataset_type *dt, const struct leaves *l, bool calib)
{
    if (!table_of(dt, calib))
        return false;
    for (int i = 0; i < l->n; i++)
        if (l->calib[i] == calib)
            return true;
    return false;
}

/* One query over a dataset type in a flattened collection: a SELECT per
 * table that holds members (tags for RUN/TAGGED, calibrations for
 * CALIBRATION), joined by UNION or UNION ALL, then a tail (ORDER BY ...). */
struct union_query {
    bfs_registry *reg;
    const bfs_dataset_type *dt;
    const char *const *values;
    const struct leaves *l;
    int k;          /* the dimension being listed, for list_values */
    const char *span; /* a calibration's validity columns, for find_files */
    char *text;     /* the SQL; freed by union_done */
};

/* Write the SELECT over one table; its parameters must be dataset_type_id
 * then the constrained values, as bind_select binds them. */
typedef void (*select_writer)(struct sql *q, const struct union_query *u, bool calib);

/* Build, prepare and bind.  Returns the statement, or NULL with *err 0
 * when nothing can match (no table, or a value of the wrong type) and
 * -errno on failure. */
static db_stmt *union_prepare(struct union_query *u, const char *joiner, select_writer w,
                                   const char *tail, int *err)
{
    struct sql q;
    bool parts[2] = {false, false};
    int nparts = 0;
    *err = 0;
    sql_init(&q);
    for (int calib = 0; calib < 2; calib++) {
        if (!has_leaves(u->dt, u->l, calib))
            continue;
        if (nparts++)
            fputs(joiner, q.f);
        w(&q, u, calib);
        parts[calib] = true;
    }
    fputs(tail, q.f);
    u->text = sql_finish(&q);
    if (!u->text) {
        *err = -ENOMEM;
        return NULL;
    }
    if (!nparts)
        return NULL;
    db_stmt *st = reg_prepare(u->reg, u->text);
    if (!st) {
        *err = -EIO;
        return NULL;
    }
    int idx = 1;
    for (int calib = 0; calib < 2 && idx; calib++)
        if (parts[calib])
            idx = bind_select(st, idx, u->dt, u->values);
    if (!idx) {
        db_reset(st);
        return NULL;
    }
    return st;
}

/* Finish a query: the step loop's last answer becomes 0 or -errno (logged
 * by the engine). */
static int union_done(struct union_query *u, db_stmt *st, int rc, int ret)
{
    if (ret == 0 && rc < 0)
        ret = rc;
    if (st)
        db_reset(st);
    free(u->text);
    u->text = NULL;
    return ret;
}

/* " ORDER BY" the dimensions values[] leaves free, for a probe (LIMIT 1)
 * of a tags table whose members live in one collection, when the given
 * values are the first dimensions.  The rows of one collection are in its
 * unique index (dataset_type_id, collection_id, dimensions...) in that
 * order, so the index answers at its first entry; without an order
 * PostgreSQL's planner expects a sequential scan to meet a matching row at
 * once when its statistics say most rows match (one RUN in the table),
 * which reads the whole table when none does.  Left unordered: several
 * collections (the index's order then holds per collection only, and an
 * ORDER BY would sort every matching row), and given values after a free
 * dimension (not a prefix of the index: the order would make the planner
 * read the index past every row of the free dimension's first values
 * instead of using an index that starts with the given ones). */
static void sql_probe_order(struct sql *q, const struct union_query *u, bool calib)
{
    int leaves = 0, first_free = u->dt->ndims;
    for (int i = 0; i < u->l->n; i++)
        leaves += u->l->calib[i] == calib;
    if (calib || leaves != 1)
        return;
    for (int i = 0; i < u->dt->ndims; i++) {
        bool given = u->values && u->values[i];
        if (given && first_free < i)
            return; /* a given value after a free dimension */
        if (!given && first_free > i)
            first_free = i;
    }
    for (int i = first_free; i < u->dt->ndims; i++) {
        fputs(i == first_free ? " ORDER BY " : ", ", q->f);
        sql_ident(q, u->dt->dims[i]->name);
    }
}

static void write_has(struct sql *q, const struct union_query *u, bool calib)
{
    fputs("SELECT 1 FROM (SELECT 1 AS one FROM ", q->f);
    sql_ident(q, table_of(u->dt, calib));
    fputs(" WHERE dataset_type_id = ", q->f);
    sql_param(q);
    sql_collections(q, u->l, calib);
    sql_probe_order(q, u, calib);
    fputs(" LIMIT 1) AS probe", q->f);
}

int bfs_registry_collection_has(bfs_registry *reg, const bfs_collection *c, const bfs_dataset_type *dt)
{
    struct leaves *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    int ret = flatten(c, l);
    if (ret < 0) {
        free(l);
        return ret;
    }
    struct union_query u = {.reg = reg, .dt = dt, .l = l};
    int rc = DB_DONE;
    db_stmt *st = union_prepare(&u, " UNION ALL ", write_has, " LIMIT 1", &ret);
    if (st && (rc = db_step(st)) == DB_ROW)
        ret = 1;
    ret = union_done(&u, st, rc, ret);
    free(l);
    return ret;
}

int bfs_registry_dataset_types_in(bfs_registry *reg, const bfs_collection *c, bfs_dtype_cb cb, void *ctx)
{
    const bfs_catalog *cat = bfs_registry_catalog(reg);
    struct leaves *l = calloc(1, sizeof *l);
    bool *candidate = calloc(cat->ndataset_types + 1, sizeof *candidate);
    int ret = 0;
    if (!l || !candidate) {
        free(l);
        free(candidate);
        return -ENOMEM;
    }
    if ((ret = flatten(c, l)) < 0) {
        free(l);
        free(candidate);
        return ret;
    }
    /* Candidates from the summary table; if it cannot be read, every type is one. */
    struct sql q;
    sql_init(&q);
    fputs("SELECT DISTINCT dataset_type_id FROM collection_summary_dataset_type WHERE collection_id IN (", q.f);
    for (int i = 0; i < l->n; i++)
        fprintf(q.f, "%s%lld", i ? "," : "", (long long)l->id[i]);
    fputs(")", q.f);
    char *text = sql_finish(&q);
    bool any = l->n > 0;
    db_stmt *st = any && text ? reg_prepare(reg, text) : NULL;
    if (any && st) {
        while (db_step(st) == DB_ROW) {
            int64_t id = db_column_int64(st, 0);
            for (size_t i = 0; i < cat->ndataset_types; i++)
                if (cat->dataset_types[i].id == id)
                    candidate[i] = true;
        }
        db_reset(st);
    } else if (any) {
        for (size_t i = 0; i < cat->ndataset_types; i++)
            candidate[i] = true;
    }
    free(text);
    for (size_t i = 0; i < cat->ndataset_types && ret == 0; i++) {
        if (!candidate[i])
            continue;
        int has = bfs_registry_collection_has(reg, c, &cat->dataset_types[i]);
        if (has < 0)
            ret = has;
        else if (has)
            ret = cb(ctx, &cat->dataset_types[i]);
    }
    free(candidate);
    free(l);
    return ret;
}

/* " FROM <table> WHERE dataset_type_id = ?first AND collection_id IN (...)
 * AND <fixed dims> = ?first+1 ...", numbered from first, so that the same
 * filter can be written twice with the same parameters. */
static void sql_value_filter(struct sql *q, const struct union_query *u, bool calib, int first)
{
    int n = first;
    fputs(" FROM ", q->f);
    sql_ident(q, table_of(u->dt, calib));
    fprintf(q->f, " WHERE dataset_type_id = ?%d", n++);
    sql_collections(q, u->l, calib);
    for (int i = 0; i < u->dt->ndims; i++) {
        if (!u->values || !u->values[i])
            continue;
        fputs(" AND ", q->f);
        sql_ident(q, u->dt->dims[i]->name);
        fprintf(q->f, " = ?%d", n++);
    }
    q->nparam = n - 1;
}

/* The distinct values of dimension k.  SELECT DISTINCT reads every row
 * that matches, which for the first levels of a dataset type is the whole
 * tags table (a million rows to list 189 detectors).  For a tags table the
 * values are found by walking its unique index (dataset_type_id,
 * collection_id, dimensions...) instead: each step asks for the smallest
 * value above the last one, one index probe per distinct value (a skip
 * scan, written as a recursive CTE, which both engines run from the index).
 * Calibration tables have no such index and stay small: DISTINCT. */
static void write_values(struct sql *q, const struct union_query *u, bool calib)
{
    const char *col = u->dt->dims[u->k]->name;
    int first = q->nparam + 1;
    if (calib) {
        fputs("SELECT DISTINCT ", q->f);
        sql_ident(q, col);
        sql_value_filter(q, u, calib, first);
        return;
    }
    if (u->values && u->values[u->k]) {
        /* the value is given (does it exist?): one probe, no walk; a walk's
         * step "col > s.v" next to "col = ?" made PostgreSQL's planner
         * expect a row at once and scan the whole table for none */
        fputs("SELECT v FROM (SELECT ", q->f);
        sql_ident(q, col);
        fputs(" AS v", q->f);
        sql_value_filter(q, u, calib, first);
        sql_probe_order(q, u, calib);
        fputs(" LIMIT 1) AS probe", q->f);
        return;
    }
    /* "ORDER BY col LIMIT 1" rather than min(col): PostgreSQL's planner
     * took a sequential scan for min() with a bound below it */
    fputs("SELECT v FROM (WITH RECURSIVE s(v) AS (SELECT (SELECT ", q->f);
    sql_ident(q, col);
    sql_value_filter(q, u, calib, first);
    fputs(" ORDER BY 1 LIMIT 1) UNION ALL SELECT (SELECT ", q->f);
    sql_ident(q, col);
    sql_value_filter(q, u, calib, first);
    fputs(" AND ", q->f);
    sql_ident(q, col);
    fputs(" > s.v ORDER BY 1 LIMIT 1) FROM s WHERE s.v IS NOT NULL) SELECT v FROM s WHERE v IS NOT NULL) AS walk",
          q->f);
}

int bfs_registry_list_values(bfs_registry *reg, const bfs_collection *c, const bfs_dataset_type *dt,
                             const char *const values[], int k, bfs_value_cb cb, void *ctx)
{
    if (k < 0 || k >= dt->ndims)
        return -EINVAL;
    struct leaves *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    int ret = flatten(c, l);
    if (ret < 0) {
        free(l);
        return ret;
    }
    struct union_query u = {.reg = reg, .dt = dt, .values = values, .l = l, .k = k};
    int rc = DB_DONE;
    db_stmt *st = union_prepare(&u, " UNION ", write_values, " ORDER BY 1", &ret);
    while (st && (rc = db_step(st)) == DB_ROW) {
        const char *v = db_column_text(st, 0);
        if (v && (ret = cb(ctx, v)) != 0)
            break;
    }
    ret = union_done(&u, st, rc, ret);
    free(l);
    return ret;
}

/* ingest_date: TAI nanoseconds (new schemas) or a UTC TIMESTAMP text (old). */
static int64_t ingest_unix(db_stmt *st, int col)
{
    if (db_column_type(st, col) == DB_INTEGER)
        return bfs_tai_ns_to_unix(db_column_int64(st, col));
    const char *t = db_column_text(st, col);
    struct tm tm = {0};
    /* Field widths keep sscanf's conversions in range (an out-of-range %d
     * is undefined), and each field is checked before any arithmetic: a
     * damaged row gives 0, as an unreadable one does. */
    if (!t || sscanf(t, "%4d-%2d-%2d%*[ T]%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
        return 0;
    if (tm.tm_year < 1 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
        tm.tm_hour < 0 || tm.tm_hour > 23 || tm.tm_min < 0 || tm.tm_min > 59 || tm.tm_sec < 0 ||
        tm.tm_sec > 60)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

/* The files of the datasets that match: tags (or calibration) rows joined
 * with their dataset row and their records.  For a partial dataId whose
 * datasets are a large share of the dataset table PostgreSQL's planner may
 * hash the dataset table (a sequential scan) rather than probe its primary
 * key per row; measured (docs/performance.md, bench/explain_pg.sh) it is
 * its break-even choice, and it probes once the table is larger than the
 * answer.  Correlated subqueries (always probes) were slower: two probes
 * per row, run serially above a parallel plan. */
static void write_files(struct sql *q, const struct union_query *u, bool calib)
{
    const bfs_dataset_type *dt = u->dt;
    fputs("SELECT t.dataset_id, t.collection_id, d.run_id, d.ingest_date, r.component, r.path,"
          " r.file_size, r.checksum, ", q->f);
    fputs(calib ? u->span : "NULL, NULL", q->f);
    fputs(", CASE t.collection_id", q->f);
    for (int i = 0; i < u->l->n; i++)
        if (u->l->calib[i] == calib)
            fprintf(q->f, " WHEN %lld THEN %d", (long long)u->l->id[i], i);
    fputs(" END AS pos", q->f);
    for (int i = 0; i < dt->ndims; i++) {
        fputs(", t.", q->f);
        sql_ident(q, dt->dims[i]->name);
        fprintf(q->f, " AS v%d", i);
    }
    fputs(" FROM ", q->f);
    sql_ident(q, table_of(dt, calib));
    fputs(" AS t JOIN dataset AS d ON d.id = t.dataset_id JOIN ", q->f);
    sql_ident(q, u->reg->records_table);
    fputs(" AS r ON r.dataset_id = t.dataset_id WHERE t.dataset_type_id = ", q->f);
    sql_param(q);
    sql_collections(q, u->l, calib);
    sql_constraints(q, "t.", dt, u->values);
}

int bfs_registry_find_files(bfs_registry *reg, const bfs_collection *c, const bfs_dataset_type *dt,
                            const char *const values[], bfs_file_cb cb, void *ctx)
{
    struct leaves *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    int ret = flatten(c, l);
    if (ret < 0) {
        free(l);
        return ret;
    }
    /* ordered by dataId, then search position, validity start, component */
    char tail[32 + 8 * BFS_MAX_DIMS] = " ORDER BY ";
    for (int i = 0; i < dt->ndims; i++)
        snprintf(tail + strlen(tail), sizeof tail - strlen(tail), "v%d, ", i);
    strcat(tail, "pos, 9, 5");
    db_conn *db = reg_db(reg);
    char *span = db ? db_sql_span_select(db, "t") : NULL;
    if (!span) {
        free(l);
        return db ? -ENOMEM : -EIO;
    }
    struct union_query u = {.reg = reg, .dt = dt, .values = values, .l = l, .span = span};
    int rc = DB_DONE;
    db_stmt *st = union_prepare(&u, " UNION ALL ", write_files, tail, &ret);
    free(l);
    free(span);
    if (!st)
        return union_done(&u, st, rc, ret);
    /* find-first: remember the dataId of the previous row and its best position */
    char prev_key[BFS_MAX_DIMS * BFS_MAX_VALUE] = "";
    int best_pos = -1;
    while ((rc = db_step(st)) == DB_ROW) {
        bfs_dataset_file f = {0};
        char key[sizeof prev_key];
        size_t kl = 0;
        key[0] = '\0';
        for (int i = 0; i < dt->ndims; i++) {
            f.values[i] = db_column_text(st, 11 + i);
            if (!f.values[i])
                f.values[i] = "";
            int w = snprintf(key + kl, sizeof key - kl, "%s\x1f", f.values[i]);
            if (w > 0 && (size_t)w < sizeof key - kl)
                kl += (size_t)w;
        }
        int pos = (int)db_column_int64(st, 10);
        if (best_pos < 0 || strcmp(key, prev_key) != 0) {
            memcpy(prev_key, key, kl + 1);
            best_pos = pos;
        } else if (pos != best_pos) {
            continue; /* a later collection in the chain: hidden by find-first */
        }
        const char *id = db_column_text(st, 0);
        snprintf(f.id, sizeof f.id, "%s", id ? id : "");
        f.collection_id = db_column_int64(st, 1);
        f.run_id = db_column_int64(st, 2);
        f.ingest_unix = ingest_unix(st, 3);
        f.component = db_column_text(st, 4);
        if (f.component && (!strcmp(f.component, "__NULL_STRING__") || !*f.component))
            f.component = NULL;
        f.path = db_column_text(st, 5);
        f.file_size = db_column_type(st, 6) == DB_NULL ? -1 : db_column_int64(st, 6);
        if (f.file_size < 0)
            f.file_size = -1;
        f.checksum = db_column_text(st, 7);
        if (db_column_type(st, 8) != DB_NULL) {
            f.has_timespan = true;
            f.timespan_begin = db_column_int64(st, 8);
            f.timespan_end = db_column_int64(st, 9);
        }
        if (!f.path)
            continue;
        if ((ret = cb(ctx, &f)) != 0)
            break;
    }
    return union_done(&u, st, rc, ret);
}

int bfs_registry_resolve_alias(bfs_registry *reg, const bfs_dataset_type *dt, const char *const values[],
                               const bfs_dimension *dim, const char *alias, char *out, size_t outsz)
{
    if (!dim->has_table || dim->n_alt == 0)
        return -ENOENT;
    for (int a = 0; a < dim->n_alt; a++) {
        struct sql q;
        sql_init(&q);
        fputs("SELECT ", q.f);
        sql_ident(&q, dim->key);
        fputs(" FROM ", q.f);
        sql_ident(&q, dim->name);
        fputs(" WHERE ", q.f);
        sql_ident(&q, dim->alt_keys[a]);
        fputs(" = ", q.f);
        sql_param(&q);
        const char *req_values[4] = {0};
        for (int r = 0; r < dim->n_requires; r++) {
            for (int i = 0; dt && values && i < dt->ndims; i++)
                if (dt->dims[i] == dim->requires[r])
                    req_values[r] = values[i];
            if (!req_values[r])
                continue;
            fputs(" AND ", q.f);
            sql_ident(&q, dim->requires[r]->name);
            fputs(" = ", q.f);
            sql_param(&q);
        }
        fputs(" LIMIT 2", q.f);
        char *text = sql_finish(&q);
        db_stmt *st = text ? reg_prepare(reg, text) : NULL;
        free(text);
        if (!st)
            continue;
        int idx = 1;
        db_bind_text(st, idx++, alias, -1);
        bool ok = true;
        for (int r = 0; r < dim->n_requires; r++)
            if (req_values[r])
                ok &= bind_value(st, idx++, dim->requires[r], req_values[r]);
        int found = 0;
        if (ok) {
            while (db_step(st) == DB_ROW && found < 2) {
                const char *v = db_column_text(st, 0);
                if (v && found == 0)
                    snprintf(out, outsz, "%s", v);
                found++;
            }
        }
        db_reset(st);
        if (found == 1)
            return 0;
    }
    return -ENOENT;
}
