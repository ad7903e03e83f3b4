/*
 * cli_quarantine.c - `butlerfs quarantine [REPO]`: the files a writable
 * mount refused, each with its reason (docs/ingest.md, "Quarantine"), and
 * `butlerfs quarantine retry [REPO] ID...|--all`: write them into the
 * running mount again, where the writer wrote them, once the cause is
 * fixed (a header corrections file added, a camera record registered).
 *
 * The quarantine directory holds DAY/U.data (the bytes as refused) and
 * DAY/U.reason (the reason, then "key: value" lines: run, dataset type,
 * name, errno, path; writers/ingest.c writes them).  A retry copies U.data
 * to MOUNTPOINT/<path> and closes it: close(2) says what the ingest did.
 * The entry goes only when the mount holds the bytes again: ingested (0),
 * or refused again (EINVAL, ENOENT, EEXIST), when the mount has quarantined
 * them anew with today's reason.  Any other outcome keeps it.
 */
#include "cli.h"

#include "config.h"
#include "durable.h"
#include "mount.h"
#include "strutil.h"
#include "writers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char quarantine_help[] =
    "Usage: butlerfs quarantine [--json] [--since DAY] [--dir DIR | --config FILE] [REPO]\n"
    "       butlerfs quarantine retry [--force] [--dir DIR | --config FILE] [REPO] (ID... | --all)\n"
    "\n"
    "The files a writable (-o rw) mount of the repository REPO refused: not FITS, a\n"
    "bad checksum, a header it could not translate, other bytes at a dataId that\n"
    "is taken, ...  Each is kept with its reason in the quarantine directory\n"
    "(ingest.quarantine; default REPO/.butlerfs/quarantine), never deleted by the\n"
    "mount.  Without REPO: the repository of this user's one running writable mount.\n"
    "\n"
    "  (no command)   list them, oldest first: when, ID, size, the errno the\n"
    "                 writer's close() got, where it was written, and why\n"
    "  retry ID...    write each file (ID: its id, or the start of it) into the\n"
    "                 running writable mount of REPO again, where the writer wrote\n"
    "                 it, and report what its close() says.  Ingested: the entry is\n"
    "                 removed (the bytes are in the datastore).  Refused again: the\n"
    "                 mount quarantined them anew with the new reason, and the old\n"
    "                 entry is removed.  Anything else keeps it.\n"
    "  retry --all    the same for every file in the quarantine\n"
    "  retry --force  also files whose writer never finished them (errno ECANCELED:\n"
    "                 the writer was killed, or the mount stopped, before the\n"
    "                 close); without it they are skipped, as their bytes may be\n"
    "                 cut\n"
    "\n"
    "Options:\n"
    "  --json         print one JSON object (the list)\n"
    "  --since DAY    only files quarantined on DAY (YYYY-MM-DD, UTC) or later\n"
    "  --dir DIR      the quarantine directory (default: the running mount's, else\n"
    "                 the configuration's ingest.quarantine, else REPO's default)\n"
    "  --config FILE  the configuration whose ingest.quarantine to use (default\n"
    "                 ~/.config/butlerfs/config.yaml when present)\n"
    "  -h, --help     show this text\n"
    "\n"
    "Fix the cause first: a retry of bytes refused for what they are (not FITS, a\n"
    "bad checksum) is refused again.  A replica and its sidecar (REPO's .replicas\n"
    "directory) are retried together: name both.\n"
    "\n"
    "Exit status: 0 done (retry: every file ingested); 1 a file not ingested, or\n"
    "the quarantine cannot be read; 2 a usage error.\n";

/* How long a retry refused again looks for the new reason file (the mount
 * writes it right after the close is answered). */
#define NEW_REASON_WAIT_MS 5000

struct qentry {
    char id[33];
    char day[11];
    char *data, *reason_file; /* paths, or NULL when missing */
    int64_t size;             /* of data; -1 without */
    time_t when;              /* mtime of data, else of the reason file */
    /* from the reason file, NULL when absent */
    char *reason, *run, *dtype, *name, *errname, *path;
};

struct qlist {
    struct qentry *v;
    size_t n, cap;
};

static void qlist_free(struct qlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        struct qentry *e = &l->v[i];
        free(e->data);
        free(e->reason_file);
        free(e->reason);
        free(e->run);
        free(e->dtype);
        free(e->name);
        free(e->errname);
        free(e->path);
    }
    free(l->v);
    *l = (struct qlist){0};
}

static bool is_day(const char *s)
{
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return false;
    return true;
}

