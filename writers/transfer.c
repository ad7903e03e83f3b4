/*
 * transfer.c - the durable transfer queue (transfer.h; docs/transfer.md).
 *
 * The store.  REPO/.butlerfs/queue/{pending,inflight,parked,done}/J.json,
 * J = "<dataset id>.<destination>".  A job file is JSON: dataset_id, run,
 * dataset_type, path (relative to the datastore root), size, destination,
 * attempts, last_error, created and next_try (Unix seconds), done_at.
 * Every write of a job file is bfs_durable_write (durable.h); every change
 * of state is one rename (bfs_durable_move).
 *
 * The state machine of one job:
 *
 *   (ingest registers) --enqueue--> PENDING --claim--> INFLIGHT
 *   INFLIGHT --PUT temp, MOVE final, verify: ok--> DONE
 *   INFLIGHT --failure, attempts < max--> PENDING (next_try = now + backoff)
 *   INFLIGHT --failure, attempts = max--> PARKED (last_error kept)
 *   PARKED --`butlerfs queue retry`--> PENDING (attempts 0)
 *
 * What holds in each state: PENDING, the job is durable and the object is
 * absent at the destination, or a stale temporary object, or (after a crash
 * past its MOVE) complete.  INFLIGHT, a worker of this daemon owns it.
 * DONE, the object is at its final name and verified.  PARKED, it failed
 * max_attempts times and waits for a person.
 *
 * An s3:// destination gets a PutObject to the final key instead of the
 * temporary name and MOVE: S3 makes an object visible only once it is
 * complete.
 *
 * Crash story (kill -9 anywhere, then a new daemon): a job file is either
 * in the old state's directory or the new one's (one rename).  At open,
 * every INFLIGHT job goes back to PENDING and is uploaded again from the
 * start.  The temporary name is "<final>.butlerfs-<first 8 of J>", the same
 * for every attempt of a job, so a crash leaves at most one temporary
 * object per job, which the next attempt overwrites and its MOVE consumes;
 * the final name only ever receives a complete object (MOVE is atomic on
 * the server) and only this job's bytes.  Enqueueing is idempotent (J is a
 * function of dataset and destination), so the ingest can replay it.
 *
 * Workers: cfg->concurrency threads.  Each takes the oldest due job whose
 * destination is not backing off, marks it busy (in memory) and renames it
 * to inflight/.  Backoff is per destination: after a failure its next
 * request waits min(backoff_max, 1 s * 2^(failures - 1)), with +-50 % jitter
 * (bfs_backoff_ms of fetchers/health.h, BFS_JITTER_SPREAD); a success
 * resets it.  Lock order: t->lock only; no I/O under it except the
 * renames of job files, which are small and local.
 */
#include "transfer.h"

#include "durable.h"
#include "clock.h"
#include "health.h"
#include "s3.h"
#include "s3_multipart.h"
#include "sidecar.h"
#include "log.h"
#include "strutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define TAG "transfer"
#define RESCAN_S 10.0
#define DONE_KEEP_S (7 * 86400.0) /* done records are kept a week */
#define STATES 4
static const char *const state_dirs[STATES] = {"pending", "inflight", "parked", "done"};
enum { ST_PENDING, ST_INFLIGHT, ST_PARKED, ST_DONE };

/* ---- configuration -------------------------------------------------------- */

void bfs_transfer_config_defaults(bfs_transfer_config *c)
{
    memset(c, 0, sizeof *c);
    c->concurrency = 4;
    c->max_attempts = 10;
    c->backoff_max_ms = 300000;
    c->request_timeout_ms = 600000;
    c->verify_readback = true;
    c->multipart_threshold = 64LL << 20;
    c->multipart_part_size = 16LL << 20;
}

