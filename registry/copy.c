/*
 * copy.c - bfs_registry_copy: an SQLite registry copied, schema and rows,
 * into a PostgreSQL namespace, in the form daf_butler gives PostgreSQL
 * (issue 13: `butlerfs copy-registry`, `butlerfs init --db`, and the test
 * that mounts every fixture repository from both engines).
 *
 * The source's own tables are the plan, read from sqlite_master and its
 * pragmas, so every universe and every manager version the SQLite side can
 * open is copied without a table list here.  What changes on the way:
 *
 *   - dataset ids (dataset.id and every dataset_id column) become uuid;
 *   - a timespan_begin/timespan_end pair becomes one int8range column
 *     "timespan", daf_butler's representation for PostgreSQL: an unbounded
 *     end (0 or 2100-01-01 TAI in SQLite) is a NULL bound, a NULL pair is a
 *     NULL range;
 *   - an INTEGER PRIMARY KEY (SQLite's autoincrement) becomes BIGSERIAL,
 *     with its sequence set past the copied rows;
 *   - FLOAT/REAL become double precision, BLOB bytea, DATETIME timestamp;
 *   - each dataset_calibs_* table gets the exclusion constraint daf_butler
 *     declares (btree_gist): no two certifications of one dataset type in
 *     one collection with the same dataId may overlap in validity time;
 *   - constraint and index names are made short (PostgreSQL cuts
 *     identifiers at 63 bytes; daf_butler shrinks them with a hash, and no
 *     query depends on the names).
 *
 * Order: create the namespace if needed; refuse one that already holds a
 * Butler registry; create every table without foreign keys; copy the rows;
 * add the foreign keys (checked by the server over the copied rows) and
 * indexes; set the sequences; all in ONE transaction, so a failure leaves
 * the namespace as it was.  butler.yaml is written last (O_EXCL) and names
 * the database without any password, the namespace, and the source's
 * datastore root as an absolute location, so both repositories share the
 * files.
 */
#include "registry_i.h"

#include "dbauth.h"
#include "log.h"
#include "strutil.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

struct col {
    char *name;
    char *type;      /* declared in SQLite, upper-cased */
    char *dflt;      /* SQLite's default expression, or NULL */
    bool not_null;
    int pk;          /* position in the primary key, 0 = not in it */
    bool uuid;       /* a dataset id */
    bool serial;     /* the table's INTEGER PRIMARY KEY */
};

struct table {
    char *name;
    char *sql;       /* SQLite's CREATE TABLE text (CHECK constraints) */
    struct col *cols;
    int ncols;
    int span_begin, span_end;   /* column indexes, -1 when absent */
};

static void table_free(struct table *t)
{
    for (int i = 0; i < t->ncols; i++) {
        free(t->cols[i].name);
        free(t->cols[i].type);
        free(t->cols[i].dflt);
    }
    free(t->cols);
    free(t->name);
    free(t->sql);
}

/* Names go into DDL (quoted) and into pg_get_serial_sequence's text
 * argument: only the names daf_butler makes are copied. */
static bool plain_name(const char *s)
{
    if (!s || !*s || strlen(s) > 63)
        return false;
    for (const char *p = s; *p; p++)
        if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && *p != '_')
            return false;
    return true;
}

static char *upper_dup(const char *s)
{
    char *u = strdup(s ? s : "");
    for (char *p = u; p && *p; p++)
        *p = (char)toupper((unsigned char)*p);
    return u;
}

/* ---- reading the source's plan ------------------------------------------ */

