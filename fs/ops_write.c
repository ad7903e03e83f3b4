/*
 * ops_write.c - the FUSE callbacks a writable mount (-o rw) adds: create,
 * write, flush, fsync, mkdir, setattr, and the callbacks of files being
 * written.  Thin like ops.c: the tree says where a file goes
 * (bfs_tree_write_target), writers/ ingests it (writers.h), and this file
 * only translates and replies.  docs/ingest.md gives the semantics.
 *
 * Inode numbers.  A tree node's number is its address; a file being
 * written (an upload) is not a tree node, and gets its upload's address
 * with the low bit set (allocations are aligned, so the two never meet).
 * Each entry reply for an upload takes a reference on it and FORGET drops
 * them, as the tree counts lookups.
 *
 * The close outcome.  FLUSH (every close(2)) and FSYNC of a descriptor that
 * was opened for writing seal the upload; the reply waits for the outcome
 * and is sent from the ingest's worker thread (libfuse allows a reply from
 * any thread), so no FUSE thread waits while a file is validated.
 */
#include "caller.h"
#include "ops.h"

#include "log.h"
#include "sidecar.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define OPSW_TAG "ingest"

static bfs_fs *fs_of(fuse_req_t req) { return fuse_req_userdata(req); }

static bool is_upload(fuse_ino_t ino) { return (ino & 1) != 0 && ino != FUSE_ROOT_ID; }
static bfs_upload *upload_of(fuse_ino_t ino) { return (bfs_upload *)(uintptr_t)(ino & ~(fuse_ino_t)1); }
static fuse_ino_t upload_ino(bfs_upload *u) { return (fuse_ino_t)(uintptr_t)u | 1; }

/* An open descriptor of an upload. */
struct upload_handle {
    bfs_upload *u;    /* one reference */
    bfs_node *dir;    /* held: the directory the file was created in (NULL when opened by name) */
    bool writable;
    /* a file of a dataset type its path created: the kernel's entry of the
     * level made for the type, dropped once the file is ingested */
    uint64_t type_parent;
    char *type_entry; /* owned, or NULL */
};

/* A descriptor's handle is an upload's when its low bit is set (handles
 * are allocations, so the read side's never has it): a dataset written
 * again under its own name is an upload's descriptor on the dataset's
 * inode, so the callbacks of descriptors ask the handle, not the inode. */
static bool fh_is_upload(const struct fuse_file_info *fi) { return fi && (fi->fh & 1); }
static struct upload_handle *handle_of(const struct fuse_file_info *fi)
{
    return (struct upload_handle *)(uintptr_t)(fi->fh & ~(uint64_t)1);
}
static void set_handle(struct fuse_file_info *fi, struct upload_handle *h) { fi->fh = (uint64_t)(uintptr_t)h | 1; }

/* Drop a descriptor's handle: its writer slot, its reference and its
 * directory. */
static void release_handle(bfs_fs *fs, struct upload_handle *h)
{
    if (h->writable)
        bfs_upload_drop_writer(h->u);
    bfs_upload_put(h->u);
    if (h->dir)
        bfs_node_release(fs->tree, h->dir);
    free(h->type_entry);
    free(h);
}

static void upload_attr(bfs_fs *fs, bfs_upload *u, struct stat *st)
{
    bfs_upload_info info;
    bfs_upload_stat(u, &info);
    memset(st, 0, sizeof *st);
    st->st_ino = upload_ino(u);
    /* an ingested file is immutable: read-only from then on, but for a
     * raw's name in its RUN's directory, which may be written again (a
     * new upload: bfs_upload_rewrite) */
    bool immutable = info.sealed && info.outcome == 0 && !info.rewritable;
    st->st_mode = S_IFREG | (immutable ? 0444 : 0644);
    st->st_nlink = 1;
    st->st_uid = getuid();
    st->st_gid = getgid();
    st->st_size = info.size;
    st->st_blksize = 1 << 20;
    st->st_blocks = (info.size + 511) / 512;
    st->st_mtim.tv_sec = info.mtime_ns / 1000000000;
    st->st_mtim.tv_nsec = info.mtime_ns % 1000000000;
    st->st_atim = st->st_ctim = st->st_mtim;
}

