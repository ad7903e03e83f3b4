/*
 * cache.c - the persistent verified block cache (see cache.h).
 *
 * Layout of DIR (0700; files 0600):
 *
 *   meta                 "block_size N": the block size chosen at creation
 *   index.lmdb(-lock)    the LMDB index (MDB_NOSUBDIR), 1 GiB sparse map
 *   blocks/tmp.PID.ID    a block being written (no lock held), where unnamed
 *                        files cannot be used; else the block being written is
 *                        an O_TMPFILE file in blocks/XX/, with no name until placed
 *   blocks/XX/NAME       a block: NAME = hex(keyhash) "-" hex16(block) "-" hex16(id),
 *                        XX = first byte of keyhash; id is random per put, so a
 *                        name is used once and never comes back
 *
 * The index has six named DBIs (maxdbs is 8):
 *
 *   blocks      keyhash(16) || be64(block)  -> rec {csum, id, atime, len}
 *   lru         be64(atime) || blocks key   -> (empty)      oldest first
 *   objects     keyhash(16)                 -> {nblocks, object key bytes}
 *   records     keyhash(16)                 -> rhead {seq, klen, dlen}, key, data
 *   record_age  be64(seq)                   -> keyhash(16)  oldest written first
 *   info        "bytes", "block_size", "hits", "misses", "dropped", "evicted",
 *               "record_seq", "record_bytes" -> int64
 *
 * records and record_age are younger than the other DBIs: open creates them
 * in an index made without them (older binaries never open them).
 *
 * keyhash = XXH3-128 of the object key (LMDB keys are limited to 511 bytes;
 * URLs are not).  csum = XXH3-64 of the bytes, seeded by keyhash, block
 * number and block size, so a file under the wrong name or written with
 * another block size never verifies.
 *
 * Invariants, true in every committed index state:
 *   I1  info.bytes = sum of rec.len over blocks.
 *   I2  every blocks entry has exactly one lru entry, at its rec.atime.
 *   I3  objects[kh].nblocks = number of blocks entries with that keyhash,
 *       and an objects entry exists only while that number is > 0.
 *   I4  a blocks entry's file blocks/XX/NAME(kh, block, id) exists, has
 *       rec.len bytes and rec.csum, except after a power loss (no fsync of
 *       block files; see below) or outside interference.  Reads check it.
 *   I5  a block file enters blocks/XX/ only by rename or link (of an unnamed
 *       file), just before the write transaction that records it; the link
 *       sets its ctime.  A block file without a matching record is an orphan
 *       once its ctime is orphan_grace old (10 min): a put in progress would
 *       have committed or given up by then, barring a disk that stalls that
 *       long (then its record names a missing file, which the first read
 *       drops: I4's exception).  bfs_cache_verify removes only such orphans.
 *       The link is not made inside the write transaction: the index has one
 *       writer at a time, and a file system call that stalls there (a busy
 *       or failing disk) would stall every put of every thread behind it, a
 *       read storing the block it fetched among them.
 *   I6  every records entry has exactly one record_age entry, at its
 *       rhead.seq; info.record_bytes = sum of klen + dlen over records;
 *       info.record_seq >= every rhead.seq.  After a record put, at most
 *       max_records records of at most max_records KiB remain (a single
 *       larger record excepted) in the writer's limits.  Records have no
 *       files and are independent of I1-I5.
 *
 * States of one block (key, block number) and the steps between them:
 *
 *   ABSENT --put: write tmp (no lock)--> TMP --link or rename; write txn:
 *   evict, record, commit--> PRESENT --evict / drop / replace: delete record in a
 *   write txn, commit, then unlink the file--> ABSENT
 *
 * Crash story (kill -9 at any instruction):
 *   in TMP                  an unnamed file: gone with the process; a named
 *                           stale blocks/tmp.PID.*: removed at the next open
 *                           or verify once PID is dead (or the file is 1 h old)
 *   renamed, not committed  orphan file without record: never served (reads
 *                           start from the record), removed by verify
 *   committed               fully present: the bytes were written before the
 *                           rename and live in the page cache, which a
 *                           process kill does not lose
 *   record deleted+committed, file not yet unlinked: orphan, as above
 * So after kill -9 a block is either recorded and complete, or unrecorded.
 * Unlinking only after commit is safe because names are never reused.
 *
 * Durability: block files are not fsync'ed (an fdatasync per 4 MiB block
 * costs more than the cache saves and is not needed for correctness: every
 * read checks length and checksum).  The index uses MDB_NOSYNC: a commit
 * is in the page cache when it returns, which a killed process does not
 * lose, and no commit waits for the disk (an fdatasync per block put
 * halved cold-read throughput).  A system crash or power loss can lose
 * recent transactions or, on file systems that reorder writes, damage the
 * index; bfs_cache_open then finds it unreadable, moves it aside and starts
 * empty (it is a cache: the data are refetched).  A recorded block that
 * comes back short or garbled is dropped by its first read (or verify).
 *
 * Last-use times (LRU): put records atime = now.  A hit whose recorded atime
 * is a minute old or more queues an update in memory; the queue is applied
 * in the next write transaction of this process (a put), or on its own when
 * it holds 256 entries or its oldest entry is 30 s old, or at close.  So a
 * read costs a read transaction only; a stream of hits costs one write
 * transaction per 256 blocks at most.  The same batches carry this process's
 * hit/miss counters into info.
 *
 * Eviction walks the lru DBI from its first entry: O(log n) per evicted
 * block, nothing per put when there is room.  A put evicts in its own write
 * transaction until total + len <= max_bytes and statvfs shows
 * min_free_bytes free (its tmp file is already written at that point, so a
 * put overshoots the floor by at most one block per concurrent writer).
 *
 * Concurrency: one MDB_env per process (a registry refuses a second open of
 * a directory, since LMDB's fcntl locks break when one process opens the
 * lock file twice), MDB_NOTLS so any thread may run any read transaction.
 * LMDB serialises writers across threads and processes.  envlock is taken
 * shared around every transaction and exclusively only to adopt a map size
 * grown by another process (MDB_MAP_RESIZED).  mu guards the touch queue.
 * Lock order: envlock (shared) -> LMDB write lock -> mu.  No file system
 * call of a put happens inside a write transaction (I5); evictions unlink
 * after their commit; verify's scan of a bucket's names does.
 */
#include "cache.h"

#include "log.h"

#include <lmdb.h>
#include <xxhash.h>
#ifdef BFS_HAVE_XXH_DISPATCH
/* XXH3 with the widest vector unit this CPU has, chosen at run time by
 * libxxhash (same values; 2.3x the SSE2 default with AVX-512 here) */
#include <xxh_x86dispatch.h>
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define TAG "cache"

#define DEF_MAX_BYTES   (10LL << 30)
#define DEF_MIN_FREE    (1LL << 30)
#define DEF_BLOCK_SIZE  (4u << 20)
#define MAX_BLOCK_SIZE  (1u << 30)
#define MAP_SIZE        ((size_t)1 << 30)
#define MAX_READERS     510
#define TOUCH_AFTER_S   60      /* a hit refreshes atime only when it is this old */
#define TOUCH_QUEUE     256
#define TOUCH_FLUSH_S   30
/* A writer's piece that took this long to write stops the writing while the
 * bytes arrive (the rest is written at commit, off the fetch's path). */
#define SLOW_WRITE_US   20000
#define TMP_MAX_AGE_S   3600
#define ORPHAN_GRACE_S  600  /* I5 */
#define EVICT_BATCH     512     /* blocks per write transaction in bfs_cache_evict */
#define VERIFY_BATCH    64      /* records read per read transaction in verify */
#define PATH_ROOM       96      /* bytes after DIR for "/blocks/XX/NAME" */
#define DEF_MAX_RECORDS 65536
#define RECORD_BUDGET   1024    /* bytes of key + data per allowed record */

typedef struct bkey {
    uint8_t kh[16];
    uint8_t blk[8];            /* big-endian block number */
} bkey;

typedef struct lkey {
    uint8_t atime[8];          /* big-endian seconds */
    bkey k;
} lkey;

typedef struct rec {
    uint64_t csum;
    uint64_t id;
    int64_t atime;
    uint32_t len;
    uint32_t reserved;
} rec;

typedef struct rhead {
    uint64_t seq;              /* info.record_seq when written: write order */
    uint32_t klen, dlen;       /* followed by klen key bytes, dlen data bytes */
} rhead;

typedef struct touch {
    bkey k;
    uint64_t id;
    int64_t atime;
} touch;

typedef struct victim {
    bkey k;
    uint64_t id;
} victim;

typedef struct victims {
    victim *v;
    size_t n, cap;
} victims;

struct bfs_cache {
    char *dir;
    size_t dirlen;
    int64_t max_bytes, min_free;
    int64_t max_records;
    uint32_t block_size;
    dev_t dev;
    ino_t ino;
    int64_t (*now)(void);

    MDB_env *env;
    MDB_dbi db_blocks, db_lru, db_objects, db_records, db_record_age, db_info;
    pthread_rwlock_t envlock;

    pthread_mutex_t mu;        /* guards touches, n_touch, touch_since, flushed_* */
    touch touches[TOUCH_QUEUE];
    int n_touch;
    int64_t touch_since;
    uint64_t flushed_hits, flushed_misses;

    atomic_uint_fast64_t hits, misses, corrupt;
    atomic_uchar logged[192];  /* LMDB/system error codes already logged */
    atomic_int enospc_noted;
    atomic_bool no_tmpfile;    /* unnamed tmp files (O_TMPFILE + /proc) unusable here */
    int64_t orphan_grace_s;    /* I5; <= 0: none */
    int64_t slow_write_us;     /* see bfs_cache_cfg */
};

/* ---- process registry: one open per directory ---------------------------- */

typedef struct open_dir {
    dev_t dev;
    ino_t ino;
    struct open_dir *next;
} open_dir;

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static open_dir *reg_head;

static bool reg_add(dev_t dev, ino_t ino)
{
    pthread_mutex_lock(&reg_mu);
    for (open_dir *o = reg_head; o; o = o->next)
        if (o->dev == dev && o->ino == ino) {
            pthread_mutex_unlock(&reg_mu);
            return false;
        }
    open_dir *o = malloc(sizeof *o);
    if (o) {
        o->dev = dev;
        o->ino = ino;
        o->next = reg_head;
        reg_head = o;
    }
    pthread_mutex_unlock(&reg_mu);
    return o != NULL;
}

