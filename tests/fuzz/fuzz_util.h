/*
 * fuzz_util.h - shared by the libFuzzer harnesses of tests/fuzz (one
 * translation unit each, so everything here is static).
 *
 * Harnesses that need files work in one private temp dir per process,
 * made on first use and removed at exit.  Logging runs at debug level into
 * /dev/null, so every log line's formatting (and escaping) is exercised
 * without flooding the fuzzer's output.
 */
#ifndef BFS_FUZZ_UTIL_H
#define BFS_FUZZ_UTIL_H

#include "log.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

static char fz_dir[64];

static inline int fz_rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb, (void)type, (void)ftw;
    return remove(path);
}

static inline void fz_cleanup(void)
{
    if (fz_dir[0])
        nftw(fz_dir, fz_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Quiet logs at debug level, and the private temp dir; aborts on failure
 * (a harness that cannot set up must not report a clean run). */
static inline const char *fz_setup(void)
{
    if (fz_dir[0])
        return fz_dir;
    bfs_log_set_level(LOG_DEBUG);
    if (bfs_log_to_file("/dev/null") < 0)
        abort();
    const char *tmp = getenv("TMPDIR");
    snprintf(fz_dir, sizeof fz_dir, "%s/bfs_fuzzXXXXXX", tmp && *tmp && strlen(tmp) < 40 ? tmp : "/tmp");
    if (!mkdtemp(fz_dir))
        abort();
    atexit(fz_cleanup);
    return fz_dir;
}

/* Replace the file at path with n bytes of data; aborts on failure. */
static inline void fz_write(const char *path, const void *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || (n && write(fd, data, n) != (ssize_t)n) || close(fd) < 0)
        abort();
}

/* A NUL-terminated malloc'd copy of the input; aborts when out of memory. */
static inline char *fz_string(const uint8_t *data, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        abort();
    memcpy(s, data, n);
    s[n] = '\0';
    return s;
}

/* Cut s in place at each line "%%" into at most max parts; parts past the
 * count are NULL.  Returns the count (>= 1). */
static inline int fz_split(char *s, char **parts, int max)
{
    int n = 0;
    for (int i = 0; i < max; i++)
        parts[i] = NULL;
    parts[n++] = s;
    while (n < max) {
        char *sep = strstr(s, "\n%%\n");
        if (!sep)
            break;
        *sep = '\0';
        s = parts[n++] = sep + 4;
    }
    return n;
}

#endif
