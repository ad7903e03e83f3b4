/*
 * s3.h - S3 URIs, credentials and AWS Signature Version 4 for http.c.
 *
 * http.c serves s3:// URIs as path-style HTTP(S) requests:
 *
 *   s3://[profile@]bucket/key  ->  <endpoint>/<bucket>/<key>
 *
 * bfs_s3_prepare() turns one request on an s3:// URI into the URL to fetch
 * and the signed headers to send; http.c performs it with plain libcurl and
 * classifies the reply as for any HTTP object.  Nothing here does network
 * I/O: it reads environment variables and the AWS shared files, and hashes.
 *
 * Credentials and settings (bfs_s3_load_creds) follow the AWS CLI and the
 * LSST Butler (lsst.resources), in this order:
 *
 *   keys      no explicit profile: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY
 *             (+ AWS_SESSION_TOKEN) when both are set; otherwise, and always
 *             for an explicit profile, the [NAME] section of the shared
 *             credentials file ($AWS_SHARED_CREDENTIALS_FILE, default
 *             ~/.aws/credentials), then the profile's section of the config
 *             file.  NAME is the explicit profile, else $AWS_PROFILE, else
 *             "default".
 *   region    AWS_REGION, AWS_DEFAULT_REGION, the profile's "region" in the
 *             config file ($AWS_CONFIG_FILE, default ~/.aws/config; sections
 *             are "[default]" and "[profile NAME]"), else us-east-1.
 *   endpoint  AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, S3_ENDPOINT_URL (what
 *             the Butler uses), the profile's "endpoint_url" (or an "s3 ="
 *             sub-section's endpoint_url) in the config file, else
 *             https://s3.<region>.amazonaws.com.
 *
 * Signing: every request carries host, x-amz-date, x-amz-content-sha256
 * (the SHA-256 of the empty body for GET and HEAD, of the body for a request
 * whose body is in memory (bfs_s3_prepare_request), else UNSIGNED-PAYLOAD;
 * some servers, s3rver among them, refuse a request without it), x-amz-security-token when the credentials have a session token, and
 * the Authorization header.  Range and If-Match are signed when given.  Any
 * other header http.c adds itself (If-Unmodified-Since, User-Agent, Accept)
 * is sent unsigned, which SigV4 allows for every header but host and x-amz-*.
 *
 * Secrets: access keys, secret keys, session tokens and signatures never
 * appear in a log line or an error message; messages name the profile and
 * the file instead.  The headers returned by bfs_s3_prepare() do contain the
 * token and the signature: never log them.
 *
 * Errors: 0 or a negative errno; functions with an errmsg out-parameter also
 * set *errmsg (malloc'd, caller frees, NULL on success) to a one-line message
 * that says what to fix.
 *
 * Threads: bfs_s3_load_creds, bfs_s3_parse_uri, bfs_s3_uri_encode and
 * bfs_sigv4_sign are pure (apart from reading the environment and files) and
 * reentrant.  A bfs_s3 is shared by all threads; its functions are
 * thread-safe.  Nothing here calls setenv().
 */
#ifndef BFS_S3_H
#define BFS_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct curl_slist;

typedef struct bfs_s3_creds {
    char access_key[128];
    char secret_key[128];
    char session_token[4096]; /* "" when none */
    char region[64];
    char endpoint[512];       /* scheme://host[:port][/path], no trailing '/' */
} bfs_s3_creds;

/* Resolve the credentials, region and endpoint for profile (NULL: not
 * explicit, see above) into *out.  On failure *out is zeroed and:
 *   -ENOENT        no keys for the profile (no such section, or a section
 *                  without aws_access_key_id / aws_secret_access_key)
 *   -EINVAL        a value too long or an endpoint that is not http(s)://
 *   -EACCES, -EIO  a file that exists but cannot be read
 *   -ENOMEM
 * errmsg may be NULL.  Wipe *out with bfs_s3_creds_clear() when done. */
int bfs_s3_load_creds(const char *profile, bfs_s3_creds *out, char **errmsg);

/* Overwrite the secrets in *c with zeros (not optimised away). */
void bfs_s3_creds_clear(bfs_s3_creds *c);

/* Split "s3://[profile@]bucket/key".  profile gets "" when the URI names
 * none; *key points into uri just after the '/' that ends the bucket ("" for
 * "s3://bucket" or "s3://bucket/"), still in URI form (see bfs_s3_prepare).
 * A bucket may contain [A-Za-z0-9._-] and ':' (Ceph tenant "tenant:bucket").
 * -EINVAL for anything else, -ENAMETOOLONG when profile or bucket do not fit
 * psz/bsz.  On error profile and bucket are "" and *key is NULL. */
