/*
 * cli_export.c - `butlerfs export REPO [PATH...] --to DIR [--collection GLOB]
 * [--dataset-type GLOB] [--dry-run] [--config FILE]`: copy dataset files
 * out of a repository, each with its sidecar, for another site (issue 12;
 * docs/transfer.md, "Export").
 *
 * The selection is a set of dataset ids: the files below each PATH, which
 * is written as below a mountpoint and resolved by the same virtual tree
 * (fs/tree.h: chains, find-first, aliases), and the datasets of the RUN
 * collections matching --collection.  --dataset-type narrows both.  Every
 * file record of each dataset is read from the registry first (no SQLite
 * statement is held while bytes are copied, so a live ingest is not
 * blocked), then copied by writers/export.h, one after the other.
 */
#include "cli.h"

#include "config.h"
#include "export.h"
#include "progress.h"
#include "registry.h"
#include "strutil.h"
#include "tree.h"

#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char export_help[] =
    "Usage: butlerfs export REPO [PATH...] --to DIR [--collection GLOB]\n"
    "                       [--dataset-type GLOB] [--dry-run] [--config FILE]\n"
    "\n"
    "Copy dataset files out of REPO into DIR, each with its sidecar, for another\n"
    "site to ingest them under the same dataset id, dataId and run.  Each file goes\n"
    "to DIR/<its path below the datastore root>, and its sidecar to\n"
    "DIR/<that path>.butler.json (docs/transfer.md, \"Sidecars\"), written after the\n"
    "file: a receiver that sees the sidecar knows the file is complete.\n"
    "\n"
    "What is exported (at least one PATH or --collection):\n"
    "  PATH               a path as below a mountpoint of REPO, relative to it; every\n"
    "                     dataset with a file at or below it:\n"
    "                       LSSTCam/raw/all                     a collection (chains\n"
    "                                                           find-first, as mounted)\n"
    "                       LSSTCam/raw/all/raw                 a dataset type in it\n"
    "                       LSSTCam/raw/all/raw/instrument=LSSTCam/detector=94\n"
    "                                                           a partial dataId (any\n"
    "                                                           order, aliases allowed)\n"
    "  --collection GLOB  every dataset of the RUN collections whose names match GLOB\n"
    "                     (shell-style: *, ?, [...]; quote it)\n"
    "  --dataset-type GLOB  only datasets whose type matches GLOB (narrows both)\n"
    "\n"
    "Options:\n"
    "  --to DIR           where the files go (made when missing); required\n"
    "  --dry-run          list what would be written; write nothing (existing files\n"
    "                     are still read, to tell a skip from a conflict)\n"
    "  --config FILE      butlerfs configuration (remote datastores: sources, cache)\n"
    "  -h, --help         show this text\n"
    "\n"
    "A file already in DIR with the same bytes is skipped (its sidecar is written if\n"
    "missing); a different file or sidecar in the way is never overwritten: it is an\n"
    "error.  The registry's size and BLAKE2b checksum are checked while copying.\n"
    "Datasets stored in components are not exported (an error each).  Prints a\n"
    "progress bar and a summary.  Exit status: 0 all done, 1 any error, 2 usage.\n";

/* One file record, owned (copied out of the registry's callback). */
struct rec {
    bfs_dataset_record r;
    char *strs[6 + BFS_MAX_DIMS];
};

struct exporter {
    bfs_tree *tree;
    const char *type_glob;
    char (*ids)[33];
    size_t nids, capids;
    struct rec *recs;
    size_t nrecs, caprecs;
};

static int add_id(struct exporter *e, const char *id)
{
    if (!id || strlen(id) != 32)
        return 0;
    if (bfs_grow((void **)&e->ids, &e->capids, e->nids + 1, sizeof *e->ids) < 0)
        return -ENOMEM;
    memcpy(e->ids[e->nids++], id, 33);
    return 0;
}

static int from_tree(void *ctx, bfs_node *file, const char *path)
{
    struct exporter *e = ctx;
    int ret = add_id(e, bfs_node_dataset_id(file));
    bfs_tree_forget(e->tree, file, 1);
    return ret;
}

static int from_run(void *ctx, const bfs_run_file *f)
{
    struct exporter *e = ctx;
    if (e->type_glob && fnmatch(e->type_glob, f->dataset_type, 0) != 0)
        return 0;
    return add_id(e, f->dataset_id);
}

