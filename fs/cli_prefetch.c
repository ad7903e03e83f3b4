/*
 * cli_prefetch.c - `butlerfs prefetch`: warm the cache for a set of
 * datasets before a batch job runs, replacing the pre-copy step.
 *
 * It needs no mount: it opens the repository and walks the same virtual
 * tree a mount shows (fs/tree.h), so a selection is written exactly as a
 * path below a mountpoint: a collection, a dataset type, or a partial or
 * full dataId (any order, aliases allowed).  Every file below each selected
 * path is read whole through the fetcher, in parallel; remote blocks land in
 * the persistent cache and later reads through a mount are local.  Local
 * files are only counted.
 */
#include "cli.h"

#include "config.h"
#include "log.h"
#include "progress.h"
#include "registry.h"
#include "strutil.h"
#include "tree.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char prefetch_help[] =
    "Usage: butlerfs prefetch REPO [--config FILE] [--jobs N] [--from FILE] [PATH...]\n"
    "\n"
    "Read every dataset below each PATH so its bytes are in the local cache before a\n"
    "job needs them.  A PATH is written as below a mountpoint of REPO:\n"
    "  LSSTCam/raw/all                                   a collection\n"
    "  LSSTCam/raw/all/raw                               a dataset type in it\n"
    "  LSSTCam/raw/all/raw/instrument=LSSTCam/exposure=MC_O_20250415_000060\n"
    "                                                    a partial dataId (any order, aliases)\n"
    "--from FILE reads more paths, one per line ('-' for standard input; # comments).\n"
    "  --jobs N       files read in parallel (default 8)\n"
    "  --config FILE  butlerfs configuration (cache, sources; docs/config.md)\n"
    "Prints a progress bar and a summary; exits 1 when any file could not be read.\n";

struct pf_file {
    bfs_node *node;
    char *path;
};

struct prefetch {
    bfs_tree *tree;
    struct pf_file *files;
    size_t n, cap;
    atomic_size_t next;
    atomic_llong bytes, done, failed, local;
    bfs_progress bar;
    pthread_mutex_t bar_lock;
};

static int add_file(struct prefetch *p, bfs_node *n, const char *path)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 256;
        struct pf_file *f = realloc(p->files, cap * sizeof *f);
        if (!f)
            return -ENOMEM;
        p->files = f;
        p->cap = cap;
    }
    p->files[p->n].node = n;
    p->files[p->n].path = strdup(path);
    if (!p->files[p->n].path)
        return -ENOMEM;
    p->n++;
    return 0;
}

/* bfs_tree_collect_files callback: keep the file and its lookup. */
static int collect_file(void *ctx, bfs_node *n, const char *path)
{
    int ret = add_file(ctx, n, path);
    if (ret < 0)
        bfs_tree_forget(((struct prefetch *)ctx)->tree, n, 1);
    return ret;
}

static void *reader(void *arg)
{
    struct prefetch *p = arg;
    size_t bufsz = 1 << 20; /* a view of 1 MiB spans at most 17 blocks of the smallest size */
    char *buf = malloc(bufsz);
    for (size_t i; buf && (i = atomic_fetch_add(&p->next, 1)) < p->n;) {
        bfs_source *src;
        int ret = bfs_tree_open(p->tree, p->files[i].node, &src);
        bool src_open = ret == 0;
        if (ret == 0 && bfs_source_fd(src) >= 0) {
            atomic_fetch_add(&p->local, 1);
        } else if (ret == 0) {
            int64_t size = bfs_source_size(src);
            for (int64_t off = 0; off < size && ret == 0;) {
                /* a view brings the blocks into the cache without copying
                 * them out; the copy is only a fallback */
                bfs_view v;
                ssize_t k = bfs_source_view(src, bufsz, off, &v);
                bfs_view_release(&v);
                if (k == -E2BIG || k == -ENOBUFS)
                    k = bfs_source_pread(src, buf, bufsz, off);
                if (k <= 0)
                    ret = k < 0 ? (int)k : -EIO;
                else
                    off += k, atomic_fetch_add(&p->bytes, k);
            }
        }
        if (src_open)
            bfs_source_close(src);
        if (ret < 0) {
            fprintf(stderr, "\nbutlerfs: prefetch: %s: %s\n", p->files[i].path, strerror(-ret));
            atomic_fetch_add(&p->failed, 1);
        }
        long long d = atomic_fetch_add(&p->done, 1) + 1;
        pthread_mutex_lock(&p->bar_lock);
        bfs_progress_update(&p->bar, d, atomic_load(&p->bytes));
        pthread_mutex_unlock(&p->bar_lock);
    }
    free(buf);
    return NULL;
}

