/*
 * registry.c - opening a repository: butler.yaml, the database engine
 * (db.h) and the per-thread handles the other files query through.
 *
 * Opening validates everything a mount needs before anything is mounted, so
 * a bad repository gives one clear sentence instead of a broken mount:
 * directory -> butler.yaml -> registry.db URL -> SQLite header -> engine
 * (the file opens and reads; PostgreSQL: the server answers, the
 * credentials are good, the namespace exists) -> Butler tables -> universe
 * JSON -> catalog.
 * Each step has its own message.
 *
 * Handles: one per thread, created lazily by the engine (db.c), which also
 * caches each handle's prepared statements by SQL text: listing queries are
 * built per dataset type and collection, and re-preparing them on every
 * readdir would cost more than running them.  SQLite codes become errno in
 * db_sqlite.c, not here.
 */
#include "registry_i.h"

#include "config.h"
#include "dbauth.h"
#include "log.h"
#include "strutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *reg_quote_ident(const char *name)
{
    size_t n = strlen(name);
    char *q = malloc(2 * n + 3), *p = q;
    if (!q)
        return NULL;
    *p++ = '"';
    for (const char *s = name; *s; s++) {
        if (*s == '"')
            *p++ = '"';
        *p++ = *s;
    }
    *p++ = '"';
    *p = '\0';
    return q;
}

db_conn *reg_db(bfs_registry *reg) { return reg->db ? db_engine_conn(reg->db) : NULL; }

db_stmt *reg_prepare(bfs_registry *reg, const char *sql)
{
    db_conn *c = reg_db(reg);
    return c ? db_prepare(c, sql) : NULL;
}

/* ---- butler.yaml -------------------------------------------------------- */

/* The scalar at a dotted path, or NULL when missing or not a scalar. */
static const char *yaml_scalar(const bfs_yaml *y, const char *path)
{
    return bfs_yaml_scalar(y, bfs_yaml_get(y, bfs_yaml_root(y), path));
}

/* The node at a dotted path is there but is no scalar (a list, a mapping). */
static bool wrong_type(const bfs_yaml *y, const char *path)
{
    const bfs_yaml_node *n = bfs_yaml_get(y, bfs_yaml_root(y), path);
    return n && !bfs_yaml_is_null(y, n) && !bfs_yaml_scalar(y, n);
}

/* Replace <butlerRoot> (and the older <butlerRoot>/ spelling) by dir. */
static char *expand_root(const char *value, const char *dir)
{
    const char *tag = "<butlerRoot>";
    const char *at = strstr(value, tag);
    if (!at)
        return strdup(value);
    return bfs_asprintf("%.*s%s%s", (int)(at - value), value, dir, at + strlen(tag));
}

/* registry.db is a PostgreSQL URL: parsed with butler.yaml's
 * registry.username/password/host/port/database filling gaps, the password
 * looked up (dbauth.h), the namespace taken (default "public").  The URL is
 * only ever shown without its password. */
static int read_postgresql(bfs_registry *reg, const bfs_yaml *doc, const char *path, const char *db,
                           char **errmsg)
{
    const char *ns = yaml_scalar(doc, "registry.namespace");
    bfs_dburl_config cfg = {
        .username = yaml_scalar(doc, "registry.username"),
        .password = yaml_scalar(doc, "registry.password"),
        .host = yaml_scalar(doc, "registry.host"),
        .port = yaml_scalar(doc, "registry.port"),
        .database = yaml_scalar(doc, "registry.database"),
    };
    reg->pg_url = calloc(1, sizeof *reg->pg_url);
    if (!reg->pg_url)
        return -ENOMEM;
    char *why = NULL;
    int ret = bfs_dburl_resolve(db, &cfg, reg->pg_url, &why);
    if (ret < 0) {
        bfs_set_errmsg(errmsg, "%s: registry.db: %s", path, why ? why : strerror(-ret));
        free(why);
        return ret;
    }
    char *shown = bfs_dburl_redact(db);
    reg->pg_namespace = strdup(ns && *ns ? ns : "public");
    reg->db_path = shown && reg->pg_namespace ? bfs_asprintf("%s (namespace %s)", shown, reg->pg_namespace) : NULL;
    free(shown);
    return reg->db_path ? 0 : -ENOMEM;
}

