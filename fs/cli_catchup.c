/*
 * cli_catchup.c - `butlerfs catchup REPO --collection GLOB [--since DATE]
 * [--until DATE] [--check-sizes] [--config FILE]`: compare what the
 * registry holds with what the transfer destinations hold, and queue what
 * is missing (docs/transfer.md, "Catch-up").
 *
 * The dataset files of the matching RUN collections (and ingest dates) are
 * grouped by destination and by the directory their object is in, and each
 * directory is listed once (fetchers/listing.h: WebDAV PROPFIND Depth: 1,
 * S3 ListObjectsV2 pages): a file whose name the listing lacks is missing
 * (a directory that is not there: all of it) and queued; with --check-sizes,
 * an object of another size is queued too (the upload replaces it).  A
 * WebDAV server that refuses PROPFIND (405, 501) is checked as before, one
 * HEAD per object, and catchup says so.  A job that exists already, in any
 * state, is not queued twice, so catch-up may run while a mount is active
 * (its daemon picks the new jobs up within 10 s) and may be run again.
 * Files outside the datastore root (absolute URIs) are skipped.
 */
#include "cli.h"

#include "config.h"
#include "http.h"
#include "listing.h"
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
    "Each directory of objects is listed once (WebDAV PROPFIND, S3 ListObjectsV2); a\n"
    "WebDAV server that refuses PROPFIND is asked with one HEAD per object.  Exit\n"
    "status: 0 done (whether or not anything was missing); 1 an error (some objects\n"
    "could not be checked or queued); 2 a usage error.\n";

