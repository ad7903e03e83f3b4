/* Unit tests for the HTTP transport (fetchers/http.c) against a real nginx
 * on 127.0.0.1, started through tests/integration/nginx.sh (found next to
 * this file, since unit tests get no BFS_SRC).  Skipped (77) when nginx is
 * not installed.  The fault-injection locations of nginx.sh give the error
 * classes of http.h; everything the library logs goes to a file that is
 * checked at the end for the bearer tokens, which must never appear.  The
 * same server speaks HTTPS with certificates from a CA made at start-up
 * (nginx_make_certs); the test_tls_* tests are skipped when openssl is not
 * installed.  The lies nginx cannot tell (a wrong Content-Range, a short or
 * overlong body, a reset mid-body) come from liar_server.h, in a thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "http.h"
#include "liar_server.h"
#include "nginx_fixture.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SMALL_SIZE 100000
#define BIG_SIZE (10 * 1024 * 1024)
#define GOOD_TOKEN "sekrit-token"
#define BAD_TOKEN "wrong-token-0123"
#define S3_SECRET "wJalrXUtnFEMI-secret-key"
#define S3_SESSION "session-token-xyzzy"

static char tmpdir[] = "/tmp/bfs_test_http.XXXXXX";
static char docroot[512], logpath[512], tokenpath[512], base[128];
static char tlsdir[512], ca_path[600];
static int https_port[2]; /* 0 without openssl; see bfs_test_nginx_start_tls */
static pid_t nginx_pid;
static unsigned char *small_data;

/* BASE/LOC/NAME, in one of four rotating buffers. */
static char *url_at(const char *b, const char *loc, const char *name)
{
    static __thread char buf[4][600];
    static __thread int i;
    char *u = buf[i++ % 4];
    snprintf(u, sizeof buf[0], "%s/%s/%s", b, loc, name);
    return u;
}

static char *url(const char *loc, const char *name) { return url_at(base, loc, name); }

/* https://HOST:PORT/data/NAME */
static char *tls_url(const char *host, int port, const char *name)
{
    char b[128];
    snprintf(b, sizeof b, "https://%s:%d", host, port);
    return url_at(b, "data", name);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void write_file(const char *path, const void *data, size_t n)
{
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0);
}

static void write_text(const char *path, const char *text) { write_file(path, text, strlen(text)); }

static bfs_http_cfg default_cfg(void)
{
    return (bfs_http_cfg){.connect_timeout_ms = 2000, .request_timeout_ms = 20000,
                          .low_speed_bytes = 1024, .low_speed_time_s = 10, .tls_verify = true};
}

static bfs_http *new_http(const bfs_http_cfg *cfg)
{
    bfs_http *h = NULL;
    char *msg = NULL;
    int ret = bfs_http_new(cfg, &h, &msg);
    if (ret < 0)
        fprintf(stderr, "bfs_http_new: %s\n", msg ? msg : strerror(-ret));
    assert_int_equal(ret, 0);
    free(msg);
    return h;
}

static bool nginx_installed(void)
{
    return access("/usr/sbin/nginx", X_OK) == 0 || system("command -v nginx >/dev/null 2>&1") == 0;
}

static int setup(void **state)
{
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(docroot, sizeof docroot, "%s/doc", tmpdir);
    snprintf(logpath, sizeof logpath, "%s/test.log", tmpdir);
    snprintf(tokenpath, sizeof tokenpath, "%s/token", tmpdir);
    if (mkdir(docroot, 0755) < 0)
        return -1;
    if (bfs_log_to_file(logpath) < 0)
        return -1;
    bfs_log_set_level(LOG_DEBUG);

    small_data = malloc(BIG_SIZE);
    uint64_t x = 88172645463325252ULL;
    for (size_t i = 0; i < BIG_SIZE; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        small_data[i] = (unsigned char)x;
    }
    char p[600];
    snprintf(p, sizeof p, "%s/small.bin", docroot);
    write_file(p, small_data, SMALL_SIZE);
    snprintf(p, sizeof p, "%s/big.bin", docroot);
    write_file(p, small_data, BIG_SIZE);

    snprintf(tlsdir, sizeof tlsdir, "%s/tls", tmpdir);
    snprintf(ca_path, sizeof ca_path, "%s/ca.pem", tlsdir);
    int certs = bfs_test_make_certs(__FILE__, tlsdir);
    if (certs < 0)
        return -1;
    int port;
    if (bfs_test_nginx_start_tls(__FILE__, tmpdir, docroot, "main", certs == 0 ? tlsdir : NULL,
                                 &nginx_pid, &port, https_port) < 0)
        return -1;
    snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
    return 0;
}

static int teardown(void **state)
{
    bfs_test_nginx_stop(&nginx_pid);
    free(small_data);
    bfs_test_remove_tmpdir(tmpdir); /* BFS_TEST_KEEP keeps docroot and test.log */
    return 0;
}

static void test_handles(void **state)
{
    assert_true(bfs_http_handles("http://x/y"));
    assert_true(bfs_http_handles("HTTPS://x/y"));
    assert_true(bfs_http_handles("s3://bucket/key"));
    assert_false(bfs_http_handles("file:///x"));
    assert_false(bfs_http_handles("/local/path"));
    assert_false(bfs_http_handles("ftp://x/y"));
}

