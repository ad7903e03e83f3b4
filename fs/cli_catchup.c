/*
 * cli_catchup.c - `butlerfs catchup REPO --collection GLOB [--since DATE]
 * [--until DATE] [--check-sizes] [--config FILE]`: compare what the
 * registry holds with what the transfer destinations hold, and queue what
 * is missing (docs/transfer.md, "Catch-up").
 *
 * Each dataset file of the matching RUN collections (and ingest dates) is
 * looked up at each destination whose rules match it, by a HEAD of its
 * object: missing (404) is queued; with --check-sizes, an object of another
 * size is queued too (the upload replaces it).  A job that exists already,
 * in any state, is not queued twice, so catch-up may run while a mount is
 * active (its daemon picks the new jobs up within 10 s) and may be run
 * again.  Files outside the datastore root (absolute URIs) are skipped.
 */
#include "cli.h"

#include "config.h"
#include "http.h"
#include "progress.h"
#include "registry.h"
#include "strutil.h"
#include "transfer.h"
#include "translate.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char catchup_help[] =
    "Usage: butlerfs catchup REPO --collection GLOB [--since DATE] [--until DATE]\n"
    "                        [--check-sizes] [--config FILE]\n"
    "\n"
    "Compare the datasets of the RUN collections matching GLOB with what each\n"
    "transfer destination of the configuration (its transfer: section) holds, and\n"
    "queue the uploads of what is missing.  Safe while a mount of REPO runs (it picks\n"
    "the new jobs up within 10 s); a dataset already queued, in any state, is not\n"
    "queued twice, so it can be run again.  Shows a progress bar and a summary.\n"
    "\n"
    "Options:\n"
    "  --collection GLOB  RUN collections to check (shell-style: *, ?, [...]); required\n"
    "  --since DATE       only datasets ingested on or after DATE (YYYY-MM-DD, UTC)\n"
    "  --until DATE       only datasets ingested before DATE\n"
    "  --check-sizes      also queue objects whose size differs from the file's\n"
    "  --config FILE      the butlerfs configuration with the transfer: section\n"
    "                     (default: ~/.config/butlerfs/config.yaml when present)\n"
    "  -h, --help         show this text\n"
    "\n"
    "Each object is looked up with one HEAD request.  Exit status: 0 done (whether or\n"
    "not anything was missing); 1 an error (some objects could not be checked);\n"
    "2 a usage error.\n";

struct catchup {
    const char *repo;
    const bfs_transfer_config *tcfg;
    bfs_http *http;
    bool check_sizes;
    int64_t since_ns, until_ns;
    /* the files to check, collected first (the registry is not held open
     * across the network requests) */
    struct item {
        char *id, *run, *dtype, *path;
        int64_t size;
    } *items;
    size_t n, cap;
    int64_t skipped_uri, skipped_date;
};

static int collect(void *ctx, const bfs_run_file *f)
{
    struct catchup *c = ctx;
    if (strstr(f->path, "://") || f->path[0] == '/') {
        c->skipped_uri++;
        return 0;
    }
    if ((c->since_ns && f->ingest_ns < c->since_ns) || (c->until_ns && f->ingest_ns >= c->until_ns)) {
        c->skipped_date++;
        return 0;
    }
    if (bfs_grow((void **)&c->items, &c->cap, c->n + 1, sizeof *c->items) < 0)
        return -ENOMEM;
    struct item *it = &c->items[c->n];
    *it = (struct item){strdup(f->dataset_id), strdup(f->run), strdup(f->dataset_type), strdup(f->path), f->size};
    if (!it->id || !it->run || !it->dtype || !it->path) {
        free(it->id), free(it->run), free(it->dtype), free(it->path);
        return -ENOMEM;
    }
    c->n++;
    return 0;
}