/* "U.data" or "U.reason" with U 32 lowercase hex digits: U into id, and
 * whether it is the data. */
static bool entry_name(const char *s, char id[33], bool *is_data)
{
    size_t n = strspn(s, "0123456789abcdef");
    if (n != 32 || (strcmp(s + 32, ".data") && strcmp(s + 32, ".reason")))
        return false;
    memcpy(id, s, 32);
    id[32] = '\0';
    *is_data = !strcmp(s + 32, ".data");
    return true;
}

/* A new entry of id at the end of l; NULL without memory. */
static struct qentry *entry_add(struct qlist *l, const char *id)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        struct qentry *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return NULL;
        l->v = v;
        l->cap = cap;
    }
    struct qentry *e = &l->v[l->n++];
    *e = (struct qentry){.size = -1};
    memcpy(e->id, id, sizeof e->id);
    return e;
}

static int by_id(const void *a, const void *b)
{
    const struct qentry *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c ? c : strcmp(x->day, y->day);
}

/* One entry per id: the files of an id found apart (its data and its
 * reason, perhaps on two days) join, the first day's copy of each standing. */
static void join_ids(struct qlist *l)
{
    if (!l->n)
        return;
    qsort(l->v, l->n, sizeof *l->v, by_id);
    size_t out = 0;
    for (size_t i = 1; i < l->n; i++) {
        struct qentry *keep = &l->v[out], *e = &l->v[i];
        if (strcmp(keep->id, e->id)) {
            l->v[++out] = *e;
            continue;
        }
        if (!keep->data && e->data) {
            keep->data = e->data;
            keep->size = e->size;
            keep->when = e->when;
            memcpy(keep->day, e->day, sizeof keep->day);
            e->data = NULL;
        }
        if (!keep->reason_file) {
            keep->reason_file = e->reason_file;
            e->reason_file = NULL;
        }
        free(e->data);
        free(e->reason_file);
    }
    l->n = out + 1;
}

/* Fill e's fields from its reason file: the reason first, then the known
 * "key: value" lines at its end. */
static void read_reason(struct qentry *e)
{
    FILE *f = e->reason_file ? fopen(e->reason_file, "re") : NULL;
    if (!f)
        return;
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    static const char *const keys[] = {"run: ", "dataset type: ", "name: ", "errno: ", "path: "};
    char **fields[] = {&e->run, &e->dtype, &e->name, &e->errname, &e->path};
    while (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    for (;;) {
        char *nl = strrchr(buf, '\n');
        char *line = nl ? nl + 1 : buf;
        int k = 0;
        while (k < 5 && !bfs_startswith(line, keys[k]))
            k++;
        if (k == 5 || !nl) /* the reason's own last line */
            break;
        if (!*fields[k])
            *fields[k] = strdup(line + strlen(keys[k]));
        *nl = '\0';
    }
    e->reason = strdup(buf);
}

static int by_time(const void *a, const void *b)
{
    const struct qentry *x = a, *y = b;
    if (x->when != y->when)
        return x->when < y->when ? -1 : 1;
    return strcmp(x->id, y->id);
}

/* Every entry of the quarantine directory dir on a day since (NULL: all)
 * or later, oldest first, the reason files read of those quarantined at or
 * after newer (0: all).  0, or -errno (-ENOENT: no such directory). */
static int scan(const char *dir, const char *since, time_t newer, struct qlist *l)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    int ret = 0;
    struct dirent *de;
    while (ret == 0 && (de = readdir(d))) {
        if (!is_day(de->d_name) || (since && strcmp(de->d_name, since) < 0))
            continue;
        char *daydir = bfs_asprintf("%s/%s", dir, de->d_name);
        DIR *dd = daydir ? opendir(daydir) : NULL;
        if (!dd) {
            ret = daydir ? 0 : -ENOMEM; /* gone meanwhile */
            free(daydir);
            continue;
        }
        struct dirent *fe;
        while (ret == 0 && (fe = readdir(dd))) {
            char id[33];
            bool is_data;
            if (!entry_name(fe->d_name, id, &is_data))
                continue;
            char *p = bfs_asprintf("%s/%s", daydir, fe->d_name);
            struct stat st;
            struct qentry *e = NULL;
            if (!p || (lstat(p, &st) == 0 && S_ISREG(st.st_mode) && !(e = entry_add(l, id))))
                ret = -ENOMEM;
            if (!e) {
                free(p);
                continue;
            }
            memcpy(e->day, de->d_name, sizeof e->day); /* is_day: 10 characters */
            e->when = st.st_mtime;
            if (is_data) {
                e->data = p;
                e->size = st.st_size;
            } else {
                e->reason_file = p;
            }
        }
        closedir(dd);
        free(daydir);
    }
    closedir(d);
    join_ids(l);
    for (size_t i = 0; ret == 0 && i < l->n; i++)
        if (l->v[i].when >= newer)
            read_reason(&l->v[i]);
    if (l->n)
        qsort(l->v, l->n, sizeof *l->v, by_time);
    return ret;
}

