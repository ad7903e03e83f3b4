#!/usr/bin/env bash
# test_bad_input.sh - bad repositories, mountpoints and options fail fast
# (non-zero exit within 5 s) with exactly one clear line on stderr naming the
# problem, and leave nothing mounted; a mounted repository refuses every
# write with EROFS ("Read-only file system") and its files stay unchanged.
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

skip_unless_fuse

fixture=$BFS_SHARED/fixtures/repos/comCam
mnt=$BFS_TMP/mnt
mkdir -p "$mnt"
BFS_MOUNTS+=("$mnt")   # in case a bad case mounts after all: the trap unmounts it

nothing_mounted()
{
    ! grep -qF " $BFS_TMP" /proc/mounts
}

# bad_case NAME REGEX [RUNNER...] -- ARGS...: run `butlerfs ARGS...` (through
# RUNNER, e.g. setpriv, when given) and check exit status, time, stderr.
bad_case()
{
    local name=$1 regex=$2 runner=() out err rc t0 t1 ms nlines
    shift 2
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        runner+=("$1")
        shift
    done
    shift
    out=$BFS_TMP/out
    err=$BFS_TMP/err
    t0=$(date +%s%N)
    timeout 10 "${runner[@]}" "$BFS_BIN" "$@" </dev/null >"$out" 2>"$err"
    rc=$?
    t1=$(date +%s%N)
    ms=$(((t1 - t0) / 1000000))
    nlines=$(grep -c . "$err")
    if [ $rc -eq 0 ]; then
        fail "$name: exit status 0"
    elif [ -n "${WANT_RC:-}" ] && [ $rc -ne "$WANT_RC" ]; then
        fail "$name: exit status $rc, want $WANT_RC"
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        fail "$name: still running after 10 s"
    elif [ $ms -gt 5000 ]; then
        fail "$name: took $ms ms (more than 5 s)"
    elif [ "$nlines" -ne 1 ]; then
        fail "$name: expected exactly one line on stderr, got $nlines:"
        sed 's/^/    | /' "$err" >&2
    elif ! grep -Eiq -- "$regex" "$err"; then
        fail "$name: the message does not name the problem (/$regex/): $(cat "$err")"
    else
        pass "$name: exit $rc in $ms ms: $(cat "$err")"
    fi
    if grep -Eq "$BFS_SANITIZER" "$err"; then
        fail "$name: sanitizer report on stderr"
        cat "$err" >&2
    fi
    if ! nothing_mounted; then
        fail "$name: left a mount behind"
        for m in $(awk -v t="$BFS_TMP" 'index($2, t) == 1 { print $2 }' /proc/mounts); do
            fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m"
        done
    fi
}

# ---- repositories --------------------------------------------------------

bad_case "missing repository dir" "$BFS_TMP/nonexistent.*(no such|not exist|missing)" \
    -- mount "$BFS_TMP/nonexistent" "$mnt" -f

mkdir "$BFS_TMP/no_yaml"
bad_case "dir without butler.yaml" "butler\.yaml" \
    -- mount "$BFS_TMP/no_yaml" "$mnt" -f

mkdir "$BFS_TMP/no_db_key"
printf 'datastore:\n  root: <butlerRoot>\n' >"$BFS_TMP/no_db_key/butler.yaml"
bad_case "butler.yaml without registry.db" "registry" \
    -- mount "$BFS_TMP/no_db_key" "$mnt" -f

mkdir "$BFS_TMP/db_list"
printf 'datastore:\n  root: <butlerRoot>\nregistry: {db: [a, b]}\n' >"$BFS_TMP/db_list/butler.yaml"
bad_case "butler.yaml with registry.db a list" "butler\.yaml:3: registry\.db has the wrong type: expected a string, found a list" \
    -- mount "$BFS_TMP/db_list" "$mnt" -f

mkdir "$BFS_TMP/no_db_file"
printf 'datastore:\n  root: <butlerRoot>\nregistry:\n  db: sqlite:///<butlerRoot>/gen3.sqlite3\n' \
    >"$BFS_TMP/no_db_file/butler.yaml"
