/*
 * liar_server.h - a small HTTP/1.1 server in a thread of the test process
 * that lies the ways nginx cannot be made to: a Content-Range for another
 * range, a body shorter or longer than announced, a connection reset in the
 * middle of a body, a 206 without Content-Range, another object size.
 * Header-only: include it from one .c file of a test program.
 *
 * It serves one object, the caller's bytes (not copied: they must outlive
 * the server), at every path /LIE/NAME, LIE one of bfs_test_lie_name[].
 * HEAD is always the truth (Content-Length, ETag, Accept-Ranges), and so
 * are a GET without Range (200, the whole object) and a Range starting past
 * the end (416).  A GET of "Range: bytes=A-B" or "bytes=A-" gets the lie
 * its path names.  HTTP/1.1 keep-alive works (one thread per connection),
 * so a lie can meet a client on a connection it has used before, and a
 * reply that leaves the connection in a bad state is not hidden by a close.
 * LIE_FLIP_BYTE corrupts one byte in transit as many times as the test
 * says, which it may change while the server runs (flips, flip_at).
 *
 * Bounded, so a test can never hang on it: it listens on 127.0.0.1 port 0
 * (the kernel picks); accept and every read wait at most
 * BFS_LIAR_POLL_MS before looking whether the server is stopping; a send
 * gives up after BFS_LIAR_SEND_MS without progress; a connection idle for
 * BFS_LIAR_IDLE_MS is closed; bfs_test_liar_stop() joins every thread.
 */
#ifndef BFS_TEST_LIAR_SERVER_H
#define BFS_TEST_LIAR_SERVER_H

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

enum bfs_test_lie {
    LIE_NONE,             /* the truth: 206, Content-Range, Content-Length, the bytes */
    LIE_WRONG_RANGE,      /* a 206 that is right for the range one byte later (earlier
                           * when the range asked for ends at the end of the object) */
    LIE_SHORT_BODY,       /* the right head, half the body, then a clean close */
    LIE_OVERLONG_BODY,    /* the right Content-Range but no Content-Length, the body,
                           * BFS_LIAR_EXTRA bytes more, then close */
    LIE_RESET_MID_BODY,   /* the right head, half the body, then a reset: a server dying */
    LIE_NO_CONTENT_RANGE, /* 206 with Content-Length and the bytes, but no Content-Range */
    LIE_WRONG_TOTAL,      /* the right range and bytes of an object twice the size */
    LIE_TRAILING_JUNK,    /* the truth, then BFS_LIAR_EXTRA bytes more on the kept
                           * connection once the client has had the reply */
    LIE_STALL_FIRST,      /* the first GET of a range not at 0 gets no answer until
                           * the client gives up (a stalled server); then the truth */
    LIE_RANGE_ON_200,     /* a ranged GET answered 200 with the whole object, plus a
                           * Content-Range giving twice its size (which a 200 does not
                           * carry: the body is the whole object) */
    LIE_FLIP_BYTE,        /* the truth, except the byte at flip_at, inverted, in the
                           * replies that carry it while flips is not 0 (status,
                           * headers and length kept); each such reply takes one
                           * from flips when it is above 0 (-1: flip for ever) */
    LIE_COUNT
};

static const char *const bfs_test_lie_name[LIE_COUNT] = {
    "good", "wrong_range", "short_body", "overlong_body", "reset_mid_body", "no_content_range",
    "wrong_total", "trailing_junk", "stall_first", "range_on_200", "flip_byte",
};

#define BFS_LIAR_CONNS 16      /* connections at once; more are closed at accept */
#define BFS_LIAR_POLL_MS 100
#define BFS_LIAR_IDLE_MS 5000
#define BFS_LIAR_SEND_MS 2000
#define BFS_LIAR_EXTRA 1000

struct bfs_test_liar;

struct bfs_test_liar_conn {
    struct bfs_test_liar *s;
    int fd;
    pthread_t thread;
    bool started;              /* touched by the accept thread only */
    atomic_bool done;
};

