/*
 * webhook.h - event lines POSTed to a URL (ingest.webhook), best effort
 * with bounded memory: the events file (ingest.events) stays the durable
 * record; the webhook is how a service hears of them at once.
 *
 * bfs_webhook_post() copies the line into a ring of at most max_lines; when
 * the ring is full the oldest line is dropped (and counted).  One thread
 * POSTs the lines in order (Content-Type application/json), each request
 * bounded by timeout_ms; a failure keeps the line and waits before the next
 * try (1 s doubling to 60 s, reset by a success), so a webhook that is down
 * costs memory up to the ring's size and nothing else.  Lines still in the
 * ring at bfs_webhook_free() are not sent (they are in the events file).
 *
 * Ownership: bfs_webhook_new copies url; http is borrowed and must outlive
 * the webhook.  Threads: bfs_webhook_post from any thread.
 */
#ifndef BFS_WEBHOOK_H
#define BFS_WEBHOOK_H

#include "http.h"

#include <stddef.h>
#include <stdint.h>

typedef struct bfs_webhook bfs_webhook;

typedef struct bfs_webhook_stats {
    int64_t sent, dropped, failures, queued;
} bfs_webhook_stats;

int bfs_webhook_new(const char *url, bfs_http *http, size_t max_lines, long timeout_ms, bfs_webhook **out);
void bfs_webhook_post(bfs_webhook *w, const char *line);
void bfs_webhook_stats_get(bfs_webhook *w, bfs_webhook_stats *st);
void bfs_webhook_free(bfs_webhook *w);

#endif
