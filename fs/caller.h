/*
 * caller.h - what the process behind a FUSE request is doing, read from
 * /proc/PID/stat (Linux).
 *
 * A writer killed mid-file (SIGKILL, SIGTERM's default action, a crash) does
 * not close its descriptors itself: the kernel closes them while the process
 * exits, and each close sends FLUSH like a close(2) would.  The process is
 * still there while it waits for the reply, marked as exiting (PF_EXITING in
 * its flags) with its exit status set, which tells a kill from an exit(3)
 * that left its files open for the kernel to close.
 */
#ifndef BFS_CALLER_H
#define BFS_CALLER_H

#include <sys/types.h>

/* The signal that is ending process (or thread) pid, when it is exiting
 * because of one, else 0.  0 too when pid is 0 (not in this pid namespace),
 * when its /proc entry cannot be read, and when the exit status is not ours
 * to see (the kernel shows it only to a reader allowed to ptrace the
 * process: another user's writer, under allow_other). */
int bfs_caller_killed_by(pid_t pid);

#endif
