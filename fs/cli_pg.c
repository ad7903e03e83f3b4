/*
 * cli_pg.c - the commands that make PostgreSQL repositories (issue 13):
 *
 *   butlerfs copy-registry SRC DST --db URL [--namespace NS] [--shared-root|--root ROOT]
 *   butlerfs init --db URL [--namespace NS] REPO
 *
 * Both go through registry/copy.c: init --db makes the empty universe-7
 * registry in a private temporary SQLite repository (bfs_registry_init, the
 * one place the schema is written down) and copies it, so the two engines
 * can never be given different schemas.
 */
#include "cli.h"

#include "progress.h"
#include "registry.h"
#include "strutil.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char copy_help[] =
    "Usage: butlerfs copy-registry SRC DST --db URL [--namespace NS] [--root ROOT]\n"
    "\n"
    "Copy the SQLite registry of the repository SRC into a PostgreSQL database, in\n"
    "the form the Python Butler gives PostgreSQL (uuid dataset ids, int8range\n"
    "timespans, the calibration exclusion constraints), and make DST a repository\n"
    "(DST/butler.yaml) whose registry is that copy.  DST's datastore root is SRC's\n"
    "(as an absolute location) unless --root says otherwise, so both repositories\n"
    "serve the same files.\n"
    "\n"
    "  --db URL         postgresql://USER@HOST:PORT/DATABASE (as registry.db in\n"
    "                   butler.yaml); the password comes from ~/.lsst/db-auth.yaml,\n"
    "                   PGPASSWORD or ~/.pgpass, and is never written to DST\n"
    "  --namespace NS   the PostgreSQL schema to hold the tables (made when missing;\n"
    "                   it must not hold a registry already); default: public\n"
    "  --root ROOT      the datastore root DST/butler.yaml names\n"
    "  -h, --help       show this text\n"
    "\n"
    "The copy is one transaction: on any error the namespace is left as it was.\n"
    "Exit status: 0 done, 1 error, 2 usage.\n";

static const char init_db_help[] =
    "Usage: butlerfs init REPO\n"
    "       butlerfs init --db URL [--namespace NS] REPO\n"
    "\n"
    "Create an empty Butler repository in REPO (created if missing), with the schema\n"
    "the Python Butler creates for dimension universe 7.  Without --db the registry\n"
    "is REPO/gen3.sqlite3; with --db it is the PostgreSQL database URL\n"
    "(postgresql://USER@HOST:PORT/DATABASE; password from ~/.lsst/db-auth.yaml,\n"
    "PGPASSWORD or ~/.pgpass), in the schema NS (default public, made when missing).\n"
    "The datastore root is REPO either way.\n";

static void show_progress(void *ctx, const char *table, int done, int total, int64_t rows)
{
    (void)table;
    (void)rows;
    bfs_progress *p = ctx;
    if (p->total_items != total)
        bfs_progress_start(p, stderr, "copy", total);
    p->unit = "tables";
    bfs_progress_update(p, done, 0);
}

/* Parse --db/--namespace/--root and the positional arguments. */
static int parse(int argc, char **argv, const char **db, const char **ns, const char **root,
                 const char **pos, int npos, int *got)
{
    *got = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = !strcmp(a, "--db") ? db : !strcmp(a, "--namespace") ? ns
                          : !strcmp(a, "--root") && root ? root : NULL;
        if (slot) {
            if (i + 1 >= argc) {
                fprintf(stderr, "butlerfs: %s needs a value\n", a);
                return -1;
            }
            *slot = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "butlerfs: unknown option '%s'\n", a);
            return -1;
        } else if (*got < npos) {
            pos[(*got)++] = a;
        } else {
            fprintf(stderr, "butlerfs: unexpected argument '%s'\n", a);
            return -1;
        }
    }
    return 0;
}

static bool wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return true;
    return false;
}

static int report(int ret, char *msg)
{
    if (ret < 0)
        fprintf(stderr, "butlerfs: %s\n", msg ? msg : strerror(-ret));
    free(msg);
    return ret < 0 ? 1 : 0;
}

int bfs_cmd_copy_registry(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        fputs(copy_help, stdout);
        return 0;
    }
    const char *db = NULL, *ns = NULL, *root = NULL, *pos[2];
    int got;
    if (parse(argc, argv, &db, &ns, &root, pos, 2, &got) < 0 || got != 2 || !db) {
        if (got != 2 || !db)
            fprintf(stderr, "butlerfs: copy-registry needs SRC, DST and --db URL\n");
        fputs(copy_help, stderr);
        return 2;
    }
    bfs_progress p = {0};
    char *msg = NULL;
    int ret = bfs_registry_copy(pos[0], pos[1], db, ns, root, show_progress, &p, &msg);
    if (ret == 0) {
        bfs_progress_finish(&p);
        printf("%s is a repository whose registry is namespace %s of the PostgreSQL database\n", pos[1],
               ns ? ns : "public");
    }
    return report(ret, msg);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int bfs_cmd_init(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        fputs(init_db_help, stdout);
        return 0;
    }
    const char *db = NULL, *ns = NULL, *pos[1];
    int got;
    if (parse(argc, argv, &db, &ns, NULL, pos, 1, &got) < 0 || got != 1 || (ns && !db)) {
        if (got != 1)
            fprintf(stderr, "butlerfs: init needs one REPO directory\n");
        else if (ns && !db)
            fprintf(stderr, "butlerfs: --namespace needs --db\n");
        fputs(init_db_help, stderr);
        return 2;
    }
    char *msg = NULL;
    int ret;
    if (!db) {
        ret = bfs_registry_init(pos[0], &msg);
    } else {
        const char *tmpdir = getenv("TMPDIR");
        char *tmp = bfs_asprintf("%s/butlerfs-init.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
        if (!tmp || !mkdtemp(tmp)) {
            fprintf(stderr, "butlerfs: cannot make a temporary directory: %s\n", strerror(errno));
            free(tmp);
            return 1;
        }
        char *src = bfs_asprintf("%s/repo", tmp);
        ret = src ? bfs_registry_init(src, &msg) : -ENOMEM;
        if (ret == 0)
            ret = bfs_registry_copy(src, pos[0], db, ns, "<butlerRoot>", NULL, NULL, &msg);
        nftw(tmp, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
        free(src);
        free(tmp);
    }
    if (ret == 0)
        printf("Created an empty Butler repository in %s%s\n", pos[0],
               db ? " (registry in PostgreSQL)" : "");
    return report(ret, msg);
}