static int read_butler_yaml(bfs_registry *reg, char **errmsg)
{
    char *path = bfs_asprintf("%s/butler.yaml", reg->repo_dir);
    FILE *f = path ? fopen(path, "r") : NULL;
    int ret = 0;
    if (!f) {
        ret = -errno;
        if (ret == -ENOENT)
            bfs_set_errmsg(errmsg, "%s is not a Butler repository: it has no butler.yaml "
                    "(create one with 'butlerfs init %s')", reg->repo_dir, reg->repo_dir);
        else
            bfs_set_errmsg(errmsg, "cannot read %s: %s", path, strerror(-ret));
        free(path);
        return ret;
    }
    bfs_yaml *doc = NULL;
    bfs_yaml_error yerr;
    ret = bfs_yaml_load_stream(f, path, &doc, NULL, &yerr);
    if (ret < 0) {
        bfs_set_errmsg(errmsg, "%s is not valid YAML: %s at line %d", path, yerr.problem, yerr.line);
        fclose(f);
        free(path);
        return ret;
    }
    const char *db = yaml_scalar(doc, "registry.db");
    const char *root = yaml_scalar(doc, "datastore.root");
    const char *records = yaml_scalar(doc, "datastore.records.table");
    const char *wrong = wrong_type(doc, "registry.db") ? "registry.db"
                      : wrong_type(doc, "datastore.root") ? "datastore.root"
                      : wrong_type(doc, "datastore.records.table") ? "datastore.records.table" : NULL;
    if (wrong) {
        const bfs_yaml_node *n = bfs_yaml_get(doc, bfs_yaml_root(doc), wrong);
        bfs_set_errmsg(errmsg, "%s:%d: %s has the wrong type: expected a string, found %s", path,
                       bfs_yaml_line(doc, n), wrong,
                       bfs_yaml_is_seq(doc, n) ? "a list" : bfs_yaml_is_map(doc, n) ? "a mapping" : "a non-scalar");
        ret = -EINVAL;
    } else if (!db) {
        bfs_set_errmsg(errmsg, "%s names no registry database (registry.db is missing)", path);
        ret = -EINVAL;
    } else if (!bfs_dburl_is_postgresql(db) && !bfs_startswith(db, "sqlite:///")) {
        char *shown = bfs_dburl_redact(db);
        bfs_set_errmsg(errmsg, "%s: registry.db '%s' is neither an SQLite URL (sqlite:///...) nor a "
                "PostgreSQL one (postgresql://...)", path, shown ? shown : "?");
        free(shown);
        ret = -EPROTONOSUPPORT;
    } else if (bfs_dburl_is_postgresql(db) && (ret = read_postgresql(reg, doc, path, db, errmsg)) < 0) {
        /* named */
    } else {
        if (!reg->pg_url) {
            /* SQLAlchemy URL: "sqlite:///" + path; "sqlite:////abs" is absolute,
             * anything else relative (to the repository, as the Butler resolves it). */
            char *p = expand_root(db + strlen("sqlite:///"), reg->repo_dir);
            if (p && p[0] != '/') {
                reg->db_path = bfs_asprintf("%s/%s", reg->repo_dir, p);
                free(p);
            } else {
                reg->db_path = p;
            }
        }
        char *r = expand_root(root ? root : "<butlerRoot>", reg->repo_dir);
        if (r && bfs_startswith(r, "file://"))
            memmove(r, r + 7, strlen(r + 7) + 1);
        if (r && !strstr(r, "://") && r[0] != '/') {
            char *abs = bfs_asprintf("%s/%s", reg->repo_dir, r);
            free(r);
            r = abs;
        }
        if (r) {
            size_t n = strlen(r);
            reg->datastore_root = n && r[n - 1] == '/' ? strdup(r) : bfs_asprintf("%s/", r);
            free(r);
        }
        reg->records_table = strdup(records ? records : "file_datastore_records");
        reg->datastore_name = strdup("FileDatastore@<butlerRoot>");
        if (!reg->db_path || !reg->datastore_root || !reg->records_table || !reg->datastore_name)
            ret = -ENOMEM;
    }
    bfs_yaml_free(doc);
    fclose(f);
    free(path);
    return ret;
}

/* ---- open / close -------------------------------------------------------- */

/* engine: SQLite only.  A file that is not an SQLite database at all is
 * named as such before SQLite opens it (SQLite would open it and fail later,
 * with a less clear message). */
static int check_sqlite_file(const char *path, char **errmsg)
{
    char magic[16];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = -errno;
        bfs_set_errmsg(errmsg, "cannot open registry database %s: %s", path, strerror(-e));
        return e;
    }
    ssize_t n = read(fd, magic, sizeof magic);
    close(fd);
    if (n != (ssize_t)sizeof magic || memcmp(magic, "SQLite format 3", 16) != 0) {
        bfs_set_errmsg(errmsg, "%s is not an SQLite database (corrupt or wrong file)", path);
        return -EBADMSG;
    }
    return 0;
}

/* The universe, after asking whether the table exists at all, so that a
 * database of something else is named in one sentence and no error is
 * logged for it. */
