/*
 * db_pg.c - the PostgreSQL engine of the registry seam (db.h, db_i.h);
 * the only file of butlerfs that includes <libpq-fe.h>.
 *
 * Production repositories are mounted by thousands of worker nodes, so the
 * server (or the PgBouncer in front of it, in transaction pooling mode)
 * sees every mount's connections.  Three things follow.
 *
 * The pool.  An engine has at most max_connections server connections
 * ("links"), opened lazily and closed once idle longer than idle_close_ms
 * (a reaper thread sleeps until the oldest idle link expires, so an idle
 * mount holds no connection).  Idle links are reused last-in first-out,
 * so the pool shrinks when the load drops.  A thread that finds every link
 * busy waits on a condition for at most statement_timeout_ms, then gets
 * -ETIMEDOUT.  A link taken from the idle list is first checked without a
 * round trip (poll for readability: an idle link has nothing to read unless
 * the server closed it, e.g. pg_terminate_backend or a restart).
 *
 * The transaction shape.  PgBouncer in transaction pooling mode may give
 * every transaction a different server session, so nothing lives in the
 * session: no SET, no named prepared statements, no temp tables.  A
 * statement stepped outside db_begin runs as
 *
 *     BEGIN [READ ONLY]; SET LOCAL search_path TO "ns";
 *     SET LOCAL statement_timeout = N; SET LOCAL TIME ZONE 'UTC';
 *     <statement, unnamed, extended protocol, text parameters>; COMMIT
 *
 * sent in libpq's pipeline mode with one Sync: one round trip (it works
 * through PgBouncer 1.18, test_db_pg checks it both ways).  Every row is
 * fetched before db_step returns the first, and the link goes back to the
 * pool before that.  When a statement of the pipeline fails the server
 * skips the rest up to the Sync and leaves the transaction aborted; then
 * (only then) a ROLLBACK costs a second round trip.  db_exec outside a
 * transaction (DDL, several statements) sends the same shape as one
 * simple-protocol query string.  db_begin takes a link for the calling
 * thread's db_conn (BEGIN and the SET LOCALs in one round trip) and holds
 * it until db_commit/db_rollback; each statement inside is one round trip.
 *
 * Deadlines.  Every wait on the network is bounded: links are connected
 * with PQconnectStartParams/PQconnectPoll and poll() against
 * connect_timeout_ms, host name lookups included (libpq's own getaddrinfo
 * blocks, so the names are looked up here first, each by a detached
 * thread waited for until that deadline, and libpq gets the addresses as
 * hostaddr: see "host names" below); queries are sent with the
 * link in non-blocking mode and their results awaited with poll() against
 * statement_timeout_ms + PG_GRACE_MS.  The server's own statement_timeout
 * normally ends a slow statement first (SQLSTATE 57014, -ETIMEDOUT, the
 * link stays); the client deadline is for a server that does not answer at
 * all (stopped, a dead network): the link is dropped and a cancel request
 * is sent from a short-lived detached thread (PQcancel blocks on a stopped
 * server, so the caller never waits for it).
 *
 * Reconnects.  A link is broken when libpq says so (PQstatus, a failed
 * read or write) or the server sends SQLSTATE class 08 or 57P01-57P03
 * (admin shutdown, crash shutdown, cannot connect now).  It is dropped,
 * with every idle link (after a restart they are all dead).  A statement
 * outside an explicit transaction is then run once more on a fresh link;
 * so after a restart the mount reconnects by itself.  (A write whose COMMIT
 * was sent when the link broke may have committed: the retry then meets
 * its own row, which registry writes tolerate: ON CONFLICT DO NOTHING, or
 * -EEXIST.)  Inside an explicit transaction the statement, and db_commit,
 * return -ECONNRESET and the db_conn stays "in a transaction" until
 * db_rollback.  While the server cannot be reached, each statement fails
 * at once (-EIO; -ETIMEDOUT when the connect deadline passed) and the
 * outage is logged once, its end once.
 *
 * Errors.  SQLSTATEs and libpq failures become -errno in pg_errno only,
 * which logs the detail once, naming the statement (cut to PG_LOG_SQL
 * bytes); the logger escapes the server's text.  The choices besides
 * db.h's: NOT NULL and CHECK violations (23502, 23514) are -EINVAL (the
 * caller's data is wrong; nothing "exists"), undefined
 * table and invalid schema (42P01, 3F000) -ENOENT, serialization failure
 * and deadlock (40001, 40P01) -EBUSY, a statement in an already failed
 * transaction (25P02) -EIO.  Inside an explicit transaction a failed
 * statement aborts the whole transaction (PostgreSQL's rule, unlike
 * SQLite's): only db_rollback or db_rollback_to a savepoint made before it
 * lets the transaction go on; a COMMIT of an aborted transaction rolls it
 * back and returns -EIO.
 *
 * Values.  Parameters are written ?N in the seam's SQL and rewritten to $N
 * once per prepared statement (outside quotes, identifiers, dollar quotes
 * and comments); all are bound as text with no declared type, so the
 * server infers each from its context (a parameter whose type the context
 * does not fix is text: write CAST(?1 AS bigint) there).  Results come as
 * text and are converted by column type (pg_type OIDs, which are fixed).
 *
 * Threads and locks.  The engine's pool state is under pe->mu (a leaf: no
 * other lock is taken and no network call is made under it).  A link is
 * used by one thread at a time: the one that borrowed it.  A db_conn and
 * its statements belong to one thread (db.h).
 */
#include "db_i.h"

#include "clock.h"
#include "dbauth.h"
#include "log.h"
#include "registry.h"
#include "strutil.h"

#include <libpq-fe.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define TAG "registry"

#define PG_GRACE_MS 500        /* client deadline past the server's statement_timeout */
#define PG_ROLLBACK_MS 2000    /* a ROLLBACK after an error, and the one of db_rollback */
#define PG_MAX_CANCELS 8       /* cancel threads in flight per process */
#define PG_LOG_SQL 200         /* bytes of a statement shown in a log line */
#define PG_MAX_PARAMS 65535    /* the protocol's limit */
#define PG_MAX_HOSTS 16        /* entries of a host list looked up here (more: left to libpq) */
#define PG_MAX_ADDRS 4         /* addresses of one host name handed to libpq */
#define PG_MAX_LOOKUPS 16      /* host name lookup threads in flight per process */

/* pg_type OIDs (catalog/pg_type_d.h; fixed since PostgreSQL 7) */
#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_OID 26
#define OID_FLOAT4 700
#define OID_FLOAT8 701
#define OID_NUMERIC 1700
#define OID_UUID 2950
#define OID_INT8RANGE 3926

/* One server connection. */
struct pg_link {
    PGconn *pq;
    int64_t idle_since;   /* bfs_mono_ms when it went back to the idle list */
    struct pg_link *next; /* in the idle list */
};

struct pg_engine {
    struct db_engine base; /* first (db_i.h) */
    const char *keys[20];  /* libpq keywords, NULL-terminated; values owned: */
    char *vals[20];
    char *url_shown;       /* redacted URL for messages */
    char *ns;
    char *describe;
    char *begin_sql;       /* BEGIN [READ ONLY] */
    char *set_path;        /* SET LOCAL search_path TO "ns" */
    char *set_timeout;     /* SET LOCAL statement_timeout = N */
    char *exec_prefix;     /* all of the above, ';'-separated, for db_exec */
    bool writable;
    int max, idle_ms, connect_ms, stmt_ms;

    pthread_mutex_t mu;    /* leaf: everything below */
    pthread_cond_t freed;  /* a link went back or was dropped (CLOCK_MONOTONIC) */
    pthread_cond_t reap;   /* for the reaper: the idle list changed, or stop */
    struct pg_link *idle;  /* most recently returned first */
    int open, in_use;
    bool stopping, reaper_started, down;
    int64_t quiet_until;   /* no new attempt before (mono ms): the server gave no answer in time */
    pthread_t reaper;
};

struct pg_conn {
    struct db_conn base; /* first */
    struct pg_link *tx;  /* the link of an explicit transaction */
    bool in_tx;
    bool tx_lost;        /* the transaction's link broke or timed out */
    int64_t changes;
};

struct pg_stmt {
    struct db_stmt base; /* first */
    char *sql;           /* with $N */
    int nparams;
    char **vals;         /* NULL: SQL NULL */
    int *lens;
    PGresult *res;       /* all rows of the last run */
    bool ran;
    int row, nrows, ncols;
    void **conv;         /* per column: the current row's decoded bytea / uuid hex */
    int *convlen;
};

/* A statement to run: extended protocol with parameters, or (simple) a
 * query string of one or more statements without. */
struct pg_q {
    const char *sql;
    int n;
    const char *const *vals;
    const int *lens;
    bool simple;
};

static atomic_int pg_cancels;
/* Host name lookup threads in flight in this process (at most
 * PG_MAX_LOOKUPS), under pg_lookup_mu; pg_lookup_freed: one ended. */
static pthread_mutex_t pg_lookup_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pg_lookup_freed;
static int pg_lookups_running;
static pthread_once_t pg_lookup_once = PTHREAD_ONCE_INIT;

/* A forked child has none of its parent's threads: none of their lookups
 * (or cancels) is in flight there, and the lock may have been held. */
static void pg_after_fork_child(void)
{
    pthread_mutex_init(&pg_lookup_mu, NULL);
    pg_lookups_running = 0;
    atomic_store(&pg_cancels, 0);
}

static void pg_lookup_init(void)
{
    bfs_cond_init_mono(&pg_lookup_freed);
    pthread_atfork(NULL, NULL, pg_after_fork_child);
}

static struct pg_engine *eng(const db_conn *c) { return (struct pg_engine *)c->engine; }

/* ---- errors ------------------------------------------------------------- */

static bool state_is_conn(const char *st)
{
    return st && (!strncmp(st, "08", 2) || !strcmp(st, "57P01") || !strcmp(st, "57P02") ||
                  !strcmp(st, "57P03"));
}

static int state_errno(const char *st)
{
    static const struct {
        const char *state;
        int err;
    } map[] = {
        {"23505", -EEXIST}, {"23P01", -EEXIST},                        /* unique, exclusion */
        {"23503", -ENOENT},                                            /* fk: a referenced row is missing */
        {"23502", -EINVAL}, {"23514", -EINVAL},                        /* not null, check */
        {"25006", -EROFS},                                             /* read-only transaction */
        {"28P01", -EACCES}, {"28000", -EACCES}, {"42501", -EACCES},    /* auth, privilege */
        {"57014", -ETIMEDOUT},                                         /* statement timeout */
        {"53100", -ENOSPC}, {"53200", -ENOMEM},
        {"40001", -EBUSY}, {"40P01", -EBUSY}, {"55P03", -EBUSY},       /* serialization, deadlock, lock */
        {"3F000", -ENOENT}, {"42P01", -ENOENT}, {"3D000", -ENOENT},    /* schema, table, database */
        {"XX001", -EBADMSG}, {"XX002", -EBADMSG},                      /* data, index corrupted */
    };
    if (!st)
        return -EIO;
    if (state_is_conn(st))
        return -ECONNRESET;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(map[i].state, st))
            return map[i].err;
    return -EIO;
}

/* A libpq message on one line (its lines joined with "; "), in buf. */
static const char *pq_text(const char *msg, char *buf, size_t n)
{
    size_t o = 0;
    for (const char *p = msg ? msg : ""; *p && o + 3 < n; p++) {
        if (*p != '\n') {
            buf[o++] = *p;
            continue;
        }
        while (p[1] == '\t' || p[1] == ' ')
            p++;
        if (p[1]) {
            buf[o++] = ';';
            buf[o++] = ' ';
        }
    }
    buf[o] = '\0';
    return buf;
}