/* An entry for u, taking one reference for the kernel's lookup count. */
static void upload_entry(bfs_fs *fs, bfs_upload *u, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof *e);
    bfs_upload_get(u);
    e->ino = upload_ino(u);
    upload_attr(fs, u, &e->attr);
    e->entry_timeout = 1; /* the name leaves the inbox after ingest.inbox_ttl */
    e->attr_timeout = 0;  /* the size changes while it is written */
}

/* The ingest's target of a file called name where wt says it goes
 * (borrowing wt's strings and name). */
static bfs_ingest_target ingest_target(const bfs_write_target *wt, const char *name)
{
    return (bfs_ingest_target){.run = wt->run, .dataset_type = wt->dataset_type, .dim_names = wt->dim_names,
                               .dim_values = wt->dim_values, .ndims = wt->ndims, .name = name,
                               .replica = wt->replica};
}

/* The upload written as name in directory dir (one reference), or NULL. */
static bfs_upload *upload_at(bfs_fs *fs, bfs_node *dir, const char *name)
{
    bfs_write_target wt;
    bfs_upload *u;
    if (!fs->ing || bfs_tree_write_target(fs->tree, dir, &wt) < 0)
        return NULL;
    bfs_ingest_target it = ingest_target(&wt, name);
    return bfs_upload_find(fs->ing, &it, &u) == 0 ? u : NULL;
}

bool bfs_opsw_lookup_inbox(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    bfs_fs *fs = fs_of(req);
    bfs_upload *u = upload_at(fs, bfs_tree_node(fs->tree, parent), name);
    if (!u)
        return false;
    struct fuse_entry_param e;
    upload_entry(fs, u, &e);
    bfs_upload_put(u);
    if (fuse_reply_entry(req, &e) != 0)
        bfs_upload_put(u); /* the kernel never saw it */
    return true;
}

struct inbox_fill {
    fuse_req_t req;
    bfs_fs *fs;
    char *buf;
    size_t size, used;
    off_t next;   /* the offset of the entry being added */
    off_t skip;   /* entries before the one asked for */
    bool plus, full;
};

static int inbox_one(void *ctx, const bfs_upload_info *info)
{
    struct inbox_fill *f = ctx;
    if (f->full)
        return 0;
    f->next++;
    if (f->skip > 0) {
        f->skip--;
        return 0;
    }
    size_t need, room = f->size - f->used;
    if (f->plus) {
        struct fuse_entry_param e;
        upload_entry(f->fs, info->upload, &e); /* the entry's lookup reference */
        need = fuse_add_direntry_plus(f->req, f->buf + f->used, room, info->name, &e, f->next);
        if (need > room)
            bfs_upload_put(info->upload);
    } else {
        struct stat st;
        upload_attr(f->fs, info->upload, &st);
        need = fuse_add_direntry(f->req, f->buf + f->used, room, info->name, &st, f->next);
    }
    if (need > room)
        f->full = true;
    else
        f->used += need;
    return 0;
}

size_t bfs_opsw_readdir_inbox(fuse_req_t req, fuse_ino_t ino, char *buf, size_t size, size_t used, off_t base,
                              off_t off, bool plus)
{
    bfs_fs *fs = fs_of(req);
    bfs_write_target wt;
    if (!fs->ing || bfs_tree_write_target(fs->tree, bfs_tree_node(fs->tree, ino), &wt) < 0 || wt.dataset_type)
        return used;
    struct inbox_fill f = {req, fs, buf, size, used, base, off > base ? off - base : 0, plus, false};
    bfs_ingest_inbox(fs->ing, wt.run, inbox_one, &f);
    return f.used;
}

