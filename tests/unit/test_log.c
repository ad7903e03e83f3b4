/* Unit tests for the logger (common/log.c): data in a message can neither
 * forge a line nor reach a terminal as a control sequence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "log.h"
#include "strutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_escape_exact(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"plain text/x.fits", "plain text/x.fits"},
        {"a\nb", "a\\x0ab"},
        {"\r\t\x1b[31m\x7f", "\\x0d\\x09\\x1b[31m\\x7f"},
        {"back\\slash", "back\\\\slash"},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\xad", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\xad"}, /* kept */
        {"\xff\xfe", "\\xff\\xfe"},                    /* never UTF-8 */
        {"\xc3(", "\\xc3("},                            /* a cut sequence */
        {"\xc0\xaf", "\\xc0\\xaf"},                      /* an overlong '/' */
        {"\xed\xa0\x80", "\\xed\\xa0\\x80"},             /* a surrogate */
        {"\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"},    /* above U+10FFFF */
        {"\xc2\x9b" "2J", "\\xc2\\x9b2J"},               /* C1 CSI */
        {"\xe2\x80\xae" "txt", "\\xe2\\x80\\xaetxt"},     /* right-to-left override */
        {"\xe2\x80\xa8", "\\xe2\\x80\\xa8"},             /* line separator */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char out[128];
        size_t n = bfs_log_escape(out, sizeof out, cases[i].in, strlen(cases[i].in));
        assert_string_equal(out, cases[i].out);
        assert_int_equal(n, strlen(out));
    }
    /* a NUL inside the range is data too */
    char out[32];
    bfs_log_escape(out, sizeof out, "a\0b", 3);
    assert_string_equal(out, "a\\x00b");
}

static void test_escape_truncates_whole(void **state)
{
    (void)state;
    char out[8];
    /* "ab" + "\x0a" needs 2 + 4 + NUL = 7 bytes; the next escape would not fit */
    assert_int_equal(bfs_log_escape(out, sizeof out, "ab\n\n", 4), 6);
    assert_string_equal(out, "ab\\x0a");
    /* a character is never cut */
    assert_int_equal(bfs_log_escape(out, 4, "a\xe2\x82\xac", 4), 1);
    assert_string_equal(out, "a");
    assert_int_equal(bfs_log_escape(out, 1, "abc", 3), 0);
    assert_string_equal(out, "");
}

/* A registry value that carries a newline, a fake timestamp and an ESC
 * sequence writes one line, with no raw control byte, to the log file. */
static void test_log_line_cannot_be_forged(void **state)
{
    (void)state;
    char path[] = "/tmp/bfs-test-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(bfs_log_to_file(path), 0);
    const char *row = "raw/x.fits\n2026-01-01T00:00:00.000Z butlerfs[1] error fetch: forged\x1b]0;owned\x07\x1b[2J"
                      "\xff\xc2\x9b";
    bfs_log_write(LOG_WARNING, "test", "cannot read %s", row);
    char buf[4096];
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    unlink(path);
    buf[n] = '\0';
    assert_true(n > 0);
    assert_ptr_equal(strchr(buf, '\n'), buf + n - 1); /* one line */
    for (size_t i = 0; i + 1 < n; i++) {
        unsigned char c = (unsigned char)buf[i];
        assert_true(c >= 0x20 && c != 0x7f && c != 0xff);
    }
    assert_null(strstr(buf, "\xc2\x9b"));
    assert_non_null(strstr(buf, "x.fits\\x0a2026-01-01T00:00:00.000Z butlerfs[1] error fetch: forged\\x1b]0;owned"));
}

/* bfs_is_utf8: what JSON text (intents, events) can hold as it is. */
static void test_is_utf8(void **state)
{
    (void)state;
    assert_true(bfs_is_utf8(""));
    assert_true(bfs_is_utf8("raw_LSSTCam_94.fits"));
    assert_true(bfs_is_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\xad"));
    assert_false(bfs_is_utf8("bad\xffname"));
    assert_false(bfs_is_utf8("\xc3("));           /* a cut sequence */
    assert_false(bfs_is_utf8("x\xc3"));           /* cut at the end */
    assert_false(bfs_is_utf8("\xc0\xaf"));        /* an overlong '/' */
    assert_false(bfs_is_utf8("\xed\xa0\x80"));    /* a surrogate */
    assert_false(bfs_is_utf8("\xf4\x90\x80\x80")); /* above U+10FFFF */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_exact),
        cmocka_unit_test(test_escape_truncates_whole),
        cmocka_unit_test(test_log_line_cannot_be_forged),
        cmocka_unit_test(test_is_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