int bfs_cmd_catchup(int argc, char **argv)
{
    const char *repo = NULL, *glob = NULL, *since = NULL, *until = NULL, *config_path = NULL;
    bool check_sizes = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(catchup_help, stdout);
            return 0;
        } else if (!strcmp(a, "--check-sizes")) {
            check_sizes = true;
        } else if (i + 1 < argc && !strcmp(a, "--collection")) {
            glob = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--since")) {
            since = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--until")) {
            until = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--config")) {
            config_path = argv[++i];
        } else if (!repo && a[0] != '-') {
            repo = a;
        } else {
            fprintf(stderr, "butlerfs: catchup: unexpected argument '%s'\n\n%s", a, catchup_help);
            return 2;
        }
    }
    if (!repo || !glob) {
        fprintf(stderr, "butlerfs: catchup needs a repository and --collection GLOB\n\n%s", catchup_help);
        return 2;
    }
    struct catchup c = {.repo = repo, .check_sizes = check_sizes};
    if ((since && bfs_translate_iso_ns(since, true, &c.since_ns) < 0) ||
        (until && bfs_translate_iso_ns(until, true, &c.until_ns) < 0)) {
        fprintf(stderr, "butlerfs: catchup: --since and --until take a date, YYYY-MM-DD (UTC)\n");
        return 2;
    }
    bfs_config cfg;
    bfs_transfer_config tcfg;
    bfs_transfer_config_defaults(&tcfg);
    char *msg = NULL;
    int status = 1;
    bfs_registry *reg = NULL;
    if (bfs_config_load(config_path, &cfg, &msg) < 0) {
        fprintf(stderr, "butlerfs: %s\n", msg ? msg : "cannot read the configuration");
        free(msg);
        return 1;
    }
    if (!cfg.path || bfs_transfer_config_load(cfg.path, &tcfg, &msg) < 0 || !tcfg.n_dests) {
        fprintf(stderr, "butlerfs: catchup: %s\n",
                msg ? msg : "the configuration has no transfer: section with destinations (--config FILE)");
        goto out;
    }
    bfs_http_cfg hc;
    bfs_http_cfg_from(&cfg, &hc);
    if (bfs_http_new(&hc, &c.http, &msg) < 0 || bfs_registry_open(repo, BFS_REG_READONLY, &reg, &msg) < 0) {
        fprintf(stderr, "butlerfs: %s\n", msg ? msg : "cannot start");
        goto out;
    }
    int ret = bfs_registry_each_run_file(reg, glob, collect, &c);
    bfs_registry_close(reg);
    reg = NULL;
    if (ret < 0) {
        fprintf(stderr, "butlerfs: catchup: cannot list the datasets of %s: %s\n", glob, strerror(-ret));
        goto out;
    }
    int64_t checked = 0, present = 0, queued = 0, already = 0, resized = 0, errors = 0;
    bfs_progress bar;
    bfs_progress_start(&bar, stderr, "catchup", (int64_t)c.n);
    for (size_t i = 0; i < c.n; i++) {
        struct item *it = &c.items[i];
        for (int d = 0; d < tcfg.n_dests; d++) {
            if (!bfs_transfer_matches(&tcfg.dests[d], it->run, it->dtype))
                continue;
            checked++;
            bfs_transfer_item ti = {it->id, it->run, it->dtype, it->path, it->size};
            char *url = NULL, *why = NULL;
            int r = bfs_transfer_object_url(&tcfg.dests[d], &ti, &url, &why);
            if (r < 0) {
                fprintf(stderr, "butlerfs: catchup: %s\n", why ? why : strerror(-r));
                free(why);
                errors++;
                continue;
            }
            bfs_object obj;
            r = bfs_http_stat_within(c.http, url, &obj, (long)tcfg.request_timeout_ms);
            free(url);
            bool want = r == -ENOENT || (r == 0 && check_sizes && it->size >= 0 && obj.size != it->size);
            if (r == 0 && !want) {
                present++;
                continue;
            }
            if (!want) {
                errors++;
                continue;
            }
            resized += r == 0;
            int q = bfs_queue_add(repo, &tcfg, d, &ti);
            if (q < 0)
                errors++;
            else if (q == 1)
                queued++;
            else
                already++;
        }
        bfs_progress_update(&bar, (int64_t)i + 1, 0);
    }
    bfs_progress_finish(&bar);
    printf("catchup of %s in %s: %zu dataset files, %lld checks at %d destination%s\n", glob, repo, c.n,
           (long long)checked, tcfg.n_dests, tcfg.n_dests == 1 ? "" : "s");
    printf("  present      %lld\n", (long long)present);
    printf("  queued       %lld%s\n", (long long)queued, resized ? " (some for a size that differs)" : "");
    printf("  queued before %lld (a job already exists)\n", (long long)already);
    if (c.skipped_uri || c.skipped_date)
        printf("  skipped      %lld outside the datastore root, %lld outside the dates\n", (long long)c.skipped_uri,
               (long long)c.skipped_date);
    if (errors)
        printf("  errors       %lld (objects that could not be checked or queued; see the log)\n", (long long)errors);
    status = errors ? 1 : 0;
out:
    for (size_t i = 0; i < c.n; i++)
        free(c.items[i].id), free(c.items[i].run), free(c.items[i].dtype), free(c.items[i].path);
    free(c.items);
    bfs_http_free(c.http);
    bfs_registry_close(reg);
    bfs_transfer_config_free(&tcfg);
    bfs_config_free(&cfg);
    free(msg);
    return status;
}
