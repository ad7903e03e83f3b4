/*
 * ops.c - the FUSE low-level callbacks of a read-only mount.
 *
 * Thin by design: translate FUSE arguments, call the tree, reply.  Errors
 * from the tree are already negative errno.  Files get long entry/attr
 * timeouts and keep_cache because a dataset's bytes never change (with
 * -o direct_io they bypass the page cache instead: see docs/performance.md),
 * except files whose whole-file check has not passed yet, and the pages of
 * a file that fails it are invalidated (the invalidator at the end);
 * directories get shorter ones because new datasets arrive.  Reads reply
 * with the datastore file's descriptor so libfuse can splice the bytes to
 * the kernel without copying them through user space.
 *
 * Writes: a read-only mount is made with MS_RDONLY, so the kernel answers
 * EROFS for every modification before it reaches us; open() for writing is
 * refused here too in case a caller mounted read-write by hand.  A mount
 * with -o rw adds the callbacks of ops_write.c.
 */
#include "ops.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#define OPS_TAG "fs"

struct open_file {
    bfs_node *node;
    bfs_source *src;
    int64_t size; /* direct_io: reads end here, at the size stat shows, as
                   * the kernel ends them at i_size without it; else -1 */
    atomic_uint reads; /* see read_done */
};

/* The kernel sends RELEASE only after every READ of a handle has its reply,
 * so op_release never frees what a read still uses.  ThreadSanitizer cannot
 * see that order (it goes through the kernel): each read, done with the
 * handle, says so with a release store just before it replies, and
 * op_release reads it with acquire first. */
static void read_done(struct open_file *of)
{
    atomic_fetch_add_explicit(&of->reads, 1, memory_order_release);
}

static bfs_fs *fs_of(fuse_req_t req) { return fuse_req_userdata(req); }

static void fill_entry(const bfs_fs *fs, bfs_node *n, const struct stat *st, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof *e);
    e->ino = bfs_node_ino(n);
    e->attr = *st;
    double timeout = bfs_node_is_dir(n) ? fs->dir_timeout : fs->file_timeout;
    e->attr_timeout = timeout;
    e->entry_timeout = timeout;
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    bfs_fs *fs = userdata;
    /* READDIRPLUS always: `ls -l` and `find` then need no lookup per entry. */
    if (conn->capable & FUSE_CAP_READDIRPLUS)
        conn->want |= FUSE_CAP_READDIRPLUS;
    conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
    if (conn->capable & FUSE_CAP_SPLICE_WRITE)
        conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
    /* Without opendir/releasedir a directory costs 2 requests instead of
     * 4; on virtual machines each request is a costly context switch. */
    fs->no_opendir = (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) != 0;
    if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
        conn->want |= FUSE_CAP_PARALLEL_DIROPS;
#ifdef FUSE_CAP_DIRECT_IO_ALLOW_MMAP
    /* libfuse >= 3.16 on Linux >= 6.6: shared mmap of a direct_io file
     * works too (the kernel caches what the mapping touches) */
    if (fs->direct_io && (conn->capable & FUSE_CAP_DIRECT_IO_ALLOW_MMAP))
        conn->want |= FUSE_CAP_DIRECT_IO_ALLOW_MMAP;
