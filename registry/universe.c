/*
 * universe.c - the dimension universe, read from the JSON the registry
 * stores under butler_attributes "config:dimensions.json" (versions 1-8).
 *
 * Only dimensions matter here (elements with keys, plus the skypix
 * dimensions such as htm7); join-only elements (visit_definition, ...) are
 * skipped.  Universe order is the order daf_butler gives required
 * dimensions in dataIds and in tag-table columns: a layered topological
 * sort where layer 0 holds dimensions with no requires/implies, each next
 * layer those whose dependencies are all in earlier layers, names sorted
 * alphabetically within a layer.  Checked against every dataset type of the
 * universe-1 and universe-7 fixtures (raw: instrument, detector, exposure;
 * flat: instrument, detector, physical_filter; group 10: instrument, skymap,
 * detector, visit).
 */
#include "registry_i.h"

#include "log.h"
#include "strutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Real universes have about 30 elements (daf_butler's own has 27 at
 * version 7); more than this is a damaged or hostile registry, refused
 * before any work that grows with it. */
#define REG_MAX_ELEMENTS 4096

struct pending {
    const char *name;
    json_t *elem;      /* NULL for skypix */
    int layer;
    int nwait;         /* dependencies not yet given a layer */
};

struct by_name {
    const struct pending *p;
    int index;
};

static int cmp_by_name(const void *a, const void *b)
{
    const struct by_name *x = a, *y = b;
    int c = strcmp(x->p[x->index].name, y->p[y->index].name);
    return c ? c : x->index - y->index;
}

/* The index in p of the first element named name, -1 if none. */
static int find_pending(const struct by_name *idx, int n, const char *name)
{
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (strcmp(idx[mid].p[idx[mid].index].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && !strcmp(idx[lo].p[idx[lo].index].name, name) ? idx[lo].index : -1;
}

/* Give every element its layer: 0 without dependencies (requires and
 * implies), else one more than its deepest dependency.  Kahn's algorithm
 * over the dependency edges: each element and each edge is handled once,
 * with no recursion, so a long chain of requires costs time in proportion
 * to its length and no stack.  0, -EBADMSG with *bad naming an element
 * when the dependencies form a cycle, -ENOMEM. */
static int assign_layers(struct pending *p, int n, const char **bad)
{
    static const char *const lists[] = {"requires", "implies"};
    struct by_name *idx = calloc((size_t)n + 1, sizeof *idx);
    int *first = calloc((size_t)n + 2, sizeof *first); /* edges out of j: to[first[j]..first[j+1]) */
    int *queue = calloc((size_t)n + 1, sizeof *queue);
    int *to = NULL, ret = -ENOMEM;
    size_t nedges = 0;
    if (!idx || !first || !queue)
        goto out;
    for (int i = 0; i < n; i++)
        idx[i] = (struct by_name){p, i};
    qsort(idx, (size_t)n, sizeof *idx, cmp_by_name);
    /* two passes over the dependency lists: count the edges out of each
     * element, then place them */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n; i++) {
            for (int l = 0; l < 2 && p[i].elem; l++) {
                size_t k;
                json_t *v;
                json_array_foreach(json_object_get(p[i].elem, lists[l]), k, v) {
                    int j = json_is_string(v) ? find_pending(idx, n, json_string_value(v)) : -1;
                    if (j < 0)
                        continue;
                    if (pass == 0) {
                        first[j + 1]++;
                        p[i].nwait++;
                        nedges++;
                    } else {
                        to[first[j]++] = i;
                    }
                }
            }
        }
        if (pass == 0) {
            for (int j = 0; j < n; j++)
                first[j + 1] += first[j];
            if (!(to = malloc((nedges ? nedges : 1) * sizeof *to)))
                goto out;
        } else { /* placing moved each first[j] to the start of j + 1's edges */
            memmove(first + 1, first, (size_t)n * sizeof *first);
            first[0] = 0;
        }
    }
    int head = 0, tail = 0;
    for (int i = 0; i < n; i++) {
        p[i].layer = 0;
        if (p[i].nwait == 0)
            queue[tail++] = i;
    }
    while (head < tail) {
        int j = queue[head++];
        for (int e = first[j]; e < first[j + 1]; e++) {
            struct pending *d = &p[to[e]];
            if (d->layer < p[j].layer + 1)
                d->layer = p[j].layer + 1;
            if (--d->nwait == 0)
                queue[tail++] = to[e];
        }
    }
    ret = 0;
    for (int i = 0; i < n && ret == 0; i++)
        if (p[i].nwait > 0) {
            *bad = p[i].name;
            ret = -EBADMSG;
        }
out:
    free(idx);
    free(first);
    free(queue);
    free(to);
    return ret;
}

