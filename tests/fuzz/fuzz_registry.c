/*
 * fuzz_registry.c - a damaged registry, opened and walked through the
 * registry API as a mount would.
 *
 * The template is tests/unit/repo_builder.h's repository (every collection
 * type, chains, calibrations, aliases), built once per process.  Each input
 * makes a copy of its SQLite file and damages it:
 *   - up to the first NUL byte: SQL run against the copy (errors ignored;
 *     ATTACH and VACUUM INTO are impossible, each statement is bounded);
 *   - after it: 4-byte patches, a 24-bit little-endian offset (modulo the
 *     file size) and a byte XORed into the file there.
 * The copy is then opened with bfs_registry_open and walked with a bound at
 * every level: collections, dataset types, values of each dimension
 * (narrowed one at a time), file records with their leaf names, aliases,
 * and a refresh.  A refusal is fine; a sanitizer report, a hang or an
 * unsafe leaf name is not.
 */
#include "../unit/repo_builder.h"

#include "names.h"
#include "fuzz_util.h"

#include <sqlite3.h>

#define WALK_COLLECTIONS 24
#define WALK_TYPES 8
#define WALK_ITEMS 16

static struct rb_repo *template_repo;
static char db_path[256];
static unsigned char *db_bytes;
static size_t db_size;

static void drop_template(void)
{
    rb_destroy(template_repo);
    free(db_bytes);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fz_setup();
    bfs_log_set_level(LOG_WARNING); /* the builder's own lines are not interesting */
    template_repo = rb_build();
    bfs_registry *reg = rb_open(template_repo, BFS_REG_READONLY);
    snprintf(db_path, sizeof db_path, "%s", bfs_registry_db_path(reg));
    bfs_registry_close(reg);
    FILE *f = fopen(db_path, "rb");
    if (!f || fseek(f, 0, SEEK_END) < 0 || (db_size = (size_t)ftell(f)) == 0 ||
        !(db_bytes = malloc(db_size)) || fseek(f, 0, SEEK_SET) < 0 ||
        fread(db_bytes, 1, db_size, f) != db_size)
        abort();
    fclose(f);
    atexit(drop_template);
    bfs_log_set_level(LOG_DEBUG);
    return 0;
}

static int steps;

/* Bounds one SQL statement (a recursive CTE would otherwise run forever). */
static int progress(void *ud)
{
    (void)ud;
    return ++steps > 2000;
}

static int authorize(void *ud, int action, const char *a, const char *b, const char *c, const char *d)
{
    (void)ud, (void)a, (void)b, (void)c, (void)d;
    return action == SQLITE_ATTACH || action == SQLITE_DETACH ? SQLITE_DENY : SQLITE_OK;
}

static void damage(const uint8_t *data, size_t size)
{
    char side[300];
    static const char *const suffixes[] = {"-wal", "-shm", "-journal"};
    for (int i = 0; i < 3; i++) {
        snprintf(side, sizeof side, "%s%s", db_path, suffixes[i]);
        unlink(side);
    }
    fz_write(db_path, db_bytes, db_size);

    const uint8_t *nul = memchr(data, 0, size);
    size_t sql_len = nul ? (size_t)(nul - data) : size;
    if (sql_len) {
        char *sql = fz_string(data, sql_len);
        sqlite3 *db = NULL;
        if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK) {
            sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0); /* no ATTACH, no VACUUM INTO */
            sqlite3_limit(db, SQLITE_LIMIT_LENGTH, 1 << 20);
            /* no fsync: the copy is thrown away, and fsyncs made this 20x slower */
            sqlite3_exec(db, "PRAGMA synchronous=OFF; PRAGMA journal_mode=MEMORY", NULL, NULL, NULL);
            sqlite3_set_authorizer(db, authorize, NULL);
            steps = 0;
            sqlite3_progress_handler(db, 1000, progress, NULL);
            sqlite3_exec(db, sql, NULL, NULL, NULL);
        }
        sqlite3_close(db);
        free(sql);
    }
    if (nul) {
        FILE *f = fopen(db_path, "r+b");
        if (!f)
            abort();
        fseek(f, 0, SEEK_END);
        long fsize = ftell(f);
        for (const uint8_t *p = nul + 1; fsize > 0 && p + 4 <= data + size; p += 4) {
            long at = (long)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16) % fsize;
            fseek(f, at, SEEK_SET);
            int c = fgetc(f);
            fseek(f, at, SEEK_SET);
            fputc((c < 0 ? 0 : c) ^ p[3], f);
        }
        fclose(f);
    }
}

