/* Unit tests for the persistent block cache (fetchers/cache.c), against
 * real LMDB files in temporary directories. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <cmocka.h>

#include "cache.h"

#include <lmdb.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BS 4096

static char g_dir[256];
static int64_t g_now = 1000000;

static int64_t fake_clock(void)
{
    return g_now;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(p);
}

static int setup(void **state)
{
    strcpy(g_dir, "/tmp/bfs_test_cache.XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    strcat(g_dir, "/c");  /* let the cache create its own directory */
    g_now = 1000000;
    return 0;
}

static int teardown(void **state)
{
    char *slash = strrchr(g_dir, '/');
    *slash = '\0';
    nftw(g_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* Opens with no orphan_grace_s given get this one: verify removes orphans at
 * once, as these tests' writers are done or dead when they verify. */
static const int32_t g_orphan_grace = -1;

static bfs_cache *open_cfg(const bfs_cache_cfg *given)
{
    bfs_cache_cfg cfg = *given;
    if (!cfg.orphan_grace_s)
        cfg.orphan_grace_s = g_orphan_grace;
    bfs_cache *c = NULL;
    char *msg = NULL;
    int rc = bfs_cache_open(&cfg, &c, &msg);
    if (rc)
        fprintf(stderr, "open: %d %s\n", rc, msg ? msg : "");
    assert_int_equal(rc, 0);
    assert_non_null(c);
    free(msg);
    return c;
}

static bfs_cache *open_cache(uint32_t bs, int64_t max, int64_t min_free)
{
    bfs_cache_cfg cfg = {.dir = g_dir, .max_bytes = max, .min_free_bytes = min_free, .block_size = bs};
    return open_cfg(&cfg);
}

/* Deterministic content of (key, block): differs by key and block. */
static void fill(unsigned char *buf, size_t len, const char *key, uint64_t block)
{
    uint64_t x = 1469598103934665603ull ^ block;
    for (const char *p = key; *p; p++)
        x = (x ^ (unsigned char)*p) * 1099511628211ull;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        buf[i] = (unsigned char)x;
    }
}

static size_t len_of(uint64_t block)
{
    return block % 7 == 6 ? 1000 + block % 300 : BS;  /* some short "last" blocks */
}

/* Block files under DIR/blocks/XX/: count, total bytes, and the last path seen. */
static int64_t g_files, g_file_bytes, g_tmp_files;
static char g_last_file[512];
static int count_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    if (flag != FTW_F)
        return 0;
    if (!strncmp(p + ftw->base, "tmp.", 4)) {
        g_tmp_files++;
        return 0;
    }
    if (ftw->level == 2) {
        g_files++;
        g_file_bytes += sb->st_size;
        snprintf(g_last_file, sizeof g_last_file, "%s", p);
    }
    return 0;
}

static void count_files(void)
{
    char p[512];
    snprintf(p, sizeof p, "%s/blocks", g_dir);
    g_files = g_file_bytes = g_tmp_files = 0;
    g_last_file[0] = '\0';
    nftw(p, count_cb, 16, FTW_PHYS);
}

static void assert_consistent(bfs_cache *c)
{
    bfs_cache_stats st;
    assert_int_equal(bfs_cache_stats_get(c, &st), 0);
    count_files();
    assert_int_equal(st.bytes, g_file_bytes);
    assert_int_equal(st.blocks, g_files);
}

static void test_roundtrip_and_miss(void **state)
{
    bfs_cache *c = open_cache(BS, 0, 1);
    assert_int_equal(bfs_cache_block_size(c), BS);
    assert_string_equal(bfs_cache_dir(c), g_dir);
    unsigned char in[BS], out[BS];
    fill(in, BS, "s3://b/x.fits#e1", 0);
    assert_int_equal(bfs_cache_put(c, "s3://b/x.fits#e1", 0, in, BS), 0);
    fill(in, 123, "s3://b/x.fits#e1", 1);
    assert_int_equal(bfs_cache_put(c, "s3://b/x.fits#e1", 1, in, 123), 0);
    /* again with the same bytes: no change */
    assert_int_equal(bfs_cache_put(c, "s3://b/x.fits#e1", 1, in, 123), 0);

    assert_int_equal(bfs_cache_get(c, "s3://b/x.fits#e1", 1, out, sizeof out), 123);
    assert_memory_equal(in, out, 123);
    assert_int_equal(bfs_cache_get(c, "s3://b/x.fits#e1", 0, out, sizeof out), BS);
    fill(in, BS, "s3://b/x.fits#e1", 0);
    assert_memory_equal(in, out, BS);
    assert_true(bfs_cache_has(c, "s3://b/x.fits#e1", 0));

    /* misses: another block, another version of the object */
    assert_int_equal(bfs_cache_get(c, "s3://b/x.fits#e1", 2, out, sizeof out), -ENOENT);
    assert_int_equal(bfs_cache_get(c, "s3://b/x.fits#e2", 0, out, sizeof out), -ENOENT);
    assert_false(bfs_cache_has(c, "s3://b/x.fits#e2", 0));

    /* a key longer than LMDB's key limit */
    char longkey[3000];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    fill(in, 500, longkey, 7);
    assert_int_equal(bfs_cache_put(c, longkey, 7, in, 500), 0);
    assert_int_equal(bfs_cache_get(c, longkey, 7, out, sizeof out), 500);
    assert_memory_equal(in, out, 500);

    /* replacing a block with other bytes */
    assert_int_equal(bfs_cache_put(c, "s3://b/r.fits", 0, "1234\netag-a\n", 12), 0);
    assert_int_equal(bfs_cache_put(c, "s3://b/r.fits", 0, "99\netag-b\n", 10), 0);
    assert_int_equal(bfs_cache_get(c, "s3://b/r.fits", 0, out, sizeof out), 10);
    assert_memory_equal(out, "99\netag-b\n", 10);
    assert_int_equal(bfs_cache_get(c, "s3://b/r.fits", 0, out, 5), -ERANGE);
    assert_consistent(c);

    /* bad sizes */
    assert_int_equal(bfs_cache_put(c, "k", 0, in, 0), -EINVAL);
    assert_int_equal(bfs_cache_put(c, "k", 0, in, BS + 1), -EINVAL);

    bfs_cache_stats st;
    assert_int_equal(bfs_cache_stats_get(c, &st), 0);
    assert_int_equal(st.bytes, BS + 123 + 500 + 10);
    assert_int_equal(st.blocks, 4);
    assert_int_equal(st.objects, 3);
    assert_int_equal(st.hits, 4);
    assert_int_equal(st.misses, 2);
    assert_int_equal(st.corrupt, 0);
    assert_int_equal(st.block_size, BS);
    assert_consistent(c);
    /* a hit the caller could not use becomes a miss */
    bfs_cache_count_refused(c);
    assert_int_equal(bfs_cache_stats_get(c, &st), 0);
    assert_int_equal(st.hits, 3);
    assert_int_equal(st.misses, 3);

    /* one open per directory per process */
    bfs_cache_cfg cfg = {.dir = g_dir};
    bfs_cache *c2 = NULL;
    char *msg = NULL;
    assert_int_equal(bfs_cache_open(&cfg, &c2, &msg), -EBUSY);
    assert_null(c2);
    assert_non_null(msg);
    free(msg);
    bfs_cache_close(c);
}

