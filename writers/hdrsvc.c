/*
 * hdrsvc.c - the Header Service merge (see hdrsvc.h for the rules).
 *
 * Design.  The document is parsed whole (common/config.h, libyaml) and
 * checked for shape before the FITS file is touched, so a malformed
 * document never costs a copy.  The merge then runs on a working copy,
 * `<path>.merge`, through fits.c's update calls (cfitsio is fits.c's
 * alone): every card is compared as a value before anything is written, so
 * the second merge of a document finds every card SAME, changes no HDU and
 * leaves path alone — which is what makes the merge idempotent byte for
 * byte.  Only a copy that changed replaces path: fsync(copy), rename,
 * fsync(directory), the usual crash-atomic replacement.
 *
 * The fetch polls a directory and/or GETs a URL until a deadline; it keeps
 * no state between calls and creates its own bfs_http, so it may run on any
 * thread.
 */
#include "hdrsvc.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "fits.h"
#include "http.h"
#include "clock.h"
#include "log.h"
#include "strutil.h"

#define TAG "hdrsvc"
#define POLL_MS 100
#define HTTP_BACKOFF_MAX_MS 1000

/* ---- fetch ---------------------------------------------------------------- */


/* Read the document at path: 0 and *text, *len; -ENOENT when it is absent or
 * still empty; -EAGAIN while it grows; -EFBIG; another -errno with *errmsg. */
static int read_doc(const char *path, char **text, size_t *len, char **errmsg)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return -ENOENT;
        bfs_set_errmsg(errmsg, "cannot open the Header Service document %s: %s", path, strerror(e));
        return -e;
    }
    struct stat sb;
    int rc = 0;
    char *buf = NULL;
    size_t n = 0;
    if (fstat(fd, &sb) < 0) {
        rc = -errno;
        bfs_set_errmsg(errmsg, "cannot stat %s: %s", path, strerror(-rc));
    } else if (!S_ISREG(sb.st_mode)) {
        rc = -EINVAL;
        bfs_set_errmsg(errmsg, "the Header Service document %s is not a regular file", path);
    } else if (sb.st_size > (off_t)BFS_HS_MAX_DOC) {
        rc = -EFBIG;
    } else if (sb.st_size == 0) {
        rc = -ENOENT;
    } else if (!(buf = malloc((size_t)sb.st_size + 2))) {
        rc = -ENOMEM;
    } else {
        /* read one byte more than stat said, to see a file still growing */
        size_t want = (size_t)sb.st_size + 1;
        while (n < want) {
            ssize_t r = read(fd, buf + n, want - n);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                rc = -errno;
                bfs_set_errmsg(errmsg, "cannot read %s: %s", path, strerror(-rc));
                break;
            }
            if (r == 0)
                break;
            n += (size_t)r;
        }
        if (!rc && n > (size_t)sb.st_size)
            rc = -EAGAIN; /* being written: read it on the next round */
        else if (!rc && n == 0)
            rc = -ENOENT;
    }
    close(fd);
    if (rc == -EFBIG)
        bfs_set_errmsg(errmsg, "the Header Service document %s is larger than %u bytes", path,
                       BFS_HS_MAX_DOC);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    return 0;
}

/* url_template with every "{obsid}" replaced; malloc'd, or NULL. */
static char *expand_url(const char *tmpl, const char *obsid)
{
    static const char mark[] = "{obsid}";
    size_t ml = sizeof mark - 1, ol = strlen(obsid), n = 0;
    for (const char *p = strstr(tmpl, mark); p; p = strstr(p + ml, mark))
        n++;
    char *out = malloc(strlen(tmpl) + n * ol + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *p = tmpl;;) {
        const char *m = strstr(p, mark);
        size_t k = m ? (size_t)(m - p) : strlen(p);
        memcpy(o, p, k);
        o += k;
        if (!m)
            break;
        memcpy(o, obsid, ol);
        o += ol;
        p = m + ml;
    }
    *o = '\0';
    return out;
}

/* Errors of a GET that a later attempt may not see. */
static bool http_transient(int e)
{
    switch (e) {
    case ENOENT: case ERANGE: case ETIMEDOUT: case EHOSTDOWN: case EHOSTUNREACH:
    case ECONNREFUSED: case ECONNRESET: case EPROTO: case EIO: case ESTALE:
        return true;
    }
    return false;
}

int bfs_hs_fetch(const char *dir, const char *url_template, const char *obsid, int64_t wait_ms,
                 char **text, size_t *len, char **errmsg)
{
    return bfs_hs_fetch_with(NULL, dir, url_template, obsid, wait_ms, text, len, errmsg);
}

