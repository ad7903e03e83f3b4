/*
 * camera.c - the registry facts of the Rubin cameras, encoded by obs_lsst's
 * rules (see camera.h for the interface).
 *
 * Where each fact comes from (lsst/obs_lsst, snapshot 0e84d755, 2026-04;
 * paths under python/lsst/obs/lsst/ unless they start with policy/):
 *
 *   instrument name,   _instrument.py: the `instrument` attribute of LsstCam,
 *   class_name         LsstComCam, LsstComCamSim, LsstCamSim, Latiss; class_name
 *                      is get_full_type_name(), which drops the private module
 *                      (lsst.obs.lsst.LsstCam, not ..._instrument.LsstCam).
 *   detector_max       _instrument.py register(): max(translator DETECTOR_MAX, 1);
 *                      DETECTOR_MAX is 1000 (translators/lsst.py) except
 *                      LatissTranslator's 0 (translators/latiss.py), so LATISS
 *                      registers 1.
 *   exposure_max,      register(): translator max_exposure_id(), 7050123199999
 *   visit_max          for all (translators/lsst.py).
 *   visit_system       LsstCam.visitSystem = VisitSystem.BY_SEQ_START_END, which
 *                      is 2 in obs_base; the subclasses here do not override it.
 *   raw formatter      rawFormatter.py: LsstCamRawFormatter, LsstComCamRawFormatter,
 *                      LsstComCamSimRawFormatter, LsstCamSimRawFormatter,
 *                      LatissRawFormatter.
 *   INSTRUME spellings translators/{lsstCam,comCam,comCamSim,lsstCamSim,latiss}.py,
 *                      can_translate().
 *   obs_id code        OBSID = <code>_<controller>_<day_obs>_<seq_num>; the code
 *                      is TELCODE/CAMCODE (translators/comCamSim.py fix_header
 *                      takes it from OBSID); tests/headers/ show MC_S_
 *                      for LSSTCamSim and CC_S_ for LSSTComCamSim.
 *   detectors          policy/rafts.yaml (LSSTCam raft id0: the id of the raft's
 *                      first slot), policy/comCam/rafts.yaml (R22, id0 0),
 *                      policy/latiss/rafts.yaml (RXX, id0 0); the slots of each
 *                      raft (keys of ccdSerials) and its detectorType in
 *                      policy/lsstCam/R??.yaml and R??W.yaml (corner rafts: the
 *                      guiders SG0/SG1 under R??, the wavefront sensors SW0/SW1
 *                      under R??W, each with its own id0), policy/comCam/R22.yaml,
 *                      policy/latiss/RXX.yaml.  The simulated cameras use the
 *                      same rafts (policy/lsstCamSim/ links to lsstCam/; the
 *                      generated policy/lsstCamSim.yaml has the same ids).
 *                      Records: _instrument.py extractDetectorRecord() splits
 *                      "R22_S11" into raft and name_in_raft; purpose is the
 *                      cameraGeom type (GUIDER for ITL_G, WAVEFRONT for ITL_WF);
 *                      Latiss overrides raft = None, name_in_raft = full_name.
 *   amplifiers         policy/cameraHeader.yaml: CCD_E2V and CCD_ITL list 16
 *                      amplifiers (C10..C17, C07..C00, hdu 1..16); CCD_ITL_G
 *                      (guider) inherits CCD_ITL's 16; CCD_ITL_WF (wavefront
 *                      half-sensor) lists 8 (C10..C17, hdu 1..8, where C14's
 *                      "hdu : 4" is a typo for 5).  rawFormatter.py and
 *                      assembly.py readRawAmps() read the n-th amplifier from the
 *                      n-th extension after the primary HDU and expect its
 *                      EXTNAME to be "Segment" + the amplifier's digits.
 *   physical filters   filters.py: LSSTCAM_FILTER_DEFINITIONS (LSSTCam,
 *                      LSSTCamSim), COMCAM_FILTER_DEFINITIONS (LSSTComCam,
 *                      LSSTComCamSim), LATISS_FILTER_DEFINITIONS; "~" is
 *                      FILTER_DELIMITER (translators/lsst.py).
 *
 * Only the parts are written here; the lists are evaluated once, by the same
 * rules, into static pools (load()).  tests/unit/test_camera.c compares the
 * result with every row of ../shared/fixtures/cameras/.
 */