struct bfs_test_liar {
    const unsigned char *data;
    size_t size;
    int port;
    int listen_fd;
    pthread_t thread;
    atomic_bool stop;
    atomic_uint gets;          /* ranged GETs answered, lies and truths alike */
    atomic_bool stalled;       /* LIE_STALL_FIRST has stalled its GET */
    atomic_int flips;          /* LIE_FLIP_BYTE: replies still to corrupt (-1: all); a
                                * test sets it at any time, 0 makes the liar honest */
    atomic_int_least64_t flip_at; /* LIE_FLIP_BYTE: the object offset of the byte flipped */
    atomic_uint flipped;       /* replies LIE_FLIP_BYTE corrupted */
    char extra_head[192];      /* header lines ("Name: value\r\n"...) added to every HEAD
                                * and GET reply: an S3 x-amz-checksum-*, say; set before
                                * the requests that should see it */
    struct bfs_test_liar_conn conn[BFS_LIAR_CONNS];
};

/* Wait until fd is readable: false when the server is stopping, poll fails
 * or ms pass first. */
static bool bfs_liar_readable(struct bfs_test_liar *s, int fd, int ms)
{
    for (int waited = 0; waited < ms && !atomic_load(&s->stop); waited += BFS_LIAR_POLL_MS) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, BFS_LIAR_POLL_MS);
        if (n > 0)
            return true;
        if (n < 0 && errno != EINTR)
            return false;
    }
    return false;
}

static bool bfs_liar_send(int fd, const void *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return false; /* the client went away, or no progress for BFS_LIAR_SEND_MS */
        p = (const char *)p + k;
        n -= (size_t)k;
    }
    return true;
}

/* Send data[first, first + n), with the byte at flip_at inverted when
 * flip (and in range). */
static bool bfs_liar_send_body(struct bfs_test_liar *s, int fd, int64_t first, size_t n, bool flip)
{
    int64_t at = atomic_load(&s->flip_at);
    if (!flip || at < first || at >= first + (int64_t)n)
        return bfs_liar_send(fd, s->data + first, n);
    size_t k = (size_t)(at - first);
    unsigned char c = (unsigned char)~s->data[at];
    return bfs_liar_send(fd, s->data + first, k) && bfs_liar_send(fd, &c, 1) &&
           bfs_liar_send(fd, s->data + at + 1, n - k - 1);
}

/* Whether a LIE_FLIP_BYTE reply of [first, first + n) is to be corrupted
 * (counted in flips and flipped). */
static bool bfs_liar_flip_now(struct bfs_test_liar *s, int64_t first, size_t n)
{
    int64_t at = atomic_load(&s->flip_at);
    if (at < first || at >= first + (int64_t)n)
        return false;
    int left = atomic_load(&s->flips);
    while (left != 0 && !atomic_compare_exchange_weak(&s->flips, &left, left < 0 ? left : left - 1))
        ;
    if (left != 0)
        atomic_fetch_add(&s->flipped, 1);
    return left != 0;
}

/* How a connection goes on after a reply. */
enum bfs_liar_after { LIAR_KEEP, LIAR_CLOSE, LIAR_RESET };

/* A reply without a body worth lying about; then after, unless it could not be sent. */
static enum bfs_liar_after bfs_liar_status(int fd, const char *status, const char *extra_headers,
                                           enum bfs_liar_after after)
{
    char head[256];
    int n = snprintf(head, sizeof head, "HTTP/1.1 %s\r\n%sContent-Length: 0\r\n\r\n", status, extra_headers);
    return bfs_liar_send(fd, head, (size_t)n) ? after : LIAR_CLOSE;
}

/* Answer the request whose head (NUL-terminated) is head.  The truth is
 * built first; each lie then changes one thing about it. */