static void reg_del(dev_t dev, ino_t ino)
{
    pthread_mutex_lock(&reg_mu);
    for (open_dir **p = &reg_head; *p; p = &(*p)->next)
        if ((*p)->dev == dev && (*p)->ino == ino) {
            open_dir *o = *p;
            *p = o->next;
            free(o);
            break;
        }
    pthread_mutex_unlock(&reg_mu);
}

/* ---- small helpers ------------------------------------------------------- */

static int64_t clock_real(void)
{
    return (int64_t)time(NULL);
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void key_hash(const char *key, uint8_t kh[16])
{
    XXH128_hash_t h = XXH3_128bits(key, strlen(key));
    XXH128_canonical_t canon;
    XXH128_canonicalFromHash(&canon, h);
    memcpy(kh, canon.digest, 16);
}

static void make_bkey(const char *key, uint64_t block, bkey *k)
{
    key_hash(key, k->kh);
    put_be64(k->blk, block);
}

/* The seed of a block's checksum: its key and the cache's block size. */
static uint64_t csum_seed(const bfs_cache *c, const bkey *k)
{
    uint8_t s[28];
    memcpy(s, k, 24);
    s[24] = (uint8_t)(c->block_size >> 24);
    s[25] = (uint8_t)(c->block_size >> 16);
    s[26] = (uint8_t)(c->block_size >> 8);
    s[27] = (uint8_t)c->block_size;
    return XXH3_64bits(s, sizeof s);
}

static uint64_t block_csum(const bfs_cache *c, const bkey *k, const void *buf, size_t len)
{
    return XXH3_64bits_withSeed(buf, len, csum_seed(c, k));
}

static uint64_t random_id(void)
{
    static atomic_uint_fast64_t fallback;
    uint64_t id;
    if (getrandom(&id, sizeof id, GRND_NONBLOCK) != (ssize_t)sizeof id) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t s[3] = {(uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 30, (uint64_t)getpid(),
                         atomic_fetch_add(&fallback, 1)};
        id = XXH3_64bits(s, sizeof s);
    }
    return id;
}

static void hex(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* DIR/blocks/XX, k's bucket directory, into out (PATH_MAX). */
static void bucket_path(const bfs_cache *c, const bkey *k, char *out)
{
    char kh[33];
    hex(k->kh, 16, kh);
    snprintf(out, PATH_MAX, "%s/blocks/%.2s", c->dir, kh);
}

/* DIR/blocks/XX/NAME into out (PATH_MAX). */
static void block_path(const bfs_cache *c, const bkey *k, uint64_t id, char *out)
{
    char kh[33];
    hex(k->kh, 16, kh);
    bucket_path(c, k, out);
    size_t n = strlen(out);
    snprintf(out + n, PATH_MAX - n, "/%s-%016" PRIx64 "-%016" PRIx64, kh, get_be64(k->blk), id);
}

/* Parse NAME back into key and id; false for any other name. */
static bool parse_block_name(const char *name, bkey *k, uint64_t *id)
{
    if (strlen(name) != 32 + 1 + 16 + 1 + 16 || name[32] != '-' || name[49] != '-')
        return false;
    for (int i = 0; i < 66; i++)
        if (i != 32 && i != 49 && !((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return false;
    for (int i = 0; i < 16; i++) {
        unsigned v;
        sscanf(name + 2 * i, "%2x", &v);
        k->kh[i] = (uint8_t)v;
    }
    put_be64(k->blk, strtoull(name + 33, NULL, 16));
    *id = strtoull(name + 50, NULL, 16);
    return true;
}

static int64_t fs_free(const bfs_cache *c)
{
    struct statvfs sv;
    if (statvfs(c->dir, &sv) != 0)
        return INT64_MAX;  /* unknown: do not evict for the floor */
    return (int64_t)sv.f_bavail * (int64_t)sv.f_frsize;
}

static bool pid_dead(long pid)
{
    return pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* ---- LMDB errors: the one translation ------------------------------------ */

/* Translate an LMDB (or system) code to -errno, logging the detail the first
 * time each code is seen in this process and at debug level afterwards. */
static int lmdb_errno(bfs_cache *c, int rc, const char *what)
{
    int e;
    int level = LOG_WARNING;
    switch (rc) {
    case 0: return 0;
    case MDB_NOTFOUND: return -ENOENT;
    case MDB_KEYEXIST: e = EEXIST; break;
    case MDB_MAP_FULL: case MDB_TXN_FULL: case MDB_CURSOR_FULL: case MDB_PAGE_FULL: e = ENOSPC; break;
    case MDB_READERS_FULL: case MDB_TLS_FULL: case MDB_MAP_RESIZED: e = EAGAIN; break;
    case MDB_DBS_FULL: e = EMFILE; break;
    case MDB_CORRUPTED: case MDB_PAGE_NOTFOUND: case MDB_PANIC: case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
        e = EIO;
        level = LOG_ERR;
        break;
    case MDB_INCOMPATIBLE: case MDB_BAD_RSLOT: case MDB_BAD_TXN: case MDB_BAD_VALSIZE:
    case MDB_BAD_DBI:
        e = EINVAL;
        level = LOG_ERR;
        break;
    default: e = rc > 0 ? rc : EIO; break;
    }
    int slot = rc < 0 ? rc - MDB_KEYEXIST : 32 + rc;
    bool first = true;
    if (c && slot >= 0 && slot < (int)sizeof c->logged)
        first = !atomic_exchange(&c->logged[slot], 1);
    BFS_LOG(first ? level : LOG_DEBUG, TAG, "%s: %s: %s%s", c ? c->dir : "cache", what,
            mdb_strerror(rc), first ? "" : " (again)");
    return -e;
}

/* ---- transactions -------------------------------------------------------- */

static int txn_begin(bfs_cache *c, unsigned flags, MDB_txn **t)
{
    pthread_rwlock_rdlock(&c->envlock);
    for (int attempt = 0;; attempt++) {
        int rc = mdb_txn_begin(c->env, NULL, flags, t);
        if (rc == 0)
            return 0;
        if (rc == MDB_MAP_RESIZED && attempt < 3) {
            /* another process grew the map: adopt its size with no
             * transaction of ours active */
            pthread_rwlock_unlock(&c->envlock);
            pthread_rwlock_wrlock(&c->envlock);
            mdb_env_set_mapsize(c->env, 0);
            pthread_rwlock_unlock(&c->envlock);
            pthread_rwlock_rdlock(&c->envlock);
            continue;
        }
        if (rc == MDB_READERS_FULL && attempt < 1) {
            int dead = 0;
            mdb_reader_check(c->env, &dead);
            continue;
        }
        pthread_rwlock_unlock(&c->envlock);
        *t = NULL;
        return lmdb_errno(c, rc, flags & MDB_RDONLY ? "read transaction" : "write transaction");
    }
}

static void txn_abort(bfs_cache *c, MDB_txn *t)
{
    mdb_txn_abort(t);
    pthread_rwlock_unlock(&c->envlock);
}

static int txn_commit(bfs_cache *c, MDB_txn *t)
{
    int rc = mdb_txn_commit(t);
    pthread_rwlock_unlock(&c->envlock);
    return rc ? lmdb_errno(c, rc, "commit") : 0;
}

/* ---- index primitives (inside a transaction; return MDB codes) ------------ */

static int info_get(bfs_cache *c, MDB_txn *t, const char *name, int64_t *v)
{
    MDB_val k = {strlen(name), (void *)name}, d;
    int rc = mdb_get(t, c->db_info, &k, &d);
    *v = 0;
    if (rc == 0 && d.mv_size == sizeof *v)
        memcpy(v, d.mv_data, sizeof *v);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int info_set(bfs_cache *c, MDB_txn *t, const char *name, int64_t v)
{
    MDB_val k = {strlen(name), (void *)name}, d = {sizeof v, &v};
    return mdb_put(t, c->db_info, &k, &d, 0);
}

static int info_add(bfs_cache *c, MDB_txn *t, const char *name, int64_t delta)
{
    int64_t v;
    int rc = info_get(c, t, name, &v);
    return rc ? rc : info_set(c, t, name, v + delta);
}

static int rec_get(bfs_cache *c, MDB_txn *t, const bkey *k, rec *r)
{
    MDB_val key = {sizeof *k, (void *)k}, d;
    int rc = mdb_get(t, c->db_blocks, &key, &d);
    if (rc)
        return rc;
    if (d.mv_size != sizeof *r)
        return MDB_CORRUPTED;
    memcpy(r, d.mv_data, sizeof *r);
    return 0;
}

static void make_lkey(int64_t atime, const bkey *k, lkey *l)
{
    put_be64(l->atime, (uint64_t)(atime < 0 ? 0 : atime));
    l->k = *k;
}

/* Object key check: 0 when objects[kh] is absent or names key, 1 when it
 * names another key (a hash collision), else an MDB code. */
static int object_check(bfs_cache *c, MDB_txn *t, const bkey *k, const char *key)
{
    MDB_val ok = {16, (void *)k->kh}, d;
    int rc = mdb_get(t, c->db_objects, &ok, &d);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return rc;
    size_t kl = strlen(key);
    return d.mv_size == 8 + kl && !memcmp((char *)d.mv_data + 8, key, kl) ? 0 : 1;
}

/* objects[kh].nblocks += delta (key needed when the entry is created). */
static int object_add(bfs_cache *c, MDB_txn *t, const bkey *k, const char *key, int delta)
{
    MDB_val ok = {16, (void *)k->kh}, d;
    int rc = mdb_get(t, c->db_objects, &ok, &d);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    uint64_t n = 0;
    if (rc == 0 && d.mv_size >= 8)
        memcpy(&n, d.mv_data, 8);
    if (delta < 0 && n <= (uint64_t)-delta)
        return rc == 0 ? mdb_del(t, c->db_objects, &ok, NULL) : 0;
    n += delta;
    if (rc == 0) {
        /* rewrite the count in place of a copy: the key bytes stay */
        size_t sz = d.mv_size;
        char *copy = malloc(sz);
        if (!copy)
            return ENOMEM;
        memcpy(copy, d.mv_data, sz);
        memcpy(copy, &n, 8);
        MDB_val nd = {sz, copy};
        rc = mdb_put(t, c->db_objects, &ok, &nd, 0);
        free(copy);
        return rc;
    }
    if (!key)
        return 0;
    size_t kl = strlen(key);
    MDB_val nd = {8 + kl, NULL};
    rc = mdb_put(t, c->db_objects, &ok, &nd, MDB_RESERVE);
    if (rc == 0) {
        memcpy(nd.mv_data, &n, 8);
        memcpy((char *)nd.mv_data + 8, key, kl);
    }
    return rc;
}

/* Remove a block's record with its lru entry, object count and bytes.  The
 * file is the caller's to unlink after commit. */
static int rec_remove(bfs_cache *c, MDB_txn *t, const bkey *k, const rec *r)
{
    MDB_val key = {sizeof *k, (void *)k};
    lkey l;
    make_lkey(r->atime, k, &l);
    MDB_val lk = {sizeof l, &l};
    int rc = mdb_del(t, c->db_blocks, &key, NULL);
    if (rc == 0) {
        rc = mdb_del(t, c->db_lru, &lk, NULL);
        if (rc == MDB_NOTFOUND)
            rc = 0;
    }
    if (rc == 0)
        rc = object_add(c, t, k, NULL, -1);
    if (rc == 0)
        rc = info_add(c, t, "bytes", -(int64_t)r->len);
    return rc;
}

static int victims_push(victims *vs, const bkey *k, uint64_t id)
{
    if (vs->n == vs->cap) {
        size_t cap = vs->cap ? 2 * vs->cap : 64;
        victim *nv = realloc(vs->v, cap * sizeof *nv);
        if (!nv)
            return ENOMEM;
        vs->v = nv;
        vs->cap = cap;
    }
    vs->v[vs->n].k = *k;
    vs->v[vs->n].id = id;
    vs->n++;
    return 0;
}

static void victims_unlink(bfs_cache *c, victims *vs)
{
    char path[PATH_MAX];
    for (size_t i = 0; i < vs->n; i++) {
        block_path(c, &vs->v[i].k, vs->v[i].id, path);
        if (unlink(path) != 0 && errno != ENOENT)
            bfs_debug(TAG, "unlink %s: %s", path, strerror(errno));
    }
    vs->n = 0;
}

/* Evict from the LRU end until *freed >= need or max_n blocks went or the
 * cache is empty.  Victims' files are appended to vs. */
static int evict_in_txn(bfs_cache *c, MDB_txn *t, int64_t need, size_t max_n, victims *vs,
                        int64_t *freed)
{
    size_t n = 0;
    while (*freed < need && n < max_n) {
        MDB_cursor *cur;
        int rc = mdb_cursor_open(t, c->db_lru, &cur);
        if (rc)
            return rc;
        MDB_val lk, ld;
        rc = mdb_cursor_get(cur, &lk, &ld, MDB_FIRST);
        lkey l;
        if (rc == 0) {
            if (lk.mv_size == sizeof l)
                memcpy(&l, lk.mv_data, sizeof l);
            else
                rc = mdb_cursor_del(cur, 0);  /* not ours: drop and go on */
        }
        mdb_cursor_close(cur);
        if (rc == MDB_NOTFOUND)
            return 0;
        if (rc)
            return rc;
        if (lk.mv_size != sizeof l)
            continue;
        rec r;
        rc = rec_get(c, t, &l.k, &r);
        if (rc == 0 && (int64_t)get_be64(l.atime) == r.atime) {
            if ((rc = rec_remove(c, t, &l.k, &r)) || (rc = victims_push(vs, &l.k, r.id)))
                return rc;
            *freed += r.len;
            n++;
        } else if (rc == 0 || rc == MDB_NOTFOUND) {
            /* an lru entry without its record (I2 broken): drop the entry */
            MDB_val key = {sizeof l, &l};
            if ((rc = mdb_del(t, c->db_lru, &key, NULL)))
                return rc;
        } else {
            return rc;
        }
    }
    if (n)
        return info_add(c, t, "evicted", (int64_t)n);
    return 0;
}

/* Apply this process's queued last-use times and counters in t. */
static int flush_in_txn(bfs_cache *c, MDB_txn *t)
{
    touch q[TOUCH_QUEUE];
    pthread_mutex_lock(&c->mu);
    int n = c->n_touch;
    memcpy(q, c->touches, n * sizeof *q);
    c->n_touch = 0;
    uint64_t h = atomic_load(&c->hits), m = atomic_load(&c->misses);
    int64_t dh = (int64_t)(h - c->flushed_hits), dm = (int64_t)(m - c->flushed_misses);
    c->flushed_hits = h;
    c->flushed_misses = m;
    pthread_mutex_unlock(&c->mu);

    int rc = 0;
    if (dh && (rc = info_add(c, t, "hits", dh)))
        return rc;
    if (dm && (rc = info_add(c, t, "misses", dm)))
        return rc;
    for (int i = 0; i < n; i++) {
        rec r;
        rc = rec_get(c, t, &q[i].k, &r);
        if (rc == MDB_NOTFOUND)
            continue;
        if (rc)
            return rc;
        if (r.id != q[i].id || r.atime >= q[i].atime)
            continue;
        lkey l;
        make_lkey(r.atime, &q[i].k, &l);
        MDB_val lk = {sizeof l, &l}, empty = {0, NULL};
        rc = mdb_del(t, c->db_lru, &lk, NULL);
        if (rc && rc != MDB_NOTFOUND)
            return rc;
        make_lkey(q[i].atime, &q[i].k, &l);
        if ((rc = mdb_put(t, c->db_lru, &lk, &empty, 0)))
            return rc;
        r.atime = q[i].atime;
        MDB_val key = {sizeof q[i].k, &q[i].k}, d = {sizeof r, &r};
        if ((rc = mdb_put(t, c->db_blocks, &key, &d, 0)))
            return rc;
    }
    return 0;
}

static int flush_now(bfs_cache *c)
{
    MDB_txn *t;
    int rc = txn_begin(c, 0, &t);
    if (rc)
        return rc;
    rc = flush_in_txn(c, t);
    if (rc) {
        txn_abort(c, t);
        return lmdb_errno(c, rc, "record last use");
    }
    return txn_commit(c, t);
}

/* ---- open / close -------------------------------------------------------- */

static int mkdir_p(char *path, mode_t mode)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir(path, mode);
        *p = '/';
        if (rc != 0 && errno != EEXIST)
            return -errno;
    }
    if (mkdir(path, mode) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

char *bfs_cache_default_dir(void)
{
    const char *x = getenv("XDG_CACHE_HOME");
    if (x && x[0] == '/') {
        char *s = malloc(strlen(x) + 16);
        if (s)
            sprintf(s, "%s/butlerfs", x);
        return s;
    }
    const char *h = getenv("HOME");
    if (!h || !*h)
        return NULL;
    char *s = malloc(strlen(h) + 24);
    if (s)
        sprintf(s, "%s/.cache/butlerfs", h);
    return s;
}

static int read_meta(const char *path, uint32_t *bs)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    char line[128];
    int rc = -EINVAL;
    while (fgets(line, sizeof line, f)) {
        unsigned long v;
        if (sscanf(line, "block_size %lu", &v) == 1 && v >= 1 && v <= MAX_BLOCK_SIZE) {
            *bs = (uint32_t)v;
            rc = 0;
        }
    }
    fclose(f);
    return rc;
}

/* Read DIR/meta, or create it with bs when absent (atomically: the first of
 * several processes creating the cache wins). */
static int load_meta(bfs_cache *c, uint32_t want, char **errmsg)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    snprintf(path, sizeof path, "%s/meta", c->dir);
    for (int attempt = 0; attempt < 2; attempt++) {
        int rc = read_meta(path, &c->block_size);
        if (rc == 0)
            return 0;
        if (rc != -ENOENT) {
            *errmsg = strdup("cannot read the block size from DIR/meta; run `butlerfs cache clear` "
                             "or remove the cache directory");
            return rc;
        }
        snprintf(tmp, sizeof tmp, "%s/meta.tmp.%ld", c->dir, (long)getpid());
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
            return -errno;
        char text[160];
        int n = snprintf(text, sizeof text,
                         "# butlerfs block cache: the block size is fixed at creation\n"
                         "version 1\nblock_size %" PRIu32 "\n", want);
        bool ok = write(fd, text, n) == n;
        ok = close(fd) == 0 && ok;
        int lrc = ok && link(tmp, path) == 0 ? 0 : -errno;
        unlink(tmp);
        if (lrc == 0) {
            c->block_size = want;
            return 0;
        }
        if (lrc != -EEXIST)
            return lrc ? lrc : -EIO;
    }
    return -EIO;
}

/* Remove blocks/tmp.PID.* left by dead writers (or older than an hour). */
static int sweep_tmp(bfs_cache *c)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/blocks", c->dir);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    int removed = 0;
    int64_t now = clock_real();
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "tmp.", 4))
            continue;
        long pid = strtol(e->d_name + 4, NULL, 10);
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if ((pid != getpid() && pid_dead(pid)) || now - st.st_mtime > TMP_MAX_AGE_S)
            if (unlinkat(dirfd(d), e->d_name, 0) == 0)
                removed++;
    }
    closedir(d);
    return removed;
}

static int open_index(bfs_cache *c, char **errmsg)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/index.lmdb", c->dir);
    int rc = mdb_env_create(&c->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(c->env, 8);
    if (rc == 0)
        rc = mdb_env_set_mapsize(c->env, MAP_SIZE);
    if (rc == 0)
        rc = mdb_env_set_maxreaders(c->env, MAX_READERS);
    if (rc == 0)
        rc = mdb_env_open(c->env, path, MDB_NOSUBDIR | MDB_NOTLS | MDB_NOSYNC, 0600);
    if (rc == MDB_INVALID || rc == MDB_CORRUPTED || rc == MDB_VERSION_MISMATCH) {
        /* the index is only a cache: move it aside and start empty; the old
         * block files become orphans for verify */
        char aside[PATH_MAX + 32];
        snprintf(aside, sizeof aside, "%s.broken-%lld", path, (long long)clock_real());
        bfs_warn(TAG, "%s: %s; moved to %s, starting with an empty cache", path,
                 mdb_strerror(rc), aside);
        mdb_env_close(c->env);
        c->env = NULL;
        if (rename(path, aside) != 0)
            return -errno;
        return open_index(c, errmsg);
    }
    if (rc) {
        int e = lmdb_errno(c, rc, "open index");
        if (asprintf(errmsg, "cannot open the cache index %s: %s", path, mdb_strerror(rc)) < 0)
            *errmsg = NULL;
        return e;
    }
    int dead = 0;
    mdb_reader_check(c->env, &dead);
    if (dead)
        bfs_info(TAG, "%s: cleared %d stale reader slots", path, dead);

    MDB_txn *t;
    if ((rc = txn_begin(c, 0, &t)))
        return rc;
    int mrc = mdb_dbi_open(t, "blocks", MDB_CREATE, &c->db_blocks);
    if (!mrc)
        mrc = mdb_dbi_open(t, "lru", MDB_CREATE, &c->db_lru);
    if (!mrc)
        mrc = mdb_dbi_open(t, "objects", MDB_CREATE, &c->db_objects);
    if (!mrc)
        mrc = mdb_dbi_open(t, "records", MDB_CREATE, &c->db_records);
    if (!mrc)
        mrc = mdb_dbi_open(t, "record_age", MDB_CREATE, &c->db_record_age);
    if (!mrc)
        mrc = mdb_dbi_open(t, "info", MDB_CREATE, &c->db_info);
    int64_t bs = 0;
    if (!mrc)
        mrc = info_get(c, t, "block_size", &bs);
    bool wipe = false;
    if (!mrc && bs != c->block_size) {
        if (bs != 0) {
            /* meta and index disagree (meta rewritten by hand?): blocks of
             * another size would fail their checksums anyway */
            bfs_warn(TAG, "%s: index block size %" PRId64 " differs from meta (%" PRIu32
                     "); dropping all blocks", c->dir, bs, c->block_size);
            wipe = true;
        }
        mrc = info_set(c, t, "block_size", c->block_size);
    }
    if (mrc) {
        txn_abort(c, t);
        rc = lmdb_errno(c, mrc, "open tables");
        if (asprintf(errmsg, "cannot open the cache index %s: %s", path, mdb_strerror(mrc)) < 0)
            *errmsg = NULL;
        return rc;
    }
    if ((rc = txn_commit(c, t)))
        return rc;
    if (wipe)
        bfs_cache_evict(c, 0);
    return 0;
}

int bfs_cache_open(const bfs_cache_cfg *cfg, bfs_cache **out, char **errmsg)
{
    *out = NULL;
    *errmsg = NULL;
    bfs_cache *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->max_bytes = cfg && cfg->max_bytes > 0 ? cfg->max_bytes : DEF_MAX_BYTES;
    c->min_free = cfg && cfg->min_free_bytes >= 0 ? cfg->min_free_bytes : DEF_MIN_FREE;
    /* one record per object: by default enough for a cache full of 64 KiB objects */
    c->max_records = c->max_bytes / (64 * 1024);
    if (c->max_records < DEF_MAX_RECORDS)
        c->max_records = DEF_MAX_RECORDS;
    if (cfg && cfg->max_records)
        c->max_records = cfg->max_records;
    uint32_t want = cfg && cfg->block_size ? cfg->block_size : DEF_BLOCK_SIZE;
    c->now = clock_real;
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    /* a resize must not starve behind a stream of readers; no thread ever
     * takes envlock twice, so writer preference cannot deadlock */
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&c->envlock, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&c->mu, NULL);

    int rc;
    if (want > MAX_BLOCK_SIZE) {
        rc = -EINVAL;
        *errmsg = strdup("block size must be at most 1 GiB");
        goto fail;
    }
    c->dir = cfg && cfg->dir ? strdup(cfg->dir) : bfs_cache_default_dir();
    if (!c->dir) {
        rc = cfg && cfg->dir ? -ENOMEM : -ENOENT;
        if (rc == -ENOENT)
            *errmsg = strdup("no cache directory: set HOME or XDG_CACHE_HOME, or give one");
        goto fail;
    }
    c->dirlen = strlen(c->dir);
    while (c->dirlen > 1 && c->dir[c->dirlen - 1] == '/')
        c->dir[--c->dirlen] = '\0';
    if (c->dirlen + PATH_ROOM >= PATH_MAX) {
        rc = -ENAMETOOLONG;
        goto fail;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/blocks", c->dir);
    struct stat st;
    if ((rc = mkdir_p(c->dir, 0700)) || (rc = mkdir_p(path, 0700))) {
        if (asprintf(errmsg, "cannot create the cache directory %s: %s", c->dir, strerror(-rc)) < 0)
            *errmsg = NULL;
        goto fail;
    }
    if (stat(c->dir, &st) != 0) {
        rc = -errno;
        goto fail;
    }
    c->dev = st.st_dev;
    c->ino = st.st_ino;
    if (!reg_add(c->dev, c->ino)) {
        rc = -EBUSY;
        if (asprintf(errmsg, "the cache %s is already open in this process", c->dir) < 0)
            *errmsg = NULL;
        c->dev = 0, c->ino = 0;
        goto fail;
    }
    if ((rc = load_meta(c, want, errmsg))) {
        if (!*errmsg && asprintf(errmsg, "cannot create %s/meta: %s", c->dir, strerror(-rc)) < 0)
            *errmsg = NULL;
        goto fail;
    }
    if (cfg && cfg->block_size && cfg->block_size != c->block_size)
        bfs_note(TAG, "%s keeps the block size it was created with (%" PRIu32
                 " bytes); the configured %" PRIu32 " is ignored", c->dir, c->block_size,
                 cfg->block_size);
    if ((rc = open_index(c, errmsg)))
        goto fail;
    /* unnamed tmp files are linked to their names through /proc/self/fd */
    atomic_store(&c->no_tmpfile, cfg->named_tmp || access("/proc/self/fd", X_OK) != 0);
    c->slow_write_us = cfg->slow_write_us ? cfg->slow_write_us : SLOW_WRITE_US;
    c->orphan_grace_s = cfg->orphan_grace_s ? cfg->orphan_grace_s : ORPHAN_GRACE_S;
    int swept = sweep_tmp(c);
    if (swept)
        bfs_info(TAG, "%s: removed %d unfinished block files of dead processes", c->dir, swept);
    bfs_debug(TAG, "opened %s: block size %" PRIu32 ", limit %" PRId64 ", floor %" PRId64,
              c->dir, c->block_size, c->max_bytes, c->min_free);
    *out = c;
    return 0;
fail:
    if (!*errmsg && asprintf(errmsg, "cannot open the cache %s: %s", c->dir ? c->dir : "",
                             strerror(-rc)) < 0)
        *errmsg = NULL;
    bfs_cache_close(c);
    return rc;
}

void bfs_cache_close(bfs_cache *c)
{
    if (!c)
        return;
    if (c->env) {
        int rc = 0;
        pthread_mutex_lock(&c->mu);
        bool pending = c->n_touch || atomic_load(&c->hits) != c->flushed_hits ||
                       atomic_load(&c->misses) != c->flushed_misses;
        pthread_mutex_unlock(&c->mu);
        if (pending)
            rc = flush_now(c);
        (void)rc;
        mdb_env_close(c->env);
    }
    if (c->dev || c->ino)
        reg_del(c->dev, c->ino);
    pthread_rwlock_destroy(&c->envlock);
    pthread_mutex_destroy(&c->mu);
    free(c->dir);
    free(c);
}

uint32_t bfs_cache_block_size(const bfs_cache *c)
{
    return c->block_size;
}

const char *bfs_cache_dir(const bfs_cache *c)
{
    return c->dir;
}

void bfs_cache_set_clock(bfs_cache *c, int64_t (*now)(void))
{
    c->now = now ? now : clock_real;
}

/* ---- get ----------------------------------------------------------------- */

/* Drop a bad block if its record still names file id (it may have been
 * replaced or evicted meanwhile).  Returns true when this call dropped it. */
static bool drop_if_unchanged(bfs_cache *c, const bkey *k, uint64_t id, const char *why)
{
    MDB_txn *t;
    if (txn_begin(c, 0, &t))
        return false;
    rec r;
    int rc = rec_get(c, t, k, &r);
    if (rc || r.id != id) {
        txn_abort(c, t);
        return false;
    }
    if ((rc = rec_remove(c, t, k, &r)) || (rc = info_add(c, t, "dropped", 1))) {
        txn_abort(c, t);
        lmdb_errno(c, rc, "drop a bad block");
        return false;
    }
    if (txn_commit(c, t))
        return false;
    char path[PATH_MAX];
    block_path(c, k, id, path);
    unlink(path);
    atomic_fetch_add(&c->corrupt, 1);
    if (why)
        bfs_warn(TAG, "dropped cached block %s: %s", path, why);
    return true;
}

/* A failed lookup of a block or a record as -errno: none, or another key's
 * (1: a hash collision), is -ENOENT. */
static int miss_errno(bfs_cache *c, int mrc, const char *what)
{
    return mrc == 1 || mrc == MDB_NOTFOUND ? -ENOENT : lmdb_errno(c, mrc, what);
}

/* The record of block k of key: 0, -ENOENT (none, or the hash names
 * another key) or another -errno. */
static int lookup(bfs_cache *c, const char *key, const bkey *k, rec *r)
{
    MDB_txn *t;
    int rc = txn_begin(c, MDB_RDONLY, &t);
    if (rc)
        return rc;
    int mrc = object_check(c, t, k, key);
    if (mrc == 0)
        mrc = rec_get(c, t, k, r);
    txn_abort(c, t);
    return mrc ? miss_errno(c, mrc, "look up a block") : 0;
}

int bfs_cache_drop(bfs_cache *c, const char *key, uint64_t block)
{
    bkey k;
    make_bkey(key, block, &k);
    rec r;
    int rc = lookup(c, key, &k, &r);
    if (rc < 0)
        return rc;
    return drop_if_unchanged(c, &k, r.id, NULL) ? 0 : -ENOENT;
}

static void queue_touch(bfs_cache *c, const bkey *k, uint64_t id, int64_t now)
{
    bool flush;
    pthread_mutex_lock(&c->mu);
    int i;
    for (i = 0; i < c->n_touch; i++)
        if (!memcmp(&c->touches[i].k, k, sizeof *k))
            break;
    if (i == c->n_touch && c->n_touch < TOUCH_QUEUE) {
        if (c->n_touch == 0)
            c->touch_since = now;
        c->touches[c->n_touch++] = (touch){*k, id, now};
    }
    flush = c->n_touch >= TOUCH_QUEUE || now - c->touch_since >= TOUCH_FLUSH_S;
    pthread_mutex_unlock(&c->mu);
    if (flush)
        flush_now(c);
}

/* Read a recorded block's file into buf, or map it when map is not NULL
 * (*map then holds the mapping on success), and check it.  Returns len, or
 * a negative errno with *why set when the file is bad (as opposed to
 * failing to open for a reason unrelated to the block, *why NULL). */
static ssize_t read_block(bfs_cache *c, const bkey *k, const rec *r, void *buf, void **map, const char **why)
{
    char path[PATH_MAX];
    block_path(c, k, r->id, path);
    *why = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            *why = "file missing";
        return -e;
    }
    struct stat st;
    ssize_t rc = 0;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
    } else if (st.st_size != (off_t)r->len) {
        *why = st.st_size < (off_t)r->len ? "file truncated" : "file longer than recorded";
        rc = -EIO;
    } else if (map) {
        /* populated now, so the checksum pass and the reader touch page
         * cache pages only; the cache never truncates a block file (it only
         * unlinks), so the mapping stays valid */
        posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED); /* one read-ahead of the whole file when not cached */
        void *m = mmap(NULL, r->len, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
        if (m == MAP_FAILED) {
            rc = -errno;
        } else if (block_csum(c, k, m, r->len) != r->csum) {
            munmap(m, r->len);
            *why = "checksum mismatch";
            rc = -EIO;
        } else {
            *map = m;
        }
    } else {
        size_t got = 0;
        while (got < r->len) {
            ssize_t n = pread(fd, (char *)buf + got, r->len - got, (off_t)got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                *why = n < 0 ? "read error" : "file truncated";
                rc = -EIO;
                break;
            }
            got += (size_t)n;
        }
        if (rc == 0 && block_csum(c, k, buf, r->len) != r->csum) {
            *why = "checksum mismatch";
            rc = -EIO;
        }
    }
    close(fd);
    return rc < 0 ? rc : (ssize_t)r->len;
}

