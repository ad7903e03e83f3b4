/*
 * translate.c - raw headers -> dataId and exposure record (translate.h).
 *
 * The rules are obs_lsst's (python/lsst/obs/lsst/translators/lsst.py for
 * every Rubin camera, lsstCam.py, comCam.py, lsstCamSim.py, comCamSim.py,
 * latiss.py), on astro_metadata_translator's defaults (translator.py,
 * translators/fits.py, translators/helpers.py), assembled into a record as
 * obs_base's makeExposureRecordFromObsInfo does, with daf_butler's
 * TimeConverter and Timespan for the times.  The code follows their
 * structure so the two can be compared function by function: a mutable copy
 * of the header, each translator's fix_header on it, then one function per
 * property.
 *
 * Times.  astropy keeps a time as two doubles and daf_butler rounds
 * (time - 1970-01-01 TAI) to integer nanoseconds.  Here a time is an exact
 * integer count of nanoseconds plus a fraction: an MJD double and an
 * exposure time double are converted exactly (their binary value times
 * 86400e9 or 1e9, in 128-bit integers), an ISO string digit by digit, and
 * the sum is rounded once at the end.  That equals astropy's result except
 * when the exact value lies within about 1e-3 ns of a half nanosecond.
 *
 * Not implemented (the record gets NULL where obs_base would compute a
 * value; docs/ingest.md lists them): tracking RA/Dec in frames other than
 * ICRS and FK5 (J2000, turned to ICRS by the frame bias), RA/Dec derived from
 * Alt/Az when DATE-OBS equals DATE.  obs_lsst's per-observation correction
 * files are applied by bfs_translate_corrections, before this translation.
 */
#include "translate.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"
#include "strutil.h"

/* ---- a mutable copy of the header ------------------------------------- */

struct hv {
    char key[80];
    char type;   /* as bfs_fits_card: 'C' 'L' 'I' 'F' 'X' 'U' (None) */
    char s[72];  /* the value's text (strings without quotes) */
    double d;    /* numeric value of 'I', 'F' and 'L' */
};

enum family { F_LSSTCAM, F_COMCAM, F_LSSTCAMSIM, F_COMCAMSIM, F_LATISS };

struct tx {
    struct hv *v;
    size_t n, cap;
    enum family fam;
    const char *name;      /* file name, or NULL */
    char **errmsg;
    int err;               /* first error: negative errno */
    /* cached */
    bool have_begin;
    int64_t begin_ns;
    double begin_frac;
};

static void fail(struct tx *t, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(struct tx *t, int err, const char *fmt, ...)
{
    if (t->err)
        return;
    t->err = err;
    va_list ap;
    va_start(ap, fmt);
    bfs_set_errmsgv(t->errmsg, fmt, ap);
    va_end(ap);
}

static struct hv *find(const struct tx *t, const char *key)
{
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->v[i].key, key))
            return &t->v[i];
    return NULL;
}

/* astro_metadata_translator's is_key_ok: present and not None. */
static bool ok(const struct tx *t, const char *key)
{
    const struct hv *h = find(t, key);
    return h && h->type != 'U';
}

static const char *str(const struct tx *t, const char *key)
{
    const struct hv *h = find(t, key);
    return h && h->type != 'U' ? h->s : NULL;
}

/* A number, from a numeric card or a string holding one (Python's int() and
 * float() of a string header, e.g. DAYOBS = '20250415'). */
static bool num(const struct tx *t, const char *key, double *out)
{
    const struct hv *h = find(t, key);
    if (!h || h->type == 'U')
        return false;
    if (h->type == 'I' || h->type == 'F' || h->type == 'L') {
        *out = h->d;
        return true;
    }
    if (h->type != 'C' || !h->s[0])
        return false;
    char *end;
    double d = strtod(h->s, &end);
    while (*end == ' ')
        end++;
    if (*end)
        return false;
    *out = d;
    return true;
}

/* Python truthiness of a value. */
static bool truthy(const struct hv *h)
{
    switch (h->type) {
    case 'U': return false;
    case 'C': return h->s[0] != 0;
    default: return h->d != 0.0;
    }
}

static struct hv *slot(struct tx *t, const char *key)
{
    struct hv *h = find(t, key);
    if (h)
        return h;
    if (bfs_grow((void **)&t->v, &t->cap, t->n + 1, sizeof *t->v) < 0) {
        fail(t, -ENOMEM, "out of memory");
        return NULL;
    }
    h = &t->v[t->n++];
    memset(h, 0, sizeof *h);
    snprintf(h->key, sizeof h->key, "%s", key);
    return h;
}

/* s may be another card's value, in t->v, which slot() may move: it is
 * copied first. */
static void set_str(struct tx *t, const char *key, const char *s)
{
    char v[sizeof t->v->s];
    snprintf(v, sizeof v, "%s", s);
    struct hv *h = slot(t, key);
    if (h) {
        h->type = 'C';
        memcpy(h->s, v, sizeof v);
        h->d = 0;
    }
}

static void set_num(struct tx *t, const char *key, double d)
{
    struct hv *h = slot(t, key);
    if (h) {
        h->type = 'F';
        h->d = d;
        snprintf(h->s, sizeof h->s, "%.17g", d);
    }
}

static void set_none(struct tx *t, const char *key)
{
    struct hv *h = find(t, key);
    if (h)
        h->type = 'U';
}

static int load(struct tx *t, const bfs_fits_card *cards, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const bfs_fits_card *c = &cards[i];
        if (bfs_fits_is_commentary(c->key))
            continue;
        if (find(t, c->key))
            continue; /* the first card of a name wins, as in bfs_fits_find */
        struct hv *h = slot(t, c->key);
        if (!h)
            return t->err;
        h->type = c->type;
        snprintf(h->s, sizeof h->s, "%s", c->value);
        if (c->type == 'I' || c->type == 'F')
            h->d = strtod(c->value, NULL);
        else if (c->type == 'L')
            h->d = c->value[0] == 'T';
    }
    return 0;
}

/* ---- times ----------------------------------------------------------------
 * A TAI time as ns since 1970-01-01 TAI plus a fraction in [0, 1). */

typedef bfs_tai tai;

#define NS_PER_DAY 86400000000000LL
#define MJD_1970 40587

static tai tai_norm(__int128 ns, double frac)
{
    double f = floor(frac);
    ns += (__int128)f;
    frac -= f;
    return (tai){(int64_t)ns, frac};
}

/* x * scale exactly, for a finite double x and an integer scale < 2^47:
 * the integer part and the fraction. */