/* The one translation of a failure to -errno, logged once: from the
 * server's error result r when there is one, else local (-ETIMEDOUT,
 * -ECONNRESET, -EIO) with libpq's message on pq. */
static int pg_errno(const PGresult *r, PGconn *pq, int local, const char *sql)
{
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    int err = r && st ? state_errno(st) : local ? local : -EIO;
    char text[512];
    if (r && PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)) {
        const char *detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
        snprintf(text, sizeof text, "%s%s%s", PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY),
                 detail ? " - " : "", detail ? detail : "");
    } else if (err == -ETIMEDOUT && local) {
        snprintf(text, sizeof text, "no answer from the server in time");
    } else {
        pq_text(pq ? PQerrorMessage(pq) : NULL, text, sizeof text);
    }
    int len = (int)strlen(sql ? sql : "");
    int level = err == -EEXIST || (st && !strcmp(st, "23503")) ? LOG_DEBUG
                : err == -EIO || err == -ENOMEM || err == -ENOSPC || err == -EBADMSG ? LOG_ERR
                                                                                        : LOG_WARNING;
    BFS_LOG(level, TAG, "PostgreSQL: %s (SQLSTATE %s, %s) in: %.*s%s", text, st ? st : "none",
            strerror(-err), len > PG_LOG_SQL ? PG_LOG_SQL : len, sql ? sql : "",
            len > PG_LOG_SQL ? "..." : "");
    return err;
}

/* ---- waiting on a link ---------------------------------------------------- */

/* poll(fd) for events until deadline (bfs_mono_ms): >0 ready, 0 deadline
 * passed, -errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    if (fd < 0)
        return -ECONNRESET;
    for (;;) {
        int64_t left = deadline - bfs_mono_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (r > 0)
            return r;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
}

/* Send what libpq holds back (non-blocking mode). */
static int link_flush(PGconn *pq, int64_t deadline)
{
    int r;
    while ((r = PQflush(pq)) == 1) {
        int w = wait_fd(PQsocket(pq), POLLIN | POLLOUT, deadline);
        if (w == 0)
            return -ETIMEDOUT;
        if (w < 0)
            return -ECONNRESET;
        if (!PQconsumeInput(pq))
            return -ECONNRESET;
    }
    return r == 0 ? 0 : -ECONNRESET;
}

/* The next PQgetResult once it can be had without blocking. */
static int link_result(PGconn *pq, int64_t deadline, PGresult **out)
{
    *out = NULL;
    while (PQisBusy(pq)) {
        int w = wait_fd(PQsocket(pq), POLLIN, deadline);
        if (w == 0)
            return -ETIMEDOUT;
        if (w < 0 || !PQconsumeInput(pq))
            return -ECONNRESET;
    }
    *out = PQgetResult(pq);
    return 0;
}

static void *cancel_main(void *p)
{
    char buf[256];
    PQcancel(p, buf, sizeof buf);
    PQfreeCancel(p);
    atomic_fetch_sub(&pg_cancels, 1);
    return NULL;
}

/* Ask the server to stop what pq runs, without waiting (see the top). */
static void cancel_async(PGconn *pq)
{
    if (atomic_fetch_add(&pg_cancels, 1) >= PG_MAX_CANCELS) {
        atomic_fetch_sub(&pg_cancels, 1);
        return;
    }
    PGcancel *c = PQgetCancel(pq);
    pthread_attr_t a;
    pthread_t t;
    bool started = false;
    if (c && pthread_attr_init(&a) == 0) {
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&a, 64 * 1024);
        started = pthread_create(&t, &a, cancel_main, c) == 0;
        pthread_attr_destroy(&a);
    }
    if (!started) {
        if (c)
            PQfreeCancel(c);
        atomic_fetch_sub(&pg_cancels, 1);
    }
}

/* ---- host names ------------------------------------------------------------ */

/* libpq looks a host name up with a blocking getaddrinfo() inside
 * PQconnectStartParams/PQconnectPoll, which no deadline bounds: with a dead
 * name server it waits timeout x attempts x servers of resolv.conf.  So
 * the names are looked up here, each by a short-lived detached thread,
 * waited for until the connect deadline, and libpq is given each address
 * as hostaddr beside its host (it then connects to hostaddr and still uses
 * host to verify the server's certificate, sslmode=verify-full, and to
 * find the ~/.pgpass line).  A lookup still running at the deadline is
 * left to its thread, which frees it.  (glibc's getaddrinfo_a would do the
 * same, but its helper threads do not survive fork(): the daemon forks
 * after the registry was opened once, and its lookups would then never
 * finish.)  Lookups are made again at every connect: addresses change. */

/* The lookups of one connect.  Freed by whoever drops the last reference:
 * the waiter or the last thread still running. */
struct pg_lookups {
    pthread_mutex_t mu;  /* leaf: everything below */
    pthread_cond_t done; /* CLOCK_MONOTONIC: a lookup finished */
    int refs;            /* the waiter and every thread still running */
    int pending;
    int n;
    struct pg_lookup {
        struct pg_lookups *set;
        char *name;
        bool done;
        int err;         /* getaddrinfo's (EAI_*), 0 with res */
        struct addrinfo *res;
    } item[PG_MAX_HOSTS];
};

/* Drop a reference; called with s->mu held, returns with it released. */
static void lookups_unref(struct pg_lookups *s)
{
    bool last = --s->refs == 0;
    pthread_mutex_unlock(&s->mu);
    if (!last)
        return;
    for (int i = 0; i < s->n; i++) {
        free(s->item[i].name);
        if (s->item[i].res)
            freeaddrinfo(s->item[i].res);
    }
    pthread_cond_destroy(&s->done);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* A lookup thread slot, waiting for one until deadline; whether there is. */
static bool lookup_slot(int64_t deadline)
{
    pthread_once(&pg_lookup_once, pg_lookup_init);
    struct timespec ts = bfs_mono_at(deadline);
    pthread_mutex_lock(&pg_lookup_mu);
    int r = 0;
    while (pg_lookups_running >= PG_MAX_LOOKUPS && r != ETIMEDOUT)
        r = pthread_cond_timedwait(&pg_lookup_freed, &pg_lookup_mu, &ts);
    bool got = pg_lookups_running < PG_MAX_LOOKUPS;
    if (got)
        pg_lookups_running++;
    pthread_mutex_unlock(&pg_lookup_mu);
    return got;
}

/* Give a slot back (its thread ended, or never started). */
static void lookup_slot_give(void)
{
    pthread_mutex_lock(&pg_lookup_mu);
    pg_lookups_running--;
    pthread_cond_signal(&pg_lookup_freed);
    pthread_mutex_unlock(&pg_lookup_mu);
}

static void *lookup_main(void *p)
{
    struct pg_lookup *l = p;
    struct pg_lookups *s = l->set;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int err = getaddrinfo(l->name, NULL, &hints, &res);
    lookup_slot_give(); /* first: nothing of it is left running when anyone hears of it */
    pthread_mutex_lock(&s->mu);
    l->err = err;
    l->res = err ? NULL : res;
    l->done = true;
    s->pending--;
    pthread_cond_signal(&s->done);
    lookups_unref(s);
    return NULL;
}

/* Start looking up names[0..n-1] (n <= PG_MAX_HOSTS), one thread each,
 * each waiting for a thread slot until deadline when PG_MAX_LOOKUPS are in
 * flight (a burst of connects); one that found none by then (lookups stuck
 * on a name server that does not answer) is done with EAI_AGAIN.  NULL:
 * out of memory. */
static struct pg_lookups *lookups_start(char *const *names, int n, int64_t deadline)
{
    struct pg_lookups *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    pthread_mutex_init(&s->mu, NULL);
    bfs_cond_init_mono(&s->done);
    s->refs = 1;
    s->n = n;
    for (int i = 0; i < n; i++) {
        struct pg_lookup *l = &s->item[i];
        l->set = s;
        l->name = strdup(names[i]);
        l->done = true;
        l->err = l->name ? EAI_AGAIN : EAI_MEMORY;
    }
    pthread_attr_t a;
    if (pthread_attr_init(&a) != 0)
        return s;
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&a, 256 * 1024); /* getaddrinfo and NSS modules */
    for (int i = 0; i < n; i++) {
        struct pg_lookup *l = &s->item[i];
        if (!l->name || !lookup_slot(deadline))
            continue;
        pthread_t t;
        pthread_mutex_lock(&s->mu);
        l->done = false;
        if (pthread_create(&t, &a, lookup_main, l) == 0) {
            s->refs++;
            s->pending++;
        } else {
            l->done = true;
            lookup_slot_give();
        }
        pthread_mutex_unlock(&s->mu);
    }
    pthread_attr_destroy(&a);
    return s;
}

/* Wait until every lookup is done (0) or the deadline passed (-ETIMEDOUT,
 * *late: the index of one still running). */
static int lookups_wait(struct pg_lookups *s, int64_t deadline, int *late)
{
    struct timespec ts = bfs_mono_at(deadline);
    pthread_mutex_lock(&s->mu);
    int r = 0;
    while (s->pending > 0 && r != ETIMEDOUT)
        r = pthread_cond_timedwait(&s->done, &s->mu, &ts);
    *late = -1;
    for (int i = 0; i < s->n && s->pending > 0; i++)
        if (!s->item[i].done) {
            *late = i;
            break;
        }
    pthread_mutex_unlock(&s->mu);
    return *late >= 0 ? -ETIMEDOUT : 0;
}

/* Split a comma-separated libpq list in place (empty items kept, as libpq
 * keeps them).  The number of items, or -1 when more than max. */
static int split_list(char *s, char **out, int max)
{
    int n = 0;
    for (;;) {
        if (n == max)
            return -1;
        out[n++] = s;
        char *c = strchr(s, ',');
        if (!c)
            return n;
        *c = '\0';
        s = c + 1;
    }
}

/* A host list item libpq would look up: not empty (the default socket),
 * not a Unix-domain socket directory ('/', or '@' for an abstract one), not
 * a numeric address. */
static bool needs_lookup(const char *h)
{
    if (!*h || *h == '/' || *h == '@')
        return false;
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(h, NULL, &hints, &res) != 0)
        return true;
    freeaddrinfo(res);
    return false;
}

/* The host, hostaddr and port options libpq would use: the URL's, else a
 * service file's (service=, PGSERVICE), else the environment's (PGHOST,
 * PGHOSTADDR, PGPORT).  libpq merges them only when it connects, so it is
 * asked to start a connection it refuses before any lookup or socket (an
 * invalid target_session_attrs, appended: a later keyword wins), and
 * PQconninfo reads the merged options back.  NULL: not known (then libpq
 * is left to do its own lookups). */
static PQconninfoOption *merged_options(const struct pg_engine *pe)
{
    const char *keys[sizeof pe->keys / sizeof pe->keys[0] + 1], *vals[sizeof keys / sizeof keys[0]];
    int n = 0;
    for (; pe->keys[n]; n++) {
        keys[n] = pe->keys[n];
        vals[n] = pe->vals[n];
    }
    keys[n] = "target_session_attrs";
    vals[n++] = "butlerfs-options-only";
    keys[n] = vals[n] = NULL;
    PGconn *pq = PQconnectStartParams(keys, vals, 0);
    PQconninfoOption *o = pq && PQstatus(pq) == CONNECTION_BAD ? PQconninfo(pq) : NULL;
    PQfinish(pq);
    return o;
}

