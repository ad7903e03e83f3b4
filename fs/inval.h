/*
 * inval.h - dropping a file's pages from the kernel's page cache, off the
 * request path.
 *
 * fuse_lowlevel_notify_inval_inode waits for the pages it drops, and a
 * READ in progress holds its page locked until its reply is sent: called
 * from a read handler of the same inode it can wait forever.  So a handler
 * only queues the inode here (bfs_inval_push, which never blocks) and one
 * thread of this module sends the notifications, after the handler has
 * replied.  The queue holds BFS_INVAL_MAX inodes; a push beyond that is
 * dropped with a log line (opens of a file whose check has not passed do
 * not keep pages anyway, see op_open).
 *
 * Ownership: the session is the caller's and must outlive the invalidator.
 * Threads: push from any thread; start and stop from one.
 */
#ifndef BFS_INVAL_H
#define BFS_INVAL_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#define BFS_INVAL_MAX 256

typedef struct bfs_inval bfs_inval;

/* Start the thread.  0, or -errno (then *out is NULL). */
int bfs_inval_start(struct fuse_session *se, bfs_inval **out);

/* Queue ino: all of its cached pages will be dropped.  iv may be NULL (a
 * no-op). */
void bfs_inval_push(bfs_inval *iv, fuse_ino_t ino);

/* Send what is queued, then join the thread and free iv (NULL is fine).
 * Call before the session is unmounted. */
void bfs_inval_stop(bfs_inval *iv);

#endif
