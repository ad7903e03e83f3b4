/*
 * cli.h - the subcommands of the butlerfs program (fs/main.c dispatches).
 * Each returns the process exit status.
 */
#ifndef BFS_CLI_H
#define BFS_CLI_H

#include <jansson.h>
#include <stdbool.h>

int bfs_cmd_mount(int argc, char **argv);
int bfs_cmd_init(int argc, char **argv);
int bfs_cmd_demo(int argc, char **argv, const char *self);
int bfs_cmd_synth(int argc, char **argv);
int bfs_cmd_prefetch(int argc, char **argv);
int bfs_cmd_cache(int argc, char **argv);
int bfs_cmd_status(int argc, char **argv);
/* The status objects of this user's running mounts (those named by
 * wanted[], when nwanted > 0; found[] marks the ones seen), as
 * `butlerfs status --json` prints them; NULL when out of memory. */
json_t *bfs_status_running(char **wanted, int nwanted, bool *found);
/* The status object (one reference) of this user's running writable (-o
 * rw) mount of the repository repo (real paths compared), or NULL when none
 * runs.  repo NULL: of the one writable mount running; when none or several
 * run, NULL after a message on stderr that starts "butlerfs: CMD: " and
 * lists them. */
json_t *bfs_status_rw_mount(const char *repo, const char *cmd);
int bfs_cmd_quarantine(int argc, char **argv);
/* Print o (its reference taken; NULL: out of memory) as indented JSON on
 * stdout, as every --json does: 0, or 1 when it could not be made. */
int bfs_print_json(json_t *o);
int bfs_cmd_queue(int argc, char **argv);
int bfs_cmd_catchup(int argc, char **argv);
int bfs_cmd_retention(int argc, char **argv);
int bfs_cmd_export(int argc, char **argv);
int bfs_cmd_copy_registry(int argc, char **argv);

/* Check a mountpoint before mounting: exists, is a directory, is empty and
 * is not a dead FUSE mount.  Prints one message and returns false if not. */
_Bool bfs_check_mountpoint(const char *mnt);

/* 1 when path is a directory holding nothing but "." and "..", 0 when it
 * holds more, -errno when it cannot be listed (-ENOENT: missing). */
int bfs_dir_empty(const char *path);

#endif