static void test_stat(void **state)
{
    bfs_http_cfg cfg = default_cfg();
    bfs_http *h = new_http(&cfg);
    bfs_object o;
    assert_int_equal(bfs_http_stat(h, url("data", "small.bin"), &o), 0);
    assert_int_equal(o.size, SMALL_SIZE);
    /* nginx's ETag is "<hex mtime>-<hex size>" */
    char p[600], etag[64];
    struct stat st;
    snprintf(p, sizeof p, "%s/small.bin", docroot);
    assert_int_equal(stat(p, &st), 0);
    snprintf(etag, sizeof etag, "\"%" PRIx64 "-%" PRIx64 "\"", (uint64_t)st.st_mtime,
             (uint64_t)st.st_size);
    assert_string_equal(o.etag, etag);
    assert_true(o.last_modified[0] != '\0');
    assert_int_equal(bfs_http_bytes_received(h), 0); /* HEAD moves no body */

    assert_int_equal(bfs_http_stat(h, url("data", "missing.bin"), &o), -ENOENT);
    assert_int_equal(bfs_http_stat(h, url("fail503", "small.bin"), &o), -EIO);
    bfs_http_free(h);
}

static void test_ranges(void **state)
{
    bfs_http_cfg cfg = default_cfg();
    bfs_http *h = new_http(&cfg);
    unsigned char *buf = malloc(SMALL_SIZE + 100);
    struct { int64_t off; size_t len; ssize_t want; } cases[] = {
        {0, 2880, 2880},     {1, 1, 1},          {4095, 8193, 8193},   {50000, 50000, 50000},
        {SMALL_SIZE - 1, 1, 1},                  /* the last byte */
        {SMALL_SIZE - 10, 100, 10},              /* past EOF: a short count */
        {0, SMALL_SIZE + 100, SMALL_SIZE},       /* everything and more */
    };
    uint64_t total = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        memset(buf, 0xAA, SMALL_SIZE + 100);
        size_t moved = 12345;
        ssize_t got = bfs_http_get(h, url("data", "small.bin"), NULL, cases[i].off, cases[i].len,
                                   buf, &moved);
        assert_int_equal(got, cases[i].want);
        assert_memory_equal(buf, small_data + cases[i].off, (size_t)got);
        assert_int_equal(moved, (size_t)got);
        if ((size_t)got < cases[i].len)
            assert_int_equal(buf[got], 0xAA); /* nothing written past the reply */
        total += (uint64_t)got;
    }
    assert_int_equal(bfs_http_bytes_received(h), total);

    /* Entirely past the end: 416 without a pin, EOF (no request) with one. */
    assert_int_equal(bfs_http_get(h, url("data", "small.bin"), NULL, SMALL_SIZE, 10, buf, NULL),
                     -ERANGE);
    bfs_object pin;
    assert_int_equal(bfs_http_stat(h, url("data", "small.bin"), &pin), 0);
    assert_int_equal(bfs_http_get(h, url("data", "small.bin"), &pin, SMALL_SIZE, 10, buf, NULL), 0);
    /* Pinned reads, including one clipped at the pinned size. */
    assert_int_equal(bfs_http_get(h, url("data", "small.bin"), &pin, 777, 1000, buf, NULL), 1000);
    assert_memory_equal(buf, small_data + 777, 1000);
    assert_int_equal(bfs_http_get(h, url("data", "small.bin"), &pin, SMALL_SIZE - 5, 100, buf, NULL),
                     5);
    assert_int_equal(bfs_http_get(h, url("data", "small.bin"), NULL, 0, 0, buf, NULL), 0);
    assert_int_equal(bfs_http_get(h, url("data", "missing.bin"), NULL, 0, 10, buf, NULL), -ENOENT);
    free(buf);
    bfs_http_free(h);
}

static void test_stale(void **state)
{
    bfs_http_cfg cfg = default_cfg();
    bfs_http *h = new_http(&cfg);
    char p[600];
    unsigned char buf[4096];
    snprintf(p, sizeof p, "%s/v.bin", docroot);
    write_file(p, small_data, 1000);
    bfs_object pin, lm_pin;
    assert_int_equal(bfs_http_stat(h, url("data", "v.bin"), &pin), 0);
    assert_int_equal(bfs_http_get(h, url("data", "v.bin"), &pin, 10, 100, buf, NULL), 100);
    lm_pin = pin;
    lm_pin.etag[0] = '\0'; /* a server without ETags: If-Unmodified-Since and the size */
    assert_int_equal(bfs_http_get(h, url("data", "v.bin"), &lm_pin, 10, 100, buf, NULL), 100);

    /* A different size, so the ETag differs even within the same second. */
    write_file(p, small_data + 1, 2000);
    assert_int_equal(bfs_http_get(h, url("data", "v.bin"), &pin, 10, 100, buf, NULL), -ESTALE);
    assert_int_equal(bfs_http_get(h, url("data", "v.bin"), &lm_pin, 10, 100, buf, NULL), -ESTALE);
    /* A pin whose ETag the server never gave (412 from If-Match). */
    bfs_object fake = pin;
    snprintf(fake.etag, sizeof fake.etag, "\"deadbeef-7d0\"");
    fake.size = 2000;
    assert_int_equal(bfs_http_get(h, url("data", "v.bin"), &fake, 0, 100, buf, NULL), -ESTALE);
    bfs_http_free(h);
}

