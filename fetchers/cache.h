/*
 * cache.h - the persistent local block cache of remote objects.
 *
 * Objects are cut into blocks of block_size bytes (the last one shorter).
 * Each block is stored as one file under DIR/blocks/XX/, written unnamed
 * (O_TMPFILE; a temporary name where that is unavailable), given a name
 * used only once (link, or rename), and recorded in an LMDB index
 * (DIR/index.lmdb) in the same step, with its length, an XXH3-64 checksum of
 * its bytes (seeded by the object key, block number and block size, so a
 * block can never pass for another) and its last-use time.  A block is
 * served only when its file exists, has the recorded length and the
 * checksum matches; anything else is dropped (file and record), logged once,
 * and reported as a miss so the caller fetches it again.  Nothing corrupt
 * is ever returned.
 *
 * Keys: an object key names one version of one object, e.g.
 * "<url without query>#<etag or size+mtime>", so a replaced object never
 * reuses the old blocks.  Keys of any length are accepted (the index keys
 * blocks by a 128-bit hash of the key and keeps the key itself to tell
 * colliding keys apart).
 *
 * Limits: the total of block lengths stays under max_bytes, and the file
 * system keeps min_free_bytes free; bfs_cache_put evicts least recently
 * used blocks first.  Last use is recorded with a resolution of one minute
 * (a block read again within a minute of its last recorded use costs no
 * index write; later reads are batched), so LRU order is approximate at
 * that scale.  A block being read is safe: readers open the file before
 * reading and eviction only unlinks.
 *
 * Persistence and sharing: the cache survives unmount, remount and a
 * daemon killed with SIGKILL (a block is visible only after it is named and
 * its index commit; an orphan file without a record is removed by
 * bfs_cache_verify).  Block files are not fsync'ed: after a power loss a
 * recorded block may be short or garbled, which the per-read check catches.
 * Several processes (mounts, prefetch, `butlerfs cache`) may use one cache
 * directory at once: LMDB provides the locking.  The directory and its
 * files are created 0700/0600.
 *
 * Object records: besides blocks, a caller may keep one small record per
 * object (the remote reader keeps an object's pinned size, ETag, replica and
 * verified checksum there, so a cached object opens without the server).
 * Records live in the index itself, not in block files: a record put is one
 * index commit, crash-safe like a block's record, and costs no file.  They
 * are not blocks: not counted in bytes, blocks, objects, hits or misses
 * (stats.records counts them), not subject to max_bytes, min_free_bytes or
 * block eviction, and not checked by verify.  Record keys are a namespace of
 * their own (a record and a block may share a key); any length is accepted.
 * Bound: a record put keeps at most max_records records whose keys and data
 * total at most max_records KiB (by default one record per 64 KiB of max_bytes
 * and at least 64 Ki records, 64 MiB),
 * removing the least recently written records first (a get is not a write;
 * a put of the same key again is).  So the index space of records is
 * bounded whatever the callers store, and a record outlives its object's
 * blocks only until newer records push it out.  The limits are those of the
 * process that writes.
 *
 * Errors: negative errno; LMDB codes are translated in one place.
 * Threads: a bfs_cache is shared by all threads of a process; open it once
 * per process (a second open of the same directory in one process gives
 * -EBUSY), after daemonizing, and never use it in a child after fork().
 */
#ifndef BFS_CACHE_H
#define BFS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Defaults in brackets. */
typedef struct bfs_cache_cfg {
    const char *dir;          /* [NULL: bfs_cache_default_dir()] */
    int64_t max_bytes;        /* [0: 10 GiB] */
    int64_t min_free_bytes;   /* kept free on the file system [negative: 1 GiB; 0: no floor] */
    uint32_t block_size;      /* [0: 4 MiB]; fixed per cache directory (stored at creation) */
    uint32_t max_records;     /* object records kept [0: max_bytes / 64 KiB, at least 65536]; see "Object records" above */
    bool named_tmp;           /* tests: write blocks to named tmp files, the way taken
                               * where O_TMPFILE or /proc/self/fd is missing */
    uint32_t slow_write_us;   /* a writer's piece taking this long to write makes it stop
                               * writing while the block arrives (a slow disk must not
                               * delay the fetch) [0: 20 ms]; tests set 1 */
    int32_t orphan_grace_s;   /* verify removes a block file no record names only once
                               * it is this old: younger, it may be a put between its
                               * link and its record [0: 10 min; negative: at once,
                               * for tests whose writers are done or dead] */
} bfs_cache_cfg;