static int load_columns(db_conn *src, struct table *t)
{
    db_stmt *st = db_prepare(src, "SELECT name, type, \"notnull\", pk, dflt_value "
                                  "FROM pragma_table_info(?1) ORDER BY cid");
    if (!st)
        return -EIO;
    db_bind_text(st, 1, t->name, -1);
    size_t cap = 0;
    int npk = 0, rc;
    t->span_begin = t->span_end = -1;
    while ((rc = db_step(st)) == DB_ROW) {
        if (bfs_grow((void **)&t->cols, &cap, (size_t)t->ncols + 1, sizeof *t->cols) < 0) {
            db_reset(st);
            return -ENOMEM;
        }
        struct col *c = &t->cols[t->ncols];
        memset(c, 0, sizeof *c);
        c->name = strdup(db_column_text(st, 0));
        c->type = upper_dup(db_column_text(st, 1));
        c->not_null = db_column_int64(st, 2) != 0;
        c->pk = (int)db_column_int64(st, 3);
        c->dflt = db_column_type(st, 4) == DB_NULL ? NULL : strdup(db_column_text(st, 4));
        if (!c->name || !c->type) {
            db_reset(st);
            t->ncols++;
            return -ENOMEM;
        }
        if (!plain_name(c->name)) {
            bfs_err(REG_TAG, "copy: table %s has a column named %s, which daf_butler never makes",
                    t->name, c->name);
            db_reset(st);
            t->ncols++;
            return -EBADMSG;
        }
        c->uuid = !strcmp(c->name, "dataset_id") || (!strcmp(t->name, "dataset") && !strcmp(c->name, "id"));
        if (!strcmp(c->name, "timespan_begin"))
            t->span_begin = t->ncols;
        if (!strcmp(c->name, "timespan_end"))
            t->span_end = t->ncols;
        npk += c->pk > 0;
        t->ncols++;
    }
    if (rc < 0)
        return rc;
    /* SQLite's rowid alias is how SQLAlchemy spells autoincrement there */
    for (int i = 0; npk == 1 && i < t->ncols; i++)
        if (t->cols[i].pk && !strcmp(t->cols[i].type, "INTEGER"))
            t->cols[i].serial = true;
    if ((t->span_begin < 0) != (t->span_end < 0))
        t->span_begin = t->span_end = -1; /* half a pair is two plain columns */
    return t->ncols > 0 ? 0 : -EBADMSG;
}

static int load_tables(db_conn *src, struct table **out, int *n)
{
    db_stmt *st = db_prepare(src, "SELECT name, sql FROM sqlite_master WHERE type = 'table' "
                                  "AND name NOT LIKE 'sqlite!_%' ESCAPE '!' ORDER BY rowid");
    if (!st)
        return -EIO;
    size_t cap = 0;
    int rc, ret = 0;
    *out = NULL;
    *n = 0;
    while ((rc = db_step(st)) == DB_ROW) {
        if (bfs_grow((void **)out, &cap, (size_t)*n + 1, sizeof **out) < 0) {
            db_reset(st);
            return -ENOMEM;
        }
        struct table *t = &(*out)[(*n)++];
        memset(t, 0, sizeof *t);
        t->name = strdup(db_column_text(st, 0));
        t->sql = strdup(db_column_text(st, 1) ? db_column_text(st, 1) : "");
        if (!t->name || !t->sql) {
            db_reset(st);
            return -ENOMEM;
        }
    }
    if (rc < 0)
        return rc;
    for (int i = 0; i < *n && !ret; i++) {
        if (!plain_name((*out)[i].name)) {
            bfs_err(REG_TAG, "copy: the source has a table named %s, which daf_butler never makes",
                    (*out)[i].name);
            return -EBADMSG;
        }
        ret = load_columns(src, &(*out)[i]);
    }
    return ret;
}

/* ---- PostgreSQL DDL ---------------------------------------------------- */

static const char *pg_type(const struct col *c)
{
    if (c->uuid)
        return "UUID";
    if (c->serial)
        return "BIGSERIAL";
    const char *t = c->type;
    if (!strcmp(t, "FLOAT") || !strcmp(t, "REAL") || !strcmp(t, "DOUBLE"))
        return "DOUBLE PRECISION";
    if (!strcmp(t, "BLOB"))
        return "BYTEA";
    if (!strcmp(t, "DATETIME"))
        return "TIMESTAMP";
    if (!*t)
        return "TEXT";
    return t;
}

/* A default PostgreSQL can take as it is: a number, a quoted string, or
 * CURRENT_TIMESTAMP (SQLAlchemy writes it in parentheses for SQLite). */
static void put_default(FILE *f, const struct col *c)
{
    const char *d = c->dflt;
    if (!d || c->serial)
        return;
    if (!strcasecmp(d, "(CURRENT_TIMESTAMP)") || !strcasecmp(d, "CURRENT_TIMESTAMP")) {
        fputs(" DEFAULT CURRENT_TIMESTAMP", f);
        return;
    }
    bool number = *d != '\0';
    for (const char *p = d; *p; p++)
        if (!isdigit((unsigned char)*p) && *p != '-' && *p != '.')
            number = false;
    if (number || (d[0] == '\'' && d[strlen(d) - 1] == '\''))
        fprintf(f, " DEFAULT %s", d);
}

