/*
 * writers.h - the write side's one public header: bytes written into a
 * mount become datasets (docs/ingest.md is the design; writers/ingest.c
 * carries the state machine and the crash story at its top).
 *
 * Shape: a transaction per file.  bfs_upload_begin() when the writer
 * creates a name, bfs_upload_pwrite() for its bytes, bfs_upload_seal() when
 * it closes (FLUSH/FSYNC): the seal's outcome is what close(2) returns.
 * bfs_upload_put() drops the caller's reference (RELEASE).
 *
 * No libfuse here and no path parsing: fs/ turns a path into a
 * bfs_ingest_target (run, dataset type, dataId with the read side's aliases
 * resolved) and replies to the kernel; writers/ never sees a mount path.
 *
 * Errors: negative errno, with the meanings of docs/ingest.md's outcome table
 * (EINVAL bad input, EEXIST same dataId with other bytes, EROFS read-only
 * collection, ENOENT unknown dataset type or instrument, ENOSPC, EIO).  The
 * reason in words goes to the log and the event line.
 *
 * Threads: every function may be called from any thread.  Seal callbacks run
 * on the ingest's worker threads.
 */
#ifndef BFS_WRITERS_H
#define BFS_WRITERS_H

#include "config.h"
#include "registry.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- configuration: the `ingest:` section of the configuration file ---- */

typedef struct bfs_ingest_config {
    char **readonly_collections; /* globs (fnmatch); a create or mkdir there is EROFS */
    int n_readonly_collections;
    bool create_dataset_types;   /* path ingest may create an unknown dataset type (false) */
    bool checksums_advisory;     /* a CHECKSUM/DATASUM mismatch is logged, not refused (false) */
    bool drop_pages;             /* page_cache: drop (true): a file's pages leave the page cache once
                                  * it is ingested or quarantined (ingest.c, drop_pages) */
    bool check_amplifiers;       /* a Rubin raw with fewer amplifier HDUs than its detector has is
                                  * refused (true; translate.h) */
    bool allow_remove;           /* an unlink of a dataset's file in the mount removes the dataset
                                  * (false: EPERM; bfs_ingest_remove) */
    char *default_storage_class; /* for a created type when the extension says nothing (NULL) */
    char **corrections;          /* directories of <instrument>-<obsid>.yaml header corrections (none;
                                  * $METADATA_CORRECTIONS_PATH is searched after them) */
    int n_corrections;
    char **staging;              /* directories to hard-link ingested files into (none) */
    int n_staging;
    char *quarantine_dir;        /* NULL: REPO/.butlerfs/quarantine */
    char *events_file;           /* NULL: REPO/.butlerfs/events.jsonl */
    char *webhook;               /* an http(s) URL each event line is POSTed to, or NULL */
    int64_t webhook_queue;       /* 10000 lines at most waiting for the webhook */
    int64_t inbox_ttl_ms;        /* 60000: a written name stays listed in its run this long */
    int64_t registry_deadline_ms; /* 30000: a busy registry past this is EIO */
    int64_t staging_retry_ms;    /* 60000: a failed staging link is tried again after this, doubling to 1 h */
    int workers;                 /* 2 threads validate and register */
    int64_t replica_wait_ms;     /* 3600000: a replica or sidecar whose partner has not come by then is quarantined */
    /* header_service: the per-image YAML merged into raws (docs/ingest.md) */
    char *hs_dir;                /* a directory holding <OBSID>.header (or .yaml), or NULL */
    char *hs_url;                /* an http(s) URL template with {obsid}, or NULL */
    int64_t hs_wait_ms;          /* 10000: how long to wait for the document */
} bfs_ingest_config;

/* Fill c with the defaults above (c owns nothing afterwards). */
void bfs_ingest_config_defaults(bfs_ingest_config *c);
/* Parse the `ingest:` mapping node of y (file: the configuration's name, for
 * messages) into c, which holds the defaults.  0, or -EINVAL with *errmsg =
 * "FILE:LINE: what" naming the key, as common/config.h's rules say. */
int bfs_ingest_config_parse(const bfs_yaml *y, const bfs_yaml_node *section, const char *file,
                            bfs_ingest_config *c, char **errmsg);
void bfs_ingest_config_free(bfs_ingest_config *c);

/* ---- the ingest of one repository ---- */

typedef struct bfs_ingest bfs_ingest;

