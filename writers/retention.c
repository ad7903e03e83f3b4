/*
 * retention.c - local retention (retention.h; docs/transfer.md, "Local
 * retention").  The rules and the crash story are in retention.h.
 *
 * The walk goes through the registry in pages of PAGE datasets
 * (bfs_registry_each_run_file_page: one short read each, so a walk holds
 * no read open across the registry and keeps one page in memory); the
 * files of each dataset under a rule arrive together, each dataset is
 * judged once, and eligible ones go in batches of at most BATCH (a batch
 * borrows the page's strings, so a page's last batch goes before the next
 * page is read).  A run may stop early (opts.stop, opts.max_remove) and
 * say where the next one goes on (opts.cursor).
 */
#include "retention.h"

#include "clock.h"
#include "durable.h"
#include "log.h"
#include "progress.h"
#include "registry.h"
#include "strutil.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TAG "retention"
#define BATCH 256 /* datasets per registry transaction */
#define PAGE 1024 /* datasets per registry read */

struct rfile {
    char *id, *run, *dtype, *path;
    int64_t size, ingest_ns;
    bfs_dataset_cursor after; /* a walk resumed here goes on after this dataset */
};

/* One dataset of a batch: its files and destinations (borrowed from the
 * collected rfiles and the configuration, or owned when read back from a
 * journal). */
struct entry {
    const char *id, *run, *dtype;
    const char *paths[BFS_MAX_DIMS]; /* a dataset has few files (components) */
    int npaths;
    const char *dests[64];
    int ndests;
    int64_t bytes, ingest_ns;
};

struct run {
    const char *repo;
    const bfs_transfer_config *cfg;
    const bfs_retention_opts *opts;
    bfs_registry *reg;
    const char *root;     /* the datastore root, absolute, ends in '/' */
    const char *kill_at;  /* the test hook (retention.h): BFS_RETENTION_KILL_AT */
    char real_root[PATH_MAX];
    char *journal;        /* REPO/.butlerfs/retention.journal */
    bfs_retention_cb cb;
    void *ctx;
    bfs_retention_stats *st;
    struct rfile *files;
    size_t n, cap;
    char **dirty;         /* directories a file was unlinked from, to sync once per batch */
    size_t ndirty, capdirty;
    const bfs_dataset_cursor *page_cursor; /* the page walk's, past the dataset being read */
};

/* Keep a copy of f in r->files: 0 or -ENOMEM. */
static int add_file(struct run *r, const bfs_run_file *f)
{
    if (bfs_grow((void **)&r->files, &r->cap, r->n + 1, sizeof *r->files) < 0)
        return -ENOMEM;
    struct rfile *x = &r->files[r->n];
    *x = (struct rfile){strdup(f->dataset_id), strdup(f->run), strdup(f->dataset_type), strdup(f->path), f->size,
                        f->ingest_ns, r->page_cursor ? *r->page_cursor : (bfs_dataset_cursor){0}};
    if (!x->id || !x->run || !x->dtype || !x->path) {
        free(x->id), free(x->run), free(x->dtype), free(x->path);
        return -ENOMEM;
    }
    r->n++;
    return 0;
}

static int collect(void *arg, const bfs_run_file *f)
{
    struct run *r = arg;
    return bfs_retention_match(r->cfg, f->run, f->dataset_type) ? add_file(r, f) : 0;
}

/* ---- the journal ------------------------------------------------------------ */

static int journal_write(struct run *r, const struct entry *e, int n)
{
    json_t *list = json_array();
    for (int i = 0; list && i < n; i++) {
        json_t *paths = json_array(), *dests = json_array();
        for (int k = 0; paths && k < e[i].npaths; k++)
            json_array_append_new(paths, json_string(e[i].paths[k]));
        for (int k = 0; dests && k < e[i].ndests; k++)
            json_array_append_new(dests, json_string(e[i].dests[k]));
        json_array_append_new(list, json_pack("{s:s, s:o*, s:o*}", "id", e[i].id, "paths", paths, "destinations",
                                              dests));
    }
    json_t *o = list ? json_pack("{s:o}", "datasets", list) : NULL;
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    int ret = text ? bfs_durable_write(r->journal, text, strlen(text)) : -ENOMEM;
    free(text);
    return ret;
}

/* Whether the real directory of root + rel is under the real root (a
 * symbolic link inside the datastore cannot send an unlink elsewhere). */
