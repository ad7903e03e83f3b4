/*
 * http.c - one bounded request to a remote object over libcurl (HTTP(S),
 * WebDAV, and S3 through s3.h).
 *
 * Design.  A bfs_http is shared by every thread, but a curl easy handle is
 * not: each thread gets its own, created lazily through a pthread key and
 * kept, because the handle owns the connection cache, so keeping it is what
 * makes HTTP/1.1 keep-alive (and TLS session reuse) work from one read to
 * the next.  Every handle ever created is on h->conns so bfs_http_free()
 * can close them all; when a thread exits, the key's destructor puts its
 * handle on h->idle for the next new thread, so a FUSE loop that starts and
 * stops worker threads does not pile up handles.  The options that never
 * change (timeouts, TLS, protocols, keep-alive, callbacks) are set once
 * when a handle is made; a request sets only URL, method, Range and
 * headers, so no curl_easy_reset() (which would also drop the enlarged
 * receive buffer) is needed.
 *
 * A GET writes straight into the caller's buffer.  The header callback
 * sees the whole reply head before the first body byte, so it decides
 * there whether the reply is the one we asked for: exact Content-Range,
 * the pinned ETag/Last-Modified/size, a 200 only for a whole object that
 * fits.  A wrong reply is aborted before its body is read (a server that
 * ignores Range must not stream a 10 GB object to serve 2880 bytes), and
 * the write callback refuses any byte beyond what the head announced, so
 * the buffer can never overflow whatever the server sends.
 *
 * Errors: the callbacks only record why they aborted; http_result() is the
 * one place a CURLcode, an HTTP status or such a recorded reason becomes
 * -errno (the table in http.h), and the one place a failed transfer is
 * logged, with the URL cut at '?' and without userinfo, never with headers.
 * Transient failures are logged at info only (remote.c retries them and
 * logs the outcome), 404 and 416 at debug (failover and EOF are answers).
 * A request that is never sent (unusable token file, S3 credentials) is
 * logged where the problem is found, once per distinct problem; so is a
 * server certificate that fails verification (once per server and reason,
 * with what to fix; repeats at debug), since every request to that server
 * would fail the same way until the user acts.
 *
 * The bearer token is read from token_file when it changes (inode, size or
 * mtime, checked at most once a second) so a rotated token is picked up
 * without a remount; a missing or unusable file gives -EACCES and one log
 * line naming the file (again only when the reason changes).
 *
 * Lock order: h->token_lock and h->lock are never held together; s3.h's
 * locks are taken inside bfs_s3_prepare() with neither held.
 */
#include "http_i.h"

#include "config.h"

#include "log.h"
#include "strutil.h"
#include "s3.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TAG "http"

/* Large enough that a 1 MiB block arrives in a handful of callbacks,
 * small enough to keep one per thread. */
#define RECV_BUFFER (256 * 1024)
/* A token is a few KB (JWTs); anything bigger is the wrong file. */
#define TOKEN_MAX (64 * 1024)
/* Error bodies are read (to keep the connection) only up to this size. */
#define ERROR_BODY_MAX (64 * 1024)
#define URL_MAX 4096
/* Distinct certificate refusals remembered, so each is logged once. */
#define TLS_SEEN 8

struct http_conn {
    CURL *curl;
    bfs_http *h;
    struct http_conn *next;      /* h->conns */
    struct http_conn *next_idle; /* h->idle */
    char errbuf[CURL_ERROR_SIZE];
};

struct bfs_http {
    long connect_timeout_ms, request_timeout_ms, low_speed_bytes, low_speed_time_s;
    bool tls_verify;
    char *ca_file, *token_file;
    bfs_s3 *s3;

    pthread_key_t key;
    pthread_mutex_t lock;        /* conns, idle, tls_seen, tls_nseen */
    struct http_conn *conns;     /* every handle, closed in bfs_http_free */
    struct http_conn *idle;      /* handles of exited threads, for reuse */
    char tls_seen[TLS_SEEN][320]; /* "origin reason" of certificate refusals logged */
    unsigned tls_nseen;

    _Atomic uint64_t bytes_received;

    pthread_mutex_t token_lock;  /* everything below */
    char *token;                 /* trimmed; NULL while the file is unusable */
    bool token_seen;             /* the file was examined at least once */
    struct timespec token_checked; /* CLOCK_MONOTONIC of the last stat */
    dev_t token_dev;
    ino_t token_ino;
    off_t token_size;
    struct timespec token_mtime;
    char token_problem[160];     /* last reason logged, "" when fine */
    atomic_bool token_http_refused; /* the refusal to send it over plain http was logged */
};

/* One request: what we asked for, what the reply said, why we aborted. */
struct req {
    bfs_http *h;
    struct http_conn *c;
    const char *method;          /* "GET" / "HEAD" */
    const char *url;             /* as given by the caller (logged stripped) */
    const bfs_object *pin;
    long timeout_ms;             /* this request's bound: at most request_timeout_ms */
    int64_t off, last;           /* requested range, inclusive */
    char *buf;
    const bfs_http_sink *sink;   /* sees buf fill (NULL: nobody) */
    size_t cap;                  /* bytes requested: last - off + 1 */
    size_t got;                  /* body bytes copied into buf */
    uint64_t wire;               /* body bytes received */
    int64_t expect;              /* body bytes the head announced, -1 unknown */

    long status;                 /* of the latest status line */
    int64_t content_length;      /* -1 when absent */
    bool have_range;
    int64_t cr_first, cr_last, cr_total; /* cr_total -1 for '*' */
    bool etag_too_long;
    bool sse_opaque;             /* SSE-KMS or SSE-C: the ETag is not the MD5 */
    char sum_alg[8], sum_hex[65]; /* x-amz-checksum-sha256 / -sha1 of the whole object */
    char etag[sizeof ((bfs_object *)0)->etag];
    char last_modified[sizeof ((bfs_object *)0)->last_modified];
    bool body_ok;                /* final 200/206 head accepted */

    int reject;                  /* -errno recorded by a callback, 0 none */
    char why[160];               /* its detail, for the log */

    /* writes (PUT, MOVE, DELETE): success is any 2xx */
    bool write;
    int upload_fd;               /* PUT: the body, read with pread (with write; -1 none) */
    int64_t max_send_bps;        /* PUT: bytes per second at most (0: no cap) */
    const char *post;            /* POST: a small body in memory */
    size_t post_len;
    int64_t upload_size, upload_pos;
    int64_t upload_base;         /* PUT: file offset of the body's first byte */
    const char *extra[2];        /* further header lines ("Destination: ...") */

    /* a reply streamed to the caller (bfs_http_call; with write) */
    bfs_http_call *call;
    /* S3 requests beyond GET/HEAD/PutObject (bfs_http_s3_request) */
    const bfs_s3_param *s3_query;
    int s3_nquery;
    char *reply;                 /* a write's reply body, cut at reply_cap - 1 (NULL: drained) */
    size_t reply_cap, reply_len;
};