bad_case "registry.db names a missing gen3.sqlite3" "gen3\.sqlite3" \
    -- mount "$BFS_TMP/no_db_file" "$mnt" -f

mkdir "$BFS_TMP/bad_yaml"
printf 'datastore: [unclosed\n  root: : :\n\t- x\n' >"$BFS_TMP/bad_yaml/butler.yaml"
bad_case "butler.yaml that is not YAML" "butler\.yaml.*YAML|YAML.*butler\.yaml" \
    -- mount "$BFS_TMP/bad_yaml" "$mnt" -f

# PostgreSQL registries (issue 13): a server that cannot be reached is one
# sentence, the URL without its password (port 1 on loopback: refused at once)
mkdir "$BFS_TMP/pg_db"
printf 'registry:\n  db: postgresql://butler:Zq9secret@127.0.0.1:1/butler\n  namespace: main_20250601\ndatastore:\n  root: s3://rubin-main/\n' \
    >"$BFS_TMP/pg_db/butler.yaml"
bad_case "registry.db a PostgreSQL server that cannot be reached" \
    "^butlerfs: cannot reach the PostgreSQL server of postgresql://butler@127\.0\.0\.1:1/butler: .*refused" \
    -- mount "$BFS_TMP/pg_db" "$mnt" -f
expect_no_secret Zq9secret "database password" "$BFS_TMP/err"
printf 'registry:\n  db: postgresql+psycopg2://butler:Zq9secret@db.example.org:99999/butler\n' \
    >"$BFS_TMP/pg_db/butler.yaml"
bad_case "registry.db a malformed PostgreSQL URL" \
    "registry\.db: 'postgresql\+psycopg2://butler@db\.example\.org:99999/butler' is not a database URL: its port '99999'" \
    -- mount "$BFS_TMP/pg_db" "$mnt" -f
expect_no_secret Zq9secret "database password" "$BFS_TMP/err"
printf 'registry:\n  db: mysql://root:Zq9secret@db.example.org/butler\n' >"$BFS_TMP/pg_db/butler.yaml"
bad_case "registry.db of another database" \
    "registry\.db 'mysql://root@db\.example\.org/butler' is neither an SQLite URL" \
    -- mount "$BFS_TMP/pg_db" "$mnt" -f
expect_no_secret Zq9secret "database password" "$BFS_TMP/err"

mkdir "$BFS_TMP/garbage_db"
cp "$BFS_TMP/no_db_file/butler.yaml" "$BFS_TMP/garbage_db/"
head -c 65536 /dev/urandom >"$BFS_TMP/garbage_db/gen3.sqlite3"
bad_case "gen3.sqlite3 of garbage bytes" "gen3\.sqlite3.*(not an SQLite|database|corrupt)" \
    -- mount "$BFS_TMP/garbage_db" "$mnt" -f

mkdir "$BFS_TMP/not_butler"
cp "$BFS_TMP/no_db_file/butler.yaml" "$BFS_TMP/not_butler/"
if command -v sqlite3 >/dev/null 2>&1; then
    sqlite3 "$BFS_TMP/not_butler/gen3.sqlite3" 'CREATE TABLE unrelated (x INTEGER); INSERT INTO unrelated VALUES (1);'
else
    python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute("CREATE TABLE unrelated (x INTEGER)"); c.commit()' \
        "$BFS_TMP/not_butler/gen3.sqlite3"
fi
bad_case "SQLite file without Butler tables" "gen3\.sqlite3.*(not a Butler|Butler registry|no such table)" \
    -- mount "$BFS_TMP/not_butler" "$mnt" -f

# An unreadable repository: as a non-root user a chmod 000 dir will do; as
# root, run the binary as nobody when setpriv can and nobody can reach it.
unreadable=$BFS_TMP/unreadable
mkdir "$unreadable"
cp "$BFS_TMP/no_db_file/butler.yaml" "$unreadable/"
if [ "$(id -u)" -ne 0 ]; then
    chmod 000 "$unreadable"
    bad_case "repository dir not readable" "$unreadable.*(permission|not readable)" \
        -- mount "$unreadable" "$mnt" -f
    chmod 755 "$unreadable"
