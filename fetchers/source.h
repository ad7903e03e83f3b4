/*
 * source.h - where a dataset's bytes come from: the public face of the
 * fetchers module.
 *
 * A location is what the registry stores in file_datastore_records.path:
 * a path relative to the datastore root (itself a directory or a URI), or
 * an absolute URI.  The location's URI is mapped by the source chains of
 * the configuration (config.h) to an ordered list of replicas; the first
 * replica that has the object serves it:
 *
 *   local replicas (a directory, file://)  -> read with pread/splice, no cache
 *   remote replicas (http(s)://, s3://)    -> read block by block through the
 *                                            verified persistent cache, with
 *                                            read-ahead, retries, failover
 *
 * No value read from the registry may point the mount outside what the
 * configuration names; anything else is refused with -EACCES and one log
 * line:
 *   - any location, judged after percent-decoding, with a "." or ".."
 *     segment, an encoded '/' or '\', or an encoded NUL;
 *   - a remote URL (http(s)://, s3://) outside the datastore root and the
 *     configured remote replicas: credentials (bearer token, S3 keys) go
 *     only there, never to an absolute URI that merely appears in a row;
 *     map its prefix under sources: to serve it;
 *   - a local path (a relative location under a local root, a file:// URI
 *     or an absolute path alike) that does not lie, both as written and
 *     after resolving every symlink, under the datastore root, a local
 *     replica or a directory of allowed_roots: (config.h).  It is opened
 *     with O_NOFOLLOW, and only a regular file is served.
 *
 * Remote objects are pinned per open: size and validator (ETag) are taken
 * at open, from the reply to a GET of the first block (or from the cache's
 * record of the object, so an open needs no network when the object was
 * seen before) and every later range request
 * must match, so a replaced object gives -EIO and a log line, never mixed
 * bytes.
 *
 * Errors: negative errno.  Threads: a bfs_fetcher is shared by all threads;
 * a bfs_source may be read by several threads at once.
 */
#ifndef BFS_SOURCE_H
#define BFS_SOURCE_H

#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct bfs_fetcher bfs_fetcher;
typedef struct bfs_source bfs_source;

/* cfg may be NULL (defaults, no source chains); it is not copied and must
 * outlive the fetcher.  The cache and the HTTP stack are created on the first
 * remote open, so a purely local repository never touches the cache
 * directory.  Create it after daemonizing (it owns threads and an LMDB env). */
int bfs_fetcher_new(const bfs_config *cfg, bfs_fetcher **out);

/* Whether the configuration's block cache can be opened (it is created
 * when missing), checked by opening and closing it: 0, or -errno with
 * *errmsg (malloc'd) saying why.  Remote data is still served without a
 * cache, uncached; callers that exist to fill it (prefetch) or that can
 * still tell the user (mount, before it detaches) ask first.  Nothing
 * stays open, so a process may fork afterwards. */
int bfs_fetch_cache_check(const bfs_config *cfg, char **errmsg);

/* True when uri (a datastore root or location) names remote bytes: a URI
 * other than file:///path (NULL and local paths are local). */
bool bfs_source_is_remote(const char *uri);
void bfs_fetcher_free(bfs_fetcher *f);

/* The absolute URI (or local path) of location: root + location for a
 * relative one, an absolute one as it is.  malloc'd into *out; -EACCES (and
 * a log line) for one refused on sight: a '.' or '..' segment, an encoded
 * '/' or '\' or NUL, judged after percent-decoding.  Where an absolute one
 * leads is judged at open (see the top of this file). */
int bfs_source_uri(const char *root, const char *location, char **out);

/* Open for reading.  size_hint is the registry's file_size (-1 unknown);
 * checksum is its file_datastore_records.checksum (NULL or "" for none).
 * -ENOENT when no replica has the object, -EIO when they all fail.
 *
 * A remote object with a BLAKE2b-512 checksum (the Butler's format: 128 hex
 * digits) is checked as a whole when an open reads it from start to end in
 * order (sequential readers, `butlerfs prefetch`).  Until a whole read has
 * matched, its opens take every block from the servers, none from the
 * cache (a block cached by an earlier partial read is not known good).  On
 * a mismatch the last block is fetched once more (the next replica first):
 * if the object then matches, the read succeeds with the new copy; else the
 * read that reaches the last block fails with -EIO, as does every later
 * read of that open, and every cached block of that version is dropped.  A
 * match is remembered with the object's version, so it is checked once.
 * Without a registry checksum, an S3 object whose ETag is its MD5 (one
 * part, no SSE-KMS or SSE-C) is checked the same way against it, except
 * that its opens still take blocks from the cache.  Local files are not
 * checked (they are read in place, as the Butler does). */
int bfs_source_open(bfs_fetcher *f, const char *root, const char *location, int64_t size_hint,
                    const char *checksum, bfs_source **out);

/* Read up to n bytes at off; returns bytes read (0 at end) or -errno. */
ssize_t bfs_source_pread(bfs_source *s, void *buf, size_t n, off_t off);

/* A read without a copy: the bytes as pieces pointing into the fetcher's
 * memory, valid until bfs_view_release.  BFS_VIEW_MAX pieces cover any
 * range of up to BFS_VIEW_MAX - 1 blocks: 1 MiB with the smallest block
 * size (64 KiB), so any FUSE read (the mount sets max_read to 1 MiB). */
