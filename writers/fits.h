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
 *  - Updating (the Header Service merge, hdrsvc.h): bfs_fits_open_update()
 *    opens an existing plain file read-write; bfs_fits_select() moves between
 *    its HDUs; bfs_fits_update_key() and bfs_fits_add_commentary() change
 *    cards and say what they changed; bfs_fits_checksum() restamps the sums.
 *    bfs_fits_gunzip() makes the plain copy of a gzip-wrapped file that
 *    cfitsio cannot update in place.
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

/* The same, for a file that exists only in memory: its cards are read back
 * with bfs_fits_header(), and bfs_fits_close() frees it. */
int bfs_fits_create_mem(bfs_fits **out);

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
 * error a file made by bfs_fits_create() is removed (one opened by
 * bfs_fits_open_update() is left to its owner). */
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
 * CHECKSUM/DATASUM match where present, tile-compressed images decompress,
 * and there are at least as many extensions as the primary header's NEXTEND
 * announces, when it has one (a file cut at an HDU boundary is otherwise
 * whole).
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

/* Whether key names a commentary card (COMMENT, HISTORY, or blank): text,
 * not a keyword with a value; a header may hold any number of them. */
bool bfs_fits_is_commentary(const char *key);

/* The cards of HDU hdu (1 = primary) of path, in file order.  On success
 * *cards is a malloc'd array of *n cards the caller frees. */
int bfs_fits_read_header(const char *path, int hdu, bfs_fits_card **cards, size_t *n,
                         char **errmsg);

/* The cards of f's current HDU as written so far, as bfs_fits_read_header()
 * reads them from a file.  The caller frees *cards.  After an earlier error
 * on f, that error. */
int bfs_fits_header(bfs_fits *f, bfs_fits_card **cards, size_t *n);

/* Every HDU's cards of path, in HDU order (1 = primary), the file opened
 * once: cb gets each HDU's cards (valid during the call only).  A non-zero
 * return of cb stops the walk and is returned.  Otherwise 0, or -errno as
 * bfs_fits_read_header (an unreadable header stops the walk, *errmsg names
 * the HDU).  The data units are not read or checked (bfs_fits_validate does
 * that).  A gzip-wrapped file is inflated once, not once per HDU. */
typedef int (*bfs_fits_header_cb)(void *ctx, int hdu, const bfs_fits_card *cards, size_t n);
int bfs_fits_each_header(const char *path, bfs_fits_header_cb cb, void *ctx, char **errmsg);

/* Where one HDU lies in a plain FITS file, in bytes from its start: its
 * header's first byte, its data unit's first byte (the header's end, padding
 * included) and the byte after its data unit (padding included). */
typedef struct bfs_fits_extent {
    long long head, data, end;
} bfs_fits_extent;

/* Every HDU's extent in path, in HDU order: *out is a malloc'd array of *n
 * the caller frees.  -EBADMSG for a gzip-wrapped file (its offsets are not
 * the file's), else 0 or -errno as bfs_fits_read_header. */
int bfs_fits_extents(const char *path, bfs_fits_extent **out, int *n, char **errmsg);

/* The first card named key (case-sensitive, as FITS keywords are upper
 * case), or NULL. */
const bfs_fits_card *bfs_fits_find(const bfs_fits_card *cards, size_t n, const char *key);

/* ---- updating ----------------------------------------------------------- */

/* Open the existing plain FITS file path read-write, literally.  A
 * gzip-wrapped file is -EBADMSG (cfitsio cannot write it back: make a plain
 * copy with bfs_fits_gunzip()).  On success *out is positioned at HDU 1
 * and must be passed to bfs_fits_close(); writes reach the file at the
 * latest there (no fsync: the caller syncs).  *errmsg as for
 * bfs_fits_validate(). */
int bfs_fits_open_update(const char *path, bfs_fits **out, char **errmsg);

/* Write the decompressed bytes of the gzip-wrapped file src to dst
 * (replaced, mode 0644, not synced): byte for byte what gunzip(1) writes.
 * -EBADMSG when src is not gzip or does not inflate; dst is removed on
 * failure. */
int bfs_fits_gunzip(const char *src, const char *dst, char **errmsg);

/* The number of HDUs (>= 1), or -errno. */
int bfs_fits_hdu_count(bfs_fits *f);

/* Make HDU hdu (1 = primary) current; extname (size bytes, may be NULL)
 * gets its EXTNAME, "" when it has none.  -ENOENT past the last HDU. */
int bfs_fits_select(bfs_fits *f, int hdu, char *extname, size_t size);

/* A value for bfs_fits_update_key.  type as in bfs_fits_card: 'C' string s
 * (printable ASCII; longer than one card: CONTINUE cards, as cfitsio's long
 * string convention writes them), 'I' integer i, 'F' floating point d
 * (finite; written with the fewest of 15-17 significant digits that give d
 * back), 'L' logical b, 'U' undefined (the value field left blank). */
typedef struct bfs_fits_value {
    char type;
    const char *s;
    long long i;
    double d;
    bool b;
} bfs_fits_value;

/* What bfs_fits_update_key did. */
typedef enum bfs_fits_update {
    BFS_FITS_SAME,       /* the card already said it: nothing written */
    BFS_FITS_ADDED,      /* the keyword was not there: appended */
    BFS_FITS_REWRITTEN,  /* same value, other comment or other type of the same
                          * number (3 written where 3. was): card rewritten */
    BFS_FITS_CHANGED,    /* the value differed: replaced */
} bfs_fits_update;

/* The room bfs_fits_update_key needs for a value's text (a FITS value field). */
#define BFS_FITS_VALUE_TEXT 72

/* Set keyword key of the current HDU to v, in place when it exists (else
 * appended at the end of the header).  comment NULL or "": the card keeps
 * its comment.  Values compare as values: strings without trailing blanks
 * (FITS 4.2.1), numbers numerically (3 equals 3. and 3.0E0), so a rewrite
 * happens only when something would read differently.  old and new_ (may
 * be NULL; BFS_FITS_VALUE_TEXT bytes) get the value fields as FITS writes
 * them ("'LATISS  '", "3.35", "T", "" when undefined or absent) before and
 * after.  Returns a bfs_fits_update (>= 0) or: -EINVAL when cfitsio refuses
 * the keyword or value (illegal characters, too long for a card: logged at
 * debug; the handle stays usable), another -errno for a failed write (the
 * handle's sticky error). */
int bfs_fits_update_key(bfs_fits *f, const char *key, const bfs_fits_value *v,
                        const char *comment, char *old, char *new_);

/* Append commentary card(s) to the current HDU unless the same text is
 * already there verbatim: key is "COMMENT", "HISTORY" or "" (a blank
 * keyword); text (printable ASCII) fills columns 9-80, and text longer than
 * 72 characters takes consecutive cards, which must all be there, in order,
 * to count as present.  Trailing blanks do not count.  1 appended, 0
 * already there, -EINVAL for a bad text, another -errno for a failed write. */
int bfs_fits_add_commentary(bfs_fits *f, const char *key, const char *text);

#endif