static bool under_root(struct run *r, const char *full)
{
    char *dir = bfs_dir_of(full), real[PATH_MAX];
    bool ok = dir && realpath(dir, real) && bfs_startswith(real, r->real_root) &&
              (real[strlen(r->real_root)] == '/' || real[strlen(r->real_root)] == '\0');
    free(dir);
    return ok;
}

/* Remember the directory of path, to be synced by sync_dirty (a batch's
 * files are mostly in a few directories: one sync each, not one per file).
 * Out of memory: synced now. */
static void note_dirty(struct run *r, const char *path)
{
    char *dir = bfs_dir_of(path);
    if (!dir)
        return;
    for (size_t i = 0; i < r->ndirty; i++) {
        if (!strcmp(r->dirty[i], dir)) {
            free(dir);
            return;
        }
    }
    if (bfs_grow((void **)&r->dirty, &r->capdirty, r->ndirty + 1, sizeof *r->dirty) < 0) {
        bfs_fsync_dir(dir);
        free(dir);
        return;
    }
    r->dirty[r->ndirty++] = dir;
}

/* Make the unlinks so far durable (before the journal that lists them goes). */
static void sync_dirty(struct run *r)
{
    for (size_t i = 0; i < r->ndirty; i++) {
        bfs_fsync_dir(r->dirty[i]);
        free(r->dirty[i]);
    }
    r->ndirty = 0;
}

/* Step 3 for one dataset: when it is gone from the registry, unlink each of
 * its files no other record names, and forget its done records.  1 when it
 * is gone, 0 when it is still registered, negative errno. */
static int finish_one(struct run *r, struct entry *e, int *files_removed)
{
    *files_removed = 0;
    int has = bfs_registry_has_dataset(r->reg, e->id);
    if (has != 0)
        return has < 0 ? has : 0;
    for (int k = 0; k < e->npaths; k++) {
        const char *rel = e->paths[k];
        if (!bfs_is_relative_path(rel) || strstr(rel, "://")) {
            bfs_warn(TAG, "%s: the path %s is not under the datastore root; not removed", e->id, rel);
            continue;
        }
        int shared = bfs_registry_path_referenced(r->reg, rel);
        if (shared != 0) {
            if (shared < 0)
                return shared;
            r->st->files_shared++;
            continue;
        }
        char *full = bfs_asprintf("%s%s", r->root, rel);
        if (!full)
            return -ENOMEM;
        if (!under_root(r, full)) {
            if (access(full, F_OK) == 0 || errno != ENOENT)
                bfs_warn(TAG, "%s: %s is not under the datastore root %s; not removed", e->id, full, r->real_root);
        } else if (unlink(full) == 0) {
            (*files_removed)++;
            note_dirty(r, full);
        } else if (errno != ENOENT) {
            int err = errno;
            bfs_warn(TAG, "cannot remove %s: %s", full, strerror(err));
            free(full);
            return -err;
        }
        free(full);
    }
    for (int k = 0; k < e->ndests; k++) {
        int ret = bfs_queue_forget_done(r->repo, e->id, e->dests[k]);
        if (ret < 0)
            return ret;
    }
    return 1;
}

/* Step 4: the unlinks made durable, then the journal removed, durably.
 * 0 or negative errno. */
static int journal_done(struct run *r)
{
    sync_dirty(r);
    int ret = unlink(r->journal) < 0 ? -errno : 0;
    char *dir = bfs_dir_of(r->journal);
    if (dir)
        bfs_fsync_dir(dir);
    free(dir);
    return ret;
}

/* Finish an interrupted run's journal (step 3 for each of its datasets,
 * then step 4).  0 when there is none. */
static int journal_recover(struct run *r)
{
    json_error_t jerr;
    json_t *o = json_load_file(r->journal, 0, &jerr);
    if (!o)
        return access(r->journal, F_OK) < 0 && errno == ENOENT ? 0 : -EBADMSG;
    json_t *list = json_object_get(o, "datasets");
    size_t n = json_array_size(list);
    int ret = 0;
    for (size_t i = 0; ret >= 0 && i < n; i++) {
        json_t *d = json_array_get(list, i), *paths = json_object_get(d, "paths"),
               *dests = json_object_get(d, "destinations");
        struct entry e = {.id = json_string_value(json_object_get(d, "id"))};
        for (size_t k = 0; k < json_array_size(paths) && e.npaths < BFS_MAX_DIMS; k++)
            if (json_string_value(json_array_get(paths, k)))
                e.paths[e.npaths++] = json_string_value(json_array_get(paths, k));
        for (size_t k = 0; k < json_array_size(dests) && e.ndests < 64; k++)
            if (json_string_value(json_array_get(dests, k)))
                e.dests[e.ndests++] = json_string_value(json_array_get(dests, k));
        if (!e.id)
            continue;
        if (r->opts->dry_run) {
            r->st->journal_pending++;
            continue;
        }
        int files = 0;
        ret = finish_one(r, &e, &files);
        if (ret == 1) {
            r->st->recovered++;
            r->st->files_removed += files;
        }
    }
    json_decref(o);
    if (ret >= 0 && !r->opts->dry_run)
        ret = journal_done(r);
    return ret < 0 ? ret : 0;
}

