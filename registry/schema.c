/*
 * schema.c - bfs_registry_init: a new, empty repository in the layout the
 * Python Butler creates for dimension universe 7 (namespace daf_butler).
 *
 * Design.  The universe is described once, compactly, in u_elements[] (keys,
 * requires, implies, metadata, storage kind), u_topology[] and u_packers[].
 * Two things are generated from that one table so they cannot disagree:
 * the "config:dimensions.json" document stored in butler_attributes (built
 * with jansson), and the DDL of every table whose shape follows from the
 * universe: the dimension tables, the collection_summary_<governor> tables
 * and the region-overlap tables.  The remaining static tables (attributes,
 * collections, dataset types, datasets, datastore bookkeeping) do not depend
 * on the universe and are written out by hand in static_ddl[].
 *
 * Generated DDL copies what daf_butler (through SQLAlchemy) emits, because
 * other tools compare and migrate schemas by name: string keys of at most 32
 * characters are VARCHAR(n) with a "<table>_len_<col>" CHECK, longer ones are
 * TEXT; every foreign key is "fkey_<table>_<target>_<target cols>_<cols>" and
 * gets a "<table>_fkidx_<cols>" index unless its columns are the whole
 * primary key; alternate keys are "<table>_unq_<cols>" UNIQUE constraints.
 * Column order of a dimension table: required dimensions in universe order
 * (its own key last), implied dimensions, alternate keys, metadata, region
 * (spatial elements), timespan (temporal elements).
 *
 * Universe order is the layered topological sort universe.c also uses, so a
 * table generated here and a dataId read there list dimensions alike.
 *
 * Everything happens in one transaction on an engine of our own (db.h;
 * the registry's open needs a repository that exists).  butler.yaml is
 * written last, with O_EXCL, so that a repository directory holds
 * butler.yaml only when its database is complete; on failure the new
 * database is removed.  engine: the new repository is SQLite (an empty
 * file, which SQLite takes as an empty database); init --db copies it into
 * PostgreSQL (copy.c).
 */
#include "registry_i.h"

#include "log.h"
#include "strutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the universe ------------------------------------------------------- */

enum u_type { U_INT = 1, U_STRING, U_HASH, U_FLOAT, U_BOOL };
enum u_storage { ST_TABLE, ST_CACHED, ST_GOVERNOR, ST_VIEW };

struct u_col {
    const char *name;
    enum u_type type;
    int length;          /* characters for U_STRING, bytes for U_HASH */
    bool not_nullable;   /* recorded in the JSON only: the Python Butler
                          * does not turn it into NOT NULL either */
};

struct u_elem {
    const char *name;
    struct u_col keys[3];        /* keys[0] is the primary key; none: a join element */
    const char *requires[3];
    const char *implies[4];
    struct u_col meta[17];
    enum u_storage storage;
    const char *view_of;         /* ST_VIEW: the table that holds its values */
    const char *populated_by;
    bool always_join;
};

#define U_UNIVERSE_VERSION 7
#define U_NAMESPACE "daf_butler"
#define U_MAX_ELEMS 24

static const struct u_elem u_elements[] = {
    {"instrument", .keys = {{"name", U_STRING, 32}},
     .meta = {{"visit_max", U_INT}, {"visit_system", U_INT}, {"exposure_max", U_INT},
              {"detector_max", U_INT}, {"class_name", U_STRING, 64}},
     .storage = ST_GOVERNOR},
    {"band", .keys = {{"name", U_STRING, 32}}, .storage = ST_VIEW, .view_of = "physical_filter"},
    {"physical_filter", .keys = {{"name", U_STRING, 32}}, .requires = {"instrument"},
     .implies = {"band"}, .storage = ST_CACHED},
    {"subfilter", .keys = {{"id", U_INT}}, .requires = {"band"}, .storage = ST_CACHED},
    {"detector", .keys = {{"id", U_INT}, {"full_name", U_STRING, 32}}, .requires = {"instrument"},
     .meta = {{"name_in_raft", U_STRING, 32}, {"raft", U_STRING, 32}, {"purpose", U_STRING, 32}},
     .storage = ST_CACHED},
    {"group", .keys = {{"name", U_STRING, 64}}, .requires = {"instrument"}},
    {"day_obs", .keys = {{"id", U_INT}}, .requires = {"instrument"}},
    {"visit", .keys = {{"id", U_INT}, {"name", U_STRING, 64}}, .requires = {"instrument"},
     .implies = {"physical_filter", "day_obs"},
     .meta = {{"seq_num", U_INT}, {"exposure_time", U_FLOAT}, {"target_name", U_STRING, 64},
              {"observation_reason", U_STRING, 68}, {"science_program", U_STRING, 64},
              {"azimuth", U_FLOAT}, {"zenith_angle", U_FLOAT}}},
    {"exposure", .keys = {{"id", U_INT}, {"obs_id", U_STRING, 64}}, .requires = {"instrument"},
     .implies = {"physical_filter", "group", "day_obs"},
     .meta = {{"exposure_time", U_FLOAT}, {"dark_time", U_FLOAT},
              {"observation_type", U_STRING, 16}, {"observation_reason", U_STRING, 68},
              {"seq_num", U_INT}, {"seq_start", U_INT}, {"seq_end", U_INT},
              {"target_name", U_STRING, 64}, {"science_program", U_STRING, 64},
              {"tracking_ra", U_FLOAT}, {"tracking_dec", U_FLOAT}, {"sky_angle", U_FLOAT},
              {"azimuth", U_FLOAT}, {"zenith_angle", U_FLOAT}, {"has_simulated", U_BOOL},
              {"can_see_sky", U_BOOL}}},
    {"skymap", .keys = {{"name", U_STRING, 64}, {"hash", U_HASH, 40}},
     .meta = {{"tract_max", U_INT}, {"patch_nx_max", U_INT}, {"patch_ny_max", U_INT}},
     .storage = ST_GOVERNOR},
    {"tract", .keys = {{"id", U_INT}}, .requires = {"skymap"}},
    {"patch", .keys = {{"id", U_INT}}, .requires = {"skymap", "tract"},
     .meta = {{"cell_x", U_INT, 0, true}, {"cell_y", U_INT, 0, true}}},
    {"visit_detector_region", .requires = {"visit", "detector"}, .populated_by = "visit"},
    {"visit_system", .keys = {{"id", U_INT}, {"name", U_STRING, 32}}, .requires = {"instrument"},
     .storage = ST_CACHED},
    {"visit_definition", .requires = {"exposure", "visit"}, .populated_by = "visit",
     .always_join = true},
    {"visit_system_membership", .requires = {"visit", "visit_system"}, .populated_by = "visit",
     .always_join = true},
};
#define U_NELEMS ((int)(sizeof u_elements / sizeof u_elements[0]))

