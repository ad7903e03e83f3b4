/*
 * s3.c - S3 URIs, credentials and AWS Signature Version 4.
 *
 * Three parts, each usable alone (see s3.h for the contracts):
 *
 *   - bfs_sigv4_sign: the signing algorithm of AWS SigV4 on already
 *     canonical pieces, checked in tests/unit/test_s3.c against AWS's
 *     published vectors.  libcurl's CURLOPT_AWS_SIGV4 exists but in the
 *     Debian 12 version (7.88) it cannot be told which headers to sign nor
 *     to send UNSIGNED-PAYLOAD, and it is not testable in isolation; the
 *     algorithm itself is a few HMACs from libcrypto.
 *   - bfs_s3_load_creds: the AWS CLI / Butler resolution order over the
 *     environment and the two AWS INI files.  The INI reader is deliberately
 *     small: "[section]" lines, "key = value" lines, '#'/';' comment lines,
 *     and one level of indented "sub = value" lines under a "key =" with an
 *     empty value (the AWS "s3 =" sub-section), read as "key.sub".
 *   - bfs_s3: a per-profile cache of resolved credentials behind one mutex,
 *     and bfs_s3_prepare, which builds the URL and the signed headers.
 *
 * Secrets live in fixed buffers of bfs_s3_creds and in short-lived
 * heap/stack copies; every copy is wiped (OPENSSL_cleanse) before it is
 * released.  No message built here contains a key, a token or a signature.
 */
#include "s3.h"

#include "log.h"
#include "strutil.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define TAG "s3"

/* A cached profile is re-read after this many seconds (rotated session
 * tokens); a failed resolution is retried after FAIL_TTL. */
#define CREDS_TTL_S 60
#define FAIL_TTL_S 5

/* ---- growable buffer (canonical request) --------------------------------- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_addn(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->len + n + 1)
            cap *= 2;
        /* Not realloc: the old block may hold a session token; wipe it. */
        char *p = malloc(cap);
        if (!p) {
            b->oom = true;
            return;
        }
        if (b->p) {
            memcpy(p, b->p, b->len);
            OPENSSL_cleanse(b->p, b->cap);
            free(b->p);
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_add(sbuf *b, const char *s) { sb_addn(b, s, strlen(s)); }
static void sb_addc(sbuf *b, char c) { sb_addn(b, &c, 1); }

static void sb_release(sbuf *b)
{
    if (b->p) {
        OPENSSL_cleanse(b->p, b->cap);
        free(b->p);
    }
    memset(b, 0, sizeof *b);
}

/* ---- hashing ---------------------------------------------------------------- */

static void to_hex(const unsigned char *in, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[in[i] >> 4];
        out[2 * i + 1] = hx[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int sha256_hex(const void *data, size_t n, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(data, n, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        return -EIO;
    to_hex(md, 32, out);
    return 0;
}

static int hmac256(const void *key, size_t keylen, const char *msg, unsigned char out[32])
{
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out, &len) ||
        len != 32)
        return -EIO;
    return 0;
}

/* ---- SigV4 -------------------------------------------------------------------- */

static bool has_crlf(const char *s) { return strpbrk(s, "\r\n") != NULL; }

static bool valid_amz_date(const char *d)
{
    if (strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z')
        return false;
    for (int i = 0; i < 15; i++)
        if (i != 8 && !isdigit((unsigned char)d[i]))
            return false;
    return true;
}

/* A scope component (region, service) or an access key id: printable, no
 * separator of the Credential field. */
static bool valid_scope_part(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s <= ' ' || *s >= 0x7f || *s == '/' || *s == ',' || *s == '=')
            return false;
    return true;
}

/* A header value without control characters (tab allowed). */
static bool valid_header_value(const char *v)
{
    for (; *v; v++)
        if ((unsigned char)*v < 0x20 && *v != '\t')
            return false;
    return true;
}

static bool valid_header_name(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!(islower(c) || isdigit(c) || c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

/* Append trimall(v): leading/trailing blanks dropped, inner runs of blanks
 * collapsed to one space (the SigV4 canonical header value). */
static void sb_add_trimall(sbuf *b, const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    bool pending_space = false;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t') {
            pending_space = true;
            continue;
        }
        if (pending_space)
            sb_addc(b, ' ');
        pending_space = false;
        sb_addc(b, *v);
    }
}

int bfs_sigv4_sign(const char *method, const char *canonical_uri, const char *canonical_query,
                   const char *const *names, const char *const *values, int nheaders,
                   const char *payload_hash, const char *amz_date, const char *region,
                   const char *service, const char *access_key, const char *secret_key,
                   char *out, size_t out_sz)
{
    if (out && out_sz)
        out[0] = '\0';
    if (!method || !*method || !canonical_uri || !canonical_query || !names || !values ||
        nheaders < 1 || !payload_hash || !*payload_hash || !amz_date || !region || !service ||
        !access_key || !secret_key || !*secret_key || !out || !out_sz)
        return -EINVAL;
    if (has_crlf(method) || has_crlf(canonical_uri) || has_crlf(canonical_query) ||
        has_crlf(payload_hash) || !valid_amz_date(amz_date) || !valid_scope_part(region) ||
        !valid_scope_part(service) || !valid_scope_part(access_key))
        return -EINVAL;
    for (int i = 0; i < nheaders; i++) {
        if (!names[i] || !values[i] || !valid_header_name(names[i]) || has_crlf(values[i]))
            return -EINVAL;
        if (i > 0 && strcmp(names[i - 1], names[i]) >= 0)
            return -EINVAL;
    }

    sbuf signed_names = {0};
    for (int i = 0; i < nheaders; i++) {
        if (i)
            sb_addc(&signed_names, ';');
        sb_add(&signed_names, names[i]);
    }

    sbuf creq = {0};
    sb_add(&creq, method);
    sb_addc(&creq, '\n');
    sb_add(&creq, canonical_uri);
    sb_addc(&creq, '\n');
    sb_add(&creq, canonical_query);
    sb_addc(&creq, '\n');
    for (int i = 0; i < nheaders; i++) {
        sb_add(&creq, names[i]);
        sb_addc(&creq, ':');
        sb_add_trimall(&creq, values[i]);
        sb_addc(&creq, '\n');
    }
    sb_addc(&creq, '\n');
    if (!signed_names.oom)
        sb_add(&creq, signed_names.p);
    sb_addc(&creq, '\n');
    sb_add(&creq, payload_hash);

    int rc = 0;
    char date[9], creq_hash[65], sts[256], sig[65];
    unsigned char k[32];
    char ksecret[4 + 128 + 1];
    if (creq.oom || signed_names.oom) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = sha256_hex(creq.p, creq.len, creq_hash)) < 0)
        goto out;
    memcpy(date, amz_date, 8);
    date[8] = '\0';
    int n = snprintf(sts, sizeof sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s", amz_date,
                     date, region, service, creq_hash);
    if (n < 0 || (size_t)n >= sizeof sts) {
        rc = -EINVAL; /* region or service absurdly long */
        goto out;
    }
    n = snprintf(ksecret, sizeof ksecret, "AWS4%s", secret_key);
    if (n < 0 || (size_t)n >= sizeof ksecret) {
        rc = -EINVAL;
        goto out;
    }
    unsigned char sigraw[32];
    if ((rc = hmac256(ksecret, (size_t)n, date, k)) < 0 || (rc = hmac256(k, 32, region, k)) < 0 ||
        (rc = hmac256(k, 32, service, k)) < 0 || (rc = hmac256(k, 32, "aws4_request", k)) < 0 ||
        (rc = hmac256(k, 32, sts, sigraw)) < 0)
        goto out;
    to_hex(sigraw, 32, sig);
    OPENSSL_cleanse(sigraw, sizeof sigraw);
    n = snprintf(out, out_sz,
                 "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, "
                 "Signature=%s",
                 access_key, date, region, service, signed_names.p, sig);
    if (n < 0 || (size_t)n >= out_sz) {
        OPENSSL_cleanse(out, out_sz);
        out[0] = '\0';
        rc = -ENAMETOOLONG;
    }
out:
    OPENSSL_cleanse(ksecret, sizeof ksecret);
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(sig, sizeof sig);
    sb_release(&creq);
    sb_release(&signed_names);
    return rc;
}

