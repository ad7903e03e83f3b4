/*
 * Unit tests for fetchers/listing.c (the PROPFIND and ListObjectsV2 reply
 * parser, through listing_i.h) and the canonical query string of a
 * listing (bfs_s3_canonical_query in fetchers/s3.c).
 *
 * Test vector: the AWS SigV4 test suite's get-vanilla-query-order-key-case
 * (GET /?Param2=value2&Param1=value1, host example.amazonaws.com,
 * 20150830T123600Z, AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY,
 * us-east-1, service "service"): Signature
 * b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500
 * (docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html, the
 * .sreq file as vendored by public SigV4 implementations).
 *
 * The replies are hand-written after RFC 4918 (section 9.1's examples) and
 * the S3 API reference's ListObjectsV2 response syntax.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "listing_i.h"
#include "s3.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct got {
    char names[32][64];
    int64_t sizes[32];
    bool dirs[32];
    int n;
};

static int collect(void *ctx, const bfs_list_entry *e)
{
    struct got *g = ctx;
    if (g->n == 32)
        return -E2BIG;
    snprintf(g->names[g->n], sizeof g->names[0], "%s", e->name);
    g->sizes[g->n] = e->size;
    g->dirs[g->n++] = e->is_dir;
    return 0;
}

static int parse(bfs_list_kind kind, const char *base, const char *xml, struct got *g, bfs_list_stats *st,
                 bool *trunc, char **next)
{
    memset(g, 0, sizeof *g);
    int last = 0;
    /* every chunking gives the same answer */
    for (size_t chunk = 1; chunk <= strlen(xml) + 1; chunk = chunk * 3 + 1) {
        memset(g, 0, sizeof *g);
        if (next && *next) {
            free(*next);
            *next = NULL;
        }
        bfs_list_stats s = {0};
        last = bfs_list_parse(kind, base, xml, strlen(xml), chunk, collect, g, &s, trunc, next);
        if (st)
            *st = s;
    }
    return last;
}

#define DAV_HEAD "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:multistatus xmlns:D=\"DAV:\">\n"
#define DAV_FILE(href, len)                                                                                  \
    "<D:response><D:href>" href "</D:href><D:propstat><D:prop><D:resourcetype/>"                             \
    "<D:getcontentlength>" len "</D:getcontentlength></D:prop><D:status>HTTP/1.1 200 OK</D:status>"          \
    "</D:propstat></D:response>\n"
#define DAV_DIR(href)                                                                                        \
    "<D:response><D:href>" href "</D:href><D:propstat><D:prop><D:resourcetype><D:collection/>"               \
    "</D:resourcetype></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>\n"

static void test_dav_members(void **state)
{
    const char *xml = DAV_HEAD DAV_DIR("/data/a%20b/")                 /* itself: left out */
        DAV_FILE("/data/a%20b/x.fits", "2880")                          /* a member */
        DAV_FILE("http://127.0.0.1:8080/data/a%20b/y%2Bz.fits", "10")   /* absolute URI */
        DAV_DIR("/data/a%20b/sub/")                                     /* a sub-directory */
        DAV_FILE("/data/a%20b/sub/deep.fits", "1")                      /* not a direct member */
        DAV_FILE("/data/other/x.fits", "1")                             /* elsewhere */
        DAV_FILE("/data/a%20b/..", "1")                                 /* never a name */
        DAV_FILE("/data/a%20b/q%2Fr", "1")                              /* decodes to a '/' */
        DAV_FILE("/data/a%20b/n%00ul", "1")                             /* decodes to NUL */
        DAV_FILE("data/a%20b/rel", "1")                                 /* relative: not ours */
        DAV_FILE("/data/a%20b/q?x=1", "1")                              /* a query */
        "<D:response><D:href>/data/a%20b/gone</D:href><D:status>HTTP/1.1 404 Not Found</D:status></D:response>"
        "<D:response><D:href>/data/a%20b/m1</D:href><D:href>/data/a%20b/m2</D:href>"
        "<D:status>HTTP/1.1 200 OK</D:status></D:response>"
        /* a length in a failed propstat is not the object's */
        "<D:response><D:href>/data/a%20b/half</D:href><D:propstat><D:prop><D:getcontentlength>5"
        "</D:getcontentlength></D:prop><D:status>HTTP/1.1 404 Not Found</D:status></D:propstat></D:response>"
        /* an href inside a prop is not the response's */
        "<D:response><D:href>  /data/a%20b/&#x6b;.fits\n</D:href><D:propstat><D:prop><D:href>/data/a%20b/fake</D:href>"
        "<D:getcontentlength> 7 </D:getcontentlength></D:prop><D:status>HTTP/1.1 200 OK</D:status>"
        "</D:propstat></D:response>"
        "</D:multistatus>\n";
    struct got g;
    bfs_list_stats st;
    assert_int_equal(parse(BFS_LIST_DAV, "/data/a b/", xml, &g, &st, NULL, NULL), 0);
    assert_int_equal(g.n, 5);
    assert_string_equal(g.names[0], "x.fits");
    assert_int_equal(g.sizes[0], 2880);
    assert_string_equal(g.names[1], "y+z.fits");
    assert_int_equal(g.sizes[1], 10);
    assert_string_equal(g.names[2], "sub");
    assert_true(g.dirs[2]);
    assert_int_equal(g.sizes[2], -1);
    assert_string_equal(g.names[3], "half");
    assert_int_equal(g.sizes[3], -1);
    assert_string_equal(g.names[4], "k.fits");
    assert_int_equal(g.sizes[4], 7);
    assert_int_equal(st.entries, 5);
    assert_int_equal(st.ignored, 9);
}