/* PQconninfoFree, with the password's copy wiped first. */
static void options_free(PQconninfoOption *o)
{
    for (PQconninfoOption *p = o; p && p->keyword; p++)
        if (p->val && !strcmp(p->keyword, "password"))
            explicit_bzero(p->val, strlen(p->val));
    PQconninfoFree(o);
}

static const char *option_value(const PQconninfoOption *o, const char *key)
{
    for (; o && o->keyword; o++)
        if (!strcmp(o->keyword, key))
            return o->val;
    return NULL;
}

/* The libpq keywords of one connect: the engine's, with host, hostaddr and
 * port replaced when host names were looked up here. */
struct pg_target {
    const char *keys[sizeof ((struct pg_engine *)0)->keys / sizeof(char *) + 3];
    const char *vals[sizeof ((struct pg_engine *)0)->keys / sizeof(char *) + 3];
    char *host, *hostaddr, *port; /* owned; NULL: not replaced */
};

static void target_release(struct pg_target *t)
{
    free(t->host);
    free(t->hostaddr);
    free(t->port);
}

/* The host, hostaddr and port lists written for libpq, one entry each. */
struct pg_lists {
    FILE *f[3];
    char *s[3]; /* host, hostaddr, port once closed; owned */
    size_t n[3];
    int entries;
};

/* Close the streams.  0, or -ENOMEM with nothing left to free. */
static int lists_close(struct pg_lists *L)
{
    int ret = 0;
    for (int i = 0; i < 3; i++) {
        if (!L->f[i] || fclose(L->f[i]) != 0)
            ret = -ENOMEM;
        L->f[i] = NULL;
    }
    for (int i = 0; i < 3 && ret < 0; i++) {
        free(L->s[i]);
        L->s[i] = NULL;
    }
    return ret;
}

/* Open the streams.  0 or -ENOMEM. */
static int lists_open(struct pg_lists *L)
{
    memset(L, 0, sizeof *L);
    for (int i = 0; i < 3; i++)
        if (!(L->f[i] = open_memstream(&L->s[i], &L->n[i]))) {
            lists_close(L);
            return -ENOMEM;
        }
    return 0;
}

static void lists_add(struct pg_lists *L, const char *host, const char *hostaddr, const char *port)
{
    const char *item[3] = {host, hostaddr, port};
    for (int i = 0; i < 3; i++) {
        if (L->entries)
            fputc(',', L->f[i]);
        fputs(item[i], L->f[i]);
    }
    L->entries++;
}

/* Up to PG_MAX_ADDRS addresses of res into pick, in the resolver's order,
 * with the first of each address family among them: a name with many IPv6
 * addresses still offers libpq an IPv4 one (a node may have no IPv6
 * route).  Their number. */
static int addrs_pick(const struct addrinfo *res, const struct addrinfo **pick)
{
    bool taken[64] = {false};
    int fams[8], nf = 0, k = 0, i = 0;
    for (const struct addrinfo *ai = res; ai && i < 64 && k < PG_MAX_ADDRS; ai = ai->ai_next, i++) {
        bool seen = false;
        for (int f = 0; f < nf; f++)
            seen = seen || fams[f] == ai->ai_family;
        if (!seen && nf < 8) {
            fams[nf++] = ai->ai_family;
            taken[i] = true;
            k++;
        }
    }
    i = 0;
    for (const struct addrinfo *ai = res; ai && i < 64 && k < PG_MAX_ADDRS; ai = ai->ai_next, i++)
        if (!taken[i]) {
            taken[i] = true;
            k++;
        }
    k = 0;
    i = 0;
    for (const struct addrinfo *ai = res; ai && i < 64; ai = ai->ai_next, i++)
        if (taken[i])
            pick[k++] = ai;
    return k;
}

/* Write the entries of the host list h (ports p: one, or one per host) for
 * libpq: an item that needed no lookup (which[i] < 0) as it is, with an
 * empty hostaddr (libpq treats it as before); a name once per address (at
 * most PG_MAX_ADDRS), in the resolver's order; a name that did not resolve
 * not at all, as libpq skips it (*failed: the first such lookup, or -1). */
static void lists_write(struct pg_lists *L, char *const *h, int nh, char *const *p, int np, const int *which,
                        const struct pg_lookups *s, int *failed)
{
    *failed = -1;
    for (int i = 0; i < nh; i++) {
        const char *port = p[np > 1 ? i : 0];
        if (which[i] < 0) {
            lists_add(L, h[i], "", port);
            continue;
        }
        const struct pg_lookup *l = &s->item[which[i]];
        if (l->err && *failed < 0)
            *failed = which[i];
        const struct addrinfo *pick[PG_MAX_ADDRS];
        int k = addrs_pick(l->res, pick);
        char addr[NI_MAXHOST];
        for (int j = 0; j < k; j++)
            if (getnameinfo(pick[j]->ai_addr, pick[j]->ai_addrlen, addr, sizeof addr, NULL, 0, NI_NUMERICHOST) == 0)
                lists_add(L, h[i], addr, port);
    }
}

/* Look up the names of the host list hosts (ports: libpq's port option)
 * until deadline and set t's host, hostaddr (and port, when one per host)
 * to the lists libpq gets instead.  0 (t untouched when nothing needs a
 * lookup, or the lists do not match: libpq then does as it does), or
 * -ETIMEDOUT (a lookup still running at the deadline), -EIO (no name
 * resolved and no other host to try), -ENOMEM; with why. */
static int resolve_hosts(const char *hosts, const char *ports, int64_t deadline, struct pg_target *t, char *why,
                         size_t why_n)
{
    char *hs = strdup(hosts), *ps = strdup(ports ? ports : "");
    if (!hs || !ps) {
        free(hs);
        free(ps);
        return -ENOMEM;
    }
    char *h[PG_MAX_HOSTS], *p[PG_MAX_HOSTS], *names[PG_MAX_HOSTS];
    int which[PG_MAX_HOSTS];
    int nh = split_list(hs, h, PG_MAX_HOSTS), np = split_list(ps, p, PG_MAX_HOSTS), nn = 0;
    if (nh > 0 && (np == 1 || np == nh)) { /* else libpq reports the mismatch */
        for (int i = 0; i < nh; i++) {
            which[i] = -1;
            if (needs_lookup(h[i])) {
                which[i] = nn;
                names[nn++] = h[i];
            }
        }
    }
    struct pg_lookups *s = nn ? lookups_start(names, nn, deadline) : NULL;
    struct pg_lists L;
    int ret = 0, late, failed;
    char esc[256];
    if (!nn) {
        /* nothing to look up */
    } else if (!s) {
        ret = -ENOMEM;
    } else if (lookups_wait(s, deadline, &late) < 0) {
        bfs_log_escape(esc, sizeof esc, names[late], strlen(names[late]));
        snprintf(why, why_n, "the lookup of host name \"%s\" did not finish (is a name server reachable?)", esc);
        ret = -ETIMEDOUT;
    } else if ((ret = lists_open(&L)) == 0) {
        lists_write(&L, h, nh, p, np, which, s, &failed);
        int entries = L.entries;
        const struct pg_lookup *l = &s->item[failed < 0 ? 0 : failed];
        ret = lists_close(&L);
        if (ret == 0 && entries == 0) {
            bfs_log_escape(esc, sizeof esc, l->name ? l->name : "", l->name ? strlen(l->name) : 0);
            snprintf(why, why_n, "could not translate host name \"%s\" to address: %s", esc,
                     l->err ? gai_strerror(l->err) : "no usable address");
            ret = -EIO;
        } else if (ret == 0 && failed >= 0) {
            bfs_debug(TAG, "PostgreSQL host name %s: %s; trying the other hosts", l->name ? l->name : "",
                      gai_strerror(l->err));
        }
        if (ret == 0) {
            t->host = L.s[0];
            t->hostaddr = L.s[1];
            t->port = np > 1 ? L.s[2] : NULL;
            if (np <= 1)
                free(L.s[2]);
        } else {
            for (int i = 0; i < 3; i++)
                free(L.s[i]);
        }
    }
    if (s) {
        pthread_mutex_lock(&s->mu);
        lookups_unref(s);
    }
    free(hs);
    free(ps);
    return ret;
}

/* The keywords of a connect made now (deadline: its end).  0 or -errno
 * with why; release t after PQconnectStartParams (libpq copies). */
static int connect_target(const struct pg_engine *pe, int64_t deadline, struct pg_target *t, char *why,
                          size_t why_n)
{
    memset(t, 0, sizeof *t);
    PQconninfoOption *o = merged_options(pe);
    const char *host = option_value(o, "host"), *hostaddr = option_value(o, "hostaddr");
    int ret = 0;
    if (host && *host && !(hostaddr && *hostaddr)) /* a hostaddr given is the user's: kept */
        ret = resolve_hosts(host, option_value(o, "port"), deadline, t, why, why_n);
    options_free(o);
    if (ret < 0) {
        target_release(t);
        return ret;
    }
    /* the engine's keywords but those replaced, then the replacements */
    const char *const mine[] = {"host", t->host, "hostaddr", t->hostaddr, "port", t->port};
    int n = 0;
    for (int i = 0; pe->keys[i]; i++) {
        bool replaced = false;
        for (size_t j = 0; j < sizeof mine / sizeof mine[0]; j += 2)
            replaced |= mine[j + 1] && !strcmp(pe->keys[i], mine[j]);
        if (!replaced) {
            t->keys[n] = pe->keys[i];
            t->vals[n++] = pe->vals[i];
        }
    }
    for (size_t j = 0; j < sizeof mine / sizeof mine[0]; j += 2)
        if (mine[j + 1]) {
            t->keys[n] = mine[j];
            t->vals[n++] = mine[j + 1];
        }
    t->keys[n] = t->vals[n] = NULL;
    if (t->host)
        bfs_debug(TAG, "PostgreSQL registry %s: connecting to host %s at hostaddr %s", pe->url_shown, t->host,
                  t->hostaddr);
    return 0;
}

/* ---- connecting ----------------------------------------------------------- */

/* Classify a failed connection by libpq's text (libpq 15 gives no SQLSTATE
 * for it): -EACCES credentials, -ENOENT no such database, else -EIO. */
static int connect_errno(const char *msg)
{
    static const char *const auth[] = {"password authentication failed", "SASL authentication failed",
                                       "no password supplied", "authentication failed",
                                       "password is required", "pg_hba.conf rejects",
                                       "no pg_hba.conf entry"};
    for (size_t i = 0; i < sizeof auth / sizeof auth[0]; i++)
        if (strstr(msg, auth[i]))
            return -EACCES;
    if (strstr(msg, "role \"") && strstr(msg, "does not exist"))
        return -EACCES;
    if (strstr(msg, "database \"") && strstr(msg, "does not exist"))
        return -ENOENT;
    return -EIO;
}

/* The server's notices (NOTICE: schema ... already exists, skipping) go
 * to the debug log, not to the process's stderr as libpq's default does. */
static void notice_to_log(void *arg, const char *message)
{
    (void)arg;
    char text[512];
    bfs_debug(TAG, "PostgreSQL: %s", pq_text(message, text, sizeof text));
}

/* Connect a new link within connect_timeout_ms.  0, or -errno with the
 * escaped libpq text in why (why_n bytes). */
