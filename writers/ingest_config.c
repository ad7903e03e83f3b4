/*
 * ingest_config.c - the `ingest:` section of the configuration file
 * (writers.h, docs/config.md): its defaults, its parser and its release.
 * Unknown keys and bad values are errors that name the file and line, as
 * in every other section (common/config.h).
 */
#include "writers.h"

#include "config.h"
#include "strutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bfs_ingest_config_defaults(bfs_ingest_config *c)
{
    memset(c, 0, sizeof *c);
    c->inbox_ttl_ms = 60000;
    c->replica_wait_ms = 3600000;
    c->registry_deadline_ms = 30000;
    c->staging_retry_ms = 60000;
    c->workers = 2;
    c->hs_wait_ms = 10000;
    c->webhook_queue = 10000;
    c->check_amplifiers = true;
    c->drop_pages = true;
}

void bfs_ingest_config_free(bfs_ingest_config *c)
{
    for (int i = 0; i < c->n_readonly_collections; i++)
        free(c->readonly_collections[i]);
    free(c->readonly_collections);
    for (int i = 0; i < c->n_staging; i++)
        free(c->staging[i]);
    free(c->staging);
    for (int i = 0; i < c->n_corrections; i++)
        free(c->corrections[i]);
    free(c->corrections);
    free(c->default_storage_class);
    free(c->quarantine_dir);
    free(c->events_file);
    free(c->hs_dir);
    free(c->hs_url);
    free(c->webhook);
    bfs_ingest_config_defaults(c);
}

static int cfg_fail(char **errmsg, const char *file, const bfs_yaml *y, const bfs_yaml_node *n,
                    const char *what, const char *key)
{
    bfs_set_errmsg(errmsg, "%s:%d: ingest.%s %s", file, bfs_yaml_line(y, n), key, what);
    return -EINVAL;
}

static int cfg_strings(const bfs_yaml *y, const bfs_yaml_node *v, const char *file, const char *key,
                       char ***out, int *n, char **errmsg)
{
    if (!bfs_yaml_is_seq(y, v))
        return cfg_fail(errmsg, file, y, v, "must be a list of strings", key);
    size_t len = bfs_yaml_len(y, v);
    char **list = calloc(len ? len : 1, sizeof *list);
    if (!list)
        return -ENOMEM;
    for (size_t i = 0; i < len; i++) {
        const char *s = bfs_yaml_scalar(y, bfs_yaml_item(y, v, i));
        if (!s || !*s || !(list[i] = strdup(s))) {
            for (size_t k = 0; k < i; k++)
                free(list[k]);
            free(list);
            return s && *s ? -ENOMEM : cfg_fail(errmsg, file, y, v, "must hold non-empty strings", key);
        }
    }
    *out = list;
    *n = (int)len;
    return 0;
}

/* An absolute path ("~" expanded) into *dst, replacing what was there. */
static int cfg_path(const bfs_yaml *y, const bfs_yaml_node *v, const char *file, const char *key, char **dst,
                    char **errmsg)
{
    const char *s = bfs_yaml_scalar(y, v);
    char *p = NULL;
    int ret = s && *s ? bfs_expand_tilde(s, &p) : -EINVAL;
    if (ret == -ENOMEM)
        return ret;
    if (ret < 0 || p[0] != '/') {
        free(p);
        return cfg_fail(errmsg, file, y, v, "must be an absolute path (a leading ~ is expanded)", key);
    }
    free(*dst);
    *dst = p;
    return 0;
}

static int cfg_bool(const bfs_yaml *y, const bfs_yaml_node *v, const char *file, const char *key, bool *dst,
                    char **errmsg)
{
    int b = bfs_parse_bool(bfs_yaml_scalar(y, v));
    if (b < 0)
        return cfg_fail(errmsg, file, y, v, "must be true or false", key);
    *dst = b;
    return 0;
}

/* The keys ingest: takes, for the message that names an unknown one. */
static const char *const ingest_keys[] = {
    "readonly_collections", "create_dataset_types", "default_storage_class", "checksums", "check_amplifiers",
    "allow_remove", "corrections", "staging", "quarantine", "events", "webhook", "webhook_queue",
    "header_service", "inbox_ttl", "registry_deadline", "replica_wait", "staging_retry", "workers"};