/* Start ingest for the repository at repo_dir (the directory of
 * butler.yaml), whose datastore root datastore_root is a local directory on
 * the same file system as repo_dir/.butlerfs.  reg (opened with
 * BFS_REG_WRITE) and cfg are borrowed and must outlive the ingest.  Takes the
 * repository's rw lock (-EBUSY when another rw daemon holds it), creates
 * REPO/.butlerfs (0700) and its spool, then finishes every upload a previous
 * daemon left (the crash story) before returning.  transfer (may be NULL)
 * gets the jobs of every dataset registered, before it counts as
 * REGISTERED (transfer.h); http (may be NULL) carries the webhook's POSTs;
 * both must outlive the ingest.  0, or -errno with
 * *errmsg one sentence. */
struct bfs_transfer;
struct bfs_http;
int bfs_ingest_open(const char *repo_dir, const char *datastore_root, bfs_registry *reg,
                    const bfs_ingest_config *cfg, struct bfs_transfer *transfer, struct bfs_http *http,
                    bfs_ingest **out, char **errmsg);
/* What bfs_ingest_open would refuse, checked without keeping anything
 * (for the terminal, before a mount daemonizes): the spool cannot be made,
 * another rw daemon holds the lock (-EBUSY), or the spool and the datastore
 * root are on different file systems (-EXDEV), a staging tree of cfg (may
 * be NULL) cannot be made or is on another file system than the datastore
 * (-EXDEV).  0, or -errno with *errmsg one sentence.  The lock is taken for
 * real by bfs_ingest_open. */
int bfs_ingest_check(const char *repo_dir, const char *datastore_root, const bfs_ingest_config *cfg,
                     char **errmsg);

/* Wait for seals in progress, stop the workers, release the lock.  NULL is fine. */
void bfs_ingest_close(bfs_ingest *ing);

/* Create RUN collection run (mkdir).  0 when made or already a RUN;
 * -EROFS in a read-only collection; -EEXIST when a collection of another
 * type has that name. */
int bfs_ingest_make_run(bfs_ingest *ing, const char *run);

/* Create dataset type name with dimensions dims (universe order, every
 * dimension a member requires among them: the path that names the type
 * gives its whole dataId), when ingest.create_dataset_types allows; the
 * storage class follows the extension of file_name (the table in
 * docs/ingest.md), else ingest.default_storage_class.  0 when made or
 * already defined so; -EPERM when the configuration does not allow it;
 * -EINVAL (with a log line saying why) for a dimension missing from the
 * path, no storage class, or a type defined otherwise. */
int bfs_ingest_make_dataset_type(bfs_ingest *ing, const char *name, const char *const dims[], int ndims,
                                 const char *file_name);

/* True when run matches ingest.readonly_collections. */
bool bfs_ingest_readonly(const bfs_ingest *ing, const char *run);

/* Remove dataset_id of run (an unlink in the mount): its registry rows and
 * its files, crash-safe as local retention removes (retention.h,
 * bfs_retention_remove).  -EPERM unless ingest.allow_remove; -EROFS in a
 * read-only collection; -EBUSY while a destination's transfer of it is not
 * done (or a retention run holds the lock); -ENOENT.  Logged (a notice on
 * success, a warning with the reason on failure). */
int bfs_ingest_remove(bfs_ingest *ing, const char *run, const char *dataset_id);

/* Where a file goes: a RUN collection, and either a dataset type with its
 * full dataId (path ingest) or no dataset type (raw ingest: the dataId
 * comes from the headers). */
typedef struct bfs_ingest_target {
    const char *run;
    const char *dataset_type;        /* NULL: raw */
    const char *const *dim_names;    /* ndims required dimensions of the type ... */
    const char *const *dim_values;   /* ... and their values (aliases resolved) */
    int ndims;
    const char *name;                /* the file name the writer used (one component) */
    const char *dir;                 /* the directory it was written in, relative to the mount's
                                      * root ("" for the root), or NULL: recorded, not parsed
                                      * (a quarantined file's reason file names it) */
    bool replica;                    /* written in BFS_REPLICA_DIR (run is that name): a replica,
                                      * or its sidecar NAME.butler.json (sidecar.h) */
} bfs_ingest_target;

/* The top-level directory of an -o rw mount that takes replicas from other
 * sites, each with its sidecar (docs/transfer.md, "Replica ingest"). */
#define BFS_REPLICA_DIR ".replicas"

/* ---- one upload: OPEN -> SEALED -> ... (ingest.c) ---- */

typedef struct bfs_upload bfs_upload;

/* A writer creates a name.  The spool file and its intent record exist
 * durably when this returns 0; *out holds one reference.  -EROFS read-only
 * collection, -ENOENT unknown run or dataset type (and types may not be
 * created), -ETXTBSY when the same target name is being written already,
 * -EEXIST when a dataset already exists at a path-ingest target. */