static int link_connect(struct pg_engine *pe, struct pg_link **out, char *why, size_t why_n)
{
    *out = NULL;
    why[0] = '\0';
    int64_t deadline = bfs_mono_ms() + pe->connect_ms;
    struct pg_target t;
    int err = connect_target(pe, deadline, &t, why, why_n);
    if (err < 0)
        return err;
    PGconn *pq = PQconnectStartParams(t.keys, t.vals, 0);
    target_release(&t);
    if (!pq)
        return -ENOMEM;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    if (PQstatus(pq) == CONNECTION_BAD)
        st = PGRES_POLLING_FAILED;
    while (st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED) {
            char raw[512];
            pq_text(PQerrorMessage(pq), raw, sizeof raw);
            bfs_log_escape(why, why_n, raw, strlen(raw));
            err = connect_errno(raw);
            break;
        }
        int w = wait_fd(PQsocket(pq), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline);
        if (w == 0) {
            snprintf(why, why_n, "the server did not answer");
            err = -ETIMEDOUT;
            break;
        }
        st = PQconnectPoll(pq);
    }
    if (!err)
        PQsetNoticeProcessor(pq, notice_to_log, NULL);
    if (!err && PQsetnonblocking(pq, 1) != 0) {
        snprintf(why, why_n, "cannot make the connection non-blocking");
        err = -EIO;
    }
    struct pg_link *l = err ? NULL : calloc(1, sizeof *l);
    if (!err && !l)
        err = -ENOMEM;
    if (err) {
        PQfinish(pq);
        return err;
    }
    l->pq = pq;
    *out = l;
    return 0;
}

/* An idle link still usable, found without a round trip: the server sent
 * nothing to an idle session unless it is closing it. */
static bool link_alive(struct pg_link *l)
{
    if (PQstatus(l->pq) != CONNECTION_OK || PQtransactionStatus(l->pq) != PQTRANS_IDLE)
        return false;
    struct pollfd p = {.fd = PQsocket(l->pq), .events = POLLIN};
    int r = poll(&p, 1, 0);
    if (r == 0)
        return true;
    if (r < 0 || !PQconsumeInput(l->pq) || PQstatus(l->pq) != CONNECTION_OK)
        return false;
    /* a notice or parameter status is harmless; a FATAL came with EOF */
    PGnotify *n;
    while ((n = PQnotifies(l->pq)))
        PQfreemem(n);
    return PQstatus(l->pq) == CONNECTION_OK && !PQisBusy(l->pq);
}

static void link_free(struct pg_link *l)
{
    while (l) {
        struct pg_link *next = l->next;
        PQfinish(l->pq);
        free(l);
        l = next;
    }
}

/* ---- the pool --------------------------------------------------------------- */

/* Move idle links expired at now (all when all) to *dead.  Under mu. */
static void reap_locked(struct pg_engine *pe, int64_t now, bool all, struct pg_link **dead)
{
    struct pg_link **pp = &pe->idle;
    while (*pp) {
        struct pg_link *l = *pp;
        if (all || now - l->idle_since >= pe->idle_ms) {
            *pp = l->next;
            l->next = *dead;
            *dead = l;
            pe->open--;
        } else {
            pp = &l->next;
        }
    }
}

static void *reaper_main(void *p)
{
    struct pg_engine *pe = p;
    pthread_mutex_lock(&pe->mu);
    while (!pe->stopping) {
        struct pg_link *dead = NULL;
        int64_t now = bfs_mono_ms();
        reap_locked(pe, now, false, &dead);
        if (dead) {
            pthread_cond_broadcast(&pe->freed);
            pthread_mutex_unlock(&pe->mu);
            link_free(dead);
            pthread_mutex_lock(&pe->mu);
            continue;
        }
        int64_t oldest = INT64_MAX;
        for (struct pg_link *l = pe->idle; l; l = l->next)
            if (l->idle_since < oldest)
                oldest = l->idle_since;
        if (oldest == INT64_MAX) {
            pthread_cond_wait(&pe->reap, &pe->mu);
        } else {
            struct timespec ts = bfs_mono_at(oldest + pe->idle_ms + 1);
            pthread_cond_timedwait(&pe->reap, &pe->mu, &ts);
        }
    }
    pthread_mutex_unlock(&pe->mu);
    return NULL;
}

/* After a server gave no answer in time (frozen, or a black-holed network),
 * statements fail at once for this long instead of each waiting out its
 * own deadline: a listing that needs ten lookups must not take ten
 * timeouts.  The first statement after it tries again. */
static void go_quiet(struct pg_engine *pe)
{
    int64_t ms = pe->connect_ms < 1000 ? 1000 : pe->connect_ms > 5000 ? 5000 : pe->connect_ms;
    pthread_mutex_lock(&pe->mu);
    pe->quiet_until = bfs_mono_ms() + ms;
    pthread_mutex_unlock(&pe->mu);
}

/* Log the start and the end of an outage once each. */
static void note_reachable(struct pg_engine *pe, int err, const char *why)
{
    if (err == -ETIMEDOUT)
        go_quiet(pe);
    pthread_mutex_lock(&pe->mu);
    bool was = pe->down;
    pe->down = err < 0;
    if (err == 0)
        pe->quiet_until = 0;
    pthread_mutex_unlock(&pe->mu);
    if (err < 0 && !was)
        bfs_warn(TAG, "PostgreSQL registry %s: cannot connect (%s): %s; statements fail until it can",
                 pe->url_shown, strerror(-err), why);
    else if (err == 0 && was)
        bfs_note(TAG, "PostgreSQL registry %s: connected again", pe->url_shown);
}

/* Borrow a link: an idle one (unless fresh: then every idle link is closed
 * and a new one made), else a new one while fewer than max are open, else
 * wait up to statement_timeout_ms.  0 or -errno (logged). */
static int pool_get(struct pg_engine *pe, bool fresh, struct pg_link **out)
{
    int64_t deadline = bfs_mono_ms() + pe->stmt_ms;
    *out = NULL;
    pthread_mutex_lock(&pe->mu);
    if (pe->quiet_until > bfs_mono_ms()) {
        pthread_mutex_unlock(&pe->mu);
        bfs_debug(TAG, "PostgreSQL registry %s: no answer in time a moment ago; not trying yet", pe->url_shown);
        return -ETIMEDOUT;
    }
    for (;;) {
        struct pg_link *dead = NULL, *l = NULL;
        reap_locked(pe, bfs_mono_ms(), fresh, &dead);
        fresh = false;
        bool connect = false;
        if (pe->idle) {
            l = pe->idle;
            pe->idle = l->next;
            l->next = NULL;
            pe->in_use++;
        } else if (pe->open < pe->max) {
            pe->open++;
            pe->in_use++;
            connect = true;
        }
        if (l || connect) {
            pthread_mutex_unlock(&pe->mu);
            link_free(dead);
            if (l && link_alive(l)) {
                *out = l;
                return 0;
            }
            if (l) { /* dead while idle: make a new one in its place */
                PQfinish(l->pq);
                free(l);
                l = NULL;
            }
            char why[512];
            int ret = link_connect(pe, &l, why, sizeof why);
            note_reachable(pe, ret, why);
            if (ret == 0) {
                *out = l;
                return 0;
            }
            pthread_mutex_lock(&pe->mu);
            pe->open--;
            pe->in_use--;
            pthread_cond_broadcast(&pe->freed);
            pthread_mutex_unlock(&pe->mu);
            return ret;
        }
        if (dead) {
            pthread_mutex_unlock(&pe->mu);
            link_free(dead);
            pthread_mutex_lock(&pe->mu);
            continue;
        }
        if (bfs_mono_ms() >= deadline) {
            int open = pe->open;
            pthread_mutex_unlock(&pe->mu);
            bfs_warn(TAG, "PostgreSQL registry %s: all %d connections stayed busy for %d ms",
                     pe->url_shown, open, pe->stmt_ms);
            return -ETIMEDOUT;
        }
        struct timespec ts = bfs_mono_at(deadline);
        pthread_cond_timedwait(&pe->freed, &pe->mu, &ts);
    }
}

/* Give a link back; drop it (close) when broken.  After a broken link the
 * idle ones go too: a restart or failover leaves none of them usable. */
static void pool_put(struct pg_engine *pe, struct pg_link *l, bool drop)
{
    struct pg_link *dead = NULL;
    pthread_mutex_lock(&pe->mu);
    pe->in_use--;
    if (drop || pe->stopping) {
        pe->open--;
        l->next = NULL;
        dead = l;
        if (drop)
            reap_locked(pe, 0, true, &dead);
    } else {
        l->idle_since = bfs_mono_ms();
        l->next = pe->idle;
        pe->idle = l;
        pthread_cond_signal(&pe->reap);
    }
    pthread_cond_broadcast(&pe->freed);
    pthread_mutex_unlock(&pe->mu);
    link_free(dead);
}

/* ---- running statements --------------------------------------------------- */

static bool link_broken(PGconn *pq, const PGresult *err)
{
    if (PQstatus(pq) != CONNECTION_OK)
        return true;
    return err && state_is_conn(PQresultErrorField(err, PG_DIAG_SQLSTATE));
}

/* End a transaction left open by an error (aborted or still in progress)
 * with a ROLLBACK of its own deadline.  0 or -errno (then drop the link). */
static int link_rollback(PGconn *pq)
{
    if (PQtransactionStatus(pq) == PQTRANS_IDLE)
        return 0;
    int64_t deadline = bfs_mono_ms() + PG_ROLLBACK_MS;
    if (!PQsendQuery(pq, "ROLLBACK"))
        return -ECONNRESET;
    int ret = link_flush(pq, deadline);
    for (int i = 0; ret == 0 && i < 16; i++) {
        PGresult *r;
        ret = link_result(pq, deadline, &r);
        if (ret || !r)
            break;
        PQclear(r);
    }
    if (ret == 0 && PQtransactionStatus(pq) != PQTRANS_IDLE)
        ret = -EIO;
    return ret;
}

/* Collect the results of what was sent: the result of statement number
 * main_i (counting from 0; each statement's results end with a NULL in a
 * pipeline) in *out, the first error in *err; up to the Sync (pipeline) or
 * the NULL that ends a query string's results.  0, or -ETIMEDOUT /
 * -ECONNRESET. */
static int collect(PGconn *pq, int64_t deadline, bool pipeline, int main_i, PGresult **out, PGresult **err)
{
    int idx = 0;
    for (;;) {
        PGresult *r;
        int ret = link_result(pq, deadline, &r);
        if (ret)
            return ret;
        if (PQstatus(pq) != CONNECTION_OK) {
            PQclear(r);
            return -ECONNRESET;
        }
        if (!r) {
            if (!pipeline)
                return 0;
            idx++;
            continue;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            return 0;
        }
        bool ok = st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
        if ((st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR || st == PGRES_BAD_RESPONSE) && !*err)
            *err = r;
        else if (ok && !*out && (pipeline ? idx == main_i : true))
            *out = r;
        else
            PQclear(r);
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH)
            return -ECONNRESET; /* never sent by this engine: the link is unusable */
    }
}

/* Run q on a link with no transaction open, in a transaction of its own
 * (the shape at the top).  0 (the server's error, if any, in *err), or
 * -ETIMEDOUT / -ECONNRESET / -ENOMEM: the link must be dropped. */