static int load_universe(bfs_registry *reg, db_conn *db, char **errmsg)
{
    int has = db_table_exists(db, "butler_attributes");
    if (has <= 0) {
        bfs_set_errmsg(errmsg, "%s is not a Butler registry (%s)", reg->db_path,
                       has < 0 ? strerror(-has) : "no such table: butler_attributes");
        return has < 0 ? has : -EINVAL;
    }
    db_stmt *st = db_prepare(db, "SELECT value FROM butler_attributes WHERE name = 'config:dimensions.json'");
    int rc = st ? db_step(st) : -EIO;
    if (rc != DB_ROW) {
        bfs_set_errmsg(errmsg, "%s is not a Butler registry: %s", reg->db_path,
                rc == DB_DONE ? "butler_attributes holds no dimension universe" : strerror(-rc));
        if (st)
            db_reset(st);
        return -EINVAL;
    }
    int ret = reg_universe_load(reg, db_column_text(st, 0), errmsg);
    db_reset(st);
    return ret;
}

int bfs_registry_open(const char *repo, int flags, bfs_registry **out, char **errmsg)
{
    return bfs_registry_open_opts(repo, flags, NULL, out, errmsg);
}

int bfs_registry_open_opts(const char *repo, int flags, const bfs_registry_opts *opts, bfs_registry **out,
                           char **errmsg)
{
    struct stat sb;
    char real[PATH_MAX];
    *out = NULL;
    if (stat(repo, &sb) < 0) {
        int e = -errno;
        bfs_set_errmsg(errmsg, "repository %s: %s", repo, strerror(-e));
        return e;
    }
    if (!S_ISDIR(sb.st_mode)) {
        bfs_set_errmsg(errmsg, "repository %s is not a directory (give the directory holding butler.yaml)", repo);
        return -ENOTDIR;
    }
    if (access(repo, R_OK | X_OK) < 0) {
        int e = -errno;
        bfs_set_errmsg(errmsg, "repository %s is not readable: %s", repo, strerror(-e));
        return e;
    }
    if (!realpath(repo, real)) {
        int e = -errno;
        bfs_set_errmsg(errmsg, "repository %s: %s", repo, strerror(-e));
        return e;
    }

    bfs_registry *reg = calloc(1, sizeof *reg);
    if (!reg)
        return -ENOMEM;
    reg->writable = flags & BFS_REG_WRITE;
    reg->repo_dir = strdup(real);
    pthread_mutex_init(&reg->lock, NULL);

    int ret = read_butler_yaml(reg, errmsg);
    if (ret == 0 && !reg->pg_url)
        ret = check_sqlite_file(reg->db_path, errmsg);
    if (ret == 0) {
        struct db_options o = {.kind = reg->pg_url ? DB_POSTGRESQL : DB_SQLITE, .sqlite_path = reg->db_path,
                               .url = reg->pg_url, .namespace = reg->pg_namespace, .writable = reg->writable};
        if (opts) {
            o.max_connections = opts->connections;
            o.idle_close_ms = (int)opts->idle_close_ms;
            o.connect_timeout_ms = (int)opts->connect_timeout_ms;
            o.statement_timeout_ms = (int)opts->statement_timeout_ms;
        }
        ret = db_engine_open(&o, &reg->db, errmsg);
    }
    db_conn *db = NULL;
    if (ret == 0 && !(db = reg_db(reg))) {
        bfs_set_errmsg(errmsg, "cannot open registry database %s", reg->db_path);
        ret = -EIO;
    }
    if (ret == 0)
        ret = load_universe(reg, db, errmsg);
    if (ret == 0) {
        ret = reg_catalog_load(reg, db);
        if (ret < 0)
            bfs_set_errmsg(errmsg, "%s: cannot read collections and dataset types (%s); "
                    "is this a daf_butler registry?", reg->db_path, strerror(-ret));
    }
    if (ret < 0) {
        bfs_registry_close(reg);
        return ret;
    }
    *out = reg;
    return 0;
}

void bfs_registry_close(bfs_registry *reg)
{
    if (!reg)
        return;
    db_engine_close(reg->db);
    reg_catalog_free_all(reg);
    for (int i = 0; i < reg->ndims; i++) {
        free((char *)reg->dims[i].name);
        free((char *)reg->dims[i].key);
        for (int j = 0; j < reg->dims[i].n_alt; j++)
            free((char *)reg->dims[i].alt_keys[j]);
    }
    free(reg->dims);
    free(reg->dims_by_name);
    json_decref(reg->universe_json);
    free(reg->universe_namespace);
    pthread_mutex_destroy(&reg->lock);
    free(reg->repo_dir);
    free(reg->db_path);
    bfs_dburl_free(reg->pg_url);
    free(reg->pg_url);
    free(reg->pg_namespace);
    free(reg->datastore_root);
    free(reg->records_table);
    free(reg->datastore_name);
    free(reg);
}

const char *bfs_registry_repo_dir(const bfs_registry *reg) { return reg->repo_dir; }
const char *bfs_registry_datastore_root(const bfs_registry *reg) { return reg->datastore_root; }
const char *bfs_registry_db_path(const bfs_registry *reg) { return reg->db_path; }