static void opw_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    if (!is_upload(ino)) {
        bfs_fuse_ops.forget(req, ino, nlookup);
        return;
    }
    for (uint64_t i = 0; i < nlookup; i++)
        bfs_upload_put(upload_of(ino));
    fuse_reply_none(req);
}

static void opw_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    bfs_fs *fs = fs_of(req);
    for (size_t i = 0; i < count; i++) {
        if (!is_upload(forgets[i].ino)) {
            bfs_tree_forget(fs->tree, bfs_tree_node(fs->tree, forgets[i].ino), forgets[i].nlookup);
            continue;
        }
        for (uint64_t k = 0; k < forgets[i].nlookup; k++)
            bfs_upload_put(upload_of(forgets[i].ino));
    }
    fuse_reply_none(req);
}

static void opw_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    if (!is_upload(ino)) {
        bfs_fuse_ops.getattr(req, ino, fi);
        return;
    }
    struct stat st;
    upload_attr(fs_of(req), upload_of(ino), &st);
    fuse_reply_attr(req, &st, 0);
}

/* chmod, chown and utimens are accepted and change nothing (cp -p, tar x
 * and install set them after writing); a size change is a truncate of a
 * file being written, and EPERM for a dataset (datasets are immutable). */
static void opw_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                        struct fuse_file_info *fi)
{
    bfs_fs *fs = fs_of(req);
    struct stat st;
    if (!is_upload(ino) && !fh_is_upload(fi)) {
        bfs_node *n = bfs_tree_node(fs->tree, ino);
        if (to_set & FUSE_SET_ATTR_SIZE) {
            fuse_reply_err(req, EPERM);
            return;
        }
        bfs_tree_stat(fs->tree, n, &st);
        fuse_reply_attr(req, &st, bfs_node_is_dir(n) ? fs->dir_timeout : fs->file_timeout);
        return;
    }
    /* a file being written, or a dataset being written again through
     * this descriptor (ftruncate of it) */
    bfs_upload *u = fh_is_upload(fi) ? handle_of(fi)->u : upload_of(ino);
    if (to_set & FUSE_SET_ATTR_SIZE) {
        int ret = bfs_upload_truncate(u, attr->st_size);
        if (ret < 0) {
            fuse_reply_err(req, -ret);
            return;
        }
    }
    upload_attr(fs, u, &st);
    st.st_ino = ino;
    fuse_reply_attr(req, &st, 0);
}

/* Say in the log why name could not be made in dir: the caller gets only
 * an errno.  (EROFS, the read-only mount, is not worth a line each.) */
static void refused_name(bfs_node *dir, const char *what, const char *name, int err, const char *why)
{
    char *where = bfs_node_path(dir);
    bfs_note(OPSW_TAG, "cannot create %s /%s%s%s in the mount (%s): %s", what, where ? where : "?",
             where && !*where ? "" : "/", name, strerror(-err), why ? why : "refused");
    free(where);
}

static void opw_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    bfs_fs *fs = fs_of(req);
    bfs_node *dir = bfs_tree_node(fs->tree, parent), *child;
    struct stat st;
    const char *why = NULL;
    int ret = bfs_tree_mkdir(fs->tree, dir, name, &child, &st, &why);
    bfs_write_target wt;
    if (ret == 0)
        bfs_tree_write_target(fs->tree, child, &wt); /* wt.run: also below a partial dataId */
    if (ret == 0 && wt.run && bfs_ingest_readonly(fs->ing, wt.run)) {
        /* in a read-only collection, or one to be: no file could be
         * written below it, so it is not made */
        bfs_tree_unmake(fs->tree, child);
        bfs_tree_forget(fs->tree, child, 1);
        why = "a read-only collection (ingest.readonly_collections)";
        ret = -EROFS;
    }
    if (ret < 0) {
        if (why)
            refused_name(dir, "directory", name, ret, why);
        fuse_reply_err(req, -ret);
        return;
    }
    struct fuse_entry_param e = {.ino = bfs_node_ino(child), .attr = st,
                                 .attr_timeout = fs->dir_timeout, .entry_timeout = fs->dir_timeout};
    if (fuse_reply_entry(req, &e) != 0)
        bfs_tree_forget(fs->tree, child, 1);
}