static int run_wrapped(struct pg_engine *pe, PGconn *pq, const struct pg_q *q, int64_t deadline, PGresult **out,
                       PGresult **err)
{
    int ret = 0;
    if (q->simple) {
        char *all = bfs_asprintf("%s;\n%s;\nCOMMIT", pe->exec_prefix, q->sql);
        if (!all)
            return -ENOMEM;
        ret = PQsendQuery(pq, all) ? 0 : -ECONNRESET;
        free(all);
        if (ret == 0)
            ret = link_flush(pq, deadline);
        if (ret == 0)
            ret = collect(pq, deadline, false, 0, out, err);
    } else {
        const char *pre[] = {pe->begin_sql, pe->set_path, pe->set_timeout, "SET LOCAL TIME ZONE 'UTC'"};
        if (!PQenterPipelineMode(pq))
            return -ECONNRESET;
        for (size_t i = 0; ret == 0 && i < 4; i++)
            if (!PQsendQueryParams(pq, pre[i], 0, NULL, NULL, NULL, NULL, 0))
                ret = -ECONNRESET;
        if (ret == 0 && !PQsendQueryParams(pq, q->sql, q->n, NULL, q->vals, q->lens, NULL, 0))
            ret = -ECONNRESET;
        if (ret == 0 && !PQsendQueryParams(pq, "COMMIT", 0, NULL, NULL, NULL, NULL, 0))
            ret = -ECONNRESET;
        if (ret == 0 && !PQpipelineSync(pq))
            ret = -ECONNRESET;
        if (ret == 0)
            ret = link_flush(pq, deadline);
        if (ret == 0)
            ret = collect(pq, deadline, true, 4, out, err);
        if (ret == 0 && !PQexitPipelineMode(pq))
            ret = -ECONNRESET;
    }
    /* an error left the transaction aborted (the COMMIT was skipped) */
    if (ret == 0 && link_rollback(pq) < 0)
        ret = -ECONNRESET;
    return ret;
}

/* Run q alone on the link of an open transaction; as run_wrapped. */
static int run_in_tx(PGconn *pq, const struct pg_q *q, int64_t deadline, PGresult **out, PGresult **err)
{
    int ok = q->simple ? PQsendQuery(pq, q->sql)
                       : PQsendQueryParams(pq, q->sql, q->n, NULL, q->vals, q->lens, NULL, 0);
    if (!ok)
        return -ECONNRESET;
    int ret = link_flush(pq, deadline);
    if (ret == 0)
        ret = collect(pq, deadline, false, 0, out, err);
    return ret;
}

/* After a run: whether the link is broken, and the -errno to return
 * (logged), from the local outcome ret and the server's error. */
static int outcome(PGconn *pq, int ret, const PGresult *err, const char *sql, bool *broken)
{
    *broken = ret == -ECONNRESET || link_broken(pq, err);
    if (ret == -ETIMEDOUT) {
        cancel_async(pq);
        return pg_errno(NULL, pq, -ETIMEDOUT, sql);
    }
    if (ret < 0 || err)
        return pg_errno(err, pq, *broken ? -ECONNRESET : ret, sql);
    return 0;
}

/* Outside an explicit transaction: borrow, run wrapped, give back; once
 * more on a fresh link when the first one was broken.  0 with *out (the
 * statement's result, caller clears) or -errno (logged). */
static int run_auto(struct pg_engine *pe, const struct pg_q *q, PGresult **out)
{
    for (int attempt = 0;; attempt++) {
        *out = NULL;
        struct pg_link *l;
        int ret = pool_get(pe, attempt > 0, &l);
        if (ret < 0)
            return ret;
        PGresult *err = NULL;
        int local = run_wrapped(pe, l->pq, q, bfs_mono_ms() + pe->stmt_ms + PG_GRACE_MS, out, &err);
        bool broken;
        if (local == -ECONNRESET || (local == 0 && link_broken(l->pq, err))) {
            if (attempt == 0) {
                bfs_info(TAG, "PostgreSQL registry %s: connection lost, running the statement again on a new one",
                         pe->url_shown);
                pool_put(pe, l, true);
                PQclear(err);
                PQclear(*out);
                continue;
            }
        }
        ret = outcome(l->pq, local, err, q->sql, &broken);
        if (local == -ETIMEDOUT && !err)
            go_quiet(pe);
        pool_put(pe, l, broken || local < 0);
        PQclear(err);
        if (ret < 0) {
            PQclear(*out);
            *out = NULL;
        }
        return ret;
    }
}

/* The transaction is over on the server: give its link back. */
static void tx_end(struct pg_conn *pc, bool drop)
{
    if (pc->tx)
        pool_put(eng(&pc->base), pc->tx, drop);
    pc->tx = NULL;
    pc->in_tx = false;
    pc->tx_lost = false;
}

/* Inside an explicit transaction.  A link that broke or did not answer
 * cannot serve the transaction any more: its statements fail until
 * db_rollback. */
static int run_tx(struct pg_conn *pc, const struct pg_q *q, PGresult **out)
{
    *out = NULL;
    if (pc->tx_lost || !pc->tx) {
        bfs_warn(TAG, "PostgreSQL: the transaction's connection was lost; it must be rolled back");
        return -ECONNRESET;
    }
    struct pg_engine *pe = eng(&pc->base);
    PGconn *pq = pc->tx->pq;
    PGresult *err = NULL;
    int local = run_in_tx(pq, q, bfs_mono_ms() + pe->stmt_ms + PG_GRACE_MS, out, &err);
    bool broken;
    int ret = outcome(pq, local, err, q->sql, &broken);
    PQclear(err);
    if (broken || local < 0) {
        pool_put(pe, pc->tx, true);
        pc->tx = NULL;
        pc->tx_lost = true;
        if (ret == 0 || broken)
            ret = -ECONNRESET;
    }
    if (ret < 0) {
        PQclear(*out);
        *out = NULL;
    }
    return ret;
}

static int run(struct pg_conn *pc, const struct pg_q *q, PGresult **out)
{
    return pc->in_tx ? run_tx(pc, q, out) : run_auto(eng(&pc->base), q, out);
}

/* ---- ?N -> $N ---------------------------------------------------------------- */

static bool ident_char(int c) { return isalnum(c) || c == '_' || c == '$' || c >= 0x80; }

/* Rewrite ?N to $N outside '...' (and E'...' with backslash escapes),
 * "...", $tag$...$tag$, -- and nested block comments.  *maxp: the highest N.
 * The result has the same length.  NULL when out of memory or N is out of
 * range (*maxp = -1). */
static char *translate(const char *in, int *maxp)
{
    size_t n = strlen(in);
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    memcpy(out, in, n + 1);
    int max = 0;
    for (size_t i = 0; i < n;) {
        char ch = in[i];
        if (ch == '\'') {
            bool esc = i > 0 && (in[i - 1] == 'E' || in[i - 1] == 'e') && (i < 2 || !ident_char((unsigned char)in[i - 2]));
            for (i++; i < n; i++) {
                if (esc && in[i] == '\\' && i + 1 < n) {
                    i++;
                } else if (in[i] == '\'') {
                    if (i + 1 < n && in[i + 1] == '\'')
                        i++;
                    else
                        break;
                }
            }
            i++;
        } else if (ch == '"') {
            for (i++; i < n; i++) {
                if (in[i] == '"') {
                    if (i + 1 < n && in[i + 1] == '"')
                        i++;
                    else
                        break;
                }
            }
            i++;
        } else if (ch == '-' && in[i + 1] == '-') {
            while (i < n && in[i] != '\n')
                i++;
        } else if (ch == '/' && in[i + 1] == '*') {
            int depth = 0;
            while (i < n) {
                if (in[i] == '/' && in[i + 1] == '*') {
                    depth++;
                    i += 2;
                } else if (in[i] == '*' && in[i + 1] == '/') {
                    i += 2;
                    if (--depth == 0)
                        break;
                } else {
                    i++;
                }
            }
        } else if (ch == '$' && (i == 0 || !ident_char((unsigned char)in[i - 1])) &&
                   !isdigit((unsigned char)in[i + 1])) {
            /* $tag$ ... $tag$ (tag may be empty) */
            size_t t = i + 1;
            while (t < n && (isalnum((unsigned char)in[t]) || in[t] == '_' || (unsigned char)in[t] >= 0x80))
                t++;
            if (t < n && in[t] == '$') {
                size_t taglen = t + 1 - i;
                const char *end = NULL;
                for (size_t k = t + 1; k + taglen <= n; k++)
                    if (!memcmp(in + k, in + i, taglen)) {
                        end = in + k;
                        break;
                    }
                i = end ? (size_t)(end - in) + taglen : n;
            } else {
                i++;
            }
        } else if (ch == '?' && isdigit((unsigned char)in[i + 1])) {
            long v = 0;
            size_t k = i + 1;
            while (k < n && isdigit((unsigned char)in[k]) && v <= PG_MAX_PARAMS)
                v = v * 10 + (in[k++] - '0');
            if (v < 1 || v > PG_MAX_PARAMS) {
                free(out);
                *maxp = -1;
                return NULL;
            }
            out[i] = '$';
            if (v > max)
                max = (int)v;
            i = k;
        } else {
            i++;
        }
    }
    *maxp = max;
    return out;
}

/* ---- statements ------------------------------------------------------------ */

static void stmt_drop_row(struct pg_stmt *s)
{
    if (!s->conv)
        return;
    for (int i = 0; i < s->ncols; i++) {
        free(s->conv[i]);
        s->conv[i] = NULL;
    }
}

static void stmt_drop_result(struct pg_stmt *s)
{
    stmt_drop_row(s);
    free(s->conv);
    free(s->convlen);
    s->conv = NULL;
    s->convlen = NULL;
    PQclear(s->res);
    s->res = NULL;
    s->ran = false;
    s->row = -1;
    s->nrows = s->ncols = 0;
}

static db_stmt *pg_prepare(db_conn *c, const char *sql)
{
    struct pg_stmt *s = calloc(1, sizeof *s);
    int max = 0;
    if (!s)
        return NULL;
    s->sql = translate(sql, &max);
    if (!s->sql) {
        if (max < 0)
            bfs_err(TAG, "PostgreSQL: a parameter number out of range in: %.*s", PG_LOG_SQL, sql);
        free(s);
        return NULL;
    }
    s->nparams = max;
    s->row = -1;
    if (max > 0) {
        s->vals = calloc((size_t)max, sizeof *s->vals);
        s->lens = calloc((size_t)max, sizeof *s->lens);
        if (!s->vals || !s->lens) {
            free(s->vals);
            free(s->lens);
            free(s->sql);
            free(s);
            return NULL;
        }
    }
    return &s->base;
}

static void pg_reset(db_stmt *st) { stmt_drop_result((struct pg_stmt *)st); }

static void pg_clear(db_stmt *st)
{
    struct pg_stmt *s = (struct pg_stmt *)st;
    stmt_drop_result(s);
    for (int i = 0; i < s->nparams; i++) {
        free(s->vals[i]);
        s->vals[i] = NULL;
        s->lens[i] = 0;
    }
}

static void pg_finalize(db_stmt *st)
{
    struct pg_stmt *s = (struct pg_stmt *)st;
    pg_clear(st);
    free(s->vals);
    free(s->lens);
    free(s->sql);
    free(s);
}

/* Take ownership of v (malloc'd text, NULL for SQL NULL) as parameter i. */
static int bind_own(db_stmt *st, int i, char *v, bool oom)
{
    struct pg_stmt *s = (struct pg_stmt *)st;
    if (oom)
        return -ENOMEM;
    if (i < 1 || i > s->nparams) {
        free(v);
        return -EINVAL;
    }
    stmt_drop_result(s);
    free(s->vals[i - 1]);
    s->vals[i - 1] = v;
    s->lens[i - 1] = v ? (int)strlen(v) : 0;
    return 0;
}

static int pg_bind_int64(db_stmt *s, int i, int64_t v)
{
    char *t = bfs_asprintf("%" PRId64, v);
    return bind_own(s, i, t, !t);
}

static int pg_bind_double(db_stmt *s, int i, double v)
{
    char *t = bfs_asprintf("%.17g", v);
    return bind_own(s, i, t, !t);
}