int bfs_s3_parse_uri(const char *uri, char *profile, size_t psz, char *bucket, size_t bsz,
                     const char **key);

/* SigV4 UriEncode of n bytes of in into out: every byte but A-Z a-z 0-9
 * '-' '.' '_' '~' becomes %XX (upper-case hex); '/' is kept when keep_slash.
 * Returns the length written or -ENAMETOOLONG (out is then ""). */
int bfs_s3_uri_encode(const char *in, size_t n, int keep_slash, char *out, size_t out_sz);

typedef struct bfs_s3 bfs_s3;

/* A cache of resolved credentials per profile.  default_profile (copied;
 * NULL: not explicit) serves URIs without "profile@".  Nothing is read
 * until the first use of a profile, so a repository that never reads from
 * S3 needs no credentials; call bfs_s3_check() at start-up to fail early.
 * Entries are re-read after 60 s so rotated session tokens are picked up;
 * a failed re-read keeps the previous entry.  -ENOMEM. */
int bfs_s3_new(const char *default_profile, bfs_s3 **out);
/* Wipes the cached secrets.  NULL is allowed. */
void bfs_s3_free(bfs_s3 *s3);

/* Resolve profile ("" or NULL: the default profile) now, caching the result;
 * the errors and *errmsg of bfs_s3_load_creds. */
int bfs_s3_check(bfs_s3 *s3, const char *profile, char **errmsg);

/* Everything http.c needs for one request on s3_uri.
 *
 * method       "GET", "HEAD", ... (upper case, as sent)
 * s3_uri       "s3://[profile@]bucket/key"; the key is a URI path: %XX
 *              escapes are decoded first (lsst.resources writes quoted
 *              URIs: "a%20b" is the key "a b"; a '%' not followed by two hex
 *              digits stays literal), then the key is re-encoded per SigV4,
 *              '/' kept
 * range_header the value of a Range header ("bytes=0-2879") or NULL; signed.
 *              Do not also set CURLOPT_RANGE.
 * if_match     the value of an If-Match header (a quoted ETag) or NULL; signed
 * now          the request time (time(NULL)); S3 refuses a skew > 15 min, so
 *              prepare again for every attempt (retries, failover)
 * url_out      gets the URL, "<endpoint>/<bucket>/<encoded key>"
 * headers      the signed headers are appended to *headers (which may be
 *              NULL); the caller frees the list with curl_slist_free_all().
 *              On error *headers is unchanged.
 *
 * Errors: -EINVAL malformed URI, empty key, bad method, or a header value with
 * CR/LF; -ENAMETOOLONG url_sz too small; -EACCES when the profile has no
 * usable credentials (bfs_s3_load_creds failed; its message is logged once per
 * profile at warning); -ENOMEM.
 */
int bfs_s3_prepare(bfs_s3 *s3, const char *method, const char *s3_uri, const char *range_header,
                   const char *if_match, time_t now, char *url_out, size_t url_sz,
                   struct curl_slist **headers);

/* The SigV4 core, pure: builds the canonical request
 *
 *   method \n canonical_uri \n canonical_query \n
 *   name:trimall(value) \n ... \n  (one per header)  \n
 *   signed headers (names joined by ';') \n payload_hash
 *
 * the string to sign (AWS4-HMAC-SHA256, amz_date, scope, hex SHA-256 of the
 * canonical request) and the signing key (HMAC chain over the date, region,
 * service, "aws4_request"), and writes the whole Authorization header value
 *
 *   AWS4-HMAC-SHA256 Credential=<access_key>/<date>/<region>/<service>/
 *   aws4_request, SignedHeaders=<names>, Signature=<64 hex>
 *
 * into authorization_out.  canonical_uri and canonical_query must already be
 * encoded; header names must be lower case, strictly ascending and without
 * ':'; values are trimmed and inner runs of spaces collapsed here.
 * amz_date is "YYYYMMDDTHHMMSSZ".  -EINVAL for malformed input,
 * -ENAMETOOLONG when out_sz is too small, -ENOMEM, -EIO when libcrypto
 * fails.  authorization_out is "" on error. */
