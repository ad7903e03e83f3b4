/*
 * ops.h - the FUSE low-level callbacks.  Each one finds its state through
 * fuse_req_userdata(), asks the tree, and replies; no callback holds a lock
 * while replying.
 */
#ifndef BFS_OPS_H
#define BFS_OPS_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "inval.h"
#include "tree.h"

#include <stdbool.h>

typedef struct bfs_fs {
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
} bfs_fs;

extern const struct fuse_lowlevel_ops bfs_fuse_ops;

#endif
