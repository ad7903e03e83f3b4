/*
 * synth.c - synthetic LSSTCam-like raws: records through the registry write
 * API, files through cfitsio (or plain write(2) for the opaque fast path).
 *
 * Design.  Everything about one raw follows from (options, exposure index,
 * detector) through bfs_synth_describe(): ids, names, times, pointing, and
 * the seed of the pixel noise.  Nothing is remembered between datasets, so a
 * failed batch can be undone by recomputing its paths, and a test can
 * predict any record or byte without running the generator.
 *
 * The night: exposures start at 23:45 UTC on day_obs and are spread over the
 * twelve hours that still belong to that day_obs (it rolls over at UTC-12h,
 * i.e. 12:00 UTC next day).  The normal cadence is 36 s (30 s exposure plus
 * readout and slew); larger runs compress cadence and exposure times by the
 * same factor rather than spill into the next day_obs.  Exposure index i
 * is a bias when i % 10 == 0, a dome flat when i % 10 == 1, else a science
 * exposure; the filter changes every ten exposures.
 *
 * The FITS geometry is the real LSSTCam amplifier layout (16 segments of
 * 576 x 2048 with prescan, data and serial/parallel overscan; ITL and e2v
 * sensors differ slightly) scaled down uniformly until the pixel data fit
 * payload_bytes, so DATASEC/DETSEC/DETSIZE stay self-consistent and a viewer
 * shows a plausible, if small, CCD.  Pixel values are a bias level per
 * amplifier, a signal by image type (flat field, sky plus a few stars) and
 * Gaussian-approximated read and shot noise from a splitmix64 stream.
 *
 * Writes go to "<final>.tmp" and are renamed into place only after their
 * dataset record is in the open transaction; batches of BATCH datasets are
 * committed together because one SQLite commit per dataset would make the
 * 100 000-dataset benchmark take minutes.  When a batch fails it is rolled
 * back and the files renamed during it are removed, so records and files
 * never disagree.  Files are not fsync'ed: this is synthetic data, and
 * speed matters more than surviving a power cut.
 */
#include "synth.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


#include "camera.h"
#include "fits.h"
#include "log.h"
#include "strutil.h"
#include "translate.h"

#define TAG "writers"
#define BATCH 1000
#define NSEG 16 /* amplifiers of a science sensor (bfs_camera_n_amplifiers) */
#define DEFAULT_FITS_PAYLOAD (1 << 20)
#define DEFAULT_OPAQUE_PAYLOAD 4096
#define NS_PER_S 1000000000LL
/* Seconds from 23:45 UTC to 11:45 UTC: the observing window of one day_obs. */
#define NIGHT_SECONDS 43200.0
#define CADENCE_S 36.0

/* ---- the camera ---------------------------------------------------------- */

/* The detectors, their sensor types, the bands and the record values are
 * camera.c's LSSTCam; synth only chooses what to use of it. */
static const bfs_camera *lsstcam(void)
{
    return bfs_camera_find("LSSTCam");
}

/* The filters the exposures cycle through: the on-sky ones, u to y. */
static const char *const cycle_filters[] = {"u_24", "g_6", "r_57", "i_39", "z_20", "y_10"};
#define NFILTERS ((int)(sizeof cycle_filters / sizeof cycle_filters[0]))

int bfs_synth_detector_id(const char *full_name)
{
    if (!full_name || strlen(full_name) != 7 || full_name[3] != '_')
        return -EINVAL;
    char raft[4];
    memcpy(raft, full_name, 3);
    raft[3] = '\0';
    int id = bfs_camera_detector_id(lsstcam(), raft, full_name + 4);
    return id >= 0 && id < BFS_SYNTH_NUM_DETECTORS ? id : -EINVAL;
}

int bfs_synth_detector_name(int id, char out[8])
{
    bfs_detector_record d;
    if (id < 0 || id >= BFS_SYNTH_NUM_DETECTORS || bfs_camera_detector(lsstcam(), id, &d) < 0)
        return -EINVAL;
    snprintf(out, 8, "%s", d.full_name);
    return 0;
}

/* ---- options and the description of one raw --------------------------------- */

static int64_t day_obs_unix(int64_t day_obs);

/* Copy in to out with defaults applied and ranges checked: 0, or -EINVAL
 * with *why saying what is out of range.  The default run name is built in
 * runbuf. */