#endif
    conn->max_read = fs->max_read; /* must agree with -o max_read */
    conn->max_readahead = fs->max_read;
    conn->max_background = 64;
    conn->congestion_threshold = 48;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    bfs_fs *fs = fs_of(req);
    bfs_node *child;
    struct stat st;
    int ret = bfs_tree_lookup(fs->tree, bfs_tree_node(fs->tree, parent), name, &child, &st);
    if (ret == -ENOENT && fs->ing && bfs_opsw_lookup_inbox(req, parent, name))
        return;
    if (ret == -ENOENT && fs->negative_timeout > 0) {
        /* ino 0: the kernel caches the miss for entry_timeout */
        struct fuse_entry_param e = {.ino = 0, .entry_timeout = fs->negative_timeout};
        fuse_reply_entry(req, &e);
        return;
    }
    if (ret < 0) {
        fuse_reply_err(req, -ret);
        return;
    }
    struct fuse_entry_param e;
    fill_entry(fs, child, &st, &e);
    if (fuse_reply_entry(req, &e) != 0)
        bfs_tree_forget(fs->tree, child, 1); /* the kernel never saw it */
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    bfs_fs *fs = fs_of(req);
    bfs_tree_forget(fs->tree, bfs_tree_node(fs->tree, ino), nlookup);
    fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    bfs_fs *fs = fs_of(req);
    for (size_t i = 0; i < count; i++)
        bfs_tree_forget(fs->tree, bfs_tree_node(fs->tree, forgets[i].ino), forgets[i].nlookup);
    fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    bfs_fs *fs = fs_of(req);
    bfs_node *n = bfs_tree_node(fs->tree, ino);
    struct stat st;
    bfs_tree_stat(fs->tree, n, &st);
    fuse_reply_attr(req, &st, bfs_node_is_dir(n) ? fs->dir_timeout : fs->file_timeout);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    bfs_fs *fs = fs_of(req);
    bfs_listing *l;
    if (fs->no_opendir) {
        fuse_reply_err(req, ENOSYS); /* the kernel stops sending opendir */
        return;
    }
    int ret = bfs_tree_opendir(fs->tree, bfs_tree_node(fs->tree, ino), &l);
    if (ret < 0) {
        fuse_reply_err(req, -ret);
        return;
    }
    fi->fh = (uint64_t)(uintptr_t)l;
    if (bfs_listing_immutable(l)) {
        /* a RUN's files of one dataId never change: let the kernel keep
         * the listing, so a second `find` asks nothing for leaf dirs */
        fi->cache_readdir = 1;
        fi->keep_cache = 1;
    }
    if (fuse_reply_open(req, fi) != 0)
        bfs_listing_free(fs->tree, l);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi,
                       bool plus)
{
    bfs_fs *fs = fs_of(req);
    bfs_node *dir = bfs_tree_node(fs->tree, ino);
    bfs_listing *l = (bfs_listing *)(uintptr_t)fi->fh;
    bool paged = l == NULL;
    if (paged) {
        int ret = bfs_tree_listing_at(fs->tree, dir, (uint64_t)off, &l);
        if (ret < 0) {
            fuse_reply_err(req, -ret);
            return;
        }
    }
    char *buf = malloc(size);
    size_t used = 0;
    if (!buf) {
        if (paged)
            bfs_tree_listing_done(fs->tree, dir, l, false);
        fuse_reply_err(req, ENOMEM);
        return;
    }
    bool full = false;
    size_t count = bfs_listing_count(l);
    for (size_t i = (size_t)off; i < count; i++) {
        struct stat st;
        const char *name = bfs_listing_name(fs->tree, l, i, &st);
        size_t need;
        if (!plus) {
            need = fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t)i + 1);
            if (need > size - used) {
                full = true;
                break;
            }
            used += need;
            continue;
        }
        struct fuse_entry_param e;
        bfs_node *child = NULL;
        if (i < 2) {
            /* "." and "..": the kernel takes no lookup on these */
            memset(&e, 0, sizeof e);
            e.attr = st;
        } else {
            int ret = bfs_listing_materialize(fs->tree, l, i, &child, &st);
            if (ret < 0) {
                if (used == 0) {
                    free(buf);
                    if (paged)
                        bfs_tree_listing_done(fs->tree, dir, l, false);
                    fuse_reply_err(req, -ret);
                    return;
                }
                full = true;
                break;
            }
            fill_entry(fs, child, &st, &e);
        }
        need = fuse_add_direntry_plus(req, buf + used, size - used, name, &e, (off_t)i + 1);
        if (need > size - used) {
            if (child)
                bfs_tree_forget(fs->tree, child, 1);
            full = true;
            break;
        }
        used += need;
    }
    /* a RUN's own directory of a writable mount: the names just written there */
    if (!full && fs->ing)
        used = bfs_opsw_readdir_inbox(req, ino, buf, size, used, (off_t)count, off, plus);
    if (paged)
        bfs_tree_listing_done(fs->tree, dir, l, used == 0);
    fuse_reply_buf(req, buf, used);
    free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    do_readdir(req, ino, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    do_readdir(req, ino, size, off, fi, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    bfs_fs *fs = fs_of(req);
    if (fi->fh)
        bfs_listing_free(fs->tree, (bfs_listing *)(uintptr_t)fi->fh);
    fuse_reply_err(req, 0);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    bfs_fs *fs = fs_of(req);
    bfs_node *n = bfs_tree_node(fs->tree, ino);
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
        fuse_reply_err(req, EROFS);
        return;
    }
    struct open_file *of = calloc(1, sizeof *of);
    if (!of) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    int ret = bfs_tree_open(fs->tree, n, &of->src);
    if (ret < 0) {
        free(of);
        fuse_reply_err(req, -ret);
        return;
    }
    of->node = n;
    of->size = -1;
    if (fs->direct_io) { /* what stat shows: the registry's size, else the size as opened */
        of->size = bfs_node_recorded_size(n);
        if (of->size < 0)
            of->size = bfs_source_size(of->src);
    }
    bfs_node_hold(fs->tree, n);
    fi->fh = (uint64_t)(uintptr_t)of;
    if (fs->direct_io)
        fi->direct_io = 1; /* replies go straight to the reader's buffer */
    else if (!bfs_source_check_pending(of->src))
        fi->keep_cache = 1; /* immutable: page cache survives reopen */
    /* else its whole-file check has not passed yet: the pages an earlier
     * open left (perhaps with bytes a later check found bad) are dropped by
     * the kernel at this open, and this open's check sees a whole read */
    fi->noflush = 1;
    if (fuse_reply_open(req, fi) != 0) {
        bfs_source_close(of->src);
        bfs_node_release(fs->tree, n);
        free(of);
    }
}

