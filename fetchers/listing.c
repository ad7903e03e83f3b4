/*
 * listing.c - remote directory listings: WebDAV PROPFIND (Depth: 1) and S3
 * ListObjectsV2, through http.c's streamed call (listing.h).
 *
 * Design.  Each reply is parsed while it arrives by a libxml2 push parser
 * with SAX2 callbacks, so no document tree is built and memory does not
 * grow with the reply (apart from one S3 page, see below).  The parser
 * never touches the network (XML_PARSE_NONET), never loads or expands a
 * DTD: a reply with a DOCTYPE is refused outright, which also rules out
 * every entity but the five predefined ones.  Elements are recognised by
 * their place: a small stack of known tags, one per depth, so an element
 * only counts where the protocol puts it (a <D:href> inside <D:prop> is not
 * the response's href).  WebDAV elements must be in the "DAV:" namespace;
 * S3 replies are matched by local name (servers differ in the namespace).
 *
 * WebDAV: one <D:response> is one member: its single href, and from a
 * propstat whose status is 2xx its getcontentlength and whether its
 * resourcetype holds <D:collection/>.  A response with a non-2xx status, or
 * with several hrefs (the status-only form), is not taken: for catch-up an
 * object not seen is missing, so doubt errs towards uploading again.
 *
 * S3: with encoding-type=url the keys arrive URL-encoded ('+' for a space),
 * but the reply's EncodingType element comes after the Contents, so the
 * keys of a page are kept until its end (a page is at most max-keys keys,
 * and always bounded by the reply size).
 *
 * Text is collected only for the elements read (href, status, sizes,
 * keys), at most TEXT_MAX bytes each; longer is a bad reply.
 */
#include "listing_i.h"

#include "log.h"
#include "s3.h"
#include "strutil.h"

#include <libxml/parser.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TAG "listing"
#define TEXT_MAX 16384
#define DEPTH_MAX 32
#define S3_MAX_KEYS 1000
/* libxml2 takes chunks as int; feed at most this much at once */
#define FEED_MAX (1 << 20)

enum tag {
    T_OTHER, T_ROOT,
    /* WebDAV */
    T_MULTISTATUS, T_RESPONSE, T_HREF, T_PROPSTAT, T_PROP, T_STATUS, T_LENGTH, T_RESTYPE, T_COLLECTION,
    /* S3 */
    T_LBR, T_CONTENTS, T_KEY, T_SIZE, T_TRUNCATED, T_NEXT, T_ENCODING, T_COMMON, T_PREFIX,
};

static bool is_text_tag(enum tag t)
{
    return t == T_HREF || t == T_STATUS || t == T_LENGTH || t == T_KEY || t == T_SIZE || t == T_TRUNCATED ||
           t == T_NEXT || t == T_ENCODING || t == T_PREFIX;
}

struct raw {
    char *key;  /* as in the reply (maybe URL-encoded) */
    int64_t size;
    bool is_dir;
};

struct parser {
    bfs_list_kind kind;
    const char *base;
    size_t base_len;
    bfs_list_cb cb;
    void *ctx;
    bfs_list_stats *st;
    xmlParserCtxtPtr x;
    int depth;
    enum tag stack[DEPTH_MAX + 1];
    bool root_seen;
    int err;                /* the first error: -EPROTO, -ENOMEM or the callback's */

    char *text;             /* the current text element's characters */
    size_t tlen;

    /* WebDAV: the response being read */
    char *href;
    int nhref;
    long resp_status;       /* 0: none */
    int64_t ps_len;         /* the propstat being read */
    bool ps_dir;
    long ps_status;
    int64_t size;           /* from a 2xx propstat; -1 none */
    bool is_dir;

    /* S3: this page */
    struct raw *raws;
    size_t nraw, rawcap;
    char *key;
    int64_t key_size;
    bool url_encoded, truncated;
    char *next_token;
};

