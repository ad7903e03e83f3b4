#!/usr/bin/env bash
# test_replica_pairing.sh - replica pairing beyond the plain cp of
# test_replica_ingest.sh (docs/transfer.md, "Replica ingest"):
#
# - rsync writes each file as .NAME.XXXXXX, closes it (the seal happens
#   there) and renames it: a pair whose second member arrives that way must
#   still pair once it is renamed (and a sidecar written under a temporary
#   name is a sidecar once renamed), rather than both waiting until
#   ingest.replica_wait quarantines them;
# - the sidecar closed second gets the pair's outcome: when its replica
#   cannot be registered now (here: its transfer job cannot be written, so it
#   stays PLACED for the next mount) that close is an error, and the sidecar
#   is not removed before its replica is registered; the next mount finishes
#   both;
# - the other way round (the sidecar waiting, its replica closed second and
#   stopping short), the sidecar its replica held is let go with it: its
#   name leaves the replica directory with the replica's (on the code
#   before, it stayed listed and held until the next mount, so a replica
#   written again waited for a sidecar that was there), and the next mount
#   finishes both.
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
replica_fixture 5
printf 'ingest:\n  replica_wait: 1h\n' >"$T/cfg.yaml"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cfg.yaml" || finish
R=$T/mnt/.replicas

# the replica first (cp), its sidecar second the way rsync writes it
f=${FILES[0]}
b=$(basename "$f")
cp "$f" "$R/" || fail "cp of a replica"
cp "$f.butler.json" "$R/.$b.butler.json.Ab3dE9" || fail "cp of a sidecar under a temporary name"
mv "$R/.$b.butler.json.Ab3dE9" "$R/$b.butler.json" || fail "rename of the sidecar"
sleep 1
expect "a sidecar written under a temporary name pairs once renamed" \
    test "$(q "$T/repo" "SELECT count(*) FROM dataset")" = 1
# the sidecar first, its replica second the way rsync writes it
f=${FILES[1]}
b=$(basename "$f")
cp "$f.butler.json" "$R/" || fail "cp of a sidecar"
cp "$f" "$R/.$b.Xy12Zq" || fail "cp of a replica under a temporary name"
mv "$R/.$b.Xy12Zq" "$R/$b" || fail "rename of the replica"
sleep 1
expect "a replica written under a temporary name pairs once renamed" \
    test "$(q "$T/repo" "SELECT count(*) FROM dataset")" = 2
# rsync itself, both files of a pair
f=${FILES[2]}
if command -v rsync >/dev/null; then
    rsync "$f" "$f.butler.json" "$R/" || fail "rsync of a pair"
    sleep 1
    expect "rsync of a replica and its sidecar ingests it" \
        test "$(q "$T/repo" "SELECT count(*) FROM dataset")" = 3
fi
unmount

# the sidecar's close when its replica stays PLACED: the transfer job cannot be written
cat >"$T/xfer.yaml" <<YAML
ingest:
  replica_wait: 1h
transfer:
  destinations:
    - {name: nowhere, uri: "http://127.0.0.1:9/x/", collections: ["*"]}
  request_timeout: 1s
YAML
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/xfer.yaml" || finish
f=${FILES[3]}
b=$(basename "$f")
cp "$f" "$R/" || fail "cp of a replica"
Q=$T/repo/.butlerfs/queue
mv "$Q/pending" "$Q/pending.away" && touch "$Q/pending"
before=$(q "$T/repo" "SELECT count(*) FROM dataset")
if cp "$f.butler.json" "$R/" 2>"$T/err.txt"; then
    fail "the sidecar's close returned 0 though its replica is not registered (registry has $(q "$T/repo" "SELECT count(*) FROM dataset") datasets, was $before)"
else
    pass "the sidecar's close is an error when its replica cannot be registered now"
fi
kept=0
for d in "$T"/repo/.butlerfs/spool/*.data; do cmp -s "$d" "$f.butler.json" && kept=1; done
expect "... and the sidecar's bytes stay in the spool for the next mount" test "$kept" = 1
# the sidecar first (waiting), its replica second, stopping short the same way
g=${FILES[4]}
gb=$(basename "$g")
cp "$g.butler.json" "$R/" || fail "cp of a sidecar"
expect "the replica's close is an error when it cannot be registered now" \
    bash -c "! cp '$g' '$R/' 2>/dev/null"
sleep 1.2 # the kernel's entries live 1 s
expect "... and the sidecar it held leaves the replica directory with it" \
    bash -c "! ls '$R' | grep -qxF '$gb.butler.json'"
rm -f "$Q/pending" && mv "$Q/pending.away" "$Q/pending"
unmount
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/xfer.yaml" || finish
expect "the next mount registers both replicas" test "$(q "$T/repo" "SELECT count(*) FROM dataset")" = $((before + 2))
expect "... and finishes their sidecars: nothing of the pairs is left in the spool" \
    bash -c "! grep -l -e '$b' -e '$gb' '$T'/repo/.butlerfs/spool/*.intent 2>/dev/null | grep -q ."
unmount
expect_no_sanitizer
finish
