/*
 * registry.h - the daf_butler SQLite registry, read and written as the
 * Python Butler does.  This module is the only code that includes sqlite3.
 *
 * A repository is a directory holding butler.yaml; that file names the
 * SQLite database (registry.db) and the datastore root (datastore.root) and
 * the datastore records table (datastore.records.table).  Nothing in the
 * schema that the registry itself stores is hard-coded here: tag and
 * calibration table names come from dataset_type, the dimension universe
 * from butler_attributes' "config:dimensions.json", and dataset type
 * dimensions from dimension_graph_definition.
 *
 * Errors: functions return 0 (or a count) on success and a negative errno
 * on failure.  SQLite result codes are translated to errno in one place
 * (registry_i.h: reg_errno()) where the detail is logged once.
 *
 * Threads: a bfs_registry is shared by all threads.  Each thread gets its
 * own SQLite connection on first use; connections are closed by
 * bfs_registry_close().  The journal mode is the repository's own and is
 * never changed here: daf_butler's SQLite repositories use "delete", where
 * a reader waits (busy_timeout, 10 s) while another process commits, so
 * readers do block on writers (docs/ingest.md, "Journal mode").  Catalog snapshots
 * (collections and dataset types) are immutable; a refresh publishes a new
 * one and keeps the old ones alive until close, so a pointer obtained from a
 * catalog stays valid for the registry's lifetime.
 *
 * Ownership: strings in bfs_dataset_file passed to a callback are valid only
 * during that callback.  Everything reached from a catalog or the universe
 * is owned by the registry.
 */
#ifndef BFS_REGISTRY_H
#define BFS_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BFS_MAX_DIMS 16     /* required dimensions of one dataset type */
#define BFS_MAX_VALUE 256   /* longest dimension value, including NUL */

typedef struct bfs_registry bfs_registry;

enum bfs_open_flags {
    BFS_REG_READONLY = 0,
    BFS_REG_WRITE = 1,  /* open read-write (init, demo, ingest) */
};

/*
 * Open the repository in directory repo.  On failure returns -errno and,
 * when errmsg is not NULL, sets *errmsg to a malloc'd sentence naming the
 * problem and what to do (caller frees).  Checks: the directory exists and
 * is readable, butler.yaml parses and names an SQLite registry, the file is
 * an SQLite database with a Butler schema and a dimension universe.
 */
int bfs_registry_open(const char *repo, int flags, bfs_registry **out, char **errmsg);

/* Limits of a PostgreSQL registry's connections (the configuration's
 * registry: section, docs/config.md); a 0 field takes the default. */
typedef struct bfs_registry_opts {
    int connections;              /* server connections at most (4) */
    int64_t idle_close_ms;        /* a connection idle this long is closed (60 s) */
    int64_t connect_timeout_ms;   /* (10 s) */
    int64_t statement_timeout_ms; /* each query and each wait for a connection (30 s) */
} bfs_registry_opts;

/* bfs_registry_open with those limits (o may be NULL: the defaults).  The
 * registry may also be PostgreSQL: registry.db a postgresql:// URL and
 * registry.namespace the schema, as daf_butler writes them; the password
 * from the URL, the Butler's db-auth.yaml or libpq's conventions
 * (registry/dbauth.h).  The checks then are: the server answers and the
 * credentials are good, the namespace exists, it holds a Butler registry. */
int bfs_registry_open_opts(const char *repo, int flags, const bfs_registry_opts *o, bfs_registry **out,
                           char **errmsg);
void bfs_registry_close(bfs_registry *reg);

/* Absolute path of the repository directory. */
const char *bfs_registry_repo_dir(const bfs_registry *reg);
/* Datastore root with <butlerRoot> expanded: an absolute directory, or a URI
 * ("s3://...", "https://...") when the datastore is remote.  Ends in '/'. */
const char *bfs_registry_datastore_root(const bfs_registry *reg);
/* Path of the SQLite database file; for a PostgreSQL registry, its URL
 * (never with a password) and namespace, which names no file. */
const char *bfs_registry_db_path(const bfs_registry *reg);

/* ---- dimension universe ------------------------------------------------ */

typedef enum { BFS_KEY_INT, BFS_KEY_STRING } bfs_key_type;

