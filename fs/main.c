/*
 * main.c - the butlerfs program: subcommand dispatch and the composition
 * root of a mount.
 *
 * Mount start-up order, and why:
 *   1. parse options, check the mountpoint      (clear messages, no side effects)
 *   2. open the registry once to validate it    (every repository problem is
 *      reported here, on the terminal, before anything is mounted)
 *   3. create the FUSE session and mount
 *   4. daemonize (unless -f)                    (SQLite connections must not
 *      cross fork(), so the validating registry is closed before it)
 *   5. open the registry for serving, build the tree, run the loop
 * and the cleanup ladder undoes these in reverse order.
 */
#include "cli.h"
#include "mount.h"
#include "status.h"
#include "ops.h"

#include "config.h"
#include "log.h"
#include "strutil.h"
#include "transfer.h"

#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAIN_TAG "main"
#define BFS_STR_(x) #x
#define BFS_STR(x) BFS_STR_(x)

static const char usage_text[] =
    "Usage: butlerfs COMMAND [ARGS]\n"
    "\n"
    "Expose a Rubin Observatory Data Butler repository as plain files.\n"
    "\n"
    "Commands:\n"
    "  mount REPO MOUNTPOINT [-f] [-d] [-o OPT[,OPT...]]\n"
    "        Mount the repository REPO (the directory holding butler.yaml) read-only\n"
    "        at MOUNTPOINT (an empty directory).  Every dataset appears at\n"
    "          MOUNTPOINT/<collection>/<datasetType>/<dim>=<value>/.../<file>\n"
    "        Unmount with: fusermount3 -u MOUNTPOINT\n"
    "  init [--db URL [--namespace NS]] REPO\n"
    "        Create a new, empty repository (the universe-7 schema of the Python Butler),\n"
    "        its registry in REPO/gen3.sqlite3 or in the PostgreSQL database URL.\n"
    "  copy-registry SRC DST --db URL [--namespace NS] [--root ROOT]\n"
    "        Copy SRC's SQLite registry into PostgreSQL; DST is a repository using it.\n"
    "  demo DIR [--keep-mounted] [--exposures N] [--detectors N]\n"
    "        Build a small repository of synthetic LSSTCam raws in DIR/repo, mount it\n"
    "        at DIR/mnt and walk through it.\n"
    "  prefetch REPO PATH... [--config FILE] [--jobs N] [--from FILE]\n"
    "        Read the datasets below each PATH into the local cache (batch jobs).\n"
    "  cache [--dir DIR] [--config FILE] stats|evict|verify|clear\n"
    "        Show or manage the local cache of remote data.\n"
    "  status [--json] [MOUNTPOINT...]\n"
    "        What the running mounts are doing: bytes from servers, cache hits,\n"
    "        failovers, failed reads, replicas skipped after failures; for an -o rw\n"
    "        mount, files ingested, duplicates, quarantined, not fully staged.\n"
    "  queue [--json] REPO | queue retry REPO | queue drop-parked REPO\n"
    "        The uploads of ingested files to the Data Backbone (transfer: section).\n"
    "  quarantine [--json] [REPO] | quarantine retry [--force] [REPO] ID...|--all\n"
    "        The files a writable mount refused, with the reasons; write them into\n"
    "        the mount again once the cause is fixed.\n"
    "  catchup REPO --collection GLOB [--since DATE] [--until DATE] [--check-sizes]\n"
    "        Queue the uploads of datasets the destinations do not hold.\n"
    "  export REPO [PATH...] --to DIR [--collection GLOB] [--dataset-type GLOB] [--dry-run]\n"
    "        Copy dataset files into DIR, each with a sidecar (DIR/<path>.butler.json)\n"
    "        holding its id, run, dataId and checksums, for another site to ingest.\n"
    "  retention REPO [--dry-run] [--json]\n"
    "        Remove local datasets past their retention age once transferred.\n"
    "  synth REPO [OPTIONS]\n"
    "        Add synthetic LSSTCam raws to REPO (for tests and benchmarks).\n"
    "  help [COMMAND]   Show this text, or the options of COMMAND.\n"
    "  --version        Print the version.\n"
    "\n"
    "See butlerfs(1), docs/paths.md and docs/architecture.md.\n";