/* Reply to a read that failed with err (negative errno).  When of's file
 * failed its whole-file check, the pages earlier reads put in the kernel's
 * cache hold bytes now known bad: they are dropped once the reply is out
 * (see ops.h), so no later read is served them. */
static void read_failed(fuse_req_t req, fuse_ino_t ino, struct open_file *of, int err)
{
    bfs_fs *fs = fs_of(req);
    bool bad = bfs_source_check_failed(of->src);
    read_done(of);
    fuse_reply_err(req, -err);
    if (bad)
        bfs_inval_push(fs->inval, ino);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    struct open_file *of = (struct open_file *)(uintptr_t)fi->fh;
    if (of->size >= 0 && (int64_t)size > of->size - off) {
        if (off >= of->size) {
            read_done(of);
            fuse_reply_buf(req, NULL, 0);
            return;
        }
        size = (size_t)(of->size - off);
    }
    int fd = bfs_source_fd(of->src);
    if (fd >= 0) {
        /* FD_RETRY: a short splice is retried, so a reply is short only at
         * the file's end (with direct_io the reader sees it as it is) */
        struct fuse_bufvec bv = FUSE_BUFVEC_INIT(size);
        bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK | FUSE_BUF_FD_RETRY;
        bv.buf[0].fd = fd;
        bv.buf[0].pos = off;
        read_done(of); /* the splice reads fd, not of */
        fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
        return;
    }
    bfs_view v;
    ssize_t n = bfs_source_view(of->src, size, off, &v);
    if (n >= 0) {
        read_done(of); /* v holds its own references to the blocks */
        fuse_reply_iov(req, v.iov, v.n); /* one writev from the decoded blocks */
        bfs_view_release(&v);
        return;
    }
    if (n != -E2BIG && n != -ENOBUFS) {
        read_failed(req, ino, of, (int)n);
        return;
    }
    char *buf = malloc(size);
    if (!buf) {
        read_done(of);
        fuse_reply_err(req, ENOMEM);
        return;
    }
    n = bfs_source_pread(of->src, buf, size, off);
    if (n < 0) {
        read_failed(req, ino, of, (int)n);
    } else {
        read_done(of);
        fuse_reply_buf(req, buf, (size_t)n);
    }
    free(buf);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    bfs_fs *fs = fs_of(req);
    struct open_file *of = (struct open_file *)(uintptr_t)fi->fh;
    (void)atomic_load_explicit(&of->reads, memory_order_acquire); /* see read_done */
    bfs_source_close(of->src);
    bfs_node_release(fs->tree, of->node);
    free(of);
    fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct statvfs sv = {.f_bsize = 4096, .f_frsize = 4096, .f_namemax = 255, .f_flag = ST_RDONLY};
    fuse_reply_statfs(req, &sv);
}

/* user.butler.dataset_id and user.butler.location tell where a file comes
 * from, with -o xattr.  Without it the first getxattr answers ENOSYS and the
 * kernel never asks again: `ls -l` otherwise costs two requests per entry
 * (security.selinux and the POSIX ACL probe). */
static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    bfs_fs *fs = fs_of(req);
    if (!fs->xattr) {
        fuse_reply_err(req, ENOSYS);
        return;
    }
    bfs_node *n = bfs_tree_node(fs->tree, ino);
    const char *value = NULL;
    if (!strcmp(name, "user.butler.dataset_id"))
        value = bfs_node_dataset_id(n);
    else if (!strcmp(name, "user.butler.location"))
        value = bfs_node_location(n);
    if (!value) {
        fuse_reply_err(req, ENODATA);
        return;
    }
    size_t len = strlen(value);
    if (size == 0)
        fuse_reply_xattr(req, len);
    else if (size < len)
        fuse_reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, value, len);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    bfs_fs *fs = fs_of(req);
    if (!fs->xattr) {
        fuse_reply_err(req, ENOSYS);
        return;
    }
    static const char names[] = "user.butler.dataset_id\0user.butler.location";
    size_t len = bfs_node_is_dir(bfs_tree_node(fs->tree, ino)) ? 0 : sizeof names;
    if (size == 0)
        fuse_reply_xattr(req, len);
    else if (size < len)
        fuse_reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, names, len);
}