/* Topological families; member order is significant to daf_butler. */
static const struct {
    const char *space, *family;
    const char *members[4];
} u_topology[] = {
    {"spatial", "observation_regions", {"visit_detector_region", "visit"}},
    {"spatial", "skymap_regions", {"patch", "tract"}},
    {"temporal", "observation_timespans", {"exposure", "visit", "day_obs"}},
};
#define U_NTOPO ((int)(sizeof u_topology / sizeof u_topology[0]))

static const struct {
    const char *name, *cls;
    const char *fixed[2], *dims[5];
} u_packers[] = {
    {"visit_detector", "lsst.daf.butler.instrument.ObservationDimensionPacker",
     {"instrument"}, {"instrument", "visit", "detector"}},
    {"exposure_detector", "lsst.daf.butler.instrument.ObservationDimensionPacker",
     {"instrument"}, {"instrument", "exposure", "detector"}},
    {"tract_patch", "lsst.skymap.packers.SkyMapDimensionPacker",
     {"skymap"}, {"skymap", "tract", "patch"}},
    {"tract_patch_band", "lsst.skymap.packers.SkyMapDimensionPacker",
     {"skymap"}, {"skymap", "tract", "patch", "band"}},
};

static const struct {
    const char *system, *cls;
    int max_level;
} u_skypix[] = {
    {"htm", "lsst.sphgeom.HtmPixelization", 24},
    {"healpix", "lsst.sphgeom.HealpixPixelization", 17},
};
#define U_SKYPIX_COMMON "htm7"

/* Manager classes and schema versions, as the Python Butler of universe 7
 * records them (config key, class in butler.yaml, class in attributes). */
static const struct {
    const char *key, *yaml_cls, *attr_cls, *version;
} u_managers[] = {
    {"attributes", "lsst.daf.butler.registry.attributes.DefaultButlerAttributeManager",
     "lsst.daf.butler.registry.attributes.DefaultButlerAttributeManager", "1.0.1"},
    {"dimensions", "lsst.daf.butler.registry.dimensions.static.StaticDimensionRecordStorageManager",
     "lsst.daf.butler.registry.dimensions.static.StaticDimensionRecordStorageManager", "6.0.2"},
    {"collections", "lsst.daf.butler.registry.collections.synthIntKey.SynthIntKeyCollectionManager",
     "lsst.daf.butler.registry.collections.synthIntKey.SynthIntKeyCollectionManager", "2.0.0"},
    {"datasets",
     "lsst.daf.butler.registry.datasets.byDimensions.ByDimensionsDatasetRecordStorageManagerUUID",
     "lsst.daf.butler.registry.datasets.byDimensions._manager."
     "ByDimensionsDatasetRecordStorageManagerUUID", "2.0.0"},
    {"opaque", "lsst.daf.butler.registry.opaque.ByNameOpaqueTableStorageManager",
     "lsst.daf.butler.registry.opaque.ByNameOpaqueTableStorageManager", "0.2.0"},
    {"datastores", "lsst.daf.butler.registry.bridge.monolithic.MonolithicDatastoreRegistryBridgeManager",
     "lsst.daf.butler.registry.bridge.monolithic.MonolithicDatastoreRegistryBridgeManager", "0.2.1"},
};

#define RECORDS_TABLE "file_datastore_records"

static int u_find(const char *name)
{
    for (int i = 0; i < U_NELEMS; i++)
        if (!strcmp(u_elements[i].name, name))
            return i;
    return -1;
}

static bool u_is_dimension(int e) { return u_elements[e].keys[0].name != NULL; }
static bool u_has_table(int e) { return u_elements[e].storage != ST_VIEW; }
static bool u_is_governor(int e) { return u_elements[e].storage == ST_GOVERNOR; }

static bool u_in_family(int e, const char *space)
{
    for (int t = 0; t < U_NTOPO; t++)
        if (!strcmp(u_topology[t].space, space))
            for (int m = 0; u_topology[t].members[m]; m++)
                if (!strcmp(u_topology[t].members[m], u_elements[e].name))
                    return true;
    return false;
}

/* Layer of element e in the universe order (see the file comment). */
static int u_layer(int e)
{
    int layer = 0;
    const struct u_elem *el = &u_elements[e];
    for (int i = 0; el->requires[i]; i++) {
        int l = u_layer(u_find(el->requires[i])) + 1;
        layer = l > layer ? l : layer;
    }
    for (int i = 0; el->implies[i]; i++) {
        int l = u_layer(u_find(el->implies[i])) + 1;
        layer = l > layer ? l : layer;
    }
    return layer;
}