/* ---- curl_global_init, once ------------------------------------------------- */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void) { global_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* ---- small helpers ------------------------------------------------------------ */

static void reject(struct req *r, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void reject(struct req *r, int err, const char *fmt, ...)
{
    if (r->reject)
        return; /* the first reason is the real one */
    r->reject = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof r->why, fmt, ap);
    va_end(ap);
}

/* url without userinfo and without query or fragment (where signatures and
 * tokens travel), truncated to fit out. */
static bool is_s3(const char *url);

static void url_for_log(const char *url, char *out, size_t outsz)
{
    const char *rest = url;
    size_t pre = 0;
    const char *s = strstr(url, "://");
    /* s3://profile@bucket keeps its profile (a name, no secret); the
     * user:password@ of http(s) goes. */
    if (s && !is_s3(url)) {
        const char *auth = s + 3;
        size_t hostlen = strcspn(auth, "/?#");
        const char *at = memrchr(auth, '@', hostlen);
        pre = (size_t)(auth - url);
        rest = at ? at + 1 : auth;
    }
    size_t keep = strcspn(rest, "?#");
    if (keep > outsz)
        keep = outsz;
    snprintf(out, outsz, "%.*s%.*s%s", (int)pre, url, (int)keep, rest, rest[keep] ? "?..." : "");
}

static bool is_s3(const char *url) { return strncasecmp(url, "s3://", 5) == 0; }

bool bfs_http_handles(const char *url)
{
    return url && (strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0 ||
                   is_s3(url));
}

static int64_t parse_i64(const char *s, const char **end)
{
    if (!isdigit((unsigned char)*s)) {
        *end = s;
        return -1;
    }
    int64_t v = 0;
    while (isdigit((unsigned char)*s)) {
        int d = *s++ - '0';
        if (v > (INT64_MAX - d) / 10) {
            *end = s;
            return -1;
        }
        v = v * 10 + d;
    }
    *end = s;
    return v;
}

/* "bytes FIRST-LAST/TOTAL" (TOTAL may be '*'). */
static bool parse_content_range(const char *v, int64_t *first, int64_t *last, int64_t *total)
{
    if (strncasecmp(v, "bytes", 5) != 0)
        return false;
    v += 5;
    while (*v == ' ')
        v++;
    const char *e;
    *first = parse_i64(v, &e);
    if (*first < 0 || *e != '-')
        return false;
    *last = parse_i64(e + 1, &e);
    if (*last < *first || *e != '/')
        return false;
    if (e[1] == '*' && e[2] == '\0') {
        *total = -1;
        return true;
    }
    *total = parse_i64(e + 1, &e);
    return *total > *last && *e == '\0';
}

/* ---- per-thread handles ------------------------------------------------------- */

/* Runs when a thread that used h exits: hand its handle to the next thread.
 * bfs_http_free() must not race with exiting threads (libfuse joins its
 * workers before the session loop returns). */
static void conn_release(void *p)
{
    struct http_conn *c = p;
    pthread_mutex_lock(&c->h->lock);
    c->next_idle = c->h->idle;
    c->h->idle = c;
    pthread_mutex_unlock(&c->h->lock);
}

static size_t on_header(char *data, size_t size, size_t n, void *ud);
static size_t on_body(char *data, size_t size, size_t n, void *ud);

static int conn_setup(bfs_http *h, struct http_conn *c)
{
    CURL *k = c->curl;
    CURLcode rc = CURLE_OK;
#define SET(opt, val) \
    do { if (rc == CURLE_OK) rc = curl_easy_setopt(k, opt, val); } while (0)
    SET(CURLOPT_NOSIGNAL, 1L);                   /* timeouts without SIGALRM: threads */
    SET(CURLOPT_CONNECTTIMEOUT_MS, h->connect_timeout_ms);
    SET(CURLOPT_TIMEOUT_MS, h->request_timeout_ms);
    SET(CURLOPT_LOW_SPEED_LIMIT, h->low_speed_bytes);
    SET(CURLOPT_LOW_SPEED_TIME, h->low_speed_time_s);
    SET(CURLOPT_SSL_VERIFYPEER, h->tls_verify ? 1L : 0L);
    SET(CURLOPT_SSL_VERIFYHOST, h->tls_verify ? 2L : 0L);
    if (h->ca_file)
        SET(CURLOPT_CAINFO, h->ca_file);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);              /* notice a dead peer on an idle connection */
    SET(CURLOPT_TCP_KEEPIDLE, 30L);
    SET(CURLOPT_TCP_KEEPINTVL, 15L);
    SET(CURLOPT_TCP_NODELAY, 1L);
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1); /* one stream per handle anyway */
    /* A redirect may not take us to file://, ftp:// ...  Curl drops
     * Authorization on a redirect to another host, port or scheme. */
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    SET(CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SET(CURLOPT_FOLLOWLOCATION, 1L);
    SET(CURLOPT_MAXREDIRS, 5L);
    SET(CURLOPT_USERAGENT, "butlerfs/" BFS_VERSION);
    SET(CURLOPT_BUFFERSIZE, (long)RECV_BUFFER);
    SET(CURLOPT_ERRORBUFFER, c->errbuf);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    /* No Accept-Encoding: ranges are byte ranges of the stored object. */
#undef SET
    return rc == CURLE_OK ? 0 : -ENOMEM;
}

/* This thread's handle, or NULL when out of memory. */
static struct http_conn *conn_get(bfs_http *h)
{
    struct http_conn *c = pthread_getspecific(h->key);
    if (c)
        return c;
    pthread_mutex_lock(&h->lock);
    c = h->idle;
    if (c)
        h->idle = c->next_idle;
    pthread_mutex_unlock(&h->lock);
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c)
            return NULL;
        c->h = h;
        c->curl = curl_easy_init();
        if (!c->curl || conn_setup(h, c) < 0) {
            if (c->curl)
                curl_easy_cleanup(c->curl);
            free(c);
            return NULL;
        }
        pthread_mutex_lock(&h->lock);
        c->next = h->conns;
        h->conns = c;
        pthread_mutex_unlock(&h->lock);
    }
    c->next_idle = NULL;
    if (pthread_setspecific(h->key, c) != 0) {
        conn_release(c);
        return NULL;
    }
    return c;
}

/* ---- bearer token ------------------------------------------------------------- */

