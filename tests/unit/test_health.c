/* Unit tests for the health table of replicas and hosts and for the backoff
 * of reads and uploads (fetchers/health.c).  The clock is the test's: every
 * call is given its now_ms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "health.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define T0 1000000 /* a monotonic clock reading */
#define REP "https://mirror.example.org/data/"

/* A replica: failing, down for its pause, answering again. */
static void test_mark_down_and_up(void **state)
{
    (void)state;
    bfs_health *h = bfs_health_new(8);
    assert_non_null(h);
    assert_false(bfs_health_down(h, BFS_HEALTH_REPLICA, REP, T0));
    assert_int_equal(bfs_health_mark(h, BFS_HEALTH_REPLICA, REP, -EIO, 500, T0), BFS_HEALTH_FAILING);
    assert_true(bfs_health_down(h, BFS_HEALTH_REPLICA, REP, T0));
    assert_true(bfs_health_down(h, BFS_HEALTH_REPLICA, REP, T0 + 499));
    /* the replica's host is not judged by a server's answer */
    assert_false(bfs_health_down(h, BFS_HEALTH_HOST, REP, T0));

    bfs_replica_state st[4];
    assert_int_equal(bfs_health_list(h, st, 4, T0 + 100), 1);
    assert_string_equal(st[0].name, REP);
    assert_false(st[0].host);
    assert_int_equal(st[0].retry_in_ms, 400);
    assert_string_equal(st[0].why, "server errors");

    /* failing again while down: no second warning */
    assert_int_equal(bfs_health_mark(h, BFS_HEALTH_REPLICA, REP, -ETIMEDOUT, 500, T0 + 200), BFS_HEALTH_SAME);
    assert_int_equal(bfs_health_list(h, st, 4, T0 + 200), 1);
    assert_int_equal(st[0].retry_in_ms, 500);
    assert_string_equal(st[0].why, "timed out or too slow");

    assert_int_equal(bfs_health_mark(h, BFS_HEALTH_REPLICA, REP, 0, 500, T0 + 300), BFS_HEALTH_RECOVERED);
    assert_false(bfs_health_down(h, BFS_HEALTH_REPLICA, REP, T0 + 300));
    assert_int_equal(bfs_health_list(h, st, 4, T0 + 300), 0);
    /* answering and answering again: nothing to say */
    assert_int_equal(bfs_health_mark(h, BFS_HEALTH_REPLICA, REP, 0, 500, T0 + 400), BFS_HEALTH_SAME);
    bfs_health_free(h);
}

/* A pause ends on its own: the key is tried again (on trial), not listed;
 * its next mark decides, with one warning per outage. */
static void test_pause_expiry(void **state)
{
    (void)state;
    bfs_health *h = bfs_health_new(8);
    assert_int_equal(bfs_health_mark(h, BFS_HEALTH_REPLICA, REP, -EIO, 300, T0), BFS_HEALTH_FAILING);
    assert_true(bfs_health_down(h, BFS_HEALTH_REPLICA, REP, T0 + 299));
    assert_false(bfs_health_down(h, BFS_HEALTH_REPLICA, REP, T0 + 300));
    bfs_replica_state st[1];
    assert_int_equal(bfs_health_list(h, st, 1, T0 + 300), 0);
    /* on trial and failing again: down again, still the same outage */
    assert_int_equal(bfs_health_mark(h, BFS_HEALTH_REPLICA, REP, -EIO, 300, T0 + 400), BFS_HEALTH_SAME);
    assert_true(bfs_health_down(h, BFS_HEALTH_REPLICA, REP, T0 + 699));
    /* on trial and answering: recovered */
    assert_int_equal(bfs_health_mark(h, BFS_HEALTH_REPLICA, REP, 0, 300, T0 + 800), BFS_HEALTH_RECOVERED);
    assert_int_equal(bfs_health_mark(h, BFS_HEALTH_REPLICA, REP, -EIO, 300, T0 + 900), BFS_HEALTH_FAILING);
    bfs_health_free(h);
}

