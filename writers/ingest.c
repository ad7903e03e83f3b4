/*
 * ingest.c - files written into a mount become datasets (writers.h).
 *
 * On disk, all on the datastore root's file system (every move is a rename):
 *
 *   REPO/.butlerfs/            0700; never shown in the mount
 *     lock                     flock held by the one -o rw daemon of REPO
 *     spool/U.data             the bytes being written (0600), U = 32 random hex
 *     spool/U.intent           the upload's intent record (JSON, below)
 *     quarantine/YYYY-MM-DD/U.data, U.reason   rejected bytes and why
 *     events.jsonl             one line per outcome
 *     reserve                  1 MiB held back for intents and quarantines on a full disk
 *
 * The state machine of one upload (docs/ingest.md explains the choices):
 *
 *   OPEN --seal--> SEALED --check, decide--> PREPARED --rename--> PLACED
 *     --one registry transaction--> REGISTERED --links, event--> ANNOUNCED --> (intent removed)
 *   a staging link that still fails: the event says so and the upload stays REGISTERED
 *   any rejection: --> QUARANTINED --move, reason, event--> ANNOUNCED
 *   a create refused before OPEN (bfs_upload_may_begin: a name that cannot
 *   be one, a read-only collection, a dataId without records): no upload, no
 *   intent, no spool file; an event line only, so nothing to recover
 *
 * Write-ahead: the intent record names the state an upload is in, and it is
 * written (tmp file, fdatasync, rename, fsync of the spool directory) before
 * the side effect that leads out of that state.  Every step is idempotent,
 * so recovery is "take steps until there are none left" (step_all).
 * PLACED and ANNOUNCED are not written (durable_state): recovery from the
 * state before each finds its side effect done (below), so the record
 * says PREPARED until REGISTERED, and REGISTERED or QUARANTINED until it
 * is removed.
 *
 * | state       | what holds on disk                          | the step out                      |
 * | OPEN        | U.data, maybe incomplete                    | seal: fdatasync -> SEALED         |
 * | SEALED      | U.data complete and durable (a failed write | validate, id, path -> PREPARED, or QUARANTINED; |
 * |             | is in the intent: never ingested)           | a replica or sidecar -> WAITING, or paired      |
 * |             | (so is a writer killed before its close:    |                                   |
 * |             | killed_by, QUARANTINED with ECANCELED)      | (a raw at a dataId path: its headers must give it; |
 * |             |                                             | the path's dataId is kept, never rewritten) |
 * | WAITING     | a replica or sidecar whose partner has not  | the partner's seal pairs them (-> PREPARED or   |
 * |             | been sealed yet (close() was told 0)        | QUARANTINED); replica_wait -> QUARANTINED        |
 * | PREPARED    | intent has id, path, size; bytes in U.data  | the id registered at another path: compare  |
 * |             |                                             | (duplicate -> PLACED, or QUARANTINED); else |
 * |             |                                             | chmod, rename (no replace) to the path, fsync dir -> PLACED |
 * | PLACED      | the file at its path; maybe no registry row | add the dataset (EEXIST: it is ours) -> REGISTERED; |
 * |             |                                             | another id at the dataId: file back, QUARANTINED |
 * | REGISTERED  | the dataset is registered                   | staging links, event -> ANNOUNCED; |
 * |             |                                             | a link failed: event, stays (retried, next mount) |
 * |             |                                             | file gone, dataset removed: -> ANNOUNCED |
 * | QUARANTINED | the reason is in the intent                 | move U.data to quarantine, U.reason, event -> ANNOUNCED |
 * | ANNOUNCED   | everything done                             | drop its pages (page_cache), unlink the intent |
 *
 * The writer's seal is answered when REGISTERED (0) or a quarantine is
 * complete (-errno): what was promised is on disk by then.
 *
 * Crash story (kill -9 anywhere, then a new -o rw mount): bfs_ingest_open
 * takes the lock and, before anything is served, steps every intent record
 * to its end, after removing the half-made copies an earlier daemon may
 * have left (U.intent.tmp, U.data.merge, U.data.plain: never the only copy
 * of anything, see remove_stale_copies).  OPEN: the writer never closed; quarantined ("the daemon
 * stopped before the writer closed the file"), unless it was a `butlerfs
 * quarantine retry` whose entry holds every byte of it (drop_cut_retry:
 * then dropped, its intent ANNOUNCED, never written).  WAITING: kept, under the
 * name its intent holds (a rename of a replica or sidecar in SEALED or
 * WAITING is written there before it is answered), and paired or expired
 * later.  PREPARED after the rename:
 * U.data is gone and the file at the path has the intent's size: the step is
 * taken as done (PLACED).  PLACED after the commit: adding the dataset says EEXIST,
 * which is success (the path's bytes are this upload's: the rename refuses
 * to replace).  A U.data with no intent (killed inside bfs_upload_begin) is
 * quarantined.  So every byte handed over is registered or quarantined, no
 * dataset is half-registered, and links and events are completed; an event
 * may be written twice (at-least-once, keyed by dataset id).  A staging
 * link that fails after its three tries (stage_link) is never dropped
 * silently: the warning and the event line name the tree and the error,
 * and the intent stays REGISTERED, so the running mount (ingest.staging_retry)
 * and every later mount (at start, then with the same retries) make the
 * missing links (and write the event again) until they succeed, or until
 * the dataset is removed (its file gone and the registry without it:
 * nothing is left to stage).  A replica's sidecar ends with the replica's
 * registration (finish_pair), not with its staging.
 *
 * Test hook: with BFS_INGEST_KILL_AT=<STATE> in the environment the daemon
 * kills itself (SIGKILL) right after entering that state (its intent
 * written, for a state that has one)
 * (tests/unit/test_ingest.c proves the crash story with it).
 *
 * Locks: ing->reg_lock serializes this daemon's registry writes (SQLite has
 * one writer; two threads adding the same RUN must not race).  ing->lock guards the upload list, the queue, every upload's
 * refs/state flags and the stats; it is never held during I/O or a
 * registry call.  A worker owns an upload's steps while it is queued.
 */

#include "writers.h"

#include "camera.h"
#include "durable.h"
#include "fits.h"
#include "hdrsvc.h"
#include "sidecar.h"
#include "clock.h"
#include "fdio.h"
#include "log.h"
#include "retention.h"
#include "strutil.h"
#include "template.h"
#include "transfer.h"
#include "translate.h"
#include "translate_decam.h"
#include "webhook.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TAG "ingest"

enum state { S_OPEN, S_SEALED, S_WAITING, S_PREPARED, S_PLACED, S_REGISTERED, S_QUARANTINED, S_ANNOUNCED, S_DONE };
static const char *const state_names[] = {"OPEN", "SEALED", "WAITING", "PREPARED", "PLACED",
                                          "REGISTERED", "QUARANTINED", "ANNOUNCED", "DONE"};

struct waiter {
    bfs_seal_done_fn done;
    void *ctx;
    struct waiter *next;
};

struct bfs_upload {
    bfs_ingest *ing;
    struct bfs_upload *next;  /* ing->uploads */
    struct bfs_upload *qnext; /* ing->queue */
    int refs;                 /* under ing->lock */
    char u[33];               /* upload id */
    char *run, *dtype, *name; /* dtype NULL: raw, not translated yet */
    bool inbox;               /* written in a RUN's own directory (raw ingest) */
    char *dir;                /* the directory written in, relative to the mount's root, or NULL
                               * (the quarantine's reason file: `butlerfs quarantine retry`) */
    char *shown;              /* under ing->lock: the name after a rename, or NULL (in the intent as "shown") */
    char *shown_old;          /* the one before (a stat snapshot may still point to it) */
    bool writer_open;         /* under ing->lock: an open file for writing holds the slot */
    char *staging_note;       /* the staging links that failed ("TREE: why; ..."), or NULL */
    bool renaming;            /* under ing->lock: bfs_upload_rename is writing its intent */
    char *obs_id, *raft, *sensor; /* a raw's, from its headers (events), or NULL */
    char *raw_headers_id;     /* a raw at a dataId path its headers do not give: theirs, or NULL */
    char checksum[129];       /* BLAKE2b-512 of the bytes as placed ("" before SEALED is done) */
    /* the checksum built while the bytes arrive, by the hasher thread
     * (under ing->lock, except hash itself: the hasher's while hashing,
     * then the stepping thread's once hash_taken) */
    bfs_checksum *hash;       /* of bytes [0, hashed), or NULL */
    off_t hashed;
    off_t hash_claim;         /* end of the range being read: a write below it breaks the hash */
    bool hash_broken;         /* a write or truncate behind the hasher: recomputed at SEALED */
    bool hash_queued, hashing, hash_taken;
    struct bfs_upload *hnext; /* ing->hhead */
    bool rewritten;           /* stepping thread: the Header Service merge replaced the bytes */
    /* replica ingest (written in BFS_REPLICA_DIR) */
    bool replica;
    bool waiting;             /* under ing->lock: WAITING for its partner (the sidecar, or the file) */
    bool held;                /* under ing->lock: a sidecar taken by its file's steps */
    bool expired;             /* under ing->lock: its partner never came; quarantine it */
    double waiting_since;     /* Unix seconds */
    char pair[33];            /* a replica: its sidecar's upload id, once paired ("" before) */
    char *formatter;          /* a replica: its sidecar's formatter, or NULL */
    /* a DECam raw: one dataset per CCD, all of this file; dim_values hold the
     * first, more_dets the others (CCDNUMs) */
    int64_t *more_dets;
    int n_more;
    char *hs_note;            /* what the Header Service merge did (events), or NULL */
    char *corrections;        /* the header corrections file applied (events), or NULL */
    char *dim_names[BFS_MAX_DIMS], *dim_values[BFS_MAX_DIMS];
    int ndims;
    uid_t uid;
    int fd;                   /* U.data (follows it when it moves); -1 when recovered without one */
    char *data_path, *intent_path;
    off_t size;
    int64_t mtime_ns;
    /* under ing->lock: */
    bool written;             /* since the last seal */
    bool written_ever;
    int write_err;            /* a write or truncate that failed (ENOSPC, EIO): the bytes are not whole */
    int killed_by;            /* the signal that killed the writer before it closed the file (the
                               * kernel's FLUSH as it exited): the bytes may not be whole */
    bool busy;                /* queued or being stepped by a worker */
    bool finished;            /* a seal's outcome is known */
    int outcome;
    double finished_at;       /* monotonic seconds */
    double sealed_at;         /* monotonic seconds of the first seal; 0 after a restart */
    struct waiter *waiters;
    /* owned by the stepping thread: */
    enum state st;
    char dataset_id[33];
    char *rel;                /* datastore path, relative to the root */
    char *reason;
    int err;                  /* with QUARANTINED */
    char stage_day[16];       /* the staging trees' <YYYY-MM-DD>, fixed when registered ("" before) */
    /* under ing->lock: a staging link failed; purge_locked queues the
     * REGISTERED step again at restage_at (monotonic s, 0: not due) */
    double restage_at;
    int restage_tries;
    bool restaging;
    bool duplicate;
    bool refused;             /* refused at create, no bytes taken (refuse_create): its event only */
    bool discarded;           /* under ing->lock: removed before any byte (bfs_upload_discard): no name */
};

/* Append u to the queue head..tail linked through u->next (the worker and
 * the hasher queues), under ing->lock. */
#define QUEUE_PUSH(head, tail, u, next)                                                                      \
    do {                                                                                                     \
        (u)->next = NULL;                                                                                    \
        if (tail)                                                                                            \
            (tail)->next = (u);                                                                              \
        else                                                                                                 \
            (head) = (u);                                                                                    \
        (tail) = (u);                                                                                        \
    } while (0)

struct bfs_ingest {
    char *repo, *root, *dir, *spool, *quarantine, *events;
    bfs_registry *reg;
    const bfs_ingest_config *cfg;
    struct bfs_transfer *transfer; /* NULL: no transfer: section */
    bfs_webhook *webhook;          /* NULL: no ingest.webhook */
    struct bfs_http *http;         /* borrowed: webhook POSTs and Header Service GETs, or NULL */
    int lock_fd, spool_fd;
    mode_t placed_mode;        /* of a file placed in the datastore (placed_mode_of) */
    char *reserve;             /* REPO/.butlerfs/reserve: space held back for intents and quarantines */
    const char *kill_at;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_mutex_t reg_lock;  /* one registry write at a time (SQLite has one writer) */
    struct bfs_upload *uploads, *qhead, *qtail;
    pthread_t *workers;
    int nworkers;
    struct bfs_upload *hhead, *htail; /* uploads with bytes not hashed yet */
    pthread_cond_t hwake, hdone;      /* the hasher has work; it put an upload down */
    pthread_t hasher;
    bool hasher_running;
    pthread_mutex_t pair_lock; /* one pairing decision at a time (a partner found, or WAITING) */
    /* under lock: when the wait for each recent OBSID's Header Service
     * document ends (hs_wait_for); the oldest entry is reused */
    struct hs_wait {
        char obsid[80];
        double until; /* monotonic seconds */
    } hs_waits[64];
    int hs_next;
    bool stop;
    bfs_ingest_stats stats;
};


static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- small file-system helpers -------------------------------------------- */

/* 1 when the two files hold the same bytes (prefix: a's bytes are the
 * first bytes of b), 0 when not, -errno. */
static int same_bytes_as(const char *a, const char *b, bool prefix)
{
    int fa = open(a, O_RDONLY | O_CLOEXEC), fb = open(b, O_RDONLY | O_CLOEXEC);
    int ret = fa < 0 || fb < 0 ? -errno : 1;
    struct stat sa, sb;
    if (ret == 1 && (fstat(fa, &sa) < 0 || fstat(fb, &sb) < 0))
        ret = -errno;
    if (ret == 1 && (prefix ? sa.st_size > sb.st_size : sa.st_size != sb.st_size))
        ret = 0;
    static const size_t chunk = 1 << 16;
    char *x = ret == 1 ? malloc(2 * chunk) : NULL;
    if (ret == 1 && !x)
        ret = -ENOMEM;
    for (off_t left = ret == 1 ? sa.st_size : 0; ret == 1 && left > 0;) {
        size_t want = left < (off_t)chunk ? (size_t)left : chunk;
        ssize_t na = pread(fa, x, want, sa.st_size - left);
        ssize_t nb = pread(fb, x + chunk, want, sa.st_size - left);
        if (na < 0 || nb < 0)
            ret = -EIO;
        else if (na != (ssize_t)want || nb != (ssize_t)want || memcmp(x, x + chunk, want) != 0)
            ret = 0; /* shorter than fstat said: changed under us */
        left -= (off_t)want;
    }
    free(x);
    if (fa >= 0)
        close(fa);
    if (fb >= 0)
        close(fb);
    return ret;
}

static int same_bytes(const char *a, const char *b) { return same_bytes_as(a, b, false); }

/* ---- intent records ------------------------------------------------------- */

static json_t *strings_json(char *const *v, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static json_t *ints_json(const int64_t *v, int n)
{
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++)
        json_array_append_new(a, json_integer((json_int_t)v[i]));
    return a;
}

/* ---- the space reserve ----------------------------------------------------------
 *
 * On a full disk the intent that leads a refused upload into quarantine, and
 * the quarantine's reason file, need a few blocks that a writer may just have
 * taken.  REPO/.butlerfs/reserve keeps RESERVE_BYTES allocated (on the
 * spool's file system); a
 * durable write that fails with ENOSPC frees it and tries once more, and the
 * reserve is made again once space allows (at mount and after each upload). */

enum { RESERVE_BYTES = 1 << 20 };

static void reserve_make(bfs_ingest *ing)
{
    struct stat sb;
    if (!ing->reserve || stat(ing->reserve, &sb) == 0)
        return;
    int fd = open(ing->reserve, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    int err = posix_fallocate(fd, 0, RESERVE_BYTES);
    close(fd);
    if (err)
        unlink(ing->reserve); /* no room yet: the next try */
}

/* A durable write of text to path, the reserve spent when the disk is full. */
static int durable_write_reserved(bfs_ingest *ing, const char *path, const char *text)
{
    int ret = bfs_durable_write(path, text, strlen(text));
    if (ret == -ENOSPC && ing->reserve && unlink(ing->reserve) == 0) {
        bfs_warn(TAG, "the disk of %s is full: the space reserve is spent on recording what happened",
                 ing->spool);
        ret = bfs_durable_write(path, text, strlen(text));
    }
    return ret;
}

/* The test hook (see the top of this file): SIGKILL once u is in the
 * state BFS_INGEST_KILL_AT names, its intent written if the state has one. */
static void kill_hook(const bfs_ingest *ing, const struct bfs_upload *u)
{
    if (ing->kill_at && !strcmp(ing->kill_at, state_names[u->st]))
        raise(SIGKILL);
}

static int write_intent(bfs_ingest *ing, struct bfs_upload *u)
{
    /* the name shown is the renamer's to change (bfs_upload_rename) */
    pthread_mutex_lock(&ing->lock);
    char *shown = u->shown ? strdup(u->shown) : NULL;
    bool oom = u->shown && !shown;
    pthread_mutex_unlock(&ing->lock);
    if (oom)
        return -ENOMEM;
    json_t *j = json_pack("{s:s, s:s, s:s?, s:s?, s:b, s:s?, s:s?, s:s?, s:s, s:s?, s:s?, s:o, s:o, s:I, s:s?, s:s?, s:I, "
                          "s:s?, s:i, s:b, s:b, s:s?, s:f, s:s?, s:o, s:i}",
                          "state", state_names[u->st], "run", u->run, "dataset_type", u->dtype,
                          "checksum", u->checksum[0] ? u->checksum : NULL, "inbox", u->inbox, "obs_id", u->obs_id, "raft", u->raft, "sensor", u->sensor,
                          "name", u->name, "shown", shown, "dir", u->dir, "dim_names", strings_json(u->dim_names, u->ndims),
                          "dim_values", strings_json(u->dim_values, u->ndims), "uid", (json_int_t)u->uid,
                          "dataset_id", u->dataset_id[0] ? u->dataset_id : NULL, "path", u->rel,
                          "size", (json_int_t)u->size, "reason", u->reason, "errno", u->err,
                          "duplicate", u->duplicate, "replica", u->replica, "pair", u->pair[0] ? u->pair : NULL,
                          "waiting_since", u->waiting_since, "formatter", u->formatter,
                          "more_detectors", ints_json(u->more_dets, u->n_more), "write_errno", u->write_err);
    if (j && u->killed_by)
        json_object_set_new(j, "killed_by", json_integer(u->killed_by));
    if (j && u->stage_day[0])
        json_object_set_new(j, "stage_day", json_string(u->stage_day));
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    free(shown);
    if (!text)
        return -ENOMEM;
    int ret = durable_write_reserved(ing, u->intent_path, text);
    free(text);
    if (ret == 0)
        kill_hook(ing, u);
    return ret;
}

/* Whether entering state s writes the intent.  PLACED and ANNOUNCED do
 * not: recovery from the state before them finds their side effect done
 * (PREPARED: the spool file gone and the file at its path; REGISTERED or
 * QUARANTINED: links, quarantine move and event are idempotent), so each
 * would cost three syncs on every file and buy nothing. */
static bool durable_state(enum state s)
{
    return s != S_PLACED && s != S_ANNOUNCED;
}

static char *json_str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? strdup(s) : NULL;
}

/* ---- uploads -------------------------------------------------------------- */

static void upload_free(struct bfs_upload *u)
{
    if (!u)
        return;
    if (u->fd >= 0)
        close(u->fd);
    free(u->run);
    free(u->dtype);
    free(u->name);
    free(u->dir);
    free(u->shown);
    free(u->shown_old);
    free(u->obs_id);
    free(u->raft);
    free(u->sensor);
    free(u->hs_note);
    free(u->staging_note);
    free(u->corrections);
    free(u->raw_headers_id);
    for (int i = 0; i < u->ndims; i++) {
        free(u->dim_names[i]);
        free(u->dim_values[i]);
    }
    free(u->data_path);
    free(u->intent_path);
    free(u->rel);
    free(u->reason);
    bfs_checksum_free(u->hash);
    free(u->formatter);
    free(u->more_dets);
    free(u);
}

static struct bfs_upload *upload_new(bfs_ingest *ing, const char *uid_hex)
{
    struct bfs_upload *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    u->ing = ing;
    u->fd = -1;
    snprintf(u->u, sizeof u->u, "%s", uid_hex);
    u->data_path = bfs_asprintf("%s/%s.data", ing->spool, u->u);
    u->intent_path = bfs_asprintf("%s/%s.intent", ing->spool, u->u);
    if (!u->data_path || !u->intent_path) {
        upload_free(u);
        return NULL;
    }
    return u;
}

/* msg (from fits.h, which names the file it read) without u's spool path:
 * a reason outlives that name (the bytes move to quarantine), and the
 * reason, log and event name the upload already.  NULL stays NULL. */
static const char *without_spool_path(const struct bfs_upload *u, const char *msg)
{
    size_t n = strlen(u->data_path);
    return msg && !strncmp(msg, u->data_path, n) && msg[n] == ':' && msg[n + 1] == ' ' ? msg + n + 2 : msg;
}

