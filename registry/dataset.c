/*
 * dataset.c - one dataset by its id, and its dataId expanded with the
 * dimension records as daf_butler serializes them: what an export's
 * sidecar carries (docs/transfer.md, "Sidecars").
 *
 * Facts taken from daf_butler (read, not copied): a DataCoordinate's simple
 * form is {"dataId": mapping, "records": {element: SerializedDimensionRecord}}
 * with the records of the data ID's elements that are not None; a
 * SerializedDimensionRecord is {"definition": element, "record": {field:
 * value}} whose fields are the element's table columns (required keys named
 * after their dimension, the element's own key by its key name, implied
 * dimensions, metadata), plus "timespan" for a temporal element (a
 * Timespan serializes as its nsec pair, [begin, end]) and "region" for a
 * spatial one (the encoded region as hex).
 *
 * A dataset id is looked for in both forms daf_butler's SQLite registries
 * have stored over the years (32 hex digits, or a 16-byte BLOB), which
 * PostgreSQL, where ids are uuid, answers alike.
 */
#include "registry_i.h"

#include "log.h"
#include "strutil.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bind the id at ?1 as text and at ?2 as the id (SQLite: the 16-byte BLOB
 * it would be), for "id IN (?1, ?2)". */
static void bind_id(db_stmt *st, const char hex[33])
{
    uint8_t blob[16];
    for (int i = 0; i < 16; i++)
        blob[i] = (uint8_t)(bfs_hexval(hex[2 * i]) << 4 | bfs_hexval(hex[2 * i + 1]));
    db_bind_text(st, 1, hex, 32);
    db_bind_id(st, 2, blob);
}

static const bfs_dataset_type *dtype_by_id(const bfs_catalog *cat, int64_t id)
{
    for (size_t i = 0; i < cat->ndataset_types; i++)
        if (cat->dataset_types[i].id == id)
            return &cat->dataset_types[i];
    return NULL;
}

/* The dataId of the dataset in its run's tag row, as text, into vals
 * (BFS_MAX_DIMS strings of BFS_MAX_VALUE). */
static int load_values(bfs_registry *reg, const bfs_dataset_type *dt, const char hex[33], int64_t run,
                       char vals[][BFS_MAX_VALUE])
{
    char *sql = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&sql, &len);
    if (!f)
        return -ENOMEM;
    fputs("SELECT ", f);
    for (int i = 0; i < dt->ndims; i++) {
        char *q = reg_quote_ident(dt->dims[i]->name);
        fprintf(f, "%s%s", i ? ", " : "", q ? q : "NULL");
        free(q);
    }
    if (dt->ndims == 0)
        fputs("1", f);
    char *t = reg_quote_ident(dt->tags_table);
    fprintf(f, " FROM %s WHERE dataset_id IN (?1, ?2) AND collection_id = ?3", t ? t : "\"\"");
    free(t);
    fclose(f);
    db_stmt *st = sql ? reg_prepare(reg, sql) : NULL;
    if (!st) {
        free(sql);
        return -EIO;
    }
    bind_id(st, hex);
    db_bind_int64(st, 3, run);
    int rc = db_step(st), ret = 0;
    if (rc == DB_ROW) {
        for (int i = 0; i < dt->ndims && ret == 0; i++) {
            const char *v = db_column_text(st, i);
            if (!v || snprintf(vals[i], BFS_MAX_VALUE, "%s", v) >= BFS_MAX_VALUE)
                ret = -EBADMSG;
        }
    } else {
        ret = rc == DB_DONE ? -ENOENT : rc;
    }
    db_reset(st);
    free(sql);
    return ret;
}

/* Dataset id's normalized form (hex), type and run (catalog entries, the
 * catalog refreshed once when they were made since it loaded): 0, -EINVAL
 * for a malformed id, -ENOENT, or a database error. */