static bool scale_exact(double x, int64_t scale, __int128 *ip, double *frac)
{
    if (!isfinite(x) || fabs(x) > 1e7 * 86400.0)
        return false;
    if (x == 0) {
        *ip = 0;
        *frac = 0;
        return true;
    }
    int e;
    double m = frexp(x, &e); /* x = m * 2^e, 0.5 <= |m| < 1 */
    int64_t mant = (int64_t)ldexp(m, 53);
    int shift = 53 - e; /* x = mant / 2^shift */
    __int128 p = (__int128)mant * scale;
    if (shift <= 0) {
        *ip = p << -shift;
        *frac = 0;
        return true;
    }
    if (shift > 120) {
        *ip = p < 0 ? -1 : 0;
        *frac = p < 0 ? 1.0 : 0.0;
        return true;
    }
    __int128 den = (__int128)1 << shift;
    __int128 q = p / den, r = p % den;
    if (r < 0) {
        q -= 1;
        r += den;
    }
    *ip = q;
    *frac = ldexp((double)(r >> (shift > 64 ? shift - 64 : 0)), -(shift > 64 ? 64 : shift));
    return true;
}

static bool tai_from_mjd(double mjd, tai *out)
{
    __int128 ip;
    double frac;
    if (!(mjd > 15020 && mjd < 88069) || !scale_exact(mjd, NS_PER_DAY, &ip, &frac)) /* 1900..2100 */
        return false;
    *out = tai_norm(ip - (__int128)MJD_1970 * NS_PER_DAY, frac);
    return true;
}

static tai tai_add_s(tai a, double s)
{
    __int128 ip;
    double frac;
    if (!scale_exact(s, 1000000000LL, &ip, &frac))
        return a;
    return tai_norm((__int128)a.ns + ip, a.frac + frac);
}

static int64_t tai_round(tai a)
{
    if (a.frac > 0.5 || (a.frac == 0.5 && (a.ns & 1)))
        return a.ns + 1;
    return a.ns;
}

static int64_t clip_ns(int64_t v)
{
    return v < BFS_TIMESPAN_UNBOUNDED_BEGIN ? BFS_TIMESPAN_UNBOUNDED_BEGIN
         : v > BFS_TIMESPAN_UNBOUNDED_END ? BFS_TIMESPAN_UNBOUNDED_END : v;
}

static int tai_cmp(tai a, tai b)
{
    if (a.ns != b.ns)
        return a.ns < b.ns ? -1 : 1;
    return a.frac < b.frac ? -1 : a.frac > b.frac;
}

