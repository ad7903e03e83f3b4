/*
 * hdr2fits - a FITS raw from a header dump (a test tool, not installed).
 *
 *   hdr2fits HEADER.yaml OUT.fits [KEY=VALUE ...]
 *
 * HEADER.yaml is a plain-mapping dump of a raw's header, as in
 * ../shared/fixtures/headers (KEY: value per card).  OUT.fits gets a primary
 * HDU holding every card of it with the type its YAML value has (integer,
 * floating, logical, string; null and list values are left out), then the
 * 16 amplifiers of a science sensor as small 32-bit image extensions, in a
 * real raw's order (Segment10..Segment17, Segment07..Segment00: raw ingest
 * refuses a raw with fewer than its detector has), with CHECKSUM and
 * DATASUM on every HDU.  Structural cards of the dump (SIMPLE, BITPIX, NAXIS*,
 * EXTEND, XTENSION, PCOUNT, GCOUNT, EXTNAME, CHECKSUM, DATASUM, table and
 * tile-compression cards; the dumps merge the first extension's cards into
 * the primary's) are not copied.
 * KEY=VALUE arguments replace or add string cards (a focal plane is one
 * header with RAFTBAY/CCDSLOT varied).  @N:NAME arguments replace the 16
 * segments with one extension each, EXTNAME and DETPOS NAME and CCDNUM N
 * (a DECam multi-extension raw).  Exit 0, or 1 with a message.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fits.h"

static int structural(const char *k)
{
    static const char *const skip[] = {"SIMPLE", "BITPIX", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT",
                                       "EXTNAME", "CHECKSUM", "DATASUM", "COMMENT", "HISTORY", NULL};
    /* and the table and tile-compression cards some dumps carry */
    static const char *const prefixes[] = {"NAXIS", "TFIELDS", "TTYPE", "TFORM", "TUNIT", "TDIM", "TNULL",
                                           "TSCAL", "TZERO", "THEAP", "ZIMAGE", "ZBITPIX", "ZNAXIS", "ZTILE",
                                           "ZCMPTYPE", "ZNAME", "ZVAL", "ZQUANTIZ", "ZDITHER", "ZSIMPLE",
                                           "ZEXTEND", "ZTENSION", "ZPCOUNT", "ZGCOUNT", "ZHECKSUM",
                                           "ZDATASUM", "ZBLANK", "ZSCALE", "ZZERO", "BSCALE", "BZERO",
                                           "INHERIT", NULL};
    for (int i = 0; skip[i]; i++)
        if (!strcmp(k, skip[i]))
            return 1;
    for (int i = 0; prefixes[i]; i++)
        if (!strncmp(k, prefixes[i], strlen(prefixes[i])))
            return 1;
    return 0;
}

/* The value given on the command line for key, or NULL. */
static const char *override(int argc, char **argv, const char *key)
{
    size_t n = strlen(key);
    for (int i = 3; i < argc; i++)
        if (!strncmp(argv[i], key, n) && argv[i][n] == '=')
            return argv[i] + n + 1;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: hdr2fits HEADER.yaml OUT.fits [KEY=VALUE ...]\n");
        return 1;
    }
    bfs_yaml *y = NULL;
    char *msg = NULL;
    if (bfs_yaml_load_file(argv[1], &y, &msg) < 0) {
        fprintf(stderr, "hdr2fits: %s\n", msg ? msg : argv[1]);
        return 1;
    }
    bfs_fits *f = NULL;
    if (bfs_fits_create(argv[2], &f) < 0) {
        fprintf(stderr, "hdr2fits: cannot create %s\n", argv[2]);
        return 1;
    }
    bfs_fits_add_image(f, 32, 0, NULL);
    const bfs_yaml_node *root = bfs_yaml_root(y);
    for (size_t i = 0; i < bfs_yaml_len(y, root); i++) {
        const char *k = bfs_yaml_key(y, root, i);
        const char *v = bfs_yaml_scalar(y, bfs_yaml_item(y, root, i));
        if (!k || !v || strlen(k) > 8 || structural(k) || bfs_yaml_is_null(y, bfs_yaml_item(y, root, i)))
            continue;
        const char *o = override(argc, argv, k);
        char *end;
        if (o) {
            bfs_fits_key_str(f, k, o, NULL);
        } else if (!strcmp(v, "true") || !strcmp(v, "false")) {
            bfs_fits_key_log(f, k, v[0] == 't', NULL);
        } else if (strtoll(v, &end, 10), *v && !*end) {
            bfs_fits_key_lng(f, k, strtoll(v, NULL, 10), NULL);
        } else if (strtod(v, &end), *v && !*end) {
            bfs_fits_key_dbl(f, k, strtod(v, NULL), 15, NULL);
        } else {
            bfs_fits_key_str(f, k, v, NULL);
        }
    }
    for (int i = 3; i < argc; i++) { /* overrides of keys the dump lacks */
        if (argv[i][0] == '@')
            continue;
        char key[16];
        const char *eq = strchr(argv[i], '=');
        if (!eq || eq - argv[i] >= (long)sizeof key)
            continue;
        snprintf(key, sizeof key, "%.*s", (int)(eq - argv[i]), argv[i]);
        if (!bfs_yaml_get(y, root, key))
            bfs_fits_key_str(f, key, eq + 1, NULL);
    }
    bfs_fits_checksum(f);
    const char *segs[64] = {"Segment10", "Segment11", "Segment12", "Segment13", "Segment14", "Segment15",
                            "Segment16", "Segment17", "Segment07", "Segment06", "Segment05", "Segment04",
                            "Segment03", "Segment02", "Segment01", "Segment00"};
    long ccds[64] = {0};
    int nsegs = 0;
    for (int i = 3; i < argc && nsegs < 64; i++) {
        const char *colon = argv[i][0] == '@' ? strchr(argv[i], ':') : NULL;
        if (colon) {
            ccds[nsegs] = strtol(argv[i] + 1, NULL, 10);
            segs[nsegs++] = colon + 1;
        }
    }
    bool decam = nsegs > 0;
    if (!decam)
        nsegs = 16;
    for (int s = 0; s < nsegs; s++) {
        long naxes[2] = {16, 8};
        int32_t pix[16 * 8];
        for (int p = 0; p < 16 * 8; p++)
            pix[p] = 15000 + (p * 7 + s * 13) % 101;
        bfs_fits_add_image(f, 32, 2, naxes);
        bfs_fits_key_str(f, "EXTNAME", segs[s], NULL);
        if (decam) {
            bfs_fits_key_lng(f, "CCDNUM", ccds[s], NULL);
            bfs_fits_key_str(f, "DETPOS", segs[s], NULL);
        }
        bfs_fits_write_i32(f, pix, 16 * 8);
        bfs_fits_checksum(f);
    }
    bfs_yaml_free(y);
    int rc = bfs_fits_close(f);
    if (rc < 0) {
        fprintf(stderr, "hdr2fits: writing %s failed (%d)\n", argv[2], rc);
        return 1;
    }
    return 0;
}