static void fail(struct parser *p, int err)
{
    if (!p->err)
        p->err = err;
    if (p->x)
        xmlStopParser(p->x);
}

/* ---- names ------------------------------------------------------------------- */

/* Decode n bytes of in (with '+' for a space when plus) into a malloc'd
 * string, or NULL (bad escape to NUL, out of memory: *err). */
static char *decode(const char *in, size_t n, bool plus, int *err)
{
    char *tmp = malloc(n + 1), *out = malloc(n + 1);
    size_t len;
    *err = 0;
    if (!tmp || !out) {
        *err = -ENOMEM;
    } else {
        memcpy(tmp, in, n);
        tmp[n] = '\0';
        if (plus)
            for (char *c = tmp; *c; c++)
                if (*c == '+')
                    *c = ' ';
        if (memchr(in, '\0', n) || bfs_uri_decode(tmp, n, out, &len) < 0)
            *err = -EINVAL;
    }
    free(tmp);
    if (*err) {
        free(out);
        return NULL;
    }
    return out;
}

/* The member name of decoded (a path or a key) under base, or NULL: not a
 * direct member (*self when it is base itself). */
static const char *member(const char *base, size_t base_len, char *decoded, bool is_dir, bool *self)
{
    *self = false;
    if (strncmp(decoded, base, base_len) != 0)
        return NULL;
    char *rest = decoded + base_len;
    size_t n = strlen(rest);
    if (n == 0) {
        *self = true;
        return NULL;
    }
    if (rest[n - 1] == '/') /* a collection's href, a common prefix */
        rest[--n] = '\0';
    return bfs_is_one_component(rest) ? rest : NULL;
}

static void give(struct parser *p, const char *name, int64_t size, bool is_dir)
{
    bfs_list_entry e = {name, is_dir ? -1 : size, is_dir};
    int r = p->cb(p->ctx, &e);
    if (r < 0)
        fail(p, r);
    else if (p->st)
        p->st->entries++;
}

static void ignored(struct parser *p, const char *what, const char *s)
{
    if (p->st)
        p->st->ignored++;
    bfs_debug(TAG, "a listing names %s: %.200s (left out)", what, s);
}

/* The path of an href: an absolute path, or an absolute URI's path.  NULL
 * for anything else (a relative reference, a query or fragment). */
static const char *href_path(const char *href, size_t *n)
{
    const char *h = href;
    if (!strncasecmp(h, "http://", 7) || !strncasecmp(h, "https://", 8)) {
        h = strstr(h, "://") + 3;
        h += strcspn(h, "/?#");
        if (!*h)
            h = "/";
    }
    if (*h != '/' || strpbrk(h, "?#"))
        return NULL;
    *n = strlen(h);
    return h;
}

static void dav_response_end(struct parser *p)
{
    const char *h = p->href;
    if (p->nhref != 1 || !h || (p->resp_status && (p->resp_status < 200 || p->resp_status > 299))) {
        ignored(p, "a response without one href or with an error status", h ? h : "");
        return;
    }
    size_t n;
    const char *path = href_path(h, &n);
    int err;
    char *dec = path ? decode(path, n, false, &err) : NULL;
    if (!dec) {
        if (path && err == -ENOMEM)
            fail(p, -ENOMEM);
        else
            ignored(p, "an unusable href", h);
        return;
    }
    bool self;
    const char *name = member(p->base, p->base_len, dec, p->is_dir, &self);
    if (name)
        give(p, name, p->size, p->is_dir);
    else if (!self)
        ignored(p, "something that is not a member of the directory", h);
    free(dec);
}

static void s3_page_end(struct parser *p)
{
    for (size_t i = 0; i < p->nraw && !p->err; i++) {
        struct raw *r = &p->raws[i];
        int err = 0;
        char *dec = p->url_encoded ? decode(r->key, strlen(r->key), true, &err) : strdup(r->key);
        if (!dec) {
            if (!p->url_encoded || err == -ENOMEM)
                fail(p, -ENOMEM);
            else
                ignored(p, "an unusable key", r->key);
            continue;
        }
        bool self;
        const char *name = member(p->base, p->base_len, dec, r->is_dir, &self);
        if (name)
            give(p, name, r->size, r->is_dir);
        else if (!self)
            ignored(p, "a key that is not directly under the prefix", r->key);
        free(dec);
    }
}

