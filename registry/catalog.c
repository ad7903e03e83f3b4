/*
 * catalog.c - collections (with their chains) and dataset types (with their
 * required dimensions), loaded as one immutable snapshot.
 *
 * Both tables are small (hundreds to a few thousand rows) and read on every
 * lookup of the top of the tree, so they are held in memory.  A snapshot is
 * never modified after publication; a refresh builds a new one and links
 * the old one behind it, so pointers handed out earlier stay valid until
 * the registry is closed.  The cost is a little memory per refresh, and
 * refreshes only happen when the tables' fingerprint changes.
 */
#include "registry_i.h"

#include "log.h"
#include "strutil.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *col_text(db_stmt *st, int i)
{
    const char *t = db_column_text(st, i);
    return t ? strdup(t) : NULL;
}

static int cmp_coll(const void *a, const void *b)
{
    return strcmp(((const bfs_collection *)a)->name, ((const bfs_collection *)b)->name);
}

static int cmp_dtype(const void *a, const void *b)
{
    return strcmp(((const bfs_dataset_type *)a)->name, ((const bfs_dataset_type *)b)->name);
}

static int cmp_dim_index(const void *a, const void *b)
{
    const bfs_dimension *x = *(const bfs_dimension *const *)a, *y = *(const bfs_dimension *const *)b;
    return x->index - y->index;
}

/* A cheap summary of the catalog tables; a change means reload.  Chains
 * enter with every (parent, position, child) row in order, hashed, so any
 * reordering or replacement is seen (a weighted sum missed rotations, and
 * weighed position -1, which daf_butler's prepend writes, by zero). */
static int fingerprint(db_conn *db, char *out, size_t outsz)
{
    /* the counts in SQL, the chain rows hashed here: both engines, and no
     * string of every row built in the server */
    static const char *counts =
        "SELECT (SELECT count(*) || ':' || coalesce(max(collection_id), 0) FROM collection) || '/' ||"
        " (SELECT count(*) || ':' || coalesce(max(id), 0) FROM dataset_type) || '/' ||"
        " (SELECT count(*) FROM collection_chain) || ':'";
    static const char *rows = "SELECT parent, position, child FROM collection_chain ORDER BY parent, position";
    db_stmt *st = db_prepare(db, counts);
    int rc = st ? db_step(st) : -EIO;
    if (rc != DB_ROW)
        return rc < 0 ? rc : -EIO;
    char head[160];
    snprintf(head, sizeof head, "%s", db_column_text(st, 0) ? db_column_text(st, 0) : "");
    db_reset(st); /* one row read of one: the statement must not hold the read lock */
    if (!(st = db_prepare(db, rows)))
        return -EIO;
    uint64_t h = 1469598103934665603ULL; /* FNV-1a over "parent,position,child;" */
    char row[64];
    while ((rc = db_step(st)) == DB_ROW) {
        snprintf(row, sizeof row, "%lld,%lld,%lld;", (long long)db_column_int64(st, 0),
                 (long long)db_column_int64(st, 1), (long long)db_column_int64(st, 2));
        for (const unsigned char *p = (const unsigned char *)row; *p; p++)
            h = (h ^ *p) * 1099511628211ULL;
    }
    if (rc < 0)
        return rc;
    snprintf(out, outsz, "%s%016llx", head, (unsigned long long)h);
    return 0;
}

static const bfs_collection *coll_by_id(const bfs_collection *colls, size_t n, int64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (colls[i].id == id)
            return &colls[i];
    return NULL;
}

/* Set cyclic on every collection whose chain reaches a cycle.  daf_butler
 * never writes a cycle, so one comes from a damaged or hostile registry;
 * marking it here, once per load, keeps every later listing finite and
 * logs each collection that closes a cycle once, not once per listing.
 * Iterative depth-first search: each collection and each chain row is
 * visited once, whatever the depth or the sharing of sub-chains. */