static int u_cmp_order(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    int lx = u_layer(x), ly = u_layer(y);
    if (lx != ly)
        return lx - ly;
    return strcmp(u_elements[x].name, u_elements[y].name);
}

static void u_mark_required(int e, bool *mark)
{
    for (int i = 0; u_elements[e].requires[i]; i++) {
        int r = u_find(u_elements[e].requires[i]);
        mark[r] = true;
        u_mark_required(r, mark);
    }
}

/* The dimensions that identify a row of element e, in universe order: the
 * requires closure, plus e itself when it is a dimension.  Returns the count. */
static int u_required(int e, int out[U_MAX_ELEMS])
{
    bool mark[U_MAX_ELEMS] = {false};
    u_mark_required(e, mark);
    if (u_is_dimension(e))
        mark[e] = true;
    int n = 0;
    for (int i = 0; i < U_NELEMS; i++)
        if (mark[i])
            out[n++] = i;
    qsort(out, n, sizeof *out, u_cmp_order);
    return n;
}

static int u_governor_of(int e)
{
    int req[U_MAX_ELEMS], n = u_required(e, req);
    for (int i = 0; i < n; i++)
        if (u_is_governor(req[i]))
            return req[i];
    return -1;
}

/* ---- dimensions.json ---------------------------------------------------- */

static const char *u_type_name(enum u_type t)
{
    switch (t) {
    case U_INT: return "int";
    case U_STRING: return "string";
    case U_HASH: return "hash";
    case U_FLOAT: return "float";
    case U_BOOL: return "bool";
    }
    return "int";
}

static json_t *col_json(const struct u_col *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(c->name));
    json_object_set_new(o, "type", json_string(u_type_name(c->type)));
    if (c->type == U_STRING)
        json_object_set_new(o, "length", json_integer(c->length));
    else if (c->type == U_HASH)
        json_object_set_new(o, "nbytes", json_integer(c->length));
    if (c->not_nullable)
        json_object_set_new(o, "nullable", json_false());
    return o;
}

static json_t *strings_json(const char *const *v)
{
    json_t *a = json_array();
    for (int i = 0; v[i]; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

#define ST_PFX "lsst.daf.butler.registry.dimensions."

static json_t *storage_json(const struct u_elem *el)
{
    json_t *s = json_object();
    switch (el->storage) {
    case ST_GOVERNOR:
        json_object_set_new(s, "cls", json_string(ST_PFX "governor.BasicGovernorDimensionRecordStorage"));
        break;
    case ST_TABLE:
        json_object_set_new(s, "cls", json_string(ST_PFX "table.TableDimensionRecordStorage"));
        break;
    case ST_CACHED:
    case ST_VIEW: {
        json_t *nested = json_object();
        json_object_set_new(s, "cls", json_string(ST_PFX "caching.CachingDimensionRecordStorage"));
        if (el->storage == ST_VIEW) {
            json_object_set_new(nested, "cls", json_string(ST_PFX "query.QueryDimensionRecordStorage"));
            json_object_set_new(nested, "view_of", json_string(el->view_of));
        } else {
            json_object_set_new(nested, "cls", json_string(ST_PFX "table.TableDimensionRecordStorage"));
        }
        json_object_set_new(s, "nested", nested);
        break;
    }
    }
    return s;
}

/* The universe document; NULL when out of memory.  Caller frees.
 * (json_string(NULL) yields NULL, which json_object_set_new rejects, so an
 * allocation failure anywhere shows up as a missing member; the document is
 * re-checked by reg_universe_load before it is stored.) */
static char *universe_json_text(void)
{
    json_t *root = json_object();
    json_object_set_new(root, "version", json_integer(U_UNIVERSE_VERSION));
    json_object_set_new(root, "namespace", json_string(U_NAMESPACE));

    json_t *sky = json_object();
    json_object_set_new(sky, "common", json_string(U_SKYPIX_COMMON));
    for (size_t i = 0; i < sizeof u_skypix / sizeof u_skypix[0]; i++) {
        json_t *sys = json_object();
        json_object_set_new(sys, "class", json_string(u_skypix[i].cls));
        json_object_set_new(sys, "max_level", json_integer(u_skypix[i].max_level));
        json_object_set_new(sky, u_skypix[i].system, sys);
    }
    json_object_set_new(root, "skypix", sky);

    json_t *elements = json_object();
    for (int e = 0; e < U_NELEMS; e++) {
        const struct u_elem *el = &u_elements[e];
        json_t *o = json_object();
        if (el->keys[0].name) {
            json_t *keys = json_array();
            for (int i = 0; el->keys[i].name; i++)
                json_array_append_new(keys, col_json(&el->keys[i]));
            json_object_set_new(o, "keys", keys);
        }
        if (el->requires[0])
            json_object_set_new(o, "requires", strings_json(el->requires));
        if (el->implies[0])
            json_object_set_new(o, "implies", strings_json(el->implies));
        if (el->meta[0].name) {
            json_t *meta = json_array();
            for (int i = 0; el->meta[i].name; i++)
                json_array_append_new(meta, col_json(&el->meta[i]));
            json_object_set_new(o, "metadata", meta);
        }
        if (el->storage == ST_GOVERNOR)
            json_object_set_new(o, "governor", json_true());
        if (el->populated_by)
            json_object_set_new(o, "populated_by", json_string(el->populated_by));
        if (el->always_join)
            json_object_set_new(o, "always_join", json_true());
        json_object_set_new(o, "storage", storage_json(el));
        json_object_set_new(elements, el->name, o);
    }
    json_object_set_new(root, "elements", elements);

    json_t *topo = json_object();
    for (int t = 0; t < U_NTOPO; t++) {
        json_t *space = json_object_get(topo, u_topology[t].space);
        if (!space) {
            space = json_object();
            json_object_set_new(topo, u_topology[t].space, space);
        }
        json_object_set_new(space, u_topology[t].family, strings_json(u_topology[t].members));
    }
    json_object_set_new(root, "topology", topo);

    json_t *packers = json_object();
    for (size_t i = 0; i < sizeof u_packers / sizeof u_packers[0]; i++) {
        json_t *p = json_object();
        json_object_set_new(p, "fixed", strings_json(u_packers[i].fixed));
        json_object_set_new(p, "dimensions", strings_json(u_packers[i].dims));
        json_object_set_new(p, "cls", json_string(u_packers[i].cls));
        json_object_set_new(packers, u_packers[i].name, p);
    }
    json_object_set_new(root, "packers", packers);

    char *text = json_dumps(root, JSON_PRESERVE_ORDER);
    json_decref(root);
    return text;
}

/* ---- table specifications and their DDL ---------------------------------- */

#define TB_COLS 40
#define TB_FKS 12
#define TB_NAME 96

struct tb_col {
    char name[TB_NAME];
    char type[24];
    int check_len;   /* > 0: a length CHECK constraint */
    bool not_null;
};

struct tb_list {
    int n;
    char cols[8][TB_NAME];
};

struct tb_fk {
    char target[TB_NAME];
    struct tb_list src, dst;
    bool cascade;
};

struct tb {
    char name[TB_NAME];
    struct tb_col cols[TB_COLS];
    int ncols;
    struct tb_list pk;
    struct tb_list uniq[4];
    int nuniq;
    struct tb_fk fks[TB_FKS];
    int nfk;
    struct tb_list idx[2];   /* plain indexes, "<table>_idx_<cols>" */
    int nidx;
};

static void list_add(struct tb_list *l, const char *col)
{
    if (l->n < 8)
        snprintf(l->cols[l->n++], TB_NAME, "%s", col);
}

static bool list_eq(const struct tb_list *a, const struct tb_list *b)
{
    if (a->n != b->n)
        return false;
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->cols[i], b->cols[i]))
            return false;
    return true;
}

