/* fdio.c - see fdio.h. */
#include "fdio.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

int bfs_pread_chunks(int fd, int64_t from, int64_t size, void *buf, size_t buflen, bfs_chunk_fn fn, void *ctx)
{
    void *own = NULL;
    if (!buf || !buflen) {
        buflen = 1 << 20;
        buf = own = malloc(buflen);
    }
    int ret = buf ? 0 : -ENOMEM;
    for (int64_t off = from; ret == 0 && off < from + size;) {
        size_t want = from + size - off < (int64_t)buflen ? (size_t)(from + size - off) : buflen;
        ssize_t n = pread(fd, buf, want, off);
        if (n <= 0)
            ret = n < 0 ? -errno : -EIO;
        else if ((ret = fn(ctx, buf, (size_t)n)) == 0)
            off += n;
    }
    free(own);
    return ret;
}
