/*
 * log.c - see log.h.  State is process-wide by nature (one stderr, one
 * syslog connection); it is kept in atomics so no lock is needed on the
 * fast path that checks the level.
 */
#include "log.h"
#include "strutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = LOG_NOTICE;
static atomic_int log_fd = 2;
static atomic_bool log_syslog = false;
static atomic_ulong log_errors = 0;

static const char *const level_names[] = {
    "emerg", "alert", "crit", "error", "warning", "notice", "info", "debug",
};

void bfs_log_set_level(int level)
{
    if (level < LOG_EMERG)
        level = LOG_EMERG;
    if (level > LOG_DEBUG)
        level = LOG_DEBUG;
    atomic_store(&log_level, level);
}

int bfs_log_get_level(void) { return atomic_load_explicit(&log_level, memory_order_relaxed); }

int bfs_log_level_from_name(const char *name)
{
    if (!strcmp(name, "err"))
        return LOG_ERR;
    for (int i = 0; i < (int)(sizeof level_names / sizeof *level_names); i++)
        if (!strcmp(name, level_names[i]))
            return i;
    return -1;
}

void bfs_log_to_syslog(const char *ident)
{
    openlog(ident, LOG_PID, LOG_DAEMON);
    atomic_store(&log_syslog, true);
}

/* The log file's absolute path, for bfs_log_reopen (set before any signal
 * can ask for it: bfs_log_to_file is called once, at start). */
static char log_path[PATH_MAX];

/* Open log_path and put it behind the log's descriptor number, so that a
 * thread writing a line at that moment writes it whole to the old file or
 * to the new one, never to a closed or reused descriptor.  Only
 * async-signal-safe calls. */
static int open_log_path(void)
{
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int cur = atomic_load(&log_fd);
    if (cur <= 2) {
        atomic_store(&log_fd, fd); /* the first file: nothing to replace */
        return 0;
    }
    int ret = dup3(fd, cur, O_CLOEXEC) < 0 ? -errno : 0;
    close(fd);
    return ret;
}

int bfs_log_to_file(const char *path)
{
    int n;
    if (path[0] == '/') {
        n = snprintf(log_path, sizeof log_path, "%s", path);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd))
            return -errno;
        n = snprintf(log_path, sizeof log_path, "%s/%s", cwd, path); /* a daemon leaves its cwd */
    }
    if (n < 0 || (size_t)n >= sizeof log_path) {
        log_path[0] = '\0';
        return -ENAMETOOLONG;
    }
    int ret = open_log_path();
    if (ret < 0) {
        log_path[0] = '\0';
        return ret;
    }
    atomic_store(&log_syslog, false);
    return 0;
}

int bfs_log_reopen(void)
{
    if (!log_path[0])
        return 0;
    int saved = errno;
    int ret = open_log_path();
    errno = saved;
    return ret;
}

unsigned long bfs_log_error_count(void) { return atomic_load(&log_errors); }

/* Valid UTF-8 that a terminal or a viewer acts on: the C1 controls
 * (U+0080..U+009F, CSI among them), the line and paragraph separators
 * (U+2028, U+2029) and the bidirectional embeddings, overrides and
 * isolates (U+202A..U+202E, U+2066..U+2069), which reorder what is shown. */
static bool utf8_active(const unsigned char *s, size_t len)
{
    if (len == 2)
        return s[0] == 0xc2 && s[1] <= 0x9f;
    if (len == 3 && s[0] == 0xe2 && s[1] == 0x80)
        return s[2] >= 0xa8 && s[2] <= 0xae;
    if (len == 3 && s[0] == 0xe2 && s[1] == 0x81)
        return s[2] >= 0xa6 && s[2] <= 0xa9;
    return false;
}

size_t bfs_log_escape(char *dst, size_t dstsz, const char *src, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)src;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t len = bfs_utf8_len(s + i, n - i);
        bool escape = len == 0 || (len == 1 && (s[i] < 0x20 || s[i] == 0x7f)) || utf8_active(s + i, len);
        if (len == 0)
            len = 1;
        size_t need = escape ? 4 * len : s[i] == '\\' ? 2 : len;
        if (o + need >= dstsz)
            break;
        if (escape) {
            for (size_t k = 0; k < len; k++) {
                dst[o++] = '\\';
                dst[o++] = 'x';
                dst[o++] = hex[s[i + k] >> 4];
                dst[o++] = hex[s[i + k] & 15];
            }
        } else if (s[i] == '\\') {
            dst[o++] = '\\';
            dst[o++] = '\\';
        } else {
            memcpy(dst + o, s + i, len);
            o += len;
        }
        i += len;
    }
    dst[o] = '\0';
    return o;
}

void bfs_log_write(int level, const char *tag, const char *fmt, ...)
{
    char raw[2048], msg[2048];
    int saved = errno;
    va_list ap;

    if (level <= LOG_ERR)
        atomic_fetch_add(&log_errors, 1);
    va_start(ap, fmt);
    int len = vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    /* the whole message, not only its arguments: one place, nothing missed */
    bfs_log_escape(msg, sizeof msg, raw, len < 0 ? 0 : (size_t)len < sizeof raw ? (size_t)len : sizeof raw - 1);

    if (atomic_load(&log_syslog)) {
        syslog(level, "%s: %s", tag, msg);
    } else {
        char line[2200];
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ butlerfs[%d] %s %s: %s\n",
                         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                         tm.tm_sec, ts.tv_nsec / 1000000, (int)getpid(),
                         level_names[level & 7], tag, msg);
        if (n > (int)sizeof line - 1) {
            n = (int)sizeof line - 1;
            line[n - 1] = '\n';
        }
        ssize_t w = write(atomic_load(&log_fd), line, (size_t)n);
        (void)w;
    }
    errno = saved;
}