/* The test hook (retention.h): SIGKILL after the step r->kill_at names. */
static void kill_point(const struct run *r, const char *step)
{
    if (r->kill_at && !strcmp(r->kill_at, step))
        raise(SIGKILL);
}

/* Steps 1-4 for a batch of eligible datasets (in a dry run, only the
 * callback). */
static int remove_batch(struct run *r, struct entry *e, int n)
{
    if (!n)
        return 0;
    bool removed[BATCH] = {false};
    int ret = 0;
    if (!r->opts->dry_run) {
        ret = journal_write(r, e, n);
        if (ret < 0) {
            bfs_err(TAG, "cannot write %s: %s", r->journal, strerror(-ret));
            return ret;
        }
        kill_point(r, "journal");
        int64_t t0 = bfs_mono_ms();
        ret = bfs_registry_begin(r->reg);
        for (int i = 0; ret == 0 && i < n; i++) {
            int rr = bfs_registry_remove_dataset(r->reg, e[i].id);
            if (rr < 0 && rr != -ENOENT) { /* -ENOENT: removed by someone else meanwhile */
                bfs_warn(TAG, "cannot remove dataset %s from the registry: %s", e[i].id, strerror(-rr));
                r->st->errors++;
            }
        }
        ret = ret == 0 ? bfs_registry_commit(r->reg) : ret;
        if (ret < 0) {
            bfs_registry_rollback(r->reg);
            bfs_err(TAG, "the registry transaction failed: %s", strerror(-ret));
        }
        int64_t t1 = bfs_mono_ms();
        kill_point(r, "registry");
        /* steps 3 and 4 run whatever happened: they remove nothing of a
         * dataset still registered */
        for (int i = 0; i < n; i++) {
            int files = 0;
            int fr = finish_one(r, &e[i], &files);
            if (fr < 0) {
                bfs_warn(TAG, "dataset %s: %s (the journal keeps it for the next run)", e[i].id, strerror(-fr));
                r->st->errors++;
                ret = ret < 0 ? ret : fr;
            }
            removed[i] = fr == 1;
            r->st->files_removed += files;
            if (removed[i]) {
                r->st->removed++;
                r->st->bytes_removed += e[i].bytes;
            }
            if (r->cb) {
                bfs_retention_dataset d = {e[i].id, e[i].run, e[i].dtype, e[i].paths, e[i].npaths, e[i].bytes,
                                           bfs_tai_ns_to_unix(e[i].ingest_ns), removed[i], files};
                r->cb(r->ctx, &d);
            }
        }
        sync_dirty(r);
        bfs_debug(TAG, "a batch of %d: the registry transaction took %lld ms, the files %lld ms", n,
                  (long long)(t1 - t0), (long long)(bfs_mono_ms() - t1));
        kill_point(r, "files");
        return ret == 0 ? journal_done(r) : ret;
    }
    for (int i = 0; r->cb && i < n; i++) {
        bfs_retention_dataset d = {e[i].id, e[i].run, e[i].dtype, e[i].paths, e[i].npaths, e[i].bytes,
                                   bfs_tai_ns_to_unix(e[i].ingest_ns), false, 0};
        r->cb(r->ctx, &d);
    }
    return 0;
}

/* The instrument of dataset id into *instrument (buf, or NULL when its
 * dataId has none), looked up only when a destination has an instruments
 * rule: 0 or negative errno. */
static int instrument_of(struct run *r, const char *id, char *buf, size_t n, const char **instrument)
{
    *instrument = NULL;
    if (!bfs_transfer_uses_instruments(r->cfg))
        return 0;
    int ret = bfs_registry_dataset_instrument(r->reg, id, buf, n);
    if (ret == 0 && buf[0])
        *instrument = buf;
    return ret;
}

