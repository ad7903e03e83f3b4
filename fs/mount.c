/* mount.c - the composition root of a mount (mount.h). */
#include "mount.h"

#include "config.h"
#include "http.h"
#include "log.h"
#include "source.h"
#include "status.h"
#include "strutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define TAG "main"

int bfs_mount_write_config(const bfs_config *config, bfs_ingest_config *icfg, bfs_transfer_config *tcfg,
                           char **msg)
{
    if (!config->path)
        return 0;
    bfs_yaml *y;
    int ret = bfs_yaml_load_file(config->path, &y, msg);
    if (ret < 0)
        return ret;
    const bfs_yaml_node *sec = bfs_yaml_get(y, bfs_yaml_root(y), "ingest");
    if (sec)
        ret = bfs_ingest_config_parse(y, sec, config->path, icfg, msg);
    sec = ret == 0 ? bfs_yaml_get(y, bfs_yaml_root(y), "transfer") : NULL;
    if (sec)
        ret = bfs_transfer_config_parse(y, sec, config->path, tcfg, msg);
    bfs_yaml_free(y);
    return ret;
}

/* The configuration's registry: section (PostgreSQL connections). */
static int open_registry(const bfs_mount_plan *p, bfs_registry **reg, char **msg)
{
    const bfs_config *c = p->config;
    bfs_registry_opts o = {0};
    if (c)
        o = (bfs_registry_opts){.connections = c->reg_connections, .idle_close_ms = c->reg_idle_close_ms,
                                .connect_timeout_ms = c->reg_connect_timeout_ms,
                                .statement_timeout_ms = c->reg_statement_timeout_ms};
    return bfs_registry_open_opts(p->repo, p->rw ? BFS_REG_WRITE : BFS_REG_READONLY, &o, reg, msg);
}

int bfs_mount_check(const bfs_mount_plan *p, bfs_ingest_config *icfg, bfs_transfer_config *tcfg, char **fsname)
{
    bfs_registry *reg = NULL;
    char *msg = NULL;
    *fsname = NULL;
    /* -o rw opens for writing already here: a transaction a killed writer
     * left in the rollback journal is undone by the first writable open,
     * and a read-only open could not read past it */
    if (open_registry(p, &reg, &msg) < 0) {
        fprintf(stderr, "butlerfs: %s\n", msg ? msg : "cannot open repository");
        free(msg);
        return -1;
    }
    /* remote data and a cache that cannot be used: say so while the user
     * sees it (the mount still serves, uncached) */
    const char *root = bfs_registry_datastore_root(reg);
    if (bfs_source_is_remote(root) && bfs_fetch_cache_check(p->config, &msg) < 0) {
        fprintf(stderr, "butlerfs: warning: remote data will be read uncached: %s\n", msg ? msg : "?");
        free(msg);
        msg = NULL;
    }
    int ret = 0;
    if (p->rw && bfs_source_is_remote(root)) {
        fprintf(stderr, "butlerfs: -o rw needs a repository whose datastore root is a local directory; "
                        "%s's is %s\n", bfs_registry_repo_dir(reg), root);
        ret = -1;
    } else if (p->rw && (bfs_mount_write_config(p->config, icfg, tcfg, &msg) < 0 ||
                         bfs_ingest_check(bfs_registry_repo_dir(reg), root, icfg, &msg) < 0)) {
        fprintf(stderr, "butlerfs: %s\n", msg ? msg : "cannot read the ingest: section");
        ret = -1;
    } else if (!(*fsname = bfs_asprintf("-ofsname=butlerfs:%s,subtype=butlerfs,%sdefault_permissions,max_read=%u",
                                        bfs_registry_repo_dir(reg), p->rw ? "" : "ro,", 1u << 20))) {
        ret = -1;
    }
    free(msg);
    bfs_registry_close(reg);
    return ret;
}

/* The mount's retention thread removed datasets (on that thread): they
 * leave the tree's caches and the kernel's at once (bfs_tree_datasets_gone:
 * their dataId directories' files, the entries of their files and of those
 * directories), and every listing goes stale (what ids does not name: the
 * datasets a pass finished from an interrupted run's journal). */
static void retention_removed(void *ctx, const char *const *ids, size_t n)
{
    bfs_fs *fs = ctx;
    bfs_tree_datasets_gone(fs->tree, ids, n, bfs_ops_evict, fs);
    bfs_tree_expire_listings(fs->tree);
}

