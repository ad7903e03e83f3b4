/*
 * durable.h - small files that must survive a crash, and the directories
 * that hold them: the ingest's intent records and the transfer queue's job
 * files share these, so both keep the same promise.
 *
 * bfs_durable_write(path, text, len): the file at path holds exactly text
 * once it returns 0, durably: written to "<path>.tmp" (mode 0600),
 * fdatasync'd, renamed over path, and path's directory fsync'd.  A crash
 * leaves either the old file or the new one (and perhaps a stale .tmp).
 * bfs_durable_move(from, to): rename, then fsync both directories.
 *
 * Errors: negative errno.  No shared state; any thread.
 */
#ifndef BFS_DURABLE_H
#define BFS_DURABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

int bfs_durable_write(const char *path, const char *text, size_t len);
/* The same with the file's mode (before the umask) instead of 0600. */
int bfs_durable_write_mode(const char *path, const char *text, size_t len, mode_t mode);
int bfs_durable_move(const char *from, const char *to);
/* fsync of a directory; 0 or -errno. */
int bfs_fsync_dir(const char *dir);
/* mkdir -p of the directories above path (0755; 0700 when private_dirs),
 * each new one's entry made durable (its parent fsync'd), so that a file
 * put below and made durable is found after a power cut too. */
int bfs_make_parents(const char *path, bool private_dirs);
/* The directory part of path (malloc'd; "." when none). */
char *bfs_dir_of(const char *path);

#endif