int bfs_hs_fetch_with(bfs_http *shared, const char *dir, const char *url_template, const char *obsid,
                      int64_t wait_ms, char **text, size_t *len, char **errmsg)
{
    *text = NULL;
    *len = 0;
    if (errmsg)
        *errmsg = NULL;
    if (!obsid || !bfs_is_one_component(obsid)) {
        bfs_set_errmsg(errmsg, "the OBSID '%s' is not one path component, so no Header Service "
                       "document is looked for", obsid ? obsid : "(none)");
        return -EINVAL;
    }
    if (!dir && !url_template) {
        bfs_set_errmsg(errmsg, "no Header Service directory or URL is configured");
        return -EINVAL;
    }
    char *url = NULL, *shown = NULL, *buf = NULL;
    bfs_http *h = shared;
    if (url_template) {
        if (!(url = expand_url(url_template, obsid)) || !(shown = strdup(url))) {
            free(url);
            return -ENOMEM;
        }
        shown[strcspn(shown, "?")] = '\0'; /* a query string may carry a secret */
        if (!bfs_http_handles(url)) {
            bfs_set_errmsg(errmsg, "the Header Service URL %s is not http://, https:// or s3://",
                           shown);
            free(url);
            free(shown);
            return -EINVAL;
        }
    }

    int64_t start = bfs_mono_ms(), deadline = start + (wait_ms > 0 ? wait_ms : 0);
    int64_t next_http = start, backoff = POLL_MS;
    int rc = -ETIMEDOUT, last_http = 0;
    for (;;) {
        for (int i = 0; dir && i < 3; i++) {
            static const char *const ext[] = {"header", "yaml", "yml"};
            char *path = bfs_asprintf("%s/%s.%s", dir, obsid, ext[i]);
            if (!path) {
                rc = -ENOMEM;
                goto out;
            }
            int r = read_doc(path, text, len, errmsg);
            free(path);
            if (r == 0) {
                rc = 0;
                goto out;
            }
            if (r != -ENOENT && r != -EAGAIN) {
                rc = r;
                goto out;
            }
        }
        int64_t t = bfs_mono_ms();
        if (url && t >= next_http) {
            if (!h) {
                bfs_http_cfg cfg = {.tls_verify = true};
                int r = bfs_http_new(&cfg, &h, errmsg);
                if (r < 0) {
                    rc = r;
                    goto out;
                }
            }
            if (!buf && !(buf = malloc(BFS_HS_MAX_DOC + 1))) {
                rc = -ENOMEM;
                goto out;
            }
            long budget = deadline - t > POLL_MS ? (long)(deadline - t) : POLL_MS;
            ssize_t n = bfs_http_get_within(h, url, NULL, 0, BFS_HS_MAX_DOC + 1, buf, NULL, budget,
                                            NULL, NULL);
            if (n > (ssize_t)BFS_HS_MAX_DOC) {
                rc = -EFBIG;
                bfs_set_errmsg(errmsg, "the Header Service document %s is larger than %u bytes",
                               shown, BFS_HS_MAX_DOC);
                goto out;
            }
            if (n > 0) {
                char *doc = realloc(buf, (size_t)n + 1);
                if (doc)
                    buf = doc;
                buf[n] = '\0';
                *text = buf;
                *len = (size_t)n;
                buf = NULL;
                rc = 0;
                goto out;
            }
            last_http = n == 0 ? -ERANGE : (int)n; /* 0 bytes: an empty object */
            if (!http_transient(-last_http)) {
                rc = last_http;
                bfs_set_errmsg(errmsg, "cannot fetch the Header Service document %s: %s", shown,
                               bfs_http_strerror(last_http));
                goto out;
            }
            bfs_debug(TAG, "%s: %s; retrying", shown, bfs_http_strerror(last_http));
            t = bfs_mono_ms();
            next_http = t + backoff;
            backoff = backoff * 2 < HTTP_BACKOFF_MAX_MS ? backoff * 2 : HTTP_BACKOFF_MAX_MS;
        }
        if (t >= deadline)
            break;
        int64_t nap = dir ? POLL_MS : next_http - t;
        bfs_sleep_ms(nap < deadline - t ? nap : deadline - t);
    }

    /* nothing in time */
    {
        char *where_dir = dir ? bfs_asprintf("%s/%s.{header,yaml,yml}", dir, obsid) : NULL;
        char *where_url = NULL;
        if (url)
            where_url = last_http ? bfs_asprintf("%s (last: %s)", shown,
                                                 last_http == -ERANGE ? "an empty document"
                                                                      : bfs_http_strerror(last_http))
                                  : strdup(shown);
        bfs_set_errmsg(errmsg, "no Header Service document for %s within %lld ms: looked for %s%s%s",
                       obsid, (long long)(wait_ms > 0 ? wait_ms : 0), where_dir ? where_dir : "",
                       where_dir && where_url ? " and " : "", where_url ? where_url : "");
        free(where_dir);
        free(where_url);
        rc = -ETIMEDOUT;
    }
out:
    if (h != shared)
        bfs_http_free(h);
    free(buf);
    free(url);
    free(shown);
    return rc;
}

/* ---- the merge -------------------------------------------------------------- */

/* Keywords that describe the structure of an HDU or its checks: the
 * Header Service may list them (its PRIMARY block starts with SIMPLE,
 * BITPIX, NAXIS, EXTEND, EXTNAME), the file's own are kept. */
static bool structural(const char *key)
{
    static const char *const exact[] = {
        "SIMPLE", "BITPIX", "NAXIS", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT", "EXTNAME",
        "TFIELDS", "THEAP", "ZIMAGE", "ZBITPIX", "ZNAXIS", "ZCMPTYPE", "ZQUANTIZ", "ZDITHER0",
        "ZSIMPLE", "ZEXTEND", "ZTENSION", "ZPCOUNT", "ZGCOUNT", "ZHECKSUM", "ZDATASUM", "ZBLANK",
        "BSCALE", "BZERO", "BLANK", "CHECKSUM", "DATASUM", "END", "CONTINUE",
    };
    /* followed by a column or axis number */
    static const char *const indexed[] = {
        "NAXIS", "TTYPE", "TFORM", "TUNIT", "TDIM", "TSCAL", "TZERO", "TNULL", "TBCOL",
        "ZNAXIS", "ZTILE", "ZNAME", "ZVAL",
    };
    for (size_t i = 0; i < sizeof exact / sizeof *exact; i++)
        if (!strcmp(key, exact[i]))
            return true;
    for (size_t i = 0; i < sizeof indexed / sizeof *indexed; i++) {
        size_t n = strlen(indexed[i]);
        if (!strncmp(key, indexed[i], n) && key[n]) {
            const char *p = key + n;
            while (isdigit((unsigned char)*p))
                p++;
            if (!*p)
                return true;
        }
    }
    return false;
}