/* Keys: no user:password@ ever (in the table, its names or lookups); a
 * host is scheme://host[:port]; s3:// names no host. */
static void test_keys(void **state)
{
    (void)state;
    char k[BFS_HEALTH_KEY_MAX];
    assert_true(bfs_health_key(BFS_HEALTH_REPLICA, "https://user:p@ss@dav.example.org:8443/a/b", k, sizeof k));
    assert_string_equal(k, "https://dav.example.org:8443/a/b");
    assert_true(bfs_health_key(BFS_HEALTH_HOST, "https://user:p@ss@dav.example.org:8443/a/b", k, sizeof k));
    assert_string_equal(k, "https://dav.example.org:8443");
    assert_true(bfs_health_key(BFS_HEALTH_HOST, "http://127.0.0.1:9", k, sizeof k));
    assert_string_equal(k, "http://127.0.0.1:9");
    assert_true(bfs_health_key(BFS_HEALTH_REPLICA, "http://h/x@y", k, sizeof k)); /* '@' past the authority stays */
    assert_string_equal(k, "http://h/x@y");
    assert_false(bfs_health_key(BFS_HEALTH_HOST, "s3://bucket/prefix/obj", k, sizeof k));
    assert_string_equal(k, "s3://");
    assert_true(bfs_health_key(BFS_HEALTH_REPLICA, "s3://bucket/prefix/", k, sizeof k));
    assert_string_equal(k, "s3://bucket/prefix/");

    bfs_health *h = bfs_health_new(8);
    /* a host: any URL on it; credentials do not make another entry */
    assert_int_equal(bfs_health_mark(h, BFS_HEALTH_HOST, "https://u:secret@dav.example.org/a/f.fits", -ECONNREFUSED,
                                     1000, T0),
                     BFS_HEALTH_FAILING);
    assert_true(bfs_health_down(h, BFS_HEALTH_HOST, "https://dav.example.org/b/g.fits", T0));
    assert_true(bfs_health_down(h, BFS_HEALTH_HOST, "https://other:pw@dav.example.org/", T0));
    assert_false(bfs_health_down(h, BFS_HEALTH_HOST, "https://dav.example.org:444/a", T0));
    /* host and replica entries are apart, even for one string */
    assert_false(bfs_health_down(h, BFS_HEALTH_REPLICA, "https://dav.example.org", T0));
    assert_int_equal(bfs_health_mark(h, BFS_HEALTH_REPLICA, "https://u:secret@dav.example.org/r/", -EIO, 1000, T0),
                     BFS_HEALTH_FAILING);
    assert_true(bfs_health_down(h, BFS_HEALTH_REPLICA, "https://dav.example.org/r/", T0));

    bfs_replica_state st[4];
    assert_int_equal(bfs_health_list(h, st, 4, T0), 2);
    for (int i = 0; i < 2; i++)
        assert_null(strstr(st[i].name, "secret"));
    assert_true(st[0].host);
    assert_string_equal(st[0].name, "https://dav.example.org");
    assert_string_equal(st[0].why, "cannot connect");
    assert_false(st[1].host);
    assert_string_equal(st[1].name, "https://dav.example.org/r/");
    /* fewer places than entries: the count is still all of them */
    assert_int_equal(bfs_health_list(h, st, 1, T0), 2);
    assert_int_equal(bfs_health_list(h, NULL, 0, T0), 2);

    /* s3:// has no host entry */
    assert_int_equal(bfs_health_mark(h, BFS_HEALTH_HOST, "s3://bucket/x", -ECONNREFUSED, 1000, T0), BFS_HEALTH_SAME);
    assert_false(bfs_health_down(h, BFS_HEALTH_HOST, "s3://bucket/x", T0));
    assert_int_equal(bfs_health_list(h, st, 4, T0), 2);
    bfs_health_free(h);
}

/* A full table: a newly failing key takes the entry of one answering again,
 * else of the one longest out of its pause, else is not recorded. */
