#!/usr/bin/env bash
# test_node_cap.sh - the node cap (-o max_nodes): a walk over a repository
# much larger than the cap keeps the daemon's node table near the cap, and
# everything still lists, stats and reads the same after its nodes were
# handed back to the kernel (docs/architecture.md, "the node cap").
#
# Checks: find through a mount with max_nodes=150 lists exactly what an
# uncapped mount lists; the status file shows the cap, invalidations, and a
# live node count near the cap after the walk; a second find and a stat of
# every file give the same names and sizes; a file held open through the
# walk stays readable (an open file is never handed back); no error lines,
# no libfuse complaints about notifications, no sanitizer report.
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
T=$BFS_TMP
CAP=100
"$BFS_BIN" synth "$T/repo" --exposures 12 --detectors 40 --payload 64 >/dev/null 2>&1 || { fail "synth"; finish; }
mkdir -p "$T/ref" "$T/mnt"
TREE=LSSTCam/raw/all

listing() { (cd "$1" && find "$TREE" | sort); }
sizes() { (cd "$1" && find "$TREE" -type f -print0 | sort -z | xargs -0 stat -c '%n %s'); }
nodes() { # FIELD: from the last daemon's status file
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nodes"][sys.argv[2]])' \
        "$XDG_RUNTIME_DIR/butlerfs/mount.$BFS_PID.json" "$1"
}

# the reference: an uncapped mount
mount_repo "$T/repo" "$T/ref" max_nodes=0 || finish
listing "$T/ref" >"$T/ref.list"
sizes "$T/ref" >"$T/ref.sizes"
held=$(sed -n 5p "$T/ref.sizes" | cut -d' ' -f1)
cp "$T/ref/$held" "$T/held.bytes"
sleep 2.5
expect "an uncapped mount reports max_nodes 0" test "$(nodes max_nodes)" = 0
expect "... and keeps every node it handed out ($(nodes live) of $(wc -l <"$T/ref.list") entries)" \
    test "$(nodes live)" -ge "$(wc -l <"$T/ref.list")"
check_log
expect "the repository is larger than the cap many times over" test "$(wc -l <"$T/ref.list")" -gt $((CAP * 8))

mount_repo "$T/repo" "$T/mnt" max_nodes=$CAP || finish
exec 3<"$T/mnt/$held"
listing "$T/mnt" >"$T/mnt.list"
expect "find through a capped mount lists what the uncapped one does" cmp -s "$T/ref.list" "$T/mnt.list"
sleep 2.5
live=$(nodes live)
expect "the status file shows the cap" test "$(nodes max_nodes)" = $CAP
expect "entries were handed back to the kernel ($(nodes invalidations) invalidations)" test "$(nodes invalidations)" -gt 0
expect "the node table stays near the cap after the walk ($live live, cap $CAP)" test "$live" -le $((CAP + CAP / 2))
sizes "$T/mnt" >"$T/mnt.sizes"
expect "after eviction every file stats with the same size" cmp -s "$T/ref.sizes" "$T/mnt.sizes"
listing "$T/mnt" >"$T/mnt.list2"
expect "a second find lists the same" cmp -s "$T/ref.list" "$T/mnt.list2"
expect "a file held open through the walks is still readable" cmp -s <(cat <&3) "$T/held.bytes"
exec 3<&-
expect "and so is a file opened afresh" cmp -s "$T/mnt/$held" "$T/held.bytes"
sleep 2.5
expect "the node table is still near the cap ($(nodes live) live)" test "$(nodes live)" -le $((CAP + CAP / 2))
check_log
expect "libfuse reported no failed notification" bash -c "! grep -q 'writing device' '$BFS_ERR' '$BFS_LOG'"
expect_no_sanitizer "$T"/daemon.*.stderr
finish