int bfs_sigv4_sign(const char *method, const char *canonical_uri, const char *canonical_query,
                   const char *const *header_names_lower_sorted, const char *const *header_values,
                   int nheaders, const char *payload_hash, const char *amz_date,
                   const char *region, const char *service, const char *access_key,
                   const char *secret_key, char *authorization_out, size_t out_sz);

/* Hex SHA-256 of the empty string: the payload hash of a request without a body. */
#define BFS_S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* ---- query strings and multipart uploads (pure; no network I/O) ---- */

/* S3's limits on a multipart upload: at most 10000 parts, each at least
 * 5 MiB except the last, at most 5 GiB. */
#define BFS_S3_MAX_PARTS 10000
#define BFS_S3_MIN_PART (5LL << 20)
#define BFS_S3_MAX_PART (5LL << 30)
/* Query parameters of one request at most. */
#define BFS_S3_MAX_PARAMS 8

/* One query parameter, raw (not encoded).  value NULL or "" gives "name=",
 * the form SigV4 signs for a parameter without a value ("uploads="). */
typedef struct bfs_s3_param {
    const char *name, *value;
} bfs_s3_param;

/* The SigV4 canonical query string of params: each name and value
 * UriEncoded (bfs_s3_uri_encode, '/' encoded too), the "name=value" pairs
 * sorted by encoded name, then by encoded value (byte order), joined by
 * '&'.  The same string is the URL's query.  n == 0 gives "".  Returns the
 * length; -EINVAL for an empty name or n outside 0..BFS_S3_MAX_PARAMS,
 * -ENAMETOOLONG when a name (127), a value (1023 encoded) or out does not
 * fit (out is then ""). */
int bfs_s3_canonical_query(const bfs_s3_param *params, int n, char *out, size_t out_sz);

/* One request for bfs_s3_prepare_request: bfs_s3_prepare's arguments, and
 * further query parameters and the body's hash. */
typedef struct bfs_s3_request {
    const char *method;        /* "GET", "PUT", "POST", "DELETE", ... */
    const char *s3_uri;        /* as for bfs_s3_prepare */
    const bfs_s3_param *query; /* nquery of them (NULL when 0) */
    int nquery;
    const char *range_header, *if_match; /* as for bfs_s3_prepare, or NULL */
    const void *body;          /* a body held in memory: its SHA-256 is signed; NULL: no body
                                * in memory (the empty body's hash for GET/HEAD, else
                                * UNSIGNED-PAYLOAD, e.g. a part streamed from a file) */
    size_t body_len;
} bfs_s3_request;

/* bfs_s3_prepare for rq: the URL gets "?<canonical query>" and the query
 * is signed; with a query the key may be empty ("s3://bucket/": a request on
 * the bucket, as ListObjectsV2 is).  Errors as bfs_s3_prepare, and those of
 * bfs_s3_canonical_query. */
int bfs_s3_prepare_request(bfs_s3 *s3, const bfs_s3_request *rq, time_t now, char *url_out, size_t url_sz,
                           struct curl_slist **headers);

/* A minimal reader for S3's small XML replies (no XML library is in the
 * stack; the replies it reads are flat and machine-made): the text of the
 * first <tag>...</tag> in xml[0, len), with the five XML entities and
 * &#34; decoded, into out.  Attributes on the tag, CDATA and nested
 * elements of the same name are not handled (S3 sends none in the
 * elements read: UploadId, ETag, Code, Message).  Returns the length;
 * -ENOENT when there is no such element, -ENAMETOOLONG when out is too
 * small (out is then ""). */
int bfs_s3_xml_text(const char *xml, size_t len, const char *tag, char *out, size_t out_sz);

/* Whether xml[0, len) is (or holds) an <Error> element, as
 * CompleteMultipartUpload may answer with a 200 status; its <Code> goes
 * into code (may be NULL; "(no code)" when it has none). */
bool bfs_s3_xml_error(const char *xml, size_t len, char *code, size_t code_sz);

/* The body of CompleteMultipartUpload for parts 1..nparts with those ETags
 * (as the UploadPart replies gave them, quotes included; XML-escaped here).
 * malloc'd, the caller frees; NULL when out of memory or nparts is not
 * 1..BFS_S3_MAX_PARTS. */
char *bfs_s3_complete_body(const char *const *etags, int nparts);

/* The part size for an object of size bytes: wanted, raised to
 * BFS_S3_MIN_PART, lowered to BFS_S3_MAX_PART, and grown (to whole MiB) so
 * the object needs at most BFS_S3_MAX_PARTS parts. */
int64_t bfs_s3_part_size(int64_t size, int64_t wanted);

#endif
