/*
 * remote_i.h - remote objects read block by block (fetchers-internal).
 *
 * A bfs_remote is the process-wide machinery: the HTTP transport, the block
 * cache, the table of in-flight block fetches (single flight), the global
 * budget of in-flight buffer memory, the read-ahead workers and the health
 * of each replica host.  A bfs_robj is one open object: its replica URLs
 * in chain order, its pinned version and its sequential-read state.
 *
 * Ownership: urls and logical are copied.  A bfs_robj is reference counted
 * internally so read-ahead jobs may outlive bfs_robj_close.
 */
#ifndef BFS_REMOTE_I_H
#define BFS_REMOTE_I_H

#include "config.h"
#include "source.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct bfs_remote bfs_remote;
typedef struct bfs_robj bfs_robj;

/* cfg must outlive the remote.  -errno and *errmsg on failure. */
int bfs_remote_new(const bfs_config *cfg, bfs_remote **out, char **errmsg);
void bfs_remote_free(bfs_remote *r);

/* Open logical (the location's URI: the cache identity) served by the
 * remote replica urls, in order.  The version comes from the cache's record
 * of logical when it has one (no network), else from a GET of the first
 * block (one round trip for the pin and the block most readers read first;
 * one such GET for all concurrent opens of logical), else from a HEAD of
 * the first replica that answers (with BFS_ROBJ_STAT_ONLY, at once).  checksum (may be NULL) is the registry's; a
 * BLAKE2b-512 hex digest is checked when the object is read whole in order,
 * once per version (see source.h). */
#define BFS_ROBJ_STAT_ONLY 1u /* flags: only the size is wanted (pin by HEAD, fetch nothing) */
int bfs_robj_open(bfs_remote *r, const char *logical, char *const *urls, int n, int64_t size_hint,
                  const char *checksum, unsigned flags, bfs_robj **out);
ssize_t bfs_robj_pread(bfs_robj *o, void *buf, size_t n, int64_t off);
/* Zero-copy read: [off, off+n) as at most max pieces pointing into o's
 * decoded blocks (see bfs_source_view); each piece holds one reference in
 * refs[], released by bfs_robj_view_release.  -E2BIG when the range spans
 * more than max blocks; -ENOBUFS when a second block found no budget at once
 * (use bfs_robj_pread, which needs one block at a time). */
ssize_t bfs_robj_view(bfs_robj *o, size_t n, int64_t off, struct iovec *iov, void **refs, int max, int *count);
void bfs_robj_view_release(void **refs, int count);
int64_t bfs_robj_size(const bfs_robj *o);
/* See bfs_source_check_pending and bfs_source_check_failed. */
bool bfs_robj_check_pending(const bfs_robj *o);
bool bfs_robj_check_failed(bfs_robj *o);
void bfs_robj_close(bfs_robj *o);

void bfs_remote_stats(bfs_remote *r, bfs_fetch_stats *st);
int bfs_remote_skipped(bfs_remote *r, bfs_replica_state *out, int max); /* see bfs_fetcher_skipped */
int bfs_remote_faults(bfs_remote *r, bfs_replica_faults *out, int max);  /* see bfs_fetcher_faults */

/* Count a fault found after a request ended (a checksum mismatch:
 * BFS_FAULT_CHECKSUM) against the replica of url (one of an object's
 * replica URLs); it counts in that replica's recent failure rate and may
 * log the warning (faults_i.h). */
void bfs_remote_count_fault(bfs_remote *r, const char *url, bfs_fault kind);

/* Tests: bytes of the memory budget in use now (block buffers and mapped
 * cache blocks: hot, ready, in flight, or held by views; idle spare buffers
 * not counted); 0
 * once every object is closed, every view released and the read-ahead
 * queue has drained. */
int64_t bfs_remote_mem_used(bfs_remote *r);
/* The budget's state to f, for tests and debugging: budget used (and the
 * part blocks hold, spares apart), kept bytes, queued and running read-ahead
 * jobs, and each in-flight fetch with its holders and age.  A block that
 * outlives every holder shows as budget held by blocks with nothing in
 * flight and no job running.  Keys are printed as they are (a URI may
 * hold credentials): never to a log.  Returns the work in progress: jobs
 * running plus fetches in flight. */
int bfs_remote_dump(bfs_remote *r, FILE *f);

/* Tests: bytes of idle spare block buffers kept for reuse (within the
 * budget: mem_used + spare bytes <= memory_budget). */
int64_t bfs_remote_spare_bytes(bfs_remote *r);

#endif