static void free_strings(char **v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void bfs_transfer_config_free(bfs_transfer_config *c)
{
    for (int i = 0; i < c->n_dests; i++) {
        free(c->dests[i].name);
        free(c->dests[i].uri);
        free_strings(c->dests[i].collections, c->dests[i].n_collections);
        free_strings(c->dests[i].dataset_types, c->dests[i].n_dataset_types);
        free_strings(c->dests[i].instruments, c->dests[i].n_instruments);
        free(c->dests[i].template);
    }
    free(c->dests);
    for (int i = 0; i < c->n_retention; i++) {
        free_strings(c->retention[i].collections, c->retention[i].n_collections);
        free_strings(c->retention[i].dataset_types, c->retention[i].n_dataset_types);
    }
    free(c->retention);
    bfs_transfer_config_defaults(c);
}

static int cfg_fail(char **errmsg, const char *file, const bfs_yaml *y, const bfs_yaml_node *n, const char *key,
                    const char *what)
{
    bfs_set_errmsg(errmsg, "%s:%d: transfer.%s %s", file, bfs_yaml_line(y, n), key, what);
    return -EINVAL;
}

/* A string, or a list of strings, into a new array. */
static int cfg_globs(const bfs_yaml *y, const bfs_yaml_node *v, const char *file, const char *key, char ***out,
                     int *n, char **errmsg)
{
    const char *one = bfs_yaml_scalar(y, v);
    size_t len = one ? 1 : bfs_yaml_is_seq(y, v) ? bfs_yaml_len(y, v) : 0;
    if (!len)
        return cfg_fail(errmsg, file, y, v, key, "must be a glob or a non-empty list of globs");
    char **list = calloc(len, sizeof *list);
    if (!list)
        return -ENOMEM;
    for (size_t i = 0; i < len; i++) {
        const char *s = one ? one : bfs_yaml_scalar(y, bfs_yaml_item(y, v, i));
        if (!s || !*s) {
            free_strings(list, (int)i);
            return cfg_fail(errmsg, file, y, v, key, "must hold non-empty strings");
        }
        if (!(list[i] = strdup(s))) {
            free_strings(list, (int)i);
            return -ENOMEM;
        }
    }
    *out = list;
    *n = (int)len;
    return 0;
}

static int cfg_dest(const bfs_yaml *y, const bfs_yaml_node *m, const char *file, bfs_transfer_dest *d,
                    char **errmsg)
{
    if (!bfs_yaml_is_map(y, m))
        return cfg_fail(errmsg, file, y, m, "destinations", "must hold mappings (name, uri, collections)");
    for (size_t i = 0; i < bfs_yaml_len(y, m); i++) {
        const char *key = bfs_yaml_key(y, m, i);
        const bfs_yaml_node *v = bfs_yaml_item(y, m, i);
        const char *s = bfs_yaml_scalar(y, v);
        int ret = 0;
        if (bfs_yaml_twice(y, m, i, file, "transfer.destinations.", errmsg))
            return -EINVAL;
        if (key && !strcmp(key, "name")) {
            if (!s || !bfs_is_one_component(s) || strchr(s, '.'))
                return cfg_fail(errmsg, file, y, v, "destinations.name",
                                "must be a plain name (no '/', '.' or control characters)");
            ret = (d->name = strdup(s)) ? 0 : -ENOMEM;
        } else if (key && !strcmp(key, "uri")) {
            if (!s || (!bfs_startswith(s, "http://") && !bfs_startswith(s, "https://") &&
                       !bfs_startswith(s, "s3://")))
                return cfg_fail(errmsg, file, y, v, "destinations.uri",
                                "must be an http(s):// (WebDAV) or s3:// prefix");
            size_t l = strlen(s);
            ret = (d->uri = l && s[l - 1] == '/' ? strdup(s) : bfs_asprintf("%s/", s)) ? 0 : -ENOMEM;
        } else if (key && !strcmp(key, "collections")) {
            ret = cfg_globs(y, v, file, "destinations.collections", &d->collections, &d->n_collections, errmsg);
        } else if (key && !strcmp(key, "dataset_types")) {
            ret = cfg_globs(y, v, file, "destinations.dataset_types", &d->dataset_types, &d->n_dataset_types,
                            errmsg);
        } else if (key && !strcmp(key, "instruments")) {
            ret = cfg_globs(y, v, file, "destinations.instruments", &d->instruments, &d->n_instruments, errmsg);
        } else if (key && !strcmp(key, "template")) {
            char *why = NULL;
            if (!s || bfs_transfer_template_check(s, &why) < 0) {
                ret = cfg_fail(errmsg, file, y, v, "destinations.template", why ? why : "must be a string");
                free(why);
                return ret;
            }
            ret = (d->template = strdup(s)) ? 0 : -ENOMEM;
        } else {
            bfs_set_errmsg(errmsg, "%s:%d: unknown key 'transfer.destinations.%s' (a destination takes: name, uri, "
                                   "collections, dataset_types, instruments, template)", file, bfs_yaml_line(y, v),
                           key ? key : "?");
            return -EINVAL;
        }
        if (ret < 0)
            return ret;
    }
    if (!d->name || !d->uri || !d->n_collections)
        return cfg_fail(errmsg, file, y, m, "destinations", "each need a name, a uri and collections");
    return 0;
}

static int cfg_retention(const bfs_yaml *y, const bfs_yaml_node *m, const char *file, bfs_retention_rule *r,
                         char **errmsg)
{
    if (!bfs_yaml_is_map(y, m))
        return cfg_fail(errmsg, file, y, m, "retention", "must hold mappings (collections, age)");
    bool has_age = false;
    for (size_t i = 0; i < bfs_yaml_len(y, m); i++) {
        const char *key = bfs_yaml_key(y, m, i);
        const bfs_yaml_node *v = bfs_yaml_item(y, m, i);
        const char *s = bfs_yaml_scalar(y, v);
        int ret = 0;
        if (bfs_yaml_twice(y, m, i, file, "transfer.retention.", errmsg))
            return -EINVAL;
        if (key && !strcmp(key, "collections")) {
            ret = cfg_globs(y, v, file, "retention.collections", &r->collections, &r->n_collections, errmsg);
        } else if (key && !strcmp(key, "dataset_types")) {
            ret = cfg_globs(y, v, file, "retention.dataset_types", &r->dataset_types, &r->n_dataset_types, errmsg);
        } else if (key && !strcmp(key, "age")) {
            int64_t n;
            if (!s || !bfs_parse_duration_ms(s, &n) || n < 0 || n > 3650LL * 86400000)
                return cfg_fail(errmsg, file, y, v, "retention.age", "must be a duration from 0 to 3650d (e.g. 30d)");
            r->age_ms = n;
            has_age = true;
        } else {
            bfs_set_errmsg(errmsg, "%s:%d: unknown key 'transfer.retention.%s' (a retention rule takes: collections, "
                                   "dataset_types, age)", file, bfs_yaml_line(y, v), key ? key : "?");
            return -EINVAL;
        }
        if (ret < 0)
            return ret;
    }
    if (!r->n_collections || !has_age)
        return cfg_fail(errmsg, file, y, m, "retention", "rules each need collections and an age");
    return 0;
}

int bfs_transfer_config_parse(const bfs_yaml *y, const bfs_yaml_node *section, const char *file,
                              bfs_transfer_config *c, char **errmsg)
{
    if (bfs_yaml_is_null(y, section))
        return 0;
    if (!bfs_yaml_is_map(y, section))
        return cfg_fail(errmsg, file, y, section, "(section)", "must be a mapping");
    const bfs_yaml_node *interval = NULL; /* retention_interval, for its check below */
    for (size_t i = 0; i < bfs_yaml_len(y, section); i++) {
        const char *key = bfs_yaml_key(y, section, i);
        const bfs_yaml_node *v = bfs_yaml_item(y, section, i);
        const char *s = bfs_yaml_scalar(y, v);
        int64_t n;
        int ret = 0;
        if (bfs_yaml_twice(y, section, i, file, "transfer.", errmsg))
            return -EINVAL;
        if (key && !strcmp(key, "destinations")) {
            if (!bfs_yaml_is_seq(y, v) || !bfs_yaml_len(y, v))
                return cfg_fail(errmsg, file, y, v, key, "must be a non-empty list");
            size_t len = bfs_yaml_len(y, v);
            c->dests = calloc(len, sizeof *c->dests);
            if (!c->dests)
                return -ENOMEM;
            c->n_dests = (int)len;
            for (size_t k = 0; k < len && ret == 0; k++)
                ret = cfg_dest(y, bfs_yaml_item(y, v, k), file, &c->dests[k], errmsg);
            for (int a = 0; ret == 0 && a < c->n_dests; a++)
                for (int b = a + 1; b < c->n_dests; b++)
                    if (!strcmp(c->dests[a].name, c->dests[b].name))
                        ret = cfg_fail(errmsg, file, y, v, key, "must have different names");
        } else if (key && (!strcmp(key, "concurrency") || !strcmp(key, "max_attempts"))) {
            if (!s || !bfs_parse_i64(s, &n) || n < 1 || n > 256)
                return cfg_fail(errmsg, file, y, v, key, "must be a whole number from 1 to 256");
            *(key[0] == 'c' ? &c->concurrency : &c->max_attempts) = (int)n;
        } else if (key && (!strcmp(key, "backoff_max") || !strcmp(key, "request_timeout"))) {
            if (!s || !bfs_parse_duration_ms(s, &n) || n < 1000 || n > 86400000)
                return cfg_fail(errmsg, file, y, v, key, "must be a duration from 1s to 1d");
            *(key[0] == 'b' ? &c->backoff_max_ms : &c->request_timeout_ms) = n;
        } else if (key && !strcmp(key, "bandwidth")) {
            if (!s || !bfs_parse_size(s, &n) || n < 0)
                return cfg_fail(errmsg, file, y, v, key, "must be a size per second (e.g. 100MB, 1GiB; 0: no cap)");
            c->bandwidth = n;
        } else if (key && (!strcmp(key, "multipart_threshold") || !strcmp(key, "multipart_part_size"))) {
            bool thr = key[10] == 't';
            if (!s || !bfs_parse_size(s, &n) || n < (thr ? 0 : 5LL << 20) || n > 5LL << 30)
                return cfg_fail(errmsg, file, y, v, key, thr ? "must be a size from 0 to 5GiB (e.g. 64MiB)"
                                                             : "must be a size from 5MiB to 5GiB (e.g. 16MiB)");
            *(thr ? &c->multipart_threshold : &c->multipart_part_size) = n;
        } else if (key && !strcmp(key, "retention")) {
            if (!bfs_yaml_is_seq(y, v) || !bfs_yaml_len(y, v))
                return cfg_fail(errmsg, file, y, v, key, "must be a non-empty list of rules");
            size_t len = bfs_yaml_len(y, v);
            c->retention = calloc(len, sizeof *c->retention);
            if (!c->retention)
                return -ENOMEM;
            c->n_retention = (int)len;
            for (size_t k = 0; k < len && ret == 0; k++)
                ret = cfg_retention(y, bfs_yaml_item(y, v, k), file, &c->retention[k], errmsg);
        } else if (key && !strcmp(key, "retention_interval")) {
            if (!s || !bfs_parse_duration_ms(s, &n) || (n != 0 && (n < 1000 || n > 30LL * 86400000)))
                return cfg_fail(errmsg, file, y, v, key, "must be a duration from 1s to 30d, or 0 (off)");
            c->retention_interval_ms = n;
            interval = v;
        } else if (key && !strcmp(key, "verify")) {
            if (!s || (strcmp(s, "size") && strcmp(s, "readback")))
                return cfg_fail(errmsg, file, y, v, key, "must be size or readback");
            c->verify_readback = !strcmp(s, "readback");
        } else {
            bfs_set_errmsg(errmsg, "%s:%d: unknown key 'transfer.%s' (transfer takes: destinations, concurrency, "
                                   "max_attempts, backoff_max, request_timeout, verify, bandwidth, multipart_threshold, "
                                   "multipart_part_size, retention, retention_interval)",
                           file, bfs_yaml_line(y, v), key ? key : "?");
            return -EINVAL;
        }
        if (ret < 0)
            return ret;
    }
    if (c->retention_interval_ms > 0 && !c->n_retention)
        return cfg_fail(errmsg, file, y, interval, "retention_interval",
                        "needs retention: rules (what a mount's periodic run would remove)");
    return 0;
}

int bfs_transfer_config_load(const char *path, bfs_transfer_config *c, char **errmsg)
{
    bfs_yaml *y;
    int ret = bfs_yaml_load_file(path, &y, errmsg);
    if (ret < 0)
        return ret;
    const bfs_yaml_node *sec = bfs_yaml_get(y, bfs_yaml_root(y), "transfer");
    if (sec)
        ret = bfs_transfer_config_parse(y, sec, path, c, errmsg);
    bfs_yaml_free(y);
    return ret;
}

/* ---- object names ----------------------------------------------------------- */

enum { F_PATH, F_RUN, F_DTYPE, F_ID, F_NAME, NFIELDS };
static const char *const field_names[NFIELDS] = {"path", "run", "dataset_type", "id", "name"};

/* Expand tmpl (NULL: "{path}") with values[NFIELDS] (NULL: none) into *out. */
static int expand(const char *tmpl, const char *const values[NFIELDS], char **out, char **errmsg)
{
    if (!tmpl)
        tmpl = "{path}";
    *out = NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return -ENOMEM;
    int ret = 0;
    bool unique = false;
    for (const char *p = tmpl; *p && ret == 0;) {
        if (*p == '}') {
            bfs_set_errmsg(errmsg, "has a '}' without its '{'");
            ret = -EINVAL;
        } else if (*p != '{') {
            size_t l = strcspn(p, "{}");
            fwrite(p, 1, l, f);
            p += l;
        } else {
            const char *end = strchr(p, '}');
            size_t l = end ? (size_t)(end - p - 1) : 0;
            int k = 0;
            while (end && k < NFIELDS && !(strlen(field_names[k]) == l && !strncmp(p + 1, field_names[k], l)))
                k++;
            if (!end || k == NFIELDS) {
                bfs_set_errmsg(errmsg, "has an unknown field %.*s (fields: {path}, {run}, {dataset_type}, {id}, "
                                       "{name})", end ? (int)(l + 2) : (int)strlen(p), p);
                ret = -EINVAL;
            } else if (!values[k] || !*values[k]) {
                bfs_set_errmsg(errmsg, "needs {%s}, which this dataset has not", field_names[k]);
                ret = -EINVAL;
            } else if (k != F_PATH && k != F_RUN && strchr(values[k], '/')) {
                bfs_set_errmsg(errmsg, "{%s} is '%s', which holds a '/'", field_names[k], values[k]);
                ret = -EINVAL;
            } else {
                fputs(values[k], f);
                unique |= k == F_PATH || k == F_ID || k == F_NAME;
                p = end + 1;
            }
        }
    }
    if (fclose(f) != 0 && ret == 0)
        ret = -ENOMEM;
    if (ret == 0 && !unique) {
        bfs_set_errmsg(errmsg, "must name {path}, {id} or {name} (else every dataset gets the same key)");
        ret = -EINVAL;
    }
    if (ret == 0 && !bfs_is_relative_path(buf)) {
        bfs_set_errmsg(errmsg, "gives '%s', which is not a relative key of plain names (no leading '/', no empty, "
                               "'.' or '..' segments, no control characters)", buf);
        ret = -EINVAL;
    }
    if (ret == 0)
        *out = buf;
    else
        free(buf);
    return ret;
}

int bfs_transfer_template_check(const char *tmpl, char **errmsg)
{
    /* expanded with plain sample values: what remains wrong is the template's */
    static const char *const sample[NFIELDS] = {"a/b.fits", "r", "t", "0123456789abcdef0123456789abcdef", "b.fits"};
    char *out = NULL, *why = NULL;
    int ret = expand(tmpl, sample, &out, &why);
    if (ret == -EINVAL)
        bfs_set_errmsg(errmsg, "'%s' %s", tmpl, why ? why : "is malformed");
    free(why);
    free(out);
    return ret;
}

int bfs_transfer_object_key(const bfs_transfer_dest *dest, const bfs_transfer_item *item, char **out,
                            char **errmsg)
{
    const char *base = item->rel ? strrchr(item->rel, '/') : NULL;
    const char *values[NFIELDS] = {item->rel, item->run, item->dataset_type, item->dataset_id,
                                   base ? base + 1 : item->rel};
    char *why = NULL;
    int ret = expand(dest->template, values, out, &why);
    if (ret == -EINVAL)
        bfs_set_errmsg(errmsg, "the object name of %s at %s: template '%s' %s", item->rel ? item->rel : "?",
                       dest->name, dest->template ? dest->template : "{path}", why ? why : "is malformed");
    free(why);
    return ret;
}

/* ---- job files ------------------------------------------------------------- */

struct job {
    char name[96];            /* <dataset id>.<destination> */
    int dest;
    char *rel, *run, *dtype, *last_error;
    int64_t size;
    int attempts;
    double created, next_try, done_at;
    bool busy;
};


static char *job_path(const char *qdir, int state, const char *name)
{
    return bfs_asprintf("%s/%s/%s.json", qdir, state_dirs[state], name);
}

static void job_clear(struct job *j)
{
    free(j->rel);
    free(j->run);
    free(j->dtype);
    free(j->last_error);
    memset(j, 0, sizeof *j);
}

static int job_write(const char *qdir, int state, const struct job *j, const char *dest_name)
{
    json_t *o = json_pack("{s:s, s:s?, s:s?, s:s, s:I, s:s, s:i, s:s?, s:f, s:f, s:f}", "name", j->name, "run",
                          j->run, "dataset_type", j->dtype, "path", j->rel, "size", (json_int_t)j->size,
                          "destination", dest_name, "attempts", j->attempts, "last_error", j->last_error,
                          "created", j->created, "next_try", j->next_try, "done_at", j->done_at);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    char *path = text ? job_path(qdir, state, j->name) : NULL;
    int ret = path ? bfs_durable_write(path, text, strlen(text)) : -ENOMEM;
    free(path);
    free(text);
    return ret;
}

/* Read a job file into j (destination name into dest, 64 bytes). */
static int job_read(const char *path, struct job *j, char *dest, size_t destsz)
{
    json_error_t err;
    json_t *o = json_load_file(path, 0, &err);
    if (!o)
        return -EBADMSG;
    memset(j, 0, sizeof *j);
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *rel = json_string_value(json_object_get(o, "path"));
    const char *d = json_string_value(json_object_get(o, "destination"));
    int ret = name && rel && d && strlen(name) < sizeof j->name ? 0 : -EBADMSG;
    if (ret == 0) {
        snprintf(j->name, sizeof j->name, "%s", name);
        snprintf(dest, destsz, "%s", d);
        j->rel = strdup(rel);
        const char *s;
        if ((s = json_string_value(json_object_get(o, "run"))))
            j->run = strdup(s);
        if ((s = json_string_value(json_object_get(o, "dataset_type"))))
            j->dtype = strdup(s);
        if ((s = json_string_value(json_object_get(o, "last_error"))))
            j->last_error = strdup(s);
        j->size = json_integer_value(json_object_get(o, "size"));
        j->attempts = (int)json_integer_value(json_object_get(o, "attempts"));
        j->created = json_number_value(json_object_get(o, "created"));
        j->next_try = json_number_value(json_object_get(o, "next_try"));
        j->done_at = json_number_value(json_object_get(o, "done_at"));
        if (!j->rel)
            ret = -ENOMEM;
    }
    json_decref(o);
    if (ret < 0)
        job_clear(j);
    return ret;
}

/* Call fn for each job file name (without ".json") in one state's dir. */
static int each_job(const char *qdir, int state, int (*fn)(void *ctx, const char *name), void *ctx)
{
    char *dir = bfs_asprintf("%s/%s", qdir, state_dirs[state]);
    DIR *d = dir ? opendir(dir) : NULL;
    free(dir);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    int ret = 0;
    struct dirent *e;
    while (ret == 0 && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l <= 5 || strcmp(e->d_name + l - 5, ".json"))
            continue; /* ".", "..", and a stale .json.tmp */
        char name[96];
        if (l - 5 >= sizeof name)
            continue;
        snprintf(name, sizeof name, "%.*s", (int)(l - 5), e->d_name);
        ret = fn(ctx, name);
    }
    closedir(d);
    return ret;
}

