/*
 * source.c - the fetcher: local files and the choice between replicas
 * (see source.h).
 *
 * Local reads go straight to pread(2) on a descriptor opened once per open
 * file; the descriptor is also handed to FUSE for splice so large
 * sequential reads copy no bytes through user space.  Remote reads go
 * through remote.c.  The remote machinery (HTTP stack, cache, workers) is
 * created on the first remote open, under the fetcher's lock.
 */
#include "source.h"

#include "log.h"
#include "remote_i.h"
#include "strutil.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SRC_TAG "fetch"

struct bfs_fetcher {
    const bfs_config *cfg;
    bfs_config defaults;     /* used when cfg is NULL */
    pthread_mutex_t lock;
    bfs_remote *remote;      /* created on first use */
    bool remote_failed;      /* logged once */
};

struct bfs_source {
    int fd;                  /* local: >= 0 */
    bfs_robj *obj;           /* remote */
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

int bfs_source_uri(const char *root, const char *location, char **out)
{
    *out = NULL;
    if (strstr(location, "://")) {
        *out = strdup(location);
        return *out ? 0 : -ENOMEM;
    }
    if (location[0] == '/' || has_dotdot(location)) {
        bfs_warn(SRC_TAG, "refusing datastore location that leaves the datastore root: %s", location);
        return -EACCES;
    }
    *out = bfs_asprintf("%s%s", root, location);
    return *out ? 0 : -ENOMEM;
}

/* A local path for a replica URL, or NULL when it is remote. */
static const char *local_of(const char *url)
{
    if (bfs_startswith(url, "file://")) {
        const char *p = url + strlen("file://");
        if (bfs_startswith(p, "localhost/"))
            p += strlen("localhost");
        return p[0] == '/' ? p : NULL;
    }
    return strstr(url, "://") ? NULL : url;
}

bool bfs_source_is_remote(const char *uri)
{
    return uri && !local_of(uri);
}

int bfs_source_local_path(const char *root, const char *location, char **out)
{
    char *uri;
    int ret = bfs_source_uri(root, location, &uri);
    if (ret < 0)
        return ret;
    const char *p = local_of(uri);
    *out = p ? strdup(p) : NULL;
    free(uri);
    return p ? (*out ? 0 : -ENOMEM) : -EPROTONOSUPPORT;
}

int bfs_fetcher_new(const bfs_config *cfg, bfs_fetcher **out)
{
    bfs_fetcher *f = calloc(1, sizeof *f);
    if (!f)
        return -ENOMEM;
    if (!cfg) {
        bfs_config_defaults(&f->defaults);
        cfg = &f->defaults;
    }
    f->cfg = cfg;
    pthread_mutex_init(&f->lock, NULL);
    *out = f;
    return 0;
}

void bfs_fetcher_free(bfs_fetcher *f)
{
    if (!f)
        return;
    bfs_remote_free(f->remote);
    if (f->cfg == &f->defaults)
        bfs_config_free(&f->defaults);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

static bfs_remote *remote_of(bfs_fetcher *f)
{
    pthread_mutex_lock(&f->lock);
    if (!f->remote && !f->remote_failed) {
        char *msg = NULL;
        if (bfs_remote_new(f->cfg, &f->remote, &msg) < 0) {
            bfs_err(SRC_TAG, "remote reads unavailable: %s", msg ? msg : "cannot initialise");
            f->remote_failed = true;
        }
        free(msg);
    }
    bfs_remote *r = f->remote;
    pthread_mutex_unlock(&f->lock);
    return r;
}

static int open_local(const char *path, bfs_source **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat sb;
    bfs_source *s = calloc(1, sizeof *s);
    if (!s || fstat(fd, &sb) < 0) {
        int ret = s ? -errno : -ENOMEM;
        free(s);
        close(fd);
        return ret;
    }
    s->fd = fd;
    s->size = sb.st_size;
    *out = s;
    return 0;
}

/* Replicas in chain order; the first that opens serves.  Local ones are
 * opened directly.  At the first remote one, it and every later remote
 * replica are handed together to the reader, so it can fail over among them
 * during reads; if none of them can serve, later local replicas are still
 * tried.  -ENOENT only when every replica lacks the object. */
static int open_remote(bfs_fetcher *f, const char *uri, char **urls, int n, int first, int64_t size_hint,
                       const char *checksum, unsigned flags, bfs_source **out)
{
    char **remote_urls = calloc((size_t)(n - first), sizeof *remote_urls);
    int nr = 0;
    for (int j = first; remote_urls && j < n; j++)
        if (!local_of(urls[j]))
            remote_urls[nr++] = urls[j];
    bfs_remote *r = remote_of(f);
    bfs_robj *o = NULL;
    int ret = !remote_urls ? -ENOMEM : !r ? -EIO : bfs_robj_open(r, uri, remote_urls, nr, size_hint, checksum, flags, &o);
    free(remote_urls);
    if (ret < 0)
        return ret;
    bfs_source *s = calloc(1, sizeof *s);
    if (!s) {
        bfs_robj_close(o);
        return -ENOMEM;
    }
    s->fd = -1;
    s->obj = o;
    s->size = bfs_robj_size(o);
    *out = s;
    return 0;
}

/* bfs_source_open, with bfs_robj_open's flags for remote replicas. */
static int source_open(bfs_fetcher *f, const char *root, const char *location, int64_t size_hint,
                       const char *checksum, unsigned flags, bfs_source **out)
{
    char *uri;
    int ret = bfs_source_uri(root, location, &uri);
    if (ret < 0)
        return ret;
    char **urls = NULL;
    int n = bfs_config_replicas(f->cfg, uri, &urls);
    if (n < 0) {
        free(uri);
        return n;
    }
    int worst = -ENOENT;
    bool remote_tried = false;
    ret = -ENOENT;
    for (int i = 0; i < n && ret != 0; i++) {
        const char *p = local_of(urls[i]);
        if (p) {
            ret = open_local(p, out);
        } else if (!remote_tried) {
            remote_tried = true;
            ret = open_remote(f, uri, urls, n, i, size_hint, checksum, flags, out);
        } else {
            continue;
        }
        if (ret < 0 && ret != -ENOENT && worst == -ENOENT)
            worst = ret; /* a replica that has it but failed outranks "missing" */
    }
    bfs_config_free_urls(urls, n);
    free(uri);
    return ret == 0 ? 0 : worst;
}

int bfs_source_open(bfs_fetcher *f, const char *root, const char *location, int64_t size_hint,
                    const char *checksum, bfs_source **out)
{
    return source_open(f, root, location, size_hint, checksum, 0, out);
}

ssize_t bfs_source_pread(bfs_source *s, void *buf, size_t n, off_t off)
{
    if (s->obj)
        return bfs_robj_pread(s->obj, buf, n, off);
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

ssize_t bfs_source_view(bfs_source *s, size_t n, off_t off, bfs_view *v)
{
    v->n = 0;
    if (!s->obj)
        return -EOPNOTSUPP;
    return bfs_robj_view(s->obj, n, off, v->iov, v->ref, BFS_VIEW_MAX, &v->n);
}

void bfs_view_release(bfs_view *v)
{
    bfs_robj_view_release(v->ref, v->n);
    v->n = 0;
}

int bfs_source_fd(const bfs_source *s) { return s->fd; }
int64_t bfs_source_size(const bfs_source *s) { return s->size; }
bool bfs_source_check_pending(const bfs_source *s) { return s->obj && bfs_robj_check_pending(s->obj); }
bool bfs_source_check_failed(bfs_source *s) { return s->obj && bfs_robj_check_failed(s->obj); }

void bfs_source_close(bfs_source *s)
{
    if (!s)
        return;
    if (s->fd >= 0)
        close(s->fd);
    bfs_robj_close(s->obj);
    free(s);
}

int bfs_source_stat_size(bfs_fetcher *f, const char *root, const char *location, int64_t *size)
{
    char *path;
    int ret = bfs_source_local_path(root, location, &path);
    if (ret == 0) {
        struct stat sb;
        ret = stat(path, &sb) < 0 ? -errno : 0;
        free(path);
        if (ret == 0)
            *size = sb.st_size;
        return ret;
    }
    if (ret != -EPROTONOSUPPORT)
        return ret;
    /* remote: opening pins the object (cache record or HEAD; no data) */
    bfs_source *s;
    ret = source_open(f, root, location, -1, NULL, BFS_ROBJ_STAT_ONLY, &s);
    if (ret == 0) {
        *size = s->size;
        bfs_source_close(s);
    }
    return ret;
}

/* f's remote reader, or NULL when nothing remote was opened yet. */
static bfs_remote *remote_if_any(bfs_fetcher *f)
{
    pthread_mutex_lock(&f->lock);
    bfs_remote *r = f->remote;
    pthread_mutex_unlock(&f->lock);
    return r;
}

void bfs_fetcher_stats(bfs_fetcher *f, bfs_fetch_stats *st)
{
    memset(st, 0, sizeof *st);
    bfs_remote *r = remote_if_any(f);
    if (r)
        bfs_remote_stats(r, st);
    else
        st->memory_budget = f->cfg->memory_budget;
}

int bfs_fetcher_skipped(bfs_fetcher *f, bfs_replica_state *out, int max)
{
    bfs_remote *r = remote_if_any(f);
    return r ? bfs_remote_skipped(r, out, max) : 0;
}