static int resolve_opts(const bfs_synth_opts *in, bfs_synth_opts *out, char *runbuf, size_t runsz,
                        const char **why)
{
    *out = *in;
    *why = NULL;
    if (!out->instrument)
        out->instrument = "LSSTCam";
    if (out->day_obs == 0)
        out->day_obs = 20250415;
    if (out->n_exposures == 0)
        out->n_exposures = 10;
    if (out->first_seq == 0)
        out->first_seq = 1;
    if (out->n_detectors == 0)
        out->n_detectors = BFS_SYNTH_NUM_DETECTORS;
    if (out->payload_bytes == 0)
        out->payload_bytes = out->fits ? DEFAULT_FITS_PAYLOAD : DEFAULT_OPAQUE_PAYLOAD;
    size_t il = strlen(out->instrument);
    if (il == 0 || il > 32) /* registry: VARCHAR(32), length >= 1 */
        *why = "the instrument name must have 1 to 32 characters";
    else if (out->n_exposures < 0)
        *why = "the number of exposures must be at least 1";
    else if (out->n_detectors < 0 || out->n_detectors > BFS_SYNTH_NUM_DETECTORS)
        *why = "the number of detectors must be 1 to 189";
    else if (out->first_seq < 0 || (int64_t)out->first_seq + out->n_exposures - 1 >= 100000)
        *why = "sequence numbers (first-seq to first-seq + exposures - 1) must stay within 1..99999";
    else if (out->payload_bytes < 0)
        *why = "the payload size must not be negative";
    else if (day_obs_unix(out->day_obs) < 0)
        *why = "day_obs must be a calendar date written YYYYMMDD, 19700101 or later";
    else if (out->run && !out->run[0])
        *why = "the run name must not be empty";
    if (*why)
        return -EINVAL;
    if (!out->run) {
        if ((size_t)snprintf(runbuf, runsz, "%s/raw/all", out->instrument) >= runsz)
            return -ENAMETOOLONG;
        out->run = runbuf;
    }
    return 0;
}

int bfs_synth_check(const bfs_synth_opts *opts, const char **why)
{
    bfs_synth_opts o;
    char runbuf[64];
    return resolve_opts(opts, &o, runbuf, sizeof runbuf, why);
}