static void test_table_full(void **state)
{
    (void)state;
    bfs_health *h = bfs_health_new(2);
    const char *a = "http://a.example.org/", *b = "http://b.example.org/", *c = "http://c.example.org/";
    bfs_health_mark(h, BFS_HEALTH_REPLICA, a, -EIO, 100, T0);
    bfs_health_mark(h, BFS_HEALTH_REPLICA, b, -EIO, 200, T0);
    /* every entry down: c is not recorded, so not skipped */
    assert_int_equal(bfs_health_mark(h, BFS_HEALTH_REPLICA, c, -EIO, 100, T0 + 50), BFS_HEALTH_SAME);
    assert_false(bfs_health_down(h, BFS_HEALTH_REPLICA, c, T0 + 50));
    /* a marked ok is never added */
    assert_int_equal(bfs_health_mark(h, BFS_HEALTH_REPLICA, c, 0, 100, T0 + 50), BFS_HEALTH_SAME);

    /* both pauses over: c takes a's entry (out of its pause the longest) */
    assert_int_equal(bfs_health_mark(h, BFS_HEALTH_REPLICA, c, -EIO, 100, T0 + 300), BFS_HEALTH_FAILING);
    assert_true(bfs_health_down(h, BFS_HEALTH_REPLICA, c, T0 + 300));
    bfs_replica_state st[4];
    assert_int_equal(bfs_health_list(h, st, 4, T0 + 300), 1);
    assert_string_equal(st[0].name, c);
    assert_int_equal(bfs_health_mark(h, BFS_HEALTH_REPLICA, a, 0, 100, T0 + 300), BFS_HEALTH_SAME); /* forgotten */
    assert_int_equal(bfs_health_mark(h, BFS_HEALTH_REPLICA, b, 0, 100, T0 + 300), BFS_HEALTH_RECOVERED); /* kept */

    /* b answers again: the next newcomer takes b's entry even while c is
     * still down */
    assert_int_equal(bfs_health_mark(h, BFS_HEALTH_REPLICA, a, -EIO, 100, T0 + 310), BFS_HEALTH_FAILING);
    assert_true(bfs_health_down(h, BFS_HEALTH_REPLICA, a, T0 + 310));
    assert_true(bfs_health_down(h, BFS_HEALTH_REPLICA, c, T0 + 310));
    assert_int_equal(bfs_health_list(h, st, 4, T0 + 310), 2);
    bfs_health_free(h);
}

static void test_failure_kinds(void **state)
{
    (void)state;
    assert_true(bfs_health_host_failure(-ECONNREFUSED));
    assert_true(bfs_health_host_failure(-EHOSTDOWN));
    assert_true(bfs_health_host_failure(-EHOSTUNREACH));
    assert_false(bfs_health_host_failure(-ETIMEDOUT));
    assert_false(bfs_health_host_failure(-EIO));
    assert_false(bfs_health_host_failure(0));
    assert_string_equal(bfs_health_why(-ECONNREFUSED), "cannot connect");
    assert_string_equal(bfs_health_why(-ECONNRESET), "connections break");
    assert_string_equal(bfs_health_why(-EPROTO), "broken replies");
}

/* The cap of attempt a: min(max, base * 2^a), a counted up to 20. */
static int64_t cap_of(int64_t base, int64_t max, int a)
{
    int64_t cap = base;
    for (int i = 0; i < (a > 20 ? 20 : a) && cap < max; i++)
        cap *= 2;
    return cap < max ? cap : max;
}

/* Full jitter: every wait in [0, cap]; the waits spread over it; the cap
 * doubles per attempt up to max. */