/* bfs_cache_get and bfs_cache_map: into buf, or mapped when map != NULL. */
static ssize_t cache_read(bfs_cache *c, const char *key, uint64_t block, void *buf, size_t bufsz, void **map)
{
    bkey k;
    make_bkey(key, block, &k);
    for (int attempt = 0; attempt < 2; attempt++) {
        rec r;
        int rc = lookup(c, key, &k, &r);
        if (rc < 0) {
            atomic_fetch_add(&c->misses, 1);
            return rc;
        }
        if (r.len == 0 || r.len > c->block_size) {
            drop_if_unchanged(c, &k, r.id, "impossible recorded length");
            atomic_fetch_add(&c->misses, 1);
            return -ENOENT;
        }
        if (!map && r.len > bufsz)
            return -ERANGE;
        const char *why;
        ssize_t n = read_block(c, &k, &r, buf, map, &why);
        if (n >= 0) {
            atomic_fetch_add(&c->hits, 1);
            int64_t now = c->now();
            if (now - r.atime >= TOUCH_AFTER_S)
                queue_touch(c, &k, r.id, now);
            return n;
        }
        if (!why) {
            atomic_fetch_add(&c->misses, 1);
            return n;  /* EMFILE and the like: not the block's fault */
        }
        if (drop_if_unchanged(c, &k, r.id, why))
            break;
        /* the record changed under us (evicted or replaced): look again */
    }
    atomic_fetch_add(&c->misses, 1);
    return -ENOENT;
}