static void test_faults(void **state)
{
    bfs_http_cfg cfg = default_cfg();
    bfs_http *h = new_http(&cfg);
    unsigned char buf[1000];
    assert_int_equal(bfs_http_get(h, url("fail503", "small.bin"), NULL, 0, 100, buf, NULL), -EIO);
    ssize_t r = bfs_http_get(h, url("drop", "small.bin"), NULL, 0, 100, buf, NULL);
    assert_true(r == -ECONNRESET || r == -EPROTO);
    /* The handle is still good after a dropped connection. */
    assert_int_equal(bfs_http_get(h, url("data", "small.bin"), NULL, 0, 100, buf, NULL), 100);
    /* Nothing listens on port 1: refused. */
    char u[64];
    snprintf(u, sizeof u, "http://127.0.0.1:1/x");
    assert_int_equal(bfs_http_get(h, u, NULL, 0, 100, buf, NULL), -ECONNREFUSED);
    /* ~50 % 503s: every answer is either the bytes or -EIO. */
    int ok = 0, fail = 0;
    for (int i = 0; i < 40; i++) {
        r = bfs_http_get(h, url("flaky", "small.bin"), NULL, 100, 100, buf, NULL);
        if (r == 100) {
            assert_memory_equal(buf, small_data + 100, 100);
            ok++;
        } else {
            assert_int_equal(r, -EIO);
            fail++;
        }
    }
    assert_true(ok > 0 && fail > 0);
    bfs_http_free(h);
}

/* A server that ignores Range: a whole object is fine from offset 0 when it
 * fits; otherwise the reply is refused before its body is read. */
static void test_range_ignored(void **state)
{
    bfs_http_cfg cfg = default_cfg();
    bfs_http *h = new_http(&cfg);
    unsigned char *buf = malloc(SMALL_SIZE + 10);
    size_t moved = 1;
    assert_int_equal(bfs_http_get(h, url("norange", "small.bin"), NULL, 0, SMALL_SIZE + 10, buf,
                                  &moved), SMALL_SIZE);
    assert_memory_equal(buf, small_data, SMALL_SIZE);
    assert_int_equal(bfs_http_get(h, url("norange", "big.bin"), NULL, 0, 2880, buf, &moved),
                     -EPROTO);
    assert_int_equal(moved, 0);
    assert_int_equal(bfs_http_get(h, url("norange", "small.bin"), NULL, 10, 100, buf, &moved),
                     -EPROTO);
    assert_int_equal(moved, 0);
    /* The handle recovers from the aborted transfers. */
    assert_int_equal(bfs_http_get(h, url("data", "small.bin"), NULL, 10, 100, buf, NULL), 100);
    free(buf);
    bfs_http_free(h);
}

static void test_stall_timeout(void **state)
{
    bfs_http_cfg cfg = default_cfg();
    cfg.request_timeout_ms = 1000;
    bfs_http *h = new_http(&cfg);
    unsigned char buf[100];
    double t0 = now_s();
    assert_int_equal(bfs_http_get(h, url("stall", "x"), NULL, 0, 100, buf, NULL), -ETIMEDOUT);
    double dt = now_s() - t0;
    assert_true(dt >= 0.9 && dt < 2.0);
    bfs_object o;
    t0 = now_s();
    assert_int_equal(bfs_http_stat(h, url("stall", "x"), &o), -ETIMEDOUT);
    assert_true(now_s() - t0 < 2.0);
    bfs_http_free(h);
}

/* A listener whose accept queue is full: the kernel drops every further
 * SYN, so a connect to it never completes.  Returns the port; *fds gets the
 * listener and the queued sockets (close them after). */
static int blackhole(int fds[5])
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    fds[0] = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fds[0] >= 0);
    assert_int_equal(bind(fds[0], (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fds[0], 0), 0);
    assert_int_equal(getsockname(fds[0], (struct sockaddr *)&a, &al), 0);
    for (int i = 1; i < 5; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        (void)connect(fds[i], (struct sockaddr *)&a, sizeof a); /* EINPROGRESS: queued, never accepted */
    }
    return ntohs(a.sin_port);
}

/* No connection within connect_timeout is -EHOSTDOWN (the host, which
 * remote.c skips with every replica on it), but only when the request had
 * all of connect_timeout: cut short by a deadline it is -ETIMEDOUT; a host
 * name that does not resolve is -EHOSTUNREACH; a stalled transfer on a
 * made connection stays -ETIMEDOUT (test_stall_timeout). */
