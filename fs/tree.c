/*
 * tree.c - the virtual tree (see tree.h).
 *
 * Design.  A lookup or a listing first builds "proto" nodes: complete
 * descriptions of a child that are not yet in the node table.  Handing one
 * to the kernel (lookup, READDIRPLUS) "materializes" it: under the table
 * lock the (parent, name) pair is looked up, an existing node gains a
 * lookup, otherwise a copy of the proto is inserted.  So a name always maps
 * to one node while the kernel knows it, and the registry is queried with
 * no lock held.
 *
 * The deepest dataId level is where almost every directory of a large
 * repository is: one per dataset.  When a directory lists the last free
 * dimension, one find_files query returns every file below it, grouped per
 * value into "leaf sets" that the child nodes keep (for listing_ttl
 * seconds), so `find` and `ls -lR` make one query per directory above the
 * leaves and none per leaf.
 *
 * Lock order: t->lock only; it is never held across a registry call or
 * any I/O.
 */
#include "tree.h"

#include "log.h"
#include "names.h"
#include "strutil.h"

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TREE_TAG "fs"

enum kind { K_COLL, K_DATA, K_FILE };

struct file_info {
    char *name;        /* leaf name as shown */
    char id[33];
    char *location;    /* as stored in the registry */
    char *checksum;    /* the registry's, or NULL (most datastores record none) */
    int64_t size;      /* -1: ask stat(2) */
    int64_t mtime;
};

static void file_info_release(struct file_info *fi)
{
    free(fi->name);
    free(fi->location);
    free(fi->checksum);
    fi->name = fi->location = fi->checksum = NULL;
}

/* The files of one full dataId; shared by listings and nodes. */
struct leaf_set {
    atomic_int refs;
    double built;      /* monotonic seconds */
    size_t n;
    struct file_info *files;
};

/* A node is one malloc: its name follows it.  Directory fields and the file
 * fields share storage, and a file node's strings belong to the leaf set it
 * holds, so a file costs its node and its name (the leaf set is shared with
 * its directory).  A dataId node keeps only the value it fixes; the others
 * are its ancestors' (node_values). */
struct bfs_node {
    bfs_node *parent;
    bfs_node *hnext;   /* hash chain */
    /* the nodes in the table whose parent this is, a list under t->lock:
     * walks of one directory or one RUN's subtree follow it instead of
     * scanning the whole table (list_made, bfs_tree_dataset_added) */
    bfs_node *child, *sib_next, *sib_prev;
    uint64_t nlookup;  /* under t->lock */
    uint32_t pins;     /* live children + open handles, under t->lock */
    uint32_t busy;     /* open handles in this subtree (trimming skips it), under t->lock */
    atomic_uint used;  /* t->epoch when last used; an ancestor's is never older */
    uint8_t kind;      /* enum kind */
    int8_t k;          /* K_DATA: the dimension this node fixes, -1 for a dataset type */
    bool evicting;     /* the kernel was asked to drop it (under t->lock) */
    /* made by mkdir (-o rw): the tree pins it while it lives.  Written
     * under t->lock, read without it too (atomic). */
    atomic_bool made;
    /* made, then given way to its dataset type's directory (remake_below):
     * the kernel's entry for it, until dropped, still means the same
     * dataId, so a create through it is taken (made_type_chain) */
    atomic_bool replaced;
    bool has_made;     /* a child was made by mkdir (under t->lock; never cleared) */
    atomic_bool missing_logged;
    struct leaf_set *leaves;       /* K_DATA with every dimension fixed: cached files;
                                    * K_FILE: the set that owns f's strings */
    union {
        struct {
            /* K_COLL */
            char *prefix;                  /* full collection prefix, "" at the root */
            const bfs_collection *coll;    /* the collection named prefix, if any */
            /* K_DATA */
            const bfs_collection *c;
            const bfs_dataset_type *dt;
            char *value;                   /* of dimension k */
            bfs_listing *paging;           /* listing paged through without opendir */
        };
        struct file_info f;                /* K_FILE: a shallow copy of leaves' entry */
    };
    char name[];
};

struct bfs_tree {
    bfs_registry *reg;
    bfs_tree_opts opts;
    bfs_fetcher *own_fetcher; /* when opts.fetcher was NULL */
    bfs_node *root;
    time_t mount_time;

    pthread_mutex_t lock;
    struct timespec db_mtime;  /* last registry change seen (under lock) */
    double db_checked;         /* when db_mtime was last read (under lock) */
    bfs_node **table;   /* hash on (parent, name) */
    size_t nbuckets;
    size_t nnodes;
    double last_refresh;
    double stale_before;       /* leaf sets built before this are stale (under lock; bfs_tree_expire_listings) */

    /* The node cap (see "trimming" below). */
    atomic_uint epoch;         /* advances every tick_every new nodes */
    size_t tick_every, ticks;  /* under lock */
    pthread_cond_t trim_cond;  /* with lock: the table passed the cap, or stop */
    bool trim_stop;            /* under lock */
    bool trimmer_running;
    pthread_t trimmer;
    bfs_tree_evict_fn evict;
    void *evict_ctx;
    atomic_ullong trims, victims, invalidations, inval_failed;
};

struct bfs_listing {
    bfs_node *dir;
    size_t n;
    bfs_node **protos;  /* [0], [1] are NULL: "." and ".." */
    atomic_int refs;
    bool pinned;        /* from opendir: holds a pin on dir */
    bool writable;      /* the tree's opts.writable when built */
};

static void listing_destroy(bfs_listing *l);
static int node_values(const bfs_node *n, const char *vals[BFS_MAX_DIMS]);
static const bfs_collection *data_coll(bfs_tree *t, const bfs_node *n);

static void listing_put(bfs_listing *l)
{
    if (l && atomic_fetch_sub(&l->refs, 1) == 1)
        listing_destroy(l);
}

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- leaf sets ------------------------------------------------------------ */

static void leaf_set_put(struct leaf_set *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    for (size_t i = 0; i < s->n; i++) {
        file_info_release(&s->files[i]);
    }
    free(s->files);
    free(s);
}

static struct leaf_set *leaf_set_get(struct leaf_set *s)
{
    if (s)
        atomic_fetch_add(&s->refs, 1);
    return s;
}

static int leaf_set_add(struct leaf_set *s, const bfs_dataset_type *dt, const bfs_dataset_file *f)
{
    char name[BFS_NAME_MAX];
    int ret = bfs_names_file(dt, f, name, sizeof name);
    if (ret < 0) {
        bfs_warn(TREE_TAG, "dataset %s: name too long to show, skipped", f->id);
        return 0;
    }
    struct file_info *files = realloc(s->files, (s->n + 1) * sizeof *files);
    if (!files)
        return -ENOMEM;
    s->files = files;
    struct file_info *fi = &files[s->n];
    memset(fi, 0, sizeof *fi);
    /* Two records that would share a name in one directory both get the
     * start of their dataset id: nothing is hidden. */
    for (size_t i = 0; i < s->n; i++) {
        if (!strcmp(files[i].name, name)) {
            char *other = files[i].name;
            char buf[BFS_NAME_MAX];
            snprintf(buf, sizeof buf, "%s", other);
            if (bfs_names_disambiguate(buf, sizeof buf, files[i].id, files[i].location) == 0) {
                char *renamed = strdup(buf);
                if (renamed) {
                    free(other);
                    files[i].name = renamed;
                }
            }
            bfs_names_disambiguate(name, sizeof name, f->id, f->path);
        }
    }
    fi->name = strdup(name);
    fi->location = strdup(f->path);
    fi->checksum = f->checksum && f->checksum[0] ? strdup(f->checksum) : NULL;
    if (!fi->name || !fi->location || (f->checksum && f->checksum[0] && !fi->checksum)) {
        file_info_release(fi);
        return -ENOMEM;
    }
    snprintf(fi->id, sizeof fi->id, "%s", f->id);
    fi->size = f->file_size;
    fi->mtime = f->ingest_unix;
    s->n++;
    return 0;
}

static struct leaf_set *leaf_set_new(void)
{
    struct leaf_set *s = calloc(1, sizeof *s);
    if (s) {
        atomic_init(&s->refs, 1);
        s->built = now_mono();
    }
    return s;
}

struct collect_one {
    const bfs_dataset_type *dt;
    struct leaf_set *set;
    int err;
};

static int collect_one_cb(void *ctx, const bfs_dataset_file *f)
{
    struct collect_one *c = ctx;
    return c->err = leaf_set_add(c->set, c->dt, f);
}

/* The files of a fully fixed dataId node: cached, or queried now. */
static int node_leaves(bfs_tree *t, bfs_node *n, struct leaf_set **out)
{
    pthread_mutex_lock(&t->lock);
    struct leaf_set *s = n->leaves;
    if (s && now_mono() - s->built <= t->opts.listing_ttl && s->built > t->stale_before) {
        *out = leaf_set_get(s);
        pthread_mutex_unlock(&t->lock);
        return 0;
    }
    pthread_mutex_unlock(&t->lock);

    struct collect_one c = {n->dt, leaf_set_new(), 0};
    if (!c.set)
        return -ENOMEM;
    const char *vals[BFS_MAX_DIMS];
    node_values(n, vals);
    const bfs_collection *coll = data_coll(t, n);
    int ret = coll ? bfs_registry_find_files(t->reg, coll, n->dt, vals, collect_one_cb, &c) : 0;
    if (ret < 0) {
        leaf_set_put(c.set);
        /* the registry unreachable (a database outage): the files known
         * before are still the dataset's (datasets are immutable; a removal
         * shows once the registry answers again) */
        pthread_mutex_lock(&t->lock);
        s = n->leaves ? leaf_set_get(n->leaves) : NULL;
        pthread_mutex_unlock(&t->lock);
        if (!s)
            return ret;
        *out = s;
        return 0;
    }
    pthread_mutex_lock(&t->lock);
    struct leaf_set *old = n->leaves;
    n->leaves = leaf_set_get(c.set);
    pthread_mutex_unlock(&t->lock);
    leaf_set_put(old);
    *out = c.set;
    return 0;
}

/* ---- nodes ------------------------------------------------------------------ */

/* The dimension values a K_DATA node fixes: its own and its ancestors'
 * (pointers into them, valid while n lives).  Returns how many are fixed. */