static void quarantine_as(struct bfs_upload *u, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void quarantine_as(struct bfs_upload *u, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bfs_set_errmsgv(&u->reason, fmt, ap);
    va_end(ap);
    u->err = err;
    u->st = S_QUARANTINED;
}

/* The extension a written name gives its dataset ("x.fits.fz" -> ".fits.fz";
 * none -> ""), ignoring a leading '.' and the random suffix of rsync's
 * temporary names (".x.fits.Ab3dE9" -> ".fits"), since rsync renames its
 * file only after the close that ingested it. */
static void extension_of(const char *name, char *out, size_t n)
{
    bool hidden = name[0] == '.';
    const char *base = hidden ? name + 1 : name;
    size_t len = strlen(base);
    const char *last = strrchr(base, '.');
    if (hidden && last && last != base && strlen(last + 1) == 6) {
        bool random = true;
        for (const char *c = last + 1; *c; c++)
            random &= (*c >= '0' && *c <= '9') || (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z');
        if (random)
            len = (size_t)(last - base);
    }
    const char *dot = memchr(base, '.', len);
    size_t elen = dot ? len - (size_t)(dot - base) : 0;
    if (elen >= n)
        elen = 0; /* an absurdly long "extension" is none */
    memcpy(out, dot ? dot : "", elen);
    out[elen] = 0;
}

/* The datastore path of a path-ingested dataset, relative to the root:
 * <run>/<type>/<value>/.../<type>_<value>_..._<run with '/' as '_'><ext>.
 * -EINVAL when a value could leave its directory. */
/* Values a file template can name (template.h), gathered for one upload. */
struct tvals {
    bfs_template_value v[40];
    char text[40][96];
    size_t n;
};

static void tv_add(struct tvals *t, const char *name, const char *value)
{
    if (t->n >= sizeof t->v / sizeof *t->v || !value)
        return;
    snprintf(t->text[t->n], sizeof t->text[t->n], "%s", value);
    t->v[t->n] = (bfs_template_value){name, t->text[t->n]};
    t->n++;
}

static const char *tv_get(const struct tvals *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->v[i].name, name))
            return t->v[i].value;
    return NULL;
}

/* A path-ingested dataset's implied values and record attributes, read
 * from the registry as daf_butler's expanded dataId would carry them. */
static void tv_from_registry(bfs_ingest *ing, struct tvals *t)
{
    const char *instrument = tv_get(t, "instrument");
    char buf[96];
    if (!instrument)
        return;
    static const struct {
        const char *element, *column, *as_record, *as_implied;
    } reads[] = {
        {"exposure", "obs_id", "exposure.obs_id", NULL},
        {"exposure", "group", "exposure.group", "group"},
        {"exposure", "day_obs", "exposure.day_obs", "day_obs"},
        {"exposure", "physical_filter", "exposure.physical_filter", "physical_filter"},
        {"visit", "day_obs", "visit.day_obs", "day_obs"},
        {"visit", "physical_filter", "visit.physical_filter", "physical_filter"},
        {"detector", "full_name", "detector.full_name", NULL},
    };
    for (size_t i = 0; i < sizeof reads / sizeof *reads; i++) {
        const char *key = tv_get(t, reads[i].element);
        if (!key || bfs_registry_record_text(ing->reg, reads[i].element, instrument, key, reads[i].column,
                                             buf, sizeof buf) < 0)
            continue;
        tv_add(t, reads[i].as_record, buf);
        if (reads[i].as_implied && !tv_get(t, reads[i].as_implied))
            tv_add(t, reads[i].as_implied, buf);
    }
    const char *pf = tv_get(t, "physical_filter");
    if (pf && !tv_get(t, "band") &&
        bfs_registry_record_text(ing->reg, "physical_filter", instrument, pf, "band", buf, sizeof buf) == 0)
        tv_add(t, "band", buf);
}

/* Whether every dimension of u shows in path (its value, or an attribute of
 * its record): two datasets must never share a path. */
static bool path_is_unique(const struct bfs_upload *u, const struct tvals *t, const char *path)
{
    for (int i = 0; i < u->ndims; i++) {
        if (!strcmp(u->dim_names[i], "instrument") || strstr(path, u->dim_values[i]))
            continue;
        bool shown = false;
        size_t len = strlen(u->dim_names[i]);
        for (size_t k = 0; k < t->n && !shown; k++)
            shown = !strncmp(t->v[k].name, u->dim_names[i], len) && t->v[k].name[len] == '.' &&
                    strstr(path, t->v[k].value);
        if (!shown)
            return false;
    }
    return true;
}

/* The datastore path of u (relative to the root, with the written name's
 * extension): the repository's file template (template.h), with the values
 * of t (NULL: the dataId and what the registry's records add).  A template
 * that would not tell two datasets apart falls back to
 * <run>/<type>/<value>/.../<type>_<value>_..._<run>, which always does. */
static int decide_path(bfs_ingest *ing, struct bfs_upload *u, struct tvals *t)
{
    for (int i = 0; i < u->ndims; i++) {
        if (!bfs_is_one_component(u->dim_values[i])) {
            quarantine_as(u, EINVAL, "the %s value '%s' cannot be part of a file name", u->dim_names[i],
                          u->dim_values[i]);
            return -EINVAL;
        }
    }
    struct tvals own;
    if (!t) {
        own.n = 0;
        for (int i = 0; i < u->ndims; i++)
            tv_add(&own, u->dim_names[i], u->dim_values[i]);
        tv_from_registry(ing, &own);
        t = &own;
    }
    if (strlen(u->dataset_id) == 32) {
        const char *h = u->dataset_id;
        char uuid[40]; /* as Python's str(uuid.UUID) */
        snprintf(uuid, sizeof uuid, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
        tv_add(t, "id", uuid);
    }
    char ext[64];
    extension_of(u->name, ext, sizeof ext);
    char *tmpl = NULL, *path = NULL, *msg = NULL;
    /* the storage class picks a template when the type has none of its own */
    const bfs_dataset_type *dt = bfs_catalog_dataset_type(bfs_registry_catalog(ing->reg), u->dtype);
    const char *sc = dt ? dt->storage_class : t != &own ? "Exposure" : NULL; /* a raw's type may be new */
    int ret = bfs_template_for(ing->repo, u->dtype, sc, &tmpl, &msg);
    if (ret == 0)
        ret = bfs_template_format(tmpl, u->dtype, u->run, t->v, t->n, &path, &msg);
    if (ret == 0 && !path_is_unique(u, t, path)) {
        bfs_info(TAG, "the file template %s does not name every dimension of %s; using butlerfs's layout",
                 tmpl, u->dtype);
        ret = -EINVAL;
    }
    if (ret < 0 && ret != -ENOMEM) {
        free(path);
        path = NULL;
        size_t cap = 4096;
        char *p = malloc(cap), *flat = strdup(u->run);
        if (p && flat) {
            for (char *c = flat; *c; c++)
                if (*c == '/')
                    *c = '_';
            size_t len = (size_t)snprintf(p, cap, "%s/%s", u->run, u->dtype);
            for (int i = 0; i < u->ndims && len < cap; i++)
                len += (size_t)snprintf(p + len, cap - len, "/%s", u->dim_values[i]);
            if (len < cap)
                len += (size_t)snprintf(p + len, cap - len, "/%s", u->dtype);
            for (int i = 0; i < u->ndims && len < cap; i++)
                len += (size_t)snprintf(p + len, cap - len, "_%s", u->dim_values[i]);
            if (len < cap)
                len += (size_t)snprintf(p + len, cap - len, "_%s", flat);
            ret = len < cap ? 0 : -ENAMETOOLONG;
        } else {
            ret = -ENOMEM;
        }
        if (ret == 0) {
            path = p;
            p = NULL;
        }
        free(p);
        free(flat);
    }
    free(tmpl);
    free(msg);
    char *rel = ret == 0 ? bfs_asprintf("%s%s", path, ext) : NULL;
    free(path);
    if (ret == 0 && !rel)
        ret = -ENOMEM;
    if (ret == -ENAMETOOLONG || (ret == 0 && strlen(rel) > PATH_MAX - 256)) {
        free(rel);
        quarantine_as(u, ENAMETOOLONG, "the datastore path of this dataset would be too long");
        return -ENAMETOOLONG;
    }
    if (ret < 0)
        return ret;
    free(u->rel);
    u->rel = rel;
    return 0;
}

/* The value of dimension dim in a dataId of n names and values, or NULL. */
static const char *dim_value(const char *const *names, const char *const *values, int n, const char *dim)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], dim))
            return values[i];
    return NULL;
}

/* The instrument of u's dataId (owned by u), or NULL when it has none: the
 * event's instrument field and the transfer rules' (instruments:). */
static const char *upload_instrument(const struct bfs_upload *u)
{
    return dim_value((const char *const *)u->dim_names, (const char *const *)u->dim_values, u->ndims,
                     "instrument");
}

/* Whether u's name says FITS: .fits, .fit, .fits.fz, .fits.gz, .fz. */
static bool named_fits(const struct bfs_upload *u)
{
    char ext[64];
    extension_of(u->name, ext, sizeof ext);
    return bfs_startswith(ext, ".fits") || bfs_startswith(ext, ".fit") || !strcmp(ext, ".fz");
}

/* The formatter recorded with an ingested file: a raw's camera's raw
 * formatter (written in the RUN's directory, or a FITS file at its dataId
 * path), else by the file's extension. */
static const char *formatter_of(const struct bfs_upload *u)
{
    if (u->formatter)
        return u->formatter;
    /* a raw at its dataId path was translated when it is FITS (is_translated_raw_path);
     * other bytes there (a benchmark's payload) are stored as they are */
    if (u->dtype && !strcmp(u->dtype, "raw") && u->ndims > 0 && (u->inbox || named_fits(u))) {
        const bfs_camera *cam = bfs_camera_find(u->dim_values[0]);
        if (cam)
            return bfs_camera_raw_formatter(cam);
        if (!strcmp(u->dim_values[0], BFS_DECAM_INSTRUMENT))
            return "lsst.obs.decam.rawFormatter.DarkEnergyCameraRawFormatter";
    }
    if (u->inbox && u->dtype && !strcmp(u->dtype, "guider_raw"))
        return "lsst.obs.base.formatters.fitsGeneric.FitsGenericFormatter"; /* as ingest_guider */
    const char *ext = strrchr(u->rel, '.');
    if (ext && (!strcmp(ext, ".fits") || !strcmp(ext, ".fz") || !strcmp(ext, ".fit")))
        return "lsst.obs.base.formatters.fitsExposure.FitsExposureFormatter";
    if (ext && (!strcmp(ext, ".parq") || !strcmp(ext, ".parquet")))
        return "lsst.daf.butler.formatters.parquet.ParquetFormatter";
    if (ext && !strcmp(ext, ".json"))
        return "lsst.daf.butler.formatters.json.JsonFormatter";
    if (ext && (!strcmp(ext, ".yaml") || !strcmp(ext, ".yml")))
        return "lsst.daf.butler.formatters.yaml.YamlFormatter";
    return "lsst.daf.butler.formatters.file.FileFormatter";
}

/* u's outcome as one event line (events file and webhook); quarantined:
 * where its bytes went, or NULL (not quarantined, or moved before a
 * restart). */
static void append_event(bfs_ingest *ing, struct bfs_upload *u, const char *quarantined)
{
    json_t *id = json_object();
    for (int i = 0; i < u->ndims; i++)
        json_object_set_new(id, u->dim_names[i], json_string(u->dim_values[i]));
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    bool ok = u->err == 0;
    const char *errname = ok ? NULL : strerrorname_np(u->err);
    const char *outcome = ok ? (u->duplicate ? "duplicate" : "ingested") : u->refused ? "refused" : "quarantined";
    const char *instrument = upload_instrument(u);
    char *description = ok ? bfs_asprintf("%s %s as %s%s", outcome, u->name, u->rel,
                                          u->staging_note ? "; a staging link failed" : "")
                           : bfs_asprintf("%s: %s", outcome, u->reason ? u->reason : "?");
    /* latency from the writer's close; unknown for an upload finished after a restart */
    json_t *latency = u->sealed_at > 0 ? json_integer((json_int_t)((bfs_mono_s() - u->sealed_at) * 1000.0))
                                       : json_null();
    json_t *j = json_pack("{s:s, s:i, s:s?, s:s, s:s, s:s?, s:s?, s:s?, s:s?, s:s?, s:o, s:O, s:s?, s:s?, "
                          "s:s, s:s?, s:s?, s:o}",
                          "time", when, "status", ok ? 0 : 1, "description", description, "outcome", outcome,
                          "run", u->run, "dataset_type", u->dtype, "instrument", instrument,
                          "obs_id", u->obs_id, "raft", u->raft, "sensor", u->sensor, "dataId", id,
                          "data_id", id, "dataset_id", ok && u->dataset_id[0] ? u->dataset_id : NULL,
                          "path", ok ? u->rel : NULL, "name", u->name,
                          "errno", ok ? NULL : (errname ? errname : "?"), "upload", u->u[0] ? u->u : NULL, /* none: refused at create */
                          "latency_ms", latency);
    if (j && u->hs_note)
        json_object_set_new(j, "header_service", json_string(u->hs_note));
    if (j && u->corrections)
        json_object_set_new(j, "header_corrections", json_string(u->corrections));
    if (j && u->staging_note)
        json_object_set_new(j, "staging", json_sprintf("not staged: %s", u->staging_note));
    if (j && u->n_more)
        json_object_set_new(j, "datasets", json_integer(1 + u->n_more)); /* one per CCD, one file */
    if (j && quarantined)
        json_object_set_new(j, "quarantined", json_string(quarantined)); /* where the bytes are */
    free(description);
    char *line = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    int fd = line ? open(ing->events, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600) : -1;
    if (fd < 0 && line && errno == ENOENT && bfs_make_parents(ing->events, false) == 0) {
        /* its directory was removed under the mount (a clean-up): made
         * again, as at mount time, rather than losing the line */
        bfs_warn(TAG, "the directory of %s was gone; made again", ing->events);
        fd = open(ing->events, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    }
    if (line)
        bfs_webhook_post(ing->webhook, line);
    if (fd >= 0) {
        size_t len = strlen(line);
        line[len] = '\n'; /* json_dumps leaves room: the NUL */
        if (write(fd, line, len + 1) != (ssize_t)len + 1 || fdatasync(fd) < 0)
            bfs_warn(TAG, "cannot append to %s: %s", ing->events, strerror(errno));
        close(fd);
    } else {
        bfs_warn(TAG, "cannot write an event to %s: %s", ing->events, strerror(errno));
    }
    free(line);
}

/* ---- the steps -------------------------------------------------------------- */

/* Whether u is validated as FITS: its bytes begin as FITS does, or are
 * gzip (written where a raw goes, or named FITS), or its name says FITS
 * (bytes that are not then fail the validation rather than being stored
 * unchecked under a FITS name). */
static bool is_fits(const struct bfs_upload *u)
{
    unsigned char magic[9] = {0};
    if (pread(u->fd, magic, 9, 0) == 9 && !memcmp(magic, "SIMPLE  =", 9))
        return true;
    if (magic[0] == 0x1f && magic[1] == 0x8b && u->inbox)
        return true;
    return named_fits(u);
}

/* Run fn(ing, ctx) under the registry lock, again while the database is
 * busy, until the configured deadline: -EIO after it (the upload keeps its
 * state and is finished at the next mount). */
static int with_registry(bfs_ingest *ing, int (*fn)(bfs_ingest *, void *), void *ctx)
{
    double deadline = bfs_mono_s() + ing->cfg->registry_deadline_ms / 1000.0;
    for (;;) {
        pthread_mutex_lock(&ing->reg_lock);
        int ret = fn(ing, ctx);
        pthread_mutex_unlock(&ing->reg_lock);
        if (ret != -EBUSY && ret != -EAGAIN)
            return ret;
        if (bfs_mono_s() > deadline)
            return -EIO;
        usleep(50000);
    }
}

struct raw_records {
    const bfs_raw_translation *t;
    const bfs_decam_file *decam; /* a DECam raw: the repository must hold its records */
    char band[64];               /* ... and gives the filter's band here */
    char *why;                   /* set when a record refuses the file */
};

/* In one transaction: the raw dataset type, the camera when the repository
 * has no such instrument yet, and the exposure record.  A detector or filter
 * the repository's own instrument lacks is refused (the repository's records
 * are the camera's truth once it has them). */
static int raw_records_tx(bfs_ingest *ing, void *ctx)
{
    struct raw_records *rr = ctx;
    const bfs_raw_translation *t = rr->t;
    bfs_registry *reg = ing->reg;
    char key[32];
    int ret = bfs_registry_begin(reg);
    if (ret)
        return ret;
    /* The dataset type first: making it makes its tag table, whose foreign
     * keys lock the record tables against writes (PostgreSQL), so it must
     * come before this transaction writes records another mount's
     * transaction may be waiting for (else the two deadlock). */
    static const char *const raw_dims[] = {"instrument", "detector", "exposure"};
    ret = bfs_registry_add_dataset_type(reg, "raw", "Exposure", raw_dims, 3, false);
    if (ret == -EEXIST)
        rr->why = bfs_asprintf("the repository's dataset type raw has other dimensions or another "
                               "storage class than instrument, detector, exposure and Exposure");
    int have = ret ? 0 : rr->decam ? 1 : bfs_registry_has_record(reg, "instrument", NULL, t->instrument);
    if (ret) {
        /* refused above */
    } else if (rr->decam) {
        /* butlerfs has no DECam description: the repository's records or nothing */
        char *msg = NULL;
        ret = bfs_decam_check_repository(reg, rr->decam, rr->band, sizeof rr->band, &msg);
        if (ret == -ENOENT)
            rr->why = msg ? msg : strdup("the repository lacks DECam's records");
        else
            free(msg);
    } else if (have == 0) {
        ret = bfs_camera_register(reg, t->camera);
        if (ret == 0)
            bfs_info(TAG, "registered instrument %s (detectors and filters) from butlerfs's own camera "
                          "description", t->instrument);
    } else if (have < 0) {
        ret = have;
    }
    snprintf(key, sizeof key, "%lld", (long long)t->detector);
    if (ret == 0 && !rr->decam && (have = bfs_registry_has_record(reg, "detector", t->instrument, key)) <= 0) {
        ret = have < 0 ? have : -ENOENT;
        if (have == 0)
            rr->why = bfs_asprintf("the repository's %s has no detector %s", t->instrument, key);
    }
    const char *filter = t->exposure.physical_filter;
    if (ret == 0 && !rr->decam &&
        (have = bfs_registry_has_record(reg, "physical_filter", t->instrument, filter)) <= 0) {
        ret = have < 0 ? have : -ENOENT;
        if (have == 0)
            rr->why = bfs_asprintf("the repository's %s has no physical filter '%s'", t->instrument, filter);
    }
    if (ret == 0) {
        ret = bfs_registry_add_exposure(reg, &t->exposure);
        if (ret == -EEXIST)
            rr->why = bfs_asprintf("the repository's record of %s exposure %lld differs from this file's "
                                   "headers%s%s", t->instrument, (long long)t->exposure_id,
                                   *bfs_registry_conflict() ? " in: " : "", bfs_registry_conflict());
    }
    if (ret == 0)
        ret = bfs_registry_commit(reg);
    else
        bfs_registry_rollback(reg);
    return ret;
}

/* The Header Service document of u's OBSID merged into the spool file
 * (hdrsvc.h), waiting up to ingest.header_service.wait for it; then the
 * primary header read again (*cards) so the translation sees the merged
 * cards.  A document that does not arrive in time, or that cannot be
 * merged, does not stop the ingest: the file is stored as written, and the
 * log and the event say so (u->hs_note).  The merge replaces the spool file
 * by rename, so u->fd is reopened.  It is idempotent: a crash after it
 * and the step run again at the next mount change nothing more.  Negative
 * errno only for what must stop the step (memory, the spool file gone). */
/* How long a raw of obsid may still wait for its Header Service document,
 * in ms.  Every raw of one image waits for the same document, so the wait
 * runs from the first one's arrival: the 189 sensors of an exposure whose
 * document never comes take one wait in all, not one each behind the
 * workers (later ones look once, with no wait). */
static int64_t hs_wait_for(bfs_ingest *ing, const char *obsid)
{
    double now = bfs_mono_s(), wait = ing->cfg->hs_wait_ms / 1000.0;
    size_t k = sizeof ing->hs_waits / sizeof ing->hs_waits[0];
    pthread_mutex_lock(&ing->lock);
    struct hs_wait *w = NULL;
    for (size_t i = 0; i < k && !w; i++)
        if (!strcmp(ing->hs_waits[i].obsid, obsid))
            w = &ing->hs_waits[i];
    if (!w) {
        w = &ing->hs_waits[ing->hs_next];
        ing->hs_next = (ing->hs_next + 1) % (int)k;
        snprintf(w->obsid, sizeof w->obsid, "%s", obsid);
        w->until = now + wait;
    }
    double left = w->until - now;
    pthread_mutex_unlock(&ing->lock);
    return left > 0 ? (int64_t)(left * 1000) : 0;
}

static int merge_header_service(bfs_ingest *ing, struct bfs_upload *u, bfs_fits_card **cards, size_t *n)
{
    const bfs_fits_card *o = bfs_fits_find(*cards, *n, "OBSID");
    const bfs_fits_card *rb = bfs_fits_find(*cards, *n, "RAFTBAY"), *cs = bfs_fits_find(*cards, *n, "CCDSLOT");
    char sensor[160] = "";
    if (rb && cs)
        snprintf(sensor, sizeof sensor, "%s%s", rb->value, cs->value);
    free(u->hs_note);
    u->hs_note = NULL;
    if (!o || !o->value[0]) {
        u->hs_note = strdup("not merged: the file has no OBSID");
        return 0;
    }
    char obsid[80], *text = NULL, *msg = NULL;
    snprintf(obsid, sizeof obsid, "%s", o->value);
    size_t len = 0;
    const bfs_ingest_config *c = ing->cfg;
    int64_t wait_ms = hs_wait_for(ing, obsid);
    int ret = bfs_hs_fetch_with(ing->http, c->hs_dir, c->hs_url, obsid, wait_ms, &text, &len, &msg);
    if (ret < 0) {
        u->hs_note = bfs_asprintf("not merged: %s%s", msg ? msg : strerror(-ret),
                                  ret == -ETIMEDOUT && wait_ms < c->hs_wait_ms
                                      ? " (the wait for this image's document began with its first file)"
                                      : "");
        bfs_warn(TAG, "%s (%s in %s) is stored without its Header Service document: %s", obsid, u->name,
                 u->run, msg ? msg : strerror(-ret));
        free(msg);
        return ret == -ENOMEM ? ret : 0;
    }
    bfs_hs_report rep;
    ret = bfs_hs_merge(u->data_path, text, len, sensor[0] ? sensor : NULL, &rep, &msg);
    free(text);
    if (ret < 0) {
        u->hs_note = bfs_asprintf("not merged: %s", msg ? msg : strerror(-ret));
        bfs_warn(TAG, "%s (%s in %s): the Header Service document could not be merged: %s", obsid, u->name,
                 u->run, msg ? msg : strerror(-ret));
        free(msg);
        return ret == -ENOMEM ? ret : 0;
    }
    char summary[512];
    bfs_hs_report_format(&rep, summary, sizeof summary);
    u->hs_note = bfs_asprintf("merged: %s", summary);
    bfs_info(TAG, "%s: Header Service document merged: %s", obsid, summary);
    for (int i = 0; i < rep.n_listed; i++)
        bfs_note(TAG, "%s: Header Service replaced %s in HDU %d%s%s: '%s' -> '%s'", obsid, rep.conflict[i].keyword,
                 rep.conflict[i].hdu, rep.conflict[i].extname[0] ? " " : "", rep.conflict[i].extname,
                 rep.conflict[i].old_value, rep.conflict[i].new_value);
    if (!rep.rewritten)
        return 0;
    /* the spool file was replaced: follow it, and read the merged header */
    int fd = open(u->data_path, O_RDWR | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) < 0) {
        if (fd >= 0)
            close(fd);
        return -EIO;
    }
    if (u->fd >= 0)
        close(u->fd);
    u->fd = fd;
    u->size = sb.st_size;
    u->rewritten = true;
    bfs_fits_card *merged = NULL;
    size_t m = 0;
    if (bfs_fits_read_header(u->data_path, 1, &merged, &m, &msg) == 0) {
        free(*cards);
        *cards = merged;
        *n = m;
    }
    free(msg);
    return 0;
}

