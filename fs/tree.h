/*
 * tree.h - the virtual directory tree of a mount, without libfuse.
 *
 * Nodes are the inodes the kernel knows.  A node lives while the kernel
 * holds lookups on it (nlookup, dropped by bfs_tree_forget), while one of
 * its children lives (each child pins its parent), or while a handle is
 * open on it.  The FUSE inode number of a node is its address (the root is
 * 1); st_ino shown to users is stable across mounts for files (a hash of the
 * dataset id and component).
 *
 * Node kinds:
 *   collection directory  - the root, or a prefix of collection names split
 *                           at '/', which may itself be a collection;
 *                           lists child segments and, for a collection, its
 *                           dataset types
 *   dataId directory      - a collection + dataset type + some dimension
 *                           values; lists the next required dimension's
 *                           values, or the files once all are fixed
 *   file                  - one file record of one dataset
 *
 * Everything is answered from the registry; no data file is opened for
 * metadata (a file size the registry lacks is taken from stat(2)).
 *
 * Threads: every function may be called concurrently.  The node table lock
 * is never held during a registry query.
 */
#ifndef BFS_TREE_H
#define BFS_TREE_H

#include "names.h"
#include "registry.h"
#include "source.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

typedef struct bfs_tree bfs_tree;
typedef struct bfs_node bfs_node;
typedef struct bfs_listing bfs_listing;

typedef struct bfs_tree_opts {
    uid_t uid;           /* owner shown for every entry */
    gid_t gid;
    double listing_ttl;  /* seconds a directory's cached dataset list stays fresh */
    bfs_fetcher *fetcher; /* where bytes come from; NULL: a default one the tree owns */
    size_t max_nodes;    /* node cap (see bfs_tree_trimmer_start); 0: none */
    bool writable;       /* -o rw: mkdir and write targets (below); listings never immutable */
    bool create_types;   /* ingest.create_dataset_types: made levels may stand for a new dataset type */
    const char *replica_dir; /* a top-level directory taking replicas with sidecars (-o rw), or NULL */
} bfs_tree_opts;

/* reg stays owned by the caller and must outlive the tree. */
int bfs_tree_new(bfs_registry *reg, const bfs_tree_opts *opts, bfs_tree **out);
void bfs_tree_free(bfs_tree *t);

#define BFS_ROOT_INO 1

/* The node for a FUSE inode number (root for BFS_ROOT_INO).  The number
 * must be one the tree handed out and that was not forgotten. */
bfs_node *bfs_tree_node(bfs_tree *t, uint64_t ino);
uint64_t bfs_node_ino(const bfs_node *n);
bool bfs_node_is_dir(const bfs_node *n);

/* Resolve name in directory parent.  On success *child has one more
 * lookup (release with bfs_tree_forget) and *st its attributes.
 * -ENOENT when nothing is there, -ENOTDIR when parent is a file. */
int bfs_tree_lookup(bfs_tree *t, bfs_node *parent, const char *name, bfs_node **child, struct stat *st);

/* Drop nlookup lookups. */
void bfs_tree_forget(bfs_tree *t, bfs_node *n, uint64_t nlookup);

void bfs_tree_stat(bfs_tree *t, bfs_node *n, struct stat *st);

/* ---- directory listings ----
 * A listing is a snapshot taken at opendir; readdir pages through it. */
int bfs_tree_opendir(bfs_tree *t, bfs_node *dir, bfs_listing **out);
size_t bfs_listing_count(const bfs_listing *l);
/* Name and attributes of entry i, without creating a node (plain readdir).
 * Entries 0 and 1 are "." and "..". */
const char *bfs_listing_name(bfs_tree *t, bfs_listing *l, size_t i, struct stat *st);
/* Create (or find) the node of entry i >= 2: one more lookup on *child, as
 * bfs_tree_lookup (for READDIRPLUS). */
