/*
 * test_registry_read.c - the public read API (registry/catalog.c,
 * registry/query.c) over a repository of every collection type built with
 * the write API (repo_builder.h), and the write API's collection, chain,
 * association and certification calls with their error cases.
 */
#include "repo_builder.h"

/* ---- collectors ------------------------------------------------------------ */

struct strs {
    char text[1024];  /* entries joined by ',' */
    int n;
    int stop_after;   /* > 0: return 7 from the callback after that many */
};

static void strs_add(struct strs *s, const char *v)
{
    size_t len = strlen(s->text);
    snprintf(s->text + len, sizeof s->text - len, "%s%s", s->n ? "," : "", v);
    s->n++;
}

static int value_cb(void *ctx, const char *value)
{
    struct strs *s = ctx;
    strs_add(s, value);
    return s->stop_after > 0 && s->n >= s->stop_after ? 7 : 0;
}

static int dtype_cb(void *ctx, const bfs_dataset_type *dt)
{
    strs_add(ctx, dt->name);
    return 0;
}

#define MAX_FOUND 16

struct found_file {
    char id[33];
    int64_t coll, run, ingest;
    char values[128]; /* joined by ',' */
    char path[128];
    int64_t size;
    bool span;
    int64_t begin, end;
};

struct found {
    int n;
    struct found_file f[MAX_FOUND];
    int ndims;
};

static int file_cb(void *ctx, const bfs_dataset_file *f)
{
    struct found *x = ctx;
    assert_true(x->n < MAX_FOUND);
    struct found_file *o = &x->f[x->n++];
    snprintf(o->id, sizeof o->id, "%s", f->id);
    o->coll = f->collection_id;
    o->run = f->run_id;
    o->ingest = f->ingest_unix;
    o->values[0] = '\0';
    for (int i = 0; i < x->ndims; i++) {
        size_t len = strlen(o->values);
        snprintf(o->values + len, sizeof o->values - len, "%s%s", i ? "," : "", f->values[i]);
    }
    snprintf(o->path, sizeof o->path, "%s", f->path);
    o->size = f->file_size;
    o->span = f->has_timespan;
    o->begin = f->timespan_begin;
    o->end = f->timespan_end;
    return 0;
}

/* ---- fixtures -------------------------------------------------------------- */

struct ctx {
    struct rb_repo *repo;
    bfs_registry *reg;
    const bfs_catalog *cat;
    const bfs_dataset_type *raw, *bias, *flat;
};

static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof *c);
    c->repo = rb_build();
    c->reg = rb_open(c->repo, BFS_REG_READONLY);
    c->cat = bfs_registry_catalog(c->reg);
    c->raw = bfs_catalog_dataset_type(c->cat, "raw");
    c->bias = bfs_catalog_dataset_type(c->cat, "bias");
    c->flat = bfs_catalog_dataset_type(c->cat, "flat");
    if (!c->raw || !c->bias || !c->flat)
        return -1;
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    bfs_registry_close(c->reg);
    rb_destroy(c->repo);
    free(c);
    return 0;
}

static const bfs_collection *coll(struct ctx *c, const char *name)
{
    const bfs_collection *x = bfs_catalog_collection(c->cat, name);
    if (!x)
        print_error("no collection %s\n", name);
    assert_non_null(x);
    return x;
}

static const char *list(struct ctx *c, struct strs *s, const char *cname, const bfs_dataset_type *dt,
                        const char *const *values, int k)
{
    memset(s, 0, sizeof *s);
    assert_int_equal(bfs_registry_list_values(c->reg, coll(c, cname), dt, values, k, value_cb, s), 0);
    return s->text;
}

static void find(struct ctx *c, struct found *x, const char *cname, const bfs_dataset_type *dt,
                 const char *const *values)
{
    memset(x, 0, sizeof *x);
    x->ndims = dt->ndims;
    assert_int_equal(bfs_registry_find_files(c->reg, coll(c, cname), dt, values, file_cb, x), 0);
}

/* index into rb_raws of run/det/exp */
static int raw_index(const char *run, int det, int exp)
{
    for (int i = 0; i < RB_NRAW; i++)
        if (!strcmp(rb_raws[i].run, run) && rb_raws[i].det == det && rb_raws[i].exp == exp)
            return i;
    fail_msg("no raw %s %d %d", run, det, exp);
    return -1;
}

/* ---- catalog ---------------------------------------------------------------- */