static enum bfs_liar_after bfs_liar_answer(struct bfs_test_liar *s, int fd, const char *head)
{
    char method[8], path[1024];
    if (sscanf(head, "%7s %1023s", method, path) != 2)
        return bfs_liar_status(fd, "400 Bad Request", "Connection: close\r\n", LIAR_CLOSE);
    int lie = LIE_COUNT;
    size_t seg = strcspn(path + 1, "/");
    for (int i = 0; i < LIE_COUNT; i++)
        if (path[0] == '/' && strlen(bfs_test_lie_name[i]) == seg &&
            strncmp(path + 1, bfs_test_lie_name[i], seg) == 0)
            lie = i;
    char etag[64];
    snprintf(etag, sizeof etag, "\"liar-%zx\"", s->size);
    char h[768];
    int hn;
    if (lie == LIE_COUNT)
        return bfs_liar_status(fd, "404 Not Found", "", LIAR_KEEP);
    if (strcmp(method, "HEAD") == 0) {
        hn = snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nETag: %s\r\n"
                                   "Accept-Ranges: bytes\r\n%s\r\n", s->size, etag, s->extra_head);
        return bfs_liar_send(fd, h, (size_t)hn) ? LIAR_KEEP : LIAR_CLOSE;
    }
    if (strcmp(method, "GET") != 0)
        return bfs_liar_status(fd, "405 Method Not Allowed", "", LIAR_KEEP);

    const char *range = strcasestr(head, "\r\nRange:");
    int64_t a = 0, b = (int64_t)s->size - 1;
    if (!range) {
        hn = snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nETag: %s\r\n%s\r\n", s->size, etag,
                      s->extra_head);
        return bfs_liar_send(fd, h, (size_t)hn) && bfs_liar_send(fd, s->data, s->size) ? LIAR_KEEP : LIAR_CLOSE;
    }
    int got = sscanf(range + 8, " bytes=%" SCNd64 "-%" SCNd64, &a, &b);
    if (got < 1 || a < 0 || a >= (int64_t)s->size || b < a) {
        snprintf(h, sizeof h, "Content-Range: bytes */%zu\r\n", s->size);
        return bfs_liar_status(fd, "416 Range Not Satisfiable", h, LIAR_KEEP);
    }
    atomic_fetch_add(&s->gets, 1);
    if (lie == LIE_STALL_FIRST && a > 0 && !atomic_exchange(&s->stalled, true)) {
        bfs_liar_readable(s, fd, BFS_LIAR_IDLE_MS); /* until the client closes */
        return LIAR_CLOSE;
    }
    if (lie == LIE_RANGE_ON_200) {
        hn = snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n"
                                   "Content-Range: bytes 0-%zu/%zu\r\nETag: %s\r\n\r\n",
                      s->size, s->size - 1, 2 * s->size, etag);
        return bfs_liar_send(fd, h, (size_t)hn) && bfs_liar_send(fd, s->data, s->size) ? LIAR_KEEP : LIAR_CLOSE;
    }
    if (b >= (int64_t)s->size)
        b = (int64_t)s->size - 1;

    int64_t first = a, last = b, total = (int64_t)s->size; /* what the head says */
    bool with_range = true, with_length = true, halfway = false;
    enum bfs_liar_after after = LIAR_KEEP;
    size_t extra = 0;
    switch (lie) {
    case LIE_WRONG_RANGE: {
        int64_t d = last + 1 < total ? 1 : -1;
        first = first + d < 0 ? 0 : first + d;
        last += d;
        break;
    }
    case LIE_SHORT_BODY: halfway = true, after = LIAR_CLOSE; break;
    case LIE_OVERLONG_BODY: with_length = false, extra = BFS_LIAR_EXTRA, after = LIAR_CLOSE; break;
    case LIE_RESET_MID_BODY: halfway = true, after = LIAR_RESET; break;
    case LIE_NO_CONTENT_RANGE: with_range = false; break;
    case LIE_WRONG_TOTAL: total *= 2; break;
    case LIE_TRAILING_JUNK: extra = BFS_LIAR_EXTRA; break;
    }
    size_t n = (size_t)(last - first + 1), body = halfway ? n / 2 : n;
    char cr[96] = "", cl[48] = "Connection: close\r\n";
    if (with_range)
        snprintf(cr, sizeof cr, "Content-Range: bytes %" PRId64 "-%" PRId64 "/%" PRId64 "\r\n", first, last, total);
    if (with_length)
        snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", n);
    hn = snprintf(h, sizeof h, "HTTP/1.1 206 Partial Content\r\n%s%sETag: %s\r\n%s\r\n", cr, cl, etag,
                  s->extra_head);
    bool flip = lie == LIE_FLIP_BYTE && bfs_liar_flip_now(s, first, body);
    if (!bfs_liar_send(fd, h, (size_t)hn) || !bfs_liar_send_body(s, fd, first, body, flip))
        return LIAR_CLOSE;
    if (after != LIAR_KEEP || extra)
        usleep(20 * 1000); /* the client has read what came so far and waits for more */
    static const char junk[BFS_LIAR_EXTRA];
    if (extra && !bfs_liar_send(fd, junk, extra))
        return LIAR_CLOSE;
    return after;
}