/* The destinations that take dataset f (with that instrument, or NULL) into
 * e->dests, and where its copies stand: *waiting the first one whose copy
 * is not made yet (NULL when every copy is), *parked whether one is parked.
 * A dataset is removed only once every copy is made.  0 or negative errno. */
static int copies_of(struct run *r, const struct rfile *f, const char *instrument, struct entry *e,
                     const char **waiting, bool *parked)
{
    *waiting = NULL;
    *parked = false;
    for (int d = 0; r->cfg && d < r->cfg->n_dests && e->ndests < 64; d++) {
        const bfs_transfer_dest *dest = &r->cfg->dests[d];
        if (!bfs_transfer_matches(dest, f->run, f->dtype, instrument))
            continue;
        e->dests[e->ndests++] = dest->name;
        int s = bfs_queue_job_state(r->repo, f->id, dest->name);
        if (s < 0)
            return s;
        if (s != BFS_JOB_DONE && !*waiting)
            *waiting = dest->name;
        *parked |= s == BFS_JOB_PARKED;
    }
    return 0;
}

/* Judge the dataset of files [a, b): 1 eligible (into *e), 0 kept. */
static int judge(struct run *r, size_t a, size_t b, int64_t now_ns, struct entry *e)
{
    const struct rfile *f = &r->files[a];
    const bfs_retention_rule *rule = bfs_retention_match(r->cfg, f->run, f->dtype);
    bfs_retention_stats *st = r->st;
    if (!rule)
        return 0;
    st->examined++;
    if (f->ingest_ns <= 0 || now_ns - f->ingest_ns < rule->age_ms * 1000000) {
        st->too_young++;
        return 0;
    }
    *e = (struct entry){.id = f->id, .run = f->run, .dtype = f->dtype, .ingest_ns = f->ingest_ns};
    for (size_t i = a; i < b; i++) {
        if (!bfs_is_relative_path(r->files[i].path) || strstr(r->files[i].path, "://") || e->npaths == BFS_MAX_DIMS) {
            st->outside_root++;
            return 0;
        }
        e->paths[e->npaths++] = r->files[i].path;
        e->bytes += r->files[i].size > 0 ? r->files[i].size : 0;
    }
    char inst[BFS_MAX_VALUE];
    const char *instrument = NULL;
    if (instrument_of(r, f->id, inst, sizeof inst, &instrument) < 0) {
        st->not_transferred++; /* which destinations take it is not known: kept */
        return 0;
    }
    const char *waiting = NULL;
    bool parked = false;
    int ret = copies_of(r, f, instrument, e, &waiting, &parked);
    if (ret < 0)
        return ret;
    if (!e->ndests) {
        st->no_destination++;
        return 0;
    }
    if (waiting) {
        st->not_transferred++;
        st->parked += parked;
        return 0;
    }
    st->eligible++;
    return 1;
}

/* Open r's registry and root, and finish an interrupted run's journal:
 * 0, or negative errno with *errmsg (r is then closed). */
static int run_open(struct run *r, char **errmsg)
{
    r->kill_at = getenv("BFS_RETENTION_KILL_AT");
    int ret = bfs_registry_open(r->repo, r->opts->dry_run ? BFS_REG_READONLY : BFS_REG_WRITE, &r->reg, errmsg);
    if (ret < 0)
        return ret;
    r->root = bfs_registry_datastore_root(r->reg);
    if (r->root[0] != '/') {
        bfs_set_errmsg(errmsg, "the datastore of %s is remote (%s): local retention removes local files only",
                       r->repo, r->root);
        ret = -EINVAL;
    } else if (!realpath(r->root, r->real_root)) {
        ret = -errno;
        bfs_set_errmsg(errmsg, "cannot resolve the datastore root %s: %s", r->root, strerror(-ret));
    }
    if (ret == 0) {
        r->journal = bfs_asprintf("%s/.butlerfs/retention.journal", r->repo);
        ret = r->journal ? journal_recover(r) : -ENOMEM;
        if (ret < 0)
            bfs_set_errmsg(errmsg, "cannot finish the interrupted run recorded in %s: %s",
                           r->journal ? r->journal : r->repo, strerror(-ret));
    }
    if (ret < 0) {
        free(r->journal);
        r->journal = NULL;
        bfs_registry_close(r->reg);
        r->reg = NULL;
    }
    return ret;
}

/* Free the collected files (a page's, or a single dataset's). */
static void drop_files(struct run *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->files[i].id), free(r->files[i].run), free(r->files[i].dtype), free(r->files[i].path);
    r->n = 0;
}

