/*
 * fits.c - the only cfitsio user (see fits.h).
 *
 * cfitsio reports through an int status that every call takes by pointer
 * and that makes later calls no-ops once set; the writer handle keeps that
 * style (a sticky status) so that a run of header writes is checked once.
 * fits_errno() is the one place where a status becomes an errno.
 */
#include "fits.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fitsio.h>
#include <fitsio2.h> /* uncompress2file: a byte-exact gunzip */

#include "log.h"
#include "strutil.h"

#define TAG "fits"
#define DEFAULT_MAX_HDUS 10000

_Static_assert(sizeof ((bfs_fits_card *)0)->key >= FLEN_KEYWORD, "card key too small");
_Static_assert(sizeof ((bfs_fits_card *)0)->value >= FLEN_VALUE, "card value too small");
_Static_assert(sizeof ((bfs_fits_card *)0)->comment >= FLEN_COMMENT, "card comment too small");

struct bfs_fits {
    fitsfile *f;
    char *path;
    int st;        /* cfitsio status of the first failure, 0 while all is well */
    int sys_errno; /* errno right after that failure */
    int err;       /* a negative errno that did not come from cfitsio */
    bool created;  /* by bfs_fits_create: chmod at close, removed after an error */
    void *mem;     /* by bfs_fits_create_mem: the file's bytes, freed at close */
    size_t mem_size;
};

/*
 * The one translation of a cfitsio status.  cfitsio keeps a stack of
 * messages; the first (most specific) is logged with the status text and
 * the stack cleared, so the next failure does not repeat it.  sys_errno is
 * errno as it was right after the failing call: cfitsio reports file-system
 * failures as FILE_NOT_OPENED, WRITE_ERROR, ... and loses the reason, which
 * errno often still holds.  When reading, every other status means the
 * bytes are not valid FITS (-EBADMSG); when writing, it is an I/O failure.
 * detail (size FLEN_ERRMSG, may be NULL) receives cfitsio's message.
 */
static int fits_errno(int status, const char *path, int sys_errno, bool reading, char *detail)
{
    char text[FLEN_STATUS] = "", msg[FLEN_ERRMSG] = "";
    fits_get_errstatus(status, text);
    fits_read_errmsg(msg);
    fits_clear_errmsg();
    /* bytes that are not FITS are bad input (the caller says what it does
     * about them); a failure to write is the daemon's own */
    if (reading)
        bfs_info(TAG, "cfitsio reading %s: %s (status %d)%s%s", path, text, status, msg[0] ? ": " : "", msg);
    else
        bfs_err(TAG, "cfitsio writing %s: %s (status %d)%s%s", path, text, status, msg[0] ? ": " : "", msg);
    if (detail)
        snprintf(detail, FLEN_ERRMSG, "%s", msg[0] ? msg : text);
    switch (status) {
    case MEMORY_ALLOCATION:
        return -ENOMEM;
    case FILE_NOT_CREATED:
    case FILE_NOT_OPENED:
    case READ_ERROR:
    case WRITE_ERROR:
    case FILE_NOT_CLOSED:
        switch (sys_errno) {
        case ENOSPC: case EDQUOT: case EACCES: case EPERM: case EROFS: case EISDIR:
        case ENOENT: case ENOTDIR: case EMFILE: case ENFILE: case ENAMETOOLONG: case EIO:
            return -sys_errno;
        }
        return reading ? -EBADMSG : -EIO;
    default:
        return reading ? -EBADMSG : -EIO;
    }
}

/* ---- writing ------------------------------------------------------------ */

/* Record the first failure: called right after each cfitsio call. */
static void note(bfs_fits *f)
{
    if (f->st && !f->sys_errno)
        f->sys_errno = errno;
}

/* cfitsio makes its global lock on first use without a lock of its own
 * (fitsio_init_lock): two threads opening their first files at once race
 * on it (ThreadSanitizer saw two ingest workers do so).  Every entry point
 * that opens a file initializes the library once first. */
static pthread_once_t cfitsio_ready = PTHREAD_ONCE_INIT;
static void cfitsio_init(void) { (void)fits_init_cfitsio(); }
static void cfitsio_once(void) { pthread_once(&cfitsio_ready, cfitsio_init); }

int bfs_fits_create(const char *path, bfs_fits **out)
{
    cfitsio_once();
    *out = NULL;
    bfs_fits *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return -ENOMEM;
    }
    /* fits_create_diskfile takes the name literally and refuses an
     * existing file. */
    if (unlink(path) < 0 && errno != ENOENT) {
        int e = errno;
        bfs_err(TAG, "cannot replace %s: %s", path, strerror(e));
        free(f->path);
        free(f);
        return -e;
    }
    errno = 0;
    fits_create_diskfile(&f->f, path, &f->st);
    f->created = true;
    if (f->st) {
        int rc = fits_errno(f->st, path, errno, false, NULL);
        free(f->path);
        free(f);
        return rc;
    }
    *out = f;
    return 0;
}

