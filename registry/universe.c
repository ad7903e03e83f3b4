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

struct pending {
    const char *name;
    json_t *elem;      /* NULL for skypix */
    int layer;
};

static int find_pending(struct pending *p, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(p[i].name, name))
            return i;
    return -1;
}

static int layer_of(struct pending *p, int n, int i, int depth)
{
    if (p[i].layer >= 0)
        return p[i].layer;
    if (depth > n)
        return 0; /* a cycle cannot happen in a valid universe; don't recurse forever */
    int layer = 0;
    const char *lists[] = {"requires", "implies"};
    for (int l = 0; l < 2 && p[i].elem; l++) {
        json_t *arr = json_object_get(p[i].elem, lists[l]);
        size_t k;
        json_t *v;
        json_array_foreach(arr, k, v) {
            int j = json_is_string(v) ? find_pending(p, n, json_string_value(v)) : -1;
            if (j >= 0) {
                int dl = layer_of(p, n, j, depth + 1) + 1;
                if (dl > layer)
                    layer = dl;
            }
        }
    }
    p[i].layer = layer;
    return layer;
}

static int cmp_pending(const void *a, const void *b)
{
    const struct pending *x = a, *y = b;
    if (x->layer != y->layer)
        return x->layer - y->layer;
    return strcmp(x->name, y->name);
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
        p[n++] = (struct pending){name, elem, -1};
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
            p[n++] = (struct pending){skypix_names[nsky++], NULL, 0};
        }
    }
    for (size_t i = 0; i < n; i++)
        layer_of(p, (int)n, (int)i, 0);
    qsort(p, n, sizeof *p, cmp_pending);

    reg->dims = calloc(n, sizeof *reg->dims);
    reg->ndims = (int)n;
    for (size_t i = 0; reg->dims && i < n; i++) {
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
    /* requires pointers, now that every dimension has its final address */
    for (size_t i = 0; reg->dims && i < n; i++) {
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
    if (!reg->dims)
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
    for (int i = 0; i < reg->ndims; i++)
        if (!strcmp(reg->dims[i].name, name))
            return &reg->dims[i];
    return NULL;
}