static void test_dav_refused(void **state)
{
    struct got g;
    /* a DTD (and so any entity of its own) is refused */
    assert_int_equal(parse(BFS_LIST_DAV, "/d/",
                           "<?xml version=\"1.0\"?><!DOCTYPE m [<!ENTITY e \"x\">]>"
                           "<D:multistatus xmlns:D=\"DAV:\">" DAV_FILE("/d/&e;", "1") "</D:multistatus>",
                           &g, NULL, NULL, NULL),
                     -EPROTO);
    assert_int_equal(g.n, 0);
    /* not a multistatus, not in DAV:, not XML, empty, cut short */
    assert_int_equal(parse(BFS_LIST_DAV, "/d/", "<html><body>hi</body></html>", &g, NULL, NULL, NULL), -EPROTO);
    assert_int_equal(parse(BFS_LIST_DAV, "/d/", "<multistatus/>", &g, NULL, NULL, NULL), -EPROTO);
    assert_int_equal(parse(BFS_LIST_DAV, "/d/", "not xml", &g, NULL, NULL, NULL), -EPROTO);
    assert_int_equal(parse(BFS_LIST_DAV, "/d/", "", &g, NULL, NULL, NULL), -EPROTO);
    assert_int_equal(parse(BFS_LIST_DAV, "/d/", DAV_HEAD DAV_FILE("/d/a", "1"), &g, NULL, NULL, NULL), -EPROTO);
    /* an undeclared entity */
    assert_int_equal(parse(BFS_LIST_DAV, "/d/", DAV_HEAD DAV_FILE("/d/&x;", "1") "</D:multistatus>", &g, NULL,
                           NULL, NULL),
                     -EPROTO);
    /* a text longer than the parser keeps */
    size_t n = 20000;
    char *big = malloc(n + 200);
    assert_non_null(big);
    int k = snprintf(big, 200, "%s<D:response><D:href>/d/", DAV_HEAD);
    memset(big + k, 'a', n);
    strcpy(big + k + n, "</D:href></D:response></D:multistatus>");
    assert_int_equal(bfs_list_parse(BFS_LIST_DAV, "/d/", big, strlen(big), 4096, collect, &g, NULL, NULL, NULL),
                     -EPROTO);
    free(big);
}

static void test_callback_stops(void **state)
{
    struct got g = {.n = 32}; /* full: collect says -E2BIG */
    assert_int_equal(bfs_list_parse(BFS_LIST_DAV, "/d/", DAV_HEAD DAV_FILE("/d/a", "1") "</D:multistatus>",
                                    strlen(DAV_HEAD DAV_FILE("/d/a", "1") "</D:multistatus>"), 7, collect, &g,
                                    NULL, NULL, NULL),
                     -E2BIG);
}

#define S3_HEAD "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"

