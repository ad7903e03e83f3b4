/*
 * config.c - YAML documents and the butlerfs configuration file (config.h).
 *
 * YAML: libyaml's document loader (yaml_parser_load) builds the whole node
 * graph; a bfs_yaml owns that yaml_document_t and a bfs_yaml_node is a
 * yaml_node_t seen through an opaque type.  Nothing here recurses through
 * the graph, so self-referencing aliases cannot loop.
 *
 * Configuration: one table per mapping section (cache:, fetch:) describes
 * every key (kind, field, allowed range); the loader walks the document
 * against the tables, so the keys accepted, their range messages and
 * docs/config.md stay in one place each.  A file is loaded into a scratch
 * bfs_config and moved into the caller's only when all of it is valid, so
 * a failed load never leaves a half-applied configuration.
 *
 * Location rules: prefixes and replica bases are normalized once at load
 * (~ expanded, plain absolute paths and file://localhost/ written as
 * file:///..., a trailing '/' added) so matching is a plain prefix compare
 * at a path-component boundary and the mapped URL never runs two names
 * together ("https://m/x" + "a/b").
 */
#include "config.h"

#include "strutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <pwd.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

/* ---- YAML documents ------------------------------------------------------- */

struct bfs_yaml {
    yaml_document_t doc;
};

static const yaml_node_t *ynode(const bfs_yaml_node *n) { return (const yaml_node_t *)n; }
static const bfs_yaml_node *bnode(const yaml_node_t *n) { return (const bfs_yaml_node *)n; }

static yaml_node_t *doc_node(const bfs_yaml *y, int index)
{
    /* yaml_document_get_node takes a non-const document but only reads it. */
    return yaml_document_get_node((yaml_document_t *)&y->doc, index);
}

static int load_with(yaml_parser_t *parser, const char *name, bfs_yaml **out, char **errmsg,
                     bfs_yaml_error *err)
{
    bfs_yaml *y = calloc(1, sizeof *y);
    if (!y) {
        yaml_parser_delete(parser);
        bfs_set_errmsg(errmsg, "%s: out of memory", name);
        return -ENOMEM;
    }
    if (!yaml_parser_load(parser, &y->doc)) {
        int line = (int)parser->problem_mark.line + 1;
        const char *problem = parser->problem ? parser->problem : "parse error";
        int ret = parser->error == YAML_MEMORY_ERROR ? -ENOMEM : -EINVAL;
        if (err) {
            err->line = line;
            snprintf(err->problem, sizeof err->problem, "%s", problem);
        }
        if (parser->context)
            bfs_set_errmsg(errmsg, "%s:%d: %s (%s at line %d)", name, line, problem, parser->context,
                    (int)parser->context_mark.line + 1);
        else
            bfs_set_errmsg(errmsg, "%s:%d: %s", name, line, problem);
        yaml_parser_delete(parser);
        free(y);
        return ret;
    }
    yaml_parser_delete(parser);
    *out = y;
    return 0;
}

int bfs_yaml_load_stream(FILE *f, const char *name, bfs_yaml **out, char **errmsg, bfs_yaml_error *err)
{
    *out = NULL;
    if (err)
        *err = (bfs_yaml_error){.line = 0, .problem = "out of memory"};
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        bfs_set_errmsg(errmsg, "%s: out of memory", name);
        return -ENOMEM;
    }
    yaml_parser_set_input_file(&parser, f);
    return load_with(&parser, name, out, errmsg, err);
}

int bfs_yaml_load_file(const char *path, bfs_yaml **out, char **errmsg)
{
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (!f) {
        int ret = -errno;
        bfs_set_errmsg(errmsg, "%s: cannot read: %s", path, strerror(-ret));
        return ret;
    }
    int ret = bfs_yaml_load_stream(f, path, out, errmsg, NULL);
    fclose(f);
    return ret;
}

int bfs_yaml_load_string(const char *text, bfs_yaml **out, char **errmsg)
{
    *out = NULL;
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        bfs_set_errmsg(errmsg, "<string>: out of memory");
        return -ENOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    return load_with(&parser, "<string>", out, errmsg, NULL);
}

int bfs_yaml_load_mem(const void *buf, size_t len, const char *name, bfs_yaml **out,
                      char **errmsg)
{
    *out = NULL;
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        bfs_set_errmsg(errmsg, "%s: out of memory", name);
        return -ENOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    return load_with(&parser, name, out, errmsg, NULL);
}

void bfs_yaml_free(bfs_yaml *y)
{
    if (!y)
        return;
    yaml_document_delete(&y->doc);
    free(y);
}

const bfs_yaml_node *bfs_yaml_root(const bfs_yaml *y)
{
    return y ? bnode(yaml_document_get_root_node((yaml_document_t *)&y->doc)) : NULL;
}

/* The value of key in mapping n, or NULL; keylen bytes of key are compared. */
static const yaml_node_t *map_lookup(const bfs_yaml *y, const yaml_node_t *n, const char *key, size_t keylen)
{
    if (!n || n->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const yaml_node_t *k = doc_node(y, p->key);
        if (k && k->type == YAML_SCALAR_NODE && k->data.scalar.length == keylen &&
            !memcmp(k->data.scalar.value, key, keylen))
            return doc_node(y, p->value);
    }
    return NULL;
}

const bfs_yaml_node *bfs_yaml_get(const bfs_yaml *y, const bfs_yaml_node *n, const char *path)
{
    const yaml_node_t *node = ynode(n);
    for (const char *s = path; node && *s;) {
        const char *dot = strchr(s, '.');
        size_t len = dot ? (size_t)(dot - s) : strlen(s);
        node = map_lookup(y, node, s, len);
        s += len + (dot != NULL);
    }
    return bnode(node);
}

const char *bfs_yaml_scalar(const bfs_yaml *y, const bfs_yaml_node *n)
{
    (void)y;
    const yaml_node_t *node = ynode(n);
    return node && node->type == YAML_SCALAR_NODE ? (const char *)node->data.scalar.value : NULL;
}

bool bfs_yaml_is_map(const bfs_yaml *y, const bfs_yaml_node *n)
{
    (void)y;
    return n && ynode(n)->type == YAML_MAPPING_NODE;
}

bool bfs_yaml_is_seq(const bfs_yaml *y, const bfs_yaml_node *n)
{
    (void)y;
    return n && ynode(n)->type == YAML_SEQUENCE_NODE;
}

