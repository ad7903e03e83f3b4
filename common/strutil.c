/* strutil.c - see strutil.h. */
#include "strutil.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

char *bfs_asprintf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    return n < 0 ? NULL : s;
}

void bfs_set_errmsgv(char **errmsg, const char *fmt, va_list ap)
{
    if (!errmsg)
        return;
    free(*errmsg);
    *errmsg = NULL;
    if (vasprintf(errmsg, fmt, ap) < 0)
        *errmsg = NULL;
}

void bfs_set_errmsg(char **errmsg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bfs_set_errmsgv(errmsg, fmt, ap);
    va_end(ap);
}

static bool needs_escape(unsigned char c) { return c == '/' || c == '%' || c < 0x20 || c == 0x7f; }

int bfs_name_escape(const char *in, char *out, size_t outsz)
{
    static const char hex[] = "0123456789ABCDEF";
    const char *special = NULL;
    size_t n = 0;

    if (!strcmp(in, ""))
        special = "%00";
    else if (!strcmp(in, "."))
        special = "%2E";
    else if (!strcmp(in, ".."))
        special = "%2E%2E";
    if (special) {
        if (strlen(special) + 1 > outsz)
            goto toolong;
        strcpy(out, special);
        return (int)strlen(special);
    }
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        if (needs_escape(*p)) {
            if (n + 4 > outsz)
                goto toolong;
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        } else {
            if (n + 2 > outsz)
                goto toolong;
            out[n++] = (char)*p;
        }
    }
    out[n] = '\0';
    return (int)n;
toolong:
    if (outsz)
        out[0] = '\0';
    return -ENAMETOOLONG;
}

int bfs_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int bfs_name_unescape(const char *in, char *out, size_t outsz)
{
    size_t n = 0;
    if (!strcmp(in, "%00")) {
        if (outsz < 1)
            return -ENAMETOOLONG;
        out[0] = '\0';
        return 0;
    }
    for (const char *p = in; *p; p++) {
        char c = *p;
        if (c == '%') {
            int hi = bfs_hexval(p[1]), lo = hi < 0 ? -1 : bfs_hexval(p[2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -EINVAL;
            c = (char)(hi * 16 + lo);
            p += 2;
        }
        if (n + 2 > outsz)
            return -ENAMETOOLONG;
        out[n++] = c;
    }
    out[n] = '\0';
    return (int)n;
}

bool bfs_parse_i64(const char *s, int64_t *out)
{
    char *end;
    if (!*s || (*s != '-' && *s != '+' && (*s < '0' || *s > '9')))
        return false;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

bool bfs_endswith(const char *s, const char *suffix)
{
    size_t n = s ? strlen(s) : 0, m = strlen(suffix);
    return s && n >= m && !strcmp(s + n - m, suffix);
}

bool bfs_startswith(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* TAI-UTC (seconds) from each UTC Unix time on; IERS Bulletin C. Before
 * 1972 the offset was fractional; 10 s is used, which is what matters for
 * display of the 1970 "unbounded" calibration epoch. */
static const struct {
    int64_t since;
    int offset;
} leap_table[] = {
    {63072000, 10},   {78796800, 11},   {94694400, 12},   {126230400, 13},  {157766400, 14},
    {189302400, 15},  {220924800, 16},  {252460800, 17},  {283996800, 18},  {315532800, 19},
    {362793600, 20},  {394329600, 21},  {425865600, 22},  {489024000, 23},  {567993600, 24},
    {631152000, 25},  {662688000, 26},  {709948800, 27},  {741484800, 28},  {773020800, 29},
    {820454400, 30},  {867715200, 31},  {915148800, 32},  {1136073600, 33}, {1230768000, 34},
    {1341100800, 35}, {1435708800, 36}, {1483228800, 37},
};

static int leap_offset_utc(int64_t unix_sec)
{
    int off = 10;
    for (size_t i = 0; i < sizeof leap_table / sizeof *leap_table; i++)
        if (unix_sec >= leap_table[i].since)
            off = leap_table[i].offset;
    return off;
}

int64_t bfs_tai_ns_to_unix(int64_t tai_ns)
{
    int64_t tai_sec = tai_ns / 1000000000;
    if (tai_ns < 0 && tai_ns % 1000000000)
        tai_sec--;
    /* The offset depends on UTC; evaluating it at TAI-offset is exact except
     * inside the leap second itself. */
    return tai_sec - leap_offset_utc(tai_sec - leap_offset_utc(tai_sec));
}

int64_t bfs_unix_to_tai_ns(int64_t unix_sec, long nsec)
{
    return (unix_sec + leap_offset_utc(unix_sec)) * 1000000000LL + nsec;
}

void bfs_tai_ns_format(int64_t tai_ns, char *buf, size_t bufsz)
{
    time_t t = (time_t)bfs_tai_ns_to_unix(tai_ns);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0) {
        snprintf(buf, bufsz, "%s", tai_ns > 0 ? "max" : "min");
        return;
    }
    strftime(buf, bufsz, "%Y%m%dT%H%M%SZ", &tm);
}

void bfs_format_bytes(double b, char *buf, size_t n)
{
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int u = 0;
    while ((b >= 1024 || b <= -1024) && u < 5) {
        b /= 1024;
        u++;
    }
    snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", b, units[u]);
}

bool bfs_is_one_component(const char *s)
{
    if (!*s || !strcmp(s, ".") || !strcmp(s, ".."))
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p == '/' || *p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

size_t bfs_utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* the allowed range of the second byte */
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

bool bfs_is_utf8(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0, len; i < n; i += len)
        if ((len = bfs_utf8_len((const unsigned char *)s + i, n - i)) == 0)
            return false;
    return true;
}

bool bfs_is_relative_path(const char *s)
{
    if (!s || !*s || *s == '/')
        return false;
    for (const char *p = s;;) {
        size_t l = strcspn(p, "/");
        if (l == 0 || (l == 1 && p[0] == '.') || (l == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        for (size_t i = 0; i < l; i++)
            if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
                return false;
        p += l;
        if (!*p)
            return true;
        p++; /* the '/': a segment must follow */
    }
}

int bfs_grow(void **items, size_t *cap, size_t n, size_t elem)
{
    if (n <= *cap)
        return 0;
    size_t c = *cap ? *cap : 16;
    while (c < n)
        c *= 2;
    void *v = realloc(*items, c * elem);
    if (!v)
        return -ENOMEM;
    *items = v;
    *cap = c;
    return 0;
}

int bfs_uri_decode(const char *in, size_t n, char *out, size_t *outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        char c = in[i];
        if (c == '%' && i + 2 < n && (hi = bfs_hexval(in[i + 1])) >= 0 && (lo = bfs_hexval(in[i + 2])) >= 0) {
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (c == '\0') {
            out[0] = '\0';
            *outlen = 0;
            return -EINVAL;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    *outlen = o;
    return 0;
}