static int pg_bind_text(db_stmt *s, int i, const char *v, int len)
{
    if (!v)
        return bind_own(s, i, NULL, false);
    size_t n = len < 0 ? strlen(v) : (size_t)len;
    char *t = malloc(n + 1);
    if (t) {
        memcpy(t, v, n);
        t[n] = '\0';
    }
    return bind_own(s, i, t, !t);
}

static int pg_bind_blob(db_stmt *s, int i, const void *v, int len)
{
    static const char hex[] = "0123456789abcdef";
    if (!v || len < 0)
        return bind_own(s, i, NULL, false);
    char *t = malloc(2 * (size_t)len + 3);
    if (t) {
        const unsigned char *b = v;
        t[0] = '\\';
        t[1] = 'x';
        for (int k = 0; k < len; k++) {
            t[2 + 2 * k] = hex[b[k] >> 4];
            t[3 + 2 * k] = hex[b[k] & 15];
        }
        t[2 + 2 * (size_t)len] = '\0';
    }
    return bind_own(s, i, t, !t);
}

static int pg_bind_null(db_stmt *s, int i) { return bind_own(s, i, NULL, false); }

static int pg_bind_id(db_stmt *s, int i, const uint8_t id[16])
{
    char *t = bfs_asprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", id[0],
                           id[1], id[2], id[3], id[4], id[5], id[6], id[7], id[8], id[9], id[10], id[11],
                           id[12], id[13], id[14], id[15]);
    return bind_own(s, i, t, !t);
}

static bool is_write_status(const char *cmd)
{
    return !strncmp(cmd, "INSERT", 6) || !strncmp(cmd, "UPDATE", 6) || !strncmp(cmd, "DELETE", 6) ||
           !strncmp(cmd, "MERGE", 5);
}

static int pg_step(db_stmt *st)
{
    struct pg_stmt *s = (struct pg_stmt *)st;
    struct pg_conn *pc = (struct pg_conn *)st->conn;
    if (s->ran && s->row >= s->nrows)
        stmt_drop_result(s); /* stepped after DB_DONE: run again, as SQLite does */
    if (!s->ran) {
        struct pg_q q = {.sql = s->sql,
                         .n = s->nparams,
                         .vals = (const char *const *)s->vals,
                         .lens = s->lens};
        PGresult *r;
        int ret = run(pc, &q, &r);
        if (ret < 0)
            return ret;
        s->res = r;
        s->ran = true;
        s->nrows = r && PQresultStatus(r) == PGRES_TUPLES_OK ? PQntuples(r) : 0;
        s->ncols = r ? PQnfields(r) : 0;
        if (r && is_write_status(PQcmdStatus(r))) {
            const char *n = PQcmdTuples(r);
            pc->changes = n && *n ? strtoll(n, NULL, 10) : 0;
        }
        if (s->ncols > 0) {
            s->conv = calloc((size_t)s->ncols, sizeof *s->conv);
            s->convlen = calloc((size_t)s->ncols, sizeof *s->convlen);
            if (!s->conv || !s->convlen) {
                stmt_drop_result(s);
                return -ENOMEM;
            }
        }
        s->row = -1;
    }
    stmt_drop_row(s);
    s->row++;
    return s->row < s->nrows ? DB_ROW : DB_DONE;
}

static bool has_cell(struct pg_stmt *s, int i)
{
    return s->res && s->row >= 0 && s->row < s->nrows && i >= 0 && i < s->ncols;
}

static int pg_column_count(db_stmt *st) { return ((struct pg_stmt *)st)->ncols; }

static const char *pg_column_name(db_stmt *st, int i)
{
    struct pg_stmt *s = (struct pg_stmt *)st;
    return s->res && i >= 0 && i < s->ncols ? PQfname(s->res, i) : NULL;
}

static enum db_type pg_column_type(db_stmt *st, int i)
{
    struct pg_stmt *s = (struct pg_stmt *)st;
    if (!has_cell(s, i) || PQgetisnull(s->res, s->row, i))
        return DB_NULL;
    switch (PQftype(s->res, i)) {
    case OID_BOOL:
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
    case OID_OID:
        return DB_INTEGER;
    case OID_FLOAT4:
    case OID_FLOAT8:
    case OID_NUMERIC:
        return DB_FLOAT;
    case OID_BYTEA:
        return DB_BLOB;
    default:
        return DB_TEXT;
    }
}

/* The bytes of a cell as the column's type reads: bytea decoded, uuid as
 * 32 hex digits, else the text.  Owned by s until the row changes. */
static const char *cell(struct pg_stmt *s, int i, int *len)
{
    *len = 0;
    if (!has_cell(s, i) || PQgetisnull(s->res, s->row, i))
        return NULL;
    const char *v = PQgetvalue(s->res, s->row, i);
    Oid t = PQftype(s->res, i);
    if (t != OID_BYTEA && t != OID_UUID) {
        *len = PQgetlength(s->res, s->row, i);
        return v;
    }
    if (!s->conv[i]) {
        /* malloc'd copies, so that free() releases every conv[i] */
        if (t == OID_BYTEA) {
            size_t n = 0;
            unsigned char *b = PQunescapeBytea((const unsigned char *)v, &n);
            s->conv[i] = b ? malloc(n ? n : 1) : NULL;
            if (s->conv[i])
                memcpy(s->conv[i], b, n);
            PQfreemem(b);
            s->convlen[i] = s->conv[i] ? (int)n : 0;
        } else {
            char *h = malloc(33);
            int k = 0;
            for (const char *p = v; h && *p && k < 32; p++)
                if (*p != '-')
                    h[k++] = *p;
            if (h)
                h[k] = '\0';
            s->conv[i] = h;
            s->convlen[i] = h ? k : 0;
        }
    }
    *len = s->convlen[i];
    return s->conv[i];
}

static int64_t pg_column_int64(db_stmt *st, int i)
{
    struct pg_stmt *s = (struct pg_stmt *)st;
    int n;
    const char *v = cell(s, i, &n);
    if (!v)
        return 0;
    Oid t = PQftype(s->res, i);
    if (t == OID_BOOL)
        return v[0] == 't';
    if (t == OID_FLOAT4 || t == OID_FLOAT8 || t == OID_NUMERIC)
        return (int64_t)strtod(v, NULL);
    return strtoll(v, NULL, 10);
}

static double pg_column_double(db_stmt *st, int i)
{
    struct pg_stmt *s = (struct pg_stmt *)st;
    int n;
    const char *v = cell(s, i, &n);
    if (!v)
        return 0;
    if (PQftype(s->res, i) == OID_BOOL)
        return v[0] == 't';
    return strtod(v, NULL);
}

static const char *pg_column_text(db_stmt *st, int i)
{
    struct pg_stmt *s = (struct pg_stmt *)st;
    if (!has_cell(s, i) || PQgetisnull(s->res, s->row, i))
        return NULL;
    if (PQftype(s->res, i) == OID_UUID) {
        int n;
        return cell(s, i, &n);
    }
    return PQgetvalue(s->res, s->row, i);
}

static const void *pg_column_blob(db_stmt *st, int i)
{
    int n;
    return cell((struct pg_stmt *)st, i, &n);
}

static int pg_column_bytes(db_stmt *st, int i)
{
    int n;
    cell((struct pg_stmt *)st, i, &n);
    return n;
}

/* ---- connections and transactions ----------------------------------------- */

static db_conn *pg_conn_new(db_engine *e)
{
    (void)e;
    struct pg_conn *pc = calloc(1, sizeof *pc);
    return pc ? &pc->base : NULL;
}

static void pg_conn_free(db_conn *c)
{
    struct pg_conn *pc = (struct pg_conn *)c;
    if (pc->tx)
        tx_end(pc, true);
    free(pc);
}

static int pg_exec(db_conn *c, const char *sql)
{
    struct pg_q q = {.sql = sql, .simple = true};
    PGresult *r;
    int ret = run((struct pg_conn *)c, &q, &r);
    PQclear(r);
    return ret;
}

static int64_t pg_changes(db_conn *c) { return ((struct pg_conn *)c)->changes; }

static bool pg_in_transaction(const db_conn *c) { return ((const struct pg_conn *)c)->in_tx; }

static int pg_begin(db_conn *c, enum db_tx mode)
{
    struct pg_conn *pc = (struct pg_conn *)c;
    struct pg_engine *pe = eng(c);
    if (pc->in_tx) {
        bfs_err(TAG, "PostgreSQL: db_begin inside a transaction");
        return -EINVAL;
    }
    if (mode == DB_TX_WRITE && !pe->writable) {
        bfs_warn(TAG, "PostgreSQL registry %s: a write transaction on a read-only registry", pe->url_shown);
        return -EROFS;
    }
    /* DB_TX_READ: one snapshot for every statement, as SQLite's read
     * transaction gives */
    const char *begin = mode == DB_TX_READ ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" : "BEGIN";
    for (int attempt = 0;; attempt++) {
        struct pg_link *l;
        int ret = pool_get(pe, attempt > 0, &l);
        if (ret < 0)
            return ret;
        int64_t deadline = bfs_mono_ms() + pe->stmt_ms + PG_GRACE_MS;
        const char *pre[] = {begin, pe->set_path, pe->set_timeout, "SET LOCAL TIME ZONE 'UTC'"};
        PGresult *out = NULL, *err = NULL;
        ret = PQenterPipelineMode(l->pq) ? 0 : -ECONNRESET;
        for (size_t i = 0; ret == 0 && i < 4; i++)
            if (!PQsendQueryParams(l->pq, pre[i], 0, NULL, NULL, NULL, NULL, 0))
                ret = -ECONNRESET;
        if (ret == 0 && !PQpipelineSync(l->pq))
            ret = -ECONNRESET;
        if (ret == 0)
            ret = link_flush(l->pq, deadline);
        if (ret == 0)
            ret = collect(l->pq, deadline, true, -1, &out, &err);
        if (ret == 0 && !PQexitPipelineMode(l->pq))
            ret = -ECONNRESET;
        PQclear(out);
        if ((ret == -ECONNRESET || (ret == 0 && link_broken(l->pq, err))) && attempt == 0) {
            PQclear(err);
            pool_put(pe, l, true);
            continue;
        }
        if (ret < 0 || err) {
            bool broken;
            int local = ret;
            ret = outcome(l->pq, local, err, begin, &broken);
            PQclear(err);
            pool_put(pe, l, broken || local < 0 || link_rollback(l->pq) < 0);
            return ret;
        }
        pc->tx = l;
        pc->in_tx = true;
        pc->tx_lost = false;
        return 0;
    }
}

static int pg_commit(db_conn *c)
{
    struct pg_conn *pc = (struct pg_conn *)c;
    if (!pc->in_tx)
        return 0;
    if (pc->tx_lost || !pc->tx) {
        tx_end(pc, true);
        bfs_warn(TAG, "PostgreSQL: COMMIT of a transaction whose connection was lost: nothing was committed");
        return -ECONNRESET;
    }
    struct pg_q q = {.sql = "COMMIT"};
    PGresult *r = NULL;
    int ret = run_tx(pc, &q, &r);
    if (ret == 0 && r && strcmp(PQcmdStatus(r), "COMMIT") != 0) {
        /* COMMIT of an aborted transaction answers ROLLBACK */
        bfs_warn(TAG, "PostgreSQL: the transaction had failed and was rolled back at COMMIT");
        ret = -EIO;
    }
    PQclear(r);
    if (pc->tx && PQtransactionStatus(pc->tx->pq) != PQTRANS_IDLE && link_rollback(pc->tx->pq) < 0)
        tx_end(pc, true);
    else
        tx_end(pc, false);
    return ret;
}

static void pg_rollback(db_conn *c)
{
    struct pg_conn *pc = (struct pg_conn *)c;
    if (!pc->in_tx)
        return;
    bool drop = !pc->tx || link_rollback(pc->tx->pq) < 0;
    tx_end(pc, drop);
}