/* Keywords whose value type the FITS standard fixes (general descriptive,
 * WCS and time keywords, as fitsverify checks them): an undefined value
 * would make the file fail verification, so a null for one of them is not
 * written (the file keeps what it has) and counts as invalid. */
static bool typed_by_standard(const char *key)
{
    static const char *const exact[] = {
        "DATE", "DATE-OBS", "DATE-BEG", "DATE-END", "DATE-AVG", "ORIGIN", "TELESCOP",
        "INSTRUME", "OBSERVER", "OBJECT", "AUTHOR", "REFERENC", "BUNIT", "RADESYS", "RADECSYS",
        "TIMESYS", "EQUINOX", "EPOCH", "MJD-OBS", "MJD-BEG", "MJD-END", "MJD-AVG", "DATAMAX",
        "DATAMIN", "EXTVER", "EXTLEVEL",
    };
    static const char *const indexed[] = {"CTYPE", "CUNIT", "CRVAL", "CRPIX", "CDELT", "CROTA"};
    for (size_t i = 0; i < sizeof exact / sizeof *exact; i++)
        if (!strcmp(key, exact[i]))
            return true;
    for (size_t i = 0; i < sizeof indexed / sizeof *indexed; i++) {
        size_t n = strlen(indexed[i]);
        if (!strncmp(key, indexed[i], n) && isdigit((unsigned char)key[n]))
            return true;
    }
    return false;
}

/* "RxxSyy" (S followed by two digits or letters: S11, SG0, SW1). */
static bool sensor_like(const char *s, size_t n)
{
    return n == 6 && s[0] == 'R' && isdigit((unsigned char)s[1]) && isdigit((unsigned char)s[2]) &&
           s[3] == 'S' && isalnum((unsigned char)s[4]) && isalnum((unsigned char)s[5]);
}

enum block_kind { B_PRIMARY, B_SENSOR_PRIMARY, B_EXT, B_OTHER };

/* What block name is for sensor; *ext: the EXTNAME of a B_EXT block. */
static enum block_kind classify(const char *name, const char *sensor, const char **ext)
{
    *ext = name;
    if (!strcmp(name, "PRIMARY"))
        return B_PRIMARY;
    size_t sl = sensor ? strlen(sensor) : 0;
    if (sensor) {
        if (!strncmp(name, sensor, sl) && name[sl] == '_') {
            *ext = name + sl + 1;
            return strcmp(*ext, "PRIMARY") ? B_EXT : B_SENSOR_PRIMARY;
        }
        if (!strncmp(name, "PRIMARY_", 8) && !strcmp(name + 8, sensor))
            return B_SENSOR_PRIMARY;
    }
    const char *us = strchr(name, '_');
    if (us && sensor_like(name, (size_t)(us - name)))
        return B_OTHER;
    if (!strncmp(name, "PRIMARY_", 8) && sensor_like(name + 8, strlen(name + 8)))
        return B_OTHER;
    return B_EXT;
}

struct merge {
    const char *path;      /* the file merged into (for messages) */
    const bfs_yaml *y;
    bfs_fits *f;
    int n_hdus;
    char (*extname)[72];   /* [n_hdus], index hdu - 1 */
    bool *changed;         /* [n_hdus] */
    bfs_hs_report *r;
};

static bool printable(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            return false;
    return true;
}

/* A comment for a card: printable ASCII (others become '?', as the Header
 * Service's own FITS writer does), at most a card's room; "" for none. */
static void card_comment(const bfs_yaml *y, const bfs_yaml_node *n, char *out, size_t size)
{
    out[0] = '\0';
    if (!n || bfs_yaml_is_null(y, n))
        return;
    const char *s = bfs_yaml_scalar(y, n);
    if (!s)
        return;
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && o + 1 < size; p++) {
        if (*p >= 0x80) { /* one '?' per UTF-8 character */
            while ((p[1] & 0xc0) == 0x80)
                p++;
            out[o++] = '?';
        } else {
            out[o++] = *p < 0x20 || *p == 0x7f ? '?' : (char)*p;
        }
    }
    out[o] = '\0';
}

static void note_invalid(struct merge *m, int hdu, const char *key, const char *why)
{
    m->r->invalid++;
    bfs_info(TAG, "%s: HDU %d: Header Service keyword %s not merged: %s", m->path, hdu,
             key && key[0] ? key : "(blank)", why);
}

/* The keyword an entry's "keyword" node kn names, as it is merged (one of
 * up to 8 characters upper case, as FITS keywords are; a longer one is a
 * HIERARCH keyword, kept as written), into key; "" for none (a blank
 * commentary card).  NULL, or what the bad keyword is shown as. */
static const char *entry_key(const bfs_yaml *y, const bfs_yaml_node *kn, char key[72])
{
    key[0] = '\0';
    if (!kn || bfs_yaml_is_null(y, kn))
        return NULL;
    const char *k = bfs_yaml_scalar(y, kn);
    if (!k || !*k || strlen(k) >= 72 || !printable(k))
        return k ? "(unprintable)" : "(not a scalar)";
    snprintf(key, 72, "%s", k);
    if (strlen(key) <= 8)
        for (char *p = key; *p; p++)
            *p = (char)toupper((unsigned char)*p);
    return NULL;
}