typedef struct bfs_dimension {
    const char *name;        /* "exposure" */
    int index;               /* position in the universe's dimension order */
    bfs_key_type type;       /* type of the primary key */
    const char *key;         /* primary key column of its table: "id", "name" */
    const char *alt_keys[4]; /* alternate unique keys: "obs_id", "full_name" */
    int n_alt;
    const struct bfs_dimension *requires[4]; /* dimensions that key its table */
    int n_requires;
    bool has_table;          /* false for skypix and view-only dimensions */
} bfs_dimension;

int bfs_registry_universe_version(const bfs_registry *reg);
const char *bfs_registry_universe_namespace(const bfs_registry *reg);
int bfs_registry_dimension_count(const bfs_registry *reg);
const bfs_dimension *bfs_registry_dimension(const bfs_registry *reg, int i);
const bfs_dimension *bfs_registry_dimension_by_name(const bfs_registry *reg, const char *name);

/* ---- catalog: collections and dataset types ---------------------------- */

typedef enum {
    BFS_COLL_RUN = 1,
    BFS_COLL_TAGGED = 2,
    BFS_COLL_CHAINED = 3,
    BFS_COLL_CALIBRATION = 4,
} bfs_collection_type;

typedef struct bfs_collection {
    int64_t id;
    const char *name;
    bfs_collection_type type;
    const char *doc;
    /* For CHAINED: the children in search order; otherwise n_children is 0. */
    const struct bfs_collection **children;
    int n_children;
    /* Its chain reaches a cycle (only a damaged or hostile registry has
     * one; the catalog load logs each once): queries under it fail with
     * -ELOOP. */
    bool cyclic;
} bfs_collection;

typedef struct bfs_dataset_type {
    int64_t id;
    const char *name;
    const char *storage_class;
    int64_t dimensions_key;
    int ndims;                               /* required dimensions ... */
    const bfs_dimension *dims[BFS_MAX_DIMS]; /* ... in universe order */
    const char *tags_table;
    const char *calibs_table;                /* NULL when not a calibration type */
} bfs_dataset_type;

typedef struct bfs_catalog {
    size_t ncollections;
    const bfs_collection *collections;       /* sorted by name */
    size_t ndataset_types;
    const bfs_dataset_type *dataset_types;   /* sorted by name */
    uint64_t generation;                     /* increases with each reload */
} bfs_catalog;

/* The current snapshot (never NULL after a successful open). */
const bfs_catalog *bfs_registry_catalog(bfs_registry *reg);
/* Reload the catalog when another process changed the database since the
 * last load.  Returns 1 when a new snapshot was published, 0 when nothing
 * changed, -errno on failure (the old snapshot stays current). */
int bfs_registry_refresh(bfs_registry *reg);

const bfs_collection *bfs_catalog_collection(const bfs_catalog *cat, const char *name);
const bfs_collection *bfs_catalog_collection_by_id(const bfs_catalog *cat, int64_t id);
const bfs_dataset_type *bfs_catalog_dataset_type(const bfs_catalog *cat, const char *name);

/* ---- dataset queries ------------------------------------------------------
 *
 * A dataId is an array of BFS_MAX_DIMS value strings parallel to dt->dims;
 * NULL entries are unconstrained.  Values are the dimension's primary key
 * written as text (decimal for integer keys).
 *
 * CHAINED collections are searched in order and the first child collection
 * holding a dataset with a given full dataId wins (Butler find-first).
 * CALIBRATION collections may hold several datasets per dataId, told apart
 * by their validity range.
 */

/* 1 when collection c holds at least one dataset of type dt, 0 when not. */
int bfs_registry_collection_has(bfs_registry *reg, const bfs_collection *c,
                                const bfs_dataset_type *dt);

/* Call cb, in name order, for each dataset type with at least one dataset
 * in c.  The collection summary tables give the candidates; each one is
 * then checked, so a stale summary never shows an empty directory. */
typedef int (*bfs_dtype_cb)(void *ctx, const bfs_dataset_type *dt);
int bfs_registry_dataset_types_in(bfs_registry *reg, const bfs_collection *c,
                                  bfs_dtype_cb cb, void *ctx);

