/*
 * remote.c - remote objects read block by block (see remote_i.h).
 *
 * Blocks in memory are reference counted (struct bblock): a FUSE reply is
 * written straight from them (bfs_robj_view) while the object moves on.
 * Read path of one block b of an open object o:
 *
 *   1. o's two hot blocks (the last ones reads decoded);
 *   2. o->ready: blocks read-ahead fetched for o, handed over in memory;
 *   3. the in-flight table: if another thread or a read-ahead worker is
 *      fetching or mapping (key, b), share its block when it is done
 *      (concurrent readers cause one fetch or one check, and no copy); a
 *      failed fetch leaves the table at once, and a reader whose own
 *      deadline outlasts the fetcher's tries again;
 *   4. the persistent cache: the block file mapped, length and checksum
 *      verified every time it is taken from the cache (listed in flight
 *      meanwhile; read-ahead maps cached blocks ahead of the reader too);
 *   5. fetch: replicas in chain order, skipping hosts marked down; each
 *      attempt is one request bounded by what is left of the deadline
 *      (http.c); transient failures retry with full-jitter exponential
 *      backoff, permanent ones (404, 403) go to the next replica at once; a
 *      changed object (-ESTALE) fails at once; past the deadline the read
 *      fails with -EIO.  The fetched block goes to every waiter, into the
 *      cache, and (for read-ahead) into o->ready.
 *
 * Memory: every block (hot, ready, fetches in flight, pieces of a reply
 * being sent, and idle spare buffers kept for reuse) is taken from one
 * process-wide budget, mapped cache blocks too: their pages are page cache,
 * but they count in the daemon's resident set while mapped, and read-ahead
 * keeps up to its window of them per object.  Buffers are mmap'd, not
 * malloc'd, so a freed one leaves the process at once (glibc would keep it
 * on a heap), and malloc_trim runs when the spares go idle.
 * A read that cannot get memory waits (within its deadline) and then looks
 * in memory and the cache again;
 * read-ahead that cannot get memory is simply skipped.  So a thousand open
 * files cannot exhaust memory.  No thread waits for budget while holding
 * a block (only a reply's first piece may wait; a waiter on a fetch needs
 * none), and blocks kept between reads (hot and ready) may hold at most half
 * of the budget, so idle open files can never starve the reads that need
 * memory.
 *
 * Read-ahead: each time a sequential reader enters a new block the window
 * doubles, from two blocks up to readahead bytes (and below READY_MAX
 * blocks); a seek resets it.  Requests within a block of the last one's end
 * are sequential: the kernel sends them on several FUSE threads.  Workers
 * keep up to `parallel` blocks of the window in flight per object, refilling
 * as each completes.  A header read (the first 2880 bytes) fetches exactly
 * one block.
 *
 * Versions: the pin (size, ETag) comes from the cache's record of the
 * object when there is one, so opening a file seen before costs no network
 * and works with every server down; else from the reply to a GET of block 0
 * (one round trip for the pin and the first block; one such GET for all
 * concurrent first opens of an object), else from a HEAD.  Requests to the
 * replica that gave the pin carry If-Match; other replicas must agree on
 * the size.  Cache keys include size and ETag, so blocks of a replaced
 * object are never mixed with the new one.
 *
 * Whole-object check: with a registry checksum, blocks are fed in order to
 * BLAKE2b as reads reach them (verify_feed, under o->vlock).
 *
 * Faults: every request's result is counted per replica and kind in
 * r->faults (faults_i.h), which warns when a replica's recent failure rate
 * passes fetch.warn_failure_rate.
 *
 * Replica health: replicas and hosts marked down are kept in r->health
 * (health.h); retries wait bfs_backoff_ms (full jitter).
 *
 * Locks: r->lock (in-flight table, budget, job queue), o->lock (hot,
 * ready, read-ahead state), o->vlock (the checksum state) and the locks of
 * r->faults and r->health are leaf locks: none is taken while another is held, and none is held during I/O
 * or while a block is unreferenced (bblock_unref takes r->lock).  A read of
 * an object's last block may wait on o->vcond (releasing o->vlock) while
 * another read fetches that block once more after a failed check; that
 * fetch is bounded by its read's deadline.
 */
#include "remote_i.h"

#include "cache.h"
#include "clock.h"
#include "faults_i.h"
#include "health.h"
#include "http.h"
#include "log.h"
#include "strutil.h"

#include <errno.h>
#include <malloc.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define RTAG "fetch"
#define MAX_HOSTS 64 /* replicas and hosts in the health table */
#define MAX_JOBS 1024
/* Blocks read-ahead may hand to one object; the window is held below it,
 * so read-ahead never fetches a block there is no room to hand over. */
#define READY_MAX 64

struct bblock;

struct inflight {
    char *key;
    uint64_t block;
    bool done;
    int err;          /* <0 on failure */
    size_t len;
    bool expired;     /* the leader failed because its deadline passed */
    struct bblock *bb; /* the leader's block, shared with the waiters */
    int refs;         /* the fetcher + waiters */
    int64_t since;    /* bfs_mono_ms() when listed (bfs_remote_dump) */
    struct inflight *next;
};

/* A decoded block: reference counted, so a FUSE reply can be sent straight
 * from it while the object moves on.  Its bytes are either its own buffer
 * (own; charge = r->bs bytes of budget, taken at creation and returned with
 * the last reference, when the buffer goes back to r->spare) or a mapping
 * of its verified cache file (charge = len bytes of budget, returned with
 * the last reference: the mapped pages are resident in this process). */
struct bblock {
    bfs_remote *r;
    atomic_int refs;
    uint64_t block;
    size_t len;
    int64_t charge;
    bool mapped;
    char *data;
    char *own;         /* the buffer data points into, when not mapped */
};

/* Idle block buffers kept for reuse.  A new buffer costs page faults and
 * zeroed pages on first touch (a quarter of the daemon's CPU in a streaming
 * read when every block was malloc'd afresh).  Enough are kept for one
 * streaming reader's working set (its read-ahead window, the fetches in
 * flight, its hot blocks), at most SPARE_MAX.  A spare keeps its budget, so
 * the budget bounds all block memory, idle or not, and a new block takes a
 * spare before it looks at the budget.  Spares are freed when none has been
 * used for SPARE_IDLE_MS, so an idle daemon holds no buffers. */
#define SPARE_MAX 64
#define SPARE_IDLE_MS 10000
/* Buffers are their own anonymous mappings (buf_alloc), so freeing one
 * gives its memory back at once; those of 2 MiB or more are aligned to and
 * advised as transparent huge pages: two faults instead of 1024 for a new
 * 4 MiB block, and cheaper page pinning when the kernel copies a reply. */
#define HUGE_PAGE (2u << 20)

struct job {
    bfs_robj *o;
    uint64_t block;
};

struct bfs_remote {
    const bfs_config *cfg;
    bfs_http *http;
    bfs_cache *cache;      /* NULL when the cache could not be opened */
    uint32_t bs;

    pthread_mutex_t lock;  /* everything below */
    pthread_cond_t cond;   /* in-flight completion, budget returned (CLOCK_MONOTONIC) */
    struct inflight *inflight;
    uint64_t unlisted;     /* entries that have left the in-flight table */
    int64_t mem_used;
    char *spare[SPARE_MAX]; /* idle block buffers (r->bs bytes each) */
    int nspare, spare_max;
    int64_t spare_used_ms;  /* when a buffer last went to or from spare */

    pthread_cond_t jobs_cond;
    struct job jobs[MAX_JOBS];
    int jhead, jcount;
    bool stop;
    pthread_t *workers;
    int nworkers;

    /* The part of mem_used held by objects between reads (o->hot and
     * o->ready); at most memory_budget / 2.  Atomic: changed under o->lock,
     * not r->lock. */
    atomic_int_least64_t kept;

    atomic_uint_least64_t bytes_fetched, blocks_fetched, hits, misses, failovers, errors;
    int running;           /* read-ahead jobs being worked on (under lock) */
    bfs_faults *faults;    /* per replica; NULL without memory (nothing counted) */
    bfs_health *health;    /* replicas and hosts marked down (its own lock) */
};

struct bfs_robj {
    bfs_remote *r;
    atomic_int refs;
    atomic_bool closed;    /* queued read-ahead for it is skipped */
    atomic_bool failure_logged; /* a failed fetch was logged at error level */
    char *logical;
    char *key;             /* cache key: logical#size#etag */
    char **urls;
    int n;
    int pin_replica;       /* index of the replica whose ETag is pinned */
    bfs_object pin;

    pthread_mutex_t lock;  /* below */
    int64_t next_off;      /* where a sequential reader reads next */
    int64_t window;        /* read-ahead window in bytes */
    uint64_t ra_next;      /* first block not yet considered for read-ahead */
    uint64_t ra_to;        /* last block the window reaches now */
    uint64_t seen_block;   /* last block a sequential reader has reached */
    int outstanding;       /* read-ahead jobs queued or running */
    struct bblock *hot[2]; /* the blocks reads decoded last (kept): [0] the highest,
                            * [1] the one before (requests arrive a little reordered) */
    struct bblock *ready[READY_MAX]; /* blocks read-ahead fetched, not yet read (kept) */
    int nready;

    /* The whole-object check against the registry's checksum: BLAKE2b-512
     * fed with the blocks in order as reads reach them (without one, MD5
     * against an S3 ETag that is the object's MD5).  While a registry
     * checksum is to be checked (fresh), o takes no block from the
     * persistent cache: a block cached by an earlier partial read (perhaps
     * while a server corrupted it) is not known good, and a whole read must
     * be served and checked with what the servers hold now.  An ETag check
     * is opportunistic: it does not cost partial readers the cache (a
     * poisoned cached block then fails one whole read, which drops it). */
    char *checksum;        /* lowercase hex, or NULL when there is none */
    const char *ck_what;   /* where checksum comes from and its kind, for log lines */
    bool fresh;            /* set at open: fetch every block, never map a cached one */
    atomic_bool verifying; /* vctx is set */
    atomic_bool bad;       /* failed the check: every further read is -EIO */
    pthread_mutex_t vlock; /* below */
    pthread_cond_t vcond;  /* deciding ended */
    EVP_MD_CTX *vctx;
    uint64_t v_next;       /* next block to feed */
    bool last_served;      /* a copy of the last block went out before the check reached it */
    bool deciding;         /* the check failed; the last block is being fetched once more */
    struct bblock *rescued; /* the copy of the last block that made the object match (a reference) */
};