static void free_paths(char **paths, int n)
{
    for (int i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
}

int bfs_cmd_prefetch(int argc, char **argv)
{
    const char *repo = NULL, *from = NULL, *config_path = NULL;
    int jobs = 8;
    char **paths = calloc((size_t)argc + 1, sizeof *paths);
    int npaths = 0, status = 1;
    if (!paths)
        return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(prefetch_help, stdout);
            free_paths(paths, npaths);
            return 0;
        } else if (!v && (!strcmp(a, "--jobs") || !strcmp(a, "--from") || !strcmp(a, "--config"))) {
            fprintf(stderr, "butlerfs: prefetch: %s needs a value\n", a);
            free_paths(paths, npaths);
            return 2;
        } else if (v && !strcmp(a, "--jobs")) {
            char *end;
            long j = strtol(v, &end, 10);
            jobs = *v && !*end && j >= 1 && j <= 256 ? (int)j : 0, i++;
        } else if (v && !strcmp(a, "--from")) {
            from = v, i++;
        } else if (v && !strcmp(a, "--config")) {
            config_path = v, i++;
        } else if (a[0] == '-' && strcmp(a, "-")) {
            fprintf(stderr, "butlerfs: prefetch: unknown option '%s'\n%s", a, prefetch_help);
            free_paths(paths, npaths);
            return 2;
        } else if (!repo) {
            repo = a;
        } else {
            paths[npaths++] = strdup(a);
        }
    }
    if (!repo || jobs < 1 || jobs > 256) {
        if (!repo)
            fprintf(stderr, "butlerfs: prefetch needs a repository\n%s", prefetch_help);
        else
            fprintf(stderr, "butlerfs: prefetch: --jobs must be a number from 1 to 256\n");
        free_paths(paths, npaths);
        return 2;
    }
    if (from) {
        FILE *f = strcmp(from, "-") ? fopen(from, "r") : stdin;
        if (!f) {
            fprintf(stderr, "butlerfs: prefetch: cannot read %s: %s\n", from, strerror(errno));
            goto out_paths;
        }
        char line[4096];
        while (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\r\n")] = '\0';
            char *s = line + strspn(line, " \t");
            if (!*s || *s == '#')
                continue;
            char **more = realloc(paths, (size_t)(npaths + 2) * sizeof *paths);
            if (!more)
                break;
            paths = more;
            paths[npaths++] = strdup(s);
        }
        if (f != stdin)
            fclose(f);
    }
    if (npaths == 0) {
        fprintf(stderr, "butlerfs: prefetch: nothing selected: give PATHs or --from FILE\n");
        status = 2;
        goto out_paths;
    }

    bfs_config cfg;
    bfs_config_defaults(&cfg);
    char *msg = NULL;
    bfs_registry *reg = NULL;
    bfs_fetcher *fetcher = NULL;
    struct prefetch p = {0};
    pthread_mutex_init(&p.bar_lock, NULL);
    if (bfs_config_load(config_path, &cfg, &msg) < 0 || bfs_registry_open(repo, BFS_REG_READONLY, &reg, &msg) < 0) {
        fprintf(stderr, "butlerfs: prefetch: %s\n", msg ? msg : "cannot start");
        goto out;
    }
    /* remote data and no usable cache: nothing would be kept (the same
     * test as mount's) */
    const char *root = bfs_registry_datastore_root(reg);
    if (bfs_source_is_remote(root) && bfs_fetch_cache_check(&cfg, &msg) < 0) {
        fprintf(stderr, "butlerfs: prefetch: the cache cannot be used, so nothing would be kept: %s\n",
                msg ? msg : "?");
        goto out;
    }
    if (bfs_fetcher_new(&cfg, &fetcher) < 0)
        goto out;
    bfs_tree_opts topts = {.uid = getuid(), .gid = getgid(), .listing_ttl = 60, .fetcher = fetcher};
    if (bfs_tree_new(reg, &topts, &p.tree) < 0)
        goto out;
    for (int i = 0; i < npaths; i++) {
        bfs_node *n;
        int ret = bfs_tree_resolve(p.tree, paths[i], &n);
        if (ret < 0) {
            fprintf(stderr, "butlerfs: prefetch: %s: %s\n", paths[i],
                    ret == -EINVAL ? "select a collection or below, not the whole repository" : strerror(-ret));
            goto out;
        }
        char *bad = NULL;
        ret = bfs_tree_collect_files(p.tree, n, paths[i], collect_file, &p, &bad);
        if (ret < 0) {
            fprintf(stderr, "butlerfs: prefetch: %s: %s\n", bad ? bad : paths[i], strerror(-ret));
            free(bad);
            goto out;
        }
    }
    bfs_progress_start(&p.bar, stderr, "prefetch", (int64_t)p.n);
    int nthreads = jobs < (int)p.n ? jobs : (int)p.n;
    pthread_t *th = calloc((size_t)(nthreads > 0 ? nthreads : 1), sizeof *th);
    int started = 0;
    for (int i = 0; th && i < nthreads; i++)
        if (pthread_create(&th[i], NULL, reader, &p) == 0)
            started++;
    if (started == 0 && p.n > 0)
        reader(&p);
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    free(th);
    bfs_progress_finish(&p.bar);
    bfs_fetch_stats fs;
    bfs_fetcher_stats(fetcher, &fs);
    char done[32], moved[32];
    bfs_format_bytes((double)atomic_load(&p.bytes), done, sizeof done);
    bfs_format_bytes((double)fs.bytes_fetched, moved, sizeof moved);
    /* received can exceed read: failed attempts and error replies count */
    printf("prefetch: %zu files, %s read (%lld B); %s received from servers (%llu B), %llu blocks taken "
           "from the cache; %lld local, %lld failed\n", p.n, done, (long long)atomic_load(&p.bytes), moved,
           (unsigned long long)fs.bytes_fetched, (unsigned long long)fs.cache_hits,
           (long long)atomic_load(&p.local), (long long)atomic_load(&p.failed));
    status = atomic_load(&p.failed) ? 1 : 0;
out:
    for (size_t i = 0; i < p.n; i++) {
        bfs_tree_forget(p.tree, p.files[i].node, 1);
        free(p.files[i].path);
    }
    free(p.files);
    bfs_tree_free(p.tree);
    bfs_fetcher_free(fetcher);
    bfs_registry_close(reg);
    bfs_config_free(&cfg);
    free(msg);
    pthread_mutex_destroy(&p.bar_lock);
out_paths:
    for (int i = 0; i < npaths; i++)
        free(paths[i]);
    free(paths);
    return status;
}