/* Merge one {keyword, value, comment} entry into the current HDU hdu. */
static int merge_entry(struct merge *m, int hdu, const bfs_yaml_node *item)
{
    const bfs_yaml *y = m->y;
    bfs_hs_report *r = m->r;
    const bfs_yaml_node *kn = bfs_yaml_get(y, item, "keyword");
    const bfs_yaml_node *vn = bfs_yaml_get(y, item, "value");
    const bfs_yaml_node *cn = bfs_yaml_get(y, item, "comment");
    char key[72], comment[80];
    const char *bad = entry_key(y, kn, key);
    if (bad) {
        note_invalid(m, hdu, bad, "bad keyword");
        return 0;
    }
    card_comment(y, cn, comment, sizeof comment);

    /* commentary: appended unless present verbatim */
    if (bfs_fits_is_commentary(key)) {
        const char *textv = comment;
        if (!textv[0] && vn && !bfs_yaml_is_null(y, vn) && bfs_yaml_scalar(y, vn))
            textv = bfs_yaml_scalar(y, vn);
        int rc = bfs_fits_add_commentary(m->f, key, textv);
        if (rc == -EINVAL) {
            note_invalid(m, hdu, key, "text is not printable ASCII");
            return 0;
        }
        if (rc < 0)
            return rc;
        if (rc == 1) {
            r->commentary++;
            m->changed[hdu - 1] = true;
        } else {
            r->unchanged++;
        }
        return 0;
    }
    if (structural(key)) {
        r->skipped_structural++;
        return 0;
    }

    bfs_yaml_value yv;
    int vr = vn ? bfs_yaml_resolve(y, vn, &yv) : 0;
    if (!vn)
        yv.type = BFS_YAML_NULL; /* an entry without a value: undefined */
    bfs_fits_value v = {0};
    if (vr == -ERANGE) {
        note_invalid(m, hdu, key, "the integer does not fit in 64 bits");
        return 0;
    }
    if (vr < 0) {
        note_invalid(m, hdu, key, "the value's tag does not match its text");
        return 0;
    }
    switch (yv.type) {
    case BFS_YAML_NOT_SCALAR:
        note_invalid(m, hdu, key, "the value is a list or a mapping");
        return 0;
    case BFS_YAML_NULL:
        v.type = 'U';
        break;
    case BFS_YAML_BOOL:
        v.type = 'L';
        v.b = yv.b;
        break;
    case BFS_YAML_INT:
        v.type = 'I';
        v.i = yv.i;
        break;
    case BFS_YAML_FLOAT:
        v.type = isfinite(yv.f) ? 'F' : 'U'; /* FITS has no inf or nan value */
        v.d = yv.f;
        break;
    case BFS_YAML_STR:
        if (strlen(yv.s) != yv.len || !printable(yv.s)) {
            note_invalid(m, hdu, key, "the string is not printable ASCII");
            return 0;
        }
        v.type = 'C';
        v.s = yv.s;
        break;
    }
    if (v.type == 'U' && typed_by_standard(key)) {
        note_invalid(m, hdu, key, "the FITS standard gives it a value type, so it cannot be "
                     "undefined");
        return 0;
    }
    if (v.type == 'U')
        r->undefined++;

    char oldv[BFS_FITS_VALUE_TEXT], newv[BFS_FITS_VALUE_TEXT];
    int rc = bfs_fits_update_key(m->f, key, &v, comment, oldv, newv);
    if (rc == -EINVAL) {
        note_invalid(m, hdu, key, "cfitsio refuses the keyword or value");
        return 0;
    }
    if (rc < 0)
        return rc;
    switch ((bfs_fits_update)rc) {
    case BFS_FITS_SAME:
        r->unchanged++;
        return 0;
    case BFS_FITS_ADDED:
        r->added++;
        break;
    case BFS_FITS_REWRITTEN:
        r->replaced++;
        bfs_debug(TAG, "%s: HDU %d: %s rewritten (same value %s, other comment or type)", m->path,
                  hdu, key, newv);
        break;
    case BFS_FITS_CHANGED:
        r->replaced++;
        r->conflicts++;
        bfs_debug(TAG, "%s: HDU %d: %s = %s replaced by the Header Service's %s", m->path, hdu, key,
                  oldv, newv);
        if (r->n_listed < BFS_HS_MAX_CONFLICTS) {
            bfs_hs_conflict *c = &r->conflict[r->n_listed++];
            snprintf(c->keyword, sizeof c->keyword, "%s", key);
            c->hdu = hdu;
            snprintf(c->extname, sizeof c->extname, "%s", m->extname[hdu - 1]);
            snprintf(c->old_value, sizeof c->old_value, "%s", oldv);
            snprintf(c->new_value, sizeof c->new_value, "%s", newv);
        }
        break;
    }
    m->changed[hdu - 1] = true;
    return 0;
}

static int merge_block(struct merge *m, int hdu, const bfs_yaml_node *list)
{
    int rc = bfs_fits_select(m->f, hdu, NULL, 0);
    if (rc < 0)
        return rc;
    m->r->blocks_merged++;
    for (size_t i = 0; i < bfs_yaml_len(m->y, list); i++)
        if ((rc = merge_entry(m, hdu, bfs_yaml_item(m->y, list, i))) < 0)
            return rc;
    return 0;
}

/* The document's shape: a mapping of block names to lists (or null) of
 * mappings.  -EINVAL with a sentence naming the line otherwise. */
