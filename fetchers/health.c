/*
 * health.c - the health table of replicas and hosts, and backoff (see
 * health.h).
 *
 * The table is a small array searched in order (a few dozen keys at most):
 * h->lock guards it, and nothing else is done under it.
 */
#include "health.h"

#include "http.h"
#include "strutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    bfs_health_kind kind;
    char key[BFS_HEALTH_KEY_MAX]; /* normalized: no user:password@ */
    bool failed;                  /* marked failed last (down, or on trial) */
    int64_t down_until_ms;        /* when failed: skipped until then */
    int err;                      /* when failed: the failure that marked it */
};

struct bfs_health {
    pthread_mutex_t lock; /* below */
    int n, cap;
    struct entry e[];
};

bfs_health *bfs_health_new(int capacity)
{
    if (capacity < 1)
        capacity = 1;
    bfs_health *h = calloc(1, sizeof *h + (size_t)capacity * sizeof h->e[0]);
    if (!h)
        return NULL;
    h->cap = capacity;
    pthread_mutex_init(&h->lock, NULL);
    return h;
}

void bfs_health_free(bfs_health *h)
{
    if (!h)
        return;
    pthread_mutex_destroy(&h->lock);
    free(h);
}

/* ---- keys --------------------------------------------------------------------- */

void bfs_url_redact(const char *url, char *out, size_t outsz)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    size_t n = strcspn(p, "/");
    const char *at = NULL; /* the last '@' of the authority: a password may hold one */
    for (const char *q = p; q < p + n; q++)
        if (*q == '@')
            at = q;
    if (at)
        snprintf(out, outsz, "%.*s%s", (int)(p - url), url, at + 1);
    else
        snprintf(out, outsz, "%s", url);
}

/* "scheme://host[:port]" of url: where a connection goes (no user:password@).
 * s3:// gives "s3://": the endpoint is not in the URI (each profile may have
 * its own), so no host is judged for it; false then. */
static bool host_of(const char *url, char *out, size_t outsz)
{
    char u[1024];
    bfs_url_redact(url, u, sizeof u);
    const char *p = strstr(u, "://");
    p = p ? p + 3 : u;
    bool s3 = bfs_startswith(u, "s3://");
    size_t n = s3 ? 0 : strcspn(p, "/");
    snprintf(out, outsz, "%.*s%.*s", (int)(p - u), u, (int)n, p);
    return !s3;
}

bool bfs_health_key(bfs_health_kind kind, const char *url, char *out, size_t outsz)
{
    if (kind == BFS_HEALTH_HOST)
        return host_of(url, out, outsz);
    bfs_url_redact(url, out, outsz);
    return true;
}

bool bfs_health_host_failure(int err)
{
    return err == -ECONNREFUSED || err == -EHOSTDOWN || err == -EHOSTUNREACH;
}

const char *bfs_health_why(int err)
{
    switch (err) {
    case -ETIMEDOUT: return "timed out or too slow";
    case -ECONNREFUSED: return "cannot connect";
    case -ECONNRESET: return "connections break";
    case -EPROTO: return "broken replies";
    case -EIO: return "server errors";
    default: return bfs_http_strerror(err);
    }
}

/* ---- the table ---------------------------------------------------------------- */

/* The entry of (kind, key), or NULL.  h->lock held. */
static struct entry *find_locked(bfs_health *h, bfs_health_kind kind, const char *key)
{
    for (int i = 0; i < h->n; i++)
        if (h->e[i].kind == kind && !strcmp(h->e[i].key, key))
            return &h->e[i];
    return NULL;
}

/* An entry for a newly failing key: a free one, else that of a key
 * answering again, else that of the one longest out of its pause; NULL
 * when every entry is down at now.  h->lock held. */
static struct entry *take_locked(bfs_health *h, int64_t now)
{
    if (h->n < h->cap)
        return &h->e[h->n++];
    struct entry *best = NULL;
    for (int i = 0; i < h->n; i++) {
        struct entry *e = &h->e[i];
        if (!e->failed)
            return e;
        if (e->down_until_ms <= now && (!best || e->down_until_ms < best->down_until_ms))
            best = e;
    }
    return best;
}

bfs_health_change bfs_health_mark(bfs_health *h, bfs_health_kind kind, const char *url, int err,
                                  int64_t pause_ms, int64_t now_ms)
{
    char key[BFS_HEALTH_KEY_MAX];
    if (!bfs_health_key(kind, url, key, sizeof key))
        return BFS_HEALTH_SAME;
    bool ok = err == 0;
    pthread_mutex_lock(&h->lock);
    struct entry *e = find_locked(h, kind, key);
    if (!e && !ok && (e = take_locked(h, now_ms)) != NULL) {
        *e = (struct entry){.kind = kind};
        snprintf(e->key, sizeof e->key, "%s", key);
    }
    bfs_health_change change = BFS_HEALTH_SAME;
    if (e) { /* else answering and never failed, or every entry is down */
        if (ok && e->failed)
            change = BFS_HEALTH_RECOVERED;
        else if (!ok && !e->failed)
            change = BFS_HEALTH_FAILING;
        e->failed = !ok;
        e->down_until_ms = ok ? 0 : now_ms + pause_ms;
        e->err = err;
    }
    pthread_mutex_unlock(&h->lock);
    return change;
}

bool bfs_health_down(bfs_health *h, bfs_health_kind kind, const char *url, int64_t now_ms)
{
    char key[BFS_HEALTH_KEY_MAX];
    if (!bfs_health_key(kind, url, key, sizeof key))
        return false;
    pthread_mutex_lock(&h->lock);
    const struct entry *e = find_locked(h, kind, key);
    bool down = e && e->failed && e->down_until_ms > now_ms;
    pthread_mutex_unlock(&h->lock);
    return down;
}

int bfs_health_list(bfs_health *h, bfs_replica_state *out, int max, int64_t now_ms)
{
    int n = 0;
    pthread_mutex_lock(&h->lock);
    for (int i = 0; i < h->n; i++) {
        const struct entry *e = &h->e[i];
        if (!e->failed || e->down_until_ms <= now_ms)
            continue;
        if (n < max) {
            bfs_replica_state *st = &out[n];
            snprintf(st->name, sizeof st->name, "%s", e->key);
            st->host = e->kind == BFS_HEALTH_HOST;
            st->retry_in_ms = e->down_until_ms - now_ms;
            snprintf(st->why, sizeof st->why, "%s", bfs_health_why(e->err));
        }
        n++;
    }
    pthread_mutex_unlock(&h->lock);
    return n;
}

/* ---- backoff ------------------------------------------------------------------ */

/* Uniform in [0, n] from rand_r (62 random bits: any n a wait can be). */
static int64_t uniform(int64_t n, unsigned *seed)
{
    uint64_t r = (uint64_t)rand_r(seed) << 31 ^ (uint64_t)rand_r(seed);
    return (int64_t)(r % ((uint64_t)n + 1));
}

int64_t bfs_backoff_ms(int64_t base_ms, int64_t max_ms, int attempt, bfs_jitter jitter, unsigned *seed)
{
    int shift = attempt < 0 ? 0 : attempt > 20 ? 20 : attempt;
    int64_t cap = base_ms > 0 ? base_ms : 0;
    if (cap > max_ms >> shift) /* base * 2^shift > max, without overflow */
        cap = max_ms;
    else
        cap <<= shift;
    if (cap <= 0)
        return 0;
    if (jitter == BFS_JITTER_SPREAD)
        return cap / 2 + uniform(cap, seed);
    return uniform(cap, seed);
}