/* ---- URIs -------------------------------------------------------------------- */

int bfs_s3_uri_encode(const char *in, size_t n, int keep_slash, char *out, size_t out_sz)
{
    static const char hx[] = "0123456789ABCDEF";
    size_t o = 0;
    if (!out || !out_sz)
        return -ENAMETOOLONG;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        bool plain = isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' ||
                     (c == '/' && keep_slash);
        /* isalnum is locale-dependent; only ASCII may stay plain. */
        if (c >= 0x80)
            plain = false;
        size_t need = plain ? 1 : 3;
        if (o + need >= out_sz) {
            out[0] = '\0';
            return -ENAMETOOLONG;
        }
        if (plain) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hx[c >> 4];
            out[o++] = hx[c & 15];
        }
    }
    out[o] = '\0';
    return (int)o;
}

static bool valid_bucket_char(char c)
{
    return isalnum((unsigned char)c) || c == '.' || c == '_' || c == '-' || c == ':';
}

int bfs_s3_parse_uri(const char *uri, char *profile, size_t psz, char *bucket, size_t bsz,
                     const char **key)
{
    if (profile && psz)
        profile[0] = '\0';
    if (bucket && bsz)
        bucket[0] = '\0';
    if (key)
        *key = NULL;
    if (!uri || !profile || !psz || !bucket || !bsz || !key)
        return -EINVAL;
    if (strncasecmp(uri, "s3://", 5) != 0)
        return -EINVAL;
    const char *auth = uri + 5;
    size_t alen = strcspn(auth, "/?#");
    if (auth[alen] == '?' || auth[alen] == '#')
        return -EINVAL; /* no query or fragment in an object URI */
    const char *at = memchr(auth, '@', alen);
    const char *b = auth;
    if (at) {
        size_t plen = (size_t)(at - auth);
        if (plen == 0)
            return -EINVAL;
        for (size_t i = 0; i < plen; i++)
            if (!valid_bucket_char(auth[i]) || auth[i] == ':')
                return -EINVAL;
        if (plen >= psz)
            return -ENAMETOOLONG;
        memcpy(profile, auth, plen);
        profile[plen] = '\0';
        b = at + 1;
    }
    size_t blen = (size_t)(auth + alen - b);
    if (blen == 0)
        goto bad;
    for (size_t i = 0; i < blen; i++)
        if (!valid_bucket_char(b[i]))
            goto bad;
    if (blen >= bsz) {
        profile[0] = '\0';
        return -ENAMETOOLONG;
    }
    memcpy(bucket, b, blen);
    bucket[blen] = '\0';
    *key = auth[alen] == '/' ? auth + alen + 1 : auth + alen;
    return 0;
bad:
    profile[0] = '\0';
    return -EINVAL;
}

/* Decode %XX escapes of the URI-form key into out (same size as in is
 * enough).  A '%' without two hex digits stays literal; %00 is refused. */
static int key_decode(const char *in, char *out, size_t *outlen)
{
    return bfs_uri_decode(in, strlen(in), out, outlen);
}