static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool tai_from_iso(const char *s, bool utc, tai *out)
{
    int y, mo, d, h = 0, mi = 0, sec = 0, n = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
        return false;
    const char *p = s + 10;
    int64_t subns = 0;
    double frac = 0;
    if (*p == 'T') {
        int m = 0;
        if (sscanf(p, "T%2d:%2d:%2d%n", &h, &mi, &sec, &m) != 3 || m != 9)
            return false;
        p += m;
        if (*p == '.') {
            p++;
            int digits = 0;
            double scale = 0.1;
            for (; *p >= '0' && *p <= '9'; p++, digits++) {
                if (digits < 9)
                    subns = subns * 10 + (*p - '0');
                else {
                    frac += (*p - '0') * scale;
                    scale /= 10;
                }
            }
            for (int k = digits; k < 9; k++)
                subns *= 10;
        }
    }
    /* years that fit int64 nanoseconds since 1970 (the record clips to 1970..2100 anyway) */
    if (*p || y < 1900 || y > 2200 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return false;
    int64_t days = days_from_civil(y, mo, d);
    int64_t unix_sec = days * 86400 + h * 3600 + mi * 60 + sec;
    int64_t ns = utc ? bfs_unix_to_tai_ns(unix_sec, (long)subns) : unix_sec * 1000000000LL + subns;
    *out = (tai){ns, frac};
    return true;
}

int bfs_translate_iso_ns(const char *s, bool utc, int64_t *ns)
{
    tai t;
    if (!s || !tai_from_iso(s, utc, &t))
        return -EINVAL;
    *ns = tai_round(t);
    return 0;
}

int bfs_translate_mjd_ns(double mjd, int64_t *ns)
{
    tai t;
    if (!tai_from_mjd(mjd, &t))
        return -EINVAL;
    *ns = tai_round(t);
    return 0;
}

bool bfs_tai_from_iso(const char *s, bool utc, bfs_tai *out)
{
    return s && tai_from_iso(s, utc, out);
}

bool bfs_tai_from_mjd(double mjd, bool utc, bfs_tai *out)
{
    if (!tai_from_mjd(mjd, out))
        return false;
    if (utc) {
        /* the MJD counted UTC days: add TAI-UTC of that second */
        int64_t sec = out->ns / 1000000000LL - (out->ns % 1000000000LL < 0);
        out->ns += bfs_unix_to_tai_ns(sec, 0) - sec * 1000000000LL;
    }
    return true;
}

bfs_tai bfs_tai_add_s(bfs_tai a, double s)
{
    return tai_add_s(a, s);
}

int64_t bfs_tai_round(bfs_tai a)
{
    return clip_ns(tai_round(a));
}

int bfs_tai_cmp(bfs_tai a, bfs_tai b)
{
    return tai_cmp(a, b);
}

/* A UTC date constant of the translators, as TAI. */
static tai utc_const(const char *iso)
{
    tai t = {0, 0};
    tai_from_iso(iso, true, &t);
    return t;
}

/* ---- properties shared by every Rubin camera (lsst.py) ------------------ */

static const char *controller(const struct tx *t)
{
    const char *c = str(t, "CONTRLLR");
    return c && c[0] ? c : NULL;
}

/* to_datetime_begin: MJD-BEG, DATE-BEG, MJD-OBS, DATE-OBS, all TAI. */
static bool datetime_begin(struct tx *t, tai *out)
{
    if (t->have_begin) {
        *out = (tai){t->begin_ns, t->begin_frac};
        return true;
    }
    static const char *const keys[] = {"MJD-BEG", "DATE-BEG", "MJD-OBS", "DATE-OBS"};
    for (int i = 0; i < 4; i++) {
        if (!ok(t, keys[i]))
            continue;
        bool good;
        double mjd;
        if (i % 2 == 0)
            good = num(t, keys[i], &mjd) && tai_from_mjd(mjd, out);
        else
            good = tai_from_iso(str(t, keys[i]), false, out);
        if (!good) {
            const struct hv *h = find(t, keys[i]);
            fail(t, -EINVAL, "%s = '%s' is not a time", keys[i], h->s);
            return false;
        }
        t->have_begin = true;
        t->begin_ns = out->ns;
        t->begin_frac = out->frac;
        return true;
    }
    fail(t, -EINVAL, "the header has no start time (MJD-BEG, DATE-BEG, MJD-OBS or DATE-OBS)");
    return false;
}

static bool after(struct tx *t, const char *utc_iso)
{
    tai b;
    return datetime_begin(t, &b) && tai_cmp(b, utc_const(utc_iso)) > 0;
}

static bool on_mountain(struct tx *t)
{
    switch (t->fam) {
    case F_LSSTCAMSIM:
    case F_COMCAMSIM: return true;
    case F_LATISS: return after(t, "2020-01-01T00:00:00");
    case F_LSSTCAM:
    case F_COMCAM: {
        const char *c = controller(t);
        if (c && !strcmp(c, "H"))
            return true;
        return after(t, t->fam == F_LSSTCAM ? "2025-03-01T00:00:00" : "2024-08-24T00:00:00");
    }
    }
    return true;
}

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

/* to_observation_type into out (80 bytes); false on error. */
static bool observation_type(struct tx *t, char *out)
{
    if (t->fam == F_LATISS) {
        const char *v = ok(t, "OBSTYPE") ? str(t, "OBSTYPE") : ok(t, "IMGTYPE") ? str(t, "IMGTYPE") : NULL;
        if (v) {
            snprintf(out, 80, "%s", v);
            lower(out);
            if (!strcmp(out, "object") && !on_mountain(t))
                snprintf(out, 80, "labobject");
            else if (!strcmp(out, "skyexp") || !strcmp(out, "object"))
                snprintf(out, 80, "science");
            return true;
        }
        double e;
        snprintf(out, 80, "%s", num(t, "EXPTIME", &e) && e == 0.0 ? "bias" : "unknown");
        return true;
    }
    const char *v = str(t, "IMGTYPE");
    if (!v) {
        fail(t, -EINVAL, "the header has no IMGTYPE, so the observation type is unknown");
        return false;
    }
    snprintf(out, 80, "%s", v);
    lower(out);
    if (!strcmp(out, "skyexp") || !strcmp(out, "object"))
        snprintf(out, 80, "science");
    return true;
}

/* exposure_time_requested (the record's exposure_time). */
static bool exposure_time_requested(struct tx *t, double *out)
{
    if (t->fam == F_LATISS) {
        if (!num(t, "EXPTIME", out))
            *out = -1.0;
        return true;
    }
    if (!num(t, "EXPTIME", out)) {
        fail(t, -EINVAL, "the header has no numeric EXPTIME");
        return false;
    }
    return true;
}

/* to_exposure_time: the shutter's open time where the header has it. */
static bool exposure_time(struct tx *t, double *out)
{
    double s;
    if (t->fam != F_LATISS && num(t, "SHUTTIME", &s) && s > 0.0) {
        *out = s;
        return true;
    }
    return exposure_time_requested(t, out);
}

static double dark_time(struct tx *t)
{
    double e, d;
    if (!exposure_time(t, &e))
        return NAN;
    bool have = num(t, "DARKTIME", &d);
    if (t->fam == F_LATISS)
        return have && d >= e ? d : e;
    return have ? d : e;
}

static bool exposure_id(struct tx *t, int64_t *out)
{
    if (find(t, "CALIB_ID")) {
        fail(t, -EINVAL, "the header has CALIB_ID: a calibration product, not a raw exposure");
        return false;
    }
    const struct hv *dh = find(t, "DAYOBS");
    double seq;
    if (!dh || dh->type == 'U' || !num(t, "SEQNUM", &seq)) {
        fail(t, -EINVAL, "the header lacks DAYOBS or SEQNUM, which make the exposure id");
        return false;
    }
    char day[72];
    if (dh->type == 'C')
        snprintf(day, sizeof day, "%s", dh->s);
    else
        snprintf(day, sizeof day, "%.0f", dh->d);
    char *tpos = strchr(day, 'T');
    if (tpos)
        *tpos = 0;
    char digits[72];
    size_t k = 0;
    for (const char *p = day; *p && k + 1 < sizeof digits; p++)
        if (*p != '-')
            digits[k++] = *p;
    digits[k] = 0;
    int64_t dayobs;
    if (k != 8 || !bfs_parse_i64(digits, &dayobs) || dayobs < 0) {
        fail(t, -EINVAL, "DAYOBS = '%s' is not a YYYYMMDD date", dh->s);
        return false;
    }
    if (seq != floor(seq) || seq < 0 || seq >= 100000) {
        fail(t, -EINVAL, "SEQNUM = %s is out of range (0 to 99999)", find(t, "SEQNUM")->s);
        return false;
    }
    const char *c = controller(t);
    if (c && !strcmp(c, "C") && dayobs > 20231004)
        c = NULL; /* CCS shares the OCS counter since then */
    else if (c && strchr("PSQ", c[0]) && !c[1] && dayobs > 20250417)
        c = NULL; /* and so do the simulated controllers since then */
    if (c) {
        static const char controllers[] = "OCHPQS";
        const char *at = c[1] ? NULL : strchr(controllers, c[0]);
        if (!at || !c[0]) {
            fail(t, -EINVAL, "CONTRLLR = '%s' is not one of O, C, H, P, Q, S", c);
            return false;
        }
        dayobs += 10000000LL * (at - controllers);
    }
    *out = dayobs * 100000 + (int64_t)seq;
    return true;
}

/* Join FILTER, FILTER1, FILTER2 with '~' (to_physical_filter, lsst.py and
 * lsstCam.py); LATISS: primary filter '~' grating (latiss.py). */
static void physical_filter(struct tx *t, char *out)
{
    if (t->fam == F_LATISS) {
        char prim[40], grating[40]; /* a longer physical filter fails its 32-character check */
        const char *f = str(t, "FILTER");
        if (f) {
            /* an empty slot: "empty", "empty_2", any case */
            char low[72];
            snprintf(low, sizeof low, "%s", f);
            lower(low);
            const char *p = low + (strncmp(low, "empty", 5) ? 0 : 5);
            if (p != low && *p == '_')
                p++;
            while (p != low && *p >= '0' && *p <= '9')
                p++;
            snprintf(prim, sizeof prim, "%.39s", p != low && !*p ? "empty" : f);
        } else {
            snprintf(prim, sizeof prim, "unknown");
        }
        const char *g = str(t, "GRATING");
        if (!g)
            snprintf(grating, sizeof grating, "unknown");
        else if (!g[0] || !strncasecmp(g, "empty", 5))
            snprintf(grating, sizeof grating, "empty");
        else
            snprintf(grating, sizeof grating, "%.39s", g);
        snprintf(out, 80, "%s~%s", prim, grating);
        return;
    }
    char joined[256] = "";
    static const char *const keys[] = {"FILTER", "FILTER1", "FILTER2"};
    for (int i = 0; i < 3; i++) {
        const struct hv *h = find(t, keys[i]);
        if (!h || h->type == 'U')
            continue;
        size_t len = strlen(joined);
        snprintf(joined + len, sizeof joined - len, "%s%s", len ? "~" : "", h->s);
    }
    if (!joined[0])
        snprintf(joined, sizeof joined, "unknown");
    /* "NONE" -> "none" wherever it appears */
    for (char *p = strstr(joined, "NONE"); p; p = strstr(p + 4, "NONE"))
        memcpy(p, "none", 4);
    size_t len = strlen(joined);
    while (len >= 6 && !strcmp(joined + len - 6, "~empty")) {
        len -= 6;
        joined[len] = 0;
    }
    snprintf(out, 80, "%.79s", joined); /* longer fails its 32-character check */
}

static void observation_reason(struct tx *t, const char *obstype, char *out)
{
    static const char *const keys[] = {"REASON", "TESTTYPE"};
    for (int i = 0; i < 2; i++) {
        const char *v = str(t, keys[i]);
        if (v) {
            snprintf(out, 80, "%s", v);
            lower(out);
            return;
        }
    }
    snprintf(out, 80, "%s", !strcmp(obstype, "science") ? "science" : "unknown");
}

static bool is_on_sky(struct tx *t, const char *obstype)
{
    const char *ts = str(t, "TRACKSYS");
    if (ts && !strcasecmp(ts, "local"))
        return false;
    if (!strcmp(obstype, "bias") || !strcmp(obstype, "dark") || !strcmp(obstype, "flat"))
        return false;
    return on_mountain(t);
}

static int can_see_sky(struct tx *t, const char *obstype)
{
    bool camfam = t->fam != F_LATISS;
    if (camfam && !on_mountain(t))
        return 0;
    double s;
    if (num(t, "SHUTTIME", &s) && s == 0.0)
        return 0;
    const char *v = str(t, "VIGN_MIN");
    if (v)
        return !strcmp(v, "FULLY") ? 0 : !strcmp(v, "UNKNOWN") ? -1 : 1;
    const char *c = controller(t);
    bool may_use_type = t->fam == F_LATISS || t->fam == F_LSSTCAMSIM || t->fam == F_COMCAMSIM ||
                        (c && !strcmp(c, "H"));
    if (!may_use_type)
        return -1;
    if (!strcmp(obstype, "science") || !strcmp(obstype, "object"))
        return 1;
    if (!strcmp(obstype, "bias") || !strcmp(obstype, "dark") || !strcmp(obstype, "flat"))
        return 0;
    return -1;
}

static bool has_simulated(struct tx *t)
{
    if (t->fam == F_LSSTCAMSIM || t->fam == F_COMCAMSIM)
        return true;
    for (size_t i = 0; i < t->n; i++)
        if (strstr(t->v[i].key, "SIMULATE") && truthy(&t->v[i]))
            return true;
    const char *c = controller(t);
    return c && !c[1] && strchr("HPQS", c[0]);
}

/* astropy's rotation_matrix(angle, axis): the frame rotated by angle deg. */
static void rot(double deg, int axis, double r[3][3])
{
    double a = deg * M_PI / 180.0, c = cos(a), s = sin(a);
    memset(r, 0, 9 * sizeof(double));
    int a1 = (axis + 1) % 3, a2 = (axis + 2) % 3;
    r[axis][axis] = 1;
    r[a1][a1] = c;
    r[a1][a2] = s;
    r[a2][a1] = -s;
    r[a2][a2] = c;
}

static void matmul(const double a[3][3], const double b[3][3], double out[3][3])
{
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            out[i][j] = a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j];
}

