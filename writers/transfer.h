/*
 * transfer.h - the durable queue that takes every ingested file to the Data
 * Backbone (issue 12).  docs/transfer.md is the design: the store (one file
 * per job under REPO/.butlerfs/queue/{pending,inflight,parked,done}), the
 * state machine of a job and its crash story (also at the top of
 * transfer.c).
 *
 * The ingest calls bfs_transfer_enqueue() for each dataset it registers,
 * before it records the dataset as REGISTERED, so nothing ingested can miss
 * its jobs (a crash in between replays the step, and enqueueing is
 * idempotent).  Worker threads upload: WebDAV PUT to a temporary name, MOVE
 * onto the final name, then verification before the job is done.
 *
 * The `butlerfs queue` command reads and changes the store without a
 * running daemon (bfs_queue_*); a running daemon picks up a `queue retry`
 * at its next scan.
 *
 * Errors: negative errno; sentences through char **errmsg (malloc'd, the
 * caller frees).  Threads: every function may be called from any thread.
 */
#ifndef BFS_TRANSFER_H
#define BFS_TRANSFER_H

#include "config.h"
#include "http.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- configuration: the `transfer:` section ---- */

typedef struct bfs_transfer_dest {
    char *name;            /* unique, one path component */
    char *uri;             /* http(s)://host/prefix/ or s3://[profile@]bucket/prefix/ (ends with '/') */
    char **collections;    /* globs (fnmatch) of RUN names; a dataset matches one */
    int n_collections;
    char **dataset_types;  /* globs; none: every type */
    int n_dataset_types;
    char **instruments;    /* globs of the dataId's instrument; none: any (a dataset whose dataId has no
                            * instrument matches only a destination without instruments) */
    int n_instruments;
    char *template;        /* the object key (bfs_transfer_object_key); NULL: "{path}" */
} bfs_transfer_dest;

/* One rule of `transfer: retention:` (docs/transfer.md, "Local
 * retention"): datasets of RUN collections matching collections (and, when
 * given, dataset_types) are removed locally age_ms after their ingest, once
 * every destination they go to has a done job for them. */
typedef struct bfs_retention_rule {
    char **collections;    /* globs (fnmatch) of RUN names */
    int n_collections;
    char **dataset_types;  /* globs; none: every type */
    int n_dataset_types;
    int64_t age_ms;
} bfs_retention_rule;

typedef struct bfs_transfer_config {
    bfs_transfer_dest *dests;
    int n_dests;
    int concurrency;        /* 4 uploads at once, over all destinations */
    int max_attempts;       /* 10: then the job is parked */
    int64_t backoff_max_ms; /* 300000: the longest wait after failures */
    int64_t request_timeout_ms; /* 600000: one PUT, MOVE or verification */
    bool verify_readback;   /* true: read the object back and compare every byte */
    int64_t bandwidth;      /* bytes per second over all uploads; 0: no cap */
    int64_t multipart_threshold; /* 64 MiB: S3 objects larger than this go up in parts */
    int64_t multipart_part_size; /* 16 MiB: the part size wanted (grown to fit 10000 parts) */
    bfs_retention_rule *retention; /* none: local retention is off */
    int n_retention;
    int64_t retention_interval_ms; /* 0: an -o rw mount does not run retention by itself */
} bfs_transfer_config;

void bfs_transfer_config_defaults(bfs_transfer_config *c);
/* Parse the `transfer:` mapping (file: the configuration's name, for
 * messages) into c, which holds the defaults.  0, or -EINVAL with
 * *errmsg = "FILE:LINE: what". */
int bfs_transfer_config_parse(const bfs_yaml *y, const bfs_yaml_node *section, const char *file,
                              bfs_transfer_config *c, char **errmsg);
void bfs_transfer_config_free(bfs_transfer_config *c);
/* The `transfer:` section of the configuration file at path into c (which
 * holds the defaults; left so when the file has no such section).  0, or
 * negative errno with *errmsg a sentence. */
int bfs_transfer_config_load(const char *path, bfs_transfer_config *c, char **errmsg);

/* The first retention rule matching a dataset of run and dataset_type, or
 * NULL (the dataset is kept). */
const bfs_retention_rule *bfs_retention_match(const bfs_transfer_config *c, const char *run,
                                              const char *dataset_type);

/* ---- the queue of one repository (a running daemon) ---- */

typedef struct bfs_transfer bfs_transfer;

/* Open the store under repo_dir/.butlerfs/queue (made if missing), put every
 * inflight job back to pending (the crash story), and start the workers,
 * which read files under datastore_root and talk HTTP through http (shared,
 * owned by the caller, outliving the queue).  cfg must outlive the queue.
 * Each completed or parked transfer is one JSON line appended to
 * events_file (NULL: REPO/.butlerfs/events.jsonl, the ingest's default)
 * and written to the log. */
int bfs_transfer_open(const char *repo_dir, const char *datastore_root, const bfs_transfer_config *cfg,
                      bfs_http *http, const char *events_file, bfs_transfer **out, char **errmsg);
/* Stop the workers (uploads in progress are abandoned and stay pending). */
void bfs_transfer_close(bfs_transfer *t);
/* The configuration t runs with (borrowed, as given to bfs_transfer_open). */
const bfs_transfer_config *bfs_transfer_cfg(const bfs_transfer *t);

