/*
 * cli_cache.c - `butlerfs cache [--dir DIR] stats|evict [--to SIZE]|verify|clear`.
 *
 * Opens the cache like any other process (LMDB makes that safe while mounts
 * use it) and reports in plain words.  Hit and miss counters live in each
 * process; every process adds its counts to the index when it next writes
 * there, so `stats` shows the totals of all processes up to their last
 * write (a mount's most recent hits may be missing until it stores a block
 * or unmounts).  Directory and limits come from the configuration file
 * (--config, else the default one), as for a mount; --dir overrides the
 * directory.
 */
#include "cli.h"

#include "cache.h"
#include "config.h"
#include "progress.h"
#include "strutil.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char cache_help[] =
    "Usage: butlerfs cache [--dir DIR] [--config FILE] COMMAND\n"
    "\n"
    "Show or manage the local cache of remote data: blocks of remote files kept\n"
    "between mounts and shared by every butlerfs process of the user.  Safe to run\n"
    "while file systems are mounted.\n"
    "\n"
    "Commands:\n"
    "  stats              size and limit, blocks, objects, records, hit rate (a\n"
    "                     hit: a block taken from the cache, a miss: one fetched;\n"
    "                     blocks read ahead and prefetched count too)\n"
    "  evict [--to SIZE]  remove least recently used blocks until at most SIZE\n"
    "                     remain (default: the configured limit)\n"
    "  verify             read every block and check its length and checksum; drop\n"
    "                     bad blocks (they are fetched again when read) and remove\n"
    "                     leftover files (orphans of writes a crash interrupted, once\n"
    "                     10 minutes old: a younger one may be a write in progress)\n"
    "  clear              remove every block and object record\n"
    "\n"
    "Options:\n"
    "  --dir DIR          the cache directory (default: cache.dir of the\n"
    "                     configuration, else $XDG_CACHE_HOME/butlerfs, else\n"
    "                     ~/.cache/butlerfs)\n"
    "  --config FILE      the butlerfs configuration, for the directory and limits\n"
    "                     (default: ~/.config/butlerfs/config.yaml when present)\n"
    "  -h, --help         show this text\n"
    "\n"
    "SIZE takes a suffix: 512k, 4MiB, 20GiB, 1G (powers of 1024), 500MB, 2GB (powers\n"
    "of 1000), or plain bytes.\n"
    "\n"
    "Exit status: 0 done; 1 an error, or verify found bad blocks (dropped, so the\n"
    "cache is sound again), or --dir names no cache; 2 a usage error.  With no\n"
    "--dir, a cache not made yet is not an error: there is nothing to do.\n";

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
    bfs_format_bytes((double)(st.bytes), used, sizeof used);
    bfs_format_bytes((double)(st.max_bytes), limit, sizeof limit);
    bfs_format_bytes((double)(st.min_free_bytes), floor, sizeof floor);
    bfs_format_bytes((double)(st.fs_free_bytes), fsfree, sizeof fsfree);
    bfs_format_bytes((double)(st.block_size), bs, sizeof bs);
    printf("cache      %s\n", bfs_cache_dir(c));
    printf("size       %s of %s (%.0f%%)\n", used, limit,
           st.max_bytes > 0 ? 100.0 * (double)st.bytes / (double)st.max_bytes : 0.0);
    printf("blocks     %" PRId64 " (%s each at most)\n", st.blocks, bs);
    printf("objects    %" PRId64 "\n", st.objects);
    printf("records    %" PRId64 " (size and version of remote objects, kept in the index)\n",
           st.records);
    if (st.fs_free_bytes >= 0)
        printf("disk free  %s (kept free: %s)\n", fsfree, floor);
    int64_t looked = st.all_hits + st.all_misses;
    if (looked > 0)
        printf("hit rate   %.1f%% (%" PRId64 " hits, %" PRId64 " misses, all processes so far)\n",
               100.0 * (double)st.all_hits / (double)looked, st.all_hits, st.all_misses);
    else
        printf("hit rate   unknown (no reads recorded yet)\n");
    printf("evicted    %" PRId64 " blocks (limits, evict, clear); dropped as corrupt or missing: %" PRId64 "\n",
           st.all_evicted, st.all_dropped);
    return 0;
}