static char *queue_dir(const char *repo_dir)
{
    return bfs_asprintf("%s/.butlerfs/queue", repo_dir);
}

static int make_store(const char *qdir)
{
    for (int s = 0; s < STATES; s++) {
        char *p = bfs_asprintf("%s/%s/x", qdir, state_dirs[s]);
        int ret = p ? bfs_make_parents(p, true) : -ENOMEM;
        free(p);
        if (ret < 0)
            return ret;
    }
    return 0;
}

/* ---- the running queue ---------------------------------------------------- */

/* The first wait after a destination fails; it doubles with each failure. */
#define BACKOFF_BASE_MS 1000

struct dest_state {
    int failures;
    double backoff_until; /* monotonic seconds */
};

struct bfs_transfer {
    char *qdir, *root;
    char *events;     /* the events file, or NULL */
    const bfs_transfer_config *cfg;
    bfs_http *http;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct job *jobs; /* pending and inflight, in memory */
    size_t njobs, cap;
    struct dest_state *dests;
    unsigned seed;    /* the backoff's jitter (rand_r) */
    pthread_t *workers;
    int nworkers;
    bool stop;
    int64_t done_count, parked_count;
    double last_scan;
};


static int dest_index(const bfs_transfer_config *cfg, const char *name)
{
    for (int i = 0; i < cfg->n_dests; i++)
        if (!strcmp(cfg->dests[i].name, name))
            return i;
    return -1;
}