static const char mount_help[] =
    "Usage: butlerfs mount REPO MOUNTPOINT [-f] [-d] [-o OPT[,OPT...]]\n"
    "\n"
    "  -f                 stay in the foreground (logs go to stderr)\n"
    "  -d                 foreground with debug logging (FUSE requests too)\n"
    "  -s                 one thread serves every request (lowest latency for one\n"
    "                     sequential client such as find; no parallel reads)\n"
    "  -h, --help         this text\n"
    "\n"
    "butlerfs options (-o):\n"
    "  file_timeout=SEC       kernel cache time of file entries and attributes (86400;\n"
    "                         datasets are immutable)\n"
    "  dir_timeout=SEC        same for directories (10; new datasets appear)\n"
    "  negative_timeout=SEC   how long a missing name is remembered (1)\n"
    "  listing_ttl=SEC        how long a directory's dataset list is reused (10)\n"
    "  threads=N              maximum FUSE worker threads (16)\n"
    "  config=FILE            butlerfs configuration: cache, remote fetch policy, source\n"
    "                         chains (default ~/.config/butlerfs/config.yaml; docs/config.md)\n"
    "  xattr                  serve user.butler.dataset_id and user.butler.location on\n"
    "                         files (off by default: ls -l then costs 2 requests per entry)\n"
    "  log=FILE               log to FILE instead of syslog (daemon) or stderr (-f)\n"
    "  loglevel=LEVEL         error, warning, notice (default), info or debug\n"
    "  max_nodes=N            at most about N files and directories known to the kernel\n"
    "                         at once; past it the least recently used are dropped\n"
    "                         (" BFS_STR(BFS_DEFAULT_MAX_NODES) "; 0: no limit)\n"
    "  direct_io              file reads bypass the kernel page cache: large sequential\n"
    "                         reads go faster (one copy fewer), small reads and re-reads\n"
    "                         slower (each is a request); shared mmap may fail (ENODEV)\n"
    "  rw                     writable: a file written into a RUN collection is ingested\n"
    "                         when it is closed, and close() returns the outcome\n"
    "                         (docs/ingest.md; the datastore root must be a local\n"
    "                         directory; the config file's ingest: section applies)\n"
    "  allow_other            let other users see the mount (needs user_allow_other\n"
    "                         in /etc/fuse.conf when not root)\n"
    "Other -o options go to FUSE's kernel mount (mount.fuse3(8): allow_other,\n"
    "max_read, ...); options of libfuse's high-level API (kernel_cache, auto_cache)\n"
    "do not apply: butlerfs sets its own caching.  Without -o rw the mount is\n"
    "read-only: writes fail with EROFS.\n";

static void print_version(void) { printf("butlerfs %s\n", BFS_VERSION); }

/* libfuse may log one message in several calls (fragments without a
 * newline); lines are assembled per thread and logged whole. */
static _Thread_local char fuse_line[1024];

static void fuse_log_bridge(enum fuse_log_level level, const char *fmt, va_list ap)
{
    size_t used = strlen(fuse_line);
    vsnprintf(fuse_line + used, sizeof fuse_line - used, fmt, ap);
    size_t n = strlen(fuse_line);
    if (n == 0 || (fuse_line[n - 1] != '\n' && n < sizeof fuse_line - 1))
        return;
    while (n && fuse_line[n - 1] == '\n')
        fuse_line[--n] = '\0';
    BFS_LOG((int)level, "fuse", "%s", fuse_line);
    fuse_line[0] = '\0';
}

/* Before the mount, libfuse's complaints become part of one user message. */
static void fuse_log_capture(enum fuse_log_level level, const char *fmt, va_list ap)
{
    size_t used = strlen(fuse_line);
    vsnprintf(fuse_line + used, sizeof fuse_line - used, fmt, ap);
}

/* The captured libfuse message without its "fuse: " prefix and newlines. */
static const char *captured_fuse_message(void)
{
    size_t n = strlen(fuse_line);
    while (n && fuse_line[n - 1] == '\n')
        fuse_line[--n] = '\0';
    for (char *p = fuse_line; (p = strchr(p, '\n')) != NULL;)
        *p = ' ';
    return bfs_startswith(fuse_line, "fuse: ") ? fuse_line + 6 : fuse_line;
}

/* "a\040b" (mountinfo's escape of a space, tab, newline or backslash) to "a b", in place. */
static void mountinfo_unescape(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' && p[3] >= '0' &&
            p[3] <= '7') {
            *o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
            p += 3;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
}

/* True when the top mount on mnt is a FUSE file system (its type, such as
 * "fuse.butlerfs", in type): mounting there again needs fusermount3 -u
 * first.  Other mount points (a tmpfs, a volume) are directories like any
 * other here. */