/* The obs_id, raft and sensor u's events name (NULL: none); a failed copy
 * leaves NULL (the event then lacks it). */
static void set_event_names(struct bfs_upload *u, const char *obs_id, const char *raft, const char *sensor)
{
    free(u->obs_id);
    free(u->raft);
    free(u->sensor);
    u->obs_id = obs_id ? strdup(obs_id) : NULL;
    u->raft = raft ? strdup(raft) : NULL;
    u->sensor = sensor ? strdup(sensor) : NULL;
}

/* A dataId as "name=value, ..." (malloc'd), or NULL: in its own order, or
 * in the order of the names (by_name), so that two dataIds compare as texts. */
static char *data_id_text(char *const *names, char *const *values, int n, bool by_name)
{
    int order[BFS_MAX_DIMS];
    for (int i = 0; i < n; i++) {
        int j = i;
        for (; by_name && j > 0 && strcmp(names[order[j - 1]], names[i]) > 0; j--)
            order[j] = order[j - 1];
        order[j] = i;
    }
    char buf[1024];
    buf[0] = '\0';
    for (int i = 0, k = 0; i < n && k >= 0 && (size_t)k < sizeof buf; i++)
        k += snprintf(buf + k, sizeof buf - (size_t)k, "%s%s=%s", i ? ", " : "", names[order[i]], values[order[i]]);
    return strdup(buf);
}

/* u's dataId := names/values (n of them), with the dataset type dtype and
 * the raft and sensor an event names (NULL when none): a raw's, a guider
 * file's.  A raw at its dataId path keeps its own, and the headers' goes to
 * raw_headers_id when it differs.  0 or -ENOMEM. */
static int set_raw_data_id(struct bfs_upload *u, const char *dtype, const char *const *names,
                           const char *const *values, int n, const char *obs_id, const char *raft,
                           const char *sensor)
{
    if (!u->inbox) {
        /* a raw at its dataId path: its place (type and dataId) was fixed at
         * its begin and other threads read it (place_of, same_target), so it
         * is compared, never changed; check_raw_path refuses a difference */
        set_event_names(u, obs_id, raft, sensor);
        char *want = data_id_text(u->dim_names, u->dim_values, u->ndims, true);
        char *got = data_id_text((char *const *)names, (char *const *)values, n, true);
        int ret = want && got ? 0 : -ENOMEM;
        if (ret == 0 && (strcmp(u->dtype, dtype) || strcmp(want, got))) {
            free(u->raw_headers_id);
            u->raw_headers_id = strcmp(u->dtype, dtype) ? bfs_asprintf("%s %s", dtype, got) : strdup(got);
            ret = u->raw_headers_id ? 0 : -ENOMEM;
        }
        free(want);
        free(got);
        return ret;
    }
    free(u->dtype);
    u->dtype = strdup(dtype);
    set_event_names(u, obs_id, raft, sensor);
    for (int i = 0; i < u->ndims; i++) {
        free(u->dim_names[i]);
        free(u->dim_values[i]);
    }
    u->ndims = n;
    int ret = u->dtype ? 0 : -ENOMEM;
    for (int i = 0; i < n; i++) {
        u->dim_names[i] = strdup(names[i]);
        u->dim_values[i] = strdup(values[i]);
        if (!u->dim_names[i] || !u->dim_values[i])
            ret = -ENOMEM;
    }
    return ret;
}

/* ---- guider files (obs_lsst's ingest_guider) --------------------------------
 *
 * A file named like "..SG.._guider.fits" written in a RUN's directory is a
 * guider_raw of an exposure that must already be registered (its raws came
 * first), as obs_lsst's ingest_guider does: only the instrument (INSTRUME),
 * the detector (RAFTBAY/CCDSLOT, which must be a GUIDER detector in the
 * repository) and the observation id (OBSID, the exposure's obs_id) are
 * read; no header fix-up, no exposure record.  The dataset type is
 * {instrument, detector, exposure} of storage class Stamps; it is made when
 * ingest.create_dataset_types allows (ingest_guider's register_dataset_type),
 * else it must exist. */

static bool is_guider_name(const char *name)
{
    const char *g = bfs_endswith(name, "_guider.fits") ? strstr(name, "SG") : NULL;
    return g && g < name + strlen(name) - strlen("_guider.fits");
}

struct guider_check {
    const char *instrument, *obs_id;
    char det[32];
    char exposure[32];  /* out: the exposure's id */
    char *why;
};

static int guider_tx(bfs_ingest *ing, void *ctx)
{
    struct guider_check *g = ctx;
    char purpose[32];
    int ret = bfs_registry_record_text(ing->reg, "detector", g->instrument, g->det, "purpose", purpose,
                                       sizeof purpose);
    if (ret == -ENOENT || (ret == 0 && strcmp(purpose, "GUIDER"))) {
        g->why = bfs_asprintf("detector %s of %s is not a GUIDER detector in the repository", g->det,
                              g->instrument);
        return ret == 0 ? -EINVAL : ret;
    }
    if (ret == 0)
        ret = bfs_registry_record_text(ing->reg, "exposure", g->instrument, g->obs_id, "id", g->exposure,
                                       sizeof g->exposure);
    if (ret == -ENOENT)
        g->why = bfs_asprintf("the repository has no exposure of OBSID %s yet (its raws are ingested "
                              "first)", g->obs_id);
    if (ret == 0 && !bfs_catalog_dataset_type(bfs_registry_catalog(ing->reg), "guider_raw")) {
        static const char *const dims[] = {"instrument", "detector", "exposure"};
        if (!ing->cfg->create_dataset_types) {
            g->why = strdup("the repository has no dataset type guider_raw (made when "
                            "ingest.create_dataset_types is true)");
            return -ENOENT;
        }
        ret = bfs_registry_add_dataset_type(ing->reg, "guider_raw", "Stamps", dims, 3, false);
        if (ret == 0 && bfs_registry_refresh(ing->reg) < 0)
            ret = -EIO;
        if (ret == -EEXIST)
            g->why = strdup("the repository's dataset type guider_raw is defined otherwise");
    }
    return ret;
}

/* SEALED, for a guider file: its dataId; tv gets what its file template
 * may name. */
static int prepare_guider(bfs_ingest *ing, struct bfs_upload *u, const bfs_fits_card *cards, size_t n,
                          struct tvals *tv)
{
    const bfs_fits_card *ins = bfs_fits_find(cards, n, "INSTRUME"), *obs = bfs_fits_find(cards, n, "OBSID");
    const bfs_fits_card *rb = bfs_fits_find(cards, n, "RAFTBAY"), *cs = bfs_fits_find(cards, n, "CCDSLOT");
    const bfs_camera *cam = ins ? bfs_camera_find(ins->value) : NULL;
    int det = cam && rb && cs ? bfs_camera_detector_id(cam, rb->value, cs->value) : -ENOENT;
    if (!cam || det < 0 || !obs || obs->type != 'C' || !bfs_is_one_component(obs->value)) {
        quarantine_as(u, !cam || det < 0 ? ENOENT : EINVAL,
                      "guider ingest: %s", !cam ? "INSTRUME names no camera butlerfs knows"
                                         : det < 0 ? "RAFTBAY/CCDSLOT name no detector of the camera"
                                                   : "OBSID is missing or cannot be a name");
        return 0;
    }
    struct guider_check g = {.instrument = bfs_camera_name(cam), .obs_id = obs->value};
    snprintf(g.det, sizeof g.det, "%d", det);
    int ret = with_registry(ing, guider_tx, &g);
    if (ret == -ENOENT || ret == -EINVAL || ret == -EEXIST) {
        quarantine_as(u, -ret, "guider ingest: %s", g.why ? g.why : strerror(-ret));
        ret = 0;
    } else if (ret == 0) {
        static const char *const names[3] = {"instrument", "detector", "exposure"};
        const char *values[3] = {g.instrument, g.det, g.exposure};
        ret = set_raw_data_id(u, "guider_raw", names, values, 3, obs->value, rb->value, cs->value);
        for (int i = 0; i < 3; i++)
            tv_add(tv, names[i], values[i]);
        tv_from_registry(ing, tv);
    }
    free(g.why);
    return ret;
}

/* What prepare_raw reads of a raw in one pass over its headers: a copy of
 * the primary's cards and the number of amplifier HDUs (translate.h).  The
 * walk stops after the primary when the amplifiers are not counted (a
 * guider file, a DECam raw, ingest.check_amplifiers false). */
struct raw_headers {
    bool count_amps;
    bfs_fits_card *cards;
    size_t n;
    int n_amps;
};

static int raw_headers_cb(void *ctx, int hdu, const bfs_fits_card *cards, size_t n)
{
    struct raw_headers *h = ctx;
    if (hdu > 1) {
        h->n_amps += bfs_translate_is_amp_hdu(cards, n);
        return 0;
    }
    if (!(h->cards = malloc((n ? n : 1) * sizeof *cards)))
        return -ENOMEM;
    memcpy(h->cards, cards, n * sizeof *cards);
    h->n = n;
    return h->count_amps && !bfs_decam_is(cards, n) ? 0 : 1; /* 1: stop here */
}

/* Raw ingest writes the dimension records (day_obs, group, the exposure's
 * columns) of universes 6 and later, as the issue's repositories have. */
#define RAW_MIN_UNIVERSE 6

/* SEALED, for a file written in a RUN's own directory (or a raw at its
 * dataId path, is_translated_raw_path, compared there): its dataId and
 * dimension records from its primary header (writers/translate.c), then on
 * as a dataset of type raw.  A raw of a Rubin camera must carry its
 * detector's amplifier HDUs (unless ingest.check_amplifiers is false): a
 * writer killed after some of them leaves a valid FITS file that would
 * otherwise be registered, and its complete retry refused as a different
 * file under the same dataId.  The records are registered before the file is
 * placed and are idempotent, so a crash between the two, and the step run
 * again at the next mount, leave nothing half-done. */
static int prepare_raw(bfs_ingest *ing, struct bfs_upload *u, struct tvals *tv)
{
    int uv = bfs_registry_universe_version(ing->reg);
    if (uv < RAW_MIN_UNIVERSE) {
        quarantine_as(u, ENOTSUP, "raw ingest writes the dimension records of universe %d and later, and this "
                                  "repository's is %s v%d: ingest its raws with the Python Butler",
                      RAW_MIN_UNIVERSE, bfs_registry_universe_namespace(ing->reg), uv);
        return 0;
    }
    char *msg = NULL;
    struct raw_headers h = {.count_amps = ing->cfg->check_amplifiers && !is_guider_name(u->name)};
    int ret = bfs_fits_each_header(u->data_path, raw_headers_cb, &h, &msg);
    bfs_fits_card *cards = h.cards;
    size_t n = h.n;
    if (ret < 0 || !cards) {
        free(cards);
        if (ret != -ENOMEM)
            quarantine_as(u, EINVAL, "cannot read its headers: %s",
                          msg ? without_spool_path(u, msg) : strerror(ret < 0 ? -ret : EIO));
        free(msg);
        return ret == -ENOMEM ? ret : 0;
    }
    if (is_guider_name(u->name)) {
        ret = prepare_guider(ing, u, cards, n, tv);
        free(cards);
        return ret;
    }
    bool decam = bfs_decam_is(cards, n);
    if (!decam && (ing->cfg->hs_dir || ing->cfg->hs_url)) {
        ret = merge_header_service(ing, u, &cards, &n);
        if (ret < 0) {
            free(cards);
            return ret;
        }
    }
    /* obs_lsst's per-observation correction files, as fix_header applies
     * them: to the header the translation reads, not to the file */
    char *applied = NULL;
    ret = decam ? 0 : bfs_translate_corrections(&cards, &n, (const char *const *)ing->cfg->corrections,
                                                ing->cfg->n_corrections, &applied, &msg);
    if (ret < 0) {
        if (ret != -ENOMEM)
            quarantine_as(u, EINVAL, "raw ingest: header corrections: %s", msg ? msg : strerror(-ret));
        free(msg);
        free(cards);
        return ret == -ENOMEM ? ret : 0;
    }
    if (applied) {
        bfs_info(TAG, "%s: header corrections from %s", u->name, applied);
        free(u->corrections);
        u->corrections = applied;
    }
    /* DECam: one exposure, a dataset per science CCD (translate_decam.h) */
    bfs_decam_file *df = decam ? calloc(1, sizeof *df) : NULL;
    bfs_raw_translation *t = decam ? NULL : malloc(sizeof *t);
    if (decam)
        ret = df ? bfs_decam_read_file(u->data_path, df, &msg) : -ENOMEM;
    else
        ret = t ? bfs_translate_raw(cards, n, u->name, t, &msg) : -ENOMEM;
    const bfs_fits_card *rb = bfs_fits_find(cards, n, "RAFTBAY"), *cs = bfs_fits_find(cards, n, "CCDSLOT");
    /* from here a refusal's event names the image, so an operator can match
     * it with the writer's retry */
    if (ret == 0)
        set_event_names(u, decam ? df->raw.exposure.obs_id : t->exposure.obs_id, rb ? rb->value : NULL,
                        cs ? cs->value : NULL);
    if (ret == 0 && h.count_amps && !decam)
        ret = bfs_translate_check_amplifiers(t, h.n_amps, &msg);
    if (ret < 0 && ret != -ENOMEM)
        quarantine_as(u, -ret, "raw ingest: %s", msg ? msg : strerror(-ret));
    free(msg);
    if (ret < 0) {
        free(cards);
        free(t);
        free(df);
        return ret == -ENOMEM ? ret : 0;
    }
    const bfs_raw_translation *tr = decam ? &df->raw : t;
    struct raw_records rr = {.t = tr, .decam = df};
    ret = with_registry(ing, raw_records_tx, &rr);
    if (ret == -ENOENT || ret == -EEXIST || ret == -EINVAL) {
        quarantine_as(u, -ret, "raw ingest: %s", rr.why ? rr.why : strerror(-ret));
        ret = 0;
    } else if (ret == 0) {
        char det[32], exp[32];
        snprintf(det, sizeof det, "%lld", (long long)tr->detector);
        snprintf(exp, sizeof exp, "%lld", (long long)tr->exposure_id);
        const char *values[3] = {tr->instrument, det, exp};
        static const char *const names[3] = {"instrument", "detector", "exposure"};
        /* what the file template may name: the expanded dataId of a raw */
        const bfs_exposure_record *e = &tr->exposure;
        char day[24];
        snprintf(day, sizeof day, "%lld", (long long)e->day_obs);
        char band[64] = "", full[64] = "";
        if (decam)
            snprintf(band, sizeof band, "%s", rr.band);
        else if (bfs_registry_record_text(ing->reg, "physical_filter", tr->instrument, e->physical_filter, "band",
                                          band, sizeof band) < 0 && bfs_camera_band(tr->camera, e->physical_filter))
            snprintf(band, sizeof band, "%s", bfs_camera_band(tr->camera, e->physical_filter));
        if (bfs_registry_record_text(ing->reg, "detector", tr->instrument, det, "full_name", full, sizeof full) < 0) {
            bfs_detector_record dr;
            for (int i = 0; i < bfs_camera_n_detectors(tr->camera); i++)
                if (bfs_camera_detector(tr->camera, i, &dr) == 0 && dr.id == tr->detector)
                    snprintf(full, sizeof full, "%s", dr.full_name);
        }
        for (int i = 0; i < 3; i++)
            tv_add(tv, names[i], values[i]);
        tv_add(tv, "physical_filter", e->physical_filter);
        tv_add(tv, "band", band[0] ? band : NULL);
        tv_add(tv, "day_obs", day);
        tv_add(tv, "group", e->group);
        tv_add(tv, "exposure.obs_id", e->obs_id);
        tv_add(tv, "exposure.day_obs", day);
        tv_add(tv, "exposure.group", e->group);
        tv_add(tv, "exposure.physical_filter", e->physical_filter);
        tv_add(tv, "detector.full_name", full[0] ? full : NULL);
        ret = set_raw_data_id(u, "raw", names, values, 3, tr->exposure.obs_id, rb ? rb->value : NULL,
                              cs ? cs->value : NULL);
        if (decam && df->n_ccds > 1) {
            /* the other CCDs: datasets of the same file (step_placed) */
            free(u->more_dets);
            u->n_more = 0;
            if (!(u->more_dets = calloc(df->n_ccds - 1, sizeof *u->more_dets)))
                ret = -ENOMEM;
            for (size_t i = 1; u->more_dets && i < df->n_ccds; i++)
                u->more_dets[u->n_more++] = df->ccds[i].detector;
        }
    }
    free(rr.why);
    free(cards);
    free(t);
    if (df) {
        bfs_decam_file_free(df);
        free(df);
    }
    return ret;
}

/* ---- the checksum, built while the bytes arrive -------------------------------
 *
 * The file record's checksum (BLAKE2b-512) would cost a second pass over
 * the bytes at the seal, on the writer's critical path.  Instead one hasher
 * thread follows every upload's bytes as they are written (read back from
 * the spool file, in the page cache), on the core the writer leaves idle;
 * the seal waits for it and hashes only what it had not reached.  A write
 * or truncate behind the hasher (below hash_claim: bytes it may already
 * have read), an error, or a Header Service merge (new bytes) breaks the
 * running hash, and the seal hashes the whole file instead.  Nothing of it
 * is on disk: after a restart the seal hashes the whole file. */

enum { HASH_CHUNK = 4 << 20 };

/* A write or truncate of u just completed: bytes from off on changed
 * (under ing->lock). */
static void hash_note_change_locked(bfs_ingest *ing, struct bfs_upload *u, off_t off)
{
    if (off < u->hash_claim)
        u->hash_broken = true;
    if (u->hash_broken || u->hash_taken || u->hash_queued || u->hashing || u->size <= u->hashed ||
        !ing->hasher_running)
        return;
    u->hash_queued = true;
    u->refs++; /* the hasher's */
    QUEUE_PUSH(ing->hhead, ing->htail, u, hnext);
    pthread_cond_signal(&ing->hwake);
}

/* Hash what u has that the hasher has not (under ing->lock, dropped while
 * reading), reading into buf (the hasher's, reused). */
static void hash_follow_locked(bfs_ingest *ing, struct bfs_upload *u, void *buf, size_t buflen)
{
    u->hashing = true;
    while (!u->hash_broken && !u->hash_taken && !ing->stop && u->hashed < u->size) {
        off_t from = u->hashed, n = u->size - from < HASH_CHUNK ? u->size - from : HASH_CHUNK;
        u->hash_claim = from + n;
        pthread_mutex_unlock(&ing->lock);
        if (!u->hash)
            u->hash = bfs_checksum_new();
        int ret = u->hash ? bfs_checksum_add(u->hash, u->fd, from, n, buf, buflen) : -ENOMEM;
        /* and start writing those bytes out, so the seal's fdatasync
         * finds little left to wait for (a hint: errors are the seal's) */
        (void)sync_file_range(u->fd, from, n, SYNC_FILE_RANGE_WRITE);
        pthread_mutex_lock(&ing->lock);
        if (ret < 0)
            u->hash_broken = true;
        else
            u->hashed = from + n;
        assert(u->hashed <= u->hash_claim);
    }
    u->hashing = false;
    pthread_cond_broadcast(&ing->hdone);
}

static void *hasher_main(void *arg)
{
    bfs_ingest *ing = arg;
    /* one read buffer for the thread's life: a fresh one per read would
     * fault in its pages each time (a third of the hasher's time) */
    size_t buflen = 1 << 20;
    void *buf = malloc(buflen);
    pthread_mutex_lock(&ing->lock);
    while (!ing->stop) {
        struct bfs_upload *u = ing->hhead;
        if (!u) {
            pthread_cond_wait(&ing->hwake, &ing->lock);
            continue;
        }
        ing->hhead = u->hnext;
        if (!ing->hhead)
            ing->htail = NULL;
        u->hash_queued = false;
        hash_follow_locked(ing, u, buf, buf ? buflen : 0);
        pthread_mutex_unlock(&ing->lock);
        bfs_upload_put(u);
        pthread_mutex_lock(&ing->lock);
    }
    pthread_mutex_unlock(&ing->lock);
    free(buf);
    return NULL;
}

/* SEALED: the hasher lets go of u; from now on u->hash is the stepping
 * thread's. */
static void hash_take(bfs_ingest *ing, struct bfs_upload *u)
{
    pthread_mutex_lock(&ing->lock);
    u->hash_taken = true;
    while (u->hashing)
        pthread_cond_wait(&ing->hdone, &ing->lock);
    pthread_mutex_unlock(&ing->lock);
}

