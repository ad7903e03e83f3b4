/*
 * template.c - daf_butler file templates (template.h).
 *
 * The parse follows Python's string.Formatter: literal text with "{{" and
 * "}}" escapes, then a field "{name[!conversion][:spec]}".  The formatting
 * follows FileTemplate.format in daf_butler's datastore/file_templates.py,
 * rule by rule (template.h lists them).  A spec left after removing '?' and
 * '/' is applied to integer values the way Python's format() would for the
 * forms templates use ("08d", "05"); other specs are ignored.
 */
#include "template.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "strutil.h"

const char bfs_template_default[] =
    "{run:/}/{datasetType}.{component:?}/{tract:?}/{patch:?}/"
    "{day_obs|visit.day_obs|exposure.day_obs:?}/{band:?}/{subfilter:?}/{physical_filter:?}/"
    "{visit:?}/{exposure.obs_id|group:?}/{datasetType}_{component:?}_{instrument:?}_{tract:?}_"
    "{patch:?}_{band:?}_{physical_filter:?}_{visit:?}_{exposure.obs_id|group:?}_"
    "{detector.full_name:?}_{skymap:?}_{skypix:?}_{ssp_hypothesis_table:?}_"
    "{ssp_hypothesis_bundle:?}_{ssp_balanced_index:?}_{run}";

int bfs_template_for(const char *repo_dir, const char *dataset_type, const char *storage_class,
                     char **out, char **errmsg)
{
    char *path = bfs_asprintf("%s/butler.yaml", repo_dir);
    if (!path)
        return -ENOMEM;
    bfs_yaml *y = NULL;
    const char *found = NULL;
    if (bfs_yaml_load_file(path, &y, NULL) == 0) {
        const bfs_yaml_node *t = bfs_yaml_get(y, bfs_yaml_root(y), "datastore.templates");
        const char *keys[] = {dataset_type, storage_class, "default"};
        for (int i = 0; t && bfs_yaml_is_map(y, t) && i < 3 && !found; i++) {
            for (size_t k = 0; keys[i] && k < bfs_yaml_len(y, t) && !found; k++) {
                const char *key = bfs_yaml_key(y, t, k);
                if (key && !strcmp(key, keys[i]))
                    found = bfs_yaml_scalar(y, bfs_yaml_item(y, t, k));
            }
        }
    }
    free(path);
    *out = strdup(found && *found ? found : bfs_template_default);
    bfs_yaml_free(y);
    (void)errmsg;
    return *out ? 0 : -ENOMEM;
}

struct buf {
    char *s;
    size_t len, cap;
    bool oom;
};

static void put(struct buf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static const char *lookup(const bfs_template_value *v, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(v[i].name) == len && !strncmp(v[i].name, name, len))
            return v[i].value;
    return NULL;
}

/* Whether name's dimension (the part before '.') has a value. */
static bool known(const bfs_template_value *v, size_t n, const char *name, size_t len)
{
    const char *dot = memchr(name, '.', len);
    return lookup(v, n, name, dot ? (size_t)(dot - name) : len) != NULL;
}

/* Append value as daf_butler does: special characters -> '_', '/' -> '_'
 * unless keep_slash, an integer spec ("08d", "5") applied to an integer. */
static void put_value(struct buf *b, const char *value, const char *spec, bool keep_slash)
{
    int64_t iv;
    if (*spec && bfs_parse_i64(value, &iv)) {
        /* "08d", "5d", "05": a width, zero-padded when it starts with 0 */
        size_t sl = strlen(spec), digits = strspn(spec, "0123456789");
        if (digits && digits < 4 && (digits == sl || (digits + 1 == sl && spec[sl - 1] == 'd'))) {
            char out[64];
            int width = atoi(spec);
            snprintf(out, sizeof out, spec[0] == '0' ? "%0*lld" : "%*lld", width, (long long)iv);
            put(b, out, strlen(out));
            return;
        }
    }
    size_t limit = SIZE_MAX;
    if (spec[0] == '.' && spec[1] >= '0' && spec[1] <= '9')
        limit = (size_t)atoi(spec + 1); /* ".4s": the first 4 characters */
    for (const char *p = value; *p && limit; p++, limit--) {
        char c = *p;
        if (strchr(" <>:\"\\|?*", c) || (c == '/' && !keep_slash))
            c = '_';
        put(b, &c, 1);
    }
}

