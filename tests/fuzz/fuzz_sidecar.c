/*
 * fuzz_sidecar.c - the export sidecar reader (writers/sidecar.c,
 * bfs_sidecar_parse): what another site's export hands the ingest.
 *
 * Any input either fails with -EINVAL/-E2BIG and a message, or succeeds
 * with every promise of sidecar.h kept: the path passes
 * bfs_sidecar_path_ok, each dataId value is one safe path component, each
 * required dimension is in the dataId, ids and sums are lowercase hex of
 * their lengths.  bfs_sidecar_free is always safe.
 */
#include "sidecar.h"
#include "strutil.h"
#include "fuzz_util.h"

#include <errno.h>
#include <string.h>

static bool lower_hex(const char *s, size_t n)
{
    if (strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_setup();
    bfs_sidecar sc;
    char *msg = NULL;
    int ret = bfs_sidecar_parse((const char *)data, size, &sc, &msg);
    if (ret < 0) {
        if ((ret != -EINVAL && ret != -E2BIG && ret != -ENOMEM) || (ret != -ENOMEM && !msg))
            abort();
    } else {
        if (ret != 0 || msg || !bfs_sidecar_path_ok(sc.path) || !lower_hex(sc.id, 32) ||
            !lower_hex(sc.adler32, 8) || !lower_hex(sc.md5, 32) ||
            (sc.checksum[0] && !lower_hex(sc.checksum, 128)) || sc.size < 0 || !sc.run || !sc.formatter)
            abort();
        for (int i = 0; i < sc.n_data_id; i++)
            if (!bfs_is_one_component(sc.data_id_values[i]))
                abort();
        for (int d = 0; d < sc.ndims; d++) {
            bool found = false;
            for (int i = 0; i < sc.n_data_id; i++)
                found |= !strcmp(sc.dims[d], sc.data_id_names[i]);
            if (!found)
                abort();
        }
    }
    bfs_sidecar_free(&sc);
    free(msg);
    return 0;
}
