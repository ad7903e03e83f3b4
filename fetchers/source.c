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

#include "health.h"
#include "log.h"
#include "remote_i.h"
#include "strutil.h"

#include <ctype.h>
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

/* ---- judging a location --------------------------------------------------
 *
 * A location comes from the registry, so it is data, not configuration.  It
 * is judged as the server (or the kernel) will read it: after
 * percent-decoding.  Refused on sight: a "." or ".." segment (a server that
 * normalises "%2e%2e" climbs out of the root with our credentials), an
 * encoded '/' or '\' (a separator the prefix checks below cannot see) and an
 * encoded NUL.  A raw '\' also ends a segment, as some servers read it so.
 * Then where it leads is judged against what the configuration names: a
 * remote URL must lie under the datastore root or a configured replica (the
 * only places credentials go); a local path, once every symlink in it is
 * resolved, under the datastore root, a local replica or an allowed_roots
 * directory. */

/* The length of loc's "scheme://" (RFC 3986 scheme), 0 when it has none:
 * then it is a path, relative or absolute, judged whole. */
static size_t scheme_len(const char *loc)
{
    size_t n = 0;
    if (!isalpha((unsigned char)loc[0]))
        return 0;
    while (isalnum((unsigned char)loc[n]) || loc[n] == '+' || loc[n] == '-' || loc[n] == '.')
        n++;
    return strncmp(loc + n, "://", 3) == 0 ? n + 3 : 0;
}

/* Why loc is refused on sight, or NULL. */
static const char *location_problem(const char *loc)
{
    const char *p = loc;
    size_t sl = scheme_len(loc);
    if (sl)
        p = loc + sl + strcspn(loc + sl, "/"); /* the path, after the authority */
    size_t seg = 0, dots = 0;
    for (;; p++) {
        int c = (unsigned char)*p;
        if (c == '%' && bfs_hexval(p[1]) >= 0 && bfs_hexval(p[2]) >= 0) {
            c = bfs_hexval(p[1]) * 16 + bfs_hexval(p[2]);
            p += 2;
            if (c == '/' || c == '\\')
                return "it holds an encoded '/' or '\\'";
            if (c == '\0')
                return "it holds an encoded NUL";
        } else if (c == '\0' || c == '/' || c == '\\') {
            if (seg && seg == dots && seg <= 2)
                return "it holds a '.' or '..' segment";
            if (c == '\0')
                return NULL;
            seg = dots = 0;
            continue;
        }
        seg++;
        dots += c == '.';
    }
}

/* loc for a log line: no user:password@ of an absolute URI. */
static void location_for_log(const char *loc, char *out, size_t outsz)
{
    if (scheme_len(loc))
        bfs_url_redact(loc, out, outsz);
    else
        snprintf(out, outsz, "%s", loc);
}

int bfs_source_uri(const char *root, const char *location, char **out)
{
    *out = NULL;
    const char *why = location_problem(location);
    if (why) {
        char shown[1024];
        location_for_log(location, shown, sizeof shown);
        bfs_warn(SRC_TAG, "refusing datastore location %s: %s, which could leave the datastore root",
                 shown, why);
        return -EACCES;
    }
    if (scheme_len(location) || location[0] == '/')
        *out = strdup(location);
    else
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

/* s lies under dir: dir itself or below it (dir may end in '/'). */
static bool is_under(const char *s, const char *dir)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    if (n == 1 && dir[0] == '/')
        return s[0] == '/';
    return strncmp(s, dir, n) == 0 && (s[n] == '/' || s[n] == '\0');
}

/* The local directories a local path may lie under: the datastore root
 * (when local), every local replica base, then allowed_roots.  The i-th into
 * *dir (NULL for a remote one); false past the last. */
static bool local_dir(const bfs_config *c, const char *root, int i, const char **dir)
{
    if (i == 0) {
        *dir = local_of(root);
        return true;
    }
    i--;
    for (int r = 0; r < c->n_rules; r++) {
        if (i < c->rules[r].n_replicas) {
            *dir = local_of(c->rules[r].replicas[i]);
            return true;
        }
        i -= c->rules[r].n_replicas;
    }
    if (i < c->n_allowed_roots) {
        *dir = c->allowed_roots[i];
        return true;
    }
    return false;
}

