/*
 * hdr2fits - a FITS raw from a header dump (a test tool, not installed).
 *
 *   hdr2fits HEADER.yaml OUT.fits [KEY=VALUE ...] [@dump] [@N:NAME ...]
 *
 * HEADER.yaml is a dump of a raw's header, as in ../shared/fixtures/headers:
 * a plain mapping (KEY: value per card), or daf_base's PropertyList (a list
 * of [KEY, Type, value, comment]).  It may also be FITS header blocks (a
 * file that starts with "SIMPLE  =", such as the Header Service's
 * AT_O_20190531_000001.header): then the cards of its primary HDU are the
 * dump, with their FITS types and comments (cards without a value left
 * out), and its extensions are not read.  OUT.fits gets a primary HDU holding
 * every card of it with the type its YAML value has (integer, floating,
 * logical, string; the PropertyList's Type and comment when given; null and
 * list values are left out), then the
 * 16 amplifiers of a science sensor as small 32-bit image extensions, in a
 * real raw's order (Segment10..Segment17, Segment07..Segment00: raw ingest
 * refuses a raw with fewer than its detector has), with CHECKSUM and
 * DATASUM on every HDU.  Structural cards of the dump (SIMPLE, BITPIX, NAXIS*,
 * EXTEND, XTENSION, PCOUNT, GCOUNT, EXTNAME, CHECKSUM, DATASUM, table and
 * tile-compression cards; the dumps merge the first extension's cards into
 * the primary's) are not copied; a dump's NEXTEND becomes the count of
 * extensions written.
 * KEY=VALUE arguments replace or add string cards (a focal plane is one
 * header with RAFTBAY/CCDSLOT varied).  @N:NAME arguments replace the 16
 * segments with one extension each, EXTNAME and DETPOS NAME and CCDNUM N
 * (a DECam multi-extension raw).  The argument @dump keeps the dump's HDUs
 * apart instead of merging them: the cards before its XTENSION card go to
 * the primary, the cards from XTENSION on (EXTNAME and INHERIT included) to
 * one image extension, before any @N:NAME ones (a DECam raw with the
 * dump's own CCD).  Exit 0, or 1 with a message.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fits.h"

static int structural(const char *k)
{
    static const char *const skip[] = {"SIMPLE", "BITPIX", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT", "EXTNAME",
                                       "NEXTEND", "CHECKSUM", "DATASUM", "COMMENT", "HISTORY", NULL};
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

/* One card of the dump: type 'L' (logical), 'I' (integer), 'F' (floating),
 * 'C' (string), or 0 to infer it from the text (true/false, an integer, a
 * floating number, else a string). */
struct card {
    const char *key, *value, *comment;
    char type;
};

/* Write one card into the current HDU, the value given on the command line
 * replacing the dump's. */
static void put_card(bfs_fits *f, const struct card *c, const char *o)
{
    const char *v = c->value;
    char *end;
    char t = c->type;
    if (!t)
        t = !strcmp(v, "true") || !strcmp(v, "false")           ? 'L'
            : (strtoll(v, &end, 10), *v && !*end)                ? 'I'
            : (strtod(v, &end), *v && !*end)                     ? 'F'
                                                                 : 'C';
    if (o)
        bfs_fits_key_str(f, c->key, o, c->comment);
    else if (t == 'L')
        bfs_fits_key_log(f, c->key, v[0] == 't' || v[0] == 'T', c->comment);
    else if (t == 'I')
        bfs_fits_key_lng(f, c->key, strtoll(v, NULL, 10), c->comment);
    else if (t == 'F')
        bfs_fits_key_dbl(f, c->key, strtod(v, NULL), 15, c->comment);
    else
        bfs_fits_key_str(f, c->key, v, c->comment);
}

/* The cards of the dump in y, in its order, into cards (at most max);
 * returns their number.  Null and list values are left out. */
static size_t read_cards(const bfs_yaml *y, struct card *cards, size_t max)
{
    const bfs_yaml_node *root = bfs_yaml_root(y);
    size_t n = 0;
    for (size_t i = 0; i < bfs_yaml_len(y, root) && n < max; i++) {
        const bfs_yaml_node *v = bfs_yaml_item(y, root, i);
        struct card c = {0};
        if (bfs_yaml_is_seq(y, root)) { /* PropertyList: [KEY, Type, value, comment] */
            const char *type = bfs_yaml_scalar(y, bfs_yaml_item(y, v, 1));
            c.key = bfs_yaml_scalar(y, bfs_yaml_item(y, v, 0));
            c.value = bfs_yaml_scalar(y, bfs_yaml_item(y, v, 2));
            c.comment = bfs_yaml_scalar(y, bfs_yaml_item(y, v, 3));
            if (!type || bfs_yaml_is_null(y, bfs_yaml_item(y, v, 2)))
                continue;
            c.type = !strcmp(type, "Bool") ? 'L' : !strcmp(type, "Int") ? 'I'
                   : !strcmp(type, "Double") ? 'F' : 'C';
        } else {
            if (bfs_yaml_is_null(y, v))
                continue;
            c.key = bfs_yaml_key(y, root, i);
            c.value = bfs_yaml_scalar(y, v);
        }
        if (c.key && c.value)
            cards[n++] = c;
    }
    return n;
}

