/*
 * faults_i.h - what requests to each replica ended with, and a warning
 * when a replica fails too often (fetchers-internal; remote.c feeds it,
 * the status file shows it through bfs_fetcher_faults).
 *
 * Retries and failover hide a degrading server from readers: every read
 * may still succeed while half the requests fail.  This table counts, per
 * replica, the requests, the retries and the faults by kind (bfs_fault),
 * and keeps a recent failure rate: counts over a window that halves every
 * BFS_FAULTS_WINDOW_MS, so old faults fade without a ring of samples.
 * When the recent rate of a replica with at least BFS_FAULTS_MIN_REQUESTS
 * recent requests passes the threshold (fetch.warn_failure_rate), one
 * warning is logged, at most once per BFS_FAULTS_WARN_EVERY_MS per
 * replica.
 *
 * Replica names are the caller's (already free of user:password@), at
 * most BFS_FAULTS_MAX of them; requests to further ones are counted under
 * "(other replicas)".
 *
 * Ownership: bfs_faults_new returns a table owned by the caller
 * (bfs_faults_free).  Threads: every function may be called from any
 * thread; the table's lock is a leaf lock, not held while logging.
 */
#ifndef BFS_FAULTS_I_H
#define BFS_FAULTS_I_H

#include "source.h"

#include <stdbool.h>
#include <stdint.h>

#define BFS_FAULTS_MAX 64
#define BFS_FAULTS_WINDOW_MS 60000
#define BFS_FAULTS_MIN_REQUESTS 20
#define BFS_FAULTS_WARN_EVERY_MS 60000

typedef struct bfs_faults bfs_faults;

/* warn_rate: fetch.warn_failure_rate (0 < rate <= 1 warns; 0 never).
 * NULL when out of memory. */
bfs_faults *bfs_faults_new(double warn_rate);
void bfs_faults_free(bfs_faults *t);

/* The kind of fault a request's result err (-errno) is; -1 for success
 * and for results that say nothing against the replica: 0, -ENOENT (not
 * there; counted as not_found), -ESTALE (the object changed), -ENOMEM. */
int bfs_fault_of(int err);

/* One request to replica ended with err (0 or -errno); retry: it repeats
 * a request of the same read there after a transient failure.  now_ms is
 * CLOCK_MONOTONIC milliseconds.  Returns true when it logged the warning. */
bool bfs_faults_request(bfs_faults *t, const char *replica, int err, bool retry, int64_t now_ms);

/* A fault found after the request ended (BFS_FAULT_CHECKSUM): counted as
 * one failure in the replica's recent rate, without a request. */
bool bfs_faults_add(bfs_faults *t, const char *replica, bfs_fault kind, int64_t now_ms);

/* See bfs_fetcher_faults; the recent rate is as of now_ms. */
int bfs_faults_list(bfs_faults *t, bfs_replica_faults *out, int max, int64_t now_ms);

#endif