/* FK5 (equinox J2000, astropy's default) -> ICRS: the transpose of the
 * frame-bias B matrix of USNO Circular 179 (eta0 = -19.9 mas, xi0 = 9.1 mas,
 * da0 = -22.9 mas), as astropy applies it. */
void bfs_translate_fk5_to_icrs(double *ra, double *dec)
{
    double rx[3][3], ry[3][3], rz[3][3], t[3][3], b[3][3];
    rot(19.9 / 3600000.0, 0, rx);
    rot(9.1 / 3600000.0, 1, ry);
    rot(-22.9 / 3600000.0, 2, rz);
    matmul(rx, ry, t);
    matmul(t, rz, b);
    double a = *ra * M_PI / 180.0, dl = *dec * M_PI / 180.0;
    double v[3] = {cos(dl) * cos(a), cos(dl) * sin(a), sin(dl)}, w[3];
    for (int i = 0; i < 3; i++)
        w[i] = b[0][i] * v[0] + b[1][i] * v[1] + b[2][i] * v[2];
    *ra = atan2(w[1], w[0]) * 180.0 / M_PI;
    *dec = atan2(w[2], hypot(w[0], w[1])) * 180.0 / M_PI;
}

double bfs_translate_wrap360(double deg)
{
    if (deg >= 0 && deg < 360)
        return deg;
    double w = fmod(deg, 360.0);
    if (w < 0)
        w += 360.0;
    return w >= 360.0 ? 0.0 : w;
}


/* tracking RA/Dec (to_tracking_radec in lsst.py, tracking_from_degree_headers). */
static void tracking_radec(struct tx *t, const char *obstype, double *ra, double *dec)
{
    *ra = *dec = NAN;
    if (!strcmp(obstype, "bias") || !strcmp(obstype, "flat"))
        return;
    const char *ts = str(t, "TRACKSYS");
    if (ts && strcmp(ts, "RADEC"))
        return;
    /* obs_lsst reads DATE first (no DATE: no RA/Dec at all), and derives
     * RA/Dec from Alt/Az when DATE-OBS equals it: not implemented */
    const struct hv *dobs = find(t, "DATE-OBS"), *date = find(t, "DATE");
    if (!date || (dobs && dobs->type == date->type && !strcmp(dobs->s, date->s)))
        return;
    const char *frame = str(t, "RADESYS");
    bool fk5 = false; /* astropy's FK5, equinox J2000: ICRS after the frame bias */
    if (frame) {
        char f[72];
        snprintf(f, sizeof f, "%s", frame);
        lower(f);
        char *b = f, *e = f + strlen(f);
        while (*b == ' ')
            b++;
        while (e > b && e[-1] == ' ')
            *--e = 0;
        if (strcmp(b, "icrs") && strcmp(b, "fk5"))
            return; /* gappt means none; other frames: not implemented */
        fk5 = !strcmp(b, "fk5");
    }
    static const char *const pairs[2][2] = {{"RASTART", "DECSTART"}, {"RA", "DEC"}};
    for (int i = 0; i < 2; i++) {
        double r, d;
        if (ok(t, pairs[i][0]) && ok(t, pairs[i][1])) {
            if (!num(t, pairs[i][0], &r) || !num(t, pairs[i][1], &d) || !isfinite(r) || fabs(d) > 90)
                return;
            if (fk5)
                bfs_translate_fk5_to_icrs(&r, &d);
            *ra = bfs_translate_wrap360(r);
            *dec = d;
            return;
        }
    }
}

/* altaz_begin: azimuth and zenith angle (lsst.py _to_altaz, comCamSim.py). */
static void altaz_begin(struct tx *t, const char *obstype, double *az, double *zen)
{
    *az = *zen = NAN;
    if (!on_mountain(t))
        return;
    double a, alt;
    bool have = ok(t, "AZSTART") && ok(t, "ELSTART");
    const char *c = controller(t);
    if (c && !strcmp(c, "H") && !have)
        return;
    if (!have && t->fam == F_COMCAMSIM && ok(t, "RA") && ok(t, "DEC")) {
        double am;
        alt = 45.0;
        if (is_on_sky(t, obstype) && num(t, "AMSTART", &am) && am >= 1.0)
            alt = asin(1.0 / am) * 180.0 / M_PI;
        *az = 0.0;
        *zen = 90.0 - alt;
        return;
    }
    if (!have || !num(t, "AZSTART", &a) || !num(t, "ELSTART", &alt))
        return;
    if (a < -360.0 || alt < -90.0)
        return;
    if (alt > 90.0)
        alt = 90.0;
    else if (alt < -5.55)
        alt = -5.55;
    *az = bfs_translate_wrap360(a);
    *zen = 90.0 - alt;
}