typedef struct bfs_transfer_item {
    const char *dataset_id; /* 32 hex digits */
    const char *run, *dataset_type;
    const char *rel;        /* path relative to the datastore root */
    int64_t size;
    const char *instrument; /* the dataId's instrument; NULL: none (or not known) */
} bfs_transfer_item;

/* Object names.  A destination's template is literal text and fields:
 * {path} (the path relative to the datastore root: the default template),
 * {run}, {dataset_type}, {id} (the dataset id, 32 hex digits) and {name}
 * (the file's base name).  dataId values are not fields (the datastore path
 * holds them already).  A template names at least one of {path}, {id} and
 * {name} (else every dataset would land on one key); a result is a
 * relative key whose every '/'-separated segment is a plain name (not
 * empty, ".", ".." or holding control characters), so no value can climb
 * out of the destination's prefix.
 *
 * Check a template (at configuration time): 0, or -EINVAL with *errmsg
 * saying what is wrong (no file:line; the caller adds it). */
int bfs_transfer_template_check(const char *tmpl, char **errmsg);
/* The key of item at dest, relative to dest->uri, into *out (malloc'd):
 * dest's template expanded.  -EINVAL with *errmsg when a field has no value
 * or the result is not a safe relative key; -ENOMEM. */
int bfs_transfer_object_key(const bfs_transfer_dest *dest, const bfs_transfer_item *item, char **out,
                            char **errmsg);

/* Make a durable pending job for each destination whose rules match it (0
 * when none does).  Idempotent: a job of that dataset and destination that
 * exists in any state is left as it is. */
int bfs_transfer_enqueue(bfs_transfer *t, const bfs_transfer_item *item);

/* ---- the store, read and changed from outside (the `queue` command) ---- */

typedef struct bfs_queue_stats {
    int64_t pending, inflight, parked, done;
    int64_t bytes_pending;
    double oldest_pending_s; /* age of the oldest pending job, 0 when none */
    double done_last_hour;   /* jobs done in the last hour */
    double done_window_s;    /* since the first of those (at most 3600), 0 when none */
    int64_t store_bytes;     /* the job files' own size on disk (bfs_queue_read) */
    int64_t disk_free;       /* bytes free for the queue and the spool (its file system); -1 unknown */
} bfs_queue_stats;

typedef struct bfs_queue_job {
    const char *name;        /* <dataset id>.<destination> */
    const char *state;       /* "pending", "inflight", "parked", "done" */
    const char *destination, *rel, *last_error;
    int attempts;
    int64_t size;
    double created, next_try; /* Unix seconds */
} bfs_queue_job;
typedef int (*bfs_queue_cb)(void *ctx, const bfs_queue_job *job);

/* Count the jobs of repo_dir's queue; cb (may be NULL) sees every parked
 * and pending job.  A running mount moves jobs while they are read: the
 * counts are those of two passes in a row that agree (a few passes at
 * most).  -ENOENT when the repository has no queue. */
int bfs_queue_read(const char *repo_dir, bfs_queue_stats *st, bfs_queue_cb cb, void *ctx);
/* Parked jobs back to pending with no attempts (retry), or deleted
 * (drop).  *n gets how many. */
int bfs_queue_retry_parked(const char *repo_dir, int64_t *n);
int bfs_queue_drop_parked(const char *repo_dir, int64_t *n);

/* Whether a dataset of run and dataset_type goes to dest. */
bool bfs_transfer_matches(const bfs_transfer_dest *dest, const char *run, const char *dataset_type,
                          const char *instrument);
/* Whether a destination of c has an instruments rule (then a caller that
 * walks the registry looks each dataset's instrument up). */
bool bfs_transfer_uses_instruments(const bfs_transfer_config *c);
/* The URL of item's object at dest (dest->uri + bfs_transfer_object_key,
 * percent-encoded for http(s)) into *out (malloc'd); errors as
 * bfs_transfer_object_key. */
int bfs_transfer_object_url(const bfs_transfer_dest *dest, const bfs_transfer_item *item, char **out,
                            char **errmsg);
/* A pending job of item for cfg->dests[dest], written into repo_dir's
 * store from outside a daemon (`butlerfs catchup`, which has found the
 * object missing; a running daemon picks it up within 10 s).  1 made (a
 * done job of it is replaced: the object went missing after all), 0 when
 * a job of that dataset and destination is pending, in flight or parked,
 * negative errno. */
int bfs_queue_add(const char *repo_dir, const bfs_transfer_config *cfg, int dest, const bfs_transfer_item *item);

/* The state of the job of dataset_id for destination dest_name in
 * repo_dir's store: BFS_JOB_PENDING .. BFS_JOB_DONE, BFS_JOB_NONE when
 * there is none, negative errno. */
enum { BFS_JOB_NONE = 0, BFS_JOB_PENDING, BFS_JOB_INFLIGHT, BFS_JOB_PARKED, BFS_JOB_DONE };
int bfs_queue_job_state(const char *repo_dir, const char *dataset_id, const char *dest_name);
/* Remove the done record of that job (local retention, once the dataset is
 * gone): 0, also when there is none; negative errno. */
int bfs_queue_forget_done(const char *repo_dir, const char *dataset_id, const char *dest_name);

/* Live counts of a running queue (for butlerfs status). */
void bfs_transfer_stats(bfs_transfer *t, bfs_queue_stats *st);

#endif