int bfs_upload_begin(bfs_ingest *ing, const bfs_ingest_target *t, uid_t uid,
                     bfs_upload **out);
/* The checks a create makes before anything is made for t (its RUN, its
 * dataset type): 0; -EINVAL for a name that is no path component (empty,
 * . or .., a control character), -EILSEQ for a name or dataId value that
 * is not valid UTF-8 (both logged); -EROFS for a read-only collection and
 * -ENOENT for a dataId path whose dimension records the registry lacks
 * (but a raw whose headers may bring them), which the log and an event
 * line ("outcome": "refused") record.  bfs_upload_begin makes all but the
 * registry's again. */
int bfs_upload_may_begin(bfs_ingest *ing, const bfs_ingest_target *t);

/* Find the upload created at target t under the name t->name (or renamed
 * to it) that is open, being ingested, or ingested within inbox_ttl (a
 * refused one is not found: its name may be written again at once); the
 * newest of that name (t->name NULL: of any name at t's place); one more
 * reference.  -ENOENT. */
int bfs_upload_find(bfs_ingest *ing, const bfs_ingest_target *t, bfs_upload **out);
/* Show u under another name in its directory (rsync renames its temporary
 * file after the close that ingested it).  Only the name changes: the
 * dataset, its datastore path and its records stay as they are.  A replica
 * or sidecar (BFS_REPLICA_DIR) pairs by that name: when it is sealed but
 * not yet paired (WAITING) the new name is in its intent before this
 * returns 0, and it pairs with a partner waiting under the matching name.
 * -EINVAL for a name that cannot be one path component; -EBUSY for a
 * replica or sidecar whose seal or pairing is under way; the errno of the
 * intent's write (the old name stays). */
int bfs_upload_rename(bfs_upload *u, const char *name);
void bfs_upload_get(bfs_upload *u);
/* One writer at a time: a descriptor opened for writing takes the upload's
 * writer slot (bfs_upload_begin's creator holds it from the start) and
 * gives it back when that open file is released.  -ETXTBSY while another
 * open file holds it: a second process writing the same name would
 * interleave its bytes, and its close would seal the first writer's file
 * half-written.  (dup'd descriptors share one open file and one slot.)
 * -EPERM once a seal has begun: the bytes are being ingested or were, and
 * an ingested file is immutable (a write would only fail later, EBADF). */
int bfs_upload_take_writer(bfs_upload *u);
void bfs_upload_drop_writer(bfs_upload *u);
/* rm of a name a writer gave: the name goes at once (no lookup or listing
 * finds it, and it may be created again).  A name created and never
 * written (touch) takes its upload, which holds nothing, with it (dropped
 * with its last reference); an ingested file's name goes alone, its dataset
 * stays at its dataId path (tar x unlinks a name it extracts again).  -EBUSY while
 * a descriptor holds it open for writing with nothing written; -EPERM for
 * bytes not yet ingested (they are ingested or quarantined, never removed
 * by a name). */
int bfs_upload_discard(bfs_upload *u);
/* A writer opens the name of an ingested file again, with O_TRUNC (a copy
 * run twice): a new upload under that name at u's place (u's RUN's own
 * directory for a raw, u's dataId for a file at a dataId path), as if the
 * name had been created anew, with bfs_upload_begin's reference and writer
 * slot in *out; u stays as it is.  Its close then ingests it: the same
 * bytes are an idempotent success, other bytes at the same dataId are
 * refused (EEXIST).  -EPERM for anything else (a replica, a file not
 * ingested), else bfs_upload_begin's errors (-ETXTBSY while that name is
 * being written again already). */
int bfs_upload_rewrite(bfs_upload *u, uid_t uid, bfs_upload **out);
/* A new read-only open of u: 0, or -EBUSY while u holds bytes not yet
 * sealed (being written, or being ingested): a reader never sees a partial
 * or unvalidated file.  The writer reads its own bytes through its own
 * descriptor. */
int bfs_upload_take_reader(bfs_upload *u);
/* Drop a reference.  The last one of an upload never sealed and never
 * written is abandoned (its spool file removed: nothing was handed over);
 * one written but never sealed is sealed first (a writer that died). */
void bfs_upload_put(bfs_upload *u);

/* Bytes of an upload that is not sealed, or whose last seal failed (a new
 * attempt).  -EBADF once it was ingested (datasets are immutable). */
ssize_t bfs_upload_pwrite(bfs_upload *u, const void *buf, size_t len, off_t off);
/* Read back what was written (cfitsio rewrites earlier blocks), or the
 * ingested file's bytes after a successful seal. */
