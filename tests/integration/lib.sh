# shellcheck shell=bash
# lib.sh - helpers sourced by tests/integration/test_*.sh.
#
# Environment (set by ctest, see tests/CMakeLists.txt):
#   BFS_BIN     the butlerfs binary
#   BFS_SHARED  the ../shared folder (fixtures)
#   BFS_SRC     the source tree
#
# Sourcing this file makes a temp dir ($BFS_TMP) and installs a trap that,
# on any exit (success, failure, set -e, signals), unmounts every mount made
# with mount_repo (fusermount3 -u, then -uz when busy), kills the daemons
# and removes the temp dir.  Scripts call `finish` at the end: it prints
# "N passed, N failed" and exits non-zero when anything failed.

set -u
set -o pipefail

BFS_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${BFS_SRC:=$(cd "$BFS_LIB_DIR/../.." && pwd)}"
: "${BFS_SHARED:=$BFS_SRC/../shared}"
: "${BFS_BIN:=$BFS_SRC/build/fs/butlerfs}"

BFS_PASSED=0
BFS_FAILED=0
BFS_MOUNTS=()   # mountpoints made by mount_repo, still to unmount
BFS_PIDS=()     # daemons started by mount_repo
BFS_NMOUNT=0
BFS_PID=""      # the last daemon started
BFS_LOG=""      # its log file (-o log=)
BFS_ERR=""      # its stderr (sanitizer reports go here)

BFS_TMP=$(mktemp -d "${TMPDIR:-/tmp}/bfs-test.XXXXXX") || { echo "cannot make a temp dir" >&2; exit 1; }
# the daemons' status files (butlerfs status) stay in the test's own dir
export XDG_RUNTIME_DIR=$BFS_TMP/run
mkdir -m 700 "$XDG_RUNTIME_DIR"

bfs_is_mounted()
{
    mountpoint -q -- "$1" 2>/dev/null && return 0
    case $(stat -f -c %T -- "$1" 2>/dev/null) in
        fuse*) return 0 ;;
    esac
    return 1
}

bfs_cleanup()
{
    local m p
    for m in "${BFS_MOUNTS[@]}"; do
        bfs_is_mounted "$m" || continue
        for _ in 1 2 3 4 5; do
            fusermount3 -u -- "$m" 2>/dev/null && break
            sleep 0.2
        done
        bfs_is_mounted "$m" && fusermount3 -uz -- "$m" 2>/dev/null
    done
    for p in "${BFS_PIDS[@]}"; do
        kill "$p" 2>/dev/null || continue
        for _ in $(seq 20); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null
    done
    # the temp dir may hold files made read-only by a test
    chmod -R u+rwX -- "$BFS_TMP" 2>/dev/null
    rm -rf -- "$BFS_TMP"
}

trap 'rc=$?; trap - EXIT; bfs_cleanup; exit $rc' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

fail()
{
    BFS_FAILED=$((BFS_FAILED + 1))
    echo "FAIL: $*" >&2
    return 0
}

pass()
{
    BFS_PASSED=$((BFS_PASSED + 1))
    echo "ok: $*"
}

# expect MESSAGE CMD [ARGS...]: pass when the command succeeds, else fail.
expect()
{
    local msg=$1
    shift
    if "$@"; then pass "$msg"; else fail "$msg"; fi
}

finish()
{
    echo "$BFS_PASSED passed, $BFS_FAILED failed"
    [ "$BFS_FAILED" -eq 0 ] && exit 0
    exit 1
}

skip()
{
    echo "SKIP: $*"
    exit 77
}

# Skip (77) only when FUSE cannot work here at all.
# skip_unless_hdr2fits: H2F is the test tool that builds FITS raws from
# header dumps (tests/tools/hdr2fits.c), and sqlite3 is there to check rows
skip_unless_hdr2fits()
{
    command -v sqlite3 >/dev/null || skip "sqlite3 CLI not installed"
    H2F=${BFS_HDR2FITS:-}
    [ -x "$H2F" ] || skip "hdr2fits was not built"
}

skip_unless_fuse()
{
    [ -e /dev/fuse ] || skip "no /dev/fuse"
    command -v fusermount3 >/dev/null 2>&1 || skip "fusermount3 is not installed"
    if [ ! -x "$BFS_BIN" ]; then
        echo "FAIL: BFS_BIN=$BFS_BIN is not an executable" >&2
        exit 1
    fi
}