/* ---- catalog questions ----------------------------------------------------- */

static int one_answer(db_conn *c, const char *sql, const char *a, const char *b)
{
    const char *vals[] = {eng(c)->ns, a, b};
    int lens[3] = {0};
    struct pg_q q = {.sql = sql, .n = b ? 3 : 2, .vals = vals, .lens = lens};
    PGresult *r;
    int ret = run((struct pg_conn *)c, &q, &r);
    if (ret < 0)
        return ret;
    ret = PQntuples(r) > 0;
    PQclear(r);
    return ret;
}

static int pg_table_exists(db_conn *c, const char *table)
{
    return one_answer(c,
                      "SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2",
                      table, NULL);
}

static int pg_column_exists(db_conn *c, const char *table, const char *column)
{
    return one_answer(c,
                      "SELECT 1 FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 "
                      "AND column_name = $3",
                      table, column);
}

static int pg_column_takes_timestamp(db_conn *c, const char *table, const char *column)
{
    return one_answer(c,
                      "SELECT 1 FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 "
                      "AND column_name = $3 AND data_type LIKE 'timestamp%'",
                      table, column);
}

/* ---- dialect ------------------------------------------------------------------ */

#define MAX_NS "4102444800000000000" /* BFS_TIMESPAN_UNBOUNDED_END */
_Static_assert(BFS_TIMESPAN_UNBOUNDED_END == INT64_C(4102444800000000000), "MAX_NS");
_Static_assert(BFS_TIMESPAN_UNBOUNDED_BEGIN == 0, "unbounded begin");

static const char *dot(const char *alias) { return alias && *alias ? "." : ""; }
static const char *nz(const char *s) { return s ? s : ""; }

static char *pg_span_columns(const db_conn *c, const char *prefix)
{
    return bfs_asprintf("%stimespan", nz(prefix));
}

/* daf_butler's _RangeTimespanType: an unbounded end is a NULL bound, the
 * empty timespan (begin >= end; daf_butler makes it (max, 0)) is 'empty',
 * no timespan (NULL, NULL) is NULL. */
static char *pg_span_values(const db_conn *c, const char *b, const char *e)
{
    return bfs_asprintf("(CASE WHEN CAST(%s AS bigint) IS NULL OR CAST(%s AS bigint) IS NULL THEN NULL "
                        "WHEN CAST(%s AS bigint) >= CAST(%s AS bigint) THEN 'empty'::int8range "
                        "ELSE int8range(NULLIF(CAST(%s AS bigint), 0), NULLIF(CAST(%s AS bigint), " MAX_NS
                        "), '[)') END)",
                        b, e, b, e, b, e);
}

/* The inverse: NULL -> NULL, NULL; empty -> max, 0 (daf_butler's
 * Timespan.makeEmpty, the pair SQLite's columns hold for it); an open end
 * -> 0 or max. */
static char *pg_span_select(const db_conn *c, const char *alias)
{
    const char *a = nz(alias), *d = dot(alias);
    return bfs_asprintf("CASE WHEN isempty(%s%stimespan) THEN " MAX_NS " ELSE COALESCE(lower(%s%stimespan), "
                        "CASE WHEN %s%stimespan IS NULL THEN NULL ELSE 0 END) END, "
                        "CASE WHEN isempty(%s%stimespan) THEN 0 ELSE COALESCE(upper(%s%stimespan), "
                        "CASE WHEN %s%stimespan IS NULL THEN NULL ELSE " MAX_NS " END) END",
                        a, d, a, d, a, d, a, d, a, d, a, d);
}

static char *pg_span_overlaps(const db_conn *c, const char *alias, const char *b, const char *e)
{
    char *v = pg_span_values(c, b, e);
    char *s = v ? bfs_asprintf("%s%stimespan && %s", nz(alias), dot(alias), v) : NULL;
    free(v);
    return s;
}

/* SQLite's GLOB, computed by the server from the bound pattern (the
 * parameter is not known when the SQL is built): the pattern is cut into
 * tokens (a closed [set], an unclosed '[' to the end, one character) and
 * each becomes a piece of an ARE anchored at both ends.  Every literal
 * character is written \UXXXXXXXX, so no character of the pattern is ever a
 * regex metacharacter.  As in SQLite: case-sensitive; * any run of
 * characters (newlines too), ? one character; [abc], [a-z], [^...] (not
 * [!...]: '!' is a member), ']' first in a set is a member, '-' first or
 * last or right after a range is a member, a reversed range [c-a] matches
 * its first character only (SQLite tests it before it sees the '-'); an unclosed '[' makes the pattern match nothing; a NULL
 * pattern matches nothing.  The subquery does not depend on the row: the
 * server computes it once per statement. */
#define GLOB_ESC(x) "(E'\\\\U' || lpad(to_hex(ascii(" x ")), 8, '0'))"
static char *pg_glob(const db_conn *c, const char *expr, const char *param)
{
    return bfs_asprintf(
        "coalesce((%s) ~ (SELECT CASE WHEN count(*) = count(p.re) AND CAST(%s AS text) IS NOT NULL "
        "THEN '^' || coalesce(string_agg(p.re, '' ORDER BY p.n), '') || '$' END "
        "FROM (SELECT g.n, CASE "
        "WHEN g.m[4] = '*' THEN '.*' "
        "WHEN g.m[4] = '?' THEN '.' "
        "WHEN g.m[4] IS NOT NULL THEN " GLOB_ESC("g.m[4]") " "
        "WHEN g.m[3] IS NOT NULL THEN NULL "
        "ELSE (SELECT CASE WHEN s.members <> '' THEN '[' || CASE WHEN g.m[1] IS NOT NULL THEN '^' ELSE '' "
        "END || s.members || ']' WHEN g.m[1] IS NOT NULL THEN '.' END "
        "FROM (SELECT CASE WHEN left(b.body, 1) = ']' THEN " GLOB_ESC("']'") " ELSE '' END || "
        "coalesce((SELECT string_agg(CASE WHEN r.x[2] IS NULL THEN " GLOB_ESC("r.x[1]") " "
        "WHEN r.x[1] COLLATE \"C\" <= r.x[2] COLLATE \"C\" THEN " GLOB_ESC("r.x[1]") " || '-' || " GLOB_ESC(
            "r.x[2]") " "
                      "ELSE " GLOB_ESC("r.x[1]") " END, '' ORDER BY r.k) "
                      "FROM regexp_matches(CASE WHEN left(b.body, 1) = ']' THEN substr(b.body, 2) ELSE b.body END, "
                      "'(.)(?:-(.))?', 'g') WITH ORDINALITY AS r(x, k)), '') AS members "
                      "FROM (SELECT coalesce(g.m[1], g.m[2]) AS body) b) s) "
                      "END AS re "
                      "FROM regexp_matches(CAST(%s AS text), "
                      "E'\\\\[\\\\^(\\\\][^]]*|[^]]+)\\\\]|\\\\[(\\\\][^]]*|[^]^][^]]*)\\\\]|(\\\\[\\\\^?\\\\]?[^]]*$)|(.)', "
                      "'g') WITH ORDINALITY AS g(m, n)) p), false)",
        expr, param, param);
}

static char *pg_id_hex(const db_conn *c, const char *expr)
{
    return bfs_asprintf("replace(CAST(%s AS text), '-', '')", expr);
}

static char *pg_span_same(const db_conn *c, const char *alias, const char *b, const char *e)
{
    char *v = pg_span_values(c, b, e);
    char *s = v ? bfs_asprintf("%s%stimespan IS NOT DISTINCT FROM %s", nz(alias), dot(alias), v) : NULL;
    free(v);
    return s;
}

/* as copy.c makes a NOT NULL pair: unbounded both ways by default */
static char *pg_span_ddl(const db_conn *c)
{
    (void)c;
    return bfs_asprintf("timespan INT8RANGE NOT NULL DEFAULT '(,)'::int8range");
}

/* A BIGINT (butlerfs init, TAI ns) or a TIMESTAMP (copied from an older
 * repository): the type is known only to the server, so the value goes
 * through its text, which tells them apart. */
static char *pg_time_ns(const db_conn *c, const char *expr)
{
    (void)c;
    return bfs_asprintf("CASE WHEN CAST(%s AS text) ~ '^-?[0-9]+$' THEN CAST(CAST(%s AS text) AS bigint) "
                        "ELSE coalesce(CAST(floor(extract(epoch FROM CAST(CAST(%s AS text) AS timestamp))) "
                        "AS bigint), 0) * 1000000000 END",
                        expr, expr, expr);
}

static const char *pg_word(const db_conn *c, enum db_word w)
{
    (void)c;
    switch (w) {
    case DB_WORD_IS:
        return "IS NOT DISTINCT FROM";
    case DB_WORD_ID_TYPE:
        return "UUID";
    case DB_WORD_SERIAL:
        return "BIGSERIAL";
    }
    return "";
}

/* One bound of an int8range's text ("" is unbounded): 0, or -EINVAL. */
static int range_bound(const char *p, size_t n, int64_t unbounded, int64_t *out)
{
    if (n == 0) {
        *out = unbounded;
        return 0;
    }
    char buf[24];
    if (n >= sizeof buf)
        return -EINVAL;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return bfs_parse_i64(buf, out) ? 0 : -EINVAL;
}

/* int8range's canonical text is "[a,b)" with either bound empty when
 * unbounded, or "empty". */
static int pg_column_span(db_stmt *st, int i, int64_t *begin, int64_t *end)
{
    struct pg_stmt *s = (struct pg_stmt *)st;
    if (!has_cell(s, i) || PQftype(s->res, i) != OID_INT8RANGE)
        return -EINVAL;
    if (PQgetisnull(s->res, s->row, i))
        return 0;
    const char *v = PQgetvalue(s->res, s->row, i);
    if (!strcmp(v, "empty")) {
        *begin = BFS_TIMESPAN_UNBOUNDED_END;
        *end = BFS_TIMESPAN_UNBOUNDED_BEGIN;
        return 1;
    }
    size_t n = strlen(v);
    const char *comma = strchr(v, ',');
    if (n < 3 || !comma || (v[0] != '[' && v[0] != '(') || (v[n - 1] != ')' && v[n - 1] != ']'))
        return -EINVAL;
    int ret = range_bound(v + 1, (size_t)(comma - v - 1), BFS_TIMESPAN_UNBOUNDED_BEGIN, begin);
    if (ret == 0)
        ret = range_bound(comma + 1, (size_t)(v + n - 1 - comma - 1), BFS_TIMESPAN_UNBOUNDED_END, end);
    return ret < 0 ? ret : 1;
}

/* PostgreSQL's reserved keywords, and those that cannot be a function or
 * type name or may not be a column label without AS (quoting them is
 * harmless; not quoting one that needs it is an error). */