/* The checksum of u's bytes as they will be placed, into u->checksum:
 * the running hash finished, or the whole file hashed. */
static int hash_finish(struct bfs_upload *u)
{
    int ret = -EAGAIN;
    if (u->hash && !u->hash_broken && !u->rewritten && u->hashed <= u->size &&
        bfs_checksum_add(u->hash, u->fd, u->hashed, u->size - u->hashed, NULL, 0) == 0)
        ret = bfs_checksum_hex(u->hash, u->checksum);
    bfs_checksum_free(u->hash);
    u->hash = NULL;
    if (ret < 0)
        ret = bfs_file_checksum(u->fd, u->size, u->checksum);
    return ret;
}

/* ---- replica ingest: a file and its sidecar (docs/transfer.md) ---------------
 *
 * A replica (a file from another site) and its sidecar (NAME + ".butler.json":
 * the dataset's ref, size and checksums) are written into BFS_REPLICA_DIR in
 * either order.  The first one sealed goes to WAITING (durable, close() 0);
 * the seal of the second pairs them: the replica's dataId, id and run come
 * from the sidecar (pair_prepare), and the replica goes on as any upload
 * (PREPARED ... ANNOUNCED); its registration finishes the sidecar too
 * (finish_pair, at the end of REGISTERED or, when a staging link failed and
 * the replica waits there for its retries, at once): removed after a
 * registration, quarantined with the replica's reason after a refusal.  The sidecar's writer, when it closed second, gets the pair's
 * outcome.  One nobody pairs within ingest.replica_wait is quarantined.
 * Crash story: WAITING intents are kept by the next mount (and paired then);
 * a replica past WAITING names its sidecar in its intent ("pair"), so its
 * recovery finishes the sidecar as well.  Pairing goes by the name the
 * writer sees: a rename in SEALED or WAITING (rsync's) writes the new name
 * into the intent ("shown") before it is answered (bfs_upload_rename), so
 * a kill -9 leaves the old name (the writer was not told the rename
 * happened) or the new one, never a name the writer does not know. */

/* Whether u is a sidecar, by the name the writer sees now: rsync writes
 * .NAME.butler.json.XXXXXX and renames it after the close (under ing->lock). */
static const char *shown_name(const struct bfs_upload *u);
static bool is_sidecar_locked(const struct bfs_upload *u)
{
    return bfs_endswith(shown_name(u), BFS_SIDECAR_SUFFIX);
}

/* The waiting partner of u, taken (held, one more reference), or NULL
 * (under ing->lock). */
static int step_sealed_tail(bfs_ingest *ing, struct bfs_upload *u, struct tvals *raw_values);
static void step_all(bfs_ingest *ing, struct bfs_upload *u, void (*told)(struct bfs_upload *, int));
static const char *shown_name(const struct bfs_upload *u);
static void enqueue_locked(bfs_ingest *ing, struct bfs_upload *u);
static void purge_locked(bfs_ingest *ing);

/* The waiting partner of u (a replica's sidecar, a sidecar's replica), or
 * NULL (under ing->lock). */
static struct bfs_upload *waiting_partner_locked(bfs_ingest *ing, const struct bfs_upload *u)
{
    for (struct bfs_upload *p = ing->uploads; p; p = p->next) {
        if (p == u || !p->replica || !p->waiting || p->busy || is_sidecar_locked(p) == is_sidecar_locked(u))
            continue;
        const char *sn = shown_name(is_sidecar_locked(u) ? u : p), *dn = shown_name(is_sidecar_locked(u) ? p : u);
        if (strlen(sn) == strlen(dn) + strlen(BFS_SIDECAR_SUFFIX) && !strncmp(sn, dn, strlen(dn)))
            return p;
    }
    return NULL;
}

/* The waiting partner of u, taken (held, one more reference), or NULL
 * (under ing->lock). */
static struct bfs_upload *take_partner_locked(bfs_ingest *ing, const struct bfs_upload *u)
{
    struct bfs_upload *p = waiting_partner_locked(ing, u);
    if (p) {
        p->waiting = false;
        p->held = true;
        p->refs++;
    }
    return p;
}


/* The end of a held sidecar (err 0: its replica was registered). */
static void finish_sidecar(bfs_ingest *ing, struct bfs_upload *side, const struct bfs_upload *data)
{
    if (data->err == 0) {
        unlink(side->data_path);
        side->st = S_ANNOUNCED;
        side->err = 0;
    } else {
        quarantine_as(side, data->err, "its file %s was refused: %s", data->name, data->reason ? data->reason : "?");
    }
}

/* A replica's end (REGISTERED or quarantined): its held sidecar's too. */
static void finish_pair(bfs_ingest *ing, struct bfs_upload *data)
{
    if (!data->pair[0])
        return;
    pthread_mutex_lock(&ing->lock);
    struct bfs_upload *side = NULL;
    for (struct bfs_upload *p = ing->uploads; p && !side; p = p->next)
        if (!strcmp(p->u, data->pair))
            side = p;
    bool mine = side && side->held;
    if (side && !side->held && side->waiting && !side->busy) {
        side->waiting = false; /* recovered WAITING: this replica's, taken now */
        side->held = mine = true;
        side->refs++;
    }
    pthread_mutex_unlock(&ing->lock);
    if (side && !mine)
        return; /* its own seal steps it (it closed second), or it is finished */
    bool temp = !side;
    if (temp) {
        /* not in memory (recovery): its spool files, by id */
        side = upload_new(ing, data->pair);
        if (!side)
            return;
        side->run = strdup(data->run);
        side->name = bfs_asprintf("%s%s", data->name, BFS_SIDECAR_SUFFIX);
        side->replica = side->inbox = true;
        struct stat sb;
        if (!side->run || !side->name || stat(side->intent_path, &sb) < 0) {
            upload_free(side);
            return; /* finished already */
        }
    }
    finish_sidecar(ing, side, data);
    if (write_intent(ing, side) == 0)
        step_all(ing, side, NULL);
    if (temp) {
        upload_free(side);
        return;
    }
    pthread_mutex_lock(&ing->lock);
    side->held = false;
    side->finished = true;
    side->outcome = -data->err;
    side->finished_at = bfs_mono_s();
    pthread_mutex_unlock(&ing->lock);
    bfs_upload_put(side);
}

/* A replica that stopped short of its end lets go of the sidecar it holds.
 * Stopped in REGISTERED (a staging link failed; the retries make it), it is
 * registered, which is all its sidecar was kept for: the sidecar is
 * finished now (finish_pair), as when the sidecar closed second
 * (step_replica); otherwise it lets go of the sidecar (not a refusal: it is
 * finished at the next mount, whose recovery of it finishes its sidecar),
 * which is then as the sidecar closed second is in that case: finished
 * with -EIO for now, so its name leaves the replica directory with the
 * replica's and either can be written and paired again; its spool files
 * stay for that recovery.  By the thread that stepped data. */
static void release_pair(bfs_ingest *ing, struct bfs_upload *data)
{
    if (!data->replica || !data->pair[0] || data->st == S_DONE)
        return;
    if (data->st == S_REGISTERED) {
        finish_pair(ing, data);
        return;
    }
    pthread_mutex_lock(&ing->lock);
    struct bfs_upload *side = NULL;
    for (struct bfs_upload *p = ing->uploads; p && !side; p = p->next)
        if (p->held && !strcmp(p->u, data->pair))
            side = p;
    if (side) {
        side->held = false;
        side->finished = true;
        side->outcome = -EIO;
        side->finished_at = bfs_mono_s();
    }
    pthread_mutex_unlock(&ing->lock);
    if (side)
        bfs_upload_put(side); /* take_partner_locked's reference */
}

/* u is WAITING and its worker lets go of it (under ing->pair_lock and
 * ing->lock): it may be paired from now on, and if its partner went
 * WAITING meanwhile (their seals crossed), it is sealed again to pair. */
static bool settle_waiting_locked(bfs_ingest *ing, struct bfs_upload *u)
{
    u->waiting = true;
    if (waiting_partner_locked(ing, u)) {
        u->waiting = false;
        enqueue_locked(ing, u);
        return false;
    }
    return true;
}

/* The sidecar's bytes, whole (its size is bounded), malloc'd into *out. */
static int read_sidecar(const struct bfs_upload *side, char **out, size_t *len)
{
    if (side->size > BFS_SIDECAR_MAX_BYTES)
        return -E2BIG;
    char *buf = malloc((size_t)side->size + 1);
    ssize_t n = buf ? pread(side->fd, buf, (size_t)side->size, 0) : -1;
    if (n != side->size) {
        free(buf);
        return buf ? -EIO : -ENOMEM;
    }
    buf[n] = '\0';
    *out = buf;
    *len = (size_t)n;
    return 0;
}

static int sums_chunk(void *ctx, const void *data, size_t n)
{
    return bfs_sums_update(ctx, data, n);
}

/* Whether data's bytes have the sidecar's size and checksums; *why says
 * which differs. */
static int check_sums(const struct bfs_upload *data, const bfs_sidecar *sc, char **why)
{
    if (sc->size != data->size) {
        *why = bfs_asprintf("it is %lld bytes, its sidecar says %lld", (long long)data->size, (long long)sc->size);
        return -EBADMSG;
    }
    bfs_sums *sums = bfs_sums_new();
    int ret = sums ? bfs_pread_chunks(data->fd, 0, data->size, NULL, 0, sums_chunk, sums) : -ENOMEM;
    bfs_file_sums got;
    if (ret == 0)
        ret = bfs_sums_final(sums, &got);
    bfs_sums_free(sums);
    if (ret == 0 && sc->adler32[0] && strcmp(sc->adler32, got.adler32)) {
        *why = bfs_asprintf("its adler32 is %s, its sidecar says %s", got.adler32, sc->adler32);
        ret = -EBADMSG;
    } else if (ret == 0 && sc->md5[0] && strcmp(sc->md5, got.md5)) {
        *why = bfs_asprintf("its MD5 is %s, its sidecar says %s", got.md5, sc->md5);
        ret = -EBADMSG;
    }
    return ret;
}

/* The dataset type a sidecar names, made from it when the repository lacks
 * it; *why when it cannot be used. */
static int ensure_sidecar_type(bfs_ingest *ing, const bfs_sidecar *sc, char **why)
{
    const bfs_dataset_type *dt = bfs_catalog_dataset_type(bfs_registry_catalog(ing->reg), sc->dataset_type);
    if (!dt) {
        const char *dims[BFS_MAX_DIMS];
        for (int i = 0; i < sc->ndims; i++)
            dims[i] = sc->dims[i];
        pthread_mutex_lock(&ing->reg_lock);
        int ret = bfs_registry_add_dataset_type(ing->reg, sc->dataset_type, sc->storage_class, dims, sc->ndims,
                                                sc->is_calibration);
        if (ret == 0 && bfs_registry_refresh(ing->reg) < 0)
            ret = -EIO;
        pthread_mutex_unlock(&ing->reg_lock);
        if (ret < 0) {
            *why = bfs_asprintf("its dataset type %s cannot be created from the sidecar: %s", sc->dataset_type,
                                strerror(-ret));
            return ret == -EEXIST ? -EEXIST : -EINVAL;
        }
        bfs_note(TAG, "created dataset type %s (storage class %s) from a replica's sidecar", sc->dataset_type,
                 sc->storage_class);
        dt = bfs_catalog_dataset_type(bfs_registry_catalog(ing->reg), sc->dataset_type);
        if (!dt)
            return -EIO;
    }
    bool same = dt->ndims == sc->ndims && !strcmp(dt->storage_class, sc->storage_class);
    for (int i = 0; same && i < dt->ndims; i++) {
        bool found = false;
        for (int k = 0; k < sc->ndims && !found; k++)
            found = !strcmp(dt->dims[i]->name, sc->dims[k]);
        same = found;
    }
    if (!same) {
        *why = bfs_asprintf("the repository's dataset type %s (storage class %s) differs from the sidecar's "
                            "(storage class %s)", dt->name, dt->storage_class, sc->storage_class);
        return -EEXIST;
    }
    return 0;
}

/* The dimension records a sidecar carries that the repository lacks, in
 * the universe's order (what a record requires comes before it).  A record
 * the repository holds otherwise is kept as it is; one that cannot be
 * added is left to the registration, which then names what is missing. */
static void add_sidecar_records(bfs_ingest *ing, const bfs_sidecar *sc)
{
    const bfs_dimension *dims[BFS_SIDECAR_MAX_DATAID];
    const bfs_sidecar_record *recs[BFS_SIDECAR_MAX_DATAID];
    int n = 0;
    for (int i = 0; i < sc->n_records; i++) {
        const bfs_dimension *d = bfs_registry_dimension_by_name(ing->reg, sc->records[i].element);
        if (!d || !d->has_table)
            continue; /* a view (band) or an element of another universe */
        int k = n++;
        for (; k > 0 && dims[k - 1]->index > d->index; k--) {
            dims[k] = dims[k - 1];
            recs[k] = recs[k - 1];
        }
        dims[k] = d;
        recs[k] = &sc->records[i];
    }
    pthread_mutex_lock(&ing->reg_lock);
    for (int i = 0; i < n; i++) {
        int ret = bfs_registry_add_record(ing->reg, recs[i]->element, recs[i]->v, recs[i]->n);
        if (ret == -EEXIST)
            bfs_note(TAG, "the repository's %s record for %s differs from its sidecar's (in: %s); the repository's "
                          "is kept", recs[i]->element, sc->id,
                     *bfs_registry_conflict() ? bfs_registry_conflict() : "unknown");
        else if (ret < 0)
            bfs_info(TAG, "the %s record of %s's sidecar cannot be added: %s", recs[i]->element, sc->id,
                     strerror(-ret));
    }
    pthread_mutex_unlock(&ing->reg_lock);
}

/* A replica and its sidecar, paired: the replica's run, dataset type,
 * dataId and id from the sidecar, its bytes checked against the sidecar's
 * size and checksums, its type and RUN made when missing; then on as any
 * upload (step_sealed_tail).  A refusal quarantines the replica (and, at
 * its end, the sidecar). */
static int pair_prepare(bfs_ingest *ing, struct bfs_upload *data, struct bfs_upload *side)
{
    struct stat sb;
    if (data->fd < 0 || fstat(data->fd, &sb) < 0 || side->fd < 0 || fstat(side->fd, &sb) < 0) {
        quarantine_as(data, EIO, "the spool file of the replica or of its sidecar is gone");
        return 0;
    }
    char *text = NULL, *msg = NULL, *why = NULL;
    size_t len = 0;
    bfs_sidecar sc;
    memset(&sc, 0, sizeof sc);
    int ret = read_sidecar(side, &text, &len);
    if (ret == 0)
        ret = bfs_sidecar_parse(text, len, &sc, &msg);
    free(text);
    if (ret < 0) {
        quarantine_as(data, EINVAL, "its sidecar %s cannot be used: %s", side->name, msg ? msg : strerror(-ret));
        goto out;
    }
    if ((ret = check_sums(data, &sc, &why)) < 0) {
        quarantine_as(data, -ret, "%s", why ? why : strerror(-ret));
        goto out;
    }
    if (bfs_ingest_readonly(ing, sc.run)) {
        quarantine_as(data, EROFS, "its run %s is a read-only collection (ingest.readonly_collections)", sc.run);
        goto out;
    }
    pthread_mutex_lock(&ing->reg_lock);
    ret = bfs_registry_add_run(ing->reg, sc.run, NULL);
    pthread_mutex_unlock(&ing->reg_lock);
    if (ret < 0 && ret != -EEXIST) {
        quarantine_as(data, -ret, "its run %s cannot be made: %s", sc.run, strerror(-ret));
        goto out;
    }
    add_sidecar_records(ing, &sc);
    if ((ret = ensure_sidecar_type(ing, &sc, &why)) < 0) {
        quarantine_as(data, -ret, "%s", why ? why : strerror(-ret));
        goto out;
    }
    /* the dataId: the type's required dimensions, in its order */
    const bfs_dataset_type *dt = bfs_catalog_dataset_type(bfs_registry_catalog(ing->reg), sc.dataset_type);
    char *names[BFS_MAX_DIMS] = {0}, *values[BFS_MAX_DIMS] = {0};
    int nd = dt ? dt->ndims : 0;
    bool oom = false;
    for (int i = 0; i < nd; i++) {
        const char *v = NULL;
        for (int k = 0; k < sc.n_data_id && !v; k++)
            if (!strcmp(sc.data_id_names[k], dt->dims[i]->name))
                v = sc.data_id_values[k];
        if (!v) {
            quarantine_as(data, EINVAL, "its sidecar's dataId has no %s", dt->dims[i]->name);
            nd = i;
            goto free_dims;
        }
        names[i] = strdup(dt->dims[i]->name);
        values[i] = strdup(v);
        oom |= !names[i] || !values[i];
    }
    char *run = strdup(sc.run), *dtype = strdup(sc.dataset_type);
    char *fmt = sc.formatter ? strdup(sc.formatter) : NULL;
    oom |= !run || !dtype || (sc.formatter && !fmt);
    if (!oom) {
        /* swapped under the lock: listings and lookups read them */
        pthread_mutex_lock(&ing->lock);
        char *old_run = data->run, *old_dtype = data->dtype;
        data->run = run;
        data->dtype = dtype;
        data->inbox = false;
        for (int i = 0; i < data->ndims; i++) {
            free(data->dim_names[i]);
            free(data->dim_values[i]);
        }
        for (int i = 0; i < nd; i++) {
            data->dim_names[i] = names[i];
            data->dim_values[i] = values[i];
        }
        data->ndims = nd;
        pthread_mutex_unlock(&ing->lock);
        free(old_run);
        free(old_dtype);
        free(data->formatter);
        data->formatter = fmt;
        nd = 0;
        run = dtype = fmt = NULL;
    }
    free(run);
    free(dtype);
    free(fmt);
free_dims:
    for (int i = 0; i < nd; i++) {
        free(names[i]);
        free(values[i]);
    }
    if (oom)
        ret = -ENOMEM;
    if (oom || data->st == S_QUARANTINED)
        goto out;
    snprintf(data->dataset_id, sizeof data->dataset_id, "%s", sc.id);
    ret = step_sealed_tail(ing, data, NULL);
    if (ret == 0 && data->st == S_PREPARED && sc.checksum[0] && strcmp(sc.checksum, data->checksum))
        quarantine_as(data, EBADMSG, "its BLAKE2b-512 differs from its sidecar's checksum");
out:
    free(msg);
    free(why);
    bfs_sidecar_free(&sc);
    return ret;
}

/* SEALED, for a file written in the replica directory. */
static int step_replica(bfs_ingest *ing, struct bfs_upload *u)
{
    pthread_mutex_lock(&ing->pair_lock);
    pthread_mutex_lock(&ing->lock);
    struct bfs_upload *p = take_partner_locked(ing, u);
    bool u_side = is_sidecar_locked(u); /* the roles are fixed from here on */
    pthread_mutex_unlock(&ing->lock);
    pthread_mutex_unlock(&ing->pair_lock);
    if (!p) {
        /* WAITING (the intent is written by step()); settle_waiting marks
         * it so once its worker lets go of it */
        u->st = S_WAITING;
        u->waiting_since = bfs_real_s();
        return 0;
    }
    struct bfs_upload *data = u_side ? p : u, *side = u_side ? u : p;
    snprintf(data->pair, sizeof data->pair, "%s", side->u);
    int ret = pair_prepare(ing, data, side);
    if (data == u) /* stepped on by our caller; finish_pair at its end, release_pair if it stops short */
        return ret < 0 && data->st != S_QUARANTINED ? ret : 0;
    /* the sidecar closed second: step its replica to the end here, and
     * answer the sidecar's writer with the pair's outcome */
    if (ret == 0 || data->st == S_QUARANTINED)
        ret = write_intent(ing, data); /* PREPARED with its pair, before the replica moves */
    if (ret == 0)
        step_all(ing, data, NULL);
    /* the replica stopped short of its end (a registry past its deadline, a
     * transfer job that cannot be written, a full disk, no memory to pair):
     * it is finished at the next mount, whose recovery of it finishes this
     * sidecar too (finish_pair, or a new pairing when it stopped before its
     * PREPARED intent); until then the sidecar stays SEALED, its bytes kept,
     * and its writer is told the replica is not registered */
    /* registered is ended for the sidecar, also when a staging link failed
     * and the replica waits in REGISTERED for its retry (release_pair) */
    bool ended = ret == 0 && (data->st == S_DONE || data->st == S_REGISTERED);
    if (ended)
        finish_sidecar(ing, u, data);
    pthread_mutex_lock(&ing->lock);
    data->held = false;
    data->outcome = ended ? -data->err : -EIO;
    if (data->outcome == 0)
        ing->stats.ingested++;
    else if (ended)
        ing->stats.quarantined++;
    pthread_mutex_unlock(&ing->lock);
    bfs_upload_put(data);
    return ended ? 0 : -EIO;
}

/* A raw whose writer was killed: the obs_id, raft and sensor its primary
 * header gives, when it is whole enough to read, so that the event names
 * the image (nothing else is read: the file is refused anyway). */
static void name_killed_image(struct bfs_upload *u)
{
    if (u->dtype || !is_fits(u))
        return;
    bfs_fits_card *cards = NULL;
    size_t n = 0;
    char *msg = NULL;
    if (bfs_fits_read_header(u->data_path, 1, &cards, &n, &msg) == 0) {
        const bfs_fits_card *o = bfs_fits_find(cards, n, "OBSID");
        const bfs_fits_card *rb = bfs_fits_find(cards, n, "RAFTBAY"), *cs = bfs_fits_find(cards, n, "CCDSLOT");
        set_event_names(u, o && o->type == 'C' ? o->value : NULL, rb && rb->type == 'C' ? rb->value : NULL,
                        cs && cs->type == 'C' ? cs->value : NULL);
    }
    free(cards);
    free(msg);
}

