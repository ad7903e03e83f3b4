/*
 * fuzz_translate.c - raw header cards -> dataId, exposure record and
 * datastore path (writers/translate.c, writers/template.c).
 *
 * Input: lines "KEY=T:VALUE", T one of the bfs_fits_card types C L I F U
 * (what cfitsio hands ingest; values up to 71 bytes, keys up to 70).  For
 * any input, a translation that succeeds must give: an exposure id > 0, a
 * detector >= 0, names that are one safe path component and fit their
 * registry columns, a timespan with end > begin, can_see_sky in {-1,0,1};
 * and the default file template over those values must give a relative
 * path with no "." or ".." component.  A failure must carry a message.
 * The same cards go through the DECam path too (translate_decam.h): the
 * cards before an XTENSION line are the primary, those after it the CCD
 * extension; a success must give the same kind of record, and the CCD's
 * detector must be 1..62 unless it was skipped.
 */
#include "template.h"
#include "translate.h"
#include "translate_decam.h"
#include "strutil.h"
#include "fuzz_util.h"

#include <errno.h>
#include <math.h>
#include <string.h>

static void safe(const char *s, size_t max)
{
    if (!s || !bfs_is_one_component(s) || (max && strlen(s) > max))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_setup();
    char *text = fz_string(data, size);
    bfs_fits_card cards[128];
    size_t n = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line && n < 128;
         line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        if (!eq || eq - line >= 71 || !strchr("CLIFU", eq[1] ? eq[1] : '?') || eq[1] == 0 || eq[2] != ':')
            continue;
        bfs_fits_card *c = &cards[n++];
        memset(c, 0, sizeof *c);
        memcpy(c->key, line, (size_t)(eq - line));
        c->type = eq[1];
        snprintf(c->value, sizeof c->value, "%s", eq + 3);
    }
    bfs_raw_translation t;
    char *msg = NULL;
    int rc = bfs_translate_raw(cards, n, n % 2 ? "AT_O_20240624_000106_R00_S00.fits" : NULL, &t, &msg);
    if (rc < 0 && !msg && rc != -ENOMEM)
        abort();
    if (rc == 0) {
        const bfs_exposure_record *r = &t.exposure;
        if (t.exposure_id <= 0 || t.detector < 0 || r->timespan_end <= r->timespan_begin ||
            r->can_see_sky < -1 || r->can_see_sky > 1)
            abort();
        safe(r->obs_id, 0);
        safe(r->physical_filter, 32);
        safe(r->group, 0);
        safe(r->observation_type, 16);
        char det[24], exp[24], day[24];
        snprintf(det, sizeof det, "%lld", (long long)t.detector);
        snprintf(exp, sizeof exp, "%lld", (long long)t.exposure_id);
        snprintf(day, sizeof day, "%lld", (long long)r->day_obs);
        bfs_template_value v[] = {
            {"instrument", t.instrument}, {"detector", det}, {"exposure", exp},
            {"physical_filter", r->physical_filter}, {"day_obs", day}, {"group", r->group},
            {"exposure.obs_id", r->obs_id},
        };
        char *path = NULL, *tmsg = NULL;
        if (bfs_template_format(bfs_template_default, "raw", "LSSTCam/raw/all", v, sizeof v / sizeof *v,
                                &path, &tmsg) == 0) {
            if (path[0] == '/' || strstr(path, "//"))
                abort();
            for (char *save = NULL, *c = strtok_r(path, "/", &save); c; c = strtok_r(NULL, "/", &save))
                if (!strcmp(c, ".") || !strcmp(c, ".."))
                    abort();
        }
        free(path);
        free(tmsg);
    }
    free(msg);
    /* DECam: split at XTENSION into primary and CCD extension */
    size_t split = n;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(cards[i].key, "XTENSION")) {
            split = i;
            break;
        }
    (void)bfs_decam_is(cards, split);
    int64_t det;
    char pos[16];
    msg = NULL;
    rc = bfs_decam_detector(cards + split, n - split, &det, pos, &msg);
    if (rc != 0 && rc != BFS_DECAM_SKIPPED && rc != -EINVAL)
        abort();
    if ((rc == 0 && (det > BFS_DECAM_MAX_SCIENCE_CCD || strlen(pos) > 15)) || (rc && !msg))
        abort();
    free(msg);
    msg = NULL;
    rc = bfs_decam_translate(cards, split, split < n ? cards + split : NULL, n - split, &t, &msg);
    if (rc < 0 && !msg && rc != -ENOMEM)
        abort();
    if (rc == 0) {
        const bfs_exposure_record *r = &t.exposure;
        if (t.exposure_id < 0 || r->timespan_end <= r->timespan_begin || r->can_see_sky < -1 ||
            r->can_see_sky > 1 || strcmp(t.instrument, "DECam"))
            abort();
        safe(r->obs_id, 0);
        safe(r->physical_filter, 32);
        safe(r->group, 0);
        safe(r->observation_type, 16);
        if (!isnan(r->tracking_ra) && (r->tracking_ra < 0 || r->tracking_ra >= 360 ||
                                       fabs(r->tracking_dec) > 90))
            abort();
    }
    free(msg);
    free(text);
    return 0;
}