static void test_host_failures(void **state)
{
    bfs_http_cfg cfg = default_cfg();
    cfg.connect_timeout_ms = 300;
    bfs_http *h = new_http(&cfg);
    int fds[5];
    char u[128];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/x", blackhole(fds));
    unsigned char buf[100];
    size_t moved;
    double t0 = now_s();
    assert_int_equal(bfs_http_get_within(h, u, NULL, 0, 100, buf, &moved, 5000, NULL, NULL), -EHOSTDOWN);
    assert_true(now_s() - t0 < 2.0);
    bfs_object o;
    assert_int_equal(bfs_http_stat_within(h, u, &o, 5000), -EHOSTDOWN);
    assert_int_equal(bfs_http_get_within(h, u, NULL, 0, 100, buf, &moved, 100, NULL, NULL), -ETIMEDOUT);
    for (int i = 0; i < 5; i++)
        close(fds[i]);
    /* (a resolver that does not answer makes it a connect timeout instead) */
    t0 = now_s();
    ssize_t got = bfs_http_get_within(h, "http://no-such-host.invalid/x", NULL, 0, 100, buf, &moved, 5000, NULL, NULL);
    if (got == -EHOSTDOWN && now_s() - t0 >= 0.29)
        fprintf(stderr, "the resolver did not answer within connect_timeout: %zd\n", got);
    else
        assert_int_equal(got, -EHOSTUNREACH);
    bfs_http_free(h);
}

static void test_low_speed(void **state)
{
    bfs_http_cfg cfg = default_cfg();
    cfg.low_speed_bytes = 100000;
    cfg.low_speed_time_s = 1;
    bfs_http *h = new_http(&cfg);
    unsigned char *buf = malloc(BIG_SIZE);
    double t0 = now_s();
    size_t moved = 0;
    assert_int_equal(bfs_http_get(h, url("slow", "big.bin"), NULL, 0, BIG_SIZE, buf, &moved),
                     -ETIMEDOUT);
    double dt = now_s() - t0;
    assert_true(dt < 5.0);
    assert_true(moved < BIG_SIZE);
    assert_int_equal(bfs_http_bytes_received(h), moved);
    free(buf);
    bfs_http_free(h);
}

static void test_bearer_token(void **state)
{
    unsigned char buf[1000];
    bfs_http_cfg cfg = default_cfg();
    bfs_http *h = new_http(&cfg);
    assert_int_equal(bfs_http_get(h, url("auth", "small.bin"), NULL, 0, 100, buf, NULL), -EACCES);
    bfs_http_free(h);

    /* The file does not exist yet: refused without a request. */
    unlink(tokenpath);
    cfg.token_file = tokenpath;
    h = new_http(&cfg);
    assert_int_equal(bfs_http_get(h, url("auth", "small.bin"), NULL, 0, 100, buf, NULL), -EACCES);
    bfs_http_free(h);

    write_text(tokenpath, "  " GOOD_TOKEN " \n");
    h = new_http(&cfg);
    assert_int_equal(bfs_http_get(h, url("auth", "small.bin"), NULL, 0, 100, buf, NULL), 100);
    assert_memory_equal(buf, small_data, 100);
    bfs_object o;
    assert_int_equal(bfs_http_stat(h, url("auth", "small.bin"), &o), 0);
    assert_int_equal(o.size, SMALL_SIZE);

    /* Rotation: a wrong token is picked up within about a second. */
    write_text(tokenpath, BAD_TOKEN "\n");
    usleep(1100 * 1000);
    assert_int_equal(bfs_http_get(h, url("auth", "small.bin"), NULL, 0, 100, buf, NULL), -EACCES);
    /* The file vanishes: refused; it comes back: accepted. */
    unlink(tokenpath);
    usleep(1100 * 1000);
    assert_int_equal(bfs_http_get(h, url("auth", "small.bin"), NULL, 0, 100, buf, NULL), -EACCES);
    write_text(tokenpath, GOOD_TOKEN);
    usleep(1100 * 1000);
    assert_int_equal(bfs_http_get(h, url("auth", "small.bin"), NULL, 0, 100, buf, NULL), 100);
    /* Never in clear text across a network: plain http to a host that is
     * not loopback is refused before any connection (192.0.2.1 is
     * TEST-NET-1, which nothing answers; a connection attempt would time
     * out instead).  localhost is fine. */
    size_t moved = 99;
    assert_int_equal(bfs_http_get(h, "http://192.0.2.1/repo/small.bin", NULL, 0, 100, buf, &moved), -EACCES);
    assert_int_equal(moved, 0);
    /* a name that only starts like a loopback address, an upper-case scheme */
    assert_int_equal(bfs_http_get(h, "http://127.example.invalid/x", NULL, 0, 100, buf, NULL), -EACCES);
    assert_int_equal(bfs_http_get(h, "HTTP://192.0.2.1/x", NULL, 0, 100, buf, NULL), -EACCES);
    char local[256];
    snprintf(local, sizeof local, "%s", url("auth", "small.bin"));
    char *host = strstr(local, "127.0.0.1");
    assert_non_null(host);
    char viahost[300];
    snprintf(viahost, sizeof viahost, "%.*sLocalHost%s", (int)(host - local), local, host + strlen("127.0.0.1"));
    assert_int_equal(bfs_http_get(h, viahost, NULL, 0, 100, buf, NULL), 100);
    /* An empty file is refused too. */
    write_text(tokenpath, " \n");
    usleep(1100 * 1000);
    assert_int_equal(bfs_http_get(h, url("auth", "small.bin"), NULL, 0, 100, buf, NULL), -EACCES);
    bfs_http_free(h);
}