static void test_catalog(void **state)
{
    struct ctx *c = *state;
    const bfs_catalog *cat = c->cat;
    assert_int_equal(cat->ncollections, RB_NCOLL);
    for (size_t i = 0; i < cat->ncollections; i++)
        assert_string_equal(cat->collections[i].name, rb_collections[i]);

    assert_int_equal(coll(c, "A")->type, BFS_COLL_RUN);
    assert_int_equal(coll(c, "calib/run2")->type, BFS_COLL_RUN);
    assert_int_equal(coll(c, "tags/50%")->type, BFS_COLL_TAGGED);
    assert_int_equal(coll(c, "calib")->type, BFS_COLL_CALIBRATION);
    assert_string_equal(coll(c, "B")->doc, "run B");
    assert_null(coll(c, "A")->doc);
    assert_string_equal(coll(c, "chain")->doc, "B before A");

    const bfs_collection *chain = coll(c, "chain"), *nested = coll(c, "nested");
    assert_int_equal(chain->type, BFS_COLL_CHAINED);
    assert_int_equal(chain->n_children, 2);
    assert_ptr_equal(chain->children[0], coll(c, "B"));
    assert_ptr_equal(chain->children[1], coll(c, "A"));
    assert_int_equal(nested->n_children, 2);
    assert_ptr_equal(nested->children[0], chain);
    assert_ptr_equal(nested->children[1], coll(c, "tags/50%"));
    const bfs_collection *defaults = coll(c, "defaults");
    assert_int_equal(defaults->n_children, 2);
    assert_ptr_equal(defaults->children[0], nested);
    assert_ptr_equal(defaults->children[1], coll(c, "calib"));
    assert_int_equal(coll(c, "A")->n_children, 0);
    assert_ptr_equal(bfs_catalog_collection_by_id(cat, chain->id), chain);
    assert_null(bfs_catalog_collection(cat, "tags"));

    assert_int_equal(cat->ndataset_types, 3);
    assert_string_equal(cat->dataset_types[0].name, "bias");
    assert_string_equal(cat->dataset_types[1].name, "flat");
    assert_string_equal(cat->dataset_types[2].name, "raw");
    assert_int_equal(c->raw->ndims, 3);
    assert_string_equal(c->raw->dims[0]->name, "instrument");
    assert_string_equal(c->raw->dims[1]->name, "detector");
    assert_string_equal(c->raw->dims[2]->name, "exposure");
    assert_null(c->raw->calibs_table);
    assert_int_equal(c->bias->ndims, 2);
    assert_string_equal(c->bias->dims[1]->name, "detector");
    assert_non_null(c->bias->calibs_table);
    assert_int_equal(c->flat->ndims, 3);
    assert_string_equal(c->flat->dims[1]->name, "detector");
    assert_string_equal(c->flat->dims[2]->name, "physical_filter");
    /* bias and flat share no group; raw and bias neither */
    assert_true(c->raw->dimensions_key != c->bias->dimensions_key);
    assert_string_not_equal(c->raw->tags_table, c->bias->tags_table);
}

static void test_collection_has(void **state)
{
    struct ctx *c = *state;
    assert_int_equal(bfs_registry_collection_has(c->reg, coll(c, "A"), c->raw), 1);
    assert_int_equal(bfs_registry_collection_has(c->reg, coll(c, "A/raw"), c->raw), 0);
    assert_int_equal(bfs_registry_collection_has(c->reg, coll(c, "A"), c->bias), 0);
    assert_int_equal(bfs_registry_collection_has(c->reg, coll(c, "tags/50%"), c->raw), 1);
    assert_int_equal(bfs_registry_collection_has(c->reg, coll(c, "calib"), c->bias), 1);
    assert_int_equal(bfs_registry_collection_has(c->reg, coll(c, "calib"), c->raw), 0);
    assert_int_equal(bfs_registry_collection_has(c->reg, coll(c, "chain"), c->bias), 0);
    assert_int_equal(bfs_registry_collection_has(c->reg, coll(c, "nested"), c->raw), 1);
    assert_int_equal(bfs_registry_collection_has(c->reg, coll(c, "defaults"), c->bias), 1);
    assert_int_equal(bfs_registry_collection_has(c->reg, coll(c, "defaults"), c->flat), 0);
    assert_int_equal(bfs_registry_collection_has(c->reg, coll(c, "flats"), c->flat), 1);
    /* the run of the certified biases holds them too */
    assert_int_equal(bfs_registry_collection_has(c->reg, coll(c, "calib/run2"), c->bias), 1);
}