ssize_t bfs_upload_pread(bfs_upload *u, void *buf, size_t len, off_t off);
int bfs_upload_truncate(bfs_upload *u, off_t size);

typedef struct bfs_upload_info {
    bfs_upload *upload;
    const char *run, *name;
    off_t size;
    int64_t mtime_ns;
    bool sealed;       /* a seal has finished */
    bool rewritable;   /* a name a writer gave (not a replica's): written again once
                        * ingested, it is a new upload (bfs_upload_rewrite) */
    int outcome;       /* its result when sealed: 0 or -errno */
    const char *dataset_id; /* 32 hex when ingested, else NULL */
    /* when ingested: its dataset type and dataId (ndims names and values),
     * else NULL and 0 */
    const char *dataset_type;
    int ndims;
    const char *const *dim_names, *const *dim_values;
} bfs_upload_info;
/* A snapshot of u (strings valid while the caller holds its reference). */
void bfs_upload_stat(bfs_upload *u, bfs_upload_info *info);

/* Seal: done(ctx, outcome) is called exactly once, from a worker thread (or
 * this thread, when the outcome is already known), with 0 when the dataset
 * is registered (or an identical one was) and -errno otherwise.  A seal with
 * no write since the last one reports the last outcome again.  The upload is
 * referenced until done has returned. */
typedef void (*bfs_seal_done_fn)(void *ctx, int outcome);
void bfs_upload_seal(bfs_upload *u, bfs_seal_done_fn done, void *ctx);
/* Before the seal of a close the kernel made for a writer that a signal is
 * killing (fs/caller.h): the file is not the writer's whole file, and the
 * seal quarantines it (ECANCELED, the reason naming the signal) instead of
 * ingesting what came. */
void bfs_upload_writer_killed(bfs_upload *u, int sig);
/* The same, waiting for the outcome (tests, tools). */
int bfs_upload_seal_wait(bfs_upload *u);

/* Call cb for each inbox name of run (open, in flight, or ingested within
 * inbox_ttl; not a refused one; of a name written again, the newest), in name order.  A non-zero return from cb stops and is returned. */
typedef int (*bfs_inbox_cb)(void *ctx, const bfs_upload_info *info);
int bfs_ingest_inbox(bfs_ingest *ing, const char *run, bfs_inbox_cb cb, void *ctx);

/* Counters for the status file. */
typedef struct bfs_ingest_stats {
    uint64_t ingested, duplicates, quarantined, in_flight, recovered;
    uint64_t refused; /* creates refused before any byte was taken (a read-only collection, no records) */
    uint64_t staging_failed; /* datasets registered but not fully staged now: a staging link still
                              * failed after its tries (tried again every ingest.staging_retry, doubling,
                              * and at the next mount; the intent is kept until they succeed) */
} bfs_ingest_stats;
void bfs_ingest_stats_get(bfs_ingest *ing, bfs_ingest_stats *st);
/* The directory quarantined bytes go to (ingest.quarantine, or its default
 * REPO/.butlerfs/quarantine), owned by ing. */
const char *bfs_ingest_quarantine_dir(const bfs_ingest *ing);

/* `butlerfs quarantine retry` and a daemon killed while it writes.  While
 * the command writes quarantine entry U into the mount, it keeps
 * DAY/U.retrying beside DAY/U.data, holding "path: <the path in the
 * mount>".  The daemon's death leaves an upload OPEN at that path; the
 * next -o rw mount, finding it, drops it when its bytes are the first bytes
 * of U.data (the entry holds every one of them) instead of quarantining a
 * cut second copy beside the entry.  bfs_quarantine_mark_retry writes the
 * marker for the entry whose bytes are data (a path ending ".data"),
 * written at at (relative to the mountpoint); *mark gets the marker's path
 * (malloc'd: the caller removes the file once the outcome is known, and
 * keeps it when the mount went away).  0 or -errno. */
#define BFS_RETRY_MARK_SUFFIX ".retrying"
/* How the reasons of files a stopped daemon left unfinished begin (entries
 * quarantined before ECANCELED said so carried EIO). */
#define BFS_REASON_DAEMON_STOPPED "the daemon stopped before the writer closed the file"
#define BFS_REASON_NO_INTENT "no intent record"
int bfs_quarantine_mark_retry(const char *data, const char *at, char **mark);
/* The marker's path for the entry whose bytes are data (malloc'd), or NULL
 * when data does not end ".data" or out of memory. */
char *bfs_quarantine_mark_path(const char *data);

#endif