typedef struct bfs_cache_stats {
    int64_t bytes;            /* sum of block lengths */
    int64_t blocks;
    int64_t objects;          /* distinct object keys of blocks */
    int64_t records;          /* object records (not blocks, not in bytes or objects) */
    uint64_t hits, misses, corrupt;  /* since this process opened the cache */
    int64_t max_bytes, min_free_bytes;
    uint32_t block_size;
    /* All processes since the cache was created.  A process adds its hits
     * and misses to the index when it next writes to it (a put, a batch of
     * last-use updates, close), so a running mount's latest reads may be
     * missing. */
    int64_t all_hits, all_misses;
    int64_t all_dropped;      /* corrupt or missing blocks dropped */
    int64_t all_evicted;      /* blocks evicted */
    int64_t fs_free_bytes;    /* free space of the file system now (statvfs) */
} bfs_cache_stats;

typedef struct bfs_cache bfs_cache;

/* $XDG_CACHE_HOME/butlerfs, else $HOME/.cache/butlerfs; malloc'd, NULL
 * when neither variable is usable. */
char *bfs_cache_default_dir(void);

/* Create the directory if needed.  -errno and *errmsg (malloc'd) on failure. */
int bfs_cache_open(const bfs_cache_cfg *cfg, bfs_cache **out, char **errmsg);
/* Writes this process's pending last-use times and counters, then closes. */
void bfs_cache_close(bfs_cache *c);

uint32_t bfs_cache_block_size(const bfs_cache *c);
const char *bfs_cache_dir(const bfs_cache *c);

/* Read block number `block` of object key into buf (bufsz >= block size).
 * Returns the block's length, or -ENOENT on a miss (including a dropped
 * corrupt block), -ERANGE when the block is longer than a smaller bufsz.
 * Other negative errno values are failures of the cache itself (EMFILE,
 * index errors); the caller treats them as a miss. */
ssize_t bfs_cache_get(bfs_cache *c, const char *key, uint64_t block, void *buf, size_t bufsz);

/* The same as bfs_cache_get, without the copy: the verified block file is
 * mapped read-only and *data points at its bytes until
 * bfs_cache_unmap(*data, length).  The mapping stays valid after the block
 * is evicted or dropped (the cache only ever unlinks block files); it does
 * not count towards any memory budget (page cache pages).  *data is NULL on
 * error. */
ssize_t bfs_cache_map(bfs_cache *c, const char *key, uint64_t block, const void **data);
void bfs_cache_unmap(const void *data, size_t len);

/* Store a block (evicting as needed).  1 <= len <= block size, else
 * -EINVAL.  -ENOSPC when it cannot fit even after eviction (a block larger
 * than max_bytes, a file system below its free-space floor with the cache
 * empty, a full index).  -EEXIST (not cached) when key shares its 128-bit
 * hash with another cached key, which in practice never happens.  Storing a
 * block that is already recorded with the same bytes costs one index lookup.
 * Cost: one LMDB commit (an fdatasync of the index) per stored block, so a
 * caller on a latency-sensitive path should store from a worker thread. */
int bfs_cache_put(bfs_cache *c, const char *key, uint64_t block, const void *buf, size_t len);

/* A block stored while it arrives: its checksum is taken and its file
 * written piece by piece as the bytes land in the caller's buffer (while
 * they are still in the CPU's caches), so storing it afterwards costs no
 * second pass over the bytes.  The result is exactly bfs_cache_put's.
 *
 *     w = bfs_cache_writer_new(c, key, block);     NULL: out of memory (use bfs_cache_put)
 *     for each attempt at the bytes:
 *         bfs_cache_writer_restart(w);             the attempt starts at the block's first byte
 *         bfs_cache_writer_feed(w, buf, n);        after each piece: buf[0..n) have arrived
 *     bfs_cache_writer_commit(w, buf, len);        stored (as bfs_cache_put(c, key, block, buf, len)); frees w
 *  or bfs_cache_writer_abort(w);                   nothing stored, nothing left on disk; frees w
 *
 * The writer owns a copy of key and its file (unnamed where the file
 * system allows, so a crash leaves nothing; else a named tmp file that
 * verify sweeps); buf stays the caller's and must not change between a
 * feed and the commit.  Feeding never fails: when the file cannot be made
 * or written (a full disk), or a piece takes 20 ms or more to write (a slow
 * disk, which the fetch must not wait for), the writer stops and commit
 * falls back to bfs_cache_put, which makes room.  Commit also falls back when what was fed is not all of
 * buf[0..len).  A feed of fewer bytes than the one before starts over, as
 * a restart does.  One writer is used by one thread at a time. */