static int cmp_pending(const void *a, const void *b)
{
    const struct pending *x = a, *y = b;
    if (x->layer != y->layer)
        return x->layer - y->layer;
    return strcmp(x->name, y->name);
}

/* By name, then universe order (so the first of equal names comes first). */
static int cmp_dim_name(const void *a, const void *b)
{
    const bfs_dimension *x = *(const bfs_dimension *const *)a, *y = *(const bfs_dimension *const *)b;
    int c = strcmp(x->name, y->name);
    return c ? c : x->index - y->index;
}

static bool has_view(json_t *elem)
{
    json_t *storage = json_object_get(elem, "storage");
    if (json_object_get(elem, "view_of") || json_object_get(storage, "view_of"))
        return true;
    return json_object_get(json_object_get(storage, "nested"), "view_of") != NULL;
}

int reg_universe_load(bfs_registry *reg, const char *json_text, char **errmsg)
{
    json_error_t jerr;
    json_t *root = json_loads(json_text ? json_text : "", 0, &jerr);
    json_t *elements = json_object_get(root, "elements");
    if (!json_is_object(elements)) {
        if (errmsg)
            *errmsg = bfs_asprintf("%s: the stored dimension universe is not valid (%s)",
                                   reg->db_path, root ? "no elements" : jerr.text);
        json_decref(root);
        return -EBADMSG;
    }
    if (json_object_size(elements) > REG_MAX_ELEMENTS) {
        if (errmsg)
            *errmsg = bfs_asprintf("%s: the stored dimension universe has %zu elements, more than "
                                   "the %d a Butler universe can have: the registry is damaged",
                                   reg->db_path, json_object_size(elements), REG_MAX_ELEMENTS);
        json_decref(root);
        return -EBADMSG;
    }
    reg->universe_version = (int)json_integer_value(json_object_get(root, "version"));
    const char *ns = json_string_value(json_object_get(root, "namespace"));
    reg->universe_namespace = strdup(ns ? ns : "daf_butler");

    size_t cap = json_object_size(elements) + 64, n = 0;
    struct pending *p = calloc(cap, sizeof *p);
    char **skypix_names = calloc(64, sizeof *skypix_names);
    int nsky = 0;
    if (!p || !skypix_names) {
        free(p);
        free(skypix_names);
        json_decref(root);
        return -ENOMEM;
    }
    const char *name;
    json_t *elem;
    json_object_foreach(elements, name, elem) {
        if (json_array_size(json_object_get(elem, "keys")) == 0)
            continue; /* join-only element, not a dimension */
        p[n++] = (struct pending){name, elem, 0, 0};
    }
    /* skypix dimensions: <system><level> for every level up to max_level. */
    json_t *skypix = json_object_get(root, "skypix");
    json_t *sys;
    json_object_foreach(skypix, name, sys) {
        json_t *max = json_object_get(sys, "max_level");
        if (!json_is_integer(max))
            continue;
        for (int lvl = 0; lvl <= json_integer_value(max) && nsky < 64 && n < cap; lvl++) {
            skypix_names[nsky] = bfs_asprintf("%s%d", name, lvl);
            p[n++] = (struct pending){skypix_names[nsky++], NULL, 0, 0};
        }
    }
    const char *bad = NULL;
    int ret = assign_layers(p, (int)n, &bad);
    if (ret < 0) {
        if (ret == -EBADMSG && errmsg)
            *errmsg = bfs_asprintf("%s: the stored dimension universe is not valid: the requires "
                                   "and implies of '%s' lead back to it", reg->db_path, bad);
        for (int i = 0; i < nsky; i++)
            free(skypix_names[i]);
        free(skypix_names);
        free(p);
        json_decref(root);
        return ret;
    }
    qsort(p, n, sizeof *p, cmp_pending);

    reg->dims = calloc(n ? n : 1, sizeof *reg->dims);
    reg->dims_by_name = calloc(n ? n : 1, sizeof *reg->dims_by_name);
    reg->ndims = reg->dims && reg->dims_by_name ? (int)n : 0;
    for (int i = 0; i < reg->ndims; i++)
        reg->dims_by_name[i] = &reg->dims[i];
    for (int i = 0; i < reg->ndims; i++) {
        bfs_dimension *d = &reg->dims[i];
        d->name = strdup(p[i].name);
        d->index = (int)i;
        d->type = BFS_KEY_INT;
        d->key = strdup("id");
        if (!p[i].elem)
            continue;
        d->has_table = !has_view(p[i].elem);
        json_t *keys = json_object_get(p[i].elem, "keys");
        size_t k;
        json_t *key;
        json_array_foreach(keys, k, key) {
            const char *kname = json_string_value(json_object_get(key, "name"));
            const char *ktype = json_string_value(json_object_get(key, "type"));
            if (!kname || !ktype)
                continue;
            bool is_int = !strcmp(ktype, "int");
            bool is_str = !strcmp(ktype, "string");
            if (k == 0) {
                free((char *)d->key);
                d->key = strdup(kname);
                d->type = is_int ? BFS_KEY_INT : BFS_KEY_STRING;
            } else if ((is_int || is_str) && d->n_alt < 4) {
                d->alt_keys[d->n_alt++] = strdup(kname);
            }
        }
    }
    qsort(reg->dims_by_name, (size_t)reg->ndims, sizeof *reg->dims_by_name, cmp_dim_name);
    /* requires pointers, now that every dimension has its final address */
    for (int i = 0; i < reg->ndims; i++) {
        if (!p[i].elem)
            continue;
        json_t *arr = json_object_get(p[i].elem, "requires");
        size_t k;
        json_t *v;
        json_array_foreach(arr, k, v) {
            const bfs_dimension *dep = json_is_string(v)
                ? bfs_registry_dimension_by_name(reg, json_string_value(v)) : NULL;
            if (dep && reg->dims[i].n_requires < 4)
                reg->dims[i].requires[reg->dims[i].n_requires++] = dep;
        }
    }
    for (int i = 0; i < nsky; i++)
        free(skypix_names[i]);
    free(skypix_names);
    free(p);
    reg->universe_json = root;
    if (reg->ndims != (int)n)
        return -ENOMEM;
    bfs_debug(REG_TAG, "universe %s v%d: %d dimensions", reg->universe_namespace,
              reg->universe_version, reg->ndims);
    return 0;
}

int bfs_registry_universe_version(const bfs_registry *reg) { return reg->universe_version; }
const char *bfs_registry_universe_namespace(const bfs_registry *reg) { return reg->universe_namespace; }
int bfs_registry_dimension_count(const bfs_registry *reg) { return reg->ndims; }

const bfs_dimension *bfs_registry_dimension(const bfs_registry *reg, int i)
{
    return i >= 0 && i < reg->ndims ? &reg->dims[i] : NULL;
}

const bfs_dimension *bfs_registry_dimension_by_name(const bfs_registry *reg, const char *name)
{
    /* the first of equal names in universe order, as a linear search would find */
    int lo = 0, hi = reg->ndims;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (strcmp(reg->dims_by_name[mid]->name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < reg->ndims && !strcmp(reg->dims_by_name[lo]->name, name) ? reg->dims_by_name[lo] : NULL;
}
