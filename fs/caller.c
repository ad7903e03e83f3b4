/*
 * caller.c - the state of a FUSE request's process (caller.h).
 */
#include "caller.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    PF_EXITING_FLAG = 0x4, /* include/linux/sched.h: getting shut down */
    FIELD_FLAGS = 9,       /* proc_pid_stat(5): the kernel flags word */
    FIELD_EXIT_CODE = 52,  /* the status waitpid(2) would report (Linux >= 3.5) */
};

int bfs_caller_killed_by(pid_t pid)
{
    if (pid <= 0)
        return 0;
    char path[32], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    /* "pid (comm) state ...": comm may hold spaces and parentheses; the
     * fields follow the last ')', the first of them field 3 */
    char *p = strrchr(buf, ')');
    unsigned long long flags = 0;
    long long code = 0;
    int field = 2;
    for (p = p ? p + 1 : NULL; p && *p && field < FIELD_EXIT_CODE;) {
        while (*p == ' ')
            p++;
        field++;
        if (field == FIELD_FLAGS)
            flags = strtoull(p, NULL, 10);
        else if (field == FIELD_EXIT_CODE)
            code = strtoll(p, NULL, 10);
        p = strchr(p, ' ');
    }
    if (field != FIELD_EXIT_CODE || !(flags & PF_EXITING_FLAG))
        return 0;
    return (int)(code & 0x7f); /* a signal's number; 0 for exit(status), whose status is in bits 8-15 */
}