elif command -v setpriv >/dev/null 2>&1 &&
    setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$BFS_BIN" 2>/dev/null; then
    chmod 711 "$BFS_TMP"
    chmod 700 "$unreadable"
    nobody_mnt=$BFS_TMP/nobody_mnt
    mkdir -m 777 "$nobody_mnt"
    BFS_MOUNTS+=("$nobody_mnt")
    bad_case "repository dir not readable (as nobody)" "$unreadable.*(permission|not readable)" \
        setpriv --reuid=65534 --regid=65534 --clear-groups -- mount "$unreadable" "$nobody_mnt" -f
    chmod 700 "$BFS_TMP"
else
    echo "SKIP: repository dir not readable (root without a usable setpriv, or $BFS_BIN not executable by nobody)"
fi

# ---- synth never makes a repository among other files --------------------
mkdir -p "$BFS_TMP/notrepo"
touch "$BFS_TMP/notrepo/somefile"
bad_case "synth into a directory that is neither a repository nor empty" \
    "notrepo is not a repository .*not empty" -- synth "$BFS_TMP/notrepo" --exposures 1
expect "... and wrote nothing there" test "$(ls -A "$BFS_TMP/notrepo")" = somefile
WANT_RC=2 bad_case "synth --exposures 0" "--exposures: '0' is not a positive whole number" -- synth "$BFS_TMP/newsynth" --exposures 0
WANT_RC=2 bad_case "synth --exposures ten" "--exposures: 'ten' is not a positive" -- synth "$BFS_TMP/newsynth" --exposures ten
WANT_RC=2 bad_case "synth --detectors 190" "detectors must be 1 to 189" -- synth "$BFS_TMP/newsynth" --detectors 190
WANT_RC=2 bad_case "synth --first-seq past 99999" "sequence numbers .*1\.\.99999" -- \
    synth "$BFS_TMP/newsynth" --exposures 2 --first-seq 99999
WANT_RC=2 bad_case "synth --day-obs not a date" "day_obs must be a calendar date" -- synth "$BFS_TMP/newsynth" --day-obs 20251341
WANT_RC=2 bad_case "synth --run ''" "run name must not be empty" -- synth "$BFS_TMP/newsynth" --run ""
WANT_RC=2 bad_case "synth --payload with no value" "--payload needs a value" -- synth "$BFS_TMP/newsynth" --payload
expect "... and none of them made a repository" test ! -e "$BFS_TMP/newsynth"
"$BFS_BIN" synth "$BFS_TMP/newsynth" --exposures 1 --detectors 1 >/dev/null 2>&1
WANT_RC=1 bad_case "synth of datasets that exist already" "already exists; use a new run or repository" -- \
    synth "$BFS_TMP/newsynth" --exposures 1 --detectors 1

# ---- mountpoints and options ---------------------------------------------

if [ -d "$fixture" ]; then
    repo=$fixture
else
    # any valid repository will do for these cases
    repo=$BFS_TMP/initrepo
    "$BFS_BIN" init "$repo" >/dev/null 2>&1 || repo=""