static int cmp_id(const void *a, const void *b) { return memcmp(a, b, 32); }

/* Keep a copy of r (strings duplicated). */
static int keep_record(void *ctx, const bfs_dataset_record *r)
{
    struct exporter *e = ctx;
    if (e->type_glob && fnmatch(e->type_glob, r->dt->name, 0) != 0)
        return 0;
    if (bfs_grow((void **)&e->recs, &e->caprecs, e->nrecs + 1, sizeof *e->recs) < 0)
        return -ENOMEM;
    struct rec *k = &e->recs[e->nrecs];
    memset(k, 0, sizeof *k);
    k->r = *r;
    const char *src[6 + BFS_MAX_DIMS] = {r->run, r->component, r->path, r->formatter, r->storage_class, r->checksum};
    for (int i = 0; i < r->dt->ndims; i++)
        src[6 + i] = r->values[i];
    bool ok = true;
    for (int i = 0; i < 6 + r->dt->ndims; i++)
        if (src[i] && !(k->strs[i] = strdup(src[i])))
            ok = false;
    k->r.run = k->strs[0], k->r.component = k->strs[1], k->r.path = k->strs[2];
    k->r.formatter = k->strs[3], k->r.storage_class = k->strs[4], k->r.checksum = k->strs[5];
    for (int i = 0; i < r->dt->ndims; i++)
        k->r.values[i] = k->strs[6 + i];
    e->nrecs++; /* freed with the others even when a copy failed */
    return ok ? 0 : -ENOMEM;
}

/* DIR made when missing (not in a dry run); refused when it is the
 * datastore root or inside it. */
static int check_dest(const char *dir, const char *root, bool dry_run)
{
    struct stat st;
    if (dry_run && stat(dir, &st) < 0 && errno == ENOENT)
        return 0;
    if (stat(dir, &st) < 0 && (errno != ENOENT || (mkdir(dir, 0755) < 0 && errno != EEXIST))) {
        fprintf(stderr, "butlerfs: export: cannot make %s: %s\n", dir, strerror(errno));
        return -1;
    }
    char real[PATH_MAX], rroot[PATH_MAX];
    if (!realpath(dir, real) || stat(real, &st) < 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "butlerfs: export: %s is not a directory\n", dir);
        return -1;
    }
    size_t rl = realpath(root, rroot) ? strlen(rroot) : 0;
    if (rl && !strncmp(real, rroot, rl) && (real[rl] == '\0' || real[rl] == '/')) {
        fprintf(stderr, "butlerfs: export: %s is inside the datastore root %s; export to another directory\n",
                dir, rroot);
        return -1;
    }
    return 0;
}

