/*
 * source.h - where a dataset's bytes come from.
 *
 * A location is what the registry stores in file_datastore_records.path:
 * either a path relative to the datastore root, or an absolute URI.  Today
 * local files are served: relative paths under a local datastore root and
 * file:// URIs.  Remote schemes (s3://, http(s)://) answer -EPROTONOSUPPORT
 * until the remote fetchers land.
 *
 * A relative location that would leave the datastore root (an absolute
 * path, or a ".." component) is refused with -EACCES: no value read from the
 * registry may point the mount outside the datastore.
 *
 * Errors: negative errno.  Threads: a bfs_source may be used by several
 * threads at once (pread has no shared offset); open/close are not
 * concurrent with use.
 */
#ifndef BFS_SOURCE_H
#define BFS_SOURCE_H

#include <stdint.h>
#include <sys/types.h>

typedef struct bfs_source bfs_source;

/* Resolve location against root into a local path (malloc'd into *out).
 * -EPROTONOSUPPORT for remote locations, -EACCES for escaping ones. */
int bfs_source_local_path(const char *root, const char *location, char **out);

/* Open for reading.  -ENOENT when the file is missing. */
int bfs_source_open(const char *root, const char *location, bfs_source **out);

/* Read up to n bytes at off; returns bytes read (0 at end) or -errno. */
ssize_t bfs_source_pread(bfs_source *s, void *buf, size_t n, off_t off);

/* The underlying descriptor, for zero-copy replies (splice); -1 if none. */
int bfs_source_fd(const bfs_source *s);

/* Current size of the object. */
int64_t bfs_source_size(const bfs_source *s);

void bfs_source_close(bfs_source *s);

/* Size of the object without opening it (for registries that do not
 * record file_size); -errno when it cannot be found. */
int bfs_source_stat_size(const char *root, const char *location, int64_t *size);

#endif