static int node_values(const bfs_node *n, const char *vals[BFS_MAX_DIMS])
{
    int k = 0;
    memset(vals, 0, BFS_MAX_DIMS * sizeof *vals);
    for (const bfs_node *p = n; p && p->kind == K_DATA; p = p->parent) {
        if (p->k >= 0) {
            vals[p->k] = p->value;
            k++;
        }
    }
    return k;
}

static bool all_fixed(const bfs_node *n)
{
    const char *vals[BFS_MAX_DIMS];
    return n->kind == K_DATA && node_values(n, vals) == n->dt->ndims;
}

static void node_free(bfs_node *n)
{
    if (!n)
        return;
    leaf_set_put(n->leaves);
    if (n->kind != K_FILE) {
        free(n->prefix);
        free(n->value);
        listing_put(n->paging);
    }
    free(n);
}

static bfs_node *proto_new(bfs_node *parent, const char *name, enum kind kind)
{
    size_t len = strlen(name) + 1;
    bfs_node *p = calloc(1, sizeof *p + len);
    if (!p)
        return NULL;
    p->parent = parent;
    p->kind = (uint8_t)kind;
    p->k = -1;
    memcpy(p->name, name, len);
    if (parent->kind == K_DATA && kind == K_DATA) {
        p->c = parent->c;
        p->dt = parent->dt;
    }
    return p;
}

static bfs_node *proto_coll(bfs_node *parent, const char *name, const char *prefix, const bfs_collection *coll)
{
    bfs_node *p = proto_new(parent, name, K_COLL);
    if (p && !(p->prefix = strdup(prefix))) {
        node_free(p);
        return NULL;
    }
    if (p)
        p->coll = coll;
    return p;
}

static bfs_node *proto_dtype(bfs_node *parent, const bfs_collection *c, const char *name,
                            const bfs_dataset_type *dt)
{
    bfs_node *p = proto_new(parent, name, K_DATA);
    if (p) {
        p->c = c;
        p->dt = dt;
    }
    return p;
}

static bfs_node *proto_value(bfs_node *parent, const char *name, int k, const char *value)
{
    bfs_node *p = proto_new(parent, name, K_DATA);
    if (p && !(p->value = strdup(value))) {
        node_free(p);
        return NULL;
    }
    if (p)
        p->k = (int8_t)k;
    return p;
}

/* The node of file i of set s (the node holds a reference to s). */
static bfs_node *proto_file(bfs_node *parent, struct leaf_set *s, size_t i)
{
    bfs_node *p = proto_new(parent, s->files[i].name, K_FILE);
    if (p) {
        p->leaves = leaf_set_get(s);
        p->f = s->files[i];
    }
    return p;
}

static size_t bucket_of(const bfs_tree *t, const bfs_node *parent, const char *name)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uintptr_t)parent;
    for (const unsigned char *s = (const unsigned char *)name; *s; s++)
        h = (h ^ *s) * 1099511628211ULL;
    return (size_t)(h % t->nbuckets);
}

static void table_grow(bfs_tree *t)
{
    size_t nb = t->nbuckets * 2;
    bfs_node **table = calloc(nb, sizeof *table);
    if (!table)
        return; /* keep the old, denser table */
    bfs_node **old = t->table;
    size_t ob = t->nbuckets;
    t->table = table;
    t->nbuckets = nb;
    for (size_t i = 0; i < ob; i++) {
        for (bfs_node *n = old[i], *next; n; n = next) {
            next = n->hnext;
            size_t b = bucket_of(t, n->parent, n->name);
            n->hnext = table[b];
            table[b] = n;
        }
    }
    free(old);
}

/* Mark n and its ancestors used in the current epoch.  Lock-free: an
 * ancestor already marked in this epoch had its own ancestors marked when
 * it was, so the walk stops there and a lookup usually writes one word. */
static void touch(bfs_tree *t, bfs_node *n)
{
    if (!t->opts.max_nodes)
        return;
    unsigned e = atomic_load_explicit(&t->epoch, memory_order_relaxed);
    for (bfs_node *p = n; p; p = p->parent) {
        if (atomic_load_explicit(&p->used, memory_order_relaxed) == e)
            break;
        atomic_store_explicit(&p->used, e, memory_order_relaxed);
    }
}

/* Add n to (take it from) its parent's list of children; under t->lock. */
static void children_link(bfs_node *n)
{
    bfs_node *p = n->parent;
    n->sib_prev = NULL;
    n->sib_next = p->child;
    if (p->child)
        p->child->sib_prev = n;
    p->child = n;
}

static void children_unlink(bfs_node *n)
{
    if (n->sib_prev)
        n->sib_prev->sib_next = n->sib_next;
    else
        n->parent->child = n->sib_next;
    if (n->sib_next)
        n->sib_next->sib_prev = n->sib_prev;
    n->sib_next = n->sib_prev = NULL;
}

/* Hand proto to the kernel: find-or-insert under the lock.  Consumes proto. */
static bfs_node *materialize(bfs_tree *t, bfs_node *proto)
{
    pthread_mutex_lock(&t->lock);
    size_t b = bucket_of(t, proto->parent, proto->name);
    for (bfs_node *n = t->table[b]; n; n = n->hnext) {
        if (n->parent == proto->parent && !strcmp(n->name, proto->name) && n->kind == proto->kind) {
            n->nlookup++;
            n->evicting = false; /* the kernel has it (again) */
            /* a fresher leaf set replaces a stale one (a file's set owns its strings) */
            if (n->kind == K_DATA && proto->leaves && (!n->leaves || n->leaves->built < proto->leaves->built)) {
                struct leaf_set *old = n->leaves;
                n->leaves = proto->leaves;
                proto->leaves = old;
            }
            pthread_mutex_unlock(&t->lock);
            touch(t, n);
            node_free(proto);
            return n;
        }
    }
    proto->nlookup = 1;
    proto->hnext = t->table[b];
    t->table[b] = proto;
    proto->parent->pins++;
    children_link(proto);
    /* the kernel still uses what it was asked to drop (a cwd): count it as staying */
    for (bfs_node *p = proto->parent; p; p = p->parent)
        if (p->evicting)
            p->evicting = false;
    if (++t->nnodes > t->nbuckets)
        table_grow(t);
    if (t->opts.max_nodes) {
        if (++t->ticks >= t->tick_every) {
            t->ticks = 0;
            atomic_fetch_add_explicit(&t->epoch, 1, memory_order_relaxed);
        }
        if (t->nnodes > t->opts.max_nodes && t->trimmer_running)
            pthread_cond_signal(&t->trim_cond);
    }
    pthread_mutex_unlock(&t->lock);
    touch(t, proto);
    return proto;
}

/* Drop a node whose lookups and pins reached zero, then its parent's pin.
 * Called with t->lock held. */
static void maybe_free_locked(bfs_tree *t, bfs_node *n)
{
    while (n != t->root && n->nlookup == 0 && n->pins == 0) {
        size_t b = bucket_of(t, n->parent, n->name);
        for (bfs_node **pp = &t->table[b]; *pp; pp = &(*pp)->hnext) {
            if (*pp == n) {
                *pp = n->hnext;
                break;
            }
        }
        t->nnodes--;
        bfs_node *parent = n->parent;
        parent->pins--;
        children_unlink(n);
        node_free(n);
        n = parent;
    }
}

void bfs_tree_forget(bfs_tree *t, bfs_node *n, uint64_t nlookup)
{
    if (n == t->root)
        return;
    pthread_mutex_lock(&t->lock);
    n->nlookup = n->nlookup > nlookup ? n->nlookup - nlookup : 0;
    maybe_free_locked(t, n);
    pthread_mutex_unlock(&t->lock);
}

void bfs_node_hold(bfs_tree *t, bfs_node *n)
{
    pthread_mutex_lock(&t->lock);
    n->pins++;
    for (bfs_node *p = n; p; p = p->parent)
        p->busy++;
    pthread_mutex_unlock(&t->lock);
    touch(t, n);
}

void bfs_node_release(bfs_tree *t, bfs_node *n)
{
    pthread_mutex_lock(&t->lock);
    for (bfs_node *p = n; p; p = p->parent)
        p->busy--;
    n->pins--;
    maybe_free_locked(t, n);
    pthread_mutex_unlock(&t->lock);
}

size_t bfs_tree_live_nodes(bfs_tree *t)
{
    pthread_mutex_lock(&t->lock);
    size_t n = t->nnodes;
    pthread_mutex_unlock(&t->lock);
    return n;
}

bfs_node *bfs_tree_node(bfs_tree *t, uint64_t ino)
{
    return ino == BFS_ROOT_INO ? t->root : (bfs_node *)(uintptr_t)ino;
}

uint64_t bfs_node_ino(const bfs_node *n) { return n->parent ? (uint64_t)(uintptr_t)n : BFS_ROOT_INO; }
bool bfs_node_is_dir(const bfs_node *n) { return n->kind != K_FILE; }
const char *bfs_node_dataset_id(const bfs_node *n) { return n->kind == K_FILE ? n->f.id : NULL; }
const char *bfs_node_location(const bfs_node *n) { return n->kind == K_FILE ? n->f.location : NULL; }
int64_t bfs_node_recorded_size(const bfs_node *n) { return n->kind == K_FILE ? n->f.size : -1; }
bfs_node *bfs_node_parent(const bfs_node *n) { return n->parent; }
const char *bfs_node_name(const bfs_node *n) { return n->name; }

char *bfs_node_path(const bfs_node *n)
{
    size_t len = 0;
    for (const bfs_node *p = n; p && p->parent; p = p->parent)
        len += strlen(p->name) + 1;
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    size_t end = len ? len - 1 : 0; /* no '/' after the last name */
    out[end] = '\0';
    for (const bfs_node *p = n; p && p->parent; p = p->parent) {
        size_t k = strlen(p->name);
        end -= k;
        memcpy(out + end, p->name, k);
        if (end > 0)
            out[--end] = '/';
    }
    return out;
}

/* st_ino of a file: stable across mounts (dataset id + location), with the
 * top bit set so it never equals a directory's (an address). */
static uint64_t file_ino(const struct file_info *fi)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *s = (const unsigned char *)fi->id; *s; s++)
        h = (h ^ *s) * 1099511628211ULL;
    for (const unsigned char *s = (const unsigned char *)fi->location; *s; s++)
        h = (h ^ *s) * 1099511628211ULL;
    return h | (1ULL << 63);
}