static bool ingest_key(const char *key)
{
    for (size_t i = 0; key && i < sizeof ingest_keys / sizeof ingest_keys[0]; i++)
        if (!strcmp(key, ingest_keys[i]))
            return true;
    return false;
}

/* header_service: {dir: DIR | url: TEMPLATE, wait: DURATION} */
static int cfg_header_service(const bfs_yaml *y, const bfs_yaml_node *v, const char *file,
                              bfs_ingest_config *c, char **errmsg)
{
    if (!bfs_yaml_is_map(y, v))
        return cfg_fail(errmsg, file, y, v, "must be a mapping with dir or url, and wait", "header_service");
    for (size_t i = 0; i < bfs_yaml_len(y, v); i++) {
        const char *key = bfs_yaml_key(y, v, i);
        const bfs_yaml_node *n = bfs_yaml_item(y, v, i);
        const char *s = bfs_yaml_scalar(y, n);
        int64_t ms;
        if (bfs_yaml_twice(y, v, i, file, "ingest.header_service.", errmsg))
            return -EINVAL;
        if (key && !strcmp(key, "dir")) {
            int ret = cfg_path(y, n, file, "header_service.dir", &c->hs_dir, errmsg);
            if (ret < 0)
                return ret;
        } else if (key && !strcmp(key, "url")) {
            if (!s || (!bfs_startswith(s, "http://") && !bfs_startswith(s, "https://")) || !strstr(s, "{obsid}"))
                return cfg_fail(errmsg, file, y, n, "must be an http(s) URL holding {obsid}", "header_service.url");
            free(c->hs_url);
            if (!(c->hs_url = strdup(s)))
                return -ENOMEM;
        } else if (key && !strcmp(key, "wait")) {
            if (!s || !bfs_parse_duration_ms(s, &ms) || ms < 0 || ms > 3600000)
                return cfg_fail(errmsg, file, y, n, "must be a duration from 0 to 1h (e.g. 10s)",
                                "header_service.wait");
            c->hs_wait_ms = ms;
        } else {
            bfs_set_errmsg(errmsg, "%s:%d: unknown key 'ingest.header_service.%s' (it takes: dir, url, wait)",
                           file, bfs_yaml_line(y, n), key ? key : "?");
            return -EINVAL;
        }
    }
    if (!c->hs_dir == !c->hs_url)
        return cfg_fail(errmsg, file, y, v, "needs exactly one of dir and url", "header_service");
    return 0;
}

