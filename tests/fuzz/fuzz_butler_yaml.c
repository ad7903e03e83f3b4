/*
 * fuzz_butler_yaml.c - butler.yaml (registry/registry.c) through
 * bfs_registry_open.
 *
 * The input is the repository's butler.yaml; next to it lies a valid empty
 * registry (bfs_registry_init), named by the seeds as sqlite:///<butlerRoot>/
 * gen3.sqlite3, so inputs that name it reach the whole open.  An open
 * either fails with a sentence or gives a registry whose paths are
 * absolute and whose datastore root ends in '/'.
 *
 * Inputs that name a postgresql:// registry reach the network (a name
 * lookup, a connect): the connect deadline is cut to 200 ms so that one
 * input stays far below libFuzzer's timeout.  The lookup threads it
 * leaves behind may still be exiting when the leak check runs; glibc's
 * per-thread resolver state they free at exit is suppressed in
 * tests/fuzz/lsan.supp.
 */
#include "registry.h"
#include "fuzz_util.h"

#include <string.h>

static char repo[128], yaml[160];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    snprintf(repo, sizeof repo, "%s/repo", fz_setup());
    char *msg = NULL;
    if (bfs_registry_init(repo, &msg) != 0) {
        fprintf(stderr, "fuzz_butler_yaml: %s\n", msg ? msg : "bfs_registry_init failed");
        abort();
    }
    snprintf(yaml, sizeof yaml, "%s/butler.yaml", repo);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_write(yaml, data, size);
    bfs_registry *reg = NULL;
    char *msg = NULL;
    const bfs_registry_opts o = {.connect_timeout_ms = 200, .statement_timeout_ms = 200};
    int rc = bfs_registry_open_opts(repo, BFS_REG_READONLY, &o, &reg, &msg);
    if (rc < 0) {
        if (!msg || reg)
            abort();
    } else {
        const char *root = bfs_registry_datastore_root(reg);
        size_t n = strlen(root);
        if (!n || root[n - 1] != '/' || bfs_registry_db_path(reg)[0] != '/')
            abort();
        if (!strstr(root, "://") && root[0] != '/')
            abort(); /* a local root is absolute */
        bfs_registry_close(reg);
    }
    free(msg);
    return 0;
}
