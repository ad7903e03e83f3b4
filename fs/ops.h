/*
 * ops.h - the FUSE low-level callbacks.  Each one finds its state through
 * fuse_req_userdata(), asks the tree, and replies; no callback holds a lock
 * while replying.
 */
#ifndef BFS_OPS_H
#define BFS_OPS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "tree.h"
#include "writers.h"

#include <stdbool.h>

/* Dropping a file's pages from the kernel's page cache, off the request
 * path.  fuse_lowlevel_notify_inval_inode waits for the pages it drops, and
 * a READ in progress holds its page locked until its reply is sent: called
 * from a read handler of the same inode it can wait forever.  So a handler
 * only queues the inode (bfs_inval_push, which never blocks) and one thread
 * sends the notifications, after the handler has replied.  The queue holds
 * BFS_INVAL_MAX inodes; a push beyond that is dropped with a log line
 * (opens of a file whose check has not passed keep no pages anyway, see
 * op_open).  The session is the caller's and must outlive the invalidator;
 * push from any thread, start and stop from one. */
#define BFS_INVAL_MAX 256
typedef struct bfs_inval bfs_inval;
/* Start the thread.  0, or -errno (then *out is NULL). */
int bfs_inval_start(struct fuse_session *se, bfs_inval **out);
/* Queue ino: all of its cached pages will be dropped.  iv may be NULL (a no-op). */
void bfs_inval_push(bfs_inval *iv, fuse_ino_t ino);
/* Send what is queued, join the thread and free iv (NULL is fine).  Call
 * before the session is unmounted. */
void bfs_inval_stop(bfs_inval *iv);

typedef struct bfs_fs {
    struct fuse_session *se; /* for notifications to the kernel */
    bfs_tree *tree;
    bfs_registry *reg;
    double file_timeout;     /* entry/attr timeout of files: datasets are immutable */
    double dir_timeout;      /* entry/attr timeout of directories: new datasets appear */
    double negative_timeout; /* how long "no such entry" is cached */
    unsigned max_read;
    bool xattr;              /* serve user.butler.* (else ENOSYS: ls -l asks nothing per file) */
    bool direct_io;          /* files bypass the kernel page cache (FOPEN_DIRECT_IO) */
    bool no_opendir;         /* kernel skips opendir/releasedir; listings page from the node */
    bfs_inval *inval;        /* drops the pages of files found bad (NULL: none are dropped) */
    bfs_ingest *ing;         /* -o rw: where written files go (NULL: read-only mount) */
} bfs_fs;

extern const struct fuse_lowlevel_ops bfs_fuse_ops;

/* The callbacks of a writable mount (ops_write.c): bfs_fuse_ops plus
 * create, write, flush, fsync, mkdir, setattr, and files being written. */
void bfs_ops_writable(struct fuse_lowlevel_ops *ops);

/* Reply to a lookup of name in directory parent with a file being written
 * there (an inbox name, writers.h) and return true; false (nothing replied)
 * when there is none. */
bool bfs_opsw_lookup_inbox(fuse_req_t req, fuse_ino_t parent, const char *name);

/* After the tree's entries of directory ino (their offsets 1..base), the
 * inbox names of the RUN it is (a writable mount), at offsets base+1...:
 * those from offset off on are added to buf[used..size) as readdir (plus:
 * readdirplus, each entry taking a lookup reference) would; returns the new
 * used.  A directory that is not a RUN's own adds nothing. */
size_t bfs_opsw_readdir_inbox(fuse_req_t req, fuse_ino_t ino, char *buf, size_t size, size_t used, off_t base,
                              off_t off, bool plus);

/* The tree's bfs_tree_evict_fn (ctx: the bfs_fs): asks the kernel to drop
 * an entry, so that it sends FORGET.  Never call it from a request handler:
 * the kernel may wait for that request to finish first. */
int bfs_ops_evict(void *ctx, uint64_t parent_ino, const char *name);

/* Asks the kernel to drop what it keeps of directory ino: its attributes
 * and its cached listing.  The kernel keeps a directory's listing (it opens
 * directories without asking when the daemon allows it, and then caches
 * them) until the directory's attributes time out, so a listing taken while
 * a file was being written into it stays empty after that file is ingested
 * unless it is dropped.  0, or -errno of the notification; a directory the
 * kernel no longer knows is 0.  The same rule as bfs_ops_evict: never from
 * a request handler. */
int bfs_ops_refresh_dir(void *ctx, uint64_t ino);

#endif
