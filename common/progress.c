/* progress.c - see progress.h. */
#include "progress.h"

#include "strutil.h"

#include <time.h>
#include <unistd.h>

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void bfs_progress_start(bfs_progress *p, FILE *out, const char *label, int64_t total_items)
{
    *p = (bfs_progress){.out = out, .label = label, .unit = "files", .total_items = total_items,
                        .last_decile = -1};
    p->start = mono();
    p->tty = isatty(fileno(out));
}

static void draw(bfs_progress *p, int final)
{
    double el = mono() - p->start;
    double frac = p->total_items > 0 ? (double)p->items / (double)p->total_items : 0;
    char bytes[32], rate[32], eta[32] = "";
    bfs_format_bytes((double)p->bytes, bytes, sizeof bytes);
    bfs_format_bytes(el > 0 ? (double)p->bytes / el : 0, rate, sizeof rate);
    if (!final && frac > 0 && frac < 1)
        snprintf(eta, sizeof eta, " ETA %.0fs", el / frac - el);
    char bar[31];
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = '\0';
    fprintf(p->out, "%s%s [%s] %lld/%lld %s", p->tty ? "\r\033[K" : "", p->label, bar,
            (long long)p->items, (long long)p->total_items, p->unit);
    if (p->bytes > 0)
        fprintf(p->out, ", %s, %s/s", bytes, rate);
    else if (el > 0)
        fprintf(p->out, ", %.0f %s/s", (double)p->items / el, p->unit);
    fputs(eta, p->out);
    if (final)
        fprintf(p->out, " in %.1fs\n", el);
    else if (!p->tty)
        fputc('\n', p->out);
    fflush(p->out);
}

void bfs_progress_update(bfs_progress *p, int64_t items, int64_t bytes)
{
    p->items = items;
    p->bytes = bytes;
    double now = mono();
    if (p->tty) {
        if (now - p->last_draw >= 0.1) {
            p->last_draw = now;
            draw(p, 0);
        }
        return;
    }
    int decile = p->total_items > 0 ? (int)(10 * items / p->total_items) : 0;
    if (decile != p->last_decile && decile < 10) {
        p->last_decile = decile;
        draw(p, 0);
    }
}

void bfs_progress_finish(bfs_progress *p) { draw(p, 1); }
