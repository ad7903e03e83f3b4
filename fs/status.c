/*
 * status.c - a mount's status file (see status.h).
 */
#include "status.h"

#include "clock.h"
#include "log.h"
#include "strutil.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TAG "status"
#define MAX_SKIPPED 64
#define MAX_REPLICAS 65 /* BFS_FAULTS_MAX and "(other replicas)" */

struct bfs_status {
    int dfd;              /* the status directory; -1 while there is none */
    int lfd;              /* mount.PID.lock in it, flock'ed; -1 with dfd */
    char *dir;            /* its path, for messages */
    char name[64], lock[64];
    char *mountpoint, *repo;
    bfs_fetcher *f;
    bool direct_io;
    time_t started;
    pthread_t thread;
    pthread_mutex_t lock_m;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    bool stop;
    bool again;          /* a piece was attached: write at once, not at the next period */
    _Atomic(bfs_tree *) tree; /* bfs_status_watch_nodes */
    _Atomic(bfs_ingest *) ing; /* bfs_status_watch_ingest */
    _Atomic(bfs_transfer *) transfer; /* bfs_status_watch_transfer */
    _Atomic(bfs_retention_daemon *) retention; /* bfs_status_watch_retention */
};

int bfs_status_candidates(char *out[2])
{
    int n = 0;
    const char *run = getenv("XDG_RUNTIME_DIR");
    struct stat st;
    if (run && run[0] == '/' && stat(run, &st) == 0 && S_ISDIR(st.st_mode) && (out[n] = bfs_asprintf("%s/butlerfs", run)))
        n++;
    if ((out[n] = bfs_asprintf("/tmp/butlerfs-%u", (unsigned)getuid())))
        n++;
    return n;
}

int bfs_status_open_dir(const char *dir, bool create, const char **why)
{
    if (create && mkdir(dir, 0700) != 0 && errno != EEXIST) {
        int e = errno;
        *why = "it cannot be created";
        return -e;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        *why = e == ENOENT ? "it does not exist" : e == ELOOP || e == ENOTDIR ? "it is not a directory" : "it cannot be opened";
        return -e;
    }
    /* /tmp is shared: only a directory of ours, closed to others */
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_uid != getuid() || (st.st_mode & 077)) {
        close(fd);
        *why = "it belongs to another user or others may enter it";
        return -EPERM;
    }
    return fd;
}

/* Open the first usable status directory (made when missing): its fd, its
 * path in *path (malloc'd); or -errno with the last path tried and *why. */
static int open_first(char **path, const char **why)
{
    char *cand[2];
    int n = bfs_status_candidates(cand), fd = -ENOMEM;
    *path = NULL;
    *why = "out of memory";
    for (int i = 0; i < n; i++) {
        if (fd < 0) {
            free(*path);
            *path = cand[i];
            fd = bfs_status_open_dir(cand[i], true, why);
        } else {
            free(cand[i]);
        }
    }
    return fd;
}

int bfs_status_check(char **dir, const char **why)
{
    int fd = open_first(dir, why);
    if (fd < 0)
        return fd;
    close(fd);
    return 0;
}

/* Lock file names of pid. */
static void lock_name(long pid, char *out, size_t outsz) { snprintf(out, outsz, "mount.%ld.lock", pid); }

bool bfs_status_daemon_alive(int dfd, long pid)
{
    char name[64];
    lock_name(pid, name, sizeof name);
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return false; /* every daemon makes its lock before its first status */
    bool held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd);
    return held;
}

/* Close s's directory and lock. */
static void detach(bfs_status *s)
{
    if (s->lfd >= 0)
        close(s->lfd);
    if (s->dfd >= 0)
        close(s->dfd);
    s->lfd = s->dfd = -1;
}