/* Call cb once per distinct value of dt->dims[k] among datasets of dt in c
 * matching the constrained entries of values[], in ascending order.
 * A non-zero return from cb stops the iteration and is returned. */
typedef int (*bfs_value_cb)(void *ctx, const char *value);
int bfs_registry_list_values(bfs_registry *reg, const bfs_collection *c,
                             const bfs_dataset_type *dt, const char *const values[], int k,
                             bfs_value_cb cb, void *ctx);

typedef struct bfs_dataset_file {
    char id[33];                /* dataset id, 32 lowercase hex */
    int64_t collection_id;      /* the collection the match was found in */
    int64_t run_id;
    const char *values[BFS_MAX_DIMS]; /* full dataId, parallel to dt->dims */
    const char *component;      /* NULL when the record has no component */
    const char *path;           /* as stored: relative to the datastore root, or a URI */
    int64_t file_size;          /* -1 when the registry does not know it */
    const char *checksum;       /* NULL when none */
    int64_t ingest_unix;        /* ingest time, Unix seconds (0 if unknown) */
    bool has_timespan;          /* calibration validity (TAI ns) */
    int64_t timespan_begin, timespan_end;
} bfs_dataset_file;

/* Call cb for every file record of every dataset of dt in c matching the
 * constrained entries of values[] (find-first across chains per full
 * dataId), ordered by dataId.  A dataset with several file records
 * (disassembled components) gives one call per record. */
typedef int (*bfs_file_cb)(void *ctx, const bfs_dataset_file *f);
int bfs_registry_find_files(bfs_registry *reg, const bfs_collection *c,
                            const bfs_dataset_type *dt, const char *const values[],
                            bfs_file_cb cb, void *ctx);

/* Resolve an alternate key (e.g. exposure obs_id "MC_O_20250415_000060",
 * detector full_name "R22_S11") to the primary key value written into out.
 * Entries of values[] that fix dimensions the dimension's table requires
 * (instrument) narrow the search.  -ENOENT when nothing or more than one
 * record matches. */
int bfs_registry_resolve_alias(bfs_registry *reg, const bfs_dataset_type *dt,
                               const char *const values[], const bfs_dimension *dim,
                               const char *alias, char *out, size_t outsz);

/* ---- one dataset by its id (export, docs/transfer.md "Sidecars") ------ */

/* One file record of a dataset, with what a sidecar needs.  Strings are
 * valid during the callback only; dt is the catalog's (registry-owned). */
typedef struct bfs_dataset_record {
    char id[33];                      /* 32 lowercase hex */
    const bfs_dataset_type *dt;
    const char *run;                  /* its RUN collection */
    const char *values[BFS_MAX_DIMS]; /* required dataId, parallel to dt->dims */
    const char *component;           /* NULL when the record has none */
    const char *path;                 /* as stored: relative to the datastore root, or a URI */
    const char *formatter;            /* "" when the record has none */
    const char *storage_class;        /* the record's; "" when none */
    const char *checksum;             /* NULL when none */
    int64_t file_size;                /* -1 unknown */
} bfs_dataset_record;
typedef int (*bfs_dataset_record_cb)(void *ctx, const bfs_dataset_record *r);

/* Call cb for each file record of dataset id (32 hex digits; dashes and
 * upper case accepted; ids stored as text or as 16-byte BLOBs), in
 * component order.  cb's non-zero return stops and is returned.  -EINVAL
 * for a malformed id, -ENOENT when there is no such dataset (or it has no
 * file record, or its type or run is not in the catalog even after a
 * refresh), negative errno on a database error. */
int bfs_registry_dataset_records(bfs_registry *reg, const char *id, bfs_dataset_record_cb cb, void *ctx);
/* The instrument of dataset id's dataId into out ("" when its dataset type
 * has no instrument dimension): 0, or the errors above (-ENAMETOOLONG when
 * it does not fit). */
int bfs_registry_dataset_instrument(bfs_registry *reg, const char *id, char *out, size_t outsz);