static void test_dataset_types_in(void **state)
{
    struct ctx *c = *state;
    static const struct { const char *coll, *want; } cases[] = {
        {"A", "raw"}, {"A/raw", ""}, {"tags/50%", "raw"}, {"calib", "bias"},
        {"chain", "raw"}, {"defaults", "bias,raw"}, {"flats", "flat"}, {"calib/run1", "bias"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct strs s = {0};
        assert_int_equal(bfs_registry_dataset_types_in(c->reg, coll(c, cases[i].coll), dtype_cb, &s), 0);
        if (strcmp(s.text, cases[i].want))
            print_error("%s: got '%s'\n", cases[i].coll, s.text);
        assert_string_equal(s.text, cases[i].want);
    }
}

static void test_list_values(void **state)
{
    struct ctx *c = *state;
    struct strs s;
    const char *none[BFS_MAX_DIMS] = {0};
    assert_string_equal(list(c, &s, "A", c->raw, none, 1), "0,1,2");
    assert_string_equal(list(c, &s, "B", c->raw, none, 1), "1,3");
    /* distinct over a chain: 1 is in both runs, listed once */
    assert_string_equal(list(c, &s, "chain", c->raw, none, 1), "0,1,2,3");
    assert_string_equal(list(c, &s, "chain", c->raw, none, 0), "LSSTCam");
    assert_string_equal(list(c, &s, "chain", c->raw, none, 2),
                        "2025041500001,2025041500002,2025041500003");
    /* constrained by a partial dataId */
    const char *det1[BFS_MAX_DIMS] = {"LSSTCam", "1"};
    assert_string_equal(list(c, &s, "chain", c->raw, det1, 2), "2025041500001,2025041500002");
    const char *det2[BFS_MAX_DIMS] = {NULL, "2"};
    assert_string_equal(list(c, &s, "B", c->raw, det2, 2), "");
    assert_string_equal(list(c, &s, "A", c->raw, det2, 2), "2025041500002");
    const char *exp3[BFS_MAX_DIMS] = {NULL, NULL, "2025041500003"};
    assert_string_equal(list(c, &s, "nested", c->raw, exp3, 1), "3");
    assert_string_equal(list(c, &s, "A", c->raw, exp3, 1), "");
    /* the listed dimension given (does the value exist?): one probe, in one
     * RUN or a chain, the given values a prefix of the dimensions or not */
    const char *inst[BFS_MAX_DIMS] = {"LSSTCam"};
    assert_string_equal(list(c, &s, "A", c->raw, inst, 0), "LSSTCam");
    assert_string_equal(list(c, &s, "chain", c->raw, inst, 0), "LSSTCam");
    const char *other[BFS_MAX_DIMS] = {"LATISS"};
    assert_string_equal(list(c, &s, "A", c->raw, other, 0), "");
    const char *det3[BFS_MAX_DIMS] = {"LSSTCam", "3"};
    assert_string_equal(list(c, &s, "B", c->raw, det3, 1), "3");
    assert_string_equal(list(c, &s, "A", c->raw, det3, 1), "");
    assert_string_equal(list(c, &s, "chain", c->raw, det3, 1), "3");
    const char *exp2[BFS_MAX_DIMS] = {"LSSTCam", NULL, "2025041500002"};
    assert_string_equal(list(c, &s, "B", c->raw, exp2, 2), "2025041500002");
    const char *det3exp2[BFS_MAX_DIMS] = {NULL, "3", "2025041500002"};
    assert_string_equal(list(c, &s, "B", c->raw, det3exp2, 2), "");
    assert_string_equal(list(c, &s, "tags/50%", c->raw, det1, 1), "1");
    const char *bias1[BFS_MAX_DIMS] = {NULL, "1"};
    assert_string_equal(list(c, &s, "defaults", c->bias, bias1, 1), "1");
    /* a value that cannot be of the dimension's type matches nothing */
    const char *bad[BFS_MAX_DIMS] = {NULL, "one"};
    assert_string_equal(list(c, &s, "A", c->raw, bad, 2), "");
    /* TAGGED: only its members */
    assert_string_equal(list(c, &s, "tags/50%", c->raw, none, 1), "0,1");
    assert_string_equal(list(c, &s, "tags/50%", c->raw, det1, 2), "2025041500002");
    /* CALIBRATION, directly and through a chain */
    assert_string_equal(list(c, &s, "calib", c->bias, none, 1), "0,1");
    assert_string_equal(list(c, &s, "defaults", c->bias, none, 1), "0,1");
    assert_string_equal(list(c, &s, "calib/run2", c->bias, none, 1), "1");
    /* strings sort as strings */
    assert_string_equal(list(c, &s, "flats", c->flat, none, 2), "i/39,r_57");
    const char *fdet1[BFS_MAX_DIMS] = {NULL, "1"};
    assert_string_equal(list(c, &s, "flats", c->flat, fdet1, 2), "r_57");
    /* a non-zero return stops the iteration and is returned */
    memset(&s, 0, sizeof s);
    s.stop_after = 2;
    assert_int_equal(bfs_registry_list_values(c->reg, coll(c, "chain"), c->raw, none, 1, value_cb, &s), 7);
    assert_string_equal(s.text, "0,1");
    assert_int_equal(bfs_registry_list_values(c->reg, coll(c, "chain"), c->raw, none, 3, value_cb, &s),
                     -EINVAL);
}

static void expect_raw(struct ctx *c, const struct found *x, int i, const char *run, int det, int exp,
                       const char *in_coll)
{
    int r = raw_index(run, det, exp);
    char values[64];
    snprintf(values, sizeof values, "LSSTCam,%d,202504150000%d", det, exp);
    assert_string_equal(x->f[i].id, c->repo->raw_id[r]);
    assert_string_equal(x->f[i].values, values);
    assert_string_equal(x->f[i].path, c->repo->raw_path[r]);
    assert_int_equal(x->f[i].size, c->repo->raw_size[r]);
    assert_int_equal(x->f[i].run, coll(c, run)->id);
    assert_int_equal(x->f[i].coll, coll(c, in_coll)->id);
    assert_false(x->f[i].span);
}

static void test_find_files(void **state)
{
    struct ctx *c = *state;
    struct found x;
    /* find-first: a dataId in both runs comes from B, the chain's first */
    const char *full[BFS_MAX_DIMS] = {"LSSTCam", "1", "2025041500001"};
    find(c, &x, "chain", c->raw, full);
    assert_int_equal(x.n, 1);
    expect_raw(c, &x, 0, "B", 1, 1, "B");
    find(c, &x, "A", c->raw, full);
    assert_int_equal(x.n, 1);
    expect_raw(c, &x, 0, "A", 1, 1, "A");

    /* partial dataId: every match, ordered by dataId, each from its first run */
    const char *ins[BFS_MAX_DIMS] = {"LSSTCam"};
    find(c, &x, "chain", c->raw, ins);
    assert_int_equal(x.n, 5);
    expect_raw(c, &x, 0, "A", 0, 1, "A");
    expect_raw(c, &x, 1, "B", 1, 1, "B");
    expect_raw(c, &x, 2, "B", 1, 2, "B");
    expect_raw(c, &x, 3, "A", 2, 2, "A");
    expect_raw(c, &x, 4, "B", 3, 3, "B");
    find(c, &x, "chain", c->raw, NULL);
    assert_int_equal(x.n, 5);

    const char *det1[BFS_MAX_DIMS] = {NULL, "1"};
    find(c, &x, "nested", c->raw, det1);
    assert_int_equal(x.n, 2);
    expect_raw(c, &x, 0, "B", 1, 1, "B");
    expect_raw(c, &x, 1, "B", 1, 2, "B");

    /* TAGGED: members as found in the tagged collection */
    find(c, &x, "tags/50%", c->raw, NULL);
    assert_int_equal(x.n, 2);
    expect_raw(c, &x, 0, "A", 0, 1, "tags/50%");
    expect_raw(c, &x, 1, "B", 1, 2, "tags/50%");
    /* ...and behind the chain in nested, only where the chain has nothing:
     * never, so the chain's own rows win */
    const char *d0[BFS_MAX_DIMS] = {NULL, "0"};
    find(c, &x, "nested", c->raw, d0);
    assert_int_equal(x.n, 1);
    expect_raw(c, &x, 0, "A", 0, 1, "A");

    const char *nothing[BFS_MAX_DIMS] = {"LSSTCam", "2", "2025041500001"};
    find(c, &x, "chain", c->raw, nothing);
    assert_int_equal(x.n, 0);

    /* CALIBRATION: both validity ranges of detector 1, in begin order */
    const char *b1[BFS_MAX_DIMS] = {"LSSTCam", "1"};
    for (int pass = 0; pass < 2; pass++) {
        find(c, &x, pass ? "defaults" : "calib", c->bias, b1);
        assert_int_equal(x.n, 2);
        for (int i = 0; i < 2; i++) {
            assert_true(x.f[i].span);
            assert_string_equal(x.f[i].id, c->repo->bias_id[1 + i]);
            assert_int_equal(x.f[i].begin, rb_biases[1 + i].begin);
            assert_int_equal(x.f[i].end, rb_biases[1 + i].end);
            assert_int_equal(x.f[i].coll, coll(c, "calib")->id);
            assert_int_equal(x.f[i].run, coll(c, rb_biases[1 + i].run)->id);
            assert_string_equal(x.f[i].values, "LSSTCam,1");
            assert_int_equal(x.f[i].size, 301 + i);
        }
        assert_string_equal(x.f[0].path, "calib/run1/bias/bias_1.fits");
        assert_string_equal(x.f[1].path, "calib/run2/bias/bias_1.fits");
    }
    find(c, &x, "calib", c->bias, NULL);
    assert_int_equal(x.n, 3);
    assert_string_equal(x.f[0].values, "LSSTCam,0");
    assert_int_equal(x.f[0].begin, RB_T0);
    assert_int_equal(x.f[0].end, RB_T1);
    /* the same datasets in their run: no validity */
    find(c, &x, "calib/run1", c->bias, NULL);
    assert_int_equal(x.n, 2);
    assert_false(x.f[0].span);
    assert_false(x.f[1].span);

    const char *slash[BFS_MAX_DIMS] = {NULL, "0", "i/39"};
    find(c, &x, "flats", c->flat, slash);
    assert_int_equal(x.n, 1);
    assert_string_equal(x.f[0].id, c->repo->flat_id[1]);
    assert_string_equal(x.f[0].values, "LSSTCam,0,i/39");
}

static void test_resolve_alias(void **state)
{
    struct ctx *c = *state;
    const bfs_dimension *det = bfs_registry_dimension_by_name(c->reg, "detector");
    const bfs_dimension *exp = bfs_registry_dimension_by_name(c->reg, "exposure");
    const bfs_dimension *ins = bfs_registry_dimension_by_name(c->reg, "instrument");
    assert_non_null(det);
    assert_non_null(exp);
    char out[BFS_MAX_VALUE] = "";
    const char *v[BFS_MAX_DIMS] = {"LSSTCam"};
    assert_int_equal(bfs_registry_resolve_alias(c->reg, c->raw, v, det, "R22_S01", out, sizeof out), 0);
    assert_string_equal(out, "1");
    assert_int_equal(bfs_registry_resolve_alias(c->reg, c->raw, v, det, "R22_S03", out, sizeof out), 0);
    assert_string_equal(out, "3");
    assert_int_equal(bfs_registry_resolve_alias(c->reg, c->raw, v, exp, "MC_O_20250415_000002", out,
                                                sizeof out), 0);
    assert_string_equal(out, "2025041500002");
    /* no instrument constraint: still unique */
    assert_int_equal(bfs_registry_resolve_alias(c->reg, c->raw, NULL, exp, "MC_O_20250415_000003", out,
                                                sizeof out), 0);
    assert_string_equal(out, "2025041500003");
    /* R22_S01 names a detector of each instrument: ambiguous without one */
    assert_int_equal(bfs_registry_resolve_alias(c->reg, c->raw, NULL, det, "R22_S01", out, sizeof out),
                     -ENOENT);
    const char *comcam[BFS_MAX_DIMS] = {"LSSTComCam"};
    assert_int_equal(bfs_registry_resolve_alias(c->reg, c->raw, comcam, det, "R22_S01", out, sizeof out), 0);
    assert_string_equal(out, "7");
    assert_int_equal(bfs_registry_resolve_alias(c->reg, c->raw, NULL, det, "R22_S02", out, sizeof out), 0);
    assert_string_equal(out, "2");
    assert_int_equal(bfs_registry_resolve_alias(c->reg, c->raw, v, det, "R22_S99", out, sizeof out),
                     -ENOENT);
    assert_int_equal(bfs_registry_resolve_alias(c->reg, c->raw, v, exp, "MC_O_20250415_000009", out,
                                                sizeof out), -ENOENT);
    const char *other[BFS_MAX_DIMS] = {"LATISS"};
    assert_int_equal(bfs_registry_resolve_alias(c->reg, c->raw, other, det, "R22_S01", out, sizeof out),
                     -ENOENT);
    assert_int_equal(bfs_registry_resolve_alias(c->reg, c->raw, v, ins, "LSSTCam", out, sizeof out),
                     -ENOENT);
}

static void test_refresh(void **state)
{
    struct ctx *c = *state;
    const bfs_catalog *old = bfs_registry_catalog(c->reg);
    const bfs_collection *old_chain = bfs_catalog_collection(old, "chain");
    assert_non_null(old_chain);
    assert_int_equal(bfs_registry_refresh(c->reg), 0);
    assert_ptr_equal(bfs_registry_catalog(c->reg), old);

    bfs_registry *w = rb_open(c->repo, BFS_REG_WRITE);
    assert_int_equal(bfs_registry_add_collection(w, "late", BFS_COLL_TAGGED, NULL, NULL), 0);
    bfs_registry_close(w);

    assert_int_equal(bfs_registry_refresh(c->reg), 1);
    const bfs_catalog *now = bfs_registry_catalog(c->reg);
    assert_ptr_not_equal(now, old);
    assert_true(now->generation > old->generation);
    assert_int_equal(now->ncollections, RB_NCOLL + 1);
    const bfs_collection *late = bfs_catalog_collection(now, "late");
    assert_non_null(late);
    assert_int_equal(late->type, BFS_COLL_TAGGED);
    assert_null(bfs_catalog_collection(old, "late"));
    /* the old snapshot is still readable, chains and all */
    assert_int_equal(old->ncollections, RB_NCOLL);
    assert_string_equal(old_chain->name, "chain");
    assert_int_equal(old_chain->n_children, 2);
    assert_string_equal(old_chain->children[0]->name, "B");
    assert_int_equal(bfs_registry_collection_has(c->reg, old_chain, c->raw), 1);
    assert_int_equal(bfs_registry_refresh(c->reg), 0);

    /* a chain change alone is a change too */
    w = rb_open(c->repo, BFS_REG_WRITE);
    static const char *const ab[] = {"A", "B"};
    assert_int_equal(bfs_registry_set_chain(w, "chain", ab, 2), 0);
    bfs_registry_close(w);
    assert_int_equal(bfs_registry_refresh(c->reg), 1);
    const bfs_collection *chain = bfs_catalog_collection(bfs_registry_catalog(c->reg), "chain");
    assert_string_equal(chain->children[0]->name, "A");
    assert_string_equal(old_chain->children[0]->name, "B");

    /* any reordering is seen, not only those that change a weighted sum:
     * [B, A/raw, A] -> [A/raw, A, B] rotates three children */
    static const char *const r1[] = {"B", "A/raw", "A"}, *const r2[] = {"A/raw", "A", "B"};
    w = rb_open(c->repo, BFS_REG_WRITE);
    assert_int_equal(bfs_registry_set_chain(w, "chain", r1, 3), 0);
    bfs_registry_close(w);
    assert_int_equal(bfs_registry_refresh(c->reg), 1);
    w = rb_open(c->repo, BFS_REG_WRITE);
    assert_int_equal(bfs_registry_set_chain(w, "chain", r2, 3), 0);
    bfs_registry_close(w);
    assert_int_equal(bfs_registry_refresh(c->reg), 1);
    chain = bfs_catalog_collection(bfs_registry_catalog(c->reg), "chain");
    assert_int_equal(chain->n_children, 3);
    assert_string_equal(chain->children[0]->name, "A/raw");
    assert_string_equal(chain->children[2]->name, "B");
}

/* ---- the write API for collections ------------------------------------------------ */

static void test_write_collections(void **state)
{
    struct ctx *c = *state;
    bfs_registry *w = rb_open(c->repo, BFS_REG_WRITE);
    int64_t id = 0, id2 = 0;

    /* add_collection: identical is fine, a different type or doc is not */
    assert_int_equal(bfs_registry_add_collection(w, "chain", BFS_COLL_CHAINED, "B before A", &id), 0);
    assert_int_equal(id, coll(c, "chain")->id);
    assert_int_equal(bfs_registry_add_collection(w, "chain", BFS_COLL_CHAINED, NULL, &id2), 0);
    assert_int_equal(id2, id);
    assert_int_equal(bfs_registry_add_collection(w, "chain", BFS_COLL_CHAINED, "other", NULL), -EEXIST);
    assert_int_equal(bfs_registry_add_collection(w, "chain", BFS_COLL_TAGGED, NULL, NULL), -EEXIST);
    assert_int_equal(bfs_registry_add_run(w, "chain", NULL), -EEXIST);
    assert_int_equal(bfs_registry_add_run(w, "B", &id), 0); /* NULL doc matches "run B" */
    assert_int_equal(id, coll(c, "B")->id);
    assert_int_equal(bfs_registry_add_collection(w, "x", (bfs_collection_type)5, NULL, NULL), -EINVAL);
    assert_int_equal(bfs_registry_add_collection(w, "", BFS_COLL_TAGGED, NULL, NULL), -EINVAL);

    /* set_chain */
    static const char *const a[] = {"A"}, *const nested[] = {"nested"}, *const self[] = {"chain"};
    static const char *const missing[] = {"A", "no/such"}, *const dup[] = {"A", "B", "A"};
    static const char *const ba[] = {"B", "A"};
    assert_int_equal(bfs_registry_set_chain(w, "A", a, 1), -EINVAL);      /* A is a RUN */
    assert_int_equal(bfs_registry_set_chain(w, "nope", a, 1), -ENOENT);
    assert_int_equal(bfs_registry_set_chain(w, "chain", missing, 2), -ENOENT);
    assert_int_equal(bfs_registry_set_chain(w, "chain", self, 1), -ELOOP);
    assert_int_equal(bfs_registry_set_chain(w, "chain", nested, 1), -ELOOP); /* nested holds chain */
    assert_int_equal(bfs_registry_set_chain(w, "defaults", nested, 1), 0);   /* no loop: fine */
    assert_int_equal(bfs_registry_add_collection(w, "dup", BFS_COLL_CHAINED, NULL, NULL), 0);
    assert_int_equal(bfs_registry_set_chain(w, "dup", dup, 3), 0);
    assert_int_equal(bfs_registry_set_chain(w, "chain", ba, 2), 0);          /* as it was */

    /* associate */
    const char *a12 = c->repo->raw_id[raw_index("A", 1, 2)];
    assert_int_equal(bfs_registry_associate(w, "tags/50%", c->repo->raw_id[0]), 0); /* again */
    assert_int_equal(bfs_registry_associate(w, "tags/50%", a12), -EEXIST);  /* B(1,2) holds it */
    assert_int_equal(bfs_registry_associate(w, "A", a12), -EINVAL);
    assert_int_equal(bfs_registry_associate(w, "nope", a12), -ENOENT);
    assert_int_equal(bfs_registry_associate(w, "tags/50%", "00000000000000000000000000000000"), -ENOENT);
    assert_int_equal(bfs_registry_associate(w, "tags/50%", "xyz"), -EINVAL);
    char dashed[40], upper[33];
    const char *b33 = c->repo->raw_id[RB_MISSING_RAW];
    snprintf(dashed, sizeof dashed, "%.8s-%.4s-%.4s-%.4s-%.12s", b33, b33 + 8, b33 + 12, b33 + 16, b33 + 20);
    assert_int_equal(bfs_registry_associate(w, "tags/50%", dashed), 0);      /* B (3,3) */
    for (int i = 0; i < 33; i++)
        upper[i] = (char)(b33[i] >= 'a' && b33[i] <= 'f' ? b33[i] - 'a' + 'A' : b33[i]);
    assert_int_equal(bfs_registry_associate(w, "tags/50%", upper), 0);       /* identical */

    /* certify */
    const char *bias1 = c->repo->bias_id[1];
    assert_int_equal(bfs_registry_certify(w, "calib", bias1, RB_T0, RB_T1), 0); /* identical */
    assert_int_equal(bfs_registry_certify(w, "calib", bias1, RB_T0 + 1, RB_T1 + 1), -EEXIST);
    assert_int_equal(bfs_registry_certify(w, "calib", c->repo->bias_id[0], RB_T1 - 1, RB_T1 + 5),
                     -EEXIST);
    assert_int_equal(bfs_registry_certify(w, "calib", c->repo->bias_id[0], RB_T1, RB_T1 + 5), 0);
    assert_int_equal(bfs_registry_certify(w, "calib", bias1, RB_T1, RB_T0), -EINVAL);
    assert_int_equal(bfs_registry_certify(w, "calib", bias1, RB_T0, RB_T0), -EINVAL);
    assert_int_equal(bfs_registry_certify(w, "calib/run1", bias1, RB_T0, RB_T1), -EINVAL);
    assert_int_equal(bfs_registry_certify(w, "calib", c->repo->raw_id[0], RB_T0, RB_T1), -EINVAL);
    assert_int_equal(bfs_registry_certify(w, "nope", bias1, RB_T0, RB_T1), -ENOENT);
    bfs_registry_close(w);

    /* read back: the failures left nothing, the successes are there */
    assert_int_equal(bfs_registry_refresh(c->reg), 1);
    const bfs_catalog *cat = bfs_registry_catalog(c->reg);
    const bfs_collection *chain = bfs_catalog_collection(cat, "chain");
    assert_int_equal(chain->n_children, 2);
    assert_string_equal(chain->children[0]->name, "B");
    const bfs_collection *d = bfs_catalog_collection(cat, "dup");
    assert_non_null(d);
    assert_int_equal(d->n_children, 2);
    assert_string_equal(d->children[0]->name, "A");
    assert_string_equal(d->children[1]->name, "B");
    const bfs_collection *def = bfs_catalog_collection(cat, "defaults");
    assert_int_equal(def->n_children, 1);
    assert_string_equal(def->children[0]->name, "nested");
    assert_null(bfs_catalog_collection(cat, "x"));

    struct found x = {.ndims = 3};
    const bfs_collection *tags = bfs_catalog_collection(cat, "tags/50%");
    assert_int_equal(bfs_registry_find_files(c->reg, tags, c->raw, NULL, file_cb, &x), 0);
    assert_int_equal(x.n, 3);
    assert_string_equal(x.f[1].id, c->repo->raw_id[5]); /* still B's (1,2), not A's */
    assert_string_equal(x.f[2].id, b33);
    assert_string_equal(x.f[2].values, "LSSTCam,3,2025041500003");

    memset(&x, 0, sizeof x);
    x.ndims = 2;
    const bfs_collection *cal = bfs_catalog_collection(cat, "calib");
    assert_int_equal(bfs_registry_find_files(c->reg, cal, c->bias, NULL, file_cb, &x), 0);
    assert_int_equal(x.n, 4);
    assert_int_equal(x.f[0].begin, RB_T0);
    assert_int_equal(x.f[1].begin, RB_T1);
    assert_int_equal(x.f[1].end, RB_T1 + 5);
    assert_string_equal(x.f[1].id, c->repo->bias_id[0]);
    assert_int_equal(x.f[2].begin, RB_T0);
    assert_string_equal(x.f[2].values, "LSSTCam,1");

    /* a read-only registry refuses every write */
    assert_int_equal(bfs_registry_add_collection(c->reg, "y", BFS_COLL_TAGGED, NULL, NULL), -EROFS);
    assert_int_equal(bfs_registry_set_chain(c->reg, "chain", ba, 2), -EROFS);
    assert_int_equal(bfs_registry_associate(c->reg, "tags/50%", b33), -EROFS);
    assert_int_equal(bfs_registry_certify(c->reg, "calib", bias1, 1, 2), -EROFS);
}

/* The rows as the Python Butler would have them: summaries for the TAGGED
 * and CALIBRATION collections and no dangling foreign key. */
static void test_write_rows(void **state)
{
    struct ctx *c = *state;
    if (system("command -v sqlite3 >/dev/null 2>&1") != 0)
        skip();
    char cmd[2048], out[512] = "";
    snprintf(cmd, sizeof cmd,
             "sqlite3 -batch -readonly '%s/gen3.sqlite3' \"PRAGMA foreign_key_check;"
             " SELECT c.name, s.instrument FROM collection_summary_instrument s"
             " JOIN collection c USING (collection_id) WHERE c.type IN (2, 4) ORDER BY 1;"
             " SELECT c.name, t.name FROM collection_summary_dataset_type s"
             " JOIN collection c USING (collection_id) JOIN dataset_type t ON t.id = s.dataset_type_id"
             " WHERE c.type IN (2, 4) ORDER BY 1;"
             " SELECT parent, position, child FROM collection_chain"
             " WHERE parent = (SELECT collection_id FROM collection WHERE name = 'chain')"
             " ORDER BY position;\"",
             c->repo->dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    assert_int_equal(pclose(p), 0);
    char want[256];
    int64_t chain = coll(c, "chain")->id, b = coll(c, "B")->id, a = coll(c, "A")->id;
    snprintf(want, sizeof want,
             "calib|LSSTCam\ntags/50%%|LSSTCam\ncalib|bias\ntags/50%%|raw\n"
             "%lld|0|%lld\n%lld|1|%lld\n",
             (long long)chain, (long long)b, (long long)chain, (long long)a);
    assert_string_equal(out, want);
}

/* ---- damaged or hostile registries ------------------------------------------------ */

/* Run sql on the repository's database with the sqlite3 shell (tests may
 * not include sqlite3.h); skips the test when there is no shell. */
static void damage(struct ctx *c, const char *sql)
{
    if (system("command -v sqlite3 >/dev/null 2>&1") != 0)
        skip();
    char path[] = "/tmp/bfs_damageXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(sql, f);
    assert_int_equal(fclose(f), 0);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "sqlite3 -batch -bail '%s/gen3.sqlite3' < '%s'", c->repo->dir, path);
    int rc = system(cmd);
    unlink(path);
    assert_int_equal(rc, 0);
}

/* A chain that lists itself twice (2^depth paths before) and one that
 * closes a cycle through another: every query under them fails with ELOOP
 * at once, everything else still works. */
static void test_chain_cycle(void **state)
{
    struct ctx *c = *state;
    damage(c, "INSERT INTO collection_chain (parent, position, child)"
              " SELECT collection_id, 10, collection_id FROM collection WHERE name = 'chain';"
              "INSERT INTO collection_chain (parent, position, child)"
              " SELECT collection_id, 11, collection_id FROM collection WHERE name = 'chain';"
              "INSERT INTO collection_chain (parent, position, child)"
              " SELECT p.collection_id, 12, c.collection_id FROM collection p, collection c"
              " WHERE p.name = 'chain' AND c.name = 'nested';"
              "INSERT INTO collection_chain (parent, position, child)"
              " SELECT collection_id, 0, collection_id FROM collection WHERE name = 'A';");
    assert_int_equal(bfs_registry_refresh(c->reg), 1);
    c->cat = bfs_registry_catalog(c->reg);
    c->raw = bfs_catalog_dataset_type(c->cat, "raw");
    assert_int_equal(coll(c, "chain")->n_children, 5);
    static const char *const cyclic[] = {"chain", "nested", "defaults"};
    for (int i = 0; i < 3; i++) {
        const bfs_collection *x = coll(c, cyclic[i]);
        struct strs s = {0};
        struct found f = {.ndims = c->raw->ndims};
        assert_true(x->cyclic);
        assert_int_equal(bfs_registry_list_values(c->reg, x, c->raw, NULL, 1, value_cb, &s), -ELOOP);
        assert_int_equal(bfs_registry_find_files(c->reg, x, c->raw, NULL, file_cb, &f), -ELOOP);
        assert_int_equal(bfs_registry_collection_has(c->reg, x, c->raw), -ELOOP);
        assert_int_equal(bfs_registry_dataset_types_in(c->reg, x, dtype_cb, &s), -ELOOP);
        assert_int_equal(s.n, 0);
    }
    assert_false(coll(c, "A")->cyclic);
    assert_int_equal(coll(c, "A")->n_children, 0); /* chain rows of a RUN are ignored */
    assert_false(coll(c, "calib")->cyclic);
    struct strs s;
    assert_string_equal(list(c, &s, "A", c->raw, NULL, 1), "0,1,2");
}

/* 40 chains, each listing the next twice: 2^40 paths to A, 40 collections.
 * Each collection is expanded once, so this is instant. */
#define SHARED_DEPTH 40
static void test_chain_shared(void **state)
{
    struct ctx *c = *state;
    bfs_registry *w = rb_open(c->repo, BFS_REG_WRITE);
    for (int i = 0; i < SHARED_DEPTH; i++) {
        char name[16];
        snprintf(name, sizeof name, "d%02d", i);
        assert_int_equal(bfs_registry_add_collection(w, name, BFS_COLL_CHAINED, NULL, NULL), 0);
    }
    bfs_registry_close(w);
    char *sql = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&sql, &len);
    assert_non_null(m);
    for (int i = 0; i < SHARED_DEPTH; i++) {
        char next[16];
        snprintf(next, sizeof next, i + 1 < SHARED_DEPTH ? "d%02d" : "A", i + 1);
        for (int pos = 0; pos < 2; pos++)
            fprintf(m, "INSERT INTO collection_chain (parent, position, child)"
                       " SELECT p.collection_id, %d, c.collection_id FROM collection p,"
                       " collection c WHERE p.name = 'd%02d' AND c.name = '%s';\n", pos, i, next);
    }
    assert_int_equal(fclose(m), 0);
    damage(c, sql);
    free(sql);
    assert_int_equal(bfs_registry_refresh(c->reg), 1);
    c->cat = bfs_registry_catalog(c->reg);
    c->raw = bfs_catalog_dataset_type(c->cat, "raw");
    assert_false(coll(c, "d00")->cyclic);
    struct strs s;
    assert_string_equal(list(c, &s, "d00", c->raw, NULL, 1), "0,1,2");
    struct found x;
    find(c, &x, "d00", c->raw, NULL);
    assert_int_equal(x.n, 4);
    assert_int_equal(bfs_registry_collection_has(c->reg, coll(c, "d00"), c->raw), 1);
}