/* Whether a file of type dtype at a dataId path of instrument is a raw of
 * an instrument whose headers butlerfs translates: when it is FITS, its
 * dataId comes from its headers, as in the RUN's own directory (Header
 * Service merge, corrections, exposure record, the camera's raw formatter),
 * and the path must agree (check_raw_path); the records it needs may not
 * exist before.  A raw of another instrument, or in a repository of a
 * universe older than raw ingest writes, keeps the path's dataId. */
static bool translates_raw_at(bfs_ingest *ing, const char *dtype, const char *instrument)
{
    return dtype && !strcmp(dtype, "raw") && instrument &&
           bfs_registry_universe_version(ing->reg) >= RAW_MIN_UNIVERSE &&
           (bfs_camera_find(instrument) || !strcmp(instrument, BFS_DECAM_INSTRUMENT));
}

static bool is_translated_raw_path(const struct bfs_upload *u)
{
    return !u->inbox && !u->replica && translates_raw_at(u->ing, u->dtype, upload_instrument(u));
}

/* After prepare_raw compared the dataId of u's headers with its path's
 * (set_raw_data_id): quarantine u unless they are one and the same raw. */
static void check_raw_path(struct bfs_upload *u)
{
    if (u->n_more > 0) {
        quarantine_as(u, EINVAL, "a raw's dataId comes from its headers, and this file holds %d CCDs: write it "
                                 "into the RUN's own directory", u->n_more + 1);
    } else if (u->raw_headers_id) {
        char *path = data_id_text(u->dim_names, u->dim_values, u->ndims, true);
        quarantine_as(u, EINVAL, "a raw's dataId comes from its headers, which give %s (%s), not %s as its path "
                                 "says: write it into the RUN's own directory, or at its own dataId",
                      u->raw_headers_id, u->obs_id ? u->obs_id : "no OBSID", path ? path : "?");
        free(path);
    }
}

static int step_sealed(bfs_ingest *ing, struct bfs_upload *u)
{
    hash_take(ing, u);
    pthread_mutex_lock(&ing->lock);
    int werr = u->write_err, sig = u->killed_by;
    pthread_mutex_unlock(&ing->lock);
    if (werr) {
        quarantine_as(u, werr, "a write into it failed (%s): the file is not whole", strerror(werr));
        return 0;
    }
    if (sig) {
        name_killed_image(u);
        const char *abbrev = sigabbrev_np(sig);
        quarantine_as(u, ECANCELED, "the writer was killed by %s%s (signal %d) before it closed the file: it may "
                                    "not be whole", abbrev ? "SIG" : "a signal", abbrev ? abbrev : "", sig);
        return 0;
    }
    struct stat sb;
    if (u->fd < 0 || fstat(u->fd, &sb) < 0) {
        quarantine_as(u, EIO, "the spool file is gone");
        return 0;
    }
    u->size = sb.st_size;
    if (u->replica)
        return step_replica(ing, u);
    bool fits = is_fits(u);
    if (!u->dtype && !fits) {
        quarantine_as(u, EINVAL, "a file written in a RUN's own directory is ingested as a raw, and this "
                                 "one is not a FITS file; write it at its dataId path instead");
        return 0;
    }
    if (fits) {
        char *msg = NULL;
        bfs_fits_rules rules = {.sums_advisory = ing->cfg->checksums_advisory};
        int ret = bfs_fits_validate(u->data_path, &rules, NULL, &msg);
        if (ret < 0) {
            const char *why = msg ? without_spool_path(u, msg) : strerror(-ret);
            /* "not a FITS file: ..." says it already */
            quarantine_as(u, EINVAL, "%s%s", strstr(why, "not a FITS file") ? "" : "not a valid FITS file: ", why);
            free(msg);
            return 0;
        }
    }
    struct tvals raw_tv, *raw_values = NULL;
    bool raw_at_path = fits && is_translated_raw_path(u);
    if (!u->dtype || raw_at_path) {
        raw_tv.n = 0;
        int ret = prepare_raw(ing, u, &raw_tv);
        if (ret == 0 && raw_at_path && u->st != S_QUARANTINED)
            check_raw_path(u);
        if (ret < 0 || u->st == S_QUARANTINED)
            return ret;
        raw_values = &raw_tv;
    }
    return step_sealed_tail(ing, u, raw_values);
}

/* SEALED, once u's dataset type, run and dataId are known: its id (the
 * UUIDv5, or a replica's own), its datastore path and checksum. */
static int step_sealed_tail(bfs_ingest *ing, struct bfs_upload *u, struct tvals *raw_values)
{
    const char *names[BFS_MAX_DIMS], *values[BFS_MAX_DIMS];
    for (int i = 0; i < u->ndims; i++) {
        names[i] = u->dim_names[i];
        values[i] = u->dim_values[i];
    }
    int ret = u->replica ? 0 : bfs_dataset_id_v5(u->dtype, u->run, names, values, u->ndims, u->dataset_id);
    if (ret < 0) {
        quarantine_as(u, EINVAL, "no dataset id for this dataId: %s", strerror(-ret));
        return 0;
    }
    if (decide_path(ing, u, raw_values) < 0)
        return u->st == S_QUARANTINED ? 0 : -ENOMEM;
    /* the checksum daf_butler records, of the bytes as they will be placed
     * (after a Header Service merge), so readers of any copy can verify */
    ret = hash_finish(u);
    if (ret < 0) {
        u->checksum[0] = '\0';
        bfs_warn(TAG, "cannot checksum %s: %s; registered without a checksum", u->name, strerror(-ret));
    }
    u->st = S_PREPARED;
    return 0;
}

/* The file record of a dataset already registered under u's id. */
struct registered {
    const char *id;
    char *path, *checksum; /* owned */
    int64_t size;
};

static int registered_cb(void *ctx, const bfs_dataset_record *r)
{
    struct registered *g = ctx;
    g->path = strdup(r->path);
    g->checksum = r->checksum ? strdup(r->checksum) : NULL;
    g->size = r->file_size;
    return g->path && (g->checksum || !r->checksum) ? 1 : -ENOMEM; /* the first record is enough */
}

static int registered_tx(bfs_ingest *ing, void *ctx)
{
    int ret = bfs_registry_dataset_records(ing->reg, ((struct registered *)ctx)->id, registered_cb, ctx);
    return ret == 1 ? 0 : ret;
}

/* PREPARED, before the rename: a dataset with u's id may be registered
 * already at another path (the same dataId written under another
 * extension, another file template, or stored by the Python Butler).  Its
 * file, not a second copy, decides: the same bytes are a duplicate (u->rel
 * becomes that path: its staging links and event), other bytes are
 * refused.  Returns 1 when that settled u, 0 to go on placing, -errno. */
static int check_registered(bfs_ingest *ing, struct bfs_upload *u)
{
    struct registered g = {.id = u->dataset_id};
    int ret = with_registry(ing, registered_tx, &g);
    if (ret == -ENOENT || (ret == 0 && !strcmp(g.path, u->rel))) {
        free(g.path);
        free(g.checksum);
        return 0; /* not registered, or at this path: the rename decides (EEXIST) */
    }
    if (ret < 0)
        return ret == -ENOMEM ? ret : -EIO; /* stays PREPARED, retried at the next mount */
    int same = -ENOTSUP; /* cannot compare */
    if (g.checksum && u->checksum[0])
        same = g.size == u->size && !strcmp(g.checksum, u->checksum);
    else if (bfs_is_relative_path(g.path) && !strstr(g.path, "://")) {
        char *there = bfs_asprintf("%s%s", ing->root, g.path);
        same = there ? same_bytes(u->data_path, there) : -ENOMEM;
        free(there);
    }
    if (same == -ENOMEM) {
        free(g.path);
        free(g.checksum);
        return -ENOMEM;
    }
    if (same == 1) {
        u->duplicate = true;
        free(u->rel);
        u->rel = g.path;
        g.path = NULL;
        u->st = S_PLACED;
    } else if (same == 0) {
        quarantine_as(u, EEXIST, "dataset %s is registered already, with different bytes, at %s", u->dataset_id,
                      g.path);
    } else {
        quarantine_as(u, EEXIST, "dataset %s is registered already, at %s, and these bytes cannot be compared "
                                 "with it (%s)", u->dataset_id, g.path,
                      same == -ENOTSUP ? "it has no checksum and is not a file of this datastore" : strerror(-same));
    }
    free(g.path);
    free(g.checksum);
    return 1;
}

/* The mode of a file placed in the datastore: read and write for its owner,
 * and read for group and others as far as the datastore root lets them list
 * it, as the Python Butler's own ingest leaves files under the usual umask.
 * Other users' pipelines and the Python Butler read the repository directly,
 * and staging trees (hard links: the same inode) are read by other services.
 * A spool file stays 0600 (in a 0700 directory) until it is placed. */
static mode_t placed_mode_of(const char *root)
{
    struct stat sb;
    mode_t mode = S_IRUSR | S_IWUSR;
    if (stat(root, &sb) == 0)
        mode |= sb.st_mode & (S_IRGRP | S_IROTH);
    return mode;
}

static int step_prepared(bfs_ingest *ing, struct bfs_upload *u)
{
    int ret = check_registered(ing, u);
    if (ret != 0)
        return ret < 0 ? ret : 0;
    char *dst = bfs_asprintf("%s%s", ing->root, u->rel);
    if (!dst)
        return -ENOMEM;
    ret = bfs_make_parents(dst, false);
    if (ret == 0 && chmod(u->data_path, ing->placed_mode) < 0)
        ret = -errno; /* ENOENT: renamed before a crash, below */
    if (ret == 0 && renameat2(AT_FDCWD, u->data_path, AT_FDCWD, dst, RENAME_NOREPLACE) < 0)
        ret = -errno;
    if (ret == -ENOENT) {
        /* the rename happened before a crash: the file is in place */
        struct stat sb;
        ret = stat(dst, &sb) == 0 && sb.st_size == u->size ? 0 : -EIO;
        if (ret < 0)
            quarantine_as(u, EIO, "the spool file vanished and %s is not it", u->rel);
    } else if (ret == -EEXIST) {
        int same = same_bytes(u->data_path, dst);
        if (same == 1) {
            u->duplicate = true; /* registered (or about to be) with these bytes */
            ret = 0;
        } else {
            quarantine_as(u, EEXIST, "a different file is already at %s", u->rel);
            free(dst);
            return 0;
        }
    }
    if (ret == 0) {
        char *d = bfs_dir_of(dst);
        ret = d ? bfs_fsync_dir(d) : -ENOMEM;
        free(d);
    }
    free(dst);
    if (ret == 0)
        u->st = S_PLACED;
    else if (u->st == S_PREPARED)
        quarantine_as(u, -ret, "cannot place the file at %s: %s", u->rel, strerror(-ret));
    return 0;
}

struct add_dataset {
    const bfs_new_dataset *d;
    /* a DECam raw: the other CCDs, each a dataset of the same file, with
     * their detector in dim_values[det] */
    const char **values;
    int det, n_more;
    const int64_t *more;
    bool taken; /* out: another dataset (another id) has one of these dataIds in the RUN */
};

/* bfs_registry_add_dataset, where a dataset that exists already with this
 * id is success (a replay after a crash, or a duplicate step_prepared
 * compared), and another dataset at the same dataId sets ad->taken. */
static int add_one_dataset(bfs_ingest *ing, struct add_dataset *ad)
{
    char id[33];
    int ret = bfs_registry_add_dataset(ing->reg, ad->d, id);
    if (ret != -EEXIST)
        return ret;
    ret = bfs_registry_has_dataset(ing->reg, id);
    if (ret == 0)
        ad->taken = true;
    return ret == 1 ? 0 : ret == 0 ? -EEXIST : ret;
}

/* Every dataset of the upload in one transaction, so a file is never
 * registered for some of its CCDs only. */
static int add_dataset_tx(bfs_ingest *ing, void *ctx)
{
    struct add_dataset *ad = ctx;
    int ret = bfs_registry_begin(ing->reg);
    if (ret)
        return ret;
    ret = add_one_dataset(ing, ad);
    const char *first = ad->det >= 0 ? ad->values[ad->det] : NULL;
    for (int k = 0; ret == 0 && ad->det >= 0 && k < ad->n_more; k++) {
        char dv[32];
        snprintf(dv, sizeof dv, "%lld", (long long)ad->more[k]);
        ad->values[ad->det] = dv;
        ret = add_one_dataset(ing, ad);
    }
    if (ad->det >= 0)
        ad->values[ad->det] = first;
    if (ret == 0)
        ret = bfs_registry_commit(ing->reg);
    else
        bfs_registry_rollback(ing->reg);
    return ret;
}

/* The observing night's date, as the summit's staging trees name their
 * directories: UTC now - 12 h, YYYY-MM-DD. */
static void observing_day(char out[16])
{
    time_t then = time(NULL) - 12 * 3600;
    struct tm tm;
    strftime(out, 16, "%Y-%m-%d", gmtime_r(&then, &tm));
}

/* The first dimension record of a dataId (n names and values) the
 * registry lacks, named for a reason: its instrument, else the first of
 * its dimensions whose record bfs_registry_has_record can look up
 * (detector, exposure, visit, physical filter; it refuses the others with
 * -EINVAL) and finds missing; "" when none is, or when the registry cannot
 * say. */
struct missing_record {
    const char *const *names, *const *values;
    int n;
    /* a raw the ingest translates: its headers bring the exposure record,
     * and the instrument's records when the repository has none yet */
    bool from_headers;
    char text[256];
    const char *source; /* where such a record comes from, for the reason */
};

static int missing_record_tx(bfs_ingest *ing, void *ctx)
{
    struct missing_record *m = ctx;
    const char *ins = dim_value(m->names, m->values, m->n, "instrument");
    /* the instrument first: the others are of it */
    for (int i = -1; ins && i < m->n; i++) {
        const char *e = i < 0 ? "instrument" : m->names[i], *v = i < 0 ? ins : m->values[i];
        bool skip = (i >= 0 && !strcmp(e, "instrument")) || (m->from_headers && !strcmp(e, "exposure"));
        int ret = skip ? 1 : bfs_registry_has_record(ing->reg, e, i < 0 ? NULL : ins, v);
        if (ret == -EBUSY || ret == -EAGAIN)
            return ret; /* with_registry asks again */
        if (ret == 0 && i < 0 && m->from_headers)
            return 0; /* a camera new to the repository: registered from its headers */
        if (ret == 0) {
            if (i < 0)
                snprintf(m->text, sizeof m->text, "instrument %s", ins);
            else
                snprintf(m->text, sizeof m->text, "%s %s of %s", e, v, ins);
            m->source = !strcmp(e, "visit") ? "visits are defined from exposures by the Python Butler "
                                              "(butler define-visits)"
                                            : "dimension records come from the repository (the Python "
                                              "Butler, or a raw of the instrument ingested here)";
            return 0;
        }
    }
    return 0;
}

/* The reason text for a dataId's missing record m->text, its dataId and
 * m->source. */
#define MISSING_RECORD_WHY "the registry has no record of %s (dataId %s): %s"

/* Quarantine u, whose registration found no record for part of its dataId
 * (or no dataset type), with a reason that says which when it can. */
static void quarantine_missing(bfs_ingest *ing, struct bfs_upload *u)
{
    struct missing_record m = {.names = (const char *const *)u->dim_names,
                               .values = (const char *const *)u->dim_values, .n = u->ndims};
    with_registry(ing, missing_record_tx, &m);
    char *dataid = data_id_text(u->dim_names, u->dim_values, u->ndims, false);
    if (m.text[0])
        quarantine_as(u, ENOENT, MISSING_RECORD_WHY, m.text, dataid ? dataid : "?", m.source);
    else if (u->dtype && !bfs_catalog_dataset_type(bfs_registry_catalog(ing->reg), u->dtype))
        quarantine_as(u, ENOENT, "the registry has no dataset type %s", u->dtype);
    else
        quarantine_as(u, ENOENT, "the registry has no record for part of the dataId %s", dataid ? dataid : "?");
    free(dataid);
}

static int step_placed(bfs_ingest *ing, struct bfs_upload *u)
{
    const char *names[BFS_MAX_DIMS], *values[BFS_MAX_DIMS];
    for (int i = 0; i < u->ndims; i++) {
        names[i] = u->dim_names[i];
        values[i] = u->dim_values[i];
    }
    bfs_new_dataset d = {.dataset_type = u->dtype, .run = u->run, .dim_names = names,
                         .dim_values = values, .ndims = u->ndims, .path = u->rel,
                         .formatter = formatter_of(u), .file_size = u->size,
                         .checksum = u->checksum[0] ? u->checksum : NULL,
                         .id = u->replica ? u->dataset_id : NULL};
    int det = -1;
    for (int i = 0; i < u->ndims; i++)
        if (!strcmp(u->dim_names[i], "detector"))
            det = i;
    struct add_dataset ad = {.d = &d, .values = values, .det = u->n_more ? det : -1, .n_more = u->n_more,
                             .more = u->more_dets};
    int ret = with_registry(ing, add_dataset_tx, &ad); /* -EIO: stays PLACED, retried at the next mount */
    if (ret == 0 && ing->transfer) {
        /* the jobs before REGISTERED: a crash in between replays this step (docs/transfer.md) */
        bfs_transfer_item item = {.dataset_id = u->dataset_id, .run = u->run, .dataset_type = u->dtype,
                                  .rel = u->rel, .size = u->size, .instrument = upload_instrument(u)};
        ret = bfs_transfer_enqueue(ing->transfer, &item);
        if (ret < 0) {
            bfs_warn(TAG, "cannot queue the transfer of %s: %s; the upload stays PLACED and is retried at the "
                          "next mount", u->rel, strerror(-ret));
            return ret == -ENOMEM ? ret : -EIO;
        }
    }
    if (ret == -ENOENT || (ret == -EEXIST && ad.taken)) {
        /* an unknown dimension value or dataset type, or a dataId another
         * dataset holds: the file goes back */
        char *dst = bfs_asprintf("%s%s", ing->root, u->rel);
        if (dst && !u->duplicate)
            rename(dst, u->data_path);
        free(dst);
        if (ret == -ENOENT)
            quarantine_missing(ing, u);
        else
            quarantine_as(u, EEXIST, "another dataset (not %s) already has this dataId in %s", u->dataset_id,
                          u->run);
        return 0;
    }
    if (ret < 0)
        return ret;
    /* the staging trees' date is the registration's, in the REGISTERED
     * intent: links made again after a restart on a later day go under the
     * same night, next to the ones made before */
    observing_day(u->stage_day);
    u->st = S_REGISTERED;
    return 0;
}

/* One staging link: dst names src's inode when this returns 0 (a link
 * there already, onto the same inode, is success; onto another file it is
 * -EEXIST).  Tried up to three times, 50 then 100 ms apart: a transient
 * failure (a full inode table being freed, a directory being made by
 * another writer) does not leave the dataset unstaged. */
static int stage_link(const char *src, const char *dst)
{
    int ret = 0;
    for (int attempt = 0; attempt < 3; attempt++) {
        if (attempt)
            bfs_sleep_ms(50 << (attempt - 1));
        ret = bfs_make_parents(dst, false);
        if (ret == 0 && link(src, dst) < 0) {
            ret = -errno;
            struct stat a, b;
            if (ret == -EEXIST && stat(src, &a) == 0 && stat(dst, &b) == 0)
                ret = a.st_dev == b.st_dev && a.st_ino == b.st_ino ? 0 : -EEXIST;
        }
        if (ret == 0) {
            char *d = bfs_dir_of(dst);
            ret = d ? bfs_fsync_dir(d) : -ENOMEM;
            free(d);
        }
        if (ret == 0 || ret == -EEXIST)
            break; /* another file under that name stays another file */
    }
    return ret;
}

static int has_dataset_tx(bfs_ingest *ing, void *ctx)
{
    return bfs_registry_has_dataset(ing->reg, ctx);
}

/* Whether u's dataset was removed since it was registered (an unlink in
 * the mount with ingest.allow_remove, or the Python Butler): its file is
 * gone and the registry no longer has it, so there is nothing left to
 * stage.  Any doubt (an error) says no: the links are tried again. */
static bool removed_since(bfs_ingest *ing, struct bfs_upload *u, const char *src)
{
    struct stat sb;
    if (!src || stat(src, &sb) == 0 || errno != ENOENT || !u->dataset_id[0])
        return false;
    return with_registry(ing, has_dataset_tx, u->dataset_id) == 0;
}

/* REGISTERED ends: every link is made, or nothing is left to stage.
 * Status stops counting u as not fully staged, a replica's held sidecar
 * is finished, and u is ANNOUNCED. */
static void staging_over(bfs_ingest *ing, struct bfs_upload *u)
{
    if (u->restage_tries > 0) {
        pthread_mutex_lock(&ing->lock);
        ing->stats.staging_failed--;
        pthread_mutex_unlock(&ing->lock);
    }
    if (u->replica)
        finish_pair(ing, u);
    u->st = S_ANNOUNCED;
}

