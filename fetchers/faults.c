/*
 * faults.c - per-replica fault counters and the failure-rate warning (see
 * faults_i.h).
 */
#include "faults_i.h"

#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TAG "fetch"
#define OTHERS "(other replicas)"

struct entry {
    bfs_replica_faults c;     /* the totals (recent_failure_rate unused here) */
    uint64_t win_req, win_fail; /* the recent window, halved every BFS_FAULTS_WINDOW_MS */
    int64_t win_start_ms;
    int64_t warned_ms;        /* the last warning; 0: none yet */
};

struct bfs_faults {
    double warn_rate;
    pthread_mutex_t lock;     /* below */
    struct entry e[BFS_FAULTS_MAX + 1]; /* the last one: OTHERS */
    int n;
};

static const char *const fault_names[BFS_FAULT_N] = {
    [BFS_FAULT_HTTP_5XX] = "http_5xx", [BFS_FAULT_HTTP_4XX] = "http_4xx", [BFS_FAULT_RESET] = "reset",
    [BFS_FAULT_TIMEOUT] = "timeout",   [BFS_FAULT_SHORT_BODY] = "short_body",
    [BFS_FAULT_REFUSED] = "refused",   [BFS_FAULT_CHECKSUM] = "checksum",  [BFS_FAULT_OTHER] = "other",
};

const char *bfs_fault_name(bfs_fault kind)
{
    return kind >= 0 && kind < BFS_FAULT_N ? fault_names[kind] : "?";
}

bfs_faults *bfs_faults_new(double warn_rate)
{
    bfs_faults *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->warn_rate = warn_rate;
    pthread_mutex_init(&t->lock, NULL);
    return t;
}

void bfs_faults_free(bfs_faults *t)
{
    if (!t)
        return;
    pthread_mutex_destroy(&t->lock);
    free(t);
}

int bfs_fault_of(int err)
{
    switch (err) {
    case 0: case -ENOENT: case -ESTALE: case -ENOMEM: return -1;
    case -EIO: return BFS_FAULT_HTTP_5XX;
    case -EACCES: case -ERANGE: return BFS_FAULT_HTTP_4XX;
    case -ECONNRESET: return BFS_FAULT_RESET;
    case -ETIMEDOUT: return BFS_FAULT_TIMEOUT;
    case -EPROTO: return BFS_FAULT_SHORT_BODY;
    case -ECONNREFUSED: case -EHOSTDOWN: case -EHOSTUNREACH: return BFS_FAULT_REFUSED;
    default: return BFS_FAULT_OTHER;
    }
}

/* replica's entry, made when new.  t->lock held. */
static struct entry *entry_locked(bfs_faults *t, const char *replica)
{
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->e[i].c.name, replica))
            return &t->e[i];
    struct entry *e = t->n < BFS_FAULTS_MAX ? &t->e[t->n++] : &t->e[BFS_FAULTS_MAX];
    if (!e->c.name[0])
        snprintf(e->c.name, sizeof e->c.name, "%s", e == &t->e[BFS_FAULTS_MAX] ? OTHERS : replica);
    return e;
}

/* The window's counts as of now: halved once per whole window passed. */
static void decay(uint64_t *req, uint64_t *fail, int64_t start, int64_t now, int64_t *new_start)
{
    int64_t passed = now - start;
    if (passed < BFS_FAULTS_WINDOW_MS) {
        *new_start = start;
        return;
    }
    int64_t k = passed / BFS_FAULTS_WINDOW_MS;
    *req = k >= 64 ? 0 : *req >> k;
    *fail = k >= 64 ? 0 : *fail >> k;
    *new_start = start + k * BFS_FAULTS_WINDOW_MS;
}

/* What a warning about e says; filled under t->lock, logged after. */
struct warning {
    char name[256];
    uint64_t req, fail;
    char kinds[256];
};

/* Count one result (fault kind, or -1) in e and decide on a warning.
 * t->lock held. */