size_t bfs_yaml_len(const bfs_yaml *y, const bfs_yaml_node *n)
{
    (void)y;
    const yaml_node_t *node = ynode(n);
    if (!node)
        return 0;
    if (node->type == YAML_SEQUENCE_NODE)
        return (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    if (node->type == YAML_MAPPING_NODE)
        return (size_t)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
    return 0;
}

const bfs_yaml_node *bfs_yaml_item(const bfs_yaml *y, const bfs_yaml_node *n, size_t i)
{
    const yaml_node_t *node = ynode(n);
    if (i >= bfs_yaml_len(y, n))
        return NULL;
    if (node->type == YAML_SEQUENCE_NODE)
        return bnode(doc_node(y, node->data.sequence.items.start[i]));
    return bnode(doc_node(y, node->data.mapping.pairs.start[i].value));
}

const char *bfs_yaml_key(const bfs_yaml *y, const bfs_yaml_node *n, size_t i)
{
    const yaml_node_t *node = ynode(n);
    if (!node || node->type != YAML_MAPPING_NODE || i >= bfs_yaml_len(y, n))
        return NULL;
    const yaml_node_t *k = doc_node(y, node->data.mapping.pairs.start[i].key);
    return k && k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : NULL;
}

/* The key node of the i-th pair of mapping n (for the line of a bad key). */
static const bfs_yaml_node *yaml_key_node(const bfs_yaml *y, const bfs_yaml_node *n, size_t i)
{
    if (!bfs_yaml_is_map(y, n) || i >= bfs_yaml_len(y, n))
        return NULL;
    return bnode(doc_node(y, ynode(n)->data.mapping.pairs.start[i].key));
}

int bfs_yaml_line(const bfs_yaml *y, const bfs_yaml_node *n)
{
    (void)y;
    return n ? (int)ynode(n)->start_mark.line + 1 : 0;
}

bool bfs_yaml_is_null(const bfs_yaml *y, const bfs_yaml_node *n)
{
    (void)y;
    const yaml_node_t *node = ynode(n);
    if (!node)
        return true;
    if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)node->data.scalar.value;
    return !strcmp(v, "") || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
           !strcmp(v, "NULL");
}

/*
 * YAML 1.1 implicit resolution: PyYAML's resolver patterns (resolver.py),
 * written as POSIX extended expressions and compiled once.
 */
enum { RX_NULL, RX_BOOL, RX_INT, RX_FLOAT, RX_N };
static const char *const rx_src[RX_N] = {
    [RX_NULL] = "^(~|null|Null|NULL)?$",
    [RX_BOOL] = "^(yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$",
    [RX_INT] = "^([-+]?0b[01_]+|[-+]?0[0-7_]+|[-+]?(0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+"
               "|[-+]?[1-9][0-9_]*(:[0-5]?[0-9])+)$",
    [RX_FLOAT] = "^([-+]?[0-9][0-9_]*\\.[0-9_]*([eE][-+][0-9]+)?|\\.[0-9_]+([eE][-+][0-9]+)?"
                 "|[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\\.[0-9_]*|[-+]?\\.(inf|Inf|INF)|\\.(nan|NaN|NAN))$",
};
static regex_t rx[RX_N];
static bool rx_ok;
static pthread_once_t rx_once = PTHREAD_ONCE_INIT;

static void rx_compile(void)
{
    for (int i = 0; i < RX_N; i++)
        if (regcomp(&rx[i], rx_src[i], REG_EXTENDED | REG_NOSUB) != 0)
            return; /* a bug in the patterns above; every scalar is then a string */
    rx_ok = true;
}

static bool rx_match(int which, const char *s)
{
    return rx_ok && regexec(&rx[which], s, 0, NULL, 0) == 0;
}

/* s without '_' and the sign into buf; *neg.  False when it does not fit. */
static bool strip_number(const char *s, char *buf, size_t size, bool *neg)
{
    *neg = false;
    if (*s == '-' || *s == '+')
        *neg = *s++ == '-';
    size_t o = 0;
    for (; *s; s++) {
        if (*s == '_')
            continue;
        if (o + 1 >= size)
            return false;
        buf[o++] = *s;
    }
    buf[o] = '\0';
    return true;
}

