/*
 * retention.h - local retention, the OODS role (issue 12; docs/transfer.md,
 * "Local retention"): datasets older than their rule's age are removed from
 * the local repository, registry and files, but only once every transfer
 * destination they go to has a done job for them.  Off unless the
 * `transfer:` section has `retention:` rules (transfer.h).
 *
 * Which datasets go.  A dataset of a RUN collection falls under the first
 * rule whose collections (and dataset_types, when given) match it; it is
 * eligible when its ingest date (the registry's dataset.ingest_date) is at
 * least the rule's age ago, each destination whose rules match it holds a
 * done job of it (REPO/.butlerfs/queue/done), at least one destination
 * matches it, and each of its files is a relative path under the datastore
 * root.  A dataset pending, in flight or parked anywhere, going nowhere, of
 * unknown ingest date or with a file outside the root is kept.
 *
 * How it goes: the registry is read in pages of 1024 datasets (one short
 * read each, bfs_registry_each_run_file_page), and the eligible datasets
 * of a page go in batches of up to 256, in crash-safe order:
 *   1. a journal, REPO/.butlerfs/retention.journal, lists the batch
 *      (dataset ids, their paths and destinations), written durably;
 *   2. one registry transaction removes the batch's datasets
 *      (bfs_registry_remove_dataset);
 *   3. for each dataset gone from the registry, each of its files that no
 *      other file record names is unlinked (after checking that its real
 *      directory is under the datastore root) and its done records are
 *      forgotten; then each directory a file left is synced, once;
 *   4. the journal is removed.
 * kill -9 before 2 commits: the registry is as it was, and the next run
 * finishes the journal, which removes nothing of a dataset still
 * registered.  Between 2 and 4: the next run finishes the journal (step 3
 * again; a missing file is fine), so no orphan file stays behind.
 *
 * The registry is read and written through a connection of the run's own
 * (bfs_registry_open: the database's locking, SQLite's busy timeout of
 * 10 s), never a mount's, so a run may go while an -o rw mount of the
 * repository ingests, whether the run is the CLI or that mount's thread:
 * it holds a read for one page and the writer for one batch.
 *
 * Test hook: with BFS_RETENTION_KILL_AT=journal (after step 1), registry
 * (after step 2) or files (after step 3) in the environment, a run that
 * removes a batch SIGKILLs its process there.
 *
 * One run at a time per repository: a run holds an flock on
 * REPO/.butlerfs/retention.lock (the journal is per repository), and a run
 * that finds it held returns -EBUSY at once.  Callers: the CLI (`butlerfs
 * retention`) and, with transfer.retention_interval, an -o rw mount's
 * retention thread (bfs_retention_start below).
 *
 * Errors: negative errno, sentences through char **errmsg (malloc'd, the
 * caller frees).
 */
#ifndef BFS_RETENTION_H
#define BFS_RETENTION_H

#include "registry.h"
#include "transfer.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct bfs_retention_opts {
    bool dry_run;   /* list what would go; change nothing (the journal of an interrupted run is left too) */
    FILE *progress; /* a progress bar (progress.h) over the registry's datasets; NULL: none */
    bool (*stop)(void *ud); /* asked every 64 datasets: true ends the run early (0; st->more
                             * set); NULL: never */
    void *stop_ud;
    int64_t max_remove;     /* the run ends once this many datasets were found eligible (st->more
                             * set when some were left); 0: no cap */
    bfs_dataset_cursor *cursor; /* in: where the walk starts (zeroed: the first dataset);
                                 * out, after a 0 return: where the next run goes on (zeroed
                                 * again once the walk reached the end); NULL: a whole walk */
} bfs_retention_opts;

/* One eligible dataset, as the callback sees it (valid during the call). */
typedef struct bfs_retention_dataset {
    const char *dataset_id, *run, *dataset_type;
    const char *const *paths; /* relative to the datastore root */
    int npaths;
    int64_t bytes;            /* the recorded sizes summed (unknown ones count 0) */
    int64_t ingest_unix;      /* Unix seconds */
    bool removed;             /* gone from the registry (false in a dry run, or when it failed) */
    int files_removed;        /* of its paths, how many were unlinked */
} bfs_retention_dataset;
typedef void (*bfs_retention_cb)(void *ctx, const bfs_retention_dataset *d);