int bfs_cmd_export(int argc, char **argv)
{
    const char *repo = NULL, *to = NULL, *coll_glob = NULL, *type_glob = NULL, *config_path = NULL;
    bool dry_run = false;
    const char **paths = calloc((size_t)argc + 1, sizeof *paths);
    int npaths = 0;
    if (!paths)
        return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = !strcmp(a, "--to") || !strcmp(a, "--collection") || !strcmp(a, "--dataset-type") ||
                     !strcmp(a, "--config");
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(export_help, stdout);
            free(paths);
            return 0;
        } else if (!strcmp(a, "--dry-run")) {
            dry_run = true;
        } else if (takes && (!v || !*v)) {
            fprintf(stderr, "butlerfs: export: %s needs a value\n", a);
            free(paths);
            return 2;
        } else if (takes) {
            *(!strcmp(a, "--to") ? &to : !strcmp(a, "--collection") ? &coll_glob
              : !strcmp(a, "--dataset-type") ? &type_glob : &config_path) = v;
            i++;
        } else if (a[0] == '-') {
            fprintf(stderr, "butlerfs: export: unknown option '%s'\n\n%s", a, export_help);
            free(paths);
            return 2;
        } else if (!repo) {
            repo = a;
        } else {
            paths[npaths++] = a;
        }
    }
    if (!repo || !to || (npaths == 0 && !coll_glob)) {
        fprintf(stderr, "butlerfs: export needs a repository, --to DIR and what to export (PATH or "
                        "--collection GLOB)\n\n%s", export_help);
        free(paths);
        return 2;
    }

    int status = 1;
    char *msg = NULL;
    bfs_config cfg;
    bfs_config_defaults(&cfg);
    bfs_registry *reg = NULL;
    bfs_fetcher *fetcher = NULL;
    struct exporter e = {.type_glob = type_glob};
    if (bfs_config_load(config_path, &cfg, &msg) < 0 || bfs_registry_open(repo, BFS_REG_READONLY, &reg, &msg) < 0) {
        fprintf(stderr, "butlerfs: export: %s\n", msg ? msg : "cannot start");
        goto out;
    }
    if (check_dest(to, bfs_registry_datastore_root(reg), dry_run) < 0 || bfs_fetcher_new(&cfg, &fetcher) < 0)
        goto out;
    if (npaths) {
        bfs_tree_opts topts = {.uid = getuid(), .gid = getgid(), .listing_ttl = 60, .fetcher = fetcher};
        if (bfs_tree_new(reg, &topts, &e.tree) < 0)
            goto out;
    }
    for (int i = 0; i < npaths; i++) {
        bfs_node *n;
        char *bad = NULL;
        int ret = bfs_tree_resolve(e.tree, paths[i], &n);
        if (ret == 0)
            ret = bfs_tree_collect_files(e.tree, n, paths[i], from_tree, &e, &bad);
        if (ret < 0) {
            fprintf(stderr, "butlerfs: export: %s: %s\n", bad ? bad : paths[i],
                    ret == -EINVAL ? "select a collection or below, not the whole repository" : strerror(-ret));
            free(bad);
            goto out;
        }
    }
    if (coll_glob) {
        int ret = bfs_registry_each_run_file(reg, coll_glob, from_run, &e);
        if (ret < 0) {
            fprintf(stderr, "butlerfs: export: cannot list the datasets of %s: %s\n", coll_glob, strerror(-ret));
            goto out;
        }
    }
    if (e.nids)
        qsort(e.ids, e.nids, sizeof *e.ids, cmp_id);
    size_t u = 0;
    for (size_t i = 0; i < e.nids; i++)
        if (u == 0 || memcmp(e.ids[u - 1], e.ids[i], 32))
            memcpy(e.ids[u++], e.ids[i], 33);
    e.nids = u;

    int64_t written = 0, skipped = 0, errors = 0, bytes = 0;
    for (size_t i = 0; i < e.nids; i++) {
        int ret = bfs_registry_dataset_records(reg, e.ids[i], keep_record, &e);
        if (ret < 0) {
            fprintf(stderr, "butlerfs: export: dataset %s: %s\n", e.ids[i], strerror(-ret));
            errors++;
        }
    }
    bfs_progress bar;
    bfs_progress_start(&bar, stderr, dry_run ? "export (dry run)" : "export", (int64_t)e.nrecs);
    for (size_t i = 0; i < e.nrecs; i++) {
        int64_t n = 0;
        char *why = NULL;
        int ret = bfs_export_record(reg, fetcher, to, &e.recs[i].r, dry_run, &n, &why);
        if (ret < 0) {
            fprintf(stderr, "\nbutlerfs: export: %s\n", why ? why : strerror(-ret));
            errors++;
        } else if (ret == BFS_EXPORT_SKIPPED) {
            skipped++;
        } else {
            written++;
            bytes += n;
            if (dry_run)
                printf("%s/%s (%lld bytes) and its sidecar\n", to, e.recs[i].r.path, (long long)n);
        }
        free(why);
        bfs_progress_update(&bar, (int64_t)i + 1, bytes);
    }
    bfs_progress_finish(&bar);
    char human[32];
    bfs_format_bytes((double)bytes, human, sizeof human);
    printf("%s %lld files (%s, %lld B) to %s, %lld skipped (already there), %lld errors\n",
           dry_run ? "would export" : "exported", (long long)written, human, (long long)bytes, to,
           (long long)skipped, (long long)errors);
    status = errors ? 1 : 0;
out:
    for (size_t i = 0; i < e.nrecs; i++)
        for (size_t k = 0; k < sizeof e.recs[i].strs / sizeof *e.recs[i].strs; k++)
            free(e.recs[i].strs[k]);
    free(e.recs);
    free(e.ids);
    bfs_tree_free(e.tree);
    bfs_fetcher_free(fetcher);
    bfs_registry_close(reg);
    bfs_config_free(&cfg);
    free(msg);
    free(paths);
    return status;
}