int bfs_fits_create_mem(bfs_fits **out)
{
    cfitsio_once();
    *out = NULL;
    bfs_fits *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup("(a file in memory)"))) {
        free(f);
        return -ENOMEM;
    }
    errno = 0;
    fits_create_memfile(&f->f, &f->mem, &f->mem_size, 2880, realloc, &f->st);
    if (f->st) {
        int rc = fits_errno(f->st, f->path, errno, false, NULL);
        free(f->mem);
        free(f->path);
        free(f);
        return rc;
    }
    *out = f;
    return 0;
}

void bfs_fits_add_image(bfs_fits *f, int bitpix, int naxis, const long *naxes)
{
    errno = 0;
    fits_create_img(f->f, bitpix, naxis, (long *)naxes, &f->st);
    note(f);
}

void bfs_fits_key_str(bfs_fits *f, const char *key, const char *value, const char *comment)
{
    errno = 0;
    fits_write_key_str(f->f, key, value, comment, &f->st);
    note(f);
}

void bfs_fits_key_dbl(bfs_fits *f, const char *key, double value, int decimals,
                      const char *comment)
{
    if (isnan(value))
        return;
    errno = 0;
    fits_write_key_fixdbl(f->f, key, value, decimals, comment, &f->st);
    note(f);
}

void bfs_fits_key_lng(bfs_fits *f, const char *key, long long value, const char *comment)
{
    errno = 0;
    fits_write_key_lng(f->f, key, (LONGLONG)value, comment, &f->st);
    note(f);
}

void bfs_fits_key_log(bfs_fits *f, const char *key, bool value, const char *comment)
{
    errno = 0;
    fits_write_key_log(f->f, key, value ? 1 : 0, comment, &f->st);
    note(f);
}

void bfs_fits_comment(bfs_fits *f, const char *text)
{
    errno = 0;
    fits_write_comment(f->f, text, &f->st);
    note(f);
}

void bfs_fits_write_i32(bfs_fits *f, const int32_t *pix, size_t n)
{
    errno = 0;
    fits_write_img(f->f, TINT, 1, (LONGLONG)n, (void *)pix, &f->st);
    note(f);
}

/* fits_write_chksum stamps the time of writing into the comments of the
 * CHECKSUM/DATASUM cards, which would make every run's files differ.  So
 * the sums are written with plain comments and CHECKSUM is then recomputed
 * the way fits_write_chksum does it (zeroed card, 1's complement sum of the
 * HDU, encoded complement). */
void bfs_fits_checksum(bfs_fits *f)
{
    unsigned long datasum = 0, hdusum = 0;
    char ascii[FLEN_VALUE];
    int *st = &f->st;
    errno = 0;
    fits_write_chksum(f->f, st);
    fits_modify_comment(f->f, "DATASUM", "data unit checksum", st);
    fits_modify_key_str(f->f, "CHECKSUM", "0000000000000000", "HDU checksum", st);
    fits_get_chksum(f->f, &datasum, &hdusum, st);
    if (!*st) {
        fits_encode_chksum(hdusum, 1, ascii);
        fits_modify_key_str(f->f, "CHECKSUM", ascii, "&", st);
    }
    note(f);
}

int bfs_fits_error(const bfs_fits *f)
{
    return f->err ? f->err : f->st ? -EIO : 0;
}

int bfs_fits_close(bfs_fits *f)
{
    if (!f)
        return 0;
    int cst = 0;
    errno = 0;
    fits_close_file(f->f, &cst); /* frees the fitsfile even after a failure */
    if (!f->st && cst) {
        f->st = cst;
        f->sys_errno = errno;
    }
    int rc = f->err;
    if (!rc && f->st)
        rc = fits_errno(f->st, f->path, f->sys_errno, false, NULL);
    if (!rc && f->created && chmod(f->path, 0644) < 0) { /* cfitsio creates with 0666 & ~umask */
        rc = -errno;
        bfs_err(TAG, "chmod %s: %s", f->path, strerror(errno));
    }
    if (rc && f->created)
        unlink(f->path);
    free(f->mem); /* cfitsio leaves a memory file's buffer to its owner */
    free(f->path);
    free(f);
    return rc;
}

/* ---- reading ------------------------------------------------------------ */

/* Open path for reading, literally.  fits_open_diskfile skips the extended
 * file-name syntax, and cfitsio still recognises a gzip stream by its magic
 * and gunzips it into memory.  But it picks its decoder by the name: a path
 * with ".Z" anywhere in it (a directory "repo.Zeta", a mkdtemp suffix) is
 * fed to its LZW decoder, which refuses a gzip stream.  So the file is
 * opened here and cfitsio is given /proc/self/fd/N, a name without ".Z";
 * the descriptor is closed once cfitsio holds its own. */