static int dataset_row(bfs_registry *reg, const char *id, char hex[33], const bfs_dataset_type **dt,
                       const bfs_collection **run, int64_t *run_id)
{
    if (!id || bfs_registry_normalize_id(id, hex) < 0)
        return -EINVAL;
    db_stmt *st = reg_prepare(reg, "SELECT dataset_type_id, run_id FROM dataset WHERE id IN (?1, ?2)");
    if (!st)
        return -EIO;
    bind_id(st, hex);
    int rc = db_step(st);
    int64_t type_id = 0;
    *run_id = 0;
    if (rc == DB_ROW) {
        type_id = db_column_int64(st, 0);
        *run_id = db_column_int64(st, 1);
    }
    db_reset(st);
    if (rc != DB_ROW)
        return rc == DB_DONE ? -ENOENT : rc;
    const bfs_catalog *cat = bfs_registry_catalog(reg);
    *dt = dtype_by_id(cat, type_id);
    *run = bfs_catalog_collection_by_id(cat, *run_id);
    if ((!*dt || !*run) && bfs_registry_refresh(reg) > 0) { /* made since the catalog loaded */
        cat = bfs_registry_catalog(reg);
        *dt = dtype_by_id(cat, type_id);
        *run = bfs_catalog_collection_by_id(cat, *run_id);
    }
    return *dt && *run ? 0 : -ENOENT;
}

int bfs_registry_dataset_records(bfs_registry *reg, const char *id, bfs_dataset_record_cb cb, void *ctx)
{
    char hex[33];
    const bfs_dataset_type *dt;
    const bfs_collection *run;
    int64_t run_id;
    int rc = dataset_row(reg, id, hex, &dt, &run, &run_id);
    if (rc < 0)
        return rc;
    db_stmt *st;
    char (*vals)[BFS_MAX_VALUE] = calloc(BFS_MAX_DIMS, BFS_MAX_VALUE);
    if (!vals)
        return -ENOMEM;
    int ret = load_values(reg, dt, hex, run_id, vals);
    char *sql = NULL;
    if (ret == 0) {
        char *rt = reg_quote_ident(reg->records_table);
        sql = rt ? bfs_asprintf("SELECT component, path, formatter, storage_class, checksum, file_size FROM %s "
                                "WHERE dataset_id IN (?1, ?2) ORDER BY component", rt) : NULL;
        free(rt);
        st = sql ? reg_prepare(reg, sql) : NULL;
        ret = !sql ? -ENOMEM : !st ? -EIO : 0;
    }
    int nfiles = 0;
    if (ret == 0) {
        bind_id(st, hex);
        while ((rc = db_step(st)) == DB_ROW) {
            bfs_dataset_record r = {.dt = dt, .run = run->name};
            memcpy(r.id, hex, sizeof r.id);
            for (int i = 0; i < dt->ndims; i++)
                r.values[i] = vals[i];
            r.component = db_column_text(st, 0);
            if (r.component && (!*r.component || !strcmp(r.component, "__NULL_STRING__")))
                r.component = NULL;
            r.path = db_column_text(st, 1);
            r.formatter = db_column_text(st, 2);
            r.storage_class = db_column_text(st, 3);
            r.checksum = db_column_text(st, 4);
            if (r.checksum && !*r.checksum)
                r.checksum = NULL;
            r.file_size = db_column_type(st, 5) == DB_NULL ? -1 : db_column_int64(st, 5);
            if (r.file_size < 0)
                r.file_size = -1;
            if (!r.formatter)
                r.formatter = "";
            if (!r.storage_class)
                r.storage_class = "";
            if (!r.path)
                continue;
            nfiles++;
            if ((ret = cb(ctx, &r)) != 0)
                break;
        }
        if (ret == 0 && rc < 0)
            ret = rc;
        db_reset(st);
        if (ret == 0 && nfiles == 0)
            ret = -ENOENT;
    }
    free(sql);
    free(vals);
    return ret;
}

/* ---- the expanded dataId ---- */

/* How a column of an element's table is written. */
enum col_kind { K_INT, K_STRING, K_FLOAT, K_BOOL, K_HASH, K_REGION, K_GUESS };

static enum col_kind kind_of_type(const char *type)
{
    if (!type)
        return K_GUESS;
    if (!strcmp(type, "int"))
        return K_INT;
    if (!strcmp(type, "string"))
        return K_STRING;
    if (!strcmp(type, "float"))
        return K_FLOAT;
    if (!strcmp(type, "bool"))
        return K_BOOL;
    if (!strcmp(type, "hash"))
        return K_HASH;
    return K_GUESS;
}