/* ---- memory budget ---------------------------------------------------------- */

/* A buffer's worth of budget is there: a spare (which holds its own) or
 * room under the limit.  r->lock held. */
static bool budget_ready_locked(const bfs_remote *r)
{
    return r->nspare > 0 || r->mem_used + (int64_t)r->bs <= r->cfg->memory_budget || r->mem_used == 0;
}

/* Wait until budget_ready_locked or the deadline; whether it is.  r->lock
 * held. */
static bool budget_wait_locked(bfs_remote *r, int64_t deadline)
{
    while (!budget_ready_locked(r) && bfs_mono_ms() < deadline) {
        struct timespec ts = bfs_mono_at(deadline);
        pthread_cond_timedwait(&r->cond, &r->lock, &ts);
    }
    return budget_ready_locked(r);
}

static void budget_give_locked(bfs_remote *r, size_t len)
{
    r->mem_used -= (int64_t)len;
    pthread_cond_broadcast(&r->cond);
}

/* A block buffer of r->bs bytes, an anonymous mapping of its own (huge-page
 * aligned from HUGE_PAGE up), or NULL.  Freed by buf_free. */
static char *buf_alloc(const bfs_remote *r)
{
    size_t align = r->bs >= HUGE_PAGE ? HUGE_PAGE : 0;
    char *m = mmap(NULL, r->bs + align, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    if (!align)
        return m;
    char *buf = (char *)(((uintptr_t)m + align - 1) & ~(uintptr_t)(align - 1));
    if (buf > m)
        munmap(m, (size_t)(buf - m));
    if (buf + r->bs < m + r->bs + align)
        munmap(buf + r->bs, (size_t)(m + r->bs + align - (buf + r->bs)));
    madvise(buf, r->bs, MADV_HUGEPAGE); /* advice: may be off */
    return buf;
}

static void buf_free(const bfs_remote *r, char *buf)
{
    if (buf)
        munmap(buf, r->bs);
}

/* Free the spare buffers and give back their budget; r->lock held
 * (freeing is quick: munmap). */
static void spares_free_locked(bfs_remote *r)
{
    while (r->nspare > 0) {
        buf_free(r, r->spare[--r->nspare]);
        budget_give_locked(r, r->bs);
    }
}

/* Take len bytes of budget for a mapped cache block, freeing a spare buffer
 * for it when that is what holds the room; whether it was taken.  r->lock
 * held. */
static bool budget_take_mapped_locked(bfs_remote *r, size_t len)
{
    if (r->mem_used + (int64_t)len > r->cfg->memory_budget && r->mem_used > 0 && r->nspare > 0) {
        buf_free(r, r->spare[--r->nspare]);
        r->mem_used -= r->bs;
    }
    if (r->mem_used + (int64_t)len > r->cfg->memory_budget && r->mem_used > 0)
        return false;
    r->mem_used += (int64_t)len;
    return true;
}

/* A block with one reference and a buffer of r->bs bytes with its budget:
 * a spare one when there is one, else a new one whose budget is taken here
 * (the budget comes back with the last reference, unless the buffer stays
 * a spare).  NULL with *err = -ENOBUFS when the budget is short (after
 * waiting until deadline when wait), -ENOMEM.  r->lock held. */
static struct bblock *bblock_take_locked(bfs_remote *r, bool wait, int64_t deadline, int *err)
{
    if (wait)
        budget_wait_locked(r, deadline);
    if (!budget_ready_locked(r)) {
        *err = -ENOBUFS;
        return NULL;
    }
    struct bblock *bb = malloc(sizeof *bb);
    void *buf = NULL;
    *err = -ENOMEM;
    if (!bb)
        return NULL;
    if (r->nspare > 0) {
        buf = r->spare[--r->nspare];
        r->spare_used_ms = bfs_mono_ms();
    } else if ((buf = buf_alloc(r))) {
        r->mem_used += r->bs;
    } else {
        free(bb);
        return NULL;
    }
    *bb = (struct bblock){.r = r, .charge = r->bs, .data = buf, .own = buf};
    atomic_init(&bb->refs, 1);
    return bb;
}

/* A new block with one reference and its budget (waiting until deadline
 * when wait, else failing at once).  NULL: no budget or memory. */
static struct bblock *bblock_new(bfs_remote *r, bool wait, int64_t deadline)
{
    int err;
    pthread_mutex_lock(&r->lock);
    struct bblock *bb = bblock_take_locked(r, wait, deadline, &err);
    pthread_mutex_unlock(&r->lock);
    return bb;
}

static size_t block_len(const bfs_robj *o, uint64_t b)
{
    int64_t off = (int64_t)b * o->r->bs;
    int64_t left = o->pin.size - off;
    return left <= 0 ? 0 : left < (int64_t)o->r->bs ? (size_t)left : o->r->bs;
}

/* Block b of o mapped from the cache (verified), or NULL on a miss.  The
 * caller took block_len(o, b) bytes of budget for it: the block's charge,
 * which the caller gives back on NULL. */
static struct bblock *bblock_mapped(bfs_robj *o, uint64_t b)
{
    bfs_remote *r = o->r;
    const void *m;
    ssize_t len = r->cache ? bfs_cache_map(r->cache, o->key, b, &m) : -ENOENT;
    if (len < 0)
        return NULL;
    struct bblock *bb = len == (ssize_t)block_len(o, b) ? malloc(sizeof *bb) : NULL;
    if (!bb) { /* a block of another length belongs to no version of ours */
        bfs_cache_unmap(m, (size_t)len);
        bfs_cache_count_refused(r->cache); /* it will be fetched, not counted again */
        return NULL;
    }
    *bb = (struct bblock){.r = r, .block = b, .len = (size_t)len, .charge = len, .mapped = true, .data = (char *)m};
    atomic_init(&bb->refs, 1);
    return bb;
}

static struct bblock *bblock_ref(struct bblock *bb)
{
    atomic_fetch_add(&bb->refs, 1);
    return bb;
}

static void bblock_unref(struct bblock *bb)
{
    if (!bb || atomic_fetch_sub(&bb->refs, 1) != 1)
        return;
    bfs_remote *r = bb->r;
    char *own = bb->own;
    if (bb->mapped) {
        bfs_cache_unmap(bb->data, bb->len);
        pthread_mutex_lock(&r->lock);
        budget_give_locked(r, (size_t)bb->charge);
        pthread_mutex_unlock(&r->lock);
    }
    if (own) { /* the buffer goes to spare with its budget, or both go */
        pthread_mutex_lock(&r->lock);
        if (r->nspare < r->spare_max) {
            if (r->nspare++ == 0)
                pthread_cond_signal(&r->jobs_cond); /* a worker starts the idle timer */
            r->spare[r->nspare - 1] = own;
            r->spare_used_ms = bfs_mono_ms();
            own = NULL;
            pthread_cond_broadcast(&r->cond); /* a budget waiter may take it */
        } else {
            budget_give_locked(r, (size_t)bb->charge);
        }
        pthread_mutex_unlock(&r->lock);
        buf_free(r, own);
    }
    free(bb);
}

/* Objects may keep blocks between reads (o->hot, o->ready) only while those
 * hold at most half of the budget: idle open files must never pin the
 * memory other reads wait for. */
static bool keep_swap(struct bblock *bb, const struct bblock *victim);

static bool keep_try(struct bblock *bb)
{
    return keep_swap(bb, NULL);
}

/* Drop a kept block: the reference o held and its share of r->kept. */
static void keep_drop(struct bblock *bb)
{
    if (!bb)
        return;
    atomic_fetch_sub(&bb->r->kept, bb->charge);
    bblock_unref(bb);
}

/* keep_try for bb taking the place of victim (NULL: none), which then goes
 * with a plain bblock_unref: r->kept changes by the difference, so a swap
 * at the cap is always allowed. */
static bool keep_swap(struct bblock *bb, const struct bblock *victim)
{
    bfs_remote *r = bb->r;
    int64_t delta = bb->charge - (victim ? victim->charge : 0);
    if (atomic_fetch_add(&r->kept, delta) + delta <= r->cfg->memory_budget / 2 || delta <= 0)
        return true;
    atomic_fetch_sub(&r->kept, delta);
    return false;
}

/* o's hot block b, or NULL; o->lock held. */
static struct bblock *hot_find_locked(bfs_robj *o, uint64_t b)
{
    for (int i = 0; i < 2; i++)
        if (o->hot[i] && o->hot[i]->block == b)
            return o->hot[i];
    return NULL;
}

/* Put bb (one reference, already accounted in r->kept) among the hot
 * blocks; returns the block it evicts, always the old hot[1] (still
 * accounted), or NULL.  A block above hot[0] pushes hot[0] down; a lower
 * one (the late tail of the previous block) takes hot[1].  o->lock held. */
static struct bblock *hot_put_locked(bfs_robj *o, struct bblock *bb)
{
    struct bblock *out = o->hot[1];
    if (!o->hot[0] || bb->block > o->hot[0]->block) {
        o->hot[1] = o->hot[0];
        o->hot[0] = bb;
    } else {
        o->hot[1] = bb;
    }
    return out;
}

/* ---- replica health (health.h) -------------------------------------------- */

/* The replica of url, the unit of replica health: the longest replica base
 * of the source chains that url starts with (two replicas on one server,
 * say a mirror's two roots, are judged apart when the server answers), else
 * its host (a location used as it is).  Into out, without user:password@. */
static void replica_of(const bfs_remote *r, const char *url, char *out, size_t outsz)
{
    const char *best = NULL;
    for (int i = 0; i < r->cfg->n_rules; i++)
        for (int j = 0; j < r->cfg->rules[i].n_replicas; j++) {
            const char *base = r->cfg->rules[i].replicas[j];
            if (bfs_startswith(url, base) && (!best || strlen(base) > strlen(best)))
                best = base;
        }
    if (best)
        bfs_health_key(BFS_HEALTH_REPLICA, best, out, outsz);
    else
        bfs_health_key(BFS_HEALTH_HOST, url, out, outsz);
}

/* url's replica, or its host, is marked down. */
static bool replica_down(bfs_remote *r, const char *url)
{
    char rep[BFS_HEALTH_KEY_MAX];
    replica_of(r, url, rep, sizeof rep);
    int64_t now = bfs_mono_ms();
    return bfs_health_down(r->health, BFS_HEALTH_REPLICA, rep, now) ||
           bfs_health_down(r->health, BFS_HEALTH_HOST, url, now);
}

/* Count one request to url's replica that ended with err (0 or -errno);
 * retry: an attempt after a transient failure of the same read there. */
static void fault_note(bfs_remote *r, const char *url, int err, bool retry)
{
    char rep[BFS_HEALTH_KEY_MAX];
    replica_of(r, url, rep, sizeof rep);
    bfs_faults_request(r->faults, rep, err, retry, bfs_mono_ms());
}

void bfs_remote_count_fault(bfs_remote *r, const char *url, bfs_fault kind)
{
    char rep[BFS_HEALTH_KEY_MAX];
    replica_of(r, url, rep, sizeof rep);
    bfs_faults_add(r->faults, rep, kind, bfs_mono_ms());
}

/* Mark the (kind, key) entry as answering (err 0) or failing with err for
 * replica_retry, and say so when that changes its state. */
static void health_mark(bfs_remote *r, bfs_health_kind kind, const char *key, int err)
{
    int64_t ms = r->cfg->replica_retry_ms;
    bfs_health_change change = bfs_health_mark(r->health, kind, key, err, ms, bfs_mono_ms());
    if (change == BFS_HEALTH_SAME)
        return;
    char name[BFS_HEALTH_KEY_MAX];
    bool host = kind == BFS_HEALTH_HOST;
    bfs_health_key(kind, key, name, sizeof name);
    if (change == BFS_HEALTH_FAILING)
        bfs_warn(RTAG, "%s %s is failing (%s); skipping %s for %lld %s", host ? "host" : "replica", name,
                 bfs_health_why(err), host ? "every replica there" : "it", (long long)(ms % 1000 ? ms : ms / 1000),
                 ms % 1000 ? "ms" : "s");
    else
        bfs_note(RTAG, "%s %s answers again", host ? "host" : "replica", name);
}

/* Mark url's replica as answering (err 0) or failing with err: a failure
 * to connect marks its host (every replica there), any other failure the
 * replica; a success clears both.  s3:// URLs have no host entry: their
 * replica takes every failure. */
static void replica_mark(bfs_remote *r, const char *url, int err)
{
    char rep[BFS_HEALTH_KEY_MAX], host[BFS_HEALTH_KEY_MAX];
    replica_of(r, url, rep, sizeof rep);
    bool by_host = bfs_health_key(BFS_HEALTH_HOST, url, host, sizeof host);
    bool host_wide = bfs_health_host_failure(err);
    if (err == 0 || !host_wide || !by_host)
        health_mark(r, BFS_HEALTH_REPLICA, rep, err);
    if (by_host && (err == 0 || host_wide))
        health_mark(r, BFS_HEALTH_HOST, url, err);
}

/* ---- fetching one block --------------------------------------------------- */

static bool transient(int err)
{
    return err == -ETIMEDOUT || err == -ECONNRESET || err == -ECONNREFUSED || err == -EHOSTDOWN ||
           err == -EHOSTUNREACH || err == -EPROTO || err == -EIO || err == -EAGAIN;
}

/* Full-jitter backoff before the retry after attempt a (health.h). */
static int64_t backoff_ms(const bfs_config *c, int a, unsigned *seed)
{
    return bfs_backoff_ms(c->backoff_base_ms, c->backoff_max_ms, a, BFS_JITTER_FULL, seed);
}

static void record_forget(bfs_remote *r, const char *logical);

/* Pass 0 skips replicas whose host is marked down; pass 1 tries exactly
 * those, as a last resort (a replica is never tried twice in one call).
 * Only the first 64 replicas can be skipped. */
static bool skip_replica(bfs_remote *r, const char *url, int pass, int i, uint64_t *skipped)
{
    bool mine = i < 64 && (*skipped >> i & 1);
    if (pass == 1)
        return !mine;
    if (i < 64 && replica_down(r, url)) {
        *skipped |= 1ULL << i;
        return true;
    }
    return false;
}

static void feed_writer(void *w, const void *buf, size_t n)
{
    bfs_cache_writer_feed(w, buf, n);
}

/* Fetch block b of o from the replicas into buf, fed to w (may be NULL) as
 * it arrives, trying them in chain order from replica `start` (wrapping
 * round; 0 for chain order).  Returns its length, or -ENOENT when every
 * replica said the object is not there, else -EIO. */
static ssize_t fetch_block(bfs_robj *o, uint64_t b, char *buf, int64_t deadline, bfs_cache_writer *w, int start)
{
    const bfs_http_sink sink = {.arrived = feed_writer, .ud = w};
    bfs_remote *r = o->r;
    const bfs_config *c = r->cfg;
    size_t len = block_len(o, b);
    int64_t off = (int64_t)b * r->bs;
    unsigned seed = (unsigned)(bfs_mono_ms() ^ (uintptr_t)buf);
    int last = -EIO, missing = 0;
    uint64_t skipped = 0;
    for (int pass = 0; pass < 2 && (pass == 0 || skipped); pass++) {
        for (int k = 0; k < o->n; k++) {
            int i = (start + k) % o->n;
            if (skip_replica(r, o->urls[i], pass, i, &skipped))
                continue;
            bfs_object pin = o->pin;
            if (i != o->pin_replica)
                pin.etag[0] = pin.last_modified[0] = '\0'; /* other replicas: size must agree */
            last = -EIO;
            for (int a = 0; a < c->max_attempts; a++) {
                int64_t left = deadline - bfs_mono_ms();
                if (left <= 0)
                    goto out;
                size_t moved = 0;
                if (w)
                    bfs_cache_writer_restart(w);
                ssize_t got = bfs_http_get_within(r->http, o->urls[i], &pin, off, len, buf, &moved,
                                                  (long)left, NULL, w ? &sink : NULL);
                atomic_fetch_add(&r->bytes_fetched, moved);
                fault_note(r, o->urls[i], got == (ssize_t)len ? 0 : got < 0 ? (int)got : -EPROTO, a > 0);
                if (got == (ssize_t)len) {
                    replica_mark(r, o->urls[i], 0);
                    atomic_fetch_add(&r->blocks_fetched, 1);
                    if (k != 0 || pass)
                        atomic_fetch_add(&r->failovers, 1);
                    return got;
                }
                last = got < 0 ? (int)got : -EPROTO;
                if (last == -ESTALE) {
                    bfs_err(RTAG, "%s changed on the server while open (version mismatch); "
                                  "refusing to mix versions", o->logical);
                    /* the next open must not pin the old version again */
                    record_forget(r, o->logical);
                    return -EIO;
                }
                if (!transient(last))
                    break; /* 404/403/416: this replica cannot serve it */
                int64_t pause = backoff_ms(c, a, &seed);
                if (bfs_mono_ms() + pause >= deadline)
                    pause = deadline - bfs_mono_ms();
                bfs_sleep_ms(pause);
            }
            if (last == -ENOENT)
                missing++;
            if (transient(last))
                replica_mark(r, o->urls[i], last);
        }
    }
out:
    /* one error line per open object; the rest at debug, so thousands of
     * jobs against a dead replica do not flood the log */
    if (!atomic_exchange(&o->failure_logged, true))
        bfs_err(RTAG, "%s: block %llu could not be fetched from %d replica(s): %s", o->logical,
                (unsigned long long)b, o->n, bfs_http_strerror(last));
    else
        bfs_debug(RTAG, "%s: block %llu could not be fetched: %s", o->logical, (unsigned long long)b,
                  bfs_http_strerror(last));
    /* -ENOENT only when every replica answered 404 (none skipped, none failing) */
    return missing == o->n && o->n > 0 ? -ENOENT : -EIO;
}

/* ---- single flight -------------------------------------------------------- */

/* A new entry for (key, block) holding bb (NULL: none yet), listed, with one
 * reference, the caller's.  Takes key (malloc'd; NULL is out of memory).
 * NULL when out of memory (key is freed).  r->lock held. */
static struct inflight *inflight_add_locked(bfs_remote *r, char *key, uint64_t block, struct bblock *bb)
{
    struct inflight *e = key ? calloc(1, sizeof *e) : NULL;
    if (!e) {
        free(key);
        return NULL;
    }
    *e = (struct inflight){.key = key, .bb = bb, .block = block, .refs = 1, .since = bfs_mono_ms(), .next = r->inflight};
    r->inflight = e;
    return e;
}

/* Take e out of the table (if it is still there); its holders keep it. */
static void inflight_unlist_locked(bfs_remote *r, struct inflight *e)
{
    for (struct inflight **pp = &r->inflight; *pp; pp = &(*pp)->next) {
        if (*pp == e) {
            *pp = e->next;
            r->unlisted++;
            break;
        }
    }
}

/* Drop a reference to e; returns the block to unreference (after r->lock
 * is released: bblock_unref takes it) when e is gone, else NULL. */
static struct bblock *inflight_put_locked(bfs_remote *r, struct inflight *e)
{
    if (--e->refs > 0)
        return NULL;
    inflight_unlist_locked(r, e);
    struct bblock *bb = e->bb;
    free(e->key);
    free(e);
    return bb;
}

/* The in-flight entry for (key, block), or NULL; r->lock held.  Pins use
 * block UINT64_MAX under a "pin:" key, so they never match a block. */
static struct inflight *inflight_find_locked(bfs_remote *r, const char *key, uint64_t block)
{
    struct inflight *e;
    for (e = r->inflight; e; e = e->next)
        if (e->block == block && !strcmp(e->key, key))
            break;
    return e;
}

static void inflight_put(bfs_remote *r, struct inflight *e)
{
    pthread_mutex_lock(&r->lock);
    struct bblock *bb = inflight_put_locked(r, e);
    pthread_mutex_unlock(&r->lock);
    bblock_unref(bb);
}

static void ready_add(bfs_robj *o, struct bblock *bb);

/* get_block's read of a block in the cache: listed in flight (with the
 * budget get_block took for it), so a reader or read-ahead arriving meanwhile
 * waits for this mapping instead of mapping and checking the block too;
 * mapped and verified; then handed to the caller (*out, sync) or to
 * o->ready (read-ahead), and to every waiter.  Called with r->lock held,
 * which it releases.  The block's length; -EINTR when the mapping failed
 * (the cached copy was bad and is dropped, or could not be mapped: the
 * entry leaves the table at once, so the retry fetches); -ENOMEM. */
static ssize_t map_locked(bfs_robj *o, uint64_t b, bool sync, struct bblock **out)
{
    bfs_remote *r = o->r;
    struct inflight *e = inflight_add_locked(r, strdup(o->key), b, NULL);
    if (!e)
        budget_give_locked(r, block_len(o, b));
    pthread_mutex_unlock(&r->lock);
    if (!e)
        return -ENOMEM;
    struct bblock *bb = bblock_mapped(o, b);
    if (bb)
        atomic_fetch_add(&r->hits, 1);
    pthread_mutex_lock(&r->lock);
    if (!bb)
        budget_give_locked(r, block_len(o, b));
    e->bb = bb;
    e->err = bb ? 0 : -EINTR;
    e->len = bb ? bb->len : 0;
    e->done = true;
    if (!bb)
        inflight_unlist_locked(r, e); /* nobody else waits on a failure */
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    ssize_t ret = bb ? (ssize_t)bb->len : -EINTR;
    if (bb && sync)
        *out = bblock_ref(bb);
    else if (bb)
        ready_add(o, bblock_ref(bb)); /* before leaving the table: no reader misses it */
    inflight_put(r, e); /* may drop the last reference to bb */
    return ret;
}

/* Get block b, which the caller did not find in memory: from a fetch or
 * mapping in flight (a new reference to its block in *out), from the cache
 * (map_locked; looked at after the table, since a fetch stores its block
 * before it leaves the table; a block that fails to map is fetched), or
 * fetched here into a new block (budget taken at once when there is some).
 * No budget: -ENOBUFS when !wait; else a wait until some is free or the
 * deadline, then -EINTR (look in memory and the cache again: the block may
 * have arrived meanwhile) or -EIO.  sync (a read) waits for a fetch in
 * flight, and gets -EINTR too when that fetch failed only because its
 * leader's deadline passed while the caller's has not (so it tries in its
 * own time); !sync (read-ahead) returns -EAGAIN when the block is in flight
 * and hands what it gets to o->ready.  *out is NULL on error. */
static ssize_t get_block(bfs_robj *o, uint64_t b, bool wait, int64_t deadline, bool sync, struct bblock **out)
{
    bfs_remote *r = o->r;
    *out = NULL;
    struct inflight *e;
    bool cached = false, map_failed = false;
    for (bool mapped_once = false;; mapped_once = true) {
        pthread_mutex_lock(&r->lock);
        e = inflight_find_locked(r, o->key, b);
        /* Not in flight: look in the cache, then in the table again.  A
         * fetch that finished in between (it stores its block before it
         * leaves the table) shows in r->unlisted: then look again, or this
         * would fetch a block just stored. */
        for (int tries = 0; !e && r->cache && !o->fresh && !mapped_once && tries < 4; tries++) {
            uint64_t gen = r->unlisted;
            pthread_mutex_unlock(&r->lock);
            cached = bfs_cache_has(r->cache, o->key, b);
            pthread_mutex_lock(&r->lock);
            e = inflight_find_locked(r, o->key, b);
            if (cached || r->unlisted == gen)
                break;
        }
        if (e || !cached || mapped_once)
            break;
        /* a mapped block is resident too: it takes budget like a fetch */
        if (!budget_take_mapped_locked(r, block_len(o, b))) {
            bool free_now = wait && budget_wait_locked(r, deadline);
            pthread_mutex_unlock(&r->lock);
            return !wait ? -ENOBUFS : free_now ? -EINTR : -EIO;
        }
        ssize_t got = map_locked(o, b, sync, out); /* unlocks */
        if (got != -EINTR)
            return got;
        cached = false; /* the cached copy failed: fetch (or wait for a fetch) */
        map_failed = true; /* and the cache counted the miss */
    }
    bool leader = e == NULL;
    if (leader) {
        /* A waiter needs no budget (it shares the leader's block); the
         * leader takes it before it starts, never while holding a block. */
        int err;
        struct bblock *mine = bblock_take_locked(r, false, 0, &err); /* its reference is the entry's */
        if (!mine && err == -ENOBUFS) {
            bool free_now = wait && budget_wait_locked(r, deadline);
            pthread_mutex_unlock(&r->lock);
            return !wait ? -ENOBUFS : free_now ? -EINTR : -EIO;
        }
        e = mine ? inflight_add_locked(r, strdup(o->key), b, mine) : NULL;
        if (!e) {
            pthread_mutex_unlock(&r->lock);
            bblock_unref(mine); /* takes r->lock */
            return -ENOMEM;
        }
        atomic_fetch_add(&r->misses, 1);
        if (r->cache && !map_failed)
            bfs_cache_count_miss(r->cache); /* neither in flight nor cached: fetched */
    } else {
        if (!sync) { /* read-ahead: someone is already on it */
            pthread_mutex_unlock(&r->lock);
            return -EAGAIN;
        }
        e->refs++;
    }
    pthread_mutex_unlock(&r->lock);

    if (leader) {
        struct bblock *mine = e->bb;
        /* hashed and written to the cache as it arrives: no second pass */
        bfs_cache_writer *w = r->cache && !atomic_load(&o->bad) ? bfs_cache_writer_new(r->cache, o->key, b) : NULL;
        ssize_t got = fetch_block(o, b, mine->data, deadline, w, 0);
        if (got > 0) {
            mine->block = b;
            mine->len = (size_t)got;
        }
        pthread_mutex_lock(&r->lock);
        e->err = got < 0 ? (int)got : 0;
        e->len = got < 0 ? 0 : (size_t)got;
        e->expired = got < 0 && bfs_mono_ms() >= deadline;
        e->done = true;
        if (got < 0)
            inflight_unlist_locked(r, e); /* waiters have it; later readers try afresh */
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);
        /* The waiters take the block now; storing it (the file's last
         * piece, its link and an index write) is off their path.  The
         * entry stays listed meanwhile, so a reader arriving late takes it
         * rather than fetching it again. */
        if (got > 0 && r->cache && !atomic_load(&o->bad)) {
            if (w)
                bfs_cache_writer_commit(w, mine->data, (size_t)got);
            else
                bfs_cache_put(r->cache, o->key, b, mine->data, (size_t)got);
            w = NULL;
            /* the whole-object check failed meanwhile: verify_feed sets bad
             * before it drops the blocks, so this block goes either way */
            if (atomic_load(&o->bad))
                bfs_cache_drop(r->cache, o->key, b);
        }
        bfs_cache_writer_abort(w); /* the fetch failed, or the object was found bad */
        if (got > 0 && !sync)
            ready_add(o, bblock_ref(mine)); /* before leaving the table: no reader misses it */
        else if (got >= 0 && sync)
            *out = bblock_ref(mine); /* (read-ahead has no *out to release) */
        inflight_put(r, e);
        return got;
    }
    pthread_mutex_lock(&r->lock);
    while (!e->done) {
        struct timespec ts = bfs_mono_at(deadline);
        if (pthread_cond_timedwait(&r->cond, &r->lock, &ts) == ETIMEDOUT && !e->done) {
            pthread_mutex_unlock(&r->lock);
            inflight_put(r, e);
            return -EIO;
        }
    }
    ssize_t ret = e->err < 0 ? e->err : (ssize_t)e->len;
    if (ret < 0 && e->expired && bfs_mono_ms() < deadline)
        ret = -EINTR; /* the leader ran out of its time, not us: look again, fetch if need be */
    if (ret >= 0 && o->fresh && e->bb->mapped)
        ret = -EINTR; /* another open's cached copy: o wants the server's (it leaves the table now) */
    if (ret >= 0)
        *out = bblock_ref(e->bb); /* no copy: the leader's block is ours too */
    pthread_mutex_unlock(&r->lock);
    inflight_put(r, e);
    return ret;
}

