#!/usr/bin/env bash
# test_pg_randomkill.sh - test_ingest_randomkill.sh with the registry in
# PostgreSQL behind PgBouncer: kill -9 of the daemon at random moments of a
# write or an ingest, then a remount, leaves nothing half-done.
BFS_RK_PG=1 BFS_KILL_ROUNDS=${BFS_KILL_ROUNDS:-12} exec bash "$(dirname "$0")/test_ingest_randomkill.sh"