static void test_persistence(void **state)
{
    bfs_cache *c = open_cache(BS, 0, 1);
    unsigned char in[BS], out[BS];
    for (uint64_t b = 0; b < 20; b++) {
        fill(in, len_of(b), "obj", b);
        assert_int_equal(bfs_cache_put(c, "obj", b, in, len_of(b)), 0);
    }
    assert_int_equal(bfs_cache_get(c, "obj", 3, out, sizeof out), BS);
    bfs_cache_close(c);

    /* reopen with another block size: the cache keeps its own */
    c = open_cache(2 * BS, 0, 1);
    assert_int_equal(bfs_cache_block_size(c), BS);
    for (uint64_t b = 0; b < 20; b++) {
        fill(in, len_of(b), "obj", b);
        assert_int_equal(bfs_cache_get(c, "obj", b, out, sizeof out), (ssize_t)len_of(b));
        assert_memory_equal(in, out, len_of(b));
    }
    bfs_cache_stats st;
    assert_int_equal(bfs_cache_stats_get(c, &st), 0);
    assert_int_equal(st.blocks, 20);
    assert_int_equal(st.objects, 1);
    /* the first process's hit was written at its close */
    assert_int_equal(st.all_hits, 21);
    assert_consistent(c);
    bfs_cache_verified v = {-1, -1, -1};
    assert_int_equal(bfs_cache_verify(c, &v), 0);
    assert_int_equal(v.checked, 20);
    assert_int_equal(v.bad + v.leftovers, 0);
    bfs_cache_close(c);
}

enum damage { FLIP, TRUNCATE, DELETE, EXTEND, SWAP };

static void damage_and_check(enum damage how)
{
    setup(NULL);
    bfs_cache *c = open_cache(BS, 0, 1);
    unsigned char in[BS], in2[BS], out[BS];
    fill(in, BS, "obj", 0);
    fill(in2, BS, "obj", 1);
    assert_int_equal(bfs_cache_put(c, "obj", 0, in, BS), 0);
    count_files();
    char victim[512];
    strcpy(victim, g_last_file);
    assert_int_equal(bfs_cache_put(c, "obj", 1, in2, BS), 0);
    count_files();
    char other[512];
    strcpy(other, strcmp(g_last_file, victim) ? g_last_file : "");
    if (!other[0]) {
        /* nftw order: find the other file by elimination */
        char p[256];
        snprintf(p, sizeof p, "%.*s", (int)(strrchr(victim, '/') - victim), victim);
        DIR *d = opendir(p);
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.' && !strstr(victim, e->d_name))
                snprintf(other, sizeof other, "%s/%s", p, e->d_name);
        closedir(d);
    }
    assert_true(other[0] != '\0');

    int fd;
    switch (how) {
    case FLIP:
        fd = open(victim, O_RDWR);
        assert_true(fd >= 0);
        unsigned char ch;
        assert_int_equal(pread(fd, &ch, 1, 1234), 1);
        ch ^= 0x10;
        assert_int_equal(pwrite(fd, &ch, 1, 1234), 1);
        close(fd);
        break;
    case TRUNCATE:
        assert_int_equal(truncate(victim, 100), 0);
        break;
    case DELETE:
        assert_int_equal(unlink(victim), 0);
        break;
    case EXTEND:
        fd = open(victim, O_WRONLY | O_APPEND);
        assert_int_equal(write(fd, "x", 1), 1);
        close(fd);
        break;
    case SWAP:
        /* a valid block under the wrong name must not pass */
        assert_int_equal(rename(other, victim), 0);
        break;
    }
    /* The victim is block 0 unless nftw listed it second: find out which
     * block fails. */
    ssize_t r0 = bfs_cache_get(c, "obj", 0, out, sizeof out);
    ssize_t r1 = bfs_cache_get(c, "obj", 1, out, sizeof out);
    if (how == SWAP) {
        /* both blocks are bad now: one has the other's bytes, one is gone */
        assert_int_equal(r0, -ENOENT);
        assert_int_equal(r1, -ENOENT);
    } else {
        assert_true((r0 == -ENOENT) != (r1 == -ENOENT));
        assert_true(r0 == BS || r1 == BS);
    }
    bfs_cache_stats st;
    assert_int_equal(bfs_cache_stats_get(c, &st), 0);
    assert_int_equal(st.corrupt, how == SWAP ? 2 : 1);
    assert_int_equal(st.all_dropped, how == SWAP ? 2 : 1);
    assert_int_equal(st.blocks, how == SWAP ? 0 : 1);
    assert_int_equal(st.bytes, how == SWAP ? 0 : BS);
    assert_consistent(c);
    /* still a miss, no second warning or count */
    uint64_t bad = r0 == -ENOENT ? 0 : 1;
    assert_int_equal(bfs_cache_get(c, "obj", bad, out, sizeof out), -ENOENT);
    assert_int_equal(bfs_cache_stats_get(c, &st), 0);
    assert_int_equal(st.corrupt, how == SWAP ? 2 : 1);
    /* the next put works */
    unsigned char *again = bad == 0 ? in : in2;
    assert_int_equal(bfs_cache_put(c, "obj", bad, again, BS), 0);
    assert_int_equal(bfs_cache_get(c, "obj", bad, out, sizeof out), BS);
    assert_memory_equal(again, out, BS);
    assert_consistent(c);
    bfs_cache_close(c);
    teardown(NULL);
}