/* An old-schema text ingest_date out of every range gives 0, without
 * arithmetic on it (signed overflow is caught by the UBSan build). */
static void test_ingest_date_text(void **state)
{
    struct ctx *c = *state;
    damage(c, "UPDATE dataset SET ingest_date = '-2147483648-1-1 0:0:0'"
              " WHERE run_id = (SELECT collection_id FROM collection WHERE name = 'A');"
              "UPDATE dataset SET ingest_date = '2025-04-15 12:00:00'"
              " WHERE run_id = (SELECT collection_id FROM collection WHERE name = 'B');");
    struct found x;
    find(c, &x, "A", c->raw, NULL);
    assert_int_equal(x.n, 4);
    for (int i = 0; i < x.n; i++)
        assert_int_equal(x.f[i].ingest, 0);
    find(c, &x, "B", c->raw, NULL);
    assert_int_equal(x.n, 3);
    for (int i = 0; i < x.n; i++)
        assert_int_equal(x.f[i].ingest, INT64_C(1744718400));
    damage(c, "UPDATE dataset SET ingest_date = '2025-99-15 12:00:00';");
    find(c, &x, "B", c->raw, NULL);
    assert_int_equal(x.f[0].ingest, 0);
}

/* Rows the catalog must skip (a collection without a name, a dataset type
 * without a tag table): skipped without leaking what was copied from them
 * (LeakSanitizer in the ASan build reports the leak at exit). */