static int64_t file_size(bfs_tree *t, const struct file_info *fi)
{
    if (fi->size >= 0)
        return fi->size;
    int64_t size = 0;
    if (bfs_source_stat_size(t->opts.fetcher, bfs_registry_datastore_root(t->reg), fi->location, &size) < 0)
        return 0;
    return size;
}

static void stat_file(bfs_tree *t, const struct file_info *fi, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = file_ino(fi);
    st->st_mode = S_IFREG | 0444;
    st->st_nlink = 1;
    st->st_uid = t->opts.uid;
    st->st_gid = t->opts.gid;
    st->st_size = file_size(t, fi);
    st->st_blksize = 1 << 20;
    st->st_blocks = (st->st_size + 511) / 512;
    st->st_mtime = st->st_ctime = st->st_atime = fi->mtime ? fi->mtime : t->mount_time;
}

static bool ts_after(struct timespec a, struct timespec b)
{
    return a.tv_sec > b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec > b.tv_nsec);
}

/* Directories show the time of the last registry commit as their mtime.
 * The kernel keeps a directory's listing while its mtime is unchanged, so
 * this is what makes new datasets appear once dir_timeout has passed.  The
 * database file (and its WAL) is stat'ed at most once a second. */
static struct timespec registry_mtime(bfs_tree *t)
{
    double now = now_mono();
    pthread_mutex_lock(&t->lock);
    struct timespec m = t->db_mtime;
    bool due = now - t->db_checked >= 1.0;
    if (due)
        t->db_checked = now;
    pthread_mutex_unlock(&t->lock);
    if (!due)
        return m;
    const char *db = bfs_registry_db_path(t->reg);
    char wal[4096];
    struct stat sb;
    snprintf(wal, sizeof wal, "%s-wal", db);
    if (stat(db, &sb) == 0 && ts_after(sb.st_mtim, m))
        m = sb.st_mtim;
    if (stat(wal, &sb) == 0 && ts_after(sb.st_mtim, m))
        m = sb.st_mtim;
    pthread_mutex_lock(&t->lock);
    if (ts_after(m, t->db_mtime))
        t->db_mtime = m;
    m = t->db_mtime;
    pthread_mutex_unlock(&t->lock);
    return m;
}

static void stat_dir(bfs_tree *t, const bfs_node *n, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = bfs_node_ino(n);
    /* the owner's write bit on a writable mount: the kernel checks modes
     * (default_permissions) before a mkdir or create reaches the daemon,
     * and without it only root, which skips the check, could write; the
     * daemon then refuses what is not a place for a file (EACCES, EROFS) */
    st->st_mode = S_IFDIR | (t->opts.writable ? 0755 : 0555);
    st->st_nlink = 1; /* unknown subdirectory count: find(1) must not guess leaves */
    st->st_uid = t->opts.uid;
    st->st_gid = t->opts.gid;
    st->st_size = 4096;
    st->st_blksize = 4096;
    st->st_mtim = st->st_ctim = st->st_atim = registry_mtime(t);
}

void bfs_tree_stat(bfs_tree *t, bfs_node *n, struct stat *st)
{
    touch(t, n);
    if (n->kind == K_FILE)
        stat_file(t, &n->f, st);
    else
        stat_dir(t, n, st);
}

/* ---- collection directories ------------------------------------------------ */

static void maybe_refresh(bfs_tree *t)
{
    double now = now_mono();
    pthread_mutex_lock(&t->lock);
    bool due = now - t->last_refresh >= 1.0;
    if (due)
        t->last_refresh = now;
    pthread_mutex_unlock(&t->lock);
    if (due)
        bfs_registry_refresh(t->reg);
}

/* The child segment of collection name under prefix, or NULL when name is
 * not below prefix. */
static const char *child_segment(const char *name, const char *prefix, size_t *len)
{
    const char *rest = name;
    if (*prefix) {
        size_t pl = strlen(prefix);
        if (strncmp(name, prefix, pl) != 0 || name[pl] != '/')
            return NULL;
        rest = name + pl + 1;
    }
    const char *slash = strchr(rest, '/');
    *len = slash ? (size_t)(slash - rest) : strlen(rest);
    return rest;
}

/* Whether a collection of cat is below prefix through the child segment
 * seg, or through any (seg NULL: a directory named prefix is then a path
 * level of existing collections, which takes no files). */
static bool has_child_segment(const bfs_catalog *cat, const char *prefix, const char *seg)
{
    for (size_t i = 0; i < cat->ncollections; i++) {
        size_t len;
        const char *s = child_segment(cat->collections[i].name, prefix, &len);
        if (s && (!seg || (strlen(seg) == len && !strncmp(s, seg, len))))
            return true;
    }
    return false;
}

static char *join_prefix(const char *prefix, const char *seg)
{
    return *prefix ? bfs_asprintf("%s/%s", prefix, seg) : strdup(seg);
}

/* The collection a K_COLL node names.  A directory made by mkdir names
 * none until its RUN is registered (bfs_tree_write_target); then it is
 * found by name in the current catalog, so the node itself never changes. */
static const bfs_collection *coll_of(bfs_tree *t, const bfs_node *n)
{
    if (n->coll || !n->made)
        return n->coll;
    return bfs_catalog_collection(bfs_registry_catalog(t->reg), n->prefix);
}

/* The directory of the collection a K_DATA node's datasets are in.  Its
 * topmost K_DATA ancestor is a dataset type directory (k < 0) inside the
 * collection's directory; or, below a path level made by mkdir and named
 * like a dataset type (mkdir -p run/calexp/visit=1 before the RUN exists),
 * a dimension value whose parent stands for the type. */
static const bfs_node *data_coll_dir(const bfs_node *n)
{
    while (n->parent->kind == K_DATA)
        n = n->parent;
    return n->k < 0 ? n->parent : n->parent->parent;
}

/* The collection of a K_DATA node: fixed when the node was made, or, for
 * one made before its RUN was registered, looked up by name (NULL until
 * then: such a directory lists nothing but what mkdir made). */
static const bfs_collection *data_coll(bfs_tree *t, const bfs_node *n)
{
    return n->c ? n->c : coll_of(t, data_coll_dir(n));
}

static int resolve_in_coll(bfs_tree *t, bfs_node *parent, const char *name, bfs_node **proto)
{
    const bfs_collection *pcoll = coll_of(t, parent);
    const bfs_catalog *cat = bfs_registry_catalog(t->reg);
    char seg[BFS_NAME_MAX];
    size_t nl = strlen(name), sl = strlen(BFS_TYPE_SUFFIX);

    /* "<type>@type": a dataset type shadowed by a child collection */
    if (pcoll && nl > sl && !strcmp(name + nl - sl, BFS_TYPE_SUFFIX)) {
        char base[BFS_NAME_MAX];
        snprintf(base, sizeof base, "%.*s", (int)(nl - sl), name);
        const bfs_dataset_type *dt = bfs_names_unescape(base, seg, sizeof seg) >= 0
            ? bfs_catalog_dataset_type(cat, seg) : NULL;
        if (dt && bfs_registry_collection_has(t->reg, pcoll, dt) == 1) {
            *proto = proto_dtype(parent, pcoll, name, dt);
            return *proto ? 0 : -ENOMEM;
        }
        return -ENOENT;
    }
    if (bfs_names_unescape(name, seg, sizeof seg) < 0)
        return -ENOENT;
    if (has_child_segment(cat, parent->prefix, seg)) {
        char *full = join_prefix(parent->prefix, seg);
        if (!full)
            return -ENOMEM;
        *proto = proto_coll(parent, name, full, bfs_catalog_collection(cat, full));
        free(full);
        return *proto ? 0 : -ENOMEM;
    }
    if (pcoll) {
        const bfs_dataset_type *dt = bfs_catalog_dataset_type(cat, seg);
        int has = dt ? bfs_registry_collection_has(t->reg, pcoll, dt) : 0;
        if (has < 0)
            return has;
        if (has) {
            *proto = proto_dtype(parent, pcoll, name, dt);
            return *proto ? 0 : -ENOMEM;
        }
    }
    return -ENOENT;
}

struct name_list {
    char **names;
    size_t n, cap;
};

static int name_list_add(struct name_list *l, const char *name)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 32;
        char **names = realloc(l->names, cap * sizeof *names);
        if (!names)
            return -ENOMEM;
        l->names = names;
        l->cap = cap;
    }
    if (!(l->names[l->n] = strdup(name)))
        return -ENOMEM;
    l->n++;
    return 0;
}