/* Log the token file's problem once per distinct reason.  token_lock held. */
static void token_problem(bfs_http *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void token_problem(bfs_http *h, const char *fmt, ...)
{
    char msg[sizeof h->token_problem];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (strcmp(msg, h->token_problem) != 0) {
        snprintf(h->token_problem, sizeof h->token_problem, "%s", msg);
        bfs_warn(TAG, "bearer token file %s %s; requests are refused (EACCES) until it is fixed",
                 h->token_file, msg);
    }
    if (h->token) {
        explicit_bzero(h->token, strlen(h->token));
        free(h->token);
        h->token = NULL;
    }
}

/* Read the token file (token_lock held, st from fstat of the opened fd). */
static void token_read(bfs_http *h, int fd, const struct stat *st)
{
    h->token_dev = st->st_dev;
    h->token_ino = st->st_ino;
    h->token_size = st->st_size;
    h->token_mtime = st->st_mtim;
    if (!S_ISREG(st->st_mode)) {
        token_problem(h, "is not a regular file");
        return;
    }
    if (st->st_size > TOKEN_MAX) {
        token_problem(h, "is larger than %d bytes", TOKEN_MAX);
        return;
    }
    char *buf = malloc(TOKEN_MAX + 1);
    if (!buf) {
        token_problem(h, "cannot be read: out of memory");
        return;
    }
    size_t n = 0;
    for (;;) {
        ssize_t k = read(fd, buf + n, TOKEN_MAX + 1 - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            int e = errno;
            explicit_bzero(buf, n);
            free(buf);
            token_problem(h, "cannot be read: %s", strerror(e));
            return;
        }
        if (k == 0 || (n += (size_t)k) > TOKEN_MAX)
            break;
    }
    const char *problem = NULL;
    size_t a = 0, b = n;
    while (a < b && isspace((unsigned char)buf[a]))
        a++;
    while (b > a && isspace((unsigned char)buf[b - 1]))
        b--;
    if (n > TOKEN_MAX)
        problem = "is too large";
    else if (a == b)
        problem = "is empty";
    for (size_t i = a; !problem && i < b; i++)
        if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
            problem = "holds more than one line or a control character";
    if (problem) {
        explicit_bzero(buf, n);
        free(buf);
        token_problem(h, "%s", problem);
        return;
    }
    memmove(buf, buf + a, b - a);
    buf[b - a] = '\0';
    explicit_bzero(buf + (b - a), n - (b - a));
    if (h->token) {
        explicit_bzero(h->token, strlen(h->token));
        free(h->token);
    }
    h->token = buf;
    if (h->token_problem[0])
        bfs_note(TAG, "bearer token file %s is usable again", h->token_file);
    else
        bfs_debug(TAG, "bearer token read from %s", h->token_file);
    h->token_problem[0] = '\0';
}

/* The bearer token travels encrypted (https://) or stays on this host
 * (plain http:// to a loopback address, as a local proxy or a test
 * server): never in clear text across a network.  A refusal is logged
 * once. */
static bool token_may_go(bfs_http *h, const char *url)
{
    char *scheme = NULL, *host = NULL;
    CURLU *u = curl_url();
    bool parsed = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
                  curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK && /* lowercased */
                  curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK;
    bool ok = parsed && strcmp(scheme, "http") != 0; /* https (s3 URLs are signed, not here) */
    if (parsed && !ok) {
        struct in_addr a4;
        ok = !strcasecmp(host, "localhost") || !strcasecmp(host, "localhost.") || !strcmp(host, "[::1]") ||
             (inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127);
    }
    if (!ok && !atomic_exchange(&h->token_http_refused, true))
        bfs_err(TAG, "not sending the bearer token (fetch.token_file) in clear text to %s: "
                     "use an https:// replica; requests to it are refused (EACCES)", host ? host : "this URL");
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}

/* Append "Authorization: Bearer <token>" to *hdrs, re-reading the file when
 * it changed.  0, -EACCES (logged) or -ENOMEM. */
static int token_header(bfs_http *h, struct curl_slist **hdrs)
{
    int ret = 0;
    pthread_mutex_lock(&h->token_lock);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t since_ms = (now.tv_sec - h->token_checked.tv_sec) * 1000 +
                       (now.tv_nsec - h->token_checked.tv_nsec) / 1000000;
    if (!h->token_seen || since_ms >= 1000) {
        h->token_seen = true;
        h->token_checked = now;
        struct stat st;
        if (stat(h->token_file, &st) < 0) {
            token_problem(h, "cannot be read: %s", strerror(errno));
        } else if (h->token && st.st_dev == h->token_dev && st.st_ino == h->token_ino &&
                   st.st_size == h->token_size && st.st_mtim.tv_sec == h->token_mtime.tv_sec &&
                   st.st_mtim.tv_nsec == h->token_mtime.tv_nsec) {
            /* unchanged */
        } else {
            int fd = open(h->token_file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
            if (fd < 0 || fstat(fd, &st) < 0)
                token_problem(h, "cannot be read: %s", strerror(errno));
            else
                token_read(h, fd, &st);
            if (fd >= 0)
                close(fd);
        }
    }
    if (!h->token) {
        ret = -EACCES;
    } else {
        static const char prefix[] = "Authorization: Bearer ";
        size_t n = sizeof prefix + strlen(h->token);
        char *line = malloc(n);
        if (!line) {
            ret = -ENOMEM;
        } else {
            snprintf(line, n, "%s%s", prefix, h->token);
            struct curl_slist *l = curl_slist_append(*hdrs, line);
            explicit_bzero(line, n);
            free(line);
            if (l)
                *hdrs = l;
            else
                ret = -ENOMEM;
        }
    }
    pthread_mutex_unlock(&h->token_lock);
    return ret;
}

/* ---- callbacks ---------------------------------------------------------------- */

/* Checks of a final 200/206 head against the request (GET only). */
static void check_head(struct req *r)
{
    const bfs_object *pin = r->pin;
    if (pin) {
        if (r->etag_too_long) {
            reject(r, -EPROTO, "ETag longer than %zu bytes", sizeof r->etag - 1);
            return;
        }
        if (pin->etag[0] && r->etag[0] && strcmp(pin->etag, r->etag) != 0) {
            reject(r, -ESTALE, "ETag is %s, was %s when opened", r->etag, pin->etag);
            return;
        }
        if (!pin->etag[0] && pin->last_modified[0] && r->last_modified[0] &&
            strcmp(pin->last_modified, r->last_modified) != 0) {
            reject(r, -ESTALE, "Last-Modified is %s, was %s when opened", r->last_modified,
                   pin->last_modified);
            return;
        }
    }
    if (r->status == 206) {
        if (!r->have_range) {
            reject(r, -EPROTO, "206 without a single-range Content-Range");
            return;
        }
        if (r->cr_total < 0) {
            reject(r, -EPROTO, "Content-Range without the object size");
            return;
        }
        if (pin && r->cr_total != pin->size) {
            reject(r, -ESTALE, "size is %" PRId64 ", was %" PRId64 " when opened", r->cr_total,
                   pin->size);
            return;
        }
        int64_t want_last = r->last < r->cr_total - 1 ? r->last : r->cr_total - 1;
        if (r->cr_first != r->off || r->cr_last != want_last) {
            reject(r, -EPROTO,
                   "Content-Range %" PRId64 "-%" PRId64 "/%" PRId64 " for a request of %" PRId64
                   "-%" PRId64,
                   r->cr_first, r->cr_last, r->cr_total, r->off, r->last);
            return;
        }
        r->expect = r->cr_last - r->cr_first + 1;
        if (r->content_length >= 0 && r->content_length != r->expect) {
            reject(r, -EPROTO, "Content-Length %" PRId64 " for a %" PRId64 "-byte range",
                   r->content_length, r->expect);
            return;
        }
    } else { /* 200: the whole object; only usable from offset 0 when it fits */
        if (r->off != 0) {
            reject(r, -EPROTO, "200 (whole object) for a range at offset %" PRId64
                   ": the server ignores Range", r->off);
            return;
        }
        if (r->content_length >= 0 && (uint64_t)r->content_length > r->cap) {
            reject(r, -EPROTO, "200 with %" PRId64 " bytes for a %zu-byte range: "
                   "the server ignores Range", r->content_length, r->cap);
            return;
        }
        if (pin && r->content_length >= 0 && r->content_length != pin->size) {
            reject(r, -ESTALE, "size is %" PRId64 ", was %" PRId64 " when opened",
                   r->content_length, pin->size);
            return;
        }
        r->expect = r->content_length;
    }
    r->body_ok = true;
}

/* Standard base64 (with or without padding) into out; the decoded length,
 * or 0 when s is not base64 or does not fit. */
static size_t base64_decode(const char *s, size_t n, unsigned char *out, size_t cap)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint32_t acc = 0;
    int bits = 0;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=')
            break;
        const char *p = memchr(alphabet, s[i], 64);
        if (!p || !s[i])
            return 0;
        acc = acc << 6 | (uint32_t)(p - alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (len == cap)
                return 0;
            out[len++] = (unsigned char)(acc >> bits);
        }
    }
    return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *ud)
{
    struct req *r = ud;
    size_t len = size * n;
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        /* A new reply (after a redirect or a 100): forget the previous head. */
        const char *sp = memchr(data, ' ', len);
        r->status = 0;
        if (sp && (size_t)(sp - data) + 4 <= len && isdigit((unsigned char)sp[1]) &&
            isdigit((unsigned char)sp[2]) && isdigit((unsigned char)sp[3]))
            r->status = (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
        r->content_length = -1;
        r->have_range = false;
        r->etag[0] = r->last_modified[0] = '\0';
        r->sum_alg[0] = r->sum_hex[0] = '\0';
        r->etag_too_long = false;
        r->sse_opaque = false;
        r->body_ok = false;
        return len;
    }
    if (len <= 2 && (data[0] == '\r' || data[0] == '\n')) {
        /* End of a head.  Only the final reply of a GET is checked; a
         * streamed call takes the body of any final 2xx. */
        if (r->call && r->status >= 200 && r->status < 300)
            r->body_ok = true;
        if (r->buf && (r->status == 200 || r->status == 206)) {
            check_head(r);
            if (r->reject)
                return 0; /* abort before the body */
        }
        return len;
    }
    const char *colon = memchr(data, ':', len);
    if (!colon)
        return len;
    size_t nlen = (size_t)(colon - data);
    const char *v = colon + 1, *end = data + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vlen = (size_t)(end - v);
    char val[256];
#define IS(name) (nlen == sizeof(name) - 1 && strncasecmp(data, name, nlen) == 0)
    if (IS("Content-Length")) {
        snprintf(val, sizeof val, "%.*s", (int)vlen, v);
        const char *e;
        int64_t x = parse_i64(val, &e);
        r->content_length = (x >= 0 && *e == '\0') ? x : -1;
    } else if (IS("Content-Range")) {
        snprintf(val, sizeof val, "%.*s", (int)vlen, v);
        r->have_range = parse_content_range(val, &r->cr_first, &r->cr_last, &r->cr_total);
    } else if (IS("ETag")) {
        if (vlen < sizeof r->etag)
            snprintf(r->etag, sizeof r->etag, "%.*s", (int)vlen, v);
        else
            r->etag_too_long = true;
    } else if (IS("Last-Modified")) {
        if (vlen < sizeof r->last_modified)
            snprintf(r->last_modified, sizeof r->last_modified, "%.*s", (int)vlen, v);
    } else if (IS("x-amz-checksum-sha256") || IS("x-amz-checksum-sha1")) {
        /* base64 of the digest; a composite one (multipart: "...-N") is not the whole object's */
        size_t want = IS("x-amz-checksum-sha256") ? 32 : 20;
        unsigned char d[32];
        if (!memchr(v, '-', vlen) && base64_decode(v, vlen, d, sizeof d) == want) {
            snprintf(r->sum_alg, sizeof r->sum_alg, "%s", want == 32 ? "sha256" : "sha1");
            for (size_t i = 0; i < want; i++)
                snprintf(r->sum_hex + 2 * i, 3, "%02x", d[i]);
        }
    } else if (IS("x-amz-server-side-encryption")) {
        r->sse_opaque = r->sse_opaque || (vlen >= 7 && strncasecmp(v, "aws:kms", 7) == 0);
    } else if (IS("x-amz-server-side-encryption-customer-algorithm")) {
        r->sse_opaque = true;
    }
#undef IS
    return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    struct req *r = ud;
    size_t len = size * n;
    r->wire += len;
    atomic_fetch_add_explicit(&r->h->bytes_received, len, memory_order_relaxed);
    if (r->reply && !r->buf) {
        /* A write's reply kept for the caller (S3's XML), what fits. */
        size_t room = r->reply_len + 1 < r->reply_cap ? r->reply_cap - 1 - r->reply_len : 0;
        room = room < len ? room : len;
        memcpy(r->reply + r->reply_len, data, room);
        r->reply_len += room;
        r->reply[r->reply_len] = '\0';
        return len;
    }
    if (!r->body_ok) {
        /* An error page: drain a small one so the connection stays usable. */
        return r->wire <= ERROR_BODY_MAX ? len : 0;
    }
    if (r->call) {
        if (r->call->max_reply > 0 && len > (uint64_t)r->call->max_reply - r->got) {
            reject(r, -EFBIG, "reply longer than %lld bytes", (long long)r->call->max_reply);
            return 0;
        }
        r->got += len;
        int e = r->call->on_body(r->call->ud, data, len);
        if (e < 0) {
            reject(r, e, "the reply cannot be used: %s", strerror(-e));
            return 0;
        }
        return len;
    }
    size_t limit = r->expect >= 0 ? (size_t)r->expect : r->cap;
    if (len > limit - r->got) {
        reject(r, -EPROTO, "body longer than the %zu bytes announced", limit);
        return 0;
    }
    memcpy(r->buf + r->got, data, len);
    r->got += len;
    if (r->sink)
        r->sink->arrived(r->sink->ud, r->buf, r->got);
    return len;
}

