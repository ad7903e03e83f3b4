/*
 * log.h - the one logger of butlerfs.
 *
 * Messages carry a syslog level and a subsystem tag ("registry", "fs", ...).
 * The level is checked before anything is formatted, so a disabled debug
 * line on the read path costs one comparison.  Output goes to stderr (with a
 * timestamp) until bfs_log_to_syslog() is called, typically after the daemon
 * detaches from its terminal.
 *
 * Secrets must never be passed to the logger: callers log names and paths,
 * never credentials or tokens.
 *
 * Thread-safety: every function may be called from any thread.  Each message
 * is written with a single write(2) so lines from threads never interleave.
 */
#ifndef BFS_LOG_H
#define BFS_LOG_H

#include <syslog.h>

/* Messages above this level (numerically greater) are dropped. Default LOG_NOTICE. */
void bfs_log_set_level(int level);
int bfs_log_get_level(void);

/* Parse "debug", "info", "notice", "warning", "err"/"error"; -1 if unknown. */
int bfs_log_level_from_name(const char *name);

/* Send further messages to syslog(3) with this ident instead of stderr. */
void bfs_log_to_syslog(const char *ident);

/* Send further messages to a file (append); 0 or -errno. */
int bfs_log_to_file(const char *path);

/* Count of messages logged at LOG_ERR or worse since start (for tests and status). */
unsigned long bfs_log_error_count(void);

void bfs_log_write(int level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define BFS_LOG(level, tag, ...)                                         \
    do {                                                                 \
        if ((level) <= bfs_log_get_level())                              \
            bfs_log_write((level), (tag), __VA_ARGS__);                  \
    } while (0)

#define bfs_err(tag, ...)   BFS_LOG(LOG_ERR, tag, __VA_ARGS__)
#define bfs_warn(tag, ...)  BFS_LOG(LOG_WARNING, tag, __VA_ARGS__)
#define bfs_note(tag, ...)  BFS_LOG(LOG_NOTICE, tag, __VA_ARGS__)
#define bfs_info(tag, ...)  BFS_LOG(LOG_INFO, tag, __VA_ARGS__)
#define bfs_debug(tag, ...) BFS_LOG(LOG_DEBUG, tag, __VA_ARGS__)

#endif
