/*
 * export.h - copy dataset files out of a repository, each with its sidecar,
 * for another site (`butlerfs export`, issue 12; docs/transfer.md,
 * "Export" and "Sidecars").
 *
 * One call exports one file record: the bytes go to DIR/<path relative to
 * the datastore root> through "<that>.tmp", fdatasync and a rename that
 * never replaces a file (renameat2 RENAME_NOREPLACE), then the sidecar
 * DIR/<path>.butler.json the same way, last: a receiver that sees the
 * sidecar knows the file is complete.  Adler-32 and MD5 are computed while
 * copying; the size the registry records and its BLAKE2b-512 checksum,
 * when it has one, are checked against the bytes before the file is
 * renamed into place.
 *
 * An existing file is never overwritten: one with the same bytes (and a
 * sidecar that is missing or the same) is skipped; anything else is refused.
 *
 * Errors: negative errno; sentences through char **errmsg (malloc'd, the
 * caller frees).  No shared state: one call per file, any thread.
 */
#ifndef BFS_EXPORT_H
#define BFS_EXPORT_H

#include "registry.h"
#include "source.h"

#include <stdbool.h>
#include <stdint.h>

enum bfs_export_outcome {
    BFS_EXPORT_SKIPPED = 0, /* already there, the same bytes and sidecar */
    BFS_EXPORT_WRITTEN = 1, /* written (with dry_run: would be) */
};

/* Export file record r (from bfs_registry_dataset_records) of reg, read
 * through fetcher f, below directory dir (which must exist).  *bytes gets
 * the bytes written (dry run: that would be; skipped: 0).  dry_run writes
 * nothing, but reads an existing file to tell a skip from a conflict.
 * Returns a bfs_export_outcome, or: -EINVAL (a component record, a
 * location that is no plain relative path: an absolute URI, '..'), -EEXIST (a different
 * file or sidecar is in the way), -EIO (the bytes disagree with the
 * registry's size or checksum), or the errors of reading and writing. */
int bfs_export_record(bfs_registry *reg, bfs_fetcher *f, const char *dir, const bfs_dataset_record *r,
                      bool dry_run, int64_t *bytes, char **errmsg);

#endif