static void test_s3_page(void **state)
{
    struct got g;
    bool trunc;
    char *next = NULL;
    /* keys URL-encoded ('+' a space), EncodingType after the Contents */
    const char *xml = S3_HEAD "<Name>b</Name><Prefix>dir%2F</Prefix><IsTruncated>true</IsTruncated>"
        "<Contents><Key>dir/a+b%2Bc.fits</Key><Size>2880</Size></Contents>"
        "<Contents><Key>dir/</Key><Size>0</Size></Contents>"
        "<Contents><Key>other/x</Key><Size>1</Size></Contents>"
        "<Contents><Key>dir/n%00</Key><Size>1</Size></Contents>"
        "<Contents><Size>3</Size><Key>dir/s%20z</Key></Contents>"
        "<CommonPrefixes><Prefix>dir/sub/</Prefix></CommonPrefixes>"
        "<EncodingType>url</EncodingType><KeyCount>5</KeyCount>"
        "<NextContinuationToken> 1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM= </NextContinuationToken>"
        "</ListBucketResult>";
    bfs_list_stats st;
    assert_int_equal(parse(BFS_LIST_S3, "dir/", xml, &g, &st, &trunc, &next), 0);
    assert_int_equal(g.n, 3);
    assert_string_equal(g.names[0], "a b+c.fits");
    assert_int_equal(g.sizes[0], 2880);
    assert_string_equal(g.names[1], "s z");
    assert_int_equal(g.sizes[1], 3);
    assert_string_equal(g.names[2], "sub");
    assert_true(g.dirs[2]);
    assert_true(trunc);
    assert_string_equal(next, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
    assert_int_equal(st.ignored, 2);
    free(next);
    next = NULL;
    /* no EncodingType (a server that ignores encoding-type): keys as they are */
    assert_int_equal(parse(BFS_LIST_S3, "", S3_HEAD "<IsTruncated>false</IsTruncated>"
                           "<Contents><Key>a+b%20c</Key><Size>4</Size></Contents></ListBucketResult>",
                           &g, NULL, &trunc, &next),
                     0);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.names[0], "a+b%20c");
    assert_false(trunc);
    assert_null(next);
    /* another root element */
    assert_int_equal(parse(BFS_LIST_S3, "", "<Error><Code>NoSuchBucket</Code></Error>", &g, NULL, &trunc, &next),
                     -EPROTO);
}

static void test_split_url(void **state)
{
    char *dir, *name;
    assert_int_equal(bfs_list_split_url("http://h:1/data/a%20b/x%2By.fits", &dir, &name), 0);
    assert_string_equal(dir, "http://h:1/data/a%20b/");
    assert_string_equal(name, "x+y.fits");
    free(dir), free(name);
    assert_int_equal(bfs_list_split_url("s3://p@bucket/k%zz", &dir, &name), 0);
    assert_string_equal(dir, "s3://p@bucket/");
    assert_string_equal(name, "k%zz");
    free(dir), free(name);
    assert_int_equal(bfs_list_split_url("http://h/dir/", &dir, &name), -EINVAL);
    assert_int_equal(bfs_list_split_url("http://h", &dir, &name), -EINVAL);
    assert_int_equal(bfs_list_split_url("http://h/a%00", &dir, &name), -EINVAL);
    assert_null(dir);
    assert_null(name);
}

static void test_s3_query(void **state)
{
    /* the canonical query of a listing, as bfs_list_dir asks s3.c to sign it */
    char q[256];
    const bfs_s3_param p[] = {{"prefix", "a b/c~"}, {"list-type", "2"}, {"continuation-token", ""},
                              {"delimiter", "/"}};
    assert_int_equal(bfs_s3_canonical_query(p, 4, q, sizeof q), 63);
    assert_string_equal(q, "continuation-token=&delimiter=%2F&list-type=2&prefix=a%20b%2Fc~");
    /* the AWS suite's get-vanilla-query-order-key-case, given unsorted */
    const bfs_s3_param v[] = {{"Param2", "value2"}, {"Param1", "value1"}};
    assert_int_equal(bfs_s3_canonical_query(v, 2, q, sizeof q), 27);
    assert_string_equal(q, "Param1=value1&Param2=value2");
    const char *names[] = {"host", "x-amz-date"};
    const char *values[] = {"example.amazonaws.com", "20150830T123600Z"};
    char auth[512];
    assert_int_equal(bfs_sigv4_sign("GET", "/", q, names, values, 2, BFS_S3_EMPTY_SHA256, "20150830T123600Z",
                                    "us-east-1", "service", "AKIDEXAMPLE",
                                    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", auth, sizeof auth),
                     0);
    assert_non_null(strstr(auth, "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dav_members),
        cmocka_unit_test(test_dav_refused),
        cmocka_unit_test(test_callback_stops),
        cmocka_unit_test(test_s3_page),
        cmocka_unit_test(test_split_url),
        cmocka_unit_test(test_s3_query),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