/* A PUT's body, straight from the file (no copy of it in memory). */
static size_t on_upload(char *buf, size_t size, size_t n, void *ud)
{
    struct req *r = ud;
    int64_t left = r->upload_size - r->upload_pos;
    size_t want = size * n < (uint64_t)left ? size * n : (size_t)left;
    if (want == 0)
        return 0;
    ssize_t got = pread(r->upload_fd, buf, want, r->upload_base + r->upload_pos);
    if (got <= 0) {
        reject(r, -EIO, "reading the file to upload at offset %lld: %s", (long long)r->upload_pos,
               got < 0 ? strerror(errno) : "it ended early");
        return CURL_READFUNC_ABORT;
    }
    r->upload_pos += got;
    return (size_t)got;
}

/* ---- the one translation to errno ----------------------------------------------- */

static int status_errno(long status)
{
    switch (status) {
    case 401: case 403: return -EACCES;
    case 404: case 410: return -ENOENT;
    case 412: return -ESTALE;
    case 416: return -ERANGE;
    case 408: return -ETIMEDOUT;
    default: return -EIO;
    }
}

static int curl_errno(CURLcode rc)
{
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT; /* also the low-speed limit */
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED; /* nothing listens, or the host is unreachable */
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_SSL_CONNECT_ERROR:
        return -ECONNRESET;
    case CURLE_PARTIAL_FILE:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_HTTP2:
        return -EPROTO;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        return -EACCES; /* this replica's certificate will not change on a retry */
    case CURLE_URL_MALFORMAT:
        return -EINVAL;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    default:
        return -EIO;
    }
}

/* True the first time url's origin (scheme://host:port) is refused with
 * this reason; the last TLS_SEEN refusals are remembered. */
