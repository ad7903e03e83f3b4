/*
 * dbauth.h - PostgreSQL registry URLs and their credentials (issue 13).
 *
 * A Butler repository's butler.yaml names its registry with a SQLAlchemy
 * URL, registry.db.  For PostgreSQL it is
 *
 *     postgresql[+DRIVER]://[USER[:PASSWORD]@][HOST][:PORT]/DATABASE[?KEY=VALUE&...]
 *
 * (DRIVER, e.g. psycopg2, is ignored: the engine speaks libpq).  USER and
 * PASSWORD are percent-decoded; HOST may be an IPv6 address in brackets.
 * The query keys are libpq connection keywords, as psycopg2 passes them on:
 * host and port (a unix socket directory: postgresql://u@/db?host=/run/pg),
 * sslmode, sslrootcert, sslcert, sslkey, sslcrl, connect_timeout,
 * application_name, target_session_attrs, service; any other key, and
 * password in the query, are refused.  butler.yaml may also give
 * registry.username, .password, .host, .port and .database, which fill what
 * the URL leaves out (as daf_butler's ConnectionStringFactory does).
 *
 * The password comes, first found wins, from:
 *   1. the URL (or registry.password);
 *   2. the Butler's credential list: the JSON in $LSST_DB_AUTH_CREDENTIALS
 *      if set, else the YAML file $LSST_DB_AUTH, else ~/.lsst/db-auth.yaml.
 *      The file must exist to be used (a missing one is no error) and must
 *      give no permission to group or others (0600 or 0400), else it is
 *      refused with a sentence, as lsst.utils.db_auth does.  Each entry is
 *      {url: PATTERN, password: ..., username: ...}; the first entry that
 *      matches wins.  A pattern is DIALECT://[USER@]HOST[:PORT][/DATABASE]
 *      with shell wildcards (* ? [..], fnmatch(3)) in HOST and DATABASE;
 *      USER, PORT and DATABASE left out match anything, given they must be
 *      equal (USER and PORT) or match (DATABASE).  HOST is matched ignoring
 *      case.  The URL's own user wins over the entry's username.  The list
 *      is only consulted when the URL names a host and a database.
 *      Unlike daf_butler, a password in the URL is not replaced by one from
 *      the list (so the file is not read at all then).
 *   3. libpq's own conventions (PGPASSWORD, ~/.pgpass, PGSERVICE): the
 *      password is then left NULL and libpq looks for it when connecting.
 *
 * No password is ever part of a message: the errmsg sentences of this module
 * name a URL only in its log-safe form (bfs_dburl_redact), and every other
 * module prints registry URLs only through bfs_dburl_redact too.
 *
 * Errors: negative errno and, when errmsg is not NULL, *errmsg = a malloc'd
 * sentence (the caller frees it).  -EINVAL for a malformed URL, list or
 * entry; -EACCES for a credential file readable by others (or unreadable);
 * -ENOMEM.
 *
 * Ownership: a bfs_dburl owns all its strings; free with bfs_dburl_free.
 * The libpq keyword arrays of bfs_dburl_params point into the bfs_dburl.
 *
 * Threads: no shared state; reads the environment (getenv) and $HOME, so
 * call it before starting threads that change the environment.
 */
#ifndef BFS_DBAUTH_H
#define BFS_DBAUTH_H

#include <stddef.h>

typedef struct bfs_dburl {
    char *dialect;          /* "postgresql" (any +DRIVER removed) */
    char *user;             /* NULL: libpq's default (PGUSER, the OS user) */
    char *password;         /* NULL: left to libpq (PGPASSWORD, ~/.pgpass, PGSERVICE) */
    char *host;             /* NULL: libpq's default (PGHOST, the local socket) */
    char *port;             /* NULL: libpq's default (PGPORT, 5432); digits only */
    char *dbname;           /* NULL: libpq's default (PGDATABASE, the user name) */
    char *sslmode;          /* NULL: libpq's default (PGSSLMODE, prefer) */
    char *sslrootcert;
    char *sslcert;
    char *sslkey;
    char *sslcrl;
    char *connect_timeout;
    char *application_name;
    char *target_session_attrs;
    char *service;
    /* where the password came from, for messages: "the URL", "butler.yaml
     * (registry.password)", "$LSST_DB_AUTH_CREDENTIALS" or the credential
     * file's path; NULL when it is left to libpq */
    char *password_source;
} bfs_dburl;

/* Values butler.yaml gives next to registry.db (any may be NULL; the
 * struct pointer too).  They fill only what the URL leaves out. */
typedef struct bfs_dburl_config {
    const char *username;
    const char *password;
    const char *host;
    const char *port;
    const char *database;
} bfs_dburl_config;

/* True when url names a PostgreSQL database: postgresql:// or
 * postgresql+DRIVER:// (SQLAlchemy dropped the postgres:// alias). */
int bfs_dburl_is_postgresql(const char *url);

/* Parse url (see the top of this file) into *out, with cfg filling what
 * the URL leaves out; reads no file.  0, or -EINVAL / -ENOMEM with
 * *errmsg; *out is zeroed on failure. */
int bfs_dburl_parse(const char *url, const bfs_dburl_config *cfg, bfs_dburl *out,
                    char **errmsg);

/* Step 2 above: when u has no password and names a host and a database,
 * look in the Butler's credential list.  auth_path: the credential file to
 * read instead of $LSST_DB_AUTH_CREDENTIALS / $LSST_DB_AUTH /
 * ~/.lsst/db-auth.yaml (tests), or NULL.  0 whether or not an entry
 * matched (u->password stays NULL when none did); -EACCES, -EINVAL,
 * -ENOMEM with *errmsg (u unchanged). */
int bfs_dbauth_lookup(bfs_dburl *u, const char *auth_path, char **errmsg);

/* bfs_dburl_parse, then bfs_dbauth_lookup with auth_path NULL. */
int bfs_dburl_resolve(const char *url, const bfs_dburl_config *cfg, bfs_dburl *out,
                      char **errmsg);

/* The libpq keyword/value pairs of u for PQconnectdbParams: fills up to
 * cap - 1 pairs of the fields that are set, then a NULL terminator in
 * both arrays; returns the number of pairs (at most 15, so cap 16 always
 * suffices), or -ENOSPC when cap is too small.  The values point into u. */
int bfs_dburl_params(const bfs_dburl *u, const char **keys, const char **values, size_t cap);

/* url with every password removed, for logs and messages: the userinfo's
 * ":PASSWORD" and any password=... query pair are dropped
 * ("postgresql://butler:s3cret@db:5432/b" -> "postgresql://butler@db:5432/b").
 * Works on any string, parseable or not (one with no "://" is copied as it
 * is, since then nothing in it is a URL's password).  malloc'd; NULL only
 * when out of memory or url is NULL. */
char *bfs_dburl_redact(const char *url);

/* Free what u owns and zero it; harmless on a zeroed u. */
void bfs_dburl_free(bfs_dburl *u);

#endif