static void test_corruption(void **state)
{
    damage_and_check(FLIP);
    damage_and_check(TRUNCATE);
    damage_and_check(DELETE);
    damage_and_check(EXTEND);
    damage_and_check(SWAP);
}

static void test_verify_drops_bad_and_orphans(void **state)
{
    bfs_cache *c = open_cache(BS, 0, 1);
    unsigned char in[BS];
    for (uint64_t b = 0; b < 10; b++) {
        fill(in, BS, "v", b);
        assert_int_equal(bfs_cache_put(c, "v", b, in, BS), 0);
    }
    count_files();
    assert_int_equal(truncate(g_last_file, 10), 0);  /* one bad block */
    char p[600];
    /* an orphan with a well-formed name, a stray file, a dead writer's tmp */
    snprintf(p, sizeof p, "%.*s/%s", (int)(strrchr(g_last_file, '/') - g_last_file), g_last_file,
             "00000000000000000000000000000000-0000000000000000-0000000000000001");
    FILE *f = fopen(p, "w");
    fputs("orphan", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/blocks/junk", g_dir);
    fclose(fopen(p, "w"));
    pid_t dead = fork();
    if (dead == 0)
        _exit(0);
    waitpid(dead, NULL, 0);
    snprintf(p, sizeof p, "%s/blocks/tmp.%ld.0123456789abcdef", g_dir, (long)dead);
    fclose(fopen(p, "w"));
    snprintf(p, sizeof p, "%s/blocks/tmp.%ld.0123456789abcdef", g_dir, (long)getpid());
    fclose(fopen(p, "w"));  /* "ours, in progress": kept */

    bfs_cache_verified v;
    assert_int_equal(bfs_cache_verify(c, &v), 0);
    assert_int_equal(v.checked, 10);
    assert_int_equal(v.bad, 1);       /* the truncated block */
    assert_int_equal(v.leftovers, 3); /* the orphan, the stray, the dead writer's tmp */
    bfs_cache_stats st;
    assert_int_equal(bfs_cache_stats_get(c, &st), 0);
    assert_int_equal(st.blocks, 9);
    assert_int_equal(st.corrupt, 1);
    assert_consistent(c);
    assert_int_equal(g_tmp_files, 1);
    unlink(p);
    bfs_cache_close(c);
}

/* Feed w buf[0..len) in pieces of odd sizes, as a socket delivers them. */
static void feed_pieces(bfs_cache_writer *w, const unsigned char *buf, size_t len)
{
    size_t n = 0, step = 1;
    while (n < len) {
        step = step * 7 % 150001 + 1; /* 8, 57, 400, ... up to ~150 KiB */
        n = n + step < len ? n + step : len;
        bfs_cache_writer_feed(w, buf, n);
    }
}

static void check_block(bfs_cache *c, const char *key, uint64_t b, const unsigned char *want, size_t len)
{
    unsigned char *out = malloc(1 << 20);
    assert_int_equal(bfs_cache_get(c, key, b, out, 1 << 20), (ssize_t)len);
    assert_memory_equal(out, want, len);
    free(out);
}

/* Descriptors of this process open on files under the cache directory. */
static int fds_under_cache(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        char link[300], target[512];
        snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(link, target, sizeof target - 1);
        if (len > 0) {
            target[len] = '\0';
            n += !strncmp(target, g_dir, strlen(g_dir));
        }
    }
    closedir(d);
    return n;
}

/* bfs_cache_writer: the block stored while it arrives is bfs_cache_put's
 * (same checksum: bfs_cache_get verifies it), after restarts, with a feed
 * that starts over, with a longer earlier attempt; an abort leaves nothing;
 * a commit of bytes not all fed falls back to a put. */