/* ---- SAX callbacks ----------------------------------------------------------- */

static enum tag classify(const struct parser *p, enum tag parent, const char *local, const char *uri)
{
    if (p->kind == BFS_LIST_DAV) {
        if (!uri || strcmp(uri, "DAV:") != 0)
            return T_OTHER;
        static const struct { enum tag parent; const char *name; enum tag t; } dav[] = {
            {T_ROOT, "multistatus", T_MULTISTATUS}, {T_MULTISTATUS, "response", T_RESPONSE},
            {T_RESPONSE, "href", T_HREF},           {T_RESPONSE, "propstat", T_PROPSTAT},
            {T_RESPONSE, "status", T_STATUS},       {T_PROPSTAT, "prop", T_PROP},
            {T_PROPSTAT, "status", T_STATUS},       {T_PROP, "getcontentlength", T_LENGTH},
            {T_PROP, "resourcetype", T_RESTYPE},    {T_RESTYPE, "collection", T_COLLECTION},
        };
        for (size_t i = 0; i < sizeof dav / sizeof dav[0]; i++)
            if (dav[i].parent == parent && !strcmp(dav[i].name, local))
                return dav[i].t;
        return T_OTHER;
    }
    static const struct { enum tag parent; const char *name; enum tag t; } s3[] = {
        {T_ROOT, "ListBucketResult", T_LBR},     {T_LBR, "Contents", T_CONTENTS},
        {T_LBR, "IsTruncated", T_TRUNCATED},     {T_LBR, "NextContinuationToken", T_NEXT},
        {T_LBR, "EncodingType", T_ENCODING},     {T_LBR, "CommonPrefixes", T_COMMON},
        {T_CONTENTS, "Key", T_KEY},              {T_CONTENTS, "Size", T_SIZE},
        {T_COMMON, "Prefix", T_PREFIX},
    };
    for (size_t i = 0; i < sizeof s3 / sizeof s3[0]; i++)
        if (s3[i].parent == parent && !strcmp(s3[i].name, local))
            return s3[i].t;
    return T_OTHER;
}

static enum tag tag_at(const struct parser *p, int depth)
{
    return depth == 0 ? T_ROOT : depth <= DEPTH_MAX ? p->stack[depth] : T_OTHER;
}

static void on_start(void *ud, const xmlChar *local, const xmlChar *prefix, const xmlChar *uri, int nns,
                     const xmlChar **ns, int nattr, int ndefaulted, const xmlChar **attrs)
{
    struct parser *p = ud;
    if (p->err)
        return;
    p->depth++;
    enum tag t = classify(p, tag_at(p, p->depth - 1), (const char *)local, (const char *)uri);
    if (p->depth == 1) {
        if (t == T_OTHER) {
            fail(p, -EPROTO);
            return;
        }
        p->root_seen = true;
    }
    if (p->depth <= DEPTH_MAX)
        p->stack[p->depth] = t;
    if (is_text_tag(t))
        p->tlen = 0;
    switch (t) {
    case T_RESPONSE:
        free(p->href);
        p->href = NULL;
        p->nhref = 0;
        p->resp_status = 0;
        p->size = -1;
        p->is_dir = false;
        break;
    case T_PROPSTAT:
        p->ps_len = -1;
        p->ps_dir = false;
        p->ps_status = 0;
        break;
    case T_COLLECTION:
        p->ps_dir = true;
        break;
    case T_CONTENTS:
        free(p->key);
        p->key = NULL;
        p->key_size = -1;
        break;
    default:
        break;
    }
}

