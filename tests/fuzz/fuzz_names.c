/*
 * fuzz_names.c - path names (common/strutil.c escaping, fs/names.c).
 *
 * Round trips that must hold for any registry value x:
 *   unescape(escape(x)) == x, and the escaped name is one safe component
 *   (no '/', no control byte, not "" / "." / "..");
 *   parse_dim(dim_entry(d, x)) == (d, x);
 *   for any name y that unescapes, escape(unescape(y)) unescapes to the same.
 * The extension, leaf and disambiguation helpers run on the same bytes and
 * must stay within their buffers (ASan) and give safe components.
 */
#include "names.h"
#include "strutil.h"
#include "fuzz_util.h"

#include <errno.h>
#include <string.h>

static void check_component(const char *name, int n)
{
    if (n != (int)strlen(name) || n == 0 || !strcmp(name, ".") || !strcmp(name, ".."))
        abort();
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p == '/' || *p < 0x20 || *p == 0x7f)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *x = fz_string(data, size); /* a registry value stops at its first NUL */
    char esc[BFS_NAME_MAX], back[BFS_NAME_MAX];

    int n = bfs_name_escape(x, esc, sizeof esc);
    if (n >= 0) {
        check_component(esc, n);
        int m = bfs_name_unescape(esc, back, sizeof back);
        if (m != (int)strlen(x) || strcmp(back, x) != 0)
            abort();
    } else if (n != -ENAMETOOLONG || esc[0] != '\0') {
        abort();
    }

    char entry[BFS_NAME_MAX], dim[64], value[BFS_NAME_MAX];
    if (bfs_names_dim_entry("detector", x, entry, sizeof entry) >= 0) {
        if (bfs_names_parse_dim(entry, dim, sizeof dim, value, sizeof value) != 0 ||
            strcmp(dim, "detector") != 0 || strcmp(value, x) != 0)
            abort();
    }

    /* x as a name typed by a user: whatever unescapes re-escapes to a name
     * that unescapes to the same value */
    n = bfs_name_unescape(x, back, sizeof back);
    if (n >= 0) {
        char again[BFS_NAME_MAX * 3], back2[BFS_NAME_MAX];
        int e = bfs_name_escape(back, again, sizeof again);
        if (e < 0 || bfs_name_unescape(again, back2, sizeof back2) != n || strcmp(back, back2) != 0)
            abort();
    }
    (void)bfs_names_parse_dim(x, dim, sizeof dim, value, sizeof value);

    char ext[32];
    bfs_names_extension(x, ext, sizeof ext);
    if (strlen(ext) > 16)
        abort();

    /* A leaf name with x as every value, as component and as the path. */
    bfs_dataset_type dt = {.name = "raw", .ndims = 3};
    bfs_dataset_file f = {.values = {"LSSTCam", x, x}, .component = size % 2 ? x : NULL,
                          .path = x, .has_timespan = size % 3 == 0,
                          .timespan_begin = size > 8 ? (int64_t)((uint64_t)data[0] << 56 | size) : 0,
                          .timespan_end = INT64_MAX - (int64_t)size};
    char leaf[BFS_NAME_MAX];
    n = bfs_names_file(&dt, &f, leaf, sizeof leaf);
    if (n >= 0) {
        check_component(leaf, n);
        if (bfs_names_disambiguate(leaf, sizeof leaf, "0123456789abcdef0123456789abcdef", x) == 0)
            check_component(leaf, (int)strlen(leaf));
    }
    free(x);
    return 0;
}