static int step_registered(bfs_ingest *ing, struct bfs_upload *u)
{
    const bfs_ingest_config *c = ing->cfg;
    char *src = bfs_asprintf("%s%s", ing->root, u->rel);
    if (removed_since(ing, u, src)) {
        free(src);
        bfs_note(TAG, "%s (dataset %s) was removed before all its staging links were made: no more tries",
                 u->rel, u->dataset_id);
        if (u->duplicate)
            unlink(u->data_path);
        staging_over(ing, u);
        return 0;
    }
    /* <tree>/<observing day: UTC - 12 h at registration>/<file>, as the summit's staging trees are */
    if (!u->stage_day[0])
        observing_day(u->stage_day); /* an intent of an older butlerfs */
    const char *day = u->stage_day;
    const char *base = strrchr(u->rel, '/') ? strrchr(u->rel, '/') + 1 : u->rel;
    int failed = 0, first_err = 0;
    free(u->staging_note);
    u->staging_note = NULL;
    for (int i = 0; i < c->n_staging; i++) {
        char *dst = src ? bfs_asprintf("%s/%s/%s", c->staging[i], day, base) : NULL;
        int ret = dst ? stage_link(src, dst) : -ENOMEM;
        if (ret < 0) {
            const char *why = ret == -EEXIST ? "another file has that name" : strerror(-ret);
            bfs_warn(TAG, "cannot link %s into staging tree %s: %s (tried again while mounted, and at the next mount)",
                     u->rel, c->staging[i], why);
            char *note = bfs_asprintf("%s%s%s: %s", u->staging_note ? u->staging_note : "",
                                      u->staging_note ? "; " : "", c->staging[i], why);
            free(u->staging_note);
            u->staging_note = note;
            failed++;
            if (!first_err)
                first_err = ret;
        }
        free(dst);
    }
    free(src);
    if (u->duplicate)
        unlink(u->data_path); /* the copy of bytes already registered */
    /* the event says what failed; the intent stays REGISTERED, so the next
     * mount makes the missing links (and writes the event again) */
    append_event(ing, u, NULL);
    if (failed) {
        pthread_mutex_lock(&ing->lock);
        if (u->restage_tries == 0)
            ing->stats.staging_failed++; /* not fully staged now (until a retry succeeds) */
        double wait = (double)ing->cfg->staging_retry_ms / 1000.0 * (double)(1 << (u->restage_tries < 12 ? u->restage_tries : 12));
        u->restage_at = bfs_mono_s() + (wait < 3600 ? wait : 3600);
        u->restage_tries++;
        pthread_mutex_unlock(&ing->lock);
        return first_err;
    }
    if (u->restage_tries > 0)
        bfs_note(TAG, "%s is fully staged now (after %d tries)", u->rel, u->restage_tries + 1);
    staging_over(ing, u);
    return 0;
}

/* Where u was written, relative to the mountpoint ("dir/name"), malloc'd;
 * NULL for an intent written before the "dir" key, or (*oom set) when out
 * of memory. */
static char *mount_path(bfs_ingest *ing, const struct bfs_upload *u, bool *oom)
{
    if (!u->dir)
        return NULL;
    pthread_mutex_lock(&ing->lock);
    char *p = u->dir[0] ? bfs_asprintf("%s/%s", u->dir, shown_name(u)) : strdup(shown_name(u));
    pthread_mutex_unlock(&ing->lock);
    *oom = !p;
    return p;
}

/* The reason file beside quarantined bytes (docs/ingest.md, "Quarantine"):
 * the reason on its first line(s), then "key: value" lines that
 * `butlerfs quarantine` reads back: run, dataset type, name (as created),
 * errno (the name close(2) got), path (where the writer wrote it, relative
 * to the mount's root, under the name it shows now; absent for an upload
 * made before the key was recorded).  NULL when out of memory. */
static char *reason_text(bfs_ingest *ing, const struct bfs_upload *u)
{
    bool oom = false;
    char *at = mount_path(ing, u, &oom);
    char *path = oom ? NULL : at ? bfs_asprintf("path: %s\n", at) : strdup("");
    const char *errname = strerrorname_np(u->err);
    char *text = path ? bfs_asprintf("%s\nrun: %s\ndataset type: %s\nname: %s\nerrno: %s\n%s",
                                     u->reason ? u->reason : "?", u->run, u->dtype ? u->dtype : "raw", u->name,
                                     errname ? errname : "?", path)
                      : NULL;
    free(path);
    free(at);
    return text;
}

char *bfs_quarantine_mark_path(const char *data)
{
    size_t n = strlen(data);
    return n > 5 && !strcmp(data + n - 5, ".data") ? bfs_asprintf("%.*s%s", (int)(n - 5), data, BFS_RETRY_MARK_SUFFIX)
                                                    : NULL;
}

/* What a retry marker for the path at in the mount holds (malloc'd). */
static char *marker_text(const char *at) { return bfs_asprintf("path: %s\n", at); }

int bfs_quarantine_mark_retry(const char *data, const char *at, char **mark)
{
    *mark = NULL;
    if (strchr(data, '\n') || strchr(at, '\n'))
        return -EINVAL;
    char *m = bfs_quarantine_mark_path(data);
    char *text = marker_text(at);
    int ret = m && text ? bfs_durable_write_mode(m, text, strlen(text), 0600) : -ENOMEM;
    free(text);
    if (ret == 0)
        *mark = m;
    else
        free(m);
    return ret;
}

/* A retry marker's text (at most 16 KiB), malloc'd, or NULL. */
static char *read_marker(const char *path)
{
    FILE *f = fopen(path, "re");
    char *buf = f ? malloc(16384) : NULL;
    size_t n = buf ? fread(buf, 1, 16383, f) : 0;
    if (buf)
        buf[n] = '\0';
    if (f)
        fclose(f);
    return buf;
}

/* u, left OPEN by a daemon that died while `butlerfs quarantine retry`
 * wrote an entry's bytes into the mount (bfs_quarantine_mark_retry): true,
 * with u's spool bytes removed and u ANNOUNCED (nothing to announce), when
 * a marker in the quarantine names u's path and u's bytes are the first
 * bytes of the entry's, or are gone (the same drop, begun by a daemon killed
 * in it).  The entry keeps every byte, so a cut second copy beside it would
 * only mislead.  The marker stays: the command removes it with the entry. */
static bool drop_cut_retry(bfs_ingest *ing, struct bfs_upload *u)
{
    bool oom = false, dropped = false;
    char *at = mount_path(ing, u, &oom);
    char *want = at ? marker_text(at) : NULL; /* a marker written for this path */
    DIR *q = want ? opendir(ing->quarantine) : NULL;
    struct dirent *de;
    int seen = 0;
    while (q && !dropped && (de = readdir(q)) != NULL && seen < 100000) {
        if (de->d_name[0] == '.')
            continue;
        char *daydir = bfs_asprintf("%s/%s", ing->quarantine, de->d_name);
        DIR *dd = daydir ? opendir(daydir) : NULL;
        struct dirent *fe;
        while (dd && !dropped && (fe = readdir(dd)) != NULL && ++seen < 100000) {
            if (!bfs_endswith(fe->d_name, BFS_RETRY_MARK_SUFFIX))
                continue;
            char *mark = bfs_asprintf("%s/%s", daydir, fe->d_name);
            char *text = mark ? read_marker(mark) : NULL;
            /* the entry's bytes: beside the marker, never a path read from it */
            char *data =
                text ? bfs_asprintf("%.*s.data", (int)(strlen(mark) - strlen(BFS_RETRY_MARK_SUFFIX)), mark) : NULL;
            if (data && !strcmp(text, want)) {
                struct stat sb;
                bool gone = stat(u->data_path, &sb) < 0 && errno == ENOENT;
                if ((gone || same_bytes_as(u->data_path, data, true) == 1) &&
                    (unlink(u->data_path) == 0 || errno == ENOENT)) {
                    bfs_note(TAG, "dropped upload %s (%s): `butlerfs quarantine retry` was writing it when an "
                                  "earlier daemon stopped, and quarantine entry %s holds every byte of it",
                             u->u, at, data);
                    dropped = true;
                }
            }
            free(data);
            free(text);
            free(mark);
        }
        if (dd)
            closedir(dd);
        free(daydir);
    }
    if (q)
        closedir(q);
    free(want);
    free(at);
    if (dropped)
        u->st = S_ANNOUNCED;
    return dropped;
}

static int step_quarantined(bfs_ingest *ing, struct bfs_upload *u)
{
    char day[16];
    time_t now = time(NULL);
    struct tm tm;
    strftime(day, sizeof day, "%Y-%m-%d", gmtime_r(&now, &tm));
    char *qd = bfs_asprintf("%s/%s/%s.data", ing->quarantine, day, u->u);
    char *qr = bfs_asprintf("%s/%s/%s.reason", ing->quarantine, day, u->u);
    int ret = qd && qr ? bfs_make_parents(qd, true) : -ENOMEM;
    bool moved = false; /* by this step (ENOENT: by one before a restart, maybe on another day) */
    if (ret == 0) {
        if (rename(u->data_path, qd) == 0)
            moved = true;
        else if (errno != ENOENT)
            ret = -errno;
    }
    if (ret == 0) {
        char *text = reason_text(ing, u);
        ret = text ? durable_write_reserved(ing, qr, text) : -ENOMEM;
        free(text);
    }
    if (ret == 0) {
        char *d = bfs_dir_of(qd);
        ret = bfs_fsync_dir(d);
        free(d);
    }
    if (ret == 0) {
        bfs_warn(TAG, "quarantined %s written as %s in %s: %s", u->u, u->name, u->run,
                 u->reason ? u->reason : "?");
        append_event(ing, u, moved ? qd : NULL);
        if (u->replica && u->pair[0]) /* a paired replica (a sidecar has no pair) */
            finish_pair(ing, u);
        u->st = S_ANNOUNCED;
    }
    free(qd);
    free(qr);
    return ret;
}

/* ANNOUNCED: nothing reads u's bytes through the daemon any more (the
 * seal's checks, the hash and the merge are done, and they are durable),
 * so their pages leave the page cache now instead of aging out of it.  A
 * stream of images then reuses the same pages instead of taking fresh
 * ones: on the virtual machines of docs/performance.md (2026-12-06) that
 * halves the time of 189 files of 32 MiB written one after another.  A
 * reader of the dataset afterwards (the transfer queue, a staging tree's
 * consumer) reads it from the disk.  ingest.page_cache: keep turns it off.
 * A hint: a failure changes nothing. */
static void drop_pages(struct bfs_upload *u)
{
    if (u->fd >= 0 && u->ing->cfg->drop_pages)
        (void)posix_fadvise(u->fd, 0, 0, POSIX_FADV_DONTNEED);
}

/* One step out of u->st; the new state is durable when it returns 0. */
static int step(bfs_ingest *ing, struct bfs_upload *u)
{
    enum state from = u->st;
    int ret;
    switch (u->st) {
    case S_OPEN:
        if (!drop_cut_retry(ing, u))
            quarantine_as(u, ECANCELED, "%s", BFS_REASON_DAEMON_STOPPED);
        ret = 0;
        break;
    case S_SEALED: ret = step_sealed(ing, u); break;
    case S_WAITING: return 0; /* its partner's seal takes it on */
    case S_PREPARED: ret = step_prepared(ing, u); break;
    case S_PLACED: ret = step_placed(ing, u); break;
    case S_REGISTERED: ret = step_registered(ing, u); break;
    case S_QUARANTINED: ret = step_quarantined(ing, u); break;
    case S_ANNOUNCED:
        drop_pages(u);
        ret = unlink(u->intent_path) < 0 && errno != ENOENT ? -errno : 0;
        if (ret == 0)
            u->st = S_DONE;
        return ret;
    default: return 0;
    }
    /* the invariants of the table at the top of this file (debug builds) */
    assert(u->st >= from || ret < 0);
    assert(u->st != S_PREPARED || (u->rel && strlen(u->dataset_id) == 32));
    assert(u->st != S_PLACED || u->rel);
    assert(u->st != S_QUARANTINED || (u->err != 0 && u->reason));
    if (ret == 0 && u->st != from && durable_state(u->st))
        ret = write_intent(ing, u);
    else if (ret == 0 && u->st != from)
        kill_hook(ing, u);
    return ret;
}

/* The outcome a writer gets once u is REGISTERED or its quarantine done. */
static bool outcome_known(const struct bfs_upload *u, int *outcome)
{
    if (u->st == S_WAITING)
        return false; /* told by worker_main once it stays WAITING (settle_waiting_locked) */
    if (u->st == S_REGISTERED || (u->st >= S_ANNOUNCED && u->err == 0)) {
        *outcome = 0;
        return true;
    }
    if (u->st >= S_ANNOUNCED) {
        *outcome = -u->err;
        return true;
    }
    return false;
}

/* Step u to its end.  done_cb is told the outcome as soon as it is known. */
static void step_all(bfs_ingest *ing, struct bfs_upload *u, void (*told)(struct bfs_upload *, int))
{
    bool said = false;
    int guard = 0;
    while (u->st != S_DONE && u->st != S_WAITING && guard++ < 16) {
        int ret = step(ing, u);
        int outcome;
        if (!said && outcome_known(u, &outcome)) {
            said = true;
            if (told)
                told(u, outcome);
        }
        if (ret < 0) {
            if (u->st == S_REGISTERED && u->restage_at > 0)
                bfs_warn(TAG, "upload %s (%s in %s) is registered but not fully staged: the links are tried again "
                              "in %.0f s, and at the next mount", u->u, u->name, u->run, u->restage_at - bfs_mono_s());
            else
                bfs_err(TAG, "upload %s (%s in %s) stopped in state %s: %s; it is finished at the next mount",
                        u->u, u->name, u->run, state_names[u->st], strerror(-ret));
            if (!said && told)
                told(u, ret == -ENOSPC ? -ENOSPC : -EIO);
            return;
        }
    }
}

/* ---- workers ---------------------------------------------------------------- */

static void tell_waiters(struct bfs_upload *u, int outcome)
{
    bfs_ingest *ing = u->ing;
    pthread_mutex_lock(&ing->lock);
    struct waiter *w = u->waiters;
    u->waiters = NULL;
    u->finished = true;
    u->outcome = outcome;
    u->finished_at = bfs_mono_s();
    if (u->st == S_WAITING)
        ; /* accepted, not ingested yet: settle_waiting_locked */
    else if (outcome == 0 && !u->duplicate)
        ing->stats.ingested++;
    else if (outcome == 0)
        ing->stats.duplicates++;
    else
        ing->stats.quarantined++;
    pthread_mutex_unlock(&ing->lock);
    while (w) {
        struct waiter *next = w->next;
        w->done(w->ctx, outcome);
        free(w);
        w = next;
    }
}

static void *worker_main(void *arg)
{
    bfs_ingest *ing = arg;
    pthread_mutex_lock(&ing->lock);
    for (;;) {
        while (!ing->qhead && !ing->stop) {
            /* once a second: due staging retries and replica waits, even
             * when no writer comes (purge_locked) */
            struct timespec at;
            clock_gettime(CLOCK_REALTIME, &at);
            at.tv_sec += 1;
            if (pthread_cond_timedwait(&ing->cond, &ing->lock, &at) == ETIMEDOUT)
                purge_locked(ing);
        }
        if (!ing->qhead)
            break;
        struct bfs_upload *u = ing->qhead;
        ing->qhead = u->qnext;
        if (!ing->qhead)
            ing->qtail = NULL;
        ing->stats.in_flight++;
        pthread_mutex_unlock(&ing->lock);

        pthread_mutex_lock(&ing->lock);
        bool restaging = u->restaging;
        u->restaging = false;
        pthread_mutex_unlock(&ing->lock);
        if (restaging) {
            step_all(ing, u, NULL); /* REGISTERED: the links again, and the event */
            goto stepped;
        }
        if (u->expired) {
            pthread_mutex_lock(&ing->lock);
            bool side = is_sidecar_locked(u);
            char *shown = strdup(shown_name(u)); /* the name it waited under (rsync's after its rename) */
            pthread_mutex_unlock(&ing->lock);
            if (side)
                quarantine_as(u, ETIMEDOUT, "its file did not arrive within ingest.replica_wait");
            else
                quarantine_as(u, ETIMEDOUT, "its sidecar %s%s did not arrive within ingest.replica_wait",
                              shown ? shown : u->name, BFS_SIDECAR_SUFFIX);
            free(shown);
            step_all(ing, u, tell_waiters);
            goto stepped;
        }
        int ret = fdatasync(u->fd) < 0 ? -errno : 0;
        u->st = S_SEALED;
        if (ret == 0)
            ret = write_intent(ing, u);
        if (ret < 0) {
            bfs_err(TAG, "cannot seal upload %s: %s", u->u, strerror(-ret));
            tell_waiters(u, ret == -ENOSPC ? -ENOSPC : -EIO);
        } else {
            step_all(ing, u, tell_waiters);
        }
    stepped:
        release_pair(ing, u);
        bool wait = u->st == S_WAITING;
        struct waiter *accepted = NULL;
        if (wait)
            pthread_mutex_lock(&ing->pair_lock);
        pthread_mutex_lock(&ing->lock);
        ing->stats.in_flight--;
        u->busy = false;
        if (wait && settle_waiting_locked(ing, u)) {
            /* accepted (durable, waiting for its partner): close() 0.  Had
             * its partner gone WAITING meanwhile (their seals crossed), it
             * is sealed again and its writer gets the pair's outcome. */
            accepted = u->waiters;
            u->waiters = NULL;
            u->finished = true;
            u->outcome = 0;
            u->finished_at = bfs_mono_s();
        }
        pthread_cond_broadcast(&ing->cond);
        pthread_mutex_unlock(&ing->lock);
        if (wait)
            pthread_mutex_unlock(&ing->pair_lock);
        while (accepted) {
            struct waiter *next = accepted->next;
            accepted->done(accepted->ctx, 0);
            free(accepted);
            accepted = next;
        }
        bfs_upload_put(u); /* the queue's reference */
        reserve_make(ing); /* spent on a full disk: made again when there is room */
        pthread_mutex_lock(&ing->lock);
    }
    pthread_mutex_unlock(&ing->lock);
    return NULL;
}

/* Queue u for sealing (under ing->lock); takes a reference. */
static void enqueue_locked(bfs_ingest *ing, struct bfs_upload *u)
{
    u->busy = true;
    u->written = false;
    u->refs++;
    QUEUE_PUSH(ing->qhead, ing->qtail, u, qnext);
    pthread_cond_signal(&ing->cond);
}

/* ---- recovery ---------------------------------------------------------------- */

static int recover_one(bfs_ingest *ing, const char *uhex)
{
    struct bfs_upload *u = upload_new(ing, uhex);
    if (!u)
        return -ENOMEM;
    struct stat isb;
    if (stat(u->intent_path, &isb) < 0 && errno == ENOENT) {
        upload_free(u); /* a sidecar its file's recovery finished already */
        return 0;
    }
    json_error_t jerr;
    json_t *j = json_load_file(u->intent_path, 0, &jerr);
    const char *st = j ? json_string_value(json_object_get(j, "state")) : NULL;
    int ret = 0;
    u->st = S_OPEN;
    for (int s = 0; st && s <= S_DONE; s++)
        if (!strcmp(st, state_names[s]))
            u->st = (enum state)s;
    u->run = j ? json_str(j, "run") : NULL;
    u->dtype = j ? json_str(j, "dataset_type") : NULL;
    json_t *inbox = j ? json_object_get(j, "inbox") : NULL;
    u->inbox = inbox ? json_is_true(inbox) : !u->dtype; /* intents written before the key */
    u->name = j ? json_str(j, "name") : NULL;
    u->shown = j ? json_str(j, "shown") : NULL; /* renamed after the upload was made */
    u->dir = j ? json_str(j, "dir") : NULL;     /* absent in intents written before the key */
    u->obs_id = j ? json_str(j, "obs_id") : NULL;
    const char *ck = j ? json_string_value(json_object_get(j, "checksum")) : NULL;
    if (ck && strlen(ck) == 128)
        snprintf(u->checksum, sizeof u->checksum, "%s", ck);
    u->raft = j ? json_str(j, "raft") : NULL;
    u->sensor = j ? json_str(j, "sensor") : NULL;
    u->rel = j ? json_str(j, "path") : NULL;
    u->reason = j ? json_str(j, "reason") : NULL;
    const char *day = j ? json_string_value(json_object_get(j, "stage_day")) : NULL;
    if (day && strlen(day) == 10)
        snprintf(u->stage_day, sizeof u->stage_day, "%s", day);
    const char *id = j ? json_string_value(json_object_get(j, "dataset_id")) : NULL;
    if (id)
        snprintf(u->dataset_id, sizeof u->dataset_id, "%s", id);
    u->size = j ? (off_t)json_integer_value(json_object_get(j, "size")) : 0;
    u->err = j ? (int)json_integer_value(json_object_get(j, "errno")) : 0;
    u->duplicate = j && json_is_true(json_object_get(j, "duplicate"));
    u->replica = j && json_is_true(json_object_get(j, "replica"));
    const char *pair = j ? json_string_value(json_object_get(j, "pair")) : NULL;
    if (pair && strlen(pair) == 32)
        snprintf(u->pair, sizeof u->pair, "%s", pair);
    u->waiting_since = j ? json_number_value(json_object_get(j, "waiting_since")) : 0;
    u->formatter = j ? json_str(j, "formatter") : NULL;
    u->write_err = j ? (int)json_integer_value(json_object_get(j, "write_errno")) : 0;
    u->killed_by = j ? (int)json_integer_value(json_object_get(j, "killed_by")) : 0;
    json_t *more = j ? json_object_get(j, "more_detectors") : NULL;
    size_t nmore = json_array_size(more);
    if (nmore > 0 && nmore <= 1024 && (u->more_dets = calloc(nmore, sizeof *u->more_dets)) != NULL) {
        for (size_t i = 0; i < nmore; i++)
            u->more_dets[i] = (int64_t)json_integer_value(json_array_get(more, i));
        u->n_more = (int)nmore;
    }
    json_t *dn = j ? json_object_get(j, "dim_names") : NULL, *dv = j ? json_object_get(j, "dim_values") : NULL;
    u->ndims = (int)json_array_size(dn);
    if (u->ndims > BFS_MAX_DIMS || json_array_size(dv) != (size_t)u->ndims)
        u->ndims = 0;
    for (int i = 0; i < u->ndims; i++) {
        const char *a = json_string_value(json_array_get(dn, (size_t)i));
        const char *b = json_string_value(json_array_get(dv, (size_t)i));
        u->dim_names[i] = strdup(a ? a : "?");
        u->dim_values[i] = strdup(b ? b : "?");
    }
    json_decref(j);
    if (!u->run || !u->name) {
        /* an intent that cannot be read: keep the bytes, say why */
        free(u->run);
        free(u->name);
        u->run = strdup("?");
        u->name = strdup("?");
        quarantine_as(u, EIO, "its intent record could not be read (%s)", j ? "fields missing" : jerr.text);
    }
    u->fd = open(u->data_path, O_RDWR | O_CLOEXEC);
    /* the time the mount shows for it is its bytes' (what the writer's last
     * write or utimens set), not 1970: rsync compares it to skip a file */
    struct stat sb;
    if (u->fd >= 0 && fstat(u->fd, &sb) == 0)
        u->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    bfs_note(TAG, "finishing upload %s (%s in %s), left in state %s by an earlier daemon", u->u, u->name,
             u->run, state_names[u->st]);
    step_all(ing, u, NULL);
    ing->stats.recovered++;
    bool restage = u->st == S_REGISTERED && u->restage_at > 0;
    if (restage && u->replica)
        finish_pair(ing, u); /* registered: its sidecar is done (release_pair) */
    if (u->st == S_WAITING || restage) {
        /* still waiting for its partner: kept, listed, paired or expired
         * later; or registered with a staging link still failing: kept for
         * the retries (purge_locked), as one ingested by this mount is, but
         * not listed (its inbox time is over) */
        u->waiting = u->st == S_WAITING;
        u->finished = true;
        u->finished_at = bfs_mono_s() - (restage ? ing->cfg->inbox_ttl_ms / 1000.0 + 1 : 0);
        pthread_mutex_lock(&ing->lock);
        u->next = ing->uploads;
        ing->uploads = u;
        pthread_mutex_unlock(&ing->lock);
        return 0;
    }
    if (u->st != S_DONE)
        ret = -EIO;
    upload_free(u);
    return ret;
}