static int open_read(const char *path, fitsfile **f, char **errmsg)
{
    int st = 0;
    cfitsio_once();
    *f = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int rc = -errno;
        bfs_set_errmsg(errmsg, "cannot open %s: %s", path, strerror(-rc));
        return rc;
    }
    char name[64];
    snprintf(name, sizeof name, "/proc/self/fd/%d", fd);
    errno = 0;
    fits_open_diskfile(f, access(name, R_OK) == 0 ? name : path, READONLY, &st);
    int sys_errno = errno;
    /* a FITS file cut inside its primary header fails here with a short
     * read, whose cfitsio message ("Error reading data buffer from file:")
     * does not say so */
    char head[9] = "";
    ssize_t got = st ? pread(fd, head, sizeof head, 0) : 0;
    bool fits_start = got == (ssize_t)sizeof head && !memcmp(head, "SIMPLE  =", sizeof head);
    bool compressed = got >= 2 && (unsigned char)head[0] == 0x1f && (unsigned char)head[1] == 0x8b;
    struct stat sb;
    long long size = st && fstat(fd, &sb) == 0 ? (long long)sb.st_size : -1;
    close(fd);
    if (!st)
        return 0;
    char detail[FLEN_ERRMSG];
    int rc = fits_errno(st, path, sys_errno, true, detail);
    if (rc == -EBADMSG && fits_start && (st == READ_ERROR || st == END_OF_FILE))
        bfs_set_errmsg(errmsg, "%s: the file ends inside its primary header (truncated)", path);
    else if (rc == -EBADMSG && !fits_start && !compressed && size >= 0)
        /* cfitsio's own message for these ("Error reading data buffer from
         * file:") names neither the file nor what is wrong with it */
        bfs_set_errmsg(errmsg, "%s: not a FITS file: %lld bytes%s", path, size,
                       size == 0 ? "" : ", not beginning with the card \"SIMPLE  =\" that every FITS file starts with");
    else if (rc == -EBADMSG)
        bfs_set_errmsg(errmsg, "%s: not a FITS file: %s", path, detail);
    else
        bfs_set_errmsg(errmsg, "cannot open %s: %s (cfitsio status %d: %s)", path, strerror(-rc), st, detail);
    *f = NULL;
    return rc;
}