static void name_list_free(struct name_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

struct listing_builder {
    bfs_tree *t;
    bfs_listing *l;
    size_t cap;
    struct name_list segs;  /* collection segments, for the @type rule */
    const bfs_collection *coll; /* the collection listed (K_COLL), if any */
    int k;                  /* dimension being listed */
    int err;
};

static int listing_push(struct listing_builder *b, bfs_node *proto)
{
    if (!proto)
        return -ENOMEM;
    if (b->l->n == b->cap) {
        size_t cap = b->cap * 2;
        bfs_node **protos = realloc(b->l->protos, cap * sizeof *protos);
        if (!protos) {
            node_free(proto);
            return -ENOMEM;
        }
        b->l->protos = protos;
        b->cap = cap;
    }
    b->l->protos[b->l->n++] = proto;
    return 0;
}

static int list_dtype_cb(void *ctx, const bfs_dataset_type *dt)
{
    struct listing_builder *b = ctx;
    char name[BFS_NAME_MAX];
    if (bfs_name_escape(dt->name, name, sizeof name) < 0)
        return 0;
    /* the collision rule: a child collection keeps the plain name */
    if (b->segs.n && bsearch(&dt->name, b->segs.names, b->segs.n, sizeof *b->segs.names, cmp_str))
        strncat(name, BFS_TYPE_SUFFIX, sizeof name - strlen(name) - 1);
    return listing_push(b, proto_dtype(b->l->dir, b->coll, name, dt));
}

static int list_coll(struct listing_builder *b)
{
    bfs_node *dir = b->l->dir;
    if (dir == b->t->root)
        maybe_refresh(b->t);
    const bfs_catalog *cat = bfs_registry_catalog(b->t->reg);
    int ret = 0;
    for (size_t i = 0; i < cat->ncollections && ret == 0; i++) {
        size_t len;
        const char *s = child_segment(cat->collections[i].name, dir->prefix, &len);
        if (s) {
            char seg[BFS_NAME_MAX];
            snprintf(seg, sizeof seg, "%.*s", (int)len, s);
            ret = name_list_add(&b->segs, seg);
        }
    }
    if (ret)
        return ret;
    if (b->segs.n)
        qsort(b->segs.names, b->segs.n, sizeof *b->segs.names, cmp_str);
    for (size_t i = 0; i < b->segs.n && ret == 0; i++) {
        if (i && !strcmp(b->segs.names[i], b->segs.names[i - 1]))
            continue;
        char name[BFS_NAME_MAX];
        if (bfs_name_escape(b->segs.names[i], name, sizeof name) < 0)
            continue;
        char *full = join_prefix(dir->prefix, b->segs.names[i]);
        if (!full)
            return -ENOMEM;
        ret = listing_push(b, proto_coll(dir, name, full, bfs_catalog_collection(cat, full)));
        free(full);
    }
    b->coll = coll_of(b->t, dir);
    if (ret == 0 && b->coll)
        ret = bfs_registry_dataset_types_in(b->t->reg, b->coll, list_dtype_cb, b);
    return ret;
}

/* ---- dataId directories ---------------------------------------------------- */

static int first_free_dim(const bfs_node *n, const char *const vals[BFS_MAX_DIMS])
{
    for (int i = 0; i < n->dt->ndims; i++)
        if (!vals[i])
            return i;
    return -1;
}

static int dim_slot(const bfs_dataset_type *dt, const char *dim)
{
    for (int i = 0; i < dt->ndims; i++)
        if (!strcmp(dt->dims[i]->name, dim))
            return i;
    return -1;
}

static int stop_at_first(void *ctx, const char *value) { return 1; }

/* Is there any dataset with the partial dataId values plus values[k] = v? */
static int value_exists(bfs_tree *t, bfs_node *n, int k, const char *v)
{
    const char *vals[BFS_MAX_DIMS];
    node_values(n, vals);
    vals[k] = v;
    const bfs_collection *coll = data_coll(t, n);
    int r = coll ? bfs_registry_list_values(t->reg, coll, n->dt, vals, k, stop_at_first, NULL) : 0;
    return r < 0 ? r : r == 1;
}

static int resolve_in_data(bfs_tree *t, bfs_node *parent, const char *name, bfs_node **proto)
{
    if (all_fixed(parent)) {
        struct leaf_set *s;
        int ret = node_leaves(t, parent, &s);
        if (ret < 0)
            return ret;
        ret = -ENOENT;
        for (size_t i = 0; i < s->n; i++) {
            if (!strcmp(s->files[i].name, name)) {
                *proto = proto_file(parent, s, i);
                ret = *proto ? 0 : -ENOMEM;
                break;
            }
        }
        leaf_set_put(s);
        return ret;
    }
    char dim[64], value[BFS_MAX_VALUE];
    if (bfs_names_parse_dim(name, dim, sizeof dim, value, sizeof value) < 0)
        return -ENOENT;
    int k = dim_slot(parent->dt, dim);
    const char *vals[BFS_MAX_DIMS];
    int fixed = node_values(parent, vals);
    if (k < 0 || vals[k])
        return -ENOENT;
    /* "detector=00" is no alias of detector=0 (docs/paths.md); it may
     * still be an alternate key's text */
    bool canonical = parent->dt->dims[k]->type != BFS_KEY_INT || bfs_names_int_canonical(value);
    /* the value that completes the dataId: the query for its files answers
     * "does it exist" too, and the node keeps them, so a path looked up
     * for the first time costs one query less (a round trip, on PostgreSQL) */
    if (canonical && fixed == parent->dt->ndims - 1) {
        bfs_node *p = proto_value(parent, name, k, value);
        struct leaf_set *s = NULL;
        int ret = p ? node_leaves(t, p, &s) : -ENOMEM;
        bool found = ret == 0 && s->n > 0;
        leaf_set_put(s);
        if (found) {
            *proto = p;
            return 0;
        }
        node_free(p);
        if (ret < 0)
            return ret;
        canonical = false; /* not a primary key value: perhaps an alternate key */
    }
    int ok = canonical ? value_exists(t, parent, k, value) : 0;
    if (ok < 0)
        return ok;
    if (!ok) {
        /* an alternate key: exposure=MC_O_20250415_000060, detector=R22_S11 */
        char primary[BFS_MAX_VALUE];
        if (bfs_registry_resolve_alias(t->reg, parent->dt, vals,
                                       parent->dt->dims[k], value, primary, sizeof primary) < 0)
            return -ENOENT;
        ok = value_exists(t, parent, k, primary);
        if (ok <= 0)
            return ok < 0 ? ok : -ENOENT;
        snprintf(value, sizeof value, "%s", primary);
    }
    *proto = proto_value(parent, name, k, value);
    return *proto ? 0 : -ENOMEM;
}

static int list_value_cb(void *ctx, const char *value)
{
    struct listing_builder *b = ctx;
    bfs_node *dir = b->l->dir;
    char name[BFS_NAME_MAX];
    if (bfs_names_dim_entry(dir->dt->dims[b->k]->name, value, name, sizeof name) < 0)
        return 0;
    return listing_push(b, proto_value(dir, name, b->k, value));
}

/* Last free dimension: one query gives the values and every file below. */
static int list_last_cb(void *ctx, const bfs_dataset_file *f)
{
    struct listing_builder *b = ctx;
    bfs_node *dir = b->l->dir;
    const char *value = f->values[b->k];
    bfs_node *last = b->l->n > 2 ? b->l->protos[b->l->n - 1] : NULL;
    if (!last || strcmp(last->value, value) != 0) {
        char name[BFS_NAME_MAX];
        if (bfs_names_dim_entry(dir->dt->dims[b->k]->name, value, name, sizeof name) < 0)
            return 0;
        int ret = listing_push(b, proto_value(dir, name, b->k, value));
        if (ret)
            return ret;
        last = b->l->protos[b->l->n - 1];
        if (!(last->leaves = leaf_set_new()))
            return -ENOMEM;
    }
    return leaf_set_add(last->leaves, dir->dt, f);
}

static int list_data(struct listing_builder *b)
{
    bfs_node *dir = b->l->dir;
    if (all_fixed(dir)) {
        struct leaf_set *s = NULL;
        int ret = node_leaves(b->t, dir, &s);
        if (ret < 0)
            return ret;
        for (size_t i = 0; ret == 0 && i < s->n; i++)
            ret = listing_push(b, proto_file(dir, s, i));
        leaf_set_put(s);
        return ret;
    }
    const char *vals[BFS_MAX_DIMS];
    int fixed = node_values(dir, vals);
    b->k = first_free_dim(dir, vals);
    const bfs_collection *coll = data_coll(b->t, dir);
    if (!coll)
        return 0;
    if (fixed == dir->dt->ndims - 1)
        return bfs_registry_find_files(b->t->reg, coll, dir->dt, vals, list_last_cb, b);
    return bfs_registry_list_values(b->t->reg, coll, dir->dt, vals, b->k, list_value_cb, b);
}

/* ---- public: lookup, listing, open --------------------------------------- */

/* A directory mkdir made under parent, with one more lookup; NULL when none. */
/* The node named name below parent that the kernel was given before
 * (only one mkdir made, when made_only), counted as looked up again. */
static bfs_node *find_known(bfs_tree *t, bfs_node *parent, const char *name, bool made_only)
{
    pthread_mutex_lock(&t->lock);
    bfs_node *n = t->table[bucket_of(t, parent, name)];
    while (n && !((n->made || !made_only) && n->parent == parent && !strcmp(n->name, name)))
        n = n->hnext;
    if (n) {
        n->nlookup++;
        n->evicting = false;
    }
    pthread_mutex_unlock(&t->lock);
    if (n)
        touch(t, n);
    return n;
}

/* n is no longer a directory mkdir made: the tree's pin (made_insert)
 * goes, and n is freed once the kernel forgets it (under t->lock). */
static void unmake_locked(bfs_node *n)
{
    if (n->made) {
        n->made = false;
        n->pins--;
    }
}

/* Unmake n, which a level made below its dataset type's directory now
 * stands for (n->replaced), and drop the lookup the caller took on it. */
static void replace_and_forget(bfs_tree *t, bfs_node *n)
{
    pthread_mutex_lock(&t->lock);
    unmake_locked(n);
    n->replaced = true;
    pthread_mutex_unlock(&t->lock);
    bfs_tree_forget(t, n, 1);
}

/* A level made for a dataset type to be gives way to the type's directory
 * (bfs_tree_lookup): make again below to what mkdir made below from (the
 * rest of `mkdir -p RUN/type/instrument=X/detector=1 .../detector=2`,
 * before the first file made the type), and unmake from's subtree, which
 * the kernel then forgets.  depth bounds the walk (a dataId's levels). */
static void remake_below(bfs_tree *t, bfs_node *from, bfs_node *to, int depth)
{
    /* every made child (a focal plane's 189 detector levels, say): their
     * names copied under the lock, made again without it */
    size_t n = 0, cap = 0;
    char **names = NULL;
    pthread_mutex_lock(&t->lock);
    for (bfs_node *c = from->child; c; c = c->sib_next)
        cap += c->made;
    names = cap ? malloc(cap * sizeof *names) : NULL;
    for (bfs_node *c = from->child; c && n < cap && names; c = c->sib_next)
        if (c->made && (names[n] = strdup(c->name)) != NULL)
            n++;
    pthread_mutex_unlock(&t->lock);
    if (n < cap)
        bfs_warn(TREE_TAG, "out of memory: %zu directories made before dataset type %s existed are lost below it",
                 cap - n, to->name);
    for (size_t i = 0; i < n; i++) {
        bfs_node *old = find_known(t, from, names[i], true), *made = NULL;
        struct stat st;
        int ret = bfs_tree_mkdir(t, to, names[i], &made, &st, NULL);
        if (ret == -EEXIST)
            ret = bfs_tree_lookup(t, to, names[i], &made, &st);
        if (ret == 0 && old && depth < BFS_MAX_DIMS && made->kind != K_FILE)
            remake_below(t, old, made, depth + 1);
        if (ret == 0)
            bfs_tree_forget(t, made, 1); /* the kernel has not been given this lookup */
        else
            bfs_warn(TREE_TAG, "directory %s, made before dataset type %s existed, cannot be made below it: %s",
                     names[i], to->name, strerror(-ret));
        if (old)
            replace_and_forget(t, old);
        free(names[i]);
    }
    free(names);
}

int bfs_tree_lookup(bfs_tree *t, bfs_node *parent, const char *name, bfs_node **child, struct stat *st)
{
    bfs_node *proto = NULL;
    int ret;
    if (parent->kind == K_FILE)
        return -ENOTDIR;
    if (strlen(name) >= BFS_NAME_MAX)
        return -ENAMETOOLONG;
    /* a directory mkdir made stays the one that name means, also once the
     * registry knows a node of another kind there (the RUN it stood for is
     * registered: "raw" then resolves to the dataset type, whose made
     * children hang below the made node) */
    if (t->opts.writable && (*child = find_known(t, parent, name, true)) != NULL) {
        /* except a level made for a dataset type to be, once that type
         * has datasets in the RUN: the type's directory replaces it */
        if (t->opts.create_types && (*child)->kind == K_COLL && parent->kind == K_COLL &&
            !strchr(name, '=') && resolve_in_coll(t, parent, name, &proto) == 0) {
            if (proto->kind == K_DATA) {
                bfs_node *made = *child;
                *child = materialize(t, proto);
                remake_below(t, made, *child, 0);
                replace_and_forget(t, made); /* the type's directory is what the name means now */
            } else {
                node_free(proto);
            }
        }
        bfs_tree_stat(t, *child, st);
        return 0;
    }
    if (parent->kind == K_COLL) {
        ret = resolve_in_coll(t, parent, name, &proto);
        if (ret == -ENOENT && parent == t->root) {
            /* a collection created since the catalog was loaded */
            maybe_refresh(t);
            ret = resolve_in_coll(t, parent, name, &proto);
        }
    } else {
        ret = resolve_in_data(t, parent, name, &proto);
    }
    /* the registry unreachable (a database outage, logged by the engine):
     * a name it confirmed before still means what it meant (datasets are
     * immutable), so paths the kernel walked before keep working */
    if (ret < 0 && ret != -ENOENT && ret != -ENOMEM && (*child = find_known(t, parent, name, false)) != NULL) {
        bfs_tree_stat(t, *child, st);
        return 0;
    }
    if (ret < 0)
        return ret;
    *child = materialize(t, proto);
    bfs_tree_stat(t, *child, st);
    return 0;
}

/* A copy of made node n, for a listing of its parent (readdirplus finds n
 * again by name and kind, as a lookup does). */
static bfs_node *proto_of_made(const bfs_node *n)
{
    bfs_node *p;
    if (n->kind == K_COLL)
        return proto_coll(n->parent, n->name, n->prefix, n->coll);
    p = n->value ? proto_value(n->parent, n->name, n->k, n->value) : proto_new(n->parent, n->name, K_DATA);
    if (p) {
        p->c = n->c;
        p->dt = n->dt;
    }
    return p;
}

/* The directories mkdir made in b's directory that the registry does not
 * list (yet): a path level, a RUN to be, a dimension value with no dataset
 * so far.  Without them `mkdir x; ls` would not show x. */
static int list_made(struct listing_builder *b)
{
    bfs_tree *t = b->t;
    bfs_node *dir = b->l->dir;
    size_t listed = b->l->n;
    int ret = 0;
    pthread_mutex_lock(&t->lock);
    if (!dir->has_made) {
        pthread_mutex_unlock(&t->lock);
        return 0;
    }
    for (bfs_node *n = dir->child; n && ret == 0; n = n->sib_next) {
        if (!n->made)
            continue;
        bool dup = false;
        for (size_t j = 2; j < listed && !dup; j++)
            dup = !strcmp(b->l->protos[j]->name, n->name);
        if (!dup)
            ret = listing_push(b, proto_of_made(n));
    }
    pthread_mutex_unlock(&t->lock);
    return ret;
}

static int listing_build(bfs_tree *t, bfs_node *dir, bfs_listing **out)
{
    if (dir->kind == K_FILE)
        return -ENOTDIR;
    touch(t, dir);
    struct listing_builder b = {.t = t, .cap = 64};
    b.l = calloc(1, sizeof *b.l);
    if (!b.l)
        return -ENOMEM;
    b.l->dir = dir;
    atomic_init(&b.l->refs, 1);
    b.l->protos = calloc(b.cap, sizeof *b.l->protos);
    if (!b.l->protos) {
        free(b.l);
        return -ENOMEM;
    }
    b.l->n = 2; /* "." and ".." */
    b.l->writable = t->opts.writable;
    int ret = dir->kind == K_COLL ? list_coll(&b) : list_data(&b);
    if (ret == 0)
        ret = list_made(&b);
    name_list_free(&b.segs);
    if (ret < 0) {
        listing_destroy(b.l);
        return ret;
    }
    *out = b.l;
    return 0;
}

int bfs_tree_opendir(bfs_tree *t, bfs_node *dir, bfs_listing **out)
{
    int ret = listing_build(t, dir, out);
    if (ret == 0) {
        (*out)->pinned = true;
        bfs_node_hold(t, dir);
    }
    return ret;
}

int bfs_tree_listing_at(bfs_tree *t, bfs_node *dir, uint64_t off, bfs_listing **out)
{
    if (off != 0) {
        pthread_mutex_lock(&t->lock);
        bfs_listing *l = dir->paging;
        if (l)
            atomic_fetch_add(&l->refs, 1);
        pthread_mutex_unlock(&t->lock);
        if (l) {
            *out = l;
            return 0;
        }
    }
    bfs_listing *l;
    int ret = listing_build(t, dir, &l);
    if (ret < 0)
        return ret;
    atomic_fetch_add(&l->refs, 1); /* one for the node, one for the caller */
    pthread_mutex_lock(&t->lock);
    bfs_listing *old = dir->paging;
    dir->paging = l;
    pthread_mutex_unlock(&t->lock);
    listing_put(old);
    *out = l;
    return 0;
}

void bfs_tree_listing_done(bfs_tree *t, bfs_node *dir, bfs_listing *l, bool eof)
{
    if (eof) {
        pthread_mutex_lock(&t->lock);
        bool mine = dir->paging == l;
        if (mine)
            dir->paging = NULL;
        pthread_mutex_unlock(&t->lock);
        if (mine)
            listing_put(l);
    }
    listing_put(l);
}

size_t bfs_listing_count(const bfs_listing *l) { return l->n; }

bool bfs_listing_immutable(const bfs_listing *l)
{
    /* on a writable mount a dataId's files grow as files are ingested */
    return !l->writable && all_fixed(l->dir) && l->dir->c && l->dir->c->type == BFS_COLL_RUN;
}

const char *bfs_listing_name(bfs_tree *t, bfs_listing *l, size_t i, struct stat *st)
{
    if (i < 2) {
        bfs_node *n = i == 0 || !l->dir->parent ? l->dir : l->dir->parent;
        stat_dir(t, n, st);
        return i == 0 ? "." : "..";
    }
    bfs_node *p = l->protos[i];
    if (p->kind == K_FILE) {
        /* plain readdir reports only the type; no stat(2) for unknown sizes */
        memset(st, 0, sizeof *st);
        st->st_ino = file_ino(&p->f);
        st->st_mode = S_IFREG;
    } else {
        memset(st, 0, sizeof *st);
        st->st_ino = (ino_t)(uintptr_t)p; /* informational only in readdir */
        st->st_mode = S_IFDIR;
    }
    return p->name;
}

static bfs_node *proto_clone(const bfs_node *p)
{
    bfs_node *c = proto_new(p->parent, p->name, (enum kind)p->kind);
    if (!c)
        return NULL;
    c->k = p->k;
    c->leaves = leaf_set_get(p->leaves);
    if (p->kind == K_FILE) {
        c->f = p->f;
        return c;
    }
    c->c = p->c;
    c->dt = p->dt;
    c->coll = p->coll;
    if ((p->value && !(c->value = strdup(p->value))) || (p->prefix && !(c->prefix = strdup(p->prefix)))) {
        node_free(c);
        return NULL;
    }
    return c;
}

int bfs_listing_materialize(bfs_tree *t, bfs_listing *l, size_t i, bfs_node **child, struct stat *st)
{
    if (i < 2 || i >= l->n)
        return -EINVAL;
    bfs_node *c = proto_clone(l->protos[i]);
    if (!c)
        return -ENOMEM;
    *child = materialize(t, c);
    bfs_tree_stat(t, *child, st);
    return 0;
}

static void listing_destroy(bfs_listing *l)
{
    for (size_t i = 2; i < l->n; i++)
        node_free(l->protos[i]);
    free(l->protos);
    free(l);
}

void bfs_listing_free(bfs_tree *t, bfs_listing *l)
{
    if (!l)
        return;
    bfs_node *dir = l->dir;
    bool pinned = l->pinned;
    listing_put(l);
    if (pinned)
        bfs_node_release(t, dir);
}

int bfs_tree_open(bfs_tree *t, bfs_node *n, bfs_source **out)
{
    if (n->kind != K_FILE)
        return -EISDIR;
    const char *root = bfs_registry_datastore_root(t->reg);
    int ret = bfs_source_open(t->opts.fetcher, root, n->f.location, n->f.size, n->f.checksum, out);
    if (ret == 0) {
        int64_t actual = bfs_source_size(*out);
        if (n->f.size >= 0 && actual != n->f.size && !atomic_exchange(&n->missing_logged, true))
            bfs_warn(TREE_TAG, "dataset %s: registry says %lld bytes, datastore file %s has %lld; serving the file as stored",
                     n->f.id, (long long)n->f.size, n->f.location, (long long)actual);
        return 0;
    }
    if (!atomic_exchange(&n->missing_logged, true)) {
        if (ret == -ENOENT)
            bfs_warn(TREE_TAG, "dataset %s (%s): datastore file %s%s is missing", n->f.id, n->f.name,
                     strstr(n->f.location, "://") ? "" : root, n->f.location);
        else if (ret != -EACCES) /* refusals are logged by the fetcher, with the key to set */
            bfs_warn(TREE_TAG, "dataset %s: cannot open %s: %s", n->f.id, n->f.location, strerror(-ret));
    }
    return ret == -EACCES ? -EACCES : -EIO;
}

int bfs_tree_new(bfs_registry *reg, const bfs_tree_opts *opts, bfs_tree **out)
{
    bfs_tree *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->reg = reg;
    t->opts = *opts;
    if (t->opts.listing_ttl <= 0)
        t->opts.listing_ttl = 10;
    /* about 32 epochs span the cap, so trimming can tell old from new */
    t->tick_every = t->opts.max_nodes / 32 > 1 ? t->opts.max_nodes / 32 : 1;
    t->mount_time = time(NULL);
    t->db_mtime.tv_sec = t->mount_time;
    t->db_checked = -1e9;
    t->nbuckets = 4096;
    t->table = calloc(t->nbuckets, sizeof *t->table);
    t->root = calloc(1, sizeof *t->root + 1);
    if (t->root) {
        t->root->kind = K_COLL;
        t->root->k = -1;
        t->root->prefix = strdup("");
    }
    t->last_refresh = now_mono();
    int ret = -ENOMEM;
    if (!t->table || !t->root || !t->root->prefix)
        goto fail;
    if (!t->opts.fetcher) {
        ret = bfs_fetcher_new(NULL, &t->own_fetcher);
        if (ret < 0)
            goto fail;
        t->opts.fetcher = t->own_fetcher;
    }
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->trim_cond, NULL);
    *out = t;
    return 0;
fail:
    free(t->table);
    node_free(t->root);
    free(t);
    return ret;
}