/* An int matched by RX_INT; -ERANGE beyond int64. */
static int yaml_int(const char *s, int64_t *out)
{
    char buf[128];
    bool neg;
    if (!strip_number(s, buf, sizeof buf, &neg))
        return -ERANGE;
    uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    const char *p = buf;
    unsigned base = 10;
    if (strchr(p, ':')) {
        base = 60; /* "1:30" = 90: each part is a base-60 digit */
        for (const char *part = p; part; part = strchr(part, ':') ? strchr(part, ':') + 1 : NULL) {
            uint64_t d = strtoull(part, NULL, 10);
            if (v > (limit - d) / 60)
                return -ERANGE;
            v = v * 60 + d;
        }
    } else {
        if (p[0] == '0' && p[1] == 'b')
            base = 2, p += 2;
        else if (p[0] == '0' && p[1] == 'x')
            base = 16, p += 2;
        else if (p[0] == '0' && p[1])
            base = 8, p += 1;
        for (; *p; p++) {
            unsigned d = (unsigned)bfs_hexval((unsigned char)*p);
            if (v > (limit - d) / base)
                return -ERANGE;
            v = v * base + d;
        }
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

/* A float matched by RX_FLOAT (or an int's text under an explicit !!float). */
static double yaml_float(const char *s)
{
    char buf[512];
    bool neg;
    if (!strip_number(s, buf, sizeof buf, &neg))
        return NAN;
    double v;
    if (!strcasecmp(buf, ".inf"))
        v = INFINITY;
    else if (!strcasecmp(buf, ".nan"))
        return NAN;
    else if (strchr(buf, ':')) {
        v = 0;
        for (const char *part = buf; part; part = strchr(part, ':') ? strchr(part, ':') + 1 : NULL)
            v = v * 60 + strtod(part, NULL); /* the last part keeps its fraction */
    } else {
        v = strtod(buf, NULL);
    }
    return neg ? -v : v;
}

#define YAML_TAG(t) "tag:yaml.org,2002:" t

int bfs_yaml_resolve(const bfs_yaml *y, const bfs_yaml_node *n, bfs_yaml_value *v)
{
    (void)y;
    *v = (bfs_yaml_value){.type = BFS_YAML_NOT_SCALAR};
    const yaml_node_t *node = ynode(n);
    if (!node || node->type != YAML_SCALAR_NODE)
        return 0;
    pthread_once(&rx_once, rx_compile);
    const char *s = (const char *)node->data.scalar.value;
    const char *tag = node->tag ? (const char *)node->tag : YAML_DEFAULT_SCALAR_TAG;
    v->s = s;
    v->len = node->data.scalar.length;
    v->type = BFS_YAML_STR;
    bool has_nul = strlen(s) != v->len;
    bool plain = node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    bool implicit = plain && !strcmp(tag, YAML_DEFAULT_SCALAR_TAG);
    if (has_nul)
        return implicit || !strcmp(tag, YAML_TAG("str")) ? 0 : -EINVAL;
    if (implicit) {
        if (rx_match(RX_NULL, s))
            v->type = BFS_YAML_NULL;
        else if (rx_match(RX_BOOL, s))
            v->type = BFS_YAML_BOOL;
        else if (rx_match(RX_INT, s))
            v->type = BFS_YAML_INT;
        else if (rx_match(RX_FLOAT, s))
            v->type = BFS_YAML_FLOAT;
    } else if (!strcmp(tag, YAML_TAG("null"))) {
        v->type = BFS_YAML_NULL; /* PyYAML's constructor ignores the text */
    } else if (!strcmp(tag, YAML_TAG("bool"))) {
        if (!rx_match(RX_BOOL, s))
            return -EINVAL;
        v->type = BFS_YAML_BOOL;
    } else if (!strcmp(tag, YAML_TAG("int"))) {
        if (!rx_match(RX_INT, s))
            return -EINVAL;
        v->type = BFS_YAML_INT;
    } else if (!strcmp(tag, YAML_TAG("float"))) {
        if (!rx_match(RX_FLOAT, s) && !rx_match(RX_INT, s))
            return -EINVAL;
        v->type = BFS_YAML_FLOAT;
    } else if (strcmp(tag, YAML_TAG("str")) && strcmp(tag, YAML_TAG("timestamp"))) {
        return -EINVAL;
    }
    switch (v->type) {
    case BFS_YAML_BOOL:
        v->b = strchr("yYtToO", s[0]) && strcasecmp(s, "off");
        return 0;
    case BFS_YAML_INT:
        return yaml_int(s, &v->i);
    case BFS_YAML_FLOAT:
        v->f = yaml_float(s);
        return 0;
    default:
        return 0;
    }
}

/* ---- sizes and durations -------------------------------------------------- */

/* Leading decimal digits of s into *v (no sign); the rest in *end. */
static bool parse_digits(const char *s, int64_t *v, const char **end)
{
    int64_t n = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (n > (INT64_MAX - (*p - '0')) / 10)
            return false;
        n = n * 10 + (*p - '0');
    }
    if (p == s)
        return false;
    *v = n;
    *end = p;
    return true;
}

static bool scale(int64_t v, int64_t mult, int64_t *out)
{
    if (v > INT64_MAX / mult)
        return false;
    *out = v * mult;
    return true;
}

bool bfs_parse_size(const char *s, int64_t *out)
{
    static const struct { const char *unit; int64_t mult; } units[] = {
        {"", 1}, {"B", 1},
        {"k", 1LL << 10}, {"K", 1LL << 10}, {"KiB", 1LL << 10}, {"kB", 1000}, {"KB", 1000},
        {"M", 1LL << 20}, {"MiB", 1LL << 20}, {"MB", 1000000},
        {"G", 1LL << 30}, {"GiB", 1LL << 30}, {"GB", 1000000000},
        {"T", 1LL << 40}, {"TiB", 1LL << 40}, {"TB", 1000000000000LL},
    };
    int64_t v;
    const char *p;
    if (!s || !parse_digits(s, &v, &p))
        return false;
    if (*p == ' ' && *++p == '\0')
        return false; /* one space, and only before a unit */
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcmp(p, units[i].unit))
            return scale(v, units[i].mult, out);
    /* lower-case m/g/t as in "512m", like k */
    if ((p[0] == 'm' || p[0] == 'g' || p[0] == 't') && p[1] == '\0')
        return scale(v, p[0] == 'm' ? 1LL << 20 : p[0] == 'g' ? 1LL << 30 : 1LL << 40, out);
    return false;
}

bool bfs_parse_duration_ms(const char *s, int64_t *out)
{
    static const struct { const char *unit; int64_t ms; } units[] = {
        {"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"min", 60000}, {"h", 3600000},
        {"d", 86400000},
    };
    int64_t v;
    const char *p;
    if (!s || !parse_digits(s, &v, &p))
        return false;
    if (*p == ' ' && *++p == '\0')
        return false; /* one space, and only before a unit */
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcmp(p, units[i].unit))
            return scale(v, units[i].ms, out);
    return false;
}

/* ---- the configuration: schema -------------------------------------------- */

#define KiB (1LL << 10)
#define MiB (1LL << 20)
#define GiB (1LL << 30)
#define TiB (1LL << 40)
#define SEC 1000LL
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)

/* K_FILE: a path to a file that the daemon reads later (after
 * daemonizing, where no one sees its errors), so it must be a readable
 * regular file already when the configuration is loaded.  It is opened,
 * never read: a token file is rotated by replacing it, and http.c reads
 * and validates its content on every change. */
enum kind { K_SIZE, K_DURATION, K_INT, K_BOOL, K_PATH, K_FILE, K_STRING, K_RATE };

struct key {
    const char *name;
    enum kind kind;
    size_t off;            /* of the int64_t / int / bool / char * field */
    int64_t min, max;      /* bytes, milliseconds or a count */
    const char *fix;       /* K_FILE: what to do when the file is unusable */
};

#define F(field) offsetof(bfs_config, field)
/* K_RATE bounds are in millionths (the field is a double) */
#define RATE_ONE 1000000

static const struct key cache_keys[] = {
    {"dir", K_PATH, F(cache_dir), 0, 0, NULL},
    {"max_size", K_SIZE, F(cache_max_bytes), 1 * MiB, INT64_MAX, NULL},
    {"min_free", K_SIZE, F(cache_min_free), 0, INT64_MAX, NULL},
    {"block_size", K_SIZE, F(block_size), 64 * KiB, 64 * MiB, NULL},
};