static void run_close(struct run *r)
{
    drop_files(r);
    sync_dirty(r); /* nothing left in a run that finished its batches */
    free(r->dirty);
    free(r->files);
    free(r->journal);
    bfs_registry_close(r->reg);
}

/* Whether the run should end before the next dataset (st->more then set):
 * at its cap (opts.max_remove datasets found eligible), or asked to
 * (opts.stop, asked at most every 64 datasets). */
static bool run_ends(struct run *r, int64_t *asked)
{
    const bfs_retention_opts *o = r->opts;
    if ((o->max_remove > 0 && r->st->eligible >= o->max_remove) ||
        (o->stop && (*asked)++ % 64 == 0 && o->stop(o->stop_ud))) {
        r->st->more = true;
        return true;
    }
    return false;
}

/* Judge the datasets of the page just read and remove the eligible ones
 * (every batch, the last one included, goes before this returns: they
 * borrow the page's strings).  *ended: the run stopped inside the page, and
 * *resume then says where the next run goes on; otherwise *resume is left
 * as it is.  0 or negative errno. */
static int run_page(struct run *r, struct entry *batch, int64_t now_ns, int64_t *asked, bool *ended,
                    bfs_dataset_cursor *resume)
{
    int ret = 0, nb = 0;
    for (size_t a = 0, b; ret == 0 && a < r->n; a = b) {
        if (run_ends(r, asked)) {
            *ended = true;
            if (a > 0)
                *resume = r->files[a - 1].after; /* else the page starts where the run stopped */
            break;
        }
        for (b = a + 1; b < r->n && !strcmp(r->files[b].id, r->files[a].id); b++)
            ;
        int j = judge(r, a, b, now_ns, &batch[nb]);
        if (j < 0)
            ret = j;
        else if (j == 1 && ++nb == BATCH) {
            ret = remove_batch(r, batch, nb);
            nb = 0;
        }
    }
    int last = ret == 0 ? remove_batch(r, batch, nb) : 0;
    return ret < 0 ? ret : last;
}

/* The run, under the lock (a dry run takes none: it changes nothing). */
static int run_locked(const char *repo_dir, const bfs_transfer_config *cfg, const bfs_retention_opts *opts,
                      bfs_retention_cb cb, void *ctx, bfs_retention_stats *st, char **errmsg)
{
    struct run r = {.repo = repo_dir, .cfg = cfg, .opts = opts, .cb = cb, .ctx = ctx, .st = st};
    int ret = run_open(&r, errmsg);
    if (ret < 0)
        return ret;
    struct entry *batch = calloc(BATCH, sizeof *batch);
    if (!batch)
        ret = -ENOMEM;
    bfs_progress bar;
    bool bar_on = ret == 0 && opts->progress;
    if (bar_on) {
        int64_t total = 0;
        if (bfs_registry_count_datasets(r.reg, &total) < 0)
            total = 0; /* the bar shows no fraction */
        bfs_progress_start(&bar, opts->progress, "retention", total);
        bar.unit = "datasets";
    }
    /* the page walk: each dataset of the registry is read once, and each
     * under a rule judged once */
    bfs_dataset_cursor cur = opts->cursor ? *opts->cursor : (bfs_dataset_cursor){0}, resume = cur;
    r.page_cursor = &cur;
    int64_t now_ns = bfs_unix_to_tai_ns(time(NULL), 0), seen = 0, asked = 0;
    bool ended = false, at_end = false;
    while (ret == 0 && !ended && !at_end) {
        if (run_ends(&r, &asked)) { /* at the cap with the last page: no page read for nothing */
            ended = true;
            break;
        }
        int got = 0;
        ret = bfs_registry_each_run_file_page(r.reg, "*", &cur, PAGE, collect, &r, &got);
        if (ret < 0) {
            bfs_set_errmsg(errmsg, "cannot list the datasets of %s: %s", repo_dir, strerror(-ret));
            break;
        }
        at_end = got < PAGE;
        ret = run_page(&r, batch, now_ns, &asked, &ended, &resume);
        if (ret < 0)
            bfs_set_errmsg(errmsg, "retention in %s stopped: %s", repo_dir, strerror(-ret));
        else if (!ended)
            resume = cur;
        drop_files(&r);
        seen += got;
        if (bar_on)
            bfs_progress_update(&bar, seen, 0);
    }
    if (bar_on)
        bfs_progress_finish(&bar);
    if (opts->cursor && ret == 0)
        *opts->cursor = at_end && !ended ? (bfs_dataset_cursor){0} : resume; /* at the end: from the start again */
    free(batch);
    run_close(&r);
    return ret;
}

