/*
 * dbauth.c - PostgreSQL registry URLs, the Butler's credential list
 * (~/.lsst/db-auth.yaml) and URLs with their passwords removed for logs.
 * See dbauth.h for the rules; they follow SQLAlchemy's URL syntax and
 * lsst.utils.db_auth's matching.
 *
 * One parser serves the registry URL and the credential list's patterns
 * (a pattern is a URL whose host and database may hold wildcards and whose
 * parts may be missing), so the two can never disagree on what a part is.
 */
#include "dbauth.h"

#include "config.h"
#include "strutil.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Every libpq keyword of a bfs_dburl, in the order bfs_dburl_params gives
 * them; query: a URL's query may give it (not dbname, user, password). */
static const struct {
    const char *key;
    size_t off;
    bool query;
} PARAMS[] = {
    {"host", offsetof(bfs_dburl, host), true},
    {"port", offsetof(bfs_dburl, port), true},
    {"dbname", offsetof(bfs_dburl, dbname), false},
    {"user", offsetof(bfs_dburl, user), false},
    {"password", offsetof(bfs_dburl, password), false},
    {"sslmode", offsetof(bfs_dburl, sslmode), true},
    {"sslrootcert", offsetof(bfs_dburl, sslrootcert), true},
    {"sslcert", offsetof(bfs_dburl, sslcert), true},
    {"sslkey", offsetof(bfs_dburl, sslkey), true},
    {"sslcrl", offsetof(bfs_dburl, sslcrl), true},
    {"connect_timeout", offsetof(bfs_dburl, connect_timeout), true},
    {"application_name", offsetof(bfs_dburl, application_name), true},
    {"target_session_attrs", offsetof(bfs_dburl, target_session_attrs), true},
    {"service", offsetof(bfs_dburl, service), true},
};
#define NPARAMS (sizeof PARAMS / sizeof PARAMS[0])

#define FIELD(u, off) ((char **)((char *)(u) + (off)))

void bfs_dburl_free(bfs_dburl *u)
{
    if (!u)
        return;
    if (u->password) {
        /* do not leave the secret in freed memory */
        volatile char *p = u->password;
        while (*p)
            *p++ = 0;
    }
    free(u->dialect);
    for (size_t i = 0; i < sizeof PARAMS / sizeof PARAMS[0]; i++)
        free(*FIELD(u, PARAMS[i].off));
    free(u->password_source);
    memset(u, 0, sizeof *u);
}

/* ---- the log-safe form ----------------------------------------------------- */

char *bfs_dburl_redact(const char *url)
{
    if (!url)
        return NULL;
    size_t n = strlen(url);
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    const char *sep = strstr(url, "://");
    const char *auth = sep ? sep + 3 : url;
    size_t auth_len = strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *p = auth; p < auth + auth_len; p++)
        if (*p == '@')
            at = p;
    size_t o = 0;
    const char *p = url;
    if (at) {
        const char *colon = memchr(auth, ':', (size_t)(at - auth));
        if (colon) {
            memcpy(out, url, (size_t)(colon - url));
            o = (size_t)(colon - url);
            p = at;
        }
    }
    /* copy the rest, dropping password=... pairs from a query */
    const char *q = strchr(p, '?');
    size_t head = q ? (size_t)(q - p) : strlen(p);
    memcpy(out + o, p, head);
    o += head;
    if (q) {
        const char *frag = strchr(q, '#');
        const char *end = frag ? frag : q + strlen(q);
        bool first = true;
        for (const char *s = q + 1; s < end;) {
            size_t len = strcspn(s, "&");
            if (s + len > end)
                len = (size_t)(end - s);
            bool secret = len >= 9 && strncasecmp(s, "password=", 9) == 0;
            secret = secret || (len == 8 && strncasecmp(s, "password", 8) == 0);
            if (!secret && len) {
                out[o++] = first ? '?' : '&';
                memcpy(out + o, s, len);
                o += len;
                first = false;
            }
            s += len;
            if (s < end)
                s++;
        }
        memcpy(out + o, end, strlen(end));
        o += strlen(end);
    }
    out[o] = '\0';
    return out;
}

/* ---- parsing ----------------------------------------------------------------- */

int bfs_dburl_is_postgresql(const char *url)
{
    if (!url || strncmp(url, "postgresql", 10) != 0)
        return 0;
    const char *p = url + 10;
    if (*p == '+') {
        p++;
        while (isalnum((unsigned char)*p) || *p == '_')
            p++;
    }
    return strncmp(p, "://", 3) == 0;
}