static void iso_time(time_t t, char *buf, size_t n)
{
    struct tm tm;
    strftime(buf, n, "%Y-%m-%d %H:%M:%S", gmtime_r(&t, &tm));
}

/* Where the writer wrote e, relative to the mount's root, or NULL when the
 * reason file does not say (written before the path was recorded: a raw
 * in its RUN's directory is rebuilt from the run and the name). */
static const char *written_at(const struct qentry *e, char *buf, size_t n)
{
    if (e->path)
        return e->path;
    if (e->run && e->name && e->dtype && !strcmp(e->dtype, "raw")) {
        snprintf(buf, n, "%s/%s", e->run, e->name);
        return buf;
    }
    return NULL;
}

/* A path below the mountpoint that names nothing outside it: relative,
 * every component one name (no "", "." or ".."). */
static bool safe_rel_path(const char *p)
{
    if (!p || !*p || *p == '/')
        return false;
    char *copy = strdup(p);
    bool ok = copy != NULL;
    char *save = NULL;
    for (char *c = copy ? strtok_r(copy, "/", &save) : NULL; c && ok; c = strtok_r(NULL, "/", &save))
        ok = bfs_is_one_component(c);
    ok = ok && !strstr(p, "//") && p[strlen(p) - 1] != '/';
    free(copy);
    return ok;
}

static int print_list(const struct qlist *l, const char *repo, const char *dir, bool json)
{
    int64_t bytes = 0;
    for (size_t i = 0; i < l->n; i++)
        bytes += l->v[i].size > 0 ? l->v[i].size : 0;
    char where[PATH_MAX], when[32];
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < l->n; i++) {
            const struct qentry *e = &l->v[i];
            iso_time(e->when, when, sizeof when);
            json_array_append_new(
                arr, json_pack("{s:s, s:s, s:s, s:I, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?}", "id", e->id,
                               "day", e->day, "time", when, "size", (json_int_t)e->size, "errno", e->errname,
                               "reason", e->reason, "run", e->run, "dataset_type", e->dtype, "name", e->name, "path",
                               written_at(e, where, sizeof where), "data", e->data, "reason_file", e->reason_file));
        }
        json_t *o = arr ? json_pack("{s:s?, s:s, s:I, s:I, s:o}", "repository", repo, "quarantine_dir", dir, "count",
                                    (json_int_t)l->n, "bytes", (json_int_t)bytes, "entries", arr)
                        : NULL;
        return bfs_print_json(o);
    }
    char total[32];
    bfs_format_bytes((double)bytes, total, sizeof total);
    printf("quarantine %s: %zu file%s, %s\n", dir, l->n, l->n == 1 ? "" : "s", total);
    for (size_t i = 0; i < l->n; i++) {
        const struct qentry *e = &l->v[i];
        char size[32];
        iso_time(e->when, when, sizeof when);
        if (e->size >= 0)
            bfs_format_bytes((double)e->size, size, sizeof size);
        const char *at = written_at(e, where, sizeof where);
        printf("%s  %.12s  %9s  %-7s  %s\n", when, e->id, e->size >= 0 ? size : "no bytes",
               e->errname ? e->errname : "?", at ? at : e->name ? e->name : "?");
        const char *why = e->reason ? e->reason : e->reason_file ? "?" : "(no reason file yet)";
        for (const char *p = why; *p;) {
            size_t k = strcspn(p, "\n");
            printf("    %.*s\n", (int)k, p);
            p += k + (p[k] == '\n');
        }
    }
    if (l->n)
        printf("(butlerfs quarantine retry ID... writes a file into the mount again once its cause is fixed)\n");
    return 0;
}

/* Remove e's files (the mount holds its bytes now) and its day directory
 * once empty. */
