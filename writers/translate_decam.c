/*
 * translate_decam.c - DECam raws -> their datasets and exposure record
 * (translate_decam.h).
 *
 * The rules are astro_metadata_translator's DecamTranslator
 * (python/astro_metadata_translator/translators/decam.py: can_translate,
 * fix_header, determine_translatable_headers, the to_* methods and the
 * trivial map) on FitsTranslator (translators/fits.py: the dates) and the
 * MetadataTranslator defaults (translator.py: observing day, group,
 * counters, reason, can_see_sky) and helpers (helpers.py: tracking and
 * Alt/Az from header keywords), assembled into a record as obs_base's
 * makeExposureRecordFromObsInfo does from the first dataset of the file
 * (ingest.py); the detector is CCDNUM as obs_decam's raw formatter finds
 * it (rawFormatter.py).  The times go through translate.h's exact bfs_tai.
 *
 * The header seen by the translator is the primary merged with one CCD
 * extension, the extension winning; it is not copied: a lookup asks the
 * extension, then the primary, after the few values fix_header replaces.
 */
#include "translate_decam.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "strutil.h"

/* ---- the merged header -------------------------------------------------- */

struct dx {
    const bfs_fits_card *prim, *ext;
    size_t np, ne;
    /* fix_header's replacements (type 0: none) */
    bfs_fits_card fix[3];
    int nfix;
    char **errmsg;
    int err;
};

