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
 * Strings that come from data (registry values, paths, server replies) may
 * hold anything, so every message is passed through bfs_log_escape before
 * it is written: one message is always one line, and no byte of it can
 * reach a terminal as a control sequence.  Code that shows such strings
 * elsewhere (`butlerfs status`) uses the same function.
 *
 * Thread-safety: every function may be called from any thread.  Each message
 * is written with a single write(2) so lines from threads never interleave.
 */
#ifndef BFS_LOG_H
#define BFS_LOG_H

#include <stddef.h>
#include <syslog.h>

/* Messages above this level (numerically greater) are dropped. Default LOG_NOTICE. */
void bfs_log_set_level(int level);
int bfs_log_get_level(void);

/* Parse "debug", "info", "notice", "warning", "err"/"error"; -1 if unknown. */
int bfs_log_level_from_name(const char *name);

/* Send further messages to syslog(3) with this ident instead of stderr. */
void bfs_log_to_syslog(const char *ident);

/* Send further messages to a file (append; a relative path is taken from
 * the current directory now); 0 or -errno.  Called once, at start. */
int bfs_log_to_file(const char *path);

/* Open the log file named to bfs_log_to_file again, by its name: after a
 * rotation (logrotate renamed it), further lines go to a new file of that
 * name.  Async-signal-safe (a SIGUSR1 handler calls it); a line being
 * written meanwhile goes whole to one file or the other.  0 (also when not
 * logging to a file) or -errno (the old file is kept). */
int bfs_log_reopen(void);

/* Count of messages logged at LOG_ERR or worse since start (for tests and status). */
unsigned long bfs_log_error_count(void);

/* Copy src[0..n) into dst (dstsz bytes, at least 1) as printable text:
 * control bytes (C0, DEL), the C1 controls and the bidirectional
 * overrides and isolates (valid UTF-8 that a terminal acts on) and every
 * byte that is not part of valid UTF-8 become \xNN, and a backslash
 * becomes \\, so the original bytes can be told from the escapes.  Other
 * valid UTF-8 is kept.  When dst is too small the text is cut before an
 * escape or a character, never inside one.  Returns strlen(dst). */
size_t bfs_log_escape(char *dst, size_t dstsz, const char *src, size_t n);

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