/* The dataId of a dataset of dt with the required values values[]
 * (parallel to dt->dims), expanded as daf_butler's
 * DataCoordinate.to_simple() writes it (SerializedDataCoordinate), into
 * *json_out (malloc'd JSON text, caller frees):
 *   {"dataId": {dim: value, ...}, "records": {element: {"definition":
 *    element, "record": {column: value, ...}}, ...}}
 * dataId: the required dimensions (dt order), then the implied ones found
 * in the records (universe order); integer keys as JSON integers, string
 * keys as strings.  records: one per dimension of the dataId that has a
 * table (every column, typed by the universe; a temporal element's
 * timespan as [begin, end] TAI ns, or null; a region as hex), and for a
 * dimension that is a view (band) the record {key: value}.  Skypix
 * dimensions and join-only elements get no record.  A record the registry
 * lacks is left out.  0, -ENOMEM, -EILSEQ (a text column that is not
 * UTF-8), negative errno on a database error. */
int bfs_registry_data_coordinate_json(bfs_registry *reg, const bfs_dataset_type *dt,
                                      const char *const values[], char **json_out);

/* ---- creating repositories and writing records ---------------------------
 *
 * bfs_registry_init creates DIR (if needed), DIR/butler.yaml and
 * DIR/gen3.sqlite3 holding the empty schema that the Python Butler creates
 * for dimension universe 7 (namespace daf_butler), with the same manager
 * versions.  -EEXIST when DIR already holds a butler.yaml.
 *
 * The write functions need a registry opened with BFS_REG_WRITE (-EROFS
 * otherwise).  Each one is atomic on its own; bracket several with
 * begin/commit for one transaction (rollback on any failure).  Re-adding an
 * identical dimension record, collection, chain, dataset type, association
 * or certification is not an error (returns 0); a conflicting one is
 * -EEXIST.  A record referred to that does not exist (collection, dataset,
 * dimension record) is -ENOENT.  Catalog snapshots are not updated by
 * writes: call bfs_registry_refresh() to see new collections and types.
 */
int bfs_registry_init(const char *dir, char **errmsg);

int bfs_registry_begin(bfs_registry *reg);
int bfs_registry_commit(bfs_registry *reg);
void bfs_registry_rollback(bfs_registry *reg);

typedef struct bfs_instrument_record {
    const char *name;
    int64_t visit_max, exposure_max, detector_max, visit_system;
    const char *class_name;
} bfs_instrument_record;

typedef struct bfs_detector_record {
    const char *instrument;
    int64_t id;
    const char *full_name, *raft, *name_in_raft, *purpose;
} bfs_detector_record;

typedef struct bfs_exposure_record {
    const char *instrument;
    int64_t id;
    const char *obs_id;
    const char *physical_filter;
    const char *group;          /* inserted into the group table when missing */
    int64_t day_obs;            /* inserted into the day_obs table when missing */
    int64_t seq_num;
    int64_t seq_start, seq_end; /* the sequence's first and last seq_num; both 0: seq_num */
    double exposure_time, dark_time; /* dark_time NAN = NULL */
    const char *observation_type, *observation_reason, *target_name, *science_program;
    double tracking_ra, tracking_dec, sky_angle, azimuth, zenith_angle; /* NAN = NULL */
    bool has_simulated;
    int can_see_sky;            /* 1 yes, 0 no, -1 unknown (NULL) */
    int64_t timespan_begin, timespan_end; /* TAI ns */
} bfs_exposure_record;

/* Whether a dimension record exists: element "instrument" (key = its name,
 * instrument NULL), "detector", "exposure" or "visit" (key = the id, decimal) or
 * "physical_filter" (key = the name), of instrument.  1 when it exists, 0
 * when not, -EINVAL for another element, negative errno on failure. */
int bfs_registry_has_record(bfs_registry *reg, const char *element, const char *instrument,
                            const char *key);

/* One column of a dimension record of instrument, as text, into out:
 * element "exposure" or "visit" (key = the id; columns obs_id, group,
 * day_obs, physical_filter, where the universe has them), "exposure" by
 * obs_id (key = the obs_id; column id), "detector" (key = the id;
 * full_name, raft, name_in_raft, purpose) or "physical_filter" (key = the
 * name; band).  0, -ENOENT when the record or column is not there, -EINVAL
 * for another element or column, -ENAMETOOLONG when it does not fit. */
int bfs_registry_record_text(bfs_registry *reg, const char *element, const char *instrument,
                             const char *key, const char *column, char *out, size_t outsz);

