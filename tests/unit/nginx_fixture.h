/*
 * nginx_fixture.h - start a throw-away nginx (tests/integration/nginx.sh)
 * from a C test.  Header-only: include it from one test file.
 *
 * The server serves docroot at /data/ (and the fault-injection locations
 * nginx.sh documents) on 127.0.0.1; a watchdog stops it when this process
 * dies, since a crashed C test cannot run a shell trap.  srcfile is the
 * caller's __FILE__ (nginx.sh is found next to it); tag names the info file
 * in tmpdir.  0 and *pid, *port on success; -1 (with a message) otherwise.
 */
#ifndef BFS_TEST_NGINX_FIXTURE_H
#define BFS_TEST_NGINX_FIXTURE_H

#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

static int bfs_test_nginx_start(const char *srcfile, const char *tmpdir, const char *docroot, const char *tag,
                                pid_t *pid, int *port)
{
    char src[512], script[600], info[600], pidbuf[32];
    snprintf(src, sizeof src, "%s", srcfile);
    snprintf(script, sizeof script, "%s/../integration/nginx.sh", dirname(src));
    snprintf(info, sizeof info, "%s/nginx-%s.info", tmpdir, tag);
    snprintf(pidbuf, sizeof pidbuf, "%d", (int)getpid());
    setenv("T_NGINX_SH", script, 1);
    setenv("T_DOCROOT", docroot, 1);
    setenv("T_INFO", info, 1);
    setenv("NGINX_OWNER_PID", pidbuf, 1);
    int rc = system("bash -c '. \"$T_NGINX_SH\" && nginx_start \"$T_DOCROOT\" && "
                    "echo \"$NGINX_PORT $NGINX_PID\" > \"$T_INFO\"'");
    FILE *f = fopen(info, "r");
    int p = 0, n = 0;
    if (rc != 0 || !f || fscanf(f, "%d %d", &p, &n) != 2) {
        fprintf(stderr, "could not start nginx (rc %d)\n", rc);
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    *pid = n;
    *port = p;
    return 0;
}

/* Stop the server started above (TERM, then KILL after 5 s); *pid becomes 0. */
static void bfs_test_nginx_stop(pid_t *pid)
{
    if (*pid <= 0)
        return;
    kill(*pid, SIGTERM);
    for (int i = 0; i < 50 && kill(*pid, 0) == 0; i++)
        usleep(100000);
    kill(*pid, SIGKILL);
    *pid = 0;
}

/* Remove a test's temp dir, unless BFS_TEST_KEEP is set (for debugging). */
static void bfs_test_remove_tmpdir(const char *tmpdir)
{
    if (getenv("BFS_TEST_KEEP")) {
        fprintf(stderr, "kept %s\n", tmpdir);
        return;
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

#endif
