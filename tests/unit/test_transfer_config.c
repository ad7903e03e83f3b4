/*
 * test_transfer_config.c - the transfer: section's object-name templates
 * and retention rules (writers/transfer.c): template expansion and its
 * safety checks, the parse errors with file:line, which retention rule a
 * dataset falls under, and the job-state queries local retention uses.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "strutil.h"
#include "transfer.h"

static const char ID[] = "0123456789abcdef0123456789abcdef";

/* Parse text's transfer: section into c; the return of the parse, and
 * *msg (may be NULL) its sentence. */
static int parse(const char *text, bfs_transfer_config *c, char **msg)
{
    bfs_yaml *y = NULL;
    bfs_transfer_config_defaults(c);
    int ret = bfs_yaml_load_string(text, &y, msg);
    assert_int_equal(ret, 0);
    ret = bfs_transfer_config_parse(y, bfs_yaml_get(y, bfs_yaml_root(y), "transfer"), "t.yaml", c, msg);
    bfs_yaml_free(y);
    return ret;
}

static char *key_of(const char *tmpl, const char *rel, const char *run, int *ret)
{
    bfs_transfer_dest d = {.name = "dbb", .uri = "http://h/p/", .template = (char *)tmpl};
    bfs_transfer_item it = {.dataset_id = ID, .run = run, .dataset_type = "raw", .rel = rel, .size = 1};
    char *out = NULL, *msg = NULL;
    *ret = bfs_transfer_object_key(&d, &it, &out, &msg);
    if (*ret < 0) {
        assert_null(out);
        assert_non_null(msg); /* a sentence for every refusal */
    }
    free(msg);
    return out;
}

static void test_expand(void **state)
{
    (void)state;
    int ret;
    char *k = key_of(NULL, "LSSTCam/raw/all/raw/x.fits", "LSSTCam/raw/all", &ret);
    assert_string_equal(k, "LSSTCam/raw/all/raw/x.fits"); /* no template: {path} */
    free(k);
    k = key_of("summit/{run}/{dataset_type}/{id}-{name}", "a/b/x.fits", "LSSTCam/raw/all", &ret);
    assert_string_equal(k, "summit/LSSTCam/raw/all/raw/0123456789abcdef0123456789abcdef-x.fits");
    free(k);
    k = key_of("{name}", "x.fits", "r", &ret); /* a path with no directory: name = path */
    assert_string_equal(k, "x.fits");
    free(k);

    /* values that would climb out or make an odd key are refused */
    assert_null(key_of("{path}", "a/../../etc/passwd", "r", &ret));
    assert_int_equal(ret, -EINVAL);
    assert_null(key_of("{path}", "/abs/x.fits", "r", &ret));
    assert_null(key_of("{run}/{name}", "a/x.fits", "..", &ret));
    assert_null(key_of("{run}/{name}", "a/x.fits", "a//b", &ret));
    assert_null(key_of("{run}/{name}", "a/x.fits", "", &ret));
    assert_null(key_of("{run}/{name}", "a/x.fits", NULL, &ret)); /* an old job without its run */
    assert_null(key_of("{run}/{name}", "a/x.fits", "bad\nrun", &ret));
    assert_null(key_of("{path}", "a/x.fits/", "r", &ret));
}

static void test_check(void **state)
{
    (void)state;
    const char *good[] = {"{path}", "prefix/{path}", "{run}/{id}.fits", "{dataset_type}/{name}", "a.b-{id}"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        char *msg = NULL;
        assert_int_equal(bfs_transfer_template_check(good[i], &msg), 0);
        assert_null(msg);
    }
    const char *bad[] = {"{instrument}/{path}", "{path", "path}", "/{path}", "../{path}", "a/../{path}",
                         "a//{path}", "./{path}", "{run}", "{run}/{dataset_type}", "", "{path}/",
                         "{}", "a\x01/{path}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *msg = NULL;
        assert_int_equal(bfs_transfer_template_check(bad[i], &msg), -EINVAL);
        assert_non_null(msg);
        free(msg);
    }
}

