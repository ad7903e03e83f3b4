/*
 * config.h - YAML documents (one parser, libyaml, for all YAML in butlerfs)
 * and the butlerfs configuration file.
 *
 * The configuration file (docs/config.md; default $XDG_CONFIG_HOME/butlerfs/
 * config.yaml, else ~/.config/butlerfs/config.yaml, else none) sets the
 * cache, the remote-fetch policy and the source chains: URI prefixes mapped
 * to ordered replicas.  Every key is optional; unknown keys are an error
 * naming the key and the line, so a typo never silently does nothing.
 * Sizes accept suffixes (4MiB, 20GiB, 512k, 1G); durations accept s, ms, m
 * (30s, 500ms, 1m).
 *
 * Ownership: a bfs_config owns all its strings; free with bfs_config_free.
 * Nodes of a bfs_yaml are valid until bfs_yaml_free.  Thread-safety: none
 * needed; both are built once at start-up and then only read.
 */
#ifndef BFS_CONFIG_H
#define BFS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- YAML documents ------------------------------------------------------- */

typedef struct bfs_yaml bfs_yaml;
typedef struct bfs_yaml_node bfs_yaml_node; /* opaque handle into a bfs_yaml */

/* Where and why a document failed to parse, for callers that word their
 * own message (registry.c keeps its "... is not valid YAML: ..." text). */
typedef struct bfs_yaml_error {
    int line;              /* 1-based line of the problem */
    char problem[128];     /* libyaml's words, e.g. "did not find expected key" */
} bfs_yaml_error;

/* Load the first document of a file, a string or an open stream (read, not
 * closed; name stands for FILE in messages; a string is "<string>").
 * errmsg and err may be NULL.  Returns 0 and *out (free with bfs_yaml_free;
 * an empty input gives a document whose root is NULL), or: the open(2)
 * errno (load_file only), -EINVAL for a syntax or read error, -ENOMEM;
 * with *errmsg (malloc'd) = "FILE:LINE: problem" and *err filled (line 0,
 * "out of memory" when the parser never ran).  *out is NULL on failure. */
int bfs_yaml_load_file(const char *path, bfs_yaml **out, char **errmsg);
int bfs_yaml_load_string(const char *text, bfs_yaml **out, char **errmsg);
/* The same for len bytes at buf (not NUL-terminated; a NUL byte inside is
 * a syntax error, as YAML forbids it); name stands for FILE in messages. */
int bfs_yaml_load_mem(const void *buf, size_t len, const char *name, bfs_yaml **out,
                      char **errmsg);
int bfs_yaml_load_stream(FILE *f, const char *name, bfs_yaml **out, char **errmsg,
                         bfs_yaml_error *err);
void bfs_yaml_free(bfs_yaml *y);

/* All node functions accept n == NULL (a missing node): they then return
 * NULL, false, 0, or for bfs_yaml_is_null true.  Returned strings belong
 * to y. */

const bfs_yaml_node *bfs_yaml_root(const bfs_yaml *y);
/* Follow a dotted path of mapping keys from n ("datastore.records.table");
 * NULL when any step is missing. */
const bfs_yaml_node *bfs_yaml_get(const bfs_yaml *y, const bfs_yaml_node *n, const char *path);
/* The scalar text of n, or NULL when n is not a scalar. */
const char *bfs_yaml_scalar(const bfs_yaml *y, const bfs_yaml_node *n);
bool bfs_yaml_is_map(const bfs_yaml *y, const bfs_yaml_node *n);
bool bfs_yaml_is_seq(const bfs_yaml *y, const bfs_yaml_node *n);
/* Items of a sequence or mapping: count, i-th value, i-th key (maps). */
size_t bfs_yaml_len(const bfs_yaml *y, const bfs_yaml_node *n);
const bfs_yaml_node *bfs_yaml_item(const bfs_yaml *y, const bfs_yaml_node *n, size_t i);
const char *bfs_yaml_key(const bfs_yaml *y, const bfs_yaml_node *n, size_t i);
/* 1-based source line of n, for messages (0 for NULL). */
int bfs_yaml_line(const bfs_yaml *y, const bfs_yaml_node *n);
/* True for a missing node and for a YAML null: an unquoted "", "~" or
 * "null" ("key:" with no value).  A quoted "~" is a string. */
