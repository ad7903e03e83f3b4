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

#include <stdbool.h>

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
} bfs_fs;

extern const struct fuse_lowlevel_ops bfs_fuse_ops;

/* The tree's bfs_tree_evict_fn (ctx: the bfs_fs): asks the kernel to drop
 * an entry, so that it sends FORGET.  Never call it from a request handler:
 * the kernel may wait for that request to finish first. */
int bfs_ops_evict(void *ctx, uint64_t parent_ino, const char *name);

#endif
