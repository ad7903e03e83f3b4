/*
 * fuzz_universe.c - the dimension universe JSON (registry/universe.c), as
 * stored in butler_attributes "config:dimensions.json".
 *
 * The input is the JSON text.  A universe that loads must give dimensions
 * with names and keys, whose requires point into the same universe, in an
 * order where every required dimension comes first.
 */
#include "registry_i.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_setup();
    char *text = fz_string(data, size);
    bfs_registry *reg = calloc(1, sizeof *reg);
    if (!reg)
        abort();
    /* set up as bfs_registry_open does, so bfs_registry_close frees it all */
    pthread_mutex_init(&reg->lock, NULL);
    reg->db_path = strdup("fuzz.sqlite3");

    char *msg = NULL;
    int rc = reg_universe_load(reg, text, &msg);
    if (rc == 0) {
        for (int i = 0; i < reg->ndims; i++) {
            const bfs_dimension *d = bfs_registry_dimension(reg, i);
            if (!d || !d->name || !d->key || d->index != i ||
                bfs_registry_dimension_by_name(reg, d->name) == NULL)
                abort();
            for (int j = 0; j < d->n_requires; j++) {
                const bfs_dimension *q = d->requires[j];
                if (q < reg->dims || q >= reg->dims + reg->ndims)
                    abort();
            }
        }
    }
    free(msg);
    bfs_registry_close(reg);
    free(text);
    return 0;
}