static int drop_entry(const struct qentry *e)
{
    int ret = 0;
    if (e->data && unlink(e->data) < 0 && errno != ENOENT)
        ret = -errno;
    if (ret == 0 && e->reason_file && unlink(e->reason_file) < 0 && errno != ENOENT)
        ret = -errno;
    char *mark = e->data ? bfs_quarantine_mark_path(e->data) : NULL;
    if (mark)
        unlink(mark); /* left by a retry the mount's stop cut (ENOENT: none) */
    free(mark);
    const char *any = e->data ? e->data : e->reason_file;
    char *daydir = any ? bfs_dir_of(any) : NULL;
    if (ret == 0 && daydir) {
        bfs_fsync_dir(daydir);
        rmdir(daydir); /* ENOTEMPTY: other entries that day */
    }
    free(daydir);
    return ret;
}

/* Copy src into a new file at dst; the close's errno, or a failed open's
 * or write's (*stage says which). */
static int write_into_mount(const char *src, const char *dst, const char **stage)
{
    *stage = "open";
    int in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (in < 0)
        return -errno;
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        int err = -errno;
        close(in);
        *stage = "create";
        return err;
    }
    static char buf[1 << 20];
    int ret = 0;
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            ret = r < 0 ? -errno : 0;
            *stage = "read";
            break;
        }
        for (ssize_t off = 0; off < r && ret == 0;) {
            ssize_t w = write(out, buf + off, (size_t)(r - off));
            if (w < 0 && errno != EINTR)
                ret = -errno;
            off += w > 0 ? w : 0;
        }
        if (ret < 0) {
            *stage = "write";
            break;
        }
    }
    close(in);
    if (close(out) < 0 && ret == 0) {
        ret = -errno;
        *stage = "close";
    }
    return ret;
}

/* The reason of the newest entry of dir, other than old, written at path
 * and quarantined at or after t: the retry's new entry (its reason file
 * comes a moment after the close is answered).  Its id into id; malloc'd,
 * or NULL when none came within NEW_REASON_WAIT_MS. */
static char *find_requarantined(const char *dir, const char *old, const char *path, time_t t, char id[33])
{
    struct timespec nap = {0, 50 * 1000 * 1000};
    char day[16];
    struct tm tm;
    strftime(day, sizeof day, "%Y-%m-%d", gmtime_r(&t, &tm));
    for (int waited = 0; waited <= NEW_REASON_WAIT_MS; waited += 50) {
        struct qlist l = {0};
        char *reason = NULL;
        scan(dir, day, t, &l); /* only the new entries' reasons are read */
        for (size_t i = l.n; i-- > 0 && !reason;) {
            const struct qentry *e = &l.v[i];
            if (strcmp(e->id, old) && e->when >= t && e->path && !strcmp(e->path, path) && e->reason) {
                reason = strdup(e->reason);
                memcpy(id, e->id, 33);
            }
        }
        qlist_free(&l);
        if (reason)
            return reason;
        nanosleep(&nap, NULL);
    }
    return NULL;
}

static bool refusal(int err) { return err == EINVAL || err == ENOENT || err == EEXIST; }

/* Whether e's writer never finished it (killed, or the daemon stopped
 * before the close): its bytes may be cut.  Older entries said so with EIO. */
static bool unfinished(const struct qentry *e)
{
    return (e->errname && !strcmp(e->errname, "ECANCELED")) ||
           (e->reason && (bfs_startswith(e->reason, BFS_REASON_DAEMON_STOPPED) ||
                          bfs_startswith(e->reason, BFS_REASON_NO_INTENT)));
}

