/* webhook.c - see webhook.h. */
#include "webhook.h"

#include "clock.h"
#include "log.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TAG "webhook"

struct bfs_webhook {
    char *url;
    bfs_http *http;
    long timeout_ms;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char **ring;          /* max slots; [head, head + n) hold lines */
    size_t max, head, n;
    bool stop;
    pthread_t thread;
    bfs_webhook_stats st;
};


static void *sender(void *arg)
{
    bfs_webhook *w = arg;
    double backoff = 0, next_try = 0;
    pthread_mutex_lock(&w->lock);
    while (!w->stop) {
        double now = bfs_mono_s();
        if (!w->n || now < next_try) {
            struct timespec ts = bfs_real_in(!w->n ? 3600 : next_try - now);
            pthread_cond_timedwait(&w->cond, &w->lock, &ts);
            continue;
        }
        /* the oldest line out of the ring while it is sent */
        char *line = w->ring[w->head];
        w->ring[w->head] = NULL;
        w->head = (w->head + 1) % w->max;
        w->n--;
        pthread_mutex_unlock(&w->lock);
        int ret = bfs_http_post(w->http, w->url, "application/json", line, strlen(line), w->timeout_ms);
        pthread_mutex_lock(&w->lock);
        if (ret == 0) {
            free(line);
            w->st.sent++;
            backoff = 0;
            continue;
        }
        if (w->n < w->max) { /* back in front, to keep the order */
            w->head = (w->head + w->max - 1) % w->max;
            w->ring[w->head] = line;
            w->n++;
        } else {
            free(line); /* the ring filled up meanwhile: this one is the oldest */
            w->st.dropped++;
        }
        w->st.failures++;
        backoff = backoff > 0 ? fmin(60.0, backoff * 2) : 1.0;
        next_try = bfs_mono_s() + backoff;
        if (w->st.failures == 1 || w->st.failures % 100 == 0)
            bfs_warn(TAG, "POST of an event to the webhook failed (%s); %zu lines waiting, next try in %.0f s",
                     bfs_http_strerror(ret), w->n, backoff);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

int bfs_webhook_new(const char *url, bfs_http *http, size_t max_lines, long timeout_ms, bfs_webhook **out)
{
    *out = NULL;
    bfs_webhook *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->url = strdup(url);
    w->http = http;
    w->timeout_ms = timeout_ms;
    w->max = max_lines ? max_lines : 1;
    w->ring = calloc(w->max, sizeof *w->ring);
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    if (!w->url || !w->ring || pthread_create(&w->thread, NULL, sender, w) != 0) {
        free(w->url);
        free(w->ring);
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return -ENOMEM;
    }
    *out = w;
    return 0;
}

void bfs_webhook_post(bfs_webhook *w, const char *line)
{
    if (!w)
        return;
    char *copy = strdup(line);
    if (!copy)
        return;
    pthread_mutex_lock(&w->lock);
    if (w->n == w->max) { /* full: the oldest goes (the events file has it) */
        free(w->ring[w->head]);
        w->ring[w->head] = NULL;
        w->head = (w->head + 1) % w->max;
        w->n--;
        w->st.dropped++;
    }
    w->ring[(w->head + w->n) % w->max] = copy;
    w->n++;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

void bfs_webhook_stats_get(bfs_webhook *w, bfs_webhook_stats *st)
{
    pthread_mutex_lock(&w->lock);
    *st = w->st;
    st->queued = (int64_t)w->n;
    pthread_mutex_unlock(&w->lock);
}

void bfs_webhook_free(bfs_webhook *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    for (size_t i = 0; i < w->max; i++)
        free(w->ring[i]);
    free(w->ring);
    free(w->url);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
}
