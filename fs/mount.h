/*
 * mount.h - the composition root of a mount: every long-lived piece of a
 * running daemon is built here, in one place and one order, and torn down
 * in the reverse order.  fs/main.c parses the command line, checks what it
 * can while the user still sees the terminal (bfs_mount_check), mounts and
 * daemonizes; then bfs_mount_serve builds the rest, serves until unmount,
 * and takes it all down.
 *
 * Order (and why): the registry; the fetcher (remote reads); the tree; with
 * -o rw, one bfs_http for uploads, webhook POSTs and Header Service GETs,
 * then the transfer queue, then the ingest (which enqueues into the queue,
 * and at open finishes what a killed daemon left, so the queue must exist
 * first), then with transfer.retention_interval the retention thread (its
 * first pass must not come before the ingest finished what a killed daemon
 * left); the node trimmer, the status file and the page-cache invalidator;
 * the FUSE loop.  Teardown: invalidator, status (it reads the daemons),
 * retention (while the session lives: a pass asks the kernel to drop the
 * entries of what it removed), trimmer, then the ingest (its seals in
 * flight finish and enqueue), the queue, the http, the tree, the fetcher,
 * the registry.  A piece that cannot start after daemonizing
 * is one error line in the log and the mount ends (exit status 1).
 *
 * Ownership: the plan and the configurations it points to belong to the
 * caller and must outlive bfs_mount_serve; the session and fs too.
 */
#ifndef BFS_MOUNT_H
#define BFS_MOUNT_H

#include "ops.h"
#include "transfer.h"
#include "writers.h"

#include <stdbool.h>

typedef struct bfs_mount_plan {
    const char *repo, *mnt;          /* absolute paths */
    bool rw, single_thread, status_file;
    int threads;
    double listing_ttl;
    unsigned long max_nodes;
    const bfs_config *config;        /* the configuration file */
    const bfs_ingest_config *ingest; /* its ingest: section (-o rw) */
    const bfs_transfer_config *transfer; /* its transfer: section (-o rw) */
} bfs_mount_plan;

/* What can be checked before mounting, said in one sentence on stderr:
 * the repository opens (for writing with -o rw: a killed writer's hot
 * journal is undone there), a remote datastore's cache is usable (a
 * warning), -o rw has a local datastore, the ingest: and transfer:
 * sections parse and the spool, lock and staging trees are usable.  Fills
 * icfg and tcfg (-o rw) and *fsname (malloc'd "-ofsname=..." option).
 * 0, or -1 after printing why. */
int bfs_mount_check(const bfs_mount_plan *p, bfs_ingest_config *icfg, bfs_transfer_config *tcfg, char **fsname);

/* Build everything, serve se until it is unmounted, tear down.  Returns
 * the exit status: 0 after a clean unmount, 1 otherwise. */
int bfs_mount_serve(const bfs_mount_plan *p, struct fuse_session *se, bfs_fs *fs);

/* The ingest: and transfer: sections of the configuration file config
 * names (writers/ owns their parsing) into icfg and tcfg, which hold their
 * defaults; nothing when config names no file.  0, or -errno with *msg
 * "FILE:LINE: what". */
int bfs_mount_write_config(const bfs_config *config, bfs_ingest_config *icfg, bfs_transfer_config *tcfg,
                           char **msg);

#endif
