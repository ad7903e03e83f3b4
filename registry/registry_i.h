/*
 * registry_i.h - internals shared by the files of the registry module.
 *
 * Every file reaches the database through the engine seam (db.h); none
 * knows which engine is below.
 *
 * Lock order: reg->lock (catalog publication) is a leaf lock; it is never
 * held while a query runs.  The engine's own lock (db.c) is a leaf too.
 */
#ifndef BFS_REGISTRY_I_H
#define BFS_REGISTRY_I_H

#include "db.h"
#include "registry.h"

#include <jansson.h>
#include <pthread.h>

#define REG_TAG "registry"

/* One loaded catalog snapshot; older ones are chained through prev. */
struct reg_catalog {
    bfs_catalog pub;
    bfs_collection *colls;
    bfs_dataset_type *dtypes;
    struct reg_catalog *prev;
};

struct bfs_registry {
    char *repo_dir;        /* absolute, no trailing slash */
    char *db_path;         /* the SQLite file; for PostgreSQL the URL without
                              password and the namespace, for messages */
    struct bfs_dburl *pg_url;  /* PostgreSQL: the resolved URL (owned), else NULL */
    char *pg_namespace;        /* PostgreSQL: the namespace (schema) */
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

    db_engine *db;         /* owned; per-thread handles through reg_db() */
    pthread_mutex_t lock;
    struct reg_catalog *_Atomic catalog;
    char catalog_fp[256];            /* fingerprint of the tables at last load (under lock) */
    _Atomic int ingest_ts;           /* dataset.ingest_date takes a timestamp (write.c):
                                        0 not asked yet, 1 no (TAI ns), 2 yes */
};

/* The calling thread's handle (opened on first use, owned by the engine);
 * NULL when opening failed (logged). */
db_conn *reg_db(bfs_registry *reg);

/* db_prepare on the calling thread's handle: the statement is reset, its
 * bindings cleared, and it stays owned by the handle's cache (never freed
 * by the caller).  NULL on failure (logged). */
db_stmt *reg_prepare(bfs_registry *reg, const char *sql);

/* Parse the universe JSON (config:dimensions.json) into reg->dims. */
int reg_universe_load(bfs_registry *reg, const char *json_text, char **errmsg);

/* Load a new catalog snapshot from the database. */
int reg_catalog_load(bfs_registry *reg, db_conn *db);

/* Free every catalog snapshot (at close). */
void reg_catalog_free_all(bfs_registry *reg);


/* Quote an SQL identifier into a malloc'd string ("group" -> "\"group\""). */
char *reg_quote_ident(const char *name);

#endif