int bfs_cmd_cache(int argc, char **argv)
{
    const char *cmd = NULL, *dir = NULL, *config = NULL;
    int64_t to = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help") || !strcmp(a, "help")) {
            fputs(cache_help, stdout);
            return 0;
        } else if (!strcmp(a, "--dir") && v) {
            dir = v, i++;
        } else if (!strcmp(a, "--config") && v) {
            config = v, i++;
        } else if ((!strcmp(a, "--to") || !strcmp(a, "--dir") || !strcmp(a, "--config")) && !v) {
            fprintf(stderr, "butlerfs: cache: %s needs a value\n", a);
            return 2;
        } else if (!strcmp(a, "--to") && v) {
            if (!bfs_parse_size(v, &to)) {
                fprintf(stderr, "butlerfs: cache: --to: '%s' is not a size (try 20GiB, 512MiB)\n", v);
                return 2;
            }
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

    bfs_config conf;
    char *msg = NULL;
    if (bfs_config_load(config, &conf, &msg) < 0) {
        fprintf(stderr, "butlerfs: cache: %s\n", msg ? msg : "cannot read the configuration");
        free(msg);
        bfs_config_free(&conf);
        return 1;
    }
    msg = NULL;
    char *def = NULL;
    bool dir_given = dir != NULL;
    if (!dir)
        dir = conf.cache_dir ? conf.cache_dir : (def = bfs_cache_default_dir());
    if (!dir) {
        fprintf(stderr, "butlerfs: cache: no cache directory: give --dir, or set HOME\n");
        bfs_config_free(&conf);
        return 1;
    }
    /* Looking must not create a cache: say there is none instead (a
     * directory without the index is not a cache yet). */
    struct stat dst;
    char *index = bfs_asprintf("%s/index.lmdb", dir);
    bool no_dir = stat(dir, &dst) != 0 && errno == ENOENT;
    bool none = no_dir || (index && access(index, F_OK) != 0 && errno == ENOENT);
    free(index);
    if (none) {
        /* --dir names a cache that should be there (a typo must not pass
         * as "nothing to do"); the configured or default one may simply
         * not have been made yet */
        if (dir_given)
            fprintf(stderr, "butlerfs: cache: no cache at %s (%s)\n", dir,
                    no_dir ? "no such directory" : "no index.lmdb there");
        else
            printf("no cache at %s\n", dir);
        free(def);
        bfs_config_free(&conf);
        return dir_given ? 1 : 0;
    }
    bfs_cache_cfg cfg = {.dir = dir, .max_bytes = conf.cache_max_bytes,
                         .min_free_bytes = conf.cache_min_free,
                         .block_size = (uint32_t)conf.block_size};
    /* an existing cache keeps its block size: no notice about it here */
    char *meta = bfs_asprintf("%s/meta", dir);
    if (meta && access(meta, F_OK) == 0)
        cfg.block_size = 0;
    free(meta);
    bfs_cache *c;
    int rc = bfs_cache_open(&cfg, &c, &msg);
    free(def);
    bfs_config_free(&conf);
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
        int64_t records = 0;
        bfs_cache_verified v = {0};
        if (rc == 0 && is_clear)
            rc = bfs_cache_records_clear(c, &records);
        if (rc == 0 && is_clear)
            rc = bfs_cache_verify(c, &v); /* and leftover files */
        if (rc) {
            fprintf(stderr, "butlerfs: cache: %s failed: %s\n", cmd, strerror(-rc));
            status = 1;
        } else {
            bfs_cache_stats_get(c, &after);
            bfs_format_bytes((double)(before.bytes - after.bytes), b1, sizeof b1);
            bfs_format_bytes((double)(after.bytes), b2, sizeof b2);
            printf("removed %" PRId64 " blocks (%s); %s in %" PRId64 " blocks remain\n",
                   before.blocks - after.blocks, b1, b2, after.blocks);
            if (is_clear && records)
                printf("removed %" PRId64 " object records\n", records);
            if (is_clear && v.leftovers)
                printf("removed %" PRId64 " leftover files\n", v.leftovers);
        }
    } else {
        bfs_cache_stats st;
        bfs_cache_stats_get(c, &st);
        bfs_progress p;
        bfs_progress_start(&p, stderr, "verify", st.blocks);
        p.unit = "blocks";
        bfs_cache_verified v = {0};
        rc = bfs_cache_verify_progress(c, verify_progress, &p, &v);
        bfs_progress_finish(&p);
        if (rc) {
            fprintf(stderr, "butlerfs: cache: verify failed: %s\n", strerror(-rc));
            status = 1;
        } else {
            bfs_cache_stats_get(c, &st);
            printf("checked %" PRId64 " blocks: %" PRId64 " bad; removed %" PRId64
                   " leftover files; %" PRId64 " blocks remain\n",
                   v.checked, v.bad, v.leftovers, st.blocks);
            if (v.bad > 0) {
                fprintf(stderr, "butlerfs: cache: %" PRId64 " bad blocks were dropped (the log lines above "
                                "say which); they are fetched again when read\n", v.bad);
                status = 1;
            }
        }
    }
    bfs_cache_close(c);
    return status;
}