ssize_t bfs_cache_get(bfs_cache *c, const char *key, uint64_t block, void *buf, size_t bufsz)
{
    return cache_read(c, key, block, buf, bufsz, NULL);
}

ssize_t bfs_cache_map(bfs_cache *c, const char *key, uint64_t block, const void **data)
{
    void *m = NULL;
    ssize_t n = cache_read(c, key, block, NULL, 0, &m);
    *data = n >= 0 ? m : NULL;
    return n;
}

void bfs_cache_unmap(const void *data, size_t len)
{
    if (data)
        munmap((void *)data, len);
}

bool bfs_cache_has(bfs_cache *c, const char *key, uint64_t block)
{
    bkey k;
    make_bkey(key, block, &k);
    MDB_txn *t;
    if (txn_begin(c, MDB_RDONLY, &t))
        return false;
    rec r;
    bool has = object_check(c, t, &k, key) == 0 && rec_get(c, t, &k, &r) == 0;
    txn_abort(c, t);
    return has;
}

void bfs_cache_count_miss(bfs_cache *c)
{
    atomic_fetch_add(&c->misses, 1);
}

void bfs_cache_count_refused(bfs_cache *c)
{
    atomic_fetch_sub(&c->hits, 1);
    atomic_fetch_add(&c->misses, 1);
}