/* Register the RUN that a directory made by mkdir stands for. */
static int ensure_run(bfs_fs *fs, bfs_node *dir, const bfs_write_target *wt)
{
    if (wt->run_exists)
        return 0;
    int ret = bfs_ingest_make_run(fs->ing, wt->run);
    if (ret < 0)
        return ret;
    bfs_tree_changed(fs->tree, dir);
    bfs_note(OPSW_TAG, "created RUN collection %s", wt->run);
    return 0;
}

/* Create the dataset type a path names (wt->new_type), unless it exists. */
static int ensure_type(bfs_fs *fs, bfs_node *dir, const bfs_write_target *wt, const char *name)
{
    if (!wt->new_type || bfs_catalog_dataset_type(bfs_registry_catalog(fs->reg), wt->dataset_type))
        return 0;
    int ret = bfs_ingest_make_dataset_type(fs->ing, wt->dataset_type, wt->dim_names, wt->ndims, name);
    if (ret == 0)
        bfs_tree_changed(fs->tree, dir);
    return ret == -EPERM ? -EACCES : ret;
}

static void opw_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                       struct fuse_file_info *fi)
{
    bfs_fs *fs = fs_of(req);
    bfs_node *dir = bfs_tree_node(fs->tree, parent);
    bfs_write_target wt;
    int ret = S_ISREG(mode) ? bfs_tree_write_target(fs->tree, dir, &wt) : -EPERM;
    bfs_ingest_target it = {0};
    char *where = NULL;
    if (ret < 0 && S_ISREG(mode) && ret != -EROFS)
        refused_name(dir, "file", name, ret, wt.why);
    if (ret == 0) {
        it = ingest_target(&wt, name);
        ret = bfs_upload_may_begin(fs->ing, &it); /* before a RUN or type is made for it */
    }
    if (ret == 0)
        ret = (it.dir = where = bfs_node_path(dir)) ? 0 : -ENOMEM;
    if (ret == 0) /* the type first: a type that cannot be made leaves no empty RUN behind */
        ret = ensure_type(fs, dir, &wt, name);
    if (ret == 0)
        ret = ensure_run(fs, dir, &wt);
    struct upload_handle *h = NULL;
    if (ret == 0)
        ret = (h = calloc(1, sizeof *h)) ? 0 : -ENOMEM;
    if (ret == 0)
        ret = bfs_upload_begin(fs->ing, &it, fuse_req_ctx(req)->uid, &h->u);
    free(where);
    if (ret < 0) {
        free(h);
        fuse_reply_err(req, -ret);
        return;
    }
    h->writable = true;
    h->dir = dir;
    if (wt.new_type) {
        h->type_parent = wt.type_parent_ino;
        h->type_entry = strdup(wt.type_entry); /* NULL: the entry times out instead */
    }
    bfs_node_hold(fs->tree, dir);
    struct fuse_entry_param e;
    upload_entry(fs, h->u, &e);
    set_handle(fi, h);
    fi->direct_io = 1; /* every write reaches the spool as it is made */
    if (fuse_reply_create(req, &e, fi) != 0) {
        bfs_upload_put(h->u); /* the entry's reference */
        release_handle(fs, h);
    }
}

/* h->dir for an upload opened by name (written again), so that its seal
 * updates the listings as a create's does: its RUN's own directory, also
 * for a file at a dataId path (bfs_tree_dataset_added finds the dataId
 * directories from there; a refused one's name then keeps showing the
 * ingested upload, which is right).  Left NULL when the directory is gone:
 * the listings then time out instead. */
