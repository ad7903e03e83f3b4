/*
 * synth.h - synthetic LSSTCam-like raw repositories.
 *
 * `butlerfs demo`, the integration tests and the benchmarks need a
 * repository that looks like a night of LSSTCam data without shipping
 * gigabytes of pixels.  This module makes one: it registers the instrument,
 * its 189 science detectors, six physical filters, a run of exposures and
 * one `raw` dataset per (exposure, detector), and writes each dataset's file
 * into the datastore at the path the Python Butler would choose.  It goes
 * through the public registry write API only (registry.h), so whatever it
 * produces is also a test of that API.
 *
 * Everything is deterministic: the same options give the same dataset ids,
 * records, paths and file bytes, so tests can predict what they will see
 * and reruns are reproducible.  The data are synthetic and every FITS file
 * says so in a COMMENT card; nothing here is a real observation.
 *
 * Errors: functions return 0 (or a count) on success and a negative errno on
 * failure.  Files are written through fits.h, where cfitsio status codes
 * become errno and the cfitsio message is logged once under the tag "fits".
 *
 * Threads: the functions keep no global state.  bfs_synth_raws() holds the
 * registry's write transaction between batches; run one at a time per
 * repository (SQLite has one writer).  bfs_synth_write_raw_fits() may run
 * in several threads on different paths (Debian's cfitsio is built
 * reentrant; its error-message stack is shared, so concurrent failures may
 * log each other's detail).
 */
#ifndef BFS_SYNTH_H
#define BFS_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "registry.h"

/* LSSTCam science detectors: ids 0..188. */
#define BFS_SYNTH_NUM_DETECTORS 189

/*
 * Options of bfs_synth_raws().  Zero/NULL fields take the default shown,
 * so `bfs_synth_opts o = { .n_exposures = 3 };` is a complete request.
 * The caller keeps ownership of the strings; they are read during the call.
 */
typedef struct bfs_synth_opts {
    const char *instrument;  /* "LSSTCam" (names the records; the camera is LSSTCam) */
    const char *run;         /* "<instrument>/raw/all" */
    int64_t day_obs;         /* 20250415 (YYYYMMDD) */
    int n_exposures;         /* 10; seq_num runs first_seq .. first_seq+n-1 */
    int first_seq;           /* 1; the last seq_num must stay below 100000 */
    int n_detectors;         /* 189: the first N science detectors, ids 0..N-1 */
    bool fits;               /* true: real FITS files (cfitsio); false: opaque
                              * deterministic bytes (fast, for benchmarks) */
    int64_t payload_bytes;   /* pixel bytes per file.  FITS: size of the 16
                              * image HDUs' data, default 1 MiB, capped at the
                              * real LSSTCam size (16 x 576 x 2048 x 4 B); opaque:
                              * the file size, default 4096 */
    /* Called from the calling thread with datasets done so far and the total,
     * at most ~10 times a second and once at the end.  May be NULL. */
    void (*progress)(void *ctx, int64_t done, int64_t total);
    void *progress_ctx;
} bfs_synth_opts;

/*
 * Everything known about one synthetic raw (one exposure on one detector):
 * the values of its registry records and of its FITS header.  Self-contained
 * (fixed buffers); the const char * fields point to static strings.
 */
typedef struct bfs_synth_raw {
    char instrument[33];
    int64_t day_obs;             /* 20250415 */
    int seq_num;                 /* 60 */
    int64_t exposure_id;         /* 2025041500060 (controller O) */
    char obs_id[32];             /* "MC_O_20250415_000060" */
    char group[32];              /* "2025-04-16T00:20:47.123" (TAI), as GROUPID */
    const char *observation_type;   /* "science", "bias", "flat" */
    const char *img_type;           /* IMGTYPE: "OBJECT", "BIAS", "FLAT" */
    const char *observation_reason; /* "field_survey_science", "bias", "flat" */
    const char *science_program;    /* "BLOCK-365", ... */
    char target_name[32];        /* "Rubin_SV_150_-30"; calibrations: "FlatField position" etc. */
    const char *physical_filter; /* "r_57" */
    const char *band;            /* "r" */
    double exposure_time, dark_time; /* seconds */
    int64_t begin_tai_ns, end_tai_ns; /* DATE-BEG .. DATE-END, TAI ns since 1970 */
    double ra, dec, rot_pa;      /* degrees; NAN when not tracking (calibrations) */
    double azimuth, zenith_angle;/* degrees; NAN when not on sky */
    bool can_see_sky;
    int detector;                /* 0..188 */
    char full_name[8];           /* "R22_S11" */
    char raft[4], slot[4];       /* "R22", "S11" */
    bool e2v;                    /* e2v sensor (else ITL): geometry and LSST_NUM */
} bfs_synth_raw;

