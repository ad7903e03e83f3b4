/* Unit tests for the per-replica fault counters and the failure-rate
 * warning (fetchers/faults.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "faults_i.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T0 1000000 /* a monotonic clock reading */
#define REP "https://mirror.example.org/data/"

static void test_classify(void **state)
{
    (void)state;
    assert_int_equal(bfs_fault_of(0), -1);
    assert_int_equal(bfs_fault_of(-ENOENT), -1);
    assert_int_equal(bfs_fault_of(-ESTALE), -1);
    assert_int_equal(bfs_fault_of(-EIO), BFS_FAULT_HTTP_5XX);
    assert_int_equal(bfs_fault_of(-EACCES), BFS_FAULT_HTTP_4XX);
    assert_int_equal(bfs_fault_of(-ERANGE), BFS_FAULT_HTTP_4XX);
    assert_int_equal(bfs_fault_of(-ECONNRESET), BFS_FAULT_RESET);
    assert_int_equal(bfs_fault_of(-ETIMEDOUT), BFS_FAULT_TIMEOUT);
    assert_int_equal(bfs_fault_of(-EPROTO), BFS_FAULT_SHORT_BODY);
    assert_int_equal(bfs_fault_of(-ECONNREFUSED), BFS_FAULT_REFUSED);
    assert_int_equal(bfs_fault_of(-EHOSTDOWN), BFS_FAULT_REFUSED);
    assert_int_equal(bfs_fault_of(-EHOSTUNREACH), BFS_FAULT_REFUSED);
    assert_int_equal(bfs_fault_of(-EINVAL), BFS_FAULT_OTHER);
    assert_string_equal(bfs_fault_name(BFS_FAULT_SHORT_BODY), "short_body");
    assert_string_equal(bfs_fault_name(BFS_FAULT_CHECKSUM), "checksum");
}

static void test_counts(void **state)
{
    (void)state;
    bfs_faults *t = bfs_faults_new(0); /* no warnings */
    assert_non_null(t);
    int errs[] = {-EIO, 0, -ECONNRESET, -ETIMEDOUT, 0, -EPROTO, -ENOENT, -ECONNREFUSED, -EACCES, 0};
    for (size_t i = 0; i < sizeof errs / sizeof *errs; i++)
        assert_false(bfs_faults_request(t, REP, errs[i], i % 2 == 1, T0 + (int64_t)i));
    bfs_faults_request(t, "https://other.example.org/", 0, false, T0);
    assert_false(bfs_faults_add(t, REP, BFS_FAULT_CHECKSUM, T0 + 20));
    bfs_replica_faults rf[4];
    assert_int_equal(bfs_faults_list(t, rf, 4, T0 + 30), 2);
    assert_string_equal(rf[0].name, REP);
    assert_int_equal(rf[0].requests, 10);
    assert_int_equal(rf[0].retries, 5);
    assert_int_equal(rf[0].not_found, 1);
    assert_int_equal(rf[0].faults[BFS_FAULT_HTTP_5XX], 1);
    assert_int_equal(rf[0].faults[BFS_FAULT_HTTP_4XX], 1);
    assert_int_equal(rf[0].faults[BFS_FAULT_RESET], 1);
    assert_int_equal(rf[0].faults[BFS_FAULT_TIMEOUT], 1);
    assert_int_equal(rf[0].faults[BFS_FAULT_SHORT_BODY], 1);
    assert_int_equal(rf[0].faults[BFS_FAULT_REFUSED], 1);
    assert_int_equal(rf[0].faults[BFS_FAULT_CHECKSUM], 1);
    assert_int_equal(rf[0].faults[BFS_FAULT_OTHER], 0);
    assert_true(rf[0].recent_failure_rate > 0.69 && rf[0].recent_failure_rate < 0.71); /* 7 of 10 */
    assert_int_equal(rf[1].requests, 1);
    assert_true(rf[1].recent_failure_rate == 0.0);
    /* the recent rate fades: halved per window, gone after many */
    assert_int_equal(bfs_faults_list(t, rf, 1, T0 + 100 * BFS_FAULTS_WINDOW_MS), 2);
    assert_true(rf[0].recent_failure_rate == 0.0);
    assert_int_equal(rf[0].requests, 10); /* totals stay */
    bfs_faults_free(t);
}