#include "camera.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- detectors ------------------------------------------------------------ */

/* The slots of a raft, in id order (id = raft id0 + index), and the purpose
 * of their detectors. */
enum slot_kind { SCIENCE, GUIDER, WAVEFRONT, LATISS_SLOT };

static const char *const science_slots[] = {"S00", "S01", "S02", "S10", "S11",
                                            "S12", "S20", "S21", "S22"};
static const char *const guider_slots[] = {"SG0", "SG1"};
static const char *const wavefront_slots[] = {"SW0", "SW1"};
static const char *const latiss_slots[] = {"S00"};

static const struct {
    const char *const *slots;
    int n;
    const char *purpose;
} kinds[] = {
    [SCIENCE] = {science_slots, NELEM(science_slots), "SCIENCE"},
    [GUIDER] = {guider_slots, NELEM(guider_slots), "GUIDER"},
    [WAVEFRONT] = {wavefront_slots, NELEM(wavefront_slots), "WAVEFRONT"},
    [LATISS_SLOT] = {latiss_slots, NELEM(latiss_slots), "SCIENCE"},
};

struct raft {
    const char *name;  /* RAFTBAY and the record's raft */
    int id0;           /* id of the first slot */
    enum slot_kind kind;
    const char *type;  /* detectorType of the raft's policy file */
};

/* In id order; a corner raft appears twice (R00 for its guiders, R00W of
 * policy/rafts.yaml for its wavefront sensors). */
static const struct raft lsstcam_rafts[] = {
    {"R01", 0, SCIENCE, "ITL"},     {"R02", 9, SCIENCE, "ITL"},     {"R03", 18, SCIENCE, "ITL"},
    {"R10", 27, SCIENCE, "ITL"},    {"R11", 36, SCIENCE, "E2V"},    {"R12", 45, SCIENCE, "E2V"},
    {"R13", 54, SCIENCE, "E2V"},    {"R14", 63, SCIENCE, "E2V"},    {"R20", 72, SCIENCE, "ITL"},
    {"R21", 81, SCIENCE, "E2V"},    {"R22", 90, SCIENCE, "E2V"},    {"R23", 99, SCIENCE, "E2V"},
    {"R24", 108, SCIENCE, "E2V"},   {"R30", 117, SCIENCE, "E2V"},   {"R31", 126, SCIENCE, "E2V"},
    {"R32", 135, SCIENCE, "E2V"},   {"R33", 144, SCIENCE, "E2V"},   {"R34", 153, SCIENCE, "E2V"},
    {"R41", 162, SCIENCE, "ITL"},   {"R42", 171, SCIENCE, "ITL"},   {"R43", 180, SCIENCE, "ITL"},
    {"R00", 189, GUIDER, "ITL_G"},  {"R00", 191, WAVEFRONT, "ITL_WF"},
    {"R04", 193, GUIDER, "ITL_G"},  {"R04", 195, WAVEFRONT, "ITL_WF"},
    {"R40", 197, GUIDER, "ITL_G"},  {"R40", 199, WAVEFRONT, "ITL_WF"},
    {"R44", 201, GUIDER, "ITL_G"},  {"R44", 203, WAVEFRONT, "ITL_WF"},
};
static const struct raft comcam_rafts[] = {{"R22", 0, SCIENCE, "ITL"}};
static const struct raft latiss_rafts[] = {{"RXX", 0, LATISS_SLOT, "ITL"}};

/* One evaluated detector.  name_in_raft and raft point into the tables
 * above, or (LATISS) to full_name and NULL. */
struct detector {
    char full_name[8];
    const char *raft, *name_in_raft, *purpose, *type;
};

struct focal_plane {
    const struct raft *rafts;
    int nrafts;
    int single; /* LATISS: one detector, raft NULL, name_in_raft = full_name */
    /* evaluated by load(): */
    struct detector *det;
    int n;
};

static struct focal_plane fp_lsstcam = {lsstcam_rafts, NELEM(lsstcam_rafts), 0, NULL, 0};
static struct focal_plane fp_comcam = {comcam_rafts, NELEM(comcam_rafts), 0, NULL, 0};
static struct focal_plane fp_latiss = {latiss_rafts, NELEM(latiss_rafts), 1, NULL, 0};