static bool tls_problem_is_new(bfs_http *h, const char *url, const char *reason)
{
    char u[512], key[sizeof h->tls_seen[0]];
    url_for_log(url, u, sizeof u);
    const char *s = strstr(u, "://");
    size_t origin = s ? (size_t)(s + 3 - u) + strcspn(s + 3, "/") : strlen(u);
    snprintf(key, sizeof key, "%.*s %s", (int)origin, u, reason);
    bool fresh = true;
    pthread_mutex_lock(&h->lock);
    for (unsigned i = 0; fresh && i < h->tls_nseen && i < TLS_SEEN; i++)
        fresh = strcmp(h->tls_seen[i], key) != 0;
    if (fresh)
        snprintf(h->tls_seen[h->tls_nseen++ % TLS_SEEN], sizeof key, "%s", key);
    pthread_mutex_unlock(&h->lock);
    return fresh;
}

static int log_level_for(int err)
{
    switch (err) {
    case -ENOENT: case -ERANGE: return LOG_DEBUG;   /* an answer, not a failure: failover, EOF */
    case -EACCES: return LOG_WARNING;               /* needs the user: token, certificate */
    case -ESTALE: return LOG_NOTICE;
    default: return LOG_INFO;                       /* transient: remote.c retries and reports */
    }
}

const char *bfs_http_strerror(int err)
{
    return err == -EHOSTDOWN      ? "no connection within connect_timeout"
           : err == -EHOSTUNREACH ? "host name not resolved"
                                  : strerror(-err);
}

/* The request's whole time bound: its own, at most request_timeout_ms. */
static long req_limit(const struct req *r)
{
    return r->timeout_ms > 0 && r->timeout_ms < r->h->request_timeout_ms ? r->timeout_ms : r->h->request_timeout_ms;
}

/* Decide the outcome of a performed request and log a failure once.
 * Success is 200 for HEAD, 200 or 206 (checked by check_head) for GET. */
static int http_result(struct req *r, CURLcode rc)
{
    int err = 0;
    char detail[CURL_ERROR_SIZE + 64];
    detail[0] = '\0';
    bool get = r->buf != NULL, tls = false;
    if (r->reject) {
        err = r->reject;
        snprintf(detail, sizeof detail, "%s", r->why);
    } else if (rc != CURLE_OK && r->status < 400) {
        /* (A 4xx/5xx status line is the answer even when its body was cut
         * short or drained by us.) */
        err = curl_errno(rc);
        /* No connection within connect_timeout: the host, not a transfer
         * (the pre-transfer time is stamped once a connection is ready,
         * new or reused).  Only when the request had the whole
         * connect_timeout: a bound cut short by the read's deadline
         * says nothing about the host. */
        curl_off_t pre = 0;
        if (rc == CURLE_OPERATION_TIMEDOUT && r->status == 0 && req_limit(r) >= r->h->connect_timeout_ms &&
            curl_easy_getinfo(r->c->curl, CURLINFO_PRETRANSFER_TIME_T, &pre) == CURLE_OK && pre == 0)
            err = -EHOSTDOWN;
        /* A redirect's target that cannot be reached (a dead pool node
         * behind a door) is not the first host's fault. */
        long redirects = 0;
        if ((err == -EHOSTDOWN || err == -EHOSTUNREACH || err == -ECONNREFUSED) &&
            curl_easy_getinfo(r->c->curl, CURLINFO_REDIRECT_COUNT, &redirects) == CURLE_OK && redirects > 0)
            err = -ECONNRESET;
        tls = err == -EACCES; /* curl_errno's -EACCES: the certificate was refused */
        snprintf(detail, sizeof detail, "%s", r->c->errbuf[0] ? r->c->errbuf : curl_easy_strerror(rc));
    } else if (r->write) {
        if (r->status < 200 || r->status >= 300) {
            err = status_errno(r->status);
            snprintf(detail, sizeof detail, "HTTP %ld", r->status);
        }
    } else if (r->status == 200 || (get && r->status == 206)) {
        if (get && r->expect >= 0 && r->got != (size_t)r->expect) {
            err = -EPROTO;
            snprintf(detail, sizeof detail, "body of %zu bytes, %" PRId64 " announced", r->got,
                     r->expect);
        } else if (get && r->pin && r->status == 200 && r->got != r->cap) {
            /* A whole object without Content-Length, shorter than pinned. */
            err = -ESTALE;
            snprintf(detail, sizeof detail, "size is %zu, was %" PRId64 " when opened", r->got,
                     r->pin->size);
        } else if (!get && r->content_length < 0) {
            err = -EPROTO;
            snprintf(detail, sizeof detail, "no Content-Length");
        } else if (!get && r->etag_too_long) {
            err = -EPROTO;
            snprintf(detail, sizeof detail, "ETag longer than %zu bytes", sizeof r->etag - 1);
        }
    } else {
        err = r->status >= 200 && r->status < 300 ? -EPROTO : status_errno(r->status);
        if (err == -EACCES && r->h->token_file && !is_s3(r->url))
            snprintf(detail, sizeof detail, "HTTP %ld (refused the bearer token from %s)",
                     r->status, r->h->token_file);
        else
            snprintf(detail, sizeof detail, "HTTP %ld", r->status);
    }
    if (err) {
        int level = log_level_for(err);
        bool first_tls = tls && tls_problem_is_new(r->h, r->url, detail);
        if (tls && !first_tls)
            level = LOG_DEBUG;
        if (level <= bfs_log_get_level()) {
            char u[512];
            url_for_log(r->url, u, sizeof u);
            const char *hint = !first_tls ? "" :
                "; requests to this server fail until fetch.ca_file names the CA that signed its "
                "certificate, or the URL names a host the certificate is for";
            if (get)
                bfs_log_write(level, TAG, "%s %s bytes %" PRId64 "-%" PRId64 ": %s (%s)%s",
                              r->method, u, r->off, r->last, detail, bfs_http_strerror(err), hint);
            else
                bfs_log_write(level, TAG, "%s %s: %s (%s)%s", r->method, u, detail,
                              bfs_http_strerror(err), hint);
        }
    }
    return err;
}

/* ---- requests ----------------------------------------------------------------- */

/* Fill url_out and *hdrs for url: an s3:// URI is signed by s3.h (which also
 * carries Range and If-Match, as they must be signed); http(s) gets the
 * bearer token and Range through curl.  Failures are logged by the callee. */
static int prepare(struct req *r, const char *range, const char *if_match, char *url_out,
                   size_t url_sz, struct curl_slist **hdrs)
{
    bfs_http *h = r->h;
    if (is_s3(r->url)) {
        char rh[64];
        if (range)
            snprintf(rh, sizeof rh, "bytes=%s", range);
        bfs_s3_request rq = {.method = r->method, .s3_uri = r->url, .query = r->s3_query,
                             .nquery = r->s3_nquery, .range_header = range ? rh : NULL,
                             .if_match = if_match, .body = r->post, .body_len = r->post_len};
        int ret = bfs_s3_prepare_request(h->s3, &rq, time(NULL), url_out, url_sz, hdrs);
        /* Missing (-ENOENT) or unreadable credentials must not look like a
         * missing object (remote.c would fail over and report "no such
         * file"): like a refused token, the user has to act.  s3.c has
         * logged the profile's problem once. */
        if (ret == -ENOENT || ret == -EIO)
            ret = -EACCES;
        return ret;
    }
    if (snprintf(url_out, url_sz, "%s", r->url) >= (int)url_sz)
        return -ENAMETOOLONG;
    CURLcode rc = curl_easy_setopt(r->c->curl, CURLOPT_RANGE, range);
    if (rc != CURLE_OK)
        return -ENOMEM;
    if (if_match) {
        char line[sizeof r->pin->etag + 16];
        snprintf(line, sizeof line, "If-Match: %s", if_match);
        struct curl_slist *l = curl_slist_append(*hdrs, line);
        if (!l)
            return -ENOMEM;
        *hdrs = l;
    }
    if (!h->token_file)
        return 0;
    if (!token_may_go(h, r->url))
        return -EACCES;
    return token_header(h, hdrs);
}