static const char *type_in(json_t *list, const char *col)
{
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c) {
        const char *n = json_string_value(json_object_get(c, "name"));
        if (n && !strcmp(n, col))
            return json_string_value(json_object_get(c, "type"));
    }
    return NULL;
}

static enum col_kind column_kind(bfs_registry *reg, json_t *elem, const char *col)
{
    if (!strcmp(col, "region"))
        return K_REGION;
    const char *t = type_in(json_object_get(elem, "keys"), col);
    if (!t)
        t = type_in(json_object_get(elem, "metadata"), col);
    if (t)
        return kind_of_type(t);
    const bfs_dimension *d = bfs_registry_dimension_by_name(reg, col);
    if (d)
        return d->type == BFS_KEY_INT ? K_INT : K_STRING;
    return K_GUESS;
}

static json_t *hex_json(const unsigned char *b, size_t n)
{
    char *h = malloc(2 * n + 1);
    if (!h)
        return NULL;
    for (size_t i = 0; i < n; i++)
        snprintf(h + 2 * i, 3, "%02x", b[i]);
    json_t *j = json_stringn(h, 2 * n);
    free(h);
    return j;
}

/* A region column: daf_butler's SQLite stores the encoded region as base64
 * text; a BLOB is taken as the encoded bytes. */
static json_t *region_json(db_stmt *st, int i)
{
    int n = db_column_bytes(st, i);
    if (db_column_type(st, i) == DB_BLOB)
        return hex_json(db_column_blob(st, i), (size_t)n);
    const unsigned char *t = (const unsigned char *)db_column_text(st, i);
    unsigned char *raw = malloc((size_t)n / 4 * 3 + 3);
    int m = raw && t ? EVP_DecodeBlock(raw, t, n) : -1;
    for (int k = n - 1; m > 0 && k >= 0 && t[k] == '='; k--)
        m--; /* EVP_DecodeBlock counts the padding */
    json_t *j = m >= 0 ? hex_json(raw, (size_t)m) : json_stringn((const char *)t, (size_t)n);
    free(raw);
    return j;
}

static json_t *column_json(db_stmt *st, int i, enum col_kind k)
{
    enum db_type type = db_column_type(st, i);
    if (type == DB_NULL)
        return json_null();
    if (k == K_GUESS)
        k = type == DB_INTEGER ? K_INT : type == DB_FLOAT ? K_FLOAT : type == DB_BLOB ? K_HASH : K_STRING;
    switch (k) {
    case K_INT:
        return json_integer(db_column_int64(st, i));
    case K_FLOAT:
        return json_real(db_column_double(st, i));
    case K_BOOL:
        return json_boolean(db_column_int64(st, i) != 0);
    case K_HASH:
        if (type == DB_BLOB)
            return hex_json(db_column_blob(st, i), (size_t)db_column_bytes(st, i));
        break;
    case K_REGION:
        return region_json(st, i);
    default:
        break;
    }
    return json_stringn(db_column_text(st, i), (size_t)db_column_bytes(st, i));
}

/* A dimension value as the JSON its key type makes. */
static json_t *value_json(const bfs_dimension *d, const char *v)
{
    int64_t n;
    if (d->type == BFS_KEY_INT && bfs_parse_i64(v, &n))
        return json_integer(n);
    return json_string(v);
}

static bool in_list(json_t *list, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
        if (json_is_string(v) && !strcmp(json_string_value(v), name))
            return true;
    }
    return false;
}

static bool bind_key(db_stmt *st, int idx, const bfs_dimension *d, const char *v)
{
    int64_t n;
    if (d->type == BFS_KEY_INT)
        return bfs_parse_i64(v, &n) && db_bind_int64(st, idx, n) == 0;
    return db_bind_text(st, idx, v, -1) == 0;
}

/* The record of dimension d (with a table) whose keys are in val[] (by
 * universe index): *out a new {"definition", "record"} object, NULL when
 * the registry has no such record or a required value is unknown.
 * Values of the dimensions d implies (its columns named after them) are
 * set in val[] where unset. */