fi
if [ -n "$repo" ]; then
    bad_case "mountpoint missing" "$BFS_TMP/nomnt.*(no such|not exist|missing)" \
        -- mount "$repo" "$BFS_TMP/nomnt" -f
    touch "$BFS_TMP/plainfile"
    bad_case "mountpoint is a file" "$BFS_TMP/plainfile.*not a directory" \
        -- mount "$repo" "$BFS_TMP/plainfile" -f
    mkdir "$BFS_TMP/full"
    touch "$BFS_TMP/full/something"
    bad_case "mountpoint not empty" "$BFS_TMP/full.*not empty" \
        -- mount "$repo" "$BFS_TMP/full" -f
    bad_case "unknown -o option" "bogus_opt" \
        -- mount "$repo" "$mnt" -f -o bogus_opt=1
    bad_case "-o option with a bad value" "file_timeout" \
        -- mount "$repo" "$mnt" -f -o file_timeout=abc
    bad_case "-o loglevel= unknown level" "loglevel" \
        -- mount "$repo" "$mnt" -f -o loglevel=bogus
    bad_case "-o threads=0" "threads" \
        -- mount "$repo" "$mnt" -f -o threads=0
    # an empty directory that is itself a mount point (a volume, a tmpfs) is
    # fine: only a FUSE mount there is refused (when we may mount a tmpfs)
    mkdir "$BFS_TMP/volmnt"
    if mount -t tmpfs -o size=1m tmpfs "$BFS_TMP/volmnt" 2>/dev/null; then
        timeout 10 "$BFS_BIN" mount "$repo" "$BFS_TMP/volmnt" -o "log=$BFS_TMP/vol.log" </dev/null >/dev/null 2>"$BFS_TMP/vol.err"
        expect "an empty tmpfs mount point takes a mount: $(cat "$BFS_TMP/vol.err")" \
            bash -c "for _ in \$(seq 50); do grep -q ' $BFS_TMP/volmnt fuse' /proc/mounts && exit 0; sleep 0.1; done; exit 1"
        fusermount3 -u "$BFS_TMP/volmnt" 2>/dev/null
        umount "$BFS_TMP/volmnt" 2>/dev/null || umount -l "$BFS_TMP/volmnt"
    fi
    bad_case "an argument after the mountpoint" "unexpected argument 'extra'" \
        -- mount "$repo" "$mnt" extra -f
    bad_case "-o config= without a file" "config= needs a file" \
        -- mount "$repo" "$mnt" -f -o config=
    # usage errors exit 2 (the man page's EXIT STATUS), other failures 1
    for args in "extra -f" "-f -o bogus_opt=1" "-f -o config="; do
        # shellcheck disable=SC2086  # the words of args are the arguments
        "$BFS_BIN" mount "$repo" "$mnt" $args </dev/null >/dev/null 2>&1
        expect "mount $args: exit status 2 ($?)" test $? -eq 2
    done
    # a configuration mistake is reported before mounting, with file:line,
    # not at the first remote read; without -f, as a user would mount
    printf 'fetch:\n  ca_file: %s\n' "$BFS_TMP/nope/ca.pem" >"$BFS_TMP/badca.yaml"
    bad_case "config: fetch.ca_file missing" \
        "badca\.yaml:2: fetch\.ca_file $BFS_TMP/nope/ca\.pem: No such file.*remove the key" \
        -- mount "$repo" "$mnt" -o "config=$BFS_TMP/badca.yaml"
else
    echo "SKIP: mountpoint/option cases (no fixture and butlerfs init failed)"
fi

# ---- writes are refused --------------------------------------------------

# expect_erofs NAME CMD...: the command fails and says "Read-only file system"
expect_erofs()
{
    local name=$1 err
    shift
    if err=$("$@" 2>&1); then
        fail "write refused: $name: succeeded"
    elif [[ $err != *"Read-only file system"* ]]; then
        fail "write refused: $name: wrong error: $err"
    else
        pass "write refused: $name"
    fi
}

# 1. an empty repository made by butlerfs init (a fixture copy if init fails)
newrepo=$BFS_TMP/newrepo
if ! "$BFS_BIN" init "$newrepo" >"$BFS_TMP/init.out" 2>&1; then
    echo "note: butlerfs init failed ($(head -n 1 "$BFS_TMP/init.out")); using a fixture copy"
    rm -rf "$newrepo"
    if [ -d "$fixture" ]; then cp -r "$fixture" "$newrepo"; else newrepo=""; fi