/* A percent-decoded copy of n bytes at s; NULL with *err set. */
static char *decode(const char *s, size_t n, int *err)
{
    char *out = malloc(n + 1);
    size_t len;
    if (!out) {
        *err = -ENOMEM;
        return NULL;
    }
    if (bfs_uri_decode(s, n, out, &len) < 0) {
        free(out);
        *err = -EINVAL;
        return NULL;
    }
    return out;
}

static char *dupn(const char *s, size_t n, int *err)
{
    char *out = strndup(s, n);
    if (!out)
        *err = -ENOMEM;
    return out;
}

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

/* Parse url into u.  pattern: a credential-list pattern (no query; every
 * part but the dialect may be missing; no check of the dialect).  shown is
 * the log-safe form for messages. */
static int parse(const char *url, bool pattern, bfs_dburl *u, const char *shown, char **errmsg)
{
    int err = 0;
    memset(u, 0, sizeof *u);
    const char *sep = strstr(url, "://");
    if (!sep || sep == url) {
        bfs_set_errmsg(errmsg, "'%s' is not a database URL (DIALECT://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE)",
                       shown);
        return -EINVAL;
    }
    for (const char *p = url; p < sep; p++) {
        if (!isalnum((unsigned char)*p) && *p != '+' && *p != '_') {
            bfs_set_errmsg(errmsg, "'%s' is not a database URL: bad character in its scheme", shown);
            return -EINVAL;
        }
    }
    size_t dlen = strcspn(url, "+");
    if (dlen > (size_t)(sep - url))
        dlen = (size_t)(sep - url);
    if (pattern && dlen < (size_t)(sep - url)) {
        bfs_set_errmsg(errmsg, "the pattern '%s' names a driver (%.*s): patterns name only the dialect",
                       shown, (int)(sep - url), url);
        return -EINVAL;
    }
    if (!(u->dialect = dupn(url, dlen, &err)))
        goto fail;
    const char *auth = sep + 3;
    size_t auth_len = strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *p = auth; p < auth + auth_len; p++)
        if (*p == '@')
            at = p;
    const char *hostpart = auth;
    if (at) {
        const char *colon = memchr(auth, ':', (size_t)(at - auth));
        const char *uend = colon ? colon : at;
        if (uend > auth && !(u->user = decode(auth, (size_t)(uend - auth), &err)))
            goto bad_escape;
        if (colon && !(u->password = decode(colon + 1, (size_t)(at - colon - 1), &err)))
            goto bad_escape;
        hostpart = at + 1;
    }
    const char *hend = auth + auth_len;
    const char *portsep = NULL;
    if (*hostpart == '[') {
        const char *close = memchr(hostpart, ']', (size_t)(hend - hostpart));
        if (!close) {
            bfs_set_errmsg(errmsg, "'%s' is not a database URL: '[' without ']' in its host", shown);
            err = -EINVAL;
            goto fail;
        }
        if (close > hostpart + 1 && !(u->host = dupn(hostpart + 1, (size_t)(close - hostpart - 1), &err)))
            goto fail;
        if (close + 1 < hend) {
            if (close[1] != ':') {
                bfs_set_errmsg(errmsg, "'%s' is not a database URL: junk after its IPv6 host", shown);
                err = -EINVAL;
                goto fail;
            }
            portsep = close + 1;
        }
    } else {
        portsep = memchr(hostpart, ':', (size_t)(hend - hostpart));
        const char *e = portsep ? portsep : hend;
        if (e > hostpart && !(u->host = dupn(hostpart, (size_t)(e - hostpart), &err)))
            goto fail;
    }
    if (portsep) {
        if (!(u->port = dupn(portsep + 1, (size_t)(hend - portsep - 1), &err)))
            goto fail;
        if (!all_digits(u->port) || strlen(u->port) > 5 || atoi(u->port) > 65535 || atoi(u->port) == 0) {
            bfs_set_errmsg(errmsg, "'%s' is not a database URL: its port '%s' is not a number from 1 to 65535",
                           shown, u->port);
            err = -EINVAL;
            goto fail;
        }
    }
    const char *rest = hend;
    if (*rest == '/') {
        rest++;
        size_t n = strcspn(rest, "?#");
        if (n && !(u->dbname = dupn(rest, n, &err)))
            goto fail;
        rest += n;
    }
    if (*rest == '#') {
        bfs_set_errmsg(errmsg, "'%s' is not a database URL: it has a fragment (#...)", shown);
        err = -EINVAL;
        goto fail;
    }
    if (*rest == '?') {
        if (pattern) {
            bfs_set_errmsg(errmsg, "the pattern '%s' has a query (?...), which patterns may not have", shown);
            err = -EINVAL;
            goto fail;
        }
        for (const char *s = rest + 1; *s;) {
            size_t len = strcspn(s, "&");
            const char *eq = memchr(s, '=', len);
            size_t klen = eq ? (size_t)(eq - s) : len;
            size_t i;
            for (i = 0; i < NPARAMS; i++)
                if (PARAMS[i].query && strlen(PARAMS[i].key) == klen && strncmp(PARAMS[i].key, s, klen) == 0)
                    break;
            if (len && (i == NPARAMS || !eq)) {
                if (klen == 8 && strncmp(s, "password", 8) == 0)
                    bfs_set_errmsg(errmsg, "'%s': a password may not be given in the query; "
                                   "put it in ~/.lsst/db-auth.yaml or ~/.pgpass", shown);
                else if (!eq)
                    bfs_set_errmsg(errmsg, "'%s': the query parameter '%.*s' has no value", shown,
                                   (int)klen, s);
                else
                    bfs_set_errmsg(errmsg, "'%s': unknown query parameter '%.*s' (known: host, port, "
                                   "sslmode, sslrootcert, sslcert, sslkey, sslcrl, connect_timeout, "
                                   "application_name, target_session_attrs, service)",
                                   shown, (int)klen, s);
                err = -EINVAL;
                goto fail;
            }
            if (len) {
                char **f = FIELD(u, PARAMS[i].off);
                if (*f) {
                    bfs_set_errmsg(errmsg, "'%s' gives %s twice (in the query%s)", shown,
                                   PARAMS[i].key,
                                   PARAMS[i].off == offsetof(bfs_dburl, host) ||
                                   PARAMS[i].off == offsetof(bfs_dburl, port) ? " and before it" : "");
                    err = -EINVAL;
                    goto fail;
                }
                if (!(*f = decode(eq + 1, len - klen - 1, &err)))
                    goto bad_escape;
                if (PARAMS[i].off == offsetof(bfs_dburl, port) && !all_digits(*f)) {
                    bfs_set_errmsg(errmsg, "'%s': its port '%s' is not a number", shown, *f);
                    err = -EINVAL;
                    goto fail;
                }
            }
            s += len;
            if (*s == '&')
                s++;
        }
    }
    return 0;

