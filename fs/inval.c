/*
 * inval.c - page cache invalidation off the request path (see inval.h).
 *
 * A ring of inode numbers under one lock, drained by one thread that sends
 * fuse_lowlevel_notify_inval_inode for each, with no lock held.
 */
#include "inval.h"

#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define INVAL_TAG "fs"

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
            bfs_warn(INVAL_TAG, "cannot drop a file's pages from the kernel's cache: %s", strerror(-ret));
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
        bfs_warn(INVAL_TAG, "too many files to drop from the kernel's cache at once; one is left");
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
