/*
 * listing.h - what a remote directory holds, in a few requests: a WebDAV
 * PROPFIND with Depth: 1, or S3 ListObjectsV2 pages (issue 12: `butlerfs
 * catchup` lists the destination instead of asking for each object).
 *
 *   http(s)://host/path/dir/     PROPFIND Depth: 1 asking for resourcetype
 *                                and getcontentlength (RFC 4918, 9.1); the
 *                                207 multistatus reply is parsed as it
 *                                arrives (libxml2 push parser, no network,
 *                                no DTD, no entity expansion)
 *   s3://[profile@]bucket/dir/   GET /bucket/?list-type=2&prefix=dir/&
 *                                delimiter=/&encoding-type=url&max-keys=N
 *                                (&continuation-token=T), signed, page after
 *                                page while IsTruncated, following
 *                                NextContinuationToken
 *
 * Both yield the members directly in the directory, one callback each:
 * files with their size, sub-directories (WebDAV collections, S3 common
 * prefixes) with is_dir.  The directory itself, and anything a reply names
 * that is not a direct member of the URL asked for, is left out.
 *
 * Names are untrusted server data made safe here: each href is reduced to
 * its path, percent-decoded (bfs_uri_decode) and compared byte for byte
 * with the decoded path asked for; each S3 key is decoded (the reply says
 * EncodingType url) and must begin with the prefix asked for.  What is
 * given to the callback is then one path component: never empty, "." or
 * "..", never holding '/' or NUL.  Compare it with a name decoded the same
 * way (bfs_list_split_url).
 *
 * Bounds: every request is bounded by timeout_ms (and the bfs_http's own
 * request timeout); every reply body by max_reply bytes (BFS_LIST_MAX_REPLY
 * by default), which bounds one PROPFIND of a huge directory (a 256 MiB
 * multistatus is over a million members), then -EFBIG; S3 pages hold
 * max-keys keys (1000, the most S3 returns; the environment variable
 * BFS_LIST_MAX_KEYS sets a smaller page, a test knob to exercise paging).
 *
 * Errors (negative errno; *errmsg, when not NULL, gets a malloc'd sentence
 * the caller frees):
 *   -ENOENT      the directory is not there (PROPFIND 404); S3 has no
 *                directories: an empty listing is 0 with no entries, a
 *                missing bucket is -ENOENT
 *   -EOPNOTSUPP  the server refuses PROPFIND (405 or 501), or the URL is
 *                neither http(s) nor s3
 *   -EFBIG       a reply longer than max_reply bytes
 *   -EPROTO      a reply that is not the expected XML (a DTD is refused),
 *                or an S3 page that says it is truncated without a new
 *                continuation token
 *   -EINVAL      a URL that does not end with '/'
 *   the errors of bfs_http_call_stream (http.h), and the callback's own.
 * Entries already given to the callback stay given when an error follows.
 *
 * Threads: functions are reentrant; one listing runs on the calling thread.
 */
#ifndef BFS_LISTING_H
#define BFS_LISTING_H

#include "http.h"

#include <stdbool.h>
#include <stdint.h>

#define BFS_LIST_MAX_REPLY ((int64_t)256 << 20)

typedef struct bfs_list_entry {
    const char *name; /* one decoded path component (see above); valid during the callback */
    int64_t size;     /* bytes; -1 when the server did not say (and for directories) */
    bool is_dir;
} bfs_list_entry;

/* Returns 0 to go on, or a negative errno that stops the listing and is
 * returned by bfs_list_dir. */
typedef int (*bfs_list_cb)(void *ctx, const bfs_list_entry *e);

typedef struct bfs_list_stats {
    int64_t requests; /* PROPFINDs or S3 pages asked for */
    int64_t entries;  /* given to the callback */
    int64_t ignored;  /* named by a reply but not a direct member, or unusable */
    long status;      /* the HTTP status of the last reply (0: none) */
} bfs_list_stats;

/* List the directory url (ending with '/') through h; see above.  stats
 * (may be NULL) is added to, not reset.  max_reply <= 0 means
 * BFS_LIST_MAX_REPLY. */
int bfs_list_dir(bfs_http *h, const char *url, bfs_list_cb cb, void *ctx, long timeout_ms,
                 int64_t max_reply, bfs_list_stats *stats, char **errmsg);

/* Split an object URL into the URL of its directory (malloc'd into *dir,
 * ending with '/', for bfs_list_dir) and its name as a listing gives it
 * (malloc'd into *name: the last component, percent-decoded the way the
 * scheme's requests do: http(s) paths and s3 keys alike).  -EINVAL when the
 * URL has no path component or names a directory, or its name decodes to
 * NUL; -ENOMEM.  On error both are NULL. */
int bfs_list_split_url(const char *url, char **dir, char **name);

#endif