static void test_damaged_catalog_rows(void **state)
{
    struct ctx *c = *state;
    damage(c, "PRAGMA foreign_keys = OFF;"
              "CREATE TABLE c2 AS SELECT * FROM collection; DROP TABLE collection;"
              " ALTER TABLE c2 RENAME TO collection;"
              "INSERT INTO collection (collection_id, name, type, doc)"
              " VALUES (900, NULL, 1, 'the doc of a row without a name');"
              "CREATE TABLE t2 AS SELECT * FROM dataset_type; DROP TABLE dataset_type;"
              " ALTER TABLE t2 RENAME TO dataset_type;"
              "INSERT INTO dataset_type (id, name, storage_class, dimensions_key,"
              " tag_association_table, calibration_association_table)"
              " VALUES (900, 'ghost', 'StorageClassOfAGhost', 1, NULL, 'calib_of_a_ghost');");
    assert_int_equal(bfs_registry_refresh(c->reg), 1);
    const bfs_catalog *cat = bfs_registry_catalog(c->reg);
    assert_int_equal(cat->ncollections, RB_NCOLL);
    assert_int_equal(cat->ndataset_types, 3);
    assert_null(bfs_catalog_dataset_type(cat, "ghost"));
}

/* Replace the stored universe with n elements e0..e(n-1), each requiring
 * the one before (a cycle when cyclic: e0 requires the last).  Element i is
 * named so that names sort in the reverse of the chain. */