/* ---- put ----------------------------------------------------------------- */

/* A block's bytes before they are placed: an unnamed file (O_TMPFILE) in
 * its bucket directory, linked to its name when placed; or, where the file
 * system or a missing /proc does not allow that, blocks/tmp.PID.ID, renamed.
 * The unnamed file takes no directory lock to create (named tmp files all
 * in blocks/ made eight prefetch threads queue on that directory's lock and
 * every rename lock two directories) and vanishes by itself if the writer
 * dies. */
typedef struct tmpblock {
    int fd;               /* >= 0: the unnamed file, open */
    char path[PATH_MAX];  /* else the named tmp file ("" when none) */
} tmpblock;

static int write_all(int fd, const void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, (const char *)buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        done += (size_t)n;
    }
    return 0;
}

/* A new unnamed file for k, open for writing, in t->fd; -EOPNOTSUPP when
 * unnamed files cannot be used here (noted: the named way from then on). */
static int tmp_open_unnamed(bfs_cache *c, const bkey *k, tmpblock *t)
{
    char dir[PATH_MAX];
    bucket_path(c, k, dir);
    int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0 && errno == ENOENT) { /* the bucket's first block */
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            return -errno;
        fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    }
    if (fd < 0) {
        int rc = -errno;
        if (rc == -EOPNOTSUPP || rc == -EISDIR || rc == -EINVAL) {
            atomic_store(&c->no_tmpfile, true);
            rc = -EOPNOTSUPP;
        }
        return rc;
    }
    t->fd = fd;
    return 0;
}

/* A new file for k's bytes, open for writing: *fd.  Unnamed (t->fd is *fd)
 * where the file system allows, else named (t->path; t->fd is -1 and the
 * caller closes *fd before the file is placed). */
static int tmp_open(bfs_cache *c, const bkey *k, tmpblock *t, int *fd)
{
    t->fd = -1;
    t->path[0] = '\0';
    if (!atomic_load(&c->no_tmpfile)) {
        int rc = tmp_open_unnamed(c, k, t);
        if (rc != -EOPNOTSUPP) {
            *fd = t->fd;
            return rc;
        }
    }
    snprintf(t->path, sizeof t->path, "%s/blocks/tmp.%ld.%016" PRIx64, c->dir, (long)getpid(), random_id());
    *fd = open(t->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (*fd < 0) {
        t->path[0] = '\0';
        return -errno;
    }
    return 0;
}

/* Close a named tmp file's descriptor (an unnamed one stays open: it is
 * linked through it); on error the file is discarded. */
static int tmp_close_named(tmpblock *t, int fd, int rc);

static void tmp_discard(tmpblock *t);

/* A new file for k holding buf's bytes, ready for place_block. */
static int tmp_write(bfs_cache *c, const bkey *k, const void *buf, size_t len, tmpblock *t)
{
    int fd;
    int rc = tmp_open(c, k, t, &fd);
    if (rc)
        return rc;
    return tmp_close_named(t, fd, write_all(fd, buf, len));
}

static int tmp_close_named(tmpblock *t, int fd, int rc)
{
    if (t->fd < 0 && close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc)
        tmp_discard(t);
    return rc;
}

/* Drop what tmp_write made and place_block did not use. */
static void tmp_discard(tmpblock *t)
{
    if (t->fd >= 0)
        close(t->fd);
    else if (t->path[0])
        unlink(t->path);  /* still there unless placed (names are never reused) */
    t->fd = -1;
    t->path[0] = '\0';
}

/* Give t the block's final name, never replacing a file (ids are random; on
 * the rare clash pick another): link the unnamed file, or rename the named
 * one.  Creates the bucket directory. */
static int place_block(bfs_cache *c, const tmpblock *t, const bkey *k, uint64_t *id, char *path)
{
    for (int attempt = 0; attempt < 8; attempt++) {
        block_path(c, k, *id, path);
        int r;
        if (t->fd >= 0) {
            char proc[64];
            snprintf(proc, sizeof proc, "/proc/self/fd/%d", t->fd);
            r = linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW);
        } else {
            r = renameat2(AT_FDCWD, t->path, AT_FDCWD, path, RENAME_NOREPLACE);
            if (r != 0 && (errno == EINVAL || errno == ENOSYS)) {
                /* no RENAME_NOREPLACE on this file system: link() also
                 * refuses to replace */
                r = link(t->path, path);
                if (r == 0)
                    unlink(t->path);
            }
        }
        if (r == 0)
            return 0;
        int e = errno;
        if (e == EEXIST) {
            *id = random_id();
            continue;
        }
        if (e != ENOENT)
            return -e;
        if (t->fd < 0 && access(t->path, F_OK) != 0)
            return -ENOENT;  /* our tmp file is gone (removed as stale?) */
        char dir[PATH_MAX];
        bucket_path(c, k, dir);
        if (mkdir(dir, 0700) != 0)  /* the bucket's first block */
            return errno == EEXIST ? -ENOENT : -errno;  /* EEXIST: not the directory (/proc?) */
    }
    return -EEXIST;
}

/* One attempt at recording a block whose bytes are in tmp.  Returns 0, a
 * negative errno, or 1 for "index full, evict and retry".  The file gets
 * its final name (a link, perhaps a bucket's mkdir) and the free space is
 * read before the write transaction begins, not inside it (I5).  A file
 * placed but not recorded is an orphan; every way out but the commit
 * unlinks it. */
