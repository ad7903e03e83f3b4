/* Unit tests for fs/caller.c: whether a process is being ended by a signal,
 * read from /proc/PID/stat.  A zombie keeps what a process shows while it
 * exits (PF_EXITING, its exit status), so waitid(WNOWAIT) holds each child
 * in that state while it is asked about. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "caller.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* A child named name (a comm with spaces and parentheses, which the parser
 * must read past), held as a zombie after it ends: killed by sig, or, for
 * sig 0, exiting with status 3.  Its pid; the caller reaps it. */
static pid_t ended_child(const char *name, int sig)
{
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t p = fork();
    assert_true(p >= 0);
    if (p == 0) {
        prctl(PR_SET_NAME, name, 0, 0, 0);
        if (sig)
            signal(sig, SIG_DFL); /* cmocka catches SIGSEGV in the parent: not in here */
        close(ready[0]);
        (void)!write(ready[1], "x", 1);
        if (sig == 0)
            _exit(3);
        for (;;)
            pause();
    }
    close(ready[1]);
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    assert_int_equal(bfs_caller_killed_by(p), 0); /* alive (or already exiting with a status) */
    if (sig)
        assert_int_equal(kill(p, sig), 0);
    siginfo_t si;
    assert_int_equal(waitid(P_PID, (id_t)p, &si, WEXITED | WNOWAIT), 0);
    return p;
}

static void test_killed(void **state)
{
    (void)state;
    const int sigs[] = {SIGKILL, SIGTERM, SIGSEGV};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        pid_t p = ended_child("a) b (c", sigs[i]);
        assert_int_equal(bfs_caller_killed_by(p), sigs[i]);
        assert_int_equal(waitpid(p, NULL, 0), p);
    }
}

static void test_not_killed(void **state)
{
    (void)state;
    pid_t p = ended_child("exit) 3", 0);
    assert_int_equal(bfs_caller_killed_by(p), 0); /* exit(3): a status, no signal */
    assert_int_equal(waitpid(p, NULL, 0), p);
    assert_int_equal(bfs_caller_killed_by(p), 0); /* gone */
    assert_int_equal(bfs_caller_killed_by(getpid()), 0);
    assert_int_equal(bfs_caller_killed_by(0), 0); /* not in the daemon's pid namespace */
    assert_int_equal(bfs_caller_killed_by(-1), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_killed),
        cmocka_unit_test(test_not_killed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
