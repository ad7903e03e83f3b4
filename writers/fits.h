/*
 * fits.h - FITS files through cfitsio: the only module that includes it.
 *
 * Two uses, one translation of cfitsio's status codes to errno:
 *
 *  - Writing (synthetic raws, later merged headers): bfs_fits_create() opens
 *    a new file and the bfs_fits_* calls append HDUs, cards and pixels.  The
 *    handle carries a sticky error like cfitsio's own status: once a call
 *    fails, later calls do nothing, and bfs_fits_close() returns the first
 *    error.  A file whose writing failed is removed by bfs_fits_close().
 *
 *  - Reading (ingest): bfs_fits_validate() reads every HDU of a file, checks
 *    CHECKSUM/DATASUM where present, decompresses tile-compressed images, and
 *    says in one sentence what is wrong; bfs_fits_read_header() hands out the
 *    cards of one HDU.
 *
 * Names are taken literally: cfitsio's extended file-name syntax ("file.fits[1]",
 * "!file", "mem://", compression suffixes) is never interpreted, so a name
 * that comes from a user or a header cannot make cfitsio open something else.
 * A gzip-wrapped file (magic 1f 8b, whatever its extension) is read through
 * cfitsio's own gunzip into memory, as astropy and the Python Butler read it.
 *
 * Errors: negative errno.  -EBADMSG: the bytes are not valid FITS (truncated,
 * bad header, a checksum that does not match, data that do not decompress).
 * File-system errors keep their errno (ENOENT, EACCES, ENOSPC, ...).  -ENOMEM.
 * cfitsio's own message is logged once, under the tag "fits", by the one
 * translator in fits.c.
 *
 * Threads: Debian's cfitsio is built reentrant; different handles may be used
 * in different threads.  cfitsio's error-message stack is shared, so two
 * concurrent failures may log each other's detail.
 */
#ifndef BFS_FITS_H
#define BFS_FITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- writing ------------------------------------------------------------ */

typedef struct bfs_fits bfs_fits;

/* Create path (replacing an existing file), mode 0644.  On success *out is a
 * handle the caller must pass to bfs_fits_close(). */
int bfs_fits_create(const char *path, bfs_fits **out);

/* Append an image HDU: bitpix as in FITS (16, 32, -32, ...), naxis 0 for a
 * header-only primary. */
void bfs_fits_add_image(bfs_fits *f, int bitpix, int naxis, const long *naxes);

/* Cards of the current HDU.  comment may be NULL.  bfs_fits_key_dbl leaves
 * the card out for NAN (an undefined value is legal FITS but fitsverify
 * warns about it) and writes fixed-point with `decimals` digits. */
void bfs_fits_key_str(bfs_fits *f, const char *key, const char *value, const char *comment);
void bfs_fits_key_dbl(bfs_fits *f, const char *key, double value, int decimals,
                      const char *comment);
void bfs_fits_key_lng(bfs_fits *f, const char *key, long long value, const char *comment);
void bfs_fits_key_log(bfs_fits *f, const char *key, bool value, const char *comment);
void bfs_fits_comment(bfs_fits *f, const char *text);

/* Write n 32-bit pixels, the whole data unit of the current image HDU. */
void bfs_fits_write_i32(bfs_fits *f, const int32_t *pix, size_t n);

/* Stamp DATASUM and CHECKSUM on the current HDU.  The cards' comments carry
 * no time stamp (cfitsio's do), so the same content gives the same bytes. */
void bfs_fits_checksum(bfs_fits *f);

/* 0 or the first error so far (without closing). */
int bfs_fits_error(const bfs_fits *f);

/* Close and free f.  Returns the first error of the handle's life; after an
 * error the file is removed. */
int bfs_fits_close(bfs_fits *f);

/* ---- reading ------------------------------------------------------------ */

typedef struct bfs_fits_summary {
    int n_hdus;            /* primary included */
    int n_checksums;       /* HDUs whose CHECKSUM or DATASUM was verified */
    int n_bad_sums;        /* HDUs whose sums did not match (advisory rules) */
    int n_compressed;      /* tile-compressed image HDUs decompressed */
    bool gzip;             /* the whole file was gzip-wrapped */
} bfs_fits_summary;

/* What bfs_fits_validate() insists on.  NULL or zeroed: the defaults. */
typedef struct bfs_fits_rules {
    int max_hdus;          /* 0: 10000; more HDUs is -EFBIG */
    bool sums_advisory;    /* false (default): a CHECKSUM or DATASUM that does
                            * not match fails the file.  true: it is counted in
                            * n_bad_sums and logged, and the file passes (some
                            * real raws carry sums of an earlier form of the
                            * file, and astropy does not check by default) */
} bfs_fits_rules;

/* Read every HDU of path to its end: headers parse, data units are complete,
 * CHECKSUM/DATASUM match where present, tile-compressed images decompress.
 * On failure *errmsg (when not NULL) is a malloc'd sentence naming the HDU
 * and the fault, e.g. "HDU 3 (Segment12): DATASUM does not match the data";
 * the caller frees it.  rules and out may be NULL. */
int bfs_fits_validate(const char *path, const bfs_fits_rules *rules, bfs_fits_summary *out,
                      char **errmsg);

/* One header card.  type: 'C' string (value without quotes), 'L' logical
 * ("T"/"F"), 'I' integer, 'F' floating point, 'X' complex, 'U' no value
 * (COMMENT, HISTORY, blank, or a keyword with an undefined value). */
typedef struct bfs_fits_card {
    char key[80];      /* up to 75 characters with HIERARCH */
    char value[72];
    char comment[80];
    char type;
} bfs_fits_card;

/* The cards of HDU hdu (1 = primary) of path, in file order.  On success
 * *cards is a malloc'd array of *n cards the caller frees. */
int bfs_fits_read_header(const char *path, int hdu, bfs_fits_card **cards, size_t *n,
                         char **errmsg);

/* The first card named key (case-sensitive, as FITS keywords are upper
 * case), or NULL. */
const bfs_fits_card *bfs_fits_find(const bfs_fits_card *cards, size_t n, const char *key);

#endif
