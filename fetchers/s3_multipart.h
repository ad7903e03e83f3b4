/*
 * s3_multipart.h - one S3 object uploaded in parts (the transfer queue's
 * uploads above transfer.multipart_threshold; docs/transfer.md).
 *
 * The protocol (AWS S3 API reference): CreateMultipartUpload (POST
 * key?uploads) gives an UploadId; UploadPart (PUT key?partNumber=N&uploadId=ID)
 * sends each byte range of the file, which S3 answers with the part's
 * ETag; CompleteMultipartUpload (POST key?uploadId=ID, the list of part
 * numbers and ETags) makes the object visible under its key, whole, at
 * once; AbortMultipartUpload (DELETE key?uploadId=ID) drops the parts of an
 * upload given up.  Each request is one bfs_http_s3_request, signed by
 * s3.c, bounded by cfg->timeout_ms.
 *
 * Parts go one after the other (the queue's concurrency is over objects).
 * A part that fails with a transient error (timeout, reset, 5xx, a bad
 * reply) is sent again alone, up to cfg->part_attempts times with doubling
 * backoff, before the whole upload fails; the parts already sent are not
 * sent again.  Each part carries Content-MD5, so S3 refuses a part that
 * arrived damaged.  A CompleteMultipartUpload that answers 200 with an
 * <Error> body is a failure (S3 does so for errors found after it started
 * replying).  Whatever fails after CreateMultipartUpload, the upload is
 * aborted (best effort: a failed abort is logged) before returning.
 *
 * A process killed in the middle leaves an incomplete upload, invisible
 * under the key (S3 shows nothing until Complete) but holding its parts'
 * storage until aborted; see docs/transfer.md (a bucket lifecycle rule).
 *
 * Errors: negative errno (http.h's table; -ECANCELED when cfg->cancelled
 * said so), with *why (malloc'd, the caller frees) a sentence without
 * secrets.  Threads: any thread; nothing is shared between calls.
 */
#ifndef BFS_S3_MULTIPART_H
#define BFS_S3_MULTIPART_H

#include "http.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct bfs_s3_multipart_cfg {
    int64_t part_size;     /* wanted; bfs_s3_part_size() makes it fit S3's limits */
    int64_t max_bps;       /* each part sent at most this many bytes per second (0: no cap) */
    long timeout_ms;       /* each request (<= 0: the bfs_http's request_timeout_ms) */
    int part_attempts;     /* tries of one part, or of Complete (<= 0: 4) */
    long backoff_ms;       /* the wait before the second try, doubled for each next (<= 0: 1000) */
    bool (*cancelled)(void *ud); /* NULL, or asked before each request: true stops the upload */
    void *ud;
} bfs_s3_multipart_cfg;

/* Upload size bytes of fd (read with pread, never held whole) to s3_uri
 * ("s3://[profile@]bucket/key") in parts.  0 once S3 has completed the
 * object; -errno and *why otherwise, the upload then aborted. */
int bfs_s3_multipart_put(bfs_http *h, const char *s3_uri, int fd, int64_t size, const bfs_s3_multipart_cfg *cfg,
                         char **why);

#endif