static bool is_gzip(const char *path)
{
    unsigned char magic[2] = {0, 0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool gz = read(fd, magic, 2) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    close(fd);
    return gz;
}

/* Decompress a tile-compressed image row by row (bounded memory): the
 * tiles of a camera image are rows, so each tile is decompressed once. */
static void read_compressed(fitsfile *f, int *st)
{
    int naxis = 0;
    long naxes[9] = {0};
    fits_get_img_dim(f, &naxis, st);
    if (*st || naxis < 1 || naxis > 9)
        return;
    fits_get_img_size(f, naxis, naxes, st);
    LONGLONG total = 1;
    for (int i = 0; i < naxis; i++)
        total *= naxes[i];
    LONGLONG chunk = naxes[0] > 0 ? naxes[0] : 1;
    double *buf = malloc((size_t)chunk * sizeof *buf);
    if (!buf) {
        *st = MEMORY_ALLOCATION;
        return;
    }
    int anynul = 0;
    for (LONGLONG first = 1; first <= total && !*st; first += chunk) {
        LONGLONG n = total - first + 1 < chunk ? total - first + 1 : chunk;
        fits_read_img(f, TDOUBLE, first, n, NULL, buf, &anynul, st);
    }
    free(buf);
}

/* The first card of the current HDU's header that holds a byte FITS
 * forbids (only printable ASCII, 0x20 to 0x7e: FITS standard 4.1.2), said
 * in buf; NULL when there is none.  Such a byte would reach a dataId, a
 * path or an event's JSON text, so the file is refused, as fitsverify does. */
static const char *bad_card(fitsfile *f, char *buf, size_t size, int *st)
{
    int nkeys = 0;
    if (fits_get_hdrspace(f, &nkeys, NULL, st))
        return NULL;
    for (int i = 1; i <= nkeys; i++) {
        char card[FLEN_CARD];
        if (fits_read_record(f, i, card, st))
            return NULL;
        for (const unsigned char *p = (const unsigned char *)card; *p; p++) {
            if (*p >= 0x20 && *p <= 0x7e)
                continue;
            snprintf(buf, size, "header card %d (%.8s) holds the byte 0x%02x: FITS headers are printable ASCII", i,
                     card, *p);
            for (char *q = buf; *q; q++)
                if ((unsigned char)*q < 0x20 || (unsigned char)*q > 0x7e)
                    *q = '?'; /* the keyword's own bytes too */
            return buf;
        }
    }
    return NULL;
}

int bfs_fits_validate(const char *path, const bfs_fits_rules *rules, bfs_fits_summary *out,
                      char **errmsg)
{
    int max_hdus = rules && rules->max_hdus > 0 ? rules->max_hdus : DEFAULT_MAX_HDUS;
    bool advisory = rules && rules->sums_advisory;
    bfs_fits_summary sum = {.gzip = is_gzip(path)};
    if (errmsg)
        *errmsg = NULL;
    if (out)
        *out = sum;
    fitsfile *f = NULL;
    int rc = open_read(path, &f, errmsg);
    if (rc)
        return rc;

    int st = 0, hdu = 0, type = 0;
    long nextend = -1; /* the primary header's count of extensions, when it gives one */
    char extname[FLEN_VALUE] = "", faultbuf[160];
    const char *fault = NULL;
    for (hdu = 1;; hdu++) {
        errno = 0;
        fits_movabs_hdu(f, hdu, &type, &st);
        if (st == END_OF_FILE && hdu > 1) { /* past the last HDU */
            st = 0;
            fits_clear_errmsg();
            break;
        }
        if (st)
            break;
        if (hdu > max_hdus) {
            rc = -EFBIG;
            bfs_set_errmsg(errmsg, "%s has more than %d HDUs", path, max_hdus);
            break;
        }
        extname[0] = '\0';
        int kst = 0;
        fits_read_key(f, TSTRING, "EXTNAME", extname, NULL, &kst);
        if (kst)
            fits_clear_errmsg();
        kst = 0;
        if (hdu == 1 && (fits_read_key(f, TLONG, "NEXTEND", &nextend, NULL, &kst), kst)) {
            nextend = -1; /* absent (LSST raws have none) or not an integer */
            fits_clear_errmsg();
        }
        sum.n_hdus++;
        if ((fault = bad_card(f, faultbuf, sizeof faultbuf, &st)) != NULL || st)
            break;

        int datastatus = 0, hdustatus = 0;
        fits_verify_chksum(f, &datastatus, &hdustatus, &st);
        if (st)
            break;
        if (datastatus < 0)
            fault = "DATASUM does not match the data";
        else if (hdustatus < 0)
            fault = "CHECKSUM does not match the HDU";
        if (fault && advisory) {
            bfs_warn(TAG, "%s: HDU %d: %s (accepted: checksums are advisory)", path, hdu, fault);
            sum.n_bad_sums++;
            fault = NULL;
        } else if (fault) {
            break;
        } else if (datastatus > 0 || hdustatus > 0) {
            sum.n_checksums++;
        }
        /* Without sums nothing above read the data: read it to its end, so
         * that a truncated file fails here. */
        unsigned long datasum = 0, hdusum = 0;
        if (datastatus == 0 && hdustatus == 0)
            fits_get_chksum(f, &datasum, &hdusum, &st);
        if (!st && type == IMAGE_HDU && fits_is_compressed_image(f, &st)) {
            read_compressed(f, &st);
            if (!st)
                sum.n_compressed++;
        }
        if (st)
            break;
    }
    if (st) {
        char detail[FLEN_ERRMSG];
        int read_st = st;
        rc = fits_errno(st, path, errno, true, detail);
        /* a short read that is no I/O error: cfitsio's own words
         * ("Error reading data buffer from file:") do not say the file is cut */
        if (rc == -EBADMSG && (read_st == READ_ERROR || read_st == END_OF_FILE))
            snprintf(detail, sizeof detail, "the file ends before this HDU does (truncated)");
        bfs_set_errmsg(errmsg, "%s: HDU %d%s%s%s: %s", path, hdu, extname[0] ? " (" : "",
                       extname, extname[0] ? ")" : "", detail);
    } else if (fault) {
        rc = -EBADMSG;
        bfs_info(TAG, "%s: HDU %d: %s", path, hdu, fault);
        bfs_set_errmsg(errmsg, "%s: HDU %d%s%s%s: %s", path, hdu, extname[0] ? " (" : "",
                       extname, extname[0] ? ")" : "", fault);
    } else if (nextend > sum.n_hdus - 1) {
        /* every HDU is whole, but fewer than the primary header announces:
         * a file cut exactly at an HDU boundary (a writer killed there) */
        rc = -EBADMSG;
        bfs_set_errmsg(errmsg, "%s: the primary header's NEXTEND announces %ld extensions, the file ends after %d "
                               "(truncated at an HDU boundary)", path, nextend, sum.n_hdus - 1);
    }
    int cst = 0;
    fits_close_file(f, &cst);
    if (cst)
        fits_clear_errmsg();
    if (out)
        *out = sum;
    return rc;
}

/* A FITS string value: quoted, '' for a quote, trailing blanks not
 * significant (FITS standard 4.2.1). */
static void unquote(const char *in, char *out, size_t outsz)
{
    size_t o = 0;
    if (*in == '\'')
        in++;
    for (; *in && o + 1 < outsz; in++) {
        if (*in == '\'') {
            if (in[1] != '\'')
                break;
            in++;
        }
        out[o++] = *in;
    }
    while (o > 0 && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
}

/* The cards of the current HDU of f into a malloc'd array: 0 or a cfitsio
 * status (nothing allocated then). */
static int read_cards(fitsfile *f, bfs_fits_card **cards, size_t *n)
{
    int st = 0, nkeys = 0;
    bfs_fits_card *c = NULL;
    fits_get_hdrspace(f, &nkeys, NULL, &st);
    if (!st && nkeys > 0 && !(c = calloc((size_t)nkeys, sizeof *c)))
        st = MEMORY_ALLOCATION;
    for (int i = 0; i < nkeys && !st; i++) {
        char value[FLEN_VALUE] = "", dtype = 'U';
        fits_read_keyn(f, i + 1, c[i].key, value, c[i].comment, &st);
        if (st)
            break;
        int tst = 0;
        if (value[0] && fits_get_keytype(value, &dtype, &tst) == 0) {
            if (dtype == 'C')
                unquote(value, c[i].value, sizeof c[i].value);
            else
                snprintf(c[i].value, sizeof c[i].value, "%s", value);
        } else {
            dtype = 'U';
        }
        c[i].type = dtype;
    }
    if (st) {
        free(c);
        return st;
    }
    *cards = c;
    *n = (size_t)nkeys;
    return 0;
}

static void close_read(fitsfile *f)
{
    int cst = 0;
    fits_close_file(f, &cst);
    if (cst)
        fits_clear_errmsg();
}

bool bfs_fits_is_commentary(const char *key)
{
    return !key[0] || !strcmp(key, "COMMENT") || !strcmp(key, "HISTORY");
}

int bfs_fits_read_header(const char *path, int hdu, bfs_fits_card **cards, size_t *n,
                         char **errmsg)
{
    *cards = NULL;
    *n = 0;
    if (errmsg)
        *errmsg = NULL;
    fitsfile *f = NULL;
    int rc = open_read(path, &f, errmsg);
    if (rc)
        return rc;
    int st = 0, type = 0;
    errno = 0;
    fits_movabs_hdu(f, hdu, &type, &st);
    if (!st)
        st = read_cards(f, cards, n);
    if (st) {
        char detail[FLEN_ERRMSG];
        rc = fits_errno(st, path, errno, true, detail);
        bfs_set_errmsg(errmsg, "%s: HDU %d header: %s", path, hdu, detail);
    }
    close_read(f);
    return rc;
}

int bfs_fits_header(bfs_fits *f, bfs_fits_card **cards, size_t *n)
{
    *cards = NULL;
    *n = 0;
    if (f->err || f->st)
        return bfs_fits_error(f);
    int st = read_cards(f->f, cards, n);
    return st ? fits_errno(st, f->path, errno, false, NULL) : 0;
}

int bfs_fits_each_header(const char *path, bfs_fits_header_cb cb, void *ctx, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    fitsfile *f = NULL;
    int rc = open_read(path, &f, errmsg);
    if (rc)
        return rc;
    for (int hdu = 1; !rc; hdu++) {
        int st = 0, type = 0;
        errno = 0;
        fits_movabs_hdu(f, hdu, &type, &st);
        if (st == END_OF_FILE && hdu > 1) {
            fits_clear_errmsg();
            break;
        }
        bfs_fits_card *cards = NULL;
        size_t n = 0;
        if (!st)
            st = read_cards(f, &cards, &n);
        if (st) {
            char detail[FLEN_ERRMSG];
            rc = fits_errno(st, path, errno, true, detail);
            bfs_set_errmsg(errmsg, "%s: HDU %d header: %s", path, hdu, detail);
            break;
        }
        rc = cb(ctx, hdu, cards, n);
        free(cards);
    }
    close_read(f);
    return rc;
}

int bfs_fits_extents(const char *path, bfs_fits_extent **out, int *n, char **errmsg)
{
    *out = NULL;
    *n = 0;
    if (errmsg)
        *errmsg = NULL;
    if (is_gzip(path)) {
        bfs_set_errmsg(errmsg, "%s is gzip-wrapped: its HDUs have no offsets in the file", path);
        return -EBADMSG;
    }
    fitsfile *f = NULL;
    int rc = open_read(path, &f, errmsg);
    if (rc)
        return rc;
    int nh = 0, st = 0;
    fits_get_num_hdus(f, &nh, &st);
    bfs_fits_extent *e = !st && nh > 0 ? calloc((size_t)nh, sizeof *e) : NULL;
    if (!st && !e)
        rc = -ENOMEM;
    for (int hdu = 1; !st && !rc && hdu <= nh; hdu++) {
        int type = 0;
        errno = 0;
        fits_movabs_hdu(f, hdu, &type, &st);
        LONGLONG head = 0, data = 0, end = 0;
        if (!st)
            fits_get_hduaddrll(f, &head, &data, &end, &st);
        e[hdu - 1] = (bfs_fits_extent){head, data, end};
    }
    if (st && !rc) {
        char detail[FLEN_ERRMSG];
        rc = fits_errno(st, path, errno, true, detail);
        bfs_set_errmsg(errmsg, "%s: %s", path, detail);
    }
    close_read(f);
    if (rc) {
        free(e);
        return rc;
    }
    *out = e;
    *n = nh;
    return 0;
}

const bfs_fits_card *bfs_fits_find(const bfs_fits_card *cards, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(cards[i].key, key) == 0)
            return &cards[i];
    return NULL;
}

/* ---- updating ------------------------------------------------------------ */

int bfs_fits_open_update(const char *path, bfs_fits **out, char **errmsg)
{
    *out = NULL;
    if (errmsg)
        *errmsg = NULL;
    if (is_gzip(path)) {
        bfs_set_errmsg(errmsg, "%s is gzip-wrapped: cfitsio cannot update it in place", path);
        return -EBADMSG;
    }
    bfs_fits *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return -ENOMEM;
    }
    int st = 0;
    errno = 0;
    cfitsio_once();
    fits_open_diskfile(&f->f, path, READWRITE, &st);
    if (st) {
        char detail[FLEN_ERRMSG];
        int rc = fits_errno(st, path, errno, true, detail);
        if (rc == -EBADMSG)
            bfs_set_errmsg(errmsg, "%s is not a FITS file: %s", path, detail);
        else
            bfs_set_errmsg(errmsg, "cannot open %s for update: %s", path, strerror(-rc));
        free(f->path);
        free(f);
        return rc;
    }
    *out = f;
    return 0;
}