/* Whether path lies under an allowed directory as written (so a row cannot
 * even probe for files elsewhere) and, given real (its realpath), also
 * under that directory's realpath (so no symlink leads out). */
static bool local_allowed(const bfs_config *c, const char *root, const char *path, const char *real)
{
    bool written = false;
    const char *dir;
    for (int i = 0; !written && local_dir(c, root, i, &dir); i++)
        written = dir && is_under(path, dir);
    if (!written || !real)
        return written;
    for (int i = 0; local_dir(c, root, i, &dir); i++) {
        char *rd = dir ? realpath(dir, NULL) : NULL;
        bool ok = rd && is_under(real, rd);
        free(rd);
        if (ok)
            return true;
    }
    return false;
}

/* The one log line of a refused local path. */
static int refuse_local(const char *path, const char *why)
{
    bfs_warn(SRC_TAG, "refusing datastore location %s: %s; to serve files there, list the directory "
             "under allowed_roots: in the configuration file", path, why);
    return -EACCES;
}

/* Whether a remote URL may be fetched (with credentials): under the
 * datastore root (when remote) or a configured remote replica base. */
static bool remote_allowed(const bfs_config *c, const char *root, const char *url)
{
    if (bfs_source_is_remote(root) && is_under(url, root))
        return true;
    for (int r = 0; r < c->n_rules; r++)
        for (int i = 0; i < c->rules[r].n_replicas; i++)
            if (bfs_source_is_remote(c->rules[r].replicas[i]) && is_under(url, c->rules[r].replicas[i]))
                return true;
    return false;
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

/* Open a local path if it lies under an allowed directory (local_allowed),
 * judged on its realpath and opened by that path with O_NOFOLLOW, so the
 * file opened is the file judged even if its last link is swapped; only a
 * regular file is served (never a FIFO or a device).  -ENOENT when missing
 * under an allowed directory, -EACCES when refused (logged once here). */
static int open_local(const bfs_config *c, const char *root, const char *path, bfs_source **out)
{
    if (!local_allowed(c, root, path, NULL))
        return refuse_local(path, "it is outside the datastore root and the configured local directories");
    char *real = realpath(path, NULL);
    if (!real)
        return -errno;
    int ret = 0;
    if (!local_allowed(c, root, path, real))
        ret = refuse_local(path, "a symbolic link leads it out of the datastore root and the "
                           "configured local directories");
    int fd = ret < 0 ? -1 : open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    free(real);
    if (ret < 0)
        return ret;
    if (fd < 0)
        return errno == ELOOP ? refuse_local(path, "it was replaced by a symbolic link") : -errno;
    struct stat sb;
    bfs_source *s = NULL;
    if (fstat(fd, &sb) < 0)
        ret = -errno;
    else if (!S_ISREG(sb.st_mode))
        ret = refuse_local(path, "it is not a regular file");
    else if (!(s = calloc(1, sizeof *s)))
        ret = -ENOMEM;
    if (ret < 0) {
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
    for (int i = 0; i < n; i++) {
        if (!local_of(urls[i]) && !remote_allowed(f->cfg, root, urls[i])) {
            char shown[1024];
            location_for_log(uri, shown, sizeof shown);
            bfs_warn(SRC_TAG, "refusing datastore location %s: an absolute URI outside the datastore "
                     "root and the configured replicas (credentials go nowhere else); to serve it, "
                     "map its prefix under sources: in the configuration file", shown);
            bfs_config_free_urls(urls, n);
            free(uri);
            return -EACCES;
        }
    }
    int worst = -ENOENT;
    bool remote_tried = false;
    ret = -ENOENT;
    for (int i = 0; i < n && ret != 0; i++) {
        const char *p = local_of(urls[i]);
        if (p) {
            ret = open_local(f->cfg, root, p, out);
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
    /* local: the same judgement as a read; remote: opening pins the object
     * (cache record or HEAD; no data) */
    bfs_source *s;
    int ret = source_open(f, root, location, -1, NULL, BFS_ROBJ_STAT_ONLY, &s);
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

int bfs_fetcher_faults(bfs_fetcher *f, bfs_replica_faults *out, int max)
{
    bfs_remote *r = remote_if_any(f);
    return r ? bfs_remote_faults(r, out, max) : 0;
}
