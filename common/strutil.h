/*
 * strutil.h - small string helpers shared by every module.
 *
 * Names that come from data (collection names, dataId values, dataset type
 * names) become single path components through bfs_name_escape(): the result
 * never contains '/', is never "." or "..", never empty, and never contains a
 * control character, so no value can escape the directory it is shown in.
 * Escaping is percent-encoding of exactly these bytes: '/', '%', bytes below
 * 0x20 and 0x7f; "." and ".." are written "%2E" and "%2E%2E"; the empty
 * string is written "%00".  bfs_name_unescape() inverts it exactly.
 */
#ifndef BFS_STRUTIL_H
#define BFS_STRUTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* malloc'd formatted string; NULL only when out of memory. Caller frees. */
char *bfs_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Replace *errmsg (when errmsg is not NULL) with a malloc'd formatted
 * message, freeing the previous one.  For functions that report a
 * user-facing sentence through a char ** out-parameter. */
void bfs_set_errmsg(char **errmsg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same with a va_list (for functions that take a format of their own). */
void bfs_set_errmsgv(char **errmsg, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Value of one hexadecimal digit, or -1. */
int bfs_hexval(int c);

/* Escape one name into out (size outsz). Returns the length written, or
 * -ENAMETOOLONG when it does not fit (out is then an empty string). */
int bfs_name_escape(const char *in, char *out, size_t outsz);

/* Invert bfs_name_escape. Returns the length, -EINVAL for a malformed escape
 * or an escape that decodes to '\0' (other than the whole-name "%00"),
 * -ENAMETOOLONG when it does not fit. */
int bfs_name_unescape(const char *in, char *out, size_t outsz);

/* The length of the valid UTF-8 character at s (n > 0 bytes left), or 0
 * when s does not start one (a stray continuation byte, an overlong form, a
 * surrogate, a code point above U+10FFFF, a cut sequence). */
size_t bfs_utf8_len(const unsigned char *s, size_t n);

/* True when the string s is valid UTF-8: JSON text (an intent record, an
 * event) can hold it as it is. */
bool bfs_is_utf8(const char *s);

/* True when s may become one path component as it is: not empty, "." or
 * "..", no '/', no control character (0x00-0x1f, 0x7f).  Values from data
 * that are stored literally (not escaped) must pass it. */
bool bfs_is_one_component(const char *s);

/* True when s is a relative path of plain names: not empty, no leading or
 * trailing '/', and every '/'-separated segment passes
 * bfs_is_one_component (so no "", "." or ".." segment: it cannot climb
 * out of the directory it is taken relative to). */
bool bfs_is_relative_path(const char *s);

/* Make room for n elements of elem bytes in the array *items of capacity
 * *cap (doubling, from 16): 0, or -ENOMEM with *items untouched. */
int bfs_grow(void **items, size_t *cap, size_t n, size_t elem);

/* Parse a whole decimal int64 (optional sign, no trailing junk). */
bool bfs_parse_i64(const char *s, int64_t *out);

/* True when s begins with prefix. */
bool bfs_startswith(const char *s, const char *prefix);
/* Whether s ends with suffix (false for NULL s). */
bool bfs_endswith(const char *s, const char *suffix);

/* Format TAI nanoseconds since 1970 as UTC "YYYYMMDDTHHMMSSZ" (buf >= 17).
 * The leap-second offset of the date is applied, as astropy does. */
void bfs_tai_ns_format(int64_t tai_ns, char *buf, size_t bufsz);

/* Convert TAI nanoseconds since 1970 to a UTC Unix time in seconds. */
int64_t bfs_tai_ns_to_unix(int64_t tai_ns);

/* Inverse of bfs_tai_ns_to_unix for whole seconds plus nanoseconds. */
int64_t bfs_unix_to_tai_ns(int64_t unix_sec, long nsec);

/* b bytes for people, in powers of 1024: "512 B", "4.0 MiB", "-1.5 GiB". */
void bfs_format_bytes(double b, char *buf, size_t n);

/* Decode the %XX escapes of n bytes of a URI path (or an S3 key in URI
 * form) into out, which needs n + 1 bytes; *outlen gets the length (out is
 * NUL-terminated).  Lenient as lsst.resources is: a '%' not followed by two
 * hex digits stays literal.  -EINVAL (out "") when an escape decodes to
 * '\0', which no path or key may hold. */
int bfs_uri_decode(const char *in, size_t n, char *out, size_t *outlen);

#endif