static int check_shape(const bfs_yaml *y, char **errmsg)
{
    const bfs_yaml_node *root = bfs_yaml_root(y);
    if (!bfs_yaml_is_map(y, root)) {
        bfs_set_errmsg(errmsg, "the Header Service document is not a mapping of extension names "
                       "to card lists (line %d)", bfs_yaml_line(y, root));
        return -EINVAL;
    }
    for (size_t i = 0; i < bfs_yaml_len(y, root); i++) {
        const bfs_yaml_node *list = bfs_yaml_item(y, root, i);
        const char *name = bfs_yaml_key(y, root, i);
        if (!name) {
            bfs_set_errmsg(errmsg, "the Header Service document has a key that is not a name "
                           "(line %d)", bfs_yaml_line(y, list));
            return -EINVAL;
        }
        if (bfs_yaml_is_null(y, list))
            continue;
        if (!bfs_yaml_is_seq(y, list)) {
            bfs_set_errmsg(errmsg, "the Header Service document's %s is not a list of cards "
                           "(line %d)", name, bfs_yaml_line(y, list));
            return -EINVAL;
        }
        for (size_t j = 0; j < bfs_yaml_len(y, list); j++) {
            const bfs_yaml_node *item = bfs_yaml_item(y, list, j);
            if (!bfs_yaml_is_map(y, item)) {
                bfs_set_errmsg(errmsg, "the Header Service document's %s has a card that is not "
                               "a {keyword, value, comment} mapping (line %d)", name,
                               bfs_yaml_line(y, item));
                return -EINVAL;
            }
        }
    }
    return 0;
}

/* Write n bytes of buf to fd at its end: 0 or negative errno. */
static int write_all(int fd, const char *buf, size_t n)
{
    for (size_t o = 0; o < n;) {
        ssize_t w = write(fd, buf + o, n - o);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        o += (size_t)w;
    }
    return 0;
}

/* Write len bytes of in from off to out at its end: in the kernel where it
 * can (copy_file_range), else through a buffer. */
static int copy_range(int in, int out, off_t off, off_t len)
{
    off_t end = off + len;
    while (off < end) {
        ssize_t n = copy_file_range(in, &off, out, NULL, (size_t)(end - off), 0);
        if (n > 0)
            continue;
        if (n == 0)
            return -EIO; /* the file ended before its last HDU did */
        if (errno == EINTR)
            continue;
        if (errno != EXDEV && errno != ENOSYS && errno != EOPNOTSUPP && errno != EINVAL)
            return -errno;
        char buf[1 << 16];
        while (off < end) {
            size_t want = end - off < (off_t)sizeof buf ? (size_t)(end - off) : sizeof buf;
            ssize_t r = pread(in, buf, want, off);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                return r < 0 ? -errno : -EIO;
            int rc = write_all(out, buf, (size_t)r);
            if (rc < 0)
                return rc;
            off += r;
        }
    }
    return 0;
}

/* Copy src to dst (created or truncated, mode 0600 until the caller sets
 * the final one). */
static int copy_file(const char *src, const char *dst, char **errmsg)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        int e = errno;
        bfs_set_errmsg(errmsg, "cannot open %s: %s", src, strerror(e));
        return -e;
    }
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) {
        int e = errno;
        close(in);
        bfs_set_errmsg(errmsg, "cannot create %s: %s", dst, strerror(e));
        return -e;
    }
    struct stat sb;
    int rc = fstat(in, &sb) < 0 ? -errno : copy_range(in, out, 0, sb.st_size);
    close(in);
    if (close(out) < 0 && !rc)
        rc = -errno;
    if (rc) {
        bfs_set_errmsg(errmsg, "cannot copy %s to %s: %s", src, dst, strerror(-rc));
        unlink(dst);
    }
    return rc;
}

/* fsync path (a file, or a directory when dir). */
static int sync_path(const char *path, bool dir)
{
    int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_WRONLY) | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    if (close(fd) < 0 && !rc)
        rc = -errno;
    return rc;
}

/* Normalize "R22_S00" to "R22S00" into out. */
static void normalize_sensor(const char *in, char *out, size_t size)
{
    if (strlen(in) == 7 && in[3] == '_')
        snprintf(out, size, "%.3s%s", in, in + 4);
    else
        snprintf(out, size, "%s", in);
}

/* The HDU (1 = primary) that the document's block name is merged into for
 * sensor, given the file's EXTNAMEs (extname[hdu - 1]); 0 for a block of
 * another sensor (*kind B_OTHER) or of an EXTNAME the file lacks (*ext
 * names it). */
static int block_hdu(const char *name, const char *sensor, char (*extname)[72], int n_hdus,
                     enum block_kind *kind, const char **ext)
{
    *kind = classify(name, sensor, ext);
    if (*kind == B_OTHER)
        return 0;
    if (*kind != B_EXT)
        return 1;
    for (int hdu = 1; hdu <= n_hdus; hdu++)
        if (!strcmp(extname[hdu - 1], *ext))
            return hdu;
    return 0;
}

/* The one sensor the document's blocks name (`RxxSyy_...`, `PRIMARY_RxxSyy`)
 * into out (7 bytes); false when they name none or more than one. */
static bool document_sensor(const bfs_yaml *y, char *out)
{
    const bfs_yaml_node *root = bfs_yaml_root(y);
    out[0] = '\0';
    for (size_t i = 0; i < bfs_yaml_len(y, root); i++) {
        const char *name = bfs_yaml_key(y, root, i), *s = NULL;
        const char *us = strchr(name, '_');
        if (us && sensor_like(name, (size_t)(us - name)))
            s = name;
        else if (!strncmp(name, "PRIMARY_", 8) && sensor_like(name + 8, strlen(name + 8)))
            s = name + 8;
        if (!s)
            continue;
        if (out[0] && strncmp(out, s, 6))
            return false;
        snprintf(out, 7, "%.6s", s);
    }
    return out[0] != '\0';
}