/* Retry one entry through the mount at mnt; true when it was ingested. */
static bool retry_one(const struct qentry *e, const char *mnt, const char *dir, bool force)
{
    char buf[PATH_MAX];
    const char *at = written_at(e, buf, sizeof buf);
    if (!e->data) {
        printf("%.12s: no bytes (only a reason file): nothing to write\n", e->id);
        return false;
    }
    if (!at) {
        printf("%.12s: its reason file does not say where it was written (quarantined by an older "
               "butlerfs); copy %s to its dataId path in the mount yourself\n", e->id, e->data);
        return false;
    }
    if (!safe_rel_path(at)) {
        printf("%.12s: refusing the recorded path '%s': it would leave the mount\n", e->id, at);
        return false;
    }
    if (unfinished(e) && !force) {
        printf("%.12s: skipped: its writer never finished it (%s), so its %lld bytes may be cut; once you "
               "know they are whole, retry it with --force\n", e->id, e->reason ? e->reason : "?",
               (long long)e->size);
        return false;
    }
    char *dst = bfs_asprintf("%s/%s", mnt, at);
    if (!dst)
        return false;
    time_t start = time(NULL);
    const char *stage;
    char *mark = NULL;
    int ret = bfs_quarantine_mark_retry(e->data, at, &mark);
    if (ret < 0) {
        printf("%.12s: not written: cannot mark the entry as being retried: %s\n", e->id, strerror(-ret));
        free(dst);
        return false;
    }
    ret = write_into_mount(e->data, dst, &stage);
    free(dst);
    /* the mount gone mid-file: the marker tells its next start that the
     * upload it finds cut at this path is this entry's (writers.h) */
    if (ret != -ENOTCONN && ret != -ECONNABORTED)
        unlink(mark);
    free(mark);
    if (ret == 0) {
        int d = drop_entry(e);
        /* the first of a replica and its sidecar waits for the other, durable in the spool */
        bool pair = bfs_startswith(at, BFS_REPLICA_DIR "/");
        printf("%.12s: %s %s%s%s\n", e->id, pair ? "written (the pair is ingested when both are in) as" : "ingested as",
               at, d < 0 ? "; the entry could not be removed: " : "", d < 0 ? strerror(-d) : "");
        return true;
    }
    if (!strcmp(stage, "close") && refusal(-ret)) {
        char id[33];
        char *why = find_requarantined(dir, e->id, at, start, id);
        int d = drop_entry(e);
        printf("%.12s: refused again (%s): %s\n", e->id, strerrorname_np(-ret), why ? why : "see butlerfs quarantine");
        if (why)
            printf("    quarantined anew as %.12s\n", id);
        if (d < 0)
            printf("    the old entry could not be removed: %s\n", strerror(-d));
        free(why);
        return false;
    }
    if (ret == -ENOTCONN || ret == -ECONNABORTED)
        printf("%.12s: not ingested, the entry stays: the mount went away during the %s of %s/%s (its daemon "
               "stopped); once it is mounted again, retry (the copy it was given is dropped at its start)\n",
               e->id, stage, mnt, at);
    else
        printf("%.12s: not ingested, the entry stays: %s of %s/%s failed: %s\n", e->id, stage, mnt, at,
               strerror(-ret));
    return false;
}

/* The entries ids name (each a unique start of one id), or all; -1 after a
 * message when one names none or several. */
static int pick(const struct qlist *l, char **ids, int nids, bool all, bool *chosen)
{
    if (all) {
        for (size_t i = 0; i < l->n; i++)
            chosen[i] = true;
        return 0;
    }
    for (int k = 0; k < nids; k++) {
        size_t len = strlen(ids[k]), hit = 0, which = 0;
        for (size_t i = 0; i < l->n; i++)
            if (len && !strncmp(l->v[i].id, ids[k], len)) {
                hit++;
                which = i;
            }
        if (hit != 1) {
            fprintf(stderr, "butlerfs: quarantine retry: '%s' names %s file in the quarantine%s\n", ids[k],
                    hit ? "more than one" : "no", hit ? ": give more of its id" : "");
            return -1;
        }
        chosen[which] = true;
    }
    return 0;
}

/* The quarantine directory: --dir, else the running mount's, else the
 * configuration's ingest.quarantine, else REPO's default.  NULL after a
 * message. */
static char *quarantine_dir(const char *given, json_t *mount, const char *repo, const char *config_path)
{
    if (given)
        return strdup(given);
    const char *live = json_string_value(json_object_get(json_object_get(mount, "ingest"), "quarantine_dir"));
    if (live)
        return strdup(live);
    bfs_config cfg;
    bfs_ingest_config icfg;
    bfs_transfer_config tcfg;
    bfs_ingest_config_defaults(&icfg);
    bfs_transfer_config_defaults(&tcfg);
    char *msg = NULL, *dir = NULL;
    if (bfs_config_load(config_path, &cfg, &msg) < 0 || bfs_mount_write_config(&cfg, &icfg, &tcfg, &msg) < 0)
        fprintf(stderr, "butlerfs: quarantine: %s\n", msg ? msg : "cannot read the configuration");
    else if (icfg.quarantine_dir)
        dir = strdup(icfg.quarantine_dir);
    else if (repo)
        dir = bfs_asprintf("%s/.butlerfs/quarantine", repo);
    else
        fprintf(stderr, "butlerfs: quarantine: name the repository or the directory (--dir)\n");
    free(msg);
    bfs_transfer_config_free(&tcfg);
    bfs_ingest_config_free(&icfg);
    bfs_config_free(&cfg);
    return dir;
}

