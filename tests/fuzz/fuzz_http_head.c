/*
 * fuzz_http_head.c - HTTP reply heads and bodies (fetchers/http.c), through
 * the very callbacks libcurl calls (http_i.h: bfs_http_replay).
 *
 * Input: 8 bytes of parameters, then the reply as the server sent it.
 *   bytes 0-3  off (little-endian, below 1 MiB)
 *   bytes 4-5  length of the range minus 1 (below 64 KiB)
 *   byte  6    chunk size for the body callback minus 1
 *   byte  7    bit 0: a pin (size, ETag, Last-Modified from the range)
 * Checked: the body never goes past the range, an accepted head matches
 * the request, and a 206 is only accepted with its exact Content-Range.
 */
#include "http_i.h"
#include "fuzz_util.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8)
        return 0;
    fz_setup();
    int64_t off = (int64_t)(data[0] | data[1] << 8 | (uint32_t)(data[2] & 0x0f) << 16);
    size_t len = (size_t)(data[4] | data[5] << 8) + 1;
    size_t chunk = (size_t)data[6] + 1;
    bfs_object pin = {.size = off + (int64_t)len + (data[7] >> 1), .etag = "\"abc\"",
                      .last_modified = "Wed, 21 Oct 2015 07:28:00 GMT"};
    /* buf exactly the range, so ASan catches one byte too many */
    char *buf = malloc(len);
    if (!buf)
        abort();
    bfs_http_replay_result r;
    int rc = bfs_http_replay((const char *)data + 8, size - 8, off, off + (int64_t)len - 1,
                             data[7] & 1 ? &pin : NULL, chunk, buf, &r);
    if (rc != r.reject || rc > 0)
        abort();
    if (r.got > len)
        abort();
    if (r.body_ok) {
        if (r.status != 200 && r.status != 206)
            abort();
        if (r.expect > (int64_t)len)
            abort();
        if (r.status == 200 && off != 0)
            abort(); /* a whole object is only usable from offset 0 */
        if (r.expect >= 0 && r.got > (size_t)r.expect)
            abort();
    } else if (r.got) {
        abort(); /* an error page never reaches the caller's buffer */
    }
    free(buf);
    return 0;
}