static void test_header_read_moves_little(void **state)
{
    bfs_http_cfg cfg = default_cfg();
    bfs_http *h = new_http(&cfg);
    unsigned char buf[2880];
    size_t moved = 0;
    bfs_object pin;
    assert_int_equal(bfs_http_stat(h, url("data", "big.bin"), &pin), 0);
    assert_int_equal(pin.size, BIG_SIZE);
    assert_int_equal(bfs_http_get(h, url("data", "big.bin"), &pin, 0, 2880, buf, &moved), 2880);
    assert_memory_equal(buf, small_data, 2880);
    assert_true(moved <= 2880);
    assert_true(bfs_http_bytes_received(h) <= 2880);
    bfs_http_free(h);
}

/* Many threads on one bfs_http: each uses its own handle; the bytes are right. */
struct thr_arg { bfs_http *h; int seed; int errors; };

static void *reader(void *p)
{
    struct thr_arg *a = p;
    unsigned char buf[70000];
    unsigned s = (unsigned)a->seed;
    for (int i = 0; i < 40; i++) {
        int64_t off = rand_r(&s) % BIG_SIZE;
        size_t len = 1 + (size_t)rand_r(&s) % sizeof buf;
        ssize_t want = (int64_t)len > BIG_SIZE - off ? BIG_SIZE - off : (ssize_t)len;
        ssize_t got = bfs_http_get(a->h, url("data", "big.bin"), NULL, off, len, buf, NULL);
        if (got != want || memcmp(buf, small_data + off, (size_t)want) != 0)
            a->errors++;
    }
    return NULL;
}

static void test_threads(void **state)
{
    bfs_http_cfg cfg = default_cfg();
    bfs_http *h = new_http(&cfg);
    for (int round = 0; round < 2; round++) { /* the second round reuses idle handles */
        pthread_t t[6];
        struct thr_arg a[6];
        for (int i = 0; i < 6; i++) {
            a[i] = (struct thr_arg){.h = h, .seed = i + 10 * round};
            assert_int_equal(pthread_create(&t[i], NULL, reader, &a[i]), 0);
        }
        for (int i = 0; i < 6; i++) {
            pthread_join(t[i], NULL);
            assert_int_equal(a[i].errors, 0);
        }
    }
    bfs_http_free(h);
}

/* s3:// through s3.h: path-style requests to an endpoint; nginx ignores the
 * signature, so this checks the plumbing (URL, signed Range/If-Match, the
 * reply checks), not SigV4 itself (s3.c has its own tests). */
static void test_s3(void **state)
{
    char dir[600], p[700], endpoint[256];
    snprintf(dir, sizeof dir, "%s/bkt", docroot);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(p, sizeof p, "%s/small.bin", dir);
    write_file(p, small_data, SMALL_SIZE);
    snprintf(endpoint, sizeof endpoint, "%s/data", base);
    setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
    setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET, 1);
    setenv("AWS_SESSION_TOKEN", S3_SESSION, 1);
    setenv("AWS_REGION", "us-east-1", 1);
    setenv("AWS_ENDPOINT_URL_S3", endpoint, 1);
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials", 1);
    setenv("AWS_CONFIG_FILE", "/nonexistent/config", 1);
    unsetenv("AWS_PROFILE");

    bfs_http_cfg cfg = default_cfg();
    bfs_http *h = new_http(&cfg);
    bfs_object pin;
    unsigned char buf[1000];
    assert_int_equal(bfs_http_stat(h, "s3://bkt/small.bin", &pin), 0);
    assert_int_equal(pin.size, SMALL_SIZE);
    assert_int_equal(bfs_http_get(h, "s3://bkt/small.bin", &pin, 5000, 1000, buf, NULL), 1000);
    assert_memory_equal(buf, small_data + 5000, 1000);
    assert_int_equal(bfs_http_get(h, "s3://bkt/small.bin", NULL, SMALL_SIZE - 3, 10, buf, NULL), 3);
    assert_int_equal(bfs_http_stat(h, "s3://bkt/nope.bin", &pin), -ENOENT);
    /* A profile without credentials is a refusal, not a missing object. */
    assert_int_equal(bfs_http_get(h, "s3://noprofile@bkt/small.bin", NULL, 0, 10, buf, NULL),
                     -EACCES);
    bfs_http_free(h);
}

/* ---- a server that lies (liar_server.h), serving the first LIAR_SIZE bytes
 * of small_data; started and stopped around each test that uses it ---- */

#define LIAR_SIZE (1024 * 1024)
#define LIE_OFF 1001
#define LIE_LEN 300000
#define LIE_GUARD 4096 /* bytes after the range in the caller's buffer, never written */

static struct bfs_test_liar liar;
static char liar_origin[64]; /* http://127.0.0.1:PORT */