static void test_backoff_full(void **state)
{
    (void)state;
    unsigned seed = 12345;
    for (int a = 0; a < 30; a++) {
        int64_t cap = cap_of(100, 5000, a), lo = INT64_MAX, hi = -1;
        for (int i = 0; i < 2000; i++) {
            int64_t w = bfs_backoff_ms(100, 5000, a, BFS_JITTER_FULL, &seed);
            assert_true(w >= 0 && w <= cap);
            lo = w < lo ? w : lo;
            hi = w > hi ? w : hi;
        }
        assert_true(lo < cap / 8 + 1);
        assert_true(hi > cap - cap / 8 - 1);
    }
    assert_int_equal(cap_of(100, 5000, 3), 800);
    assert_int_equal(cap_of(100, 5000, 6), 5000);
    /* the same seed, the same waits */
    unsigned s1 = 7, s2 = 7;
    for (int i = 0; i < 10; i++)
        assert_int_equal(bfs_backoff_ms(100, 5000, i, BFS_JITTER_FULL, &s1),
                         bfs_backoff_ms(100, 5000, i, BFS_JITTER_FULL, &s2));
}

/* Spread: +-50 % around the cap; the mean grows as the cap does. */
static void test_backoff_spread(void **state)
{
    (void)state;
    unsigned seed = 99;
    double prev_mean = 0;
    for (int a = 0; a < 12; a++) {
        int64_t cap = cap_of(1000, 300000, a), sum = 0;
        for (int i = 0; i < 1000; i++) {
            int64_t w = bfs_backoff_ms(1000, 300000, a, BFS_JITTER_SPREAD, &seed);
            assert_true(w >= cap / 2 && w <= cap / 2 + cap);
            sum += w;
        }
        double mean = (double)sum / 1000;
        assert_true(mean > 0.9 * (double)cap && mean < 1.1 * (double)cap);
        if (a > 0 && cap == 2 * cap_of(1000, 300000, a - 1))
            assert_true(mean > 1.5 * prev_mean);
        prev_mean = mean;
    }
}

/* Odd arguments: no wait without a base or a max; a negative attempt is the
 * first; huge ones neither overflow nor pass max. */
static void test_backoff_edges(void **state)
{
    (void)state;
    unsigned seed = 1;
    assert_int_equal(bfs_backoff_ms(0, 5000, 3, BFS_JITTER_FULL, &seed), 0);
    assert_int_equal(bfs_backoff_ms(100, 0, 3, BFS_JITTER_SPREAD, &seed), 0);
    assert_int_equal(bfs_backoff_ms(100, -5, 3, BFS_JITTER_FULL, &seed), 0);
    for (int i = 0; i < 100; i++) {
        assert_true(bfs_backoff_ms(100, 5000, -4, BFS_JITTER_FULL, &seed) <= 100);
        int64_t w = bfs_backoff_ms(INT64_C(1) << 40, INT64_MAX / 2, 1000, BFS_JITTER_FULL, &seed);
        assert_true(w >= 0 && w <= INT64_C(1) << 60);
        w = bfs_backoff_ms(3600000, 3600000, 25, BFS_JITTER_FULL, &seed);
        assert_true(w >= 0 && w <= 3600000);
    }
}

/* Many threads marking and asking at once (for ThreadSanitizer). */
static void *hammer(void *arg)
{
    bfs_health *h = arg;
    char url[64];
    for (int i = 0; i < 2000; i++) {
        snprintf(url, sizeof url, "http://h%d.example.org/data/", i % 40);
        bfs_health_mark(h, i % 3 ? BFS_HEALTH_REPLICA : BFS_HEALTH_HOST, url, i % 5 ? -ECONNREFUSED : 0, 50,
                        T0 + i);
        bfs_health_down(h, BFS_HEALTH_HOST, url, T0 + i);
        bfs_replica_state st[8];
        assert_true(bfs_health_list(h, st, 8, T0 + i) <= 32);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    bfs_health *h = bfs_health_new(32);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer, h), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    bfs_health_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mark_down_and_up),
        cmocka_unit_test(test_pause_expiry),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_table_full),
        cmocka_unit_test(test_failure_kinds),
        cmocka_unit_test(test_backoff_full),
        cmocka_unit_test(test_backoff_spread),
        cmocka_unit_test(test_backoff_edges),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