struct catchup {
    const char *repo;
    const bfs_transfer_config *tcfg;
    bfs_http *http;
    bool check_sizes;
    int64_t since_ns, until_ns;
    /* one check per file and destination whose rules match it */
    struct check {
        size_t item;
        int dest;
        char *dir, *name; /* bfs_list_split_url of its object's URL */
    } *checks;
    size_t nchecks, checks_cap;
    /* the members of the directory being compared, sorted by name */
    struct member {
        char *name;
        int64_t size;
    } *members;
    size_t nmembers, members_cap;
    bool *head_only;      /* per destination: it refused PROPFIND */
    /* counts */
    int64_t checked, present, missing, resized, queued, already, errors, dirs, requests;
    char **reports;       /* size mismatches, printed after the progress bar */
    size_t nreports, reports_cap;
    /* the files to check, collected first (the registry is not held open
     * across the network requests) */
    struct item {
        char *id, *run, *dtype, *path;
        int64_t size;
        char *instrument; /* looked up when a destination has an instruments rule; NULL: none */
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
    *it = (struct item){strdup(f->dataset_id), strdup(f->run), strdup(f->dataset_type), strdup(f->path), f->size,
                        NULL};
    if (!it->id || !it->run || !it->dtype || !it->path) {
        free(it->id), free(it->run), free(it->dtype), free(it->path);
        return -ENOMEM;
    }
    c->n++;
    return 0;
}

static int check_cmp(const void *a, const void *b)
{
    const struct check *x = a, *y = b;
    int r = x->dest - y->dest;
    if (!r)
        r = strcmp(x->dir, y->dir);
    return r ? r : strcmp(x->name, y->name);
}

static int member_cmp(const void *a, const void *b)
{
    return strcmp(((const struct member *)a)->name, ((const struct member *)b)->name);
}

static int add_member(void *ctx, const bfs_list_entry *e)
{
    struct catchup *c = ctx;
    if (e->is_dir)
        return 0;
    if (bfs_grow((void **)&c->members, &c->members_cap, c->nmembers + 1, sizeof *c->members) < 0)
        return -ENOMEM;
    if (!(c->members[c->nmembers].name = strdup(e->name)))
        return -ENOMEM;
    c->members[c->nmembers++].size = e->size;
    return 0;
}

static void clear_members(struct catchup *c)
{
    for (size_t i = 0; i < c->nmembers; i++)
        free(c->members[i].name);
    c->nmembers = 0;
}

/* The verdict on one check: err 0 and the object's size (-1 unknown),
 * -ENOENT missing, another negative errno: it could not be checked.  Queue
 * what needs it and count. */
static void verdict(struct catchup *c, const struct check *k, int err, int64_t remote)
{
    const struct item *it = &c->items[k->item];
    const bfs_transfer_dest *dest = &c->tcfg->dests[k->dest];
    c->checked++;
    if (err < 0 && err != -ENOENT) {
        c->errors++;
        return;
    }
    bool missing = err == -ENOENT;
    bool differs = !missing && remote >= 0 && it->size >= 0 && remote != it->size;
    if (differs) {
        c->resized++;
        char *line = bfs_asprintf("  size differs: %s at %s is %lld bytes, the registry says %lld%s", it->path,
                                  dest->name, (long long)remote, (long long)it->size,
                                  c->check_sizes ? " (queued)" : "");
        if (line && bfs_grow((void **)&c->reports, &c->reports_cap, c->nreports + 1, sizeof *c->reports) == 0)
            c->reports[c->nreports++] = line;
        else
            free(line);
    }
    if (!missing && !(differs && c->check_sizes)) {
        c->present++;
        return;
    }
    c->missing += missing;
    bfs_transfer_item ti = {it->id, it->run, it->dtype, it->path, it->size, it->instrument};
    int q = bfs_queue_add(c->repo, c->tcfg, k->dest, &ti);
    if (q < 0) {
        fprintf(stderr, "butlerfs: catchup: cannot queue %s for %s: %s\n", it->path, dest->name, strerror(-q));
        c->errors++;
    } else if (q == 1) {
        c->queued++;
    } else {
        c->already++;
    }
}

/* One HEAD per object (a server without PROPFIND). */
static void check_by_head(struct catchup *c, const struct check *k)
{
    const struct item *it = &c->items[k->item];
    bfs_transfer_item ti = {it->id, it->run, it->dtype, it->path, it->size, it->instrument};
    char *url = NULL;
    bfs_object obj = {.size = -1};
    int r = bfs_transfer_object_url(&c->tcfg->dests[k->dest], &ti, &url, NULL);
    if (r == 0)
        r = bfs_http_stat_within(c->http, url, &obj, (long)c->tcfg->request_timeout_ms);
    free(url);
    c->requests++;
    verdict(c, k, r, obj.size);
}

/* The checks [a, b), all of one destination and directory: list it once. */
static void check_dir(struct catchup *c, const struct check *a, const struct check *b)
{
    int d = a->dest;
    if (c->head_only[d]) {
        for (const struct check *k = a; k < b; k++)
            check_by_head(c, k);
        return;
    }
    bfs_list_stats st = {0};
    char *msg = NULL;
    clear_members(c);
    int r = bfs_list_dir(c->http, a->dir, add_member, c, (long)c->tcfg->request_timeout_ms, 0, &st, &msg);
    c->requests += st.requests;
    c->dirs++;
    if (r == -EOPNOTSUPP && !bfs_startswith(a->dir, "s3://")) {
        fprintf(stderr, "butlerfs: catchup: destination %s: %s; checking each object with HEAD instead\n",
                c->tcfg->dests[d].name, msg ? msg : "the server cannot list directories");
        free(msg);
        c->dirs--;
        c->head_only[d] = true;
        for (const struct check *k = a; k < b; k++)
            check_by_head(c, k);
        return;
    }
    if (r < 0 && r != -ENOENT) {
        fprintf(stderr, "butlerfs: catchup: destination %s: %s\n", c->tcfg->dests[d].name,
                msg ? msg : bfs_http_strerror(r));
        free(msg);
        for (const struct check *k = a; k < b; k++)
            verdict(c, k, r, -1);
        return;
    }
    free(msg);
    if (r == 0 && c->nmembers)
        qsort(c->members, c->nmembers, sizeof *c->members, member_cmp);
    for (const struct check *k = a; k < b; k++) {
        struct member key = {k->name, 0};
        const struct member *m =
            r == 0 && c->nmembers ? bsearch(&key, c->members, c->nmembers, sizeof *c->members, member_cmp)
                                  : NULL;
        verdict(c, k, m ? 0 : -ENOENT, m ? m->size : -1);
    }
}

/* A check for every file and destination whose rules match it. */
static int plan(struct catchup *c)
{
    for (size_t i = 0; i < c->n; i++) {
        const struct item *it = &c->items[i];
        for (int d = 0; d < c->tcfg->n_dests; d++) {
            if (!bfs_transfer_matches(&c->tcfg->dests[d], it->run, it->dtype, it->instrument))
                continue;
            if (bfs_grow((void **)&c->checks, &c->checks_cap, c->nchecks + 1, sizeof *c->checks) < 0)
                return -ENOMEM;
            struct check *k = &c->checks[c->nchecks];
            *k = (struct check){.item = i, .dest = d};
            bfs_transfer_item ti = {it->id, it->run, it->dtype, it->path, it->size, it->instrument};
            char *url = NULL, *why = NULL;
            int r = bfs_transfer_object_url(&c->tcfg->dests[d], &ti, &url, &why);
            if (r == 0)
                r = bfs_list_split_url(url, &k->dir, &k->name);
            free(url);
            if (r == -ENOMEM) {
                free(why);
                return r;
            }
            if (r < 0) {
                fprintf(stderr, "butlerfs: catchup: %s has no object name at %s%s%s; not checked\n", it->path,
                        c->tcfg->dests[d].name, why ? ": " : "", why ? why : "");
                free(why);
                c->errors++;
                continue;
            }
            c->nchecks++;
        }
    }
    if (c->nchecks)
        qsort(c->checks, c->nchecks, sizeof *c->checks, check_cmp);
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
    bfs_transfer_config tcfg;
    struct catchup c = {.repo = repo, .tcfg = &tcfg, .check_sizes = check_sizes};
    if ((since && bfs_translate_iso_ns(since, true, &c.since_ns) < 0) ||
        (until && bfs_translate_iso_ns(until, true, &c.until_ns) < 0)) {
        fprintf(stderr, "butlerfs: catchup: --since and --until take a date, YYYY-MM-DD (UTC)\n");
        return 2;
    }
    bfs_config cfg;
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
    /* each dataset's instrument, after the walk (one statement at a time),
     * only when a destination's rules name instruments */
    for (size_t i = 0; ret == 0 && bfs_transfer_uses_instruments(&tcfg) && i < c.n; i++) {
        char inst[BFS_MAX_VALUE];
        ret = bfs_registry_dataset_instrument(reg, c.items[i].id, inst, sizeof inst);
        if (ret == 0 && inst[0] && !(c.items[i].instrument = strdup(inst)))
            ret = -ENOMEM;
    }
    bfs_registry_close(reg);
    reg = NULL;
    if (ret < 0) {
        fprintf(stderr, "butlerfs: catchup: cannot list the datasets of %s: %s\n", glob, strerror(-ret));
        goto out;
    }
    if (!(c.head_only = calloc((size_t)tcfg.n_dests, sizeof *c.head_only)) || plan(&c) < 0) {
        fprintf(stderr, "butlerfs: catchup: out of memory\n");
        goto out;
    }
    bfs_progress bar;
    bfs_progress_start(&bar, stderr, "catchup", (int64_t)c.nchecks);
    for (size_t a = 0, b; a < c.nchecks; a = b) {
        for (b = a + 1; b < c.nchecks && c.checks[b].dest == c.checks[a].dest &&
                        !strcmp(c.checks[b].dir, c.checks[a].dir); b++)
            ;
        check_dir(&c, &c.checks[a], &c.checks[b]);
        bfs_progress_update(&bar, (int64_t)b, 0);
    }
    bfs_progress_finish(&bar);
    for (size_t i = 0; i < c.nreports; i++)
        puts(c.reports[i]);
    printf("checked %lld files in %lld directories (%lld requests): %lld missing, queued %lld, "
           "%lld size mismatches\n", (long long)c.checked, (long long)c.dirs, (long long)c.requests,
           (long long)c.missing, (long long)c.queued, (long long)c.resized);
    printf("catchup of %s in %s: %zu dataset files, %lld checks at %d destination%s\n", glob, repo, c.n,
           (long long)c.checked, tcfg.n_dests, tcfg.n_dests == 1 ? "" : "s");
    printf("  present      %lld\n", (long long)c.present);
    printf("  queued       %lld%s\n", (long long)c.queued,
           c.resized && c.check_sizes && c.queued ? " (some for a size that differs)" : "");
    printf("  queued before %lld (a job already exists)\n", (long long)c.already);
    if (c.resized && !c.check_sizes)
        printf("  size differs %lld (counted present; --check-sizes queues them)\n", (long long)c.resized);
    if (c.skipped_uri || c.skipped_date)
        printf("  skipped      %lld outside the datastore root, %lld outside the dates\n", (long long)c.skipped_uri,
               (long long)c.skipped_date);
    if (c.errors)
        printf("  errors       %lld (objects that could not be checked or queued; see above)\n",
               (long long)c.errors);
    status = c.errors ? 1 : 0;
out:
    for (size_t i = 0; i < c.n; i++)
        free(c.items[i].id), free(c.items[i].run), free(c.items[i].dtype), free(c.items[i].path),
            free(c.items[i].instrument);
    free(c.items);
    for (size_t i = 0; i < c.nchecks; i++)
        free(c.checks[i].dir), free(c.checks[i].name);
    free(c.checks);
    clear_members(&c);
    free(c.members);
    free(c.head_only);
    for (size_t i = 0; i < c.nreports; i++)
        free(c.reports[i]);
    free(c.reports);
    bfs_http_free(c.http);
    bfs_registry_close(reg);
    bfs_transfer_config_free(&tcfg);
    bfs_config_free(&cfg);
    free(msg);
    return status;
}