/* (Re)open the status directory and take the lock in it: 0 or -errno. */
static int attach(bfs_status *s, const char **why)
{
    detach(s);
    free(s->dir);
    int dfd = open_first(&s->dir, why);
    if (dfd < 0)
        return dfd;
    int lfd = openat(dfd, s->lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (lfd < 0 || flock(lfd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        *why = "its lock file cannot be made or locked";
        if (lfd >= 0)
            close(lfd);
        close(dfd);
        return -e;
    }
    s->dfd = dfd;
    s->lfd = lfd;
    return 0;
}

/* A string from data (a replica or host name) for the status file:
 * escaped as log lines are, so it is valid UTF-8 (jansson refuses anything
 * else) and shows no control sequence when printed. */
static json_t *data_string(const char *v)
{
    char esc[1024];
    bfs_log_escape(esc, sizeof esc, v, strlen(v));
    return json_string(esc);
}

/* The per-replica request and fault counts (bfs_fetcher_faults). */
static json_t *replicas_json(bfs_fetcher *f)
{
    bfs_replica_faults *rf = calloc(MAX_REPLICAS, sizeof *rf);
    int n = rf ? bfs_fetcher_faults(f, rf, MAX_REPLICAS) : 0;
    json_t *list = json_array();
    for (int i = 0; i < n && i < MAX_REPLICAS && list; i++) {
        json_t *kinds = json_object();
        for (int k = 0; k < BFS_FAULT_N && kinds; k++)
            json_object_set_new(kinds, bfs_fault_name((bfs_fault)k), json_integer((json_int_t)rf[i].faults[k]));
        json_array_append_new(list, json_pack("{s:o, s:I, s:I, s:I, s:o, s:f}", "name", data_string(rf[i].name),
                                              "requests", (json_int_t)rf[i].requests,
                                              "retries", (json_int_t)rf[i].retries,
                                              "not_found", (json_int_t)rf[i].not_found, "faults", kinds,
                                              "recent_failure_rate", rf[i].recent_failure_rate));
    }
    free(rf);
    return list;
}

/* Have the writer write the file again now: the first one, written as
 * the thread starts, may predate a piece attached since (a command such
 * as `butlerfs queue` would take an -o rw mount for read-only for up to a
 * period). */
static void write_again(bfs_status *s)
{
    pthread_mutex_lock(&s->lock_m);
    s->again = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock_m);
}

void bfs_status_watch_nodes(bfs_status *s, bfs_tree *t)
{
    if (!s)
        return;
    atomic_store(&s->tree, t);
    write_again(s);
}

void bfs_status_watch_ingest(bfs_status *s, bfs_ingest *ing)
{
    if (!s)
        return;
    atomic_store(&s->ing, ing);
    write_again(s);
}

void bfs_status_watch_transfer(bfs_status *s, bfs_transfer *t)
{
    if (!s)
        return;
    atomic_store(&s->transfer, t);
    write_again(s);
}

void bfs_status_watch_retention(bfs_status *s, bfs_retention_daemon *r)
{
    if (!s)
        return;
    atomic_store(&s->retention, r);
    write_again(s);
}

/* The "retention" object: the mount's periodic local retention. */
static json_t *retention_json(bfs_status *s)
{
    bfs_retention_daemon *r = atomic_load(&s->retention);
    if (!r)
        return json_null();
    bfs_retention_status st;
    bfs_retention_get_status(r, &st);
    return json_pack("{s:I, s:I, s:I, s:I, s:f, s:s?}", "passes", (json_int_t)st.passes, "removed",
                     (json_int_t)st.removed, "bytes_removed", (json_int_t)st.bytes_removed, "last_removed",
                     (json_int_t)st.last_removed, "last_pass", st.last_pass, "last_error",
                     st.last_error[0] ? st.last_error : NULL);
}

/* The "transfer" object: the queue to the Data Backbone (transfer.h). */
static json_t *transfer_json(bfs_status *s)
{
    bfs_transfer *t = atomic_load(&s->transfer);
    if (!t)
        return json_null();
    bfs_queue_stats st;
    bfs_transfer_stats(t, &st);
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:f}", "pending", (json_int_t)st.pending, "in_flight",
                     (json_int_t)st.inflight, "done", (json_int_t)st.done, "parked", (json_int_t)st.parked,
                     "bytes_pending", (json_int_t)st.bytes_pending, "oldest_pending_s", st.oldest_pending_s);
}