static void tb_col(struct tb *t, const char *name, const char *type, int check_len, bool not_null)
{
    if (t->ncols >= TB_COLS)
        return;
    struct tb_col *c = &t->cols[t->ncols++];
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->type, sizeof c->type, "%s", type);
    c->check_len = check_len;
    c->not_null = not_null;
}

/* A column for values described by c.  Short strings get a VARCHAR and a
 * length CHECK; daf_butler stores longer ones as unchecked TEXT. */
static void tb_typed_col(struct tb *t, const char *name, const struct u_col *c, bool not_null)
{
    switch (c->type) {
    case U_INT: tb_col(t, name, "BIGINT", 0, not_null); return;
    case U_FLOAT: tb_col(t, name, "FLOAT", 0, not_null); return;
    case U_BOOL: tb_col(t, name, "BOOLEAN", 0, not_null); return;
    case U_HASH: tb_col(t, name, "TEXT", 0, not_null); return;
    case U_STRING:
        if (c->length > 32) {
            tb_col(t, name, "TEXT", 0, not_null);
        } else {
            char type[24];
            snprintf(type, sizeof type, "VARCHAR(%d)", c->length);
            tb_col(t, name, type, c->length, not_null);
        }
        return;
    }
}

/* A column named name holding values of element e's primary key. */
static void tb_key_col(struct tb *t, const char *name, int e, bool not_null)
{
    tb_typed_col(t, name, &u_elements[e].keys[0], not_null);
}

/* Foreign key from the columns named after d's required dimensions to d's
 * table. */
static void tb_dim_fk(struct tb *t, int d)
{
    if (!u_has_table(d) || t->nfk >= TB_FKS)
        return;
    struct tb_fk *fk = &t->fks[t->nfk++];
    snprintf(fk->target, sizeof fk->target, "%s", u_elements[d].name);
    int req[U_MAX_ELEMS], n = u_required(d, req);
    for (int i = 0; i < n; i++) {
        list_add(&fk->src, u_elements[req[i]].name);
        list_add(&fk->dst, req[i] == d ? u_elements[d].keys[0].name : u_elements[req[i]].name);
    }
}

static bool needs_quote(const char *name)
{
    /* SQL keywords that occur as names in the Butler schema. */
    return !strcmp(name, "group");
}

static void put_ident(FILE *f, const char *name)
{
    if (needs_quote(name))
        fprintf(f, "\"%s\"", name);
    else
        fputs(name, f);
}

static void put_list(FILE *f, const struct tb_list *l)
{
    for (int i = 0; i < l->n; i++) {
        if (i)
            fputs(", ", f);
        put_ident(f, l->cols[i]);
    }
}

static void put_joined(FILE *f, const struct tb_list *l)
{
    for (int i = 0; i < l->n; i++)
        fprintf(f, "_%s", l->cols[i]);
}