static int put_txn(bfs_cache *c, const char *key, const bkey *k, uint64_t csum, size_t len,
                   const tmpblock *tmp, victims *vs)
{
    rec r = {.csum = csum, .id = random_id(), .len = (uint32_t)len};
    char path[PATH_MAX];
    int rc = place_block(c, tmp, k, &r.id, path); /* the id changes on a name clash */
    if (rc)
        return rc;
    int64_t free_now = fs_free(c);
    MDB_txn *t;
    if ((rc = txn_begin(c, 0, &t))) {
        unlink(path);
        return rc;
    }
    int mrc = flush_in_txn(c, t);
    if (mrc)
        goto mdb_fail;
    mrc = object_check(c, t, k, key);
    if (mrc == 1) {
        txn_commit(c, t);  /* keeps the flushed touches */
        unlink(path);
        bfs_debug(TAG, "object key hash collision for %s: not cached", key);
        return -EEXIST;
    }
    if (mrc)
        goto mdb_fail;

    /* make room: the limit counts the old copy of this block as gone */
    rec old;
    mrc = rec_get(c, t, k, &old);
    if (mrc && mrc != MDB_NOTFOUND)
        goto mdb_fail;
    bool had_old = mrc == 0;
    if (had_old && old.len == len && old.csum == csum) {
        /* another thread or process stored the same bytes meanwhile */
        txn_commit(c, t);
        unlink(path);
        return 0;
    }
    int64_t bytes;
    if ((mrc = info_get(c, t, "bytes", &bytes)))
        goto mdb_fail;
    int64_t need = bytes - (had_old ? old.len : 0) + (int64_t)len - c->max_bytes;
    int64_t floor_need = free_now == INT64_MAX ? 0 : c->min_free - free_now;
    if (floor_need > need)
        need = floor_need;
    if (need > 0) {
        int64_t room = bytes - (had_old ? old.len : 0);
        if (need > room) {
            /* even an empty cache would not do: keep what we have (and
             * the flushed touches) */
            txn_commit(c, t);
            unlink(path);
            if (!atomic_exchange(&c->enospc_noted, 1))
                bfs_note(TAG, "%s: no room for a %zu-byte block (limit %" PRId64 ", %" PRId64
                         " bytes free, floor %" PRId64 ")", c->dir, len, c->max_bytes,
                         free_now, c->min_free);
            return -ENOSPC;
        }
        int64_t freed = 0;
        if ((mrc = evict_in_txn(c, t, need, SIZE_MAX, vs, &freed)))
            goto mdb_fail;
        if ((mrc = rec_get(c, t, k, &old)) && mrc != MDB_NOTFOUND)
            goto mdb_fail;
        had_old = mrc == 0;
    }
    if (had_old) {
        if ((mrc = rec_remove(c, t, k, &old)) || (mrc = victims_push(vs, k, old.id)))
            goto mdb_fail;
    }

    r.atime = c->now();
    lkey l;
    MDB_val bk = {sizeof *k, (void *)k}, d = {sizeof r, &r}, lk = {sizeof l, &l}, empty = {0, NULL};
    make_lkey(r.atime, k, &l);
    if ((mrc = mdb_put(t, c->db_blocks, &bk, &d, 0)) || (mrc = mdb_put(t, c->db_lru, &lk, &empty, 0)) ||
        (mrc = object_add(c, t, k, key, +1)) || (mrc = info_add(c, t, "bytes", (int64_t)len)))
        goto mdb_fail;
    if ((rc = txn_commit(c, t))) {
        unlink(path);  /* unrecorded: an orphan otherwise */
        vs->n = 0;
        return rc;
    }
    return 0;

mdb_fail:
    txn_abort(c, t);
    unlink(path);
    vs->n = 0;
    if (mrc == MDB_MAP_FULL || mrc == MDB_TXN_FULL)
        return 1;
    return lmdb_errno(c, mrc, "record a block");
}

/* The index map is full: evict an eighth of the blocks in their own
 * transaction (their pages become free for the retry). */
static int relieve_map(bfs_cache *c)
{
    MDB_txn *t;
    int rc = txn_begin(c, 0, &t);
    if (rc)
        return rc;
    MDB_stat ms;
    int mrc = mdb_stat(t, c->db_blocks, &ms);
    victims vs = {0};
    int64_t freed = 0;
    if (!mrc)
        mrc = evict_in_txn(c, t, INT64_MAX, ms.ms_entries / 8 + 64, &vs, &freed);
    if (mrc) {
        txn_abort(c, t);
        free(vs.v);
        return lmdb_errno(c, mrc, "evict for index space");
    }
    rc = txn_commit(c, t);
    if (rc == 0)
        victims_unlink(c, &vs);
    free(vs.v);
    bfs_note(TAG, "%s: index map full; evicted %" PRId64 " bytes", c->dir, freed);
    return rc;
}

static int put_check(const bfs_cache *c, size_t len)
{
    if (len == 0 || len > c->block_size)
        return -EINVAL;
    return (int64_t)len > c->max_bytes ? -ENOSPC : 0;
}

/* Store block k of key, whose bytes are buf[0..len) with checksum csum:
 * from *given (a file that holds them already) when not NULL, else from a
 * file written here.  *given is used up either way. */
static int put_block(bfs_cache *c, const char *key, const bkey *k, uint64_t csum, const void *buf, size_t len,
                     tmpblock *given)
{
    /* already there with these bytes: nothing to write */
    MDB_txn *t;
    int rc = txn_begin(c, MDB_RDONLY, &t);
    rec r;
    bool same = rc == 0 && object_check(c, t, k, key) == 0 && rec_get(c, t, k, &r) == 0 && r.len == len &&
                r.csum == csum;
    if (rc == 0)
        txn_abort(c, t);
    if (rc || same) {
        if (given)
            tmp_discard(given);
        return rc;
    }

    tmpblock tmp;
    if (given) {
        tmp = *given;
    } else {
        rc = tmp_write(c, k, buf, len, &tmp);
        if (rc == -ENOSPC || rc == -EDQUOT) {
            /* the disk filled up behind our back: make room for one block
             * beyond the floor, then try once more */
            bfs_cache_stats st;
            if (bfs_cache_stats_get(c, &st) == 0)
                bfs_cache_evict(c, st.bytes - (int64_t)len - (c->min_free - fs_free(c)));
            rc = tmp_write(c, k, buf, len, &tmp);
            if (rc == -EDQUOT)
                rc = -ENOSPC;
        }
        if (rc)
            return rc;
    }

    victims vs = {0};
    rc = put_txn(c, key, k, csum, len, &tmp, &vs);
    bool again = false;
    if (rc == 1 && relieve_map(c) == 0) {
        again = true; /* a file placed and unlinked again cannot be linked twice: write anew */
    } else if (rc == -ENOENT && tmp.fd >= 0) {
        atomic_store(&c->no_tmpfile, true); /* linking through /proc/self/fd failed: named from now on */
        bfs_note(TAG, "%s: cannot link unnamed block files here; writing named ones", c->dir);
        again = true;
    }
    if (again) {
        tmp_discard(&tmp);
        rc = tmp_write(c, k, buf, len, &tmp);
        if (rc == 0)
            rc = put_txn(c, key, k, csum, len, &tmp, &vs);
    }
    if (rc == 1) {
        lmdb_errno(c, MDB_MAP_FULL, "record a block");
        rc = -ENOSPC;
    }
    tmp_discard(&tmp);
    victims_unlink(c, &vs);
    free(vs.v);
    return rc;
}

int bfs_cache_put(bfs_cache *c, const char *key, uint64_t block, const void *buf, size_t len)
{
    int rc = put_check(c, len);
    if (rc)
        return rc;
    bkey k;
    make_bkey(key, block, &k);
    return put_block(c, key, &k, block_csum(c, &k, buf, len), buf, len, NULL);
}

/* ---- writing a block while it arrives ------------------------------------ */

/* Pieces are written once this many bytes wait (while still in the CPU's
 * caches, as the checksum is taken on each piece). */
#define WRITE_BATCH (256 * 1024)

struct bfs_cache_writer {
    bfs_cache *c;
    char *key;
    uint64_t block;
    bkey k;
    XXH3_state_t *hash;
    tmpblock tmp;         /* the file, once opened */
    int fd;               /* where the bytes go; -1: no file (not yet, or failed) */
    bool failed;          /* a file could not be made or written: commit writes anew */
    size_t hashed;        /* bytes of the block hashed ... */
    size_t written;       /* ... and written */
    size_t high;          /* most bytes ever written (an earlier attempt's) */
};

bfs_cache_writer *bfs_cache_writer_new(bfs_cache *c, const char *key, uint64_t block)
{
    bfs_cache_writer *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    *w = (bfs_cache_writer){.c = c, .key = strdup(key), .block = block, .hash = XXH3_createState(), .fd = -1,
                            .tmp = {.fd = -1}};
    if (!w->key || !w->hash) {
        bfs_cache_writer_abort(w);
        return NULL;
    }
    make_bkey(key, block, &w->k);
    XXH3_64bits_reset_withSeed(w->hash, csum_seed(c, &w->k));
    return w;
}

void bfs_cache_writer_restart(bfs_cache_writer *w)
{
    XXH3_64bits_reset_withSeed(w->hash, csum_seed(w->c, &w->k));
    w->hashed = w->written = 0;
}