#define BFS_VIEW_MAX 17
typedef struct bfs_view {
    struct iovec iov[BFS_VIEW_MAX];
    int n;                       /* pieces in iov */
    void *ref[BFS_VIEW_MAX];     /* internal: what keeps each piece alive */
} bfs_view;

/* Fill v with up to n bytes at off; returns their count (0 at end) or
 * -errno.  -EOPNOTSUPP for a local source (use bfs_source_fd); -E2BIG when
 * the range needs more than BFS_VIEW_MAX pieces and -ENOBUFS when the memory
 * budget cannot hold all of them at once: bfs_source_pread serves both.  Release v with
 * bfs_view_release in every case (a no-op after an error). */
ssize_t bfs_source_view(bfs_source *s, size_t n, off_t off, bfs_view *v);
void bfs_view_release(bfs_view *v);

/* The underlying descriptor, for zero-copy replies (splice); -1 if none. */
int bfs_source_fd(const bfs_source *s);

/* Size of the object as opened. */
int64_t bfs_source_size(const bfs_source *s);

/* True while s's whole-object check has yet to pass: bytes read from it
 * are not known good, so a page cache must not keep them past this open
 * (a later open may find them bad).  False for local sources and objects
 * without a usable checksum. */
bool bfs_source_check_pending(const bfs_source *s);

/* True once s failed its whole-object check: every byte any open read of
 * this object is suspect; a page cache holding them must drop them. */
bool bfs_source_check_failed(bfs_source *s);

void bfs_source_close(bfs_source *s);

/* Size of the object without reading it (registries without file_size):
 * stat(2) locally, the cache's record or a HEAD remotely. */
int bfs_source_stat_size(bfs_fetcher *f, const char *root, const char *location, int64_t *size);

/* Counters for `butlerfs cache stats`, tests and benchmarks. */
typedef struct bfs_fetch_stats {
    uint64_t bytes_fetched;   /* bytes received from remote servers */
    uint64_t blocks_fetched;
    uint64_t cache_hits, cache_misses;
    uint64_t failovers;       /* reads served by a later replica after a failure */
    uint64_t errors;          /* reads that ended in -EIO */
    int64_t memory_used;      /* bytes of blocks in use (buffers and mapped cache blocks: in flight, held, idle spares) */
    int64_t memory_budget;    /* their bound (fetch.memory_budget) */
} bfs_fetch_stats;
void bfs_fetcher_stats(bfs_fetcher *f, bfs_fetch_stats *st);

/* A replica, or a whole host, skipped now after failures. */
typedef struct bfs_replica_state {
    char name[256];           /* replica base, or scheme://host[:port]; never user:password@ */
    bool host;                /* the host (no connection could be made), else one replica */
    int64_t retry_in_ms;      /* skipped for this much longer */
    char why[64];             /* what its failures were: "server errors", ... */
} bfs_replica_state;

/* The replicas and hosts skipped now: up to max into out; returns how many
 * there are (may be more than max). */
int bfs_fetcher_skipped(bfs_fetcher *f, bfs_replica_state *out, int max);

/* The kinds of failure counted per replica: what one request (or, for
 * checksum, one whole-object check) ended with.  Retries hide most of them
 * from readers; these counts show them to the operator. */
typedef enum bfs_fault {
    BFS_FAULT_HTTP_5XX,   /* a 5xx status, or a failure http.c could not classify (-EIO) */
    BFS_FAULT_HTTP_4XX,   /* 401, 403, 416 (404 and 410 are counted as not_found) */
    BFS_FAULT_RESET,      /* the connection broke (-ECONNRESET) */
    BFS_FAULT_TIMEOUT,    /* a stall below the low-speed limit or a timeout (-ETIMEDOUT) */
    BFS_FAULT_SHORT_BODY, /* a short, overlong or malformed reply (-EPROTO) */
    BFS_FAULT_REFUSED,    /* no connection (-ECONNREFUSED, -EHOSTDOWN, -EHOSTUNREACH) */
    BFS_FAULT_CHECKSUM,   /* the bytes served failed a checksum */
    BFS_FAULT_OTHER,      /* anything else */
    BFS_FAULT_N
} bfs_fault;

/* "http_5xx", "http_4xx", "reset", "timeout", "short_body", "refused",
 * "checksum", "other": the names in the status file. */
const char *bfs_fault_name(bfs_fault kind);

/* What one replica's requests ended with since the mount started. */
typedef struct bfs_replica_faults {
    char name[256];           /* replica base, or scheme://host[:port] (as bfs_replica_state) */
    uint64_t requests;        /* requests sent to it (every attempt) */
    uint64_t retries;         /* of those, attempts after a transient failure there */
    uint64_t not_found;       /* 404/410 answers (not faults: the next replica is asked) */
    uint64_t faults[BFS_FAULT_N];
    double recent_failure_rate; /* faults per request over the last minute or so */
} bfs_replica_faults;

/* The replicas requests went to, up to max into out, in the order they
 * were first used; returns how many there are (may be more than max). */
int bfs_fetcher_faults(bfs_fetcher *f, bfs_replica_faults *out, int max);

#endif