/* Write the CREATE TABLE and CREATE INDEX statements of t to f. */
static void tb_emit(FILE *f, const struct tb *t)
{
    fputs("CREATE TABLE ", f);
    put_ident(f, t->name);
    fputs(" (\n", f);
    for (int i = 0; i < t->ncols; i++) {
        const struct tb_col *c = &t->cols[i];
        fputc('\t', f);
        put_ident(f, c->name);
        fprintf(f, " %s%s, \n", c->type, c->not_null ? " NOT NULL" : "");
    }
    fputs("\tPRIMARY KEY (", f);
    put_list(f, &t->pk);
    fputc(')', f);
    for (int i = 0; i < t->ncols; i++)
        if (t->cols[i].check_len > 0)
            fprintf(f, ", \n\tCONSTRAINT %s_len_%s CHECK (length(\"%s\")<=%d AND length(\"%s\")>=1)",
                    t->name, t->cols[i].name, t->cols[i].name, t->cols[i].check_len,
                    t->cols[i].name);
    for (int i = 0; i < t->nuniq; i++) {
        fprintf(f, ", \n\tCONSTRAINT %s_unq", t->name);
        put_joined(f, &t->uniq[i]);
        fputs(" UNIQUE (", f);
        put_list(f, &t->uniq[i]);
        fputc(')', f);
    }
    for (int i = 0; i < t->nfk; i++) {
        const struct tb_fk *fk = &t->fks[i];
        fprintf(f, ", \n\tCONSTRAINT fkey_%s_%s", t->name, fk->target);
        put_joined(f, &fk->dst);
        put_joined(f, &fk->src);
        fputs(" FOREIGN KEY(", f);
        put_list(f, &fk->src);
        fputs(") REFERENCES ", f);
        put_ident(f, fk->target);
        fputs(" (", f);
        put_list(f, &fk->dst);
        fprintf(f, ")%s", fk->cascade ? " ON DELETE CASCADE" : "");
    }
    fputs("\n);\n", f);
    for (int i = 0; i < t->nfk; i++) {
        if (list_eq(&t->fks[i].src, &t->pk))
            continue; /* the primary key's index serves the foreign key */
        fprintf(f, "CREATE INDEX %s_fkidx", t->name);
        put_joined(f, &t->fks[i].src);
        fputs(" ON ", f);
        put_ident(f, t->name);
        fputs(" (", f);
        put_list(f, &t->fks[i].src);
        fputs(");\n", f);
    }
    for (int i = 0; i < t->nidx; i++) {
        fprintf(f, "CREATE INDEX %s_idx", t->name);
        put_joined(f, &t->idx[i]);
        fputs(" ON ", f);
        put_ident(f, t->name);
        fputs(" (", f);
        put_list(f, &t->idx[i]);
        fputs(");\n", f);
    }
}

/* The table of dimension element e. */
static void build_element_table(struct tb *t, int e)
{
    const struct u_elem *el = &u_elements[e];
    snprintf(t->name, sizeof t->name, "%s", el->name);
    int req[U_MAX_ELEMS], n = u_required(e, req);
    for (int i = 0; i < n; i++) {
        const char *col = req[i] == e ? el->keys[0].name : u_elements[req[i]].name;
        tb_key_col(t, col, req[i], true);
        list_add(&t->pk, col);
    }
    int imp[4], nimp = 0;
    for (int i = 0; el->implies[i]; i++)
        imp[nimp++] = u_find(el->implies[i]);
    qsort(imp, nimp, sizeof *imp, u_cmp_order);
    for (int i = 0; i < nimp; i++)
        tb_key_col(t, u_elements[imp[i]].name, imp[i], true);
    for (int k = 1; el->keys[k].name; k++) {
        tb_typed_col(t, el->keys[k].name, &el->keys[k], false);
        /* unique within the values of the other required dimensions */
        struct tb_list *u = &t->uniq[t->nuniq++];
        for (int i = 0; i < n; i++)
            if (req[i] != e)
                list_add(u, u_elements[req[i]].name);
        list_add(u, el->keys[k].name);
    }
    for (int k = 0; el->meta[k].name; k++)
        tb_typed_col(t, el->meta[k].name, &el->meta[k], false);
    if (u_in_family(e, "spatial"))
        tb_col(t, "region", "TEXT", 0, false);
    /* SQLite's two timespan columns (init --db: copy.c makes them one int8range) */
    if (u_in_family(e, "temporal")) {
        tb_col(t, "timespan_begin", "BIGINT", 0, false);
        tb_col(t, "timespan_end", "BIGINT", 0, false);
    }
    for (int i = 0; i < n; i++)
        if (req[i] != e)
            tb_dim_fk(t, req[i]);
    for (int i = 0; i < nimp; i++)
        tb_dim_fk(t, imp[i]);
}

static void build_collection_summary(struct tb *t, int gov)
{
    const char *g = u_elements[gov].name;
    snprintf(t->name, sizeof t->name, "collection_summary_%s", g);
    tb_col(t, "collection_id", "BIGINT", 0, true);
    tb_key_col(t, g, gov, true);
    list_add(&t->pk, "collection_id");
    list_add(&t->pk, g);
    struct tb_fk *fk = &t->fks[t->nfk++];
    snprintf(fk->target, sizeof fk->target, "collection");
    list_add(&fk->src, "collection_id");
    list_add(&fk->dst, "collection_id");
    fk->cascade = true;
    tb_dim_fk(t, gov);
}

static void skypix_cols(struct tb *t)
{
    tb_col(t, "skypix_system", "VARCHAR(16)", 16, true);
    tb_col(t, "skypix_level", "SMALLINT", 0, true);
    list_add(&t->pk, "skypix_system");
    list_add(&t->pk, "skypix_level");
}

/* <e>_skypix_overlap_summary: which skypix systems/levels are materialized
 * for a governor value. */
static void build_skypix_summary(struct tb *t, int e)
{
    int gov = u_governor_of(e);
    snprintf(t->name, sizeof t->name, "%s_skypix_overlap_summary", u_elements[e].name);
    skypix_cols(t);
    tb_key_col(t, u_elements[gov].name, gov, true);
    list_add(&t->pk, u_elements[gov].name);
    tb_dim_fk(t, gov);
}