int bfs_listing_materialize(bfs_tree *t, bfs_listing *l, size_t i, bfs_node **child, struct stat *st);
void bfs_listing_free(bfs_tree *t, bfs_listing *l);
/* Listings without opendir (the kernel's FUSE_CAP_NO_OPENDIR_SUPPORT): the
 * directory node keeps the listing being paged through.  off == 0 builds a
 * fresh one; a later offset reuses it (or builds one if it was dropped).
 * Each call returns a reference for bfs_tree_listing_done, which also drops
 * the node's copy once eof was reached. */
int bfs_tree_listing_at(bfs_tree *t, bfs_node *dir, uint64_t off, bfs_listing **out);
void bfs_tree_listing_done(bfs_tree *t, bfs_node *dir, bfs_listing *l, bool eof);

/* True when the listing cannot change while the mount lives (the files of
 * one dataId in a RUN collection), so the kernel may cache it. */
bool bfs_listing_immutable(const bfs_listing *l);

/* ---- files ---- */

/* Open the bytes of a file node.  -EISDIR for directories; -EIO (logged
 * once per node) when the registry names a file the datastore lacks. */
int bfs_tree_open(bfs_tree *t, bfs_node *n, bfs_source **out);
/* Pin/unpin a node for the lifetime of an open handle. */
void bfs_node_hold(bfs_tree *t, bfs_node *n);
void bfs_node_release(bfs_tree *t, bfs_node *n);

/* The repository path of a file node's dataset (for the user.butler.*
 * extended attributes): dataset id, run-relative datastore location. */
const char *bfs_node_dataset_id(const bfs_node *n);
const char *bfs_node_location(const bfs_node *n);

/* The size the registry records for a file node's dataset (what stat
 * shows), or -1 when it records none (stat then asks the datastore). */
int64_t bfs_node_recorded_size(const bfs_node *n);

/* The directory n is in (NULL for the root) and n's name there: valid
 * while n is held or looked up (a node pins its parent). */
bfs_node *bfs_node_parent(const bfs_node *n);
const char *bfs_node_name(const bfs_node *n);
/* n's path below the root ("LSSTCam/raw/all"; "" for the root), malloc'd
 * (the caller frees it), or NULL when out of memory; n held or looked up. */
char *bfs_node_path(const bfs_node *n);

/* ---- selections written as mount paths (prefetch, export) ---- */

/* Resolve a path below the mountpoint ("LSSTCam/raw/all/raw/detector=94",
 * components separated by '/', aliases allowed) from the root; *out carries
 * one lookup (release with bfs_tree_forget).  -EINVAL for the root itself
 * (an empty path: the whole repository is almost never meant), else the
 * errors of bfs_tree_lookup. */
int bfs_tree_resolve(bfs_tree *t, const char *path, bfs_node **out);

/* Call cb for every file at or below n, which carries one lookup that this
 * call takes over; path is n's path, to which each file's names are
 * appended.  cb takes over the file's lookup (and must release it, or keep
 * the node) and sees its path (valid during the call).  Stops at the first
 * failure or non-zero cb return, which is returned; *errpath (may be NULL)
 * then gets the malloc'd path of the directory that could not be listed. */
typedef int (*bfs_tree_file_cb)(void *ctx, bfs_node *file, const char *path);
int bfs_tree_collect_files(bfs_tree *t, bfs_node *n, const char *path, bfs_tree_file_cb cb, void *ctx,
                           char **errpath);

/* Statistics for tests and --debug: live nodes. */
size_t bfs_tree_live_nodes(bfs_tree *t);

/* ---- the node cap ----
 * The kernel keeps what it looked up until memory pressure, and each node
 * it knows costs the daemon memory.  With opts.max_nodes set, the least
 * recently used nodes that nothing is open on or below are handed back
 * once the table passes the cap: evict is asked to make the kernel drop the
 * entry name of directory parent (libfuse: fuse_lowlevel_notify_inval_entry),
 * after which the kernel sends FORGET for it and everything it had below
 * it.  evict runs with no tree lock held, never inside a request; it
 * returns 0 or -errno (-ENOENT: the kernel did not have the entry). */
