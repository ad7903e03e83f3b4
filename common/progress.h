/*
 * progress.h - a one-line progress bar for long work (demo, prefetch,
 * benchmarks): items, bytes, rate and ETA.
 *
 * On a terminal the line is redrawn in place at most 10 times a second; on
 * a pipe or file (CI logs) one plain line is printed every 10 % instead, so
 * logs stay readable.  Not thread-safe: one thread drives a bar.
 */
#ifndef BFS_PROGRESS_H
#define BFS_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

typedef struct bfs_progress {
    FILE *out;
    const char *label;
    const char *unit; /* what an item is, plural: "files" unless set after start */
    int64_t total_items;
    int64_t items, bytes;
    double start, last_draw;
    int last_decile;
    int tty;
} bfs_progress;

void bfs_progress_start(bfs_progress *p, FILE *out, const char *label, int64_t total_items);
void bfs_progress_update(bfs_progress *p, int64_t items, int64_t bytes);
/* Final line with totals and elapsed time. */
void bfs_progress_finish(bfs_progress *p);

#endif