static void build_skypix_overlap(struct tb *t, int e)
{
    int gov = u_governor_of(e);
    const char *g = u_elements[gov].name;
    snprintf(t->name, sizeof t->name, "%s_skypix_overlap", u_elements[e].name);
    skypix_cols(t);
    int req[U_MAX_ELEMS], n = u_required(e, req);
    for (int i = 0; i < n; i++) {
        tb_key_col(t, u_elements[req[i]].name, req[i], true);
        list_add(&t->pk, u_elements[req[i]].name);
    }
    tb_col(t, "skypix_index", "BIGINT", 0, true);
    list_add(&t->pk, "skypix_index");

    struct tb_fk *fk = &t->fks[t->nfk++];
    snprintf(fk->target, sizeof fk->target, "%s_skypix_overlap_summary", u_elements[e].name);
    const char *sum_cols[] = {"skypix_system", "skypix_level", g};
    for (int i = 0; i < 3; i++) {
        list_add(&fk->src, sum_cols[i]);
        list_add(&fk->dst, sum_cols[i]);
    }
    fk->cascade = true;
    for (int i = 0; i < n; i++)
        tb_dim_fk(t, req[i]);

    struct tb_list *ix = &t->idx[t->nidx++];
    list_add(ix, "skypix_system");
    list_add(ix, "skypix_level");
    list_add(ix, "skypix_index");
    for (int i = 0; i < n; i++)
        list_add(ix, u_elements[req[i]].name);
}

/* <a>_<b>_overlap(_summary) between two elements of different spatial
 * families; a sorts before b by name. */
static void build_pair_overlap(struct tb *t, int a, int b, bool summary)
{
    int ga = u_governor_of(a), gb = u_governor_of(b);
    snprintf(t->name, sizeof t->name, "%s_%s_overlap%s", u_elements[a].name,
             u_elements[b].name, summary ? "_summary" : "");
    int cols[2 * U_MAX_ELEMS], ncols = 0;
    cols[ncols++] = ga;
    cols[ncols++] = gb;
    if (!summary) {
        int req[U_MAX_ELEMS], n = u_required(a, req);
        for (int i = 0; i < n; i++)
            if (req[i] != ga)
                cols[ncols++] = req[i];
        n = u_required(b, req);
        for (int i = 0; i < n; i++)
            if (req[i] != gb)
                cols[ncols++] = req[i];
    }
    for (int i = 0; i < ncols; i++) {
        tb_key_col(t, u_elements[cols[i]].name, cols[i], true);
        list_add(&t->pk, u_elements[cols[i]].name);
    }
    for (int i = 0; i < ncols; i++)
        tb_dim_fk(t, cols[i]);
}

/* Append the DDL of every universe-derived table to f. */
static int emit_universe_ddl(FILE *f)
{
    struct tb *t = malloc(sizeof *t);
    if (!t)
        return -ENOMEM;
#define EMIT(build)                 \
    do {                            \
        memset(t, 0, sizeof *t);    \
        build;                      \
        tb_emit(f, t);              \
    } while (0)
    for (int e = 0; e < U_NELEMS; e++)
        if (u_has_table(e))
            EMIT(build_element_table(t, e));
    for (int e = 0; e < U_NELEMS; e++)
        if (u_is_governor(e))
            EMIT(build_collection_summary(t, e));
    for (int e = 0; e < U_NELEMS; e++) {
        if (!u_in_family(e, "spatial"))
            continue;
        EMIT(build_skypix_summary(t, e));
        EMIT(build_skypix_overlap(t, e));
    }
    for (int f1 = 0; f1 < U_NTOPO; f1++)
        for (int f2 = f1 + 1; f2 < U_NTOPO; f2++) {
            if (strcmp(u_topology[f1].space, "spatial") || strcmp(u_topology[f2].space, "spatial"))
                continue;
            for (int i = 0; u_topology[f1].members[i]; i++)
                for (int j = 0; u_topology[f2].members[j]; j++) {
                    int a = u_find(u_topology[f1].members[i]);
                    int b = u_find(u_topology[f2].members[j]);
                    if (strcmp(u_elements[a].name, u_elements[b].name) > 0) {
                        int tmp = a;
                        a = b;
                        b = tmp;
                    }
                    EMIT(build_pair_overlap(t, a, b, true));
                    EMIT(build_pair_overlap(t, a, b, false));
                }
        }
#undef EMIT
    free(t);
    return 0;
}