/* REPO/.butlerfs/retention.lock, held exclusively (not waited for): the
 * descriptor into *fd, or -EBUSY with a sentence. */
static int take_lock(const char *repo_dir, int *fd, char **errmsg)
{
    char *path = bfs_asprintf("%s/.butlerfs/retention.lock", repo_dir);
    if (!path)
        return -ENOMEM;
    char *dir = bfs_dir_of(path);
    if (dir)
        (void)mkdir(dir, 0700); /* a repository no -o rw mount has made it in yet */
    free(dir);
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    int ret = *fd < 0 ? -errno : 0;
    if (ret < 0)
        bfs_set_errmsg(errmsg, "cannot open %s: %s", path, strerror(-ret));
    else if (flock(*fd, LOCK_EX | LOCK_NB) < 0) {
        ret = errno == EWOULDBLOCK ? -EBUSY : -errno;
        bfs_set_errmsg(errmsg, "%s", ret == -EBUSY ? "another retention run of this repository is in progress"
                                                  : strerror(-ret));
        close(*fd);
        *fd = -1;
    }
    free(path);
    return ret;
}

int bfs_retention_run(const char *repo_dir, const bfs_transfer_config *cfg, const bfs_retention_opts *opts,
                      bfs_retention_cb cb, void *ctx, bfs_retention_stats *st, char **errmsg)
{
    memset(st, 0, sizeof *st);
    if (!cfg->n_retention) {
        bfs_set_errmsg(errmsg, "the configuration has no transfer: retention: rules (local retention is off)");
        return -ENOENT;
    }
    int lock = -1;
    int ret = opts->dry_run ? 0 : take_lock(repo_dir, &lock, errmsg);
    if (ret == 0)
        ret = run_locked(repo_dir, cfg, opts, cb, ctx, st, errmsg);
    if (lock >= 0)
        close(lock);
    return ret;
}

/* ---- one dataset, asked for (an unlink in a mount with ingest.allow_remove) ---- */

struct one {
    struct run *r;
    const char *id;
};

static int collect_id(void *arg, const bfs_run_file *f)
{
    struct one *o = arg;
    return strcmp(f->dataset_id, o->id) ? 0 : add_file(o->r, f);
}