static void writer_cases(bool named)
{
    enum { MB = 1 << 20 };
    bfs_cache_cfg cfg = {.dir = g_dir, .min_free_bytes = 1, .block_size = MB, .named_tmp = named};
    bfs_cache *c = open_cfg(&cfg);
    unsigned char *a = malloc(MB), *b = malloc(MB);
    fill(a, MB, "wa", 0);
    fill(b, MB, "wb", 0);

    bfs_cache_writer *w = bfs_cache_writer_new(c, "k", 0);
    assert_non_null(w);
    feed_pieces(w, a, MB);
    assert_int_equal(bfs_cache_writer_commit(w, a, MB), 0);
    check_block(c, "k", 0, a, MB);

    /* an attempt that failed after 600 KiB, then the whole block */
    w = bfs_cache_writer_new(c, "k", 1);
    bfs_cache_writer_restart(w);
    feed_pieces(w, a, 600 * 1024);
    bfs_cache_writer_restart(w);
    feed_pieces(w, b, MB);
    assert_int_equal(bfs_cache_writer_commit(w, b, MB), 0);
    check_block(c, "k", 1, b, MB);

    /* no restart: a feed of fewer bytes than before starts over */
    w = bfs_cache_writer_new(c, "k", 2);
    feed_pieces(w, b, 700 * 1024);
    bfs_cache_writer_feed(w, a, 10);
    feed_pieces(w, a, MB);
    assert_int_equal(bfs_cache_writer_commit(w, a, MB), 0);
    check_block(c, "k", 2, a, MB);

    /* a short last block after a longer failed attempt: the file is cut */
    w = bfs_cache_writer_new(c, "k", 3);
    feed_pieces(w, a, 900 * 1024);
    bfs_cache_writer_restart(w);
    feed_pieces(w, b, 300001);
    assert_int_equal(bfs_cache_writer_commit(w, b, 300001), 0);
    check_block(c, "k", 3, b, 300001);

    /* half fed: the commit writes the bytes anew */
    w = bfs_cache_writer_new(c, "k", 4);
    feed_pieces(w, b, MB / 2);
    assert_int_equal(bfs_cache_writer_commit(w, b, MB), 0);
    check_block(c, "k", 4, b, MB);

    /* the same bytes again: nothing new */
    w = bfs_cache_writer_new(c, "k", 0);
    feed_pieces(w, a, MB);
    assert_int_equal(bfs_cache_writer_commit(w, a, MB), 0);
    check_block(c, "k", 0, a, MB);

    /* abort after pieces were written: nothing stored, no file left */
    int fds = fds_under_cache();
    w = bfs_cache_writer_new(c, "k", 5);
    feed_pieces(w, a, 800 * 1024);
    assert_int_equal(fds_under_cache(), fds + 1); /* the block's file, written while fed */
    count_files();
    assert_int_equal(g_tmp_files, named ? 1 : 0);
    bfs_cache_writer_abort(w);
    assert_int_equal(fds_under_cache(), fds);
    bfs_cache_writer_abort(NULL);
    assert_false(bfs_cache_has(c, "k", 5));

    /* bad length: as bfs_cache_put */
    w = bfs_cache_writer_new(c, "k", 6);
    assert_int_equal(bfs_cache_writer_commit(w, a, 0), -EINVAL);

    bfs_cache_stats st;
    assert_int_equal(bfs_cache_stats_get(c, &st), 0);
    assert_int_equal(st.blocks, 5);
    assert_int_equal(st.bytes, 4 * MB + 300001);
    assert_int_equal(st.corrupt, 0);
    assert_consistent(c);
    assert_int_equal(g_tmp_files, 0);
    free(a);
    free(b);
    bfs_cache_close(c);
}

static void test_writer(void **state)
{
    writer_cases(false);
}

static void test_writer_named(void **state)
{
    writer_cases(true);
}

/* Bytes of the largest named tmp file under blocks/ (a named writer's file). */
static int64_t g_tmp_bytes;
static int tmp_size_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)p;
    if (flag == FTW_F && !strncmp(p + ftw->base, "tmp.", 4) && sb->st_size > g_tmp_bytes)
        g_tmp_bytes = sb->st_size;
    return 0;
}

/* A slow disk (every write counts as slow): the writer stops writing after
 * its first piece, so the fetch never waits on the disk, and the commit
 * stores the block the long way, byte-identical, with nothing left over. */
static void test_writer_slow_disk(void **state)
{
    (void)state;
    enum { MB = 1 << 20 };
    bfs_cache_cfg cfg = {.dir = g_dir, .min_free_bytes = 1, .block_size = MB, .named_tmp = true,
                         .slow_write_us = 1};
    bfs_cache *c = open_cfg(&cfg);
    unsigned char *a = malloc(MB);
    fill(a, MB, "slow", 0);
    int fds = fds_under_cache();
    bfs_cache_writer *w = bfs_cache_writer_new(c, "k", 0);
    assert_non_null(w);
    feed_pieces(w, a, MB);
    char p[512];
    snprintf(p, sizeof p, "%s/blocks", g_dir);
    g_tmp_bytes = 0;
    nftw(p, tmp_size_cb, 16, FTW_PHYS);
    /* one batch was written, then none: 256 KiB plus the piece that crossed it */
    assert_true(g_tmp_bytes > 0);
    assert_true(g_tmp_bytes < MB / 2);
    assert_int_equal(bfs_cache_writer_commit(w, a, MB), 0);
    check_block(c, "k", 0, a, MB);
    assert_int_equal(fds_under_cache(), fds);
    bfs_cache_stats st;
    assert_int_equal(bfs_cache_stats_get(c, &st), 0);
    assert_int_equal(st.blocks, 1);
    assert_int_equal(st.bytes, MB);
    assert_consistent(c);
    assert_int_equal(g_tmp_files, 0); /* the partial file went before the put */
    free(a);
    bfs_cache_close(c);
}

static void test_lru_eviction(void **state)
{
    /* 10 blocks fit */
    bfs_cache *c = open_cache(BS, 10 * BS, 1);
    bfs_cache_set_clock(c, fake_clock);
    unsigned char in[BS], out[BS];
    for (uint64_t b = 0; b < 10; b++, g_now++) {
        fill(in, BS, "lru", b);
        assert_int_equal(bfs_cache_put(c, "lru", b, in, BS), 0);
    }
    /* block 0 is read a while later, so it is no longer the oldest */
    g_now += 120;
    assert_int_equal(bfs_cache_get(c, "lru", 0, out, sizeof out), BS);
    fill(in, BS, "lru", 10);
    assert_int_equal(bfs_cache_put(c, "lru", 10, in, BS), 0);
    assert_true(bfs_cache_has(c, "lru", 0));
    assert_false(bfs_cache_has(c, "lru", 1));
    for (uint64_t b = 2; b <= 10; b++)
        assert_true(bfs_cache_has(c, "lru", b));

    /* many more puts; block 0 is read now and then and survives; the total
     * never exceeds the limit */
    for (uint64_t b = 11; b < 200; b++) {
        g_now += 30;
        fill(in, len_of(b), "lru", b);
        assert_int_equal(bfs_cache_put(c, "lru", b, in, len_of(b)), 0);
        if (b % 4 == 0) {
            fill(in, BS, "lru", 0);
            assert_int_equal(bfs_cache_get(c, "lru", 0, out, sizeof out), BS);
            assert_memory_equal(in, out, BS);
        }
        bfs_cache_stats st;
        assert_int_equal(bfs_cache_stats_get(c, &st), 0);
        assert_true(st.bytes <= 10 * BS);
    }
    assert_true(bfs_cache_has(c, "lru", 0));
    assert_true(bfs_cache_has(c, "lru", 199));
    assert_false(bfs_cache_has(c, "lru", 150));
    assert_consistent(c);

    /* explicit eviction keeps the most recent */
    assert_int_equal(bfs_cache_evict(c, 2 * BS), 0);
    bfs_cache_stats st;
    assert_int_equal(bfs_cache_stats_get(c, &st), 0);
    assert_true(st.bytes <= 2 * BS);
    assert_true(bfs_cache_has(c, "lru", 199));
    assert_true(st.all_evicted > 180);
    assert_consistent(c);
    assert_int_equal(bfs_cache_evict(c, 0), 0);
    assert_int_equal(bfs_cache_stats_get(c, &st), 0);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(st.blocks, 0);
    assert_int_equal(st.objects, 0);
    assert_consistent(c);
    bfs_cache_close(c);
}