static void put_chain_universe(struct ctx *c, int n, bool cyclic)
{
    char path[] = "/tmp/bfs_universeXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs("{\"version\": 1, \"namespace\": \"chain\", \"elements\": {", f);
    for (int i = 0; i < n; i++) {
        fprintf(f, "%s\"e%06d\": {\"keys\": [{\"name\": \"id\", \"type\": \"int\"}]", i ? ", " : "", n - i);
        if (i > 0 || cyclic)
            fprintf(f, ", \"requires\": [\"e%06d\"]", i > 0 ? n - i + 1 : 1);
        fputc('}', f);
    }
    fputs("}}", f);
    assert_int_equal(fclose(f), 0);
    char sql[256];
    snprintf(sql, sizeof sql, "UPDATE butler_attributes SET value = CAST(readfile('%s') AS TEXT)"
                              " WHERE name = 'config:dimensions.json';", path);
    damage(c, sql);
    unlink(path);
}

static int open_status(struct ctx *c, char **msg)
{
    bfs_registry *reg = NULL;
    *msg = NULL;
    int rc = bfs_registry_open(c->repo->dir, BFS_REG_READONLY, &reg, msg);
    bfs_registry_close(reg);
    return rc;
}

/* A universe whose elements form one long requires chain: ordered without
 * recursion (one layer per element), or refused with a clear error when
 * it has more elements than any universe can. */