/* run as a GLOB pattern that matches only itself ([*] for a literal *). */
static char *glob_literal(const char *run)
{
    char *g = malloc(3 * strlen(run) + 1), *w = g;
    if (!g)
        return NULL;
    for (const char *p = run; *p; p++) {
        if (strchr("*?[", *p)) {
            *w++ = '[';
            *w++ = *p;
            *w++ = ']';
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
    return g;
}

/* The removal of dataset_id, under the lock. */
static int remove_locked(const char *repo_dir, const bfs_transfer_config *cfg, const char *run,
                         const char *dataset_id, char **errmsg)
{
    bfs_retention_opts opts = {0};
    bfs_retention_stats st = {0};
    struct run r = {.repo = repo_dir, .cfg = cfg, .opts = &opts, .st = &st};
    int ret = run_open(&r, errmsg);
    if (ret < 0)
        return ret;
    char id[33], *glob = glob_literal(run);
    struct one o = {&r, id};
    if (bfs_registry_normalize_id(dataset_id, id) < 0)
        ret = 0; /* not an id: no file of the run has it */
    else
        ret = glob ? bfs_registry_each_run_file(r.reg, glob, collect_id, &o) : -ENOMEM;
    free(glob);
    if (ret < 0)
        bfs_set_errmsg(errmsg, "cannot list the files of %s: %s", run, strerror(-ret));
    else if (r.n == 0) {
        ret = -ENOENT;
        bfs_set_errmsg(errmsg, "no dataset %s in %s", dataset_id, run);
    }
    struct entry e = {0};
    if (ret == 0) {
        const struct rfile *f = &r.files[0];
        e = (struct entry){.id = f->id, .run = f->run, .dtype = f->dtype, .ingest_ns = f->ingest_ns};
        for (size_t i = 0; i < r.n && e.npaths < BFS_MAX_DIMS; i++) {
            e.paths[e.npaths++] = r.files[i].path;
            e.bytes += r.files[i].size > 0 ? r.files[i].size : 0;
        }
        /* a copy promised to a destination is kept until it is made: the
         * same rule as retention's, without the age */
        char inst[BFS_MAX_VALUE];
        const char *instrument = NULL, *waiting = NULL;
        bool parked;
        if (cfg && (ret = instrument_of(&r, f->id, inst, sizeof inst, &instrument)) < 0)
            bfs_set_errmsg(errmsg, "cannot read the dataId of %s: %s", f->id, strerror(-ret));
        else if ((ret = copies_of(&r, f, instrument, &e, &waiting, &parked)) == 0 && waiting) {
            ret = -EBUSY;
            bfs_set_errmsg(errmsg, "its transfer to %s is not done yet", waiting);
        }
    }
    if (ret == 0)
        ret = remove_batch(&r, &e, 1);
    if (ret == 0 && st.removed != 1) {
        ret = -EIO;
        bfs_set_errmsg(errmsg, "the registry kept dataset %s (see the log)", dataset_id);
    }
    run_close(&r);
    return ret;
}

int bfs_retention_remove(const char *repo_dir, const bfs_transfer_config *cfg, const char *run,
                         const char *dataset_id, char **errmsg)
{
    int lock = -1;
    int ret = take_lock(repo_dir, &lock, errmsg);
    if (ret == 0)
        ret = remove_locked(repo_dir, cfg, run, dataset_id, errmsg);
    if (lock >= 0)
        close(lock);
    return ret;
}

/* ---- a mount's periodic run ------------------------------------------------ */

struct bfs_retention_daemon {
    const char *repo;
    const bfs_transfer_config *cfg;
    bfs_retention_removed_fn removed;
    void *removed_ud;
    int64_t pass_max;    /* datasets a pass takes at most */
    /* the thread's own */
    bfs_dataset_cursor cursor; /* where the next pass goes on */
    char (*ids)[33];           /* the datasets the current pass removed */
    size_t nids, cap_ids;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* CLOCK_MONOTONIC */
    bool stop;
    bfs_retention_status status; /* under lock */
};

static bool daemon_stopping(void *ud)
{
    bfs_retention_daemon *d = ud;
    pthread_mutex_lock(&d->lock);
    bool stop = d->stop;
    pthread_mutex_unlock(&d->lock);
    return stop;
}

/* The run's callback: keep the id of each dataset removed, for removed
 * (one that cannot be kept stays in the mount's caches until they expire). */
static void daemon_saw(void *ctx, const bfs_retention_dataset *ds)
{
    bfs_retention_daemon *d = ctx;
    if (!ds->removed || !d->removed || bfs_grow((void **)&d->ids, &d->cap_ids, d->nids + 1, sizeof *d->ids) < 0)
        return;
    snprintf(d->ids[d->nids++], sizeof *d->ids, "%s", ds->dataset_id);
}

/* Tell removed what the pass removed (before its log line: what the line
 * reports is gone from the mount too). */
static void daemon_report(bfs_retention_daemon *d, const bfs_retention_stats *st)
{
    if (!d->removed || !(d->nids || st->recovered) || daemon_stopping(d))
        return;
    const char **ids = d->nids ? malloc(d->nids * sizeof *ids) : NULL;
    for (size_t i = 0; ids && i < d->nids; i++)
        ids[i] = d->ids[i];
    d->removed(d->removed_ud, ids, ids ? d->nids : 0);
    free(ids);
}

/* One pass: true when it stopped early (at its cap) with datasets left to
 * judge; the next goes on from d->cursor. */
static bool daemon_pass(bfs_retention_daemon *d)
{
    bfs_retention_opts opts = {.stop = daemon_stopping, .stop_ud = d, .max_remove = d->pass_max,
                               .cursor = &d->cursor};
    bfs_retention_stats st;
    char *msg = NULL;
    d->nids = 0;
    int ret = bfs_retention_run(d->repo, d->cfg, &opts, daemon_saw, d, &st, &msg);
    daemon_report(d, &st);
    if (ret == -EBUSY)
        bfs_info(TAG, "periodic run skipped: %s", msg ? msg : strerror(EBUSY));
    else if (ret < 0)
        bfs_warn(TAG, "periodic run failed after removing %lld dataset%s: %s", (long long)st.removed,
                 st.removed == 1 ? "" : "s", msg ? msg : strerror(-ret));
    else if (st.removed || st.errors || st.recovered) {
        char size[32];
        bfs_format_bytes((double)st.bytes_removed, size, sizeof size);
        char extra[192] = "";
        size_t k = 0;
        if (st.outside_root)
            k += (size_t)snprintf(extra, sizeof extra, ", %lld outside the root", (long long)st.outside_root);
        if (st.files_shared && k < sizeof extra)
            k += (size_t)snprintf(extra + k, sizeof extra - k, "; %lld shared files kept",
                                  (long long)st.files_shared);
        if (st.recovered && k < sizeof extra)
            snprintf(extra + k, sizeof extra - k, "; finished %lld of an interrupted run's journal",
                     (long long)st.recovered);
        bfs_note(TAG, "removed %lld dataset%s (%lld files, %s) of %lld under a rule; %lld too young, %lld not "
                      "transferred (%lld parked), %lld going nowhere%s%s%s",
                 (long long)st.removed, st.removed == 1 ? "" : "s", (long long)st.files_removed, size,
                 (long long)st.examined,
                 (long long)st.too_young, (long long)st.not_transferred, (long long)st.parked,
                 (long long)st.no_destination, extra,
                 st.errors ? "; some could not be removed (see above)" : "",
                 st.more ? "; the rest waits for the next pass" : "");
    }
    pthread_mutex_lock(&d->lock);
    bfs_retention_status *s = &d->status;
    s->passes++;
    s->last_pass = bfs_real_s();
    s->last_removed = st.removed; /* a pass that failed may have removed some first */
    s->removed += st.removed;
    s->bytes_removed += st.bytes_removed;
    s->last_errno = ret < 0 ? -ret : st.errors ? EIO : 0;
    snprintf(s->last_error, sizeof s->last_error, "%s",
             ret < 0 ? (msg ? msg : strerror(-ret)) : st.errors ? "some datasets could not be removed" : "");
    pthread_mutex_unlock(&d->lock);
    free(msg);
    return ret == 0 && st.more;
}

static void *daemon_main(void *arg)
{
    bfs_retention_daemon *d = arg;
    int64_t every = d->cfg->retention_interval_ms;
    int64_t next = bfs_mono_ms() + (every < 60000 ? every : 60000);
    pthread_mutex_lock(&d->lock);
    while (!d->stop) {
        if (bfs_mono_ms() < next) {
            struct timespec at = bfs_mono_at(next);
            pthread_cond_timedwait(&d->wake, &d->lock, &at);
            continue;
        }
        pthread_mutex_unlock(&d->lock);
        bool more = daemon_pass(d);
        next = bfs_mono_ms() + (more && every > BFS_RETENTION_CATCHUP_MS ? BFS_RETENTION_CATCHUP_MS : every);
        pthread_mutex_lock(&d->lock);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

int bfs_retention_start(const char *repo_dir, const bfs_transfer_config *cfg, bfs_retention_removed_fn removed,
                        void *ud, bfs_retention_daemon **out)
{
    *out = NULL;
    if (cfg->retention_interval_ms <= 0 || !cfg->n_retention)
        return -EINVAL;
    bfs_retention_daemon *d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    d->repo = repo_dir;
    d->cfg = cfg;
    d->removed = removed;
    d->removed_ud = ud;
    /* BFS_RETENTION_PASS_MAX (1..the default; a test knob), read once here */
    const char *env = getenv("BFS_RETENTION_PASS_MAX");
    int64_t v;
    d->pass_max = env && bfs_parse_i64(env, &v) && v >= 1 && v <= BFS_RETENTION_PASS_MAX ? v
                                                                                         : BFS_RETENTION_PASS_MAX;
    pthread_mutex_init(&d->lock, NULL);
    int ret = bfs_cond_init_mono(&d->wake);
    if (ret == 0) {
        /* signals belong to the FUSE loop */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        ret = -pthread_create(&d->thread, NULL, daemon_main, d);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (ret < 0)
            pthread_cond_destroy(&d->wake);
    }
    if (ret < 0) {
        pthread_mutex_destroy(&d->lock);
        free(d);
        return ret;
    }
    *out = d;
    return 0;
}

void bfs_retention_stop(bfs_retention_daemon *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->lock);
    d->stop = true;
    pthread_cond_broadcast(&d->wake);
    pthread_mutex_unlock(&d->lock);
    pthread_join(d->thread, NULL);
    pthread_cond_destroy(&d->wake);
    pthread_mutex_destroy(&d->lock);
    free(d->ids);
    free(d);
}

void bfs_retention_get_status(bfs_retention_daemon *d, bfs_retention_status *out)
{
    pthread_mutex_lock(&d->lock);
    *out = d->status;
    pthread_mutex_unlock(&d->lock);
}