static void test_too_big(void **state)
{
    bfs_cache *c = open_cache(BS, 3000, 1);
    unsigned char in[BS];
    fill(in, BS, "big", 0);
    assert_int_equal(bfs_cache_put(c, "big", 0, in, 2000), 0);
    assert_int_equal(bfs_cache_put(c, "big", 1, in, 4000), -ENOSPC);
    assert_true(bfs_cache_has(c, "big", 0));  /* nothing evicted for nothing */
    assert_consistent(c);
    count_files();
    assert_int_equal(g_tmp_files, 0);
    bfs_cache_close(c);

    /* a free-space floor the file system cannot meet even with the cache
     * empty: refuse, keep the cache */
    c = open_cache(BS, 0, INT64_C(1) << 60);
    assert_int_equal(bfs_cache_put(c, "big", 2, in, 100), -ENOSPC);
    assert_true(bfs_cache_has(c, "big", 0));
    count_files();
    assert_int_equal(g_tmp_files, 0);
    bfs_cache_close(c);
}

static void test_modes(void **state)
{
    mode_t old = umask(0);
    bfs_cache *c = open_cache(BS, 0, 1);
    unsigned char in[BS];
    fill(in, 100, "m", 0);
    assert_int_equal(bfs_cache_put(c, "m", 0, in, 100), 0);
    umask(old);
    struct stat st;
    char p[600];
    assert_int_equal(stat(g_dir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    const char *names[] = {"blocks", "meta", "index.lmdb", "index.lmdb-lock"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", g_dir, names[i]);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 07777, i == 0 ? 0700 : 0600);
    }
    count_files();
    assert_int_equal(g_files, 1);
    assert_int_equal(stat(g_last_file, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    snprintf(p, sizeof p, "%.*s", (int)(strrchr(g_last_file, '/') - g_last_file), g_last_file);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    bfs_cache_close(c);
}

static bool g_named_tmp; /* workers write named tmp files (no O_TMPFILE) */

/* Store a block with bfs_cache_put, or through a writer fed in pieces. */
static int store(bfs_cache *c, const char *key, uint64_t b, const unsigned char *in, size_t len, bool writer)
{
    if (!writer)
        return bfs_cache_put(c, key, b, in, len);
    bfs_cache_writer *w = bfs_cache_writer_new(c, key, b);
    if (!w)
        return -ENOMEM;
    feed_pieces(w, in, len);
    return bfs_cache_writer_commit(w, in, len);
}

/* A child: many puts and gets over a shared key space, checking every hit;
 * every other block is stored through a writer. */
static int worker(int id, int rounds, int64_t max)
{
    bfs_cache *c;
    bfs_cache_cfg cfg = {.dir = g_dir, .max_bytes = max, .min_free_bytes = 1, .block_size = BS,
                         .named_tmp = g_named_tmp};
    char *msg;
    if (bfs_cache_open(&cfg, &c, &msg))
        return 10;
    unsigned char in[BS], out[BS];
    unsigned seed = (unsigned)id * 7919u + 1;
    for (int i = 0; i < rounds; i++) {
        seed = seed * 1103515245u + 12345u;
        char key[32];
        snprintf(key, sizeof key, "obj%u", (seed >> 8) % 7);
        uint64_t b = (seed >> 16) % 40;
        size_t len = len_of(b);
        ssize_t n = bfs_cache_get(c, key, b, out, sizeof out);
        fill(in, len, key, b);
        if (n >= 0) {
            if ((size_t)n != len || memcmp(in, out, len)) {
                bfs_cache_close(c);
                return 11;  /* wrong bytes served */
            }
        } else if (n != -ENOENT) {
            bfs_cache_close(c);
            return 12;
        } else if (store(c, key, b, in, len, i & 1) != 0) {
            bfs_cache_close(c);
            return 13;
        }
    }
    bfs_cache_close(c);
    return 0;
}

static void test_two_processes(void **state)
{
    bfs_cache *c = open_cache(BS, 0, 1);  /* create, then hand over */
    bfs_cache_close(c);
    const int64_t max = 60 * BS;  /* fewer than the 280 blocks: eviction runs */
    pid_t kids[3];
    for (int k = 0; k < 3; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0)
            _exit(worker(k, 1500, max));
    }
    for (int k = 0; k < 3; k++) {
        int status;
        assert_int_equal(waitpid(kids[k], &status, 0), kids[k]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    c = open_cache(BS, max, 1);
    assert_consistent(c);
    assert_int_equal(g_tmp_files, 0);
    bfs_cache_stats st;
    assert_int_equal(bfs_cache_stats_get(c, &st), 0);
    assert_true(st.bytes <= max);
    assert_true(st.blocks > 0);
    assert_int_equal(st.all_hits + st.all_misses, 3 * 1500);
    bfs_cache_verified v;
    assert_int_equal(bfs_cache_verify(c, &v), 0);
    assert_int_equal(v.checked, st.blocks);
    assert_int_equal(v.bad + v.leftovers, 0);
    bfs_cache_close(c);
}

/* Threads of one process share one bfs_cache. */
static bfs_cache *g_shared;
static void *thread_main(void *arg)
{
    int id = (int)(intptr_t)arg;
    unsigned char in[BS], out[BS];
    for (int i = 0; i < 400; i++) {
        char key[16];
        snprintf(key, sizeof key, "t%d", (i + id) % 5);
        uint64_t b = (uint64_t)(i * 7 + id) % 30;
        fill(in, len_of(b), key, b);
        ssize_t n = bfs_cache_get(g_shared, key, b, out, sizeof out);
        if (n >= 0 && ((size_t)n != len_of(b) || memcmp(in, out, (size_t)n)))
            return (void *)1;
        if (n < 0 && bfs_cache_put(g_shared, key, b, in, len_of(b)) != 0)
            return (void *)2;
    }
    return NULL;
}

static void test_threads(void **state)
{
    g_shared = open_cache(BS, 50 * BS, 1);
    pthread_t th[6];
    for (int i = 0; i < 6; i++)
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, (void *)(intptr_t)i), 0);
    for (int i = 0; i < 6; i++) {
        void *r;
        pthread_join(th[i], &r);
        assert_null(r);
    }
    assert_consistent(g_shared);
    assert_int_equal(g_tmp_files, 0);
    bfs_cache_close(g_shared);
}

/* kill -9 of writers at random points, then a reopen: every recorded block
 * is whole, orphans are dropped, no tmp file is left.  Unnamed tmp files
 * (O_TMPFILE, the default) vanish with their writer; named ones (where
 * O_TMPFILE is missing) are swept by the next open. */
static void kill9(bool named)
{
    g_named_tmp = named;
    bfs_cache *c = open_cache(BS, 0, 1);
    bfs_cache_close(c);
    const int64_t max = 50 * BS;
    for (int round = 0; round < 8; round++) {
        pid_t kid = fork();
        assert_true(kid >= 0);
        if (kid == 0)
            _exit(worker(100 + round, 1000000, max));
        struct timespec ts = {0, (3 + 4 * round) * 1000000L};
        nanosleep(&ts, NULL);
        kill(kid, SIGKILL);
        int status;
        assert_int_equal(waitpid(kid, &status, 0), kid);
        assert_true(WIFSIGNALED(status));
    }
    c = open_cache(BS, max, 1);
    bfs_cache_stats st;
    assert_int_equal(bfs_cache_stats_get(c, &st), 0);
    int64_t recorded = st.blocks;
    bfs_cache_verified v;
    assert_int_equal(bfs_cache_verify(c, &v), 0);
    assert_int_equal(v.checked, recorded);
    assert_int_equal(v.bad, 0);
    assert_int_equal(bfs_cache_stats_get(c, &st), 0);
    assert_int_equal(st.corrupt, 0);       /* no recorded block was bad */
    assert_int_equal(st.blocks, recorded); /* only orphans were dropped */
    assert_true(st.bytes <= max);
    assert_consistent(c);
    assert_int_equal(g_tmp_files, 0);      /* dead writers' tmp files are gone */
    bfs_cache_close(c);
    /* and recorded blocks read back with the right bytes */
    assert_int_equal(worker(999, 2000, max), 0);
    fprintf(stderr, "kill9 (%s tmp files): %lld blocks recorded, %lld orphans dropped\n",
            named ? "named" : "unnamed", (long long)recorded, (long long)v.leftovers);
    g_named_tmp = false;
}

static void test_kill9(void **state)
{
    (void)state;
    kill9(false);
}

static void test_kill9_named(void **state)
{
    (void)state;
    kill9(true);
}

/* ---- object records ------------------------------------------------------ */

static void assert_record(bfs_cache *c, const char *key, const char *want)
{
    char out[BFS_CACHE_RECORD_MAX];
    ssize_t n = bfs_cache_record_get(c, key, out, sizeof out);
    if (!want) {
        assert_int_equal(n, -ENOENT);
        return;
    }
    assert_int_equal(n, (ssize_t)strlen(want));
    assert_memory_equal(out, want, (size_t)n);
}

static void assert_counts(bfs_cache *c, int64_t bytes, int64_t blocks, int64_t objects, int64_t records)
{
    bfs_cache_stats st;
    assert_int_equal(bfs_cache_stats_get(c, &st), 0);
    assert_int_equal(st.bytes, bytes);
    assert_int_equal(st.blocks, blocks);
    assert_int_equal(st.objects, objects);
    assert_int_equal(st.records, records);
}

static void test_records(void **state)
{
    bfs_cache *c = open_cache(BS, 0, 1);
    unsigned char in[BS];
    char out[BFS_CACHE_RECORD_MAX + 1];
    fill(in, BS, "s3://b/x.fits#e1", 0);
    assert_int_equal(bfs_cache_put(c, "s3://b/x.fits#e1", 0, in, BS), 0);

    assert_record(c, "s3://b/x.fits", NULL);
    const char *rec1 = "4096\ne1\n-\n0\n-\n";
    assert_int_equal(bfs_cache_record_put(c, "s3://b/x.fits", rec1, strlen(rec1)), 0);
    assert_record(c, "s3://b/x.fits", rec1);
    /* replaced, then shorter */
    assert_int_equal(bfs_cache_record_put(c, "s3://b/x.fits", "4096\ne2\n", 8), 0);
    assert_record(c, "s3://b/x.fits", "4096\ne2\n");
    assert_int_equal(bfs_cache_record_get(c, "s3://b/x.fits", out, 7), -ERANGE);
    /* a record key is not a block key: same string, separate things */
    assert_int_equal(bfs_cache_record_put(c, "s3://b/x.fits#e1", "r", 1), 0);
    assert_int_equal(bfs_cache_get(c, "s3://b/x.fits#e1", 0, in, sizeof in), BS);
    assert_false(bfs_cache_has(c, "s3://b/x.fits", 0));
    /* an empty record, a key longer than LMDB's key limit, the largest record */
    assert_int_equal(bfs_cache_record_put(c, "empty", "", 0), 0);
    assert_record(c, "empty", "");
    char longkey[3000];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    memset(out, 'x', BFS_CACHE_RECORD_MAX);
    out[BFS_CACHE_RECORD_MAX] = '\0';
    assert_int_equal(bfs_cache_record_put(c, longkey, out, BFS_CACHE_RECORD_MAX), 0);
    assert_int_equal(bfs_cache_record_put(c, "big", out, BFS_CACHE_RECORD_MAX + 1), -EINVAL);
    assert_record(c, "big", NULL);

    /* not blocks: bytes, blocks, objects and block files unchanged */
    assert_counts(c, BS, 1, 1, 4);
    assert_consistent(c);
    /* nor read hits or misses */
    bfs_cache_stats st;
    assert_int_equal(bfs_cache_stats_get(c, &st), 0);
    assert_int_equal(st.hits, 1);
    assert_int_equal(st.misses, 0);

    /* drop */
    assert_int_equal(bfs_cache_record_drop(c, "s3://b/x.fits#e1"), 0);
    assert_int_equal(bfs_cache_record_drop(c, "s3://b/x.fits#e1"), -ENOENT);
    assert_record(c, "s3://b/x.fits#e1", NULL);
    assert_true(bfs_cache_has(c, "s3://b/x.fits#e1", 0));

    /* block eviction and verify leave records alone */
    assert_int_equal(bfs_cache_evict(c, 0), 0);
    assert_counts(c, 0, 0, 0, 3);
    bfs_cache_verified v = {-1, -1, -1};
    assert_int_equal(bfs_cache_verify(c, &v), 0);
    assert_int_equal(v.checked + v.bad + v.leftovers, 0);
    assert_record(c, "empty", "");
    bfs_cache_close(c);

    /* persistent */
    c = open_cache(BS, 0, 1);
    assert_record(c, "s3://b/x.fits", "4096\ne2\n");
    assert_int_equal(bfs_cache_record_get(c, longkey, out, sizeof out), BFS_CACHE_RECORD_MAX);
    assert_counts(c, 0, 0, 0, 3);

    /* clear removes them all */
    int64_t removed = -1;
    assert_int_equal(bfs_cache_records_clear(c, &removed), 0);
    assert_int_equal(removed, 3);
    assert_record(c, "s3://b/x.fits", NULL);
    assert_record(c, longkey, NULL);
    assert_counts(c, 0, 0, 0, 0);
    assert_int_equal(bfs_cache_record_put(c, "again", "1\n", 2), 0);
    assert_record(c, "again", "1\n");
    bfs_cache_close(c);
}

static void put_numbered(bfs_cache *c, const char *prefix, int i, size_t len)
{
    char key[32], data[BFS_CACHE_RECORD_MAX];
    snprintf(key, sizeof key, "%s-%d", prefix, i);
    memset(data, 'a' + i % 26, len);
    assert_int_equal(bfs_cache_record_put(c, key, data, len), 0);
}

static bool has_numbered(bfs_cache *c, const char *prefix, int i)
{
    char key[32], out[BFS_CACHE_RECORD_MAX];
    snprintf(key, sizeof key, "%s-%d", prefix, i);
    return bfs_cache_record_get(c, key, out, sizeof out) >= 0;
}

/* At most max_records records of at most max_records KiB: the least
 * recently written go first; blocks and records never evict each other. */
static void test_record_bound(void **state)
{
    bfs_cache_cfg cfg = {.dir = g_dir, .max_bytes = 4 * BS, .min_free_bytes = 1, .block_size = BS,
                         .max_records = 10};
    bfs_cache *c = open_cfg(&cfg);
    bfs_cache_stats st;
    for (int i = 0; i < 25; i++) {
        put_numbered(c, "small", i, 10);
        assert_int_equal(bfs_cache_stats_get(c, &st), 0);
        assert_int_equal(st.records, i < 10 ? i + 1 : 10);
    }
    for (int i = 0; i < 25; i++)
        assert_int_equal(has_numbered(c, "small", i), i >= 15);
    /* writing a record again makes it the newest */
    put_numbered(c, "small", 15, 10);
    put_numbered(c, "small", 25, 10);
    assert_true(has_numbered(c, "small", 15));
    assert_false(has_numbered(c, "small", 16));

    /* blocks fill and evict by bytes alone; the records stay */
    unsigned char in[BS];
    for (uint64_t b = 0; b < 12; b++) {
        fill(in, BS, "data", b);
        assert_int_equal(bfs_cache_put(c, "data", b, in, BS), 0);
    }
    assert_counts(c, 4 * BS, 4, 1, 10);
    assert_true(has_numbered(c, "small", 25));
    assert_int_equal(bfs_cache_evict(c, BS), 0);
    assert_counts(c, BS, 1, 1, 10);
    assert_consistent(c);

    /* the byte bound (10 KiB here): four records of 2 KiB fit, a fifth
     * pushes out every small record and the oldest large one */
    for (int i = 0; i < 6; i++)
        put_numbered(c, "large", i, BFS_CACHE_RECORD_MAX);
    assert_int_equal(bfs_cache_stats_get(c, &st), 0);
    assert_int_equal(st.records, 4);
    for (int i = 0; i < 6; i++)
        assert_int_equal(has_numbered(c, "large", i), i >= 2);
    assert_false(has_numbered(c, "small", 25));
    bfs_cache_close(c);

    /* the newest record stays even when it alone exceeds the bound */
    cfg.max_records = 1;
    c = open_cfg(&cfg);
    put_numbered(c, "large", 6, BFS_CACHE_RECORD_MAX);
    assert_true(has_numbered(c, "large", 6));
    assert_int_equal(bfs_cache_stats_get(c, &st), 0);
    assert_int_equal(st.records, 1);
    bfs_cache_close(c);
}

/* A cache made before records existed (an index without their DBIs) opens,
 * keeps its blocks and takes records. */
static void test_records_older_index(void **state)
{
    bfs_cache *c = open_cache(BS, 0, 1);
    unsigned char in[BS], out[BS];
    fill(in, BS, "old", 0);
    assert_int_equal(bfs_cache_put(c, "old", 0, in, BS), 0);
    bfs_cache_close(c);

    /* remove the record DBIs, as the older code never made them */
    char path[300];
    snprintf(path, sizeof path, "%s/index.lmdb", g_dir);
    MDB_env *env;
    MDB_txn *t;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 8), 0);
    assert_int_equal(mdb_env_set_mapsize(env, (size_t)1 << 30), 0);
    assert_int_equal(mdb_env_open(env, path, MDB_NOSUBDIR, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &t), 0);
    const char *names[] = {"records", "record_age"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(mdb_dbi_open(t, names[i], 0, &dbi), 0);
        assert_int_equal(mdb_drop(t, dbi, 1), 0);
        assert_int_equal(mdb_dbi_open(t, names[i], 0, &dbi), MDB_NOTFOUND);
    }
    assert_int_equal(mdb_txn_commit(t), 0);
    mdb_env_close(env);

    c = open_cache(BS, 0, 1);
    assert_int_equal(bfs_cache_get(c, "old", 0, out, sizeof out), BS);
    assert_memory_equal(in, out, BS);
    assert_counts(c, BS, 1, 1, 0);
    assert_record(c, "old", NULL);
    assert_int_equal(bfs_cache_record_put(c, "old", "r\n", 2), 0);
    assert_record(c, "old", "r\n");
    assert_counts(c, BS, 1, 1, 1);
    bfs_cache_close(c);
}

/* ---- a stalled placement stalls only its own put ---------------------------- */

/* cache.c's linkat and renameat2 land here (this executable's definitions
 * come first): the real call, then, in a thread that set t_stall, a stall
 * until the test lets go (at most 5 s): a disk that does not answer right
 * after a block file got its name, before its record is committed. */
static __thread bool t_stall;
static pthread_mutex_t stall_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stall_cv = PTHREAD_COND_INITIALIZER;
enum { STALL_IDLE, STALL_HELD, STALL_LET_GO, STALL_TIMED_OUT };
static int stall_state;

static void stall_here(void)
{
    if (!t_stall)
        return;
    t_stall = false;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&stall_mu);
    stall_state = STALL_HELD;
    pthread_cond_broadcast(&stall_cv);
    while (stall_state == STALL_HELD)
        if (pthread_cond_timedwait(&stall_cv, &stall_mu, &until) == ETIMEDOUT)
            stall_state = STALL_TIMED_OUT;
    pthread_mutex_unlock(&stall_mu);
}