/* Tables that do not depend on the universe. */
static const char static_ddl[] =
    "CREATE TABLE butler_attributes (name TEXT NOT NULL, value TEXT NOT NULL,"
    " PRIMARY KEY (name));\n"

    "CREATE TABLE dimension_graph_key (id INTEGER NOT NULL, PRIMARY KEY (id));\n"
    "CREATE TABLE dimension_graph_definition (dimension_graph_id BIGINT NOT NULL,"
    " dimension_name TEXT NOT NULL, PRIMARY KEY (dimension_graph_id, dimension_name),"
    " CONSTRAINT fkey_dimension_graph_definition_dimension_graph_key_id_dimension_graph_id"
    " FOREIGN KEY(dimension_graph_id) REFERENCES dimension_graph_key (id) ON DELETE CASCADE);\n"
    "CREATE INDEX dimension_graph_definition_fkidx_dimension_graph_id"
    " ON dimension_graph_definition (dimension_graph_id);\n"

    "CREATE TABLE collection (collection_id INTEGER NOT NULL, name TEXT NOT NULL,"
    " type SMALLINT NOT NULL, doc TEXT, PRIMARY KEY (collection_id),"
    " CONSTRAINT collection_unq_name UNIQUE (name));\n"
    "CREATE TABLE run (collection_id BIGINT NOT NULL, host TEXT, timespan_begin BIGINT,"
    " timespan_end BIGINT, PRIMARY KEY (collection_id),"
    " CONSTRAINT fkey_run_collection_collection_id_collection_id FOREIGN KEY(collection_id)"
    " REFERENCES collection (collection_id) ON DELETE CASCADE);\n"
    "CREATE TABLE collection_chain (parent BIGINT NOT NULL, position SMALLINT NOT NULL,"
    " child BIGINT NOT NULL, PRIMARY KEY (parent, position),"
    " CONSTRAINT fkey_collection_chain_collection_collection_id_parent FOREIGN KEY(parent)"
    " REFERENCES collection (collection_id) ON DELETE CASCADE,"
    " CONSTRAINT fkey_collection_chain_collection_collection_id_child FOREIGN KEY(child)"
    " REFERENCES collection (collection_id));\n"
    "CREATE INDEX collection_chain_fkidx_parent ON collection_chain (parent);\n"
    "CREATE INDEX collection_chain_fkidx_child ON collection_chain (child);\n"

    "CREATE TABLE dataset_type (id INTEGER NOT NULL, name TEXT NOT NULL,"
    " storage_class TEXT NOT NULL, dimensions_key BIGINT NOT NULL,"
    " tag_association_table TEXT NOT NULL, calibration_association_table TEXT,"
    " PRIMARY KEY (id), CONSTRAINT dataset_type_unq_name UNIQUE (name));\n"
    "CREATE TABLE dataset (id CHAR(32) NOT NULL, dataset_type_id BIGINT NOT NULL,"
    " ingest_date BIGINT NOT NULL, run_id BIGINT NOT NULL, PRIMARY KEY (id),"
    " CONSTRAINT fkey_dataset_dataset_type_id_dataset_type_id FOREIGN KEY(dataset_type_id)"
    " REFERENCES dataset_type (id),"
    " CONSTRAINT fkey_dataset_run_collection_id_run_id FOREIGN KEY(run_id)"
    " REFERENCES run (collection_id) ON DELETE CASCADE);\n"
    "CREATE INDEX dataset_fkidx_dataset_type_id ON dataset (dataset_type_id);\n"
    "CREATE INDEX dataset_fkidx_run_id ON dataset (run_id);\n"
    "CREATE TABLE collection_summary_dataset_type (collection_id BIGINT NOT NULL,"
    " dataset_type_id BIGINT NOT NULL, PRIMARY KEY (collection_id, dataset_type_id),"
    " CONSTRAINT fkey_collection_summary_dataset_type_collection_collection_id_collection_id"
    " FOREIGN KEY(collection_id) REFERENCES collection (collection_id) ON DELETE CASCADE,"
    " CONSTRAINT fkey_collection_summary_dataset_type_dataset_type_id_dataset_type_id"
    " FOREIGN KEY(dataset_type_id) REFERENCES dataset_type (id) ON DELETE CASCADE);\n"
    "CREATE INDEX collection_summary_dataset_type_fkidx_collection_id"
    " ON collection_summary_dataset_type (collection_id);\n"
    "CREATE INDEX collection_summary_dataset_type_fkidx_dataset_type_id"
    " ON collection_summary_dataset_type (dataset_type_id);\n"

    "CREATE TABLE opaque_meta (table_name TEXT NOT NULL, PRIMARY KEY (table_name));\n"
    "CREATE TABLE dataset_location (datastore_name TEXT NOT NULL, dataset_id CHAR(32) NOT NULL,"
    " PRIMARY KEY (datastore_name, dataset_id),"
    " CONSTRAINT fkey_dataset_location_dataset_id_dataset_id FOREIGN KEY(dataset_id)"
    " REFERENCES dataset (id));\n"
    "CREATE INDEX dataset_location_fkidx_dataset_id ON dataset_location (dataset_id);\n"
    "CREATE TABLE dataset_location_trash (dataset_id CHAR(32) NOT NULL,"
    " datastore_name TEXT NOT NULL, PRIMARY KEY (dataset_id, datastore_name));\n"
    "CREATE TABLE " RECORDS_TABLE " (dataset_id CHAR(32) NOT NULL, path TEXT NOT NULL,"
    " formatter TEXT NOT NULL, storage_class TEXT NOT NULL, component VARCHAR(32) NOT NULL,"
    " checksum TEXT, file_size BIGINT, PRIMARY KEY (dataset_id, component),"
    " CONSTRAINT " RECORDS_TABLE "_len_component"
    " CHECK (length(\"component\")<=32 AND length(\"component\")>=1));\n"
    "CREATE INDEX " RECORDS_TABLE "_idx_path ON " RECORDS_TABLE " (path);\n"
    "INSERT INTO opaque_meta (table_name) VALUES ('" RECORDS_TABLE "');\n";

/* ---- the database -------------------------------------------------------- */

static int put_attribute(db_conn *db, const char *name, const char *value)
{
    db_stmt *st = db_prepare(db, "INSERT INTO butler_attributes (name, value) VALUES (?1, ?2)");
    if (!st)
        return -EIO;
    db_bind_text(st, 1, name, -1);
    db_bind_text(st, 2, value, -1);
    int rc = db_step(st);
    db_reset(st);
    return rc == DB_DONE ? 0 : rc < 0 ? rc : -EIO;
}

static int put_attributes(db_conn *db, const char *universe)
{
    int ret = 0;
    for (size_t i = 0; !ret && i < sizeof u_managers / sizeof u_managers[0]; i++) {
        char *k1 = bfs_asprintf("config:registry.managers.%s", u_managers[i].key);
        char *k2 = bfs_asprintf("version:%s", u_managers[i].attr_cls);
        ret = !k1 || !k2 ? -ENOMEM : put_attribute(db, k1, u_managers[i].attr_cls);
        if (!ret)
            ret = put_attribute(db, k2, u_managers[i].version);
        free(k1);
        free(k2);
    }
    return ret ? ret : put_attribute(db, "config:dimensions.json", universe);
}