int bfs_template_format(const char *tmpl, const char *dataset_type, const char *run,
                        const bfs_template_value *values, size_t n, char **out, char **errmsg)
{
    /* every value the template can name: the caller's, then type and run */
    bfs_template_value *all = malloc((n + 2) * sizeof *all);
    if (!all)
        return -ENOMEM;
    memcpy(all, values, n * sizeof *all);
    all[n] = (bfs_template_value){"datasetType", dataset_type};
    all[n + 1] = (bfs_template_value){"run", run};
    size_t na = n + 2;
    struct buf b = {0}, lit = {0};
    put(&b, "", 0);
    int ret = 0;
    const char *p = tmpl;
    while (*p && ret == 0) {
        /* the literal up to the next field */
        lit.len = 0;
        put(&lit, "", 0);
        while (*p && !(*p == '{' && p[1] != '{')) {
            if ((*p == '{' && p[1] == '{') || (*p == '}' && p[1] == '}'))
                p++;
            put(&lit, p, 1);
            p++;
        }
        if (!*p) {
            put(&b, lit.s, lit.len);
            break;
        }
        const char *end = strchr(p, '}');
        if (!end) {
            bfs_set_errmsg(errmsg, "file template '%s' has an unclosed '{'", tmpl);
            ret = -EINVAL;
            break;
        }
        const char *field = p + 1;
        size_t flen = (size_t)(end - field);
        p = end + 1;
        const char *colon = memchr(field, ':', flen);
        size_t nlen = colon ? (size_t)(colon - field) : flen;
        const char *bang = memchr(field, '!', nlen);
        if (bang)
            nlen = (size_t)(bang - field); /* a conversion (!s, !r) changes nothing for text */
        char spec[64] = "";
        if (colon)
            snprintf(spec, sizeof spec, "%.*s", (int)(flen - (size_t)(colon - field) - 1), colon + 1);
        bool optional = strchr(spec, '?') != NULL, keep_slash = strchr(spec, '/') != NULL;
        char clean[64];
        size_t k = 0;
        for (const char *s = spec; *s && k + 1 < sizeof clean; s++)
            if (*s != '?' && *s != '/')
                clean[k++] = *s;
        clean[k] = 0;
        /* "a|b.c|d": the first alternative whose dimension is known */
        const char *name = field;
        size_t len = nlen;
        if (memchr(field, '|', nlen)) {
            const char *alt = field, *stop = field + nlen;
            bool chosen = false;
            while (alt < stop && !chosen) {
                const char *bar = memchr(alt, '|', (size_t)(stop - alt));
                size_t alen = bar ? (size_t)(bar - alt) : (size_t)(stop - alt);
                if (known(all, na, alt, alen)) {
                    name = alt;
                    len = alen;
                    chosen = true;
                }
                alt = bar ? bar + 1 : stop;
            }
            if (!chosen)
                len = (size_t)((const char *)memchr(field, '|', nlen) - field);
        }
        const char *value = lookup(all, na, name, len);
        if (!value && !optional) {
            bfs_set_errmsg(errmsg, "file template '%s' needs '%.*s', which this dataset does not have",
                           tmpl, (int)len, name);
            ret = -EINVAL;
            break;
        }
        if (!value) {
            if (strchr(lit.s, '/'))
                put(&b, lit.s, lit.len);
            continue;
        }
        put(&b, lit.s, lit.len);
        put_value(&b, value, clean, keep_slash);
    }
    free(all);
    free(lit.s);
    if (ret == 0 && b.oom)
        ret = -ENOMEM;
    if (ret < 0) {
        free(b.s);
        return ret;
    }
    /* the last component: '.' -> '_', '#' -> "HASH"; then normalise */
    char *slash = strrchr(b.s, '/');
    struct buf o = {0};
    put(&o, "", 0);
    for (char *s = b.s; s < (slash ? slash + 1 : b.s); s++)
        put(&o, s, 1);
    for (char *s = slash ? slash + 1 : b.s; *s; s++) {
        if (*s == '.')
            put(&o, "_", 1);
        else if (*s == '#')
            put(&o, "HASH", 4);
        else
            put(&o, s, 1);
    }
    free(b.s);
    if (o.oom)
        return -ENOMEM;
    struct buf norm = {0};
    put(&norm, "", 0);
    for (char *save = NULL, *c = strtok_r(o.s, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (!strcmp(c, "."))
            continue;
        if (!strcmp(c, "..")) {
            ret = -EINVAL; /* values never hold '/', so only a template can do this */
            bfs_set_errmsg(errmsg, "file template '%s' gives a path with '..'", tmpl);
            break;
        }
        if (norm.len)
            put(&norm, "/", 1);
        put(&norm, c, strlen(c));
    }
    free(o.s);
    if (ret == 0 && (norm.oom || !norm.len))
        ret = norm.oom ? -ENOMEM : -EINVAL;
    if (ret == 0 && norm.len >= PATH_MAX - 64)
        ret = -ENAMETOOLONG;
    if (ret < 0) {
        free(norm.s);
        return ret;
    }
    *out = norm.s;
    return 0;
}