static void writer_flush(bfs_cache_writer *w, const char *data, size_t upto)
{
    if (w->failed || upto <= w->written)
        return;
    if (w->fd < 0 && tmp_open(w->c, &w->k, &w->tmp, &w->fd) != 0) {
        w->failed = true;
        return;
    }
    size_t n = upto - w->written;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ssize_t put;
    do
        put = pwrite(w->fd, data + w->written, n, (off_t)w->written);
    while (put < 0 && errno == EINTR);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* ENOSPC and the like (or short): commit writes anew.  So also when the
     * disk is slow (throttled, remote): the fetch, and whoever waits for
     * it, must not wait for the cache's disk; the commit writes after the
     * waiters have the block. */
    int64_t us = (t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000;
    if (put != (ssize_t)n || us >= w->c->slow_write_us) {
        w->failed = true;
        return;
    }
    w->written = upto;
    if (upto > w->high)
        w->high = upto;
}

void bfs_cache_writer_feed(bfs_cache_writer *w, const void *data, size_t upto)
{
    if (upto < w->hashed)
        bfs_cache_writer_restart(w); /* fewer bytes than before: the bytes started over */
    if (upto == w->hashed || w->failed)
        return; /* failed: commit hashes and writes anew */
    XXH3_64bits_update(w->hash, (const char *)data + w->hashed, upto - w->hashed);
    w->hashed = upto;
    if (upto - w->written >= WRITE_BATCH)
        writer_flush(w, data, upto);
}

/* Close and remove the writer's file, if any. */
static void writer_drop_file(bfs_cache_writer *w)
{
    if (w->fd >= 0 && w->tmp.fd < 0)
        close(w->fd); /* a named file's descriptor; tmp_discard unlinks it */
    w->fd = -1;
    tmp_discard(&w->tmp);
}

int bfs_cache_writer_commit(bfs_cache_writer *w, const void *buf, size_t len)
{
    int rc = put_check(w->c, len);
    if (rc == 0 && !w->failed && w->hashed == len) {
        writer_flush(w, buf, len); /* the rest (the file is made here when nothing was written yet) */
        if (!w->failed && w->high > len && ftruncate(w->fd, (off_t)len) != 0)
            w->failed = true;
        if (!w->failed) {
            int fd = w->fd;
            w->fd = -1; /* a named file's descriptor is closed here, an unnamed one stays in tmp */
            if (tmp_close_named(&w->tmp, fd, 0) == 0) {
                tmpblock t = w->tmp;
                w->tmp = (tmpblock){.fd = -1};
                rc = put_block(w->c, w->key, &w->k, XXH3_64bits_digest(w->hash), buf, len, &t);
                bfs_cache_writer_abort(w);
                return rc;
            }
        }
    }
    if (rc == 0) {
        /* the bytes again, the long way (it makes room when the disk is
         * full, so the partial file goes first: it would count as used) */
        writer_drop_file(w);
        rc = bfs_cache_put(w->c, w->key, w->block, buf, len);
    }
    bfs_cache_writer_abort(w);
    return rc;
}

void bfs_cache_writer_abort(bfs_cache_writer *w)
{
    if (!w)
        return;
    writer_drop_file(w);
    XXH3_freeState(w->hash);
    free(w->key);
    free(w);
}

/* ---- object records ----------------------------------------------------- */

/* A transaction looking at one key's record. */
typedef struct rlook {
    MDB_txn *t;
    uint8_t kh[16];            /* the key's hash */
    int found;                 /* 0; 1 when kh holds another key's record (a hash
                                * collision); else an MDB code (MDB_NOTFOUND: none) */
    rhead h;                   /* when found == 0 */
    const void *data;          /* its bytes, until t ends */
} rlook;

/* Begin a transaction (flags) and look up key's record in it.  0 with l->t
 * open, or -errno. */
static int record_begin(bfs_cache *c, const char *key, unsigned flags, rlook *l)
{
    key_hash(key, l->kh);
    int rc = txn_begin(c, flags, &l->t);
    if (rc)
        return rc;
    MDB_val k = {16, l->kh}, d;
    if ((l->found = mdb_get(l->t, c->db_records, &k, &d)))
        return 0;
    size_t kl = strlen(key);
    const char *stored = (const char *)d.mv_data + sizeof l->h;
    if (d.mv_size >= sizeof l->h)
        memcpy(&l->h, d.mv_data, sizeof l->h);
    if (d.mv_size < sizeof l->h || d.mv_size != sizeof l->h + (size_t)l->h.klen + l->h.dlen)
        l->found = MDB_CORRUPTED;
    else if (l->h.klen != kl || memcmp(stored, key, kl))
        l->found = 1;
    else
        l->data = stored + kl;
    return 0;
}


/* Remove the record at kh (header h) with its age entry and its bytes. */
static int record_remove(bfs_cache *c, MDB_txn *t, const uint8_t kh[16], const rhead *h)
{
    uint8_t seq[8];
    put_be64(seq, h->seq);
    MDB_val k = {16, (void *)kh}, ak = {sizeof seq, seq};
    int rc = mdb_del(t, c->db_records, &k, NULL);
    if (rc == 0 && (rc = mdb_del(t, c->db_record_age, &ak, NULL)) == MDB_NOTFOUND)
        rc = 0;
    return rc ? rc : info_add(c, t, "record_bytes", -((int64_t)h->klen + h->dlen));
}

/* Remove least recently written records until the bound holds (I6); the
 * newest record always stays. */
static int record_trim(bfs_cache *c, MDB_txn *t)
{
    for (;;) {
        MDB_stat ms;
        int64_t bytes;
        int rc = mdb_stat(t, c->db_records, &ms);
        if (!rc)
            rc = info_get(c, t, "record_bytes", &bytes);
        if (rc)
            return rc;
        if (ms.ms_entries <= 1 ||
            ((int64_t)ms.ms_entries <= c->max_records && bytes <= c->max_records * RECORD_BUDGET))
            return 0;
        MDB_cursor *cur;
        if ((rc = mdb_cursor_open(t, c->db_record_age, &cur)))
            return rc;
        MDB_val ak, av;
        uint8_t seq[8], kh[16];
        rc = mdb_cursor_get(cur, &ak, &av, MDB_FIRST);
        bool ours = rc == 0 && ak.mv_size == sizeof seq && av.mv_size == sizeof kh;
        if (ours) {
            memcpy(seq, ak.mv_data, sizeof seq);
            memcpy(kh, av.mv_data, sizeof kh);
        } else if (rc == 0) {
            rc = mdb_cursor_del(cur, 0);  /* not ours: drop and go on */
        }
        mdb_cursor_close(cur);
        if (rc)
            return rc == MDB_NOTFOUND ? 0 : rc;  /* no age entries left (I6 broken) */
        if (!ours)
            continue;
        MDB_val k = {sizeof kh, kh}, d;
        rhead h;
        if ((rc = mdb_get(t, c->db_records, &k, &d)) && rc != MDB_NOTFOUND)
            return rc;
        if (rc == 0 && d.mv_size >= sizeof h)
            memcpy(&h, d.mv_data, sizeof h);
        if (rc == 0 && d.mv_size >= sizeof h && h.seq == get_be64(seq)) {
            rc = record_remove(c, t, kh, &h);
        } else {
            /* an age entry without its record: drop the entry */
            MDB_val key = {sizeof seq, seq};
            rc = mdb_del(t, c->db_record_age, &key, NULL);
        }
        if (rc)
            return rc;
    }
}

/* One attempt at storing a record.  0, a negative errno, or 1 for "index
 * full, evict and retry". */
static int record_put_txn(bfs_cache *c, const char *key, const void *data, size_t len)
{
    rlook l;
    int rc = record_begin(c, key, 0, &l);
    if (rc)
        return rc;
    MDB_txn *t = l.t;
    int mrc = l.found;
    if (mrc == 1) {
        txn_abort(c, t);
        bfs_debug(TAG, "record key hash collision for %s: not stored", key);
        return -EEXIST;
    }
    if (mrc == 0)
        mrc = record_remove(c, t, l.kh, &l.h);
    else if (mrc == MDB_NOTFOUND)
        mrc = 0;
    int64_t seq = 0;
    if (!mrc)
        mrc = info_get(c, t, "record_seq", &seq);
    if (!mrc)
        mrc = info_set(c, t, "record_seq", ++seq);
    size_t kl = strlen(key);
    rhead h = {.seq = (uint64_t)seq, .klen = (uint32_t)kl, .dlen = (uint32_t)len};
    uint8_t be[8];
    put_be64(be, h.seq);
    MDB_val k = {16, l.kh}, d = {sizeof h + kl + len, NULL};
    MDB_val ak = {sizeof be, be}, av = {16, l.kh};
    if (!mrc && !(mrc = mdb_put(t, c->db_records, &k, &d, MDB_RESERVE))) {
        memcpy(d.mv_data, &h, sizeof h);
        memcpy((char *)d.mv_data + sizeof h, key, kl);
        if (len)
            memcpy((char *)d.mv_data + sizeof h + kl, data, len);
    }
    if (!mrc)
        mrc = mdb_put(t, c->db_record_age, &ak, &av, 0);
    if (!mrc)
        mrc = info_add(c, t, "record_bytes", (int64_t)(kl + len));
    if (!mrc)
        mrc = record_trim(c, t);
    if (mrc) {
        txn_abort(c, t);
        if (mrc == MDB_MAP_FULL || mrc == MDB_TXN_FULL)
            return 1;
        return lmdb_errno(c, mrc, "store a record");
    }
    return txn_commit(c, t);
}

int bfs_cache_record_put(bfs_cache *c, const char *key, const void *data, size_t len)
{
    if (len > BFS_CACHE_RECORD_MAX || strlen(key) > UINT32_MAX)
        return -EINVAL;
    int rc = record_put_txn(c, key, data, len);
    if (rc == 1 && relieve_map(c) == 0)
        rc = record_put_txn(c, key, data, len);
    return rc == 1 ? lmdb_errno(c, MDB_MAP_FULL, "store a record") : rc;
}

ssize_t bfs_cache_record_get(bfs_cache *c, const char *key, void *buf, size_t bufsz)
{
    rlook l;
    int rc = record_begin(c, key, MDB_RDONLY, &l);
    if (rc)
        return rc;
    ssize_t n = 0;
    if (l.found == 0) {
        n = l.h.dlen <= bufsz ? (ssize_t)l.h.dlen : -ERANGE;
        if (n > 0)
            memcpy(buf, l.data, (size_t)n);
    }
    txn_abort(c, l.t);
    return l.found ? miss_errno(c, l.found, "read a record") : n;
}

int bfs_cache_record_drop(bfs_cache *c, const char *key)
{
    rlook l;
    int rc = record_begin(c, key, 0, &l);
    if (rc)
        return rc;
    int mrc = l.found ? l.found : record_remove(c, l.t, l.kh, &l.h);
    if (mrc) {
        txn_abort(c, l.t);
        return miss_errno(c, mrc, "drop a record");
    }
    return txn_commit(c, l.t);
}

int bfs_cache_records_clear(bfs_cache *c, int64_t *removed)
{
    if (removed)
        *removed = 0;
    MDB_txn *t;
    int rc = txn_begin(c, 0, &t);
    if (rc)
        return rc;
    MDB_stat ms;
    int mrc = mdb_stat(t, c->db_records, &ms);
    if (!mrc)
        mrc = mdb_drop(t, c->db_records, 0);
    if (!mrc)
        mrc = mdb_drop(t, c->db_record_age, 0);
    if (!mrc)
        mrc = info_set(c, t, "record_bytes", 0);
    if (mrc) {
        txn_abort(c, t);
        return lmdb_errno(c, mrc, "clear records");
    }
    if ((rc = txn_commit(c, t)) == 0 && removed)
        *removed = (int64_t)ms.ms_entries;
    return rc;
}

/* ---- stats / evict / verify ---------------------------------------------- */

int bfs_cache_stats_get(bfs_cache *c, bfs_cache_stats *st)
{
    memset(st, 0, sizeof *st);
    st->hits = atomic_load(&c->hits);
    st->misses = atomic_load(&c->misses);
    st->corrupt = atomic_load(&c->corrupt);
    st->max_bytes = c->max_bytes;
    st->min_free_bytes = c->min_free;
    st->block_size = c->block_size;
    int64_t f = fs_free(c);
    st->fs_free_bytes = f == INT64_MAX ? -1 : f;
    MDB_txn *t;
    int rc = txn_begin(c, MDB_RDONLY, &t);
    if (rc)
        return rc;
    MDB_stat sb, so, sr;
    int mrc = mdb_stat(t, c->db_blocks, &sb);
    if (!mrc)
        mrc = mdb_stat(t, c->db_objects, &so);
    if (!mrc)
        mrc = mdb_stat(t, c->db_records, &sr);
    if (!mrc)
        mrc = info_get(c, t, "bytes", &st->bytes);
    if (!mrc)
        mrc = info_get(c, t, "hits", &st->all_hits);
    if (!mrc)
        mrc = info_get(c, t, "misses", &st->all_misses);
    if (!mrc)
        mrc = info_get(c, t, "dropped", &st->all_dropped);
    if (!mrc)
        mrc = info_get(c, t, "evicted", &st->all_evicted);
    txn_abort(c, t);
    if (mrc)
        return lmdb_errno(c, mrc, "read statistics");
    st->blocks = (int64_t)sb.ms_entries;
    st->objects = (int64_t)so.ms_entries;
    st->records = (int64_t)sr.ms_entries;
    /* the part of this process's counters not yet in the index */
    pthread_mutex_lock(&c->mu);
    st->all_hits += (int64_t)(st->hits - c->flushed_hits);
    st->all_misses += (int64_t)(st->misses - c->flushed_misses);
    pthread_mutex_unlock(&c->mu);
    return 0;
}

int bfs_cache_evict(bfs_cache *c, int64_t target_bytes)
{
    if (target_bytes < 0)
        target_bytes = 0;
    victims vs = {0};
    int rc = 0;
    for (;;) {
        MDB_txn *t;
        if ((rc = txn_begin(c, 0, &t)))
            break;
        int64_t bytes, freed = 0;
        int mrc = flush_in_txn(c, t);
        if (!mrc)
            mrc = info_get(c, t, "bytes", &bytes);
        if (!mrc && bytes > target_bytes)
            mrc = evict_in_txn(c, t, bytes - target_bytes, EVICT_BATCH, &vs, &freed);
        if (mrc) {
            txn_abort(c, t);
            rc = lmdb_errno(c, mrc, "evict");
            break;
        }
        if ((rc = txn_commit(c, t)))
            break;
        victims_unlink(c, &vs);
        if (freed == 0 || bytes - freed <= target_bytes)
            break;
    }
    free(vs.v);
    return rc;
}

/* Check the files of a batch of records. */
static void verify_records(bfs_cache *c, bfs_cache_progress_fn progress, void *ctx, int64_t total,
                           bfs_cache_verified *v, int64_t *bytes, void *buf)
{
    bkey last;
    bool have_last = false;
    for (;;) {
        bkey ks[VERIFY_BATCH];
        rec rs[VERIFY_BATCH];
        int n = 0;
        MDB_txn *t;
        if (txn_begin(c, MDB_RDONLY, &t))
            return;
        MDB_cursor *cur;
        if (mdb_cursor_open(t, c->db_blocks, &cur) == 0) {
            MDB_val k = {sizeof last, &last}, d;
            int rc = have_last ? mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE)
                               : mdb_cursor_get(cur, &k, &d, MDB_FIRST);
            if (rc == 0 && have_last && k.mv_size == sizeof last && !memcmp(k.mv_data, &last, sizeof last))
                rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT);
            while (rc == 0 && n < VERIFY_BATCH) {
                if (k.mv_size == sizeof(bkey) && d.mv_size == sizeof(rec)) {
                    memcpy(&ks[n], k.mv_data, sizeof(bkey));
                    memcpy(&rs[n], d.mv_data, sizeof(rec));
                    n++;
                }
                memcpy(&last, k.mv_data, k.mv_size < sizeof last ? k.mv_size : sizeof last);
                have_last = true;
                rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT);
            }
            mdb_cursor_close(cur);
        }
        txn_abort(c, t);
        if (n == 0)
            return;
        for (int i = 0; i < n; i++) {
            const char *why = NULL;
            if (rs[i].len == 0 || rs[i].len > c->block_size)
                why = "impossible recorded length";
            else if (read_block(c, &ks[i], &rs[i], buf, NULL, &why) >= 0)
                *bytes += rs[i].len;
            if (why && drop_if_unchanged(c, &ks[i], rs[i].id, why))
                v->bad++;
            v->checked++;
            if (progress)
                progress(ctx, v->checked, total, *bytes);
        }
    }
}