/* ---- read-ahead workers --------------------------------------------------- */

static void robj_put(bfs_robj *o);

/* Drop o's ready blocks below `below` (all of them for UINT64_MAX); called
 * with o->lock held, the blocks are unreferenced into drop[]. */
static int ready_take_below_locked(bfs_robj *o, uint64_t below, struct bblock **drop)
{
    int nd = 0, k = 0;
    for (int i = 0; i < o->nready; i++) {
        if (o->ready[i]->block < below)
            drop[nd++] = o->ready[i];
        else
            o->ready[k++] = o->ready[i];
    }
    o->nready = k;
    return nd;
}

/* Hand a block read-ahead fetched to o's readers, in memory: they take it
 * without reading it back from the cache.  Consumes the caller's reference. */
static void ready_add(bfs_robj *o, struct bblock *bb)
{
    struct bblock *drop = NULL;
    pthread_mutex_lock(&o->lock);
    bool dup = hot_find_locked(o, bb->block) != NULL;
    for (int i = 0; !dup && i < o->nready; i++)
        dup = o->ready[i]->block == bb->block;
    if (!dup && o->nready == READY_MAX && o->hot[0]) {
        /* full: blocks the reader has passed may go, never the ones it reads next */
        for (int i = 0; !drop && i < o->nready; i++) {
            if (o->ready[i]->block < o->hot[0]->block) {
                drop = o->ready[i];
                o->ready[i] = o->ready[--o->nready];
            }
        }
    }
    if (!dup && o->nready < READY_MAX && !atomic_load(&o->closed) && keep_try(bb)) {
        o->ready[o->nready++] = bb;
        bb = NULL;
    }
    pthread_mutex_unlock(&o->lock);
    keep_drop(drop);
    bblock_unref(bb);
}

