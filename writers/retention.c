/*
 * retention.c - local retention (retention.h; docs/transfer.md, "Local
 * retention").  The rules and the crash story are in retention.h.
 *
 * The walk: every dataset file of the registry (bfs_registry_each_run_file)
 * whose dataset falls under a rule is collected (bounded by the registry),
 * sorted by dataset id so a dataset's files are adjacent, and each dataset
 * is judged once.  Eligible ones go in batches of BATCH.
 */
#include "retention.h"

#include "durable.h"
#include "log.h"
#include "progress.h"
#include "registry.h"
#include "strutil.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TAG "retention"
#define BATCH 256

struct rfile {
    char *id, *run, *dtype, *path;
    int64_t size, ingest_ns;
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
    char real_root[PATH_MAX];
    char *journal;        /* REPO/.butlerfs/retention.journal */
    bfs_retention_cb cb;
    void *ctx;
    bfs_retention_stats *st;
    struct rfile *files;
    size_t n, cap;
};

static int collect(void *arg, const bfs_run_file *f)
{
    struct run *r = arg;
    if (!bfs_retention_match(r->cfg, f->run, f->dataset_type))
        return 0;
    if (bfs_grow((void **)&r->files, &r->cap, r->n + 1, sizeof *r->files) < 0)
        return -ENOMEM;
    struct rfile *x = &r->files[r->n];
    *x = (struct rfile){strdup(f->dataset_id), strdup(f->run), strdup(f->dataset_type), strdup(f->path), f->size,
                        f->ingest_ns};
    if (!x->id || !x->run || !x->dtype || !x->path) {
        free(x->id), free(x->run), free(x->dtype), free(x->path);
        return -ENOMEM;
    }
    r->n++;
    return 0;
}

static int cmp_file(const void *a, const void *b)
{
    return strcmp(((const struct rfile *)a)->id, ((const struct rfile *)b)->id);
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
            char *dir = bfs_dir_of(full);
            if (dir)
                bfs_fsync_dir(dir);
            free(dir);
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
    if (ret >= 0 && !r->opts->dry_run) {
        ret = unlink(r->journal) < 0 ? -errno : 0;
        char *dir = bfs_dir_of(r->journal);
        if (dir)
            bfs_fsync_dir(dir);
        free(dir);
    }
    return ret < 0 ? ret : 0;
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
        if (ret == 0) {
            ret = unlink(r->journal) < 0 ? -errno : 0;
            char *dir = bfs_dir_of(r->journal);
            if (dir)
                bfs_fsync_dir(dir);
            free(dir);
        }
        return ret;
    }
    for (int i = 0; r->cb && i < n; i++) {
        bfs_retention_dataset d = {e[i].id, e[i].run, e[i].dtype, e[i].paths, e[i].npaths, e[i].bytes,
                                   bfs_tai_ns_to_unix(e[i].ingest_ns), false, 0};
        r->cb(r->ctx, &d);
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
    bool waiting = false, parked = false;
    for (int d = 0; d < r->cfg->n_dests && e->ndests < 64; d++) {
        const bfs_transfer_dest *dest = &r->cfg->dests[d];
        if (!bfs_transfer_matches(dest, f->run, f->dtype))
            continue;
        e->dests[e->ndests++] = dest->name;
        int s = bfs_queue_job_state(r->repo, f->id, dest->name);
        if (s < 0)
            return s;
        waiting |= s != BFS_JOB_DONE;
        parked |= s == BFS_JOB_PARKED;
    }
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

int bfs_retention_run(const char *repo_dir, const bfs_transfer_config *cfg, const bfs_retention_opts *opts,
                      bfs_retention_cb cb, void *ctx, bfs_retention_stats *st, char **errmsg)
{
    memset(st, 0, sizeof *st);
    if (!cfg->n_retention) {
        bfs_set_errmsg(errmsg, "the configuration has no transfer: retention: rules (local retention is off)");
        return -ENOENT;
    }
    struct run r = {.repo = repo_dir, .cfg = cfg, .opts = opts, .cb = cb, .ctx = ctx, .st = st};
    int ret = bfs_registry_open(repo_dir, opts->dry_run ? BFS_REG_READONLY : BFS_REG_WRITE, &r.reg, errmsg);
    if (ret < 0)
        return ret;
    r.root = bfs_registry_datastore_root(r.reg);
    if (r.root[0] != '/') {
        bfs_set_errmsg(errmsg, "the datastore of %s is remote (%s): local retention removes local files only",
                       repo_dir, r.root);
        bfs_registry_close(r.reg);
        return -EINVAL;
    }
    if (!realpath(r.root, r.real_root)) {
        ret = -errno;
        bfs_set_errmsg(errmsg, "cannot resolve the datastore root %s: %s", r.root, strerror(-ret));
        bfs_registry_close(r.reg);
        return ret;
    }
    r.journal = bfs_asprintf("%s/.butlerfs/retention.journal", repo_dir);
    ret = r.journal ? journal_recover(&r) : -ENOMEM;
    if (ret < 0)
        bfs_set_errmsg(errmsg, "cannot finish the interrupted run recorded in %s: %s",
                       r.journal ? r.journal : repo_dir, strerror(-ret));
    if (ret == 0) {
        ret = bfs_registry_each_run_file(r.reg, "*", collect, &r);
        if (ret < 0)
            bfs_set_errmsg(errmsg, "cannot list the datasets of %s: %s", repo_dir, strerror(-ret));
    }
    /* the batch loop: every dataset collected is judged once */
    struct entry *batch = ret == 0 ? calloc(BATCH, sizeof *batch) : NULL;
    if (ret == 0 && !batch)
        ret = -ENOMEM;
    if (ret == 0) {
        qsort(r.files, r.n, sizeof *r.files, cmp_file);
        int64_t now_ns = bfs_unix_to_tai_ns(time(NULL), 0);
        bfs_progress bar;
        if (opts->progress)
            bfs_progress_start(&bar, opts->progress, "retention", (int64_t)r.n);
        int nb = 0;
        for (size_t a = 0, b; ret == 0 && a < r.n; a = b) {
            for (b = a + 1; b < r.n && !strcmp(r.files[b].id, r.files[a].id); b++)
                ;
            int j = judge(&r, a, b, now_ns, &batch[nb]);
            if (j < 0)
                ret = j;
            else if (j == 1 && ++nb == BATCH) {
                ret = remove_batch(&r, batch, nb);
                nb = 0;
            }
            if (opts->progress)
                bfs_progress_update(&bar, (int64_t)b, 0);
        }
        if (ret == 0)
            ret = remove_batch(&r, batch, nb);
        if (opts->progress)
            bfs_progress_finish(&bar);
        if (ret < 0)
            bfs_set_errmsg(errmsg, "retention in %s stopped: %s", repo_dir, strerror(-ret));
    }
    free(batch);
    for (size_t i = 0; i < r.n; i++)
        free(r.files[i].id), free(r.files[i].run), free(r.files[i].dtype), free(r.files[i].path);
    free(r.files);
    free(r.journal);
    bfs_registry_close(r.reg);
    return ret;
}