static bool fuse_mount_type(const char *mnt, char *type, size_t typesz)
{
    char want[4096];
    FILE *f = realpath(mnt, want) ? fopen("/proc/self/mountinfo", "r") : NULL;
    if (!f)
        return false;
    bool fuse = false;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        /* id parent dev root MOUNTPOINT options [optional...] - TYPE source ... */
        char *save, *field = strtok_r(line, " ", &save);
        for (int i = 0; field && i < 4; i++)
            field = strtok_r(NULL, " ", &save);
        if (!field)
            continue;
        mountinfo_unescape(field);
        bool here = !strcmp(field, want);
        char *t = NULL;
        while ((t = strtok_r(NULL, " ", &save)) && strcmp(t, "-"))
            ;
        t = t ? strtok_r(NULL, " ", &save) : NULL;
        if (here && t) { /* the last entry for a path is the one on top */
            fuse = bfs_startswith(t, "fuse");
            snprintf(type, typesz, "%s", t);
        }
    }
    free(line);
    fclose(f);
    return fuse;
}

int bfs_dir_empty(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return -errno;
    int empty = 1;
    struct dirent *de;
    while (empty && (de = readdir(d)))
        empty = !strcmp(de->d_name, ".") || !strcmp(de->d_name, "..");
    closedir(d);
    return empty;
}

bool bfs_check_mountpoint(const char *mnt)
{
    struct stat sb, up;
    if (stat(mnt, &sb) < 0) {
        if (errno == ENOTCONN)
            fprintf(stderr, "butlerfs: mountpoint %s is a dead mount (transport endpoint not "
                            "connected); run: fusermount3 -u %s\n", mnt, mnt);
        else
            fprintf(stderr, "butlerfs: mountpoint %s: %s\n", mnt, strerror(errno));
        return false;
    }
    if (!S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "butlerfs: mountpoint %s is not a directory\n", mnt);
        return false;
    }
    char *parent = bfs_asprintf("%s/..", mnt);
    bool mounted = parent && stat(parent, &up) == 0 && up.st_dev != sb.st_dev;
    free(parent);
    char fstype[64];
    if (mounted && fuse_mount_type(mnt, fstype, sizeof fstype)) {
        fprintf(stderr, "butlerfs: %s is already mounted (%s); unmount it first: fusermount3 -u %s\n",
                mnt, fstype, mnt);
        return false;
    }
    int empty = bfs_dir_empty(mnt);
    if (empty < 0) {
        fprintf(stderr, "butlerfs: mountpoint %s: %s\n", mnt, strerror(-empty));
        return false;
    }
    if (!empty) {
        fprintf(stderr, "butlerfs: mountpoint %s is not empty (mounting would hide its files); "
                        "use an empty directory\n", mnt);
        return false;
    }
    return true;
}

struct mount_opts {
    double file_timeout, dir_timeout, negative_timeout, listing_ttl;
    int threads;
    char *log;
    char *loglevel;
    char *config;
    int show_help;
    int foreground;
    int debug;
    int single;
    int xattr;
    int direct_io;
    int rw;
    unsigned long max_nodes;
};

#define MOPT(t, p) {t, offsetof(struct mount_opts, p), 1}
static const struct fuse_opt mount_optspec[] = {
    MOPT("file_timeout=%lf", file_timeout),
    MOPT("dir_timeout=%lf", dir_timeout),
    MOPT("negative_timeout=%lf", negative_timeout),
    MOPT("listing_ttl=%lf", listing_ttl),
    MOPT("threads=%d", threads),
    MOPT("log=%s", log),
    MOPT("loglevel=%s", loglevel),
    MOPT("config=%s", config),
    MOPT("-h", show_help),
    MOPT("--help", show_help),
    MOPT("-f", foreground),
    MOPT("-d", debug),
    MOPT("-s", single),
    MOPT("xattr", xattr),
    MOPT("direct_io", direct_io),
    MOPT("rw", rw),
    MOPT("max_nodes=%lu", max_nodes),
    FUSE_OPT_END,
};

static void on_sigusr1(int sig)
{
    (void)sig;
    (void)bfs_log_reopen();
}

/* kill -USR1 of the daemon opens -o log=FILE again by its name, so that
 * logrotate can rename the file (as nginx's USR1; SIGHUP, SIGINT and
 * SIGTERM stay libfuse's: unmount and exit). */
