/*
 * http.h - one request to a remote object: HTTP(S), WebDAV and S3 (path-style
 * URLs signed with AWS Signature V4, see s3.h), through libcurl.
 *
 * This layer makes exactly one attempt per call, bounded in time by the
 * configuration (connect timeout, low-speed limit, per-request timeout); the
 * retry, backoff and replica failover policy lives in the reader
 * (remote.c), so every transport gets the same one.  Errors are classified
 * so that policy can decide:
 *
 *   -ENOENT     404/410: the object is not on this replica (permanent)
 *   -EACCES     401/403 (permanent for this replica)
 *   -ESTALE     412, or a validator or total size (Content-Range) that
 *               differs from the pinned one: the object changed since it
 *               was opened (never retried)
 *   -ERANGE     416: range outside the object
 *   -ETIMEDOUT  transfer timeout or below the low-speed limit (transient)
 *   -EHOSTDOWN  no connection within connect_timeout (transient; the host,
 *               not one replica: remote.c skips every replica there)
 *   -EHOSTUNREACH the host name cannot be resolved (transient; the host too)
 *   -ECONNREFUSED no connection could be made: nothing listens, no route
 *               (transient; the host too)
 *   -ECONNRESET connection reset, server vanished (transient)
 *   -EPROTO     wrong Content-Range, short or overlong body, bad reply (transient)
 *   -EIO        5xx and anything else (transient)
 *
 * Also -EACCES (permanent, logged once with what to fix) when the TLS
 * certificate of the server fails verification, when token_file is missing,
 * unreadable, empty or not one line (no request is sent), and when an s3://
 * profile has no usable credentials; -EINVAL for a malformed URL or s3://
 * URI; -ENOMEM.  -ENOENT therefore always means the server said the object
 * is not there.
 *
 * Secrets (bearer tokens, S3 keys, signatures) never appear in logs or
 * error messages: URLs are logged without query strings and headers are
 * never logged.
 *
 * Threads: a bfs_http is shared; each thread uses its own curl easy handle
 * (kept per thread for connection reuse).  All functions are thread-safe.
 * bfs_http_free() must not run while another thread uses the bfs_http or
 * is exiting after having used it (join the readers first; libfuse's loop
 * does before it returns).
 */
#ifndef BFS_HTTP_H
#define BFS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The values in comments are the recommended settings (config.c's
 * defaults).  A request must always end, so a timeout <= 0 means the value
 * shown, not "none"; low_speed_bytes or low_speed_time_s <= 0 turns the
 * low-speed check off.  token_file is read before the first request and
 * re-read when its inode, size or mtime changes (checked at most once a
 * second); surrounding whitespace is trimmed; it is sent as
 * "Authorization: Bearer <token>" on http(s) requests only. */
typedef struct bfs_http_cfg {
    long connect_timeout_ms;  /* 5000 */
    long request_timeout_ms;  /* 30000: one whole request */
    long low_speed_bytes;     /* 1024: below this many bytes/s ... */
    long low_speed_time_s;    /* 10: ... for this long, the transfer failed */
    bool tls_verify;          /* true */
    const char *ca_file;      /* NULL: system CAs */
    const char *token_file;   /* bearer token file, re-read when it changes; NULL: none */
    const char *s3_profile;   /* default profile for s3:// URIs without one; NULL: env/default */
} bfs_http_cfg;

/* The version of an object, pinned at open. */
typedef struct bfs_object {
    int64_t size;
    char etag[160];           /* "" when the server gave none */
    char last_modified[64];   /* "" when none */
    char sum_alg[8];          /* "sha256" or "sha1": an S3 x-amz-checksum-* of the whole object
                               * (composite checksums of multipart objects are not kept); "" none */
    char sum_hex[65];         /* that checksum, lowercase hex */
    bool etag_md5;            /* the ETag is the object's MD5: an S3 reply with a single-part
                               * ETag (32 hex digits) and no SSE-KMS or SSE-C encryption */
    int etag_parts;           /* > 0: the ETag is S3's multipart form "<32 hex>-N" (the MD5 of
                               * the N parts' binary MD5s), no SSE-KMS or SSE-C; N here */
} bfs_object;

typedef struct bfs_http bfs_http;