/* The valued cards of the primary HDU of the FITS file path into cards (at
 * most max), pointing into *held (malloc'd, the caller frees); returns their
 * number, or -1 with a message. */
static long read_fits_cards(const char *path, bfs_fits_card **held, struct card *cards, size_t max)
{
    size_t n = 0, k = 0;
    char *msg = NULL;
    if (bfs_fits_read_header(path, 1, held, &n, &msg) < 0) {
        fprintf(stderr, "hdr2fits: %s\n", msg ? msg : path);
        free(msg);
        return -1;
    }
    for (size_t i = 0; i < n && k < max; i++) {
        const bfs_fits_card *c = &(*held)[i];
        if (c->type == 'C' || c->type == 'L' || c->type == 'I' || c->type == 'F')
            cards[k++] = (struct card){c->key, c->value, c->comment[0] ? c->comment : NULL, c->type};
    }
    return (long)k;
}

/* Whether path starts with a FITS primary header. */
static bool is_fits(const char *path)
{
    char head[10] = "";
    FILE *fp = fopen(path, "rb");
    bool yes = fp && fread(head, 1, 9, fp) == 9 && !memcmp(head, "SIMPLE  =", 9);
    if (fp)
        fclose(fp);
    return yes;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: hdr2fits HEADER.yaml OUT.fits [KEY=VALUE ...] [@dump] [@N:NAME ...]\n");
        return 1;
    }
    bfs_yaml *y = NULL;
    bfs_fits_card *held = NULL;
    char *msg = NULL;
    static struct card cards[1024];
    size_t ncards;
    if (is_fits(argv[1])) {
        long k = read_fits_cards(argv[1], &held, cards, sizeof cards / sizeof *cards);
        if (k < 0)
            return 1;
        ncards = (size_t)k;
    } else {
        if (bfs_yaml_load_file(argv[1], &y, &msg) < 0) {
            fprintf(stderr, "hdr2fits: %s\n", msg ? msg : argv[1]);
            return 1;
        }
        ncards = read_cards(y, cards, sizeof cards / sizeof *cards);
    }
    bool split = false;
    for (int i = 3; i < argc; i++)
        split |= !strcmp(argv[i], "@dump");
    /* the first extension's cards start at XTENSION (all cards when merged) */
    size_t xt = ncards;
    for (size_t i = 0; split && i < ncards; i++)
        if (!strcmp(cards[i].key, "XTENSION")) {
            xt = i;
            break;
        }
    if (split && xt == ncards) {
        fprintf(stderr, "hdr2fits: @dump, but %s has no XTENSION card\n", argv[1]);
        return 1;
    }
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
    bool decam = nsegs > 0 || split;
    if (!decam)
        nsegs = 16;
    bfs_fits *f = NULL;
    if (bfs_fits_create(argv[2], &f) < 0) {
        fprintf(stderr, "hdr2fits: cannot create %s\n", argv[2]);
        return 1;
    }
    bfs_fits_add_image(f, 32, 0, NULL);
    for (size_t i = 0; i < xt; i++)
        if (strlen(cards[i].key) <= 8 && !structural(cards[i].key))
            put_card(f, &cards[i], override(argc, argv, cards[i].key));
    for (int i = 3; i < argc; i++) { /* overrides of keys the dump lacks */
        if (argv[i][0] == '@')
            continue;
        char key[16];
        const char *eq = strchr(argv[i], '=');
        if (!eq || eq - argv[i] >= (long)sizeof key)
            continue;
        snprintf(key, sizeof key, "%.*s", (int)(eq - argv[i]), argv[i]);
        bool have = false;
        for (size_t c = 0; c < ncards && !have; c++)
            have = !strcmp(cards[c].key, key);
        if (!have)
            bfs_fits_key_str(f, key, eq + 1, NULL);
    }
    bool nextend = false; /* the dump's count is of its own file: give this file's */
    for (size_t c = 0; c < ncards && !nextend; c++)
        nextend = !strcmp(cards[c].key, "NEXTEND");
    if (nextend)
        bfs_fits_key_lng(f, "NEXTEND", nsegs + (split ? 1 : 0), "number of extensions");
    bfs_fits_checksum(f);
    long naxes[2] = {16, 8};
    int32_t pix[16 * 8];
    if (split) { /* the dump's own extension */
        for (int p = 0; p < 16 * 8; p++)
            pix[p] = 15000 + (p * 7) % 101;
        bfs_fits_add_image(f, 32, 2, naxes);
        for (size_t i = xt; i < ncards; i++) {
            const char *k = cards[i].key;
            if (strlen(k) <= 8 && (!structural(k) || !strcmp(k, "EXTNAME") || !strcmp(k, "INHERIT")))
                put_card(f, &cards[i], override(argc, argv, k));
        }
        bfs_fits_write_i32(f, pix, 16 * 8);
        bfs_fits_checksum(f);
    }
    for (int s = 0; s < nsegs; s++) {
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
    free(held);
    if (rc < 0) {
        fprintf(stderr, "hdr2fits: writing %s failed (%d)\n", argv[2], rc);
        return 1;
    }
    return 0;
}