/* Run the blocks of the document over the open copy. */
static int merge_blocks(struct merge *m, const char *sensor)
{
    const bfs_yaml *y = m->y;
    const bfs_yaml_node *root = bfs_yaml_root(y);
    size_t nb = bfs_yaml_len(y, root);
    int rc = 0;
    /* PRIMARY first, then the sensor's primary, then the rest in order */
    for (int pass = 0; pass < 3 && !rc; pass++) {
        for (size_t i = 0; i < nb && !rc; i++) {
            const char *name = bfs_yaml_key(y, root, i), *ext;
            const bfs_yaml_node *list = bfs_yaml_item(y, root, i);
            enum block_kind k;
            int hdu = block_hdu(name, sensor, m->extname, m->n_hdus, &k, &ext);
            if ((pass == 0) != (k == B_PRIMARY) || (pass == 1) != (k == B_SENSOR_PRIMARY))
                continue;
            if (k == B_OTHER) {
                m->r->blocks_other++;
                continue;
            }
            if (hdu == 0) {
                m->r->blocks_without_hdu++;
                if (!m->r->first_missing[0])
                    snprintf(m->r->first_missing, sizeof m->r->first_missing, "%s", name);
                bfs_info(TAG, "%s: no HDU with EXTNAME %s for the Header Service's %s", m->path, ext, name);
                continue;
            }
            rc = merge_block(m, hdu, list);
        }
    }
    return rc;
}

/* ---- the working copy, with room in the headers the document changes ----
 *
 * cfitsio adds a card to a header in place while the header has blank
 * records before its END; without them it inserts a 2880-byte block and
 * shifts every byte after it.  So the copy is made with that room: each
 * header the document adds cards to gets as many blank records before END
 * as it may add (an estimate: too few and cfitsio shifts after all, too
 * many and blank records stay before END; either is valid FITS).  One pass
 * over the bytes instead of a copy and then a shift of the data. */

/* The original's headers: EXTNAMEs and cards per HDU (bfs_fits_each_header). */
struct orig {
    int n;
    char (*extname)[72];
    bfs_fits_card **cards;
    size_t *ncards;
};

static int orig_cb(void *ctx, int hdu, const bfs_fits_card *cards, size_t n)
{
    struct orig *o = ctx;
    if (hdu != o->n + 1 || hdu > 10000)
        return -EINVAL;
    char (*en)[72] = realloc(o->extname, (size_t)hdu * sizeof *en);
    if (en)
        o->extname = en;
    bfs_fits_card **cs = realloc(o->cards, (size_t)hdu * sizeof *cs);
    if (cs)
        o->cards = cs;
    size_t *ns = realloc(o->ncards, (size_t)hdu * sizeof *ns);
    if (ns)
        o->ncards = ns;
    bfs_fits_card *copy = n ? malloc(n * sizeof *copy) : NULL;
    if (!en || !cs || !ns || (n && !copy)) {
        free(copy);
        return -ENOMEM;
    }
    if (n)
        memcpy(copy, cards, n * sizeof *copy);
    const bfs_fits_card *x = bfs_fits_find(cards, n, "EXTNAME");
    snprintf(o->extname[hdu - 1], sizeof o->extname[hdu - 1], "%s", x ? x->value : "");
    o->cards[hdu - 1] = copy;
    o->ncards[hdu - 1] = n;
    o->n = hdu;
    return 0;
}

static void orig_free(struct orig *o)
{
    for (int i = 0; i < o->n; i++)
        free(o->cards[i]);
    free(o->cards);
    free(o->ncards);
    free(o->extname);
}

/* How many records the document's cards may add to each HDU (room[hdu - 1],
 * n_hdus entries, zeroed by the caller): a card whose keyword the header
 * lacks, or a commentary card, takes one record per 64 characters of its
 * text (long strings go on in CONTINUE records); a header that gains any
 * also gets two for CHECKSUM and DATASUM. */
static void count_room(const bfs_yaml *y, const char *sensor, const struct orig *o, int *room)
{
    const bfs_yaml_node *root = bfs_yaml_root(y);
    for (size_t i = 0; i < bfs_yaml_len(y, root); i++) {
        const char *ext;
        enum block_kind k;
        int hdu = block_hdu(bfs_yaml_key(y, root, i), sensor, o->extname, o->n, &k, &ext);
        const bfs_yaml_node *list = bfs_yaml_item(y, root, i);
        for (size_t j = 0; hdu && j < bfs_yaml_len(y, list); j++) {
            const bfs_yaml_node *item = bfs_yaml_item(y, list, j);
            const bfs_yaml_node *kn = bfs_yaml_get(y, item, "keyword");
            const bfs_yaml_node *vn = bfs_yaml_get(y, item, "value");
            const bfs_yaml_node *cn = bfs_yaml_get(y, item, "comment");
            char up[72];
            if (entry_key(y, kn, up) ||
                (!bfs_fits_is_commentary(up) && bfs_fits_find(o->cards[hdu - 1], o->ncards[hdu - 1], up)))
                continue; /* not merged, or replaces a card in place */
            const char *v = vn && !bfs_yaml_is_null(y, vn) ? bfs_yaml_scalar(y, vn) : NULL;
            const char *c = cn && !bfs_yaml_is_null(y, cn) ? bfs_yaml_scalar(y, cn) : NULL;
            size_t text = strlen(up) + (v ? strlen(v) : 0) + (c ? strlen(c) : 0);
            room[hdu - 1] += 1 + (int)(text / 64);
        }
    }
    for (int h = 0; h < o->n; h++)
        if (room[h])
            room[h] += 2;
}

/* Write HDU e's header from in to out with extra blank records before its
 * END, padded to whole 2880-byte blocks. */