/* Remove orphans of one bucket directory: a block file whose name no
 * record matches once its ctime is orphan_grace old (a younger one may be
 * a put between its link and its commit: I5), and any file whose name is
 * not a block's. */
static void verify_bucket(bfs_cache *c, int dfd, const char *bucket, int64_t *removed)
{
    int bfd = openat(dfd, bucket, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (bfd < 0)
        return;
    DIR *d = fdopendir(bfd);
    if (!d) {
        close(bfd);
        return;
    }
    char (*names)[72] = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
            continue;
        if (strlen(e->d_name) >= 72) {
            bfs_warn(TAG, "%s/blocks/%s: removing the unexpected file %s", c->dir, bucket, e->d_name);
            if (unlinkat(bfd, e->d_name, 0) == 0)
                (*removed)++;
            continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            void *nn = realloc(names, cap * sizeof *names);
            if (!nn)
                break;
            names = nn;
        }
        strcpy(names[n++], e->d_name);
    }
    int64_t now = clock_real();
    MDB_txn *t;
    if (n && txn_begin(c, 0, &t) == 0) {
        for (size_t i = 0; i < n; i++) {
            bkey k;
            uint64_t id;
            rec r;
            bool parsed = parse_block_name(names[i], &k, &id);
            char kh[33];
            if (parsed) {
                hex(k.kh, 16, kh);
                parsed = !strncmp(kh, bucket, 2);
            }
            if (parsed && rec_get(c, t, &k, &r) == 0 && r.id == id)
                continue;
            struct stat st;
            if (fstatat(bfd, names[i], &st, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(st.st_mode))
                continue;
            if (parsed && c->orphan_grace_s > 0 && now - st.st_ctime < c->orphan_grace_s)
                continue; /* perhaps a put between its link and its commit */
            if (!parsed)
                bfs_warn(TAG, "%s/blocks/%s: removing the unexpected file %s", c->dir, bucket, names[i]);
            else
                bfs_info(TAG, "%s/blocks/%s: removing the orphan block file %s", c->dir, bucket,
                         names[i]);
            if (unlinkat(bfd, names[i], 0) == 0)
                (*removed)++;
        }
        txn_abort(c, t);
    }
    free(names);
    closedir(d);
}

int bfs_cache_verify_progress(bfs_cache *c, bfs_cache_progress_fn progress, void *ctx, bfs_cache_verified *out)
{
    bfs_cache_verified v = {0};
    int64_t bytes = 0;
    bfs_cache_stats st;
    int rc = bfs_cache_stats_get(c, &st);
    if (rc)
        return rc;
    void *buf = malloc(c->block_size);
    if (!buf)
        return -ENOMEM;
    verify_records(c, progress, ctx, st.blocks, &v, &bytes, buf);
    free(buf);

    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/blocks", c->dir);
    DIR *d = opendir(path);
    if (!d) {
        rc = -errno;
    } else {
        int64_t now = clock_real();
        struct dirent *e;
        while ((e = readdir(d))) {
            const char *nm = e->d_name;
            if (nm[0] == '.' && (!nm[1] || (nm[1] == '.' && !nm[2])))
                continue;
            struct stat fst;
            if (fstatat(dirfd(d), nm, &fst, AT_SYMLINK_NOFOLLOW) != 0)
                continue;
            if (S_ISDIR(fst.st_mode)) {
                if (strlen(nm) == 2 && strspn(nm, "0123456789abcdef") == 2)
                    verify_bucket(c, dirfd(d), nm, &v.leftovers);
                continue;
            }
            if (!strncmp(nm, "tmp.", 4)) {
                long pid = strtol(nm + 4, NULL, 10);
                if (!((pid != getpid() && pid_dead(pid)) || now - fst.st_mtime > TMP_MAX_AGE_S))
                    continue;  /* a put in progress */
            } else {
                bfs_warn(TAG, "%s: removing the unexpected file %s", path, nm);
            }
            if (unlinkat(dirfd(d), nm, 0) == 0)
                v.leftovers++;
        }
        closedir(d);
    }

    /* I1: recompute the byte total in case an earlier version broke it */
    MDB_txn *t;
    if (rc == 0 && (rc = txn_begin(c, 0, &t)) == 0) {
        int64_t sum = 0, recorded = 0;
        MDB_cursor *cur;
        int mrc = mdb_cursor_open(t, c->db_blocks, &cur);
        if (!mrc) {
            MDB_val k, val;
            for (int r2 = mdb_cursor_get(cur, &k, &val, MDB_FIRST); r2 == 0;
                 r2 = mdb_cursor_get(cur, &k, &val, MDB_NEXT))
                if (val.mv_size == sizeof(rec))
                    sum += ((const rec *)val.mv_data)->len;
            mdb_cursor_close(cur);
            mrc = info_get(c, t, "bytes", &recorded);
        }
        if (!mrc && sum != recorded) {
            bfs_warn(TAG, "%s: byte total was %" PRId64 ", blocks add up to %" PRId64 "; fixed",
                     c->dir, recorded, sum);
            mrc = info_set(c, t, "bytes", sum);
        }
        if (mrc) {
            txn_abort(c, t);
            rc = lmdb_errno(c, mrc, "verify totals");
        } else {
            rc = txn_commit(c, t);
        }
    }
    if (out)
        *out = v;
    return rc;
}

int bfs_cache_verify(bfs_cache *c, bfs_cache_verified *out)
{
    return bfs_cache_verify_progress(c, NULL, NULL, out);
}
