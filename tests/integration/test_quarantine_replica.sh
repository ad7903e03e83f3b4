#!/usr/bin/env bash
# test_quarantine_replica.sh - `butlerfs quarantine retry` of a replica
# (docs/transfer.md, "Replica ingest") whose sidecar never came: the
# replica goes back into MNT/.replicas, where it waits for its sidecar
# again, and the pair is ingested when the sidecar is written.
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
replica_fixture 1
printf 'ingest:\n  replica_wait: 2s\n' >"$T/cfg.yaml"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg.yaml" || finish
R=$T/mnt/.replicas
f=${FILES[0]}
name=$(basename "$f")
expect "a replica alone is accepted (it waits for its sidecar)" cp "$f" "$R/"
sleep 3
ls "$R" >/dev/null # a listing lets the mount see what has waited too long
quarantined() { "$BFS_BIN" quarantine --json "$T/repo" | grep -q "\"path\": \".replicas/$name\""; }
for _ in $(seq 50); do quarantined && break; sleep 0.1; done
expect "after replica_wait it is quarantined, at its path in .replicas" quarantined
id=$("$BFS_BIN" quarantine --json "$T/repo" | sed -n 's/^ *"id": "\([0-9a-f]*\)",$/\1/p' | head -1)
"$BFS_BIN" quarantine retry "$T/repo" "$id" >"$T/retry.txt" 2>&1
expect "its retry writes it back into .replicas" grep -q "written (the pair is ingested when both are in) as .replicas/$name" "$T/retry.txt"
expect "... where it is listed again" test -e "$R/$name"
expect "... and its entry is gone" test -z "$(find "$T/repo/.butlerfs/quarantine" -name "$id.*")"
expect "its sidecar written now pairs with it" cp "$f.butler.json" "$R/"
expect "... and the dataset is registered" test "$(q "$T/repo" "SELECT count(*) FROM dataset")" = 1
unmount
expect_no_sanitizer
finish