/* One column's value of a record for bfs_registry_add_record. */
typedef struct bfs_record_value {
    const char *column;
    enum { BFS_VAL_NULL, BFS_VAL_INT, BFS_VAL_REAL, BFS_VAL_TEXT } type;
    int64_t i;
    double f;
    const char *s;
} bfs_record_value;

/* Insert a record of dimension element (a dimension of the universe with
 * a table of its own) from n column values, unless an equal row exists:
 * records that travel with a replica (writers/sidecar.h).  0 when inserted
 * or identical; -EEXIST when a row with the same key differs (the
 * repository's record is kept); -EINVAL for another element or a column
 * its table does not have (logged); negative errno. */
int bfs_registry_add_record(bfs_registry *reg, const char *element, const bfs_record_value *v, int n);
/* After one of the bfs_registry_add_* calls above returned -EEXIST (a
 * record with the same key differs): the columns in which it differs from
 * the repository's, comma separated ("observation_reason, timespan"; "..."
 * ends a list too long to hold), or "" when the probes for them failed.  Per thread; the string is the
 * registry's, valid until this thread's next add call. */
const char *bfs_registry_conflict(void);

/* Every dataset file of the RUN collections whose names match run_glob
 * (SQLite GLOB: *, ?, [...]), in no particular order: its id (32 lowercase
 * hex digits), run, dataset type, datastore path (relative, or a URI),
 * recorded size (-1 unknown) and ingest time (TAI ns; 0 unknown).  cb's
 * non-zero return stops the walk and is returned.  Negative errno on a
 * database error.  Strings are valid during the callback only. */
typedef struct bfs_run_file {
    const char *dataset_id, *run, *dataset_type, *path;
    int64_t size, ingest_ns;
} bfs_run_file;
typedef int (*bfs_run_file_cb)(void *ctx, const bfs_run_file *f);
int bfs_registry_each_run_file(bfs_registry *reg, const char *run_glob, bfs_run_file_cb cb, void *ctx);

/* The same walk in pages, for a walk that must not keep one read open over
 * the whole registry (SQLite's rollback journal: an open read holds off
 * every writer's commit) nor the whole registry in memory: the files of
 * the next at most max_datasets datasets of RUN collections matching
 * run_glob after *cursor, in the order of the dataset table's primary key
 * (a dataset's files together), as one statement.  A zeroed cursor starts
 * at the first dataset; each dataset delivered moves it past (before cb
 * sees the dataset's first file, so a cursor copied there resumes after
 * it).  A dataset without file records moves it too, unseen.  *ndatasets
 * gets how many datasets the page held (fewer than max_datasets: the walk
 * is at its end).  Returns 0, cb's non-zero return (the walk stopped
 * inside the page), or negative errno (-ENOTSUP for a registry that stores
 * ids as BLOBs, which daf_butler does not). */
typedef struct bfs_dataset_cursor {
    bool started;  /* false: from the first dataset */
    char key[40];  /* the last dataset id as the registry stores it, bound
                    * as text: 32 hex digits in SQLite; PostgreSQL's uuid
                    * (read as 32 hex digits, which it takes back as uuid) */
} bfs_dataset_cursor;
int bfs_registry_each_run_file_page(bfs_registry *reg, const char *run_glob, bfs_dataset_cursor *cursor,
                                    int max_datasets, bfs_run_file_cb cb, void *ctx, int *ndatasets);

/* How many datasets the registry holds (every collection): 0 or negative
 * errno. */
int bfs_registry_count_datasets(bfs_registry *reg, int64_t *n);

/* Remove a dataset (32 hex digits; dashes and upper case accepted) from
 * the registry, as the Butler's prune does with its records: its
 * dataset_location rows and file records (the datastore records table),
 * then its dataset row, whose tag and calibration rows go with it (their
 * foreign keys cascade).  The files are not touched (the caller unlinks
 * them after the commit: a file without a record is garbage, a record
 * without its file a broken dataset).  Collection summaries are left as
 * they are (they may over-state; readers check).  0, -ENOENT when there is
 * no such dataset, -EINVAL for a malformed id, -EBUSY when another row
 * still refers to it (a table with a foreign key that does not cascade).
 * Atomic; inside begin/commit a savepoint. */
