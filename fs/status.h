/*
 * status.h - the status file of a running mount, and reading them back
 * (`butlerfs status`).
 *
 * While it is mounted, a daemon rewrites DIR/mount.PID.json every
 * BFS_STATUS_PERIOD_S seconds (a temporary file renamed over it, mode 0600)
 * and removes it when it unmounts.  DIR is $XDG_RUNTIME_DIR/butlerfs, else
 * /tmp/butlerfs-UID; either is made 0700 and refused when it is not a
 * directory of this user's that no one else may enter.
 *
 * The file is a JSON object:
 *   version 1; pid; mountpoint; repository; started and updated (Unix
 *   seconds); direct_io; fetch {bytes_from_servers, blocks_fetched,
 *   cache_hits, cache_misses, failovers, failed_reads, memory_used,
 *   memory_budget}; skipped [{name, kind ("host" or "replica"), retry_in_s,
 *   why}].
 * No secret is written: replica and host names lose any user:password@, and
 * nothing of the configuration but what is listed above.
 *
 * Ownership: bfs_status_start returns a writer owned by the caller, who
 * stops it with bfs_status_stop; the fetcher is borrowed and must outlive
 * it.  Threads: the writer runs on its own thread.
 */
#ifndef BFS_STATUS_H
#define BFS_STATUS_H

#include "source.h"

#include <stdbool.h>

#define BFS_STATUS_PERIOD_S 2

typedef struct bfs_status bfs_status;

/* Start writing the status of the mount of repo (absolute) on mountpoint
 * (absolute), whose bytes come from f.  NULL when there is no usable
 * status directory or no memory (logged; the mount serves regardless). */
bfs_status *bfs_status_start(const char *mountpoint, const char *repo, bfs_fetcher *f, bool direct_io);

/* Stop the writer and remove its file.  NULL is fine. */
void bfs_status_stop(bfs_status *s);

/* The status directory (malloc'd), made when create and missing; NULL with
 * *why (static text) when there is none or it is not safe to use. */
char *bfs_status_dir(bool create, const char **why);

#endif
