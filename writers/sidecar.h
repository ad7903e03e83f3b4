/*
 * sidecar.h - the metadata that travels with a replicated dataset file:
 * DIR/<path>.butler.json next to DIR/<path> (issue 12).  docs/transfer.md,
 * "Sidecars", is the format's one description; `butlerfs export` writes it
 * (bfs_sidecar_build) and a receiving site's ingest reads it
 * (bfs_sidecar_parse), which ingests the file under exactly the id, dataId
 * and run it holds.
 *
 * The checksums a sidecar carries (adler32, MD5) are computed while the
 * bytes stream by (bfs_sums), on the copy's way out and on the receiver's
 * way in.
 *
 * Errors: negative errno; sentences through char **errmsg (malloc'd, the
 * caller frees).  No shared state; any thread.
 */
#ifndef BFS_SIDECAR_H
#define BFS_SIDECAR_H

#include "registry.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BFS_SIDECAR_SUFFIX ".butler.json"
#define BFS_SIDECAR_MAX_BYTES (1 << 20)  /* a longer sidecar is refused unread */
#define BFS_SIDECAR_MAX_DATAID 32         /* required and implied dimensions */

/* ---- checksums of a byte stream ---- */

typedef struct bfs_sums bfs_sums;
typedef struct bfs_file_sums {
    int64_t size;
    char adler32[9]; /* 8 lowercase hex digits (zlib's adler32, big-endian) */
    char md5[33];    /* 32 lowercase hex digits */
} bfs_file_sums;

/* new: NULL when out of memory.  update: 0 or -ENOMEM.  final: fills out
 * (the state is finished; only free is left), 0 or -EIO.  free: NULL ok. */
bfs_sums *bfs_sums_new(void);
int bfs_sums_update(bfs_sums *s, const void *buf, size_t len);
int bfs_sums_final(bfs_sums *s, bfs_file_sums *out);
void bfs_sums_free(bfs_sums *s);

/* ---- writing ---- */

/* The sidecar of file record r (a dataset without a component; see
 * bfs_registry_dataset_records) whose bytes have sums, as malloc'd JSON
 * text ending in a newline, into *json_out.  Deterministic: the same
 * registry content and bytes give the same text.  0, -EINVAL (r has a
 * component, or a path bfs_sidecar_path_ok refuses), -ENOMEM, or the
 * registry's errors. */
int bfs_sidecar_build(bfs_registry *reg, const bfs_dataset_record *r, const bfs_file_sums *sums,
                      char **json_out, char **errmsg);

/* True when rel may name a file below an export directory: relative, not
 * empty, at most 4095 bytes, no empty, "." or ".." segment, no control
 * character, no backslash, no "://". */
bool bfs_sidecar_path_ok(const char *rel);

/* ---- reading ---- */

#define BFS_SIDECAR_MAX_COLUMNS 48       /* columns of one dimension record */

/* One dimension record a sidecar carries (ref.dataId.records), as column
 * values for bfs_registry_add_record: a "timespan" pair becomes the columns
 * timespan_begin and timespan_end (TAI ns), true/false 1/0; a "region"
 * (encoded differently in each registry) is left out. */
typedef struct bfs_sidecar_record {
    char *element;
    bfs_record_value v[BFS_SIDECAR_MAX_COLUMNS];
    int n;
    char *strs[2 * BFS_SIDECAR_MAX_COLUMNS]; /* what v's strings point to (owned) */
    int nstrs;
} bfs_sidecar_record;

typedef struct bfs_sidecar {
    char id[33];              /* the dataset id, 32 lowercase hex (the sidecar writes it dashed) */
    char *run;
    char *dataset_type;
    char *storage_class;
    char *dims[BFS_MAX_DIMS]; /* the type's required dimensions, as listed */
    int ndims;
    bool is_calibration;
    int n_data_id;            /* the dataId: required and implied dimensions */
    char *data_id_names[BFS_SIDECAR_MAX_DATAID];
    char *data_id_values[BFS_SIDECAR_MAX_DATAID]; /* as text: integers in decimal */
    int64_t size;
    char adler32[9], md5[33];
    char checksum[129];       /* "" when the sidecar has none */
    char *formatter;
    char *path;               /* relative to the source datastore root; passed bfs_sidecar_path_ok */
    bfs_sidecar_record records[BFS_SIDECAR_MAX_DATAID]; /* in the sidecar's order */
    int n_records;
} bfs_sidecar;

/* Parse and validate len bytes of sidecar JSON into *out (zeroed first;
 * release with bfs_sidecar_free, also after a failure).  Strict: every
 * required key present with its type; ids, checksums of their exact hex
 * form; dimension names safe identifiers ([A-Za-z_][A-Za-z0-9_]*, at most
 * 64); dataId values integers or strings usable as one path component
 * (bfs_is_one_component, shorter than BFS_MAX_VALUE); every required
 * dimension in the dataId; run segments, type and storage class names safe.
 * Unknown keys are ignored (later versions may add some).  0, or -EINVAL
 * (-E2BIG when longer than BFS_SIDECAR_MAX_BYTES, -ENOMEM) with *errmsg
 * naming the first problem. */
int bfs_sidecar_parse(const char *json, size_t len, bfs_sidecar *out, char **errmsg);
void bfs_sidecar_free(bfs_sidecar *s);

#endif