static int perform(struct req *r)
{
    bfs_http *h = r->h;
    r->c = conn_get(h);
    if (!r->c)
        return -ENOMEM;
    CURL *k = r->c->curl;
    r->status = 0;
    r->content_length = r->expect = -1;

    char range[48];
    const char *rangep = NULL;
    if (r->buf) {
        snprintf(range, sizeof range, "%" PRId64 "-%" PRId64, r->off, r->last);
        rangep = range;
    }
    /* If-Match uses the strong comparison, which a weak ETag never passes;
     * such a pin is checked against the reply's ETag only. */
    const bfs_object *pin = r->pin;
    const char *if_match = pin && pin->etag[0] && strncmp(pin->etag, "W/", 2) != 0 ? pin->etag : NULL;

    char *url = malloc(URL_MAX);
    if (!url)
        return -ENOMEM;
    struct curl_slist *hdrs = NULL;
    int ret = prepare(r, rangep, if_match, url, URL_MAX, &hdrs);
    if (ret == 0 && pin && !pin->etag[0] && pin->last_modified[0]) {
        char line[sizeof pin->last_modified + 32];
        snprintf(line, sizeof line, "If-Unmodified-Since: %s", pin->last_modified);
        struct curl_slist *l = curl_slist_append(hdrs, line);
        if (l)
            hdrs = l;
        else
            ret = -ENOMEM;
    }
    if (ret < 0) {
        /* A refused token or S3 profile was logged where it was found. */
        if (ret != -EACCES) {
            char u[512];
            url_for_log(r->url, u, sizeof u);
            bfs_info(TAG, "%s %s: cannot build the request: %s", r->method, u,
                     ret == -ENAMETOOLONG ? "URL too long" : strerror(-ret));
        }
        curl_slist_free_all(hdrs);
        free(url);
        return ret;
    }
    if (is_s3(r->url))
        curl_easy_setopt(k, CURLOPT_RANGE, NULL); /* Range is in the signed headers */

    for (int i = 0; ret == 0 && i < 2 && r->extra[i]; i++) {
        struct curl_slist *l = curl_slist_append(hdrs, r->extra[i]);
        if (!l) {
            curl_slist_free_all(hdrs);
            free(url);
            return -ENOMEM;
        }
        hdrs = l;
    }
    r->c->errbuf[0] = '\0';
    curl_easy_setopt(k, CURLOPT_TIMEOUT_MS, req_limit(r));
    curl_easy_setopt(k, CURLOPT_URL, url);
    if (r->write && r->upload_fd >= 0) {
        curl_easy_setopt(k, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(k, CURLOPT_READFUNCTION, on_upload);
        curl_easy_setopt(k, CURLOPT_READDATA, r);
        curl_easy_setopt(k, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->upload_size);
        curl_easy_setopt(k, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)r->max_send_bps);
    } else if (r->write && r->post) {
        curl_easy_setopt(k, CURLOPT_POST, 1L);
        curl_easy_setopt(k, CURLOPT_POSTFIELDS, r->post);
        curl_easy_setopt(k, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->post_len);
        if (strcmp(r->method, "POST") != 0) /* a body with another method (PROPFIND) */
            curl_easy_setopt(k, CURLOPT_CUSTOMREQUEST, r->method);
    } else if (r->write) {
        if (r->call) /* its reply has a body: not NOBODY from a previous HEAD */
            curl_easy_setopt(k, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(k, CURLOPT_CUSTOMREQUEST, r->method);
    } else if (r->buf) {
        curl_easy_setopt(k, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(k, CURLOPT_NOBODY, 1L);
    }
    curl_easy_setopt(k, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(k, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(k, CURLOPT_WRITEDATA, r);
    CURLcode rc = curl_easy_perform(k);
    if (r->write) { /* the handle is reused by this thread's next read */
        curl_easy_setopt(k, CURLOPT_UPLOAD, 0L);
        curl_easy_setopt(k, CURLOPT_READFUNCTION, NULL);
        curl_easy_setopt(k, CURLOPT_READDATA, NULL);
        curl_easy_setopt(k, CURLOPT_INFILESIZE_LARGE, (curl_off_t)-1);
        curl_easy_setopt(k, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)0);
        curl_easy_setopt(k, CURLOPT_CUSTOMREQUEST, NULL);
        curl_easy_setopt(k, CURLOPT_POSTFIELDS, NULL);
        curl_easy_setopt(k, CURLOPT_POST, 0L);
    }
    /* The handle keeps pointers to these; clear them before freeing. */
    curl_easy_setopt(k, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(k, CURLOPT_HEADERDATA, NULL);
    curl_easy_setopt(k, CURLOPT_WRITEDATA, NULL);
    curl_slist_free_all(hdrs);
    free(url);
    return http_result(r, rc);
}

/* Whether r's ETag is its object's MD5: an S3 object uploaded in one part
 * and not encrypted with SSE-KMS or SSE-C ("<32 hex digits>", quoted). */
static bool etag_is_md5(const struct req *r)
{
    if (!is_s3(r->url) || r->sse_opaque || strlen(r->etag) != 34 || r->etag[0] != '"' || r->etag[33] != '"')
        return false;
    for (int i = 1; i < 33; i++)
        if (!isxdigit((unsigned char)r->etag[i]))
            return false;
    return true;
}

/* N of an S3 multipart ETag ("<32 hex>-N", quotes included) of an object
 * not encrypted with SSE-KMS or SSE-C, else 0. */
static int etag_multipart_parts(const struct req *r)
{
    const char *e = r->etag;
    if (!is_s3(r->url) || r->sse_opaque || e[0] != '"' || strlen(e) < 37 || e[33] != '-')
        return 0;
    for (int i = 1; i < 33; i++)
        if (!isxdigit((unsigned char)e[i]))
            return 0;
    char *end;
    long n = strtol(e + 34, &end, 10);
    return end != e + 34 && !strcmp(end, "\"") && n >= 1 && n <= 10000 ? (int)n : 0;
}

/* The reply's whole-object checksum into obj (S3 replies only). */
static void copy_sum(const struct req *r, bfs_object *obj)
{
    if (!is_s3(r->url) || !r->sum_alg[0])
        return;
    snprintf(obj->sum_alg, sizeof obj->sum_alg, "%s", r->sum_alg);
    snprintf(obj->sum_hex, sizeof obj->sum_hex, "%s", r->sum_hex);
}

int bfs_http_stat(bfs_http *h, const char *url, bfs_object *obj)
{
    return bfs_http_stat_within(h, url, obj, 0);
}

int bfs_http_stat_within(bfs_http *h, const char *url, bfs_object *obj, long timeout_ms)
{
    memset(obj, 0, sizeof *obj);
    if (!bfs_http_handles(url))
        return -EPROTONOSUPPORT;
    struct req r = {.h = h, .method = "HEAD", .url = url, .timeout_ms = timeout_ms};
    int ret = perform(&r);
    if (ret < 0)
        return ret;
    obj->size = r.content_length;
    snprintf(obj->etag, sizeof obj->etag, "%s", r.etag);
    snprintf(obj->last_modified, sizeof obj->last_modified, "%s", r.last_modified);
    obj->etag_md5 = etag_is_md5(&r);
    obj->etag_parts = etag_multipart_parts(&r);
    copy_sum(&r, obj);
    return 0;
}

ssize_t bfs_http_get(bfs_http *h, const char *url, const bfs_object *pin, int64_t off, size_t len,
                     void *buf, size_t *bytes_moved)
{
    return bfs_http_get_within(h, url, pin, off, len, buf, bytes_moved, 0, NULL, NULL);
}

ssize_t bfs_http_get_within(bfs_http *h, const char *url, const bfs_object *pin, int64_t off, size_t len,
                            void *buf, size_t *bytes_moved, long timeout_ms, bfs_object *seen,
                            const bfs_http_sink *sink)
{
    if (seen)
        memset(seen, 0, sizeof *seen);
    if (bytes_moved)
        *bytes_moved = 0;
    if (!bfs_http_handles(url))
        return -EPROTONOSUPPORT;
    if (off < 0 || !buf)
        return -EINVAL;
    if (len > (size_t)SSIZE_MAX)
        len = (size_t)SSIZE_MAX;
    if (len > (uint64_t)(INT64_MAX - off))
        len = (size_t)(INT64_MAX - off);
    /* With a pin the size is known: no request past the end, and a range
     * clipped to it so the reply must match exactly. */
    if (pin) {
        if (off >= pin->size)
            return 0;
        if ((uint64_t)len > (uint64_t)(pin->size - off))
            len = (size_t)(pin->size - off);
    }
    if (len == 0)
        return 0;
    struct req r = {.h = h, .method = "GET", .url = url, .pin = pin, .timeout_ms = timeout_ms, .off = off,
                    .last = off + (int64_t)len - 1, .buf = buf, .sink = sink, .cap = len};
    int ret = perform(&r);
    if (bytes_moved)
        *bytes_moved = r.wire;
    if (ret == 0 && seen) {
        /* the object's size: Content-Range's total on a 206 (check_head
         * refused one without it), else the whole body of a 200, whatever
         * Content-Range a 200 also carries; -1 when that is unknown */
        seen->size = r.status == 206 ? r.cr_total : r.content_length;
        snprintf(seen->etag, sizeof seen->etag, "%s", r.etag);
        snprintf(seen->last_modified, sizeof seen->last_modified, "%s", r.last_modified);
        seen->etag_md5 = etag_is_md5(&r);
        copy_sum(&r, seen);
    }
    return ret < 0 ? ret : (ssize_t)r.got;
}

uint64_t bfs_http_bytes_received(const bfs_http *h)
{
    return atomic_load_explicit(&((bfs_http *)h)->bytes_received, memory_order_relaxed);
}

/* ---- lifecycle ---------------------------------------------------------------- */

int bfs_http_put_file(bfs_http *h, const char *url, int fd, int64_t size, long timeout_ms, bfs_object *result)
{
    return bfs_http_put_file_capped(h, url, fd, size, 0, timeout_ms, result);
}

int bfs_http_put_file_capped(bfs_http *h, const char *url, int fd, int64_t size, int64_t max_bps,
                             long timeout_ms, bfs_object *result)
{
    if (result)
        memset(result, 0, sizeof *result);
    if (!bfs_http_handles(url))
        return -EPROTONOSUPPORT;
    if (fd < 0 || size < 0)
        return -EINVAL;
    struct req r = {.h = h, .method = "PUT", .url = url, .timeout_ms = timeout_ms, .write = true,
                    .upload_fd = fd, .upload_size = size, .max_send_bps = max_bps > 0 ? max_bps : 0};
    int ret = perform(&r);
    if (ret == 0 && r.upload_pos != size)
        ret = -EPROTO;
    if (ret == 0 && result)
        snprintf(result->etag, sizeof result->etag, "%s", r.etag);
    return ret;
}

int bfs_http_move(bfs_http *h, const char *from_url, const char *to_url, bool overwrite, long timeout_ms)
{
    if (!bfs_http_handles(from_url) || is_s3(from_url) || is_s3(to_url))
        return -EOPNOTSUPP;
    char dest[URL_MAX + 16];
    if (snprintf(dest, sizeof dest, "Destination: %s", to_url) >= (int)sizeof dest)
        return -ENAMETOOLONG;
    struct req r = {.h = h, .method = "MOVE", .url = from_url, .timeout_ms = timeout_ms, .write = true,
                    .upload_fd = -1, .extra = {dest, overwrite ? "Overwrite: T" : "Overwrite: F"}};
    return perform(&r);
}

int bfs_http_post(bfs_http *h, const char *url, const char *content_type, const void *body, size_t len,
                  long timeout_ms)
{
    if (!bfs_http_handles(url) || is_s3(url))
        return -EOPNOTSUPP;
    char ct[128];
    snprintf(ct, sizeof ct, "Content-Type: %s", content_type ? content_type : "application/octet-stream");
    struct req r = {.h = h, .method = "POST", .url = url, .timeout_ms = timeout_ms, .write = true,
                    .upload_fd = -1, .post = len ? body : "", .post_len = len, .extra = {ct}};
    return perform(&r);
}

int bfs_http_delete(bfs_http *h, const char *url, long timeout_ms)
{
    if (!bfs_http_handles(url) || is_s3(url))
        return -EOPNOTSUPP;
    struct req r = {.h = h, .method = "DELETE", .url = url, .timeout_ms = timeout_ms, .write = true,
                    .upload_fd = -1};
    return perform(&r);
}

int bfs_http_new(const bfs_http_cfg *cfg, bfs_http **out, char **errmsg)
{
    *out = NULL;
    if (errmsg)
        *errmsg = NULL;
    pthread_once(&global_once, global_init);
    if (global_rc != CURLE_OK) {
        bfs_set_errmsg(errmsg, "cannot initialise libcurl: %s", curl_easy_strerror(global_rc));
        return -EIO;
    }
    if (cfg->ca_file && access(cfg->ca_file, R_OK) < 0) {
        int e = errno;
        bfs_set_errmsg(errmsg, "ca_file %s: %s (give a readable PEM bundle, or leave ca_file unset "
                "for the system CAs)", cfg->ca_file, strerror(e));
        return -e;
    }
    bfs_http *h = calloc(1, sizeof *h);
    if (!h)
        return -ENOMEM;
    /* A request must always end: non-positive timeouts take the defaults. */
    h->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 5000;
    h->request_timeout_ms = cfg->request_timeout_ms > 0 ? cfg->request_timeout_ms : 30000;
    h->low_speed_bytes = cfg->low_speed_bytes > 0 ? cfg->low_speed_bytes : 0;
    h->low_speed_time_s = cfg->low_speed_time_s > 0 ? cfg->low_speed_time_s : 0;
    h->tls_verify = cfg->tls_verify;
    atomic_init(&h->bytes_received, 0);
    pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_init(&h->token_lock, NULL);
    int ret = pthread_key_create(&h->key, conn_release);
    if (ret) {
        pthread_mutex_destroy(&h->lock);
        pthread_mutex_destroy(&h->token_lock);
        free(h);
        return -ret;
    }
    if ((cfg->ca_file && !(h->ca_file = strdup(cfg->ca_file))) ||
        (cfg->token_file && !(h->token_file = strdup(cfg->token_file)))) {
        bfs_http_free(h);
        return -ENOMEM;
    }
    ret = bfs_s3_new(cfg->s3_profile, &h->s3);
    if (ret < 0) {
        bfs_set_errmsg(errmsg, "cannot set up S3: %s", strerror(-ret));
        bfs_http_free(h);
        return ret;
    }
    if (!h->tls_verify)
        bfs_warn(TAG, "TLS certificate verification is off (tls_verify: false)");
    *out = h;
    return 0;
}

void bfs_http_free(bfs_http *h)
{
    if (!h)
        return;
    /* Destructors no longer run for h's key, so the handles of live
     * threads are closed here; none may be in use. */
    pthread_key_delete(h->key);
    /* Taken under the lock: libfuse's idle workers exit detached, and their
     * handles came back through conn_release under this lock. */
    pthread_mutex_lock(&h->lock);
    struct http_conn *c = h->conns;
    h->conns = h->idle = NULL;
    pthread_mutex_unlock(&h->lock);
    while (c) {
        struct http_conn *next = c->next;
        curl_easy_cleanup(c->curl);
        free(c);
        c = next;
    }
    bfs_s3_free(h->s3);
    if (h->token) {
        explicit_bzero(h->token, strlen(h->token));
        free(h->token);
    }
    pthread_mutex_destroy(&h->lock);
    pthread_mutex_destroy(&h->token_lock);
    free(h->ca_file);
    free(h->token_file);
    free(h);
}

/* ---- replaying a reply through the callbacks (http_i.h) ------------------------- */

int bfs_http_replay(const char *reply, size_t len, int64_t off, int64_t last,
                    const bfs_object *pin, size_t chunk, void *buf,
                    bfs_http_replay_result *out)
{
    bfs_http h = {0};
    struct req r = {.h = &h, .method = "GET", .url = "http://replay/", .pin = pin, .off = off,
                    .last = last, .buf = buf, .cap = (size_t)(last - off + 1),
                    .content_length = -1, .expect = -1};
    size_t at = 0;
    bool in_head = true;
    /* Head lines one by one, ending with the terminator as libcurl gives them;
     * an interim 1xx head is followed by another head. */
    while (in_head && at < len) {
        const char *nl = memchr(reply + at, '\n', len - at);
        size_t n = nl ? (size_t)(nl - (reply + at)) + 1 : len - at;
        char line[1024];
        if (n > sizeof line)
            n = sizeof line; /* libcurl caps a header line too (CURL_MAX_HTTP_HEADER) */
        memcpy(line, reply + at, n);
        at += n;
        if (on_header(line, 1, n, &r) != n)
            break;
        if (n <= 2 && (line[0] == '\r' || line[0] == '\n') && (r.status < 100 || r.status > 199))
            in_head = false;
    }
    while (!in_head && !r.reject && at < len) {
        size_t n = len - at < chunk ? len - at : chunk;
        if (on_body((char *)reply + at, 1, n, &r) != n)
            break;
        at += n;
    }
    *out = (bfs_http_replay_result){.status = r.status, .content_length = r.content_length,
                                    .expect = r.expect, .body_ok = r.body_ok, .got = r.got,
                                    .reject = r.reject};
    return r.reject;
}

void bfs_http_cfg_from(const struct bfs_config *cfg, bfs_http_cfg *out)
{
    *out = (bfs_http_cfg){
        .connect_timeout_ms = cfg->connect_timeout_ms,
        .request_timeout_ms = cfg->request_timeout_ms,
        .low_speed_bytes = cfg->low_speed_bytes,
        .low_speed_time_s = (cfg->low_speed_time_ms + 999) / 1000,
        .tls_verify = cfg->tls_verify,
        .ca_file = cfg->ca_file,
        .token_file = cfg->token_file,
        .s3_profile = cfg->s3_profile,
    };
}

/* ---- S3 requests beyond GET/HEAD/PutObject (multipart uploads) ------------------ */

int bfs_http_s3_request(bfs_http *h, const char *s3_uri, bfs_http_s3_req *rq)
{
    rq->reply_len = 0;
    rq->etag[0] = '\0';
    if (rq->reply && rq->reply_cap)
        rq->reply[0] = '\0';
    if (!is_s3(s3_uri))
        return -EPROTONOSUPPORT;
    bool put = strcmp(rq->method, "PUT") == 0, post = strcmp(rq->method, "POST") == 0;
    if ((!put && !post && strcmp(rq->method, "DELETE")) || (put && (rq->fd < 0 || rq->off < 0 || rq->len < 0)) ||
        (!put && rq->fd >= 0) || (rq->reply && !rq->reply_cap))
        return -EINVAL;
    char md5[64];
    if (rq->content_md5 && snprintf(md5, sizeof md5, "Content-MD5: %s", rq->content_md5) >= (int)sizeof md5)
        return -EINVAL;
    struct req r = {.h = h, .method = rq->method, .url = s3_uri, .timeout_ms = rq->timeout_ms, .write = true,
                    .upload_fd = put ? rq->fd : -1, .upload_base = rq->off, .upload_size = put ? rq->len : 0,
                    .max_send_bps = rq->max_bps > 0 ? rq->max_bps : 0,
                    .post = post ? (rq->body ? rq->body : "") : NULL, .post_len = post ? rq->body_len : 0,
                    .extra = {rq->content_md5 ? md5 : NULL}, .s3_query = rq->query, .s3_nquery = rq->nquery,
                    .reply = rq->reply, .reply_cap = rq->reply ? rq->reply_cap : 0};
    int ret = perform(&r);
    if (ret == 0 && put && r.upload_pos != rq->len)
        ret = -EPROTO;
    rq->reply_len = r.reply_len;
    snprintf(rq->etag, sizeof rq->etag, "%s", r.etag);
    return ret;
}

/* ---- a reply streamed to the caller (listings) ---------------------------------- */

int bfs_http_call_stream(bfs_http *h, bfs_http_call *call)
{
    call->status = 0;
    if (!bfs_http_handles(call->url))
        return -EPROTONOSUPPORT;
    if (!call->method || !call->on_body)
        return -EINVAL;
    for (int i = 0; i < 2; i++)
        if (call->headers[i] && strpbrk(call->headers[i], "\r\n"))
            return -EINVAL;
    if (call->nquery && !is_s3(call->url))
        return -EINVAL;
    struct req r = {.h = h, .method = call->method, .url = call->url, .timeout_ms = call->timeout_ms,
                    .write = true, .upload_fd = -1, .post = call->body,
                    .post_len = call->body ? call->body_len : 0,
                    .extra = {call->headers[0], call->headers[0] ? call->headers[1] : NULL},
                    .s3_query = call->query, .s3_nquery = call->nquery, .call = call};
    int ret = perform(&r);
    call->status = r.status;
    return ret;
}

void bfs_http_url_for_log(const char *url, char *out, size_t outsz)
{
    url_for_log(url, out, outsz);
}
