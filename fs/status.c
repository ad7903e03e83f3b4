/*
 * status.c - a mount's status file (see status.h).
 */
#include "status.h"

#include "log.h"
#include "strutil.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TAG "status"
#define MAX_SKIPPED 64

struct bfs_status {
    char *path, *tmp;
    char *mountpoint, *repo;
    bfs_fetcher *f;
    bool direct_io;
    time_t started;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    bool stop;
};

char *bfs_status_dir(bool create, const char **why)
{
    const char *run = getenv("XDG_RUNTIME_DIR");
    char *dir = run && run[0] == '/' ? bfs_asprintf("%s/butlerfs", run)
                                     : bfs_asprintf("/tmp/butlerfs-%u", (unsigned)getuid());
    *why = NULL;
    if (!dir) {
        *why = "out of memory";
        return NULL;
    }
    if (create && mkdir(dir, 0700) != 0 && errno != EEXIST) {
        *why = "it cannot be created";
    } else {
        /* /tmp is shared: only a real directory of ours, closed to others */
        struct stat st;
        if (lstat(dir, &st) != 0)
            *why = "it does not exist";
        else if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 077))
            *why = "it is not a directory of this user's closed to others";
    }
    if (*why) {
        free(dir);
        return NULL;
    }
    return dir;
}

static json_t *status_json(bfs_status *s)
{
    bfs_fetch_stats st;
    bfs_fetcher_stats(s->f, &st);
    bfs_replica_state skipped[MAX_SKIPPED];
    int n = bfs_fetcher_skipped(s->f, skipped, MAX_SKIPPED);
    json_t *list = json_array();
    for (int i = 0; i < n && i < MAX_SKIPPED && list; i++)
        json_array_append_new(list, json_pack("{s:s, s:s, s:f, s:s}", "name", skipped[i].name, "kind",
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
    if (!list || !fetch) {
        json_decref(list);
        json_decref(fetch);
        return NULL;
    }
    return json_pack("{s:i, s:I, s:s, s:s, s:I, s:I, s:b, s:o, s:o}", "version", 1,
                     "pid", (json_int_t)getpid(), "mountpoint", s->mountpoint, "repository", s->repo,
                     "started", (json_int_t)s->started, "updated", (json_int_t)time(NULL),
                     "direct_io", s->direct_io, "fetch", fetch, "skipped", list);
}

/* Write the status file now: 0 or -errno. */
static int status_write(bfs_status *s)
{
    json_t *j = status_json(s);
    if (!j)
        return -ENOMEM;
    int fd = open(s->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    int rc = fd < 0 ? -errno : 0;
    if (rc == 0 && json_dumpfd(j, fd, JSON_INDENT(2)) != 0)
        rc = -EIO;
    if (fd >= 0 && close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(s->tmp, s->path) != 0)
        rc = -errno;
    if (rc != 0)
        unlink(s->tmp);
    json_decref(j);
    return rc;
}

static void *status_main(void *arg)
{
    bfs_status *s = arg;
    bool logged = false;
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        pthread_mutex_unlock(&s->lock);
        int rc = status_write(s);
        if (rc != 0 && !logged)
            bfs_warn(TAG, "cannot write the status file %s: %s", s->path, strerror(-rc));
        logged = logged || rc != 0;
        pthread_mutex_lock(&s->lock);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += BFS_STATUS_PERIOD_S;
        while (!s->stop && pthread_cond_timedwait(&s->cond, &s->lock, &ts) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static void status_free(bfs_status *s)
{
    free(s->path);
    free(s->tmp);
    free(s->mountpoint);
    free(s->repo);
    free(s);
}

bfs_status *bfs_status_start(const char *mountpoint, const char *repo, bfs_fetcher *f, bool direct_io)
{
    const char *why;
    char *dir = bfs_status_dir(true, &why);
    if (!dir) {
        bfs_warn(TAG, "no status file for this mount (butlerfs status will not list it): the status "
                      "directory is unusable: %s", why);
        return NULL;
    }
    bfs_status *s = calloc(1, sizeof *s);
    if (s) {
        *s = (bfs_status){.path = bfs_asprintf("%s/mount.%ld.json", dir, (long)getpid()),
                          .tmp = bfs_asprintf("%s/.mount.%ld.json.tmp", dir, (long)getpid()),
                          .mountpoint = strdup(mountpoint), .repo = strdup(repo), .f = f,
                          .direct_io = direct_io, .started = time(NULL)};
    }
    free(dir);
    if (!s || !s->path || !s->tmp || !s->mountpoint || !s->repo) {
        if (s)
            status_free(s);
        return NULL;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->lock, NULL);
    if (pthread_create(&s->thread, NULL, status_main, s) != 0) {
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
        status_free(s);
        return NULL;
    }
    return s;
}

void bfs_status_stop(bfs_status *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    unlink(s->path);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    status_free(s);
}