static int liar_setup(void **state)
{
    if (bfs_test_liar_start(&liar, small_data, LIAR_SIZE) < 0)
        return -1;
    snprintf(liar_origin, sizeof liar_origin, "http://127.0.0.1:%d", liar.port);
    return 0;
}

static int liar_teardown(void **state)
{
    bfs_test_liar_stop(&liar);
    return 0;
}

static char *liar_url(enum bfs_test_lie lie) { return url_at(liar_origin, bfs_test_lie_name[lie], "obj.bin"); }

/* buf (LIE_LEN + LIE_GUARD bytes, 0xAA before the request) after a GET of
 * [LIE_OFF, LIE_OFF + LIE_LEN) that returned got: the object's bytes up to
 * got, nothing written after it; a failed GET may leave a prefix of the
 * range written, but only with the object's own bytes. */
static void assert_only_truth(const unsigned char *buf, ssize_t got)
{
    size_t n = got > 0 ? (size_t)got : 0;
    assert_memory_equal(buf, small_data + LIE_OFF, n);
    size_t bad = SIZE_MAX;
    for (size_t i = n; i < LIE_LEN + LIE_GUARD && bad == SIZE_MAX; i++)
        if (buf[i] != 0xAA && (got >= 0 || i >= LIE_LEN || buf[i] != small_data[LIE_OFF + i]))
            bad = i;
    if (bad != SIZE_MAX)
        fail_msg("byte %zu of the buffer written (got %zd)", bad, got);
}

/* One GET of the test range from url; checks the buffer and the byte counters. */
static ssize_t lie_get(bfs_http *h, const char *u, const bfs_object *pin, unsigned char *buf, size_t *moved)
{
    memset(buf, 0xAA, LIE_LEN + LIE_GUARD);
    uint64_t before = bfs_http_bytes_received(h);
    *moved = 12345;
    ssize_t got = bfs_http_get(h, u, pin, LIE_OFF, LIE_LEN, buf, moved);
    assert_only_truth(buf, got);
    assert_int_equal(bfs_http_bytes_received(h) - before, *moved);
    return got;
}

/* A 200 is the whole object whatever else its head says: the size seen is
 * its body's, not a Content-Range's (which only a 206 carries). */
static void test_range_on_200(void **state)
{
    bfs_http_cfg cfg = default_cfg();
    bfs_http *h = new_http(&cfg);
    unsigned char *buf = malloc(LIAR_SIZE);
    assert_non_null(buf);
    bfs_object seen;
    size_t moved = 0;
    ssize_t got = bfs_http_get_within(h, liar_url(LIE_RANGE_ON_200), NULL, 0, LIAR_SIZE, buf, &moved, 0,
                                      &seen, NULL);
    assert_int_equal(got, LIAR_SIZE);
    assert_memory_equal(buf, small_data, LIAR_SIZE);
    assert_int_equal(seen.size, LIAR_SIZE);
    /* the truth (a 206) still takes the size from Content-Range */
    got = bfs_http_get_within(h, liar_url(LIE_NONE), NULL, LIE_OFF, 100, buf, &moved, 0, &seen, NULL);
    assert_int_equal(got, 100);
    assert_int_equal(seen.size, LIAR_SIZE);
    free(buf);
    bfs_http_free(h);
}

/* Each lie gets the class http.h gives it, with and without a pin (the ETag
 * and size from the liar's own, truthful, HEAD): -EPROTO for a reply that
 * is not the one asked for, -ECONNRESET for a server that dies, -ESTALE for
 * another object size, which without a pin nothing contradicts.  Every
 * request, lying or not, may come on the connection the previous one used,
 * and the handle gives the truth right after a lie.
 *
 * Except after trailing junk: the reply was right, but libcurl 7.88 (Debian
 * 12) reuses a kept connection with unread bytes in it (later libcurl
 * refuses to: "connection has input pending, not reusable"), so the next
 * request on it reads the junk as its status line and fails once, as a
 * transient error that remote.c retries; never with wrong bytes. */