/* Create the schema in db inside one transaction. */
static int create_schema(db_conn *db, char **errmsg)
{
    char *universe = universe_json_text();
    char *ddl = NULL;
    size_t ddl_len = 0;
    FILE *f = universe ? open_memstream(&ddl, &ddl_len) : NULL;
    int ret = f ? 0 : -ENOMEM;
    if (f) {
        fputs(static_ddl, f);
        ret = emit_universe_ddl(f);
        if (fclose(f) != 0 && !ret)
            ret = -ENOMEM;
    }
    /* Parse the document back the way an open will, so an unreadable
     * universe fails here and not on every later open. */
    json_t *check = universe ? json_loads(universe, 0, NULL) : NULL;
    if (!ret && json_object_size(json_object_get(check, "elements")) != (size_t)U_NELEMS)
        ret = -ENOMEM;
    json_decref(check);
    if (ret) {
        free(universe);
        free(ddl);
        bfs_set_errmsg(errmsg, "out of memory while building the registry schema");
        return ret;
    }

    ret = db_begin(db, DB_TX_WRITE);
    if (!ret)
        ret = db_exec(db, ddl);
    if (!ret)
        ret = put_attributes(db, universe);
    if (!ret)
        ret = db_commit(db);
    if (ret) {
        /* the engine logged SQL and detail */
        bfs_set_errmsg(errmsg, "cannot create the registry schema: %s", strerror(-ret));
        db_rollback(db);
    }
    free(universe);
    free(ddl);
    return ret;
}

/* mkdir -p; 0 or -errno. */
static int make_dirs(const char *dir)
{
    char *p = strdup(dir);
    if (!p)
        return -ENOMEM;
    int ret = 0;
    for (char *s = p + 1; !ret; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0777) < 0 && errno != EEXIST)
            ret = -errno;
        *s = c;
        if (!c)
            break;
    }
    free(p);
    if (!ret) {
        struct stat sb;
        if (stat(dir, &sb) < 0)
            ret = -errno;
        else if (!S_ISDIR(sb.st_mode))
            ret = -ENOTDIR;
    }
    return ret;
}

static int write_butler_yaml(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        int e = -errno;
        close(fd);
        unlink(path);
        return e;
    }
    fprintf(f, "datastore:\n"
               "  cls: lsst.daf.butler.datastores.fileDatastore.FileDatastore\n"
               "  records:\n"
               "    table: %s\n"
               "  root: <butlerRoot>\n"
               "registry:\n"
               "  db: sqlite:///<butlerRoot>/gen3.sqlite3\n"
               "  managers:\n", RECORDS_TABLE);
    for (size_t i = 0; i < sizeof u_managers / sizeof u_managers[0]; i++)
        fprintf(f, "    %s: %s\n", u_managers[i].key, u_managers[i].yaml_cls);
    int ret = 0;
    if (ferror(f))
        ret = -EIO;
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        ret = ret ? ret : -errno;
    if (fclose(f) != 0 && !ret)
        ret = -errno;
    if (ret)
        unlink(path);
    return ret;
}

static void remove_db(const char *db_path)
{
    static const char *const suffixes[] = {"", "-journal", "-wal", "-shm"};
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        char *p = bfs_asprintf("%s%s", db_path, suffixes[i]);
        if (p)
            unlink(p);
        free(p);
    }
}

/* An empty file for the new database, never an existing one: 0, or -errno. */
static int create_db_file(const char *db_path)
{
    int fd = open(db_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    close(fd);
    return 0;
}

int bfs_registry_init(const char *dir, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (!dir || !*dir) {
        bfs_set_errmsg(errmsg, "no repository directory given");
        return -EINVAL;
    }
    char *yaml_path = bfs_asprintf("%s/butler.yaml", dir);
    char *db_path = bfs_asprintf("%s/gen3.sqlite3", dir);
    db_engine *engine = NULL;
    db_conn *db = NULL;
    bool db_created = false;
    int ret = yaml_path && db_path ? 0 : -ENOMEM;
    struct stat sb;

    if (ret) {
        bfs_set_errmsg(errmsg, "out of memory");
    } else if (stat(yaml_path, &sb) == 0) {
        ret = -EEXIST;
        bfs_set_errmsg(errmsg, "%s already exists: %s is a repository already; "
                       "choose an empty directory", yaml_path, dir);
    } else if (stat(db_path, &sb) == 0) {
        ret = -EEXIST;
        bfs_set_errmsg(errmsg, "%s exists without a butler.yaml; remove it or choose "
                       "another directory", db_path);
    } else if ((ret = make_dirs(dir)) < 0) {
        bfs_set_errmsg(errmsg, "cannot create repository directory %s: %s", dir, strerror(-ret));
    }

    if (!ret) {
        ret = create_db_file(db_path);
        db_created = ret == 0;
        if (ret)
            bfs_set_errmsg(errmsg, "cannot create %s: %s", db_path, strerror(-ret));
    }
    if (!ret) {
        struct db_options o = {.kind = DB_SQLITE, .sqlite_path = db_path, .writable = true};
        ret = db_engine_open(&o, &engine, errmsg);
    }
    if (!ret && !(db = db_engine_conn(engine))) {
        ret = -EIO;
        bfs_set_errmsg(errmsg, "cannot open %s", db_path);
    }
    if (!ret)
        ret = create_schema(db, errmsg);
    db_engine_close(engine);
    if (!ret && (ret = write_butler_yaml(yaml_path)) < 0)
        bfs_set_errmsg(errmsg, "cannot write %s: %s", yaml_path, strerror(-ret));
    if (ret && db_created)
        remove_db(db_path);
    if (!ret)
        bfs_info(REG_TAG, "created repository %s (universe %s %d)", dir, U_NAMESPACE,
                 U_UNIVERSE_VERSION);
    free(yaml_path);
    free(db_path);
    return ret;
}