int linkat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, int flags)
{
    int r = (int)syscall(SYS_linkat, olddirfd, oldpath, newdirfd, newpath, flags);
    int e = errno;
    stall_here();
    errno = e;
    return r;
}

int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags)
{
    int r = (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
    int e = errno;
    stall_here();
    errno = e;
    return r;
}

static void *stalled_put_main(void *arg)
{
    bfs_cache *c = arg;
    unsigned char in[BS];
    fill(in, BS, "s3://b/slow#e", 0);
    t_stall = true;
    return (void *)(intptr_t)bfs_cache_put(c, "s3://b/slow#e", 0, in, BS);
}

static void *verify_main(void *arg)
{
    static bfs_cache_verified v;
    v = (bfs_cache_verified){0};
    return bfs_cache_verify(arg, &v) == 0 ? &v : NULL;
}

/* One put stalls between naming its block file and recording it: another
 * thread's put finishes meanwhile (it once waited for the index's write
 * lock, which the stalled put held across the link), and a verify leaves
 * the stalled put's file alone (younger than the orphan grace, the
 * default) instead of removing it as an orphan. */
static void test_stalled_placement(void **state)
{
    (void)state;
    bfs_cache_cfg cfg = {.dir = g_dir, .min_free_bytes = 1, .block_size = BS, .orphan_grace_s = 600};
    bfs_cache *c = open_cfg(&cfg);
    stall_state = STALL_IDLE;
    pthread_t slow, ver;
    assert_int_equal(pthread_create(&slow, NULL, stalled_put_main, c), 0);
    pthread_mutex_lock(&stall_mu);
    while (stall_state == STALL_IDLE)
        pthread_cond_wait(&stall_cv, &stall_mu);
    pthread_mutex_unlock(&stall_mu);

    unsigned char in[BS], out[BS];
    fill(in, BS, "s3://b/fast#e", 0);
    assert_int_equal(bfs_cache_put(c, "s3://b/fast#e", 0, in, BS), 0);
    pthread_mutex_lock(&stall_mu);
    int during = stall_state;
    pthread_mutex_unlock(&stall_mu);
    assert_int_equal(during, STALL_HELD); /* done while the other put was stalled */
    assert_int_equal(bfs_cache_get(c, "s3://b/fast#e", 0, out, sizeof out), BS);
    assert_memory_equal(in, out, BS);

    void *vr;
    assert_int_equal(pthread_create(&ver, NULL, verify_main, c), 0);
    pthread_join(ver, &vr); /* while the put is stalled */
    pthread_mutex_lock(&stall_mu);
    stall_state = STALL_LET_GO;
    pthread_cond_broadcast(&stall_cv);
    pthread_mutex_unlock(&stall_mu);
    void *rc;
    pthread_join(slow, &rc);
    assert_int_equal((int)(intptr_t)rc, 0);
    assert_non_null(vr);
    assert_int_equal(((bfs_cache_verified *)vr)->leftovers, 0); /* the stalled put's file stayed */
    fill(in, BS, "s3://b/slow#e", 0);
    assert_int_equal(bfs_cache_get(c, "s3://b/slow#e", 0, out, sizeof out), BS);
    assert_memory_equal(in, out, BS);
    assert_consistent(c);
    bfs_cache_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip_and_miss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persistence, setup, teardown),
        cmocka_unit_test(test_corruption),
        cmocka_unit_test_setup_teardown(test_verify_drops_bad_and_orphans, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_slow_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lru_eviction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stalled_placement, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records_older_index, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
