/*
 * test_tree.c - the virtual tree (fs/tree.h) driven directly, without FUSE,
 * over the repository of repo_builder.h: lookups (any order, aliases,
 * escapes, the @type rule), listings, file attributes and names
 * (docs/paths.md), node lifetimes, open of a missing datastore file, and
 * which nodes the node cap hands back to the kernel (bfs_tree_trim).
 *
 * Every lookup a test makes is remembered and forgotten at its end, after
 * which no node may be left alive.
 */
#include "repo_builder.h"

#include "source.h"
#include "tree.h"

#define MAX_HELD 256

struct tctx {
    struct rb_repo *repo;
    bfs_registry *reg;
    bfs_tree *t;
    bfs_node *held[MAX_HELD];
    int nheld;
    char names[4096];
};

static int setup(void **state)
{
    struct tctx *c = calloc(1, sizeof *c);
    c->repo = rb_build();
    c->reg = rb_open(c->repo, BFS_REG_READONLY);
    bfs_tree_opts opts = {.uid = getuid(), .gid = getgid(), .listing_ttl = 60};
    if (bfs_tree_new(c->reg, &opts, &c->t) != 0)
        return -1;
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct tctx *c = *state;
    bfs_tree_free(c->t);
    bfs_registry_close(c->reg);
    rb_destroy(c->repo);
    free(c);
    return 0;
}

static bfs_node *root(struct tctx *c) { return bfs_tree_node(c->t, BFS_ROOT_INO); }

/* One lookup that must succeed; remembered for forget_all. */
static bfs_node *look(struct tctx *c, bfs_node *parent, const char *name, struct stat *st)
{
    struct stat tmp;
    bfs_node *n = NULL;
    int rc = bfs_tree_lookup(c->t, parent, name, &n, st ? st : &tmp);
    if (rc)
        print_error("lookup %s: %d\n", name, rc);
    assert_int_equal(rc, 0);
    assert_non_null(n);
    assert_true(c->nheld < MAX_HELD);
    c->held[c->nheld++] = n;
    return n;
}

/* Look up every '/'-separated component of path from the root. */
static bfs_node *walk(struct tctx *c, const char *path, struct stat *st)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    bfs_node *n = root(c);
    char *save = NULL;
    for (char *part = strtok_r(buf, "/", &save); part; part = strtok_r(NULL, "/", &save))
        n = look(c, n, part, st);
    return n;
}

static void expect_err(struct tctx *c, bfs_node *parent, const char *name, int err)
{
    struct stat st;
    bfs_node *n = NULL;
    int rc = bfs_tree_lookup(c->t, parent, name, &n, &st);
    if (rc != err)
        print_error("lookup %s: %d, want %d\n", name, rc, err);
    assert_int_equal(rc, err);
}

/* The entries of a listing after "." and "..", joined by ','. */
static const char *ls(struct tctx *c, bfs_node *dir)
{
    bfs_listing *l = NULL;
    assert_int_equal(bfs_tree_opendir(c->t, dir, &l), 0);
    size_t n = bfs_listing_count(l);
    assert_true(n >= 2);
    struct stat st;
    assert_string_equal(bfs_listing_name(c->t, l, 0, &st), ".");
    assert_true(S_ISDIR(st.st_mode));
    assert_string_equal(bfs_listing_name(c->t, l, 1, &st), "..");
    c->names[0] = '\0';
    for (size_t i = 2; i < n; i++) {
        size_t len = strlen(c->names);
        snprintf(c->names + len, sizeof c->names - len, "%s%s", i > 2 ? "," : "",
                 bfs_listing_name(c->t, l, i, &st));
    }
    bfs_listing_free(c->t, l);
    return c->names;
}

static void forget_all(struct tctx *c)
{
    assert_true(bfs_tree_live_nodes(c->t) > 0);
    /* in lookup order: children pin their parents, so order must not matter */
    for (int i = 0; i < c->nheld; i++)
        bfs_tree_forget(c->t, c->held[i], 1);
    c->nheld = 0;
    assert_int_equal(bfs_tree_live_nodes(c->t), 0);
}