/* Whether name is "<32 hex>.<suffix>": a spool file of one upload. */
static bool spool_name(const char *name, const char *suffix)
{
    return strlen(name) == 33 + strlen(suffix) && strspn(name, "0123456789abcdef") == 32 && name[32] == '.' &&
           !strcmp(name + 33, suffix);
}

/* Remove the spool's half-made copies, left by a daemon killed while it
 * wrote them: "U.intent.tmp" (bfs_durable_write renames it over U.intent
 * only once it is whole), "U.data.merge" (the Header Service merge renames
 * it over U.data only once it is whole) and "U.data.plain" (the merge's
 * inflated copy of a gzip-wrapped file, read to make U.data.merge).  None
 * is ever the only copy of anything: the intent before it and the bytes
 * are still there. */
static void remove_stale_copies(bfs_ingest *ing, DIR *d)
{
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)) != NULL && n < 200000) {
        n++;
        if (!spool_name(de->d_name, "intent.tmp") && !spool_name(de->d_name, "data.merge") &&
            !spool_name(de->d_name, "data.plain"))
            continue;
        if (unlinkat(ing->spool_fd, de->d_name, 0) == 0)
            bfs_note(TAG, "removed %s/%s, a copy an earlier daemon stopped writing", ing->spool, de->d_name);
        else
            bfs_warn(TAG, "cannot remove %s/%s: %s", ing->spool, de->d_name, strerror(errno));
    }
    rewinddir(d);
}

static int recover(bfs_ingest *ing)
{
    DIR *d = opendir(ing->spool);
    if (!d)
        return -errno;
    remove_stale_copies(ing, d);
    struct dirent *de;
    int ret = 0, n = 0;
    while ((de = readdir(d)) != NULL && n < 100000) {
        if (spool_name(de->d_name, "intent")) {
            char u[33];
            snprintf(u, sizeof u, "%.32s", de->d_name);
            if (recover_one(ing, u) < 0)
                ret = -EIO;
            n++;
        }
    }
    /* bytes with no intent: killed inside bfs_upload_begin */
    rewinddir(d);
    while ((de = readdir(d)) != NULL && n < 200000) {
        if (spool_name(de->d_name, "data")) {
            struct bfs_upload *u = upload_new(ing, (char[33]){0});
            if (!u)
                break;
            snprintf(u->u, sizeof u->u, "%.32s", de->d_name);
            free(u->data_path);
            free(u->intent_path);
            u->data_path = bfs_asprintf("%s/%s", ing->spool, de->d_name);
            u->intent_path = bfs_asprintf("%s/%.32s.intent", ing->spool, de->d_name);
            struct stat sb;
            if (u->data_path && u->intent_path && stat(u->intent_path, &sb) < 0) {
                u->run = strdup("?");
                u->name = strdup("?");
                quarantine_as(u, ECANCELED, "%s (the daemon stopped while the file was created)", BFS_REASON_NO_INTENT);
                step_all(ing, u, NULL);
            }
            upload_free(u);
            n++;
        }
    }
    closedir(d);
    return ret;
}

/* ---- public ---------------------------------------------------------------- */

/* Make REPO/.butlerfs (0700) and its spool, take the rw lock and check that
 * the spool and the datastore root share a file system.  The lock's
 * descriptor (>= 0; closing it releases the lock), or -errno with *errmsg. */
static int lock_repo(const char *repo_dir, const char *dir, const char *spool, const char *root, char **errmsg)
{
    if ((mkdir(dir, 0700) < 0 && errno != EEXIST) || (mkdir(spool, 0700) < 0 && errno != EEXIST)) {
        int ret = -errno;
        bfs_set_errmsg(errmsg, "cannot make the spool directory %s: %s", spool, strerror(-ret));
        return ret;
    }
    chmod(dir, 0700);
    char *lock = bfs_asprintf("%s/lock", dir);
    int fd = lock ? open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600) : -1;
    free(lock);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int ret = errno == EWOULDBLOCK ? -EBUSY : -errno;
        if (fd >= 0)
            close(fd);
        if (ret == -EBUSY)
            bfs_set_errmsg(errmsg, "another butlerfs -o rw mount serves %s; only one may write to a "
                                   "repository at a time", repo_dir);
        else
            bfs_set_errmsg(errmsg, "cannot lock %s: %s", repo_dir, strerror(-ret));
        return ret;
    }
    struct stat a, b;
    if (stat(spool, &a) < 0 || stat(root, &b) < 0 || a.st_dev != b.st_dev) {
        close(fd);
        bfs_set_errmsg(errmsg, "the spool %s and the datastore root %s are not on one file system "
                               "(ingest moves files with rename)", spool, root);
        return -EXDEV;
    }
    return fd;
}

/* Each staging tree exists (made if missing) on the datastore's file
 * system: hard links cannot cross file systems. */
/* The quarantine directory and the events file: the configuration's, or
 * their defaults in the repository's .butlerfs.  NULL when out of memory. */
static char *quarantine_of(const bfs_ingest_config *cfg, const char *repo_dir)
{
    return cfg->quarantine_dir ? strdup(cfg->quarantine_dir) : bfs_asprintf("%s/.butlerfs/quarantine", repo_dir);
}

static char *events_of(const bfs_ingest_config *cfg, const char *repo_dir)
{
    return cfg->events_file ? strdup(cfg->events_file) : bfs_asprintf("%s/.butlerfs/events.jsonl", repo_dir);
}

/* dir (made when missing) must be on the file system of ref: a directory
 * whose files arrive by link or rename (how says which, for the message). */
static int check_same_fs(const char *dir, const char *ref, const char *ref_kind, bool private_dirs,
                         const char *kind, const char *how, char **errmsg)
{
    struct stat r, st;
    if (stat(ref, &r) < 0)
        return -errno;
    char *probe = bfs_asprintf("%s/x", dir);
    int ret = probe ? bfs_make_parents(probe, private_dirs) : -ENOMEM;
    free(probe);
    if (ret == 0 && stat(dir, &st) < 0)
        ret = -errno;
    if (ret < 0) {
        bfs_set_errmsg(errmsg, "cannot make %s %s: %s", kind, dir, strerror(-ret));
        return ret;
    }
    if (st.st_dev != r.st_dev) {
        bfs_set_errmsg(errmsg, "%s %s is on another file system than the %s %s (%s, which cannot cross file "
                               "systems)", kind, dir, ref_kind, ref, how);
        return -EXDEV;
    }
    return 0;
}

/* What the configuration names must work before anything is mounted:
 * staging trees (hard links from the datastore), the quarantine (renames
 * from the spool) and the events file (appended to). */
static int check_places(const bfs_ingest_config *cfg, const char *datastore_root, const char *spool,
                        const char *quarantine, const char *events, char **errmsg)
{
    int ret = 0;
    for (int i = 0; ret == 0 && cfg && i < cfg->n_staging; i++)
        ret = check_same_fs(cfg->staging[i], datastore_root, "datastore", false, "staging tree",
                            "files are hard-linked into staging trees", errmsg);
    if (ret == 0)
        ret = check_same_fs(quarantine, spool, "spool", true, "quarantine directory",
                            "refused files are renamed there from the spool, never copied", errmsg);
    if (ret == 0) {
        int fd = bfs_make_parents(events, false) == 0 ? open(events, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)
                                                      : -1;
        if (fd < 0) {
            ret = -errno;
            bfs_set_errmsg(errmsg, "cannot open the events file %s: %s", events, strerror(errno));
        } else {
            close(fd);
        }
    }
    return ret;
}

int bfs_ingest_check(const char *repo_dir, const char *datastore_root, const bfs_ingest_config *cfg,
                     char **errmsg)
{
    char *dir = bfs_asprintf("%s/.butlerfs", repo_dir), *spool = bfs_asprintf("%s/.butlerfs/spool", repo_dir);
    char *quarantine = quarantine_of(cfg, repo_dir), *events = events_of(cfg, repo_dir);
    int ret = dir && spool && quarantine && events ? lock_repo(repo_dir, dir, spool, datastore_root, errmsg) : -ENOMEM;
    if (ret >= 0) {
        close(ret);
        ret = check_places(cfg, datastore_root, spool, quarantine, events, errmsg);
    }
    free(dir);
    free(spool);
    free(quarantine);
    free(events);
    return ret;
}

