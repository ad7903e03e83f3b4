/*
 * health.h - which servers are failing now, and how long to wait before
 * trying again: the replica health table of the reader (remote.c) and the
 * one backoff computation of reads and uploads (writers/transfer.c).
 *
 * The health table.  An entry is one key: a replica or a host.
 *
 *   BFS_HEALTH_REPLICA  key = the replica's base URI (the longest base of
 *                       the source chains a URL starts with; a location
 *                       used as it is: its scheme://host[:port]).  Marked
 *                       by any transient failure there.
 *   BFS_HEALTH_HOST     key = scheme://host[:port] of a URL on that host.
 *                       Marked only by a failure to connect
 *                       (bfs_health_host_failure): every replica there
 *                       fails the same way, so all of them are skipped.
 *                       An s3:// URL names no host (its endpoint is the
 *                       profile's): it has no host entry.
 *
 * Keys are normalized on the way in: any user:password@ of the authority is
 * removed (bfs_url_redact), so the table never holds a secret and its
 * names may be logged and shown by `butlerfs status`; two URLs that differ
 * only in credentials share an entry.  Keys longer than
 * BFS_HEALTH_KEY_MAX - 1 bytes are cut there.
 *
 * States of a key, with the caller's clock now (CLOCK_MONOTONIC ms):
 *
 *   answering  no entry, or marked ok last;
 *   down       marked failed at t with pause p, and now < t + p: skipped
 *              (bfs_health_down), listed by bfs_health_list;
 *   on trial   marked failed, pause over: tried again, not listed; its next
 *              mark says whether it answers again (BFS_HEALTH_RECOVERED) or
 *              is down once more (no new BFS_HEALTH_FAILING: one warning
 *              per outage).
 *
 * The table holds at most the capacity given to bfs_health_new.  A key
 * marked ok is never added.  When the table is full, a newly failing key
 * takes the entry of one answering again, else of the one longest out of
 * its pause; when every entry is down, the new key is not recorded (it is
 * tried as if answering).
 *
 * Ownership: bfs_health_new returns a table owned by the caller
 * (bfs_health_free).  Threads: every function may be called from any
 * thread; the table's lock is a leaf lock, held for no I/O and no logging.
 * Time is the caller's (now_ms arguments), so tests drive it.
 */
#ifndef BFS_HEALTH_H
#define BFS_HEALTH_H

#include "source.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BFS_HEALTH_KEY_MAX 256

typedef enum bfs_health_kind {
    BFS_HEALTH_REPLICA,
    BFS_HEALTH_HOST,
} bfs_health_kind;

/* What a mark changed, for the caller's log line. */
typedef enum bfs_health_change {
    BFS_HEALTH_SAME,      /* nothing worth a line */
    BFS_HEALTH_FAILING,   /* was answering, now down */
    BFS_HEALTH_RECOVERED, /* had failed (down or on trial), answers again */
} bfs_health_change;

typedef struct bfs_health bfs_health;

/* A table of at most capacity keys (>= 1).  NULL when out of memory. */
bfs_health *bfs_health_new(int capacity);
void bfs_health_free(bfs_health *h);

/* The normalized key of url for kind into out (outsz bytes): the url
 * without user:password@ (REPLICA), or its scheme://host[:port] (HOST;
 * "s3://" for an s3:// url).  Returns false when kind names no entry for
 * url (HOST of an s3:// url). */
bool bfs_health_key(bfs_health_kind kind, const char *url, char *out, size_t outsz);

/* Mark the key of (kind, url) as answering (err 0) or failing with err
 * (-errno) for pause_ms from now_ms.  A HOST mark of a url without a host
 * does nothing. */
bfs_health_change bfs_health_mark(bfs_health *h, bfs_health_kind kind, const char *url, int err,
                                  int64_t pause_ms, int64_t now_ms);

/* Is the key of (kind, url) down at now_ms? */
bool bfs_health_down(bfs_health *h, bfs_health_kind kind, const char *url, int64_t now_ms);

/* The keys down at now_ms, up to max into out (see bfs_fetcher_skipped:
 * name, host, retry_in_ms, why = bfs_health_why of the failure); returns
 * how many there are (may be more than max). */
int bfs_health_list(bfs_health *h, bfs_replica_state *out, int max, int64_t now_ms);

/* A failure of the connection itself, not of a server's answer
 * (-ECONNREFUSED, -EHOSTDOWN, -EHOSTUNREACH): it condemns the host. */
bool bfs_health_host_failure(int err);

/* What a failure err says about a server, in a few words for people
 * ("cannot connect", "server errors", ...). */
const char *bfs_health_why(int err);

/* url without a user:password@ in its authority (into out), for logs. */
void bfs_url_redact(const char *url, char *out, size_t outsz);

/* Backoff: the wait before attempt + 1 after attempt (0 for the first
 * retry) failed.  cap = min(max_ms, base_ms * 2^attempt) (attempt counts
 * up to 20; <= 0: 0); the wait is drawn uniformly from
 *   BFS_JITTER_FULL    [0, cap]            (reads: "full jitter", so many
 *                                           readers retrying do not
 *                                           move in step)
 *   BFS_JITTER_SPREAD  [cap / 2, 3 cap / 2] (uploads: +-50 %)
 * with rand_r(seed): the caller owns seed (one per thread, or under the
 * caller's lock).  Milliseconds, >= 0. */
typedef enum bfs_jitter {
    BFS_JITTER_FULL,
    BFS_JITTER_SPREAD,
} bfs_jitter;
int64_t bfs_backoff_ms(int64_t base_ms, int64_t max_ms, int attempt, bfs_jitter jitter, unsigned *seed);

#endif
