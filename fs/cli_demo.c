/*
 * cli_demo.c - `butlerfs demo DIR`: a guided first run.
 *
 * It builds a small repository of synthetic LSSTCam raws with the same
 * registry write API that ingest uses, mounts it with this same program
 * (a child running `butlerfs mount -f`, so the tour sees exactly what a user
 * sees), runs the commands a user would type, printing each one and its
 * output, and unmounts.  Every step says what it is doing; a failure names
 * the step and leaves the log path on screen.
 */
#include "cli.h"

#include "log.h"
#include "progress.h"
#include "registry.h"
#include "strutil.h"
#include "synth.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void synth_progress(void *ctx, int64_t done, int64_t total)
{
    bfs_progress *p = ctx;
    p->total_items = total;
    bfs_progress_update(p, done, 0);
}

static int run_shown(const char *cmd)
{
    bool tty = isatty(STDOUT_FILENO);
    printf("\n%s$ %s%s\n", tty ? "\033[1m" : "", cmd, tty ? "\033[0m" : "");
    fflush(stdout);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

static bool wait_mounted(const char *mnt, const char *parent, pid_t child)
{
    struct stat a, b;
    for (int i = 0; i < 200; i++) {
        if (stat(mnt, &a) == 0 && stat(parent, &b) == 0 && a.st_dev != b.st_dev)
            return true;
        if (waitpid(child, NULL, WNOHANG) == child)
            return false;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

static const char demo_help[] =
    "Usage: butlerfs demo DIR [--keep-mounted] [--exposures N] [--detectors N]\n"
    "\n"
    "Build a repository of synthetic LSSTCam raws in DIR/repo (real FITS files made\n"
    "with cfitsio), mount it at DIR/mnt and show what a user sees.  DIR is created if\n"
    "needed.  The mount log is DIR/butlerfs.log.\n"
    "  --keep-mounted   leave DIR/mnt mounted at the end (unmount: fusermount3 -u DIR/mnt)\n"
    "  --exposures N    number of exposures (default 3)\n"
    "  --detectors N    detectors per exposure, 1..189 (default 9)\n";

int bfs_cmd_demo(int argc, char **argv, const char *self)
{
    const char *dir = NULL;
    bool keep = false;
    int n_exp = 3, n_det = 9;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(demo_help, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--keep-mounted")) {
            keep = true;
        } else if (!strcmp(argv[i], "--exposures") && i + 1 < argc) {
            n_exp = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--detectors") && i + 1 < argc) {
            n_det = atoi(argv[++i]);
        } else if (argv[i][0] != '-' && !dir) {
            dir = argv[i];
        } else {
            fprintf(stderr, "butlerfs: demo: unexpected argument '%s'\n%s", argv[i], demo_help);
            return 2;
        }
    }
    if (!dir || n_exp < 1 || n_exp > 1000 || n_det < 1 || n_det > BFS_SYNTH_NUM_DETECTORS) {
        fputs(demo_help, stderr);
        return 2;
    }
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "butlerfs: demo: cannot create %s: %s\n", dir, strerror(errno));
        return 1;
    }
    char *repo = bfs_asprintf("%s/repo", dir), *mnt = bfs_asprintf("%s/mnt", dir);
    char *log = bfs_asprintf("%s/butlerfs.log", dir);
    int status = 1;
    pid_t child = -1;

    printf("butlerfs demo: a Butler repository as plain files\n\n");
    printf("1. Creating an empty Butler repository (universe 7 schema) in %s\n", repo);
    char *butler_yaml = bfs_asprintf("%s/butler.yaml", repo);
    bool fresh = access(butler_yaml, F_OK) != 0;
    free(butler_yaml);
    char *msg = NULL;
    if (fresh && bfs_registry_init(repo, &msg) < 0) {
        fprintf(stderr, "butlerfs: demo: %s\n", msg ? msg : "cannot create the repository");
        goto out;
    }
    if (fresh) {
        bfs_registry *reg = NULL;
        if (bfs_registry_open(repo, BFS_REG_WRITE, &reg, &msg) < 0) {
            fprintf(stderr, "butlerfs: demo: %s\n", msg ? msg : "cannot open the repository");
            goto out;
        }
        printf("2. Writing %d synthetic LSSTCam raws (%d exposures x %d detectors) with cfitsio\n",
               n_exp * n_det, n_exp, n_det);
        bfs_progress bar;
        bfs_progress_start(&bar, stdout, "   raws", (int64_t)n_exp * n_det);
        bfs_synth_opts o = {.n_exposures = n_exp, .n_detectors = n_det, .fits = true,
                            .payload_bytes = 512 * 1024, .progress = synth_progress,
                            .progress_ctx = &bar};
        int n = bfs_synth_raws(reg, &o);
        bfs_registry_close(reg);
        if (n < 0) {
            fprintf(stderr, "\nbutlerfs: demo: writing raws failed: %s\n", strerror(-n));
            goto out;
        }
        bfs_progress_finish(&bar);
    } else {
        printf("2. %s already holds a repository: reusing it\n", repo);
    }

    printf("3. Mounting it read-only at %s (log: %s)\n", mnt, log);
    if (mkdir(mnt, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "butlerfs: demo: cannot create %s: %s\n", mnt, strerror(errno));
        goto out;
    }
    if (!bfs_check_mountpoint(mnt))
        goto out;
    char *logopt = bfs_asprintf("log=%s", log);
    child = fork();
    if (child == 0) {
        execl(self, self, "mount", repo, mnt, "-f", "-o", logopt, (char *)NULL);
        execlp("butlerfs", "butlerfs", "mount", repo, mnt, "-f", "-o", logopt, (char *)NULL);
        _exit(127);
    }
    free(logopt);
    if (child < 0 || !wait_mounted(mnt, dir, child)) {
        fprintf(stderr, "butlerfs: demo: the mount did not come up; see %s\n", log);
        child = -1;
        goto out;
    }

    printf("\n4. Looking around. Everything below is plain file I/O on the mount.\n");
    char cmd[4096];
    const char *raw = "LSSTCam/raw/all/raw/instrument=LSSTCam";
    snprintf(cmd, sizeof cmd, "ls %s", mnt);
    run_shown(cmd);
    printf("   (collections split at '/': LSSTCam/raw/all is a RUN collection)\n");
    snprintf(cmd, sizeof cmd, "ls %s/%s/", mnt, raw);
    run_shown(cmd);
    printf("   (one directory level per required dimension, in the Butler's dataId order)\n");
    snprintf(cmd, sizeof cmd, "ls -l %s/%s/detector=4/", mnt, raw);
    run_shown(cmd);
    snprintf(cmd, sizeof cmd, "ls -l %s/%s/detector=R01_S11/exposure=MC_O_20250415_000001/", mnt, raw);
    run_shown(cmd);
    printf("   (alternate keys work too: detector=R01_S11 is detector 4, the exposure is named by obs_id)\n");
    snprintf(cmd, sizeof cmd,
             "head -c 8640 %s/%s/detector=4/exposure=2025041500001/raw_LSSTCam_4_2025041500001.fits"
             " | fold -w 80 | grep -E '^(INSTRUME|OBSID|DAYOBS|SEQNUM|RAFTBAY|CCDSLOT|FILTER|IMGTYPE|EXPTIME)'",
             mnt, raw);
    run_shown(cmd);
    printf("   (reading a FITS header reads only its first 2880-byte blocks)\n");
    snprintf(cmd, sizeof cmd, "find %s -type f | wc -l", mnt);
    run_shown(cmd);
    snprintf(cmd, sizeof cmd, "du -sh --apparent-size %s/LSSTCam", mnt);
    run_shown(cmd);
    snprintf(cmd, sizeof cmd, "touch %s/%s/new-file 2>&1 || true", mnt, raw);
    run_shown(cmd);
    printf("   (the mount is read-only)\n");
    status = 0;

out:
    if (child > 0) {
        if (keep) {
            printf("\nLeft mounted at %s (the daemon runs as pid %d). Unmount with:\n"
                   "  fusermount3 -u %s\n", mnt, (int)child, mnt);
        } else {
            char um[4200];
            snprintf(um, sizeof um, "fusermount3 -u %s", mnt);
            printf("\n5. Unmounting\n");
            if (run_shown(um) != 0)
                kill(child, SIGTERM);
            waitpid(child, NULL, 0);
            printf("\nDone. Mount it again with:\n  butlerfs mount %s %s\n", repo, mnt);
        }
    }
    free(msg);
    free(repo);
    free(mnt);
    free(log);
    return status;
}