/* Unix time of 00:00 UTC on day_obs, or -1 when it is not a calendar date. */
static int64_t day_obs_unix(int64_t day_obs)
{
    if (day_obs < 19700101 || day_obs > 99991231)
        return -1;
    struct tm tm = {
        .tm_year = (int)(day_obs / 10000) - 1900,
        .tm_mon = (int)(day_obs / 100 % 100) - 1,
        .tm_mday = (int)(day_obs % 100),
    };
    time_t t = timegm(&tm);
    /* timegm normalizes 20250231 to March 3rd; a round trip rejects it. */
    if (t == (time_t)-1 || tm.tm_mday != (int)(day_obs % 100) ||
        tm.tm_mon != (int)(day_obs / 100 % 100) - 1)
        return -1;
    return (int64_t)t;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t hash2(uint64_t a, uint64_t b)
{
    uint64_t s = a * 0x100000001b3ULL ^ b;
    return splitmix64(&s);
}

/* TAI ns -> "YYYY-MM-DDTHH:MM:SS.sss" on the TAI time scale (as the
 * LSSTCam headers, which say TIMESYS = 'TAI', write DATE-BEG). */
static void tai_iso(int64_t tai_ns, char *buf, size_t bufsz)
{
    int64_t sec = tai_ns / NS_PER_S, ns = tai_ns % NS_PER_S;
    if (ns < 0) {
        sec--;
        ns += NS_PER_S;
    }
    time_t t = (time_t)sec;
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(buf, bufsz, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, bufsz - n, ".%03d", (int)(ns / 1000000));
}

static double tai_mjd(int64_t tai_ns)
{
    return 40587.0 + (double)tai_ns / (86400.0 * NS_PER_S);
}

/* The decimals of the MJD cards (real LSSTCam headers write more; nine
 * keep a card short and still resolve 0.1 ms). */
enum { MJD_DECIMALS = 9 };

int bfs_synth_describe(const bfs_synth_opts *opts, int index, int detector, bfs_synth_raw *r)
{
    bfs_synth_opts o;
    char runbuf[64];
    const char *why;
    int rc = resolve_opts(opts, &o, runbuf, sizeof runbuf, &why);
    if (rc < 0 && rc != -ENAMETOOLONG) /* resolved last; the run does not matter here */
        return rc;
    if (index < 0 || index >= o.n_exposures || detector < 0 ||
        detector >= BFS_SYNTH_NUM_DETECTORS)
        return -EINVAL;
    int64_t midnight = day_obs_unix(o.day_obs);
    if (midnight < 0)
        return -EINVAL;

    memset(r, 0, sizeof *r);
    snprintf(r->instrument, sizeof r->instrument, "%s", o.instrument);
    r->day_obs = o.day_obs;
    r->seq_num = o.first_seq + index;
    r->exposure_id = o.day_obs * 100000 + r->seq_num; /* controller O */
    snprintf(r->obs_id, sizeof r->obs_id, "%s_O_%08lld_%06d", bfs_camera_obs_prefix(lsstcam()),
             (long long)o.day_obs, r->seq_num);

    /* Compress the night uniformly when the run does not fit at 36 s. */
    double scale = NIGHT_SECONDS / (CADENCE_S * o.n_exposures);
    if (scale > 1.0)
        scale = 1.0;
    uint64_t h = hash2((uint64_t)r->exposure_id, 0x5e9);
    int64_t start_tai = bfs_unix_to_tai_ns(midnight + 23 * 3600 + 45 * 60, 0);
    int64_t begin = start_tai + (int64_t)llround(index * CADENCE_S * scale * NS_PER_S) +
                    (int64_t)llround((double)(h % 1000) * 1e6 * scale); /* ms jitter */

    int kind = index % 10; /* 0 bias, 1 flat, else science */
    int block = index / 10;
    r->physical_filter = cycle_filters[block % NFILTERS];
    r->band = bfs_camera_band(lsstcam(), r->physical_filter);
    if (kind == 0) {
        r->observation_type = "bias";
        r->img_type = "BIAS";
        r->observation_reason = "bias";
        r->science_program = "BLOCK-T249";
        r->exposure_time = 0.0;
    } else if (kind == 1) {
        r->observation_type = "flat";
        r->img_type = "FLAT";
        r->observation_reason = "flat";
        r->science_program = "BLOCK-T249";
        r->exposure_time = 15.0 * scale;
    } else {
        r->observation_type = "science";
        r->img_type = "OBJECT";
        r->observation_reason = "field_survey_science";
        r->science_program = "BLOCK-365";
        r->exposure_time = 30.0 * scale;
    }
    /* Dark time exceeds exposure time by the shutter and clear overheads;
     * the real timespan is DATE-BEG..DATE-END = dark time. */
    r->dark_time = r->exposure_time + 0.9487 * scale;
    /* whole milliseconds, as DATE-BEG and DATE-END write them */
    begin -= begin % 1000000;
    r->begin_tai_ns = begin;
    r->end_tai_ns = begin + (int64_t)llround(r->dark_time * 1000) * 1000000;
    /* The group is created when the script starts, shortly before the
     * shutter opens; half a cadence keeps groups distinct and ordered. */
    tai_iso(begin - (int64_t)llround(CADENCE_S * scale * 0.5 * NS_PER_S), r->group,
            sizeof r->group);

    if (kind >= 2) {
        double field_ra = fmod(150.0 + 2.5 * block, 360.0);
        double field_dec = -30.0 + 4.0 * (block % 7 - 3);
        snprintf(r->target_name, sizeof r->target_name, "Rubin_SV_%03d_%d", (int)field_ra,
                 (int)field_dec);
        r->ra = fmod(field_ra + 0.02 * (kind - 2), 360.0); /* small dithers */
        r->dec = field_dec + 0.015 * (kind - 5);
        r->rot_pa = fmod(90.0 + 13.0 * index, 360.0);
        r->azimuth = fmod(40.0 + 3.7 * index, 360.0);
        r->zenith_angle = 15.0 + 25.0 * (0.5 + 0.5 * sin(index * 0.05));
        r->can_see_sky = true;
    } else {
        snprintf(r->target_name, sizeof r->target_name, "FlatField position");
        r->ra = r->dec = r->rot_pa = r->azimuth = r->zenith_angle = NAN;
        r->can_see_sky = false;
    }

    bfs_detector_record d;
    if (bfs_camera_detector(lsstcam(), detector, &d) < 0)
        return -EINVAL;
    r->detector = detector;
    snprintf(r->full_name, sizeof r->full_name, "%s", d.full_name);
    snprintf(r->raft, sizeof r->raft, "%s", d.raft);
    snprintf(r->slot, sizeof r->slot, "%s", d.name_in_raft);
    r->e2v = strcmp(bfs_camera_detector_type(lsstcam(), detector), "E2V") == 0;
    /* the file holds a science sensor's NSEG amplifiers (two rows of
     * eight), as many as raw ingest requires of this detector */
    if (bfs_camera_n_amplifiers(lsstcam(), detector) != NSEG)
        return -EINVAL;
    return 0;
}

int bfs_synth_raw_path(const bfs_synth_raw *r, const char *run, char *out, size_t outsz)
{
    /* The filename part of the template replaces '/' in the run by '_'. */
    char flat_run[256];
    size_t n = strlen(run);
    if (n >= sizeof flat_run) {
        if (outsz)
            out[0] = '\0';
        return -ENAMETOOLONG;
    }
    for (size_t i = 0; i <= n; i++)
        flat_run[i] = run[i] == '/' ? '_' : run[i];
    int len = snprintf(out, outsz, "%s/raw/%lld/%s/raw_%s_%s_%s_%s_%s.fits", run,
                       (long long)r->day_obs, r->obs_id, r->instrument, r->physical_filter,
                       r->obs_id, r->full_name, flat_run);
    if (len < 0 || (size_t)len >= outsz) {
        if (outsz)
            out[0] = '\0';
        return -ENAMETOOLONG;
    }
    return len;
}

/* ---- FITS ------------------------------------------------------------------ */

/* One amplifier's geometry, in pixels. */
typedef struct seg_geom {
    int ncols, nrows; /* NAXIS1, NAXIS2 */
    int pre;          /* serial prescan columns */
    int w, h;         /* imaging columns and rows (DATASEC) */
} seg_geom;

/* The real segment (576 x 2048; ITL: prescan 3, 509 x 2000 imaging; e2v:
 * prescan 10, 512 x 2002) scaled so 16 segments of 4-byte pixels hold about
 * payload bytes, never above the real size and never below a few pixels. */
static void seg_geometry(bool e2v, int64_t payload, seg_geom *g)
{
    const double real_cols = 576, real_rows = 2048;
    double pix = (double)payload / (NSEG * 4.0);
    double f = sqrt(pix / (real_cols * real_rows));
    if (f > 1.0)
        f = 1.0;
    int pre0 = e2v ? 10 : 3, w0 = e2v ? 512 : 509, h0 = e2v ? 2002 : 2000;
    g->ncols = (int)lround(real_cols * f);
    g->nrows = (int)lround(real_rows * f);
    if (g->ncols < 16)
        g->ncols = 16;
    if (g->nrows < 16)
        g->nrows = 16;
    g->pre = (int)lround(pre0 * f);
    if (g->pre < 1)
        g->pre = 1;
    g->w = (int)lround(w0 * f);
    if (g->w > g->ncols - g->pre - 1) /* keep at least one overscan column */
        g->w = g->ncols - g->pre - 1;
    g->h = (int)lround(h0 * f);
    if (g->h > g->nrows - 1)
        g->h = g->nrows - 1;
    if (g->w < 8)
        g->w = 8;
    if (g->h < 8)
        g->h = 8;
}

/* A standard normal deviate, approximated by the sum of four uniforms
 * (Irwin-Hall): one PRNG call per pixel and nobody will fit the tails. */
static double gauss(uint64_t *s)
{
    uint64_t v = splitmix64(s);
    double sum = 0;
    for (int i = 0; i < 4; i++, v >>= 16)
        sum += (double)(v & 0xffff) / 65536.0;
    return (sum - 2.0) * 1.7320508075688772;
}

/* Fill one segment's pixels.  Signal lives in the imaging area only; the
 * prescan and overscan hold bias and read noise, as on the real camera. */
static void fill_segment(const bfs_synth_raw *r, int seg, const seg_geom *g, int32_t *pix,
                         float *sig)
{
    uint64_t s = hash2(hash2((uint64_t)r->exposure_id, (uint64_t)r->detector), (uint64_t)seg);
    double bias = (r->e2v ? 23000.0 : 15000.0) + 300.0 * (double)(hash2(r->detector, seg) % 11) -
                  1500.0;
    double read_noise = r->e2v ? 4.5 : 6.0, gain = 1.6;
    int npix = g->w * g->h;

    double level = 0;
    if (strcmp(r->img_type, "FLAT") == 0)
        level = 18000.0;
    else if (strcmp(r->img_type, "OBJECT") == 0)
        level = 1200.0 * r->exposure_time / 30.0 + 50.0; /* sky; >0 even when compressed */
    for (int y = 0; y < g->h; y++) {
        /* A gentle gradient, so flats are not perfectly flat. */
        double grad = 1.0 - 0.05 * (double)y / g->h;
        for (int x = 0; x < g->w; x++)
            sig[y * g->w + x] = (float)(level * grad);
    }
    if (r->can_see_sky) {
        int nstars = 3 + npix / 20000;
        for (int k = 0; k < nstars; k++) {
            double cx = (double)(splitmix64(&s) % (uint64_t)g->w);
            double cy = (double)(splitmix64(&s) % (uint64_t)g->h);
            double peak = 300.0 * exp((double)(splitmix64(&s) % 1000) / 1000.0 * 4.5);
            const double sigma = 1.6; /* ~0.7 arcsec seeing at 0.2 arcsec/pixel */
            for (int y = (int)cy - 6; y <= (int)cy + 6; y++)
                for (int x = (int)cx - 6; x <= (int)cx + 6; x++) {
                    if (x < 0 || y < 0 || x >= g->w || y >= g->h)
                        continue;
                    double d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
                    sig[y * g->w + x] += (float)(peak * exp(-d2 / (2 * sigma * sigma)));
                }
        }
    }
    for (int y = 0; y < g->nrows; y++)
        for (int x = 0; x < g->ncols; x++) {
            double v = 0;
            int dx = x - g->pre;
            if (y < g->h && dx >= 0 && dx < g->w)
                v = sig[y * g->w + dx];
            double noise = sqrt(read_noise * read_noise + v / gain);
            double adu = bias + v + noise * gauss(&s);
            if (adu < 0)
                adu = 0;
            if (adu > 262143) /* 18-bit ADC */
                adu = 262143;
            pix[(size_t)y * g->ncols + x] = (int32_t)adu;
        }
}

static void write_primary(bfs_fits *f, const bfs_synth_raw *r, const seg_geom *g)
{
    char beg[32], end[32], dayobs[16], buf[80];
    tai_iso(r->begin_tai_ns, beg, sizeof beg);
    tai_iso(r->end_tai_ns, end, sizeof end);
    snprintf(dayobs, sizeof dayobs, "%08lld", (long long)r->day_obs);

    bfs_fits_add_image(f, 16, 0, NULL);
    bfs_fits_comment(f, "Synthetic data written by butlerfs; not a real observation.");
    bfs_fits_key_str(f, "DATE", end, "Creation Date and Time of File");
    bfs_fits_key_dbl(f, "MJD", tai_mjd(r->end_tai_ns), MJD_DECIMALS, "Modified Julian Date of file creation");
    bfs_fits_key_str(f, "IMGTYPE", r->img_type, "BIAS, DARK, FLAT, OBJECT");
    bfs_fits_key_str(f, "DATE-OBS", beg, "TAI date of start of observation");
    bfs_fits_key_dbl(f, "MJD-OBS", tai_mjd(r->begin_tai_ns), MJD_DECIMALS, "MJD of start of observation");
    bfs_fits_key_str(f, "OBSID", r->obs_id, "ImageName from Camera StartIntegration");
    bfs_fits_key_str(f, "DATE-BEG", beg, "Time at the start of integration");
    bfs_fits_key_dbl(f, "MJD-BEG", tai_mjd(r->begin_tai_ns), MJD_DECIMALS, "Modified Julian Date derived from DATE-BEG");
    bfs_fits_key_str(f, "DATE-END", end, "End date of the observation");
    bfs_fits_key_dbl(f, "MJD-END", tai_mjd(r->end_tai_ns), MJD_DECIMALS, "Modified Julian Date derived from DATE-END");
    bfs_fits_key_str(f, "BUNIT", "adu", "Brightness units for pixel array");
    bfs_fits_key_str(f, "TIMESYS", "TAI", "The time scale used");
    bfs_fits_key_str(f, "GROUPID", r->group, "imageSequenceName from StartIntegration");
    bfs_fits_key_str(f, "INSTRUME", r->instrument, "Instrument including the Camera");
    bfs_fits_key_str(f, "TELESCOP", "Simonyi Survey Telescope", "Telescope name");
    bfs_fits_key_dbl(f, "OBS-LONG", -70.749417, 6, "[deg] Observatory east longitude");
    bfs_fits_key_dbl(f, "OBS-LAT", -30.244639, 6, "[deg] Observatory latitude");
    bfs_fits_key_dbl(f, "OBS-ELEV", 2663.0, 1, "[m] Observatory elevation");
    bfs_fits_key_dbl(f, "RA", r->ra, 9, "RA of commanded position");
    bfs_fits_key_dbl(f, "DEC", r->dec, 9, "Dec of commanded position");
    bfs_fits_key_dbl(f, "ROTPA", r->rot_pa, 6, "Rotation angle relative to the sky (deg)");
    bfs_fits_key_str(f, "ROTCOORD", "sky", "Telescope Rotation Coordinates");
    double el = 90.0 - r->zenith_angle;
    bfs_fits_key_dbl(f, "ELSTART", el, 6, "[deg] Telescope elevation at start");
    bfs_fits_key_dbl(f, "AZSTART", r->azimuth, 6, "[deg] Telescope azimuth at start");
    bfs_fits_key_dbl(f, "AMSTART", isnan(el) ? NAN : 1.0 / cos(r->zenith_angle * M_PI / 180.0), 6,
            "Airmass at start");
    bfs_fits_key_str(f, "TRACKSYS", r->can_see_sky ? "RADEC" : "LOCAL", "Tracking system");
    /* what tells obs_lsst (and so a raw ingest) whether the sky was seen */
    bfs_fits_key_str(f, "VIGN_MIN", r->can_see_sky ? "NO" : "FULLY", "Minimum vignetting of the focal plane");
    bfs_fits_key_str(f, "RADESYS", "ICRS", "Equatorial coordinate system");
    bfs_fits_key_str(f, "OBJECT", r->target_name, "Name of the observed object");
    bfs_fits_key_str(f, "CAMCODE", "MC", "Camera code");
    bfs_fits_key_str(f, "CONTRLLR", "O", "Controller (e.g. O for OCS, C for CCS)");
    bfs_fits_key_str(f, "DAYOBS", dayobs, "The observation day as defined in the image name");
    bfs_fits_key_lng(f, "SEQNUM", r->seq_num, "The sequence number from the image name");
    bfs_fits_key_str(f, "PROGRAM", r->science_program, "Name of the program");
    bfs_fits_key_str(f, "REASON", r->observation_reason, "Reason for the observation");
    bfs_fits_key_str(f, "CCD_MANU", r->e2v ? "E2V" : "ITL", "CCD Manufacturer");
    bfs_fits_key_str(f, "CCD_TYPE", r->e2v ? "CCD250" : "3800C", "CCD Model Number");
    bfs_fits_key_str(f, "CCDSLOT", r->slot, "The CCD Slot");
    bfs_fits_key_str(f, "RAFTBAY", r->raft, "The RAFT Bay");
    /* Invented serial numbers: the real ones are camera data we do not need. */
    snprintf(buf, sizeof buf, "%s-%03d", r->e2v ? "E2V-CCD250" : "ITL-3800C", 100 + r->detector);
    bfs_fits_key_str(f, "LSST_NUM", buf, "LSST Assigned CCD Number");
    bfs_fits_key_str(f, "FILTBAND", r->band, "Name of the filter band");
    bfs_fits_key_str(f, "FILTER", r->physical_filter, "Name of the filter");
    bfs_fits_key_dbl(f, "EXPTIME", r->exposure_time, 3, "Exposure time in seconds");
    bfs_fits_key_dbl(f, "DARKTIME", r->dark_time, 4, "Total time in seconds");
    bfs_fits_key_str(f, "OBSANNOT", r->target_name, "Observation annotation");
    bfs_fits_key_lng(f, "HEADVER", 2, "Version number of header");
    snprintf(buf, sizeof buf, "%s_%s.fits", r->obs_id, r->full_name);
    bfs_fits_key_str(f, "FILENAME", buf, "Original name of the file");
    snprintf(buf, sizeof buf, "[1:%d,1:%d]", 8 * g->w, 2 * g->h);
    bfs_fits_key_str(f, "DETSIZE", buf, "Size of sensor");
    bfs_fits_checksum(f);
}

/* Segment HDU number k (0..15) is amplifier Segment1k for k < 8 and
 * Segment0(15-k) after: the order of a real LSSTCam raw.  The top row of
 * amplifiers reads out flipped in x, the bottom row flipped in y. */
static void write_segment(bfs_fits *f, const bfs_synth_raw *r, int k, const seg_geom *g,
                          int32_t *pix, float *sig)
{
    long naxes[2] = {g->ncols, g->nrows};
    char name[24], datasec[48], detsec[48], detsize[48];
    bool upper = k < 8;
    int amp = upper ? k : 15 - k;
    snprintf(name, sizeof name, "Segment%d%d", upper ? 1 : 0, amp);
    snprintf(datasec, sizeof datasec, "[%d:%d,1:%d]", g->pre + 1, g->pre + g->w, g->h);
    long dtv1, dtv2, dtm1, dtm2;
    if (upper) {
        snprintf(detsec, sizeof detsec, "[%d:%d,1:%d]", (amp + 1) * g->w, amp * g->w + 1, g->h);
        dtm1 = -1, dtv1 = (long)(amp + 1) * g->w + g->pre + 1;
        dtm2 = 1, dtv2 = 0;
    } else {
        int x0 = (7 - amp) * g->w;
        snprintf(detsec, sizeof detsec, "[%d:%d,%d:%d]", x0 + 1, x0 + g->w, 2 * g->h, g->h + 1);
        dtm1 = 1, dtv1 = x0 - g->pre;
        dtm2 = -1, dtv2 = 2L * g->h + 1;
    }
    snprintf(detsize, sizeof detsize, "[1:%d,1:%d]", 8 * g->w, 2 * g->h);

    bfs_fits_add_image(f, 32, 2, naxes);
    bfs_fits_key_lng(f, "CHANNEL", k + 1, "Output channel");
    bfs_fits_key_str(f, "EXTNAME", name, "Extension name");
    bfs_fits_key_str(f, "CCDSUM", "1 1", NULL);
    bfs_fits_key_str(f, "DATASEC", datasec, "Pixel data section");
    bfs_fits_key_str(f, "DETSEC", detsec, "Detector section of this amplifier");
    bfs_fits_key_str(f, "DETSIZE", detsize, "Size of sensor");
    bfs_fits_key_lng(f, "DTV1", dtv1, "Detector transformation vector");
    bfs_fits_key_lng(f, "DTV2", dtv2, "Detector transformation vector");
    bfs_fits_key_dbl(f, "DTM1_1", (double)dtm1, 1, "Detector transformation matrix");
    bfs_fits_key_dbl(f, "DTM2_2", (double)dtm2, 1, "Detector transformation matrix");
    bfs_fits_key_dbl(f, "DTM1_2", 0.0, 1, "Detector transformation matrix");
    bfs_fits_key_dbl(f, "DTM2_1", 0.0, 1, "Detector transformation matrix");
    bfs_fits_key_str(f, "BUNIT", "adu", "Brightness units for pixel array");
    bfs_fits_key_log(f, "INHERIT", true, "Extension inherits values from primary header");
    if (bfs_fits_error(f))
        return;
    fill_segment(r, k, g, pix, sig);
    bfs_fits_write_i32(f, pix, (size_t)g->ncols * g->nrows);
    bfs_fits_checksum(f);
}

int bfs_synth_write_raw_fits(const char *path, const bfs_synth_raw *r, int64_t payload_bytes)
{
    if (payload_bytes < 0)
        return -EINVAL;
    if (payload_bytes == 0)
        payload_bytes = DEFAULT_FITS_PAYLOAD;
    seg_geom g;
    seg_geometry(r->e2v, payload_bytes, &g);
    int32_t *pix = malloc((size_t)g.ncols * g.nrows * sizeof *pix);
    float *sig = malloc((size_t)g.w * g.h * sizeof *sig);
    if (!pix || !sig) {
        free(pix);
        free(sig);
        return -ENOMEM;
    }

    bfs_fits *f = NULL;
    int rc = bfs_fits_create(path, &f);
    if (!rc) {
        write_primary(f, r, &g);
        for (int k = 0; k < NSEG && !bfs_fits_error(f); k++)
            write_segment(f, r, k, &g, pix, sig);
        rc = bfs_fits_close(f);
    }
    free(pix);
    free(sig);
    return rc;
}

/* ---- the opaque fast path ------------------------------------------------ */

/* payload bytes: a line naming the dataset, then a splitmix64 stream seeded
 * by it, so every file differs and a benchmark can check what it reads. */
static int write_opaque(const char *path, const bfs_synth_raw *r, int64_t payload)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        bfs_err(TAG, "cannot create %s: %s", path, strerror(e));
        return -e;
    }
    static const size_t chunk = 65536;
    uint64_t buf[65536 / 8];
    uint64_t s = hash2((uint64_t)r->exposure_id, (uint64_t)r->detector);
    int64_t left = payload;
    bool first = true;
    int rc = 0;
    while (left > 0 && rc == 0) {
        for (size_t i = 0; i < chunk / 8; i++)
            buf[i] = splitmix64(&s);
        if (first) {
            char head[96];
            int n = snprintf(head, sizeof head, "butlerfs synthetic raw %s %s %s\n",
                             r->instrument, r->obs_id, r->full_name);
            memcpy(buf, head, (size_t)n);
            first = false;
        }
        size_t n = left < (int64_t)chunk ? (size_t)left : chunk;
        const char *p = (const char *)buf;
        while (n > 0) {
            ssize_t w = write(fd, p, n);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                rc = -errno;
                bfs_err(TAG, "writing %s: %s", path, strerror(errno));
                break;
            }
            p += w, n -= (size_t)w, left -= w;
        }
    }
    if (rc == 0 && fchmod(fd, 0644) < 0) /* umask may have narrowed it */
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc < 0)
        unlink(path);
    return rc;
}