static void reopen_log_on_sigusr1(void)
{
    struct sigaction sa = {.sa_handler = on_sigusr1, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
}

int bfs_cmd_mount(int argc, char **argv)
{
    /* argv: "mount" REPO MOUNTPOINT [options]; options may come anywhere */
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    struct mount_opts mo = {.file_timeout = 86400, .dir_timeout = 10, .negative_timeout = 1,
                            .listing_ttl = 10, .threads = 16, .max_nodes = BFS_DEFAULT_MAX_NODES};
    const char *pos[2] = {NULL, NULL};
    int npos = 0, status = 1;

    fuse_opt_add_arg(&args, "butlerfs");
    fuse_set_log_func(fuse_log_capture);
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] != '-' && (i == 1 || strcmp(argv[i - 1], "-o") != 0)) {
            if (npos == 2) {
                fprintf(stderr, "butlerfs: mount: unexpected argument '%s' (after REPO and MOUNTPOINT; "
                                "see: butlerfs help mount)\n", argv[i]);
                fuse_opt_free_args(&args);
                return 2;
            }
            pos[npos++] = argv[i];
            continue;
        }
        fuse_opt_add_arg(&args, argv[i]);
    }
    if (fuse_opt_parse(&args, &mo, mount_optspec, NULL) == -1) {
        fprintf(stderr, "butlerfs: bad mount option: %s (see: butlerfs help mount)\n",
                captured_fuse_message());
        fuse_opt_free_args(&args);
        return 2;
    }
    if (mo.show_help) {
        fputs(mount_help, stdout);
        fuse_opt_free_args(&args);
        return 0;
    }
    if (npos != 2) {
        fprintf(stderr, "butlerfs: mount needs a repository and a mountpoint\n%s", mount_help);
        fuse_opt_free_args(&args);
        return 2;
    }
    if (mo.debug) {
        mo.foreground = 1;
        bfs_log_set_level(LOG_DEBUG);
        fuse_opt_add_arg(&args, "-odebug"); /* libfuse's request trace */
    }
    if (mo.loglevel) {
        int lvl = bfs_log_level_from_name(mo.loglevel);
        if (lvl < 0) {
            fprintf(stderr, "butlerfs: unknown loglevel '%s' (error, warning, notice, info, debug)\n",
                    mo.loglevel);
            status = 2;
            goto out_args;
        }
        bfs_log_set_level(lvl);
    }
    if (mo.threads < 1 || mo.threads > 1024) {
        fprintf(stderr, "butlerfs: threads must be between 1 and 1024\n");
        status = 2;
        goto out_args;
    }
    if (mo.config && !mo.config[0]) {
        fprintf(stderr, "butlerfs: -o config= needs a file name\n");
        status = 2;
        goto out_args;
    }
    const char *repo = pos[0], *mnt = pos[1];
    /* the daemon runs in "/": a relative repository must be made absolute now */
    char repo_abs[4096], mnt_abs[4096];
    if (realpath(repo, repo_abs))
        repo = repo_abs;
    if (!bfs_check_mountpoint(mnt))
        goto out_args;
    if (!realpath(mnt, mnt_abs))
        snprintf(mnt_abs, sizeof mnt_abs, "%s", mnt);

    /* 2. validate the configuration and the repository while the user can
     * still see messages */
    char *msg = NULL;
    bfs_config config;
    bfs_config_defaults(&config);
    bfs_ingest_config icfg; /* the ingest: section, for -o rw */
    bfs_ingest_config_defaults(&icfg);
    bfs_transfer_config tcfg; /* the transfer: section, for -o rw */
    bfs_transfer_config_defaults(&tcfg);
    bfs_mount_plan plan = {.repo = repo, .mnt = mnt_abs, .rw = mo.rw != 0, .single_thread = mo.single != 0,
                           .threads = mo.threads, .listing_ttl = mo.listing_ttl, .max_nodes = mo.max_nodes,
                           .config = &config, .ingest = &icfg, .transfer = &tcfg};
    char *fsname = NULL;
    if (bfs_config_load(mo.config, &config, &msg) < 0) {
        fprintf(stderr, "butlerfs: %s\n", msg ? msg : "cannot read the configuration");
        free(msg);
        goto out_config;
    }
    if (bfs_mount_check(&plan, &icfg, &tcfg, &fsname) < 0)
        goto out_config;
    /* commas in the repository path would split the option: escape them */
    fuse_opt_add_arg(&args, fsname);
    free(fsname);

    /* 3. mount, while the user still sees the terminal */
    bfs_fs fs = {.file_timeout = mo.file_timeout, .dir_timeout = mo.dir_timeout,
                 .negative_timeout = mo.negative_timeout, .max_read = 1u << 20,
                 .xattr = mo.xattr != 0, .direct_io = mo.direct_io != 0};
    struct fuse_lowlevel_ops ops = bfs_fuse_ops;
    if (mo.rw)
        bfs_ops_writable(&ops);
    struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, &fs);
    if (!se) {
        fprintf(stderr, "butlerfs: bad mount option: %s (see: butlerfs help mount)\n",
                captured_fuse_message());
        status = 2;
        goto out_config;
    }
    fuse_line[0] = '\0';
    fuse_set_log_func(fuse_log_bridge);
    if (fuse_set_signal_handlers(se) != 0)
        goto out_session;
    if (fuse_session_mount(se, mnt_abs) != 0) {
        fprintf(stderr, "butlerfs: cannot mount on %s (is /dev/fuse available and fusermount3 installed?)\n",
                mnt_abs);
        goto out_signals;
    }
    if (mo.log) {
        int r = bfs_log_to_file(mo.log);
        if (r < 0) {
            fprintf(stderr, "butlerfs: cannot open log file %s: %s\n", mo.log, strerror(-r));
            goto out_unmount;
        }
        reopen_log_on_sigusr1();
    }
    char *sdir = NULL;
    const char *swhy = NULL;
    plan.status_file = bfs_status_check(&sdir, &swhy) == 0;
    if (!plan.status_file) /* said while the user sees it */
        fprintf(stderr, "butlerfs: warning: no status file for this mount (butlerfs status will not list it): "
                        "%s: %s\n", sdir ? sdir : "the status directory", swhy);
    free(sdir);
    if (!mo.foreground) {
        if (fuse_daemonize(0) != 0)
            goto out_unmount;
        if (!mo.log)
            bfs_log_to_syslog("butlerfs");
    }

    /* 4. build everything and serve (fs/mount.c, the composition root) */
    status = bfs_mount_serve(&plan, se, &fs);
