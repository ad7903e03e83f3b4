/* Unit tests for bfs_http_replay (fetchers/http_i.h): http.c's libcurl
 * callbacks fed a reply from memory, as the fuzz harness fuzz_http_head
 * feeds them.  These pin the driver itself, so the fuzzer tests what a real
 * request would do: the accepted reply shapes, and the refusals that abort a
 * request before a body byte lands in the caller's buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "http_i.h"

#include <errno.h>
#include <string.h>

#define REPLAY(reply, off, last, pin, chunk, buf, out) \
    bfs_http_replay(reply, sizeof reply - 1, off, last, pin, chunk, buf, out)

static void test_206_exact_range(void **state)
{
    (void)state;
    char buf[16];
    bfs_http_replay_result r;
    static const char reply[] = "HTTP/1.1 100 Continue\r\n\r\n"
                                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 4-19/100\r\n"
                                "Content-Length: 16\r\nETag: \"abc\"\r\n\r\n0123456789abcdef";
    assert_int_equal(REPLAY(reply, 4, 19, NULL, 5, buf, &r), 0);
    assert_int_equal(r.status, 206);
    assert_true(r.body_ok);
    assert_int_equal(r.expect, 16);
    assert_int_equal(r.got, 16);
    assert_memory_equal(buf, "0123456789abcdef", 16);
}

static void test_206_wrong_range_refused(void **state)
{
    (void)state;
    char buf[16] = {0};
    bfs_http_replay_result r;
    static const char reply[] = "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-15/100\r\n"
                                "\r\n0123456789abcdef";
    assert_int_equal(REPLAY(reply, 4, 19, NULL, 64, buf, &r), -EPROTO);
    assert_false(r.body_ok);
    assert_int_equal(r.got, 0);
}

static void test_200_only_at_offset_0(void **state)
{
    (void)state;
    char buf[16];
    bfs_http_replay_result r;
    static const char reply[] = "HTTP/1.1 200 OK\nContent-Length: 10\n\n0123456789";
    assert_int_equal(REPLAY(reply, 0, 15, NULL, 3, buf, &r), 0);
    assert_int_equal(r.got, 10);
    assert_int_equal(REPLAY(reply, 8, 23, NULL, 3, buf, &r), -EPROTO);
    assert_int_equal(r.got, 0);
}

static void test_body_past_range_refused(void **state)
{
    (void)state;
    char buf[4];
    bfs_http_replay_result r;
    static const char reply[] = "HTTP/1.1 200 OK\r\n\r\n0123456789";
    assert_int_equal(REPLAY(reply, 0, 3, NULL, 64, buf, &r), -EPROTO);
    assert_true(r.got <= sizeof buf);
}

static void test_error_page_not_copied(void **state)
{
    (void)state;
    char buf[16] = {0};
    bfs_http_replay_result r;
    static const char reply[] = "HTTP/1.1 503 Slow Down\r\nContent-Length: 5\r\n\r\nbusy!";
    assert_int_equal(REPLAY(reply, 0, 15, NULL, 64, buf, &r), 0);
    assert_int_equal(r.status, 503);
    assert_false(r.body_ok);
    assert_int_equal(r.got, 0);
}

static void test_pin_mismatch_stale(void **state)
{
    (void)state;
    char buf[16];
    bfs_http_replay_result r;
    bfs_object pin = {.size = 100, .etag = "\"old\""};
    static const char reply[] = "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-15/100\r\n"
                                "ETag: \"new\"\r\n\r\n0123456789abcdef";
    assert_int_equal(REPLAY(reply, 0, 15, &pin, 64, buf, &r), -ESTALE);
    assert_int_equal(r.got, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_206_exact_range),
        cmocka_unit_test(test_206_wrong_range_refused),
        cmocka_unit_test(test_200_only_at_offset_0),
        cmocka_unit_test(test_body_past_range_refused),
        cmocka_unit_test(test_error_page_not_copied),
        cmocka_unit_test(test_pin_mismatch_stale),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