static int copy_header_with_room(int in, int out, const bfs_fits_extent *e, int extra)
{
    size_t hlen = (size_t)(e->data - e->head);
    if (hlen == 0 || hlen % 2880 || hlen > (64u << 20))
        return -EBADMSG;
    size_t nrec = hlen / 80, endrec = nrec;
    /* the END record ends the header's last block: the new header ends
     * with the block that holds END's new place */
    size_t olen = hlen + (size_t)extra * 80 + 2880;
    char *h = malloc(olen);
    if (!h)
        return -ENOMEM;
    int rc = pread(in, h, hlen, e->head) == (ssize_t)hlen ? 0 : -EIO;
    for (size_t r = 0; !rc && r < nrec && endrec == nrec; r++) {
        const char *rec = h + r * 80;
        size_t blank = 3;
        while (blank < 80 && rec[blank] == ' ')
            blank++;
        if (!memcmp(rec, "END", 3) && blank == 80)
            endrec = r;
    }
    if (!rc && endrec == nrec)
        rc = -EBADMSG;
    olen = (endrec + (size_t)extra + 1 + 35) / 36 * 2880;
    if (!rc) {
        /* END moves down by extra records; blanks before and after it */
        memset(h + endrec * 80, ' ', olen - endrec * 80);
        memcpy(h + (endrec + (size_t)extra) * 80, "END", 3);
        rc = write_all(out, h, olen);
    }
    free(h);
    return rc;
}

/* Copy src to dst (created or truncated, mode 0600) with room[hdu - 1]
 * blank records added before each header's END; the data units and any
 * bytes after the last one as they are.  -errno; dst is removed then. */
static int copy_with_room(const char *src, const char *dst, const bfs_fits_extent *ext, int n,
                          const int *room)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -errno;
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) {
        int e = errno;
        close(in);
        return -e;
    }
    struct stat sb;
    int rc = fstat(in, &sb) < 0 ? -errno : 0;
    off_t at = 0;
    for (int h = 0; h < n && !rc; h++) {
        if (ext[h].head != at || ext[h].data < ext[h].head || ext[h].end < ext[h].data)
            rc = -EBADMSG; /* not one HDU after another from the file's start */
        else if (room[h] > 0 && (rc = copy_header_with_room(in, out, &ext[h], room[h])) == 0)
            rc = copy_range(in, out, ext[h].data, ext[h].end - ext[h].data);
        else if (room[h] <= 0)
            rc = copy_range(in, out, ext[h].head, ext[h].end - ext[h].head);
        at = ext[h].end;
    }
    if (!rc && sb.st_size > at)
        rc = copy_range(in, out, at, sb.st_size - at);
    close(in);
    if (close(out) < 0 && !rc)
        rc = -errno;
    if (rc)
        unlink(dst);
    return rc;
}

/* The working copy of the plain FITS file path at copy, with room for
 * what the document y adds (see above); a plain copy when the headers
 * cannot be read for that. */
static int make_working_copy(const char *path, const char *copy, const bfs_yaml *y, const char *sensor,
                             char **errmsg)
{
    struct orig o = {0};
    bfs_fits_extent *ext = NULL;
    int n = 0, *room = NULL;
    char *msg = NULL;
    int rc = bfs_fits_each_header(path, orig_cb, &o, &msg);
    if (!rc)
        rc = bfs_fits_extents(path, &ext, &n, &msg);
    if (!rc && n != o.n)
        rc = -EBADMSG;
    if (!rc && !(room = calloc((size_t)n, sizeof *room)))
        rc = -ENOMEM;
    if (!rc) {
        count_room(y, sensor, &o, room);
        rc = copy_with_room(path, copy, ext, n, room);
    }
    if (rc && rc != -ENOMEM) {
        bfs_debug(TAG, "%s: no room made in its headers (%s): a plain copy", path, msg ? msg : strerror(-rc));
        rc = copy_file(path, copy, errmsg);
    }
    free(msg);
    free(room);
    free(ext);
    orig_free(&o);
    return rc;
}

