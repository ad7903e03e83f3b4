/*
 * cli_retention.c - `butlerfs retention REPO [--dry-run] [--json] [--config
 * FILE]`: local retention (writers/retention.h; docs/transfer.md, "Local
 * retention"): remove from REPO the datasets past their rule's age whose
 * transfers are all done, or with --dry-run list them.
 */
#include "cli.h"

#include "config.h"
#include "retention.h"
#include "strutil.h"
#include "transfer.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char retention_help[] =
    "Usage: butlerfs retention REPO [--dry-run] [--json] [--config FILE]\n"
    "\n"
    "Local retention (the OODS role): remove from the repository REPO, registry\n"
    "records and files, the datasets older than the age of the first transfer:\n"
    "retention: rule matching them, once every transfer destination they go to has\n"
    "a done job for them.  A dataset whose transfer is pending, in flight or parked,\n"
    "or that no destination takes, is kept.  Safe while a mount of REPO runs; an\n"
    "-o rw mount with transfer: retention_interval: runs the same by itself.\n"
    "Shows a progress bar and a summary.\n"
    "\n"
    "Options:\n"
    "  --dry-run      list what would go; change nothing\n"
    "  --json         print one JSON object (the datasets and the counts)\n"
    "  --config FILE  the butlerfs configuration with the transfer: section\n"
    "                 (default: ~/.config/butlerfs/config.yaml when present)\n"
    "  -h, --help     show this text\n"
    "\n"
    "Exit status: 0 done (whether or not anything went); 1 an error (some datasets\n"
    "could not be removed, or the run could not start); 2 a usage error.\n";

struct out {
    bool json, dry;
    json_t *list;
};

static void show(void *ctx, const bfs_retention_dataset *d)
{
    struct out *o = ctx;
    char when[32], size[32];
    time_t t = (time_t)d->ingest_unix;
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
    if (o->json) {
        json_t *paths = json_array();
        for (int i = 0; paths && i < d->npaths; i++)
            json_array_append_new(paths, json_string(d->paths[i]));
        json_array_append_new(o->list, json_pack("{s:s, s:s, s:s, s:o*, s:I, s:s, s:b, s:i}", "id", d->dataset_id,
                                                 "run", d->run, "dataset_type", d->dataset_type, "paths", paths,
                                                 "bytes", (json_int_t)d->bytes, "ingested", when, "removed",
                                                 d->removed, "files_removed", d->files_removed));
        return;
    }
    bfs_format_bytes((double)d->bytes, size, sizeof size);
    for (int i = 0; i < d->npaths; i++)
        printf("%s %s  (%s, ingested %s, %s)\n", o->dry ? "would remove" : d->removed ? "removed" : "kept (failed)",
               d->paths[i], d->dataset_id, when, size);
}

int bfs_cmd_retention(int argc, char **argv)
{
    const char *repo = NULL, *config_path = NULL;
    struct out o = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(retention_help, stdout);
            return 0;
        } else if (!strcmp(a, "--dry-run")) {
            o.dry = true;
        } else if (!strcmp(a, "--json")) {
            o.json = true;
        } else if (i + 1 < argc && !strcmp(a, "--config")) {
            config_path = argv[++i];
        } else if (!repo && a[0] != '-') {
            repo = a;
        } else {
            fprintf(stderr, "butlerfs: retention: unexpected argument '%s'\n\n%s", a, retention_help);
            return 2;
        }
    }
    if (!repo) {
        fprintf(stderr, "butlerfs: retention needs a repository\n\n%s", retention_help);
        return 2;
    }
    bfs_config cfg;
    bfs_transfer_config tcfg;
    bfs_transfer_config_defaults(&tcfg);
    char *msg = NULL;
    if (bfs_config_load(config_path, &cfg, &msg) < 0) {
        fprintf(stderr, "butlerfs: %s\n", msg ? msg : "cannot read the configuration");
        free(msg);
        return 1;
    }
    int status = 1;
    if (!cfg.path || bfs_transfer_config_load(cfg.path, &tcfg, &msg) < 0 || !tcfg.n_retention) {
        fprintf(stderr, "butlerfs: retention: %s\n",
                msg ? msg : "the configuration has no transfer: retention: rules (--config FILE)");
        goto out;
    }
    o.list = json_array();
    bfs_retention_opts opts = {.dry_run = o.dry, .progress = stderr};
    bfs_retention_stats st;
    int ret = bfs_retention_run(repo, &tcfg, &opts, show, &o, &st, &msg);
    if (ret < 0) {
        fprintf(stderr, "butlerfs: retention: %s\n", msg ? msg : "failed");
        goto out;
    }
    if (o.json) {
        json_t *j = json_pack(
            "{s:b, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}}", "dry_run", o.dry,
            "datasets", json_incref(o.list), "summary", "examined", (json_int_t)st.examined, "eligible",
            (json_int_t)st.eligible, "removed", (json_int_t)st.removed, "bytes_removed", (json_int_t)st.bytes_removed,
            "files_removed", (json_int_t)st.files_removed, "files_shared", (json_int_t)st.files_shared, "too_young",
            (json_int_t)st.too_young, "not_transferred", (json_int_t)st.not_transferred, "parked",
            (json_int_t)st.parked, "no_destination", (json_int_t)st.no_destination, "outside_root",
            (json_int_t)st.outside_root, "recovered", (json_int_t)st.recovered, "journal_pending",
            (json_int_t)st.journal_pending, "errors", (json_int_t)st.errors);
        bfs_print_json(j);
    } else {
        char size[32];
        bfs_format_bytes((double)(o.dry ? 0 : st.bytes_removed), size, sizeof size);
        printf("retention in %s%s: %lld datasets under a rule\n", repo, o.dry ? " (dry run)" : "",
               (long long)st.examined);
        if (o.dry)
            printf("  would remove    %lld\n", (long long)st.eligible);
        else
            printf("  removed         %lld (%lld files, %s)\n", (long long)st.removed, (long long)st.files_removed,
                   size);
        printf("  too young       %lld\n", (long long)st.too_young);
        printf("  not transferred %lld (%lld with a parked job)\n", (long long)st.not_transferred,
               (long long)st.parked);
        printf("  no destination  %lld (kept: nothing would hold a copy)\n", (long long)st.no_destination);
        if (st.outside_root)
            printf("  outside root    %lld (kept: a file is not under the datastore root)\n",
                   (long long)st.outside_root);
        if (st.files_shared)
            printf("  shared files    %lld (kept: another dataset's record names them)\n", (long long)st.files_shared);
        if (st.recovered || st.journal_pending)
            printf("  interrupted run %lld datasets %s\n", (long long)(st.recovered + st.journal_pending),
                   st.recovered ? "finished" : "left to finish (the next run does)");
        if (st.errors)
            printf("  errors          %lld (see the log)\n", (long long)st.errors);
    }
    status = st.errors ? 1 : 0;
out:
    json_decref(o.list);
    bfs_transfer_config_free(&tcfg);
    bfs_config_free(&cfg);
    free(msg);
    return status;
}