bool bfs_yaml_is_null(const bfs_yaml *y, const bfs_yaml_node *n);
/* When key i of mapping m repeats an earlier key of m: the line of the
 * first one (a repeated key is an error in every section, not the last one
 * silently winning); else 0. */
int bfs_yaml_repeated(const bfs_yaml *y, const bfs_yaml_node *m, size_t i);
/* The same for a section's own parser: true when key i of mapping m
 * repeats an earlier one, *errmsg then "FILE:LINE: WHEREKEY is given twice
 * (first at line N)" (where: the key's section prefix, "ingest." say). */
bool bfs_yaml_twice(const bfs_yaml *y, const bfs_yaml_node *m, size_t i, const char *file, const char *where,
                    char **errmsg);

/* A boolean as the configuration file writes it: true/yes/on -> 1,
 * false/no/off -> 0 (any case), anything else (or NULL) -> -1. */
int bfs_parse_bool(const char *s);
/* s with a leading "~", "~/x" or "~user/x" replaced by that home directory;
 * anything else copied.  *out is malloc'd.  0, -ENOENT (no such user or
 * home), -ENOMEM. */
int bfs_expand_tilde(const char *s, char **out);

/* The type a scalar has under YAML 1.1's implicit resolution as PyYAML
 * (which writes the Header Service's documents) applies it: an unquoted
 * scalar is null ("", ~, null, Null, NULL), bool (true/false, yes/no,
 * on/off in the three casings), int (decimal, 0b, 0x, leading-0 octal,
 * base-60 "1:30", '_' separators), float ("1.5", "1.0e+5", ".5", base
 * 60, .inf, .nan; "1e5" has no dot and stays a string, as in PyYAML) or
 * else a string (timestamps included: their text is kept).  A quoted or
 * block scalar is a string, unless it carries an explicit tag (!!int "5",
 * !!null "", !!bool, !!float, !!str), which then decides.  libyaml's
 * document loader gives an untagged scalar the str tag, so an explicit
 * !!str on an unquoted scalar is not seen (PyYAML never writes one: it
 * quotes instead). */
typedef enum bfs_yaml_type {
    BFS_YAML_NOT_SCALAR,   /* a mapping, a sequence or a missing node */
    BFS_YAML_NULL,
    BFS_YAML_BOOL,
    BFS_YAML_INT,
    BFS_YAML_FLOAT,
    BFS_YAML_STR,
} bfs_yaml_type;

typedef struct bfs_yaml_value {
    bfs_yaml_type type;
    bool b;                /* BFS_YAML_BOOL */
    int64_t i;             /* BFS_YAML_INT */
    double f;              /* BFS_YAML_FLOAT (inf and nan included) */
    const char *s;         /* every scalar: its text (belongs to y), else NULL */
    size_t len;            /* bytes of s (a "\0" escape can put a NUL inside) */
} bfs_yaml_value;

/* Resolve n into *v.  0; -ERANGE for an int beyond int64 (v->type is
 * BFS_YAML_INT, v->s its text); -EINVAL for an explicitly tagged scalar
 * whose text is not of that type (!!int "x") or an unknown tag on a
 * scalar (v->type is BFS_YAML_STR).  Never fails for a mapping or a
 * sequence: their type is BFS_YAML_NOT_SCALAR. */
int bfs_yaml_resolve(const bfs_yaml *y, const bfs_yaml_node *n, bfs_yaml_value *v);

/* Parse "4MiB", "20GiB", "512k", "1G", "1048576" -> bytes; false if
 * malformed, negative or beyond int64.  A whole number, optionally a space,
 * then a unit: none or B (bytes); k K KiB, M m MiB, G g GiB, T t TiB
 * (powers of 1024); kB KB, MB, GB, TB (powers of 1000, as dd(1) does). */
bool bfs_parse_size(const char *s, int64_t *out);
/* Parse "30s", "500ms", "1m", "2" (seconds) -> milliseconds; false if
 * malformed, negative or beyond int64.  Units: ms, s (the default), m or
 * min, h, d. */
bool bfs_parse_duration_ms(const char *s, int64_t *out);

/* ---- the butlerfs configuration ------------------------------------------ */

typedef struct bfs_source_rule {
    char *prefix;          /* "s3://rubin-summit/" */
    char **replicas;       /* in order: "file:///summit/cache/", "https://mirror/x/", ... */
    int n_replicas;
} bfs_source_rule;