int bfs_fits_gunzip(const char *src, const char *dst, char **errmsg)
{
    cfitsio_once();
    if (errmsg)
        *errmsg = NULL;
    if (!is_gzip(src)) {
        bfs_set_errmsg(errmsg, "%s is not gzip-wrapped", src);
        return -EBADMSG;
    }
    FILE *in = fopen(src, "rbe");
    if (!in) {
        int e = errno;
        bfs_set_errmsg(errmsg, "cannot open %s: %s", src, strerror(e));
        return -e;
    }
    int fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    FILE *out = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!out) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        fclose(in);
        bfs_set_errmsg(errmsg, "cannot create %s: %s", dst, strerror(e));
        return -e;
    }
    int st = 0;
    errno = 0;
    uncompress2file((char *)src, in, out, &st);
    int sys = errno;
    fclose(in);
    int rc = 0;
    if (fclose(out) != 0 && !st) {
        rc = -errno;
        bfs_set_errmsg(errmsg, "cannot write %s: %s", dst, strerror(-rc));
    } else if (st) {
        /* cfitsio reports a full disk like a corrupt stream; errno tells */
        if (sys == ENOSPC || sys == EDQUOT || sys == EIO) {
            fits_clear_errmsg();
            rc = -sys;
            bfs_set_errmsg(errmsg, "cannot write %s: %s", dst, strerror(sys));
        } else {
            char detail[FLEN_ERRMSG];
            rc = fits_errno(st, src, sys, true, detail);
            bfs_set_errmsg(errmsg, "%s does not decompress: %s", src, detail);
        }
    }
    if (rc)
        unlink(dst);
    return rc;
}