int bfs_ingest_open(const char *repo_dir, const char *datastore_root, bfs_registry *reg,
                    const bfs_ingest_config *cfg, struct bfs_transfer *transfer, struct bfs_http *http,
                    bfs_ingest **out, char **errmsg)
{
    *out = NULL;
    bfs_ingest *ing = calloc(1, sizeof *ing);
    if (!ing)
        return -ENOMEM;
    ing->reg = reg;
    ing->cfg = cfg;
    ing->transfer = transfer;
    ing->http = http;
    if (cfg->webhook && http && bfs_webhook_new(cfg->webhook, http, (size_t)cfg->webhook_queue, 10000,
                                                &ing->webhook) < 0)
        bfs_warn(TAG, "cannot start the webhook: events are only written to the events file");
    ing->lock_fd = ing->spool_fd = -1;
    ing->kill_at = getenv("BFS_INGEST_KILL_AT");
    pthread_mutex_init(&ing->lock, NULL);
    pthread_mutex_init(&ing->reg_lock, NULL);
    pthread_mutex_init(&ing->pair_lock, NULL);
    pthread_cond_init(&ing->cond, NULL);
    pthread_cond_init(&ing->hwake, NULL);
    pthread_cond_init(&ing->hdone, NULL);
    size_t rl = strlen(datastore_root);
    ing->repo = strdup(repo_dir);
    ing->root = rl && datastore_root[rl - 1] == '/' ? strdup(datastore_root) : bfs_asprintf("%s/", datastore_root);
    ing->dir = bfs_asprintf("%s/.butlerfs", repo_dir);
    ing->spool = bfs_asprintf("%s/.butlerfs/spool", repo_dir);
    ing->reserve = bfs_asprintf("%s/.butlerfs/reserve", repo_dir);
    ing->quarantine = quarantine_of(cfg, repo_dir);
    ing->events = events_of(cfg, repo_dir);
    ing->placed_mode = placed_mode_of(ing->root);
    int ret = 0;
    if (!ing->repo || !ing->root || !ing->dir || !ing->spool || !ing->reserve || !ing->quarantine || !ing->events) {
        ret = -ENOMEM;
        goto fail;
    }
    ing->lock_fd = lock_repo(repo_dir, ing->dir, ing->spool, ing->root, errmsg);
    if (ing->lock_fd < 0) {
        ret = ing->lock_fd;
        goto fail;
    }
    ing->spool_fd = open(ing->spool, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (ing->spool_fd < 0) {
        ret = -errno;
        goto fail;
    }
    if (recover(ing) < 0)
        bfs_warn(TAG, "some uploads left by an earlier daemon could not be finished; they stay in %s",
                 ing->spool);
    reserve_make(ing);
    /* replicas and sidecars left WAITING whose partners are here too */
    pthread_mutex_lock(&ing->pair_lock);
    pthread_mutex_lock(&ing->lock);
    for (struct bfs_upload *u = ing->uploads; u; u = u->next)
        if (u->waiting)
            settle_waiting_locked(ing, u);
    pthread_mutex_unlock(&ing->lock);
    pthread_mutex_unlock(&ing->pair_lock);
    ing->nworkers = cfg->workers > 0 ? cfg->workers : 1;
    ing->workers = calloc((size_t)ing->nworkers, sizeof *ing->workers);
    if (!ing->workers) {
        ret = -ENOMEM;
        goto fail;
    }
    /* without the hasher, seals hash the whole file */
    ing->hasher_running = pthread_create(&ing->hasher, NULL, hasher_main, ing) == 0;
    for (int i = 0; i < ing->nworkers; i++) {
        if ((ret = -pthread_create(&ing->workers[i], NULL, worker_main, ing)) != 0) {
            ing->nworkers = i;
            bfs_ingest_close(ing);
            return ret;
        }
    }
    *out = ing;
    return 0;
fail:
    if (errmsg && !*errmsg)
        bfs_set_errmsg(errmsg, "cannot start ingest in %s: %s", repo_dir, strerror(-ret));
    ing->nworkers = 0;
    bfs_ingest_close(ing);
    return ret;
}

void bfs_ingest_close(bfs_ingest *ing)
{
    if (!ing)
        return;
    pthread_mutex_lock(&ing->lock);
    ing->stop = true;
    pthread_cond_broadcast(&ing->cond);
    pthread_cond_broadcast(&ing->hwake);
    pthread_mutex_unlock(&ing->lock);
    for (int i = 0; i < ing->nworkers; i++)
        pthread_join(ing->workers[i], NULL);
    if (ing->hasher_running)
        pthread_join(ing->hasher, NULL);
    bfs_webhook_free(ing->webhook); /* after the workers that post to it */
    /* uploads the kernel still references: their spool and intent stay
     * for the next mount, except those never written (a `touch`, or a
     * `>file` closed without bytes), which hand nothing over, as when their
     * last reference goes (bfs_upload_put); left, the next mount would
     * quarantine an empty file as one its writer never closed */
    for (struct bfs_upload *u = ing->uploads, *next; u; u = next) {
        next = u->next;
        if (!u->written_ever && !u->finished && !u->busy) {
            unlink(u->data_path);
            unlink(u->intent_path);
        }
        upload_free(u);
    }
    if (ing->lock_fd >= 0)
        close(ing->lock_fd); /* releases the flock */
    if (ing->spool_fd >= 0)
        close(ing->spool_fd);
    pthread_cond_destroy(&ing->cond);
    pthread_cond_destroy(&ing->hwake);
    pthread_cond_destroy(&ing->hdone);
    pthread_mutex_destroy(&ing->reg_lock);
    pthread_mutex_destroy(&ing->pair_lock);
    pthread_mutex_destroy(&ing->lock);
    free(ing->workers);
    free(ing->repo);
    free(ing->root);
    free(ing->dir);
    free(ing->spool);
    free(ing->reserve);
    free(ing->quarantine);
    free(ing->events);
    free(ing);
}

/* The storage class of a created dataset type holding file name, and the
 * formatter of its file records (formatter_of), by extension. */
static const struct {
    const char *ext, *storage_class;
} class_by_ext[] = {
    {".fits", "ExposureF"}, {".fit", "ExposureF"}, {".fz", "ExposureF"},
    {".json", "StructuredDataDict"}, {".yaml", "StructuredDataDict"}, {".yml", "StructuredDataDict"},
    {".parq", "DataFrame"}, {".parquet", "DataFrame"},
};

int bfs_ingest_make_dataset_type(bfs_ingest *ing, const char *name, const char *const dims[], int ndims,
                                 const char *file_name)
{
    if (!ing->cfg->create_dataset_types)
        return -EPERM;
    /* the Butler keys a dataset by all its type's required dimensions */
    for (int i = 0; i < ndims; i++) {
        const bfs_dimension *d = bfs_registry_dimension_by_name(ing->reg, dims[i]);
        for (int r = 0; d && r < d->n_requires; r++) {
            bool have = false;
            for (int j = 0; j < ndims && !have; j++)
                have = !strcmp(dims[j], d->requires[r]->name);
            if (!have) {
                bfs_warn(TAG, "dataset type %s not created: its path gives %s but not %s, which %s requires",
                         name, d->name, d->requires[r]->name, d->name);
                return -EINVAL;
            }
        }
    }
    char exts[NAME_MAX + 1];
    extension_of(file_name, exts, sizeof exts); /* rsync's ".c.yaml.Ab3dE9" is a ".yaml" */
    const char *ext = strrchr(exts, '.'), *sc = ing->cfg->default_storage_class;
    for (size_t i = 0; ext && i < sizeof class_by_ext / sizeof *class_by_ext; i++)
        if (!strcasecmp(ext, class_by_ext[i].ext))
            sc = class_by_ext[i].storage_class;
    if (!sc) {
        bfs_warn(TAG, "dataset type %s not created: no storage class for a file named %s (set "
                      "ingest.default_storage_class)", name, file_name);
        return -EINVAL;
    }
    pthread_mutex_lock(&ing->reg_lock);
    int ret = bfs_registry_add_dataset_type(ing->reg, name, sc, dims, ndims, false);
    if (ret == 0)
        ret = bfs_registry_refresh(ing->reg) < 0 ? -EIO : 0;
    pthread_mutex_unlock(&ing->reg_lock);
    if (ret == -EEXIST) {
        bfs_warn(TAG, "dataset type %s not created: it is defined already, with other dimensions or "
                      "another storage class than %s", name, sc);
        return -EINVAL;
    }
    if (ret < 0)
        bfs_warn(TAG, "cannot create dataset type %s: %s", name, strerror(-ret));
    else
        bfs_note(TAG, "created dataset type %s (storage class %s)", name, sc);
    return ret;
}

bool bfs_ingest_readonly(const bfs_ingest *ing, const char *run)
{
    for (int i = 0; i < ing->cfg->n_readonly_collections; i++)
        if (fnmatch(ing->cfg->readonly_collections[i], run, 0) == 0)
            return true;
    return false;
}

int bfs_ingest_remove(bfs_ingest *ing, const char *run, const char *dataset_id)
{
    if (!ing->cfg->allow_remove)
        return -EPERM;
    if (bfs_ingest_readonly(ing, run))
        return -EROFS;
    char *msg = NULL;
    int ret = bfs_retention_remove(ing->repo, ing->transfer ? bfs_transfer_cfg(ing->transfer) : NULL, run,
                                   dataset_id, &msg);
    if (ret == 0)
        bfs_note(TAG, "removed dataset %s of %s (an unlink in the mount; ingest.allow_remove)", dataset_id, run);
    else
        bfs_warn(TAG, "not removing dataset %s of %s: %s", dataset_id, run, msg ? msg : strerror(-ret));
    free(msg);
    return ret;
}

int bfs_ingest_make_run(bfs_ingest *ing, const char *run)
{
    if (bfs_ingest_readonly(ing, run))
        return -EROFS;
    pthread_mutex_lock(&ing->reg_lock);
    int ret = bfs_registry_add_run(ing->reg, run, NULL);
    pthread_mutex_unlock(&ing->reg_lock);
    if (ret < 0 && ret != -EEXIST)
        bfs_warn(TAG, "cannot create RUN collection %s: %s", run, strerror(-ret));
    return ret;
}

/* The name the writer sees now (a rename changes it; u->name stays the
 * name the upload was created with, for its records).  Under ing->lock. */
static const char *shown_name(const struct bfs_upload *u)
{
    return u->shown ? u->shown : u->name;
}

/* Whether u was created at target t (its name included), under ing->lock.
 * A raw's dimensions come from its headers later: only run and name count. */
/* A refused file leaves its name at once: its bytes are in quarantine, and
 * the writer may write that name again (under ing->lock). */
static bool refused(const struct bfs_upload *u)
{
    return u->finished && u->outcome != 0;
}

/* An ingested name leaves its inbox inbox_ttl after its seal, whether or not
 * the kernel still holds a reference to it (it keeps one for as long as it
 * caches the inode; only the memory waits for that) (under ing->lock). */
static bool past_inbox_ttl(const bfs_ingest *ing, const struct bfs_upload *u, double now)
{
    return u->finished && !u->busy && !u->waiting && now - u->finished_at > ing->cfg->inbox_ttl_ms / 1000.0;
}

/* Whether u is a name a writer gave (a raw's in its RUN's own directory, or
 * a file's at a dataId path; not a replica's, which pairs with its sidecar
 * by name), and whether it was ingested: such a name only shows its
 * dataset, so it may be written anew (bfs_upload_rewrite) or removed alone
 * (bfs_upload_discard) (under ing->lock). */
static bool writer_name(const struct bfs_upload *u)
{
    return !u->replica;
}

static bool ingested_writer_name(const struct bfs_upload *u)
{
    return writer_name(u) && u->finished && u->outcome == 0;
}

/* Whether u is listed in run's own directory (an inbox name, not refused,
 * its inbox_ttl not over) (under ing->lock). */
static bool in_inbox(const bfs_ingest *ing, const struct bfs_upload *u, const char *run, double now)
{
    return u->inbox && !refused(u) && !u->discarded && !past_inbox_ttl(ing, u, now) && !strcmp(u->run, run);
}

static bool same_target(const struct bfs_upload *u, const bfs_ingest_target *t)
{
    if (strcmp(u->run, t->run) || (t->name && strcmp(shown_name(u), t->name)) || u->inbox != !t->dataset_type)
        return false;
    if (u->inbox)
        return true;
    if (strcmp(u->dtype, t->dataset_type) || u->ndims != t->ndims)
        return false;
    for (int i = 0; i < u->ndims; i++)
        if (strcmp(u->dim_values[i], t->dim_values[i]))
            return false;
    return true;
}

/* The place u was written at, as a target (borrowing u's strings; under
 * ing->lock, or for a path upload, whose place is fixed at its begin): its
 * RUN's own directory for a raw, its dataId for a file at a dataId path. */
static bfs_ingest_target place_of(const struct bfs_upload *u, const char *name)
{
    bfs_ingest_target t = {.run = u->run, .name = name, .dir = u->dir};
    if (!u->inbox) {
        t.dataset_type = u->dtype;
        t.ndims = u->ndims;
        t.dim_names = (const char *const *)u->dim_names;
        t.dim_values = (const char *const *)u->dim_values;
    }
    return t;
}

/* Free uploads nobody references whose inbox time is over (under ing->lock). */
static void purge_locked(bfs_ingest *ing)
{
    double now = bfs_mono_s(), real = bfs_real_s();
    for (struct bfs_upload **pp = &ing->uploads; *pp;) {
        struct bfs_upload *u = *pp;
        if (u->waiting && !u->busy && real - u->waiting_since > ing->cfg->replica_wait_ms / 1000.0) {
            u->waiting = false;
            u->expired = true;
            enqueue_locked(ing, u); /* a worker quarantines it */
        }
        if (u->restage_at > 0 && !u->busy && now >= u->restage_at) {
            u->restage_at = 0;
            u->restaging = true;
            enqueue_locked(ing, u); /* a worker makes the missing staging links */
        }
        if (u->refs == 0 && !u->held && !u->restage_at && past_inbox_ttl(ing, u, now)) {
            *pp = u->next;
            upload_free(u);
        } else {
            pp = &u->next;
        }
    }
}

/* A create refused before any byte was taken (a read-only collection, a
 * dataId without records): the writer's open fails, and the log and an event
 * line say so, and the status counts it. */
static int refuse_create(bfs_ingest *ing, const bfs_ingest_target *t, int err, const char *why)
{
    struct bfs_upload r = {.ing = ing, .run = (char *)t->run, .dtype = (char *)t->dataset_type,
                           .name = (char *)t->name, .err = err, .refused = true};
    r.reason = bfs_asprintf("%s in %s: %s; no bytes were taken", t->name, t->run, why);
    r.ndims = t->ndims < BFS_MAX_DIMS ? t->ndims : BFS_MAX_DIMS;
    for (int i = 0; i < r.ndims; i++) {
        r.dim_names[i] = (char *)t->dim_names[i];
        r.dim_values[i] = (char *)t->dim_values[i];
    }
    bfs_warn(TAG, "refused %s", r.reason ? r.reason : why);
    append_event(ing, &r, NULL);
    pthread_mutex_lock(&ing->lock);
    ing->stats.refused++;
    pthread_mutex_unlock(&ing->lock);
    free(r.reason);
    return -err;
}

/* Whether name can be a written file's name: one path component, and
 * JSON text (the intent record and the event hold it).  0, or -EINVAL or
 * -EILSEQ (not UTF-8: what file systems that take only UTF-8 names say)
 * with *why set. */
static int name_fault(const char *name, const char **why)
{
    if (!bfs_is_one_component(name)) {
        *why = "a name must not be empty, . or .., nor hold a control character";
        return -EINVAL;
    }
    if (!bfs_is_utf8(name)) {
        *why = "the name is not valid UTF-8";
        return -EILSEQ;
    }
    return 0;
}

/* A file at a dataId path whose dimension records the registry lacks
 * (an unknown detector, exposure, visit...) is refused at its create, not
 * after its bytes were copied: -ENOENT, logged, with an event line.  A raw
 * the ingest translates is checked only for what its headers cannot bring
 * (a detector of an instrument the repository has).  0 too when the
 * registry cannot say; the registration then decides. */
static int path_records_fault(bfs_ingest *ing, const bfs_ingest_target *t)
{
    if (!t->dataset_type || t->replica)
        return 0;
    const char *ins = dim_value(t->dim_names, t->dim_values, t->ndims, "instrument");
    struct missing_record m = {.names = t->dim_names, .values = t->dim_values, .n = t->ndims,
                               .from_headers = translates_raw_at(ing, t->dataset_type, ins)};
    if (with_registry(ing, missing_record_tx, &m) < 0 || !m.text[0])
        return 0;
    char *dataid = data_id_text((char *const *)t->dim_names, (char *const *)t->dim_values, t->ndims, false);
    char *why = bfs_asprintf(MISSING_RECORD_WHY, m.text, dataid ? dataid : "?", m.source);
    int ret = refuse_create(ing, t, ENOENT, why ? why : "the registry has no record of part of the dataId");
    free(why);
    free(dataid);
    return ret;
}

/* bfs_upload_may_begin's checks but the registry's (bfs_upload_begin makes
 * them for every file, also one written again at its own place). */
static int begin_fault(bfs_ingest *ing, const bfs_ingest_target *t)
{
    if (t->ndims < 0 || t->ndims > BFS_MAX_DIMS)
        return -EINVAL;
    const char *why = NULL;
    int ret = name_fault(t->name, &why);
    for (int i = 0; i < t->ndims && ret == 0; i++)
        if (!bfs_is_utf8(t->dim_values[i])) {
            why = "a value of its dataId is not valid UTF-8";
            ret = -EILSEQ;
        }
    if (ret < 0) { /* no event: its JSON could not hold the name */
        bfs_warn(TAG, "refused a file named %s in %s: %s; no bytes were taken", t->name, t->run, why);
        return ret;
    }
    if (bfs_ingest_readonly(ing, t->run))
        return refuse_create(ing, t, EROFS, "a read-only collection (ingest.readonly_collections)");
    return 0;
}

int bfs_upload_may_begin(bfs_ingest *ing, const bfs_ingest_target *t)
{
    int ret = begin_fault(ing, t);
    return ret < 0 ? ret : path_records_fault(ing, t);
}

int bfs_upload_begin(bfs_ingest *ing, const bfs_ingest_target *t, uid_t uid, bfs_upload **out)
{
    *out = NULL;
    int ret = begin_fault(ing, t);
    if (ret < 0)
        return ret;
    if (t->dataset_type && !bfs_catalog_dataset_type(bfs_registry_catalog(ing->reg), t->dataset_type))
        return -ENOENT; /* a type the path creates is made before (bfs_ingest_make_dataset_type) */
    pthread_mutex_lock(&ing->lock);
    purge_locked(ing);
    bool busy = false;
    for (struct bfs_upload *u = ing->uploads; u && !busy; u = u->next)
        busy = !u->finished && !u->discarded && same_target(u, t);
    pthread_mutex_unlock(&ing->lock);
    if (busy)
        return -ETXTBSY;
    unsigned char rnd[16];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        return -EIO;
    char hex[33];
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
    struct bfs_upload *u = upload_new(ing, hex);
    if (!u)
        return -ENOMEM;
    u->run = strdup(t->run);
    u->name = strdup(t->name);
    u->dir = t->dir ? strdup(t->dir) : NULL;
    u->dtype = t->dataset_type ? strdup(t->dataset_type) : NULL;
    u->inbox = !t->dataset_type;
    u->replica = t->replica && !t->dataset_type;
    u->ndims = t->ndims;
    bool oom = !u->run || !u->name || (t->dir && !u->dir) || (t->dataset_type && !u->dtype);
    for (int i = 0; i < t->ndims; i++) {
        u->dim_names[i] = strdup(t->dim_names[i]);
        u->dim_values[i] = strdup(t->dim_values[i]);
        oom |= !u->dim_names[i] || !u->dim_values[i];
    }
    u->uid = uid;
    u->mtime_ns = now_ns();
    u->st = S_OPEN;
    ret = oom ? -ENOMEM : 0;
    if (ret == 0 && (u->fd = open(u->data_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0)
        ret = -errno;
    if (ret == -ENOENT && bfs_make_parents(u->data_path, true) == 0) {
        /* the spool was removed under the mount (a clean-up): made again,
         * private, rather than refusing every file */
        bfs_warn(TAG, "the spool %s was gone; made again", ing->spool);
        ret = (u->fd = open(u->data_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0 ? -errno : 0;
    }
    if (ret == 0)
        ret = write_intent(ing, u);
    if (ret < 0) {
        if (u->fd >= 0)
            unlink(u->data_path);
        upload_free(u);
        return ret;
    }
    u->refs = 1;
    u->writer_open = true; /* the creator's open file */
    pthread_mutex_lock(&ing->lock);
    u->next = ing->uploads;
    ing->uploads = u;
    pthread_mutex_unlock(&ing->lock);
    *out = u;
    return 0;
}

int bfs_upload_find(bfs_ingest *ing, const bfs_ingest_target *t, bfs_upload **out)
{
    pthread_mutex_lock(&ing->lock);
    purge_locked(ing);
    struct bfs_upload *found = NULL;
    double now = bfs_mono_s();
    for (struct bfs_upload *u = ing->uploads; u && !found; u = u->next)
        if (!refused(u) && !u->discarded && !past_inbox_ttl(ing, u, now) && same_target(u, t))
            found = u; /* the newest of that name: the list is newest first */
    if (found)
        found->refs++;
    pthread_mutex_unlock(&ing->lock);
    *out = found;
    return found ? 0 : -ENOENT;
}

/* A replica's or sidecar's name decides its pairing, at a recovery too: one
 * renamed in SEALED or WAITING has the new name written into its intent
 * before the rename is answered.  rsync renames .NAME.XXXXXX after the close
 * that made it WAITING; a kill -9 before the intent is written leaves the
 * old name, and the writer was not told the rename happened.  A replica
 * whose seal or pairing is under way (a worker owns its intent) is not
 * renamed: EBUSY.  Waiting for that worker could deadlock, since the kernel
 * holds the directory's lock during the rename and a refused seal's reply
 * invalidates a name in that directory (fs/ops_write.c, seal_done). */
int bfs_upload_rename(bfs_upload *u, const char *name)
{
    const char *why = NULL;
    int ret = name_fault(name, &why);
    if (ret < 0) {
        bfs_warn(TAG, "refused to rename a file of %s to %s: %s", u->run, name, why);
        return ret;
    }
    char *copy = strdup(name);
    if (!copy)
        return -ENOMEM;
    bfs_ingest *ing = u->ing;
    pthread_mutex_lock(&ing->lock);
    if (u->replica && (u->busy || u->held || u->renaming)) {
        pthread_mutex_unlock(&ing->lock);
        free(copy);
        return -EBUSY;
    }
    /* no worker steps u (not busy, not held): its state is settled */
    bool durable = u->replica && (u->st == S_SEALED || u->st == S_WAITING);
    bool waiting = u->waiting;
    free(u->shown_old);
    u->shown_old = u->shown;
    u->shown = copy;
    if (durable) {
        /* not WAITING while its intent is written: nobody pairs it or
         * expires it (both would write that intent too) */
        u->renaming = true;
        u->waiting = false;
    }
    pthread_mutex_unlock(&ing->lock);
    ret = durable ? write_intent(ing, u) : 0;
    pthread_mutex_lock(&ing->pair_lock); /* the new name may pair it */
    pthread_mutex_lock(&ing->lock);
    if (ret < 0) {
        /* not renamed: the intent keeps the old name, and so does the mount */
        char *tried = u->shown;
        u->shown = u->shown_old;
        u->shown_old = tried;
    }
    u->renaming = false;
    /* the partner it waits for is looked for again under the new name */
    if (waiting)
        settle_waiting_locked(ing, u);
    pthread_mutex_unlock(&ing->lock);
    pthread_mutex_unlock(&ing->pair_lock);
    return ret;
}

int bfs_upload_take_writer(bfs_upload *u)
{
    pthread_mutex_lock(&u->ing->lock);
    int ret = u->finished || u->busy ? -EPERM : u->writer_open ? -ETXTBSY : 0;
    if (ret == 0)
        u->writer_open = true;
    pthread_mutex_unlock(&u->ing->lock);
    return ret;
}

int bfs_upload_rewrite(bfs_upload *u, uid_t uid, bfs_upload **out)
{
    *out = NULL;
    bfs_ingest *ing = u->ing;
    pthread_mutex_lock(&ing->lock);
    /* a worker may still make its staging links (busy), which does not
     * change what the name is */
    bool again = ingested_writer_name(u);
    char *name = again ? strdup(shown_name(u)) : NULL;
    pthread_mutex_unlock(&ing->lock);
    int ret = !again ? -EPERM : !name ? -ENOMEM : 0;
    if (ret == 0) {
        /* the same place (a path upload's is fixed at its begin, a raw's
         * RUN too) */
        bfs_ingest_target t = place_of(u, name);
        ret = bfs_upload_begin(ing, &t, uid, out);
    }
    free(name);
    return ret;
}

int bfs_upload_take_reader(bfs_upload *u)
{
    pthread_mutex_lock(&u->ing->lock);
    int ret = !u->finished && u->written_ever ? -EBUSY : 0;
    pthread_mutex_unlock(&u->ing->lock);
    return ret;
}

int bfs_upload_discard(bfs_upload *u)
{
    pthread_mutex_lock(&u->ing->lock);
    /* an ingested file's name only shows the dataset, which stays */
    bool ingested = ingested_writer_name(u);
    int ret = ingested ? 0 : u->finished || u->written_ever ? -EPERM : u->writer_open || u->busy ? -EBUSY : 0;
    if (ret == 0)
        u->discarded = true; /* no lookup or listing finds it; one never written is abandoned by
                              * bfs_upload_put with its last reference */
    if (ingested) {
        /* the name goes: the earlier uploads of that name (a copy run
         * twice) with it, or a lookup would find the one before */
        bfs_ingest_target t = place_of(u, shown_name(u));
        for (struct bfs_upload *v = u->ing->uploads; v; v = v->next)
            if (v != u && ingested_writer_name(v) && same_target(v, &t))
                v->discarded = true;
    }
    pthread_mutex_unlock(&u->ing->lock);
    return ret;
}

void bfs_upload_drop_writer(bfs_upload *u)
{
    pthread_mutex_lock(&u->ing->lock);
    u->writer_open = false;
    pthread_mutex_unlock(&u->ing->lock);
}

void bfs_upload_get(bfs_upload *u)
{
    pthread_mutex_lock(&u->ing->lock);
    u->refs++;
    pthread_mutex_unlock(&u->ing->lock);
}

void bfs_upload_put(bfs_upload *u)
{
    if (!u)
        return;
    bfs_ingest *ing = u->ing;
    pthread_mutex_lock(&ing->lock);
    bool abandon = false;
    if (--u->refs == 0 && !u->busy && !u->finished) {
        if (u->written_ever)
            enqueue_locked(ing, u); /* a writer that died: sealed as it is */
        else
            abandon = true;
    }
    if (abandon) {
        for (struct bfs_upload **pp = &ing->uploads; *pp; pp = &(*pp)->next) {
            if (*pp == u) {
                *pp = u->next;
                break;
            }
        }
    }
    pthread_mutex_unlock(&ing->lock);
    if (abandon) {
        /* nothing was handed over: no bytes, no seal */
        unlink(u->data_path);
        unlink(u->intent_path);
        upload_free(u);
    }
}

ssize_t bfs_upload_pwrite(bfs_upload *u, const void *buf, size_t len, off_t off)
{
    pthread_mutex_lock(&u->ing->lock);
    bool ok = !u->finished && !u->busy;
    if (ok) {
        u->written = true;
        u->written_ever = true;
    }
    pthread_mutex_unlock(&u->ing->lock);
    if (!ok)
        return -EBADF; /* sealed: an ingested or quarantined file does not change */
    ssize_t n = pwrite(u->fd, buf, len, off);
    if (n < 0 || (size_t)n < len) {
        /* a short or failed write (a full disk): the writer is told, and the
         * file can never be ingested as it is (the seal quarantines it) */
        int err = n < 0 ? errno : ENOSPC;
        pthread_mutex_lock(&u->ing->lock);
        if (!u->write_err)
            u->write_err = err;
        pthread_mutex_unlock(&u->ing->lock);
        return -err;
    }
    pthread_mutex_lock(&u->ing->lock);
    if (off + n > u->size)
        u->size = off + n;
    u->mtime_ns = now_ns();
    hash_note_change_locked(u->ing, u, off);
    pthread_mutex_unlock(&u->ing->lock);
    return n;
}

ssize_t bfs_upload_pread(bfs_upload *u, void *buf, size_t len, off_t off)
{
    ssize_t n = u->fd >= 0 ? pread(u->fd, buf, len, off) : -1;
    return n < 0 ? -errno : n;
}

int bfs_upload_truncate(bfs_upload *u, off_t size)
{
    pthread_mutex_lock(&u->ing->lock);
    bool ok = !u->finished && !u->busy;
    if (ok) {
        u->written = u->written_ever = true;
        u->size = size;
        u->mtime_ns = now_ns();
        /* the hasher reads only up to the size, so a shrink behind it
         * (under hash_claim) is a change there */
        hash_note_change_locked(u->ing, u, size);
    }
    pthread_mutex_unlock(&u->ing->lock);
    if (!ok)
        return -EPERM;
    if (ftruncate(u->fd, size) == 0)
        return 0;
    int err = errno;
    pthread_mutex_lock(&u->ing->lock);
    if (!u->write_err)
        u->write_err = err;
    pthread_mutex_unlock(&u->ing->lock);
    return -err;
}

void bfs_upload_stat(bfs_upload *u, bfs_upload_info *info)
{
    pthread_mutex_lock(&u->ing->lock);
    *info = (bfs_upload_info){.upload = u, .run = u->run, .name = shown_name(u), .size = u->size, .mtime_ns = u->mtime_ns,
                              .sealed = u->finished, .rewritable = writer_name(u), .outcome = u->outcome,
                              .dataset_id = u->finished && u->outcome == 0 ? u->dataset_id : NULL};
    if (info->dataset_id && u->dtype) {
        info->dataset_type = u->dtype;
        info->ndims = u->ndims;
        info->dim_names = (const char *const *)u->dim_names;
        info->dim_values = (const char *const *)u->dim_values;
    }
    pthread_mutex_unlock(&u->ing->lock);
}

void bfs_upload_writer_killed(bfs_upload *u, int sig)
{
    pthread_mutex_lock(&u->ing->lock);
    if (!u->finished && !u->busy && sig > 0)
        u->killed_by = sig;
    pthread_mutex_unlock(&u->ing->lock);
}

void bfs_upload_seal(bfs_upload *u, bfs_seal_done_fn done, void *ctx)
{
    bfs_ingest *ing = u->ing;
    struct waiter *w = calloc(1, sizeof *w);
    if (!w) {
        done(ctx, -ENOMEM);
        return;
    }
    w->done = done;
    w->ctx = ctx;
    pthread_mutex_lock(&ing->lock);
    if (!u->written_ever && !u->finished) {
        /* a close before any write: the close of one descriptor of several
         * (a shell's `>file` and dd open, dup2 and close the original before
         * writing); the file is sealed by a close after its bytes, or, if
         * none come, dropped when its last reference goes */
        pthread_mutex_unlock(&ing->lock);
        free(w);
        done(ctx, 0);
        return;
    }
    if (u->finished && !u->written) {
        int outcome = u->outcome;
        pthread_mutex_unlock(&ing->lock);
        free(w);
        done(ctx, outcome); /* nothing written since: the same outcome */
        return;
    }
    w->next = u->waiters;
    u->waiters = w;
    if (u->sealed_at == 0)
        u->sealed_at = bfs_mono_s();
    if (!u->busy)
        enqueue_locked(ing, u);
    pthread_mutex_unlock(&ing->lock);
}

struct seal_wait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int outcome;
};

static void seal_wait_done(void *arg, int outcome)
{
    struct seal_wait *w = arg;
    pthread_mutex_lock(&w->lock);
    w->done = true;
    w->outcome = outcome;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

int bfs_upload_seal_wait(bfs_upload *u)
{
    struct seal_wait w = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    bfs_upload_seal(u, seal_wait_done, &w);
    pthread_mutex_lock(&w.lock);
    while (!w.done)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
    return w.outcome;
}

struct inbox_entry {
    struct bfs_upload *u;
    const char *name;
    size_t age; /* its place in ing->uploads: 0 is the newest */
};

/* name order; of one name, the newest first */
static int inbox_order(const void *a, const void *b)
{
    const struct inbox_entry *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : x->age < y->age ? -1 : x->age > y->age;
}

int bfs_ingest_inbox(bfs_ingest *ing, const char *run, bfs_inbox_cb cb, void *ctx)
{
    /* a snapshot under the lock, then the callbacks without it */
    pthread_mutex_lock(&ing->lock);
    purge_locked(ing);
    double now = bfs_mono_s();
    size_t n = 0, age = 0;
    for (struct bfs_upload *u = ing->uploads; u; u = u->next)
        n += in_inbox(ing, u, run, now);
    struct inbox_entry *list = calloc(n ? n : 1, sizeof *list);
    size_t k = 0;
    for (struct bfs_upload *u = ing->uploads; list && u; u = u->next, age++)
        if (in_inbox(ing, u, run, now))
            list[k++] = (struct inbox_entry){u, shown_name(u), age};
    /* a name written again (bfs_upload_rewrite) is listed once: its newest
     * upload; the name order keeps a listing's offsets stable while new
     * names arrive */
    size_t kept = 0;
    if (list) {
        qsort(list, k, sizeof *list, inbox_order);
        for (size_t i = 0; i < k; i++) {
            if (kept > 0 && !strcmp(list[kept - 1].name, list[i].name))
                continue;
            list[i].u->refs++;
            list[kept++] = list[i];
        }
    }
    pthread_mutex_unlock(&ing->lock);
    if (!list)
        return -ENOMEM;
    int ret = 0;
    for (size_t i = 0; i < kept; i++) {
        bfs_upload_info info;
        if (ret == 0) {
            bfs_upload_stat(list[i].u, &info);
            ret = cb(ctx, &info);
        }
        bfs_upload_put(list[i].u);
    }
    free(list);
    return ret;
}

const char *bfs_ingest_quarantine_dir(const bfs_ingest *ing) { return ing->quarantine; }

void bfs_ingest_stats_get(bfs_ingest *ing, bfs_ingest_stats *st)
{
    pthread_mutex_lock(&ing->lock);
    *st = ing->stats;
    pthread_mutex_unlock(&ing->lock);
}