static void test_parse(void **state)
{
    (void)state;
    bfs_transfer_config c;
    char *msg = NULL;
    assert_int_equal(parse("transfer:\n"
                           "  destinations:\n"
                           "    - name: dbb\n"
                           "      uri: http://h/p\n"
                           "      collections: [\"LSSTCam/*\"]\n"
                           "      template: \"summit/{run}/{name}\"\n"
                           "  retention:\n"
                           "    - collections: LSSTCam/raw/*\n"
                           "      dataset_types: [raw]\n"
                           "      age: 30d\n"
                           "    - {collections: [\"*\"], age: 1h}\n"
                           "  retention_interval: 15m\n",
                           &c, &msg),
                     0);
    assert_int_equal(c.retention_interval_ms, 15 * 60000);
    assert_string_equal(c.dests[0].template, "summit/{run}/{name}");
    assert_false(bfs_transfer_uses_instruments(&c));
    assert_true(bfs_transfer_matches(&c.dests[0], "LSSTCam/raw/all", "raw", NULL));
    assert_int_equal(c.n_retention, 2);
    assert_int_equal(c.retention[0].age_ms, 30LL * 86400000);
    assert_ptr_equal(bfs_retention_match(&c, "LSSTCam/raw/all", "raw"), &c.retention[0]);
    assert_ptr_equal(bfs_retention_match(&c, "LSSTCam/raw/all", "bias"), &c.retention[1]); /* the first that matches */
    assert_int_equal(c.retention[1].age_ms, 3600000);
    bfs_transfer_config_free(&c);

    /* instruments: a destination takes only datasets of those instruments */
    assert_int_equal(parse("transfer:\n"
                           "  destinations:\n"
                           "    - {name: aux, uri: http://h/p, collections: [\"*\"], instruments: [LATISS, \"LSST*Cam\"]}\n",
                           &c, &msg),
                     0);
    assert_true(bfs_transfer_uses_instruments(&c));
    assert_true(bfs_transfer_matches(&c.dests[0], "a/run", "raw", "LATISS"));
    assert_true(bfs_transfer_matches(&c.dests[0], "a/run", "raw", "LSSTComCam"));
    assert_false(bfs_transfer_matches(&c.dests[0], "a/run", "raw", "DECam"));
    assert_false(bfs_transfer_matches(&c.dests[0], "a/run", "skyMap", NULL)); /* no instrument in its dataId */
    bfs_transfer_config_free(&c);

    /* no retention: section, no rule; a mount runs none by default */
    assert_int_equal(parse("transfer:\n  concurrency: 2\n", &c, &msg), 0);
    assert_null(bfs_retention_match(&c, "LSSTCam/raw/all", "raw"));
    assert_int_equal(c.retention_interval_ms, 0);
    bfs_transfer_config_free(&c);

    static const struct {
        const char *text, *want;
    } bad[] = {
        {"transfer:\n  destinations:\n    - name: a\n      uri: http://h/\n      collections: x\n"
         "      template: \"{exposure}/{path}\"\n",
         "t.yaml:6: transfer.destinations.template '{exposure}/{path}' has an unknown field {exposure}"},
        {"transfer:\n  destinations:\n    - name: a\n      uri: http://h/\n      collections: x\n"
         "      template: \"../{path}\"\n",
         "t.yaml:6: transfer.destinations.template '../{path}' gives"},
        {"transfer:\n  destinations:\n    - name: a\n      uri: http://h/\n      collections: x\n"
         "      instrument: LATISS\n",
         "t.yaml:6: unknown key 'transfer.destinations.instrument' (a destination takes: name, uri, collections, "
         "dataset_types, instruments, template)"},
        {"transfer:\n  destinations:\n    - name: a\n      uri: http://h/\n      collections: x\n"
         "      instruments: []\n",
         "t.yaml:6: transfer.destinations.instruments must be a glob or a non-empty list of globs"},
        {"transfer:\n  destinations:\n    - name: a\n      uri: http://h/\n      collections: x\n"
         "      instruments: [LATISS]\n      instruments: [LSSTCam]\n",
         "t.yaml:7: transfer.destinations.instruments is given twice (first at line 6)"},
        {"transfer:\n  retention:\n    - {collections: x, age: 1d, age: 2d}\n",
         "t.yaml:3: transfer.retention.age is given twice (first at line 3)"},
        {"transfer:\n  destinations:\n    - {name: a, uri: http://h/, collections: x}\n"
         "  destinations:\n    - {name: b, uri: http://h/, collections: x}\n",
         "t.yaml:5: transfer.destinations is given twice (first at line 3)"},
        {"transfer:\n  retention:\n    - collections: x\n", "t.yaml:3: transfer.retention rules each need"},
        {"transfer:\n  retention:\n    - collections: x\n      age: soon\n", "t.yaml:4: transfer.retention.age must"},
        {"transfer:\n  retention:\n    - collections: x\n      age: 1d\n      colour: red\n",
         "t.yaml:5: unknown key 'transfer.retention.colour'"},
        {"transfer:\n  retention: 30d\n", "t.yaml:2: transfer.retention must be a non-empty list"},
        {"transfer:\n  concurrency: 2\n  retention_interval: 1h\n",
         "t.yaml:3: transfer.retention_interval needs retention: rules"},
        {"transfer:\n  retention:\n    - {collections: x, age: 1d}\n  retention_interval: 500ms\n",
         "t.yaml:4: transfer.retention_interval must be a duration from 1s to 30d, or 0"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        msg = NULL;
        assert_int_equal(parse(bad[i].text, &c, &msg), -EINVAL);
        assert_non_null(msg);
        if (strncmp(msg, bad[i].want, strlen(bad[i].want)))
            fail_msg("case %zu: got '%s', want '%s...'", i, msg, bad[i].want);
        free(msg);
        bfs_transfer_config_free(&c);
    }
}

static void test_job_state(void **state)
{
    (void)state;
    char dir[] = "/tmp/bfs_tcfgXXXXXX";
    assert_non_null(mkdtemp(dir));
    bfs_transfer_config c;
    char *msg = NULL;
    assert_int_equal(parse("transfer:\n  destinations:\n    - {name: dbb, uri: \"http://h/\", collections: \"*\"}\n",
                           &c, &msg),
                     0);
    assert_int_equal(bfs_queue_job_state(dir, ID, "dbb"), BFS_JOB_NONE);
    bfs_transfer_item it = {.dataset_id = ID, .run = "r", .dataset_type = "raw", .rel = "r/x.fits", .size = 1};
    assert_int_equal(bfs_queue_add(dir, &c, 0, &it), 1);
    assert_int_equal(bfs_queue_job_state(dir, ID, "dbb"), BFS_JOB_PENDING);
    /* the job done (as a worker leaves it), then forgotten */
    char *from = bfs_asprintf("%s/.butlerfs/queue/pending/%s.dbb.json", dir, ID);
    char *to = bfs_asprintf("%s/.butlerfs/queue/done/%s.dbb.json", dir, ID);
    assert_int_equal(rename(from, to), 0);
    assert_int_equal(bfs_queue_job_state(dir, ID, "dbb"), BFS_JOB_DONE);
    assert_int_equal(bfs_queue_job_state(dir, ID, "other"), BFS_JOB_NONE);
    assert_int_equal(bfs_queue_job_state(dir, "../x", "dbb"), -EINVAL); /* no name from outside climbs out */
    assert_int_equal(bfs_queue_forget_done(dir, ID, "dbb"), 0);
    assert_int_equal(bfs_queue_job_state(dir, ID, "dbb"), BFS_JOB_NONE);
    assert_int_equal(bfs_queue_forget_done(dir, ID, "dbb"), 0); /* none: fine */
    free(from);
    free(to);
    bfs_transfer_config_free(&c);
    char *cmd = bfs_asprintf("rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expand),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_job_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