int bfs_fits_hdu_count(bfs_fits *f)
{
    int n = 0, st = 0;
    if (f->st)
        return bfs_fits_error(f);
    fits_get_num_hdus(f->f, &n, &st);
    if (st)
        return fits_errno(st, f->path, errno, true, NULL);
    return n;
}

int bfs_fits_select(bfs_fits *f, int hdu, char *extname, size_t size)
{
    if (f->st)
        return bfs_fits_error(f);
    int st = 0, type = 0;
    char name[FLEN_VALUE] = "";
    errno = 0;
    fits_movabs_hdu(f->f, hdu, &type, &st);
    if (st == END_OF_FILE || st == BAD_HDU_NUM) {
        fits_clear_errmsg();
        return -ENOENT;
    }
    if (st)
        return fits_errno(st, f->path, errno, true, NULL);
    fits_read_key(f->f, TSTRING, "EXTNAME", name, NULL, &st);
    if (st) {
        name[0] = '\0';
        fits_clear_errmsg();
    }
    if (extname)
        snprintf(extname, size, "%s", name);
    return 0;
}

/* A cfitsio status from a card's content (the keyword or value we asked
 * for), not from the file: the call is refused, nothing was written. */
static bool card_status(int st)
{
    return (st >= KEY_NO_EXIST && st <= BAD_ORDER) || (st >= BAD_F2C && st <= BAD_DECIM);
}