/* The "ingest" object: outcomes of files written into an -o rw mount. */
static json_t *ingest_json(bfs_status *s)
{
    bfs_ingest *ing = atomic_load(&s->ing);
    if (!ing)
        return json_null();
    bfs_ingest_stats st;
    bfs_ingest_stats_get(ing, &st);
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s}", "ingested", (json_int_t)st.ingested, "duplicates",
                     (json_int_t)st.duplicates, "quarantined", (json_int_t)st.quarantined, "refused",
                     (json_int_t)st.refused, "in_flight",
                     (json_int_t)st.in_flight, "recovered", (json_int_t)st.recovered, "staging_failed",
                     (json_int_t)st.staging_failed, "quarantine_dir", bfs_ingest_quarantine_dir(ing));
}

/* The "nodes" object: the node table against its cap (fs/tree.h). */
static json_t *nodes_json(bfs_status *s)
{
    bfs_tree *t = atomic_load(&s->tree);
    if (!t)
        return json_null();
    bfs_node_stats ns;
    bfs_tree_node_stats(t, &ns);
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "live", (json_int_t)ns.nodes,
                     "max_nodes", (json_int_t)ns.max_nodes, "trims", (json_int_t)ns.trims,
                     "victims", (json_int_t)ns.victims, "invalidations", (json_int_t)ns.invalidations,
                     "inval_failed", (json_int_t)ns.inval_failed);
}

static json_t *status_json(bfs_status *s)
{
    bfs_fetch_stats st;
    bfs_fetcher_stats(s->f, &st);
    bfs_replica_state skipped[MAX_SKIPPED];
    int n = bfs_fetcher_skipped(s->f, skipped, MAX_SKIPPED);
    json_t *list = json_array();
    for (int i = 0; i < n && i < MAX_SKIPPED && list; i++)
        json_array_append_new(list, json_pack("{s:o, s:s, s:f, s:s}", "name", data_string(skipped[i].name), "kind",
                                              skipped[i].host ? "host" : "replica", "retry_in_s",
                                              (double)skipped[i].retry_in_ms / 1000.0, "why", skipped[i].why));
    json_t *fetch = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                              "bytes_from_servers", (json_int_t)st.bytes_fetched,
                              "blocks_fetched", (json_int_t)st.blocks_fetched,
                              "cache_hits", (json_int_t)st.cache_hits,
                              "cache_misses", (json_int_t)st.cache_misses,
                              "failovers", (json_int_t)st.failovers,
                              "failed_reads", (json_int_t)st.errors,
                              "memory_used", (json_int_t)st.memory_used,
                              "memory_budget", (json_int_t)st.memory_budget);
    json_t *replicas = replicas_json(s->f);
    if (!list || !fetch || !replicas) {
        json_decref(list);
        json_decref(fetch);
        json_decref(replicas);
        return NULL;
    }
    return json_pack("{s:i, s:I, s:s, s:s, s:I, s:I, s:b, s:o, s:o, s:o}", "version", 1,
                     "pid", (json_int_t)getpid(), "mountpoint", s->mountpoint, "repository", s->repo,
                     "started", (json_int_t)s->started, "updated", (json_int_t)time(NULL),
                     "direct_io", s->direct_io, "fetch", fetch, "skipped", list, "replicas", replicas);
}

/* Write j as s's status file: a new file of a random name, renamed over
 * the old one.  0 or -errno. */