int bfs_ingest_config_parse(const bfs_yaml *y, const bfs_yaml_node *section, const char *file,
                            bfs_ingest_config *c, char **errmsg)
{
    if (bfs_yaml_is_null(y, section))
        return 0;
    if (!bfs_yaml_is_map(y, section))
        return cfg_fail(errmsg, file, y, section, "must be a mapping", "(section)");
    for (size_t i = 0; i < bfs_yaml_len(y, section); i++) {
        const char *key = bfs_yaml_key(y, section, i);
        const bfs_yaml_node *v = bfs_yaml_item(y, section, i);
        const char *s = bfs_yaml_scalar(y, v);
        int ret = 0;
        int64_t n;
        if (bfs_yaml_twice(y, section, i, file, "ingest.", errmsg)) {
            ret = -EINVAL;
        } else if (!key) {
            ret = cfg_fail(errmsg, file, y, v, "has a key that is not a string", "?");
        } else if (ingest_key(key) && bfs_yaml_is_null(y, v)) {
            ret = 0; /* "key:" keeps the default, as everywhere in the file */
        } else if (!strcmp(key, "readonly_collections")) {
            ret = cfg_strings(y, v, file, key, &c->readonly_collections, &c->n_readonly_collections, errmsg);
        } else if (!strcmp(key, "staging") || !strcmp(key, "corrections")) {
            char ***list = key[0] == 's' ? &c->staging : &c->corrections;
            int *nl = key[0] == 's' ? &c->n_staging : &c->n_corrections;
            ret = cfg_strings(y, v, file, key, list, nl, errmsg);
            for (int k = 0; ret == 0 && k < *nl; k++) {
                char *p = NULL;
                int e = bfs_expand_tilde((*list)[k], &p);
                if (e == -ENOMEM)
                    return e;
                if (e == 0) {
                    free((*list)[k]);
                    (*list)[k] = p;
                }
                if (e < 0 || (*list)[k][0] != '/')
                    ret = cfg_fail(errmsg, file, y, v, "must hold absolute directories (a leading ~ is expanded)",
                                   key);
            }
        } else if (!strcmp(key, "create_dataset_types") || !strcmp(key, "check_amplifiers") ||
                   !strcmp(key, "allow_remove")) {
            ret = cfg_bool(y, v, file, key,
                           key[0] == 'a' ? &c->allow_remove
                           : key[1] == 'r' ? &c->create_dataset_types : &c->check_amplifiers, errmsg);
        } else if (!strcmp(key, "checksums")) {
            if (!s || (strcmp(s, "strict") && strcmp(s, "advisory")))
                ret = cfg_fail(errmsg, file, y, v, "must be strict or advisory", key);
            else
                c->checksums_advisory = !strcmp(s, "advisory");
        } else if (!strcmp(key, "page_cache")) {
            if (!s || (strcmp(s, "drop") && strcmp(s, "keep")))
                ret = cfg_fail(errmsg, file, y, v, "must be drop or keep", key);
            else
                c->drop_pages = !strcmp(s, "drop");
        } else if (!strcmp(key, "quarantine") || !strcmp(key, "events")) {
            ret = cfg_path(y, v, file, key, key[0] == 'q' ? &c->quarantine_dir : &c->events_file, errmsg);
        } else if (!strcmp(key, "default_storage_class")) {
            if (!s || !*s)
                ret = cfg_fail(errmsg, file, y, v, "must be a non-empty string", key);
            else if (!(free(c->default_storage_class), c->default_storage_class = strdup(s)))
                ret = -ENOMEM;
        } else if (!strcmp(key, "inbox_ttl") || !strcmp(key, "registry_deadline") || !strcmp(key, "replica_wait")) {
            if (!s || !bfs_parse_duration_ms(s, &n) || n < 0 || n > 86400000)
                ret = cfg_fail(errmsg, file, y, v, "must be a duration from 0 to 1d (e.g. 60s)", key);
            else
                *(key[0] == 'i' ? &c->inbox_ttl_ms : key[0] == 'r' && key[2] == 'g' ? &c->registry_deadline_ms
                                                                                   : &c->replica_wait_ms) = n;
        } else if (!strcmp(key, "staging_retry")) {
            if (!s || !bfs_parse_duration_ms(s, &n) || n < 1000 || n > 3600000)
                ret = cfg_fail(errmsg, file, y, v, "must be a duration from 1s to 1h (e.g. 60s)", key);
            else
                c->staging_retry_ms = n;
        } else if (!strcmp(key, "webhook")) {
            if (!s || (!bfs_startswith(s, "http://") && !bfs_startswith(s, "https://")))
                ret = cfg_fail(errmsg, file, y, v, "must be an http(s) URL", key);
            else if (!(free(c->webhook), c->webhook = strdup(s)))
                ret = -ENOMEM;
        } else if (!strcmp(key, "webhook_queue")) {
            if (!s || !bfs_parse_i64(s, &n) || n < 1 || n > 10000000)
                ret = cfg_fail(errmsg, file, y, v, "must be a whole number from 1 to 10000000", key);
            else
                c->webhook_queue = n;
        } else if (!strcmp(key, "header_service")) {
            ret = cfg_header_service(y, v, file, c, errmsg);
        } else if (!strcmp(key, "workers")) {
            if (!s || !bfs_parse_i64(s, &n) || n < 1 || n > 64)
                ret = cfg_fail(errmsg, file, y, v, "must be a whole number from 1 to 64", key);
            else
                c->workers = (int)n;
        } else {
            char takes[512] = "";
            for (size_t k = 0; k < sizeof ingest_keys / sizeof ingest_keys[0]; k++)
                snprintf(takes + strlen(takes), sizeof takes - strlen(takes), "%s%s", k ? ", " : "", ingest_keys[k]);
            bfs_set_errmsg(errmsg, "%s:%d: unknown key 'ingest.%s' (ingest takes: %s)", file, bfs_yaml_line(y, v),
                           key, takes);
            ret = -EINVAL;
        }
        if (ret < 0)
            return ret;
    }
    return 0;
}