static void expect_file(struct tctx *c, bfs_node *dir, const char *name, int64_t size, const char *id)
{
    struct stat st;
    bfs_node *f = look(c, dir, name, &st);
    assert_false(bfs_node_is_dir(f));
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0444);
    assert_int_equal(st.st_size, size);
    assert_int_equal(st.st_uid, getuid());
    assert_string_equal(bfs_node_dataset_id(f), id);
}

/* ---- tests ----------------------------------------------------------------- */

static void test_collections(void **state)
{
    struct tctx *c = *state;
    assert_string_equal(ls(c, root(c)), "A,B,calib,chain,defaults,flats,nested,tags");
    struct stat st;
    bfs_node *a = look(c, root(c), "A", &st);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0555);
    assert_true(bfs_node_is_dir(a));
    /* the @type rule: child collection A/raw keeps the plain name */
    assert_string_equal(ls(c, a), "raw,raw@type");
    bfs_node *araw = look(c, a, "raw", NULL);
    assert_string_equal(ls(c, araw), "");
    bfs_node *rawtype = look(c, a, "raw@type", NULL);
    assert_ptr_not_equal(araw, rawtype);
    assert_string_equal(ls(c, rawtype), "instrument=LSSTCam");
    expect_err(c, a, "flat@type", -ENOENT);
    expect_err(c, a, "bias", -ENOENT);
    expect_err(c, a, "instrument=LSSTCam", -ENOENT);
    expect_err(c, root(c), "raw@type", -ENOENT); /* the root is no collection */
    /* B has no child named raw: the dataset type is listed plain */
    bfs_node *b = look(c, root(c), "B", NULL);
    assert_string_equal(ls(c, b), "raw");
    expect_err(c, b, "bias@type", -ENOENT);

    /* a directory that is a collection and the parent of others */
    bfs_node *calib = look(c, root(c), "calib", NULL);
    assert_string_equal(ls(c, calib), "run1,run2,bias");
    assert_string_equal(ls(c, look(c, calib, "run2", NULL)), "bias");
    assert_string_equal(ls(c, look(c, root(c), "defaults", NULL)), "bias,raw");
    assert_string_equal(ls(c, look(c, root(c), "flats", NULL)), "flat");

    /* escaped collection part: "tags/50%" is tags -> 50%25 */
    bfs_node *tags = look(c, root(c), "tags", NULL);
    assert_string_equal(ls(c, tags), "50%25");
    bfs_node *t50 = look(c, tags, "50%25", NULL);
    assert_string_equal(ls(c, t50), "raw");
    expect_err(c, tags, "50%", -ENOENT);
    expect_err(c, tags, "50%2", -ENOENT);
    expect_err(c, tags, "50%ZZ", -ENOENT);
    expect_err(c, root(c), "nope", -ENOENT);
    expect_err(c, root(c), "%41", -ENOENT); /* "A" has one name */
    expect_err(c, a, "r%61w", -ENOENT);
    expect_err(c, root(c), "a", -ENOENT);
    forget_all(c);
}