static double rotation_angle(struct tx *t, const char *obstype)
{
    double r;
    if (num(t, "ROTPA", &r) || num(t, "ROTANGLE", &r))
        return r;
    (void)obstype;
    return t->fam == F_LATISS ? NAN : 0.0;
}

/* ---- fix_header, per translator ------------------------------------------ */

/* A header number as an integer (Python's int()), when it is one that fits
 * comfortably (|value| < 1e15); else dflt. */
static int64_t int_of(struct tx *t, const char *key, int64_t dflt)
{
    double d;
    return num(t, key, &d) && isfinite(d) && fabs(d) < 1e15 ? (int64_t)d : dflt;
}

static void fix_lsstcam(struct tx *t)
{
    if (!find(t, "FILTER") && ok(t, "FILTER2"))
        set_none(t, "FILTER2");
    const char *day = str(t, "DAYOBS");
    int64_t iday = int_of(t, "DAYOBS", 0);
    int64_t seq = int_of(t, "SEQNUM", -1);
    const char *filter = str(t, "FILTER");
    if (day && filter && !strcmp(filter, "ph_05") &&
        (!strcmp(day, "20231107") || !strcmp(day, "20231108") || !strcmp(day, "20241015") ||
         !strcmp(day, "20241016")))
        set_str(t, "FILTER", "ph_5");
    double rot;
    if (iday > 20250301 && iday < 20250422 && num(t, "ROTPA", &rot) && rot != 0.0)
        set_num(t, "ROTPA", rot - 90.0);
    if (iday == 20250422 && seq < 251 && num(t, "ROTPA", &rot) && rot != 0.0) {
        double w = fmod(rot - 180.0 + 180.0, 360.0);
        if (w < 0)
            w += 360.0;
        set_num(t, "ROTPA", w - 180.0);
    }
    static const struct {
        int64_t day, lo, hi;
    } fully[] = {{20250518, 0, INT64_MAX},
                 {20250703, 743, 745},  {20250704, 832, 834},  {20250705, 1, 736},
                 {20250707, 784, 823},  {20250707, 744, 783},  {20250707, 864, 903},
                 {20250707, 904, 943},  {20250714, 258, 781},  {20250715, 205, 1218},
                 {20250819, 4, 1052}};
    for (size_t i = 0; i < sizeof fully / sizeof *fully; i++)
        if (iday == fully[i].day && (i == 0 || (seq >= fully[i].lo && seq <= fully[i].hi))) {
            const char *v = str(t, "VIGN_MIN");
            if (!v || strcmp(v, "FULLY"))
                set_str(t, "VIGN_MIN", "FULLY");
        }
    if (iday == 20250609 && seq >= 76 && seq <= 578) {
        set_str(t, "FILTER", "z_20");
        set_str(t, "FILTBAND", "z");
    }
    static const int64_t t417[] = {20250415, 20250416, 20250423, 20250417, 20250418, 20250421,
                                   20250424, 20250425, 20250504, 20250503, 20250512, 20250522,
                                   20250524, 20250826, 20250827, 20250828};
    const char *prog = str(t, "PROGRAM");
    for (size_t i = 0; prog && i < sizeof t417 / sizeof *t417; i++)
        if (iday == t417[i] && !strcmp(prog, "BLOCK-417")) {
            set_str(t, "PROGRAM", "BLOCK-T417");
            break;
        }
    if (iday == 20260315 && seq >= 49 && seq <= 109) {
        set_str(t, "FILTER", "i_39");
        set_str(t, "FILTBAND", "i");
    }
}

static void fix_comcam(struct tx *t)
{
    const char *f = str(t, "FILTER");
    if (!f) {
        set_str(t, "FILTER", "unknown");
    } else if (!f[0] || !strcmp(f, "r")) {
        set_str(t, "FILTER", after(t, "2020-03-13T00:00:00") ? "empty" : "r_03");
    }
    const char *ins = str(t, "INSTRUME");
    if (ins && !strcmp(ins, "LSST_CAMERA"))
        set_str(t, "INSTRUME", "ComCam");
    const struct hv *rot = find(t, "ROTPA");
    if (!rot || (rot->type != 'I' && rot->type != 'F'))
        set_num(t, "ROTPA", 0.0);
}

static void fix_comcamsim(struct tx *t)
{
    static const char *const keys[] = {"RA", "DEC"};
    for (int k = 0; k < 2; k++)
        for (int e = 0; e < 2; e++) {
            char key[16];
            snprintf(key, sizeof key, "%s%s", keys[k], e ? "END" : "START");
            const struct hv *h = find(t, key), *base = find(t, keys[k]);
            if ((!h || !truthy(h)) && base && truthy(base)) {
                if (base->type == 'C')
                    set_str(t, key, base->s);
                else
                    set_num(t, key, base->d);
            }
        }
    const struct hv *sys = find(t, "RADESYS"), *ra = find(t, "RA"), *dec = find(t, "DEC");
    if ((!sys || !truthy(sys)) && ra && truthy(ra) && dec && truthy(dec))
        set_str(t, "RADESYS", "ICRS");
}

/* The observation id's parts (LATISS fix_header): "AT_O_20220405_000348"
 * split at '_' into at most four parts. */
static const char *obsid_part(const char *obsid, int part, char *out, size_t n)
{
    const char *p = obsid;
    for (int i = 0; i < part && p; i++) {
        p = strchr(p, '_');
        if (p)
            p++;
    }
    if (!p)
        return NULL;
    size_t len = part < 3 ? strcspn(p, "_") : strlen(p);
    snprintf(out, n, "%.*s", (int)len, p);
    return out;
}