/* cfg is copied (strings too).  -errno and *errmsg (malloc'd) on failure
 * (an unreadable ca_file is reported here, at start-up; a readable one
 * without a usable CA certificate makes every https:// request -EACCES).  Nothing is read
 * from the network, the token file or the S3 credentials until a request. */
int bfs_http_new(const bfs_http_cfg *cfg, bfs_http **out, char **errmsg);
void bfs_http_free(bfs_http *h);

struct bfs_config;
/* The http settings of a configuration file's fetch: section (timeouts,
 * TLS, token file, S3 profile), for every bfs_http the daemon makes.  The
 * strings point into cfg. */
void bfs_http_cfg_from(const struct bfs_config *cfg, bfs_http_cfg *out);

/* True for the URL schemes this layer serves: http://, https://, s3://. */
bool bfs_http_handles(const char *url);

/* HEAD: size and validators of url.  A reply without Content-Length is
 * -EPROTO.  *obj is zeroed on error. */
int bfs_http_stat(bfs_http *h, const char *url, bfs_object *obj);

/* GET bytes [off, off + len) of url into buf.  When pin is not NULL the
 * request carries If-Match (or If-Unmodified-Since when there is no ETag)
 * and the reply's validators must equal pin's, else -ESTALE.  Returns the
 * number of bytes, which is len unless the object ends first; *bytes_moved
 * (may be NULL) gets the bytes received on the wire (for the transfer
 * counters and tests).
 *
 * Bytes received means HTTP body bytes (headers are not counted), including
 * those of a refused or cut-off reply; *bytes_moved is set on error too.
 * With a pin, off >= pin->size returns 0 without a request and the range is
 * clipped to pin->size.  Without a pin, a range that starts at or past the
 * end is -ERANGE (the server's 416).  Nothing beyond the returned count is
 * written to buf; after an error, buf may hold a prefix of the range (the
 * object's bytes) and must be treated as garbage. */
ssize_t bfs_http_get(bfs_http *h, const char *url, const bfs_object *pin, int64_t off, size_t len,
                     void *buf, size_t *bytes_moved);

/* Sees a GET's body while it lands in buf: after each piece is copied,
 * arrived(ud, buf, n), buf[0..n) being the range's bytes received so far
 * (an error reply's body is never shown).  On the requesting thread. */
typedef struct bfs_http_sink {
    void (*arrived)(void *ud, const void *buf, size_t n);
    void *ud;
} bfs_http_sink;

/* The same, bounded by timeout_ms when that is shorter than the configured
 * request timeout (<= 0: the configured one), so a caller with a deadline
 * never waits past it for one request.  seen (may be NULL) gets what a
 * successful GET's reply said of the object: its size (-1 when unknown),
 * ETag and Last-Modified; zeroed on error.  sink (may be NULL) sees the
 * body as it arrives. */
int bfs_http_stat_within(bfs_http *h, const char *url, bfs_object *obj, long timeout_ms);
ssize_t bfs_http_get_within(bfs_http *h, const char *url, const bfs_object *pin, int64_t off, size_t len,
                            void *buf, size_t *bytes_moved, long timeout_ms, bfs_object *seen,
                            const bfs_http_sink *sink);

/* ---- writes (WebDAV and S3; the transfer queue) ----
 * Success is any 2xx.  Bounded by timeout_ms like the reads. */

/* PUT size bytes of fd (read with pread from offset 0, never held in
 * memory whole) to url: a WebDAV PUT, or for s3:// a signed PutObject
 * (UNSIGNED-PAYLOAD; one request, so at most 5 GiB).  result (may be NULL)
 * gets the reply's ETag.  MOVE, DELETE and POST below are http(s) only
 * (-EOPNOTSUPP for s3://). */
int bfs_http_put_file(bfs_http *h, const char *url, int fd, int64_t size, long timeout_ms, bfs_object *result);
/* The same, sending at most max_bps bytes per second (0: no cap). */
int bfs_http_put_file_capped(bfs_http *h, const char *url, int fd, int64_t size, int64_t max_bps,
                             long timeout_ms, bfs_object *result);
/* WebDAV MOVE of from_url onto to_url (Destination, Overwrite: T or F);
 * an existing to_url with overwrite false is the server's 412: -ESTALE. */
int bfs_http_move(bfs_http *h, const char *from_url, const char *to_url, bool overwrite, long timeout_ms);
/* POST of a small body held in memory (an event line to a webhook). */
int bfs_http_post(bfs_http *h, const char *url, const char *content_type, const void *body, size_t len,
                  long timeout_ms);