/* ---- credentials ---------------------------------------------------------- */

typedef struct ini_want {
    const char *key;  /* "region", "s3.endpoint_url" */
    char *buf;
    size_t sz;
    bool found;
    bool too_long;
} ini_want;

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

/* Read the keys of want[] from the first section of path whose name (inside
 * the brackets, trimmed) is one of sections[] (in order of preference: a
 * later-listed section is used only when an earlier one is absent).  Returns
 * 1 when a section was found, 0 when not, -ENOENT when the file is absent,
 * -EACCES/-EIO when unreadable, -ENOMEM. */
static int ini_read(const char *path, const char *const *sections, int nsections,
                    ini_want *want, int nwant)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return errno == ENOENT || errno == ENOTDIR ? -ENOENT : errno == EACCES ? -EACCES : -EIO;

    /* Find which section to use: the most preferred one present. */
    int best = nsections;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        char *s = trim(line);
        if (*s != '[')
            continue;
        char *end = strrchr(s, ']');
        if (!end)
            continue;
        *end = '\0';
        char *name = trim(s + 1);
        for (int i = 0; i < best; i++)
            if (strcmp(name, sections[i]) == 0)
                best = i;
    }
    if (ferror(f)) {
        best = -1;
    } else if (best < nsections) {
        rewind(f);
        bool in = false;
        char parent[64] = "";
        while ((len = getline(&line, &cap, f)) >= 0) {
            bool indented = line[0] == ' ' || line[0] == '\t';
            char *s = trim(line);
            if (!*s || *s == '#' || *s == ';')
                continue;
            if (*s == '[') {
                char *end = strrchr(s, ']');
                if (end) {
                    *end = '\0';
                    in = strcmp(trim(s + 1), sections[best]) == 0;
                    parent[0] = '\0';
                }
                continue;
            }
            if (!in)
                continue;
            char *eq = strchr(s, '=');
            if (!eq)
                continue;
            *eq = '\0';
            char *k = trim(s), *v = trim(eq + 1);
            char full[160];
            if (indented && parent[0]) {
                snprintf(full, sizeof full, "%s.%s", parent, k);
            } else if (indented) {
                continue; /* continuation of a multi-line value: not used here */
            } else {
                snprintf(full, sizeof full, "%s", k);
                if (!*v)
                    snprintf(parent, sizeof parent, "%s", k);
                else
                    parent[0] = '\0';
            }
            for (int i = 0; i < nwant; i++) {
                if (strcasecmp(full, want[i].key) != 0 || !*v)
                    continue;
                size_t vl = strlen(v);
                want[i].found = true;
                want[i].too_long = vl >= want[i].sz;
                if (!want[i].too_long)
                    memcpy(want[i].buf, v, vl + 1);
            }
        }
        if (ferror(f))
            best = -1;
    }
    if (line) {
        OPENSSL_cleanse(line, cap);
        free(line);
    }
    fclose(f);
    if (best < 0)
        return -EIO;
    return best < nsections ? 1 : 0;
}

/* path of an AWS file: $envvar, else ~/.aws/name. */
static int aws_file(const char *envvar, const char *name, char *out, size_t sz)
{
    const char *p = getenv(envvar);
    int n;
    if (p && *p) {
        n = snprintf(out, sz, "%s", p);
    } else {
        const char *home = getenv("HOME");
        struct passwd pw, *res = NULL;
        char pwbuf[4096];
        if ((!home || !*home) && getpwuid_r(getuid(), &pw, pwbuf, sizeof pwbuf, &res) == 0 && res)
            home = res->pw_dir;
        if (!home || !*home)
            home = "/";
        n = snprintf(out, sz, "%s/.aws/%s", home, name);
    }
    return n < 0 || (size_t)n >= sz ? -ENAMETOOLONG : 0;
}

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static int copy_setting(char *dst, size_t sz, const char *v)
{
    size_t n = strlen(v);
    if (n >= sz)
        return -EINVAL;
    memcpy(dst, v, n + 1);
    return 0;
}

/* Is auth[0, len) a host[:port] that may go into the signed Host header as
 * it is: a DNS name or IPv4 address (letters, digits, '-', '.', '_'), or an
 * IPv6 literal in brackets, then an optional port of 1 to 65535.  Anything
 * else (raw bytes, spaces, '%', '@', a bare ':') is refused, not sent. */
static bool valid_authority(const char *auth, size_t len)
{
    size_t i = 0;
    if (len && auth[0] == '[') {
        for (i = 1; i < len && (isxdigit((unsigned char)auth[i]) || auth[i] == ':' || auth[i] == '.'); i++)
            ;
        if (i == 1 || i == len || auth[i] != ']')
            return false;
        i++;
    } else {
        for (; i < len && (isalnum((unsigned char)auth[i]) || (auth[i] && strchr("-._", auth[i]))); i++)
            ;
        if (i == 0)
            return false;
    }
    if (i == len)
        return true;
    if (auth[i] != ':' || len - i < 2 || len - i > 6)
        return false;
    unsigned port = 0;
    for (i++; i < len; i++) {
        if (!isdigit((unsigned char)auth[i]))
            return false;
        port = port * 10 + (unsigned)(auth[i] - '0');
    }
    return port >= 1 && port <= 65535;
}

/* Validate and normalise an endpoint in place: http(s)://host[:port][/path]
 * (valid_authority), no userinfo, query or fragment; trailing '/' dropped;
 * a default port (:443 for https, :80 for http) dropped so Host matches
 * what curl would send. */