static const struct key fetch_keys[] = {
    {"readahead", K_SIZE, F(readahead_max), 0, 4 * GiB, NULL},
    {"parallel", K_INT, F(parallel), 1, 64, NULL},
    {"memory_budget", K_SIZE, F(memory_budget), 1 * MiB, 1 * TiB, NULL},
    {"connect_timeout", K_DURATION, F(connect_timeout_ms), 10, 10 * MIN, NULL},
    {"request_timeout", K_DURATION, F(request_timeout_ms), 100, HOUR, NULL},
    {"low_speed_limit", K_SIZE, F(low_speed_bytes), 0, INT64_MAX, NULL},
    {"low_speed_time", K_DURATION, F(low_speed_time_ms), 1 * SEC, HOUR, NULL},
    {"attempts", K_INT, F(max_attempts), 1, 20, NULL},
    {"backoff_base", K_DURATION, F(backoff_base_ms), 1, MIN, NULL},
    {"backoff_max", K_DURATION, F(backoff_max_ms), 1, HOUR, NULL},
    {"deadline", K_DURATION, F(deadline_ms), 1 * SEC, DAY, NULL},
    {"replica_retry", K_DURATION, F(replica_retry_ms), 0, DAY, NULL},
    {"warn_failure_rate", K_RATE, F(warn_failure_rate), 0, RATE_ONE, NULL},
    {"tls_verify", K_BOOL, F(tls_verify), 0, 0, NULL},
    {"ca_file", K_FILE, F(ca_file), 0, 0,
     "give the PEM file of the CA that signed the servers' certificates, or remove the key to "
     "use the system CAs"},
    {"token_file", K_FILE, F(token_file), 0, 0,
     "give the file that holds the bearer token for the http(s):// replicas, or remove the key "
     "to send no token"},
    {"s3_profile", K_STRING, F(s3_profile), 0, 0, NULL},
};

static const struct key registry_keys[] = {
    {"connections", K_INT, F(reg_connections), 1, 64, NULL},
    {"idle_close", K_DURATION, F(reg_idle_close_ms), 1 * SEC, DAY, NULL},
    {"connect_timeout", K_DURATION, F(reg_connect_timeout_ms), 100, 10 * MIN, NULL},
    {"statement_timeout", K_DURATION, F(reg_statement_timeout_ms), 100, HOUR, NULL},
};

static const struct section {
    const char *name;
    const struct key *keys;
    size_t n;
} sections[] = {
    {"cache", cache_keys, sizeof cache_keys / sizeof cache_keys[0]},
    {"fetch", fetch_keys, sizeof fetch_keys / sizeof fetch_keys[0]},
    {"registry", registry_keys, sizeof registry_keys / sizeof registry_keys[0]},
};

void bfs_config_defaults(bfs_config *c)
{
    *c = (bfs_config){
        .cache_max_bytes = 10 * GiB,
        .cache_min_free = 1 * GiB,
        .block_size = 4 * MiB,
        .readahead_max = 64 * MiB,
        .parallel = 4,
        .memory_budget = 256 * MiB,
        .connect_timeout_ms = 5 * SEC,
        .request_timeout_ms = 30 * SEC,
        .low_speed_bytes = 1024,
        .low_speed_time_ms = 10 * SEC,
        .max_attempts = 4,
        .backoff_base_ms = 100,
        .backoff_max_ms = 5 * SEC,
        .deadline_ms = 60 * SEC,
        .replica_retry_ms = 30 * SEC,
        .warn_failure_rate = 0.05,
        .tls_verify = true,
        .reg_connections = 4,
        .reg_idle_close_ms = 60 * SEC,
        .reg_connect_timeout_ms = 10 * SEC,
        .reg_statement_timeout_ms = 30 * SEC,
    };
}

void bfs_config_free(bfs_config *c)
{
    if (!c)
        return;
    free(c->cache_dir);
    free(c->ca_file);
    free(c->token_file);
    free(c->s3_profile);
    for (int i = 0; i < c->n_rules; i++)
        bfs_config_free_urls(c->rules[i].replicas, c->rules[i].n_replicas), free(c->rules[i].prefix);
    free(c->rules);
    bfs_config_free_urls(c->allowed_roots, c->n_allowed_roots);
    free(c->path);
    memset(c, 0, sizeof *c);
}

/* ---- the configuration: loading ------------------------------------------- */

#define MAX_SECTION_KEYS 32
_Static_assert(sizeof fetch_keys / sizeof *fetch_keys <= MAX_SECTION_KEYS &&
                   sizeof cache_keys / sizeof *cache_keys <= MAX_SECTION_KEYS &&
                   sizeof registry_keys / sizeof *registry_keys <= MAX_SECTION_KEYS,
               "struct loader's lines[] must hold every key of a section");

struct loader {
    const bfs_yaml *y;
    const char *file;
    bfs_config *c;
    char **errmsg;
    int lines[sizeof sections / sizeof sections[0]][MAX_SECTION_KEYS]; /* line of each key seen, 0 when absent */
};

static int fail(struct loader *L, const bfs_yaml_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct loader *L, const bfs_yaml_node *n, const char *fmt, ...)
{
    if (L->errmsg) {
        char *what = NULL;
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&what, fmt, ap) < 0)
            what = NULL;
        va_end(ap);
        free(*L->errmsg);
        *L->errmsg = bfs_asprintf("%s:%d: %s", L->file, bfs_yaml_line(L->y, n), what ? what : "error");
        free(what);
    }
    return -EINVAL;
}