static int load_record(bfs_registry *reg, json_t *elem, const bfs_dimension *d, char **val, json_t **out)
{
    *out = NULL;
    struct sql_text {
        char *s;
        size_t n;
    } q = {0};
    FILE *f = open_memstream(&q.s, &q.n);
    if (!f)
        return -ENOMEM;
    char *t = reg_quote_ident(d->name), *k = reg_quote_ident(d->key);
    fprintf(f, "SELECT * FROM %s WHERE %s = ?1", t ? t : "\"\"", k ? k : "\"\"");
    free(t), free(k);
    bool complete = val[d->index] != NULL;
    for (int r = 0; r < d->n_requires; r++) {
        char *c = reg_quote_ident(d->requires[r]->name);
        fprintf(f, " AND %s = ?%d", c ? c : "\"\"", r + 2);
        free(c);
        complete &= val[d->requires[r]->index] != NULL;
    }
    fclose(f);
    if (!q.s)
        return -ENOMEM;
    if (!complete) {
        free(q.s);
        return 0;
    }
    db_stmt *st = reg_prepare(reg, q.s);
    if (!st) {
        free(q.s);
        return 0; /* no such table in this repository: no record */
    }
    bool ok = bind_key(st, 1, d, val[d->index]);
    for (int r = 0; r < d->n_requires && ok; r++)
        ok = bind_key(st, r + 2, d->requires[r], val[d->requires[r]->index]);
    int rc = ok ? db_step(st) : DB_DONE, ret = 0;
    json_t *rec = NULL;
    if (rc == DB_ROW) {
        rec = json_object();
        int ncols = db_column_count(st);
        int tb = -1, te = -1;
        json_t *span = NULL; /* PostgreSQL's one "timespan" range column */
        for (int i = 0; i < ncols && rec && ret == 0; i++) {
            const char *col = db_column_name(st, i);
            if (!col)
                continue;
            int64_t b, e;
            int is_span = !strcmp(col, "timespan") ? db_column_span(st, i, &b, &e) : -EINVAL;
            if (is_span >= 0) {
                span = is_span ? json_pack("[II]", (json_int_t)b, (json_int_t)e) : json_null();
                if (!span)
                    ret = -ENOMEM;
                continue;
            }
            if (!strcmp(col, "timespan_begin")) {
                tb = i;
                continue;
            }
            if (!strcmp(col, "timespan_end")) {
                te = i;
                continue;
            }
            json_t *v = column_json(st, i, column_kind(reg, elem, col));
            if (!v || json_object_set_new(rec, col, v) < 0)
                ret = -EILSEQ;
            const bfs_dimension *imp = in_list(json_object_get(elem, "implies"), col)
                ? bfs_registry_dimension_by_name(reg, col) : NULL;
            const char *txt = db_column_text(st, i);
            if (ret == 0 && imp && imp != d && txt && !val[imp->index] && !(val[imp->index] = strdup(txt)))
                ret = -ENOMEM;
        }
        if (ret == 0 && rec && !span && tb >= 0 && te >= 0) {
            span = db_column_type(st, tb) == DB_NULL || db_column_type(st, te) == DB_NULL
                ? json_null()
                : json_pack("[II]", (json_int_t)db_column_int64(st, tb), (json_int_t)db_column_int64(st, te));
            if (!span)
                ret = -ENOMEM;
        }
        if (span && ret == 0 && rec) {
            if (json_object_set_new(rec, "timespan", span) < 0) /* takes span either way */
                ret = -ENOMEM;
        } else {
            json_decref(span);
        }
        if (!rec)
            ret = -ENOMEM;
    } else if (rc < 0) {
        ret = rc;
    }
    db_reset(st);
    free(q.s);
    if (ret == 0 && rec)
        *out = json_pack("{s:s, s:o}", "definition", d->name, "record", rec);
    else
        json_decref(rec);
    return ret == 0 && rec && !*out ? -ENOMEM : ret;
}