/* ---- physical filters: the parts of filters.py ----------------------------- */

struct pf {
    const char *physical_filter, *band;
};

#define DELIM "~" /* FILTER_DELIMITER */

/* NoFilterCollection: no filter in the beam, or all returned to the carousel. */
static const struct pf no_filter[] = {{"empty", "white"}, {"none", "white"}};

/* LsstCamFiltersBaseline: the on-sky LSSTCam filters. */
static const struct pf lsstcam_baseline[] = {
    {"ph_5", "white"}, {"ef_43", "white"}, {"u_24", "u"}, {"g_6", "g"},
    {"r_57", "r"},     {"i_39", "i"},      {"z_20", "z"}, {"y_10", "y"},
};

/* BOT_filter_map (the SLAC test bench), and the neutral-density filters each
 * is combined with (the second line: found later in BOT data). */
static const struct pf bot_filters[] = {
    {"empty", "white"}, {"SDSSu", "u"},    {"SDSSg", "g"},      {"SDSSr", "r"},
    {"SDSSi", "i"},     {"SDSSz", "z"},    {"SDSSY", "y"},      {"480nm", "g"},
    {"650nm", "r"},     {"750nm", "i"},    {"870nm", "z"},      {"950nm", "y"},
    {"970nm", "y"},     {"grid", "grid"},  {"spot", "spot"},    {"sparsegrid", "sparsegrid"},
    {"streak", "streak"}, {"ellipses", "ellipses"},
};
static const char *const bot_nd[] = {
    "ND_OD0.1", "ND_OD0.3", "ND_OD0.5", "ND_OD0.7", "ND_OD1.0", "ND_OD2.0",
    "ND_OD0.01", "ND_OD0.05", "ND_OD0.4", "ND_OD3.0", "ND_OD4.0",
};

/* CCOB_filter_map (the camera calibration optical bench). */
static const struct pf ccob_filters[] = {
    {"", "white"},    {"HIGH", "white"}, {"LOW", "white"},  {"uv", "u"},     {"blue", "g"},
    {"red", "r"},     {"nm750", "i"},    {"nm850", "z"},    {"nm960", "y"},
};

/* ComCam: (band, serial number) of each filter; the name is
 * "<band>_<serial without 'SN-'>".  Then the three extra ComCamFilters. */
static const struct {
    const char *band, *serial;
} comcam_serials[] = {
    {"u", "SN-05"}, {"u", "SN-02"}, {"u", "SN-06"}, {"g", "SN-07"}, {"g", "SN-01"},
    {"r", "SN-03"}, {"i", "SN-06"}, {"z", "SN-03"}, {"z", "SN-02"}, {"y", "SN-04"},
};
static const struct pf comcam_extra[] = {
    {"unknown", "unknown"}, {"pinhole", "white"}, {"OG590_2_5mm", "OG590"},
};

/* LATISS: _latiss_filters (the filter wheel), then sdss65mm_filters (which
 * fit either wheel), and the grating-wheel positions. */
static const struct pf latiss_filters[] = {
    {"empty", "white"},          {"blank_bk7_wg05", "white"}, {"KPNO_1111_436nm", "g"},
    {"KPNO_373A_677nm", "r"},    {"KPNO_406_828nm", "z"},     {"diffuser", "diffuser"},
    {"unknown", "unknown"},      {"BG40", "g"},               {"BG40_65mm_1", "g"},
    {"BG40_65mm_2", "g"},        {"quadnotch1", "notch"},     {"RG610", "r"},
    {"OG550_65mm_1", "g"},       {"OG550_65mm_2", "g"},       {"FELH0600", "r"},
    {"SDSSg", "g"},              {"SDSSr", "r"},              {"SDSSi", "i"},
    {"collimator", "white"},     {"cyl_lens", "white"},
};
static const struct pf sdss65mm_filters[] = {
    {"SDSSu_65mm", "u"}, {"SDSSg_65mm", "g"}, {"SDSSr_65mm", "r"},
    {"SDSSi_65mm", "i"}, {"SDSSz_65mm", "z"}, {"SDSSy_65mm", "y"},
};
static const char *const latiss_gratings[] = {
    "ronchi90lpmm",     "ronchi170lpmm",    "empty",            "unknown",
    "holo4_003",        "blue300lpmm_qn1",  "holo4_001",        "pinhole_1_1000",
    "pinhole_1_0500",   "pinhole_1_0200",   "pinhole_1_0100",   "pinhole_2_1_1000",
    "pinhole_2_1_0500", "pinhole_2_1_0200", "pinhole_2_1_0100", "pinhole_2_2_1000",
    "pinhole_2_2_0500", "pinhole_2_2_0200", "pinhole_2_2_0100", "pinhole_2_3_1000",
    "pinhole_2_3_0500", "pinhole_2_3_0200", "pinhole_2_3_0100", "pinhole_2_4_1000",
    "pinhole_2_4_0500", "pinhole_2_4_0200", "pinhole_2_4_0100",
};

