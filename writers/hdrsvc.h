/*
 * hdrsvc.h - the Header Service merge: fetch the per-image YAML document the
 * summit's Header Service publishes and merge its cards into a raw FITS file
 * before the file is stored.
 *
 * The document maps extension names to lists of {keyword, value, comment}:
 *
 *     PRIMARY:                     cards for HDU 1
 *     R22S00_PRIMARY: (ComCam)     the sensor's own cards for HDU 1
 *     PRIMARY_R01S01: (LATISS)     the same, as the LATISS example spells it
 *     R22S00_Segment10:            cards for the HDU whose EXTNAME is Segment10
 *     Segment10:                   the same without a sensor prefix
 *
 * bfs_hs_merge() writes PRIMARY, then the sensor's primary block, into HDU 1
 * and each `<sensor>_<EXTNAME>` (or plain `<EXTNAME>`) block into the HDU of
 * that EXTNAME, in document order; blocks of other sensors (`RxxSyy_...`,
 * `PRIMARY_RxxSyy`) are ignored.  A file that names no sensor (sensor NULL:
 * the 2019 LATISS raws have no RAFTBAY or CCDSLOT) takes the sensor of a
 * document whose sensor blocks all name the same one (curated_example.yml's
 * R01S01); with several, only PRIMARY and unprefixed blocks apply.  The rules
 * (docs/ingest.md, "Header Service merge"):
 *
 *  - The Header Service is the authority for the keywords it publishes: its
 *    value replaces the file's.  A replaced value that differed is a
 *    conflict, counted and listed (up to BFS_HS_MAX_CONFLICTS) in the report.
 *    Values compare as values (3 equals 3.), so a merge that changes nothing
 *    writes nothing.  An empty comment keeps the card's comment.
 *  - Structural keywords (SIMPLE, BITPIX, NAXIS*, EXTEND, XTENSION, PCOUNT,
 *    GCOUNT, EXTNAME, table and tile-compression keywords, BSCALE, BZERO,
 *    BLANK, CHECKSUM, DATASUM, CONTINUE, END) are never touched: counted as
 *    skipped.
 *  - COMMENT, HISTORY and blank-keyword (`keyword: null`) cards are appended
 *    unless the same text is already in that HDU verbatim, so a second merge
 *    adds nothing.  Their text is the entry's comment (the Header Service puts
 *    it there), else its value.
 *  - Types follow YAML 1.1 as PyYAML resolves them (config.h,
 *    bfs_yaml_resolve): int -> integer card, float -> floating card, bool ->
 *    logical, string (quoted, or any other scalar) -> string card, long
 *    strings with CONTINUE cards; null, and a float that is inf or nan, ->
 *    a keyword with an undefined value.  Keywords of up to 8 characters are
 *    upper-cased; longer ones are written as cfitsio does (HIERARCH).
 *  - An entry cfitsio refuses (bad characters, a list as value, an int
 *    beyond 64 bits, too long for a card) is counted as invalid and logged;
 *    it does not fail the merge.
 *  - CHECKSUM and DATASUM are restamped on every HDU that changed (without
 *    time stamps in their comments, so equal content gives equal bytes).
 *
 * Crash behaviour: the merge works on a copy, `<path>.merge` (a plain FITS
 * file: a gzip-wrapped input is decompressed into it), fsyncs it, renames it
 * over path and fsyncs the directory; a crash at any point leaves either the
 * old file or the merged one at path (and perhaps a stale .merge, replaced
 * by the next merge).  When nothing changes and the input is not gzip, path
 * is not rewritten at all.  Merging the same document twice gives the same
 * bytes as merging it once.
 *
 * Errors: 0 or a negative errno; on failure *errmsg (when errmsg is not NULL)
 * is a malloc'd sentence saying what failed and where, which the caller
 * frees; on success *errmsg is NULL.
 *
 * Threads: no shared state.  Calls on different paths may run concurrently;
 * two merges of the same path at once are not allowed (they share
 * `<path>.merge`): the ingest merges a file once, on its final close.
 */
#ifndef BFS_HDRSVC_H
#define BFS_HDRSVC_H

#include "http.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The largest document bfs_hs_fetch accepts (-EFBIG beyond). */
#define BFS_HS_MAX_DOC (16u << 20)