/* Detector id of an LSSTCam science detector full name ("R22_S11" -> 94),
 * or -EINVAL for anything else (guider/wavefront sensors included). */
int bfs_synth_detector_id(const char *full_name);

/* Full name of science detector id (0..188) into out: 0 or -EINVAL. */
int bfs_synth_detector_name(int id, char out[8]);

/*
 * Fill *r for the exposure at index (0 = the first, seq_num first_seq) and
 * detector of the options o (defaults applied as above).  Exposures cycle
 * through bias, flat and eight science exposures and change filter every ten;
 * they are spread over the night of day_obs (UTC 23:45 to 11:45).
 * 0, or -EINVAL for an index, detector or option out of range.
 */
int bfs_synth_describe(const bfs_synth_opts *o, int index, int detector, bfs_synth_raw *r);

/*
 * The datastore path of r's file, relative to the datastore root, as the
 * Python Butler's raw template makes it:
 *   <run>/raw/<day_obs>/<obs_id>/raw_<instrument>_<physical_filter>_<obs_id>_<full_name>_<run, '/' -> '_'>.fits
 * Returns the length, or -ENAMETOOLONG when it does not fit in outsz.
 */
int bfs_synth_raw_path(const bfs_synth_raw *r, const char *run, char *out, size_t outsz);

/*
 * Write one FITS raw to path (replacing any file there; mode 0644): an empty
 * primary HDU with LSSTCam-style headers and 16 BITPIX=32 image extensions
 * Segment10..17, Segment07..00 whose data total about payload_bytes (0 = the
 * default 1 MiB), with DATASEC/DETSEC/DETSIZE consistent with that scaled
 * geometry, a bias level, a signal by image type and deterministic noise.
 * Each HDU carries CHECKSUM/DATASUM.  On failure no file is left at path.
 * 0 or -errno (-EINVAL for a bad payload size; cfitsio failures as in
 * fits_errno(): -ENOMEM, -ENOSPC, -EACCES, ..., else -EIO).
 */
int bfs_synth_write_raw_fits(const char *path, const bfs_synth_raw *r, int64_t payload_bytes);

/* 0 when bfs_synth_raws() would accept opts' values, else -EINVAL with
 * *why (a static string) saying which is out of range. */
int bfs_synth_check(const bfs_synth_opts *opts, const char **why);

/*
 * Write the whole synthetic run into reg (opened with BFS_REG_WRITE, with a
 * local datastore root): instrument, all 189 science detectors, filters,
 * exposures, the RUN collection, the `raw` dataset type, then one dataset
 * per (exposure, first n_detectors detectors) with its file.  Dimension
 * records are idempotent; datasets go in transactions of 1000, each file
 * written to a temporary name and renamed once its records are in.
 *
 * Returns the number of datasets added, or -errno:
 *   -EINVAL      an option out of range;
 *   -EOPNOTSUPP  the datastore root is a URI, not a local directory;
 *   -EEXIST      a dataset already exists (use a fresh run or repository);
 *   anything the registry or the file system returns (-EACCES, -ENOSPC, ...).
 * On failure, batches already committed stay (records and files); the
 * failed batch leaves neither records nor files.
 */
int bfs_synth_raws(bfs_registry *reg, const bfs_synth_opts *o);

#endif