/* One read-ahead job: block b of o into o->ready, mapped (and verified)
 * from the cache when it is there, else fetched into the cache and
 * o->ready: a sequential reader of cached data finds its blocks mapped and
 * checked ahead of it too.  No budget means no read-ahead (never a wait). */
static void readahead_block(bfs_robj *o, uint64_t b)
{
    bfs_remote *r = o->r;
    if (atomic_load(&o->closed) || atomic_load(&o->bad))
        return; /* read-ahead for a closed or bad object would only cost bandwidth and budget */
    pthread_mutex_lock(&o->lock);
    bool passed = o->seen_block >= b; /* the reader got there (or past it) first */
    pthread_mutex_unlock(&o->lock);
    if (passed)
        return;
    struct bblock *unused = NULL; /* get_block hands the block to o->ready itself */
    get_block(o, b, false, bfs_mono_ms() + r->cfg->deadline_ms, false, &unused);
}

static void ra_fill_locked(bfs_robj *o);

static void *worker_main(void *arg)
{
    bfs_remote *r = arg;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        while (!r->stop && r->jcount == 0) {
            if (r->nspare == 0) {
                pthread_cond_wait(&r->jobs_cond, &r->lock);
                continue;
            }
            struct timespec ts = bfs_mono_at(r->spare_used_ms + SPARE_IDLE_MS);
            if (pthread_cond_timedwait(&r->jobs_cond, &r->lock, &ts) == ETIMEDOUT &&
                bfs_mono_ms() >= r->spare_used_ms + SPARE_IDLE_MS && r->nspare > 0) {
                /* idle: the spares go, and so does what the heap kept free
                 * (curl's and sqlite's buffers of the busy time) */
                spares_free_locked(r);
                pthread_mutex_unlock(&r->lock);
                malloc_trim(0);
                pthread_mutex_lock(&r->lock);
            }
        }
        if (r->stop)
            break;
        struct job j = r->jobs[r->jhead];
        r->jhead = (r->jhead + 1) % MAX_JOBS;
        r->jcount--;
        r->running++;
        pthread_mutex_unlock(&r->lock);

        readahead_block(j.o, j.block);
        pthread_mutex_lock(&j.o->lock);
        j.o->outstanding--;
        /* keep `parallel` fetches going while the reader waits on one */
        if (!atomic_load(&j.o->closed))
            ra_fill_locked(j.o);
        pthread_mutex_unlock(&j.o->lock);
        robj_put(j.o);

        pthread_mutex_lock(&r->lock);
        r->running--;
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

static bool enqueue(bfs_remote *r, bfs_robj *o, uint64_t b)
{
    pthread_mutex_lock(&r->lock);
    bool ok = r->jcount < MAX_JOBS && !r->stop && r->nworkers > 0;
    if (ok) {
        atomic_fetch_add(&o->refs, 1);
        r->jobs[(r->jhead + r->jcount) % MAX_JOBS] = (struct job){o, b};
        r->jcount++;
        pthread_cond_signal(&r->jobs_cond);
    }
    pthread_mutex_unlock(&r->lock);
    return ok;
}

/* Called after serving [off, off+n): grow or reset the window, queue blocks. */
static void readahead(bfs_robj *o, int64_t off, size_t n)
{
    bfs_remote *r = o->r;
    const bfs_config *c = r->cfg;
    uint64_t last_block = o->pin.size > 0 ? (uint64_t)((o->pin.size - 1) / r->bs) : 0;
    int64_t end = off + (int64_t)n;
    uint64_t touched = (uint64_t)((n ? end - 1 : off) / r->bs);
    /* The kernel's own read-ahead sends a sequential reader's requests on
     * several FUSE threads at once, so they arrive a little out of order:
     * anything within one block of where the last read ended is sequential. */
    int64_t tol = r->bs;
    pthread_mutex_lock(&o->lock);
    bool seq = off >= o->next_off - tol && off <= o->next_off + tol;
    if (!seq) {
        o->window = 0; /* a seek */
        o->ra_next = 0;
        o->seen_block = touched;
    } else if (touched > o->seen_block) {
        /* The window grows only when a sequential reader enters a new
         * block: the kernel splits even a 100 kB read into several
         * growing requests, and those must not fetch blocks nobody reads. */
        int64_t w = o->window ? o->window * 2 : 2 * (int64_t)r->bs;
        int64_t cap = c->readahead_max < (int64_t)(READY_MAX - 2) * r->bs ? c->readahead_max
                                                                         : (int64_t)(READY_MAX - 2) * r->bs;
        o->window = w > cap ? cap : w;
        o->seen_block = touched;
    }
    if (!seq || end > o->next_off)
        o->next_off = end;
    /* the block being read is fetched by the reader; start after it */
    uint64_t from = (uint64_t)((end + r->bs - 1) / r->bs);
    if (o->ra_next < from)
        o->ra_next = from;
    uint64_t to = (uint64_t)((end + o->window) / r->bs);
    o->ra_to = to > last_block ? last_block : to;
    ra_fill_locked(o);
    pthread_mutex_unlock(&o->lock);
}

/* Queue the blocks from ra_next to ra_to, at most `parallel` in flight.
 * Called with o->lock held (dropped around each enqueue: o->lock and
 * r->lock are never held together). */
static void ra_fill_locked(bfs_robj *o)
{
    bfs_remote *r = o->r;
    while (o->window > 0 && o->ra_next <= o->ra_to && o->outstanding < r->cfg->parallel) {
        uint64_t b = o->ra_next++;
        o->outstanding++;
        pthread_mutex_unlock(&o->lock);
        bool ok = enqueue(r, o, b);
        pthread_mutex_lock(&o->lock);
        if (!ok) {
            o->outstanding--;
            if (o->ra_next == b + 1)
                o->ra_next = b; /* try it again at the next read */
            break;
        }
    }
}

/* ---- objects ------------------------------------------------------------------- */

static void robj_put(bfs_robj *o)
{
    if (atomic_fetch_sub(&o->refs, 1) != 1)
        return;
    keep_drop(o->hot[0]);
    keep_drop(o->hot[1]);
    for (int i = 0; i < o->nready; i++)
        keep_drop(o->ready[i]);
    for (int i = 0; i < o->n; i++)
        free(o->urls[i]);
    free(o->urls);
    free(o->logical);
    free(o->key);
    free(o->checksum);
    EVP_MD_CTX_free(o->vctx);
    bblock_unref(o->rescued);
    pthread_mutex_destroy(&o->lock);
    pthread_mutex_destroy(&o->vlock);
    pthread_cond_destroy(&o->vcond);
    free(o);
}

/* The cache's record of an object, keyed by its logical URI:
 * "size\netag\nlast_modified\nreplica\nverified\netag_md5\nsum\n", where
 * verified is the checksum this version was found to match ("-": none),
 * etag_md5 is 1 when the ETag is the object's MD5 (absent in older records:
 * not known to be) and sum is the server's "alg:hex" checksum ("-": none;
 * absent in older records). */
static bool record_load(bfs_remote *r, const char *logical, bfs_object *pin, int *replica, char *verified,
                        size_t vsz)
{
    if (!r->cache)
        return false;
    char buf[BFS_CACHE_RECORD_MAX + 1];
    ssize_t n = bfs_cache_record_get(r->cache, logical, buf, sizeof buf - 1);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    long long size;
    char etag[sizeof pin->etag] = "", lm[sizeof pin->last_modified] = "", ver[160] = "";
    char sum[80] = "";
    int rep = 0, md5 = 0;
    if (sscanf(buf, "%lld\n%159[^\n]\n%63[^\n]\n%d\n%159[^\n]\n%d\n%79[^\n]", &size, etag, lm, &rep, ver, &md5,
               sum) < 1)
        return false;
    pin->size = size;
    pin->etag_md5 = md5 == 1;
    const char *colon = strchr(sum, ':');
    if (colon && colon - sum < (ptrdiff_t)sizeof pin->sum_alg && strlen(colon + 1) < sizeof pin->sum_hex) {
        snprintf(pin->sum_alg, sizeof pin->sum_alg, "%.*s", (int)(colon - sum), sum);
        snprintf(pin->sum_hex, sizeof pin->sum_hex, "%s", colon + 1);
    }
    snprintf(verified, vsz, "%s", strcmp(ver, "-") ? ver : "");
    snprintf(pin->etag, sizeof pin->etag, "%s", strcmp(etag, "-") ? etag : "");
    snprintf(pin->last_modified, sizeof pin->last_modified, "%s", strcmp(lm, "-") ? lm : "");
    *replica = rep;
    return true;
}

/* Drop the record, so the next open pins the object again (GET or HEAD). */
static void record_forget(bfs_remote *r, const char *logical)
{
    if (r->cache)
        bfs_cache_record_drop(r->cache, logical);
}

static void record_store(bfs_remote *r, const char *logical, const bfs_object *pin, int replica,
                         const char *verified)
{
    if (!r->cache)
        return;
    char *text = bfs_asprintf("%lld\n%s\n%s\n%d\n%s\n%d\n%s%s%s\n", (long long)pin->size,
                              pin->etag[0] ? pin->etag : "-", pin->last_modified[0] ? pin->last_modified : "-",
                              replica, verified && verified[0] ? verified : "-", pin->etag_md5 ? 1 : 0,
                              pin->sum_alg[0] ? pin->sum_alg : "-", pin->sum_alg[0] ? ":" : "", pin->sum_hex);
    if (text)
        bfs_cache_record_put(r->cache, logical, text, strlen(text));
    free(text);
}

/* HEAD the replicas in order (retrying transient failures) for the pin,
 * until deadline. */
static int pin_by_head(bfs_remote *r, char *const *urls, int n, bfs_object *pin, int *replica,
                       int64_t deadline)
{
    const bfs_config *c = r->cfg;
    unsigned seed = (unsigned)bfs_mono_ms();
    int last = -EIO, missing = 0;
    uint64_t skipped = 0;
    for (int pass = 0; pass < 2 && (pass == 0 || skipped); pass++) {
        for (int i = 0; i < n; i++) {
            if (skip_replica(r, urls[i], pass, i, &skipped))
                continue;
            if (bfs_mono_ms() >= deadline)
                goto out; /* not tried: neither missing nor failing */
            last = -EIO;
            for (int a = 0; a < c->max_attempts; a++) {
                int64_t left = deadline - bfs_mono_ms();
                int ret = bfs_http_stat_within(r->http, urls[i], pin, left > 0 ? (long)left : 1);
                fault_note(r, urls[i], ret, a > 0);
                if (ret == 0) {
                    replica_mark(r, urls[i], 0);
                    *replica = i;
                    return 0;
                }
                last = ret;
                if (!transient(ret))
                    break;
                int64_t pause = backoff_ms(c, a, &seed);
                if (bfs_mono_ms() + pause >= deadline)
                    break;
                bfs_sleep_ms(pause);
            }
            if (last == -ENOENT)
                missing++;
            if (transient(last))
                replica_mark(r, urls[i], last);
        }
    }
out:
    if (missing == n && n > 0)
        return -ENOENT;
    return last == -EACCES ? -EACCES : -EIO;
}

/* A registry checksum butlerfs can check: the hex BLAKE2b-512 digest the
 * Butler's file datastore records (128 hex digits); lowercased into out. */
static bool checksum_usable(const char *checksum, char out[129])
{
    if (!checksum || strlen(checksum) != 128)
        return false;
    for (int i = 0; i < 128; i++) {
        if (bfs_hexval((unsigned char)checksum[i]) < 0)
            return false;
        out[i] = (char)(checksum[i] | 0x20);
    }
    out[128] = '\0';
    return true;
}

/* The server's whole-object checksum of a pin (x-amz-checksum-sha256, else
 * -sha1), as lowercase hex into out, with its digest. */
static bool sum_usable(const bfs_object *pin, char out[129], const EVP_MD **md)
{
    size_t n = strlen(pin->sum_hex);
    if (!strcmp(pin->sum_alg, "sha256") && n == 64)
        *md = EVP_sha256();
    else if (!strcmp(pin->sum_alg, "sha1") && n == 40)
        *md = EVP_sha1();
    else
        return false;
    for (size_t i = 0; i < n; i++)
        if (bfs_hexval((unsigned char)pin->sum_hex[i]) < 0)
            return false;
    snprintf(out, 129, "%s", pin->sum_hex);
    return true;
}

/* The MD5 of an object whose pin says its ETag is one, as lowercase hex
 * into out (32 digits). */
static bool etag_usable(const bfs_object *pin, char out[129])
{
    if (!pin->etag_md5 || strlen(pin->etag) != 34)
        return false;
    for (int i = 0; i < 32; i++) {
        if (bfs_hexval((unsigned char)pin->etag[i + 1]) < 0)
            return false;
        out[i] = (char)(pin->etag[i + 1] | 0x20);
    }
    out[32] = '\0';
    return true;
}

/* One GET of block 0 from the first replica not marked down, without a
 * validator: its reply pins the object (total size, ETag) and brings the
 * first block, which almost every reader reads first (FITS headers), in
 * the same round trip.  Tried once: on a failure the caller pins by HEAD,
 * with the whole retry and failover policy, except when the only replica
 * refused for good (-EACCES, -ENOENT), which is returned as it is. */
static int pin_by_get(bfs_remote *r, char *const *urls, int n, bfs_object *pin, int *replica,
                      struct bblock *bb, int64_t deadline)
{
    for (int i = 0; i < n; i++) {
        if (i < 64 && replica_down(r, urls[i]))
            continue;
        size_t moved = 0;
        int64_t left = deadline - bfs_mono_ms();
        ssize_t got = bfs_http_get_within(r->http, urls[i], NULL, 0, r->bs, bb->data, &moved,
                                          left > 0 ? (long)left : 1, pin, NULL);
        atomic_fetch_add(&r->bytes_fetched, moved);
        fault_note(r, urls[i], got < 0 ? (int)got : 0, false); /* a range ignored is not a fault */
        int64_t want = pin->size < (int64_t)r->bs ? pin->size : (int64_t)r->bs;
        if (n == 1 && (got == -EACCES || got == -ENOENT))
            return (int)got; /* a HEAD would only be refused again */
        if (got == -EHOSTDOWN)
            replica_mark(r, urls[i], (int)got); /* a HEAD there would wait as long, in vain */
        if (got <= 0 || pin->size <= 0 || got != want)
            return -EAGAIN; /* an empty object (416), a server ignoring Range, a failure */
        atomic_fetch_add(&r->blocks_fetched, 1);
        replica_mark(r, urls[i], 0);
        bb->block = 0;
        bb->len = (size_t)got;
        *replica = i;
        return 0;
    }
    return -EAGAIN;
}

static char *block_key(const char *logical, const bfs_object *pin)
{
    return bfs_asprintf("%s#%lld#%s", logical, (long long)pin->size, pin->etag[0] ? pin->etag : pin->last_modified);
}

/* The pin entry e is done: the waiting opens read the record now. */
static void pin_done(bfs_remote *r, struct inflight *e)
{
    pthread_mutex_lock(&r->lock);
    e->done = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    inflight_put(r, e);
}

/* Pin an object the cache has no record of, and store the record.  Unless
 * stat_only, by GET of block 0 (returned in *block0, also cached), with one
 * request for all opens of logical at once: the others wait for it, then
 * read its record (and later its cached block).  By HEAD when stat_only,
 * when that GET fails, or when a waited-for open left no record. */
static int pin_first(bfs_remote *r, const char *logical, char *const *urls, int n, bool stat_only,
                     bfs_object *pin, int *replica, struct bblock **block0)
{
    *block0 = NULL;
    int64_t deadline = bfs_mono_ms() + r->cfg->deadline_ms;
    struct inflight *e = NULL;
    if (!stat_only) {
        char *fkey = bfs_asprintf("pin:%s", logical);
        if (!fkey)
            return -ENOMEM;
        pthread_mutex_lock(&r->lock);
        struct inflight *w = inflight_find_locked(r, fkey, UINT64_MAX);
        if (w) {
            w->refs++;
            struct timespec ts = bfs_mono_at(deadline);
            while (!w->done && pthread_cond_timedwait(&r->cond, &r->lock, &ts) != ETIMEDOUT)
                ;
            pthread_mutex_unlock(&r->lock);
            inflight_put(r, w);
            free(fkey);
            char verified[160];
            if (record_load(r, logical, pin, replica, verified, sizeof verified))
                return 0;
            stat_only = true;
        } else if ((e = inflight_add_locked(r, fkey, UINT64_MAX, NULL))) {
            pthread_mutex_unlock(&r->lock);
            /* a leader that finished just before this one started left a record */
            char verified[160];
            if (record_load(r, logical, pin, replica, verified, sizeof verified)) {
                pin_done(r, e);
                return 0;
            }
        } else { /* out of memory (fkey went with the failed add) */
            pthread_mutex_unlock(&r->lock);
            stat_only = true;
        }
    }
    int ret = -EAGAIN;
    struct bblock *bb = stat_only ? NULL : bblock_new(r, true, deadline);
    if (bb)
        ret = pin_by_get(r, urls, n, pin, replica, bb, deadline);
    if (ret == -EACCES || ret == -ENOENT) {
        bblock_unref(bb);
    } else if (ret == 0) {
        /* block 0 came with the GET that pinned the object: fetched, a miss */
        atomic_fetch_add(&r->misses, 1);
        char *key = block_key(logical, pin);
        if (r->cache)
            bfs_cache_count_miss(r->cache);
        if (key && r->cache)
            bfs_cache_put(r->cache, key, 0, bb->data, bb->len);
        free(key);
        record_store(r, logical, pin, *replica, NULL);
        *block0 = bb;
    } else {
        bblock_unref(bb);
        ret = pin_by_head(r, urls, n, pin, replica, deadline); /* what the GET left of the deadline */
        if (ret == 0)
            record_store(r, logical, pin, *replica, NULL);
    }
    if (e)
        pin_done(r, e);
    return ret;
}

int bfs_robj_open(bfs_remote *r, const char *logical, char *const *urls, int n, int64_t size_hint,
                  const char *checksum, unsigned flags, bfs_robj **out)
{
    bfs_robj *o = calloc(1, sizeof *o);
    if (!o)
        return -ENOMEM;
    atomic_init(&o->refs, 1);
    atomic_init(&o->closed, false);
    atomic_init(&o->verifying, false);
    atomic_init(&o->bad, false);
    pthread_mutex_init(&o->lock, NULL);
    pthread_mutex_init(&o->vlock, NULL);
    pthread_cond_init(&o->vcond, NULL);
    o->r = r;
    o->logical = strdup(logical);
    o->urls = calloc((size_t)n, sizeof *o->urls);
    o->n = n;
    int ret = o->logical && o->urls ? 0 : -ENOMEM;
    for (int i = 0; ret == 0 && i < n; i++)
        if (!(o->urls[i] = strdup(urls[i])))
            ret = -ENOMEM;
    char verified[160] = "";
    struct bblock *block0 = NULL;
    if (ret == 0 && !record_load(r, logical, &o->pin, &o->pin_replica, verified, sizeof verified))
        ret = pin_first(r, logical, urls, n, flags & BFS_ROBJ_STAT_ONLY, &o->pin, &o->pin_replica, &block0);
    char want[129];
    const EVP_MD *md = NULL;
    bool registry_ck = ret == 0 && checksum_usable(checksum, want);
    if (ret == 0 && checksum && checksum[0] && !registry_ck)
        bfs_debug(RTAG, "%s: registry checksum is not a BLAKE2b-512 digest; not checked", logical);
    if (registry_ck) {
        md = EVP_blake2b512();
        o->ck_what = "the registry's checksum (BLAKE2b";
    } else if (ret == 0 && sum_usable(&o->pin, want, &md)) {
        /* no registry checksum to check: the server's will do, the strongest first */
        o->ck_what = !strcmp(o->pin.sum_alg, "sha256") ? "its S3 checksum (SHA-256" : "its S3 checksum (SHA-1";
    } else if (ret == 0 && etag_usable(&o->pin, want)) {
        md = EVP_md5();
        o->ck_what = "its S3 ETag (MD5";
    }
    if (md && strcmp(want, verified) != 0 && o->pin.size > 0) {
        /* not yet found to match: check it as the blocks are read */
        o->checksum = strdup(want);
        o->vctx = EVP_MD_CTX_new();
        if (!o->checksum || !o->vctx || EVP_DigestInit_ex(o->vctx, md, NULL) != 1)
            ret = -ENOMEM;
        atomic_store(&o->verifying, ret == 0);
        o->fresh = ret == 0 && registry_ck;
    }
    if (ret == 0 && o->pin_replica >= n)
        o->pin_replica = 0;
    if (ret == 0 && size_hint >= 0 && size_hint != o->pin.size)
        bfs_warn(RTAG, "%s: registry says %lld bytes, the object has %lld; serving the object",
                 logical, (long long)size_hint, (long long)o->pin.size);
    if (ret == 0) {
        o->key = block_key(logical, &o->pin);
        if (!o->key)
            ret = -ENOMEM;
    }
    if (block0) {
        /* Kept as the hot block: the first read (a header, or prefetch
         * reading the file) then needs no cache lookup.  Files left open
         * after reading their header each keep one block, within the half
         * of the budget kept blocks may hold; past it, blocks are mapped
         * from the cache instead. */
        if (ret == 0 && keep_try(block0))
            o->hot[0] = block0;
        else
            bblock_unref(block0);
    }
    if (ret < 0) {
        robj_put(o);
        return ret;
    }
    *out = o;
    return 0;
}

int64_t bfs_robj_size(const bfs_robj *o) { return o->pin.size; }
bool bfs_robj_check_pending(const bfs_robj *o) { return o->checksum != NULL; }
bool bfs_robj_check_failed(bfs_robj *o) { return atomic_load(&o->bad); }

/* Whether ctx (finished here) gives the hex digest want. */
static bool digest_matches(EVP_MD_CTX *ctx, const char *want)
{
    unsigned char got[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(ctx, got, &n) != 1 || 2 * n != strlen(want))
        return false;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    for (unsigned i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", got[i]);
    return memcmp(hex, want, 2 * n) == 0;
}

/* Drop o's kept copies of block b (hot or ready). */
static void kept_forget(bfs_robj *o, uint64_t b)
{
    struct bblock *drop[3];
    int nd = 0;
    pthread_mutex_lock(&o->lock);
    for (int i = 0; i < 2; i++) {
        if (o->hot[i] && o->hot[i]->block == b) {
            drop[nd++] = o->hot[i];
            o->hot[i] = NULL;
        }
    }
    if (!o->hot[0]) { /* hot[0] is the highest, or NULL only with hot[1] NULL too */
        o->hot[0] = o->hot[1];
        o->hot[1] = NULL;
    }
    for (int i = 0; i < o->nready; i++) {
        if (o->ready[i]->block == b) {
            drop[nd++] = o->ready[i];
            o->ready[i] = o->ready[--o->nready];
            break;
        }
    }
    pthread_mutex_unlock(&o->lock);
    for (int i = 0; i < nd; i++)
        keep_drop(drop[i]);
}

/* One more try at o's last block b, whose copy failed the check: fetched
 * again from the servers (the next replica first, when there is one),
 * bypassing the cache, and fed to pre, the check as it stood before b
 * (consumed).  The new block (one reference) when the object then matches,
 * else NULL.  The blocks before b were served already, so only b can be
 * taken again. */
static struct bblock *verify_retry_last(bfs_robj *o, uint64_t b, EVP_MD_CTX *pre, int64_t deadline)
{
    bfs_remote *r = o->r;
    struct bblock *bb = pre && bfs_mono_ms() < deadline ? bblock_new(r, true, deadline) : NULL;
    ssize_t got = bb ? fetch_block(o, b, bb->data, deadline, NULL, o->n > 1 ? 1 : 0) : -EIO;
    if (bb) {
        bb->block = b;
        bb->len = got > 0 ? (size_t)got : 0;
    }
    bool match = got == (ssize_t)block_len(o, b) && EVP_DigestUpdate(pre, bb->data, bb->len) == 1 &&
                 digest_matches(pre, o->checksum);
    EVP_MD_CTX_free(pre);
    if (!match) {
        bblock_unref(bb);
        return NULL;
    }
    return bb;
}

/* Feed *bbp to o's whole-object check if it is the next block in order
 * (blocks reached out of order are not fed, and the check then waits for
 * the missing block; an object never read whole in order is never found
 * good or bad).  After the last block: a match is recorded with the
 * object's version, so later opens skip the check.  A mismatch gets one
 * more try within deadline (verify_retry_last): when it matches, *bbp is
 * replaced by the new copy of the last block (the reader gets the good
 * bytes), the bad copy leaves the cache and nothing is recorded (the next
 * open checks again).  Else o is bad: its blocks (every block of this
 * version, whichever open cached them) leave the cache, the next open pins
 * it again, and -EIO.  Other reads of the last block meanwhile wait for
 * the verdict and get the same outcome; one that went out before the check
 * reached the last block rules the second try out. */
static int verify_feed(bfs_robj *o, struct bblock **bbp, int64_t deadline)
{
    if (atomic_load(&o->bad))
        return -EIO;
    if (!o->checksum)
        return 0;
    bfs_remote *r = o->r;
    uint64_t nblocks = (uint64_t)((o->pin.size + r->bs - 1) / r->bs);
    bool last = (*bbp)->block + 1 == nblocks;
    if (!atomic_load(&o->verifying) && !last)
        return 0; /* decided, or given up: only copies of the last block may still change */
    bool done = false, match = false;
    EVP_MD_CTX *pre = NULL;
    struct bblock *swap = NULL;
    pthread_mutex_lock(&o->vlock);
    if (o->vctx && (*bbp)->block == o->v_next) {
        if (last && !o->last_served && (pre = EVP_MD_CTX_new()) && EVP_MD_CTX_copy_ex(pre, o->vctx) != 1) {
            EVP_MD_CTX_free(pre); /* no second try, the check itself goes on */
            pre = NULL;
        }
        bool ok = EVP_DigestUpdate(o->vctx, (*bbp)->data, (*bbp)->len) == 1;
        if (ok && ++o->v_next == nblocks) {
            match = digest_matches(o->vctx, o->checksum);
            done = true;
            o->deciding = !match; /* other reads of the last block wait for the verdict */
        }
        if (!ok || done) { /* an OpenSSL failure ends the check, undecided */
            EVP_MD_CTX_free(o->vctx);
            o->vctx = NULL;
            atomic_store(&o->verifying, false);
        }
    } else if (last) {
        /* Another read of the last block.  Before the check reached it,
         * its bytes go out unchecked, so it may not be taken again later
         * (the reader would have two versions of it).  While the verdict
         * is out, wait: then the copy that matched, or -EIO. */
        if (o->vctx && o->v_next + 1 < nblocks)
            o->last_served = true;
        while (o->deciding)
            pthread_cond_wait(&o->vcond, &o->vlock);
        if (o->rescued && o->rescued != *bbp)
            swap = bblock_ref(o->rescued);
    }
    pthread_mutex_unlock(&o->vlock);
    if (swap) {
        bblock_unref(*bbp);
        *bbp = swap;
    }
    if (!done || match)
        EVP_MD_CTX_free(pre);
    if (done && match) {
        record_store(r, o->logical, &o->pin, o->pin_replica, o->checksum);
    } else if (done) {
        /* where a served object is found not to match its checksum: a
         * fault of the replica that serves first (blocks are not tracked
         * to the replica that sent them) */
        bfs_remote_count_fault(r, o->urls[0], BFS_FAULT_CHECKSUM);
        struct bblock *again = verify_retry_last(o, (*bbp)->block, pre, deadline); /* consumes pre */
        if (again) {
            bfs_warn(RTAG, "%s: its last block did not match %s %.16s...); fetched again, it does",
                     o->logical, o->ck_what, o->checksum);
            if (r->cache)
                bfs_cache_drop(r->cache, o->key, again->block);
            kept_forget(o, again->block);
        } else if (!atomic_exchange(&o->bad, true)) {
            bfs_err(RTAG, "%s does not match %s %.16s...): dropped from the cache; reads of it fail with "
                          "EIO until a good copy is served", o->logical, o->ck_what, o->checksum);
            for (uint64_t b = 0; r->cache && b < nblocks; b++)
                bfs_cache_drop(r->cache, o->key, b);
            record_forget(r, o->logical);
        }
        pthread_mutex_lock(&o->vlock);
        o->rescued = again ? bblock_ref(again) : NULL;
        o->deciding = false;
        pthread_cond_broadcast(&o->vcond);
        pthread_mutex_unlock(&o->vlock);
        if (again) {
            bblock_unref(*bbp);
            *bbp = again;
        }
    }
    return atomic_load(&o->bad) ? -EIO : 0;
}

/* *bbp's length once fed to the whole-object check (which may replace
 * *bbp); -EIO (*bbp released, NULL) when the object is bad. */
static ssize_t verified_len(bfs_robj *o, struct bblock **bbp, int64_t deadline)
{
    if (verify_feed(o, bbp, deadline) < 0) {
        bblock_unref(*bbp);
        *bbp = NULL;
        return -EIO;
    }
    return (ssize_t)(*bbp)->len;
}

/* A reference to block b, decoded: one of o's hot blocks, a block
 * read-ahead fetched (o->ready), or one got now from the cache, a fetch in
 * flight or the replicas.  The block becomes hot when it may be kept.
 * wait: wait for budget until deadline (-EIO then); else -ENOBUFS at once,
 * for callers that already hold blocks. */
static ssize_t block_ref(bfs_robj *o, uint64_t b, bool wait, int64_t deadline, struct bblock **out)
{
    for (;;) {
        struct bblock *drop[READY_MAX + 2];
        int nd = 0;
        pthread_mutex_lock(&o->lock);
        struct bblock *bb = hot_find_locked(o, b);
        if (bb) {
            *out = bblock_ref(bb);
            pthread_mutex_unlock(&o->lock);
            return verified_len(o, out, deadline);
        }
        for (int i = 0; i < o->nready; i++) {
            if (o->ready[i]->block == b) {
                bb = o->ready[i];
                o->ready[i] = o->ready[--o->nready];
                break;
            }
        }
        if (bb) {
            /* the reader has passed the ready blocks below the one before b */
            nd = ready_take_below_locked(o, b ? b - 1 : 0, drop);
            struct bblock *gone = hot_put_locked(o, bb); /* bb stays kept: it was counted as ready */
            if (gone)
                drop[nd++] = gone;
            *out = bblock_ref(bb);
        }
        pthread_mutex_unlock(&o->lock);
        for (int i = 0; i < nd; i++)
            keep_drop(drop[i]);
        if (bb)
            return verified_len(o, out, deadline);

        ssize_t len = get_block(o, b, wait, deadline, true, &bb);
        if (len == -EINTR)
            continue; /* waited for budget: the block may be in memory or the cache now */
        if (len < 0)
            return len;
        struct bblock *gone = NULL;
        bool kept = false;
        pthread_mutex_lock(&o->lock);
        if (!hot_find_locked(o, b) && keep_swap(bb, o->hot[1])) {
            gone = hot_put_locked(o, bblock_ref(bb));
            kept = true;
        }
        pthread_mutex_unlock(&o->lock);
        if (kept)
            bblock_unref(gone); /* its share of r->kept went in keep_swap */
        *out = bb;
        return verified_len(o, out, deadline);
    }
}

ssize_t bfs_robj_view(bfs_robj *o, size_t n, int64_t off, struct iovec *iov, void **refs, int max, int *count)
{
    bfs_remote *r = o->r;
    *count = 0;
    if (off < 0)
        return -EINVAL;
    if (off >= o->pin.size || n == 0)
        return 0;
    if ((int64_t)n > o->pin.size - off)
        n = (size_t)(o->pin.size - off);
    if ((uint64_t)((off + (int64_t)n - 1) / r->bs - off / r->bs) >= (uint64_t)max)
        return -E2BIG;
    int64_t deadline = bfs_mono_ms() + r->cfg->deadline_ms;
    size_t done = 0;
    while (done < n) {
        int64_t pos = off + (int64_t)done;
        struct bblock *bb;
        /* Only the first piece may wait for budget: waiting while holding
         * blocks could deadlock a small budget among a few readers. */
        ssize_t len = block_ref(o, (uint64_t)(pos / r->bs), *count == 0, deadline, &bb);
        if (len < 0) {
            if (len != -ENOBUFS)
                atomic_fetch_add(&r->errors, 1);
            bfs_robj_view_release(refs, *count);
            *count = 0;
            return len == -ENOENT ? -EIO : len;
        }
        size_t boff = (size_t)(pos % r->bs);
        size_t k = (size_t)len > boff ? (size_t)len - boff : 0;
        if (k > n - done)
            k = n - done;
        if (k == 0) {
            bblock_unref(bb);
            break;
        }
        iov[*count] = (struct iovec){bb->data + boff, k};
        refs[(*count)++] = bb;
        done += k;
    }
    readahead(o, off, done);
    return (ssize_t)done;
}

void bfs_robj_view_release(void **refs, int count)
{
    for (int i = 0; i < count; i++)
        bblock_unref(refs[i]);
}

/* Block by block, so a read never holds one block while waiting for
 * budget for the next. */
ssize_t bfs_robj_pread(bfs_robj *o, void *buf, size_t n, int64_t off)
{
    size_t done = 0;
    while (done < n) {
        int64_t pos = off + (int64_t)done;
        size_t part = o->r->bs - (size_t)(pos % o->r->bs);
        if (part > n - done)
            part = n - done;
        struct iovec iov;
        void *ref;
        int count;
        ssize_t k = bfs_robj_view(o, part, pos, &iov, &ref, 1, &count);
        if (k < 0)
            return k;
        if (count)
            memcpy((char *)buf + done, iov.iov_base, iov.iov_len);
        bfs_robj_view_release(&ref, count);
        if (k == 0)
            break;
        done += (size_t)k;
    }
    return (ssize_t)done;
}

/* Queued read-ahead jobs may keep o alive a while; its kept blocks and the
 * budget they hold are returned now. */
void bfs_robj_close(bfs_robj *o)
{
    if (!o)
        return;
    atomic_store(&o->closed, true);
    struct bblock *drop[READY_MAX + 2];
    pthread_mutex_lock(&o->lock);
    int nd = ready_take_below_locked(o, UINT64_MAX, drop);
    for (int i = 0; i < 2; i++) {
        if (o->hot[i])
            drop[nd++] = o->hot[i];
        o->hot[i] = NULL;
    }
    pthread_mutex_unlock(&o->lock);
    for (int i = 0; i < nd; i++)
        keep_drop(drop[i]);
    robj_put(o);
}

/* ---- the remote machinery ------------------------------------------------------ */

static bfs_cache_cfg cache_cfg_of(const bfs_config *cfg)
{
    return (bfs_cache_cfg){.dir = cfg->cache_dir, .max_bytes = cfg->cache_max_bytes,
                           .min_free_bytes = cfg->cache_min_free, .block_size = (uint32_t)cfg->block_size};
}

int bfs_fetch_cache_check(const bfs_config *cfg, char **errmsg)
{
    bfs_cache_cfg cc = cache_cfg_of(cfg);
    bfs_cache *c = NULL;
    int rc = bfs_cache_open(&cc, &c, errmsg);
    if (rc == 0)
        bfs_cache_close(c);
    return rc;
}

int bfs_remote_new(const bfs_config *cfg, bfs_remote **out, char **errmsg)
{
    bfs_remote *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->cfg = cfg;
    r->health = bfs_health_new(MAX_HOSTS);
    if (!r->health) {
        free(r);
        return -ENOMEM;
    }
    bfs_http_cfg hc;
    bfs_http_cfg_from(cfg, &hc);
    int ret = bfs_http_new(&hc, &r->http, errmsg);
    if (ret < 0) {
        bfs_health_free(r->health);
        free(r);
        return ret;
    }
    bfs_cache_cfg cc = cache_cfg_of(cfg);
    char *cmsg = NULL;
    if (bfs_cache_open(&cc, &r->cache, &cmsg) < 0) {
        /* serving without a cache is slower but correct */
        bfs_err(RTAG, "cache unavailable, reading remote data uncached: %s", cmsg ? cmsg : "?");
        free(cmsg);
        r->cache = NULL;
    }
    r->bs = r->cache ? bfs_cache_block_size(r->cache) : (uint32_t)cfg->block_size;
    r->faults = bfs_faults_new(cfg->warn_failure_rate);
    pthread_mutex_init(&r->lock, NULL);
    /* on CLOCK_MONOTONIC, like bfs_mono_ms(): a wall-clock step can neither
     * stretch nor cut a wait */
    bfs_cond_init_mono(&r->cond);
    bfs_cond_init_mono(&r->jobs_cond); /* the spares' idle timer */
    int64_t spares = (cfg->readahead_max + r->bs - 1) / r->bs + cfg->parallel + 2;
    r->spare_max = spares < SPARE_MAX ? (int)spares : SPARE_MAX;
    r->nworkers = cfg->parallel * 2;
    r->workers = calloc((size_t)r->nworkers, sizeof *r->workers);
    int started = 0;
    for (int i = 0; r->workers && i < r->nworkers; i++)
        if (pthread_create(&r->workers[i], NULL, worker_main, r) == 0)
            started++;
    r->nworkers = started;
    *out = r;
    return 0;
}

void bfs_remote_free(bfs_remote *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->stop = true;
    pthread_cond_broadcast(&r->jobs_cond);
    pthread_mutex_unlock(&r->lock);
    for (int i = 0; i < r->nworkers; i++)
        pthread_join(r->workers[i], NULL);
    free(r->workers);
    /* jobs never started hold object references */
    while (r->jcount > 0) {
        robj_put(r->jobs[r->jhead].o);
        r->jhead = (r->jhead + 1) % MAX_JOBS;
        r->jcount--;
    }
    spares_free_locked(r);
    bfs_cache_close(r->cache);
    bfs_http_free(r->http);
    bfs_faults_free(r->faults);
    bfs_health_free(r->health);
    pthread_cond_destroy(&r->jobs_cond);
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

void bfs_remote_stats(bfs_remote *r, bfs_fetch_stats *st)
{
    st->bytes_fetched = atomic_load(&r->bytes_fetched);
    st->blocks_fetched = atomic_load(&r->blocks_fetched);
    st->cache_hits = atomic_load(&r->hits);
    st->cache_misses = atomic_load(&r->misses);
    st->failovers = atomic_load(&r->failovers);
    st->errors = atomic_load(&r->errors);
    pthread_mutex_lock(&r->lock);
    st->memory_used = r->mem_used;
    pthread_mutex_unlock(&r->lock);
    st->memory_budget = r->cfg->memory_budget;
}

int bfs_remote_skipped(bfs_remote *r, bfs_replica_state *out, int max)
{
    return bfs_health_list(r->health, out, max, bfs_mono_ms());
}

int bfs_remote_faults(bfs_remote *r, bfs_replica_faults *out, int max)
{
    return bfs_faults_list(r->faults, out, max, bfs_mono_ms());
}

int64_t bfs_remote_spare_bytes(bfs_remote *r)
{
    pthread_mutex_lock(&r->lock);
    int64_t bytes = (int64_t)r->nspare * r->bs;
    pthread_mutex_unlock(&r->lock);
    return bytes;
}

int bfs_remote_dump(bfs_remote *r, FILE *f)
{
    pthread_mutex_lock(&r->lock);
    int64_t now = bfs_mono_ms();
    /* blocks hold what spares do not (mem_used counts both) */
    fprintf(f, "remote: budget used %lld B, %lld B of it by blocks (%d spare buffers of %u B), kept %lld B, "
               "jobs queued %d, running %d\n",
            (long long)r->mem_used, (long long)(r->mem_used - (int64_t)r->nspare * r->bs), r->nspare, r->bs,
            (long long)atomic_load(&r->kept), r->jcount, r->running);
    int busy = r->running;
    for (const struct inflight *e = r->inflight; e; e = e->next, busy++)
        fprintf(f, "  in flight: %s block %llu, %d holder(s), %s, listed %lld ms ago, block %s\n", e->key,
                (unsigned long long)e->block, e->refs, e->done ? "done" : "running", (long long)(now - e->since),
                e->bb ? "held" : "none");
    pthread_mutex_unlock(&r->lock);
    return busy;
}

int64_t bfs_remote_mem_used(bfs_remote *r)
{
    pthread_mutex_lock(&r->lock);
    int64_t used = r->mem_used - (int64_t)r->nspare * r->bs;
    pthread_mutex_unlock(&r->lock);
    return used;
}