typedef struct bfs_retention_stats {
    int64_t examined;         /* datasets under a rule */
    int64_t eligible;         /* ... that are due and safely transferred */
    int64_t removed, bytes_removed, files_removed;
    int64_t files_shared;     /* files kept: another record names the same path */
    int64_t too_young;        /* not yet their age (or of unknown ingest date) */
    int64_t not_transferred;  /* a destination's job is not done: pending, in flight, parked or never made */
    int64_t parked;           /* ... of which some job is parked */
    int64_t no_destination;   /* no destination's rules match them: never removed */
    int64_t outside_root;     /* a file is a URI, absolute, or climbs out of the root */
    int64_t recovered;        /* datasets finished from an interrupted run's journal */
    int64_t journal_pending;  /* dry run: datasets an interrupted run's journal still lists */
    int64_t errors;           /* datasets that could not be removed (see the log) */
    bool more;                /* the run ended early (opts->max_remove or opts->stop): not all were judged */
} bfs_retention_stats;

/* Apply cfg's retention rules to the repository at repo_dir.  cb (may be
 * NULL) sees each eligible dataset once: after its removal, or in a dry
 * run as it would go.  0 (even when some datasets failed: st->errors), or
 * negative errno with *errmsg when the run could not start or the
 * registry could not be read.  -ENOENT with a sentence when cfg has no
 * retention rules. */
int bfs_retention_run(const char *repo_dir, const bfs_transfer_config *cfg, const bfs_retention_opts *opts,
                      bfs_retention_cb cb, void *ctx, bfs_retention_stats *st, char **errmsg);

/* Remove one dataset of run now, as a batch of one (the journal, one
 * transaction, its files no other record names, its done records): an
 * unlink in a mount with ingest.allow_remove.  No age applies, but a
 * dataset a destination of cfg (may be NULL) takes is kept until its
 * transfer there is done (-EBUSY with that sentence).  -ENOENT when run
 * has no such dataset, -EBUSY when a retention run holds the lock. */
int bfs_retention_remove(const char *repo_dir, const bfs_transfer_config *cfg, const char *run,
                         const char *dataset_id, char **errmsg);

/* ---- a mount's periodic run (transfer.retention_interval) ----
 *
 * A thread runs bfs_retention_run every cfg->retention_interval_ms, the
 * first time min(interval, 60 s) after the start (so a mount restarted
 * more often than the interval still runs it; that first pass also
 * finishes an interrupted run's journal).  Each pass takes at most
 * BFS_RETENTION_PASS_MAX datasets (the environment variable of that name
 * sets a smaller cap, for tests), so it holds the registry's writer for
 * at most that many short batches; a pass that stopped at the cap is
 * followed by the next after min(interval, BFS_RETENTION_CATCHUP_MS),
 * which goes on from the dataset where it stopped (opts.cursor).  After a
 * pass that removed datasets, removed (may be NULL) is told their ids, on
 * the thread, before the pass's log line (a mount drops them from its
 * caches).  A pass that removed something or failed logs one line; -EBUSY
 * (a CLI run in progress) is logged at info and the next pass tries again.
 * Stop asks the running pass to end (within 64 datasets, after the batch
 * it is removing) and joins the thread.  The thread blocks signals.
 *
 * The registry is written through the pass's own connection, as by the
 * CLI (SQLite's locking, no lock of the mount's ingest is taken), so a
 * pass and the mount's ingest wait for each other at most for one batch
 * and never deadlock. */
#define BFS_RETENTION_PASS_MAX 1000
#define BFS_RETENTION_CATCHUP_MS 5000

typedef struct bfs_retention_daemon bfs_retention_daemon;

typedef struct bfs_retention_status {
    int64_t passes;           /* finished passes */
    int64_t removed;          /* datasets removed over all passes */
    int64_t bytes_removed;
    int64_t last_removed;     /* by the last pass */
    double last_pass;         /* Unix time the last pass ended; 0: none yet */
    int last_errno;           /* of the last pass; 0: it succeeded */
    char last_error[256];     /* its sentence ("" when none) */
} bfs_retention_status;

/* Called on the retention thread after a pass that removed datasets, so
 * the mount drops what it cached of them: ids (32 lowercase hex digits,
 * valid during the call; n may be 0, or fewer than removed when memory ran
 * short) are the datasets the pass removed itself; those it finished from
 * an interrupted run's journal are not named. */
typedef void (*bfs_retention_removed_fn)(void *ud, const char *const *ids, size_t n);

/* repo_dir, cfg and ud must outlive the daemon; removed may be NULL.  0,
 * or negative errno (-EINVAL when cfg has no interval or no rules). */
int bfs_retention_start(const char *repo_dir, const bfs_transfer_config *cfg, bfs_retention_removed_fn removed,
                        void *ud, bfs_retention_daemon **out);
void bfs_retention_stop(bfs_retention_daemon *d); /* NULL ok */
void bfs_retention_get_status(bfs_retention_daemon *d, bfs_retention_status *out);

#endif