static void test_lies(void **state)
{
    static const struct {
        enum bfs_test_lie lie;
        ssize_t want, want_unpinned;
        size_t moved_min, moved_max; /* body bytes received, pinned or not */
        bool spoils_next;            /* the next request may fail (transient) */
    } cases[] = {
        {LIE_WRONG_RANGE, -EPROTO, -EPROTO, 0, 0, false}, /* refused at the head, before its body */
        {LIE_SHORT_BODY, -EPROTO, -EPROTO, LIE_LEN / 2, LIE_LEN / 2, false},
        {LIE_OVERLONG_BODY, -EPROTO, -EPROTO, LIE_LEN + 1, LIE_LEN + BFS_LIAR_EXTRA, false},
        {LIE_RESET_MID_BODY, -ECONNRESET, -ECONNRESET, 0, LIE_LEN / 2, false},
        {LIE_NO_CONTENT_RANGE, -EPROTO, -EPROTO, 0, 0, false},
        {LIE_WRONG_TOTAL, -ESTALE, LIE_LEN, 0, LIE_LEN, false},
        {LIE_TRAILING_JUNK, LIE_LEN, LIE_LEN, LIE_LEN, LIE_LEN, true},
    };
    bfs_http_cfg cfg = default_cfg();
    bfs_http *h = new_http(&cfg);
    unsigned char *buf = malloc(LIE_LEN + LIE_GUARD);
    bfs_object pin;
    assert_int_equal(bfs_http_stat(h, liar_url(LIE_NONE), &pin), 0);
    assert_int_equal(pin.size, LIAR_SIZE);
    assert_true(pin.etag[0] != '\0');
    size_t moved;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        for (int pinned = 1; pinned >= 0; pinned--) {
            const bfs_object *p = pinned ? &pin : NULL;
            assert_int_equal(lie_get(h, liar_url(LIE_NONE), p, buf, &moved), LIE_LEN);
            ssize_t got = lie_get(h, liar_url(cases[i].lie), p, buf, &moved);
            fprintf(stderr, "lie %-16s %-8s -> %zd (%s), %zu body bytes received\n",
                    bfs_test_lie_name[cases[i].lie], pinned ? "pinned" : "unpinned", got,
                    got < 0 ? strerror((int)-got) : "bytes", moved);
            assert_int_equal(got, pinned ? cases[i].want : cases[i].want_unpinned);
            assert_in_range(moved, cases[i].moved_min, cases[i].moved_max);
            if (got >= 0)
                assert_int_equal(moved, (size_t)got);
            if (cases[i].spoils_next) {
                got = lie_get(h, liar_url(LIE_NONE), p, buf, &moved);
                fprintf(stderr, "    the request after it -> %zd (%s)\n", got,
                        got < 0 ? strerror((int)-got) : "bytes");
                assert_true(got == LIE_LEN || got == -EIO || got == -EPROTO);
            }
            /* recovered: the truth at once, from the liar and from nginx */
            assert_int_equal(lie_get(h, liar_url(LIE_NONE), p, buf, &moved), LIE_LEN);
            assert_int_equal(moved, LIE_LEN);
            assert_int_equal(bfs_http_get(h, url("data", "big.bin"), NULL, LIE_OFF, 100, buf, NULL), 100);
        }
    }
    free(buf);
    bfs_http_free(h);
}

/* The whole log so far, NUL-terminated, in a static buffer. */
static const char *read_log(void)
{
    static char text[1 << 20];
    FILE *f = fopen(logpath, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    return text;
}

/* Lines of the log holding both a and b. */
static int log_lines_with(const char *a, const char *b)
{
    int count = 0;
    for (const char *line = read_log(); *line;) {
        const char *end = strchrnul(line, '\n');
        size_t n = (size_t)(end - line);
        count += memmem(line, n, a, strlen(a)) && memmem(line, n, b, strlen(b));
        line = *end ? end + 1 : end;
    }
    return count;
}

/* ---- HTTPS: https_port[0] presents a certificate for 127.0.0.1 and
 * localhost, https_port[1] one for localhost only, both signed by the CA at
 * ca_path, which no system trusts. ---- */

static void need_tls(void)
{
    if (!https_port[0]) {
        fprintf(stderr, "openssl is not installed: skipped\n");
        skip();
    }
}

/* A bfs_http for the HTTPS tests (which it skips without openssl). */
static bfs_http *tls_http(bool verify, const char *ca_file)
{
    need_tls();
    bfs_http_cfg cfg = default_cfg();
    cfg.tls_verify = verify;
    cfg.ca_file = ca_file;
    return new_http(&cfg);
}

/* stat and a pinned ranged read of small.bin at u: the object nginx serves over HTTP. */
static void expect_tls_reads(bfs_http *h, const char *u)
{
    bfs_object o, plain;
    unsigned char buf[8193];
    assert_int_equal(bfs_http_stat(h, u, &o), 0);
    assert_int_equal(o.size, SMALL_SIZE);
    assert_int_equal(bfs_http_stat(h, url("data", "small.bin"), &plain), 0);
    assert_string_equal(o.etag, plain.etag);
    size_t moved = 0;
    assert_int_equal(bfs_http_get(h, u, &o, 4095, sizeof buf, buf, &moved), (ssize_t)sizeof buf);
    assert_memory_equal(buf, small_data + 4095, sizeof buf);
    assert_int_equal(moved, sizeof buf);
}

/* A certificate that fails verification is -EACCES, a permanent failure
 * (remote.c retries only transient errors: timeouts, resets, hosts it cannot
 * connect to, broken replies, 5xx), for
 * HEAD and GET alike, and no body byte arrives.  The refusal is logged
 * once as a warning that says what to fix, not once per request. */
static void expect_tls_refused(bfs_http *h, const char *u)
{
    char origin[128];
    snprintf(origin, sizeof origin, "%.*s/", (int)(strchr(u + 8, '/') - u), u);
    int warned = log_lines_with("warning http: ", origin);
    bfs_object o;
    unsigned char buf[100];
    size_t moved = 1;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(bfs_http_stat(h, u, &o), -EACCES);
        assert_int_equal(o.size, 0);
        assert_int_equal(bfs_http_get(h, u, NULL, 0, sizeof buf, buf, &moved), -EACCES);
        assert_int_equal(moved, 0);
    }
    assert_int_equal(log_lines_with("warning http: ", origin), warned + 1);
    assert_int_equal(log_lines_with(origin, "fetch.ca_file"), warned + 1);
}