static struct job *find_job_locked(bfs_transfer *t, const char *name)
{
    for (size_t i = 0; i < t->njobs; i++)
        if (!strcmp(t->jobs[i].name, name))
            return &t->jobs[i];
    return NULL;
}

/* Take ownership of *j into the in-memory list (under t->lock). */
static int add_job_locked(bfs_transfer *t, struct job *j)
{
    if (bfs_grow((void **)&t->jobs, &t->cap, t->njobs + 1, sizeof *t->jobs) < 0)
        return -ENOMEM;
    t->jobs[t->njobs++] = *j;
    memset(j, 0, sizeof *j);
    return 0;
}

static void remove_job_locked(bfs_transfer *t, struct job *j)
{
    job_clear(j);
    *j = t->jobs[--t->njobs];
}

struct load_ctx {
    bfs_transfer *t;
    int state;
};

/* A job file found at open (pending, or inflight put back) into memory. */
static int load_one(void *ctx, const char *name)
{
    struct load_ctx *c = ctx;
    bfs_transfer *t = c->t;
    char *path = job_path(t->qdir, c->state, name), dname[64];
    struct job j;
    int ret = path ? job_read(path, &j, dname, sizeof dname) : -ENOMEM;
    if (ret == -EBADMSG) {
        bfs_warn(TAG, "job file %s cannot be read; left as it is", path);
        free(path);
        return 0;
    }
    if (ret == 0 && (j.dest = dest_index(t->cfg, dname)) < 0) {
        bfs_warn(TAG, "job %s is for destination '%s', which the configuration no longer has; left pending",
                 name, dname);
        job_clear(&j);
        free(path);
        return 0;
    }
    if (ret == 0 && c->state == ST_INFLIGHT) {
        /* the crash story: an upload a stopped daemon had begun is redone */
        char *to = job_path(t->qdir, ST_PENDING, name);
        ret = to ? bfs_durable_move(path, to) : -ENOMEM;
        free(to);
    }
    if (ret == 0)
        ret = add_job_locked(t, &j);
    job_clear(&j);
    free(path);
    return ret;
}

/* URL of a datastore path under a destination: for http(s), each byte
 * outside unreserved characters and '/' percent-encoded; an s3:// URI
 * names the key as it is (s3.c encodes it when signing). */
static char *object_url(const char *prefix, const char *rel, const char *suffix)
{
    if (bfs_startswith(prefix, "s3://"))
        return bfs_asprintf("%s%s%s", prefix, rel, suffix ? suffix : "");
    size_t n = strlen(prefix) + 3 * strlen(rel) + (suffix ? strlen(suffix) : 0) + 1;
    char *u = malloc(n), *w;
    if (!u)
        return NULL;
    w = u + sprintf(u, "%s", prefix);
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)rel; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~/", *p)) {
            *w++ = (char)*p;
        } else {
            *w++ = '%';
            *w++ = hex[*p >> 4];
            *w++ = hex[*p & 15];
        }
    }
    strcpy(w, suffix ? suffix : "");
    return u;
}

/* Read the object back and compare it with the local file, byte for byte. */
static int verify_readback(bfs_transfer *t, const char *url, int fd, int64_t size, char **why)
{
    enum { CHUNK = 1 << 20 };
    char *remote = malloc(CHUNK), *local = malloc(CHUNK);
    int ret = remote && local ? 0 : -ENOMEM;
    for (int64_t off = 0; ret == 0 && off < size; off += CHUNK) {
        size_t want = (size_t)(size - off < CHUNK ? size - off : CHUNK);
        ssize_t got = bfs_http_get_within(t->http, url, NULL, off, want, remote, NULL,
                                          (long)t->cfg->request_timeout_ms, NULL, NULL);
        if (got < 0) {
            ret = (int)got;
            *why = bfs_asprintf("reading the object back: %s", bfs_http_strerror(ret));
        } else if ((size_t)got != want || pread(fd, local, want, off) != (ssize_t)want) {
            ret = -EIO;
            *why = bfs_asprintf("reading the object back: %zd bytes at offset %lld, not %zu", got,
                                (long long)off, want);
        } else if (memcmp(remote, local, want)) {
            ret = -EIO;
            *why = bfs_asprintf("the object differs from the file in the bytes at offset %lld..%lld",
                                (long long)off, (long long)(off + (int64_t)want));
        }
    }
    free(remote);
    free(local);
    return ret;
}