static void on_chars(void *ud, const xmlChar *s, int n)
{
    struct parser *p = ud;
    if (p->err || n <= 0 || !is_text_tag(tag_at(p, p->depth)))
        return;
    if ((size_t)n > TEXT_MAX - p->tlen) {
        fail(p, -EPROTO);
        return;
    }
    memcpy(p->text + p->tlen, s, (size_t)n);
    p->tlen += (size_t)n;
    p->text[p->tlen] = '\0';
}

/* The text without surrounding white space (keys are taken as they are). */
static char *trimmed(struct parser *p)
{
    char *s = p->text;
    size_t n = p->tlen;
    while (n && strchr(" \t\r\n", s[n - 1]))
        s[--n] = '\0';
    while (*s && strchr(" \t\r\n", *s))
        s++;
    return s;
}

static int64_t number(const char *s)
{
    int64_t v;
    return *s != '-' && *s != '+' && bfs_parse_i64(s, &v) ? v : -1;
}

/* "HTTP/1.1 200 OK" -> 200; 0 when malformed. */
static long status_code(const char *s)
{
    const char *sp = strchr(s, ' ');
    if (!sp || sp[1] < '1' || sp[1] > '5' || sp[2] < '0' || sp[2] > '9' || sp[3] < '0' || sp[3] > '9' ||
        (sp[4] && sp[4] != ' '))
        return 0;
    return (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
}

static void on_end(void *ud, const xmlChar *local, const xmlChar *prefix, const xmlChar *uri)
{
    struct parser *p = ud;
    if (p->err)
        return;
    enum tag t = tag_at(p, p->depth), parent = tag_at(p, p->depth - 1);
    p->depth--;
    if (is_text_tag(t))
        p->text[p->tlen] = '\0';
    switch (t) {
    case T_HREF:
        if (p->nhref++ == 0 && !(p->href = strdup(trimmed(p))))
            fail(p, -ENOMEM);
        break;
    case T_STATUS: {
        long code = status_code(trimmed(p));
        if (!code)
            code = 599; /* unreadable: not a success */
        if (parent == T_PROPSTAT)
            p->ps_status = code;
        else
            p->resp_status = code;
        break;
    }
    case T_LENGTH:
        p->ps_len = number(trimmed(p));
        break;
    case T_PROPSTAT:
        if (p->ps_status >= 200 && p->ps_status <= 299) {
            if (p->ps_len >= 0)
                p->size = p->ps_len;
            if (p->ps_dir)
                p->is_dir = true;
        }
        break;
    case T_RESPONSE:
        dav_response_end(p);
        free(p->href);
        p->href = NULL;
        break;
    case T_KEY:
        free(p->key);
        if (!(p->key = strdup(p->text)))
            fail(p, -ENOMEM);
        break;
    case T_SIZE:
        p->key_size = number(trimmed(p));
        break;
    case T_CONTENTS:
    case T_PREFIX: {
        char *k = t == T_PREFIX ? strdup(p->text) : p->key;
        if (t == T_CONTENTS)
            p->key = NULL;
        if (!k && t == T_CONTENTS) {
            ignored(p, "an object without a key", "");
            break;
        }
        if (!k || bfs_grow((void **)&p->raws, &p->rawcap, p->nraw + 1, sizeof *p->raws) < 0) {
            free(k);
            fail(p, -ENOMEM);
            break;
        }
        p->raws[p->nraw++] = (struct raw){k, t == T_CONTENTS ? p->key_size : -1, t == T_PREFIX};
        break;
    }
    case T_TRUNCATED:
        p->truncated = !strcmp(trimmed(p), "true");
        break;
    case T_NEXT:
        free(p->next_token);
        if (!(p->next_token = strdup(trimmed(p))))
            fail(p, -ENOMEM);
        break;
    case T_ENCODING:
        p->url_encoded = !strcmp(trimmed(p), "url");
        break;
    default:
        break;
    }
}

/* A DOCTYPE: refused (no DTD, so no entity can be declared). */
static void on_dtd(void *ud, const xmlChar *name, const xmlChar *external_id, const xmlChar *system_id)
{
    fail(ud, -EPROTO);
}

static void on_xml_error(void *ud, xmlErrorPtr e)
{
    (void)ud, (void)e; /* the parse fails; its detail is not the user's business */
}

/* ---- the parser ---------------------------------------------------------------- */

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;
static void xml_init(void) { xmlInitParser(); }

static int parser_init(struct parser *p, bfs_list_kind kind, const char *base, bfs_list_cb cb, void *ctx,
                       bfs_list_stats *st)
{
    pthread_once(&xml_once, xml_init);
    *p = (struct parser){.kind = kind, .base = base, .base_len = strlen(base), .cb = cb, .ctx = ctx, .st = st,
                         .size = -1, .key_size = -1};
    p->text = malloc(TEXT_MAX + 1);
    if (!p->text)
        return -ENOMEM;
    xmlSAXHandler sax;
    memset(&sax, 0, sizeof sax);
    sax.initialized = XML_SAX2_MAGIC;
    sax.startElementNs = on_start;
    sax.endElementNs = on_end;
    sax.characters = on_chars;
    sax.cdataBlock = on_chars;
    sax.internalSubset = on_dtd;
    sax.externalSubset = on_dtd;
    sax.serror = on_xml_error;
    p->x = xmlCreatePushParserCtxt(&sax, p, NULL, 0, NULL);
    if (!p->x) {
        free(p->text);
        return -ENOMEM;
    }
    /* no network, no messages on stderr; not XML_PARSE_NOENT (no entity
     * substitution), not XML_PARSE_DTDLOAD, not XML_PARSE_HUGE (libxml2's
     * limits on text and depth stay) */
    xmlCtxtUseOptions(p->x, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    return 0;
}

static int parser_feed(void *ud, const char *data, size_t n)
{
    struct parser *p = ud;
    while (!p->err && n) {
        int k = n > FEED_MAX ? FEED_MAX : (int)n;
        if (xmlParseChunk(p->x, data, k, 0) != 0)
            fail(p, -EPROTO);
        data += k;
        n -= (size_t)k;
    }
    return p->err;
}

static int parser_end(struct parser *p)
{
    if (!p->err && xmlParseChunk(p->x, NULL, 0, 1) != 0)
        fail(p, -EPROTO);
    if (!p->err && (!p->root_seen || !p->x->wellFormed))
        fail(p, -EPROTO);
    if (!p->err && p->kind == BFS_LIST_S3)
        s3_page_end(p);
    return p->err;
}

static void parser_free(struct parser *p)
{
    if (p->x)
        xmlFreeParserCtxt(p->x);
    for (size_t i = 0; i < p->nraw; i++)
        free(p->raws[i].key);
    free(p->raws);
    free(p->text);
    free(p->href);
    free(p->key);
    free(p->next_token);
    memset(p, 0, sizeof *p);
}

int bfs_list_parse(bfs_list_kind kind, const char *base, const char *reply, size_t len, size_t chunk,
                   bfs_list_cb cb, void *ctx, bfs_list_stats *stats, bool *truncated, char **next_token)
{
    if (truncated)
        *truncated = false;
    if (next_token)
        *next_token = NULL;
    struct parser p;
    int ret = parser_init(&p, kind, base, cb, ctx, stats);
    if (ret < 0)
        return ret;
    if (chunk == 0)
        chunk = 1;
    for (size_t at = 0; ret == 0 && at < len; at += chunk)
        ret = parser_feed(&p, reply + at, len - at < chunk ? len - at : chunk);
    if (ret == 0)
        ret = parser_end(&p);
    if (ret == 0 && truncated)
        *truncated = p.truncated;
    if (ret == 0 && next_token) {
        *next_token = p.next_token;
        p.next_token = NULL;
    }
    parser_free(&p);
    return ret;
}

/* ---- requests ------------------------------------------------------------------ */

static const char propfind_body[] =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
    "<D:propfind xmlns:D=\"DAV:\"><D:prop><D:resourcetype/><D:getcontentlength/></D:prop></D:propfind>\n";

static int list_dav(bfs_http *h, const char *url, bfs_list_cb cb, void *ctx, long timeout_ms, int64_t max_reply,
                    bfs_list_stats *st, char **errmsg)
{
    char u[512];
    bfs_http_url_for_log(url, u, sizeof u);
    const char *auth = strstr(url, "://") + 3;
    const char *path = auth + strcspn(auth, "/?#");
    if (*path != '/' || strpbrk(path, "?#")) {
        bfs_set_errmsg(errmsg, "%s: not a directory URL", u);
        return -EINVAL;
    }
    int err;
    char *base = decode(path, strlen(path), false, &err);
    if (!base) {
        bfs_set_errmsg(errmsg, "%s: the path cannot be decoded", u);
        return err;
    }
    struct parser p;
    int ret = parser_init(&p, BFS_LIST_DAV, base, cb, ctx, st);
    if (ret < 0) {
        free(base);
        return ret;
    }
    bfs_http_call call = {.method = "PROPFIND", .url = url,
                          .headers = {"Depth: 1", "Content-Type: application/xml; charset=\"utf-8\""},
                          .body = propfind_body, .body_len = sizeof propfind_body - 1, .on_body = parser_feed,
                          .ud = &p, .max_reply = max_reply, .timeout_ms = timeout_ms};
    ret = bfs_http_call_stream(h, &call);
    if (st) {
        st->requests++;
        st->status = call.status;
    }
    if (ret == 0)
        ret = parser_end(&p);
    parser_free(&p);
    free(base);
    if (call.status == 405 || call.status == 501) {
        bfs_set_errmsg(errmsg, "%s: the server refuses PROPFIND (HTTP %ld)", u, call.status);
        return -EOPNOTSUPP;
    }
    if (ret == -EFBIG)
        bfs_set_errmsg(errmsg, "PROPFIND %s: the reply is longer than %lld bytes", u, (long long)max_reply);
    else if (ret == -EPROTO)
        bfs_set_errmsg(errmsg, "PROPFIND %s: the reply is not a WebDAV multistatus", u);
    else if (ret < 0 && call.status >= 300)
        bfs_set_errmsg(errmsg, "PROPFIND %s: HTTP %ld (%s)", u, call.status, bfs_http_strerror(ret));
    else if (ret < 0)
        bfs_set_errmsg(errmsg, "PROPFIND %s: %s", u, bfs_http_strerror(ret));
    return ret;
}

/* The page size: BFS_LIST_MAX_KEYS (1..1000; a test knob), else 1000. */
static int max_keys(void)
{
    const char *s = getenv("BFS_LIST_MAX_KEYS");
    int64_t v;
    return s && bfs_parse_i64(s, &v) && v >= 1 && v <= S3_MAX_KEYS ? (int)v : S3_MAX_KEYS;
}

static int list_s3(bfs_http *h, const char *url, bfs_list_cb cb, void *ctx, long timeout_ms, int64_t max_reply,
                   bfs_list_stats *st, char **errmsg)
{
    char u[512];
    bfs_http_url_for_log(url, u, sizeof u);
    char profile[128], bucket[256];
    const char *key;
    int ret = bfs_s3_parse_uri(url, profile, sizeof profile, bucket, sizeof bucket, &key);
    if (ret < 0) {
        bfs_set_errmsg(errmsg, "%s: not an s3://bucket/prefix/ URI", u);
        return ret;
    }
    int err;
    char *prefix = decode(key, strlen(key), false, &err);
    char *bucket_uri = strndup(url, (size_t)(key - url));
    char mk[16];
    snprintf(mk, sizeof mk, "%d", max_keys());
    char *token = NULL;
    long status = 0;
    if (!prefix || !bucket_uri) {
        ret = prefix ? -ENOMEM : err;
        bfs_set_errmsg(errmsg, "%s: %s", u, ret == -ENOMEM ? strerror(ENOMEM) : "the prefix cannot be decoded");
        goto out;
    }
    for (;;) {
        /* signed in canonical order by s3.c (bfs_s3_canonical_query) */
        const bfs_s3_param query[] = {{"list-type", "2"}, {"prefix", prefix},     {"delimiter", "/"},
                                      {"encoding-type", "url"}, {"max-keys", mk}, {"continuation-token", token}};
        struct parser p;
        if ((ret = parser_init(&p, BFS_LIST_S3, prefix, cb, ctx, st)) < 0)
            break;
        bfs_http_call call = {.method = "GET", .url = bucket_uri, .query = query, .nquery = token ? 6 : 5,
                              .on_body = parser_feed,
                              .ud = &p, .max_reply = max_reply, .timeout_ms = timeout_ms};
        ret = bfs_http_call_stream(h, &call);
        status = call.status;
        if (st) {
            st->requests++;
            st->status = call.status;
        }
        if (ret == 0)
            ret = parser_end(&p);
        bool more = ret == 0 && p.truncated;
        char *next = p.next_token;
        p.next_token = NULL;
        parser_free(&p);
        if (ret == 0 && more && (!next || !*next || (token && !strcmp(next, token)))) {
            free(next);
            ret = -EPROTO;
            bfs_set_errmsg(errmsg, "listing %s: a page says there is more without a new continuation token", u);
            goto out;
        }
        free(token);
        token = next;
        if (ret < 0 || !more)
            break;
    }
    if (ret == -EFBIG)
        bfs_set_errmsg(errmsg, "listing %s: a page is longer than %lld bytes", u, (long long)max_reply);
    else if (ret == -EPROTO)
        bfs_set_errmsg(errmsg, "listing %s: a reply is not a ListBucketResult", u);
    else if (ret < 0 && status >= 300)
        bfs_set_errmsg(errmsg, "listing %s: HTTP %ld (%s)", u, status, bfs_http_strerror(ret));
    else if (ret < 0)
        bfs_set_errmsg(errmsg, "listing %s: %s", u, bfs_http_strerror(ret));
out:
    free(token);
    free(prefix);
    free(bucket_uri);
    return ret;
}

int bfs_list_dir(bfs_http *h, const char *url, bfs_list_cb cb, void *ctx, long timeout_ms, int64_t max_reply,
                 bfs_list_stats *stats, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    size_t n = url ? strlen(url) : 0;
    if (!n || url[n - 1] != '/' || !cb) {
        bfs_set_errmsg(errmsg, "a listing needs a directory URL ending with '/'");
        return -EINVAL;
    }
    if (max_reply <= 0)
        max_reply = BFS_LIST_MAX_REPLY;
    if (!strncasecmp(url, "s3://", 5))
        return list_s3(h, url, cb, ctx, timeout_ms, max_reply, stats, errmsg);
    if (!strncasecmp(url, "http://", 7) || !strncasecmp(url, "https://", 8))
        return list_dav(h, url, cb, ctx, timeout_ms, max_reply, stats, errmsg);
    bfs_set_errmsg(errmsg, "only http(s):// and s3:// URLs can be listed");
    return -EOPNOTSUPP;
}

int bfs_list_split_url(const char *url, char **dir, char **name)
{
    *dir = *name = NULL;
    const char *s = strstr(url, "://");
    if (!s)
        return -EINVAL;
    const char *path = s + 3 + strcspn(s + 3, "/");
    const char *slash = strrchr(url, '/');
    if (!*path || slash < path || !slash[1])
        return -EINVAL;
    int err;
    *name = decode(slash + 1, strlen(slash + 1), false, &err);
    if (!*name)
        return err;
    *dir = strndup(url, (size_t)(slash + 1 - url));
    if (!*dir) {
        free(*name);
        *name = NULL;
        return -ENOMEM;
    }
    return 0;
}
