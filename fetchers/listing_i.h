/*
 * listing_i.h - internals of listing.c exposed to its tests and fuzz
 * harness: the reply parser, driven over a reply held in memory by the same
 * code bfs_list_dir feeds from the network.
 */
#ifndef BFS_LISTING_I_H
#define BFS_LISTING_I_H

#include "listing.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum bfs_list_kind {
    BFS_LIST_DAV, /* a PROPFIND multistatus */
    BFS_LIST_S3,  /* a ListObjectsV2 ListBucketResult page */
} bfs_list_kind;

/* Parse reply (len bytes), fed to the push parser in chunks of at most
 * chunk bytes (>= 1), as one reply of a listing of base: for DAV the
 * decoded path asked for ("/data/dir/"), for S3 the decoded prefix
 * ("dir/", "" for the bucket).  cb sees each member (see listing.h); stats
 * (may be NULL) is added to.  For S3, *truncated and *next_token (malloc'd,
 * NULL when absent; the caller frees) get the page's IsTruncated and
 * NextContinuationToken; both may be NULL for DAV.  0, -EPROTO, -ENOMEM or
 * the callback's error. */
int bfs_list_parse(bfs_list_kind kind, const char *base, const char *reply, size_t len, size_t chunk,
                   bfs_list_cb cb, void *ctx, bfs_list_stats *stats, bool *truncated, char **next_token);

#endif