static void run_dir(bfs_fs *fs, struct upload_handle *h)
{
    bfs_upload_info info;
    bfs_upload_stat(h->u, &info);
    bfs_node *dir;
    if (bfs_tree_resolve(fs->tree, info.run, &dir) == 0) {
        bfs_node_hold(fs->tree, dir);
        bfs_tree_forget(fs->tree, dir, 1);
        h->dir = dir;
    }
}

/* A dataset's file opened for writing with O_TRUNC (a copy run twice to
 * the dataset's own name): a new upload of that name at the dataset's
 * dataId, whose close says whether the bytes are the dataset's (a
 * duplicate: 0) or not (EEXIST); the dataset itself never changes.  EPERM
 * for a file not in a RUN's dataId directory. */
static int dataset_rewrite(fuse_req_t req, bfs_node *n, struct upload_handle **out)
{
    bfs_fs *fs = fs_of(req);
    bfs_node *dir = bfs_node_is_dir(n) ? NULL : bfs_node_parent(n);
    bfs_write_target wt;
    if (!fs->ing || !dir || bfs_tree_write_target(fs->tree, dir, &wt) < 0 || !wt.dataset_type || !wt.run_exists ||
        wt.replica)
        return -EPERM;
    bfs_ingest_target it = ingest_target(&wt, bfs_node_name(n));
    char *where = bfs_node_path(dir);
    struct upload_handle *h = where ? calloc(1, sizeof *h) : NULL;
    if (!h) {
        free(where);
        return -ENOMEM;
    }
    it.dir = where;
    int ret = bfs_upload_begin(fs->ing, &it, fuse_req_ctx(req)->uid, &h->u);
    free(where);
    if (ret < 0) {
        free(h);
        return ret;
    }
    h->writable = true;
    h->dir = dir;
    bfs_node_hold(fs->tree, dir);
    *out = h;
    return 0;
}

static void opw_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    if (!is_upload(ino)) {
        if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
            /* an ingested dataset is immutable: only written again whole */
            struct upload_handle *h = NULL;
            int ret = fi->flags & O_TRUNC && (fi->flags & O_ACCMODE) != O_RDONLY
                          ? dataset_rewrite(req, bfs_tree_node(fs_of(req)->tree, ino), &h)
                          : -EPERM;
            if (ret < 0) {
                fuse_reply_err(req, -ret);
                return;
            }
            set_handle(fi, h);
            fi->direct_io = 1;
            if (fuse_reply_open(req, fi) != 0)
                release_handle(fs_of(req), h);
            return;
        }
        bfs_fuse_ops.open(req, ino, fi);
        return;
    }
    struct upload_handle *h = calloc(1, sizeof *h);
    if (!h) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    h->u = upload_of(ino);
    bfs_upload_get(h->u);
    h->writable = (fi->flags & O_ACCMODE) != O_RDONLY;
    int busy = h->writable ? bfs_upload_take_writer(h->u) : bfs_upload_take_reader(h->u);
    bool fresh = false;
    if (busy == -EPERM && (fi->flags & O_TRUNC)) {
        /* an ingested raw's name written again (cp run twice): a new
         * upload under that name; this inode still shows the first */
        bfs_upload *again;
        busy = bfs_upload_rewrite(h->u, fuse_req_ctx(req)->uid, &again);
        if (busy == 0) {
            bfs_upload_put(h->u);
            h->u = again;
            fresh = true;
            run_dir(fs_of(req), h);
        }
    }
    if (busy < 0) {
        bfs_upload_put(h->u);
        free(h);
        fuse_reply_err(req, -busy);
        return;
    }
    int ret = fi->flags & O_TRUNC && !fresh ? bfs_upload_truncate(h->u, 0) : 0;
    set_handle(fi, h);
    fi->direct_io = 1;
    if (ret < 0 || fuse_reply_open(req, fi) != 0) {
        release_handle(fs_of(req), h);
        if (ret < 0)
            fuse_reply_err(req, -ret);
    }
}

