/*
 * cli_status.c - `butlerfs status [--json] [MOUNTPOINT...]`: what each
 * running mount of this user is doing, from the status files the daemons
 * write (status.h).
 */
#include "cli.h"
#include "log.h"
#include "status.h"
#include "strutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STR_(x) #x
#define STR(x) STR_(x)

static const char status_help[] =
    "Usage: butlerfs status [--json] [MOUNTPOINT...]\n"
    "\n"
    "Show what the running butlerfs mounts of this user are doing: the repository,\n"
    "bytes read from servers, cache hits and misses, failovers, failed reads, the\n"
    "memory in use, the replicas or hosts being skipped after failures, with why\n"
    "and for how long, and the requests, retries and faults (by kind) of each\n"
    "replica.  With MOUNTPOINTs, only those mounts.\n"
    "\n"
    "Each daemon rewrites its status every " STR(BFS_STATUS_PERIOD_S) " seconds in $XDG_RUNTIME_DIR/butlerfs\n"
    "(else /tmp/butlerfs-UID).  A status not updated for 10 seconds is flagged: the\n"
    "daemon may be hung.  The status of a daemon that died is removed, with a note.\n"
    "\n"
    "Options:\n"
    "  --json      print the status objects as one JSON array (fields: butlerfs(1))\n"
    "  -h, --help  show this text\n"
    "\n"
    "Exit status: 0 done (also when nothing is mounted); 1 a MOUNTPOINT given has no\n"
    "running butlerfs mount; 2 a usage error.\n";

#define STALE_S 10