/* 1. Verification on, ca_file the test CA: by address and by name. */
static void test_tls_ca_file(void **state)
{
    bfs_http *h = tls_http(true, ca_path);
    expect_tls_reads(h, tls_url("127.0.0.1", https_port[0], "small.bin"));
    expect_tls_reads(h, tls_url("localhost", https_port[0], "small.bin"));
    expect_tls_reads(h, tls_url("localhost", https_port[1], "small.bin"));
    /* One 4 MiB block (many TLS records) from an odd offset, on the kept connection. */
    size_t n = 4 << 20;
    unsigned char *buf = malloc(n);
    int64_t off = 3 * 1024 * 1024 + 1;
    assert_int_equal(bfs_http_get(h, tls_url("127.0.0.1", https_port[0], "big.bin"), NULL, off, n,
                                  buf, NULL), (ssize_t)n);
    assert_memory_equal(buf, small_data + off, n);
    free(buf);
    bfs_http_free(h);
}

/* 2. Verification on, the system CAs: the test CA is unknown. */
static void test_tls_system_cas(void **state)
{
    bfs_http *h = tls_http(true, NULL);
    expect_tls_refused(h, tls_url("127.0.0.1", https_port[0], "small.bin"));
    /* The handle is still good for plain HTTP afterwards. */
    unsigned char buf[100];
    assert_int_equal(bfs_http_get(h, url("data", "small.bin"), NULL, 0, 100, buf, NULL), 100);
    bfs_http_free(h);
}

/* 3. The right CA, but a certificate for another host name: localhost.pem
 * reached as 127.0.0.1 (the same certificate is fine as localhost). */
static void test_tls_wrong_host(void **state)
{
    bfs_http *h = tls_http(true, ca_path);
    expect_tls_refused(h, tls_url("127.0.0.1", https_port[1], "small.bin"));
    expect_tls_reads(h, tls_url("localhost", https_port[1], "small.bin"));
    bfs_http_free(h);
}

/* 4. Verification off: no CA needed, and the host name is not checked either. */
static void test_tls_verify_off(void **state)
{
    bfs_http *h = tls_http(false, NULL);
    expect_tls_reads(h, tls_url("127.0.0.1", https_port[0], "small.bin"));
    expect_tls_reads(h, tls_url("127.0.0.1", https_port[1], "small.bin"));
    bfs_http_free(h);
}

/* 5. A ca_file that does not exist fails bfs_http_new, naming the file; a
 * readable one without a CA certificate (a key; only readability is checked
 * up front) refuses every https:// request. */
static void test_tls_ca_file_bad(void **state)
{
    char bad[600];
    snprintf(bad, sizeof bad, "%s/no-such-ca.pem", tmpdir);
    bfs_http_cfg cfg = default_cfg();
    cfg.ca_file = bad;
    bfs_http *h = NULL;
    char *msg = NULL;
    assert_int_equal(bfs_http_new(&cfg, &h, &msg), -ENOENT);
    assert_null(h);
    assert_non_null(msg);
    assert_non_null(strstr(msg, bad));
    free(msg);

    snprintf(bad, sizeof bad, "%s/server.key", tlsdir);
    h = tls_http(true, bad);
    expect_tls_refused(h, tls_url("127.0.0.1", https_port[0], "small.bin"));
    bfs_http_free(h);
}

/* Last: nothing logged may contain a token; the token file is named. */
static void test_log_has_no_secret(void **state)
{
    const char *text = read_log();
    assert_true(text[0] != '\0');
    assert_null(strstr(text, GOOD_TOKEN));
    assert_null(strstr(text, BAD_TOKEN));
    assert_null(strstr(text, "Bearer"));
    assert_null(strstr(text, S3_SECRET));
    assert_null(strstr(text, S3_SESSION));
    assert_null(strstr(text, "Signature="));
    assert_non_null(strstr(text, tokenpath));
}

int main(void)
{
    if (!nginx_installed()) {
        fprintf(stderr, "nginx is not installed: skipped\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handles),
        cmocka_unit_test(test_stat),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_stale),
        cmocka_unit_test(test_faults),
        cmocka_unit_test(test_range_ignored),
        cmocka_unit_test_setup_teardown(test_lies, liar_setup, liar_teardown),
        cmocka_unit_test_setup_teardown(test_range_on_200, liar_setup, liar_teardown),
        cmocka_unit_test(test_stall_timeout),
        cmocka_unit_test(test_host_failures),
        cmocka_unit_test(test_low_speed),
        cmocka_unit_test(test_bearer_token),
        cmocka_unit_test(test_header_read_moves_little),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_s3),
        cmocka_unit_test(test_tls_ca_file),
        cmocka_unit_test(test_tls_system_cas),
        cmocka_unit_test(test_tls_wrong_host),
        cmocka_unit_test(test_tls_verify_off),
        cmocka_unit_test(test_tls_ca_file_bad),
        cmocka_unit_test(test_log_has_no_secret),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