/* The mount's default cap: a daemon that walked 1M datasets stays under
 * 100 MiB RSS with it (docs/performance.md). */
#define BFS_DEFAULT_MAX_NODES 49152

typedef int (*bfs_tree_evict_fn)(void *ctx, uint64_t parent_ino, const char *name);

/* One trimming pass, now, in the calling thread: pick victims enough to
 * bring the table down to target nodes once the kernel forgets them, oldest
 * first, and call evict for each.  Returns the number of victims, or
 * -ENOMEM.  Victims are not picked again until they are looked up again. */
int bfs_tree_trim(bfs_tree *t, size_t target, bfs_tree_evict_fn evict, void *ctx);

/* Run trimming passes on a thread of the tree's while the table is above
 * opts.max_nodes, down to 7/8 of it (nothing when max_nodes is 0).  ctx is
 * borrowed until bfs_tree_trimmer_stop (also done by bfs_tree_free).
 * 0 or -errno. */
int bfs_tree_trimmer_start(bfs_tree *t, bfs_tree_evict_fn evict, void *ctx);
void bfs_tree_trimmer_stop(bfs_tree *t);

typedef struct bfs_node_stats {
    size_t nodes;              /* live nodes (the root not counted) */
    size_t max_nodes;          /* the cap; 0: none */
    uint64_t trims;            /* trimming passes */
    uint64_t victims;          /* entries the kernel was asked to drop */
    uint64_t invalidations;    /* ... that it dropped */
    uint64_t inval_failed;     /* ... that it no longer had, or could not drop */
} bfs_node_stats;
void bfs_tree_node_stats(bfs_tree *t, bfs_node_stats *st);

/* ---- the write side (opts.writable) ----
 *
 * The tree turns a directory into where a file written there goes; writers/
 * never parses paths.  Directories made by mkdir live in this mount's
 * memory only (pinned until unmount or rmdir) until files make them real: a
 * collection path level, a dataset type below a RUN, a dimension value below
 * a dataset type (an alternate key such as detector=R22_S11 is resolved, as
 * lookups resolve it). */

/* Make directory name in parent: one more lookup on *child, as
 * bfs_tree_lookup.  -EEXIST when the name resolves already; -EINVAL for a
 * name that cannot be a collection segment, a dimension of the type, or a
 * known alternate key; -EACCES where the layout has no directories of that
 * kind (below a full dataId; a dataset type below a collection that is not a
 * RUN); -EROFS when the tree is not writable.  When why is not NULL, an
 * -EINVAL or -EACCES sets *why to a static sentence for the log. */
int bfs_tree_mkdir(bfs_tree *t, bfs_node *parent, const char *name, bfs_node **child, struct stat *st,
                   const char **why);

/* Undo a mkdir (rmdir): n, a directory mkdir made (the caller holds a
 * lookup on it), is no longer listed or found, and is freed once the kernel
 * forgets it, if nothing is below it: no entry in its listing (a dataset,
 * a collection, a value, a directory made below it) and no node below it
 * the kernel knows.  The caller checks for files being written in it.  0;
 * -EPERM when n was not made by mkdir, is the replica directory or has
 * become a registered collection (a RUN stays once registered);
 * -ENOTEMPTY; errors of listing it. */
int bfs_tree_unmake(bfs_tree *t, bfs_node *n);

/* Make opts.replica_dir at the root (at mount time), so that it is there
 * without a mkdir; nothing is made inside it.  0 or negative errno. */
int bfs_tree_make_replica_dir(bfs_tree *t);

/* Where a file created in dir goes.  Strings are borrowed from dir and its
 * ancestors and from the registry's catalog: valid while the caller holds
 * dir (a FUSE request on it does). */