/* The MD5 (hex) of size bytes of fd from off: 0 or -errno. */
static int md5_range(int fd, int64_t off, int64_t size, char hex[33])
{
    enum { CHUNK = 1 << 20 };
    char *buf = malloc(CHUNK);
    bfs_sums *sums = bfs_sums_new();
    int ret = buf && sums ? 0 : -ENOMEM;
    for (int64_t done = 0; ret == 0 && done < size;) {
        size_t want = (size_t)(size - done < CHUNK ? size - done : CHUNK);
        ssize_t got = pread(fd, buf, want, off + done);
        if (got <= 0)
            ret = got < 0 ? -errno : -EIO;
        else if ((ret = bfs_sums_update(sums, buf, (size_t)got)) == 0)
            done += got;
    }
    bfs_file_sums out;
    if (ret == 0 && (ret = bfs_sums_final(sums, &out)) == 0)
        memcpy(hex, out.md5, 33);
    bfs_sums_free(sums);
    free(buf);
    return ret;
}

/* Check an S3 object's ETag against the file (verify: size): S3 computes
 * it from the bytes it stored, as the MD5 of a single-part object or, for a
 * multipart one, the MD5 of its parts' binary MD5s followed by "-N".  So
 * the bytes the server stored are checked without reading them back.  An
 * ETag of another form (SSE-KMS, SSE-C, a server that does not follow S3)
 * leaves the size check alone.  0, or -errno with *why a sentence. */
static int verify_etag(bfs_transfer *t, const bfs_object *obj, int fd, int64_t size, const char *rel,
                       char **why)
{
    if (!obj->etag_md5 && obj->etag_parts <= 0)
        return 0;
    char want[48];
    int ret = 0;
    if (obj->etag_md5) {
        ret = md5_range(fd, 0, size, want);
    } else {
        int64_t part = bfs_s3_part_size(size, t->cfg->multipart_part_size);
        int n = (int)((size + part - 1) / part);
        if (n != obj->etag_parts) {
            *why = bfs_asprintf("the object %s has an ETag of %d parts, this upload sent %d", rel, obj->etag_parts, n);
            return -EIO;
        }
        /* the MD5 of the parts' MD5s, as bytes */
        bfs_sums *outer = bfs_sums_new();
        ret = outer ? 0 : -ENOMEM;
        for (int i = 0; ret == 0 && i < n; i++) {
            int64_t off = (int64_t)i * part;
            char hex[33];
            unsigned char md[16];
            if ((ret = md5_range(fd, off, size - off < part ? size - off : part, hex)) < 0)
                break;
            for (int k = 0; k < 16; k++)
                sscanf(hex + 2 * k, "%2hhx", &md[k]);
            ret = bfs_sums_update(outer, md, sizeof md);
        }
        bfs_file_sums out;
        if (ret == 0 && (ret = bfs_sums_final(outer, &out)) == 0)
            snprintf(want, sizeof want, "%s-%d", out.md5, n);
        bfs_sums_free(outer);
    }
    if (ret < 0) {
        *why = bfs_asprintf("the MD5 of %s: %s", rel, strerror(-ret));
        return ret;
    }
    /* the ETag is quoted: compare what is between the quotes */
    size_t len = strlen(want);
    if (strlen(obj->etag) != len + 2 || strncasecmp(obj->etag + 1, want, len)) {
        *why = bfs_asprintf("the object %s has ETag %s, the file's bytes give \"%s\": the server stored other bytes",
                            rel, obj->etag, want);
        return -EIO;
    }
    return 0;
}

/* Whether the queue is closing (asked between the parts of an upload). */
static bool closing(void *ud)
{
    bfs_transfer *t = ud;
    pthread_mutex_lock(&t->lock);
    bool stop = t->stop;
    pthread_mutex_unlock(&t->lock);
    return stop;
}

/* Send the file to dest's URL: to S3, one PutObject, or above
 * multipart_threshold a multipart upload (s3_multipart.h); to WebDAV, a
 * PUT (to the temporary name).  0, or -errno with *why a sentence. */
static int send_file(bfs_transfer *t, const char *url, const char *rel, int fd, int64_t size, int64_t cap,
                     char **why)
{
    long tmo = (long)t->cfg->request_timeout_ms;
    if (bfs_startswith(url, "s3://") && size > t->cfg->multipart_threshold) {
        bfs_s3_multipart_cfg mc = {.part_size = t->cfg->multipart_part_size, .max_bps = cap, .timeout_ms = tmo,
                                   .cancelled = closing, .ud = t};
        char *detail = NULL;
        int ret = bfs_s3_multipart_put(t->http, url, fd, size, &mc, &detail);
        if (ret < 0)
            *why = bfs_asprintf("multipart upload of %s: %s", rel, detail ? detail : bfs_http_strerror(ret));
        free(detail);
        return ret;
    }
    int ret = bfs_http_put_file_capped(t->http, url, fd, size, cap, tmo, NULL);
    if (ret < 0)
        *why = bfs_asprintf("PUT %s: %s", rel, bfs_http_strerror(ret));
    return ret;
}

/* One upload attempt of j: PUT to the temporary name, MOVE onto the final
 * name, verify.  0, or -errno with *why a sentence. */
static int upload(bfs_transfer *t, const struct job *j, char **why)
{
    const bfs_transfer_dest *d = &t->cfg->dests[j->dest];
    char suffix[32], id[sizeof j->name];
    snprintf(suffix, sizeof suffix, ".butlerfs-%.8s", j->name);
    snprintf(id, sizeof id, "%.*s", (int)strcspn(j->name, "."), j->name); /* J = <id>.<destination> */
    bfs_transfer_item item = {.dataset_id = id, .run = j->run, .dataset_type = j->dtype, .rel = j->rel,
                              .size = j->size};
    char *key = NULL;
    int ret = bfs_transfer_object_key(d, &item, &key, why);
    if (ret < 0) {
        if (ret == -EINVAL)
            ret = -EIO; /* the job fails (and is parked in the end) with the sentence */
        return ret;
    }
    char *src = bfs_asprintf("%s%s", t->root, j->rel);
    char *final = object_url(d->uri, key, NULL), *tmp = object_url(d->uri, key, suffix);
    free(key);
    int fd = src ? open(src, O_RDONLY | O_CLOEXEC) : -1;
    ret = src && final && tmp ? 0 : -ENOMEM;
    struct stat sb;
    if (ret == 0 && (fd < 0 || fstat(fd, &sb) < 0)) {
        ret = -errno;
        *why = bfs_asprintf("cannot read %s: %s", j->rel, strerror(errno));
    }
    if (ret == 0 && sb.st_size != j->size && j->size >= 0) {
        ret = -EIO;
        *why = bfs_asprintf("%s is %lld bytes, not the %lld registered", j->rel, (long long)sb.st_size,
                            (long long)j->size);
    }
    long tmo = (long)t->cfg->request_timeout_ms;
    /* S3: a PutObject is visible only once complete, so it goes to the final
     * key at once; WebDAV: a temporary name, then MOVE */
    bool s3 = bfs_startswith(d->uri, "s3://");
    /* the cap shared evenly by the workers (each upload its share) */
    int64_t cap = t->cfg->bandwidth > 0 ? t->cfg->bandwidth / t->cfg->concurrency : 0;
    if (cap == 0 && t->cfg->bandwidth > 0)
        cap = 1;
    if (ret == 0)
        ret = send_file(t, s3 ? final : tmp, j->rel, fd, sb.st_size, cap, why);
    if (ret == 0 && !s3 && (ret = bfs_http_move(t->http, tmp, final, true, tmo)) < 0)
        *why = bfs_asprintf("MOVE onto %s: %s", j->rel, bfs_http_strerror(ret));
    bfs_object obj;
    if (ret == 0 && (ret = bfs_http_stat_within(t->http, final, &obj, tmo)) < 0)
        *why = bfs_asprintf("HEAD %s after the upload: %s", j->rel, bfs_http_strerror(ret));
    if (ret == 0 && obj.size != sb.st_size) {
        ret = -EIO;
        *why = bfs_asprintf("the object %s is %lld bytes, the file %lld", j->rel, (long long)obj.size,
                            (long long)sb.st_size);
    }
    if (ret == 0 && t->cfg->verify_readback)
        ret = verify_readback(t, final, fd, sb.st_size, why);
    else if (ret == 0 && s3)
        ret = verify_etag(t, &obj, fd, sb.st_size, j->rel, why);
    if (fd >= 0)
        close(fd);
    free(src);
    free(final);
    free(tmp);
    return ret;
}