bad_escape:
    if (err == -EINVAL)
        bfs_set_errmsg(errmsg, "'%s' is not a database URL: a %%-escape in it decodes to a NUL byte", shown);
fail:
    if (err == -ENOMEM)
        bfs_set_errmsg(errmsg, "out of memory");
    bfs_dburl_free(u);
    return err;
}

/* *f = strdup(v) when *f is NULL and v is set. */
static int fill(char **f, const char *v)
{
    if (*f || !v || !*v)
        return 0;
    return (*f = strdup(v)) ? 0 : -ENOMEM;
}

int bfs_dburl_parse(const char *url, const bfs_dburl_config *cfg, bfs_dburl *out, char **errmsg)
{
    memset(out, 0, sizeof *out);
    if (!url) {
        bfs_set_errmsg(errmsg, "no database URL");
        return -EINVAL;
    }
    char *shown = bfs_dburl_redact(url);
    if (!shown)
        return -ENOMEM;
    int ret = 0;
    if (!bfs_dburl_is_postgresql(url)) {
        bfs_set_errmsg(errmsg, "'%s' is not a PostgreSQL URL (postgresql://[USER@]HOST[:PORT]/DATABASE)",
                       shown);
        ret = -EINVAL;
    }
    if (ret == 0)
        ret = parse(url, false, out, shown, errmsg);
    if (ret == 0 && out->password && !(out->password_source = strdup("the URL")))
        ret = -ENOMEM;
    if (ret == 0 && cfg) {
        bool had_password = out->password != NULL;
        if (fill(&out->user, cfg->username) < 0 || fill(&out->password, cfg->password) < 0 ||
            fill(&out->host, cfg->host) < 0 || fill(&out->port, cfg->port) < 0 ||
            fill(&out->dbname, cfg->database) < 0)
            ret = -ENOMEM;
        else if (!had_password && out->password &&
                 !(out->password_source = strdup("butler.yaml (registry.password)")))
            ret = -ENOMEM;
        else if (out->port && !all_digits(out->port)) {
            bfs_set_errmsg(errmsg, "'%s': registry.port '%s' is not a number", shown, out->port);
            ret = -EINVAL;
        }
    }
    if (ret == -ENOMEM)
        bfs_set_errmsg(errmsg, "out of memory");
    if (ret < 0)
        bfs_dburl_free(out);
    free(shown);
    return ret;
}