static void put_ident(FILE *f, const char *name)
{
    char *q = reg_quote_ident(name);
    fputs(q ? q : "\"\"", f);
    free(q);
}

/* Columns of an index or constraint of the source, as a quoted list. */
static int put_index_cols(db_conn *src, FILE *f, const char *index)
{
    db_stmt *st = db_prepare(src, "SELECT name FROM pragma_index_info(?1) ORDER BY seqno");
    if (!st)
        return -EIO;
    db_bind_text(st, 1, index, -1);
    int rc, n = 0;
    fputc('(', f);
    while ((rc = db_step(st)) == DB_ROW) {
        const char *col = db_column_text(st, 0);
        /* the pair is one column in PostgreSQL */
        if (col && !strcmp(col, "timespan_end"))
            continue;
        if (n++)
            fputs(", ", f);
        put_ident(f, col && !strcmp(col, "timespan_begin") ? "timespan" : col);
    }
    fputc(')', f);
    return rc < 0 ? rc : 0;
}

/* The CHECK constraints of SQLite's CREATE TABLE text: daf_butler writes
 * each as "CONSTRAINT <name> CHECK (<expr>)" (length limits on strings),
 * and the expressions are ones PostgreSQL reads as they are. */
static void put_checks(FILE *f, const struct table *t)
{
    int k = 0;
    for (const char *p = strstr(t->sql, " CHECK ("); p; p = strstr(p + 1, " CHECK (")) {
        const char *open = p + strlen(" CHECK ");
        int depth = 0;
        const char *q = open;
        for (; *q; q++) {
            if (*q == '(')
                depth++;
            else if (*q == ')' && --depth == 0)
                break;
        }
        if (!*q)
            return;
        fprintf(f, ",\n  CONSTRAINT \"%.40s_ck%d\" CHECK %.*s", t->name, ++k, (int)(q - open + 1), open);
    }
}

static bool is_calibs(const struct table *t)
{
    return !strncmp(t->name, "dataset_calibs_", strlen("dataset_calibs_")) && t->span_begin >= 0;
}

/* daf_butler's calibs exclusion: dataset type, collection and every dataId
 * column equal, timespans overlapping. */
static void put_exclusion(FILE *f, const struct table *t)
{
    fprintf(f, ",\n  CONSTRAINT \"%.50s_excl\" EXCLUDE USING gist (", t->name);
    int n = 0;
    for (int i = 0; i < t->ncols; i++) {
        const struct col *c = &t->cols[i];
        if (i == t->span_begin || i == t->span_end || c->serial || c->uuid)
            continue;
        if (n++)
            fputs(", ", f);
        put_ident(f, c->name);
        fputs(" WITH =", f);
    }
    fputs(", timespan WITH &&)", f);
}

/* The names of table's indexes of one origin ('u': UNIQUE constraints,
 * 'c': CREATE INDEX) in order, into a malloc'd array of malloc'd strings
 * (free with free_names).  0 or -errno. */