/* ---- the page cache invalidator (see ops.h): a ring of inode numbers
 * under one lock, drained by one thread that sends the notifications with
 * no lock held ---- */

struct bfs_inval {
    struct fuse_session *se;
    pthread_t thread;
    pthread_mutex_t lock;  /* below */
    pthread_cond_t cond;
    fuse_ino_t ring[BFS_INVAL_MAX];
    int head, count;
    bool stop;
};

static void *inval_main(void *arg)
{
    bfs_inval *iv = arg;
    pthread_mutex_lock(&iv->lock);
    for (;;) {
        while (iv->count == 0 && !iv->stop)
            pthread_cond_wait(&iv->cond, &iv->lock);
        if (iv->count == 0)
            break; /* stopping, and everything queued was sent */
        fuse_ino_t ino = iv->ring[iv->head];
        iv->head = (iv->head + 1) % BFS_INVAL_MAX;
        iv->count--;
        pthread_mutex_unlock(&iv->lock);
        /* off 0, len 0: every page.  -ENOENT: the kernel has no such inode
         * now; -ENODEV: the mount is gone (nothing cached either way) */
        int ret = fuse_lowlevel_notify_inval_inode(iv->se, ino, 0, 0);
        if (ret < 0 && ret != -ENOENT && ret != -ENODEV)
            bfs_warn(OPS_TAG, "cannot drop a file's pages from the kernel's cache: %s", strerror(-ret));
        pthread_mutex_lock(&iv->lock);
    }
    pthread_mutex_unlock(&iv->lock);
    return NULL;
}

int bfs_inval_start(struct fuse_session *se, bfs_inval **out)
{
    *out = NULL;
    bfs_inval *iv = calloc(1, sizeof *iv);
    if (!iv)
        return -ENOMEM;
    iv->se = se;
    pthread_mutex_init(&iv->lock, NULL);
    pthread_cond_init(&iv->cond, NULL);
    int ret = pthread_create(&iv->thread, NULL, inval_main, iv);
    if (ret != 0) {
        pthread_cond_destroy(&iv->cond);
        pthread_mutex_destroy(&iv->lock);
        free(iv);
        return -ret;
    }
    *out = iv;
    return 0;
}

void bfs_inval_push(bfs_inval *iv, fuse_ino_t ino)
{
    if (!iv)
        return;
    pthread_mutex_lock(&iv->lock);
    bool queued = false;
    for (int i = 0; i < iv->count && !queued; i++)
        queued = iv->ring[(iv->head + i) % BFS_INVAL_MAX] == ino;
    bool full = !queued && iv->count == BFS_INVAL_MAX;
    if (!queued && !full) {
        iv->ring[(iv->head + iv->count) % BFS_INVAL_MAX] = ino;
        iv->count++;
        pthread_cond_signal(&iv->cond);
    }
    pthread_mutex_unlock(&iv->lock);
    if (full)
        bfs_warn(OPS_TAG, "too many files to drop from the kernel's cache at once; one is left");
}

void bfs_inval_stop(bfs_inval *iv)
{
    if (!iv)
        return;
    pthread_mutex_lock(&iv->lock);
    iv->stop = true;
    pthread_cond_signal(&iv->cond);
    pthread_mutex_unlock(&iv->lock);
    pthread_join(iv->thread, NULL);
    pthread_cond_destroy(&iv->cond);
    pthread_mutex_destroy(&iv->lock);
    free(iv);
}

int bfs_ops_evict(void *ctx, uint64_t parent_ino, const char *name)
{
    bfs_fs *fs = ctx;
    return fuse_lowlevel_notify_inval_entry(fs->se, (fuse_ino_t)parent_ino, name, strlen(name));
}

int bfs_ops_refresh_dir(void *ctx, uint64_t ino)
{
    bfs_fs *fs = ctx;
    /* off 0, len 0: every page of the directory, which hold its listing */
    int ret = fuse_lowlevel_notify_inval_inode(fs->se, (fuse_ino_t)ino, 0, 0);
    return ret == -ENOENT || ret == -ENODEV ? 0 : ret;
}

const struct fuse_lowlevel_ops bfs_fuse_ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = op_releasedir,
    .open = op_open,
    .read = op_read,
    .release = op_release,
    .statfs = op_statfs,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
};
