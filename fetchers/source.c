/*
 * source.c - local datastore files (see source.h).
 *
 * Reads go straight to pread(2) on a descriptor opened once per open file;
 * the descriptor is also handed to FUSE for splice so large sequential
 * reads copy no bytes through user space.
 */
#include "source.h"

#include "log.h"
#include "strutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SRC_TAG "fetch"

struct bfs_source {
    int fd;
    int64_t size;
};

static bool has_dotdot(const char *p)
{
    for (const char *s = p; (s = strstr(s, "..")) != NULL; s += 2) {
        bool starts = s == p || s[-1] == '/';
        bool ends = s[2] == '\0' || s[2] == '/';
        if (starts && ends)
            return true;
    }
    return false;
}

int bfs_source_local_path(const char *root, const char *location, char **out)
{
    *out = NULL;
    if (bfs_startswith(location, "file://")) {
        const char *p = location + strlen("file://");
        if (bfs_startswith(p, "localhost/"))
            p += strlen("localhost");
        if (p[0] != '/')
            return -EPROTONOSUPPORT; /* file://otherhost/... */
        *out = strdup(p);
        return *out ? 0 : -ENOMEM;
    }
    if (strstr(location, "://"))
        return -EPROTONOSUPPORT;
    if (location[0] == '/' || has_dotdot(location)) {
        bfs_warn(SRC_TAG, "refusing datastore location that leaves the datastore root: %s", location);
        return -EACCES;
    }
    if (strstr(root, "://"))
        return -EPROTONOSUPPORT;
    *out = bfs_asprintf("%s%s", root, location);
    return *out ? 0 : -ENOMEM;
}

int bfs_source_open(const char *root, const char *location, bfs_source **out)
{
    char *path;
    int ret = bfs_source_local_path(root, location, &path);
    if (ret < 0)
        return ret;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ret = -errno;
        free(path);
        return ret;
    }
    struct stat sb;
    bfs_source *s = malloc(sizeof *s);
    if (!s || fstat(fd, &sb) < 0) {
        ret = s ? -errno : -ENOMEM;
        free(s);
        close(fd);
        free(path);
        return ret;
    }
    free(path);
    s->fd = fd;
    s->size = sb.st_size;
    *out = s;
    return 0;
}

ssize_t bfs_source_pread(bfs_source *s, void *buf, size_t n, off_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(s->fd, (char *)buf + done, n - done, off + (off_t)done);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            break;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

int bfs_source_fd(const bfs_source *s) { return s->fd; }
int64_t bfs_source_size(const bfs_source *s) { return s->size; }

void bfs_source_close(bfs_source *s)
{
    if (!s)
        return;
    close(s->fd);
    free(s);
}

int bfs_source_stat_size(const char *root, const char *location, int64_t *size)
{
    char *path;
    int ret = bfs_source_local_path(root, location, &path);
    if (ret < 0)
        return ret;
    struct stat sb;
    ret = stat(path, &sb) < 0 ? -errno : 0;
    free(path);
    if (ret == 0)
        *size = sb.st_size;
    return ret;
}