/* ---- the repository ---------------------------------------------------------- */

/* Create the directories of path (everything before its last '/') below the
 * first `from` bytes, which must exist already.  New directories are 0755
 * whatever the umask. */
static int make_dirs(char *path, size_t from)
{
    for (char *p = path + from; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        int rc = 0;
        if (mkdir(path, 0755) == 0) {
            if (chmod(path, 0755) < 0)
                rc = -errno;
        } else if (errno != EEXIST) {
            rc = -errno;
        }
        if (rc < 0)
            bfs_err(TAG, "cannot create directory %s: %s", path, strerror(-rc));
        *p = '/';
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* The exposure record of r as a raw ingest makes it: r's primary header
 * (write_primary) is written to a FITS file in memory, read back and
 * translated.  So a raw synth wrote and then ingested again (into another
 * RUN, through the mount) agrees with the record synth registered, to the
 * nanosecond of the timespans read from MJD cards; a record made from r's
 * numbers directly would not.  t holds the strings the record points to,
 * but its instrument is r's (the caller keeps r while it uses t). */
static int exposure_from_header(const bfs_synth_raw *r, bfs_raw_translation *t)
{
    seg_geom g;
    seg_geometry(r->e2v, DEFAULT_FITS_PAYLOAD, &g);
    bfs_fits *f = NULL;
    bfs_fits_card *cards = NULL;
    size_t n = 0;
    char *why = NULL;
    /* the camera is LSSTCam whatever the records are named (opts.instrument) */
    bfs_synth_raw as_lsstcam = *r;
    snprintf(as_lsstcam.instrument, sizeof as_lsstcam.instrument, "LSSTCam");
    int rc = bfs_fits_create_mem(&f);
    if (rc == 0) {
        write_primary(f, &as_lsstcam, &g);
        rc = bfs_fits_header(f, &cards, &n);
        int crc = bfs_fits_close(f);
        rc = rc < 0 ? rc : crc;
    }
    if (rc == 0)
        rc = bfs_translate_raw(cards, n, NULL, t, &why);
    if (rc == 0)
        t->exposure.instrument = r->instrument; /* r outlives t's use (the caller's) */
    if (rc < 0)
        bfs_err(TAG, "synthetic exposure %s: its header does not translate: %s", r->obs_id,
                why ? why : strerror(-rc));
    free(cards);
    free(why);
    return rc;
}

/* Instrument, detectors, filters, exposures, run and dataset type: one
 * transaction, idempotent, so a second synth into the same repository
 * only adds what is new. */
static int add_dimension_records(bfs_registry *reg, const bfs_synth_opts *o)
{
    int rc = bfs_registry_begin(reg);
    if (rc < 0)
        return rc;
    /* LSSTCam's records under the instrument name of the options, with
     * only the filters and detectors synth uses (not bfs_camera_register). */
    bfs_instrument_record inst;
    bfs_camera_instrument(lsstcam(), &inst);
    inst.name = o->instrument;
    rc = bfs_registry_add_instrument(reg, &inst);
    for (int i = 0; i < NFILTERS && rc == 0; i++)
        rc = bfs_registry_add_physical_filter(reg, o->instrument, cycle_filters[i],
                                              bfs_camera_band(lsstcam(), cycle_filters[i]));
    for (int id = 0; id < BFS_SYNTH_NUM_DETECTORS && rc == 0; id++) {
        bfs_detector_record d;
        rc = bfs_camera_detector(lsstcam(), id, &d);
        d.instrument = o->instrument;
        if (rc == 0)
            rc = bfs_registry_add_detector(reg, &d);
    }
    for (int i = 0; i < o->n_exposures && rc == 0; i++) {
        bfs_synth_raw r;
        bfs_raw_translation t;
        rc = bfs_synth_describe(o, i, 0, &r);
        if (rc == 0)
            rc = exposure_from_header(&r, &t);
        if (rc == 0)
            rc = bfs_registry_add_exposure(reg, &t.exposure);
    }
    int64_t run_id;
    if (rc == 0)
        rc = bfs_registry_add_run(reg, o->run, &run_id);
    static const char *const dims[] = {"instrument", "detector", "exposure"};
    if (rc == 0)
        rc = bfs_registry_add_dataset_type(reg, "raw", "Exposure", dims, 3, false);
    if (rc == 0)
        rc = bfs_registry_commit(reg);
    if (rc < 0) {
        bfs_registry_rollback(reg);
        bfs_err(TAG, "synthetic %s: cannot add dimension records: %s", o->instrument,
                strerror(-rc));
    }
    return rc;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* Remove the files of datasets [from, to) of a rolled-back batch. */
static void undo_files(const bfs_synth_opts *o, const char *root, int64_t from, int64_t to)
{
    char rel[PATH_MAX], full[PATH_MAX];
    for (int64_t k = from; k < to; k++) {
        bfs_synth_raw r;
        if (bfs_synth_describe(o, (int)(k / o->n_detectors), (int)(k % o->n_detectors), &r) < 0 ||
            bfs_synth_raw_path(&r, o->run, rel, sizeof rel) < 0)
            continue;
        if ((size_t)snprintf(full, sizeof full, "%s%s", root, rel) < sizeof full)
            unlink(full);
    }
}

int bfs_synth_raws(bfs_registry *reg, const bfs_synth_opts *opts)
{
    bfs_synth_opts o;
    char runbuf[256];
    const char *why;
    int rc = resolve_opts(opts, &o, runbuf, sizeof runbuf, &why);
    if (rc < 0) {
        bfs_err(TAG, "synthetic raws: %s", why ? why : "the run name is too long");
        return rc;
    }
    const char *root = bfs_registry_datastore_root(reg);
    if (!root || root[0] != '/') {
        bfs_err(TAG, "synthetic raws need a local datastore root, not %s; "
                     "create the repository with a directory datastore",
                root ? root : "(none)");
        return -EOPNOTSUPP;
    }
    rc = add_dimension_records(reg, &o);
    if (rc < 0)
        return rc;

    const int64_t total = (int64_t)o.n_exposures * o.n_detectors;
    const size_t rootlen = strlen(root);
    static const char *const dim_names[] = {"instrument", "detector", "exposure"};
    char rel[PATH_MAX], full[PATH_MAX], tmp[PATH_MAX + 8];
    char stopped[PATH_MAX + 200] = ""; /* what stopped the run, when more than an errno says */
    int64_t done = 0, batch_start = 0, last_report = now_ns();
    bool in_txn = false;

    for (int i = 0; i < o.n_exposures; i++) {
        for (int d = 0; d < o.n_detectors; d++) {
            bfs_synth_raw r;
            rc = bfs_synth_describe(&o, i, d, &r);
            if (rc == 0 && bfs_synth_raw_path(&r, o.run, rel, sizeof rel) < 0)
                rc = -ENAMETOOLONG;
            if (rc == 0 && (size_t)snprintf(full, sizeof full, "%s%s", root, rel) >= sizeof full)
                rc = -ENAMETOOLONG;
            if (rc < 0)
                goto fail;
            snprintf(tmp, sizeof tmp, "%s.tmp", full);
            if (d == 0 && (rc = make_dirs(full, rootlen)) < 0) /* one directory per exposure */
                goto fail;
            if (!in_txn) {
                if ((rc = bfs_registry_begin(reg)) < 0)
                    goto fail;
                in_txn = true;
            }

            int64_t size = o.payload_bytes;
            rc = o.fits ? bfs_synth_write_raw_fits(tmp, &r, o.payload_bytes)
                        : write_opaque(tmp, &r, o.payload_bytes);
            if (rc < 0)
                goto fail;
            if (o.fits) {
                struct stat sb;
                if (stat(tmp, &sb) < 0) {
                    rc = -errno;
                    unlink(tmp);
                    goto fail;
                }
                size = (int64_t)sb.st_size;
            }

            char det[16], exp[24];
            snprintf(det, sizeof det, "%d", r.detector);
            snprintf(exp, sizeof exp, "%lld", (long long)r.exposure_id);
            const char *const values[] = {r.instrument, det, exp};
            bfs_new_dataset nd = {
                .dataset_type = "raw",
                .run = o.run,
                .dim_names = dim_names,
                .dim_values = values,
                .ndims = 3,
                .path = rel,
                .formatter = bfs_camera_raw_formatter(lsstcam()),
                .storage_class = NULL,
                .file_size = size,
                .checksum = NULL,
            };
            char id[33];
            rc = bfs_registry_add_dataset(reg, &nd, id);
            if (rc == 0 && rename(tmp, full) < 0) {
                rc = -errno;
                snprintf(stopped, sizeof stopped, "rename %s: %s", tmp, strerror(errno));
            }
            if (rc < 0) {
                unlink(tmp);
                if (rc == -EEXIST)
                    snprintf(stopped, sizeof stopped, "dataset raw %s/%s already exists; use a new run or repository",
                             r.obs_id, r.full_name);
                goto fail;
            }
            done++;

            if (done - batch_start >= BATCH || done == total) {
                if ((rc = bfs_registry_commit(reg)) < 0)
                    goto fail;
                in_txn = false;
                batch_start = done;
            }
            if (o.progress) {
                int64_t now = now_ns();
                if (done == total || now - last_report >= NS_PER_S / 10) {
                    o.progress(o.progress_ctx, done, total);
                    last_report = now;
                }
            }
        }
    }
    return (int)done;

fail:
    if (in_txn)
        bfs_registry_rollback(reg);
    /* A failed commit also loses its batch; either way the batch's files go. */
    undo_files(&o, root, batch_start, done);
    bfs_err(TAG, "synthetic raws into %s stopped after %lld of %lld datasets: %s", o.run,
            (long long)batch_start, (long long)total, stopped[0] ? stopped : strerror(-rc));
    return rc;
}
