/*
 * sqlshell.h - rows of a SQLite file read with the sqlite3 command-line
 * shell, for unit tests: tests may not include sqlite3.h (only registry/
 * does), so what the registry wrote is checked from the outside.
 *
 * sql_query(db, sql): the shell's output (rows on lines, columns joined by
 * '|', no trailing newline), malloc'd; the SQL goes through a temporary file
 * so any quoting survives.  expect_rows(db, sql, want): that it equals want.
 * Both fail the running cmocka test on any error.  have_program(name):
 * whether a program is on PATH (tests skip what needs one that is not).
 */
#ifndef BFS_TEST_SQLSHELL_H
#define BFS_TEST_SQLSHELL_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline bool have_program(const char *name)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", name);
    return system(cmd) == 0;
}

static inline char *sql_query(const char *db, const char *sql)
{
    char path[] = "/tmp/bfs_sqlXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs(sql, f);
    fclose(f);
    char *cmd;
    assert_true(asprintf(&cmd, "sqlite3 -batch -readonly '%s' < '%s'", db, path) > 0);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char *out = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0)
        fwrite(buf, 1, n, m);
    assert_int_equal(pclose(p), 0);
    fclose(m);
    unlink(path);
    free(cmd);
    while (len && out[len - 1] == '\n')
        out[--len] = '\0';
    return out;
}

static inline void expect_rows(const char *db, const char *sql, const char *want)
{
    char *got = sql_query(db, sql);
    if (strcmp(got, want))
        print_error("query: %s\n got: %s\nwant: %s\n", sql, got, want);
    assert_string_equal(got, want);
    free(got);
}

#endif
