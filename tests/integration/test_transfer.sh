#!/usr/bin/env bash
# test_transfer.sh - the transfer queue (docs/transfer.md) against nginx
# WebDAV on loopback: every raw ingested through an -o rw mount is uploaded
# (PUT to a temporary name, MOVE), verified by reading it back, and counted
# done; the objects equal the datastore files and no temporary object is
# left.  The destination down (nginx stopped with SIGSTOP): writes to the
# mount still succeed at once, the queue grows; back up: it drains.  kill -9
# of the daemon with jobs queued, remount: they are done, none twice.  A
# destination that refuses everything: jobs are parked with the reason;
# `butlerfs queue retry` and `drop-parked`.  catchup applies a destination's
# instruments rule.  An upload whose read-back
# differs (a proxy flipping bytes) is never counted done.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/nginx.sh"
. "$(dirname "$0")/faultproxy.sh"
skip_unless_fuse
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || skip "nginx is not installed"
command -v python3 >/dev/null || skip "python3 not installed"
trap 'kill -CONT "${NGINX_PID:-0}" 2>/dev/null; faultproxy_stop; nginx_stop; bfs_cleanup' EXIT
T=$BFS_TMP
mkdir -p "$T/www/archive" "$T/mnt"
nginx_start "$T/www" || skip "nginx would not start"
"$BFS_BIN" synth "$T/src" --exposures 5 --detectors 3 --fits >/dev/null 2>&1 || fail "synth"
mapfile -t RAWS < <(find "$T/src/LSSTCam/raw/all" -name '*.fits' | sort)
"$BFS_BIN" init "$T/repo" >/dev/null 2>&1 || fail "butlerfs init"
cat >"$T/bfs.yaml" <<YAML
ingest:
  webhook: $NGINX_URL/hook/events
transfer:
  destinations:
    - name: dbb
      uri: $NGINX_URL/data/archive/
      collections: ["LSSTCam/*"]
  concurrency: 2
  request_timeout: 2s
  backoff_max: 2s
  max_attempts: 100