struct walk {
    int n;
    const bfs_dataset_type *dt;
    char first[BFS_NAME_MAX];
};

static int count_type(void *ud, const bfs_dataset_type *dt)
{
    struct walk *w = ud;
    if (!dt || !dt->name)
        abort();
    return ++w->n >= WALK_ITEMS;
}

static int keep_value(void *ud, const char *value)
{
    struct walk *w = ud;
    if (!value)
        abort();
    if (w->n++ == 0)
        snprintf(w->first, sizeof w->first, "%s", value);
    return w->n >= WALK_ITEMS;
}

static void check_component(const char *name)
{
    if (!name[0] || !strcmp(name, ".") || !strcmp(name, "..") || strchr(name, '/'))
        abort();
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            abort();
}

static int see_file(void *ud, const bfs_dataset_file *f)
{
    struct walk *w = ud;
    char leaf[BFS_NAME_MAX];
    if (!f->path)
        abort();
    if (bfs_names_file(w->dt, f, leaf, sizeof leaf) >= 0) {
        check_component(leaf);
        if (bfs_names_disambiguate(leaf, sizeof leaf, f->id, f->path) == 0)
            check_component(leaf);
    }
    return ++w->n >= WALK_ITEMS;
}

static void walk_type(bfs_registry *reg, const bfs_collection *c, const bfs_dataset_type *dt)
{
    if (bfs_registry_collection_has(reg, c, dt) <= 0)
        return;
    char held[BFS_MAX_DIMS][BFS_NAME_MAX];
    const char *values[BFS_MAX_DIMS] = {0};
    for (int k = 0; k < dt->ndims && k < BFS_MAX_DIMS; k++) {
        struct walk w = {.dt = dt};
        bfs_registry_list_values(reg, c, dt, values, k, keep_value, &w);
        if (!w.n)
            break;
        snprintf(held[k], sizeof held[k], "%s", w.first);
        values[k] = held[k];
    }
    const char *none[BFS_MAX_DIMS] = {0};
    struct walk w = {.dt = dt};
    bfs_registry_find_files(reg, c, dt, none, see_file, &w);
    w.n = 0;
    bfs_registry_find_files(reg, c, dt, values, see_file, &w);
    for (int k = 0; k < dt->ndims && k < BFS_MAX_DIMS; k++) {
        const bfs_dimension *d = dt->dims[k];
        if (!d || !d->n_alt)
            continue;
        char out[BFS_MAX_VALUE];
        static const char *const aliases[] = {"R22_S01", "MC_O_20250415_000001"};
        for (int a = 0; a < 2; a++)
            bfs_registry_resolve_alias(reg, dt, none, d, aliases[a], out, sizeof out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    damage(data, size);
    bfs_registry *reg = NULL;
    char *msg = NULL;
    int rc = bfs_registry_open(template_repo->dir, BFS_REG_READONLY, &reg, &msg);
    free(msg);
    if (rc < 0)
        return 0;
    const bfs_catalog *cat = bfs_registry_catalog(reg);
    for (size_t i = 0; i < cat->ncollections && i < WALK_COLLECTIONS; i++) {
        const bfs_collection *c = &cat->collections[i];
        if (!c->name || bfs_catalog_collection(cat, c->name) == NULL)
            abort();
        struct walk w = {0};
        bfs_registry_dataset_types_in(reg, c, count_type, &w);
        for (size_t t = 0; t < cat->ndataset_types && t < WALK_TYPES; t++)
            walk_type(reg, c, &cat->dataset_types[t]);
    }
    bfs_registry_refresh(reg);
    bfs_registry_close(reg);
    return 0;
}
