/*
 * db_sqlite_stub.c - TEMPORARY (issue 13, branch pgengine): db.c refers to
 * db_sqlite_ops, whose engine (registry/db_sqlite.c) is being written on
 * another branch.  test_db_pg links this zeroed table instead; it never
 * opens a DB_SQLITE engine.  Delete this file when db_sqlite.c lands.
 */
#include "db_i.h"

const struct db_ops db_sqlite_ops = {0};