YAML
qjson() { "$BFS_BIN" queue --json "$T/repo"; }
qfield() { qjson | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
# wait_done N [SECONDS]: until N jobs are done and none pending or in flight
wait_done() {
    local i
    for i in $(seq $((${2:-30} * 5))); do
        [ "$(qjson | python3 -c 'import json,sys; q = json.load(sys.stdin); print(q["done"], q["pending"] + q["inflight"])')" = "$1 0" ] && return 0
        sleep 0.2
    done
    qjson
    return 1
}
same_objects() { # every datastore raw is in the archive, byte for byte; no temporary objects
    local f n=0
    while read -r f; do
        rel=${f#"$T/repo/"}
        cmp -s "$f" "$T/www/archive/$rel" || { echo "differs or missing: $rel"; return 1; }
        n=$((n + 1))
    done < <(find "$T/repo/LSSTCam" -type f -name '*.fits')
    [ "$n" -ge 1 ] && ! find "$T/www/archive" -name '*.butlerfs-*' | grep -q .
}

mount_repo "$T/repo" "$T/mnt" "rw,config=$T/bfs.yaml" || finish
mkdir -p "$T/mnt/LSSTCam/raw/all"
for i in 0 1 2; do cp "${RAWS[$i]}" "$T/mnt/LSSTCam/raw/all/" || fail "cp $i"; done
expect "three ingested raws are uploaded and verified (3 jobs done)" wait_done 3
expect "... the archive holds them byte for byte, with no temporary object left" same_objects
expect "... under <uri><path relative to the datastore root>" \
    test -n "$(find "$T/www/archive/LSSTCam/raw/all/raw" -name 'raw_LSSTCam_*.fits' | head -1)"
expect "the daemon logs one line per completed transfer" test "$(grep -c '"transfer":"done"' "$BFS_LOG")" = 3
expect "... and appends one event line each to the events file" \
    test "$(grep -c '"transfer":"done"' "$T/repo/.butlerfs/events.jsonl")" = 3
nginx_log_settled
expect "each event line was POSTed to the webhook (3)" \
    bash -c "test \$(grep -c 'POST /hook/events' '$NGINX_DIR/access.log') = 3"

# the destination goes down: writes still succeed at once, the queue grows
kill -STOP "$NGINX_PID"
t0=$(date +%s)
for i in 3 4 5 6; do cp "${RAWS[$i]}" "$T/mnt/LSSTCam/raw/all/" || fail "cp $i while the destination is down"; done
secs=$(($(date +%s) - t0))
expect "with the destination down, 4 writes still succeed at once (${secs} s)" test "$secs" -le 5
sleep 3
expect "... and the queue holds them (pending or in flight: 4)" \
    test "$(qjson | python3 -c 'import json,sys; q = json.load(sys.stdin); print(q["pending"] + q["inflight"])')" = 4
"$BFS_BIN" queue "$T/repo" >"$T/q.txt"
cat "$T/q.txt"
expect "butlerfs queue says it in words" grep -q "^  pending      [0-9]" "$T/q.txt"
sleep 2 # the status file is rewritten every 2 s
expect "butlerfs status counts the queue" bash -c "'$BFS_BIN' status '$T/mnt' | grep -Eq '^  transfer     [0-9]+ pending .*3 done, 0 parked'"
kill -CONT "$NGINX_PID"
expect "the destination back: the queue drains (7 done)" wait_done 7 60
expect "... byte for byte" same_objects

# kill -9 with jobs queued (destination down again), then remount
kill -STOP "$NGINX_PID"
for i in 7 8; do cp "${RAWS[$i]}" "$T/mnt/LSSTCam/raw/all/" || fail "cp $i"; done
sleep 1
kill -9 "$BFS_PID"
sleep 0.5
fusermount3 -u "$T/mnt" 2>/dev/null || true
kill -CONT "$NGINX_PID"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/bfs.yaml" || finish
expect "after kill -9 and a remount, the queued jobs are done (9)" wait_done 9 60
expect "... each object once, byte for byte, no temporary object" same_objects
expect "... and nothing is left in flight" test -z "$(ls "$T/repo/.butlerfs/queue/inflight")"
unmount

# catch-up: an object lost at the destination (its job long done), and
# datasets ingested by a mount without a transfer: section are queued by
# `butlerfs catchup`, once, and drained by the next mount
rel=$(find "$T/www/archive" -type f -name '*.fits' | sort | head -1)
rm "$rel"
printf 'ingest: {}\n' >"$T/none.yaml"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/none.yaml" || finish
cp "${RAWS[12]}" "$T/mnt/LSSTCam/raw/all/" || fail "cp 12 without a transfer section"
unmount
lost=${rel#"$T/www/archive/"}
new_rel=$(cd "$T/repo" && find LSSTCam -name "$(basename "${RAWS[12]}" .fits)*" -type f | head -1)
log_mark=$(wc -l <"$NGINX_DIR/access.log")
"$BFS_BIN" catchup "$T/repo" --collection 'LSSTCam/*' --config "$T/bfs.yaml" >"$T/catchup.txt" 2>"$T/catchup.err"
cat "$T/catchup.txt"
nginx_log_settled
tail -n +"$((log_mark + 1))" "$NGINX_DIR/access.log" >"$T/catchup.access"
expect "catchup finds the lost object and the never-queued dataset (2 queued)" grep -q "^  queued       2" "$T/catchup.txt"
expect "... and the rest present (8)" grep -q "^  present      8" "$T/catchup.txt"
expect "... with a summary line" grep -Eq "^checked 10 files in [0-9]+ directories \([0-9]+ requests\): 2 missing, queued 2, 0 size mismatches" "$T/catchup.txt"
expect "... by listing directories (PROPFIND), not one HEAD per object" \
    bash -c "grep -q '\"PROPFIND /data/archive/' '$T/catchup.access' && ! grep -q '\"HEAD ' '$T/catchup.access'"
expect "... in fewer requests than files ($(wc -l <"$T/catchup.access") for 10)" test "$(wc -l <"$T/catchup.access")" -lt 10
expect "... and queued exactly the missing ones" bash -c "'$BFS_BIN' queue --json '$T/repo' | python3 -c '
import json, sys
q = json.load(sys.stdin)
print(q)' >/dev/null && ls '$T/repo/.butlerfs/queue/pending' | wc -l | grep -qx 2"
expect "... (the lost object and the new dataset)" bash -c "cat '$T/repo/.butlerfs/queue/pending/'* | grep -qF '$lost' && cat '$T/repo/.butlerfs/queue/pending/'* | grep -qF '$new_rel'"
"$BFS_BIN" catchup "$T/repo" --collection 'LSSTCam/*' --config "$T/bfs.yaml" >"$T/catchup2.txt" 2>/dev/null
expect "a second catchup queues nothing twice" grep -q "^  queued before 2" "$T/catchup2.txt"
expect "... (queued 0)" grep -q "^  queued       0" "$T/catchup2.txt"
# catchup applies a destination's instruments rule (each dataset's instrument
# read from the registry): LATISS takes none of these LSSTCam raws, LSSTCam all
for inst in LATISS LSSTCam; do
    sed "s|^      collections: .*|&\\n      instruments: [$inst]|" "$T/bfs.yaml" >"$T/inst-$inst.yaml"
    "$BFS_BIN" catchup "$T/repo" --collection 'LSSTCam/*' --config "$T/inst-$inst.yaml" \
        >"$T/catchup-$inst.txt" 2>"$T/catchup-$inst.err"
done
expect "catchup with a destination for LATISS only checks none of the LSSTCam raws" \
    grep -Eq "^checked 0 files" "$T/catchup-LATISS.txt"
expect "... and one for LSSTCam checks all 10 (2 queued before, 0 queued)" \
    bash -c "grep -Eq '^checked 10 files' '$T/catchup-LSSTCam.txt' && grep -q '^  queued before 2' '$T/catchup-LSSTCam.txt' &&
             grep -q '^  queued       0' '$T/catchup-LSSTCam.txt'"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/bfs.yaml" || finish
expect "the next mount drains them: every ingested file is in the archive" wait_done 10 60
expect "... byte for byte" same_objects
unmount

# --check-sizes: an object cut short at the destination is found and queued
# (without the option it is only reported); a server without PROPFIND
# (nginx's /norange/ location serves the same files read-only) is checked
# with one HEAD per object, and catchup says so
short=$(find "$T/www/archive" -type f -name '*.fits' | sort | tail -1)
truncate -s 1000 "$short"
"$BFS_BIN" catchup "$T/repo" --collection 'LSSTCam/*' --config "$T/bfs.yaml" >"$T/catchup3.txt" 2>/dev/null
expect "without --check-sizes a truncated object is reported, not queued" \
    bash -c "grep -q '^  size differs: .* is 1000 bytes' '$T/catchup3.txt' && grep -q '^  queued       0' '$T/catchup3.txt'"
"$BFS_BIN" catchup "$T/repo" --collection 'LSSTCam/*' --config "$T/bfs.yaml" --check-sizes >"$T/catchup4.txt" 2>/dev/null
cat "$T/catchup4.txt"
expect "catchup --check-sizes queues the truncated object" \
    grep -Eq "^checked 10 files in .*: 0 missing, queued 1, 1 size mismatches" "$T/catchup4.txt"
"$BFS_BIN" catchup "$T/repo" --collection 'LSSTCam/*' --config "$T/bfs.yaml" --check-sizes >"$T/catchup5.txt" 2>/dev/null
expect "... once (run again: queued before 1)" \
    bash -c "grep -q '^  queued before 1' '$T/catchup5.txt' && grep -q '^  queued       0' '$T/catchup5.txt'"
sed "s|$NGINX_URL/data/archive/|$NGINX_URL/norange/archive/|" "$T/bfs.yaml" >"$T/nodav.yaml"
log_mark=$(wc -l <"$NGINX_DIR/access.log")
"$BFS_BIN" catchup "$T/repo" --collection 'LSSTCam/*' --config "$T/nodav.yaml" --check-sizes >"$T/catchup6.txt" 2>"$T/catchup6.err"
cat "$T/catchup6.err"
nginx_log_settled
expect "a server that refuses PROPFIND: catchup says so once, and uses HEAD" \
    bash -c "test \$(grep -c 'refuses PROPFIND (HTTP 405); checking each object with HEAD' '$T/catchup6.err') = 1 &&
             test \$(tail -n +$((log_mark + 1)) '$NGINX_DIR/access.log' | grep -c '\"HEAD /norange/archive/') = 10"
expect "... with the same verdicts (9 present, the truncated one already queued)" \
    bash -c "grep -q '^  present      9' '$T/catchup6.txt' && grep -q '^  queued before 1' '$T/catchup6.txt'"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/bfs.yaml" || finish
expect "the next mount uploads it again: byte for byte" bash -c "for i in \$(seq 150); do cmp -s '$short' '$T/repo/${short#"$T/www/archive/"}' && exit 0; sleep 0.2; done; exit 1"
unmount

# a destination that refuses everything: parked, then retried, then dropped
cat >"$T/bad.yaml" <<YAML
transfer:
  destinations:
    - {name: nowhere, uri: "$NGINX_URL/fail503/", collections: ["LSSTCam/*"]}
  request_timeout: 2s
  backoff_max: 1s
  max_attempts: 2
YAML
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/bad.yaml" || finish
cp "${RAWS[9]}" "$T/mnt/LSSTCam/raw/all/" || fail "cp 9"
for _ in $(seq 50); do [ "$(qfield parked)" = 1 ] && break; sleep 0.2; done
expect "a job that keeps failing is parked" test "$(qfield parked)" = 1
expect "... with its last error" bash -c "'$BFS_BIN' queue '$T/repo' | grep -q 'parked: .* -> nowhere after 2 attempts: PUT .*: '"
expect "... and one warning line" grep -q '"transfer":"parked"' "$BFS_LOG"
expect "... and an event line with the reason" python3 -c "
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if '\"transfer\":\"parked\"' in l]
assert ev and ev[-1]['status'] == 1 and ev[-1]['error'].startswith('PUT '), ev" "$T/repo/.butlerfs/events.jsonl"
unmount
expect "queue retry puts it back" bash -c "'$BFS_BIN' queue retry '$T/repo' | grep -q '^1 parked job back in the queue'"
expect "... as a pending job" test "$(qfield pending)" = 1
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/bad.yaml" || finish
for _ in $(seq 50); do [ "$(qfield parked)" = 1 ] && break; sleep 0.2; done
unmount
expect "drop-parked deletes it" bash -c "'$BFS_BIN' queue drop-parked '$T/repo' | grep -q '^1 parked job dropped'"
expect "... and the queue is empty" test "$(qfield parked)$(qfield pending)" = 00

# the bandwidth cap: 500 kB/s for one worker, a raw of ~1.1 MB takes >= 1.5 s to upload
sed 's/concurrency: 2/concurrency: 1\n  bandwidth: 500kB/; s/name: dbb/name: capped/; s/request_timeout: 2s/request_timeout: 30s/' "$T/bfs.yaml" >"$T/cap.yaml"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/cap.yaml" || finish
t0=$(date +%s.%N)
cp "${RAWS[11]}" "$T/mnt/LSSTCam/raw/all/" || fail "cp 11"
for _ in $(seq 100); do [ "$(qfield pending)$(qfield inflight)" = 00 ] && break; sleep 0.1; done
secs=$(echo "$(date +%s.%N) - $t0" | bc)
expect "with bandwidth 500kB, a $(stat -c %s "${RAWS[11]}")-byte upload takes at least 1.5 s (${secs} s)" \
    python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 1.5 else 1)" "$secs"
unmount

# a read-back that differs (bytes flipped on the way back) is never counted done
faultproxy_start "$NGINX_URL" --rate 1 --faults flip --seed 3 || fail "the fault proxy did not start"
sed "s|$NGINX_URL/data/archive/|$FAULTPROXY_URL/data/archive2/|; s/max_attempts: 100/max_attempts: 2/" \
    "$T/bfs.yaml" >"$T/flip.yaml"
sed -i 's/name: dbb/name: flipped/' "$T/flip.yaml"
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/flip.yaml" || finish
cp "${RAWS[10]}" "$T/mnt/LSSTCam/raw/all/" || fail "cp 10"
for _ in $(seq 50); do [ "$(qfield parked)" = 1 ] && break; sleep 0.2; done
expect "an upload whose read-back differs is parked, not done" test "$(qfield parked)" = 1
expect "... with a reason naming the difference" bash -c "'$BFS_BIN' queue '$T/repo' | grep -q 'differs\|reading the object back'"
unmount
faultproxy_stop

# an object-name template: the object lands at <uri><template expanded>,
# and catchup looks for it there
cat >"$T/tmpl.yaml" <<YAML
transfer:
  destinations:
    - name: tmpl
      uri: $NGINX_URL/data/templated/
      collections: ["LSSTCam/*"]
      template: "summit/{run}/{id}-{name}"
  request_timeout: 5s
YAML
mount_repo "$T/repo" "$T/mnt" "rw,config=$T/tmpl.yaml" || finish
cp "${RAWS[13]}" "$T/mnt/LSSTCam/raw/all/" || fail "cp 13"
base=$(basename "${RAWS[13]}" .fits)
for _ in $(seq 100); do [ -n "$(find "$T/www/templated" -type f -name "*-raw_*" 2>/dev/null)" ] && break; sleep 0.2; done
for _ in $(seq 50); do [ "$(qfield pending)$(qfield inflight)" = 00 ] && break; sleep 0.2; done
unmount
obj=$(find "$T/www/templated" -type f | head -1)
expect "with template summit/{run}/{id}-{name}, the object lands at summit/LSSTCam/raw/all/<id>-<file name>" \
    bash -c "[[ '${obj#"$T/www/templated/"}' =~ ^summit/LSSTCam/raw/all/[0-9a-f]{32}-raw_LSSTCam_.*\.fits$ ]]"
expect "... one object, and nothing at the plain datastore path" \
    test "$(find "$T/www/templated" -type f | wc -l)$(find "$T/www/templated" -path '*raw/all/raw/*' | wc -l)" = 10
expect "... byte for byte the datastore file" cmp -s "$obj" "$(find "$T/repo/LSSTCam" -type f -name "$(basename "$obj" | cut -c34-)")"
"$BFS_BIN" catchup "$T/repo" --collection 'LSSTCam/*' --config "$T/tmpl.yaml" >"$T/catchup3.txt" 2>/dev/null
cat "$T/catchup3.txt"
expect "catchup looks for objects at their templated keys: the uploaded one is present (1)" \
    grep -q "^  present      1$" "$T/catchup3.txt"
check_log
expect_no_sanitizer
finish
