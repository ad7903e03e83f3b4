/*
 * s3_multipart.c - an S3 object uploaded in parts (s3_multipart.h).
 *
 * The steps are one function each (create, put_part, complete,
 * abort_upload) over bfs_http_s3_request; retry() is the one place a step
 * is tried again.  The reply bodies read are S3's small XML documents,
 * taken apart by s3.c's bfs_s3_xml_text / bfs_s3_xml_error.
 */
#include "s3_multipart.h"

#include "clock.h"
#include "log.h"
#include "s3.h"
#include "strutil.h"

#include <openssl/evp.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TAG "s3"
/* S3's XML replies here are a few hundred bytes. */
#define REPLY_MAX (16 * 1024)
#define ETAG_MAX 160

typedef struct mp {
    bfs_http *h;
    const char *uri;
    const bfs_s3_multipart_cfg *cfg;
    int fd;
    char upload_id[1024];
    char reply[REPLY_MAX];
    char **why;
} mp;

/* Not worth another try: the request or the upload itself is refused. */
static bool permanent(int err)
{
    return err == -EACCES || err == -ENOENT || err == -EINVAL || err == -ENOMEM || err == -ENAMETOOLONG ||
           err == -EPROTONOSUPPORT || err == -ECANCELED || err == -EBADF;
}

static bool cancelled(const mp *m)
{
    return m->cfg->cancelled && m->cfg->cancelled(m->cfg->ud);
}

/* *why = "<what>: <error>[ (S3 <Code>)]" from err and the reply kept. */
static int fail(mp *m, int err, const char *what, size_t reply_len)
{
    char code[64];
    bool s3err = bfs_s3_xml_error(m->reply, reply_len, code, sizeof code);
    free(*m->why);
    *m->why = s3err ? bfs_asprintf("%s: %s (S3 %s)", what, bfs_http_strerror(err), code)
                    : bfs_asprintf("%s: %s", what, bfs_http_strerror(err));
    return err;
}

static int create(mp *m)
{
    bfs_s3_param q[] = {{"uploads", ""}};
    bfs_http_s3_req rq = {.method = "POST", .query = q, .nquery = 1, .fd = -1, .timeout_ms = m->cfg->timeout_ms,
                          .reply = m->reply, .reply_cap = sizeof m->reply};
    int ret = bfs_http_s3_request(m->h, m->uri, &rq);
    if (ret == 0 && bfs_s3_xml_error(m->reply, rq.reply_len, NULL, 0))
        ret = -EIO;
    if (ret == 0 && bfs_s3_xml_text(m->reply, rq.reply_len, "UploadId", m->upload_id, sizeof m->upload_id) <= 0)
        ret = -EPROTO;
    return ret < 0 ? fail(m, ret, "CreateMultipartUpload", rq.reply_len) : 0;
}

/* Base64 MD5 of len bytes of fd at off into out (25 bytes). */
static int range_md5(int fd, int64_t off, int64_t len, char out[25])
{
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = malloc(CHUNK), md[EVP_MAX_MD_SIZE];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int mdlen = 0;
    int ret = buf && ctx ? 0 : -ENOMEM;
    if (ret == 0 && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) != 1)
        ret = -EIO;
    for (int64_t done = 0; ret == 0 && done < len;) {
        size_t want = (size_t)(len - done < CHUNK ? len - done : CHUNK);
        ssize_t got = pread(fd, buf, want, off + done);
        if (got <= 0)
            ret = got < 0 ? -errno : -EIO;
        else if (EVP_DigestUpdate(ctx, buf, (size_t)got) != 1)
            ret = -EIO;
        else
            done += got;
    }
    if (ret == 0 && (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 16))
        ret = -EIO;
    if (ret == 0)
        EVP_EncodeBlock((unsigned char *)out, md, 16);
    EVP_MD_CTX_free(ctx);
    free(buf);
    return ret;
}

static int put_part_once(mp *m, int n, int64_t off, int64_t len, const char *md5, char *etag)
{
    char num[16];
    snprintf(num, sizeof num, "%d", n);
    bfs_s3_param q[] = {{"partNumber", num}, {"uploadId", m->upload_id}};
    bfs_http_s3_req rq = {.method = "PUT", .query = q, .nquery = 2, .fd = m->fd, .off = off, .len = len,
                          .content_md5 = md5, .max_bps = m->cfg->max_bps, .timeout_ms = m->cfg->timeout_ms,
                          .reply = m->reply, .reply_cap = sizeof m->reply};
    int ret = bfs_http_s3_request(m->h, m->uri, &rq);
    if (ret == 0 && !rq.etag[0])
        ret = -EPROTO; /* Complete needs every part's ETag */
    if (ret == 0)
        snprintf(etag, ETAG_MAX, "%s", rq.etag);
    char what[64];
    snprintf(what, sizeof what, "UploadPart %d", n);
    return ret < 0 ? fail(m, ret, what, rq.reply_len) : 0;
}

static int complete_once(mp *m, const char *body)
{
    bfs_s3_param q[] = {{"uploadId", m->upload_id}};
    bfs_http_s3_req rq = {.method = "POST", .query = q, .nquery = 1, .fd = -1, .body = body,
                          .body_len = strlen(body), .timeout_ms = m->cfg->timeout_ms, .reply = m->reply,
                          .reply_cap = sizeof m->reply};
    int ret = bfs_http_s3_request(m->h, m->uri, &rq);
    if (ret == 0 && bfs_s3_xml_error(m->reply, rq.reply_len, NULL, 0))
        ret = -EIO; /* a 200 with an <Error> body: S3 says to retry */
    return ret < 0 ? fail(m, ret, "CompleteMultipartUpload", rq.reply_len) : 0;
}