/* "64KiB", "1GiB", "1500" (bytes) for range messages. */
static void fmt_size(int64_t v, char *buf, size_t sz)
{
    static const char *names[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (u < 4 && v && v % 1024 == 0)
        v /= 1024, u++;
    snprintf(buf, sz, "%lld%s", (long long)v, u ? names[u] : "");
}

static void fmt_duration(int64_t ms, char *buf, size_t sz)
{
    if (ms && ms % DAY == 0)
        snprintf(buf, sz, "%lldd", (long long)(ms / DAY));
    else if (ms && ms % HOUR == 0)
        snprintf(buf, sz, "%lldh", (long long)(ms / HOUR));
    else if (ms && ms % MIN == 0)
        snprintf(buf, sz, "%lldm", (long long)(ms / MIN));
    else if (ms && ms % SEC == 0)
        snprintf(buf, sz, "%llds", (long long)(ms / SEC));
    else
        snprintf(buf, sz, "%lldms", (long long)ms);
}

static void fmt_value(enum kind kind, int64_t v, char *buf, size_t sz)
{
    if (kind == K_SIZE)
        fmt_size(v, buf, sz);
    else if (kind == K_DURATION)
        fmt_duration(v, buf, sz);
    else if (kind == K_RATE)
        snprintf(buf, sz, "%g", (double)v / RATE_ONE);
    else
        snprintf(buf, sz, "%lld", (long long)v);
}

int bfs_parse_bool(const char *s)
{
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    for (int i = 0; s && i < 3; i++) {
        if (!strcasecmp(s, yes[i]))
            return 1;
        if (!strcasecmp(s, no[i]))
            return 0;
    }
    return -1;
}

int bfs_yaml_repeated(const bfs_yaml *y, const bfs_yaml_node *m, size_t i)
{
    const char *key = bfs_yaml_key(y, m, i);
    for (size_t j = 0; key && j < i; j++) {
        const char *k = bfs_yaml_key(y, m, j);
        if (k && !strcmp(k, key))
            return bfs_yaml_line(y, bfs_yaml_item(y, m, j));
    }
    return 0;
}

bool bfs_yaml_twice(const bfs_yaml *y, const bfs_yaml_node *m, size_t i, const char *file, const char *where,
                    char **errmsg)
{
    int first = bfs_yaml_repeated(y, m, i);
    if (first)
        bfs_set_errmsg(errmsg, "%s:%d: %s%s is given twice (first at line %d)", file,
                       bfs_yaml_line(y, bfs_yaml_item(y, m, i)), where, bfs_yaml_key(y, m, i), first);
    return first != 0;
}

static const char *node_kind(const bfs_yaml *y, const bfs_yaml_node *n)
{
    return bfs_yaml_is_map(y, n) ? "a mapping" : bfs_yaml_is_seq(y, n) ? "a list" : "a scalar";
}

int bfs_expand_tilde(const char *s, char **out)
{
    *out = NULL;
    if (s[0] != '~') {
        *out = strdup(s);
        return *out ? 0 : -ENOMEM;
    }
    const char *slash = strchr(s, '/');
    size_t ulen = slash ? (size_t)(slash - s - 1) : strlen(s + 1);
    const char *home = NULL;
    if (ulen == 0) {
        home = getenv("HOME");
        if (!home || !*home) {
            struct passwd *pw = getpwuid(getuid());
            home = pw ? pw->pw_dir : NULL;
        }
    } else {
        char user[256];
        if (ulen >= sizeof user)
            return -ENOENT;
        memcpy(user, s + 1, ulen);
        user[ulen] = '\0';
        struct passwd *pw = getpwnam(user);
        home = pw ? pw->pw_dir : NULL;
    }
    if (!home)
        return -ENOENT;
    size_t hl = strlen(home);
    while (hl > 1 && home[hl - 1] == '/')
        hl--;
    *out = bfs_asprintf("%.*s%s", (int)hl, home, slash ? slash : "");
    return *out ? 0 : -ENOMEM;
}

/* A path value: "~" expanded, and a relative path taken relative to the
 * directory of the configuration file (the daemon runs in "/", so a path
 * relative to where `butlerfs mount` was started would break there). */
static int resolve_path(const char *file, const char *s, char **out)
{
    int ret = bfs_expand_tilde(s, out);
    if (ret < 0 || (*out)[0] == '/')
        return ret;
    const char *slash = strrchr(file, '/');
    char dir[PATH_MAX];
    if (slash && slash != file)
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - file), file);
    else
        snprintf(dir, sizeof dir, "%s", slash ? "/" : ".");
    char *abs = dir[0] == '/' ? strdup(dir) : realpath(dir, NULL);
    char *joined = abs ? bfs_asprintf("%s/%s", strcmp(abs, "/") ? abs : "", *out) : NULL;
    free(abs);
    free(*out);
    *out = joined;
    return joined ? 0 : -ENOMEM;
}

/* Why path cannot be read as a K_FILE, or NULL when it can.  stat first, so
 * a device or FIFO is refused without being opened; then open(2), not
 * access(2): open checks the effective ids, as the later reads will. */
static const char *file_problem(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return strerror(errno);
    if (S_ISDIR(st.st_mode))
        return strerror(EISDIR);
    if (!S_ISREG(st.st_mode))
        return "not a regular file";
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return strerror(errno);
    close(fd);
    return NULL;
}

static int set_key(struct loader *L, const char *section, const struct key *k, const bfs_yaml_node *v)
{
    const bfs_yaml *y = L->y;
    char *field = (char *)L->c + k->off;
    if (bfs_yaml_is_null(y, v))
        return 0; /* "key:" or "key: ~" keeps the default */
    const char *s = bfs_yaml_scalar(y, v);
    char lo[32], hi[32];
    fmt_value(k->kind, k->min, lo, sizeof lo);
    fmt_value(k->kind, k->max, hi, sizeof hi);
    char range[80] = "";
    if (k->max == INT64_MAX && k->min > 0)
        snprintf(range, sizeof range, " (allowed: at least %s)", lo);
    else if (k->max != INT64_MAX)
        snprintf(range, sizeof range, " (allowed %s..%s)", lo, hi);

    static const char *expect[] = {
        [K_SIZE] = "a size such as 4MiB",
        [K_DURATION] = "a duration such as 30s or 500ms",
        [K_INT] = "a whole number",
        [K_BOOL] = "true or false",
        [K_PATH] = "a path",
        [K_FILE] = "a path",
        [K_STRING] = "a string",
        [K_RATE] = "a fraction such as 0.05 or 5%",
    };
    if (!s)
        return fail(L, v, "%s.%s: expected %s, found %s", section, k->name, expect[k->kind],
                    node_kind(y, v));

    int64_t n = 0;
    bool ok = true;
    switch (k->kind) {
    case K_SIZE: ok = bfs_parse_size(s, &n); break;
    case K_DURATION: ok = bfs_parse_duration_ms(s, &n); break;
    case K_INT: ok = bfs_parse_i64(s, &n); break;
    case K_RATE: {
        char *end;
        errno = 0;
        double x = strtod(s, &end);
        if (end != s && *end == '%')
            x /= 100, end++;
        if (end == s || *end || errno || !(x >= 0 && x <= (double)k->max / RATE_ONE))
            return fail(L, v, "%s.%s: expected %s%s, found '%s'", section, k->name, expect[k->kind],
                        range, s);
        *(double *)field = x;
        return 0;
    }
    case K_BOOL: {
        int b = bfs_parse_bool(s);
        if (b < 0)
            return fail(L, v, "%s.%s: expected true or false, found '%s'", section, k->name, s);
        *(bool *)field = b;
        return 0;
    }
    case K_PATH:
    case K_FILE:
    case K_STRING: {
        if (!*s)
            return fail(L, v, "%s.%s: expected %s, found an empty string", section, k->name,
                        expect[k->kind]);
        char *copy = NULL;
        int ret = k->kind != K_STRING ? resolve_path(L->file, s, &copy) : ((copy = strdup(s)) ? 0 : -ENOMEM);
        if (ret == -ENOENT)
            return fail(L, v, "%s.%s: cannot expand '%s': no such user or no home directory",
                        section, k->name, s);
        if (ret < 0)
            return ret;
        const char *why = k->kind == K_FILE ? file_problem(copy) : NULL;
        if (why) {
            ret = fail(L, v, "%s.%s %s: %s; %s", section, k->name, copy, why, k->fix);
            free(copy);
            return ret;
        }
        char **dst = (char **)field;
        free(*dst);
        *dst = copy;
        return 0;
    }
    }
    if (!ok)
        return fail(L, v, "%s.%s: expected %s%s, found '%s'", section, k->name, expect[k->kind],
                    range, s);
    if (n < k->min || n > k->max)
        return fail(L, v, "%s.%s: %s is out of range%s", section, k->name, s, range);
    if (k->kind == K_INT)
        *(int *)field = (int)n;
    else
        *(int64_t *)field = n;
    return 0;
}

