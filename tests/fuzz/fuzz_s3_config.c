/*
 * fuzz_s3_config.c - the AWS shared credentials and config files
 * (fetchers/s3.c), then an S3 URI signed with what they gave.
 *
 * Input: parts separated by a line "%%":
 *   credentials file, config file, profile name (empty: not explicit),
 *   an S3 URI key (the request is for s3://bucket/<key>).
 * The environment points AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE at
 * the two files and holds no other AWS settings.  A signed request must
 * have an http(s) URL whose host (the signed Host header) is visible
 * ASCII, and no CR or LF in any header.
 */
#include "s3.h"
#include "fuzz_util.h"

#include <curl/curl.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

static char creds_path[128], config_path[128];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *dir = fz_setup();
    snprintf(creds_path, sizeof creds_path, "%s/credentials", dir);
    snprintf(config_path, sizeof config_path, "%s/config", dir);
    static const char *const unset[] = {
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
        "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL",
        "S3_ENDPOINT_URL",
    };
    for (size_t i = 0; i < sizeof unset / sizeof *unset; i++)
        unsetenv(unset[i]);
    setenv("AWS_SHARED_CREDENTIALS_FILE", creds_path, 1);
    setenv("AWS_CONFIG_FILE", config_path, 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fz_string(data, size);
    char *part[4];
    fz_split(s, part, 4);
    fz_write(creds_path, part[0], strlen(part[0]));
    fz_write(config_path, part[1] ? part[1] : "", part[1] ? strlen(part[1]) : 0);
    const char *profile = part[2] && *part[2] ? part[2] : NULL;

    bfs_s3_creds c;
    char *msg = NULL;
    int rc = bfs_s3_load_creds(profile, &c, &msg);
    if (rc < 0) {
        if (c.access_key[0] || c.secret_key[0])
            abort(); /* zeroed on failure */
    } else if (!c.access_key[0] || !c.secret_key[0] || !c.region[0] || !c.endpoint[0]) {
        abort();
    }
    bfs_s3_creds_clear(&c);
    free(msg);

    if (rc == 0) {
        bfs_s3 *s3 = NULL;
        if (bfs_s3_new(profile, &s3) != 0)
            abort();
        char uri[1200], url[4096];
        snprintf(uri, sizeof uri, "s3://bucket/%.1000s", part[3] ? part[3] : "key");
        struct curl_slist *hdrs = NULL;
        if (bfs_s3_prepare(s3, "GET", uri, "bytes=0-99", "\"etag\"", 1700000000, url, sizeof url,
                           &hdrs) == 0) {
            if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
                abort();
            /* the authority becomes the signed Host header: visible ASCII only */
            for (const char *p = strstr(url, "://") + 3; *p && *p != '/'; p++)
                if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
                    abort();
            for (struct curl_slist *h = hdrs; h; h = h->next)
                if (strpbrk(h->data, "\r\n"))
                    abort(); /* a header that would split the request */
        }
        curl_slist_free_all(hdrs);
        bfs_s3_free(s3);
    }
    free(s);
    return 0;
}