/* ---- the credential list ----------------------------------------------------- */

/* The port numbers a and b are the same number ("05432" and "5432"). */
static bool same_port(const char *a, const char *b)
{
    return a && b && strtol(a, NULL, 10) == strtol(b, NULL, 10);
}

/* Entry i of the list: 1 when it matches u (then *password and *username
 * point into y), 0 when not, <0 with *errmsg for a malformed entry. */
static int match_entry(const bfs_yaml *y, const bfs_yaml_node *entry, size_t i, const char *where,
                       const bfs_dburl *u, const char **password, const char **username,
                       char **errmsg)
{
    if (!bfs_yaml_is_map(y, entry)) {
        bfs_set_errmsg(errmsg, "%s: entry %zu is not a mapping (url:, password:, username:)", where, i + 1);
        return -EINVAL;
    }
    const char *url = bfs_yaml_scalar(y, bfs_yaml_get(y, entry, "url"));
    if (!url) {
        bfs_set_errmsg(errmsg, "%s: entry %zu has no url", where, i + 1);
        return -EINVAL;
    }
    bfs_dburl pat;
    char *msg = NULL;
    /* a pattern carries no password worth hiding, but be uniform */
    char *shown = bfs_dburl_redact(url);
    if (!shown)
        return -ENOMEM;
    int ret = parse(url, true, &pat, shown, &msg);
    free(shown);
    if (ret < 0) {
        bfs_set_errmsg(errmsg, "%s: entry %zu: %s", where, i + 1, msg ? msg : "bad url");
        free(msg);
        return ret;
    }
    ret = 0;
    if (strcmp(pat.dialect, u->dialect) != 0)
        goto out;
    if (pat.dbname && fnmatch(pat.dbname, u->dbname, FNM_NOESCAPE) != 0)
        goto out;
    if (pat.user && (!u->user || strcmp(pat.user, u->user) != 0))
        goto out;
    if (!pat.host) {
        bfs_set_errmsg(errmsg, "%s: entry %zu: its url names no host", where, i + 1);
        ret = -EINVAL;
        goto out;
    }
    if (fnmatch(pat.host, u->host, FNM_NOESCAPE | FNM_CASEFOLD) != 0)
        goto out;
    if (pat.port && !same_port(pat.port, u->port))
        goto out;
    *password = bfs_yaml_scalar(y, bfs_yaml_get(y, entry, "password"));
    *username = bfs_yaml_scalar(y, bfs_yaml_get(y, entry, "username"));
    if (!*password) {
        bfs_set_errmsg(errmsg, "%s: entry %zu matches but has no password", where, i + 1);
        ret = -EINVAL;
        goto out;
    }
    ret = 1;
out:
    bfs_dburl_free(&pat);
    return ret;
}

/* Load the credential list: the JSON of $LSST_DB_AUTH_CREDENTIALS, else the
 * file.  0 with *y NULL when there is none. */