static void fail(struct dx *d, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(struct dx *d, int err, const char *fmt, ...)
{
    if (d->err)
        return;
    d->err = err;
    va_list ap;
    va_start(ap, fmt);
    bfs_set_errmsgv(d->errmsg, fmt, ap);
    va_end(ap);
}

static const bfs_fits_card *get(const struct dx *d, const char *key)
{
    for (int i = 0; i < d->nfix; i++)
        if (!strcmp(d->fix[i].key, key))
            return &d->fix[i];
    const bfs_fits_card *c = d->ext ? bfs_fits_find(d->ext, d->ne, key) : NULL;
    return c ? c : bfs_fits_find(d->prim, d->np, key);
}

/* is_key_ok: present and defined. */
static bool ok(const struct dx *d, const char *key)
{
    const bfs_fits_card *c = get(d, key);
    return c && c->type != 'U';
}

static const char *str(const struct dx *d, const char *key)
{
    const bfs_fits_card *c = get(d, key);
    return c && c->type != 'U' ? c->value : NULL;
}

/* A number from a numeric card, or a string that is one (astropy makes a
 * Quantity of either). */
static bool num_of(const bfs_fits_card *c, double *out)
{
    if (!c || c->type == 'U' || c->type == 'X')
        return false;
    if (c->type == 'L') {
        *out = c->value[0] == 'T';
        return true;
    }
    char *end;
    double v = strtod(c->value, &end);
    while (*end == ' ')
        end++;
    if (end == c->value || *end || !isfinite(v))
        return false;
    *out = v;
    return true;
}

static bool num(const struct dx *d, const char *key, double *out)
{
    return num_of(get(d, key), out);
}

static void set_fix(struct dx *d, const char *key, char type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set_fix(struct dx *d, const char *key, char type, const char *fmt, ...)
{
    bfs_fits_card *c = NULL;
    for (int i = 0; i < d->nfix; i++)
        if (!strcmp(d->fix[i].key, key))
            c = &d->fix[i];
    if (!c && d->nfix < (int)(sizeof d->fix / sizeof *d->fix))
        c = &d->fix[d->nfix++];
    if (!c)
        return;
    memset(c, 0, sizeof *c);
    snprintf(c->key, sizeof c->key, "%s", key);
    c->type = type;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->value, sizeof c->value, fmt, ap);
    va_end(ap);
}

/* Python's str.strip() of s into out (n bytes). */
static void strip(const char *s, char *out, size_t n)
{
    while (*s == ' ' || (*s >= '\t' && *s <= '\r'))
        s++;
    size_t len = strlen(s);
    while (len && (s[len - 1] == ' ' || (s[len - 1] >= '\t' && s[len - 1] <= '\r')))
        len--;
    snprintf(out, n, "%.*s", (int)len, s);
}

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

/* An angle as astropy's Angle reads a header value in the given unit: a
 * number, or a string "[+-]A[:B[:C]]" (sexagesimal) or a decimal. */
static bool angle_of(const bfs_fits_card *c, double *out)
{
    if (!c || c->type == 'U')
        return false;
    if (c->type == 'I' || c->type == 'F')
        return num_of(c, out);
    if (c->type != 'C')
        return false;
    const char *p = c->value;
    while (*p == ' ')
        p++;
    double sign = 1;
    if (*p == '-' || *p == '+')
        sign = *p++ == '-' ? -1 : 1;
    double v = 0, scale = 1;
    for (int part = 0; part < 3; part++) {
        if (!((*p >= '0' && *p <= '9') || *p == '.'))
            return false;
        char *end;
        double x = strtod(p, &end);
        if (end == p || !isfinite(x) || x < 0 || (part && x >= 60))
            return false;
        v += x / scale;
        scale *= 60;
        p = end;
        if (*p != ':')
            break;
        p++;
    }
    while (*p == ' ')
        p++;
    if (*p)
        return false;
    *out = sign * v;
    return true;
}

/* ---- times ------------------------------------------------------------------ */

/* FitsTranslator._from_fits_date: date_key (ISO) or else mjd_key, in scale
 * (NULL: TIMESYS, default UTC).  1 found, 0 absent, -1 error (recorded). */
static int fits_date(struct dx *d, const char *date_key, const char *mjd_key, const char *scale,
                     bfs_tai *out)
{
    char sys[72] = "utc";
    if (scale)
        snprintf(sys, sizeof sys, "%s", scale);
    else if (ok(d, "TIMESYS")) {
        snprintf(sys, sizeof sys, "%s", str(d, "TIMESYS"));
        lower(sys);
    }
    bool utc = !strcmp(sys, "utc");
    if (!utc && strcmp(sys, "tai")) {
        fail(d, -EINVAL, "TIMESYS = '%s' is not a time scale butlerfs handles (TAI or UTC)",
             str(d, "TIMESYS"));
        return -1;
    }
    if (date_key && ok(d, date_key)) {
        if (!bfs_tai_from_iso(str(d, date_key), utc, out)) {
            fail(d, -EINVAL, "%s = '%s' is not a time", date_key, str(d, date_key));
            return -1;
        }
        return 1;
    }
    if (mjd_key && ok(d, mjd_key)) {
        double mjd;
        if (!num(d, mjd_key, &mjd) || !bfs_tai_from_mjd(mjd, utc, out)) {
            fail(d, -EINVAL, "%s = '%s' is not a time", mjd_key, get(d, mjd_key)->value);
            return -1;
        }
        return 1;
    }
    return 0;
}

/* to_datetime_begin (fits.py): DATE-BEG/MJD-BEG, DATE-OBS/MJD-OBS, else
 * DATE-AVG/MJD-AVG less half the exposure time.  false when there is none
 * (recorded as an error: the Butler requires it). */
static bool datetime_begin(struct dx *d, bfs_tai *out)
{
    static const char *const pairs[2][2] = {{"DATE-BEG", "MJD-BEG"}, {"DATE-OBS", "MJD-OBS"}};
    for (int i = 0; i < 2; i++) {
        int r = fits_date(d, pairs[i][0], pairs[i][1], NULL, out);
        if (r)
            return r > 0;
    }
    bool tai = (get(d, "INSTRUMENT") && get(d, "BORE-AIRMASS")) ||
               (get(d, "BORE-AIRMASS") && get(d, "BORE-AZ") && get(d, "BORE-RA"));
    int r = fits_date(d, "DATE-AVG", "MJD-AVG", tai ? "tai" : NULL, out);
    if (r < 0)
        return false;
    double exptime;
    if (r > 0 && num(d, "EXPTIME", &exptime)) {
        *out = bfs_tai_add_s(*out, -exptime / 2.0);
        return true;
    }
    fail(d, -EINVAL, "the header has no start time (DATE-OBS, MJD-OBS, DATE-BEG, MJD-BEG, or "
                     "DATE-AVG with EXPTIME)");
    return false;
}

static void civil_from_days(int64_t z, int *y, int *m, int *dd)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *dd = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

#define NS_PER_DAY 86400000000000LL
/* DecamTranslator._observing_day_offset: 12 hours, on the TAI scale. */
#define DECAM_DAY_OFFSET_NS (12LL * 3600 * 1000000000LL)

/* ---- fix_header (decam.py) ------------------------------------------------- */

static void fix_header(struct dx *d)
{
    const char *obstype = get(d, "OBSTYPE") ? str(d, "OBSTYPE") : "unknown";
    char low[72] = "";
    if (obstype) {
        snprintf(low, sizeof low, "%s", obstype);
        lower(low);
    }
    if (strstr(low, "bias") || strstr(low, "zero"))
        set_fix(d, "FILTER", 'C', "%s", "solid plate 0.0 0.0");
    /* boresight corrections for program 2013A-0351 (Trifid and Lagoon) */
    const char *object = get(d, "OBJECT") ? str(d, "OBJECT") : "unknown";
    if (!object || !strstr(object, "Trifid") || !obstype || strcmp(obstype, "object"))
        return;
    bfs_tai begin, lo, hi;
    if (!datetime_begin(d, &begin))
        return;
    bfs_tai_from_iso("2013-02-10", true, &lo);
    bfs_tai_from_iso("2013-02-14", true, &hi);
    if (bfs_tai_cmp(begin, lo) <= 0 || bfs_tai_cmp(begin, hi) >= 0)
        return;
    double ra_h, dec;
    if (!angle_of(get(d, "RA"), &ra_h) || !angle_of(get(d, "DEC"), &dec)) {
        fail(d, -EINVAL, "RA and DEC (needed to correct the 2013A-0351 boresight) are missing or "
                         "not angles");
        return;
    }
    set_fix(d, "TELRA", 'F', "%.17g", ra_h + -0.027417 / 15.0);
    set_fix(d, "TELDEC", 'F', "%.17g", dec + -0.002833);
}

/* ---- pointing ------------------------------------------------------------- */

/* to_tracking_radec: TELRA (hours) and TELDEC (degrees) in the RADESYS frame
 * (ICRS without one; GAPPT is a moving target: none), as ICRS degrees.  A
 * missing or unreadable value is no position (an optional property). */
static void tracking_radec(struct dx *d, double *ra, double *dec)
{
    *ra = *dec = NAN;
    char frame[72] = "icrs";
    if (ok(d, "RADESYS")) {
        strip(str(d, "RADESYS"), frame, sizeof frame);
        lower(frame);
    }
    if (!strcmp(frame, "gappt"))
        return;
    double h, dg;
    if (!ok(d, "TELRA") || !ok(d, "TELDEC") || !angle_of(get(d, "TELRA"), &h) ||
        !angle_of(get(d, "TELDEC"), &dg) || fabs(dg) > 90.0)
        return;
    double r = h * 15.0, dl = dg;
    if (!strcmp(frame, "fk5"))
        bfs_translate_fk5_to_icrs(&r, &dl);
    else if (strcmp(frame, "icrs"))
        return; /* FK4 and others: not implemented */
    *ra = bfs_translate_wrap360(r);
    *dec = dl;
}

/* to_altaz_begin: ZD and AZ in degrees; altitude clipped to [0, 90]. */
static void altaz_begin(struct dx *d, double *az, double *zen)
{
    *az = *zen = NAN;
    double a, zd;
    if (!ok(d, "AZ") || !ok(d, "ZD") || !num(d, "AZ", &a) || !num(d, "ZD", &zd))
        return;
    double alt = 90.0 - zd;
    if (a < -360.0 || alt < -90.0)
        return;
    if (alt > 90.0)
        alt = 90.0;
    else if (alt < 0.0)
        alt = 0.0;
    *az = bfs_translate_wrap360(a);
    *zen = 90.0 - alt;
}

/* ---- the record ---------------------------------------------------------------- */

static bool check_name(struct dx *d, const char *what, const char *key, const char *value, size_t max)
{
    if (!bfs_is_one_component(value)) {
        fail(d, -EINVAL, "%s '%s' (from %s) cannot be part of a file name", what, value, key);
        return false;
    }
    if (max && strlen(value) > max) {
        fail(d, -EINVAL, "%s '%s' (from %s) is longer than the registry's %zu characters", what,
             value, key, max);
        return false;
    }
    return true;
}

/* A whole number from a card: an integer, or a string of digits. */
static bool whole(const bfs_fits_card *c, int64_t *out)
{
    if (!c || (c->type != 'I' && c->type != 'C'))
        return false;
    char s[72];
    strip(c->value, s, sizeof s);
    return bfs_parse_i64(s, out);
}

static bool missing(struct dx *d, const char *key, const char *what)
{
    if (ok(d, key))
        return false;
    fail(d, -EINVAL, "the header lacks %s (%s), which the Butler requires", key, what);
    return true;
}

static int translate(struct dx *d, bfs_raw_translation *out)
{
    const char *ins = get(d, "INSTRUME") ? str(d, "INSTRUME") : BFS_DECAM_INSTRUMENT;
    if (!ins)
        ins = BFS_DECAM_INSTRUMENT; /* undefined: the trivial map's default */
    if (strcmp(ins, BFS_DECAM_INSTRUMENT)) {
        fail(d, -ENOENT, "INSTRUME = '%s' is not DECam's", ins);
        return d->err;
    }
    fix_header(d);
    if (d->err)
        return d->err;
    out->camera = NULL;
    out->instrument = BFS_DECAM_INSTRUMENT;
    bfs_exposure_record *r = &out->exposure;
    char *obs_id = out->buf[0], *filter = out->buf[1], *group = out->buf[2], *type = out->buf[3],
         *reason = out->buf[4], *program = out->buf[5];
    r->instrument = out->instrument;

    /* detector: CCDNUM of the extension (detector_num, required) */
    out->detector = -1;
    if (d->ext) {
        int64_t det;
        if (!whole(get(d, "CCDNUM"), &det)) {
            fail(d, -EINVAL, "the CCD extension lacks a whole-number CCDNUM");
            return d->err;
        }
        out->detector = det;
    }
    /* exposure id: EXPNUM; seq_num and the group counters are the same */
    if (missing(d, "EXPNUM", "the exposure number"))
        return d->err;
    int64_t id;
    if (!whole(get(d, "EXPNUM"), &id) || id < 0) {
        fail(d, -EINVAL, "EXPNUM = '%s' is not a whole number", str(d, "EXPNUM"));
        return d->err;
    }
    out->exposure_id = r->id = id;
    r->seq_num = r->seq_start = r->seq_end = id;
    snprintf(group, 80, "%lld", (long long)id);
    r->group = group;
    /* obs_id: OBSID */
    if (missing(d, "OBSID", "the observation id"))
        return d->err;
    snprintf(obs_id, 80, "%s", str(d, "OBSID"));
    if (!check_name(d, "the observation id", "OBSID", obs_id, 0))
        return d->err;
    r->obs_id = obs_id;
    /* observation type: OBSTYPE stripped, lower case; "object" is "science" */
    if (ok(d, "OBSTYPE")) {
        strip(str(d, "OBSTYPE"), type, 80);
        lower(type);
        if (!strcmp(type, "object"))
            snprintf(type, 80, "science");
    } else {
        snprintf(type, 80, "none");
    }
    if (!check_name(d, "the observation type", "OBSTYPE", type, 16))
        return d->err;
    r->observation_type = type;
    snprintf(reason, 80, "%s", !strcmp(type, "science") ? "science" : "unknown");
    r->observation_reason = reason;
    /* physical filter: FILTER stripped (after fix_header) */
    if (missing(d, "FILTER", "the physical filter"))
        return d->err;
    strip(str(d, "FILTER"), filter, 80);
    if (!check_name(d, "the physical filter", "FILTER", filter, 32))
        return d->err;
    r->physical_filter = filter;
    /* exposure times: EXPREQ (the record's exposure_time), DARKTIME */
    if (missing(d, "EXPREQ", "the requested exposure time"))
        return d->err;
    if (!num(d, "EXPREQ", &r->exposure_time)) {
        fail(d, -EINVAL, "EXPREQ = '%s' is not a number", str(d, "EXPREQ"));
        return d->err;
    }
    if (!num(d, "DARKTIME", &r->dark_time))
        r->dark_time = NAN;
    /* timespan: begin; end DTUTC (UTC) or begin + EXPTIME */
    bfs_tai begin, end;
    if (!datetime_begin(d, &begin))
        return d->err;
    if (ok(d, "DTUTC")) {
        if (!bfs_tai_from_iso(str(d, "DTUTC"), true, &end)) {
            fail(d, -EINVAL, "DTUTC = '%s' is not a time", str(d, "DTUTC"));
            return d->err;
        }
    } else {
        double exptime;
        if (missing(d, "EXPTIME", "the exposure time, for the end time without DTUTC"))
            return d->err;
        if (!num(d, "EXPTIME", &exptime)) {
            fail(d, -EINVAL, "EXPTIME = '%s' is not a number", str(d, "EXPTIME"));
            return d->err;
        }
        end = bfs_tai_add_s(begin, exptime);
    }
    if (begin.ns < BFS_TIMESPAN_UNBOUNDED_BEGIN || begin.ns >= BFS_TIMESPAN_UNBOUNDED_END) {
        fail(d, -EINVAL, "the start time of the exposure (DATE-OBS) is outside 1970-2100, the "
                         "times a Butler registry holds");
        return d->err;
    }
    if (bfs_tai_cmp(end, begin) < 0)
        end = begin; /* obs_base: an end before the begin is the begin */
    r->timespan_begin = bfs_tai_round(begin);
    r->timespan_end = bfs_tai_round(end);
    if (r->timespan_end == r->timespan_begin && r->timespan_end < BFS_TIMESPAN_UNBOUNDED_END)
        r->timespan_end++; /* daf_butler's Timespan of one instant */
    /* day_obs: the TAI date of begin less 12 hours */
    int y, m, dd;
    int64_t shifted = begin.ns - DECAM_DAY_OFFSET_NS;
    civil_from_days(shifted / NS_PER_DAY - (shifted % NS_PER_DAY < 0), &y, &m, &dd);
    r->day_obs = (int64_t)y * 10000 + m * 100 + dd;
    /* target (OBJECT) and program (PROPID): NULL when absent */
    const char *obj = str(d, "OBJECT");
    if (obj) {
        snprintf(out->target, sizeof out->target, "%s", obj);
        r->target_name = out->target;
    } else {
        r->target_name = NULL;
    }
    const char *prop = str(d, "PROPID");
    if (prop) {
        snprintf(program, 80, "%s", prop);
        r->science_program = program;
    } else {
        r->science_program = NULL;
    }
    /* pointing; DECam has no rotator: the sky angle is the constant 90 */
    tracking_radec(d, &r->tracking_ra, &r->tracking_dec);
    r->sky_angle = isnan(r->tracking_ra) ? NAN : 90.0;
    altaz_begin(d, &r->azimuth, &r->zenith_angle);
    r->has_simulated = false;
    static const char *const sky[] = {"science", "object", "standard", "sky flat"};
    static const char *const dark[] = {"zero", "dark", "dome flat"};
    r->can_see_sky = -1;
    for (size_t i = 0; i < sizeof sky / sizeof *sky; i++)
        if (!strcmp(type, sky[i]))
            r->can_see_sky = 1;
    for (size_t i = 0; i < sizeof dark / sizeof *dark; i++)
        if (!strcmp(type, dark[i]))
            r->can_see_sky = 0;
    return d->err;
}

/* ---- public ---------------------------------------------------------------------- */

/* can_translate: INSTRUME present and its value (undefined: the default
 * "DECam") is "DECam"; or FILTER defined and containing "DECam". */
static bool is_decam(const struct dx *d)
{
    const bfs_fits_card *ins = get(d, "INSTRUME");
    if (ins && (ins->type == 'U' || (ins->type == 'C' && !strcmp(ins->value, BFS_DECAM_INSTRUMENT))))
        return true;
    const char *f = str(d, "FILTER");
    return f && get(d, "FILTER")->type == 'C' && strstr(f, "DECam");
}

bool bfs_decam_is(const bfs_fits_card *cards, size_t n)
{
    struct dx d = {.prim = cards, .np = n};
    return is_decam(&d);
}

int bfs_decam_detector(const bfs_fits_card *cards, size_t n, int64_t *detector, char detpos[16],
                       char **errmsg)
{
    *detector = -1;
    if (detpos) {
        const bfs_fits_card *p = bfs_fits_find(cards, n, "DETPOS");
        snprintf(detpos, 16, "%.15s", p && p->type == 'C' ? p->value : "");
    }
    const bfs_fits_card *c = bfs_fits_find(cards, n, "CCDNUM");
    if (!c) {
        bfs_set_errmsg(errmsg, "the extension has no CCDNUM: not a CCD, skipped");
        return BFS_DECAM_SKIPPED;
    }
    int64_t v;
    if (!whole(c, &v)) {
        bfs_set_errmsg(errmsg, "CCDNUM = '%s' is not a whole number", c->value);
        return -EINVAL;
    }
    if (v > BFS_DECAM_MAX_SCIENCE_CCD) {
        bfs_set_errmsg(errmsg, "CCDNUM = %lld is a guide or focus CCD (above %d): skipped, as the "
                               "Butler does not ingest those", (long long)v, BFS_DECAM_MAX_SCIENCE_CCD);
        return BFS_DECAM_SKIPPED;
    }
    *detector = v;
    return 0;
}

int bfs_decam_translate(const bfs_fits_card *primary, size_t n_primary, const bfs_fits_card *ext,
                        size_t n_ext, bfs_raw_translation *out, char **errmsg)
{
    memset(out, 0, sizeof *out);
    struct dx d = {.prim = primary, .np = n_primary, .ext = ext, .ne = ext ? n_ext : 0,
                   .errmsg = errmsg};
    return translate(&d, out);
}

/* ---- a whole file ------------------------------------------------------------------ */

struct scan {
    const char *path;
    bfs_decam_file *out;
    bfs_fits_card *prim; /* the primary's cards, kept */
    size_t np;
    size_t cap;
    char **errmsg;
};

static int scan_hdu(void *ctx, int hdu, const bfs_fits_card *cards, size_t n)
{
    struct scan *s = ctx;
    bfs_decam_file *f = s->out;
    if (hdu == 1) {
        if (n && !(s->prim = malloc(n * sizeof *cards)))
            return -ENOMEM;
        if (n)
            memcpy(s->prim, cards, n * sizeof *cards);
        s->np = n;
        return 0;
    }
    if (hdu == 2 && !bfs_decam_is(s->prim, s->np)) {
        /* obs_base: a primary no translator claims is merged with HDU 2 */
        struct dx d = {.prim = s->prim, .np = s->np, .ext = cards, .ne = n};
        if (!is_decam(&d)) {
            bfs_set_errmsg(s->errmsg, "%s is not a DECam raw (INSTRUME is not 'DECam')", s->path);
            return -ENOENT;
        }
    }
    int64_t det;
    char detpos[16], *why = NULL;
    int rc = bfs_decam_detector(cards, n, &det, detpos, &why);
    if (rc == BFS_DECAM_SKIPPED) {
        free(why);
        f->n_skipped++;
        return 0;
    }
    if (rc < 0) {
        bfs_set_errmsg(s->errmsg, "%s HDU %d: %s", s->path, hdu, why ? why : "bad CCDNUM");
        free(why);
        return rc;
    }
    for (size_t i = 0; i < f->n_ccds; i++)
        if (f->ccds[i].detector == det) {
            bfs_set_errmsg(s->errmsg, "%s: CCDNUM %lld is in HDU %d and HDU %d; a detector is one "
                                      "dataset of the exposure", s->path, (long long)det,
                           f->ccds[i].hdu, hdu);
            return -EINVAL;
        }
    /* the Butler translates every CCD's header: each must succeed */
    bfs_raw_translation one, *t = f->n_ccds ? &one : &f->raw;
    char *msg = NULL;
    rc = bfs_decam_translate(s->prim, s->np, cards, n, t, &msg);
    if (rc) {
        bfs_set_errmsg(s->errmsg, "%s HDU %d (CCDNUM %lld): %s", s->path, hdu, (long long)det,
                       msg ? msg : "cannot be translated");
        free(msg);
        return rc;
    }
    if (t != &f->raw && one.exposure_id != f->raw.exposure_id) {
        bfs_set_errmsg(s->errmsg, "%s: HDU %d says EXPNUM %lld, the first CCD %lld; one file is one "
                                  "exposure", s->path, hdu, (long long)one.exposure_id,
                       (long long)f->raw.exposure_id);
        return -EINVAL;
    }
    if (bfs_grow((void **)&f->ccds, &s->cap, f->n_ccds + 1, sizeof *f->ccds) < 0)
        return -ENOMEM;
    bfs_decam_ccd *c = &f->ccds[f->n_ccds++];
    c->hdu = hdu;
    c->detector = det;
    snprintf(c->detpos, sizeof c->detpos, "%.15s", detpos);
    return 0;
}

int bfs_decam_read_file(const char *path, bfs_decam_file *out, char **errmsg)
{
    memset(out, 0, sizeof *out);
    if (errmsg)
        *errmsg = NULL;
    struct scan s = {.path = path, .out = out, .errmsg = errmsg};
    char *msg = NULL;
    int rc = bfs_fits_each_header(path, scan_hdu, &s, &msg);
    if (rc && msg && errmsg && !*errmsg) {
        *errmsg = msg;
        msg = NULL;
    }
    free(msg);
    if (!rc && !out->n_ccds) {
        if (!bfs_decam_is(s.prim, s.np)) {
            bfs_set_errmsg(errmsg, "%s is not a DECam raw (INSTRUME is not 'DECam')", path);
            rc = -ENOENT;
        } else {
            bfs_set_errmsg(errmsg, "%s has no science CCD extension (CCDNUM 1-%d): nothing to "
                                   "ingest", path, BFS_DECAM_MAX_SCIENCE_CCD);
            rc = -EINVAL;
        }
    }
    free(s.prim);
    if (rc) {
        free(out->ccds);
        memset(out, 0, sizeof *out);
    }
    return rc;
}

void bfs_decam_file_free(bfs_decam_file *f)
{
    if (!f)
        return;
    free(f->ccds);
    f->ccds = NULL;
    f->n_ccds = 0;
}

int bfs_decam_check_repository(bfs_registry *reg, const bfs_decam_file *f, char *band,
                               size_t bandsz, char **errmsg)
{
    const char *ins = BFS_DECAM_INSTRUMENT;
    int rc = bfs_registry_has_record(reg, "instrument", NULL, ins);
    if (rc < 0)
        return rc;
    if (!rc) {
        bfs_set_errmsg(errmsg, "the repository has no DECam instrument record; butlerfs does not "
                               "describe DECam: register it first (butler register-instrument "
                               "REPO lsst.obs.decam.DarkEnergyCamera)");
        return -ENOENT;
    }
    for (size_t i = 0; i < f->n_ccds; i++) {
        char key[24];
        snprintf(key, sizeof key, "%lld", (long long)f->ccds[i].detector);
        rc = bfs_registry_has_record(reg, "detector", ins, key);
        if (rc < 0)
            return rc;
        if (!rc) {
            bfs_set_errmsg(errmsg, "the repository has no DECam detector %s (CCDNUM of HDU %d, "
                                   "DETPOS '%s')", key, f->ccds[i].hdu, f->ccds[i].detpos);
            return -ENOENT;
        }
    }
    const char *pf = f->raw.exposure.physical_filter;
    rc = bfs_registry_has_record(reg, "physical_filter", ins, pf);
    if (rc < 0)
        return rc;
    if (!rc) {
        bfs_set_errmsg(errmsg, "the repository has no DECam physical_filter '%s' (from FILTER): "
                               "not a filter DECam's instrument registered", pf);
        return -ENOENT;
    }
    if (band && bandsz) {
        rc = bfs_registry_record_text(reg, "physical_filter", ins, pf, "band", band, bandsz);
        if (rc == -ENOENT) {
            band[0] = 0; /* a filter without a band: the column is NULL */
            rc = 0;
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}
