/*
 * translate_decam.h - DECam multi-extension raws: which HDUs are datasets,
 * and the one exposure record they share, as the Python Butler's raw ingest
 * computes them (obs_base's RawIngestTask on astro_metadata_translator's
 * DecamTranslator, with obs_decam's instrument and raw formatter).
 *
 * A DECam raw is one file holding one exposure: a primary HDU with the
 * exposure's keywords and one image extension per CCD (INHERIT = T).  Each
 * CCD extension whose CCDNUM is 1..62 (the science CCDs) is one raw dataset
 * with dataId {instrument: DECam, exposure: EXPNUM, detector: CCDNUM}, all
 * of them pointing at the same file; the formatter finds a detector's HDU by
 * its CCDNUM.  Extensions without CCDNUM and the guide and focus CCDs
 * (CCDNUM > 62) are skipped, not refused.  Every CCD's header is the primary
 * merged with that extension (the extension's cards win); the exposure
 * record comes from the first CCD extension in file order (obs_base builds
 * it from the file's first dataset).  docs/ingest.md "DECam" lists the rules
 * and their sources.
 *
 * butlerfs does not encode DECam's instrument, detectors or filters: issue
 * 11 ingests a DECam raw only when the repository already holds them (made
 * by `butler register-instrument REPO lsst.obs.decam.DarkEnergyCamera`).
 * The translation therefore takes the physical filter from the header as it
 * is (the FILTER keyword, stripped) and does not need its band; the caller
 * consults the repository afterwards with bfs_decam_check_repository(),
 * which also gives the band.
 *
 * How ingest calls it, for one file PATH whose primary header is DECam's
 * (bfs_decam_is on the primary cards):
 *
 *     bfs_decam_file f;
 *     char *msg = NULL;
 *     int rc = bfs_decam_read_file(PATH, &f, &msg);      // refuse on rc < 0
 *     rc = bfs_decam_check_repository(reg, &f, band, sizeof band, &msg);
 *                                                        // refuse on rc < 0
 *     bfs_registry_add_exposure(reg, &f.raw.exposure);   // once per file
 *     for (size_t i = 0; i < f.n_ccds; i++)               // one dataset each:
 *         register raw {DECam, f.raw.exposure_id, f.ccds[i].detector},
 *         all with the same datastore path (the file);
 *     bfs_decam_file_free(&f);
 *
 * Callers that already hold the headers use the pieces: bfs_decam_detector()
 * on each extension's cards gives the CCD list, bfs_decam_translate() on the
 * primary and the first CCD extension gives the exposure record.
 *
 * Errors: negative errno with *errmsg (when errmsg is not NULL) a malloc'd
 * sentence naming the keyword and value; the caller frees it.  -EINVAL: a
 * keyword the Butler needs is missing or unusable.  -ENOENT: not a DECam
 * raw, or (bfs_decam_check_repository) a record the repository lacks.
 * Ownership: as translate.h (a bfs_raw_translation's strings point into
 * itself; pass it by pointer).  A bfs_decam_file owns its ccds array: free
 * it with bfs_decam_file_free.  Threads: no shared state; any thread.
 */
#ifndef BFS_TRANSLATE_DECAM_H
#define BFS_TRANSLATE_DECAM_H

#include "fits.h"
#include "registry.h"
#include "translate.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BFS_DECAM_INSTRUMENT "DECam"
/* The highest science CCDNUM; guide and focus CCDs are numbered above. */
#define BFS_DECAM_MAX_SCIENCE_CCD 62

/* Whether a header is DECam's: DecamTranslator.can_translate, i.e. INSTRUME
 * is "DECam" (exactly), or FILTER is set and contains "DECam".  The Butler
 * asks the primary header first and, when no translator claims it, the
 * primary merged with HDU 2; bfs_decam_read_file does both. */
bool bfs_decam_is(const bfs_fits_card *cards, size_t n);

/* The outcome of bfs_decam_detector for an extension that is not a dataset. */
#define BFS_DECAM_SKIPPED 1

/* The detector of one extension's cards: 0 and *detector = CCDNUM for a
 * science CCD (CCDNUM <= 62; the repository must hold that detector);
 * BFS_DECAM_SKIPPED (with *errmsg saying why, for a log line) for an
 * extension without CCDNUM or a guide or focus CCD (CCDNUM > 62), which the
 * Butler does not ingest; -EINVAL when CCDNUM is not a whole number.
 * detpos (may be NULL; 16 bytes) gets DETPOS, the CCD's name ("S1", "N31"),
 * or "" without one. */
int bfs_decam_detector(const bfs_fits_card *cards, size_t n, int64_t *detector, char detpos[16],
                       char **errmsg);

/* The exposure record of a DECam raw from its primary cards and the cards
 * of its first science-CCD extension (ext may be NULL with n_ext 0: the
 * primary alone; the record can then differ in what the extension carries,
 * e.g. RADESYS for the tracking position).  out->instrument is "DECam",
 * out->camera NULL (butlerfs has no DECam encoding), out->detector the
 * extension's CCDNUM (-1 without ext). */
int bfs_decam_translate(const bfs_fits_card *primary, size_t n_primary, const bfs_fits_card *ext,
                        size_t n_ext, bfs_raw_translation *out, char **errmsg);

typedef struct bfs_decam_ccd {
    int hdu;            /* 1-based HDU number (2 = first extension) */
    int64_t detector;   /* CCDNUM */
    char detpos[16];    /* DETPOS, e.g. "S1" */
} bfs_decam_ccd;

typedef struct bfs_decam_file {
    bfs_raw_translation raw;  /* exposure id and record (from the first CCD) */
    bfs_decam_ccd *ccds;      /* the datasets, in HDU order; malloc'd */
    size_t n_ccds;
    int n_skipped;            /* extensions skipped (no CCDNUM, guide/focus CCDs) */
} bfs_decam_file;

/* Read every header of the raw at path (once, bfs_fits_each_header) and fill
 * *out: each science CCD's header (the primary merged with its extension)
 * is translated, as the Butler translates each, and must succeed; all must
 * agree on the exposure id; no CCDNUM may appear twice; at least one
 * science CCD must be there.  -ENOENT when the file is not DECam's.  On
 * failure *out holds nothing to free. */
int bfs_decam_read_file(const char *path, bfs_decam_file *out, char **errmsg);
void bfs_decam_file_free(bfs_decam_file *f);

/* Whether the repository holds what the file's datasets need: the DECam
 * instrument record, a detector record for every CCD of f, and the physical
 * filter record of f's exposure.  0 and band (bandsz bytes, may be NULL)
 * the filter's band; -ENOENT with *errmsg naming the missing record (the
 * issue's refusal: "the repository has no DECam physical_filter 'X' ..."),
 * another negative errno on a registry error. */
int bfs_decam_check_repository(bfs_registry *reg, const bfs_decam_file *f, char *band,
                               size_t bandsz, char **errmsg);

#endif
