/*
 * names.c - see names.h.  No I/O and no libfuse: unit-tested directly.
 */
#include "names.h"

#include "strutil.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const char *const compression_suffixes[] = {".gz", ".fz", ".bz2", ".xz", ".zst", ".Z", NULL};

void bfs_names_extension(const char *location, char *out, size_t outsz)
{
    const char *base = strrchr(location, '/');
    base = base ? base + 1 : location;
    const char *dot = strrchr(base, '.');
    out[0] = '\0';
    if (!dot || dot == base)
        return;
    for (const char *const *c = compression_suffixes; *c; c++) {
        if (!strcmp(dot, *c)) {
            /* include the suffix before it when it looks like a type (".fits") */
            const char *prev = dot - 1;
            while (prev > base && *prev != '.')
                prev--;
            if (prev > base && dot - prev <= 6)
                dot = prev;
            break;
        }
    }
    if (strlen(dot) > 16) /* not an extension, just a dotted name */
        return;
    snprintf(out, outsz, "%s", dot);
}

int bfs_names_dim_entry(const char *dim, const char *value, char *out, size_t outsz)
{
    char esc[BFS_NAME_MAX];
    int n = bfs_name_escape(value, esc, sizeof esc);
    if (n < 0)
        return n;
    int w = snprintf(out, outsz, "%s=%s", dim, esc);
    return w < 0 || (size_t)w >= outsz ? -ENAMETOOLONG : w;
}

/* Whether esc is what bfs_name_escape makes of value, but for the case of
 * hex digits: "%30" is not a spelling of "0". */
static bool escape_is_canonical(const char *esc, const char *value)
{
    char want[BFS_NAME_MAX];
    if (bfs_name_escape(value, want, sizeof want) < 0)
        return false;
    size_t i = 0;
    for (; esc[i] && want[i]; i++) {
        bool hex = (i >= 1 && want[i - 1] == '%') || (i >= 2 && want[i - 2] == '%');
        if (esc[i] != want[i] && !(hex && toupper((unsigned char)esc[i]) == want[i]))
            return false;
    }
    return esc[i] == want[i];
}

int bfs_names_unescape(const char *name, char *out, size_t outsz)
{
    int n = bfs_name_unescape(name, out, outsz);
    if (n >= 0 && !escape_is_canonical(name, out))
        return -EINVAL;
    return n;
}

int bfs_names_parse_dim(const char *name, char *dim_out, size_t dimsz, char *value_out, size_t valsz)
{
    const char *eq = strchr(name, '=');
    if (!eq || eq == name || (size_t)(eq - name) >= dimsz)
        return -EINVAL;
    memcpy(dim_out, name, (size_t)(eq - name));
    dim_out[eq - name] = '\0';
    int n = bfs_names_unescape(eq + 1, value_out, valsz);
    return n < 0 ? n : 0;
}

bool bfs_names_int_canonical(const char *value)
{
    int64_t v;
    char buf[32];
    if (!bfs_parse_i64(value, &v))
        return true; /* not an integer: an alternate key, perhaps */
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return strcmp(buf, value) == 0;
}

static void format_bound(int64_t tai_ns, bool is_end, char *buf, size_t bufsz)
{
    /* daf_butler stores open ends as values near the epoch and in 2100. */
    const int64_t day_ns = 86400LL * 1000000000LL;
    if ((!is_end && tai_ns < day_ns) || (is_end && tai_ns >= 4102444800000000000LL))
        snprintf(buf, bufsz, "unbounded");
    else
        bfs_tai_ns_format(tai_ns, buf, bufsz);
}

int bfs_names_file(const bfs_dataset_type *dt, const bfs_dataset_file *f, char *out, size_t outsz)
{
    char raw[1024], ext[32];
    size_t n = 0;
    int w = snprintf(raw, sizeof raw, "%s%s%s", dt->name, f->component ? "." : "",
                     f->component ? f->component : "");
    if (w < 0 || (size_t)w >= sizeof raw)
        return -ENAMETOOLONG;
    n = (size_t)w;
    for (int i = 0; i < dt->ndims; i++) {
        w = snprintf(raw + n, sizeof raw - n, "_%s", f->values[i] ? f->values[i] : "");
        if (w < 0 || (size_t)w >= sizeof raw - n)
            return -ENAMETOOLONG;
        n += (size_t)w;
    }
    if (f->has_timespan) {
        char b[32], e[32];
        format_bound(f->timespan_begin, false, b, sizeof b);
        format_bound(f->timespan_end, true, e, sizeof e);
        w = snprintf(raw + n, sizeof raw - n, "_valid-%s-%s", b, e);
        if (w < 0 || (size_t)w >= sizeof raw - n)
            return -ENAMETOOLONG;
        n += (size_t)w;
    }
    bfs_names_extension(f->path, ext, sizeof ext);
    w = snprintf(raw + n, sizeof raw - n, "%s", ext);
    if (w < 0 || (size_t)w >= sizeof raw - n)
        return -ENAMETOOLONG;
    return bfs_name_escape(raw, out, outsz);
}

int bfs_names_disambiguate(char *name, size_t namesz, const char *id, const char *location)
{
    char ext[32], esc_ext[96];
    bfs_names_extension(location, ext, sizeof ext);
    if (bfs_name_escape(ext[0] ? ext : "x", esc_ext, sizeof esc_ext) < 0)
        return -ENAMETOOLONG;
    if (!ext[0])
        esc_ext[0] = '\0';
    size_t len = strlen(name), elen = strlen(esc_ext);
    if (elen > len || strcmp(name + len - elen, esc_ext) != 0)
        elen = 0;
    size_t stem = len - elen;
    if (stem + 9 + elen + 1 > namesz)
        return -ENAMETOOLONG;
    memmove(name + stem + 9, name + stem, elen + 1);
    name[stem] = '_';
    memcpy(name + stem + 1, id, 8);
    return 0;
}