/* The next due job (busy from now on), or NULL; under t->lock. */
static struct job *next_job_locked(bfs_transfer *t, double *wait_s)
{
    double real = bfs_real_s(), mono = bfs_mono_s();
    struct job *best = NULL;
    *wait_s = 1.0;
    for (size_t i = 0; i < t->njobs; i++) {
        struct job *j = &t->jobs[i];
        if (j->busy)
            continue;
        double until = t->dests[j->dest].backoff_until - mono;
        double due = j->next_try - real;
        double w = until > due ? until : due;
        if (w > 0) {
            if (w < *wait_s)
                *wait_s = w;
            continue;
        }
        if (!best || j->created < best->created)
            best = j;
    }
    if (best)
        best->busy = true;
    return best;
}

static int rescan_one(void *ctx, const char *name)
{
    bfs_transfer *t = ctx;
    pthread_mutex_lock(&t->lock);
    bool known = find_job_locked(t, name) != NULL;
    pthread_mutex_unlock(&t->lock);
    if (known)
        return 0;
    struct load_ctx c = {t, ST_PENDING};
    pthread_mutex_lock(&t->lock);
    int ret = load_one(&c, name);
    pthread_mutex_unlock(&t->lock);
    return ret;
}

static int prune_one(void *ctx, const char *name)
{
    bfs_transfer *t = ctx;
    char *p = job_path(t->qdir, ST_DONE, name);
    struct stat sb;
    bool old = p && stat(p, &sb) == 0 && bfs_real_s() - (double)sb.st_mtime > DONE_KEEP_S;
    if (old && t->cfg->n_retention) {
        /* local retention needs the record of a dataset it will remove
         * (its run and type match a rule); it removes the record with it */
        struct job j;
        char dname[64];
        if (job_read(p, &j, dname, sizeof dname) == 0) {
            old = !bfs_retention_match(t->cfg, j.run, j.dtype);
            job_clear(&j);
        }
    }
    if (old)
        unlink(p);
    free(p);
    return 0;
}

/* Every RESCAN_S, by one idle worker: pending jobs written by someone else
 * (`butlerfs queue retry`) are picked up, and done records older than
 * DONE_KEEP_S are removed, so the store does not grow without bound. */
static void maybe_rescan_locked(bfs_transfer *t)
{
    double now = bfs_mono_s();
    if (now - t->last_scan < RESCAN_S)
        return;
    t->last_scan = now;
    pthread_mutex_unlock(&t->lock);
    each_job(t->qdir, ST_PENDING, rescan_one, t);
    each_job(t->qdir, ST_DONE, prune_one, t);
    pthread_mutex_lock(&t->lock);
}

/* One event line per completed or parked transfer: appended to the events
 * file (the ingest's, ingest.events) and written to the log. */
static void transfer_event(bfs_transfer *t, const struct job *w, const char *dest, bool done)
{
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    json_t *j = json_pack("{s:s, s:s, s:i, s:s, s:s, s:s, s:I, s:i, s:s?}", "time", when, "transfer",
                          done ? "done" : "parked", "status", done ? 0 : 1, "job", w->name, "destination", dest,
                          "path", w->rel, "bytes", (json_int_t)w->size, "attempts", w->attempts + (done ? 1 : 0),
                          "error", done ? NULL : w->last_error);
    char *line = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!line)
        return;
    if (done)
        bfs_note(TAG, "%s", line);
    else
        bfs_warn(TAG, "%s", line);
    int fd = t->events ? open(t->events, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600) : -1;
    if (fd >= 0) {
        size_t len = strlen(line);
        line[len] = '\n'; /* json_dumps leaves room: the NUL */
        if (write(fd, line, len + 1) != (ssize_t)len + 1 || fdatasync(fd) < 0)
            bfs_warn(TAG, "cannot append to %s: %s", t->events, strerror(errno));
        close(fd);
    }
    free(line);
}

/* The wait after a destination's failures-th failure in a row, in seconds
 * (+-50 % jitter: each call draws anew).  Under t->lock (t->seed). */
static double backoff_s(bfs_transfer *t, int failures)
{
    return (double)bfs_backoff_ms(BACKOFF_BASE_MS, t->cfg->backoff_max_ms, failures - 1, BFS_JITTER_SPREAD, &t->seed) /
           1000.0;
}