static int load_section(struct loader *L, int si, const bfs_yaml_node *map)
{
    const bfs_yaml *y = L->y;
    const struct section *sec = &sections[si];
    if (bfs_yaml_is_null(y, map))
        return 0;
    if (!bfs_yaml_is_map(y, map))
        return fail(L, map, "%s: expected a mapping of keys, found %s", sec->name, node_kind(y, map));
    for (size_t i = 0; i < bfs_yaml_len(y, map); i++) {
        const char *name = bfs_yaml_key(y, map, i);
        const bfs_yaml_node *v = bfs_yaml_item(y, map, i);
        size_t k = 0;
        while (name && k < sec->n && strcmp(sec->keys[k].name, name))
            k++;
        if (!name || k == sec->n) {
            char known[512] = "";
            size_t len = 0;
            for (size_t j = 0; j < sec->n && len < sizeof known; j++)
                len += (size_t)snprintf(known + len, sizeof known - len, "%s%s", j ? ", " : "",
                                        sec->keys[j].name);
            return fail(L, yaml_key_node(y, map, i), "unknown key '%s.%s' (%s takes: %s)", sec->name,
                        name ? name : "?", sec->name, known);
        }
        if (L->lines[si][k])
            return fail(L, yaml_key_node(y, map, i), "%s.%s is given twice (first at line %d)",
                        sec->name, name, L->lines[si][k]);
        L->lines[si][k] = bfs_yaml_line(y, yaml_key_node(y, map, i));
        int ret = set_key(L, sec->name, &sec->keys[k], v);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* Normalize a prefix or replica base (see the file comment).  Returns 0,
 * -EINVAL with *why set, or -ENOMEM. */
static int normalize_location(const char *s, bool replica, char **out, const char **why)
{
    *out = NULL;
    char *p = NULL;
    if (s[0] == '~') {
        int ret = bfs_expand_tilde(s, &p);
        if (ret == -ENOENT)
            *why = "cannot expand '~': no such user or no home directory";
        if (ret < 0)
            return ret == -ENOENT ? -EINVAL : ret;
    }
    const char *v = p ? p : s;
    char *n;
    if (v[0] == '/') {
        n = bfs_asprintf("file://%s", v);
    } else if (bfs_startswith(v, "file://")) {
        const char *path = v + strlen("file://");
        if (bfs_startswith(path, "localhost/"))
            path += strlen("localhost");
        if (path[0] != '/') {
            free(p);
            *why = "a file:// URI must name a local absolute path (file:///dir/)";
            return -EINVAL;
        }
        n = bfs_asprintf("file://%s", path);
    } else if (strstr(v, "://")) {
        if (replica && !bfs_startswith(v, "http://") && !bfs_startswith(v, "https://") &&
            !bfs_startswith(v, "s3://")) {
            free(p);
            *why = "unsupported scheme (use file://, http://, https:// or s3://, or an absolute path)";
            return -EINVAL;
        }
        n = strdup(v);
    } else {
        free(p);
        *why = "expected a URI (scheme://...) or an absolute path";
        return -EINVAL;
    }
    free(p);
    if (!n)
        return -ENOMEM;
    size_t len = strlen(n);
    if (n[len - 1] != '/') {
        char *slashed = bfs_asprintf("%s/", n);
        free(n);
        if (!slashed)
            return -ENOMEM;
        n = slashed;
    }
    *out = n;
    return 0;
}

static int load_rule(struct loader *L, size_t idx, const bfs_yaml_node *item, bfs_source_rule *r)
{
    const bfs_yaml *y = L->y;
    if (!bfs_yaml_is_map(y, item))
        return fail(L, item, "sources[%zu]: expected a mapping with prefix and replicas, found %s",
                    idx, node_kind(y, item));
    const bfs_yaml_node *prefix = NULL, *replicas = NULL;
    for (size_t i = 0; i < bfs_yaml_len(y, item); i++) {
        const char *name = bfs_yaml_key(y, item, i);
        const bfs_yaml_node *v = bfs_yaml_item(y, item, i);
        const bfs_yaml_node **slot = !name ? NULL : !strcmp(name, "prefix") ? &prefix
                                   : !strcmp(name, "replicas") ? &replicas : NULL;
        if (!slot)
            return fail(L, yaml_key_node(y, item, i),
                        "unknown key 'sources[%zu].%s' (a source takes: prefix, replicas)", idx,
                        name ? name : "?");
        if (*slot)
            return fail(L, yaml_key_node(y, item, i), "sources[%zu].%s is given twice", idx, name);
        *slot = v;
    }
    const char *why = NULL;
    const char *ps = bfs_yaml_scalar(y, prefix);
    if (!prefix || bfs_yaml_is_null(y, prefix))
        return fail(L, item, "sources[%zu]: missing prefix (the URI prefix of the locations to map)", idx);
    if (!ps)
        return fail(L, prefix, "sources[%zu].prefix: expected a URI prefix, found %s", idx,
                    node_kind(y, prefix));
    int ret = normalize_location(ps, false, &r->prefix, &why);
    if (ret == -EINVAL)
        return fail(L, prefix, "sources[%zu].prefix '%s': %s", idx, ps, why);
    if (ret < 0)
        return ret;
    if (!replicas || bfs_yaml_is_null(y, replicas))
        return fail(L, item, "sources[%zu]: missing replicas (a list of base URIs, tried in order)", idx);
    if (!bfs_yaml_is_seq(y, replicas) || bfs_yaml_len(y, replicas) == 0)
        return fail(L, replicas, "sources[%zu].replicas: expected a non-empty list of base URIs, found %s",
                    idx, bfs_yaml_is_seq(y, replicas) ? "an empty list" : node_kind(y, replicas));
    size_t n = bfs_yaml_len(y, replicas);
    r->replicas = calloc(n, sizeof *r->replicas);
    if (!r->replicas)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const bfs_yaml_node *v = bfs_yaml_item(y, replicas, i);
        const char *s = bfs_yaml_scalar(y, v);
        if (!s || bfs_yaml_is_null(y, v))
            return fail(L, v, "sources[%zu].replicas[%zu]: expected a base URI, found %s", idx, i,
                        s ? "nothing" : node_kind(y, v));
        ret = normalize_location(s, true, &r->replicas[i], &why);
        if (ret == -EINVAL)
            return fail(L, v, "sources[%zu].replicas[%zu] '%s': %s", idx, i, s, why);
        if (ret < 0)
            return ret;
        r->n_replicas++;
    }
    return 0;
}

static int load_sources(struct loader *L, const bfs_yaml_node *seq)
{
    const bfs_yaml *y = L->y;
    if (bfs_yaml_is_null(y, seq))
        return 0;
    if (!bfs_yaml_is_seq(y, seq))
        return fail(L, seq, "sources: expected a list of {prefix, replicas}, found %s", node_kind(y, seq));
    size_t n = bfs_yaml_len(y, seq);
    bfs_config *c = L->c;
    c->rules = calloc(n ? n : 1, sizeof *c->rules);
    if (!c->rules)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const bfs_yaml_node *item = bfs_yaml_item(y, seq, i);
        c->n_rules++;
        int ret = load_rule(L, i, item, &c->rules[i]);
        if (ret < 0)
            return ret;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(c->rules[j].prefix, c->rules[i].prefix))
                return fail(L, item, "sources[%zu]: prefix %s is already mapped by sources[%zu]", i,
                            c->rules[i].prefix, j);
    }
    return 0;
}

