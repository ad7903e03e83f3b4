#!/usr/bin/env bash
# test_status.sh - the status file of a mount and `butlerfs status`.
#
# Checks: a mount of a local repository is listed (text and --json) and its
# files are private; status MNT accepts relative paths and trailing slashes
# and exits 1 for a directory with no mount; a status directory removed
# while mounted is made again; a file that is not a status file is named,
# ignored and (its pid holding no lock) removed; a status directory others
# may enter is not used (status says so); unmounting removes the files.
# (kill -9 and a remote mount's traffic and skipped hosts: test_remote_http.sh)
. "$(dirname "$0")/lib.sh"
skip_unless_fuse
T=$BFS_TMP
SD=$XDG_RUNTIME_DIR/butlerfs
"$BFS_BIN" synth "$T/repo" --exposures 2 --detectors 2 >/dev/null 2>&1 || fail "synth"
mkdir -p "$T/mnt" "$T/mnt2"

status() { "$BFS_BIN" status "$@"; }

mount_repo "$T/repo" "$T/mnt" || finish
sleep 0.3
status >"$T/s.out" 2>&1
expect "status lists the mount of a local repository" \
    bash -c "grep -q '^$T/mnt: repository $T/repo (pid $BFS_PID, up ' '$T/s.out' &&
             grep -q 'remote data  none read yet' '$T/s.out'"
expect "its status file and lock are private" \
    test "$(stat -c %a "$SD/mount.$BFS_PID.json") $(stat -c %a "$SD/mount.$BFS_PID.lock") $(stat -c %a "$SD")" = "600 600 700"
(cd "$T" && "$BFS_BIN" status --json mnt/) >"$T/s.json"
expect "status --json with a relative path and a trailing slash gives that mount" python3 - "$T/s.json" "$T/mnt" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert len(s) == 1 and s[0]["version"] == 1 and s[0]["mountpoint"] == sys.argv[2], s
assert s[0]["fetch"]["bytes_from_servers"] == 0 and s[0]["skipped"] == [], s
PY
status "$T/repo" >/dev/null 2>&1
expect "status of a directory with no mount exits 1" test $? -eq 1

# the status directory removed while mounted: made again at the next write
rm -rf "$SD"
sleep 2.5
expect "a removed status directory is made again, with the mount's file" test -s "$SD/mount.$BFS_PID.json"
expect "... and status lists the mount again" bash -c "'$BFS_BIN' status '$T/mnt' | grep -q '^$T/mnt: '"

# junk in the status directory
printf 'not json' >"$SD/mount.999999999.json"
status >"$T/s.out" 2>&1
expect "a file that is not a status file is named and ignored, the mount still listed" \
    bash -c "grep -q 'mount.999999999.json is not a status file' '$T/s.out' && grep -q '^$T/mnt: ' '$T/s.out'"
expect "... and removed (no daemon holds its lock)" test ! -e "$SD/mount.999999999.json"

# a second mount while the status directory is one others may enter: not used
unmount
chmod 777 "$SD"
mount_repo "$T/repo" "$T/mnt2" || finish
sleep 0.3
status >"$T/s.out" 2>&1
expect "status will not read a status directory others may enter, and says why" \
    grep -q "not reading $SD: .*others may enter it" "$T/s.out"
expect "... and the daemon wrote nothing there" test -z "$(ls "$SD")"
unmount
chmod 700 "$SD"
expect "unmounting removed the status files" test -z "$(ls -A "$SD")"
expect_no_sanitizer "$T"/daemon.*.stderr
finish