static int normalise_endpoint(char *ep)
{
    size_t skip;
    bool https;
    if (strncasecmp(ep, "https://", 8) == 0) {
        skip = 8;
        https = true;
    } else if (strncasecmp(ep, "http://", 7) == 0) {
        skip = 7;
        https = false;
    } else {
        return -EINVAL;
    }
    char *auth = ep + skip;
    if (strpbrk(ep, "?# \t\r\n"))
        return -EINVAL;
    size_t alen = strcspn(auth, "/");
    if (!valid_authority(auth, alen))
        return -EINVAL;
    const char *defport = https ? ":443" : ":80";
    size_t dl = strlen(defport);
    if (alen > dl && memcmp(auth + alen - dl, defport, dl) == 0) {
        memmove(auth + alen - dl, auth + alen, strlen(auth + alen) + 1);
        alen -= dl;
    }
    size_t n = strlen(ep);
    while (n > skip + alen && ep[n - 1] == '/')
        ep[--n] = '\0';
    return 0;
}

void bfs_s3_creds_clear(bfs_s3_creds *c)
{
    if (c)
        OPENSSL_cleanse(c, sizeof *c);
}

int bfs_s3_load_creds(const char *profile, bfs_s3_creds *out, char **errmsg)
{
    if (errmsg)
        *errmsg = NULL;
    if (!out)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    if (profile && !*profile)
        profile = NULL;
    const bool explicit_profile = profile != NULL;
    const char *name = profile ? profile : env_nonempty("AWS_PROFILE");
    if (!name)
        name = "default";

    char cred_path[4096], conf_path[4096];
    if (aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials", cred_path, sizeof cred_path) < 0 ||
        aws_file("AWS_CONFIG_FILE", "config", conf_path, sizeof conf_path) < 0) {
        bfs_set_errmsg(errmsg, "S3: the path of the AWS credentials or config file is too long");
        return -ENAMETOOLONG;
    }

    char conf_section[160];
    snprintf(conf_section, sizeof conf_section, "profile %s", name);
    const char *conf_sections[2] = {conf_section, "default"};
    int nconf_sections = strcmp(name, "default") == 0 ? 2 : 1;

    char region[sizeof out->region] = "", endpoint[sizeof out->endpoint] = "",
         s3endpoint[sizeof out->endpoint] = "";
    bfs_s3_creds ck = {0}, fk = {0}; /* keys found in the config / credentials file */
    int rc = 0;

    /* Keys. */
    const char *ek = env_nonempty("AWS_ACCESS_KEY_ID"), *es = env_nonempty("AWS_SECRET_ACCESS_KEY");
    const char *keys_from = NULL;
    if (!explicit_profile && ek && es) {
        const char *et = env_nonempty("AWS_SESSION_TOKEN");
        if (copy_setting(out->access_key, sizeof out->access_key, ek) < 0 ||
            copy_setting(out->secret_key, sizeof out->secret_key, es) < 0 ||
            (et && copy_setting(out->session_token, sizeof out->session_token, et) < 0)) {
            bfs_set_errmsg(errmsg,
                       "S3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_SESSION_TOKEN is "
                       "longer than butlerfs accepts");
            rc = -EINVAL;
            goto fail;
        }
        keys_from = "environment";
    }

    /* The config file: region, endpoint, and keys when not found yet. */
    ini_want cw[] = {
        {"region", region, sizeof region, false, false},
        {"endpoint_url", endpoint, sizeof endpoint, false, false},
        {"s3.endpoint_url", s3endpoint, sizeof s3endpoint, false, false},
        {"aws_access_key_id", NULL, 0, false, false},
        {"aws_secret_access_key", NULL, 0, false, false},
        {"aws_session_token", NULL, 0, false, false},
    };
    cw[3].buf = ck.access_key, cw[3].sz = sizeof ck.access_key;
    cw[4].buf = ck.secret_key, cw[4].sz = sizeof ck.secret_key;
    cw[5].buf = ck.session_token, cw[5].sz = sizeof ck.session_token;
    int conf_rc = ini_read(conf_path, conf_sections, nconf_sections, cw, 6);
    if (conf_rc < 0 && conf_rc != -ENOENT) {
        bfs_set_errmsg(errmsg, "S3: cannot read the AWS config file %s: %s", conf_path,
                   strerror(-conf_rc));
        rc = conf_rc;
        goto fail;
    }
    for (int i = 0; i < 6; i++) {
        if (cw[i].too_long) {
            bfs_set_errmsg(errmsg, "S3 profile '%s': %s in %s is longer than butlerfs accepts", name,
                       cw[i].key, conf_path);
            rc = -EINVAL;
            goto fail;
        }
    }

    if (!keys_from) {
        ini_want fw[] = {
            {"aws_access_key_id", fk.access_key, sizeof fk.access_key, false, false},
            {"aws_secret_access_key", fk.secret_key, sizeof fk.secret_key, false, false},
            {"aws_session_token", fk.session_token, sizeof fk.session_token, false, false},
        };
        const char *cred_sections[1] = {name};
        int cred_rc = ini_read(cred_path, cred_sections, 1, fw, 3);
        if (cred_rc < 0 && cred_rc != -ENOENT) {
            bfs_set_errmsg(errmsg, "S3: cannot read the AWS credentials file %s: %s", cred_path,
                       strerror(-cred_rc));
            rc = cred_rc;
            goto fail;
        }
        for (int i = 0; i < 3; i++) {
            if (fw[i].too_long) {
                bfs_set_errmsg(errmsg, "S3 profile '%s': %s in %s is longer than butlerfs accepts",
                           name, fw[i].key, cred_path);
                rc = -EINVAL;
                goto fail;
            }
        }
        const bfs_s3_creds *src = NULL;
        if (fw[0].found && fw[1].found) {
            src = &fk;
            keys_from = cred_path;
        } else if (cw[3].found && cw[4].found) {
            src = &ck;
            keys_from = conf_path;
        }
        if (src) {
            memcpy(out->access_key, src->access_key, sizeof out->access_key);
            memcpy(out->secret_key, src->secret_key, sizeof out->secret_key);
            memcpy(out->session_token, src->session_token, sizeof out->session_token);
        }
        if (!src) {
            const char *alt = explicit_profile
                                  ? ""
                                  : " (or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)";
            if (cred_rc == -ENOENT)
                bfs_set_errmsg(errmsg,
                           "S3 profile '%s': no credentials: %s does not exist; create it with "
                           "a [%s] section holding aws_access_key_id and aws_secret_access_key%s",
                           name, cred_path, name, alt);
            else if (cred_rc == 0)
                bfs_set_errmsg(errmsg,
                           "S3 profile '%s': no credentials: %s has no [%s] section; add one "
                           "with aws_access_key_id and aws_secret_access_key%s",
                           name, cred_path, name, alt);
            else
                bfs_set_errmsg(errmsg,
                           "S3 profile '%s': the [%s] section of %s lacks aws_access_key_id or "
                           "aws_secret_access_key; add both%s",
                           name, name, cred_path, alt);
            rc = -ENOENT;
            goto fail;
        }
    }

    /* A key or token that would break the request line-up (a stray newline
     * pasted into a file or variable) is refused here, with its source. */
    if (!valid_scope_part(out->access_key) || !valid_header_value(out->secret_key) ||
        !valid_header_value(out->session_token)) {
        bfs_set_errmsg(errmsg,
                   "S3 profile '%s': the access key, secret key or session token from %s "
                   "contains a space, control character or separator",
                   name, keys_from);
        rc = -EINVAL;
        goto fail;
    }

    /* Region. */
    const char *r = env_nonempty("AWS_REGION");
    const char *rsrc = "AWS_REGION";
    if (!r)
        r = env_nonempty("AWS_DEFAULT_REGION"), rsrc = "AWS_DEFAULT_REGION";
    if (!r && region[0])
        r = region, rsrc = conf_path;
    if (!r)
        r = "us-east-1", rsrc = "the default";
    if (copy_setting(out->region, sizeof out->region, r) < 0 || !valid_scope_part(out->region)) {
        bfs_set_errmsg(errmsg, "S3 profile '%s': the region from %s is not a valid region name", name,
                   rsrc);
        rc = -EINVAL;
        goto fail;
    }

    /* Endpoint. */
    static const char *const ep_env[] = {"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL",
                                         "S3_ENDPOINT_URL"};
    const char *ep = NULL, *epsrc = NULL;
    for (size_t i = 0; i < sizeof ep_env / sizeof ep_env[0] && !ep; i++)
        if ((ep = env_nonempty(ep_env[i])))
            epsrc = ep_env[i];
    if (!ep && s3endpoint[0])
        ep = s3endpoint, epsrc = conf_path;
    if (!ep && endpoint[0])
        ep = endpoint, epsrc = conf_path;
    char defep[sizeof out->endpoint];
    if (!ep) {
        snprintf(defep, sizeof defep, "https://s3.%s.amazonaws.com", out->region);
        ep = defep, epsrc = "the default for the region";
    }
    if (copy_setting(out->endpoint, sizeof out->endpoint, ep) < 0 ||
        normalise_endpoint(out->endpoint) < 0) {
        bfs_set_errmsg(errmsg,
                   "S3 profile '%s': the endpoint from %s is not an http:// or https:// URL "
                   "with a host[:port] of letters, digits, '-', '.', '_' (or [IPv6]) and no user, "
                   "query or fragment, of at most %zu bytes",
                   name, epsrc, sizeof out->endpoint - 1);
        rc = -EINVAL;
        goto fail;
    }
    bfs_debug(TAG, "profile '%s': keys from %s, region %s, endpoint %s", name, keys_from,
              out->region, out->endpoint);
    bfs_s3_creds_clear(&ck);
    bfs_s3_creds_clear(&fk);
    return 0;

fail:
    bfs_s3_creds_clear(&ck);
    bfs_s3_creds_clear(&fk);
    bfs_s3_creds_clear(out);
    return rc;
}