static int index_names(db_conn *src, const char *table, const char *origin, char ***names, size_t *n)
{
    db_stmt *st = db_prepare(src, "SELECT name FROM pragma_index_list(?1) WHERE origin = ?2 ORDER BY seq");
    size_t cap = 0;
    int rc;
    *names = NULL;
    *n = 0;
    if (!st)
        return -EIO;
    db_bind_text(st, 1, table, -1);
    db_bind_text(st, 2, origin, -1);
    while ((rc = db_step(st)) == DB_ROW) {
        char *name = strdup(db_column_text(st, 0));
        if (!name || bfs_grow((void **)names, &cap, *n + 1, sizeof **names) < 0) {
            free(name);
            db_reset(st);
            return -ENOMEM;
        }
        (*names)[(*n)++] = name;
    }
    return rc < 0 ? rc : 0;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static int create_sql(db_conn *src, const struct table *t, char **out)
{
    size_t len = 0;
    FILE *f = open_memstream(out, &len);
    if (!f)
        return -ENOMEM;
    fputs("CREATE TABLE ", f);
    put_ident(f, t->name);
    fputs(" (", f);
    int n = 0;
    for (int i = 0; i < t->ncols; i++) {
        const struct col *c = &t->cols[i];
        if (i == t->span_end)
            continue;
        fputs(n++ ? ",\n  " : "\n  ", f);
        if (i == t->span_begin) {
            fputs("timespan INT8RANGE", f);
            if (c->not_null)
                fputs(" NOT NULL DEFAULT '(,)'::int8range", f);
            continue;
        }
        put_ident(f, c->name);
        fprintf(f, " %s%s", pg_type(c), c->not_null || c->pk ? " NOT NULL" : "");
        put_default(f, c);
    }
    /* the primary key, in its order */
    int npk = 0;
    for (int k = 1; k <= t->ncols; k++)
        for (int i = 0; i < t->ncols; i++)
            if (t->cols[i].pk == k) {
                fputs(npk++ ? ", " : ",\n  PRIMARY KEY (", f);
                put_ident(f, t->cols[i].name);
            }
    if (npk)
        fputc(')', f);
    /* unique constraints, from SQLite's automatic indexes */
    char **names;
    size_t nnames;
    int rc = index_names(src, t->name, "u", &names, &nnames);
    for (size_t i = 0; rc >= 0 && i < nnames; i++) {
        fprintf(f, ",\n  CONSTRAINT \"%.45s_unq%zu\" UNIQUE ", t->name, i + 1);
        rc = put_index_cols(src, f, names[i]);
    }
    free_names(names, nnames);
    put_checks(f, t);
    if (is_calibs(t))
        put_exclusion(f, t);
    fputs("\n)", f);
    if (fclose(f) != 0 || !*out)
        return -ENOMEM;
    return rc < 0 ? rc : 0;
}

/* Foreign keys (ALTER TABLE, after the rows) and plain indexes, as one
 * SQL text of several statements. */
static int constraint_sql(db_conn *src, const struct table *t, char **out)
{
    size_t len = 0;
    FILE *f = open_memstream(out, &len);
    if (!f)
        return -ENOMEM;
    db_stmt *st = db_prepare(src, "SELECT id, \"table\", \"from\", \"to\", on_delete "
                                  "FROM pragma_foreign_key_list(?1) ORDER BY id, seq");
    int rc = st ? 0 : -EIO, last = -1;
    if (st) {
        db_bind_text(st, 1, t->name, -1);
        char *to_cols = NULL;
        size_t to_len = 0;
        FILE *tf = NULL;
        char *on_delete = NULL;
        while ((rc = db_step(st)) >= 0) {
            int id = rc == DB_ROW ? (int)db_column_int64(st, 0) : -2;
            if (id != last && last >= 0) { /* close the previous key */
                fclose(tf);
                fprintf(f, ") REFERENCES %s)%s;\n", to_cols ? to_cols : "?",
                        on_delete && !strcmp(on_delete, "CASCADE") ? " ON DELETE CASCADE" : "");
                free(to_cols);
                to_cols = NULL;
            }
            if (rc == DB_DONE)
                break;
            const char *from = db_column_text(st, 2), *to = db_column_text(st, 3);
            if (id != last) {
                fputs("ALTER TABLE ", f);
                put_ident(f, t->name);
                fprintf(f, " ADD CONSTRAINT \"%.45s_fkey%d\" FOREIGN KEY (", t->name, id);
                tf = open_memstream(&to_cols, &to_len);
                if (!tf) {
                    rc = -ENOMEM;
                    break;
                }
                put_ident(tf, db_column_text(st, 1));
                fputs(" (", tf);
                free(on_delete);
                on_delete = db_column_text(st, 4) ? strdup(db_column_text(st, 4)) : NULL;
            } else {
                fputs(", ", f);
                fputs(", ", tf);
            }
            put_ident(f, !strcmp(from, "timespan_begin") ? "timespan" : from);
            put_ident(tf, to ? to : from);
            last = id;
        }
        free(on_delete);
        if (rc < 0 && tf) {
            fclose(tf);
            free(to_cols);
        }
    }
    if (rc >= 0) {
        char **names;
        size_t n;
        rc = index_names(src, t->name, "c", &names, &n);
        for (size_t i = 0; rc >= 0 && i < n; i++) {
            fprintf(f, "CREATE INDEX \"%.45s_idx%zu\" ON ", t->name, i + 1);
            put_ident(f, t->name);
            fputc(' ', f);
            rc = put_index_cols(src, f, names[i]);
            fputs(";\n", f);
        }
        free_names(names, n);
    }
    for (int i = 0; rc >= 0 && i < t->ncols; i++)
        if (t->cols[i].serial) {
            fprintf(f, "SELECT setval(pg_get_serial_sequence('%s', '%s'), "
                       "COALESCE((SELECT max(", t->name, t->cols[i].name);
            put_ident(f, t->cols[i].name);
            fputs(") FROM ", f);
            put_ident(f, t->name);
            fputs("), 0) + 1, false);\n", f);
        }
    if (fclose(f) != 0 || !*out)
        return -ENOMEM;
    return rc < 0 ? rc : 0;
}

/* ---- rows -------------------------------------------------------------- */

static int copy_rows(db_conn *src, db_conn *dst, const struct table *t, int64_t *rows)
{
    char *sel = NULL, *ins = NULL;
    size_t sl = 0, il = 0;
    FILE *fs = open_memstream(&sel, &sl), *fi = open_memstream(&ins, &il);
    if (!fs || !fi) {
        if (fs)
            fclose(fs);
        if (fi)
            fclose(fi);
        free(sel);
        free(ins);
        return -ENOMEM;
    }
    fputs("SELECT ", fs);
    fputs("INSERT INTO ", fi);
    put_ident(fi, t->name);
    fputs(" (", fi);
    int n = 0;
    for (int i = 0; i < t->ncols; i++) {
        if (i)
            fputs(", ", fs);
        put_ident(fs, t->cols[i].name);
        if (i == t->span_end)
            continue;
        if (n++)
            fputs(", ", fi);
        if (i == t->span_begin)
            fputs("timespan", fi);
        else
            put_ident(fi, t->cols[i].name);
    }
    fputs(" FROM ", fs);
    put_ident(fs, t->name);
    fputs(") VALUES (", fi);
    n = 0;
    for (int i = 0; i < t->ncols; i++) {
        if (i == t->span_end)
            continue;
        if (n++)
            fputs(", ", fi);
        if (i == t->span_begin)
            /* NULL pair: no timespan; otherwise unbounded ends are NULL bounds */
            fprintf(fi, "CASE WHEN ?%d::bigint IS NULL AND ?%d::bigint IS NULL THEN NULL "
                        "ELSE int8range(NULLIF(?%d::bigint, 0), NULLIF(?%d::bigint, %lld), '[)') END",
                    i + 1, t->span_end + 1, i + 1, t->span_end + 1, (long long)BFS_TIMESPAN_UNBOUNDED_END);
        else
            fprintf(fi, "?%d", i + 1);
    }
    fputc(')', fi);
    int ret = 0;
    if (fclose(fs) != 0 || fclose(fi) != 0 || !sel || !ins)
        ret = -ENOMEM;
    db_stmt *q = ret ? NULL : db_prepare(src, sel);
    db_stmt *w = q ? db_prepare(dst, ins) : NULL;
    if (!ret && (!q || !w))
        ret = -EIO;
    int rc = DB_DONE;
    while (!ret && (rc = db_step(q)) == DB_ROW) {
        for (int i = 0; i < t->ncols && !ret; i++) {
            const struct col *c = &t->cols[i];
            uint8_t id[16];
            switch (db_column_type(q, i)) {
            case DB_NULL:
                ret = db_bind_null(w, i + 1);
                break;
            case DB_INTEGER:
                ret = db_bind_int64(w, i + 1, db_column_int64(q, i));
                break;
            case DB_FLOAT:
                ret = db_bind_double(w, i + 1, db_column_double(q, i));
                break;
            case DB_BLOB:
            case DB_TEXT:
                if (c->uuid) {
                    ret = db_column_id(q, i, id);
                    if (ret < 0)
                        bfs_err(REG_TAG, "copy: %s.%s holds a value that is no dataset id", t->name, c->name);
                    else
                        ret = db_bind_id(w, i + 1, id);
                } else if (db_column_type(q, i) == DB_BLOB) {
                    ret = db_bind_blob(w, i + 1, db_column_blob(q, i), db_column_bytes(q, i));
                } else {
                    ret = db_bind_text(w, i + 1, db_column_text(q, i), db_column_bytes(q, i));
                }
                break;
            }
        }
        if (!ret) {
            int r = db_step(w);
            ret = r < 0 ? r : 0;
            db_reset(w);
            (*rows)++;
        }
    }
    if (!ret && rc < 0)
        ret = rc;
    if (q)
        db_reset(q);
    free(sel);
    free(ins);
    return ret;
}

/* ---- the whole copy ---------------------------------------------------- */

static int write_yaml(const char *dir, const bfs_registry *src, const char *root, const char *url,
                      const char *ns, char **errmsg)
{
    char *path = bfs_asprintf("%s/butler.yaml", dir);
    char *shown = bfs_dburl_redact(url);
    if (!path || !shown) {
        free(path);
        free(shown);
        return -ENOMEM;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    int ret = 0;
    if (!f) {
        ret = -errno;
        if (fd >= 0)
            close(fd);
    } else {
        /* YAML strings quoted: a namespace or root could hold ':' or '#' */
        fprintf(f, "datastore:\n"
                   "  cls: lsst.daf.butler.datastores.fileDatastore.FileDatastore\n"
                   "  records:\n"
                   "    table: %s\n"
                   "  root: '%s'\n"
                   "registry:\n"
                   "  db: '%s'\n"
                   "  namespace: '%s'\n",
                src->records_table, root, shown, ns);
        if (ferror(f) || fflush(f) != 0 || fsync(fileno(f)) != 0)
            ret = -EIO;
        if (fclose(f) != 0 && !ret)
            ret = -errno;
        if (ret)
            unlink(path);
    }
    if (ret)
        bfs_set_errmsg(errmsg, "cannot write %s: %s", path, strerror(-ret));
    free(path);
    free(shown);
    return ret;
}

static bool quotable_in_yaml(const char *s) { return !strchr(s, '\'') && !strchr(s, '\n'); }

int bfs_registry_copy(const char *src_repo, const char *dst_dir, const char *db_url, const char *ns,
                      const char *root, bfs_copy_progress_cb progress, void *ctx, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (!ns || !*ns)
        ns = "public";
    if (!bfs_dburl_is_postgresql(db_url)) {
        bfs_set_errmsg(errmsg, "--db must be a PostgreSQL URL (postgresql://USER@HOST:PORT/DATABASE)");
        return -EINVAL;
    }
    if (!quotable_in_yaml(ns) || strlen(ns) > 63) {
        bfs_set_errmsg(errmsg, "namespace '%s' cannot be used (at most 63 bytes, no quote or newline)", ns);
        return -EINVAL;
    }
    char *yaml = bfs_asprintf("%s/butler.yaml", dst_dir);
    struct stat sb;
    if (yaml && stat(yaml, &sb) == 0) {
        bfs_set_errmsg(errmsg, "%s already exists: %s is a repository already; choose an empty directory",
                       yaml, dst_dir);
        free(yaml);
        return -EEXIST;
    }
    free(yaml);
    if (mkdir(dst_dir, 0755) < 0 && errno != EEXIST) {
        int e = -errno;
        bfs_set_errmsg(errmsg, "cannot create %s: %s", dst_dir, strerror(errno));
        return e;
    }

    bfs_registry *src = NULL;
    int ret = bfs_registry_open(src_repo, BFS_REG_READONLY, &src, errmsg);
    if (ret < 0)
        return ret;
    if (db_engine_kind(src->db) != DB_SQLITE) {
        bfs_registry_close(src);
        bfs_set_errmsg(errmsg, "%s: the source must be an SQLite repository", src_repo);
        return -EINVAL;
    }
    if (!root)
        root = src->datastore_root;
    if (!quotable_in_yaml(root) || !quotable_in_yaml(db_url)) {
        bfs_registry_close(src);
        bfs_set_errmsg(errmsg, "the datastore root or URL holds a quote or newline; cannot name it in butler.yaml");
        return -EINVAL;
    }

    bfs_dburl url;
    ret = bfs_dburl_resolve(db_url, NULL, &url, errmsg);
    db_engine *admin = NULL, *dst = NULL;
    if (ret == 0) {
        /* the namespace first, from a connection that does not need it */
        struct db_options o = {.kind = DB_POSTGRESQL, .url = &url, .namespace = "public", .writable = true,
                               .max_connections = 1};
        ret = db_engine_open(&o, &admin, errmsg);
        char *q = ret == 0 ? reg_quote_ident(ns) : NULL;
        char *sql = q ? bfs_asprintf("CREATE SCHEMA IF NOT EXISTS %s", q) : NULL;
        if (ret == 0 && (ret = sql ? db_exec(db_engine_conn(admin), sql) : -ENOMEM) < 0)
            bfs_set_errmsg(errmsg, "cannot create the namespace '%s' (%s); ask the database's owner to "
                           "create it and grant you CREATE on it", ns, strerror(-ret));
        free(q);
        free(sql);
        db_engine_close(admin);
    }
    if (ret == 0) {
        struct db_options o = {.kind = DB_POSTGRESQL, .url = &url, .namespace = ns, .writable = true,
                               .max_connections = 1};
        ret = db_engine_open(&o, &dst, errmsg);
    }
    db_conn *s = ret == 0 ? reg_db(src) : NULL;
    db_conn *d = ret == 0 ? db_engine_conn(dst) : NULL;
    if (ret == 0 && (!s || !d))
        ret = -ENOMEM;
    if (ret == 0) {
        int has = db_table_exists(d, "butler_attributes");
        if (has != 0) {
            ret = has > 0 ? -EEXIST : has;
            bfs_set_errmsg(errmsg, has > 0 ? "the namespace '%s' already holds a Butler registry; choose "
                                             "another --namespace or drop that schema"
                                           : "cannot look into the namespace '%s'", ns);
        }
    }
    struct table *tables = NULL;
    int ntables = 0;
    if (ret == 0 && (ret = load_tables(s, &tables, &ntables)) < 0)
        bfs_set_errmsg(errmsg, "cannot read the tables of %s: %s", src->db_path, strerror(-ret));
    if (ret == 0 && (ret = db_begin(d, DB_TX_WRITE)) < 0)
        bfs_set_errmsg(errmsg, "cannot start a transaction on the destination: %s", strerror(-ret));
    for (int i = 0; ret == 0 && i < ntables; i++) {
        char *sql = NULL;
        if ((ret = create_sql(s, &tables[i], &sql)) == 0 && (ret = db_exec(d, sql)) < 0)
            bfs_set_errmsg(errmsg, "cannot create table %s in '%s' (see the log)", tables[i].name, ns);
        free(sql);
    }
    int64_t total = 0;
    for (int i = 0; ret == 0 && i < ntables; i++) {
        int64_t rows = 0;
        if ((ret = copy_rows(s, d, &tables[i], &rows)) < 0)
            bfs_set_errmsg(errmsg, "cannot copy the rows of %s: %s (see the log)", tables[i].name,
                           strerror(-ret));
        total += rows;
        if (progress)
            progress(ctx, tables[i].name, i + 1, ntables, rows);
    }
    for (int i = 0; ret == 0 && i < ntables; i++) {
        char *sql = NULL;
        if ((ret = constraint_sql(s, &tables[i], &sql)) == 0 && sql && *sql && (ret = db_exec(d, sql)) < 0)
            bfs_set_errmsg(errmsg, "cannot add the keys and indexes of %s in '%s' (see the log)",
                           tables[i].name, ns);
        free(sql);
    }
    if (ret == 0 && (ret = db_commit(d)) < 0)
        bfs_set_errmsg(errmsg, "the copy did not commit: %s", strerror(-ret));
    if (ret < 0 && d)
        db_rollback(d);
    if (ret == 0)
        ret = write_yaml(dst_dir, src, root, db_url, ns, errmsg);
    if (ret == 0)
        bfs_info(REG_TAG, "copied %d tables, %lld rows into namespace %s", ntables, (long long)total, ns);
    for (int i = 0; i < ntables; i++)
        table_free(&tables[i]);
    free(tables);
    db_engine_close(dst);
    bfs_dburl_free(&url);
    bfs_registry_close(src);
    return ret;
}