typedef struct bfs_write_target {
    const char *run;            /* the RUN collection's name (set for a partial dataId too, refused) */
    bool run_exists;            /* false: a path level made by mkdir; register the RUN first */
    const char *dataset_type;   /* NULL: dir is the run's own directory (raw ingest) */
    bool replica;               /* dir is opts.replica_dir (run is its name): replicas and their sidecars */
    const char *dim_names[BFS_MAX_DIMS];
    const char *dim_values[BFS_MAX_DIMS]; /* aliases resolved */
    int ndims;
    /* a dataset type to be (opts.create_types): levels made by mkdir,
     * RUN/<type>/<dim>=<value>/..., the type unknown to the catalog (or
     * made since, with these dimensions); the strings above then point
     * into the buffers below */
    bool new_type;
    uint64_t type_parent_ino;   /* the RUN's directory, and ... */
    const char *type_entry;     /* ... the type's entry in it: drop it from the kernel's cache once real */
    char type_buf[BFS_NAME_MAX];
    char name_buf[BFS_MAX_DIMS][64];
    char value_buf[BFS_MAX_DIMS][BFS_MAX_VALUE];
    const char *why;            /* when refused: why, one static sentence for the log */
} bfs_write_target;
/* 0, -EACCES when dir takes no files (the root, a path level that is no
 * collection, a collection that is not a RUN, a partial dataId), -ENOTDIR,
 * -EROFS when the tree is not writable, -EINVAL for a dataset type to be
 * whose levels repeat a dimension or differ from the type made since; out->why
 * then says why in one sentence.  A directory made by mkdir that has a
 * collection below it since is a path level, not a RUN to be. */
int bfs_tree_write_target(bfs_tree *t, bfs_node *dir, bfs_write_target *out);

/* The registry changed below dir (a RUN was registered, a file ingested):
 * reload the catalog now and forget dir's cached file list. */
void bfs_tree_changed(bfs_tree *t, bfs_node *dir);

/* A dataset of type dtype with the dataId names[i] = values[i] (ndims of
 * them) was just registered through a file written into dir (a RUN's own
 * directory, or a dataId directory in it): drop the daemon's cached files
 * of every dataId directory of that RUN that the
 * kernel was given and that this dataset belongs in (whatever order its
 * levels were walked in), and call refresh(ctx, ino) for dir and each of
 * them and their dataset type directory, outside the tree's lock (dir's own
 * files are dropped by bfs_tree_changed, called first), so that the kernel
 * drops its copies of their listings too.  At most 64 directories (a
 * dataset's levels are a handful).  The number refreshed. */
typedef void (*bfs_tree_refresh_fn)(void *ctx, uint64_t ino);
int bfs_tree_dataset_added(bfs_tree *t, bfs_node *dir, const char *dtype, int ndims,
                           const char *const names[], const char *const values[], bfs_tree_refresh_fn refresh,
                           void *ctx);

/* Datasets were removed from the registry, anywhere (local retention in
 * this process): reload the catalog now and treat every cached file list
 * as stale, so each directory asks the registry at its next listing.  The
 * kernel drops its own copy of a listing when the directory's mtime (the
 * registry's last commit) is seen to change, within dir_timeout. */
void bfs_tree_expire_listings(bfs_tree *t);

/* Datasets were removed from the registry by someone other than a FUSE
 * request (local retention: the mount's own thread): ids are their ids
 * (32 lowercase hex digits).  The file lists cached for their dataId
 * directories are dropped (read again at the next listing), and evict (as
 * the trimmer's, may be NULL) asks the kernel to drop the entries of their
 * files and of those directories, so that neither a listing nor a path the
 * kernel knew shows them.  Never call it from a request handler. */
void bfs_tree_datasets_gone(bfs_tree *t, const char *const *ids, size_t n, bfs_tree_evict_fn evict, void *ctx);

#endif