/* ---- the per-profile cache -------------------------------------------------- */

/*
 * Lock: s3->lock guards the entry list and every entry.  It is held while a
 * profile is (re)read from the environment and the local AWS files, never
 * during network I/O (there is none here).
 */
typedef struct s3_entry {
    struct s3_entry *next;
    bool explicit_profile; /* false: the "no profile" resolution */
    char *profile;         /* NULL when !explicit_profile */
    bfs_s3_creds creds;
    bool ok;               /* creds valid */
    int err;               /* last error when !ok */
    bool warned;           /* the last error was logged */
    time_t loaded;         /* CLOCK_MONOTONIC seconds of the last attempt */
} s3_entry;

struct bfs_s3 {
    pthread_mutex_t lock;
    char *default_profile; /* NULL: not explicit */
    s3_entry *entries;
};

static time_t mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

int bfs_s3_new(const char *default_profile, bfs_s3 **out)
{
    *out = NULL;
    bfs_s3 *s3 = calloc(1, sizeof *s3);
    if (!s3)
        return -ENOMEM;
    if (default_profile && *default_profile && !(s3->default_profile = strdup(default_profile))) {
        free(s3);
        return -ENOMEM;
    }
    pthread_mutex_init(&s3->lock, NULL);
    *out = s3;
    return 0;
}