static void test_data_levels(void **state)
{
    struct tctx *c = *state;
    bfs_node *raw = walk(c, "chain/raw", NULL);
    assert_string_equal(ls(c, raw), "instrument=LSSTCam");
    bfs_node *ins = look(c, raw, "instrument=LSSTCam", NULL);
    assert_string_equal(ls(c, ins), "detector=0,detector=1,detector=2,detector=3");
    bfs_node *d1 = look(c, ins, "detector=1", NULL);
    assert_string_equal(ls(c, d1), "exposure=2025041500001,exposure=2025041500002");
    bfs_node *e1 = look(c, d1, "exposure=2025041500001", NULL);
    /* find-first: B's dataset, B's size */
    assert_string_equal(ls(c, e1), "raw_LSSTCam_1_2025041500001.fits");
    int bi = 4; /* rb_raws[4] is B (1,1) */
    expect_file(c, e1, "raw_LSSTCam_1_2025041500001.fits", c->repo->raw_size[bi], c->repo->raw_id[bi]);
    bfs_node *f = c->held[c->nheld - 1];
    assert_string_equal(bfs_node_location(f), c->repo->raw_path[bi]);
    /* the same name twice is the same node */
    bfs_node *again = look(c, e1, "raw_LSSTCam_1_2025041500001.fits", NULL);
    assert_ptr_equal(again, f);
    /* READDIRPLUS hands out the same node too */
    bfs_listing *l = NULL;
    assert_int_equal(bfs_tree_opendir(c->t, e1, &l), 0);
    assert_int_equal(bfs_listing_count(l), 3);
    assert_false(bfs_listing_immutable(l)); /* a chain can change */
    bfs_node *m = NULL;
    struct stat st;
    assert_int_equal(bfs_listing_materialize(c->t, l, 2, &m, &st), 0);
    assert_ptr_equal(m, f);
    c->held[c->nheld++] = m;
    bfs_listing_free(c->t, l);

    /* in run A the same dataId is A's dataset */
    bfs_node *ae = walk(c, "A/raw@type/instrument=LSSTCam/detector=1/exposure=2025041500001", NULL);
    assert_int_equal(bfs_tree_opendir(c->t, ae, &l), 0);
    assert_true(bfs_listing_immutable(l)); /* all fixed, in a RUN */
    bfs_listing_free(c->t, l);
    expect_file(c, ae, "raw_LSSTCam_1_2025041500001.fits", c->repo->raw_size[1], c->repo->raw_id[1]);

    /* non-universe order and aliases */
    bfs_node *x = walk(c, "chain/raw/exposure=2025041500002", NULL);
    assert_string_equal(ls(c, x), "instrument=LSSTCam"); /* next unset in universe order */
    x = look(c, x, "detector=R22_S02", NULL);
    assert_string_equal(ls(c, x), "instrument=LSSTCam");
    x = look(c, x, "instrument=LSSTCam", NULL);
    assert_string_equal(ls(c, x), "raw_LSSTCam_2_2025041500002.fits");
    expect_file(c, x, "raw_LSSTCam_2_2025041500002.fits", c->repo->raw_size[3], c->repo->raw_id[3]);
    /* R22_S01 is also LSSTComCam's: it resolves once the instrument is set */
    x = look(c, ins, "detector=R22_S01", NULL);
    assert_string_equal(ls(c, x), "exposure=2025041500001,exposure=2025041500002");
    x = look(c, x, "exposure=MC_O_20250415_000002", NULL);
    assert_string_equal(ls(c, x), "raw_LSSTCam_1_2025041500002.fits");
    expect_file(c, x, "raw_LSSTCam_1_2025041500002.fits", c->repo->raw_size[5], c->repo->raw_id[5]);
    x = walk(c, "nested/raw/instrument=LSSTCam/exposure=MC_O_20250415_000003", NULL);
    assert_string_equal(ls(c, x), "detector=3");
    x = look(c, x, "detector=R22_S03", NULL);
    assert_string_equal(ls(c, x), "raw_LSSTCam_3_2025041500003.fits");

    /* unknown names */
    expect_err(c, ins, "detector=9", -ENOENT);
    expect_err(c, ins, "detector=R22_S99", -ENOENT);
    expect_err(c, ins, "detector=R22_S02x", -ENOENT);
    expect_err(c, d1, "exposure=2025041500003", -ENOENT); /* exists, not with detector 1 */
    expect_err(c, d1, "exposure=MC_O_20250415_000003", -ENOENT); /* the same by its alias */
    expect_err(c, ins, "instrument=LSSTCam", -ENOENT);    /* already fixed */
    expect_err(c, ins, "bogus=1", -ENOENT);
    expect_err(c, ins, "detector", -ENOENT);
    expect_err(c, ins, "detector=%G1", -ENOENT);
    expect_err(c, ins, "detector=1%", -ENOENT);
    /* one name per value: non-canonical integers are no aliases (docs/paths.md) */
    expect_err(c, ins, "detector=01", -ENOENT);
    expect_err(c, ins, "detector=+1", -ENOENT);
    expect_err(c, ins, "detector=%31", -ENOENT);
    expect_err(c, d1, "exposure=02025041500001", -ENOENT);
    expect_err(c, d1, "exposure=+2025041500001", -ENOENT);
    expect_err(c, raw, "instrument=LATISS", -ENOENT);
    expect_err(c, e1, "raw_LSSTCam_1_2025041500002.fits", -ENOENT);
    expect_err(c, e1, "detector=1", -ENOENT);
    /* under a file */
    expect_err(c, f, "x", -ENOTDIR);
    assert_int_equal(bfs_tree_opendir(c->t, f, &l), -ENOTDIR);

    /* the TAGGED collection shows only its members */
    x = walk(c, "tags/50%25/raw/instrument=LSSTCam", NULL);
    assert_string_equal(ls(c, x), "detector=0,detector=1");
    x = look(c, x, "detector=1", NULL);
    assert_string_equal(ls(c, x), "exposure=2025041500002");
    forget_all(c);
}