static void opw_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    if (!fh_is_upload(fi)) {
        bfs_fuse_ops.read(req, ino, size, off, fi);
        return;
    }
    char *buf = malloc(size ? size : 1);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    ssize_t n = bfs_upload_pread(handle_of(fi)->u, buf, size, off);
    if (n < 0)
        fuse_reply_err(req, (int)-n);
    else
        fuse_reply_buf(req, buf, (size_t)n);
    free(buf);
}

static void opw_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                      struct fuse_file_info *fi)
{
    if (!fh_is_upload(fi)) {
        fuse_reply_err(req, EBADF);
        return;
    }
    ssize_t n = bfs_upload_pwrite(handle_of(fi)->u, buf, size, off);
    if (n < 0)
        fuse_reply_err(req, (int)-n);
    else
        fuse_reply_write(req, (size_t)n);
}

struct seal_ctx {
    fuse_req_t req;
    bfs_fs *fs;
    bfs_node *dir; /* held until the reply, or NULL */
    bfs_upload *u; /* referenced by the ingest until seal_done returns */
    uint64_t type_parent;
    const char *type_entry; /* the handle's (it lives until RELEASE, after this reply) */
    char *name;             /* the file's name in dir (owned), or NULL */
    bool replica;           /* dir is the replica directory */
};

/* bfs_tree_refresh_fn: the kernel drops directory ino's listing. */
static void refresh_dir(void *ctx, uint64_t ino)
{
    int ret = bfs_ops_refresh_dir(ctx, ino);
    if (ret < 0)
        bfs_warn(OPSW_TAG, "cannot drop a directory's listing from the kernel's cache: %s", strerror(-ret));
}

static void seal_done(void *arg, int outcome)
{
    struct seal_ctx *c = arg;
    if (outcome == 0 && c->dir) {
        /* the new file shows at once: in the daemon's listing, and in the
         * kernel's copy of a listing taken while the file was written */
        bfs_tree_changed(c->fs->tree, c->dir);
        /* and in the dataId directories listed before (a raw written into
         * a RUN's directory lands at RUN/raw/instrument=.../...) */
        bfs_upload_info info;
        bfs_upload_stat(c->u, &info);
        if (info.dataset_type)
            bfs_tree_dataset_added(c->fs->tree, c->dir, info.dataset_type, info.ndims, info.dim_names,
                                   info.dim_values, refresh_dir, c->fs);
        else
            refresh_dir(c->fs, bfs_node_ino(c->dir));
    }
    /* the type's own directory replaces the level made for it: the kernel
     * asks again (no lock of that directory is held here) */
    if (outcome == 0 && c->type_entry)
        bfs_ops_evict(c->fs, c->type_parent, c->type_entry);
    /* a refused file's name is gone (its bytes are in quarantine): the
     * kernel forgets it too, so the writer can write that name again now */
    if (outcome < 0 && c->dir && c->name) {
        bfs_ops_evict(c->fs, bfs_node_ino(c->dir), c->name);
        /* a refused sidecar takes its replica with it (into quarantine) */
        size_t n = strlen(c->name), k = strlen(BFS_SIDECAR_SUFFIX);
        if (c->replica && n > k && !strcmp(c->name + n - k, BFS_SIDECAR_SUFFIX)) {
            c->name[n - k] = '\0';
            bfs_ops_evict(c->fs, bfs_node_ino(c->dir), c->name);
        }
    }
    if (c->dir)
        bfs_node_release(c->fs->tree, c->dir);
    fuse_reply_err(c->req, -outcome);
    free(c->name);
    free(c);
}

/* FLUSH and FSYNC of a descriptor opened for writing: the outcome of the
 * seal is close()'s or fsync()'s result. */
