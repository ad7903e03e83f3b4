/*
 * fdio.h - reading a range of a file descriptor in chunks, for the digests
 * that run over a file's bytes (BLAKE2b-512 in registry/write.c, MD5 and
 * Adler-32 in writers/sidecar.c).
 */
#ifndef BFS_FDIO_H
#define BFS_FDIO_H

#include <stddef.h>
#include <stdint.h>

/* Called with each chunk read, in order; a non-zero return stops the read
 * and is returned. */
typedef int (*bfs_chunk_fn)(void *ctx, const void *data, size_t n);

/* Read bytes [from, from + size) of fd with pread into buf (buflen bytes;
 * the caller's, to reuse across calls: a fresh buffer costs a page fault per
 * page on every read) or, when buf is NULL, into one of 1 MiB of its own,
 * and hand each chunk to fn.  0; -errno of pread; -EIO when the file ends
 * before from + size; -ENOMEM; or fn's non-zero return. */
int bfs_pread_chunks(int fd, int64_t from, int64_t size, void *buf, size_t buflen, bfs_chunk_fn fn, void *ctx);

#endif