/* Find the Header Service document of obsid and return its bytes.
 *
 * dir (may be NULL): a directory holding `<obsid>.header`, `<obsid>.yaml` or
 * `<obsid>.yml` (tried in that order; an empty file counts as not there yet,
 * so the Header Service should write by rename).  url_template (may be NULL):
 * an http(s):// or s3:// URL in which every "{obsid}" is replaced by obsid
 * (nothing else is encoded), fetched by GET through fetchers/http.h with the
 * default transfer settings (TLS verified).  At least one must be given; with
 * both, each round tries the directory, then the URL.
 *
 * Rounds repeat until wait_ms has passed since the call: every 100 ms for
 * the directory; with a URL, after 100 ms doubling to 1 s, each request
 * bounded by the time left (at least 100 ms, so wait_ms 0 still makes one
 * attempt).  A 404 or a transient error (timeout, refused, 5xx) is retried;
 * a permanent one (401/403, TLS verification, a malformed URL) ends the call
 * with its errno.
 *
 * obsid must be one path component: not empty, "." or "..", no '/' and no
 * control character (-EINVAL otherwise).
 *
 * On success *text is a malloc'd copy of the document (NUL-terminated; *len
 * bytes without the NUL) that the caller frees.  Errors: -ETIMEDOUT when no
 * document arrived in time, with a sentence naming where it looked and the
 * last error; -EFBIG for a document larger than BFS_HS_MAX_DOC; -EINVAL;
 * -ENOMEM; the open/read errno of a file that exists but cannot be read; the
 * http.h errno of a permanent HTTP failure.  *text is NULL and *len 0 on
 * error. */
int bfs_hs_fetch(const char *dir, const char *url_template, const char *obsid, int64_t wait_ms,
                 char **text, size_t *len, char **errmsg);
/* The same through http (the daemon's, configured by the fetch: section:
 * timeouts, CA file, bearer token); NULL: a bfs_http of default settings
 * made for the call. */
int bfs_hs_fetch_with(bfs_http *http, const char *dir, const char *url_template, const char *obsid,
                      int64_t wait_ms, char **text, size_t *len, char **errmsg);

#define BFS_HS_MAX_CONFLICTS 8

/* One replaced value that differed, for the log.  Values are FITS value
 * fields ("'r       '", "3.35", "T", "" for undefined). */
typedef struct bfs_hs_conflict {
    char keyword[72];
    int hdu;                  /* 1 = primary */
    char extname[72];         /* of that HDU, "" when none */
    char old_value[72];
    char new_value[72];
} bfs_hs_conflict;

/* What a merge did.  Counts are of document entries, for our sensor's
 * blocks only. */
typedef struct bfs_hs_report {
    int added;                /* keywords the file did not have */
    int replaced;             /* keywords rewritten (includes conflicts) */
    int conflicts;            /* ... of which the value differed */
    int unchanged;            /* keywords already as published */
    int undefined;            /* entries written as undefined values (null, inf, nan) */
    int commentary;           /* COMMENT/HISTORY/blank cards appended */
    int skipped_structural;   /* structural keywords left alone */
    int invalid;              /* entries refused (see hdrsvc.h rules) */
    int blocks_merged;        /* blocks that had an HDU */
    int blocks_without_hdu;   /* our sensor's blocks whose EXTNAME the file lacks */
    int blocks_other;         /* blocks of other sensors, ignored */
    int hdus_changed;         /* HDUs whose cards changed (sums restamped) */
    bool decompressed;        /* path was gzip-wrapped and is now plain FITS */
    bool rewritten;           /* path was replaced by the merged copy */
    char sensor[8];           /* the sensor whose blocks were merged, "" for none */
    bool sensor_from_document; /* ... the document's only one (sensor was NULL) */
    char first_missing[72];   /* name of the first block without an HDU, "" if none */
    int n_listed;             /* entries of conflict[] in use */
    bfs_hs_conflict conflict[BFS_HS_MAX_CONFLICTS];
} bfs_hs_report;

/* Merge the document (len bytes at text, need not be NUL-terminated) into
 * the FITS file at path for sensor ("R22S00"; "R22_S00" is accepted too; NULL:
 * the document's only sensor, else only PRIMARY and unprefixed blocks), as
 * described above.  report (may be
 * NULL) is zeroed and filled, also as far as it got on failure.
 *
 * Errors: -EINVAL for a document that is not YAML or not a mapping of lists
 * of mappings (the sentence names the line); -EBADMSG when path is not a
 * valid FITS file (or gzip that does not inflate); -EINVAL for a bad
 * argument; file-system errnos (ENOENT, EACCES, ENOSPC, EIO, ...) from
 * reading path or writing the copy; -ENOMEM.  On error path is unchanged
 * and the copy is removed. */
int bfs_hs_merge(const char *path, const char *text, size_t len, const char *sensor,
                 bfs_hs_report *report, char **errmsg);

/* One line for the log: "12 added, 3 replaced (1 conflict: EXPTIME in HDU 1
 * 3. -> 3.35), ...".  Writes at most size bytes (NUL included) into buf. */
void bfs_hs_report_format(const bfs_hs_report *r, char *buf, size_t size);

#endif