out_unmount:
    fuse_session_unmount(se);
out_signals:
    fuse_remove_signal_handlers(se);
out_session:
    fuse_session_destroy(se);
out_config:
    bfs_transfer_config_free(&tcfg);
    bfs_ingest_config_free(&icfg);
    bfs_config_free(&config);
out_args:
    fuse_opt_free_args(&args);
    free(mo.log);
    free(mo.loglevel);
    free(mo.config);
    return status;
}

/* Run the command argv[0] (self: how butlerfs was invoked). */
static int run_command(const char *self, int argc, char **argv)
{
    const char *cmd = argv[0];
    if (!strcmp(cmd, "mount"))
        return bfs_cmd_mount(argc, argv);
    if (!strcmp(cmd, "init"))
        return bfs_cmd_init(argc, argv);
    if (!strcmp(cmd, "copy-registry"))
        return bfs_cmd_copy_registry(argc, argv);
    if (!strcmp(cmd, "prefetch"))
        return bfs_cmd_prefetch(argc, argv);
    if (!strcmp(cmd, "cache"))
        return bfs_cmd_cache(argc, argv);
    if (!strcmp(cmd, "status"))
        return bfs_cmd_status(argc, argv);
    if (!strcmp(cmd, "queue"))
        return bfs_cmd_queue(argc, argv);
    if (!strcmp(cmd, "quarantine"))
        return bfs_cmd_quarantine(argc, argv);
    if (!strcmp(cmd, "catchup"))
        return bfs_cmd_catchup(argc, argv);
    if (!strcmp(cmd, "export"))
        return bfs_cmd_export(argc, argv);
    if (!strcmp(cmd, "retention"))
        return bfs_cmd_retention(argc, argv);
    if (!strcmp(cmd, "synth"))
        return bfs_cmd_synth(argc, argv);
    if (!strcmp(cmd, "demo"))
        return bfs_cmd_demo(argc, argv, self);
    fprintf(stderr, "butlerfs: unknown command '%s'\n\n%s", cmd, usage_text);
    return 2;
}

int main(int argc, char **argv)
{
    /* Before any thread: allocations from 128 KiB up get mappings of their
     * own, so freeing them gives the memory back (glibc's default raises
     * that threshold as large blocks are freed, and then keeps them on its
     * heaps); and at most 4 heaps, not 8 per core, for the FUSE threads and
     * fetch workers to leave free memory in.  See docs/performance.md. */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    mallopt(M_ARENA_MAX, 4);
    if (argc < 2) {
        fputs(usage_text, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V") || !strcmp(cmd, "version")) {
        print_version();
        return 0;
    }
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        if (argc <= 2 || !strcmp(argv[2], "--help") || !strcmp(argv[2], "-h") || !strcmp(argv[2], "help")) {
            fputs(usage_text, stdout);
            return 0;
        }
        char *hargv[] = {argv[2], "--help", NULL}; /* help CMD is CMD --help */
        return run_command(argv[0], 2, hargv);
    }
    return run_command(argv[0], argc - 1, argv + 1);
}