static bool count_locked(bfs_faults *t, struct entry *e, int kind, bool request, int64_t now,
                         struct warning *w)
{
    if (e->win_start_ms == 0)
        e->win_start_ms = now;
    decay(&e->win_req, &e->win_fail, e->win_start_ms, now, &e->win_start_ms);
    if (request)
        e->win_req++;
    if (kind >= 0) {
        e->c.faults[kind]++;
        if (e->win_fail < e->win_req)
            e->win_fail++;
    }
    if (kind < 0 || t->warn_rate <= 0 || e->win_req < BFS_FAULTS_MIN_REQUESTS ||
        (double)e->win_fail <= t->warn_rate * (double)e->win_req ||
        (e->warned_ms != 0 && now - e->warned_ms < BFS_FAULTS_WARN_EVERY_MS))
        return false;
    e->warned_ms = now;
    snprintf(w->name, sizeof w->name, "%s", e->c.name);
    w->req = e->win_req;
    w->fail = e->win_fail;
    size_t len = 0;
    w->kinds[0] = '\0';
    for (int k = 0; k < BFS_FAULT_N && len < sizeof w->kinds; k++)
        if (e->c.faults[k])
            len += (size_t)snprintf(w->kinds + len, sizeof w->kinds - len, "%s%llu %s", len ? ", " : "",
                                    (unsigned long long)e->c.faults[k], fault_names[k]);
    return true;
}

static void log_warning(const bfs_faults *t, const struct warning *w)
{
    bfs_warn(TAG, "replica %s is degrading: %llu of its last %llu requests failed (%.0f%%, above "
                  "fetch.warn_failure_rate %g); since start: %s; reads are retried and fail over, "
                  "but this server needs attention",
             w->name, (unsigned long long)w->fail, (unsigned long long)w->req,
             100.0 * (double)w->fail / (double)w->req, t->warn_rate, w->kinds);
}

bool bfs_faults_request(bfs_faults *t, const char *replica, int err, bool retry, int64_t now_ms)
{
    if (!t)
        return false;
    int kind = bfs_fault_of(err);
    struct warning w;
    pthread_mutex_lock(&t->lock);
    struct entry *e = entry_locked(t, replica);
    e->c.requests++;
    if (retry)
        e->c.retries++;
    if (err == -ENOENT)
        e->c.not_found++;
    bool warned = count_locked(t, e, kind, true, now_ms, &w);
    pthread_mutex_unlock(&t->lock);
    if (warned)
        log_warning(t, &w);
    return warned;
}

bool bfs_faults_add(bfs_faults *t, const char *replica, bfs_fault kind, int64_t now_ms)
{
    if (!t || kind < 0 || kind >= BFS_FAULT_N)
        return false;
    struct warning w;
    pthread_mutex_lock(&t->lock);
    bool warned = count_locked(t, entry_locked(t, replica), (int)kind, false, now_ms, &w);
    pthread_mutex_unlock(&t->lock);
    if (warned)
        log_warning(t, &w);
    return warned;
}

int bfs_faults_list(bfs_faults *t, bfs_replica_faults *out, int max, int64_t now_ms)
{
    if (!t)
        return 0;
    int n = 0;
    pthread_mutex_lock(&t->lock);
    for (int i = 0; i <= BFS_FAULTS_MAX; i++) {
        const struct entry *e = &t->e[i];
        if (i >= t->n && (i < BFS_FAULTS_MAX || !e->c.name[0]))
            continue;
        if (n < max) {
            uint64_t req = e->win_req, fail = e->win_fail;
            int64_t start;
            decay(&req, &fail, e->win_start_ms, now_ms, &start);
            out[n] = e->c;
            out[n].recent_failure_rate = req ? (double)fail / (double)req : 0.0;
        }
        n++;
    }
    pthread_mutex_unlock(&t->lock);
    return n;
}