void bfs_tree_free(bfs_tree *t)
{
    if (!t)
        return;
    bfs_tree_trimmer_stop(t);
    for (size_t i = 0; i < t->nbuckets; i++) {
        for (bfs_node *n = t->table[i], *next; n; n = next) {
            next = n->hnext;
            node_free(n);
        }
    }
    free(t->table);
    node_free(t->root);
    bfs_fetcher_free(t->own_fetcher);
    pthread_cond_destroy(&t->trim_cond);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* ---- trimming ----------------------------------------------------------------
 *
 * The kernel keeps a dentry (and so our node) until memory pressure, so
 * without a cap the table holds everything ever looked up.  Past the cap,
 * the least recently used nodes are handed back: the kernel is asked to
 * drop their entries (evict, i.e. FUSE_NOTIFY_INVAL_ENTRY) and it then
 * sends FORGET, which frees them as usual.
 *
 * Recency is an epoch stamp per node, advanced every tick_every new nodes
 * and written without the lock (touch); a directory's stamp is never older
 * than anything below it.  A node is "busy" while an open handle (file or
 * directory) is on it or below it; busy nodes are never picked.
 *
 * One pass: a histogram of the stamps of the pickable nodes gives the
 * oldest epoch A such that the nodes stamped at or before A are enough to
 * come down to the target.  The victims are the roots of the subtrees made
 * of such nodes: a pickable old node whose parent is the root, recent or
 * busy, and not below an entry already being dropped (those nodes count
 * as going).  Dropping a directory entry drops everything the kernel has
 * below it, so `find` costs one request per finished directory rather than
 * one per dataset.  The trimmer thread runs a pass when the table passes
 * the cap and brings it to 7/8 of it (hysteresis: passes are rare), gives
 * the kernel time to send its FORGETs, then returns the free pages. */

struct victim {
    bfs_node *node; /* pinned (and so its parent) from picking to the end of the pass */
    char *name;
    int rc;
};

/* Add n to the victims, pinned (so is its parent) until the kernel was
 * asked: 0 or -ENOMEM. */
static int add_victim(struct victim **v, size_t *nv, size_t *cap, bfs_node *n)
{
    if (bfs_grow((void **)v, cap, *nv + 1, sizeof **v) < 0)
        return -ENOMEM;
    if (!((*v)[*nv].name = strdup(n->name)))
        return -ENOMEM;
    (*v)[*nv].node = n;
    (*v)[(*nv)++].rc = 0;
    n->pins++; /* inode numbers stay theirs until we are done */
    return 0;
}

/* Is an ancestor of n on its way out?  Then n goes with it. */
static bool ancestor_evicting(const bfs_node *n)
{
    for (const bfs_node *p = n->parent; p; p = p->parent)
        if (p->evicting)
            return true;
    return false;
}

static bool pickable(const bfs_node *n) { return n->busy == 0 && !n->evicting; }

static unsigned age_of(const bfs_node *n, unsigned epoch)
{
    return epoch - atomic_load_explicit(&n->used, memory_order_relaxed);
}

static void bfs_release_free_memory(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

#define TRIM_AGES 64 /* ages at or above TRIM_AGES - 1 share the oldest bin */

int bfs_tree_trim(bfs_tree *t, size_t target, bfs_tree_evict_fn evict, void *ctx)
{
    double t0 = now_mono();
    pthread_mutex_lock(&t->lock);
    if (t->nnodes <= target) {
        pthread_mutex_unlock(&t->lock);
        return 0;
    }
    /* nodes the kernel was already asked to drop will go: not counted */
    unsigned epoch = atomic_load_explicit(&t->epoch, memory_order_relaxed);
    size_t hist[TRIM_AGES] = {0}, going = 0;
    for (size_t i = 0; i < t->nbuckets; i++) {
        for (bfs_node *n = t->table[i]; n; n = n->hnext) {
            if (n->evicting || ancestor_evicting(n)) {
                going++;
            } else if (pickable(n)) {
                unsigned a = age_of(n, epoch);
                hist[a < TRIM_AGES ? a : TRIM_AGES - 1]++;
            }
        }
    }
    if (t->nnodes - going <= target) {
        pthread_mutex_unlock(&t->lock);
        return 0;
    }
    size_t need = t->nnodes - going - target;
    unsigned min_age = TRIM_AGES - 1;
    for (size_t sum = 0; min_age > 0; min_age--) {
        sum += hist[min_age];
        if (sum >= need)
            break;
    }
    struct victim *v = NULL;
    size_t nv = 0, cap = 0;
    int ret = 0;
    for (size_t i = 0; i < t->nbuckets && ret == 0; i++) {
        for (bfs_node *n = t->table[i]; n; n = n->hnext) {
            if (!pickable(n) || age_of(n, epoch) < min_age)
                continue;
            bfs_node *p = n->parent;
            if (p != t->root && pickable(p) && age_of(p, epoch) >= min_age)
                continue; /* goes with its parent */
            if (ancestor_evicting(n))
                continue;
            if ((ret = add_victim(&v, &nv, &cap, n)) < 0)
                break;
            n->evicting = true;
        }
    }
    size_t live = t->nnodes;
    double picked_at = now_mono();
    if (nv == 0) {
        /* entries the kernel could not drop (a cwd, a mount below) may be
         * asked again next time */
        for (size_t i = 0; i < t->nbuckets; i++)
            for (bfs_node *n = t->table[i]; n; n = n->hnext)
                n->evicting = false;
    }
    pthread_mutex_unlock(&t->lock);

    /* No lock held: the kernel may need our workers to finish a request on
     * the parent before it takes the entry away. */
    for (size_t i = 0; i < nv; i++) {
        v[i].rc = evict(ctx, bfs_node_ino(v[i].node->parent), v[i].name);
        atomic_fetch_add(v[i].rc == 0 ? &t->invalidations : &t->inval_failed, 1);
        free(v[i].name);
    }
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < nv; i++) {
        if (v[i].rc != 0) /* the kernel will not forget it: count it as staying */
            v[i].node->evicting = false;
        v[i].node->pins--;
        maybe_free_locked(t, v[i].node);
    }
    pthread_mutex_unlock(&t->lock);
    free(v);
    atomic_fetch_add(&t->trims, 1);
    atomic_fetch_add(&t->victims, nv);
    bfs_debug(TREE_TAG, "trim: %zu live nodes, %zu to go, %zu entries dropped; picking took %.1f ms under the lock, dropping %.1f ms",
              live, need, nv, (picked_at - t0) * 1e3, (now_mono() - picked_at) * 1e3);
    return ret < 0 ? ret : (int)(nv > INT32_MAX ? INT32_MAX : nv);
}

static void *trimmer_main(void *arg)
{
    bfs_tree *t = arg;
    size_t cap = t->opts.max_nodes, target = cap - cap / 8;
    pthread_mutex_lock(&t->lock);
    while (!t->trim_stop) {
        if (t->nnodes <= cap) {
            pthread_cond_wait(&t->trim_cond, &t->lock);
            continue;
        }
        pthread_mutex_unlock(&t->lock);
        int picked = bfs_tree_trim(t, target, t->evict, t->evict_ctx);
        /* FORGETs come back within milliseconds; a pass that found nothing
         * to pick (everything open) waits longer before looking again */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long wait_ms = picked > 0 ? 20 : 1000;
        ts.tv_nsec += wait_ms * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_mutex_lock(&t->lock);
        while (!t->trim_stop && pthread_cond_timedwait(&t->trim_cond, &t->lock, &ts) != ETIMEDOUT)
            ;
        if (picked > 0) {
            /* the forgotten nodes are scattered through every thread's
             * heap: give their free pages back, or RSS keeps the peak */
            pthread_mutex_unlock(&t->lock);
            bfs_release_free_memory();
            pthread_mutex_lock(&t->lock);
        }
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

int bfs_tree_trimmer_start(bfs_tree *t, bfs_tree_evict_fn evict, void *ctx)
{
    if (!t->opts.max_nodes)
        return 0;
    pthread_mutex_lock(&t->lock);
    t->evict = evict;
    t->evict_ctx = ctx;
    t->trim_stop = false;
    /* signals belong to the FUSE loop */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&t->trimmer, NULL, trimmer_main, t);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    t->trimmer_running = rc == 0;
    pthread_mutex_unlock(&t->lock);
    return -rc;
}

void bfs_tree_trimmer_stop(bfs_tree *t)
{
    pthread_mutex_lock(&t->lock);
    bool running = t->trimmer_running;
    t->trim_stop = true;
    t->trimmer_running = false;
    pthread_cond_signal(&t->trim_cond);
    pthread_mutex_unlock(&t->lock);
    if (running)
        pthread_join(t->trimmer, NULL);
}

void bfs_tree_node_stats(bfs_tree *t, bfs_node_stats *st)
{
    pthread_mutex_lock(&t->lock);
    st->nodes = t->nnodes;
    pthread_mutex_unlock(&t->lock);
    st->max_nodes = t->opts.max_nodes;
    st->trims = atomic_load(&t->trims);
    st->victims = atomic_load(&t->victims);
    st->invalidations = atomic_load(&t->invalidations);
    st->inval_failed = atomic_load(&t->inval_failed);
}

/* ---- the write side (-o rw) ---------------------------------------------------
 *
 * mkdir makes directories that exist in this mount's memory only: a
 * collection path level, a dataset type under a RUN, a dimension value under
 * a dataset type.  The tree pins each one (it lives until unmount) and finds
 * it by name when the registry does not know it.  A RUN collection is
 * registered by the caller when a dataset type directory or a file is made
 * inside a made path level (bfs_tree_write_target says when), so that
 * `mkdir -p a/b/run` leaves no collections named a or a/b behind.
 */

static int made_insert(bfs_tree *t, bfs_node *proto, bfs_node **child, struct stat *st)
{
    /* the node found may be a concurrent mkdir's (made already), or one an
     * rmdir unmade that the kernel has not forgotten yet (made again) */
    bfs_node *n = materialize(t, proto);
    pthread_mutex_lock(&t->lock);
    if (!n->made) {
        n->made = true;
        n->pins++; /* the tree's own pin: the directory lives until unmount or rmdir */
        n->parent->has_made = true; /* its listings show n (list_made) */
    }
    pthread_mutex_unlock(&t->lock);
    *child = n;
    bfs_tree_stat(t, n, st);
    return 0;
}

static bool is_replica_dir(const bfs_tree *t, const bfs_node *n)
{
    return t->opts.replica_dir && n->kind == K_COLL && n->parent == t->root && n->made &&
           !strcmp(n->prefix, t->opts.replica_dir);
}

int bfs_tree_unmake(bfs_tree *t, bfs_node *n)
{
    pthread_mutex_lock(&t->lock);
    bool made = n->made;
    pthread_mutex_unlock(&t->lock);
    if (!made || is_replica_dir(t, n) || (n->kind == K_COLL && coll_of(t, n)))
        return -EPERM;
    bfs_listing *l;
    int ret = listing_build(t, n, &l);
    if (ret < 0)
        return ret;
    bool empty = l->n <= 2; /* "." and ".." */
    listing_put(l);
    if (!empty)
        return -ENOTEMPTY;
    pthread_mutex_lock(&t->lock);
    if (!n->made)
        ret = -ENOENT; /* another rmdir took it */
    else if (n->child)
        ret = -ENOTEMPTY; /* a node below it the kernel knows */
    else
        unmake_locked(n);
    pthread_mutex_unlock(&t->lock);
    return ret;
}

int bfs_tree_mkdir(bfs_tree *t, bfs_node *parent, const char *name, bfs_node **child, struct stat *st,
                   const char **why)
{
    const char *no_why;
    if (!why)
        why = &no_why;
    *why = NULL;
    if (!t->opts.writable)
        return -EROFS;
    if (parent->kind == K_FILE)
        return -ENOTDIR;
    if (strlen(name) >= BFS_NAME_MAX)
        return -ENAMETOOLONG;
    if (is_replica_dir(t, parent)) {
        *why = "replicas arrive flat, each beside its sidecar";
        return -EACCES;
    }
    bfs_node *existing;
    if (bfs_tree_lookup(t, parent, name, &existing, st) == 0) {
        bfs_tree_forget(t, existing, 1);
        return -EEXIST;
    }
    const bfs_catalog *cat = bfs_registry_catalog(t->reg);
    char seg[BFS_NAME_MAX];
    bfs_node *proto = NULL;
    const bfs_dataset_type *dt = NULL;
    if (parent->kind == K_COLL) {
        if (bfs_names_unescape(name, seg, sizeof seg) < 0 || !strcmp(seg, ".") || !strcmp(seg, "..")) {
            *why = "not a collection name segment (docs/paths.md gives the escapes)";
            return -EINVAL;
        }
        const bfs_collection *pc = coll_of(t, parent);
        dt = bfs_catalog_dataset_type(cat, seg);
        if (dt && pc && pc->type == BFS_COLL_RUN) {
            proto = proto_dtype(parent, pc, name, dt);
        } else if (pc && pc->type != BFS_COLL_RUN) {
            *why = "nothing is made inside a CHAINED, TAGGED or CALIBRATION collection";
            return -EACCES;
        } else if (!strchr(seg, '=') || !parent->made || pc ||
                   !(dt = bfs_catalog_dataset_type(cat, parent->name))) {
            /* a path level, or the directory of a RUN to be */
            char *full = join_prefix(parent->prefix, seg);
            if (!full)
                return -ENOMEM;
            proto = proto_coll(parent, name, full, NULL);
            free(full);
        }
        /* else "dim=value" below a made path level named like a dataset type:
         * that level stands for the type, its parent for the RUN (below) */
    } else {
        if (all_fixed(parent)) {
            *why = "below a full dataId there are files only";
            return -EACCES;
        }
        dt = parent->dt;
    }
    if (!proto) {
        char dim[64], value[BFS_MAX_VALUE];
        if (bfs_names_parse_dim(name, dim, sizeof dim, value, sizeof value) < 0) {
            *why = "a level below a dataset type is named dimension=value";
            return -EINVAL;
        }
        int k = dim_slot(dt, dim);
        const char *vals[BFS_MAX_DIMS] = {0};
        if (parent->kind == K_DATA)
            node_values(parent, vals);
        if (k < 0 || vals[k]) {
            *why = k < 0 ? "not a dimension of the dataset type" : "that dimension has a value above already";
            return -EINVAL;
        }
        const bfs_dimension *d = dt->dims[k];
        int64_t num;
        if (d->type == BFS_KEY_INT && bfs_parse_i64(value, &num)) {
            if (!bfs_names_int_canonical(value)) { /* detector=094 is no name of detector 94 */
                *why = "an integer is written as printf %lld writes it: no leading zeros, no + (docs/paths.md)";
                return -EINVAL;
            }
        } else if (d->type == BFS_KEY_INT) {
            /* an alternate key (exposure=MC_O_..., detector=R22_S11) */
            char primary[BFS_MAX_VALUE];
            if (bfs_registry_resolve_alias(t->reg, dt, vals, d, value, primary, sizeof primary) < 0) {
                *why = "neither an integer nor a name the registry knows for that dimension";
                return -EINVAL;
            }
            snprintf(value, sizeof value, "%s", primary);
        }
        proto = proto_value(parent, name, k, value);
        if (proto && parent->kind == K_COLL)
            proto->dt = dt; /* c stays NULL: data_coll finds the RUN once registered */
    }
    if (!proto)
        return -ENOMEM;
    return made_insert(t, proto, child, st);
}

int bfs_tree_make_replica_dir(bfs_tree *t)
{
    if (!t->opts.writable || !t->opts.replica_dir)
        return 0;
    bfs_node *n;
    struct stat st;
    int ret = bfs_tree_mkdir(t, t->root, t->opts.replica_dir, &n, &st, NULL);
    if (ret == 0)
        bfs_tree_forget(t, n, 1); /* the lookup mkdir counts for the kernel; the tree's pin stays */
    return ret == -EEXIST ? 0 : ret;
}

/* Refuse a write target with err, saying why (bfs_write_target.why). */
static int refuse(bfs_write_target *out, int err, const char *why)
{
    out->why = why;
    return err;
}

/* Whether dir ends a chain of made (or replaced) levels RUN/<type>/<dim>=<value>/... that
 * stands for a dataset type to be (see bfs_write_target): 1 and out filled,
 * 0 when it does not, -EINVAL when it does but cannot be one. */
static int made_type_chain(bfs_tree *t, const bfs_node *dir, bfs_write_target *out)
{
    const bfs_node *n = dir;
    int k = 0;
    const bfs_dimension *dims[BFS_MAX_DIMS];
    char dim[64], value[BFS_MAX_VALUE];
    for (; n && n->kind == K_COLL && (n->made || n->replaced) && !coll_of(t, n) && strchr(n->name, '=');
         n = n->parent) {
        if (k == BFS_MAX_DIMS || bfs_names_parse_dim(n->name, dim, sizeof dim, value, sizeof value) < 0 ||
            !(dims[k] = bfs_registry_dimension_by_name(t->reg, dim)))
            return 0;
        for (int i = 0; i < k; i++)
            if (dims[i] == dims[k])
                return refuse(out, -EINVAL, "the path names one dimension twice");
        snprintf(out->value_buf[k], sizeof out->value_buf[k], "%s", value);
        k++;
    }
    const bfs_node *tn = n, *rn = n ? n->parent : NULL;
    if (k == 0 || !tn || tn->kind != K_COLL || !(tn->made || tn->replaced) || coll_of(t, tn) || !rn || rn == t->root ||
        rn->kind != K_COLL || bfs_names_unescape(tn->name, out->type_buf, sizeof out->type_buf) < 0)
        return 0;
    const bfs_collection *rc = coll_of(t, rn);
    if (rc ? rc->type != BFS_COLL_RUN : !rn->made)
        return 0;
    if (!rc && has_child_segment(bfs_registry_catalog(t->reg), rn->prefix, NULL))
        return refuse(out, -EACCES, "the RUN of this new dataset type would be a path level of existing collections");
    /* the dimensions in the universe's order, as a dataset type has them */
    int order[BFS_MAX_DIMS];
    for (int i = 0; i < k; i++)
        order[i] = i;
    for (int i = 1; i < k; i++)
        for (int j = i; j > 0 && dims[order[j]]->index < dims[order[j - 1]]->index; j--) {
            int tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    const bfs_dataset_type *dt = bfs_catalog_dataset_type(bfs_registry_catalog(t->reg), out->type_buf);
    if (dt && dt->ndims != k)
        return refuse(out, -EINVAL, "the path's dimensions are not those of the dataset type made since");
    for (int i = 0; i < k; i++) {
        const bfs_dimension *d = dims[order[i]];
        if (dt && dt->dims[i] != d)
            return refuse(out, -EINVAL, "the path's dimensions are not those of the dataset type made since");
        snprintf(out->name_buf[i], sizeof out->name_buf[i], "%s", d->name);
        out->dim_names[i] = out->name_buf[i];
        out->dim_values[i] = out->value_buf[order[i]];
    }
    out->ndims = k;
    out->run = rn->prefix;
    out->run_exists = rc != NULL;
    out->dataset_type = out->type_buf;
    out->new_type = true;
    out->type_parent_ino = bfs_node_ino(rn);
    out->type_entry = tn->name;
    return 1;
}

int bfs_tree_write_target(bfs_tree *t, bfs_node *dir, bfs_write_target *out)
{
    memset(out, 0, sizeof *out);
    if (!t->opts.writable)
        return refuse(out, -EROFS, "the mount is read-only (mount with -o rw to write)");
    if (dir->kind == K_FILE)
        return refuse(out, -ENOTDIR, "not a directory");
    if (is_replica_dir(t, dir)) {
        out->run = dir->prefix;
        out->run_exists = true; /* no RUN of that name is made: each sidecar names its own */
        out->replica = true;
        return 0;
    }
    if (dir->kind == K_COLL) {
        int ret = made_type_chain(t, dir, out);
        if (ret == 1 && !t->opts.create_types && /* (not a RUN named a=b either) */
            !bfs_catalog_dataset_type(bfs_registry_catalog(t->reg), out->dataset_type)) /* made since */
            ret = refuse(out, -EACCES, "no such dataset type, and ingest.create_dataset_types is off");
        if (ret != 0)
            return ret < 0 ? ret : 0;
        memset(out, 0, sizeof *out);
    }
    const bfs_node *cn = dir->kind == K_COLL ? dir : data_coll_dir(dir);
    const bfs_collection *c = coll_of(t, cn);
    if (!c && cn == t->root)
        return refuse(out, -EACCES, "the mount's root takes no files: write into a RUN collection");
    if (!c && (!cn->made || has_child_segment(bfs_registry_catalog(t->reg), cn->prefix, NULL)))
        return refuse(out, -EACCES, "a path level of existing collections takes no files: write into a RUN");
    if (c && c->type != BFS_COLL_RUN)
        return refuse(out, -EACCES, "only a RUN collection takes files (this is CHAINED, TAGGED or CALIBRATION)");
    out->run = cn->prefix;
    out->run_exists = c != NULL;
    if (dir->kind == K_COLL)
        return 0; /* raw: the dataId comes from the headers */
    if (!all_fixed(dir))
        return refuse(out, -EACCES, "a file needs its full dataId: this directory fixes only some of its dimensions");
    out->dataset_type = dir->dt->name;
    out->ndims = dir->dt->ndims;
    node_values(dir, out->dim_values);
    for (int i = 0; i < out->ndims; i++)
        out->dim_names[i] = dir->dt->dims[i]->name;
    return 0;
}

void bfs_tree_changed(bfs_tree *t, bfs_node *dir)
{
    bfs_registry_refresh(t->reg);
    pthread_mutex_lock(&t->lock);
    t->last_refresh = now_mono();
    struct leaf_set *old = dir->kind == K_DATA ? dir->leaves : NULL;
    if (old)
        dir->leaves = NULL;
    pthread_mutex_unlock(&t->lock);
    leaf_set_put(old);
}

/* Whether the K_DATA node n's own level is one of the dataset's: its
 * dataset type's directory, or a value of the dataId names[i] = values[i]. */
static bool level_holds(const bfs_node *n, const char *dtype, int ndims, const char *const names[],
                        const char *const values[])
{
    if (strcmp(n->dt->name, dtype))
        return false;
    if (n->k < 0)
        return true;
    const char *dim = n->dt->dims[n->k]->name;
    for (int i = 0; i < ndims; i++)
        if (!strcmp(names[i], dim))
            return !strcmp(values[i], n->value);
    return false;
}

int bfs_tree_dataset_added(bfs_tree *t, bfs_node *dir, const char *dtype, int ndims,
                           const char *const names[], const char *const values[], bfs_tree_refresh_fn refresh,
                           void *ctx)
{
    const bfs_node *run_dir = dir->kind == K_DATA ? data_coll_dir(dir) : dir;
    if (dir->kind == K_FILE)
        return 0;
    enum { MAX = 64 };
    uint64_t inos[MAX] = {bfs_node_ino(dir)}; /* dir itself first: its listing changed too */
    struct leaf_set *old[MAX];
    int n = 1, nold = 0;
    pthread_mutex_lock(&t->lock);
    /* the directories below run_dir (and the collections under it) that
     * hold the new dataset: a walk of its subtree that leaves a branch as
     * soon as a level contradicts the dataId, so it sees the matching path
     * and the siblings along it, not every node the kernel knows */
    bfs_node *x = run_dir->child;
    while (x && n < MAX) {
        bool descend = x->kind == K_COLL;
        if (x->kind == K_DATA && level_holds(x, dtype, ndims, names, values)) {
            descend = true;
            if (x != dir) {
                inos[n++] = bfs_node_ino(x);
                if (x->leaves) {
                    old[nold++] = x->leaves;
                    x->leaves = NULL;
                }
            }
        }
        if (descend && x->child) {
            x = x->child;
            continue;
        }
        while (x != run_dir && !x->sib_next)
            x = x->parent;
        x = x == run_dir ? NULL : x->sib_next;
    }
    t->last_refresh = now_mono();
    pthread_mutex_unlock(&t->lock);
    for (int i = 0; i < nold; i++)
        leaf_set_put(old[i]);
    for (int i = 0; i < n; i++)
        refresh(ctx, inos[i]);
    return n;
}

void bfs_tree_expire_listings(bfs_tree *t)
{
    bfs_registry_refresh(t->reg);
    double now = now_mono();
    pthread_mutex_lock(&t->lock);
    t->last_refresh = now;
    t->stale_before = now;
    t->db_checked = 0; /* directories show the new registry time at their next stat */
    pthread_mutex_unlock(&t->lock);
}

/* ---- datasets removed behind the tree's back ---- */

static bool id_in(const char *id, const char *const *sorted, size_t n)
{
    return bsearch(&id, sorted, n, sizeof *sorted, cmp_str) != NULL;
}

static bool leaves_hold(const struct leaf_set *s, const char *const *sorted, size_t n)
{
    for (size_t i = 0; s && i < s->n; i++)
        if (id_in(s->files[i].id, sorted, n))
            return true;
    return false;
}

void bfs_tree_datasets_gone(bfs_tree *t, const char *const *ids, size_t n, bfs_tree_evict_fn evict, void *ctx)
{
    const char **sorted = n ? malloc(n * sizeof *sorted) : NULL;
    if (!sorted)
        return;
    memcpy(sorted, ids, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_str);
    struct victim *v = NULL;
    size_t nv = 0, cap = 0, nold = 0, capold = 0;
    struct leaf_set **old = NULL;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->nbuckets; i++) {
        for (bfs_node *node = t->table[i]; node; node = node->hnext) {
            /* a file of a gone dataset, or the dataId directory whose
             * cached files hold one (its file list is read again) */
            bool gone = node->kind == K_FILE ? id_in(node->f.id, sorted, n)
                                             : node->kind == K_DATA && leaves_hold(node->leaves, sorted, n);
            if (!gone)
                continue;
            if (node->kind == K_DATA) {
                if (bfs_grow((void **)&old, &capold, nold + 1, sizeof *old) < 0)
                    continue;
                old[nold++] = node->leaves;
                node->leaves = NULL;
            }
            if (evict && add_victim(&v, &nv, &cap, node) < 0)
                evict = NULL; /* out of memory: the kernel keeps its entries until they time out */
        }
    }
    pthread_mutex_unlock(&t->lock);
    for (size_t i = 0; i < nold; i++)
        leaf_set_put(old[i]);
    free(old);
    /* No lock held: the kernel may need our workers to finish a request on
     * the parent before it takes the entry away. */
    for (size_t i = 0; i < nv; i++) {
        if (evict)
            evict(ctx, bfs_node_ino(v[i].node->parent), v[i].name);
        free(v[i].name);
    }
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < nv; i++) {
        v[i].node->pins--;
        maybe_free_locked(t, v[i].node);
    }
    pthread_mutex_unlock(&t->lock);
    free(v);
    free(sorted);
}

/* ---- selections written as mount paths ---- */

int bfs_tree_resolve(bfs_tree *t, const char *path, bfs_node **out)
{
    char *copy = strdup(path), *save = NULL;
    bfs_node *n = bfs_tree_node(t, BFS_ROOT_INO);
    bool counted = false; /* the root has no lookup to hand over */
    int ret = copy ? 0 : -ENOMEM;
    for (char *c = copy ? strtok_r(copy, "/", &save) : NULL; c && ret == 0; c = strtok_r(NULL, "/", &save)) {
        bfs_node *child;
        struct stat st;
        ret = bfs_tree_lookup(t, n, c, &child, &st);
        if (counted)
            bfs_tree_forget(t, n, 1);
        if (ret == 0) {
            n = child;
            counted = true;
        }
    }
    free(copy);
    if (ret < 0)
        return ret;
    if (!counted)
        return -EINVAL;
    *out = n;
    return 0;
}

int bfs_tree_collect_files(bfs_tree *t, bfs_node *n, const char *path, bfs_tree_file_cb cb, void *ctx,
                           char **errpath)
{
    if (!bfs_node_is_dir(n))
        return cb(ctx, n, path);
    bfs_listing *l;
    int ret = bfs_tree_opendir(t, n, &l);
    if (ret < 0) {
        if (errpath && !*errpath)
            *errpath = strdup(path);
        bfs_tree_forget(t, n, 1);
        return ret;
    }
    /* bounded by the listing, taken once; depth by the path grammar
     * (collection levels, the dataset type, one level per dimension) */
    for (size_t i = 2; ret == 0 && i < bfs_listing_count(l); i++) {
        bfs_node *child;
        struct stat st;
        ret = bfs_listing_materialize(t, l, i, &child, &st);
        if (ret == 0) {
            struct stat dummy;
            char *sub = bfs_asprintf("%s/%s", path, bfs_listing_name(t, l, i, &dummy));
            if (sub)
                ret = bfs_tree_collect_files(t, child, sub, cb, ctx, errpath);
            else
                ret = -ENOMEM, bfs_tree_forget(t, child, 1);
            free(sub);
        }
    }
    bfs_listing_free(t, l);
    bfs_tree_forget(t, n, 1);
    return ret;
}