static void seal(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct upload_handle *h = handle_of(fi);
    if (!h->writable) {
        fuse_reply_err(req, 0);
        return;
    }
    struct seal_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    c->req = req;
    c->fs = fs_of(req);
    c->dir = h->dir;
    c->u = h->u;
    c->type_parent = h->type_parent;
    c->type_entry = h->type_entry;
    if (h->dir) {
        bfs_upload_info info;
        bfs_upload_stat(h->u, &info);
        c->name = strdup(info.name); /* NULL: the entry times out instead */
        bfs_write_target wt;
        c->replica = bfs_tree_write_target(c->fs->tree, h->dir, &wt) == 0 && wt.replica;
    }
    if (c->dir)
        bfs_node_hold(c->fs->tree, c->dir);
    bfs_upload_seal(h->u, seal_done, c);
}

static void opw_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    if (!fh_is_upload(fi)) {
        fuse_reply_err(req, 0);
        return;
    }
    /* a close the kernel makes for a writer killed mid-file (a reader's
     * close needs no look at /proc) */
    int sig = handle_of(fi)->writable ? bfs_caller_killed_by(fuse_req_ctx(req)->pid) : 0;
    if (sig > 0)
        bfs_upload_writer_killed(handle_of(fi)->u, sig);
    seal(req, ino, fi);
}

static void opw_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    if (!fh_is_upload(fi)) {
        fuse_reply_err(req, 0); /* datasets are durable already */
        return;
    }
    seal(req, ino, fi);
}

static void opw_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    if (!fh_is_upload(fi)) {
        bfs_fuse_ops.release(req, ino, fi);
        return;
    }
    release_handle(fs_of(req), handle_of(fi));
    fuse_reply_err(req, 0);
}

static void opw_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    if (is_upload(ino)) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    bfs_fuse_ops.opendir(req, ino, fi);
}

static void opw_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    if (is_upload(ino)) {
        fuse_reply_err(req, ENODATA);
        return;
    }
    bfs_fuse_ops.getxattr(req, ino, name, size);
}

static void opw_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    if (is_upload(ino)) {
        if (size == 0)
            fuse_reply_xattr(req, 0);
        else
            fuse_reply_buf(req, NULL, 0);
        return;
    }
    bfs_fuse_ops.listxattr(req, ino, size);
}

static void opw_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct statvfs sv = {.f_bsize = 4096, .f_frsize = 4096, .f_namemax = 255};
    bfs_fs *fs = fs_of(req);
    /* the space writes can use: the datastore's file system */
    if (statvfs(bfs_registry_datastore_root(fs->reg), &sv) < 0)
        sv = (struct statvfs){.f_bsize = 4096, .f_frsize = 4096, .f_namemax = 255};
    fuse_reply_statfs(req, &sv);
}

/* The dataset of file name in dir (a RUN's dataId directory) is removed
 * when ingest.allow_remove says so (bfs_ingest_remove); otherwise, and for
 * a name being written or ingested, a directory or a collection that is not
 * a RUN, EPERM: datasets are removed through the Butler.  A name created
 * and never written (touch), or the name a writer gave an ingested file
 * (not the dataset's own), goes (bfs_upload_discard). */
static int unlink_dataset(bfs_fs *fs, bfs_node *dir, const char *name)
{
    bfs_write_target wt;
    bfs_node *n;
    struct stat st;
    /* what a lookup finds first: the tree's entry (a dataset written again
     * under its own name is still that dataset), else a name written */
    int ret = bfs_tree_lookup(fs->tree, dir, name, &n, &st);
    if (ret == -ENOENT) {
        bfs_upload *u = upload_at(fs, dir, name);
        if (!u)
            return ret;
        /* a name being written or ingested: the upload's, not a dataset's;
         * one created and never written (touch) goes, and an ingested
         * name goes alone (bfs_upload_discard) */
        ret = bfs_upload_discard(u);
        bfs_upload_put(u);
        if (ret == 0)
            bfs_tree_changed(fs->tree, dir);
        return ret;
    }
    if (ret < 0)
        return ret;
    const char *id = bfs_node_is_dir(n) ? NULL : bfs_node_dataset_id(n);
    char idbuf[64];
    snprintf(idbuf, sizeof idbuf, "%s", id ? id : "");
    bfs_tree_forget(fs->tree, n, 1);
    if (!fs->ing || bfs_tree_write_target(fs->tree, dir, &wt) < 0 || !wt.dataset_type || !wt.run_exists)
        return -EPERM;
    if (!id)
        return -EISDIR;
    ret = bfs_ingest_remove(fs->ing, wt.run, idbuf);
    if (ret == 0)
        bfs_tree_changed(fs->tree, dir);
    return ret;
}