static void fix_latiss(struct tx *t)
{
    const char *hobs = str(t, "OBSID");
    char obsid[72] = "";
    if (hobs)
        snprintf(obsid, sizeof obsid, "%s", hobs);
    else if (t->name) {
        snprintf(obsid, sizeof obsid, "%.*s", (int)strcspn(t->name, "."), t->name);
        set_str(t, "OBSID", obsid);
    }
    char part[72];
    if (!find(t, "DAYOBS")) {
        const char *d = obsid[0] ? obsid_part(obsid, 2, part, sizeof part) : NULL;
        if (d && strlen(d) == 8)
            set_str(t, "DAYOBS", d);
        else if (str(t, "OBS-NITE"))
            set_str(t, "DAYOBS", str(t, "OBS-NITE"));
    }
    if (!find(t, "SEQNUM") && obsid[0] && obsid_part(obsid, 3, part, sizeof part)) {
        int64_t s;
        if (bfs_parse_i64(part, &s))
            set_num(t, "SEQNUM", (double)s);
    }
    const char *dobs = str(t, "DATE-OBS");
    if (dobs && bfs_startswith(dobs, "1970")) {
        char date[72] = "";
        if (str(t, "DATE"))
            snprintf(date, sizeof date, "%s", str(t, "DATE"));
        set_str(t, "DATE-OBS", date);
        set_str(t, "DATE-BEG", date);
        double mjd;
        if (num(t, "MJD", &mjd)) {
            set_num(t, "MJD-OBS", mjd);
            set_num(t, "MJD-BEG", mjd);
        } else {
            set_none(t, "MJD-OBS");
            set_none(t, "MJD-BEG");
        }
        set_none(t, "DATE-END");
        set_none(t, "MJD-END");
    }
    tai b;
    if (!datetime_begin(t, &b))
        return;
    if (tai_cmp(b, utc_const("2020-02-01T00:00:00")) < 0 && str(t, "DATE-END") && str(t, "DATE-END")[0]) {
        set_none(t, "DATE-END");
        set_none(t, "MJD-END");
    }
    if (tai_cmp(b, utc_const("2019-11-07T00:00:00")) < 0) {
        const char *g = str(t, "GROUPID");
        if (g && g[0] && !bfs_startswith(g, "test")) {
            char group[72];
            snprintf(group, sizeof group, "%s", g);
            const char *img = str(t, "IMGTYPE");
            if (!img || !img[0]) {
                char *us = strchr(group, '_');
                if (us) {
                    *us = 0;
                } else if (strncasecmp(group, "FOCUS", 5) == 0 && strcasecmp(group, "FOCUS") != 0) {
                    snprintf(group, sizeof group, "FOCUS");
                } else {
                    set_none(t, "GROUPID");
                }
                set_str(t, "IMGTYPE", group);
            } else if (!strcmp(img, g)) {
                set_none(t, "GROUPID");
            }
        }
    }
    const char *img = str(t, "IMGTYPE");
    if (tai_cmp(b, utc_const("2020-01-27T20:00:00")) < 0 && img && !strcmp(img, "OBJECT"))
        set_str(t, "IMGTYPE", "ENGTEST");
    double v;
    if (tai_cmp(b, utc_const("2020-01-28T22:00:00")) < 0) {
        if (num(t, "RA", &v))
            set_num(t, "RA", v * 180.0 / M_PI);
        if (num(t, "DEC", &v))
            set_num(t, "DEC", v * 180.0 / M_PI);
    }
    const struct hv *sh = find(t, "SHUTTIME");
    if (sh && truthy(sh))
        set_none(t, "SHUTTIME");
    img = str(t, "IMGTYPE");
    if (!find(t, "OBJECT") && img && !strcmp(img, "OBJECT"))
        set_str(t, "OBJECT", "NOTSET");
    const char *obj = str(t, "OBJECT");
    if (tai_cmp(b, utc_const("2022-07-10T00:00:00")) < 0 && obj) {
        char o[72], *w = o;
        for (const char *p = obj; *p;) {
            if (!strncmp(p, "spec:", 5)) {
                p += 5;
                continue;
            }
            if (w < o + sizeof o - 1)
                *w++ = *p;
            p++;
        }
        *w = 0;
        set_str(t, "OBJECT", o);
    }
    const char *sys = str(t, "RADESYS");
    if (sys && !sys[0])
        set_str(t, "RADESYS", "ICRS");
    const char *ts = str(t, "TRACKSYS");
    if (find(t, "TRACKSYS") && (!ts || !ts[0]))
        set_none(t, "TRACKSYS");
    else if (ts && !strcmp(ts, "SIDEREAL"))
        set_str(t, "TRACKSYS", "RADEC");
    static const char *const radec[] = {"RASTART", "DECSTART", "RAEND", "DECEND"};
    if (tai_cmp(b, utc_const("2021-02-11T18:45:00")) < 0) {
        if (tai_cmp(b, utc_const("2020-05-01T00:00:00")) < 0) {
            for (int i = 0; i < 4; i++)
                set_none(t, radec[i]);
        } else {
            for (int i = 0; i < 4; i += 2)
                if (num(t, radec[i], &v) && v != 0.0)
                    set_num(t, radec[i], v * 15.0);
        }
    }
    if (tai_cmp(b, utc_const("2020-05-01T00:00:00")) > 0 &&
        tai_cmp(b, utc_const("2021-02-12T00:00:00")) < 0) {
        for (int i = 0; i < 4; i += 2)
            if (num(t, radec[i], &v) && v != 0.0)
                set_num(t, radec[i], v + 37.0 / 3600.0 * 15.0);
    }
    if (tai_cmp(b, utc_const("2021-10-29T00:00:00")) < 0 &&
        tai_cmp(b, utc_const("2020-11-19T00:00:00")) > 0 && num(t, "ROTPA", &v))
        set_num(t, "ROTPA", v - 180.0);
}

/* ---- which translator (can_translate) ------------------------------------ */

static bool pick_family(struct tx *t)
{
    const char *ins = str(t, "INSTRUME"), *tel = str(t, "TELESCOP"), *det = str(t, "DETNAME");
    char low[72] = "";
    if (ins) {
        snprintf(low, sizeof low, "%s", ins);
        lower(low);
    }
    bool rubin = tel && (!strcmp(tel, "Simonyi Survey Telescope") || !strcmp(tel, "LSST"));
    const char *telcode = str(t, "TELCODE");
    if (ins && (!strcmp(ins, "LATISS") || !strcmp(ins, "LSST_ATISS")))
        t->fam = F_LATISS;
    else if (det && !strcmp(det, "RXX_S00"))
        t->fam = F_LATISS;
    else if (!strcmp(low, "lsstcam"))
        t->fam = F_LSSTCAM;
    else if ((!strcmp(low, "comcam") && rubin) ||
             (telcode && !strcmp(telcode, "CC") && !strcmp(low, "lsst_camera")))
        t->fam = F_COMCAM;
    else if (!strcmp(low, "lsstcamsim") && rubin)
        t->fam = F_LSSTCAMSIM;
    else if (!strcmp(low, "comcamsim") && rubin)
        t->fam = F_COMCAMSIM;
    else {
        fail(t, -ENOENT, "INSTRUME = '%s' (TELESCOP '%s') is not a camera butlerfs can translate "
                         "(LSSTCam, LSSTComCam, LATISS, LSSTCamSim, LSSTComCamSim)",
             ins ? ins : "", tel ? tel : "");
        return false;
    }
    return true;
}

static const char *const family_instrument[] = {
    [F_LSSTCAM] = "LSSTCam",         [F_COMCAM] = "LSSTComCam", [F_LSSTCAMSIM] = "LSSTCamSim",
    [F_COMCAMSIM] = "LSSTComCamSim", [F_LATISS] = "LATISS",
};

/* ---- the record ------------------------------------------------------------ */

static bool check_name(struct tx *t, const char *what, const char *key, const char *value, size_t max)
{
    if (!bfs_is_one_component(value)) {
        fail(t, -EINVAL, "%s '%s' (from %s) cannot be part of a file name", what, value, key);
        return false;
    }
    if (max && strlen(value) > max) {
        fail(t, -EINVAL, "%s '%s' (from %s) is longer than the registry's %zu characters", what,
             value, key, max);
        return false;
    }
    return true;
}