static const char synth_help[] =
    "Usage: butlerfs synth REPO [--exposures N] [--detectors N] [--first-seq N] [--day-obs YYYYMMDD]\n"
    "                      [--run NAME] [--payload BYTES] [--fits]\n"
    "\n"
    "Add synthetic LSSTCam raws to REPO (created with the universe-7 schema when it\n"
    "does not exist): one dataset per (exposure, detector).  Without --fits each file\n"
    "is BYTES of deterministic data (fast; for benchmarks and tests); with --fits a\n"
    "real FITS raw made with cfitsio.  Prints the number of datasets added.\n";

int bfs_cmd_synth(int argc, char **argv)
{
    bfs_synth_opts o = {.n_exposures = 10, .n_detectors = 9};
    const char *repo = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        static const char *const numeric[] = {"--exposures", "--detectors", "--first-seq", "--day-obs",
                                              "--payload"};
        int which = -1;
        for (int k = 0; k < (int)(sizeof numeric / sizeof numeric[0]); k++)
            if (!strcmp(a, numeric[k]))
                which = k;
        int64_t num = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(synth_help, stdout);
            return 0;
        } else if (!strcmp(a, "--fits")) {
            o.fits = true;
        } else if ((which >= 0 || !strcmp(a, "--run")) && !v) {
            fprintf(stderr, "butlerfs: synth: %s needs a value\n", a);
            return 2;
        } else if (which >= 0) {
            /* 0 means "the default" to the library: refuse it here */
            if (!bfs_parse_i64(v, &num) || num < 1 || (which < 3 && num > INT32_MAX)) {
                fprintf(stderr, "butlerfs: synth: %s: '%s' is not a positive whole number\n", a, v);
                return 2;
            }
            int *ints[] = {&o.n_exposures, &o.n_detectors, &o.first_seq};
            if (which < 3)
                *ints[which] = (int)num;
            else if (which == 3)
                o.day_obs = num;
            else
                o.payload_bytes = num;
            i++;
        } else if (!strcmp(a, "--run")) {
            o.run = v, i++;
        } else if (a[0] != '-' && !repo) {
            repo = a;
        } else {
            fprintf(stderr, "butlerfs: synth: unexpected argument '%s'\n%s", a, synth_help);
            return 2;
        }
    }
    if (!repo) {
        fputs(synth_help, stderr);
        return 2;
    }
    const char *why = NULL;
    if (bfs_synth_check(&o, &why) < 0) { /* before anything is created */
        fprintf(stderr, "butlerfs: synth: %s\n", why ? why : "the run name is too long");
        return 2;
    }
    char *msg = NULL;
    char *yaml = bfs_asprintf("%s/butler.yaml", repo);
    bool exists = yaml && access(yaml, F_OK) == 0;
    free(yaml);
    int empty = exists ? 1 : bfs_dir_empty(repo);
    if (empty == 0 || (empty < 0 && empty != -ENOENT)) { /* a new or empty directory only */
        fprintf(stderr, "butlerfs: synth: %s is not a repository (no butler.yaml) and not empty; give a "
                        "repository, a new or empty directory, or run butlerfs init %s first\n", repo, repo);
        return 1;
    }
    if (!exists && bfs_registry_init(repo, &msg) < 0) {
        fprintf(stderr, "butlerfs: synth: %s\n", msg ? msg : "cannot create the repository");
        free(msg);
        return 1;
    }
    bfs_registry *reg = NULL;
    if (bfs_registry_open(repo, BFS_REG_WRITE, &reg, &msg) < 0) {
        fprintf(stderr, "butlerfs: synth: %s\n", msg ? msg : "cannot open the repository");
        free(msg);
        return 1;
    }
    bfs_progress bar;
    bfs_progress_start(&bar, stderr, "synth", (int64_t)o.n_exposures * o.n_detectors);
    o.progress = synth_progress;
    o.progress_ctx = &bar;
    unsigned long errors = bfs_log_error_count();
    int n = bfs_synth_raws(reg, &o);
    bfs_registry_close(reg);
    if (n < 0) {
        if (bfs_log_error_count() == errors) /* else the log said why */
            fprintf(stderr, "\nbutlerfs: synth: %s\n", strerror(-n));
        return 1;
    }
    bfs_progress_finish(&bar);
    printf("%d\n", n);
    return 0;
}