static void opw_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    bfs_fs *fs = fs_of(req);
    fuse_reply_err(req, -unlink_dataset(fs, bfs_tree_node(fs->tree, parent), name));
}

/* rmdir undoes a mkdir: of a directory made in this mount with nothing in
 * it, no file being written in it either (ENOTEMPTY).  What the registry
 * knows is not removed (EPERM), a file is not a directory (ENOTDIR). */
static void opw_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    bfs_fs *fs = fs_of(req);
    bfs_node *dir = bfs_tree_node(fs->tree, parent), *n;
    struct stat st;
    int ret = bfs_tree_lookup(fs->tree, dir, name, &n, &st);
    if (ret < 0) {
        bfs_upload *u = upload_at(fs, dir, name);
        if (u)
            bfs_upload_put(u);
        fuse_reply_err(req, u ? ENOTDIR : -ret);
        return;
    }
    bfs_upload *u = bfs_node_is_dir(n) ? upload_at(fs, n, NULL) : NULL;
    ret = !bfs_node_is_dir(n) ? -ENOTDIR : u ? -ENOTEMPTY : bfs_tree_unmake(fs->tree, n);
    if (u)
        bfs_upload_put(u);
    bfs_tree_forget(fs->tree, n, 1);
    fuse_reply_err(req, -ret);
}

/* rename of a name just written, within its directory: what rsync does
 * with its temporary file after the close that ingested it.  Datasets and
 * directories are not renamed (EPERM): their names come from the registry. */
static void opw_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                       const char *newname, unsigned int flags)
{
    bfs_fs *fs = fs_of(req);
    if (flags & RENAME_EXCHANGE) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    bfs_upload *u = upload_at(fs, bfs_tree_node(fs->tree, parent), name);
    /* only a written name changes, in its own directory: a move to another
     * directory would be another RUN or dataId, that is another dataset.
     * Not EXDEV, which mv takes as "copy, then unlink": the copy would be
     * ingested there and the unlink remove only the name, so mv would exit
     * 0 with the dataset in both places */
    int ret = !u || newparent != parent ? -EPERM : bfs_upload_rename(u, newname);
    if (u)
        bfs_upload_put(u);
    fuse_reply_err(req, -ret);
}

/* Symbolic links, hard links and special files have no dataset to be:
 * EPERM, as for a create of anything but a regular file (without these the
 * writer got ENOSYS, "Function not implemented"). */
static void opw_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    fuse_reply_err(req, EPERM);
}

static void opw_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    fuse_reply_err(req, EPERM);
}

static void opw_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    fuse_reply_err(req, EPERM);
}

void bfs_ops_writable(struct fuse_lowlevel_ops *ops)
{
    *ops = bfs_fuse_ops;
    ops->forget = opw_forget;
    ops->forget_multi = opw_forget_multi;
    ops->getattr = opw_getattr;
    ops->setattr = opw_setattr;
    ops->mkdir = opw_mkdir;
    ops->create = opw_create;
    ops->open = opw_open;
    ops->read = opw_read;
    ops->write = opw_write;
    ops->flush = opw_flush;
    ops->fsync = opw_fsync;
    ops->release = opw_release;
    ops->opendir = opw_opendir;
    ops->getxattr = opw_getxattr;
    ops->listxattr = opw_listxattr;
    ops->statfs = opw_statfs;
    ops->unlink = opw_unlink;
    ops->rmdir = opw_rmdir;
    ops->rename = opw_rename;
    ops->symlink = opw_symlink;
    ops->mknod = opw_mknod;
    ops->link = opw_link;
}