struct filter_list {
    const struct pf *rows;
    int n;
};

static struct filter_list fl_lsstcam, fl_comcam, fl_latiss;

/* ---- the cameras ------------------------------------------------------------ */

#define MAX_EXPOSURE_ID 7050123199999LL /* LsstBaseTranslator.max_exposure_id() */
#define VISIT_SYSTEM_BY_SEQ_START_END 2  /* obs_base VisitSystem */

struct bfs_camera {
    const char *name;
    const char *const *spellings; /* other INSTRUME values, NULL-terminated */
    const char *obs_prefix;
    const char *class_name, *raw_formatter;
    int64_t translator_detector_max; /* DETECTOR_MAX; registered as max(., 1) */
    struct focal_plane *fp;
    struct filter_list *filters;
};

static const char *const comcam_spellings[] = {"ComCam", NULL};
static const char *const comcamsim_spellings[] = {"ComCamSim", NULL};
static const char *const latiss_spellings[] = {"LSST_ATISS", NULL};

static const bfs_camera cameras[] = {
    {"LSSTCam", NULL, "MC", "lsst.obs.lsst.LsstCam",
     "lsst.obs.lsst.rawFormatter.LsstCamRawFormatter", 1000, &fp_lsstcam, &fl_lsstcam},
    {"LSSTComCam", comcam_spellings, "CC", "lsst.obs.lsst.LsstComCam",
     "lsst.obs.lsst.rawFormatter.LsstComCamRawFormatter", 1000, &fp_comcam, &fl_comcam},
    {"LATISS", latiss_spellings, "AT", "lsst.obs.lsst.Latiss",
     "lsst.obs.lsst.rawFormatter.LatissRawFormatter", 0, &fp_latiss, &fl_latiss},
    {"LSSTCamSim", NULL, "MC", "lsst.obs.lsst.LsstCamSim",
     "lsst.obs.lsst.rawFormatter.LsstCamSimRawFormatter", 1000, &fp_lsstcam, &fl_lsstcam},
    {"LSSTComCamSim", comcamsim_spellings, "CC", "lsst.obs.lsst.LsstComCamSim",
     "lsst.obs.lsst.rawFormatter.LsstComCamSimRawFormatter", 1000, &fp_comcam, &fl_comcam},
};

/* ---- evaluation (once) ------------------------------------------------------ */

/* Capacities of the pools; exceeding one is a bug in the tables above and
 * stops the program at the first use. */
#define DET_POOL 256
#define PF_POOL 1024
#define TEXT_POOL 32768

static struct detector det_pool[DET_POOL];
static int det_used;
static struct pf pf_pool[PF_POOL];
static int pf_used;
static char text_pool[TEXT_POOL];
static size_t text_used;
static pthread_once_t load_once = PTHREAD_ONCE_INIT;

static void broken(const char *what)
{
    fprintf(stderr, "butlerfs: camera.c: %s\n", what);
    abort();
}