/* A number's text as FITS writes it ("1.5D3" is 1.5E3). */
static bool fits_number(const char *text, double *out)
{
    char buf[FLEN_VALUE], *end;
    snprintf(buf, sizeof buf, "%s", text);
    for (char *p = buf; *p; p++)
        if (*p == 'D' || *p == 'd')
            *p = 'E';
    *out = strtod(buf, &end);
    while (*end == ' ')
        end++;
    return end != buf && !*end;
}

static void trim_right(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == ' ')
        s[--n] = '\0';
}

/* The fewest significant digits (15..17) whose %G text reads back as d. */
static int shortest_digits(double d)
{
    char buf[64];
    for (int p = 15; p < 17; p++) {
        snprintf(buf, sizeof buf, "%.*G", p, d);
        if (strtod(buf, NULL) == d)
            return p;
    }
    return 17;
}

/* The value field of the card key in the current HDU into text ("" when
 * absent or undefined) and its type ('\0' when absent). */
static void read_value(fitsfile *ff, const char *key, char *text, char *type, char *comment,
                       int *st)
{
    char card[FLEN_CARD] = "";
    text[0] = '\0';
    *type = '\0';
    if (comment)
        comment[0] = '\0';
    fits_read_card(ff, (char *)key, card, st);
    if (*st == KEY_NO_EXIST) {
        *st = 0;
        fits_clear_errmsg();
        return;
    }
    char cm[FLEN_COMMENT] = "";
    fits_parse_value(card, text, cm, st);
    if (comment)
        snprintf(comment, FLEN_COMMENT, "%s", cm);
    *type = 'U';
    int tst = 0;
    if (!*st && text[0] && fits_get_keytype(text, type, &tst) != 0) {
        *type = 'U';
        fits_clear_errmsg();
    }
}

/* The comment of a long string (CONTINUE convention): cfitsio writes it on
 * the last card of the value, so it is the last non-empty comment of the
 * keyword's card and the CONTINUE cards after it.  comment keeps the first
 * card's when there is no other. */
static void longstr_comment(fitsfile *ff, const char *key, char *comment, int *st)
{
    char card[FLEN_CARD], val[FLEN_VALUE], cm[FLEN_COMMENT];
    int nkeys = 0, pos = 0;
    fits_read_card(ff, (char *)key, card, st); /* leaves the position after it */
    fits_get_hdrpos(ff, &nkeys, &pos, st);
    for (; !*st && pos <= nkeys; pos++) {
        fits_read_record(ff, pos, card, st);
        if (*st || strncmp(card, "CONTINUE", 8))
            break;
        /* cfitsio parses a CONTINUE card as commentary: parse its value
         * field (column 11 on) as that of an ordinary card */
        char as_key[FLEN_CARD];
        snprintf(as_key, sizeof as_key, "CONTVAL = %s", card + 10);
        cm[0] = '\0';
        fits_parse_value(as_key, val, cm, st);
        if (!*st && cm[0])
            snprintf(comment, FLEN_COMMENT, "%s", cm);
    }
}

/* A keyword read or write that failed with st: a card cfitsio refuses
 * (bad characters, a value that does not fit) is -EINVAL for that key
 * alone; anything else sticks to the handle like every other failure. */
static int key_failed(bfs_fits *f, const char *key, int st, bool reading)
{
    if (card_status(st)) {
        char msg[FLEN_ERRMSG] = "";
        fits_read_errmsg(msg);
        fits_clear_errmsg();
        bfs_debug(TAG, "%s: keyword %s refused: %s", f->path, key, msg);
        return -EINVAL;
    }
    f->st = st;
    note(f);
    return fits_errno(st, f->path, f->sys_errno, reading, NULL);
}

