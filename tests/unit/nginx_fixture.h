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
#include <sys/wait.h>
#include <unistd.h>

/* Run "bash -c '. nginx.sh && CMD'" (nginx.sh next to srcfile); its exit status, -1 if none. */
static int bfs_test_nginx_sh(const char *srcfile, const char *cmd)
{
    char src[512], script[600], line[1024];
    snprintf(src, sizeof src, "%s", srcfile);
    snprintf(script, sizeof script, "%s/../integration/nginx.sh", dirname(src));
    setenv("T_NGINX_SH", script, 1);
    snprintf(line, sizeof line, "bash -c '. \"$T_NGINX_SH\" && %s'", cmd);
    int rc = system(line);
    return rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* A throw-away CA and server certificates in dir (nginx_make_certs in
 * nginx.sh): dir/ca.pem signs dir/server.pem (IP:127.0.0.1, DNS:localhost)
 * and dir/localhost.pem (DNS:localhost only).  0, 77 when openssl is not
 * installed, else -1. */
static inline int bfs_test_make_certs(const char *srcfile, const char *dir)
{
    setenv("T_CERTS", dir, 1);
    int rc = bfs_test_nginx_sh(srcfile, "nginx_make_certs \"$T_CERTS\"");
    return rc == 0 || rc == 77 ? rc : -1;
}

/* As bfs_test_nginx_start, and with tlsdir (from bfs_test_make_certs) not
 * NULL the same locations over HTTPS too: https_port[0] presents
 * server.pem, https_port[1] localhost.pem.  https_port may be NULL when
 * tlsdir is. */
static int bfs_test_nginx_start_tls(const char *srcfile, const char *tmpdir, const char *docroot,
                                    const char *tag, const char *tlsdir, pid_t *pid, int *port,
                                    int https_port[2])
{
    char info[600], pidbuf[32];
    snprintf(info, sizeof info, "%s/nginx-%s.info", tmpdir, tag);
    snprintf(pidbuf, sizeof pidbuf, "%d", (int)getpid());
    setenv("T_DOCROOT", docroot, 1);
    setenv("T_INFO", info, 1);
    setenv("NGINX_OWNER_PID", pidbuf, 1);
    if (tlsdir)
        setenv("NGINX_TLS_DIR", tlsdir, 1);
    else
        unsetenv("NGINX_TLS_DIR");
    int rc = bfs_test_nginx_sh(srcfile, "nginx_start \"$T_DOCROOT\" && echo \"$NGINX_PORT $NGINX_PID "
                                        "${NGINX_HTTPS_PORT:-0} ${NGINX_HTTPS_NAME_PORT:-0}\" > \"$T_INFO\"");
    FILE *f = fopen(info, "r");
    int p = 0, n = 0, tp = 0, tn = 0;
    if (rc != 0 || !f || fscanf(f, "%d %d %d %d", &p, &n, &tp, &tn) != 4 || (tlsdir && (!tp || !tn))) {
        fprintf(stderr, "could not start nginx (rc %d)\n", rc);
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    *pid = n;
    *port = p;
    if (https_port) {
        https_port[0] = tp;
        https_port[1] = tn;
    }
    return 0;
}

static inline int bfs_test_nginx_start(const char *srcfile, const char *tmpdir, const char *docroot, const char *tag,
                                       pid_t *pid, int *port)
{
    return bfs_test_nginx_start_tls(srcfile, tmpdir, docroot, tag, NULL, pid, port, NULL);
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