void bfs_s3_free(bfs_s3 *s3)
{
    if (!s3)
        return;
    for (s3_entry *e = s3->entries, *next; e; e = next) {
        next = e->next;
        bfs_s3_creds_clear(&e->creds);
        free(e->profile);
        free(e);
    }
    pthread_mutex_destroy(&s3->lock);
    free(s3->default_profile);
    free(s3);
}

/* Copy the credentials of profile (NULL/"": the default) into *out, loading
 * them when absent or stale.  Called with the lock NOT held. */
static int s3_get(bfs_s3 *s3, const char *profile, bfs_s3_creds *out, char **errmsg)
{
    if (!profile || !*profile)
        profile = s3->default_profile;
    const bool expl = profile != NULL;
    time_t now = mono_now();

    pthread_mutex_lock(&s3->lock);
    s3_entry *e = s3->entries;
    for (; e; e = e->next)
        if (e->explicit_profile == expl && (!expl || strcmp(e->profile, profile) == 0))
            break;
    if (!e) {
        e = calloc(1, sizeof *e);
        if (!e || (expl && !(e->profile = strdup(profile)))) {
            free(e);
            pthread_mutex_unlock(&s3->lock);
            return -ENOMEM;
        }
        e->explicit_profile = expl;
        e->err = -EAGAIN;
        e->loaded = now - CREDS_TTL_S - 1;
        e->next = s3->entries;
        s3->entries = e;
    }
    bool stale = e->ok ? now - e->loaded >= CREDS_TTL_S : now - e->loaded >= FAIL_TTL_S;
    char *msg = NULL;
    if (stale) {
        bfs_s3_creds fresh;
        int rc = bfs_s3_load_creds(profile, &fresh, &msg);
        e->loaded = now;
        if (rc == 0) {
            bfs_s3_creds_clear(&e->creds);
            e->creds = fresh;
            e->ok = true;
            e->warned = false;
        } else if (e->ok) {
            /* Keep serving the previous credentials (a file being rewritten). */
            bfs_debug(TAG, "re-reading S3 credentials failed, keeping the previous ones: %s",
                      msg ? msg : strerror(-rc));
        } else {
            e->err = rc;
            if (!e->warned)
                bfs_warn(TAG, "%s", msg ? msg : strerror(-rc));
            e->warned = true;
        }
        bfs_s3_creds_clear(&fresh);
    }
    int rc = e->ok ? 0 : e->err;
    if (e->ok)
        *out = e->creds;
    pthread_mutex_unlock(&s3->lock);

    if (errmsg) {
        *errmsg = NULL;
        if (rc < 0 && !msg) /* cached failure: describe it again */
            (void)bfs_s3_load_creds(profile, out, &msg);
        if (rc < 0) {
            *errmsg = msg;
            msg = NULL;
        }
    }
    free(msg);
    if (rc < 0)
        bfs_s3_creds_clear(out);
    return rc;
}

int bfs_s3_check(bfs_s3 *s3, const char *profile, char **errmsg)
{
    bfs_s3_creds c;
    int rc = s3_get(s3, profile, &c, errmsg);
    bfs_s3_creds_clear(&c);
    return rc;
}

/* ---- one request -------------------------------------------------------------- */

static bool valid_method(const char *m)
{
    size_t n = strlen(m);
    if (n == 0 || n > 16)
        return false;
    for (; *m; m++)
        if (*m < 'A' || *m > 'Z')
            return false;
    return true;
}

/* Append "Name: value" to *list; false when out of memory. */
static bool add_header(struct curl_slist **list, const char *name, const char *value)
{
    size_t n = strlen(name) + 2 + strlen(value) + 1;
    char *line = malloc(n);
    if (!line)
        return false;
    snprintf(line, n, "%s: %s", name, value);
    struct curl_slist *l = curl_slist_append(*list, line);
    OPENSSL_cleanse(line, n);
    free(line);
    if (!l)
        return false;
    *list = l;
    return true;
}

/* bfs_s3_prepare with a canonical query (bfs_s3_canonical_query; "" for
 * none) and the payload hash to sign (NULL: the empty body's for GET and
 * HEAD, UNSIGNED-PAYLOAD otherwise); the wrappers are at the end. */
