/*
 * cli_cache.c - `butlerfs cache [--dir DIR] stats|evict [--to SIZE]|verify|clear`.
 *
 * Opens the cache like any other process (LMDB makes that safe while mounts
 * use it) and reports in plain words.  Hit and miss counters live in each
 * process; every process adds its counts to the index when it next writes
 * there, so `stats` shows the totals of all processes up to their last
 * write (a mount's most recent hits may be missing until it stores a block
 * or unmounts).  The limit shown is this command's (the default, or
 * --max); a mount may have been given another.
 */
#include "cli.h"

#include "cache.h"
#include "progress.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char cache_help[] =
    "Usage: butlerfs cache [--dir DIR] COMMAND\n"
    "\n"
    "Show or manage the local cache of remote data: blocks of remote files kept\n"
    "between mounts and shared by every butlerfs process of the user.  Safe to run\n"
    "while file systems are mounted.\n"
    "\n"
    "Commands:\n"
    "  stats              size and limit, blocks, objects, hit rate\n"
    "  evict [--to SIZE]  remove least recently used blocks until at most SIZE\n"
    "                     remain (default: the limit, see --max)\n"
    "  verify             read every block and check its checksum; drop bad blocks\n"
    "                     and leftover files (orphans, unfinished writes)\n"
    "  clear              remove every block\n"
    "\n"
    "Options:\n"
    "  --dir DIR          the cache directory (default: $XDG_CACHE_HOME/butlerfs,\n"
    "                     else ~/.cache/butlerfs)\n"
    "  --max SIZE         the size limit to report and evict to (default 10GiB)\n"
    "  -h, --help         show this text\n"
    "\n"
    "SIZE takes a suffix: 512k, 4MiB, 20GiB, 1G (powers of 1024), or plain bytes.\n";

/* Local until common/config.c provides bfs_parse_size (declared in
 * config.h): "4MiB", "20GiB", "512k", "1G", "1048576". */
static bool parse_size(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0)
        return false;
    while (*end == ' ')
        end++;
    static const struct { const char *suffix; double mult; } units[] = {
        {"", 1}, {"b", 1}, {"k", 1024.0}, {"kb", 1024.0}, {"kib", 1024.0},
        {"m", 1048576.0}, {"mb", 1048576.0}, {"mib", 1048576.0},
        {"g", 1073741824.0}, {"gb", 1073741824.0}, {"gib", 1073741824.0},
        {"t", 1099511627776.0}, {"tb", 1099511627776.0}, {"tib", 1099511627776.0},
    };
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
        if (!strcasecmp(end, units[i].suffix)) {
            double b = v * units[i].mult;
            if (b >= 9.2e18)
                return false;
            *out = (int64_t)b;
            return true;
        }
    return false;
}

static void human(int64_t b, char *buf, size_t n)
{
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)b;
    int u = 0;
    while ((v >= 1024 || v <= -1024) && u < 5) {
        v /= 1024;
        u++;
    }
    snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static void verify_progress(void *ctx, int64_t done, int64_t total, int64_t bytes)
{
    bfs_progress *p = ctx;
    if (total < done)
        p->total_items = done;
    bfs_progress_update(p, done, bytes);
}

static int print_stats(bfs_cache *c)
{
    bfs_cache_stats st;
    int rc = bfs_cache_stats_get(c, &st);
    if (rc) {
        fprintf(stderr, "butlerfs: cache: cannot read statistics: %s\n", strerror(-rc));
        return 1;
    }
    char used[32], limit[32], floor[32], fsfree[32], bs[32];
    human(st.bytes, used, sizeof used);
    human(st.max_bytes, limit, sizeof limit);
    human(st.min_free_bytes, floor, sizeof floor);
    human(st.fs_free_bytes, fsfree, sizeof fsfree);
    human(st.block_size, bs, sizeof bs);
    printf("cache      %s\n", bfs_cache_dir(c));
    printf("size       %s of %s (%.0f%%)\n", used, limit,
           st.max_bytes > 0 ? 100.0 * (double)st.bytes / (double)st.max_bytes : 0.0);
    printf("blocks     %" PRId64 " of %s\n", st.blocks, bs);
    printf("objects    %" PRId64 "\n", st.objects);
    if (st.fs_free_bytes >= 0)
        printf("disk free  %s (kept free: %s)\n", fsfree, floor);
    int64_t looked = st.all_hits + st.all_misses;
    if (looked > 0)
        printf("hit rate   %.1f%% (%" PRId64 " hits, %" PRId64 " misses, all processes so far)\n",
               100.0 * (double)st.all_hits / (double)looked, st.all_hits, st.all_misses);
    else
        printf("hit rate   unknown (no reads recorded yet)\n");
    printf("evicted    %" PRId64 " blocks; dropped as corrupt or missing: %" PRId64 "\n",
           st.all_evicted, st.all_dropped);
    return 0;
}