int bfs_registry_data_coordinate_json(bfs_registry *reg, const bfs_dataset_type *dt, const char *const values[],
                                      char **json_out)
{
    *json_out = NULL;
    int n = reg->ndims;
    char **val = calloc((size_t)n + 1, sizeof *val);
    json_t **recs = calloc((size_t)n + 1, sizeof *recs);
    json_t *data_id = json_object(), *records = json_object();
    int ret = val && recs && data_id && records ? 0 : -ENOMEM;
    for (int i = 0; i < dt->ndims && ret == 0; i++)
        if (values[i] && !(val[dt->dims[i]->index] = strdup(values[i])))
            ret = -ENOMEM;
    /* An element's implied dimensions come before it in universe order, so
     * one pass from the last dimension back finds every implied value. */
    json_t *elements = json_object_get(reg->universe_json, "elements");
    for (int i = n - 1; i >= 0 && ret == 0; i--) {
        const bfs_dimension *d = &reg->dims[i];
        json_t *elem = json_object_get(elements, d->name);
        if (!val[i] || !elem)
            continue; /* not in the dataId, or skypix */
        if (d->has_table)
            ret = load_record(reg, elem, d, val, &recs[i]);
        else if (!(recs[i] = json_pack("{s:s, s:{s:s}}", "definition", d->name, "record", d->key, val[i])))
            ret = -ENOMEM;
    }
    for (int i = 0; i < dt->ndims && ret == 0; i++)
        if (val[dt->dims[i]->index] &&
            json_object_set_new(data_id, dt->dims[i]->name, value_json(dt->dims[i], val[dt->dims[i]->index])) < 0)
            ret = -ENOMEM;
    for (int i = 0; i < n && ret == 0; i++) {
        if (!val[i] || json_object_get(data_id, reg->dims[i].name))
            continue;
        if (json_object_set_new(data_id, reg->dims[i].name, value_json(&reg->dims[i], val[i])) < 0)
            ret = -ENOMEM;
    }
    for (int i = 0; i < n && ret == 0; i++) {
        if (recs[i] && json_object_set(records, reg->dims[i].name, recs[i]) < 0)
            ret = -ENOMEM;
    }
    if (ret == 0) {
        json_t *root = json_pack("{s:O, s:O}", "dataId", data_id, "records", records);
        *json_out = root ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(root);
        if (!*json_out)
            ret = -ENOMEM;
    }
    for (int i = 0; val && i < n; i++)
        free(val[i]);
    for (int i = 0; recs && i < n; i++)
        json_decref(recs[i]);
    free(val);
    free(recs);
    json_decref(data_id);
    json_decref(records);
    return ret;
}

int bfs_registry_dataset_instrument(bfs_registry *reg, const char *id, char *out, size_t outsz)
{
    /* the instrument column alone: over 18 900 raws (release build, SQLite)
     * bfs_registry_dataset_records (the whole dataId and the file records)
     * took 0.7-0.8 s of CPU, this 0.45 s, the walk without lookups 0.07 s */
    if (!outsz)
        return -EINVAL;
    out[0] = '\0';
    char hex[33];
    const bfs_dataset_type *dt;
    const bfs_collection *run;
    int64_t run_id;
    int ret = dataset_row(reg, id, hex, &dt, &run, &run_id);
    bool has = false;
    for (int i = 0; ret == 0 && i < dt->ndims; i++)
        has = has || !strcmp(dt->dims[i]->name, "instrument");
    if (ret < 0 || !has)
        return ret;
    char *t = reg_quote_ident(dt->tags_table);
    char *sql = t ? bfs_asprintf("SELECT instrument FROM %s WHERE dataset_id IN (?1, ?2) AND collection_id = ?3", t)
                  : NULL;
    free(t);
    db_stmt *st = sql ? reg_prepare(reg, sql) : NULL;
    free(sql);
    if (!st)
        return -EIO;
    bind_id(st, hex);
    db_bind_int64(st, 3, run_id);
    int rc = db_step(st);
    const char *v = rc == DB_ROW ? db_column_text(st, 0) : NULL;
    ret = rc == DB_ROW ? (snprintf(out, outsz, "%s", v ? v : "") >= (int)outsz ? -ENAMETOOLONG : 0)
        : rc == DB_DONE ? -ENOENT : rc;
    db_reset(st);
    return ret;
}
