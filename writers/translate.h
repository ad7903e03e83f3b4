/*
 * translate.h - a raw's primary header -> its dataId and exposure record, as
 * the Python Butler's raw ingest computes them (obs_base's RawIngestTask on
 * obs_lsst's translators on astro_metadata_translator).
 *
 * Cameras: LSSTCam, LSSTComCam, LATISS, LSSTCamSim and LSSTComCamSim,
 * recognised by the rules of each translator's can_translate (INSTRUME,
 * TELESCOP, TELCODE, DETNAME).  The header is first corrected as each
 * translator's fix_header does (the date- and sequence-dependent fixes coded
 * in obs_lsst), then translated.  docs/ingest.md "Header translation" lists
 * the rules, where each comes from, and what is not implemented.
 *
 * As in obs_base, a property the exposure record needs (instrument, exposure
 * id, detector, obs_id, observation type, day_obs, physical filter, group,
 * exposure time, timespan) that cannot be computed is an error; an optional
 * one (dark time, reason, target, program, pointing, can_see_sky) that
 * cannot be computed is NULL.
 *
 * Every header string that will be shown as a name (obs_id, group, physical
 * filter, observation type) must be usable as one path component as it is
 * (bfs_is_one_component) and fit its registry column; otherwise the file is
 * refused, with the keyword named.
 *
 * Errors: -EINVAL (a keyword missing or unusable) or -ENOENT (a camera or
 * detector butlerfs does not know), with *errmsg (when errmsg is not NULL)
 * a malloc'd sentence naming the keyword and value; the caller frees it.
 *
 * Ownership: a bfs_raw_translation is filled in place; its exposure record's
 * strings point into the struct itself, so it must not be copied by value
 * (pass it by pointer) and lives as long as the caller keeps it.
 * Threads: no shared state; any thread.
 */
#ifndef BFS_TRANSLATE_H
#define BFS_TRANSLATE_H

#include "camera.h"
#include "fits.h"
#include "registry.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bfs_raw_translation {
    const bfs_camera *camera;     /* the instrument's facts (detectors, filters) */
    const char *instrument;       /* registry instrument name, e.g. "LSSTCam" */
    int64_t exposure_id;
    int64_t detector;
    bfs_exposure_record exposure; /* every column; strings point into buf below */
    char buf[6][80];              /* obs_id, physical_filter, group, type, reason, program */
    char target[80];
} bfs_raw_translation;

/* Translate the primary-HDU cards[0..n-1] of a raw.  name (may be NULL) is
 * the file's name, used as the observation id when a LATISS header has none
 * (as astro_metadata_translator does with the file name). */
int bfs_translate_raw(const bfs_fits_card *cards, size_t n, const char *name,
                      bfs_raw_translation *out, char **errmsg);

/* ---- the amplifier HDUs of a raw -------------------------------------------
 * A raw of an LSST camera holds one image extension per amplifier right
 * after its primary HDU (obs_lsst's raw formatter reads the n-th amplifier
 * from the n-th extension), as many as the detector has
 * (bfs_camera_n_amplifiers).  A file cut at an HDU boundary (a writer
 * killed after some amplifiers) is still valid FITS, so raw ingest counts
 * them.
 *
 * bfs_translate_is_amp_hdu: whether the header cards[0..n-1] of an
 * extension are an amplifier's: an image with pixels (XTENSION 'IMAGE' with
 * NAXIS >= 1 and every NAXISn >= 1, or a tile-compressed image: 'BINTABLE'
 * with ZIMAGE = T and the same of ZNAXIS and ZNAXISn) whose EXTNAME is
 * "Segment" and two digits, the name obs_lsst expects for an amplifier
 * (Segment10 for C10).  The primary HDU never is (no XTENSION).
 *
 * bfs_translate_check_amplifiers: 0 when a raw translated into t carries
 * at least the detector's number of amplifier HDUs (n_amp_hdus counted with
 * bfs_translate_is_amp_hdu; more are not refused: obs_lsst reads the first
 * ones), else -EINVAL with *errmsg (when errmsg is not NULL) a malloc'd
 * sentence, e.g. "incomplete raw: 9 of 16 amplifier HDUs (detector R22_S11,
 * E2V)".  -ENOENT for a detector the camera does not have. */
bool bfs_translate_is_amp_hdu(const bfs_fits_card *cards, size_t n);
int bfs_translate_check_amplifiers(const bfs_raw_translation *t, int n_amp_hdus, char **errmsg);

/* Per-observation header corrections, as astro_metadata_translator's
 * fix_header applies them before a translator's own fixes: the file
 * <dir>/<instrument>-<obsid>.yaml (e.g. obs_lsst's corrections/
 * LATISS-AT_O_20190308_000139.yaml), looked for in dirs in order, then in
 * the directories of $METADATA_CORRECTIONS_PATH; the first found is used.
 * instrument is the camera's registry name (from INSTRUME), obsid the OBSID
 * card; without either nothing is done.  Each key: value of the file's
 * mapping replaces (or adds) that card, typed as PyYAML reads the value
 * (null: undefined).  *cards (n of them, malloc'd) may be reallocated.
 * 1 and *applied (malloc'd) the file's path when one was applied; 0 when
 * none was found; negative errno (-ENOMEM, or -EINVAL for a file that is
 * not a mapping of scalars, with *errmsg). */
int bfs_translate_corrections(bfs_fits_card **cards, size_t *n, const char *const *dirs, int ndirs,
                              char **applied, char **errmsg);

/* TAI nanoseconds since 1970 of an ISO-8601 date "YYYY-MM-DD[THH:MM:SS[.f]]"
 * in scale TAI (utc false) or UTC (utc true), rounded to the nearest
 * nanosecond as daf_butler rounds; -EINVAL when s is not such a date. */
int bfs_translate_iso_ns(const char *s, bool utc, int64_t *ns);

/* The same for a floating-point MJD in TAI. */
int bfs_translate_mjd_ns(double mjd, int64_t *ns);

/* Angles as astropy gives them: deg wrapped to [0, 360); an FK5 position
 * (equinox J2000, astropy's default) turned to ICRS in place by the frame
 * bias (USNO Circular 179), in degrees. */
double bfs_translate_wrap360(double deg);
void bfs_translate_fk5_to_icrs(double *ra, double *dec);

/* ---- exact times (shared with translate_decam.c) ---------------------------
 * A time as astropy holds it closely enough for daf_butler's rounding: whole
 * nanoseconds since 1970-01-01 TAI plus a fraction in [0, 1).  An ISO date or
 * an MJD double converts exactly; bfs_tai_add_s adds a double of seconds
 * exactly; bfs_tai_round rounds once, half to even, and clips to the
 * registry's range [1970, 2100) as daf_butler's TimeConverter does. */
typedef struct bfs_tai {
    int64_t ns;
    double frac;
} bfs_tai;

/* s as bfs_translate_iso_ns reads it; false when it is not such a date. */
bool bfs_tai_from_iso(const char *s, bool utc, bfs_tai *out);
/* An MJD (1900..2100) counted in TAI days (utc false) or UTC days (utc true:
 * TAI-UTC of that second is added); false when out of range. */
bool bfs_tai_from_mjd(double mjd, bool utc, bfs_tai *out);
bfs_tai bfs_tai_add_s(bfs_tai a, double s);
int64_t bfs_tai_round(bfs_tai a);
/* -1, 0 or 1 as a is before, at or after b. */
int bfs_tai_cmp(bfs_tai a, bfs_tai b);

#endif