static int mark_cycles(bfs_collection *colls, size_t n)
{
    enum { WHITE, GREY, BLACK, LOGGED = 4 };
    struct frame {
        size_t i;
        int next;
    };
    unsigned char *state = calloc(n ? n : 1, 1);
    struct frame *stack = malloc((n ? n : 1) * sizeof *stack);
    if (!state || !stack) {
        free(state);
        free(stack);
        return -ENOMEM;
    }
    for (size_t root = 0; root < n; root++) {
        if (state[root] || colls[root].type != BFS_COLL_CHAINED)
            continue;
        size_t top = 0;
        stack[top++] = (struct frame){root, 0};
        state[root] = GREY;
        while (top) {
            struct frame *f = &stack[top - 1];
            bfs_collection *c = &colls[f->i];
            if (f->next < c->n_children) {
                const bfs_collection *kid = c->children[f->next++];
                size_t j = (size_t)(kid - colls);
                if ((state[j] & 3) == GREY) {
                    if (!(state[f->i] & LOGGED))
                        bfs_warn(REG_TAG, "collection chain '%s' lists '%s', which is it or contains it: "
                                 "a cycle; listings under either fail with ELOOP", c->name, kid->name);
                    state[f->i] |= LOGGED;
                    c->cyclic = true;
                } else if ((state[j] & 3) == WHITE) {
                    state[j] = GREY;
                    stack[top++] = (struct frame){j, 0};
                } else if (kid->cyclic) {
                    c->cyclic = true;
                }
                continue;
            }
            state[f->i] = (unsigned char)((state[f->i] & LOGGED) | BLACK);
            if (--top && c->cyclic)
                colls[stack[top - 1].i].cyclic = true;
        }
    }
    free(state);
    free(stack);
    return 0;
}

static int cmp_coll_id(const void *a, const void *b)
{
    const bfs_collection *x = *(bfs_collection *const *)a, *y = *(bfs_collection *const *)b;
    return (x->id > y->id) - (x->id < y->id);
}

static bfs_collection *find_id(bfs_collection **by_id, size_t n, int64_t id)
{
    bfs_collection key = {.id = id}, *kp = &key;
    bfs_collection **hit = bsearch(&kp, by_id, n, sizeof *by_id, cmp_coll_id);
    return hit ? *hit : NULL;
}

/* Step st to its end (DB_DONE), or stop early on a row when out of memory:
 * DB_ROW, reset so the statement holds no lock.  -errno from db_step. */
static int step_end(db_stmt *st, int rc)
{
    if (rc == DB_ROW)
        db_reset(st);
    return rc;
}

static int load_collections(db_conn *db, struct reg_catalog *cat)
{
    size_t cap = 64, n = 0;
    /* very old schemas have no doc column */
    int has_doc = db_column_exists(db, "collection", "doc");
    if (has_doc < 0)
        return has_doc;
    db_stmt *st = db_prepare(db, has_doc ? "SELECT collection_id, name, type, doc FROM collection"
                                         : "SELECT collection_id, name, type, NULL FROM collection");
    if (!st)
        return -EIO;
    int rc = DB_DONE;
    cat->colls = calloc(cap, sizeof *cat->colls);
    while (cat->colls && (rc = db_step(st)) == DB_ROW) {
        if (n == cap) {
            bfs_collection *bigger = realloc(cat->colls, 2 * cap * sizeof *bigger);
            if (!bigger)
                break;
            memset(bigger + cap, 0, cap * sizeof *bigger);
            cat->colls = bigger;
            cap *= 2;
        }
        bfs_collection *c = &cat->colls[n];
        c->id = db_column_int64(st, 0);
        c->name = col_text(st, 1);
        c->type = (bfs_collection_type)db_column_int64(st, 2);
        c->doc = col_text(st, 3);
        if (c->name) {
            n++;
        } else { /* a damaged row: the slot is reused (or not counted), so free it now */
            free((char *)c->doc);
            c->doc = NULL;
        }
    }
    rc = step_end(st, rc);
    cat->pub.ncollections = n;
    if (!cat->colls)
        return -ENOMEM;
    if (rc != DB_DONE)
        return rc == DB_ROW ? -ENOMEM : rc;
    qsort(cat->colls, n, sizeof *cat->colls, cmp_coll);

    /* chain rows name collections by id: a sorted index keeps a large
     * registry from costing collections x rows */
    bfs_collection **by_id = malloc((n ? n : 1) * sizeof *by_id);
    if (!by_id)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        by_id[i] = &cat->colls[i];
    qsort(by_id, n, sizeof *by_id, cmp_coll_id);
    st = db_prepare(db, "SELECT parent, child FROM collection_chain ORDER BY parent, position");
    if (!st) {
        free(by_id);
        return -EIO;
    }
    while ((rc = db_step(st)) == DB_ROW) {
        bfs_collection *parent = find_id(by_id, n, db_column_int64(st, 0));
        const bfs_collection *child = find_id(by_id, n, db_column_int64(st, 1));
        if (!parent || !child || parent->type != BFS_COLL_CHAINED)
            continue; /* only a CHAINED collection has children (registry.h) */
        const bfs_collection **kids = realloc(parent->children, (parent->n_children + 1) * sizeof *kids);
        if (!kids)
            break;
        kids[parent->n_children++] = child;
        parent->children = kids;
    }
    rc = step_end(st, rc);
    free(by_id);
    if (rc != DB_DONE)
        return rc == DB_ROW ? -ENOMEM : rc;
    return mark_cycles(cat->colls, n);
}