static void test_universe_chain(void **state)
{
    struct ctx *c = *state;
    char *msg = NULL;
    put_chain_universe(c, 4000, false);
    bfs_registry *reg = NULL;
    int rc = bfs_registry_open(c->repo->dir, BFS_REG_READONLY, &reg, &msg);
    if (rc)
        print_error("%s\n", msg ? msg : "");
    free(msg);
    assert_int_equal(rc, 0);
    assert_int_equal(bfs_registry_dimension_count(reg), 4000);
    for (int i = 0; i < 4000; i += 999) {
        char name[16];
        snprintf(name, sizeof name, "e%06d", 4000 - i);
        assert_string_equal(bfs_registry_dimension(reg, i)->name, name);
        assert_ptr_equal(bfs_registry_dimension_by_name(reg, name), bfs_registry_dimension(reg, i));
        if (i > 0)
            assert_ptr_equal(bfs_registry_dimension(reg, i)->requires[0], bfs_registry_dimension(reg, i - 1));
    }
    bfs_registry_close(reg);

    put_chain_universe(c, 60000, false);
    assert_int_equal(open_status(c, &msg), -EBADMSG);
    assert_non_null(msg);
    assert_non_null(strstr(msg, "60000 elements"));
    free(msg);

    put_chain_universe(c, 50, true);
    assert_int_equal(open_status(c, &msg), -EBADMSG);
    assert_non_null(msg);
    assert_non_null(strstr(msg, "lead back"));
    free(msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_catalog, setup, teardown),
        cmocka_unit_test_setup_teardown(test_collection_has, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dataset_types_in, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_find_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolve_alias, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_collections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_cycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_shared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ingest_date_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_catalog_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_universe_chain, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