int bfs_hs_merge(const char *path, const char *text, size_t len, const char *sensor,
                 bfs_hs_report *report, char **errmsg)
{
    bfs_hs_report scratch;
    bfs_hs_report *r = report ? report : &scratch;
    memset(r, 0, sizeof *r);
    if (errmsg)
        *errmsg = NULL;
    if (!path || !text) {
        bfs_set_errmsg(errmsg, "no file or no Header Service document to merge");
        return -EINVAL;
    }
    char sens[32] = "";
    if (sensor) {
        normalize_sensor(sensor, sens, sizeof sens);
        if (!sens[0] || strlen(sensor) >= sizeof sens || !printable(sens)) {
            bfs_set_errmsg(errmsg, "'%s' is not a sensor name like R22S00", sensor);
            return -EINVAL;
        }
    }

    bfs_yaml *y = NULL;
    int rc = bfs_yaml_load_mem(text, len, "the Header Service document", &y, errmsg);
    if (rc < 0)
        return rc;
    if ((rc = check_shape(y, errmsg)) < 0) {
        bfs_yaml_free(y);
        return rc;
    }

    struct stat sb;
    char *copy = bfs_asprintf("%s.merge", path);
    struct merge m = {.path = path, .y = y, .r = r};
    if (!copy) {
        rc = -ENOMEM;
        goto out;
    }
    if (stat(path, &sb) < 0) {
        rc = -errno;
        bfs_set_errmsg(errmsg, "cannot merge into %s: %s", path, strerror(-rc));
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        rc = -EINVAL;
        bfs_set_errmsg(errmsg, "cannot merge into %s: not a regular file", path);
        goto out;
    }

    if (!sensor && document_sensor(y, sens)) {
        /* a file that names no sensor (the 2019 LATISS raws have no RAFTBAY or
         * CCDSLOT) takes the document's only one */
        r->sensor_from_document = true;
        sensor = sens;
    }

    /* the working copy, plain FITS */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    unsigned char magic[2] = {0, 0};
    bool gz = fd >= 0 && read(fd, magic, 2) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    if (fd >= 0)
        close(fd);
    if (gz) {
        /* inflated first, so that the copy gets the room a plain file gets
         * (merging into it gives the same bytes as into the plain file) */
        char *plain = bfs_asprintf("%s.plain", path);
        rc = plain ? bfs_fits_gunzip(path, plain, errmsg) : -ENOMEM;
        if (!rc)
            rc = make_working_copy(plain, copy, y, sensor ? sens : NULL, errmsg);
        if (plain)
            unlink(plain);
        free(plain);
    } else {
        rc = make_working_copy(path, copy, y, sensor ? sens : NULL, errmsg);
    }
    if (rc < 0)
        goto out;
    char *fmsg = NULL;
    if ((rc = bfs_fits_open_update(copy, &m.f, &fmsg)) < 0) {
        /* name the file merged into, not the copy */
        bfs_set_errmsg(errmsg, "cannot merge into %s: %s", path, fmsg ? fmsg : strerror(-rc));
        free(fmsg);
        goto out;
    }
    if ((rc = bfs_fits_hdu_count(m.f)) < 0)
        goto fits_failed;
    m.n_hdus = rc;
    rc = 0;
    m.extname = calloc((size_t)m.n_hdus, sizeof *m.extname);
    m.changed = calloc((size_t)m.n_hdus, sizeof *m.changed);
    if (!m.extname || !m.changed) {
        rc = -ENOMEM;
        goto out;
    }
    for (int h = 1; h <= m.n_hdus && !rc; h++)
        rc = bfs_fits_select(m.f, h, m.extname[h - 1], sizeof m.extname[h - 1]);
    snprintf(r->sensor, sizeof r->sensor, "%.7s", sensor ? sens : ""); /* "R22_S11" */
    if (!rc)
        rc = merge_blocks(&m, sensor ? sens : NULL);
    for (int h = 1; h <= m.n_hdus && !rc; h++) {
        if (!m.changed[h - 1])
            continue;
        r->hdus_changed++;
        if (!(rc = bfs_fits_select(m.f, h, NULL, 0))) {
            bfs_fits_checksum(m.f);
            rc = bfs_fits_error(m.f);
        }
    }
fits_failed:;
    int crc = bfs_fits_close(m.f);
    m.f = NULL;
    if (!rc)
        rc = crc;
    if (rc < 0) {
        if (errmsg && !*errmsg)
            bfs_set_errmsg(errmsg, "merging the Header Service document into %s failed: %s", path,
                           strerror(-rc));
        goto out;
    }
    r->decompressed = gz;
    if (!r->hdus_changed && !gz) {
        unlink(copy); /* nothing to write: path stays as it was, byte for byte */
        goto out;
    }

    /* replace path by the copy: data first, then the name, then the name's
     * directory entry */
    if (chmod(copy, sb.st_mode & 07777) < 0 || (rc = sync_path(copy, false)) < 0 ||
        rename(copy, path) < 0) {
        rc = rc ? rc : -errno;
        bfs_set_errmsg(errmsg, "cannot replace %s by its merged copy: %s", path, strerror(-rc));
        goto out;
    }
    r->rewritten = true;
    char *d = strdup(path);
    if (d) {
        int src = sync_path(dirname(d), true);
        if (src < 0)
            bfs_warn(TAG, "fsync of the directory of %s: %s", path, strerror(-src));
        free(d);
    }
    if (gz)
        bfs_info(TAG, "%s was gzip-wrapped: it is now plain FITS", path);

out:
    if (m.f)
        bfs_fits_close(m.f);
    if (rc < 0 && copy) {
        unlink(copy);
        r->decompressed = false;
        r->rewritten = false;
    }
    free(m.extname);
    free(m.changed);
    free(copy);
    bfs_yaml_free(y);
    return rc;
}

void bfs_hs_report_format(const bfs_hs_report *r, char *buf, size_t size)
{
    if (!size)
        return;
    size_t o = 0;
#define PUT(...)                                                                       \
    do {                                                                               \
        if (o < size) {                                                                \
            int k_ = snprintf(buf + o, size - o, __VA_ARGS__);                          \
            o = k_ < 0 ? size : o + (size_t)k_;                                        \
        }                                                                              \
    } while (0)
    PUT("%d added, %d replaced (%d conflict%s", r->added, r->replaced, r->conflicts,
        r->conflicts == 1 ? "" : "s");
    for (int i = 0; i < r->n_listed; i++) {
        const bfs_hs_conflict *c = &r->conflict[i];
        PUT("%s %s in HDU %d%s%s%s %s -> %s", i ? "," : ":", c->keyword, c->hdu,
            c->extname[0] ? " (" : "", c->extname, c->extname[0] ? ")" : "",
            c->old_value[0] ? c->old_value : "undefined", c->new_value[0] ? c->new_value : "undefined");
    }
    if (r->conflicts > r->n_listed)
        PUT(", ...");
    PUT("), %d unchanged, %d undefined, %d commentary, %d structural skipped, %d invalid; "
        "%d blocks merged, %d without an HDU%s%s%s, %d of other sensors%s%s%s; %d HDUs changed%s%s",
        r->unchanged, r->undefined, r->commentary, r->skipped_structural, r->invalid,
        r->blocks_merged, r->blocks_without_hdu, r->first_missing[0] ? " (first: " : "",
        r->first_missing, r->first_missing[0] ? ")" : "", r->blocks_other,
        r->sensor_from_document ? " (sensor " : "", r->sensor_from_document ? r->sensor : "",
        r->sensor_from_document ? " from the document)" : "", r->hdus_changed,
        r->decompressed ? "; gzip-wrapped input decompressed" : "",
        r->rewritten ? "" : "; file not rewritten");
#undef PUT
}