int bfs_fits_update_key(bfs_fits *f, const char *key, const bfs_fits_value *v,
                        const char *comment, char *old, char *new_)
{
    if (old)
        old[0] = '\0';
    if (new_)
        new_[0] = '\0';
    if (f->st)
        return bfs_fits_error(f);
    if (comment && !comment[0])
        comment = NULL;
    int st = 0;
    char otext[FLEN_VALUE], otype, ocomm[FLEN_COMMENT];
    errno = 0;
    read_value(f->f, key, otext, &otype, ocomm, &st);
    if (st)
        return key_failed(f, key, st, true);
    if (old)
        snprintf(old, BFS_FITS_VALUE_TEXT, "%s", otext);

    /* Compare as values: the outcome if something is written. */
    bfs_fits_update what = BFS_FITS_ADDED;
    if (otype) {
        bool same_value = false, same_type = otype == v->type;
        double od = 0;
        switch (v->type) {
        case 'C':
            if (otype == 'C') {
                char *ls = NULL;
                fits_read_key_longstr(f->f, (char *)key, &ls, NULL, &st);
                longstr_comment(f->f, key, ocomm, &st);
                if (!st) {
                    char *a = strdup(ls), *b = strdup(v->s);
                    if (a && b) {
                        trim_right(a);
                        trim_right(b);
                        same_value = !strcmp(a, b);
                    }
                    free(a);
                    free(b);
                }
                if (ls)
                    fits_free_memory(ls, &st);
                if (st) {
                    fits_clear_errmsg();
                    st = 0;
                }
            }
            break;
        case 'I':
        case 'F':
            if ((otype == 'I' || otype == 'F') && fits_number(otext, &od))
                same_value = v->type == 'I' ? od == (double)v->i &&
                                                  (otype == 'F' || strtoll(otext, NULL, 10) == v->i)
                                            : od == v->d;
            break;
        case 'L':
            same_value = otype == 'L' && (otext[0] == 'T') == v->b;
            break;
        case 'U':
            same_value = otype == 'U';
            break;
        }
        trim_right(ocomm);
        char ncomm[FLEN_COMMENT];
        snprintf(ncomm, sizeof ncomm, "%s", comment ? comment : "");
        trim_right(ncomm);
        bool same_comment = !comment || !strcmp(ocomm, ncomm);
        if (same_value && same_type && same_comment) {
            if (new_)
                snprintf(new_, BFS_FITS_VALUE_TEXT, "%s", otext);
            return BFS_FITS_SAME;
        }
        what = same_value ? BFS_FITS_REWRITTEN : BFS_FITS_CHANGED;
    }

    errno = 0;
    switch (v->type) {
    case 'C':
        fits_update_key_longstr(f->f, (char *)key, (char *)v->s, (char *)comment, &st);
        break;
    case 'I':
        fits_update_key_lng(f->f, (char *)key, (LONGLONG)v->i, (char *)comment, &st);
        break;
    case 'F':
        fits_update_key_dbl(f->f, (char *)key, v->d, -shortest_digits(v->d), (char *)comment, &st);
        break;
    case 'L':
        fits_update_key_log(f->f, (char *)key, v->b ? 1 : 0, (char *)comment, &st);
        break;
    case 'U':
        fits_update_key_null(f->f, (char *)key, (char *)comment, &st);
        break;
    default:
        return -EINVAL;
    }
    if (st)
        return key_failed(f, key, st, false);
    if (new_) {
        char ntext[FLEN_VALUE], ntype;
        read_value(f->f, key, ntext, &ntype, NULL, &st);
        if (st) {
            fits_clear_errmsg();
            ntext[0] = '\0';
        }
        snprintf(new_, BFS_FITS_VALUE_TEXT, "%s", ntext);
    }
    return what;
}

static bool printable(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            return false;
    return true;
}

int bfs_fits_add_commentary(bfs_fits *f, const char *key, const char *text)
{
    if (f->st)
        return bfs_fits_error(f);
    if (strlen(key) > 8 || !printable(key) || !printable(text))
        return -EINVAL;
    /* the cards to find or write: key in columns 1-8, 72 characters of text */
    size_t len = strlen(text);
    while (len > 0 && text[len - 1] == ' ')
        len--;
    size_t n = len ? (len + 71) / 72 : 1;
    char (*want)[FLEN_CARD] = calloc(n, sizeof *want);
    if (!want)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        size_t off = i * 72, k = len - off < 72 ? len - off : 72;
        if (!len)
            k = 0;
        snprintf(want[i], FLEN_CARD, "%-8s%.*s", key, (int)k, text + off);
        trim_right(want[i]);
    }
    int st = 0, nkeys = 0, rc = 1;
    fits_get_hdrspace(f->f, &nkeys, NULL, &st);
    for (int i = 1; !st && i + (int)n - 1 <= nkeys && rc == 1; i++) {
        size_t j = 0;
        for (; j < n && !st; j++) {
            char card[FLEN_CARD] = "";
            fits_read_record(f->f, i + (int)j, card, &st);
            trim_right(card);
            if (strcmp(card, want[j]))
                break;
        }
        if (!st && j == n)
            rc = 0;
    }
    for (size_t i = 0; !st && rc == 1 && i < n; i++)
        fits_write_record(f->f, want[i], &st);
    free(want);
    if (st && card_status(st)) {
        fits_clear_errmsg();
        return -EINVAL;
    }
    if (st) {
        f->st = st;
        note(f);
        return fits_errno(st, f->path, f->sys_errno, false, NULL);
    }
    return rc;
}