/* A formatted string kept in the text pool. */
static const char *intern(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *intern(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(text_pool + text_used, TEXT_POOL - text_used, fmt, ap);
    va_end(ap);
    if (len < 0 || (size_t)len >= TEXT_POOL - text_used)
        broken("text pool too small");
    const char *s = text_pool + text_used;
    text_used += (size_t)len + 1;
    return s;
}

static void add(const char *physical_filter, const char *band)
{
    if (pf_used == PF_POOL)
        broken("filter pool too small");
    pf_pool[pf_used++] = (struct pf){physical_filter, band};
}

static void add_all(const struct pf *rows, int n)
{
    for (int i = 0; i < n; i++)
        add(rows[i].physical_filter, rows[i].band);
}

/* filters.py's addFilter() collects into a dict keyed by band, and the
 * definitions are read back band by band: reorder the rows added since from
 * so that they are grouped by band, bands in order of first appearance,
 * rows of one band in the order they were added. */
static void group_by_band(int from)
{
    struct pf tmp[PF_POOL];
    int n = pf_used - from, k = 0;
    for (int i = 0; i < n; i++) {
        const struct pf *r = &pf_pool[from + i];
        int first = 1;
        for (int j = 0; j < i && first; j++)
            first = strcmp(pf_pool[from + j].band, r->band) != 0;
        if (!first)
            continue;
        for (int j = i; j < n; j++)
            if (strcmp(pf_pool[from + j].band, r->band) == 0)
                tmp[k++] = pf_pool[from + j];
    }
    memcpy(&pf_pool[from], tmp, (size_t)n * sizeof *tmp);
}

static int is_white(const char *band)
{
    return strcmp(band, "white") == 0;
}

static void list_begin(struct filter_list *l)
{
    l->rows = &pf_pool[pf_used];
}

static void list_end(struct filter_list *l)
{
    l->n = (int)(&pf_pool[pf_used] - l->rows);
}

/* LSSTCAM_FILTER_DEFINITIONS: NoFilter, Baseline, BOT, CCOB. */
static void build_lsstcam(struct filter_list *l)
{
    list_begin(l);
    add_all(no_filter, NELEM(no_filter));
    add_all(lsstcam_baseline, NELEM(lsstcam_baseline));

    /* BOT: each filter alone (except "empty", defined above) and with each
     * ND filter, band "<band>~nd"; with a white filter the ND one is named
     * alone.  "unknown" first, then the band-keyed dict. */
    add("unknown", "unknown");
    int from = pf_used;
    for (int i = 0; i < NELEM(bot_filters); i++) {
        const struct pf *b = &bot_filters[i];
        if (strcmp(b->physical_filter, "empty") != 0)
            add(b->physical_filter, b->band);
        const char *ndband = intern("%s" DELIM "nd", b->band);
        for (int k = 0; k < NELEM(bot_nd); k++)
            add(is_white(b->band) ? bot_nd[k] : intern("%s" DELIM "%s", b->physical_filter, bot_nd[k]),
                ndband);
    }
    group_by_band(from);

    /* CCOB: each NoFilter and Baseline filter ("empty" counting as no name)
     * combined with each CCOB filter; a coloured LSSTCam filter only with
     * the white CCOB ones and the CCOB filter of its own band.  The band is
     * the LSSTCam filter's, or the CCOB filter's when that one is white.
     * The CCOB "" entry would repeat the LSSTCam filter alone: skipped.
     * (filters.py's band test reads the band of the previous combination;
     * as HIGH and LOW, white, always come first that is the filter's own.) */
    for (int set = 0; set < 2; set++) {
        const struct pf *lf = set == 0 ? no_filter : lsstcam_baseline;
        int nlf = set == 0 ? NELEM(no_filter) : NELEM(lsstcam_baseline);
        for (int i = 0; i < nlf; i++) {
            const char *name = strcmp(lf[i].physical_filter, "empty") == 0 ? "" : lf[i].physical_filter;
            for (int k = 0; k < NELEM(ccob_filters); k++) {
                const struct pf *c = &ccob_filters[k];
                if (!is_white(lf[i].band) && !is_white(c->band) && strcmp(lf[i].band, c->band) != 0)
                    continue;
                if (c->physical_filter[0] == '\0')
                    continue;
                add(name[0] ? intern("%s" DELIM "%s", name, c->physical_filter) : c->physical_filter,
                    is_white(lf[i].band) ? c->band : lf[i].band);
            }
        }
    }
    list_end(l);
}

/* COMCAM_FILTER_DEFINITIONS: NoFilter, the extra ComCamFilters, then the
 * band-keyed dict of the serial-numbered filters. */
static void build_comcam(struct filter_list *l)
{
    list_begin(l);
    add_all(no_filter, NELEM(no_filter));
    add_all(comcam_extra, NELEM(comcam_extra));
    int from = pf_used;
    for (int i = 0; i < NELEM(comcam_serials); i++) {
        const char *band = comcam_serials[i].band, *sn = comcam_serials[i].serial;
        if (strncmp(sn, "SN-", 3) != 0)
            broken("ComCam serial without SN-");
        add(intern("%s_%s", band, sn + 3), band);
    }
    group_by_band(from);
    list_end(l);
}

/* LATISS_FILTER_DEFINITIONS: every filter alone, then each filter but the
 * diffuser (never used with a grating) with each grating, keeping the
 * filter's band; "empty" is also combined with each SDSS 65 mm filter in the
 * grating wheel, which gives the band. */
static void build_latiss(struct filter_list *l)
{
    list_begin(l);
    add_all(latiss_filters, NELEM(latiss_filters));
    add_all(sdss65mm_filters, NELEM(sdss65mm_filters));
    for (int set = 0; set < 2; set++) {
        const struct pf *f = set == 0 ? latiss_filters : sdss65mm_filters;
        int nf = set == 0 ? NELEM(latiss_filters) : NELEM(sdss65mm_filters);
        for (int i = 0; i < nf; i++) {
            if (strcmp(f[i].physical_filter, "diffuser") == 0)
                continue;
            for (int g = 0; g < NELEM(latiss_gratings); g++)
                add(intern("%s" DELIM "%s", f[i].physical_filter, latiss_gratings[g]), f[i].band);
            if (strcmp(f[i].physical_filter, "empty") != 0)
                continue;
            for (int g = 0; g < NELEM(sdss65mm_filters); g++)
                add(intern("%s" DELIM "%s", f[i].physical_filter, sdss65mm_filters[g].physical_filter),
                    sdss65mm_filters[g].band);
        }
    }
    list_end(l);
}

/* Detector id = raft id0 + slot index, the rafts listed in id order with no
 * gap, so the evaluated array is indexed by id. */
static void build_detectors(struct focal_plane *fp)
{
    fp->det = &det_pool[det_used];
    for (int r = 0; r < fp->nrafts; r++) {
        const struct raft *rf = &fp->rafts[r];
        for (int s = 0; s < kinds[rf->kind].n; s++) {
            if (det_used == DET_POOL)
                broken("detector pool too small");
            if (rf->id0 + s != fp->n)
                broken("rafts not in id order");
            struct detector *d = &det_pool[det_used++];
            snprintf(d->full_name, sizeof d->full_name, "%s_%s", rf->name, kinds[rf->kind].slots[s]);
            d->raft = fp->single ? NULL : rf->name;
            d->name_in_raft = fp->single ? d->full_name : kinds[rf->kind].slots[s];
            d->purpose = kinds[rf->kind].purpose;
            d->type = rf->type;
            fp->n++;
        }
    }
}

static void load(void)
{
    build_detectors(&fp_lsstcam);
    build_detectors(&fp_comcam);
    build_detectors(&fp_latiss);
    build_lsstcam(&fl_lsstcam);
    build_comcam(&fl_comcam);
    build_latiss(&fl_latiss);
}

static void ensure_loaded(void)
{
    pthread_once(&load_once, load);
}

/* ---- the interface ---------------------------------------------------------- */

const bfs_camera *bfs_camera_find(const char *name)
{
    if (!name)
        return NULL;
    for (int i = 0; i < NELEM(cameras); i++) {
        const bfs_camera *c = &cameras[i];
        if (strcasecmp(name, c->name) == 0)
            return c;
        for (const char *const *s = c->spellings; s && *s; s++)
            if (strcasecmp(name, *s) == 0)
                return c;
    }
    return NULL;
}

const char *bfs_camera_name(const bfs_camera *c)
{
    return c ? c->name : NULL;
}

const char *bfs_camera_obs_prefix(const bfs_camera *c)
{
    return c ? c->obs_prefix : NULL;
}

void bfs_camera_instrument(const bfs_camera *c, bfs_instrument_record *out)
{
    if (!c) {
        *out = (bfs_instrument_record){0};
        return;
    }
    *out = (bfs_instrument_record){
        .name = c->name,
        .visit_max = MAX_EXPOSURE_ID,
        .exposure_max = MAX_EXPOSURE_ID,
        .detector_max = c->translator_detector_max > 1 ? c->translator_detector_max : 1,
        .visit_system = VISIT_SYSTEM_BY_SEQ_START_END,
        .class_name = c->class_name,
    };
}

const char *bfs_camera_raw_formatter(const bfs_camera *c)
{
    return c ? c->raw_formatter : NULL;
}

int bfs_camera_n_detectors(const bfs_camera *c)
{
    if (!c)
        return 0;
    ensure_loaded();
    return c->fp->n;
}

int bfs_camera_detector(const bfs_camera *c, int i, bfs_detector_record *out)
{
    if (!c || i < 0 || i >= bfs_camera_n_detectors(c))
        return -ENOENT;
    const struct detector *d = &c->fp->det[i];
    *out = (bfs_detector_record){
        .instrument = c->name,
        .id = i,
        .full_name = d->full_name,
        .raft = d->raft,
        .name_in_raft = d->name_in_raft,
        .purpose = d->purpose,
    };
    return 0;
}

const char *bfs_camera_detector_type(const bfs_camera *c, int i)
{
    if (!c || i < 0 || i >= bfs_camera_n_detectors(c))
        return NULL;
    return c->fp->det[i].type;
}

/* The amplifiers of each detectorType (policy/cameraHeader.yaml, above). */
static const struct {
    const char *type;
    int n;
} amplifiers[] = {{"E2V", 16}, {"ITL", 16}, {"ITL_G", 16}, {"ITL_WF", 8}};

int bfs_camera_n_amplifiers(const bfs_camera *c, int i)
{
    const char *type = bfs_camera_detector_type(c, i);
    for (int k = 0; type && k < NELEM(amplifiers); k++)
        if (strcmp(amplifiers[k].type, type) == 0)
            return amplifiers[k].n;
    return -ENOENT;
}

int bfs_camera_detector_id(const bfs_camera *c, const char *raftbay, const char *ccdslot)
{
    if (!c)
        return -EINVAL;
    if (c->fp->single)
        return 0;
    if (!raftbay || !ccdslot)
        return -EINVAL;
    for (int r = 0; r < c->fp->nrafts; r++) {
        const struct raft *rf = &c->fp->rafts[r];
        if (strcmp(rf->name, raftbay) != 0)
            continue;
        for (int s = 0; s < kinds[rf->kind].n; s++)
            if (strcmp(kinds[rf->kind].slots[s], ccdslot) == 0)
                return rf->id0 + s;
    }
    return -ENOENT;
}

int bfs_camera_n_filters(const bfs_camera *c)
{
    if (!c)
        return 0;
    ensure_loaded();
    return c->filters->n;
}

void bfs_camera_filter(const bfs_camera *c, int i, const char **physical_filter,
                       const char **band)
{
    const struct pf *r = NULL;
    if (c && i >= 0 && i < bfs_camera_n_filters(c))
        r = &c->filters->rows[i];
    if (physical_filter)
        *physical_filter = r ? r->physical_filter : NULL;
    if (band)
        *band = r ? r->band : NULL;
}

const char *bfs_camera_band(const bfs_camera *c, const char *physical_filter)
{
    if (!physical_filter)
        return NULL;
    int n = bfs_camera_n_filters(c);
    for (int i = 0; i < n; i++)
        if (strcmp(c->filters->rows[i].physical_filter, physical_filter) == 0)
            return c->filters->rows[i].band;
    return NULL;
}

/* In the order of obs_lsst's register(): instrument, detectors, filters. */
int bfs_camera_register(bfs_registry *reg, const bfs_camera *c)
{
    if (!reg || !c)
        return -EINVAL;
    bfs_instrument_record inst;
    bfs_camera_instrument(c, &inst);
    int rc = bfs_registry_add_instrument(reg, &inst);
    int n = bfs_camera_n_detectors(c);
    for (int i = 0; i < n && rc == 0; i++) {
        bfs_detector_record d;
        rc = bfs_camera_detector(c, i, &d);
        if (rc == 0)
            rc = bfs_registry_add_detector(reg, &d);
    }
    n = bfs_camera_n_filters(c);
    for (int i = 0; i < n && rc == 0; i++)
        rc = bfs_registry_add_physical_filter(reg, c->name, c->filters->rows[i].physical_filter,
                                              c->filters->rows[i].band);
    return rc;
}