static int load_list(const char *auth_path, bfs_yaml **y, char **where, char **errmsg)
{
    *y = NULL;
    *where = NULL;
    char *msg = NULL;
    int ret;
    const char *json = auth_path ? NULL : getenv("LSST_DB_AUTH_CREDENTIALS");
    if (json && *json) {
        /* JSON is YAML's flow style: the one YAML parser reads it */
        if (!(*where = strdup("$LSST_DB_AUTH_CREDENTIALS")))
            return -ENOMEM;
        ret = bfs_yaml_load_string(json, y, &msg);
        if (ret < 0) {
            /* the message would quote the JSON: do not show it */
            bfs_set_errmsg(errmsg, "$LSST_DB_AUTH_CREDENTIALS is not valid JSON");
            free(msg);
            return ret == -ENOMEM ? ret : -EINVAL;
        }
        return 0;
    }
    const char *env = auth_path ? NULL : getenv("LSST_DB_AUTH");
    if (auth_path)
        *where = strdup(auth_path);
    else if (env && *env)
        *where = env[0] == '~' && (env[1] == '/' || !env[1]) && getenv("HOME")
                     ? bfs_asprintf("%s%s", getenv("HOME"), env + 1) : strdup(env);
    else if (getenv("HOME") && *getenv("HOME"))
        *where = bfs_asprintf("%s/.lsst/db-auth.yaml", getenv("HOME"));
    else
        return 0;
    if (!*where)
        return -ENOMEM;
    int fd = open(*where, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0 && errno == ELOOP)
        fd = open(*where, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a symlink: check what it names */
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0; /* no credential file: libpq's conventions decide */
        ret = -errno;
        bfs_set_errmsg(errmsg, "cannot read the database credentials file %s: %s", *where, strerror(-ret));
        return ret;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return 0; /* not a file: as lsst.utils.db_auth, nothing there */
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        close(fd);
        bfs_set_errmsg(errmsg, "the database credentials file %s has mode %04o, which lets others read "
                       "or change it; it must be private (chmod 600 %s)",
                       *where, (unsigned)(st.st_mode & 07777), *where);
        return -EACCES;
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        return -ENOMEM;
    }
    bfs_yaml_error yerr;
    ret = bfs_yaml_load_stream(f, *where, y, NULL, &yerr);
    fclose(f);
    if (ret < 0) {
        /* libpq-style: name the line, never quote the content */
        bfs_set_errmsg(errmsg, "the database credentials file %s is not valid YAML (line %d: %s)",
                       *where, yerr.line, yerr.problem);
        return ret == -ENOMEM ? ret : -EINVAL;
    }
    return 0;
}

int bfs_dbauth_lookup(bfs_dburl *u, const char *auth_path, char **errmsg)
{
    if (u->password || !u->host || !u->dbname || !u->dialect)
        return 0;
    bfs_yaml *y = NULL;
    char *where = NULL;
    int ret = load_list(auth_path, &y, &where, errmsg);
    if (ret < 0 || !y) {
        if (ret == -ENOMEM)
            bfs_set_errmsg(errmsg, "out of memory");
        free(where);
        return ret;
    }
    const bfs_yaml_node *root = bfs_yaml_root(y);
    const char *password = NULL, *username = NULL;
    if (root && !bfs_yaml_is_null(y, root) && !bfs_yaml_is_seq(y, root)) {
        bfs_set_errmsg(errmsg, "%s is not a list of credentials (- url: ..., password: ...)", where);
        ret = -EINVAL;
    }
    for (size_t i = 0; ret == 0 && i < bfs_yaml_len(y, root); i++) {
        ret = match_entry(y, bfs_yaml_item(y, root, i), i, where, u, &password, &username, errmsg);
        if (ret == 1) {
            char *p = strdup(password);
            char *n = !u->user && username ? strdup(username) : NULL;
            if (!p || (!u->user && username && !n)) {
                free(p);
                free(n);
                ret = -ENOMEM;
                bfs_set_errmsg(errmsg, "out of memory");
                break;
            }
            u->password = p;
            if (n)
                u->user = n;
            free(u->password_source);
            u->password_source = where;
            where = NULL;
            ret = 0;
            break;
        }
    }
    bfs_yaml_free(y);
    free(where);
    return ret;
}

int bfs_dburl_resolve(const char *url, const bfs_dburl_config *cfg, bfs_dburl *out, char **errmsg)
{
    int ret = bfs_dburl_parse(url, cfg, out, errmsg);
    if (ret == 0 && (ret = bfs_dbauth_lookup(out, NULL, errmsg)) < 0)
        bfs_dburl_free(out);
    return ret;
}

int bfs_dburl_params(const bfs_dburl *u, const char **keys, const char **values, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < sizeof PARAMS / sizeof PARAMS[0]; i++) {
        const char *v = *FIELD(u, PARAMS[i].off);
        if (!v)
            continue;
        if (n + 1 >= cap)
            return -ENOSPC;
        keys[n] = PARAMS[i].key;
        values[n] = v;
        n++;
    }
    if (cap < 1)
        return -ENOSPC;
    keys[n] = NULL;
    values[n] = NULL;
    return (int)n;
}