int bfs_registry_remove_dataset(bfs_registry *reg, const char *dataset_id);
/* A dataset id as registries store it: 32 lowercase hex digits into out (a
 * dashed or upper-case UUID is accepted).  0, or -EINVAL. */
int bfs_registry_normalize_id(const char *in, char out[33]);
/* 1 when the dataset exists, 0 when not, negative errno. */
int bfs_registry_has_dataset(bfs_registry *reg, const char *dataset_id);
/* 1 when a file record of any dataset has this datastore path, 0 when
 * none, negative errno. */
int bfs_registry_path_referenced(bfs_registry *reg, const char *path);

int bfs_registry_add_instrument(bfs_registry *reg, const bfs_instrument_record *r);
int bfs_registry_add_detector(bfs_registry *reg, const bfs_detector_record *r);
int bfs_registry_add_physical_filter(bfs_registry *reg, const char *instrument,
                                     const char *name, const char *band);
int bfs_registry_add_exposure(bfs_registry *reg, const bfs_exposure_record *r);

/* Create a RUN collection (idempotent); *id_out gets its collection_id.
 * Same as bfs_registry_add_collection(reg, name, BFS_COLL_RUN, NULL, id_out). */
int bfs_registry_add_run(bfs_registry *reg, const char *name, int64_t *id_out);

/* Create a collection of any type with an optional doc string; *id_out
 * (may be NULL) gets its collection_id.  A RUN also gets its run row.  A
 * CHAINED collection starts with no children (bfs_registry_set_chain).
 * Idempotent: 0 when a collection of that name and type exists and, when
 * doc is not NULL, has the same doc (a NULL doc matches any); -EEXIST when
 * its type or doc differs.  -EINVAL for an empty name or an unknown type. */
int bfs_registry_add_collection(bfs_registry *reg, const char *name, bfs_collection_type type,
                                const char *doc, int64_t *id_out);

/* Replace the children of CHAINED collection parent with children[0..n-1]
 * (search order; stored at positions 0..n-1; n may be 0).  A child named
 * twice keeps its first position.  -ENOENT when parent or a child does not
 * exist, -EINVAL when parent is not CHAINED, -ELOOP when a child is parent
 * or reaches it through its own chains (the chain would be a cycle).
 * Setting the chain it already has is 0 and changes nothing. */
int bfs_registry_set_chain(bfs_registry *reg, const char *parent, const char *const *children,
                           int n);

/* Add an existing dataset (32 hex digits; dashes and upper case accepted)
 * to TAGGED collection tagged, with the dataId it has in its run, and keep
 * the collection summaries true.  0 when added or already a member;
 * -EEXIST when another dataset of that type has the same dataId in tagged
 * (one dataset per dataId and type, as in the Butler); -ENOENT when the
 * collection or dataset does not exist; -EINVAL when tagged is not TAGGED
 * or the id is malformed. */
int bfs_registry_associate(bfs_registry *reg, const char *tagged, const char *dataset_id);

/* Open ends of a validity range as daf_butler stores them (TAI ns): the
 * epoch and 2100-01-01, the calibration table's column defaults. */
#define BFS_TIMESPAN_UNBOUNDED_BEGIN INT64_C(0)
#define BFS_TIMESPAN_UNBOUNDED_END INT64_C(4102444800000000000)

/* Certify an existing dataset in CALIBRATION collection calib as valid over
 * [begin_tai_ns, end_tai_ns) (TAI ns; the BFS_TIMESPAN_UNBOUNDED_* values
 * for open ends): a row of its dataset type's calibration table with the
 * dataId it has in its run, and the collection summaries kept true.  0 when
 * certified, or already certified with exactly that range; -EEXIST when the
 * range overlaps one already certified in calib for the same dataset type
 * and dataId (the Butler allows one dataset per dataId at any time);
 * -ENOENT when the collection or dataset does not exist; -EINVAL when calib
 * is not CALIBRATION, the dataset type is not a calibration type, the id is
 * malformed or begin_tai_ns >= end_tai_ns. */
int bfs_registry_certify(bfs_registry *reg, const char *calib, const char *dataset_id,
                         int64_t begin_tai_ns, int64_t end_tai_ns);

