/*
 * clock.h - the time calls every module makes, written once.
 *
 * bfs_mono_s / bfs_mono_ms: CLOCK_MONOTONIC (deadlines, intervals, backoff:
 * a wall-clock step can neither stretch nor cut them).  bfs_real_s: the
 * wall clock (what a person or a file records).  bfs_sleep_ms: sleep,
 * resumed after signals; <= 0 returns at once.  bfs_real_in(s): the
 * CLOCK_REALTIME instant s seconds from now, for pthread_cond_timedwait on
 * a default (realtime) condition variable.  bfs_cond_init_mono: a condition
 * variable whose timed waits run on CLOCK_MONOTONIC (0 or an errno), and
 * bfs_mono_at(ms): the bfs_mono_ms() instant ms as the timespec such a wait
 * takes.  No state; any thread.
 */
#ifndef BFS_CLOCK_H
#define BFS_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

double bfs_mono_s(void);
int64_t bfs_mono_ms(void);
double bfs_real_s(void);
void bfs_sleep_ms(int64_t ms);
struct timespec bfs_real_in(double seconds);
int bfs_cond_init_mono(pthread_cond_t *cond);
struct timespec bfs_mono_at(int64_t ms);

#endif