static void format_duration(int64_t s, char *out, size_t outsz)
{
    if (s < 0)
        s = 0;
    if (s >= 86400)
        snprintf(out, outsz, "%lldd%02lldh", (long long)(s / 86400), (long long)(s % 86400 / 3600));
    else if (s >= 3600)
        snprintf(out, outsz, "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
    else if (s >= 60)
        snprintf(out, outsz, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
    else
        snprintf(out, outsz, "%llds", (long long)s);
}

static json_int_t int_of(json_t *o, const char *k) { return json_integer_value(json_object_get(o, k)); }
static const char *str_of(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "?";
}

/* The string k of o for a terminal (into buf): a status file is data, and
 * its strings reach the terminal escaped as log lines are. */
static const char *shown(json_t *o, const char *k, char *buf, size_t bufsz)
{
    const char *v = str_of(o, k);
    bfs_log_escape(buf, bufsz, v, strlen(v));
    return buf;
}

/* One line per replica that was sent requests: how many, the retries, and
 * the faults by kind. */
static void print_replicas(json_t *reps)
{
    size_t i;
    json_t *e;
    json_array_foreach(reps, i, e) {
        char name[1024], faults[512] = "";
        size_t len = 0;
        const char *kind;
        json_t *count;
        json_object_foreach(json_object_get(e, "faults"), kind, count) {
            if (json_integer_value(count) > 0 && len < sizeof faults) {
                char k[64];
                bfs_log_escape(k, sizeof k, kind, strlen(kind));
                len += (size_t)snprintf(faults + len, sizeof faults - len, "%s%lld %s", len ? ", " : "",
                                        (long long)json_integer_value(count), k);
            }
        }
        double recent = json_number_value(json_object_get(e, "recent_failure_rate"));
        printf("  replica      %s: %lld requests, %lld retries, %lld not found; faults: %s", shown(e, "name", name, sizeof name),
               (long long)int_of(e, "requests"), (long long)int_of(e, "retries"), (long long)int_of(e, "not_found"),
               len ? faults : "none");
        if (recent > 0)
            printf(" (%.1f%% of recent requests failed)", 100.0 * recent);
        putchar('\n');
    }
}

static void print_human(json_t *j)
{
    time_t now = time(NULL);
    char up[32], age[32], b1[32], b2[32], b3[32], mnt[PATH_MAX], repo[PATH_MAX];
    format_duration(now - (time_t)int_of(j, "started"), up, sizeof up);
    printf("%s: repository %s (pid %lld, up %s%s)\n", shown(j, "mountpoint", mnt, sizeof mnt),
           shown(j, "repository", repo, sizeof repo),
           (long long)int_of(j, "pid"), up, json_is_true(json_object_get(j, "direct_io")) ? ", direct_io" : "");
    int64_t late = now - (time_t)int_of(j, "updated");
    if (late >= STALE_S) {
        format_duration(late, age, sizeof age);
        printf("  warning      not updated for %s: the daemon may be hung\n", age);
    }
    json_t *n = json_object_get(j, "nodes");
    if (json_is_object(n))
        printf("  nodes        %lld known to the kernel (cap %lld); %lld trimming passes dropped %lld\n",
               (long long)int_of(n, "live"), (long long)int_of(n, "max_nodes"), (long long)int_of(n, "trims"),
               (long long)int_of(n, "invalidations"));
    json_t *in = json_object_get(j, "ingest");
    if (json_is_object(in))
        printf("  ingest       %lld ingested, %lld duplicates, %lld quarantined, %lld refused at create, %lld in progress; "
               "%lld finished after a restart; %lld not fully staged (tried again while mounted, and at the next mount)\n",
               (long long)int_of(in, "ingested"), (long long)int_of(in, "duplicates"),
               (long long)int_of(in, "quarantined"), (long long)int_of(in, "refused"), (long long)int_of(in, "in_flight"),
               (long long)int_of(in, "recovered"), (long long)int_of(in, "staging_failed"));
    if (json_is_object(in) && int_of(in, "quarantined") > 0)
        printf("  quarantine   %s (butlerfs quarantine lists the files and why)\n", str_of(in, "quarantine_dir"));
    json_t *tq = json_object_get(j, "transfer");
    if (json_is_object(tq))
        printf("  transfer     %lld pending (oldest %.0f s), %lld in flight, %lld done, %lld parked\n",
               (long long)int_of(tq, "pending"), json_number_value(json_object_get(tq, "oldest_pending_s")),
               (long long)int_of(tq, "in_flight"), (long long)int_of(tq, "done"), (long long)int_of(tq, "parked"));
    json_t *rt = json_object_get(j, "retention");
    if (json_is_object(rt)) {
        const char *err = json_string_value(json_object_get(rt, "last_error"));
        double last = json_number_value(json_object_get(rt, "last_pass"));
        char ago[80] = "";
        if (last > 0)
            snprintf(ago, sizeof ago, ", the last %.0f s ago (it removed %lld)", difftime(time(NULL), (time_t)last),
                     (long long)int_of(rt, "last_removed"));
        printf("  retention    %lld datasets removed in %lld passes%s%s%s\n", (long long)int_of(rt, "removed"),
               (long long)int_of(rt, "passes"), ago, err ? "; last pass: " : "", err ? err : "");
    }
    json_t *f = json_object_get(j, "fetch");
    json_int_t hits = int_of(f, "cache_hits"), misses = int_of(f, "cache_misses");
    json_t *sk = json_object_get(j, "skipped");
    if (hits + misses == 0 && json_array_size(sk) == 0) {
        printf("  remote data  none read yet (a local datastore needs none)\n");
        return;
    }
    bfs_format_bytes((double)int_of(f, "bytes_from_servers"), b1, sizeof b1);
    printf("  servers      %s (%lld B) received, %lld blocks fetched\n", b1,
           (long long)int_of(f, "bytes_from_servers"), (long long)int_of(f, "blocks_fetched"));
    printf("  cache        %lld hits, %lld misses (%.1f%% hits)\n", (long long)hits, (long long)misses,
           hits + misses > 0 ? 100.0 * (double)hits / (double)(hits + misses) : 0.0);
    bfs_format_bytes((double)int_of(f, "memory_used"), b2, sizeof b2);
    bfs_format_bytes((double)int_of(f, "memory_budget"), b3, sizeof b3);
    printf("  reads        %lld failovers, %lld failed; block memory %s of %s\n",
           (long long)int_of(f, "failovers"), (long long)int_of(f, "failed_reads"), b2, b3);
    size_t i;
    json_t *e;
    if (json_array_size(sk) == 0)
        printf("  skipping     nothing: every replica is in use\n");
    json_array_foreach(sk, i, e) {
        char kind[64], name[1024], why[256];
        double left = json_number_value(json_object_get(e, "retry_in_s"));
        printf("  skipping     %s %s for %.0f s more (%s)\n", shown(e, "kind", kind, sizeof kind),
               shown(e, "name", name, sizeof name), left, shown(e, "why", why, sizeof why));
    }
    print_replicas(json_object_get(j, "replicas"));
}

/* The status file name in dfd of a live daemon: its status (an object of
 * version 1) or NULL, with a warning for a file that is not one. */
static json_t *load_status(int dfd, const char *dir, const char *name)
{
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    json_error_t err;
    json_t *j = fd >= 0 ? json_loadfd(fd, 0, &err) : NULL;
    if (fd >= 0)
        close(fd);
    if (j && json_is_object(j) && json_integer_value(json_object_get(j, "version")) == 1 &&
        json_is_string(json_object_get(j, "mountpoint")))
        return j;
    fprintf(stderr, "butlerfs: status: %s/%s is not a status file of this version of butlerfs; "
                    "ignored\n", dir, name);
    json_decref(j);
    return NULL;
}

static bool names_mount(const char *given, json_t *j);

/* Add the status of each live daemon in dir to all (those named by
 * wanted[], when any: found[] marks the ones seen); remove what dead
 * daemons left (saying so for a status: its mount is dead too). */
static void collect(const char *dir, json_t *all, char **wanted, int nwanted, bool *found)
{
    const char *why;
    int dfd = bfs_status_open_dir(dir, false, &why);
    if (dfd < 0) {
        if (dfd != -ENOENT)
            fprintf(stderr, "butlerfs: status: not reading %s: %s\n", dir, why);
        return;
    }
    DIR *d = fdopendir(dup(dfd));
    struct dirent *de;
    while (d && (de = readdir(d))) {
        long pid;
        int end = 0;
        const char *nm = de->d_name;
        if (sscanf(nm, ".mount.%ld.%*16[0-9a-f].tmp%n", &pid, &end) == 1 && end && !nm[end]) {
            if (!bfs_status_daemon_alive(dfd, pid))
                unlinkat(dfd, nm, 0); /* a write a dead daemon did not finish */
            continue;
        }
        if (sscanf(nm, "mount.%ld.lock%n", &pid, &end) == 1 && end && !nm[end]) {
            char json[64];
            snprintf(json, sizeof json, "mount.%ld.json", pid);
            if (faccessat(dfd, json, F_OK, AT_SYMLINK_NOFOLLOW) != 0 && !bfs_status_daemon_alive(dfd, pid))
                unlinkat(dfd, nm, 0);
            continue;
        }
        if (sscanf(nm, "mount.%ld.json%n", &pid, &end) != 1 || !end || nm[end])
            continue;
        json_t *j = load_status(dfd, dir, nm);
        if (!bfs_status_daemon_alive(dfd, pid)) {
            /* killed (kill -9, a crash): its mount is dead too */
            char mbuf[PATH_MAX];
            const char *m = j ? shown(j, "mountpoint", mbuf, sizeof mbuf) : NULL;
            if (m)
                fprintf(stderr, "butlerfs: status: the daemon of %s (pid %ld) is gone; if the mount is "
                                "still there, detach it: fusermount3 -uz %s\n", m, pid, m);
            char lock[64];
            snprintf(lock, sizeof lock, "mount.%ld.lock", pid);
            unlinkat(dfd, nm, 0);
            unlinkat(dfd, lock, 0);
            json_decref(j);
            continue;
        }
        if (!j)
            continue;
        bool keep = nwanted == 0;
        for (int w = 0; w < nwanted; w++)
            if (names_mount(wanted[w], j))
                keep = found[w] = true;
        if (keep)
            json_array_append_new(all, j);
        else
            json_decref(j);
    }
    if (d)
        closedir(d);
    close(dfd);
}

json_t *bfs_status_running(char **wanted, int nwanted, bool *found)
{
    json_t *all = json_array();
    char *dirs[2];
    int ndirs = bfs_status_candidates(dirs);
    for (int k = 0; k < ndirs; k++) {
        if (all)
            collect(dirs[k], all, wanted, nwanted, found);
        free(dirs[k]);
    }
    return all;
}

int bfs_print_json(json_t *o)
{
    char *text = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
    json_decref(o);
    if (!text)
        return 1;
    puts(text);
    free(text);
    return 0;
}

json_t *bfs_status_rw_mount(const char *repo, const char *cmd)
{
    char want[PATH_MAX];
    if (repo && !realpath(repo, want))
        snprintf(want, sizeof want, "%s", repo);
    json_t *all = bfs_status_running(NULL, 0, NULL);
    json_t *found = NULL;
    int n = 0;
    size_t i;
    json_t *m;
    json_array_foreach(all, i, m) {
        if (!json_is_object(json_object_get(m, "ingest")))
            continue; /* read-only */
        if (repo && strcmp(str_of(m, "repository"), want))
            continue;
        if (n++ == 0)
            found = json_incref(m);
    }
    if (!repo && n != 1) {
        fprintf(stderr, n ? "butlerfs: %s: %d writable mounts are running; name the repository:\n"
                          : "butlerfs: %s: no writable butlerfs mount is running; name the repository\n",
                cmd, n);
        json_array_foreach(all, i, m) {
            if (json_is_object(json_object_get(m, "ingest")))
                fprintf(stderr, "  %s (mounted on %s)\n", str_of(m, "repository"), str_of(m, "mountpoint"));
        }
        json_decref(found);
        found = NULL;
    }
    json_decref(all);
    return found;
}

/* Is MOUNTPOINT (as given) the mount j describes? */
static bool names_mount(const char *given, json_t *j)
{
    char abs[PATH_MAX];
    const char *m = realpath(given, abs) ? abs : given;
    return !strcmp(m, str_of(j, "mountpoint"));
}

int bfs_cmd_status(int argc, char **argv)
{
    bool as_json = false;
    int nwanted = 0;
    char **wanted = calloc((size_t)argc, sizeof *wanted);
    if (!wanted)
        return 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(status_help, stdout);
            free(wanted);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            as_json = true;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "butlerfs: status: unknown option '%s'\n\n%s", argv[i], status_help);
            free(wanted);
            return 2;
        } else {
            wanted[nwanted++] = argv[i];
        }
    }
    bool *found = calloc((size_t)nwanted + 1, sizeof *found);
    json_t *all = found ? bfs_status_running(wanted, nwanted, found) : NULL;
    int status = 0;
    for (int w = 0; w < nwanted; w++)
        if (found && !found[w]) {
            fprintf(stderr, "butlerfs: status: no running butlerfs mount on %s\n", wanted[w]);
            status = 1;
        }
    if (as_json) {
        bfs_print_json(json_incref(all));
    } else if (json_array_size(all) == 0 && nwanted == 0) {
        printf("no butlerfs mounts of this user are running\n");
    } else {
        size_t i;
        json_t *j;
        json_array_foreach(all, i, j) {
            if (i)
                putchar('\n');
            print_human(j);
        }
    }
    json_decref(all);
    free(found);
    free(wanted);
    return status;
}