static void *bfs_liar_conn_main(void *arg)
{
    struct bfs_test_liar_conn *c = arg;
    char req[8192], head[sizeof req + 1];
    size_t have = 0;
    enum bfs_liar_after after = LIAR_KEEP;
    while (after == LIAR_KEEP) {
        char *end;
        while (!(end = memmem(req, have, "\r\n\r\n", 4))) {
            if (have == sizeof req || !bfs_liar_readable(c->s, c->fd, BFS_LIAR_IDLE_MS))
                goto out;
            ssize_t k = recv(c->fd, req + have, sizeof req - have, 0);
            if (k <= 0)
                goto out;
            have += (size_t)k;
        }
        size_t hlen = (size_t)(end + 4 - req);
        memcpy(head, req, hlen);
        head[hlen] = '\0';
        memmove(req, req + hlen, have - hlen); /* a pipelined next request, if any */
        have -= hlen;
        after = bfs_liar_answer(c->s, c->fd, head);
    }
    if (after == LIAR_RESET) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* close() sends RST */
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
out:
    close(c->fd);
    atomic_store(&c->done, true);
    return NULL;
}

/* A free connection slot (finished threads are joined here), NULL if none. */
static struct bfs_test_liar_conn *bfs_liar_slot(struct bfs_test_liar *s)
{
    for (int i = 0; i < BFS_LIAR_CONNS; i++) {
        struct bfs_test_liar_conn *c = &s->conn[i];
        if (c->started && atomic_load(&c->done)) {
            pthread_join(c->thread, NULL);
            c->started = false;
        }
        if (!c->started)
            return c;
    }
    return NULL;
}

static void *bfs_liar_main(void *arg)
{
    struct bfs_test_liar *s = arg;
    while (!atomic_load(&s->stop)) {
        if (!bfs_liar_readable(s, s->listen_fd, BFS_LIAR_POLL_MS))
            continue;
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        struct bfs_test_liar_conn *c = bfs_liar_slot(s);
        if (!c) {
            close(fd);
            continue;
        }
        struct timeval tv = {BFS_LIAR_SEND_MS / 1000, BFS_LIAR_SEND_MS % 1000 * 1000};
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        c->s = s;
        c->fd = fd;
        atomic_store(&c->done, false);
        c->started = pthread_create(&c->thread, NULL, bfs_liar_conn_main, c) == 0;
        if (!c->started)
            close(fd);
    }
    for (int i = 0; i < BFS_LIAR_CONNS; i++)
        if (s->conn[i].started)
            pthread_join(s->conn[i].thread, NULL);
    return NULL;
}

/* Serve data[0, size) on 127.0.0.1, port s->port.  0, or -errno (then
 * nothing runs and bfs_test_liar_stop() does nothing). */
static inline int bfs_test_liar_start(struct bfs_test_liar *s, const void *data, size_t size)
{
    memset(s, 0, sizeof *s);
    s->data = data;
    s->size = size;
    s->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->listen_fd < 0)
        return -errno;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int ret = 0;
    if (bind(s->listen_fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(s->listen_fd, 64) < 0 ||
        getsockname(s->listen_fd, (struct sockaddr *)&a, &len) < 0)
        ret = -errno;
    else if ((ret = pthread_create(&s->thread, NULL, bfs_liar_main, s)) != 0)
        ret = -ret;
    if (ret < 0) {
        close(s->listen_fd);
        s->listen_fd = -1;
        return ret;
    }
    s->port = ntohs(a.sin_port); /* (the server thread never reads it) */
    return 0;
}

/* Stop serving: every thread is joined and every socket closed on return
 * (within about BFS_LIAR_POLL_MS, or BFS_LIAR_SEND_MS for a send under
 * way).  Idempotent; a server that never started is fine too. */
static inline void bfs_test_liar_stop(struct bfs_test_liar *s)
{
    if (s->port == 0)
        return;
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    close(s->listen_fd);
    s->port = 0;
}

/* "http://127.0.0.1:PORT/LIE", the base of the URLs that get that lie. */
static inline const char *bfs_test_liar_base(const struct bfs_test_liar *s, enum bfs_test_lie lie, char *out,
                                             size_t outsz)
{
    snprintf(out, outsz, "http://127.0.0.1:%d/%s", s->port, bfs_test_lie_name[lie]);
    return out;
}

#endif