static int write_file(bfs_status *s, json_t *j)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != sizeof r)
        r = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&r;
    char tmp[96];
    snprintf(tmp, sizeof tmp, ".mount.%ld.%016llx.tmp", (long)getpid(), (unsigned long long)r);
    int fd = openat(s->dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int rc = json_dumpfd(j, fd, JSON_INDENT(2)) != 0 ? -EIO : 0;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && renameat(s->dfd, tmp, s->dfd, s->name) != 0)
        rc = -errno;
    if (rc != 0)
        unlinkat(s->dfd, tmp, 0);
    return rc;
}

/* Write the status file now, making the directory again when it was
 * removed: 0 or -errno with *why. */
static int status_write(bfs_status *s, const char **why)
{
    struct stat st;
    *why = NULL;
    if ((s->dfd < 0 || fstat(s->dfd, &st) != 0 || st.st_nlink == 0) && attach(s, why) != 0)
        return -ENOENT;
    json_t *j = status_json(s);
    if (!j)
        return -ENOMEM;
    json_object_set_new(j, "nodes", nodes_json(s));
    json_object_set_new(j, "ingest", ingest_json(s));
    json_object_set_new(j, "transfer", transfer_json(s));
    json_object_set_new(j, "retention", retention_json(s));
    int rc = write_file(s, j);
    if (rc == -ENOENT && attach(s, why) == 0) /* removed just now */
        rc = write_file(s, j);
    json_decref(j);
    return rc;
}

static void *status_main(void *arg)
{
    bfs_status *s = arg;
    bool failing = false;
    pthread_mutex_lock(&s->lock_m);
    while (!s->stop) {
        s->again = false;
        pthread_mutex_unlock(&s->lock_m);
        const char *why;
        int rc = status_write(s, &why);
        if (rc != 0 && !failing)
            bfs_warn(TAG, "cannot write the status file in %s: %s (butlerfs status will not list this mount)",
                     s->dir ? s->dir : "the status directory", why ? why : strerror(-rc));
        else if (rc == 0 && failing)
            bfs_note(TAG, "the status file is written again, in %s", s->dir);
        failing = rc != 0;
        pthread_mutex_lock(&s->lock_m);
        struct timespec ts = bfs_mono_at(bfs_mono_ms() + BFS_STATUS_PERIOD_S * 1000);
        while (!s->stop && !s->again && pthread_cond_timedwait(&s->cond, &s->lock_m, &ts) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&s->lock_m);
    return NULL;
}

static void status_free(bfs_status *s)
{
    detach(s);
    free(s->dir);
    free(s->mountpoint);
    free(s->repo);
    free(s);
}

bfs_status *bfs_status_start(const char *mountpoint, const char *repo, bfs_fetcher *f, bool direct_io)
{
    bfs_status *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    *s = (bfs_status){.dfd = -1, .lfd = -1, .mountpoint = strdup(mountpoint), .repo = strdup(repo), .f = f,
                      .direct_io = direct_io, .started = time(NULL)};
    snprintf(s->name, sizeof s->name, "mount.%ld.json", (long)getpid());
    lock_name(getpid(), s->lock, sizeof s->lock);
    const char *why;
    if (!s->mountpoint || !s->repo) {
        status_free(s);
        return NULL;
    }
    if (attach(s, &why) != 0) {
        bfs_warn(TAG, "no status file for this mount (butlerfs status will not list it): %s: %s",
                 s->dir ? s->dir : "the status directory", why);
        status_free(s);
        return NULL;
    }
    bfs_cond_init_mono(&s->cond);
    pthread_mutex_init(&s->lock_m, NULL);
    /* the thread inherits a mask with every signal blocked: they are the
     * FUSE loop's to handle */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&s->thread, NULL, status_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock_m);
        unlinkat(s->dfd, s->lock, 0);
        status_free(s);
        return NULL;
    }
    return s;
}

void bfs_status_stop(bfs_status *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock_m);
    s->stop = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock_m);
    pthread_join(s->thread, NULL);
    if (s->dfd >= 0) {
        unlinkat(s->dfd, s->name, 0);
        unlinkat(s->dfd, s->lock, 0);
    }
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock_m);
    status_free(s);
}