/* allowed_roots: a list of local directories (see config.h). */
static int load_allowed_roots(struct loader *L, const bfs_yaml_node *seq)
{
    const bfs_yaml *y = L->y;
    if (bfs_yaml_is_null(y, seq))
        return 0;
    if (!bfs_yaml_is_seq(y, seq))
        return fail(L, seq, "allowed_roots: expected a list of directories, found %s", node_kind(y, seq));
    size_t n = bfs_yaml_len(y, seq);
    bfs_config *c = L->c;
    c->allowed_roots = calloc(n ? n : 1, sizeof *c->allowed_roots);
    if (!c->allowed_roots)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const bfs_yaml_node *v = bfs_yaml_item(y, seq, i);
        const char *s = bfs_yaml_scalar(y, v);
        if (!s || bfs_yaml_is_null(y, v) || !*s)
            return fail(L, v, "allowed_roots[%zu]: expected a directory, found %s", i,
                        s ? "nothing" : node_kind(y, v));
        if (bfs_startswith(s, "file://")) {
            const char *path = s + strlen("file://");
            if (bfs_startswith(path, "localhost/"))
                path += strlen("localhost");
            if (path[0] != '/')
                return fail(L, v, "allowed_roots[%zu] '%s': a file:// URI must name a local absolute "
                            "path (file:///dir/)", i, s);
            s = path;
        } else if (strstr(s, "://")) {
            return fail(L, v, "allowed_roots[%zu] '%s': expected a local directory; remote locations "
                        "are allowed by mapping them under sources:", i, s);
        }
        char *dir = NULL;
        int ret = resolve_path(L->file, s, &dir);
        if (ret == -ENOENT)
            return fail(L, v, "allowed_roots[%zu]: cannot expand '%s': no such user or no home directory",
                        i, s);
        if (ret < 0)
            return ret;
        size_t len = strlen(dir);
        while (len > 1 && dir[len - 1] == '/')
            dir[--len] = '\0';
        c->allowed_roots[c->n_allowed_roots++] = dir;
    }
    return 0;
}

/* Index of key name in section si. */
static size_t key_index(int si, const char *name)
{
    size_t k = 0;
    while (strcmp(sections[si].keys[k].name, name))
        k++;
    return k;
}

/* a >= b, both int64_t sizes or durations of the same kind; reported at a's
 * line when a was given, else at b's. */
static int check_at_least(struct loader *L, const bfs_yaml_node *root, int sa, const char *a, int sb,
                          const char *b)
{
    size_t ka = key_index(sa, a), kb = key_index(sb, b);
    const struct key *A = &sections[sa].keys[ka], *B = &sections[sb].keys[kb];
    int64_t va = *(int64_t *)((char *)L->c + A->off), vb = *(int64_t *)((char *)L->c + B->off);
    if (va >= vb)
        return 0;
    char sa_buf[32], sb_buf[32], path[64];
    fmt_value(A->kind, va, sa_buf, sizeof sa_buf);
    fmt_value(B->kind, vb, sb_buf, sizeof sb_buf);
    bool at_a = L->lines[sa][ka] != 0;
    snprintf(path, sizeof path, "%s.%s", sections[at_a ? sa : sb].name, at_a ? a : b);
    const bfs_yaml_node *n = bfs_yaml_get(L->y, root, path);
    return fail(L, n, "%s.%s (%s) must be at least %s.%s (%s)", sections[sa].name, a, sa_buf,
                sections[sb].name, b, sb_buf);
}

static int section_index(const char *name)
{
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++)
        if (!strcmp(sections[i].name, name))
            return (int)i;
    return -1;
}

