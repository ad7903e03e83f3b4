/*
 * test_webhook.c - writers/webhook.c against a real HTTP server on loopback
 * (a small one in a thread of this process, as nginx cannot be made to fail
 * a given number of POSTs): lines arrive in order and whole; a server that
 * fails is retried with a growing wait until it answers; a webhook that
 * cannot be reached keeps at most max_lines and counts what it dropped.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "webhook.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { MAX_BODIES = 16, POLL_MS = 100 };

/* One connection per request (the server answers Connection: close);
 * every wait is bounded by POLL_MS and the stop flag. */
struct post_server {
    int fd, port;
    pthread_t thread;
    atomic_bool stop;
    atomic_int requests;  /* POSTs seen */
    int fail_first;       /* the first this many get 500 */
    char *bodies[MAX_BODIES];
    atomic_int n_bodies;  /* bodies accepted (answered 200) */
    char content_type[128];
};

/* Read until the end of the headers and Content-Length bytes of body;
 * -1 when the peer or the stop flag ends it first. */
static int read_request(struct post_server *s, int c, char *buf, size_t cap, char **body, size_t *blen)
{
    size_t used = 0;
    long need = -1;
    char *end = NULL;
    while (!atomic_load(&s->stop)) {
        if (end && (size_t)(end + 4 - buf) + (size_t)need <= used)
            break;
        struct pollfd p = {.fd = c, .events = POLLIN};
        if (poll(&p, 1, POLL_MS) <= 0)
            continue;
        ssize_t n = read(c, buf + used, cap - 1 - used);
        if (n <= 0)
            return -1;
        used += (size_t)n;
        buf[used] = '\0';
        if (!end && (end = strstr(buf, "\r\n\r\n"))) {
            const char *cl = strcasestr(buf, "\r\nContent-Length:");
            need = cl ? strtol(cl + 17, NULL, 10) : 0;
            const char *ct = strcasestr(buf, "\r\nContent-Type:");
            if (ct)
                sscanf(ct + 15, " %127[^\r]", s->content_type);
        }
    }
    if (!end)
        return -1;
    *body = end + 4;
    *blen = (size_t)need;
    return 0;
}

static void *serve(void *arg)
{
    struct post_server *s = arg;
    static char buf[1 << 16];
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        if (poll(&p, 1, POLL_MS) <= 0)
            continue;
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
            continue;
        char *body;
        size_t blen;
        if (read_request(s, c, buf, sizeof buf, &body, &blen) == 0) {
            int k = atomic_fetch_add(&s->requests, 1);
            bool ok = k >= s->fail_first;
            if (ok && atomic_load(&s->n_bodies) < MAX_BODIES) {
                int i = atomic_load(&s->n_bodies);
                s->bodies[i] = strndup(body, blen);
                atomic_store(&s->n_bodies, i + 1);
            }
            const char *reply = ok ? "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                                   : "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                                     "Connection: close\r\n\r\n";
            (void)!write(c, reply, strlen(reply));
        }
        close(c);
    }
    return NULL;
}

static void server_start(struct post_server *s, int fail_first)
{
    memset(s, 0, sizeof *s);
    s->fail_first = fail_first;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->fd, 16), 0);
    assert_int_equal(getsockname(s->fd, (struct sockaddr *)&a, &len), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
}

static void server_stop(struct post_server *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    close(s->fd);
    for (int i = 0; i < atomic_load(&s->n_bodies); i++)
        free(s->bodies[i]);
}

static bfs_http *new_http(void)
{
    bfs_http_cfg cfg = {.connect_timeout_ms = 2000, .request_timeout_ms = 5000, .low_speed_bytes = 1,
                        .low_speed_time_s = 5, .tls_verify = true};
    bfs_http *h = NULL;
    char *msg = NULL;
    assert_int_equal(bfs_http_new(&cfg, &h, &msg), 0);
    return h;
}

/* A webhook of at most max_lines POSTing to port on loopback. */
static bfs_webhook *webhook_to(int port, size_t max_lines, bfs_http **h)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/events", port);
    *h = new_http();
    bfs_webhook *w = NULL;
    assert_int_equal(bfs_webhook_new(url, *h, max_lines, 5000, &w), 0);
    return w;
}

/* Wait (at most limit_s) until the webhook has sent n lines. */
static bool wait_sent(bfs_webhook *w, int64_t n, double limit_s)
{
    for (int i = 0; i < (int)(limit_s * 20); i++) {
        bfs_webhook_stats st;
        bfs_webhook_stats_get(w, &st);
        if (st.sent >= n)
            return true;
        usleep(50000);
    }
    return false;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Lines reach the server in order, whole, as JSON. */
static void test_in_order(void **state)
{
    (void)state;
    struct post_server s;
    server_start(&s, 0);
    bfs_http *h;
    bfs_webhook *w = webhook_to(s.port, 100, &h);
    static const char *lines[] = {"{\"n\":1,\"status\":0}", "{\"n\":2,\"status\":1}", "{\"n\":3,\"status\":0}"};
    for (int i = 0; i < 3; i++)
        bfs_webhook_post(w, lines[i]);
    assert_true(wait_sent(w, 3, 10));
    assert_int_equal(atomic_load(&s.n_bodies), 3);
    for (int i = 0; i < 3; i++)
        assert_string_equal(s.bodies[i], lines[i]);
    assert_string_equal(s.content_type, "application/json");
    bfs_webhook_free(w);
    bfs_http_free(h);
    server_stop(&s);
}

/* A server that fails twice: the line is kept and tried again after a
 * wait (1 s, then 2 s), not dropped and not sent out of order. */
static void test_retry(void **state)
{
    (void)state;
    struct post_server s;
    server_start(&s, 2);
    bfs_http *h;
    bfs_webhook *w = webhook_to(s.port, 100, &h);
    double t0 = now_s();
    bfs_webhook_post(w, "{\"n\":1}");
    bfs_webhook_post(w, "{\"n\":2}");
    assert_true(wait_sent(w, 2, 20));
    double took = now_s() - t0;
    bfs_webhook_stats st;
    bfs_webhook_stats_get(w, &st);
    assert_int_equal(st.failures, 2);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(atomic_load(&s.requests), 4);
    assert_string_equal(s.bodies[0], "{\"n\":1}");
    assert_string_equal(s.bodies[1], "{\"n\":2}");
    assert_true(took >= 2.5); /* waited 1 s and then 2 s: it does not hammer a failing server */
    bfs_webhook_free(w);
    bfs_http_free(h);
    server_stop(&s);
}

/* Nobody listens: at most max_lines wait, the oldest are dropped and
 * counted, and freeing the webhook does not hang. */
static void test_bounded(void **state)
{
    (void)state;
    struct post_server s;
    server_start(&s, 0);
    int port = s.port;
    server_stop(&s); /* the port is closed: every POST is refused */
    bfs_http *h;
    bfs_webhook *w = webhook_to(port, 4, &h);
    for (int i = 0; i < 10; i++) {
        char line[32];
        snprintf(line, sizeof line, "{\"n\":%d}", i);
        bfs_webhook_post(w, line);
    }
    bfs_webhook_stats st;
    bfs_webhook_stats_get(w, &st);
    assert_true(st.queued <= 4);
    assert_true(st.dropped >= 5); /* 10 lines, 4 kept, at most one out being sent */
    assert_true(st.dropped + st.queued >= 9);
    assert_int_equal(st.sent, 0);
    double t0 = now_s();
    bfs_webhook_free(w);
    assert_true(now_s() - t0 < 10);
    bfs_http_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order),
        cmocka_unit_test(test_retry),
        cmocka_unit_test(test_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