/* Register a dataset type with the given required dimension names (any
 * order; stored in universe order), creating its tag (and, when
 * is_calibration, calibration) tables as the Python Butler names them. */
int bfs_registry_add_dataset_type(bfs_registry *reg, const char *name,
                                  const char *storage_class, const char *const dims[],
                                  int ndims, bool is_calibration);

typedef struct bfs_new_dataset {
    const char *dataset_type;
    const char *run;
    const char *const *dim_names;  /* ndims names ... */
    const char *const *dim_values; /* ... and values (text) */
    int ndims;
    const char *path;          /* relative to the datastore root, or a URI */
    const char *formatter;     /* e.g. "lsst.obs.lsst.rawFormatter.LsstCamRawFormatter" */
    const char *storage_class; /* NULL: the dataset type's */
    int64_t file_size;         /* -1 when unknown */
    const char *checksum;      /* NULL when none */
    const char *id;            /* 32 lowercase hex digits: this id (a replica's); NULL: the UUIDv5 */
} bfs_new_dataset;

/* Insert a dataset with a deterministic id (UUIDv5 over dataset type, run
 * and dataId, as raw ingest does; or d->id), its tag row, its file record, its
 * dataset_location row and the collection summaries.  id_out (33 bytes)
 * receives the id.  -EEXIST when that dataset already exists. */
int bfs_registry_add_dataset(bfs_registry *reg, const bfs_new_dataset *d, char id_out[33]);

/* The checksum daf_butler's file datastore records for a file (its
 * `checksum` column: BLAKE2b-512, 128 lowercase hex digits) of the size
 * bytes of fd, read with pread from offset 0.  0 or negative errno. */
int bfs_file_checksum(int fd, int64_t size, char out[129]);

/* The same checksum built piece by piece, as the bytes arrive: bytes
 * appended in order with bfs_checksum_update, then bfs_checksum_hex.
 * new: NULL when out of memory; free: NULL is fine.  update and add:
 * 0, -ENOMEM (the state is then unusable: start again).  bfs_checksum_add
 * appends bytes [from, from + size) of fd, read as bfs_pread_chunks
 * (common/fdio.h) reads them: into buf, the caller's to reuse, or one of
 * its own when buf is NULL; -errno of the read, -EIO at an early end.  hex: 0, or
 * negative errno; the state is finished either way (only free is left).
 * One thread at a time per state. */
typedef struct bfs_checksum bfs_checksum;
bfs_checksum *bfs_checksum_new(void);
int bfs_checksum_update(bfs_checksum *c, const void *buf, size_t len);
int bfs_checksum_add(bfs_checksum *c, int fd, int64_t from, int64_t size, void *buf, size_t buflen);
int bfs_checksum_hex(bfs_checksum *c, char out[129]);
void bfs_checksum_free(bfs_checksum *c);

/* The deterministic dataset id alone (no database access). */
int bfs_dataset_id_v5(const char *dataset_type, const char *run, const char *const *dim_names,
                      const char *const *dim_values, int ndims, char id_out[33]);

/* ---- copying a registry into PostgreSQL (registry/copy.c) --------------
 *
 * bfs_registry_copy copies the SQLite registry of the repository src_repo,
 * schema and rows, into the namespace ns (a PostgreSQL schema, made when
 * missing; NULL = "public") of the database db_url, in the form daf_butler
 * gives PostgreSQL (uuid ids, int8range timespans, the calibration
 * exclusion constraints), in one transaction; then writes dst_dir/butler.yaml
 * naming that database (without any password) and namespace, with datastore
 * root `root` (NULL: the source's root as an absolute location, so both
 * repositories share the files).  The password comes from db_url, the
 * Butler's db-auth.yaml or libpq's conventions (registry/dbauth.h).
 * progress, when not NULL, is called after each table.  -EEXIST when
 * dst_dir/butler.yaml exists or the namespace already holds a registry;
 * other -errno with *errmsg a sentence.
 */
typedef void (*bfs_copy_progress_cb)(void *ctx, const char *table, int done, int total, int64_t rows);
int bfs_registry_copy(const char *src_repo, const char *dst_dir, const char *db_url, const char *ns,
                      const char *root, bfs_copy_progress_cb progress, void *ctx, char **errmsg);

#endif
