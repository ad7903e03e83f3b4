/*
 * status.h - the status file of a running mount, and finding them again
 * (`butlerfs status`, cli_status.c).
 *
 * While it is mounted, a daemon rewrites DIR/mount.PID.json every
 * BFS_STATUS_PERIOD_S seconds (a new file with a random name, renamed over
 * it; mode 0600) and removes it when it unmounts.  It holds an exclusive
 * flock(2) on DIR/mount.PID.lock for as long as it runs, so a reader tells
 * a live daemon from a dead one (kill -9, a crash) by trying that lock.
 *
 * DIR is the first usable of $XDG_RUNTIME_DIR/butlerfs (when XDG_RUNTIME_DIR
 * names an existing directory) and /tmp/butlerfs-UID.  A usable DIR is a
 * real directory (not a symlink) owned by this user that no one else may
 * enter; it is made 0700 when missing, and made again when it is removed
 * while mounted.  Files in it are opened relative to its descriptor, never
 * following symlinks, and temporary files are created exclusively.
 *
 * The file is a JSON object:
 *   version 1; pid; mountpoint; repository; started and updated (Unix
 *   seconds); direct_io; fetch {bytes_from_servers, blocks_fetched,
 *   cache_hits, cache_misses, failovers, failed_reads, memory_used,
 *   memory_budget}; skipped [{name, kind ("host" or "replica"), retry_in_s,
 *   why}]; replicas [{name, requests, retries, not_found, faults {http_5xx,
 *   http_4xx, reset, timeout, short_body, refused, checksum, other},
 *   recent_failure_rate}] (see bfs_fetcher_faults); nodes {live, max_nodes,
 *   trims, victims, invalidations, inval_failed} (bfs_node_stats; null until
 *   bfs_status_watch_nodes); ingest {ingested, duplicates, quarantined,
 *   in_flight, recovered, staging_failed, quarantine_dir (the directory)}
 *   (bfs_ingest_stats; null on a read-only mount);
 *   transfer {pending, in_flight, done, parked, bytes_pending,
 *   oldest_pending_s} (this daemon's queue; null without a transfer: section);
 *   retention {passes, removed, bytes_removed, last_removed (by the last
 *   pass), last_pass (Unix seconds, 0 before the first), last_error (absent
 *   when the last pass succeeded)}
 *   (bfs_retention_get_status; null unless transfer.retention_interval).
 * Strings that come from data (replica and host names) are escaped with
 * bfs_log_escape.
 * No secret is written: replica and host names lose any user:password@, and
 * nothing of the configuration but what is listed above.
 *
 * Ownership: bfs_status_start returns a writer owned by the caller, who
 * stops it with bfs_status_stop; the fetcher is borrowed and must outlive
 * it.  Threads: the writer runs on its own thread, with signals blocked.
 */
#ifndef BFS_STATUS_H
#define BFS_STATUS_H

#include "source.h"
#include "tree.h"
#include "retention.h"
#include "transfer.h"
#include "writers.h"

#include <stdbool.h>

#define BFS_STATUS_PERIOD_S 2

typedef struct bfs_status bfs_status;

/* The places a status directory may be, in the order a daemon tries them
 * (malloc'd paths into out); returns their count (0 only without memory). */
int bfs_status_candidates(char *out[2]);

/* Open dir as a status directory (made first when create and missing): its
 * descriptor, or -errno with *why (static text) saying what is wrong. */
int bfs_status_open_dir(const char *dir, bool create, const char **why);

/* Before mounting: 0 when a status directory can be used, else -errno with
 * the last one tried in *dir (malloc'd, may be NULL) and *why. */
int bfs_status_check(char **dir, const char **why);

/* Start writing the status of the mount of repo (absolute) on mountpoint
 * (absolute), whose bytes come from f.  NULL when there is no usable
 * status directory or no memory (logged; the mount serves regardless). */
bfs_status *bfs_status_start(const char *mountpoint, const char *repo, bfs_fetcher *f, bool direct_io);

/* Report t's node table (and cap) from now on; t is borrowed until
 * bfs_status_stop.  NULL s is fine. */
void bfs_status_watch_nodes(bfs_status *s, bfs_tree *t);

/* Report ing's counters from now on (-o rw); ing is borrowed until
 * bfs_status_stop.  NULL s or ing is fine. */
void bfs_status_watch_ingest(bfs_status *s, bfs_ingest *ing);
/* The same for the transfer queue (done and parked count this daemon's). */
void bfs_status_watch_transfer(bfs_status *s, bfs_transfer *t);
/* The same for the mount's periodic retention (retention.h). */
void bfs_status_watch_retention(bfs_status *s, bfs_retention_daemon *r);

/* Stop the writer and remove its files.  NULL is fine. */
void bfs_status_stop(bfs_status *s);

/* Does the daemon pid hold its lock in the status directory dfd (it runs)? */
bool bfs_status_daemon_alive(int dfd, long pid);

#endif