static void *worker(void *arg)
{
    bfs_transfer *t = arg;
    pthread_mutex_lock(&t->lock);
    while (!t->stop) {
        double wait_s;
        struct job *j = next_job_locked(t, &wait_s);
        if (!j) {
            maybe_rescan_locked(t);
            if (t->stop)
                break;
            struct timespec ts = bfs_real_in(wait_s);
            pthread_cond_timedwait(&t->cond, &t->lock, &ts);
            continue;
        }
        /* claim: pending -> inflight (a copy of the job to work on unlocked) */
        struct job w = *j;
        w.rel = strdup(j->rel);
        w.run = j->run ? strdup(j->run) : NULL;
        w.dtype = j->dtype ? strdup(j->dtype) : NULL;
        w.last_error = NULL;
        const char *dname = t->cfg->dests[j->dest].name;
        pthread_mutex_unlock(&t->lock);
        char *from = job_path(t->qdir, ST_PENDING, w.name), *to = job_path(t->qdir, ST_INFLIGHT, w.name);
        int ret = from && to && w.rel ? bfs_durable_move(from, to) : -ENOMEM;
        char *why = NULL;
        if (ret == 0)
            ret = upload(t, &w, &why);
        int state;
        if (ret == 0) {
            w.done_at = bfs_real_s();
            state = ST_DONE;
        } else {
            if (ret != -ECANCELED) /* stopped by close: not a failure of the job */
                w.attempts++;
            free(w.last_error);
            w.last_error = why ? why : strdup(strerror(-ret));
            why = NULL;
            state = w.attempts >= t->cfg->max_attempts ? ST_PARKED : ST_PENDING;
        }
        pthread_mutex_lock(&t->lock);
        struct dest_state *ds = &t->dests[w.dest];
        if (ret == 0) {
            ds->failures = 0;
            ds->backoff_until = 0;
        } else {
            ds->failures++;
            ds->backoff_until = bfs_mono_s() + backoff_s(t, ds->failures);
            w.next_try = bfs_real_s() + backoff_s(t, ds->failures);
        }
        pthread_mutex_unlock(&t->lock);
        /* record the outcome: the job file moves to its new state */
        int wr = job_write(t->qdir, state, &w, dname);
        if (wr == 0 && to)
            unlink(to);
        if (ret == 0 || state == ST_PARKED)
            transfer_event(t, &w, dname, ret == 0);
        else
            bfs_info(TAG, "%s to %s failed (attempt %d of %d, next in %.0f s): %s", w.rel, dname, w.attempts,
                     t->cfg->max_attempts, w.next_try - bfs_real_s(), w.last_error);
        free(from);
        free(to);
        pthread_mutex_lock(&t->lock);
        struct job *m = find_job_locked(t, w.name);
        if (m) {
            if (state == ST_PENDING) {
                m->attempts = w.attempts;
                m->next_try = w.next_try;
                free(m->last_error);
                m->last_error = w.last_error ? strdup(w.last_error) : NULL;
                m->busy = false;
            } else {
                remove_job_locked(t, m);
                if (state == ST_DONE)
                    t->done_count++;
                else
                    t->parked_count++;
            }
        }
        job_clear(&w);
        pthread_cond_broadcast(&t->cond);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

int bfs_transfer_open(const char *repo_dir, const char *datastore_root, const bfs_transfer_config *cfg,
                      bfs_http *http, const char *events_file, bfs_transfer **out, char **errmsg)
{
    *out = NULL;
    bfs_transfer *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->cfg = cfg;
    t->http = http;
    size_t rl = strlen(datastore_root);
    t->qdir = queue_dir(repo_dir);
    t->events = events_file ? strdup(events_file) : bfs_asprintf("%s/.butlerfs/events.jsonl", repo_dir);
    t->root = rl && datastore_root[rl - 1] == '/' ? strdup(datastore_root) : bfs_asprintf("%s/", datastore_root);
    t->dests = calloc(cfg->n_dests ? (size_t)cfg->n_dests : 1, sizeof *t->dests);
    if (getrandom(&t->seed, sizeof t->seed, 0) != sizeof t->seed)
        t->seed = (unsigned)time(NULL);
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    int ret = t->qdir && t->root && t->dests ? make_store(t->qdir) : -ENOMEM;
    if (ret < 0)
        bfs_set_errmsg(errmsg, "cannot make the transfer queue in %s: %s", t->qdir ? t->qdir : repo_dir,
                       strerror(-ret));
    for (int s = ST_PENDING; ret == 0 && s <= ST_INFLIGHT; s++) {
        struct load_ctx c = {t, s};
        ret = each_job(t->qdir, s, load_one, &c);
        if (ret < 0)
            bfs_set_errmsg(errmsg, "cannot read the transfer queue in %s: %s", t->qdir, strerror(-ret));
    }
    size_t loaded = t->njobs; /* before the workers share the list */
    t->workers = calloc((size_t)cfg->concurrency, sizeof *t->workers);
    if (ret == 0 && !t->workers)
        ret = -ENOMEM;
    for (int i = 0; ret == 0 && i < cfg->concurrency; i++) {
        if (pthread_create(&t->workers[i], NULL, worker, t) != 0) {
            ret = -EAGAIN;
            bfs_set_errmsg(errmsg, "cannot start transfer workers");
            break;
        }
        t->nworkers++;
    }
    if (ret < 0) {
        bfs_transfer_close(t);
        return ret;
    }
    if (loaded)
        bfs_note(TAG, "%zu transfers pending from before", loaded);
    *out = t;
    return 0;
}

void bfs_transfer_close(bfs_transfer *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    t->stop = true;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
    for (int i = 0; i < t->nworkers; i++)
        pthread_join(t->workers[i], NULL);
    for (size_t i = 0; i < t->njobs; i++)
        job_clear(&t->jobs[i]);
    free(t->jobs);
    free(t->workers);
    free(t->dests);
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
    free(t->qdir);
    free(t->root);
    free(t->events);
    free(t);
}

static bool matches(char *const *globs, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (s && fnmatch(globs[i], s, 0) == 0)
            return true;
    return false;
}

bool bfs_transfer_matches(const bfs_transfer_dest *dest, const char *run, const char *dataset_type,
                          const char *instrument)
{
    return matches(dest->collections, dest->n_collections, run) &&
           (!dest->n_dataset_types || matches(dest->dataset_types, dest->n_dataset_types, dataset_type)) &&
           (!dest->n_instruments || matches(dest->instruments, dest->n_instruments, instrument));
}

bool bfs_transfer_uses_instruments(const bfs_transfer_config *c)
{
    for (int i = 0; c && i < c->n_dests; i++)
        if (c->dests[i].n_instruments)
            return true;
    return false;
}

const bfs_retention_rule *bfs_retention_match(const bfs_transfer_config *c, const char *run,
                                              const char *dataset_type)
{
    for (int i = 0; i < c->n_retention; i++) {
        const bfs_retention_rule *r = &c->retention[i];
        if (matches(r->collections, r->n_collections, run) &&
            (!r->n_dataset_types || matches(r->dataset_types, r->n_dataset_types, dataset_type)))
            return r;
    }
    return NULL;
}

/* The pending job of item for destination d when no job of that name
 * exists in any state (idempotent).  1 made, 0 there already, -errno.
 * *made (may be NULL) gets the job to keep in memory. */
static int new_job(const char *qdir, const bfs_transfer_config *cfg, int d, const bfs_transfer_item *item,
                   bool redo_done, struct job *made)
{
    const bfs_transfer_dest *dest = &cfg->dests[d];
    struct job j = {.dest = d, .size = item->size, .created = bfs_real_s()};
    snprintf(j.name, sizeof j.name, "%s.%s", item->dataset_id, dest->name);
    for (int s = 0; s < STATES; s++) {
        char *p = job_path(qdir, s, j.name);
        bool exists = p && access(p, F_OK) == 0;
        if (exists && s == ST_DONE && redo_done)
            exists = unlink(p) < 0; /* done, but the object is gone: again */
        free(p);
        if (exists)
            return 0;
    }
    j.rel = strdup(item->rel);
    j.run = item->run ? strdup(item->run) : NULL;
    j.dtype = item->dataset_type ? strdup(item->dataset_type) : NULL;
    int ret = j.rel ? job_write(qdir, ST_PENDING, &j, dest->name) : -ENOMEM;
    if (ret == 0 && made)
        *made = j;
    else
        job_clear(&j);
    return ret < 0 ? ret : 1;
}

int bfs_transfer_enqueue(bfs_transfer *t, const bfs_transfer_item *item)
{
    int ret = 0;
    for (int d = 0; ret >= 0 && d < t->cfg->n_dests; d++) {
        if (!bfs_transfer_matches(&t->cfg->dests[d], item->run, item->dataset_type, item->instrument))
            continue;
        struct job j;
        ret = new_job(t->qdir, t->cfg, d, item, false, &j);
        if (ret == 1) {
            pthread_mutex_lock(&t->lock);
            ret = find_job_locked(t, j.name) ? 0 : add_job_locked(t, &j);
            pthread_cond_signal(&t->cond);
            pthread_mutex_unlock(&t->lock);
            job_clear(&j);
        }
    }
    return ret < 0 ? ret : 0;
}

int bfs_queue_add(const char *repo_dir, const bfs_transfer_config *cfg, int dest, const bfs_transfer_item *item)
{
    char *qdir = queue_dir(repo_dir);
    int ret = qdir ? make_store(qdir) : -ENOMEM;
    if (ret == 0)
        ret = new_job(qdir, cfg, dest, item, true, NULL);
    free(qdir);
    return ret;
}

int bfs_transfer_object_url(const bfs_transfer_dest *dest, const bfs_transfer_item *item, char **out,
                            char **errmsg)
{
    char *key = NULL;
    int ret = bfs_transfer_object_key(dest, item, &key, errmsg);
    *out = ret == 0 ? object_url(dest->uri, key, NULL) : NULL;
    free(key);
    return ret == 0 && !*out ? -ENOMEM : ret;
}

void bfs_transfer_stats(bfs_transfer *t, bfs_queue_stats *st)
{
    memset(st, 0, sizeof *st);
    double real = bfs_real_s();
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->njobs; i++) {
        const struct job *j = &t->jobs[i];
        if (j->busy) {
            st->inflight++;
        } else {
            st->pending++;
            st->bytes_pending += j->size > 0 ? j->size : 0;
            if (real - j->created > st->oldest_pending_s)
                st->oldest_pending_s = real - j->created;
        }
    }
    st->done = t->done_count;
    st->parked = t->parked_count;
    pthread_mutex_unlock(&t->lock);
}

/* ---- the store from outside ---------------------------------------------- */

struct read_ctx {
    const char *qdir;
    int state;
    bfs_queue_stats *st;
    bfs_queue_cb cb;
    void *ctx;
    double now;
};

static int read_one(void *arg, const char *name)
{
    struct read_ctx *c = arg;
    char *path = job_path(c->qdir, c->state, name), dname[64];
    struct job j;
    int ret = path ? job_read(path, &j, dname, sizeof dname) : -ENOMEM;
    struct stat sb;
    if (path && stat(path, &sb) == 0)
        c->st->store_bytes += (int64_t)sb.st_blocks * 512;
    free(path);
    if (ret == -EBADMSG)
        return 0;
    if (ret < 0)
        return ret;
    bfs_queue_stats *st = c->st;
    switch (c->state) {
    case ST_PENDING:
        st->pending++;
        st->bytes_pending += j.size > 0 ? j.size : 0;
        if (c->now - j.created > st->oldest_pending_s)
            st->oldest_pending_s = c->now - j.created;
        break;
    case ST_INFLIGHT: st->inflight++; break;
    case ST_PARKED: st->parked++; break;
    default:
        st->done++;
        if (c->now - j.done_at < 3600) {
            st->done_last_hour++;
            if (c->now - j.done_at > st->done_window_s)
                st->done_window_s = c->now - j.done_at;
        }
    }
    if (c->cb && c->state != ST_DONE) {
        bfs_queue_job q = {.name = j.name, .state = state_dirs[c->state], .destination = dname, .rel = j.rel,
                           .last_error = j.last_error, .attempts = j.attempts, .size = j.size,
                           .created = j.created, .next_try = j.next_try};
        ret = c->cb(c->ctx, &q);
    }
    job_clear(&j);
    return ret;
}

/* One pass over the state directories. */
static int read_pass(const char *qdir, bfs_queue_stats *st, bfs_queue_cb cb, void *ctx)
{
    memset(st, 0, sizeof *st);
    struct statvfs vf;
    st->disk_free = statvfs(qdir, &vf) == 0 ? (int64_t)vf.f_bavail * (int64_t)vf.f_frsize : -1;
    int ret = 0;
    for (int s = 0; ret == 0 && s < STATES; s++) {
        struct read_ctx c = {qdir, s, st, cb, ctx, bfs_real_s()};
        ret = each_job(qdir, s, read_one, &c);
    }
    return ret;
}

static bool same_counts(const bfs_queue_stats *a, const bfs_queue_stats *b)
{
    return a->pending == b->pending && a->inflight == b->inflight && a->parked == b->parked && a->done == b->done;
}

/* A running mount moves jobs between the state directories while they are
 * read, one after another, so one pass can miss a job (read in pending
 * before it came back from inflight) or count it twice.  The counts are
 * those of two passes in a row that agree (at most READ_PASSES passes, then
 * the last); the jobs cb sees come from one more pass. */
enum { READ_PASSES = 8 };

int bfs_queue_read(const char *repo_dir, bfs_queue_stats *st, bfs_queue_cb cb, void *ctx)
{
    memset(st, 0, sizeof *st);
    char *qdir = queue_dir(repo_dir);
    if (!qdir)
        return -ENOMEM;
    struct stat sb;
    int ret = stat(qdir, &sb) == 0 ? 0 : -ENOENT;
    bfs_queue_stats prev = {0};
    for (int pass = 0; ret == 0 && pass < READ_PASSES; pass++) {
        ret = read_pass(qdir, st, NULL, NULL);
        if (ret == 0 && pass > 0 && same_counts(&prev, st))
            break;
        prev = *st;
    }
    if (ret == 0 && cb) {
        bfs_queue_stats listed;
        ret = read_pass(qdir, &listed, cb, ctx);
    }
    free(qdir);
    return ret;
}

struct parked_ctx {
    const char *qdir;
    bool retry;
    int64_t n;
};

static int parked_one(void *arg, const char *name)
{
    struct parked_ctx *c = arg;
    char *from = job_path(c->qdir, ST_PARKED, name), dname[64];
    if (!from)
        return -ENOMEM;
    int ret;
    if (!c->retry) {
        ret = unlink(from) < 0 ? -errno : 0;
    } else {
        struct job j;
        ret = job_read(from, &j, dname, sizeof dname);
        if (ret == 0) {
            j.attempts = 0;
            j.next_try = 0;
            ret = job_write(c->qdir, ST_PENDING, &j, dname);
            if (ret == 0)
                unlink(from);
            job_clear(&j);
        }
    }
    free(from);
    if (ret == 0)
        c->n++;
    return ret == -EBADMSG ? 0 : ret;
}

static int parked_all(const char *repo_dir, bool retry, int64_t *n)
{
    char *qdir = queue_dir(repo_dir);
    if (!qdir)
        return -ENOMEM;
    struct parked_ctx c = {qdir, retry, 0};
    int ret = each_job(qdir, ST_PARKED, parked_one, &c);
    if (ret == 0) {
        char *d = bfs_asprintf("%s/%s", qdir, state_dirs[ST_PARKED]);
        if (d)
            bfs_fsync_dir(d);
        free(d);
    }
    free(qdir);
    *n = c.n;
    return ret;
}

int bfs_queue_retry_parked(const char *repo_dir, int64_t *n) { return parked_all(repo_dir, true, n); }
int bfs_queue_drop_parked(const char *repo_dir, int64_t *n) { return parked_all(repo_dir, false, n); }

/* The job name of a dataset and destination: -EINVAL when either is not a
 * plain name (so no path from outside climbs out of the store). */
static int job_name_of(const char *dataset_id, const char *dest_name, char name[96])
{
    if (!bfs_is_one_component(dataset_id) || strchr(dataset_id, '.') || !bfs_is_one_component(dest_name) ||
        strchr(dest_name, '.'))
        return -EINVAL;
    int n = snprintf(name, 96, "%s.%s", dataset_id, dest_name);
    return n > 0 && n < 96 ? 0 : -ENAMETOOLONG;
}

int bfs_queue_job_state(const char *repo_dir, const char *dataset_id, const char *dest_name)
{
    static const int public_state[STATES] = {BFS_JOB_PENDING, BFS_JOB_INFLIGHT, BFS_JOB_PARKED, BFS_JOB_DONE};
    char name[96];
    int ret = job_name_of(dataset_id, dest_name, name);
    char *qdir = ret == 0 ? queue_dir(repo_dir) : NULL;
    if (ret == 0 && !qdir)
        ret = -ENOMEM;
    /* done first: a job moves pending -> inflight -> done, and a done one
     * is the answer that matters */
    for (int s = STATES - 1; ret == 0 && s >= 0; s--) {
        char *p = job_path(qdir, s, name);
        if (!p) {
            ret = -ENOMEM;
        } else if (access(p, F_OK) == 0) {
            ret = public_state[s];
            free(p);
            break;
        } else if (errno != ENOENT) {
            ret = -errno;
        }
        free(p);
    }
    free(qdir);
    return ret;
}

int bfs_queue_forget_done(const char *repo_dir, const char *dataset_id, const char *dest_name)
{
    char name[96];
    int ret = job_name_of(dataset_id, dest_name, name);
    char *qdir = ret == 0 ? queue_dir(repo_dir) : NULL;
    char *p = qdir ? job_path(qdir, ST_DONE, name) : NULL;
    if (ret == 0)
        ret = !p ? -ENOMEM : unlink(p) < 0 && errno != ENOENT ? -errno : 0;
    free(p);
    free(qdir);
    return ret;
}

const bfs_transfer_config *bfs_transfer_cfg(const bfs_transfer *t)
{
    return t->cfg;
}