int bfs_mount_serve(const bfs_mount_plan *p, struct fuse_session *se, bfs_fs *fs)
{
    bfs_registry *reg = NULL;
    bfs_fetcher *fetcher = NULL;
    bfs_http *http = NULL;
    bfs_transfer *transfer = NULL;
    bfs_retention_daemon *retention = NULL;
    char *msg = NULL;
    int status = 1;
    if (open_registry(p, &reg, &msg) < 0) {
        bfs_err(TAG, "%s", msg ? msg : "cannot open repository");
        goto out;
    }
    if (bfs_fetcher_new(p->config, &fetcher) < 0)
        goto out;
    bfs_tree_opts topts = {.uid = getuid(), .gid = getgid(), .listing_ttl = p->listing_ttl,
                           .fetcher = fetcher, .max_nodes = p->max_nodes, .writable = p->rw,
                           .create_types = p->rw && p->ingest->create_dataset_types,
                           .replica_dir = p->rw ? BFS_REPLICA_DIR : NULL};
    if (bfs_tree_new(reg, &topts, &fs->tree) < 0 || bfs_tree_make_replica_dir(fs->tree) < 0)
        goto out;
    const char *repo_dir = bfs_registry_repo_dir(reg), *root = bfs_registry_datastore_root(reg);
    if (p->rw && (p->transfer->n_dests || p->ingest->webhook || p->ingest->hs_url)) {
        /* uploads, webhook POSTs and Header Service GETs, with the fetch: section's settings */
        bfs_http_cfg hc;
        bfs_http_cfg_from(p->config, &hc);
        if (bfs_http_new(&hc, &http, &msg) < 0 ||
            (p->transfer->n_dests &&
             bfs_transfer_open(repo_dir, root, p->transfer, http, p->ingest->events_file, &transfer, &msg) < 0)) {
            bfs_err(TAG, "cannot start the transfer queue: %s", msg ? msg : "?");
            goto out;
        }
    }
    if (p->rw && bfs_ingest_open(repo_dir, root, reg, p->ingest, transfer, http, &fs->ing, &msg) < 0) {
        bfs_err(TAG, "cannot serve writes: %s", msg ? msg : "ingest did not start");
        goto out;
    }
    fs->reg = reg;
    fs->se = se;
    /* after ingest: a retention pass must not start before an interrupted
     * upload of the last daemon is finished; after fs->se: a pass asks the
     * kernel to drop entries through it */
    if (p->rw && p->transfer->retention_interval_ms > 0 &&
        bfs_retention_start(repo_dir, p->transfer, retention_removed, fs, &retention) < 0)
        bfs_warn(TAG, "cannot start the periodic retention: `butlerfs retention` still works");
    if (bfs_tree_trimmer_start(fs->tree, bfs_ops_evict, fs) < 0)
        bfs_warn(TAG, "cannot start the node trimmer: max_nodes=%lu will not be enforced", p->max_nodes);
    bfs_note(TAG, "mounted %s on %s (universe %s v%d, %zu collections, %zu dataset types)", repo_dir, p->mnt,
             bfs_registry_universe_namespace(reg), bfs_registry_universe_version(reg),
             bfs_registry_catalog(reg)->ncollections, bfs_registry_catalog(reg)->ndataset_types);

    struct fuse_loop_config *lcfg = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(lcfg, (unsigned)p->threads);
    fuse_loop_cfg_set_idle_threads(lcfg, (unsigned)(p->threads / 2 > 0 ? p->threads / 2 : 1));
    fuse_loop_cfg_set_clone_fd(lcfg, 0);
    /* after daemonizing: the file is named by the serving process's pid */
    bfs_status *st = p->status_file ? bfs_status_start(p->mnt, repo_dir, fetcher, fs->direct_io) : NULL;
    if (bfs_inval_start(se, &fs->inval) < 0)
        bfs_warn(TAG, "cannot start the page cache invalidator: files found bad are only dropped "
                      "from the kernel's cache at their next open");
    bfs_status_watch_nodes(st, fs->tree);
    bfs_status_watch_ingest(st, fs->ing);
    bfs_status_watch_transfer(st, transfer);
    bfs_status_watch_retention(st, retention);
    int loop = p->single_thread ? fuse_session_loop(se) : fuse_session_loop_mt(se, lcfg);
    bfs_inval_stop(fs->inval);
    fs->inval = NULL;
    bfs_status_stop(st); /* before the daemons it reads */
    /* while the session lives: a pass asks the kernel to drop entries
     * through it (a pass ends within 64 datasets and the batch it removes) */
    bfs_retention_stop(retention);
    retention = NULL;
    bfs_tree_trimmer_stop(fs->tree); /* before the session goes */
    fuse_loop_cfg_destroy(lcfg);
    status = loop == 0 ? 0 : 1;
    bfs_note(TAG, "unmounted %s", p->mnt);
out:
    bfs_retention_stop(retention); /* NULL here unless a step after its start failed */
    bfs_ingest_close(fs->ing); /* seals in flight finish; before the tree they hold nodes of */
    fs->ing = NULL;
    bfs_transfer_close(transfer); /* after the ingest that enqueues; pending jobs stay on disk */
    bfs_http_free(http);
    bfs_tree_free(fs->tree);
    fs->tree = NULL;
    bfs_fetcher_free(fetcher);
    bfs_registry_close(reg);
    fs->reg = NULL;
    free(msg);
    return status;
}