/* DELETE; -ENOENT when the server has no such object. */
int bfs_http_delete(bfs_http *h, const char *url, long timeout_ms);

/* ---- a request whose reply body streams to the caller (listing.c) ----
 *
 * method with an optional small body held in memory (PROPFIND's XML), the
 * reply body of a final 2xx handed to on_body piece by piece as it arrives
 * (never held here), on the calling thread.  on_body returns 0, or -errno to
 * abort the request (that errno is the result).  A reply body longer than
 * max_reply bytes (> 0) aborts it with -EFBIG, so a listing cannot grow
 * without bound.  Bounded by timeout_ms like the reads (the whole request,
 * body included).  query: nquery parameters (s3.h's bfs_s3_param), s3://
 * URIs only (-EINVAL otherwise), signed in the canonical query; with them
 * the key may be empty ("s3://bucket/", a request on the bucket).  headers: up to two more header lines
 * ("Depth: 1"), http(s) only, no CR/LF.  Success is any 2xx; status gets
 * the final reply's HTTP status (0 when none arrived), so a caller can tell
 * a method the server refuses (405, 501) from other errors, which are those
 * of the table above (-EFBIG too).  The strings are borrowed for the call. */
typedef struct bfs_http_call {
    const char *method;              /* "PROPFIND", "GET" */
    const char *url;
    const struct bfs_s3_param *query;
    int nquery;
    const char *headers[2];
    const char *body;                /* NULL: no body */
    size_t body_len;
    int (*on_body)(void *ud, const char *data, size_t n);
    void *ud;
    int64_t max_reply;               /* bytes; <= 0: no bound but the time */
    long timeout_ms;
    long status;                     /* out */
} bfs_http_call;
int bfs_http_call_stream(bfs_http *h, bfs_http_call *call);

/* url as it may be logged or shown: without http(s) userinfo, query or
 * fragment (where passwords, tokens and signatures travel), cut to outsz. */
void bfs_http_url_for_log(const char *url, char *out, size_t outsz);

/* -errno in words: strerror, except for the two errnos given a meaning of
 * their own here (EHOSTDOWN, EHOSTUNREACH), whose strerror misleads. */
const char *bfs_http_strerror(int err);

/* Total bytes received by this bfs_http (all threads) since creation. */
uint64_t bfs_http_bytes_received(const bfs_http *h);

/* ---- S3 requests beyond GET/HEAD/PutObject (the multipart upload of s3_multipart.h) ---- */

struct bfs_s3_param;

/* One signed S3 request with a query string (s3.h's bfs_s3_param), a body
 * from a byte range of a file or from memory, and its reply body kept. */
typedef struct bfs_http_s3_req {
    const char *method;       /* "PUT", "POST" or "DELETE" */
    const struct bfs_s3_param *query; /* nquery of them, signed (NULL when 0) */
    int nquery;
    int fd;                   /* PUT: the body is len bytes of fd from off (pread, streamed);
                               * -1 for POST and DELETE */
    int64_t off, len;
    const char *body;         /* POST: a small body in memory, its SHA-256 signed (NULL: empty) */
    size_t body_len;
    const char *content_md5;  /* base64 MD5 of the body, sent as Content-MD5; NULL: none */
    int64_t max_bps;          /* PUT: bytes per second at most (0: no cap) */
    long timeout_ms;          /* bounded like every request here (<= 0: request_timeout_ms) */
    char *reply;              /* the reply's body (any status), NUL-terminated, cut at
                               * reply_cap - 1 bytes; NULL: not kept.  Owned by the caller. */
    size_t reply_cap;
    size_t reply_len;         /* out: bytes kept in reply */
    char etag[160];           /* out: the reply's ETag ("" when none) */
} bfs_http_s3_req;

/* Perform rq on s3_uri (s3://[profile@]bucket/key): success is any 2xx
 * (a 200 may still carry an S3 <Error> body: the caller looks at reply);
 * the errors of the writes above, -EPROTONOSUPPORT for a URL that is not
 * s3://, -EINVAL for a request that does not fit its method. */
int bfs_http_s3_request(bfs_http *h, const char *s3_uri, bfs_http_s3_req *rq);

#endif
