/*
 * log.c - see log.h.  State is process-wide by nature (one stderr, one
 * syslog connection); it is kept in atomics so no lock is needed on the
 * fast path that checks the level.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
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

int bfs_log_to_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int old = atomic_exchange(&log_fd, fd);
    if (old > 2)
        close(old);
    atomic_store(&log_syslog, false);
    return 0;
}

unsigned long bfs_log_error_count(void) { return atomic_load(&log_errors); }

void bfs_log_write(int level, const char *tag, const char *fmt, ...)
{
    char msg[2048];
    int saved = errno;
    va_list ap;

    if (level <= LOG_ERR)
        atomic_fetch_add(&log_errors, 1);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

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