static int prepare_signed(bfs_s3 *s3, const char *method, const char *s3_uri, const char *query,
                          const char *payload_hash, const char *range_header, const char *if_match,
                          time_t now, char *url_out, size_t url_sz, struct curl_slist **headers)
{
    if (url_out && url_sz)
        url_out[0] = '\0';
    if (!s3 || !method || !s3_uri || !url_out || !url_sz || !headers || !valid_method(method))
        return -EINVAL;
    if ((range_header && !valid_header_value(range_header)) ||
        (if_match && !valid_header_value(if_match)))
        return -EINVAL;

    char profile[128], bucket[256];
    const char *key;
    int rc = bfs_s3_parse_uri(s3_uri, profile, sizeof profile, bucket, sizeof bucket, &key);
    if (rc < 0)
        return rc;
    if (!*key && !*query) /* a request on the bucket itself carries a query (ListObjectsV2) */
        return -EINVAL;

    size_t klen = strlen(key);
    char *dkey = malloc(klen + 1);
    char *ekey = malloc(3 * klen + 1);
    char ebucket[3 * sizeof bucket];
    char *curi = NULL;
    struct curl_slist *list = NULL;
    bfs_s3_creds c;
    bool have_creds = false;
    char auth[1024] = "";
    if (!dkey || !ekey) {
        rc = -ENOMEM;
        goto out;
    }
    size_t dlen;
    if ((rc = key_decode(key, dkey, &dlen)) < 0)
        goto out;
    if ((rc = bfs_s3_uri_encode(dkey, dlen, 1, ekey, 3 * klen + 1)) < 0 ||
        (rc = bfs_s3_uri_encode(bucket, strlen(bucket), 0, ebucket, sizeof ebucket)) < 0)
        goto out;

    /* No usable credentials is "access denied" to http.c's classification,
     * not "no such object"; the detail was logged once by s3_get. */
    if ((rc = s3_get(s3, profile, &c, NULL)) < 0) {
        if (rc != -ENOMEM)
            rc = -EACCES;
        goto out;
    }
    have_creds = true;

    /* endpoint = scheme://host[/prefix] (normalised by load_creds) */
    const char *hoststart = strstr(c.endpoint, "://") + 3;
    size_t hostlen = strcspn(hoststart, "/");
    const char *prefix = hoststart + hostlen;
    char host[sizeof c.endpoint];
    memcpy(host, hoststart, hostlen);
    host[hostlen] = '\0';

    int n = snprintf(url_out, url_sz, "%s/%s/%s%s%s", c.endpoint, ebucket, ekey, *query ? "?" : "",
                     query);
    if (n < 0 || (size_t)n >= url_sz) {
        url_out[0] = '\0';
        rc = -ENAMETOOLONG;
        goto out;
    }
    size_t curi_sz = strlen(prefix) + strlen(ebucket) + strlen(ekey) + 3;
    if (!(curi = malloc(curi_sz))) {
        rc = -ENOMEM;
        goto out;
    }
    snprintf(curi, curi_sz, "%s/%s/%s", prefix, ebucket, ekey);

    struct tm tm;
    char amz_date[32];
    if (!gmtime_r(&now, &tm) || strftime(amz_date, sizeof amz_date, "%Y%m%dT%H%M%SZ", &tm) != 16) {
        rc = -EINVAL;
        goto out;
    }
    const bool no_body = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    const char *payload = payload_hash ? payload_hash
                          : no_body    ? BFS_S3_EMPTY_SHA256
                                       : "UNSIGNED-PAYLOAD";

    /* Sorted: host < if-match < range < x-amz-checksum-mode <
     * x-amz-content-sha256 < x-amz-date < x-amz-security-token.  A GET or
     * HEAD asks for the object's checksums (x-amz-checksum-mode), which S3
     * returns only when asked, so a whole read can be checked against them. */
    const char *names[7], *values[7];
    int nh = 0;
    names[nh] = "host", values[nh++] = host;
    if (if_match)
        names[nh] = "if-match", values[nh++] = if_match;
    if (range_header)
        names[nh] = "range", values[nh++] = range_header;
    if (no_body && *key)
        names[nh] = "x-amz-checksum-mode", values[nh++] = "ENABLED";
    names[nh] = "x-amz-content-sha256", values[nh++] = payload;
    names[nh] = "x-amz-date", values[nh++] = amz_date;
    if (c.session_token[0])
        names[nh] = "x-amz-security-token", values[nh++] = c.session_token;

    rc = bfs_sigv4_sign(method, curi, query, names, values, nh, payload, amz_date, c.region, "s3",
                        c.access_key, c.secret_key, auth, sizeof auth);
    if (rc < 0) {
        url_out[0] = '\0';
        goto out;
    }

    static const char *const wire[] = {"Host", "If-Match", "Range", "x-amz-checksum-mode",
                                       "x-amz-content-sha256", "x-amz-date", "x-amz-security-token"};
    static const char *const lower[] = {"host", "if-match", "range", "x-amz-checksum-mode",
                                        "x-amz-content-sha256", "x-amz-date", "x-amz-security-token"};
    for (int i = 0; i < nh; i++) {
        const char *w = names[i];
        for (size_t j = 0; j < sizeof lower / sizeof lower[0]; j++)
            if (strcmp(names[i], lower[j]) == 0)
                w = wire[j];
        if (!add_header(&list, w, values[i]))
            goto oom;
    }
    if (!add_header(&list, "Authorization", auth))
        goto oom;

    /* Attach only now, so *headers is untouched on every error. */
    if (!*headers) {
        *headers = list;
    } else {
        struct curl_slist *t = *headers;
        while (t->next)
            t = t->next;
        t->next = list;
    }
    list = NULL;
    rc = 0;
    goto out;
oom:
    rc = -ENOMEM;
    url_out[0] = '\0';
out:
    if (list)
        curl_slist_free_all(list);
    if (have_creds)
        bfs_s3_creds_clear(&c);
    OPENSSL_cleanse(auth, sizeof auth);
    free(curi);
    free(dkey);
    free(ekey);
    return rc;
}

int bfs_s3_prepare(bfs_s3 *s3, const char *method, const char *s3_uri, const char *range_header,
                   const char *if_match, time_t now, char *url_out, size_t url_sz,
                   struct curl_slist **headers)
{
    return prepare_signed(s3, method, s3_uri, "", NULL, range_header, if_match, now, url_out, url_sz,
                          headers);
}

/* ---- query strings, multipart uploads -------------------------------------------- */

typedef struct enc_param {
    char name[128], value[1024];
} enc_param;