static int load_dataset_types(bfs_registry *reg, db_conn *db, struct reg_catalog *cat)
{
    size_t cap = 64, n = 0;
    db_stmt *st = db_prepare(db,
        "SELECT id, name, storage_class, dimensions_key, tag_association_table,"
        " calibration_association_table FROM dataset_type");
    if (!st)
        return -EIO;
    int rc = DB_DONE;
    cat->dtypes = calloc(cap, sizeof *cat->dtypes);
    while (cat->dtypes && (rc = db_step(st)) == DB_ROW) {
        if (n == cap) {
            bfs_dataset_type *bigger = realloc(cat->dtypes, 2 * cap * sizeof *bigger);
            if (!bigger)
                break;
            memset(bigger + cap, 0, cap * sizeof *bigger);
            cat->dtypes = bigger;
            cap *= 2;
        }
        bfs_dataset_type *d = &cat->dtypes[n];
        d->id = db_column_int64(st, 0);
        d->name = col_text(st, 1);
        d->storage_class = col_text(st, 2);
        d->dimensions_key = db_column_int64(st, 3);
        d->tags_table = col_text(st, 4);
        d->calibs_table = col_text(st, 5);
        if (d->name && d->tags_table) {
            n++;
        } else { /* a damaged row: the slot is reused (or not counted), so free it now */
            free((char *)d->name);
            free((char *)d->storage_class);
            free((char *)d->tags_table);
            free((char *)d->calibs_table);
            memset(d, 0, sizeof *d);
        }
    }
    rc = step_end(st, rc);
    cat->pub.ndataset_types = n;
    if (!cat->dtypes)
        return -ENOMEM;
    if (rc != DB_DONE)
        return rc == DB_ROW ? -ENOMEM : rc;

    st = db_prepare(db, "SELECT dimension_graph_id, dimension_name FROM dimension_graph_definition");
    if (!st)
        return -EIO;
    while ((rc = db_step(st)) == DB_ROW) {
        int64_t key = db_column_int64(st, 0);
        const char *dname = db_column_text(st, 1);
        const bfs_dimension *dim = dname ? bfs_registry_dimension_by_name(reg, dname) : NULL;
        if (!dim) {
            bfs_warn(REG_TAG, "dimension group %lld names unknown dimension '%s'",
                     (long long)key, dname ? dname : "(null)");
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            bfs_dataset_type *d = &cat->dtypes[i];
            if (d->dimensions_key == key && d->ndims < BFS_MAX_DIMS)
                d->dims[d->ndims++] = dim;
        }
    }
    if (rc != DB_DONE)
        return rc;
    for (size_t i = 0; i < n; i++)
        qsort(cat->dtypes[i].dims, cat->dtypes[i].ndims, sizeof cat->dtypes[i].dims[0], cmp_dim_index);
    qsort(cat->dtypes, n, sizeof *cat->dtypes, cmp_dtype);
    return 0;
}