/* Read the log file at path whole into buf. */
static size_t slurp(const char *path, char *buf, size_t sz)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sz - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    return n;
}

static void test_warning_threshold(void **state)
{
    (void)state;
    char path[] = "/tmp/bfs-test-faults-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(bfs_log_to_file(path), 0);
    bfs_faults *t = bfs_faults_new(0.05);
    assert_non_null(t);
    int64_t now = T0;
    /* a healthy server with a rare fault: 4 of 100 stays below 5 % */
    for (int i = 0; i < 100; i++)
        assert_false(bfs_faults_request(t, REP, i % 25 == 24 ? -EIO : 0, false, now++));
    /* too few requests to judge: a new replica failing at once */
    for (int i = 0; i < BFS_FAULTS_MIN_REQUESTS - 1; i++)
        assert_false(bfs_faults_request(t, "http://flaky/", -ECONNRESET, false, now++));
    /* the next one is enough: one warning ... */
    assert_true(bfs_faults_request(t, "http://flaky/", -ECONNRESET, false, now++));
    /* ... and no other within the rate limit, however many faults */
    for (int i = 0; i < 50; i++)
        assert_false(bfs_faults_request(t, "http://flaky/", -ETIMEDOUT, true, now++));
    /* after it, a replica still failing is reported again */
    now += BFS_FAULTS_WARN_EVERY_MS;
    assert_true(bfs_faults_request(t, "http://flaky/", -EIO, true, now++));
    /* the healthy one, its window halved since, crosses 5 % with a few more faults */
    bool warned = false;
    for (int i = 0; i < 20 && !warned; i++)
        warned = bfs_faults_request(t, REP, -EIO, false, now++);
    assert_true(warned);
    bfs_faults_free(t);

    char log[8192];
    slurp(path, log, sizeof log);
    unlink(path);
    const char *w = strstr(log, "replica http://flaky/ is degrading: 20 of its last 20 requests failed");
    assert_non_null(w);
    assert_non_null(strstr(w, "20 reset"));
    assert_non_null(strstr(log, "replica " REP " is degrading"));
    assert_non_null(strstr(log, "fetch.warn_failure_rate 0.05"));
    int lines = 0;
    for (const char *p = log; (p = strstr(p, "is degrading")); p++)
        lines++;
    assert_int_equal(lines, 3);
    assert_non_null(strstr(log, " warning fetch: "));
}

static void test_off_and_full(void **state)
{
    (void)state;
    bfs_faults *t = bfs_faults_new(0);
    for (int i = 0; i < 200; i++)
        assert_false(bfs_faults_request(t, REP, -EIO, false, T0 + i));
    char name[64];
    for (int i = 0; i < BFS_FAULTS_MAX + 10; i++) {
        snprintf(name, sizeof name, "http://host%d/", i);
        bfs_faults_request(t, name, 0, false, T0);
    }
    bfs_replica_faults *rf = calloc(BFS_FAULTS_MAX + 1, sizeof *rf);
    assert_int_equal(bfs_faults_list(t, rf, BFS_FAULTS_MAX + 1, T0), BFS_FAULTS_MAX + 1);
    assert_string_equal(rf[BFS_FAULTS_MAX].name, "(other replicas)");
    assert_int_equal(rf[BFS_FAULTS_MAX].requests, 11);
    assert_int_equal(bfs_faults_list(t, rf, 2, T0), BFS_FAULTS_MAX + 1); /* more than max */
    free(rf);
    bfs_faults_free(t);
    /* NULL (no memory at start) counts nothing and does not crash */
    assert_false(bfs_faults_request(NULL, REP, -EIO, false, T0));
    assert_int_equal(bfs_faults_list(NULL, NULL, 0, T0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_warning_threshold),
        cmocka_unit_test(test_off_and_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