static int enc_param_cmp(const void *a, const void *b)
{
    const enc_param *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

int bfs_s3_canonical_query(const bfs_s3_param *params, int n, char *out, size_t out_sz)
{
    if (!out || !out_sz)
        return -ENAMETOOLONG;
    out[0] = '\0';
    if (n < 0 || n > BFS_S3_MAX_PARAMS || (n && !params))
        return -EINVAL;
    enc_param enc[BFS_S3_MAX_PARAMS];
    for (int i = 0; i < n; i++) {
        const char *v = params[i].value ? params[i].value : "";
        if (!params[i].name || !*params[i].name)
            return -EINVAL;
        if (bfs_s3_uri_encode(params[i].name, strlen(params[i].name), 0, enc[i].name, sizeof enc[i].name) < 0 ||
            bfs_s3_uri_encode(v, strlen(v), 0, enc[i].value, sizeof enc[i].value) < 0)
            return -ENAMETOOLONG;
    }
    qsort(enc, (size_t)n, sizeof *enc, enc_param_cmp);
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        int w = snprintf(out + o, out_sz - o, "%s%s=%s", i ? "&" : "", enc[i].name, enc[i].value);
        if (w < 0 || (size_t)w >= out_sz - o) {
            out[0] = '\0';
            return -ENAMETOOLONG;
        }
        o += (size_t)w;
    }
    return (int)o;
}

int bfs_s3_prepare_request(bfs_s3 *s3, const bfs_s3_request *rq, time_t now, char *url_out, size_t url_sz,
                           struct curl_slist **headers)
{
    if (url_out && url_sz)
        url_out[0] = '\0';
    if (!rq)
        return -EINVAL;
    char query[2048], body_hash[65];
    int rc = bfs_s3_canonical_query(rq->query, rq->nquery, query, sizeof query);
    if (rc < 0)
        return rc;
    if (rq->body && (rc = sha256_hex(rq->body, rq->body_len, body_hash)) < 0)
        return rc;
    return prepare_signed(s3, rq->method, rq->s3_uri, query, rq->body ? body_hash : NULL, rq->range_header,
                          rq->if_match, now, url_out, url_sz, headers);
}

/* The text between <tag> and </tag> (the first such element) of a bounded
 * reply, without entity decoding: [*start, *start + *len).  False when absent. */
static bool xml_find(const char *xml, size_t len, const char *tag, const char **start, size_t *n)
{
    char open[80], close[82];
    int ol = snprintf(open, sizeof open, "<%s>", tag), cl = snprintf(close, sizeof close, "</%s>", tag);
    if (ol <= 0 || (size_t)ol >= sizeof open || cl <= 0 || (size_t)cl >= sizeof close)
        return false;
    const char *s = memmem(xml, len, open, (size_t)ol);
    if (!s)
        return false;
    s += ol;
    const char *e = memmem(s, len - (size_t)(s - xml), close, (size_t)cl);
    if (!e)
        return false;
    *start = s;
    *n = (size_t)(e - s);
    return true;
}

int bfs_s3_xml_text(const char *xml, size_t len, const char *tag, char *out, size_t out_sz)
{
    static const struct { const char *ent; char c; } ents[] = {
        {"&quot;", '"'}, {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&apos;", '\''}, {"&#34;", '"'}};
    if (!out || !out_sz)
        return -ENAMETOOLONG;
    out[0] = '\0';
    const char *s;
    size_t n, o = 0;
    if (!xml || !tag || !xml_find(xml, len, tag, &s, &n))
        return -ENOENT;
    for (size_t i = 0; i < n;) {
        char c = s[i];
        size_t step = 1;
        for (size_t k = 0; c == '&' && k < sizeof ents / sizeof ents[0]; k++) {
            size_t el = strlen(ents[k].ent);
            if (n - i >= el && memcmp(s + i, ents[k].ent, el) == 0) {
                c = ents[k].c;
                step = el;
                break;
            }
        }
        if (o + 1 >= out_sz) {
            out[0] = '\0';
            return -ENAMETOOLONG;
        }
        out[o++] = c;
        i += step;
    }
    out[o] = '\0';
    return (int)o;
}

bool bfs_s3_xml_error(const char *xml, size_t len, char *code, size_t code_sz)
{
    const char *s;
    size_t n;
    if (code && code_sz)
        code[0] = '\0';
    if (!xml || !xml_find(xml, len, "Error", &s, &n))
        return false;
    if (code && code_sz && bfs_s3_xml_text(s, n, "Code", code, code_sz) < 0)
        snprintf(code, code_sz, "%s", "(no code)");
    return true;
}

char *bfs_s3_complete_body(const char *const *etags, int nparts)
{
    if (!etags || nparts < 1 || nparts > BFS_S3_MAX_PARTS)
        return NULL;
    sbuf b = {0};
    sb_add(&b, "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    for (int i = 0; i < nparts; i++) {
        char num[32];
        snprintf(num, sizeof num, "%d", i + 1);
        sb_add(&b, "<Part><PartNumber>");
        sb_add(&b, num);
        sb_add(&b, "</PartNumber><ETag>");
        for (const char *p = etags[i] ? etags[i] : ""; *p; p++) {
            const char *esc = *p == '&' ? "&amp;" : *p == '<' ? "&lt;" : *p == '>' ? "&gt;"
                              : *p == '"' ? "&quot;" : NULL;
            if (esc)
                sb_add(&b, esc);
            else
                sb_addc(&b, *p);
        }
        sb_add(&b, "</ETag></Part>");
    }
    sb_add(&b, "</CompleteMultipartUpload>");
    if (b.oom) {
        sb_release(&b);
        return NULL;
    }
    return b.p; /* holds no secret: plain free() is fine */
}

int64_t bfs_s3_part_size(int64_t size, int64_t wanted)
{
    int64_t p = wanted < BFS_S3_MIN_PART ? BFS_S3_MIN_PART : wanted > BFS_S3_MAX_PART ? BFS_S3_MAX_PART : wanted;
    if (size > 0 && (size + p - 1) / p > BFS_S3_MAX_PARTS) {
        p = (size + BFS_S3_MAX_PARTS - 1) / BFS_S3_MAX_PARTS;
        p = (p + (1 << 20) - 1) / (1 << 20) * (1 << 20); /* whole MiB */
    }
    return p;
}
