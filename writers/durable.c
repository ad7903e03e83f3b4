/* durable.c - see durable.h. */
#include "durable.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "strutil.h"

int bfs_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int ret = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return ret;
}

char *bfs_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
}

static int fsync_parent(const char *path)
{
    char *d = bfs_dir_of(path);
    int ret = d ? bfs_fsync_dir(*d ? d : "/") : -ENOMEM; /* "/a": the root's entry */
    free(d);
    return ret;
}

int bfs_make_parents(const char *path, bool private_dirs)
{
    char *p = strdup(path);
    if (!p)
        return -ENOMEM;
    int ret = 0;
    for (char *s = strchr(p + 1, '/'); s && ret == 0; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (mkdir(p, private_dirs ? 0700 : 0755) == 0)
            ret = fsync_parent(p); /* the new entry is durable before anything is put below it */
        else if (errno != EEXIST)
            ret = -errno;
        *s = '/';
    }
    free(p);
    return ret;
}

int bfs_durable_write(const char *path, const char *text, size_t len)
{
    return bfs_durable_write_mode(path, text, len, 0600);
}

int bfs_durable_write_mode(const char *path, const char *text, size_t len, mode_t mode)
{
    char *tmp = bfs_asprintf("%s.tmp", path);
    if (!tmp)
        return -ENOMEM;
    int ret = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        ret = -errno;
    if (ret == 0 && (write(fd, text, len) != (ssize_t)len || fdatasync(fd) < 0))
        ret = errno ? -errno : -EIO;
    if (fd >= 0)
        close(fd);
    if (ret == 0 && rename(tmp, path) < 0)
        ret = -errno;
    if (ret == 0)
        ret = fsync_parent(path);
    if (ret < 0)
        unlink(tmp);
    free(tmp);
    return ret;
}

int bfs_durable_move(const char *from, const char *to)
{
    if (rename(from, to) < 0)
        return -errno;
    int ret = fsync_parent(to);
    int r2 = fsync_parent(from);
    return ret ? ret : r2;
}