static void test_calibration_names(void **state)
{
    struct tctx *c = *state;
    bfs_node *d = walk(c, "calib/bias/instrument=LSSTCam/detector=1", NULL);
    const char *want = "bias_LSSTCam_1_valid-" RB_T0_TEXT "-" RB_T1_TEXT ".fits,"
                       "bias_LSSTCam_1_valid-" RB_T1_TEXT "-unbounded.fits";
    assert_string_equal(ls(c, d), want);
    expect_file(c, d, "bias_LSSTCam_1_valid-" RB_T1_TEXT "-unbounded.fits", 302, c->repo->bias_id[2]);
    /* through a chain the validity is still part of the name */
    d = walk(c, "defaults/bias/instrument=LSSTCam/detector=1", NULL);
    assert_string_equal(ls(c, d), want);
    /* in its run the dataset has no validity */
    d = walk(c, "calib/run2/bias/instrument=LSSTCam/detector=1", NULL);
    assert_string_equal(ls(c, d), "bias_LSSTCam_1.fits");
    forget_all(c);
}

static void test_escaped_value(void **state)
{
    struct tctx *c = *state;
    bfs_node *d = walk(c, "flats/flat/instrument=LSSTCam/detector=0", NULL);
    assert_string_equal(ls(c, d), "physical_filter=i%2F39,physical_filter=r_57");
    bfs_node *pf = look(c, d, "physical_filter=i%2F39", NULL);
    assert_string_equal(ls(c, pf), "flat_LSSTCam_0_i%2F39.fits");
    expect_file(c, pf, "flat_LSSTCam_0_i%2F39.fits", 401, c->repo->flat_id[1]);
    expect_err(c, d, "physical_filter=i%2F3", -ENOENT);
    expect_err(c, d, "physical_filter=i%2f40", -ENOENT);
    /* lower-case hex decodes the same */
    bfs_node *lower = look(c, d, "physical_filter=i%2f39", NULL);
    assert_string_equal(ls(c, lower), "flat_LSSTCam_0_i%2F39.fits");
    forget_all(c);
}