fi
if [ -n "$newrepo" ]; then
    rwmnt=$BFS_TMP/rwmnt
    mkdir "$rwmnt"
    if mount_repo "$newrepo" "$rwmnt"; then
        expect_erofs "touch at the root" touch "$rwmnt/newfile"
        expect_erofs "mkdir at the root" mkdir "$rwmnt/newdir"
        expect_erofs "echo > new file" bash -c 'echo hi >"$1"' _ "$rwmnt/new.txt"
        expect_erofs "ln -s at the root" ln -s target "$rwmnt/link"
        expect "nothing was created in the empty repository" test -z "$(ls -A "$rwmnt")"
        if timeout 10 "$BFS_BIN" mount "$newrepo" "$rwmnt" -f </dev/null >/dev/null 2>"$BFS_TMP/twice.err"; then
            fail "mounting twice on one mountpoint succeeded"
        else
            expect "mounting twice says the mountpoint is mounted: $(cat "$BFS_TMP/twice.err")" \
                grep -q "already mounted (fuse.butlerfs); unmount it first: fusermount3 -u" "$BFS_TMP/twice.err"
        fi
        check_log
    fi
    # relative REPO and MOUNTPOINT, mounted in the background as a user
    # would: the daemon runs in "/", so the repository must be found anyway
    mkdir "$BFS_TMP/relmnt"
    BFS_MOUNTS+=("$BFS_TMP/relmnt")
    (cd "$(dirname "$newrepo")" && "$BFS_BIN" mount "$(basename "$newrepo")" relmnt -o "log=$BFS_TMP/rel.log") \
        </dev/null >/dev/null 2>"$BFS_TMP/rel.err"
    rc=$?
    for _ in $(seq 50); do bfs_is_mounted "$BFS_TMP/relmnt" && break; sleep 0.1; done
    expect "a relative repository mounts in the background (exit $rc, $(cat "$BFS_TMP/rel.err" "$BFS_TMP/rel.log" 2>/dev/null | tail -n 1))" \
        bfs_is_mounted "$BFS_TMP/relmnt"
    fusermount3 -u "$BFS_TMP/relmnt" 2>/dev/null
else
    echo "SKIP: writes to an empty repository (butlerfs init failed and no fixture)"
fi

# 2. existing files and directories: a copy of a fixture repository
if [ -d "$fixture" ]; then
    copy=$BFS_TMP/repo-copy
    cp -r "$fixture" "$copy"
    cp "$copy/gen3.sqlite3" "$BFS_TMP/gen3.before"
    rwmnt=$BFS_TMP/rwmnt2
    mkdir "$rwmnt"
    if mount_repo "$copy" "$rwmnt"; then
        f=$(find "$rwmnt" -type f -name 'raw_*' | head -n 1)
        if [ -z "$f" ]; then
            fail "no raw file in the mounted $fixture"
        else
            d=$(dirname "$f")
            cat "$f" >"$BFS_TMP/before"
            expect_erofs "touch existing file" touch "$f"
            expect_erofs "touch new file in a dataId dir" touch "$d/newfile"
            expect_erofs "mkdir in a dataId dir" mkdir "$d/newdir"
            expect_erofs "echo > existing file" bash -c 'echo hi >"$1"' _ "$f"
            expect_erofs "echo >> existing file" bash -c 'echo hi >>"$1"' _ "$f"
            expect_erofs "rm existing file" rm -f "$f"
            expect_erofs "rmdir a directory" rmdir "$d"
            expect_erofs "mv file within the mount" mv "$f" "$d/renamed"
            expect_erofs "chmod file" chmod 644 "$f"
            expect_erofs "truncate file" truncate -s 0 "$f"
            expect_erofs "ln (hard link)" ln "$f" "$d/hardlink"
            expect "the file is still there" test -f "$f"
            expect "the file's bytes are unchanged" cmp -s "$f" "$BFS_TMP/before"
            expect "no new names appeared" test "$(ls -A "$d" | wc -l)" -eq 1
        fi
        check_log
        expect "the registry file is unchanged" cmp -s "$copy/gen3.sqlite3" "$BFS_TMP/gen3.before"
    fi
else
    echo "SKIP: writes to existing files (no fixture at $fixture)"
fi

finish