typedef struct bfs_cache_writer bfs_cache_writer;
bfs_cache_writer *bfs_cache_writer_new(bfs_cache *c, const char *key, uint64_t block);
void bfs_cache_writer_restart(bfs_cache_writer *w);
void bfs_cache_writer_feed(bfs_cache_writer *w, const void *buf, size_t n);
int bfs_cache_writer_commit(bfs_cache_writer *w, const void *buf, size_t len);
void bfs_cache_writer_abort(bfs_cache_writer *w); /* NULL is fine */

/* Forget a block (record and file), without a log line: for blocks that
 * are intact but belong to an object found bad as a whole.  -ENOENT when it
 * is not recorded. */
int bfs_cache_drop(bfs_cache *c, const char *key, uint64_t block);

/* True when the block is recorded (no verification; for prefetch planning). */
bool bfs_cache_has(bfs_cache *c, const char *key, uint64_t block);

/* Count a miss in the cache's statistics (as bfs_cache_get and
 * bfs_cache_map do): for a caller that looked with bfs_cache_has, did not
 * find the block, and fetches it. */
void bfs_cache_count_miss(bfs_cache *c);

/* Turn a hit this process just counted (a bfs_cache_get or bfs_cache_map
 * that succeeded) into a miss: the caller could not use the block (it has
 * another length than the caller's version of the object) and fetches it. */
void bfs_cache_count_refused(bfs_cache *c);

int bfs_cache_stats_get(bfs_cache *c, bfs_cache_stats *st);

/* Evict least recently used blocks until at most target_bytes remain. */
int bfs_cache_evict(bfs_cache *c, int64_t target_bytes);

/* What a verify found. */
typedef struct {
    int64_t checked;   /* recorded blocks read and checked */
    int64_t bad;       /* of those, dropped: wrong length or checksum, or no file */
    int64_t leftovers; /* files removed that no record owns: orphans, temporary
                        * files of dead writers, unexpected files */
} bfs_cache_verified;

/* Check every block (length and checksum), drop bad ones and leftover files
 * (block files without a record, temporary files of dead writers).  *out
 * (may be NULL) gets the counts. */
int bfs_cache_verify(bfs_cache *c, bfs_cache_verified *out);

/* The same, calling progress (may be NULL) after each checked block with
 * the blocks checked so far, the blocks recorded at the start and the bytes
 * read so far. */
typedef void (*bfs_cache_progress_fn)(void *ctx, int64_t done, int64_t total, int64_t bytes);
int bfs_cache_verify_progress(bfs_cache *c, bfs_cache_progress_fn progress, void *ctx, bfs_cache_verified *out);

/* ---- object records (see "Object records" above) ---- */

/* The largest record: an object's metadata, not its data. */
#define BFS_CACHE_RECORD_MAX 2048

/* Copy the record of key into buf.  Returns its length (0 for an empty
 * record), -ENOENT when there is none, -ERANGE when it is longer than
 * bufsz, other negative errno values for failures of the index. */
ssize_t bfs_cache_record_get(bfs_cache *c, const char *key, void *buf, size_t bufsz);

/* Store (or replace) the record of key: len <= BFS_CACHE_RECORD_MAX, else
 * -EINVAL.  May remove the least recently written other records to stay
 * within the bound.  -EEXIST (not stored) when key shares its 128-bit hash
 * with another key's record; -ENOSPC when the index is full even after
 * evicting blocks.  Cost: one index commit. */
int bfs_cache_record_put(bfs_cache *c, const char *key, const void *data, size_t len);

/* Forget the record of key.  -ENOENT when there is none. */
int bfs_cache_record_drop(bfs_cache *c, const char *key);

/* Forget every record (`butlerfs cache clear`; bfs_cache_evict leaves them).
 * *removed (may be NULL) gets their number. */
int bfs_cache_records_clear(bfs_cache *c, int64_t *removed);

/* Tests only: replace the clock (seconds since 1970) used for last-use
 * times; NULL restores time(2).  Call before other threads use c. */
void bfs_cache_set_clock(bfs_cache *c, int64_t (*now)(void));

#endif
