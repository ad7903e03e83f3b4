/*
 * cli_queue.c - `butlerfs queue [--json] [REPO]`, `queue retry [REPO]`,
 * `queue drop-parked [REPO]`: the transfer queue of a repository
 * (writers/transfer.h), read from its store, with or without a running
 * mount.  The drain rate is the jobs done in the last hour per time since
 * the first of them (a minute at least); the time to empty is the pending
 * jobs at that rate.
 */
#include "cli.h"

#include "strutil.h"
#include "transfer.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char queue_help[] =
    "Usage: butlerfs queue [--json] [REPO]\n"
    "       butlerfs queue retry [REPO]\n"
    "       butlerfs queue drop-parked [REPO]\n"
    "\n"
    "The transfer queue of the repository REPO: the uploads of ingested files to the\n"
    "destinations of the configuration's transfer: section (docs/transfer.md).  It\n"
    "is read from REPO/.butlerfs/queue, so it works with or without a running mount.\n"
    "Without REPO: the repository of this user's one running writable mount.\n"
    "\n"
    "  (no command)   pending, in flight, parked (each with its last error) and done\n"
    "                 jobs, the age of the oldest pending job, the drain rate over\n"
    "                 the last hour and the time to empty at that rate\n"
    "  retry          put every parked job back in the queue, with its attempts\n"
    "                 reset (a running mount picks them up within 10 s)\n"
    "  drop-parked    delete every parked job: its file will not be uploaded\n"
    "\n"
    "Options:\n"
    "  --json         print one JSON object (counts and the parked jobs)\n"
    "  -h, --help     show this text\n"
    "\n"
    "Exit status: 0 done; 1 the repository has no queue, or it cannot be read;\n"
    "2 a usage error.\n";

struct listing {
    json_t *parked;   /* the parked jobs */
};

static int list_job(void *ctx, const bfs_queue_job *j)
{
    struct listing *l = ctx;
    if (strcmp(j->state, "parked"))
        return 0;
    json_array_append_new(l->parked, json_pack("{s:s, s:s, s:s, s:i, s:I, s:s?}", "job", j->name, "destination",
                                               j->destination, "path", j->rel, "attempts", j->attempts, "size",
                                               (json_int_t)j->size, "last_error", j->last_error));
    return 0;
}

static void duration(double s, char *buf, size_t n)
{
    if (s < 120)
        snprintf(buf, n, "%.0f s", s);
    else if (s < 7200)
        snprintf(buf, n, "%.0f min", s / 60);
    else if (s < 172800)
        snprintf(buf, n, "%.1f h", s / 3600);
    else
        snprintf(buf, n, "%.1f days", s / 86400);
}

int bfs_cmd_queue(int argc, char **argv)
{
    bool json = false;
    const char *cmd = NULL, *repo = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(queue_help, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (!cmd && !repo && (!strcmp(argv[i], "retry") || !strcmp(argv[i], "drop-parked"))) {
            cmd = argv[i];
        } else if (!repo && argv[i][0] != '-') {
            repo = argv[i];
        } else {
            fprintf(stderr, "butlerfs: queue: unexpected argument '%s'\n\n%s", argv[i], queue_help);
            return 2;
        }
    }
    char repo_buf[PATH_MAX];
    if (!repo) {
        json_t *m = bfs_status_rw_mount(NULL, "queue");
        if (!m) {
            fprintf(stderr, "\n%s", queue_help);
            return 2;
        }
        snprintf(repo_buf, sizeof repo_buf, "%s", json_string_value(json_object_get(m, "repository")));
        json_decref(m);
        repo = repo_buf;
    }
    if (cmd) {
        int64_t n = 0;
        bool retry = !strcmp(cmd, "retry");
        int ret = retry ? bfs_queue_retry_parked(repo, &n) : bfs_queue_drop_parked(repo, &n);
        if (ret < 0) {
            fprintf(stderr, "butlerfs: queue %s: %s\n", cmd, strerror(-ret));
            return 1;
        }
        printf("%lld parked job%s %s\n", (long long)n, n == 1 ? "" : "s", retry ? "back in the queue" : "dropped");
        return 0;
    }
    struct listing l = {.parked = json_array()};
    bfs_queue_stats st;
    int ret = bfs_queue_read(repo, &st, list_job, &l);
    if (ret < 0) {
        json_decref(l.parked);
        if (ret == -ENOENT)
            fprintf(stderr, "butlerfs: %s has no transfer queue (no -o rw mount with a transfer: section has "
                            "run on it)\n", repo);
        else
            fprintf(stderr, "butlerfs: cannot read the transfer queue of %s: %s\n", repo, strerror(-ret));
        return 1;
    }
    /* jobs per hour, over the time since the first job done in the last hour (a minute at least) */
    double window = st.done_window_s > 60 ? st.done_window_s : 60;
    double rate_h = st.done_last_hour * 3600.0 / window;
    double empty_s = rate_h > 0 ? st.pending / rate_h * 3600 : -1;
    if (json) {
        json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:o, s:o}", "repository", repo,
                              "store_bytes", (json_int_t)st.store_bytes, "disk_free", (json_int_t)st.disk_free, "pending",
                              (json_int_t)st.pending, "inflight", (json_int_t)st.inflight, "parked",
                              (json_int_t)st.parked, "done", (json_int_t)st.done, "bytes_pending",
                              (json_int_t)st.bytes_pending, "oldest_pending_s", st.oldest_pending_s,
                              "drain_per_hour", rate_h, "seconds_to_empty",
                              empty_s >= 0 ? json_real(empty_s) : json_null(), "parked_jobs", l.parked);
        return bfs_print_json(o);
    }
    char bytes[32], age[32], eta[32];
    bfs_format_bytes((double)st.bytes_pending, bytes, sizeof bytes);
    duration(st.oldest_pending_s, age, sizeof age);
    duration(empty_s, eta, sizeof eta);
    printf("transfer queue of %s\n", repo);
    printf("  pending      %lld (%s)%s%s\n", (long long)st.pending, bytes, st.pending ? ", the oldest waiting " : "",
           st.pending ? age : "");
    printf("  in flight    %lld\n", (long long)st.inflight);
    printf("  parked       %lld%s\n", (long long)st.parked, st.parked ? " (butlerfs queue retry REPO to try again)" : "");
    printf("  done         %lld (%.0f in the last hour; drain rate %.0f/h)\n", (long long)st.done, st.done_last_hour,
           rate_h);
    if (st.pending)
        printf("  to empty     %s\n", empty_s >= 0 ? eta : "unknown (nothing done in the last hour)");
    char store[32], free_b[32];
    bfs_format_bytes((double)st.store_bytes, store, sizeof store);
    bfs_format_bytes((double)st.disk_free, free_b, sizeof free_b);
    printf("  store        %s of job files; %s free for the queue and the spool\n", store,
           st.disk_free >= 0 ? free_b : "unknown");
    size_t i;
    json_t *e;
    json_array_foreach(l.parked, i, e) {
        if (i == 20) {
            printf("  ... and %zu more parked\n", json_array_size(l.parked) - 20);
            break;
        }
        printf("  parked: %s -> %s after %lld attempts: %s\n", json_string_value(json_object_get(e, "path")),
               json_string_value(json_object_get(e, "destination")),
               (long long)json_integer_value(json_object_get(e, "attempts")),
               json_string_value(json_object_get(e, "last_error")) ? json_string_value(json_object_get(e, "last_error")) : "?");
    }
    json_decref(l.parked);
    return 0;
}