static void abort_upload(mp *m)
{
    bfs_s3_param q[] = {{"uploadId", m->upload_id}};
    bfs_http_s3_req rq = {.method = "DELETE", .query = q, .nquery = 1, .fd = -1, .timeout_ms = m->cfg->timeout_ms};
    int ret = bfs_http_s3_request(m->h, m->uri, &rq);
    if (ret < 0 && ret != -ENOENT)
        bfs_info(TAG, "AbortMultipartUpload of %s: %s; its parts stay until a lifecycle rule removes them",
                 m->uri, bfs_http_strerror(ret));
}

/* Wait before try number `tried + 1`; false when cancelled meanwhile. */
static bool backoff(const mp *m, int tried)
{
    int64_t ms = m->cfg->backoff_ms > 0 ? m->cfg->backoff_ms : 1000;
    for (int i = 1; i < tried && ms < 60000; i++)
        ms *= 2;
    for (int64_t slept = 0; slept < ms; slept += 100) {
        if (cancelled(m))
            return false;
        bfs_sleep_ms(ms - slept < 100 ? ms - slept : 100);
    }
    return !cancelled(m);
}

static int attempts(const mp *m)
{
    return m->cfg->part_attempts > 0 ? m->cfg->part_attempts : 4;
}

static int put_part(mp *m, int n, int64_t off, int64_t len, char *etag)
{
    char md5[25];
    int ret = range_md5(m->fd, off, len, md5);
    if (ret < 0) {
        free(*m->why);
        *m->why = bfs_asprintf("reading part %d of the file: %s", n, strerror(-ret));
        return ret;
    }
    for (int tried = 1;; tried++) {
        if (cancelled(m))
            return -ECANCELED;
        ret = put_part_once(m, n, off, len, md5, etag);
        if (ret == 0 || permanent(ret) || tried >= attempts(m))
            return ret;
        bfs_info(TAG, "%s; sending that part again (try %d of %d)", *m->why, tried + 1, attempts(m));
        if (!backoff(m, tried))
            return -ECANCELED;
    }
}

/* Complete, tried again on transient failures.  A retry told "no such
 * upload" may follow a Complete that did succeed but whose reply was lost:
 * that is success here, and the caller's verification of the object
 * decides. */
static int complete(mp *m, char (*etags)[ETAG_MAX], int nparts)
{
    const char **list = malloc((size_t)nparts * sizeof *list);
    char *body = NULL;
    for (int i = 0; list && i < nparts; i++)
        list[i] = etags[i];
    if (!list || !(body = bfs_s3_complete_body(list, nparts))) {
        free(list);
        return -ENOMEM;
    }
    int ret;
    for (int tried = 1;; tried++) {
        ret = cancelled(m) ? -ECANCELED : complete_once(m, body);
        if (ret == -ENOENT && tried > 1)
            ret = 0;
        if (ret == 0 || permanent(ret) || tried >= attempts(m))
            break;
        bfs_info(TAG, "%s; trying again (try %d of %d)", *m->why, tried + 1, attempts(m));
        if (!backoff(m, tried)) {
            ret = -ECANCELED;
            break;
        }
    }
    free(body);
    free(list);
    return ret;
}

int bfs_s3_multipart_put(bfs_http *h, const char *s3_uri, int fd, int64_t size, const bfs_s3_multipart_cfg *cfg,
                         char **why)
{
    if (fd < 0 || size < 0 || !cfg)
        return -EINVAL;
    int64_t part = bfs_s3_part_size(size, cfg->part_size);
    if (size > part * BFS_S3_MAX_PARTS) {
        *why = bfs_asprintf("%" PRId64 " bytes do not fit in %d parts of at most 5 GiB", size, BFS_S3_MAX_PARTS);
        return -EFBIG;
    }
    int nparts = size ? (int)((size + part - 1) / part) : 1;
    mp *m = calloc(1, sizeof *m);
    char(*etags)[ETAG_MAX] = calloc((size_t)nparts, sizeof *etags);
    if (!m || !etags) {
        free(m);
        free(etags);
        return -ENOMEM;
    }
    *m = (mp){.h = h, .uri = s3_uri, .cfg = cfg, .fd = fd, .why = why};
    int ret = create(m);
    for (int i = 0; ret == 0 && i < nparts; i++) {
        int64_t off = (int64_t)i * part;
        ret = put_part(m, i + 1, off, size - off < part ? size - off : part, etags[i]);
    }
    if (ret == 0)
        ret = complete(m, etags, nparts);
    if (ret == -ECANCELED) {
        free(*why);
        *why = bfs_asprintf("the multipart upload was stopped (the queue is closing)");
    }
    if (ret < 0 && m->upload_id[0])
        abort_upload(m);
    if (ret == 0) {
        free(*why); /* of a try that failed before one that did not */
        *why = NULL;
        bfs_debug(TAG, "multipart upload of %" PRId64 " bytes in %d parts of %" PRId64 " completed", size, nparts,
                  part);
    }
    free(etags);
    free(m);
    return ret;
}