# mount_repo REPO MNT [extra -o options]: start the daemon in the foreground
# (in the background of this shell), wait up to 10 s for the mount and then
# until it answers a listing.  Sets
# BFS_PID, BFS_LOG, BFS_ERR.  Returns non-zero (after fail) when it does not
# come up.
mount_repo()
{
    local repo=$1 mnt=$2 opts=""
    [ $# -ge 3 ] && opts=",$3"
    BFS_NMOUNT=$((BFS_NMOUNT + 1))
    BFS_LOG=$BFS_TMP/daemon.$BFS_NMOUNT.log
    BFS_ERR=$BFS_TMP/daemon.$BFS_NMOUNT.stderr
    : >"$BFS_LOG"
    BFS_MOUNTS+=("$mnt")
    "$BFS_BIN" mount "$repo" "$mnt" -f -o "log=$BFS_LOG$opts" </dev/null >"$BFS_ERR" 2>&1 &
    BFS_PID=$!
    BFS_PIDS+=("$BFS_PID")
    for _ in $(seq 100); do
        if bfs_is_mounted "$mnt"; then
            # the mount appears before the daemon serves (a rw mount first
            # finishes what an earlier daemon left): a listing waits for that,
            # so a test that reads the registry directly sees the result
            timeout 120 ls -a -- "$mnt" >/dev/null 2>&1
            return 0
        fi
        if ! kill -0 "$BFS_PID" 2>/dev/null; then
            fail "mount of $repo on $mnt: the daemon exited before mounting"
            bfs_show_log
            return 1
        fi
        sleep 0.1
    done
    fail "mount of $repo on $mnt did not appear within 10 s"
    bfs_show_log
    return 1
}

# shellcheck disable=SC2120
# unmount [MNT]: unmount (default: the last mount) and wait for the daemon
# to exit; fails the test when it does not exit cleanly.
unmount()
{
    local mnt=${1:-${BFS_MOUNTS[${#BFS_MOUNTS[@]}-1]}} rc
    if bfs_is_mounted "$mnt"; then
        for _ in $(seq 25); do
            fusermount3 -u -- "$mnt" 2>/dev/null && break
            sleep 0.2
        done
        if bfs_is_mounted "$mnt"; then
            fail "unmount of $mnt: still busy after 5 s, detaching lazily"
            fusermount3 -uz -- "$mnt"
        fi
    fi
    if [ -n "$BFS_PID" ]; then
        for _ in $(seq 100); do
            kill -0 "$BFS_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$BFS_PID" 2>/dev/null; then
            fail "daemon $BFS_PID still running 10 s after unmount"
            kill "$BFS_PID" 2>/dev/null
        fi
        wait "$BFS_PID" 2>/dev/null
        rc=$?
        [ "$rc" -eq 0 ] || fail "daemon $BFS_PID exited with status $rc after unmount"
        BFS_PID=""
    fi
}

# kill_daemon [MNT]: a crash: kill -9 the last daemon, wait for it and
# detach its mount (default: the last mount), for a mount_repo again.
kill_daemon()
{
    local mnt=${1:-${BFS_MOUNTS[${#BFS_MOUNTS[@]}-1]}}
    kill -9 "$BFS_PID" 2>/dev/null
    wait "$BFS_PID" 2>/dev/null
    fusermount3 -uz -- "$mnt" 2>/dev/null
    BFS_PID=""
}

bfs_show_log()
{
    echo "---- daemon log ($BFS_LOG) ----" >&2
    cat -- "$BFS_LOG" >&2 2>/dev/null
    if [ -s "$BFS_ERR" ]; then
        echo "---- daemon stderr ----" >&2
        cat -- "$BFS_ERR" >&2
    fi
    echo "----" >&2
}

BFS_ERROR_LINE='^[^ ]+ butlerfs\[[0-9]+\] (emerg|alert|crit|error) '
BFS_SANITIZER='ERROR: AddressSanitizer|runtime error:|LeakSanitizer|ThreadSanitizer:|SUMMARY: UndefinedBehaviorSanitizer'

# check_log: unmounts the last mount if it is still mounted (sanitizer leak
# reports appear only when the daemon exits), then fails the test when its
# log has an error-level line or the log/stderr hold a sanitizer report.
check_log()
{
    local bad=0
    [ -n "$BFS_PID" ] && unmount
    if grep -Eq "$BFS_ERROR_LINE" "$BFS_LOG" 2>/dev/null; then
        fail "daemon log has error lines: $(grep -Ec "$BFS_ERROR_LINE" "$BFS_LOG")"
        bad=1
    fi
    if cat -- "$BFS_LOG" "$BFS_ERR" 2>/dev/null | grep -Eq "$BFS_SANITIZER"; then
        fail "daemon log/stderr has a sanitizer report"
        bad=1
    fi
    if [ $bad -eq 0 ]; then
        pass "daemon log clean (no error lines, no sanitizer report)"
    else
        bfs_show_log
    fi
}

# remote_repo REPO DATADIR ROOT_URI EXPOSURES DETECTORS PAYLOAD: a synthetic
# repository in REPO whose data files are moved to DATADIR (a server's
# document root, or a reference copy) and whose butler.yaml datastore root
# becomes ROOT_URI.  Fails the test and returns 1 when a step fails.
remote_repo()
{
    local repo=$1 data=$2 root=$3
    "$BFS_BIN" synth "$repo" --exposures "$4" --detectors "$5" --payload "$6" >/dev/null 2>&1 \
        || { fail "synth of $repo"; return 1; }
    mkdir -p "$data"
    mv "$repo/LSSTCam" "$data/"
    sed -i "s|^  root: <butlerRoot>|  root: $root|" "$repo/butler.yaml"
    grep -q "root: $root" "$repo/butler.yaml" || { fail "rewrite of the datastore root to $root"; return 1; }
}

# remote_config FILE CACHE_DIR DEADLINE: the configuration the remote tests
# share: a 1 MiB-block cache in CACHE_DIR, and fetches that give up fast (2
# attempts, short backoff, 2 s connect and 5 s request timeouts) within
# DEADLINE.  Tests append their own sections (sources:, ...) with >>.
remote_config()
{
    cat >"$1" <<EOF_RC
cache:
  dir: $2
  block_size: 1MiB
  max_size: 1GiB
  min_free: 1MiB
fetch:
  deadline: $3
  attempts: 2
  backoff_base: 10ms
  backoff_max: 50ms
  connect_timeout: 2s
  request_timeout: 5s
EOF_RC
}

# tree_listing DIR OUT: one line per entry below DIR: type, size, path; then
# per file its sha256, or ERR when it cannot be read
tree_listing()
{
    (cd "$1" && find . -printf '%y %s %P\n' | LC_ALL=C sort) >"$2"
    (cd "$1" && find . -type f -printf '%P\n' | LC_ALL=C sort | while IFS= read -r f; do
        h=$(sha256sum -- "$f" 2>/dev/null) && echo "${h%% *} $f" || echo "ERR $f"
    done) >>"$2"
}

# expect_same_trees WHAT A B OUT: pass when the trees below A and B list the
# same (tree_listing, kept in OUT.a and OUT.b), else fail with the first
# differences.  Sets TREE_FILES to the number of files below A.
expect_same_trees()
{
    tree_listing "$2" "$4.a"
    tree_listing "$3" "$4.b"
    TREE_FILES=$(grep -c '^f ' "$4.a")
    if cmp -s "$4.a" "$4.b"; then
        pass "$1 ($TREE_FILES files: paths, sizes, bytes)"
    else
        fail "$1: the trees differ"
        diff "$4.a" "$4.b" | head -20 >&2
    fi
}

# expect_no_secret SECRET WHAT FILES...: fail when SECRET appears in any of FILES.
expect_no_secret()
{
    local secret=$1 what=$2
    shift 2
    if grep -qF -- "$secret" "$@" 2>/dev/null; then
        fail "the $what appears in ${*##*/}"
    else
        pass "the $what appears in no log or output"
    fi
}

# status_until MNT OUT REGEX: `butlerfs status --json MNT` into OUT until
# it matches REGEX (the status file is rewritten every few seconds; 6 s at
# most); OUT then holds the last reply.
status_until()
{
    for _ in $(seq 30); do
        "$BFS_BIN" status --json "$1" >"$2" 2>/dev/null
        grep -q "$3" "$2" && return 0
        sleep 0.2
    done
    return 1
}

# spool_settled REPO SECONDS: wait until REPO's spool holds no intent record
# (every upload finished), polling every 0.1 s for at most SECONDS; returns
# non-zero when one is still there.
spool_settled()
{
    for _ in $(seq $(($2 * 10))); do
        ls "$1/.butlerfs/spool/"*.intent >/dev/null 2>&1 || return 0
        sleep 0.1
    done
    return 1
}

# expect_no_sanitizer [FILES...]: fail when any of FILES (by default every
# log and stderr of the daemons this test started) holds a sanitizer report.
expect_no_sanitizer()
{
    [ $# -gt 0 ] || set -- "$BFS_TMP"/daemon.*.log "$BFS_TMP"/daemon.*.stderr
    if grep -Eq "$BFS_SANITIZER" "$@" 2>/dev/null; then
        fail "sanitizer report in $(grep -El "$BFS_SANITIZER" "$@" 2>/dev/null | tr '\n' ' ')"
        grep -Eh -A20 "$BFS_SANITIZER" "$@" >&2 2>/dev/null
    else
        pass "no sanitizer report"
    fi
}

# archive_fixture EXPOSURES: for the retention tests, in T=$BFS_TMP: nginx
# WebDAV on loopback serving $T/www (with archive/; nginx.sh must be
# sourced and the caller's EXIT trap stop it), synthetic FITS raws of
# EXPOSURES exposures x 3 detectors in RAWS (sorted), an empty repository
# $T/repo (butlerfs init; DB its SQLite) and a mountpoint $T/mnt.  Skips
# (77) without nginx or python3.
archive_fixture()
{
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || skip "nginx is not installed"
    command -v python3 >/dev/null || skip "python3 not installed"
    mkdir -p "$T/www/archive" "$T/mnt"
    nginx_start "$T/www" || skip "nginx would not start"
    "$BFS_BIN" synth "$T/src" --exposures "$1" --detectors 3 --fits >/dev/null 2>&1 || fail "synth"
    mapfile -t RAWS < <(find "$T/src/LSSTCam/raw/all" -name '*.fits' | sort)
    "$BFS_BIN" init "$T/repo" >/dev/null 2>&1 || fail "butlerfs init"
    DB=$T/repo/gen3.sqlite3
}

# repo_sql SQL: run SQL on archive_fixture's registry ($DB), committed;
# prints the rows on lines, columns joined by spaces.  repo_raws: how many
# raw files its datastore holds.
repo_sql()
{
    python3 -c "import sqlite3,sys; c = sqlite3.connect(sys.argv[1]); r = c.execute(sys.argv[2]).fetchall(); c.commit(); print('\n'.join(' '.join(map(str, x)) for x in r))" "$DB" "$1"
}
repo_raws() { find "$T/repo/LSSTCam" -type f -name '*.fits' 2>/dev/null | wc -l; }

# orphan_entry REL: make the datastore file $T/repo/REL of a dataset gone
# from the registry (what kill -9 between a retention batch's commit and
# its unlinks leaves behind) and print its retention.journal entry (JSON).
orphan_entry()
{
    mkdir -p "$(dirname "$T/repo/$1")"
    echo orphan >"$T/repo/$1"
    printf '{"id": "00000000000000000000000000000001", "paths": ["%s"], "destinations": ["dbb"]}' "$1"
}

# replica_fixture [N]: for the replica tests, in T=$BFS_TMP: N (default 4)
# real FITS raws of one exposure synthesized in $T/src and exported with
# their sidecars to $T/out, an empty repository $T/repo and a mountpoint
# $T/mnt; FILES holds the exported raws (sorted) and q REPO SQL queries a
# repository's SQLite.
replica_fixture()
{
    command -v sqlite3 >/dev/null || skip "sqlite3 CLI not installed"
    T=$BFS_TMP
    "$BFS_BIN" synth "$T/src" --exposures 1 --detectors "${1:-4}" --fits >/dev/null 2>&1 || fail "synth"
    "$BFS_BIN" export "$T/src" LSSTCam/raw/all --to "$T/out" >"$T/export.txt" 2>&1 || { cat "$T/export.txt"; fail "export"; }
    "$BFS_BIN" init "$T/repo" >/dev/null 2>&1 || fail "butlerfs init"
    mkdir -p "$T/mnt"
    mapfile -t FILES < <(find "$T/out" -type f -name '*.fits' | sort)
    q() { sqlite3 "$1/gen3.sqlite3" "$2"; }
}