static int load_document(struct loader *L)
{
    const bfs_yaml *y = L->y;
    const bfs_yaml_node *root = bfs_yaml_root(y);
    if (bfs_yaml_is_null(y, root))
        return 0; /* an empty file: all defaults */
    if (!bfs_yaml_is_map(y, root))
        return fail(L, root, "expected a mapping with cache:, fetch: and sources:, found %s",
                    node_kind(y, root));
    bool seen_sources = false, seen_allowed = false;
    int seen[sizeof sections / sizeof sections[0]] = {0};
    for (size_t i = 0; i < bfs_yaml_len(y, root); i++) {
        const char *name = bfs_yaml_key(y, root, i);
        const bfs_yaml_node *v = bfs_yaml_item(y, root, i);
        int ret;
        if (name && !strcmp(name, "sources")) {
            if (seen_sources)
                return fail(L, yaml_key_node(y, root, i), "sources is given twice");
            seen_sources = true;
            ret = load_sources(L, v);
        } else if (name && !strcmp(name, "allowed_roots")) {
            if (seen_allowed)
                return fail(L, yaml_key_node(y, root, i), "allowed_roots is given twice");
            seen_allowed = true;
            ret = load_allowed_roots(L, v);
        } else if (name && section_index(name) >= 0) {
            int si = section_index(name);
            if (seen[si])
                return fail(L, yaml_key_node(y, root, i), "%s is given twice (first at line %d)", name,
                            seen[si]);
            seen[si] = bfs_yaml_line(y, yaml_key_node(y, root, i));
            ret = load_section(L, si, v);
        } else if (name && (!strcmp(name, "ingest") || !strcmp(name, "transfer"))) {
            /* owned by writers/ (ingest.c, transfer.c), read at an -o rw mount */
            int first = bfs_yaml_repeated(y, root, i);
            ret = first ? fail(L, yaml_key_node(y, root, i), "%s is given twice (first at line %d)", name, first)
                        : 0;
        } else {
            return fail(L, yaml_key_node(y, root, i),
                        "unknown key '%s' (the file takes: cache, fetch, registry, sources, allowed_roots, "
                        "ingest, transfer)", name ? name : "?");
        }
        if (ret < 0)
            return ret;
    }
    int ret = check_at_least(L, root, 0, "max_size", 0, "block_size");
    if (!ret)
        ret = check_at_least(L, root, 1, "memory_budget", 0, "block_size");
    if (!ret)
        ret = check_at_least(L, root, 1, "backoff_max", 1, "backoff_base");
    return ret;
}

/* $XDG_CONFIG_HOME/butlerfs/config.yaml, else ~/.config/butlerfs/config.yaml;
 * NULL when neither can be named. */
static char *default_path(void)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    if (xdg && xdg[0] == '/')
        return bfs_asprintf("%s/butlerfs/config.yaml", xdg);
    char *p = NULL;
    if (bfs_expand_tilde("~/.config/butlerfs/config.yaml", &p) < 0)
        return NULL;
    return p;
}

int bfs_config_load(const char *path, bfs_config *c, char **errmsg)
{
    bfs_config_defaults(c);
    bool explicit_path = path != NULL;
    char *file = NULL;
    if (explicit_path) {
        int ret = bfs_expand_tilde(path, &file);
        if (ret == -ENOENT)
            bfs_set_errmsg(errmsg, "%s: cannot expand '~': no such user or no home directory", path);
        if (ret < 0)
            return ret;
    } else if (!(file = default_path())) {
        return 0;
    }

    FILE *f = fopen(file, "r");
    if (!f) {
        int ret = -errno;
        struct stat sb;
        /* A default file that cannot even be seen (missing, or under a home
         * directory this user may not search, as under sudo -u) is absent;
         * one that is there but unreadable is a mistake to report. */
        if (!explicit_path && (ret == -ENOENT || stat(file, &sb) < 0)) {
            free(file);
            return 0;
        }
        bfs_set_errmsg(errmsg, "%s: cannot read the configuration file: %s", file, strerror(-ret));
        free(file);
        return ret;
    }
    bfs_yaml *y = NULL;
    int ret = bfs_yaml_load_stream(f, file, &y, errmsg, NULL);
    fclose(f);
    if (ret < 0) {
        free(file);
        return ret;
    }

    bfs_config tmp;
    bfs_config_defaults(&tmp);
    struct loader L = {.y = y, .file = file, .c = &tmp, .errmsg = errmsg};
    ret = load_document(&L);
    bfs_yaml_free(y);
    if (ret < 0) {
        if (ret == -ENOMEM)
            bfs_set_errmsg(errmsg, "%s: out of memory", file);
        bfs_config_free(&tmp);
        free(file);
        return ret;
    }
    tmp.path = file;
    *c = tmp;
    return 0;
}

/* ---- source chains -------------------------------------------------------- */

void bfs_config_free_urls(char **urls, int n)
{
    if (!urls)
        return;
    for (int i = 0; i < n; i++)
        free(urls[i]);
    free(urls);
}

/* location as matched against normalized prefixes: local paths and
 * file://localhost/ become file:///... .  Returns a pointer into location
 * (rest after "file://" etc.) with *scheme set to what to put before it. */
static const char *match_form(const char *location, const char **scheme)
{
    *scheme = "";
    if (location[0] == '/') {
        *scheme = "file://";
        return location;
    }
    if (bfs_startswith(location, "file://localhost/")) {
        *scheme = "file://";
        return location + strlen("file://localhost");
    }
    return location;
}

/* Does the location (as scheme + rest) start with prefix p (ending in '/'),
 * or equal p without its '/'?  *tail gets what follows the prefix. */
static bool prefix_match(const char *scheme, const char *rest, const char *p, const char **tail)
{
    size_t sl = strlen(scheme), pl = strlen(p);
    if (sl > pl || strncmp(scheme, p, sl))
        return false;
    p += sl, pl -= sl;
    if (!strncmp(rest, p, pl)) {
        *tail = rest + pl;
        return true;
    }
    if (pl && !strncmp(rest, p, pl - 1) && rest[pl - 1] == '\0') {
        *tail = NULL; /* the prefix directory itself */
        return true;
    }
    return false;
}

int bfs_config_replicas(const bfs_config *c, const char *location, char ***urls)
{
    *urls = NULL;
    const char *scheme;
    const char *rest = match_form(location, &scheme);
    const bfs_source_rule *best = NULL;
    const char *best_tail = NULL;
    size_t best_len = 0;
    for (int i = 0; c && i < c->n_rules; i++) {
        const char *tail;
        size_t len = strlen(c->rules[i].prefix);
        if (len > best_len && prefix_match(scheme, rest, c->rules[i].prefix, &tail)) {
            best = &c->rules[i];
            best_tail = tail;
            best_len = len;
        }
    }
    int n = best ? best->n_replicas : 1;
    char **out = calloc((size_t)n, sizeof *out);
    if (!out)
        return -ENOMEM;
    for (int i = 0; i < n; i++) {
        if (!best)
            out[i] = strdup(location);
        else if (best_tail)
            out[i] = bfs_asprintf("%s%s", best->replicas[i], best_tail);
        else /* without the base's trailing '/' */
            out[i] = bfs_asprintf("%.*s", (int)strlen(best->replicas[i]) - 1, best->replicas[i]);
        if (!out[i]) {
            bfs_config_free_urls(out, i);
            return -ENOMEM;
        }
    }
    *urls = out;
    return n;
}