int bfs_cmd_cache(int argc, char **argv)
{
    bfs_cache_cfg cfg = {0};
    const char *cmd = NULL;
    int64_t to = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help") || !strcmp(a, "help")) {
            fputs(cache_help, stdout);
            return 0;
        } else if (!strcmp(a, "--dir") && v) {
            cfg.dir = v, i++;
        } else if ((!strcmp(a, "--to") || !strcmp(a, "--max")) && v) {
            int64_t n;
            if (!parse_size(v, &n)) {
                fprintf(stderr, "butlerfs: cache: %s: '%s' is not a size (try 20GiB, 512MiB)\n", a, v);
                return 2;
            }
            if (!strcmp(a, "--to"))
                to = n;
            else if (n > 0)
                cfg.max_bytes = n;
            i++;
        } else if (!cmd && a[0] != '-') {
            cmd = a;
        } else {
            fprintf(stderr, "butlerfs: cache: unexpected argument '%s'\n\n%s", a, cache_help);
            return 2;
        }
    }
    if (!cmd) {
        fputs(cache_help, stderr);
        return 2;
    }
    bool is_stats = !strcmp(cmd, "stats"), is_evict = !strcmp(cmd, "evict");
    bool is_verify = !strcmp(cmd, "verify"), is_clear = !strcmp(cmd, "clear");
    if (!is_stats && !is_evict && !is_verify && !is_clear) {
        fprintf(stderr, "butlerfs: cache: unknown command '%s'\n\n%s", cmd, cache_help);
        return 2;
    }
    if (to >= 0 && !is_evict) {
        fprintf(stderr, "butlerfs: cache: --to belongs to evict\n");
        return 2;
    }

    /* Looking must not create a cache: say there is none instead. */
    struct stat dst;
    if (cfg.dir && stat(cfg.dir, &dst) != 0 && errno == ENOENT) {
        printf("no cache at %s\n", cfg.dir);
        return 0;
    }
    bfs_cache *c;
    char *msg = NULL;
    int rc = bfs_cache_open(&cfg, &c, &msg);
    if (rc) {
        fprintf(stderr, "butlerfs: cache: %s\n", msg ? msg : strerror(-rc));
        free(msg);
        return 1;
    }
    int status = 0;
    char b1[32], b2[32];
    if (is_stats) {
        status = print_stats(c);
    } else if (is_evict || is_clear) {
        bfs_cache_stats before, after;
        if (bfs_cache_stats_get(c, &before) != 0)
            memset(&before, 0, sizeof before);
        int64_t target = is_clear ? 0 : to >= 0 ? to : before.max_bytes;
        rc = bfs_cache_evict(c, target);
        int64_t checked = 0, dropped = 0;
        if (rc == 0 && is_clear)
            rc = bfs_cache_verify(c, &checked, &dropped);  /* and leftover files */
        if (rc) {
            fprintf(stderr, "butlerfs: cache: %s failed: %s\n", cmd, strerror(-rc));
            status = 1;
        } else {
            bfs_cache_stats_get(c, &after);
            human(before.bytes - after.bytes, b1, sizeof b1);
            human(after.bytes, b2, sizeof b2);
            printf("removed %" PRId64 " blocks (%s); %s in %" PRId64 " blocks remain\n",
                   before.blocks - after.blocks, b1, b2, after.blocks);
            if (is_clear && dropped)
                printf("removed %" PRId64 " leftover files\n", dropped);
        }
    } else {
        bfs_cache_stats st;
        bfs_cache_stats_get(c, &st);
        bfs_progress p;
        bfs_progress_start(&p, stdout, "verify", st.blocks);
        int64_t checked = 0, dropped = 0;
        rc = bfs_cache_verify_progress(c, verify_progress, &p, &checked, &dropped);
        bfs_progress_finish(&p);
        if (rc) {
            fprintf(stderr, "butlerfs: cache: verify failed: %s\n", strerror(-rc));
            status = 1;
        } else {
            bfs_cache_stats_get(c, &st);
            printf("checked %" PRId64 " blocks; dropped %" PRId64
                   " (bad blocks and leftover files); %" PRId64 " blocks remain\n",
                   checked, dropped, st.blocks);
        }
    }
    bfs_cache_close(c);
    return status;
}
