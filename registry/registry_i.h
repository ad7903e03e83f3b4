/*
 * registry_i.h - internals shared by the files of the registry module.
 *
 * Lock order: reg->lock (catalog publication, connection list) is a leaf
 * lock; it is never held while a query runs.
 */
#ifndef BFS_REGISTRY_I_H
#define BFS_REGISTRY_I_H

#include "registry.h"

#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>

#define REG_TAG "registry"

struct reg_conn;

/* One loaded catalog snapshot; older ones are chained through prev. */
struct reg_catalog {
    bfs_catalog pub;
    bfs_collection *colls;
    bfs_dataset_type *dtypes;
    struct reg_catalog *prev;
};

struct bfs_registry {
    char *repo_dir;        /* absolute, no trailing slash */
    char *db_path;
    char *datastore_root;  /* absolute dir or URI, with trailing '/' */
    char *records_table;   /* datastore records table, from butler.yaml */
    char *datastore_name;  /* for dataset_location rows ("FileDatastore@<butlerRoot>") */
    bool writable;

    /* universe */
    int universe_version;
    char *universe_namespace;
    int ndims;
    bfs_dimension *dims;   /* universe order */
    const bfs_dimension **dims_by_name; /* the same, sorted by name (then universe order) */
    json_t *universe_json; /* as stored */

    pthread_key_t conn_key;
    pthread_mutex_t lock;
    struct reg_conn *conns;          /* every connection opened, for close */
    struct reg_catalog *_Atomic catalog;
    char catalog_fp[256];            /* fingerprint of the tables at last load (under lock) */
};

/* The calling thread's connection (opened on first use); NULL when opening
 * failed (logged). */
sqlite3 *reg_db(bfs_registry *reg);

/* Prepare (or fetch from the per-connection cache) a statement for sql.
 * The statement is reset and its bindings cleared.  Do not finalize it. */
sqlite3_stmt *reg_prepare(bfs_registry *reg, const char *sql);

/* Translate an SQLite result code into -errno, logging the detail once
 * with the statement or action named in what. */
int reg_errno(sqlite3 *db, int rc, const char *what);

/* Open a connection to path with flags; -errno and a message on failure. */
int reg_open_db(const char *path, bool writable, sqlite3 **out, char **errmsg);

/* Parse the universe JSON (config:dimensions.json) into reg->dims. */
int reg_universe_load(bfs_registry *reg, const char *json_text, char **errmsg);

/* Load a new catalog snapshot from the database. */
int reg_catalog_load(bfs_registry *reg, sqlite3 *db);

/* Free every catalog snapshot (at close). */
void reg_catalog_free_all(bfs_registry *reg);

/* A dataset id as stored: 32 lowercase hex digits into out (a dashed or
 * upper-case UUID is accepted).  0, or -EINVAL. */
int reg_normalize_dataset_id(const char *in, char out[33]);

/* Quote an SQL identifier into a malloc'd string ("group" -> "\"group\""). */
char *reg_quote_ident(const char *name);

#endif