int bfs_cmd_quarantine(int argc, char **argv)
{
    bool json = false, retry = false, all = false, force = false;
    const char *repo = NULL, *since = NULL, *dir_opt = NULL, *config_path = NULL;
    char **ids = calloc((size_t)argc, sizeof *ids);
    int nids = 0;
    if (!ids)
        return 1;
    int status = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        struct stat st;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(quarantine_help, stdout);
            free(ids);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--all")) {
            all = true;
        } else if (!strcmp(a, "--force")) {
            force = true;
        } else if (i + 1 < argc && !strcmp(a, "--since")) {
            since = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--dir")) {
            dir_opt = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--config")) {
            config_path = argv[++i];
        } else if (i == 1 && !strcmp(a, "retry")) {
            retry = true;
        } else if (a[0] != '-' && !repo && !nids && stat(a, &st) == 0 && S_ISDIR(st.st_mode)) {
            repo = a; /* a directory: the repository (an id is never one) */
        } else if (a[0] != '-' && retry) {
            ids[nids++] = argv[i];
        } else {
            fprintf(stderr, "butlerfs: quarantine: unexpected argument '%s'%s\n\n%s", a,
                    a[0] != '-' ? " (not a repository directory)" : "", quarantine_help);
            goto out;
        }
    }
    if (since && !is_day(since)) {
        fprintf(stderr, "butlerfs: quarantine: --since takes a day as YYYY-MM-DD, not '%s'\n", since);
        goto out;
    }
    if (retry && (all == (nids > 0) || json || since)) {
        fprintf(stderr, "butlerfs: quarantine retry takes ids or --all (and no --json or --since)\n\n%s",
                quarantine_help);
        goto out;
    }
    if (!retry && (all || force)) {
        fprintf(stderr, "butlerfs: quarantine: %s goes with retry\n\n%s", all ? "--all" : "--force", quarantine_help);
        goto out;
    }
    status = 1;
    /* the running mount: the repository when none is named, the mountpoint for a retry */
    json_t *mount = repo || retry || !dir_opt ? bfs_status_rw_mount(repo, "quarantine") : NULL;
    if (!repo && !dir_opt && !mount) {
        fprintf(stderr, "\n%s", quarantine_help);
        status = 2;
        goto out;
    }
    if (retry && !mount) {
        if (repo)
            fprintf(stderr, "butlerfs: quarantine retry: no writable mount of %s is running: mount it "
                            "with -o rw first\n", repo);
        goto out_mount;
    }
    const char *repo_of = repo ? repo : json_string_value(json_object_get(mount, "repository"));
    char *dir = quarantine_dir(dir_opt, mount, repo_of, config_path);
    if (!dir)
        goto out_mount;
    struct qlist l = {0};
    int ret = scan(dir, since, 0, &l);
    if (ret == -ENOENT)
        ret = 0; /* nothing was ever quarantined */
    if (ret < 0) {
        fprintf(stderr, "butlerfs: quarantine: cannot read %s: %s\n", dir, strerror(-ret));
    } else if (!retry) {
        status = print_list(&l, repo_of, dir, json);
    } else {
        bool *chosen = calloc(l.n + 1, sizeof *chosen);
        const char *mnt = json_string_value(json_object_get(mount, "mountpoint"));
        if (chosen && mnt && pick(&l, ids, nids, all, chosen) == 0) {
            size_t want = 0, done = 0;
            for (size_t i = 0; i < l.n; i++)
                want += chosen[i];
            /* Ctrl-C or a kill between files, never inside one: a writer
             * stopped mid-file would hand the mount a cut file to ingest */
            sigset_t stop, old;
            sigemptyset(&stop);
            sigaddset(&stop, SIGINT);
            sigaddset(&stop, SIGTERM);
            sigaddset(&stop, SIGHUP);
            sigaddset(&stop, SIGQUIT);
            for (size_t i = 0; i < l.n; i++) {
                if (!chosen[i])
                    continue;
                sigprocmask(SIG_BLOCK, &stop, &old);
                done += retry_one(&l.v[i], mnt, dir, force);
                fflush(stdout);
                sigprocmask(SIG_SETMASK, &old, NULL); /* one that came meanwhile ends the command here */
            }
            if (want != 1 || done != 1)
                printf("%zu of %zu file%s ingested\n", done, want, want == 1 ? "" : "s");
            status = done == want ? 0 : 1;
        }
        free(chosen);
    }
    qlist_free(&l);
    free(dir);
out_mount:
    json_decref(mount);
out:
    free(ids);
    return status;
}