static const char *const pg_keywords[] = {
    "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "authorization",
    "between", "bigint", "binary", "bit", "boolean", "both", "case", "cast", "char", "character",
    "check", "coalesce", "collate", "collation", "column", "concurrently", "constraint", "create",
    "cross", "current_catalog", "current_date", "current_role", "current_schema", "current_time",
    "current_timestamp", "current_user", "day", "dec", "decimal", "default", "deferrable", "desc",
    "distinct", "do", "else", "end", "except", "exists", "extract", "false", "fetch", "filter", "float",
    "for", "foreign", "freeze", "from", "full", "grant", "greatest", "group", "grouping", "having",
    "hour", "ilike", "in", "initially", "inner", "inout", "int", "integer", "intersect", "interval",
    "into", "is", "isnull", "join", "lateral", "leading", "least", "left", "like", "limit", "localtime",
    "localtimestamp", "minute", "month", "national", "natural", "nchar", "none", "normalize", "not",
    "notnull", "null", "nullif", "numeric", "offset", "on", "only", "or", "order", "out", "outer",
    "over", "overlaps", "overlay", "placing", "position", "precision", "primary", "real", "references",
    "returning", "right", "row", "second", "select", "session_user", "setof", "similar", "smallint",
    "some", "substring", "symmetric", "system_user", "table", "tablesample", "then", "time", "timestamp",
    "to", "trailing", "treat", "trim", "true", "union", "unique", "user", "using", "values", "varchar",
    "variadic", "verbose", "when", "where", "window", "with", "within", "without", "year",
};

static bool pg_ident_needs_quotes(const db_conn *c, const char *name)
{
    if (!name || !(islower((unsigned char)name[0]) || name[0] == '_'))
        return true;
    for (const char *p = name; *p; p++)
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_'))
            return true;
    for (size_t i = 0; i < sizeof pg_keywords / sizeof pg_keywords[0]; i++)
        if (!strcmp(pg_keywords[i], name))
            return true;
    return false;
}

/* ---- the engine ---------------------------------------------------------------- */

static const char *pg_describe(const db_engine *e) { return ((const struct pg_engine *)e)->describe; }

static void pg_pool_stats(db_engine *e, int *open, int *in_use, int *max)
{
    struct pg_engine *pe = (struct pg_engine *)e;
    pthread_mutex_lock(&pe->mu);
    if (open)
        *open = pe->open;
    if (in_use)
        *in_use = pe->in_use;
    if (max)
        *max = pe->max;
    pthread_mutex_unlock(&pe->mu);
}

static void engine_free(struct pg_engine *pe)
{
    for (size_t i = 0; i < sizeof pe->vals / sizeof pe->vals[0]; i++)
        free(pe->vals[i]);
    free(pe->url_shown);
    free(pe->ns);
    free(pe->describe);
    free(pe->begin_sql);
    free(pe->set_path);
    free(pe->set_timeout);
    free(pe->exec_prefix);
    free(pe);
}

static void pg_close(db_engine *e)
{
    struct pg_engine *pe = (struct pg_engine *)e;
    pthread_mutex_lock(&pe->mu);
    pe->stopping = true;
    pthread_cond_broadcast(&pe->reap);
    struct pg_link *dead = NULL;
    reap_locked(pe, 0, true, &dead);
    pthread_mutex_unlock(&pe->mu);
    if (pe->reaper_started)
        pthread_join(pe->reaper, NULL);
    link_free(dead);
    if (pe->in_use)
        bfs_err(TAG, "PostgreSQL registry %s closed with %d connections in use", pe->url_shown, pe->in_use);
    pthread_cond_destroy(&pe->freed);
    pthread_cond_destroy(&pe->reap);
    pthread_mutex_destroy(&pe->mu);
    engine_free(pe);
}

/* "postgresql://user@host:port/db" (never a password), redacted anyway. */
static char *url_for_messages(const bfs_dburl *u)
{
    bool v6 = u->host && strchr(u->host, ':');
    bool sock = u->host && u->host[0] == '/';
    char *s = bfs_asprintf("postgresql://%s%s%s%s%s%s%s/%s%s%s", nz(u->user), u->user ? "@" : "",
                           v6 ? "[" : "", u->host && !sock ? u->host : "", v6 ? "]" : "", u->port ? ":" : "",
                           nz(u->port), nz(u->dbname), sock ? "?host=" : "", sock ? u->host : "");
    char *r = s ? bfs_dburl_redact(s) : NULL;
    free(s);
    return r;
}

static char *quote_ident(const char *s)
{
    size_t n = strlen(s);
    char *q = malloc(2 * n + 3), *o = q;
    if (!q)
        return NULL;
    *o++ = '"';
    for (; *s; s++) {
        if (*s == '"')
            *o++ = '"';
        *o++ = *s;
    }
    *o++ = '"';
    *o = '\0';
    return q;
}

static int pg_open(const struct db_options *o, db_engine **out, char **errmsg)
{
    *out = NULL;
    if (!o->url) {
        bfs_set_errmsg(errmsg, "no PostgreSQL URL given for the registry");
        return -EINVAL;
    }
    struct pg_engine *pe = calloc(1, sizeof *pe);
    if (!pe)
        return -ENOMEM;
    const char *vals[17];
    int n = bfs_dburl_params(o->url, pe->keys, vals, 17);
    bool oom = n < 0;
    for (int i = 0; i < n && !oom; i++)
        oom = !(pe->vals[i] = strdup(vals[i]));
    if (!oom) { /* libpq keywords the URL cannot give */
        pe->keys[n] = "fallback_application_name";
        oom = !(pe->vals[n++] = strdup("butlerfs"));
        pe->keys[n] = "client_encoding";
        oom = oom || !(pe->vals[n++] = strdup("UTF8"));
        pe->keys[n] = NULL;
    }
    pe->writable = o->writable;
    pe->max = o->max_connections > 0 ? o->max_connections : 4;
    pe->idle_ms = o->idle_close_ms > 0 ? o->idle_close_ms : 60000;
    pe->connect_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 10000;
    pe->stmt_ms = o->statement_timeout_ms > 0 ? o->statement_timeout_ms : 30000;
    pe->url_shown = url_for_messages(o->url);
    pe->ns = strdup(o->namespace && *o->namespace ? o->namespace : "public");
    char *qns = pe->ns ? quote_ident(pe->ns) : NULL;
    pe->begin_sql = strdup(pe->writable ? "BEGIN" : "BEGIN READ ONLY");
    pe->set_path = qns ? bfs_asprintf("SET LOCAL search_path TO %s", qns) : NULL;
    pe->set_timeout = bfs_asprintf("SET LOCAL statement_timeout = %d", pe->stmt_ms);
    pe->exec_prefix = pe->begin_sql && pe->set_path && pe->set_timeout
                          ? bfs_asprintf("%s; %s; %s; SET LOCAL TIME ZONE 'UTC'", pe->begin_sql, pe->set_path,
                                         pe->set_timeout)
                          : NULL;
    pe->describe = pe->url_shown && pe->ns ? bfs_asprintf("%s (namespace %s)", pe->url_shown, pe->ns) : NULL;
    free(qns);
    if (oom || !pe->url_shown || !pe->ns || !pe->begin_sql || !pe->set_path || !pe->set_timeout ||
        !pe->exec_prefix || !pe->describe) {
        engine_free(pe);
        return -ENOMEM;
    }
    pthread_mutex_init(&pe->mu, NULL);
    bfs_cond_init_mono(&pe->freed);
    bfs_cond_init_mono(&pe->reap);
    pe->base.kind = DB_POSTGRESQL;

    /* one connection now, so that a wrong URL is told at open */
    struct pg_link *l;
    char why[512];
    int ret = link_connect(pe, &l, why, sizeof why);
    if (ret < 0) {
        const char *user = o->url->user ? o->url->user : "(libpq's default user)";
        if (ret == -EACCES)
            bfs_set_errmsg(errmsg,
                           "the PostgreSQL registry %s refused the credentials of user %s (password from %s): %s",
                           pe->url_shown, user,
                           o->url->password_source ? o->url->password_source : "libpq's PGPASSWORD/~/.pgpass",
                           why);
        else if (ret == -ENOENT)
            bfs_set_errmsg(errmsg, "the PostgreSQL server of %s has no such database: %s", pe->url_shown, why);
        else if (ret == -ETIMEDOUT)
            bfs_set_errmsg(errmsg, "cannot reach the PostgreSQL server of %s within %d ms (connect_timeout): %s",
                           pe->url_shown, pe->connect_ms, why);
        else
            bfs_set_errmsg(errmsg, "cannot reach the PostgreSQL server of %s: %s", pe->url_shown, why);
        pg_close(&pe->base);
        return ret;
    }
    pe->open = 1;
    l->idle_since = bfs_mono_ms();
    pe->idle = l;
    if (pthread_create(&pe->reaper, NULL, reaper_main, pe) != 0) {
        pg_close(&pe->base);
        bfs_set_errmsg(errmsg, "out of thread resources opening the registry");
        return -ENOMEM;
    }
    pe->reaper_started = true;

    const char *nsv[] = {pe->ns};
    int nsl[] = {0};
    struct pg_q q = {.sql = "SELECT 1 FROM pg_namespace WHERE nspname = $1", .n = 1, .vals = nsv, .lens = nsl};
    PGresult *r;
    ret = run_auto(pe, &q, &r);
    if (ret == 0 && PQntuples(r) == 0) {
        char esc[256];
        bfs_log_escape(esc, sizeof esc, pe->ns, strlen(pe->ns));
        bfs_set_errmsg(errmsg,
                       "the PostgreSQL registry %s has no namespace (schema) \"%s\"; check the namespace in "
                       "butler.yaml, or make the registry there (butlerfs init --db)",
                       pe->url_shown, esc);
        ret = -ENOENT;
    } else if (ret < 0) {
        bfs_set_errmsg(errmsg, "the PostgreSQL registry %s cannot be read (%s); the log has the server's reason",
                       pe->url_shown, strerror(-ret));
    }
    PQclear(r);
    if (ret < 0) {
        pg_close(&pe->base);
        return ret;
    }
    *out = &pe->base;
    return 0;
}

/* SHARE ROW EXCLUSIVE conflicts with itself and with every INSERT, UPDATE
 * and DELETE of the table, not with reads nor with foreign key checks
 * (ROW SHARE) of rows that reference it. */
static int pg_lock_table(db_conn *c, const char *table)
{
    char *q = quote_ident(table);
    char *sql = q ? bfs_asprintf("LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE", q) : NULL;
    int ret = sql ? pg_exec(c, sql) : -ENOMEM;
    free(sql);
    free(q);
    return ret;
}

const struct db_ops db_pg_ops = {
    .open = pg_open,
    .close = pg_close,
    .conn_new = pg_conn_new,
    .conn_free = pg_conn_free,
    .prepare = pg_prepare,
    .finalize = pg_finalize,
    .clear = pg_clear,
    .exec = pg_exec,
    .bind_int64 = pg_bind_int64,
    .bind_double = pg_bind_double,
    .bind_text = pg_bind_text,
    .bind_blob = pg_bind_blob,
    .bind_null = pg_bind_null,
    .bind_id = pg_bind_id,
    .step = pg_step,
    .reset = pg_reset,
    .column_count = pg_column_count,
    .column_name = pg_column_name,
    .column_type = pg_column_type,
    .column_int64 = pg_column_int64,
    .column_double = pg_column_double,
    .column_text = pg_column_text,
    .column_blob = pg_column_blob,
    .column_bytes = pg_column_bytes,
    .changes = pg_changes,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .in_transaction = pg_in_transaction,
    .table_exists = pg_table_exists,
    .column_exists = pg_column_exists,
    .column_takes_timestamp = pg_column_takes_timestamp,
    .span_columns = pg_span_columns,
    .span_values = pg_span_values,
    .span_select = pg_span_select,
    .span_overlaps = pg_span_overlaps,
    .glob = pg_glob,
    .id_hex = pg_id_hex,
    .span_same = pg_span_same,
    .span_ddl = pg_span_ddl,
    .time_ns = pg_time_ns,
    .word = pg_word,
    .column_span = pg_column_span,
    .lock_table = pg_lock_table,
    .ident_needs_quotes = pg_ident_needs_quotes,
    .describe = pg_describe,
    .pool_stats = pg_pool_stats,
};
