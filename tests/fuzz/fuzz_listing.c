/*
 * fuzz_listing.c - WebDAV PROPFIND multistatus and S3 ListObjectsV2 replies
 * (fetchers/listing.c), through the same push parser and name checks that
 * bfs_list_dir feeds from the network (listing_i.h: bfs_list_parse).
 *
 * Input: 2 bytes of parameters, then the reply body.
 *   byte 0  bit 0: S3 (else WebDAV); bit 1: list the root ("/" or "")
 *           instead of "/data/d/" or "d/"
 *   byte 1  chunk size for the parser minus 1
 * Checked: every name given is one path component (not empty, ".", "..",
 * no '/', no control character), entries and errors are consistent, and an
 * S3 page's token is a string.
 */
#include "listing_i.h"
#include "fuzz_util.h"

#include <errno.h>
#include <string.h>

static int check_entry(void *ctx, const bfs_list_entry *e)
{
    size_t *n = ctx;
    size_t len = strlen(e->name);
    if (!len || !strcmp(e->name, ".") || !strcmp(e->name, "..") || strchr(e->name, '/'))
        abort();
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)e->name[i] < 0x20 || e->name[i] == 0x7f)
            abort();
    if (e->is_dir && e->size != -1)
        abort();
    if (e->size < -1)
        abort();
    (*n)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    fz_setup();
    bool s3 = data[0] & 1, root = data[0] & 2;
    const char *base = s3 ? (root ? "" : "d/") : (root ? "/" : "/data/d/");
    size_t chunk = (size_t)data[1] + 1;
    size_t n = 0;
    bfs_list_stats st = {0};
    bool trunc = false;
    char *next = NULL;
    int rc = bfs_list_parse(s3 ? BFS_LIST_S3 : BFS_LIST_DAV, base, (const char *)data + 2, size - 2, chunk,
                            check_entry, &n, &st, &trunc, &next);
    if (rc > 0 || (rc < 0 && rc != -EPROTO && rc != -ENOMEM))
        abort();
    if ((int64_t)n != st.entries)
        abort();
    if (rc < 0 && (next || trunc))
        abort();
    if (next)
        (void)strlen(next);
    free(next);
    return 0;
}