static int translate(struct tx *t, bfs_raw_translation *out)
{
    if (!pick_family(t))
        return t->err;
    switch (t->fam) {
    case F_LSSTCAM: fix_lsstcam(t); break;
    case F_COMCAM: fix_comcam(t); break;
    case F_COMCAMSIM: fix_comcamsim(t); break;
    case F_LATISS: fix_latiss(t); break;
    case F_LSSTCAMSIM: break;
    }
    if (t->err)
        return t->err;
    out->instrument = family_instrument[t->fam];
    out->camera = bfs_camera_find(out->instrument);
    if (!out->camera) {
        fail(t, -ENOENT, "butlerfs has no camera description of %s", out->instrument);
        return t->err;
    }
    bfs_exposure_record *r = &out->exposure;
    char *obs_id = out->buf[0], *filter = out->buf[1], *group = out->buf[2], *type = out->buf[3],
         *reason = out->buf[4], *program = out->buf[5];
    r->instrument = out->instrument;

    /* detector */
    if (t->fam == F_LATISS) {
        out->detector = 0;
    } else {
        const char *raft = str(t, "RAFTBAY"), *slot = str(t, "CCDSLOT");
        if (!raft || !slot) {
            fail(t, -EINVAL, "the header lacks RAFTBAY or CCDSLOT, which name the detector");
            return t->err;
        }
        int id = bfs_camera_detector_id(out->camera, raft, slot);
        if (id < 0) {
            fail(t, -ENOENT, "RAFTBAY/CCDSLOT = %s/%s is not a detector of %s", raft, slot,
                 out->instrument);
            return t->err;
        }
        out->detector = id;
    }
    /* exposure id, day_obs, seq_num */
    if (!exposure_id(t, &out->exposure_id))
        return t->err;
    r->id = out->exposure_id;
    r->day_obs = int_of(t, "DAYOBS", -1); /* Python's int(DAYOBS): "2025-04-15" fails there too */
    if (r->day_obs < 0) {
        fail(t, -EINVAL, "DAYOBS = '%s' is not a whole number (YYYYMMDD)", find(t, "DAYOBS")->s);
        return t->err;
    }
    r->seq_num = int_of(t, "SEQNUM", 0);
    int64_t cur = int_of(t, "CURINDEX", INT64_MIN), max = int_of(t, "MAXINDEX", INT64_MIN);
    if (cur != INT64_MIN) {
        r->seq_start = r->seq_num - cur + 1;
        r->seq_end = max != INT64_MIN ? r->seq_num + max - cur : (r->seq_num ? r->seq_num : out->exposure_id);
    } else {
        r->seq_start = r->seq_end = r->seq_num ? r->seq_num : out->exposure_id;
    }
    /* obs_id */
    const char *oid = str(t, "OBSID");
    if (!oid && t->fam == F_LATISS)
        oid = str(t, "IMGNAME");
    if (!oid) {
        fail(t, -EINVAL, "the header has no OBSID");
        return t->err;
    }
    snprintf(obs_id, 80, "%s", oid);
    if (!check_name(t, "the observation id", "OBSID", obs_id, 0))
        return t->err;
    r->obs_id = obs_id;
    /* type, reason */
    if (!observation_type(t, type) || !check_name(t, "the observation type", "IMGTYPE", type, 16))
        return t->err;
    r->observation_type = type;
    observation_reason(t, type, reason);
    r->observation_reason = reason;
    /* physical filter */
    physical_filter(t, filter);
    if (!check_name(t, "the physical filter", "FILTER", filter, 32))
        return t->err;
    r->physical_filter = filter;
    /* group */
    const char *gid = str(t, "GROUPID");
    if (gid)
        snprintf(group, 80, "%s", gid);
    else
        snprintf(group, 80, "%lld", (long long)out->exposure_id);
    if (!check_name(t, "the group", "GROUPID", group, 0))
        return t->err;
    r->group = group;
    /* times */
    double req, act;
    if (!exposure_time_requested(t, &req) || !exposure_time(t, &act))
        return t->err;
    r->exposure_time = req;
    r->dark_time = dark_time(t);
    tai begin, end;
    if (!datetime_begin(t, &begin))
        return t->err;
    if (ok(t, "DATE-END")) {
        const char *sys = str(t, "TIMESYS");
        bool utc = !sys || !strcasecmp(sys, "UTC");
        if (sys && strcasecmp(sys, "UTC") && strcasecmp(sys, "TAI")) {
            fail(t, -EINVAL, "TIMESYS = '%s' is not a time scale butlerfs handles (TAI or UTC)", sys);
            return t->err;
        }
        if (!tai_from_iso(str(t, "DATE-END"), utc, &end)) {
            fail(t, -EINVAL, "DATE-END = '%s' is not a time", find(t, "DATE-END")->s);
            return t->err;
        }
    } else {
        end = act < 0.0 ? begin : tai_add_s(begin, act);
    }
    if (begin.ns < BFS_TIMESPAN_UNBOUNDED_BEGIN || begin.ns >= BFS_TIMESPAN_UNBOUNDED_END) {
        fail(t, -EINVAL, "the start time of the exposure (MJD-BEG, DATE-BEG, MJD-OBS or DATE-OBS) is "
                         "outside 1970-2100, the times a Butler registry holds");
        return t->err;
    }
    if (tai_cmp(end, begin) < 0)
        end = begin;
    /* daf_butler's TimeConverter clips to [1970-01-01, 2100-01-01] TAI */
    r->timespan_begin = clip_ns(tai_round(begin));
    r->timespan_end = clip_ns(tai_round(end));
    if (r->timespan_end == r->timespan_begin && r->timespan_end < BFS_TIMESPAN_UNBOUNDED_END)
        r->timespan_end++; /* daf_butler's Timespan of one instant */
    /* target, program */
    const char *objv = str(t, "OBJECT");
    if (objv) {
        snprintf(out->target, sizeof out->target, "%s", objv);
        r->target_name = out->target;
    } else if (t->fam != F_LATISS || strcmp(type, "science") || !on_mountain(t)) {
        snprintf(out->target, sizeof out->target, "UNKNOWN");
        r->target_name = out->target;
    } else {
        r->target_name = NULL;
    }
    const char *prog = str(t, "PROGRAM");
    if (!prog && t->fam != F_LATISS)
        prog = str(t, "RUNNUM");
    snprintf(program, 80, "%s", prog ? prog : "unknown");
    r->science_program = program;
    /* pointing */
    tracking_radec(t, type, &r->tracking_ra, &r->tracking_dec);
    r->sky_angle = NAN;
    if (!isnan(r->tracking_ra) && is_on_sky(t, type)) {
        const char *coord = str(t, "ROTCOORD");
        if (coord && !strcmp(coord, "sky"))
            r->sky_angle = rotation_angle(t, type);
    }
    altaz_begin(t, type, &r->azimuth, &r->zenith_angle);
    r->has_simulated = has_simulated(t);
    r->can_see_sky = can_see_sky(t, type);
    return t->err;
}

/* ---- per-observation corrections (fix_header's correction files) -------- */