static void test_open(void **state)
{
    struct tctx *c = *state;
    bfs_node *d = walk(c, "B/raw/instrument=LSSTCam/detector=1/exposure=2025041500001", NULL);
    struct stat st;
    bfs_node *f = look(c, d, "raw_LSSTCam_1_2025041500001.fits", &st);
    bfs_source *src = NULL;
    assert_int_equal(bfs_tree_open(c->t, f, &src), 0);
    assert_int_equal(bfs_source_size(src), st.st_size);
    unsigned char buf[4] = {0};
    assert_int_equal(bfs_source_pread(src, buf, sizeof buf, 0), 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(buf[i], (st.st_size + i) & 0xff);
    bfs_source_close(src);
    assert_int_equal(bfs_tree_open(c->t, d, &src), -EISDIR);

    /* listed and stat'ed from the registry, but the datastore lacks it */
    d = walk(c, "chain/raw/instrument=LSSTCam/detector=3/exposure=2025041500003", NULL);
    assert_string_equal(ls(c, d), "raw_LSSTCam_3_2025041500003.fits");
    f = look(c, d, "raw_LSSTCam_3_2025041500003.fits", &st);
    assert_int_equal(st.st_size, c->repo->raw_size[RB_MISSING_RAW]);
    src = NULL;
    assert_int_equal(bfs_tree_open(c->t, f, &src), -EIO);
    assert_null(src);
    assert_int_equal(bfs_tree_open(c->t, f, &src), -EIO); /* and again (logged once) */
    forget_all(c);
}

static void test_forget(void **state)
{
    struct tctx *c = *state;
    assert_int_equal(bfs_tree_live_nodes(c->t), 0);
    bfs_node *e = walk(c, "chain/raw/instrument=LSSTCam/detector=1/exposure=2025041500002", NULL);
    assert_int_equal(bfs_tree_live_nodes(c->t), 5);
    struct stat st;
    bfs_node *f = NULL;
    assert_int_equal(bfs_tree_lookup(c->t, e, "raw_LSSTCam_1_2025041500002.fits", &f, &st), 0);
    assert_int_equal(bfs_tree_lookup(c->t, e, "raw_LSSTCam_1_2025041500002.fits", &f, &st), 0);
    assert_int_equal(bfs_tree_live_nodes(c->t), 6);
    bfs_tree_forget(c->t, f, 1);
    assert_int_equal(bfs_tree_live_nodes(c->t), 6); /* one lookup left */
    bfs_tree_forget(c->t, f, 1);
    assert_int_equal(bfs_tree_live_nodes(c->t), 5);

    /* a directory forgotten while a child lives stays until the child goes */
    assert_int_equal(bfs_tree_lookup(c->t, e, "raw_LSSTCam_1_2025041500002.fits", &f, &st), 0);
    bfs_tree_forget(c->t, e, 1);
    c->held[--c->nheld] = NULL; /* e was the last walked */
    assert_int_equal(bfs_tree_live_nodes(c->t), 6);
    /* an open listing pins its directory the same way */
    bfs_listing *l = NULL;
    bfs_node *d = c->held[c->nheld - 1];
    assert_int_equal(bfs_tree_opendir(c->t, d, &l), 0);
    bfs_node *m = NULL;
    assert_int_equal(bfs_listing_materialize(c->t, l, 3, &m, &st), 0); /* exposure=...02 */
    assert_ptr_equal(m, e);
    bfs_tree_forget(c->t, f, 1);
    assert_int_equal(bfs_tree_live_nodes(c->t), 5);
    bfs_tree_forget(c->t, m, 1);
    assert_int_equal(bfs_tree_live_nodes(c->t), 4);
    /* forget everything while the listing is open: its directory survives */
    for (int i = 0; i < c->nheld; i++)
        bfs_tree_forget(c->t, c->held[i], 1);
    c->nheld = 0;
    assert_int_equal(bfs_tree_live_nodes(c->t), 4);
    bfs_listing_free(c->t, l);
    assert_int_equal(bfs_tree_live_nodes(c->t), 0);
}

/* ---- the node cap ------------------------------------------------------------ */

#define CAP 8 /* small: the epoch then advances with every new node */

static int setup_cap(void **state)
{
    struct tctx *c = calloc(1, sizeof *c);
    c->repo = rb_build();
    c->reg = rb_open(c->repo, BFS_REG_READONLY);
    bfs_tree_opts opts = {.uid = getuid(), .gid = getgid(), .listing_ttl = 60, .max_nodes = CAP};
    if (bfs_tree_new(c->reg, &opts, &c->t) != 0)
        return -1;
    *state = c;
    return 0;
}

/* A kernel that only writes down what it was asked to drop. */
struct fake_kernel {
    int n;
    uint64_t parent[16];
    char name[16][64];
};

static int fake_evict(void *ctx, uint64_t parent_ino, const char *name)
{
    struct fake_kernel *k = ctx;
    assert_true(k->n < 16);
    k->parent[k->n] = parent_ino;
    snprintf(k->name[k->n], sizeof k->name[k->n], "%s", name);
    k->n++;
    return 0;
}

/* What the kernel does after dropping an entry: forget the nodes held[from..to). */
static void kernel_forgets(struct tctx *c, int from, int to)
{
    for (int i = from; i < to; i++) {
        bfs_tree_forget(c->t, c->held[i], 1);
        c->held[i] = NULL;
    }
}

#define A_FILE "A/raw@type/instrument=LSSTCam/detector=1/exposure=2025041500001/raw_LSSTCam_1_2025041500001.fits"
#define B_FILE "B/raw/instrument=LSSTCam/detector=1/exposure=2025041500001/raw_LSSTCam_1_2025041500001.fits"
#define CHAIN_FILE "chain/raw/instrument=LSSTCam/detector=1/exposure=2025041500002/raw_LSSTCam_1_2025041500002.fits"

static void test_trim_lru(void **state)
{
    struct tctx *c = *state;
    struct fake_kernel k = {0};
    walk(c, A_FILE, NULL);                     /* held[0..6): the oldest */
    bfs_node *open_file = walk(c, CHAIN_FILE, NULL); /* held[6..12) */
    bfs_node_hold(c->t, open_file);            /* as an open handle does */
    walk(c, B_FILE, NULL);                     /* held[12..18): the newest */
    assert_int_equal(bfs_tree_live_nodes(c->t), 18);

    /* six to go: the oldest subtree, dropped whole by its top entry */
    assert_int_equal(bfs_tree_trim(c->t, 12, fake_evict, &k), 1);
    assert_int_equal(k.n, 1);
    assert_int_equal(k.parent[0], BFS_ROOT_INO);
    assert_string_equal(k.name[0], "A");
    /* asked again before the kernel answers: nothing new is picked */
    k.n = 0;
    assert_int_equal(bfs_tree_trim(c->t, 12, fake_evict, &k), 0);
    assert_int_equal(k.n, 0);
    kernel_forgets(c, 0, 6);
    assert_int_equal(bfs_tree_live_nodes(c->t), 12);

    /* the chain's subtree is older than B's, but a file below it is open */
    k.n = 0;
    assert_int_equal(bfs_tree_trim(c->t, 6, fake_evict, &k), 1);
    assert_string_equal(k.name[0], "B");
    kernel_forgets(c, 12, 18);
    k.n = 0;
    assert_int_equal(bfs_tree_trim(c->t, 0, fake_evict, &k), 0); /* all of it is busy */
    assert_int_equal(bfs_tree_live_nodes(c->t), 6);
    bfs_node_release(c->t, open_file);
    kernel_forgets(c, 6, 12);
    c->nheld = 0;
    assert_int_equal(bfs_tree_live_nodes(c->t), 0);
}

static void test_trim_recent_child(void **state)
{
    struct tctx *c = *state;
    struct fake_kernel k = {0};
    walk(c, A_FILE, NULL);  /* held[0..6) */
    walk(c, B_FILE, NULL);  /* held[6..12) */
    bfs_node *det = c->held[3];
    /* a new child makes A's detector=1 and everything above it recent; its
     * older exposure and file stay the least recently used */
    look(c, det, "exposure=2025041500002", NULL); /* held[12] */
    assert_int_equal(bfs_tree_live_nodes(c->t), 13);
    assert_int_equal(bfs_tree_trim(c->t, 11, fake_evict, &k), 1);
    assert_int_equal(k.parent[0], bfs_node_ino(det));
    assert_string_equal(k.name[0], "exposure=2025041500001");
    kernel_forgets(c, 4, 6);
    assert_int_equal(bfs_tree_live_nodes(c->t), 11);
    /* below the target: nothing to do */
    assert_int_equal(bfs_tree_trim(c->t, 11, fake_evict, &k), 0);
    kernel_forgets(c, 0, 4);
    kernel_forgets(c, 6, 13);
    c->nheld = 0;
    assert_int_equal(bfs_tree_live_nodes(c->t), 0);
    bfs_node_stats ns;
    bfs_tree_node_stats(c->t, &ns);
    assert_int_equal(ns.max_nodes, CAP);
    assert_int_equal(ns.victims, 1);
    assert_int_equal(ns.invalidations, 1);
}


/* ---- the write side (-o rw): mkdir and write targets ---- */

static int setup_rw(void **state)
{
    struct tctx *c = calloc(1, sizeof *c);
    c->repo = rb_build();
    c->reg = rb_open(c->repo, BFS_REG_WRITE);
    bfs_tree_opts opts = {.uid = getuid(), .gid = getgid(), .listing_ttl = 60, .writable = true};
    if (bfs_tree_new(c->reg, &opts, &c->t) != 0)
        return -1;
    *state = c;
    return 0;
}

static bfs_node *mk(struct tctx *c, bfs_node *parent, const char *name, int want)
{
    struct stat st;
    bfs_node *n = NULL;
    int rc = bfs_tree_mkdir(c->t, parent, name, &n, &st, NULL);
    if (rc != want)
        print_error("mkdir %s: %d, want %d\n", name, rc, want);
    assert_int_equal(rc, want);
    if (rc == 0)
        assert_true(S_ISDIR(st.st_mode));
    return n;
}

static const char *value_of(const bfs_write_target *wt, const char *dim)
{
    for (int i = 0; i < wt->ndims; i++)
        if (!strcmp(wt->dim_names[i], dim))
            return wt->dim_values[i];
    return NULL;
}

static void test_write_targets(void **state)
{
    struct tctx *c = *state;
    bfs_write_target wt;
    /* where files cannot go */
    assert_int_equal(bfs_tree_write_target(c->t, root(c), &wt), -EACCES);
    assert_int_equal(bfs_tree_write_target(c->t, walk(c, "chain", NULL), &wt), -EACCES);
    assert_int_equal(bfs_tree_write_target(c->t, walk(c, "calib", NULL), &wt), -EACCES);
    assert_int_equal(bfs_tree_write_target(c->t, walk(c, "B/raw/instrument=LSSTCam", NULL), &wt), -EACCES);
    mk(c, walk(c, "chain", NULL), "x", -EACCES);
    mk(c, root(c), "A", -EEXIST);
    mk(c, walk(c, "B", NULL), "raw", -EEXIST);
    mk(c, root(c), "..", -EINVAL);

    /* raw ingest into an existing RUN: its directory is the target */
    assert_int_equal(bfs_tree_write_target(c->t, walk(c, "B", NULL), &wt), 0);
    assert_string_equal(wt.run, "B");
    assert_true(wt.run_exists);
    assert_null(wt.dataset_type);

    /* mkdir -p LSSTCam/raw/all: path levels, even "raw" (no RUN LSSTCam exists) */
    bfs_node *l1 = mk(c, root(c), "LSSTCam", 0);
    bfs_node *l2 = mk(c, l1, "raw", 0);
    bfs_node *l3 = mk(c, l2, "all", 0);
    assert_int_equal(bfs_tree_write_target(c->t, l3, &wt), 0);
    assert_string_equal(wt.run, "LSSTCam/raw/all");
    assert_false(wt.run_exists);
    assert_null(wt.dataset_type);
    /* made directories are found again by name, and stay after the kernel forgets them */
    struct stat st;
    bfs_node *again = NULL;
    assert_int_equal(bfs_tree_lookup(c->t, l2, "all", &again, &st), 0);
    assert_ptr_equal(again, l3);
    bfs_tree_forget(c->t, again, 2);
    assert_int_equal(bfs_tree_lookup(c->t, l2, "all", &again, &st), 0);
    assert_ptr_equal(again, l3);
    bfs_tree_forget(c->t, again, 1);

    /* mkdir -p u/run1/flat/instrument=LSSTCam/detector=R22_S01/physical_filter=r_57 */
    bfs_node *u = mk(c, root(c), "u", 0);
    bfs_node *run1 = mk(c, u, "run1", 0);
    bfs_node *ty = mk(c, run1, "flat", 0);
    bfs_node *d1 = mk(c, ty, "instrument=LSSTCam", 0);
    mk(c, d1, "visit=1", -EINVAL);            /* not a dimension of flat */
    mk(c, d1, "instrument=LSSTCam", -EINVAL); /* fixed already */
    mk(c, d1, "detector=R99_S99", -EINVAL);   /* no such alternate key */
    bfs_node *d2 = mk(c, d1, "detector=R22_S01", 0);
    assert_int_equal(bfs_tree_write_target(c->t, d2, &wt), -EACCES); /* partial dataId */
    bfs_node *d3 = mk(c, d2, "physical_filter=r_57", 0);
    mk(c, d3, "x", -EACCES);
    assert_int_equal(bfs_tree_write_target(c->t, d3, &wt), 0);
    assert_string_equal(wt.run, "u/run1");
    assert_false(wt.run_exists);
    assert_string_equal(wt.dataset_type, "flat");
    assert_int_equal(wt.ndims, 3);
    assert_string_equal(value_of(&wt, "instrument"), "LSSTCam");
    assert_string_equal(value_of(&wt, "detector"), "1"); /* the alias resolved */
    assert_string_equal(value_of(&wt, "physical_filter"), "r_57");

    /* once the RUN is registered, the same directories name it */
    assert_int_equal(bfs_registry_add_run(c->reg, "u/run1", NULL), 0);
    bfs_tree_changed(c->t, d3);
    assert_int_equal(bfs_tree_write_target(c->t, d3, &wt), 0);
    assert_true(wt.run_exists);
    assert_int_equal(bfs_tree_write_target(c->t, run1, &wt), 0);
    assert_true(wt.run_exists);

    /* once a dataset is registered there, "flat" names the dataset type in
     * the registry too; the made directories below stay reachable by name */
    static const char *const fdims[] = {"instrument", "detector", "physical_filter"};
    static const char *const fvals[] = {"LSSTCam", "3", "r_57"};
    bfs_new_dataset nd = {.dataset_type = "flat", .run = "u/run1", .dim_names = fdims, .dim_values = fvals,
                          .ndims = 3, .path = "u/run1/flat/3.fits", .formatter = "F", .file_size = 1};
    char nid[33];
    assert_int_equal(bfs_registry_add_dataset(c->reg, &nd, nid), 0);
    bfs_tree_changed(c->t, d3);
    bfs_node *w = walk(c, "u/run1/flat/instrument=LSSTCam/detector=R22_S01/physical_filter=r_57", NULL);
    assert_ptr_equal(w, d3);

    /* a dataset type directory inside an existing RUN that has none of it */
    bfs_node *af = mk(c, walk(c, "A", NULL), "flat", 0);
    bfs_node *a1 = mk(c, mk(c, af, "instrument=LSSTCam", 0), "detector=0", 0);
    assert_int_equal(bfs_tree_write_target(c->t, mk(c, a1, "physical_filter=i%2F39", 0), &wt), 0);
    assert_string_equal(wt.run, "A");
    assert_true(wt.run_exists);
    assert_string_equal(value_of(&wt, "physical_filter"), "i/39");
}

static void test_readonly_tree(void **state)
{
    struct tctx *c = *state;
    bfs_write_target wt;
    bfs_node *n = NULL;
    struct stat st;
    assert_int_equal(bfs_tree_write_target(c->t, walk(c, "A", NULL), &wt), -EROFS);
    assert_int_equal(bfs_tree_mkdir(c->t, root(c), "new", &n, &st, NULL), -EROFS);
    forget_all(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_collections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_data_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_calibration_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaped_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trim_lru, setup_cap, teardown),
        cmocka_unit_test_setup_teardown(test_trim_recent_child, setup_cap, teardown),
        cmocka_unit_test_setup_teardown(test_write_targets, setup_rw, teardown),
        cmocka_unit_test_setup_teardown(test_readonly_tree, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