typedef struct bfs_config {
    /* cache: */
    char *cache_dir;             /* NULL: default location */
    int64_t cache_max_bytes;     /* 10 GiB */
    int64_t cache_min_free;      /* 1 GiB */
    int64_t block_size;          /* 4 MiB */
    /* fetch: */
    int64_t readahead_max;       /* 64 MiB: the window grows to this while reads stay sequential */
    int parallel;                /* 4 ranged GETs at once per file */
    int64_t memory_budget;       /* 256 MiB of in-flight buffers, all files together */
    int64_t connect_timeout_ms;  /* 5000 */
    int64_t request_timeout_ms;  /* 30000 */
    int64_t low_speed_bytes;     /* 1024 */
    int64_t low_speed_time_ms;   /* 10000 */
    int max_attempts;            /* 4 per replica */
    int64_t backoff_base_ms;     /* 100 */
    int64_t backoff_max_ms;      /* 5000 */
    int64_t deadline_ms;         /* 60000: a read fails with EIO after this, all replicas tried */
    int64_t replica_retry_ms;    /* 30000: a failed replica is skipped this long */
    double warn_failure_rate;    /* 0.05: warn when a replica's recent requests fail more often; 0 never */
    bool tls_verify;             /* true */
    char *ca_file;               /* NULL */
    char *token_file;            /* NULL */
    char *s3_profile;            /* NULL */
    /* registry: (PostgreSQL registries; registry/db.h) */
    int reg_connections;         /* 4 server connections per mount at most */
    int64_t reg_idle_close_ms;   /* 60000: a connection idle this long is closed */
    int64_t reg_connect_timeout_ms;   /* 10000 */
    int64_t reg_statement_timeout_ms; /* 30000: each query, and each wait for a connection */
    /* sources: */
    bfs_source_rule *rules;
    int n_rules;
    /* allowed_roots: local directories (absolute, no trailing '/') outside
     * the datastore root and the local replicas whose files absolute
     * locations (file:///sdf/..., /project/...) may name (fetchers/source.h) */
    char **allowed_roots;
    int n_allowed_roots;
    char *path;                  /* the file read, or NULL for defaults only */
} bfs_config;

/* Fill c with the defaults above (c owns nothing afterwards). */
void bfs_config_defaults(bfs_config *c);

/* Fill c with the defaults, then the file path ("~" expanded; NULL: the
 * default location, where a file that is missing or cannot be seen (an
 * unsearchable directory) is not an error and c->path stays NULL).  c must not
 * own anything (bfs_config_free it first when reusing it).  Returns 0, or
 * -errno with *errmsg (malloc'd; errmsg may be NULL) = "FILE:LINE: what"
 * naming the key and, for a range error, the allowed range; on failure c
 * holds the defaults only (nothing to free).  -ENOENT (or the open(2)
 * errno) for an unreadable file, -EINVAL for anything wrong in it,
 * including a fetch.ca_file or fetch.token_file that is not a readable
 * regular file now (only opened, never read: the content is http.c's
 * business at each request, since a token file is rotated by replacing it).
 *
 * Source rules are normalized: "~" expanded; a plain absolute path and
 * file://localhost/ written file:///...; prefix and replica bases end in
 * '/'.  Replica schemes are file, http, https and s3.  allowed_roots are
 * "~"-expanded absolute directories (a file:/// URI is taken as its path; a
 * relative one is relative to the file's directory), without trailing '/'. */
int bfs_config_load(const char *path, bfs_config *c, char **errmsg);
/* Free what c owns and zero it; harmless on a zeroed or defaulted c. */
void bfs_config_free(bfs_config *c);

/* The replicas to try for location, in order: the rule with the longest
 * matching prefix maps location to each replica (prefix replaced by the
 * replica base); with no rule, location itself, unchanged.  Prefixes match
 * at a '/' boundary ("s3://b/" matches "s3://b/x" and "s3://b", never
 * "s3://bx/"); a local path "/d/x" is matched as "file:///d/x".  A file://
 * replica gives a file:///path URI of a local path.  Returns the count
 * (>= 1) and a malloc'd array of malloc'd URLs (free with
 * bfs_config_free_urls), or -ENOMEM.  c may be NULL (no rules). */
int bfs_config_replicas(const bfs_config *c, const char *location, char ***urls);
void bfs_config_free_urls(char **urls, int n);

#endif