/* Set card key of *cards to the YAML value v (replacing or appending). */
static int set_card(bfs_fits_card **cards, size_t *n, const char *key, const bfs_yaml_value *v)
{
    size_t i = 0;
    while (i < *n && strcmp((*cards)[i].key, key))
        i++;
    if (i == *n) {
        bfs_fits_card *g = realloc(*cards, (*n + 1) * sizeof **cards);
        if (!g)
            return -ENOMEM;
        *cards = g;
        memset(&g[i], 0, sizeof g[i]);
        snprintf(g[i].key, sizeof g[i].key, "%s", key);
        (*n)++;
    }
    bfs_fits_card *c = &(*cards)[i];
    switch (v->type) {
    case BFS_YAML_NULL: c->type = 'U'; c->value[0] = 0; break;
    case BFS_YAML_BOOL: c->type = 'L'; snprintf(c->value, sizeof c->value, "%s", v->b ? "T" : "F"); break;
    case BFS_YAML_INT: c->type = 'I'; snprintf(c->value, sizeof c->value, "%lld", (long long)v->i); break;
    case BFS_YAML_FLOAT: c->type = 'F'; snprintf(c->value, sizeof c->value, "%.17g", v->f); break;
    default: c->type = 'C'; snprintf(c->value, sizeof c->value, "%.*s", (int)v->len, v->s); break;
    }
    return 0;
}

/* Apply the corrections file at path to *cards: 1, 0 when it is not there. */
static int apply_corrections(const char *path, bfs_fits_card **cards, size_t *n, char **errmsg)
{
    if (access(path, F_OK) < 0)
        return 0;
    bfs_yaml *y = NULL;
    int ret = bfs_yaml_load_file(path, &y, errmsg);
    if (ret < 0)
        return ret;
    const bfs_yaml_node *root = bfs_yaml_root(y);
    if (!bfs_yaml_is_map(y, root)) {
        bfs_set_errmsg(errmsg, "%s is not a mapping of header keywords", path);
        ret = -EINVAL;
    }
    for (size_t i = 0; ret == 0 && i < bfs_yaml_len(y, root); i++) {
        const char *key = bfs_yaml_key(y, root, i);
        bfs_yaml_value v;
        if (!key || strlen(key) >= sizeof((*cards)->key) || bfs_yaml_resolve(y, bfs_yaml_item(y, root, i), &v) < 0 ||
            v.type == BFS_YAML_NOT_SCALAR) {
            bfs_set_errmsg(errmsg, "%s: the value of %s is not a header value", path, key ? key : "?");
            ret = -EINVAL;
        } else {
            ret = set_card(cards, n, key, &v);
        }
    }
    bfs_yaml_free(y);
    return ret < 0 ? ret : 1;
}

int bfs_translate_corrections(bfs_fits_card **cards, size_t *n, const char *const *dirs, int ndirs,
                              char **applied, char **errmsg)
{
    *applied = NULL;
    const bfs_fits_card *ins = bfs_fits_find(*cards, *n, "INSTRUME"), *obs = bfs_fits_find(*cards, *n, "OBSID");
    const bfs_camera *cam = ins && ins->type == 'C' ? bfs_camera_find(ins->value) : NULL;
    if (!cam || !obs || obs->type != 'C' || !bfs_is_one_component(obs->value))
        return 0;
    char file[200];
    snprintf(file, sizeof file, "%s-%s.yaml", bfs_camera_name(cam), obs->value);
    /* the configured directories, then $METADATA_CORRECTIONS_PATH's */
    const char *env = getenv("METADATA_CORRECTIONS_PATH");
    char *envcopy = env && *env ? strdup(env) : NULL, *save = NULL;
    int ret = 0;
    for (int i = 0; ret == 0; i++) {
        if (i >= ndirs && !envcopy)
            break;
        const char *dir = i < ndirs ? dirs[i] : strtok_r(i == ndirs ? envcopy : NULL, ":", &save);
        if (!dir)
            break;
        char *path = bfs_asprintf("%s/%s", dir, file);
        ret = path ? apply_corrections(path, cards, n, errmsg) : -ENOMEM;
        if (ret == 1)
            *applied = path;
        else
            free(path);
    }
    free(envcopy);
    return ret;
}

int bfs_translate_raw(const bfs_fits_card *cards, size_t n, const char *name,
                      bfs_raw_translation *out, char **errmsg)
{
    memset(out, 0, sizeof *out);
    struct tx t = {.name = name, .errmsg = errmsg};
    int ret = load(&t, cards, n);
    if (!ret)
        ret = translate(&t, out);
    free(t.v);
    return ret;
}

/* ---- the amplifier HDUs of a raw ----------------------------------------- */

/* Whether cards say "<naxis> >= 1 and every <naxis>N >= 1" (NAXIS or ZNAXIS). */
static bool has_pixels(const bfs_fits_card *cards, size_t n, const char *naxis)
{
    const bfs_fits_card *c = bfs_fits_find(cards, n, naxis);
    int64_t dims = 0;
    if (!c || c->type != 'I' || !bfs_parse_i64(c->value, &dims) || dims < 1 || dims > 999)
        return false;
    for (int k = 1; k <= dims; k++) {
        char key[16];
        int64_t len = 0;
        snprintf(key, sizeof key, "%s%d", naxis, k);
        c = bfs_fits_find(cards, n, key);
        if (!c || c->type != 'I' || !bfs_parse_i64(c->value, &len) || len < 1)
            return false;
    }
    return true;
}

bool bfs_translate_is_amp_hdu(const bfs_fits_card *cards, size_t n)
{
    const bfs_fits_card *xt = bfs_fits_find(cards, n, "XTENSION");
    const bfs_fits_card *name = bfs_fits_find(cards, n, "EXTNAME");
    const bfs_fits_card *z = bfs_fits_find(cards, n, "ZIMAGE");
    if (!xt || xt->type != 'C' || !name || name->type != 'C')
        return false;
    const char *e = name->value;
    if (strncmp(e, "Segment", 7) != 0 || e[7] < '0' || e[7] > '9' || e[8] < '0' || e[8] > '9' || e[9])
        return false;
    if (strcmp(xt->value, "IMAGE") == 0)
        return has_pixels(cards, n, "NAXIS");
    return strcmp(xt->value, "BINTABLE") == 0 && z && z->type == 'L' && strcmp(z->value, "T") == 0 &&
           has_pixels(cards, n, "ZNAXIS");
}

int bfs_translate_check_amplifiers(const bfs_raw_translation *t, int n_amp_hdus, char **errmsg)
{
    int want = bfs_camera_n_amplifiers(t->camera, (int)t->detector);
    bfs_detector_record d;
    if (want < 0 || bfs_camera_detector(t->camera, (int)t->detector, &d) < 0) {
        bfs_set_errmsg(errmsg, "%s has no detector %lld", t->instrument, (long long)t->detector);
        return -ENOENT;
    }
    if (n_amp_hdus >= want)
        return 0;
    bfs_set_errmsg(errmsg, "incomplete raw: %d of %d amplifier HDUs (detector %s, %s)", n_amp_hdus, want,
                   d.full_name, bfs_camera_detector_type(t->camera, (int)t->detector));
    return -EINVAL;
}