static void catalog_free(struct reg_catalog *cat)
{
    for (size_t i = 0; cat->colls && i < cat->pub.ncollections; i++) {
        free((char *)cat->colls[i].name);
        free((char *)cat->colls[i].doc);
        free(cat->colls[i].children);
    }
    for (size_t i = 0; cat->dtypes && i < cat->pub.ndataset_types; i++) {
        free((char *)cat->dtypes[i].name);
        free((char *)cat->dtypes[i].storage_class);
        free((char *)cat->dtypes[i].tags_table);
        free((char *)cat->dtypes[i].calibs_table);
    }
    free(cat->colls);
    free(cat->dtypes);
    free(cat);
}

int reg_catalog_load(bfs_registry *reg, db_conn *db)
{
    struct reg_catalog *cat = calloc(1, sizeof *cat);
    if (!cat)
        return -ENOMEM;
    /* One read transaction, so collections, chains and types agree; inside
     * a caller's transaction that one serves. */
    bool own = !db_in_transaction(db) && db_begin(db, DB_TX_READ) == 0;
    char fp[256] = "";
    int ret = fingerprint(db, fp, sizeof fp);
    if (ret == 0)
        ret = load_collections(db, cat);
    if (ret == 0)
        ret = load_dataset_types(reg, db, cat);
    if (own && db_commit(db) < 0)
        db_rollback(db);
    if (ret < 0) {
        catalog_free(cat);
        return ret;
    }
    cat->pub.collections = cat->colls;
    cat->pub.dataset_types = cat->dtypes;
    pthread_mutex_lock(&reg->lock);
    cat->prev = reg->catalog;
    cat->pub.generation = cat->prev ? cat->prev->pub.generation + 1 : 1;
    snprintf(reg->catalog_fp, sizeof reg->catalog_fp, "%s", fp);
    atomic_store(&reg->catalog, cat);
    pthread_mutex_unlock(&reg->lock);
    bfs_info(REG_TAG, "catalog: %zu collections, %zu dataset types", cat->pub.ncollections,
             cat->pub.ndataset_types);
    return 0;
}

void reg_catalog_free_all(bfs_registry *reg)
{
    struct reg_catalog *cat = reg->catalog;
    while (cat) {
        struct reg_catalog *prev = cat->prev;
        catalog_free(cat);
        cat = prev;
    }
    reg->catalog = NULL;
}

const bfs_catalog *bfs_registry_catalog(bfs_registry *reg) { return &atomic_load(&reg->catalog)->pub; }

int bfs_registry_refresh(bfs_registry *reg)
{
    db_conn *db = reg_db(reg);
    char fp[256];
    if (!db)
        return -EIO;
    int ret = fingerprint(db, fp, sizeof fp);
    if (ret < 0)
        return ret;
    pthread_mutex_lock(&reg->lock);
    bool same = !strcmp(fp, reg->catalog_fp);
    pthread_mutex_unlock(&reg->lock);
    if (same)
        return 0;
    ret = reg_catalog_load(reg, db);
    return ret < 0 ? ret : 1;
}

const bfs_collection *bfs_catalog_collection(const bfs_catalog *cat, const char *name)
{
    bfs_collection key = {.name = name};
    return bsearch(&key, cat->collections, cat->ncollections, sizeof key, cmp_coll);
}

const bfs_collection *bfs_catalog_collection_by_id(const bfs_catalog *cat, int64_t id)
{
    return coll_by_id(cat->collections, cat->ncollections, id);
}

const bfs_dataset_type *bfs_catalog_dataset_type(const bfs_catalog *cat, const char *name)
{
    bfs_dataset_type key = {.name = name};
    return bsearch(&key, cat->dataset_types, cat->ndataset_types, sizeof key, cmp_dtype);
}
